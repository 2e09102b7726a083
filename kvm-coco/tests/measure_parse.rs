//! Firmware parsing: every malformed footer table is rejected with a typed error naming the
//! problem and its offset, a malformed metadata table by the accessor and the plans that read
//! it, and no mutation of a valid image makes parsing, planning or measuring panic.

mod measure_common;

use kvm_coco::measure::calc::{MeasureOptions, measure};
use kvm_coco::measure::firmware::{FirmwareError, FirmwareImage};
use kvm_coco::measure::hashes::DirectBoot;
use kvm_coco::measure::plan::{LaunchPlan, PlanError, PlanInputs};
use measure_common::*;
use proptest::prelude::*;

const S: usize = 0x10000;

fn err(img: &[u8]) -> FirmwareError {
    FirmwareImage::parse(img).unwrap_err()
}

/// The error of the SEV metadata (the image itself parses).
fn asev_err(img: &[u8]) -> FirmwareError {
    FirmwareImage::parse(img)
        .unwrap()
        .checked_sev_metadata()
        .unwrap_err()
}

/// The error of the TDVF metadata (the image itself parses).
fn tdvf_err(img: &[u8]) -> FirmwareError {
    FirmwareImage::parse(img)
        .unwrap()
        .checked_tdvf()
        .unwrap_err()
}

fn with_asev(items: Vec<(u32, u32, u32)>) -> Vec<u8> {
    Syn {
        size: S,
        pattern: |i| (i % 251) as u8,
        tdvf: None,
        asev: Some(items),
        hash: None,
        secret: None,
        reset: Some(0x80_4004),
    }
    .build()
}

#[test]
fn footer_errors() {
    let good = syn64k();
    // The footer's total length (u16 at S-50) claims more than the image holds.
    let mut img = good.clone();
    img[S - 50..S - 48].copy_from_slice(&0xFFF0u16.to_le_bytes());
    assert_eq!(
        err(&img),
        FirmwareError::TableLength {
            offset: S - 50,
            claimed: 0xFFF0,
            available: S - 32
        }
    );
    // ... or a length that does not end on an entry boundary.
    let mut img = good.clone();
    img[S - 50..S - 48].copy_from_slice(&140u16.to_le_bytes());
    assert!(
        matches!(err(&img), FirmwareError::StrayTableBytes { len: 4, .. }),
        "{}",
        err(&img)
    );
    // An entry whose length is shorter than its header: the reset block (last entry before
    // the footer) has its u16 length at S-50-18.
    let mut img = good.clone();
    img[S - 68..S - 66].copy_from_slice(&3u16.to_le_bytes());
    let e = err(&img);
    assert!(
        matches!(
            e,
            FirmwareError::EntryLength {
                offset: 0xFFBC,
                len: 3,
                ..
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("00f771de-1a7e-4fcb-890e-68c77e2fb44e"),
        "{e}"
    );
    // A duplicate: turn the secret-block GUID into the hash-table GUID.
    let mut img = good.clone();
    let secret = img.windows(16).position(|w| w == guid(G_SECRET)).unwrap();
    img[secret..secret + 16].copy_from_slice(&guid(G_HASH));
    assert!(matches!(err(&img), FirmwareError::DuplicateEntry { .. }));
    // A footer GUID that is not there means "no table", not an error.
    let mut img = good;
    img[S - 40] ^= 0xFF;
    assert!(
        FirmwareImage::parse(&img)
            .unwrap()
            .footer_entries()
            .is_empty()
    );
}

#[test]
fn metadata_errors() {
    let good = syn64k();
    // ASEV signature.
    let mut img = good.clone();
    img[S - 0xE00] = b'X';
    assert!(matches!(
        asev_err(&img),
        FirmwareError::BadSignature { offset: 0xF200, .. }
    ));
    // ASEV length too short for its descriptors (sev-snp-measure cannot read them either).
    let mut img = good.clone();
    img[S - 0xE00 + 4] = 75;
    assert!(matches!(
        asev_err(&img),
        FirmwareError::HeaderLength {
            claimed: 75,
            count: 5,
            expected: 76,
            ..
        }
    ));
    // ... but a longer one is read as sev-snp-measure reads it: the descriptors, then nothing.
    let mut img = good.clone();
    img[S - 0xE00 + 4] = 77;
    let fw = FirmwareImage::parse(&img).unwrap();
    assert_eq!(
        fw.checked_sev_metadata().unwrap().unwrap().sections.len(),
        5
    );
    // TDVF version.
    let mut img = good.clone();
    img[S - 0xF00 + 8] = 2;
    assert!(matches!(
        tdvf_err(&img),
        FirmwareError::BadVersion {
            version: 2,
            offset: 0xF100,
            ..
        }
    ));
    // Missing TDVF GUID before the descriptor.
    let mut img = good.clone();
    img[S - 0xF10] ^= 1;
    assert!(matches!(
        tdvf_err(&img),
        FirmwareError::MissingGuid { offset: 0xF0F0, .. }
    ));
    // Metadata offset pointing before the image start.
    let mut img = good;
    let e = img.windows(16).position(|w| w == guid(G_SEVMETA)).unwrap();
    img[e - 6..e - 2].copy_from_slice(&0x20000u32.to_le_bytes());
    assert!(matches!(
        asev_err(&img),
        FirmwareError::Truncated {
            what: "SEV metadata",
            ..
        }
    ));
    // Unknown ASEV section type; pages at an unaligned GPA; a ZERO-page section that is not
    // a whole number of pages. Each error names the section and its descriptor.
    let e = asev_err(&with_asev(vec![
        (0x80_0000, 0x1000, 1),
        (0x80_1000, 0x1000, 7),
    ]));
    assert_eq!(
        e,
        FirmwareError::UnknownValue {
            what: "SEV metadata",
            index: 1,
            offset: S - 0xE00 + 16 + 12,
            field: "section type",
            value: 7,
        }
    );
    assert_eq!(
        e.to_string(),
        format!(
            "SEV metadata #1 at {:#x}: unknown section type 0x7",
            S - 0xE00 + 28
        )
    );
    let e = asev_err(&with_asev(vec![(0x80_0800, 0x1000, 1)]));
    assert!(
        matches!(e, FirmwareError::SectionOutOfRange { index: 0, .. }),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        format!(
            "SEV metadata #0 at {:#x}: SnpSecMem section at 0x800800 is not 4 KiB aligned",
            S - 0xE00 + 16
        )
    );
    let e = asev_err(&with_asev(vec![
        (0x80_0000, 0x1000, 4),
        (0x80_1000, 0x800, 1),
    ]));
    assert_eq!(
        e.to_string(),
        format!(
            "SEV metadata #1 at {:#x}: SnpSecMem section 0x801000+0x800 is not a whole number \
             of 4 KiB pages",
            S - 0xE00 + 28
        )
    );
}

#[test]
fn plan_errors() {
    let img = synnohash();
    let fw = FirmwareImage::parse(&img).unwrap();
    let k = [1u8; 100];
    let mut inp = PlanInputs::new(&fw);
    inp.vcpu_sig = Some(0x80_0F12);
    inp.boot = Some(DirectBoot {
        kernel: &k,
        initrd: None,
        cmdline: None,
    });
    assert_eq!(
        LaunchPlan::sev(&inp).unwrap_err(),
        PlanError::KernelHashesUnsupported
    );
    assert_eq!(
        LaunchPlan::snp(&inp).unwrap_err(),
        PlanError::NoKernelHashesSection
    );
    inp.boot = None;
    inp.vcpu_sig = None;
    assert_eq!(
        LaunchPlan::snp(&inp).unwrap_err(),
        PlanError::MissingVcpuSignature
    );
    inp.vcpus = 0;
    assert_eq!(LaunchPlan::sev_es(&inp).unwrap_err(), PlanError::NoVcpus);
    let odd = vec![0u8; 5000];
    let fw = FirmwareImage::parse(&odd).unwrap();
    let mut inp = PlanInputs::new(&fw);
    inp.vcpu_sig = Some(1);
    assert_eq!(
        LaunchPlan::snp(&inp).unwrap_err(),
        PlanError::FirmwareNotPageAligned { len: 5000 }
    );
    assert_eq!(
        LaunchPlan::sev_es(&inp).unwrap_err(),
        PlanError::MissingResetBlock
    );
    assert!(LaunchPlan::sev(&inp).is_ok());
}

/// Parses, plans every mode and measures; must never panic whatever the bytes.
fn exercise(img: &[u8]) {
    let Ok(fw) = FirmwareImage::parse(img) else {
        return;
    };
    let k = [7u8; 64];
    for boot in [
        None,
        Some(DirectBoot {
            kernel: &k,
            initrd: Some(&k),
            cmdline: Some("x"),
        }),
    ] {
        let mut inp = PlanInputs::new(&fw);
        inp.vcpus = 2;
        inp.vcpu_sig = Some(0xA00F11);
        inp.boot = boot;
        for plan in [
            LaunchPlan::sev(&inp),
            LaunchPlan::sev_es(&inp),
            LaunchPlan::snp(&inp),
            LaunchPlan::tdx(&fw),
        ]
        .into_iter()
        .flatten()
        {
            // Mutated sizes can describe gigabytes of zero pages: valid, but too slow to
            // measure hundreds of times in a debug build. Planning them is still exercised.
            if plan.total_len() > 1 << 24 {
                continue;
            }
            let m = measure(
                &plan,
                &MeasureOptions {
                    log: true,
                    progress: None,
                },
            )
            .unwrap();
            if plan.tee == kvm_coco::measure::Tee::Snp {
                assert_eq!(m.log.unwrap().replay().unwrap(), m.digest);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn mutations_never_panic(
        which in 0usize..2,
        muts in proptest::collection::vec((0usize..0x1000, any::<u8>()), 1..12),
        anywhere in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        cut in proptest::option::of(0usize..0x20000),
    ) {
        let mut img = if which == 0 { syn64k() } else { syn128k() };
        let n = img.len();
        // Most mutations hit the metadata (the last 4 KiB), a few land anywhere.
        for (off, b) in muts {
            img[n - 0x1000 + off] = b;
        }
        for (off, b) in anywhere {
            img[off % n] = b;
        }
        if let Some(c) = cut {
            img.truncate(c.min(n));
        }
        exercise(&img);
    }

    #[test]
    fn random_footer_tables_never_panic(
        entries in proptest::collection::vec((0usize..6, proptest::collection::vec(any::<u8>(), 0..24)), 0..6),
        total_delta in -40i32..40,
    ) {
        let guids = [G_RESET, G_SEVMETA, G_HASH, G_SECRET, G_TDX, G_TDVF];
        let mut t = Vec::new();
        for (g, data) in &entries {
            t.extend_from_slice(data);
            t.extend_from_slice(&((data.len() + 18) as u16).to_le_bytes());
            t.extend_from_slice(&guid(guids[*g]));
        }
        let total = (t.len() as i32 + 18 + total_delta).max(0) as u16;
        t.extend_from_slice(&total.to_le_bytes());
        t.extend_from_slice(&guid(G_FOOTER));
        let mut img = vec![0u8; 0x2000];
        let end = img.len() - 32;
        img[end - t.len()..end].copy_from_slice(&t);
        exercise(&img);
    }
}
