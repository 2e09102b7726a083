//! SNP_LAUNCH_UPDATE throughput of the software firmware over a large region,
//! next to raw SHA-384 (the physical limit of measuring) in the same run.
//!
//! The region is registered zero-copy in the firmware's physical memory, as a
//! simulated KVM backend would register guest RAM. Each iteration runs a fresh
//! launch (context, LAUNCH_START, ACTIVATE, pages made pre-guest) outside the
//! timed part, then measures + encrypts the whole region with 2 MiB updates
//! (contents hashed in parallel) and with 4 KiB updates (one command per page).
//!
//! `KVM_COCO_BENCH_MIB` sets the region size (default 1024).

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use psp_driver::sim::mem::{PhysMem, VecBacking};
use psp_driver::sim::{SimConfig, SimFirmware};
use psp_driver::{SevCmd, Transport};
use rayon::prelude::*;
use sha2::{Digest, Sha384};

const GCTX: u64 = 0x10_0000;
const BASE: u64 = 0x1_0000_0000;
const ASID: u32 = 1;

fn region_len() -> usize {
    let mib = std::env::var("KVM_COCO_BENCH_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024usize);
    mib << 20
}

fn cmd(fw: &SimFirmware, c: SevCmd, b: &mut [u8]) {
    let r = fw.submit(c, b);
    assert!(r.is_success(), "{c:?}: {r:?}");
}

/// A firmware with a launched, activated SNP guest whose region pages are pre-guest.
fn launched(ram: &Arc<VecBacking>, huge: bool) -> SimFirmware {
    let mem = Arc::new(PhysMem::new());
    mem.register_region(BASE, ram.clone())
        .unwrap_or_else(|e| panic!("{e}"));
    let fw = SimFirmware::new(SimConfig::default(), mem);
    cmd(&fw, SevCmd::SnpInit, &mut []);
    fw.rmp_make_firmware(GCTX).unwrap();
    cmd(&fw, SevCmd::SnpGctxCreate, &mut GCTX.to_le_bytes());
    let mut ls = [0u8; 0x30];
    ls[0..8].copy_from_slice(&GCTX.to_le_bytes());
    ls[8..16].copy_from_slice(&0x30000u64.to_le_bytes());
    cmd(&fw, SevCmd::SnpLaunchStart, &mut ls);
    let mut act = [0u8; 12];
    act[0..8].copy_from_slice(&GCTX.to_le_bytes());
    act[8..12].copy_from_slice(&ASID.to_le_bytes());
    cmd(&fw, SevCmd::SnpActivate, &mut act);
    let step = if huge { 2 << 20 } else { 4096 };
    for off in (0..region_len() as u64).step_by(step) {
        fw.rmp_make_private(BASE + off, off, ASID, huge).unwrap();
    }
    fw
}

fn update_all(fw: &SimFirmware, huge: bool) {
    let step = if huge { 2 << 20 } else { 4096 };
    let mut b = [0u8; 0x20];
    b[0..8].copy_from_slice(&GCTX.to_le_bytes());
    b[8..12].copy_from_slice(&(u32::from(huge) | 1 << 1).to_le_bytes());
    for off in (0..region_len() as u64).step_by(step) {
        b[16..24].copy_from_slice(&(BASE + off).to_le_bytes());
        cmd(fw, SevCmd::SnpLaunchUpdate, &mut b);
    }
}

fn bench(c: &mut Criterion) {
    let len = region_len();
    let ram = Arc::new(VecBacking::new(len));
    ram.with_mut_init();
    let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();

    let mut g = c.benchmark_group("snp_launch_update");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(len as u64));
    g.bench_function("sha384_one_core", |b| {
        b.iter(|| black_box(Sha384::digest(&data)))
    });
    g.bench_function("sha384_pages_all_cores", |b| {
        b.iter(|| {
            let v: Vec<_> = data.par_chunks(4096).map(Sha384::digest).collect();
            black_box(v)
        })
    });
    g.bench_function("launch_update_2m", |b| {
        b.iter_batched(
            || launched(&ram, true),
            |fw| {
                update_all(&fw, true);
                fw
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("launch_update_4k", |b| {
        b.iter_batched(
            || launched(&ram, false),
            |fw| {
                update_all(&fw, false);
                fw
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

trait Fill {
    fn with_mut_init(&self);
}

impl Fill for VecBacking {
    fn with_mut_init(&self) {
        use psp_driver::sim::mem::MemBacking;
        self.with_mut(&mut |b| {
            for (i, x) in b.iter_mut().enumerate() {
                *x = (i * 31 % 251) as u8;
            }
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
