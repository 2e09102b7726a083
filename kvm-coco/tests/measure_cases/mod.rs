//! Reference cases of the measurement tests: computing what sev-snp-measure (or, for
//! `--mode tdx`, tests/mrtd_ref.py) prints for a case's arguments through the library API,
//! and the committed vector files of real and edge-case firmware images
//! (tests/vectors/debian-firmware.json, tests/vectors/firmware-leniency.json) with the
//! images they were made from.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use base64::Engine;
use kvm_coco::measure::calc::{MeasureOptions, measure};
use kvm_coco::measure::firmware::FirmwareImage;
use kvm_coco::measure::hashes::DirectBoot;
use kvm_coco::measure::plan::{LaunchPlan, PlanInputs};
use kvm_coco::measure::vcpu::{VmmType, cpu_sig, cpu_type_sig};

use crate::measure_common::{int0, sha256_hex, workspace};

/// Computes what sev-snp-measure prints for `args` (`vmm-cli measure` arguments; `--mode tdx`
/// is the MRTD, as mrtd_ref.py prints it), through the library API. `Err` for the cases the
/// library refuses, with its message.
pub fn run_case(args: &[String], files: &BTreeMap<&str, Vec<u8>>) -> Result<String, String> {
    let mut o: BTreeMap<&str, &str> = BTreeMap::new();
    let mut it = args.iter();
    while let Some(k) = it.next() {
        o.insert(k.as_str(), it.next().ok_or("missing value")?.as_str());
    }
    let file = |k: &str| {
        o.get(k)
            .map(|n| files.get(n).ok_or(format!("no file {n}")).map(|v| &v[..]))
            .transpose()
    };
    let img = file("--ovmf")?.ok_or("no --ovmf")?;
    let fw = FirmwareImage::parse(img).map_err(|e| e.to_string())?;
    let mode = o["--mode"];
    let digest = |plan: &LaunchPlan<'_>| {
        measure(plan, &MeasureOptions::default())
            .map(|m| m.digest)
            .map_err(|e| e.to_string())
    };
    if mode == "snp:ovmf-hash" {
        let plan = LaunchPlan::snp_firmware_only(&fw).map_err(|e| e.to_string())?;
        return Ok(digest(&plan)?.to_string());
    }
    if mode == "tdx" {
        let plan = LaunchPlan::tdx(&fw).map_err(|e| e.to_string())?;
        return Ok(digest(&plan)?.to_string());
    }
    let mut inp = PlanInputs::new(&fw);
    inp.vcpus = o
        .get("--vcpus")
        .map_or(Ok(0), |v| v.parse())
        .map_err(|_| "vcpus")?;
    inp.vcpu_sig = if let Some(f) = o.get("--vcpu-family") {
        let n = |k: &str| o.get(k).and_then(|v| v.parse::<u32>().ok()).ok_or("fms");
        Some(cpu_sig(
            f.parse().map_err(|_| "family")?,
            n("--vcpu-model")?,
            n("--vcpu-stepping")?,
        ))
    } else if let Some(s) = o.get("--vcpu-sig") {
        Some(int0(s).ok_or("sig")? as u32)
    } else {
        o.get("--vcpu-type")
            .map(|t| cpu_type_sig(t).ok_or("type"))
            .transpose()?
    };
    inp.vmm = o
        .get("--vmm-type")
        .map_or(Ok(VmmType::Qemu), |v| v.parse())
        .map_err(|_| "vmm")?;
    inp.guest_features = o
        .get("--guest-features")
        .map_or(Some(1), |v| int0(v))
        .ok_or("features")?;
    let initrd = file("--initrd")?;
    if let Some(kernel) = file("--kernel")? {
        inp.boot = Some(DirectBoot {
            kernel,
            initrd,
            cmdline: o.get("--append").copied(),
        });
    }
    if let Some(h) = o.get("--snp-ovmf-hash") {
        inp.snp_firmware_digest = Some(hex::decode(h).unwrap().try_into().unwrap());
    }
    let plan = match mode {
        "sev" => LaunchPlan::sev(&inp),
        "seves" => LaunchPlan::sev_es(&inp),
        "snp" => LaunchPlan::snp(&inp),
        m => panic!("mode {m}"),
    }
    .map_err(|e| e.to_string())?;
    let d = digest(&plan)?;
    Ok(match o.get("--output-format") {
        Some(&"base64") => base64::engine::general_purpose::STANDARD.encode(d.as_bytes()),
        _ => d.to_string(),
    })
}

/// The `--mode` of a case.
pub fn mode_of(args: &[String]) -> &str {
    args.iter()
        .position(|a| a == "--mode")
        .map_or("?", |i| &args[i + 1])
}

/// The `--ovmf` image of a case.
pub fn image_of(args: &[String]) -> &str {
    args.iter()
        .position(|a| a == "--ovmf")
        .map_or("?", |i| &args[i + 1])
}

/// One reference case: the tool that computed it, the `vmm-cli measure` arguments, the
/// tool's exit status and standard output.
#[derive(Debug, serde::Deserialize)]
pub struct RefCase {
    pub tool: String,
    pub args: Vec<String>,
    pub status: i32,
    pub stdout: String,
    /// sev-snp-measure's output with its SEV metadata parsing turned off, where it refused an
    /// SEV, SEV-ES or snp:ovmf-hash case because of that table (leniency vectors only).
    #[serde(default)]
    pub stdout_sev_metadata_unread: Option<String>,
}

/// Where a Debian image comes from.
#[derive(Debug, serde::Deserialize)]
pub struct DebianImage {
    pub suite: String,
    pub package: String,
    pub version: String,
    pub path: String,
    pub sha256: String,
}

/// tests/vectors/debian-firmware.json.
#[derive(Debug, serde::Deserialize)]
pub struct DebianVectors {
    pub tools: BTreeMap<String, String>,
    pub images: BTreeMap<String, DebianImage>,
    pub files: BTreeMap<String, String>,
    pub cases: Vec<RefCase>,
}

pub fn load_debian_vectors() -> DebianVectors {
    let p = workspace().join("kvm-coco/tests/vectors/debian-firmware.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// tests/vectors/firmware-leniency.json.
#[derive(Debug, serde::Deserialize)]
pub struct LeniencyVectors {
    pub tools: BTreeMap<String, String>,
    pub files: BTreeMap<String, String>,
    pub cases: Vec<RefCase>,
}

pub fn load_leniency_vectors() -> LeniencyVectors {
    let p = workspace().join("kvm-coco/tests/vectors/firmware-leniency.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// Where tests/vectors/fetch_debian_firmware.sh puts the images:
/// `$KVM_COCO_DEBIAN_FIRMWARE`, or `target/debian-firmware` in the workspace.
pub fn debian_firmware_dir() -> PathBuf {
    std::env::var_os("KVM_COCO_DEBIAN_FIRMWARE")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/debian-firmware"))
}

/// The Debian images of `v`, read from [`debian_firmware_dir`] and checked against their
/// committed SHA-256. When one is missing or differs, reports a skip
/// (`kvm_coco_test_skip::skip`: fails where the oracles are required) and returns `None`.
pub fn debian_firmware(v: &DebianVectors) -> Option<BTreeMap<String, Vec<u8>>> {
    let dir = debian_firmware_dir();
    let mut out = BTreeMap::new();
    let mut problems = Vec::new();
    for (name, img) in &v.images {
        let p = dir.join(name);
        match std::fs::read(&p) {
            Ok(b) if sha256_hex(&b) == img.sha256 => {
                out.insert(name.clone(), b);
            }
            Ok(b) => problems.push(format!(
                "{} has sha256 {}, expected {} ({} {})",
                p.display(),
                sha256_hex(&b),
                img.sha256,
                img.package,
                img.version
            )),
            Err(e) => problems.push(format!("{}: {e}", p.display())),
        }
    }
    if problems.is_empty() {
        return Some(out);
    }
    let msg = format!(
        "Debian firmware images not available ({} of {}): {}; run \
         kvm-coco/tests/vectors/fetch_debian_firmware.sh (or set KVM_COCO_DEBIAN_FIRMWARE)",
        problems.len(),
        v.images.len(),
        problems.join("; ")
    );
    // .ci/run fetches them, and puts the fetch script's error (say, a pinned version the
    // archive no longer has) into KVM_COCO_DEBIAN_FIRMWARE_GONE when that fails.
    match std::env::var("KVM_COCO_DEBIAN_FIRMWARE_GONE") {
        Ok(why) => kvm_coco_test_skip::skip("Debian firmware", format_args!("{why}; {msg}")),
        Err(_) => kvm_coco_test_skip::skip("Debian firmware", msg),
    }
    None
}

/// The edge-case images of tests/vectors/firmware-leniency.json: SYN64K's layout with SEV
/// metadata (and TDVF metadata) the way real builds bend it or break it.
pub fn leniency_images() -> Vec<(&'static str, Vec<u8>)> {
    use crate::measure_common::Syn;
    const TDVF: [(u32, u32, u64, u64, u32, u32); 4] = [
        (0x0, 0x4000, 0xFFFF_0000, 0x4000, 1, 0),
        (0x4000, 0xC000, 0xFFFF_4000, 0xC000, 0, 1),
        (0, 0, 0x80_9000, 0x2000, 2, 0),
        (0, 0, 0x80_0000, 0x6000, 3, 0),
    ];
    let img = |asev: &[(u32, u32, u32)]| {
        Syn {
            size: 0x10000,
            pattern: |i| ((i * 5 + 1) % 253) as u8,
            tdvf: Some(TDVF.to_vec()),
            asev: Some(asev.to_vec()),
            hash: Some((0x80_3C00, 0x400)),
            secret: Some((0x80_5000, 0x1000)),
            reset: Some(0x80_4004),
        }
        .build()
    };
    let good = [
        (0x80_0000, 0x1000, 1),
        (0x80_1000, 0x1000, 2),
        (0x80_2000, 0x1000, 3),
        (0x80_3000, 0x1000, 0x10),
        (0x80_4000, 0x2000, 1),
    ];
    // The ASEV header is at 0x10000 - 0xE00, the TDVF descriptor at 0x10000 - 0xF00.
    let patched = |mut b: Vec<u8>, off: usize, v: &[u8]| {
        b[off..off + v.len()].copy_from_slice(v);
        b
    };
    // Empty sections as in edk2's IntelTdx build (SVSM_CAA and SNP_SEC_MEM at GPA 0, size
    // 0), one at an unaligned GPA, and empty TDVF sections.
    let zero = {
        let mut s = Syn {
            size: 0x10000,
            pattern: |i| ((i * 5 + 1) % 253) as u8,
            tdvf: Some(TDVF.to_vec()),
            asev: Some(vec![
                (0x80_0000, 0x1000, 1),
                (0x80_1000, 0x1000, 2),
                (0x123, 0, 1),
                (0x80_2000, 0x1000, 3),
                (0x80_3000, 0x1000, 0x10),
                (0, 0, 4),
                (0, 0, 1),
            ]),
            hash: Some((0x80_3C00, 0x400)),
            secret: Some((0x80_5000, 0x1000)),
            reset: Some(0x80_4004),
        };
        let t = s.tdvf.as_mut().unwrap();
        t.insert(2, (0, 0, 0x80_7000, 0, 3, 0));
        t.push((0, 0, 0x7000_0000, 0, 2, 0));
        s.build()
    };
    vec![
        ("len-zero.fd", zero),
        (
            "len-zero-hashes.fd",
            img(&[
                (0x80_0000, 0x1000, 1),
                (0x80_1000, 0x1000, 2),
                (0x80_2000, 0x1000, 3),
                (0x80_3000, 0, 0x10),
            ]),
        ),
        // SNP_SECRETS and CPUID of other sizes than one page.
        (
            "len-secrets.fd",
            img(&[
                (0x80_0000, 0x1000, 1),
                (0x80_1000, 0, 2),
                (0x80_2000, 0x2000, 3),
                (0x80_6000, 0x1800, 2),
                (0x80_8000, 0x3000, 3),
            ]),
        ),
        // Sections overlapping each other, the firmware, and reaching past 4 GiB.
        (
            "len-overlap.fd",
            img(&[
                (0x80_0000, 0x3000, 1),
                (0x80_1000, 0x1000, 2),
                (0x80_2000, 0x1000, 3),
                (0xFFFF_0000, 0x2000, 1),
                (0xFFFF_F000, 0x2000, 4),
            ]),
        ),
        // A header longer than its descriptors.
        (
            "len-long-header.fd",
            patched(
                img(&good),
                0x10000 - 0xE00 + 4,
                &(16 + 12 * 5 + 20u32).to_le_bytes(),
            ),
        ),
        // A header shorter than its descriptors.
        (
            "len-short-header.fd",
            patched(
                img(&good),
                0x10000 - 0xE00 + 4,
                &(16 + 12 * 5 - 1u32).to_le_bytes(),
            ),
        ),
        // A broken ASEV signature.
        (
            "len-bad-asev.fd",
            patched(img(&good), 0x10000 - 0xE00, b"ASEX"),
        ),
        // TDVF metadata of an unknown version.
        (
            "len-bad-tdvf.fd",
            patched(img(&good), 0x10000 - 0xF00 + 8, &2u32.to_le_bytes()),
        ),
        // ZERO pages at an unaligned GPA.
        (
            "len-unaligned.fd",
            img(&[(0x80_0800, 0x1000, 1), (0x80_2000, 0x1000, 2)]),
        ),
        (
            "len-unknown-type.fd",
            img(&[(0x80_0000, 0x1000, 1), (0x80_1000, 0x1000, 7)]),
        ),
        // ZERO-page sections that are not whole pages.
        (
            "len-odd-size.fd",
            img(&[(0x80_0000, 0x1000, 1), (0x80_1000, 0x800, 4)]),
        ),
    ]
}
