//! The TDX TDREPORT (`TDREPORT_STRUCT`) and the TD quote (v4): decoded, their derived
//! hashes computed, a quote that parses re-encodes to bytes that parse to the same quote.
#![no_main]

use kvm_coco::sim::tdx::report::{TdQuote, TdQuoteBody, TdReport};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = TdReport::from_slice(data) {
        for i in 0..5 {
            let _ = r.rtmr(i);
        }
        let _ = (
            r.compute_tee_tcb_info_hash(),
            r.compute_tee_info_hash(),
            r.mac_input().len(),
        );
        let _ = TdQuoteBody::from_report(&r);
    }
    let _ = TdQuoteBody::from_slice(data);
    if let Ok(q) = TdQuote::parse(data) {
        let bytes = q.to_bytes();
        let again = TdQuote::parse(&bytes).expect("a re-encoded quote parses");
        assert_eq!(again.to_bytes(), bytes);
        let _ = q.signed_bytes();
    }
});
