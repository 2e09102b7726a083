//! SEV-SNP sub-commands (ids ≥ 100), issued on the VM fd of an SNP VM through [`SevVm`]
//! ([`Vm::sev`](crate::Vm::sev)).
//!
//! Order (Linux 7.3): `KVM_SEV_INIT2` → optional [`SNP_ENABLE_REQ_CERTS`](EnableReqCerts)
//! (before any vCPU) → guest_memfd slots and `PRIVATE` attributes → create vCPUs →
//! `SNP_LAUNCH_START` → `SNP_LAUNCH_UPDATE`… → `SNP_LAUNCH_FINISH` (which also measures
//! every vCPU's VMSA and protects their state). There is no separate VMSA command for SNP.

use std::os::fd::BorrowedFd;

use kvm_coco_uapi::sev::{
    KVM_SEV_SNP_ENABLE_REQ_CERTS, KVM_SEV_SNP_LAUNCH_FINISH, KVM_SEV_SNP_LAUNCH_START,
    KVM_SEV_SNP_LAUNCH_UPDATE,
};
use kvm_coco_uapi::{KvmSevSnpLaunchFinish, KvmSevSnpLaunchStart, KvmSevSnpLaunchUpdate};

use super::{
    Command, EncryptOpError, NoPayload, SevVm, address_free, struct_payloads, sub_commands,
};

struct_payloads!(
    KvmSevSnpLaunchStart,
    KvmSevSnpLaunchUpdate,
    KvmSevSnpLaunchFinish
);

sub_commands! { Amd, VmScope;
    /// `KVM_SEV_SNP_LAUNCH_START` (100).
    LaunchStart = KVM_SEV_SNP_LAUNCH_START, KvmSevSnpLaunchStart;
    /// `KVM_SEV_SNP_LAUNCH_UPDATE` (101).
    LaunchUpdate = KVM_SEV_SNP_LAUNCH_UPDATE, KvmSevSnpLaunchUpdate;
    /// `KVM_SEV_SNP_LAUNCH_FINISH` (102).
    LaunchFinish = KVM_SEV_SNP_LAUNCH_FINISH, KvmSevSnpLaunchFinish;
    /// `KVM_SEV_SNP_ENABLE_REQ_CERTS` (103, Linux 7.0).
    EnableReqCerts = KVM_SEV_SNP_ENABLE_REQ_CERTS, NoPayload;
}

// `kvm_sev_snp_launch_start` (policy, gosvw, flags) holds no address; ENABLE_REQ_CERTS has
// no payload.
address_free!(LaunchStart, EnableReqCerts);

/// The SNP sub-commands, one method each.
impl SevVm<'_> {
    /// `KVM_SEV_SNP_LAUNCH_START`: creates the SNP guest context with `start.policy`
    /// (bit 17 must be set; only bits in the `KVM_X86_SNP_POLICY_BITS` attribute are
    /// accepted) and binds the ASID. `sev_fd` is remembered by number: keep it open.
    ///
    /// ```no_run
    /// # use std::os::fd::AsFd;
    /// use kvm_coco_uapi::KvmSevSnpLaunchStart;
    /// let sev = std::fs::File::open("/dev/sev")?;
    /// let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::Snp)?;
    /// let mut start = KvmSevSnpLaunchStart { policy: 0x3_0000, ..Default::default() };
    /// vm.sev()?.snp_launch_start(&mut start, sev.as_fd())?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn snp_launch_start(
        &self,
        start: &mut KvmSevSnpLaunchStart,
        sev_fd: BorrowedFd<'_>,
    ) -> Result<(), EncryptOpError> {
        self.issue(Command::<LaunchStart>::new(start), Some(sev_fd))
    }

    /// `KVM_SEV_SNP_LAUNCH_UPDATE`: copies `[uaddr, uaddr+len)` into the private pages at
    /// `gfn_start`, makes them guest-owned and measures them with `type`. The kernel
    /// advances `gfn_start`/`uaddr` and decreases `len` as it goes; call again until `len`
    /// is 0 (it may stop early, e.g. on `EAGAIN` or a signal).
    ///
    /// # Safety
    ///
    /// Unless the page type is ZERO, `uaddr` must point to `len` readable bytes of this
    /// process for the duration of the call (for CPUID pages the kernel also writes the
    /// firmware's corrected page back there on failure).
    ///
    /// ```no_run
    /// # use std::os::fd::AsFd;
    /// use kvm_coco_uapi::KvmSevSnpLaunchUpdate;
    /// # let sev = std::fs::File::open("/dev/sev")?;
    /// # let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::Snp)?;
    /// let page = vec![0u8; 4096];
    /// let mut upd = KvmSevSnpLaunchUpdate {
    ///     gfn_start: 0x100, uaddr: page.as_ptr() as u64, len: 4096, r#type: 1, ..Default::default()
    /// };
    /// while upd.len > 0 {
    ///     // SAFETY: `page` is live and readable for each call.
    ///     unsafe { vm.sev()?.snp_launch_update(&mut upd, sev.as_fd())? };
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub unsafe fn snp_launch_update(
        &self,
        update: &mut KvmSevSnpLaunchUpdate,
        sev_fd: BorrowedFd<'_>,
    ) -> Result<(), EncryptOpError> {
        // SAFETY: forwarded from this function's contract.
        unsafe { self.issue_unchecked(Command::<LaunchUpdate>::new(update), Some(sev_fd)) }
    }

    /// `KVM_SEV_SNP_LAUNCH_FINISH`: measures every vCPU's VMSA, then finishes the launch
    /// with the optional ID block/auth and `host_data`. On success every vCPU of this VM is
    /// marked protected ([`Vm::mark_vcpus_state_protected`]) and `KVM_PRE_FAULT_MEMORY`
    /// becomes usable.
    ///
    /// [`Vm::mark_vcpus_state_protected`]: crate::Vm::mark_vcpus_state_protected
    ///
    /// # Safety
    ///
    /// If `id_block_en` is set, `id_block_uaddr` must point to 96 readable bytes and
    /// `id_auth_uaddr` to 4096 readable bytes for the duration of the call.
    ///
    /// ```no_run
    /// # use std::os::fd::AsFd;
    /// use kvm_coco_uapi::KvmSevSnpLaunchFinish;
    /// # let sev = std::fs::File::open("/dev/sev")?;
    /// # let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::Snp)?;
    /// let mut fin = KvmSevSnpLaunchFinish::default();
    /// // SAFETY: no ID block.
    /// unsafe { vm.sev()?.snp_launch_finish(&mut fin, sev.as_fd())? };
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub unsafe fn snp_launch_finish(
        &self,
        finish: &mut KvmSevSnpLaunchFinish,
        sev_fd: BorrowedFd<'_>,
    ) -> Result<(), EncryptOpError> {
        // SAFETY: forwarded from this function's contract.
        unsafe { self.issue_unchecked(Command::<LaunchFinish>::new(finish), Some(sev_fd)) }?;
        self.mark_vcpus_state_protected();
        Ok(())
    }

    /// `KVM_SEV_SNP_ENABLE_REQ_CERTS`: route SNP extended guest requests for certificates
    /// to userspace as [`Exit::SnpReqCerts`](crate::Exit::SnpReqCerts). Only on an SNP VM
    /// after INIT2 and before any vCPU exists (`EINVAL` otherwise). Availability is the
    /// `KVM_X86_SEV_SNP_REQ_CERTS` attribute.
    ///
    /// ```no_run
    /// # let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::Snp)?;
    /// vm.sev()?.snp_enable_req_certs()?;
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn snp_enable_req_certs(&self) -> Result<(), EncryptOpError> {
        self.issue(Command::<EnableReqCerts>::new(&mut NoPayload), None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::SubCommand;

    #[test]
    fn ids_match_the_kernel_enum() {
        // facts linux-uapi §3.1.
        assert_eq!(LaunchStart::ID, 100);
        assert_eq!(LaunchUpdate::ID, 101);
        assert_eq!(LaunchFinish::ID, 102);
        assert_eq!(
            (EnableReqCerts::ID, EnableReqCerts::NAME),
            (103, "KVM_SEV_SNP_ENABLE_REQ_CERTS")
        );
    }
}
