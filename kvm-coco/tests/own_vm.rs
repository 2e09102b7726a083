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
