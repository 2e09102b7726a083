//! Private memory: guest_memfd creation, `KVM_SET_USER_MEMORY_REGION2`, memory attributes
//! and pre-faulting (`include/uapi/linux/kvm.h`).
//!
//! SNP, TDX and SW_PROTECTED VMs back private memory with a *guest_memfd*
//! ([`KVM_CREATE_GUEST_MEMFD`]) bound to a memslot through
//! [`KvmUserspaceMemoryRegion2`] with [`KVM_MEM_GUEST_MEMFD`]. Whether a GPA is private or
//! shared is its [`KVM_MEMORY_ATTRIBUTE_PRIVATE`] attribute, set with
//! [`KVM_SET_MEMORY_ATTRIBUTES`]; all memory starts shared and there is no GET ioctl.

use crate::ioctl::{KVMIO, iow, iowr};

uapi_consts! { CONSTANTS;
    /// `KVM_MEM_LOG_DIRTY_PAGES` (bit 0) memslot flag.
    pub const KVM_MEM_LOG_DIRTY_PAGES: u32 = 1 << 0;
    /// `KVM_MEM_READONLY` (bit 1) memslot flag.
    pub const KVM_MEM_READONLY: u32 = 1 << 1;
    /// `KVM_MEM_GUEST_MEMFD` (bit 2) memslot flag: the slot has a guest_memfd for its
    /// private pages. Cannot be combined with LOG_DIRTY_PAGES or READONLY, and only the v2
    /// ioctl accepts it (`-EINVAL`).
    pub const KVM_MEM_GUEST_MEMFD: u32 = 1 << 2;
    /// `KVM_MEMORY_ATTRIBUTE_PRIVATE` (bit 3): the GPA range is private (guest_memfd-backed).
    pub const KVM_MEMORY_ATTRIBUTE_PRIVATE: u64 = 1 << 3;
    /// `GUEST_MEMFD_FLAG_MMAP` (bit 0): the guest_memfd may be mmapped by user space.
    pub const GUEST_MEMFD_FLAG_MMAP: u64 = 1 << 0;
    /// `GUEST_MEMFD_FLAG_INIT_SHARED` (bit 1): the guest_memfd's pages start shared.
    pub const GUEST_MEMFD_FLAG_INIT_SHARED: u64 = 1 << 1;
    /// `KVM_SET_USER_MEMORY_REGION2` = `_IOW(KVMIO, 0x49, struct
    /// kvm_userspace_memory_region2)` = 0x40A0AE49 (VM fd; [`crate::KVM_CAP_USER_MEMORY2`]).
    pub const KVM_SET_USER_MEMORY_REGION2: u32 =
        iow(KVMIO, 0x49, core::mem::size_of::<KvmUserspaceMemoryRegion2>());
    /// `KVM_SET_MEMORY_ATTRIBUTES` = `_IOW(KVMIO, 0xd2, struct kvm_memory_attributes)` =
    /// 0x4020AED2 (VM fd; [`crate::KVM_CAP_MEMORY_ATTRIBUTES`]).
    pub const KVM_SET_MEMORY_ATTRIBUTES: u32 =
        iow(KVMIO, 0xd2, core::mem::size_of::<KvmMemoryAttributes>());
    /// `KVM_CREATE_GUEST_MEMFD` = `_IOWR(KVMIO, 0xd4, struct kvm_create_guest_memfd)` =
    /// 0xC040AED4 (VM fd; returns a new fd; [`crate::KVM_CAP_GUEST_MEMFD`]).
    pub const KVM_CREATE_GUEST_MEMFD: u32 =
        iowr(KVMIO, 0xd4, core::mem::size_of::<KvmCreateGuestMemfd>());
    /// `KVM_PRE_FAULT_MEMORY` = `_IOWR(KVMIO, 0xd5, struct kvm_pre_fault_memory)` =
    /// 0xC040AED5 (**vCPU** fd; [`crate::KVM_CAP_PRE_FAULT_MEMORY`]). SNP and TDX allow it
    /// only after SNP_LAUNCH_FINISH / TDX FINALIZE_VM.
    pub const KVM_PRE_FAULT_MEMORY: u32 =
        iowr(KVMIO, 0xd5, core::mem::size_of::<KvmPreFaultMemory>());
}

bitflags::bitflags! {
    /// `kvm_userspace_memory_region2.flags` (`KVM_MEM_*`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub struct MemslotFlags: u32 {
        /// [`KVM_MEM_LOG_DIRTY_PAGES`]
        const LOG_DIRTY_PAGES = KVM_MEM_LOG_DIRTY_PAGES;
        /// [`KVM_MEM_READONLY`]
        const READONLY = KVM_MEM_READONLY;
        /// [`KVM_MEM_GUEST_MEMFD`]
        const GUEST_MEMFD = KVM_MEM_GUEST_MEMFD;
    }
}

bitflags::bitflags! {
    /// `kvm_memory_attributes.attributes`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub struct MemoryAttributes: u64 {
        /// [`KVM_MEMORY_ATTRIBUTE_PRIVATE`]
        const PRIVATE = KVM_MEMORY_ATTRIBUTE_PRIVATE;
    }
}

bitflags::bitflags! {
    /// `kvm_create_guest_memfd.flags` (`GUEST_MEMFD_FLAG_*`); must be a subset of
    /// [`crate::KVM_CAP_GUEST_MEMFD_FLAGS`].
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub struct GuestMemfdFlags: u64 {
        /// [`GUEST_MEMFD_FLAG_MMAP`]
        const MMAP = GUEST_MEMFD_FLAG_MMAP;
        /// [`GUEST_MEMFD_FLAG_INIT_SHARED`]
        const INIT_SHARED = GUEST_MEMFD_FLAG_INIT_SHARED;
    }
}

uapi_structs! { STRUCTS;
    /// [`KVM_SET_USER_MEMORY_REGION2`] argument (`struct kvm_userspace_memory_region2`,
    /// 160 bytes).
    ///
    /// `guest_memfd` must come from [`KVM_CREATE_GUEST_MEMFD`] on the same VM, and ranges
    /// bound to one guest_memfd must not overlap.
    #[repr(C)]
    pub struct KvmUserspaceMemoryRegion2 as "kvm_userspace_memory_region2" {
        /// Slot id (address-space id in bits 31:16).
        pub slot: u32,
        /// [`MemslotFlags`].
        pub flags: u32,
        /// Guest physical base.
        pub guest_phys_addr: u64,
        /// Size in bytes (0 deletes the slot).
        pub memory_size: u64,
        /// User address backing the shared view.
        pub userspace_addr: u64,
        /// Offset into the guest_memfd.
        pub guest_memfd_offset: u64,
        /// The guest_memfd fd (with [`KVM_MEM_GUEST_MEMFD`]).
        pub guest_memfd: u32,
        /// Padding.
        pub pad1: u32,
        /// Reserved.
        pub pad2: [u64; 14],
    }

    /// [`KVM_SET_MEMORY_ATTRIBUTES`] argument (`struct kvm_memory_attributes`, 32 bytes).
    ///
    /// `flags` 0, `attributes` within the supported set, `address`/`size` page-aligned,
    /// `size` non-zero without overflow; each violation gives `-EINVAL`.
    #[repr(C)]
    pub struct KvmMemoryAttributes as "kvm_memory_attributes" {
        /// Guest physical start.
        pub address: u64,
        /// Length in bytes.
        pub size: u64,
        /// [`MemoryAttributes`] to set (absent bits are cleared).
        pub attributes: u64,
        /// Must be 0.
        pub flags: u64,
    }

    /// [`KVM_CREATE_GUEST_MEMFD`] argument (`struct kvm_create_guest_memfd`, 64 bytes).
    ///
    /// `size` > 0 and page-aligned; `flags` ⊆ [`crate::KVM_CAP_GUEST_MEMFD_FLAGS`]
    /// (`-EINVAL`). `reserved` is not checked in 7.3 (keep it zero).
    #[repr(C)]
    pub struct KvmCreateGuestMemfd as "kvm_create_guest_memfd" {
        /// Size in bytes.
        pub size: u64,
        /// [`GuestMemfdFlags`].
        pub flags: u64,
        /// Reserved.
        pub reserved: [u64; 6],
    }

    /// [`KVM_PRE_FAULT_MEMORY`] argument (`struct kvm_pre_fault_memory`, 64 bytes, in/out:
    /// progress is reported by advancing `gpa` and reducing `size`).
    #[repr(C)]
    pub struct KvmPreFaultMemory as "kvm_pre_fault_memory" {
        /// Guest physical start.
        pub gpa: u64,
        /// Length in bytes.
        pub size: u64,
        /// Must be 0.
        pub flags: u64,
        /// Reserved.
        pub padding: [u64; 5],
    }
}

assert_layout!(KvmUserspaceMemoryRegion2, 160, 8, {
    slot: 0, flags: 4, guest_phys_addr: 8, memory_size: 16, userspace_addr: 24,
    guest_memfd_offset: 32, guest_memfd: 40, pad1: 44, pad2: 48
});
assert_layout!(KvmMemoryAttributes, 32, 8, { address: 0, size: 8, attributes: 16, flags: 24 });
assert_layout!(KvmCreateGuestMemfd, 64, 8, { size: 0, flags: 8, reserved: 16 });
assert_layout!(KvmPreFaultMemory, 64, 8, { gpa: 0, size: 8, flags: 16, padding: 24 });
const _: () = {
    assert!(KVM_SET_USER_MEMORY_REGION2 == 0x40A0_AE49);
    assert!(KVM_SET_MEMORY_ATTRIBUTES == 0x4020_AED2);
    assert!(KVM_CREATE_GUEST_MEMFD == 0xC040_AED4);
    assert!(KVM_PRE_FAULT_MEMORY == 0xC040_AED5);
};
