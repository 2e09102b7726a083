//! Launch-digest primitives shared by the offline calculators and the software firmware.
