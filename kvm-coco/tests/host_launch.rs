//! The hardware code path — `KvmBackend`, the `ops` wrappers, the `kvm_run` decoding —
//! running against the software host: every confidential ioctl is a real system call, answered
//! by the models of KVM and the firmware through seccomp user notification. Expected
//! measurements come from sev-snp-measure (committed vectors) and the separate MRTD
//! calculator; the platform's value is read from the guest's own report or TDREPORT, or from
//! LAUNCH_MEASURE, never recomputed on the host.

#[path = "measure_common/mod.rs"]
mod measure_common;

use kvm_coco::launch::{
    InitParams, KvmBackend, Launch, PlatformMeasurement, SevEsInit, SevInit, SevSession,
};
use kvm_coco::measure::{FirmwareImage, LaunchPlan};
use kvm_coco::sim::guest::GuestOp;
use kvm_coco::sim::host::SoftwareHost;
use kvm_coco::{Exit, Kvm, VmType};
use psp_driver::owner::cert::SevCert;
use psp_driver::owner::session::{FwVersion, OwnerSession, verify_launch_measure};
use psp_driver::{DevSev, Platform};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use zerocopy::{FromBytes, IntoBytes};

use measure_common::{amd_inputs, ssm_output as ssm};

/// A software host serving this test's thread. Fails (never skips) where seccomp user
/// notification is refused: every machine this project runs on has it.
fn served() -> SoftwareHost {
    let host = SoftwareHost::builder().seed(1).start().unwrap();
    host.serve_current_thread()
        .expect("seccomp user notification is required by the software host");
    host
}

#[test]
fn host_reports_snp_and_tdx_vm_types_and_sev_attributes() {
    let _host = served();
    let kvm = Kvm::open().unwrap();
    let types = kvm.supported_vm_types();
    for t in [VmType::Sev, VmType::SevEs, VmType::Snp, VmType::Tdx] {
        assert!(types.contains(t), "{t} missing from {types}");
    }
    // Facts linux-uapi §2: the VMSA features attribute; the model offers DEBUG_SWAP (bit 5)
    // and SECURE_TSC (bit 9).
    let f = kvm
        .device_attr(
            kvm_coco_uapi::vm::KVM_X86_GRP_SEV,
            kvm_coco_uapi::vm::KVM_X86_SEV_VMSA_FEATURES,
        )
        .unwrap();
    assert_eq!(f, (1 << 5) | (1 << 9));
}

/// An SEV or SEV-ES launch whose guest owner takes the platform's PDH and firmware version
/// from `/dev/sev` (psp-driver's `DevSev`, served) and checks `LAUNCH_MEASURE` against the
/// sev-snp-measure digest.
fn sev_owner_checks_launch_measure(vm_type: VmType, mode: &str, policy: u32) {
    let _host = served();
    let img = measure_common::syn64k();
    let fw = FirmwareImage::parse(&img).unwrap();
    let inputs = amd_inputs(&fw, 2, "EPYC-v4");
    let plan = match vm_type {
        VmType::Sev => LaunchPlan::sev(&inputs).unwrap(),
        _ => LaunchPlan::sev_es(&inputs).unwrap(),
    };
    let expected = if vm_type == VmType::SevEs {
        ssm(&[
            "--mode",
            mode,
            "--vcpus",
            "2",
            "--vcpu-type",
            "EPYC-v4",
            "--ovmf",
            "syn64k.fd",
        ])
    } else {
        ssm(&["--mode", mode, "--ovmf", "syn64k.fd"])
    };

    let dev = DevSev::open().unwrap();
    let export = dev.pdh_cert_export().unwrap();
    let pdh = SevCert::read_from_bytes(&export.pdh_cert).unwrap();
    let st = dev.platform_status().unwrap();
    let fwv = FwVersion {
        api_major: st.api_major,
        api_minor: st.api_minor,
        build: st.build,
    };
    let mut rng = ChaCha20Rng::from_seed([9; 32]);
    let owner = OwnerSession::new(&mut rng, &pdh, policy).unwrap();
    let session = Some(SevSession {
        dh_cert: owner.dh_cert().as_bytes().to_vec(),
        session: owner.session().as_bytes().to_vec(),
    });
    let params = match vm_type {
        VmType::Sev => InitParams::Sev(SevInit { policy, session }),
        _ => InitParams::SevEs(SevEsInit {
            policy,
            session,
            ..SevEsInit::default()
        }),
    };

    let kvm = Kvm::open().unwrap();
    let backend = KvmBackend::new(&kvm, vm_type).unwrap();
    let mut launch = Launch::new(backend, params).unwrap();
    launch.add_plan_memory(&plan).unwrap();
    launch.create_vcpu(0).unwrap();
    if vm_type == VmType::SevEs {
        launch.create_vcpu(1).unwrap();
    }
    let mut launch = launch.start().unwrap();
    launch.add_plan(&plan).unwrap();
    let launch = launch.measure().unwrap();
    let m = *launch.sev_launch_measure().unwrap();
    // The host cannot compare LAUNCH_MEASURE itself: only the owner (below) can.
    assert_eq!(
        PlatformMeasurement::LaunchMeasure(m).matches(&[0; 32]),
        None
    );
    let mut blob = [0u8; 48];
    blob[..32].copy_from_slice(&m.measure);
    blob[32..].copy_from_slice(&m.mnonce);
    let ld: [u8; 32] = hex::decode(&expected).unwrap().try_into().unwrap();
    verify_launch_measure(&owner.keys().tik, fwv, policy, &ld, &blob)
        .expect("LAUNCH_MEASURE binds the sev-snp-measure digest");
    let mut wrong = ld;
    wrong[0] ^= 1;
    assert!(verify_launch_measure(&owner.keys().tik, fwv, policy, &wrong, &blob).is_err());
    launch.finish().unwrap();
}

#[test]
fn sev_launch_measure_through_kvm_backend_and_dev_sev() {
    sev_owner_checks_launch_measure(VmType::Sev, "sev", 0x1);
}

#[test]
fn sev_es_launch_measure_through_kvm_backend_and_dev_sev() {
    sev_owner_checks_launch_measure(VmType::SevEs, "seves", 0x5);
}

/// `KvmBackend` registers SEV and SEV-ES guest RAM (`KVM_MEMORY_ENCRYPT_REG_REGION`) as QEMU
/// does; the software host warns in its trace when a guest runs with RAM that is not
/// registered.
#[test]
fn sev_ram_is_registered_and_unregistered_ram_is_reported() {
    use kvm_coco::{GuestMapping, MemoryRegion};
    use std::sync::Arc;

    let dir = measure_common::scratch("host_sev_reg_region");
    let trace = dir.join("trace.jsonl");
    let host = SoftwareHost::builder().trace(&trace).start().unwrap();
    host.serve_current_thread().unwrap();
    let img = measure_common::syn64k();
    let fw = FirmwareImage::parse(&img).unwrap();
    let plan = LaunchPlan::sev(&kvm_coco::measure::PlanInputs::new(&fw)).unwrap();
    let kvm = Kvm::open().unwrap();

    // Through the launcher: every RAM slot registered before LAUNCH_UPDATE_DATA.
    let backend = KvmBackend::new(&kvm, VmType::Sev).unwrap();
    let mut launch = Launch::new(backend, InitParams::Sev(SevInit::default())).unwrap();
    launch.add_plan_memory(&plan).unwrap();
    launch.create_vcpu(0).unwrap();
    let mut launch = launch.start().unwrap();
    launch.add_plan(&plan).unwrap();
    let (_backend, mut vcpus) = launch.measure().unwrap().finish().unwrap().into_parts();
    host.load_program(&vcpus[0], [GuestOp::Halt]).unwrap();
    assert!(matches!(vcpus[0].run().unwrap(), Exit::Hlt));

    // A VMM that forgets it: the same guest RAM, never registered.
    let vm = kvm.create_vm(VmType::Sev).unwrap();
    let mut init = kvm_coco_uapi::KvmSevInit::default();
    vm.sev().unwrap().init2(&mut init).unwrap();
    let mem = Arc::new(GuestMapping::anonymous(0x10_0000).unwrap());
    vm.set_memory_region(MemoryRegion::new(0, 0x10_0000, mem))
        .unwrap();
    let mut vcpu = vm.create_vcpu(0).unwrap();
    host.load_program(&vcpu, [GuestOp::Halt]).unwrap();
    assert!(matches!(vcpu.run().unwrap(), Exit::Hlt));

    // Each trace line is written before the call it describes returns.
    let runs: Vec<serde_json::Value> = std::fs::read_to_string(&trace)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|l| l["ioctl"] == "KVM_RUN")
        .collect();
    assert_eq!(runs.len(), 2, "{runs:?}");
    let note = |i: usize| runs[i]["note"].as_str().unwrap_or("").to_string();
    assert!(!note(0).contains("not registered"), "{}", note(0));
    assert!(
        note(1).contains("guest RAM 0x100000+0x100000 not registered"),
        "{}",
        note(1)
    );
}
