//! VMs: vCPU creation, memory slots, guest_memfd and memory attributes.
//!
//! The `KVM_MEMORY_ENCRYPT_OP` sub-commands are issued through the views [`Vm::sev`] and
//! [`Vm::tdx`] make, defined in [`crate::ops`].

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use kvm_bindings::{
    KVM_MEM_GUEST_MEMFD, kvm_create_guest_memfd, kvm_enable_cap, kvm_enc_region,
    kvm_memory_attributes, kvm_userspace_memory_region2,
};
use kvm_coco_uapi::vm::{
    KVM_CAP_EXIT_HYPERCALL, KVM_CAP_GUEST_MEMFD, KVM_CAP_GUEST_MEMFD_FLAGS,
    KVM_CAP_MEMORY_ATTRIBUTES,
};
use kvm_ioctls::VmFd;

use crate::error::{Error, Result};
use crate::memory::{
    GuestMapping, GuestMemfd, GuestMemfdFlags, MemoryAttributes, MemoryRegion, MemoryState,
    PAGE_SIZE, check_range,
};
use crate::vcpu::{StateProtection, Vcpu};
use crate::vm_type::VmType;

/// State shared by a VM and its vCPUs: the fd and every memory slot's backing.
///
/// vCPUs hold an `Arc` of it, so guest memory stays mapped while any vCPU can still run.
#[derive(Debug)]
pub(crate) struct VmShared {
    pub(crate) fd: VmFd,
    pub(crate) vm_type: VmType,
    // The protected-state trackers of this VM's vCPUs.
    vcpu_states: Mutex<Vec<Weak<StateProtection>>>,
    // Declared after `fd`, so the fd is closed before the mappings are unmapped.
    regions: Mutex<BTreeMap<u32, MemoryRegion>>,
}

/// A KVM virtual machine of a given [`VmType`].
///
/// ```no_run
/// use std::sync::Arc;
/// use kvm_coco::{GuestMapping, Kvm, MemoryRegion, VmType};
/// let vm = Kvm::open()?.create_vm(VmType::Default)?;
/// let mem = Arc::new(GuestMapping::anonymous(0x10_0000)?);
/// vm.set_memory_region(MemoryRegion::new(0, 0, mem.clone()))?;
/// let vcpu = vm.create_vcpu(0)?;
/// # Ok::<(), kvm_coco::Error>(())
/// ```
#[derive(Debug)]
pub struct Vm {
    shared: Arc<VmShared>,
}

impl Vm {
    pub(crate) fn new(fd: VmFd, vm_type: VmType) -> Self {
        Self {
            shared: Arc::new(VmShared {
                fd,
                vm_type,
                vcpu_states: Mutex::new(Vec::new()),
                regions: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    pub(crate) fn fd(&self) -> &VmFd {
        &self.shared.fd
    }

    fn regions(&self) -> MutexGuard<'_, BTreeMap<u32, MemoryRegion>> {
        self.shared
            .regions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The type this VM was created with.
    pub fn vm_type(&self) -> VmType {
        self.shared.vm_type
    }

    /// `KVM_CHECK_EXTENSION` on the VM fd: the VM-specific answer (e.g.
    /// `KVM_CAP_MEMORY_ATTRIBUTES` is 8 only on VMs with private memory).
    ///
    /// ```no_run
    /// use kvm_coco_uapi::vm::KVM_CAP_MEMORY_ATTRIBUTES;
    /// let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::Default)?;
    /// println!("{}", vm.check_extension(KVM_CAP_MEMORY_ATTRIBUTES));
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    #[inline]
    pub fn check_extension(&self, cap: u32) -> i32 {
        self.fd().check_extension_raw(libc::c_ulong::from(cap))
    }

    /// `KVM_CREATE_VCPU`. The vCPU keeps this VM's memory alive.
    ///
    /// ```no_run
    /// let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::Default)?;
    /// let vcpu = vm.create_vcpu(0)?;
    /// assert_eq!(vcpu.id(), 0);
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn create_vcpu(&self, id: u64) -> Result<Vcpu> {
        let fd = self
            .fd()
            .create_vcpu(id)
            .map_err(|e| Error::ioctl("KVM_CREATE_VCPU", e))?;
        let protection = Arc::new(StateProtection::new(self.vm_type()));
        {
            let mut states = self
                .shared
                .vcpu_states
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            states.retain(|w| w.strong_count() > 0);
            states.push(Arc::downgrade(&protection));
        }
        Ok(Vcpu::new(fd, id, Arc::clone(&self.shared), protection))
    }

    /// Marks the state of every live vCPU of this VM as protected (see
    /// [`Vcpu::mark_state_protected`]). Called by [`SevVm::launch_update_vmsa`] and
    /// [`SevVm::snp_launch_finish`] on success.
    ///
    /// [`SevVm::launch_update_vmsa`]: crate::ops::SevVm::launch_update_vmsa
    /// [`SevVm::snp_launch_finish`]: crate::ops::SevVm::snp_launch_finish
    ///
    /// ```no_run
    /// let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::SevEs)?;
    /// let vcpu = vm.create_vcpu(0)?;
    /// vm.mark_vcpus_state_protected();
    /// assert!(vcpu.is_state_protected());
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn mark_vcpus_state_protected(&self) {
        let states = self
            .shared
            .vcpu_states
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for s in states.iter().filter_map(Weak::upgrade) {
            s.mark_protected();
        }
    }

    /// `KVM_ENABLE_CAP` on the VM fd.
    ///
    /// ```no_run
    /// use kvm_bindings::kvm_enable_cap;
    /// let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::Default)?;
    /// let cap = kvm_enable_cap { cap: kvm_bindings::KVM_CAP_X86_DISABLE_EXITS, ..Default::default() };
    /// vm.enable_cap(&cap)?;
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn enable_cap(&self, cap: &kvm_enable_cap) -> Result<()> {
        self.fd()
            .enable_cap(cap)
            .map_err(|e| Error::ioctl("KVM_ENABLE_CAP", e))
    }

    /// Enables `KVM_CAP_EXIT_HYPERCALL` for `KVM_HC_MAP_GPA_RANGE` (mask `1 << 12`), so SNP
    /// page-state changes and TDX MapGPA reach userspace as [`Exit::MapGpaRange`].
    ///
    /// [`Exit::MapGpaRange`]: crate::Exit::MapGpaRange
    ///
    /// ```no_run
    /// let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::Default)?;
    /// vm.enable_map_gpa_range_exits()?;
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn enable_map_gpa_range_exits(&self) -> Result<()> {
        let mut cap = kvm_enable_cap {
            cap: KVM_CAP_EXIT_HYPERCALL,
            ..Default::default()
        };
        cap.args[0] = 1 << kvm_coco_uapi::KVM_HC_MAP_GPA_RANGE;
        self.enable_cap(&cap)
    }

    /// `KVM_SET_TSS_ADDR` (needed on Intel before running real-mode code on older CPUs).
    ///
    /// ```no_run
    /// let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::Default)?;
    /// vm.set_tss_address(0xfffb_d000)?;
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn set_tss_address(&self, addr: usize) -> Result<()> {
        self.fd()
            .set_tss_address(addr)
            .map_err(|e| Error::ioctl("KVM_SET_TSS_ADDR", e))
    }

    /// `KVM_SET_USER_MEMORY_REGION2` for `region`, keeping its mapping (and guest_memfd)
    /// alive for the VM's lifetime. Replaces a region with the same slot number.
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use kvm_coco::{GuestMapping, GuestMemfdFlags, MemoryRegion};
    /// let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::Default)?;
    /// let mem = Arc::new(GuestMapping::anonymous(0x20_0000)?);
    /// let gmem = Arc::new(vm.create_guest_memfd(0x20_0000, GuestMemfdFlags::empty())?);
    /// vm.set_memory_region(MemoryRegion::new(0, 0, mem).guest_memfd(gmem, 0))?;
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn set_memory_region(&self, region: MemoryRegion) -> Result<()> {
        let mut flags = region.flags.bits();
        let (gmem_fd, gmem_offset) = match &region.guest_memfd {
            Some((g, off)) => {
                flags |= KVM_MEM_GUEST_MEMFD;
                (g.as_raw_fd() as u32, *off)
            }
            None => (0, 0),
        };
        let raw = kvm_userspace_memory_region2 {
            slot: region.slot,
            flags,
            guest_phys_addr: region.guest_phys_addr,
            memory_size: region.size(),
            userspace_addr: region.mapping.host_addr(),
            guest_memfd_offset: gmem_offset,
            guest_memfd: gmem_fd,
            ..Default::default()
        };
        let mut regions = self.regions();
        // SAFETY: `userspace_addr`/`memory_size` describe exactly `region.mapping`, which is
        // stored in the VM state below (shared with every vCPU) and therefore stays mapped
        // for as long as the kernel may access it; the previous region of this slot is
        // dropped only after the kernel has switched to the new one.
        unsafe { self.set_user_memory_region2_raw(raw) }?;
        regions.insert(region.slot, region);
        Ok(())
    }

    /// Deletes memory slot `slot` (a `KVM_SET_USER_MEMORY_REGION2` of size 0) and releases
    /// its mapping.
    ///
    /// ```no_run
    /// # use std::sync::Arc;
    /// # use kvm_coco::{GuestMapping, MemoryRegion};
    /// # let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::Default)?;
    /// # vm.set_memory_region(MemoryRegion::new(0, 0, Arc::new(GuestMapping::anonymous(0x1000)?)))?;
    /// vm.remove_memory_region(0)?;
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn remove_memory_region(&self, slot: u32) -> Result<()> {
        let mut regions = self.regions();
        let Some(region) = regions.get(&slot) else {
            return Err(Error::NoSuchSlot { slot });
        };
        let raw = kvm_userspace_memory_region2 {
            slot,
            flags: region.flags.bits()
                | if region.guest_memfd.is_some() {
                    KVM_MEM_GUEST_MEMFD
                } else {
                    0
                },
            guest_phys_addr: region.guest_phys_addr,
            memory_size: 0,
            ..Default::default()
        };
        // SAFETY: a size-0 region deletes the slot; the kernel dereferences no address.
        unsafe { self.set_user_memory_region2_raw(raw) }?;
        regions.remove(&slot);
        Ok(())
    }

    /// `KVM_SET_USER_MEMORY_REGION2` with a raw region.
    ///
    /// # Safety
    ///
    /// Unless `memory_size` is 0, `[userspace_addr, userspace_addr + memory_size)` must be a
    /// mapping of this process that stays valid, and is not used for anything else, until
    /// the slot is deleted or replaced and every vCPU of this VM is closed: the kernel
    /// reads and writes it on the guest's behalf without further checks.
    ///
    /// ```no_run
    /// use kvm_bindings::kvm_userspace_memory_region2;
    /// let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::Default)?;
    /// let mem = Box::leak(Box::new(kvm_coco::GuestMapping::anonymous(0x1000)?));
    /// let region = kvm_userspace_memory_region2 {
    ///     slot: 0, memory_size: 0x1000, userspace_addr: mem.host_addr(), ..Default::default()
    /// };
    /// // SAFETY: the mapping is leaked, so it outlives the VM.
    /// unsafe { vm.set_user_memory_region2_raw(region)? };
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub unsafe fn set_user_memory_region2_raw(
        &self,
        region: kvm_userspace_memory_region2,
    ) -> Result<()> {
        // SAFETY: forwarded from this function's contract.
        unsafe { self.fd().set_user_memory_region2(region) }
            .map_err(|e| Error::ioctl("KVM_SET_USER_MEMORY_REGION2", e))
    }

    /// The guest_memfd flags this VM accepts (`KVM_CAP_GUEST_MEMFD_FLAGS` on the VM fd;
    /// empty on kernels that lack the capability).
    ///
    /// ```no_run
    /// let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::Default)?;
    /// println!("{:?}", vm.supported_guest_memfd_flags());
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn supported_guest_memfd_flags(&self) -> GuestMemfdFlags {
        let r = self.check_extension(KVM_CAP_GUEST_MEMFD_FLAGS);
        GuestMemfdFlags::from_bits_retain(u64::try_from(r).unwrap_or(0))
    }

    /// `KVM_CREATE_GUEST_MEMFD`: a guest_memfd of `size` bytes.
    ///
    /// `size` must be a non-zero multiple of 4 KiB ([`Error::GuestMemfdSize`]) and `flags`
    /// a subset of [`supported_guest_memfd_flags`](Self::supported_guest_memfd_flags)
    /// ([`Error::GuestMemfdFlags`]); both are checked before the ioctl.
    ///
    /// ```no_run
    /// use kvm_coco::GuestMemfdFlags;
    /// let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::Default)?;
    /// let gmem = vm.create_guest_memfd(0x20_0000, GuestMemfdFlags::MMAP | GuestMemfdFlags::INIT_SHARED)?;
    /// let map = gmem.map()?;
    /// map.write(0, b"hello")?;
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn create_guest_memfd(&self, size: u64, flags: GuestMemfdFlags) -> Result<GuestMemfd> {
        if size == 0 || !size.is_multiple_of(PAGE_SIZE) {
            return Err(Error::GuestMemfdSize { size });
        }
        let supported = if self.check_extension(KVM_CAP_GUEST_MEMFD) > 0 {
            self.supported_guest_memfd_flags()
        } else {
            GuestMemfdFlags::empty()
        };
        if !supported.contains(flags) {
            return Err(Error::GuestMemfdFlags {
                flags: flags.bits(),
                supported: supported.bits(),
            });
        }
        let raw = kvm_create_guest_memfd {
            size,
            flags: flags.bits(),
            ..Default::default()
        };
        let fd = self.fd().create_guest_memfd(raw).map_err(|e| {
            if e.errno() == libc::EINVAL {
                Error::GuestMemfdFlags {
                    flags: flags.bits(),
                    supported: supported.bits(),
                }
            } else {
                Error::ioctl("KVM_CREATE_GUEST_MEMFD", e)
            }
        })?;
        // SAFETY: `fd` was just returned by KVM_CREATE_GUEST_MEMFD and is owned by nothing
        // else; wrapping it transfers ownership, so it is closed exactly once.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(GuestMemfd::from_parts(fd, size, flags))
    }

    /// The memory attributes this VM supports (`KVM_CAP_MEMORY_ATTRIBUTES` on the VM fd).
    ///
    /// ```no_run
    /// let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::Default)?;
    /// println!("{:?}", vm.supported_memory_attributes());
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn supported_memory_attributes(&self) -> MemoryAttributes {
        let r = self.check_extension(KVM_CAP_MEMORY_ATTRIBUTES);
        MemoryAttributes::from_bits_retain(u64::try_from(r).unwrap_or(0))
    }

    /// `KVM_SET_MEMORY_ATTRIBUTES` on `[gpa, gpa+size)`.
    ///
    /// Fails with [`Error::Unsupported`] when the VM has no memory attributes (a VM type
    /// without private memory, where the kernel answers `ENOTTY`).
    ///
    /// ```no_run
    /// use kvm_coco::MemoryAttributes;
    /// let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::SwProtected)?;
    /// vm.set_memory_attributes(0, 0x1000, MemoryAttributes::PRIVATE)?;
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn set_memory_attributes(
        &self,
        gpa: u64,
        size: u64,
        attributes: MemoryAttributes,
    ) -> Result<()> {
        set_memory_attributes(self.fd(), self.vm_type(), gpa, size, attributes)
    }

    /// Converts `[gpa, gpa+size)` to `to`: sets or clears `KVM_MEMORY_ATTRIBUTE_PRIVATE`
    /// and, when the range becomes shared, punches the private pages out of every
    /// guest_memfd that backs part of it (`fallocate(PUNCH_HOLE | KEEP_SIZE)`), so they are
    /// freed rather than kept alongside the shared copy.
    ///
    /// This is the usual answer to [`Exit::MemoryFault`](crate::Exit::MemoryFault) and
    /// [`Exit::MapGpaRange`](crate::Exit::MapGpaRange).
    ///
    /// ```no_run
    /// use kvm_coco::MemoryState;
    /// let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::SwProtected)?;
    /// vm.convert_memory(0x10_0000, 0x1000, MemoryState::Shared)?;
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn convert_memory(&self, gpa: u64, size: u64, to: MemoryState) -> Result<()> {
        let attrs = match to {
            MemoryState::Private => MemoryAttributes::PRIVATE,
            MemoryState::Shared => MemoryAttributes::empty(),
        };
        self.set_memory_attributes(gpa, size, attrs)?;
        if to == MemoryState::Shared {
            let end = gpa + size; // checked by set_memory_attributes
            let regions = self.regions();
            for region in regions.values() {
                let Some((gmem, base)) = &region.guest_memfd else {
                    continue;
                };
                let r_start = region.guest_phys_addr;
                let r_end = r_start.saturating_add(region.size());
                let (s, e) = (gpa.max(r_start), end.min(r_end));
                if s < e {
                    gmem.punch_hole(base + (s - r_start), e - s)?;
                }
            }
        }
        Ok(())
    }

    fn enc_region(mapping: &GuestMapping, offset: u64, len: u64) -> Result<kvm_enc_region> {
        match offset.checked_add(len) {
            Some(end) if len > 0 && end <= mapping.len() as u64 => Ok(kvm_enc_region {
                addr: mapping.host_addr() + offset,
                size: len,
            }),
            _ => Err(Error::OutOfBounds {
                offset,
                len,
                size: mapping.len() as u64,
            }),
        }
    }

    /// `KVM_MEMORY_ENCRYPT_REG_REGION`: pins `[offset, offset+len)` of `mapping` for an
    /// SEV/SEV-ES guest so its pages are never moved or swapped. The kernel accounts the
    /// pages against `RLIMIT_MEMLOCK` unless the process has `CAP_IPC_LOCK`.
    ///
    /// ```no_run
    /// # use std::sync::Arc;
    /// # use kvm_coco::GuestMapping;
    /// let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::Sev)?;
    /// let mem = Arc::new(GuestMapping::anonymous(0x10_0000)?);
    /// vm.register_encrypted_region(&mem, 0, 0x10_0000)?;
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn register_encrypted_region(
        &self,
        mapping: &GuestMapping,
        offset: u64,
        len: u64,
    ) -> Result<()> {
        let r = Self::enc_region(mapping, offset, len)?;
        encrypted_region(self.fd(), self.vm_type(), true, r)
    }

    /// `KVM_MEMORY_ENCRYPT_UNREG_REGION`: unpins a range registered with exactly the same
    /// `(offset, len)`.
    ///
    /// ```no_run
    /// # use std::sync::Arc;
    /// # use kvm_coco::GuestMapping;
    /// # let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::Sev)?;
    /// # let mem = Arc::new(GuestMapping::anonymous(0x10_0000)?);
    /// vm.register_encrypted_region(&mem, 0, 0x10_0000)?;
    /// vm.unregister_encrypted_region(&mem, 0, 0x10_0000)?;
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn unregister_encrypted_region(
        &self,
        mapping: &GuestMapping,
        offset: u64,
        len: u64,
    ) -> Result<()> {
        let r = Self::enc_region(mapping, offset, len)?;
        encrypted_region(self.fd(), self.vm_type(), false, r)
    }

    /// The underlying kvm-ioctls VM fd, for ioctls this crate does not wrap.
    pub fn kvm_ioctls(&self) -> &VmFd {
        self.fd()
    }
}

/// `KVM_SET_MEMORY_ATTRIBUTES` on a VM fd of type `vm_type` (for [`Vm`] and for VM fds a VMM
/// created itself).
pub(crate) fn set_memory_attributes(
    fd: &VmFd,
    vm_type: VmType,
    gpa: u64,
    size: u64,
    attributes: MemoryAttributes,
) -> Result<()> {
    check_range(gpa, size)?;
    let raw = kvm_memory_attributes {
        address: gpa,
        size,
        attributes: attributes.bits(),
        flags: 0,
    };
    fd.set_memory_attributes(raw).map_err(|e| {
        if e.errno() == libc::ENOTTY {
            Error::Unsupported {
                op: "KVM_SET_MEMORY_ATTRIBUTES",
                vm_type,
                reason: "this VM has no private memory (KVM_CAP_MEMORY_ATTRIBUTES is 0)",
            }
        } else {
            Error::ioctl("KVM_SET_MEMORY_ATTRIBUTES", e)
        }
    })
}

/// `KVM_MEMORY_ENCRYPT_REG_REGION` (`register`) or `KVM_MEMORY_ENCRYPT_UNREG_REGION` of
/// `region` on a VM fd of type `vm_type`. The kernel only pins (and later unpins) the pages;
/// it does not access them through the address.
pub(crate) fn encrypted_region(
    fd: &VmFd,
    vm_type: VmType,
    register: bool,
    region: kvm_enc_region,
) -> Result<()> {
    let (op, r) = if register {
        (
            "KVM_MEMORY_ENCRYPT_REG_REGION",
            fd.register_enc_memory_region(&region),
        )
    } else {
        (
            "KVM_MEMORY_ENCRYPT_UNREG_REGION",
            fd.unregister_enc_memory_region(&region),
        )
    };
    r.map_err(|e| {
        if e.errno() == libc::ENOTTY {
            Error::Unsupported {
                op,
                vm_type,
                reason: "only SEV and SEV-ES VMs (after KVM_SEV_INIT2) pin encrypted regions",
            }
        } else {
            Error::ioctl(op, e)
        }
    })
}

impl AsRawFd for Vm {
    fn as_raw_fd(&self) -> RawFd {
        self.fd().as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enc_region_bounds() {
        let m = GuestMapping::anonymous(0x2000).unwrap();
        let r = Vm::enc_region(&m, 0x1000, 0x1000).unwrap();
        assert_eq!((r.addr, r.size), (m.host_addr() + 0x1000, 0x1000));
        assert!(Vm::enc_region(&m, 0x1000, 0x1001).is_err());
        assert!(Vm::enc_region(&m, 0, 0).is_err());
        assert!(Vm::enc_region(&m, u64::MAX, 2).is_err());
    }
}
