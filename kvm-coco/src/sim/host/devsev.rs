//! `/dev/sev`'s `SEV_ISSUE_CMD` as the ccp driver's `sev_ioctl()` answers it, over the
//! software firmware's [`Platform`] implementation: the `sev_user_data_*` struct is read
//! through the caller's pointer, buffers it names are written back, the firmware status lands
//! in `sev_issue_cmd.error`, and length queries (a zero address or a short buffer) come back
//! as `INVALID_LEN` with the needed length written into the struct, `EIO`.

#![forbid(unsafe_code)]

use kvm_coco_uapi::SevRetCode;
use kvm_coco_uapi::sev_dev::{
    SevIssueCmd, SevPlatformCmd, SevUserDataGetId2, SevUserDataPdhCertExport,
    SevUserDataPekCertImport, SevUserDataPekCsr, SevUserDataSnpConfig, SevUserDataSnpVlekLoad,
    SevUserDataSnpWrappedVlekHashstick,
};
use psp_driver::Platform;
use psp_driver::sim::platform::SimPlatformError;
use zerocopy::{FromBytes, Immutable, IntoBytes};

use super::sys::ProcessMemory;
use crate::error::Errno;
use crate::sim::sev::SimSevHost;

const EFAULT: Errno = Errno::from_raw(libc::EFAULT);
const EINVAL: Errno = Errno::from_raw(libc::EINVAL);
const EIO: Errno = Errno::from_raw(libc::EIO);
const EPERM: Errno = Errno::from_raw(libc::EPERM);

/// The result of one `SEV_ISSUE_CMD`: the errno (if it failed), the firmware status written
/// to `error`, and the command's name for the trace.
#[derive(Debug)]
pub(crate) struct DevSevOutcome {
    pub errno: Option<Errno>,
    pub status: u32,
    pub name: &'static str,
}

fn read<T: FromBytes>(pm: &ProcessMemory, addr: u64) -> Result<T, Errno> {
    let mut buf = vec![0u8; size_of::<T>()];
    pm.read_at(addr, &mut buf)?;
    T::read_from_bytes(&buf).map_err(|_| EFAULT)
}

fn write<T: IntoBytes + Immutable>(pm: &ProcessMemory, addr: u64, v: &T) -> Result<(), Errno> {
    pm.write_at(addr, v.as_bytes())
}

/// A blob answer: too short or no address gives `INVALID_LEN` with the length to use.
fn blob(pm: &ProcessMemory, address: u64, length: u32, data: &[u8]) -> Result<u32, (Errno, u32)> {
    if address == 0 || (length as usize) < data.len() {
        return Err((EIO, SevRetCode::InvalidLen.raw()));
    }
    pm.write_at(address, data).map_err(|e| (e, 0))?;
    Ok(data.len() as u32)
}

fn fw_err(e: &SimPlatformError) -> (Errno, u32) {
    (Errno::from_raw(e.errno() as i32), e.status().raw())
}

/// Serves `SEV_ISSUE_CMD` with argument `argp`; `writable` says whether the fd was opened for
/// writing (the key-changing commands need it: `EPERM`).
pub(crate) fn issue(
    host: &SimSevHost,
    pm: &ProcessMemory,
    argp: u64,
    writable: bool,
) -> (Result<(), Errno>, DevSevOutcome) {
    let mut out = DevSevOutcome {
        errno: None,
        status: 0,
        name: "SEV_ISSUE_CMD",
    };
    let mut cmd: SevIssueCmd = match read(pm, argp) {
        Ok(c) => c,
        Err(e) => {
            out.errno = Some(e);
            return (Err(e), out);
        }
    };
    let Some(id) = SevPlatformCmd::ALL
        .iter()
        .copied()
        .find(|c| *c as u32 == cmd.cmd)
    else {
        out.errno = Some(EINVAL);
        return (Err(EINVAL), out);
    };
    out.name = id.name();
    let psp = host.psp();
    let data = cmd.data;
    // The commands sev_ioctl() refuses on a file opened without write access (facts
    // linux-uapi §7.2): the key-changing ones, PEK_CSR, and PDH_CERT_EXPORT when it would
    // have to INIT the platform first. SNP_COMMIT has no such check in Linux 7.3.
    let uninit = || psp.platform_status().map(|s| s.state == 0).unwrap_or(false);
    let needs_write = match id {
        SevPlatformCmd::FactoryReset
        | SevPlatformCmd::PekGen
        | SevPlatformCmd::PdhGen
        | SevPlatformCmd::PekCertImport
        | SevPlatformCmd::PekCsr
        | SevPlatformCmd::SnpSetConfig
        | SevPlatformCmd::SnpVlekLoad => true,
        SevPlatformCmd::PdhCertExport => uninit(),
        _ => false,
    };
    let r: Result<(), (Errno, u32)> = if needs_write && !writable {
        Err((EPERM, 0))
    } else {
        match id {
            SevPlatformCmd::PlatformStatus => psp
                .platform_status()
                .map_err(|e| fw_err(&e))
                .and_then(|s| write(pm, data, &s).map_err(|e| (e, 0))),
            SevPlatformCmd::SnpPlatformStatus => psp
                .snp_platform_status()
                .map_err(|e| fw_err(&e))
                .and_then(|s| write(pm, data, &s).map_err(|e| (e, 0))),
            SevPlatformCmd::GetId2 => (|| {
                let mut a: SevUserDataGetId2 = read(pm, data).map_err(|e| (e, 0))?;
                let id = psp.get_id().map_err(|e| fw_err(&e))?;
                let r = blob(pm, a.address, a.length, &id);
                a.length = id.len() as u32;
                write(pm, data, &a).map_err(|e| (e, 0))?;
                r.map(|_| ())
            })(),
            SevPlatformCmd::PekCsr => (|| {
                let mut a: SevUserDataPekCsr = read(pm, data).map_err(|e| (e, 0))?;
                let csr = psp.pek_csr().map_err(|e| fw_err(&e))?;
                let r = blob(pm, a.address, a.length, &csr);
                a.length = csr.len() as u32;
                write(pm, data, &a).map_err(|e| (e, 0))?;
                r.map(|_| ())
            })(),
            SevPlatformCmd::PdhCertExport => (|| {
                let mut a: SevUserDataPdhCertExport = read(pm, data).map_err(|e| (e, 0))?;
                let x = psp.pdh_cert_export().map_err(|e| fw_err(&e))?;
                let r1 = blob(pm, a.pdh_cert_address, a.pdh_cert_len, &x.pdh_cert);
                let r2 = if r1.is_ok() {
                    blob(pm, a.cert_chain_address, a.cert_chain_len, &x.cert_chain)
                } else {
                    r1
                };
                a.pdh_cert_len = x.pdh_cert.len() as u32;
                a.cert_chain_len = x.cert_chain.len() as u32;
                write(pm, data, &a).map_err(|e| (e, 0))?;
                r2.map(|_| ())
            })(),
            SevPlatformCmd::PekGen => psp.pek_gen().map_err(|e| fw_err(&e)),
            SevPlatformCmd::PdhGen => psp.pdh_gen().map_err(|e| fw_err(&e)),
            SevPlatformCmd::FactoryReset => psp.factory_reset().map_err(|e| fw_err(&e)),
            SevPlatformCmd::SnpCommit => psp.snp_commit().map_err(|e| fw_err(&e)),
            SevPlatformCmd::PekCertImport => (|| {
                let a: SevUserDataPekCertImport = read(pm, data).map_err(|e| (e, 0))?;
                let max = psp_driver::SEV_FW_BLOB_MAX_SIZE as u32;
                if a.pek_cert_len > max || a.oca_cert_len > max {
                    return Err((EFAULT, 0));
                }
                let mut pek = vec![0u8; a.pek_cert_len as usize];
                let mut oca = vec![0u8; a.oca_cert_len as usize];
                pm.read_at(a.pek_cert_address, &mut pek)
                    .map_err(|e| (e, 0))?;
                pm.read_at(a.oca_cert_address, &mut oca)
                    .map_err(|e| (e, 0))?;
                psp.pek_cert_import(&pek, &oca).map_err(|e| fw_err(&e))
            })(),
            SevPlatformCmd::SnpSetConfig => (|| {
                let c: SevUserDataSnpConfig = read(pm, data).map_err(|e| (e, 0))?;
                psp.snp_set_config(&c).map_err(|e| fw_err(&e))
            })(),
            SevPlatformCmd::SnpVlekLoad => (|| {
                let a: SevUserDataSnpVlekLoad = read(pm, data).map_err(|e| (e, 0))?;
                if a.len as usize != size_of::<SevUserDataSnpVlekLoad>()
                    || a.vlek_wrapped_version != 0
                {
                    return Err((EINVAL, 0));
                }
                let h: SevUserDataSnpWrappedVlekHashstick =
                    read(pm, a.vlek_wrapped_address).map_err(|e| (e, 0))?;
                psp.snp_vlek_load(&h).map_err(|e| fw_err(&e))
            })(),
            // SEV_GET_ID (deprecated): not offered by the model.
            SevPlatformCmd::GetId => Err((EINVAL, 0)),
        }
    };
    let result = match r {
        Ok(()) => {
            cmd.error = 0;
            Ok(())
        }
        Err((errno, status)) => {
            cmd.error = status;
            out.errno = Some(errno);
            Err(errno)
        }
    };
    out.status = cmd.error;
    // The ccp driver copies the command back (with `error`) whatever happened.
    if write(pm, argp, &cmd).is_err() {
        out.errno = Some(EFAULT);
        return (Err(EFAULT), out);
    }
    (result, out)
}
