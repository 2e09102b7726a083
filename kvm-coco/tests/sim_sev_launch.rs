//! Full launches on the simulated KVM SEV layer and software PSP firmware, checked against
//! independent values: sev-snp-measure outputs (facts firmware-and-measurement §8.2/§8.3 and
//! the committed vectors in tests/vectors), the SEV LAUNCH_MEASURE HMAC recomputed here
//! from its definition (facts §1.4), and the firmware's own ASID states.

#[path = "measure_common/mod.rs"]
mod measure_common;
mod sim_sev_common;

use std::collections::BTreeMap;

use hmac::{Hmac, KeyInit, Mac};
use kvm_coco::measure::firmware::FirmwareImage;
use kvm_coco::measure::hashes::DirectBoot;
use kvm_coco::measure::plan::{LaunchPlan, PlanInputs};
use kvm_coco::measure::vcpu::{VmmType, cpu_sig, cpu_type_sig};
use kvm_coco::sim::sev::*;
use kvm_coco_uapi::*;
use measure_common::int0;
use psp_driver::sim::{AsidState, SimConfig};
use sha2::Sha256;
use sim_sev_common::*;

/// EPYC-v4 signature (facts §2.2).
const EPYC_V4: u32 = 0x0080_0F12;

fn syn64k_plan_launch(mode: &str, vcpus: u32) -> Vec<u8> {
    let img = measure_common::syn64k();
    let fw = FirmwareImage::parse(&img).unwrap();
    let mut inp = PlanInputs::new(&fw);
    inp.vcpus = vcpus;
    inp.vcpu_sig = Some(EPYC_V4);
    let plan = match mode {
        "sev" => LaunchPlan::sev(&inp),
        "seves" => LaunchPlan::sev_es(&inp),
        _ => LaunchPlan::snp(&inp),
    }
    .unwrap();
    let ap = fw.reset_eip().unwrap_or(0);
    launch(&plan, img.len() as u64, vcpus, ap, EPYC_V4, 1).1
}

#[test]
fn snp_syn64k_measurement_equals_sev_snp_measure() {
    // facts §8.2: --mode snp --vcpus 1 --vcpu-type EPYC-v4 --ovmf syn64k.fd
    assert_eq!(
        hex::encode(syn64k_plan_launch("snp", 1)),
        "54d686bed4f38e22c5e3ec6b7fdbd7288e0c4175469bf7274fcbe4ab5837f97804371497a3ce833231b857a75e3054f2"
    );
}

#[test]
fn seves_and_sev_syn64k_launch_digest_equal_sev_snp_measure() {
    // facts §8.2: --mode seves --vcpus 1 --vcpu-type EPYC-v4; --mode sev.
    assert_eq!(
        hex::encode(syn64k_plan_launch("seves", 1)),
        "e9dc93820dc36074d4e54cdef031274e31ff46a918309ccb831f4da87f62ff95"
    );
    assert_eq!(
        hex::encode(syn64k_plan_launch("sev", 1)),
        "dac893496e53bf1a5643d761be49395899612ebe0178de53d93e1d6c373736fb"
    );
}

/// Runs one committed sev-snp-measure case on the simulator, if it is a configuration KVM
/// can launch with QEMU's conventions (QEMU VMM type, no precomputed firmware digest, SNP
/// guest features that KVM produces: SNPActive with or without DebugSwap).
fn sim_case(args: &[String], files: &BTreeMap<&str, Vec<u8>>) -> Option<String> {
    let mut o: BTreeMap<&str, &str> = BTreeMap::new();
    let mut it = args.iter();
    while let Some(k) = it.next() {
        o.insert(k.as_str(), it.next()?.as_str());
    }
    let mode = o["--mode"];
    if !matches!(mode, "sev" | "seves" | "snp")
        || o.get("--vmm-type").is_some_and(|v| *v != "QEMU")
        || o.contains_key("--snp-ovmf-hash")
        || o.contains_key("--output-format")
    {
        return None;
    }
    let features = o.get("--guest-features").map_or(Some(1), |v| int0(v))?;
    if mode == "snp" && features != 1 && features != 0x21 {
        return None;
    }
    let img = files.get(o.get("--ovmf")?)?;
    let file = |k: &str| o.get(k).and_then(|n| files.get(n)).map(|v| &v[..]);
    let fw = FirmwareImage::parse(img).ok()?;
    let mut inp = PlanInputs::new(&fw);
    inp.vcpus = o.get("--vcpus").map_or(1, |v| v.parse().unwrap());
    inp.vcpu_sig = if let Some(f) = o.get("--vcpu-family") {
        let n = |k: &str| o.get(k).and_then(|v| v.parse::<u32>().ok()).unwrap();
        Some(cpu_sig(
            f.parse().unwrap(),
            n("--vcpu-model"),
            n("--vcpu-stepping"),
        ))
    } else if let Some(s) = o.get("--vcpu-sig") {
        Some(int0(s)? as u32)
    } else {
        o.get("--vcpu-type").and_then(|t| cpu_type_sig(t))
    };
    inp.vmm = VmmType::Qemu;
    inp.guest_features = features;
    if let Some(kernel) = file("--kernel") {
        inp.boot = Some(DirectBoot {
            kernel,
            initrd: file("--initrd"),
            cmdline: o.get("--append").copied(),
        });
    }
    let plan = match mode {
        "sev" => LaunchPlan::sev(&inp),
        "seves" => LaunchPlan::sev_es(&inp),
        _ => LaunchPlan::snp(&inp),
    }
    .ok()?;
    let vcpus = if mode == "sev" { 1 } else { inp.vcpus };
    let d = launch(
        &plan,
        img.len() as u64,
        vcpus,
        fw.reset_eip().unwrap_or(0),
        inp.vcpu_sig.unwrap_or(0),
        features,
    )
    .1;
    Some(hex::encode(d))
}

#[test]
fn committed_sev_snp_measure_vectors_on_the_simulator() {
    let v = measure_common::load_vectors();
    let files: BTreeMap<&str, Vec<u8>> = measure_common::synthetic_images()
        .into_iter()
        .chain(measure_common::side_files())
        .collect();
    // The 2 MiB Debian OVMF.fd cases take seconds each in a debug build; one launch per
    // mode on it is in `debian_ovmf_launches`.
    let mut ran = BTreeMap::<&str, usize>::new();
    for c in v.cases.iter().filter(|c| c.status == 0) {
        let Some(got) = sim_case(&c.args, &files) else {
            continue;
        };
        assert_eq!(got, c.stdout.trim(), "case {:?}", c.args);
        *ran.entry(if c.args.contains(&"snp".to_string()) {
            "snp"
        } else if c.args.contains(&"seves".to_string()) {
            "seves"
        } else {
            "sev"
        })
        .or_default() += 1;
    }
    println!("simulated launches per mode: {ran:?}");
    assert!(ran.get("snp").copied().unwrap_or(0) >= 20, "{ran:?}");
    assert!(ran.get("seves").copied().unwrap_or(0) >= 10, "{ran:?}");
    assert!(ran.get("sev").copied().unwrap_or(0) >= 5, "{ran:?}");
}

#[test]
fn debian_ovmf_launches() {
    // Reports its own skip.
    let Some((_, img)) = measure_common::debian_ovmf() else {
        return;
    };
    let fw = FirmwareImage::parse(&img).unwrap();
    let mut inp = PlanInputs::new(&fw);
    inp.vcpu_sig = Some(EPYC_V4);
    let ap = fw.reset_eip().unwrap();
    // facts §8.3: --mode seves --vcpus 1 --vcpu-type EPYC-v4; --mode sev.
    let plan = LaunchPlan::sev_es(&inp).unwrap();
    let (_, ld) = launch(&plan, img.len() as u64, 1, ap, EPYC_V4, 0);
    assert_eq!(
        hex::encode(ld),
        "5bcbb5a45e7a9fa4699b6cc8f775382a810ff5a0186d3b90069ba28b1840b38f"
    );
    let plan = LaunchPlan::sev(&inp).unwrap();
    let (_, ld) = launch(&plan, img.len() as u64, 1, ap, EPYC_V4, 0);
    assert_eq!(
        hex::encode(ld),
        "7b456907dd0786d415999e801a1ac4637b8ed4d7cf5378cfc6edbe5e574dd773"
    );
    let plan = LaunchPlan::snp(&inp).unwrap();
    let (s, m) = launch(&plan, img.len() as u64, 1, ap, EPYC_V4, 1);
    // facts §8.3: --mode snp --vcpus 1 --vcpu-type EPYC-v4 --ovmf OVMF.fd
    assert_eq!(
        hex::encode(&m),
        "11570979c77a0adb515761a702527c8b9e11554e730552621d950988613a3a75c6ff1703f540bd22a9beede8fe7a97e3"
    );
    let gctx = s.vm.snp_context().unwrap();
    assert_eq!(
        s.host.firmware().snp_launch_digest(gctx).unwrap().to_vec(),
        m
    );
}

/// LAUNCH_MEASURE = HMAC-SHA256(TIK, 0x04 ‖ api major ‖ api minor ‖ build ‖ policy ‖ LD ‖
/// MNONCE) (facts §1.4); without a session the TIK is all zeros.
#[test]
fn sev_launch_measure_is_the_hmac_of_the_oracle_digest() {
    let img = measure_common::syn64k();
    let fw = FirmwareImage::parse(&img).unwrap();
    let plan = LaunchPlan::sev(&PlanInputs::new(&fw)).unwrap();
    let host = host();
    let mut s = Session::new(&host, KVM_X86_SEV_VM);
    s.init2(0);
    s.add_ram(1, 0xFFFF_0000, 0x10000);
    let policy = 0x1u32;
    let start = s.launch_start(policy);
    assert_ne!(start.handle, 0);
    assert_eq!(s.vm.handle(), start.handle);
    sev_updates(&s, &plan);
    // Length query: EIO with INVALID_LENGTH and the length written back.
    let mut q = KvmSevLaunchMeasure::default();
    let e =
        s.vm.sev_cmd(KVM_SEV_LAUNCH_MEASURE, s.sev_fd, &mut q)
            .unwrap_err();
    assert_eq!((e.errno.raw(), e.error, q.len), (libc::EIO, 0x04, 48));
    let out = host.mmap(48).unwrap();
    let mut m = KvmSevLaunchMeasure {
        uaddr: out,
        len: q.len,
        ..Default::default()
    };
    s.vm.sev_cmd(KVM_SEV_LAUNCH_MEASURE, s.sev_fd, &mut m)
        .unwrap();
    let blob = host.read_user_vec(out, 48).unwrap();
    let cfg = SimConfig::default();
    let ld =
        hex::decode("dac893496e53bf1a5643d761be49395899612ebe0178de53d93e1d6c373736fb").unwrap();
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&[0u8; 16]).unwrap();
    mac.update(&[0x04, cfg.api_major, cfg.api_minor, cfg.build]);
    mac.update(&policy.to_le_bytes());
    mac.update(&ld);
    mac.update(&blob[32..48]);
    assert_eq!(&blob[..32], &mac.finalize().into_bytes()[..]);
    // GUEST_STATUS: LSECRET (2), then RUNNING (3) after LAUNCH_FINISH.
    let mut gs = KvmSevGuestStatus::default();
    s.vm.sev_cmd(KVM_SEV_GUEST_STATUS, s.sev_fd, &mut gs)
        .unwrap();
    assert_eq!((gs.handle, gs.policy, gs.state), (start.handle, policy, 2));
    s.vm.sev_cmd_none(KVM_SEV_LAUNCH_FINISH, s.sev_fd).unwrap();
    s.vm.sev_cmd(KVM_SEV_GUEST_STATUS, s.sev_fd, &mut gs)
        .unwrap();
    assert_eq!(gs.state, 3);
}

fn sev_guest_with(policy: u32, plain: &[u8]) -> (Session, u64) {
    let host = host();
    let mut s = Session::new(&host, KVM_X86_SEV_VM);
    s.init2(0);
    let ram = s.add_ram(0, 0x10_0000, 0x2000);
    host.write_user(ram, plain).unwrap();
    s.launch_start(policy);
    let mut d = KvmSevLaunchUpdateData {
        uaddr: ram,
        len: 0x2000,
        ..Default::default()
    };
    s.vm.sev_cmd(KVM_SEV_LAUNCH_UPDATE_DATA, s.sev_fd, &mut d)
        .unwrap();
    (s, ram)
}

#[test]
fn sev_host_sees_ciphertext_and_dbg_decrypt_needs_a_debug_policy() {
    let plain: Vec<u8> = (0..0x2000u32).map(|i| (i * 7 + 3) as u8).collect();
    // Debug allowed (NODBG clear).
    let (s, ram) = sev_guest_with(0, &plain);
    let host_view = s.host.read_user_vec(ram, 0x2000).unwrap();
    assert_ne!(host_view, plain);
    assert_eq!(
        host_view
            .chunks(16)
            .zip(plain.chunks(16))
            .filter(|(a, b)| a == b)
            .count(),
        0,
        "no 16-byte block left in plaintext"
    );
    let mut gv = vec![0u8; 0x2000];
    s.vm.host_read(0x10_0000, &mut gv).unwrap();
    assert_eq!(gv, host_view, "host_read is the host's view");
    s.vm.guest_read(0x10_0000, &mut gv).unwrap();
    assert_eq!(gv, plain, "guest view");
    // DBG_DECRYPT of an unaligned range crossing a page.
    let dst = s.host.mmap(0x100).unwrap();
    let mut dbg = KvmSevDbg {
        src_uaddr: ram + 0xFF3,
        dst_uaddr: dst,
        len: 0x21,
        ..Default::default()
    };
    s.vm.sev_cmd(KVM_SEV_DBG_DECRYPT, s.sev_fd, &mut dbg)
        .unwrap();
    assert_eq!(
        s.host.read_user_vec(dst, 0x21).unwrap(),
        &plain[0xFF3..0x1014]
    );
    // DBG_ENCRYPT then decrypt back.
    let src = s.host.mmap_bytes(b"0123456789").unwrap();
    let mut enc = KvmSevDbg {
        src_uaddr: src,
        dst_uaddr: ram + 0x105,
        len: 10,
        ..Default::default()
    };
    s.vm.sev_cmd(KVM_SEV_DBG_ENCRYPT, s.sev_fd, &mut enc)
        .unwrap();
    s.vm.guest_read(0x10_0100, &mut gv[..32]).unwrap();
    assert_eq!(&gv[5..15], b"0123456789");
    assert_eq!(&gv[..5], &plain[0x100..0x105]);
    assert_eq!(&gv[15..32], &plain[0x10F..0x120]);

    // NODBG: the firmware refuses (POLICY_FAILURE 0x07).
    let (s, ram) = sev_guest_with(0x1, &plain);
    assert_ne!(s.host.read_user_vec(ram, 0x2000).unwrap(), plain);
    let dst = s.host.mmap(0x10).unwrap();
    let mut dbg = KvmSevDbg {
        src_uaddr: ram,
        dst_uaddr: dst,
        len: 16,
        ..Default::default()
    };
    let e =
        s.vm.sev_cmd(KVM_SEV_DBG_DECRYPT, s.sev_fd, &mut dbg)
            .unwrap_err();
    assert_eq!((e.errno.raw(), e.error), (libc::EIO, 0x07));
    assert_eq!(
        s.vm.guest_read(0x10_0000, &mut [0u8; 16])
            .unwrap_err()
            .raw(),
        libc::EIO
    );
}

fn snp_guest_with(policy: u64, plain: &[u8]) -> Session {
    let host = host();
    let mut s = Session::new(&host, KVM_X86_SNP_VM);
    s.init2(0);
    s.add_private_ram(0, 0x10_0000, 0x2000);
    s.qemu_vcpus(1, 0, EPYC_V4);
    let mut start = KvmSevSnpLaunchStart {
        policy,
        ..Default::default()
    };
    s.vm.sev_cmd(KVM_SEV_SNP_LAUNCH_START, s.sev_fd, &mut start)
        .unwrap();
    let src = host.mmap_bytes(plain).unwrap();
    let mut u = KvmSevSnpLaunchUpdate {
        gfn_start: 0x100,
        uaddr: src,
        len: 0x2000,
        r#type: KVM_SEV_SNP_PAGE_TYPE_NORMAL as u8,
        ..Default::default()
    };
    s.vm.sev_cmd(KVM_SEV_SNP_LAUNCH_UPDATE, s.sev_fd, &mut u)
        .unwrap();
    assert_eq!((u.len, u.gfn_start, u.uaddr), (0, 0x102, src + 0x2000));
    s
}

#[test]
fn snp_private_pages_are_ciphertext_to_the_host_and_debug_needs_policy() {
    let plain: Vec<u8> = (0..0x2000u32).map(|i| (i % 253) as u8).collect();
    let s = snp_guest_with(0x30000 | 1 << 19, &plain);
    let mut hv = vec![0u8; 0x2000];
    s.vm.host_read(0x10_0000, &mut hv).unwrap();
    assert_ne!(hv, plain);
    let mut gv = vec![0u8; 0x2000];
    s.vm.guest_read(0x10_0000, &mut gv).unwrap();
    assert_eq!(gv, plain);
    // Without DEBUG the firmware refuses to decrypt.
    let s = snp_guest_with(0x30000, &plain);
    assert_eq!(
        s.vm.guest_read(0x10_0000, &mut gv[..16]).unwrap_err().raw(),
        libc::EIO
    );
    s.vm.host_read(0x10_0000, &mut hv).unwrap();
    assert_ne!(hv, plain);
    // Finish: VMSAs protected, register access refused, pre-fault allowed afterwards.
    assert_eq!(
        s.vcpus[0]
            .pre_fault_memory(0x10_0000, 0x1000)
            .unwrap_err()
            .raw(),
        libc::EOPNOTSUPP
    );
    let mut host_data = [0u8; 32];
    host_data[0] = 0xAB;
    let mut fin = KvmSevSnpLaunchFinish {
        host_data,
        ..Default::default()
    };
    s.vm.sev_cmd(KVM_SEV_SNP_LAUNCH_FINISH, s.sev_fd, &mut fin)
        .unwrap();
    assert!(s.vcpus[0].is_state_protected());
    assert_eq!(s.vcpus[0].regs().unwrap_err().raw(), libc::EINVAL);
    assert_eq!(s.vcpus[0].sregs().unwrap_err().raw(), libc::EINVAL);
    s.vcpus[0].pre_fault_memory(0x10_0000, 0x1000).unwrap();
    s.vcpus[0].run(0, 0).unwrap();
    assert_eq!(s.vcpus[0].run(1, 0).unwrap_err().raw(), libc::EINVAL);
    let r = s
        .host
        .firmware()
        .guest_report(s.vm.snp_context().unwrap(), &[1; 64], 0)
        .unwrap();
    assert_eq!(r.host_data, host_data);
    assert_eq!({ r.policy }.get(), 0x30000);
    // The VMSA page is ciphertext to the host and RMP-marked as a VMSA.
    let vmsa = s.vcpus[0].host_read_vmsa().unwrap();
    let regs = s.vcpus[0].vcpu_regs().unwrap();
    assert_ne!(&vmsa[..], &regs.vmsa(1, true)[..]);
}

#[test]
fn seves_vmsa_protects_state_and_regs_fail_afterwards() {
    let host = host();
    let mut s = Session::new(&host, KVM_X86_SEV_ES_VM);
    let v = s.vm.create_vcpu(0).unwrap();
    assert_eq!(
        v.run(0, 0).unwrap_err().raw(),
        libc::EINVAL,
        "KVM_RUN before INIT2"
    );
    drop(v);
    let s2 = Session::new(&host, KVM_X86_SEV_ES_VM);
    s2.init2(0);
    s = s2;
    s.qemu_vcpus(2, 0x80_4004, EPYC_V4);
    s.launch_start(0x4);
    let before = s.vcpus[1].vcpu_regs().unwrap().vmsa(0, true);
    s.vm.sev_cmd_none(KVM_SEV_LAUNCH_UPDATE_VMSA, s.sev_fd)
        .unwrap();
    for v in &s.vcpus {
        assert!(v.is_state_protected());
        assert_eq!(v.regs().unwrap_err().raw(), libc::EINVAL);
        assert_eq!(v.set_xcr0(1).unwrap_err().raw(), libc::EINVAL);
        assert_eq!(v.set_guest_debug(true).unwrap_err().raw(), libc::EINVAL);
    }
    assert_ne!(s.vcpus[1].host_read_vmsa().unwrap(), before.to_vec());
    let e =
        s.vm.sev_cmd_none(KVM_SEV_LAUNCH_UPDATE_VMSA, s.sev_fd)
            .unwrap_err();
    assert_eq!(e.errno.raw(), libc::EINVAL, "twice");
}

#[test]
fn destroyed_vm_asid_is_not_reused_before_df_flush() {
    // Two SEV-ES/SNP ASIDs (1, 2).
    let cfg = SimSevConfig {
        firmware: SimConfig {
            max_asid: 4,
            min_sev_asid: 3,
            ..SimConfig::default()
        },
        ..SimSevConfig::default()
    };
    let host = SimSevHost::new(cfg).unwrap();
    let fw = host.firmware().clone();
    let snp_vm = |_: u32| {
        let mut s = Session::new(&host, KVM_X86_SNP_VM);
        s.init2(0);
        s.add_private_ram(0, 0, 0x1000);
        let mut start = KvmSevSnpLaunchStart {
            policy: 0x30000,
            ..Default::default()
        };
        s.vm.sev_cmd(KVM_SEV_SNP_LAUNCH_START, s.sev_fd, &mut start)
            .unwrap();
        let mut fin = KvmSevSnpLaunchFinish::default();
        s.vm.sev_cmd(KVM_SEV_SNP_LAUNCH_FINISH, s.sev_fd, &mut fin)
            .unwrap();
        s
    };
    let a = snp_vm(0);
    let b = snp_vm(1);
    let (asid_a, asid_b) = (a.vm.asid().unwrap(), b.vm.asid().unwrap());
    assert_eq!((asid_a, asid_b), (1, 2));
    assert_eq!(fw.asid_state(1), Some(AsidState::InUse));
    drop(a);
    // SNP_DECOMMISSION left ASID 1 dirty; KVM only marks it reclaimable.
    assert_eq!(fw.asid_state(1), Some(AsidState::Dirty));
    assert_eq!(host.asids().usage(psp_driver::AsidClass::Snp), (2, 1));
    // A new VM finds the range full: WBINVD + SNP_DF_FLUSH, then ASID 1 is reused.
    let c = snp_vm(2);
    assert_eq!(c.vm.asid(), Some(1));
    assert_eq!(fw.asid_state(1), Some(AsidState::InUse));
    assert!(fw.dirty_asids().is_empty());
    // Range full again and nothing reclaimable: EBUSY at INIT2.
    let d = Session::new(&host, KVM_X86_SNP_VM);
    let e =
        d.vm.sev_cmd(KVM_SEV_INIT2, d.sev_fd, &mut KvmSevInit::default())
            .unwrap_err();
    assert_eq!(e.errno.raw(), libc::EBUSY);
    drop(b);
    assert_eq!(fw.asid_state(2), Some(AsidState::Dirty));
    // A legacy SEV guest uses the other range and DEACTIVATE + DECOMMISSION on destroy.
    let mut s = Session::new(&host, KVM_X86_SEV_VM);
    s.init2(0);
    s.add_ram(0, 0, 0x1000);
    s.launch_start(0);
    assert_eq!(s.vm.asid(), Some(3));
    assert_eq!(fw.asid_state(3), Some(AsidState::Allocated));
    drop(s);
    assert_eq!(
        fw.asid_state(3),
        Some(AsidState::Clean),
        "never ran: back to clean"
    );
}

/// SEND_* on one simulated host, RECEIVE_* on another: the guest's memory arrives intact
/// under the target's key, through KVM's length queries and checks.
#[test]
fn sev_migration_round_trip_between_two_hosts() {
    use zerocopy::IntoBytes;
    let plain: Vec<u8> = (0..0x2000u32).map(|i| (i * 31 + 1) as u8).collect();
    let (src, ram) = sev_guest_with(0, &plain);
    let mut m = KvmSevLaunchMeasure {
        uaddr: src.host.mmap(48).unwrap(),
        len: 48,
        ..Default::default()
    };
    src.vm
        .sev_cmd(KVM_SEV_LAUNCH_MEASURE, src.sev_fd, &mut m)
        .unwrap();
    src.vm
        .sev_cmd_none(KVM_SEV_LAUNCH_FINISH, src.sev_fd)
        .unwrap();

    let dst_host = SimSevHost::new(SimSevConfig {
        firmware: SimConfig {
            seed: [0x77; 32],
            ..SimConfig::default()
        },
        ..SimSevConfig::default()
    })
    .unwrap();
    let target_certs = dst_host.firmware().certs();
    let source_certs = src.host.firmware().certs();

    // SEND_START: length query, then the real call with the target's PDH.
    let mut ss = KvmSevSendStart::default();
    let e = src
        .vm
        .sev_cmd(KVM_SEV_SEND_START, src.sev_fd, &mut ss)
        .unwrap_err();
    assert_eq!(
        (e.errno.raw(), e.error, ss.session_len),
        (libc::EIO, 0x04, 0x80)
    );
    let h = &src.host;
    let pdh = h.mmap_bytes(target_certs.pdh.as_bytes()).unwrap();
    let chain = [
        target_certs.pek.as_bytes(),
        target_certs.oca.as_bytes(),
        target_certs.cek.as_bytes(),
    ]
    .concat();
    let plat = h.mmap_bytes(&chain).unwrap();
    let amd = h.mmap_bytes(&[0u8; 64]).unwrap();
    let session = h.mmap(0x80).unwrap();
    ss.pdh_cert_uaddr = pdh;
    ss.pdh_cert_len = target_certs.pdh.as_bytes().len() as u32;
    ss.plat_certs_uaddr = plat;
    ss.plat_certs_len = chain.len() as u32;
    ss.amd_certs_uaddr = amd;
    ss.amd_certs_len = 64;
    ss.session_uaddr = session;
    let mut bad = ss;
    bad.plat_certs_uaddr = 0;
    assert_eq!(
        src.vm
            .sev_cmd(KVM_SEV_SEND_START, src.sev_fd, &mut bad)
            .unwrap_err()
            .errno
            .raw(),
        libc::EINVAL,
        "every certificate blob is required"
    );
    src.vm
        .sev_cmd(KVM_SEV_SEND_START, src.sev_fd, &mut ss)
        .unwrap();
    let session_blob = h.read_user_vec(session, 0x80).unwrap();

    // Target: RECEIVE_START with the source's PDH and the session.
    let mut dst = Session::new(&dst_host, KVM_X86_SEV_VM);
    dst.init2(0);
    let dram = dst.add_ram(0, 0x10_0000, 0x2000);
    let dh = &dst_host;
    let mut rs = KvmSevReceiveStart {
        policy: ss.policy,
        pdh_uaddr: dh.mmap_bytes(source_certs.pdh.as_bytes()).unwrap(),
        pdh_len: source_certs.pdh.as_bytes().len() as u32,
        session_uaddr: dh.mmap_bytes(&session_blob).unwrap(),
        session_len: 0x80,
        ..Default::default()
    };
    dst.vm
        .sev_cmd(KVM_SEV_RECEIVE_START, dst.sev_fd, &mut rs)
        .unwrap();
    assert_ne!(rs.handle, 0);

    // Page by page: SEND_UPDATE_DATA (length query first), RECEIVE_UPDATE_DATA.
    let mut q = KvmSevSendUpdateData::default();
    let e = src
        .vm
        .sev_cmd(KVM_SEV_SEND_UPDATE_DATA, src.sev_fd, &mut q)
        .unwrap_err();
    assert_eq!(e.errno.raw(), libc::EIO);
    assert!(q.hdr_len > 0);
    let mut cross = KvmSevSendUpdateData {
        hdr_uaddr: h.mmap(q.hdr_len.into()).unwrap(),
        hdr_len: q.hdr_len,
        guest_uaddr: ram + 0x800,
        guest_len: 0x1000,
        trans_uaddr: h.mmap(0x1000).unwrap(),
        trans_len: 0x1000,
        ..Default::default()
    };
    assert_eq!(
        src.vm
            .sev_cmd(KVM_SEV_SEND_UPDATE_DATA, src.sev_fd, &mut cross)
            .unwrap_err()
            .errno
            .raw(),
        libc::EINVAL,
        "guest range crosses a page"
    );
    for page in 0..2u64 {
        let hdr = h.mmap(q.hdr_len.into()).unwrap();
        let trans = h.mmap(0x1000).unwrap();
        let mut su = KvmSevSendUpdateData {
            hdr_uaddr: hdr,
            hdr_len: q.hdr_len,
            guest_uaddr: ram + page * 0x1000,
            guest_len: 0x1000,
            trans_uaddr: trans,
            trans_len: 0x1000,
            ..Default::default()
        };
        src.vm
            .sev_cmd(KVM_SEV_SEND_UPDATE_DATA, src.sev_fd, &mut su)
            .unwrap();
        let hdr_b = h.read_user_vec(hdr, q.hdr_len as usize).unwrap();
        let trans_b = h.read_user_vec(trans, 0x1000).unwrap();
        assert_ne!(
            trans_b,
            plain[(page as usize) * 0x1000..][..0x1000].to_vec()
        );
        let mut ru = KvmSevReceiveUpdateData {
            hdr_uaddr: dh.mmap_bytes(&hdr_b).unwrap(),
            hdr_len: q.hdr_len,
            guest_uaddr: dram + page * 0x1000,
            guest_len: 0x1000,
            trans_uaddr: dh.mmap_bytes(&trans_b).unwrap(),
            trans_len: 0x1000,
            ..Default::default()
        };
        dst.vm
            .sev_cmd(KVM_SEV_RECEIVE_UPDATE_DATA, dst.sev_fd, &mut ru)
            .unwrap();
    }
    src.vm
        .sev_cmd_none(KVM_SEV_SEND_FINISH, src.sev_fd)
        .unwrap();
    dst.vm
        .sev_cmd_none(KVM_SEV_RECEIVE_FINISH, dst.sev_fd)
        .unwrap();
    let mut gs = KvmSevGuestStatus::default();
    dst.vm
        .sev_cmd(KVM_SEV_GUEST_STATUS, dst.sev_fd, &mut gs)
        .unwrap();
    assert_eq!(gs.state, 3, "RUNNING on the target");
    assert_ne!(dh.read_user_vec(dram, 0x2000).unwrap(), plain);
    let mut got = vec![0u8; 0x2000];
    dst.vm.guest_read(0x10_0000, &mut got).unwrap();
    assert_eq!(got, plain);
    let _ = &mut dst;
}

/// LAUNCH_SECRET through KVM with a packet built here from its definition (facts §1.6):
/// without a session the firmware's TIK and TEK are zero; MAC = HMAC-SHA256(TIK, 0x01 ‖
/// FLAGS ‖ IV ‖ GUEST_LEN ‖ TRANS_LEN ‖ CT ‖ MEASURE), CT = AES-128-CTR(TEK, IV, secret).
#[test]
fn sev_launch_secret_is_injected_into_guest_memory() {
    use aes::cipher::{KeyIvInit, StreamCipher};
    let plain = vec![0u8; 0x2000];
    let (s, ram) = sev_guest_with(0, &plain);
    let out = s.host.mmap(48).unwrap();
    let mut m = KvmSevLaunchMeasure {
        uaddr: out,
        len: 48,
        ..Default::default()
    };
    s.vm.sev_cmd(KVM_SEV_LAUNCH_MEASURE, s.sev_fd, &mut m)
        .unwrap();
    let measure = s.host.read_user_vec(out, 32).unwrap();
    let secret = *b"secret-payload-0123456789abcdef!";
    let iv = [0x22u8; 16];
    let mut ct = secret.to_vec();
    ctr::Ctr128BE::<aes::Aes128>::new(&[0u8; 16].into(), &iv.into()).apply_keystream(&mut ct);
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&[0u8; 16]).unwrap();
    for part in [
        &[0x01u8][..],
        &0u32.to_le_bytes(),
        &iv,
        &32u32.to_le_bytes(),
        &32u32.to_le_bytes(),
        &ct,
        &measure,
    ] {
        mac.update(part);
    }
    let mut hdr = Vec::new();
    hdr.extend_from_slice(&0u32.to_le_bytes());
    hdr.extend_from_slice(&iv);
    hdr.extend_from_slice(&mac.finalize().into_bytes());
    let mut p = KvmSevLaunchSecret {
        hdr_uaddr: s.host.mmap_bytes(&hdr).unwrap(),
        hdr_len: 52,
        guest_uaddr: ram + 0x1000,
        guest_len: 32,
        trans_uaddr: s.host.mmap_bytes(&ct).unwrap(),
        trans_len: 32,
        ..Default::default()
    };
    // A tampered MAC: BAD_MEASUREMENT (0x0B).
    let mut bad_hdr = hdr.clone();
    bad_hdr[51] ^= 1;
    let mut bad = p;
    bad.hdr_uaddr = s.host.mmap_bytes(&bad_hdr).unwrap();
    let e =
        s.vm.sev_cmd(KVM_SEV_LAUNCH_SECRET, s.sev_fd, &mut bad)
            .unwrap_err();
    assert_eq!((e.errno.raw(), e.error), (libc::EIO, 0x0B));
    s.vm.sev_cmd(KVM_SEV_LAUNCH_SECRET, s.sev_fd, &mut p)
        .unwrap();
    assert_ne!(
        s.host.read_user_vec(ram + 0x1000, 32).unwrap(),
        secret.to_vec()
    );
    let mut got = [0u8; 32];
    s.vm.guest_read(0x10_1000, &mut got).unwrap();
    assert_eq!(got, secret);
}

/// An `SNP_LAUNCH_UPDATE` of NORMAL pages longer than the model's helper window (1024 pages,
/// hashed ahead into content hints) measures exactly what the same pages give when
/// issued one page per call, where no helper runs and the firmware hashes every page itself.
#[test]
fn snp_update_across_helper_windows_measures_as_page_by_page() {
    const PAGES: u64 = 2600;
    let plain: Vec<u8> = (0..PAGES * 4096)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let measure = |one_call: bool| {
        let host = host();
        let mut s = Session::new(&host, KVM_X86_SNP_VM);
        s.init2(0);
        s.add_private_ram(0, 0x10_0000, PAGES * 4096);
        s.qemu_vcpus(1, 0, EPYC_V4);
        let mut start = KvmSevSnpLaunchStart {
            policy: 0x30000,
            ..Default::default()
        };
        s.vm.sev_cmd(KVM_SEV_SNP_LAUNCH_START, s.sev_fd, &mut start)
            .unwrap();
        let src = host.mmap_bytes(&plain).unwrap();
        let calls: Vec<(u64, u64)> = if one_call {
            vec![(0, PAGES)]
        } else {
            (0..PAGES).map(|k| (k, 1)).collect()
        };
        for (first, n) in calls {
            let mut u = KvmSevSnpLaunchUpdate {
                gfn_start: 0x100 + first,
                uaddr: src + first * 4096,
                len: n * 4096,
                r#type: KVM_SEV_SNP_PAGE_TYPE_NORMAL as u8,
                ..Default::default()
            };
            s.vm.sev_cmd(KVM_SEV_SNP_LAUNCH_UPDATE, s.sev_fd, &mut u)
                .unwrap();
            assert_eq!(u.len, 0, "the whole range was consumed");
        }
        let mut fin = KvmSevSnpLaunchFinish::default();
        s.vm.sev_cmd(KVM_SEV_SNP_LAUNCH_FINISH, s.sev_fd, &mut fin)
            .unwrap();
        let r = s
            .host
            .firmware()
            .guest_report(s.vm.snp_context().unwrap(), &[0; 64], 0)
            .unwrap();
        r.measurement
    };
    let one_call = measure(true);
    assert_eq!(one_call, measure(false));
    assert_ne!(one_call, [0u8; 48]);
}

/// A command refused before it reaches the firmware (here: its `sev_fd` is not `/dev/sev`)
/// leaves no content hint behind: the firmware takes a hint only when it runs.
#[test]
fn snp_update_refused_before_the_firmware_leaves_no_hint() {
    const PAGES: u64 = 64;
    let host = host();
    let mut s = Session::new(&host, KVM_X86_SNP_VM);
    s.init2(0);
    s.add_private_ram(0, 0x10_0000, PAGES * 4096);
    s.qemu_vcpus(1, 0, EPYC_V4);
    let mut start = KvmSevSnpLaunchStart {
        policy: 0x30000,
        ..Default::default()
    };
    s.vm.sev_cmd(KVM_SEV_SNP_LAUNCH_START, s.sev_fd, &mut start)
        .unwrap();
    let src = host
        .mmap_bytes(&vec![0x5a; (PAGES * 4096) as usize])
        .unwrap();
    let mut u = KvmSevSnpLaunchUpdate {
        gfn_start: 0x100,
        uaddr: src,
        len: PAGES * 4096,
        r#type: KVM_SEV_SNP_PAGE_TYPE_NORMAL as u8,
        ..Default::default()
    };
    // fd 0 is open, but not on `/dev/sev`.
    assert!(s.vm.sev_cmd(KVM_SEV_SNP_LAUNCH_UPDATE, 0, &mut u).is_err());
    assert_eq!(u.len, PAGES * 4096, "no page was populated");
    assert_eq!(s.host.firmware().contents_hints_pending(), 0);
}
