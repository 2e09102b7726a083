//! TDX launch end to end through `KvmBackend` on a thread served by the software host (every
//! launch command is a real `/dev/kvm` system call): the plan the offline calculator measures
//! is executed by the launcher, the logs agree step by step, and a scripted guest obtains a
//! TDREPORT (through GetQuote) whose MRTD equals the offline MRTD and mrtd_ref.py's.

#[path = "measure_common/mod.rs"]
mod measure_common;

use kvm_coco::launch::backend::Backend;
use kvm_coco::launch::{InitParams, KvmBackend, Launch, LaunchError, PlatformMeasurement, TdxInit};
use kvm_coco::measure::{FirmwareImage, LaunchPlan};
use kvm_coco::sim::guest::{GuestOp, GuestOutcome};
use kvm_coco::sim::host::SoftwareHost;
use kvm_coco::sim::tdx::{TdHandle, TdQuote, TdReport};
use kvm_coco::{
    Error, Exit, Kvm, MapGpaReply, RegisterOp, SystemEvent, TdVmCallStatus, TdxExit, VmType,
};
use zerocopy::FromBytes;

const QUOTE_GPA: u64 = 0x100_0000;
const SHARED_SIZE: u64 = 0x8000;

/// A software host serving this test's thread. Fails (never skips) where seccomp user
/// notification is refused: every machine this project runs on has it.
fn served() -> SoftwareHost {
    let host = SoftwareHost::builder().seed(1).start().unwrap();
    host.serve_current_thread()
        .expect("seccomp user notification is required by the software host");
    host
}

/// A TD on the (served) `/dev/kvm`.
fn backend() -> KvmBackend {
    KvmBackend::new(&Kvm::open().unwrap(), VmType::Tdx).unwrap()
}

#[test]
fn tdx_launch_matches_offline_and_the_guest_sees_mrtd() {
    let host = served();
    let img = measure_common::syn64k();
    let fw = FirmwareImage::parse(&img).unwrap();
    let plan = LaunchPlan::tdx(&fw).unwrap();
    let offline = measure_common::offline(&plan);
    assert_eq!(
        offline.digest.to_string(),
        measure_common::SYN64K_MRTD,
        "offline MRTD vs mrtd_ref.py"
    );

    let mut launch = Launch::new(backend(), InitParams::Tdx(TdxInit::default())).unwrap();
    launch.add_plan_memory(&plan).unwrap();
    launch.add_memory(QUOTE_GPA, SHARED_SIZE).unwrap();
    launch.create_vcpu(0).unwrap();
    // A TD's vCPU state belongs to the TDX module from creation (no ATTRIBUTES.DEBUG).
    match launch.vcpu_mut(0).unwrap().regs() {
        Err(Error::ProtectedState {
            op: RegisterOp::Regs,
            ..
        }) => {}
        other => panic!("register access on a TD vCPU: {other:?}"),
    }
    // KVM_RUN before FINALIZE_VM: EINVAL.
    match launch.vcpu_mut(0).unwrap().run() {
        Err(e) => assert_eq!(e.errno().map(|e| e.raw()), Some(libc::EINVAL)),
        Ok(exit) => panic!("ran before finalize: {exit:?}"),
    }
    let mut launch = launch.start().unwrap();
    launch.add_plan(&plan).unwrap();
    let launch = launch.measure().unwrap().finish().unwrap();

    // One plan, two uses: identical logs, identical digests.
    let offline_log = offline.log.as_ref().unwrap();
    assert_eq!(launch.log().diff(offline_log), None);
    assert!(!launch.log().entries.is_empty());
    assert_eq!(launch.log().digest, offline.digest.as_bytes());

    // The guest program.
    let report_data = [0x5au8; 64];
    let bfv_head = img[..64].to_vec();
    let (mut backend, mut vcpus) = launch.into_parts();
    host.load_program(
        &vcpus[0],
        [
            // A private access to shared memory: memory fault, converted, retried.
            GuestOp::Read {
                gpa: QUOTE_GPA + 0x4000,
                len: 8,
                private: true,
            },
            GuestOp::MapGpa {
                gpa: QUOTE_GPA,
                npages: 2,
                private: false,
            },
            GuestOp::GetQuote {
                gpa: QUOTE_GPA,
                size: 0x2000,
                report_data,
            },
            GuestOp::Read {
                gpa: 0xFFFF_0000,
                len: 64,
                private: true,
            },
            GuestOp::Terminate { code: 0x1234 },
        ],
    )
    .unwrap();

    let module = host.tdx_module().clone();
    let (mut faults, mut maps, mut quotes, mut fatal) = (0, 0, 0, None);
    for _ in 0..32 {
        // The VMM's side: typed exits, typed replies.
        let exit = vcpus[0].run().unwrap();
        match exit {
            Exit::MemoryFault(f) => {
                faults += 1;
                let (gpa, size, private) = (f.gpa, f.size, f.access() == kvm_coco::Access::Private);
                backend.set_private(gpa, size, private).unwrap();
            }
            Exit::MapGpaRange(mut m) => {
                maps += 1;
                let (gpa, size, private) =
                    (m.gpa, m.size(), m.access() == kvm_coco::Access::Private);
                backend.set_private(gpa, size, private).unwrap();
                m.reply(MapGpaReply::Success);
            }
            Exit::Tdx(TdxExit::GetQuote(mut q)) => {
                quotes += 1;
                let (gpa, size) = (q.args.gpa, q.args.size);
                assert_eq!((gpa, size), (QUOTE_GPA, 0x2000));
                // Read the TDREPORT the guest placed after the 24-byte header, quote it,
                // write the quote back and mark the buffer done.
                let mut report = vec![0u8; 1024];
                backend.read_shared(gpa + 24, &mut report).unwrap();
                let report = TdReport::read_from_bytes(&report).unwrap();
                let quote = module.lock().unwrap().quote(&report).unwrap().to_bytes();
                backend.write_shared(gpa + 24, &quote).unwrap();
                backend.write_shared(gpa + 16, &0u32.to_le_bytes()).unwrap();
                backend
                    .write_shared(gpa + 20, &(quote.len() as u32).to_le_bytes())
                    .unwrap();
                q.reply(TdVmCallStatus::Success);
            }
            Exit::SystemEvent(SystemEvent::TdxFatal { regs }) => {
                fatal = regs.get(12).copied();
                break;
            }
            other => panic!("unexpected exit {other:?}"),
        }
    }
    assert_eq!((faults, maps, quotes, fatal), (1, 1, 1, Some(0x1234)));

    let outcomes = host.outcomes(&vcpus[0]).unwrap();
    let report = outcomes
        .iter()
        .find_map(|o| match o {
            GuestOutcome::TdReport(r) => Some(TdReport::read_from_bytes(r).unwrap()),
            _ => None,
        })
        .expect("a TDREPORT");
    assert_eq!(report.td_info.mrtd[..], *offline.digest.as_bytes());
    assert_eq!(
        hex::encode(report.td_info.mrtd),
        measure_common::SYN64K_MRTD,
        "the TD's own MRTD vs mrtd_ref.py"
    );
    assert_eq!(report.report_mac.report_data, report_data);
    module.lock().unwrap().verify_report(&report).unwrap();
    let mrtd = hex::decode(measure_common::SYN64K_MRTD).unwrap();
    assert_eq!(
        PlatformMeasurement::from_td_report(zerocopy::IntoBytes::as_bytes(&report))
            .and_then(|p| p.matches(&mrtd)),
        Some(true)
    );

    let quote = outcomes
        .iter()
        .find_map(|o| match o {
            GuestOutcome::Quote { ret, buffer } => {
                assert_eq!(*ret, 0);
                let out_len = u32::from_le_bytes(buffer[20..24].try_into().unwrap()) as usize;
                Some(TdQuote::parse(&buffer[24..24 + out_len]).unwrap())
            }
            _ => None,
        })
        .expect("a quote");
    assert_eq!(quote.body.mrtd[..], *offline.digest.as_bytes());
    module.lock().unwrap().verify_quote(&quote).unwrap();

    // The guest reads its private firmware pages decrypted; the host sees ciphertext in the
    // physical page behind them (the TDX module's view of the TD's private memory: the one
    // TD this host created).
    assert!(outcomes.contains(&GuestOutcome::Read {
        gpa: 0xFFFF_0000,
        private: true,
        data: bfv_head.clone(),
    }));
    let host_view = {
        let m = module.lock().unwrap();
        let tds: Vec<TdHandle> = (0..16)
            .map(TdHandle)
            .filter(|&td| m.lifecycle(td).is_some())
            .collect();
        assert_eq!(tds.len(), 1, "one TD on this host");
        m.host_read_private(tds[0], 0xFFFF_0000).unwrap()
    };
    assert_ne!(&host_view[..64], &bfv_head[..]);
    assert!(matches!(
        outcomes.first(),
        Some(GuestOutcome::Read { private: true, .. })
    ));
    // After termination the vCPU does not run the guest any more.
    assert!(matches!(vcpus[0].run().unwrap(), Exit::Shutdown));
}

#[test]
fn tdx_misuse_gets_the_kernels_errno() {
    let _host = served();
    let img = measure_common::syn64k();
    let fw = FirmwareImage::parse(&img).unwrap();
    let plan = LaunchPlan::tdx(&fw).unwrap();

    // INIT_MEM_REGION is a vCPU ioctl: without a vCPU the launcher says so.
    let mut launch = Launch::new(backend(), InitParams::Tdx(TdxInit::default())).unwrap();
    launch.add_plan_memory(&plan).unwrap();
    let mut started = launch.start().unwrap();
    assert!(matches!(started.add_plan(&plan), Err(LaunchError::NoVcpu)));

    // A page populated twice: the kernel's EEXIST through the typed error.
    let mut launch = Launch::new(backend(), InitParams::Tdx(TdxInit::default())).unwrap();
    launch.add_plan_memory(&plan).unwrap();
    launch.create_vcpu(0).unwrap();
    let mut started = launch.start().unwrap();
    started.add_plan(&plan).unwrap();
    let err = started.add(&plan.steps[0]).unwrap_err();
    assert_eq!(err.errno().map(|e| e.raw()), Some(libc::EEXIST), "{err}");

    // After FINALIZE_VM every TDX vCPU command is refused with EINVAL (the escape hatch
    // reaches the VM; the typestate cannot see it).
    let mut finished = started.measure().unwrap().finish().unwrap();
    let err = finished.backend_mut().tdx_finalize_vm().unwrap_err();
    assert_eq!(err.errno.raw(), libc::EINVAL);
    assert_eq!(err.command, "KVM_TDX_FINALIZE_VM");
    assert!(err.hint.is_some());

    // SEV verbs do not exist for a TD.
    let launch = Launch::new(backend(), InitParams::Tdx(TdxInit::default())).unwrap();
    let mut measured = launch.start().unwrap().measure().unwrap();
    let e = measured
        .inject_secret(&kvm_coco::launch::LaunchSecret {
            header: vec![0; 52],
            ciphertext: vec![0; 16],
            gpa: 0,
        })
        .unwrap_err();
    assert!(
        matches!(
            e,
            LaunchError::NotAvailable {
                verb: "LAUNCH_SECRET",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn tdx_parameters_are_checked_before_init_vm() {
    let _host = served();
    // XFAM with a bit the module does not allow, and a GPAW of 40.
    let mut p = TdxInit::default();
    p.cpuid[0].eax = 40 << 16;
    let e = Launch::new(backend(), InitParams::Tdx(p)).unwrap_err();
    assert!(matches!(e, LaunchError::Params(_)), "{e}");
    let p = TdxInit {
        attributes: 1 << 0, // DEBUG: not in KVM 7.3's supported attributes
        ..TdxInit::default()
    };
    let e = Launch::new(backend(), InitParams::Tdx(p)).unwrap_err();
    assert!(e.to_string().contains("invalid launch parameters"), "{e}");
    // Parameters for another VM type.
    let e = Launch::new(
        backend(),
        InitParams::Snp(kvm_coco::launch::SnpInit::default()),
    )
    .unwrap_err();
    assert!(matches!(e, LaunchError::WrongVmType { .. }), "{e}");
}
