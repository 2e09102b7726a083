//! Bit-for-bit definitions of the Linux confidential-computing uAPI for x86 KVM and the AMD PSP.
#![no_std]
#![forbid(unsafe_code)]
