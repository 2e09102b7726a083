//! Measurements of SYN64K and Debian OVMF.fd against the oracle values of
//! shared/facts/firmware-and-measurement.md (§3.3, §8.1–§8.5), which were produced by
//! sev-snp-measure, the `sev` crate, sevctl and an independent MRTD script.

mod measure_common;

use kvm_coco::measure::calc::{MeasureOptions, SevMeasureParams, Tik, measure, sev_launch_measure};
use kvm_coco::measure::firmware::{FirmwareImage, SevSectionType, TdvfSectionType};
use kvm_coco::measure::hashes::DirectBoot;
use kvm_coco::measure::plan::{LaunchPlan, PlanInputs};
use measure_common::*;
use sha2::{Digest, Sha384};

const EPYC_V4: u32 = 0x0080_0F12;

fn digest(plan: &LaunchPlan<'_>) -> String {
    measure(plan, &MeasureOptions::default())
        .unwrap()
        .digest
        .to_string()
}

#[test]
fn syn64k_is_bit_exact() {
    let img = syn64k();
    assert_eq!(
        sha256_hex(&img),
        "dac893496e53bf1a5643d761be49395899612ebe0178de53d93e1d6c373736fb"
    );
    assert_eq!(
        hex::encode(Sha384::digest(&img)),
        "1f19e7aee4c6f2cdc223a311e0d1be7725c9b086d6fe46c60b9a433346148f78b5000121e86f933c7ac0cfd2e3dc7cfe"
    );
    let side = side_files();
    assert_eq!(
        sha256_hex(&side[0].1),
        "5438bbaf3e84daff499e05203d38184fa7003bbd25dbe59ea780229ab88590dc"
    );
    assert_eq!(
        sha256_hex(&side[1].1),
        "5f8f56d6cb3df6b1394d91f8814b806dd20005fe50bc36207b291cc1c10d1b87"
    );
}

#[test]
fn syn64k_parses_as_described() {
    let img = syn64k();
    let fw = FirmwareImage::parse(&img).unwrap();
    assert_eq!(fw.reset_eip(), Some(0x80_4004));
    assert_eq!(
        fw.hash_table().map(|h| (h.gpa, h.size)),
        Some((0x80_3C00, 0x400))
    );
    assert_eq!(
        fw.secret_block().map(|h| (h.gpa, h.size)),
        Some((0x80_5000, 0x1000))
    );
    let kinds: Vec<_> = fw
        .sev_metadata()
        .unwrap()
        .sections
        .iter()
        .map(|s| s.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            SevSectionType::SnpSecMem,
            SevSectionType::SnpSecrets,
            SevSectionType::Cpuid,
            SevSectionType::SnpKernelHashes,
            SevSectionType::SnpSecMem
        ]
    );
    let t = fw.tdvf().unwrap();
    assert_eq!(t.offset, 0x10000 - 0xF00);
    assert_eq!(t.sections[1].kind, TdvfSectionType::Bfv);
    assert!(t.sections[1].mr_extend() && !t.sections[0].mr_extend());
    assert_eq!(fw.footer_entries().len(), 5);
}

fn with_kernel<'a>(fw: &'a FirmwareImage<'a>, k: &'a [u8], i: &'a [u8]) -> PlanInputs<'a> {
    let mut inp = PlanInputs::new(fw);
    inp.vcpu_sig = Some(EPYC_V4);
    inp.boot = Some(DirectBoot {
        kernel: k,
        initrd: Some(i),
        cmdline: Some("console=ttyS0"),
    });
    inp
}

// facts §8.2.
#[test]
fn syn64k_matches_sev_snp_measure() {
    let img = syn64k();
    let side = side_files();
    let fw = FirmwareImage::parse(&img).unwrap();
    let mut inp = PlanInputs::new(&fw);
    inp.vcpu_sig = Some(EPYC_V4);
    assert_eq!(
        digest(&LaunchPlan::snp(&inp).unwrap()),
        "54d686bed4f38e22c5e3ec6b7fdbd7288e0c4175469bf7274fcbe4ab5837f97804371497a3ce833231b857a75e3054f2"
    );
    let ovmf_hash = "57f4a54bb9723bd9ee73400d75ea4442030ec0923d282c30adb4ceba2921f77c94561078b24aa0c3432a7158c93171cb";
    assert_eq!(
        digest(&LaunchPlan::snp_firmware_only(&fw).unwrap()),
        ovmf_hash
    );
    let mut seeded = inp.clone();
    seeded.snp_firmware_digest = Some(hex::decode(ovmf_hash).unwrap().try_into().unwrap());
    assert_eq!(
        digest(&LaunchPlan::snp(&seeded).unwrap()),
        "54d686bed4f38e22c5e3ec6b7fdbd7288e0c4175469bf7274fcbe4ab5837f97804371497a3ce833231b857a75e3054f2"
    );
    assert_eq!(
        digest(&LaunchPlan::sev_es(&inp).unwrap()),
        "e9dc93820dc36074d4e54cdef031274e31ff46a918309ccb831f4da87f62ff95"
    );
    assert_eq!(
        digest(&LaunchPlan::sev(&inp).unwrap()),
        "dac893496e53bf1a5643d761be49395899612ebe0178de53d93e1d6c373736fb"
    );
    let k = with_kernel(&fw, &side[0].1, &side[1].1);
    assert_eq!(
        digest(&LaunchPlan::snp(&k).unwrap()),
        "5d2ef486503b2ee73a2eb4f2a8432921c53a3ee74ea6df6b1e0b5ccb2f54c389b5e93d3023d60c56969cfae886762306"
    );
    assert_eq!(
        digest(&LaunchPlan::sev(&k).unwrap()),
        "0449dc440298ed205dff0e3cca11f51337ac84500e8bc6321693c298ac14d738"
    );
}

// facts §8.1: the SNP hash-table page of SYN64K.
#[test]
fn syn64k_hash_page() {
    let img = syn64k();
    let side = side_files();
    let fw = FirmwareImage::parse(&img).unwrap();
    let k = with_kernel(&fw, &side[0].1, &side[1].1);
    let plan = LaunchPlan::snp(&k).unwrap();
    let page = plan.steps.iter().find(|s| s.gpa == 0x80_3000).unwrap();
    assert_eq!(
        hex::encode(Sha384::digest(page.data.as_slice())),
        "6aa9f9c21d8e7f73520ab853b9ba10987e54dd4f3ec2ed06636500abddb1bdaa52147f891a2de74793f00be27f186065"
    );
}

fn arr<const N: usize>(h: &str) -> [u8; N] {
    hex::decode(h).unwrap().try_into().unwrap()
}

fn b64(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

// facts §1.4 and §8.4: LAUNCH_MEASURE vectors from the `sev` crate and sevctl, and the
// SYN64K vector derived from the formula.
#[test]
fn sev_launch_measure_vectors() {
    let p = |maj, min, build, policy, mnonce| SevMeasureParams {
        api_major: maj,
        api_minor: min,
        build,
        policy,
        mnonce,
    };
    let m = sev_launch_measure(
        &Tik::new(arr("66320db73158a35a255d051758e95ed4")),
        &p(0, 0x12, 0x0f, 0, arr("4fbe0bedbad6c86ae8f68971d103e554")),
        &arr("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    );
    assert_eq!(
        hex::encode(m),
        "6faab2daae389bcd3405a05d6cafe33c0414f7bedd0bae19ba5f38b7fd1664ea"
    );

    let tik1 = Tik::new(arr("3569cf61a32a602b87185ac6e0f55913"));
    let nonce: [u8; 16] = b64("wxP6tRHCFrFQWxsuqZA8QA==").try_into().unwrap();
    let ld: [u8; 32] = b64("xkvRAfyaSizgonxAjZIAkR8TmolUabBKQKb6KJCDDSM=")
        .try_into()
        .unwrap();
    let m = sev_launch_measure(&tik1, &p(1, 40, 40, 3, nonce), &ld);
    assert_eq!(
        [&m[..], &nonce[..]].concat(),
        b64("lswbxWxI9gckya16JQvdFtpYmNO4b+3inAPpqsgoBI7DE/q1EcIWsVBbGy6pkDxA")
    );

    let ld = arr("4b47fec6f851487c33714c8a00a832a1b705ad0a7cac4a647388eccfa9f0c570");
    let m = sev_launch_measure(&tik1, &p(1, 40, 40, 3, nonce), &ld);
    assert_eq!(
        [&m[..], &nonce[..]].concat(),
        b64("h3auYbWQnVW7EGLWN4Hf9SN0oEYMPU2sK4bLnefWPwvDE/q1EcIWsVBbGy6pkDxA")
    );

    // SYN64K: LD from our SEV plan, TIK 00..0f, MNONCE 10..1f, api 0.24 build 15 policy 1.
    let img = syn64k();
    let fw = FirmwareImage::parse(&img).unwrap();
    let ld: [u8; 32] = measure(
        &LaunchPlan::sev(&PlanInputs::new(&fw)).unwrap(),
        &MeasureOptions::default(),
    )
    .unwrap()
    .digest
    .as_bytes()
    .try_into()
    .unwrap();
    let tik = Tik::new(core::array::from_fn(|i| i as u8));
    let m = sev_launch_measure(
        &tik,
        &p(0, 24, 15, 1, core::array::from_fn(|i| 0x10 + i as u8)),
        &ld,
    );
    assert_eq!(
        hex::encode(m),
        "eb20920036526031edb5cb6c0f09476d365612f3b0d56deaa9ed91484d07e380"
    );
}

// facts §5.1 micro vectors, through hand-built TDX plans.
#[test]
fn tdx_micro_vectors() {
    use kvm_coco::measure::plan::{Data, Origin, PageKind, Step, Tee};
    let step = |gpa, kind| Step {
        gpa,
        len: 4096,
        kind,
        data: Data::None,
        origin: Origin::Firmware,
    };
    let plan = |steps| LaunchPlan {
        tee: Tee::Tdx,
        initial_digest: None,
        steps,
    };
    assert_eq!(
        digest(&plan(vec![step(0, PageKind::Unmeasured)])),
        "8f3e9a8aca6784eab874f7aa4dda5d49104a88047f1f86695ef2a88f5691a90e34aac48ce45ffa1f5a23c7d62980d570"
    );
    assert_eq!(
        digest(&plan(vec![step(0x1000, PageKind::Measured)])),
        "ca76d5541328afef8bc9364261c515aebef90412ebc56ca0c2260ec531a14462cfc0c11de61d84292ddf8ca871da1ff1"
    );
    assert_eq!(
        digest(&plan(vec![])),
        "38b060a751ac96384cd9327eb1b1e36a21fdb71114be07434c0cc7bf63f6e1da274edebfe76f65fbd51ad2f14898b95b"
    );
}

// facts §4.4, §8.3, §8.5: Debian OVMF.fd.
#[test]
fn debian_ovmf_matches_facts() {
    let Some((_, img)) = debian_ovmf() else {
        return;
    };
    let fw = FirmwareImage::parse(&img).unwrap();
    assert_eq!(fw.reset_eip(), Some(0x80_B004));
    assert_eq!(fw.hash_table().map(|h| h.gpa), Some(0));
    let secs: Vec<_> = fw
        .sev_metadata()
        .unwrap()
        .sections
        .iter()
        .map(|s| (s.gpa, s.size, s.kind.raw()))
        .collect();
    assert_eq!(
        secs,
        [
            (0x80_0000, 0x9000, 1),
            (0x80_A000, 0x3000, 1),
            (0x80_D000, 0x1000, 2),
            (0x80_E000, 0x1000, 3),
            (0x80_F000, 0x11000, 1)
        ]
    );
    let tdvf: Vec<_> = fw
        .tdvf()
        .unwrap()
        .sections
        .iter()
        .map(|s| {
            (
                s.data_offset,
                s.raw_data_size,
                s.memory_address,
                s.memory_data_size,
                s.attributes,
            )
        })
        .collect();
    assert_eq!(
        tdvf,
        [
            (0x20000, 0x1E0000, 0xFFE2_0000, 0x1E0000, 1),
            (0, 0x20000, 0xFFE0_0000, 0x20000, 0),
            (0, 0, 0x81_0000, 0x10000, 0),
            (0, 0, 0x80_B000, 0x2000, 0),
            (0, 0, 0x80_9000, 0x2000, 0),
            (0, 0, 0x80_0000, 0x6000, 0)
        ]
    );
    let mut inp = PlanInputs::new(&fw);
    inp.vcpu_sig = Some(EPYC_V4);
    assert_eq!(
        digest(&LaunchPlan::snp(&inp).unwrap()),
        "11570979c77a0adb515761a702527c8b9e11554e730552621d950988613a3a75c6ff1703f540bd22a9beede8fe7a97e3"
    );
    assert_eq!(
        digest(&LaunchPlan::snp_firmware_only(&fw).unwrap()),
        "ba2c811512ef868474f239a21f7d7057d65a20de87a003c4f116e4fb1573183bfbcd75c3e99b2f558575a5d0094f73c6"
    );
    assert_eq!(
        digest(&LaunchPlan::sev_es(&inp).unwrap()),
        "5bcbb5a45e7a9fa4699b6cc8f775382a810ff5a0186d3b90069ba28b1840b38f"
    );
    assert_eq!(
        digest(&LaunchPlan::sev(&inp).unwrap()),
        "7b456907dd0786d415999e801a1ac4637b8ed4d7cf5378cfc6edbe5e574dd773"
    );
    assert_eq!(
        digest(&LaunchPlan::tdx(&fw).unwrap()),
        "4c7206f0f483c524f12c366c711e9049030a8d47c471ee5aa9c4999a08de4057fb887fed0744d5631a212967fb231c47"
    );
}
