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

use super::{Outcome, chain};

/// The product of an AMD CPU from the first processor of `/proc/cpuinfo` text.
pub(super) fn cpu_product(cpuinfo: &str) -> Option<Product> {
    let field = |name: &str| {
        cpuinfo
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim() == name)
            .and_then(|(_, v)| v.trim().parse::<u8>().ok())
    };
    Product::from_cpuid(field("cpu family")?, field("model")?)
}

/// Checks `vcek` (PEM or DER) against a platform with `chip_id` and `reported_tcb`, at `at`.
/// Returns what was established, or what does not hold.
pub(super) fn check_vcek(
    vcek: &[u8],
    chip_id: &[u8],
    reported_tcb: u64,
    at: SystemTime,
) -> Result<String, String> {
    let mut certs = AmdCert::parse(vcek).map_err(|e| format!("VCEK: {}", chain(&e)))?;
    let [leaf] = certs.as_mut_slice() else {
        return Err(format!(
            "VCEK: expected one certificate, found {}",
            certs.len()
        ));
    };
    let amd = AmdChain::with_builtin_issuers(leaf.clone()).map_err(|e| format!("VCEK: {e}"))?;
    let v = amd
        .verify(&VerifyOptions {
            at: Some(at),
            allow_unknown_root: false,
        })
        .map_err(|e| format!("VCEK chain: {}", chain(&e)))?;
    let platform_tcb = TcbVersion(reported_tcb);
    let url = v.product.kds_vcek_url(chip_id, platform_tcb);
    let hw_id = v.hw_id.as_deref().unwrap_or_default();
    if hw_id.is_empty() || chip_id.get(..hw_id.len()) != Some(hw_id) {
        return Err(format!(
            "the VCEK is for another chip (hardware ID {}); this chip's VCEK: {url}",
            hex::encode(hw_id)
        ));
    }
    match v.tcb {
        Some(t) if t == platform_tcb => {}
        Some(t) => {
            return Err(format!(
                "the VCEK is for TCB {:#018x}, the platform reports {reported_tcb:#018x}; the current VCEK: {url}",
                t.0
            ));
        }
        None => return Err("the VCEK carries no TCB extensions".to_owned()),
    }
    Ok(format!(
        "VCEK verifies under AMD ARK-{p} -> SEV-{p}; it is this chip's, for the reported TCB {reported_tcb:#018x}",
        p = v.product
    ))
}

/// Runs the tier on this host.
pub(super) fn run(vcek: Option<&Path>) -> Outcome {
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
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let hint = match cpu_product(&cpuinfo) {
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
        assert!(e.contains("the platform reports 0x7309000000000003"), "{e}");
        assert!(e.ends_with("snpSPL=09&ucodeSPL=115"), "{e}");
        chip[0] ^= 1;
        let e = check_vcek(&vcek, &chip, tcb, unix_time(IN_VALIDITY)).unwrap_err();
        assert!(e.contains("another chip"), "{e}");
        // Expired (after 2030-04-03).
        let (vcek, chip, tcb) = milan();
        let e = check_vcek(&vcek, &chip, tcb, unix_time(1_924_992_000)).unwrap_err();
        assert!(e.contains("expired"), "{e}");
        // Not a certificate.
        let e = check_vcek(b"junk", &chip, tcb, unix_time(IN_VALIDITY)).unwrap_err();
        assert!(e.starts_with("VCEK: "), "{e}");
    }

    #[test]
    fn cpu_product_reads_family_and_model() {
        let milan = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\nmodel name\t: AMD EPYC 7763\n";
        assert_eq!(cpu_product(milan), Some(Product::Milan));
        let genoa = "cpu family\t: 25\nmodel\t\t: 17\n";
        assert_eq!(cpu_product(genoa), Some(Product::Genoa));
        let turin = "cpu family\t: 26\nmodel\t\t: 2\n";
        assert_eq!(cpu_product(turin), Some(Product::Turin));
        let intel = "cpu family\t: 6\nmodel\t\t: 143\n";
        assert_eq!(cpu_product(intel), None);
    }
}
