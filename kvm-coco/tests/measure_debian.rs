//! Every OVMF / TDVF image Debian ships, measured in every mode it supports, against the
//! committed reference values of sev-snp-measure 0.0.13 (SEV, SEV-ES, SNP with several vCPU
//! counts, vCPU types and VMM types, snp:ovmf-hash, direct boot) and tests/mrtd_ref.py (TDX):
//! tests/vectors/debian-firmware.json, made by tests/vectors/gen_debian_vectors.py from the
//! images tests/vectors/fetch_debian_firmware.sh fetches into target/debian-firmware/
//! (bookworm and trixie `ovmf`; sid `ovmf-generic`, the build sid's `ovmf` depends on,
//! `ovmf-amdsev` and `ovmf-inteltdx`; whole images and the pflash code halves).
//!
//! Without the images the tests say so and pass; with the environment variable `CI` set they
//! fail instead.

mod measure_cases;
mod measure_common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use kvm_coco::measure::calc::{MeasureOptions, measure};
use kvm_coco::measure::firmware::{FirmwareImage, SevSectionType};
use kvm_coco::measure::plan::{LaunchPlan, Origin, PlanError};
use measure_cases::*;
use measure_common::*;
use rayon::prelude::*;

const INTELTDX: &str = "sid_ovmf-inteltdx_OVMF.inteltdx.ms.fd";

fn files(images: &BTreeMap<String, Vec<u8>>) -> BTreeMap<&str, Vec<u8>> {
    images
        .iter()
        .map(|(n, b)| (n.as_str(), b.clone()))
        .chain(side_files())
        .collect()
}

/// The committed file is self-consistent, whether or not the images are here: every image
/// is measured in every mode it supports, the side files are the tests' own.
#[test]
fn vectors_cover_every_image_and_mode() {
    let v = load_debian_vectors();
    for (n, b) in side_files() {
        assert_eq!(v.files.get(n), Some(&sha256_hex(&b)), "side file {n}");
    }
    let mut modes: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for c in &v.cases {
        modes
            .entry(image_of(&c.args))
            .or_default()
            .insert(mode_of(&c.args));
        assert_eq!(
            c.tool,
            if mode_of(&c.args) == "tdx" {
                "mrtd_ref.py"
            } else {
                "sev-snp-measure"
            }
        );
    }
    assert_eq!(
        modes.keys().copied().collect::<Vec<_>>(),
        v.images.keys().map(String::as_str).collect::<Vec<_>>()
    );
    for (name, img) in &v.images {
        assert_eq!(v.files.get(name), Some(&img.sha256), "{name}");
        let want: &[&str] = if name.contains("_CODE") {
            // pflash code halves: SEV and SEV-ES boot them; SNP and TDX need whole images.
            &["sev", "seves"]
        } else {
            &["sev", "seves", "snp", "snp:ovmf-hash", "tdx"]
        };
        assert_eq!(
            modes[name.as_str()],
            want.iter().copied().collect(),
            "{name}"
        );
    }
    let packages: BTreeSet<_> = v
        .images
        .values()
        .map(|i| (i.suite.as_str(), i.package.as_str()))
        .collect();
    assert_eq!(
        packages,
        BTreeSet::from([
            ("bookworm", "ovmf"),
            ("trixie", "ovmf"),
            ("sid", "ovmf-generic"),
            ("sid", "ovmf-amdsev"),
            ("sid", "ovmf-inteltdx"),
        ])
    );
}

#[test]
fn committed_reference_values() {
    let v = load_debian_vectors();
    let Some(images) = debian_firmware(&v) else {
        return;
    };
    let files = files(&images);
    // The SNP digest of an image's firmware pages is the same in every SNP case of the image:
    // the first SNP case of each image computes it, the others start from it, as with
    // sev-snp-measure's --snp-ovmf-hash (the digest itself is checked against the tool's
    // snp:ovmf-hash case). This keeps a debug build from hashing each image a hundred times.
    let mut firmware_digest: BTreeMap<&str, String> = BTreeMap::new();
    let mut full_snp = 0;
    let args: Vec<Vec<String>> = v
        .cases
        .iter()
        .map(|c| {
            let mut args = c.args.clone();
            let image = image_of(&c.args);
            if mode_of(&c.args) == "snp" && !args.iter().any(|a| a == "--snp-ovmf-hash") {
                if let Some(d) = firmware_digest.get(image) {
                    args.extend(["--snp-ovmf-hash".into(), d.clone()]);
                } else {
                    let fw = FirmwareImage::parse(&files[image]).unwrap();
                    let plan = LaunchPlan::snp_firmware_only(&fw).unwrap();
                    let d = measure(&plan, &MeasureOptions::default()).unwrap().digest;
                    firmware_digest.insert(image, d.to_string());
                    full_snp += 1;
                }
            }
            args
        })
        .collect();
    assert_eq!(full_snp, 5);
    let results: Vec<_> = args.par_iter().map(|a| run_case(a, &files)).collect();
    let mut per_mode: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for (c, ours) in v.cases.iter().zip(results) {
        let what = format!("{} {}", c.tool, c.args.join(" "));
        let n = per_mode.entry(mode_of(&c.args)).or_default();
        if c.status == 0 {
            assert_eq!(ours.as_deref(), Ok(c.stdout.trim()), "{what}");
            n.0 += 1;
        } else {
            assert!(
                ours.is_err(),
                "the reference refuses {what}; we computed {ours:?}"
            );
            n.1 += 1;
        }
    }
    for (mode, (ok, refused)) in &per_mode {
        eprintln!("{mode}: {ok} values equal to the reference, {refused} refusals shared");
    }
    assert_eq!(
        per_mode.values().map(|(a, b)| a + b).sum::<usize>(),
        v.cases.len()
    );
}

/// sid's `ovmf-inteltdx` lists its SVSM_CAA and SNP_SEC_MEM sections with size zero at GPA 0
/// (edk2 2026.08). They are accepted and add nothing to an SNP plan (sev-snp-measure's value
/// is in the committed vectors); every mode measures the image.
#[test]
fn inteltdx_empty_sev_sections() {
    let v = load_debian_vectors();
    let Some(images) = debian_firmware(&v) else {
        return;
    };
    let fw = FirmwareImage::parse(&images[INTELTDX]).unwrap();
    let sections: Vec<_> = fw
        .checked_sev_metadata()
        .unwrap()
        .unwrap()
        .sections
        .iter()
        .map(|s| (s.gpa, s.size, s.kind))
        .collect();
    assert_eq!(
        sections[4..],
        [
            (0, 0, SevSectionType::SvsmCaa),
            (0, 0, SevSectionType::SnpSecMem)
        ]
    );
    let plan = LaunchPlan::snp(&amd_inputs(&fw, 2, "EPYC-v4")).unwrap();
    let from_sections: Vec<usize> = plan
        .steps
        .iter()
        .filter_map(|s| match s.origin {
            Origin::SevSection { index, .. } => Some(index),
            _ => None,
        })
        .collect();
    assert_eq!(from_sections, [0, 1, 2, 3]);
    let files = files(&images);
    for mode in ["sev", "seves", "snp", "snp:ovmf-hash", "tdx"] {
        let c = v
            .cases
            .iter()
            .find(|c| image_of(&c.args) == INTELTDX && mode_of(&c.args) == mode)
            .unwrap();
        assert_eq!(c.status, 0);
        assert_eq!(
            run_case(&c.args, &files).as_deref(),
            Ok(c.stdout.trim()),
            "{mode}"
        );
    }
}

/// The TDX MRTD of a TDVF image does not depend on its SEV metadata: with the ASEV table
/// broken (its signature, then a section type) the TDX plan is unchanged and measures what
/// mrtd_ref.py (which never reads that table) computes for the modified image, while SNP
/// refuses naming the table or the section.
#[test]
fn tdx_does_not_read_the_sev_table() {
    let v = load_debian_vectors();
    let Some(images) = debian_firmware(&v) else {
        return;
    };
    let img = &images[INTELTDX];
    let asev = FirmwareImage::parse(img)
        .unwrap()
        .sev_metadata()
        .unwrap()
        .offset;
    let dir = scratch("measure_debian_tdx");
    for (what, off, bytes, refusal) in [
        ("signature", asev, &b"XXXX"[..], "SEV metadata at"),
        (
            "section type",
            asev + 16 + 12 * 2 + 8,
            &0x77u32.to_le_bytes()[..],
            "SEV metadata #2 at",
        ),
    ] {
        let mut bad = img.clone();
        bad[off..off + bytes.len()].copy_from_slice(bytes);
        let fw = FirmwareImage::parse(&bad).unwrap();
        let snp = LaunchPlan::snp(&amd_inputs(&fw, 1, "EPYC-v4")).unwrap_err();
        assert!(matches!(snp, PlanError::Firmware(_)), "{what}: {snp}");
        assert!(snp.to_string().contains(refusal), "{what}: {snp}");
        let ours = measure(&LaunchPlan::tdx(&fw).unwrap(), &MeasureOptions::default())
            .unwrap()
            .digest
            .to_string();
        let path = dir.join("bad.fd");
        std::fs::write(&path, &bad).unwrap();
        let Some(py) = python_mrtd(&path) else { return };
        assert_eq!(ours, py, "{what}");
    }
}

fn python_mrtd(path: &Path) -> Option<String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mrtd_ref.py");
    match Command::new("python3").arg(script).arg(path).output() {
        Ok(o) if o.status.success() => Some(String::from_utf8(o.stdout).unwrap().trim().into()),
        Ok(o) => panic!(
            "mrtd_ref.py failed on {}: {}",
            path.display(),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => {
            kvm_coco_test_skip::skip(
                "python3 for mrtd_ref.py",
                format_args!("cannot run python3: {e}"),
            );
            None
        }
    }
}
