//! guest_memfd, memory slots and attributes on the host's /dev/kvm.

use std::os::fd::AsRawFd;
use std::sync::Arc;

use kvm_coco::{
    Error, GuestMapping, GuestMemfdFlags, MemoryAttributes, MemoryRegion, MemoryState, VmType,
};
use kvm_coco_tests::kvm_or_skip;

#[test]
fn guest_memfd_size_rules_are_checked_before_the_ioctl() {
    let Some(kvm) = kvm_or_skip() else { return };
    let vm = kvm.create_vm(VmType::Default).unwrap();
    if vm.check_extension(234) <= 0 {
        kvm_coco_test_skip::skip("/dev/kvm", "KVM_CAP_GUEST_MEMFD is 0");
        return;
    }
    for size in [0u64, 0x800, 0x1001] {
        match vm.create_guest_memfd(size, GuestMemfdFlags::empty()) {
            Err(Error::GuestMemfdSize { size: s }) => assert_eq!(s, size),
            other => panic!("size {size:#x}: {other:?}"),
        }
    }
}

#[test]
fn guest_memfd_flag_rules() {
    let Some(kvm) = kvm_or_skip() else { return };
    let vm = kvm.create_vm(VmType::Default).unwrap();
    if vm.check_extension(234) <= 0 {
        kvm_coco_test_skip::skip("/dev/kvm", "KVM_CAP_GUEST_MEMFD is 0");
        return;
    }
    match vm.create_guest_memfd(0x1000, GuestMemfdFlags::from_bits_retain(4)) {
        Err(Error::GuestMemfdFlags {
            flags: 4,
            supported,
        }) => {
            assert_eq!(supported, vm.check_extension(244).max(0) as u64);
        }
        other => panic!("{other:?}"),
    }
    let supported = vm.supported_guest_memfd_flags();
    for bits in [0u64, 1, 3] {
        let flags = GuestMemfdFlags::from_bits_retain(bits);
        if !supported.contains(flags) {
            kvm_coco_test_skip::skip(
                "/dev/kvm",
                format_args!("guest_memfd flags {bits} are not supported here"),
            );
            continue;
        }
        let gmem = vm.create_guest_memfd(0x20_0000, flags).unwrap();
        assert_eq!((gmem.size(), gmem.flags()), (0x20_0000, flags));
        assert!(gmem.as_raw_fd() >= 0);
        gmem.allocate(0, 0x1000).unwrap();
        gmem.punch_hole(0, 0x1000).unwrap();
        assert!(matches!(
            gmem.punch_hole(0x20_0000, 0x1000),
            Err(Error::OutOfBounds { .. })
        ));
    }
}

#[test]
fn shared_guest_memfd_can_be_mapped() {
    let Some(kvm) = kvm_or_skip() else { return };
    let vm = kvm.create_vm(VmType::Default).unwrap();
    let flags = GuestMemfdFlags::MMAP | GuestMemfdFlags::INIT_SHARED;
    if !vm.supported_guest_memfd_flags().contains(flags) {
        kvm_coco_test_skip::skip("/dev/kvm", "guest_memfd MMAP|INIT_SHARED unsupported");
        return;
    }
    let gmem = vm.create_guest_memfd(0x10_0000, flags).unwrap();
    let map = gmem.map().unwrap();
    map.write(0x1234, b"kvm-coco").unwrap();
    let mut back = [0u8; 8];
    map.read(0x1234, &mut back).unwrap();
    assert_eq!(&back, b"kvm-coco");
}

#[test]
fn region2_with_guest_memfd_is_accepted_and_removable() {
    let Some(kvm) = kvm_or_skip() else { return };
    let vm = kvm.create_vm(VmType::Default).unwrap();
    if vm.check_extension(231) <= 0 || vm.check_extension(234) <= 0 {
        kvm_coco_test_skip::skip("/dev/kvm", "no KVM_CAP_USER_MEMORY2 / KVM_CAP_GUEST_MEMFD");
        return;
    }
    let mem = Arc::new(GuestMapping::anonymous(0x20_0000).unwrap());
    let gmem = Arc::new(
        vm.create_guest_memfd(0x20_0000, GuestMemfdFlags::empty())
            .unwrap(),
    );
    vm.set_memory_region(MemoryRegion::new(1, 0x100_0000, mem).guest_memfd(gmem, 0))
        .unwrap();
    vm.remove_memory_region(1).unwrap();
    assert!(matches!(
        vm.remove_memory_region(1),
        Err(Error::NoSuchSlot { slot: 1 })
    ));
}

#[test]
fn memory_attributes_follow_the_capability() {
    let Some(kvm) = kvm_or_skip() else { return };
    let vm = kvm.create_vm(VmType::Default).unwrap();
    let cap = vm.check_extension(233);
    let r = vm.set_memory_attributes(0, 0x1000, MemoryAttributes::PRIVATE);
    if cap & 8 == 0 {
        match r {
            Err(Error::Unsupported { op, .. }) => assert_eq!(op, "KVM_SET_MEMORY_ATTRIBUTES"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            vm.convert_memory(0, 0x1000, MemoryState::Shared),
            Err(Error::Unsupported { .. })
        ));
    }
    assert!(matches!(
        vm.set_memory_attributes(0x800, 0x1000, MemoryAttributes::PRIVATE),
        Err(Error::BadRange { .. })
    ));
}

#[test]
fn pre_fault_follows_the_capability() {
    let Some(kvm) = kvm_or_skip() else { return };
    let vm = kvm.create_vm(VmType::Default).unwrap();
    let mem = Arc::new(GuestMapping::anonymous(0x20_0000).unwrap());
    vm.set_memory_region(MemoryRegion::new(0, 0, mem)).unwrap();
    let vcpu = vm.create_vcpu(0).unwrap();
    let r = vcpu.pre_fault_memory(0, 0x20_0000);
    if vm.check_extension(236) > 0 {
        r.unwrap();
    } else {
        let e = r.unwrap_err();
        assert!(e.to_string().contains("KVM_PRE_FAULT_MEMORY"), "{e}");
    }
}
