//! The simulated AMD host: the software PSP firmware behind a serialized [`Psp`], the ASID
//! manager, the VMM process's memory and its file-descriptor table.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use psp_driver::sim::mem::{MemBacking, PAGE_SIZE, PhysMem, VecBacking};
use psp_driver::sim::{SimConfig, SimFirmware};
use psp_driver::{AsidConfig, AsidManager, FnWriteBack, Psp};

use crate::error::Errno;
use crate::sim::user::UserMemory;

pub(super) const EFAULT: Errno = Errno::from_raw(libc::EFAULT);
pub(super) const EBADF: Errno = Errno::from_raw(libc::EBADF);
pub(super) const ENOMEM: Errno = Errno::from_raw(libc::ENOMEM);
pub(super) const EINVAL: Errno = Errno::from_raw(libc::EINVAL);

/// `SVM_SEV_FEAT_SNP_ACTIVE`: set by KVM itself in every SNP VMSA.
pub const SVM_SEV_FEAT_SNP_ACTIVE: u64 = 1 << 0;
/// `SVM_SEV_FEAT_DEBUG_SWAP`.
pub const SVM_SEV_FEAT_DEBUG_SWAP: u64 = 1 << 5;
/// `SVM_SEV_FEAT_SECURE_TSC` (SNP VMs only).
pub const SVM_SEV_FEAT_SECURE_TSC: u64 = 1 << 9;
/// `SNP_POLICY_MASK_BASE` (bits 0–20), what `sev_get_snp_policy_bits()` starts from.
pub const SNP_POLICY_MASK_BASE: u64 = 0x1F_FFFF;
/// `KVM_SNP_POLICY_MASK_VALID` without MIGRATE_MA (bit 18), bits 0–25.
pub const KVM_SNP_POLICY_MASK_VALID: u64 = 0x3FF_FFFF & !(1 << 18);

/// First host-physical address handed out for simulated RAM (above any guest address the
/// tests use, so host PAs and GPAs are never confused).
const PA_BASE: u64 = 0x40_0000_0000;
/// First user address of the simulated VMM process's mappings.
const UADDR_BASE: u64 = 0x7f00_0000_0000;
/// Where a real process's address space is registered in the physical memory
/// ([`SimSevHost::over_process`]): user address `u` is physical address `PROCESS_PA_BASE + u`.
const PROCESS_PA_BASE: u64 = 1 << 56;
/// The size of an x86-64 user address space (47 bits).
pub const USER_ADDRESS_SPACE: u64 = 1 << 47;

/// What the simulated kernel (kvm_amd + ccp) offers.
#[derive(Clone, Debug)]
pub struct SimSevConfig {
    /// The firmware: versions, ASID space (`max_asid`, `min_sev_asid`), seed.
    pub firmware: SimConfig,
    /// `kvm_amd.sev`: the SEV ioctls exist (else every `KVM_MEMORY_ENCRYPT_OP` is `ENOTTY`).
    pub sev: bool,
    /// `kvm_amd.sev_es`.
    pub sev_es: bool,
    /// `kvm_amd.sev_snp`: SNP is initialized at the first SEV init and SNP VMs exist.
    pub snp: bool,
    /// `sev_supported_vmsa_features` (the `KVM_X86_SEV_VMSA_FEATURES` attribute).
    pub supported_vmsa_features: u64,
    /// `kvm_amd.ciphertext_hiding_asids` (0: off).
    pub ciphertext_hiding_asids: u32,
}

impl Default for SimSevConfig {
    /// SEV, SEV-ES and SNP enabled; DEBUG_SWAP and SECURE_TSC offered; the firmware's
    /// defaults (API 1.55 build 25, ASIDs 1..=9 for SEV-ES/SNP, 10..=16 for SEV).
    fn default() -> Self {
        Self {
            firmware: SimConfig::default(),
            sev: true,
            sev_es: true,
            snp: true,
            supported_vmsa_features: SVM_SEV_FEAT_DEBUG_SWAP | SVM_SEV_FEAT_SECURE_TSC,
            ciphertext_hiding_asids: 0,
        }
    }
}

/// What an open file descriptor of the simulated process refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FdKind {
    /// Anything that is not `/dev/sev` (stdin/stdout/stderr, a regular file).
    Other,
    /// An open `/dev/sev`.
    DevSev,
    /// A guest_memfd of a VM (identified internally).
    GuestMemfd(u64),
}

#[derive(Debug)]
struct Mapping {
    len: u64,
    pa: u64,
}

/// The simulated host; see the [module docs](super). Shared by its VMs through an `Arc`.
pub struct SimSevHost {
    pub(super) cfg: SimSevConfig,
    pub(super) fw: Arc<SimFirmware>,
    pub(super) psp: Arc<Psp<Arc<SimFirmware>>>,
    pub(super) asids: AsidManager<Arc<SimFirmware>>,
    mem: Arc<PhysMem>,
    maps: Mutex<BTreeMap<u64, Mapping>>,
    fds: Mutex<BTreeMap<i32, FdKind>>,
    next_pa: AtomicU64,
    next_uaddr: AtomicU64,
    next_id: AtomicU64,
    pub(super) platform_up: Mutex<bool>,
    /// Where the VMM process's memory lives: simulated mappings ([`mmap`](SimSevHost::mmap)),
    /// or a real process's address space registered whole in the physical memory at this
    /// base (user address `u` is physical address `base + u`).
    process_base: Option<u64>,
    /// The threads that hash ahead of SNP_LAUNCH_UPDATE.
    pub(super) ahead_pool: super::snp::AheadPool,
}

impl fmt::Debug for SimSevHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimSevHost")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SimSevHost {
    /// A host in the power-on state: firmware UNINIT (KVM initializes the platform at the
    /// first `KVM_SEV_INIT*`), all ASIDs clean, fds 0–2 open on non-SEV files.
    ///
    /// # Errors
    /// `EINVAL` if the firmware's ASID space cannot describe a host (`max_asid` 0).
    pub fn new(cfg: SimSevConfig) -> Result<Arc<Self>, Errno> {
        Self::build(cfg, None)
    }

    /// A host whose VMM is a real process: `process` is that process's whole user address
    /// space ([`USER_ADDRESS_SPACE`] bytes, user address 0 at offset 0), so the firmware
    /// encrypts, measures and writes back the process's own pages in place, as the real
    /// kernel's pinned pages are. [`mmap`](Self::mmap) is not available on such a host.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn over_process(
        cfg: SimSevConfig,
        process: Arc<dyn MemBacking>,
    ) -> Result<Arc<Self>, Errno> {
        Self::build(cfg, Some(process))
    }

    fn build(cfg: SimSevConfig, process: Option<Arc<dyn MemBacking>>) -> Result<Arc<Self>, Errno> {
        let mem = Arc::new(PhysMem::new());
        let process_base = match process {
            Some(p) => {
                mem.register_region(PROCESS_PA_BASE, p)
                    .map_err(|_| EINVAL)?;
                Some(PROCESS_PA_BASE)
            }
            None => None,
        };
        let fw = Arc::new(SimFirmware::new(cfg.firmware.clone(), mem.clone()));
        let psp = Arc::new(Psp::new(fw.clone()));
        let fw_wb = fw.clone();
        let asid_cfg = AsidConfig {
            min_sev_asid: cfg.firmware.min_sev_asid,
            max_sev_asid: cfg.firmware.max_asid,
            ciphertext_hiding_asids: cfg.ciphertext_hiding_asids,
            snp_enabled: cfg.snp,
        };
        let asids = AsidManager::new(psp.clone(), asid_cfg, FnWriteBack(move || fw_wb.wbinvd()))
            .map_err(|_| EINVAL)?;
        let fds = (0..3).map(|fd| (fd, FdKind::Other)).collect();
        Ok(Arc::new(Self {
            cfg,
            fw,
            psp,
            asids,
            mem,
            maps: Mutex::new(BTreeMap::new()),
            fds: Mutex::new(fds),
            next_pa: AtomicU64::new(PA_BASE),
            next_uaddr: AtomicU64::new(UADDR_BASE),
            next_id: AtomicU64::new(1),
            platform_up: Mutex::new(false),
            process_base,
            ahead_pool: super::snp::AheadPool::default(),
        }))
    }

    /// The software firmware (for inspection: ASID states, RMP, launch digests, reports).
    pub fn firmware(&self) -> &Arc<SimFirmware> {
        &self.fw
    }

    /// The serialized PSP the model issues every firmware command through.
    pub fn psp(&self) -> &Arc<Psp<Arc<SimFirmware>>> {
        &self.psp
    }

    /// The ASID manager (KVM's bitmaps and the DEACTIVATE / DF_FLUSH protocol).
    pub fn asids(&self) -> &AsidManager<Arc<SimFirmware>> {
        &self.asids
    }

    /// The host's configuration.
    pub fn config(&self) -> &SimSevConfig {
        &self.cfg
    }

    /// The `KVM_X86_SNP_POLICY_BITS` attribute: `sev_get_snp_policy_bits() &
    /// KVM_SNP_POLICY_MASK_VALID` (0 without SNP). The firmware model reports no
    /// SNP_FEATURE_INFO, so only the base mask is offered.
    pub fn snp_policy_bits(&self) -> u64 {
        if self.cfg.snp {
            SNP_POLICY_MASK_BASE & KVM_SNP_POLICY_MASK_VALID
        } else {
            0
        }
    }

    pub(super) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Allocates `len` bytes (page-rounded) of host-physical address space, with a guard page.
    pub(super) fn alloc_pa(&self, len: u64) -> u64 {
        let len = len.div_ceil(PAGE_SIZE as u64).max(1) * PAGE_SIZE as u64;
        self.next_pa
            .fetch_add(len + PAGE_SIZE as u64, Ordering::Relaxed)
    }

    /// Registers zero-copy RAM of `len` bytes at a fresh host-physical address.
    pub(super) fn alloc_ram(&self, len: u64) -> Result<(u64, Arc<VecBacking>), Errno> {
        let size = usize::try_from(len).map_err(|_| ENOMEM)?;
        let backing = Arc::new(VecBacking::try_new(size).map_err(|_| ENOMEM)?);
        let pa = self.alloc_pa(len);
        self.mem
            .register_region(pa, backing.clone() as Arc<dyn MemBacking>)
            .map_err(|_| ENOMEM)?;
        Ok((pa, backing))
    }

    /// Frees kernel memory from [`alloc_pa`](Self::alloc_pa) (its contents: the
    /// address space itself is never reused).
    pub(super) fn free_pa(&self, pa: u64, len: u64) {
        self.mem.discard(pa, len.max(1));
    }

    pub(super) fn free_ram(&self, pa: u64) {
        let _ = self.mem.unregister_region(pa);
    }

    /// Reads host-physical memory (kernel `memcpy` from a direct-map address).
    pub(super) fn pa_read(&self, pa: u64, buf: &mut [u8]) -> Result<(), Errno> {
        self.mem.read(pa, buf).map_err(|_| EFAULT)
    }

    /// Writes host-physical memory.
    pub(super) fn pa_write(&self, pa: u64, data: &[u8]) -> Result<(), Errno> {
        self.mem.write(pa, data).map_err(|_| EFAULT)
    }

    // ---- The VMM process: memory -----------------------------------------------------

    /// `mmap(MAP_ANONYMOUS)` of `len` bytes (rounded up to pages) in the simulated VMM
    /// process: zero-filled memory that the simulated kernel can pin, whose physical pages
    /// the firmware reads and writes in place. Returns the user address.
    ///
    /// # Errors
    /// `EINVAL` for `len == 0`, `ENOMEM` if the address space is exhausted.
    pub fn mmap(&self, len: u64) -> Result<u64, Errno> {
        if len == 0 || self.process_base.is_some() {
            return Err(EINVAL);
        }
        let len = len.div_ceil(PAGE_SIZE as u64) * PAGE_SIZE as u64;
        let (pa, _backing) = self.alloc_ram(len)?;
        let uaddr = self
            .next_uaddr
            .fetch_add(len + PAGE_SIZE as u64, Ordering::Relaxed);
        lock(&self.maps).insert(uaddr, Mapping { len, pa });
        Ok(uaddr)
    }

    /// `munmap` of a whole mapping made by [`mmap`](Self::mmap).
    ///
    /// # Errors
    /// `EINVAL` if `uaddr` does not start a mapping.
    pub fn munmap(&self, uaddr: u64) -> Result<(), Errno> {
        let m = lock(&self.maps).remove(&uaddr).ok_or(EINVAL)?;
        self.free_ram(m.pa);
        Ok(())
    }

    /// Maps a copy of `bytes` (a convenience: [`mmap`](Self::mmap) + write). Returns the
    /// user address.
    ///
    /// # Errors
    /// As [`mmap`](Self::mmap).
    pub fn mmap_bytes(&self, bytes: &[u8]) -> Result<u64, Errno> {
        let uaddr = self.mmap(bytes.len().max(1) as u64)?;
        self.write_user(uaddr, bytes)?;
        Ok(uaddr)
    }

    /// Translates the user range `[uaddr, uaddr + len)` into physically contiguous runs
    /// `(pa, len)`, as `pin_user_pages` + `get_num_contig_pages` see it.
    ///
    /// # Errors
    /// `EINVAL` for an empty or wrapping range; `ENOMEM` if a page is not mapped (the
    /// kernel's pin failure).
    pub(super) fn pin(&self, uaddr: u64, len: u64) -> Result<Vec<(u64, u64)>, Errno> {
        let end = uaddr.checked_add(len).ok_or(EINVAL)?;
        if len == 0 {
            return Err(EINVAL);
        }
        if let Some(base) = self.process_base {
            // A real process: the range is checked when the firmware touches it (EFAULT
            // from the process's page tables, as for an unmapped page).
            if end > USER_ADDRESS_SPACE {
                return Err(ENOMEM);
            }
            return Ok(vec![(base + uaddr, len)]);
        }
        let maps = lock(&self.maps);
        let mut runs: Vec<(u64, u64)> = Vec::new();
        let mut a = uaddr;
        while a < end {
            let (base, m) = maps.range(..=a).next_back().ok_or(ENOMEM)?;
            let off = a - base;
            if off >= m.len {
                return Err(ENOMEM);
            }
            let n = (m.len - off).min(end - a);
            let pa = m.pa + off;
            match runs.last_mut() {
                Some(last) if last.0 + last.1 == pa => last.1 += n,
                _ => runs.push((pa, n)),
            }
            a += n;
        }
        Ok(runs)
    }

    /// Pins the user page containing `uaddr` (`sev_pin_memory(uaddr & PAGE_MASK,
    /// PAGE_SIZE)`) and returns the physical address of `uaddr` itself.
    ///
    /// # Errors
    /// As [`pin`](Self::pin).
    pub(super) fn pin_page(&self, uaddr: u64) -> Result<u64, Errno> {
        let page_mask = PAGE_SIZE as u64 - 1;
        let runs = self.pin(uaddr & !page_mask, PAGE_SIZE as u64)?;
        let (pa, _) = runs.first().ok_or(ENOMEM)?;
        Ok(pa + (uaddr & page_mask))
    }

    /// Writes `data` at user address `uaddr` (what the VMM does with a plain store).
    ///
    /// # Errors
    /// `EFAULT` if any byte is unmapped.
    pub fn write_user(&self, uaddr: u64, data: &[u8]) -> Result<(), Errno> {
        if data.is_empty() {
            return Ok(());
        }
        let runs = self.pin(uaddr, data.len() as u64).map_err(|_| EFAULT)?;
        let mut off = 0usize;
        for (pa, n) in runs {
            let n = n as usize;
            self.pa_write(pa, data.get(off..off + n).ok_or(EFAULT)?)?;
            off += n;
        }
        Ok(())
    }

    /// Reads user memory at `uaddr` (what the VMM sees with a plain load).
    ///
    /// # Errors
    /// `EFAULT` if any byte is unmapped.
    pub fn read_user(&self, uaddr: u64, buf: &mut [u8]) -> Result<(), Errno> {
        if buf.is_empty() {
            return Ok(());
        }
        let runs = self.pin(uaddr, buf.len() as u64).map_err(|_| EFAULT)?;
        let mut off = 0usize;
        for (pa, n) in runs {
            let n = n as usize;
            self.pa_read(pa, buf.get_mut(off..off + n).ok_or(EFAULT)?)?;
            off += n;
        }
        Ok(())
    }

    /// Reads `len` bytes of user memory into a new vector.
    ///
    /// # Errors
    /// As [`read_user`](Self::read_user).
    pub fn read_user_vec(&self, uaddr: u64, len: usize) -> Result<Vec<u8>, Errno> {
        let mut v = vec![0u8; len];
        self.read_user(uaddr, &mut v)?;
        Ok(v)
    }

    // ---- The VMM process: file descriptors -------------------------------------------

    fn install(&self, kind: FdKind) -> i32 {
        let mut fds = lock(&self.fds);
        let fd = (0..).find(|fd| !fds.contains_key(fd)).unwrap_or(i32::MAX);
        fds.insert(fd, kind);
        fd
    }

    /// `open("/dev/sev", O_RDWR)`: the lowest free fd number.
    pub fn open_dev_sev(&self) -> i32 {
        self.install(FdKind::DevSev)
    }

    /// Opens some file that is not `/dev/sev` (for `EBADF` paths).
    pub fn open_other(&self) -> i32 {
        self.install(FdKind::Other)
    }

    pub(super) fn open_guest_memfd(&self, id: u64) -> i32 {
        self.install(FdKind::GuestMemfd(id))
    }

    /// `close(fd)`.
    ///
    /// # Errors
    /// `EBADF` if `fd` is not open.
    pub fn close(&self, fd: i32) -> Result<(), Errno> {
        lock(&self.fds).remove(&fd).map(|_| ()).ok_or(EBADF)
    }

    /// `dup2(old, new)`: `new` then refers to what `old` refers to.
    ///
    /// # Errors
    /// `EBADF` if `old` is not open or `new` is negative.
    pub fn dup2(&self, old: i32, new: i32) -> Result<(), Errno> {
        let mut fds = lock(&self.fds);
        let kind = *fds.get(&old).ok_or(EBADF)?;
        if new < 0 {
            return Err(EBADF);
        }
        fds.insert(new, kind);
        Ok(())
    }

    /// What `fd` refers to, if it is open.
    pub fn fd_kind(&self, fd: i32) -> Option<FdKind> {
        lock(&self.fds).get(&fd).copied()
    }

    /// `sev_issue_cmd_external_user`'s file check: `fd` must be an open `/dev/sev`.
    pub(super) fn check_sev_fd(&self, fd: i32) -> Result<(), Errno> {
        match self.fd_kind(fd) {
            Some(FdKind::DevSev) => Ok(()),
            _ => Err(EBADF),
        }
    }
}

impl UserMemory for SimSevHost {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), Errno> {
        self.read_user(addr, buf)
    }

    fn write(&self, addr: u64, data: &[u8]) -> Result<(), Errno> {
        self.write_user(addr, data)
    }
}
