use super::*;
use std::os::unix::fs::PermissionsExt;
use std::sync::mpsc;
use std::time::Duration;

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("psp-driver-{}-{name}", std::process::id()))
}

fn temp_file(name: &str) -> PathBuf {
    let path = temp_path(name);
    std::fs::write(&path, b"cert blob").unwrap();
    path
}

#[test]
fn missing_device_is_reported_as_not_available() {
    let path = temp_path("no-such-sev");
    let err = DevSev::open_path(&path).unwrap_err();
    assert!(
        matches!(&err, DevSevError::NotFound { path: p } if *p == path),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "AMD SEV is not available on this host: {} does not exist (is kvm_amd loaded with sev=1?)",
            path.display()
        )
    );
}

#[test]
fn open_errors_are_classified() {
    let p = Path::new("/dev/sev");
    let e = |n| io::Error::from_raw_os_error(n);
    assert!(matches!(
        open_error(p, e(libc::ENOENT)),
        DevSevError::NotFound { .. }
    ));
    assert!(matches!(
        open_error(p, e(libc::EACCES)),
        DevSevError::PermissionDenied { .. }
    ));
    assert!(matches!(
        open_error(p, e(libc::EPERM)),
        DevSevError::PermissionDenied { .. }
    ));
    assert!(matches!(
        open_error(p, e(libc::ENODEV)),
        DevSevError::NoDevice { .. }
    ));
    assert!(matches!(
        open_error(p, e(libc::ENXIO)),
        DevSevError::NoDevice { .. }
    ));
    assert!(matches!(
        open_error(p, e(libc::EISDIR)),
        DevSevError::Open { .. }
    ));
    let msg = open_error(p, e(libc::EACCES)).to_string();
    assert!(
        msg.starts_with("AMD SEV is not available to this user: permission denied"),
        "{msg}"
    );
}

/// A file the caller cannot open read-write gives the EACCES variant. Root bypasses mode
/// bits, so a sysfs file that refuses writes even to root is the fallback.
#[test]
fn unopenable_device_is_permission_denied() {
    let locked = temp_file("mode000");
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    let candidates = [locked.clone(), PathBuf::from("/sys/kernel/notes")];
    let mut seen = false;
    for path in &candidates {
        match DevSev::open_path(path) {
            Err(DevSevError::PermissionDenied { path: p, source }) => {
                assert_eq!(&p, path);
                assert_eq!(source.raw_os_error(), Some(libc::EACCES));
                seen = true;
                break;
            }
            Err(DevSevError::NotFound { .. }) | Ok(_) => continue,
            Err(other) => panic!("unexpected error for {}: {other}", path.display()),
        }
    }
    std::fs::remove_file(&locked).unwrap();
    if !seen {
        kvm_coco_test_skip::skip(
            "a file that refuses to open with EACCES",
            "neither a mode-000 file nor /sys/kernel/notes refuses a read-write open here",
        );
    }
}

/// A regular file is not the SEV device: every wrapper reaches the ioctl, which fails
/// with ENOTTY, and the error names the command.
#[test]
fn wrappers_reach_the_ioctl() {
    let path = temp_file("not-a-device");
    let sev = DevSev::open_path(&path).unwrap();
    let is_enotty = |e: DevSevError, cmd: SevPlatformCmd| match e {
        DevSevError::Command { cmd: c, errno, .. } => {
            assert_eq!((c, errno), (cmd, Errno::ENOTTY));
        }
        other => panic!("{cmd}: unexpected {other:?}"),
    };
    is_enotty(
        sev.platform_status().unwrap_err(),
        SevPlatformCmd::PlatformStatus,
    );
    is_enotty(
        sev.snp_platform_status().unwrap_err(),
        SevPlatformCmd::SnpPlatformStatus,
    );
    is_enotty(sev.get_id().unwrap_err(), SevPlatformCmd::GetId2);
    is_enotty(sev.pek_csr().unwrap_err(), SevPlatformCmd::PekCsr);
    is_enotty(
        sev.pdh_cert_export().unwrap_err(),
        SevPlatformCmd::PdhCertExport,
    );
    is_enotty(sev.pek_gen().unwrap_err(), SevPlatformCmd::PekGen);
    is_enotty(sev.pdh_gen().unwrap_err(), SevPlatformCmd::PdhGen);
    is_enotty(
        sev.pek_cert_import(b"pek", b"oca").unwrap_err(),
        SevPlatformCmd::PekCertImport,
    );
    is_enotty(
        sev.factory_reset().unwrap_err(),
        SevPlatformCmd::FactoryReset,
    );
    is_enotty(sev.snp_commit().unwrap_err(), SevPlatformCmd::SnpCommit);
    is_enotty(
        sev.snp_set_config(&SevUserDataSnpConfig::default())
            .unwrap_err(),
        SevPlatformCmd::SnpSetConfig,
    );
    let stick = SevUserDataSnpWrappedVlekHashstick { data: [0; 432] };
    is_enotty(
        sev.snp_vlek_load(&stick).unwrap_err(),
        SevPlatformCmd::SnpVlekLoad,
    );
    let msg = sev.platform_status().unwrap_err().to_string();
    assert!(
        msg.starts_with("SEV_PLATFORM_STATUS failed: ENOTTY"),
        "{msg}"
    );
    assert!(msg.ends_with("; the file is not the SEV device"), "{msg}");
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn oversized_blobs_are_refused_before_the_ioctl() {
    let path = temp_file("oversized");
    let sev = DevSev::open_path(&path).unwrap();
    let big = vec![0u8; BLOB_MAX + 1];
    let err = sev.pek_cert_import(&big, b"oca").unwrap_err();
    assert!(
        matches!(err, DevSevError::TooLarge { what: "PEK certificate", len, max: 16384 } if len == 16385),
        "{err:?}"
    );
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn firmware_errors_render_with_status_and_hint() {
    let err = DevSevError::Command {
        cmd: SevPlatformCmd::FactoryReset,
        status: SevRetCode::NoFwCall,
        errno: Errno::EBUSY,
    };
    assert_eq!(
        err.to_string(),
        "SEV_FACTORY_RESET failed: EBUSY (Device or resource busy); \
         the platform is busy (guests running, or the PSP timed out earlier)"
    );
    let err = DevSevError::Command {
        cmd: SevPlatformCmd::PekCsr,
        status: SevRetCode::InvalidPlatformState,
        errno: Errno::EIO,
    };
    assert_eq!(
        err.to_string(),
        "SEV_PEK_CSR failed: firmware status INVALID_PLATFORM_STATE (0x01)"
    );
}

fn ofd_lock(file: &File, l_type: libc::c_int) -> nix::Result<libc::c_int> {
    fcntl(file, FcntlArg::F_OFD_SETLK(&flock(l_type)))
}

/// Key-changing commands wait for readers of the certificate file, hold an exclusive
/// lock while they run and release it afterwards.
#[test]
fn key_changing_commands_take_the_cert_lock() {
    let dev = temp_file("lock-dev");
    let certs = temp_file("certs");
    // A VMM serving certificates holds a shared lock.
    let reader = File::open(&certs).unwrap();
    ofd_lock(&reader, libc::F_RDLCK).unwrap();

    let sev = DevSev::open_path(&dev).unwrap().with_cert_lock(&certs);
    let (tx, rx) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        let res = sev.snp_commit();
        tx.send(()).unwrap();
        res
    });
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "SNP_COMMIT ran while a reader held the certificate lock"
    );
    ofd_lock(&reader, libc::F_UNLCK).unwrap();
    rx.recv_timeout(Duration::from_secs(20))
        .expect("SNP_COMMIT never got the lock");
    let err = worker.join().unwrap().unwrap_err();
    assert!(
        matches!(
            err,
            DevSevError::Command {
                errno: Errno::ENOTTY,
                ..
            }
        ),
        "{err:?}"
    );

    // Released afterwards: an exclusive lock from another open file description succeeds.
    let other = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&certs)
        .unwrap();
    ofd_lock(&other, libc::F_WRLCK).expect("the certificate lock was not released");
    // And a key-changing command now conflicts with it (non-blocking probe of the type).
    ofd_lock(&other, libc::F_UNLCK).unwrap();

    // Status commands do not touch the lock.
    let writer = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&certs)
        .unwrap();
    ofd_lock(&writer, libc::F_WRLCK).unwrap();
    let sev = DevSev::open_path(&dev).unwrap().with_cert_lock(&certs);
    let err = sev.platform_status().unwrap_err();
    assert!(matches!(
        err,
        DevSevError::Command {
            errno: Errno::ENOTTY,
            ..
        }
    ));
    drop(writer);

    std::fs::remove_file(&dev).unwrap();
    std::fs::remove_file(&certs).unwrap();
}

#[test]
fn missing_cert_file_is_a_typed_error() {
    let dev = temp_file("lock-missing");
    let certs = temp_path("no-such-certs");
    let sev = DevSev::open_path(&dev).unwrap().with_cert_lock(&certs);
    let err = sev.pdh_gen().unwrap_err();
    assert!(
        matches!(&err, DevSevError::CertLock { path, .. } if *path == certs),
        "{err:?}"
    );
    std::fs::remove_file(&dev).unwrap();
}

/// The `sev_user_data_*` structs the wrappers hand to the kernel, against facts §7.4.
#[test]
fn user_struct_layouts() {
    use core::mem::size_of;
    use kvm_coco_uapi::sev_dev::*;
    assert_eq!(size_of::<SevIssueCmd>(), 16);
    assert_eq!(size_of::<SevUserDataStatus>(), 12);
    assert_eq!(size_of::<SevUserDataPekCsr>(), 12);
    assert_eq!(size_of::<SevUserDataPekCertImport>(), 24);
    assert_eq!(size_of::<SevUserDataPdhCertExport>(), 24);
    assert_eq!(size_of::<SevUserDataGetId2>(), 12);
    assert_eq!(size_of::<SevUserDataSnpStatus>(), 32);
    assert_eq!(size_of::<SevUserDataSnpConfig>(), 64);
    assert_eq!(size_of::<SevUserDataSnpVlekLoad>(), 16);
    assert_eq!(size_of::<SevUserDataSnpWrappedVlekHashstick>(), 432);
    assert_eq!(SEV_ISSUE_CMD, 0xC010_5300);
}

/// On a host with SEV: the read-only commands work. Needs the hardware, so it runs only when
/// asked for, and fails where there is no SEV device.
#[test]
#[ignore = "needs an AMD host with SEV firmware at /dev/sev (cargo test -p psp-driver -- --ignored real_device_status)"]
fn real_device_status() {
    let sev = DevSev::open_read_only(DEV_SEV_PATH).unwrap_or_else(|e| panic!("{e}"));
    let status = sev.platform_status().expect("PLATFORM_STATUS");
    assert!(status.api_major > 0, "{status:?}");
    let id = sev.get_id().expect("GET_ID2");
    assert!(!id.is_empty());
}
