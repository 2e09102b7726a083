//! Typed `KVM_MEMORY_ENCRYPT_OP` sub-commands: SEV/SEV-ES ([`sev`]), SEV-SNP ([`snp`]) and
//! TDX ([`tdx`]).
//!
//! `KVM_MEMORY_ENCRYPT_OP` multiplexes every vendor sub-command through one ioctl whose
//! argument is a `struct kvm_sev_cmd` or `struct kvm_tdx_cmd` with a sub-command id and a
//! pointer (`data`) to the sub-command's own struct. The two structs differ and their ids
//! overlap (SEV id 0 is `KVM_SEV_INIT`, TDX id 0 is `KVM_TDX_CAPABILITIES`), so a command
//! of one family issued on a VM of the other would be misread by the kernel. Here:
//!
//! * each sub-command is a type implementing [`SubCommand`], which binds its kernel id, its
//!   kernel name, its payload type (one payload type may serve several commands, as
//!   `kvm_sev_dbg` does for DBG_DECRYPT and DBG_ENCRYPT), its family ([`Amd`] or [`Tdx`])
//!   and the fd it is issued on ([`VmScope`] or [`VcpuScope`]), as associated types;
//! * a [`Command<'a, C>`] pairs a sub-command with a payload borrowed mutably for `'a`, so
//!   the payload cannot move or be freed while the kernel reads and writes it, and a payload
//!   of the wrong type does not compile;
//! * commands are issued through typed views of a [`Vm`] or [`Vcpu`]: [`SevVm`]
//!   ([`Vm::sev`]), [`TdxVm`] ([`Vm::tdx`]) and [`TdxVcpu`] ([`Vcpu::tdx`]). Creating a view
//!   checks the VM type once, at run time ([`FamilyMismatch`] otherwise); from then on each
//!   view's `issue` accepts only the sub-commands of its family and fd scope, so a TDX
//!   command on an AMD VM, or a vCPU-scoped command on a VM fd, does not compile;
//! * every sub-command has one method on its view. Commands whose payload carries no user
//!   address the kernel dereferences implement [`AddressFree`] and are issued by safe
//!   methods; the others (`uaddr`, `source_addr`, …) are `unsafe fn`;
//! * failures are [`EncryptOpError`]s carrying the command name, the errno, the firmware
//!   status (SEV `error`, TDX `hw_error`) and a hint.
//!
//! # Example: a TD's sub-commands, on the software host where the machine has no TDX
//!
//! (With the `sim` feature, which provides the software host.)
//!
//! ```
//! # #[cfg(feature = "sim")]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use kvm_coco::ops::{Command, FamilyMismatch, Family, NoPayload, Scope, tdx};
//! use kvm_coco::sim::host::SoftwareHost;
//! use kvm_coco::{Kvm, VmType};
//! use kvm_coco_uapi::{KvmCpuidEntry2, KvmTdxInitVm, TdxInitVmBuf};
//!
//! let host = SoftwareHost::builder().start()?;
//! host.serve_current_thread()?;
//! let vm = Kvm::open()?.create_vm(VmType::Tdx)?;
//!
//! // The VM type is checked once, when the view is made.
//! let td = vm.tdx()?;
//! assert_eq!(
//!     vm.sev().unwrap_err(),
//!     FamilyMismatch { family: Family::Sev, scope: Scope::Vm, vm_type: VmType::Tdx }
//! );
//!
//! let caps = td.capabilities()?;
//! assert_ne!(caps.header().supported_attrs, 0);
//! // XFAM x87|SSE, GPAW 48.
//! let mut init = TdxInitVmBuf::with_capacity(1);
//! init.set_header(&KvmTdxInitVm { xfam: 0x3, ..Default::default() });
//! init.push(KvmCpuidEntry2 { function: 0x8000_0008, eax: 48 << 16, ..Default::default() })
//!     .expect("capacity 1");
//! td.init_vm(&mut init)?;
//! # let mut cap = kvm_bindings::kvm_enable_cap { cap: kvm_bindings::KVM_CAP_SPLIT_IRQCHIP, ..Default::default() };
//! # cap.args[0] = 24;
//! # vm.enable_cap(&cap)?;
//! let vcpu = vm.create_vcpu(0)?;
//! vcpu.tdx()?.init_vcpu(0)?;
//! assert!(!vcpu.tdx()?.get_cpuid()?.is_empty());
//! // The generic entry point: FINALIZE_VM has no payload, so it is safe to issue.
//! td.issue(Command::<tdx::FinalizeVm>::new(&mut NoPayload), 0)?;
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "sim"))]
//! # fn main() {}
//! ```
//!
//! # Checked at compile time
//!
//! A TDX command through an AMD VM does not compile (the view's bound
//! `SubCommand<Family = Amd>` is not met):
//!
//! ```compile_fail,E0271
//! use kvm_coco::ops::{Command, NoPayload, tdx};
//! let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::Snp)?;
//! vm.sev()?.issue(Command::<tdx::FinalizeVm>::new(&mut NoPayload), None)?;
//! # Ok::<(), kvm_coco::Error>(())
//! ```
//!
//! Nor does an AMD command through a TD:
//!
//! ```compile_fail,E0271
//! use kvm_coco::ops::{Command, NoPayload, sev};
//! let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::Tdx)?;
//! vm.tdx()?.issue(Command::<sev::LaunchFinish>::new(&mut NoPayload), 0)?;
//! # Ok::<(), kvm_coco::Error>(())
//! ```
//!
//! A vCPU-scoped TDX command on the VM fd does not compile (`SubCommand<Scope = VmScope>`
//! is not met by `KVM_TDX_INIT_VCPU`):
//!
//! ```compile_fail,E0271
//! use kvm_coco::ops::{Command, Immediate, tdx};
//! let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::Tdx)?;
//! vm.tdx()?.issue(Command::<tdx::InitVcpu>::new(&mut Immediate(0)), 0)?;
//! # Ok::<(), kvm_coco::Error>(())
//! ```
//!
//! Nor does a VM-scoped one on a vCPU fd:
//!
//! ```compile_fail,E0271
//! use kvm_coco::ops::{Command, NoPayload, tdx};
//! let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::Tdx)?;
//! let vcpu = vm.create_vcpu(0)?;
//! vcpu.tdx()?.issue(Command::<tdx::FinalizeVm>::new(&mut NoPayload), 0)?;
//! # Ok::<(), kvm_coco::Error>(())
//! ```
//!
//! The views a VMM makes over its own kvm-ioctls fds ([`SevVm::borrowed`],
//! [`TdxVm::borrowed`], [`TdxVcpu::borrowed`]) are the same types, with the same bounds:
//!
//! ```compile_fail,E0271
//! use kvm_coco::ops::{Command, NoPayload, SevVm, tdx};
//! let vm_fd = kvm_ioctls::Kvm::new()?.create_vm()?;
//! let sev = SevVm::borrowed(&vm_fd, kvm_coco::VmType::Snp)?;
//! sev.issue(Command::<tdx::FinalizeVm>::new(&mut NoPayload), None)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ```compile_fail,E0271
//! use kvm_coco::ops::{Command, Immediate, TdxVm, tdx};
//! let vm_fd = kvm_ioctls::Kvm::new()?.create_vm()?;
//! let td = TdxVm::borrowed(&vm_fd, kvm_coco::VmType::Tdx)?;
//! td.issue(Command::<tdx::InitVcpu>::new(&mut Immediate(0)), 0)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The unsafe entry point has the same bounds:
//!
//! ```compile_fail,E0271
//! use kvm_coco::ops::{Command, tdx};
//! use kvm_coco_uapi::KvmTdxInitMemRegion;
//! let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::Tdx)?;
//! let mut r = KvmTdxInitMemRegion::default();
//! // SAFETY: no source address.
//! unsafe { vm.tdx()?.issue_unchecked(Command::<tdx::InitMemRegion>::new(&mut r), 0)? };
//! # Ok::<(), kvm_coco::Error>(())
//! ```
//!
//! A command whose payload holds user addresses has no safe entry point (it does not
//! implement [`AddressFree`]):
//!
//! ```compile_fail,E0277
//! use kvm_coco::ops::{Command, sev};
//! use kvm_coco_uapi::KvmSevLaunchUpdateData;
//! let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::Sev)?;
//! let mut upd = KvmSevLaunchUpdateData { uaddr: 0x1000, len: 0x1000, ..Default::default() };
//! vm.sev()?.issue(Command::<sev::LaunchUpdateData>::new(&mut upd), None)?;
//! # Ok::<(), kvm_coco::Error>(())
//! ```
//!
//! [`Vm`]: crate::Vm
//! [`Vcpu`]: crate::Vcpu
//! [`Vm::sev`]: crate::Vm::sev
//! [`Vm::tdx`]: crate::Vm::tdx
//! [`Vcpu::tdx`]: crate::Vcpu::tdx

use std::fmt;
use std::marker::PhantomData;
use std::os::fd::AsRawFd;

use kvm_coco_uapi::vm::KVM_MEMORY_ENCRYPT_OP;
use kvm_coco_uapi::{KvmSevCmd, KvmTdxCmd, SevRetCode};

use crate::backend::kvm::ioctl::ioctl_ptr;
use crate::error::Errno;
use crate::vm_type::{Vendor, VmType};

pub mod sev;
pub mod snp;
pub mod tdx;
mod views;

pub use views::{FamilyMismatch, SevVm, TdxVcpu, TdxVm};

/// Which fd a sub-command is issued on (the value of a [`CommandScope`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// The VM fd.
    Vm,
    /// A vCPU fd (TDX INIT_VCPU, INIT_MEM_REGION, GET_CPUID).
    Vcpu,
}

/// The command family, i.e. which command struct wraps the id (the value of a
/// [`CommandFamily`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// `struct kvm_sev_cmd` (SEV, SEV-ES, SNP): [`Amd`].
    Sev,
    /// `struct kvm_tdx_cmd`: [`Tdx`].
    Tdx,
}

impl Family {
    /// Whether sub-commands of this family may be issued on a VM of `vm_type`: the TDX
    /// family on TDX VMs; the SEV family on SEV, SEV-ES and SNP VMs, and on default VMs,
    /// which the deprecated `KVM_SEV_INIT` / `KVM_SEV_ES_INIT` turn into SEV / SEV-ES
    /// guests.
    ///
    /// ```
    /// use kvm_coco::{VmType, ops::Family};
    /// assert!(Family::Sev.accepts(VmType::Snp));
    /// assert!(Family::Sev.accepts(VmType::Default));
    /// assert!(!Family::Sev.accepts(VmType::Tdx));
    /// assert!(!Family::Tdx.accepts(VmType::Default));
    /// ```
    pub const fn accepts(self, vm_type: VmType) -> bool {
        match self {
            Self::Sev => matches!(
                vm_type,
                VmType::Default | VmType::Sev | VmType::SevEs | VmType::Snp
            ),
            Self::Tdx => matches!(vm_type, VmType::Tdx),
        }
    }

    /// The prefix of the family's kernel names: `KVM_SEV_*` or `KVM_TDX_*`.
    pub const fn kernel_names(self) -> &'static str {
        match self {
            Self::Sev => "KVM_SEV_*",
            Self::Tdx => "KVM_TDX_*",
        }
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Amd {}
    impl Sealed for super::Tdx {}
    impl Sealed for super::VmScope {}
    impl Sealed for super::VcpuScope {}
}

/// A command family as a type: [`Amd`] or [`Tdx`]. Sealed.
pub trait CommandFamily: sealed::Sealed + 'static {
    /// The family as a value.
    const FAMILY: Family;
}

/// The family of the SEV, SEV-ES and SEV-SNP sub-commands (`struct kvm_sev_cmd`), issued
/// through [`SevVm`].
#[derive(Clone, Copy, Debug)]
pub enum Amd {}

/// The family of the TDX sub-commands (`struct kvm_tdx_cmd`), issued through [`TdxVm`] and
/// [`TdxVcpu`].
#[derive(Clone, Copy, Debug)]
pub enum Tdx {}

impl CommandFamily for Amd {
    const FAMILY: Family = Family::Sev;
}

impl CommandFamily for Tdx {
    const FAMILY: Family = Family::Tdx;
}

/// The fd a sub-command is issued on, as a type: [`VmScope`] or [`VcpuScope`]. Sealed.
pub trait CommandScope: sealed::Sealed + 'static {
    /// The scope as a value.
    const SCOPE: Scope;
}

/// Issued on the VM fd (every SEV command; TDX CAPABILITIES, INIT_VM, FINALIZE_VM).
#[derive(Clone, Copy, Debug)]
pub enum VmScope {}

/// Issued on a vCPU fd (TDX INIT_VCPU, INIT_MEM_REGION, GET_CPUID).
#[derive(Clone, Copy, Debug)]
pub enum VcpuScope {}

impl CommandScope for VmScope {
    const SCOPE: Scope = Scope::Vm;
}

impl CommandScope for VcpuScope {
    const SCOPE: Scope = Scope::Vcpu;
}

/// A `KVM_MEMORY_ENCRYPT_OP` sub-command, identified by a type.
///
/// Implemented by the uninhabited marker types in [`sev`], [`snp`] and [`tdx`]. The family
/// and the scope are types, so the views' `issue` methods can require them:
///
/// ```
/// use kvm_coco::ops::{Amd, CommandScope, SubCommand, Tdx, VcpuScope, VmScope, snp, tdx};
/// fn amd_vm_command<C: SubCommand<Family = Amd, Scope = VmScope>>() -> u32 { C::ID }
/// fn tdx_vcpu_command<C: SubCommand<Family = Tdx, Scope = VcpuScope>>() -> u32 { C::ID }
/// assert_eq!(amd_vm_command::<snp::LaunchStart>(), 100);
/// assert_eq!(tdx_vcpu_command::<tdx::InitMemRegion>(), 3);
/// let scope = <<tdx::GetCpuid as SubCommand>::Scope as CommandScope>::SCOPE;
/// assert_eq!(scope, kvm_coco::ops::Scope::Vcpu);
/// ```
pub trait SubCommand {
    /// The kernel's sub-command id (`enum sev_cmd_id`, `enum kvm_tdx_cmd_id`).
    const ID: u32;
    /// The kernel's name, e.g. `KVM_SEV_SNP_LAUNCH_START`.
    const NAME: &'static str;
    /// Which command struct carries it: [`Amd`] or [`Tdx`].
    type Family: CommandFamily;
    /// Which fd it is issued on: [`VmScope`] or [`VcpuScope`].
    type Scope: CommandScope;
    /// The argument `data` points to ([`NoPayload`] for none, [`Immediate`] for a value
    /// passed in `data` itself).
    type Payload: Payload;
}

/// A sub-command that is memory-safe to issue with any value of its payload: the kernel
/// dereferences no user address for it beyond the payload itself, so the views issue it
/// from safe code (`issue`). The other sub-commands go through the `unsafe`
/// `issue_unchecked`, whose caller vouches for the addresses.
///
/// # Safety
///
/// For the id [`SubCommand::ID`] of [`SubCommand::Family`], the kernel must read and write
/// nothing of this process but the payload as [`Payload::data`] presents it (or nothing at
/// all, for [`NoPayload`] and [`Immediate`]), whatever the payload's field values are.
pub unsafe trait AddressFree: SubCommand {}

/// A type that can be passed as a sub-command's `data`.
///
/// # Safety
///
/// [`Payload::data`] must return either a pointer to `self` (or to a buffer owned by
/// `self`) laid out exactly as the C struct the kernel expects for every [`SubCommand`]
/// naming this type as its payload, and valid for reads and writes of that struct's full
/// size (including flexible-array entries the kernel is told about), or a plain value the
/// kernel does not dereference.
pub unsafe trait Payload {
    /// The value for `kvm_sev_cmd.data` / `kvm_tdx_cmd.data`.
    fn data(&mut self) -> u64;
}

/// The payload of sub-commands without an argument (`data` = 0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NoPayload;

// SAFETY: `data` is 0; the kernel does not dereference it for commands without an argument.
unsafe impl Payload for NoPayload {
    fn data(&mut self) -> u64 {
        0
    }
}

/// A value passed in `data` itself (TDX INIT_VCPU's initial RCX).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Immediate(pub u64);

// SAFETY: the value is not a pointer and the commands using `Immediate` do not dereference it.
unsafe impl Payload for Immediate {
    fn data(&mut self) -> u64 {
        self.0
    }
}

macro_rules! struct_payloads {
    ($($t:ty),* $(,)?) => {$(
        // SAFETY: the type is a `#[repr(C)]` mirror of the kernel struct (layout asserted in
        // kvm-coco-uapi) and `data` points to `self`, valid for its whole size.
        unsafe impl $crate::ops::Payload for $t {
            fn data(&mut self) -> u64 {
                std::ptr::from_mut(self) as u64
            }
        }
    )*};
}
pub(crate) use struct_payloads;

/// Marks sub-commands as [`AddressFree`]; every invocation says why each one is.
macro_rules! address_free {
    ($($c:ty),* $(,)?) => {$(
        // SAFETY: each invocation lists only sub-commands whose payload holds no user
        // address the kernel dereferences (the comment at the invocation says why).
        unsafe impl $crate::ops::AddressFree for $c {}
    )*};
}
pub(crate) use address_free;

/// A sub-command bound to its payload for the duration of the borrow `'a`.
///
/// ```
/// use kvm_coco::ops::{Command, Family, Scope, snp};
/// use kvm_coco_uapi::KvmSevSnpLaunchStart;
/// let mut start = KvmSevSnpLaunchStart::default();
/// let cmd = Command::<snp::LaunchStart>::new(&mut start);
/// assert_eq!(cmd.id(), 100);
/// assert_eq!(cmd.name(), "KVM_SEV_SNP_LAUNCH_START");
/// assert_eq!((cmd.family(), cmd.scope()), (Family::Sev, Scope::Vm));
/// ```
pub struct Command<'a, C: SubCommand> {
    data: u64,
    _payload: PhantomData<(&'a mut C::Payload, C)>,
}

impl<'a, C: SubCommand> Command<'a, C> {
    /// Binds `payload`.
    pub fn new(payload: &'a mut C::Payload) -> Self {
        Self {
            data: payload.data(),
            _payload: PhantomData,
        }
    }

    /// The kernel id.
    pub fn id(&self) -> u32 {
        C::ID
    }

    /// The kernel name.
    pub fn name(&self) -> &'static str {
        C::NAME
    }

    /// The family (which command struct carries it).
    pub fn family(&self) -> Family {
        <C::Family as CommandFamily>::FAMILY
    }

    /// The fd it is issued on.
    pub fn scope(&self) -> Scope {
        <C::Scope as CommandScope>::SCOPE
    }
}

impl<C: SubCommand> fmt::Debug for Command<'_, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Command")
            .field("name", &C::NAME)
            .field("id", &C::ID)
            .field("family", &self.family())
            .field("scope", &self.scope())
            .field("data", &format_args!("{:#x}", self.data))
            .finish()
    }
}

/// The firmware's part of a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FirmwareStatus {
    /// No status (the firmware was not involved, or it reported success).
    None,
    /// The SEV firmware status (`kvm_sev_cmd.error`).
    Sev(SevRetCode),
    /// The TDX module's SEAMCALL status (`kvm_tdx_cmd.hw_error`).
    Tdx(u64),
}

impl fmt::Display for FirmwareStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => Ok(()),
            Self::Sev(code) => write!(f, "firmware status {code}"),
            Self::Tdx(hw) => write!(f, "TDX hw_error {hw:#018x}"),
        }
    }
}

/// A failed `KVM_MEMORY_ENCRYPT_OP` sub-command.
///
/// Prints as e.g. `KVM_SEV_LAUNCH_MEASURE failed: EIO (5): Input/output error, firmware
/// status INVALID_GUEST_STATE (0x02) (hint: commands out of order …)`.
#[derive(Clone, Debug)]
pub struct EncryptOpError {
    /// The kernel name of the sub-command.
    pub command: &'static str,
    /// The errno of the ioctl.
    pub errno: Errno,
    /// The firmware status written back by the kernel.
    pub firmware: FirmwareStatus,
    /// The VM type the command was issued on.
    pub vm_type: VmType,
    /// What to do about it, when known.
    pub hint: Option<&'static str>,
}

impl EncryptOpError {
    /// Whether this means "not a confidential VM" (`ENOTTY` on a VM type without
    /// `KVM_MEMORY_ENCRYPT_OP`).
    pub fn is_not_confidential(&self) -> bool {
        self.errno.raw() == libc::ENOTTY && !self.vm_type.is_confidential()
    }
}

impl fmt::Display for EncryptOpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: {}", self.command, self.errno)?;
        if self.firmware != FirmwareStatus::None {
            write!(f, ", {}", self.firmware)?;
        }
        if let Some(hint) = self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

impl std::error::Error for EncryptOpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.errno)
    }
}

/// The hint shown for `ENOTTY` on a VM type without `KVM_MEMORY_ENCRYPT_OP`.
pub const HINT_NOT_CONFIDENTIAL: &str =
    "not a confidential VM: KVM_MEMORY_ENCRYPT_OP is only available on SEV/SNP/TDX VM types";
/// The hint of an SEV-family command on a TDX VM.
const HINT_SEV_ON_TDX: &str = "SEV command on a TDX VM: use the TDX sub-commands";
/// The hint of a TDX command on a VM that is not a TD.
const HINT_TDX_ON_NON_TD: &str = "TDX command on a VM that is not a TD";
/// The hint shown for a firmware INVALID_GUEST_STATE.
pub const HINT_OUT_OF_ORDER: &str = "commands out of order: the firmware's guest state does not allow this command now (check the launch sequence)";

pub(crate) fn sev_hint(vm_type: VmType, id: u32, errno: i32, fw: u32) -> Option<&'static str> {
    use kvm_coco_uapi::sev::*;
    use kvm_coco_uapi::sev_dev::{SEV_RET_INVALID_GUEST_STATE, SEV_RET_INVALID_PLATFORM_STATE};
    Some(match errno {
        libc::ENOTTY
            if !vm_type.is_confidential() && id != KVM_SEV_INIT && id != KVM_SEV_ES_INIT =>
        {
            HINT_NOT_CONFIDENTIAL
        }
        libc::ENOTTY if vm_type.vendor() == Some(Vendor::Intel) => HINT_SEV_ON_TDX,
        libc::ENOTTY if id == KVM_SEV_LAUNCH_UPDATE_VMSA => {
            "LAUNCH_UPDATE_VMSA exists only for SEV-ES VMs (after KVM_SEV_INIT2)"
        }
        libc::ENOTTY if id == KVM_SEV_SNP_LAUNCH_START => {
            "SEV not initialized (issue KVM_SEV_INIT2 first), or the firmware could not create the guest context"
        }
        libc::ENOTTY => {
            "SEV not initialized on this VM, or SEV disabled in kvm_amd: issue KVM_SEV_INIT2 first"
        }
        libc::EIO if fw == SEV_RET_INVALID_GUEST_STATE => HINT_OUT_OF_ORDER,
        libc::EIO if fw == SEV_RET_INVALID_PLATFORM_STATE => {
            "the SEV platform is not in the required state (is the firmware initialized?)"
        }
        libc::EIO => "the firmware refused the command: see its status",
        libc::EPERM if vm_type == VmType::Snp && id < 100 => {
            "legacy SEV command on an SNP VM: only the SNP_* commands are accepted after KVM_SEV_INIT2"
        }
        libc::EINVAL if id == KVM_SEV_INIT2 || id == KVM_SEV_INIT || id == KVM_SEV_ES_INIT => {
            "already initialized, vCPUs already exist (INIT must precede KVM_CREATE_VCPU), or vmsa_features/ghcb_version/flags not supported"
        }
        libc::EINVAL if id == KVM_SEV_SNP_LAUNCH_UPDATE => {
            "no SNP launch context (run SNP_LAUNCH_START first) or the GPA range has no guest_memfd-backed slot"
        }
        libc::EINVAL if id == KVM_SEV_SNP_LAUNCH_START => "SNP launch already started",
        libc::EINVAL if id == KVM_SEV_SNP_LAUNCH_FINISH => {
            "SNP_LAUNCH_START has not run, or the launch is already finished"
        }
        libc::EINVAL if id == KVM_SEV_SNP_ENABLE_REQ_CERTS => {
            "must be issued on an SNP VM after KVM_SEV_INIT2 and before any vCPU is created"
        }
        libc::EINVAL if id == KVM_SEV_LAUNCH_UPDATE_VMSA => {
            "a vCPU is already protected, has guest debugging enabled, or has DR7 set"
        }
        libc::EINVAL
            if id == KVM_SEV_SEND_UPDATE_VMSA
                || id == KVM_SEV_RECEIVE_UPDATE_VMSA
                || id == KVM_SEV_CERT_EXPORT =>
        {
            "KVM has no handler for this sub-command"
        }
        libc::EBADF => "sev_fd must be an open /dev/sev fd with the same number as at LAUNCH_START",
        libc::EBUSY => "the PSP timed out earlier and is considered dead",
        libc::ETIMEDOUT => "the PSP command timed out",
        libc::EFAULT => "the kernel could not access a buffer named in the payload",
        _ => return None,
    })
}

pub(crate) fn tdx_hint(vm_type: VmType, id: u32, errno: i32) -> Option<&'static str> {
    use kvm_coco_uapi::tdx::*;
    Some(match errno {
        libc::ENOTTY if !vm_type.is_confidential() => HINT_NOT_CONFIDENTIAL,
        libc::ENOTTY => HINT_TDX_ON_NON_TD,
        libc::E2BIG if id == KVM_TDX_CAPABILITIES => {
            "cpuid.nent is below the TDX module's CPUID configuration count: grow the buffer and retry"
        }
        libc::E2BIG => "too many CPUID entries (at most 256)",
        libc::EBUSY if id == KVM_TDX_FINALIZE_VM => "the TDX module is busy: retry",
        libc::EIO => "a SEAMCALL failed (see hw_error); the TD cannot be used any more",
        libc::EINVAL if id == KVM_TDX_INIT_VM => {
            "INIT_VM runs once, before vCPUs; flags, reserved fields and cpuid padding must be zero"
        }
        libc::EINVAL if id == KVM_TDX_INIT_MEM_REGION => {
            "INIT_VCPU must run first; source, gpa and count must be page-aligned, non-zero and private"
        }
        libc::EINVAL => {
            "wrong TD state: INIT_VM before vCPUs, INIT_VCPU before vCPU commands, nothing after FINALIZE_VM"
        }
        libc::EINTR => "interrupted by a signal: retry (progress is kept)",
        libc::EFAULT => "the kernel could not access a buffer named in the payload",
        _ => return None,
    })
}

/// Issues a SEV-family sub-command on `fd`, the VM fd (only [`SevVm`] calls it).
///
/// # Safety
///
/// Every user address inside the payload bound to `cmd` must be valid for the reads and
/// writes the kernel performs for `C` (the command's documentation lists them).
unsafe fn issue_sev<C: SubCommand<Family = Amd, Scope = VmScope>>(
    fd: &impl AsRawFd,
    vm_type: VmType,
    cmd: Command<'_, C>,
    sev_fd: Option<i32>,
) -> Result<(), EncryptOpError> {
    let mut raw = KvmSevCmd {
        id: C::ID,
        data: cmd.data,
        sev_fd: sev_fd.map_or(0, |fd| fd as u32),
        ..Default::default()
    };
    // SAFETY: KVM_MEMORY_ENCRYPT_OP on a VM fd takes a `struct kvm_sev_cmd`, mirrored by
    // `KvmSevCmd`, alive for the call; `data` points to the payload borrowed by `cmd` for
    // the whole call (a `Payload` guarantees its layout), and the user addresses inside it
    // are valid per this function's contract.
    let r = unsafe { ioctl_ptr(fd, KVM_MEMORY_ENCRYPT_OP, &raw mut raw) };
    match r {
        Ok(_) => Ok(()),
        Err(errno) => Err(EncryptOpError {
            command: C::NAME,
            errno,
            firmware: if raw.error == 0 {
                FirmwareStatus::None
            } else {
                FirmwareStatus::Sev(SevRetCode::from_raw(raw.error))
            },
            vm_type,
            hint: sev_hint(vm_type, C::ID, errno.raw(), raw.error),
        }),
    }
}

/// Issues a TDX sub-command on `fd`: the VM fd for [`VmScope`] commands (from [`TdxVm`]), a
/// vCPU fd for [`VcpuScope`] ones (from [`TdxVcpu`]); the views' bounds pick the fd.
///
/// # Safety
///
/// As [`issue_sev`]: every user address inside the payload must be valid for the kernel's
/// accesses.
unsafe fn issue_tdx<C: SubCommand<Family = Tdx>>(
    fd: &impl AsRawFd,
    vm_type: VmType,
    cmd: Command<'_, C>,
    flags: u32,
) -> Result<(), EncryptOpError> {
    let mut raw = KvmTdxCmd {
        id: C::ID,
        flags,
        data: cmd.data,
        hw_error: 0,
    };
    // SAFETY: KVM_MEMORY_ENCRYPT_OP on a TD's VM or vCPU fd takes a `struct kvm_tdx_cmd`,
    // mirrored by `KvmTdxCmd`, alive for the call; `data` is the payload borrowed by `cmd`
    // (pointer or immediate per its `Payload` impl), user addresses inside valid per this
    // function's contract.
    let r = unsafe { ioctl_ptr(fd, KVM_MEMORY_ENCRYPT_OP, &raw mut raw) };
    match r {
        Ok(_) => Ok(()),
        Err(errno) => Err(EncryptOpError {
            command: C::NAME,
            errno,
            firmware: if raw.hw_error == 0 {
                FirmwareStatus::None
            } else {
                FirmwareStatus::Tdx(raw.hw_error)
            },
            vm_type,
            hint: tdx_hint(vm_type, C::ID, errno.raw()),
        }),
    }
}

/// Declares sub-command marker types.
macro_rules! sub_commands {
    ($family:ident, $scope:ident; $(
        $(#[$meta:meta])* $name:ident = $id:ident, $payload:ty;
    )*) => {$(
        $(#[$meta])*
        #[derive(Debug, Clone, Copy)]
        pub enum $name {}

        impl $crate::ops::SubCommand for $name {
            const ID: u32 = $id;
            const NAME: &'static str = stringify!($id);
            type Family = $crate::ops::$family;
            type Scope = $crate::ops::$scope;
            type Payload = $payload;
        }
    )*};
}
pub(crate) use sub_commands;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_confidential_hint_on_default_vm() {
        let h = sev_hint(VmType::Default, 22, libc::ENOTTY, 0);
        assert_eq!(h, Some(HINT_NOT_CONFIDENTIAL));
        let h = tdx_hint(VmType::Default, 0, libc::ENOTTY);
        assert_eq!(h, Some(HINT_NOT_CONFIDENTIAL));
        // Legacy KVM_SEV_INIT is valid on a default VM: a different hint.
        assert_ne!(
            sev_hint(VmType::Default, 0, libc::ENOTTY, 0),
            Some(HINT_NOT_CONFIDENTIAL)
        );
    }

    #[test]
    fn out_of_order_hint_on_invalid_guest_state() {
        // LAUNCH_MEASURE (6) before LAUNCH_START: -EIO, error = 0x02 (facts §10.1).
        assert_eq!(
            sev_hint(VmType::Sev, 6, libc::EIO, 2),
            Some(HINT_OUT_OF_ORDER)
        );
        assert_ne!(
            sev_hint(VmType::Sev, 6, libc::EIO, 1),
            Some(HINT_OUT_OF_ORDER)
        );
        assert!(
            sev_hint(VmType::Snp, 2, libc::EPERM, 0)
                .unwrap()
                .contains("SNP")
        );
    }

    #[test]
    fn error_display_carries_everything() {
        let e = EncryptOpError {
            command: "KVM_SEV_LAUNCH_MEASURE",
            errno: Errno::from_raw(libc::EIO),
            firmware: FirmwareStatus::Sev(SevRetCode::from_raw(2)),
            vm_type: VmType::Sev,
            hint: Some(HINT_OUT_OF_ORDER),
        };
        let s = e.to_string();
        assert!(
            s.starts_with("KVM_SEV_LAUNCH_MEASURE failed: EIO (5)"),
            "{s}"
        );
        assert!(s.contains("INVALID_GUEST_STATE"), "{s}");
        assert!(s.contains("out of order"), "{s}");
        let e = EncryptOpError {
            command: "KVM_TDX_INIT_VM",
            errno: Errno::from_raw(libc::EIO),
            firmware: FirmwareStatus::Tdx(0xc000_0100_0000_0000),
            vm_type: VmType::Tdx,
            hint: None,
        };
        assert!(e.to_string().contains("hw_error 0xc000010000000000"));
    }
}
