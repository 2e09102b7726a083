//! End to end through the public API, as a VMM crate uses it: an SNP launch of a hand-built
//! plan with an owner-signed ID block through `KvmBackend`, on a thread served by the software
//! host (every launch command a real `/dev/kvm` or `/dev/sev` system call), the guest's
//! attestation report checked by the owner, and the ID block check failing for a wrong digest.

use kvm_coco::launch::{InitParams, KvmBackend, Launch, LaunchError, SnpIdentity, SnpInit};
use kvm_coco::measure::plan::{Data, LaunchPlan, Origin, PageKind, Step, Tee};
use kvm_coco::measure::vcpu::{VmmType, cpu_type_sig};
use kvm_coco::measure::vmsa::{BSP_EIP, InitialVmsa};
use kvm_coco::measure::{MeasureOptions, measure};
use kvm_coco::sim::guest::{GuestOp, GuestOutcome};
use kvm_coco::sim::host::SoftwareHost;
use kvm_coco::{Exit, Kvm, SystemEvent, VmType};
use p384::ecdsa::SigningKey;
use psp_driver::digest::SNP_VMSA_GPA;
use psp_driver::owner::snp::{IdBlock, key_digest, sign_id_block, verify_report};
use psp_driver::report::AttestationReport;
use std::sync::Arc;
use zerocopy::{FromBytes, IntoBytes};

const POLICY: u64 = 0x3_0000;

/// A software host serving this test's thread. Fails (never skips) where seccomp user
/// notification is refused: every machine this project runs on has it.
fn served() -> SoftwareHost {
    let host = SoftwareHost::builder().seed(1).start().unwrap();
    host.serve_current_thread()
        .expect("seccomp user notification is required by the software host");
    host
}

/// A small SNP image: 8 KiB of code at the top of 4 GiB, a zero page, the secrets and CPUID
/// pages, and the boot vCPU's VMSA (QEMU's reset state, SNP_ACTIVE).
fn plan(code: &[u8]) -> LaunchPlan<'_> {
    let sig = cpu_type_sig("EPYC-Milan").unwrap();
    let vmsa = InitialVmsa::for_vmm(VmmType::Qemu, BSP_EIP, sig, 0x1).page();
    let step = |gpa, len, kind, data| Step {
        gpa,
        len,
        kind,
        data,
        origin: Origin::Firmware,
    };
    LaunchPlan {
        tee: Tee::Snp,
        initial_digest: None,
        steps: vec![
            step(
                0xFFFF_E000,
                0x2000,
                PageKind::Measured,
                Data::Borrowed(code),
            ),
            step(0x80_0000, 0x1000, PageKind::Zero, Data::None),
            step(0x80_1000, 0x1000, PageKind::Secrets, Data::None),
            step(0x80_2000, 0x1000, PageKind::Cpuid, Data::None),
            Step {
                origin: Origin::Vmsa { vcpu: 0 },
                ..step(
                    SNP_VMSA_GPA,
                    0x1000,
                    PageKind::Vmsa,
                    Data::Shared(Arc::from(&vmsa[..])),
                )
            },
        ],
    }
}

fn identity(ld: [u8; 48], key: &SigningKey) -> SnpIdentity {
    let block = IdBlock::new(ld, POLICY);
    let auth = sign_id_block(&block, key, None).unwrap();
    let mut id_auth = Box::new([0u8; 4096]);
    id_auth.copy_from_slice(auth.as_bytes());
    let mut id_block = [0u8; 96];
    id_block.copy_from_slice(block.as_bytes());
    SnpIdentity {
        id_block,
        id_auth,
        author_key: false,
    }
}

fn launch(
    plan: &LaunchPlan<'_>,
    identity: SnpIdentity,
) -> Result<Launch<kvm_coco::launch::Finished, KvmBackend>, LaunchError> {
    let params = SnpInit {
        identity: Some(identity),
        host_data: *b"host data bound into the report!",
        ..SnpInit::default()
    };
    let backend = KvmBackend::new(&Kvm::open()?, VmType::Snp)?;
    let mut l = Launch::new(backend, InitParams::Snp(params))?;
    l.add_plan_memory(plan)?;
    // Shared RAM for the guest's request and response messages.
    l.add_memory(0x100_0000, 0x4000)?;
    l.create_vcpu(0)?;
    let mut l = l.start()?;
    l.add_plan(plan)?;
    l.measure()?.finish()
}

#[test]
fn snp_id_block_launch_and_report() {
    let host = served();
    let code: Vec<u8> = (0..0x1800u32).map(|i| (i * 7 % 251) as u8).collect();
    let plan = plan(&code);
    let off = measure(
        &plan,
        &MeasureOptions {
            log: true,
            progress: None,
        },
    )
    .unwrap();
    let ld: [u8; 48] = off.digest.as_bytes().try_into().unwrap();
    // The same launch digest computed apart from this crate: the facts' PAGE_INFO chain
    // (firmware-and-measurement §3.3, checked against its micro vectors) over the code's two
    // NORMAL pages, ZERO, SECRETS and CPUID, then the VMSA page that sev-snp-measure 0.0.13
    // dumps for `--mode snp --vcpus 1 --vcpu-type EPYC-Milan --dump-vmsa` (vmsa0.bin) at
    // GPA 0xFFFFFFFFF000.
    assert_eq!(
        ld.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        "4fc7d86a30ed34672371e2ace6a7b2695dfdb927cad2bdaeb230f552e52e4e05ce10ec074367a30df2ed84ec66126e51"
    );
    let id_key = SigningKey::from_slice(&[0x42; 48]).unwrap();

    // The firmware checks the ID block's digest against the launch digest at FINISH.
    let mut wrong = ld;
    wrong[47] ^= 1;
    let e = launch(&plan, identity(wrong, &id_key)).unwrap_err();
    assert_eq!(e.errno().map(|e| e.raw()), Some(libc::EIO), "{e}");
    assert!(e.to_string().contains("KVM_SEV_SNP_LAUNCH_FINISH"), "{e}");

    let done = launch(&plan, identity(ld, &id_key)).unwrap();
    assert_eq!(done.log().diff(off.log.as_ref().unwrap()), None);
    let (_backend, mut vcpus) = done.into_parts();
    host.load_program(
        &vcpus[0],
        [
            GuestOp::SnpReport {
                report_data: [1; 64],
                certs_gpa: 0x80_0000,
                npages: 0,
            },
            GuestOp::Terminate { code: 0 },
        ],
    )
    .unwrap();
    // Certificate requests are not enabled: the report comes without an exit.
    assert!(matches!(
        vcpus[0].run().unwrap(),
        Exit::SystemEvent(SystemEvent::SevTerm { .. })
    ));
    let outcomes = host.outcomes(&vcpus[0]).unwrap();
    // The guest sealed its request under VMPCK0 and KVM issued SNP_GUEST_REQUEST for it.
    let Some(GuestOutcome::SnpReport {
        report: Some(bytes),
        exitinfo2: Some(0),
        rsp_status: Some(0),
        ..
    }) = outcomes.first()
    else {
        panic!("{outcomes:?}");
    };
    let report = AttestationReport::read_from_bytes(bytes).unwrap();
    let chain = host.sev_host().unwrap().firmware().certs().snp;
    verify_report(&report, &chain, Some(&chain.ark.public_key().unwrap())).unwrap();
    assert_eq!(report.measurement, ld);
    assert_eq!(&report.host_data, b"host data bound into the report!");
    let auth = sign_id_block(&IdBlock::new(ld, POLICY), &id_key, None).unwrap();
    assert_eq!(report.id_key_digest, key_digest(&auth.id_key));
    assert!(!report.author_key_en());
}
