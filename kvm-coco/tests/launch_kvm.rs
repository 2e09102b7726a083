//! The launch API on the real backend. Hosts of this project's kind support only the
//! default VM type: every confidential launch must fail up front with the clear "not
//! supported on this host" error. Without `/dev/kvm` (ENOENT / EACCES) the tests report a
//! skip (`kvm_coco_test_skip`), or fail where the dependencies are required (CI).

use kvm_coco::launch::{KvmBackend, LaunchError};
use kvm_coco::{Kvm, VmType};

fn kvm() -> Option<Kvm> {
    match Kvm::open() {
        Ok(k) => Some(k),
        Err(e) if e.is_kvm_unavailable() => {
            kvm_coco_test_skip::skip("/dev/kvm", e);
            None
        }
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn confidential_launches_report_not_supported_on_this_host() {
    let Some(kvm) = kvm() else { return };
    let supported = kvm.supported_vm_types();
    for t in VmType::CONFIDENTIAL {
        if supported.contains(t) {
            kvm_coco_test_skip::skip(
                "a host without the VM type",
                format_args!("this host offers {t}; its refusal cannot be checked here"),
            );
            continue;
        }
        match KvmBackend::new(&kvm, t) {
            Err(e @ LaunchError::NotSupportedOnHost { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("not supported on this host"), "{msg}");
                assert!(msg.contains(t.kernel_name()), "{msg}");
                assert!(e.is_not_supported_on_host());
            }
            Err(e) => panic!("{t}: unexpected error {e}"),
            Ok(b) => panic!("{t}: created {b:?} on a host without it"),
        }
    }
}

#[test]
fn non_confidential_types_are_not_launch_targets() {
    let Some(kvm) = kvm() else { return };
    for t in [VmType::Default, VmType::SwProtected] {
        let e = KvmBackend::new(&kvm, t).unwrap_err();
        // A usage error, not a host limitation: no host launches a default VM.
        assert!(!e.is_not_supported_on_host(), "{e}");
        assert!(
            matches!(e, LaunchError::NotConfidential(kvm_coco::NotConfidential(v)) if v == t),
            "{e}"
        );
        assert!(e.to_string().contains("not a confidential VM type"), "{e}");
    }
}
