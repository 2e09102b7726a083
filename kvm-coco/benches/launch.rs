//! Launch benchmarks on the simulated backend, next to the offline measurement of the same
//! plan (the work every launch must at least do: hashing the measured pages) in the same
//! run.
//!
//! - `snp_ovmf_4gib`: a full SNP launch of a 4 GiB guest with Debian's OVMF.fd
//!   (`/usr/share/ovmf/OVMF.fd` or `$KVM_COCO_OVMF`) and 4 vCPUs: INIT2, memory, vCPUs,
//!   LAUNCH_START, every LAUNCH_UPDATE with its log, LAUNCH_FINISH.
//! - `tdx_syn64k`: a TDX launch of the SYN64K image (facts §8.1).
//!
//! Run with `cargo bench -p kvm-coco --bench launch`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kvm_coco::launch::{InitParams, Launch, SimBackend, TdxInit};
use kvm_coco::measure::{FirmwareImage, LaunchPlan, MeasureOptions, measure};

#[path = "../tests/measure_common/mod.rs"]
#[allow(missing_docs)]
mod measure_common;

fn snp_launch(plan: &LaunchPlan<'_>, fw_len: u64) -> usize {
    measure_common::snp_4gib_launch(plan, fw_len)
        .log()
        .entries
        .len()
}

fn snp_ovmf(c: &mut Criterion) {
    let Some((_, img)) = measure_common::debian_ovmf() else {
        eprintln!("snp_ovmf_4gib skipped: Debian OVMF.fd not found");
        return;
    };
    let fw = FirmwareImage::parse(&img).unwrap();
    let inputs = measure_common::amd_inputs(&fw, 4, "EPYC-Milan");
    let plan = LaunchPlan::snp(&inputs).unwrap();
    let mut g = c.benchmark_group("snp_ovmf_4gib");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(plan.total_len()));
    g.bench_function("sim_launch", |b| {
        b.iter(|| black_box(snp_launch(&plan, img.len() as u64)))
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
    let mut g = c.benchmark_group("tdx_syn64k");
    g.throughput(Throughput::Bytes(plan.total_len()));
    g.bench_function("sim_launch", |b| {
        b.iter(|| {
            let mut l =
                Launch::new(SimBackend::tdx(), InitParams::Tdx(TdxInit::default())).unwrap();
            l.add_plan_memory(&plan).unwrap();
            l.create_vcpu(0).unwrap();
            let mut l = l.start().unwrap();
            l.add_plan(&plan).unwrap();
            black_box(l.measure().unwrap().finish().unwrap().log().entries.len())
        })
    });
    g.bench_function("offline_measure", |b| {
        b.iter(|| black_box(measure(&plan, &MeasureOptions::default()).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, snp_ovmf, tdx_syn64k);
criterion_main!(benches);
