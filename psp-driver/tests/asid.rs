//! ASID allocator and lock-protocol tests against the checking firmware model.

mod support;

use psp_driver::{
    AsidClass, AsidConfig, AsidError, AsidManager, Binding, FnWriteBack, Psp, SevCmd, SevRetCode,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use support::{Checking, FwModel, SplitMix};

type Manager = AsidManager<Checking>;

fn manager(config: AsidConfig, dwell: usize) -> (Arc<FwModel>, Manager) {
    let model = FwModel::new(dwell);
    let psp = Arc::new(Psp::new(Checking(model.clone())));
    let hook = {
        let model = model.clone();
        FnWriteBack(move || model.wbinvd())
    };
    let mgr = AsidManager::new(psp, config, hook).expect("valid config");
    (model, mgr)
}

/// ES/SNP share [1, 4], SEV gets [5, 8].
const SMALL: AsidConfig = AsidConfig::new(5, 8, false);

#[test]
fn ranges_follow_the_kernel_split() {
    let (model, mgr) = manager(SMALL, 0);
    let sev: Vec<_> = (0..4)
        .map(|_| mgr.allocate(AsidClass::Sev).unwrap())
        .collect();
    assert_eq!(
        sev.iter().map(|l| l.asid()).collect::<Vec<_>>(),
        [5, 6, 7, 8]
    );
    let es = mgr.allocate(AsidClass::SevEs).unwrap();
    let snp = mgr.allocate(AsidClass::Snp).unwrap();
    assert_eq!(
        (es.asid(), snp.asid()),
        (1, 2),
        "SEV-ES and SNP share [1, min_sev_asid - 1]"
    );
    assert!(matches!(
        mgr.allocate(AsidClass::Sev),
        Err(AsidError::Busy {
            class: AsidClass::Sev
        })
    ));
    assert_eq!(mgr.usage(AsidClass::Sev), (4, 0));
    assert_eq!(mgr.usage(AsidClass::Snp), (2, 0));
    assert_eq!(model.count(SevCmd::DfFlush), 0);
    for lease in sev.into_iter().chain([es, snp]) {
        mgr.release(lease).unwrap();
    }
    assert!(model.violations().is_empty(), "{:?}", model.violations());
}

#[test]
fn ciphertext_hiding_splits_the_es_range() {
    let cfg = AsidConfig {
        ciphertext_hiding_asids: 2,
        ..SMALL
    };
    let (_model, mgr) = manager(cfg, 0);
    let snp: Vec<_> = (0..2)
        .map(|_| mgr.allocate(AsidClass::Snp).unwrap())
        .collect();
    assert_eq!(snp.iter().map(|l| l.asid()).collect::<Vec<_>>(), [1, 2]);
    assert!(matches!(
        mgr.allocate(AsidClass::Snp),
        Err(AsidError::Busy { .. })
    ));
    let es = mgr.allocate(AsidClass::SevEs).unwrap();
    assert_eq!(es.asid(), 3);
    for lease in snp.into_iter().chain([es]) {
        mgr.release(lease).unwrap();
    }
}

#[test]
fn empty_range_is_unsupported() {
    let (_model, mgr) = manager(AsidConfig::new(1, 8, true), 0);
    assert!(matches!(
        mgr.allocate(AsidClass::SevEs),
        Err(AsidError::Unsupported { .. })
    ));
    assert!(matches!(
        mgr.allocate(AsidClass::Snp),
        Err(AsidError::Unsupported { .. })
    ));
    assert_eq!(mgr.allocate(AsidClass::Sev).unwrap().asid(), 1);
    let bad = FwModel::new(0);
    let psp = Arc::new(Psp::new(Checking(bad)));
    let err = AsidManager::new(psp, AsidConfig::new(0, 8, false), psp_driver::NoWriteBack);
    assert!(matches!(err, Err(AsidError::InvalidConfig(_))));
}

#[test]
fn exhaustion_reclaims_with_exactly_one_flush() {
    let (model, mgr) = manager(SMALL, 0);
    // Fill the ES/SNP range; bind two of them so their release goes through DEACTIVATE
    // and SNP_DECOMMISSION.
    let mut leases: Vec<_> = (0..4)
        .map(|_| mgr.allocate(AsidClass::SevEs).unwrap())
        .collect();
    mgr.bind(&mut leases[1], 0x100).unwrap();
    // A SEV lease released too: the flush frees reclaimable ASIDs of every range.
    let mut sev = mgr.allocate(AsidClass::Sev).unwrap();
    mgr.bind(&mut sev, 0x200).unwrap();
    mgr.release(sev).unwrap();
    assert_eq!(mgr.usage(AsidClass::Sev), (1, 1));

    let second = leases.remove(1);
    assert_eq!(second.asid(), 2);
    mgr.release(second).unwrap();
    assert_eq!(model.count(SevCmd::Deactivate), 2);
    assert_eq!(model.count(SevCmd::Decommission), 2);
    assert_eq!(
        mgr.usage(AsidClass::SevEs),
        (4, 1),
        "freed lazily, still marked used"
    );
    assert_eq!(model.state().wbinvd_calls, 0);

    let again = mgr.allocate(AsidClass::Snp).unwrap();
    assert_eq!(again.asid(), 2, "the reclaimed ASID is reused");
    assert_eq!(model.count(SevCmd::DfFlush), 1, "exactly one flush");
    assert_eq!(
        model.count(SevCmd::SnpDfFlush),
        0,
        "SNP not enabled: plain DF_FLUSH"
    );
    assert_eq!(
        model.state().wbinvd_calls,
        1,
        "one write-back before the flush"
    );
    assert_eq!(
        mgr.usage(AsidClass::Sev),
        (0, 0),
        "the SEV ASID was recycled too"
    );
    assert!(model.state().dirty.is_empty());

    // Full again, nothing reclaimable: busy, and no flush is attempted.
    assert!(matches!(
        mgr.allocate(AsidClass::SevEs),
        Err(AsidError::Busy {
            class: AsidClass::SevEs
        })
    ));
    assert_eq!(model.count(SevCmd::DfFlush), 1);
    for lease in leases.into_iter().chain([again]) {
        mgr.release(lease).unwrap();
    }
    assert!(model.violations().is_empty(), "{:?}", model.violations());
}

#[test]
fn snp_hosts_flush_with_snp_df_flush() {
    let (model, mgr) = manager(AsidConfig::new(2, 2, true), 0);
    let mut lease = mgr.allocate(AsidClass::Snp).unwrap();
    assert_eq!(lease.asid(), 1);
    mgr.bind_snp(&mut lease, 0x7000).unwrap();
    assert_eq!(lease.binding(), Some(Binding::GuestContext(0x7000)));
    mgr.release(lease).unwrap();
    assert_eq!(model.count(SevCmd::SnpDecommission), 1);
    assert_eq!(
        model.count(SevCmd::Deactivate),
        0,
        "SNP_DECOMMISSION deactivates implicitly"
    );
    let lease = mgr.allocate(AsidClass::Snp).unwrap();
    assert_eq!(lease.asid(), 1);
    assert_eq!(
        (
            model.count(SevCmd::SnpDfFlush),
            model.count(SevCmd::DfFlush)
        ),
        (1, 0)
    );
    mgr.release(lease).unwrap();
    assert!(model.violations().is_empty(), "{:?}", model.violations());
}

#[test]
fn dirty_asid_is_not_bound_before_a_flush() {
    let (model, mgr) = manager(SMALL, 0);
    let mut lease = mgr.allocate(AsidClass::SevEs).unwrap();
    mgr.bind(&mut lease, 1).unwrap();
    assert!(matches!(
        mgr.bind(&mut lease, 2),
        Err(AsidError::AlreadyBound { asid: 1 })
    ));
    mgr.unbind(&mut lease).unwrap();
    assert_eq!(lease.binding(), None);
    let err = mgr.bind(&mut lease, 2).unwrap_err();
    assert!(matches!(err, AsidError::FlushRequired { asid: 1 }), "{err}");
    assert_eq!(
        model.count(SevCmd::Activate),
        1,
        "refused before reaching the firmware"
    );
    mgr.flush().unwrap();
    mgr.bind(&mut lease, 2).unwrap();
    mgr.release(lease).unwrap();
    assert!(model.violations().is_empty(), "{:?}", model.violations());
}

#[test]
fn class_and_owner_are_checked() {
    let (_m1, mgr) = manager(SMALL, 0);
    let (_m2, other) = manager(SMALL, 0);
    let mut es = mgr.allocate(AsidClass::SevEs).unwrap();
    assert!(matches!(
        mgr.bind_snp(&mut es, 0x1000),
        Err(AsidError::WrongClass { .. })
    ));
    let mut snp = mgr.allocate(AsidClass::Snp).unwrap();
    assert!(matches!(
        mgr.bind(&mut snp, 1),
        Err(AsidError::WrongClass { .. })
    ));
    assert!(matches!(
        other.bind(&mut es, 1),
        Err(AsidError::ForeignLease { .. })
    ));
    assert!(matches!(
        other.release(es),
        Err(AsidError::ForeignLease { .. })
    ));
    mgr.release(snp).unwrap();
}

#[test]
fn failed_flush_is_reported_and_keeps_asids_reclaimable() {
    let (model, mgr) = manager(AsidConfig::new(2, 2, false), 0);
    let lease = mgr.allocate(AsidClass::SevEs).unwrap();
    mgr.release(lease).unwrap();
    model.state().fail_next_flush = Some(SevRetCode::HwsevRetPlatform);
    let err = mgr.allocate(AsidClass::SevEs).unwrap_err();
    match &err {
        AsidError::Firmware(e) => {
            assert_eq!(
                (e.cmd, e.status),
                (SevCmd::DfFlush, SevRetCode::HwsevRetPlatform)
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "DF_FLUSH failed: firmware status HWSEV_RET_PLATFORM (0x13)"
    );
    assert_eq!(mgr.usage(AsidClass::SevEs), (1, 1));
    let lease = mgr.allocate(AsidClass::SevEs).unwrap();
    assert_eq!(lease.asid(), 1);
    mgr.release(lease).unwrap();
}

#[test]
fn failed_activate_leaves_lease_unbound() {
    let (model, mgr) = manager(SMALL, 0);
    let mut a = mgr.allocate(AsidClass::SevEs).unwrap();
    mgr.bind(&mut a, 7).unwrap();
    // Simulate a firmware that still sees ASID 2 in use.
    model.state().in_use.insert(2);
    let mut b = mgr.allocate(AsidClass::SevEs).unwrap();
    let err = mgr.bind(&mut b, 8).unwrap_err();
    assert!(
        matches!(&err, AsidError::Firmware(e) if e.status == SevRetCode::AsidOwned),
        "{err}"
    );
    assert_eq!(b.binding(), None);
    mgr.decommission(8).unwrap();
    model.state().in_use.remove(&2);
    model.state().violations.clear();
    mgr.release(b).unwrap();
    mgr.release(a).unwrap();
    assert!(model.violations().is_empty(), "{:?}", model.violations());
}

/// Many threads allocate, bind, unbind, rebind, release and flush at random (action
/// sequences from a fixed seed; the OS still picks the interleaving). The checking
/// firmware asserts one command in flight, no activation of a dirty or owned ASID, and no
/// DEACTIVATE between the write-back and DF_FLUSH.
#[test]
fn concurrency_stress() {
    const THREADS: u64 = 8;
    const ITERS: u64 = 400;
    const SEED: u64 = 0x5EED_A51D;
    for snp_enabled in [false, true] {
        let (model, mgr) = manager(AsidConfig::new(5, 8, snp_enabled), 50);
        let mgr = Arc::new(mgr);
        let next_handle = Arc::new(AtomicU32::new(1));
        let next_gctx = Arc::new(AtomicU64::new(1));
        let busy = Arc::new(AtomicU32::new(0));
        let rebinds_refused = Arc::new(AtomicU32::new(0));
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let (mgr, next_handle, next_gctx, busy, refused) = (
                    mgr.clone(),
                    next_handle.clone(),
                    next_gctx.clone(),
                    busy.clone(),
                    rebinds_refused.clone(),
                );
                std::thread::spawn(move || {
                    let mut rng = SplitMix(SEED ^ (t << 32));
                    for _ in 0..ITERS {
                        if rng.below(10) == 0 {
                            mgr.flush().unwrap();
                            continue;
                        }
                        let class = [AsidClass::Sev, AsidClass::SevEs, AsidClass::Snp]
                            [rng.below(3) as usize];
                        let mut lease = match mgr.allocate(class) {
                            Ok(lease) => lease,
                            Err(AsidError::Busy { .. }) => {
                                busy.fetch_add(1, Ordering::Relaxed);
                                std::thread::yield_now();
                                continue;
                            }
                            Err(e) => panic!("allocate: {e}"),
                        };
                        let bind = |lease: &mut psp_driver::AsidLease| match class {
                            AsidClass::Snp => {
                                let gctx = next_gctx.fetch_add(1, Ordering::Relaxed) << 12;
                                mgr.bind_snp(lease, gctx)
                            }
                            _ => mgr.bind(lease, next_handle.fetch_add(1, Ordering::Relaxed)),
                        };
                        bind(&mut lease).unwrap();
                        if rng.below(2) == 0 {
                            mgr.unbind(&mut lease).unwrap();
                            match bind(&mut lease) {
                                Ok(()) => {}
                                Err(AsidError::FlushRequired { .. }) => {
                                    refused.fetch_add(1, Ordering::Relaxed);
                                }
                                Err(e) => panic!("rebind: {e}"),
                            }
                        }
                        mgr.release(lease).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("worker panicked");
        }
        let violations = model.violations();
        assert!(
            violations.is_empty(),
            "protocol violations: {violations:#?}"
        );
        let flush_cmd = if snp_enabled {
            SevCmd::SnpDfFlush
        } else {
            SevCmd::DfFlush
        };
        let flushes = model.count(flush_cmd);
        assert!(flushes > 0 && model.count(SevCmd::Activate) > 0);
        assert!(
            rebinds_refused.load(Ordering::Relaxed) > 0,
            "the dirty-ASID guard was exercised"
        );
        // Everything released: after one more flush every ASID is free.
        mgr.flush().unwrap();
        for class in [AsidClass::Sev, AsidClass::SevEs] {
            assert_eq!(mgr.usage(class), (0, 0));
        }
        eprintln!(
            "stress (snp={snp_enabled}): {} ACTIVATE, {} SNP_ACTIVATE, {} DEACTIVATE, {} SNP_DECOMMISSION, \
             {flushes} flushes, {} busy, {} rebinds refused",
            model.count(SevCmd::Activate),
            model.count(SevCmd::SnpActivate),
            model.count(SevCmd::Deactivate),
            model.count(SevCmd::SnpDecommission),
            busy.load(Ordering::Relaxed),
            rebinds_refused.load(Ordering::Relaxed),
        );
    }
}
