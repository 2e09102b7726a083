//! MRTD and RTMR of the software TDX module against independent values: the firmware facts
//! §5.1 / §5.2 micro-vectors, SHA-384(""), a from-the-facts reference, the offline
//! `kvm_coco::measure` calculator, and the facts §8.5 MRTD of Debian's OVMF.fd.

mod sim_tdx_common;

use kvm_coco::measure::calc::{MeasureOptions, measure};
use kvm_coco::measure::firmware::FirmwareImage;
use kvm_coco::measure::plan::LaunchPlan;
use kvm_coco::sim::tdx::*;
use sha2::{Digest, Sha384};
use sim_tdx_common::*;

/// A TD built at module level with the given build-time calls, then finalized.
fn module_mrtd(build: impl FnOnce(&mut SimTdxModule, TdHandle)) -> [u8; 48] {
    let mut m = SimTdxModule::new(TdxModuleConfig::default());
    let td = module_td(&mut m, &good_params());
    build(&mut m, td);
    module_vcpu(&mut m, td);
    m.tdh_mr_finalize(td).unwrap();
    m.mrtd(td).unwrap()
}

#[test]
fn no_calls_is_sha384_of_nothing() {
    // facts §5.1: SHA384("") = 38b060a7…98b95b (the full standard value).
    let want = "38b060a751ac96384cd9327eb1b1e36a21fdb71114be07434c0cc7bf63f6e1da274edebfe76f65fbd51ad2f14898b95b";
    assert_eq!(hex(&module_mrtd(|_, _| {})), want);
}

#[test]
fn page_add_zero_vector() {
    // facts §5.1 micro-vector: PAGE.ADD(0) only.
    let got = module_mrtd(|m, td| {
        sept_for(m, td, 0);
        m.tdh_mem_page_add(td, 0, &[0u8; 4096]).unwrap();
    });
    assert_eq!(
        hex(&got),
        "8f3e9a8aca6784eab874f7aa4dda5d49104a88047f1f86695ef2a88f5691a90e34aac48ce45ffa1f5a23c7d62980d570"
    );
}

#[test]
fn page_add_then_extend_vector() {
    // facts §5.1 micro-vector: PAGE.ADD(0x1000) then 16 × MR.EXTEND over a zero page.
    let got = module_mrtd(|m, td| {
        sept_for(m, td, 0x1000);
        m.tdh_mem_page_add(td, 0x1000, &[0u8; 4096]).unwrap();
        for c in 0..16 {
            m.tdh_mr_extend(td, 0x1000 + c * 0x100).unwrap();
        }
    });
    assert_eq!(
        hex(&got),
        "ca76d5541328afef8bc9364261c515aebef90412ebc56ca0c2260ec531a14462cfc0c11de61d84292ddf8ca871da1ff1"
    );
}

#[test]
fn page_add_block_bytes() {
    // facts §5.1: the PAGE.ADD block for GPA 0x1000 in hex.
    let b = kvm_coco::measure::calc::tdx_page_add_block(0x1000);
    let want = format!(
        "4d454d2e504147452e41444400000000{}{}",
        "0010000000000000",
        "00".repeat(104)
    );
    assert_eq!(hex(&b), want);
}

#[test]
fn rtmr_vectors() {
    let mut m = SimTdxModule::new(TdxModuleConfig::default());
    let td = module_td(&mut m, &good_params());
    module_vcpu(&mut m, td);
    m.tdh_mr_finalize(td).unwrap();
    assert_eq!(m.rtmr(td, 2), Some([0u8; 48]));
    let abc: [u8; 48] = Sha384::digest(b"abc").into();
    m.tdg_mr_rtmr_extend(td, 2, &abc).unwrap();
    // facts §5.2.
    assert_eq!(
        hex(&m.rtmr(td, 2).unwrap()),
        "93732e3733514a841c982cfa75ea76ab55fe011acb9cd980ef4523913c65be1b0998e04d77f8c174f81a82151619ca40"
    );
    m.tdg_mr_rtmr_extend(td, 2, &abc).unwrap();
    assert_eq!(
        hex(&m.rtmr(td, 2).unwrap()),
        "0b815adb5c2824360b25f9c2ca667eee481dc15676327e8c56be97a3275d8f114d89b198e39f5f49e89657ea2a8adb6a"
    );
    // The others are untouched; index 4 is OPERAND_INVALID + RDX.
    assert_eq!(m.rtmr(td, 0), Some([0u8; 48]));
    assert_eq!(
        m.tdg_mr_rtmr_extend(td, 4, &abc),
        Err(TdxStatus(0xC000_0100_0000_0002))
    );
}

/// A layout with two extended sections, an unextended one, a PAGE_AUG one (skipped), a HOB
/// and temporary memory, raw data shorter than the section, and sections out of address order.
fn synthetic_sections() -> Vec<Sec> {
    vec![
        Sec {
            data_offset: 0x0,
            raw: 0x3000,
            gpa: 0xFFFF_D000,
            mem: 0x3000,
            kind: 1,
            attr: 0,
        },
        Sec {
            data_offset: 0x3000,
            raw: 0x1800,
            gpa: 0xFFFF_0000,
            mem: 0x4000,
            kind: 0,
            attr: 1,
        },
        Sec {
            data_offset: 0x6000,
            raw: 0x2000,
            gpa: 0x7000_0000,
            mem: 0x2000,
            kind: 0,
            attr: 1,
        },
        Sec {
            data_offset: 0,
            raw: 0,
            gpa: 0x1_0000_0000,
            mem: 0x1000,
            kind: 3,
            attr: 2,
        },
        Sec {
            data_offset: 0,
            raw: 0,
            gpa: 0x40_0000,
            mem: 0x5000,
            kind: 2,
            attr: 0,
        },
        Sec {
            data_offset: 0,
            raw: 0,
            gpa: 0x80_0000,
            mem: 0x3000,
            kind: 3,
            attr: 0,
        },
    ]
}

#[test]
fn synthetic_tdvf_through_kvm_matches_offline_and_reference() {
    let secs = synthetic_sections();
    let img = tdvf_image(0x10000, &secs);
    let (vm, vcpus) = initialized_vm(SimKvmConfig::default(), 1);
    load_tdvf(&vm, &vcpus[0], &img, &secs);
    vm.finalize().unwrap();
    let sim = vm.mrtd().unwrap();

    let reference = reference_mrtd(&img, &secs);
    assert_eq!(
        hex(&sim),
        hex(&reference),
        "simulated MRTD vs the facts §5.1 reference"
    );

    let fw = FirmwareImage::parse(&img).unwrap();
    let offline = measure(&LaunchPlan::tdx(&fw).unwrap(), &MeasureOptions::default()).unwrap();
    assert_eq!(
        hex(&sim),
        offline.digest.to_string(),
        "simulated MRTD vs kvm_coco::measure"
    );
    // The content matters: the same layout with other bytes gives another MRTD.
    let mut img2 = img.clone();
    img2[0x3000] ^= 1;
    assert_ne!(reference_mrtd(&img2, &secs), reference);
}

#[test]
fn debian_ovmf_mrtd_through_kvm() {
    let path = std::env::var_os("KVM_COCO_OVMF")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/usr/share/ovmf/OVMF.fd".into());
    let img = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            kvm_coco_test_skip::skip(
                "OVMF",
                format_args!(
                    "Debian OVMF not readable at {} ({e}); install Debian's `ovmf` or set \
                     KVM_COCO_OVMF",
                    path.display()
                ),
            );
            return;
        }
    };
    let fw = FirmwareImage::parse(&img).unwrap();
    let tdvf = fw
        .tdvf()
        .expect("Debian OVMF.fd has TDVF metadata (facts §5.1)");
    let secs: Vec<Sec> = tdvf
        .sections
        .iter()
        .map(|s| Sec {
            data_offset: s.data_offset,
            raw: s.raw_data_size,
            gpa: s.memory_address,
            mem: s.memory_data_size,
            kind: 0,
            attr: s.attributes,
        })
        .collect();
    assert_eq!(secs.len(), 6);
    let (vm, vcpus) = initialized_vm(SimKvmConfig::default(), 1);
    load_tdvf(&vm, &vcpus[0], &img, &secs);
    vm.finalize().unwrap();
    let offline = measure(&LaunchPlan::tdx(&fw).unwrap(), &MeasureOptions::default()).unwrap();
    assert_eq!(
        hex(&vm.mrtd().unwrap()),
        offline.digest.to_string(),
        "vs kvm_coco::measure"
    );
    // facts §8.5.
    assert_eq!(
        hex(&vm.mrtd().unwrap()),
        "4c7206f0f483c524f12c366c711e9049030a8d47c471ee5aa9c4999a08de4057fb887fed0744d5631a212967fb231c47"
    );
}
