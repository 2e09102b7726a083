//! SEND_* and RECEIVE_* (`sev_send_start` … `sev_receive_finish`): KVM's length queries,
//! sanity checks and page-boundary rule in front of the firmware's migration commands.

use kvm_coco_uapi::sev::{KVM_SEV_RECEIVE_FINISH, KVM_SEV_SEND_CANCEL, KVM_SEV_SEND_FINISH};
use kvm_coco_uapi::{
    KvmSevCmd, KvmSevReceiveStart, KvmSevReceiveUpdateData, KvmSevSendStart, KvmSevSendUpdateData,
};
use psp_driver::sim::mem::PAGE_SIZE;
use psp_driver::{
    SevDataReceiveFinish, SevDataReceiveStart, SevDataReceiveUpdateData, SevDataSendCancel,
    SevDataSendFinish, SevDataSendStart, SevDataSendUpdateData,
};

use super::host::{EFAULT, EINVAL};
use super::vm::{ENOTTY, SEV_FW_BLOB_MAX_SIZE, VmInner, VmState, arg, put};
use crate::error::Errno;

const PAGE: u64 = PAGE_SIZE as u64;

impl VmInner {
    /// Copies `len` bytes of kernel memory at `pa` to user `uaddr`.
    pub(super) fn copy_out(&self, pa: u64, uaddr: u64, len: u32) -> Result<(), Errno> {
        let mut b = vec![0u8; len as usize];
        self.host.pa_read(pa, &mut b)?;
        self.host.write_user(uaddr, &b).map_err(|_| EFAULT)
    }

    pub(super) fn send_start(
        &self,
        st: &mut VmState,
        cmd: &mut KvmSevCmd,
        payload: &mut [u8],
    ) -> Result<(), Errno> {
        if !st.sev.active {
            return Err(ENOTTY);
        }
        let mut p: KvmSevSendStart = arg(payload)?;
        let mut d = SevDataSendStart {
            handle: st.sev.handle,
            ..Default::default()
        };
        if p.session_len == 0 {
            // Length query: whatever the firmware says, the length is copied back.
            let ret = self.fw(st.sev.fd, &mut d, &mut cmd.error);
            p.session_len = d.session_len;
            put(payload, &p)?;
            return ret;
        }
        if p.pdh_cert_uaddr == 0
            || p.pdh_cert_len == 0
            || p.session_uaddr == 0
            || p.session_len > SEV_FW_BLOB_MAX_SIZE
        {
            return Err(EINVAL);
        }
        let session = self.kbuf(p.session_len);
        d.pdh_cert_address = self.copy_user_blob(p.pdh_cert_uaddr, p.pdh_cert_len)?;
        d.pdh_cert_len = p.pdh_cert_len;
        d.plat_certs_address = self.copy_user_blob(p.plat_certs_uaddr, p.plat_certs_len)?;
        d.plat_certs_len = p.plat_certs_len;
        d.amd_certs_address = self.copy_user_blob(p.amd_certs_uaddr, p.amd_certs_len)?;
        d.amd_certs_len = p.amd_certs_len;
        d.session_address = session;
        d.session_len = p.session_len;
        let mut ret = self.fw(st.sev.fd, &mut d, &mut cmd.error);
        if ret.is_ok() {
            self.copy_out(session, p.session_uaddr, p.session_len)?;
        }
        p.policy = d.policy;
        p.session_len = d.session_len;
        if put(payload, &p).is_err() {
            ret = Err(EFAULT);
        }
        ret
    }

    pub(super) fn send_update_data(
        &self,
        st: &mut VmState,
        cmd: &mut KvmSevCmd,
        payload: &mut [u8],
    ) -> Result<(), Errno> {
        if !st.sev.active {
            return Err(ENOTTY);
        }
        let mut p: KvmSevSendUpdateData = arg(payload)?;
        let mut d = SevDataSendUpdateData {
            handle: st.sev.handle,
            ..Default::default()
        };
        if p.trans_len == 0 || p.hdr_len == 0 {
            let ret = self.fw(st.sev.fd, &mut d, &mut cmd.error);
            p.hdr_len = d.hdr_len;
            p.trans_len = d.trans_len;
            put(payload, &p)?;
            return ret;
        }
        if p.trans_uaddr == 0 || p.guest_uaddr == 0 || p.guest_len == 0 || p.hdr_uaddr == 0 {
            return Err(EINVAL);
        }
        // The guest range may not cross a page.
        if u64::from(p.guest_len) + (p.guest_uaddr & (PAGE - 1)) > PAGE {
            return Err(EINVAL);
        }
        let guest_pa = self.host.pin_page(p.guest_uaddr)?;
        let hdr = self.kbuf(p.hdr_len);
        let trans = self.kbuf(p.trans_len);
        d.hdr_address = hdr;
        d.hdr_len = p.hdr_len;
        d.trans_address = trans;
        d.trans_len = p.trans_len;
        d.guest_address = guest_pa;
        d.guest_len = p.guest_len;
        self.fw(st.sev.fd, &mut d, &mut cmd.error)?;
        self.copy_out(trans, p.trans_uaddr, p.trans_len)?;
        self.copy_out(hdr, p.hdr_uaddr, p.hdr_len)
    }

    pub(super) fn receive_start(
        &self,
        st: &mut VmState,
        cmd: &mut KvmSevCmd,
        payload: &mut [u8],
    ) -> Result<(), Errno> {
        if !st.sev.active {
            return Err(ENOTTY);
        }
        let mut p: KvmSevReceiveStart = arg(payload)?;
        if p.pdh_uaddr == 0 || p.pdh_len == 0 || p.session_uaddr == 0 || p.session_len == 0 {
            return Err(EINVAL);
        }
        let mut d = SevDataReceiveStart {
            handle: p.handle,
            policy: p.policy,
            pdh_cert_address: self.copy_user_blob(p.pdh_uaddr, p.pdh_len)?,
            pdh_cert_len: p.pdh_len,
            session_address: self.copy_user_blob(p.session_uaddr, p.session_len)?,
            session_len: p.session_len,
            ..Default::default()
        };
        let fd = cmd.sev_fd as i32;
        self.fw(fd, &mut d, &mut cmd.error)?;
        let handle = d.handle;
        if let Err(e) = self.bind_asid(st, handle, &mut cmd.error) {
            let _ = self.host.asids.decommission(handle);
            return Err(e);
        }
        p.handle = handle;
        put(payload, &p)?;
        st.sev.policy = u64::from(p.policy);
        st.sev.handle = handle;
        st.sev.fd = fd;
        Ok(())
    }

    pub(super) fn receive_update_data(
        &self,
        st: &mut VmState,
        cmd: &mut KvmSevCmd,
        payload: &mut [u8],
    ) -> Result<(), Errno> {
        if !st.sev.active {
            return Err(EINVAL);
        }
        let p: KvmSevReceiveUpdateData = arg(payload)?;
        if p.hdr_uaddr == 0
            || p.hdr_len == 0
            || p.guest_uaddr == 0
            || p.guest_len == 0
            || p.trans_uaddr == 0
            || p.trans_len == 0
        {
            return Err(EINVAL);
        }
        // The guest range may not cross a page.
        if u64::from(p.guest_len) + (p.guest_uaddr & (PAGE - 1)) > PAGE {
            return Err(EINVAL);
        }
        let hdr = self.copy_user_blob(p.hdr_uaddr, p.hdr_len)?;
        let trans = self.copy_user_blob(p.trans_uaddr, p.trans_len)?;
        let guest_pa = self.host.pin_page(p.guest_uaddr)?;
        let mut d = SevDataReceiveUpdateData {
            handle: st.sev.handle,
            hdr_address: hdr,
            hdr_len: p.hdr_len,
            trans_address: trans,
            trans_len: p.trans_len,
            guest_address: guest_pa,
            guest_len: p.guest_len,
            ..Default::default()
        };
        self.fw(st.sev.fd, &mut d, &mut cmd.error)
    }

    /// SEND_FINISH, SEND_CANCEL, RECEIVE_FINISH: the handle only.
    pub(super) fn migration_end(&self, st: &mut VmState, cmd: &mut KvmSevCmd) -> Result<(), Errno> {
        if !st.sev.active {
            return Err(ENOTTY);
        }
        let h = st.sev.handle;
        let fd = st.sev.fd;
        match cmd.id {
            KVM_SEV_SEND_FINISH => {
                self.fw(fd, &mut SevDataSendFinish { handle: h }, &mut cmd.error)
            }
            KVM_SEV_SEND_CANCEL => {
                self.fw(fd, &mut SevDataSendCancel { handle: h }, &mut cmd.error)
            }
            KVM_SEV_RECEIVE_FINISH => {
                self.fw(fd, &mut SevDataReceiveFinish { handle: h }, &mut cmd.error)
            }
            _ => Err(EINVAL),
        }
    }
}
