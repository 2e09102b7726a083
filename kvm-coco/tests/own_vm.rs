//! The `own_vm` example as tests: a VMM creates the VM, guest RAM, guest_memfds and vCPUs with
//! kvm-ioctls and launches through kvm-coco over them ([`kvm_coco::launch::BorrowedVm`]), on
//! the software host where this machine's KVM lacks the type.

#[allow(dead_code)]
#[path = "../examples/own_vm.rs"]
mod own_vm;

use kvm_coco::VmType;
use kvm_coco::launch::PlatformMeasurement;

#[test]
fn snp_over_a_vmm_owned_vm_reports_the_offline_measurement() {
    let host = own_vm::host_for(&[VmType::Snp]).unwrap();
    let image = own_vm::Image::synthetic();
    let out = own_vm::launch_snp(host.as_ref(), &image, 2).unwrap();
    assert_eq!(
        out.expected, out.offline,
        "launch log vs offline calculation"
    );
    if host.is_some() {
        // The guest's own report carries the platform's measurement.
        assert!(matches!(out.reported, PlatformMeasurement::SnpReport(_)));
        assert_eq!(out.reported.matches(&out.offline), Some(true));
    }
}

#[test]
fn sev_es_over_a_vmm_owned_vm_with_plain_memory_passes_the_owners_check() {
    let _host = own_vm::host_for(&[VmType::SevEs]).unwrap();
    let image = own_vm::Image::synthetic();
    assert!(own_vm::launch_sev_es(&image, 2).unwrap());
}

#[test]
fn tdx_over_a_vmm_owned_vm_reports_the_offline_mrtd() {
    let host = own_vm::host_for(&[VmType::Tdx]).unwrap();
    let image = own_vm::Image::synthetic();
    let out = own_vm::launch_tdx(host.as_ref(), &image).unwrap();
    assert_eq!(
        out.expected, out.offline,
        "launch log vs offline calculation"
    );
    if host.is_some() {
        assert!(matches!(out.reported, PlatformMeasurement::TdReport(_)));
        assert_eq!(out.reported.matches(&out.offline), Some(true));
    }
}

/// The example's `main` (all three launches on one thread), as CI runs it.
#[test]
fn the_example_runs() {
    own_vm::main().unwrap();
}

#[test]
fn borrowed_vm_refuses_what_it_cannot_launch() {
    use std::os::fd::AsFd;

    use kvm_coco::GuestMapping;
    use kvm_coco::launch::{BorrowedVm, GuestRam, InitParams, Launch, LaunchError, SnpInit};

    let _host = own_vm::host_for(&[VmType::Snp]).unwrap();
    let kvm = kvm_ioctls::Kvm::new().unwrap();
    let vm_fd = kvm
        .create_vm_with_type(u64::from(VmType::Snp.abi_value()))
        .unwrap();
    let sev = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/sev")
        .unwrap();
    let mem = GuestMapping::anonymous(0x2000).unwrap();
    // SAFETY: `mem` outlives every backend below.
    let plain = unsafe { GuestRam::new(0, 0x2000, mem.host_addr()) };
    let gmem = plain.with_guest_memfd();
    assert!(matches!(
        BorrowedVm::new(&vm_fd, VmType::Snp, None, [gmem]),
        Err(LaunchError::NotAvailable { .. })
    ));
    assert!(matches!(
        BorrowedVm::new(&vm_fd, VmType::Snp, Some(sev.as_fd()), [plain]),
        Err(LaunchError::BadRegion { .. })
    ));
    // SAFETY: as above (never written: the description is refused).
    let misaligned = unsafe { GuestRam::new(0x800, 0x1000, mem.host_addr()) }.with_guest_memfd();
    assert!(matches!(
        BorrowedVm::new(&vm_fd, VmType::Snp, Some(sev.as_fd()), [misaligned]),
        Err(LaunchError::BadRegion { .. })
    ));
    assert!(matches!(
        BorrowedVm::new(&vm_fd, VmType::Default, None, [plain]),
        Err(LaunchError::NotConfidential(_))
    ));
    assert!(kvm_coco::ops::TdxVm::borrowed(&vm_fd, VmType::Snp).is_err());

    let backend = BorrowedVm::new(&vm_fd, VmType::Snp, Some(sev.as_fd()), [gmem]).unwrap();
    let mut launch = Launch::new(backend, InitParams::Snp(SnpInit::default())).unwrap();
    // vCPUs are the VMM's, memory too: the launch only checks coverage.
    assert!(matches!(
        launch.create_vcpu(0),
        Err(LaunchError::NotAvailable { .. })
    ));
    launch.add_memory(0, 0x2000).unwrap();
    assert!(matches!(
        launch.add_memory(0x10_0000, 0x1000),
        Err(LaunchError::NoMemory { .. })
    ));
}
