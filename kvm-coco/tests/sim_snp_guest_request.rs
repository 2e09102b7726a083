//! The simulated SNP guest obtains its attestation report through SNP_GUEST_REQUEST: it
//! seals `MSG_REPORT_REQ` under VMPCK0 from its secrets page, KVM hands the request page to
//! the firmware and the response back, the guest opens it. The firmware statuses expected
//! here are the ones the firmware-and-measurement facts give (§1.2: INVALID_PARAM 0x16,
//! AEAD_OFLOW 0x1D, INVALID_KEY 0x27) and the KVM codes the linux-uapi facts give (§6:
//! `SNP_GUEST_ERR(vmm_err, fw_err)`).

use kvm_coco::launch::{
    GuestOp, GuestOutcome, InitParams, Launch, LaunchVcpu, SimBackend, SimVcpu, SnpInit,
};
use kvm_coco::measure::plan::PlanInputs;
use kvm_coco::measure::synthetic::syn64k;
use kvm_coco::measure::vcpu::cpu_type_sig;
use kvm_coco::measure::{FirmwareImage, LaunchPlan, PageKind};
use kvm_coco::sim::sev::SimSevVm;
use kvm_coco::{CertsReply, Exit, SystemEvent};
use psp_driver::owner::guest_msg::{MSG_REPORT_REQ, MSG_REPORT_RSP, MsgReportReq, open, seal};
use psp_driver::owner::snp::verify_report;
use psp_driver::report::AttestationReport;
use psp_driver::sim::SimFirmware;
use zerocopy::{FromBytes, FromZeros, IntoBytes};

const SHARED: u64 = 0x100_0000;
const POLICY: u64 = 0x3_0000;
/// `SNP_GUEST_ERR(vmm_err, fw_err)` by hand from the facts, not from the code under test.
const fn guest_err(vmm: u64, fw: u64) -> u64 {
    (vmm << 32) | fw
}
const INVALID_PARAM: u64 = 0x16;
const AEAD_OFLOW: u64 = 0x1D;
const INVALID_KEY: u32 = 0x27;

struct Guest {
    backend: SimBackend,
    vcpu: SimVcpu,
    fw: std::sync::Arc<SimFirmware>,
    ld: [u8; 48],
    secrets: Option<u64>,
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
    let secrets: Vec<u64> = plan
        .steps
        .iter()
        .filter(|s| s.kind == PageKind::Secrets)
        .map(|s| s.gpa)
        .collect();
    assert_eq!(
        secrets.len(),
        1,
        "the synthetic firmware has one secrets page"
    );
    if !keep_secrets {
        plan.steps.retain(|s| s.kind != PageKind::Secrets);
    }
    let mut l = Launch::new(SimBackend::snp().unwrap(), InitParams::Snp(init)).unwrap();
    l.add_plan_memory(&plan).unwrap();
    l.add_memory(SHARED, 0x10000).unwrap();
    l.create_vcpu(0).unwrap();
    let mut l = l.start().unwrap();
    l.add_plan(&plan).unwrap();
    let l = l.measure().unwrap().finish().unwrap();
    let ld = l.backend().snp_launch_digest().unwrap();
    let fw = l.backend().sev_host().unwrap().firmware().clone();
    let (backend, mut vcpus) = l.into_parts();
    Guest {
        backend,
        vcpu: vcpus.remove(0),
        fw,
        ld,
        secrets: keep_secrets.then(|| secrets[0]),
    }
}

/// Runs the program to its termination, answering certificate requests with `replies`
/// in order; returns the number of certificate exits.
fn run(vcpu: &mut SimVcpu, replies: &[CertsReply]) -> usize {
    let mut certs = 0;
    for _ in 0..32 {
        match vcpu.run().unwrap() {
            Exit::SnpReqCerts(mut r) => {
                r.reply(replies[certs]);
                certs += 1;
            }
            Exit::SystemEvent(SystemEvent::SevTerm { .. }) => return certs,
            other => panic!("unexpected exit {other:?}"),
        }
    }
    panic!("the guest did not terminate");
}

type Snp = (u64, Option<Vec<u8>>, Option<u64>, Option<u32>);

fn reports(vcpu: &SimVcpu) -> Vec<Snp> {
    vcpu.outcomes()
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

fn verified(fw: &SimFirmware, bytes: &[u8]) -> AttestationReport {
    let r = AttestationReport::read_from_bytes(bytes).unwrap();
    let chain = fw.certs().snp;
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

#[test]
fn two_reports_through_the_envelope_verify_and_carry_the_report_data() {
    let mut g = launch(SnpInit::default(), true);
    g.vcpu.load_program([
        report_op([0x11; 64], 1),
        report_op([0x22; 64], 1),
        GuestOp::Terminate { code: 0 },
    ]);
    assert_eq!(run(&mut g.vcpu, &[]), 0, "REQ_CERTS is off: no exit");
    let r = reports(&g.vcpu);
    assert_eq!(r.len(), 2);
    for ((ret, report, exitinfo2, status), data) in r.iter().zip([[0x11u8; 64], [0x22; 64]]) {
        assert_eq!((*ret, *exitinfo2, *status), (0, Some(0), Some(0)));
        let rep = verified(&g.fw, report.as_ref().unwrap());
        assert_eq!(rep.report_data, data);
        assert_eq!(rep.measurement, g.ld);
        assert_eq!(rep.vmpl.get(), 0);
        assert_eq!(rep.policy.get(), POLICY);
    }
}

#[test]
fn the_certificate_exit_comes_first_and_vmm_errors_reach_the_guest() {
    let init = SnpInit {
        req_certs: true,
        ..SnpInit::default()
    };
    let mut g = launch(init, true);
    g.vcpu.load_program([
        report_op([1; 64], 0),
        report_op([2; 64], 2),
        report_op([3; 64], 2),
        report_op([4; 64], 2),
        report_op([5; 64], 2),
        GuestOp::Terminate { code: 0 },
    ]);
    // Before the VMM answers, the guest has no outcome yet.
    match g.vcpu.run().unwrap() {
        Exit::SnpReqCerts(mut r) => r.reply(CertsReply::NeedPages(2)),
        other => panic!("{other:?}"),
    }
    assert!(g.vcpu.outcomes().is_empty());
    let n = run(
        &mut g.vcpu,
        &[
            CertsReply::Busy,
            CertsReply::Failed,
            CertsReply::Success,
            CertsReply::Success,
        ],
    );
    assert_eq!(n, 4);
    let r = reports(&g.vcpu);
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
        assert_eq!(verified(&g.fw, r[i].1.as_ref().unwrap()).report_data, data);
    }
}

#[test]
fn a_guest_without_secrets_page_is_recorded_as_such() {
    let mut g = launch(SnpInit::default(), false);
    g.vcpu
        .load_program([report_op([9; 64], 0), GuestOp::Terminate { code: 0 }]);
    run(&mut g.vcpu, &[]);
    let r = reports(&g.vcpu);
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].2, r[0].3), (None, None));
    assert_eq!(
        verified(&g.fw, r[0].1.as_ref().unwrap()).report_data,
        [9; 64]
    );
}

#[test]
fn a_vcek_disabled_guest_reads_invalid_key_in_the_response() {
    let init = SnpInit {
        vcek_disabled: true,
        ..SnpInit::default()
    };
    let mut g = launch(init, true);
    g.vcpu.load_program([
        report_op([1; 64], 0),
        report_op([2; 64], 0),
        GuestOp::Terminate { code: 0 },
    ]);
    run(&mut g.vcpu, &[]);
    let r = reports(&g.vcpu);
    assert_eq!(r.len(), 2);
    for x in &r {
        // The firmware answered (the message layer worked), the report request failed.
        assert_eq!(
            (x.2, x.3, x.1.is_none()),
            (Some(0), Some(INVALID_KEY), true)
        );
    }
}

/// The request pages the tests use directly (shared RAM the guest program leaves alone).
const REQ: u64 = SHARED + 0x8000;
const RESP: u64 = SHARED + 0x9000;

fn vmpck0(vm: &SimSevVm, secrets: u64) -> [u8; 32] {
    let mut k = [0u8; 32];
    vm.guest_read_own(secrets + 0x20, &mut k).unwrap();
    k
}

fn request(report_data: [u8; 64]) -> MsgReportReq {
    let mut r = MsgReportReq::new_zeroed();
    r.report_data = report_data;
    r
}

/// Writes `msg` into the request page and issues the request as KVM does.
fn issue(vm: &SimSevVm, msg: &[u8]) -> u64 {
    vm.host_write(REQ, &[0u8; 4096]).unwrap();
    vm.host_write(REQ, msg).unwrap();
    vm.snp_guest_request(REQ, RESP).unwrap()
}

fn response(vm: &SimSevVm, key: &[u8; 32], seqno: u64) -> Vec<u8> {
    let mut page = vec![0u8; 4096];
    vm.host_read(RESP, &mut page).unwrap();
    let (hdr, payload) = open(key, &page).unwrap();
    assert_eq!(
        (hdr.msg_type, hdr.msg_seqno.get(), hdr.msg_vmpck),
        (MSG_REPORT_RSP, seqno, 0)
    );
    payload
}

#[test]
fn the_firmware_refuses_replays_wrong_keys_and_tampered_requests() {
    let g = launch(SnpInit::default(), true);
    let vm = g.backend.sev_vm().unwrap().clone();
    let key = vmpck0(&vm, g.secrets.unwrap());
    assert_ne!(key, [0; 32], "the firmware filled VMPCK0");

    // Sequence 1: accepted; the response is sequence 2 and carries a verified report.
    let m1 = seal(&key, 0, 1, MSG_REPORT_REQ, request([0x5a; 64]).as_bytes()).unwrap();
    assert_eq!(issue(&vm, &m1), 0);
    let rsp = response(&vm, &key, 2);
    assert_eq!(u32::from_le_bytes(rsp[0..4].try_into().unwrap()), 0);
    assert_eq!(u32::from_le_bytes(rsp[4..8].try_into().unwrap()), 0x4A0);
    let rep = verified(&g.fw, &rsp[0x20..0x20 + 0x4A0]);
    assert_eq!((rep.report_data, rep.measurement), ([0x5a; 64], g.ld));

    // The same message again: the sequence number is spent.
    assert_eq!(issue(&vm, &m1), guest_err(0, AEAD_OFLOW));
    // A key that is not VMPCK0 under VMPCK id 0: the tag does not verify.
    let mut wrong = key;
    wrong[0] ^= 1;
    let m = seal(&wrong, 0, 3, MSG_REPORT_REQ, request([1; 64]).as_bytes()).unwrap();
    assert_eq!(issue(&vm, &m), guest_err(0, INVALID_PARAM));
    // A tampered ciphertext byte and a tampered (authenticated) header byte.
    let mut m = seal(&key, 0, 3, MSG_REPORT_REQ, request([1; 64]).as_bytes()).unwrap();
    m[0x60] ^= 1;
    assert_eq!(issue(&vm, &m), guest_err(0, INVALID_PARAM));
    let mut m = seal(&key, 0, 3, MSG_REPORT_REQ, request([1; 64]).as_bytes()).unwrap();
    m[0x40] ^= 0x80; // rsvd2 in the additional data
    assert_eq!(issue(&vm, &m), guest_err(0, INVALID_PARAM));
    // A sequence number that skips ahead.
    let m = seal(&key, 0, 5, MSG_REPORT_REQ, request([1; 64]).as_bytes()).unwrap();
    assert_eq!(issue(&vm, &m), guest_err(0, AEAD_OFLOW));

    // None of the refused requests moved the counter: sequence 3 works.
    let m3 = seal(&key, 0, 3, MSG_REPORT_REQ, request([0x77; 64]).as_bytes()).unwrap();
    assert_eq!(issue(&vm, &m3), 0);
    let rsp = response(&vm, &key, 4);
    assert_eq!(
        verified(&g.fw, &rsp[0x20..0x20 + 0x4A0]).report_data,
        [0x77; 64]
    );
}

#[test]
fn the_guest_program_and_direct_requests_share_one_counter() {
    let mut g = launch(SnpInit::default(), true);
    g.vcpu
        .load_program([report_op([1; 64], 0), GuestOp::Terminate { code: 0 }]);
    run(&mut g.vcpu, &[]);
    assert_eq!(reports(&g.vcpu)[0].2, Some(0));
    let vm = g.backend.sev_vm().unwrap().clone();
    let key = vmpck0(&vm, g.secrets.unwrap());
    // The guest used sequence numbers 1 and 2: replaying 1 is refused, 3 is next.
    let m = seal(&key, 0, 1, MSG_REPORT_REQ, request([2; 64]).as_bytes()).unwrap();
    assert_eq!(issue(&vm, &m), guest_err(0, AEAD_OFLOW));
    let m = seal(&key, 0, 3, MSG_REPORT_REQ, request([2; 64]).as_bytes()).unwrap();
    assert_eq!(issue(&vm, &m), 0);
}

#[test]
fn a_guest_request_on_a_non_snp_vm_fails_kvm_run() {
    let backend = SimBackend::sev().unwrap();
    let vm = backend.sev_vm().unwrap();
    assert_eq!(
        vm.snp_guest_request(REQ, RESP).unwrap_err().raw(),
        libc::EINVAL
    );
}

#[test]
fn a_misaligned_certificate_buffer_is_bad_input_without_an_exit() {
    let init = SnpInit {
        req_certs: true,
        ..SnpInit::default()
    };
    let mut g = launch(init, true);
    g.vcpu.load_program([
        GuestOp::SnpReport {
            report_data: [1; 64],
            certs_gpa: SHARED + 8,
            npages: 1,
        },
        report_op([2; 64], 1),
        GuestOp::Terminate { code: 0 },
    ]);
    // Only the second request exits for certificates.
    assert_eq!(run(&mut g.vcpu, &[CertsReply::Success]), 1);
    let r = reports(&g.vcpu);
    // GHCB_ERR_INVALID_INPUT (sev-common.h) = 5; no report.
    assert_eq!((r[0].1.is_none(), r[0].2, r[0].3), (true, Some(5), None));
    // The refused request used no sequence number: the next one is accepted.
    assert_eq!((r[1].2, r[1].3), (Some(0), Some(0)));
    assert_eq!(
        verified(&g.fw, r[1].1.as_ref().unwrap()).report_data,
        [2; 64]
    );
}
