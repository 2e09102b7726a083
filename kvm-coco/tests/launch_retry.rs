//! QEMU's production behaviours in the launcher, exercised through real system calls: the
//! software host's fault plan makes the served `/dev/kvm` answer with the kernel's transient
//! answers — `EAGAIN` before any progress, partial progress written back with `EAGAIN`,
//! `EBUSY` — and the trace (one JSON line per served call) shows what the launcher issued.
//! The launches still end with the measurement the independent tools give (sev-snp-measure's
//! committed vectors, mrtd_ref.py's MRTD), read from the guest's own report or TDREPORT.
//!
//! The host writes a call's trace line after it answered the call: the trace is read once
//! the host is stopped (its workers done), and, since the lines are not in call order (the
//! caller's next call can be traced first), the checks match calls by their arguments, not
//! by their position.

#[path = "measure_common/mod.rs"]
mod measure_common;

use std::fs::File;
use std::io::Read;

use kvm_coco::launch::{
    InitParams, KvmBackend, Launch, LaunchError, MAX_RETRIES, SnpInit, TdxInit,
};
use kvm_coco::measure::{FirmwareImage, LaunchPlan, PageKind};
use kvm_coco::ops::FirmwareStatus;
use kvm_coco::sim::host::SoftwareHost;
use kvm_coco::{Kvm, VmType};
use kvm_coco_uapi::SevRetCode;
use measure_common::{SYN64K_MRTD, amd_inputs, offline, ssm_output};
use serde_json::Value;

/// Shared RAM for the guests' report and quote messages.
const SHARED: u64 = 0x100_0000;

/// A software host with the fault plan `faults` serving this test's thread, writing its trace
/// to a fresh file named after `tag`, and that file opened for reading (before the thread is
/// served: once the host is stopped, the thread's `open` calls get `ENOSYS`). Fails (never
/// skips) where seccomp user notification is refused: every machine this project runs on has
/// it.
fn served(faults: &str, tag: &str) -> (SoftwareHost, File) {
    let path = measure_common::scratch(&format!("launch_retry_{tag}")).join("trace.jsonl");
    let host = SoftwareHost::builder()
        .seed(1)
        .faults(faults.parse().unwrap())
        .trace(&path)
        .start()
        .unwrap();
    let trace = File::open(&path).unwrap();
    host.serve_current_thread()
        .expect("seccomp user notification is required by the software host");
    (host, trace)
}

/// Stops `host` (every call answered is then traced) and returns the trace lines of
/// `subcommand` (the `KVM_MEMORY_ENCRYPT_OP` sub-command's kernel name). The thread makes
/// no served call afterwards.
fn trace_of(host: SoftwareHost, mut trace: File, subcommand: &str) -> Vec<Value> {
    drop(host);
    let mut text = String::new();
    trace.read_to_string(&mut text).unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["subcommand"] == subcommand)
        .collect()
}

/// Whether a trace line is a call answered with `errno` (by name).
fn failed_with(line: &Value, errno: &str) -> bool {
    line["errno"]
        .as_str()
        .is_some_and(|e| e.starts_with(&format!("{errno} ")))
}

/// Whether a trace line is a call answered with success.
fn succeeded(line: &Value) -> bool {
    line["errno"].is_null() && line["result"] == 0
}

/// A little-endian `u64` at `off` of a trace line's argument (hex): as the caller passed it
/// (`arg_before`) or as the host wrote it back (`arg_after`).
fn arg_u64(line: &Value, which: &str, off: usize) -> u64 {
    let arg = hex::decode(line[which].as_str().unwrap()).unwrap();
    u64::from_le_bytes(arg[off..off + 8].try_into().unwrap())
}

/// Checks that populate calls answered `EAGAIN` after one page (at most one page per call)
/// wrote that progress back and that the caller's next call resumed exactly there: `pos`
/// and `count` are the offsets in the argument of the start and of the amount left, whose
/// units are `unit` and `count_unit` bytes. Every call starts at a different place.
fn check_resumed(calls: &[Value], pos: usize, unit: u64, count: usize, count_unit: u64) {
    let start = |l: &Value| arg_u64(l, "arg_before", pos);
    let mut starts: Vec<u64> = calls.iter().map(start).collect();
    starts.sort_unstable();
    starts.dedup();
    assert_eq!(starts.len(), calls.len(), "a page was issued twice");
    for l in calls.iter().filter(|l| failed_with(l, "EAGAIN")) {
        let (s0, n0) = (start(l), arg_u64(l, "arg_before", count));
        let (s1, n1) = (arg_u64(l, "arg_after", pos), arg_u64(l, "arg_after", count));
        assert_eq!((s1, n1), (s0 + 4096 / unit, n0 - 4096 / count_unit), "{l}");
        let next = calls
            .iter()
            .find(|m| start(m) == s1)
            .unwrap_or_else(|| panic!("no call resumed after {l}"));
        assert_eq!(arg_u64(next, "arg_before", count), n1, "{next}");
    }
}

/// Pages a plan adds with populate commands (its VMSAs are not among them), and the number of
/// populate steps.
fn populated(plan: &LaunchPlan<'_>) -> (usize, usize) {
    let steps: Vec<_> = plan
        .steps
        .iter()
        .filter(|s| s.kind != PageKind::Vmsa)
        .collect();
    let pages = steps.iter().map(|s| (s.len / 4096) as usize).sum();
    (pages, steps.len())
}

/// A TDX launch of SYN64K on the served thread; on success, the log is checked against the
/// offline one and the TD's own TDREPORT must carry mrtd_ref.py's MRTD.
fn tdx_run(host: &SoftwareHost) -> Result<(), LaunchError> {
    let img = measure_common::syn64k();
    let fw = FirmwareImage::parse(&img).unwrap();
    let plan = LaunchPlan::tdx(&fw).unwrap();
    let off = offline(&plan);
    let backend = KvmBackend::new(&Kvm::open().unwrap(), VmType::Tdx).unwrap();
    let mut launch = Launch::new(backend, InitParams::Tdx(TdxInit::default()))?;
    launch.add_plan_memory(&plan).unwrap();
    launch.add_memory(SHARED, 0x8000).unwrap();
    launch.create_vcpu(0).unwrap();
    let mut started = launch.start().unwrap();
    started.add_plan(&plan)?;
    let done = started.measure().unwrap().finish()?;
    assert_eq!(done.log().diff(off.log.as_ref().unwrap()), None);
    let (mut backend, mut vcpus) = done.into_parts();
    let report =
        measure_common::guest_td_report(host, &mut backend, &mut vcpus[0], SHARED, [0x3c; 64]);
    assert_eq!(
        hex::encode(report.td_info.mrtd),
        SYN64K_MRTD,
        "the TD's own MRTD vs mrtd_ref.py"
    );
    Ok(())
}

fn tdx_plan_pages() -> (usize, usize) {
    let img = measure_common::syn64k();
    let fw = FirmwareImage::parse(&img).unwrap();
    populated(&LaunchPlan::tdx(&fw).unwrap())
}

#[test]
fn tdx_populate_survives_partial_progress() {
    // Every INIT_MEM_REGION adds at most one page, then EAGAIN with the progress written back.
    let (host, trace) = served("init_mem_region:partial=1", "tdx_partial");
    tdx_run(&host).unwrap();
    let (pages, steps) = tdx_plan_pages();
    let calls = trace_of(host, trace, "KVM_TDX_INIT_MEM_REGION");
    assert_eq!(calls.len(), pages, "one call per page");
    let eagain = calls.iter().filter(|l| failed_with(l, "EAGAIN")).count();
    assert_eq!(
        eagain,
        pages - steps,
        "EAGAIN on every call but a region's last"
    );
    assert!(calls.iter().all(|l| l["fault"] == "partial=1"));
    // struct kvm_tdx_init_mem_region: source_addr, gpa (bytes), nr_pages.
    check_resumed(&calls, 8, 1, 16, 4096);
}

#[test]
fn tdx_populate_survives_eagain_and_partial_progress() {
    // EAGAIN before any progress on about a third of the calls, one page per call otherwise.
    let (host, trace) = served(
        "init_mem_region:eagain%30,init_mem_region:partial=1",
        "tdx_eagain_partial",
    );
    tdx_run(&host).unwrap();
    let (pages, _) = tdx_plan_pages();
    let calls = trace_of(host, trace, "KVM_TDX_INIT_MEM_REGION");
    let no_progress = calls.iter().filter(|l| l["fault"] == "eagain").count();
    assert!(no_progress > 0, "the plan injected EAGAIN before progress");
    assert!(
        calls
            .iter()
            .filter(|l| l["fault"] == "eagain")
            .all(|l| failed_with(l, "EAGAIN"))
    );
    assert_eq!(calls.len(), pages + no_progress, "EAGAIN calls come on top");
}

#[test]
fn tdx_populate_survives_eintr_after_progress() {
    let (host, trace) = served("init_mem_region:eintr@2", "tdx_eintr");
    tdx_run(&host).unwrap();
    let calls = trace_of(host, trace, "KVM_TDX_INIT_MEM_REGION");
    assert!(calls.iter().any(|l| failed_with(l, "EINTR")));
}

#[test]
fn tdx_init_vm_eagain_is_retried() {
    let (host, trace) = served("init_vm:eagain@1", "tdx_init_vm_eagain");
    tdx_run(&host).unwrap();
    let calls = trace_of(host, trace, "KVM_TDX_INIT_VM");
    assert_eq!(calls.len(), 2, "{calls:?}");
    let again = |l: &&Value| failed_with(l, "EAGAIN") && l["fault"] == "eagain";
    assert_eq!(calls.iter().filter(again).count(), 1, "{calls:?}");
    assert_eq!(
        calls.iter().filter(|l| succeeded(l)).count(),
        1,
        "{calls:?}"
    );
}

#[test]
fn tdx_init_vm_eagain_three_times_is_retried() {
    let (host, trace) = served(
        "init_vm:eagain@1,init_vm:eagain@2,init_vm:eagain@3",
        "tdx_init_vm_eagain3",
    );
    tdx_run(&host).unwrap();
    let calls = trace_of(host, trace, "KVM_TDX_INIT_VM");
    assert_eq!(calls.len(), 4, "{calls:?}");
    let again = calls.iter().filter(|l| failed_with(l, "EAGAIN")).count();
    assert_eq!(again, 3, "{calls:?}");
    assert_eq!(
        calls.iter().filter(|l| succeeded(l)).count(),
        1,
        "{calls:?}"
    );
}

#[test]
fn tdx_init_vm_that_stays_busy_gives_up_after_max_retries() {
    let (host, trace) = served("init_vm:eagain", "tdx_init_vm_busy");
    match tdx_run(&host).unwrap_err() {
        LaunchError::Busy {
            command,
            tries,
            source,
        } => {
            assert_eq!((command, tries), ("KVM_TDX_INIT_VM", MAX_RETRIES));
            assert_eq!(source.errno.raw(), libc::EAGAIN);
        }
        other => panic!("{other}"),
    }
    let calls = trace_of(host, trace, "KVM_TDX_INIT_VM");
    assert_eq!(calls.len(), MAX_RETRIES as usize);
    assert!(calls.iter().all(|l| failed_with(l, "EAGAIN")));
}

#[test]
fn tdx_capabilities_are_read_once_when_the_module_s_leaves_fit() {
    let (host, trace) = served("", "tdx_caps_fit");
    tdx_run(&host).unwrap();
    let leaves = host
        .tdx_module()
        .lock()
        .unwrap()
        .config()
        .num_cpuid_config();
    assert!(leaves <= kvm_coco::launch::TDX_CAPS_INITIAL_ENTRIES);
    let calls = trace_of(host, trace, "KVM_TDX_CAPABILITIES");
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(succeeded(&calls[0]));
}

/// The `KVM_TDX_CAPABILITIES` trace of a launch whose capability reads fail with `E2BIG`
/// until the buffer holds 64 entries: the launcher doubles from 8.
#[test]
fn tdx_capabilities_grow_on_e2big() {
    let (host, trace) = served(
        "capabilities:e2big@1,capabilities:e2big@2,capabilities:e2big@3",
        "tdx_caps_grow",
    );
    tdx_run(&host).unwrap();
    let calls = trace_of(host, trace, "KVM_TDX_CAPABILITIES");
    assert_eq!(calls.len(), 4, "8 → 16 → 32 → 64 entries");
    let e2big = calls.iter().filter(|l| failed_with(l, "E2BIG")).count();
    assert_eq!(e2big, 3, "{calls:?}");
    assert_eq!(
        calls.iter().filter(|l| succeeded(l)).count(),
        1,
        "{calls:?}"
    );
}

#[test]
fn tdx_capabilities_beyond_256_entries_surface_e2big() {
    let (host, trace) = served("capabilities:e2big", "tdx_caps_e2big");
    let e = tdx_run(&host).unwrap_err();
    assert_eq!(e.errno().map(|e| e.raw()), Some(libc::E2BIG));
    // 8, 16, 32, 64, 128 and 256 entries.
    assert_eq!(trace_of(host, trace, "KVM_TDX_CAPABILITIES").len(), 6);
}

#[test]
fn tdx_finalize_vm_ebusy_is_retried() {
    let (host, trace) = served("finalize_vm:busy@1", "tdx_finalize_busy");
    tdx_run(&host).unwrap();
    let calls = trace_of(host, trace, "KVM_TDX_FINALIZE_VM");
    assert_eq!(calls.len(), 2, "{calls:?}");
    let busy = |l: &&Value| failed_with(l, "EBUSY") && l["fault"] == "busy";
    assert_eq!(calls.iter().filter(busy).count(), 1, "{calls:?}");
    assert_eq!(
        calls.iter().filter(|l| succeeded(l)).count(),
        1,
        "{calls:?}"
    );
}

#[test]
fn tdx_populate_that_stays_busy_gives_up() {
    let (host, trace) = served("init_mem_region:eagain", "tdx_populate_busy");
    match tdx_run(&host).unwrap_err() {
        LaunchError::Busy {
            command, source, ..
        } => {
            assert_eq!(command, "KVM_TDX_INIT_MEM_REGION");
            assert_eq!(source.errno.raw(), libc::EAGAIN);
        }
        other => panic!("{other}"),
    }
    let calls = trace_of(host, trace, "KVM_TDX_INIT_MEM_REGION");
    assert_eq!(calls.len(), MAX_RETRIES as usize);
    assert!(calls.iter().all(|l| failed_with(l, "EAGAIN")));
}

#[test]
fn a_kernel_that_stops_early_is_reported() {
    let (host, _) = served("init_mem_region:stall", "tdx_stuck");
    assert!(matches!(
        tdx_run(&host),
        Err(LaunchError::IncompleteRange {
            command: "KVM_TDX_INIT_MEM_REGION",
            ..
        })
    ));
}

#[test]
fn an_snp_kernel_that_stops_early_is_reported() {
    let (host, _) = served("snp_launch_update:stall", "snp_stuck");
    assert!(matches!(
        snp_run(&host, "syn64k.fd"),
        Err(LaunchError::IncompleteRange {
            command: "KVM_SEV_SNP_LAUNCH_UPDATE",
            ..
        })
    ));
}

/// sev-snp-measure's measurement of the synthetic image `image` for one EPYC-v4 vCPU
/// (for SYN64K: facts §8.2, row 1).
fn snp_expected(image: &str) -> String {
    ssm_output(&[
        "--mode",
        "snp",
        "--vcpus",
        "1",
        "--vcpu-type",
        "EPYC-v4",
        "--ovmf",
        image,
    ])
}

/// An SNP launch of the synthetic image `image` (`syn64k.fd`, `syn128k.fd`) on the served
/// thread; on success the log is checked against the offline one, and the measurement in
/// the guest's own report must be sev-snp-measure's. Returns the plan's populated pages and
/// steps.
fn snp_run(host: &SoftwareHost, image: &str) -> Result<(usize, usize), LaunchError> {
    let (_, img) = measure_common::synthetic_images()
        .into_iter()
        .find(|(name, _)| *name == image)
        .unwrap();
    let fw = FirmwareImage::parse(&img).unwrap();
    let inputs = amd_inputs(&fw, 1, "EPYC-v4");
    let plan = LaunchPlan::snp(&inputs).unwrap();
    let off = offline(&plan);
    assert_eq!(off.digest.to_string(), snp_expected(image));
    let backend = KvmBackend::new(&Kvm::open().unwrap(), VmType::Snp).unwrap();
    let mut launch = Launch::new(backend, InitParams::Snp(SnpInit::default()))?;
    launch.add_plan_memory(&plan).unwrap();
    launch.add_memory(SHARED, 0x8000).unwrap();
    launch.create_vcpu(0).unwrap();
    let mut started = launch.start()?;
    started.add_plan(&plan)?;
    let done = started.measure()?.finish()?;
    assert_eq!(done.log().diff(off.log.as_ref().unwrap()), None);
    let (_backend, mut vcpus) = done.into_parts();
    let report = measure_common::guest_snp_report(host, &mut vcpus[0], [0xc3; 64]);
    assert_eq!(
        hex::encode(report.measurement),
        snp_expected(image),
        "the guest's report vs sev-snp-measure"
    );
    Ok(populated(&plan))
}

#[test]
fn snp_one_page_per_launch_update_still_measures_what_sev_snp_measure_expects() {
    // Every SNP_LAUNCH_UPDATE does at most one page, then EAGAIN with the progress written
    // back.
    let (host, trace) = served("snp_launch_update:partial=1", "snp_partial");
    let (pages, steps) = snp_run(&host, "syn64k.fd").unwrap();
    let calls = trace_of(host, trace, "KVM_SEV_SNP_LAUNCH_UPDATE");
    assert_eq!(calls.len(), pages, "one call per page");
    assert!(calls.iter().all(|l| l["fault"] == "partial=1"));
    let retried: Vec<_> = calls.iter().filter(|l| failed_with(l, "EAGAIN")).collect();
    assert_eq!(
        retried.len(),
        pages - steps,
        "EAGAIN on every call but a region's last"
    );
    assert!(retried.len() > 1, "several partial calls");
    // struct kvm_sev_snp_launch_update: gfn_start (pages), uaddr, len (bytes).
    check_resumed(&calls, 0, 4096, 16, 1);
}

// EAGAIN after progress is not a retry of the same work: a region populated one page per call
// completes whatever its size, and only EAGAIN without progress counts towards MAX_RETRIES.

#[test]
fn snp_one_page_per_launch_update_on_a_32_page_region() {
    // SYN128K's firmware volume is one 32-page region.
    let (host, trace) = served("snp_launch_update:partial=1", "snp_partial_128k");
    let (pages, _) = snp_run(&host, "syn128k.fd").unwrap();
    assert_eq!(
        trace_of(host, trace, "KVM_SEV_SNP_LAUNCH_UPDATE").len(),
        pages
    );
}

#[test]
fn snp_populate_retries_eagain_before_progress() {
    let (host, trace) = served("snp_launch_update:eagain%30", "snp_eagain");
    let (_, steps) = snp_run(&host, "syn128k.fd").unwrap();
    let calls = trace_of(host, trace, "KVM_SEV_SNP_LAUNCH_UPDATE");
    let again = calls.iter().filter(|l| l["fault"] == "eagain").count();
    assert!(again > 0, "the plan injected EAGAIN");
    assert!(
        calls
            .iter()
            .filter(|l| l["fault"] == "eagain")
            .all(|l| failed_with(l, "EAGAIN") && l["arg_after"] == l["arg_before"])
    );
    assert_eq!(
        calls.len(),
        steps + again,
        "one call per region, EAGAIN on top"
    );
}

#[test]
fn snp_populate_survives_eagain_and_partial_progress() {
    let (host, trace) = served(
        "snp_launch_update:eagain%30,snp_launch_update:partial=1",
        "snp_eagain_partial",
    );
    let (pages, _) = snp_run(&host, "syn64k.fd").unwrap();
    let calls = trace_of(host, trace, "KVM_SEV_SNP_LAUNCH_UPDATE");
    let no_progress = calls.iter().filter(|l| l["fault"] == "eagain").count();
    assert!(no_progress > 0, "the plan injected EAGAIN before progress");
    assert_eq!(calls.len(), pages + no_progress, "EAGAIN calls come on top");
}

#[test]
fn snp_firmware_errors_are_not_retried() {
    // A firmware status (INVALID_PAGE_STATE, 0x1A) ends the launch with the kernel's EIO.
    let (host, trace) = served("snp_launch_update:fw=0x1a@2", "snp_fw");
    match snp_run(&host, "syn64k.fd").unwrap_err() {
        LaunchError::Command(e) => {
            assert_eq!(e.command, "KVM_SEV_SNP_LAUNCH_UPDATE");
            assert_eq!(e.errno.raw(), libc::EIO);
            assert_eq!(
                e.firmware,
                FirmwareStatus::Sev(SevRetCode::InvalidPageState)
            );
        }
        other => panic!("{other}"),
    }
    let calls = trace_of(host, trace, "KVM_SEV_SNP_LAUNCH_UPDATE");
    assert_eq!(calls.len(), 2);
    let failed: Vec<_> = calls.iter().filter(|l| failed_with(l, "EIO")).collect();
    assert_eq!(failed.len(), 1, "{calls:?}");
    assert_eq!(failed[0]["fw_error"], 0x1a);
    assert_eq!(failed[0]["fault"], "fw=0x1a");
}
