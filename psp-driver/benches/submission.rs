//! Commands per second through the serialized submission path, against calling the
//! transport directly (the physical limit of this layer: a no-op firmware).
//!
//! `cargo bench -p psp-driver --bench submission`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use psp_driver::{Completion, Psp, SevCmd, SevDataActivate, Transport};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// A firmware that accepts every command instantly.
#[derive(Debug)]
struct Noop;

impl Transport for Noop {
    #[inline(never)]
    fn submit(&self, cmd: SevCmd, buf: &mut [u8]) -> Completion {
        black_box((cmd, buf));
        Completion::SUCCESS
    }
}

fn submission(c: &mut Criterion) {
    let mut group = c.benchmark_group("submission");
    group.throughput(Throughput::Elements(1));

    group.bench_function("transport_direct", |b| {
        let t = Noop;
        let mut buf = [0u8; 8];
        b.iter(|| t.submit(black_box(SevCmd::Activate), black_box(&mut buf[..])))
    });

    group.bench_function("psp_generic_1_thread", |b| {
        let psp = Psp::new(Noop);
        let mut activate = SevDataActivate { handle: 1, asid: 1 };
        b.iter(|| psp.issue(black_box(&mut activate)))
    });

    for threads in [1u64, 2, 8] {
        group.bench_function(format!("psp_dyn_{threads}_threads"), |b| {
            let psp: Psp = Psp::new(Box::new(Noop));
            b.iter_custom(|iters| {
                let per_thread = iters.div_ceil(threads);
                let start = Instant::now();
                std::thread::scope(|s| {
                    for t in 0..threads {
                        let psp = &psp;
                        s.spawn(move || {
                            let mut activate = SevDataActivate {
                                handle: t as u32,
                                asid: 1,
                            };
                            for _ in 0..per_thread {
                                psp.issue(black_box(&mut activate)).unwrap();
                            }
                        });
                    }
                });
                let elapsed = start.elapsed();
                // Report the time per command of the whole machine.
                elapsed.mul_f64(iters as f64 / (per_thread * threads) as f64)
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = submission
}
criterion_main!(benches);
