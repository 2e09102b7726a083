//! The SEV_FEATURES a plan measures and the VMSA features a launch requests come from one
//! source: a plan built from `InitParams::plan_inputs` carries what KVM writes into the
//! VMSAs, and `Launch::add_plan` refuses a plan whose VMSAs disagree with the parameters.
//!
//! Expected values from the facts: SEV_FEATURES at VMSA offset 0x3B0, SNP default 0x1,
//! DEBUG_SWAP (bit 5) giving 0x21 for SNP (firmware-and-measurement §2.2, linux-uapi §3.5).
//! The SNP launch runs on a thread served by the software host; the guest's own attestation
//! report carries the platform's measurement.

use kvm_coco::launch::params::{SEV_FEAT_DEBUG_SWAP, SEV_POLICY_ES};
use kvm_coco::launch::{Finished, InitParams, KvmBackend, Launch, LaunchError, SevEsInit, SnpInit};
use kvm_coco::measure::plan::PlanInputs;
use kvm_coco::measure::synthetic::syn64k;
use kvm_coco::measure::vcpu::cpu_type_sig;
use kvm_coco::measure::{FirmwareImage, LaunchPlan, MeasureOptions, PageKind, measure};
use kvm_coco::sim::guest::{GuestOp, GuestOutcome};
use kvm_coco::sim::host::SoftwareHost;
use kvm_coco::{Exit, Kvm, SystemEvent, VmType};
use psp_driver::report::AttestationReport;
use zerocopy::FromBytes;

/// Guest RAM the guest uses for its report request and response messages.
const SHARED: (u64, u64) = (0x100_0000, 0x4000);

/// A software host serving this test's thread. Fails (never skips) where seccomp user
/// notification is refused: every machine this project runs on has it.
fn served() -> SoftwareHost {
    let host = SoftwareHost::builder().seed(7).start().unwrap();
    host.serve_current_thread()
        .expect("seccomp user notification is required by the software host");
    host
}

/// SEV_FEATURES (VMSA offset 0x3B0, facts firmware-and-measurement §2.2) of every VMSA of
/// `plan`.
fn plan_sev_features(plan: &LaunchPlan<'_>) -> Vec<u64> {
    plan.steps
        .iter()
        .filter(|s| s.kind == PageKind::Vmsa)
        .map(|s| u64::from_le_bytes(s.data.as_slice()[0x3B0..0x3B8].try_into().unwrap()))
        .collect()
}

/// Runs the launch up to `add_plan` and on to `finish`.
fn launch(
    tee: VmType,
    params: InitParams,
    plan: &LaunchPlan<'_>,
    vcpus: u32,
) -> Result<Launch<Finished, KvmBackend>, LaunchError> {
    let backend = KvmBackend::new(&Kvm::open()?, tee)?;
    let mut l = Launch::new(backend, params)?;
    l.add_plan_memory(plan)?;
    l.add_memory(SHARED.0, SHARED.1)?;
    for id in 0..vcpus {
        l.create_vcpu(id)?;
    }
    let mut l = l.start()?;
    l.add_plan(plan)?;
    l.measure()?.finish()
}

#[test]
fn snp_plan_from_the_parameters_measures_what_the_guest_reports() {
    let host = served();
    let image = syn64k();
    let fw = FirmwareImage::parse(&image).unwrap();
    let params = InitParams::Snp(SnpInit {
        vmsa_features: SEV_FEAT_DEBUG_SWAP,
        ..SnpInit::default()
    });
    let mut inputs = params.plan_inputs(&fw);
    inputs.vcpus = 2;
    inputs.vcpu_sig = cpu_type_sig("EPYC-Milan");
    let plan = LaunchPlan::snp(&inputs).unwrap();
    // DEBUG_SWAP plus SNP_ACTIVE, in both vCPUs' VMSAs.
    assert_eq!(plan_sev_features(&plan), [0x21, 0x21]);
    let offline = measure(
        &plan,
        &MeasureOptions {
            log: false,
            progress: None,
        },
    )
    .unwrap();

    let done = launch(VmType::Snp, params, &plan, 2).unwrap();
    assert_eq!(done.expected_measurement(), offline.digest.as_bytes());
    let (_backend, mut vcpus) = done.into_parts();
    host.load_program(
        &vcpus[0],
        [
            GuestOp::SnpReport {
                report_data: [3; 64],
                certs_gpa: SHARED.0,
                npages: 0,
            },
            GuestOp::Terminate { code: 0 },
        ],
    )
    .unwrap();
    assert!(matches!(
        vcpus[0].run().unwrap(),
        Exit::SystemEvent(SystemEvent::SevTerm { .. })
    ));
    let outcomes = host.outcomes(&vcpus[0]).unwrap();
    let Some(GuestOutcome::SnpReport {
        report: Some(bytes),
        ..
    }) = outcomes.first()
    else {
        panic!("{outcomes:?}");
    };
    let report = AttestationReport::read_from_bytes(bytes).unwrap();
    // The platform measured VMSAs with the features KVM wrote (INIT2's plus SNP_ACTIVE):
    // the same as the plan's.
    assert_eq!(report.measurement[..], *offline.digest.as_bytes());
}

#[test]
fn add_plan_refuses_vmsas_that_disagree_with_the_parameters() {
    let _host = served();
    let image = syn64k();
    let fw = FirmwareImage::parse(&image).unwrap();
    // The plan measures the default features (0x1); the launch asks KVM for DEBUG_SWAP.
    let mut inputs = PlanInputs::new(&fw);
    inputs.vcpu_sig = cpu_type_sig("EPYC-Milan");
    let plan = LaunchPlan::snp(&inputs).unwrap();
    assert_eq!(plan_sev_features(&plan), [0x1]);
    let params = InitParams::Snp(SnpInit {
        vmsa_features: SEV_FEAT_DEBUG_SWAP,
        ..SnpInit::default()
    });
    match launch(VmType::Snp, params, &plan, 1) {
        Err(LaunchError::GuestFeatures {
            vcpu: 0,
            plan: 0x1,
            kvm: 0x21,
            snp: true,
        }) => {}
        other => panic!("{:?}", other.map(|_| "launched")),
    }

    // The other way round: the plan asks for DEBUG_SWAP, the launch does not.
    inputs.guest_features = 0x21;
    let plan = LaunchPlan::snp(&inputs).unwrap();
    let e = launch(VmType::Snp, InitParams::Snp(SnpInit::default()), &plan, 1).unwrap_err();
    assert!(
        matches!(
            e,
            LaunchError::GuestFeatures {
                plan: 0x21,
                kvm: 0x1,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("InitParams::plan_inputs"), "{e}");

    // SEV-ES: plans measure SEV_FEATURES 0, so requested features cannot match them.
    let plan = LaunchPlan::sev_es(&inputs).unwrap();
    assert_eq!(plan_sev_features(&plan), [0]);
    let es = InitParams::SevEs(SevEsInit {
        policy: SEV_POLICY_ES,
        vmsa_features: SEV_FEAT_DEBUG_SWAP,
        ..SevEsInit::default()
    });
    let e = launch(VmType::SevEs, es, &plan, 1).unwrap_err();
    assert!(
        matches!(
            e,
            LaunchError::GuestFeatures {
                plan: 0,
                kvm: 0x20,
                snp: false,
                ..
            }
        ),
        "{e}"
    );
}
