//! Offline SNP launch measurement on identical inputs: kvm-coco, the `sev` crate's
//! `snp_calc_launch_digest`, and a raw hashing floor, measured in one run.
//!
//! Before timing, every implementation's digest is computed once and written to
//! `$KVM_COCO_BENCH_OUT/digests.json`, so a speed-up that changes the answer is visible.
//!
//! Criterion groups are `compare-<case>`; functions:
//! - `sev_crate`: `sev::measurement::snp::snp_calc_launch_digest` (reads the files itself);
//! - `kvm_coco_files`: read the same files, then parse, plan and measure with kvm-coco;
//! - `kvm_coco_in_memory`: parse, plan and measure with the bytes already in memory;
//! - `raw_hash_floor`: one-core SHA-384 over the firmware image plus one 4 KiB page per
//!   vCPU (the VMSAs), and SHA-256 over kernel and initrd — the hashing any implementation
//!   must do, with no page bookkeeping.

#![forbid(unsafe_code)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, SamplingMode};
use kvm_coco::measure::hashes::{DirectBoot, SevHashes};
use kvm_coco::measure::vcpu::cpu_type_sig;
use kvm_coco::measure::{FirmwareImage, LaunchPlan, MeasureOptions, PlanInputs, measure};
use kvm_coco_bench_compare::{Case, cases};
use sev::measurement::snp::{SnpMeasurementArgs, snp_calc_launch_digest};
use sev::measurement::vcpu_types::CpuType;
use sev::measurement::vmsa::{GuestFeatures, VMMType};
use sha2::{Digest, Sha256, Sha384};

/// The bytes of one case, read once.
struct Loaded {
    ovmf: Vec<u8>,
    kernel: Option<Vec<u8>>,
    initrd: Option<Vec<u8>>,
}

fn read(p: &std::path::Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn load(case: &Case) -> Loaded {
    Loaded {
        ovmf: read(&case.ovmf),
        kernel: case.kernel.as_deref().map(read),
        initrd: case.initrd.as_deref().map(read),
    }
}

fn sev_crate(case: &Case) -> Vec<u8> {
    let cpu = CpuType::try_from(case.vcpu_type.as_str()).unwrap_or_else(|e| panic!("{e}"));
    let args = SnpMeasurementArgs {
        vcpus: case.vcpus,
        vcpu_type: cpu,
        ovmf_file: case.ovmf.clone(),
        guest_features: GuestFeatures::default(),
        kernel_file: case.kernel.clone(),
        initrd_file: case.initrd.clone(),
        append: case.append.as_deref(),
        ovmf_hash_str: None,
        vmm_type: Some(VMMType::QEMU),
    };
    let ld = snp_calc_launch_digest(args).unwrap_or_else(|e| panic!("sev crate: {e}"));
    hex::decode(ld.get_hex_ld()).unwrap_or_default()
}

fn kvm_coco_bytes(case: &Case, l: &Loaded) -> Vec<u8> {
    let fw = FirmwareImage::parse(&l.ovmf).unwrap_or_else(|e| panic!("kvm-coco: {e}"));
    let mut inputs = PlanInputs::new(&fw);
    inputs.vcpus = case.vcpus;
    inputs.vcpu_sig = cpu_type_sig(&case.vcpu_type);
    inputs.guest_features = 0x1;
    if let Some(kernel) = &l.kernel {
        inputs.boot = Some(DirectBoot {
            kernel,
            initrd: l.initrd.as_deref(),
            cmdline: case.append.as_deref(),
        });
    }
    let plan = LaunchPlan::snp(&inputs).unwrap_or_else(|e| panic!("kvm-coco: {e}"));
    let m = measure(&plan, &MeasureOptions::default()).unwrap_or_else(|e| panic!("kvm-coco: {e}"));
    m.digest.as_bytes().to_vec()
}

/// What `vmm-cli measure` does: read the firmware, stream the kernel and initrd into their
/// digests, parse, plan and measure.
fn kvm_coco_files(case: &Case) -> Vec<u8> {
    let ovmf = read(&case.ovmf);
    let fw = FirmwareImage::parse(&ovmf).unwrap_or_else(|e| panic!("kvm-coco: {e}"));
    let mut inputs = PlanInputs::new(&fw);
    inputs.vcpus = case.vcpus;
    inputs.vcpu_sig = cpu_type_sig(&case.vcpu_type);
    inputs.guest_features = 0x1;
    if let Some(kernel) = &case.kernel {
        let hashes = SevHashes::from_files(kernel, case.initrd.as_deref(), case.append.as_deref())
            .unwrap_or_else(|e| panic!("kvm-coco: {e}"));
        inputs.boot_hashes = Some(hashes);
    }
    let plan = LaunchPlan::snp(&inputs).unwrap_or_else(|e| panic!("kvm-coco: {e}"));
    let m = measure(&plan, &MeasureOptions::default()).unwrap_or_else(|e| panic!("kvm-coco: {e}"));
    m.digest.as_bytes().to_vec()
}

fn raw_hash_floor(case: &Case, l: &Loaded, vmsa_pages: &[u8]) -> usize {
    let mut h = Sha384::new();
    h.update(&l.ovmf);
    h.update(vmsa_pages);
    let a = h.finalize();
    let b = l.kernel.as_deref().map(Sha256::digest);
    let c = l.initrd.as_deref().map(Sha256::digest);
    black_box((&a, &b, &c));
    case.vcpus as usize
}

fn write_digests(cases: &[Case]) {
    let mut out = serde_json::Map::new();
    for case in cases {
        let loaded = load(case);
        let sev = hex::encode(sev_crate(case));
        let coco = hex::encode(kvm_coco_bytes(case, &loaded));
        eprintln!("digest {}: sev {sev}, kvm-coco {coco}", case.name);
        out.insert(
            case.name.clone(),
            serde_json::json!({ "sev_crate": sev, "kvm_coco": coco }),
        );
    }
    if let Some(dir) = std::env::var_os("KVM_COCO_BENCH_OUT") {
        let path = std::path::Path::new(&dir).join("digests.json");
        let text =
            serde_json::to_string_pretty(&serde_json::Value::Object(out)).unwrap_or_default();
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("cannot write {}: {e}", path.display());
        }
    }
}

fn bench_case(c: &mut Criterion, case: &Case) {
    let loaded = load(case);
    let vmsa_pages = vec![0u8; case.vcpus as usize * 4096];
    let mut g = c.benchmark_group(format!("compare-{}", case.name));
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(4));
    g.bench_function("raw_hash_floor", |b| {
        b.iter(|| raw_hash_floor(case, &loaded, &vmsa_pages))
    });
    g.bench_function("kvm_coco_in_memory", |b| {
        b.iter(|| kvm_coco_bytes(case, &loaded))
    });
    g.bench_function("kvm_coco_files", |b| b.iter(|| kvm_coco_files(case)));
    g.bench_function("sev_crate", |b| b.iter(|| sev_crate(case)));
    g.finish();
}

fn main() {
    let cases = match cases() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("snp_measure: {e}");
            std::process::exit(2);
        }
    };
    write_digests(&cases);
    let mut c = Criterion::default().configure_from_args();
    for case in &cases {
        bench_case(&mut c, case);
    }
    c.final_summary();
}
