//! Launch benchmarks through `KvmBackend` on a thread served by the software host (every
//! launch command a real `/dev/kvm` system call answered by the models), next to the offline
//! measurement of the same plan (the work every launch must at least do: hashing the measured
//! pages) in the same run.
//!
//! - `snp_ovmf_4gib`: a full SNP launch of a 4 GiB guest with Debian's OVMF.fd
//!   (`/usr/share/ovmf/OVMF.fd` or `$KVM_COCO_OVMF`) and 4 vCPUs: INIT2, memory, vCPUs,
//!   LAUNCH_START, every LAUNCH_UPDATE with its log, LAUNCH_FINISH.
//! - `tdx_syn64k`: a TDX launch of the SYN64K image (facts §8.1).
//!
//! Each timed launch runs on a new thread served by a new software host, so that every launch
//! starts from a fresh platform (no ASID, HKID or firmware state left by an earlier one);
//! only the launch itself is timed, not starting the host or tearing the VM down.
//!
//! Run with `cargo bench -p kvm-coco --bench launch`. The software host needs seccomp user
//! notification; where it is refused the benchmark fails.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kvm_coco::launch::{InitParams, KvmBackend, Launch, TdxInit};
use kvm_coco::measure::{FirmwareImage, LaunchPlan, MeasureOptions, measure};
use kvm_coco::sim::host::SoftwareHost;
use kvm_coco::{Kvm, VmType};

#[path = "../tests/measure_common/mod.rs"]
#[allow(missing_docs)]
mod measure_common;

/// Runs `launch` on a new thread served by a new software host; returns how long `launch`
/// took. The launch's result (the VM) is dropped before the thread ends, the host after.
fn on_fresh_host<T>(launch: impl FnOnce() -> T + Send) -> Duration {
    let (elapsed, host) = std::thread::scope(|s| {
        s.spawn(|| {
            let host = SoftwareHost::builder().seed(1).start().unwrap();
            host.serve_current_thread()
                .expect("seccomp user notification is required by the software host");
            let t = Instant::now();
            let done = black_box(launch());
            let elapsed = t.elapsed();
            drop(done);
            (elapsed, host)
        })
        .join()
        .unwrap()
    });
    drop(host);
    elapsed
}

fn snp_ovmf(c: &mut Criterion) {
    let Some((_, img)) = measure_common::debian_ovmf() else {
        eprintln!("snp_ovmf_4gib skipped: Debian OVMF.fd not found");
        return;
    };
    let fw = FirmwareImage::parse(&img).unwrap();
    let inputs = measure_common::amd_inputs(&fw, 4, "EPYC-Milan");
    let plan = LaunchPlan::snp(&inputs).unwrap();
    let fw_len = img.len() as u64;
    let mut g = c.benchmark_group("snp_ovmf_4gib");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(plan.total_len()));
    g.bench_function("host_launch", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| on_fresh_host(|| measure_common::snp_4gib_launch(&plan, fw_len)))
                .sum()
        })
    });
    g.bench_function("offline_measure", |b| {
        b.iter(|| black_box(measure(&plan, &MeasureOptions::default()).unwrap()))
    });
    g.finish();
}

fn tdx_syn64k(c: &mut Criterion) {
    let img = measure_common::syn64k();
    let fw = FirmwareImage::parse(&img).unwrap();
    let plan = LaunchPlan::tdx(&fw).unwrap();
    let launch = || {
        let backend = KvmBackend::new(&Kvm::open().unwrap(), VmType::Tdx).unwrap();
        let mut l = Launch::new(backend, InitParams::Tdx(TdxInit::default())).unwrap();
        l.add_plan_memory(&plan).unwrap();
        l.create_vcpu(0).unwrap();
        let mut l = l.start().unwrap();
        l.add_plan(&plan).unwrap();
        l.measure().unwrap().finish().unwrap()
    };
    let mut g = c.benchmark_group("tdx_syn64k");
    g.throughput(Throughput::Bytes(plan.total_len()));
    g.bench_function("host_launch", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| on_fresh_host(launch)).sum())
    });
    g.bench_function("offline_measure", |b| {
        b.iter(|| black_box(measure(&plan, &MeasureOptions::default()).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, snp_ovmf, tdx_syn64k);
criterion_main!(benches);
