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
/// The mapping is `MAP_SHARED`, read-write, and unmapped on drop. The guest writes to it
/// concurrently with the host, so it is accessed through copying methods
/// ([`write`](Self::write), [`read`](Self::read)) rather than through Rust references.
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

// SAFETY: the mapping is plain memory owned by this value; all accesses go through raw
// copies, and the pointer stays valid until drop, so it may move between threads.
unsafe impl Send for GuestMapping {}
// SAFETY: shared access only performs raw copies into or out of the mapping (the guest may
// write concurrently anyway), never creates Rust references to its contents.
unsafe impl Sync for GuestMapping {}

impl GuestMapping {
    /// Maps `size` bytes of zeroed anonymous memory (`MAP_SHARED | MAP_ANONYMOUS |
    /// MAP_NORESERVE`). `size` must be a non-zero multiple of 4 KiB.
    pub fn anonymous(size: usize) -> Result<Self> {
        Self::map(size, None)
    }

    fn map(size: usize, fd: Option<BorrowedFd<'_>>) -> Result<Self> {
        if size == 0 || !(size as u64).is_multiple_of(PAGE_SIZE) {
            return Err(Error::BadRange {
                gpa: 0,
                size: size as u64,
            });
        }
        let (flags, raw) = match fd {
            Some(fd) => (libc::MAP_SHARED, fd.as_raw_fd()),
            None => (
                libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
            ),
        };
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

    /// Copies `data` into the mapping at `offset`.
    pub fn write(&self, offset: u64, data: &[u8]) -> Result<()> {
        let off = self.check(offset, data.len())?;
        // SAFETY: `off + data.len() <= size` was checked, so the destination lies inside the
        // live mapping; the source is a distinct Rust slice, so the ranges cannot overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.as_ptr().add(off), data.len())
        };
        Ok(())
    }

    /// Copies bytes at `offset` out of the mapping into `buf`.
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let off = self.check(offset, buf.len())?;
        // SAFETY: the source range lies inside the live mapping (checked above) and the
        // destination is a distinct, exclusively borrowed slice.
        unsafe {
            std::ptr::copy_nonoverlapping(self.ptr.as_ptr().add(off), buf.as_mut_ptr(), buf.len())
        };
        Ok(())
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

    #[test]
    fn flag_values_match_the_kernel() {
        // include/uapi/linux/kvm.h (facts linux-uapi §5.1).
        assert_eq!(GuestMemfdFlags::MMAP.bits(), 1);
        assert_eq!(GuestMemfdFlags::INIT_SHARED.bits(), 2);
        assert_eq!(MemoryAttributes::PRIVATE.bits(), 8);
        assert_eq!(MemoryRegionFlags::READONLY.bits(), 2);
    }
}
