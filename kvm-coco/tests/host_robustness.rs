//! One long-lived software host serving many launches across threads, some abandoned
//! mid-launch with their fds dropped: afterwards no ASID, fd, memfd, mapping or thread has
//! leaked, and every finished SNP launch's report carries the sev-snp-measure digest.

#[path = "measure_common/mod.rs"]
mod measure_common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kvm_coco::launch::{InitParams, KvmBackend, Launch, SevEsInit, SnpInit, TdxInit};
use kvm_coco::measure::{FirmwareImage, LaunchPlan, PageKind};
use kvm_coco::sim::guest::{GuestOp, GuestOutcome};
use kvm_coco::sim::host::SoftwareHost;
use kvm_coco::{Exit, Kvm, SystemEvent, VmType};
use psp_driver::report::AttestationReport;
use zerocopy::FromBytes;

use measure_common::{amd_inputs, process_counts, ssm_output as ssm};

/// One SNP, SEV-ES or TDX launch of SYN64K; `abandon_at` 0 = finish and attest, 1 = drop after
/// LAUNCH_START, 2 = drop after the first measured region.
fn lifecycle(host: &SoftwareHost, vm_type: VmType, abandon_at: u32, expected: &str) -> bool {
    let img = measure_common::syn64k();
    let fw = FirmwareImage::parse(&img).unwrap();
    let inputs = amd_inputs(&fw, 1, "EPYC-v4");
    let (plan, params) = match vm_type {
        VmType::Snp => (
            LaunchPlan::snp(&inputs).unwrap(),
            InitParams::Snp(SnpInit::default()),
        ),
        VmType::Tdx => (
            LaunchPlan::tdx(&fw).unwrap(),
            InitParams::Tdx(TdxInit::default()),
        ),
        _ => (
            LaunchPlan::sev_es(&inputs).unwrap(),
            InitParams::SevEs(SevEsInit {
                policy: 0x4,
                ..SevEsInit::default()
            }),
        ),
    };
    let kvm = Kvm::open().unwrap();
    let backend = KvmBackend::new(&kvm, vm_type).unwrap();
    let mut launch = Launch::new(backend, params).unwrap();
    launch.add_plan_memory(&plan).unwrap();
    launch.add_memory(0x100_0000, 0x4000).unwrap();
    launch.create_vcpu(0).unwrap();
    let mut launch = launch.start().unwrap();
    if abandon_at == 1 {
        return false;
    }
    if abandon_at == 2 {
        // The firmware volume is in, the rest never comes.
        let first = plan
            .steps
            .iter()
            .find(|s| s.kind != PageKind::Vmsa)
            .unwrap();
        launch.add(first).unwrap();
        return false;
    }
    launch.add_plan(&plan).unwrap();
    let launch = launch.measure().unwrap().finish().unwrap();
    if vm_type != VmType::Snp {
        return true;
    }
    let (_backend, mut vcpus) = launch.into_parts();
    host.load_program(
        &vcpus[0],
        [
            GuestOp::MapGpa {
                gpa: 0x100_0000,
                npages: 4,
                private: false,
            },
            GuestOp::SnpReport {
                report_data: [1; 64],
                certs_gpa: 0x100_0000,
                npages: 1,
            },
            GuestOp::Terminate { code: 0 },
        ],
    )
    .unwrap();
    for _ in 0..8 {
        match vcpus[0].run().unwrap() {
            Exit::MapGpaRange(mut m) => m.reply(kvm_coco::MapGpaReply::Success),
            Exit::SystemEvent(SystemEvent::SevTerm { .. }) => break,
            other => panic!("unexpected exit {other:?}"),
        }
    }
    let outcomes = host.outcomes(&vcpus[0]).unwrap();
    let report = outcomes
        .iter()
        .find_map(|o| match o {
            GuestOutcome::SnpReport {
                report: Some(r), ..
            } => Some(r.clone()),
            _ => None,
        })
        .expect("a report");
    let report = AttestationReport::read_from_bytes(&report).unwrap();
    assert_eq!(hex::encode(report.measurement), expected);
    true
}

#[test]
fn two_hundred_launches_across_threads_leak_nothing() {
    let expected = ssm(&[
        "--mode",
        "snp",
        "--vcpus",
        "1",
        "--vcpu-type",
        "EPYC-v4",
        "--ovmf",
        "syn64k.fd",
    ]);
    let host = Arc::new(SoftwareHost::builder().seed(3).start().unwrap());
    // Threads the host serves: one served thread starts the workers, which inherit its filter.
    let served = {
        let host = host.clone();
        let expected = expected.clone();
        std::thread::spawn(move || {
            host.serve_current_thread().unwrap();
            // Warm-up, so lazily made state (the AMD model, the firmware's platform INIT)
            // is part of the "before" counts.
            assert!(lifecycle(&host, VmType::Snp, 0, &expected));
            assert!(host.settle(Duration::from_secs(5)));
            let before = (process_counts(), host.stats());
            let finished = Arc::new(AtomicUsize::new(0));
            let workers: Vec<_> = (0..4)
                .map(|w| {
                    let host = host.clone();
                    let expected = expected.clone();
                    let finished = finished.clone();
                    std::thread::spawn(move || {
                        for i in 0..50u32 {
                            // SNP, SEV-ES and TDX (more TDs than the module has key IDs, so
                            // a TD's HKID must come back when its VM is destroyed).
                            let vm_type = match (i + w) % 4 {
                                0 => VmType::SevEs,
                                1 => VmType::Tdx,
                                _ => VmType::Snp,
                            };
                            // Every fifth launch is abandoned, at two different points.
                            let abandon = if i % 5 == 4 { 1 + (i / 5) % 2 } else { 0 };
                            if lifecycle(&host, vm_type, abandon, &expected) {
                                finished.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    })
                })
                .collect();
            for w in workers {
                w.join().unwrap();
            }
            assert!(host.settle(Duration::from_secs(10)), "VMs not destroyed");
            let after = (process_counts(), host.stats());
            (before, after, finished.load(Ordering::Relaxed))
        })
    };
    let ((before_p, before_h), (after_p, after_h), finished) = served.join().unwrap();
    eprintln!("before: {before_p:?} {before_h:?}");
    eprintln!("after:  {after_p:?} {after_h:?}; {finished} of 200 launches finished");
    assert_eq!(finished, 160);
    assert_eq!(after_h.vms_created - before_h.vms_created, 200);
    assert_eq!(after_h.vms_destroyed - before_h.vms_destroyed, 200);
    assert_eq!(after_h.vms_alive, 0);
    assert_eq!(
        after_h.asids_in_use, 0,
        "ASIDs bound after every VM was destroyed"
    );
    assert_eq!(after_h.files_tracked, before_h.files_tracked);
    assert_eq!(
        after_p, before_p,
        "fds, memfds, memfd mappings or threads leaked"
    );
}
