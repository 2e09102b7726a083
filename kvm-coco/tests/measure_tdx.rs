//! TDX MRTD: the calculator against the facts §8.5 value (Debian OVMF.fd) and against an
//! independent Python implementation of the §5.1 algorithm (tests/mrtd_ref.py) on synthetic
//! TDVF images.

mod measure_common;

use std::path::Path;
use std::process::Command;

use kvm_coco::measure::calc::{MeasureOptions, measure};
use kvm_coco::measure::firmware::{FirmwareError, FirmwareImage};
use kvm_coco::measure::plan::{LaunchPlan, PlanError};
use measure_common::*;

fn ours(img: &[u8]) -> String {
    let fw = FirmwareImage::parse(img).unwrap();
    measure(&LaunchPlan::tdx(&fw).unwrap(), &MeasureOptions::default())
        .unwrap()
        .digest
        .to_string()
}

fn python_mrtd(path: &Path) -> Option<String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mrtd_ref.py");
    match Command::new("python3").arg(script).arg(path).output() {
        Ok(o) if o.status.success() => {
            Some(String::from_utf8(o.stdout).unwrap().trim().to_string())
        }
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

/// More TDVF layouts: several extended sections, a PAGE_AUG section, sections out of
/// address order, raw data shorter than memory.
fn tdvf_variants() -> Vec<(&'static str, Vec<u8>)> {
    let base = |tdvf: Vec<TdvfSec>, size: usize| {
        Syn {
            size,
            pattern: |i| (i * 17 % 255) as u8,
            tdvf: Some(tdvf),
            asev: None,
            hash: None,
            secret: None,
            reset: None,
        }
        .build()
    };
    vec![
        (
            "tdvf-a.fd",
            base(
                vec![
                    (0x0, 0x3000, 0xFFFF_D000, 0x3000, 1, 0),
                    (0x3000, 0x1800, 0xFFFF_0000, 0x4000, 0, 1),
                    (0x6000, 0x2000, 0x7000_0000, 0x2000, 0, 1),
                    (0, 0, 0x1_0000_0000, 0x1000, 3, 2),
                    (0, 0, 0x40_0000, 0x5000, 2, 0),
                ],
                0x8000,
            ),
        ),
        (
            "tdvf-b.fd",
            base(
                vec![
                    (0x0, 0x10, 0x1000, 0x1000, 0, 1),
                    (0x1000, 0xF000, 0xFFFF_1000, 0xF000, 0, 1),
                ],
                0x10000,
            ),
        ),
    ]
}

#[test]
fn debian_ovmf_mrtd() {
    let Some((path, img)) = debian_ovmf() else {
        return;
    };
    let want = "4c7206f0f483c524f12c366c711e9049030a8d47c471ee5aa9c4999a08de4057fb887fed0744d5631a212967fb231c47";
    assert_eq!(ours(&img), want);
    if let Some(py) = python_mrtd(&path) {
        assert_eq!(py, want);
    }
}

#[test]
fn synthetic_mrtd_matches_python_reference() {
    let dir = scratch("measure_tdx");
    let mut images: Vec<_> = synthetic_images()
        .into_iter()
        .filter(|(n, _)| *n != "synnoasev.fd")
        .collect();
    images.extend(tdvf_variants());
    let mut n = 0;
    for (name, img) in &images {
        let p = dir.join(name);
        std::fs::write(&p, img).unwrap();
        let Some(py) = python_mrtd(&p) else { return };
        assert_eq!(ours(img), py, "{name}");
        n += 1;
    }
    eprintln!("{n} synthetic TDVF images agree with mrtd_ref.py");
}

#[test]
fn tdx_needs_tdvf_and_rejects_bad_sections() {
    let img = synnoasev();
    let fw = FirmwareImage::parse(&img).unwrap();
    assert_eq!(LaunchPlan::tdx(&fw).unwrap_err(), PlanError::NoTdvf);
    // Overlapping sections.
    let bad = Syn {
        size: 0x8000,
        pattern: |_| 0,
        tdvf: Some(vec![
            (0, 0x1000, 0x1000, 0x2000, 0, 1),
            (0, 0, 0x2000, 0x1000, 3, 0),
        ]),
        asev: None,
        hash: None,
        secret: None,
        reset: None,
    }
    .build();
    // The image parses (an SEV guest could still measure it); the TDVF metadata and the
    // TDX plan report the section.
    let fw = FirmwareImage::parse(&bad).unwrap();
    let overlap = FirmwareError::SectionOverlap {
        what: "TDVF metadata",
        first: 0,
        second: 1,
        offset: 0x8000 - 0xF00 + 16 + 32,
    };
    assert_eq!(fw.checked_tdvf(), Err(overlap.clone()));
    assert_eq!(
        LaunchPlan::tdx(&fw).unwrap_err(),
        PlanError::Firmware(overlap)
    );
    // Raw data past the end of the image.
    let bad = Syn {
        size: 0x8000,
        pattern: |_| 0,
        tdvf: Some(vec![
            (0x7000, 0x2000, 0x1000, 0x2000, 0, 1),
            (0, 0, 0x8000, 0x1000, 3, 0),
        ]),
        asev: None,
        hash: None,
        secret: None,
        reset: None,
    }
    .build();
    let e = FirmwareImage::parse(&bad)
        .unwrap()
        .checked_tdvf()
        .unwrap_err();
    assert!(
        matches!(e, FirmwareError::SectionOutOfRange { index: 0, .. }),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        "TDVF metadata #0 at 0x7110: raw data 0x7000+0x2000 runs past the image end 0x8000"
    );

    // 17 non-overlapping 4 GiB sections: parseable, but more than any launch adds.
    let huge = Syn {
        size: 0x8000,
        pattern: |_| 0,
        tdvf: Some((0..17u64).map(|i| (0, 0, i << 32, 1 << 32, 3, 0)).collect()),
        asev: None,
        hash: None,
        secret: None,
        reset: None,
    }
    .build();
    let fw = FirmwareImage::parse(&huge).unwrap();
    assert_eq!(
        LaunchPlan::tdx(&fw).unwrap_err(),
        PlanError::TooLarge { bytes: 17 << 32 }
    );
}
