//! `vmm-cli launch`: runs a confidential launch through kvm-coco's launch API.
//!
//! With no arguments it launches the built-in 64 KiB firmware image as a one-vCPU SNP
//! guest on the simulated backend, prints the launch measurement (checked against the
//! offline calculation), has the guest request an attestation report and verifies it
//! against the simulated ARK → ASK → VCEK chain.
//!
//! `--backend auto` uses real KVM where the host offers the VM type and the simulated
//! backend otherwise (saying so on stderr). `--backend kvm` on a host without the VM type
//! runs the built-in plain real-mode guest on an ordinary (default) VM instead, with a
//! watchdog.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::{Args, ValueEnum};
use kvm_coco::launch::backend::Backend;
use kvm_coco::launch::{
    Finished, GuestOp, GuestOutcome, InitParams, KvmBackend, Launch, LaunchError, LaunchVcpu,
    SevEsInit, SevInit, SimBackend, SnpIdentity, SnpInit, TdxInit, plan_memory,
};
use kvm_coco::measure::calc::{self, MeasureOptions};
use kvm_coco::measure::firmware::FirmwareImage;
use kvm_coco::measure::hashes::DirectBoot;
use kvm_coco::measure::plan::{LaunchPlan, PlanInputs};
use kvm_coco::sim::sev::SimSevConfig;
use kvm_coco::sim::tdx::{SimKvmConfig, SimTdxModule, TdReport};
use kvm_coco::{
    Access, Exit, GuestMapping, Kvm, MapGpaReply, MemoryRegion, TdVmCallStatus, TdxExit, VmType,
};
use psp_driver::owner::snp::verify_report;
use psp_driver::report::AttestationReport;
use psp_driver::sim::SimConfig;
use zerocopy::{FromBytes, IntoBytes};

use crate::tee::{Tee, TeeConfig};
use crate::util::{self, error_chain, print_json, seed_bytes};
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

/// Which backend runs the launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    /// Real KVM where the host offers the VM type, else the simulated backend.
    Auto,
    /// Real `/dev/kvm` (a plain guest on a default VM if the type is not offered).
    Kvm,
    /// The software model of KVM and the firmware.
    Sim,
}

/// Options of `vmm-cli launch`.
#[derive(Debug, Args)]
pub struct LaunchArgs {
    /// Backend.
    #[arg(long, value_enum, default_value = "auto")]
    backend: BackendChoice,
    /// Technology.
    #[arg(long, value_enum, default_value = "snp")]
    tee: Tee,
    /// The technology-specific options.
    #[command(flatten)]
    opts: crate::tee::TeeOptions,
    /// vCPU count.
    #[arg(long, value_name = "N", default_value = "1", value_parser = util::int::<u32>)]
    vcpus: u32,
    /// The vCPUs' CPUID signature (family/model/stepping, CPUID(1).EAX) placed in the
    /// initial VMSAs (SEV-ES, SNP); default 0xa10f11, the simulated host's.
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
    /// Write the SNP attestation report or the TDX TDREPORT to FILE.
    #[arg(long, value_name = "FILE")]
    report_out: Option<PathBuf>,
    /// TDX on the simulated backend: write the TD quote v4 the model quoting enclave made
    /// from the guest's TDREPORT to FILE.
    #[arg(long, value_name = "FILE")]
    quote_out: Option<PathBuf>,
    /// Write the launch log (every measured step) as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
    /// Seed of the simulated platform (keys, report ids); `vmm-cli report --sim-chain
    /// --seed N` verifies against the same platform.
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
    if a.quote_out.is_some() && (cfg.tee != Tee::Tdx || a.backend == BackendChoice::Kvm) {
        return Err(cli_err!(
            "--quote-out applies to --tee tdx on the simulated backend"
        ));
    }
    if a.seed.is_some() && a.backend == BackendChoice::Kvm {
        return Err(cli_err!("--seed applies to the simulated backend"));
    }
    Ok(())
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

fn execute<B: Backend>(
    backend: B,
    params: InitParams,
    plan: &LaunchPlan<'_>,
    ram: &[(u64, u64)],
    vcpus: u32,
) -> Result<Launch<Finished, B>, LaunchError> {
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

/// Evidence the simulated guest obtained.
enum Evidence {
    Snp(Box<AttestationReport>),
    Td(Box<TdReport>, Option<Vec<u8>>),
}

/// Runs the simulated guest's attestation request and returns the evidence.
fn guest_evidence(
    backend: &mut SimBackend,
    vcpu: &mut kvm_coco::launch::SimVcpu,
    tee: Tee,
    module: Option<&SharedModule>,
) -> Result<Evidence, String> {
    let mut quote_bytes = None;
    let mut report_data = [0u8; 64];
    report_data[..REPORT_DATA.len()].copy_from_slice(REPORT_DATA);
    match tee {
        Tee::Snp => vcpu.load_program([
            GuestOp::SnpReport {
                report_data,
                certs_gpa: SHARED_GPA,
                npages: 0,
            },
            GuestOp::Halt,
        ]),
        _ => vcpu.load_program([
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
        ]),
    }
    for _ in 0..64 {
        match vcpu.run().map_err(|e| error_chain(&e))? {
            Exit::Hlt => break,
            Exit::MemoryFault(f) => {
                let private = f.access() == Access::Private;
                backend
                    .set_private(f.gpa, f.size, private)
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
                // The quoting service: read the TDREPORT after the 24-byte header, quote it
                // with the model's quoting enclave, write the quote back.
                let gpa = q.args.gpa;
                let mut raw = vec![0u8; 1024];
                backend
                    .read_shared(gpa + 24, &mut raw)
                    .map_err(|e| error_chain(&e))?;
                let status = match (TdReport::read_from_bytes(&raw), module) {
                    (Ok(r), Some(m)) => {
                        match m.lock().map_err(|_| "quoting enclave poisoned")?.quote(&r) {
                            Ok(quote) => {
                                let bytes = quote.to_bytes();
                                quote_bytes = Some(bytes.clone());
                                backend
                                    .write_shared(gpa + 24, &bytes)
                                    .map_err(|e| error_chain(&e))?;
                                backend
                                    .write_shared(gpa + 16, &0u32.to_le_bytes())
                                    .map_err(|e| error_chain(&e))?;
                                backend
                                    .write_shared(gpa + 20, &(bytes.len() as u32).to_le_bytes())
                                    .map_err(|e| error_chain(&e))?;
                                TdVmCallStatus::Success
                            }
                            Err(_) => TdVmCallStatus::InvalidOperand,
                        }
                    }
                    _ => TdVmCallStatus::InvalidOperand,
                };
                q.reply(status);
            }
            other => return Err(format!("unexpected guest exit {other:?}")),
        }
    }
    for o in vcpu.outcomes() {
        match o {
            GuestOutcome::SnpReport {
                report: Some(r), ..
            } => {
                return AttestationReport::read_from_bytes(r)
                    .map(|r| Evidence::Snp(Box::new(r)))
                    .map_err(|_| "the guest received a malformed report".into());
            }
            GuestOutcome::TdReport(r) => {
                return TdReport::from_slice(r)
                    .map(|r| Evidence::Td(Box::new(r), quote_bytes))
                    .map_err(|e| e.to_string());
            }
            _ => {}
        }
    }
    Err("the guest obtained no attestation evidence".into())
}

/// The simulated TDX module shared with the quoting service.
type SharedModule = Arc<Mutex<SimTdxModule>>;

fn sim_backend(
    tee: Tee,
    seed: Option<u64>,
) -> Result<(SimBackend, Option<SharedModule>), LaunchError> {
    if tee == Tee::Tdx {
        let module = Arc::new(Mutex::new(crate::report::sim_tdx_module(seed)));
        return Ok((
            SimBackend::tdx_with(module.clone(), SimKvmConfig::default()),
            Some(module),
        ));
    }
    let mut cfg = SimSevConfig::default();
    if let Some(s) = seed {
        cfg.firmware.seed = seed_bytes(s);
    }
    Ok((SimBackend::amd(cfg, tee.vm_type())?, None))
}

/// Runs the built-in plain real-mode guest on a default VM, with a watchdog.
fn plain_guest(kvm: &Kvm, memory: u64, json: bool, reason: &str) -> Outcome {
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
                    "backend": "kvm",
                    "vm_type": "default",
                    "note": reason,
                    "serial": String::from_utf8_lossy(&out),
                    "halted_at": format!("{rip:#x}"),
                    "ok": ok,
                }));
            } else {
                println!("backend:  kvm (plain guest on a default VM)");
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

/// What to print.
struct Summary {
    backend: &'static str,
    measurement: String,
    offline_match: bool,
    sev_measure: Option<(String, String)>,
    evidence: Option<serde_json::Value>,
    evidence_text: Vec<String>,
    verified: Option<Result<String, String>>,
}

fn read_opt(what: &str, p: Option<&Path>) -> Result<Option<Vec<u8>>, CliError> {
    p.map(|p| util::read(what, p)).transpose()
}

/// Runs `vmm-cli launch`.
pub(crate) fn run(a: &LaunchArgs) -> Result<Outcome, CliError> {
    let cfg = a.opts.validate(a.tee)?;
    check_options(a, &cfg)?;
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
    let sim_fms = SimConfig::default().fms;
    let mut inputs = PlanInputs::new(&fw);
    inputs.vcpus = a.vcpus;
    inputs.vcpu_sig = Some(a.vcpu_sig.unwrap_or(sim_fms));
    inputs.guest_features = cfg.vmsa_features | u64::from(cfg.tee == Tee::Snp);
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
    let vm_type = cfg.tee.vm_type();

    // Choose the backend.
    let use_kvm = match a.backend {
        BackendChoice::Sim => false,
        BackendChoice::Kvm | BackendChoice::Auto => match Kvm::open() {
            Ok(kvm) if kvm.supported_vm_types().contains(vm_type) => true,
            Ok(kvm) => {
                let why = format!(
                    "KVM offers VM types [{}]; {vm_type} ({}) is not among them",
                    kvm.supported_vm_types(),
                    vm_type.abi_value()
                );
                if a.backend == BackendChoice::Kvm {
                    let note =
                        format!("{why}: running the built-in plain guest on a default VM instead");
                    eprintln!("note: {note}");
                    return Ok(plain_guest(&kvm, a.memory, a.json, &note));
                }
                eprintln!("note: {why}: using the simulated backend");
                false
            }
            Err(e) => {
                let why = crate::check::kvm_open_reason(&e);
                if a.backend == BackendChoice::Kvm {
                    return Ok(failed(format!("--backend kvm: {why}")));
                }
                eprintln!("note: {why}: using the simulated backend");
                false
            }
        },
    };

    let summary = if use_kvm {
        let kvm = match Kvm::open() {
            Ok(k) => k,
            Err(e) => return Ok(failed(crate::check::kvm_open_reason(&e))),
        };
        let backend = match KvmBackend::new(&kvm, vm_type) {
            Ok(b) => b,
            Err(e) => return Ok(failed(error_chain(&e))),
        };
        let l = match execute(backend, params, &plan, &ram, a.vcpus) {
            Ok(l) => l,
            Err(e) => return Ok(failed(format!("launch failed: {}", error_chain(&e)))),
        };
        write_log(a, &l)?;
        Summary {
            backend: "kvm",
            measurement: hex::encode(&l.log().digest),
            offline_match: l.log().digest == offline.digest.as_bytes(),
            sev_measure: l
                .sev_launch_measure()
                .map(|m| (hex::encode(m.measure), hex::encode(m.mnonce))),
            evidence: None,
            evidence_text: vec!["attestation evidence comes from the running guest (not produced by this command on real hardware)".into()],
            verified: None,
        }
    } else {
        let (backend, module) = match sim_backend(cfg.tee, a.seed) {
            Ok(b) => b,
            Err(e) => return Ok(failed(error_chain(&e))),
        };
        let l = match execute(backend, params, &plan, &ram, a.vcpus) {
            Ok(l) => l,
            Err(e) => return Ok(failed(format!("launch failed: {}", error_chain(&e)))),
        };
        write_log(a, &l)?;
        let measurement = hex::encode(&l.log().digest);
        let offline_match = l.log().digest == offline.digest.as_bytes();
        let sev_measure = l
            .sev_launch_measure()
            .map(|m| (hex::encode(m.measure), hex::encode(m.mnonce)));
        let host = l.backend().sev_host().cloned();
        let (mut backend, mut vcpus) = l.into_parts();
        let mut s = Summary {
            backend: "sim",
            measurement,
            offline_match,
            sev_measure,
            evidence: None,
            evidence_text: Vec::new(),
            verified: None,
        };
        if matches!(cfg.tee, Tee::Snp | Tee::Tdx) {
            let Some(vcpu) = vcpus.first_mut() else {
                return Ok(failed("no vCPU"));
            };
            match guest_evidence(&mut backend, vcpu, cfg.tee, module.as_ref()) {
                Ok(Evidence::Snp(r)) => {
                    let chain_ok = host
                        .as_ref()
                        .map(|h| verify_report(&r, &h.firmware().certs().snp, None));
                    s.verified = Some(match chain_ok {
                        Some(Ok(())) if hex::encode(r.measurement) == s.measurement => {
                            Ok("signature verified against the simulated ARK/ASK/VCEK; measurement matches".into())
                        }
                        Some(Ok(())) => Err("the report's measurement differs from the launch digest".into()),
                        Some(Err(e)) => Err(e.to_string()),
                        None => Err("no simulated AMD host".into()),
                    });
                    let rows = crate::report::snp_rows(&r, None);
                    s.evidence_text = rows
                        .iter()
                        .filter(|(k, _)| {
                            matches!(
                                *k,
                                "version"
                                    | "policy"
                                    | "measurement"
                                    | "report_data"
                                    | "host_data"
                                    | "reported_tcb"
                                    | "signing_key"
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
                }
                Ok(Evidence::Td(r, quote)) => {
                    if let (Some(p), Some(q)) = (&a.quote_out, &quote) {
                        util::write("quote", p, q)?;
                    }
                    let v = module.as_ref().map(|m| {
                        m.lock()
                            .map_err(|_| "TDX module poisoned".to_string())
                            .and_then(|m| m.verify_report(&r).map_err(|e| e.to_string()))
                    });
                    s.verified = Some(match v {
                        Some(Ok(())) if hex::encode(r.td_info.mrtd) == s.measurement => Ok(
                            "TDREPORT MAC verified by the simulated TDX module; MRTD matches"
                                .into(),
                        ),
                        Some(Ok(())) => {
                            Err("the TDREPORT's MRTD differs from the launch digest".into())
                        }
                        Some(Err(e)) => Err(e),
                        None => Err("no simulated TDX module".into()),
                    });
                    s.evidence_text = vec![
                        format!("mrtd: {}", hex::encode(r.td_info.mrtd)),
                        format!("attributes: {:#x}", r.td_info.attributes.get()),
                        format!("xfam: {:#x}", r.td_info.xfam.get()),
                        format!("report_data: {}", hex::encode(r.report_mac.report_data)),
                    ];
                    s.evidence = Some(serde_json::json!({
                        "type": "TDX TDREPORT",
                        "mrtd": hex::encode(r.td_info.mrtd),
                        "mrconfigid": hex::encode(r.td_info.mrconfigid),
                        "attributes": format!("{:#x}", r.td_info.attributes.get()),
                        "xfam": format!("{:#x}", r.td_info.xfam.get()),
                        "report_data": hex::encode(r.report_mac.report_data),
                    }));
                    if let Some(p) = &a.report_out {
                        util::write("TDREPORT", p, r.as_bytes())?;
                    }
                }
                Err(e) => s.verified = Some(Err(format!("attestation failed: {e}"))),
            }
        }
        s
    };
    Ok(print_summary(a, &cfg, &fw_name, &summary))
}

fn write_log<B: Backend>(a: &LaunchArgs, l: &Launch<Finished, B>) -> Result<(), CliError> {
    if let Some(p) = &a.log {
        util::write("log", p, l.log().to_json().as_bytes())?;
    }
    Ok(())
}

fn print_summary(a: &LaunchArgs, cfg: &TeeConfig, fw_name: &str, s: &Summary) -> Outcome {
    let ok = s.offline_match && !matches!(s.verified, Some(Err(_)));
    if a.json {
        print_json(&serde_json::json!({
            "backend": s.backend,
            "tee": cfg.tee.name(),
            "policy": cfg.tee.is_amd().then(|| format!("{:#x}", cfg.policy())),
            "vcpus": a.vcpus,
            "firmware": fw_name,
            "measurement": s.measurement,
            "offline_match": s.offline_match,
            "launch_measure": s.sev_measure.as_ref().map(|(m, n)| serde_json::json!({"measure": m, "mnonce": n})),
            "evidence": s.evidence,
            "verification": s.verified.as_ref().map(|v| match v {
                Ok(m) => serde_json::json!({"status": "verified", "message": m}),
                Err(m) => serde_json::json!({"status": "failed", "message": m}),
            }),
            "report_out": a.report_out.as_ref().map(|p| p.display().to_string()),
        }));
    } else {
        println!("backend:      {}", s.backend);
        println!(
            "guest:        {} ({} vCPU), firmware: {fw_name}",
            cfg.tee.name(),
            a.vcpus
        );
        if cfg.tee.is_amd() {
            println!("policy:       {:#x}", cfg.policy());
        }
        println!("measurement:  {}", s.measurement);
        println!(
            "offline:      {}",
            if s.offline_match {
                "matches the offline calculation"
            } else {
                "DIFFERS from the offline calculation"
            }
        );
        if let Some((m, n)) = &s.sev_measure {
            println!("LAUNCH_MEASURE: {m} (mnonce {n})");
        }
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
    }
    if ok {
        Outcome::Success
    } else {
        failed("the launch completed but its evidence did not verify")
    }
}
