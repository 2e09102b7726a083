//! Exhaustive interleaving check of the ASID lock protocol with loom.
//!
//! Runs only with `RUSTFLAGS="--cfg loom" cargo test -p psp-driver --test loom --release`:
//! the crate's mutexes and rwlock become loom's, and loom explores every interleaving of
//! the threads below (bounded preemptions), failing on a deadlock or a violated invariant.
#![cfg(loom)]

mod support;

use loom::sync::Arc;
use psp_driver::{AsidClass, AsidConfig, AsidManager, FnWriteBack, Psp};
use support::{Checking, FwModel};

fn setup(snp: bool) -> (std::sync::Arc<FwModel>, Arc<AsidManager<Checking>>) {
    let model = FwModel::new(0);
    let psp = std::sync::Arc::new(Psp::new(Checking(model.clone())));
    let hook = {
        let model = model.clone();
        FnWriteBack(move || model.wbinvd())
    };
    // One SEV-ES/SNP ASID (1) and one SEV ASID (2): every allocation after a release
    // must recycle.
    let mgr = AsidManager::new(psp, AsidConfig::new(2, 2, snp), hook).unwrap();
    (model, Arc::new(mgr))
}

fn check(model: &FwModel) {
    let violations = model.violations();
    assert!(violations.is_empty(), "{violations:?}");
}

/// Two guests unbind (DEACTIVATE under the shared lock, DECOMMISSION outside) while a
/// third thread flushes: the flush never sees a DEACTIVATE between write-back and
/// DF_FLUSH, nobody deadlocks, one command at a time.
#[test]
fn unbinds_and_flush() {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(|| {
        let (model, mgr) = setup(false);
        let mut a = mgr.allocate(AsidClass::SevEs).unwrap();
        let mut b = mgr.allocate(AsidClass::Sev).unwrap();
        mgr.bind(&mut a, 10).unwrap();
        mgr.bind(&mut b, 20).unwrap();
        let t1 = {
            let mgr = mgr.clone();
            loom::thread::spawn(move || mgr.release(a).unwrap())
        };
        let t2 = {
            let mgr = mgr.clone();
            loom::thread::spawn(move || mgr.release(b).unwrap())
        };
        mgr.flush().unwrap();
        t1.join().unwrap();
        t2.join().unwrap();
        check(&model);
    });
}

/// An SNP guest is torn down (SNP_DECOMMISSION under the exclusive lock) while another
/// thread reallocates (recycling with a flush) and binds: the ASID is never activated
/// while dirty.
#[test]
fn snp_teardown_and_reallocation() {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(|| {
        let (model, mgr) = setup(true);
        let mut a = mgr.allocate(AsidClass::Snp).unwrap();
        mgr.bind_snp(&mut a, 0x1000).unwrap();
        let t1 = {
            let mgr = mgr.clone();
            loom::thread::spawn(move || mgr.release(a).unwrap())
        };
        // Busy until t1 has released; then exactly one recycle makes ASID 1 available.
        if let Ok(mut lease) = mgr.allocate(AsidClass::Snp) {
            mgr.bind_snp(&mut lease, 0x2000).unwrap();
            mgr.release(lease).unwrap();
        }
        t1.join().unwrap();
        check(&model);
    });
}

/// Unbind then rebind of the same lease races with a flush: the rebind either is refused
/// (dirty) or happens after the flush completed; never DFFLUSH_REQUIRED from the firmware.
#[test]
fn rebind_races_flush() {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(|| {
        let (model, mgr) = setup(false);
        let mut a = mgr.allocate(AsidClass::SevEs).unwrap();
        mgr.bind(&mut a, 1).unwrap();
        let t1 = {
            let mgr = mgr.clone();
            loom::thread::spawn(move || {
                mgr.unbind(&mut a).unwrap();
                match mgr.bind(&mut a, 2) {
                    Ok(()) | Err(psp_driver::AsidError::FlushRequired { .. }) => {}
                    Err(e) => panic!("{e}"),
                }
                mgr.release(a).unwrap();
            })
        };
        mgr.flush().unwrap();
        t1.join().unwrap();
        check(&model);
    });
}
