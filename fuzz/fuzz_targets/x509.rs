//! AMD X.509 certificates (DER, PEM, bundles) and CRLs: every accessor on what parses,
//! and verification against AMD's built-in roots. Never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use psp_driver::owner::x509::{AmdCert, AmdCrl, Product};

fn poke(c: &AmdCert, ark: &AmdCert) {
    let _ = (
        c.common_name(),
        c.issuer_common_name(),
        c.label(),
        c.is_self_issued(),
        c.validity(),
        c.product_name(),
        c.hw_id().map(<[u8]>::len),
        c.csp_id(),
        c.leaf_kind(),
    );
    for p in [Product::Milan, Product::Genoa, Product::Turin] {
        let _ = c.tcb(p);
    }
    let _ = c.ecdsa_key();
    let _ = c.rsa_key();
    let _ = c.verify_signed_by(ark);
    let _ = c.check_validity(std::time::SystemTime::UNIX_EPOCH);
}

fuzz_target!(|data: &[u8]| {
    let ark = Product::Milan.builtin_ark();
    if let Ok(c) = AmdCert::from_der(data) {
        poke(&c, &ark);
    }
    if let Ok(all) = AmdCert::parse(data) {
        for c in &all {
            poke(c, &ark);
        }
    }
    if let Ok(s) = std::str::from_utf8(data)
        && let Ok(c) = AmdCert::from_pem(s)
    {
        poke(&c, &ark);
    }
    if let Ok(crl) = AmdCrl::parse(data) {
        let _ = (crl.issuer_common_name(), crl.updates(), crl.lists(&ark));
        let _ = crl.verify_signed_by(&ark);
    }
});
