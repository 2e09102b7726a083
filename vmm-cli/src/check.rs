//! `vmm-cli check`: host readiness for a confidential launch, evaluated against the
//! requested launch configuration (in the spirit of `snphost ok`, for AMD and Intel).
//!
//! Every check yields a category, a status (`pass`, `fail`, `skip`, `warn`), a message and
//! a fix hint. The exit status is 1 if any check fails.

use clap::Args;
use kvm_coco::{Availability, Capabilities, Kvm, VmType};
use psp_driver::{DevSev, DevSevError, Platform};
use serde::Serialize;

use crate::tee::{Tee, TeeConfig};
use crate::util::{self, print_json};
use crate::{CliError, Outcome};

/// Options of `vmm-cli check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The technology to check for.
    #[arg(long, value_parser = crate::tee::tee_parser())]
    tee: Tee,
    /// The technology-specific options.
    #[command(flatten)]
    opts: crate::tee::TeeOptions,
    /// Guest memory size (for the memlock check), e.g. 512M, 4G.
    #[arg(long, value_name = "SIZE", default_value = "256M", value_parser = util::size)]
    memory: u64,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// The result of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Status {
    /// Satisfied.
    Pass,
    /// Not satisfied: the launch cannot work.
    Fail,
    /// Not evaluated (not applicable, or a prerequisite is missing).
    Skip,
    /// Satisfied with a caveat.
    Warn,
}

/// One check.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CheckResult {
    /// Area: kvm, cpu, memory, sev, firmware, tdx, limits.
    category: &'static str,
    /// Short name of the check.
    name: &'static str,
    /// Outcome.
    status: Status,
    /// What was found.
    message: String,
    /// What to do about it (empty for passes).
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
}

fn r(
    category: &'static str,
    name: &'static str,
    status: Status,
    message: impl Into<String>,
    fix: Option<String>,
) -> CheckResult {
    CheckResult {
        category,
        name,
        status,
        message: message.into(),
        fix,
    }
}

/// Why `/dev/kvm` cannot be used, in a sentence.
pub(crate) fn kvm_open_reason(e: &kvm_coco::Error) -> String {
    use nix::errno::Errno as E;
    match e.errno().map(|e| e.raw()) {
        Some(x) if x == E::ENOENT as i32 => {
            "/dev/kvm does not exist: KVM is not loaded or this machine has no hardware virtualization".into()
        }
        Some(x) if x == E::EACCES as i32 || x == E::EPERM as i32 => {
            "permission denied opening /dev/kvm: run as root or join the group owning /dev/kvm"
                .into()
        }
        _ => crate::util::error_chain(e),
    }
}

fn vm_type_reason(tee: Tee) -> (&'static str, &'static str) {
    match tee {
        Tee::Sev => (
            "this host is not an AMD EPYC with SEV enabled / kvm_amd not loaded with sev=1",
            "on an AMD EPYC: enable SME and SEV in the BIOS (SEV ASIDs > 0), then load kvm_amd with sev=1",
        ),
        Tee::SevEs => (
            "this host is not an AMD EPYC with SEV-ES enabled / kvm_amd not loaded with sev_es=1 (SNP firmware at or above the AMD-SB-3023 SVN also withdraws SEV-ES)",
            "on an AMD EPYC: enable SEV-ES (SEV-ES ASIDs > 0) in the BIOS and load kvm_amd with sev=1 sev_es=1, or use snp",
        ),
        Tee::Snp => (
            "this host is not an AMD EPYC with SEV-SNP enabled / kvm_amd not loaded with sev_snp=1",
            "on an AMD EPYC Milan or later: enable SMEE, SEV-SNP and the RMP table in the BIOS, boot a kernel with SNP host support and load kvm_amd with sev=1 sev_es=1 sev_snp=1",
        ),
        Tee::Tdx => (
            "this host is not an Intel Xeon with TDX enabled / kvm_intel not loaded with tdx=1",
            "on an Intel Xeon with TDX: enable TME-MT and TDX in the BIOS, load the TDX module, boot a TDX host kernel and load kvm_intel with tdx=1",
        ),
    }
}

/// CPU vendor and virtualization flags from /proc/cpuinfo.
fn cpu_info() -> Option<(String, Vec<String>)> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let field = |name: &str| {
        text.lines()
            .find(|l| l.split(':').next().is_some_and(|k| k.trim() == name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
    };
    let vendor = field("vendor_id")?;
    let flags = field("flags")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    Some((vendor, flags))
}

fn check_cpu(tee: Tee) -> CheckResult {
    let Some((vendor, flags)) = cpu_info() else {
        return r(
            "cpu",
            "vendor",
            Status::Skip,
            "/proc/cpuinfo is not readable",
            None,
        );
    };
    let (want, virt) = if tee.is_amd() {
        ("AuthenticAMD", "svm")
    } else {
        ("GenuineIntel", "vmx")
    };
    if vendor != want {
        return r(
            "cpu",
            "vendor",
            Status::Fail,
            format!("CPU vendor is {vendor}; {} needs {want}", tee.name()),
            Some(format!(
                "run on an {} host",
                if tee.is_amd() {
                    "AMD EPYC"
                } else {
                    "Intel Xeon"
                }
            )),
        );
    }
    let has = |f: &str| flags.iter().any(|x| x == f);
    if !has(virt) {
        return r(
            "cpu",
            "vendor",
            Status::Warn,
            format!(
                "CPU vendor is {vendor} but the '{virt}' flag is absent: this machine is itself a guest or virtualization is disabled"
            ),
            Some("run on bare metal with virtualization enabled in the BIOS".into()),
        );
    }
    r(
        "cpu",
        "vendor",
        Status::Pass,
        format!("CPU vendor is {vendor} with '{virt}'"),
        None,
    )
}

fn check_vm_type(caps: &Capabilities, tee: Tee) -> CheckResult {
    let t = tee.vm_type();
    if caps.vm_types.contains(t) {
        return r(
            "kvm",
            "vm-type",
            Status::Pass,
            format!(
                "KVM offers VM types [{}], including {} ({})",
                caps.vm_types,
                t,
                t.abi_value()
            ),
            None,
        );
    }
    let (why, fix) = vm_type_reason(tee);
    r(
        "kvm",
        "vm-type",
        Status::Fail,
        format!(
            "KVM offers VM types [{}]; {} ({}) is not among them: {why}",
            caps.vm_types,
            t,
            t.abi_value()
        ),
        Some(fix.into()),
    )
}

fn check_memory(caps: &Capabilities, tee: Tee) -> Vec<CheckResult> {
    let mut out = Vec::new();
    if matches!(tee, Tee::Sev | Tee::SevEs) {
        out.push(r(
            "memory",
            "guest_memfd",
            Status::Skip,
            "not needed: SEV and SEV-ES guests use ordinary, pinned memory",
            None,
        ));
        return out;
    }
    out.push(match &caps.memory.guest_memfd {
        Availability::Available(g) => r(
            "memory",
            "guest_memfd",
            Status::Pass,
            format!("guest_memfd is available (flags {:#x})", g.flags),
            None,
        ),
        Availability::Unavailable(why) => r(
            "memory",
            "guest_memfd",
            Status::Fail,
            format!("guest_memfd is not available: {why}"),
            Some("use a kernel with KVM guest_memfd support (Linux 6.8 or later, CONFIG_KVM_GUEST_MEMFD)".into()),
        ),
    });
    let t = tee.vm_type();
    out.push(match caps.vm_scope.get(&t) {
        Some(Availability::Available(m)) if m.private_memory() => r(
            "memory",
            "private-attribute",
            Status::Pass,
            format!("{t} VMs accept KVM_MEMORY_ATTRIBUTE_PRIVATE"),
            None,
        ),
        Some(Availability::Available(_)) => r(
            "memory",
            "private-attribute",
            Status::Fail,
            format!("{t} VMs do not offer KVM_MEMORY_ATTRIBUTE_PRIVATE"),
            Some("use a kernel whose KVM supports private memory for this VM type".into()),
        ),
        _ => r(
            "memory",
            "private-attribute",
            Status::Skip,
            format!("needs a {t} VM, which this host cannot create"),
            None,
        ),
    });
    out
}

fn check_sev_attrs(caps: &Capabilities, cfg: &TeeConfig) -> Vec<CheckResult> {
    let mut out = Vec::new();
    let tee = cfg.tee;
    if tee == Tee::Sev {
        out.push(r(
            "sev",
            "vmsa-features",
            Status::Skip,
            "plain SEV guests have no VMSA features",
            None,
        ));
    } else {
        out.push(match &caps.sev.vmsa_features {
            Availability::Available(sup) => {
                let sup = if tee == Tee::SevEs { sup & !(1 << 9) } else { *sup };
                let bad = cfg.vmsa_features & !sup;
                if bad == 0 {
                    r(
                        "sev",
                        "vmsa-features",
                        Status::Pass,
                        format!(
                            "requested VMSA features {:#x} are within KVM_X86_SEV_VMSA_FEATURES {sup:#x}",
                            cfg.vmsa_features
                        ),
                        None,
                    )
                } else {
                    r(
                        "sev",
                        "vmsa-features",
                        Status::Fail,
                        format!(
                            "requested VMSA features {:#x} include {bad:#x}, not offered by KVM (KVM_X86_SEV_VMSA_FEATURES {sup:#x})",
                            cfg.vmsa_features
                        ),
                        Some(format!("drop {bad:#x} from --vmsa-features, or use a host that offers them (DEBUG_SWAP needs SEV-ES and CPU DebugSwap; SECURE_TSC needs SNP and SecureTSC)")),
                    )
                }
            }
            Availability::Unavailable(why) => r(
                "sev",
                "vmsa-features",
                Status::Fail,
                format!("cannot read the supported VMSA features: {why}"),
                Some("load kvm_amd with SEV enabled on an AMD EPYC host (Linux 6.10 or later)".into()),
            ),
        });
    }
    if tee == Tee::Snp {
        out.push(match &caps.sev.snp_policy_bits {
            Availability::Available(sup) => {
                let bad = cfg.snp_policy.bits() & !sup;
                if bad == 0 && *sup != 0 {
                    r(
                        "sev",
                        "snp-policy",
                        Status::Pass,
                        format!(
                            "SNP policy {:#x} is within KVM_X86_SNP_POLICY_BITS {sup:#x}",
                            cfg.snp_policy.bits()
                        ),
                        None,
                    )
                } else {
                    r(
                        "sev",
                        "snp-policy",
                        Status::Fail,
                        format!(
                            "SNP policy {:#x} has bits {bad:#x} that KVM does not accept (KVM_X86_SNP_POLICY_BITS {sup:#x})",
                            cfg.snp_policy.bits()
                        ),
                        Some(if *sup == 0 {
                            "SNP is not enabled on this host (the mask is 0): load kvm_amd with sev_snp=1".into()
                        } else {
                            format!("clear {bad:#x} from --policy, or update the firmware to one that supports those features")
                        }),
                    )
                }
            }
            Availability::Unavailable(why) => r(
                "sev",
                "snp-policy",
                Status::Fail,
                format!("cannot read the supported SNP policy bits: {why}"),
                Some("load kvm_amd with sev_snp=1 on an SNP-capable host (Linux 6.11 or later)".into()),
            ),
        });
    }
    out
}

fn check_dev_sev(cfg: &TeeConfig) -> Vec<CheckResult> {
    let mut out = Vec::new();
    let dev = match DevSev::open() {
        Ok(d) => {
            out.push(r(
                "sev",
                "dev-sev",
                Status::Pass,
                "/dev/sev exists and opens read-write",
                None,
            ));
            d
        }
        Err(e) => {
            let fix = match &e {
                DevSevError::PermissionDenied { .. } => {
                    "run as root, or give the VMM's user read-write access to /dev/sev (a udev rule)"
                }
                _ => "on an AMD EPYC with SEV enabled in the BIOS, load ccp and kvm_amd with sev=1",
            };
            out.push(r(
                "sev",
                "dev-sev",
                Status::Fail,
                e.to_string(),
                Some(fix.into()),
            ));
            out.push(r(
                "firmware",
                "api-version",
                Status::Skip,
                "needs /dev/sev to read the platform status",
                None,
            ));
            return out;
        }
    };
    let (want_major, want_minor) = cfg.policy_api();
    let have = if cfg.tee == Tee::Snp {
        dev.snp_platform_status()
            .map(|s| (s.api_major, s.api_minor, "SNP_PLATFORM_STATUS"))
    } else {
        dev.platform_status()
            .map(|s| (s.api_major, s.api_minor, "PLATFORM_STATUS"))
    };
    out.push(match have {
        Ok((major, minor, cmd)) => {
            let ok = (major, minor) >= (want_major, want_minor);
            r(
                "firmware",
                "api-version",
                if ok { Status::Pass } else { Status::Fail },
                format!(
                    "{cmd} reports firmware API {major}.{minor}; the policy requires {want_major}.{want_minor}"
                ),
                (!ok).then(|| format!(
                    "update the SEV firmware to API {want_major}.{want_minor} or later (BIOS update, or a newer amd_sev_fam19h_*.sbin), or lower the policy's API version"
                )),
            )
        }
        Err(e) => r(
            "firmware",
            "api-version",
            Status::Fail,
            format!("cannot read the platform status: {e}"),
            Some("check dmesg for ccp/SEV initialization errors".into()),
        ),
    });
    out
}

fn check_memlock(tee: Tee, memory: u64) -> CheckResult {
    if !matches!(tee, Tee::Sev | Tee::SevEs) {
        return r(
            "limits",
            "memlock",
            Status::Skip,
            format!(
                "{} guest memory lives in guest_memfd and is not charged to RLIMIT_MEMLOCK",
                tee.name()
            ),
            None,
        );
    }
    match nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_MEMLOCK) {
        Ok((soft, _hard)) => {
            let unlimited = soft == nix::sys::resource::RLIM_INFINITY;
            if unlimited || soft >= memory {
                r(
                    "limits",
                    "memlock",
                    Status::Pass,
                    format!(
                        "RLIMIT_MEMLOCK {} covers the {} KiB of guest memory KVM pins",
                        if unlimited {
                            "unlimited".to_string()
                        } else {
                            format!("{} KiB", soft / 1024)
                        },
                        memory / 1024
                    ),
                    None,
                )
            } else {
                r(
                    "limits",
                    "memlock",
                    Status::Fail,
                    format!(
                        "RLIMIT_MEMLOCK is {} KiB but KVM pins all {} KiB of SEV guest memory (KVM_MEMORY_ENCRYPT_REG_REGION)",
                        soft / 1024,
                        memory / 1024
                    ),
                    Some(format!(
                        "raise the limit to at least {} KiB (ulimit -l, LimitMEMLOCK= in a systemd unit, or run with CAP_IPC_LOCK)",
                        memory.div_ceil(1024)
                    )),
                )
            }
        }
        Err(e) => r(
            "limits",
            "memlock",
            Status::Skip,
            format!("getrlimit failed: {e}"),
            None,
        ),
    }
}

fn check_tdx(caps: &Capabilities, cfg: &TeeConfig) -> Vec<CheckResult> {
    match &caps.tdx {
        Availability::Available(t) => {
            let mut out = Vec::new();
            for (name, want, sup, opt) in [
                (
                    "attributes",
                    cfg.attributes,
                    t.supported_attrs,
                    "--attributes",
                ),
                ("xfam", cfg.xfam, t.supported_xfam, "--xfam"),
            ] {
                let bad = want & !sup;
                out.push(if bad == 0 {
                    r(
                        "tdx",
                        name,
                        Status::Pass,
                        format!("{name} {want:#x} within the supported {sup:#x}"),
                        None,
                    )
                } else {
                    r(
                        "tdx",
                        name,
                        Status::Fail,
                        format!("{name} {want:#x} include {bad:#x}, not supported by the TDX module (supported {sup:#x})"),
                        Some(format!("clear {bad:#x} from {opt}, or update the TDX module")),
                    )
                });
            }
            out
        }
        Availability::Unavailable(why) => ["attributes", "xfam"]
            .into_iter()
            .map(|n| {
                r(
                    "tdx",
                    n,
                    Status::Skip,
                    format!("TDX capabilities unavailable: {why}"),
                    None,
                )
            })
            .collect(),
    }
}

/// Runs every check for `cfg` and returns the results.
pub(crate) fn evaluate(cfg: &TeeConfig, memory: u64) -> Vec<CheckResult> {
    let tee = cfg.tee;
    let mut out = vec![check_cpu(tee)];
    let caps = match Kvm::open() {
        Ok(kvm) => {
            out.push(r(
                "kvm",
                "device",
                Status::Pass,
                format!("/dev/kvm opened, API version {}", kvm.api_version()),
                None,
            ));
            Some(kvm.capabilities())
        }
        Err(e) => {
            let reason = kvm_open_reason(&e);
            let fix = if reason.contains("permission denied") {
                "run as root, or give the VMM's user read-write access to /dev/kvm (the kvm group)"
            } else {
                "enable virtualization in the BIOS and load kvm with kvm_amd or kvm_intel"
            };
            out.push(r(
                "kvm",
                "device",
                Status::Fail,
                format!("KVM is not usable: {reason}"),
                Some(fix.into()),
            ));
            None
        }
    };
    match &caps {
        Some(caps) => {
            out.push(check_vm_type(caps, tee));
            out.extend(check_memory(caps, tee));
            if tee.is_amd() {
                out.extend(check_sev_attrs(caps, cfg));
            } else {
                out.extend(check_tdx(caps, cfg));
            }
        }
        None => {
            let t: VmType = tee.vm_type();
            out.push(r(
                "kvm",
                "vm-type",
                Status::Skip,
                format!("cannot ask KVM whether it offers {t} VMs without /dev/kvm"),
                None,
            ));
        }
    }
    if tee.is_amd() {
        out.extend(check_dev_sev(cfg));
    }
    out.push(check_memlock(tee, memory));
    out
}

fn symbol(s: Status) -> &'static str {
    match s {
        Status::Pass => "PASS",
        Status::Fail => "FAIL",
        Status::Skip => "SKIP",
        Status::Warn => "WARN",
    }
}

/// Runs `vmm-cli check`.
pub(crate) fn run(a: &CheckArgs) -> Result<Outcome, CliError> {
    let cfg = a.opts.validate(a.tee)?;
    let results = evaluate(&cfg, a.memory);
    let failed = results.iter().filter(|c| c.status == Status::Fail).count();
    let ready = failed == 0;
    if a.json {
        print_json(&serde_json::json!({
            "tee": cfg.tee.name(),
            "policy": (cfg.tee.is_amd()).then(|| format!("{:#x}", cfg.policy())),
            "vmsa_features": format!("{:#x}", cfg.vmsa_features),
            "attributes": (!cfg.tee.is_amd()).then(|| format!("{:#x}", cfg.attributes)),
            "xfam": (!cfg.tee.is_amd()).then(|| format!("{:#x}", cfg.xfam)),
            "memory": a.memory,
            "ready": ready,
            "failed": failed,
            "checks": results,
        }));
    } else {
        let what = if cfg.tee.is_amd() {
            format!("policy {:#x}", cfg.policy())
        } else {
            format!("attributes {:#x}, xfam {:#x}", cfg.attributes, cfg.xfam)
        };
        println!("Host readiness for a {} launch ({what}):", cfg.tee.name());
        for c in &results {
            println!(
                "[{}] {}/{}: {}",
                symbol(c.status),
                c.category,
                c.name,
                c.message
            );
            if let Some(f) = &c.fix {
                println!("       fix: {f}");
            }
        }
        if ready {
            println!(
                "Ready: a {} launch is possible on this host.",
                cfg.tee.name()
            );
        } else {
            println!(
                "Not ready: {failed} check(s) failed; a {} launch is impossible on this host.",
                cfg.tee.name()
            );
        }
    }
    Ok(if ready {
        Outcome::Success
    } else {
        Outcome::Negative
    })
}
