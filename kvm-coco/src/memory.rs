//! Guest memory: host mappings, guest_memfd, memory slots, private/shared attributes.
//!
//! * [`GuestMapping`] is an owned anonymous (or guest_memfd) mapping of host memory. KVM
//!   dereferences a memory slot's `userspace_addr` whenever the guest touches the slot, so a
//!   slot registered through the safe API holds an [`Arc<GuestMapping>`]: the mapping cannot
//!   be unmapped while the VM (or any of its vCPUs) is alive.
//! * [`GuestMemfd`] owns the file descriptor returned by `KVM_CREATE_GUEST_MEMFD` and checks
//!   size and flags before the ioctl.
//! * [`MemoryRegion`] describes a `KVM_SET_USER_MEMORY_REGION2` slot.
//! * [`MemoryAttributes`] are the `KVM_SET_MEMORY_ATTRIBUTES` bits;
//!   [`Vm::convert_memory`](crate::Vm::convert_memory) changes a range between private and
//!   shared and punches the private backing out of the guest_memfd when it becomes shared.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::Arc;

use bitflags::bitflags;
use kvm_bindings::{KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY, KVM_MEMORY_ATTRIBUTE_PRIVATE};
use kvm_coco_uapi::memory::{GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP};
use serde::Serialize;

use crate::error::{Errno, Error, Result};

/// The page size that KVM's memory interfaces are aligned to.
pub const PAGE_SIZE: u64 = 4096;

/// Whether `[gpa, gpa+size)` is non-empty, page aligned and does not wrap.
pub(crate) fn check_range(gpa: u64, size: u64) -> Result<()> {
    if size == 0
        || !gpa.is_multiple_of(PAGE_SIZE)
        || !size.is_multiple_of(PAGE_SIZE)
        || gpa.checked_add(size).is_none()
    {
        return Err(Error::BadRange { gpa, size });
    }
    Ok(())
}

/// An owned `mmap` of host memory used to back guest memory.
///
/// The mapping is read-write and unmapped on drop. Anonymous memory is private to the
/// process, as QEMU's default RAM backend: aligned to 2 MiB when at least that large, with
/// transparent huge pages requested (`MADV_HUGEPAGE`) and left out of forked children
/// (`MADV_DONTFORK`); a guest_memfd is mapped `MAP_SHARED`. The guest writes to it
/// concurrently with the host, so it is accessed through copying methods
/// ([`write`](Self::write), [`read`](Self::read)) rather than through Rust references.
///
/// # Concurrent access
///
/// A `GuestMapping` is `Sync`: threads may call [`write`](Self::write) and
/// [`read`](Self::read) on the same mapping at once, while the guest (through KVM) or another
/// process sharing the memory writes it too. The mapping is treated the way vm-memory treats
/// guest memory: as memory outside the program's own allocations, to which no Rust reference
/// is ever created and which is only touched with volatile loads and stores
/// ([`read_volatile`](std::ptr::read_volatile), [`write_volatile`](std::ptr::write_volatile)),
/// the case those functions document for memory-mapped I/O. Each access is then an
/// externally observable event: the compiler neither elides, merges, duplicates nor invents
/// one, and never assumes that the memory keeps its value between two reads.
///
/// Copies use word-sized accesses. Every naturally aligned `usize` word that lies wholly
/// inside the copied range is loaded or stored with one access, so this type never tears an
/// aligned word; the bytes before the first and after the last whole word are copied one at
/// a time (never as a read-modify-write of their word, so bytes outside the range are not
/// touched). One volatile access per byte would make large copies (launch images, whole
/// pages) two to three times slower. vm-memory itself is not a dependency of this crate, and
/// its volatile copies go through its region, slice and dirty-bitmap types, so the same
/// access pattern is implemented here in two small functions.
///
/// Nothing more is promised: a copy spanning several words is not atomic, and a reader racing
/// a writer may see some words old and some new; when memory is stable is for the protocol
/// between the VMM and the guest to say, as on real hardware. Atomics were not used: the
/// guest's accesses have sizes the host does not choose, and racing atomic accesses of
/// different sizes to the same bytes are undefined behaviour in Rust.
///
/// ```
/// use kvm_coco::GuestMapping;
/// let mem = GuestMapping::anonymous(0x2000)?;
/// mem.write(0x1000, &[0xf4])?;
/// let mut b = [0u8; 1];
/// mem.read(0x1000, &mut b)?;
/// assert_eq!(b, [0xf4]);
/// # Ok::<(), kvm_coco::Error>(())
/// ```
#[derive(Debug)]
pub struct GuestMapping {
    ptr: NonNull<u8>,
    size: usize,
}

// SAFETY: the mapping is plain memory owned by this value; all accesses go through volatile
// copies, and the pointer stays valid until drop, so it may move between threads.
unsafe impl Send for GuestMapping {}
// SAFETY: shared access only performs volatile copies into or out of the mapping
// (`copy_to_guest`, `copy_from_guest`), never creates Rust references to its contents, so
// concurrent callers (and the guest, which writes it anyway) cannot invalidate what the
// compiler assumes about any Rust value.
unsafe impl Sync for GuestMapping {}

impl GuestMapping {
    /// Maps `size` bytes of zeroed anonymous memory (`MAP_PRIVATE | MAP_ANONYMOUS |
    /// MAP_NORESERVE`, 2 MiB-aligned when `size` is at least 2 MiB, `MADV_HUGEPAGE` and
    /// `MADV_DONTFORK` as QEMU advises guest RAM). `size` must be a non-zero multiple of
    /// 4 KiB.
    pub fn anonymous(size: usize) -> Result<Self> {
        Self::map(size, None)
    }

    /// The anonymous case of [`map`](Self::map): reserves `size` plus 2 MiB when `size` is
    /// at least 2 MiB, keeps the 2 MiB-aligned `size` bytes inside and unmaps the rest, so
    /// that whole huge pages fit.
    fn map_anonymous(size: usize) -> Result<Self> {
        const HUGE: usize = 2 << 20;
        let reserve = if size >= HUGE {
            size.checked_add(HUGE).ok_or(Error::BadRange {
                gpa: 0,
                size: size as u64,
            })?
        } else {
            size
        };
        // SAFETY: a fresh private mapping at an address chosen by the kernel; no existing
        // memory is affected. The result is checked against MAP_FAILED.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                reserve,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(Error::ioctl("mmap", Errno::last()));
        }
        let start = ptr.cast::<u8>();
        let head = if reserve > size {
            start.addr().next_multiple_of(HUGE) - start.addr()
        } else {
            0
        };
        let tail = reserve - size - head;
        // SAFETY: `head + size + tail == reserve`, so `[start, start + head)` and
        // `[start + head + size, start + reserve)` lie inside the mapping just made and
        // owned by nobody else; unmapping them leaves exactly `[start + head, +size)`.
        // Advice on that range only changes how the kernel backs it (huge pages) and
        // whether children inherit it; neither affects memory the program references.
        unsafe {
            let kept = start.add(head);
            if head > 0 {
                libc::munmap(start.cast(), head);
            }
            if tail > 0 {
                libc::munmap(kept.add(size).cast(), tail);
            }
            libc::madvise(kept.cast(), size, libc::MADV_HUGEPAGE);
            libc::madvise(kept.cast(), size, libc::MADV_DONTFORK);
        }
        // SAFETY: `start` is a successful mmap result, non-null, and `head < reserve`.
        let kept = unsafe { start.add(head) };
        let ptr = NonNull::new(kept).ok_or(Error::ioctl("mmap", Errno::from_raw(libc::ENOMEM)))?;
        Ok(Self { ptr, size })
    }

    fn map(size: usize, fd: Option<BorrowedFd<'_>>) -> Result<Self> {
        if size == 0 || !(size as u64).is_multiple_of(PAGE_SIZE) {
            return Err(Error::BadRange {
                gpa: 0,
                size: size as u64,
            });
        }
        let Some(fd) = fd else {
            return Self::map_anonymous(size);
        };
        let (flags, raw) = (libc::MAP_SHARED, fd.as_raw_fd());
        // SAFETY: a fresh mapping at an address chosen by the kernel; no existing memory is
        // affected. The result is checked against MAP_FAILED.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                raw,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(Error::ioctl("mmap", Errno::last()));
        }
        let ptr = NonNull::new(ptr.cast::<u8>())
            .ok_or(Error::ioctl("mmap", Errno::from_raw(libc::ENOMEM)))?;
        Ok(Self { ptr, size })
    }

    /// The size in bytes.
    pub fn len(&self) -> usize {
        self.size
    }

    /// Always `false`: a mapping is never empty.
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// The host virtual address (what goes into a memory slot's `userspace_addr`).
    pub fn host_addr(&self) -> u64 {
        self.ptr.as_ptr() as u64
    }

    fn check(&self, offset: u64, len: usize) -> Result<usize> {
        let end = offset.checked_add(len as u64);
        match end {
            Some(end) if end <= self.size as u64 => Ok(offset as usize),
            _ => Err(Error::OutOfBounds {
                offset,
                len: len as u64,
                size: self.size as u64,
            }),
        }
    }

    /// Copies `data` into the mapping at `offset` with volatile stores (see
    /// [Concurrent access](Self#concurrent-access)).
    pub fn write(&self, offset: u64, data: &[u8]) -> Result<()> {
        let off = self.check(offset, data.len())?;
        // SAFETY: `off + data.len() <= size` was checked, so the destination lies inside the
        // live mapping (valid for writes until drop, and `&self` keeps it alive); the source
        // is a Rust slice, which never points into the mapping (no reference to the mapping's
        // contents is ever handed out), so the ranges do not overlap.
        unsafe { copy_to_guest(self.ptr.as_ptr().add(off), data) };
        Ok(())
    }

    /// Copies bytes at `offset` out of the mapping into `buf` with volatile loads (see
    /// [Concurrent access](Self#concurrent-access)).
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let off = self.check(offset, buf.len())?;
        // SAFETY: the source range lies inside the live mapping (checked above; `&self`
        // keeps it mapped) and the destination is an exclusively borrowed Rust slice, which
        // cannot point into the mapping.
        unsafe { copy_from_guest(self.ptr.as_ptr().add(off), buf) };
        Ok(())
    }
}

/// The unit of the word-sized volatile accesses: the native word, which every supported
/// target loads and stores in one instruction when it is naturally aligned.
type Word = usize;
const WORD: usize = std::mem::size_of::<Word>();

/// How many bytes from `addr` to the next `Word` boundary, at most `len`: the bytes copied
/// one at a time before the aligned words.
fn head_len(addr: usize, len: usize) -> usize {
    (addr.wrapping_neg() % WORD).min(len)
}

/// Copies `src` to guest memory at `dst`: single volatile byte stores up to the first
/// aligned word, volatile `Word` stores for every whole aligned word, byte stores after.
///
/// # Safety
///
/// `dst..dst + src.len()` must be valid for writes for the whole call and must not overlap
/// `src`.
pub(crate) unsafe fn copy_to_guest(dst: *mut u8, src: &[u8]) {
    let len = src.len();
    let head = head_len(dst.addr(), len);
    let words = (len - head) / WORD;
    let (head_src, rest) = src.split_at(head);
    let (word_src, tail_src) = rest.split_at(words * WORD);
    for (i, &b) in head_src.iter().enumerate() {
        // SAFETY: `i < head <= len`, inside the destination range the caller vouches for.
        unsafe { dst.add(i).write_volatile(b) };
    }
    // SAFETY: `head <= len`, so this is inside (or one past the end of) the destination.
    let word_dst = unsafe { dst.add(head) }.cast::<Word>();
    for (i, chunk) in word_src.chunks_exact(WORD).enumerate() {
        let mut bytes = [0u8; WORD];
        bytes.copy_from_slice(chunk);
        let w = Word::from_ne_bytes(bytes);
        // SAFETY: `head + (i + 1) * WORD <= len`, so the word lies inside the destination;
        // `dst + head` is `Word`-aligned by the choice of `head` (and `words > 0` implies
        // the alignment was reached, i.e. `head` was not cut short by `len`).
        unsafe { word_dst.add(i).write_volatile(w) };
    }
    let tail_dst = head + words * WORD;
    for (i, &b) in tail_src.iter().enumerate() {
        // SAFETY: `tail_dst + i < len`, inside the destination range.
        unsafe { dst.add(tail_dst + i).write_volatile(b) };
    }
}

/// Copies guest memory at `src` into `dst`, with the access pattern of [`copy_to_guest`].
///
/// # Safety
///
/// `src..src + dst.len()` must be valid for reads for the whole call and must not overlap
/// `dst`.
pub(crate) unsafe fn copy_from_guest(src: *const u8, dst: &mut [u8]) {
    let len = dst.len();
    let head = head_len(src.addr(), len);
    let words = (len - head) / WORD;
    let (head_dst, rest) = dst.split_at_mut(head);
    let (word_dst, tail_dst) = rest.split_at_mut(words * WORD);
    for (i, b) in head_dst.iter_mut().enumerate() {
        // SAFETY: `i < head <= len`, inside the source range the caller vouches for.
        *b = unsafe { src.add(i).read_volatile() };
    }
    // SAFETY: `head <= len`, so this is inside (or one past the end of) the source.
    let word_src = unsafe { src.add(head) }.cast::<Word>();
    for (i, chunk) in word_dst.chunks_exact_mut(WORD).enumerate() {
        // SAFETY: `head + (i + 1) * WORD <= len`, so the word lies inside the source; it is
        // `Word`-aligned by the choice of `head` (reached, since `words > 0`).
        let w = unsafe { word_src.add(i).read_volatile() };
        chunk.copy_from_slice(&w.to_ne_bytes());
    }
    let tail_src = head + words * WORD;
    for (i, b) in tail_dst.iter_mut().enumerate() {
        // SAFETY: `tail_src + i < len`, inside the source range.
        *b = unsafe { src.add(tail_src + i).read_volatile() };
    }
}

impl Drop for GuestMapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`size` describe exactly the mapping created in `map`, which nothing
        // else unmaps; after this the value is gone, so no access can follow.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.size) };
    }
}

bitflags! {
    /// `kvm_create_guest_memfd.flags` (`GUEST_MEMFD_FLAG_*`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct GuestMemfdFlags: u64 {
        /// `GUEST_MEMFD_FLAG_MMAP`: the guest_memfd may be `mmap`ed by the host.
        const MMAP = GUEST_MEMFD_FLAG_MMAP;
        /// `GUEST_MEMFD_FLAG_INIT_SHARED`: pages start out shared (host-accessible).
        const INIT_SHARED = GUEST_MEMFD_FLAG_INIT_SHARED;
    }
}

/// An owned guest_memfd: the private memory of a VM, created by `KVM_CREATE_GUEST_MEMFD`.
///
/// Created by [`Vm::create_guest_memfd`](crate::Vm::create_guest_memfd). The kernel keeps
/// its own reference to the file for every slot bound to it, so dropping this value while a
/// slot still uses it is safe.
#[derive(Debug)]
pub struct GuestMemfd {
    fd: OwnedFd,
    size: u64,
    flags: GuestMemfdFlags,
}

impl GuestMemfd {
    pub(crate) fn from_parts(fd: OwnedFd, size: u64, flags: GuestMemfdFlags) -> Self {
        Self { fd, size, flags }
    }

    /// The size given at creation.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The flags given at creation.
    pub fn flags(&self) -> GuestMemfdFlags {
        self.flags
    }

    fn fallocate(&self, mode: i32, offset: u64, len: u64, op: &'static str) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if len > 0 && end <= self.size => {}
            _ => {
                return Err(Error::OutOfBounds {
                    offset,
                    len,
                    size: self.size,
                });
            }
        }
        let (Ok(off), Ok(l)) = (i64::try_from(offset), i64::try_from(len)) else {
            return Err(Error::OutOfBounds {
                offset,
                len,
                size: self.size,
            });
        };
        // SAFETY: fallocate on a file descriptor we own; no memory is passed.
        let r = unsafe { libc::fallocate(self.fd.as_raw_fd(), mode, off, l) };
        if r < 0 {
            return Err(Error::ioctl(op, Errno::last()));
        }
        Ok(())
    }

    /// Frees the backing pages of `[offset, offset+len)` (`fallocate(PUNCH_HOLE |
    /// KEEP_SIZE)`). Used when a private range becomes shared, so the private copy does not
    /// keep consuming memory.
    ///
    /// ```no_run
    /// # use kvm_coco::{Kvm, VmType, GuestMemfdFlags};
    /// let vm = Kvm::open()?.create_vm(VmType::Default)?;
    /// let gmem = vm.create_guest_memfd(0x20_0000, GuestMemfdFlags::empty())?;
    /// gmem.punch_hole(0, 0x1000)?;
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn punch_hole(&self, offset: u64, len: u64) -> Result<()> {
        self.fallocate(
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            offset,
            len,
            "fallocate(PUNCH_HOLE)",
        )
    }

    /// Allocates the backing pages of `[offset, offset+len)` ahead of use
    /// (`fallocate(KEEP_SIZE)`; mode 0 is refused by guest_memfd with `EOPNOTSUPP`).
    ///
    /// ```no_run
    /// # use kvm_coco::{Kvm, VmType, GuestMemfdFlags};
    /// let vm = Kvm::open()?.create_vm(VmType::Default)?;
    /// let gmem = vm.create_guest_memfd(0x20_0000, GuestMemfdFlags::empty())?;
    /// gmem.allocate(0, 0x20_0000)?;
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn allocate(&self, offset: u64, len: u64) -> Result<()> {
        self.fallocate(libc::FALLOC_FL_KEEP_SIZE, offset, len, "fallocate")
    }

    /// Maps the whole guest_memfd into the host. Needs [`GuestMemfdFlags::MMAP`]; only pages
    /// that are shared can be touched (with `INIT_SHARED`, all of them initially), a private
    /// page raises `SIGBUS`.
    ///
    /// ```no_run
    /// # use kvm_coco::{Kvm, VmType, GuestMemfdFlags};
    /// let vm = Kvm::open()?.create_vm(VmType::Default)?;
    /// let flags = GuestMemfdFlags::MMAP | GuestMemfdFlags::INIT_SHARED;
    /// let map = vm.create_guest_memfd(0x1000, flags)?.map()?;
    /// map.write(0, b"shared")?;
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn map(&self) -> Result<GuestMapping> {
        let size = usize::try_from(self.size).map_err(|_| Error::BadRange {
            gpa: 0,
            size: self.size,
        })?;
        GuestMapping::map(size, Some(self.fd.as_fd()))
    }
}

impl AsFd for GuestMemfd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for GuestMemfd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

bitflags! {
    /// Memory slot flags settable through [`MemoryRegion`] (`KVM_MEM_*`). `KVM_MEM_GUEST_MEMFD`
    /// is set by [`MemoryRegion::guest_memfd`].
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct MemoryRegionFlags: u32 {
        /// `KVM_MEM_LOG_DIRTY_PAGES`.
        const LOG_DIRTY_PAGES = KVM_MEM_LOG_DIRTY_PAGES;
        /// `KVM_MEM_READONLY`: guest writes exit as MMIO.
        const READONLY = KVM_MEM_READONLY;
    }
}

/// A memory slot for `KVM_SET_USER_MEMORY_REGION2`, with owned backing.
///
/// ```
/// use std::sync::Arc;
/// use kvm_coco::{GuestMapping, MemoryRegion};
/// let mem = Arc::new(GuestMapping::anonymous(0x10_0000)?);
/// let region = MemoryRegion::new(0, 0, mem);
/// assert_eq!(region.size(), 0x10_0000);
/// # Ok::<(), kvm_coco::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct MemoryRegion {
    pub(crate) slot: u32,
    pub(crate) guest_phys_addr: u64,
    pub(crate) mapping: Arc<GuestMapping>,
    pub(crate) flags: MemoryRegionFlags,
    pub(crate) guest_memfd: Option<(Arc<GuestMemfd>, u64)>,
}

impl MemoryRegion {
    /// Slot `slot` maps guest-physical `[guest_phys_addr, +mapping.len())` to `mapping`.
    pub fn new(slot: u32, guest_phys_addr: u64, mapping: Arc<GuestMapping>) -> Self {
        Self {
            slot,
            guest_phys_addr,
            mapping,
            flags: MemoryRegionFlags::empty(),
            guest_memfd: None,
        }
    }

    /// Adds slot flags.
    pub fn flags(mut self, flags: MemoryRegionFlags) -> Self {
        self.flags |= flags;
        self
    }

    /// Binds the slot's private half to `gmem` starting at `offset` (sets
    /// `KVM_MEM_GUEST_MEMFD`). Pages whose attribute is private are then read from the
    /// guest_memfd, shared pages from the mapping.
    pub fn guest_memfd(mut self, gmem: Arc<GuestMemfd>, offset: u64) -> Self {
        self.guest_memfd = Some((gmem, offset));
        self
    }

    /// The slot number.
    pub fn slot(&self) -> u32 {
        self.slot
    }

    /// The first guest-physical address.
    pub fn guest_phys_addr(&self) -> u64 {
        self.guest_phys_addr
    }

    /// The size in bytes (the mapping's).
    pub fn size(&self) -> u64 {
        self.mapping.len() as u64
    }

    /// The host mapping.
    pub fn mapping(&self) -> &Arc<GuestMapping> {
        &self.mapping
    }
}

bitflags! {
    /// `kvm_memory_attributes.attributes` (`KVM_MEMORY_ATTRIBUTE_*`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct MemoryAttributes: u64 {
        /// `KVM_MEMORY_ATTRIBUTE_PRIVATE`: the range is private (guest_memfd-backed).
        const PRIVATE = KVM_MEMORY_ATTRIBUTE_PRIVATE as u64;
    }
}

/// The target state of [`Vm::convert_memory`](crate::Vm::convert_memory).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MemoryState {
    /// Host-visible memory (the slot's `userspace_addr` backing).
    Shared,
    /// Guest-private memory (the slot's guest_memfd backing).
    Private,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_checked() {
        assert!(check_range(0x1000, 0x1000).is_ok());
        assert!(matches!(check_range(0, 0), Err(Error::BadRange { .. })));
        assert!(check_range(0x800, 0x1000).is_err());
        assert!(check_range(0, 0x1001).is_err());
        assert!(check_range(u64::MAX - 0xfff, 0x2000).is_err());
    }

    #[test]
    fn mapping_bounds_are_enforced() {
        let m = GuestMapping::anonymous(0x1000).unwrap();
        assert!(m.write(0xfff, &[1]).is_ok());
        assert!(matches!(
            m.write(0xfff, &[1, 2]),
            Err(Error::OutOfBounds { .. })
        ));
        assert!(m.read(u64::MAX, &mut [0]).is_err());
        assert!(GuestMapping::anonymous(0).is_err());
        assert!(GuestMapping::anonymous(0x800).is_err());
    }

    /// A small deterministic generator (xorshift64*), so failures reproduce.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn fill(&mut self, buf: &mut [u8]) {
            for b in buf {
                *b = self.next() as u8;
            }
        }
    }

    fn read_vec(m: &GuestMapping, off: usize, len: usize) -> Vec<u8> {
        let mut v = vec![0xa5; len];
        m.read(off as u64, &mut v).unwrap();
        v
    }

    #[test]
    fn head_is_the_distance_to_the_next_word() {
        assert_eq!(head_len(0x1000, 100), 0);
        assert_eq!(head_len(0x1001, 100), WORD - 1);
        assert_eq!(head_len(0x1000 + WORD - 1, 100), 1);
        assert_eq!(head_len(0x1001, 2), 2);
        assert_eq!(head_len(0x1001, 0), 0);
    }

    #[test]
    fn copies_match_a_reference_at_odd_offsets_lengths_and_page_boundaries() {
        const SIZE: usize = 3 * PAGE_SIZE as usize;
        let page = PAGE_SIZE as usize;
        let m = GuestMapping::anonymous(SIZE).unwrap();
        let mut reference = vec![0u8; SIZE];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);

        let mut offsets: Vec<usize> = (0..=2 * WORD + 1).collect();
        for boundary in [page, 2 * page, SIZE] {
            offsets.extend(boundary - 2 * WORD - 1..boundary.min(SIZE - 1) + 2 * WORD + 2);
        }
        offsets.retain(|&o| o < SIZE);
        let mut lengths: Vec<usize> = (0..=4 * WORD + 1).collect();
        lengths.extend([page - 1, page, page + 1, 2 * page - 3, 2 * page + 5]);

        for &off in &offsets {
            for &len in &lengths {
                if off + len > SIZE {
                    assert!(m.write(off as u64, &vec![0; len]).is_err());
                    continue;
                }
                let mut data = vec![0u8; len];
                rng.fill(&mut data);
                m.write(off as u64, &data).unwrap();
                reference[off..off + len].copy_from_slice(&data);

                // The bytes written read back, at the same and at shifted windows that
                // start or end mid-word and take in untouched neighbours.
                assert_eq!(read_vec(&m, off, len), data, "write at {off:#x}+{len}");
                let lo = off.saturating_sub(WORD + 3);
                let hi = (off + len + WORD + 5).min(SIZE);
                assert_eq!(
                    read_vec(&m, lo, hi - lo),
                    reference[lo..hi],
                    "neighbours of {off:#x}+{len}"
                );
            }
        }
        assert_eq!(read_vec(&m, 0, SIZE), reference);
        // Every read window of the final contents.
        for &off in &offsets {
            for &len in &lengths {
                if off + len <= SIZE {
                    assert_eq!(read_vec(&m, off, len), reference[off..off + len]);
                }
            }
        }
    }

    #[test]
    fn concurrent_writers_of_adjacent_ranges_do_not_clobber_each_other() {
        // Four threads own interleaved ranges of odd lengths (so boundaries fall mid-word and
        // across the page boundary) and rewrite them concurrently through `&GuestMapping`: a
        // copy that touched a neighbour's bytes (a read-modify-write of a whole word at the
        // edges, say) would lose or mix patterns.
        const THREADS: usize = 4;
        const STRIDE: usize = 13;
        let size = 2 * PAGE_SIZE as usize;
        let m = Arc::new(GuestMapping::anonymous(size).unwrap());
        let owner = |i: usize| (i / STRIDE) % THREADS;
        let barrier = std::sync::Barrier::new(THREADS);
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let (m, barrier) = (&m, &barrier);
                s.spawn(move || {
                    let ranges: Vec<(usize, usize)> = (t * STRIDE..size)
                        .step_by(THREADS * STRIDE)
                        .map(|start| (start, STRIDE.min(size - start)))
                        .collect();
                    barrier.wait();
                    for round in 0..200u8 {
                        let v = (t as u8 + 1).wrapping_mul(round.wrapping_add(1)) | 1;
                        for &(start, len) in &ranges {
                            m.write(start as u64, &vec![v; len]).unwrap();
                        }
                        // Nobody else writes these bytes: they still hold this round's value.
                        for &(start, len) in &ranges {
                            assert_eq!(read_vec(m, start, len), vec![v; len], "at {start:#x}");
                        }
                    }
                });
            }
        });
        let got = read_vec(&m, 0, size);
        for (i, &b) in got.iter().enumerate() {
            let t = owner(i);
            let last = (t as u8 + 1).wrapping_mul(200) | 1;
            assert_eq!(b, last, "byte {i:#x} of thread {t}");
        }
    }

    #[test]
    fn aligned_words_are_copied_whole() {
        // A writer flips aligned words between all-zero and all-one bytes; readers copy
        // ranges covering them, from aligned and unaligned starts, and must never see a word
        // with both kinds of byte (byte-wise copies, or a compiler-split access, would).
        let m = Arc::new(GuestMapping::anonymous(PAGE_SIZE as usize).unwrap());
        let base = m.host_addr() as usize;
        assert_eq!(base % WORD, 0);
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                for i in 0..200_000u32 {
                    let v = if i % 2 == 0 { 0xff } else { 0 };
                    m.write(WORD as u64, &[v; 3 * WORD]).unwrap();
                }
                done.store(true, std::sync::atomic::Ordering::Relaxed);
            });
            for start in [WORD, WORD - 3] {
                let (m, done) = (&m, &done);
                s.spawn(move || {
                    let mut buf = [0u8; 4 * WORD];
                    while !done.load(std::sync::atomic::Ordering::Relaxed) {
                        let len = 3 * WORD + (WORD - start);
                        m.read(start as u64, &mut buf[..len]).unwrap();
                        for w in buf[WORD - start..len].chunks_exact(WORD) {
                            assert!(
                                w.iter().all(|&b| b == w[0]),
                                "torn word {w:x?} read from {start}"
                            );
                        }
                    }
                });
            }
        });
    }

    #[test]
    fn flag_values_match_the_kernel() {
        // include/uapi/linux/kvm.h (facts linux-uapi §5.1).
        assert_eq!(GuestMemfdFlags::MMAP.bits(), 1);
        assert_eq!(GuestMemfdFlags::INIT_SHARED.bits(), 2);
        assert_eq!(MemoryAttributes::PRIVATE.bits(), 8);
        assert_eq!(MemoryRegionFlags::READONLY.bits(), 2);
    }
}
