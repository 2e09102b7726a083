//! The typed targets of the sub-commands: a [`Vm`] viewed as an AMD VM ([`SevVm`]) or as a
//! TD ([`TdxVm`]), a [`Vcpu`] viewed as a TD's vCPU ([`TdxVcpu`]).
//!
//! A view is made once, with a run-time check of the VM type ([`FamilyMismatch`] when it
//! does not fit); its `issue` methods are bounded on the sub-command's family and scope, so
//! the checks of later calls are done by the compiler.

use std::fmt;
use std::os::fd::{AsRawFd, BorrowedFd};

use kvm_ioctls::{VcpuFd, VmFd};

use super::{
    AddressFree, Amd, Command, EncryptOpError, Family, FirmwareStatus, HINT_NOT_CONFIDENTIAL,
    HINT_SEV_ON_TDX, HINT_TDX_ON_NON_TD, Scope, SubCommand, Tdx, VcpuScope, VmScope, issue_sev,
    issue_tdx,
};
use crate::error::Errno;
use crate::vcpu::Vcpu;
use crate::vm::Vm;
use crate::vm_type::VmType;

/// A view of a VM or vCPU was asked for a sub-command family its VM type does not accept
/// ([`Family::accepts`]), e.g. [`Vm::tdx`] on an SNP VM. Returned before any system call.
///
/// ```
/// use kvm_coco::ops::{Family, FamilyMismatch, Scope};
/// use kvm_coco::VmType;
/// let e = FamilyMismatch { family: Family::Tdx, scope: Scope::Vcpu, vm_type: VmType::Snp };
/// assert_eq!(
///     e.to_string(),
///     "KVM_TDX_* sub-commands cannot be issued on a vCPU of a `snp` VM: they need a `tdx` VM"
/// );
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FamilyMismatch {
    /// The family asked for.
    pub family: Family,
    /// The fd the view was asked for.
    pub scope: Scope,
    /// The type of the VM.
    pub vm_type: VmType,
}

impl FamilyMismatch {
    fn check(family: Family, scope: Scope, vm_type: VmType) -> Result<(), Self> {
        if family.accepts(vm_type) {
            Ok(())
        } else {
            Err(Self {
                family,
                scope,
                vm_type,
            })
        }
    }

    /// What to do about it.
    pub fn hint(&self) -> &'static str {
        match self.family {
            _ if !self.vm_type.is_confidential() => HINT_NOT_CONFIDENTIAL,
            Family::Sev => HINT_SEV_ON_TDX,
            Family::Tdx => HINT_TDX_ON_NON_TD,
        }
    }
}

impl fmt::Display for FamilyMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let of = match self.scope {
            Scope::Vm => "",
            Scope::Vcpu => "a vCPU of ",
        };
        let needs = match self.family {
            Family::Sev => {
                "an `sev`, `sev-es` or `snp` VM (or a `default` VM for the deprecated KVM_SEV_INIT)"
            }
            Family::Tdx => "a `tdx` VM",
        };
        write!(
            f,
            "{} sub-commands cannot be issued on {of}a `{}` VM: they need {needs}",
            self.family.kernel_names(),
            self.vm_type
        )
    }
}

impl std::error::Error for FamilyMismatch {}

/// For callers that report every sub-command failure as an [`EncryptOpError`]:
/// `KVM_MEMORY_ENCRYPT_OP` failed with `ENOTTY` (the errno KVM gives for a sub-command the
/// VM has no handler for), no firmware status, and [`FamilyMismatch::hint`]. No system call
/// was made.
///
/// ```
/// use kvm_coco::ops::{EncryptOpError, Family, FamilyMismatch, Scope};
/// use kvm_coco::VmType;
/// let e = EncryptOpError::from(FamilyMismatch { family: Family::Sev, scope: Scope::Vm, vm_type: VmType::Tdx });
/// assert_eq!((e.command, e.errno.raw()), ("KVM_MEMORY_ENCRYPT_OP", libc::ENOTTY));
/// assert!(e.hint.unwrap().contains("TDX VM"));
/// ```
impl From<FamilyMismatch> for EncryptOpError {
    fn from(e: FamilyMismatch) -> Self {
        Self {
            command: "KVM_MEMORY_ENCRYPT_OP",
            errno: Errno::from_raw(libc::ENOTTY),
            firmware: FirmwareStatus::None,
            vm_type: e.vm_type,
            hint: Some(e.hint()),
        }
    }
}

impl Vm {
    /// This VM as the target of the SEV, SEV-ES and SNP sub-commands (`KVM_SEV_*`).
    ///
    /// # Errors
    ///
    /// [`FamilyMismatch`] unless the VM is of type `sev`, `sev-es`, `snp` or `default` (the
    /// deprecated [`KVM_SEV_INIT`](SevVm::init) / [`KVM_SEV_ES_INIT`](SevVm::es_init) turn
    /// a default VM into an SEV / SEV-ES guest; the kernel refuses the other commands there
    /// until then).
    ///
    /// ```no_run
    /// use kvm_coco_uapi::KvmSevInit;
    /// let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::Snp)?;
    /// let sev = vm.sev()?;
    /// sev.init2(&mut KvmSevInit::default())?;
    /// assert!(vm.tdx().is_err());
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn sev(&self) -> Result<SevVm<'_>, FamilyMismatch> {
        FamilyMismatch::check(Family::Sev, Scope::Vm, self.vm_type())?;
        Ok(SevVm {
            fd: self.fd(),
            vm_type: self.vm_type(),
            vm: Some(self),
        })
    }

    /// This VM as the target of the VM-scoped TDX sub-commands (`KVM_TDX_*`).
    ///
    /// # Errors
    ///
    /// [`FamilyMismatch`] unless the VM is of type `tdx`.
    ///
    /// ```no_run
    /// let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::Tdx)?;
    /// let caps = vm.tdx()?.capabilities()?;
    /// assert!(vm.sev().is_err());
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn tdx(&self) -> Result<TdxVm<'_>, FamilyMismatch> {
        FamilyMismatch::check(Family::Tdx, Scope::Vm, self.vm_type())?;
        Ok(TdxVm {
            fd: self.fd(),
            vm_type: self.vm_type(),
            vm: Some(self),
        })
    }
}

impl Vcpu {
    /// This vCPU as the target of the vCPU-scoped TDX sub-commands (`KVM_TDX_INIT_VCPU`,
    /// `KVM_TDX_INIT_MEM_REGION`, `KVM_TDX_GET_CPUID`).
    ///
    /// # Errors
    ///
    /// [`FamilyMismatch`] unless the vCPU belongs to a `tdx` VM.
    ///
    /// ```no_run
    /// let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::Tdx)?;
    /// let vcpu = vm.create_vcpu(0)?;
    /// vcpu.tdx()?.init_vcpu(0)?;
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn tdx(&self) -> Result<TdxVcpu<'_>, FamilyMismatch> {
        FamilyMismatch::check(Family::Tdx, Scope::Vcpu, self.vm_type())?;
        Ok(TdxVcpu {
            fd: self.kvm_ioctls(),
            vm_type: self.vm_type(),
            vcpu: Some(self),
        })
    }
}

/// A VM whose type accepts the SEV-family sub-commands (`sev`, `sev-es`, `snp`, or
/// `default` for the deprecated `KVM_SEV_INIT`), made by [`Vm::sev`].
///
/// It issues only [`Amd`] sub-commands of [`VmScope`]; the per-command methods are in
/// [`sev`](super::sev) (SEV, SEV-ES) and [`snp`](super::snp) (SNP).
///
/// A VMM that created the VM itself (a kvm-ioctls [`VmFd`]) makes the same view over its fd
/// with [`SevVm::borrowed`].
#[derive(Clone, Copy, Debug)]
pub struct SevVm<'a> {
    fd: &'a VmFd,
    vm_type: VmType,
    vm: Option<&'a Vm>,
}

impl<'a> SevVm<'a> {
    /// The view over a VM fd the caller created with `KVM_CREATE_VM` of type `vm_type`
    /// (the type is the caller's statement: KVM has no query for it).
    ///
    /// # Errors
    ///
    /// [`FamilyMismatch`] unless `vm_type` is `sev`, `sev-es`, `snp` or `default`.
    ///
    /// ```no_run
    /// use kvm_coco::ops::SevVm;
    /// use kvm_coco::VmType;
    /// let kvm = kvm_ioctls::Kvm::new()?;
    /// let vm_fd = kvm.create_vm()?;
    /// assert!(SevVm::borrowed(&vm_fd, VmType::Default).is_ok());
    /// assert!(SevVm::borrowed(&vm_fd, VmType::Tdx).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn borrowed(fd: &'a VmFd, vm_type: VmType) -> Result<Self, FamilyMismatch> {
        FamilyMismatch::check(Family::Sev, Scope::Vm, vm_type)?;
        Ok(Self {
            fd,
            vm_type,
            vm: None,
        })
    }

    /// The [`Vm`], when the view was made by [`Vm::sev`] (`None` over a borrowed fd).
    pub fn vm(&self) -> Option<&'a Vm> {
        self.vm
    }

    /// The VM fd.
    pub fn fd(&self) -> &'a VmFd {
        self.fd
    }

    /// The VM's type.
    pub fn vm_type(&self) -> VmType {
        self.vm_type
    }

    /// Marks the vCPUs of the [`Vm`] protected (nothing over a borrowed fd: its vCPUs are
    /// the caller's).
    pub(crate) fn mark_vcpus_state_protected(&self) {
        if let Some(vm) = self.vm {
            vm.mark_vcpus_state_protected();
        }
    }

    /// Issues a sub-command whose payload holds no user address ([`AddressFree`]).
    /// `sev_fd` (an open `/dev/sev`) is passed to the commands that reach the firmware.
    ///
    /// ```no_run
    /// use kvm_coco::ops::{Command, NoPayload, sev};
    /// let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::Sev)?;
    /// vm.sev()?.issue(Command::<sev::LaunchFinish>::new(&mut NoPayload), None)?;
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn issue<C>(
        &self,
        cmd: Command<'_, C>,
        sev_fd: Option<BorrowedFd<'_>>,
    ) -> Result<(), EncryptOpError>
    where
        C: AddressFree + SubCommand<Family = Amd, Scope = VmScope>,
    {
        // SAFETY: `C: AddressFree`: the kernel dereferences no user address for it.
        unsafe { self.issue_unchecked(cmd, sev_fd) }
    }

    /// Issues any SEV-family sub-command.
    ///
    /// # Safety
    ///
    /// Every user address inside the payload bound to `cmd` must be valid for what the
    /// kernel does with it for `C` (the per-command methods state it).
    ///
    /// ```no_run
    /// use kvm_coco::ops::{Command, sev};
    /// use kvm_coco_uapi::KvmSevLaunchMeasure;
    /// let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::Sev)?;
    /// let mut m = KvmSevLaunchMeasure::default();
    /// // SAFETY: uaddr = 0: a length query, the kernel writes only `m.len`.
    /// let _ = unsafe { vm.sev()?.issue_unchecked(Command::<sev::LaunchMeasure>::new(&mut m), None) };
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub unsafe fn issue_unchecked<C>(
        &self,
        cmd: Command<'_, C>,
        sev_fd: Option<BorrowedFd<'_>>,
    ) -> Result<(), EncryptOpError>
    where
        C: SubCommand<Family = Amd, Scope = VmScope>,
    {
        // SAFETY: forwarded from this function's contract; the fd is the VM fd of an AMD
        // (or default) VM, as `C`'s family and scope require.
        unsafe { issue_sev(self.fd, self.vm_type, cmd, sev_fd.map(|f| f.as_raw_fd())) }
    }
}

/// A TDX VM, made by [`Vm::tdx`]. It issues only [`Tdx`] sub-commands of [`VmScope`]; the
/// per-command methods are in [`tdx`](super::tdx).
/// [`TdxVm::borrowed`] makes it over a kvm-ioctls [`VmFd`] the caller created.
#[derive(Clone, Copy, Debug)]
pub struct TdxVm<'a> {
    fd: &'a VmFd,
    vm_type: VmType,
    vm: Option<&'a Vm>,
}

impl<'a> TdxVm<'a> {
    /// The view over a VM fd the caller created with `KVM_CREATE_VM` of type `vm_type`.
    ///
    /// # Errors
    ///
    /// [`FamilyMismatch`] unless `vm_type` is `tdx`.
    ///
    /// ```no_run
    /// use kvm_coco::ops::TdxVm;
    /// use kvm_coco::VmType;
    /// let vm_fd = kvm_ioctls::Kvm::new()?.create_vm()?;
    /// assert!(TdxVm::borrowed(&vm_fd, VmType::Snp).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn borrowed(fd: &'a VmFd, vm_type: VmType) -> Result<Self, FamilyMismatch> {
        FamilyMismatch::check(Family::Tdx, Scope::Vm, vm_type)?;
        Ok(Self {
            fd,
            vm_type,
            vm: None,
        })
    }

    /// The [`Vm`], when the view was made by [`Vm::tdx`] (`None` over a borrowed fd).
    pub fn vm(&self) -> Option<&'a Vm> {
        self.vm
    }

    /// The VM fd.
    pub fn fd(&self) -> &'a VmFd {
        self.fd
    }

    /// The VM's type.
    pub fn vm_type(&self) -> VmType {
        self.vm_type
    }

    /// Issues a VM-scoped TDX sub-command whose payload holds no user address
    /// ([`AddressFree`]), with `flags` in `kvm_tdx_cmd.flags`.
    ///
    /// ```no_run
    /// use kvm_coco::ops::{Command, NoPayload, tdx};
    /// let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::Tdx)?;
    /// vm.tdx()?.issue(Command::<tdx::FinalizeVm>::new(&mut NoPayload), 0)?;
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn issue<C>(&self, cmd: Command<'_, C>, flags: u32) -> Result<(), EncryptOpError>
    where
        C: AddressFree + SubCommand<Family = Tdx, Scope = VmScope>,
    {
        // SAFETY: `C: AddressFree`: the kernel dereferences no user address for it.
        unsafe { self.issue_unchecked(cmd, flags) }
    }

    /// Issues any VM-scoped TDX sub-command.
    ///
    /// # Safety
    ///
    /// Every user address inside the payload bound to `cmd` must be valid for what the
    /// kernel does with it for `C`.
    pub unsafe fn issue_unchecked<C>(
        &self,
        cmd: Command<'_, C>,
        flags: u32,
    ) -> Result<(), EncryptOpError>
    where
        C: SubCommand<Family = Tdx, Scope = VmScope>,
    {
        // SAFETY: forwarded from this function's contract; the fd is a TD's VM fd, as
        // `C`'s family and scope require.
        unsafe { issue_tdx(self.fd, self.vm_type, cmd, flags) }
    }
}

/// A vCPU of a TDX VM, made by [`Vcpu::tdx`]. It issues only [`Tdx`] sub-commands of
/// [`VcpuScope`]; the per-command methods are in [`tdx`](super::tdx).
/// [`TdxVcpu::borrowed`] makes it over a kvm-ioctls [`VcpuFd`] the caller created.
#[derive(Clone, Copy, Debug)]
pub struct TdxVcpu<'a> {
    fd: &'a VcpuFd,
    vm_type: VmType,
    vcpu: Option<&'a Vcpu>,
}

impl<'a> TdxVcpu<'a> {
    /// The view over a vCPU fd the caller created on a VM of type `vm_type`.
    ///
    /// # Errors
    ///
    /// [`FamilyMismatch`] unless `vm_type` is `tdx`.
    ///
    /// ```no_run
    /// use kvm_coco::ops::TdxVcpu;
    /// use kvm_coco::VmType;
    /// let vm_fd = kvm_ioctls::Kvm::new()?.create_vm()?;
    /// let vcpu = vm_fd.create_vcpu(0)?;
    /// assert!(TdxVcpu::borrowed(&vcpu, VmType::Default).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn borrowed(fd: &'a VcpuFd, vm_type: VmType) -> Result<Self, FamilyMismatch> {
        FamilyMismatch::check(Family::Tdx, Scope::Vcpu, vm_type)?;
        Ok(Self {
            fd,
            vm_type,
            vcpu: None,
        })
    }

    /// The [`Vcpu`], when the view was made by [`Vcpu::tdx`] (`None` over a borrowed fd).
    pub fn vcpu(&self) -> Option<&'a Vcpu> {
        self.vcpu
    }

    /// Issues a vCPU-scoped TDX sub-command whose payload holds no user address
    /// ([`AddressFree`]), with `flags` in `kvm_tdx_cmd.flags`.
    ///
    /// ```no_run
    /// use kvm_coco::ops::{Command, Immediate, tdx};
    /// # let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::Tdx)?;
    /// let vcpu = vm.create_vcpu(0)?;
    /// vcpu.tdx()?.issue(Command::<tdx::InitVcpu>::new(&mut Immediate(0)), 0)?;
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn issue<C>(&self, cmd: Command<'_, C>, flags: u32) -> Result<(), EncryptOpError>
    where
        C: AddressFree + SubCommand<Family = Tdx, Scope = VcpuScope>,
    {
        // SAFETY: `C: AddressFree`: the kernel dereferences no user address for it.
        unsafe { self.issue_unchecked(cmd, flags) }
    }

    /// Issues any vCPU-scoped TDX sub-command.
    ///
    /// # Safety
    ///
    /// Every user address inside the payload bound to `cmd` must be valid for what the
    /// kernel does with it for `C`.
    pub unsafe fn issue_unchecked<C>(
        &self,
        cmd: Command<'_, C>,
        flags: u32,
    ) -> Result<(), EncryptOpError>
    where
        C: SubCommand<Family = Tdx, Scope = VcpuScope>,
    {
        // SAFETY: forwarded from this function's contract; the fd is a TD vCPU's fd, as
        // `C`'s family and scope require.
        unsafe { issue_tdx(self.fd, self.vm_type, cmd, flags) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_accept_their_vm_types() {
        for t in VmType::ALL {
            let amd = FamilyMismatch::check(Family::Sev, Scope::Vm, t).is_ok();
            let tdx = FamilyMismatch::check(Family::Tdx, Scope::Vm, t).is_ok();
            match t {
                VmType::Default | VmType::Sev | VmType::SevEs | VmType::Snp => {
                    assert!(amd && !tdx, "{t}");
                }
                VmType::Tdx => assert!(!amd && tdx, "{t}"),
                _ => assert!(!amd && !tdx, "{t}"),
            }
        }
    }

    #[test]
    fn mismatch_hints() {
        let m = |family, vm_type| FamilyMismatch {
            family,
            scope: Scope::Vm,
            vm_type,
        };
        assert_eq!(m(Family::Sev, VmType::Tdx).hint(), HINT_SEV_ON_TDX);
        assert_eq!(m(Family::Tdx, VmType::Snp).hint(), HINT_TDX_ON_NON_TD);
        assert_eq!(
            m(Family::Tdx, VmType::Default).hint(),
            HINT_NOT_CONFIDENTIAL
        );
        assert_eq!(
            m(Family::Sev, VmType::SwProtected).hint(),
            HINT_NOT_CONFIDENTIAL
        );
        let e = EncryptOpError::from(m(Family::Tdx, VmType::Default));
        assert!(e.is_not_confidential());
        assert_eq!(e.firmware, FirmwareStatus::None);
        assert!(
            m(Family::Sev, VmType::Tdx)
                .to_string()
                .starts_with("KVM_SEV_* sub-commands cannot be issued on a `tdx` VM")
        );
    }
}
