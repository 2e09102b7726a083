//! [`SimSevVm`] and [`SimSevVcpu`]: `sev_mem_enc_ioctl` and the memory ioctls of a VM of
//! type DEFAULT, SEV, SEV-ES or SNP.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex};

use kvm_bindings::{kvm_regs, kvm_sregs};
use kvm_coco_uapi::sev::*;
use kvm_coco_uapi::{
    KVM_MEM_GUEST_MEMFD, KVM_MEMORY_ATTRIBUTE_PRIVATE, KVM_X86_DEFAULT_VM, KVM_X86_SEV_ES_VM,
    KVM_X86_SEV_VM, KVM_X86_SNP_VM, KvmEncRegion, KvmMemoryAttributes, KvmSevAttestationReport,
    KvmSevCmd, KvmSevDbg, KvmSevGuestStatus, KvmSevInit, KvmSevLaunchMeasure, KvmSevLaunchSecret,
    KvmSevLaunchStart, KvmSevLaunchUpdateData, KvmUserspaceMemoryRegion2, SevRetCode,
};
use psp_driver::sim::mem::{PAGE_SIZE, VecBacking, page_pieces};
use psp_driver::{
    AsidClass, AsidError, AsidLease, Command, PspError, SevDataActivate, SevDataAttestationReport,
    SevDataDbg, SevDataGuestStatus, SevDataInit, SevDataLaunchFinish, SevDataLaunchMeasure,
    SevDataLaunchSecret, SevDataLaunchStart, SevDataLaunchUpdateData, SevDataLaunchUpdateVmsa,
    SnpInit,
};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::host::{EBADF, EFAULT, EINVAL, FdKind, SimSevHost, lock};
use super::host::{SVM_SEV_FEAT_SECURE_TSC, SVM_SEV_FEAT_SNP_ACTIVE};
use super::vcpu::{DR7_FIXED_1, VcpuRegs};
use crate::error::{Errno, RegisterOp};
use crate::sim::ranges;

pub(super) const EIO: Errno = Errno::from_raw(libc::EIO);
pub(super) const ENOTTY: Errno = Errno::from_raw(libc::ENOTTY);
pub(super) const EPERM: Errno = Errno::from_raw(libc::EPERM);
pub(super) const EEXIST: Errno = Errno::from_raw(libc::EEXIST);
pub(super) const EBUSY: Errno = Errno::from_raw(libc::EBUSY);
pub(super) const EOPNOTSUPP: Errno = Errno::from_raw(libc::EOPNOTSUPP);

/// `SEV_FW_BLOB_MAX_SIZE`: the largest blob KVM copies from user space for the firmware.
pub const SEV_FW_BLOB_MAX_SIZE: u32 = 0x4000;
/// `GHCB_VERSION_MAX`.
pub const GHCB_VERSION_MAX: u16 = 2;
const PAGE: u64 = PAGE_SIZE as u64;

/// Failure of a `KVM_MEMORY_ENCRYPT_OP` sub-command: the errno and `kvm_sev_cmd.error` as
/// the kernel copied it back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvmSevError {
    /// The sub-command id.
    pub id: u32,
    /// The errno.
    pub errno: Errno,
    /// `kvm_sev_cmd.error` after the call (the firmware status, or what the caller passed
    /// in if no firmware command ran).
    pub error: u32,
}

impl KvmSevError {
    /// `error` as a firmware status.
    pub fn status(&self) -> SevRetCode {
        SevRetCode::from_raw(self.error)
    }
}

impl fmt::Display for KvmSevError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KVM_MEMORY_ENCRYPT_OP {}: {}", self.id, self.errno)?;
        if self.error != 0 {
            write!(f, "; firmware status {}", self.status())?;
        }
        Ok(())
    }
}

impl std::error::Error for KvmSevError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.errno)
    }
}

#[derive(Debug)]
pub(super) struct Slot {
    pub gpa: u64,
    pub size: u64,
    pub uaddr: u64,
    pub gmem: Option<(i32, u64)>,
}

#[derive(Debug)]
pub(super) struct Gmem {
    pub size: u64,
    pub pa: u64,
    pub backing: Arc<VecBacking>,
    /// Page offsets already populated / prepared (`kvm_gmem_mark_prepared`).
    pub prepared: BTreeSet<u64>,
    /// Byte ranges `[start, end)` of the file bound to memslots.
    pub bound: Vec<(u64, u64)>,
}

#[derive(Debug)]
pub(super) struct VcpuSt {
    pub id: u32,
    pub regs: VcpuRegs,
    pub guest_debug: bool,
    pub protected: bool,
    pub vmsa_pa: u64,
}

/// `struct kvm_sev_info`, reduced to what the model needs.
#[derive(Debug, Default)]
pub(super) struct SevInfo {
    pub active: bool,
    pub es_active: bool,
    pub need_init: bool,
    pub asid: Option<AsidLease>,
    pub handle: u32,
    pub fd: i32,
    pub policy: u64,
    pub vmsa_features: u64,
    pub ghcb_version: u16,
    pub snp_context: Option<u64>,
    pub certs_enabled: bool,
    /// `guest_req_buf` / `guest_resp_buf`: the kernel's request page and its
    /// firmware-owned response page for SNP_GUEST_REQUEST.
    pub guest_req_pages: Option<(u64, u64)>,
}

impl SevInfo {
    /// The ASID of the lease (0 before INIT).
    pub fn asid_num(&self) -> u32 {
        self.asid.as_ref().map_or(0, AsidLease::asid)
    }
}

#[derive(Debug)]
pub(super) struct VmState {
    pub sev: SevInfo,
    pub vcpus: Vec<VcpuSt>,
    pub slots: BTreeMap<u32, Slot>,
    pub gmems: BTreeMap<i32, Gmem>,
    pub private: BTreeMap<u64, u64>,
    pub regions: Vec<(u64, u64)>,
    pub pre_fault_allowed: bool,
    pub tsc_khz: u32,
}

impl VmState {
    /// The memslot containing `gpa` (`gfn_to_memslot`).
    pub fn slot_at(&self, gpa: u64) -> Option<&Slot> {
        self.slots
            .values()
            .find(|s| gpa >= s.gpa && gpa - s.gpa < s.size)
    }
}

pub(super) struct VmInner {
    pub host: Arc<SimSevHost>,
    pub vm_type: u32,
    pub id: u64,
    pub st: Mutex<VmState>,
    /// Kernel memory of the call in progress (copied user blobs, firmware output
    /// buffers), freed when it returns, as `psp_copy_user_blob`'s and the handlers'
    /// `kfree`s do.
    pub scratch: Mutex<Vec<(u64, u64)>>,
}

/// A simulated VM of type DEFAULT (0), SEV (2), SEV-ES (3) or SNP (4); see the
/// [module docs](super).
#[derive(Clone)]
pub struct SimSevVm {
    pub(super) inner: Arc<VmInner>,
}

impl fmt::Debug for SimSevVm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimSevVm")
            .field("vm_type", &self.inner.vm_type)
            .field("asid", &self.asid())
            .finish_non_exhaustive()
    }
}

/// A simulated vCPU of a [`SimSevVm`] (`KVM_CREATE_VCPU`).
#[derive(Clone)]
pub struct SimSevVcpu {
    inner: Arc<VmInner>,
    index: usize,
}

impl fmt::Debug for SimSevVcpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimSevVcpu")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

/// Reads an argument struct from the payload (`copy_from_user(argp->data)`).
pub(super) fn arg<T: FromBytes>(payload: &[u8]) -> Result<T, Errno> {
    T::read_from_prefix(payload)
        .map(|(t, _)| t)
        .map_err(|_| EFAULT)
}

/// Writes an argument struct back (`copy_to_user(argp->data)`).
pub(super) fn put<T: IntoBytes + Immutable>(payload: &mut [u8], v: &T) -> Result<(), Errno> {
    v.write_to_prefix(payload).map_err(|_| EFAULT)
}

pub(super) fn psp_errno(e: &PspError) -> Errno {
    e.errno.map_or(EIO, |n| Errno::from_raw(n as i32))
}

impl VmInner {
    /// `kvm->arch.has_protected_state`: SEV-ES and SNP VM types.
    pub(super) fn has_protected_state(&self) -> bool {
        matches!(self.vm_type, KVM_X86_SEV_ES_VM | KVM_X86_SNP_VM)
    }

    /// `__sev_issue_cmd(fd, ...)`: the fd must be `/dev/sev`; the firmware status lands in
    /// `error` whether the command succeeds or not.
    pub(super) fn fw<C: Command>(
        &self,
        fd: i32,
        buf: &mut C,
        error: &mut u32,
    ) -> Result<(), Errno> {
        self.host.check_sev_fd(fd)?;
        match self.host.psp.issue(buf) {
            Ok(()) => {
                *error = 0;
                Ok(())
            }
            Err(e) => {
                *error = e.status.raw();
                Err(psp_errno(&e))
            }
        }
    }

    /// `psp_copy_user_blob`: copies a user blob into kernel memory the firmware can read.
    pub(super) fn copy_user_blob(&self, uaddr: u64, len: u32) -> Result<u64, Errno> {
        if uaddr == 0 || len == 0 || len > SEV_FW_BLOB_MAX_SIZE {
            return Err(EINVAL);
        }
        let data = self.host.read_user_vec(uaddr, len as usize)?;
        let pa = self.host.alloc_pa(u64::from(len));
        lock(&self.scratch).push((pa, u64::from(len)));
        self.host.pa_write(pa, &data)?;
        Ok(pa)
    }

    /// Allocates zeroed kernel memory for a firmware output buffer.
    pub(super) fn kbuf(&self, len: u32) -> u64 {
        let len = u64::from(len).max(1);
        let pa = self.host.alloc_pa(len);
        lock(&self.scratch).push((pa, len));
        pa
    }

    /// Frees the call's kernel memory (see `scratch`).
    pub(super) fn release_scratch(&self) {
        for (pa, len) in lock(&self.scratch).drain(..) {
            self.host.free_pa(pa, len);
        }
    }
}

fn asid_errno(e: AsidError, error: &mut u32) -> Errno {
    match e {
        AsidError::Firmware(p) => {
            *error = p.status.raw();
            psp_errno(&p)
        }
        AsidError::FlushRequired { .. } => {
            *error = SevRetCode::DfflushRequired.raw();
            EIO
        }
        _ => EINVAL,
    }
}

impl SimSevVm {
    /// `KVM_CREATE_VM(vm_type)` on `host`.
    ///
    /// # Errors
    /// `EINVAL` for a type the host does not offer (SW_PROTECTED, TDX, or SEV types whose
    /// `kvm_amd` parameter is off).
    pub fn new(host: &Arc<SimSevHost>, vm_type: u32) -> Result<Self, Errno> {
        let c = &host.cfg;
        let ok = match vm_type {
            KVM_X86_DEFAULT_VM => true,
            KVM_X86_SEV_VM => c.sev,
            KVM_X86_SEV_ES_VM => c.sev && c.sev_es,
            KVM_X86_SNP_VM => c.sev && c.sev_es && c.snp,
            _ => false,
        };
        if !ok {
            return Err(EINVAL);
        }
        let sev = SevInfo {
            need_init: vm_type != KVM_X86_DEFAULT_VM,
            ..SevInfo::default()
        };
        let st = VmState {
            sev,
            vcpus: Vec::new(),
            slots: BTreeMap::new(),
            gmems: BTreeMap::new(),
            private: BTreeMap::new(),
            regions: Vec::new(),
            pre_fault_allowed: vm_type != KVM_X86_SNP_VM,
            tsc_khz: 0,
        };
        Ok(Self {
            inner: Arc::new(VmInner {
                host: host.clone(),
                vm_type,
                id: host.next_id(),
                st: Mutex::new(st),
                scratch: Mutex::new(Vec::new()),
            }),
        })
    }

    /// The VM type (`KVM_X86_*_VM`).
    pub fn vm_type(&self) -> u32 {
        self.inner.vm_type
    }

    /// The host this VM runs on.
    pub fn host(&self) -> &Arc<SimSevHost> {
        &self.inner.host
    }

    /// `has_protected_state`: SEV-ES and SNP VM types (not DEFAULT + `KVM_SEV_ES_INIT`).
    pub fn has_protected_state(&self) -> bool {
        self.inner.has_protected_state()
    }

    /// `has_private_mem`: SNP VMs (guest_memfd, memory attributes).
    pub fn has_private_mem(&self) -> bool {
        self.inner.vm_type == KVM_X86_SNP_VM
    }

    /// The ASID allocated at INIT/INIT2, if any.
    pub fn asid(&self) -> Option<u32> {
        lock(&self.inner.st).sev.asid.as_ref().map(AsidLease::asid)
    }

    /// The firmware guest handle (SEV, SEV-ES) after LAUNCH_START, 0 before.
    pub fn handle(&self) -> u32 {
        lock(&self.inner.st).sev.handle
    }

    /// The physical address of the SNP guest context after SNP_LAUNCH_START.
    pub fn snp_context(&self) -> Option<u64> {
        lock(&self.inner.st).sev.snp_context
    }

    /// Whether `KVM_PRE_FAULT_MEMORY` is allowed (`pre_fault_allowed`).
    pub fn pre_fault_allowed(&self) -> bool {
        lock(&self.inner.st).pre_fault_allowed
    }

    /// Whether SNP certificate-request exits were enabled (KVM_SEV_SNP_ENABLE_REQ_CERTS).
    pub fn req_certs_enabled(&self) -> bool {
        lock(&self.inner.st).sev.certs_enabled
    }

    /// `KVM_SET_TSC_KHZ` on the VM (used as SNP `desired_tsc_khz` with SECURE_TSC).
    pub fn set_tsc_khz(&self, khz: u32) {
        lock(&self.inner.st).tsc_khz = khz;
    }

    // ---- Memory -----------------------------------------------------------------------

    /// `KVM_CREATE_GUEST_MEMFD`: a guest_memfd of `size` bytes, backed by host RAM the
    /// firmware addresses in place. Returns the new fd.
    ///
    /// # Errors
    /// `EINVAL` for flags other than `GUEST_MEMFD_FLAG_MMAP`, or a size that is 0 or not
    /// page aligned; `ENOMEM` if the host cannot back it.
    pub fn create_guest_memfd(&self, size: u64, flags: u64) -> Result<i32, Errno> {
        if flags & !1 != 0 || size == 0 || !size.is_multiple_of(PAGE) {
            return Err(EINVAL);
        }
        let (pa, backing) = self.inner.host.alloc_ram(size)?;
        let fd = self.inner.host.open_guest_memfd(self.inner.id);
        lock(&self.inner.st).gmems.insert(
            fd,
            Gmem {
                size,
                pa,
                backing,
                prepared: BTreeSet::new(),
                bound: Vec::new(),
            },
        );
        Ok(fd)
    }

    /// `KVM_SET_USER_MEMORY_REGION2` (size 0 deletes the slot).
    ///
    /// # Errors
    /// `EINVAL` for bad flags (GUEST_MEMFD only on VMs with private memory, never with
    /// LOG_DIRTY_PAGES/READONLY), misaligned or wrapping ranges, a guest_memfd range
    /// outside the file or of another VM; `EBADF` for a closed guest_memfd; `EEXIST` for
    /// an overlap with another slot or another binding of the same file range.
    pub fn set_user_memory_region2(&self, r: &KvmUserspaceMemoryRegion2) -> Result<(), Errno> {
        let gmem_flag = r.flags & KVM_MEM_GUEST_MEMFD != 0;
        let mut valid = 1u32; // LOG_DIRTY_PAGES
        if self.has_private_mem() {
            valid |= KVM_MEM_GUEST_MEMFD;
        }
        if gmem_flag {
            valid &= !1;
        } else if !self.has_protected_state() {
            valid |= 2; // READONLY
        }
        if r.flags & !valid != 0 {
            return Err(EINVAL);
        }
        if !r.memory_size.is_multiple_of(PAGE)
            || !r.guest_phys_addr.is_multiple_of(PAGE)
            || !r.userspace_addr.is_multiple_of(PAGE)
        {
            return Err(EINVAL);
        }
        if gmem_flag
            && (!r.guest_memfd_offset.is_multiple_of(PAGE)
                || r.guest_memfd_offset.checked_add(r.memory_size).is_none())
        {
            return Err(EINVAL);
        }
        let end = r.guest_phys_addr.checked_add(r.memory_size).ok_or(EINVAL)?;
        let mut st = lock(&self.inner.st);
        if r.memory_size == 0 {
            if let Some(old) = st.slots.remove(&r.slot)
                && let Some((fd, off)) = old.gmem
                && let Some(g) = st.gmems.get_mut(&fd)
            {
                g.bound.retain(|b| b.0 != off);
            }
            return Ok(());
        }
        if st.slots.contains_key(&r.slot) {
            return Err(EINVAL);
        }
        if st
            .slots
            .values()
            .any(|s| r.guest_phys_addr < s.gpa + s.size && s.gpa < end)
        {
            return Err(EEXIST);
        }
        let gmem = if gmem_flag {
            let fd = r.guest_memfd as i32;
            match self.inner.host.fd_kind(fd) {
                None => return Err(EBADF),
                Some(FdKind::GuestMemfd(id)) if id == self.inner.id => {}
                Some(_) => return Err(EINVAL),
            }
            let g = st.gmems.get_mut(&fd).ok_or(EINVAL)?;
            let (o, e) = (r.guest_memfd_offset, r.guest_memfd_offset + r.memory_size);
            if e > g.size {
                return Err(EINVAL);
            }
            if g.bound.iter().any(|b| o < b.1 && b.0 < e) {
                return Err(EEXIST);
            }
            g.bound.push((o, e));
            Some((fd, o))
        } else {
            None
        };
        st.slots.insert(
            r.slot,
            Slot {
                gpa: r.guest_phys_addr,
                size: r.memory_size,
                uaddr: r.userspace_addr,
                gmem,
            },
        );
        Ok(())
    }

    /// `KVM_SET_MEMORY_ATTRIBUTES`.
    ///
    /// # Errors
    /// `EINVAL` for flags, attributes the VM does not support (PRIVATE needs private
    /// memory), or a misaligned, empty or wrapping range.
    pub fn set_memory_attributes(&self, a: &KvmMemoryAttributes) -> Result<(), Errno> {
        let supported = if self.has_private_mem() {
            KVM_MEMORY_ATTRIBUTE_PRIVATE
        } else {
            0
        };
        let end = a.address.checked_add(a.size).ok_or(EINVAL)?;
        if a.flags != 0 || a.attributes & !supported != 0 || a.size == 0 {
            return Err(EINVAL);
        }
        if !a.address.is_multiple_of(PAGE) || !a.size.is_multiple_of(PAGE) {
            return Err(EINVAL);
        }
        let mut st = lock(&self.inner.st);
        ranges::set(&mut st.private, a.address, end, a.attributes != 0);
        Ok(())
    }

    /// `KVM_MEMORY_ENCRYPT_REG_REGION`: pins `[addr, addr + size)` of user memory.
    ///
    /// # Errors
    /// `ENOTTY` before INIT; `EINVAL` for an empty or wrapping range; `ENOMEM` if the range
    /// is not mapped.
    pub fn register_region(&self, r: &KvmEncRegion) -> Result<(), Errno> {
        let mut st = lock(&self.inner.st);
        if !st.sev.active {
            return Err(ENOTTY);
        }
        self.inner.host.pin(r.addr, r.size)?;
        st.regions.push((r.addr, r.size));
        Ok(())
    }

    /// `KVM_MEMORY_ENCRYPT_UNREG_REGION`: needs an exact `(addr, size)` match.
    ///
    /// # Errors
    /// `ENOTTY` before INIT; `EINVAL` without an exact match.
    pub fn unregister_region(&self, r: &KvmEncRegion) -> Result<(), Errno> {
        let mut st = lock(&self.inner.st);
        if !st.sev.active {
            return Err(ENOTTY);
        }
        let i = st
            .regions
            .iter()
            .position(|&x| x == (r.addr, r.size))
            .ok_or(EINVAL)?;
        st.regions.remove(i);
        Ok(())
    }

    /// The registered encrypted regions.
    pub fn registered_regions(&self) -> Vec<KvmEncRegion> {
        lock(&self.inner.st)
            .regions
            .iter()
            .map(|&(addr, size)| KvmEncRegion { addr, size })
            .collect()
    }

    /// The host-physical address behind `gpa`: the guest_memfd page for a private GPA in a
    /// guest_memfd slot, else the user page of the slot.
    pub(super) fn translate(st: &VmState, host: &SimSevHost, gpa: u64) -> Result<u64, Errno> {
        let slot = st.slot_at(gpa).ok_or(EFAULT)?;
        let off = gpa - slot.gpa;
        if let Some((fd, goff)) = slot.gmem
            && ranges::contains(&st.private, gpa & !(PAGE - 1))
        {
            let g = st.gmems.get(&fd).ok_or(EFAULT)?;
            return Ok(g.pa + goff + off);
        }
        let runs = host.pin(slot.uaddr + off, 1)?;
        runs.first().map(|r| r.0).ok_or(EFAULT)
    }

    /// Guest memory as the host sees it: the bytes in the physical pages behind `gpa`
    /// (ciphertext for launched/encrypted pages, plaintext for shared ones). Reads may not
    /// cross a page boundary of a private page.
    ///
    /// # Errors
    /// `EFAULT` if `gpa` is in no memslot or its backing is unmapped.
    pub fn host_read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let st = lock(&self.inner.st);
        for (page_gpa, off, r) in page_pieces(gpa, buf.len()) {
            let pa = Self::translate(&st, &self.inner.host, page_gpa + off as u64)?;
            self.inner.host.pa_read(pa, &mut buf[r])?;
        }
        Ok(())
    }

    /// Guest memory as the guest sees it, where the model can decrypt it: plaintext of
    /// shared pages, and of encrypted pages through the firmware's debug path (SEV
    /// `DBG_DECRYPT` / SNP `SNP_DBG_DECRYPT`), which the guest policy must allow. The
    /// firmware model exposes no key outside its debug commands.
    ///
    /// # Errors
    /// As [`host_read`](Self::host_read); `EIO` if the firmware refuses to decrypt
    /// (policy without debug).
    pub fn guest_read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let st = lock(&self.inner.st);
        // One bounce page for the firmware's output, whatever the number of pages.
        let bounce = st.sev.active.then(|| self.inner.kbuf(PAGE as u32));
        let mut page = vec![0u8; PAGE_SIZE];
        let r = page_pieces(gpa, buf.len()).try_for_each(|(page_gpa, off, r)| {
            let pa = Self::translate(&st, &self.inner.host, page_gpa + off as u64)?;
            self.inner
                .decrypt_page(&st, pa & !(PAGE - 1), bounce, &mut page)?;
            buf[r.clone()].copy_from_slice(&page[off..off + r.len()]);
            Ok(())
        });
        drop(st);
        self.inner.release_scratch();
        r
    }

    /// Writes guest memory through the user mapping of its slot, as the VMM does before
    /// launch (shared memory only).
    ///
    /// # Errors
    /// `EFAULT` if `gpa` is in no slot with a user mapping.
    pub fn host_write(&self, gpa: u64, data: &[u8]) -> Result<(), Errno> {
        let uaddr = {
            let st = lock(&self.inner.st);
            let s = st.slot_at(gpa).ok_or(EFAULT)?;
            s.uaddr + (gpa - s.gpa)
        };
        self.inner.host.write_user(uaddr, data)
    }

    // ---- vCPUs ------------------------------------------------------------------------

    /// `KVM_CREATE_VCPU(id)`: a vCPU in the SVM reset state, with its VMSA page allocated
    /// for SEV-ES/SNP.
    ///
    /// # Errors
    /// `EEXIST` for a duplicate id.
    pub fn create_vcpu(&self, id: u32) -> Result<SimSevVcpu, Errno> {
        let mut st = lock(&self.inner.st);
        if st.vcpus.iter().any(|v| v.id == id) {
            return Err(EEXIST);
        }
        let vmsa_pa = self.inner.host.alloc_pa(PAGE);
        st.vcpus.push(VcpuSt {
            id,
            regs: VcpuRegs::reset(),
            guest_debug: false,
            protected: false,
            vmsa_pa,
        });
        Ok(SimSevVcpu {
            inner: self.inner.clone(),
            index: st.vcpus.len() - 1,
        })
    }

    // ---- KVM_MEMORY_ENCRYPT_OP --------------------------------------------------------

    /// `KVM_MEMORY_ENCRYPT_OP` (`sev_mem_enc_ioctl`): `cmd` is the `kvm_sev_cmd` (its
    /// `error` is written back as the kernel does: on every handled command, with the
    /// firmware status of the last firmware command, or left as passed in if none ran);
    /// `payload` is the argument struct `cmd.data` points to (read and, for in/out
    /// commands, written back in place; ignored by commands without one). Buffers the
    /// argument struct itself points to are user memory of the host
    /// ([`SimSevHost::mmap`]).
    ///
    /// # Errors
    /// The errno the kernel returns; see the [module table](super).
    pub fn mem_enc_op(&self, cmd: &mut KvmSevCmd, payload: &mut [u8]) -> Result<(), Errno> {
        let r = self.mem_enc_op_kernel(cmd, payload);
        self.inner.release_scratch();
        r
    }

    /// [`mem_enc_op`](Self::mem_enc_op) before its kernel memory is freed.
    fn mem_enc_op_kernel(&self, cmd: &mut KvmSevCmd, payload: &mut [u8]) -> Result<(), Errno> {
        if !self.inner.host.cfg.sev {
            return Err(ENOTTY);
        }
        let mut st = lock(&self.inner.st);
        let snp_active = self.inner.snp_active(&st);
        if snp_active && cmd.id < KVM_SEV_SNP_LAUNCH_START {
            return Err(EPERM);
        }
        let es_enabled = self.inner.host.cfg.sev_es;
        let inner = &self.inner;
        match cmd.id {
            KVM_SEV_ES_INIT if !es_enabled => Err(ENOTTY),
            KVM_SEV_INIT | KVM_SEV_ES_INIT => inner.guest_init(&mut st, cmd, None),
            KVM_SEV_INIT2 => {
                if !st.sev.need_init {
                    return Err(EINVAL);
                }
                let data: KvmSevInit = arg(payload)?;
                inner.guest_init(&mut st, cmd, Some(data))
            }
            KVM_SEV_LAUNCH_START => inner.launch_start(&mut st, cmd, payload),
            KVM_SEV_LAUNCH_UPDATE_DATA => inner.launch_update_data(&mut st, cmd, payload),
            KVM_SEV_LAUNCH_UPDATE_VMSA => inner.launch_update_vmsa(&mut st, cmd),
            KVM_SEV_LAUNCH_SECRET => inner.launch_secret(&mut st, cmd, payload),
            KVM_SEV_LAUNCH_MEASURE => inner.launch_measure(&mut st, cmd, payload),
            KVM_SEV_LAUNCH_FINISH => {
                if !st.sev.active {
                    return Err(ENOTTY);
                }
                let mut d = SevDataLaunchFinish {
                    handle: st.sev.handle,
                };
                inner.fw(st.sev.fd, &mut d, &mut cmd.error)
            }
            KVM_SEV_GUEST_STATUS => inner.guest_status(&mut st, cmd, payload),
            KVM_SEV_DBG_DECRYPT => inner.dbg_crypt(&mut st, cmd, payload, true),
            KVM_SEV_DBG_ENCRYPT => inner.dbg_crypt(&mut st, cmd, payload, false),
            KVM_SEV_GET_ATTESTATION_REPORT => inner.attestation_report(&mut st, cmd, payload),
            KVM_SEV_SEND_START => inner.send_start(&mut st, cmd, payload),
            KVM_SEV_SEND_UPDATE_DATA => inner.send_update_data(&mut st, cmd, payload),
            KVM_SEV_RECEIVE_START => inner.receive_start(&mut st, cmd, payload),
            KVM_SEV_RECEIVE_UPDATE_DATA => inner.receive_update_data(&mut st, cmd, payload),
            KVM_SEV_SEND_FINISH | KVM_SEV_SEND_CANCEL | KVM_SEV_RECEIVE_FINISH => {
                inner.migration_end(&mut st, cmd)
            }
            KVM_SEV_SNP_LAUNCH_START => inner.snp_launch_start(&mut st, cmd, payload),
            KVM_SEV_SNP_LAUNCH_UPDATE => inner.snp_launch_update(&mut st, cmd, payload),
            KVM_SEV_SNP_LAUNCH_FINISH => inner.snp_launch_finish(&mut st, cmd, payload),
            KVM_SEV_SNP_ENABLE_REQ_CERTS => {
                if !snp_active || !st.vcpus.is_empty() {
                    return Err(EINVAL);
                }
                st.sev.certs_enabled = true;
                Ok(())
            }
            _ => Err(EINVAL),
        }
    }

    /// [`mem_enc_op`](Self::mem_enc_op) with a typed argument struct and a `sev_fd`;
    /// the struct is updated in place for in/out commands.
    ///
    /// # Errors
    /// [`KvmSevError`] with the errno and `kvm_sev_cmd.error`.
    pub fn sev_cmd<T: IntoBytes + FromBytes + KnownLayout>(
        &self,
        id: u32,
        sev_fd: i32,
        arg: &mut T,
    ) -> Result<(), KvmSevError> {
        self.sev_cmd_bytes(id, sev_fd, arg.as_mut_bytes())
    }

    /// [`mem_enc_op`](Self::mem_enc_op) for a sub-command without an argument struct.
    ///
    /// # Errors
    /// [`KvmSevError`] with the errno and `kvm_sev_cmd.error`.
    pub fn sev_cmd_none(&self, id: u32, sev_fd: i32) -> Result<(), KvmSevError> {
        self.sev_cmd_bytes(id, sev_fd, &mut [])
    }

    fn sev_cmd_bytes(&self, id: u32, sev_fd: i32, payload: &mut [u8]) -> Result<(), KvmSevError> {
        let mut cmd = KvmSevCmd {
            id,
            sev_fd: sev_fd as u32,
            ..Default::default()
        };
        self.mem_enc_op(&mut cmd, payload)
            .map_err(|errno| KvmSevError {
                id,
                errno,
                error: cmd.error,
            })
    }
}

impl VmInner {
    /// `sev_platform_init`: SNP_INIT (with SNP) then INIT with SEV-ES on first use.
    fn platform_init(&self, error: &mut u32) -> Result<(), Errno> {
        let mut up = lock(&self.host.platform_up);
        if *up {
            return Ok(());
        }
        let go = || -> Result<(), PspError> {
            if self.host.cfg.snp {
                self.host.psp.issue(&mut SnpInit)?;
            }
            let mut init = SevDataInit {
                flags: u32::from(self.host.cfg.sev_es),
                ..Default::default()
            };
            self.host.psp.issue(&mut init)
        };
        match go() {
            Ok(()) => {
                *up = true;
                Ok(())
            }
            Err(e) => {
                *error = e.status.raw();
                Err(psp_errno(&e))
            }
        }
    }

    /// `sev_guest_init` / `sev_guest_init2` → `__sev_guest_init`.
    fn guest_init(
        &self,
        st: &mut VmState,
        cmd: &mut KvmSevCmd,
        init2: Option<KvmSevInit>,
    ) -> Result<(), Errno> {
        let (mut data, vm_type) = match init2 {
            Some(d) => (d, self.vm_type),
            None => {
                if self.vm_type != KVM_X86_DEFAULT_VM {
                    return Err(EINVAL);
                }
                let es = cmd.id == KVM_SEV_ES_INIT;
                let d = KvmSevInit {
                    ghcb_version: u16::from(es),
                    ..Default::default()
                };
                (
                    d,
                    if es {
                        KVM_X86_SEV_ES_VM
                    } else {
                        KVM_X86_SEV_VM
                    },
                )
            }
        };
        let es_active = vm_type != KVM_X86_SEV_VM;
        let snp_active = vm_type == KVM_X86_SNP_VM;
        let mut valid = if es_active {
            self.host.cfg.supported_vmsa_features
        } else {
            0
        };
        if !st.vcpus.is_empty() || data.flags != 0 {
            return Err(EINVAL);
        }
        if !snp_active {
            valid &= !SVM_SEV_FEAT_SECURE_TSC;
        }
        if data.vmsa_features & !valid != 0 {
            return Err(EINVAL);
        }
        if data.ghcb_version > GHCB_VERSION_MAX || (!es_active && data.ghcb_version != 0) {
            return Err(EINVAL);
        }
        if es_active && data.ghcb_version == 0 {
            data.ghcb_version = 2;
        }
        if snp_active && data.ghcb_version < 2 {
            return Err(EINVAL);
        }
        if st.sev.active {
            return Err(EINVAL);
        }
        let class = if snp_active {
            AsidClass::Snp
        } else if es_active {
            AsidClass::SevEs
        } else {
            AsidClass::Sev
        };
        let lease = self.host.asids.allocate(class).map_err(|e| match e {
            AsidError::Unsupported { .. } => ENOTTY,
            _ => EBUSY,
        })?;
        let mut init_error = 0u32;
        if let Err(e) = self.platform_init(&mut init_error) {
            cmd.error = init_error;
            let _ = self.host.asids.release(lease);
            return Err(e);
        }
        st.sev.active = true;
        st.sev.es_active = es_active;
        st.sev.vmsa_features = data.vmsa_features
            | if snp_active {
                SVM_SEV_FEAT_SNP_ACTIVE
            } else {
                0
            };
        st.sev.ghcb_version = data.ghcb_version;
        st.sev.asid = Some(lease);
        st.sev.need_init = false;
        Ok(())
    }

    /// `sev_bind_asid`: ACTIVATE the VM's ASID to `handle` (without the deactivate lock).
    pub(super) fn bind_asid(
        &self,
        st: &mut VmState,
        handle: u32,
        error: &mut u32,
    ) -> Result<(), Errno> {
        let lease = st.sev.asid.as_mut().ok_or(EINVAL)?;
        if lease.binding().is_some() {
            // A second guest context on the same ASID: the firmware decides (ASID_OWNED).
            let mut d = SevDataActivate {
                handle,
                asid: lease.asid(),
            };
            return match self.host.psp.issue(&mut d) {
                Ok(()) => Ok(()),
                Err(e) => {
                    *error = e.status.raw();
                    Err(psp_errno(&e))
                }
            };
        }
        match self.host.asids.bind(lease, handle) {
            Ok(()) => {
                *error = 0;
                Ok(())
            }
            Err(e) => Err(asid_errno(e, error)),
        }
    }

    fn launch_start(
        &self,
        st: &mut VmState,
        cmd: &mut KvmSevCmd,
        payload: &mut [u8],
    ) -> Result<(), Errno> {
        if !st.sev.active {
            return Err(ENOTTY);
        }
        let mut p: KvmSevLaunchStart = arg(payload)?;
        st.sev.policy = u64::from(p.policy);
        let mut start = SevDataLaunchStart::default();
        if p.dh_uaddr != 0 {
            start.dh_cert_address = self.copy_user_blob(p.dh_uaddr, p.dh_len)?;
            start.dh_cert_len = p.dh_len;
        }
        if p.session_uaddr != 0 {
            start.session_address = self.copy_user_blob(p.session_uaddr, p.session_len)?;
            start.session_len = p.session_len;
        }
        start.handle = p.handle;
        start.policy = p.policy;
        let fd = cmd.sev_fd as i32;
        self.fw(fd, &mut start, &mut cmd.error)?;
        let handle = start.handle;
        if let Err(e) = self.bind_asid(st, handle, &mut cmd.error) {
            let _ = self.host.asids.decommission(handle);
            return Err(e);
        }
        p.handle = handle;
        put(payload, &p)?;
        st.sev.handle = handle;
        st.sev.fd = fd;
        Ok(())
    }

    fn launch_update_data(
        &self,
        st: &mut VmState,
        cmd: &mut KvmSevCmd,
        payload: &mut [u8],
    ) -> Result<(), Errno> {
        if !st.sev.active {
            return Err(ENOTTY);
        }
        let p: KvmSevLaunchUpdateData = arg(payload)?;
        let runs = self.host.pin(p.uaddr, u64::from(p.len))?;
        for (pa, len) in runs {
            let mut d = SevDataLaunchUpdateData {
                handle: st.sev.handle,
                address: pa,
                len: len as u32,
                ..Default::default()
            };
            self.fw(st.sev.fd, &mut d, &mut cmd.error)?;
        }
        Ok(())
    }

    /// `sev_es_sync_vmsa`'s checks and the VMSA write.
    pub(super) fn sync_vmsa(&self, st: &mut VmState, i: usize) -> Result<u64, Errno> {
        let sync_fpu = self.vm_type != KVM_X86_DEFAULT_VM;
        let features = st.sev.vmsa_features;
        let v = st.vcpus.get(i).ok_or(EINVAL)?;
        if v.protected || v.guest_debug || v.regs.dr7 & !DR7_FIXED_1 != 0 {
            return Err(EINVAL);
        }
        let page = v.regs.vmsa(features, sync_fpu);
        self.host.pa_write(v.vmsa_pa, &page[..])?;
        Ok(v.vmsa_pa)
    }

    fn launch_update_vmsa(&self, st: &mut VmState, cmd: &mut KvmSevCmd) -> Result<(), Errno> {
        if !st.sev.active || !st.sev.es_active {
            return Err(ENOTTY);
        }
        for i in 0..st.vcpus.len() {
            let pa = self.sync_vmsa(st, i)?;
            let mut d = SevDataLaunchUpdateVmsa {
                handle: st.sev.handle,
                address: pa,
                len: PAGE_SIZE as u32,
                ..Default::default()
            };
            self.fw(st.sev.fd, &mut d, &mut cmd.error)?;
            if let Some(v) = st.vcpus.get_mut(i) {
                v.protected = true;
            }
        }
        Ok(())
    }

    fn launch_secret(
        &self,
        st: &mut VmState,
        cmd: &mut KvmSevCmd,
        payload: &mut [u8],
    ) -> Result<(), Errno> {
        if !st.sev.active {
            return Err(ENOTTY);
        }
        let p: KvmSevLaunchSecret = arg(payload)?;
        let runs = self.host.pin(p.guest_uaddr, u64::from(p.guest_len))?;
        let [(guest_pa, _)] = runs[..] else {
            return Err(EINVAL);
        };
        let trans = self.copy_user_blob(p.trans_uaddr, p.trans_len)?;
        let hdr = self.copy_user_blob(p.hdr_uaddr, p.hdr_len)?;
        let mut d = SevDataLaunchSecret {
            handle: st.sev.handle,
            hdr_address: hdr,
            hdr_len: p.hdr_len,
            guest_address: guest_pa,
            guest_len: p.guest_len,
            trans_address: trans,
            trans_len: p.trans_len,
            ..Default::default()
        };
        self.fw(st.sev.fd, &mut d, &mut cmd.error)
    }

    fn launch_measure(
        &self,
        st: &mut VmState,
        cmd: &mut KvmSevCmd,
        payload: &mut [u8],
    ) -> Result<(), Errno> {
        if !st.sev.active {
            return Err(ENOTTY);
        }
        let mut p: KvmSevLaunchMeasure = arg(payload)?;
        let mut d = SevDataLaunchMeasure::default();
        let mut blob = None;
        if p.len != 0 && p.uaddr != 0 {
            if p.len > SEV_FW_BLOB_MAX_SIZE {
                return Err(EINVAL);
            }
            let pa = self.kbuf(p.len);
            blob = Some(pa);
            d.address = pa;
            d.len = p.len;
        }
        d.handle = st.sev.handle;
        let mut ret = self.fw(st.sev.fd, &mut d, &mut cmd.error);
        if p.len != 0 {
            ret?;
            if let Some(pa) = blob {
                ret = self.copy_out(pa, p.uaddr, p.len);
            }
        }
        p.len = d.len;
        put(payload, &p)?;
        ret
    }

    fn guest_status(
        &self,
        st: &mut VmState,
        cmd: &mut KvmSevCmd,
        payload: &mut [u8],
    ) -> Result<(), Errno> {
        if !st.sev.active {
            return Err(ENOTTY);
        }
        let mut d = SevDataGuestStatus {
            handle: st.sev.handle,
            ..Default::default()
        };
        self.fw(st.sev.fd, &mut d, &mut cmd.error)?;
        let p = KvmSevGuestStatus {
            handle: d.handle,
            policy: d.policy,
            state: u32::from(d.state),
        };
        put(payload, &p)
    }

    fn attestation_report(
        &self,
        st: &mut VmState,
        cmd: &mut KvmSevCmd,
        payload: &mut [u8],
    ) -> Result<(), Errno> {
        if !st.sev.active {
            return Err(ENOTTY);
        }
        let mut p: KvmSevAttestationReport = arg(payload)?;
        let mut d = SevDataAttestationReport::default();
        let mut blob = None;
        // `len` 0 queries the length (the mnonce is then not passed on).
        if p.len != 0 && p.uaddr != 0 {
            if p.len > SEV_FW_BLOB_MAX_SIZE {
                return Err(EINVAL);
            }
            let pa = self.kbuf(p.len);
            blob = Some(pa);
            d.address = pa;
            d.len = p.len;
            d.mnonce = p.mnonce;
        }
        d.handle = st.sev.handle;
        let mut ret = self.fw(st.sev.fd, &mut d, &mut cmd.error);
        if p.len != 0 {
            ret?;
            if let Some(pa) = blob {
                ret = self.copy_out(pa, p.uaddr, p.len);
            }
        }
        p.len = d.len;
        put(payload, &p)?;
        ret
    }

    /// `sev_dbg_crypt`: page by page (of the source) through a kernel bounce buffer.
    fn dbg_crypt(
        &self,
        st: &mut VmState,
        cmd: &mut KvmSevCmd,
        payload: &mut [u8],
        dec: bool,
    ) -> Result<(), Errno> {
        if !st.sev.active {
            return Err(ENOTTY);
        }
        let p: KvmSevDbg = arg(payload)?;
        if p.len == 0 || p.src_uaddr.checked_add(u64::from(p.len)).is_none() {
            return Err(EINVAL);
        }
        if p.dst_uaddr == 0 {
            return Err(EINVAL);
        }
        // A piece is at most a page; its 16-byte aligned cover at most a page plus 16 bytes
        // (the destination need not be page aligned like the source).
        let bounce = self.kbuf(2 * PAGE as u32);
        let (mut src, mut dst, mut size) = (p.src_uaddr, p.dst_uaddr, u64::from(p.len));
        while size > 0 {
            let len = (PAGE - (src & (PAGE - 1))).min(size);
            let src_pa = self.host.pin_page(src)?;
            let dst_pa = self.host.pin_page(dst)?;
            if dec {
                // __sev_dbg_decrypt_user.
                let (a, plain) = self.dbg_decrypt_cover(st, cmd, src_pa, len, bounce)?;
                let off = (src_pa - a) as usize;
                self.host
                    .write_user(dst, plain.get(off..off + len as usize).ok_or(EFAULT)?)?;
            } else {
                // __sev_dbg_encrypt_user: read-modify-write of the destination's cover.
                let (a, mut plain) = self.dbg_decrypt_cover(st, cmd, dst_pa, len, bounce)?;
                let new = self.host.read_user_vec(src, len as usize)?;
                let off = (dst_pa - a) as usize;
                plain
                    .get_mut(off..off + len as usize)
                    .ok_or(EFAULT)?
                    .copy_from_slice(&new);
                self.host.pa_write(bounce, &plain)?;
                let mut d = psp_driver::DbgEncrypt(SevDataDbg {
                    handle: st.sev.handle,
                    src_addr: bounce,
                    dst_addr: a,
                    len: plain.len() as u32,
                    ..Default::default()
                });
                self.fw(st.sev.fd, &mut d, &mut cmd.error)?;
            }
            src += len;
            dst += len;
            size -= len;
        }
        Ok(())
    }

    /// `__sev_dbg_decrypt`: DBG_DECRYPT of the 16-byte aligned cover of
    /// `[pa, pa + len)` into `bounce`. Returns the cover's start and its plaintext.
    fn dbg_decrypt_cover(
        &self,
        st: &VmState,
        cmd: &mut KvmSevCmd,
        pa: u64,
        len: u64,
        bounce: u64,
    ) -> Result<(u64, Vec<u8>), Errno> {
        let a = pa & !15;
        let sz = (len + (pa - a)).div_ceil(16) * 16;
        let mut d = psp_driver::DbgDecrypt(SevDataDbg {
            handle: st.sev.handle,
            src_addr: a,
            dst_addr: bounce,
            len: sz as u32,
            ..Default::default()
        });
        self.fw(st.sev.fd, &mut d, &mut cmd.error)?;
        let mut plain = vec![0u8; sz as usize];
        self.host.pa_read(bounce, &mut plain)?;
        Ok((a, plain))
    }

    /// Decrypts the 4 KiB page at `page_pa` into `page` through the firmware's debug
    /// command, with `bounce` as its output buffer (or reads it as is if it is not
    /// encrypted for this guest: no bounce buffer, or an SNP page no guest owns).
    fn decrypt_page(
        &self,
        st: &VmState,
        page_pa: u64,
        bounce: Option<u64>,
        page: &mut [u8],
    ) -> Result<(), Errno> {
        self.host.pa_read(page_pa, page)?;
        let Some(bounce) = bounce else {
            return Ok(());
        };
        let r = if let Some(gctx) = st.sev.snp_context {
            let e = self.host.fw.rmp_entry(page_pa);
            if !e.assigned || e.asid == 0 {
                return Ok(());
            }
            let mut d = psp_driver::SnpDbgDecrypt(psp_driver::SevDataSnpDbg {
                gctx_paddr: gctx,
                src_addr: page_pa,
                dst_addr: bounce,
            });
            self.host.psp.issue(&mut d)
        } else {
            let mut d = psp_driver::DbgDecrypt(SevDataDbg {
                handle: st.sev.handle,
                src_addr: page_pa,
                dst_addr: bounce,
                len: PAGE as u32,
                ..Default::default()
            });
            self.host.psp.issue(&mut d)
        };
        r.map_err(|e| psp_errno(&e))?;
        self.host.pa_read(bounce, page)
    }
}

impl SimSevVcpu {
    fn with<R>(&self, f: impl FnOnce(&mut VcpuSt) -> R) -> Result<R, Errno> {
        let mut st = lock(&self.inner.st);
        let v = st.vcpus.get_mut(self.index).ok_or(EINVAL)?;
        Ok(f(v))
    }

    /// The vCPU id.
    pub fn id(&self) -> u32 {
        self.with(|v| v.id).unwrap_or(u32::MAX)
    }

    /// `vcpu->arch.guest_state_protected`.
    pub fn is_state_protected(&self) -> bool {
        self.with(|v| v.protected).unwrap_or(false)
    }

    /// The generic register-ioctl gate (§9.3): `EINVAL` on a protected-state VM once the
    /// vCPU's state is protected; on a DEFAULT VM with legacy SEV-ES the ioctls "succeed"
    /// on stale values.
    ///
    /// # Errors
    /// `EINVAL` as described.
    pub fn register_access(&self, op: RegisterOp) -> Result<(), Errno> {
        let _ = op;
        let hp = self.inner.has_protected_state();
        self.with(|v| {
            if hp && v.protected {
                Err(EINVAL)
            } else {
                Ok(())
            }
        })?
    }

    fn gated<R>(&self, op: RegisterOp, f: impl FnOnce(&mut VcpuRegs) -> R) -> Result<R, Errno> {
        self.register_access(op)?;
        self.with(|v| {
            if v.protected {
                // Legacy SEV-ES on a DEFAULT VM: the write is lost, reads are stale.
                let mut scratch = v.regs;
                f(&mut scratch)
            } else {
                f(&mut v.regs)
            }
        })
    }

    /// `KVM_GET_REGS`.
    ///
    /// # Errors
    /// `EINVAL` when state-protected.
    pub fn regs(&self) -> Result<kvm_regs, Errno> {
        self.gated(RegisterOp::Regs, |r| r.regs)
    }

    /// `KVM_SET_REGS`.
    ///
    /// # Errors
    /// `EINVAL` when state-protected.
    pub fn set_regs(&self, regs: &kvm_regs) -> Result<(), Errno> {
        self.gated(RegisterOp::Regs, |r| r.regs = *regs)
    }

    /// `KVM_GET_SREGS`.
    ///
    /// # Errors
    /// `EINVAL` when state-protected.
    pub fn sregs(&self) -> Result<kvm_sregs, Errno> {
        self.gated(RegisterOp::Sregs, |r| r.sregs)
    }

    /// `KVM_SET_SREGS`.
    ///
    /// # Errors
    /// `EINVAL` when state-protected.
    pub fn set_sregs(&self, sregs: &kvm_sregs) -> Result<(), Errno> {
        self.gated(RegisterOp::Sregs, |r| r.sregs = *sregs)
    }

    /// `KVM_SET_DEBUGREGS` (DR6, DR7).
    ///
    /// # Errors
    /// `EINVAL` when state-protected.
    pub fn set_debug_regs(&self, dr6: u64, dr7: u64) -> Result<(), Errno> {
        self.gated(RegisterOp::DebugRegs, |r| {
            r.dr6 = dr6;
            r.dr7 = dr7;
        })
    }

    /// `KVM_SET_XCRS` (XCR0).
    ///
    /// # Errors
    /// `EINVAL` when state-protected.
    pub fn set_xcr0(&self, xcr0: u64) -> Result<(), Errno> {
        self.gated(RegisterOp::Xcrs, |r| r.xcr0 = xcr0)
    }

    /// `KVM_SET_GUEST_DEBUG` (enable or disable).
    ///
    /// # Errors
    /// `EINVAL` when state-protected (any VM type).
    pub fn set_guest_debug(&self, enable: bool) -> Result<(), Errno> {
        self.with(|v| {
            if v.protected {
                Err(EINVAL)
            } else {
                v.guest_debug = enable;
                Ok(())
            }
        })?
    }

    /// The whole register state KVM would sync into the VMSA.
    pub fn vcpu_regs(&self) -> Option<VcpuRegs> {
        self.with(|v| v.regs).ok()
    }

    /// The VMSA page as the host sees it (ciphertext once encrypted).
    ///
    /// # Errors
    /// `EFAULT` if the page cannot be read.
    pub fn host_read_vmsa(&self) -> Result<Vec<u8>, Errno> {
        let pa = self.with(|v| v.vmsa_pa)?;
        let mut p = vec![0u8; PAGE_SIZE];
        self.inner.host.pa_read(pa, &mut p)?;
        Ok(p)
    }

    /// `KVM_RUN`'s entry checks (the model runs no guest code yet).
    ///
    /// # Errors
    /// `EINVAL` before INIT2 on an SEV-type VM, with sync-regs bits on a protected-state
    /// VM, or for an SEV-ES/SNP vCPU whose VMSA was never encrypted.
    pub fn run(&self, valid_regs: u64, dirty_regs: u64) -> Result<(), Errno> {
        let st = lock(&self.inner.st);
        if self.inner.has_protected_state() && (valid_regs != 0 || dirty_regs != 0) {
            return Err(EINVAL);
        }
        if st.sev.need_init {
            return Err(EINVAL);
        }
        let v = st.vcpus.get(self.index).ok_or(EINVAL)?;
        if st.sev.es_active && !v.protected {
            return Err(EINVAL);
        }
        Ok(())
    }

    /// `KVM_PRE_FAULT_MEMORY`.
    ///
    /// # Errors
    /// `EOPNOTSUPP` while `pre_fault_allowed` is clear (SNP before SNP_LAUNCH_FINISH).
    pub fn pre_fault_memory(&self, gpa: u64, size: u64) -> Result<(), Errno> {
        let _ = (gpa, size);
        if lock(&self.inner.st).pre_fault_allowed {
            Ok(())
        } else {
            Err(EOPNOTSUPP)
        }
    }
}

impl Drop for VmInner {
    /// `sev_vm_destroy`: SNP contexts are decommissioned under the exclusive deactivate
    /// lock (on failure the ASID leaks), legacy guests DEACTIVATEd under the shared lock
    /// then DECOMMISSIONed; the ASID becomes reclaimable (freed at the next flush).
    fn drop(&mut self) {
        let st = self.st.get_mut().unwrap_or_else(|e| e.into_inner());
        let lease = st.sev.asid.take();
        let host = &self.host;
        if let Some(gctx) = st.sev.snp_context.take() {
            let bound = lease.as_ref().is_some_and(|l| l.binding().is_some());
            let ok = if bound {
                lease.map(|l| host.asids.release(l).is_ok()).unwrap_or(true)
            } else {
                let ok = host.asids.snp_decommission(gctx).is_ok();
                if let Some(l) = lease {
                    let _ = host.asids.release(l);
                }
                ok
            };
            if ok {
                super::snp::free_firmware_page(host, gctx);
            }
            if let Some((req, resp)) = st.sev.guest_req_pages.take() {
                super::snp::free_firmware_page(host, resp);
                host.free_pa(req, PAGE);
            }
        } else if let Some(l) = lease {
            let _ = host.asids.release(l);
        }
        // Guest pages and VMSAs go back to the hypervisor.
        for g in st.gmems.values() {
            for off in &g.prepared {
                let _ = host.fw.rmp_make_shared(g.pa + off, false);
            }
        }
        for v in &st.vcpus {
            let _ = host.fw.rmp_make_shared(v.vmsa_pa, false);
            host.free_pa(v.vmsa_pa, PAGE);
        }
        for (fd, g) in std::mem::take(&mut st.gmems) {
            let _ = host.close(fd);
            host.free_ram(g.pa);
            drop(g.backing);
        }
    }
}
