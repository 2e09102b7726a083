//! [`Platform`] over the software firmware: the kernel's `/dev/sev` ioctl path, in user space.
//!
//! A [`Psp`] whose transport is a [`SimFirmware`] (`Psp<SimFirmware>`, `Psp<Arc<SimFirmware>>`,
//! `Psp<&SimFirmware>`) implements [`Platform`], so management code written against the trait
//! runs on the software firmware exactly as it runs on [`DevSev`](crate::DevSev). Each call does
//! what the ccp driver's `sev_ioctl()` does for the matching `/dev/sev` command (facts
//! linux-uapi.md §7.2, §9.1):
//!
//! - the [`Psp`]'s command mutex is held for the whole call, like `sev_cmd_mutex` for the whole
//!   ioctl, so the automatic INIT, the command and the SHUTDOWN run back to back;
//! - PEK_GEN, PDH_GEN, PEK_CSR, PDH_CERT_EXPORT and PEK_CERT_IMPORT INIT a platform found in
//!   UNINIT (with SEV-ES enabled, as the kernel does) and SHUTDOWN again afterwards;
//! - FACTORY_RESET is refused while the platform is WORKING ([`SimPlatformError::Busy`], the
//!   ioctl's `-EBUSY`) and SHUTDOWNs an INIT platform first;
//! - PEK_CSR, PDH_CERT_EXPORT and GET_ID first query the lengths (a command with a zero address,
//!   answered with INVALID_LEN and the lengths written back), then run with buffers of those
//!   lengths;
//! - SNP_SET_CONFIG and SNP_VLEK_LOAD need SNP to be initialized
//!   ([`SimPlatformError::SnpNotInitialized`], the ioctl's `-ENODEV`).
//!
//! Commands whose firmware buffer carries physical addresses use scratch pages of the firmware's
//! [`PhysMem`](super::PhysMem) at [`SCRATCH_PA`], the way the kernel hands the firmware its own
//! bounce buffers: the inputs are written there, the firmware reads or writes them, the outputs
//! are read back and the scratch bytes are zeroed again. The window sits just below 2^52, far
//! from any RAM a simulated host registers. A firmware status, including INVALID_COMMAND for
//! the commands the software firmware does not implement (SNP_COMMIT, SNP_CONFIG,
//! SNP_VLEK_LOAD, FACTORY_RESET), comes back as [`SimPlatformError::Command`].
//!
//! ```
//! use psp_driver::sim::{SimConfig, SimFirmware, mem::PhysMem};
//! use psp_driver::{Platform, Psp};
//! use std::sync::Arc;
//!
//! let psp = Psp::new(SimFirmware::new(SimConfig::default(), Arc::new(PhysMem::new())));
//! // PDH_CERT_EXPORT on an UNINIT platform: INIT, export, SHUTDOWN.
//! let export = psp.pdh_cert_export()?;
//! assert_eq!(export.pdh_cert.len(), 0x824);
//! assert_eq!(export.cert_chain.len(), 3 * 0x824); // PEK, OCA, CEK
//! assert_eq!(psp.platform_status()?.state, 0); // back in UNINIT
//! # Ok::<(), psp_driver::sim::platform::SimPlatformError>(())
//! ```

use std::borrow::Borrow;

use kvm_coco_uapi::sev_dev::{
    SevPlatformCmd, SevUserDataSnpConfig, SevUserDataSnpStatus, SevUserDataSnpVlekLoad,
    SevUserDataSnpWrappedVlekHashstick, SevUserDataStatus,
};
use nix::errno::Errno;
use zerocopy::{FromBytes, IntoBytes};

use super::SimFirmware;
use super::mem::{MemError, PAGE_SIZE};
use crate::{
    FactoryReset, PdhCertExport, PdhGen, PekGen, Platform, Psp, PspError, PspGuard,
    SEV_FW_BLOB_MAX_SIZE, SEV_INIT_FLAGS_SEV_ES, SevCmd, SevDataGetId, SevDataInit,
    SevDataPdhCertExport, SevDataPekCertImport, SevDataPekCsr, SevDataSnpAddr, SevDataSnpCommit,
    SevDataSnpPageReclaim, SevRetCode, Shutdown, SnpPlatformStatus, Transport,
};

/// Base physical address of the scratch window the [`Platform`] implementation uses in the
/// firmware's memory (16 pages, 1 MiB-aligned, just below 2^52).
///
/// Layout: the first output or input blob at `SCRATCH_PA` (up to 16 KiB), the second at
/// `SCRATCH_PA + 0x4000` (up to 16 KiB), the SNP status page at `SCRATCH_PA + 0x8000`.
/// Nothing else should map memory there.
pub const SCRATCH_PA: u64 = (1 << 52) - 0x10_0000;

/// Where the first blob of a command goes.
const BLOB_A: u64 = SCRATCH_PA;
/// Where the second blob of a command goes.
const BLOB_B: u64 = SCRATCH_PA + SEV_FW_BLOB_MAX_SIZE as u64;
/// The SNP_PLATFORM_STATUS page (page aligned).
const STATUS_PAGE: u64 = SCRATCH_PA + 2 * SEV_FW_BLOB_MAX_SIZE as u64;

/// Largest blob `/dev/sev` passes in either direction (`SEV_FW_BLOB_MAX_SIZE`).
const BLOB_MAX: usize = SEV_FW_BLOB_MAX_SIZE;

/// `state` of `sev_user_data_status`: UNINIT, INIT, WORKING (facts §7.4).
const STATE_UNINIT: u8 = 0;
const STATE_INIT: u8 = 1;
const STATE_WORKING: u8 = 2;

/// Errors of [`Platform`] on the software firmware.
///
/// [`errno`](Self::errno) gives the errno `/dev/sev` would return in the same situation and
/// [`status`](Self::status) the firmware status it would write back, so code can treat both
/// implementations alike.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimPlatformError {
    /// The firmware rejected a command (the ioctl's `-EIO` plus a firmware status); the
    /// message names the command, the status and what to do.
    #[error(transparent)]
    Command(#[from] PspError),
    /// FACTORY_RESET while guests are running (the ioctl's `-EBUSY`).
    #[error(
        "FACTORY_RESET refused: the platform is WORKING with {guest_count} guest(s); decommission them so the platform can SHUTDOWN first"
    )]
    Busy {
        /// The guest count PLATFORM_STATUS reported.
        guest_count: u32,
    },
    /// SNP_SET_CONFIG or SNP_VLEK_LOAD on a platform where SNP is not initialized (the ioctl's
    /// `-ENODEV`).
    #[error("{cmd} needs SEV-SNP to be initialized: issue SNP_INIT first")]
    SnpNotInitialized {
        /// The `/dev/sev` command.
        cmd: SevPlatformCmd,
    },
    /// An input blob is larger than `/dev/sev` accepts (the ioctl's `-EINVAL`).
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
        /// The firmware command.
        cmd: SevCmd,
        /// The reported length.
        len: u32,
    },
    /// The scratch window at [`SCRATCH_PA`] is not usable in the firmware's memory.
    #[error("cannot use the scratch window at {pa:#x} in the simulated memory")]
    Scratch {
        /// The address accessed.
        pa: u64,
        /// The memory error.
        #[source]
        source: MemError,
    },
    /// The SNP status page could not be made firmware-owned or given back.
    #[error("cannot move the SNP status page at {pa:#x} between hypervisor and firmware")]
    Rmp {
        /// The page.
        pa: u64,
        /// The RMP update error.
        #[source]
        source: super::RmpError,
    },
}

impl SimPlatformError {
    /// The errno `/dev/sev` would return for the same failure (`EIO` for a firmware error).
    pub fn errno(&self) -> Errno {
        match self {
            SimPlatformError::Command(e) => e.errno.unwrap_or(Errno::EIO),
            SimPlatformError::Busy { .. } => Errno::EBUSY,
            SimPlatformError::SnpNotInitialized { .. } => Errno::ENODEV,
            SimPlatformError::TooLarge { .. } => Errno::EINVAL,
            SimPlatformError::BadLength { .. } => Errno::EIO,
            SimPlatformError::Scratch { .. } | SimPlatformError::Rmp { .. } => Errno::EFAULT,
        }
    }

    /// The firmware status `/dev/sev` would write back: the firmware's status for
    /// [`Command`](Self::Command), [`SevRetCode::NoFwCall`] when the driver refused the
    /// command before reaching the firmware.
    pub fn status(&self) -> SevRetCode {
        match self {
            SimPlatformError::Command(e) => e.status,
            _ => SevRetCode::NoFwCall,
        }
    }
}

/// One `/dev/sev` call: the mailbox held, the firmware's memory, and whether the call INITed
/// the platform and must SHUTDOWN it again.
struct Call<'a, T: Transport> {
    mb: PspGuard<'a, T>,
    fw: &'a SimFirmware,
    shutdown_required: bool,
}

impl<'a, T: Transport + Borrow<SimFirmware>> Call<'a, T> {
    fn new(psp: &'a Psp<T>) -> Self {
        Call {
            mb: psp.lock(),
            fw: psp.transport().borrow(),
            shutdown_required: false,
        }
    }

    fn status(&mut self) -> Result<SevUserDataStatus, SimPlatformError> {
        let mut status = SevUserDataStatus::default();
        self.mb.issue(&mut status)?;
        Ok(status)
    }

    /// The kernel's `sev_move_to_init_state()`: INIT (SEV-ES enabled) if UNINIT.
    fn init_if_uninit(&mut self) -> Result<(), SimPlatformError> {
        if self.status()?.state == STATE_UNINIT {
            let mut init = SevDataInit {
                flags: SEV_INIT_FLAGS_SEV_ES,
                ..Default::default()
            };
            self.mb.issue(&mut init)?;
            self.shutdown_required = true;
        }
        Ok(())
    }

    /// A command that needs the platform INIT or WORKING, the way `/dev/sev` runs it: INIT
    /// if UNINIT, `f`, then SHUTDOWN if this call INITed the platform.
    fn initialized<R>(
        psp: &'a Psp<T>,
        f: impl FnOnce(&mut Self) -> Result<R, SimPlatformError>,
    ) -> Result<R, SimPlatformError> {
        let mut c = Call::new(psp);
        let r = c.init_if_uninit().and_then(|()| f(&mut c));
        c.finish(r)
    }

    /// Ends the call: SHUTDOWN if this call INITed the platform. The command's own error wins;
    /// a failed SHUTDOWN after a successful command is reported (the platform stayed INIT).
    fn finish<R>(mut self, result: Result<R, SimPlatformError>) -> Result<R, SimPlatformError> {
        if self.shutdown_required {
            let shutdown = self.mb.issue(&mut Shutdown);
            let r = result?;
            shutdown?;
            return Ok(r);
        }
        result
    }

    /// Issues a length query: success, or INVALID_LEN with the lengths written back.
    fn query<C: crate::Command>(&mut self, buf: &mut C) -> Result<(), SimPlatformError> {
        match self.mb.issue(buf) {
            Ok(()) => Ok(()),
            Err(e) if e.status == SevRetCode::InvalidLen => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn write(&self, pa: u64, data: &[u8]) -> Result<(), SimPlatformError> {
        self.fw
            .mem()
            .write(pa, data)
            .map_err(|source| SimPlatformError::Scratch { pa, source })
    }

    fn read(&self, pa: u64, len: usize) -> Result<Vec<u8>, SimPlatformError> {
        self.fw
            .mem()
            .read_vec(pa, len)
            .map_err(|source| SimPlatformError::Scratch { pa, source })
    }

    /// Zeroes `len` scratch bytes at `pa` once a command is done with them.
    fn clear(&self, pa: u64, len: usize) -> Result<(), SimPlatformError> {
        self.write(pa, &vec![0u8; len])
    }

    /// A single-blob output command (GET_ID, PEK_CSR): a length query with a default buffer,
    /// then the command with `buf(BLOB_A, len)` for the reported length; keeps the bytes
    /// the firmware says it wrote (`len_of`) and clears the scratch bytes.
    fn read_blob<C: crate::Command + Default>(
        &mut self,
        cmd: SevCmd,
        len_of: impl Fn(&C) -> u32,
        buf: impl FnOnce(u64, u32) -> C,
    ) -> Result<Vec<u8>, SimPlatformError> {
        let mut q = C::default();
        self.query(&mut q)?;
        let len = blob_len(cmd, len_of(&q))?;
        let mut c = buf(BLOB_A, len as u32);
        let issued = self.mb.issue(&mut c);
        let out = self.take(BLOB_A, len)?;
        issued?;
        Ok(truncated(out, len_of(&c)))
    }

    /// Reads an output blob of `len` bytes and clears the scratch bytes.
    fn take(&self, pa: u64, len: usize) -> Result<Vec<u8>, SimPlatformError> {
        let out = self.read(pa, len)?;
        self.clear(pa, len)?;
        Ok(out)
    }

    /// SNP_PLATFORM_STATUS into the scratch status page. With SNP initialized the firmware
    /// wants the page firmware-owned (INVALID_PAGE_STATE otherwise): then the page is made
    /// firmware-owned, the command reissued, and the page reclaimed and made shared again.
    fn snp_status(&mut self) -> Result<SevUserDataSnpStatus, SimPlatformError> {
        let len = core::mem::size_of::<SevUserDataSnpStatus>();
        let mut cmd = SnpPlatformStatus(SevDataSnpAddr {
            address: STATUS_PAGE,
        });
        match self.mb.issue(&mut cmd) {
            Ok(()) => {}
            Err(e) if e.status == SevRetCode::InvalidPageState => {
                let rmp = |source| SimPlatformError::Rmp {
                    pa: STATUS_PAGE,
                    source,
                };
                self.fw.rmp_make_firmware(STATUS_PAGE).map_err(rmp)?;
                let issued = self.mb.issue(&mut cmd);
                // Success leaves the page in Reclaim, failure in Firmware state: SNP_PAGE_RECLAIM
                // then RMPUPDATE to shared gives it back in both cases (`snp_reclaim_pages()`).
                let mut reclaim = SevDataSnpPageReclaim { paddr: STATUS_PAGE };
                self.mb.issue(&mut reclaim)?;
                self.fw.rmp_make_shared(STATUS_PAGE, false).map_err(rmp)?;
                issued?;
            }
            Err(e) => return Err(e.into()),
        }
        let bytes = self.take(STATUS_PAGE, len)?;
        SevUserDataSnpStatus::read_from_bytes(&bytes).map_err(|_| SimPlatformError::BadLength {
            cmd: SevCmd::SnpPlatformStatus,
            len: len as u32,
        })
    }

    fn require_snp(&mut self, cmd: SevPlatformCmd) -> Result<(), SimPlatformError> {
        if self.snp_status()?.state == 0 {
            return Err(SimPlatformError::SnpNotInitialized { cmd });
        }
        Ok(())
    }
}

/// A length the firmware reported for a blob, checked against the `/dev/sev` limit.
fn blob_len(cmd: SevCmd, len: u32) -> Result<usize, SimPlatformError> {
    if len == 0 || len as usize > BLOB_MAX {
        return Err(SimPlatformError::BadLength { cmd, len });
    }
    Ok(len as usize)
}

fn checked_len(what: &'static str, blob: &[u8]) -> Result<u32, SimPlatformError> {
    if blob.len() > BLOB_MAX {
        return Err(SimPlatformError::TooLarge {
            what,
            len: blob.len(),
            max: BLOB_MAX,
        });
    }
    Ok(blob.len() as u32)
}

fn pek_csr<T: Transport + Borrow<SimFirmware>>(
    c: &mut Call<'_, T>,
) -> Result<Vec<u8>, SimPlatformError> {
    c.read_blob(
        SevCmd::PekCsr,
        |q: &SevDataPekCsr| q.len,
        |address, len| SevDataPekCsr { address, len },
    )
}

fn pdh_cert_export<T: Transport + Borrow<SimFirmware>>(
    c: &mut Call<'_, T>,
) -> Result<PdhCertExport, SimPlatformError> {
    let cmd = SevCmd::PdhCertExport;
    let mut q = SevDataPdhCertExport::default();
    c.query(&mut q)?;
    let pdh_len = blob_len(cmd, q.pdh_cert_len)?;
    let chain_len = blob_len(cmd, q.cert_chain_len)?;
    let mut export = SevDataPdhCertExport {
        pdh_cert_address: BLOB_A,
        pdh_cert_len: pdh_len as u32,
        cert_chain_address: BLOB_B,
        cert_chain_len: chain_len as u32,
        ..Default::default()
    };
    let issued = c.mb.issue(&mut export);
    let pdh_cert = c.take(BLOB_A, pdh_len)?;
    let cert_chain = c.take(BLOB_B, chain_len)?;
    issued?;
    Ok(PdhCertExport {
        pdh_cert: truncated(pdh_cert, export.pdh_cert_len),
        cert_chain: truncated(cert_chain, export.cert_chain_len),
    })
}

fn pek_cert_import<T: Transport + Borrow<SimFirmware>>(
    c: &mut Call<'_, T>,
    pek_cert: &[u8],
    oca_cert: &[u8],
) -> Result<(), SimPlatformError> {
    c.write(BLOB_A, pek_cert)?;
    c.write(BLOB_B, oca_cert)?;
    let mut import = SevDataPekCertImport {
        pek_cert_address: BLOB_A,
        pek_cert_len: pek_cert.len() as u32,
        oca_cert_address: BLOB_B,
        oca_cert_len: oca_cert.len() as u32,
        ..Default::default()
    };
    let issued = c.mb.issue(&mut import);
    c.clear(BLOB_A, pek_cert.len())?;
    c.clear(BLOB_B, oca_cert.len())?;
    Ok(issued?)
}

/// Keeps the first `len` bytes the firmware says it wrote (never more than were read).
fn truncated(mut blob: Vec<u8>, len: u32) -> Vec<u8> {
    blob.truncate(len as usize);
    blob
}

impl<T: Transport + Borrow<SimFirmware>> Platform for Psp<T> {
    type Error = SimPlatformError;

    /// PLATFORM_STATUS, no state change.
    fn platform_status(&self) -> Result<SevUserDataStatus, SimPlatformError> {
        Call::new(self).status()
    }

    /// SNP_PLATFORM_STATUS through a scratch page (made firmware-owned when SNP is
    /// initialized, and given back afterwards).
    fn snp_platform_status(&self) -> Result<SevUserDataSnpStatus, SimPlatformError> {
        Call::new(self).snp_status()
    }

    /// GET_ID (the `SEV_GET_ID2` path): length query, then the 128-byte id (socket 0's
    /// 64-byte chip id followed by socket 1's). Works in every platform state.
    fn get_id(&self) -> Result<Vec<u8>, SimPlatformError> {
        Call::new(self).read_blob(
            SevCmd::GetId,
            |q: &SevDataGetId| q.len,
            |address, len| SevDataGetId { address, len },
        )
    }

    /// PEK_CSR: INIT if UNINIT, length query, CSR, SHUTDOWN if INITed here. The firmware
    /// wants the platform in INIT (a WORKING platform gives INVALID_PLATFORM_STATE).
    fn pek_csr(&self) -> Result<Vec<u8>, SimPlatformError> {
        Call::initialized(self, pek_csr)
    }

    /// PDH_CERT_EXPORT: INIT if UNINIT, length query, export, SHUTDOWN if INITed here.
    fn pdh_cert_export(&self) -> Result<PdhCertExport, SimPlatformError> {
        Call::initialized(self, pdh_cert_export)
    }

    /// PEK_GEN: INIT if UNINIT, PEK_GEN (a new PEK and PDH), SHUTDOWN if INITed here.
    fn pek_gen(&self) -> Result<(), SimPlatformError> {
        Call::initialized(self, |c| Ok(c.mb.issue(&mut PekGen)?))
    }

    /// PDH_GEN: INIT if UNINIT, PDH_GEN, SHUTDOWN if INITed here.
    fn pdh_gen(&self) -> Result<(), SimPlatformError> {
        Call::initialized(self, |c| Ok(c.mb.issue(&mut PdhGen)?))
    }

    /// PEK_CERT_IMPORT: blobs of at most 16 KiB, INIT if UNINIT, import, SHUTDOWN if INITed
    /// here.
    fn pek_cert_import(&self, pek_cert: &[u8], oca_cert: &[u8]) -> Result<(), SimPlatformError> {
        checked_len("PEK certificate", pek_cert)?;
        checked_len("OCA certificate", oca_cert)?;
        Call::initialized(self, |c| pek_cert_import(c, pek_cert, oca_cert))
    }

    /// FACTORY_RESET: [`SimPlatformError::Busy`] while WORKING; an INIT platform is SHUTDOWN
    /// first. The software firmware has no persistent state to delete and answers
    /// INVALID_COMMAND ([`SimPlatformError::Command`]).
    fn factory_reset(&self) -> Result<(), SimPlatformError> {
        let mut c = Call::new(self);
        let status = c.status()?;
        match status.state {
            STATE_WORKING => {
                return Err(SimPlatformError::Busy {
                    guest_count: status.guest_count,
                });
            }
            STATE_INIT => c.mb.issue(&mut Shutdown)?,
            _ => {}
        }
        Ok(c.mb.issue(&mut FactoryReset)?)
    }

    /// SNP_COMMIT with `sev_data_snp_commit { len: 4 }`. The software firmware does not
    /// implement it: INVALID_COMMAND ([`SimPlatformError::Command`]).
    fn snp_commit(&self) -> Result<(), SimPlatformError> {
        let mut commit = SevDataSnpCommit {
            len: core::mem::size_of::<SevDataSnpCommit>() as u32,
        };
        Ok(Call::new(self).mb.issue(&mut commit)?)
    }

    /// SNP_CONFIG with `config` as the command buffer; needs SNP initialized. The software
    /// firmware does not implement it: INVALID_COMMAND ([`SimPlatformError::Command`]).
    fn snp_set_config(&self, config: &SevUserDataSnpConfig) -> Result<(), SimPlatformError> {
        let mut c = Call::new(self);
        c.require_snp(SevPlatformCmd::SnpSetConfig)?;
        let mut arg = *config;
        Ok(c.mb.issue(&mut arg)?)
    }

    /// SNP_VLEK_LOAD with the hashstick copied to a scratch page; needs SNP initialized. The
    /// software firmware does not implement it: INVALID_COMMAND ([`SimPlatformError::Command`]).
    fn snp_vlek_load(
        &self,
        hashstick: &SevUserDataSnpWrappedVlekHashstick,
    ) -> Result<(), SimPlatformError> {
        let mut c = Call::new(self);
        c.require_snp(SevPlatformCmd::SnpVlekLoad)?;
        let bytes = hashstick.as_bytes();
        c.write(BLOB_A, bytes)?;
        let mut arg = SevUserDataSnpVlekLoad {
            len: core::mem::size_of::<SevUserDataSnpVlekLoad>() as u32,
            vlek_wrapped_version: 0,
            rsvd: [0; 3],
            vlek_wrapped_address: BLOB_A,
        };
        let issued = c.mb.issue(&mut arg);
        c.clear(BLOB_A, bytes.len())?;
        Ok(issued?)
    }
}

const _: () = assert!(SCRATCH_PA.is_multiple_of(PAGE_SIZE as u64));
const _: () = assert!(STATUS_PAGE.is_multiple_of(PAGE_SIZE as u64));
