//! The kernel's errno and `kvm_sev_cmd.error` for every out-of-order or malformed call of
//! linux-uapi facts §3.1 (dispatcher), §3.2–§3.3 (argument checks) and §10.1–§10.3 (launch
//! flows), with firmware statuses from firmware-and-measurement facts §1.2, §1.8, §3.5, §6.

mod sim_sev_common;

use std::sync::Arc;

use kvm_coco::sim::sev::*;
use kvm_coco_uapi::*;
use sim_sev_common::*;
use zerocopy::IntoBytes;

const EINVAL: i32 = libc::EINVAL;
const ENOTTY: i32 = libc::ENOTTY;
const EPERM: i32 = libc::EPERM;
const EIO: i32 = libc::EIO;
const EBADF: i32 = libc::EBADF;
const ENOMEM: i32 = libc::ENOMEM;

// Firmware statuses (facts firmware-and-measurement §1.2).
const INVALID_PLATFORM_STATE: u32 = 0x01;
const INVALID_GUEST_STATE: u32 = 0x02;
const POLICY_FAILURE: u32 = 0x07;
const ASID_OWNED: u32 = 0x0C;
const INVALID_GUEST: u32 = 0x10;
const INVALID_ASID: u32 = 0x0D;
const INVALID_PARAM: u32 = 0x16;

/// Issues `id` with a raw payload and an `error` pre-set to a marker; returns the errno (0
/// for success) and `error` as copied back.
fn raw(vm: &SimSevVm, id: u32, fd: i32, payload: &mut [u8]) -> (i32, u32) {
    let mut cmd = KvmSevCmd {
        id,
        sev_fd: fd as u32,
        error: 0xAA,
        ..Default::default()
    };
    let r = vm.mem_enc_op(&mut cmd, payload);
    (r.err().map_or(0, |e| e.raw()), cmd.error)
}

fn e<T: zerocopy::IntoBytes + zerocopy::FromBytes + zerocopy::KnownLayout>(
    vm: &SimSevVm,
    id: u32,
    fd: i32,
    arg: &mut T,
) -> (i32, u32) {
    raw(vm, id, fd, arg.as_mut_bytes())
}

fn none(vm: &SimSevVm, id: u32, fd: i32) -> (i32, u32) {
    raw(vm, id, fd, &mut [])
}

fn init2(s: &Session, init: KvmSevInit) -> (i32, u32) {
    let mut i = init;
    e(&s.vm, KVM_SEV_INIT2, s.sev_fd, &mut i)
}

#[test]
fn dispatcher_rules() {
    let h = host();
    let s = Session::new(&h, KVM_X86_SEV_VM);
    // Unknown ids and the handler-less ids: EINVAL, `error` untouched.
    for id in [10, 14, 19, 23, 99, 104, 1000] {
        assert_eq!(
            raw(&s.vm, id, s.sev_fd, &mut [0; 64]),
            (EINVAL, 0xAA),
            "id {id}"
        );
    }
    // Before INIT: ENOTTY; RECEIVE_UPDATE_DATA and SNP_LAUNCH_UPDATE: EINVAL.
    for id in [
        2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 15, 16, 17, 18, 20, 21, 100, 102,
    ] {
        assert_eq!(
            raw(&s.vm, id, s.sev_fd, &mut [0; 128]),
            (ENOTTY, 0xAA),
            "id {id}"
        );
    }
    for id in [13, 101, 103] {
        assert_eq!(
            raw(&s.vm, id, s.sev_fd, &mut [0; 128]),
            (EINVAL, 0xAA),
            "id {id}"
        );
    }
    // A short payload: EFAULT (copy_from_user).
    assert_eq!(
        raw(&s.vm, KVM_SEV_INIT2, s.sev_fd, &mut [0; 8]).0,
        libc::EFAULT
    );
    // SEV disabled in kvm_amd: every command is ENOTTY.
    let off = SimSevHost::new(SimSevConfig {
        sev: false,
        ..SimSevConfig::default()
    })
    .unwrap();
    let vm0 = SimSevVm::new(&off, KVM_X86_DEFAULT_VM).unwrap();
    assert_eq!(none(&vm0, KVM_SEV_INIT, 3).0, ENOTTY);
    assert_eq!(
        SimSevVm::new(&off, KVM_X86_SEV_VM).unwrap_err().raw(),
        EINVAL
    );
    // Types the model does not offer.
    assert_eq!(SimSevVm::new(&h, KVM_X86_TDX_VM).unwrap_err().raw(), EINVAL);
}

#[test]
fn init_checks() {
    let h = host();
    let sev = Session::new(&h, KVM_X86_SEV_VM);
    let es = Session::new(&h, KVM_X86_SEV_ES_VM);
    let snp = Session::new(&h, KVM_X86_SNP_VM);
    let bad = |flags, vmsa_features, ghcb_version| KvmSevInit {
        flags,
        vmsa_features,
        ghcb_version,
        ..Default::default()
    };
    for (s, i) in [
        (&sev, bad(1, 0, 0)),
        (&sev, bad(0, SVM_SEV_FEAT_DEBUG_SWAP, 0)),
        (&sev, bad(0, 0, 1)),
        (&es, bad(0, SVM_SEV_FEAT_SECURE_TSC, 0)),
        (&es, bad(0, SVM_SEV_FEAT_SNP_ACTIVE, 0)),
        (&es, bad(0, 0, 3)),
        (&snp, bad(0, 0, 1)),
        (&snp, bad(0, SVM_SEV_FEAT_SNP_ACTIVE, 0)),
        (&snp, bad(0, 1 << 3, 0)),
    ] {
        assert_eq!(init2(s, i).0, EINVAL, "{i:?}");
    }
    // Padding is not checked; ghcb 1 is fine for SEV-ES; features offered are accepted.
    let mut ok = bad(0, SVM_SEV_FEAT_DEBUG_SWAP, 1);
    ok.pad1 = 7;
    ok.pad2 = [9; 8];
    assert_eq!(
        init2(&es, ok),
        (0, 0xAA),
        "no firmware command issued after platform init? error untouched"
    );
    assert_eq!(init2(&es, KvmSevInit::default()).0, EINVAL, "second INIT2");
    assert_eq!(
        none(&es.vm, KVM_SEV_INIT, es.sev_fd).0,
        EINVAL,
        "legacy INIT on a non-DEFAULT VM"
    );
    assert_eq!(init2(&snp, bad(0, SVM_SEV_FEAT_SECURE_TSC, 2)).0, 0);
    // INIT2 after a vCPU exists.
    let late = Session::new(&h, KVM_X86_SEV_VM);
    late.vm.create_vcpu(0).unwrap();
    assert_eq!(init2(&late, KvmSevInit::default()).0, EINVAL);
    // INIT2 on a DEFAULT VM; legacy INIT / ES_INIT there, once.
    let d = Session::new(&h, KVM_X86_DEFAULT_VM);
    assert_eq!(init2(&d, KvmSevInit::default()).0, EINVAL);
    assert_eq!(none(&d.vm, KVM_SEV_ES_INIT, d.sev_fd).0, 0);
    assert_eq!(none(&d.vm, KVM_SEV_INIT, d.sev_fd).0, EINVAL);
    assert!(!d.vm.has_protected_state());
    // ES_INIT with SEV-ES disabled: ENOTTY.
    let no_es = SimSevHost::new(SimSevConfig {
        sev_es: false,
        ..SimSevConfig::default()
    })
    .unwrap();
    let d = SimSevVm::new(&no_es, KVM_X86_DEFAULT_VM).unwrap();
    assert_eq!(none(&d, KVM_SEV_ES_INIT, 3).0, ENOTTY);
    assert_eq!(none(&d, KVM_SEV_INIT, 3).0, 0);
}

#[test]
fn snp_active_vm_refuses_legacy_ids_with_eperm() {
    let h = host();
    let s = Session::new(&h, KVM_X86_SNP_VM);
    s.init2(0);
    for id in [0, 1, 2, 3, 4, 6, 7, 10, 16, 17, 18, 20, 22, 50, 99] {
        assert_eq!(
            raw(&s.vm, id, s.sev_fd, &mut [0; 64]),
            (EPERM, 0xAA),
            "id {id}"
        );
    }
    // Unknown ids >= 100 are still EINVAL.
    assert_eq!(raw(&s.vm, 104, s.sev_fd, &mut [0; 64]).0, EINVAL);
}

/// Launched SEV guest with `policy` on a fresh host; RAM at GPA 0x10_0000.
fn sev_started(h: &Arc<SimSevHost>, vm_type: u32, policy: u32) -> (Session, u64) {
    let mut s = Session::new(h, vm_type);
    s.init2(0);
    let ram = s.add_ram(0, 0x10_0000, 0x2000);
    let mut st = KvmSevLaunchStart {
        policy,
        ..Default::default()
    };
    assert_eq!(e(&s.vm, KVM_SEV_LAUNCH_START, s.sev_fd, &mut st), (0, 0));
    (s, ram)
}

fn update(s: &Session, uaddr: u64, len: u32) -> (i32, u32) {
    let mut d = KvmSevLaunchUpdateData {
        uaddr,
        len,
        ..Default::default()
    };
    e(&s.vm, KVM_SEV_LAUNCH_UPDATE_DATA, s.sev_fd, &mut d)
}

fn measure(s: &Session) -> (i32, u32) {
    let out = s.host.mmap(48).unwrap();
    let mut m = KvmSevLaunchMeasure {
        uaddr: out,
        len: 48,
        ..Default::default()
    };
    e(&s.vm, KVM_SEV_LAUNCH_MEASURE, s.sev_fd, &mut m)
}

fn secret(s: &Session, guest: u64) -> (i32, u32) {
    let hdr = s.host.mmap(52).unwrap();
    let trans = s.host.mmap(16).unwrap();
    let mut p = KvmSevLaunchSecret {
        hdr_uaddr: hdr,
        hdr_len: 52,
        guest_uaddr: guest,
        guest_len: 16,
        trans_uaddr: trans,
        trans_len: 16,
        ..Default::default()
    };
    e(&s.vm, KVM_SEV_LAUNCH_SECRET, s.sev_fd, &mut p)
}

#[test]
fn sev_out_of_order_rows() {
    let h = host();
    let mut s = Session::new(&h, KVM_X86_SEV_VM);
    s.init2(0);
    let ram = s.add_ram(0, 0x10_0000, 0x2000);
    // Before LAUNCH_START the remembered sev fd is 0, which is not /dev/sev: EBADF.
    assert_eq!(update(&s, ram, 16), (EBADF, 0xAA));
    assert_eq!(measure(&s), (EBADF, 0xAA));
    assert_eq!(none(&s.vm, KVM_SEV_LAUNCH_FINISH, s.sev_fd), (EBADF, 0xAA));
    // With fd 0 being /dev/sev, the firmware decides: no guest yet, the platform is INIT.
    h.dup2(s.sev_fd, 0).unwrap();
    assert_eq!(update(&s, ram, 16), (EIO, INVALID_PLATFORM_STATE));
    assert_eq!(measure(&s), (EIO, INVALID_PLATFORM_STATE));
    let mut gs = KvmSevGuestStatus::default();
    // GUEST_STATUS on handle 0: success, state 0 (facts §1.7).
    assert_eq!(e(&s.vm, KVM_SEV_GUEST_STATUS, s.sev_fd, &mut gs), (0, 0));
    assert_eq!(gs.state, 0);
    // Another guest makes the platform WORKING: handle 0 is then INVALID_GUEST.
    let (_other, _) = sev_started(&h, KVM_X86_SEV_VM, 0);
    assert_eq!(update(&s, ram, 16), (EIO, INVALID_GUEST));
    assert_eq!(measure(&s), (EIO, INVALID_GUEST));

    // LAUNCH_START with a wrong fd: EBADF (not /dev/sev, or not open).
    let other = h.open_other();
    let mut st = KvmSevLaunchStart::default();
    assert_eq!(e(&s.vm, KVM_SEV_LAUNCH_START, other, &mut st).0, EBADF);
    assert_eq!(e(&s.vm, KVM_SEV_LAUNCH_START, 999, &mut st).0, EBADF);
    // Blob checks: address with length 0 or > 16384.
    let blob = h.mmap(0x5000).unwrap();
    let mut st = KvmSevLaunchStart {
        dh_uaddr: blob,
        dh_len: 0,
        ..Default::default()
    };
    assert_eq!(e(&s.vm, KVM_SEV_LAUNCH_START, s.sev_fd, &mut st).0, EINVAL);
    st.dh_len = 16385;
    assert_eq!(e(&s.vm, KVM_SEV_LAUNCH_START, s.sev_fd, &mut st).0, EINVAL);
    // Key sharing with a handle that does not exist: INVALID_GUEST.
    let mut st = KvmSevLaunchStart {
        handle: 1000,
        ..Default::default()
    };
    assert_eq!(
        e(&s.vm, KVM_SEV_LAUNCH_START, s.sev_fd, &mut st),
        (EIO, INVALID_GUEST)
    );

    let mut st = KvmSevLaunchStart::default();
    assert_eq!(e(&s.vm, KVM_SEV_LAUNCH_START, s.sev_fd, &mut st), (0, 0));
    // A second LAUNCH_START: a new firmware guest, whose ACTIVATE of the VM's ASID fails.
    let mut st2 = KvmSevLaunchStart::default();
    assert_eq!(
        e(&s.vm, KVM_SEV_LAUNCH_START, s.sev_fd, &mut st2),
        (EIO, ASID_OWNED)
    );
    assert_eq!(s.vm.handle(), st.handle);
    // The fd number LAUNCH_START remembered is resolved again: closed, it is EBADF.
    h.close(s.sev_fd).unwrap();
    assert_eq!(update(&s, ram, 16), (EBADF, 0xAA));
    assert_eq!(h.open_dev_sev(), s.sev_fd, "same number reopened");
    // LUPDATE: FINISH and SECRET are out of order (INVALID_GUEST_STATE).
    assert_eq!(
        none(&s.vm, KVM_SEV_LAUNCH_FINISH, s.sev_fd),
        (EIO, INVALID_GUEST_STATE)
    );
    assert_eq!(secret(&s, ram), (EIO, INVALID_GUEST_STATE));
    // Argument checks of LAUNCH_UPDATE_DATA and LAUNCH_MEASURE.
    assert_eq!(update(&s, ram, 0).0, EINVAL);
    assert_eq!(
        update(&s, 0x1000, 16).0,
        ENOMEM,
        "unmapped user memory cannot be pinned"
    );
    let mut m = KvmSevLaunchMeasure {
        uaddr: blob,
        len: 16385,
        ..Default::default()
    };
    assert_eq!(e(&s.vm, KVM_SEV_LAUNCH_MEASURE, s.sev_fd, &mut m).0, EINVAL);
    // UPDATE_VMSA is SEV-ES only.
    assert_eq!(none(&s.vm, KVM_SEV_LAUNCH_UPDATE_VMSA, s.sev_fd).0, ENOTTY);
    assert_eq!(update(&s, ram, 0x2000), (0, 0));
    // Attestation before LAUNCH_MEASURE: INVALID_GUEST_STATE.
    let mut a = KvmSevAttestationReport::default();
    assert_eq!(
        e(&s.vm, KVM_SEV_GET_ATTESTATION_REPORT, s.sev_fd, &mut a),
        (EIO, INVALID_GUEST_STATE)
    );
    assert_eq!(measure(&s), (0, 0));
    // LSECRET: no more data, no second measure.
    assert_eq!(update(&s, ram, 16), (EIO, INVALID_GUEST_STATE));
    assert_eq!(measure(&s), (EIO, INVALID_GUEST_STATE));
    // Attestation length query: EIO with INVALID_LENGTH and the length written back.
    let mut a = KvmSevAttestationReport::default();
    assert_eq!(
        e(&s.vm, KVM_SEV_GET_ATTESTATION_REPORT, s.sev_fd, &mut a),
        (EIO, 0x04)
    );
    assert_eq!(a.len, 0xD0);
    assert_eq!(none(&s.vm, KVM_SEV_LAUNCH_FINISH, s.sev_fd), (0, 0));
    assert_eq!(
        none(&s.vm, KVM_SEV_LAUNCH_FINISH, s.sev_fd),
        (EIO, INVALID_GUEST_STATE)
    );
    // DBG with len 0 or dst 0.
    let mut d = KvmSevDbg {
        src_uaddr: ram,
        dst_uaddr: 0,
        len: 16,
        ..Default::default()
    };
    assert_eq!(e(&s.vm, KVM_SEV_DBG_DECRYPT, s.sev_fd, &mut d).0, EINVAL);
    d.dst_uaddr = blob;
    d.len = 0;
    assert_eq!(e(&s.vm, KVM_SEV_DBG_ENCRYPT, s.sev_fd, &mut d).0, EINVAL);
    // SEND_CANCEL needs SUPDATE (facts §6.2); the guest is RUNNING.
    assert_eq!(
        none(&s.vm, KVM_SEV_SEND_CANCEL, s.sev_fd),
        (EIO, INVALID_GUEST_STATE)
    );
}

#[test]
fn seves_update_vmsa_rows() {
    let h = host();
    // A policy without ES on an SEV-ES VM: the firmware creates the guest, but ACTIVATE of
    // an ASID from the SEV-ES range for a non-ES guest is INVALID_ASID (facts §6.3); the
    // handle is decommissioned again. Conversely for an ES policy on an SEV VM.
    let s = Session::new(&h, KVM_X86_SEV_ES_VM);
    s.init2(0);
    let mut st = KvmSevLaunchStart::default();
    assert_eq!(
        e(&s.vm, KVM_SEV_LAUNCH_START, s.sev_fd, &mut st),
        (EIO, INVALID_ASID)
    );
    assert_eq!(s.vm.handle(), 0);
    let s = Session::new(&h, KVM_X86_SEV_VM);
    s.init2(0);
    let mut st = KvmSevLaunchStart {
        policy: 0x4,
        ..Default::default()
    };
    assert_eq!(
        e(&s.vm, KVM_SEV_LAUNCH_START, s.sev_fd, &mut st),
        (EIO, INVALID_ASID)
    );

    let mut s = Session::new(&h, KVM_X86_SEV_ES_VM);
    s.init2(0);
    s.qemu_vcpus(2, 0x80_4004, 0x80_0F12);
    let mut st = KvmSevLaunchStart {
        policy: 0x4,
        ..Default::default()
    };
    assert_eq!(e(&s.vm, KVM_SEV_LAUNCH_START, s.sev_fd, &mut st), (0, 0));
    // KVM_SET_GUEST_DEBUG on vCPU 1, or DR7 bits: EINVAL before any firmware call.
    s.vcpus[1].set_guest_debug(true).unwrap();
    assert_eq!(none(&s.vm, KVM_SEV_LAUNCH_UPDATE_VMSA, s.sev_fd).0, EINVAL);
    s.vcpus[1].set_guest_debug(false).unwrap();
    s.vcpus[1].set_debug_regs(0xFFFF_0FF0, 0x401).unwrap();
    assert_eq!(none(&s.vm, KVM_SEV_LAUNCH_UPDATE_VMSA, s.sev_fd).0, EINVAL);
    // vCPU 0 was encrypted before vCPU 1 failed: it stays protected.
    assert!(s.vcpus[0].is_state_protected());
    assert!(!s.vcpus[1].is_state_protected());
    s.vcpus[1].set_debug_regs(0xFFFF_0FF0, 0x400).unwrap();
    // vCPU 0 is already protected: the retry fails at vCPU 0 (EINVAL), as in KVM.
    assert_eq!(none(&s.vm, KVM_SEV_LAUNCH_UPDATE_VMSA, s.sev_fd).0, EINVAL);

    // After LAUNCH_MEASURE the firmware refuses (LSECRET).
    let mut s = Session::new(&h, KVM_X86_SEV_ES_VM);
    s.init2(0);
    s.qemu_vcpus(1, 0, 0x80_0F12);
    let mut st = KvmSevLaunchStart {
        policy: 0x4,
        ..Default::default()
    };
    assert_eq!(e(&s.vm, KVM_SEV_LAUNCH_START, s.sev_fd, &mut st), (0, 0));
    assert_eq!(measure(&s), (0, 0));
    assert_eq!(
        none(&s.vm, KVM_SEV_LAUNCH_UPDATE_VMSA, s.sev_fd),
        (EIO, INVALID_GUEST_STATE)
    );
    assert!(!s.vcpus[0].is_state_protected());
    // KVM_RUN of an SEV-ES vCPU whose VMSA was never encrypted: EINVAL.
    assert_eq!(s.vcpus[0].run(0, 0).unwrap_err().raw(), EINVAL);
}

fn snp_session(h: &Arc<SimSevHost>) -> Session {
    let mut s = Session::new(h, KVM_X86_SNP_VM);
    s.init2(0);
    s.add_private_ram(0, 0x10_0000, 0x4000);
    s
}

fn snp_start(s: &Session, policy: u64, fd: i32) -> (i32, u32) {
    let mut st = KvmSevSnpLaunchStart {
        policy,
        ..Default::default()
    };
    e(&s.vm, KVM_SEV_SNP_LAUNCH_START, fd, &mut st)
}

fn snp_update(s: &Session, u: &mut KvmSevSnpLaunchUpdate) -> (i32, u32) {
    e(&s.vm, KVM_SEV_SNP_LAUNCH_UPDATE, s.sev_fd, u)
}

fn normal(gfn: u64, uaddr: u64, len: u64) -> KvmSevSnpLaunchUpdate {
    KvmSevSnpLaunchUpdate {
        gfn_start: gfn,
        uaddr,
        len,
        r#type: KVM_SEV_SNP_PAGE_TYPE_NORMAL as u8,
        ..Default::default()
    }
}

#[test]
fn snp_launch_start_rows() {
    let h = host();
    // Before INIT2: ENOTTY.
    let s0 = Session::new(&h, KVM_X86_SNP_VM);
    assert_eq!(snp_start(&s0, 0x30000, s0.sev_fd).0, ENOTTY);
    let s = snp_session(&h);
    // Policy checks (facts linux-uapi §3.3): bit 17 must be set; MIGRATE_MA (18) and bits
    // the host does not offer (21+) are refused; flags must be 0.
    assert_eq!(h.snp_policy_bits(), 0x1B_FFFF);
    for p in [
        0x10000,
        0x30000 | 1 << 18,
        0x30000 | 1 << 21,
        0x30000 | 1 << 63,
    ] {
        assert_eq!(snp_start(&s, p, s.sev_fd), (EINVAL, 0xAA), "policy {p:#x}");
    }
    let mut st = KvmSevSnpLaunchStart {
        policy: 0x30000,
        flags: 1,
        ..Default::default()
    };
    assert_eq!(
        e(&s.vm, KVM_SEV_SNP_LAUNCH_START, s.sev_fd, &mut st).0,
        EINVAL
    );
    // GCTX_CREATE cannot be issued (bad fd): ENOTTY.
    assert_eq!(snp_start(&s, 0x30000, h.open_other()), (ENOTTY, 0xAA));
    assert!(s.vm.snp_context().is_none());
    // SMT clear passes KVM; the firmware (SMT enabled) refuses it: POLICY_FAILURE, and the
    // context is torn down so a retry works.
    assert_eq!(snp_start(&s, 0x20000, s.sev_fd), (EIO, POLICY_FAILURE));
    assert!(s.vm.snp_context().is_none());
    assert_eq!(snp_start(&s, 0x30000, s.sev_fd), (0, 0));
    assert_eq!(snp_start(&s, 0x30000, s.sev_fd).0, EINVAL, "second start");
    // ENABLE_REQ_CERTS: before vCPUs only.
    assert_eq!(none(&s.vm, KVM_SEV_SNP_ENABLE_REQ_CERTS, s.sev_fd).0, 0);
    assert!(s.vm.req_certs_enabled());
    s.vm.create_vcpu(0).unwrap();
    assert_eq!(
        none(&s.vm, KVM_SEV_SNP_ENABLE_REQ_CERTS, s.sev_fd).0,
        EINVAL
    );
    // Not SNP: ENABLE_REQ_CERTS is EINVAL, SNP_LAUNCH_START ENOTTY.
    let (sev, _) = sev_started(&h, KVM_X86_SEV_VM, 0);
    assert_eq!(
        none(&sev.vm, KVM_SEV_SNP_ENABLE_REQ_CERTS, sev.sev_fd).0,
        EINVAL
    );
    assert_eq!(snp_start(&sev, 0x30000, sev.sev_fd).0, ENOTTY);
}

#[test]
fn snp_launch_update_rows() {
    let h = host();
    let mut s = snp_session(&h);
    let src = h.mmap(0x4000).unwrap();
    // Before SNP_LAUNCH_START: EINVAL.
    assert_eq!(
        snp_update(&s, &mut normal(0x100, src, 0x1000)),
        (EINVAL, 0xAA)
    );
    assert_eq!(snp_start(&s, 0x30000, s.sev_fd), (0, 0));
    // Argument checks.
    for mut u in [
        normal(0x100, src, 0),
        normal(0x100, src, 0x800),
        normal(0x100, src + 8, 0x1000),
        normal(0x100, 0, 0x1000),
        KvmSevSnpLaunchUpdate {
            flags: 1,
            ..normal(0x100, src, 0x1000)
        },
        KvmSevSnpLaunchUpdate {
            r#type: 0,
            ..normal(0x100, src, 0x1000)
        },
        KvmSevSnpLaunchUpdate {
            r#type: 2,
            ..normal(0x100, src, 0x1000)
        },
        KvmSevSnpLaunchUpdate {
            r#type: 7,
            ..normal(0x100, src, 0x1000)
        },
        // No memslot; a memslot without guest_memfd.
        normal(0x900, src, 0x1000),
    ] {
        assert_eq!(snp_update(&s, &mut u), (EINVAL, 0xAA), "{u:?}");
    }
    s.add_ram(1, 0x20_0000, 0x1000);
    assert_eq!(
        snp_update(&s, &mut normal(0x200, src, 0x1000)),
        (EINVAL, 0xAA)
    );
    // Not PRIVATE: nothing processed, EIO with error 0 (no firmware call).
    s.vm.set_memory_attributes(&KvmMemoryAttributes {
        address: 0x10_2000,
        size: 0x1000,
        attributes: 0,
        flags: 0,
    })
    .unwrap();
    assert_eq!(snp_update(&s, &mut normal(0x102, src, 0x1000)), (EIO, 0));
    // Partial progress: page 0x101 succeeds, 0x102 is shared: success with the rest left.
    let mut u = normal(0x101, src, 0x2000);
    assert_eq!(
        snp_update(&s, &mut u),
        (0, 0xAA),
        "success leaves error as passed"
    );
    assert_eq!((u.gfn_start, u.len, u.uaddr), (0x102, 0x1000, src + 0x1000));
    // Already populated: EIO (EEXIST internally).
    assert_eq!(snp_update(&s, &mut normal(0x101, src, 0x1000)), (EIO, 0));
    // Clamped to the end of the slot: 0x103 is the last page of the slot.
    let mut u = KvmSevSnpLaunchUpdate {
        r#type: KVM_SEV_SNP_PAGE_TYPE_ZERO as u8,
        ..normal(0x103, 0, 0x3000)
    };
    assert_eq!(
        snp_update(&s, &mut u),
        (0, 0xAA),
        "success leaves error as passed"
    );
    assert_eq!(
        (u.gfn_start, u.len, u.uaddr),
        (0x104, 0x2000, 0),
        "ZERO keeps uaddr"
    );
    // A bad sev_fd: EIO, error 0.
    let mut cmd = KvmSevCmd {
        id: KVM_SEV_SNP_LAUNCH_UPDATE,
        sev_fd: h.open_other() as u32,
        ..Default::default()
    };
    let mut u = normal(0x100, src, 0x1000);
    assert_eq!(
        s.vm.mem_enc_op(&mut cmd, u.as_mut_bytes())
            .unwrap_err()
            .raw(),
        EIO
    );
    assert_eq!(cmd.error, 0);
    // CPUID page the firmware rejects (leaf 7 EBX bit 2): EIO with INVALID_PARAM and the
    // corrected page copied back into the source buffer.
    let mut page = vec![0u8; 4096];
    page[0..4].copy_from_slice(&1u32.to_le_bytes());
    page[0x10..0x14].copy_from_slice(&7u32.to_le_bytes());
    page[0x10 + 28..0x10 + 32].copy_from_slice(&u32::MAX.to_le_bytes());
    let cpuid = h.mmap_bytes(&page).unwrap();
    let mut u = KvmSevSnpLaunchUpdate {
        r#type: KVM_SEV_SNP_PAGE_TYPE_CPUID as u8,
        ..normal(0x100, cpuid, 0x1000)
    };
    assert_eq!(snp_update(&s, &mut u), (EIO, INVALID_PARAM));
    let back = h.read_user_vec(cpuid, 4096).unwrap();
    assert_eq!(
        u32::from_le_bytes(back[0x10 + 28..0x10 + 32].try_into().unwrap()),
        !(1u32 << 2)
    );
    // The page went back to the hypervisor: the corrected table is accepted.
    assert_eq!(
        snp_update(&s, &mut u),
        (0, 0xAA),
        "success leaves error as passed"
    );
    // After SNP_LAUNCH_FINISH the firmware refuses more pages (guest not in LAUNCH).
    let mut fin = KvmSevSnpLaunchFinish::default();
    assert_eq!(
        e(&s.vm, KVM_SEV_SNP_LAUNCH_FINISH, s.sev_fd, &mut fin),
        (0, 0)
    );
    s.vm.set_memory_attributes(&KvmMemoryAttributes {
        address: 0x10_2000,
        size: 0x1000,
        attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE,
        flags: 0,
    })
    .unwrap();
    assert_eq!(
        snp_update(&s, &mut normal(0x102, src, 0x1000)),
        (EIO, INVALID_GUEST_STATE)
    );
}

#[test]
fn snp_launch_finish_rows() {
    let h = host();
    let mut s = snp_session(&h);
    s.qemu_vcpus(2, 0x80_4004, 0x80_0F12);
    let mut fin = KvmSevSnpLaunchFinish::default();
    // Before SNP_LAUNCH_START: EINVAL.
    assert_eq!(
        e(&s.vm, KVM_SEV_SNP_LAUNCH_FINISH, s.sev_fd, &mut fin),
        (EINVAL, 0xAA)
    );
    assert_eq!(snp_start(&s, 0x30000, s.sev_fd), (0, 0));
    // flags ≠ 0; an ID block without an address.
    fin.flags = 1;
    assert_eq!(
        e(&s.vm, KVM_SEV_SNP_LAUNCH_FINISH, s.sev_fd, &mut fin).0,
        EINVAL
    );
    fin.flags = 0;
    // DR7 bits on vCPU 1: EINVAL after vCPU 0 was measured and protected.
    s.vcpus[1].set_debug_regs(0xFFFF_0FF0, 0x402).unwrap();
    assert_eq!(
        e(&s.vm, KVM_SEV_SNP_LAUNCH_FINISH, s.sev_fd, &mut fin).0,
        EINVAL
    );
    assert!(s.vcpus[0].is_state_protected());
    assert_eq!(s.vcpus[0].regs().unwrap_err().raw(), EINVAL);
    // Protected vCPU 0 makes every further FINISH fail: "VMSAs already protected".
    s.vcpus[1].set_debug_regs(0xFFFF_0FF0, 0x400).unwrap();
    assert_eq!(
        e(&s.vm, KVM_SEV_SNP_LAUNCH_FINISH, s.sev_fd, &mut fin).0,
        EINVAL
    );
    assert!(!s.vm.pre_fault_allowed());

    // A clean second VM: ID block enabled without an address: EINVAL (after the VMSAs).
    let mut s = snp_session(&h);
    s.qemu_vcpus(1, 0, 0x80_0F12);
    assert_eq!(snp_start(&s, 0x30000, s.sev_fd), (0, 0));
    let mut fin = KvmSevSnpLaunchFinish {
        id_block_en: 1,
        ..Default::default()
    };
    assert_eq!(
        e(&s.vm, KVM_SEV_SNP_LAUNCH_FINISH, s.sev_fd, &mut fin).0,
        EINVAL
    );
    // Zero vCPUs: FINISH reaches the firmware; a second one is INVALID_GUEST_STATE.
    let s = snp_session(&h);
    assert_eq!(snp_start(&s, 0x30000, s.sev_fd), (0, 0));
    let mut fin = KvmSevSnpLaunchFinish::default();
    assert_eq!(
        e(&s.vm, KVM_SEV_SNP_LAUNCH_FINISH, s.sev_fd, &mut fin),
        (0, 0)
    );
    assert!(s.vm.pre_fault_allowed());
    assert_eq!(
        e(&s.vm, KVM_SEV_SNP_LAUNCH_FINISH, s.sev_fd, &mut fin),
        (EIO, INVALID_GUEST_STATE)
    );
}

#[test]
fn memory_rows() {
    let h = host();
    let s = Session::new(&h, KVM_X86_SEV_VM);
    let buf = h.mmap(0x2000).unwrap();
    let r = KvmEncRegion {
        addr: buf,
        size: 0x2000,
    };
    assert_eq!(s.vm.register_region(&r).unwrap_err().raw(), ENOTTY);
    s.init2(0);
    assert_eq!(
        s.vm.register_region(&KvmEncRegion { addr: buf, size: 0 })
            .unwrap_err()
            .raw(),
        EINVAL
    );
    assert_eq!(
        s.vm.register_region(&KvmEncRegion {
            addr: 0x1000,
            size: 0x1000
        })
        .unwrap_err()
        .raw(),
        ENOMEM
    );
    s.vm.register_region(&r).unwrap();
    // UNREG needs the exact (addr, size).
    assert_eq!(
        s.vm.unregister_region(&KvmEncRegion {
            addr: buf,
            size: 0x1000
        })
        .unwrap_err()
        .raw(),
        EINVAL
    );
    s.vm.unregister_region(&r).unwrap();
    assert_eq!(s.vm.unregister_region(&r).unwrap_err().raw(), EINVAL);
    // No private memory on SEV VMs: no guest_memfd slots, no PRIVATE attribute.
    let gmem = s.vm.create_guest_memfd(0x1000, 0).unwrap();
    let slot = KvmUserspaceMemoryRegion2 {
        slot: 3,
        flags: KVM_MEM_GUEST_MEMFD,
        guest_phys_addr: 0,
        memory_size: 0x1000,
        userspace_addr: buf,
        guest_memfd: gmem as u32,
        ..Default::default()
    };
    assert_eq!(
        s.vm.set_user_memory_region2(&slot).unwrap_err().raw(),
        EINVAL
    );
    let attrs = KvmMemoryAttributes {
        address: 0,
        size: 0x1000,
        attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE,
        flags: 0,
    };
    assert_eq!(
        s.vm.set_memory_attributes(&attrs).unwrap_err().raw(),
        EINVAL
    );
    // On SNP: a closed guest_memfd is EBADF, another file EINVAL, an overlap EEXIST.
    let snp = Session::new(&h, KVM_X86_SNP_VM);
    let g = snp.vm.create_guest_memfd(0x2000, 0).unwrap();
    let mut slot = KvmUserspaceMemoryRegion2 {
        slot: 0,
        flags: KVM_MEM_GUEST_MEMFD,
        memory_size: 0x1000,
        userspace_addr: buf,
        guest_memfd: 999,
        ..Default::default()
    };
    assert_eq!(
        snp.vm.set_user_memory_region2(&slot).unwrap_err().raw(),
        EBADF
    );
    slot.guest_memfd = gmem as u32; // another VM's guest_memfd
    assert_eq!(
        snp.vm.set_user_memory_region2(&slot).unwrap_err().raw(),
        EINVAL
    );
    slot.guest_memfd = g as u32;
    slot.flags |= 1; // LOG_DIRTY_PAGES with GUEST_MEMFD
    assert_eq!(
        snp.vm.set_user_memory_region2(&slot).unwrap_err().raw(),
        EINVAL
    );
    slot.flags = KVM_MEM_GUEST_MEMFD;
    snp.vm.set_user_memory_region2(&slot).unwrap();
    slot.slot = 1;
    slot.guest_phys_addr = 0x1000;
    assert_eq!(
        snp.vm.set_user_memory_region2(&slot).unwrap_err().raw(),
        libc::EEXIST
    );
    slot.guest_memfd_offset = 0x1000;
    snp.vm.set_user_memory_region2(&slot).unwrap();
    assert_eq!(
        snp.vm.create_guest_memfd(0x800, 0).unwrap_err().raw(),
        EINVAL
    );
}
