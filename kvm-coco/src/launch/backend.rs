//! The backend abstraction under the launch API: the kernel-level operations a launch
//! needs, each one `KVM_MEMORY_ENCRYPT_OP` sub-command (or memory / vCPU ioctl), with the
//! kernel's in/out conventions kept visible so the launcher can apply QEMU's retry and
//! range-consumption rules once for every backend.
//!
//! [`BorrowedVm`](super::BorrowedVm) implements it over a VM, guest RAM and vCPUs a VMM
//! created, and [`KvmBackend`](super::KvmBackend) over ones it creates itself, delegating to
//! a `BorrowedVm`; both issue real system calls, which on a machine without the hardware the
//! software host answers.

use std::fmt;

use kvm_bindings::{kvm_regs, kvm_sregs};
use kvm_coco_uapi::{
    KvmSevInit, KvmSevSnpLaunchFinish, KvmSevSnpLaunchStart, KvmSevSnpLaunchUpdate,
    KvmTdxInitMemRegion, TdxCapabilitiesBuf, TdxInitVmBuf,
};

use super::LaunchError;
use super::params::{HostLimits, SevSession, SnpIdentity};
use crate::error::Error;
use crate::exit::Exit;
use crate::ops::EncryptOpError;
use crate::vm_type::VmType;

/// The part of a populate request still to be done, updated in place as the kernel
/// reports progress (`SNP_LAUNCH_UPDATE`'s `gfn_start`/`len`, `INIT_MEM_REGION`'s
/// `gpa`/`nr_pages`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Remaining {
    /// Next guest-physical address to populate.
    pub gpa: u64,
    /// Bytes left (a multiple of 4096).
    pub len: u64,
}

/// Bytes per guest page, the unit of `gfn_start` and `nr_pages`.
const PAGE: u64 = 4096;

impl Remaining {
    /// The `KVM_SEV_SNP_LAUNCH_UPDATE` argument for this range, its content at user
    /// address `uaddr`.
    pub(crate) fn snp_launch_update(
        &self,
        uaddr: u64,
        page_type: SnpPageType,
    ) -> KvmSevSnpLaunchUpdate {
        KvmSevSnpLaunchUpdate {
            gfn_start: self.gpa / PAGE,
            uaddr,
            len: self.len,
            r#type: page_type.raw(),
            ..Default::default()
        }
    }

    /// Takes over the kernel's progress from an `SNP_LAUNCH_UPDATE` argument (`gfn_start`
    /// and `len` advanced past what was consumed).
    pub(crate) fn consume_snp(&mut self, upd: &KvmSevSnpLaunchUpdate) {
        self.gpa = upd.gfn_start * PAGE;
        self.len = upd.len;
    }

    /// The `KVM_TDX_INIT_MEM_REGION` argument for this range, its content at user address
    /// `source_addr`.
    pub(crate) fn tdx_init_mem_region(&self, source_addr: u64) -> KvmTdxInitMemRegion {
        KvmTdxInitMemRegion {
            source_addr,
            gpa: self.gpa,
            nr_pages: self.len / PAGE,
        }
    }

    /// Takes over the kernel's progress from an `INIT_MEM_REGION` argument (`gpa` and
    /// `nr_pages` advanced past what was added).
    pub(crate) fn consume_tdx(&mut self, r: &KvmTdxInitMemRegion) {
        self.gpa = r.gpa;
        self.len = r.nr_pages * PAGE;
    }
}

/// The initial content of a region: `bytes` sit at guest address `gpa`; anything past them
/// (up to the region's end) is zero. Borrowed, never copied by the launcher.
#[derive(Clone, Copy, Debug)]
pub struct Source<'a> {
    /// Guest-physical address of `bytes[0]`.
    pub gpa: u64,
    /// The content.
    pub bytes: &'a [u8],
}

impl<'a> Source<'a> {
    /// The part of `[gpa, gpa+len)` the source's bytes cover: the guest address where it
    /// starts and the bytes. The rest of the range is zero.
    pub fn covering(&self, gpa: u64, len: u64) -> (u64, &'a [u8]) {
        let end = gpa.saturating_add(len);
        let lo = self.gpa.clamp(gpa, end);
        let hi = self
            .gpa
            .saturating_add(self.bytes.len() as u64)
            .clamp(lo, end);
        // `lo >= self.gpa` whenever `hi > lo`; otherwise the slice is empty.
        let offset = |a: u64| usize::try_from(a.saturating_sub(self.gpa)).unwrap_or(usize::MAX);
        (
            lo,
            self.bytes.get(offset(lo)..offset(hi)).unwrap_or_default(),
        )
    }

    /// Copies the page at `gpa` (zero-padded) into `page`.
    pub fn page(&self, gpa: u64, page: &mut [u8; 4096]) {
        page.fill(0);
        let (lo, bytes) = self.covering(gpa, 4096);
        // `lo - gpa + bytes.len() <= 4096` by construction.
        if let Some(dst) = usize::try_from(lo - gpa)
            .ok()
            .and_then(|at| page.get_mut(at..at + bytes.len()))
        {
            dst.copy_from_slice(bytes);
        }
    }
}

/// SNP page types of `SNP_LAUNCH_UPDATE` (facts linux-uapi §3.4): the uAPI's own enum, so the
/// values come from the `KVM_SEV_SNP_PAGE_TYPE_*` constants checked against the headers.
pub use kvm_coco_uapi::SnpPageType;

/// A vCPU as the launch API sees it: registers while they are not protected, and
/// `KVM_RUN` with the typed [`Exit`].
pub trait LaunchVcpu: fmt::Debug {
    /// The vCPU id.
    fn id(&self) -> u32;
    /// `KVM_GET_REGS` ([`Error::ProtectedState`] once the state is protected).
    ///
    /// # Errors
    /// The core error.
    fn regs(&self) -> Result<kvm_regs, Error>;
    /// `KVM_SET_REGS` ([`Error::ProtectedState`] once the state is protected).
    ///
    /// # Errors
    /// The core error.
    fn set_regs(&mut self, regs: &kvm_regs) -> Result<(), Error>;
    /// `KVM_GET_SREGS` ([`Error::ProtectedState`] once the state is protected).
    ///
    /// # Errors
    /// The core error.
    fn sregs(&self) -> Result<kvm_sregs, Error>;
    /// `KVM_SET_SREGS` ([`Error::ProtectedState`] once the state is protected).
    ///
    /// # Errors
    /// The core error.
    fn set_sregs(&mut self, sregs: &kvm_sregs) -> Result<(), Error>;
    /// Records that the register state is now protected (after SEV-ES
    /// `LAUNCH_UPDATE_VMSA` or SNP `LAUNCH_FINISH`).
    fn mark_protected(&mut self);
    /// `KVM_RUN` until the next exit to user space.
    ///
    /// # Errors
    /// The core error (e.g. `EINVAL` before the launch is finished).
    fn run(&mut self) -> Result<Exit<'_>, Error>;
}

/// The kernel-level operations of a launch. Every method is one ioctl with the kernel's
/// semantics: in/out structures are updated in place, errors carry the errno and the
/// firmware status. The launcher ([`Launch`](super::Launch)) adds the order, the retries
/// and the checks.
pub trait Backend: fmt::Debug {
    /// The backend's vCPU.
    type Vcpu: LaunchVcpu;

    /// The type of the VM behind this backend.
    fn vm_type(&self) -> VmType;

    /// The host values the parameters are checked against (`KVM_X86_GRP_SEV` attributes;
    /// the TDX capabilities are read by the launcher with
    /// [`tdx_capabilities`](Self::tdx_capabilities)).
    ///
    /// # Errors
    /// A core error when the query itself fails.
    fn host_limits(&self) -> Result<HostLimits, LaunchError>;

    /// Called once by [`Launch::new`](super::Launch::new) after `KVM_SEV_INIT2` /
    /// `KVM_TDX_INIT_VM`: a backend over RAM that existed before the launch (a borrowed VM)
    /// pins its SEV / SEV-ES RAM here. Nothing by default.
    ///
    /// # Errors
    /// The core error.
    fn initialized(&mut self) -> Result<(), LaunchError> {
        Ok(())
    }

    /// Adds guest RAM `[gpa, gpa+size)`: private-capable (guest_memfd) for SNP and TDX,
    /// ordinary memory for SEV / SEV-ES.
    ///
    /// # Errors
    /// The core error.
    fn add_memory(&mut self, gpa: u64, size: u64) -> Result<(), LaunchError>;

    /// `KVM_SET_MEMORY_ATTRIBUTES`: private or shared.
    ///
    /// # Errors
    /// The core error.
    fn set_private(&mut self, gpa: u64, size: u64, private: bool) -> Result<(), LaunchError>;

    /// Reads shared (host-visible) guest memory.
    ///
    /// # Errors
    /// [`LaunchError::NoMemory`] outside guest RAM.
    fn read_shared(&self, gpa: u64, buf: &mut [u8]) -> Result<(), LaunchError>;

    /// Writes shared (host-visible) guest memory.
    ///
    /// # Errors
    /// [`LaunchError::NoMemory`] outside guest RAM.
    fn write_shared(&mut self, gpa: u64, data: &[u8]) -> Result<(), LaunchError>;

    /// `KVM_ENABLE_CAP(KVM_CAP_EXIT_HYPERCALL)` for `KVM_HC_MAP_GPA_RANGE`.
    ///
    /// # Errors
    /// The core error.
    fn enable_map_gpa_range_exits(&mut self) -> Result<(), LaunchError>;

    /// `KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP)` (TDX needs it before vCPUs).
    ///
    /// # Errors
    /// The core error.
    fn enable_split_irqchip(&mut self) -> Result<(), LaunchError>;

    /// `KVM_CREATE_VCPU`.
    ///
    /// # Errors
    /// The core error with the kernel's errno.
    fn create_vcpu(&mut self, id: u32) -> Result<Self::Vcpu, LaunchError>;

    /// `KVM_SEV_INIT2`.
    ///
    /// # Errors
    /// The kernel's answer.
    fn sev_init2(&mut self, init: &mut KvmSevInit) -> Result<(), EncryptOpError>;

    /// `KVM_SEV_LAUNCH_START` with `policy` and optional owner session; returns the
    /// firmware handle.
    ///
    /// # Errors
    /// The kernel's answer.
    fn sev_launch_start(
        &mut self,
        policy: u32,
        session: Option<&SevSession>,
    ) -> Result<u32, EncryptOpError>;

    /// `KVM_SEV_LAUNCH_UPDATE_DATA` over `[gpa, gpa+len)` with content `src` (encrypted in
    /// place and measured).
    ///
    /// # Errors
    /// The kernel's answer.
    fn sev_launch_update_data(
        &mut self,
        gpa: u64,
        len: u64,
        src: Source<'_>,
    ) -> Result<(), EncryptOpError>;

    /// `KVM_SEV_LAUNCH_UPDATE_VMSA`: KVM encrypts and measures every vCPU's VMSA.
    ///
    /// # Errors
    /// The kernel's answer.
    fn sev_launch_update_vmsa(&mut self) -> Result<(), EncryptOpError>;

    /// `KVM_SEV_LAUNCH_MEASURE` (length probe, then fetch): the 48-byte blob
    /// `MEASURE[32] ‖ MNONCE[16]`.
    ///
    /// # Errors
    /// The kernel's answer.
    fn sev_launch_measure(&mut self) -> Result<Vec<u8>, EncryptOpError>;

    /// `KVM_SEV_LAUNCH_SECRET`: injects `packet` (ciphertext) with `header` at `gpa`.
    ///
    /// # Errors
    /// The kernel's answer.
    fn sev_launch_secret(
        &mut self,
        header: &[u8],
        packet: &[u8],
        gpa: u64,
    ) -> Result<(), EncryptOpError>;

    /// `KVM_SEV_LAUNCH_FINISH`.
    ///
    /// # Errors
    /// The kernel's answer.
    fn sev_launch_finish(&mut self) -> Result<(), EncryptOpError>;

    /// `KVM_SEV_DBG_DECRYPT`: the plaintext of `buf.len()` guest bytes at `gpa` (the
    /// firmware refuses unless the guest policy allows debugging).
    ///
    /// # Errors
    /// The kernel's answer.
    fn sev_dbg_decrypt(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), EncryptOpError>;

    /// `KVM_SEV_DBG_ENCRYPT`: writes `data` into guest memory at `gpa`, encrypted with the
    /// guest's key (policy must allow debugging).
    ///
    /// # Errors
    /// The kernel's answer.
    fn sev_dbg_encrypt(&mut self, gpa: u64, data: &[u8]) -> Result<(), EncryptOpError>;

    /// `KVM_SEV_SNP_ENABLE_REQ_CERTS`.
    ///
    /// # Errors
    /// The kernel's answer.
    fn snp_enable_req_certs(&mut self) -> Result<(), EncryptOpError>;

    /// `KVM_SEV_SNP_LAUNCH_START`.
    ///
    /// # Errors
    /// The kernel's answer.
    fn snp_launch_start(&mut self, start: &mut KvmSevSnpLaunchStart) -> Result<(), EncryptOpError>;

    /// One `KVM_SEV_SNP_LAUNCH_UPDATE` over `range` (advanced in place by what the kernel
    /// consumed). For a CPUID page the kernel writes the firmware-corrected page back into
    /// `cpuid_out` when the firmware rejects it.
    ///
    /// # Errors
    /// The kernel's answer.
    fn snp_launch_update(
        &mut self,
        range: &mut Remaining,
        page_type: SnpPageType,
        src: Source<'_>,
        cpuid_out: Option<&mut [u8; 4096]>,
    ) -> Result<(), EncryptOpError>;

    /// `KVM_SEV_SNP_LAUNCH_FINISH` (KVM first measures every vCPU's VMSA).
    ///
    /// # Errors
    /// The kernel's answer.
    fn snp_launch_finish(
        &mut self,
        finish: &mut KvmSevSnpLaunchFinish,
        identity: Option<&SnpIdentity>,
    ) -> Result<(), EncryptOpError>;

    /// `KVM_TDX_CAPABILITIES` into `buf` (its `nent` is the capacity).
    ///
    /// # Errors
    /// The kernel's answer (`E2BIG` for a small buffer).
    fn tdx_capabilities(&mut self, buf: &mut TdxCapabilitiesBuf) -> Result<(), EncryptOpError>;

    /// `KVM_TDX_INIT_VM`.
    ///
    /// # Errors
    /// The kernel's answer.
    fn tdx_init_vm(&mut self, init: &mut TdxInitVmBuf) -> Result<(), EncryptOpError>;

    /// `KVM_TDX_INIT_VCPU` with initial RCX `rcx`.
    ///
    /// # Errors
    /// The kernel's answer.
    fn tdx_init_vcpu(&mut self, vcpu: &Self::Vcpu, rcx: u64) -> Result<(), EncryptOpError>;

    /// One `KVM_TDX_INIT_MEM_REGION` over `range` (advanced in place, also on error).
    ///
    /// # Errors
    /// The kernel's answer.
    fn tdx_init_mem_region(
        &mut self,
        vcpu: &Self::Vcpu,
        range: &mut Remaining,
        measure: bool,
        src: Source<'_>,
    ) -> Result<(), EncryptOpError>;

    /// `KVM_TDX_FINALIZE_VM`.
    ///
    /// # Errors
    /// The kernel's answer.
    fn tdx_finalize_vm(&mut self) -> Result<(), EncryptOpError>;
}

#[cfg(test)]
mod tests {
    use super::Source;

    #[test]
    fn covering_is_the_overlap_of_the_range_and_the_bytes() {
        let bytes: Vec<u8> = (1..=10).collect();
        let src = Source {
            gpa: 0x1000,
            bytes: &bytes,
        };
        // The range holds all of it.
        assert_eq!(src.covering(0x0, 0x2000), (0x1000, &bytes[..]));
        // The range starts inside and ends inside.
        assert_eq!(src.covering(0x1002, 3), (0x1002, &bytes[2..5]));
        // The range starts before and ends inside.
        assert_eq!(src.covering(0xffe, 4), (0x1000, &bytes[..2]));
        // Entirely before, entirely after: nothing covered, at the clamped start.
        assert_eq!(src.covering(0x0, 0x10), (0x10, &[][..]));
        assert_eq!(src.covering(0x100a, 0x10), (0x100a, &[][..]));
        // A range reaching past u64::MAX is cut, not wrapped.
        assert_eq!(src.covering(0x1009, u64::MAX), (0x1009, &bytes[9..]));
    }

    #[test]
    fn page_is_the_covered_bytes_at_their_offset_and_zero_elsewhere() {
        let bytes = [7u8; 6];
        let src = Source {
            gpa: 0x1ffd,
            bytes: &bytes,
        };
        let mut page = [0xffu8; 4096];
        src.page(0x1000, &mut page);
        assert_eq!(&page[0xffd..], &[7, 7, 7]);
        assert!(page[..0xffd].iter().all(|&b| b == 0));
        src.page(0x2000, &mut page);
        assert_eq!(&page[..3], &[7, 7, 7]);
        assert!(page[3..].iter().all(|&b| b == 0));
        src.page(0x3000, &mut page);
        assert!(page.iter().all(|&b| b == 0));
    }
}
