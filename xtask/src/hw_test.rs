//! `cargo xtask hw-test [--json] [--dangerous] [--sim-host]`: detects what this host can do
//! and runs the hardware tiers that apply, saying precisely why the others are skipped.
//!
//! The run has two halves:
//!
//! 1. [`detect`] reads the host into a plain [`Host`] value: the CPU vendor and flags
//!    (`/proc/cpuinfo`), the loaded KVM modules and their confidential-computing
//!    parameters (`/sys/module`), what `/dev/kvm` offers (through kvm-coco's capabilities
//!    query), `/dev/sev` (through psp-driver's [`DevSev`]: presence, permission, platform
//!    and SNP platform status) and the TDX capabilities.
//! 2. [`plan`] turns a [`Host`] into one decision per tier (run, or skip with a reason);
//!    it does no I/O, so the unit tests drive it with hand-written hosts. [`execute`] then
//!    runs the tiers that were planned. A tier whose check cannot be completed on this
//!    backend (e.g. SNP report verification on real hardware) is "not run", never passed.
//!
//! The launch tiers (`sev/launch`, `sev-es/launch`, `snp/launch`, `tdx/launch`) drive
//! kvm-coco's launch API on `/dev/kvm` and psp-driver's `/dev/sev` ([`launch`]).
//!
//! With `--sim-host`, [`run`] starts kvm-coco's software host
//! ([`SoftwareHost`]) and serves the thread that runs everything, detection included, before
//! anything else: that thread's `/dev/kvm` and `/dev/sev` system calls are answered by the
//! models of KVM, the PSP firmware and the TDX module. The same detection, plan and tier code
//! then sees SEV, SEV-ES, SNP and TDX VM types and a `/dev/sev`, so every launch tier and the
//! `/dev/sev` status tiers run on any Linux machine. Their results name the software host and
//! prove nothing about hardware; the run fails if any of them does not pass.
//!
//! Every `KVM_RUN` of a real guest is bounded by a watchdog that kicks the vCPU thread with a
//! signal. Destructive platform commands run only with `--dangerous`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kvm_coco::caps::Availability;
use kvm_coco::sim::host::SoftwareHost;
use kvm_coco::{
    Exit, GuestMapping, GuestMemfdFlags, Kvm, MemoryRegion, MemoryState, Tee, VmType, VmTypes,
};
use kvm_coco_uapi::sev_dev::SevUserDataSnpConfig;
use psp_driver::{DEV_SEV_PATH, DevSev, DevSevError, Platform};
use serde::Serialize;

mod launch;
mod vcek;

pub use launch::{FirmwareSource, Target};

/// The command-line options of `hw-test`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Print JSON instead of a table.
    pub json: bool,
    /// Run the destructive platform tests.
    pub dangerous: bool,
    /// `--firmware <path>`: the firmware image of the launch tiers (else `$KVM_COCO_OVMF`,
    /// else the installed OVMF, else the built-in image).
    pub firmware: Option<std::path::PathBuf>,
    /// `--vcek <path>`: the VCEK the `snp/vcek` tier checks against this chip (else
    /// `$KVM_COCO_VCEK`).
    pub vcek: Option<std::path::PathBuf>,
    /// `--sim-host`: run everything under kvm-coco's software host.
    pub sim_host: bool,
}

impl Options {
    /// Parses `--json`, `--dangerous`, `--sim-host`, `--firmware <path>` and `--vcek <path>`
    /// (or `--firmware=<path>`, `--vcek=<path>`).
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let mut o = Options::default();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--json" => o.json = true,
                "--dangerous" => o.dangerous = true,
                "--sim-host" => o.sim_host = true,
                "--firmware" => match it.next() {
                    Some(p) => o.firmware = Some(p.into()),
                    None => return Err("hw-test: --firmware needs a path".to_owned()),
                },
                other if other.starts_with("--firmware=") => {
                    o.firmware = Some(other.trim_start_matches("--firmware=").into());
                }
                "--vcek" => match it.next() {
                    Some(p) => o.vcek = Some(p.into()),
                    None => return Err("hw-test: --vcek needs a path".to_owned()),
                },
                other if other.starts_with("--vcek=") => {
                    o.vcek = Some(other.trim_start_matches("--vcek=").into());
                }
                other => {
                    return Err(format!(
                        "hw-test: unknown option `{other}` (expected --json, --dangerous, --sim-host, --firmware <path>, --vcek <path>)"
                    ));
                }
            }
        }
        Ok(o)
    }
}

/// The outcome of one tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// The tier ran and its checks held.
    Passed,
    /// The tier ran and a check failed.
    Failed,
    /// The tier does not apply to this host (the reason says why).
    Skipped,
    /// The tier applies to this host but this build has no flow for it, or for one of its
    /// checks (the reason says which, and what did run).
    NotRun,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Passed => "passed",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
            Status::NotRun => "not run",
        }
    }
}

/// One row of the result table.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TierResult {
    /// `<technology>/<check>`, e.g. `snp/launch`.
    pub name: String,
    /// The outcome.
    pub status: Status,
    /// What was checked (passed), what went wrong (failed) or why it did not run.
    pub reason: String,
    /// Wall-clock time of the tier, in milliseconds (0 for skipped tiers).
    pub duration_ms: f64,
}

/// The CPU as `/proc/cpuinfo` describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Cpu {
    /// `vendor_id`: `AuthenticAMD`, `GenuineIntel`, ….
    pub vendor: String,
    /// `model name`.
    pub model_name: String,
    /// `cpu family` and `model` (decimal in `/proc/cpuinfo`), when present and in range.
    pub family_model: Option<(u8, u8)>,
    /// The flags that matter here (`svm`, `vmx`, `sev`, `sev_es`, `sev_snp`, `sme`,
    /// `tdx_host_platform`, `hypervisor`), in that order, when present.
    pub flags: Vec<String>,
}

/// The CPU flags [`Cpu::flags`] keeps.
const RELEVANT_FLAGS: [&str; 8] = [
    "svm",
    "vmx",
    "sev",
    "sev_es",
    "sev_snp",
    "sme",
    "tdx_host_platform",
    "hypervisor",
];

impl Cpu {
    /// Parses the first processor block of `/proc/cpuinfo` text.
    pub fn parse(cpuinfo: &str) -> Self {
        let mut cpu = Cpu::default();
        let (mut family, mut model) = (None, None);
        for line in cpuinfo.lines() {
            let Some((key, value)) = line.split_once(':') else {
                if line.trim().is_empty() && !cpu.vendor.is_empty() {
                    break;
                }
                continue;
            };
            let value = value.trim();
            match key.trim() {
                "vendor_id" if cpu.vendor.is_empty() => cpu.vendor = value.to_owned(),
                "model name" if cpu.model_name.is_empty() => cpu.model_name = value.to_owned(),
                "cpu family" => family = family.or(value.parse().ok()),
                "model" => model = model.or(value.parse().ok()),
                "flags" if cpu.flags.is_empty() => {
                    let all: Vec<&str> = value.split_whitespace().collect();
                    cpu.flags = RELEVANT_FLAGS
                        .iter()
                        .filter(|f| all.contains(f))
                        .map(|f| (*f).to_owned())
                        .collect();
                }
                _ => {}
            }
        }
        cpu.family_model = family.zip(model);
        cpu
    }

    fn has(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    fn is_amd(&self) -> bool {
        self.vendor == "AuthenticAMD"
    }

    fn is_intel(&self) -> bool {
        self.vendor == "GenuineIntel"
    }
}

/// What `/dev/kvm` offers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum KvmHost {
    /// `/dev/kvm` could not be opened because it is missing or not permitted.
    Unavailable {
        /// The error, with its errno.
        reason: String,
    },
    /// `/dev/kvm` exists but is not usable (wrong API version, another open error).
    Broken {
        /// The error.
        reason: String,
    },
    /// `/dev/kvm` works.
    Available {
        /// `KVM_GET_API_VERSION`.
        api_version: i32,
        /// The raw `KVM_CAP_VM_TYPES` bitmap (bit n: `KVM_CREATE_VM(n)` is accepted).
        vm_types_bits: u32,
        /// The VM types, by name.
        vm_types: Vec<String>,
        /// `KVM_TDX_CAPABILITIES` through a temporary TD: a summary, or why it is absent.
        #[serde(serialize_with = "ser_result")]
        tdx: Result<String, String>,
    },
}

/// What `/dev/sev` offers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum SevHost {
    /// The device could not be opened (missing, not permitted, no PSP).
    Unavailable {
        /// psp-driver's explanation.
        reason: String,
    },
    /// The device is open; the status commands' answers.
    Present {
        /// PLATFORM_STATUS, summarised, or its error.
        #[serde(serialize_with = "ser_result")]
        platform_status: Result<String, String>,
        /// SNP_PLATFORM_STATUS, summarised, or its error.
        #[serde(serialize_with = "ser_result")]
        snp_platform_status: Result<String, String>,
    },
}

/// Serializes a query's answer as `{"ok": true, "value": …}` or `{"ok": false, "error": …}`.
fn ser_result<S: serde::Serializer>(r: &Result<String, String>, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeStruct;
    let mut st = s.serialize_struct("Answer", 2)?;
    match r {
        Ok(v) => {
            st.serialize_field("ok", &true)?;
            st.serialize_field("value", v)?;
        }
        Err(e) => {
            st.serialize_field("ok", &false)?;
            st.serialize_field("error", e)?;
        }
    }
    st.end()
}

/// Everything [`detect`] found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Host {
    /// The CPU.
    pub cpu: Cpu,
    /// The loaded KVM modules (`kvm`, `kvm_amd`, `kvm_intel`, …).
    pub kvm_modules: Vec<String>,
    /// The confidential-computing module parameters found (`kvm_amd.sev_snp` → `Y`, …).
    pub kvm_params: BTreeMap<String, String>,
    /// `/dev/kvm`.
    pub kvm: KvmHost,
    /// `/dev/sev`.
    pub sev: SevHost,
}

/// The module parameters [`Host::kvm_params`] records.
const PARAMS: [(&str, &str); 5] = [
    ("kvm_amd", "sev"),
    ("kvm_amd", "sev_es"),
    ("kvm_amd", "sev_snp"),
    ("kvm_intel", "tdx"),
    ("kvm", "tdp_mmu"),
];

/// Renders an error with its `source()` chain.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        let _ = write!(s, ": {src}");
        cur = src.source();
    }
    s
}

/// Reads the host. Never fails: what cannot be read becomes a reason.
pub fn detect() -> Host {
    let cpu = Cpu::parse(&std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default());
    let kvm_modules = ["kvm", "kvm_amd", "kvm_intel", "kvm_pvm"]
        .iter()
        .filter(|m| std::path::Path::new("/sys/module").join(m).exists())
        .map(|m| (*m).to_owned())
        .collect();
    let kvm_params = PARAMS
        .iter()
        .filter_map(|(m, p)| {
            let path = format!("/sys/module/{m}/parameters/{p}");
            std::fs::read_to_string(path)
                .ok()
                .map(|v| (format!("{m}.{p}"), v.trim().to_owned()))
        })
        .collect();
    let kvm = match Kvm::open() {
        Err(e) if e.is_kvm_unavailable() => KvmHost::Unavailable { reason: chain(&e) },
        Err(e) => KvmHost::Broken { reason: chain(&e) },
        Ok(kvm) => {
            let types = kvm.supported_vm_types();
            KvmHost::Available {
                api_version: kvm.api_version(),
                vm_types_bits: types.bits(),
                vm_types: types.iter().map(|t| t.name().to_owned()).collect(),
                tdx: match kvm.tdx_capabilities() {
                    Availability::Available(c) => Ok(format!(
                        "supported_attrs={:#x} supported_xfam={:#x} {} configurable CPUID leaves",
                        c.supported_attrs,
                        c.supported_xfam,
                        c.cpuid.len()
                    )),
                    Availability::Unavailable(r) => Err(r.to_string()),
                },
            }
        }
    };
    let sev = match DevSev::open_read_only(DEV_SEV_PATH) {
        Err(e) => SevHost::Unavailable { reason: chain(&e) },
        Ok(dev) => SevHost::Present {
            platform_status: dev.platform_status().map_err(|e| chain(&e)).map(|s| {
                format!(
                    "API {}.{} build {}, state {}, {} guests, flags {:#x}",
                    s.api_major,
                    s.api_minor,
                    s.build,
                    s.state,
                    { s.guest_count },
                    { s.flags }
                )
            }),
            snp_platform_status: dev.snp_platform_status().map_err(|e| chain(&e)).map(|s| {
                format!(
                    "API {}.{} build {}, state {}, RMP initialized {}, {} guests, current TCB {:#018x}, reported TCB {:#018x}",
                    s.api_major,
                    s.api_minor,
                    { s.build_id },
                    s.state,
                    s.is_rmp_initialized(),
                    { s.guest_count },
                    { s.current_tcb_version },
                    { s.reported_tcb_version }
                )
            }),
        },
    };
    Host {
        cpu,
        kvm_modules,
        kvm_params,
        kvm,
        sev,
    }
}

/// A tier's runnable check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// Real-mode guest: `out 0x3f8, 'A'` then `hlt`, through kvm-coco.
    DefaultGuest,
    /// kvm-coco's capabilities query against raw `KVM_CHECK_EXTENSION`s.
    DefaultCaps,
    /// A sw-protected VM with guest_memfd and private/shared conversion.
    SwProtectedMemory,
    /// PLATFORM_STATUS through `/dev/sev`.
    SevPlatformStatus,
    /// SNP_PLATFORM_STATUS through `/dev/sev`.
    SnpPlatformStatus,
    /// FACTORY_RESET (destructive).
    FactoryReset,
    /// PEK_GEN (destructive).
    PekGen,
    /// PDH_GEN (destructive).
    PdhGen,
    /// SNP_SET_CONFIG, writing back the current configuration (destructive).
    SnpSetConfig,
    /// SNP_COMMIT (destructive).
    SnpCommit,
    /// `KVM_TDX_CAPABILITIES` through kvm-coco.
    TdxCapabilities,
    /// The given VCEK against AMD's root, this chip's ID and its reported TCB.
    SnpVcek,
    /// A confidential launch of this technology through kvm-coco's launch API on
    /// `/dev/kvm` ([`launch`]).
    Launch(Tee),
}

/// What a check found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every check ran and held.
    Passed(String),
    /// A step failed: which, and the error.
    Failed(String),
    /// The host turned out not to offer what the tier needs.
    Skipped(String),
    /// Part of the tier cannot be checked on this backend (never a pass).
    NotRun(String),
}

impl From<Result<String, String>> for Outcome {
    fn from(r: Result<String, String>) -> Self {
        match r {
            Ok(s) => Outcome::Passed(s),
            Err(e) => Outcome::Failed(e),
        }
    }
}

/// What to do with a tier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Run the check.
    Run(Check),
    /// Skip, with the reason.
    Skip(String),
}

/// One planned tier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planned {
    /// The tier name.
    pub name: &'static str,
    /// The decision.
    pub decision: Decision,
}

/// What each confidential VM type needs, for skip reasons.
fn requirement(t: VmType) -> &'static str {
    match t {
        VmType::Sev => "SEV needs an AMD EPYC host with SEV enabled in BIOS and kvm_amd.sev=1",
        VmType::SevEs => {
            "SEV-ES needs an AMD EPYC host with SEV-ES enabled in BIOS and kvm_amd.sev_es=1"
        }
        VmType::Snp => {
            "SNP needs an AMD EPYC host with SEV-SNP enabled in BIOS and kvm_amd.sev_snp=1"
        }
        VmType::Tdx => {
            "TDX needs an Intel Xeon host with TDX enabled in BIOS, the TDX module loaded and kvm_intel.tdx=1"
        }
        VmType::SwProtected => {
            "sw-protected VMs need a kernel built with CONFIG_KVM_SW_PROTECTED_VM"
        }
        _ => "",
    }
}

/// Facts about this host relevant to `t`, e.g. "CPU AuthenticAMD (AMD EPYC) has no svm
/// flag; running under a hypervisor; kvm_amd is not loaded (KVM modules: kvm, kvm_pvm)".
fn host_note(host: &Host, t: VmType) -> String {
    let cpu = &host.cpu;
    let mut notes = Vec::new();
    let name = if cpu.model_name.is_empty() {
        cpu.vendor.clone()
    } else {
        format!("{} ({})", cpu.vendor, cpu.model_name)
    };
    let (module, virt_flag, cc_flag, params): (&str, &str, &str, &[&str]) = match t {
        VmType::Sev => ("kvm_amd", "svm", "sev", &["kvm_amd.sev"]),
        VmType::SevEs => ("kvm_amd", "svm", "sev_es", &["kvm_amd.sev_es"]),
        VmType::Snp => ("kvm_amd", "svm", "sev_snp", &["kvm_amd.sev_snp"]),
        VmType::Tdx => ("kvm_intel", "vmx", "tdx_host_platform", &["kvm_intel.tdx"]),
        _ => return String::new(),
    };
    let right_vendor = if t == VmType::Tdx {
        cpu.is_intel()
    } else {
        cpu.is_amd()
    };
    if cpu.vendor.is_empty() {
        notes.push("CPU vendor unknown (/proc/cpuinfo unreadable)".to_owned());
    } else if !right_vendor {
        notes.push(format!("this CPU is {name}"));
    } else if !cpu.has(virt_flag) {
        notes.push(format!("this CPU, {name}, shows no {virt_flag} flag"));
    } else if !cpu.has(cc_flag) {
        notes.push(format!("this CPU, {name}, shows no {cc_flag} flag"));
    }
    if cpu.has("hypervisor") {
        notes.push("the host itself runs under a hypervisor".to_owned());
    }
    if host.kvm_modules.iter().any(|m| m == module) {
        for p in params {
            if let Some(v) = host.kvm_params.get(*p) {
                notes.push(format!("{p}={v}"));
            }
        }
    } else {
        notes.push(format!(
            "{module} is not loaded (KVM modules: {})",
            if host.kvm_modules.is_empty() {
                "none".to_owned()
            } else {
                host.kvm_modules.join(", ")
            }
        ));
    }
    notes.join("; ")
}

/// The reason a VM type's tier is skipped, or `None` if `/dev/kvm` offers it.
fn vm_type_absent(host: &Host, t: VmType) -> Option<String> {
    match &host.kvm {
        KvmHost::Unavailable { reason } | KvmHost::Broken { reason } => {
            Some(format!("/dev/kvm is not usable: {reason}"))
        }
        KvmHost::Available { vm_types_bits, .. } => {
            let types = VmTypes::from_bits(*vm_types_bits);
            if types.contains(t) {
                return None;
            }
            let names: Vec<&str> = types.iter().map(VmType::name).collect();
            let mut r = format!(
                "/dev/kvm offers VM types [{}]; {} ({}) is not among them — {}",
                names.join(", "),
                t.kernel_name(),
                t.abi_value(),
                requirement(t)
            );
            let note = host_note(host, t);
            if !note.is_empty() {
                let _ = write!(r, " (this host: {note})");
            }
            Some(r)
        }
    }
}

/// The reason a destructive platform command does not run, or `None` if it should.
fn destructive(host: &Host, opts: &Options, what: &str, needs_snp: bool) -> Option<String> {
    let unavailable = match &host.sev {
        SevHost::Unavailable { reason } => Some(reason.clone()),
        SevHost::Present {
            snp_platform_status: Err(e),
            ..
        } if needs_snp => Some(format!(
            "SNP_PLATFORM_STATUS failed, so SNP is not usable: {e}"
        )),
        SevHost::Present { .. } => None,
    };
    match (unavailable, opts.dangerous) {
        (Some(r), false) => Some(format!(
            "{r}; besides, this test is destructive ({what}) and runs only with --dangerous"
        )),
        (Some(r), true) => Some(r),
        (None, false) => Some(format!("destructive: {what}; pass --dangerous to run it")),
        (None, true) => None,
    }
}

/// Why `snp/vcek` does not run under the software host.
const SIM_HOST_NO_VCEK: &str = "the software host's chip has no VCEK issued by AMD (its report-signing key chains to the model's own ARK), so there is no AMD certificate to check against it";

/// The destructive commands psp-driver's software firmware does not implement (it answers
/// INVALID_COMMAND): under `--sim-host` their tiers are skipped, even with `--dangerous`.
const SIM_FIRMWARE_LACKS: [(Check, &str); 3] = [
    (Check::FactoryReset, "FACTORY_RESET"),
    (Check::SnpSetConfig, "SNP_SET_CONFIG"),
    (Check::SnpCommit, "SNP_COMMIT"),
];

/// Decides every tier for `host`. Pure: no I/O.
pub fn plan(host: &Host, opts: &Options) -> Vec<Planned> {
    let mut out = Vec::new();
    let mut push = |name: &'static str, decision: Decision| out.push(Planned { name, decision });

    // Default VM tier.
    let default = match &host.kvm {
        KvmHost::Unavailable { reason } => {
            Some(Decision::Skip(format!("/dev/kvm is not usable: {reason}")))
        }
        KvmHost::Broken { .. } => None,
        KvmHost::Available { .. } => None,
    };
    match default {
        Some(d) => {
            push("default/guest", d.clone());
            push("default/capabilities", d);
        }
        None => {
            push("default/guest", Decision::Run(Check::DefaultGuest));
            push("default/capabilities", Decision::Run(Check::DefaultCaps));
        }
    }

    // sw-protected: guest_memfd + private memory on an ordinary host.
    push(
        "sw-protected/memory",
        match vm_type_absent(host, VmType::SwProtected) {
            Some(r) => Decision::Skip(r),
            None => Decision::Run(Check::SwProtectedMemory),
        },
    );

    // Confidential launch tiers.
    for (name, tee) in [
        ("sev/launch", Tee::Sev),
        ("sev-es/launch", Tee::SevEs),
        ("snp/launch", Tee::Snp),
        ("tdx/launch", Tee::Tdx),
    ] {
        push(
            name,
            match vm_type_absent(host, tee.vm_type()) {
                Some(r) => Decision::Skip(r),
                None => Decision::Run(Check::Launch(tee)),
            },
        );
    }
    push(
        "tdx/capabilities",
        match (&host.kvm, vm_type_absent(host, VmType::Tdx)) {
            (_, Some(r)) => Decision::Skip(r),
            (KvmHost::Available { tdx: Err(e), .. }, None) => {
                Decision::Skip(format!("KVM_TDX_CAPABILITIES is not available: {e}"))
            }
            (KvmHost::Available { tdx: Ok(_), .. }, None) => Decision::Run(Check::TdxCapabilities),
            (_, None) => Decision::Skip("/dev/kvm is not usable".to_owned()),
        },
    );

    // Non-destructive platform status.
    let snp_offered = vm_type_absent(host, VmType::Snp).is_none();
    match &host.sev {
        SevHost::Unavailable { reason } => {
            push("sev/platform-status", Decision::Skip(reason.clone()));
            push("snp/platform-status", Decision::Skip(reason.clone()));
            push("snp/vcek", Decision::Skip(reason.clone()));
        }
        SevHost::Present {
            snp_platform_status,
            ..
        } => {
            push(
                "sev/platform-status",
                Decision::Run(Check::SevPlatformStatus),
            );
            push(
                "snp/platform-status",
                match snp_platform_status {
                    Err(e) if !snp_offered => Decision::Skip(format!(
                        "SNP_PLATFORM_STATUS failed and /dev/kvm offers no SNP VM type: {e}"
                    )),
                    _ => Decision::Run(Check::SnpPlatformStatus),
                },
            );
            push(
                "snp/vcek",
                match snp_platform_status {
                    Err(e) => Decision::Skip(format!(
                        "SNP_PLATFORM_STATUS failed, so the reported TCB is unknown: {e}"
                    )),
                    Ok(_) if opts.sim_host => Decision::Skip(SIM_HOST_NO_VCEK.to_owned()),
                    Ok(_) => Decision::Run(Check::SnpVcek),
                },
            );
        }
    }

    // Destructive platform commands.
    for (name, check, what, snp) in [
        (
            "sev/factory-reset",
            Check::FactoryReset,
            "FACTORY_RESET deletes the platform's persistent state: owner certificates, PEK and PDH",
            false,
        ),
        (
            "sev/pek-gen",
            Check::PekGen,
            "PEK_GEN replaces the Platform Endorsement Key and invalidates the PEK/OCA certificates",
            false,
        ),
        (
            "sev/pdh-gen",
            Check::PdhGen,
            "PDH_GEN replaces the Platform Diffie-Hellman key and invalidates exported PDH certificates",
            false,
        ),
        (
            "snp/set-config",
            Check::SnpSetConfig,
            "SNP_SET_CONFIG rewrites the reported TCB and chip-id/key masking (the test writes back the current values)",
            true,
        ),
        (
            "snp/commit",
            Check::SnpCommit,
            "SNP_COMMIT commits the running firmware: older firmware can no longer be installed",
            true,
        ),
    ] {
        push(
            name,
            match (
                SIM_FIRMWARE_LACKS.iter().find(|(c, _)| *c == check),
                opts.sim_host,
            ) {
                (Some((_, cmd)), true) => Decision::Skip(format!(
                    "the software host's firmware does not implement {cmd} (it answers INVALID_COMMAND); on hardware: {what}"
                )),
                _ => match destructive(host, opts, what, snp) {
                    Some(r) => Decision::Skip(r),
                    None => Decision::Run(check),
                },
            },
        );
    }
    out
}

/// How long one guest may run before the watchdog kicks it.
const GUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// `mov dx, 0x3f8; mov al, 'A'; out dx, al; hlt` (real mode).
const OUT_HLT: [u8; 7] = [0xba, 0xf8, 0x03, 0xb0, b'A', 0xee, 0xf4];

/// The signal that kicks a vCPU thread out of `KVM_RUN`.
fn kick_signal() -> libc::c_int {
    vmm_sys_util::signal::SIGRTMIN() + 5
}

extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

/// Runs `f` on a new thread; once `timeout` has passed, kicks that thread with
/// [`kick_signal`] every 10 ms until it returns, so a hung `KVM_RUN` returns `EINTR`
/// (`Exit::Interrupted`). Returns `f`'s result and whether the watchdog fired.
fn with_watchdog<T: Send + 'static>(
    timeout: Duration,
    f: impl FnOnce(Arc<AtomicBool>) -> T + Send + 'static,
) -> Result<(T, bool), String> {
    use vmm_sys_util::signal::{Killable, register_signal_handler};
    static INSTALLED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    // The handler does nothing (async-signal-safe); without SA_RESTART the interrupted
    // KVM_RUN returns EINTR.
    INSTALLED
        .get_or_init(|| {
            register_signal_handler(kick_signal(), on_kick)
                .map_err(|e| format!("cannot install the watchdog signal handler: {e}"))
        })
        .clone()?;
    let fired = Arc::new(AtomicBool::new(false));
    let fired_in = Arc::clone(&fired);
    let handle = std::thread::Builder::new()
        .name("hw-test-vcpu".into())
        .spawn(move || f(fired_in))
        .map_err(|e| format!("cannot start the vCPU thread: {e}"))?;
    let deadline = Instant::now() + timeout;
    while !handle.is_finished() {
        if Instant::now() >= deadline {
            fired.store(true, Ordering::Release);
            let _ = handle.kill(kick_signal());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = handle
        .join()
        .map_err(|_| "the vCPU thread panicked".to_owned())?;
    Ok((out, fired.load(Ordering::Acquire)))
}

/// The default-VM guest: 1 MiB at GPA 0, code at 0x1000, real mode.
fn default_guest() -> Result<String, String> {
    let (result, _fired) = with_watchdog(GUEST_TIMEOUT, |fired| -> Result<String, String> {
        let e = |e: kvm_coco::Error| chain(&e);
        let kvm = Kvm::open().map_err(e)?;
        let vm = kvm.create_vm(VmType::Default).map_err(e)?;
        let mem = Arc::new(GuestMapping::anonymous(0x10_0000).map_err(e)?);
        mem.write(0x1000, &OUT_HLT).map_err(e)?;
        vm.set_memory_region(MemoryRegion::new(0, 0, Arc::clone(&mem)))
            .map_err(e)?;
        let mut vcpu = vm.create_vcpu(0).map_err(e)?;
        let mut sregs = vcpu.sregs().map_err(e)?;
        sregs.cs.base = 0;
        sregs.cs.selector = 0;
        vcpu.set_sregs(&sregs).map_err(e)?;
        let mut regs = vcpu.regs().map_err(e)?;
        regs.rip = 0x1000;
        regs.rflags = 2;
        vcpu.set_regs(&regs).map_err(e)?;

        let mut exits: Vec<String> = Vec::new();
        loop {
            let exit = vcpu.run().map_err(e)?;
            match exit {
                Exit::IoOut { port, data } => exits.push(format!("IoOut({port:#x}, {data:02x?})")),
                Exit::Hlt => {
                    exits.push("Hlt".to_owned());
                    break;
                }
                Exit::Interrupted if fired.load(Ordering::Acquire) => {
                    return Err(format!(
                        "KVM_RUN did not return within {GUEST_TIMEOUT:?}; the watchdog kicked the vCPU (exits so far: [{}])",
                        exits.join(", ")
                    ));
                }
                Exit::Interrupted => {}
                other => {
                    exits.push(format!("{other:?}"));
                    break;
                }
            }
            if exits.len() > 8 {
                break;
            }
        }
        let expected = ["IoOut(0x3f8, [41])", "Hlt"];
        if exits != expected {
            return Err(format!(
                "exits were [{}], expected [{}]",
                exits.join(", "),
                expected.join(", ")
            ));
        }
        let rip = vcpu.regs().map_err(e)?.rip;
        if rip != 0x1007 {
            return Err(format!("rip after hlt is {rip:#x}, expected 0x1007"));
        }
        Ok(format!(
            "real-mode guest: exits [{}], byte 'A' on port 0x3f8, rip 0x1007",
            exits.join(", ")
        ))
    })?;
    result
}

/// Raw `KVM_CHECK_EXTENSION` = `_IO(KVMIO, 0x03)` (include/uapi/linux/kvm.h), issued on a
/// file of our own, independent of kvm-coco and kvm-ioctls.
fn raw_check_extension(fd: &std::fs::File, cap: u32) -> i32 {
    const KVM_CHECK_EXTENSION: libc::c_ulong = 0xAE03;
    // SAFETY: KVM_CHECK_EXTENSION takes its argument by value (an integer, never
    // dereferenced) and `fd` is an open file for the whole call.
    unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            KVM_CHECK_EXTENSION as _,
            libc::c_ulong::from(cap),
        )
    }
}

/// kvm-coco's capabilities query against raw `KVM_CHECK_EXTENSION`s. Capability numbers
/// are those of Linux's include/uapi/linux/kvm.h, written here independently.
fn default_caps() -> Result<String, String> {
    const USER_MEMORY2: u32 = 231;
    const MEMORY_FAULT_INFO: u32 = 232;
    const MEMORY_ATTRIBUTES: u32 = 233;
    const GUEST_MEMFD: u32 = 234;
    const VM_TYPES: u32 = 235;
    const PRE_FAULT_MEMORY: u32 = 236;
    const EXIT_HYPERCALL: u32 = 201;
    const GUEST_MEMFD_FLAGS: u32 = 244;

    let kvm = Kvm::open().map_err(|e| chain(&e))?;
    let caps = kvm.capabilities();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map_err(|e| format!("cannot open /dev/kvm: {e}"))?;
    let raw = |cap| raw_check_extension(&file, cap);
    let mut mismatches = Vec::new();
    let mut agree = 0usize;
    let mut cmp = |what: &str, coco: i64, raw: i64| {
        if coco == raw {
            agree += 1;
        } else {
            mismatches.push(format!("{what}: kvm-coco {coco}, raw {raw}"));
        }
    };
    let pos = |v: i32| i64::from(v.max(0));
    let raw_types = match raw(VM_TYPES) {
        r if r > 0 => r,
        _ => 1,
    };
    cmp(
        "KVM_CAP_VM_TYPES",
        i64::from(caps.vm_types.bits()),
        i64::from(raw_types),
    );
    cmp(
        "KVM_CAP_GUEST_MEMFD",
        i64::from(caps.memory.guest_memfd.is_available()),
        i64::from(raw(GUEST_MEMFD) > 0),
    );
    if let Some(g) = caps.memory.guest_memfd.value() {
        cmp(
            "KVM_CAP_GUEST_MEMFD_FLAGS",
            i64::try_from(g.flags).unwrap_or(-1),
            pos(raw(GUEST_MEMFD_FLAGS)),
        );
    }
    cmp(
        "KVM_CAP_MEMORY_ATTRIBUTES",
        caps.memory
            .memory_attributes
            .value()
            .map_or(0, |v| i64::try_from(*v).unwrap_or(-1)),
        pos(raw(MEMORY_ATTRIBUTES)),
    );
    for (what, avail, cap) in [
        (
            "KVM_CAP_USER_MEMORY2",
            caps.memory.user_memory_region2.is_available(),
            USER_MEMORY2,
        ),
        (
            "KVM_CAP_MEMORY_FAULT_INFO",
            caps.memory.memory_fault_info.is_available(),
            MEMORY_FAULT_INFO,
        ),
        (
            "KVM_CAP_PRE_FAULT_MEMORY",
            caps.memory.pre_fault_memory.is_available(),
            PRE_FAULT_MEMORY,
        ),
    ] {
        cmp(what, i64::from(avail), i64::from(raw(cap) > 0));
    }
    cmp(
        "KVM_CAP_EXIT_HYPERCALL",
        caps.exit_hypercall
            .value()
            .map_or(0, |v| i64::try_from(*v).unwrap_or(-1)),
        pos(raw(EXIT_HYPERCALL)),
    );
    // The VM-scoped answers: a default VM must agree with the system fd here.
    if let Some(Availability::Available(vm)) = caps.vm_scope.get(&VmType::Default) {
        cmp(
            "default VM KVM_CAP_GUEST_MEMFD",
            i64::from(vm.guest_memfd.is_available()),
            i64::from(raw(GUEST_MEMFD) > 0),
        );
    } else {
        mismatches.push("no VM-scoped answer for the default VM type".to_owned());
    }
    if mismatches.is_empty() {
        Ok(format!(
            "{agree} capability answers agree with raw KVM_CHECK_EXTENSION (VM types {:#x} = [{}])",
            caps.vm_types.bits(),
            caps.vm_types
        ))
    } else {
        Err(mismatches.join("; "))
    }
}

/// A sw-protected VM: guest_memfd-backed slot, converted to private and back.
fn sw_protected_memory() -> Result<String, String> {
    let e = |e: kvm_coco::Error| chain(&e);
    const SIZE: u64 = 0x20_0000;
    let kvm = Kvm::open().map_err(e)?;
    let vm = kvm.create_vm(VmType::SwProtected).map_err(e)?;
    let mem = Arc::new(GuestMapping::anonymous(SIZE as usize).map_err(e)?);
    let gmem = Arc::new(
        vm.create_guest_memfd(SIZE, GuestMemfdFlags::empty())
            .map_err(e)?,
    );
    vm.set_memory_region(MemoryRegion::new(0, 0, mem).guest_memfd(gmem, 0))
        .map_err(e)?;
    vm.convert_memory(0, SIZE, MemoryState::Private)
        .map_err(e)?;
    vm.convert_memory(0, SIZE, MemoryState::Shared).map_err(e)?;
    Ok("guest_memfd slot of 2 MiB converted to private and back to shared".to_owned())
}

fn dev_sev_rw() -> Result<DevSev, String> {
    DevSev::open().map_err(|e: DevSevError| chain(&e))
}

fn sev_platform_status() -> Result<String, String> {
    let dev = DevSev::open_read_only(DEV_SEV_PATH).map_err(|e| chain(&e))?;
    let s = dev.platform_status().map_err(|e| chain(&e))?;
    let Ok(state) = s.platform_state() else {
        return Err(format!(
            "PLATFORM_STATUS reports an unknown state {}",
            s.state
        ));
    };
    Ok(format!(
        "PLATFORM_STATUS: API {}.{} build {}, state {:?}, {} guests, SEV-ES {}",
        s.api_major,
        s.api_minor,
        s.build,
        state,
        { s.guest_count },
        s.config_es()
    ))
}

fn snp_platform_status() -> Result<String, String> {
    let dev = DevSev::open_read_only(DEV_SEV_PATH).map_err(|e| chain(&e))?;
    let s = dev.snp_platform_status().map_err(|e| chain(&e))?;
    if s.state > 1 {
        return Err(format!(
            "SNP_PLATFORM_STATUS reports an unknown state {}",
            s.state
        ));
    }
    Ok(format!(
        "SNP_PLATFORM_STATUS: API {}.{} build {}, state {}, RMP initialized {}, reported TCB {:#018x}",
        s.api_major,
        s.api_minor,
        { s.build_id },
        if s.state == 1 { "INIT" } else { "UNINIT" },
        s.is_rmp_initialized(),
        { s.reported_tcb_version }
    ))
}

fn factory_reset() -> Result<String, String> {
    let dev = dev_sev_rw()?;
    dev.factory_reset().map_err(|e| chain(&e))?;
    let s = dev.platform_status().map_err(|e| chain(&e))?;
    Ok(format!(
        "FACTORY_RESET done; PLATFORM_STATUS afterwards: state {}, {} guests",
        s.state,
        { s.guest_count }
    ))
}

fn pek_gen() -> Result<String, String> {
    let dev = dev_sev_rw()?;
    let before = dev.pek_csr().map_err(|e| chain(&e))?;
    dev.pek_gen().map_err(|e| chain(&e))?;
    let after = dev.pek_csr().map_err(|e| chain(&e))?;
    if before == after {
        return Err("PEK_GEN succeeded but the PEK CSR did not change".to_owned());
    }
    Ok("PEK_GEN done; the PEK CSR changed".to_owned())
}

fn pdh_gen() -> Result<String, String> {
    let dev = dev_sev_rw()?;
    let before = dev.pdh_cert_export().map_err(|e| chain(&e))?;
    dev.pdh_gen().map_err(|e| chain(&e))?;
    let after = dev.pdh_cert_export().map_err(|e| chain(&e))?;
    if before.pdh_cert == after.pdh_cert {
        return Err("PDH_GEN succeeded but the exported PDH certificate did not change".to_owned());
    }
    Ok("PDH_GEN done; the exported PDH certificate changed".to_owned())
}

fn snp_set_config() -> Result<String, String> {
    let dev = dev_sev_rw()?;
    let s = dev.snp_platform_status().map_err(|e| chain(&e))?;
    let flags = u32::from(s.mask_chip_id()) | (u32::from(s.mask_chip_key()) << 1);
    let config = SevUserDataSnpConfig {
        reported_tcb: s.reported_tcb_version,
        config_flags: flags,
        rsvd1: [0; 52],
    };
    dev.snp_set_config(&config).map_err(|e| chain(&e))?;
    let after = dev.snp_platform_status().map_err(|e| chain(&e))?;
    let (want, got) = ({ s.reported_tcb_version }, { after.reported_tcb_version });
    if want != got
        || s.mask_chip_id() != after.mask_chip_id()
        || s.mask_chip_key() != after.mask_chip_key()
    {
        return Err(format!(
            "SNP_SET_CONFIG wrote reported TCB {want:#x} / masks {flags:#x} but reads back {got:#x} / id {} key {}",
            after.mask_chip_id(),
            after.mask_chip_key()
        ));
    }
    Ok(format!(
        "SNP_SET_CONFIG wrote back reported TCB {want:#x} and masks {flags:#x}; read back equal"
    ))
}

fn snp_commit() -> Result<String, String> {
    let dev = dev_sev_rw()?;
    dev.snp_commit().map_err(|e| chain(&e))?;
    let s = dev.snp_platform_status().map_err(|e| chain(&e))?;
    Ok(format!("SNP_COMMIT done; current TCB {:#018x}", {
        s.current_tcb_version
    }))
}

/// `KVM_TDX_CAPABILITIES` through a temporary TD.
fn tdx_capabilities() -> Result<String, String> {
    let kvm = Kvm::open().map_err(|e| chain(&e))?;
    match kvm.tdx_capabilities() {
        Availability::Available(c) if c.supported_attrs == 0 && c.supported_xfam == 0 => {
            Err("KVM_TDX_CAPABILITIES returned no supported attributes and no XFAM bits".to_owned())
        }
        Availability::Available(c) => Ok(format!(
            "KVM_TDX_CAPABILITIES: supported_attrs={:#x} supported_xfam={:#x}, {} configurable CPUID leaves",
            c.supported_attrs,
            c.supported_xfam,
            c.cpuid.len()
        )),
        Availability::Unavailable(r) => Err(r.to_string()),
    }
}

/// Runs one check for real on `target`; `firmware` feeds the launch tiers.
fn run_check(check: Check, firmware: &FirmwareSource, target: Target<'_>) -> Outcome {
    match check {
        Check::Launch(tee) => launch::run(tee, firmware, target),
        Check::TdxCapabilities => tdx_capabilities().into(),
        other => run_simple(other).into(),
    }
}

fn run_simple(check: Check) -> Result<String, String> {
    match check {
        Check::DefaultGuest => default_guest(),
        Check::DefaultCaps => default_caps(),
        Check::SwProtectedMemory => sw_protected_memory(),
        Check::SevPlatformStatus => sev_platform_status(),
        Check::SnpPlatformStatus => snp_platform_status(),
        Check::FactoryReset => factory_reset(),
        Check::PekGen => pek_gen(),
        Check::PdhGen => pdh_gen(),
        Check::SnpSetConfig => snp_set_config(),
        Check::SnpCommit => snp_commit(),
        Check::TdxCapabilities | Check::SnpVcek | Check::Launch { .. } => {
            Err(format!("{check:?} is not a simple check"))
        }
    }
}

/// Runs the planned tiers with `run` (the real checks, or a stub in tests).
pub fn execute<O: Into<Outcome>>(
    planned: &[Planned],
    mut run: impl FnMut(Check) -> O,
) -> Vec<TierResult> {
    planned
        .iter()
        .map(|p| {
            let start = Instant::now();
            let (status, reason) = match &p.decision {
                Decision::Skip(r) => (Status::Skipped, r.clone()),
                Decision::Run(c) => match run(*c).into() {
                    Outcome::Passed(detail) => (Status::Passed, detail),
                    Outcome::Failed(e) => (Status::Failed, e),
                    Outcome::Skipped(r) => (Status::Skipped, r),
                    Outcome::NotRun(r) => (Status::NotRun, r),
                },
            };
            let duration_ms = match p.decision {
                // Microsecond resolution is plenty.
                Decision::Run(_) => (start.elapsed().as_secs_f64() * 1e6).round() / 1e3,
                _ => 0.0,
            };
            TierResult {
                name: p.name.to_owned(),
                status,
                reason,
                duration_ms,
            }
        })
        .collect()
}

/// The JSON document `--json` prints.
#[derive(Debug, Serialize)]
pub struct Report<'a> {
    /// What was detected.
    pub host: &'a Host,
    /// Whether `--dangerous` was given.
    pub dangerous: bool,
    /// Whether the run was served by the software host (`--sim-host`).
    pub sim_host: bool,
    /// One entry per tier.
    pub tiers: &'a [TierResult],
    /// Counts per status.
    pub summary: BTreeMap<&'static str, usize>,
}

fn summary(results: &[TierResult]) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for s in [
        Status::Passed,
        Status::Failed,
        Status::Skipped,
        Status::NotRun,
    ] {
        let key = match s {
            Status::NotRun => "not-run",
            other => other.as_str(),
        };
        m.insert(key, results.iter().filter(|r| r.status == s).count());
    }
    m
}

/// The JSON value of a report.
pub fn to_json(host: &Host, opts: &Options, results: &[TierResult]) -> serde_json::Value {
    serde_json::to_value(Report {
        host,
        dangerous: opts.dangerous,
        sim_host: opts.sim_host,
        tiers: results,
        summary: summary(results),
    })
    .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }))
}

/// The host summary and the result table, as printed without `--json`.
pub fn render_table(host: &Host, opts: &Options, results: &[TierResult]) -> String {
    let mut s = String::new();
    if opts.sim_host {
        let _ = writeln!(
            s,
            "software host: this run's /dev/kvm and /dev/sev system calls were answered by kvm-coco's models (seed {SIM_HOST_SEED}), not by hardware"
        );
    }
    let cpu = if host.cpu.model_name.is_empty() {
        host.cpu.vendor.clone()
    } else {
        format!("{} ({})", host.cpu.vendor, host.cpu.model_name)
    };
    let _ = writeln!(s, "host: CPU {cpu}, flags [{}]", host.cpu.flags.join(" "));
    let _ = writeln!(s, "      KVM modules [{}]", host.kvm_modules.join(", "));
    match &host.kvm {
        KvmHost::Available {
            api_version,
            vm_types,
            vm_types_bits,
            tdx,
        } => {
            let _ = writeln!(
                s,
                "      /dev/kvm: API {api_version}, VM types [{}] ({vm_types_bits:#x})",
                vm_types.join(", ")
            );
            let _ = writeln!(
                s,
                "      TDX: {}",
                match tdx {
                    Ok(t) => t.clone(),
                    Err(e) => e.clone(),
                }
            );
        }
        KvmHost::Unavailable { reason } | KvmHost::Broken { reason } => {
            let _ = writeln!(s, "      /dev/kvm: {reason}");
        }
    }
    match &host.sev {
        SevHost::Unavailable { reason } => {
            let _ = writeln!(s, "      /dev/sev: {reason}");
        }
        SevHost::Present {
            platform_status,
            snp_platform_status,
        } => {
            let r = |x: &Result<String, String>| match x {
                Ok(v) | Err(v) => v.clone(),
            };
            let _ = writeln!(s, "      /dev/sev: {}", r(platform_status));
            let _ = writeln!(s, "      SNP: {}", r(snp_platform_status));
        }
    }
    s.push('\n');
    let w_name = results
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let _ = writeln!(
        s,
        "{:<w_name$}  {:<7}  {:>10}  reason",
        "tier", "status", "duration"
    );
    let _ = writeln!(s, "{}", "-".repeat(w_name + 2 + 7 + 2 + 10 + 2 + 6));
    for r in results {
        let dur = if r.duration_ms == 0.0 {
            "-".to_owned()
        } else {
            format!("{:.1} ms", r.duration_ms)
        };
        let _ = writeln!(
            s,
            "{:<w_name$}  {:<7}  {:>10}  {}",
            r.name,
            r.status.as_str(),
            dur,
            r.reason
        );
    }
    let sum = summary(results);
    let _ = writeln!(
        s,
        "\n{} passed, {} failed, {} skipped, {} not run",
        sum.get("passed").copied().unwrap_or(0),
        sum.get("failed").copied().unwrap_or(0),
        sum.get("skipped").copied().unwrap_or(0),
        sum.get("not-run").copied().unwrap_or(0)
    );
    s
}

/// The seed of the software host's chip identity and keys under `--sim-host`.
pub const SIM_HOST_SEED: u64 = 1;

/// The tiers a `--sim-host` run must pass: every tier the software host makes applicable
/// (with `--dangerous`, the destructive `/dev/sev` commands its firmware implements too).
pub fn sim_host_required(opts: &Options) -> Vec<&'static str> {
    let mut tiers = vec![
        "sev/launch",
        "sev-es/launch",
        "snp/launch",
        "tdx/launch",
        "tdx/capabilities",
        "sev/platform-status",
        "snp/platform-status",
    ];
    if opts.dangerous {
        // The others are not implemented by the software firmware (SIM_FIRMWARE_LACKS).
        tiers.extend(["sev/pek-gen", "sev/pdh-gen"]);
    }
    tiers
}

/// The required tiers of a `--sim-host` run that did not pass, each with its status.
pub fn sim_host_shortfall(opts: &Options, results: &[TierResult]) -> Vec<String> {
    sim_host_required(opts)
        .into_iter()
        .filter_map(|name| match results.iter().find(|r| r.name == name) {
            None => Some(format!("{name} (not planned)")),
            Some(r) if r.status != Status::Passed => {
                Some(format!("{name} ({})", r.status.as_str()))
            }
            Some(_) => None,
        })
        .collect()
}

/// Detects the host, plans the tiers and runs them on `target`, on the calling thread (the
/// thread the software host serves, for [`Target::SoftwareHost`]).
pub fn detect_and_execute(
    opts: &Options,
    firmware: &FirmwareSource,
    target: Target<'_>,
) -> (Host, Vec<TierResult>) {
    let host = detect();
    let planned = plan(&host, opts);
    let vcek = opts
        .vcek
        .clone()
        .or_else(|| std::env::var_os("KVM_COCO_VCEK").map(Into::into));
    let results = execute(&planned, |c| match c {
        Check::SnpVcek => vcek::run(vcek.as_deref(), &host.cpu),
        c => run_check(c, firmware, target),
    });
    (host, results)
}

/// Starts kvm-coco's software host and runs `f` on a new thread that the host serves from
/// its start (the threads `f` creates are served too). The host stops after `f` returns.
///
/// # Errors
/// The host cannot start, or seccomp user notification is refused here; or `f` panicked.
pub fn under_software_host<T: Send>(
    seed: u64,
    f: impl FnOnce(&SoftwareHost) -> T + Send,
) -> Result<T, String> {
    let host = SoftwareHost::builder()
        .seed(seed)
        .start()
        .map_err(|e| format!("software host: {}", chain(&e)))?;
    let host = &host;
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("hw-test-served".into())
            .spawn_scoped(s, move || {
                host.serve_current_thread()
                    .map_err(|e| format!("software host: {}", chain(&e)))?;
                Ok(f(host))
            })
            .map_err(|e| format!("cannot start the served thread: {e}"))?
            .join()
            .map_err(|_| "the thread served by the software host panicked".to_owned())?
    })
}

/// `cargo xtask hw-test`.
pub fn run(args: &[String]) -> Result<(), String> {
    let opts = Options::parse(args)?;
    let firmware = FirmwareSource::resolve(opts.firmware.as_deref());
    let (host, results) = if opts.sim_host {
        under_software_host(SIM_HOST_SEED, |sim| {
            detect_and_execute(&opts, &firmware, Target::SoftwareHost(sim))
        })?
    } else {
        detect_and_execute(&opts, &firmware, Target::Hardware)
    };
    // A closed stdout (e.g. piped into `head`) is not an error of the tests.
    let mut out = std::io::stdout().lock();
    if opts.json {
        let v = to_json(&host, &opts, &results);
        let text = serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?;
        let _ = writeln!(out, "{text}");
    } else {
        let _ = write!(out, "{}", render_table(&host, &opts, &results));
    }
    let failed = results
        .iter()
        .filter(|r| r.status == Status::Failed)
        .count();
    if failed > 0 {
        return Err(format!("hw-test: {failed} tier(s) failed"));
    }
    if opts.sim_host {
        let short = sim_host_shortfall(&opts, &results);
        if !short.is_empty() {
            return Err(format!(
                "hw-test --sim-host: the software host offers these tiers but they did not pass: {}",
                short.join(", ")
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
