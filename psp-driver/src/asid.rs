//! ASIDs: allocation, ACTIVATE / DEACTIVATE and the DF_FLUSH protocol.
//!
//! This mirrors KVM's `arch/x86/kvm/svm/sev.c` (Linux 7.3), moved next to the firmware
//! it protects:
//!
//! * **Allocation** (`sev_asid_new`): SEV guests get ASIDs in `[min_sev_asid, max_sev_asid]`,
//!   SEV-ES and SNP guests in `[1, min_sev_asid - 1]` (split at `ciphertext_hiding_asids`
//!   when ciphertext hiding is on). ASIDs are freed **lazily**: releasing one only marks it
//!   reclaimable. When a range is full, one flush (cache write-back on all CPUs, then
//!   DF_FLUSH or SNP_DF_FLUSH) makes every reclaimable ASID free again and the search is
//!   retried once; with nothing reclaimable the result is [`AsidError::Busy`] (`-EBUSY`).
//! * **Bind** (ACTIVATE / SNP_ACTIVATE) takes no lock besides the mailbox.
//! * **Unbind**: DEACTIVATE under the *shared* side of the deactivate lock, then
//!   DECOMMISSION outside it; SNP_DECOMMISSION (which deactivates implicitly) under the
//!   *exclusive* side.
//! * **Flush**: write-back hook + DF_FLUSH under the *exclusive* side, because a DEACTIVATE
//!   between the write-back and DF_FLUSH clears the firmware's WBINVD indicator and makes
//!   DF_FLUSH fail with WBINVD_REQUIRED. Unbinds run in parallel with each other; a flush
//!   excludes them.
//!
//! On top of the kernel's rules, the manager remembers which ASIDs were deactivated since
//! the last successful flush and refuses to bind them ([`AsidError::FlushRequired`]), so
//! the firmware's DFFLUSH_REQUIRED cannot be hit through this API.
//!
//! Lock order (no cycle, hence no deadlock): bitmap mutex → deactivate lock (exclusive)
//! → dirty set; deactivate lock (shared) → dirty set; the dirty set is a leaf and the
//! mailbox mutex is always taken last.

use crate::sync::{Mutex, MutexGuard, RwLock};
use crate::{
    DfFlush, Psp, PspError, SevDataActivate, SevDataDeactivate, SevDataDecommission,
    SevDataSnpActivate, SevDataSnpAddr, SnpDecommission, SnpDfFlush, Transport,
};
use std::fmt;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError};

/// Source of manager identities, so a lease cannot be used with another manager.
static NEXT_MANAGER_ID: AtomicUsize = AtomicUsize::new(1);

/// Largest `max_sev_asid` accepted (hardware reports at most a few thousand).
pub const MAX_ASID_LIMIT: u32 = 1 << 20;

/// The kind of guest an ASID is for; selects the ASID range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AsidClass {
    /// Legacy SEV: `[min_sev_asid, max_sev_asid]`.
    Sev,
    /// SEV-ES: `[1, min_sev_asid - 1]` (or above the SNP share with ciphertext hiding).
    SevEs,
    /// SEV-SNP: `[1, min_sev_asid - 1]` (or `[1, ciphertext_hiding_asids]`).
    Snp,
}

impl fmt::Display for AsidClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AsidClass::Sev => "SEV",
            AsidClass::SevEs => "SEV-ES",
            AsidClass::Snp => "SEV-SNP",
        })
    }
}

/// The ASID space of a host, as KVM's `sev_hardware_setup()` derives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AsidConfig {
    /// First ASID for plain SEV guests (CPUID 0x8000001F EDX). SEV-ES/SNP use the ASIDs below it.
    pub min_sev_asid: u32,
    /// Highest ASID (CPUID 0x8000001F ECX).
    pub max_sev_asid: u32,
    /// `kvm_amd.ciphertext_hiding_asids`: with `N > 0`, SNP gets `[1, N]` and SEV-ES
    /// `[N + 1, min_sev_asid - 1]`. 0 disables the split.
    pub ciphertext_hiding_asids: u32,
    /// SNP is initialized: flushes use SNP_DF_FLUSH instead of DF_FLUSH.
    pub snp_enabled: bool,
}

impl AsidConfig {
    /// A configuration from the CPUID 0x8000001F values, without ciphertext hiding.
    pub const fn new(min_sev_asid: u32, max_sev_asid: u32, snp_enabled: bool) -> Self {
        AsidConfig {
            min_sev_asid,
            max_sev_asid,
            ciphertext_hiding_asids: 0,
            snp_enabled,
        }
    }

    /// The ASID range of `class`; `None` if it is empty (the kernel's `-ENOTTY`).
    ///
    /// ```
    /// use psp_driver::{AsidClass, AsidConfig};
    ///
    /// let cfg = AsidConfig::new(100, 509, true);
    /// assert_eq!(cfg.range(AsidClass::Sev), Some(100..=509));
    /// assert_eq!(cfg.range(AsidClass::Snp), Some(1..=99));
    /// let hiding = AsidConfig { ciphertext_hiding_asids: 32, ..cfg };
    /// assert_eq!(hiding.range(AsidClass::Snp), Some(1..=32));
    /// assert_eq!(hiding.range(AsidClass::SevEs), Some(33..=99));
    /// // min_sev_asid == 1 leaves no room for SEV-ES/SNP.
    /// assert_eq!(AsidConfig::new(1, 15, false).range(AsidClass::SevEs), None);
    /// ```
    pub fn range(&self, class: AsidClass) -> Option<RangeInclusive<u32>> {
        let es_max = self.min_sev_asid.checked_sub(1)?;
        let hiding = self.ciphertext_hiding_asids;
        let (min, max) = match class {
            AsidClass::Sev => (self.min_sev_asid.max(1), self.max_sev_asid),
            AsidClass::Snp if hiding > 0 => (1, hiding.min(es_max)),
            AsidClass::SevEs if hiding > 0 => (hiding.checked_add(1)?, es_max),
            AsidClass::Snp | AsidClass::SevEs => (1, es_max),
        };
        (min <= max && max <= self.max_sev_asid).then_some(min..=max)
    }
}

/// Errors of the ASID protocol.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AsidError {
    /// The configuration cannot describe a host (`max_sev_asid` 0 or too large, ...).
    #[error("invalid ASID configuration: {0}")]
    InvalidConfig(&'static str),
    /// The host has no ASIDs for this guest type (the kernel's `-ENOTTY`).
    #[error("no ASIDs available for {class} guests on this host")]
    Unsupported {
        /// The guest type asked for.
        class: AsidClass,
    },
    /// Every ASID of the range is in use and none can be reclaimed (the kernel's `-EBUSY`).
    #[error("all {class} ASIDs are in use (destroy a guest to free one)")]
    Busy {
        /// The guest type asked for.
        class: AsidClass,
    },
    /// The ASID was deactivated and no flush has completed since; binding it now would fail
    /// with DFFLUSH_REQUIRED.
    #[error("ASID {asid} is dirty: a DF_FLUSH must complete before it is bound again")]
    FlushRequired {
        /// The dirty ASID.
        asid: u32,
    },
    /// The lease is already bound to a guest.
    #[error("ASID {asid} is already bound")]
    AlreadyBound {
        /// The ASID.
        asid: u32,
    },
    /// The lease's class does not match the bind call (ACTIVATE for SEV/SEV-ES, SNP_ACTIVATE for SNP).
    #[error("ASID {asid} is for {class} guests")]
    WrongClass {
        /// The ASID.
        asid: u32,
        /// Its class.
        class: AsidClass,
    },
    /// The lease belongs to another manager.
    #[error("ASID {asid} was not allocated by this manager")]
    ForeignLease {
        /// The ASID.
        asid: u32,
    },
    /// A firmware command failed.
    #[error(transparent)]
    Firmware(#[from] PspError),
}

/// A cache write-back on every CPU, run before each DF_FLUSH.
///
/// On a real host this is `wbinvd_on_all_cpus()` (only the kernel can do it); a software
/// firmware uses it to set its "WBINVD done" indicator; tests record it. It runs under
/// the exclusive deactivate lock, so no DEACTIVATE can slip in before the DF_FLUSH.
pub trait CacheWriteBack: Send + Sync + fmt::Debug {
    /// Writes back and invalidates the caches of all CPUs.
    fn wbinvd_on_all_cpus(&self);
}

/// A [`CacheWriteBack`] that does nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoWriteBack;

impl CacheWriteBack for NoWriteBack {
    fn wbinvd_on_all_cpus(&self) {}
}

/// A [`CacheWriteBack`] from a closure.
///
/// ```
/// use psp_driver::{CacheWriteBack, FnWriteBack};
/// use std::sync::atomic::{AtomicUsize, Ordering};
///
/// let count = AtomicUsize::new(0);
/// let hook = FnWriteBack(|| { count.fetch_add(1, Ordering::Relaxed); });
/// hook.wbinvd_on_all_cpus();
/// assert_eq!(count.load(Ordering::Relaxed), 1);
/// ```
pub struct FnWriteBack<F>(pub F);

impl<F> fmt::Debug for FnWriteBack<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnWriteBack(..)")
    }
}

impl<F: Fn() + Send + Sync> CacheWriteBack for FnWriteBack<F> {
    fn wbinvd_on_all_cpus(&self) {
        (self.0)()
    }
}

impl<W: CacheWriteBack + ?Sized> CacheWriteBack for Arc<W> {
    fn wbinvd_on_all_cpus(&self) {
        (**self).wbinvd_on_all_cpus()
    }
}

/// What an ASID is bound to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Binding {
    /// ACTIVATE'd to a legacy guest handle (SEV, SEV-ES).
    Handle(u32),
    /// SNP_ACTIVATE'd to a guest context page.
    GuestContext(u64),
}

/// An allocated ASID, owned by one guest until [`AsidManager::release`].
///
/// Not `Clone`: a lease is the only way to bind its ASID, so an ASID cannot be bound by two
/// guests, and a released ASID cannot be bound at all. Dropping a lease without releasing
/// it leaks the ASID (it stays marked used), which is what the kernel does when an SNP
/// guest context cannot be decommissioned.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "an ASID lease must be released, or the ASID leaks"]
pub struct AsidLease {
    asid: u32,
    class: AsidClass,
    binding: Option<Binding>,
    owner: usize,
}

impl AsidLease {
    /// The ASID number.
    pub fn asid(&self) -> u32 {
        self.asid
    }

    /// The guest type it was allocated for.
    pub fn class(&self) -> AsidClass {
        self.class
    }

    /// What it is bound to, if anything.
    pub fn binding(&self) -> Option<Binding> {
        self.binding
    }
}

/// A bitmap indexed by ASID.
#[derive(Clone, Debug)]
struct Bitset(Vec<u64>);

impl Bitset {
    fn new(bits: u32) -> Self {
        Bitset(vec![0; (bits as usize).div_ceil(64)])
    }
    fn get(&self, i: u32) -> bool {
        self.0
            .get(i as usize / 64)
            .is_some_and(|w| w >> (i % 64) & 1 != 0)
    }
    fn set(&mut self, i: u32, value: bool) {
        if let Some(w) = self.0.get_mut(i as usize / 64) {
            if value {
                *w |= 1 << (i % 64);
            } else {
                *w &= !(1 << (i % 64));
            }
        }
    }
    fn first_clear(&self, range: &RangeInclusive<u32>) -> Option<u32> {
        range.clone().find(|&i| !self.get(i))
    }
    fn any_set(&self, range: &RangeInclusive<u32>) -> bool {
        range.clone().any(|i| self.get(i))
    }
    fn clear_all(&mut self) {
        self.0.iter_mut().for_each(|w| *w = 0);
    }
}

#[derive(Debug)]
struct Bitmaps {
    /// `sev_asid_bitmap`: allocated (including reclaimable).
    used: Bitset,
    /// `sev_reclaim_asid_bitmap`: released, waiting for a flush.
    reclaim: Bitset,
}

/// Owner of a host's ASIDs and of the ACTIVATE / DEACTIVATE / DF_FLUSH protocol.
///
/// ```
/// use psp_driver::{AsidClass, AsidConfig, AsidManager, Completion, NoWriteBack, Psp, SevCmd, Transport};
/// use std::sync::Arc;
///
/// #[derive(Debug)]
/// struct Accept;
/// impl Transport for Accept {
///     fn submit(&self, _: SevCmd, _: &mut [u8]) -> Completion { Completion::SUCCESS }
/// }
///
/// let psp = Arc::new(Psp::new(Accept));
/// // Two SEV-ES/SNP ASIDs (1, 2), SEV ASIDs 3..=4.
/// let asids = AsidManager::new(psp, AsidConfig::new(3, 4, true), NoWriteBack)?;
/// let mut lease = asids.allocate(AsidClass::Snp)?;
/// assert_eq!(lease.asid(), 1);
/// asids.bind_snp(&mut lease, 0x10_0000)?; // SNP_ACTIVATE
/// asids.release(lease)?;                  // SNP_DECOMMISSION; ASID 1 becomes reclaimable
/// let second = asids.allocate(AsidClass::Snp)?;
/// assert_eq!(second.asid(), 2);           // 1 is not reused before a flush
/// let third = asids.allocate(AsidClass::Snp)?; // range full: flush, then reuse 1
/// assert_eq!(third.asid(), 1);
/// # asids.release(second)?; asids.release(third)?;
/// # Ok::<(), psp_driver::AsidError>(())
/// ```
pub struct AsidManager<T: Transport = Box<dyn Transport>> {
    psp: Arc<Psp<T>>,
    config: AsidConfig,
    /// `sev_bitmap_lock` and the bitmaps it protects.
    bitmaps: Mutex<Bitmaps>,
    /// `sev_deactivate_lock`.
    deactivate_lock: RwLock<()>,
    /// ASIDs deactivated since the last successful flush (leaf lock).
    dirty: Mutex<Bitset>,
    write_back: Box<dyn CacheWriteBack>,
    id: usize,
}

impl<T: Transport> fmt::Debug for AsidManager<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsidManager")
            .field("config", &self.config)
            .field("psp", &self.psp)
            .field("write_back", &self.write_back)
            .finish_non_exhaustive()
    }
}

fn lock<U>(m: &Mutex<U>) -> MutexGuard<'_, U> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<T: Transport> AsidManager<T> {
    /// A manager for the ASIDs of `config`, issuing commands through `psp` and running
    /// `write_back` before every flush.
    ///
    /// # Errors
    /// [`AsidError::InvalidConfig`] if `max_sev_asid` is 0 or above [`MAX_ASID_LIMIT`], or
    /// `min_sev_asid` is 0.
    pub fn new(
        psp: Arc<Psp<T>>,
        config: AsidConfig,
        write_back: impl CacheWriteBack + 'static,
    ) -> Result<Self, AsidError> {
        if config.max_sev_asid == 0 || config.max_sev_asid > MAX_ASID_LIMIT {
            return Err(AsidError::InvalidConfig("max_sev_asid must be in 1..=2^20"));
        }
        if config.min_sev_asid == 0 {
            return Err(AsidError::InvalidConfig("min_sev_asid must be at least 1"));
        }
        let bits = config.max_sev_asid + 1;
        Ok(AsidManager {
            psp,
            config,
            bitmaps: Mutex::new(Bitmaps {
                used: Bitset::new(bits),
                reclaim: Bitset::new(bits),
            }),
            deactivate_lock: RwLock::new(()),
            dirty: Mutex::new(Bitset::new(bits)),
            write_back: Box::new(write_back),
            id: NEXT_MANAGER_ID.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// The PSP the manager issues commands through.
    pub fn psp(&self) -> &Arc<Psp<T>> {
        &self.psp
    }

    /// The ASID configuration.
    pub fn config(&self) -> &AsidConfig {
        &self.config
    }

    fn id(&self) -> usize {
        self.id
    }

    fn check_owner(&self, lease: &AsidLease) -> Result<(), AsidError> {
        if lease.owner == self.id() {
            Ok(())
        } else {
            Err(AsidError::ForeignLease { asid: lease.asid })
        }
    }

    /// Allocates the lowest free ASID of `class`'s range (`sev_asid_new`).
    ///
    /// If the range is full and some ASIDs in it are reclaimable, flushes once (write-back
    /// hook + DF_FLUSH/SNP_DF_FLUSH under the exclusive lock), frees **every** reclaimable
    /// ASID and retries.
    ///
    /// # Errors
    /// [`AsidError::Unsupported`] for an empty range, [`AsidError::Busy`] when nothing can be
    /// reclaimed, [`AsidError::Firmware`] when the flush fails.
    pub fn allocate(&self, class: AsidClass) -> Result<AsidLease, AsidError> {
        let range = self
            .config
            .range(class)
            .ok_or(AsidError::Unsupported { class })?;
        let mut maps = lock(&self.bitmaps);
        let asid = match maps.used.first_clear(&range) {
            Some(asid) => asid,
            None => {
                if !maps.reclaim.any_set(&range) {
                    return Err(AsidError::Busy { class });
                }
                self.recycle_locked(&mut maps)?;
                maps.used
                    .first_clear(&range)
                    .ok_or(AsidError::Busy { class })?
            }
        };
        maps.used.set(asid, true);
        Ok(AsidLease {
            asid,
            class,
            binding: None,
            owner: self.id(),
        })
    }

    /// Flushes and frees every reclaimable ASID now (what the kernel does on module unload,
    /// and lazily on allocation).
    ///
    /// # Errors
    /// [`AsidError::Firmware`] if DF_FLUSH/SNP_DF_FLUSH fails; reclaimable ASIDs stay reclaimable.
    pub fn flush(&self) -> Result<(), AsidError> {
        let mut maps = lock(&self.bitmaps);
        self.recycle_locked(&mut maps)
    }

    /// `__sev_recycle_asids` with `sev_bitmap_lock` held.
    fn recycle_locked(&self, maps: &mut Bitmaps) -> Result<(), AsidError> {
        self.flush_asids()?;
        for (used, reclaim) in maps.used.0.iter_mut().zip(&maps.reclaim.0) {
            *used ^= *reclaim;
        }
        maps.reclaim.clear_all();
        Ok(())
    }

    /// `sev_flush_asids`: write-back + DF_FLUSH under the exclusive deactivate lock.
    fn flush_asids(&self) -> Result<(), AsidError> {
        let _exclusive = self
            .deactivate_lock
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        self.write_back.wbinvd_on_all_cpus();
        if self.config.snp_enabled {
            self.psp.issue(&mut SnpDfFlush)?;
        } else {
            self.psp.issue(&mut DfFlush)?;
        }
        lock(&self.dirty).clear_all();
        Ok(())
    }

    fn check_bindable(&self, lease: &AsidLease) -> Result<(), AsidError> {
        self.check_owner(lease)?;
        if lease.binding.is_some() {
            return Err(AsidError::AlreadyBound { asid: lease.asid });
        }
        // Only a flush clears a dirty bit, and only an unbind of this (exclusively
        // borrowed) lease sets it, so the answer cannot turn stale before ACTIVATE.
        if lock(&self.dirty).get(lease.asid) {
            return Err(AsidError::FlushRequired { asid: lease.asid });
        }
        Ok(())
    }

    /// Binds a SEV or SEV-ES guest handle to the lease's ASID: ACTIVATE, without the
    /// deactivate lock (`sev_bind_asid`).
    ///
    /// On failure the caller should DECOMMISSION the handle ([`decommission`](Self::decommission)),
    /// as KVM does.
    ///
    /// # Errors
    /// [`AsidError::WrongClass`] for an SNP lease, [`AsidError::AlreadyBound`],
    /// [`AsidError::FlushRequired`], or the firmware's error.
    pub fn bind(&self, lease: &mut AsidLease, handle: u32) -> Result<(), AsidError> {
        if lease.class == AsidClass::Snp {
            return Err(AsidError::WrongClass {
                asid: lease.asid,
                class: lease.class,
            });
        }
        self.check_bindable(lease)?;
        self.psp.issue(&mut SevDataActivate {
            handle,
            asid: lease.asid,
        })?;
        lease.binding = Some(Binding::Handle(handle));
        Ok(())
    }

    /// Binds an SNP guest context to the lease's ASID: SNP_ACTIVATE, without the
    /// deactivate lock (`snp_bind_asid`).
    ///
    /// # Errors
    /// As [`bind`](Self::bind), with [`AsidError::WrongClass`] for a non-SNP lease.
    pub fn bind_snp(&self, lease: &mut AsidLease, gctx_paddr: u64) -> Result<(), AsidError> {
        if lease.class != AsidClass::Snp {
            return Err(AsidError::WrongClass {
                asid: lease.asid,
                class: lease.class,
            });
        }
        self.check_bindable(lease)?;
        self.psp.issue(&mut SevDataSnpActivate {
            gctx_paddr,
            asid: lease.asid,
        })?;
        lease.binding = Some(Binding::GuestContext(gctx_paddr));
        Ok(())
    }

    /// Unbinds the lease's ASID from its guest and destroys the guest context.
    ///
    /// * Legacy handle (`sev_unbind_asid`): DEACTIVATE under the shared deactivate lock,
    ///   then DECOMMISSION outside it.
    /// * SNP context (`snp_decommission_context`): SNP_DECOMMISSION under the exclusive lock.
    ///
    /// The ASID is dirty afterwards and cannot be bound again before a flush. Does nothing
    /// for an unbound lease.
    ///
    /// # Errors
    /// The firmware's error. If DEACTIVATE or SNP_DECOMMISSION fails the lease stays bound;
    /// if only DECOMMISSION fails it is unbound (the ASID was released by DEACTIVATE).
    pub fn unbind(&self, lease: &mut AsidLease) -> Result<(), AsidError> {
        self.check_owner(lease)?;
        match lease.binding {
            None => Ok(()),
            Some(Binding::Handle(handle)) => {
                {
                    let _shared = self
                        .deactivate_lock
                        .read()
                        .unwrap_or_else(PoisonError::into_inner);
                    lock(&self.dirty).set(lease.asid, true);
                    self.psp.issue(&mut SevDataDeactivate { handle })?;
                }
                lease.binding = None;
                self.psp.issue(&mut SevDataDecommission { handle })?;
                Ok(())
            }
            Some(Binding::GuestContext(gctx_paddr)) => {
                {
                    let _exclusive = self
                        .deactivate_lock
                        .write()
                        .unwrap_or_else(PoisonError::into_inner);
                    lock(&self.dirty).set(lease.asid, true);
                    self.snp_decommission_locked(gctx_paddr)?;
                }
                lease.binding = None;
                Ok(())
            }
        }
    }

    /// DECOMMISSION of a legacy guest handle that is not bound to an ASID (e.g. after a
    /// failed ACTIVATE). No lock besides the mailbox.
    ///
    /// # Errors
    /// The firmware's error (ACTIVE if the handle is still bound).
    pub fn decommission(&self, handle: u32) -> Result<(), AsidError> {
        self.psp.issue(&mut SevDataDecommission { handle })?;
        Ok(())
    }

    /// SNP_DECOMMISSION of a guest context that is not bound through a lease (e.g. after
    /// SNP_GCTX_CREATE or a failed SNP_ACTIVATE), under the exclusive deactivate lock.
    ///
    /// # Errors
    /// The firmware's error.
    pub fn snp_decommission(&self, gctx_paddr: u64) -> Result<(), AsidError> {
        let _exclusive = self
            .deactivate_lock
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        self.snp_decommission_locked(gctx_paddr)
    }

    fn snp_decommission_locked(&self, gctx_paddr: u64) -> Result<(), AsidError> {
        self.psp.issue(&mut SnpDecommission(SevDataSnpAddr {
            address: gctx_paddr,
        }))?;
        Ok(())
    }

    /// Ends a lease (`sev_asid_free`): unbinds it first if bound, then marks the ASID
    /// reclaimable. It becomes allocatable again after the next flush.
    ///
    /// # Errors
    /// If the unbind fails the ASID is leaked (kept in use, never reclaimed), as KVM does
    /// when an SNP context cannot be decommissioned, and the error is returned.
    pub fn release(&self, mut lease: AsidLease) -> Result<(), AsidError> {
        self.check_owner(&lease)?;
        match self.unbind(&mut lease) {
            Ok(()) => {}
            Err(AsidError::Firmware(err)) if lease.binding.is_none() => {
                // Only DECOMMISSION failed: the ASID itself was released by DEACTIVATE.
                lock(&self.bitmaps).reclaim.set(lease.asid, true);
                return Err(AsidError::Firmware(err));
            }
            Err(err) => return Err(err),
        }
        lock(&self.bitmaps).reclaim.set(lease.asid, true);
        Ok(())
    }

    /// Counts of (in use, reclaimable) ASIDs in `class`'s range; in-use includes reclaimable.
    pub fn usage(&self, class: AsidClass) -> (usize, usize) {
        let Some(range) = self.config.range(class) else {
            return (0, 0);
        };
        let maps = lock(&self.bitmaps);
        let used = range.clone().filter(|&i| maps.used.get(i)).count();
        let reclaim = range.filter(|&i| maps.reclaim.get(i)).count();
        (used, reclaim)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::{Completion, SevCmd};
    use std::sync::atomic::AtomicUsize;
    use std::sync::mpsc;
    use std::time::Duration;

    #[derive(Debug)]
    struct Accept;
    impl Transport for Accept {
        fn submit(&self, _: SevCmd, _: &mut [u8]) -> Completion {
            Completion::SUCCESS
        }
    }

    fn manager() -> (Arc<AsidManager<Accept>>, Arc<AtomicUsize>) {
        let flushes = Arc::new(AtomicUsize::new(0));
        let hook = {
            let flushes = flushes.clone();
            FnWriteBack(move || {
                flushes.fetch_add(1, Ordering::SeqCst);
            })
        };
        let psp = Arc::new(Psp::new(Accept));
        (
            Arc::new(AsidManager::new(psp, AsidConfig::new(4, 8, true), hook).unwrap()),
            flushes,
        )
    }

    /// Runs `f` on another thread and reports whether it finished within `wait`.
    fn finishes_within<F: FnOnce() + Send + 'static>(
        wait: Duration,
        f: F,
    ) -> (bool, mpsc::Receiver<()>) {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            f();
            let _ = tx.send(());
        });
        let done = rx.recv_timeout(wait).is_ok();
        (done, rx)
    }

    #[test]
    fn deactivate_is_shared_flush_and_snp_decommission_are_exclusive() {
        let (mgr, flushes) = manager();
        let mut sev = mgr.allocate(AsidClass::Sev).unwrap();
        mgr.bind(&mut sev, 1).unwrap();
        let mut snp = mgr.allocate(AsidClass::Snp).unwrap();
        mgr.bind_snp(&mut snp, 0x1000).unwrap();

        // Another unbind is in the middle of its DEACTIVATE.
        let shared = mgr.deactivate_lock.read().unwrap();

        // A second unbind does not wait for it.
        let m = mgr.clone();
        let (done, _) = finishes_within(Duration::from_secs(20), move || {
            m.unbind(&mut sev).unwrap();
            m.release(sev).unwrap();
        });
        assert!(done, "an unbind blocked behind another unbind");

        // A flush and an SNP teardown wait until it is over.
        let m = mgr.clone();
        let (flush_done, flush_rx) = finishes_within(Duration::from_millis(300), move || {
            m.flush().unwrap();
        });
        let m = mgr.clone();
        let (snp_done, snp_rx) = finishes_within(Duration::from_millis(300), move || {
            m.release(snp).unwrap();
        });
        assert!(
            !flush_done,
            "DF_FLUSH ran while a DEACTIVATE was in progress"
        );
        assert!(
            !snp_done,
            "SNP_DECOMMISSION ran while a DEACTIVATE was in progress"
        );
        assert_eq!(
            flushes.load(Ordering::SeqCst),
            0,
            "write-back ran during a DEACTIVATE"
        );

        drop(shared);
        flush_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("flush never ran");
        snp_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("SNP teardown never ran");
        assert!(flushes.load(Ordering::SeqCst) >= 1);
    }

    #[test]
    fn bitset_basics() {
        let mut b = Bitset::new(130);
        assert_eq!(b.first_clear(&(1..=129)), Some(1));
        for i in 1..=129 {
            b.set(i, true);
        }
        assert_eq!(b.first_clear(&(1..=129)), None);
        b.set(64, false);
        assert_eq!(b.first_clear(&(1..=129)), Some(64));
        assert!(!b.get(200), "out of range reads as clear");
        b.set(200, true); // ignored, no panic
        assert!(b.any_set(&(65..=65)));
        b.clear_all();
        assert!(!b.any_set(&(0..=129)));
    }
}
