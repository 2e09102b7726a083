//! The software PSP firmware.
