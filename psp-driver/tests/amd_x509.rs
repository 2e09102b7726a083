//! AMD X.509 chain and report verification against real AMD data and a stand-in PKI.
//!
//! Oracles, all independent of this crate:
//! * `vectors/amd/`: AMD's Milan and Turin `cert_chain` bundles as served by KDS, a Milan and a
//!   Turin VCEK, and a real Milan attestation report (version 2) signed by that VCEK, taken
//!   from the virtee/sev 8.0.0 test data (`tests/certs_data`). OpenSSL 3.0 verifies the same
//!   files: `openssl verify -CAfile ark.pem -untrusted ask.pem vcek.pem` prints OK for both
//!   products, and `openssl dgst -sha384 -verify` accepts the report signature (bytes
//!   0..0x2A0, R/S converted from little-endian to DER). The TCB and hardware-ID values
//!   below are read from the certificates with `openssl asn1parse`.
//! * `vectors/amd/test-pki/`: a chain of the same shape rooted in a non-AMD key, made by
//!   `gen.sh` with OpenSSL (which verifies it as its last step).

use std::path::PathBuf;

use p384::ecdsa::SigningKey;
use psp_driver::owner::cert::{algo, sign_message};
use psp_driver::owner::x509::{
    AmdCert, AmdChain, LeafKind, Product, Root, VerifyOptions, X509Error, unix_time, verify_report,
};
use psp_driver::report::{AttestationReport, REPORT_LEN};
use zerocopy::FromBytes;
use zerocopy::little_endian::{U32, U64};

fn vector(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors/amd")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn certs(name: &str) -> Vec<AmdCert> {
    AmdCert::parse(&vector(name)).unwrap()
}

/// 2025-01-01T00:00:00Z, inside every real certificate's validity.
fn in_validity() -> VerifyOptions {
    VerifyOptions {
        at: Some(unix_time(1_735_689_600)),
        allow_unknown_root: false,
    }
}

fn milan_report() -> AttestationReport {
    let b = vector("report_milan.bin");
    assert_eq!(b.len(), REPORT_LEN);
    AttestationReport::read_from_bytes(&b).unwrap()
}

fn milan_chain() -> AmdChain {
    let mut all = certs("cert_chain_milan.pem");
    all.extend(certs("vcek_milan.der"));
    AmdChain::from_certs(all).unwrap()
}

/// The Milan VCEK's hardware ID, from `openssl asn1parse` (extension 1.3.6.1.4.1.3704.1.4).
const MILAN_HW_ID: &str = "d49554ec717f4e5b0fe6b143bcf0405bd7ae304727edf46603f2a76aef6a3abc15d7af38db757039029f0efacfd08e244324884738c72b082e2f87a44d541eb6";

#[test]
fn builtin_roots_are_amds_and_sign_their_asks() {
    for p in Product::ALL {
        let ark = p.builtin_ark();
        let ask = p.builtin_ask();
        assert_eq!(ark.common_name(), Some(format!("ARK-{p}")));
        assert_eq!(ask.common_name(), Some(format!("SEV-{p}")));
        assert!(ark.is_self_issued());
        ark.verify_signed_by(&ark).unwrap();
        ask.verify_signed_by(&ark).unwrap();
        assert_eq!(
            rsa::traits::PublicKeyParts::n_bits_precision(&ark.rsa_key().unwrap()),
            4096
        );
        for other in Product::ALL.into_iter().filter(|o| *o != p) {
            assert!(matches!(
                ask.verify_signed_by(&other.builtin_ark()),
                Err(X509Error::IssuerMismatch { .. })
            ));
        }
    }
    // The KDS bundles hold the same certificates as the built-in ones (ASK first, then ARK).
    for (p, file) in [
        (Product::Milan, "cert_chain_milan.pem"),
        (Product::Turin, "cert_chain_turin.pem"),
    ] {
        let c = certs(file);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].der(), p.builtin_ask().der());
        assert_eq!(c[1].der(), p.builtin_ark().der());
    }
}

#[test]
fn real_milan_report_verifies_with_binding_checks() {
    let v = verify_report(&milan_report(), &milan_chain(), &in_validity()).unwrap();
    assert_eq!(v.chain.product, Product::Milan);
    assert_eq!(v.chain.root, Root::Amd(Product::Milan));
    assert_eq!(v.chain.leaf_kind, LeafKind::Vcek);
    // blSPL 3, teeSPL 0, snpSPL 8, ucodeSPL 0x73 in the Milan layout.
    assert_eq!(v.chain.tcb.unwrap().0, 0x7308_0000_0000_0003);
    assert_eq!(hex::encode(v.chain.hw_id.as_deref().unwrap()), MILAN_HW_ID);
    assert!(v.tcb_checked);
    assert!(v.chip_id_checked);
}

#[test]
fn a_lone_vcek_is_completed_with_the_builtin_issuers() {
    let vcek = certs("vcek_milan.der").remove(0);
    let chain = AmdChain::with_builtin_issuers(vcek.clone()).unwrap();
    assert_eq!(chain.ark.der(), Product::Milan.builtin_ark().der());
    verify_report(&milan_report(), &chain, &in_validity()).unwrap();
    // `from_certs` with one certificate does the same.
    let chain = AmdChain::from_certs(vec![vcek]).unwrap();
    verify_report(&milan_report(), &chain, &in_validity()).unwrap();
}

#[test]
fn real_turin_vcek_chain_verifies_in_the_turin_tcb_layout() {
    let mut all = certs("vcek_turin.der");
    all.extend(certs("cert_chain_turin.pem"));
    let v = AmdChain::from_certs(all)
        .unwrap()
        .verify(&in_validity())
        .unwrap();
    assert_eq!(v.root, Root::Amd(Product::Turin));
    assert_eq!(v.leaf_kind, LeafKind::Vcek);
    // fmcSPL 0, blSPL 0, teeSPL 0, snpSPL 0, ucodeSPL 9: [0] FMC .. [3] SNP, [7] microcode.
    assert_eq!(v.tcb.unwrap().0, 0x0900_0000_0000_0000);
    assert_eq!(hex::encode(v.hw_id.unwrap()), "1e550a8ee5cf9f4d");
}

#[test]
fn validity_is_checked_at_the_given_time() {
    let chain = milan_chain();
    let after = VerifyOptions {
        at: Some(unix_time(1_924_992_000)), // 2031-01-01, after the VCEK's 2030-04-03 end
        ..in_validity()
    };
    match chain.verify(&after) {
        Err(X509Error::Expired { cert, not_after }) => {
            assert_eq!(cert, "SEV-VCEK");
            assert!(not_after.starts_with("2030-04-03"), "{not_after}");
        }
        other => panic!("expected Expired, got {other:?}"),
    }
    let before = VerifyOptions {
        at: Some(unix_time(1_577_836_800)), // 2020-01-01, before the ARK's 2020-10-22 start
        ..in_validity()
    };
    assert!(matches!(
        chain.verify(&before),
        Err(X509Error::NotYetValid { cert, .. }) if cert == "ARK-Milan"
    ));
    let unchecked = VerifyOptions {
        at: None,
        ..in_validity()
    };
    chain.verify(&unchecked).unwrap();
}

#[test]
fn any_changed_byte_fails_verification() {
    let chain = milan_chain();
    // Every signed report field, and the signature itself.
    for off in [0x0, 0x50, 0x90, 0x180, 0x1A0, 0x29F, 0x2A0, 0x2E8] {
        let mut r = milan_report();
        let b = zerocopy::IntoBytes::as_mut_bytes(&mut r);
        b[off] ^= 0x01;
        let e = verify_report(&r, &chain, &in_validity()).unwrap_err();
        assert!(
            matches!(
                e,
                X509Error::ReportSignature { .. } | X509Error::UnsupportedReport(_)
            ),
            "offset {off:#x}: {e}"
        );
    }
    // A flipped byte inside the VCEK's to-be-signed part (its public key).
    let mut der = vector("vcek_milan.der");
    let at = der.len() / 2;
    der[at] ^= 0x01;
    let bad = AmdChain::with_builtin_issuers(AmdCert::from_der(&der).unwrap()).unwrap();
    assert!(matches!(
        bad.verify(&in_validity()),
        Err(X509Error::BadSignature { cert, signer }) if cert == "SEV-VCEK" && signer == "SEV-Milan"
    ));
}

#[test]
fn certificates_of_another_product_do_not_chain() {
    // The Milan VCEK under Turin's ARK and ASK.
    let chain = AmdChain {
        ark: Product::Turin.builtin_ark(),
        ask: Product::Turin.builtin_ask(),
        leaf: certs("vcek_milan.der").remove(0),
    };
    assert!(matches!(
        chain.verify(&in_validity()),
        Err(X509Error::IssuerMismatch { .. })
    ));
    // Genoa's ASK under Milan's ARK.
    let chain = AmdChain {
        ark: Product::Milan.builtin_ark(),
        ask: Product::Genoa.builtin_ask(),
        leaf: certs("vcek_milan.der").remove(0),
    };
    assert!(matches!(
        chain.verify(&in_validity()),
        Err(X509Error::IssuerMismatch { .. })
    ));
    // A VCEK is not a root.
    let vcek = certs("vcek_milan.der").remove(0);
    let chain = AmdChain {
        ark: vcek.clone(),
        ask: Product::Milan.builtin_ask(),
        leaf: vcek,
    };
    assert!(matches!(
        chain.verify(&in_validity()),
        Err(X509Error::ChainShape(_))
    ));
}

#[test]
fn chain_assembly_refuses_wrong_shapes() {
    let two = certs("cert_chain_milan.pem");
    assert!(matches!(
        AmdChain::from_certs(two),
        Err(X509Error::ChainShape(m)) if m.contains("got 2")
    ));
    let mut no_leaf = certs("cert_chain_milan.pem");
    no_leaf.push(Product::Genoa.builtin_ark());
    assert!(matches!(
        AmdChain::from_certs(no_leaf),
        Err(X509Error::ChainShape(m)) if m.contains("self-signed root")
    ));
    // An ASK alone: its issuer is an ARK, which has no built-in issuer entry.
    assert!(matches!(
        AmdChain::from_certs(vec![Product::Milan.builtin_ark()]),
        Err(X509Error::NoBuiltinIssuer { .. })
    ));
}

#[test]
fn garbage_and_truncated_input_is_a_typed_error() {
    let der = vector("vcek_milan.der");
    for n in (0..der.len()).step_by(7) {
        assert!(
            matches!(AmdCert::from_der(&der[..n]), Err(X509Error::Decode { .. })),
            "prefix {n}"
        );
    }
    for junk in [
        &b""[..],
        b"hello",
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    ] {
        assert!(matches!(
            AmdCert::parse(junk),
            Err(X509Error::Decode { .. })
        ));
    }
    let msg = AmdCert::parse(b"\x30\x03\x02\x01").unwrap_err().to_string();
    assert!(msg.contains("not an X.509 certificate"), "{msg}");
}

// --- the stand-in PKI --------------------------------------------------------------------

fn test_pki() -> AmdChain {
    let dir = |f: &str| format!("test-pki/{f}");
    let mut all = certs(&dir("ark.pem"));
    all.extend(certs(&dir("ask.pem")));
    all.extend(certs(&dir("vcek.der")));
    AmdChain::from_certs(all).unwrap()
}

fn test_vcek_key() -> SigningKey {
    let hex = String::from_utf8(vector("test-pki/vcek.scalar.hex")).unwrap();
    SigningKey::from_slice(&hex::decode(hex.trim()).unwrap()).unwrap()
}

/// A report as the test VCEK's chip would sign it: TCB and chip ID as in the certificate.
fn test_report(edit: impl FnOnce(&mut AttestationReport)) -> AttestationReport {
    let mut r = AttestationReport::read_from_bytes(&[0u8; REPORT_LEN][..]).unwrap();
    r.version = U32::new(2);
    r.signature_algo = U32::new(1);
    r.reported_tcb = U64::new(0x7308_0000_0000_0003);
    for (i, b) in r.chip_id.iter_mut().enumerate() {
        *b = i as u8;
    }
    edit(&mut r);
    r.signature = sign_message(&test_vcek_key(), algo::ECDSA_SHA384, r.signed_bytes()).unwrap();
    r
}

fn any_root() -> VerifyOptions {
    VerifyOptions {
        at: None,
        allow_unknown_root: true,
    }
}

#[test]
fn a_root_that_is_not_amds_is_refused_unless_allowed() {
    let chain = test_pki();
    let strict = VerifyOptions {
        at: None,
        allow_unknown_root: false,
    };
    match chain.verify(&strict) {
        Err(e @ X509Error::UnknownRoot { .. }) => {
            assert!(
                e.to_string().contains("'ARK-Milan' is not AMD's ARK"),
                "{e}"
            );
        }
        other => panic!("expected UnknownRoot, got {other:?}"),
    }
    let v = verify_report(&test_report(|_| {}), &chain, &any_root()).unwrap();
    assert_eq!(v.chain.root, Root::Unknown);
    assert_eq!(v.chain.product, Product::Milan);
    assert!(v.tcb_checked && v.chip_id_checked);
}

#[test]
fn the_report_must_match_the_certificates_tcb_and_chip() {
    let chain = test_pki();
    // SNP SPL 7 where the certificate says 8.
    let r = test_report(|r| r.reported_tcb = U64::new(0x7307_0000_0000_0003));
    match verify_report(&r, &chain, &any_root()) {
        Err(X509Error::TcbMismatch {
            component,
            cert_spl,
            report_spl,
            ..
        }) => assert_eq!((component, cert_spl, report_spl), ("SNP", 8, 7)),
        other => panic!("expected TcbMismatch, got {other:?}"),
    }
    // Another chip.
    let r = test_report(|r| r.chip_id[63] ^= 0xFF);
    assert!(matches!(
        verify_report(&r, &chain, &any_root()),
        Err(X509Error::ChipIdMismatch { .. })
    ));
    // A masked chip ID cannot be compared; the signature still binds the report.
    let r = test_report(|r| r.chip_id = [0; 64]);
    let v = verify_report(&r, &chain, &any_root()).unwrap();
    assert!(!v.chip_id_checked && v.tcb_checked);
}

#[test]
fn the_report_must_name_the_certificates_key_kind() {
    let chain = test_pki();
    // SIGNING_KEY (key info bits 4:2) = 1: VLEK.
    let r = test_report(|r| r.key_info = U32::new(1 << 2));
    assert!(matches!(
        verify_report(&r, &chain, &any_root()),
        Err(X509Error::SigningKeyMismatch {
            report: LeafKind::Vlek,
            cert: LeafKind::Vcek
        })
    ));
    let r = test_report(|r| r.key_info = U32::new(7 << 2));
    assert!(matches!(
        verify_report(&r, &chain, &any_root()),
        Err(X509Error::UnsupportedReport(m)) if m.contains("not signed")
    ));
    let r = test_report(|r| r.signature_algo = U32::new(2));
    assert!(matches!(
        verify_report(&r, &chain, &any_root()),
        Err(X509Error::UnsupportedReport(_))
    ));
}

#[test]
fn the_test_pki_does_not_verify_a_real_report_nor_the_reverse() {
    // Real report, stand-in chain: the signature is by another key.
    assert!(matches!(
        verify_report(&milan_report(), &test_pki(), &any_root()),
        Err(X509Error::ReportSignature { .. })
    ));
    // Stand-in VCEK under AMD's real Milan ARK/ASK: same names, wrong signer.
    let leaf = test_pki().leaf;
    let chain = AmdChain::with_builtin_issuers(leaf).unwrap();
    assert!(matches!(
        chain.verify(&in_validity()),
        Err(X509Error::BadSignature { .. }) | Err(X509Error::NotYetValid { .. })
    ));
    let no_time = VerifyOptions {
        at: None,
        allow_unknown_root: false,
    };
    assert!(matches!(
        chain.verify(&no_time),
        Err(X509Error::BadSignature { .. })
    ));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Corrupted certificates and reports give errors, never panics, and never verify.
    #[test]
    fn corrupted_inputs_never_panic_nor_verify(
        edits in proptest::collection::vec((0usize..4096, 1u8..=255), 1..4),
        cut in 0usize..2048,
        target in 0u8..3,
    ) {
        let mut vcek = vector("vcek_milan.der");
        let mut ask = vector("cert_chain_milan.pem");
        let mut report = vector("report_milan.bin");
        let buf = match target {
            0 => &mut vcek,
            1 => &mut ask,
            _ => &mut report,
        };
        // Report edits stay in the signed bytes and R/S (0..0x330): the rest of the
        // signature structure is reserved and not covered by the signature.
        let span = if target == 2 { 0x330 } else { buf.len() };
        for (at, x) in &edits {
            buf[at % span] ^= x;
        }
        if cut % 3 == 0 {
            let n = buf.len();
            buf.truncate(cut % n);
        }
        let outcome = (|| -> Result<(), String> {
            let mut certs = AmdCert::parse(&ask).map_err(|e| e.to_string())?;
            certs.extend(AmdCert::parse(&vcek).map_err(|e| e.to_string())?);
            let chain = AmdChain::from_certs(certs).map_err(|e| e.to_string())?;
            let r = AttestationReport::read_from_bytes(&report).map_err(|_| "size".to_string())?;
            verify_report(&r, &chain, &in_validity()).map(drop).map_err(|e| e.to_string())
        })();
        // PEM text edits can land in ignored whitespace only if they keep it whitespace, and
        // XOR with a non-zero byte never does; every edit must make verification fail.
        proptest::prop_assert!(outcome.is_err());
    }
}

#[test]
fn kds_addresses_follow_amds_format() {
    // The real Milan report's chip and REPORTED_TCB (bl 3, tee 0, snp 8, ucode 0x73 = 115):
    // the address KDS serves `vcek_milan.der` under (AMD publication 57230, "VCEK" request).
    let r = milan_report();
    assert_eq!(
        Product::Milan.kds_vcek_url(&r.chip_id, r.reported_tcb()),
        format!(
            "https://kdsintf.amd.com/vcek/v1/Milan/{MILAN_HW_ID}?blSPL=03&teeSPL=00&snpSPL=08&ucodeSPL=115"
        )
    );
    // Turin: an 8-byte hardware ID and fmcSPL first; layout [0] FMC [1] BL [2] TEE [3] SNP [7] ucode.
    let mut chip = [0u8; 64];
    chip[..8].copy_from_slice(&hex::decode("1e550a8ee5cf9f4d").unwrap());
    chip[8] = 0xEE; // beyond the hardware ID: not part of the address
    let tcb = psp_driver::report::TcbVersion(0x0900_0000_0403_0201);
    assert_eq!(
        Product::Turin.kds_vcek_url(&chip, tcb),
        "https://kdsintf.amd.com/vcek/v1/Turin/1e550a8ee5cf9f4d?fmcSPL=01&blSPL=02&teeSPL=03&snpSPL=04&ucodeSPL=09"
    );
    assert_eq!(
        Product::Genoa.kds_cert_chain_url(),
        "https://kdsintf.amd.com/vcek/v1/Genoa/cert_chain"
    );
}

/// Builds a certificate table: entries, an all-zero terminator, then the data.
fn cert_table(entries: &[([u8; 16], Vec<u8>)]) -> Vec<u8> {
    let head = (entries.len() + 1) * psp_driver::owner::x509::TABLE_ENTRY_LEN;
    let mut table = Vec::new();
    let mut data = Vec::new();
    for (guid, bytes) in entries {
        table.extend_from_slice(guid);
        table.extend_from_slice(&u32::try_from(head + data.len()).unwrap().to_le_bytes());
        table.extend_from_slice(&u32::try_from(bytes.len()).unwrap().to_le_bytes());
        data.extend_from_slice(bytes);
    }
    table.extend_from_slice(&[0; 24]);
    table.extend_from_slice(&data);
    table
}

/// A GUID's RFC 4122 bytes from its text form.
fn guid(text: &str) -> [u8; 16] {
    hex::decode(text.replace('-', ""))
        .unwrap()
        .try_into()
        .unwrap()
}

#[test]
fn certificate_tables_carry_the_chain() {
    use psp_driver::owner::x509::{TableCert, parse_cert_table};
    // The GUIDs of the GHCB specification's certificate table.
    let ark = guid("c0b406a4-a803-4952-9743-3fb6014cd0ae");
    let ask = guid("4ab7b379-bbac-4fe4-a02f-05aef327c782");
    let vcek = guid("63da758d-e664-4564-adc5-f4b93be8accd");
    let vlek = guid("a8074bc2-a25a-483e-aae6-39c045a0b8a1");
    assert_eq!(TableCert::Ark.guid(), ark);
    assert_eq!(TableCert::Ask.guid(), ask);
    assert_eq!(TableCert::Vcek.guid(), vcek);
    assert_eq!(TableCert::Vlek.guid(), vlek);

    let other = [0x11; 16];
    let table = cert_table(&[
        (vcek, vector("vcek_milan.der")),
        (other, b"a provider's own entry".to_vec()),
        (ask, Product::Milan.builtin_ask().der().to_vec()),
        (ark, Product::Milan.builtin_ark().der().to_vec()),
    ]);
    let entries = parse_cert_table(&table).unwrap();
    assert_eq!(entries.len(), 4);
    assert_eq!(entries[0].kind, Some(TableCert::Vcek));
    assert_eq!(entries[1].kind, None);
    assert_eq!(entries[0].data, vector("vcek_milan.der"));
    let chain = AmdChain::from_cert_table(&table).unwrap();
    verify_report(&milan_report(), &chain, &in_validity()).unwrap();

    // Only the VCEK: the built-in issuers complete it.
    let table = cert_table(&[(vcek, vector("vcek_milan.der"))]);
    let chain = AmdChain::from_cert_table(&table).unwrap();
    verify_report(&milan_report(), &chain, &in_validity()).unwrap();

    // An entry pointing past the end, and a table without its terminator.
    let mut bad = table.clone();
    bad[20..24].copy_from_slice(&0xFFFF_u32.to_le_bytes());
    assert!(matches!(
        parse_cert_table(&bad),
        Err(X509Error::ChainShape(m)) if m.contains("outside")
    ));
    let mut unterminated = vcek.to_vec();
    unterminated.extend_from_slice(&0u32.to_le_bytes());
    unterminated.extend_from_slice(&24u32.to_le_bytes());
    assert!(matches!(
        parse_cert_table(&unterminated),
        Err(X509Error::ChainShape(m)) if m.contains("terminating")
    ));
    // An empty table parses to nothing; as a chain it is not one.
    assert_eq!(parse_cert_table(&[0; 24]).unwrap(), vec![]);
    assert!(AmdChain::from_cert_table(&[0; 24]).is_err());
}

#[test]
fn a_vlek_chain_verifies_reports_that_name_the_vlek() {
    let mut all = certs("test-pki/ark.pem");
    all.extend(certs("test-pki/asvk.pem"));
    all.extend(certs("test-pki/vlek.der"));
    let chain = AmdChain::from_certs(all).unwrap();
    assert_eq!(chain.ask.common_name().as_deref(), Some("SEV-VLEK-Milan"));
    assert_eq!(chain.leaf.csp_id().as_deref(), Some("example-csp"));
    assert_eq!(chain.leaf.hw_id(), None);
    let hex = String::from_utf8(vector("test-pki/vlek.scalar.hex")).unwrap();
    let vlek = SigningKey::from_slice(&hex::decode(hex.trim()).unwrap()).unwrap();
    let sign = |key_info: u32| {
        let mut r = AttestationReport::read_from_bytes(&[0u8; REPORT_LEN][..]).unwrap();
        r.version = U32::new(3);
        r.signature_algo = U32::new(1);
        r.key_info = U32::new(key_info);
        r.reported_tcb = U64::new(0x7308_0000_0000_0003);
        r.chip_id = [0xCC; 64];
        r.signature = sign_message(&vlek, algo::ECDSA_SHA384, r.signed_bytes()).unwrap();
        r
    };
    // SIGNING_KEY 1 (VLEK): verified; a VLEK has no hardware ID to compare.
    let v = verify_report(&sign(1 << 2), &chain, &any_root()).unwrap();
    assert_eq!(v.chain.leaf_kind, LeafKind::Vlek);
    assert!(v.tcb_checked && !v.chip_id_checked);
    // The same key, but the report says VCEK.
    assert!(matches!(
        verify_report(&sign(0), &chain, &any_root()),
        Err(X509Error::SigningKeyMismatch {
            report: LeafKind::Vcek,
            cert: LeafKind::Vlek
        })
    ));
    // A lone VLEK has no built-in issuer (AMD's ASVKs are not built in).
    assert!(matches!(
        AmdChain::from_certs(certs("test-pki/vlek.der")),
        Err(X509Error::NoBuiltinIssuer { .. })
    ));
}

#[test]
fn revocation_lists_signed_by_the_ark_revoke_the_ask() {
    use psp_driver::owner::x509::AmdCrl;
    let chain = test_pki();
    let empty = AmdCrl::parse(&vector("test-pki/crl_empty.pem")).unwrap();
    let revoking = AmdCrl::parse(&vector("test-pki/crl_ask_revoked.pem")).unwrap();
    assert_eq!(empty.issuer_common_name().as_deref(), Some("ARK-Milan"));
    assert!(!empty.lists(&chain.ask));
    assert!(revoking.lists(&chain.ask));
    assert!(!revoking.lists(&chain.leaf));
    chain.check_revocation(&empty, None).unwrap();
    match chain.check_revocation(&revoking, None) {
        Err(X509Error::Revoked { cert, by }) => {
            assert_eq!((cert.as_str(), by.as_str()), ("SEV-Milan", "ARK-Milan"));
        }
        other => panic!("expected Revoked, got {other:?}"),
    }
    // The stand-in list is not signed by AMD's Milan ARK, whose name it carries.
    assert!(matches!(
        milan_chain().check_revocation(&empty, None),
        Err(X509Error::BadSignature { .. })
    ));
    // Not yet issued at a time before its thisUpdate.
    assert!(matches!(
        chain.check_revocation(&empty, Some(unix_time(1_577_836_800))),
        Err(X509Error::NotYetValid { .. })
    ));
    // DER works like PEM; garbage is a decode error; a certificate is not a list.
    let pem = String::from_utf8(vector("test-pki/crl_empty.pem")).unwrap();
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64_decode(&b64);
    assert!(!AmdCrl::parse(&der).unwrap().lists(&chain.ask));
    assert!(matches!(
        AmdCrl::parse(b"junk"),
        Err(X509Error::Decode { .. })
    ));
    assert!(AmdCrl::parse(&vector("test-pki/ark.pem")).is_err());
}

/// Standard base64 (test-only, for the DER form of a PEM file).
fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

#[test]
fn cpuid_family_and_model_name_the_product() {
    // CPUID signatures of QEMU's EPYC-Milan, EPYC-Genoa and EPYC-Turin models (firmware
    // facts, vCPU types): 0xA00F11, 0xA10F10, 0xB00F00. Family = base 0xF + extended;
    // model = extended << 4 | base.
    let split = |sig: u32| {
        let family = ((sig >> 8) & 0xF) + ((sig >> 20) & 0xFF);
        let model = ((sig >> 16) & 0xF) << 4 | ((sig >> 4) & 0xF);
        (family as u8, model as u8)
    };
    for (sig, product) in [
        (0xA00F11, Product::Milan),
        (0xA10F10, Product::Genoa),
        (0xB00F00, Product::Turin),
    ] {
        let (f, m) = split(sig);
        assert_eq!(Product::from_cpuid(f, m), Some(product), "{sig:#x}");
    }
    // An Intel family (6) and an older AMD one (Rome, 0x830F10: family 0x17) are none.
    assert_eq!(Product::from_cpuid(6, 143), None);
    let (f, m) = split(0x830F10);
    assert_eq!(Product::from_cpuid(f, m), None);
}
