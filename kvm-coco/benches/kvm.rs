//! kvm-coco against raw kvm-ioctls, in the same run:
//!
//! * `check_extension`: `KVM_CHECK_EXTENSION(KVM_CAP_USER_MEMORY)` on `/dev/kvm` (the
//!   tightest syscall, ~140 ns on machines of this project's kind, so per-call overhead
//!   shows in nanoseconds);
//! * `kvm_run_out_loop`: one `KVM_RUN` round trip of a real-mode guest looping on
//!   `out dx, al; jmp` (one `IoOut` exit per run).
//!
//! Each side uses its own VM; both stay alive for the whole run so creation costs do not
//! depend on which one ran first. Without a usable `/dev/kvm` the benchmark prints
//! `skipped: …` and exits.
//!
//! Criterion measures the two sides one after the other, so a change in machine load
//! between them shows up as a difference. The run therefore ends with a *paired*
//! comparison: many rounds, each timing a batch of kvm-ioctls calls and a batch of kvm-coco
//! calls back to back (alternating which goes first), reporting the median of the per-round
//! ratios, which cancels load that varies slower than a round.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use kvm_bindings::{KVM_CAP_USER_MEMORY, kvm_userspace_memory_region};
use kvm_coco::{Exit, GuestMapping, Kvm, MemoryRegion, VmType};
use kvm_ioctls::VcpuExit;

/// `mov dx, 0x3f8; mov al, 'A'; l: out dx, al; jmp l`.
const OUT_LOOP: [u8; 8] = [0xba, 0xf8, 0x03, 0xb0, b'A', 0xee, 0xeb, 0xfd];
const CODE_GPA: u64 = 0x1000;
const MEM: usize = 0x10_0000;

fn real_mode(sregs: &mut kvm_bindings::kvm_sregs, regs: &mut kvm_bindings::kvm_regs) {
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    regs.rip = CODE_GPA;
    regs.rflags = 2;
}

fn main() {
    let kvm = match Kvm::open() {
        Ok(k) => k,
        Err(e) => {
            println!("skipped: {e}");
            return;
        }
    };
    let raw = kvm_ioctls::Kvm::new().expect("kvm-ioctls open");
    let mut c = Criterion::default()
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();

    // KVM_CHECK_EXTENSION.
    {
        let cap = KVM_CAP_USER_MEMORY;
        let mut g = c.benchmark_group("check_extension");
        g.bench_function("kvm-ioctls", |b| {
            b.iter(|| raw.check_extension_raw(black_box(libc::c_ulong::from(cap))))
        });
        g.bench_function("kvm-coco", |b| {
            b.iter(|| kvm.check_extension(black_box(cap)))
        });
        g.finish();
    }

    // kvm-ioctls guest.
    let raw_mem = GuestMapping::anonymous(MEM).expect("mmap");
    raw_mem.write(CODE_GPA, &OUT_LOOP).expect("write");
    let raw_vm = raw.create_vm().expect("raw VM");
    let region = kvm_userspace_memory_region {
        slot: 0,
        flags: 0,
        guest_phys_addr: 0,
        memory_size: MEM as u64,
        userspace_addr: raw_mem.host_addr(),
    };
    // SAFETY: `raw_mem` outlives `raw_vm` and `raw_vcpu` (declared before them, dropped
    // after them).
    unsafe { raw_vm.set_user_memory_region(region) }.expect("memslot");
    let mut raw_vcpu = raw_vm.create_vcpu(0).expect("raw vCPU");
    let (mut sregs, mut regs) = (raw_vcpu.get_sregs().unwrap(), raw_vcpu.get_regs().unwrap());
    real_mode(&mut sregs, &mut regs);
    raw_vcpu.set_sregs(&sregs).unwrap();
    raw_vcpu.set_regs(&regs).unwrap();

    // kvm-coco guest.
    let vm = kvm.create_vm(VmType::Default).expect("VM");
    let mem = Arc::new(GuestMapping::anonymous(MEM).expect("mmap"));
    mem.write(CODE_GPA, &OUT_LOOP).expect("write");
    vm.set_memory_region(MemoryRegion::new(0, 0, mem))
        .expect("memslot");
    let mut vcpu = vm.create_vcpu(0).expect("vCPU");
    let (mut sregs, mut regs) = (vcpu.sregs().unwrap(), vcpu.regs().unwrap());
    real_mode(&mut sregs, &mut regs);
    vcpu.set_sregs(&sregs).unwrap();
    vcpu.set_regs(&regs).unwrap();

    {
        let mut g = c.benchmark_group("kvm_run_out_loop");
        g.bench_function("kvm-ioctls", |b| {
            b.iter(|| match raw_vcpu.run() {
                Ok(VcpuExit::IoOut(port, data)) => black_box((port, data.len())),
                other => panic!("unexpected {other:?}"),
            })
        });
        g.bench_function("kvm-coco", |b| {
            b.iter(|| match vcpu.run() {
                Ok(Exit::IoOut { port, data }) => black_box((port, data.len())),
                other => panic!("unexpected {other:?}"),
            })
        });
        g.finish();
    }

    c.final_summary();

    let cap = libc::c_ulong::from(KVM_CAP_USER_MEMORY);
    let r = paired(
        2000,
        || {
            black_box(raw.check_extension_raw(black_box(cap)));
        },
        || {
            black_box(kvm.check_extension(black_box(KVM_CAP_USER_MEMORY)));
        },
    );
    println!("paired check_extension: kvm-coco / kvm-ioctls = {r:.4} (median of {ROUNDS} rounds)");
    let r = paired(
        200,
        || match raw_vcpu.run() {
            Ok(VcpuExit::IoOut(port, _)) => {
                black_box(port);
            }
            other => panic!("unexpected {other:?}"),
        },
        || match vcpu.run() {
            Ok(Exit::IoOut { port, .. }) => {
                black_box(port);
            }
            other => panic!("unexpected {other:?}"),
        },
    );
    println!("paired kvm_run_out_loop: kvm-coco / kvm-ioctls = {r:.4} (median of {ROUNDS} rounds)");
}

const ROUNDS: usize = 101;

/// Median over [`ROUNDS`] rounds of `time(b) / time(a)`, each round timing `batch` calls of
/// each closure back to back, alternating which runs first.
fn paired(batch: u32, mut a: impl FnMut(), mut b: impl FnMut()) -> f64 {
    let time = |f: &mut dyn FnMut()| {
        let t = Instant::now();
        for _ in 0..batch {
            f();
        }
        t.elapsed().as_secs_f64()
    };
    let mut ratios: Vec<f64> = (0..ROUNDS)
        .map(|i| {
            let (ta, tb) = if i % 2 == 0 {
                let ta = time(&mut a);
                (ta, time(&mut b))
            } else {
                let tb = time(&mut b);
                (time(&mut a), tb)
            };
            tb / ta
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    ratios[ROUNDS / 2]
}
