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
        assert!(matches!(e, Error::ProtectedState { op: RegisterOp::Sregs, vm_type } if vm_type == t));
        let msg = e.to_string();
        assert!(msg.contains("KVM_GET/SET_SREGS") && msg.contains(t.name()), "{msg}");
    }
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
