//! What `/dev/sev` hands back: PLATFORM_STATUS and SNP_PLATFORM_STATUS structs, and the
//! PDH_CERT_EXPORT blobs (the PDH certificate, then the PEK ‖ OCA ‖ CEK chain) decoded
//! and checked against each other as a guest owner does. Never a panic.
#![no_main]

use kvm_coco_uapi::{SevUserDataSnpStatus, SevUserDataStatus};
use libfuzzer_sys::fuzz_target;
use psp_driver::owner::cert::SevCert;
use zerocopy::FromBytes;

fuzz_target!(|data: &[u8]| {
    if let Ok((s, _)) = SevUserDataStatus::read_from_prefix(data) {
        let _ = s.platform_state();
    }
    if let Ok((s, _)) = SevUserDataSnpStatus::read_from_prefix(data) {
        let _ = s.is_rmp_initialized();
    }
    let certs: Vec<SevCert> = data
        .chunks_exact(core::mem::size_of::<SevCert>())
        .filter_map(|c| SevCert::read_from_bytes(c).ok())
        .collect();
    for c in &certs {
        let _ = c.public_key();
        let _ = c.body().len();
    }
    // PDH signed by PEK, PEK by OCA and CEK, as the export's order implies.
    for w in certs.windows(2) {
        if let Ok(issuer) = w[1].public_key() {
            let _ = w[0].verify_signed_by(&issuer, w[1].pub_key_usage.get());
        }
    }
});
