//! TDREPORT_STRUCT and TD quote v4 from the software TDX module: offsets from firmware
//! facts §5.5, MRTD / RTMR / REPORTDATA placement, hashes, MAC verification and tampering.

mod sim_tdx_common;

use kvm_coco::sim::tdx::report::{QUOTE_MRTD_OFFSET, QUOTE_REPORT_DATA_OFFSET};
use kvm_coco::sim::tdx::*;
use sha2::{Digest, Sha384};
use sim_tdx_common::*;
use zerocopy::IntoBytes;

fn launched() -> (SimTdxVm, TdHandle) {
    let (vm, v) = initialized_vm(SimKvmConfig::default(), 1);
    add_pages(&vm, &v[0], 0x8000, &[0x33u8; 4096], true);
    vm.finalize().unwrap();
    let td = vm.td().unwrap();
    (vm, td)
}

fn report_data() -> [u8; 64] {
    std::array::from_fn(|i| i as u8 ^ 0xA0)
}

#[test]
fn tdreport_layout() {
    let (vm, td) = launched();
    let mrtd = vm.mrtd().unwrap();
    let mut m = vm.module().lock().unwrap();
    let ext: [u8; 48] = Sha384::digest(b"abc").into();
    m.tdg_mr_rtmr_extend(td, 1, &ext).unwrap();
    let r = m.tdg_mr_report(td, &report_data()).unwrap();
    let b = r.as_bytes();
    assert_eq!(b.len(), 1024);
    // facts §5.5 offsets.
    assert_eq!(
        &b[0..4],
        &[0x81, 0, 0, 0],
        "REPORTTYPE: TDX, subtype 0, version 0"
    );
    assert_eq!(&b[0x80..0xC0], &report_data());
    assert_eq!(&b[0x210..0x240], &mrtd);
    let rtmr1 = m.rtmr(td, 1).unwrap();
    assert_eq!(&b[0x300..0x330], &rtmr1);
    assert_eq!(&b[0x2D0..0x300], &[0u8; 48]);
    assert_eq!(
        &b[0x390..0x3C0],
        &[0u8; 48],
        "SERVTD_HASH without service TDs"
    );
    let cfg = m.config().clone();
    assert_eq!(&b[0x108..0x118], &cfg.tee_tcb_svn);
    assert_eq!(&b[0x118..0x148], &cfg.mrseam);
    assert_eq!(&b[0x148..0x178], &cfg.mrsignerseam);
    let td_cfg = m.td_config(td).unwrap();
    assert_eq!(
        u64::from_le_bytes(b[0x200..0x208].try_into().unwrap()),
        td_cfg.attributes
    );
    assert_eq!(
        u64::from_le_bytes(b[0x208..0x210].try_into().unwrap()),
        3,
        "XFAM x87|SSE (fixed1)"
    );
    // Hashes computed here over the raw byte ranges.
    let tee_info: [u8; 48] = Sha384::digest(&b[0x200..0x400]).into();
    let tcb_info: [u8; 48] = Sha384::digest(&b[0x100..0x200]).into();
    assert_eq!(&b[0x50..0x80], &tee_info, "TEE_INFO_HASH = SHA384(TDINFO)");
    assert_eq!(
        &b[0x20..0x50],
        &tcb_info,
        "TEE_TCB_INFO_HASH = SHA384(TEE_TCB_INFO)"
    );
    m.verify_report(&r).unwrap();
}

#[test]
fn tdreport_mac_detects_every_flipped_byte() {
    let (vm, td) = launched();
    let mut m = vm.module().lock().unwrap();
    let r = m.tdg_mr_report(td, &report_data()).unwrap();
    m.verify_report(&r).unwrap();
    let bytes = r.as_bytes().to_vec();
    for i in 0..bytes.len() {
        let mut t = bytes.clone();
        t[i] ^= 1 << (i % 8);
        let tampered = TdReport::from_slice(&t).unwrap();
        assert!(
            m.verify_report(&tampered).is_err(),
            "flip at byte {i:#x} not detected"
        );
    }
    // Another module (another seed) cannot verify it.
    let cfg = TdxModuleConfig {
        seed: [9; 32],
        ..Default::default()
    };
    assert!(SimTdxModule::new(cfg).verify_report(&r).is_err());
    assert!(TdReport::from_slice(&bytes[..1023]).is_err());
}

#[test]
fn quote_v4() {
    let (vm, td) = launched();
    let mrtd = vm.mrtd().unwrap();
    let mut m = vm.module().lock().unwrap();
    let ext = [0x11u8; 48];
    m.tdg_mr_rtmr_extend(td, 3, &ext).unwrap();
    let r = m.tdg_mr_report(td, &report_data()).unwrap();
    let q = m.quote(&r).unwrap();
    let b = q.to_bytes();
    // facts §5.5: header fields, MRTD at 184, REPORTDATA at 568, sig_data_len at 632.
    assert_eq!(u16::from_le_bytes([b[0], b[1]]), 4);
    assert_eq!(u16::from_le_bytes([b[2], b[3]]), 2);
    assert_eq!(u32::from_le_bytes(b[4..8].try_into().unwrap()), 0x81);
    assert_eq!(&b[184..232], &mrtd);
    assert_eq!(QUOTE_MRTD_OFFSET, 184);
    assert_eq!(&b[568..632], &report_data());
    assert_eq!(QUOTE_REPORT_DATA_OFFSET, 568);
    let sig_len = u32::from_le_bytes(b[632..636].try_into().unwrap()) as usize;
    assert_eq!(sig_len, 32);
    assert_eq!(b.len(), 636 + sig_len);
    // Body offsets (48 + body offset): RTMR3 at 48 + 328 + 3·48, MROWNER at 48 + 232.
    assert_eq!(&b[48 + 328 + 144..48 + 328 + 192], &m.rtmr(td, 3).unwrap());
    assert_eq!(&b[48..64], &m.config().tee_tcb_svn);
    assert_eq!(&b[48 + 16..48 + 64], &m.config().mrseam);
    // Parse round trip, signature verifies, a flipped body bit does not.
    let parsed = TdQuote::parse(&b).unwrap();
    assert_eq!(parsed, q);
    assert_eq!(parsed.body.mrtd, mrtd);
    m.verify_quote(&parsed).unwrap();
    let body = TdQuoteBody::from_slice(&b[48..632]).unwrap();
    assert_eq!(body, q.body);
    assert!(body.to_string().contains(&format!("mrtd: {}", hex(&mrtd))));
    assert!(TdQuoteBody::from_slice(&b[48..631]).is_err());
    let mut t = b.clone();
    t[200] ^= 0x04;
    assert!(m.verify_quote(&TdQuote::parse(&t).unwrap()).is_err());
    // Truncated and foreign quotes are rejected.
    assert!(matches!(
        TdQuote::parse(&b[..600]),
        Err(QuoteError::Length { .. })
    ));
    assert!(matches!(
        TdQuote::parse(&b[..b.len() - 1]),
        Err(QuoteError::Length { .. })
    ));
    let mut sgx = b.clone();
    sgx[4] = 0;
    assert!(matches!(
        TdQuote::parse(&sgx),
        Err(QuoteError::NotTdQuoteV4 { .. })
    ));
    // The quoting enclave refuses a tampered TDREPORT.
    let mut bad = r.clone();
    bad.td_info.mrtd[0] ^= 1;
    assert!(m.quote(&bad).is_err());
}
