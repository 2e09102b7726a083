//! Simulated system memory, addressed by physical address (PA).
//!
//! The firmware reads and writes guest pages and command operands by PA, like
//! the PSP's DMA engine. [`PhysMem`] is that address space:
//!
//! - a **sparse page store**: any 4 KiB page not covered by a region reads as
//!   zeros until written, and is allocated on first write;
//! - **registered regions**: a simulated KVM backend hands its own guest memory
//!   to [`PhysMem::register_region`] as an [`Arc<dyn MemBacking>`]; the firmware
//!   then works on those bytes in place (no copy), so what the VMM wrote is what
//!   the firmware measures and encrypts, and what the VMM reads afterwards is
//!   the ciphertext.
//!
//! Page-granular work (launch updates) goes through [`PhysMem::map_pages`],
//! which hands each 4 KiB page to a closure, in parallel when there are
//! several.
//!
//! ```
//! use psp_driver::sim::mem::{PhysMem, VecBacking};
//! use std::sync::Arc;
//!
//! let mem = PhysMem::new();
//! mem.write(0x1000, b"hello").unwrap();
//! let mut b = [0u8; 5];
//! mem.read(0x1000, &mut b).unwrap();
//! assert_eq!(&b, b"hello");
//!
//! // A VMM registers its guest RAM; firmware writes land in the VMM's buffer.
//! let ram = Arc::new(VecBacking::new(0x2000));
//! mem.register_region(0x10_0000, ram.clone()).unwrap();
//! mem.write(0x10_0010, &[1, 2, 3]).unwrap();
//! assert_eq!(ram.to_vec()[0x10..0x13], [1, 2, 3]);
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use rayon::prelude::*;

/// The page size of the simulated machine.
pub const PAGE_SIZE: usize = 4096;

/// Splits the access `[addr, addr + len)` at 4 KiB page boundaries: for each page it
/// touches, in address order, the page's address, the offset of the access in that page
/// and the range of the caller's buffer that falls into it.
///
/// ```
/// use psp_driver::sim::mem::page_pieces;
///
/// let v: Vec<_> = page_pieces(0x1ff0, 0x20).collect();
/// assert_eq!(v, [(0x1000, 0xff0, 0..0x10), (0x2000, 0, 0x10..0x20)]);
/// ```
pub fn page_pieces(
    addr: u64,
    len: usize,
) -> impl Iterator<Item = (u64, usize, core::ops::Range<usize>)> {
    let mut done = 0usize;
    core::iter::from_fn(move || {
        if done >= len {
            return None;
        }
        let a = addr.wrapping_add(done as u64);
        let page = a & !(PAGE_SIZE as u64 - 1);
        let off = (a - page) as usize;
        let n = (PAGE_SIZE - off).min(len - done);
        let piece = (page, off, done..done + n);
        done += n;
        Some(piece)
    })
}

/// Errors of [`PhysMem`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemError {
    /// An access wraps around the address space or crosses a region boundary.
    #[error("invalid physical range {pa:#x}+{len:#x}")]
    InvalidRange {
        /// Start of the access.
        pa: u64,
        /// Length of the access.
        len: u64,
    },
    /// A page-granular access is not 4 KiB aligned.
    #[error("physical address {0:#x} is not page aligned")]
    Unaligned(u64),
    /// The memory for a backing of `len` bytes could not be allocated.
    #[error("cannot allocate {len:#x} bytes of simulated memory")]
    NoMemory {
        /// The length asked for.
        len: u64,
    },
    /// A registered region would overlap another one, or is empty or unaligned.
    #[error("region {base:#x}+{len:#x} overlaps another region or is not page aligned")]
    BadRegion {
        /// Base of the rejected region.
        base: u64,
        /// Length of the rejected region.
        len: u64,
    },
}

/// Storage behind a registered region: a contiguous byte buffer the owner
/// (typically a simulated KVM backend holding guest RAM) shares with the
/// firmware.
pub trait MemBacking: Send + Sync + core::fmt::Debug {
    /// Length of the buffer in bytes (a multiple of [`PAGE_SIZE`]).
    fn len(&self) -> usize;
    /// Whether the buffer is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Runs `f` on the whole buffer, with exclusive access for its duration.
    fn with_mut(&self, f: &mut dyn FnMut(&mut [u8]));
    /// Runs `f` on the `len` bytes at offset `off` of the buffer, with exclusive access for
    /// its duration. The default borrows the whole buffer through
    /// [`with_mut`](Self::with_mut); a backing that is not one contiguous host buffer (another
    /// process's address space, say) overrides it to bring in only the range.
    ///
    /// # Errors
    /// [`MemError::InvalidRange`] when the range is outside the buffer or cannot be accessed.
    fn with_range_mut(
        &self,
        off: usize,
        len: usize,
        f: &mut dyn FnMut(&mut [u8]),
    ) -> Result<(), MemError> {
        let bad = MemError::InvalidRange {
            pa: off as u64,
            len: len as u64,
        };
        let mut ok = false;
        self.with_mut(&mut |b| {
            if let Some(span) = off.checked_add(len).and_then(|e| b.get_mut(off..e)) {
                f(span);
                ok = true;
            }
        });
        if ok { Ok(()) } else { Err(bad) }
    }
    /// Copies `buf.len()` bytes at offset `off` into `buf` (a read-only
    /// [`with_range_mut`](Self::with_range_mut), which a backing may do more cheaply).
    ///
    /// # Errors
    /// As [`with_range_mut`](Self::with_range_mut).
    fn read_range(&self, off: usize, buf: &mut [u8]) -> Result<(), MemError> {
        self.with_range_mut(off, buf.len(), &mut |src| buf.copy_from_slice(src))
    }
    /// Copies `data` to offset `off` (a write-only [`with_range_mut`](Self::with_range_mut),
    /// which a backing may do without reading the range first).
    ///
    /// # Errors
    /// As [`with_range_mut`](Self::with_range_mut).
    fn write_range(&self, off: usize, data: &[u8]) -> Result<(), MemError> {
        self.with_range_mut(off, data.len(), &mut |dst| dst.copy_from_slice(data))
    }
}

/// A simple [`MemBacking`]: a heap buffer behind a mutex.
#[derive(Debug)]
pub struct VecBacking(Mutex<Box<[u8]>>);

impl VecBacking {
    /// A zero-filled buffer of `len` bytes. Aborts, as any failed allocation does, if the
    /// memory cannot be had: use [`try_new`](Self::try_new) for a length that comes from
    /// outside.
    pub fn new(len: usize) -> Self {
        Self(Mutex::new(vec![0u8; len].into_boxed_slice()))
    }

    /// A zero-filled buffer of `len` bytes, or [`MemError::NoMemory`] if the allocator
    /// refuses that much (the pages themselves are only touched when written).
    ///
    /// # Errors
    /// [`MemError::NoMemory`].
    pub fn try_new(len: usize) -> Result<Self, MemError> {
        // Ask first with a fallible reservation (which the kernel's overcommit policy
        // answers), then take the zeroed allocation, which would abort on failure.
        let mut probe: Vec<u8> = Vec::new();
        probe
            .try_reserve_exact(len)
            .map_err(|_| MemError::NoMemory { len: len as u64 })?;
        drop(probe);
        Ok(Self::new(len))
    }
    /// A copy of the contents.
    pub fn to_vec(&self) -> Vec<u8> {
        self.0.lock().map(|b| b.to_vec()).unwrap_or_default()
    }
}

impl MemBacking for VecBacking {
    fn len(&self) -> usize {
        self.0.lock().map(|b| b.len()).unwrap_or(0)
    }
    fn with_mut(&self, f: &mut dyn FnMut(&mut [u8])) {
        if let Ok(mut b) = self.0.lock() {
            f(&mut b);
        }
    }
}

#[derive(Debug, Clone)]
struct Region {
    base: u64,
    len: u64,
    backing: Arc<dyn MemBacking>,
}

type Page = Box<[u8; PAGE_SIZE]>;

#[derive(Debug, Default)]
struct Inner {
    pages: HashMap<u64, Page>,
    regions: Vec<Region>,
}

/// The simulated physical address space; see the [module docs](self).
#[derive(Debug, Default)]
pub struct PhysMem {
    inner: RwLock<Inner>,
}

fn end(pa: u64, len: u64) -> Result<u64, MemError> {
    pa.checked_add(len)
        .ok_or(MemError::InvalidRange { pa, len })
}

impl PhysMem {
    /// An empty address space (all zeros).
    pub fn new() -> Self {
        Self::default()
    }

    /// Maps `backing` at `base`. The region must be page aligned and must not
    /// overlap another region. Sparse pages it covers are discarded.
    pub fn register_region(&self, base: u64, backing: Arc<dyn MemBacking>) -> Result<(), MemError> {
        let len = backing.len() as u64;
        let bad = MemError::BadRegion { base, len };
        if len == 0
            || !base.is_multiple_of(PAGE_SIZE as u64)
            || !len.is_multiple_of(PAGE_SIZE as u64)
        {
            return Err(bad);
        }
        let e = end(base, len)?;
        let mut g = self.inner.write().map_err(|_| bad.clone())?;
        if g.regions
            .iter()
            .any(|r| base < r.base + r.len && r.base < e)
        {
            return Err(bad);
        }
        g.pages.retain(|&pfn, _| !(pfn >= base && pfn < e));
        g.regions.push(Region { base, len, backing });
        Ok(())
    }

    /// Removes the region starting at `base`, returning its backing.
    pub fn unregister_region(&self, base: u64) -> Option<Arc<dyn MemBacking>> {
        let mut g = self.inner.write().ok()?;
        let i = g.regions.iter().position(|r| r.base == base)?;
        Some(g.regions.swap_remove(i).backing)
    }

    fn region_for(g: &Inner, pa: u64, len: u64) -> Result<Option<Region>, MemError> {
        let e = end(pa, len)?;
        for r in &g.regions {
            let re = r.base + r.len;
            if pa >= r.base && e <= re {
                return Ok(Some(r.clone()));
            }
            if pa < re && r.base < e {
                return Err(MemError::InvalidRange { pa, len });
            }
        }
        Ok(None)
    }

    /// Copies `buf.len()` bytes at `pa` into `buf`.
    pub fn read(&self, pa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let len = buf.len() as u64;
        let g = self
            .inner
            .read()
            .map_err(|_| MemError::InvalidRange { pa, len })?;
        if let Some(r) = Self::region_for(&g, pa, len)? {
            drop(g);
            let off = (pa - r.base) as usize;
            return r
                .backing
                .read_range(off, buf)
                .map_err(|_| MemError::InvalidRange { pa, len });
        }
        for (pfn, off, r) in page_pieces(pa, buf.len()) {
            let dst = &mut buf[r.clone()];
            match g.pages.get(&pfn) {
                Some(p) => dst.copy_from_slice(&p[off..off + r.len()]),
                None => dst.fill(0),
            }
        }
        Ok(())
    }

    /// Reads `len` bytes at `pa` into a new vector.
    pub fn read_vec(&self, pa: u64, len: usize) -> Result<Vec<u8>, MemError> {
        let mut v = vec![0u8; len];
        self.read(pa, &mut v)?;
        Ok(v)
    }

    /// Copies `buf` to `pa`.
    pub fn write(&self, pa: u64, buf: &[u8]) -> Result<(), MemError> {
        let len = buf.len() as u64;
        let mut g = self
            .inner
            .write()
            .map_err(|_| MemError::InvalidRange { pa, len })?;
        if let Some(r) = Self::region_for(&g, pa, len)? {
            drop(g);
            let off = (pa - r.base) as usize;
            return r
                .backing
                .write_range(off, buf)
                .map_err(|_| MemError::InvalidRange { pa, len });
        }
        for (pfn, off, r) in page_pieces(pa, buf.len()) {
            let p = g
                .pages
                .entry(pfn)
                .or_insert_with(|| Box::new([0u8; PAGE_SIZE]));
            p[off..off + r.len()].copy_from_slice(&buf[r]);
        }
        Ok(())
    }

    /// Runs `f(index, page_pa, page)` on each of the `count` pages starting at
    /// the page-aligned `pa`, in parallel when `count > 1`, and returns the
    /// results in page order. Pages are modified in place.
    pub fn map_pages<T, F>(&self, pa: u64, count: usize, f: F) -> Result<Vec<T>, MemError>
    where
        T: Send,
        F: Fn(usize, u64, &mut [u8]) -> T + Sync,
    {
        if !pa.is_multiple_of(PAGE_SIZE as u64) {
            return Err(MemError::Unaligned(pa));
        }
        let len = (count as u64)
            .checked_mul(PAGE_SIZE as u64)
            .ok_or(MemError::InvalidRange { pa, len: u64::MAX })?;
        let mut g = self
            .inner
            .write()
            .map_err(|_| MemError::InvalidRange { pa, len })?;
        if let Some(r) = Self::region_for(&g, pa, len)? {
            drop(g);
            let off = (pa - r.base) as usize;
            let mut out = Vec::new();
            r.backing
                .with_range_mut(off, len as usize, &mut |span| {
                    out = run_pages(span.chunks_exact_mut(PAGE_SIZE).collect(), pa, &f);
                })
                .map_err(|_| MemError::InvalidRange { pa, len })?;
            return Ok(out);
        }
        // Sparse store: take the pages out of the map, work on them without the
        // map borrowed, and put them back.
        let mut taken: Vec<Page> = (0..count as u64)
            .map(|i| {
                let a = pa + i * PAGE_SIZE as u64;
                g.pages
                    .remove(&a)
                    .unwrap_or_else(|| Box::new([0u8; PAGE_SIZE]))
            })
            .collect();
        let out = run_pages(taken.iter_mut().map(|p| &mut p[..]).collect(), pa, &f);
        for (i, p) in taken.into_iter().enumerate() {
            g.pages.insert(pa + (i * PAGE_SIZE) as u64, p);
        }
        Ok(out)
    }

    /// Frees the sparse pages of `[pa, pa + len)` (page granular: every page the range
    /// touches): they read as zeros again. Regions are not affected.
    pub fn discard(&self, pa: u64, len: u64) {
        let Ok(mut g) = self.inner.write() else {
            return;
        };
        let first = pa & !(PAGE_SIZE as u64 - 1);
        let end = pa.saturating_add(len);
        let pages = end.saturating_sub(first).div_ceil(PAGE_SIZE as u64);
        if pages as usize > g.pages.len() {
            g.pages.retain(|&p, _| !(p >= first && p < end));
        } else {
            for i in 0..pages {
                g.pages.remove(&(first + i * PAGE_SIZE as u64));
            }
        }
    }

    /// Number of sparse pages currently allocated (not counting regions).
    pub fn sparse_pages(&self) -> usize {
        self.inner.read().map(|g| g.pages.len()).unwrap_or(0)
    }
}

fn run_pages<T, F>(pages: Vec<&mut [u8]>, pa: u64, f: &F) -> Vec<T>
where
    T: Send,
    F: Fn(usize, u64, &mut [u8]) -> T + Sync,
{
    if pages.len() == 1 {
        pages
            .into_iter()
            .enumerate()
            .map(|(i, p)| f(i, pa + (i * PAGE_SIZE) as u64, p))
            .collect()
    } else {
        pages
            .into_par_iter()
            .enumerate()
            .map(|(i, p)| f(i, pa + (i * PAGE_SIZE) as u64, p))
            .collect()
    }
}
