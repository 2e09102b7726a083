//! psp-driver's `DevSev` (the `Platform` commands on `/dev/sev`) issuing real `SEV_ISSUE_CMD`
//! ioctls on a thread served by the software host: status, identity and certificate commands
//! on their success paths, checked against the platform state machine (facts firmware §6.1,
//! §6.4) and by verifying the certificates' signatures; the key-changing commands with the
//! errno, firmware status and message of the typed error (linux-uapi §7.2, §7.3).
//!
//! The software firmware does not implement FACTORY_RESET, SNP_COMMIT, SNP_CONFIG and
//! SNP_VLEK_LOAD: it answers INVALID_COMMAND (0x11), which the tests expect where the kernel
//! would reach the firmware.

use std::sync::Arc;

use kvm_coco::sim::host::SoftwareHost;
use kvm_coco::{GuestMapping, Kvm, MemoryRegion, Vm, VmType};
use kvm_coco_uapi::sev_dev::{SevUserDataSnpConfig, SevUserDataSnpWrappedVlekHashstick};
use kvm_coco_uapi::{KvmSevInit, KvmSevLaunchStart};
use psp_driver::owner::cert::{SEV_CERT_LEN, SevCert, usage};
use psp_driver::{DevSev, DevSevError, Platform, SevPlatformCmd, SevRetCode};
use zerocopy::FromBytes;

/// `sev_user_data_status.state` / SNP platform state (linux-uapi §7.4, firmware §6.1, §6.4).
const UNINIT: u8 = 0;
const INIT: u8 = 1;
const WORKING: u8 = 2;
/// `SEV_STATUS_FLAGS_CONFIG_ES` (linux-uapi §7.4).
const FLAGS_CONFIG_ES: u32 = 0x100;
/// PLATFORM_STATUS owner bit: externally owned (firmware §1.7).
const FLAGS_OWNER_EXTERNAL: u32 = 0x1;
/// INVALID_PLATFORM_STATE, INVALID_CERTIFICATE, INVALID_COMMAND (linux-uapi §7.3).
const INVALID_PLATFORM_STATE: u32 = 0x01;
const INVALID_CERTIFICATE: u32 = 0x06;
const INVALID_COMMAND: u32 = 0x11;

/// A software host serving this test's thread.
fn served(seed: u64) -> SoftwareHost {
    let host = SoftwareHost::builder().seed(seed).start().unwrap();
    host.serve_current_thread()
        .expect("seccomp user notification is required by the software host");
    host
}

fn read_only() -> DevSev {
    DevSev::open_read_only("/dev/sev").unwrap()
}

/// The parts of a failed platform command: command, errno and firmware status.
#[track_caller]
fn failure(e: &DevSevError) -> (SevPlatformCmd, i32, SevRetCode) {
    match e {
        DevSevError::Command { cmd, status, errno } => (*cmd, *errno as i32, *status),
        other => panic!("not a command failure: {other:?}"),
    }
}

/// Checks a command that reached the firmware and failed with `status` (errno EIO).
#[track_caller]
fn check_fw(e: &DevSevError, cmd: SevPlatformCmd, status: u32) {
    assert_eq!(
        failure(e),
        (cmd, libc::EIO, SevRetCode::from_raw(status)),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        format!(
            "{cmd} failed: firmware status {}",
            SevRetCode::from_raw(status)
        )
    );
}

/// Checks a command the driver refused with `errno` before the firmware; the message
/// carries the hint containing `hint`.
#[track_caller]
fn check_refused(e: &DevSevError, cmd: SevPlatformCmd, errno: i32, hint: &str) {
    let (c, n, _) = failure(e);
    assert_eq!((c, n), (cmd, errno), "{e}");
    let msg = e.to_string();
    assert!(msg.starts_with(&format!("{cmd} failed: ")), "{msg}");
    assert!(msg.contains(hint), "{msg}");
}

/// A launched SEV guest (the platform becomes WORKING); kept alive by the returned VM.
fn sev_guest(kvm: &Kvm) -> (Vm, Arc<GuestMapping>) {
    let vm = kvm.create_vm(VmType::Sev).unwrap();
    vm.sev().unwrap().init2(&mut KvmSevInit::default()).unwrap();
    let mem = Arc::new(GuestMapping::anonymous(0x1000).unwrap());
    vm.set_memory_region(MemoryRegion::new(0, 0x10_0000, mem.clone()))
        .unwrap();
    let sev = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/sev")
        .unwrap();
    let mut start = KvmSevLaunchStart::default();
    // SAFETY: no DH certificate or session blob is passed.
    unsafe {
        vm.sev()
            .unwrap()
            .launch_start(&mut start, std::os::fd::AsFd::as_fd(&sev))
    }
    .unwrap();
    (vm, mem)
}

/// An SNP VM after INIT2: SNP is initialized on the platform (KVM's `sev_platform_init`).
fn snp_initialized(kvm: &Kvm) -> Vm {
    let vm = kvm.create_vm(VmType::Snp).unwrap();
    vm.sev().unwrap().init2(&mut KvmSevInit::default()).unwrap();
    vm
}

/// The certificates of PDH_CERT_EXPORT, parsed: PDH, then the chain PEK, OCA, CEK.
fn certs(dev: &DevSev) -> [SevCert; 4] {
    let x = dev.pdh_cert_export().unwrap();
    assert_eq!(x.pdh_cert.len(), SEV_CERT_LEN);
    assert_eq!(x.cert_chain.len(), 3 * SEV_CERT_LEN);
    let c = |b: &[u8]| SevCert::read_from_bytes(b).unwrap();
    let chain: Vec<&[u8]> = x.cert_chain.chunks(SEV_CERT_LEN).collect();
    [c(&x.pdh_cert), c(chain[0]), c(chain[1]), c(chain[2])]
}

#[test]
fn platform_status_follows_the_platform_state() {
    let _host = served(1);
    let dev = DevSev::open().unwrap();
    assert_eq!(dev.path(), std::path::Path::new("/dev/sev"));
    // A fresh platform: UNINIT, no owner, no ES, no guests (firmware §6.1).
    let st = dev.platform_status().unwrap();
    assert_eq!((st.state, { st.flags }, { st.guest_count }), (UNINIT, 0, 0));
    let snp = dev.snp_platform_status().unwrap();
    assert_eq!((snp.state, { snp.guest_count }), (UNINIT, 0));

    let kvm = Kvm::open().unwrap();
    // KVM_SEV_INIT2 of an SNP VM initializes SNP, then SEV with ES (linux-uapi §10.1, §10.3).
    let _snp_vm = snp_initialized(&kvm);
    let snp = read_only().snp_platform_status().unwrap();
    assert_eq!(snp.state, INIT);
    let st = read_only().platform_status().unwrap();
    assert_eq!(st.state, INIT);
    assert_eq!({ st.flags } & FLAGS_CONFIG_ES, FLAGS_CONFIG_ES);
    assert_eq!({ st.guest_count }, 0);
    // LAUNCH_START: INIT → WORKING, guest_count 1 (firmware §1.8, §6.1).
    let (_vm, _mem) = sev_guest(&kvm);
    let st = dev.platform_status().unwrap();
    assert_eq!((st.state, { st.guest_count }), (WORKING, 1));
    let again = read_only().platform_status().unwrap();
    assert_eq!(
        (again.api_major, again.api_minor, again.build),
        (st.api_major, st.api_minor, st.build)
    );
}

#[test]
fn get_id_is_stable_and_per_chip() {
    // Another chip (another seed of the host's firmware), on a thread of its own: a served
    // thread's children inherit its filter and cannot be served by a second host.
    let other = std::thread::spawn(|| {
        let _host = served(2);
        read_only().get_id().unwrap()
    })
    .join()
    .unwrap();
    let _host = served(1);
    let id = DevSev::open().unwrap().get_id().unwrap();
    assert!(
        !id.is_empty() && id.len().is_multiple_of(64),
        "{} bytes",
        id.len()
    );
    assert_ne!(id, vec![0u8; id.len()]);
    // Any state, any fd (linux-uapi §7.2: GET_ID2 needs no write access).
    assert_eq!(read_only().get_id().unwrap(), id);
    assert_eq!(other.len(), id.len());
    assert_ne!(other, id);
}

/// PEK_CSR on an UNINIT platform: the driver INITs, the firmware returns the unsigned
/// certificate of its PEK, the driver SHUTs DOWN again (linux-uapi §7.2, §9.1).
#[test]
fn pek_csr_certifies_the_platforms_pek() {
    let _host = served(1);
    let dev = DevSev::open().unwrap();
    let csr = dev.pek_csr().unwrap();
    assert_eq!(csr.len(), SEV_CERT_LEN);
    let csr = SevCert::read_from_bytes(&csr).unwrap();
    assert_eq!(csr.pub_key_usage.get(), usage::PEK);
    // A signing request carries no signature yet.
    assert_eq!(csr.sig1.usage.get(), usage::INVALID);
    assert_eq!(csr.sig2.usage.get(), usage::INVALID);
    assert_eq!(
        dev.platform_status().unwrap().state,
        UNINIT,
        "SHUTDOWN after"
    );
    let [_, pek, _, _] = certs(&dev);
    assert_eq!(csr.pub_key, pek.pub_key, "the CSR is for the exported PEK");

    // WORKING allows no PEK_CSR (firmware §6.1).
    let kvm = Kvm::open().unwrap();
    let (_vm, _mem) = sev_guest(&kvm);
    let e = dev.pek_csr().unwrap_err();
    check_fw(&e, SevPlatformCmd::PekCsr, INVALID_PLATFORM_STATE);
}

/// PDH_CERT_EXPORT: PDH signed by the PEK, PEK signed by the OCA and the CEK, OCA self-signed.
#[test]
fn pdh_cert_export_chain_verifies() {
    let _host = served(1);
    let dev = DevSev::open().unwrap();
    let [pdh, pek, oca, cek] = certs(&dev);
    assert_eq!(
        [pdh, pek, oca, cek].map(|c| c.pub_key_usage.get()),
        [usage::PDH, usage::PEK, usage::OCA, usage::CEK]
    );
    let pek_key = pek.public_key().unwrap();
    let oca_key = oca.public_key().unwrap();
    let cek_key = cek.public_key().unwrap();
    pdh.verify_signed_by(&pek_key, usage::PEK).unwrap();
    pek.verify_signed_by(&oca_key, usage::OCA).unwrap();
    pek.verify_signed_by(&cek_key, usage::CEK).unwrap();
    oca.verify_signed_by(&oca_key, usage::OCA).unwrap();
    assert!(pdh.verify_signed_by(&oca_key, usage::OCA).is_err());
    assert_eq!(dev.platform_status().unwrap().state, UNINIT);
}

/// PEK_GEN replaces the PEK (and so the PDH), PDH_GEN only the PDH; both need write access
/// (linux-uapi §7.2) and an INIT platform (firmware §6.1: PEK_GEN not in WORKING).
#[test]
fn pek_gen_and_pdh_gen_replace_the_keys() {
    let _host = served(1);
    let dev = DevSev::open().unwrap();
    let [pdh0, pek0, _, _] = certs(&dev);
    dev.pdh_gen().unwrap();
    let [pdh1, pek1, _, _] = certs(&dev);
    assert_eq!(pek1.pub_key, pek0.pub_key);
    assert_ne!(pdh1.pub_key, pdh0.pub_key);
    pdh1.verify_signed_by(&pek1.public_key().unwrap(), usage::PEK)
        .unwrap();
    dev.pek_gen().unwrap();
    let [pdh2, pek2, oca2, _] = certs(&dev);
    assert_ne!(pek2.pub_key, pek1.pub_key);
    assert_ne!(pdh2.pub_key, pdh1.pub_key);
    pdh2.verify_signed_by(&pek2.public_key().unwrap(), usage::PEK)
        .unwrap();
    pek2.verify_signed_by(&oca2.public_key().unwrap(), usage::OCA)
        .unwrap();

    let ro = read_only();
    let e = ro.pek_gen().unwrap_err();
    check_refused(
        &e,
        SevPlatformCmd::PekGen,
        libc::EPERM,
        "open /dev/sev read-write",
    );
    let e = ro.pdh_gen().unwrap_err();
    check_refused(
        &e,
        SevPlatformCmd::PdhGen,
        libc::EPERM,
        "open /dev/sev read-write",
    );

    let kvm = Kvm::open().unwrap();
    let (_vm, _mem) = sev_guest(&kvm);
    let e = dev.pek_gen().unwrap_err();
    check_fw(&e, SevPlatformCmd::PekGen, INVALID_PLATFORM_STATE);
    // PDH_GEN is allowed in WORKING.
    dev.pdh_gen().unwrap();
}

/// PEK_CERT_IMPORT of the platform's own OCA-signed PEK and OCA: the platform becomes
/// externally owned; a PEK certificate the OCA did not sign is refused.
#[test]
fn pek_cert_import_takes_ownership() {
    let _host = served(1);
    let dev = DevSev::open().unwrap();
    let [pdh0, pek, oca, _] = certs(&dev);
    assert_eq!(
        { dev.platform_status().unwrap().flags } & FLAGS_OWNER_EXTERNAL,
        0
    );
    let csr = dev.pek_csr().unwrap();
    let e = dev
        .pek_cert_import(&csr, zerocopy::IntoBytes::as_bytes(&oca))
        .unwrap_err();
    check_fw(&e, SevPlatformCmd::PekCertImport, INVALID_CERTIFICATE);

    dev.pek_cert_import(
        zerocopy::IntoBytes::as_bytes(&pek),
        zerocopy::IntoBytes::as_bytes(&oca),
    )
    .unwrap();
    let [pdh1, pek1, oca1, _] = certs(&dev);
    assert_eq!(pek1.pub_key, pek.pub_key);
    assert_eq!(oca1.pub_key, oca.pub_key);
    assert_ne!(pdh1.pub_key, pdh0.pub_key, "a new PDH with the new owner");
    pek1.verify_signed_by(&oca.public_key().unwrap(), usage::OCA)
        .unwrap();
    // In the driver's INIT → command → SHUTDOWN, so read PLATFORM_STATUS after an INIT.
    let kvm = Kvm::open().unwrap();
    let (_vm, _mem) = sev_guest(&kvm);
    let st = dev.platform_status().unwrap();
    assert_eq!({ st.flags } & FLAGS_OWNER_EXTERNAL, FLAGS_OWNER_EXTERNAL);
    // WORKING: PEK_CERT_IMPORT is refused (firmware §6.1).
    let e = dev
        .pek_cert_import(
            zerocopy::IntoBytes::as_bytes(&pek),
            zerocopy::IntoBytes::as_bytes(&oca),
        )
        .unwrap_err();
    check_fw(&e, SevPlatformCmd::PekCertImport, INVALID_PLATFORM_STATE);

    // Blobs above 16 KiB never reach the driver (linux-uapi §7.2).
    let big = vec![0u8; 16 * 1024 + 1];
    match dev.pek_cert_import(&big, &[0; 16]).unwrap_err() {
        DevSevError::TooLarge { what, len, max } => {
            assert_eq!((what, len, max), ("PEK certificate", 16385, 16384));
        }
        other => panic!("{other:?}"),
    }
    match dev.pek_cert_import(&[0; 16], &big).unwrap_err() {
        DevSevError::TooLarge { what, .. } => assert_eq!(what, "OCA certificate"),
        other => panic!("{other:?}"),
    }
    let e = read_only()
        .pek_cert_import(
            zerocopy::IntoBytes::as_bytes(&pek),
            zerocopy::IntoBytes::as_bytes(&oca),
        )
        .unwrap_err();
    check_refused(
        &e,
        SevPlatformCmd::PekCertImport,
        libc::EPERM,
        "open /dev/sev read-write",
    );
}

/// FACTORY_RESET: refused with EBUSY while guests exist (linux-uapi §7.2); otherwise the
/// software firmware's INVALID_COMMAND; EPERM without write access.
#[test]
fn factory_reset_answers() {
    let _host = served(1);
    let dev = DevSev::open().unwrap();
    let e = dev.factory_reset().unwrap_err();
    check_fw(&e, SevPlatformCmd::FactoryReset, INVALID_COMMAND);
    let e = read_only().factory_reset().unwrap_err();
    check_refused(&e, SevPlatformCmd::FactoryReset, libc::EPERM, "read-write");

    let kvm = Kvm::open().unwrap();
    let (_vm, _mem) = sev_guest(&kvm);
    let e = dev.factory_reset().unwrap_err();
    check_refused(&e, SevPlatformCmd::FactoryReset, libc::EBUSY, "busy");
}

/// SNP_COMMIT and SNP_SET_CONFIG reach the software firmware (INVALID_COMMAND) once SNP is
/// initialized; before, SNP_SET_CONFIG is ENODEV (linux-uapi §7.2); SNP_SET_CONFIG and
/// SNP_VLEK_LOAD need write access.
#[test]
fn snp_platform_commands() {
    let _host = served(1);
    let dev = DevSev::open().unwrap();
    let config = SevUserDataSnpConfig::default();
    let e = dev.snp_set_config(&config).unwrap_err();
    check_refused(
        &e,
        SevPlatformCmd::SnpSetConfig,
        libc::ENODEV,
        "SNP is not initialized",
    );
    let e = dev.snp_commit().unwrap_err();
    check_fw(&e, SevPlatformCmd::SnpCommit, INVALID_COMMAND);

    let kvm = Kvm::open().unwrap();
    let _snp_vm = snp_initialized(&kvm);
    let e = dev.snp_set_config(&config).unwrap_err();
    check_fw(&e, SevPlatformCmd::SnpSetConfig, INVALID_COMMAND);
    let e = dev.snp_commit().unwrap_err();
    check_fw(&e, SevPlatformCmd::SnpCommit, INVALID_COMMAND);

    let ro = read_only();
    let e = ro.snp_set_config(&config).unwrap_err();
    check_refused(&e, SevPlatformCmd::SnpSetConfig, libc::EPERM, "read-write");
    let hashstick = SevUserDataSnpWrappedVlekHashstick::default();
    let e = ro.snp_vlek_load(&hashstick).unwrap_err();
    check_refused(&e, SevPlatformCmd::SnpVlekLoad, libc::EPERM, "read-write");
}

/// SNP_VLEK_LOAD with a well-formed argument (`len` 16, version 0): ENODEV before SNP is
/// initialized, then the firmware's answer, INVALID_COMMAND (linux-uapi §7.2).
#[test]
fn snp_vlek_load_reaches_the_firmware() {
    let _host = served(1);
    let dev = DevSev::open().unwrap();
    let hashstick = SevUserDataSnpWrappedVlekHashstick::default();
    let e = dev.snp_vlek_load(&hashstick).unwrap_err();
    check_refused(
        &e,
        SevPlatformCmd::SnpVlekLoad,
        libc::ENODEV,
        "SNP is not initialized",
    );
    let kvm = Kvm::open().unwrap();
    let _snp_vm = snp_initialized(&kvm);
    let e = dev.snp_vlek_load(&hashstick).unwrap_err();
    check_fw(&e, SevPlatformCmd::SnpVlekLoad, INVALID_COMMAND);
}

/// SNP_COMMIT needs no write access in Linux 7.3 (linux-uapi §7.2, §12.12).
#[test]
fn snp_commit_on_a_read_only_fd() {
    let _host = served(1);
    let e = read_only().snp_commit().unwrap_err();
    check_fw(&e, SevPlatformCmd::SnpCommit, INVALID_COMMAND);
}

/// PEK_CSR needs write access (linux-uapi §7.2).
#[test]
fn pek_csr_on_a_read_only_fd_is_eperm() {
    let _host = served(1);
    let e = read_only().pek_csr().unwrap_err();
    check_refused(&e, SevPlatformCmd::PekCsr, libc::EPERM, "read-write");
}

/// PDH_CERT_EXPORT on a platform that is not INIT needs the driver's automatic INIT, hence
/// write access (linux-uapi §7.2).
#[test]
fn pdh_cert_export_on_a_read_only_fd_of_an_uninit_platform_is_eperm() {
    let _host = served(1);
    let e = read_only().pdh_cert_export().unwrap_err();
    check_refused(&e, SevPlatformCmd::PdhCertExport, libc::EPERM, "read-write");
}

/// The certificate-file lock around key-changing commands: a missing file stops the command
/// before the device; an existing one is locked and released.
#[test]
fn key_changes_take_the_certificate_lock() {
    let _host = served(1);
    let dir = std::env::temp_dir();
    let missing = dir.join(format!("host-dev-sev-{}-missing", std::process::id()));
    let dev = DevSev::open().unwrap().with_cert_lock(&missing);
    let [pdh0, ..] = certs(&dev);
    match dev.pdh_gen().unwrap_err() {
        DevSevError::CertLock { path, source } => {
            assert_eq!(path, missing);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("{other:?}"),
    }
    let [pdh1, ..] = certs(&dev);
    assert_eq!(pdh1.pub_key, pdh0.pub_key, "the PDH was not regenerated");

    let file = dir.join(format!("host-dev-sev-{}-certs", std::process::id()));
    std::fs::write(&file, b"certificates").unwrap();
    let dev = DevSev::open().unwrap().with_cert_lock(&file);
    dev.pdh_gen().unwrap();
    let [pdh2, ..] = certs(&dev);
    assert_ne!(pdh2.pub_key, pdh0.pub_key);
    // Released: another holder can take the lock again.
    dev.pdh_gen().unwrap();
    assert_eq!(
        std::fs::read(&file).unwrap(),
        b"certificates",
        "not modified"
    );
    std::fs::remove_file(&file).unwrap();
}
