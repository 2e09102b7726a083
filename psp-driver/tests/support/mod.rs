//! A checking firmware model for the ASID protocol tests.
//!
//! It implements the firmware's ASID rules of facts firmware-and-measurement.md §6.3
//! (clean / in use / dirty, the WBINVD indicator that DEACTIVATE clears and DF_FLUSH needs)
//! and records every protocol violation instead of trusting the code under test:
//! two commands in flight at once, ACTIVATE of a dirty or owned ASID, DF_FLUSH while a
//! DEACTIVATE slipped in after the write-back, DECOMMISSION of a still-active guest.
#![allow(dead_code)]

use psp_driver::{
    Completion, SevCmd, SevDataActivate, SevDataDeactivate, SevDataDecommission,
    SevDataSnpActivate, SevDataSnpAddr, SevRetCode, Transport,
};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use zerocopy::FromBytes;

#[derive(Debug, Default)]
pub struct State {
    pub handle_asid: HashMap<u32, u32>,
    pub gctx_asid: HashMap<u64, u32>,
    pub in_use: BTreeSet<u32>,
    pub dirty: BTreeSet<u32>,
    pub wbinvd_done: bool,
    pub violations: Vec<String>,
    pub counts: HashMap<SevCmd, usize>,
    pub wbinvd_calls: usize,
    /// Make the next DF_FLUSH / SNP_DF_FLUSH fail with this status.
    pub fail_next_flush: Option<SevRetCode>,
}

#[derive(Debug, Default)]
pub struct FwModel {
    in_flight: AtomicUsize,
    pub state: Mutex<State>,
    /// Spin this many iterations inside each command to widen race windows.
    pub dwell: usize,
}

impl FwModel {
    pub fn new(dwell: usize) -> Arc<Self> {
        Arc::new(FwModel {
            dwell,
            ..Default::default()
        })
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// The host's cache write-back: sets the WBINVD indicator.
    pub fn wbinvd(&self) {
        let mut st = self.state();
        st.wbinvd_done = true;
        st.wbinvd_calls += 1;
    }

    pub fn count(&self, cmd: SevCmd) -> usize {
        self.state().counts.get(&cmd).copied().unwrap_or(0)
    }

    pub fn violations(&self) -> Vec<String> {
        self.state().violations.clone()
    }

    fn execute(&self, cmd: SevCmd, buf: &mut [u8]) -> SevRetCode {
        let mut guard = self.state();
        let st = &mut *guard;
        *st.counts.entry(cmd).or_default() += 1;
        match cmd {
            SevCmd::Activate => {
                let Ok(a) = SevDataActivate::read_from_bytes(buf) else {
                    return SevRetCode::InvalidLen;
                };
                let (handle, asid) = (a.handle, a.asid);
                activate(st, asid, cmd, |st| {
                    st.handle_asid.insert(handle, asid);
                })
            }
            SevCmd::SnpActivate => {
                let Ok(a) = SevDataSnpActivate::read_from_bytes(buf) else {
                    return SevRetCode::InvalidLen;
                };
                let (gctx, asid) = (a.gctx_paddr, a.asid);
                activate(st, asid, cmd, |st| {
                    st.gctx_asid.insert(gctx, asid);
                })
            }
            SevCmd::Deactivate => {
                let Ok(d) = SevDataDeactivate::read_from_bytes(buf) else {
                    return SevRetCode::InvalidLen;
                };
                match st.handle_asid.remove(&{ d.handle }) {
                    Some(asid) => {
                        st.in_use.remove(&asid);
                        st.dirty.insert(asid);
                        st.wbinvd_done = false;
                        SevRetCode::Success
                    }
                    None => SevRetCode::Inactive,
                }
            }
            SevCmd::Decommission => {
                let Ok(d) = SevDataDecommission::read_from_bytes(buf) else {
                    return SevRetCode::InvalidLen;
                };
                if st.handle_asid.contains_key(&{ d.handle }) {
                    st.violations
                        .push(format!("DECOMMISSION of active handle {}", { d.handle }));
                    return SevRetCode::Active;
                }
                SevRetCode::Success
            }
            SevCmd::SnpDecommission => {
                let Ok(d) = SevDataSnpAddr::read_from_bytes(buf) else {
                    return SevRetCode::InvalidLen;
                };
                if let Some(asid) = st.gctx_asid.remove(&{ d.address }) {
                    st.in_use.remove(&asid);
                    st.dirty.insert(asid);
                    st.wbinvd_done = false;
                }
                SevRetCode::Success
            }
            SevCmd::DfFlush | SevCmd::SnpDfFlush => {
                if !buf.is_empty() {
                    st.violations
                        .push(format!("{cmd} with a {}-byte buffer", buf.len()));
                }
                if let Some(status) = st.fail_next_flush.take() {
                    return status;
                }
                if !st.dirty.is_empty() && !st.wbinvd_done {
                    let msg = format!(
                        "{cmd} without a WBINVD since the last DEACTIVATE (dirty {:?})",
                        st.dirty
                    );
                    st.violations.push(msg);
                    return SevRetCode::WbinvdRequired;
                }
                st.dirty.clear();
                SevRetCode::Success
            }
            _ => SevRetCode::Success,
        }
    }
}

fn activate(st: &mut State, asid: u32, cmd: SevCmd, bind: impl FnOnce(&mut State)) -> SevRetCode {
    if st.in_use.contains(&asid) {
        st.violations
            .push(format!("{cmd} of ASID {asid}, which is in use"));
        return SevRetCode::AsidOwned;
    }
    if st.dirty.contains(&asid) {
        st.violations.push(format!("{cmd} of dirty ASID {asid}"));
        return SevRetCode::DfflushRequired;
    }
    st.in_use.insert(asid);
    bind(st);
    SevRetCode::Success
}

/// The transport side of a shared [`FwModel`].
#[derive(Debug, Clone)]
pub struct Checking(pub Arc<FwModel>);

impl Transport for Checking {
    fn submit(&self, cmd: SevCmd, buf: &mut [u8]) -> Completion {
        let model = &self.0;
        if model.in_flight.fetch_add(1, Ordering::SeqCst) != 0 {
            model
                .state()
                .violations
                .push(format!("{cmd} issued while another command was in flight"));
        }
        for _ in 0..model.dwell {
            std::hint::spin_loop();
        }
        if model.dwell > 0 {
            std::thread::yield_now();
        }
        let status = model.execute(cmd, buf);
        model.in_flight.fetch_sub(1, Ordering::SeqCst);
        Completion::firmware(status)
    }
}

/// SplitMix64: a tiny deterministic generator for the stress test's action sequences.
#[derive(Debug, Clone)]
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
