//! `vmm-cli launch`: runs a confidential launch through kvm-coco's launch API on
//! [`KvmBackend`], the one code path for every host.
//!
//! Where this machine's KVM offers the VM type, the launch runs on it. Where it does not
//! (`--backend auto`), or on request (`--backend sim`), a software host
//! ([`kvm_coco::sim::host`]) is started in this process and serves this thread: its
//! `/dev/kvm` and `/dev/sev` system calls are answered by the models of KVM, the PSP firmware
//! and the TDX module, and the same launch runs unchanged. `--backend kvm` never falls back.
//!
//! On the software host, vCPU 0 of an SNP guest or a TD then runs a guest program that asks
//! for its attestation evidence (an SNP report; a TDREPORT and a quote), answered through the
//! typed exits as a VMM does on hardware. The evidence is verified (the SNP report against the
//! software firmware's ARK → ASK → VCEK, the TDREPORT by the TDX module) and its measurement
//! is compared with the expected one.
//!
//! Measurements: the launch log's digest is only the expected value, computed by the host.
//! `matches` is printed only when a value the platform reported was compared with it: the SNP
//! report's MEASUREMENT or the TDREPORT's MRTD. SEV and SEV-ES print the firmware's
//! LAUNCH_MEASURE, an HMAC under the guest owner's TIK that only the guest owner can check.
//! On this machine's KVM an SNP guest or a TD obtains its evidence itself, so its measurement
//! is not observable from the host.
//!
//! `--tee none` runs a built-in plain real-mode guest on a default VM of this machine's KVM,
//! with a watchdog.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::builder::TypedValueParser;
use clap::{Args, ValueEnum};
use kvm_coco::launch::backend::Backend;
use kvm_coco::launch::{
    Finished, InitParams, KvmBackend, Launch, LaunchError, SevEsInit, SevInit, SnpIdentity,
    SnpInit, TdxInit, plan_memory,
};
use kvm_coco::measure::calc::{self, MeasureOptions};
use kvm_coco::measure::firmware::FirmwareImage;
use kvm_coco::measure::hashes::DirectBoot;
use kvm_coco::measure::plan::LaunchPlan;
use kvm_coco::measure::vcpu::host_cpu_sig;
use kvm_coco::sim::guest::{GuestOp, GuestOutcome};
use kvm_coco::sim::host::SoftwareHost;
use kvm_coco::sim::tdx::report::TDREPORT_SIZE;
use kvm_coco::sim::tdx::{SimTdxModule, TdReport};
use kvm_coco::{
    Access, CertsReply, Exit, GuestMapping, Kvm, MapGpaReply, MemoryRegion, TdVmCallStatus,
    TdxExit, Vcpu, VmType,
};
use psp_driver::owner::snp::verify_report;
use psp_driver::report::AttestationReport;
use psp_driver::sim::SimConfig;
use zerocopy::{FromBytes, IntoBytes};

use crate::tee::{Tee, TeeConfig};
use crate::util::{self, error_chain, print_json};
use crate::{CliError, Outcome, cli_err};

/// Where the guest's shared buffer for attestation requests lives (above 4 GiB, clear of
/// the firmware and of guest RAM).
const SHARED_GPA: u64 = 0x1_0000_0000;
/// Its size.
const SHARED_SIZE: u64 = 0x8000;
/// The highest guest RAM size the built-in layout places below the firmware.
const MAX_MEMORY: u64 = 0xF000_0000;
/// How long the plain guest may run before the watchdog ends the process.
const WATCHDOG: Duration = Duration::from_secs(10);
/// REPORT_DATA / REPORTDATA the guest binds into its evidence.
const REPORT_DATA: &[u8] = b"vmm-cli launch";
/// Exits the attestation guest program may take before it must have halted.
const MAX_EXITS: usize = 64;
/// Offset of the TDREPORT (in) and the quote (out) in the GetQuote buffer, after its header
/// (version, status, input length, output length).
const QUOTE_DATA: u64 = 24;

/// Which host answers the launch's system calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    /// This machine's KVM where it offers the VM type, else the software host.
    Auto,
    /// This machine's KVM only: fails where it does not offer the VM type.
    Kvm,
    /// The software host in this process (models of KVM, the PSP firmware and the TDX
    /// module answer the same system calls).
    Sim,
}

/// What `launch --tee` names: a technology, or `none` (a built-in plain real-mode guest on a
/// default VM of this machine's KVM).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaunchTee(Option<Tee>);

/// Options of `vmm-cli launch`.
#[derive(Debug, Args)]
pub struct LaunchArgs {
    /// Which host runs the launch.
    #[arg(long, value_enum, default_value = "auto")]
    backend: BackendChoice,
    /// Technology (`none`: a plain guest on this machine's KVM).
    #[arg(long, default_value = "snp", value_parser = crate::tee::tee_or("none").map(LaunchTee))]
    tee: LaunchTee,
    /// The technology-specific options.
    #[command(flatten)]
    opts: crate::tee::TeeOptions,
    /// vCPU count.
    #[arg(long, value_name = "N", default_value = "1", value_parser = util::int::<u32>)]
    vcpus: u32,
    /// The vCPUs' CPUID signature (family/model/stepping, CPUID(1).EAX) placed in the
    /// initial VMSAs (SEV-ES, SNP). Default: on this machine's KVM, this CPU's own (its CPUID
    /// leaf 1, as QEMU's `-cpu host`); on the software host, 0xa10f11 (its model's).
    #[arg(long, value_name = "SIG", value_parser = util::int::<u32>)]
    vcpu_sig: Option<u32>,
    /// Guest RAM below the firmware, e.g. 16M.
    #[arg(long, value_name = "SIZE", default_value = "16M", value_parser = util::size)]
    memory: u64,
    /// Firmware image (OVMF with SEV metadata, or TDVF); the built-in image by default.
    #[arg(long, value_name = "FILE")]
    firmware: Option<PathBuf>,
    /// Kernel for direct boot (hashed into the firmware's hash table; AMD only).
    #[arg(long, value_name = "FILE")]
    kernel: Option<PathBuf>,
    /// Initrd (with --kernel).
    #[arg(long, value_name = "FILE")]
    initrd: Option<PathBuf>,
    /// Kernel command line (with --kernel).
    #[arg(long, value_name = "CMDLINE")]
    append: Option<String>,
    /// SNP ID block (96 bytes), checked by the firmware at LAUNCH_FINISH.
    #[arg(long, value_name = "FILE")]
    id_block: Option<PathBuf>,
    /// SNP ID authentication structure (4096 bytes).
    #[arg(long, value_name = "FILE")]
    id_auth: Option<PathBuf>,
    /// SNP HOST_DATA (up to 32 bytes of hex).
    #[arg(long, value_name = "HEX")]
    host_data: Option<String>,
    /// TDX MRCONFIGID (up to 48 bytes of hex).
    #[arg(long, value_name = "HEX")]
    mrconfigid: Option<String>,
    /// On the software host: write the SNP attestation report or the TDX TDREPORT the guest
    /// obtained to FILE.
    #[arg(long, value_name = "FILE")]
    report_out: Option<PathBuf>,
    /// TDX on the software host: write the TD quote v4 the model quoting enclave made from
    /// the guest's TDREPORT to FILE.
    #[arg(long, value_name = "FILE")]
    quote_out: Option<PathBuf>,
    /// Write the launch log (every measured step) as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
    /// Seed of the software host (firmware identity, keys, report ids; default 0);
    /// `vmm-cli report --sim-chain --seed N` verifies against the same platform.
    #[arg(long, value_name = "N", value_parser = util::int::<u64>)]
    seed: Option<u64>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Prints a one-line error and yields the negative outcome (exit status 1): the launch was
/// attempted and failed.
fn failed(msg: impl std::fmt::Display) -> Outcome {
    eprintln!("error: {msg}");
    Outcome::Negative
}

fn check_options(a: &LaunchArgs, cfg: &TeeConfig) -> Result<(), CliError> {
    if a.kernel.is_none() && (a.initrd.is_some() || a.append.is_some()) {
        return Err(cli_err!("--initrd and --append need --kernel"));
    }
    if a.vcpus == 0 || a.vcpus > 64 {
        return Err(cli_err!("--vcpus must be between 1 and 64"));
    }
    if a.memory > MAX_MEMORY || !a.memory.is_multiple_of(4096) {
        return Err(cli_err!(
            "--memory must be a multiple of 4 KiB and at most 3840M (the built-in layout keeps RAM below the firmware)"
        ));
    }
    let snp_only = [
        ("--id-block", a.id_block.is_some()),
        ("--id-auth", a.id_auth.is_some()),
        ("--host-data", a.host_data.is_some()),
    ];
    for (opt, given) in snp_only {
        if given && cfg.tee != Tee::Snp {
            return Err(cli_err!("{opt} applies to --tee snp"));
        }
    }
    if a.id_block.is_some() != a.id_auth.is_some() {
        return Err(cli_err!("--id-block and --id-auth go together"));
    }
    if cfg.tee == Tee::SevEs && cfg.vmsa_features != 0 {
        return Err(cli_err!(
            "--vmsa-features {:#x} with --tee sev-es: the SEV-ES launch plan measures SEV_FEATURES 0 (as sev-snp-measure does), so the launch could not match its expected measurement; leave --vmsa-features out",
            cfg.vmsa_features
        ));
    }
    if a.mrconfigid.is_some() && cfg.tee != Tee::Tdx {
        return Err(cli_err!("--mrconfigid applies to --tee tdx"));
    }
    if a.kernel.is_some() && cfg.tee == Tee::Tdx {
        return Err(cli_err!(
            "--kernel is not supported with --tee tdx (TDVF measures a kernel into RTMRs, not MRTD)"
        ));
    }
    if a.report_out.is_some() && matches!(cfg.tee, Tee::Sev | Tee::SevEs) {
        return Err(cli_err!(
            "--report-out: SEV and SEV-ES guests have no attestation report (the LAUNCH_MEASURE value is printed)"
        ));
    }
    if a.quote_out.is_some() && cfg.tee != Tee::Tdx {
        return Err(cli_err!("--quote-out applies to --tee tdx"));
    }
    if a.backend == BackendChoice::Kvm {
        if let Some(opt) = evidence_option(a) {
            return Err(cli_err!(
                "{opt} needs the software host: on this machine's KVM the guest obtains its evidence itself"
            ));
        }
        if a.seed.is_some() {
            return Err(cli_err!("--seed applies to the software host"));
        }
    }
    Ok(())
}

/// The first option that asks for evidence only the software host obtains.
fn evidence_option(a: &LaunchArgs) -> Option<&'static str> {
    if a.report_out.is_some() {
        Some("--report-out")
    } else if a.quote_out.is_some() {
        Some("--quote-out")
    } else {
        None
    }
}

/// `--tee none` takes only `--backend auto|kvm`, `--memory` and `--json`.
fn check_plain_options(a: &LaunchArgs) -> Result<(), CliError> {
    let o = &a.opts;
    let given = [
        ("--backend sim", a.backend == BackendChoice::Sim),
        ("--policy", o.policy.is_some()),
        ("--vmsa-features", o.vmsa_features.is_some()),
        ("--attributes", o.attributes.is_some()),
        ("--xfam", o.xfam.is_some()),
        ("--vcpus", a.vcpus != 1),
        ("--vcpu-sig", a.vcpu_sig.is_some()),
        ("--firmware", a.firmware.is_some()),
        ("--kernel", a.kernel.is_some()),
        ("--initrd", a.initrd.is_some()),
        ("--append", a.append.is_some()),
        ("--id-block", a.id_block.is_some()),
        ("--id-auth", a.id_auth.is_some()),
        ("--host-data", a.host_data.is_some()),
        ("--mrconfigid", a.mrconfigid.is_some()),
        ("--report-out", a.report_out.is_some()),
        ("--quote-out", a.quote_out.is_some()),
        ("--log", a.log.is_some()),
        ("--seed", a.seed.is_some()),
    ];
    match given.iter().find(|(_, g)| *g) {
        Some((opt, _)) => Err(cli_err!(
            "{opt} does not apply to --tee none (a plain one-vCPU guest on a default VM of this machine's KVM)"
        )),
        None => Ok(()),
    }
}

fn init_params(a: &LaunchArgs, cfg: &TeeConfig) -> Result<InitParams, CliError> {
    Ok(match cfg.tee {
        Tee::Sev => InitParams::Sev(SevInit {
            policy: cfg.sev_policy.bits(),
            session: None,
        }),
        Tee::SevEs => InitParams::SevEs(SevEsInit {
            policy: cfg.sev_policy.bits(),
            vmsa_features: cfg.vmsa_features,
            ..Default::default()
        }),
        Tee::Snp => {
            let identity = match (&a.id_block, &a.id_auth) {
                (Some(b), Some(auth)) => {
                    let block = util::read("ID block", b)?;
                    let id_block: [u8; 96] = block.as_slice().try_into().map_err(|_| {
                        cli_err!(
                            "ID block '{}' is {} bytes; it must be 96",
                            b.display(),
                            block.len()
                        )
                    })?;
                    let raw = util::read("ID auth", auth)?;
                    let id_auth: Box<[u8; 4096]> =
                        raw.into_boxed_slice().try_into().map_err(|v: Box<[u8]>| {
                            cli_err!(
                                "ID auth '{}' is {} bytes; it must be 4096",
                                auth.display(),
                                v.len()
                            )
                        })?;
                    // auth_key_algo at offset 4: non-zero when an author key is present.
                    let author_key = id_auth[4..8] != [0; 4];
                    Some(SnpIdentity {
                        id_block,
                        id_auth,
                        author_key,
                    })
                }
                _ => None,
            };
            let host_data = match &a.host_data {
                Some(h) => util::hex_padded::<32>("--host-data", h)?,
                None => [0; 32],
            };
            InitParams::Snp(SnpInit {
                policy: cfg.snp_policy,
                vmsa_features: cfg.vmsa_features,
                identity,
                host_data,
                ..SnpInit::default()
            })
        }
        Tee::Tdx => {
            let mut t = TdxInit {
                attributes: cfg.attributes,
                xfam: cfg.xfam,
                ..TdxInit::default()
            };
            if let Some(m) = &a.mrconfigid {
                t.mrconfigid = util::hex_padded::<48>("--mrconfigid", m)?;
            }
            InitParams::Tdx(t)
        }
    })
}

/// Guest RAM ranges: `[0, memory)` minus what the plan occupies.
fn ram_gaps(plan: &LaunchPlan<'_>, memory: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut at = 0;
    for (gpa, size) in plan_memory(plan) {
        if gpa >= memory {
            break;
        }
        if gpa > at {
            out.push((at, gpa - at));
        }
        at = at.max(gpa + size);
    }
    if at < memory {
        out.push((at, memory - at));
    }
    out
}

fn execute(
    backend: KvmBackend,
    params: InitParams,
    plan: &LaunchPlan<'_>,
    ram: &[(u64, u64)],
    vcpus: u32,
) -> Result<Launch<Finished, KvmBackend>, LaunchError> {
    let mut l = Launch::new(backend, params)?;
    l.add_plan_memory(plan)?;
    for &(gpa, size) in ram {
        l.add_memory(gpa, size)?;
    }
    l.add_memory(SHARED_GPA, SHARED_SIZE)?;
    for id in 0..vcpus {
        l.create_vcpu(id)?;
    }
    let mut l = l.start()?;
    l.add_plan(plan)?;
    l.measure()?.finish()
}

/// Evidence the guest obtained.
enum Evidence {
    /// An SNP attestation report.
    Snp(Box<AttestationReport>),
    /// A TDREPORT, and the quote the guest received (if any).
    Td(Box<TdReport>, Option<Vec<u8>>),
}

/// Loads the attestation program into `vcpu`, runs it with the VMM's exit handling and
/// returns the evidence the guest observed.
fn guest_evidence(
    host: &SoftwareHost,
    backend: &mut KvmBackend,
    vcpu: &mut Vcpu,
    tee: Tee,
) -> Result<Evidence, String> {
    let mut report_data = [0u8; 64];
    report_data[..REPORT_DATA.len()].copy_from_slice(REPORT_DATA);
    let program = match tee {
        Tee::Snp => vec![
            GuestOp::SnpReport {
                report_data,
                certs_gpa: SHARED_GPA,
                npages: 0,
            },
            GuestOp::Halt,
        ],
        _ => vec![
            GuestOp::MapGpa {
                gpa: SHARED_GPA,
                npages: SHARED_SIZE / 4096,
                private: false,
            },
            GuestOp::GetQuote {
                gpa: SHARED_GPA,
                size: SHARED_SIZE,
                report_data,
            },
            GuestOp::Halt,
        ],
    };
    host.load_program(&*vcpu, program)
        .map_err(|e| error_chain(&e))?;
    let module = host.tdx_module();
    let mut halted = false;
    for _ in 0..MAX_EXITS {
        match vcpu.run().map_err(|e| error_chain(&e))? {
            Exit::Hlt => {
                halted = true;
                break;
            }
            Exit::SnpReqCerts(mut r) => {
                // No certificate table is served: an empty one (the all-zero terminator).
                let status = if r.npages == 0 {
                    CertsReply::Success
                } else {
                    match backend.write_shared(r.gpa, &[0; 24]) {
                        Ok(()) => CertsReply::Success,
                        Err(_) => CertsReply::Failed,
                    }
                };
                r.reply(status);
            }
            Exit::MemoryFault(f) => {
                backend
                    .set_private(f.gpa, f.size, f.access() == Access::Private)
                    .map_err(|e| error_chain(&e))?;
            }
            Exit::MapGpaRange(mut m) => {
                let private = m.access() == Access::Private;
                let r = backend.set_private(m.gpa, m.size(), private);
                m.reply(if r.is_ok() {
                    MapGpaReply::Success
                } else {
                    MapGpaReply::Invalid
                });
            }
            Exit::Tdx(TdxExit::GetQuote(mut q)) => {
                let status = serve_quote(backend, module, q.args.gpa, q.args.size)?;
                q.reply(status);
            }
            Exit::SystemEvent(e) => return Err(format!("the guest stopped: {e:?}")),
            other => return Err(format!("unexpected guest exit {other:?}")),
        }
    }
    if !halted {
        return Err(format!("the guest did not halt within {MAX_EXITS} exits"));
    }
    let outcomes = host.outcomes(&*vcpu).map_err(|e| error_chain(&e))?;
    let mut td = None;
    let mut quote = None;
    let mut refused = None;
    for o in outcomes {
        match o {
            GuestOutcome::SnpReport {
                report: Some(r), ..
            } => {
                return AttestationReport::read_from_bytes(&r)
                    .map(|r| Evidence::Snp(Box::new(r)))
                    .map_err(|_| "the guest received a malformed report".into());
            }
            GuestOutcome::SnpReport {
                report: None,
                exitinfo2,
                ..
            } => {
                refused = Some(format!(
                    "the guest's report request failed (SW_EXITINFO2 {})",
                    exitinfo2.map_or_else(|| "none".into(), |x| format!("{x:#x}"))
                ));
            }
            GuestOutcome::TdReport(r) => {
                td = Some(TdReport::from_slice(&r).map_err(|e| e.to_string())?);
            }
            GuestOutcome::Quote { ret: 0, buffer } => {
                let n = buffer
                    .get(20..24)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
                let start = QUOTE_DATA as usize;
                quote = n
                    .and_then(|n| buffer.get(start..start + n))
                    .map(<[u8]>::to_vec);
            }
            _ => {}
        }
    }
    match td {
        Some(r) => Ok(Evidence::Td(Box::new(r), quote)),
        None => Err(refused.unwrap_or_else(|| "the guest obtained no attestation evidence".into())),
    }
}

/// The quoting service of a TDVMCALL GetQuote: reads the TDREPORT after the buffer's header,
/// quotes it with the TDX module's model quoting enclave and writes the quote back.
fn serve_quote(
    backend: &mut KvmBackend,
    module: &Mutex<SimTdxModule>,
    gpa: u64,
    size: u64,
) -> Result<TdVmCallStatus, String> {
    let mut raw = vec![0u8; TDREPORT_SIZE];
    backend
        .read_shared(gpa + QUOTE_DATA, &mut raw)
        .map_err(|e| error_chain(&e))?;
    let Ok(report) = TdReport::from_slice(&raw) else {
        return Ok(TdVmCallStatus::InvalidOperand);
    };
    let quote = match module
        .lock()
        .map_err(|_| "the TDX module model is poisoned")?
        .quote(&report)
    {
        Ok(q) => q.to_bytes(),
        Err(_) => return Ok(TdVmCallStatus::InvalidOperand),
    };
    let Ok(len) = u32::try_from(quote.len()) else {
        return Ok(TdVmCallStatus::InvalidOperand);
    };
    if QUOTE_DATA + u64::from(len) > size {
        return Ok(TdVmCallStatus::InvalidOperand);
    }
    let w = |backend: &mut KvmBackend, at: u64, data: &[u8]| {
        backend.write_shared(at, data).map_err(|e| error_chain(&e))
    };
    w(backend, gpa + QUOTE_DATA, &quote)?;
    w(backend, gpa + 16, &0u32.to_le_bytes())?;
    w(backend, gpa + 20, &len.to_le_bytes())?;
    Ok(TdVmCallStatus::Success)
}

/// Runs the built-in plain real-mode guest on a default VM, with a watchdog.
fn plain_guest(kvm: &Kvm, memory: u64, json: bool) -> Outcome {
    std::thread::spawn(|| {
        std::thread::sleep(WATCHDOG);
        eprintln!(
            "error: the guest did not halt within {} s (watchdog)",
            WATCHDOG.as_secs()
        );
        std::process::exit(1);
    });
    let run = || -> Result<(Vec<u8>, u64), kvm_coco::Error> {
        let vm = kvm.create_vm(VmType::Default)?;
        let size = usize::try_from(memory.clamp(0x10_0000, 0x400_0000)).unwrap_or(0x10_0000);
        let mem = Arc::new(GuestMapping::anonymous(size)?);
        mem.write(0x1000, &crate::builtin::REAL_MODE_GUEST)?;
        vm.set_memory_region(MemoryRegion::new(0, 0, mem))?;
        let mut vcpu = vm.create_vcpu(0)?;
        let mut sregs = vcpu.sregs()?;
        sregs.cs.base = 0;
        sregs.cs.selector = 0;
        vcpu.set_sregs(&sregs)?;
        let mut regs = vcpu.regs()?;
        regs.rip = 0x1000;
        regs.rflags = 2;
        vcpu.set_regs(&regs)?;
        let mut out = Vec::new();
        for _ in 0..64 {
            match vcpu.run()? {
                Exit::IoOut { port: 0x3f8, data } => out.extend_from_slice(data),
                Exit::Hlt => break,
                _ => break,
            }
        }
        Ok((out, vcpu.regs()?.rip))
    };
    match run() {
        Ok((out, rip)) => {
            let ok = out == [crate::builtin::REAL_MODE_OUTPUT];
            if json {
                print_json(&serde_json::json!({
                    "host": "kvm",
                    "tee": "none",
                    "vm_type": "default",
                    "serial": String::from_utf8_lossy(&out),
                    "halted_at": format!("{rip:#x}"),
                    "ok": ok,
                }));
            } else {
                println!("host:     kvm (plain guest on a default VM)");
                println!("serial:   {:?}", String::from_utf8_lossy(&out));
                println!("halted:   rip {rip:#x}");
            }
            if ok {
                Outcome::Success
            } else {
                failed(format!(
                    "the plain guest wrote {out:?} instead of {:?}",
                    [crate::builtin::REAL_MODE_OUTPUT]
                ))
            }
        }
        Err(e) => failed(format!("plain guest failed: {}", error_chain(&e))),
    }
}

/// `vmm-cli launch --tee none`.
fn run_plain(a: &LaunchArgs) -> Result<Outcome, CliError> {
    check_plain_options(a)?;
    match Kvm::open() {
        Ok(kvm) => Ok(plain_guest(&kvm, a.memory, a.json)),
        Err(e) => Ok(failed(crate::check::kvm_open_reason(&e))),
    }
}

/// Where the launch runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HostKind {
    /// This machine's KVM.
    Kvm,
    /// The software host in this process, with its seed.
    Software(u64),
}

/// How the expected measurement fared against the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// The platform-reported value was compared and is equal.
    Matches,
    /// The platform-reported value was compared and differs.
    Differs,
    /// LAUNCH_MEASURE: only the guest owner (with the TIK) can check it.
    OwnerVerifiable,
    /// On this machine's KVM: the evidence goes to the guest, not the host.
    NotObservable,
    /// The guest obtained no evidence (the failure is in the verification).
    NotObtained,
}

impl Check {
    /// The JSON value.
    fn key(self) -> &'static str {
        match self {
            Self::Matches => "matches",
            Self::Differs => "differs",
            Self::OwnerVerifiable => "verifiable by the guest owner",
            Self::NotObservable => "not observable from the host",
            Self::NotObtained => "not compared",
        }
    }

    /// The text line.
    fn text(self) -> &'static str {
        match self {
            Self::Matches => "matches: the platform-reported value equals the expected one",
            Self::Differs => "DIFFERS: the platform-reported value is not the expected one",
            Self::OwnerVerifiable => {
                "verifiable by the guest owner: LAUNCH_MEASURE is an HMAC under the owner's TIK, which the host does not hold"
            }
            Self::NotObservable => {
                "not observable from the host: on this machine's KVM the guest obtains its attestation report itself"
            }
            Self::NotObtained => "not compared: the guest obtained no evidence",
        }
    }
}

/// A value the platform reported.
struct PlatformValue {
    /// Where it was read.
    source: &'static str,
    /// The value (hex).
    value: String,
    /// LAUNCH_MEASURE's nonce (hex).
    mnonce: Option<String>,
}

/// What to print.
struct Summary {
    host: HostKind,
    /// The vCPU signature in the plan's VMSAs (SEV-ES, SNP).
    vcpu_sig: Option<u32>,
    /// The launch log's digest (hex).
    expected: String,
    /// The offline calculator's digest (hex).
    offline: String,
    platform: Option<PlatformValue>,
    check: Check,
    evidence: Option<serde_json::Value>,
    evidence_text: Vec<String>,
    verified: Option<Result<String, String>>,
}

fn read_opt(what: &str, p: Option<&Path>) -> Result<Option<Vec<u8>>, CliError> {
    p.map(|p| util::read(what, p)).transpose()
}

/// Decides where the launch runs: `Ok(None)` this machine's KVM, `Ok(Some(why))` the
/// software host (with the reason for the note, empty when it was asked for), `Err` why
/// `--backend kvm` cannot run (not printed yet).
fn choose_host(backend: BackendChoice, vm_type: VmType) -> Result<Option<String>, String> {
    if backend == BackendChoice::Sim {
        return Ok(Some(String::new()));
    }
    let why = match Kvm::open() {
        Ok(kvm) if kvm.supported_vm_types().contains(vm_type) => return Ok(None),
        Ok(kvm) => format!(
            "KVM offers VM types [{}]; {vm_type} ({}) is not among them",
            kvm.supported_vm_types(),
            vm_type.abi_value()
        ),
        Err(e) => crate::check::kvm_open_reason(&e),
    };
    if backend == BackendChoice::Kvm {
        return Err(format!(
            "--backend kvm: {why}; the launch needs it (--backend auto falls back to the software host, --tee none runs a plain guest)"
        ));
    }
    Ok(Some(why))
}

/// The vCPU signature of the plan's VMSAs: `--vcpu-sig` if given; else the software host's
/// model's on the software host, and this machine's own (`host`, from its CPUID leaf 1) on
/// its KVM, where the guest's vCPUs are the host's CPU.
fn vcpu_sig(given: Option<u32>, software: bool, host: Option<u32>) -> Option<u32> {
    match (given, software) {
        (Some(sig), _) => Some(sig),
        (None, true) => Some(SimConfig::default().fms),
        (None, false) => host,
    }
}

/// Starts the software host and serves this thread with it.
fn start_software_host(seed: u64) -> Result<SoftwareHost, String> {
    let host = SoftwareHost::builder()
        .seed(seed)
        .start()
        .map_err(|e| error_chain(&e))?;
    host.serve_current_thread().map_err(|e| error_chain(&e))?;
    Ok(host)
}

/// Runs `vmm-cli launch`.
pub(crate) fn run(a: &LaunchArgs) -> Result<Outcome, CliError> {
    let LaunchTee(Some(tee)) = a.tee else {
        return run_plain(a);
    };
    let cfg = a.opts.validate(tee)?;
    check_options(a, &cfg)?;
    for (option, path) in [
        ("--report-out", &a.report_out),
        ("--quote-out", &a.quote_out),
        ("--log", &a.log),
    ] {
        if let Some(p) = path {
            util::check_output(option, p)?;
        }
    }
    let params = init_params(a, &cfg)?;
    let image = match &a.firmware {
        Some(p) => util::read("firmware", p)?,
        None => crate::builtin::tiny_firmware(),
    };
    let fw_name = a.firmware.as_ref().map_or_else(
        || "built-in 64 KiB image".to_string(),
        |p| p.display().to_string(),
    );
    let fw = FirmwareImage::parse(&image).map_err(|e| cli_err!("firmware '{fw_name}': {e}"))?;
    let kernel = read_opt("kernel", a.kernel.as_deref())?;
    let initrd = read_opt("initrd", a.initrd.as_deref())?;
    // Where the launch runs decides the default vCPU signature; a `--backend kvm` that
    // cannot run is reported once the inputs are known to be valid.
    let software = choose_host(a.backend, cfg.tee.vm_type());
    // The plan's VMSAs carry the SEV_FEATURES KVM writes for these parameters.
    let mut inputs = params.plan_inputs(&fw);
    inputs.vcpus = a.vcpus;
    inputs.vcpu_sig = vcpu_sig(a.vcpu_sig, matches!(software, Ok(Some(_))), host_cpu_sig());
    inputs.boot = kernel.as_deref().map(|k| DirectBoot {
        kernel: k,
        initrd: initrd.as_deref(),
        cmdline: a.append.as_deref(),
    });
    let plan = match cfg.tee {
        Tee::Sev => LaunchPlan::sev(&inputs),
        Tee::SevEs => LaunchPlan::sev_es(&inputs),
        Tee::Snp => LaunchPlan::snp(&inputs),
        Tee::Tdx => LaunchPlan::tdx(&fw),
    }
    .map_err(|e| cli_err!("firmware '{fw_name}': {e}"))?;
    let offline = calc::measure(
        &plan,
        &MeasureOptions {
            log: false,
            progress: None,
        },
    )
    .map_err(|e| cli_err!("{e}"))?;
    let ram = ram_gaps(&plan, a.memory);
    // The signature only enters VMSAs (SEV-ES, SNP).
    let vcpu_sig = inputs
        .vcpu_sig
        .filter(|_| matches!(cfg.tee, Tee::SevEs | Tee::Snp));

    let software = match software {
        Ok(s) => s,
        Err(why) => return Ok(failed(why)),
    };
    let host = match software {
        None => {
            if let Some(opt) = evidence_option(a) {
                return Err(cli_err!(
                    "{opt} needs the software host: this machine's KVM offers {}, and there the guest obtains its evidence itself",
                    cfg.tee.name()
                ));
            }
            None
        }
        Some(why) => {
            let seed = a.seed.unwrap_or(0);
            let why = if why.is_empty() {
                String::new()
            } else {
                format!("{why}: ")
            };
            match start_software_host(seed) {
                Ok(h) => {
                    eprintln!(
                        "note: {why}using the software host in this process (models of KVM, the PSP firmware and the TDX module; seed {seed})"
                    );
                    Some((h, seed))
                }
                Err(e) => return Ok(failed(format!("{why}the software host cannot run: {e}"))),
            }
        }
    };
    let outcome = launch(
        a,
        &cfg,
        &fw_name,
        params,
        &plan,
        &ram,
        (offline.digest.as_bytes(), vcpu_sig),
        host.as_ref().map(|(h, s)| (h, *s)),
    );
    // The launch's files are closed; the host may stop.
    drop(host);
    outcome
}

/// The launch through [`KvmBackend`], on whichever host answers, and its evidence.
#[allow(clippy::too_many_arguments)]
fn launch(
    a: &LaunchArgs,
    cfg: &TeeConfig,
    fw_name: &str,
    params: InitParams,
    plan: &LaunchPlan<'_>,
    ram: &[(u64, u64)],
    (offline, vcpu_sig): (&[u8], Option<u32>),
    host: Option<(&SoftwareHost, u64)>,
) -> Result<Outcome, CliError> {
    let on_host = |what: String| match host {
        Some(_) => format!("software host: {what}"),
        None => what,
    };
    let kvm = match Kvm::open() {
        Ok(k) => k,
        Err(e) => return Ok(failed(on_host(crate::check::kvm_open_reason(&e)))),
    };
    let backend = match KvmBackend::new(&kvm, cfg.tee.vm_type()) {
        Ok(b) => b,
        Err(e) => return Ok(failed(on_host(error_chain(&e)))),
    };
    let l = match execute(backend, params, plan, ram, a.vcpus) {
        Ok(l) => l,
        Err(e) => return Ok(failed(format!("launch failed: {}", error_chain(&e)))),
    };
    if let Some(p) = &a.log {
        util::write("log", p, l.log().to_json().as_bytes())?;
    }
    let expected = l.log().digest.to_vec();
    let mut s = Summary {
        host: host.map_or(HostKind::Kvm, |(_, seed)| HostKind::Software(seed)),
        vcpu_sig,
        expected: hex::encode(&expected),
        offline: hex::encode(offline),
        platform: None,
        check: Check::NotObservable,
        evidence: None,
        evidence_text: Vec::new(),
        verified: None,
    };
    match (cfg.tee, host) {
        (Tee::Sev | Tee::SevEs, _) => {
            if let Some(m) = l.sev_launch_measure() {
                s.platform = Some(PlatformValue {
                    source: "LAUNCH_MEASURE",
                    value: hex::encode(m.measure),
                    mnonce: Some(hex::encode(m.mnonce)),
                });
                s.check = Check::OwnerVerifiable;
            }
        }
        (_, None) => {}
        (tee, Some((host, _))) => {
            let (mut backend, mut vcpus) = l.into_parts();
            let Some(vcpu) = vcpus.first_mut() else {
                return Ok(failed("no vCPU"));
            };
            s.check = Check::NotObtained;
            match guest_evidence(host, &mut backend, vcpu, tee) {
                Ok(Evidence::Snp(r)) => snp_evidence(a, host, &r, &expected, &mut s)?,
                Ok(Evidence::Td(r, quote)) => {
                    td_evidence(a, host, &r, quote.as_deref(), &expected, &mut s)?;
                }
                Err(e) => s.verified = Some(Err(format!("attestation failed: {e}"))),
            }
        }
    }
    Ok(print_summary(a, cfg, fw_name, &s))
}

fn compare(platform: &[u8], expected: &[u8]) -> Check {
    if platform == expected {
        Check::Matches
    } else {
        Check::Differs
    }
}

/// Verifies the guest's SNP report and records it.
fn snp_evidence(
    a: &LaunchArgs,
    host: &SoftwareHost,
    r: &AttestationReport,
    expected: &[u8],
    s: &mut Summary,
) -> Result<(), CliError> {
    s.verified = Some(match host.sev_host() {
        Some(h) => verify_report(r, &h.firmware().certs().snp, None)
            .map(|()| {
                "signature verified against the software host's ARK/ASK/VCEK (simulated chain)"
                    .to_string()
            })
            .map_err(|e| e.to_string()),
        None => Err("the software host has no AMD firmware model".into()),
    });
    s.platform = Some(PlatformValue {
        source: "SNP attestation report MEASUREMENT",
        value: hex::encode(r.measurement),
        mnonce: None,
    });
    s.check = compare(&r.measurement, expected);
    let rows = crate::report::snp_rows(r, None);
    s.evidence_text = rows
        .iter()
        .filter(|(k, _)| {
            matches!(
                *k,
                "version" | "policy" | "report_data" | "host_data" | "reported_tcb" | "signing_key"
            )
        })
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    s.evidence = Some(serde_json::Value::Object(
        rows.into_iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v)))
            .collect(),
    ));
    if let Some(p) = &a.report_out {
        util::write("report", p, r.as_bytes())?;
    }
    Ok(())
}

/// Verifies the guest's TDREPORT and records it (and its quote).
fn td_evidence(
    a: &LaunchArgs,
    host: &SoftwareHost,
    r: &TdReport,
    quote: Option<&[u8]>,
    expected: &[u8],
    s: &mut Summary,
) -> Result<(), CliError> {
    let v = host
        .tdx_module()
        .lock()
        .map_err(|_| "the TDX module model is poisoned".to_string())
        .and_then(|m| m.verify_report(r).map_err(|e| e.to_string()));
    s.verified = Some(v.map(|()| "TDREPORT MAC verified by the software host's TDX module".into()));
    s.platform = Some(PlatformValue {
        source: "TDREPORT MRTD",
        value: hex::encode(r.td_info.mrtd),
        mnonce: None,
    });
    s.check = compare(&r.td_info.mrtd, expected);
    s.evidence_text = vec![
        format!("attributes: {:#x}", r.td_info.attributes.get()),
        format!("xfam: {:#x}", r.td_info.xfam.get()),
        format!("mrconfigid: {}", hex::encode(r.td_info.mrconfigid)),
        format!("report_data: {}", hex::encode(r.report_mac.report_data)),
    ];
    s.evidence = Some(serde_json::json!({
        "type": "TDX TDREPORT",
        "mrtd": hex::encode(r.td_info.mrtd),
        "mrconfigid": hex::encode(r.td_info.mrconfigid),
        "attributes": format!("{:#x}", r.td_info.attributes.get()),
        "xfam": format!("{:#x}", r.td_info.xfam.get()),
        "report_data": hex::encode(r.report_mac.report_data),
        "quote_bytes": quote.map(<[u8]>::len),
    }));
    if let Some(p) = &a.report_out {
        util::write("TDREPORT", p, r.as_bytes())?;
    }
    if let Some(p) = &a.quote_out {
        match quote {
            Some(q) => util::write("quote", p, q)?,
            None => {
                s.verified = Some(Err("the guest obtained no quote".into()));
            }
        }
    }
    Ok(())
}

fn print_summary(a: &LaunchArgs, cfg: &TeeConfig, fw_name: &str, s: &Summary) -> Outcome {
    let offline_agrees = s.expected == s.offline;
    let seed = match s.host {
        HostKind::Kvm => None,
        HostKind::Software(seed) => Some(seed),
    };
    if a.json {
        print_json(&serde_json::json!({
            "host": if seed.is_some() { "software" } else { "kvm" },
            "seed": seed,
            "tee": cfg.tee.name(),
            "policy": cfg.tee.is_amd().then(|| format!("{:#x}", cfg.policy())),
            "vcpus": a.vcpus,
            "vcpu_sig": s.vcpu_sig.map(|v| format!("{v:#x}")),
            "firmware": fw_name,
            "expected_measurement": s.expected,
            "offline_measurement": s.offline,
            "platform_measurement": s.platform.as_ref().map(|p| serde_json::json!({
                "source": p.source,
                "value": p.value,
                "mnonce": p.mnonce,
            })),
            "measurement_check": s.check.key(),
            "evidence": s.evidence,
            "verification": s.verified.as_ref().map(|v| match v {
                Ok(m) => serde_json::json!({"status": "verified", "message": m}),
                Err(m) => serde_json::json!({"status": "failed", "message": m}),
            }),
            "report_out": a.report_out.as_ref().map(|p| p.display().to_string()),
            "quote_out": a.quote_out.as_ref().map(|p| p.display().to_string()),
        }));
    } else {
        match seed {
            Some(seed) => println!("host:         software host in this process (seed {seed})"),
            None => println!("host:         kvm"),
        }
        println!(
            "guest:        {} ({} vCPU), firmware: {fw_name}",
            cfg.tee.name(),
            a.vcpus
        );
        if cfg.tee.is_amd() {
            println!("policy:       {:#x}", cfg.policy());
        }
        if let Some(sig) = s.vcpu_sig {
            println!("vcpu sig:     {sig:#x} (CPUID leaf 1 signature in the initial VMSAs)");
        }
        println!(
            "expected:     {} (launch log, computed by the host)",
            s.expected
        );
        if !offline_agrees {
            println!("offline:      {} DIFFERS from the launch log", s.offline);
        }
        if let Some(p) = &s.platform {
            match &p.mnonce {
                Some(n) => println!("platform:     {} ({}, mnonce {n})", p.value, p.source),
                None => println!("platform:     {} ({})", p.value, p.source),
            }
        }
        println!("measurement:  {}", s.check.text());
        for line in &s.evidence_text {
            println!("evidence:     {line}");
        }
        match &s.verified {
            Some(Ok(m)) => println!("verified:     {m}"),
            Some(Err(m)) => println!("verified:     FAILED: {m}"),
            None => {}
        }
        if let Some(p) = &a.report_out {
            println!("report:       written to {}", p.display());
        }
        if let Some(p) = &a.quote_out {
            println!("quote:        written to {}", p.display());
        }
    }
    match verdict(s) {
        Ok(()) => Outcome::Success,
        Err(why) => failed(why),
    }
}

/// Whether the launch succeeded: the launch log agrees with the offline calculation, a
/// platform-reported measurement that was compared matches, and the evidence verified.
fn verdict(s: &Summary) -> Result<(), &'static str> {
    if s.expected != s.offline {
        Err("the launch log's digest differs from the offline calculation")
    } else if s.check == Check::Differs {
        Err("the platform-reported measurement differs from the expected one")
    } else if matches!(s.verified, Some(Err(_))) || s.check == Check::NotObtained {
        Err("the launch completed but its evidence did not verify")
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// `vmm-cli launch ARGS`, parsed.
    fn args(v: &[&str]) -> LaunchArgs {
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            a: LaunchArgs,
        }
        let argv = std::iter::once("launch").chain(v.iter().copied());
        Cli::try_parse_from(argv).unwrap().a
    }

    #[test]
    fn tee_is_parsed_as_kvm_coco_tee_or_none() {
        assert_eq!(args(&[]).tee, LaunchTee(Some(Tee::Snp)));
        assert_eq!(args(&["--tee", "sev-es"]).tee, LaunchTee(Some(Tee::SevEs)));
        assert_eq!(args(&["--tee", "tdx"]).tee, LaunchTee(Some(Tee::Tdx)));
        assert_eq!(args(&["--tee", "none"]).tee, LaunchTee(None));
    }

    #[test]
    fn the_vcpu_signature_is_the_hosts_on_kvm_and_the_models_on_the_software_host() {
        // Milan's CPUID leaf 1 signature (facts firmware-and-measurement §2.2) as the host's.
        let host = Some(0x00A0_0F11);
        assert_eq!(vcpu_sig(None, false, host), Some(0x00A0_0F11));
        // The software host's model: family 0x19, model 0x11, stepping 1 → 0xA10F11.
        assert_eq!(vcpu_sig(None, true, host), Some(0x00A1_0F11));
        // --vcpu-sig wins on both.
        assert_eq!(vcpu_sig(Some(0x0083_0F10), false, host), Some(0x0083_0F10));
        assert_eq!(vcpu_sig(Some(0x0083_0F10), true, host), Some(0x0083_0F10));
        // No CPUID to read: no signature, and a plan that needs one says so.
        assert_eq!(vcpu_sig(None, false, None), None);
    }

    #[test]
    fn sev_es_with_vmsa_features_is_a_usage_error() {
        let check = |v: &[&str]| {
            let a = args(v);
            let LaunchTee(Some(tee)) = a.tee else {
                panic!("{v:?}")
            };
            let cfg = a.opts.validate(tee).unwrap();
            check_options(&a, &cfg).map_err(|e| e.to_string())
        };
        let e = check(&["--tee", "sev-es", "--vmsa-features", "0x20"]).unwrap_err();
        assert!(e.contains("SEV_FEATURES 0"), "{e}");
        assert!(check(&["--tee", "sev-es"]).is_ok());
        assert!(check(&["--tee", "snp", "--vmsa-features", "0x20"]).is_ok());
    }

    fn summary(check: Check, verified: Option<Result<String, String>>) -> Summary {
        Summary {
            host: HostKind::Software(0),
            vcpu_sig: None,
            expected: "aa".into(),
            offline: "aa".into(),
            platform: None,
            check,
            evidence: None,
            evidence_text: Vec::new(),
            verified,
        }
    }

    #[test]
    fn only_a_compared_equal_or_uncomparable_measurement_with_verified_evidence_succeeds() {
        let ok = || Some(Ok(String::new()));
        assert_eq!(verdict(&summary(Check::Matches, ok())), Ok(()));
        assert_eq!(verdict(&summary(Check::OwnerVerifiable, None)), Ok(()));
        assert_eq!(verdict(&summary(Check::NotObservable, None)), Ok(()));
        assert!(verdict(&summary(Check::Differs, ok())).is_err());
        assert!(verdict(&summary(Check::NotObtained, None)).is_err());
        assert!(verdict(&summary(Check::Matches, Some(Err("bad".into())))).is_err());
        let mut s = summary(Check::Matches, ok());
        s.offline = "ab".into();
        assert!(verdict(&s).is_err());
    }

    #[test]
    fn the_measurement_is_compared_byte_for_byte() {
        assert_eq!(compare(&[1, 2], &[1, 2]), Check::Matches);
        assert_eq!(compare(&[1, 2], &[1, 3]), Check::Differs);
        assert_eq!(compare(&[1, 2], &[1, 2, 0]), Check::Differs);
    }
}
