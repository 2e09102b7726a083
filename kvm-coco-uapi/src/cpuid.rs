//! `struct kvm_cpuid2` / `struct kvm_cpuid_entry2` and a safe owned buffer for the three
//! flexible-array structs that end in a `kvm_cpuid2`: `kvm_cpuid2` itself,
//! [`crate::KvmTdxCapabilities`] and [`crate::KvmTdxInitVm`].
//!
//! In C these are a fixed header followed by `nent` 40-byte entries in one allocation.
//! [`CpuidFam`] owns such an allocation: the header type `H` says where the embedded
//! `kvm_cpuid2` sits, the storage `S` is either a `Vec<u64>` (feature `alloc`, on by
//! default; [`CpuidFam::with_capacity`]) or any caller-provided `[u64; N]` / `&mut [u64]`
//! (no allocation; [`CpuidFam::from_storage`]). All accessors copy values in and out, so the
//! buffer never hands out references into kernel-written memory, and an `nent` written by the
//! kernel is clamped to the capacity when reading.
//!
//! ```
//! use kvm_coco_uapi::{CpuidFam, KvmCpuid2, KvmCpuidEntry2};
//! // A no-alloc buffer for 4 entries: 8 + 4 * 40 = 168 bytes = 21 u64.
//! let mut buf = CpuidFam::<KvmCpuid2, [u64; 21]>::from_storage([0; 21]).unwrap();
//! assert_eq!(buf.capacity(), 4);
//! buf.push(KvmCpuidEntry2 { function: 0x8000_0008, ..Default::default() }).unwrap();
//! assert_eq!(buf.nent(), 1);
//! assert_eq!(buf.entries().next().unwrap().function, 0x8000_0008);
//! ```

use core::marker::PhantomData;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

uapi_consts! { CONSTANTS;
    /// `KVM_CPUID_FLAG_SIGNIFCANT_INDEX` (sic, bit 0): the entry's `index` (sub-leaf)
    /// matters.
    pub const KVM_CPUID_FLAG_SIGNIFCANT_INDEX: u32 = 1 << 0;
    /// `KVM_CPUID_FLAG_STATEFUL_FUNC` (bit 1), legacy.
    pub const KVM_CPUID_FLAG_STATEFUL_FUNC: u32 = 1 << 1;
    /// `KVM_CPUID_FLAG_STATE_READ_NEXT` (bit 2), legacy.
    pub const KVM_CPUID_FLAG_STATE_READ_NEXT: u32 = 1 << 2;
}

/// `KVM_MAX_CPUID_ENTRIES` (256, kernel-internal): the most entries KVM accepts, e.g. in
/// [`crate::KvmTdxInitVm`] (`-E2BIG` above).
pub const KVM_MAX_CPUID_ENTRIES: u32 = 256;

uapi_structs! { STRUCTS;
    /// The header of a CPUID array (`struct kvm_cpuid2`, 8 bytes, align 4), followed in
    /// memory by `nent` [`KvmCpuidEntry2`] (the C flexible array `entries[]`, not part of
    /// this type; see [`CpuidFam`]).
    #[repr(C)]
    pub struct KvmCpuid2 as "kvm_cpuid2" {
        /// Number of entries (in: capacity or count, out: count, depending on the ioctl).
        pub nent: u32,
        /// Must be 0 (KVM_TDX_INIT_VM checks it).
        pub padding: u32,
    }

    /// One CPUID leaf (`struct kvm_cpuid_entry2`, 40 bytes, align 4).
    #[repr(C)]
    pub struct KvmCpuidEntry2 as "kvm_cpuid_entry2" {
        /// Leaf (EAX input).
        pub function: u32,
        /// Sub-leaf (ECX input).
        pub index: u32,
        /// [`KVM_CPUID_FLAG_SIGNIFCANT_INDEX`] and friends.
        pub flags: u32,
        /// EAX output.
        pub eax: u32,
        /// EBX output.
        pub ebx: u32,
        /// ECX output.
        pub ecx: u32,
        /// EDX output.
        pub edx: u32,
        /// Reserved.
        pub padding: [u32; 3],
    }
}

/// A uAPI struct whose tail is a `struct kvm_cpuid2` followed by its flexible array.
pub trait CpuidFamHeader: FromBytes + IntoBytes + KnownLayout + Immutable + Copy + Default {
    /// Offset of the embedded [`KvmCpuid2`] (its `nent`) within the header.
    const CPUID_OFFSET: usize;
}

impl CpuidFamHeader for KvmCpuid2 {
    const CPUID_OFFSET: usize = 0;
}

/// Errors of [`CpuidFam`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum FamError {
    /// The storage cannot even hold the header.
    #[error("buffer of {have} bytes is smaller than the {need}-byte header")]
    StorageTooSmall {
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// No room for another entry.
    #[error("cpuid buffer is full ({capacity} entries)")]
    Full {
        /// The capacity in entries.
        capacity: usize,
    },
}

/// An owned header-plus-CPUID-entries buffer laid out exactly as the kernel expects.
///
/// Pass [`CpuidFam::as_mut_ptr`] as the ioctl argument (or as `data` of a
/// [`crate::KvmTdxCmd`]). See the [module documentation](crate::cpuid).
#[derive(Clone, Debug)]
pub struct CpuidFam<H: CpuidFamHeader, S: AsRef<[u64]> + AsMut<[u64]>> {
    storage: S,
    _header: PhantomData<H>,
}

#[cfg(feature = "alloc")]
impl<H: CpuidFamHeader> CpuidFam<H, alloc::vec::Vec<u64>> {
    /// A zeroed heap buffer with room for `entries` entries (and `nent` = 0).
    pub fn with_capacity(entries: usize) -> Self {
        let bytes = Self::bytes_for(entries);
        let words = bytes.div_ceil(8);
        Self {
            storage: alloc::vec![0u64; words],
            _header: PhantomData,
        }
    }
}

impl<H: CpuidFamHeader, S: AsRef<[u64]> + AsMut<[u64]>> CpuidFam<H, S> {
    const ENTRY: usize = core::mem::size_of::<KvmCpuidEntry2>();

    /// The C size of the struct with `entries` entries: `sizeof(H) + 40 * entries`.
    pub const fn bytes_for(entries: usize) -> usize {
        core::mem::size_of::<H>() + Self::ENTRY * entries
    }

    /// Wraps caller storage (8-byte aligned because it is `u64`), zeroing it.
    pub fn from_storage(mut storage: S) -> Result<Self, FamError> {
        storage.as_mut().fill(0);
        let have = storage.as_ref().len() * 8;
        let need = core::mem::size_of::<H>();
        if have < need {
            return Err(FamError::StorageTooSmall { need, have });
        }
        Ok(Self {
            storage,
            _header: PhantomData,
        })
    }

    fn bytes(&self) -> &[u8] {
        self.storage.as_ref().as_bytes()
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        self.storage.as_mut().as_mut_bytes()
    }

    /// How many entries fit.
    pub fn capacity(&self) -> usize {
        (self.bytes().len() - core::mem::size_of::<H>()) / Self::ENTRY
    }

    /// A copy of the header (including the embedded `kvm_cpuid2`).
    pub fn header(&self) -> H {
        H::read_from_prefix(self.bytes())
            .map(|(h, _)| h)
            .unwrap_or_default()
    }

    /// Replaces the header, **keeping the current `nent`**.
    pub fn set_header(&mut self, header: &H) {
        let nent = self.nent();
        let _ = header.write_to_prefix(self.bytes_mut());
        self.set_nent_raw(nent);
    }

    /// The `nent` field as stored (possibly written by the kernel, possibly larger than the
    /// capacity).
    pub fn nent(&self) -> u32 {
        let off = H::CPUID_OFFSET;
        self.bytes()
            .get(off..off + 4)
            .and_then(|b| u32::read_from_bytes(b).ok())
            .unwrap_or(0)
    }

    fn set_nent_raw(&mut self, nent: u32) {
        let off = H::CPUID_OFFSET;
        if let Some(b) = self.bytes_mut().get_mut(off..off + 4) {
            b.copy_from_slice(&nent.to_ne_bytes());
        }
    }

    /// Sets `nent` to the capacity: the input KVM_TDX_CAPABILITIES and
    /// KVM_GET_SUPPORTED_CPUID / KVM_TDX_GET_CPUID expect.
    pub fn set_nent_to_capacity(&mut self) {
        let cap = u32::try_from(self.capacity()).unwrap_or(u32::MAX);
        self.set_nent_raw(cap);
    }

    /// Removes every entry (`nent` = 0, entries zeroed).
    pub fn clear(&mut self) {
        let hdr = core::mem::size_of::<H>();
        if let Some(tail) = self.bytes_mut().get_mut(hdr..) {
            tail.fill(0);
        }
        self.set_nent_raw(0);
    }

    /// Entry `i` (below `min(nent, capacity)`), copied out.
    pub fn entry(&self, i: usize) -> Option<KvmCpuidEntry2> {
        if i >= self.len() {
            return None;
        }
        let off = core::mem::size_of::<H>() + i * Self::ENTRY;
        self.bytes()
            .get(off..off + Self::ENTRY)
            .and_then(|b| KvmCpuidEntry2::read_from_bytes(b).ok())
    }

    /// `min(nent, capacity)`: the number of entries it is safe to read.
    pub fn len(&self) -> usize {
        (self.nent() as usize).min(self.capacity())
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entries, copied out (at most the capacity, whatever `nent` says).
    pub fn entries(&self) -> impl Iterator<Item = KvmCpuidEntry2> + '_ {
        (0..self.len()).filter_map(move |i| self.entry(i))
    }

    /// Finds the entry for `function` / `index`.
    pub fn find(&self, function: u32, index: u32) -> Option<KvmCpuidEntry2> {
        self.entries()
            .find(|e| e.function == function && e.index == index)
    }

    /// Appends an entry and increments `nent`.
    pub fn push(&mut self, entry: KvmCpuidEntry2) -> Result<(), FamError> {
        let n = self.len();
        if n >= self.capacity() {
            return Err(FamError::Full {
                capacity: self.capacity(),
            });
        }
        let off = core::mem::size_of::<H>() + n * Self::ENTRY;
        match self.bytes_mut().get_mut(off..off + Self::ENTRY) {
            Some(dst) => dst.copy_from_slice(entry.as_bytes()),
            None => return Err(FamError::Full { capacity: n }),
        }
        self.set_nent_raw(n as u32 + 1);
        Ok(())
    }

    /// The whole buffer as the kernel sees it.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes()
    }

    /// The whole buffer, writable.
    pub fn as_mut_bytes(&mut self) -> &mut [u8] {
        self.bytes_mut()
    }

    /// Pointer to pass to the kernel (valid while `self` is neither moved nor dropped).
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.bytes_mut().as_mut_ptr()
    }

    /// Gives the storage back.
    pub fn into_storage(self) -> S {
        self.storage
    }
}

assert_layout!(KvmCpuid2, 8, 4, { nent: 0, padding: 4 });
assert_layout!(KvmCpuidEntry2, 40, 4, {
    function: 0, index: 4, flags: 8, eax: 12, ebx: 16, ecx: 20, edx: 24, padding: 28
});
