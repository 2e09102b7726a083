//! The `Platform` trait on the software firmware: the `/dev/sev` semantics of facts
//! linux-uapi.md §7.2 (automatic INIT / SHUTDOWN, length queries, FACTORY_RESET refused while
//! WORKING) observed through the trait, certificates checked with the owner-side helpers.

mod sim_common;

use std::sync::Arc;

use nix::errno::Errno;
use psp_driver::owner::cert::{SEV_CERT_LEN, SevCert, algo, usage};
use psp_driver::sev_dev::{SevUserDataSnpConfig, SevUserDataSnpWrappedVlekHashstick};
use psp_driver::sim::platform::{SCRATCH_PA, SimPlatformError};
use psp_driver::sim::{RmpState, SimConfig, SimFirmware, mem::PhysMem};
use psp_driver::{Platform, Psp, SevDataInit, SevDataLaunchStart, SevRetCode, SnpInit};
use sim_common::*;
use zerocopy::FromBytes;

/// `sev_user_data_status.state` values (facts §7.4).
const UNINIT: u8 = 0;
const INIT: u8 = 1;
const WORKING: u8 = 2;

fn psp() -> Psp<SimFirmware> {
    Psp::new(fw())
}

fn cert(bytes: &[u8]) -> SevCert {
    SevCert::read_from_bytes(bytes).expect("a 0x824-byte SEV certificate")
}

/// Splits PDH_CERT_EXPORT's chain blob into PEK, OCA and CEK (facts: three 0x824-byte certs).
fn chain(blob: &[u8]) -> (SevCert, SevCert, SevCert) {
    assert_eq!(blob.len(), 3 * 0x824);
    (
        cert(&blob[..0x824]),
        cert(&blob[0x824..2 * 0x824]),
        cert(&blob[2 * 0x824..]),
    )
}

/// INIT through the mailbox, outside the trait (what KVM_SEV_INIT does).
fn init(psp: &Psp<SimFirmware>) {
    psp.issue(&mut SevDataInit::default()).unwrap();
}

/// A legacy guest without a session: the platform becomes WORKING.
fn launch_guest(psp: &Psp<SimFirmware>) {
    psp.issue(&mut SevDataLaunchStart::default()).unwrap();
}

/// Firmware API major, minor and build.
type Version = (u8, u8, u8);

/// Management code written once against the trait: the owner's view of the platform
/// (firmware version and the PDH, checked against the PEK of the chain).
fn owner_view<P: Platform>(platform: &P) -> Result<(Version, SevCert), Box<dyn std::error::Error>> {
    let status = platform.platform_status()?;
    let export = platform.pdh_cert_export()?;
    let pdh = SevCert::read_from_bytes(&export.pdh_cert).map_err(|_| "PDH size")?;
    let pek = SevCert::read_from_bytes(export.cert_chain.get(..SEV_CERT_LEN).ok_or("chain")?)
        .map_err(|_| "PEK size")?;
    pdh.verify_signed_by(&pek.public_key()?, usage::PEK)?;
    Ok(((status.api_major, status.api_minor, status.build), pdh))
}

#[test]
fn status_transitions_through_the_trait() {
    let psp = psp();
    let s = psp.platform_status().unwrap();
    assert_eq!(s.state, UNINIT);
    assert_eq!({ s.guest_count }, 0);
    let cfg = SimConfig::default();
    assert_eq!(
        (s.api_major, s.api_minor, s.build),
        (cfg.api_major, cfg.api_minor, cfg.build)
    );

    init(&psp);
    let s = psp.platform_status().unwrap();
    assert_eq!(s.state, INIT);
    assert_eq!({ s.guest_count }, 0);

    launch_guest(&psp);
    launch_guest(&psp);
    let s = psp.platform_status().unwrap();
    assert_eq!(s.state, WORKING);
    assert_eq!({ s.guest_count }, 2);
}

#[test]
fn pdh_export_verifies_under_the_pek_and_leaves_uninit() {
    let psp = psp();
    let export = psp.pdh_cert_export().unwrap();
    assert_eq!(export.pdh_cert.len(), 0x824);
    let pdh = cert(&export.pdh_cert);
    let (pek, oca, cek) = chain(&export.cert_chain);
    assert_eq!(pdh.pub_key_usage.get(), usage::PDH);
    pdh.verify_signed_by(&pek.public_key().unwrap(), usage::PEK)
        .unwrap();
    pek.verify_signed_by(&cek.public_key().unwrap(), usage::CEK)
        .unwrap();
    pek.verify_signed_by(&oca.public_key().unwrap(), usage::OCA)
        .unwrap();
    // The PDH is not signed by the CEK: the check can fail.
    assert!(
        pdh.verify_signed_by(&cek.public_key().unwrap(), usage::CEK)
            .is_err()
    );
    // Auto INIT, then SHUTDOWN again.
    assert_eq!(psp.platform_status().unwrap().state, UNINIT);
    // No scratch bytes left behind.
    let mem = psp.transport().mem();
    assert!(
        mem.read_vec(SCRATCH_PA, 0x8000)
            .unwrap()
            .iter()
            .all(|&b| b == 0)
    );

    // In INIT the platform stays INIT.
    init(&psp);
    let again = psp.pdh_cert_export().unwrap();
    assert_eq!(again, export);
    assert_eq!(psp.platform_status().unwrap().state, INIT);
}

#[test]
fn pek_gen_and_pdh_gen_change_the_exported_certificates() {
    let psp = psp();
    let first = psp.pdh_cert_export().unwrap();

    psp.pdh_gen().unwrap();
    assert_eq!(psp.platform_status().unwrap().state, UNINIT);
    let after_pdh = psp.pdh_cert_export().unwrap();
    assert_ne!(after_pdh.pdh_cert, first.pdh_cert);
    assert_eq!(after_pdh.cert_chain, first.cert_chain);
    let (pek, _, _) = chain(&after_pdh.cert_chain);
    cert(&after_pdh.pdh_cert)
        .verify_signed_by(&pek.public_key().unwrap(), usage::PEK)
        .unwrap();

    psp.pek_gen().unwrap();
    assert_eq!(psp.platform_status().unwrap().state, UNINIT);
    let after_pek = psp.pdh_cert_export().unwrap();
    assert_ne!(after_pek.pdh_cert, after_pdh.pdh_cert);
    let (old_pek, _, old_cek) = chain(&after_pdh.cert_chain);
    let (new_pek, new_oca, new_cek) = chain(&after_pek.cert_chain);
    assert_ne!(new_pek.pub_key, old_pek.pub_key);
    assert_eq!(new_cek, old_cek); // the CEK is the chip's, it never changes
    new_pek
        .verify_signed_by(&new_cek.public_key().unwrap(), usage::CEK)
        .unwrap();
    new_pek
        .verify_signed_by(&new_oca.public_key().unwrap(), usage::OCA)
        .unwrap();
    let new_pdh = cert(&after_pek.pdh_cert);
    new_pdh
        .verify_signed_by(&new_pek.public_key().unwrap(), usage::PEK)
        .unwrap();
    assert!(
        new_pdh
            .verify_signed_by(&old_pek.public_key().unwrap(), usage::PEK)
            .is_err()
    );
}

#[test]
fn pek_csr_has_the_certificate_length_and_the_current_pek() {
    let psp = psp();
    let csr = psp.pek_csr().unwrap();
    // A SEV certificate is 0x824 bytes (AMD SEV API, Appendix C.1).
    assert_eq!(csr.len(), 0x824);
    let csr = cert(&csr);
    assert_eq!(csr.pub_key_usage.get(), usage::PEK);
    assert_eq!(csr.sig1.usage.get(), usage::INVALID); // unsigned
    let (pek, _, _) = chain(&psp.pdh_cert_export().unwrap().cert_chain);
    assert_eq!(csr.pub_key, pek.pub_key);
    assert_eq!(psp.platform_status().unwrap().state, UNINIT);

    // The firmware wants INIT, not WORKING.
    init(&psp);
    launch_guest(&psp);
    let err = psp.pek_csr().unwrap_err();
    assert_eq!(err.status(), SevRetCode::InvalidPlatformState);
    assert_eq!(err.errno(), Errno::EIO);
    assert!(err.to_string().contains("PEK_CSR"), "{err}");
}

#[test]
fn pek_cert_import_installs_the_owner_chain() {
    let psp = psp();
    let (oca_key, oca) = self_signed_oca();
    let mut pek = cert(&psp.pek_csr().unwrap());
    pek.sign(0, &oca_key, usage::OCA, algo::ECDSA_SHA256)
        .unwrap();
    use zerocopy::IntoBytes;
    psp.pek_cert_import(pek.as_bytes(), oca.as_bytes()).unwrap();
    assert_eq!(psp.platform_status().unwrap().state, UNINIT);

    let (new_pek, new_oca, cek) = chain(&psp.pdh_cert_export().unwrap().cert_chain);
    assert_eq!(new_oca, oca);
    new_pek
        .verify_signed_by(oca_key.verifying_key(), usage::OCA)
        .unwrap();
    new_pek
        .verify_signed_by(&cek.public_key().unwrap(), usage::CEK)
        .unwrap();
    init(&psp);
    assert_eq!({ psp.platform_status().unwrap().flags } & 1, 1); // owner: external

    // A PEK signed by another key is refused with INVALID_CERTIFICATE.
    let other = p384::ecdsa::SigningKey::from_slice(&[0x24; 48]).unwrap();
    let mut bad = cert(&psp.pek_csr().unwrap());
    bad.sign(0, &other, usage::OCA, algo::ECDSA_SHA256).unwrap();
    let err = psp
        .pek_cert_import(bad.as_bytes(), oca.as_bytes())
        .unwrap_err();
    assert_eq!(err.status(), SevRetCode::InvalidCertificate);

    // Blobs over 16 KiB never reach the firmware.
    let err = psp
        .pek_cert_import(&vec![0; 0x4001], oca.as_bytes())
        .unwrap_err();
    assert!(matches!(
        err,
        SimPlatformError::TooLarge { len: 0x4001, .. }
    ));
    assert_eq!(err.errno(), Errno::EINVAL);
}

#[test]
fn get_id_returns_the_chip_id_of_the_attestation_report() {
    let fw = snp_started(0x30000);
    let finish = &mut snp_launch_finish(GCTX, 0, 0, 0, [0; 32]);
    ok(&fw, psp_driver::SevCmd::SnpLaunchFinish, finish);
    let report = fw.guest_report(GCTX, &[0; 64], 0).unwrap();
    let snp = Psp::new(fw);
    let id = snp.get_id().unwrap();
    // GET_ID: two 64-byte socket ids (facts §7.4, sev_user_data_get_id).
    assert_eq!(id.len(), 128);
    assert_eq!(id[..64], report.chip_id[..]);
    assert_ne!(id[..64], [0u8; 64]);

    // Same identity, any platform state (here: UNINIT, no SNP).
    let fresh = psp();
    assert_eq!(fresh.get_id().unwrap(), id);
    assert_eq!(fresh.platform_status().unwrap().state, UNINIT);
}

#[test]
fn factory_reset_is_refused_while_working() {
    let psp = psp();
    init(&psp);
    launch_guest(&psp);
    let err = psp.factory_reset().unwrap_err();
    assert!(
        matches!(err, SimPlatformError::Busy { guest_count: 1 }),
        "{err:?}"
    );
    assert_eq!(err.errno(), Errno::EBUSY);
    assert_eq!(err.status(), SevRetCode::NoFwCall);
    assert!(err.to_string().contains("WORKING"), "{err}");
    // Nothing happened to the platform.
    let s = psp.platform_status().unwrap();
    assert_eq!((s.state, { s.guest_count }), (WORKING, 1));
}

#[test]
fn factory_reset_shuts_an_init_platform_down_then_reports_the_firmware_status() {
    let psp = psp();
    init(&psp);
    let err = psp.factory_reset().unwrap_err();
    // The software firmware has no FACTORY_RESET.
    assert!(matches!(err, SimPlatformError::Command(_)), "{err:?}");
    assert_eq!(err.status(), SevRetCode::InvalidCommand);
    assert!(err.to_string().contains("FACTORY_RESET"), "{err}");
    assert_eq!(psp.platform_status().unwrap().state, UNINIT);
}

#[test]
fn snp_platform_status_in_both_snp_states() {
    let psp = psp();
    let s = psp.snp_platform_status().unwrap();
    assert_eq!(s.state, 0);
    let cfg = SimConfig::default();
    assert_eq!((s.api_major, s.api_minor), (cfg.api_major, cfg.api_minor));
    assert_eq!({ s.current_tcb_version }, cfg.tcb.0);

    psp.issue(&mut SnpInit).unwrap();
    // SNP initialized: the status page must be firmware-owned; it is handed back afterwards.
    let s = psp.snp_platform_status().unwrap();
    assert_eq!(s.state, 1);
    assert_eq!({ s.guest_count }, 0);
    let page = SCRATCH_PA + 0x8000;
    assert_eq!(
        psp.transport().rmp_entry(page).state(),
        RmpState::Hypervisor
    );
    assert_eq!(psp.snp_platform_status().unwrap().state, 1);
}

#[test]
fn unimplemented_snp_commands_surface_the_firmware_status() {
    let psp = psp();
    let hashstick = SevUserDataSnpWrappedVlekHashstick { data: [0x5a; 432] };
    let config = SevUserDataSnpConfig::default();

    // SNP_SET_CONFIG and SNP_VLEK_LOAD need SNP initialized (the ioctl's ENODEV).
    let err = psp.snp_set_config(&config).unwrap_err();
    assert!(matches!(err, SimPlatformError::SnpNotInitialized { .. }));
    assert_eq!(err.errno(), Errno::ENODEV);
    assert!(err.to_string().contains("SNP_INIT"), "{err}");
    let err = psp.snp_vlek_load(&hashstick).unwrap_err();
    assert_eq!(err.errno(), Errno::ENODEV);

    psp.issue(&mut SnpInit).unwrap();
    for err in [
        psp.snp_commit().unwrap_err(),
        psp.snp_set_config(&config).unwrap_err(),
        psp.snp_vlek_load(&hashstick).unwrap_err(),
    ] {
        assert!(matches!(err, SimPlatformError::Command(_)), "{err:?}");
        assert_eq!(err.status(), SevRetCode::InvalidCommand);
        assert_eq!(err.errno(), Errno::EIO);
    }
    // The hashstick did not stay in the scratch window.
    let mem = psp.transport().mem();
    assert!(
        mem.read_vec(SCRATCH_PA, 432)
            .unwrap()
            .iter()
            .all(|&b| b == 0)
    );
}

#[test]
fn generic_platform_code_runs_on_the_software_firmware() {
    let cfg = SimConfig::default();
    let expected = (cfg.api_major, cfg.api_minor, cfg.build);

    let owned = psp();
    let (version, pdh) = owner_view(&owned).unwrap();
    assert_eq!(version, expected);
    assert_eq!(pdh, owned.transport().certs().pdh);

    // The shape a simulated host holds: a shared firmware behind an `Arc`.
    let shared = Arc::new(SimFirmware::new(cfg, Arc::new(PhysMem::new())));
    let psp = Arc::new(Psp::new(shared.clone()));
    let (version, pdh) = owner_view(&*psp).unwrap();
    assert_eq!(version, expected);
    assert_eq!(pdh, shared.certs().pdh);

    // And the trait object-free generic path sees the failures with the implementation's type.
    fn pek_csr_len<P: Platform>(p: &P) -> Result<usize, P::Error> {
        p.pek_csr().map(|c| c.len())
    }
    assert_eq!(pek_csr_len(&*psp).unwrap(), 0x824);
}
