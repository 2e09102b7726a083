//! Register access on a vCPU with protected state is refused before any system call.

use kvm_coco::vcpu::StateProtection;
use kvm_coco::{Error, RegisterOp, VmType};
use kvm_coco_tests::kvm_or_skip;

#[test]
fn protected_vcpu_state_refuses_register_access() {
    // No hardware needed: the state flag is constructed directly.
    for t in [VmType::SevEs, VmType::Snp, VmType::Tdx] {
        let p = StateProtection::new(t);
        p.mark_protected();
        let e = p.check(RegisterOp::Sregs).unwrap_err();
        assert!(
            matches!(e, Error::ProtectedState { op: RegisterOp::Sregs, vm_type } if vm_type == t)
        );
        let msg = e.to_string();
        assert!(
            msg.contains("KVM_GET/SET_SREGS") && msg.contains(t.name()),
            "{msg}"
        );
    }
}

#[test]
fn the_vm_marks_all_its_vcpus() {
    let Some(kvm) = kvm_or_skip() else { return };
    let vm = kvm.create_vm(VmType::Default).unwrap();
    let (a, b) = (vm.create_vcpu(0).unwrap(), vm.create_vcpu(1).unwrap());
    assert!(!a.state_protection().is_marked() && !b.state_protection().is_marked());
    // What sev_launch_update_vmsa / snp_launch_finish do on success.
    vm.mark_vcpus_state_protected();
    assert!(a.state_protection().is_marked() && b.state_protection().is_marked());
    // A vCPU created afterwards starts unmarked.
    assert!(!vm.create_vcpu(2).unwrap().state_protection().is_marked());
}

#[test]
fn default_vm_vcpu_is_never_protected() {
    let Some(kvm) = kvm_or_skip() else { return };
    let vm = kvm.create_vm(VmType::Default).unwrap();
    let vcpu = vm.create_vcpu(0).unwrap();
    vcpu.mark_state_protected();
    // A default VM has no protected state: the kernel still answers, and so do we.
    assert!(!vcpu.is_state_protected());
    assert_eq!(vcpu.regs().unwrap().rip, 0xfff0);
    assert_eq!(vcpu.sregs().unwrap().cs.selector, 0xf000);
}
