//! The system handle: `/dev/kvm`.

use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};

use kvm_bindings::{CpuId, KVM_MAX_CPUID_ENTRIES};
use kvm_coco_uapi::vm::KVM_CAP_VM_TYPES;

use crate::backend::kvm::ioctl;
use crate::error::{Errno, Error, Result};
use crate::vm::Vm;
use crate::vm_type::{VmType, VmTypes};

/// The only stable KVM API version.
pub const KVM_API_VERSION: i32 = 12;

/// An open `/dev/kvm`: capability queries and VM creation.
///
/// ```no_run
/// use kvm_coco::{Kvm, VmType};
/// let kvm = Kvm::open()?;
/// println!("VM types: {}", kvm.supported_vm_types());
/// let vm = kvm.create_vm(VmType::Default)?;
/// # Ok::<(), kvm_coco::Error>(())
/// ```
#[derive(Debug)]
pub struct Kvm {
    kvm: kvm_ioctls::Kvm,
    path: PathBuf,
}

impl Kvm {
    /// The usual device node.
    pub const DEFAULT_PATH: &'static str = "/dev/kvm";

    /// Opens `/dev/kvm` and checks that the API version is 12.
    ///
    /// Fails with [`Error::Open`] (see [`Error::is_kvm_unavailable`]) when the device is
    /// missing or not permitted.
    ///
    /// ```no_run
    /// let kvm = kvm_coco::Kvm::open()?;
    /// assert_eq!(kvm.api_version(), 12);
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn open() -> Result<Self> {
        Self::open_path(Self::DEFAULT_PATH)
    }

    /// Opens the KVM device at `path` (close-on-exec) and checks the API version.
    ///
    /// ```
    /// let err = kvm_coco::Kvm::open_path("/nonexistent/kvm").unwrap_err();
    /// assert!(err.is_kvm_unavailable());
    /// ```
    pub fn open_path(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let cpath = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| {
            Error::Open {
                path: path.clone(),
                errno: Errno::from_raw(libc::EINVAL),
            }
        })?;
        let kvm = kvm_ioctls::Kvm::new_with_path(&cpath).map_err(|e| Error::Open {
            path: path.clone(),
            errno: e.into(),
        })?;
        let found = kvm.get_api_version();
        if found != KVM_API_VERSION {
            return Err(Error::ApiVersion { found });
        }
        Ok(Self { kvm, path })
    }

    /// The path this handle was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `KVM_GET_API_VERSION`.
    ///
    /// ```no_run
    /// assert_eq!(kvm_coco::Kvm::open()?.api_version(), 12);
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn api_version(&self) -> i32 {
        self.kvm.get_api_version()
    }

    /// `KVM_CHECK_EXTENSION` on the system fd: the raw answer (0 = absent, negative = the
    /// ioctl failed, anything else is capability-specific).
    ///
    /// ```no_run
    /// use kvm_coco_uapi::vm::KVM_CAP_GUEST_MEMFD;
    /// let kvm = kvm_coco::Kvm::open()?;
    /// println!("guest_memfd: {}", kvm.check_extension(KVM_CAP_GUEST_MEMFD));
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    #[inline]
    pub fn check_extension(&self, cap: u32) -> i32 {
        self.kvm.check_extension_raw(libc::c_ulong::from(cap))
    }

    /// The VM types `KVM_CREATE_VM` accepts (`KVM_CAP_VM_TYPES`); only `default` on
    /// kernels without the capability.
    ///
    /// ```no_run
    /// use kvm_coco::VmType;
    /// let kvm = kvm_coco::Kvm::open()?;
    /// assert!(kvm.supported_vm_types().contains(VmType::Default));
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn supported_vm_types(&self) -> VmTypes {
        match self.check_extension(KVM_CAP_VM_TYPES) {
            r if r > 0 => VmTypes::from_bits(r as u32),
            _ => VmTypes::DEFAULT_ONLY,
        }
    }

    /// `KVM_CREATE_VM` with `vm_type`.
    ///
    /// A type missing from [`supported_vm_types`](Self::supported_vm_types) is refused
    /// with [`Error::UnsupportedVmType`] without a system call; the kernel's `EINVAL` is
    /// mapped to the same error.
    ///
    /// ```no_run
    /// use kvm_coco::{Error, Kvm, VmType};
    /// let kvm = Kvm::open()?;
    /// match kvm.create_vm(VmType::Snp) {
    ///     Ok(vm) => println!("SNP VM created"),
    ///     Err(Error::UnsupportedVmType { supported, .. }) => println!("only {supported}"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn create_vm(&self, vm_type: VmType) -> Result<Vm> {
        let supported = self.supported_vm_types();
        if !supported.contains(vm_type) {
            return Err(Error::UnsupportedVmType { vm_type, supported });
        }
        match self.kvm.create_vm_with_type(u64::from(vm_type.abi_value())) {
            Ok(fd) => Ok(Vm::new(fd, vm_type)),
            Err(e) if e.errno() == libc::EINVAL => {
                Err(Error::UnsupportedVmType { vm_type, supported })
            }
            Err(e) => Err(Error::ioctl("KVM_CREATE_VM", e)),
        }
    }

    /// `KVM_GET_DEVICE_ATTR` on `/dev/kvm`: the `u64` value of a system attribute, e.g.
    /// `KVM_X86_GRP_SEV` / `KVM_X86_SNP_POLICY_BITS`. `ENXIO` means the attribute (or the
    /// whole group, as on Intel hosts) does not exist.
    ///
    /// ```no_run
    /// use kvm_coco_uapi::vm::{KVM_X86_GRP_SEV, KVM_X86_SEV_VMSA_FEATURES};
    /// let kvm = kvm_coco::Kvm::open()?;
    /// match kvm.device_attr(KVM_X86_GRP_SEV, KVM_X86_SEV_VMSA_FEATURES) {
    ///     Ok(mask) => println!("VMSA features {mask:#x}"),
    ///     Err(e) => println!("no SEV attributes: {e}"),
    /// }
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn device_attr(&self, group: u32, attr: u64) -> Result<u64> {
        ioctl::get_system_device_attr(&self.kvm, group, attr)
            .map_err(|e| Error::ioctl("KVM_GET_DEVICE_ATTR", e))
    }

    /// `KVM_HAS_DEVICE_ATTR` on `/dev/kvm`.
    ///
    /// ```no_run
    /// use kvm_coco_uapi::vm::{KVM_X86_GRP_SEV, KVM_X86_SEV_SNP_REQ_CERTS};
    /// let kvm = kvm_coco::Kvm::open()?;
    /// println!("{}", kvm.has_device_attr(KVM_X86_GRP_SEV, KVM_X86_SEV_SNP_REQ_CERTS));
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn has_device_attr(&self, group: u32, attr: u64) -> bool {
        ioctl::has_system_device_attr(&self.kvm, group, attr).is_ok()
    }

    /// `KVM_GET_SUPPORTED_CPUID` (up to `KVM_MAX_CPUID_ENTRIES` entries).
    ///
    /// ```no_run
    /// let cpuid = kvm_coco::Kvm::open()?.supported_cpuid()?;
    /// assert!(!cpuid.as_slice().is_empty());
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn supported_cpuid(&self) -> Result<CpuId> {
        self.kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(|e| Error::ioctl("KVM_GET_SUPPORTED_CPUID", e))
    }

    /// The underlying kvm-ioctls handle, for ioctls this crate does not wrap.
    pub fn kvm_ioctls(&self) -> &kvm_ioctls::Kvm {
        &self.kvm
    }
}

impl AsRawFd for Kvm {
    fn as_raw_fd(&self) -> RawFd {
        self.kvm.as_raw_fd()
    }
}
