//! The asm-generic `_IOC` ioctl request encoding used on x86-64.
//!
//! A request number packs four things: `dir << 30 | size << 16 | type << 8 | nr`, where
//! `dir` is the data direction seen from user space ([`IOC_NONE`], [`IOC_WRITE`],
//! [`IOC_READ`] or both), `size` is the argument size in bytes (14 bits), `type` is the
//! driver's magic byte ([`KVMIO`] for KVM, `'S'` for `/dev/sev`) and `nr` the command number.
//!
//! The size is part of the number: the same command with a differently-sized struct is a
//! different ioctl, which is how the kernel versions its arguments.
//!
//! ```
//! use kvm_coco_uapi::ioctl::{iowr, KVMIO};
//! // KVM_MEMORY_ENCRYPT_OP = _IOWR(KVMIO, 0xba, unsigned long)
//! assert_eq!(iowr(KVMIO, 0xba, 8), 0xC008_AEBA);
//! ```

/// No data transfer.
pub const IOC_NONE: u32 = 0;
/// User space writes, the kernel reads (`_IOW`).
pub const IOC_WRITE: u32 = 1;
/// The kernel writes, user space reads (`_IOR`).
pub const IOC_READ: u32 = 2;

/// Bit position of the command number.
pub const IOC_NRSHIFT: u32 = 0;
/// Bit position of the type (magic) byte.
pub const IOC_TYPESHIFT: u32 = 8;
/// Bit position of the 14-bit size.
pub const IOC_SIZESHIFT: u32 = 16;
/// Bit position of the 2-bit direction.
pub const IOC_DIRSHIFT: u32 = 30;
/// Largest argument size the encoding can carry.
pub const IOC_SIZEMASK: u32 = (1 << 14) - 1;

uapi_consts! { CONSTANTS;
    /// The KVM ioctl type byte (`KVMIO` = 0xAE).
    pub const KVMIO: u32 = 0xAE;
}

/// `_IOC(dir, type, nr, size)`.
///
/// The size is truncated to 14 bits, exactly as the C macro would; every struct used here
/// is far smaller.
pub const fn ioc(dir: u32, ty: u32, nr: u32, size: usize) -> u32 {
    (dir << IOC_DIRSHIFT)
        | (((size as u32) & IOC_SIZEMASK) << IOC_SIZESHIFT)
        | ((ty & 0xFF) << IOC_TYPESHIFT)
        | ((nr & 0xFF) << IOC_NRSHIFT)
}

/// `_IO(type, nr)`: no argument.
pub const fn io(ty: u32, nr: u32) -> u32 {
    ioc(IOC_NONE, ty, nr, 0)
}

/// `_IOR(type, nr, T)` with `size = sizeof(T)`: the kernel writes the argument.
pub const fn ior(ty: u32, nr: u32, size: usize) -> u32 {
    ioc(IOC_READ, ty, nr, size)
}

/// `_IOW(type, nr, T)` with `size = sizeof(T)`: the kernel reads the argument.
pub const fn iow(ty: u32, nr: u32, size: usize) -> u32 {
    ioc(IOC_WRITE, ty, nr, size)
}

/// `_IOWR(type, nr, T)` with `size = sizeof(T)`: both directions.
pub const fn iowr(ty: u32, nr: u32, size: usize) -> u32 {
    ioc(IOC_READ | IOC_WRITE, ty, nr, size)
}
