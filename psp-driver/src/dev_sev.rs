//! `/dev/sev`: platform management on real AMD hosts.
//!
//! The kernel's ccp driver owns the PSP mailbox; userspace reaches the platform commands
//! through one ioctl, `SEV_ISSUE_CMD`, on `/dev/sev` (facts linux-uapi.md §7). [`DevSev`]
//! wraps it with typed, safe calls, handles the length-query protocol of PEK_CSR,
//! PDH_CERT_EXPORT and GET_ID2, and takes the certificate-file lock around commands that
//! change the platform's keys.

use crate::SevRetCode;
use kvm_coco_uapi::sev_dev::{
    SEV_ISSUE_CMD, SevIssueCmd, SevPlatformCmd, SevUserDataGetId2, SevUserDataPdhCertExport,
    SevUserDataPekCertImport, SevUserDataPekCsr, SevUserDataSnpConfig, SevUserDataSnpStatus,
    SevUserDataSnpVlekLoad, SevUserDataSnpWrappedVlekHashstick, SevUserDataStatus,
};
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, fcntl};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Where the kernel exposes the SEV platform device.
pub const DEV_SEV_PATH: &str = "/dev/sev";

/// Largest blob `/dev/sev` accepts or returns (`SEV_FW_BLOB_MAX_SIZE`, 16 KiB).
const BLOB_MAX: usize = crate::SEV_FW_BLOB_MAX_SIZE;

nix::ioctl_readwrite_bad!(
    /// `ioctl(fd, SEV_ISSUE_CMD, struct sev_issue_cmd *)`.
    sev_issue_cmd_ioctl,
    SEV_ISSUE_CMD,
    SevIssueCmd
);

/// Errors of `/dev/sev`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DevSevError {
    /// The device node does not exist.
    #[error(
        "AMD SEV is not available on this host: {} does not exist (is kvm_amd loaded with sev=1?)",
        path.display()
    )]
    NotFound {
        /// The path that was tried.
        path: PathBuf,
    },
    /// The device exists but the caller may not open it.
    #[error(
        "AMD SEV is not available to this user: permission denied opening {} (run as root or get access to the device)",
        path.display()
    )]
    PermissionDenied {
        /// The path that was tried.
        path: PathBuf,
        /// The OS error (EACCES or EPERM).
        #[source]
        source: io::Error,
    },
    /// The node exists but no PSP with SEV firmware is behind it.
    #[error("AMD SEV is not available on this host: {} has no PSP with SEV firmware", path.display())]
    NoDevice {
        /// The path that was tried.
        path: PathBuf,
    },
    /// Opening the device failed for another reason.
    #[error("cannot open {}", path.display())]
    Open {
        /// The path that was tried.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A platform command failed.
    #[error("{}", command_message(*cmd, *status, *errno))]
    Command {
        /// The `/dev/sev` command.
        cmd: SevPlatformCmd,
        /// The firmware status (`NO_FW_CALL` if the firmware was never reached).
        status: SevRetCode,
        /// The ioctl's errno (EIO accompanies a firmware error).
        errno: Errno,
    },
    /// An input blob is larger than the driver accepts.
    #[error("{what} is {len} bytes; /dev/sev accepts at most {max}")]
    TooLarge {
        /// Which input.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The firmware reported a length that cannot be right.
    #[error("{cmd} reported an unusable length of {len} bytes")]
    BadLength {
        /// The command.
        cmd: SevPlatformCmd,
        /// The reported length.
        len: u32,
    },
    /// The certificate file could not be locked.
    #[error("cannot lock the certificate file {}", path.display())]
    CertLock {
        /// The configured certificate file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

fn command_message(cmd: SevPlatformCmd, status: SevRetCode, errno: Errno) -> String {
    let mut msg = match (status, errno) {
        (SevRetCode::NoFwCall | SevRetCode::Success, errno) => {
            format!("{cmd} failed: {errno:?} ({})", errno.desc())
        }
        (status, Errno::EIO) => format!("{cmd} failed: firmware status {status}"),
        (status, errno) => format!("{cmd} failed: {errno:?}, firmware status {status}"),
    };
    let hint = match errno {
        Errno::EPERM => Some("the command changes the platform: open /dev/sev read-write"),
        Errno::ENOTTY => Some("the file is not the SEV device"),
        Errno::ENODEV if cmd.raw() >= kvm_coco_uapi::sev_dev::SNP_SET_CONFIG => {
            Some("SNP is not initialized on this host")
        }
        Errno::ENODEV => Some("no PSP with SEV firmware on this host"),
        Errno::EBUSY => Some("the platform is busy (guests running, or the PSP timed out earlier)"),
        Errno::EOPNOTSUPP => Some("the firmware is too old for this command"),
        _ => None,
    };
    if let Some(hint) = hint {
        msg.push_str("; ");
        msg.push_str(hint);
    }
    msg
}

/// Maps an `open()` failure of the device to an error a person can act on.
fn open_error(path: &Path, source: io::Error) -> DevSevError {
    let path = path.to_path_buf();
    match source.raw_os_error().map(Errno::from_raw) {
        Some(Errno::ENOENT) => DevSevError::NotFound { path },
        Some(Errno::EACCES | Errno::EPERM) => DevSevError::PermissionDenied { path, source },
        Some(Errno::ENODEV | Errno::ENXIO) => DevSevError::NoDevice { path },
        _ => DevSevError::Open { path, source },
    }
}

/// Both certificates returned by PDH_CERT_EXPORT.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PdhCertExport {
    /// The PDH certificate.
    pub pdh_cert: Vec<u8>,
    /// The platform certificate chain (PEK, OCA, CEK).
    pub cert_chain: Vec<u8>,
}

/// The SEV platform commands, whatever executes them.
///
/// Implemented by [`DevSev`] for real hosts and, with feature `sim`, by every
/// [`Psp`](crate::Psp) whose transport is the software firmware (`Psp<SimFirmware>`,
/// `Psp<Arc<SimFirmware>>`; module `sim::platform`, error type `SimPlatformError`). That
/// implementation follows the kernel's `/dev/sev` ioctl path (automatic INIT and SHUTDOWN,
/// length queries, FACTORY_RESET refused while WORKING), so management code written against
/// `Platform` runs unchanged on hardware and in tests.
///
/// The key-changing commands (PEK_GEN, PDH_GEN, PEK_CERT_IMPORT, FACTORY_RESET,
/// SNP_COMMIT, SNP_SET_CONFIG, SNP_VLEK_LOAD) invalidate certificates a VMM may be serving
/// to guests; implementations coordinate with it (see [`DevSev::with_cert_lock`]).
pub trait Platform {
    /// The implementation's error type.
    type Error: std::error::Error + Send + Sync + 'static;

    /// PLATFORM_STATUS: API version, platform state, flags, build, guest count.
    fn platform_status(&self) -> Result<SevUserDataStatus, Self::Error>;
    /// SNP_PLATFORM_STATUS: SNP state, TCB versions, feature flags.
    fn snp_platform_status(&self) -> Result<SevUserDataSnpStatus, Self::Error>;
    /// GET_ID (through `SEV_GET_ID2`): the chip identifier(s).
    fn get_id(&self) -> Result<Vec<u8>, Self::Error>;
    /// PEK_CSR: a certificate signing request for the Platform Endorsement Key.
    fn pek_csr(&self) -> Result<Vec<u8>, Self::Error>;
    /// PDH_CERT_EXPORT: the PDH certificate and the platform certificate chain.
    fn pdh_cert_export(&self) -> Result<PdhCertExport, Self::Error>;
    /// PEK_GEN: regenerates the PEK (key-changing).
    fn pek_gen(&self) -> Result<(), Self::Error>;
    /// PDH_GEN: regenerates the PDH (key-changing).
    fn pdh_gen(&self) -> Result<(), Self::Error>;
    /// PEK_CERT_IMPORT: imports the owner-signed PEK and the OCA certificate (key-changing).
    fn pek_cert_import(&self, pek_cert: &[u8], oca_cert: &[u8]) -> Result<(), Self::Error>;
    /// FACTORY_RESET: deletes the platform's persistent state (key-changing).
    fn factory_reset(&self) -> Result<(), Self::Error>;
    /// SNP_COMMIT: commits the running firmware version (key-changing).
    fn snp_commit(&self) -> Result<(), Self::Error>;
    /// SNP_SET_CONFIG: reported TCB and chip-id/key masking (key-changing).
    fn snp_set_config(&self, config: &SevUserDataSnpConfig) -> Result<(), Self::Error>;
    /// SNP_VLEK_LOAD: loads a wrapped VLEK hashstick (key-changing).
    fn snp_vlek_load(
        &self,
        hashstick: &SevUserDataSnpWrappedVlekHashstick,
    ) -> Result<(), Self::Error>;
}

/// The `/dev/sev` device of a real AMD host.
///
/// ```no_run
/// use psp_driver::{DevSev, Platform};
///
/// let sev = DevSev::open()?.with_cert_lock("/var/lib/vmm/snp-certs.bin");
/// let status = sev.platform_status()?;
/// println!("SEV API {}.{}, {} guests", status.api_major, status.api_minor, { status.guest_count });
/// let csr = sev.pek_csr()?;
/// # let _ = csr;
/// # Ok::<(), psp_driver::DevSevError>(())
/// ```
#[derive(Debug)]
pub struct DevSev {
    file: File,
    path: PathBuf,
    cert_lock: Option<PathBuf>,
}

/// An exclusive OFD lock on the certificate file, released on drop.
#[derive(Debug)]
struct CertLockGuard {
    file: File,
}

fn flock(l_type: libc::c_int) -> libc::flock {
    libc::flock {
        l_type: l_type as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0, // the whole file
        l_pid: 0, // must be 0 for OFD locks
    }
}

impl Drop for CertLockGuard {
    fn drop(&mut self) {
        // Closing the descriptor releases the lock too; unlock explicitly anyway so the
        // release does not depend on other descriptors of the same open file.
        let _ = fcntl(&self.file, FcntlArg::F_OFD_SETLK(&flock(libc::F_UNLCK)));
    }
}

impl DevSev {
    /// Opens [`DEV_SEV_PATH`] read-write (needed for the key-changing commands).
    ///
    /// # Errors
    /// [`DevSevError::NotFound`], [`DevSevError::PermissionDenied`],
    /// [`DevSevError::NoDevice`] or [`DevSevError::Open`].
    pub fn open() -> Result<Self, DevSevError> {
        Self::open_path(DEV_SEV_PATH)
    }

    /// Opens the device at `path` read-write.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn open_path(path: impl AsRef<Path>) -> Result<Self, DevSevError> {
        Self::open_with(path.as_ref(), true)
    }

    /// Opens the device at `path` read-only: enough for the status and export commands;
    /// key-changing commands then fail with EPERM.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Self, DevSevError> {
        Self::open_with(path.as_ref(), false)
    }

    fn open_with(path: &Path, write: bool) -> Result<Self, DevSevError> {
        let file = OpenOptions::new()
            .read(true)
            .write(write)
            .open(path)
            .map_err(|e| open_error(path, e))?;
        Ok(DevSev {
            file,
            path: path.to_path_buf(),
            cert_lock: None,
        })
    }

    /// Takes an exclusive OFD lock (`F_OFD_SETLKW`, write lock) on `cert_file` around every
    /// key-changing command and releases it afterwards.
    ///
    /// This is the protocol the kernel documents for `KVM_EXIT_SNP_REQ_CERTS`: a VMM that
    /// serves the certificate blob to guests holds a shared OFD lock on it while servicing
    /// the exit, so it never hands out certificates that a concurrent SNP_COMMIT,
    /// SNP_SET_CONFIG, SNP_VLEK_LOAD (or PEK/PDH change) made stale. The file must exist
    /// and be writable; it is not modified.
    pub fn with_cert_lock(mut self, cert_file: impl Into<PathBuf>) -> Self {
        self.cert_lock = Some(cert_file.into());
        self
    }

    /// The device path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock_certs(&self) -> Result<Option<CertLockGuard>, DevSevError> {
        let Some(path) = &self.cert_lock else {
            return Ok(None);
        };
        let lock_err = |source| DevSevError::CertLock {
            path: path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(lock_err)?;
        loop {
            match fcntl(&file, FcntlArg::F_OFD_SETLKW(&flock(libc::F_WRLCK))) {
                Ok(_) => return Ok(Some(CertLockGuard { file })),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(lock_err(io::Error::from(e))),
            }
        }
    }

    /// Issues `SEV_ISSUE_CMD` with a raw argument address and returns the firmware status.
    ///
    /// # Safety
    /// `data` must be 0 for commands without an argument, or the address of a live,
    /// writable `sev_user_data_*` struct of the type the kernel expects for `cmd`
    /// (facts linux-uapi.md §7.2). Every address *inside* that struct must be 0 or point
    /// to a live buffer of at least the length stated next to it, writable where the
    /// kernel writes output (PEK_CSR, PDH_CERT_EXPORT, GET_ID2). The kernel dereferences
    /// all of them during the call without any check beyond `copy_{from,to}_user`.
    ///
    /// # Errors
    /// [`DevSevError::Command`] with the errno and the firmware status the kernel wrote back.
    pub unsafe fn issue_raw(&self, cmd: SevPlatformCmd, data: u64) -> Result<(), DevSevError> {
        let mut arg = SevIssueCmd {
            cmd: cmd.raw(),
            data,
            error: 0,
        };
        // SAFETY: `arg` is a live, correctly sized `sev_issue_cmd` (16 bytes, asserted in
        // kvm-coco-uapi) for the duration of the call, and the caller guarantees that
        // `data` and the addresses it contains are valid for `cmd`.
        let ret = unsafe { sev_issue_cmd_ioctl(self.file.as_raw_fd(), &mut arg) };
        match ret {
            Ok(_) => Ok(()),
            Err(errno) => Err(DevSevError::Command {
                cmd,
                status: SevRetCode::from_raw(arg.error),
                errno,
            }),
        }
    }

    /// Issues `cmd` with `arg`, a `sev_user_data_*` struct without embedded addresses (or
    /// whose embedded addresses the caller set up according to [`issue_raw`](Self::issue_raw)).
    fn issue_struct<T>(&self, cmd: SevPlatformCmd, arg: &mut T) -> Result<(), DevSevError> {
        // SAFETY: `arg` is a live, exclusively borrowed struct of the type `cmd` expects
        // (each caller below pairs them as in facts §7.2); any addresses inside it point to
        // buffers owned by the calling function that outlive this call, with the stated lengths.
        unsafe { self.issue_raw(cmd, arg as *mut T as u64) }
    }

    /// Issues a command without an argument.
    fn issue_none(&self, cmd: SevPlatformCmd) -> Result<(), DevSevError> {
        // SAFETY: these commands take no argument; `data` is 0.
        unsafe { self.issue_raw(cmd, 0) }
    }

    /// Runs a length query: success or INVALID_LEN both leave the length written back.
    fn query<T>(
        &self,
        cmd: SevPlatformCmd,
        arg: &mut T,
        len_of: impl Fn(&T) -> u32,
    ) -> Result<u32, DevSevError> {
        match self.issue_struct(cmd, arg) {
            Ok(()) => {}
            Err(DevSevError::Command {
                status: SevRetCode::InvalidLen,
                ..
            }) if len_of(arg) > 0 => {}
            Err(e) => return Err(e),
        }
        let len = len_of(arg);
        if len as usize > BLOB_MAX {
            return Err(DevSevError::BadLength { cmd, len });
        }
        Ok(len)
    }

    /// Issues `cmd` with the argument `arg(address, len)` builds around a fresh buffer of
    /// `len` bytes, and keeps the bytes the kernel says it wrote (`written`, never more than
    /// `len`).
    fn read_blob<T>(
        &self,
        cmd: SevPlatformCmd,
        len: u32,
        arg: impl FnOnce(u64, u32) -> T,
        written: impl FnOnce(&T) -> u32,
    ) -> Result<Vec<u8>, DevSevError> {
        let mut blob = vec![0u8; len as usize];
        let mut a = arg(blob.as_mut_ptr() as u64, len);
        self.issue_struct(cmd, &mut a)?;
        blob.truncate(written(&a).min(len) as usize);
        Ok(blob)
    }

    fn checked_len(what: &'static str, blob: &[u8]) -> Result<u32, DevSevError> {
        if blob.len() > BLOB_MAX {
            return Err(DevSevError::TooLarge {
                what,
                len: blob.len(),
                max: BLOB_MAX,
            });
        }
        Ok(blob.len() as u32)
    }

    fn key_change<R>(&self, f: impl FnOnce() -> Result<R, DevSevError>) -> Result<R, DevSevError> {
        let _lock = self.lock_certs()?;
        f()
    }
}

impl Platform for DevSev {
    type Error = DevSevError;

    fn platform_status(&self) -> Result<SevUserDataStatus, DevSevError> {
        let mut status = SevUserDataStatus::default();
        self.issue_struct(SevPlatformCmd::PlatformStatus, &mut status)?;
        Ok(status)
    }

    fn snp_platform_status(&self) -> Result<SevUserDataSnpStatus, DevSevError> {
        let mut status = SevUserDataSnpStatus::default();
        self.issue_struct(SevPlatformCmd::SnpPlatformStatus, &mut status)?;
        Ok(status)
    }

    fn get_id(&self) -> Result<Vec<u8>, DevSevError> {
        let cmd = SevPlatformCmd::GetId2;
        let mut arg = SevUserDataGetId2::default();
        let len = self.query(cmd, &mut arg, |a| a.length)?;
        self.read_blob(
            cmd,
            len,
            |address, length| SevUserDataGetId2 { address, length },
            |a| a.length,
        )
    }

    fn pek_csr(&self) -> Result<Vec<u8>, DevSevError> {
        let cmd = SevPlatformCmd::PekCsr;
        let mut arg = SevUserDataPekCsr::default();
        let len = self.query(cmd, &mut arg, |a| a.length)?;
        if len == 0 {
            return Err(DevSevError::BadLength { cmd, len });
        }
        self.read_blob(
            cmd,
            len,
            |address, length| SevUserDataPekCsr { address, length },
            |a| a.length,
        )
    }

    fn pdh_cert_export(&self) -> Result<PdhCertExport, DevSevError> {
        let cmd = SevPlatformCmd::PdhCertExport;
        let mut arg = SevUserDataPdhCertExport::default();
        let _ = self.query(cmd, &mut arg, |a| a.pdh_cert_len.max(a.cert_chain_len))?;
        let (pdh_len, chain_len) = (arg.pdh_cert_len, arg.cert_chain_len);
        if pdh_len == 0 || chain_len == 0 || chain_len as usize > BLOB_MAX {
            return Err(DevSevError::BadLength {
                cmd,
                len: pdh_len.min(chain_len),
            });
        }
        let mut out = PdhCertExport {
            pdh_cert: vec![0u8; pdh_len as usize],
            cert_chain: vec![0u8; chain_len as usize],
        };
        arg = SevUserDataPdhCertExport {
            pdh_cert_address: out.pdh_cert.as_mut_ptr() as u64,
            pdh_cert_len: pdh_len,
            cert_chain_address: out.cert_chain.as_mut_ptr() as u64,
            cert_chain_len: chain_len,
        };
        self.issue_struct(cmd, &mut arg)?;
        out.pdh_cert
            .truncate(arg.pdh_cert_len.min(pdh_len) as usize);
        out.cert_chain
            .truncate(arg.cert_chain_len.min(chain_len) as usize);
        Ok(out)
    }

    fn pek_gen(&self) -> Result<(), DevSevError> {
        self.key_change(|| self.issue_none(SevPlatformCmd::PekGen))
    }

    fn pdh_gen(&self) -> Result<(), DevSevError> {
        self.key_change(|| self.issue_none(SevPlatformCmd::PdhGen))
    }

    fn pek_cert_import(&self, pek_cert: &[u8], oca_cert: &[u8]) -> Result<(), DevSevError> {
        let pek_cert_len = Self::checked_len("PEK certificate", pek_cert)?;
        let oca_cert_len = Self::checked_len("OCA certificate", oca_cert)?;
        // The kernel only reads the blobs (copy_from_user); the struct wants `u64`s.
        let mut arg = SevUserDataPekCertImport {
            pek_cert_address: pek_cert.as_ptr() as u64,
            pek_cert_len,
            oca_cert_address: oca_cert.as_ptr() as u64,
            oca_cert_len,
        };
        self.key_change(|| self.issue_struct(SevPlatformCmd::PekCertImport, &mut arg))
    }

    fn factory_reset(&self) -> Result<(), DevSevError> {
        self.key_change(|| self.issue_none(SevPlatformCmd::FactoryReset))
    }

    fn snp_commit(&self) -> Result<(), DevSevError> {
        self.key_change(|| self.issue_none(SevPlatformCmd::SnpCommit))
    }

    fn snp_set_config(&self, config: &SevUserDataSnpConfig) -> Result<(), DevSevError> {
        let mut arg = *config;
        self.key_change(|| self.issue_struct(SevPlatformCmd::SnpSetConfig, &mut arg))
    }

    fn snp_vlek_load(
        &self,
        hashstick: &SevUserDataSnpWrappedVlekHashstick,
    ) -> Result<(), DevSevError> {
        let mut arg = SevUserDataSnpVlekLoad {
            len: core::mem::size_of::<SevUserDataSnpVlekLoad>() as u32,
            vlek_wrapped_version: 0,
            rsvd: [0; 3],
            vlek_wrapped_address: hashstick as *const SevUserDataSnpWrappedVlekHashstick as u64,
        };
        self.key_change(|| self.issue_struct(SevPlatformCmd::SnpVlekLoad, &mut arg))
    }
}

#[cfg(test)]
mod tests;
