//! Errors of the core layer: opening `/dev/kvm`, creating VMs and vCPUs, memory, registers
//! and `KVM_RUN`.
//!
//! Every variant names the operation that failed and, where the kernel answered, the
//! [`Errno`] it answered with. Sub-commands of `KVM_MEMORY_ENCRYPT_OP` have their own error
//! types, [`EncryptOpError`] and [`FamilyMismatch`], which this enum wraps.

use std::fmt;
use std::path::PathBuf;

use crate::ops::{EncryptOpError, FamilyMismatch};
use crate::vm_type::{VmType, VmTypes};

/// Result type of the core layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An `errno` value returned by a system call.
///
/// Prints as the symbolic name, the number and the C library's message, e.g.
/// `EINVAL (22): Invalid argument`, so a log line carries everything needed to look the
/// failure up in the kernel sources.
///
/// ```
/// use kvm_coco::Errno;
/// let e = Errno::from_raw(libc::ENOTTY);
/// assert_eq!(e.name(), Some("ENOTTY"));
/// assert!(e.to_string().starts_with("ENOTTY (25)"));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(i32);

impl Errno {
    /// Wraps a raw, positive errno value.
    pub const fn from_raw(errno: i32) -> Self {
        Self(errno)
    }

    /// The errno left by the last failed system call on this thread.
    pub fn last() -> Self {
        Self(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }

    /// The raw, positive value.
    pub const fn raw(self) -> i32 {
        self.0
    }

    /// The symbolic name of the values KVM and the PSP driver return, if known.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            libc::EPERM => "EPERM",
            libc::ENOENT => "ENOENT",
            libc::EINTR => "EINTR",
            libc::EIO => "EIO",
            libc::ENXIO => "ENXIO",
            libc::E2BIG => "E2BIG",
            libc::EBADF => "EBADF",
            libc::EAGAIN => "EAGAIN",
            libc::ENOMEM => "ENOMEM",
            libc::EACCES => "EACCES",
            libc::EFAULT => "EFAULT",
            libc::EBUSY => "EBUSY",
            libc::EEXIST => "EEXIST",
            libc::ENODEV => "ENODEV",
            libc::EINVAL => "EINVAL",
            libc::ENOTTY => "ENOTTY",
            libc::ENOSPC => "ENOSPC",
            libc::ESPIPE => "ESPIPE",
            libc::ERANGE => "ERANGE",
            libc::ENOSYS => "ENOSYS",
            libc::EOPNOTSUPP => "EOPNOTSUPP",
            libc::ETIMEDOUT => "ETIMEDOUT",
            libc::EHWPOISON => "EHWPOISON",
            _ => return None,
        })
    }
}

impl From<vmm_sys_util::errno::Error> for Errno {
    fn from(e: vmm_sys_util::errno::Error) -> Self {
        Self(e.errno())
    }
}

impl From<Errno> for std::io::Error {
    fn from(e: Errno) -> Self {
        std::io::Error::from_raw_os_error(e.0)
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let full = std::io::Error::from_raw_os_error(self.0).to_string();
        // The C library message, without std's " (os error N)" suffix.
        let msg = full.split(" (os error").next().unwrap_or(&full);
        match self.name() {
            Some(name) => write!(f, "{name} ({}): {msg}", self.0),
            None => write!(f, "errno {}: {msg}", self.0),
        }
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "Errno({name})"),
            None => write!(f, "Errno({})", self.0),
        }
    }
}

impl std::error::Error for Errno {}

/// The register groups whose ioctls are refused on a vCPU with protected state.
///
/// Used by [`Error::ProtectedState`] to say which access was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RegisterOp {
    /// `KVM_GET_REGS` / `KVM_SET_REGS`.
    Regs,
    /// `KVM_GET_SREGS` / `KVM_SET_SREGS`.
    Sregs,
    /// `KVM_GET_FPU` / `KVM_SET_FPU`.
    Fpu,
    /// `KVM_GET_XSAVE` / `KVM_SET_XSAVE`.
    Xsave,
    /// `KVM_GET_XCRS` / `KVM_SET_XCRS`.
    Xcrs,
    /// `KVM_GET_DEBUGREGS` / `KVM_SET_DEBUGREGS`.
    DebugRegs,
    /// `KVM_GET_MSRS` / `KVM_SET_MSRS`.
    Msrs,
    /// `KVM_SET_GUEST_DEBUG`.
    GuestDebug,
}

impl RegisterOp {
    /// The kernel name of the ioctl pair.
    pub const fn ioctl_name(self) -> &'static str {
        match self {
            Self::Regs => "KVM_GET/SET_REGS",
            Self::Sregs => "KVM_GET/SET_SREGS",
            Self::Fpu => "KVM_GET/SET_FPU",
            Self::Xsave => "KVM_GET/SET_XSAVE",
            Self::Xcrs => "KVM_GET/SET_XCRS",
            Self::DebugRegs => "KVM_GET/SET_DEBUGREGS",
            Self::Msrs => "KVM_GET/SET_MSRS",
            Self::GuestDebug => "KVM_SET_GUEST_DEBUG",
        }
    }
}

impl fmt::Display for RegisterOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.ioctl_name())
    }
}

/// Errors of the core layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The KVM device node could not be opened.
    ///
    /// `ENOENT` means KVM is not loaded (or the path is wrong); `EACCES` means the caller
    /// lacks permission (usually: not in the `kvm` group, or not root).
    #[error("cannot open {}", path.display())]
    Open {
        /// The path that was opened.
        path: PathBuf,
        /// The errno of `open(2)`.
        #[source]
        errno: Errno,
    },

    /// `KVM_GET_API_VERSION` returned something other than 12, the only stable version.
    #[error("unexpected KVM API version {found} (expected 12)")]
    ApiVersion {
        /// The version the kernel reported.
        found: i32,
    },

    /// The host cannot create VMs of this type.
    ///
    /// Raised before `KVM_CREATE_VM` when `KVM_CAP_VM_TYPES` lacks the type, and when the
    /// kernel itself answers `EINVAL`.
    #[error("VM type `{vm_type}` is not supported by this host (supported: {supported})")]
    UnsupportedVmType {
        /// The requested type.
        vm_type: VmType,
        /// What this host supports.
        supported: VmTypes,
    },

    /// A register ioctl was refused because the vCPU's state is protected (encrypted in a
    /// VMSA, or owned by the TDX module).
    ///
    /// Returned before any system call when the vCPU is known to be protected, and when the
    /// kernel's own `EINVAL` arrives for a VM type with protected state.
    #[error("{op} refused: the guest state of this `{vm_type}` vCPU is protected")]
    ProtectedState {
        /// The refused register access.
        op: RegisterOp,
        /// The VM type of the vCPU.
        vm_type: VmType,
    },

    /// The operation does not exist for this VM (its type lacks the feature, or the host
    /// does).
    #[error("{op} is not available on this `{vm_type}` VM: {reason}")]
    Unsupported {
        /// The kernel name of the operation.
        op: &'static str,
        /// The VM's type.
        vm_type: VmType,
        /// Why, in a sentence.
        reason: &'static str,
    },

    /// A guest_memfd size that is zero or not a multiple of 4 KiB.
    #[error("guest_memfd size {size:#x} must be non-zero and a multiple of 4 KiB")]
    GuestMemfdSize {
        /// The requested size.
        size: u64,
    },

    /// guest_memfd flags the host does not support (`KVM_CAP_GUEST_MEMFD_FLAGS`).
    #[error("guest_memfd flags {flags:#x} are not supported (supported: {supported:#x})")]
    GuestMemfdFlags {
        /// The requested flags.
        flags: u64,
        /// The flags this host supports.
        supported: u64,
    },

    /// A guest-physical range that is empty, not 4 KiB aligned or wraps around.
    #[error("range gpa={gpa:#x} size={size:#x} must be non-empty, 4 KiB aligned and not wrap")]
    BadRange {
        /// Start of the range.
        gpa: u64,
        /// Length of the range.
        size: u64,
    },

    /// An access outside a guest memory mapping.
    #[error("access at offset {offset:#x} len {len:#x} is outside a mapping of {size:#x} bytes")]
    OutOfBounds {
        /// Offset of the access.
        offset: u64,
        /// Length of the access.
        len: u64,
        /// Size of the mapping.
        size: u64,
    },

    /// A memory slot that is not registered on this VM.
    #[error("memory slot {slot} is not registered")]
    NoSuchSlot {
        /// The slot number.
        slot: u32,
    },

    /// An ioctl failed with an errno.
    #[error("{op} failed")]
    Ioctl {
        /// The kernel name of the operation.
        op: &'static str,
        /// What the kernel returned.
        #[source]
        errno: Errno,
    },

    /// A `KVM_MEMORY_ENCRYPT_OP` sub-command failed.
    #[error(transparent)]
    EncryptOp(#[from] EncryptOpError),

    /// A VM or vCPU was viewed as the target of a sub-command family its type does not
    /// accept ([`Vm::sev`](crate::Vm::sev), [`Vm::tdx`](crate::Vm::tdx),
    /// [`Vcpu::tdx`](crate::Vcpu::tdx)); refused before any system call.
    #[error(transparent)]
    FamilyMismatch(#[from] FamilyMismatch),
}

impl Error {
    /// The errno behind this error, if the kernel produced one.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Self::Open { errno, .. } | Self::Ioctl { errno, .. } => Some(*errno),
            Self::EncryptOp(e) => Some(e.errno),
            _ => None,
        }
    }

    /// Whether this error means "KVM is not usable by this process at all": the device is
    /// missing (`ENOENT`, `ENODEV`, `ENXIO`) or not permitted (`EACCES`, `EPERM`).
    ///
    /// Test suites use it to skip rather than fail on machines without KVM.
    pub fn is_kvm_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Open { errno, .. } if matches!(
                errno.raw(),
                libc::ENOENT | libc::EACCES | libc::EPERM | libc::ENODEV | libc::ENXIO
            )
        )
    }

    pub(crate) fn ioctl(op: &'static str, e: impl Into<Errno>) -> Self {
        Self::Ioctl {
            op,
            errno: e.into(),
        }
    }
}
