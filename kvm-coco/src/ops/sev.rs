//! SEV and SEV-ES sub-commands (`enum sev_cmd_id` < 100), issued on the VM fd through
//! [`SevVm`] ([`Vm::sev`](crate::Vm::sev)).
//!
//! The launch order (Linux 7.3, `amd-memory-encryption.rst`): `KVM_SEV_INIT2` →
//! (create vCPUs) → `LAUNCH_START` → `LAUNCH_UPDATE_DATA`… → (SEV-ES)
//! `LAUNCH_UPDATE_VMSA` → `LAUNCH_MEASURE` → `LAUNCH_SECRET`… → `LAUNCH_FINISH`. KVM does
//! not track the order; the firmware rejects out-of-order commands with `EIO` and status
//! INVALID_GUEST_STATE. On an SNP VM every id below 100 gives `EPERM` after INIT2.

use std::os::fd::BorrowedFd;

use kvm_coco_uapi::sev::*;
use kvm_coco_uapi::{
    KvmSevAttestationReport, KvmSevDbg, KvmSevGuestStatus, KvmSevInit, KvmSevLaunchMeasure,
    KvmSevLaunchSecret, KvmSevLaunchStart, KvmSevLaunchUpdateData, KvmSevReceiveStart,
    KvmSevReceiveUpdateData, KvmSevSendStart, KvmSevSendUpdateData,
};

use super::{
    Command, EncryptOpError, NoPayload, SevVm, address_free, struct_payloads, sub_commands,
};

struct_payloads!(
    KvmSevInit,
    KvmSevLaunchStart,
    KvmSevLaunchUpdateData,
    KvmSevLaunchSecret,
    KvmSevLaunchMeasure,
    KvmSevGuestStatus,
    KvmSevDbg,
    KvmSevAttestationReport,
    KvmSevSendStart,
    KvmSevSendUpdateData,
    KvmSevReceiveStart,
    KvmSevReceiveUpdateData,
);

sub_commands! { Amd, VmScope;
    /// `KVM_SEV_INIT` (0, deprecated): INIT2 as SEV with GHCB version 0; default VMs only.
    Init = KVM_SEV_INIT, NoPayload;
    /// `KVM_SEV_ES_INIT` (1, deprecated): INIT2 as SEV-ES; default VMs only.
    EsInit = KVM_SEV_ES_INIT, NoPayload;
    /// `KVM_SEV_LAUNCH_START` (2).
    LaunchStart = KVM_SEV_LAUNCH_START, KvmSevLaunchStart;
    /// `KVM_SEV_LAUNCH_UPDATE_DATA` (3).
    LaunchUpdateData = KVM_SEV_LAUNCH_UPDATE_DATA, KvmSevLaunchUpdateData;
    /// `KVM_SEV_LAUNCH_UPDATE_VMSA` (4, SEV-ES).
    LaunchUpdateVmsa = KVM_SEV_LAUNCH_UPDATE_VMSA, NoPayload;
    /// `KVM_SEV_LAUNCH_SECRET` (5).
    LaunchSecret = KVM_SEV_LAUNCH_SECRET, KvmSevLaunchSecret;
    /// `KVM_SEV_LAUNCH_MEASURE` (6).
    LaunchMeasure = KVM_SEV_LAUNCH_MEASURE, KvmSevLaunchMeasure;
    /// `KVM_SEV_LAUNCH_FINISH` (7).
    LaunchFinish = KVM_SEV_LAUNCH_FINISH, NoPayload;
    /// `KVM_SEV_SEND_START` (8).
    SendStart = KVM_SEV_SEND_START, KvmSevSendStart;
    /// `KVM_SEV_SEND_UPDATE_DATA` (9).
    SendUpdateData = KVM_SEV_SEND_UPDATE_DATA, KvmSevSendUpdateData;
    /// `KVM_SEV_SEND_FINISH` (11).
    SendFinish = KVM_SEV_SEND_FINISH, NoPayload;
    /// `KVM_SEV_RECEIVE_START` (12).
    ReceiveStart = KVM_SEV_RECEIVE_START, KvmSevReceiveStart;
    /// `KVM_SEV_RECEIVE_UPDATE_DATA` (13).
    ReceiveUpdateData = KVM_SEV_RECEIVE_UPDATE_DATA, KvmSevReceiveUpdateData;
    /// `KVM_SEV_RECEIVE_FINISH` (15).
    ReceiveFinish = KVM_SEV_RECEIVE_FINISH, NoPayload;
    /// `KVM_SEV_GUEST_STATUS` (16).
    GuestStatus = KVM_SEV_GUEST_STATUS, KvmSevGuestStatus;
    /// `KVM_SEV_DBG_DECRYPT` (17).
    DbgDecrypt = KVM_SEV_DBG_DECRYPT, KvmSevDbg;
    /// `KVM_SEV_DBG_ENCRYPT` (18).
    DbgEncrypt = KVM_SEV_DBG_ENCRYPT, KvmSevDbg;
    /// `KVM_SEV_GET_ATTESTATION_REPORT` (20).
    GetAttestationReport = KVM_SEV_GET_ATTESTATION_REPORT, KvmSevAttestationReport;
    /// `KVM_SEV_SEND_CANCEL` (21).
    SendCancel = KVM_SEV_SEND_CANCEL, NoPayload;
    /// `KVM_SEV_INIT2` (22).
    Init2 = KVM_SEV_INIT2, KvmSevInit;
}

// No payload: `data` is 0 and the kernel reads no argument.
address_free!(
    Init,
    EsInit,
    LaunchUpdateVmsa,
    LaunchFinish,
    SendFinish,
    ReceiveFinish,
    SendCancel,
);
// `kvm_sev_init` (vmsa_features, flags, ghcb_version) and `kvm_sev_guest_status` (handle,
// policy, state) are plain values.
address_free!(Init2, GuestStatus);

/// Most bytes KVM accepts for LAUNCH_MEASURE and GET_ATTESTATION_REPORT (`-EINVAL` above).
pub const SEV_MAX_BLOB_LEN: u32 = 16384;

/// The SEV and SEV-ES sub-commands, one method each.
impl SevVm<'_> {
    /// `KVM_SEV_INIT2`: initializes SEV/SEV-ES/SNP on a VM of that type (allocates the ASID,
    /// initializes the PSP on first use). Must precede `KVM_CREATE_VCPU`. `vmsa_features`
    /// must be a subset of the `KVM_X86_SEV_VMSA_FEATURES` attribute.
    ///
    /// ```no_run
    /// use kvm_coco_uapi::KvmSevInit;
    /// let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::SevEs)?;
    /// vm.sev()?.init2(&mut KvmSevInit { ghcb_version: 2, ..Default::default() })?;
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn init2(&self, init: &mut KvmSevInit) -> Result<(), EncryptOpError> {
        self.issue(Command::<Init2>::new(init), None)
    }

    /// `KVM_SEV_INIT` (deprecated): legacy SEV on a *default* VM.
    ///
    /// ```no_run
    /// let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::Default)?;
    /// vm.sev()?.init()?;
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn init(&self) -> Result<(), EncryptOpError> {
        self.issue(Command::<Init>::new(&mut NoPayload), None)
    }

    /// `KVM_SEV_ES_INIT` (deprecated): legacy SEV-ES on a *default* VM. Register state is
    /// then not reported as protected by the kernel (it silently ignores register ioctls).
    ///
    /// ```no_run
    /// let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::Default)?;
    /// vm.sev()?.es_init()?;
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn es_init(&self) -> Result<(), EncryptOpError> {
        self.issue(Command::<EsInit>::new(&mut NoPayload), None)
    }

    /// `KVM_SEV_LAUNCH_START`: creates the guest context with `start.policy`, binds the
    /// ASID and returns the handle in `start.handle`. `sev_fd` (an open `/dev/sev`) is
    /// remembered by *number*: keep it open for the VM's lifetime.
    ///
    /// # Safety
    ///
    /// If non-zero, `dh_uaddr` must point to `dh_len` readable bytes and `session_uaddr` to
    /// `session_len` readable bytes for the duration of the call.
    ///
    /// ```no_run
    /// # use std::os::fd::AsFd;
    /// use kvm_coco_uapi::KvmSevLaunchStart;
    /// let sev = std::fs::File::open("/dev/sev")?;
    /// let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::Sev)?;
    /// let mut start = KvmSevLaunchStart { policy: 0x1, ..Default::default() };
    /// // SAFETY: no DH certificate or session blob is passed.
    /// unsafe { vm.sev()?.launch_start(&mut start, sev.as_fd())? };
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub unsafe fn launch_start(
        &self,
        start: &mut KvmSevLaunchStart,
        sev_fd: BorrowedFd<'_>,
    ) -> Result<(), EncryptOpError> {
        // SAFETY: forwarded from this function's contract.
        unsafe { self.issue_unchecked(Command::<LaunchStart>::new(start), Some(sev_fd)) }
    }

    /// `KVM_SEV_LAUNCH_UPDATE_DATA`: encrypts `[uaddr, uaddr+len)` in place and extends the
    /// launch measurement with it.
    ///
    /// # Safety
    ///
    /// `uaddr`/`len` must describe memory of this process that stays mapped during the
    /// call; the kernel pins it and the firmware overwrites it with ciphertext.
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use kvm_coco_uapi::KvmSevLaunchUpdateData;
    /// # let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::Sev)?;
    /// let mem = Arc::new(kvm_coco::GuestMapping::anonymous(0x1000)?);
    /// let mut upd = KvmSevLaunchUpdateData { uaddr: mem.host_addr(), len: 0x1000, ..Default::default() };
    /// // SAFETY: `mem` is mapped for the whole call.
    /// unsafe { vm.sev()?.launch_update_data(&mut upd)? };
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub unsafe fn launch_update_data(
        &self,
        update: &mut KvmSevLaunchUpdateData,
    ) -> Result<(), EncryptOpError> {
        // SAFETY: forwarded from this function's contract.
        unsafe { self.issue_unchecked(Command::<LaunchUpdateData>::new(update), None) }
    }

    /// `KVM_SEV_LAUNCH_UPDATE_VMSA` (SEV-ES): encrypts every vCPU's register state into its
    /// VMSA and measures it. On success every vCPU of this VM is marked protected
    /// ([`Vm::mark_vcpus_state_protected`]): register ioctls on them are refused from now on.
    ///
    /// [`Vm::mark_vcpus_state_protected`]: crate::Vm::mark_vcpus_state_protected
    ///
    /// ```no_run
    /// let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::SevEs)?;
    /// vm.sev()?.launch_update_vmsa()?;
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn launch_update_vmsa(&self) -> Result<(), EncryptOpError> {
        self.issue(Command::<LaunchUpdateVmsa>::new(&mut NoPayload), None)?;
        self.mark_vcpus_state_protected();
        Ok(())
    }

    /// `KVM_SEV_LAUNCH_SECRET`: injects a wrapped secret into guest memory.
    ///
    /// # Safety
    ///
    /// `hdr_uaddr` (`hdr_len` bytes) and `trans_uaddr` (`trans_len` bytes) must be readable,
    /// and `guest_uaddr` (`guest_len` bytes, physically contiguous) mapped guest memory of
    /// this process, for the duration of the call.
    ///
    /// ```no_run
    /// use kvm_coco_uapi::KvmSevLaunchSecret;
    /// # let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::Sev)?;
    /// let mut secret = KvmSevLaunchSecret::default();
    /// // SAFETY: all addresses are zero (the firmware rejects the command).
    /// let _ = unsafe { vm.sev()?.launch_secret(&mut secret) };
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub unsafe fn launch_secret(
        &self,
        secret: &mut KvmSevLaunchSecret,
    ) -> Result<(), EncryptOpError> {
        // SAFETY: forwarded from this function's contract.
        unsafe { self.issue_unchecked(Command::<LaunchSecret>::new(secret), None) }
    }

    /// `KVM_SEV_LAUNCH_MEASURE` with a raw payload (`len == 0` queries the length).
    ///
    /// # Safety
    ///
    /// If `uaddr` is non-zero it must point to `len` writable bytes for the duration of the
    /// call.
    ///
    /// ```no_run
    /// use kvm_coco_uapi::KvmSevLaunchMeasure;
    /// # let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::Sev)?;
    /// let mut m = KvmSevLaunchMeasure::default();
    /// // SAFETY: uaddr = 0, length query only.
    /// let _ = unsafe { vm.sev()?.launch_measure_raw(&mut m) };
    /// println!("{} bytes", m.len);
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub unsafe fn launch_measure_raw(
        &self,
        measure: &mut KvmSevLaunchMeasure,
    ) -> Result<(), EncryptOpError> {
        // SAFETY: forwarded from this function's contract.
        unsafe { self.issue_unchecked(Command::<LaunchMeasure>::new(measure), None) }
    }

    /// `KVM_SEV_LAUNCH_MEASURE`: the launch measurement blob (measurement and nonce),
    /// querying its length first.
    ///
    /// ```no_run
    /// # let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::Sev)?;
    /// let blob = vm.sev()?.launch_measure()?;
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn launch_measure(&self) -> Result<Vec<u8>, EncryptOpError> {
        let mut m = KvmSevLaunchMeasure::default();
        // SAFETY: uaddr = 0: the kernel only writes the needed length into `m.len`. A
        // "length query" failure (-ENOMEM-like INVALID_LEN) is expected and ignored.
        let first = unsafe { self.launch_measure_raw(&mut m) };
        if m.len == 0 {
            first?;
        }
        let len = m.len.min(SEV_MAX_BLOB_LEN);
        let mut buf = vec![0u8; len as usize];
        m.uaddr = buf.as_mut_ptr() as u64;
        m.len = len;
        // SAFETY: `uaddr` points to `buf`, `len` bytes, alive and exclusively borrowed for
        // the call.
        unsafe { self.launch_measure_raw(&mut m) }?;
        buf.truncate(m.len as usize);
        Ok(buf)
    }

    /// `KVM_SEV_LAUNCH_FINISH`: the guest becomes runnable.
    ///
    /// ```no_run
    /// # let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::Sev)?;
    /// vm.sev()?.launch_finish()?;
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn launch_finish(&self) -> Result<(), EncryptOpError> {
        self.issue(Command::<LaunchFinish>::new(&mut NoPayload), None)
    }

    /// `KVM_SEV_GUEST_STATUS`: the firmware's view of the guest (handle, policy, state).
    ///
    /// ```no_run
    /// # let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::Sev)?;
    /// let st = vm.sev()?.guest_status()?;
    /// println!("handle {} state {}", st.handle, st.state);
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn guest_status(&self) -> Result<KvmSevGuestStatus, EncryptOpError> {
        let mut st = KvmSevGuestStatus::default();
        self.issue(Command::<GuestStatus>::new(&mut st), None)?;
        Ok(st)
    }

    /// `KVM_SEV_DBG_DECRYPT`: decrypts guest memory (only if the policy allows debugging).
    ///
    /// # Safety
    ///
    /// `src_uaddr` must be mapped guest memory of this process and `dst_uaddr` writable, each
    /// `len` bytes, for the duration of the call.
    ///
    /// ```no_run
    /// use kvm_coco_uapi::KvmSevDbg;
    /// # let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::Sev)?;
    /// # let mem = kvm_coco::GuestMapping::anonymous(0x1000)?;
    /// let mut out = [0u8; 16];
    /// let mut d = KvmSevDbg { src_uaddr: mem.host_addr(), dst_uaddr: out.as_mut_ptr() as u64, len: 16, ..Default::default() };
    /// // SAFETY: both buffers are live for the call.
    /// unsafe { vm.sev()?.dbg_decrypt(&mut d)? };
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub unsafe fn dbg_decrypt(&self, dbg: &mut KvmSevDbg) -> Result<(), EncryptOpError> {
        // SAFETY: forwarded from this function's contract.
        unsafe { self.issue_unchecked(Command::<DbgDecrypt>::new(dbg), None) }
    }

    /// `KVM_SEV_DBG_ENCRYPT`: encrypts data into guest memory (only if the policy allows
    /// debugging).
    ///
    /// # Safety
    ///
    /// `src_uaddr` must be readable and `dst_uaddr` mapped guest memory of this process,
    /// each `len` bytes, for the duration of the call.
    ///
    /// ```no_run
    /// use kvm_coco_uapi::KvmSevDbg;
    /// # let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::Sev)?;
    /// # let mem = kvm_coco::GuestMapping::anonymous(0x1000)?;
    /// let data = [0x90u8; 16];
    /// let mut d = KvmSevDbg { src_uaddr: data.as_ptr() as u64, dst_uaddr: mem.host_addr(), len: 16, ..Default::default() };
    /// // SAFETY: both buffers are live for the call.
    /// unsafe { vm.sev()?.dbg_encrypt(&mut d)? };
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub unsafe fn dbg_encrypt(&self, dbg: &mut KvmSevDbg) -> Result<(), EncryptOpError> {
        // SAFETY: forwarded from this function's contract.
        unsafe { self.issue_unchecked(Command::<DbgEncrypt>::new(dbg), None) }
    }

    /// `KVM_SEV_GET_ATTESTATION_REPORT` with a raw payload (`len == 0` queries the length).
    ///
    /// # Safety
    ///
    /// If `uaddr` is non-zero it must point to `len` writable bytes for the call.
    ///
    /// ```no_run
    /// use kvm_coco_uapi::KvmSevAttestationReport;
    /// # let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::Sev)?;
    /// let mut r = KvmSevAttestationReport::default();
    /// // SAFETY: uaddr = 0, length query only.
    /// let _ = unsafe { vm.sev()?.get_attestation_report(&mut r) };
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub unsafe fn get_attestation_report(
        &self,
        report: &mut KvmSevAttestationReport,
    ) -> Result<(), EncryptOpError> {
        // SAFETY: forwarded from this function's contract.
        unsafe { self.issue_unchecked(Command::<GetAttestationReport>::new(report), None) }
    }

    /// `KVM_SEV_SEND_START` (migration source; `session_len == 0` queries the length).
    ///
    /// # Safety
    ///
    /// Every non-zero `*_uaddr` must point to its `*_len` bytes (readable certificates,
    /// writable session) for the call.
    ///
    /// ```no_run
    /// use kvm_coco_uapi::KvmSevSendStart;
    /// # let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::Sev)?;
    /// let mut s = KvmSevSendStart::default();
    /// // SAFETY: all addresses are zero: a length query.
    /// let _ = unsafe { vm.sev()?.send_start(&mut s) };
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub unsafe fn send_start(&self, s: &mut KvmSevSendStart) -> Result<(), EncryptOpError> {
        // SAFETY: forwarded from this function's contract.
        unsafe { self.issue_unchecked(Command::<SendStart>::new(s), None) }
    }

    /// `KVM_SEV_SEND_UPDATE_DATA` (`hdr_len == 0` or `trans_len == 0` queries).
    ///
    /// # Safety
    ///
    /// `guest_uaddr` (`guest_len` bytes, within one page) must be mapped guest memory and
    /// `hdr_uaddr`/`trans_uaddr` writable buffers of their lengths, for the call.
    ///
    /// ```no_run
    /// use kvm_coco_uapi::KvmSevSendUpdateData;
    /// # let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::Sev)?;
    /// let mut s = KvmSevSendUpdateData::default();
    /// // SAFETY: all addresses are zero: a length query.
    /// let _ = unsafe { vm.sev()?.send_update_data(&mut s) };
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub unsafe fn send_update_data(
        &self,
        s: &mut KvmSevSendUpdateData,
    ) -> Result<(), EncryptOpError> {
        // SAFETY: forwarded from this function's contract.
        unsafe { self.issue_unchecked(Command::<SendUpdateData>::new(s), None) }
    }

    /// `KVM_SEV_SEND_FINISH`.
    ///
    /// ```no_run
    /// # let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::Sev)?;
    /// vm.sev()?.send_finish()?;
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn send_finish(&self) -> Result<(), EncryptOpError> {
        self.issue(Command::<SendFinish>::new(&mut NoPayload), None)
    }

    /// `KVM_SEV_SEND_CANCEL`.
    ///
    /// ```no_run
    /// # let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::Sev)?;
    /// vm.sev()?.send_cancel()?;
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn send_cancel(&self) -> Result<(), EncryptOpError> {
        self.issue(Command::<SendCancel>::new(&mut NoPayload), None)
    }

    /// `KVM_SEV_RECEIVE_START` (migration target). Uses and remembers `sev_fd`.
    ///
    /// # Safety
    ///
    /// `pdh_uaddr`/`session_uaddr` must point to their lengths of readable bytes for the
    /// call.
    ///
    /// ```no_run
    /// # use std::os::fd::AsFd;
    /// use kvm_coco_uapi::KvmSevReceiveStart;
    /// let sev = std::fs::File::open("/dev/sev")?;
    /// # let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::Sev)?;
    /// let mut r = KvmSevReceiveStart::default();
    /// // SAFETY: no blobs are passed.
    /// let _ = unsafe { vm.sev()?.receive_start(&mut r, sev.as_fd()) };
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub unsafe fn receive_start(
        &self,
        r: &mut KvmSevReceiveStart,
        sev_fd: BorrowedFd<'_>,
    ) -> Result<(), EncryptOpError> {
        // SAFETY: forwarded from this function's contract.
        unsafe { self.issue_unchecked(Command::<ReceiveStart>::new(r), Some(sev_fd)) }
    }

    /// `KVM_SEV_RECEIVE_UPDATE_DATA`.
    ///
    /// # Safety
    ///
    /// `hdr_uaddr`/`trans_uaddr` must be readable and `guest_uaddr` mapped guest memory, each
    /// of its length, for the call.
    ///
    /// ```no_run
    /// use kvm_coco_uapi::KvmSevReceiveUpdateData;
    /// # let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::Sev)?;
    /// let mut r = KvmSevReceiveUpdateData::default();
    /// // SAFETY: all addresses are zero (rejected by the kernel).
    /// let _ = unsafe { vm.sev()?.receive_update_data(&mut r) };
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub unsafe fn receive_update_data(
        &self,
        r: &mut KvmSevReceiveUpdateData,
    ) -> Result<(), EncryptOpError> {
        // SAFETY: forwarded from this function's contract.
        unsafe { self.issue_unchecked(Command::<ReceiveUpdateData>::new(r), None) }
    }

    /// `KVM_SEV_RECEIVE_FINISH`.
    ///
    /// ```no_run
    /// # let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::Sev)?;
    /// vm.sev()?.receive_finish()?;
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn receive_finish(&self) -> Result<(), EncryptOpError> {
        self.issue(Command::<ReceiveFinish>::new(&mut NoPayload), None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::SubCommand;

    #[test]
    fn ids_and_names_match_the_kernel_enum() {
        // enum sev_cmd_id, arch/x86/include/uapi/asm/kvm.h (facts linux-uapi §3.1).
        assert_eq!((Init::ID, Init::NAME), (0, "KVM_SEV_INIT"));
        assert_eq!(LaunchStart::ID, 2);
        assert_eq!(LaunchUpdateVmsa::ID, 4);
        assert_eq!(LaunchMeasure::ID, 6);
        assert_eq!(GuestStatus::ID, 16);
        assert_eq!((DbgDecrypt::ID, DbgEncrypt::ID), (17, 18));
        assert_eq!(SendCancel::ID, 21);
        assert_eq!((Init2::ID, Init2::NAME), (22, "KVM_SEV_INIT2"));
    }
}
