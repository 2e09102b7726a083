//! The SNP sub-commands: SNP_LAUNCH_START, SNP_LAUNCH_UPDATE (`kvm_gmem_populate` +
//! `sev_gmem_post_populate`) and SNP_LAUNCH_FINISH (VMSAs first).

use kvm_coco_uapi::{
    KVM_SEV_SNP_ID_AUTH_SIZE, KVM_SEV_SNP_ID_BLOCK_SIZE, KVM_SEV_SNP_PAGE_TYPE_CPUID,
    KVM_SEV_SNP_PAGE_TYPE_NORMAL, KVM_SEV_SNP_PAGE_TYPE_SECRETS, KVM_SEV_SNP_PAGE_TYPE_UNMEASURED,
    KVM_SEV_SNP_PAGE_TYPE_ZERO, KVM_X86_SNP_VM, KvmSevCmd, KvmSevSnpLaunchFinish,
    KvmSevSnpLaunchStart, KvmSevSnpLaunchUpdate, SevRetCode,
};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use psp_driver::digest::{SnpPageType, snp_page_contents};
use psp_driver::sim::ContentsHint;
use psp_driver::sim::mem::PAGE_SIZE;
use psp_driver::{
    SevDataSnpAddr, SevDataSnpGuestRequest, SevDataSnpLaunchFinish, SevDataSnpLaunchStart,
    SevDataSnpLaunchUpdate, SevDataSnpPageReclaim, SnpGctxCreate,
};

use super::host::{EFAULT, EINVAL, SVM_SEV_FEAT_SECURE_TSC, SimSevHost, lock};
use super::vm::{EEXIST, EIO, ENOTTY, SimSevVm, VmInner, VmState, arg, put};
use crate::error::Errno;
use crate::sim::ranges;
use crate::sim::workers::Workers;

const PAGE: u64 = PAGE_SIZE as u64;
/// Below this many NORMAL pages an `SNP_LAUNCH_UPDATE` is populated without a helper.
const AHEAD_MIN_PAGES: u64 = 16;
/// The pages one [`Ahead`] covers: a longer request is done window by window, so the
/// bookkeeping stays bounded whatever the range.
const AHEAD_WINDOW_PAGES: u64 = 1024;
/// Pages the helper of [`Ahead`] claims, reads from the VMM and hashes at once.
const HELPER_CHUNK_PAGES: usize = 8;
/// Pages the populating thread claims and hashes at once when its next page is not ready.
const OWN_CHUNK_PAGES: usize = 4;
/// Source pages the populating thread reads from the VMM at once for a page without a hint.
const OWN_READ_PAGES: u64 = 16;

/// The work of one `SNP_LAUNCH_UPDATE` of NORMAL pages, shared between the thread that
/// populates the pages in order (as `kvm_gmem_populate` does, one firmware command each)
/// and a helper that computes their contents digests ahead of it.
///
/// The contents digests are claimed in chunks from the front, once each, by whichever
/// thread asks first: the helper claims chunk after chunk; the populating thread claims one
/// only when the page it must populate next has no digest yet. Each claimed page gets its
/// slot in `hashed` set: a [`ContentsHint`], or `None` when its bytes could not be read
/// (the populating thread then reads the page itself, so a fault lands on that page as in
/// the kernel). Both threads thus hash until the digests run out, and the populating thread
/// does its per-page firmware work in between. A hint can never change a measurement (the
/// firmware uses it only for identical bytes), so the split changes only the time taken.
struct Ahead {
    /// The request's page at index 0 of `hashed`.
    first: u64,
    /// Index of the first page no thread has claimed yet.
    next: AtomicUsize,
    hashed: Vec<OnceLock<Option<ContentsHint>>>,
    /// The helper will set no more slots (it returned, or unwound).
    finished: AtomicBool,
    /// The populating thread is done: the helper stops.
    stop: AtomicBool,
}

impl Ahead {
    /// The shared work for the pages `window` of a request (at most
    /// [`AHEAD_WINDOW_PAGES`]).
    fn new(window: std::ops::Range<u64>) -> Self {
        let n = usize::try_from(window.end - window.start).unwrap_or(0);
        Self {
            first: window.start,
            next: AtomicUsize::new(0),
            hashed: (0..n).map(|_| OnceLock::new()).collect(),
            finished: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        }
    }

    /// Claims the next `n` unclaimed pages (fewer at the end), as indexes into `hashed`.
    fn claim(&self, n: usize) -> Option<std::ops::Range<usize>> {
        let total = self.hashed.len();
        let lo = self
            .next
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |i| {
                (i < total).then(|| (i + n).min(total))
            })
            .ok()?;
        Some(lo..(lo + n).min(total))
    }

    /// Marks the helper finished when dropped (also when it unwinds).
    fn finish_on_drop(&self) -> impl Drop + '_ {
        struct Finished<'a>(&'a AtomicBool);
        impl Drop for Finished<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Release);
            }
        }
        Finished(&self.finished)
    }
}

/// A job for an [`AheadPool`] thread.
type AheadJob = Box<dyn FnOnce() + Send>;

/// The threads that hash ahead of `SNP_LAUNCH_UPDATE` (see [`Ahead`]), one fewer than the
/// machine has CPUs (at least one), started at the first measured update and joined when
/// the host is dropped.
///
/// They are long-lived, not spawned per request: on a two-CPU machine a thread spawned for
/// the request waited over 0.5 ms for a CPU in about a third of the updates measured, a
/// woken pool thread in about a fifth.
#[derive(Default)]
pub(super) struct AheadPool {
    workers: Mutex<Option<Workers<AheadJob>>>,
}

impl AheadPool {
    /// Hands `job` to a pool thread, starting the pool if needed. If no thread can be
    /// started the job is dropped: the populating thread then hashes every page itself.
    fn submit(&self, job: AheadJob) {
        let mut workers = lock(&self.workers);
        if workers.is_none() {
            let n = std::thread::available_parallelism()
                .map_or(1, |n| n.get().saturating_sub(1).max(1));
            *workers = Workers::start("kvm-coco-ahead", n, |job: AheadJob| {
                // A panicking job must not take the thread with it.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            });
        }
        if let Some(w) = workers.as_ref() {
            w.send(job);
        }
    }
}

/// The source pages the populating thread read itself: up to [`OWN_READ_PAGES`] from the
/// first page it needed.
#[derive(Default)]
struct OwnPages {
    first: u64,
    bytes: Vec<u8>,
}

impl OwnPages {
    /// Page `k` of the source pages at `uaddr`, read with the pages after it (up to page
    /// `end`) if it is not held yet. `None` if the read faults: the page is then read alone, so
    /// a fault lands on its own page as in the kernel.
    fn page(&mut self, host: &SimSevHost, uaddr: u64, k: u64, end: u64) -> Option<&[u8]> {
        let held = self.bytes.len() as u64 / PAGE;
        if k < self.first || k >= self.first + held {
            let n = (end - k).min(OWN_READ_PAGES);
            self.bytes.resize((n * PAGE) as usize, 0);
            if host.read_user(uaddr + k * PAGE, &mut self.bytes).is_err() {
                self.bytes.clear();
                return None;
            }
            self.first = k;
        }
        let off = ((k - self.first) * PAGE) as usize;
        self.bytes.get(off..off + PAGE_SIZE)
    }
}

/// What one `SNP_LAUNCH_UPDATE` populates, as `snp_launch_update` decoded it.
#[derive(Clone, Copy)]
struct Populate {
    gpa0: u64,
    gmem_fd: i32,
    /// Offset in the guest_memfd of the page at `gpa0`.
    gmem_base: u64,
    /// The source address (`None` for ZERO pages, which have no source).
    uaddr: Option<u64>,
    sev_fd: i32,
    page_type: u8,
}
/// `SNP_POLICY_MASK_RSVD_MBO` (bit 17): must be set.
pub const SNP_POLICY_MASK_RSVD_MBO: u64 = 1 << 17;
/// `INITIAL_VMSA_GPA`: the RMP GPA KVM gives VMSA pages.
pub const INITIAL_VMSA_GPA: u64 = 0xFFFF_FFFF_F000;
const SNP_PAGE_TYPE_VMSA: u8 = 2;

/// `snp_free_firmware_page`: SNP_PAGE_RECLAIM, then back to the hypervisor.
pub(super) fn free_firmware_page(host: &SimSevHost, pa: u64) {
    let _ = host.psp.issue(&mut SevDataSnpPageReclaim { paddr: pa });
    if host.fw.rmp_make_shared(pa, false).is_ok() {
        host.free_pa(pa, PAGE);
    }
}

/// `snp_page_reclaim` of a guest page after a failed SNP_LAUNCH_UPDATE.
fn reclaim(host: &SimSevHost, pa: u64) -> bool {
    let ok = host
        .psp
        .issue(&mut SevDataSnpPageReclaim { paddr: pa })
        .is_ok();
    ok && host.fw.rmp_make_shared(pa, false).is_ok()
}

/// The helper side of [`Ahead`]: claims chunks of pages from the front and hashes them
/// until none is left or the populating thread is done.
fn hash_ahead(host: &SimSevHost, job: &Populate, ahead: &Ahead) {
    while !ahead.stop.load(Ordering::Acquire) {
        let Some(chunk) = ahead.claim(HELPER_CHUNK_PAGES) else {
            return;
        };
        hash_chunk(host, job, ahead, chunk);
    }
}

/// Reads the source pages `chunk` (claimed by the caller) from the VMM at once and sets
/// each page's slot in turn: its [`ContentsHint`], or `None` for every page of the chunk
/// if the read faults or for the rest once the populating thread is done.
fn hash_chunk(host: &SimSevHost, job: &Populate, ahead: &Ahead, chunk: std::ops::Range<usize>) {
    let slots = ahead.hashed.get(chunk.clone()).unwrap_or_default();
    let give_up = || {
        for slot in slots {
            let _ = slot.set(None);
        }
    };
    let Some(uaddr) = job.uaddr else {
        return give_up();
    };
    let mut buf: Arc<[u8]> = std::iter::repeat_n(0u8, slots.len() * PAGE_SIZE).collect();
    let Some(dst) = Arc::get_mut(&mut buf) else {
        return give_up();
    };
    let first = ahead.first + chunk.start as u64;
    if host.read_user(uaddr + first * PAGE, dst).is_err() {
        return give_up();
    }
    for (i, slot) in slots.iter().enumerate() {
        let offset = i * PAGE_SIZE;
        let page = buf
            .get(offset..offset + PAGE_SIZE)
            .and_then(|b| <&[u8; PAGE_SIZE]>::try_from(b).ok());
        let hint = match page {
            Some(page) if !ahead.stop.load(Ordering::Acquire) => Some(ContentsHint {
                page_type: SnpPageType::Normal,
                digest: snp_page_contents(SnpPageType::Normal, page),
                buf: buf.clone(),
                offset,
            }),
            _ => None,
        };
        let _ = slot.set(hint);
    }
}

impl VmInner {
    /// `sev_snp_guest`: an SNP VM after INIT2.
    pub(super) fn snp_active(&self, st: &VmState) -> bool {
        st.sev.active && self.vm_type == KVM_X86_SNP_VM
    }

    pub(super) fn snp_launch_start(
        &self,
        st: &mut VmState,
        cmd: &mut KvmSevCmd,
        payload: &mut [u8],
    ) -> Result<(), Errno> {
        if !self.snp_active(st) {
            return Err(ENOTTY);
        }
        let p: KvmSevSnpLaunchStart = arg(payload)?;
        if st.sev.snp_context.is_some() || p.flags != 0 {
            return Err(EINVAL);
        }
        if p.policy & !self.host.snp_policy_bits() != 0 || p.policy & SNP_POLICY_MASK_RSVD_MBO == 0
        {
            return Err(EINVAL);
        }
        st.sev.policy = p.policy;
        let fd = cmd.sev_fd as i32;
        // snp_context_create: a firmware-owned page, then SNP_GCTX_CREATE.
        let gctx = self.host.alloc_pa(PAGE);
        if self.host.fw.rmp_make_firmware(gctx).is_err() {
            return Err(ENOTTY);
        }
        let mut create = SnpGctxCreate(SevDataSnpAddr { address: gctx });
        if self.fw(fd, &mut create, &mut cmd.error).is_err() {
            free_firmware_page(&self.host, gctx);
            return Err(ENOTTY);
        }
        st.sev.snp_context = Some(gctx);
        let mut start = SevDataSnpLaunchStart {
            gctx_paddr: gctx,
            policy: p.policy,
            gosvw: p.gosvw,
            ..Default::default()
        };
        if st.sev.vmsa_features & SVM_SEV_FEAT_SECURE_TSC != 0 {
            start.desired_tsc_khz = st.tsc_khz;
        }
        let r = self.fw(fd, &mut start, &mut cmd.error).and_then(|()| {
            st.sev.fd = fd;
            let lease = st.sev.asid.as_mut().ok_or(EINVAL)?;
            self.host.check_sev_fd(fd)?;
            self.host.asids.bind_snp(lease, gctx).map_err(|e| match e {
                psp_driver::AsidError::Firmware(pe) => {
                    cmd.error = pe.status.raw();
                    super::vm::psp_errno(&pe)
                }
                _ => EIO,
            })
        });
        if let Err(e) = r {
            // snp_decommission_context.
            if self.host.asids.snp_decommission(gctx).is_ok() {
                free_firmware_page(&self.host, gctx);
            }
            st.sev.snp_context = None;
            return Err(e);
        }
        Ok(())
    }

    pub(super) fn snp_launch_update(
        &self,
        st: &mut VmState,
        cmd: &mut KvmSevCmd,
        payload: &mut [u8],
    ) -> Result<(), Errno> {
        if !self.snp_active(st) || st.sev.snp_context.is_none() {
            return Err(EINVAL);
        }
        let mut p: KvmSevSnpLaunchUpdate = arg(payload)?;
        let ty = u32::from(p.r#type);
        let type_ok = matches!(
            ty,
            KVM_SEV_SNP_PAGE_TYPE_NORMAL
                | KVM_SEV_SNP_PAGE_TYPE_ZERO
                | KVM_SEV_SNP_PAGE_TYPE_UNMEASURED
                | KVM_SEV_SNP_PAGE_TYPE_SECRETS
                | KVM_SEV_SNP_PAGE_TYPE_CPUID
        );
        if p.len == 0 || !p.len.is_multiple_of(PAGE) || p.flags != 0 || !type_ok {
            return Err(EINVAL);
        }
        let zero = ty == KVM_SEV_SNP_PAGE_TYPE_ZERO;
        if !zero && (p.uaddr == 0 || !p.uaddr.is_multiple_of(PAGE)) {
            return Err(EINVAL);
        }
        let gpa0 = p.gfn_start.checked_mul(PAGE).ok_or(EINVAL)?;
        let (slot_end, gmem_fd, gmem_base) = {
            let s = st.slot_at(gpa0).ok_or(EINVAL)?;
            let (fd, off) = s.gmem.ok_or(EINVAL)?;
            (s.gpa + s.size, fd, off + (gpa0 - s.gpa))
        };
        let npages = (p.len / PAGE).min((slot_end - gpa0) / PAGE);
        let job = Populate {
            gpa0,
            gmem_fd,
            gmem_base,
            uaddr: (!zero).then_some(p.uaddr),
            sev_fd: cmd.sev_fd as i32,
            page_type: p.r#type,
        };
        // NORMAL pages are measured: in each window of the range, a helper thread computes
        // their contents digests ahead of this thread, which populates the pages in order and
        // hashes a chunk itself whenever its next page has no digest yet (see `Ahead`).
        let measured = u32::from(p.r#type) == KVM_SEV_SNP_PAGE_TYPE_NORMAL;
        let mut fw_error = 0u32;
        let mut count = 0u64;
        let mut ret: Result<(), Errno> = Ok(());
        let mut own = OwnPages::default();
        while count < npages && ret.is_ok() {
            let window = count..count + (npages - count).min(AHEAD_WINDOW_PAGES);
            let ahead = (measured && window.end - window.start >= AHEAD_MIN_PAGES)
                .then(|| Arc::new(Ahead::new(window.clone())));
            if let Some(a) = &ahead {
                // The helper only reads the VMM's memory and hashes: it takes no lock the
                // firmware holds, so it cannot deadlock with this thread or another launch.
                // Without a helper thread, this thread hashes every chunk itself.
                let (host, a) = (self.host.clone(), a.clone());
                self.host.ahead_pool.submit(Box::new(move || {
                    let _finished = a.finish_on_drop();
                    hash_ahead(&host, &job, &a);
                }));
            }
            let (done, r) = self.populate_pages(
                st,
                &job,
                window.clone(),
                ahead.as_deref(),
                &mut own,
                &mut fw_error,
            );
            if let Some(a) = &ahead {
                a.stop.store(true, Ordering::Release);
            }
            count += done;
            ret = r;
        }
        if ret.is_err() && count == 0 {
            cmd.error = fw_error;
            return Err(EIO);
        }
        p.gfn_start += count;
        p.len -= count * PAGE;
        if !zero {
            p.uaddr += count * PAGE;
        }
        put(payload, &p)
    }

    /// The populating side of [`Ahead`]: the hint for page `k` of the request, or `None` if
    /// the page has none (its bytes are then read and hashed the usual way). While page `k`
    /// waits for the helper, this thread hashes a chunk of its own.
    fn ahead_hint(&self, job: &Populate, ahead: &Ahead, k: u64) -> Option<ContentsHint> {
        let i = usize::try_from(k.checked_sub(ahead.first)?).ok()?;
        let slot = ahead.hashed.get(i)?;
        let mut spins = 0u32;
        loop {
            if let Some(hint) = slot.get() {
                return hint.clone();
            }
            if let Some(chunk) = ahead.claim(OWN_CHUNK_PAGES) {
                hash_chunk(&self.host, job, ahead, chunk);
                continue;
            }
            // Every page is claimed and page `k` is the helper's: it is being hashed.
            if ahead.finished.load(Ordering::Acquire) {
                return slot.get().cloned().flatten();
            }
            spins += 1;
            if spins < 256 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }

    /// Populates the pages `window` of a request in order, one `kvm_gmem_populate` step
    /// each. A page hashed ahead (see [`Ahead`]) goes to the firmware with its
    /// [`ContentsHint`]; the others (no `ahead`, or a source that could not be read ahead)
    /// are read here (`own`), a few pages at a time, and hashed by the firmware itself. Returns how many pages were done and how
    /// the loop ended.
    fn populate_pages(
        &self,
        st: &mut VmState,
        job: &Populate,
        window: std::ops::Range<u64>,
        ahead: Option<&Ahead>,
        own: &mut OwnPages,
        fw_error: &mut u32,
    ) -> (u64, Result<(), Errno>) {
        for k in window.clone() {
            let hint = ahead.and_then(|a| self.ahead_hint(job, a, k));
            let src = job.uaddr.map(|uaddr| {
                let bytes = match &hint {
                    Some(h) => h.buf.get(h.offset..h.offset + PAGE_SIZE),
                    None => own.page(&self.host, uaddr, k, window.end),
                };
                (uaddr + k * PAGE, bytes)
            });
            let r = self.populate_one(
                st,
                job.gmem_fd,
                job.gmem_base + k * PAGE,
                job.gpa0 + k * PAGE,
                src,
                hint.clone(),
                job.sev_fd,
                job.page_type,
                fw_error,
            );
            if let Err(e) = r {
                return (k - window.start, Err(e));
            }
        }
        (window.end - window.start, Ok(()))
    }

    /// One page of `kvm_gmem_populate` + `sev_gmem_post_populate`.
    #[allow(clippy::too_many_arguments)]
    fn populate_one(
        &self,
        st: &mut VmState,
        gmem_fd: i32,
        goff: u64,
        gpa: u64,
        src: Option<(u64, Option<&[u8]>)>,
        hint: Option<ContentsHint>,
        fd: i32,
        page_type: u8,
        fw_error: &mut u32,
    ) -> Result<(), Errno> {
        let g = st.gmems.get(&gmem_fd).ok_or(EINVAL)?;
        if g.prepared.contains(&goff) {
            return Err(EEXIST);
        }
        if !ranges::contains(&st.private, gpa) {
            return Err(EINVAL);
        }
        let pa = g.pa + goff;
        let e = self.host.fw.rmp_entry(pa);
        if e.assigned {
            return Err(EEXIST);
        }
        match src {
            Some((_, Some(bytes))) => self.host.pa_write(pa, bytes)?,
            Some((uaddr, None)) => {
                let mut page = vec![0u8; PAGE_SIZE];
                self.host.read_user(uaddr, &mut page)?;
                self.host.pa_write(pa, &page)?;
            }
            None => {}
        }
        let src = src.map(|(uaddr, _)| uaddr);
        let asid = st.sev.asid_num();
        self.host
            .fw
            .rmp_make_private(pa, gpa, asid, false)
            .map_err(|_| EINVAL)?;
        let mut d = SevDataSnpLaunchUpdate {
            gctx_paddr: st.sev.snp_context.unwrap_or(0),
            address: pa,
            ..Default::default()
        };
        d.set_page_type(page_type);
        let hinted = hint.is_some();
        if let Some(hint) = hint {
            self.host.fw.add_contents_hints([(pa, hint)]);
        }
        if let Err(e) = self.fw(fd, &mut d, fw_error) {
            if hinted {
                // The firmware takes the hint whatever its outcome; a command refused
                // before it reached the firmware must not leave the hint behind.
                self.host.fw.remove_contents_hint(pa);
            }
            if reclaim(&self.host, pa)
                && u32::from(page_type) == KVM_SEV_SNP_PAGE_TYPE_CPUID
                && *fw_error == SevRetCode::InvalidParam.raw()
                && let Some(src) = src
            {
                let mut page = vec![0u8; PAGE_SIZE];
                if self.host.pa_read(pa, &mut page).is_ok() {
                    let _ = self.host.write_user(src, &page);
                }
            }
            if self.host.fw.rmp_entry(pa).assigned {
                let _ = reclaim(&self.host, pa);
            }
            return Err(e);
        }
        if let Some(g) = st.gmems.get_mut(&gmem_fd) {
            g.prepared.insert(goff);
        }
        Ok(())
    }

    /// `snp_launch_update_vmsa`: every vCPU's VMSA, in creation order.
    fn snp_launch_update_vmsa(&self, st: &mut VmState, cmd: &mut KvmSevCmd) -> Result<(), Errno> {
        let gctx = st.sev.snp_context.ok_or(EINVAL)?;
        let fd = cmd.sev_fd as i32;
        for i in 0..st.vcpus.len() {
            let pa = self.sync_vmsa(st, i)?;
            self.host
                .fw
                .rmp_make_private(pa, INITIAL_VMSA_GPA, st.sev.asid_num(), false)
                .map_err(|_| EINVAL)?;
            let mut d = SevDataSnpLaunchUpdate {
                gctx_paddr: gctx,
                address: pa,
                ..Default::default()
            };
            d.set_page_type(SNP_PAGE_TYPE_VMSA);
            if let Err(e) = self.fw(fd, &mut d, &mut cmd.error) {
                let _ = reclaim(&self.host, pa);
                return Err(e);
            }
            if let Some(v) = st.vcpus.get_mut(i) {
                v.protected = true;
            }
        }
        Ok(())
    }

    pub(super) fn snp_launch_finish(
        &self,
        st: &mut VmState,
        cmd: &mut KvmSevCmd,
        payload: &mut [u8],
    ) -> Result<(), Errno> {
        if !self.snp_active(st) {
            return Err(ENOTTY);
        }
        let gctx = st.sev.snp_context.ok_or(EINVAL)?;
        let p: KvmSevSnpLaunchFinish = arg(payload)?;
        if p.flags != 0 {
            return Err(EINVAL);
        }
        self.snp_launch_update_vmsa(st, cmd)?;
        let mut d = SevDataSnpLaunchFinish {
            gctx_paddr: gctx,
            host_data: p.host_data,
            ..Default::default()
        };
        if p.id_block_en != 0 {
            d.id_block_paddr = self.copy_user_blob(p.id_block_uaddr, KVM_SEV_SNP_ID_BLOCK_SIZE)?;
            d.set_id_block_en(true);
            d.id_auth_paddr = self.copy_user_blob(p.id_auth_uaddr, KVM_SEV_SNP_ID_AUTH_SIZE)?;
            if p.auth_key_en != 0 {
                d.set_auth_key_en(true);
            }
        }
        d.set_vcek_disabled(p.vcek_disabled != 0);
        self.fw(st.sev.fd, &mut d, &mut cmd.error)?;
        st.pre_fault_allowed = true;
        Ok(())
    }
}

/// `SNP_GUEST_ERR(vmm_err, fw_err)` (`include/uapi/linux/sev-guest.h`): the value KVM
/// stores in the GHCB's `SW_EXITINFO2` when it completes a guest request.
pub const fn snp_guest_err(vmm_err: u32, fw_err: u32) -> u64 {
    ((vmm_err as u64) << 32) | fw_err as u64
}

/// The user address behind `[gpa, gpa+len)` in one memslot (`gfn_to_hva`): what
/// `kvm_read_guest` / `kvm_write_guest` access, the shared view of the page.
fn slot_uaddr(st: &VmState, gpa: u64, len: u64) -> Result<u64, Errno> {
    let end = gpa.checked_add(len).ok_or(EFAULT)?;
    st.slot_at(gpa)
        .filter(|s| end <= s.gpa + s.size)
        .map(|s| s.uaddr + (gpa - s.gpa))
        .ok_or(EFAULT)
}

impl SimSevVm {
    /// `snp_handle_guest_req`: the guest's SNP_GUEST_REQUEST / SNP_EXTENDED_GUEST_REQUEST
    /// as KVM completes it once any certificate request is answered.
    ///
    /// KVM copies the 4 KiB request page at `req_gpa` (shared guest memory, through the
    /// memslot) into its own request page, issues SNP_GUEST_REQUEST on the VM's `/dev/sev`
    /// fd with its firmware-owned response page, copies that page to `resp_gpa` whether
    /// the firmware succeeded or not, and resumes the guest with
    /// `SW_EXITINFO2 = SNP_GUEST_ERR(0, fw_err)`: the firmware status is the guest's to
    /// see, not the VMM's ([`snp_guest_err`]). The kernel allocates its two pages at
    /// SNP_LAUNCH_START; the model allocates them at the first request.
    ///
    /// # Errors
    /// What `KVM_RUN` returns instead of resuming the guest: `EINVAL` if the VM is not
    /// an SNP guest, `EIO` if either guest page is outside the memslots, and the errno
    /// of a firmware command that failed without a firmware status.
    pub fn snp_guest_request(&self, req_gpa: u64, resp_gpa: u64) -> Result<u64, Errno> {
        let mut guard = lock(&self.inner.st);
        let st = &mut *guard;
        let host = &self.inner.host;
        if !self.inner.snp_active(st) {
            return Err(EINVAL);
        }
        let gctx = st.sev.snp_context.ok_or(EINVAL)?;
        let (req_pa, resp_pa) = match st.sev.guest_req_pages {
            Some(p) => p,
            None => {
                // snp_guest_req_init: a plain page and a firmware-owned page.
                let req = host.alloc_pa(PAGE);
                let resp = host.alloc_pa(PAGE);
                host.fw.rmp_make_firmware(resp).map_err(|_| EIO)?;
                st.sev.guest_req_pages = Some((req, resp));
                (req, resp)
            }
        };
        let mut page = vec![0u8; PAGE_SIZE];
        let uaddr = slot_uaddr(st, req_gpa, PAGE).map_err(|_| EIO)?;
        host.read_user(uaddr, &mut page).map_err(|_| EIO)?;
        host.pa_write(req_pa, &page)?;
        let mut d = SevDataSnpGuestRequest {
            gctx_paddr: gctx,
            req_paddr: req_pa,
            res_paddr: resp_pa,
        };
        let mut fw_err = 0u32;
        if let Err(e) = self.inner.fw(st.sev.fd, &mut d, &mut fw_err)
            && fw_err == 0
        {
            return Err(e);
        }
        host.pa_read(resp_pa, &mut page)?;
        let uaddr = slot_uaddr(st, resp_gpa, PAGE).map_err(|_| EIO)?;
        host.write_user(uaddr, &page).map_err(|_| EIO)?;
        Ok(snp_guest_err(0, fw_err))
    }

    /// The guest's own encrypted (C-bit) read of its memory at `gpa` (within one page): the
    /// plaintext the memory controller returns to the owning guest, which needs no DEBUG
    /// policy, unlike [`guest_read`](Self::guest_read). For an SNP guest that is its
    /// private pages (any other page reads as the host sees it); for SEV and SEV-ES guests,
    /// every page, decrypted with the guest's key (so a page the host wrote in plaintext
    /// reads as garbage, as on hardware).
    ///
    /// A private SNP page the guest has not validated yet reads as the host sees it (the
    /// hardware would raise #VC in the guest; the model has no exceptions).
    ///
    /// # Errors
    /// `EFAULT` if `gpa` is in no memslot or the read crosses a page; `EIO` if the page
    /// belongs to another guest or the guest has no ASID.
    pub fn guest_read_own(&self, gpa: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let off = gpa & (PAGE - 1);
        if off + buf.len() as u64 > PAGE {
            return Err(EFAULT);
        }
        let st = lock(&self.inner.st);
        let pa = Self::translate(&st, &self.inner.host, gpa)?;
        match st.sev.snp_context {
            Some(gctx) if ranges::contains(&st.private, gpa & !(PAGE - 1)) => {
                match self.inner.host.fw.guest_read_private(gctx, pa, buf) {
                    Ok(()) => Ok(()),
                    // Not (yet) a validated page: hardware would raise #VC in the guest;
                    // the model, which has no exceptions, returns the page as it is.
                    Err(SevRetCode::InvalidPageState) => self.inner.host.pa_read(pa, buf),
                    Err(_) => Err(EIO),
                }
            }
            Some(_) => self.inner.host.pa_read(pa, buf),
            // SEV and SEV-ES: a C-bit access decrypts with the guest's key.
            None if st.sev.active => self
                .inner
                .host
                .fw
                .guest_read_private_sev(st.sev.handle, pa, buf)
                .map_err(|_| EIO),
            None => self.inner.host.pa_read(pa, buf),
        }
    }
}
