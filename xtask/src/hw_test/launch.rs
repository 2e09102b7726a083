//! The confidential launch tiers: one tier body over kvm-coco's [`KvmBackend`] on
//! `/dev/kvm` and psp-driver's [`DevSev`], run on hardware or, with `--sim-host`, on the
//! same system calls answered by kvm-coco's software host ([`SoftwareHost`]).
//!
//! Every tier builds a small launch plan from a firmware image and measures it offline
//! ([`measure`]): that digest is the expected value. It executes the same plan through
//! [`Launch`] and compares the expected value with the measurement the platform itself
//! reports — never with one the host recomputes:
//!
//! - SEV / SEV-ES: `LAUNCH_MEASURE`, verified by the guest owner (a session built from the
//!   PDH that `/dev/sev` exports, handed over at `LAUNCH_START`; the measurement's HMAC
//!   under the session's TIK must bind the expected digest).
//! - SNP: the `MEASUREMENT` of the guest's own attestation report (SNP_GUEST_REQUEST from
//!   vCPU 0), whose signature is verified up to the platform's ARK.
//! - TDX: `MRTD` in the TD's own TDREPORT (TDG.MR.REPORT from vCPU 0), MAC-checked by the
//!   TDX module.
//!
//! The SNP and TDX measurements exist only inside the guest. Under the software host the
//! tier loads a guest program into vCPU 0 ([`SoftwareHost::load_program`]) and answers its
//! exits; on hardware no guest agent is booted, so the tier is "not run" and says what
//! completed, the expected value, and that the platform's value is not observable from the
//! host.
//!
//! The launcher's log is also compared with the offline log: a host-side record of what was
//! submitted, checked for its own sake and never taken for the platform's measurement.

use std::path::{Path, PathBuf};

use kvm_coco::launch::backend::Backend;
use kvm_coco::launch::{
    Finished, InitParams, KvmBackend, Launch, LaunchError, SevEsInit, SevInit, SevSession, SnpInit,
    TdxInit,
};
use kvm_coco::measure::plan::PlanInputs;
use kvm_coco::measure::{FirmwareImage, LaunchLog, LaunchPlan, MeasureOptions, measure};
use kvm_coco::sim::guest::{GuestOp, GuestOutcome};
use kvm_coco::sim::host::SoftwareHost;
use kvm_coco::sim::tdx::TdReport;
use kvm_coco::{
    Access, CertsReply, Exit, Kvm, MapGpaReply, SystemEvent, TdVmCallStatus, TdxExit, Tee,
};
use psp_driver::owner::cert::SevCert;
use psp_driver::owner::session::{FwVersion, OwnerSession, verify_launch_measure};
use psp_driver::owner::snp::verify_report;
use psp_driver::report::AttestationReport;
use psp_driver::{DEV_SEV_PATH, DevSev, Platform};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use zerocopy::{FromBytes, IntoBytes};

use super::{Outcome, chain};

/// How a tier's result names the technology.
fn label(tee: Tee) -> &'static str {
    match tee {
        Tee::Sev => "SEV",
        Tee::SevEs => "SEV-ES",
        Tee::Snp => "SNP",
        Tee::Tdx => "TDX",
    }
}

/// What answers the tiers' `/dev/kvm` and `/dev/sev` system calls.
#[derive(Clone, Copy, Debug)]
pub enum Target<'a> {
    /// The real kernel and firmware.
    Hardware,
    /// kvm-coco's software host, serving the thread that runs the tiers: its guest programs
    /// are how the tiers obtain the guest's own evidence.
    SoftwareHost(&'a SoftwareHost),
}

impl Target<'_> {
    /// How a tier's result names the platform.
    fn label(self) -> &'static str {
        match self {
            Target::Hardware => "hardware",
            Target::SoftwareHost(_) => "software host (kvm-coco's models, not hardware)",
        }
    }
}

/// Where the firmware image of the launch tiers comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FirmwareSource {
    /// Given with `--firmware` or `$KVM_COCO_OVMF`: used as is (a tier fails if the image
    /// lacks the metadata its technology needs).
    Explicit(PathBuf),
    /// The distribution's OVMF, found on disk: used where it carries the metadata the
    /// technology needs, otherwise the built-in image is used and the result says so.
    Installed(PathBuf),
    /// The built-in 64 KiB image with SEV and TDVF metadata (the SYN64K recipe).
    BuiltIn,
}

/// Debian's and Ubuntu's OVMF (package `ovmf`).
pub const DEFAULT_OVMF: &str = "/usr/share/ovmf/OVMF.fd";

impl FirmwareSource {
    /// `--firmware`, else `$KVM_COCO_OVMF`, else [`DEFAULT_OVMF`] when present, else the
    /// built-in image.
    pub fn resolve(flag: Option<&Path>) -> Self {
        if let Some(p) = flag {
            return FirmwareSource::Explicit(p.to_owned());
        }
        if let Some(p) = std::env::var_os("KVM_COCO_OVMF").filter(|p| !p.is_empty()) {
            return FirmwareSource::Explicit(PathBuf::from(p));
        }
        if Path::new(DEFAULT_OVMF).is_file() {
            return FirmwareSource::Installed(PathBuf::from(DEFAULT_OVMF));
        }
        FirmwareSource::BuiltIn
    }
}

/// A failed step: which one and why.
#[derive(Debug)]
pub(super) struct Failure {
    step: &'static str,
    error: String,
    /// The host cannot run this VM type after all: a skip, not a failure.
    skip: bool,
}

pub(super) type StepResult<T> = Result<T, Failure>;

fn at<T, E: std::error::Error>(step: &'static str, r: Result<T, E>) -> StepResult<T> {
    r.map_err(|e| Failure {
        step,
        error: chain(&e),
        skip: false,
    })
}

fn fail<T>(step: &'static str, error: impl Into<String>) -> StepResult<T> {
    Err(Failure {
        step,
        error: error.into(),
        skip: false,
    })
}

/// The PDH certificate and firmware version of `/dev/sev`, read through [`Platform`]
/// (PLATFORM_STATUS, PDH_CERT_EXPORT): what the guest owner needs to build a session and
/// verify `LAUNCH_MEASURE`.
fn sev_platform() -> Result<(SevCert, FwVersion), String> {
    let dev = DevSev::open()
        .or_else(|_| DevSev::open_read_only(DEV_SEV_PATH))
        .map_err(|e| chain(&e))?;
    let status = dev.platform_status().map_err(|e| chain(&e))?;
    let export = dev.pdh_cert_export().map_err(|e| chain(&e))?;
    let len = std::mem::size_of::<SevCert>();
    let pdh = export
        .pdh_cert
        .get(..len)
        .and_then(|b| SevCert::read_from_bytes(b).ok())
        .ok_or_else(|| {
            format!(
                "PDH_CERT_EXPORT returned {} bytes, fewer than a SEV certificate ({len})",
                export.pdh_cert.len()
            )
        })?;
    Ok((
        pdh,
        FwVersion {
            api_major: status.api_major,
            api_minor: status.api_minor,
            build: status.build,
        },
    ))
}

/// Shared memory for the guest's certificate table / quote buffer.
const SHARED_GPA: u64 = 0x100_0000;
const SHARED_SIZE: u64 = 0x8000;

/// REPORT_DATA / REPORTDATA the guest binds into its evidence.
const REPORT_DATA: [u8; 64] = [0x6b; 64];

/// Most exits a tier's guest program takes (a few per operation).
const MAX_EXITS: usize = 16;

/// Loads `ops` into vCPU 0 through the software host and runs it, answering its exits as a
/// VMM does, until it terminates; returns what the guest observed. While a loaded program
/// has operations left, the model answers each `KVM_RUN` with its next exit, so the loop is
/// bounded by the number of exits rather than by a watchdog.
fn run_guest(
    host: &SoftwareHost,
    launch: Launch<Finished, KvmBackend>,
    step: &'static str,
    ops: Vec<GuestOp>,
) -> StepResult<Vec<GuestOutcome>> {
    let (mut backend, mut vcpus) = launch.into_parts();
    let Some(vcpu) = vcpus.first_mut() else {
        return fail(step, "no vCPU");
    };
    at(step, host.load_program(&*vcpu, ops))?;
    let mut exits = Vec::new();
    for _ in 0..MAX_EXITS {
        match at(step, vcpu.run())? {
            Exit::SnpReqCerts(mut r) => {
                exits.push("SnpReqCerts");
                r.reply(CertsReply::Success);
            }
            Exit::MapGpaRange(mut m) => {
                exits.push("MapGpaRange");
                let (gpa, size, private) = (m.gpa, m.size(), m.access() == Access::Private);
                at(step, backend.set_private(gpa, size, private))?;
                m.reply(MapGpaReply::Success);
            }
            Exit::MemoryFault(f) => {
                exits.push("MemoryFault");
                let (gpa, size, private) = (f.gpa, f.size, f.access() == Access::Private);
                at(step, backend.set_private(gpa, size, private))?;
            }
            Exit::Tdx(TdxExit::GetQuote(mut q)) => {
                exits.push("GetQuote");
                q.reply(TdVmCallStatus::Success);
            }
            Exit::SystemEvent(SystemEvent::SevTerm { .. } | SystemEvent::TdxFatal { .. }) => {
                return at(step, host.outcomes(&*vcpu));
            }
            other => {
                return fail(
                    step,
                    format!("unexpected exit {other:?} after [{}]", exits.join(", ")),
                );
            }
        }
    }
    fail(
        step,
        format!(
            "the guest did not terminate within {MAX_EXITS} exits ([{}])",
            exits.join(", ")
        ),
    )
}

/// SNP: the guest's own attestation report, its signature up to the platform's ARK, its
/// MEASUREMENT against `expected`.
fn guest_snp_report(
    host: &SoftwareHost,
    launch: Launch<Finished, KvmBackend>,
    expected: &[u8],
) -> StepResult<String> {
    let step = "attestation report";
    let outcomes = run_guest(
        host,
        launch,
        step,
        vec![
            GuestOp::SnpReport {
                report_data: REPORT_DATA,
                certs_gpa: SHARED_GPA,
                npages: 2,
            },
            GuestOp::Terminate { code: 0 },
        ],
    )?;
    let report = outcomes.iter().find_map(|o| match o {
        GuestOutcome::SnpReport { report, .. } => report.clone(),
        _ => None,
    });
    let Some(bytes) = report else {
        return fail(step, format!("the guest obtained no report: {outcomes:?}"));
    };
    let report = AttestationReport::read_from_bytes(&bytes).map_err(|_| Failure {
        step,
        error: format!("the report has {} bytes", bytes.len()),
        skip: false,
    })?;
    let Some(sev) = host.sev_host() else {
        return fail(step, "the software host has no AMD platform");
    };
    let certs = sev.firmware().certs().snp;
    let ark = at("report signature", certs.ark.public_key())?;
    at(
        "report signature",
        verify_report(&report, &certs, Some(&ark)),
    )?;
    if report.measurement[..] != *expected {
        return fail(
            "report measurement",
            format!(
                "the guest's report has MEASUREMENT {}, the offline digest is {}",
                hex::encode(report.measurement),
                hex::encode(expected)
            ),
        );
    }
    if report.report_data != REPORT_DATA {
        return fail("report data", "REPORT_DATA is not what the guest bound");
    }
    Ok(format!(
        "the guest's own attestation report (SNP_GUEST_REQUEST from vCPU 0; signature verified ARK→ASK→VCEK of the platform) has MEASUREMENT = offline {}, REPORT_DATA bound",
        hex::encode(expected)
    ))
}

/// TDX: the TD's own TDREPORT, its MAC checked by the TDX module, its MRTD against
/// `expected`.
fn guest_tdreport(
    host: &SoftwareHost,
    launch: Launch<Finished, KvmBackend>,
    expected: &[u8],
) -> StepResult<String> {
    let step = "TDREPORT";
    let outcomes = run_guest(
        host,
        launch,
        step,
        vec![
            GuestOp::MapGpa {
                gpa: SHARED_GPA,
                npages: 2,
                private: false,
            },
            GuestOp::GetQuote {
                gpa: SHARED_GPA,
                size: 0x2000,
                report_data: REPORT_DATA,
            },
            GuestOp::Terminate { code: 0 },
        ],
    )?;
    let report = outcomes.iter().find_map(|o| match o {
        GuestOutcome::TdReport(r) => TdReport::read_from_bytes(r).ok(),
        _ => None,
    });
    let Some(report) = report else {
        return fail(step, format!("the TD obtained no TDREPORT: {outcomes:?}"));
    };
    let verified = host
        .tdx_module()
        .lock()
        .map_err(|_| Failure {
            step,
            error: "the TDX module lock is poisoned".to_owned(),
            skip: false,
        })?
        .verify_report(&report);
    at("TDREPORT MAC", verified)?;
    if report.td_info.mrtd[..] != *expected {
        return fail(
            "TDREPORT MRTD",
            format!(
                "the TD's TDREPORT has MRTD {}, the offline MRTD is {}",
                hex::encode(report.td_info.mrtd),
                hex::encode(expected)
            ),
        );
    }
    if report.report_mac.report_data != REPORT_DATA {
        return fail("TDREPORT data", "REPORTDATA is not what the TD bound");
    }
    Ok(format!(
        "the TD's own TDREPORT (TDG.MR.REPORT from vCPU 0; MAC verified by the TDX module) has MRTD = offline {}, REPORTDATA bound",
        hex::encode(expected)
    ))
}

/// Why the SNP / TDX measurement is not checked on hardware, with the expected value.
fn not_observable(tee: Tee, expected: &[u8]) -> String {
    match tee {
        Tee::Tdx => format!(
            "MRTD not compared: it is only in the TD's own TDREPORT (TDG.MR.REPORT), KVM does not expose it to the host and hw-test boots no guest agent to ask for it; expected MRTD (offline) {}",
            hex::encode(expected)
        ),
        _ => format!(
            "MEASUREMENT not compared: it is only in an attestation report the guest itself requests (SNP_GUEST_REQUEST), the host cannot read it and hw-test boots no guest agent to ask for it; expected MEASUREMENT (offline) {}",
            hex::encode(expected)
        ),
    }
}

/// A seed for the guest owner's keys (TEK, TIK, ECDH key), from the kernel's CSPRNG.
fn owner_seed() -> StepResult<[u8; 32]> {
    use std::io::Read as _;
    let mut seed = [0u8; 32];
    let r = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut seed));
    at("owner session", r)?;
    Ok(seed)
}

/// The firmware bytes for `tee`, with a note on where they come from.
fn firmware_for(
    src: &FirmwareSource,
    tee: Tee,
    vcpu_sig: Option<u32>,
) -> StepResult<(Vec<u8>, String)> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|e| Failure {
            step: "firmware",
            error: format!("cannot read {}: {e}", p.display()),
            skip: false,
        })
    };
    let builtin = || {
        (
            kvm_coco::measure::synthetic::syn64k(),
            "built-in 64 KiB image".to_owned(),
        )
    };
    match src {
        FirmwareSource::Explicit(p) => Ok((read(p)?, p.display().to_string())),
        FirmwareSource::BuiltIn => Ok(builtin()),
        FirmwareSource::Installed(p) => {
            let bytes = read(p)?;
            let usable = FirmwareImage::parse(&bytes)
                .map_err(|e| chain(&e))
                .and_then(|fw| build_plan(&fw, tee, vcpu_sig).map(|_| ()));
            match usable {
                Ok(()) => Ok((bytes, p.display().to_string())),
                Err(why) => {
                    let (b, name) = builtin();
                    Ok((
                        b,
                        format!(
                            "{name} ({} unusable for {}: {why})",
                            p.display(),
                            label(tee)
                        ),
                    ))
                }
            }
        }
    }
}

pub(super) fn build_plan<'a>(
    fw: &'a FirmwareImage<'a>,
    tee: Tee,
    vcpu_sig: Option<u32>,
) -> Result<LaunchPlan<'a>, String> {
    let inputs = PlanInputs {
        vcpu_sig,
        ..PlanInputs::new(fw)
    };
    match tee {
        Tee::Sev => LaunchPlan::sev(&inputs),
        Tee::SevEs => LaunchPlan::sev_es(&inputs),
        Tee::Snp => LaunchPlan::snp(&inputs),
        Tee::Tdx => LaunchPlan::tdx(fw),
    }
    .map_err(|e| chain(&e))
}

/// The CPUID(1).EAX signature the plan's VMSAs carry (SEV-ES, SNP): the host's own
/// family, model and stepping, as with QEMU's `-cpu host`.
pub(super) fn vcpu_sig() -> Option<u32> {
    kvm_coco::measure::vcpu::host_cpu_sig()
}

fn create_backend(tee: Tee) -> Result<KvmBackend, LaunchError> {
    let kvm = Kvm::open()?;
    KvmBackend::new(&kvm, tee.vm_type())
}

/// Runs the `tee` launch tier on `target`.
pub fn run(tee: Tee, firmware: &FirmwareSource, target: Target<'_>) -> Outcome {
    outcome(launch_steps(tee, firmware, target))
}

/// A tier's outcome from the result of its steps.
pub(super) fn outcome(steps: StepResult<Result<String, String>>) -> Outcome {
    match steps {
        Ok(Ok(detail)) => Outcome::Passed(detail),
        Ok(Err(partial)) => Outcome::NotRun(partial),
        Err(Failure {
            error, skip: true, ..
        }) => Outcome::Skipped(error),
        Err(Failure { step, error, .. }) => Outcome::Failed(format!("{step}: {error}")),
    }
}

/// `Ok(Ok(detail))`: every check ran and held; `Ok(Err(reason))`: the launch ran and what
/// ran held, but the platform's measurement could not be compared; `Err`: a step failed.
fn launch_steps(
    tee: Tee,
    firmware: &FirmwareSource,
    target: Target<'_>,
) -> StepResult<Result<String, String>> {
    let sig = vcpu_sig();
    let (image, fw_note) = firmware_for(firmware, tee, sig)?;
    let fw = at("firmware", FirmwareImage::parse(&image))?;
    let plan = build_plan(&fw, tee, sig).map_err(|error| Failure {
        step: "plan",
        error,
        skip: false,
    })?;
    let offline = at(
        "offline measure",
        measure(
            &plan,
            &MeasureOptions {
                log: true,
                progress: None,
            },
        ),
    )?;
    let Some(offline_log) = offline.log.as_ref() else {
        return fail("offline measure", "no log");
    };
    let expected = offline.digest.as_bytes().to_vec();
    launch_and_compare(tee, &plan, &fw_note, &expected, offline_log, target)
}

/// Launches `plan` on `target` and compares the platform's measurement with `expected` (and
/// the launcher's log with `offline_log`); the result as for [`launch_steps`].
pub(super) fn launch_and_compare(
    tee: Tee,
    plan: &LaunchPlan<'_>,
    fw_note: &str,
    expected: &[u8],
    offline_log: &LaunchLog,
    target: Target<'_>,
) -> StepResult<Result<String, String>> {
    let sig = vcpu_sig();
    let backend = match create_backend(tee) {
        Ok(b) => b,
        Err(e) if e.is_not_supported_on_host() => {
            return Err(Failure {
                step: "create VM",
                error: chain(&e),
                skip: true,
            });
        }
        Err(e) => return at("create VM", Err(e)),
    };

    // The guest owner's session (SEV / SEV-ES).
    let policy: u32 = match tee {
        Tee::SevEs => 0x4,
        _ => 0,
    };
    let owner = match tee {
        Tee::Sev | Tee::SevEs => {
            let (pdh, fwv) = sev_platform().map_err(|error| Failure {
                step: "PDH_CERT_EXPORT",
                error,
                skip: false,
            })?;
            let mut rng = ChaCha20Rng::from_seed(owner_seed()?);
            let session = at("owner session", OwnerSession::new(&mut rng, &pdh, policy))?;
            Some((session, fwv))
        }
        _ => None,
    };
    let transport = owner.as_ref().map(|(s, _)| SevSession {
        dh_cert: s.dh_cert().as_bytes().to_vec(),
        session: s.session().as_bytes().to_vec(),
    });
    let params = match tee {
        Tee::Sev => InitParams::Sev(SevInit {
            policy,
            session: transport,
        }),
        Tee::SevEs => InitParams::SevEs(SevEsInit {
            policy,
            session: transport,
            ..SevEsInit::default()
        }),
        Tee::Snp => InitParams::Snp(SnpInit::default()),
        Tee::Tdx => InitParams::Tdx(TdxInit::default()),
    };

    let mut launch = at("init", Launch::new(backend, params))?;
    at("add memory", launch.add_plan_memory(plan))?;
    if matches!(tee, Tee::Snp | Tee::Tdx) {
        at("add memory", launch.add_memory(SHARED_GPA, SHARED_SIZE))?;
    }
    at("create vCPU", launch.create_vcpu(0).map(|_| ()))?;
    let mut launch = at("launch start", launch.start())?;
    at("add plan", launch.add_plan(plan))?;
    let launch = at("measure", launch.measure())?;

    let vcpu = match (tee, sig) {
        (Tee::SevEs | Tee::Snp, Some(sig)) => format!("1 vCPU, signature {sig:#x}"),
        _ => "1 vCPU".to_owned(),
    };
    let mut checks = vec![format!(
        "{} launch on the {}: {fw_note}, {vcpu}, plan of {} step{}",
        label(tee),
        target.label(),
        plan.steps.len(),
        if plan.steps.len() == 1 { "" } else { "s" }
    )];

    if let Some((session, fwv)) = &owner {
        let Some(m) = launch.sev_launch_measure() else {
            return fail("LAUNCH_MEASURE", "no measurement after measure()");
        };
        let mut blob = [0u8; 48];
        blob[..32].copy_from_slice(&m.measure);
        blob[32..].copy_from_slice(&m.mnonce);
        let Ok(ld) = <[u8; 32]>::try_from(expected) else {
            return fail("offline measure", "the SEV digest is not 32 bytes");
        };
        at(
            "LAUNCH_MEASURE verification",
            verify_launch_measure(&session.keys().tik, *fwv, policy, &ld, &blob),
        )?;
        checks.push(format!(
            "the platform's LAUNCH_MEASURE verified by the guest owner (session from the PDH of /dev/sev, TIK, API {}.{} build {}) against offline digest {}",
            fwv.api_major,
            fwv.api_minor,
            fwv.build,
            hex::encode(ld)
        ));
    }

    let launch = at("finish", launch.finish())?;
    if let Some(d) = launch.log().diff(offline_log) {
        return fail("launch log", d.to_string());
    }
    checks.push(format!(
        "launch completed; the launcher's log = offline log ({} entr{}; host-side record, not the platform's measurement)",
        offline_log.entries.len(),
        if offline_log.entries.len() == 1 {
            "y"
        } else {
            "ies"
        }
    ));

    if matches!(tee, Tee::Snp | Tee::Tdx) {
        match target {
            Target::SoftwareHost(host) => checks.push(if tee == Tee::Snp {
                guest_snp_report(host, launch, expected)?
            } else {
                guest_tdreport(host, launch, expected)?
            }),
            Target::Hardware => {
                return Ok(Err(format!(
                    "{}; what ran and held: {}",
                    not_observable(tee, expected),
                    checks.join("; ")
                )));
            }
        }
    }
    Ok(Ok(checks.join("; ")))
}
