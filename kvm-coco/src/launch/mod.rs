//! The vendor-neutral launch API: one launcher for SEV, SEV-ES, SEV-SNP and TDX, over the
//! kernel: the real one, or the software host (`kvm_coco::sim::host`, feature `sim`)
//! answering the same system calls.
//!
//! The launcher works over a VM the VMM created and keeps ([`BorrowedVm`]: its kvm-ioctls
//! `VmFd`, `/dev/sev` fd, guest RAM described by [`GuestRam`] and vCPUs lent as
//! [`BorrowedVcpu`] with [`Launch::adopt_vcpu`]), issuing only the confidential-computing
//! calls, or over one it creates itself ([`KvmBackend`], which delegates every such call to a
//! [`BorrowedVm`]). `kvm-coco/examples/own_vm.rs` shows the first: SNP with a kernel and
//! initrd into guest_memfd-backed slots, a TD, and SEV-ES with plain memory.
//!
//! The verbs follow the maintainers' classification:
//!
//! | verb | SEV | SEV-ES | SNP | TDX |
//! |---|---|---|---|---|
//! | [`Launch::new`] | `KVM_SEV_INIT2` | `KVM_SEV_INIT2` | `KVM_SEV_INIT2` (+ `ENABLE_REQ_CERTS`) | `KVM_TDX_CAPABILITIES`, `KVM_TDX_INIT_VM` |
//! | [`create_vcpu`](Launch::create_vcpu) | `KVM_CREATE_VCPU` | `KVM_CREATE_VCPU` | `KVM_CREATE_VCPU` | `KVM_CREATE_VCPU` + `KVM_TDX_INIT_VCPU` |
//! | [`start`](Launch::start) | `LAUNCH_START` | `LAUNCH_START` | `SNP_LAUNCH_START` | — |
//! | [`add`](Launch::add) (measured) | `LAUNCH_UPDATE_DATA` | `LAUNCH_UPDATE_DATA` | `SNP_LAUNCH_UPDATE` NORMAL | `INIT_MEM_REGION` + MEASURE |
//! | [`add`](Launch::add) (unmeasured / zero / secrets / CPUID) | — | — | UNMEASURED / ZERO / SECRETS / CPUID | `INIT_MEM_REGION` (unmeasured only) |
//! | [`measure`](Launch::measure) | `LAUNCH_MEASURE` | `LAUNCH_UPDATE_VMSA`, `LAUNCH_MEASURE` | — (in the report) | — (in the TDREPORT) |
//! | [`inject_secret`](Launch::inject_secret) | `LAUNCH_SECRET` | `LAUNCH_SECRET` | not available | not available |
//! | [`finish`](Launch::finish) | `LAUNCH_FINISH` | `LAUNCH_FINISH` | `SNP_LAUNCH_FINISH` (measures the VMSAs) | `FINALIZE_VM` |
//! | [`debug_read`](Launch::debug_read) / [`debug_write`](Launch::debug_write) | `DBG_DECRYPT` / `DBG_ENCRYPT` (policy without NODBG) | same | not available | not available |
//! | vCPU initial state ([`add_plan`](Launch::add_plan)) | — | registers from the plan's VMSAs | same | — (INIT_VCPU's RCX, [`TdxInit::vcpu_rcx`]) |
//!
//! The order is a typestate, `Launch<New>` → `Launch<Started>` → `Launch<Measured>` →
//! `Launch<Finished>`, so a call in the wrong state does not compile. What the typestate
//! cannot see (e.g. a second launch on the same VM, firmware state) comes back as the
//! kernel's errno inside [`LaunchError::Command`].
//!
//! The launcher does what QEMU does in production: it loops on `EAGAIN` and on partial
//! progress of the in/out commands (`SNP_LAUNCH_UPDATE`, `KVM_TDX_INIT_MEM_REGION`) and
//! checks that the whole range was consumed; it reports which CPUID leaves the SNP
//! firmware corrected when it rejects a CPUID page; it retries `KVM_TDX_INIT_VM` on
//! `EAGAIN` and grows the `KVM_TDX_CAPABILITIES` buffer on `E2BIG` up to 256 entries.
//!
//! Every operation is appended to a [`LaunchLog`] as the kernel reports it done, in the
//! format of the offline calculator, so [`LaunchLog::diff`] against
//! [`measure::measure`](crate::measure::measure) of the same plan locates any mismatch.
//!
//! # Example: a TDX launch, on the software host where the machine has no TDX
//!
//! ```
//! use kvm_coco::launch::{InitParams, KvmBackend, Launch, TdxInit};
//! use kvm_coco::measure::plan::{Data, LaunchPlan, Origin, PageKind, Step, Tee};
//! use kvm_coco::measure::firmware::TdvfSectionType;
//! use kvm_coco::sim::guest::{GuestOp, GuestOutcome};
//! use kvm_coco::sim::host::SoftwareHost;
//! use kvm_coco::sim::tdx::TdReport;
//! use kvm_coco::{Exit, Kvm, TdVmCallStatus, TdxExit, VmType};
//! use zerocopy::FromBytes;
//!
//! // This thread's /dev/kvm calls for confidential VMs now reach the software host.
//! let host = SoftwareHost::builder().start()?;
//! host.serve_current_thread()?;
//!
//! let image = vec![0x90u8; 0x2000];
//! let plan = LaunchPlan {
//!     tee: Tee::Tdx,
//!     initial_digest: None,
//!     steps: vec![Step {
//!         gpa: 0xffff_e000, len: 0x2000, kind: PageKind::Measured,
//!         data: Data::Borrowed(&image),
//!         origin: Origin::TdvfSection { index: 0, kind: TdvfSectionType::Bfv },
//!     }],
//! };
//! let backend = KvmBackend::new(&Kvm::open()?, VmType::Tdx)?;
//! let mut launch = Launch::new(backend, InitParams::Tdx(TdxInit::default()))?;
//! launch.add_plan_memory(&plan)?;
//! launch.add_memory(0x10_0000, 0x2000)?; // shared RAM for the quote buffer
//! launch.create_vcpu(0)?;
//! let mut launch = launch.start()?;
//! launch.add_plan(&plan)?;
//! let (_backend, mut vcpus) = launch.measure()?.finish()?.into_parts();
//!
//! // The TD asks for its TDREPORT (GetQuote); the VMM answers the exit.
//! let report_data = [0u8; 64];
//! host.load_program(&vcpus[0], [GuestOp::GetQuote { gpa: 0x10_0000, size: 0x2000, report_data }])?;
//! loop {
//!     match vcpus[0].run()? {
//!         Exit::Tdx(TdxExit::GetQuote(mut q)) => q.reply(TdVmCallStatus::Success),
//!         Exit::Hlt => break,
//!         other => panic!("unexpected exit {other:?}"),
//!     }
//! }
//! let report = host.outcomes(&vcpus[0])?.into_iter().find_map(|o| match o {
//!     GuestOutcome::TdReport(r) => TdReport::read_from_bytes(&r).ok(),
//!     _ => None,
//! });
//! // The platform's measurement (the TD's own MRTD) equals the offline calculation.
//! let offline = kvm_coco::measure::measure(&plan, &kvm_coco::measure::MeasureOptions {
//!     log: false, progress: None,
//! })?;
//! assert_eq!(report.unwrap().td_info.mrtd[..], *offline.digest.as_bytes());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::marker::PhantomData;
use std::sync::{Arc, OnceLock};

use kvm_coco_uapi::{
    KvmSevInit, KvmSevSnpLaunchFinish, KvmSevSnpLaunchStart, KvmTdxInitVm, TdxInitVmBuf,
};
use psp_driver::digest::{PAGE_SIZE, SNP_VMSA_GPA};

use crate::caps::TdxCaps;
use crate::error::{Errno, Error};
use crate::measure::calc::MeasureError;
use crate::measure::log::LaunchLog;
use crate::measure::plan::{Data, LaunchPlan, Origin, PageKind, Step};
use crate::ops::{EncryptOpError, FirmwareStatus};
use crate::vm_type::{NotConfidential, Tee, VmType};

pub mod backend;
mod borrowed;
mod kvm;
mod log;
pub mod params;

pub use backend::{Backend, LaunchVcpu, Remaining, SnpPageType, Source};
pub use borrowed::{BorrowedVcpu, BorrowedVm, GuestRam};
pub use kvm::KvmBackend;
pub use params::{
    HostLimits, InitParams, ParamError, SevEsInit, SevInit, SevSession, SnpIdentity, SnpInit,
    TdxInit,
};

use self::log::LogBuilder;

/// How often an `EAGAIN` (or `EBUSY` for FINALIZE) is retried before giving up.
pub const MAX_RETRIES: u32 = 16;
/// First `KVM_TDX_CAPABILITIES` capacity; doubled on `E2BIG` up to 256 entries.
pub const TDX_CAPS_INITIAL_ENTRIES: usize = 8;

/// Launch state: the VM is initialized; create vCPUs and memory, set registers.
#[derive(Debug)]
pub enum New {}
/// Launch state: the launch is started; add the initial image.
#[derive(Debug)]
pub enum Started {}
/// Launch state: the image is closed (and, for SEV, measured); inject secrets, finish.
#[derive(Debug)]
pub enum Measured {}
/// Launch state: the guest is launched and may run.
#[derive(Debug)]
pub enum Finished {}

/// One leaf the SNP firmware changed in a rejected CPUID page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuidCorrection {
    /// `EAX` input (leaf).
    pub leaf: u32,
    /// `ECX` input (sub-leaf).
    pub subleaf: u32,
    /// `EAX, EBX, ECX, EDX` as submitted.
    pub submitted: [u32; 4],
    /// `EAX, EBX, ECX, EDX` as the firmware accepts them.
    pub corrected: [u32; 4],
}

/// What `KVM_SEV_LAUNCH_MEASURE` returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SevLaunchMeasure {
    /// `HMAC-SHA256(TIK, 0x04 ‖ api ‖ build ‖ policy ‖ digest ‖ mnonce)`.
    pub measure: [u8; 32],
    /// The firmware's nonce.
    pub mnonce: [u8; 16],
}

/// The platform's own measurement of a launch, with where it came from. Only this is ever
/// "the measurement"; the launch log's digest is the expected value
/// ([`Launch::expected_measurement`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PlatformMeasurement {
    /// SEV / SEV-ES `LAUNCH_MEASURE`: an HMAC of the launch digest under the guest owner's
    /// TIK; the host cannot compare it, the owner can
    /// (`psp_driver::owner::session::verify_launch_measure`).
    LaunchMeasure(SevLaunchMeasure),
    /// `MEASUREMENT` of an SNP attestation report the guest obtained.
    SnpReport([u8; 48]),
    /// `MRTD` of a TDREPORT the TD obtained.
    TdReport([u8; 48]),
    /// Not observable from the host: SNP and TDX measurements reach the host only inside
    /// the guest's report.
    NotObservable,
}

impl PlatformMeasurement {
    /// The `MEASUREMENT` field (offset 0x90, 48 bytes) of an SNP attestation report.
    pub fn from_snp_report(report: &psp_driver::report::AttestationReport) -> Self {
        Self::SnpReport(report.measurement)
    }

    /// The MRTD of a TDREPORT (1024 bytes; `TDINFO_STRUCT` at 0x200, its `MRTD` at 0x10).
    pub fn from_td_report(report: &[u8]) -> Option<Self> {
        const MRTD: usize = 0x210;
        let m: [u8; 48] = report.get(MRTD..MRTD + 48)?.try_into().ok()?;
        Some(Self::TdReport(m))
    }

    /// Whether the platform's measurement equals `expected`: `Some` only when the host can
    /// tell (a report's measurement), `None` for `LAUNCH_MEASURE` (the owner's check) and
    /// when nothing was observed.
    pub fn matches(&self, expected: &[u8]) -> Option<bool> {
        match self {
            Self::SnpReport(m) | Self::TdReport(m) => Some(m[..] == *expected),
            Self::LaunchMeasure(_) | Self::NotObservable => None,
        }
    }

    /// Where the value comes from, for people.
    pub fn source(&self) -> &'static str {
        match self {
            Self::LaunchMeasure(_) => "LAUNCH_MEASURE (verifiable by the guest owner)",
            Self::SnpReport(_) => "MEASUREMENT of the guest's SNP attestation report",
            Self::TdReport(_) => "MRTD of the TD's TDREPORT",
            Self::NotObservable => "not observable from the host",
        }
    }
}

/// A LAUNCH_SECRET packet built by the guest owner
/// (`psp_driver::owner::session::build_secret`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaunchSecret {
    /// The 52-byte packet header (flags, IV, MAC).
    pub header: Vec<u8>,
    /// The encrypted secret (16-byte multiple).
    pub ciphertext: Vec<u8>,
    /// Where the firmware writes the plaintext (16-byte aligned).
    pub gpa: u64,
}

/// Errors of the launch API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LaunchError {
    /// The host cannot run this VM type at all (no SEV/TDX, no `/dev/sev`, …).
    #[error("{vm_type} launch is not supported on this host: {reason}")]
    NotSupportedOnHost {
        /// The requested type.
        vm_type: VmType,
        /// Why, in a sentence.
        reason: String,
    },
    /// The VM runs no confidential-computing technology (`default`, `sw-protected`): there
    /// is nothing to launch or measure on it.
    #[error(transparent)]
    NotConfidential(#[from] NotConfidential),
    /// The verb does not exist for this VM type.
    #[error("{verb} is not available for a {vm_type} VM: {reason}")]
    NotAvailable {
        /// The verb.
        verb: &'static str,
        /// The VM type.
        vm_type: VmType,
        /// Why.
        reason: &'static str,
    },
    /// The parameters were refused before any command.
    #[error("invalid launch parameters")]
    Params(#[from] ParamError),
    /// The parameters are for another VM type than the backend's VM.
    #[error("parameters for {params} given to a {vm} VM")]
    WrongVmType {
        /// The parameters' type.
        params: VmType,
        /// The VM's type.
        vm: VmType,
    },
    /// A sub-command failed: the kernel's errno, firmware status and hint.
    #[error(transparent)]
    Command(#[from] EncryptOpError),
    /// A core ioctl failed (memory, vCPU, registers).
    #[error(transparent)]
    Core(#[from] Error),
    /// The kernel returned success without consuming the whole range.
    #[error("{command} stopped at gpa {gpa:#x} with {remaining:#x} bytes left")]
    IncompleteRange {
        /// The command.
        command: &'static str,
        /// Where it stopped.
        gpa: u64,
        /// Bytes not populated.
        remaining: u64,
    },
    /// The SNP firmware rejected the CPUID page; the leaves it corrected are listed.
    #[error("the firmware rejected the CPUID page at {gpa:#x}; {} leaves differ: {corrections:x?}", corrections.len())]
    CpuidRejected {
        /// The page's GPA.
        gpa: u64,
        /// What the firmware changed.
        corrections: Vec<CpuidCorrection>,
        /// The failed command.
        #[source]
        source: EncryptOpError,
    },
    /// `EAGAIN` / `EBUSY` persisted.
    #[error("{command} still busy after {tries} tries")]
    Busy {
        /// The command.
        command: &'static str,
        /// Tries made.
        tries: u32,
        /// The last answer.
        #[source]
        source: EncryptOpError,
    },
    /// A TDX region needs an initialized vCPU (`KVM_TDX_INIT_MEM_REGION` is a vCPU ioctl).
    #[error("create a vCPU before adding TDX memory (INIT_MEM_REGION runs on a vCPU fd)")]
    NoVcpu,
    /// The plan is for another technology, or carries a precomputed digest.
    #[error("a {plan} plan cannot be executed on a {vm_type} VM{}", if *precomputed { " (it starts from a precomputed firmware digest)" } else { "" })]
    PlanMismatch {
        /// The plan's technology.
        plan: Tee,
        /// The VM's type.
        vm_type: VmType,
        /// Whether the plan starts from a precomputed digest.
        precomputed: bool,
    },
    /// A VMSA of the plan carries other `SEV_FEATURES` than the ones KVM writes for these
    /// parameters, so the platform's measurement would differ from the expected one.
    #[error(
        "the plan's VMSA of vCPU {vcpu} has SEV_FEATURES {plan:#x}, but this launch's VMSAs get {kvm:#x} (the VMSA features requested at KVM_SEV_INIT2{}); {}",
        if *snp { ", plus SNP_ACTIVE" } else { "" },
        if *snp {
            "build the plan from InitParams::plan_inputs so both come from the same features"
        } else {
            "SEV-ES plans measure SEV_FEATURES 0 (as sev-snp-measure does), so request no VMSA features for a measured SEV-ES launch"
        }
    )]
    GuestFeatures {
        /// The vCPU whose VMSA differs.
        vcpu: u32,
        /// `SEV_FEATURES` in the plan's VMSA.
        plan: u64,
        /// `SEV_FEATURES` KVM writes ([`InitParams::guest_features`]).
        kvm: u64,
        /// Whether the guest is SNP (KVM adds SNP_ACTIVE).
        snp: bool,
    },
    /// The plan does not measure as many VMSAs as there are vCPUs.
    #[error("the plan measures {plan} VMSAs but the VM has {vcpus} vCPUs")]
    VcpuCount {
        /// VMSAs in the plan.
        plan: usize,
        /// vCPUs created.
        vcpus: usize,
    },
    /// A malformed region (alignment, length, kind).
    #[error("region gpa {gpa:#x} len {len:#x}: {reason}")]
    BadRegion {
        /// Start.
        gpa: u64,
        /// Length.
        len: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// A step is inconsistent (checked like the offline calculator does).
    #[error(transparent)]
    Plan(#[from] MeasureError),
    /// An access outside the guest RAM added with `add_memory`.
    #[error("no guest memory at {gpa:#x} (+{len:#x})")]
    NoMemory {
        /// Start.
        gpa: u64,
        /// Length.
        len: u64,
    },
    /// The guest policy forbids debugging (SEV `NODBG`).
    #[error("the guest policy {policy:#x} forbids debugging (NODBG is set)")]
    DebugNotAllowed {
        /// The policy.
        policy: u32,
    },
    /// No vCPU with that id.
    #[error("no vCPU {0}")]
    NoSuchVcpu(u32),
}

impl LaunchError {
    /// The errno behind the failure, if the kernel produced one.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Self::Command(e)
            | Self::Busy { source: e, .. }
            | Self::CpuidRejected { source: e, .. } => Some(e.errno),
            Self::Core(e) => e.errno(),
            _ => None,
        }
    }

    /// Whether this means "the host cannot do this launch at all".
    pub fn is_not_supported_on_host(&self) -> bool {
        matches!(self, Self::NotSupportedOnHost { .. })
    }
}

/// A confidential VM launch in state `S` over backend `B`.
///
/// See the [module documentation](self) for the verbs and the order.
pub struct Launch<S, B: Backend> {
    backend: B,
    params: InitParams,
    vcpus: Vec<B::Vcpu>,
    log: LogBuilder,
    step: usize,
    vmsas: Vec<(usize, Origin, Arc<[u8]>)>,
    sev_measure: Option<SevLaunchMeasure>,
    /// The complete log, computed from `log` when first asked for after `finish`.
    final_log: OnceLock<LaunchLog>,
    _state: PhantomData<S>,
}

impl<S, B: Backend> std::fmt::Debug for Launch<S, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Launch")
            .field("state", &std::any::type_name::<S>())
            .field("backend", &self.backend)
            .field("vcpus", &self.vcpus.len())
            .field("logged", &self.step)
            .finish_non_exhaustive()
    }
}

fn words48(b: &[u8; 48]) -> [u64; 6] {
    let mut w = [0u64; 6];
    for (o, c) in w.iter_mut().zip(b.chunks_exact(8)) {
        let mut x = [0u8; 8];
        x.copy_from_slice(c);
        *o = u64::from_le_bytes(x);
    }
    w
}

/// Retries `f` while it fails with `EAGAIN` (and `EBUSY` when `busy` is set).
fn retry<T>(
    command: &'static str,
    busy: bool,
    mut f: impl FnMut() -> Result<T, EncryptOpError>,
) -> Result<T, LaunchError> {
    let mut tries = 0;
    loop {
        tries += 1;
        match f() {
            Err(e) if e.errno.raw() == libc::EAGAIN || (busy && e.errno.raw() == libc::EBUSY) => {
                if tries >= MAX_RETRIES {
                    return Err(LaunchError::Busy {
                        command,
                        tries,
                        source: e,
                    });
                }
            }
            r => return r.map_err(LaunchError::Command),
        }
    }
}

/// Reads the TDX capabilities, growing the buffer on `E2BIG` (QEMU: doubling up to
/// `KVM_MAX_CPUID_ENTRIES`).
fn tdx_caps<B: Backend>(backend: &mut B) -> Result<TdxCaps, LaunchError> {
    let buf = crate::ops::tdx::read_capabilities_growing(TDX_CAPS_INITIAL_ENTRIES, |buf| {
        backend.tdx_capabilities(buf)
    })?;
    Ok(TdxCaps::from(&buf))
}

impl<B: Backend> Launch<New, B> {
    /// Initializes the VM for a launch: validates `params` against the host, then issues
    /// `KVM_SEV_INIT2` (SEV, SEV-ES, SNP; plus `ENABLE_REQ_CERTS` when asked) or
    /// `KVM_TDX_CAPABILITIES` + `KVM_TDX_INIT_VM` (retried on `EAGAIN`) and enables the
    /// split irqchip. SNP and TDX VMs also get MAP_GPA_RANGE exits enabled.
    ///
    /// # Errors
    /// [`LaunchError::NotConfidential`] for a VM that runs no technology,
    /// [`LaunchError::WrongVmType`], [`LaunchError::Params`], or the kernel's answer.
    pub fn new(mut backend: B, params: InitParams) -> Result<Self, LaunchError> {
        let vm = backend.vm_type();
        let tee = Tee::try_from(vm)?;
        if params.tee() != tee {
            return Err(LaunchError::WrongVmType {
                params: params.vm_type(),
                vm,
            });
        }
        let mut host = backend.host_limits()?;
        if tee == Tee::Tdx {
            host.tdx = Some(tdx_caps(&mut backend)?);
        }
        params.validate(&host)?;
        match &params {
            InitParams::Sev(_) => {
                backend.sev_init2(&mut KvmSevInit::default())?;
            }
            InitParams::SevEs(p) => {
                backend.sev_init2(&mut KvmSevInit {
                    vmsa_features: p.vmsa_features,
                    ghcb_version: p.ghcb_version,
                    ..Default::default()
                })?;
            }
            InitParams::Snp(p) => {
                backend.sev_init2(&mut KvmSevInit {
                    vmsa_features: p.vmsa_features,
                    ghcb_version: p.ghcb_version,
                    ..Default::default()
                })?;
                if p.req_certs {
                    backend.snp_enable_req_certs()?;
                }
                backend.enable_map_gpa_range_exits()?;
            }
            InitParams::Tdx(p) => {
                let mut buf = TdxInitVmBuf::with_capacity(p.cpuid.len());
                buf.set_header(&KvmTdxInitVm {
                    attributes: p.attributes,
                    xfam: p.xfam,
                    mrconfigid: words48(&p.mrconfigid),
                    mrowner: words48(&p.mrowner),
                    mrownerconfig: words48(&p.mrownerconfig),
                    ..Default::default()
                });
                for e in &p.cpuid {
                    buf.push(*e)
                        .map_err(|_| ParamError::TdxCpuidCount(p.cpuid.len()))?;
                }
                retry("KVM_TDX_INIT_VM", false, || backend.tdx_init_vm(&mut buf))?;
                backend.enable_split_irqchip()?;
                backend.enable_map_gpa_range_exits()?;
            }
        }
        backend.initialized()?;
        Ok(Self {
            log: LogBuilder::new(tee),
            backend,
            params,
            vcpus: Vec::new(),
            step: 0,
            vmsas: Vec::new(),
            sev_measure: None,
            final_log: OnceLock::new(),
            _state: PhantomData,
        })
    }

    /// Adds guest RAM `[gpa, gpa+size)` (4 KiB aligned): guest_memfd-backed for SNP and
    /// TDX, ordinary memory for SEV / SEV-ES.
    ///
    /// # Errors
    /// [`LaunchError::BadRegion`] for a misaligned range; the backend's error.
    pub fn add_memory(&mut self, gpa: u64, size: u64) -> Result<(), LaunchError> {
        if size == 0
            || !gpa.is_multiple_of(PAGE_SIZE as u64)
            || !size.is_multiple_of(PAGE_SIZE as u64)
        {
            return Err(LaunchError::BadRegion {
                gpa,
                len: size,
                reason: "guest memory must be non-empty and 4 KiB aligned",
            });
        }
        self.backend.add_memory(gpa, size)
    }

    /// Adds guest RAM covering every non-VMSA step of `plan` (pages merged into ranges).
    ///
    /// # Errors
    /// As [`add_memory`](Self::add_memory).
    pub fn add_plan_memory(&mut self, plan: &LaunchPlan<'_>) -> Result<(), LaunchError> {
        for (gpa, size) in plan_memory(plan) {
            self.add_memory(gpa, size)?;
        }
        Ok(())
    }

    /// `KVM_SEV_LAUNCH_START` / `KVM_SEV_SNP_LAUNCH_START` (nothing for TDX).
    ///
    /// # Errors
    /// The kernel's answer.
    pub fn start(mut self) -> Result<Launch<Started, B>, LaunchError> {
        match &self.params {
            InitParams::Sev(p) => {
                self.backend
                    .sev_launch_start(p.policy, p.session.as_ref())?;
            }
            InitParams::SevEs(p) => {
                self.backend
                    .sev_launch_start(p.policy, p.session.as_ref())?;
            }
            InitParams::Snp(p) => {
                let mut start = KvmSevSnpLaunchStart {
                    policy: p.policy.bits(),
                    gosvw: p.gosvw,
                    ..Default::default()
                };
                self.backend.snp_launch_start(&mut start)?;
            }
            InitParams::Tdx(_) => {}
        }
        Ok(self.into_state())
    }
}

/// Page ranges (merged) that the non-VMSA steps of `plan` touch.
pub fn plan_memory(plan: &LaunchPlan<'_>) -> Vec<(u64, u64)> {
    let page = PAGE_SIZE as u64;
    let mut r: Vec<(u64, u64)> = plan
        .steps
        .iter()
        .filter(|s| s.kind != PageKind::Vmsa && s.len > 0)
        .map(|s| {
            let start = s.gpa / page * page;
            let end = s.gpa.saturating_add(s.len).div_ceil(page) * page;
            (start, end)
        })
        .collect();
    r.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (s, e) in r {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out.into_iter().map(|(s, e)| (s, e - s)).collect()
}

impl<S, B: Backend> Launch<S, B> {
    fn into_state<T>(self) -> Launch<T, B> {
        Launch {
            backend: self.backend,
            params: self.params,
            vcpus: self.vcpus,
            log: self.log,
            step: self.step,
            vmsas: self.vmsas,
            sev_measure: self.sev_measure,
            final_log: self.final_log,
            _state: PhantomData,
        }
    }

    /// The VM type.
    pub fn vm_type(&self) -> VmType {
        self.backend.vm_type()
    }

    /// The technology launched (that of the parameters, which [`Launch::new`] checked
    /// against the VM's type).
    pub fn tee(&self) -> Tee {
        self.params.tee()
    }

    /// The init parameters.
    pub fn params(&self) -> &InitParams {
        &self.params
    }

    /// The backend (escape hatch to the VM).
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The backend, mutably (escape hatch to the VM).
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// The vCPUs created so far.
    pub fn vcpus(&self) -> &[B::Vcpu] {
        &self.vcpus
    }

    /// The vCPU with `id`, mutably (set registers before the state is protected; run it
    /// once finished).
    ///
    /// # Errors
    /// [`LaunchError::NoSuchVcpu`].
    pub fn vcpu_mut(&mut self, id: u32) -> Result<&mut B::Vcpu, LaunchError> {
        self.vcpus
            .iter_mut()
            .find(|v| v.id() == id)
            .ok_or(LaunchError::NoSuchVcpu(id))
    }

    /// What LAUNCH_MEASURE returned (SEV / SEV-ES, once measured).
    pub fn sev_launch_measure(&self) -> Option<&SevLaunchMeasure> {
        self.sev_measure.as_ref()
    }

    /// Reads guest memory decrypted (`KVM_SEV_DBG_DECRYPT`), for SEV and SEV-ES guests
    /// whose policy allows debugging.
    ///
    /// # Errors
    /// [`LaunchError::DebugNotAllowed`] when the policy forbids it (checked before the
    /// ioctl); [`LaunchError::NotAvailable`] for SNP (KVM has no SNP debug command) and TDX
    /// (KVM does not support debug TDs); the kernel's answer.
    pub fn debug_read(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), LaunchError> {
        self.debug_allowed("debug_read")?;
        Ok(self.backend.sev_dbg_decrypt(gpa, buf)?)
    }

    /// Writes guest memory encrypted with the guest's key (`KVM_SEV_DBG_ENCRYPT`), under
    /// the same conditions as [`debug_read`](Self::debug_read).
    ///
    /// # Errors
    /// As [`debug_read`](Self::debug_read).
    pub fn debug_write(&mut self, gpa: u64, data: &[u8]) -> Result<(), LaunchError> {
        self.debug_allowed("debug_write")?;
        Ok(self.backend.sev_dbg_encrypt(gpa, data)?)
    }

    fn debug_allowed(&self, verb: &'static str) -> Result<(), LaunchError> {
        let vm_type = self.vm_type();
        let policy = match &self.params {
            InitParams::Sev(p) => p.policy,
            InitParams::SevEs(p) => p.policy,
            InitParams::Snp(_) => {
                return Err(LaunchError::NotAvailable {
                    verb,
                    vm_type,
                    reason: "KVM exposes no debug decrypt/encrypt for SNP guests",
                });
            }
            InitParams::Tdx(_) => {
                return Err(LaunchError::NotAvailable {
                    verb,
                    vm_type,
                    reason: "KVM does not support debug TDs (ATTRIBUTES.DEBUG)",
                });
            }
        };
        // SEV_POLICY_NODBG (bit 0).
        if policy & 1 != 0 {
            return Err(LaunchError::DebugNotAllowed { policy });
        }
        Ok(())
    }

    /// The log so far.
    pub fn log_so_far(&self) -> LaunchLog {
        self.log.finish()
    }

    fn do_create_vcpu(&mut self, id: u32) -> Result<&mut B::Vcpu, LaunchError> {
        let vcpu = self.backend.create_vcpu(id)?;
        self.do_adopt_vcpu(vcpu)
    }

    fn do_adopt_vcpu(&mut self, vcpu: B::Vcpu) -> Result<&mut B::Vcpu, LaunchError> {
        let id = vcpu.id();
        if let InitParams::Tdx(p) = &self.params {
            self.backend.tdx_init_vcpu(&vcpu, p.vcpu_rcx)?;
        }
        self.vcpus.push(vcpu);
        self.vcpus.last_mut().ok_or(LaunchError::NoSuchVcpu(id))
    }
}

impl<B: Backend> Launch<New, B> {
    /// `KVM_CREATE_VCPU` (and `KVM_TDX_INIT_VCPU` for TDX). Create every vCPU before
    /// the image is closed: SEV-ES and SNP measure the VMSAs of the vCPUs that exist.
    ///
    /// # Errors
    /// The kernel's answer.
    pub fn create_vcpu(&mut self, id: u32) -> Result<&mut B::Vcpu, LaunchError> {
        self.do_create_vcpu(id)
    }

    /// Takes a vCPU the caller created (over a [`BorrowedVm`], a [`BorrowedVcpu`]) into the
    /// launch: `KVM_TDX_INIT_VCPU` for TDX; for SEV-ES and SNP its registers are set from the
    /// plan's VMSA by [`add_plan`](Launch::add_plan). Create and adopt every vCPU after
    /// [`Launch::new`] (the kernel refuses vCPUs before `KVM_SEV_INIT2` / `KVM_TDX_INIT_VM`)
    /// and in id order (the plan's n-th VMSA goes to the n-th vCPU).
    ///
    /// # Errors
    /// The kernel's answer.
    pub fn adopt_vcpu(&mut self, vcpu: B::Vcpu) -> Result<&mut B::Vcpu, LaunchError> {
        self.do_adopt_vcpu(vcpu)
    }
}

impl<B: Backend> Launch<Started, B> {
    /// `KVM_CREATE_VCPU` after LAUNCH_START (allowed until the image is closed).
    ///
    /// # Errors
    /// The kernel's answer.
    pub fn create_vcpu(&mut self, id: u32) -> Result<&mut B::Vcpu, LaunchError> {
        self.do_create_vcpu(id)
    }

    /// [`Launch::adopt_vcpu`] after LAUNCH_START (allowed until the image is closed).
    ///
    /// # Errors
    /// The kernel's answer.
    pub fn adopt_vcpu(&mut self, vcpu: B::Vcpu) -> Result<&mut B::Vcpu, LaunchError> {
        self.do_adopt_vcpu(vcpu)
    }

    /// Executes every step of `plan`, in order, logging each one. VMSA steps are not
    /// issued here: KVM measures VMSAs itself (SEV-ES at [`measure`](Self::measure), SNP
    /// at [`finish`](Launch::finish)); the plan's pages are what the log records then.
    ///
    /// # Errors
    /// [`LaunchError::PlanMismatch`]; [`LaunchError::GuestFeatures`] if a VMSA of the plan
    /// carries other `SEV_FEATURES` than KVM writes for the parameters (checked before any
    /// step); or the first failing step.
    pub fn add_plan(&mut self, plan: &LaunchPlan<'_>) -> Result<(), LaunchError> {
        let vm_type = self.vm_type();
        if plan.tee != self.tee() || plan.initial_digest.is_some() {
            return Err(LaunchError::PlanMismatch {
                plan: plan.tee,
                vm_type,
                precomputed: plan.initial_digest.is_some(),
            });
        }
        self.check_guest_features(plan)?;
        for (index, s) in plan.steps.iter().enumerate() {
            self.step = index;
            if s.kind == PageKind::Vmsa {
                let page: Arc<[u8]> = match &s.data {
                    Data::Shared(p) => p.clone(),
                    other => Arc::from(other.as_slice()),
                };
                // vCPU initial state: the plan's VMSA of vCPU n goes to the n-th vCPU.
                if let Some(vcpu) = self.vcpus.get_mut(self.vmsas.len()) {
                    set_state_from_vmsa(vcpu, &page)?;
                }
                self.vmsas.push((index, s.origin, page));
            } else {
                self.add_step(s, index)?;
            }
        }
        self.step = plan.steps.len();
        Ok(())
    }

    /// [`LaunchError::GuestFeatures`] unless every VMSA of `plan` carries the `SEV_FEATURES`
    /// KVM writes for this launch's parameters.
    fn check_guest_features(&self, plan: &LaunchPlan<'_>) -> Result<(), LaunchError> {
        use crate::measure::vmsa::offsets::SEV_FEATURES;
        let Some(kvm) = self.params.guest_features() else {
            return Ok(());
        };
        let vmsas = plan.steps.iter().filter(|s| s.kind == PageKind::Vmsa);
        for (n, s) in vmsas.enumerate() {
            let plan_features = le(s.data.as_slice(), SEV_FEATURES, 8);
            if plan_features != kvm {
                let vcpu = match s.origin {
                    Origin::Vmsa { vcpu } => vcpu,
                    _ => u32::try_from(n).unwrap_or(u32::MAX),
                };
                return Err(LaunchError::GuestFeatures {
                    vcpu,
                    plan: plan_features,
                    kvm,
                    snp: self.tee() == Tee::Snp,
                });
            }
        }
        Ok(())
    }

    /// Adds one region of the initial image: [`Step::kind`] says how (measured, unmeasured,
    /// zero, secrets, CPUID; see the [module table](self)).
    ///
    /// # Errors
    /// [`LaunchError::NotAvailable`] for a kind the VM type cannot add; the kernel's
    /// answer; [`LaunchError::IncompleteRange`] if the kernel stopped early.
    pub fn add(&mut self, step: &Step<'_>) -> Result<(), LaunchError> {
        let index = self.step;
        self.step += 1;
        self.add_step(step, index)
    }

    /// Adds `data` at `gpa` as measured content (zero-padded to whole pages for SNP/TDX).
    ///
    /// # Errors
    /// As [`add`](Self::add).
    pub fn add_measured(&mut self, gpa: u64, data: &[u8]) -> Result<(), LaunchError> {
        let len = match self.tee() {
            Tee::Sev | Tee::SevEs => data.len() as u64,
            _ => (data.len() as u64).div_ceil(PAGE_SIZE as u64) * PAGE_SIZE as u64,
        };
        self.add(&Step {
            gpa,
            len,
            kind: PageKind::Measured,
            data: Data::Borrowed(data),
            origin: Origin::Firmware,
        })
    }

    fn add_step(&mut self, s: &Step<'_>, index: usize) -> Result<(), LaunchError> {
        let vm_type = self.vm_type();
        if s.data.as_slice().len() as u64 > s.len {
            return Err(MeasureError::DataTooLong {
                index,
                data: s.data.as_slice().len(),
                len: s.len,
            }
            .into());
        }
        let src = Source {
            gpa: s.gpa,
            bytes: s.data.as_slice(),
        };
        match self.tee() {
            Tee::Sev | Tee::SevEs => {
                if s.kind != PageKind::Measured {
                    return Err(LaunchError::NotAvailable {
                        verb: "adding an unmeasured, zero, secrets or CPUID region",
                        vm_type,
                        reason: "SEV and SEV-ES measure every pre-encrypted region (LAUNCH_UPDATE_DATA)",
                    });
                }
                if s.len == 0 || !s.len.is_multiple_of(16) || !s.gpa.is_multiple_of(16) {
                    return Err(LaunchError::BadRegion {
                        gpa: s.gpa,
                        len: s.len,
                        reason: "LAUNCH_UPDATE_DATA needs a non-empty, 16-byte aligned region",
                    });
                }
                self.backend.sev_launch_update_data(s.gpa, s.len, src)?;
                let shared = s.data.shared();
                self.log
                    .region(index, s.gpa, s.len, s.kind, s.origin, src, shared);
                Ok(())
            }
            Tee::Snp => self.add_snp(s, index, src),
            Tee::Tdx => self.add_tdx(s, index, src),
        }
    }

    fn paged(s: &Step<'_>) -> Result<(), LaunchError> {
        let page = PAGE_SIZE as u64;
        if s.len == 0 || !s.gpa.is_multiple_of(page) || !s.len.is_multiple_of(page) {
            return Err(LaunchError::BadRegion {
                gpa: s.gpa,
                len: s.len,
                reason: "SNP and TDX populate whole, aligned 4 KiB pages",
            });
        }
        Ok(())
    }

    /// Logs the pages the kernel consumed in one populate call, `[before.gpa, after)`
    /// clipped to the request, reading each page's content through `page` (zeroed for
    /// zero pages).
    fn log_consumed(
        &mut self,
        s: &Step<'_>,
        index: usize,
        src: Source<'_>,
        (before, after): (Remaining, u64),
    ) {
        let end = after.min(before.gpa + before.len);
        if end > before.gpa {
            let npages = (end - before.gpa).div_ceil(PAGE_SIZE as u64);
            let shared = s.data.shared();
            self.log
                .pages(index, before.gpa, npages, s.kind, s.origin, src, shared);
        }
    }

    /// [`LaunchError::IncompleteRange`] unless the populate loop ended exactly at the end
    /// of the step.
    fn check_complete(
        command: &'static str,
        s: &Step<'_>,
        range: Remaining,
    ) -> Result<(), LaunchError> {
        if range.gpa != s.gpa + s.len {
            return Err(LaunchError::IncompleteRange {
                command,
                gpa: range.gpa,
                remaining: s.gpa + s.len - range.gpa,
            });
        }
        Ok(())
    }

    fn add_snp(&mut self, s: &Step<'_>, index: usize, src: Source<'_>) -> Result<(), LaunchError> {
        Self::paged(s)?;
        let page_type = match s.kind {
            PageKind::Measured => SnpPageType::Normal,
            PageKind::Unmeasured => SnpPageType::Unmeasured,
            PageKind::Zero => SnpPageType::Zero,
            PageKind::Secrets => SnpPageType::Secrets,
            PageKind::Cpuid => SnpPageType::Cpuid,
            PageKind::Vmsa => {
                return Err(LaunchError::NotAvailable {
                    verb: "adding a VMSA page",
                    vm_type: VmType::Snp,
                    reason: "KVM measures every vCPU's VMSA itself at SNP_LAUNCH_FINISH",
                });
            }
        };
        // QEMU: make the range private first.
        self.backend.set_private(s.gpa, s.len, true)?;
        let mut range = Remaining {
            gpa: s.gpa,
            len: s.len,
        };
        let mut busy = 0;
        let mut page = [0u8; PAGE_SIZE];
        while range.len > 0 {
            let before = range;
            let mut corrected = [0u8; PAGE_SIZE];
            let backend = &mut self.backend;
            let mut update = || {
                backend.snp_launch_update(
                    &mut range,
                    page_type,
                    src,
                    (page_type == SnpPageType::Cpuid).then_some(&mut corrected),
                )
            };
            let r = update();
            self.log_consumed(s, index, src, (before, range.gpa));
            match r {
                Ok(()) if range.len > 0 && range.gpa == before.gpa => {
                    return Err(LaunchError::IncompleteRange {
                        command: "KVM_SEV_SNP_LAUNCH_UPDATE",
                        gpa: range.gpa,
                        remaining: range.len,
                    });
                }
                Ok(()) => busy = 0,
                Err(e) if e.errno.raw() == libc::EAGAIN => {
                    // Progress resets the count, as in the TDX loop: only calls that made
                    // none are retries of the same work.
                    busy = if range.gpa == before.gpa { busy + 1 } else { 0 };
                    if busy >= MAX_RETRIES {
                        return Err(LaunchError::Busy {
                            command: "KVM_SEV_SNP_LAUNCH_UPDATE",
                            tries: busy,
                            source: e,
                        });
                    }
                }
                Err(e)
                    if page_type == SnpPageType::Cpuid
                        && e.firmware
                            == FirmwareStatus::Sev(kvm_coco_uapi::SevRetCode::InvalidParam) =>
                {
                    src.page(range.gpa, &mut page);
                    return Err(LaunchError::CpuidRejected {
                        gpa: range.gpa,
                        corrections: cpuid_diff(&page, &corrected),
                        source: e,
                    });
                }
                Err(e) => return Err(e.into()),
            }
        }
        Self::check_complete("KVM_SEV_SNP_LAUNCH_UPDATE", s, range)
    }

    fn add_tdx(&mut self, s: &Step<'_>, index: usize, src: Source<'_>) -> Result<(), LaunchError> {
        Self::paged(s)?;
        let measure = match s.kind {
            PageKind::Measured => true,
            PageKind::Unmeasured => false,
            _ => {
                return Err(LaunchError::NotAvailable {
                    verb: "adding a zero, secrets, CPUID or VMSA region",
                    vm_type: VmType::Tdx,
                    reason: "TDX adds pages with or without MR.EXTEND only",
                });
            }
        };
        if self.vcpus.is_empty() {
            return Err(LaunchError::NoVcpu);
        }
        self.backend.set_private(s.gpa, s.len, true)?;
        let mut range = Remaining {
            gpa: s.gpa,
            len: s.len,
        };
        let mut stalls = 0;
        while range.len > 0 {
            let before = range;
            let r = self
                .backend
                .tdx_init_mem_region(&self.vcpus[0], &mut range, measure, src);
            self.log_consumed(s, index, src, (before, range.gpa));
            let progressed = range.gpa != before.gpa;
            match r {
                Ok(()) if range.len > 0 && !progressed => {
                    return Err(LaunchError::IncompleteRange {
                        command: "KVM_TDX_INIT_MEM_REGION",
                        gpa: range.gpa,
                        remaining: range.len,
                    });
                }
                Ok(()) => stalls = 0,
                // QEMU retries EAGAIN and EINTR (a signal; progress is kept).
                Err(e) if matches!(e.errno.raw(), libc::EAGAIN | libc::EINTR) => {
                    stalls = if progressed { 0 } else { stalls + 1 };
                    if stalls >= MAX_RETRIES {
                        return Err(LaunchError::Busy {
                            command: "KVM_TDX_INIT_MEM_REGION",
                            tries: stalls,
                            source: e,
                        });
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Self::check_complete("KVM_TDX_INIT_MEM_REGION", s, range)
    }

    /// Closes the initial image. SEV: `LAUNCH_MEASURE`. SEV-ES: `LAUNCH_UPDATE_VMSA`
    /// (every vCPU's registers are encrypted, measured and protected from now on), then
    /// `LAUNCH_MEASURE`. SNP and TDX: no command; their measurement is reported in the
    /// attestation evidence once the launch is finished.
    ///
    /// # Errors
    /// [`LaunchError::VcpuCount`] if a plan's VMSA count differs from the vCPUs; the
    /// kernel's answer.
    pub fn measure(mut self) -> Result<Launch<Measured, B>, LaunchError> {
        match self.tee() {
            Tee::Sev => self.fetch_measure()?,
            Tee::SevEs => {
                self.check_vmsa_count()?;
                self.backend.sev_launch_update_vmsa()?;
                for v in &mut self.vcpus {
                    v.mark_protected();
                }
                for (index, origin, page) in std::mem::take(&mut self.vmsas) {
                    let src = Source {
                        gpa: SNP_VMSA_GPA,
                        bytes: &page,
                    };
                    self.log.region(
                        index,
                        SNP_VMSA_GPA,
                        PAGE_SIZE as u64,
                        PageKind::Vmsa,
                        origin,
                        src,
                        Some(&page),
                    );
                }
                self.fetch_measure()?;
            }
            // Measured in the guest's report / TDREPORT, not by a host command.
            Tee::Snp | Tee::Tdx => {}
        }
        Ok(self.into_state())
    }

    fn fetch_measure(&mut self) -> Result<(), LaunchError> {
        let blob = self.backend.sev_launch_measure()?;
        let (Some(m), Some(n)) = (blob.get(..32), blob.get(32..48)) else {
            return Err(LaunchError::BadRegion {
                gpa: 0,
                len: blob.len() as u64,
                reason: "LAUNCH_MEASURE returned fewer than 48 bytes",
            });
        };
        let mut measure = [0u8; 32];
        let mut mnonce = [0u8; 16];
        measure.copy_from_slice(m);
        mnonce.copy_from_slice(n);
        self.sev_measure = Some(SevLaunchMeasure { measure, mnonce });
        Ok(())
    }

    fn check_vmsa_count(&self) -> Result<(), LaunchError> {
        if !self.vmsas.is_empty() && self.vmsas.len() != self.vcpus.len() {
            return Err(LaunchError::VcpuCount {
                plan: self.vmsas.len(),
                vcpus: self.vcpus.len(),
            });
        }
        Ok(())
    }
}

impl<B: Backend> Launch<Measured, B> {
    /// `KVM_SEV_LAUNCH_SECRET`: the firmware decrypts the owner's packet into guest
    /// memory at `secret.gpa`, after checking its MAC against the launch measurement.
    ///
    /// # Errors
    /// [`LaunchError::NotAvailable`] on SNP and TDX (use the attestation-based secret
    /// flows there); the kernel's answer (e.g. `EIO` with BAD_MEASUREMENT).
    pub fn inject_secret(&mut self, secret: &LaunchSecret) -> Result<(), LaunchError> {
        let vm_type = self.vm_type();
        if !matches!(vm_type, VmType::Sev | VmType::SevEs) {
            return Err(LaunchError::NotAvailable {
                verb: "LAUNCH_SECRET",
                vm_type,
                reason: "only SEV and SEV-ES inject secrets at launch; SNP and TDX guests obtain them after attestation",
            });
        }
        self.backend
            .sev_launch_secret(&secret.header, &secret.ciphertext, secret.gpa)?;
        Ok(())
    }

    /// Finishes the launch. SEV / SEV-ES: `LAUNCH_FINISH`. SNP: `SNP_LAUNCH_FINISH` with
    /// the ID block, ID auth and host data of [`SnpInit`] (KVM measures every vCPU's VMSA
    /// first and protects their state). TDX: `KVM_TDX_FINALIZE_VM` (retried on `EBUSY`).
    ///
    /// # Errors
    /// The kernel's answer.
    pub fn finish(mut self) -> Result<Launch<Finished, B>, LaunchError> {
        match &self.params {
            InitParams::Sev(_) | InitParams::SevEs(_) => self.backend.sev_launch_finish()?,
            InitParams::Snp(p) => {
                if !self.vmsas.is_empty() && self.vmsas.len() != self.vcpus.len() {
                    return Err(LaunchError::VcpuCount {
                        plan: self.vmsas.len(),
                        vcpus: self.vcpus.len(),
                    });
                }
                let mut fin = KvmSevSnpLaunchFinish {
                    host_data: p.host_data,
                    vcek_disabled: u8::from(p.vcek_disabled),
                    ..Default::default()
                };
                if let Some(id) = &p.identity {
                    fin.id_block_en = 1;
                    fin.auth_key_en = u8::from(id.author_key);
                }
                let identity = p.identity.clone();
                self.backend
                    .snp_launch_finish(&mut fin, identity.as_ref())?;
                for v in &mut self.vcpus {
                    v.mark_protected();
                }
                for (index, origin, page) in std::mem::take(&mut self.vmsas) {
                    let src = Source {
                        gpa: SNP_VMSA_GPA,
                        bytes: &page,
                    };
                    self.log.pages(
                        index,
                        SNP_VMSA_GPA,
                        1,
                        PageKind::Vmsa,
                        origin,
                        src,
                        Some(&page),
                    );
                }
            }
            InitParams::Tdx(_) => {
                retry("KVM_TDX_FINALIZE_VM", true, || {
                    self.backend.tdx_finalize_vm()
                })?;
            }
        }
        Ok(self.into_state())
    }
}

impl<B: Backend> Launch<Finished, B> {
    /// The launch log: every operation with its content and running digest, final digest
    /// last. It is what the host handed over, hashed on the host: the *expected*
    /// measurement, never the platform's. Compare it with the offline log of the same plan
    /// with [`LaunchLog::diff`] to locate a mismatch.
    ///
    /// The launch keeps a copy of the measured bytes it handed over; the digests are
    /// computed at the first call (on all cores for SNP), so a launch whose expected value
    /// is never asked for hashes its image only once, in the platform.
    pub fn log(&self) -> &LaunchLog {
        self.final_log.get_or_init(|| self.log.finish())
    }

    /// The measurement the host computed from what it handed over (the log's final
    /// digest): the value the platform's measurement should equal. Computed with
    /// [`log`](Self::log) at the first call.
    pub fn expected_measurement(&self) -> &[u8] {
        &self.log().digest
    }

    /// Where the platform's own measurement of this launch can be read from the host:
    /// `LAUNCH_MEASURE` for SEV and SEV-ES (an HMAC only the guest owner can check), nothing
    /// for SNP and TDX, whose measurement only the guest's attestation report or TDREPORT
    /// carries ([`PlatformMeasurement::from_snp_report`],
    /// [`PlatformMeasurement::from_td_report`]).
    pub fn platform_measurement(&self) -> PlatformMeasurement {
        match &self.sev_measure {
            Some(m) => PlatformMeasurement::LaunchMeasure(*m),
            None => PlatformMeasurement::NotObservable,
        }
    }

    /// The vCPUs, mutably (to run them).
    pub fn vcpus_mut(&mut self) -> &mut [B::Vcpu] {
        &mut self.vcpus
    }

    /// Gives up the launch: the backend (the VM) and the vCPUs.
    pub fn into_parts(self) -> (B, Vec<B::Vcpu>) {
        (self.backend, self.vcpus)
    }
}

fn le(page: &[u8], off: usize, n: usize) -> u64 {
    let mut b = [0u8; 8];
    if let Some(src) = page.get(off..off + n) {
        b[..n].copy_from_slice(src);
    }
    u64::from_le_bytes(b)
}

/// Sets a vCPU's registers to what `page` (an initial VMSA of the plan) holds, as QEMU does
/// at reset (CPUID signature in RDX, the AP reset vector in CS:IP): segments, descriptor
/// tables, RIP, RFLAGS and RDX. CR0, CR4 and EFER keep what KVM adds itself (MCE, SVME).
fn set_state_from_vmsa<V: LaunchVcpu>(vcpu: &mut V, page: &[u8]) -> Result<(), LaunchError> {
    use crate::measure::vmsa::offsets as o;
    let mut regs = vcpu.regs()?;
    let mut sregs = vcpu.sregs()?;
    regs.rip = le(page, o::RIP, 8);
    regs.rflags = le(page, o::RFLAGS, 8);
    regs.rdx = le(page, o::RDX, 8);
    let seg = |off: usize, s: &mut kvm_bindings::kvm_segment| {
        let attr = le(page, off + 2, 2) as u16;
        s.selector = le(page, off, 2) as u16;
        s.limit = le(page, off + 4, 4) as u32;
        s.base = le(page, off + 8, 8);
        s.type_ = (attr & 0xF) as u8;
        s.s = ((attr >> 4) & 1) as u8;
        s.dpl = ((attr >> 5) & 3) as u8;
        s.present = ((attr >> 7) & 1) as u8;
        s.avl = ((attr >> 8) & 1) as u8;
        s.l = ((attr >> 9) & 1) as u8;
        s.db = ((attr >> 10) & 1) as u8;
        s.g = ((attr >> 11) & 1) as u8;
        s.unusable = 0;
    };
    seg(o::ES, &mut sregs.es);
    seg(o::CS, &mut sregs.cs);
    seg(o::SS, &mut sregs.ss);
    seg(o::DS, &mut sregs.ds);
    seg(o::FS, &mut sregs.fs);
    seg(o::GS, &mut sregs.gs);
    seg(o::LDTR, &mut sregs.ldt);
    seg(o::TR, &mut sregs.tr);
    sregs.gdt.limit = le(page, o::GDTR + 4, 2) as u16;
    sregs.gdt.base = le(page, o::GDTR + 8, 8);
    sregs.idt.limit = le(page, o::IDTR + 4, 2) as u16;
    sregs.idt.base = le(page, o::IDTR + 8, 8);
    sregs.cr0 = le(page, o::CR0, 8);
    sregs.cr3 = le(page, o::CR3, 8);
    sregs.cr4 = le(page, o::CR4, 8) & !(1 << 6);
    sregs.efer = le(page, o::EFER, 8) & !(1 << 12);
    vcpu.set_regs(&regs)?;
    vcpu.set_sregs(&sregs)?;
    Ok(())
}

/// SNP CPUID page: `count u32, reserved u32, reserved u64`, then 64 entries of 48 bytes
/// (`eax_in, ecx_in u32; xcr0_in, xss_in u64; eax, ebx, ecx, edx u32; reserved u64`)
/// (AMD SEV-SNP firmware ABI, CPUID page).
fn cpuid_diff(submitted: &[u8; PAGE_SIZE], corrected: &[u8; PAGE_SIZE]) -> Vec<CpuidCorrection> {
    let u32_at = |p: &[u8; PAGE_SIZE], o: usize| {
        p.get(o..o + 4)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u32::from_le_bytes)
    };
    let count = (u32_at(submitted, 0) as usize).min(64);
    (0..count)
        .filter_map(|i| {
            let o = 16 + i * 48;
            let regs = |p| {
                [
                    u32_at(p, o + 24),
                    u32_at(p, o + 28),
                    u32_at(p, o + 32),
                    u32_at(p, o + 36),
                ]
            };
            let (a, b) = (regs(submitted), regs(corrected));
            (a != b).then(|| CpuidCorrection {
                leaf: u32_at(submitted, o),
                subleaf: u32_at(submitted, o + 4),
                submitted: a,
                corrected: b,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuid_diff_names_changed_leaves_only() {
        let mut a = [0u8; PAGE_SIZE];
        a[0..4].copy_from_slice(&2u32.to_le_bytes());
        // Entry 0: leaf 7.0, EBX 0xff; entry 1: leaf 0xd.1, EAX 1.
        a[16..20].copy_from_slice(&7u32.to_le_bytes());
        a[16 + 28..16 + 32].copy_from_slice(&0xffu32.to_le_bytes());
        a[64..68].copy_from_slice(&0xdu32.to_le_bytes());
        a[68..72].copy_from_slice(&1u32.to_le_bytes());
        a[64 + 24..64 + 28].copy_from_slice(&1u32.to_le_bytes());
        let mut b = a;
        b[16 + 28..16 + 32].copy_from_slice(&0x0fu32.to_le_bytes());
        let d = cpuid_diff(&a, &b);
        assert_eq!(
            d,
            vec![CpuidCorrection {
                leaf: 7,
                subleaf: 0,
                submitted: [0, 0xff, 0, 0],
                corrected: [0, 0x0f, 0, 0],
            }]
        );
    }

    #[test]
    fn plan_memory_merges_adjacent_ranges() {
        let step = |gpa, len| Step {
            gpa,
            len,
            kind: PageKind::Zero,
            data: Data::None,
            origin: Origin::Firmware,
        };
        let plan = LaunchPlan {
            tee: Tee::Snp,
            initial_digest: None,
            steps: vec![
                step(0x2000, 0x1000),
                step(0x1000, 0x1000),
                step(0x10_0000, 0x10),
                Step {
                    kind: PageKind::Vmsa,
                    ..step(SNP_VMSA_GPA, 0x1000)
                },
            ],
        };
        assert_eq!(
            plan_memory(&plan),
            vec![(0x1000, 0x2000), (0x10_0000, 0x1000)]
        );
    }
}
