//! The launch log: JSON round trip, replay reproduces the final value, diff names the first
//! diverging step.

mod measure_common;

use kvm_coco::measure::calc::{MeasureOptions, measure};
use kvm_coco::measure::firmware::FirmwareImage;
use kvm_coco::measure::hashes::DirectBoot;
use kvm_coco::measure::log::{Field, LaunchLog, ReplayError};
use kvm_coco::measure::plan::{LaunchPlan, Origin, PageKind, PlanInputs};
use measure_common::*;

const LOG: MeasureOptions<'static> = MeasureOptions {
    log: true,
    progress: None,
};

#[test]
fn snp_log_round_trip_and_replay() {
    let img = syn64k();
    let side = side_files();
    let fw = FirmwareImage::parse(&img).unwrap();
    let mut inp = PlanInputs::new(&fw);
    inp.vcpus = 3;
    inp.vcpu_sig = Some(0x80_0F12);
    inp.boot = Some(DirectBoot {
        kernel: &side[0].1,
        initrd: Some(&side[1].1),
        cmdline: Some("console=ttyS0"),
    });
    let plan = LaunchPlan::snp(&inp).unwrap();
    let m = measure(&plan, &LOG).unwrap();
    let log = m.log.clone().unwrap();
    // 16 firmware pages, 6 metadata pages, 3 VMSAs.
    assert_eq!(log.entries.len(), 16 + 6 + 3);
    assert_eq!(log.entries.last().unwrap().running, m.digest.as_bytes());
    assert_eq!(log.entries[16].kind, PageKind::Zero);
    assert_eq!(log.entries[16].contents, None);
    assert_eq!(log.entries[24].origin, Origin::Vmsa { vcpu: 2 });
    // The same measurement without a log.
    assert_eq!(
        measure(&plan, &MeasureOptions::default()).unwrap().digest,
        m.digest
    );

    let json = log.to_json();
    let back = LaunchLog::from_json(&json).unwrap();
    assert_eq!(back, log);
    assert_eq!(back.replay().unwrap(), m.digest);
    assert_eq!(back.replay_plan(&plan).unwrap(), m.digest);
    // The digest is the facts §8.2 value for this input set (3 vCPUs differ; check 1 vCPU).
    inp.vcpus = 1;
    let one = measure(&LaunchPlan::snp(&inp).unwrap(), &LOG).unwrap();
    assert_eq!(
        hex::encode(&one.log.unwrap().digest),
        "5d2ef486503b2ee73a2eb4f2a8432921c53a3ee74ea6df6b1e0b5ccb2f54c389b5e93d3023d60c56969cfae886762306"
    );
}

#[test]
fn tampered_logs_are_located() {
    let img = syn64k();
    let fw = FirmwareImage::parse(&img).unwrap();
    let mut inp = PlanInputs::new(&fw);
    inp.vcpu_sig = Some(0x80_0F12);
    let log = measure(&LaunchPlan::snp(&inp).unwrap(), &LOG)
        .unwrap()
        .log
        .unwrap();

    let mut bad = log.clone();
    bad.entries[5].contents.as_mut().unwrap()[0] ^= 1;
    match bad.replay() {
        Err(ReplayError::Diverged(d)) => assert_eq!((d.index, d.field), (5, Field::Running)),
        other => panic!("{other:?}"),
    }
    let d = log.diff(&bad).unwrap();
    assert_eq!((d.index, d.field), (5, Field::Contents));
    assert!(d.to_string().contains("entry 5"), "{d}");

    // A different vCPU model changes only the VMSA entries.
    inp.vcpu_sig = Some(0xA00F11);
    let other = measure(&LaunchPlan::snp(&inp).unwrap(), &LOG)
        .unwrap()
        .log
        .unwrap();
    let d = log.diff(&other).unwrap();
    assert_eq!((d.index, d.field), (22, Field::Contents));
    assert_eq!(d.left.unwrap().origin, Origin::Vmsa { vcpu: 0 });

    // Replaying against a different plan names the first diverging step too.
    let Err(ReplayError::Diverged(d)) = log.replay_plan(&LaunchPlan::snp(&inp).unwrap()) else {
        panic!()
    };
    assert_eq!(d.index, 22);

    // Missing entries.
    let mut short = log.clone();
    short.entries.pop();
    assert_eq!(log.diff(&short).unwrap().field, Field::Missing);
    assert!(log.diff(&log.clone()).is_none());
}

#[test]
fn sev_and_tdx_logs_replay_against_their_plan() {
    let img = syn64k();
    let side = side_files();
    let fw = FirmwareImage::parse(&img).unwrap();
    let mut inp = PlanInputs::new(&fw);
    inp.vcpus = 2;
    inp.vcpu_sig = Some(0x80_0F12);
    inp.boot = Some(DirectBoot {
        kernel: &side[0].1,
        initrd: None,
        cmdline: None,
    });
    for plan in [
        LaunchPlan::sev(&inp).unwrap(),
        LaunchPlan::sev_es(&inp).unwrap(),
        LaunchPlan::tdx(&fw).unwrap(),
    ] {
        let m = measure(&plan, &LOG).unwrap();
        let log = LaunchLog::from_json(&m.log.unwrap().to_json()).unwrap();
        assert_eq!(log.entries.last().unwrap().running, m.digest.as_bytes());
        assert_eq!(log.replay_plan(&plan).unwrap(), m.digest);
        assert!(matches!(log.replay(), Err(ReplayError::NeedsPlan(_))));
    }
    // SEV-ES: firmware, hash table, 2 VMSAs; SHA-256 of the table region is its content digest.
    let m = measure(&LaunchPlan::sev_es(&inp).unwrap(), &LOG)
        .unwrap()
        .log
        .unwrap();
    assert_eq!(m.entries.len(), 4);
    assert_eq!(m.entries[1].len, 176);
    // TDX: one entry per page; the CFV (section 0) is added without MR.EXTEND.
    let t = measure(&LaunchPlan::tdx(&fw).unwrap(), &LOG)
        .unwrap()
        .log
        .unwrap();
    assert_eq!(t.entries.len(), (0x4000 + 0xC000 + 0x2000 + 0x6000) / 4096);
    assert_eq!(
        (t.entries[0].kind, t.entries[0].contents.is_none()),
        (PageKind::Unmeasured, true)
    );
    assert_eq!(t.entries[4].kind, PageKind::Measured);
}
