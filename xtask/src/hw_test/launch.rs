//! The confidential launch tiers: one tier body, generic over kvm-coco's launch
//! [`Backend`], run on the real kernel ([`KvmBackend`]) and on the software model
//! ([`SimBackend`]).
//!
//! Every tier builds a small launch plan from a firmware image, measures it offline
//! ([`measure`]), executes the same plan through [`Launch`], and then checks:
//!
//! 1. the launcher's log against the offline log ([`LaunchLog::diff`](kvm_coco::measure::LaunchLog::diff));
//! 2. the measurement the backend reports against the offline digest (SEV / SEV-ES:
//!    `LAUNCH_MEASURE` verified by the guest owner with the session's TIK; SNP: the
//!    firmware's launch digest; TDX: MRTD);
//! 3. the attestation evidence (SNP: a signed attestation report from the guest, verified
//!    against the ARK/ASK/VCEK chain; TDX: a TDREPORT from the guest, MAC-checked, whose
//!    MRTD is compared).
//!
//! A check the backend cannot perform is reported as unavailable, never as passed.

use std::path::{Path, PathBuf};

use kvm_coco::launch::backend::Backend;
use kvm_coco::launch::{
    Finished, GuestOp, GuestOutcome, InitParams, KvmBackend, Launch, LaunchError, LaunchVcpu,
    SevEsInit, SevInit, SevSession, SimBackend, SnpInit, TdxInit,
};
use kvm_coco::measure::plan::PlanInputs;
use kvm_coco::measure::vcpu::cpu_type_sig;
use kvm_coco::measure::{FirmwareImage, LaunchPlan, MeasureOptions, measure};
use kvm_coco::sim::tdx::TdReport;
use kvm_coco::{Access, CertsReply, Exit, Kvm, MapGpaReply, SystemEvent, TdVmCallStatus, TdxExit};
use psp_driver::owner::cert::SevCert;
use psp_driver::owner::session::{FwVersion, OwnerSession, verify_launch_measure};
use psp_driver::owner::snp::verify_report;
use psp_driver::report::AttestationReport;
use psp_driver::{DEV_SEV_PATH, DevSev, Platform};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use zerocopy::{FromBytes, IntoBytes};

use super::{Outcome, chain};

/// The technology a launch tier exercises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LaunchTee {
    /// AMD SEV.
    Sev,
    /// AMD SEV-ES.
    SevEs,
    /// AMD SEV-SNP.
    Snp,
    /// Intel TDX.
    Tdx,
}

impl LaunchTee {
    /// The kvm-coco VM type.
    pub fn vm_type(self) -> kvm_coco::VmType {
        match self {
            LaunchTee::Sev => kvm_coco::VmType::Sev,
            LaunchTee::SevEs => kvm_coco::VmType::SevEs,
            LaunchTee::Snp => kvm_coco::VmType::Snp,
            LaunchTee::Tdx => kvm_coco::VmType::Tdx,
        }
    }

    fn name(self) -> &'static str {
        match self {
            LaunchTee::Sev => "SEV",
            LaunchTee::SevEs => "SEV-ES",
            LaunchTee::Snp => "SNP",
            LaunchTee::Tdx => "TDX",
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
struct Failure {
    step: &'static str,
    error: String,
    /// The host cannot run this VM type after all: a skip, not a failure.
    skip: bool,
}

type StepResult<T> = Result<T, Failure>;

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

/// The result of one evidence check.
enum Evidence {
    /// Performed, with what held.
    Checked(String),
    /// The backend cannot perform it, with why.
    Unavailable(String),
}

/// What a launch tier needs beyond [`Backend`]: creation, the SEV platform's identity for
/// the guest owner, the backend-reported measurement and the attestation evidence.
trait TierBackend: Backend + Sized {
    /// How the result names the backend.
    const LABEL: &'static str;

    /// A fresh VM of `tee`'s type.
    fn create(tee: LaunchTee) -> Result<Self, LaunchError>;

    /// The CPUID(1).EAX signature the plan's VMSAs carry (SEV-ES, SNP).
    fn vcpu_sig() -> Option<u32>;

    /// The platform's PDH certificate and firmware version (the inputs the guest owner
    /// needs to build a session and verify `LAUNCH_MEASURE`).
    fn sev_platform(&self) -> Result<(SevCert, FwVersion), String>;

    /// The measurement as the backend holds it (SNP launch digest, TDX MRTD).
    fn reported_digest(&self, tee: LaunchTee) -> Result<Vec<u8>, String>;

    /// Runs the finished guest to obtain its attestation evidence and verifies it against
    /// `expected` (the offline digest).
    fn attest(
        launch: Launch<Finished, Self>,
        tee: LaunchTee,
        expected: &[u8],
    ) -> StepResult<Evidence>;
}

impl TierBackend for KvmBackend {
    const LABEL: &'static str = "hardware";

    fn create(tee: LaunchTee) -> Result<Self, LaunchError> {
        let kvm = Kvm::open()?;
        KvmBackend::new(&kvm, tee.vm_type())
    }

    fn vcpu_sig() -> Option<u32> {
        // The host's own signature, as with QEMU's `-cpu host`.
        Some(std::arch::x86_64::__cpuid(1).eax)
    }

    fn sev_platform(&self) -> Result<(SevCert, FwVersion), String> {
        let dev = DevSev::open()
            .or_else(|_| DevSev::open_read_only(DEV_SEV_PATH))
            .map_err(|e| chain(&e))?;
        platform_pdh(&dev)
    }

    fn reported_digest(&self, tee: LaunchTee) -> Result<Vec<u8>, String> {
        Err(match tee {
            LaunchTee::Tdx => {
                "KVM does not expose MRTD to the host; it is only in the guest's TDREPORT"
            }
            _ => "the SNP launch digest is only in the guest's attestation report",
        }
        .to_owned())
    }

    fn attest(
        _launch: Launch<Finished, Self>,
        tee: LaunchTee,
        _expected: &[u8],
    ) -> StepResult<Evidence> {
        Ok(Evidence::Unavailable(match tee {
            LaunchTee::Snp => "report verification not available on the real backend: obtaining an attestation report needs a guest that issues SNP_GUEST_REQUEST, which this build does not boot".to_owned(),
            LaunchTee::Tdx => "TDREPORT verification not available on the real backend: MRTD is obtained by a guest (TDG.MR.REPORT), which this build does not boot".to_owned(),
            _ => "no attestation report for SEV / SEV-ES".to_owned(),
        }))
    }
}

/// The PDH certificate and firmware version, read through [`Platform`] (PLATFORM_STATUS,
/// PDH_CERT_EXPORT): one code path for `/dev/sev` and the software firmware.
fn platform_pdh<P: Platform>(platform: &P) -> Result<(SevCert, FwVersion), String> {
    let status = platform.platform_status().map_err(|e| chain(&e))?;
    let export = platform.pdh_cert_export().map_err(|e| chain(&e))?;
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

/// Shared memory for the certificate table / quote buffer of the sim guest.
const SHARED_GPA: u64 = 0x100_0000;
const SHARED_SIZE: u64 = 0x8000;

impl TierBackend for SimBackend {
    const LABEL: &'static str = "software model";

    fn create(tee: LaunchTee) -> Result<Self, LaunchError> {
        match tee {
            LaunchTee::Sev => SimBackend::sev(),
            LaunchTee::SevEs => SimBackend::sev_es(),
            LaunchTee::Snp => SimBackend::snp(),
            LaunchTee::Tdx => Ok(SimBackend::tdx()),
        }
    }

    fn vcpu_sig() -> Option<u32> {
        cpu_type_sig("EPYC-v4")
    }

    fn sev_platform(&self) -> Result<(SevCert, FwVersion), String> {
        let host = self
            .sev_host()
            .ok_or("the simulated VM has no SEV platform")?;
        // The software firmware's `Platform` runs the `/dev/sev` ioctl path.
        platform_pdh(&**host.psp())
    }

    fn reported_digest(&self, tee: LaunchTee) -> Result<Vec<u8>, String> {
        let d = match tee {
            LaunchTee::Snp => self.snp_launch_digest(),
            LaunchTee::Tdx => self.tdx_mrtd(),
            _ => None,
        };
        d.map(|d| d.to_vec())
            .ok_or_else(|| "the model holds no launch digest for this VM".to_owned())
    }

    fn attest(
        launch: Launch<Finished, Self>,
        tee: LaunchTee,
        expected: &[u8],
    ) -> StepResult<Evidence> {
        match tee {
            LaunchTee::Snp => sim_snp_report(launch, expected),
            LaunchTee::Tdx => sim_tdreport(launch, expected),
            _ => Ok(Evidence::Unavailable(
                "no attestation report for SEV / SEV-ES".to_owned(),
            )),
        }
    }
}

/// REPORT_DATA / REPORTDATA the guest binds into its evidence.
const REPORT_DATA: [u8; 64] = [0x6b; 64];

fn sim_snp_report(launch: Launch<Finished, SimBackend>, expected: &[u8]) -> StepResult<Evidence> {
    let step = "attestation report";
    let Some(host) = launch.backend().sev_host().cloned() else {
        return fail(step, "the simulated VM has no SEV platform");
    };
    let (mut backend, mut vcpus) = launch.into_parts();
    let Some(vcpu) = vcpus.first_mut() else {
        return fail(step, "no vCPU");
    };
    vcpu.load_program([
        GuestOp::SnpReport {
            report_data: REPORT_DATA,
            certs_gpa: SHARED_GPA,
            npages: 2,
        },
        GuestOp::Terminate { code: 0 },
    ]);
    let mut done = false;
    for _ in 0..16 {
        match at(step, vcpu.run())? {
            Exit::SnpReqCerts(mut r) => r.reply(CertsReply::Success),
            Exit::MapGpaRange(mut m) => {
                let (gpa, size, private) = (m.gpa, m.size(), m.access() == Access::Private);
                at(step, backend.set_private(gpa, size, private))?;
                m.reply(MapGpaReply::Success);
            }
            Exit::MemoryFault(f) => {
                let (gpa, size, private) = (f.gpa, f.size, f.access() == Access::Private);
                at(step, backend.set_private(gpa, size, private))?;
            }
            Exit::SystemEvent(SystemEvent::SevTerm { .. }) => {
                done = true;
                break;
            }
            other => return fail(step, format!("unexpected exit {other:?}")),
        }
    }
    if !done {
        return fail(step, "the guest did not terminate within 16 exits");
    }
    let report = vcpu.outcomes().iter().find_map(|o| match o {
        GuestOutcome::SnpReport { report, .. } => report.clone(),
        _ => None,
    });
    let Some(bytes) = report else {
        return fail(step, "the guest obtained no report");
    };
    let report = AttestationReport::read_from_bytes(&bytes).map_err(|_| Failure {
        step,
        error: format!("the report has {} bytes", bytes.len()),
        skip: false,
    })?;
    let certs = host.firmware().certs().snp;
    let ark = at("report signature", certs.ark.public_key())?;
    at(
        "report signature",
        verify_report(&report, &certs, Some(&ark)),
    )?;
    if report.measurement[..] != *expected {
        return fail(
            "report measurement",
            format!(
                "report MEASUREMENT {} differs from the offline digest {}",
                hex::encode(report.measurement),
                hex::encode(expected)
            ),
        );
    }
    if report.report_data != REPORT_DATA {
        return fail("report data", "REPORT_DATA is not what the guest bound");
    }
    Ok(Evidence::Checked(
        "attestation report signed by the VCEK (ARK→ASK→VCEK verified), MEASUREMENT = offline, REPORT_DATA bound".to_owned(),
    ))
}

fn sim_tdreport(launch: Launch<Finished, SimBackend>, expected: &[u8]) -> StepResult<Evidence> {
    let step = "TDREPORT";
    let Some(module) = launch.backend().tdx_vm().map(|vm| vm.module().clone()) else {
        return fail(step, "the simulated VM is not a TD");
    };
    let (mut backend, mut vcpus) = launch.into_parts();
    let Some(vcpu) = vcpus.first_mut() else {
        return fail(step, "no vCPU");
    };
    vcpu.load_program([
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
    ]);
    let mut done = false;
    for _ in 0..16 {
        match at(step, vcpu.run())? {
            Exit::MapGpaRange(mut m) => {
                let (gpa, size, private) = (m.gpa, m.size(), m.access() == Access::Private);
                at(step, backend.set_private(gpa, size, private))?;
                m.reply(MapGpaReply::Success);
            }
            Exit::MemoryFault(f) => {
                let (gpa, size, private) = (f.gpa, f.size, f.access() == Access::Private);
                at(step, backend.set_private(gpa, size, private))?;
            }
            Exit::Tdx(TdxExit::GetQuote(mut q)) => q.reply(TdVmCallStatus::Success),
            Exit::SystemEvent(SystemEvent::TdxFatal { .. }) => {
                done = true;
                break;
            }
            other => return fail(step, format!("unexpected exit {other:?}")),
        }
    }
    if !done {
        return fail(step, "the guest did not terminate within 16 exits");
    }
    let report = vcpu.outcomes().iter().find_map(|o| match o {
        GuestOutcome::TdReport(r) => TdReport::read_from_bytes(r).ok(),
        _ => None,
    });
    let Some(report) = report else {
        return fail(step, "the guest obtained no TDREPORT");
    };
    let verified = module
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
                "TDREPORT MRTD {} differs from the offline MRTD {}",
                hex::encode(report.td_info.mrtd),
                hex::encode(expected)
            ),
        );
    }
    if report.report_mac.report_data != REPORT_DATA {
        return fail("TDREPORT data", "REPORTDATA is not what the guest bound");
    }
    Ok(Evidence::Checked(
        "TDREPORT MAC verified by the TDX module, its MRTD = offline, REPORTDATA bound".to_owned(),
    ))
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
    tee: LaunchTee,
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
                            tee.name()
                        ),
                    ))
                }
            }
        }
    }
}

fn build_plan<'a>(
    fw: &'a FirmwareImage<'a>,
    tee: LaunchTee,
    vcpu_sig: Option<u32>,
) -> Result<LaunchPlan<'a>, String> {
    let inputs = PlanInputs {
        vcpu_sig,
        ..PlanInputs::new(fw)
    };
    match tee {
        LaunchTee::Sev => LaunchPlan::sev(&inputs),
        LaunchTee::SevEs => LaunchPlan::sev_es(&inputs),
        LaunchTee::Snp => LaunchPlan::snp(&inputs),
        LaunchTee::Tdx => LaunchPlan::tdx(fw),
    }
    .map_err(|e| chain(&e))
}

/// One launch tier on backend `B`.
fn launch_tier<B: TierBackend>(tee: LaunchTee, firmware: &FirmwareSource) -> Outcome {
    match launch_steps::<B>(tee, firmware) {
        Ok(Ok(detail)) => Outcome::Passed(detail),
        Ok(Err(partial)) => Outcome::NotRun(partial),
        Err(Failure {
            error, skip: true, ..
        }) => Outcome::Skipped(error),
        Err(Failure { step, error, .. }) => Outcome::Failed(format!("{step}: {error}")),
    }
}

/// `Ok(Ok(detail))`: every check ran and held; `Ok(Err(reason))`: the launch ran and
/// held but a check is unavailable on this backend; `Err`: a step failed.
fn launch_steps<B: TierBackend>(
    tee: LaunchTee,
    firmware: &FirmwareSource,
) -> StepResult<Result<String, String>> {
    let (image, fw_note) = firmware_for(firmware, tee, B::vcpu_sig())?;
    let fw = at("firmware", FirmwareImage::parse(&image))?;
    let plan = build_plan(&fw, tee, B::vcpu_sig()).map_err(|error| Failure {
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

    let backend = match B::create(tee) {
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
        LaunchTee::SevEs => 0x4,
        _ => 0,
    };
    let owner = match tee {
        LaunchTee::Sev | LaunchTee::SevEs => {
            let (pdh, fwv) = backend.sev_platform().map_err(|error| Failure {
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
        LaunchTee::Sev => InitParams::Sev(SevInit {
            policy,
            session: transport,
        }),
        LaunchTee::SevEs => InitParams::SevEs(SevEsInit {
            policy,
            session: transport,
            ..SevEsInit::default()
        }),
        LaunchTee::Snp => InitParams::Snp(SnpInit::default()),
        LaunchTee::Tdx => InitParams::Tdx(TdxInit::default()),
    };

    let mut launch = at("init", Launch::new(backend, params))?;
    at("add memory", launch.add_plan_memory(&plan))?;
    if matches!(tee, LaunchTee::Snp | LaunchTee::Tdx) {
        at("add memory", launch.add_memory(SHARED_GPA, SHARED_SIZE))?;
    }
    at("create vCPU", launch.create_vcpu(0).map(|_| ()))?;
    let mut launch = at("launch start", launch.start())?;
    at("add plan", launch.add_plan(&plan))?;
    let launch = at("measure", launch.measure())?;

    let vcpu = match (tee, B::vcpu_sig()) {
        (LaunchTee::SevEs | LaunchTee::Snp, Some(sig)) => format!("1 vCPU, signature {sig:#x}"),
        _ => "1 vCPU".to_owned(),
    };
    let mut checks = vec![format!(
        "{} launch on the {} ({fw_note}, {vcpu}, plan of {} step{})",
        tee.name(),
        B::LABEL,
        plan.steps.len(),
        if plan.steps.len() == 1 { "" } else { "s" }
    )];
    let mut unavailable = Vec::new();

    if let Some((session, fwv)) = &owner {
        let Some(m) = launch.sev_launch_measure() else {
            return fail("LAUNCH_MEASURE", "no measurement after measure()");
        };
        let mut blob = [0u8; 48];
        blob[..32].copy_from_slice(&m.measure);
        blob[32..].copy_from_slice(&m.mnonce);
        let Ok(ld) = <[u8; 32]>::try_from(expected.as_slice()) else {
            return fail("offline measure", "the SEV digest is not 32 bytes");
        };
        at(
            "LAUNCH_MEASURE verification",
            verify_launch_measure(&session.keys().tik, *fwv, policy, &ld, &blob),
        )?;
        checks.push(format!(
            "LAUNCH_MEASURE verified by the guest owner (TIK, API {}.{} build {}) against offline digest {}",
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
        "launch log = offline log ({} entr{})",
        offline_log.entries.len(),
        if offline_log.entries.len() == 1 {
            "y"
        } else {
            "ies"
        }
    ));

    if matches!(tee, LaunchTee::Snp | LaunchTee::Tdx) {
        let what = if tee == LaunchTee::Tdx {
            "MRTD"
        } else {
            "launch digest"
        };
        match launch.backend().reported_digest(tee) {
            Ok(d) if d == expected => {
                checks.push(format!("backend {what} = offline {}", hex::encode(&d)));
            }
            Ok(d) => {
                return fail(
                    "measurement",
                    format!(
                        "backend {what} {} differs from offline {}",
                        hex::encode(&d),
                        hex::encode(&expected)
                    ),
                );
            }
            Err(why) => unavailable.push(format!("{what} comparison not available: {why}")),
        }
        match B::attest(launch, tee, &expected)? {
            Evidence::Checked(s) => checks.push(s),
            Evidence::Unavailable(s) => unavailable.push(s),
        }
    }

    let ran = checks.join("; ");
    if unavailable.is_empty() {
        Ok(Ok(ran))
    } else {
        Ok(Err(format!(
            "{}; what ran and held: {ran}",
            unavailable.join("; ")
        )))
    }
}

/// Runs the `tee` launch tier on the real kernel (`sim == false`) or the software model.
pub fn run(tee: LaunchTee, sim: bool, firmware: &FirmwareSource) -> Outcome {
    if sim {
        launch_tier::<SimBackend>(tee, firmware)
    } else {
        launch_tier::<KvmBackend>(tee, firmware)
    }
}
