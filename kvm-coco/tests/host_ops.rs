//! The typed `KVM_MEMORY_ENCRYPT_OP` wrappers (`kvm_coco::ops`) and `KvmBackend`, issued as
//! real system calls on a thread served by the software host: each SEV, SEV-ES, SNP and TDX
//! sub-command once on its success path and on the error paths the kernel documents, with the
//! errno, the firmware status (SEV `error`, TDX `hw_error`) and the hint of the typed error.
//!
//! Expected values come from the facts (linux-uapi §3, §4, §7, §10; firmware-and-measurement
//! §1, §3.5, §5.4, §6) or are computed here from their definitions (SHA-256 launch digest,
//! HMAC of LAUNCH_MEASURE, the LAUNCH_SECRET packet), never read back from the code under
//! test. Default (non-confidential) VMs are created by this machine's real KVM, which the
//! software host leaves untouched.

#[path = "measure_common/mod.rs"]
mod measure_common;

use std::fs::File;
use std::os::fd::AsFd;
use std::sync::Arc;

use kvm_coco::launch::backend::Backend;
use kvm_coco::launch::{
    InitParams, KvmBackend, Launch, LaunchError, LaunchVcpu, SnpIdentity, SnpInit, TdxInit,
};
use kvm_coco::measure::{FirmwareImage, LaunchPlan};
use kvm_coco::ops::tdx::read_capabilities_growing;
use kvm_coco::ops::{
    Amd, Command, EncryptOpError, Family, FamilyMismatch, FirmwareStatus, HINT_NOT_CONFIDENTIAL,
    HINT_OUT_OF_ORDER, NoPayload, Payload, Scope, SubCommand, Tdx, VmScope,
};
use kvm_coco::sim::guest::GuestOp;
use kvm_coco::sim::host::SoftwareHost;
use kvm_coco::{Exit, GuestMapping, Kvm, MemoryRegion, SystemEvent, Vm, VmType};
use kvm_coco_uapi::{
    KvmCpuidEntry2, KvmSevAttestationReport, KvmSevDbg, KvmSevInit, KvmSevLaunchMeasure,
    KvmSevLaunchSecret, KvmSevLaunchStart, KvmSevLaunchUpdateData, KvmSevReceiveStart,
    KvmSevReceiveUpdateData, KvmSevSendStart, KvmSevSendUpdateData, KvmSevSnpLaunchFinish,
    KvmSevSnpLaunchStart, KvmSevSnpLaunchUpdate, KvmTdxInitMemRegion, KvmTdxInitVm, SevRetCode,
    TdxCapabilitiesBuf, TdxInitVmBuf,
};
use psp_driver::owner::session::{FwVersion, TransportKeys, build_secret, verify_launch_measure};
use psp_driver::{DevSev, Platform};
use sha2::{Digest, Sha256};
use zerocopy::IntoBytes;

/// Guest-physical base of the RAM the direct-ops tests register.
const GPA: u64 = 0x10_0000;
const PAGE: usize = 4096;

/// A software host serving this test's thread (seed 1, no faults).
fn served() -> SoftwareHost {
    served_with("")
}

/// A software host serving this test's thread with the fault plan `faults`.
fn served_with(faults: &str) -> SoftwareHost {
    let host = SoftwareHost::builder()
        .seed(1)
        .faults(faults.parse().unwrap())
        .start()
        .unwrap();
    host.serve_current_thread()
        .expect("seccomp user notification is required by the software host");
    host
}

fn dev_sev() -> File {
    File::options()
        .read(true)
        .write(true)
        .open("/dev/sev")
        .unwrap()
}

/// The SEV firmware status `code` (facts linux-uapi §7.3, firmware §1.2).
fn fw(code: u32) -> FirmwareStatus {
    FirmwareStatus::Sev(SevRetCode::from_raw(code))
}

/// Checks a failed sub-command: its kernel name, errno, firmware status, and a hint that
/// mentions `hint` (`None`: no hint).
#[track_caller]
fn check(
    e: &EncryptOpError,
    command: &str,
    errno: i32,
    firmware: FirmwareStatus,
    hint: Option<&str>,
) {
    assert_eq!(e.command, command, "{e}");
    assert_eq!(e.errno.raw(), errno, "{e}");
    assert_eq!(e.firmware, firmware, "{e}");
    match hint {
        Some(h) => assert!(e.hint.is_some_and(|x| x.contains(h)), "hint of {e}"),
        None => assert_eq!(e.hint, None, "{e}"),
    }
    let shown = e.to_string();
    assert!(shown.starts_with(&format!("{command} failed: ")), "{shown}");
    if let FirmwareStatus::Sev(_) | FirmwareStatus::Tdx(_) = firmware {
        assert!(shown.contains(&firmware.to_string()), "{shown}");
    }
    let source = std::error::Error::source(e).expect("the errno is the source");
    assert_eq!(source.to_string(), e.errno.to_string());
}

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// RAM of `len` bytes at [`GPA`], registered with `vm` as slot 0.
fn ram(vm: &Vm, len: usize) -> Arc<GuestMapping> {
    let mem = Arc::new(GuestMapping::anonymous(len).unwrap());
    vm.set_memory_region(MemoryRegion::new(0, GPA, mem.clone()))
        .unwrap();
    mem
}

fn pattern(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ salt)
        .collect()
}

/// Firmware version as PLATFORM_STATUS reports it (the input of the LAUNCH_MEASURE HMAC).
fn fw_version() -> FwVersion {
    let st = DevSev::open().unwrap().platform_status().unwrap();
    FwVersion {
        api_major: st.api_major,
        api_minor: st.api_minor,
        build: st.build,
    }
}

/// An SEV sub-command id without a wrapper (and without a KVM handler).
enum RawSev<const ID: u32> {}

impl<const ID: u32> SubCommand for RawSev<ID> {
    const ID: u32 = ID;
    const NAME: &'static str = "raw SEV sub-command";
    type Family = Amd;
    type Scope = VmScope;
    type Payload = NoPayload;
}

/// A payload whose address lies in the unmapped first page of the process.
struct Unmapped;

// SAFETY: `data` is an address in page 0, which is never mapped: the kernel (or the software
// host) fails to copy from or to it; no memory of this process is read or written.
unsafe impl Payload for Unmapped {
    fn data(&mut self) -> u64 {
        8
    }
}

/// GUEST_STATUS (16) with an unmapped argument.
enum GuestStatusUnmapped {}

impl SubCommand for GuestStatusUnmapped {
    const ID: u32 = 16;
    const NAME: &'static str = "KVM_SEV_GUEST_STATUS";
    type Family = Amd;
    type Scope = VmScope;
    type Payload = Unmapped;
}

/// TDX CAPABILITIES (0) with an unmapped argument.
enum CapabilitiesUnmapped {}

impl SubCommand for CapabilitiesUnmapped {
    const ID: u32 = 0;
    const NAME: &'static str = "KVM_TDX_CAPABILITIES";
    type Family = Tdx;
    type Scope = VmScope;
    type Payload = Unmapped;
}

// ---- SEV ------------------------------------------------------------------------------

/// An SEV guest (policy 0: debugging allowed, no session) launched with the raw wrappers:
/// every state transition of facts firmware §6.2 checked with GUEST_STATUS, the launch
/// digest and MEASURE recomputed from facts §1.4, the attestation report from §1.7, a secret
/// packet built from §1.6 and read back with DBG_DECRYPT.
#[test]
fn sev_launch_through_the_vm_wrappers() {
    let _host = served();
    let kvm = Kvm::open().unwrap();
    let sev = dev_sev();
    let vm = kvm.create_vm(VmType::Sev).unwrap();

    // Before INIT2: ENOTTY (linux-uapi §3.1 rule 5, §10.1).
    let e = vm.sev().unwrap().guest_status().unwrap_err();
    check(
        &e,
        "KVM_SEV_GUEST_STATUS",
        libc::ENOTTY,
        FirmwareStatus::None,
        Some("KVM_SEV_INIT2"),
    );
    assert!(!e.is_not_confidential(), "an SEV VM is confidential");
    vm.sev().unwrap().init2(&mut KvmSevInit::default()).unwrap();
    // A second INIT2: EINVAL (§10.1).
    let e = vm
        .sev()
        .unwrap()
        .init2(&mut KvmSevInit::default())
        .unwrap_err();
    check(
        &e,
        "KVM_SEV_INIT2",
        libc::EINVAL,
        FirmwareStatus::None,
        Some("already initialized"),
    );
    // LAUNCH_UPDATE_VMSA exists for SEV-ES only: ENOTTY (§3.1 id 4).
    let e = vm.sev().unwrap().launch_update_vmsa().unwrap_err();
    check(
        &e,
        "KVM_SEV_LAUNCH_UPDATE_VMSA",
        libc::ENOTTY,
        FirmwareStatus::None,
        Some("SEV-ES"),
    );
    // LAUNCH_MEASURE before LAUNCH_START: KVM issues it with the `sev_fd` remembered at
    // LAUNCH_START, none yet, so the number 0 is not /dev/sev: EBADF (linux-uapi §2).
    let e = vm.sev().unwrap().launch_measure().unwrap_err();
    check(
        &e,
        "KVM_SEV_LAUNCH_MEASURE",
        libc::EBADF,
        FirmwareStatus::None,
        Some("/dev/sev"),
    );

    let plain = pattern(0x4000, 0x5a);
    let mem = ram(&vm, plain.len());
    mem.write(0, &plain).unwrap();
    let _vcpu = vm.create_vcpu(0).unwrap();

    // LAUNCH_START with a file that is not /dev/sev: EBADF (§2 `sev_fd`).
    let not_sev = File::open("/dev/null").unwrap();
    let mut start = KvmSevLaunchStart::default();
    // SAFETY: no DH certificate or session blob is passed.
    let e = unsafe { vm.sev().unwrap().launch_start(&mut start, not_sev.as_fd()) }.unwrap_err();
    check(
        &e,
        "KVM_SEV_LAUNCH_START",
        libc::EBADF,
        FirmwareStatus::None,
        Some("/dev/sev"),
    );
    // SAFETY: as above.
    unsafe { vm.sev().unwrap().launch_start(&mut start, sev.as_fd()) }.unwrap();
    // Handles run 1..1024 (firmware §1.8).
    assert!((1..=1024).contains(&start.handle), "{}", start.handle);
    let st = vm.sev().unwrap().guest_status().unwrap();
    assert_eq!(
        (st.handle, st.policy, st.state),
        (start.handle, 0, 1),
        "LUPDATE"
    );
    // LAUNCH_FINISH in LUPDATE: INVALID_GUEST_STATE (firmware §6.2).
    let e = vm.sev().unwrap().launch_finish().unwrap_err();
    check(
        &e,
        "KVM_SEV_LAUNCH_FINISH",
        libc::EIO,
        fw(0x02),
        Some(HINT_OUT_OF_ORDER),
    );

    let mut upd = KvmSevLaunchUpdateData {
        uaddr: mem.host_addr(),
        len: plain.len() as u32,
        ..Default::default()
    };
    // SAFETY: `mem` is mapped, registered with the VM and alive for the call.
    unsafe { vm.sev().unwrap().launch_update_data(&mut upd) }.unwrap();
    let mut host_view = vec![0u8; plain.len()];
    mem.read(0, &mut host_view).unwrap();
    assert_ne!(host_view, plain, "encrypted in place");

    // The length query: the firmware answers INVALID_LENGTH with 48 (firmware §1.4) and KVM
    // returns its EIO with the length written back.
    let mut m = KvmSevLaunchMeasure::default();
    // SAFETY: uaddr = 0: a length query.
    let e = unsafe { vm.sev().unwrap().launch_measure_raw(&mut m) }.unwrap_err();
    check(
        &e,
        "KVM_SEV_LAUNCH_MEASURE",
        libc::EIO,
        fw(0x04),
        Some("firmware"),
    );
    assert_eq!(m.len, 48);
    let blob: [u8; 48] = vm
        .sev()
        .unwrap()
        .launch_measure()
        .unwrap()
        .try_into()
        .unwrap();
    // LD = SHA-256 of the plaintext; no session: TIK = 0 (firmware §1.4, §1.5).
    let ld = sha256(&plain);
    verify_launch_measure(&[0; 16], fw_version(), 0, &ld, &blob).expect("MEASURE over our LD");
    assert_eq!(
        vm.sev().unwrap().guest_status().unwrap().state,
        2,
        "LSECRET"
    );

    // GET_ATTESTATION_REPORT: length query, then the 0xD0-byte report (firmware §1.7).
    let mnonce = [0xc4u8; 16];
    let mut r = KvmSevAttestationReport {
        mnonce,
        ..Default::default()
    };
    // SAFETY: uaddr = 0: a length query.
    let e = unsafe { vm.sev().unwrap().get_attestation_report(&mut r) }.unwrap_err();
    check(
        &e,
        "KVM_SEV_GET_ATTESTATION_REPORT",
        libc::EIO,
        fw(0x04),
        Some("firmware"),
    );
    assert_eq!(r.len, 0xD0);
    let mut report = vec![0u8; 0xD0];
    r.uaddr = report.as_mut_ptr() as u64;
    // SAFETY: `report` is 0xD0 writable bytes, alive for the call.
    unsafe { vm.sev().unwrap().get_attestation_report(&mut r) }.unwrap();
    assert_eq!(&report[..0x10], &mnonce);
    assert_eq!(&report[0x10..0x30], &ld);
    assert_eq!(&report[0x30..0x34], &0u32.to_le_bytes(), "policy");

    // LAUNCH_SECRET (firmware §1.6): TEK = TIK = 0 without a session.
    let secret = pattern(32, 0x33);
    let keys = TransportKeys {
        tek: [0; 16],
        tik: [0; 16],
    };
    let measure: [u8; 32] = blob[..32].try_into().unwrap();
    let (hdr, ct) = build_secret(&keys, &measure, [0x22; 16], &secret).unwrap();
    let hdr = hdr.as_bytes().to_vec();
    assert_eq!(hdr.len(), 52);
    let mut s = KvmSevLaunchSecret {
        hdr_uaddr: hdr.as_ptr() as u64,
        hdr_len: hdr.len() as u32,
        guest_uaddr: mem.host_addr() + 0x2000,
        guest_len: ct.len() as u32,
        trans_uaddr: ct.as_ptr() as u64,
        trans_len: ct.len() as u32,
        ..Default::default()
    };
    // SAFETY: header and packet are live vectors; the guest range lies in `mem`.
    unsafe { vm.sev().unwrap().launch_secret(&mut s) }.unwrap();
    let mut tampered = ct.clone();
    tampered[0] ^= 1;
    s.trans_uaddr = tampered.as_ptr() as u64;
    // SAFETY: as above.
    let e = unsafe { vm.sev().unwrap().launch_secret(&mut s) }.unwrap_err();
    check(
        &e,
        "KVM_SEV_LAUNCH_SECRET",
        libc::EIO,
        fw(0x0B),
        Some("firmware"),
    );

    // DBG_DECRYPT reads the guest's plaintext: the first page and the injected secret.
    let mut out = vec![0u8; 64];
    let mut d = KvmSevDbg {
        src_uaddr: mem.host_addr(),
        dst_uaddr: out.as_mut_ptr() as u64,
        len: 64,
        ..Default::default()
    };
    // SAFETY: `src` lies in `mem`, `dst` is `out`, 64 bytes each.
    unsafe { vm.sev().unwrap().dbg_decrypt(&mut d) }.unwrap();
    assert_eq!(out, plain[..64]);
    let mut got = vec![0u8; 32];
    d.src_uaddr = mem.host_addr() + 0x2000;
    d.dst_uaddr = got.as_mut_ptr() as u64;
    d.len = 32;
    // SAFETY: as above, 32 bytes.
    unsafe { vm.sev().unwrap().dbg_decrypt(&mut d) }.unwrap();
    assert_eq!(got, secret);
    // DBG_ENCRYPT writes with the guest's key: ciphertext for the host, plaintext back.
    let data = pattern(48, 0x77);
    let mut d = KvmSevDbg {
        src_uaddr: data.as_ptr() as u64,
        dst_uaddr: mem.host_addr() + 0x3000,
        len: 48,
        ..Default::default()
    };
    // SAFETY: `src` is `data`, `dst` lies in `mem`, 48 bytes each.
    unsafe { vm.sev().unwrap().dbg_encrypt(&mut d) }.unwrap();
    let mut raw = vec![0u8; 48];
    mem.read(0x3000, &mut raw).unwrap();
    assert_ne!(raw, data);
    let mut back = vec![0u8; 48];
    let mut d = KvmSevDbg {
        src_uaddr: mem.host_addr() + 0x3000,
        dst_uaddr: back.as_mut_ptr() as u64,
        len: 48,
        ..Default::default()
    };
    // SAFETY: as above.
    unsafe { vm.sev().unwrap().dbg_decrypt(&mut d) }.unwrap();
    assert_eq!(back, data);

    vm.sev().unwrap().launch_finish().unwrap();
    assert_eq!(
        vm.sev().unwrap().guest_status().unwrap().state,
        3,
        "RUNNING"
    );
}

/// SEND_* from one SEV guest and RECEIVE_* into another on the same platform (its own PDH as
/// the target's): the pages arrive intact under the target's key.
#[test]
fn sev_migration_through_the_vm_wrappers() {
    let _host = served();
    let kvm = Kvm::open().unwrap();
    let sev = dev_sev();
    let plain = pattern(0x2000, 0x19);

    let src = kvm.create_vm(VmType::Sev).unwrap();
    src.sev()
        .unwrap()
        .init2(&mut KvmSevInit::default())
        .unwrap();
    let smem = ram(&src, plain.len());
    smem.write(0, &plain).unwrap();
    let mut start = KvmSevLaunchStart::default();
    // SAFETY: no DH certificate or session blob.
    unsafe { src.sev().unwrap().launch_start(&mut start, sev.as_fd()) }.unwrap();
    let mut upd = KvmSevLaunchUpdateData {
        uaddr: smem.host_addr(),
        len: plain.len() as u32,
        ..Default::default()
    };
    // SAFETY: `smem` is mapped and registered.
    unsafe { src.sev().unwrap().launch_update_data(&mut upd) }.unwrap();
    src.sev().unwrap().launch_measure().unwrap();
    // SEND_CANCEL outside SUPDATE: INVALID_GUEST_STATE (firmware §6.2).
    src.sev().unwrap().launch_finish().unwrap();
    let e = src.sev().unwrap().send_cancel().unwrap_err();
    check(
        &e,
        "KVM_SEV_SEND_CANCEL",
        libc::EIO,
        fw(0x02),
        Some(HINT_OUT_OF_ORDER),
    );

    // SEND_START length query: INVALID_LENGTH, the 0x80-byte session (firmware §1.5).
    let mut ss = KvmSevSendStart::default();
    // SAFETY: every address is zero: a length query.
    let e = unsafe { src.sev().unwrap().send_start(&mut ss) }.unwrap_err();
    check(
        &e,
        "KVM_SEV_SEND_START",
        libc::EIO,
        fw(0x04),
        Some("firmware"),
    );
    assert_eq!(ss.session_len, 0x80);

    let export = DevSev::open().unwrap().pdh_cert_export().unwrap();
    let amd = [0u8; 64];
    let mut session = vec![0u8; 0x80];
    ss.pdh_cert_uaddr = export.pdh_cert.as_ptr() as u64;
    ss.pdh_cert_len = export.pdh_cert.len() as u32;
    ss.plat_certs_uaddr = export.cert_chain.as_ptr() as u64;
    ss.plat_certs_len = export.cert_chain.len() as u32;
    ss.amd_certs_uaddr = amd.as_ptr() as u64;
    ss.amd_certs_len = amd.len() as u32;
    ss.session_uaddr = session.as_mut_ptr() as u64;
    // SAFETY: the certificate blobs are live vectors; `session` holds 0x80 writable bytes.
    unsafe { src.sev().unwrap().send_start(&mut ss) }.unwrap();
    assert_ne!(session, vec![0u8; 0x80]);

    let dst = kvm.create_vm(VmType::Sev).unwrap();
    // RECEIVE_UPDATE_DATA before INIT: EINVAL, not ENOTTY (§3.1 id 13).
    let mut early = KvmSevReceiveUpdateData::default();
    // SAFETY: every address is zero; KVM refuses before reading any.
    let e = unsafe { dst.sev().unwrap().receive_update_data(&mut early) }.unwrap_err();
    check(
        &e,
        "KVM_SEV_RECEIVE_UPDATE_DATA",
        libc::EINVAL,
        FirmwareStatus::None,
        None,
    );
    dst.sev()
        .unwrap()
        .init2(&mut KvmSevInit::default())
        .unwrap();
    let dmem = ram(&dst, plain.len());
    let mut rs = KvmSevReceiveStart {
        policy: ss.policy,
        pdh_uaddr: export.pdh_cert.as_ptr() as u64,
        pdh_len: export.pdh_cert.len() as u32,
        session_uaddr: session.as_ptr() as u64,
        session_len: 0x80,
        ..Default::default()
    };
    // SAFETY: the PDH and session are live vectors of the stated lengths.
    unsafe { dst.sev().unwrap().receive_start(&mut rs, sev.as_fd()) }.unwrap();
    assert!((1..=1024).contains(&rs.handle), "{}", rs.handle);
    assert_ne!(rs.handle, start.handle);
    assert_eq!(
        dst.sev().unwrap().guest_status().unwrap().state,
        5,
        "RUPDATE"
    );
    // RECEIVE_FINISH with nothing received yet is legal in RUPDATE; the pages go first.

    // SEND_UPDATE_DATA length query (hdr_len = trans_len = 0), then page by page.
    let mut q = KvmSevSendUpdateData::default();
    // SAFETY: a length query.
    let e = unsafe { src.sev().unwrap().send_update_data(&mut q) }.unwrap_err();
    assert_eq!((e.errno.raw(), e.firmware), (libc::EIO, fw(0x04)), "{e}");
    assert!(q.hdr_len > 0, "header length reported");
    for page in 0..plain.len() / PAGE {
        let off = (page * PAGE) as u64;
        let mut hdr = vec![0u8; q.hdr_len as usize];
        let mut trans = vec![0u8; PAGE];
        let mut su = KvmSevSendUpdateData {
            hdr_uaddr: hdr.as_mut_ptr() as u64,
            hdr_len: q.hdr_len,
            guest_uaddr: smem.host_addr() + off,
            guest_len: PAGE as u32,
            trans_uaddr: trans.as_mut_ptr() as u64,
            trans_len: PAGE as u32,
            ..Default::default()
        };
        // SAFETY: `hdr` and `trans` are writable vectors; the guest page lies in `smem`.
        unsafe { src.sev().unwrap().send_update_data(&mut su) }.unwrap();
        assert_ne!(trans, plain[page * PAGE..][..PAGE], "sent encrypted");
        let mut ru = KvmSevReceiveUpdateData {
            hdr_uaddr: hdr.as_ptr() as u64,
            hdr_len: q.hdr_len,
            guest_uaddr: dmem.host_addr() + off,
            guest_len: PAGE as u32,
            trans_uaddr: trans.as_ptr() as u64,
            trans_len: PAGE as u32,
            ..Default::default()
        };
        // SAFETY: header and packet are live vectors; the guest page lies in `dmem`.
        unsafe { dst.sev().unwrap().receive_update_data(&mut ru) }.unwrap();
    }
    src.sev().unwrap().send_finish().unwrap();
    assert_eq!(src.sev().unwrap().guest_status().unwrap().state, 6, "SENT");
    dst.sev().unwrap().receive_finish().unwrap();
    assert_eq!(
        dst.sev().unwrap().guest_status().unwrap().state,
        3,
        "RUNNING"
    );
    // SEND_FINISH again (SENT) and RECEIVE_FINISH again (RUNNING): INVALID_GUEST_STATE.
    let e = src.sev().unwrap().send_finish().unwrap_err();
    check(
        &e,
        "KVM_SEV_SEND_FINISH",
        libc::EIO,
        fw(0x02),
        Some(HINT_OUT_OF_ORDER),
    );
    let e = dst.sev().unwrap().receive_finish().unwrap_err();
    check(
        &e,
        "KVM_SEV_RECEIVE_FINISH",
        libc::EIO,
        fw(0x02),
        Some(HINT_OUT_OF_ORDER),
    );

    let mut host_view = vec![0u8; plain.len()];
    dmem.read(0, &mut host_view).unwrap();
    assert_ne!(host_view, plain);
    let mut got = vec![0u8; plain.len()];
    let mut d = KvmSevDbg {
        src_uaddr: dmem.host_addr(),
        dst_uaddr: got.as_mut_ptr() as u64,
        len: plain.len() as u32,
        ..Default::default()
    };
    // SAFETY: `src` lies in `dmem`, `dst` is `got`, same length.
    unsafe { dst.sev().unwrap().dbg_decrypt(&mut d) }.unwrap();
    assert_eq!(got, plain, "the target guest sees the source's pages");
}

/// KVM's own refusals: RECEIVE_START without blobs, the ids without a handler, an argument
/// KVM cannot copy, DBG_* under a NODBG policy.
#[test]
fn sev_kvm_refusals_carry_errno_and_hint() {
    let _host = served();
    let kvm = Kvm::open().unwrap();
    let sev = dev_sev();
    let vm = kvm.create_vm(VmType::Sev).unwrap();
    vm.sev().unwrap().init2(&mut KvmSevInit::default()).unwrap();

    // RECEIVE_START needs the PDH and the session (svm/sev.c `sev_receive_start`): EINVAL.
    let mut rs = KvmSevReceiveStart::default();
    // SAFETY: no blob addresses are passed.
    let e = unsafe { vm.sev().unwrap().receive_start(&mut rs, sev.as_fd()) }.unwrap_err();
    check(
        &e,
        "KVM_SEV_RECEIVE_START",
        libc::EINVAL,
        FirmwareStatus::None,
        None,
    );

    // SEND_UPDATE_VMSA (10), RECEIVE_UPDATE_VMSA (14), CERT_EXPORT (19): no handler, EINVAL
    // (§3.1, §12.8).
    fn unhandled<const ID: u32>(vm: &Vm) -> EncryptOpError {
        let sev = vm.sev().unwrap();
        // SAFETY: the command has no payload (`data` = 0).
        unsafe { sev.issue_unchecked(Command::<RawSev<ID>>::new(&mut NoPayload), None) }
            .unwrap_err()
    }
    for e in [
        unhandled::<10>(&vm),
        unhandled::<14>(&vm),
        unhandled::<19>(&vm),
    ] {
        check(
            &e,
            "raw SEV sub-command",
            libc::EINVAL,
            FirmwareStatus::None,
            Some("no handler"),
        );
    }

    // NODBG (policy bit 0): the firmware refuses DBG_DECRYPT with POLICY_FAILURE.
    let mem = ram(&vm, 0x1000);
    let mut start = KvmSevLaunchStart {
        policy: 0x1,
        ..Default::default()
    };
    // SAFETY: no DH certificate or session blob.
    unsafe { vm.sev().unwrap().launch_start(&mut start, sev.as_fd()) }.unwrap();

    // GUEST_STATUS's result cannot be copied back to its argument: EFAULT (§3.1 rule 1).
    let mut arg = Unmapped;
    let cmd = Command::<GuestStatusUnmapped>::new(&mut arg);
    assert_eq!((cmd.id(), cmd.name()), (16, "KVM_SEV_GUEST_STATUS"));
    let dbg = format!("{cmd:?}");
    assert!(
        dbg.contains("KVM_SEV_GUEST_STATUS") && dbg.contains("0x8"),
        "{dbg}"
    );
    // SAFETY: the unmapped address is never dereferenced in this process.
    let e = unsafe { vm.sev().unwrap().issue_unchecked(cmd, None) }.unwrap_err();
    check(
        &e,
        "KVM_SEV_GUEST_STATUS",
        libc::EFAULT,
        FirmwareStatus::None,
        Some("buffer"),
    );

    let mut upd = KvmSevLaunchUpdateData {
        uaddr: mem.host_addr(),
        len: 0x1000,
        ..Default::default()
    };
    // SAFETY: `mem` is mapped and registered.
    unsafe { vm.sev().unwrap().launch_update_data(&mut upd) }.unwrap();
    let mut out = [0u8; 16];
    let mut d = KvmSevDbg {
        src_uaddr: mem.host_addr(),
        dst_uaddr: out.as_mut_ptr() as u64,
        len: 16,
        ..Default::default()
    };
    // SAFETY: `src` lies in `mem`, `dst` is `out`.
    let e = unsafe { vm.sev().unwrap().dbg_decrypt(&mut d) }.unwrap_err();
    check(
        &e,
        "KVM_SEV_DBG_DECRYPT",
        libc::EIO,
        fw(0x07),
        Some("firmware"),
    );
    assert_eq!(out, [0; 16]);
}

/// Faults injected by the host reach the typed error unchanged: EBUSY (a dead PSP) and a
/// firmware status chosen here.
#[test]
fn sev_injected_errors_keep_errno_and_status() {
    let _host = served_with("guest_status:busy@1,launch_finish:fw=0x27@1,launch_measure:fw=0x01@1");
    let kvm = Kvm::open().unwrap();
    let sev = dev_sev();
    let vm = kvm.create_vm(VmType::Sev).unwrap();
    vm.sev().unwrap().init2(&mut KvmSevInit::default()).unwrap();
    let mut start = KvmSevLaunchStart::default();
    // SAFETY: no DH certificate or session blob.
    unsafe { vm.sev().unwrap().launch_start(&mut start, sev.as_fd()) }.unwrap();
    let e = vm.sev().unwrap().guest_status().unwrap_err();
    check(
        &e,
        "KVM_SEV_GUEST_STATUS",
        libc::EBUSY,
        FirmwareStatus::None,
        Some("dead"),
    );
    assert_eq!(
        vm.sev().unwrap().guest_status().unwrap().handle,
        start.handle
    );
    let e = vm.sev().unwrap().launch_finish().unwrap_err();
    check(
        &e,
        "KVM_SEV_LAUNCH_FINISH",
        libc::EIO,
        fw(0x27),
        Some("firmware"),
    );
    assert!(e.to_string().contains("INVALID_KEY"), "{e}");
    // INVALID_PLATFORM_STATE (0x01) has a hint of its own.
    let e = vm.sev().unwrap().launch_measure().unwrap_err();
    check(
        &e,
        "KVM_SEV_LAUNCH_MEASURE",
        libc::EIO,
        fw(0x01),
        Some("platform is not in the required state"),
    );
}

/// SEV-ES: LAUNCH_UPDATE_VMSA protects every vCPU; a second one is EINVAL (§10.2).
#[test]
fn sev_es_update_vmsa_once() {
    let _host = served();
    let kvm = Kvm::open().unwrap();
    let sev = dev_sev();
    let vm = kvm.create_vm(VmType::SevEs).unwrap();
    vm.sev().unwrap().init2(&mut KvmSevInit::default()).unwrap();
    let mem = ram(&vm, 0x1000);
    let vcpu = vm.create_vcpu(0).unwrap();
    let mut start = KvmSevLaunchStart {
        policy: 0x4, // ES (firmware §1.3)
        ..Default::default()
    };
    // SAFETY: no DH certificate or session blob.
    unsafe { vm.sev().unwrap().launch_start(&mut start, sev.as_fd()) }.unwrap();
    let mut upd = KvmSevLaunchUpdateData {
        uaddr: mem.host_addr(),
        len: 0x1000,
        ..Default::default()
    };
    // SAFETY: `mem` is mapped and registered.
    unsafe { vm.sev().unwrap().launch_update_data(&mut upd) }.unwrap();
    assert!(!vcpu.is_state_protected());
    vm.sev().unwrap().launch_update_vmsa().unwrap();
    assert!(vcpu.is_state_protected());
    assert!(vcpu.regs().is_err(), "registers are protected (§9.3)");
    let e = vm.sev().unwrap().launch_update_vmsa().unwrap_err();
    check(
        &e,
        "KVM_SEV_LAUNCH_UPDATE_VMSA",
        libc::EINVAL,
        FirmwareStatus::None,
        Some("already protected"),
    );
    assert_eq!(vm.sev().unwrap().launch_measure().unwrap().len(), 48);
}

/// Legacy `KVM_SEV_INIT` / `KVM_SEV_ES_INIT` and SEV/TDX sub-commands on a default VM: this
/// machine's KVM has no `KVM_MEMORY_ENCRYPT_OP` for it, ENOTTY (kvm-on-this-machine-kind §3).
#[test]
fn default_vm_has_no_encrypt_op() {
    let _host = served();
    let kvm = Kvm::open().unwrap();
    let vm = match kvm.create_vm(VmType::Default) {
        Ok(vm) => vm,
        Err(e) => {
            kvm_coco_test_skip::skip(
                "/dev/kvm",
                format_args!("no default VM on this machine's KVM: {e}"),
            );
            return;
        }
    };
    for e in [
        vm.sev().unwrap().init().unwrap_err(),
        vm.sev().unwrap().es_init().unwrap_err(),
    ] {
        assert_eq!(e.errno.raw(), libc::ENOTTY, "{e}");
        assert!(e.is_not_confidential());
        assert_ne!(
            e.hint,
            Some(HINT_NOT_CONFIDENTIAL),
            "legacy INIT is valid on a default VM"
        );
        assert!(e.hint.is_some());
    }
    let e = vm.sev().unwrap().guest_status().unwrap_err();
    check(
        &e,
        "KVM_SEV_GUEST_STATUS",
        libc::ENOTTY,
        FirmwareStatus::None,
        Some(HINT_NOT_CONFIDENTIAL),
    );
    assert!(e.is_not_confidential());
    // TDX sub-commands need a TD: the view is refused before any system call.
    let mismatch = vm.tdx().unwrap_err();
    assert_eq!(
        mismatch,
        FamilyMismatch {
            family: Family::Tdx,
            scope: Scope::Vm,
            vm_type: VmType::Default
        }
    );
    assert_eq!(mismatch.hint(), HINT_NOT_CONFIDENTIAL);
    let e = EncryptOpError::from(mismatch);
    check(
        &e,
        "KVM_MEMORY_ENCRYPT_OP",
        libc::ENOTTY,
        FirmwareStatus::None,
        Some(HINT_NOT_CONFIDENTIAL),
    );
    assert!(e.is_not_confidential());
    let vcpu = vm.create_vcpu(0).unwrap();
    assert_eq!(vcpu.tdx().unwrap_err().scope, Scope::Vcpu);
    assert_eq!(FirmwareStatus::None.to_string(), "");
}

// ---- SNP ------------------------------------------------------------------------------

/// The SNP sub-commands out of order, each with KVM's errno (§3.1 rule 3, §10.3).
#[test]
fn snp_out_of_order_commands() {
    let _host = served();
    let kvm = Kvm::open().unwrap();
    let sev = dev_sev();
    let vm = kvm.create_vm(VmType::Snp).unwrap();
    let mut start = KvmSevSnpLaunchStart {
        policy: 0x3_0000,
        ..Default::default()
    };
    let e = vm
        .sev()
        .unwrap()
        .snp_launch_start(&mut start, sev.as_fd())
        .unwrap_err();
    check(
        &e,
        "KVM_SEV_SNP_LAUNCH_START",
        libc::ENOTTY,
        FirmwareStatus::None,
        Some("KVM_SEV_INIT2"),
    );
    vm.sev().unwrap().init2(&mut KvmSevInit::default()).unwrap();
    // Every id below 100 after INIT2: EPERM.
    let e = vm.sev().unwrap().guest_status().unwrap_err();
    check(
        &e,
        "KVM_SEV_GUEST_STATUS",
        libc::EPERM,
        FirmwareStatus::None,
        Some("legacy"),
    );
    let e = vm
        .sev()
        .unwrap()
        .init2(&mut KvmSevInit::default())
        .unwrap_err();
    assert_eq!(e.errno.raw(), libc::EPERM, "{e}");

    let page = vec![0u8; PAGE];
    let mut upd = KvmSevSnpLaunchUpdate {
        gfn_start: GPA / PAGE as u64,
        uaddr: page.as_ptr() as u64,
        len: PAGE as u64,
        r#type: 1,
        ..Default::default()
    };
    // SAFETY: `page` is readable for the call.
    let e = unsafe { vm.sev().unwrap().snp_launch_update(&mut upd, sev.as_fd()) }.unwrap_err();
    check(
        &e,
        "KVM_SEV_SNP_LAUNCH_UPDATE",
        libc::EINVAL,
        FirmwareStatus::None,
        Some("SNP_LAUNCH_START"),
    );
    let mut fin = KvmSevSnpLaunchFinish::default();
    // SAFETY: no ID block.
    let e = unsafe { vm.sev().unwrap().snp_launch_finish(&mut fin, sev.as_fd()) }.unwrap_err();
    check(
        &e,
        "KVM_SEV_SNP_LAUNCH_FINISH",
        libc::EINVAL,
        FirmwareStatus::None,
        Some("SNP_LAUNCH_START"),
    );

    let _vcpu = vm.create_vcpu(0).unwrap();
    let e = vm.sev().unwrap().snp_enable_req_certs().unwrap_err();
    check(
        &e,
        "KVM_SEV_SNP_ENABLE_REQ_CERTS",
        libc::EINVAL,
        FirmwareStatus::None,
        Some("before any vCPU"),
    );
    vm.sev()
        .unwrap()
        .snp_launch_start(&mut start, sev.as_fd())
        .unwrap();
    let e = vm
        .sev()
        .unwrap()
        .snp_launch_start(&mut start, sev.as_fd())
        .unwrap_err();
    check(
        &e,
        "KVM_SEV_SNP_LAUNCH_START",
        libc::EINVAL,
        FirmwareStatus::None,
        Some("already started"),
    );
}

/// SNP_LAUNCH_FINISH through `KvmBackend` with an ID block whose launch digest is not the
/// guest's: the firmware answers BAD_MEASUREMENT (firmware §3.5 LAUNCH_FINISH 6).
#[test]
fn snp_finish_with_a_foreign_id_block_is_bad_measurement() {
    let _host = served();
    let img = measure_common::syn64k();
    let fw_img = FirmwareImage::parse(&img).unwrap();
    let inputs = measure_common::amd_inputs(&fw_img, 1, "EPYC-v4");
    let plan = LaunchPlan::snp(&inputs).unwrap();
    let policy = 0x3_0000u64;
    // ID block (firmware §3.6): LD[48] zero, VERSION 1, POLICY at 0x58.
    let mut id_block = [0u8; 96];
    id_block[0x50..0x54].copy_from_slice(&1u32.to_le_bytes());
    id_block[0x58..0x60].copy_from_slice(&policy.to_le_bytes());
    let mut id_auth = Box::new([0u8; 4096]);
    id_auth[..4].copy_from_slice(&1u32.to_le_bytes()); // ID_KEY_ALGO: ECDSA P-384
    let params = SnpInit {
        identity: Some(SnpIdentity {
            id_block,
            id_auth,
            author_key: false,
        }),
        ..SnpInit::default()
    };
    assert_eq!(params.policy.bits(), policy);

    let kvm = Kvm::open().unwrap();
    let backend = KvmBackend::new(&kvm, VmType::Snp).unwrap();
    assert_eq!(backend.vm().vm_type(), VmType::Snp);
    let mut launch = Launch::new(backend, InitParams::Snp(params)).unwrap();
    launch.add_plan_memory(&plan).unwrap();
    launch.create_vcpu(0).unwrap();
    let mut launch = launch.start().unwrap();
    launch.add_plan(&plan).unwrap();
    let measured = launch.measure().unwrap();
    let e = match measured.finish() {
        Err(LaunchError::Command(e)) => e,
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("the firmware accepted an ID block for another digest"),
    };
    check(
        &e,
        "KVM_SEV_SNP_LAUNCH_FINISH",
        libc::EIO,
        fw(0x0B),
        Some("firmware"),
    );
}

// ---- TDX ------------------------------------------------------------------------------

/// The `KVM_TDX_INIT_VM` buffer of `init` (as a VMM builds it from [`TdxInit`]).
fn init_vm_buf(init: &TdxInit) -> TdxInitVmBuf {
    let mut buf = TdxInitVmBuf::with_capacity(init.cpuid.len());
    buf.set_header(&KvmTdxInitVm {
        attributes: init.attributes,
        xfam: init.xfam,
        ..Default::default()
    });
    for e in &init.cpuid {
        buf.push(*e).unwrap();
    }
    buf
}

fn split_irqchip(vm: &Vm) {
    let mut cap = kvm_bindings::kvm_enable_cap {
        cap: kvm_bindings::KVM_CAP_SPLIT_IRQCHIP,
        ..Default::default()
    };
    cap.args[0] = 24;
    vm.enable_cap(&cap).unwrap();
}

/// KVM_TDX_CAPABILITIES: `-E2BIG` without the needed count, so the buffer grows blindly
/// (§4); the result as the kernel fills it.
#[test]
fn tdx_capabilities_grow_on_e2big() {
    let _host = served();
    let kvm = Kvm::open().unwrap();
    let vm = kvm.create_vm(VmType::Tdx).unwrap();

    let mut empty = TdxCapabilitiesBuf::with_capacity(0);
    let e = vm.tdx().unwrap().capabilities_into(&mut empty).unwrap_err();
    check(
        &e,
        "KVM_TDX_CAPABILITIES",
        libc::E2BIG,
        FirmwareStatus::None,
        Some("grow the buffer"),
    );
    assert_eq!(empty.nent(), 0, "nent is not updated on E2BIG");

    let mut tried = Vec::new();
    let mut errnos = Vec::new();
    let caps = read_capabilities_growing(1, |buf| {
        tried.push(buf.capacity());
        let r = vm.tdx().unwrap().capabilities_into(buf);
        if let Err(e) = &r {
            errnos.push(e.errno.raw());
        }
        r
    })
    .unwrap();
    let n = caps.nent() as usize;
    assert!(n > 1, "{n} configurable leaves");
    // 1, 2, 4, … up to the first capacity that holds n entries.
    let expected: Vec<usize> = std::iter::successors(Some(1usize), |c| Some(c * 2))
        .take_while(|c| *c < 2 * n)
        .collect();
    assert_eq!(tried, expected);
    assert_eq!(errnos, vec![libc::E2BIG; expected.len() - 1]);
    assert_eq!(caps.len(), n);

    let h = caps.header();
    assert_ne!(h.supported_attrs, 0);
    assert_ne!(h.supported_xfam, 0);
    // §4: user_tdvmcallinfo_1_r11 = BIT(1), the other three 0 in 7.3.
    assert_eq!(
        (
            h.user_tdvmcallinfo_1_r11,
            h.kernel_tdvmcallinfo_1_r11,
            h.kernel_tdvmcallinfo_1_r12,
            h.user_tdvmcallinfo_1_r12
        ),
        (1 << 1, 0, 0, 0)
    );
    // §4: leaf 0x80000008 EAX[23:16] is reported as 0xff (the GPAW knob).
    let gpaw = caps.find(0x8000_0008, 0).expect("leaf 0x80000008");
    assert_eq!((gpaw.eax >> 16) & 0xff, 0xff);

    // The doubling from the default start gives the same answer.
    let again = vm.tdx().unwrap().capabilities().unwrap();
    assert_eq!(again.header().as_bytes(), h.as_bytes());
    assert_eq!(
        again.entries().collect::<Vec<_>>(),
        caps.entries().collect::<Vec<_>>()
    );

    // A buffer the kernel cannot read: EFAULT.
    let td = vm.tdx().unwrap();
    // SAFETY: the unmapped address is never dereferenced in this process.
    let e = unsafe { td.issue_unchecked(Command::<CapabilitiesUnmapped>::new(&mut Unmapped), 0) }
        .unwrap_err();
    check(
        &e,
        "KVM_TDX_CAPABILITIES",
        libc::EFAULT,
        FirmwareStatus::None,
        Some("buffer"),
    );
}

/// The TDX state machine's refusals (§4, §10.4) and `KVM_TDX_GET_CPUID` before and after
/// FINALIZE, on a TD built with the raw wrappers.
#[test]
fn tdx_vm_and_vcpu_commands_in_and_out_of_order() {
    let _host = served();
    let kvm = Kvm::open().unwrap();
    let vm = kvm.create_vm(VmType::Tdx).unwrap();
    let init = TdxInit::default();

    // FINALIZE before INIT_VM (no HKID): EINVAL.
    let e = vm.tdx().unwrap().finalize_vm().unwrap_err();
    check(
        &e,
        "KVM_TDX_FINALIZE_VM",
        libc::EINVAL,
        FirmwareStatus::None,
        Some("wrong TD state"),
    );
    // More than 256 CPUID entries: E2BIG.
    let mut big = TdxInitVmBuf::with_capacity(257);
    big.set_nent_to_capacity();
    let e = vm.tdx().unwrap().init_vm(&mut big).unwrap_err();
    check(
        &e,
        "KVM_TDX_INIT_VM",
        libc::E2BIG,
        FirmwareStatus::None,
        Some("256"),
    );
    vm.tdx().unwrap().init_vm(&mut init_vm_buf(&init)).unwrap();
    // INIT_VM twice: EINVAL.
    let e = vm
        .tdx()
        .unwrap()
        .init_vm(&mut init_vm_buf(&init))
        .unwrap_err();
    check(
        &e,
        "KVM_TDX_INIT_VM",
        libc::EINVAL,
        FirmwareStatus::None,
        Some("runs once"),
    );

    split_irqchip(&vm);
    let vcpu = vm.create_vcpu(0).unwrap();
    let src = GuestMapping::anonymous(PAGE).unwrap();
    let mut region = KvmTdxInitMemRegion {
        source_addr: src.host_addr(),
        gpa: 0xffff_f000,
        nr_pages: 1,
    };
    // INIT_MEM_REGION before INIT_VCPU: EINVAL.
    // SAFETY: `src` is one mapped page, alive for the call.
    let e = unsafe { vcpu.tdx().unwrap().init_mem_region(&mut region, true) }.unwrap_err();
    check(
        &e,
        "KVM_TDX_INIT_MEM_REGION",
        libc::EINVAL,
        FirmwareStatus::None,
        Some("INIT_VCPU"),
    );
    vcpu.tdx().unwrap().init_vcpu(0).unwrap();
    // INIT_VCPU twice: EINVAL.
    let e = vcpu.tdx().unwrap().init_vcpu(0).unwrap_err();
    check(
        &e,
        "KVM_TDX_INIT_VCPU",
        libc::EINVAL,
        FirmwareStatus::None,
        Some("wrong TD state"),
    );

    // GET_CPUID before FINALIZE: the TD's CPUID, leaves from 0 and from 0x80000000.
    let cpuid = vcpu.tdx().unwrap().get_cpuid().unwrap();
    assert!(cpuid.len() > 1);
    assert_eq!(cpuid.len(), cpuid.nent() as usize);
    let leaves: Vec<KvmCpuidEntry2> = cpuid.entries().collect();
    assert!(leaves.iter().any(|e| e.function == 0));
    assert!(leaves.iter().any(|e| e.function == 0x8000_0000));
    assert!(cpuid.find(0, 0).unwrap().eax >= 1, "max basic leaf");

    vm.tdx().unwrap().finalize_vm().unwrap();
    // After FINALIZE: GET_CPUID and INIT_VM are refused with EINVAL.
    let e = vcpu.tdx().unwrap().get_cpuid().unwrap_err();
    check(
        &e,
        "KVM_TDX_GET_CPUID",
        libc::EINVAL,
        FirmwareStatus::None,
        Some("wrong TD state"),
    );
    let e = vm.tdx().unwrap().finalize_vm().unwrap_err();
    assert_eq!(e.errno.raw(), libc::EINVAL, "{e}");
}

/// FINALIZE without an initialized vCPU: TDH.MR.FINALIZE fails with TDX_NO_VCPUS
/// (firmware §5.4), KVM returns EIO with `hw_error` and the TD is unusable from then on.
#[test]
fn tdx_finalize_without_vcpus_is_a_seamcall_failure() {
    const TDX_NO_VCPUS: u64 = 0xC000_0609_0000_0000;
    let _host = served();
    let kvm = Kvm::open().unwrap();
    let vm = kvm.create_vm(VmType::Tdx).unwrap();
    vm.tdx()
        .unwrap()
        .init_vm(&mut init_vm_buf(&TdxInit::default()))
        .unwrap();
    let e = vm.tdx().unwrap().finalize_vm().unwrap_err();
    check(
        &e,
        "KVM_TDX_FINALIZE_VM",
        libc::EIO,
        FirmwareStatus::Tdx(TDX_NO_VCPUS),
        Some("SEAMCALL"),
    );
    assert!(e.to_string().contains("0xc000060900000000"), "{e}");
    let e = vm.tdx().unwrap().capabilities().unwrap_err();
    assert_eq!(e.errno.raw(), libc::EIO, "a bugged VM: {e}");
}

/// An SEV VM and its vCPU are refused as TDX targets (and a TD as an SEV one) before any
/// system call, and injected EBUSY reaches the callers of CAPABILITIES (not retried: only
/// E2BIG grows the buffer) and FINALIZE.
#[test]
fn tdx_commands_on_a_non_td_and_injected_busy() {
    let _host = served_with("capabilities:busy@1,finalize_vm:busy@1");
    let kvm = Kvm::open().unwrap();
    let sev_vm = kvm.create_vm(VmType::Sev).unwrap();
    sev_vm
        .sev()
        .unwrap()
        .init2(&mut KvmSevInit::default())
        .unwrap();
    let sev_vcpu = sev_vm.create_vcpu(0).unwrap();
    let e = sev_vcpu.tdx().unwrap_err();
    assert_eq!(
        e,
        FamilyMismatch {
            family: Family::Tdx,
            scope: Scope::Vcpu,
            vm_type: VmType::Sev
        }
    );
    assert!(e.hint().contains("not a TD"), "{e}");
    assert_eq!(
        e.to_string(),
        "KVM_TDX_* sub-commands cannot be issued on a vCPU of a `sev` VM: they need a `tdx` VM"
    );
    let e = kvm_coco::Error::from(sev_vm.tdx().unwrap_err());
    assert!(
        matches!(e, kvm_coco::Error::FamilyMismatch(m) if m.scope == Scope::Vm),
        "{e}"
    );
    assert_eq!(e.errno(), None, "no system call was made");

    let vm = kvm.create_vm(VmType::Tdx).unwrap();
    let e = vm.sev().unwrap_err();
    assert_eq!((e.family, e.vm_type), (Family::Sev, VmType::Tdx));
    assert!(e.hint().contains("use the TDX sub-commands"), "{e}");
    let e = vm.tdx().unwrap().capabilities().unwrap_err();
    check(
        &e,
        "KVM_TDX_CAPABILITIES",
        libc::EBUSY,
        FirmwareStatus::None,
        None,
    );
    vm.tdx().unwrap().capabilities().unwrap();
    vm.tdx()
        .unwrap()
        .init_vm(&mut init_vm_buf(&TdxInit::default()))
        .unwrap();
    split_irqchip(&vm);
    let vcpu = vm.create_vcpu(0).unwrap();
    vcpu.tdx().unwrap().init_vcpu(0).unwrap();
    let e = vm.tdx().unwrap().finalize_vm().unwrap_err();
    check(
        &e,
        "KVM_TDX_FINALIZE_VM",
        libc::EBUSY,
        FirmwareStatus::None,
        Some("retry"),
    );
    vm.tdx().unwrap().finalize_vm().unwrap();
}

/// The generic entry points of the typed views: an address-free command through the safe
/// `issue`, the others through `issue_unchecked`, each answered as its per-command method is.
#[test]
fn generic_issue_through_the_typed_views() {
    use kvm_coco::ops::{Immediate, sev, snp, tdx};
    let _host = served();
    let kvm = Kvm::open().unwrap();
    let dev = dev_sev();

    let vm = kvm.create_vm(VmType::Snp).unwrap();
    let amd = vm.sev().unwrap();
    assert_eq!(amd.vm_type(), VmType::Snp);
    amd.issue(Command::<sev::Init2>::new(&mut KvmSevInit::default()), None)
        .unwrap();
    let mut start = KvmSevSnpLaunchStart {
        policy: 0x3_0000,
        ..Default::default()
    };
    amd.issue(
        Command::<snp::LaunchStart>::new(&mut start),
        Some(dev.as_fd()),
    )
    .unwrap();
    // A legacy id on an SNP VM after INIT2: EPERM, as through `guest_status`.
    let mut st = kvm_coco_uapi::KvmSevGuestStatus::default();
    let e = amd
        .issue(Command::<sev::GuestStatus>::new(&mut st), None)
        .unwrap_err();
    check(
        &e,
        "KVM_SEV_GUEST_STATUS",
        libc::EPERM,
        FirmwareStatus::None,
        Some("legacy"),
    );
    let mut fin = KvmSevSnpLaunchFinish::default();
    // SAFETY: no ID block: the kernel dereferences no address.
    unsafe {
        amd.issue_unchecked(
            Command::<snp::LaunchFinish>::new(&mut fin),
            Some(dev.as_fd()),
        )
    }
    .unwrap();

    let vm = kvm.create_vm(VmType::Tdx).unwrap();
    let td = vm.tdx().unwrap();
    assert_eq!(td.vm_type(), VmType::Tdx);
    td.issue(
        Command::<tdx::InitVm>::new(&mut init_vm_buf(&TdxInit::default())),
        0,
    )
    .unwrap();
    split_irqchip(&vm);
    let vcpu = vm.create_vcpu(0).unwrap();
    let tv = vcpu.tdx().unwrap();
    assert_eq!(tv.vcpu().map(|v| v.id()), Some(0));
    tv.issue(Command::<tdx::InitVcpu>::new(&mut Immediate(0)), 0)
        .unwrap();
    let mut cpuid = kvm_coco::ops::tdx::CpuidBuf::with_capacity(256);
    cpuid.set_nent_to_capacity();
    tv.issue(Command::<tdx::GetCpuid>::new(&mut cpuid), 0)
        .unwrap();
    assert_eq!(cpuid.len(), tv.get_cpuid().unwrap().len());
    let src = GuestMapping::anonymous(PAGE).unwrap();
    let mut region = KvmTdxInitMemRegion {
        source_addr: src.host_addr(),
        gpa: 0xffff_f000,
        nr_pages: 1,
    };
    // No private memory at that GPA: EINVAL, nothing copied.
    // SAFETY: `src` is one mapped page, alive for the call.
    let e = unsafe { tv.issue_unchecked(Command::<tdx::InitMemRegion>::new(&mut region), 0) }
        .unwrap_err();
    check(
        &e,
        "KVM_TDX_INIT_MEM_REGION",
        libc::EINVAL,
        FirmwareStatus::None,
        Some("private"),
    );
    assert_eq!(region.nr_pages, 1, "no progress");
    td.issue(Command::<tdx::FinalizeVm>::new(&mut NoPayload), 0)
        .unwrap();
}

/// A TDX launch through `KvmBackend` and the launch API; the backend's vCPUs through the
/// `LaunchVcpu` trait, the guest run until it reports a fatal error with its code.
#[test]
fn tdx_launch_vcpus_through_the_launch_vcpu_trait() {
    let host = served();
    let img = measure_common::syn64k();
    let fw_img = FirmwareImage::parse(&img).unwrap();
    let plan = LaunchPlan::tdx(&fw_img).unwrap();
    let kvm = Kvm::open().unwrap();
    let backend = KvmBackend::new(&kvm, VmType::Tdx).unwrap();
    assert_eq!(backend.vm().vm_type(), VmType::Tdx);
    assert_eq!(backend.vm_type(), VmType::Tdx);
    let mut launch = Launch::new(backend, InitParams::Tdx(TdxInit::default())).unwrap();
    launch.add_plan_memory(&plan).unwrap();
    launch.create_vcpu(0).unwrap();
    let mut launch = launch.start().unwrap();
    launch.add_plan(&plan).unwrap();
    let before = launch.vcpus()[0].tdx().unwrap().get_cpuid().unwrap();
    assert!(!before.is_empty());
    let launch = launch.measure().unwrap().finish().unwrap();
    let (_backend, mut vcpus) = launch.into_parts();
    let vcpu = &mut vcpus[0];
    assert_eq!(LaunchVcpu::id(vcpu), 0);
    // TDX vCPU state is protected from creation (§9.3).
    assert!(LaunchVcpu::regs(vcpu).is_err());
    let e = vcpu.tdx().unwrap().get_cpuid().unwrap_err();
    assert_eq!(e.errno.raw(), libc::EINVAL, "GET_CPUID after FINALIZE: {e}");

    host.load_program(&*vcpu, [GuestOp::Terminate { code: 0x77 }])
        .unwrap();
    match LaunchVcpu::run(vcpu).unwrap() {
        Exit::SystemEvent(SystemEvent::TdxFatal { regs }) => {
            assert_eq!(regs.get(12).copied(), Some(0x77));
        }
        other => panic!("unexpected exit {other:?}"),
    }
}

/// The SEV-ES launch API through `KvmBackend`: a vCPU's registers set through `LaunchVcpu`
/// before LAUNCH_UPDATE_VMSA, refused after; the guest's termination request as its exit.
#[test]
fn sev_es_vcpus_through_the_launch_vcpu_trait() {
    use kvm_coco::launch::SevEsInit;
    let host = served();
    let img = measure_common::syn64k();
    let fw_img = FirmwareImage::parse(&img).unwrap();
    let inputs = measure_common::amd_inputs(&fw_img, 1, "EPYC-v4");
    let plan = LaunchPlan::sev_es(&inputs).unwrap();
    let kvm = Kvm::open().unwrap();
    let backend = KvmBackend::new(&kvm, VmType::SevEs).unwrap();
    let mut launch = Launch::new(
        backend,
        InitParams::SevEs(SevEsInit {
            policy: 0x4,
            ..SevEsInit::default()
        }),
    )
    .unwrap();
    launch.add_plan_memory(&plan).unwrap();
    let vcpu = launch.create_vcpu(0).unwrap();
    let mut regs = LaunchVcpu::regs(vcpu).unwrap();
    let sregs = LaunchVcpu::sregs(vcpu).unwrap();
    regs.rbx = 0x1234;
    LaunchVcpu::set_regs(vcpu, &regs).unwrap();
    LaunchVcpu::set_sregs(vcpu, &sregs).unwrap();
    assert_eq!(LaunchVcpu::regs(vcpu).unwrap().rbx, 0x1234);
    let mut launch = launch.start().unwrap();
    launch.add_plan(&plan).unwrap();
    let launch = launch.measure().unwrap().finish().unwrap();
    let (_backend, mut vcpus) = launch.into_parts();
    let vcpu = &mut vcpus[0];
    assert!(
        LaunchVcpu::regs(vcpu).is_err(),
        "protected after LAUNCH_UPDATE_VMSA"
    );
    LaunchVcpu::mark_protected(vcpu);
    assert!(vcpu.is_state_protected());
    host.load_program(&*vcpu, [GuestOp::Terminate { code: 5 }])
        .unwrap();
    match LaunchVcpu::run(vcpu).unwrap() {
        Exit::SystemEvent(SystemEvent::SevTerm { .. }) => {}
        other => panic!("unexpected exit {other:?}"),
    }
}

// ---- KvmBackend -----------------------------------------------------------------------

/// `KvmBackend::new` for a type it cannot launch: a non-confidential type, and a type the
/// host's `KVM_CAP_VM_TYPES` does not offer.
#[test]
fn kvm_backend_refuses_types_the_host_does_not_offer() {
    let host = SoftwareHost::builder()
        .seed(1)
        .serve([VmType::Snp])
        .start()
        .unwrap();
    host.serve_current_thread()
        .expect("seccomp user notification is required by the software host");
    let kvm = Kvm::open().unwrap();
    assert!(!kvm.supported_vm_types().contains(VmType::Sev));
    assert!(matches!(
        KvmBackend::new(&kvm, VmType::Default),
        Err(LaunchError::NotConfidential(_))
    ));
    for (t, reason) in [
        (VmType::Sev, "KVM_CAP_VM_TYPES"),
        (VmType::Tdx, "KVM_CAP_VM_TYPES"),
    ] {
        match KvmBackend::new(&kvm, t) {
            Err(e @ LaunchError::NotSupportedOnHost { .. }) => {
                assert!(e.is_not_supported_on_host());
                assert!(e.to_string().contains(reason), "{t}: {e}");
            }
            Err(e) => panic!("{t}: {e}"),
            Ok(_) => panic!("{t}: a backend for a type the host does not offer"),
        }
    }
    assert!(KvmBackend::new(&kvm, VmType::Snp).is_ok());
}

/// An SEV launch through `KvmBackend` with a guest owner's session (facts firmware §1.5): the
/// owner's secret injected with LAUNCH_SECRET under its TEK/TIK, then the guest memory read
/// and written through DBG_DECRYPT/DBG_ENCRYPT; ranges outside the launch's memory fail
/// before any ioctl.
#[test]
fn kvm_backend_sev_secret_and_debug_with_an_owner_session() {
    use kvm_coco::launch::{LaunchSecret, SevInit, SevSession};
    use psp_driver::owner::cert::SevCert;
    use psp_driver::owner::session::OwnerSession;
    use rand_chacha::ChaCha20Rng;
    use rand_chacha::rand_core::SeedableRng;
    use zerocopy::FromBytes;

    let _host = served();
    let export = DevSev::open().unwrap().pdh_cert_export().unwrap();
    let pdh = SevCert::read_from_bytes(&export.pdh_cert).unwrap();
    let policy = 0; // debugging allowed
    let owner = OwnerSession::new(&mut ChaCha20Rng::from_seed([3; 32]), &pdh, policy).unwrap();
    let session = SevSession {
        dh_cert: owner.dh_cert().as_bytes().to_vec(),
        session: owner.session().as_bytes().to_vec(),
    };
    let kvm = Kvm::open().unwrap();
    let backend = KvmBackend::new(&kvm, VmType::Sev).unwrap();
    let mut buf = [0u8; 16];
    assert!(matches!(
        backend.read_shared(GPA, &mut buf),
        Err(LaunchError::NoMemory { gpa: GPA, len: 16 })
    ));
    let mut launch = Launch::new(
        backend,
        InitParams::Sev(SevInit {
            policy,
            session: Some(session),
        }),
    )
    .unwrap();
    launch.add_memory(GPA, 0x4000).unwrap();
    launch.create_vcpu(0).unwrap();
    let mut launch = launch.start().unwrap();
    let image = pattern(0x2000, 0x41);
    launch.add_measured(GPA, &image).unwrap();
    let mut launch = launch.measure().unwrap();
    let m = *launch.sev_launch_measure().unwrap();
    let mut blob = [0u8; 48];
    blob[..32].copy_from_slice(&m.measure);
    blob[32..].copy_from_slice(&m.mnonce);
    verify_launch_measure(
        &owner.keys().tik,
        fw_version(),
        policy,
        &sha256(&image),
        &blob,
    )
    .expect("LAUNCH_MEASURE under the owner's TIK");

    let secret = pattern(64, 0x99);
    let (hdr, ct) = build_secret(owner.keys(), &m.measure, [0x11; 16], &secret).unwrap();
    let at = GPA + 0x3000;
    launch
        .inject_secret(&LaunchSecret {
            header: hdr.as_bytes().to_vec(),
            ciphertext: ct.clone(),
            gpa: at,
        })
        .unwrap();
    let outside = LaunchSecret {
        header: hdr.as_bytes().to_vec(),
        ciphertext: ct,
        gpa: GPA + 0x4000,
    };
    match launch.inject_secret(&outside) {
        Err(LaunchError::Command(e)) => check(
            &e,
            "KVM_SEV_LAUNCH_SECRET",
            libc::EFAULT,
            FirmwareStatus::None,
            Some("outside the guest memory"),
        ),
        other => panic!("{other:?}"),
    }

    let mut got = vec![0u8; 64];
    launch.debug_read(at, &mut got).unwrap();
    assert_eq!(got, secret, "the owner's secret in guest memory");
    let mut first = vec![0u8; 32];
    launch.debug_read(GPA, &mut first).unwrap();
    assert_eq!(first, image[..32]);
    let patch = pattern(32, 0x5c);
    launch.debug_write(GPA + 0x100, &patch).unwrap();
    let mut back = vec![0u8; 32];
    launch.debug_read(GPA + 0x100, &mut back).unwrap();
    assert_eq!(back, patch);
    let mut raw = vec![0u8; 32];
    launch.backend().read_shared(GPA + 0x100, &mut raw).unwrap();
    assert_ne!(raw, patch, "the host sees ciphertext");
    for e in [
        launch.debug_read(GPA + 0x3ff0, &mut [0u8; 32]).unwrap_err(),
        launch.debug_write(GPA - 0x10, &[0u8; 16]).unwrap_err(),
    ] {
        match e {
            LaunchError::Command(e) => {
                assert_eq!(e.errno.raw(), libc::EFAULT, "{e}");
                assert!(
                    e.hint
                        .is_some_and(|h| h.contains("outside the guest memory"))
                );
            }
            other => panic!("{other:?}"),
        }
    }
    let launch = launch.finish().unwrap();
    let (mut backend, _vcpus) = launch.into_parts();
    backend.write_shared(GPA + 0x200, &[7; 16]).unwrap();
    let mut raw = [0u8; 16];
    backend.read_shared(GPA + 0x200, &mut raw).unwrap();
    assert_eq!(raw, [7; 16]);
    assert!(matches!(
        backend.write_shared(GPA + 0x3ff8, &[0; 16]),
        Err(LaunchError::NoMemory { .. })
    ));
    // An SEV backend has no TDX sub-commands: refused as a VM without KVM_TDX_* (ENOTTY)
    // before any system call.
    let mut caps = TdxCapabilitiesBuf::with_capacity(4);
    let e = backend.tdx_capabilities(&mut caps).unwrap_err();
    assert_eq!(
        (e.command, e.errno.raw()),
        ("KVM_MEMORY_ENCRYPT_OP", libc::ENOTTY),
        "{e}"
    );
    assert!(e.hint.is_some_and(|h| h.contains("not a TD")), "{e}");
}

/// A TD backend has no `/dev/sev` fd: the SNP commands that need one fail with EBADF before
/// any ioctl.
#[test]
fn kvm_backend_without_dev_sev() {
    let _host = served();
    let kvm = Kvm::open().unwrap();
    let mut backend = KvmBackend::new(&kvm, VmType::Tdx).unwrap();
    let e = backend
        .snp_launch_start(&mut KvmSevSnpLaunchStart::default())
        .unwrap_err();
    assert_eq!(
        (e.errno.raw(), e.hint),
        (libc::EBADF, Some("no /dev/sev fd"))
    );
    let e = backend.sev_launch_start(0, None).unwrap_err();
    assert_eq!(e.errno.raw(), libc::EBADF, "{e}");
}

/// An SNP launch through `KvmBackend` with certificate requests routed to the VMM: a CPUID
/// page with more than 64 entries is refused by the firmware with INVALID_PARAM (facts
/// firmware §3.5 LAUNCH_UPDATE 13, §3.9), the launch goes on without it, SNP_LAUNCH_FINISH
/// protects the vCPU, and the guest's termination request is its exit.
#[test]
fn kvm_backend_snp_cpuid_rejection_and_finish() {
    use kvm_coco::measure::plan::{Data, Origin, PageKind, Step};
    let host = served();
    let kvm = Kvm::open().unwrap();
    let backend = KvmBackend::new(&kvm, VmType::Snp).unwrap();
    let params = SnpInit {
        req_certs: true,
        ..SnpInit::default()
    };
    let mut launch = Launch::new(backend, InitParams::Snp(params)).unwrap();
    launch.add_memory(GPA, 0x4000).unwrap();
    launch.create_vcpu(0).unwrap();
    let mut launch = launch.start().unwrap();
    launch.add_measured(GPA, &pattern(PAGE, 0x21)).unwrap();
    let mut cpuid = vec![0u8; PAGE];
    cpuid[..4].copy_from_slice(&65u32.to_le_bytes());
    let step = Step {
        gpa: GPA + 0x1000,
        len: PAGE as u64,
        kind: PageKind::Cpuid,
        data: Data::Borrowed(&cpuid),
        origin: Origin::Firmware,
    };
    match launch.add(&step) {
        Err(LaunchError::CpuidRejected { gpa, source, .. }) => {
            assert_eq!(gpa, GPA + 0x1000);
            check(
                &source,
                "KVM_SEV_SNP_LAUNCH_UPDATE",
                libc::EIO,
                fw(0x16),
                Some("firmware"),
            );
        }
        other => panic!("{other:?}"),
    }
    let launch = launch.measure().unwrap().finish().unwrap();
    let (mut backend, mut vcpus) = launch.into_parts();
    assert!(
        vcpus[0].is_state_protected(),
        "protected by SNP_LAUNCH_FINISH"
    );
    backend.set_private(GPA + 0x3000, 0x1000, false).unwrap();
    backend.write_shared(GPA + 0x3000, b"shared").unwrap();
    backend.set_private(GPA + 0x3000, 0x1000, true).unwrap();
    host.load_program(&vcpus[0], [GuestOp::Terminate { code: 9 }])
        .unwrap();
    match LaunchVcpu::run(&mut vcpus[0]).unwrap() {
        Exit::SystemEvent(SystemEvent::SevTerm { .. }) => {}
        other => panic!("unexpected exit {other:?}"),
    }
}

/// Faults the host injects into the TDX commands: E2BIG on every CAPABILITIES call ends the
/// growth at `KVM_MAX_CPUID_ENTRIES` (256) with that E2BIG; EINTR on INIT_MEM_REGION (a
/// signal, §4) reaches the caller with its hint; a buffer header claiming more entries than
/// the storage holds is clamped before the kernel sees it.
#[test]
fn tdx_injected_e2big_and_eintr() {
    let _host = served_with("capabilities:e2big,init_mem_region:eintr@1");
    let kvm = Kvm::open().unwrap();
    let vm = kvm.create_vm(VmType::Tdx).unwrap();
    let mut tried = Vec::new();
    let e = read_capabilities_growing(32, |buf| {
        tried.push(buf.capacity());
        vm.tdx().unwrap().capabilities_into(buf)
    })
    .unwrap_err();
    assert_eq!(tried, [32, 64, 128, 256]);
    check(
        &e,
        "KVM_TDX_CAPABILITIES",
        libc::E2BIG,
        FirmwareStatus::None,
        Some("grow the buffer"),
    );
    let e = vm.tdx().unwrap().capabilities().unwrap_err();
    assert_eq!(e.errno.raw(), libc::E2BIG, "{e}");

    let mut buf = TdxCapabilitiesBuf::with_capacity(2);
    // `cpuid.nent` sits at offset 2048 of `kvm_tdx_capabilities` (linux-uapi §4).
    buf.as_mut_bytes()[2048..2052].copy_from_slice(&100u32.to_ne_bytes());
    assert_eq!(buf.nent(), 100);
    let cmd = Command::<kvm_coco::ops::tdx::Capabilities>::new(&mut buf);
    let e = vm.tdx().unwrap().issue(cmd, 0).unwrap_err();
    assert_eq!(e.errno.raw(), libc::E2BIG, "{e}");
    assert_eq!(buf.nent(), 2, "clamped to the capacity");

    vm.tdx()
        .unwrap()
        .init_vm(&mut init_vm_buf(&TdxInit::default()))
        .unwrap();
    split_irqchip(&vm);
    let vcpu = vm.create_vcpu(0).unwrap();
    vcpu.tdx().unwrap().init_vcpu(0).unwrap();
    let src = GuestMapping::anonymous(PAGE).unwrap();
    let mut region = KvmTdxInitMemRegion {
        source_addr: src.host_addr(),
        gpa: 0xffff_f000,
        nr_pages: 1,
    };
    // SAFETY: `src` is one mapped page, alive for the call.
    let e = unsafe { vcpu.tdx().unwrap().init_mem_region(&mut region, true) }.unwrap_err();
    check(
        &e,
        "KVM_TDX_INIT_MEM_REGION",
        libc::EINTR,
        FirmwareStatus::None,
        Some("interrupted by a signal"),
    );
    assert_eq!(region.nr_pages, 1, "no progress");
}
