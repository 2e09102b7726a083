//! The software host's costs, each next to its physical baseline in the same run:
//!
//! - `served_ioctl`: one served `KVM_CHECK_EXTENSION` on a VM fd the software host handed out
//!   (a seccomp user-notification round trip: the filter, the supervisor's receive, the fd's
//!   identification, the model's answer, the response) against the same ioctl on a plain
//!   memfd, which the real kernel refuses at once (`libc_memfd`).
//! - `snp_ovmf_4vcpu`: a full SNP launch of Debian's OVMF.fd (`/usr/share/ovmf/OVMF.fd` or
//!   `$KVM_COCO_OVMF`) with 4 vCPUs through `KvmBackend` under the software host (every
//!   `KVM_*` ioctl served, every page encrypted and measured by the firmware model in the
//!   VMM's own memory) against one core's raw SHA-384 over the measured bytes
//!   (`sha384_floor`).
//!
//! Run with `cargo bench -p kvm-coco --bench host` (or `cargo xtask bench`). Without seccomp
//! user notification the benchmark prints `skipped: …` and exits.

use std::hint::black_box;
use std::os::fd::{AsRawFd, OwnedFd};

use criterion::{Criterion, Throughput};
use kvm_coco::launch::KvmBackend;
use kvm_coco::measure::{FirmwareImage, LaunchPlan, PageKind};
use kvm_coco::sim::host::SoftwareHost;
use kvm_coco::{Kvm, VmType};
use sha2::{Digest, Sha384};

#[path = "../tests/measure_common/mod.rs"]
#[allow(missing_docs)]
mod measure_common;

/// `KVM_CHECK_EXTENSION` on `fd`, the raw system call.
fn check_extension(fd: &impl AsRawFd, cap: u32) -> i32 {
    // SAFETY: KVM_CHECK_EXTENSION takes an integer argument and touches no memory; `fd` is
    // open for the call.
    unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            kvm_coco_uapi::KVM_CHECK_EXTENSION as _,
            libc::c_ulong::from(cap),
        )
    }
}

fn plain_memfd() -> OwnedFd {
    let name = c"kvm-coco-bench";
    // SAFETY: a NUL-terminated name; the result is a new fd we own.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0, "memfd_create failed");
    // SAFETY: `fd` is new and owned by nothing else.
    unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) }
}

fn main() {
    if let Err(e) = SoftwareHost::probe() {
        println!("skipped: {e}");
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    let cap = kvm_coco_uapi::KVM_CAP_GUEST_MEMFD;
    let mut g = c.benchmark_group("served_ioctl");
    // The baseline runs before this thread is served: the real kernel refuses the ioctl on
    // a memfd with ENOTTY, no supervisor involved.
    let memfd = plain_memfd();
    g.bench_function("libc_memfd", |b| {
        b.iter(|| check_extension(black_box(&memfd), black_box(cap)))
    });
    let host = SoftwareHost::builder().start().unwrap();
    host.serve_current_thread().unwrap();
    let kvm = Kvm::open().unwrap();
    let backend = KvmBackend::new(&kvm, VmType::Snp).unwrap();
    let vm = backend.vm();
    assert_eq!(check_extension(vm, cap), 1, "served answer");
    g.bench_function("software_host", |b| {
        b.iter(|| check_extension(black_box(vm), black_box(cap)))
    });
    g.finish();
    drop(backend);

    if let Some((_, img)) = measure_common::debian_ovmf() {
        let fw = FirmwareImage::parse(&img).unwrap();
        let inputs = measure_common::amd_inputs(&fw, 4, "EPYC-v4");
        let plan = LaunchPlan::snp(&inputs).unwrap();
        let measured: Vec<&[u8]> = plan
            .steps
            .iter()
            .filter(|s| matches!(s.kind, PageKind::Measured | PageKind::Vmsa))
            .map(|s| s.data.as_slice())
            .collect();
        let bytes: u64 = measured.iter().map(|d| d.len() as u64).sum();
        let mut g = c.benchmark_group("snp_ovmf_4vcpu");
        g.sample_size(10);
        g.throughput(Throughput::Bytes(bytes));
        g.bench_function("sha384_floor", |b| {
            b.iter(|| {
                let mut h = Sha384::new();
                for d in &measured {
                    h.update(d);
                }
                black_box(h.finalize())
            })
        });
        g.bench_function("software_host_launch", |b| {
            b.iter(|| black_box(measure_common::snp_4gib_launch(&plan, img.len() as u64)))
        });
        g.finish();
    } else {
        println!("snp_ovmf_4vcpu skipped: Debian OVMF.fd not found");
    }
    c.final_summary();
    drop(host);
}
