//! `KVM_MEMORY_ENCRYPT_OP` and friends on a default VM: clear "not a confidential VM" errors.

use kvm_coco::ops::{EncryptOpError, Family, HINT_NOT_CONFIDENTIAL};
use kvm_coco::{Error, GuestMapping, VmType};
use kvm_coco_tests::kvm_or_skip;
use kvm_coco_uapi::KvmSevInit;

#[test]
fn sev_init2_on_default_vm_is_not_confidential() {
    let Some(kvm) = kvm_or_skip() else { return };
    let vm = kvm.create_vm(VmType::Default).unwrap();
    let err = vm
        .sev()
        .unwrap()
        .init2(&mut KvmSevInit::default())
        .unwrap_err();
    assert_eq!(
        err.errno.raw(),
        libc::ENOTTY,
        "facts kvm-on-this-machine-kind §3"
    );
    assert_eq!(err.command, "KVM_SEV_INIT2");
    assert!(err.is_not_confidential());
    assert_eq!(err.hint, Some(HINT_NOT_CONFIDENTIAL));
    let msg = err.to_string();
    assert!(msg.contains("not a confidential VM"), "{msg}");
    assert!(msg.contains("ENOTTY"), "{msg}");
    // Through the core error type too.
    let core: Error = err.into();
    assert_eq!(core.errno().map(|e| e.raw()), Some(libc::ENOTTY));
}

#[test]
fn other_sub_commands_on_default_vm_map_the_same_way() {
    let Some(kvm) = kvm_or_skip() else { return };
    let vm = kvm.create_vm(VmType::Default).unwrap();
    let sev = vm.sev().unwrap();
    let e = sev.launch_finish().unwrap_err();
    assert_eq!(
        (e.command, e.errno.raw()),
        ("KVM_SEV_LAUNCH_FINISH", libc::ENOTTY)
    );
    assert_eq!(e.hint, Some(HINT_NOT_CONFIDENTIAL));
    let e = sev.snp_enable_req_certs().unwrap_err();
    assert_eq!(e.command, "KVM_SEV_SNP_ENABLE_REQ_CERTS");
    assert_eq!(e.hint, Some(HINT_NOT_CONFIDENTIAL));
    // TDX sub-commands need a TD: refused when the view is made, before any system call.
    let mismatch = vm.tdx().unwrap_err();
    assert_eq!(
        (mismatch.family, mismatch.vm_type),
        (Family::Tdx, VmType::Default)
    );
    let e = EncryptOpError::from(mismatch);
    assert_eq!(
        (e.command, e.errno.raw()),
        ("KVM_MEMORY_ENCRYPT_OP", libc::ENOTTY)
    );
    assert_eq!(e.hint, Some(HINT_NOT_CONFIDENTIAL));
    assert!(matches!(
        Error::from(vm.tdx().unwrap_err()),
        Error::FamilyMismatch(_)
    ));
}

#[test]
fn encrypted_region_on_default_vm_is_unsupported() {
    let Some(kvm) = kvm_or_skip() else { return };
    let vm = kvm.create_vm(VmType::Default).unwrap();
    let mem = GuestMapping::anonymous(0x1000).unwrap();
    match vm.register_encrypted_region(&mem, 0, 0x1000) {
        Err(Error::Unsupported { op, vm_type, .. }) => {
            assert_eq!(op, "KVM_MEMORY_ENCRYPT_REG_REGION");
            assert_eq!(vm_type, VmType::Default);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        vm.register_encrypted_region(&mem, 0, 0x2000),
        Err(Error::OutOfBounds { .. })
    ));
}
