//! The SNP attestation report: decoded and verified against a fixed (software) ARK → ASK →
//! VCEK chain and against AMD's built-in roots. Random bytes must be refused with an
//! error, never a panic, and never verify.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use psp_driver::owner::snp::{SnpCertChain, verify_report};
use psp_driver::report::AttestationReport;
use psp_driver::sim::{PhysMem, SimConfig, SimFirmware};
use zerocopy::FromBytes;

fn chain() -> &'static SnpCertChain {
    static CHAIN: OnceLock<SnpCertChain> = OnceLock::new();
    CHAIN.get_or_init(|| {
        SimFirmware::new(SimConfig::default(), Arc::new(PhysMem::new()))
            .certs()
            .snp
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok((report, _)) = AttestationReport::read_from_prefix(data) else {
        return;
    };
    let _ = (
        report.signing_key(),
        report.author_key_en(),
        report.current_tcb(),
        report.reported_tcb(),
        report.signed_bytes().len(),
    );
    let c = chain();
    let ark = c.ark.public_key().ok();
    assert!(
        verify_report(&report, c, ark.as_ref()).is_err(),
        "random bytes verified as a report signed by the VCEK"
    );
});
