//! Inputs the `host_ioctl` fuzz target (fuzz/fuzz_targets/host_ioctl.rs) found to crash the
//! software host, replayed through the same raw system calls. Each must now get a defined
//! errno, and the host must go on serving.

use kvm_coco::sim::host::SoftwareHost;
use kvm_coco::{GuestMemfdFlags, Kvm, VmType};

fn served() -> SoftwareHost {
    let host = SoftwareHost::builder().seed(1).start().unwrap();
    host.serve_current_thread()
        .expect("seccomp user notification is required by the software host");
    host
}

/// `KVM_CREATE_GUEST_MEMFD` with a page-aligned size far beyond the machine's memory
/// (`0x0401000000000000`, from the fuzzer's crash input): the model used to allocate its
/// private backing up front and aborted the whole process when the allocation failed. The
/// real kernel creates a sparse file of that size; the model cannot back it and answers
/// `ENOMEM` instead of dying.
#[test]
fn a_guest_memfd_larger_than_the_machine_is_enomem_not_an_abort() {
    let _host = served();
    let kvm = Kvm::open().unwrap();
    for ty in [VmType::Sev, VmType::SevEs, VmType::Snp] {
        let vm = kvm.create_vm(ty).unwrap();
        let e = vm
            .create_guest_memfd(0x0401_0000_0000_0000, GuestMemfdFlags::empty())
            .expect_err("no host can back 2^58 bytes");
        assert_eq!(
            e.errno().map(|e| e.raw()),
            Some(libc::ENOMEM),
            "{ty:?}: {e}"
        );
        // The host still serves this VM.
        vm.create_guest_memfd(0x20_0000, GuestMemfdFlags::empty())
            .unwrap();
    }
}

/// Creating, initializing and closing SNP VMs in a tight loop, many more than the model's
/// ASIDs (`max_asid` 16, SEV-ES/SNP below `min_sev_asid`): the kernel destroys a VM at its
/// last close, so the next `KVM_SEV_INIT2` always finds a free ASID. The host destroys a
/// VM when its fd's socket hangs up, and handles the hang-ups it polls before the calls
/// polled in the same round, so a VMM that closes a VM and creates the next one finds the
/// first one gone, as a fast VMM (the `id_block` fuzz target) does.
#[test]
fn closing_a_vm_frees_its_asid_before_the_next_vm_is_created() {
    use kvm_coco::launch::{InitParams, KvmBackend, Launch, SnpInit};
    let _host = served();
    let kvm = Kvm::open().unwrap();
    for i in 0..100 {
        let backend = KvmBackend::new(&kvm, VmType::Snp).unwrap();
        let launch = Launch::new(backend, InitParams::Snp(SnpInit::default()))
            .unwrap_or_else(|e| panic!("VM {i}: {e}"));
        drop(launch);
    }
}

/// Kernel memory of a call is freed when the call returns, and a VM's own pages (SNP
/// context, guest-request pages, VMSAs) when it is destroyed: a long-lived host serving
/// SNP launches whose LAUNCH_FINISH copies an ID block and ID auth (as the `id_block` fuzz
/// target does, whose memory used to grow by their pages on every input) holds no more of
/// the firmware's memory afterwards than before.
#[test]
fn snp_launches_leave_no_kernel_pages_behind() {
    use kvm_coco::launch::{InitParams, KvmBackend, Launch, SnpIdentity, SnpInit};
    let host = served();
    let kvm = Kvm::open().unwrap();
    let launch = |vcpus: u32| {
        let backend = KvmBackend::new(&kvm, VmType::Snp).unwrap();
        let params = InitParams::Snp(SnpInit {
            identity: Some(SnpIdentity {
                id_block: [0x11; 96],
                id_auth: Box::new([0x22; 4096]),
                author_key: false,
            }),
            ..SnpInit::default()
        });
        let mut l = Launch::new(backend, params).unwrap();
        for id in 0..vcpus {
            l.create_vcpu(id).unwrap();
        }
        // The ID block is not signed: LAUNCH_FINISH fails after copying both blobs.
        let r = l.start().unwrap().measure().unwrap().finish();
        assert!(r.is_err(), "an unsigned ID block was accepted");
    };
    let pages = || {
        host.settle(std::time::Duration::from_secs(10));
        host.sev_host().unwrap().firmware().mem().sparse_pages()
    };
    launch(1);
    let before = pages();
    for i in 0..20 {
        launch(1 + i % 4);
    }
    let after = pages();
    assert_eq!(
        after, before,
        "firmware pages before {before}, after {after}"
    );
}
