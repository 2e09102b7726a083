//! Launch-measurement benchmarks, next to the physical limit (raw SHA-256 / SHA-384
//! throughput over the same bytes, single stream) in the same run.
//!
//! - `snp_ovmf_64vcpu`: SNP digest of Debian's OVMF.fd (`/usr/share/ovmf/OVMF.fd` or
//!   `$KVM_COCO_OVMF`) with 64 vCPUs: plan + measure.
//! - `snp_kernel_initrd_64m`: SNP digest of SYN64K with a 64 MiB kernel and a 64 MiB initrd:
//!   plan (which hashes kernel and initrd) + measure.
//!
//! Run with `cargo bench -p kvm-coco --bench measure`. With `--features bench-sev` each group
//! also times the `sev` crate's `snp_calc_launch_digest` on the same inputs (it reads them
//! from files, which are in the page cache) and checks that it agrees.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kvm_coco::measure::calc::{MeasureOptions, measure};
use kvm_coco::measure::firmware::FirmwareImage;
use kvm_coco::measure::hashes::DirectBoot;
use kvm_coco::measure::plan::{LaunchPlan, PlanInputs};
use sha2::{Digest, Sha256, Sha384};

#[path = "../tests/measure_common/mod.rs"]
#[allow(missing_docs)]
mod measure_common;

fn snp_digest(inputs: &PlanInputs<'_>) -> Vec<u8> {
    let plan = LaunchPlan::snp(inputs).unwrap();
    measure(&plan, &MeasureOptions::default())
        .unwrap()
        .digest
        .as_bytes()
        .to_vec()
}

fn ovmf_64vcpu(c: &mut Criterion) {
    let Some((_, img)) = measure_common::debian_ovmf() else {
        eprintln!("snp_ovmf_64vcpu skipped: Debian OVMF.fd not found");
        return;
    };
    let fw = FirmwareImage::parse(&img).unwrap();
    let mut inputs = PlanInputs::new(&fw);
    inputs.vcpus = 64;
    inputs.vcpu_sig = Some(0x00A0_0F11);
    let mut g = c.benchmark_group("snp_ovmf_64vcpu");
    g.throughput(Throughput::Bytes(img.len() as u64 + 64 * 4096));
    g.bench_function("kvm_coco_snp", |b| {
        b.iter(|| black_box(snp_digest(&inputs)))
    });
    #[cfg(feature = "bench-sev")]
    {
        let path = measure_common::debian_ovmf().map(|(p, _)| p).unwrap();
        let theirs = || sev_crate::digest(&path, 64, None);
        assert_eq!(theirs(), snp_digest(&inputs), "sev crate disagrees");
        g.bench_function("sev_crate_snp", |b| b.iter(|| black_box(theirs())));
    }
    let vmsa = vec![0u8; 64 * 4096];
    g.bench_function("raw_sha384_same_bytes", |b| {
        b.iter(|| {
            let mut h = Sha384::new();
            h.update(&img);
            h.update(&vmsa);
            black_box(h.finalize())
        })
    });
    g.finish();
}

fn kernel_initrd(c: &mut Criterion) {
    let fw_img = measure_common::syn64k();
    let fw = FirmwareImage::parse(&fw_img).unwrap();
    let kernel: Vec<u8> = (0..64u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let initrd: Vec<u8> = (0..64u32 << 20)
        .map(|i| (i.wrapping_mul(40503) >> 7) as u8)
        .collect();
    let mut inputs = PlanInputs::new(&fw);
    inputs.vcpu_sig = Some(0x00A0_0F11);
    inputs.boot = Some(DirectBoot {
        kernel: &kernel,
        initrd: Some(&initrd),
        cmdline: Some("console=ttyS0"),
    });
    let mut g = c.benchmark_group("snp_kernel_initrd_64m");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(
        (kernel.len() + initrd.len() + fw_img.len()) as u64,
    ));
    g.bench_function("kvm_coco_snp", |b| {
        b.iter(|| black_box(snp_digest(&inputs)))
    });
    #[cfg(feature = "bench-sev")]
    {
        let dir = measure_common::scratch("bench_sev_crate");
        let (f, k, i) = (
            dir.join("syn64k.fd"),
            dir.join("kernel"),
            dir.join("initrd"),
        );
        std::fs::write(&f, &fw_img).unwrap();
        std::fs::write(&k, &kernel).unwrap();
        std::fs::write(&i, &initrd).unwrap();
        let theirs = || sev_crate::digest(&f, 1, Some((&k, &i, "console=ttyS0")));
        assert_eq!(theirs(), snp_digest(&inputs), "sev crate disagrees");
        g.bench_function("sev_crate_snp", |b| b.iter(|| black_box(theirs())));
    }
    g.bench_function("raw_sha256_same_bytes", |b| {
        b.iter(|| {
            let mut h = Sha256::new();
            h.update(&kernel);
            h.update(&initrd);
            h.update(&fw_img);
            black_box(h.finalize())
        })
    });
    g.bench_function("raw_sha384_same_bytes", |b| {
        b.iter(|| {
            let mut h = Sha384::new();
            h.update(&kernel);
            h.update(&initrd);
            h.update(&fw_img);
            black_box(h.finalize())
        })
    });
    g.finish();
}

#[cfg(feature = "bench-sev")]
mod sev_crate {
    use std::path::Path;

    use sev::measurement::snp::{SnpMeasurementArgs, snp_calc_launch_digest};
    use sev::measurement::vcpu_types::CpuType;
    use sev::measurement::vmsa::{GuestFeatures, VMMType};

    /// The `sev` crate's SNP digest (EPYC-Milan, guest features 0x1, QEMU).
    pub fn digest(ovmf: &Path, vcpus: u32, kernel: Option<(&Path, &Path, &str)>) -> Vec<u8> {
        let ld = snp_calc_launch_digest(SnpMeasurementArgs {
            vcpus,
            vcpu_type: CpuType::EpycMilan,
            ovmf_file: ovmf.to_path_buf(),
            guest_features: GuestFeatures::default(),
            kernel_file: kernel.map(|k| k.0.to_path_buf()),
            initrd_file: kernel.map(|k| k.1.to_path_buf()),
            append: kernel.map(|k| k.2),
            ovmf_hash_str: None,
            vmm_type: Some(VMMType::QEMU),
        })
        .unwrap();
        ld.try_into().unwrap()
    }
}

criterion_group!(benches, ovmf_64vcpu, kernel_initrd);
criterion_main!(benches);
