//! The SNP guest obtains its attestation report through SNP_GUEST_REQUEST, launched through
//! `KvmBackend` on a thread served by the software host: it seals `MSG_REPORT_REQ` under
//! VMPCK0 from its secrets page in a shared page, KVM hands the request page to the firmware
//! and the response back, the guest opens it. The VMM sees only what a VMM sees — its own
//! mapping of the shared pages, the typed exits — and uses exactly that to replay and tamper
//! with requests. The firmware statuses expected here are the ones the
//! firmware-and-measurement facts give (§1.2: INVALID_PARAM 0x16, AEAD_OFLOW 0x1D,
//! INVALID_KEY 0x27), the KVM codes the linux-uapi facts give (§6:
//! `SNP_GUEST_ERR(vmm_err, fw_err)`), and the measurement sev-snp-measure's (committed
//! vectors).

#[path = "measure_common/mod.rs"]
mod measure_common;

use kvm_coco::launch::backend::Backend;
use kvm_coco::launch::{InitParams, KvmBackend, Launch, SnpInit};
use kvm_coco::measure::plan::PlanInputs;
use kvm_coco::measure::synthetic::syn64k;
use kvm_coco::measure::vcpu::cpu_type_sig;
use kvm_coco::measure::{FirmwareImage, LaunchPlan, PageKind};
use kvm_coco::sim::guest::{GuestOp, GuestOutcome};
use kvm_coco::sim::host::SoftwareHost;
use kvm_coco::{CertsReply, Exit, Kvm, SystemEvent, Vcpu, VmType};
use psp_driver::owner::guest_msg::{
    AEAD_AES_256_GCM, MSG_HDR_LEN, MSG_REPORT_REQ, MSG_REPORT_RSP, SnpGuestMsgHdr,
};
use psp_driver::owner::snp::verify_report;
use psp_driver::report::AttestationReport;
use zerocopy::FromBytes;

const SHARED: u64 = 0x100_0000;
const SHARED_SIZE: u64 = 0x10000;
const POLICY: u64 = 0x3_0000;
/// `SNP_GUEST_ERR(vmm_err, fw_err)` by hand from the facts, not from the code under test.
const fn guest_err(vmm: u64, fw: u64) -> u64 {
    (vmm << 32) | fw
}
const INVALID_PARAM: u64 = 0x16;
const AEAD_OFLOW: u64 = 0x1D;
const INVALID_KEY: u32 = 0x27;

/// A software host serving this test's thread. Fails (never skips) where seccomp user
/// notification is refused: every machine this project runs on has it.
fn served() -> SoftwareHost {
    let host = SoftwareHost::builder().seed(1).start().unwrap();
    host.serve_current_thread()
        .expect("seccomp user notification is required by the software host");
    host
}

/// The measurement of the guest [`launch`] makes with its secrets page:
/// `sev-snp-measure --mode snp --vcpus 1 --vcpu-type EPYC-v4 --ovmf syn64k.fd`.
fn expected_measurement() -> [u8; 48] {
    let hex = measure_common::ssm_output(&[
        "--mode",
        "snp",
        "--vcpus",
        "1",
        "--vcpu-type",
        "EPYC-v4",
        "--ovmf",
        "syn64k.fd",
    ]);
    hex::decode(hex).unwrap().try_into().unwrap()
}

struct Guest {
    backend: KvmBackend,
    vcpu: Vcpu,
}

/// An SNP guest launched from the synthetic firmware (whose metadata has a SECRETS page),
/// optionally without that page, with `SHARED..SHARED+64K` shared RAM.
fn launch(init: SnpInit, keep_secrets: bool) -> Guest {
    let img = syn64k();
    let fw = FirmwareImage::parse(&img).unwrap();
    let inputs = PlanInputs {
        vcpus: 1,
        vcpu_sig: cpu_type_sig("EPYC-v4"),
        ..PlanInputs::new(&fw)
    };
    let mut plan = LaunchPlan::snp(&inputs).unwrap();
    let secrets = plan
        .steps
        .iter()
        .filter(|s| s.kind == PageKind::Secrets)
        .count();
    assert_eq!(secrets, 1, "the synthetic firmware has one secrets page");
    if !keep_secrets {
        plan.steps.retain(|s| s.kind != PageKind::Secrets);
    }
    let backend = KvmBackend::new(&Kvm::open().unwrap(), VmType::Snp).unwrap();
    let mut l = Launch::new(backend, InitParams::Snp(init)).unwrap();
    l.add_plan_memory(&plan).unwrap();
    l.add_memory(SHARED, SHARED_SIZE).unwrap();
    l.create_vcpu(0).unwrap();
    let mut l = l.start().unwrap();
    l.add_plan(&plan).unwrap();
    let l = l.measure().unwrap().finish().unwrap();
    let (backend, mut vcpus) = l.into_parts();
    Guest {
        backend,
        vcpu: vcpus.remove(0),
    }
}

/// Runs the program to its termination; at each certificate request the VMM's `on_certs`
/// (given the request's index and the VMM's view of the guest) chooses the reply. Returns
/// the number of certificate exits.
fn run_with(
    g: &mut Guest,
    mut on_certs: impl FnMut(usize, &mut KvmBackend) -> CertsReply,
) -> usize {
    let mut certs = 0;
    for _ in 0..32 {
        match g.vcpu.run().unwrap() {
            Exit::SnpReqCerts(mut r) => {
                r.reply(on_certs(certs, &mut g.backend));
                certs += 1;
            }
            Exit::SystemEvent(SystemEvent::SevTerm { .. }) => return certs,
            other => panic!("unexpected exit {other:?}"),
        }
    }
    panic!("the guest did not terminate");
}

/// Runs the program to its termination, answering certificate requests with `replies` in
/// order; returns the number of certificate exits.
fn run(g: &mut Guest, replies: &[CertsReply]) -> usize {
    run_with(g, |i, _| replies[i])
}

type Snp = (u64, Option<Vec<u8>>, Option<u64>, Option<u32>);

fn reports(host: &SoftwareHost, vcpu: &Vcpu) -> Vec<Snp> {
    host.outcomes(vcpu)
        .unwrap()
        .iter()
        .filter_map(|o| match o {
            GuestOutcome::SnpReport {
                certs_ret,
                report,
                exitinfo2,
                rsp_status,
                ..
            } => Some((*certs_ret, report.clone(), *exitinfo2, *rsp_status)),
            _ => None,
        })
        .collect()
}

fn verified(host: &SoftwareHost, bytes: &[u8]) -> AttestationReport {
    let r = AttestationReport::read_from_bytes(bytes).unwrap();
    let chain = host.sev_host().unwrap().firmware().certs().snp;
    verify_report(&r, &chain, Some(&chain.ark.public_key().unwrap())).unwrap();
    r
}

fn report_op(report_data: [u8; 64], npages: u64) -> GuestOp {
    GuestOp::SnpReport {
        report_data,
        certs_gpa: SHARED,
        npages,
    }
}

/// The shared page (as the VMM reads it through its own mapping) holding a guest message of
/// type `msg_type`, with its GPA: the VMM finds the guest's request and response pages by
/// their plaintext headers.
fn message_page(backend: &KvmBackend, msg_type: u8) -> Option<(u64, Vec<u8>)> {
    (SHARED..SHARED + SHARED_SIZE)
        .step_by(4096)
        .map(|gpa| {
            let mut page = vec![0u8; 4096];
            backend.read_shared(gpa, &mut page).unwrap();
            (gpa, page)
        })
        .find(|(_, page)| {
            SnpGuestMsgHdr::read_from_prefix(page).is_ok_and(|(h, _)| {
                h.hdr_version == 1
                    && usize::from(h.hdr_sz.get()) == MSG_HDR_LEN
                    && h.algo == AEAD_AES_256_GCM
                    && h.msg_type == msg_type
            })
        })
}

/// The plaintext header of the response the firmware last wrote for the guest.
fn response_header(backend: &KvmBackend) -> SnpGuestMsgHdr {
    let (_, page) = message_page(backend, MSG_REPORT_RSP).expect("a response page");
    SnpGuestMsgHdr::read_from_prefix(&page).unwrap().0
}

#[test]
fn two_reports_through_the_envelope_verify_and_carry_the_report_data() {
    let host = served();
    let mut g = launch(SnpInit::default(), true);
    host.load_program(
        &g.vcpu,
        [
            report_op([0x11; 64], 1),
            report_op([0x22; 64], 1),
            GuestOp::Terminate { code: 0 },
        ],
    )
    .unwrap();
    assert_eq!(run(&mut g, &[]), 0, "REQ_CERTS is off: no exit");
    let r = reports(&host, &g.vcpu);
    assert_eq!(r.len(), 2);
    for ((ret, report, exitinfo2, status), data) in r.iter().zip([[0x11u8; 64], [0x22; 64]]) {
        assert_eq!((*ret, *exitinfo2, *status), (0, Some(0), Some(0)));
        let rep = verified(&host, report.as_ref().unwrap());
        assert_eq!(rep.report_data, data);
        assert_eq!(rep.measurement, expected_measurement());
        assert_eq!(rep.vmpl.get(), 0);
        assert_eq!(rep.policy.get(), POLICY);
    }
    // The second response is sealed with sequence number 4 (requests 1 and 3).
    let hdr = response_header(&g.backend);
    assert_eq!((hdr.msg_seqno.get(), hdr.msg_vmpck), (4, 0));
}

#[test]
fn the_certificate_exit_comes_first_and_vmm_errors_reach_the_guest() {
    let host = served();
    let init = SnpInit {
        req_certs: true,
        ..SnpInit::default()
    };
    let mut g = launch(init, true);
    host.load_program(
        &g.vcpu,
        [
            report_op([1; 64], 0),
            report_op([2; 64], 2),
            report_op([3; 64], 2),
            report_op([4; 64], 2),
            report_op([5; 64], 2),
            GuestOp::Terminate { code: 0 },
        ],
    )
    .unwrap();
    // Before the VMM answers, the guest has no outcome yet.
    match g.vcpu.run().unwrap() {
        Exit::SnpReqCerts(mut r) => r.reply(CertsReply::NeedPages(2)),
        other => panic!("{other:?}"),
    }
    assert!(host.outcomes(&g.vcpu).unwrap().is_empty());
    let n = run(
        &mut g,
        &[
            CertsReply::Busy,
            CertsReply::Failed,
            CertsReply::Success,
            CertsReply::Success,
        ],
    );
    assert_eq!(n, 4);
    let r = reports(&host, &g.vcpu);
    assert_eq!(r.len(), 5);
    assert_eq!(
        (r[0].0, r[0].2, r[0].1.is_none()),
        (28, Some(guest_err(1, 0)), true)
    );
    assert_eq!(
        (r[1].0, r[1].2, r[1].1.is_none()),
        (11, Some(guest_err(2, 0)), true)
    );
    assert_eq!(
        (r[2].0, r[2].2, r[2].1.is_none()),
        (5, Some(0xFFFF_FFFF_0000_0000), true)
    );
    // After all of that, sequence numbers are still in step with the firmware.
    for (i, data) in [(3, [4u8; 64]), (4, [5u8; 64])] {
        assert_eq!((r[i].0, r[i].2, r[i].3), (0, Some(0), Some(0)), "{i}");
        assert_eq!(verified(&host, r[i].1.as_ref().unwrap()).report_data, data);
    }
}

#[test]
fn a_guest_without_secrets_page_is_recorded_as_such() {
    let host = served();
    let mut g = launch(SnpInit::default(), false);
    host.load_program(
        &g.vcpu,
        [report_op([9; 64], 0), GuestOp::Terminate { code: 0 }],
    )
    .unwrap();
    run(&mut g, &[]);
    let r = reports(&host, &g.vcpu);
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].2, r[0].3), (None, None));
    assert_eq!(
        verified(&host, r[0].1.as_ref().unwrap()).report_data,
        [9; 64]
    );
}

#[test]
fn a_vcek_disabled_guest_reads_invalid_key_in_the_response() {
    let host = served();
    let init = SnpInit {
        vcek_disabled: true,
        ..SnpInit::default()
    };
    let mut g = launch(init, true);
    host.load_program(
        &g.vcpu,
        [
            report_op([1; 64], 0),
            report_op([2; 64], 0),
            GuestOp::Terminate { code: 0 },
        ],
    )
    .unwrap();
    run(&mut g, &[]);
    let r = reports(&host, &g.vcpu);
    assert_eq!(r.len(), 2);
    for x in &r {
        // The firmware answered (the message layer worked), the report request failed.
        assert_eq!(
            (x.2, x.3, x.1.is_none()),
            (Some(0), Some(INVALID_KEY), true)
        );
    }
}

/// What the VMM does to the guest's request page before it lets KVM issue the request.
#[derive(Clone, Copy, Debug)]
enum Tamper {
    /// Nothing; the VMM keeps a copy of the page.
    Capture,
    /// Nothing.
    Forward,
    /// Puts back the copy kept earlier.
    Replay,
    /// Flips a bit of the page at this offset.
    Flip(usize),
}

/// Runs the program; at the `i`th certificate request the VMM applies `plan[i]` to the
/// request page in its shared memory and replies success.
fn run_tampering(g: &mut Guest, plan: &[Tamper]) {
    let mut kept: Option<Vec<u8>> = None;
    let n = run_with(g, |i, backend| {
        let (gpa, mut page) =
            message_page(backend, MSG_REPORT_REQ).expect("the guest's request page");
        match plan[i] {
            Tamper::Capture => kept = Some(page),
            Tamper::Forward => {}
            Tamper::Replay => {
                backend
                    .write_shared(gpa, kept.as_ref().expect("a kept request"))
                    .unwrap();
            }
            Tamper::Flip(off) => {
                page[off] ^= 0x80;
                backend.write_shared(gpa, &page).unwrap();
            }
        }
        CertsReply::Success
    });
    assert_eq!(n, plan.len());
}

#[test]
fn the_firmware_refuses_replayed_and_tampered_requests() {
    let host = served();
    let init = SnpInit {
        req_certs: true,
        ..SnpInit::default()
    };
    let mut g = launch(init, true);
    let data = [[0x5a; 64], [1; 64], [2; 64], [3; 64], [4; 64], [0x77; 64]];
    host.load_program(
        &g.vcpu,
        data.iter()
            .map(|d| report_op(*d, 1))
            .chain([GuestOp::Terminate { code: 0 }]),
    )
    .unwrap();
    run_tampering(
        &mut g,
        &[
            // Sequence 1: accepted (the response is sequence 2); the VMM keeps the request.
            Tamper::Capture,
            // The guest's sequence 3 replaced by the kept sequence 1: spent.
            Tamper::Replay,
            // A ciphertext byte, an authenticated reserved header byte, the tag (what a
            // key other than VMPCK0 produces): the tag does not verify.
            Tamper::Flip(MSG_HDR_LEN),
            Tamper::Flip(0x40),
            Tamper::Flip(0),
            // Untouched: sequence 3 again, accepted.
            Tamper::Forward,
        ],
    );
    let r = reports(&host, &g.vcpu);
    assert_eq!(r.len(), 6);
    assert_eq!((r[0].0, r[0].2, r[0].3), (0, Some(0), Some(0)));
    let rep = verified(&host, r[0].1.as_ref().unwrap());
    assert_eq!(
        (rep.report_data, rep.measurement),
        ([0x5a; 64], expected_measurement())
    );
    assert_eq!(
        (r[1].0, r[1].1.is_none(), r[1].2, r[1].3),
        (0, true, Some(guest_err(0, AEAD_OFLOW)), None)
    );
    for (i, x) in r.iter().enumerate().take(5).skip(2) {
        assert_eq!(
            (x.0, x.1.is_none(), x.2, x.3),
            (0, true, Some(guest_err(0, INVALID_PARAM)), None),
            "request {i}"
        );
    }
    // None of the refused requests moved the counter: sequence 3 was accepted, its response
    // is sequence 4.
    assert_eq!((r[5].0, r[5].2, r[5].3), (0, Some(0), Some(0)));
    assert_eq!(
        verified(&host, r[5].1.as_ref().unwrap()).report_data,
        [0x77; 64]
    );
    let hdr = response_header(&g.backend);
    assert_eq!(
        (hdr.msg_type, hdr.msg_seqno.get(), hdr.msg_vmpck),
        (MSG_REPORT_RSP, 4, 0)
    );
}

#[test]
fn a_request_replayed_after_later_traffic_is_still_refused() {
    let host = served();
    let init = SnpInit {
        req_certs: true,
        ..SnpInit::default()
    };
    let mut g = launch(init, true);
    host.load_program(
        &g.vcpu,
        [
            report_op([1; 64], 1),
            report_op([2; 64], 1),
            report_op([3; 64], 1),
            report_op([4; 64], 1),
            GuestOp::Terminate { code: 0 },
        ],
    )
    .unwrap();
    // The guest uses sequence numbers 1 and 3; the VMM then replays 1 in place of 5.
    run_tampering(
        &mut g,
        &[
            Tamper::Capture,
            Tamper::Forward,
            Tamper::Replay,
            Tamper::Forward,
        ],
    );
    let r = reports(&host, &g.vcpu);
    let exitinfo2: Vec<_> = r.iter().map(|x| x.2).collect();
    assert_eq!(
        exitinfo2,
        [Some(0), Some(0), Some(guest_err(0, AEAD_OFLOW)), Some(0)]
    );
    for (i, data) in [(0, [1u8; 64]), (1, [2; 64]), (3, [4; 64])] {
        assert_eq!(verified(&host, r[i].1.as_ref().unwrap()).report_data, data);
    }
    assert!(r[2].1.is_none());
    // The last request was sequence 5: the firmware answered with 6.
    assert_eq!(response_header(&g.backend).msg_seqno.get(), 6);
}

#[test]
fn a_guest_request_on_a_non_snp_vm_fails_kvm_run() {
    let host = served();
    let img = syn64k();
    let fw = FirmwareImage::parse(&img).unwrap();
    let inputs = PlanInputs {
        vcpus: 1,
        vcpu_sig: cpu_type_sig("EPYC-v4"),
        ..PlanInputs::new(&fw)
    };
    let plan = LaunchPlan::sev_es(&inputs).unwrap();
    let backend = KvmBackend::new(&Kvm::open().unwrap(), VmType::SevEs).unwrap();
    let mut l = Launch::new(
        backend,
        InitParams::SevEs(kvm_coco::launch::SevEsInit {
            policy: 0x4,
            ..Default::default()
        }),
    )
    .unwrap();
    l.add_plan_memory(&plan).unwrap();
    l.add_memory(SHARED, SHARED_SIZE).unwrap();
    l.create_vcpu(0).unwrap();
    let mut l = l.start().unwrap();
    l.add_plan(&plan).unwrap();
    let l = l.measure().unwrap().finish().unwrap();
    let (_backend, mut vcpus) = l.into_parts();
    host.load_program(&vcpus[0], [report_op([1; 64], 0)])
        .unwrap();
    let e = vcpus[0].run().unwrap_err();
    assert_eq!(e.errno().map(|e| e.raw()), Some(libc::EINVAL), "{e}");
}

#[test]
fn a_misaligned_certificate_buffer_is_bad_input_without_an_exit() {
    let host = served();
    let init = SnpInit {
        req_certs: true,
        ..SnpInit::default()
    };
    let mut g = launch(init, true);
    host.load_program(
        &g.vcpu,
        [
            GuestOp::SnpReport {
                report_data: [1; 64],
                certs_gpa: SHARED + 8,
                npages: 1,
            },
            report_op([2; 64], 1),
            GuestOp::Terminate { code: 0 },
        ],
    )
    .unwrap();
    // Only the second request exits for certificates.
    assert_eq!(run(&mut g, &[CertsReply::Success]), 1);
    let r = reports(&host, &g.vcpu);
    // GHCB_ERR_INVALID_INPUT (sev-common.h) = 5; no report.
    assert_eq!((r[0].1.is_none(), r[0].2, r[0].3), (true, Some(5), None));
    // The refused request used no sequence number: the next one is accepted.
    assert_eq!((r[1].2, r[1].3), (Some(0), Some(0)));
    assert_eq!(
        verified(&host, r[1].1.as_ref().unwrap()).report_data,
        [2; 64]
    );
}
