//! SEV, SEV-ES and SNP launches end to end through `KvmBackend` on a thread served by the
//! software host (every launch command is a real `/dev/kvm` or `/dev/sev` system call): the
//! launcher executes the plan the offline calculator measures, the logs agree step by step,
//! the platform's measurement — in the SNP guest's own report, or in LAUNCH_MEASURE checked by
//! the guest owner — equals the offline one and sev-snp-measure's (committed vectors), and the
//! guest-owner helpers of psp-driver verify what the host hands over.

#[path = "measure_common/mod.rs"]
mod measure_common;

use kvm_coco::launch::backend::Backend;
use kvm_coco::launch::{
    InitParams, KvmBackend, Launch, LaunchError, LaunchSecret, LaunchVcpu, PlatformMeasurement,
    SevEsInit, SevInit, SevSession, SnpInit,
};
use kvm_coco::measure::plan::PlanInputs;
use kvm_coco::measure::{FirmwareImage, LaunchPlan};
use kvm_coco::sim::guest::{GuestOp, GuestOutcome};
use kvm_coco::sim::host::SoftwareHost;
use kvm_coco::{
    Access, CertsReply, Error, Exit, Kvm, MapGpaReply, RegisterOp, SystemEvent, VmType,
};
use psp_driver::owner::cert::SevCert;
use psp_driver::owner::session::{FwVersion, OwnerSession, build_secret, verify_launch_measure};
use psp_driver::owner::snp::verify_report;
use psp_driver::report::AttestationReport;
use psp_driver::{DevSev, Platform};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use zerocopy::{FromBytes, IntoBytes};

use measure_common::{amd_inputs, offline, ssm_output as ssm};

const SHARED: u64 = 0x100_0000;

/// A software host serving this test's thread. Fails (never skips) where seccomp user
/// notification is refused: every machine this project runs on has it.
fn served() -> SoftwareHost {
    let host = SoftwareHost::builder().seed(1).start().unwrap();
    host.serve_current_thread()
        .expect("seccomp user notification is required by the software host");
    host
}

/// A launch backend: a VM of `vm_type` on the (served) `/dev/kvm`.
fn backend(vm_type: VmType) -> KvmBackend {
    KvmBackend::new(&Kvm::open().unwrap(), vm_type).unwrap()
}

#[test]
fn snp_launch_report_verifies_and_matches_offline_and_sev_snp_measure() {
    let host = served();
    let img = measure_common::syn64k();
    let fw = FirmwareImage::parse(&img).unwrap();
    let inputs = amd_inputs(&fw, 2, "EPYC-Genoa");
    let plan = LaunchPlan::snp(&inputs).unwrap();
    let off = offline(&plan);
    let expected = ssm(&[
        "--mode",
        "snp",
        "--vcpus",
        "2",
        "--vcpu-type",
        "EPYC-Genoa",
        "--ovmf",
        "syn64k.fd",
    ]);
    assert_eq!(
        off.digest.to_string(),
        expected,
        "offline vs sev-snp-measure"
    );

    let params = SnpInit {
        req_certs: true,
        host_data: [7; 32],
        ..SnpInit::default()
    };
    let mut launch = Launch::new(backend(VmType::Snp), InitParams::Snp(params)).unwrap();
    launch.add_plan_memory(&plan).unwrap();
    launch.add_memory(SHARED, 0x8000).unwrap();
    launch.create_vcpu(0).unwrap();
    launch.create_vcpu(1).unwrap();
    let mut launch = launch.start().unwrap();
    launch.add_plan(&plan).unwrap();
    let launch = launch.measure().unwrap().finish().unwrap();

    assert_eq!(launch.log().diff(off.log.as_ref().unwrap()), None);

    let (mut backend, mut vcpus) = launch.into_parts();
    // Register state is protected once SNP_LAUNCH_FINISH measured the VMSAs.
    assert!(matches!(
        vcpus[1].regs(),
        Err(Error::ProtectedState {
            op: RegisterOp::Regs,
            ..
        })
    ));

    let report_data = [0xa5u8; 64];
    host.load_program(
        &vcpus[0],
        [
            // Too small a certificate buffer first: the VMM asks for more pages.
            GuestOp::SnpReport {
                report_data,
                certs_gpa: SHARED,
                npages: 0,
            },
            GuestOp::SnpReport {
                report_data,
                certs_gpa: SHARED,
                npages: 2,
            },
            GuestOp::MapGpa {
                gpa: SHARED + 0x4000,
                npages: 1,
                private: true,
            },
            GuestOp::Read {
                gpa: SHARED + 0x5000,
                len: 8,
                private: true,
            },
            GuestOp::Terminate { code: 3 },
        ],
    )
    .unwrap();
    let cert_table = b"certificate table for the guest";
    let (mut certs, mut maps, mut faults, mut term) = (0, 0, 0, false);
    for _ in 0..32 {
        match vcpus[0].run().unwrap() {
            Exit::SnpReqCerts(mut r) => {
                certs += 1;
                if r.npages < 2 {
                    r.reply(CertsReply::NeedPages(2));
                } else {
                    backend.write_shared(r.gpa, cert_table).unwrap();
                    r.reply(CertsReply::Success);
                }
            }
            Exit::MapGpaRange(mut m) => {
                maps += 1;
                let private = m.access() == Access::Private;
                backend.set_private(m.gpa, m.size(), private).unwrap();
                m.reply(MapGpaReply::Success);
            }
            Exit::MemoryFault(f) => {
                faults += 1;
                backend
                    .set_private(f.gpa, f.size, f.access() == Access::Private)
                    .unwrap();
            }
            Exit::SystemEvent(SystemEvent::SevTerm { .. }) => {
                term = true;
                break;
            }
            other => panic!("unexpected exit {other:?}"),
        }
    }
    assert_eq!((certs, maps, faults, term), (2, 1, 1, true));

    let outcomes = host.outcomes(&vcpus[0]).unwrap();
    let reports: Vec<_> = outcomes
        .iter()
        .filter_map(|o| match o {
            GuestOutcome::SnpReport {
                certs_ret,
                npages,
                report,
                certs,
                ..
            } => Some((*certs_ret, *npages, report.clone(), certs.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(reports.len(), 2);
    // ENOSPC with the page count, no report.
    assert_eq!(
        (reports[0].0, reports[0].1, reports[0].2.is_none()),
        (28, 2, true)
    );
    let (ret, _, report, certs) = &reports[1];
    assert_eq!(*ret, 0);
    assert_eq!(&certs[..cert_table.len()], cert_table);
    let report = AttestationReport::read_from_bytes(report.as_ref().unwrap()).unwrap();
    let chain = host.sev_host().unwrap().firmware().certs().snp;
    let ark = chain.ark.public_key().unwrap();
    verify_report(&report, &chain, Some(&ark)).unwrap();
    assert_eq!(
        hex::encode(report.measurement),
        expected,
        "the guest's report vs sev-snp-measure"
    );
    // The platform's measurement, and only it, is compared with the expected value.
    let platform = PlatformMeasurement::from_snp_report(&report);
    assert_eq!(
        platform.matches(&hex::decode(&expected).unwrap()),
        Some(true)
    );
    assert_eq!(platform.matches(&[0; 48]), Some(false));
    assert_eq!(report.host_data, [7; 32]);
    assert_eq!(report.report_data, report_data);
    assert_eq!(report.policy.get(), 0x30000);
    // A tampered report does not verify.
    let mut bad = report;
    bad.measurement[0] ^= 1;
    assert!(verify_report(&bad, &chain, Some(&ark)).is_err());
}

#[test]
fn snp_misuse_gets_the_kernels_errno() {
    let _host = served();
    let img = measure_common::syn64k();
    let fw = FirmwareImage::parse(&img).unwrap();
    let inputs = amd_inputs(&fw, 1, "EPYC-v4");
    let plan = LaunchPlan::snp(&inputs).unwrap();

    // A page populated twice: the firmware refuses it (EIO with its status).
    let mut launch =
        Launch::new(backend(VmType::Snp), InitParams::Snp(SnpInit::default())).unwrap();
    launch.add_plan_memory(&plan).unwrap();
    launch.create_vcpu(0).unwrap();
    let mut started = launch.start().unwrap();
    started.add_plan(&plan).unwrap();
    let e = started.add(&plan.steps[0]).unwrap_err();
    assert_eq!(e.errno().map(|e| e.raw()), Some(libc::EIO), "{e}");
    assert!(matches!(e, LaunchError::Command(ref c) if c.command == "KVM_SEV_SNP_LAUNCH_UPDATE"));

    // A region outside any guest_memfd slot: EINVAL from the kernel.
    let e = started.add_measured(0x4000_0000, &[1; 4096]).unwrap_err();
    let e_str = e.to_string();
    assert!(e.errno().is_some(), "{e_str}");

    // LAUNCH_SECRET does not exist for SNP.
    let mut measured = started.measure().unwrap();
    let e = measured
        .inject_secret(&LaunchSecret {
            header: vec![0; 52],
            ciphertext: vec![0; 16],
            gpa: 0x80_5000,
        })
        .unwrap_err();
    assert!(matches!(e, LaunchError::NotAvailable { .. }), "{e}");

    // The policy is checked with the uAPI rules before SNP_LAUNCH_START.
    let e = Launch::new(
        backend(VmType::Snp),
        InitParams::Snp(SnpInit {
            policy: kvm_coco_uapi::SnpPolicy::SMT,
            ..SnpInit::default()
        }),
    )
    .unwrap_err();
    assert!(matches!(e, LaunchError::Params(_)), "{e}");
}

/// The guest owner's side of an SEV / SEV-ES launch.
struct Owner {
    session: OwnerSession,
}

impl Owner {
    /// The owner's session with the platform whose PDH `/dev/sev` exports (psp-driver's
    /// `DevSev`, on the served thread).
    fn new(policy: u32) -> Self {
        let export = DevSev::open().unwrap().pdh_cert_export().unwrap();
        let pdh = SevCert::read_from_bytes(&export.pdh_cert).unwrap();
        let mut rng = ChaCha20Rng::from_seed([9; 32]);
        Self {
            session: OwnerSession::new(&mut rng, &pdh, policy).unwrap(),
        }
    }

    fn transport(&self) -> SevSession {
        SevSession {
            dh_cert: self.session.dh_cert().as_bytes().to_vec(),
            session: self.session.session().as_bytes().to_vec(),
        }
    }

    /// The firmware version `/dev/sev` reports (PLATFORM_STATUS).
    fn fw() -> FwVersion {
        let st = DevSev::open().unwrap().platform_status().unwrap();
        FwVersion {
            api_major: st.api_major,
            api_minor: st.api_minor,
            build: st.build,
        }
    }
}

#[test]
fn sev_launch_measure_verifies_and_the_guest_reads_the_secret() {
    let host = served();
    let img = measure_common::syn64k();
    let fw = FirmwareImage::parse(&img).unwrap();
    let plan = LaunchPlan::sev(&PlanInputs::new(&fw)).unwrap();
    let off = offline(&plan);
    assert_eq!(
        off.digest.to_string(),
        ssm(&["--mode", "sev", "--ovmf", "syn64k.fd"])
    );

    // NODBG: the host cannot DBG_DECRYPT, yet the guest reads its own memory.
    let policy = 1;
    let owner = Owner::new(policy);
    let fwv = Owner::fw();
    let params = SevInit {
        policy,
        session: Some(owner.transport()),
    };
    let mut launch = Launch::new(backend(VmType::Sev), InitParams::Sev(params)).unwrap();
    launch.add_plan_memory(&plan).unwrap();
    launch.add_memory(0x80_0000, 0x10000).unwrap();
    launch.create_vcpu(0).unwrap();
    let mut launch = launch.start().unwrap();
    launch.add_plan(&plan).unwrap();
    let mut launch = launch.measure().unwrap();

    // The owner checks LAUNCH_MEASURE against the offline digest.
    let m = *launch.sev_launch_measure().unwrap();
    let mut blob = [0u8; 48];
    blob[..32].copy_from_slice(&m.measure);
    blob[32..].copy_from_slice(&m.mnonce);
    let ld: [u8; 32] = off.digest.as_bytes().try_into().unwrap();
    verify_launch_measure(&owner.session.keys().tik, fwv, policy, &ld, &blob).unwrap();
    let mut wrong = ld;
    wrong[0] ^= 1;
    assert!(verify_launch_measure(&owner.session.keys().tik, fwv, policy, &wrong, &blob).is_err());

    // ... and sends a secret bound to that measurement.
    let secret = *b"launch secret for the guest!0123";
    let (hdr, ct) = build_secret(owner.session.keys(), &m.measure, [0x33; 16], &secret).unwrap();
    // A packet whose MAC does not match is refused by the firmware (BAD_MEASUREMENT).
    let mut bad_hdr = hdr;
    bad_hdr.mac[0] ^= 1;
    let e = launch
        .inject_secret(&LaunchSecret {
            header: bad_hdr.as_bytes().to_vec(),
            ciphertext: ct.clone(),
            gpa: 0x80_5000,
        })
        .unwrap_err();
    assert_eq!(e.errno().map(|e| e.raw()), Some(libc::EIO), "{e}");
    launch
        .inject_secret(&LaunchSecret {
            header: hdr.as_bytes().to_vec(),
            ciphertext: ct,
            gpa: 0x80_5000,
        })
        .unwrap();
    let launch = launch.finish().unwrap();
    assert_eq!(launch.log().diff(off.log.as_ref().unwrap()), None);

    let (backend, mut vcpus) = launch.into_parts();
    // The VMM sees ciphertext where the secret went (its own mapping of the guest RAM).
    let mut host_view = [0u8; 32];
    backend.read_shared(0x80_5000, &mut host_view).unwrap();
    assert_ne!(host_view, secret);
    host.load_program(
        &vcpus[0],
        [
            GuestOp::Read {
                gpa: 0x80_5000,
                len: 32,
                private: true,
            },
            GuestOp::Halt,
        ],
    )
    .unwrap();
    assert!(matches!(vcpus[0].run().unwrap(), Exit::Hlt));
    assert_eq!(
        host.outcomes(&vcpus[0]).unwrap(),
        [GuestOutcome::Read {
            gpa: 0x80_5000,
            private: true,
            data: secret.to_vec(),
        }]
    );
}

fn sev_es_launch(vcpus: u32, vcpu_type: &str) {
    let img = measure_common::syn64k();
    let fw = FirmwareImage::parse(&img).unwrap();
    let inputs = amd_inputs(&fw, vcpus, vcpu_type);
    let plan = LaunchPlan::sev_es(&inputs).unwrap();
    let off = offline(&plan);
    let n = vcpus.to_string();
    assert_eq!(
        off.digest.to_string(),
        ssm(&[
            "--mode",
            "seves",
            "--vcpus",
            &n,
            "--vcpu-type",
            vcpu_type,
            "--ovmf",
            "syn64k.fd",
        ])
    );

    let policy = 0x4; // ES
    let owner = Owner::new(policy);
    let fwv = Owner::fw();
    let mut launch = Launch::new(
        backend(VmType::SevEs),
        InitParams::SevEs(SevEsInit {
            policy,
            session: Some(owner.transport()),
            ..SevEsInit::default()
        }),
    )
    .unwrap();
    launch.add_plan_memory(&plan).unwrap();
    for id in 0..vcpus {
        launch.create_vcpu(id).unwrap();
    }
    // Registers are accessible until LAUNCH_UPDATE_VMSA.
    assert!(launch.vcpu_mut(0).unwrap().regs().is_ok());
    let mut launch = launch.start().unwrap();
    launch.add_plan(&plan).unwrap();
    let mut launch = launch.measure().unwrap();
    // Every vCPU's VMSA is measured: the firmware's digest is the offline SEV-ES digest.
    let m = *launch.sev_launch_measure().unwrap();
    let mut blob = [0u8; 48];
    blob[..32].copy_from_slice(&m.measure);
    blob[32..].copy_from_slice(&m.mnonce);
    let ld: [u8; 32] = off.digest.as_bytes().try_into().unwrap();
    verify_launch_measure(&owner.session.keys().tik, fwv, policy, &ld, &blob).unwrap();
    // Register access after protection is refused before any syscall.
    for id in 0..vcpus {
        match launch.vcpu_mut(id).unwrap().set_regs(&Default::default()) {
            Err(Error::ProtectedState { op, vm_type }) => {
                assert_eq!((op, vm_type), (RegisterOp::Regs, VmType::SevEs));
            }
            other => panic!("vCPU {id}: {other:?}"),
        }
    }
    let launch = launch.finish().unwrap();
    assert_eq!(launch.log().diff(off.log.as_ref().unwrap()), None);
    assert_eq!(
        launch
            .log()
            .entries
            .iter()
            .filter(|e| e.kind == kvm_coco::measure::PageKind::Vmsa)
            .count(),
        vcpus as usize
    );
}

#[test]
fn sev_es_measures_every_vcpu_vmsa() {
    let _host = served();
    sev_es_launch(1, "EPYC-Milan");
    sev_es_launch(2, "EPYC-Genoa");
    sev_es_launch(64, "EPYC-v4");
}

#[test]
fn sev_es_vcpu_count_must_match_the_plan() {
    let _host = served();
    let img = measure_common::syn64k();
    let fw = FirmwareImage::parse(&img).unwrap();
    let inputs = amd_inputs(&fw, 2, "EPYC-Milan");
    let plan = LaunchPlan::sev_es(&inputs).unwrap();
    let mut launch = Launch::new(
        backend(VmType::SevEs),
        InitParams::SevEs(SevEsInit {
            policy: 0x4,
            ..SevEsInit::default()
        }),
    )
    .unwrap();
    launch.add_plan_memory(&plan).unwrap();
    launch.create_vcpu(0).unwrap();
    let mut launch = launch.start().unwrap();
    launch.add_plan(&plan).unwrap();
    let e = launch.measure().unwrap_err();
    assert!(
        matches!(e, LaunchError::VcpuCount { plan: 2, vcpus: 1 }),
        "{e}"
    );
}

#[test]
fn sev_out_of_order_is_refused_by_the_firmware() {
    let _host = served();
    // LAUNCH_SECRET after LAUNCH_FINISH cannot be written with the typestate; through the
    // escape hatch the firmware refuses it: EIO, INVALID_GUEST_STATE.
    let img = measure_common::syn64k();
    let fw = FirmwareImage::parse(&img).unwrap();
    let plan = LaunchPlan::sev(&PlanInputs::new(&fw)).unwrap();
    let mut launch =
        Launch::new(backend(VmType::Sev), InitParams::Sev(SevInit::default())).unwrap();
    launch.add_plan_memory(&plan).unwrap();
    let mut launch = launch.start().unwrap();
    launch.add_plan(&plan).unwrap();
    let mut launch = launch.measure().unwrap().finish().unwrap();
    let e = launch
        .backend_mut()
        .sev_launch_update_data(
            0xFFFF_0000,
            0x1000,
            kvm_coco::launch::Source {
                gpa: 0xFFFF_0000,
                bytes: &[0u8; 16],
            },
        )
        .unwrap_err();
    assert_eq!(e.errno.raw(), libc::EIO, "{e}");
    assert!(e.to_string().contains("INVALID_GUEST_STATE"), "{e}");
    assert_eq!(e.hint, Some(kvm_coco::ops::HINT_OUT_OF_ORDER));
    // SEV measures everything: an unmeasured region does not exist there.
    let mut launch = Launch::new(backend(VmType::Sev), InitParams::Sev(SevInit::default()))
        .unwrap()
        .start()
        .unwrap();
    let e = launch
        .add(&kvm_coco::measure::Step {
            gpa: 0x1000,
            len: 0x1000,
            kind: kvm_coco::measure::PageKind::Zero,
            data: kvm_coco::measure::Data::None,
            origin: kvm_coco::measure::plan::Origin::Firmware,
        })
        .unwrap_err();
    assert!(matches!(e, LaunchError::NotAvailable { .. }), "{e}");
}

/// One SNP CPUID page entry (AMD SEV-SNP firmware ABI, CPUID page: count u32, reserved
/// u32, reserved u64, then 48-byte entries eax_in, ecx_in, xcr0_in, xss_in, eax, ebx, ecx,
/// edx, reserved).
fn cpuid_entry(page: &mut [u8], i: usize, leaf: u32, sub: u32, regs: [u32; 4]) {
    let o = 16 + i * 48;
    page[o..o + 4].copy_from_slice(&leaf.to_le_bytes());
    page[o + 4..o + 8].copy_from_slice(&sub.to_le_bytes());
    for (k, r) in regs.iter().enumerate() {
        page[o + 24 + 4 * k..o + 28 + 4 * k].copy_from_slice(&r.to_le_bytes());
    }
}

#[test]
fn snp_cpuid_page_rejection_names_the_corrected_leaves() {
    let _host = served();
    let mut page = vec![0u8; 4096];
    page[0..4].copy_from_slice(&2u32.to_le_bytes());
    // Leaf 7.0 claims SGX (EBX bit 2), which the (simulated) hardware does not offer.
    cpuid_entry(&mut page, 0, 7, 0, [0, 0x0000_0205, 0, 0]);
    cpuid_entry(&mut page, 1, 1, 0, [0x00a1_0f11, 0, 0, 0]);
    let mut launch =
        Launch::new(backend(VmType::Snp), InitParams::Snp(SnpInit::default())).unwrap();
    launch.add_memory(0x80_0000, 0x10000).unwrap();
    let mut launch = launch.start().unwrap();
    let e = launch
        .add(&kvm_coco::measure::Step {
            gpa: 0x80_2000,
            len: 0x1000,
            kind: kvm_coco::measure::PageKind::Cpuid,
            data: kvm_coco::measure::Data::Borrowed(&page),
            origin: kvm_coco::measure::plan::Origin::Firmware,
        })
        .unwrap_err();
    match e {
        LaunchError::CpuidRejected {
            gpa,
            corrections,
            source,
        } => {
            assert_eq!(gpa, 0x80_2000);
            assert_eq!(source.errno.raw(), libc::EIO);
            assert_eq!(corrections.len(), 1, "{corrections:x?}");
            let c = corrections[0];
            assert_eq!((c.leaf, c.subleaf), (7, 0));
            assert_eq!(c.submitted[1], 0x205);
            assert_eq!(c.corrected[1], 0x201);
        }
        other => panic!("{other}"),
    }
}

#[test]
fn debug_access_follows_the_policy() {
    let _host = served();
    let img = measure_common::syn64k();
    let fw = FirmwareImage::parse(&img).unwrap();
    let plan = LaunchPlan::sev(&PlanInputs::new(&fw)).unwrap();
    let run = |policy: u32| {
        let mut l = Launch::new(
            backend(VmType::Sev),
            InitParams::Sev(SevInit {
                policy,
                session: None,
            }),
        )
        .unwrap();
        l.add_plan_memory(&plan).unwrap();
        let mut l = l.start().unwrap();
        l.add_plan(&plan).unwrap();
        l.measure().unwrap().finish().unwrap()
    };
    // Debugging allowed: the plaintext of the encrypted firmware, and a write round trip.
    let mut l = run(0);
    let mut buf = [0u8; 32];
    l.debug_read(0xFFFF_0000, &mut buf).unwrap();
    assert_eq!(&buf[..], &img[..32]);
    let mut host = [0u8; 32];
    l.backend().read_shared(0xFFFF_0000, &mut host).unwrap();
    assert_ne!(host, buf, "the host sees ciphertext");
    l.debug_write(0xFFFF_0010, &[0xEE; 16]).unwrap();
    l.debug_read(0xFFFF_0000, &mut buf).unwrap();
    assert_eq!((&buf[..16], &buf[16..]), (&img[..16], &[0xEE; 16][..]));
    // NODBG: refused before the ioctl.
    let mut l = run(1);
    assert!(matches!(
        l.debug_read(0xFFFF_0000, &mut buf),
        Err(LaunchError::DebugNotAllowed { policy: 1 })
    ));
    // SNP: not available.
    let mut l = Launch::new(backend(VmType::Snp), InitParams::Snp(SnpInit::default())).unwrap();
    assert!(matches!(
        l.debug_read(0, &mut buf),
        Err(LaunchError::NotAvailable { .. })
    ));
}
