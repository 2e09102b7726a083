//! A full SNP launch of a 4 GiB guest with Debian's OVMF through `KvmBackend` on a thread
//! served by the software host, for the memory figures: run it in release with
//! `cargo test -p kvm-coco --release --test launch_big -- --ignored --nocapture`
//! (optionally under `/usr/bin/time -v`). It checks the measurement in the guest's own
//! report against sev-snp-measure and the peak RSS against the guest size + 64 MiB, and
//! prints the wall time and the peak RSS (`VmHWM`).

#[path = "measure_common/mod.rs"]
mod measure_common;

use std::time::Instant;

use kvm_coco::measure::{FirmwareImage, LaunchPlan};
use kvm_coco::sim::host::SoftwareHost;

const GIB: u64 = 1 << 30;

/// A software host serving this test's thread. Fails (never skips) where seccomp user
/// notification is refused: every machine this project runs on has it.
fn served() -> SoftwareHost {
    let host = SoftwareHost::builder().seed(1).start().unwrap();
    host.serve_current_thread()
        .expect("seccomp user notification is required by the software host");
    host
}

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

#[test]
#[ignore = "memory measurement; run in release with --ignored"]
fn snp_4gib_ovmf_launch() {
    let Some((_, img)) = measure_common::debian_ovmf() else {
        return;
    };
    let host = served();
    let t0 = Instant::now();
    let fw = FirmwareImage::parse(&img).unwrap();
    let inputs = measure_common::amd_inputs(&fw, 4, "EPYC-Milan");
    let plan = LaunchPlan::snp(&inputs).unwrap();
    let off = measure_common::offline(&plan);
    // sev-snp-measure --mode snp --vcpus 4 --vcpu-type EPYC-Milan --guest-features 0x1
    // --ovmf OVMF.fd (kvm-coco/tests/vectors/sev-snp-measure.json).
    let expected = "e9c10ab98f8086bf4a4993dcdc1f768b1128bcb02301d1791f1d3274329e790db2d12a301d66d99a462a13b5d87e2840";
    assert_eq!(off.digest.to_string(), expected);
    let t_plan = t0.elapsed();
    let before = vm_hwm_kib();

    // 4 GiB of RAM: 3 GiB below the PCI hole, 1 GiB above 4 GiB; the flash below 4 GiB.
    let fw_len = img.len() as u64;
    let t1 = Instant::now();
    let launch = measure_common::snp_4gib_launch(&plan, fw_len);
    let t_launch = t1.elapsed();
    assert_eq!(launch.log().diff(off.log.as_ref().unwrap()), None);
    let entries = launch.log().entries.len();
    let (_backend, mut vcpus) = launch.into_parts();
    let report = measure_common::guest_snp_report(&host, &mut vcpus[0], [0x4b; 64]);
    assert_eq!(
        hex::encode(report.measurement),
        expected,
        "the guest's report vs sev-snp-measure"
    );
    let hwm = vm_hwm_kib();
    println!(
        "SNP 4 GiB guest, OVMF {} KiB, {} log entries: plan+offline {:?}, launch {:?}; \
         VmHWM {} MiB (before launch {} MiB)",
        fw_len / 1024,
        entries,
        t_plan,
        t_launch,
        hwm / 1024,
        before / 1024
    );
    assert!(hwm * 1024 <= 4 * GIB + 64 * (1 << 20), "peak RSS {hwm} KiB");
}
