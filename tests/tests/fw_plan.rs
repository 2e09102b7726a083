//! End to end: the launch plans of `kvm_coco::measure` executed on the software
//! PSP firmware give the digests sev-snp-measure computes.

use kvm_coco::measure::hashes::DirectBoot;
use kvm_coco::measure::synthetic::syn64k;
use kvm_coco::measure::{FirmwareImage, LaunchPlan, PageKind, PlanInputs};
use psp_driver::owner::session::{FwVersion, verify_launch_measure};
use psp_driver::sim::{SimConfig, SimFirmware, mem::PhysMem};
use psp_driver::{SevCmd, SevRetCode, Transport};
use std::sync::Arc;

const GCTX: u64 = 0x7000_0000;
const ASID: u32 = 1;
const EPYC_V4: u32 = 0x80_0F12;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn ok(fw: &SimFirmware, cmd: SevCmd, b: &mut [u8]) {
    assert_eq!(fw.submit(cmd, b).status, SevRetCode::Success, "{cmd:?}");
}

fn pages(step_data: &[u8], len: u64) -> Vec<Vec<u8>> {
    let mut d = step_data.to_vec();
    d.resize(len as usize, 0);
    d.chunks(4096).map(|c| c.to_vec()).collect()
}

/// Runs an SNP plan on the firmware and returns GCTX.LD.
fn run_snp(plan: &LaunchPlan<'_>) -> [u8; 48] {
    let fw = SimFirmware::new(SimConfig::default(), Arc::new(PhysMem::new()));
    ok(&fw, SevCmd::SnpInit, &mut []);
    fw.rmp_make_firmware(GCTX).unwrap();
    ok(&fw, SevCmd::SnpGctxCreate, &mut GCTX.to_le_bytes());
    let mut ls = [0u8; 0x30];
    ls[0..8].copy_from_slice(&GCTX.to_le_bytes());
    ls[8..16].copy_from_slice(&0x30000u64.to_le_bytes());
    ok(&fw, SevCmd::SnpLaunchStart, &mut ls);
    let mut act = [0u8; 12];
    act[0..8].copy_from_slice(&GCTX.to_le_bytes());
    act[8..12].copy_from_slice(&ASID.to_le_bytes());
    ok(&fw, SevCmd::SnpActivate, &mut act);
    let mut next_pa = 0x10_0000_0000u64;
    for step in &plan.steps {
        for (i, page) in pages(step.data.as_slice(), step.len).iter().enumerate() {
            let pa = next_pa;
            next_pa += 4096;
            let gpa = if step.kind == PageKind::Vmsa {
                step.gpa
            } else {
                step.gpa + (i * 4096) as u64
            };
            fw.mem().write(pa, page).unwrap();
            fw.rmp_make_private(pa, gpa, ASID, false).unwrap();
            let mut b = [0u8; 0x20];
            b[0..8].copy_from_slice(&GCTX.to_le_bytes());
            b[8..12].copy_from_slice(&((step.kind.snp_page_type() as u32) << 1).to_le_bytes());
            b[16..24].copy_from_slice(&pa.to_le_bytes());
            ok(&fw, SevCmd::SnpLaunchUpdate, &mut b);
        }
    }
    fw.snp_launch_digest(GCTX).unwrap()
}

/// Runs a SEV / SEV-ES plan (no session, so TIK = 0) and checks LAUNCH_MEASURE against `want`.
fn run_sev(plan: &LaunchPlan<'_>, es: bool, want: &str) {
    let fw = SimFirmware::new(SimConfig::default(), Arc::new(PhysMem::new()));
    let mut init = [0u8; 20];
    init[0] = u8::from(es);
    ok(&fw, SevCmd::Init, &mut init);
    let policy: u32 = if es { 4 } else { 0 };
    let mut ls = [0u8; 36];
    ls[4..8].copy_from_slice(&policy.to_le_bytes());
    ok(&fw, SevCmd::LaunchStart, &mut ls);
    let handle = u32::from_le_bytes(ls[0..4].try_into().unwrap());
    let asid: u32 = if es { 2 } else { 10 };
    let mut act = [handle.to_le_bytes(), asid.to_le_bytes()].concat();
    ok(&fw, SevCmd::Activate, &mut act);
    let mut pa = 0x1000_0000u64;
    for step in &plan.steps {
        let mut d = step.data.as_slice().to_vec();
        d.resize(step.len as usize, 0);
        fw.mem().write(pa, &d).unwrap();
        let mut b = [0u8; 20];
        b[0..4].copy_from_slice(&handle.to_le_bytes());
        b[8..16].copy_from_slice(&pa.to_le_bytes());
        b[16..20].copy_from_slice(&(step.len as u32).to_le_bytes());
        let cmd = if step.kind == PageKind::Vmsa {
            SevCmd::LaunchUpdateVmsa
        } else {
            SevCmd::LaunchUpdateData
        };
        ok(&fw, cmd, &mut b);
        pa += (step.len + 0xFFF) & !0xFFF;
    }
    let out_pa = 0x800_0000u64;
    let mut m = [0u8; 20];
    m[0..4].copy_from_slice(&handle.to_le_bytes());
    m[8..16].copy_from_slice(&out_pa.to_le_bytes());
    m[16..20].copy_from_slice(&48u32.to_le_bytes());
    ok(&fw, SevCmd::LaunchMeasure, &mut m);
    let out: [u8; 48] = fw.mem().read_vec(out_pa, 48).unwrap().try_into().unwrap();
    let ld: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&want[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let c = fw.config();
    verify_launch_measure(
        &[0; 16],
        FwVersion {
            api_major: c.api_major,
            api_minor: c.api_minor,
            build: c.build,
        },
        policy,
        &ld.try_into().unwrap(),
        &out,
    )
    .unwrap_or_else(|e| panic!("expected LD {want}: {e}"));
}

#[test]
fn snp_plans_on_the_firmware_match_sev_snp_measure() {
    let img = syn64k();
    let kernel: Vec<u8> = (0..10000u32).map(|i| ((13 * i + 5) % 256) as u8).collect();
    let initrd = vec![0xABu8; 3000];
    let fwi = FirmwareImage::parse(&img).unwrap();
    // sev-snp-measure 0.0.13 --mode snp --vcpus N --vcpu-type EPYC-v4 --ovmf syn64k.fd [K], with
    // K = --kernel kernel.bin --initrd initrd.bin --append console=ttyS0 (facts §8.1 side
    // files): facts §8.2 for 1 vCPU; the 4-vCPU value printed by the same tool on SYN64K
    // written from the facts recipe.
    for (vcpus, with_kernel, want) in [
        (
            1,
            false,
            "54d686bed4f38e22c5e3ec6b7fdbd7288e0c4175469bf7274fcbe4ab5837f97804371497a3ce833231b857a75e3054f2",
        ),
        (
            1,
            true,
            "5d2ef486503b2ee73a2eb4f2a8432921c53a3ee74ea6df6b1e0b5ccb2f54c389b5e93d3023d60c56969cfae886762306",
        ),
        (
            4,
            true,
            "1b7e37015f4165d3f45363e93558d98d420b6e0476b84c3769b9580e0dc58241bf5850b09b3248cbc597b511663ccf17",
        ),
    ] {
        let mut inputs = PlanInputs::new(&fwi);
        inputs.vcpus = vcpus;
        inputs.vcpu_sig = Some(EPYC_V4);
        if with_kernel {
            inputs.boot = Some(DirectBoot {
                kernel: &kernel,
                initrd: Some(&initrd),
                cmdline: Some("console=ttyS0"),
            });
        }
        let plan = LaunchPlan::snp(&inputs).unwrap();
        assert_eq!(
            hex(&run_snp(&plan)),
            want,
            "{vcpus} vCPUs, kernel {with_kernel}"
        );
    }
}

#[test]
fn sev_and_sev_es_plans_on_the_firmware_match_sev_snp_measure() {
    let img = syn64k();
    let kernel: Vec<u8> = (0..10000u32).map(|i| ((13 * i + 5) % 256) as u8).collect();
    let initrd = vec![0xABu8; 3000];
    let fwi = FirmwareImage::parse(&img).unwrap();
    let mut inputs = PlanInputs::new(&fwi);
    inputs.vcpu_sig = Some(EPYC_V4);
    // facts §8.2: --mode sev, --mode seves --vcpus 1 --vcpu-type EPYC-v4, --mode sev K.
    run_sev(
        &LaunchPlan::sev(&inputs).unwrap(),
        false,
        "dac893496e53bf1a5643d761be49395899612ebe0178de53d93e1d6c373736fb",
    );
    run_sev(
        &LaunchPlan::sev_es(&inputs).unwrap(),
        true,
        "e9dc93820dc36074d4e54cdef031274e31ff46a918309ccb831f4da87f62ff95",
    );
    inputs.boot = Some(DirectBoot {
        kernel: &kernel,
        initrd: Some(&initrd),
        cmdline: Some("console=ttyS0"),
    });
    run_sev(
        &LaunchPlan::sev(&inputs).unwrap(),
        false,
        "0449dc440298ed205dff0e3cca11f51337ac84500e8bc6321693c298ac14d738",
    );
    // sev-snp-measure 0.0.13 --mode seves --vcpus 4 --vcpu-type EPYC-v4 --ovmf syn64k.fd K.
    inputs.vcpus = 4;
    run_sev(
        &LaunchPlan::sev_es(&inputs).unwrap(),
        true,
        "f90a2e3402a98fc0e47b9f56422094c07a8c2645e56b39affc6e5b55a0a5b493",
    );
}

#[test]
fn debian_ovmf_plan_on_the_firmware() {
    let path = std::env::var("KVM_COCO_OVMF").unwrap_or_else(|_| "/usr/share/ovmf/OVMF.fd".into());
    let Ok(img) = std::fs::read(&path) else {
        kvm_coco_test_skip::skip(
            "OVMF",
            format_args!("cannot read {path}; install Debian's `ovmf` or set KVM_COCO_OVMF"),
        );
        return;
    };
    let mut sha = psp_driver::digest::SevLaunchDigest::new();
    sha.update(&img);
    if hex(&sha.finalize()) != "7b456907dd0786d415999e801a1ac4637b8ed4d7cf5378cfc6edbe5e574dd773" {
        kvm_coco_test_skip::skip(
            "OVMF",
            format_args!("{path} is not Debian ovmf 2022.11-6+deb12u2; set KVM_COCO_OVMF"),
        );
        return;
    }
    let fwi = FirmwareImage::parse(&img).unwrap();
    let mut inputs = PlanInputs::new(&fwi);
    inputs.vcpu_sig = Some(EPYC_V4);
    // facts §8.3.
    assert_eq!(
        hex(&run_snp(&LaunchPlan::snp(&inputs).unwrap())),
        "11570979c77a0adb515761a702527c8b9e11554e730552621d950988613a3a75c6ff1703f540bd22a9beede8fe7a97e3"
    );
    run_sev(
        &LaunchPlan::sev_es(&inputs).unwrap(),
        true,
        "5bcbb5a45e7a9fa4699b6cc8f775382a810ff5a0186d3b90069ba28b1840b38f",
    );
}
