//! SEAMCALL legality and status codes of the software TDX module against firmware facts
//! §5.4 (TDR lifecycle, TDCS OP_STATE table, per-call checks, operand-id encoding), plus
//! determinism and the private-memory model.

mod sim_tdx_common;

use kvm_coco::sim::tdx::*;
use sim_tdx_common::*;

// Status values typed from facts §5.4 (independent of the crate's constants).
const OP_STATE_INCORRECT: u64 = 0xC000_0608_0000_0000;
const LIFECYCLE_STATE_INCORRECT: u64 = 0xC000_0607_0000_0000;
const TDCS_NOT_ALLOCATED: u64 = 0xC000_0606_0000_0000;
const TD_KEYS_NOT_CONFIGURED: u64 = 0x8000_0810_0000_0000;
const KEY_CONFIGURED: u64 = 0x0000_0815_0000_0000;
const HKID_NOT_FREE: u64 = 0xC000_0820_0000_0000;
const TDCX_NUM_INCORRECT: u64 = 0xC000_0610_0000_0000;
const VCPU_STATE_INCORRECT: u64 = 0xC000_0700_0000_0000;
const MAX_VCPUS_EXCEEDED: u64 = 0xC000_0705_0000_0000;
const NO_VCPUS: u64 = 0xC000_0609_0000_0000;
const EPT_WALK_FAILED: u64 = 0xC000_0B00_0000_0000;
const EPT_ENTRY_NOT_PRESENT: u64 = 0xC000_0B03_0000_0000;
const EPT_ENTRY_STATE_INCORRECT: u64 = 0xC000_0B0D_0000_0000;
const OPERAND_INVALID: u64 = 0xC000_0100_0000_0000;
const RCX: u64 = 1;
const RDX: u64 = 2;

fn st<T: std::fmt::Debug>(r: Result<T, TdxStatus>) -> u64 {
    r.unwrap_err().raw()
}

#[test]
fn op_state_table_matches_facts() {
    use OpState::*;
    let all = [
        Uninitialized,
        Initialized,
        Runnable,
        LiveExport,
        PausedExport,
        PostExport,
        MemoryImport,
        StateImport,
        PostImport,
        LiveImport,
        FailedImport,
    ];
    // facts §5.4, by state number.
    let rows: [(SeamcallLeaf, &[u8]); 10] = [
        (SeamcallLeaf::MngInit, &[0]),
        (SeamcallLeaf::MngAddcx, &[0]),
        (SeamcallLeaf::VpCreate, &[1, 7]),
        (SeamcallLeaf::VpAddcx, &[1, 7]),
        (SeamcallLeaf::VpInit, &[1]),
        (SeamcallLeaf::MemSeptAdd, &[1, 2, 3, 6, 7, 8, 9]),
        (SeamcallLeaf::MemPageAdd, &[1]),
        (SeamcallLeaf::MrExtend, &[1]),
        (SeamcallLeaf::MrFinalize, &[1]),
        (SeamcallLeaf::VpEnter, &[2, 3, 9]),
    ];
    for (leaf, allowed) in rows {
        for (n, s) in all.iter().enumerate() {
            assert_eq!(
                leaf.allowed_in(*s),
                allowed.contains(&(n as u8)),
                "{leaf:?} in {s:?}"
            );
        }
    }
    assert_eq!(SeamcallLeaf::MngRd as u64, 11);
    assert_eq!(SeamcallLeaf::VpInit as u64, 22);
}

#[test]
fn create_and_key_config() {
    let cfg = TdxModuleConfig {
        num_packages: 2,
        ..Default::default()
    };
    let mut m = SimTdxModule::new(cfg);
    let td = m.tdh_mng_create(3).unwrap();
    assert_eq!(st(m.tdh_mng_create(3)), HKID_NOT_FREE);
    assert_eq!(st(m.tdh_mng_create(0)), OPERAND_INVALID + RDX);
    assert_eq!(m.lifecycle(td), Some(Lifecycle::HkidAssigned));
    // TDCS-mapped and ADDCX calls before every package has the key.
    m.tdh_mng_key_config(td, 0).unwrap();
    assert_eq!(st(m.tdh_mng_key_config(td, 0)), KEY_CONFIGURED);
    assert_eq!(st(m.tdh_mng_addcx(td)), TD_KEYS_NOT_CONFIGURED);
    assert_eq!(st(m.tdh_vp_create(td)), TD_KEYS_NOT_CONFIGURED);
    m.tdh_mng_key_config(td, 1).unwrap();
    assert_eq!(m.lifecycle(td), Some(Lifecycle::KeysConfigured));
    assert_eq!(st(m.tdh_mng_key_config(td, 1)), LIFECYCLE_STATE_INCORRECT);
    // Fewer than 6 TDCS pages.
    for _ in 0..5 {
        m.tdh_mng_addcx(td).unwrap();
    }
    assert_eq!(
        m.tdh_mng_init(td, &good_params()).unwrap_err().0.raw(),
        TDCS_NOT_ALLOCATED
    );
    assert_eq!(st(m.tdh_vp_create(td)), TDCS_NOT_ALLOCATED);
    for _ in 0..4 {
        m.tdh_mng_addcx(td).unwrap();
    }
    assert_eq!(
        st(m.tdh_mng_addcx(td)),
        TDCX_NUM_INCORRECT + RCX,
        "a 10th TDCS page"
    );
    // OP_STATE 0: build calls refused.
    assert_eq!(st(m.tdh_vp_create(td)), OP_STATE_INCORRECT);
    assert_eq!(
        st(m.tdh_mem_page_add(td, 0, &[0; 4096])),
        OP_STATE_INCORRECT
    );
    assert_eq!(st(m.tdh_mr_extend(td, 0)), OP_STATE_INCORRECT);
    assert_eq!(st(m.tdh_mr_finalize(td)), OP_STATE_INCORRECT);
    assert_eq!(st(m.tdh_mem_sept_add(td, 0, 1)), OP_STATE_INCORRECT);
    m.tdh_mng_init(td, &good_params()).unwrap();
    assert_eq!(m.op_state(td), Some(OpState::Initialized));
    assert_eq!(
        m.tdh_mng_init(td, &good_params()).unwrap_err().0.raw(),
        OP_STATE_INCORRECT
    );
    m.teardown(td);
    assert_eq!(m.free_hkid(), Some(1));
    m.tdh_mng_create(3).unwrap();
}

#[test]
fn mng_init_reports_the_bad_field() {
    let mut m = SimTdxModule::new(TdxModuleConfig::default());
    let td = m.tdh_mng_create(1).unwrap();
    m.tdh_mng_key_config(td, 0).unwrap();
    for _ in 0..6 {
        m.tdh_mng_addcx(td).unwrap();
    }
    let mut p = good_params();
    p.max_vcpus = 0.into();
    assert_eq!(
        m.tdh_mng_init(td, &p).unwrap_err().0.raw(),
        OPERAND_INVALID + 68
    );
    // Still UNINITIALIZED: a corrected TD_PARAMS is accepted.
    assert_eq!(m.op_state(td), Some(OpState::Uninitialized));
    m.tdh_mng_init(td, &good_params()).unwrap();
    assert_eq!(
        st(m.tdh_mng_addcx(td)),
        OP_STATE_INCORRECT,
        "ADDCX after MNG.INIT"
    );
}

#[test]
fn vcpu_calls() {
    let mut m = SimTdxModule::new(TdxModuleConfig::default());
    let mut p = good_params();
    p.max_vcpus = 1.into();
    let td = module_td(&mut m, &p);
    let vp = m.tdh_vp_create(td).unwrap();
    assert_eq!(
        st(m.tdh_vp_init(vp, 0)),
        TDCX_NUM_INCORRECT + RCX,
        "TDVPS pages missing"
    );
    for _ in 0..5 {
        m.tdh_vp_addcx(vp).unwrap();
    }
    assert_eq!(
        st(m.tdh_vp_addcx(vp)),
        TDCX_NUM_INCORRECT + RCX,
        "too many TDVPS pages"
    );
    m.tdh_vp_init(vp, 7).unwrap();
    assert_eq!(st(m.tdh_vp_init(vp, 7)), VCPU_STATE_INCORRECT);
    assert_eq!(st(m.tdh_vp_addcx(vp)), VCPU_STATE_INCORRECT);
    let vp2 = m.tdh_vp_create(td).unwrap();
    for _ in 0..5 {
        m.tdh_vp_addcx(vp2).unwrap();
    }
    assert_eq!(st(m.tdh_vp_init(vp2, 0)), MAX_VCPUS_EXCEEDED);
    assert_eq!(
        st(m.tdh_vp_enter(vp)),
        OP_STATE_INCORRECT,
        "VP.ENTER before finalize"
    );
    m.tdh_mr_finalize(td).unwrap();
    m.tdh_vp_enter(vp).unwrap();
    assert_eq!(st(m.tdh_vp_enter(vp2)), VCPU_STATE_INCORRECT);
    assert_eq!(
        st(m.tdh_vp_create(td)),
        OP_STATE_INCORRECT,
        "VP.CREATE when RUNNABLE"
    );
    assert_eq!(st(m.tdh_vp_init(vp2, 0)), OP_STATE_INCORRECT);
}

#[test]
fn memory_calls() {
    let mut m = SimTdxModule::new(TdxModuleConfig::default());
    let td = module_td(&mut m, &good_params());
    let page = [1u8; 4096];
    // No Secure-EPT parents.
    assert_eq!(
        st(m.tdh_mem_page_add(td, 0x20_0000, &page)),
        EPT_WALK_FAILED + RCX
    );
    assert_eq!(
        st(m.tdh_mem_sept_add(td, 0x20_0000, 1)),
        EPT_WALK_FAILED + RCX,
        "level 1 before 2"
    );
    sept_for(&mut m, td, 0x20_0000);
    assert_eq!(
        st(m.tdh_mem_sept_add(td, 0x20_0000, 1)),
        EPT_ENTRY_STATE_INCORRECT + RCX
    );
    assert_eq!(
        st(m.tdh_mem_sept_add(td, 0x20_0000, 4)),
        OPERAND_INVALID + RCX,
        "4-level EPT"
    );
    // Operands.
    assert_eq!(
        st(m.tdh_mem_page_add(td, 0x20_0800, &page)),
        OPERAND_INVALID + RCX
    );
    assert_eq!(
        st(m.tdh_mem_page_add(td, (1 << 47) | 0x20_0000, &page)),
        OPERAND_INVALID + RCX,
        "shared GPA"
    );
    // MR.EXTEND on an unmapped GPA, then PAGE.ADD twice.
    assert_eq!(
        st(m.tdh_mr_extend(td, 0x20_0000)),
        EPT_ENTRY_NOT_PRESENT + RCX
    );
    assert_eq!(
        st(m.tdh_mr_extend(td, 0x4000_0000)),
        EPT_ENTRY_NOT_PRESENT + RCX,
        "walk failure"
    );
    m.tdh_mem_page_add(td, 0x20_0000, &page).unwrap();
    assert_eq!(
        st(m.tdh_mem_page_add(td, 0x20_0000, &page)),
        EPT_ENTRY_STATE_INCORRECT + RCX
    );
    assert_eq!(
        st(m.tdh_mr_extend(td, 0x20_0080)),
        OPERAND_INVALID + RCX,
        "not 256-aligned"
    );
    m.tdh_mr_extend(td, 0x20_0F00).unwrap();
    // MR.FINALIZE without an initialized vCPU.
    assert_eq!(st(m.tdh_mr_finalize(td)), NO_VCPUS);
    assert_eq!(m.mrtd(td), None);
    module_vcpu(&mut m, td);
    m.tdh_mr_finalize(td).unwrap();
    assert_eq!(m.op_state(td), Some(OpState::Runnable));
    assert_eq!(st(m.tdh_mr_finalize(td)), OP_STATE_INCORRECT);
    assert_eq!(
        st(m.tdh_mem_page_add(td, 0x20_1000, &page)),
        OP_STATE_INCORRECT
    );
    assert_eq!(st(m.tdh_mr_extend(td, 0x20_0000)), OP_STATE_INCORRECT);
    // Out-of-range levels are refused or answered, never a panic.
    assert!(!m.sept_present(td, u64::MAX, u8::MAX));
    assert_eq!(
        st(m.tdh_mem_sept_add(td, 0, u8::MAX)),
        OPERAND_INVALID + RCX
    );
    // SEPT.ADD stays legal when RUNNABLE.
    m.tdh_mem_sept_add(td, 0x4000_0000, 2).unwrap();
}

#[test]
fn guest_calls_need_a_running_td() {
    let mut m = SimTdxModule::new(TdxModuleConfig::default());
    let td = module_td(&mut m, &good_params());
    assert_eq!(
        st(m.tdg_mr_rtmr_extend(td, 0, &[0; 48])),
        OP_STATE_INCORRECT
    );
    assert_eq!(st(m.tdg_mr_report(td, &[0; 64])), OP_STATE_INCORRECT);
}

#[test]
fn private_memory_is_ciphertext_to_the_host() {
    let secret = [0x42u8; 4096];
    let launch = |seed: u8| {
        let cfg = TdxModuleConfig {
            seed: [seed; 32],
            ..Default::default()
        };
        let mut m = SimTdxModule::new(cfg);
        let td = module_td(&mut m, &good_params());
        sept_for(&mut m, td, 0x1000);
        m.tdh_mem_page_add(td, 0x1000, &secret).unwrap();
        (m, td)
    };
    let (m, td) = launch(1);
    let host = m.host_read_private(td, 0x1000).unwrap();
    assert_ne!(host, secret);
    // Not a trivial transform: no 64-byte window of the plaintext survives.
    assert!(host.windows(64).all(|w| w != &secret[..64]));
    assert_eq!(*m.guest_read_private(td, 0x1000).unwrap(), secret);
    // Deterministic per seed; different seed → different key, UUID and ciphertext.
    let (m2, td2) = launch(1);
    assert_eq!(m2.host_read_private(td2, 0x1000).unwrap(), host);
    assert_eq!(m2.td_uuid(td2), m.td_uuid(td));
    let (m3, td3) = launch(2);
    assert_ne!(m3.host_read_private(td3, 0x1000).unwrap(), host);
    assert_ne!(m3.td_uuid(td3), m.td_uuid(td));
    // Two TDs on one module: different keys.
    let mut m = m;
    let td_b = module_td(&mut m, &good_params());
    sept_for(&mut m, td_b, 0x1000);
    m.tdh_mem_page_add(td_b, 0x1000, &secret).unwrap();
    assert_ne!(m.host_read_private(td_b, 0x1000).unwrap(), host);
    assert_ne!(m.td_uuid(td_b), m.td_uuid(td));
}

#[test]
fn status_display() {
    let s = TdxStatus(EPT_ENTRY_STATE_INCORRECT + RCX);
    assert_eq!(
        s.to_string(),
        "TDX_EPT_ENTRY_STATE_INCORRECT (0xc0000b0d00000001, operand RCX)"
    );
    assert_eq!(s.class(), 0x0B);
    assert_eq!(s.operand_id(), 1);
    assert_eq!(
        TdxStatus(NO_VCPUS).to_string(),
        "TDX_NO_VCPUS (0xc000060900000000)"
    );
    assert_eq!(
        TdxStatus(OPERAND_INVALID + 70).to_string(),
        "TDX_OPERAND_INVALID (0xc000010000000046, operand TSC_FREQUENCY)"
    );
}
