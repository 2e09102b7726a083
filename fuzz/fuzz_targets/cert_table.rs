//! The extended-report certificate table (GUID, offset, length entries) and the AMD chain
//! assembled from it. Any bytes: entries or a typed error; a chain that verifies must
//! have come from a well-formed table.
#![no_main]

use libfuzzer_sys::fuzz_target;
use psp_driver::owner::x509::{AmdChain, VerifyOptions, looks_like_cert_table, parse_cert_table};

fuzz_target!(|data: &[u8]| {
    let looks = looks_like_cert_table(data);
    let parsed = parse_cert_table(data);
    if let Ok(entries) = &parsed
        && entries.first().is_some_and(|e| e.kind.is_some())
    {
        assert!(
            looks,
            "a table whose first entry is AMD's must look like one"
        );
    }
    if let Ok(chain) = AmdChain::from_cert_table(data) {
        let _ = chain.verify(&VerifyOptions {
            at: None,
            allow_unknown_root: true,
        });
    }
});
