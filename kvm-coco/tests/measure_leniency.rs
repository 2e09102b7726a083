//! The firmware parser accepts what the reference calculators accept and refuses what they
//! refuse: edge cases of the SEV and TDVF metadata (empty sections as in edk2's IntelTdx
//! build, SNP_SECRETS / CPUID sections that are not one page, overlaps, headers longer or
//! shorter than their descriptors, broken tables) measured by the library against the
//! committed values of sev-snp-measure 0.0.13 and tests/mrtd_ref.py
//! (tests/vectors/firmware-leniency.json, made by tests/vectors/gen_leniency_vectors.py), and
//! live against sev-snp-measure when it is installed.
//!
//! Two differences are deliberate and listed in [`beyond_the_tool`]: SEV, SEV-ES and
//! snp:ovmf-hash do not read the SEV metadata, so a broken table does not stop them (the
//! expected value is the tool's own with its metadata parsing turned off), and SNP refuses a
//! section that would add pages at an unaligned GPA, where the tool prints a value no launch
//! can produce.

mod measure_cases;
mod measure_common;

use std::collections::BTreeMap;
use std::path::Path;

use kvm_coco::measure::firmware::{FirmwareImage, SevSectionType};
use kvm_coco::measure::plan::{LaunchPlan, Origin, PlanError};
use measure_cases::*;
use measure_common::*;

/// Writes the inputs the vectors were made from (used by gen_leniency_vectors.py).
#[test]
#[ignore = "writes the vector inputs to $KVM_COCO_WRITE_INPUTS"]
fn write_inputs() {
    let dir = std::env::var_os("KVM_COCO_WRITE_INPUTS").expect("set KVM_COCO_WRITE_INPUTS");
    let dir = Path::new(&dir);
    std::fs::create_dir_all(dir).unwrap();
    for (n, b) in leniency_images().into_iter().chain(side_files()) {
        std::fs::write(dir.join(n), b).unwrap();
    }
}

/// How the library departs from the tool on a case, and why.
#[derive(Debug, PartialEq, Eq)]
enum Beyond {
    /// The tool refuses because it parses the SEV metadata in every mode; this mode does not
    /// use it, so the library measures (the tool's value with the table unread).
    SevMetadataUnread,
    /// The tool measures pages at an unaligned GPA; the library refuses naming the section.
    UnalignedSection,
}

/// The cases where the library deliberately differs from sev-snp-measure.
fn beyond_the_tool(image: &str, mode: &str, kernel: bool) -> Option<Beyond> {
    match (image, mode) {
        ("len-bad-asev.fd" | "len-short-header.fd", "sev" | "seves" | "snp:ovmf-hash") => {
            Some(Beyond::SevMetadataUnread)
        }
        // With a kernel both refuse: the image has no SNP_KERNEL_HASHES section.
        ("len-unaligned.fd", "snp") if !kernel => Some(Beyond::UnalignedSection),
        _ => None,
    }
}

/// A substring the library's refusal must contain: the refusals name the section.
fn refusal_names(image: &str, mode: &str, kernel: bool) -> Option<&'static str> {
    Some(match (image, mode) {
        ("len-unknown-type.fd", "snp") => "SEV metadata #1 at 0xf21c: unknown section type 0x7",
        ("len-odd-size.fd", "snp") => "SEV metadata #1 at 0xf21c: SvsmCaa section",
        ("len-unaligned.fd", "snp") => "SEV metadata #0 at 0xf210: SnpSecMem section at 0x800800",
        ("len-zero-hashes.fd", "snp") if kernel => "SEV metadata #3 at 0xf234: SnpKernelHashes",
        ("len-bad-asev.fd", "snp") => "SEV metadata at 0xf200: signature",
        ("len-short-header.fd", "snp") => "SEV metadata at 0xf200: length 75",
        ("len-bad-tdvf.fd", "tdx") => "TDVF metadata at 0xf100: version 2",
        _ => return None,
    })
}

fn inputs() -> BTreeMap<&'static str, Vec<u8>> {
    leniency_images().into_iter().chain(side_files()).collect()
}

#[test]
fn committed_vectors() {
    let v = load_leniency_vectors();
    let files = inputs();
    assert_eq!(
        files.len(),
        v.files.len(),
        "the vectors were made from other inputs"
    );
    for (name, b) in &files {
        assert_eq!(
            v.files.get(*name),
            Some(&sha256_hex(b)),
            "input {name} differs from the one the vectors used"
        );
    }
    let (mut same, mut refused, mut beyond) = (0, 0, 0);
    for c in &v.cases {
        let (image, mode) = (image_of(&c.args), mode_of(&c.args));
        let what = format!("{} {}", c.tool, c.args.join(" "));
        let ours = run_case(&c.args, &files);
        let kernel = c.args.iter().any(|a| a == "--kernel");
        match beyond_the_tool(image, mode, kernel) {
            None if c.status == 0 => {
                assert_eq!(ours.as_deref(), Ok(c.stdout.trim()), "{what}");
                same += 1;
            }
            None => {
                let e = ours.expect_err(&format!("the reference refuses {what}"));
                if let Some(want) = refusal_names(image, mode, kernel) {
                    assert!(e.contains(want), "{what}: {e:?} should contain {want:?}");
                }
                refused += 1;
            }
            Some(Beyond::SevMetadataUnread) => {
                assert_ne!(c.status, 0, "{what}");
                let unread = c.stdout_sev_metadata_unread.as_deref().unwrap();
                assert_eq!(ours.as_deref(), Ok(unread.trim()), "{what}");
                beyond += 1;
            }
            Some(Beyond::UnalignedSection) => {
                assert_eq!(c.status, 0, "{what}");
                let e = ours.expect_err(&what);
                assert!(e.contains("is not 4 KiB aligned"), "{what}: {e}");
                beyond += 1;
            }
        }
    }
    eprintln!(
        "{} cases: {same} values equal to the reference, {refused} refusals shared, \
         {beyond} deliberate differences",
        v.cases.len()
    );
    assert_eq!(beyond, 11);
    assert!(same > 50 && refused > 10);
}

/// The tool itself on every case, when installed (the committed file is its output).
#[test]
fn live_against_tool() {
    let Some(tool) = ssm_tool() else { return };
    let dir = scratch("measure_leniency_live");
    for (n, b) in inputs() {
        std::fs::write(dir.join(n), b).unwrap();
    }
    let v = load_leniency_vectors();
    let mut n = 0;
    for c in v.cases.iter().filter(|c| c.tool == "sev-snp-measure") {
        let out = std::process::Command::new(&tool)
            .args(&c.args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(c.status), "{}", c.args.join(" "));
        assert_eq!(String::from_utf8_lossy(&out.stdout), c.stdout);
        n += 1;
    }
    eprintln!("live: {n} cases agree with {}", tool.display());
}

/// Empty SEV sections add nothing to an SNP plan, wherever they claim to be; the SECRETS
/// and CPUID sections add one page each whatever size they declare.
#[test]
fn empty_and_odd_sections_in_the_plan() {
    let files = inputs();
    let fw = FirmwareImage::parse(&files["len-zero.fd"]).unwrap();
    let mut inp = amd_inputs(&fw, 1, "EPYC-v4");
    let plan = LaunchPlan::snp(&inp).unwrap();
    let sections: Vec<usize> = plan
        .steps
        .iter()
        .filter_map(|s| match s.origin {
            Origin::SevSection { index, .. } => Some(index),
            _ => None,
        })
        .collect();
    assert_eq!(sections, [0, 1, 3, 4]);
    // The same holds with a kernel (the hashes section is one page).
    let k = [1u8; 100];
    inp.boot = Some(kvm_coco::measure::hashes::DirectBoot {
        kernel: &k,
        initrd: None,
        cmdline: None,
    });
    assert!(LaunchPlan::snp(&inp).is_ok());

    let fw = FirmwareImage::parse(&files["len-secrets.fd"]).unwrap();
    let plan = LaunchPlan::snp(&amd_inputs(&fw, 1, "EPYC-v4")).unwrap();
    let pages: Vec<(SevSectionType, u64, u64)> = plan
        .steps
        .iter()
        .filter_map(|s| match s.origin {
            Origin::SevSection { kind, .. } => Some((kind, s.gpa, s.len)),
            _ => None,
        })
        .collect();
    assert_eq!(
        pages,
        [
            (SevSectionType::SnpSecMem, 0x80_0000, 0x1000),
            (SevSectionType::SnpSecrets, 0x80_1000, 0x1000),
            (SevSectionType::Cpuid, 0x80_2000, 0x1000),
            (SevSectionType::SnpSecrets, 0x80_6000, 0x1000),
            (SevSectionType::Cpuid, 0x80_8000, 0x1000),
        ]
    );
}

/// TDX reads the TDVF metadata only, the AMD modes never read it: a broken table of one
/// kind does not stop the other's measurement.
#[test]
fn each_mode_reads_only_its_tables() {
    let files = inputs();
    let fw = FirmwareImage::parse(&files["len-bad-asev.fd"]).unwrap();
    assert!(LaunchPlan::tdx(&fw).is_ok());
    assert!(LaunchPlan::sev(&amd_inputs(&fw, 1, "EPYC-v4")).is_ok());
    assert!(LaunchPlan::sev_es(&amd_inputs(&fw, 1, "EPYC-v4")).is_ok());
    assert!(matches!(
        LaunchPlan::snp(&amd_inputs(&fw, 1, "EPYC-v4")),
        Err(PlanError::Firmware(_))
    ));
    let fw = FirmwareImage::parse(&files["len-bad-tdvf.fd"]).unwrap();
    assert!(LaunchPlan::snp(&amd_inputs(&fw, 1, "EPYC-v4")).is_ok());
    assert!(matches!(LaunchPlan::tdx(&fw), Err(PlanError::Firmware(_))));
}
