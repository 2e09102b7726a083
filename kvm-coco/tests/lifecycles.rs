//! VM lifecycles under faults: many SEV, SEV-ES, SNP and TDX lifecycles — create, launch
//! through [`KvmBackend`] / [`Launch`], run the guest to its measurement, destroy — through
//! one in-process software host, across threads, while the host's fault plan makes the
//! firmware busy or fail and the kernel answer `EAGAIN`, partial progress, `EINTR` and
//! `E2BIG`, and some VMMs drop everything mid-launch.
//!
//! Afterwards: no ASID, fd, memfd, memfd mapping or thread has leaked; every VM ended
//! finished or failed with the typed error its injected fault gives; every measurement the
//! platform reported equals the offline one (`kvm_coco::measure::measure` of the same plan),
//! which itself equals the independent tools' value for the SYN64K image (facts
//! firmware-and-measurement §8.2; mrtd_ref.py for TDX). For SNP the value compared is the
//! guest report's MEASUREMENT, for TDX the TDREPORT's MRTD, for SEV and SEV-ES the
//! LAUNCH_MEASURE HMAC recomputed over the offline digest (facts §1.4).
//!
//! The test runs 1,000 lifecycles (25 to 55 s in a debug build on two shared cores);
//! `KVM_COCO_LIFECYCLES` sets another count. `--nocapture` shows the throughput and the
//! peak RSS.

#[path = "measure_common/mod.rs"]
mod measure_common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use kvm_coco::launch::{
    InitParams, KvmBackend, Launch, LaunchError, PlatformMeasurement, SevEsInit, SevInit, SnpInit,
    TdxInit,
};
use kvm_coco::measure::synthetic::syn64k;
use kvm_coco::measure::{FirmwareImage, LaunchPlan, MeasureOptions, PageKind, measure};
use kvm_coco::ops::FirmwareStatus;
use kvm_coco::sim::guest::{GuestOp, GuestOutcome};
use kvm_coco::sim::host::{HostStats, SoftwareHost};
use kvm_coco::{Access, Exit, Kvm, MapGpaReply, SystemEvent, TdVmCallStatus, TdxExit, VmType};
use kvm_coco_uapi::SevRetCode;
use sha2::Sha256;

/// sev-snp-measure on SYN64K (facts firmware-and-measurement §8.2): `--mode snp --vcpus 1
/// --vcpu-type EPYC-v4`, `--mode seves --vcpus 1 --vcpu-type EPYC-v4`, `--mode sev`.
const SYN64K_SNP: &str = "54d686bed4f38e22c5e3ec6b7fdbd7288e0c4175469bf7274fcbe4ab5837f97804371497a3ce833231b857a75e3054f2";
const SYN64K_SEV_ES: &str = "e9dc93820dc36074d4e54cdef031274e31ff46a918309ccb831f4da87f62ff95";
const SYN64K_SEV: &str = "dac893496e53bf1a5643d761be49395899612ebe0178de53d93e1d6c373736fb";
/// mrtd_ref.py (`kvm-coco/tests/mrtd_ref.py syn64k.fd`, the facts §5.1 algorithm).
const SYN64K_MRTD: &str = "dfb85dc63e40eab239d42d76516df3f7f7aa1489f6808288ab749ff89ba9db3d965d8e5924fc07bb3e30360ad5583d24";

/// Shared RAM for the guests' report and quote messages.
const SHARED: u64 = 0x100_0000;

/// SEV-ES guest policy: the ES bit (facts §1.3).
const SEV_ES_POLICY: u32 = 0x4;

/// The fault plan: transient answers the launcher must ride out (partial progress, `EAGAIN`,
/// `EINTR`, `E2BIG`, `EBUSY` on FINALIZE) and failures it must report with a typed error
/// (firmware statuses, `EBUSY` where the launcher does not retry).
const FAULTS: &str = "snp_launch_update:partial=1%20,snp_launch_update:eagain%10,\
    init_mem_region:partial=1%20,init_mem_region:eagain%10,init_mem_region:eintr%5,\
    init_vm:eagain%20,finalize_vm:busy%20,capabilities:e2big%20,\
    launch_update_data:fw=0x13%4,snp_launch_finish:fw=0xb%4,launch_start:busy%3,\
    launch_measure:busy%3";

/// The typed errors the plan's failing rules give: (sub-command, errno, firmware status).
/// HWERROR_PLATFORM 0x13 and BAD_MEASUREMENT 0x0B (facts §1.2) come with `EIO`
/// (linux-uapi §3.1 rule 6); `EBUSY` without a firmware call.
fn expected_failure(e: &LaunchError) -> Option<&'static str> {
    let LaunchError::Command(c) = e else {
        return None;
    };
    let fw = |s: u32| FirmwareStatus::Sev(SevRetCode::from_raw(s));
    match (c.command, c.errno.raw()) {
        ("KVM_SEV_LAUNCH_UPDATE_DATA", libc::EIO) if c.firmware == fw(0x13) => {
            Some("LAUNCH_UPDATE_DATA: firmware HWERROR_PLATFORM")
        }
        ("KVM_SEV_SNP_LAUNCH_FINISH", libc::EIO) if c.firmware == fw(0x0b) => {
            Some("SNP_LAUNCH_FINISH: firmware BAD_MEASUREMENT")
        }
        ("KVM_SEV_LAUNCH_START", libc::EBUSY) if c.firmware == FirmwareStatus::None => {
            Some("LAUNCH_START: EBUSY")
        }
        ("KVM_SEV_LAUNCH_MEASURE", libc::EBUSY) if c.firmware == FirmwareStatus::None => {
            Some("LAUNCH_MEASURE: EBUSY")
        }
        _ => None,
    }
}

/// Where a VMM drops everything (VM, vCPUs, memory) mid-launch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Abandon {
    /// Never: the lifecycle runs to the guest's measurement.
    Never,
    /// After INIT (INIT2 / INIT_VM) and the memory.
    AfterInit,
    /// After LAUNCH_START (for TDX: the vCPUs initialized).
    AfterStart,
    /// After the first measured region.
    AfterFirstRegion,
    /// After LAUNCH_MEASURE (SEV-ES: after the VMSAs), before LAUNCH_FINISH.
    AfterMeasure,
}

/// How a lifecycle ended.
#[derive(Debug)]
enum Ended {
    /// Finished, and the platform's measurement matched the offline one.
    Finished,
    /// Dropped by the VMM at the given point.
    Dropped,
    /// Failed with a typed error the fault plan explains (its description).
    Failed(&'static str),
}

/// The plans of SYN64K for each technology, with their offline measurements.
struct Plans {
    img: Vec<u8>,
}

fn plan_of<'a>(fw: &'a FirmwareImage<'a>, vm_type: VmType) -> LaunchPlan<'a> {
    let inputs = kvm_coco::measure::plan::PlanInputs {
        vcpus: 1,
        vcpu_sig: kvm_coco::measure::vcpu::cpu_type_sig("EPYC-v4"),
        ..kvm_coco::measure::plan::PlanInputs::new(fw)
    };
    match vm_type {
        VmType::Sev => LaunchPlan::sev(&inputs).unwrap(),
        VmType::SevEs => LaunchPlan::sev_es(&inputs).unwrap(),
        VmType::Snp => LaunchPlan::snp(&inputs).unwrap(),
        _ => LaunchPlan::tdx(fw).unwrap(),
    }
}

fn offline(plan: &LaunchPlan<'_>) -> Vec<u8> {
    measure(
        plan,
        &MeasureOptions {
            log: false,
            progress: None,
        },
    )
    .unwrap()
    .digest
    .as_bytes()
    .to_vec()
}

/// Firmware version from `/dev/sev` PLATFORM_STATUS (the LAUNCH_MEASURE HMAC's input).
fn fw_version() -> [u8; 3] {
    use psp_driver::Platform;
    let st = psp_driver::DevSev::open()
        .unwrap()
        .platform_status()
        .unwrap();
    [st.api_major, st.api_minor, st.build]
}

/// `LAUNCH_MEASURE` = HMAC-SHA256(TIK, 0x04 ‖ API_MAJOR ‖ API_MINOR ‖ BUILD ‖ POLICY ‖ LD ‖
/// MNONCE), TIK = 0 without a session (facts §1.4, §1.5).
fn launch_measure_hmac(fw: [u8; 3], policy: u32, ld: &[u8], mnonce: &[u8; 16]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(&[0u8; 16]).unwrap();
    mac.update(&[0x04, fw[0], fw[1], fw[2]]);
    mac.update(&policy.to_le_bytes());
    mac.update(ld);
    mac.update(mnonce);
    mac.finalize().into_bytes().into()
}

/// The SNP report's MEASUREMENT the guest behind `vcpu` obtains.
fn snp_measurement(host: &SoftwareHost, vcpu: &mut kvm_coco::Vcpu) -> [u8; 48] {
    host.load_program(
        &*vcpu,
        [
            GuestOp::SnpReport {
                report_data: [0x5a; 64],
                certs_gpa: 0,
                npages: 0,
            },
            GuestOp::Terminate { code: 0 },
        ],
    )
    .unwrap();
    match vcpu.run().unwrap() {
        Exit::SystemEvent(SystemEvent::SevTerm { .. }) => {}
        other => panic!("unexpected exit {other:?}"),
    }
    let report = host
        .outcomes(&*vcpu)
        .unwrap()
        .into_iter()
        .find_map(|o| match o {
            GuestOutcome::SnpReport {
                report: Some(r), ..
            } => Some(r),
            _ => None,
        })
        .expect("the guest obtained its report");
    // ATTESTATION_REPORT: MEASUREMENT at 0x90, 48 bytes (facts §3.7).
    report[0x90..0xC0].try_into().unwrap()
}

/// The MRTD of the TDREPORT the TD behind `vcpu` obtains (GetQuote over two shared pages).
fn td_mrtd(host: &SoftwareHost, backend: &mut KvmBackend, vcpu: &mut kvm_coco::Vcpu) -> [u8; 48] {
    use kvm_coco::launch::backend::Backend;
    host.load_program(
        &*vcpu,
        [
            GuestOp::MapGpa {
                gpa: SHARED,
                npages: 2,
                private: false,
            },
            GuestOp::GetQuote {
                gpa: SHARED,
                size: 0x2000,
                report_data: [0xa5; 64],
            },
            GuestOp::Terminate { code: 0 },
        ],
    )
    .unwrap();
    for _ in 0..8 {
        match vcpu.run().unwrap() {
            Exit::MapGpaRange(mut m) => {
                backend
                    .set_private(m.gpa, m.size(), m.access() == Access::Private)
                    .unwrap();
                m.reply(MapGpaReply::Success);
            }
            Exit::Tdx(TdxExit::GetQuote(mut q)) => q.reply(TdVmCallStatus::Success),
            Exit::SystemEvent(SystemEvent::TdxFatal { .. }) => break,
            other => panic!("unexpected exit {other:?}"),
        }
    }
    let report = host
        .outcomes(&*vcpu)
        .unwrap()
        .into_iter()
        .find_map(|o| match o {
            GuestOutcome::TdReport(r) => Some(r),
            _ => None,
        })
        .expect("the TD obtained its TDREPORT");
    match PlatformMeasurement::from_td_report(&report) {
        Some(PlatformMeasurement::TdReport(m)) => m,
        other => panic!("{other:?}"),
    }
}

/// One lifecycle: create, launch SYN64K, run the guest to its measurement, destroy (on
/// return everything is dropped). `Err` is the launch's typed error.
fn lifecycle(
    host: &SoftwareHost,
    plans: &Plans,
    vm_type: VmType,
    drop_at: Abandon,
    fw: [u8; 3],
) -> Result<Ended, LaunchError> {
    let fwi = FirmwareImage::parse(&plans.img).unwrap();
    let plan = plan_of(&fwi, vm_type);
    let expected = offline(&plan);
    let params = match vm_type {
        VmType::Sev => InitParams::Sev(SevInit::default()),
        VmType::SevEs => InitParams::SevEs(SevEsInit {
            policy: SEV_ES_POLICY,
            ..SevEsInit::default()
        }),
        VmType::Snp => InitParams::Snp(SnpInit::default()),
        _ => InitParams::Tdx(TdxInit::default()),
    };
    let kvm = Kvm::open().unwrap();
    let backend = KvmBackend::new(&kvm, vm_type).unwrap();
    let mut launch = Launch::new(backend, params)?;
    launch.add_plan_memory(&plan).unwrap();
    launch.add_memory(SHARED, 0x8000).unwrap();
    launch.create_vcpu(0).unwrap();
    if drop_at == Abandon::AfterInit {
        return Ok(Ended::Dropped);
    }
    let mut started = launch.start()?;
    if drop_at == Abandon::AfterStart {
        return Ok(Ended::Dropped);
    }
    if drop_at == Abandon::AfterFirstRegion {
        let first = plan
            .steps
            .iter()
            .find(|s| s.kind != PageKind::Vmsa)
            .unwrap();
        started.add(first)?;
        return Ok(Ended::Dropped);
    }
    started.add_plan(&plan)?;
    let measured = started.measure()?;
    if drop_at == Abandon::AfterMeasure {
        return Ok(Ended::Dropped);
    }
    let done = measured.finish()?;
    match vm_type {
        VmType::Sev | VmType::SevEs => {
            let policy = if vm_type == VmType::SevEs {
                SEV_ES_POLICY
            } else {
                0
            };
            let PlatformMeasurement::LaunchMeasure(m) = done.platform_measurement() else {
                panic!("no LAUNCH_MEASURE for {vm_type:?}");
            };
            assert_eq!(
                m.measure,
                launch_measure_hmac(fw, policy, &expected, &m.mnonce),
                "{vm_type:?}: LAUNCH_MEASURE is not the HMAC over the offline digest"
            );
        }
        VmType::Snp => {
            let (_backend, mut vcpus) = done.into_parts();
            let m = snp_measurement(host, &mut vcpus[0]);
            assert_eq!(m[..], expected[..], "SNP report MEASUREMENT vs offline");
        }
        _ => {
            let (mut backend, mut vcpus) = done.into_parts();
            let m = td_mrtd(host, &mut backend, &mut vcpus[0]);
            assert_eq!(m[..], expected[..], "TDREPORT MRTD vs offline");
        }
    }
    Ok(Ended::Finished)
}

/// Tallies of a run.
#[derive(Debug, Default)]
struct Tally {
    finished: [u64; 4],
    dropped: u64,
    failed: std::collections::BTreeMap<&'static str, u64>,
}

fn type_index(t: VmType) -> usize {
    match t {
        VmType::Sev => 0,
        VmType::SevEs => 1,
        VmType::Snp => 2,
        _ => 3,
    }
}

/// Runs `total` lifecycles on `threads` threads of one host and checks the leak counts,
/// the end states and the measurements. Prints throughput and peak RSS.
fn run(total: u64, threads: u64) {
    // The offline measurements equal the independent tools' values (facts §8.2).
    let plans = Arc::new(Plans { img: syn64k() });
    {
        let fwi = FirmwareImage::parse(&plans.img).unwrap();
        for (t, want) in [
            (VmType::Sev, SYN64K_SEV),
            (VmType::SevEs, SYN64K_SEV_ES),
            (VmType::Snp, SYN64K_SNP),
            (VmType::Tdx, SYN64K_MRTD),
        ] {
            assert_eq!(hex::encode(offline(&plan_of(&fwi, t))), want, "{t:?}");
        }
    }
    let host = Arc::new(
        SoftwareHost::builder()
            .seed(17)
            .faults(FAULTS.parse().unwrap())
            .start()
            .unwrap(),
    );
    let served = {
        let host = host.clone();
        std::thread::spawn(move || {
            host.serve_current_thread()
                .expect("seccomp user notification is required by the software host");
            let fw = fw_version();
            // Warm-up until one lifecycle of each type finished, so that lazily made state
            // (the AMD model, the platform INIT, the TDX module's tables) is in "before".
            for t in [VmType::Sev, VmType::SevEs, VmType::Snp, VmType::Tdx] {
                while !matches!(
                    lifecycle(&host, &plans, t, Abandon::Never, fw),
                    Ok(Ended::Finished)
                ) {}
            }
            assert!(host.settle(Duration::from_secs(10)));
            let before: (measure_common::ProcessCounts, HostStats) =
                (measure_common::process_counts(), host.stats());
            let next = Arc::new(AtomicU64::new(0));
            let tally = Arc::new(Mutex::new(Tally::default()));
            let started = Instant::now();
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    let (host, plans, next, tally) =
                        (host.clone(), plans.clone(), next.clone(), tally.clone());
                    std::thread::spawn(move || {
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            if i >= total {
                                break;
                            }
                            // A mix of the four technologies; one lifecycle in six dropped
                            // at one of four points.
                            let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5eed;
                            x ^= x >> 29;
                            let vm_type = [VmType::Sev, VmType::SevEs, VmType::Snp, VmType::Tdx]
                                [(x % 4) as usize];
                            let drop_at = match (x >> 8) % 24 {
                                0 => Abandon::AfterInit,
                                1 => Abandon::AfterStart,
                                2 => Abandon::AfterFirstRegion,
                                3 => Abandon::AfterMeasure,
                                _ => Abandon::Never,
                            };
                            let ended = match lifecycle(&host, &plans, vm_type, drop_at, fw) {
                                Ok(e) => e,
                                Err(e) => match expected_failure(&e) {
                                    Some(what) => Ended::Failed(what),
                                    None => panic!(
                                        "{vm_type:?} lifecycle {i} failed with an error no \
                                         injected fault explains: {e:?}"
                                    ),
                                },
                            };
                            let mut t = tally.lock().unwrap();
                            match ended {
                                Ended::Finished => t.finished[type_index(vm_type)] += 1,
                                Ended::Dropped => t.dropped += 1,
                                Ended::Failed(what) => *t.failed.entry(what).or_default() += 1,
                            }
                        }
                    })
                })
                .collect();
            for w in workers {
                w.join().unwrap();
            }
            let elapsed = started.elapsed();
            assert!(host.settle(Duration::from_secs(30)), "VMs not destroyed");
            let after = (measure_common::process_counts(), host.stats());
            let tally = std::mem::take(&mut *tally.lock().unwrap());
            (before, after, tally, elapsed)
        })
    };
    let ((before_p, before_h), (after_p, after_h), tally, elapsed) = served.join().unwrap();
    let hwm = measure_common::status_field("VmHWM:");
    eprintln!("lifecycles: before {before_p:?} {before_h:?}");
    eprintln!("lifecycles: after  {after_p:?} {after_h:?}");
    eprintln!(
        "lifecycles: {total} on {threads} threads in {:.1} s = {:.1}/s; finished \
         (SEV, SEV-ES, SNP, TDX) {:?}, dropped mid-launch {}, failed by injected faults {:?}; \
         peak RSS (VmHWM) {hwm} kB",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        tally.finished,
        tally.dropped,
        tally.failed,
    );
    let failed: u64 = tally.failed.values().sum();
    assert_eq!(
        tally.finished.iter().sum::<u64>() + tally.dropped + failed,
        total,
        "every VM ended in a defined state"
    );
    assert_eq!(after_h.vms_created - before_h.vms_created, total);
    assert_eq!(after_h.vms_destroyed - before_h.vms_destroyed, total);
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
    // Every technology finished some lifecycles; faults were injected and reported.
    assert!(tally.finished.iter().all(|&n| n > 0), "{tally:?}");
    assert!(tally.dropped > 0, "{tally:?}");
    if total >= 400 {
        assert_eq!(tally.failed.len(), 4, "every failing rule fired: {tally:?}");
    } else {
        assert!(failed > 0, "{tally:?}");
    }
}

/// `KVM_COCO_LIFECYCLES` lifecycles (default 1,000) on four threads.
#[test]
fn a_thousand_lifecycles_under_faults_leak_nothing_and_measure_what_the_tools_expect() {
    let total = std::env::var("KVM_COCO_LIFECYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    run(total, 4);
}
