//! `vmm-cli measure`: the expected launch measurement of a guest.
//!
//! Accepts sev-snp-measure's options with the same meaning and prints the same output (the
//! measurement alone on stdout), so it can replace it in scripts. Differences: every input
//! error exits with status 2 and one line on stderr (the tool uses 1 or 2 and sometimes a
//! traceback); giving more than one of `--vcpu-type`, `--vcpu-sig` and `--vcpu-family` is an
//! error (the tool silently picks one). Additions: `--mode tdx` (MRTD), the SEV
//! `LAUNCH_MEASURE` HMAC (`--tik … --policy`), `--log`, `--json`, `--expect`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use kvm_coco::measure::calc::{self, MeasureOptions, Progress, SevMeasureParams, Tik};
use kvm_coco::measure::firmware::FirmwareImage;
use kvm_coco::measure::hashes::SevHashes;
use kvm_coco::measure::plan::{Data, LaunchPlan, Origin, PlanInputs};
use kvm_coco::measure::vcpu::{CPU_TYPES, VmmType, cpu_sig, cpu_type_sig};

use crate::{CliError, Outcome, cli_err};

/// Inputs larger than this get a progress bar (when stderr is a terminal).
const PROGRESS_THRESHOLD: u64 = 32 << 20;

/// The guest type to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// SEV-SNP launch measurement (SHA-384, as in the attestation report).
    Snp,
    /// SEV-ES launch digest (SHA-256, before the LAUNCH_MEASURE HMAC).
    Seves,
    /// SEV launch digest (SHA-256, before the LAUNCH_MEASURE HMAC).
    Sev,
    /// SNP digest of the firmware pages alone (for --snp-ovmf-hash).
    #[value(name = "snp:ovmf-hash")]
    SnpOvmfHash,
    /// Intel TDX MRTD of a TDVF image.
    Tdx,
}

/// How the measurement is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Lower-case hex.
    Hex,
    /// Standard base64.
    Base64,
}

fn parse_int<T: TryFrom<u64>>(s: &str) -> Result<T, String> {
    let v = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    }
    .map_err(|e| format!("'{s}' is not an integer: {e}"))?;
    T::try_from(v).map_err(|_| format!("'{s}' is out of range"))
}

fn cpu_type_names() -> Vec<&'static str> {
    CPU_TYPES.iter().map(|(n, _)| *n).collect()
}

/// Options of `vmm-cli measure` (sev-snp-measure's, plus TDX, HMAC and log options).
#[derive(Debug, Args)]
pub struct MeasureArgs {
    /// Guest mode.
    #[arg(long, value_enum)]
    mode: Mode,
    /// Number of guest vCPUs (required for snp and seves).
    #[arg(long, value_name = "N")]
    vcpus: Option<u32>,
    /// Type of guest vCPU (QEMU CPU model name).
    #[arg(long, value_name = "CPUTYPE", value_parser = clap::builder::PossibleValuesParser::new(cpu_type_names()))]
    vcpu_type: Option<String>,
    /// Guest vCPU signature value (CPUID(1).EAX).
    #[arg(long, value_name = "VALUE", value_parser = parse_int::<u32>)]
    vcpu_sig: Option<u32>,
    /// Guest vCPU family.
    #[arg(long, value_name = "FAMILY", value_parser = parse_int::<u32>)]
    vcpu_family: Option<u32>,
    /// Guest vCPU model.
    #[arg(long, value_name = "MODEL", value_parser = parse_int::<u32>)]
    vcpu_model: Option<u32>,
    /// Guest vCPU stepping.
    #[arg(long, value_name = "STEPPING", value_parser = parse_int::<u32>)]
    vcpu_stepping: Option<u32>,
    /// Type of guest VMM (QEMU, ec2, gce).
    #[arg(long, value_name = "VMMTYPE", default_value = "QEMU")]
    vmm_type: VmmType,
    /// OVMF (or TDVF) firmware file.
    #[arg(long, value_name = "PATH")]
    ovmf: PathBuf,
    /// Kernel file to calculate hash from.
    #[arg(long, value_name = "PATH")]
    kernel: Option<PathBuf>,
    /// Initrd file to calculate hash from (use with --kernel).
    #[arg(long, value_name = "PATH")]
    initrd: Option<PathBuf>,
    /// Kernel command line to calculate hash from (use with --kernel).
    #[arg(long, value_name = "CMDLINE")]
    append: Option<String>,
    /// Guest features (VMSA SEV_FEATURES) for snp.
    #[arg(long, value_name = "VALUE", default_value = "0x1", value_parser = parse_int::<u64>)]
    guest_features: u64,
    /// Measurement output format.
    #[arg(long, value_enum, default_value = "hex")]
    output_format: OutputFormat,
    /// Precalculated hash of the OVMF binary (hex; from --mode snp:ovmf-hash).
    #[arg(long, value_name = "HASH")]
    snp_ovmf_hash: Option<String>,
    /// Write the measured VMSAs to `vmsa<N>.bin` (seves and snp).
    #[arg(long)]
    dump_vmsa: bool,
    /// Label the output.
    #[arg(short, long)]
    verbose: bool,
    /// SEV/SEV-ES: the guest owner's TIK (16 raw bytes or 32 hex digits) for the full
    /// LAUNCH_MEASURE value; needs --mnonce, --api-major, --api-minor, --build, --policy.
    #[arg(long, value_name = "FILE")]
    tik: Option<PathBuf>,
    /// SEV: the 16-byte nonce the firmware returned (hex).
    #[arg(long, value_name = "HEX")]
    mnonce: Option<String>,
    /// SEV: firmware API major version.
    #[arg(long, value_name = "N", value_parser = parse_int::<u8>)]
    api_major: Option<u8>,
    /// SEV: firmware API minor version.
    #[arg(long, value_name = "N", value_parser = parse_int::<u8>)]
    api_minor: Option<u8>,
    /// SEV: firmware build.
    #[arg(long, value_name = "N", value_parser = parse_int::<u8>)]
    build: Option<u8>,
    /// SEV: guest policy.
    #[arg(long, value_name = "N", value_parser = parse_int::<u32>)]
    policy: Option<u32>,
    /// Write the launch log (every measured step) as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
    /// Print a JSON object instead of the bare measurement.
    #[arg(long)]
    json: bool,
    /// Compare with an expected measurement (hex or base64); exit 1 if it differs.
    #[arg(long, value_name = "DIGEST")]
    expect: Option<String>,
}

fn read(what: &str, p: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(p).map_err(|e| cli_err!("cannot read {what} '{}': {e}", p.display()))
}

fn fixed<const N: usize>(what: &str, hex_str: &str) -> Result<[u8; N], CliError> {
    hex::decode(hex_str.trim())
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| cli_err!("{what} must be {N} bytes of hex"))
}

struct Bar(ProgressBar);

impl Progress for Bar {
    fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
    }
}

fn progress_wanted(bytes: u64) -> bool {
    bytes >= PROGRESS_THRESHOLD && std::io::stderr().is_terminal()
}

/// The vCPU signature from the three ways of giving it.
fn vcpu_signature(a: &MeasureArgs) -> Result<Option<u32>, CliError> {
    let fms = [a.vcpu_family, a.vcpu_model, a.vcpu_stepping];
    let given = [
        a.vcpu_type.is_some(),
        a.vcpu_sig.is_some(),
        fms.iter().any(Option::is_some),
    ];
    if given.iter().filter(|g| **g).count() > 1 {
        return Err(cli_err!(
            "give only one of --vcpu-type, --vcpu-sig, --vcpu-family/--vcpu-model/--vcpu-stepping"
        ));
    }
    if let [Some(f), Some(m), Some(s)] = fms {
        // CPUID leaf 1 EAX holds the family as a 4-bit base plus an 8-bit extension (the
        // extension counts from 0xF), the model as two 4-bit halves, the stepping in 4 bits.
        for (option, value, max) in [
            ("--vcpu-family", f, 0xF + 0xFF),
            ("--vcpu-model", m, 0xFF),
            ("--vcpu-stepping", s, 0xF),
        ] {
            if value > max {
                return Err(cli_err!(
                    "{option} {value}: CPUID leaf 1 can encode at most {max}"
                ));
            }
        }
        return Ok(Some(cpu_sig(f, m, s)));
    }
    if given[2] {
        return Err(cli_err!(
            "--vcpu-family, --vcpu-model and --vcpu-stepping go together"
        ));
    }
    Ok(a.vcpu_sig
        .or_else(|| a.vcpu_type.as_deref().and_then(cpu_type_sig)))
}

fn check_options(a: &MeasureArgs) -> Result<(), CliError> {
    if a.kernel.is_none() && a.initrd.is_some() {
        return Err(cli_err!("--kernel required when using --initrd"));
    }
    if a.kernel.is_none() && a.append.is_some() {
        return Err(cli_err!("--kernel required when using --append"));
    }
    if a.snp_ovmf_hash.is_some() && a.mode != Mode::Snp {
        return Err(cli_err!("--snp-ovmf-hash only applies to --mode snp"));
    }
    if a.dump_vmsa && !matches!(a.mode, Mode::Snp | Mode::Seves) {
        return Err(cli_err!("--dump-vmsa only applies to --mode snp and seves"));
    }
    if matches!(a.mode, Mode::Snp | Mode::Seves) && a.vcpus.is_none() {
        let m = if a.mode == Mode::Snp { "snp" } else { "seves" };
        return Err(cli_err!("missing --vcpus N in guest mode '{m}'"));
    }
    if a.mode == Mode::Tdx && a.kernel.is_some() {
        return Err(cli_err!(
            "--mode tdx: MRTD does not cover a direct-boot kernel (TDVF measures it into RTMR)"
        ));
    }
    let hmac = [
        a.tik.is_some(),
        a.mnonce.is_some(),
        a.api_major.is_some(),
        a.api_minor.is_some(),
    ];
    let hmac = hmac
        .into_iter()
        .chain([a.build.is_some(), a.policy.is_some()]);
    let n = hmac.filter(|x| *x).count();
    if n != 0 && n != 6 {
        return Err(cli_err!(
            "--tik, --mnonce, --api-major, --api-minor, --build and --policy go together"
        ));
    }
    if n == 6 && !matches!(a.mode, Mode::Sev | Mode::Seves) {
        return Err(cli_err!(
            "--tik (LAUNCH_MEASURE) only applies to --mode sev and seves"
        ));
    }
    Ok(())
}

fn format(bytes: &[u8], f: OutputFormat) -> String {
    match f {
        OutputFormat::Hex => hex::encode(bytes),
        OutputFormat::Base64 => base64::engine::general_purpose::STANDARD.encode(bytes),
    }
}

fn read_tik(p: &Path) -> Result<Tik, CliError> {
    let raw = read("TIK", p)?;
    if let Ok(k) = <[u8; 16]>::try_from(&raw[..]) {
        return Ok(Tik::new(k));
    }
    let text = String::from_utf8(raw)
        .map_err(|_| cli_err!("TIK '{}' is neither 16 bytes nor hex", p.display()))?;
    fixed::<16>("TIK", &text).map(Tik::new)
}

/// Runs `vmm-cli measure`.
pub(crate) fn run(a: &MeasureArgs) -> Result<Outcome, CliError> {
    check_options(a)?;
    let sig = vcpu_signature(a)?;
    let image = read("firmware", &a.ovmf)?;
    let fw = FirmwareImage::parse(&image)
        .map_err(|e| cli_err!("firmware '{}': {e}", a.ovmf.display()))?;
    // The kernel and initrd enter the measurement only through their SHA-256 digests, so
    // they are streamed, never loaded.
    let mut boot_bytes = 0u64;
    for (what, path) in [("kernel", &a.kernel), ("initrd", &a.initrd)] {
        if let Some(p) = path {
            let meta = std::fs::metadata(p)
                .map_err(|e| cli_err!("cannot read {what} '{}': {e}", p.display()))?;
            boot_bytes += meta.len();
        }
    }

    let mut inputs = PlanInputs::new(&fw);
    inputs.vcpus = a.vcpus.unwrap_or(0);
    inputs.vcpu_sig = sig;
    inputs.guest_features = a.guest_features;
    inputs.vmm = a.vmm_type;
    if let Some(h) = &a.snp_ovmf_hash {
        inputs.snp_firmware_digest = Some(fixed::<48>("--snp-ovmf-hash", h)?);
    }
    if matches!(a.mode, Mode::Snp | Mode::Seves) && a.vmm_type == VmmType::Qemu && sig.is_none() {
        let m = if a.mode == Mode::Snp { "snp" } else { "seves" };
        return Err(cli_err!(
            "missing --vcpu-type or --vcpu-sig or --vcpu-family in guest mode '{m}'"
        ));
    }

    let input_bytes = image.len() as u64 + boot_bytes;
    let spinner = progress_wanted(input_bytes).then(|| {
        let s = ProgressBar::new_spinner().with_message("hashing kernel and initrd");
        s.enable_steady_tick(Duration::from_millis(100));
        s
    });
    if let Some(kernel) = &a.kernel {
        let hashes = SevHashes::from_files(kernel, a.initrd.as_deref(), a.append.as_deref())
            .map_err(|e| {
                let initrd = a
                    .initrd
                    .as_ref()
                    .map(|i| format!(" or initrd '{}'", i.display()))
                    .unwrap_or_default();
                cli_err!("cannot read kernel '{}'{initrd}: {e}", kernel.display())
            })?;
        inputs.boot_hashes = Some(hashes);
    }
    let plan = match a.mode {
        Mode::Sev => LaunchPlan::sev(&inputs),
        Mode::Seves => LaunchPlan::sev_es(&inputs),
        Mode::Snp => LaunchPlan::snp(&inputs),
        Mode::SnpOvmfHash => LaunchPlan::snp_firmware_only(&fw),
        Mode::Tdx => LaunchPlan::tdx(&fw),
    }
    .map_err(|e| cli_err!("firmware '{}': {e}", a.ovmf.display()))?;
    if let Some(s) = spinner {
        s.finish_and_clear();
    }

    let bar = progress_wanted(plan.total_len()).then(|| {
        let b = ProgressBar::new(plan.total_len());
        if let Ok(style) =
            ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec}")
        {
            b.set_style(style);
        }
        Bar(b)
    });
    let opts = MeasureOptions {
        log: a.log.is_some(),
        progress: bar.as_ref().map(|b| b as &dyn Progress),
    };
    let m = calc::measure(&plan, &opts).map_err(|e| cli_err!("{e}"))?;
    if let Some(b) = bar {
        b.0.finish_and_clear();
    }

    if let (Some(path), Some(log)) = (&a.log, &m.log) {
        std::fs::write(path, log.to_json())
            .map_err(|e| cli_err!("cannot write log '{}': {e}", path.display()))?;
    }
    if a.dump_vmsa {
        for s in &plan.steps {
            if let (Origin::Vmsa { vcpu }, Data::Shared(page)) = (s.origin, &s.data) {
                let p = format!("vmsa{vcpu}.bin");
                std::fs::write(&p, page).map_err(|e| cli_err!("cannot write {p}: {e}"))?;
            }
        }
    }

    let ld = m.digest.as_bytes();
    let launch_measure = match (
        &a.tik,
        &a.mnonce,
        a.api_major,
        a.api_minor,
        a.build,
        a.policy,
    ) {
        (Some(tik), Some(nonce), Some(api_major), Some(api_minor), Some(build), Some(policy)) => {
            let params = SevMeasureParams {
                api_major,
                api_minor,
                build,
                policy,
                mnonce: fixed::<16>("--mnonce", nonce)?,
            };
            let ld: [u8; 32] = ld
                .try_into()
                .map_err(|_| cli_err!("launch digest is not SHA-256"))?;
            Some((
                calc::sev_launch_measure(&read_tik(tik)?, &params, &ld),
                params.mnonce,
            ))
        }
        _ => None,
    };
    // sev-snp-measure prints snp:ovmf-hash in hex whatever --output-format says.
    let out_format = if a.mode == Mode::SnpOvmfHash {
        OutputFormat::Hex
    } else {
        a.output_format
    };
    let primary = launch_measure.as_ref().map_or(ld, |(mac, _)| &mac[..]);
    let printed = format(primary, out_format);

    if a.json {
        let mut j = serde_json::json!({
            "mode": a.mode.to_possible_value().map(|v| v.get_name().to_string()),
            "measurement": hex::encode(ld),
        });
        if let Some((mac, nonce)) = &launch_measure {
            j["launch_measure"] = hex::encode(mac).into();
            j["mnonce"] = hex::encode(nonce).into();
        }
        println!("{j}");
    } else if a.verbose && a.mode != Mode::SnpOvmfHash {
        let name = match a.mode {
            Mode::Sev => "SEV",
            Mode::Seves => "SEV_ES",
            Mode::Snp | Mode::SnpOvmfHash => "SEV_SNP",
            Mode::Tdx => "TDX",
        };
        println!("Calculated {name} guest measurement: {printed}");
    } else {
        println!("{printed}");
    }

    match &a.expect {
        Some(e) => {
            let want = e.trim();
            let hit = want.eq_ignore_ascii_case(&hex::encode(primary))
                || want == base64::engine::general_purpose::STANDARD.encode(primary);
            if hit {
                Ok(Outcome::Success)
            } else {
                eprintln!("measurement mismatch: expected {want}, computed {printed}");
                Ok(Outcome::Negative)
            }
        }
        None => Ok(Outcome::Success),
    }
}
