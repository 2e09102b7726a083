//! The `snp/vcek` tier: checks a VCEK (the certificate a VMM serves to its guests, or one
//! fetched from AMD's KDS) against this platform.
//!
//! The chain must verify under AMD's built-in ARK and ASK of the VCEK's product, the VCEK
//! must be valid now, its hardware ID must be this chip's ID (GET_ID2) and its TCB must be
//! the platform's reported TCB (SNP_PLATFORM_STATUS): exactly the VCEK that signs the
//! reports of guests on this host. Without `--vcek` the tier is "not run" and names the KDS
//! address of the right certificate.

use std::path::Path;
use std::time::SystemTime;

use psp_driver::owner::x509::{AmdCert, AmdChain, Product, VerifyOptions};
use psp_driver::report::TcbVersion;
use psp_driver::{DEV_SEV_PATH, DevSev, Platform};

use super::{Cpu, Outcome, chain};

/// Checks `vcek` (PEM or DER) against a platform with `chip_id` and `reported_tcb`, at `at`.
/// Returns what was established, or what does not hold.
pub(super) fn check_vcek(
    vcek: &[u8],
    chip_id: &[u8],
    reported_tcb: u64,
    at: SystemTime,
) -> Result<String, String> {
    let certs = AmdCert::parse(vcek).map_err(|e| format!("VCEK: {}", chain(&e)))?;
    let amd = AmdChain::from_certs(certs).map_err(|e| format!("VCEK: {e}"))?;
    let v = amd
        .verify(&VerifyOptions {
            at: Some(at),
            allow_unknown_root: false,
        })
        .map_err(|e| format!("VCEK chain: {}", chain(&e)))?;
    let platform_tcb = TcbVersion(reported_tcb);
    let url = v.product.kds_vcek_url(chip_id, platform_tcb);
    match v.check_platform(chip_id, platform_tcb) {
        Ok((true, true)) => {}
        Ok(_) => {
            return Err(format!(
                "the VCEK names no hardware ID or no TCB to compare with this platform; this chip's VCEK: {url}"
            ));
        }
        Err(e) => return Err(format!("{e}; this chip's current VCEK: {url}")),
    }
    Ok(format!(
        "VCEK verifies under AMD ARK-{p} -> SEV-{p}; it is this chip's, for the reported TCB {reported_tcb:#018x}",
        p = v.product
    ))
}

/// Runs the tier on this host.
pub(super) fn run(vcek: Option<&Path>, cpu: &Cpu) -> Outcome {
    let dev = match DevSev::open_read_only(DEV_SEV_PATH) {
        Ok(d) => d,
        Err(e) => return Outcome::Skipped(chain(&e)),
    };
    let (chip_id, status) = match (dev.get_id(), dev.snp_platform_status()) {
        (Ok(id), Ok(s)) => (id, s),
        (Err(e), _) => return Outcome::Failed(format!("GET_ID2: {}", chain(&e))),
        (_, Err(e)) => return Outcome::Failed(format!("SNP_PLATFORM_STATUS: {}", chain(&e))),
    };
    let reported_tcb = status.reported_tcb_version;
    let Some(path) = vcek else {
        let product = cpu
            .family_model
            .and_then(|(family, model)| Product::from_cpuid(family, model));
        let hint = match product {
            Some(p) => format!(
                "this chip's VCEK: {}",
                p.kds_vcek_url(&chip_id, TcbVersion(reported_tcb))
            ),
            None => "the CPU is not a known SNP product (Milan, Genoa, Turin)".to_owned(),
        };
        return Outcome::NotRun(format!(
            "no VCEK given (--vcek FILE or $KVM_COCO_VCEK); {hint}"
        ));
    };
    match std::fs::read(path) {
        Ok(bytes) => check_vcek(&bytes, &chip_id, reported_tcb, SystemTime::now()).into(),
        Err(e) => Outcome::Failed(format!("cannot read {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use psp_driver::owner::x509::unix_time;

    /// The real Milan VCEK and a report it signed (psp-driver/tests/vectors/amd, verified
    /// independently with OpenSSL): the report's CHIP_ID and REPORTED_TCB stand in for
    /// GET_ID2 and SNP_PLATFORM_STATUS of that chip.
    fn milan() -> (Vec<u8>, Vec<u8>, u64) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../psp-driver/tests/vectors/amd");
        let vcek = std::fs::read(dir.join("vcek_milan.der")).unwrap();
        let report = std::fs::read(dir.join("report_milan.bin")).unwrap();
        let chip_id = report[0x1A0..0x1E0].to_vec();
        let tcb = u64::from_le_bytes(report[0x180..0x188].try_into().unwrap());
        (vcek, chip_id, tcb)
    }

    const IN_VALIDITY: u64 = 1_735_689_600; // 2025-01-01

    #[test]
    fn the_real_vcek_matches_its_chip_and_tcb() {
        let (vcek, chip, tcb) = milan();
        let ok = check_vcek(&vcek, &chip, tcb, unix_time(IN_VALIDITY)).unwrap();
        assert!(ok.contains("AMD ARK-Milan -> SEV-Milan"), "{ok}");
    }

    #[test]
    fn another_chip_or_tcb_is_a_failure_naming_the_right_vcek() {
        let (vcek, mut chip, tcb) = milan();
        // A newer SNP SPL (byte 6 in the Milan layout).
        let newer = tcb + (1 << 48);
        let e = check_vcek(&vcek, &chip, newer, unix_time(IN_VALIDITY)).unwrap_err();
        assert!(e.contains("SNP SPL 8, the reported TCB has 9"), "{e}");
        assert!(e.ends_with("snpSPL=09&ucodeSPL=115"), "{e}");
        chip[0] ^= 1;
        let e = check_vcek(&vcek, &chip, tcb, unix_time(IN_VALIDITY)).unwrap_err();
        assert!(e.contains("'SEV-VCEK' is for chip d49554ec"), "{e}");
        // Expired (after 2030-04-03).
        let (vcek, chip, tcb) = milan();
        let e = check_vcek(&vcek, &chip, tcb, unix_time(1_924_992_000)).unwrap_err();
        assert!(e.contains("expired"), "{e}");
        // Not a certificate.
        let e = check_vcek(b"junk", &chip, tcb, unix_time(IN_VALIDITY)).unwrap_err();
        assert!(e.starts_with("VCEK: "), "{e}");
    }
}
