//! VM types the host lacks are refused with an error naming the type and the supported set.

use kvm_coco::{Error, VmType};
use kvm_coco_tests::{kvm_or_skip, raw};

#[test]
fn unsupported_vm_types_are_refused_with_names() {
    let Some(kvm) = kvm_or_skip() else { return };
    let Some(fd) = raw::open_kvm() else { return };
    let bitmap = raw::check_extension(&fd, 235).max(1) as u32;
    let supported_names: Vec<&str> = VmType::ALL
        .iter()
        .filter(|t| bitmap & (1 << t.abi_value()) != 0)
        .map(|t| t.name())
        .collect();
    for t in [
        VmType::SwProtected,
        VmType::Sev,
        VmType::SevEs,
        VmType::Snp,
        VmType::Tdx,
    ] {
        let supported_here = bitmap & (1 << t.abi_value()) != 0;
        match kvm.create_vm(t) {
            Ok(vm) => {
                assert!(
                    supported_here,
                    "{t} created although not in KVM_CAP_VM_TYPES"
                );
                assert_eq!(vm.vm_type(), t);
            }
            Err(e @ Error::UnsupportedVmType { .. }) => {
                assert!(!supported_here, "{t} refused although in KVM_CAP_VM_TYPES");
                let msg = e.to_string();
                assert!(msg.contains(&format!("`{}`", t.name())), "{msg}");
                assert!(msg.contains(&supported_names.join(", ")), "{msg}");
            }
            Err(e) => panic!("{t}: unexpected error {e}"),
        }
    }
}

#[test]
fn default_vm_is_always_creatable() {
    let Some(kvm) = kvm_or_skip() else { return };
    let vm = kvm.create_vm(VmType::Default).unwrap();
    assert_eq!(vm.vm_type(), VmType::Default);
    assert!(kvm.supported_vm_types().contains(VmType::Default));
}
