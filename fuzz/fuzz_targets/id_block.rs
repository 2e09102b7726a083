//! The SNP ID block and ID authentication structure, handed to `SNP_LAUNCH_FINISH` by a
//! launch through `KvmBackend` on a thread served by the software host: the KVM model
//! copies them and the firmware model checks them. Any bytes must end in a finished launch
//! or a typed error, never a panic or a hang.
#![no_main]

use std::sync::OnceLock;

use kvm_coco::launch::{InitParams, KvmBackend, Launch, SnpIdentity, SnpInit};
use kvm_coco::sim::host::SoftwareHost;
use kvm_coco::{Kvm, VmType};
use libfuzzer_sys::fuzz_target;

fn serve() {
    static HOST: OnceLock<SoftwareHost> = OnceLock::new();
    let host = HOST.get_or_init(|| SoftwareHost::builder().seed(7).start().expect("host"));
    // libFuzzer calls the target from one thread; serving it again is a no-op error.
    let _ = host.serve_current_thread();
}

fuzz_target!(|data: &[u8]| {
    serve();
    let mut id_block = [0u8; 96];
    let mut id_auth = Box::new([0u8; 4096]);
    let n = data.len().min(96);
    id_block[..n].copy_from_slice(&data[..n]);
    if let Some(rest) = data.get(96..) {
        let m = rest.len().min(4096);
        id_auth[..m].copy_from_slice(&rest[..m]);
    }
    let author_key = data.first().is_some_and(|b| b & 1 == 1);
    // Creating the VM can fail for want of an ASID while the host still tears down the
    // VMs of earlier inputs (their fds are closed, the host destroys them on its own
    // thread): that is an answer, not a crash.
    let Ok(kvm) = Kvm::open() else {
        return;
    };
    let Ok(backend) = KvmBackend::new(&kvm, VmType::Snp) else {
        return;
    };
    let params = InitParams::Snp(SnpInit {
        identity: Some(SnpIdentity {
            id_block,
            id_auth,
            author_key,
        }),
        ..SnpInit::default()
    });
    let Ok(launch) = Launch::new(backend, params) else {
        return;
    };
    let Ok(launch) = launch.start() else {
        return;
    };
    if let Ok(m) = launch.measure() {
        let _ = m.finish();
    }
});
