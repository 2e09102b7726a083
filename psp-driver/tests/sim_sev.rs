//! Legacy SEV / SEV-ES through the software firmware: sessions, launch digests
//! against sev-snp-measure, LAUNCH_SECRET, the ASID lifecycle and misuse statuses.

mod sim_common;

use psp_driver::owner::cert::{SEV_CERT_LEN, SevCert, algo, usage, verify_message};
use psp_driver::owner::session::{FwVersion, OwnerSession, build_secret, verify_launch_measure};
use psp_driver::sim::{AsidState, SimConfig, SimFirmware};
use psp_driver::{SevCmd, SevRetCode as S};
use rand_core::SeedableRng;
use sha2::{Digest, Sha256};
use sim_common::*;
use zerocopy::{FromBytes, IntoBytes};

const CERT_PA: u64 = 0x100_0000;
const SESS_PA: u64 = 0x100_1000;
const IMG_PA: u64 = 0x200_0000;
const MEAS_PA: u64 = 0x100_2000;
const SEV_ASID: u32 = 10;

fn hx32(s: &str) -> [u8; 32] {
    hex::decode(s).unwrap().try_into().unwrap()
}

fn init(fw: &SimFirmware, es: bool) {
    let mut b = b_u32s(&[u32::from(es), 0, 0, 0, 0]);
    ok(fw, SevCmd::Init, &mut b);
}

fn export_pdh(fw: &SimFirmware) -> SevCert {
    let (pdh_pa, chain_pa) = (0x300_0000u64, 0x300_1000u64);
    let mut b = vec![0u8; 28];
    b[0..8].copy_from_slice(&pdh_pa.to_le_bytes());
    b[16..24].copy_from_slice(&chain_pa.to_le_bytes());
    // Too small: INVALID_LENGTH, and the needed lengths come back.
    assert_eq!(run(fw, SevCmd::PdhCertExport, &mut b), S::InvalidLen);
    assert_eq!(
        u32::from_le_bytes(b[8..12].try_into().unwrap()) as usize,
        SEV_CERT_LEN
    );
    assert_eq!(
        u32::from_le_bytes(b[24..28].try_into().unwrap()) as usize,
        3 * SEV_CERT_LEN
    );
    ok(fw, SevCmd::PdhCertExport, &mut b);
    let pdh = SevCert::read_from_bytes(&fw.mem().read_vec(pdh_pa, SEV_CERT_LEN).unwrap()).unwrap();
    let chain = fw.mem().read_vec(chain_pa, 3 * SEV_CERT_LEN).unwrap();
    let pek = SevCert::read_from_bytes(&chain[..SEV_CERT_LEN]).unwrap();
    let oca = SevCert::read_from_bytes(&chain[SEV_CERT_LEN..2 * SEV_CERT_LEN]).unwrap();
    let cek = SevCert::read_from_bytes(&chain[2 * SEV_CERT_LEN..]).unwrap();
    // The chain verifies: OCA self-signed, PEK by OCA and CEK, PDH by PEK.
    oca.verify_signed_by(&oca.public_key().unwrap(), usage::OCA)
        .unwrap();
    pek.verify_signed_by(&oca.public_key().unwrap(), usage::OCA)
        .unwrap();
    pek.verify_signed_by(&cek.public_key().unwrap(), usage::CEK)
        .unwrap();
    pdh.verify_signed_by(&pek.public_key().unwrap(), usage::PEK)
        .unwrap();
    pdh
}

/// LAUNCH_START with a session; returns (handle, owner session).
fn launch_start(fw: &SimFirmware, policy: u32) -> (u32, OwnerSession) {
    let pdh = export_pdh(fw);
    let mut rng = rand_chacha::ChaCha20Rng::from_seed([3; 32]);
    let s = OwnerSession::new(&mut rng, &pdh, policy).unwrap();
    fw.mem().write(CERT_PA, s.dh_cert().as_bytes()).unwrap();
    fw.mem().write(SESS_PA, s.session().as_bytes()).unwrap();
    let mut b = vec![0u8; 36];
    b[4..8].copy_from_slice(&policy.to_le_bytes());
    b[8..16].copy_from_slice(&CERT_PA.to_le_bytes());
    b[16..20].copy_from_slice(&(SEV_CERT_LEN as u32).to_le_bytes());
    b[24..32].copy_from_slice(&SESS_PA.to_le_bytes());
    b[32..36].copy_from_slice(&0x80u32.to_le_bytes());
    ok(fw, SevCmd::LaunchStart, &mut b);
    (u32::from_le_bytes(b[0..4].try_into().unwrap()), s)
}

fn activate(fw: &SimFirmware, handle: u32, asid: u32) -> S {
    run(fw, SevCmd::Activate, &mut b_u32s(&[handle, asid]))
}

fn measure(fw: &SimFirmware, handle: u32) -> [u8; 48] {
    let mut b = launch_update_data(handle, MEAS_PA, 48);
    ok(fw, SevCmd::LaunchMeasure, &mut b);
    fw.mem().read_vec(MEAS_PA, 48).unwrap().try_into().unwrap()
}

fn fwv(fw: &SimFirmware) -> FwVersion {
    let c = fw.config();
    FwVersion {
        api_major: c.api_major,
        api_minor: c.api_minor,
        build: c.build,
    }
}

#[test]
fn sev_launch_digest_matches_sev_snp_measure_and_secret_lands() {
    for kernel in [false, true] {
        let fw = fw();
        init(&fw, false);
        let policy = 0; // debugging allowed
        let (h, owner) = launch_start(&fw, policy);
        assert_eq!(activate(&fw, h, SEV_ASID), S::Success);
        let img = syn64k();
        fw.mem().write(IMG_PA, &img).unwrap();
        ok(
            &fw,
            SevCmd::LaunchUpdateData,
            &mut launch_update_data(h, IMG_PA, img.len() as u32),
        );
        if kernel {
            let t = hash_table(&kernel_bin(), &initrd_bin(), "console=ttyS0");
            fw.mem().write(IMG_PA + 0x10000, &t).unwrap();
            ok(
                &fw,
                SevCmd::LaunchUpdateData,
                &mut launch_update_data(h, IMG_PA + 0x10000, t.len() as u32),
            );
        }
        // The host now sees ciphertext.
        assert_ne!(fw.mem().read_vec(IMG_PA, 4096).unwrap(), img[..4096]);
        let out = measure(&fw, h);
        // facts §8.2: sev-snp-measure --mode sev (without / with K).
        let ld = if kernel {
            hx32("0449dc440298ed205dff0e3cca11f51337ac84500e8bc6321693c298ac14d738")
        } else {
            hx32("dac893496e53bf1a5643d761be49395899612ebe0178de53d93e1d6c373736fb")
        };
        verify_launch_measure(&owner.keys().tik, fwv(&fw), policy, &ld, &out).unwrap();

        // LAUNCH_SECRET into the guest's secret area, then read it back through DBG_DECRYPT.
        let measure: [u8; 32] = out[..32].try_into().unwrap();
        let payload = b"owner secret: 0123456789abcdef!!".to_vec();
        let (hdr, ct) = build_secret(owner.keys(), &measure, [0x22; 16], &payload).unwrap();
        let (hdr_pa, trans_pa, guest_pa) = (0x400_0000u64, 0x400_1000u64, IMG_PA + 0x5000);
        fw.mem().write(hdr_pa, hdr.as_bytes()).unwrap();
        fw.mem().write(trans_pa, &ct).unwrap();
        let mut sb = vec![0u8; 52];
        sb[0..4].copy_from_slice(&h.to_le_bytes());
        sb[8..16].copy_from_slice(&hdr_pa.to_le_bytes());
        sb[16..20].copy_from_slice(&52u32.to_le_bytes());
        sb[24..32].copy_from_slice(&guest_pa.to_le_bytes());
        sb[32..36].copy_from_slice(&32u32.to_le_bytes());
        sb[40..48].copy_from_slice(&trans_pa.to_le_bytes());
        sb[48..52].copy_from_slice(&32u32.to_le_bytes());
        // Wrong header length first.
        let mut bad = sb.clone();
        bad[16] = 51;
        assert_eq!(
            run(&fw, SevCmd::LaunchUpdateSecret, &mut bad),
            S::InvalidLen
        );
        // Tampered ciphertext: BAD_MEASUREMENT.
        let mut ct2 = ct.clone();
        ct2[0] ^= 1;
        fw.mem().write(trans_pa, &ct2).unwrap();
        assert_eq!(
            run(&fw, SevCmd::LaunchUpdateSecret, &mut sb),
            S::BadMeasurement
        );
        fw.mem().write(trans_pa, &ct).unwrap();
        ok(&fw, SevCmd::LaunchUpdateSecret, &mut sb);
        assert_ne!(fw.mem().read_vec(guest_pa, 32).unwrap(), payload);
        let dst = 0x500_0000u64;
        let mut dbg = vec![0u8; 28];
        dbg[0..4].copy_from_slice(&h.to_le_bytes());
        dbg[8..16].copy_from_slice(&guest_pa.to_le_bytes());
        dbg[16..24].copy_from_slice(&dst.to_le_bytes());
        dbg[24..28].copy_from_slice(&32u32.to_le_bytes());
        ok(&fw, SevCmd::DbgDecrypt, &mut dbg);
        assert_eq!(fw.mem().read_vec(dst, 32).unwrap(), payload);
        // The image decrypts too.
        dbg[8..16].copy_from_slice(&IMG_PA.to_le_bytes());
        dbg[24..28].copy_from_slice(&4096u32.to_le_bytes());
        ok(&fw, SevCmd::DbgDecrypt, &mut dbg);
        assert_eq!(fw.mem().read_vec(dst, 4096).unwrap(), img[..4096]);

        ok(&fw, SevCmd::LaunchFinish, &mut b_u32s(&[h]));
        assert_eq!(fw.asid_state(SEV_ASID), Some(AsidState::InUse));
        // Legacy ATTESTATION: signed by the PEK over bytes 0..0x34.
        let rep_pa = 0x600_0000u64;
        let mut ab = vec![0u8; 36];
        ab[0..4].copy_from_slice(&h.to_le_bytes());
        ab[8..16].copy_from_slice(&rep_pa.to_le_bytes());
        ab[16..32].copy_from_slice(&[0x5a; 16]);
        assert_eq!(run(&fw, SevCmd::AttestationReport, &mut ab), S::InvalidLen);
        assert_eq!(u32::from_le_bytes(ab[32..36].try_into().unwrap()), 0xD0);
        ok(&fw, SevCmd::AttestationReport, &mut ab);
        let r = fw.mem().read_vec(rep_pa, 0xD0).unwrap();
        assert_eq!(&r[0..16], &[0x5a; 16]);
        assert_eq!(&r[0x10..0x30], &ld);
        let mut sig = psp_driver::report::EcdsaSignature::default();
        sig.r.copy_from_slice(&r[0x40..0x88]);
        sig.s.copy_from_slice(&r[0x88..0xD0]);
        let pek = fw.certs().pek.public_key().unwrap();
        verify_message(&pek, algo::ECDSA_SHA256, &r[..0x34], &sig).unwrap();
    }
}

#[test]
fn sev_es_launch_digest_matches_sev_snp_measure() {
    let es_vmsa0 = vmsa(0xFFFF_FFF0, EPYC_V4_SIG, 0);
    let es_vmsa1 = vmsa(AP_EIP, EPYC_V4_SIG, 0);
    // facts §8.2 VMSA dumps (SEV-ES, EPYC-v4).
    assert_eq!(
        hex::encode(Sha256::digest(&es_vmsa0)),
        "8295cef559b57130391d59605890ef93297720b48bef9a8c3c985b9c3fb0788c"
    );
    assert_eq!(
        hex::encode(Sha256::digest(&es_vmsa1)),
        "a9ada635ae0d6fe0bd217df18dc94f3e5544627e237fb7c0ee2cb514fd4e0d55"
    );
    for vcpus in [1usize, 4] {
        let fw = fw();
        init(&fw, true);
        let policy = 0x4; // ES
        let (h, owner) = launch_start(&fw, policy);
        // SEV-ES guests need an ASID below MIN_SEV_ASID.
        assert_eq!(activate(&fw, h, SEV_ASID), S::InvalidAsid);
        assert_eq!(activate(&fw, h, 2), S::Success);
        let img = syn64k();
        fw.mem().write(IMG_PA, &img).unwrap();
        ok(
            &fw,
            SevCmd::LaunchUpdateData,
            &mut launch_update_data(h, IMG_PA, img.len() as u32),
        );
        let mut stream = img.clone();
        for cpu in 0..vcpus {
            let v = if cpu == 0 { &es_vmsa0 } else { &es_vmsa1 };
            let pa = 0x700_0000 + (cpu * 4096) as u64;
            fw.mem().write(pa, v).unwrap();
            // Wrong VMSA length first.
            assert_eq!(
                run(
                    &fw,
                    SevCmd::LaunchUpdateVmsa,
                    &mut launch_update_data(h, pa, 2048)
                ),
                S::InvalidLen
            );
            ok(
                &fw,
                SevCmd::LaunchUpdateVmsa,
                &mut launch_update_data(h, pa, 4096),
            );
            stream.extend_from_slice(v);
        }
        let out = measure(&fw, h);
        let ld: [u8; 32] = Sha256::digest(&stream).into();
        if vcpus == 1 {
            // facts §8.2: sev-snp-measure --mode seves --vcpus 1 --vcpu-type EPYC-v4.
            assert_eq!(
                hex::encode(ld),
                "e9dc93820dc36074d4e54cdef031274e31ff46a918309ccb831f4da87f62ff95"
            );
        }
        verify_launch_measure(&owner.keys().tik, fwv(&fw), policy, &ld, &out).unwrap();
    }
}

#[test]
fn vmsa_on_plain_sev_is_unsupported_and_es_needs_es_init() {
    let fw = fw();
    init(&fw, false);
    // LAUNCH_UPDATE_VMSA checks its length before the platform state.
    assert_eq!(
        run(
            &fw,
            SevCmd::LaunchUpdateVmsa,
            &mut launch_update_data(9, IMG_PA, 2048)
        ),
        S::InvalidLen
    );
    assert_eq!(
        run(
            &fw,
            SevCmd::LaunchUpdateVmsa,
            &mut launch_update_data(9, IMG_PA, 4096)
        ),
        S::InvalidPlatformState
    );
    let (h, _) = launch_start(&fw, 0);
    assert_eq!(activate(&fw, h, SEV_ASID), S::Success);
    assert_eq!(
        run(
            &fw,
            SevCmd::LaunchUpdateVmsa,
            &mut launch_update_data(h, IMG_PA, 4096)
        ),
        S::Unsupported
    );
    // ES policy on a platform initialised without ES: UNSUPPORTED.
    let mut b = vec![0u8; 36];
    b[4..8].copy_from_slice(&4u32.to_le_bytes());
    assert_eq!(run(&fw, SevCmd::LaunchStart, &mut b), S::Unsupported);
}

#[test]
fn launch_start_checks() {
    let fw = fw();
    let mut b = vec![0u8; 36];
    // Platform UNINIT.
    assert_eq!(
        run(&fw, SevCmd::LaunchStart, &mut b),
        S::InvalidPlatformState
    );
    init(&fw, false);
    // Wrong session length with a DH cert.
    b[8..16].copy_from_slice(&CERT_PA.to_le_bytes());
    b[16..20].copy_from_slice(&(SEV_CERT_LEN as u32).to_le_bytes());
    b[32..36].copy_from_slice(&0x7Fu32.to_le_bytes());
    assert_eq!(run(&fw, SevCmd::LaunchStart, &mut b), S::InvalidLen);
    // A certificate that is not a PDH: INVALID_CERTIFICATE.
    b[32..36].copy_from_slice(&0x80u32.to_le_bytes());
    let oca = fw.certs().oca;
    fw.mem().write(CERT_PA, oca.as_bytes()).unwrap();
    assert_eq!(run(&fw, SevCmd::LaunchStart, &mut b), S::InvalidCertificate);
    // A session made for another policy: BAD_MEASUREMENT (POLICY_MAC).
    let pdh = export_pdh(&fw);
    let mut rng = rand_chacha::ChaCha20Rng::from_seed([4; 32]);
    let s = OwnerSession::new(&mut rng, &pdh, 1).unwrap();
    fw.mem().write(CERT_PA, s.dh_cert().as_bytes()).unwrap();
    fw.mem().write(SESS_PA, s.session().as_bytes()).unwrap();
    b[24..32].copy_from_slice(&SESS_PA.to_le_bytes());
    assert_eq!(run(&fw, SevCmd::LaunchStart, &mut b), S::BadMeasurement);
    // Reserved policy bits / too new an API: POLICY_FAILURE. The firmware
    // checks them with the policy MAC, so only when a session is given.
    for bad in [0x40u32, 2 << 16, 1 << 16 | 56 << 24] {
        let s = OwnerSession::new(&mut rng, &pdh, bad).unwrap();
        fw.mem().write(CERT_PA, s.dh_cert().as_bytes()).unwrap();
        fw.mem().write(SESS_PA, s.session().as_bytes()).unwrap();
        b[4..8].copy_from_slice(&bad.to_le_bytes());
        assert_eq!(
            run(&fw, SevCmd::LaunchStart, &mut b),
            S::PolicyFailure,
            "{bad:#x}"
        );
    }
    // Without a session the same policy is accepted.
    let mut nb = vec![0u8; 36];
    nb[4..8].copy_from_slice(&0x40u32.to_le_bytes());
    ok(&fw, SevCmd::LaunchStart, &mut nb);
    ok(&fw, SevCmd::Decommission, &mut nb[0..4].to_vec());
    nb[0..4].copy_from_slice(&0u32.to_le_bytes());
    nb[4..8].copy_from_slice(&(1u32 << 16 | 55 << 24).to_le_bytes());
    ok(&fw, SevCmd::LaunchStart, &mut nb);
    let first = u32::from_le_bytes(nb[0..4].try_into().unwrap());
    assert_eq!(first, 1);
    // Key sharing: unknown handle INVALID_GUEST; different policy POLICY_FAILURE; NOKS POLICY_FAILURE.
    let mut ks = vec![0u8; 36];
    ks[0..4].copy_from_slice(&77u32.to_le_bytes());
    assert_eq!(run(&fw, SevCmd::LaunchStart, &mut ks), S::InvalidGuest);
    ks[0..4].copy_from_slice(&first.to_le_bytes());
    assert_eq!(run(&fw, SevCmd::LaunchStart, &mut ks), S::PolicyFailure);
    ks[4..8].copy_from_slice(&(1u32 << 16 | 55 << 24).to_le_bytes());
    ok(&fw, SevCmd::LaunchStart, &mut ks);
    assert_eq!(u32::from_le_bytes(ks[0..4].try_into().unwrap()), 2);
}

#[test]
fn out_of_order_commands() {
    let fw = fw();
    init(&fw, false);
    // WORKING-only commands in INIT.
    assert_eq!(
        run(
            &fw,
            SevCmd::LaunchUpdateData,
            &mut launch_update_data(1, IMG_PA, 16)
        ),
        S::InvalidPlatformState
    );
    let (h, _) = launch_start(&fw, 1);
    // Unknown handle.
    assert_eq!(
        run(
            &fw,
            SevCmd::LaunchUpdateData,
            &mut launch_update_data(h + 1, IMG_PA, 16)
        ),
        S::InvalidGuest
    );
    // No ASID yet: INACTIVE.
    assert_eq!(
        run(
            &fw,
            SevCmd::LaunchUpdateData,
            &mut launch_update_data(h, IMG_PA, 16)
        ),
        S::Inactive
    );
    assert_eq!(activate(&fw, h, SEV_ASID), S::Success);
    // Misaligned address / length.
    assert_eq!(
        run(
            &fw,
            SevCmd::LaunchUpdateData,
            &mut launch_update_data(h, IMG_PA + 8, 16)
        ),
        S::InvalidAddress
    );
    assert_eq!(
        run(
            &fw,
            SevCmd::LaunchUpdateData,
            &mut launch_update_data(h, IMG_PA, 15)
        ),
        S::InvalidLen
    );
    assert_eq!(
        run(
            &fw,
            SevCmd::LaunchUpdateData,
            &mut launch_update_data(h, IMG_PA, 0)
        ),
        S::InvalidLen
    );
    // FINISH and SECRET before MEASURE.
    assert_eq!(
        run(&fw, SevCmd::LaunchFinish, &mut b_u32s(&[h])),
        S::InvalidGuestState
    );
    // MEASURE with a short buffer: INVALID_LENGTH and 48 written back.
    let mut m = launch_update_data(h, MEAS_PA, 32);
    assert_eq!(run(&fw, SevCmd::LaunchMeasure, &mut m), S::InvalidLen);
    assert_eq!(u32::from_le_bytes(m[16..20].try_into().unwrap()), 48);
    measure(&fw, h);
    // No more updates after MEASURE; no second MEASURE.
    assert_eq!(
        run(
            &fw,
            SevCmd::LaunchUpdateData,
            &mut launch_update_data(h, IMG_PA, 16)
        ),
        S::InvalidGuestState
    );
    assert_eq!(
        run(
            &fw,
            SevCmd::LaunchMeasure,
            &mut launch_update_data(h, MEAS_PA, 48)
        ),
        S::InvalidGuestState
    );
    // NODBG policy: DBG_DECRYPT refused.
    let mut dbg = vec![0u8; 28];
    dbg[0..4].copy_from_slice(&h.to_le_bytes());
    dbg[8..16].copy_from_slice(&IMG_PA.to_le_bytes());
    dbg[16..24].copy_from_slice(&0x500_0000u64.to_le_bytes());
    dbg[24..28].copy_from_slice(&16u32.to_le_bytes());
    assert_eq!(run(&fw, SevCmd::DbgDecrypt, &mut dbg), S::PolicyFailure);
    ok(&fw, SevCmd::LaunchFinish, &mut b_u32s(&[h]));
    // GUEST_STATUS: RUNNING with its ASID; unknown handle gives SUCCESS with state 0.
    let mut gs = vec![0u8; 13];
    gs[0..4].copy_from_slice(&h.to_le_bytes());
    ok(&fw, SevCmd::GuestStatus, &mut gs);
    assert_eq!(
        (u32::from_le_bytes(gs[8..12].try_into().unwrap()), gs[12]),
        (SEV_ASID, 3)
    );
    let mut gs = vec![0u8; 13];
    gs[0..4].copy_from_slice(&999u32.to_le_bytes());
    gs[12] = 9;
    ok(&fw, SevCmd::GuestStatus, &mut gs);
    assert_eq!(gs[12], 0);
}

#[test]
fn asid_lifecycle() {
    let fw = fw();
    init(&fw, false);
    let (h, _) = launch_start(&fw, 1);
    // Range and ownership checks.
    assert_eq!(activate(&fw, h, 0), S::InvalidAsid);
    assert_eq!(activate(&fw, h, 17), S::InvalidAsid);
    assert_eq!(activate(&fw, h, SEV_ASID), S::Success);
    assert_eq!(fw.asid_state(SEV_ASID), Some(AsidState::Allocated));
    assert_eq!(activate(&fw, h, SEV_ASID + 1), S::Active);
    let (h2, _) = launch_start(&fw, 1);
    assert_eq!(activate(&fw, h2, SEV_ASID), S::AsidOwned);
    // DECOMMISSION of an active guest: ACTIVE.
    assert_eq!(run(&fw, SevCmd::Decommission, &mut b_u32s(&[h])), S::Active);
    // A pending (never run) ASID goes back to clean on DEACTIVATE.
    ok(&fw, SevCmd::Deactivate, &mut b_u32s(&[h]));
    assert_eq!(fw.asid_state(SEV_ASID), Some(AsidState::Clean));
    assert_eq!(run(&fw, SevCmd::Deactivate, &mut b_u32s(&[h])), S::Inactive);
    // Run the guest, then deactivate: dirty.
    assert_eq!(activate(&fw, h, SEV_ASID), S::Success);
    measure(&fw, h);
    ok(&fw, SevCmd::LaunchFinish, &mut b_u32s(&[h]));
    ok(&fw, SevCmd::Deactivate, &mut b_u32s(&[h]));
    assert_eq!(fw.asid_state(SEV_ASID), Some(AsidState::Dirty));
    ok(&fw, SevCmd::Decommission, &mut b_u32s(&[h]));
    // A second ACTIVATE on the dirty ASID: DFFLUSH_REQUIRED.
    assert_eq!(activate(&fw, h2, SEV_ASID), S::DfflushRequired);
    // DF_FLUSH without WBINVD: WBINVD_REQUIRED; after WBINVD: clean.
    assert_eq!(run(&fw, SevCmd::DfFlush, &mut []), S::WbinvdRequired);
    fw.wbinvd();
    ok(&fw, SevCmd::DfFlush, &mut []);
    assert_eq!(fw.asid_state(SEV_ASID), Some(AsidState::Clean));
    assert_eq!(activate(&fw, h2, SEV_ASID), S::Success);
    // Last guest decommissioned: platform back to INIT.
    ok(&fw, SevCmd::Deactivate, &mut b_u32s(&[h2]));
    ok(&fw, SevCmd::Decommission, &mut b_u32s(&[h2]));
    let mut st = vec![0u8; 12];
    ok(&fw, SevCmd::PlatformStatus, &mut st);
    assert_eq!((st[2], st[8]), (1, 0));
}

#[test]
fn platform_commands() {
    let fw = fw();
    let mut st = vec![0u8; 12];
    ok(&fw, SevCmd::PlatformStatus, &mut st);
    assert_eq!((st[0], st[1], st[2], st[7]), (1, 55, 0, 25));
    // PEK_GEN needs INIT.
    assert_eq!(run(&fw, SevCmd::PekGen, &mut []), S::InvalidPlatformState);
    // GET_ID works in any state; short buffer gives INVALID_LENGTH and 128.
    let mut id = vec![0u8; 12];
    id[0..8].copy_from_slice(&0x800_0000u64.to_le_bytes());
    assert_eq!(run(&fw, SevCmd::GetId, &mut id), S::InvalidLen);
    assert_eq!(u32::from_le_bytes(id[8..12].try_into().unwrap()), 128);
    ok(&fw, SevCmd::GetId, &mut id);
    init(&fw, true);
    ok(&fw, SevCmd::PlatformStatus, &mut st);
    assert_eq!((st[2], st[4]), (1, 1));
    let before = fw.certs();
    ok(&fw, SevCmd::PdhGen, &mut []);
    assert_ne!(fw.certs().pdh, before.pdh);
    assert_eq!(fw.certs().pek, before.pek);
    ok(&fw, SevCmd::PekGen, &mut []);
    assert_ne!(fw.certs().pek, before.pek);
    // PEK_CSR then PEK_CERT_IMPORT with an external OCA.
    let mut csr = vec![0u8; 12];
    csr[0..8].copy_from_slice(&0x900_0000u64.to_le_bytes());
    csr[8..12].copy_from_slice(&(SEV_CERT_LEN as u32).to_le_bytes());
    ok(&fw, SevCmd::PekCsr, &mut csr);
    let mut pek =
        SevCert::read_from_bytes(&fw.mem().read_vec(0x900_0000, SEV_CERT_LEN).unwrap()).unwrap();
    let (oca_key, oca) = self_signed_oca();
    pek.sign(0, &oca_key, usage::OCA, algo::ECDSA_SHA256)
        .unwrap();
    fw.mem().write(0x900_1000, pek.as_bytes()).unwrap();
    fw.mem().write(0x900_2000, oca.as_bytes()).unwrap();
    let mut imp = vec![0u8; 28];
    imp[0..8].copy_from_slice(&0x900_1000u64.to_le_bytes());
    imp[8..12].copy_from_slice(&(SEV_CERT_LEN as u32).to_le_bytes());
    imp[16..24].copy_from_slice(&0x900_2000u64.to_le_bytes());
    imp[24..28].copy_from_slice(&(SEV_CERT_LEN as u32).to_le_bytes());
    // An OCA that did not sign the PEK: INVALID_CERTIFICATE.
    let mut other = oca;
    other.pub_key = psp_driver::owner::cert::encode_public_key(
        p384::ecdsa::SigningKey::from_slice(&[0x43; 48])
            .unwrap()
            .verifying_key(),
    );
    fw.mem().write(0x900_2000, other.as_bytes()).unwrap();
    assert_eq!(
        run(&fw, SevCmd::PekCertImport, &mut imp),
        S::InvalidCertificate
    );
    fw.mem().write(0x900_2000, oca.as_bytes()).unwrap();
    ok(&fw, SevCmd::PekCertImport, &mut imp);
    ok(&fw, SevCmd::PlatformStatus, &mut st);
    assert_eq!(st[3] & 1, 1);
    assert_eq!(fw.certs().oca, oca);
    // SHUTDOWN returns to UNINIT from any state.
    ok(&fw, SevCmd::Shutdown, &mut []);
    ok(&fw, SevCmd::PlatformStatus, &mut st);
    assert_eq!(st[2], 0);
    // SNP_INIT must come before INIT.
    init(&fw, false);
    assert_eq!(run(&fw, SevCmd::SnpInit, &mut []), S::InvalidPlatformState);
}

#[test]
fn shared_config_is_respected() {
    let fw = fw_with(SimConfig {
        api_major: 0,
        api_minor: 24,
        build: 15,
        ..Default::default()
    });
    init(&fw, false);
    let (h, owner) = launch_start(&fw, 1);
    assert_eq!(activate(&fw, h, SEV_ASID), S::Success);
    let img = syn64k();
    fw.mem().write(IMG_PA, &img).unwrap();
    ok(
        &fw,
        SevCmd::LaunchUpdateData,
        &mut launch_update_data(h, IMG_PA, img.len() as u32),
    );
    let out = measure(&fw, h);
    verify_launch_measure(
        &owner.keys().tik,
        FwVersion {
            api_major: 0,
            api_minor: 24,
            build: 15,
        },
        1,
        &hx32("dac893496e53bf1a5643d761be49395899612ebe0178de53d93e1d6c373736fb"),
        &out,
    )
    .unwrap();
}

/// Runs a SEV-ES launch of `img` (+ optional kernel table) with `vcpus` and returns the LD the
/// firmware MACed, checked through the owner's TIK against `want`.
fn seves_launch(img: &[u8], kernel: bool, vcpus: usize, ap_eip: u32, want: &str) {
    let fw = fw();
    init(&fw, true);
    let (h, owner) = launch_start(&fw, 0x4);
    assert_eq!(activate(&fw, h, 2), S::Success);
    fw.mem().write(IMG_PA, img).unwrap();
    ok(
        &fw,
        SevCmd::LaunchUpdateData,
        &mut launch_update_data(h, IMG_PA, img.len() as u32),
    );
    if kernel {
        let t = hash_table(&kernel_bin(), &initrd_bin(), "console=ttyS0");
        let pa = IMG_PA + img.len() as u64;
        fw.mem().write(pa, &t).unwrap();
        ok(
            &fw,
            SevCmd::LaunchUpdateData,
            &mut launch_update_data(h, pa, t.len() as u32),
        );
    }
    for cpu in 0..vcpus {
        let eip = if cpu == 0 { 0xFFFF_FFF0 } else { ap_eip };
        let pa = 0x700_0000 + (cpu * 4096) as u64;
        fw.mem().write(pa, &vmsa(eip, EPYC_V4_SIG, 0)).unwrap();
        ok(
            &fw,
            SevCmd::LaunchUpdateVmsa,
            &mut launch_update_data(h, pa, 4096),
        );
    }
    let out = measure(&fw, h);
    verify_launch_measure(&owner.keys().tik, fwv(&fw), 0x4, &hx32(want), &out)
        .unwrap_or_else(|e| panic!("{vcpus} vCPUs, kernel {kernel}: {e}"));
}

#[test]
fn seves_vcpu_counts_and_kernel_match_sev_snp_measure() {
    // sev-snp-measure 0.0.13 --mode seves --vcpu-type EPYC-v4 --ovmf syn64k.fd [K] --vcpus N.
    let img = syn64k();
    for (vcpus, kernel, want) in [
        (
            1,
            true,
            "d0a1b5b48e8df23eb845d3caaa355f9de6b47ec3770ed53f3b4ffb42cf00868e",
        ),
        (
            2,
            false,
            "d0edebb2301c8accb2afeca98d79b955a0e8f36a990dd0f71186a02562870273",
        ),
        (
            2,
            true,
            "863a93eca70f4756bf57b7062062c3fc8ff9d4983817a187c57bda74ca21817a",
        ),
        (
            4,
            false,
            "6ac2b93694e50ca8b0226db5dfa3d515e9b9a6e1337bc6632523fe57d0aaeebf",
        ),
        (
            4,
            true,
            "f90a2e3402a98fc0e47b9f56422094c07a8c2645e56b39affc6e5b55a0a5b493",
        ),
    ] {
        seves_launch(&img, kernel, vcpus, AP_EIP, want);
    }
}

#[test]
fn debian_ovmf_sev_and_seves() {
    let path = std::env::var("KVM_COCO_OVMF").unwrap_or_else(|_| "/usr/share/ovmf/OVMF.fd".into());
    let Ok(img) = std::fs::read(&path) else {
        kvm_coco_test_skip::skip(
            "OVMF",
            format_args!("cannot read {path}; install Debian's `ovmf` or set KVM_COCO_OVMF"),
        );
        return;
    };
    if hex::encode(Sha256::digest(&img))
        != "7b456907dd0786d415999e801a1ac4637b8ed4d7cf5378cfc6edbe5e574dd773"
    {
        kvm_coco_test_skip::skip(
            "OVMF",
            format_args!("{path} is not Debian ovmf 2022.11-6+deb12u2; set KVM_COCO_OVMF"),
        );
        return;
    }
    // facts §8.3 (1 vCPU) and sev-snp-measure --vcpus 4.
    seves_launch(
        &img,
        false,
        1,
        0x80_B004,
        "5bcbb5a45e7a9fa4699b6cc8f775382a810ff5a0186d3b90069ba28b1840b38f",
    );
    seves_launch(
        &img,
        false,
        4,
        0x80_B004,
        "5f69b0f48cbd00c7bed859a9d597034d426b3a64a443674755132d833bf0e480",
    );
}

#[test]
fn typed_commands_through_psp() {
    use psp_driver::{
        DfFlush, Psp, SevDataActivate, SevDataDeactivate, SevDataInit, SevDataLaunchFinish,
        SevDataLaunchMeasure, SevDataLaunchStart,
    };
    let psp = Psp::new(fw());
    psp.issue(&mut SevDataInit::default()).unwrap();
    let mut ls = SevDataLaunchStart {
        policy: 1,
        ..Default::default()
    };
    psp.issue(&mut ls).unwrap();
    let handle = ls.handle;
    let e = psp
        .issue(&mut SevDataActivate { handle, asid: 99 })
        .unwrap_err();
    assert_eq!(e.status, S::InvalidAsid);
    assert_eq!(e.errno, Some(nix::errno::Errno::EIO));
    psp.issue(&mut SevDataActivate {
        handle,
        asid: SEV_ASID,
    })
    .unwrap();
    let mut m = SevDataLaunchMeasure {
        handle,
        address: MEAS_PA,
        len: 48,
        ..Default::default()
    };
    psp.issue(&mut m).unwrap();
    psp.issue(&mut SevDataLaunchFinish { handle }).unwrap();
    psp.issue(&mut SevDataDeactivate { handle }).unwrap();
    let e = psp.issue(&mut DfFlush).unwrap_err();
    assert_eq!(e.status, S::WbinvdRequired);
    assert!(e.hint().is_some());
    psp.transport().wbinvd();
    psp.issue(&mut DfFlush).unwrap();
}

#[test]
fn migration_between_two_platforms() {
    let src = fw();
    let dst = fw_with(SimConfig {
        seed: [0x77; 32],
        ..Default::default()
    });
    init(&src, false);
    init(&dst, false);
    // A running guest on the source, image launched.
    let (h, _) = launch_start(&src, 0);
    assert_eq!(activate(&src, h, SEV_ASID), S::Success);
    let img = syn64k();
    src.mem().write(IMG_PA, &img[..0x4000]).unwrap();
    ok(
        &src,
        SevCmd::LaunchUpdateData,
        &mut launch_update_data(h, IMG_PA, 0x4000),
    );
    measure(&src, h);
    ok(&src, SevCmd::LaunchFinish, &mut b_u32s(&[h]));

    // SEND_START to the destination's PDH.
    let dst_pdh = export_pdh(&dst);
    let (pdh_pa, sess_pa) = (0x900_0000u64, 0x900_1000u64);
    src.mem().write(pdh_pa, dst_pdh.as_bytes()).unwrap();
    let mut ss = vec![0u8; 68];
    ss[0..4].copy_from_slice(&h.to_le_bytes());
    ss[8..16].copy_from_slice(&pdh_pa.to_le_bytes());
    ss[16..20].copy_from_slice(&(SEV_CERT_LEN as u32).to_le_bytes());
    ss[56..64].copy_from_slice(&sess_pa.to_le_bytes());
    assert_eq!(run(&src, SevCmd::SendStart, &mut ss), S::InvalidLen);
    assert_eq!(u32::from_le_bytes(ss[64..68].try_into().unwrap()), 0x80);
    ok(&src, SevCmd::SendStart, &mut ss);
    assert_eq!(u32::from_le_bytes(ss[4..8].try_into().unwrap()), 0);
    // Send the first 16 KiB.
    let (hdr_pa, trans_pa) = (0x900_2000u64, 0x901_0000u64);
    let mut su = vec![0u8; 52];
    su[0..4].copy_from_slice(&h.to_le_bytes());
    su[8..16].copy_from_slice(&hdr_pa.to_le_bytes());
    su[16..20].copy_from_slice(&52u32.to_le_bytes());
    su[24..32].copy_from_slice(&IMG_PA.to_le_bytes());
    su[32..36].copy_from_slice(&0x4000u32.to_le_bytes());
    su[40..48].copy_from_slice(&trans_pa.to_le_bytes());
    su[48..52].copy_from_slice(&0x4000u32.to_le_bytes());
    ok(&src, SevCmd::SendUpdateData, &mut su);
    let hdr = src.mem().read_vec(hdr_pa, 52).unwrap();
    let packet = src.mem().read_vec(trans_pa, 0x4000).unwrap();
    assert_ne!(packet, img[..0x4000]);
    ok(&src, SevCmd::SendFinish, &mut b_u32s(&[h]));
    // SENT guests can still be attested, not activated.
    assert_eq!(
        run(&src, SevCmd::SendFinish, &mut b_u32s(&[h])),
        S::InvalidGuestState
    );

    // RECEIVE_START on the destination with the source's PDH and the session.
    let session = src.mem().read_vec(sess_pa, 0x80).unwrap();
    let src_pdh = src.certs().pdh;
    dst.mem().write(CERT_PA, src_pdh.as_bytes()).unwrap();
    dst.mem().write(SESS_PA, &session).unwrap();
    let mut rs = vec![0u8; 36];
    rs[8..16].copy_from_slice(&CERT_PA.to_le_bytes());
    rs[16..20].copy_from_slice(&(SEV_CERT_LEN as u32).to_le_bytes());
    rs[24..32].copy_from_slice(&SESS_PA.to_le_bytes());
    rs[32..36].copy_from_slice(&0x80u32.to_le_bytes());
    // A different policy than the session's: BAD_MEASUREMENT (policy MAC).
    rs[4..8].copy_from_slice(&1u32.to_le_bytes());
    assert_eq!(run(&dst, SevCmd::ReceiveStart, &mut rs), S::BadMeasurement);
    rs[4..8].copy_from_slice(&0u32.to_le_bytes());
    ok(&dst, SevCmd::ReceiveStart, &mut rs);
    let dh = u32::from_le_bytes(rs[0..4].try_into().unwrap());
    assert_eq!(activate(&dst, dh, SEV_ASID), S::Success);
    assert_eq!(dst.asid_state(SEV_ASID), Some(AsidState::Allocated));
    let guest_pa = 0xA00_0000u64;
    dst.mem().write(hdr_pa, &hdr).unwrap();
    let mut ru = su.clone();
    ru[0..4].copy_from_slice(&dh.to_le_bytes());
    ru[24..32].copy_from_slice(&guest_pa.to_le_bytes());
    // A tampered packet: BAD_MEASUREMENT.
    let mut bad = packet.clone();
    bad[100] ^= 1;
    dst.mem().write(trans_pa, &bad).unwrap();
    assert_eq!(
        run(&dst, SevCmd::ReceiveUpdateData, &mut ru),
        S::BadMeasurement
    );
    dst.mem().write(trans_pa, &packet).unwrap();
    ok(&dst, SevCmd::ReceiveUpdateData, &mut ru);
    ok(&dst, SevCmd::ReceiveFinish, &mut b_u32s(&[dh]));
    assert_eq!(dst.asid_state(SEV_ASID), Some(AsidState::InUse));
    // The destination guest holds the plaintext under its own key.
    assert_ne!(dst.mem().read_vec(guest_pa, 0x4000).unwrap(), img[..0x4000]);
    let mut dbg = vec![0u8; 28];
    dbg[0..4].copy_from_slice(&dh.to_le_bytes());
    dbg[8..16].copy_from_slice(&guest_pa.to_le_bytes());
    dbg[16..24].copy_from_slice(&0xB00_0000u64.to_le_bytes());
    dbg[24..28].copy_from_slice(&0x4000u32.to_le_bytes());
    ok(&dst, SevCmd::DbgDecrypt, &mut dbg);
    assert_eq!(
        dst.mem().read_vec(0xB00_0000, 0x4000).unwrap(),
        img[..0x4000]
    );
}

#[test]
fn nosend_policy_refuses_send_start() {
    let fw = fw();
    init(&fw, false);
    let (h, _) = launch_start(&fw, 1 << 3);
    assert_eq!(activate(&fw, h, SEV_ASID), S::Success);
    measure(&fw, h);
    let mut ss = vec![0u8; 68];
    ss[0..4].copy_from_slice(&h.to_le_bytes());
    ss[64..68].copy_from_slice(&0x80u32.to_le_bytes());
    // Not RUNNING yet.
    assert_eq!(run(&fw, SevCmd::SendStart, &mut ss), S::InvalidGuestState);
    ok(&fw, SevCmd::LaunchFinish, &mut b_u32s(&[h]));
    assert_eq!(run(&fw, SevCmd::SendStart, &mut ss), S::PolicyFailure);
}

#[test]
fn dbg_checks_in_firmware_order() {
    let fw = fw();
    init(&fw, false);
    let (h, _) = launch_start(&fw, 0);
    let dbg = |handle: u32, src: u64, len: u32| {
        let mut b = vec![0u8; 28];
        b[0..4].copy_from_slice(&handle.to_le_bytes());
        b[8..16].copy_from_slice(&src.to_le_bytes());
        b[16..24].copy_from_slice(&0x500_0000u64.to_le_bytes());
        b[24..28].copy_from_slice(&len.to_le_bytes());
        b
    };
    // Addresses and length are checked before the handle (AMD firmware 1.55).
    assert_eq!(
        run(&fw, SevCmd::DbgDecrypt, &mut dbg(999, IMG_PA + 8, 16)),
        S::InvalidAddress
    );
    assert_eq!(
        run(&fw, SevCmd::DbgDecrypt, &mut dbg(999, IMG_PA, 8)),
        S::InvalidLen
    );
    assert_eq!(
        run(&fw, SevCmd::DbgDecrypt, &mut dbg(999, IMG_PA, 16)),
        S::InvalidGuest
    );
    // No ASID yet: INACTIVE.
    assert_eq!(
        run(&fw, SevCmd::DbgEncrypt, &mut dbg(h, IMG_PA, 16)),
        S::Inactive
    );
    assert_eq!(activate(&fw, h, SEV_ASID), S::Success);
    ok(&fw, SevCmd::DbgEncrypt, &mut dbg(h, IMG_PA, 16));
}

#[test]
fn guest_reads_its_own_memory_decrypted() {
    let fw = fw();
    init(&fw, false);
    // NODBG: the guest's own C-bit reads do not depend on the debug policy.
    let (h, _) = launch_start(&fw, 1);
    let plain: Vec<u8> = (0..0x2000u32).map(|i| (i * 7 + 3) as u8).collect();
    fw.mem().write(IMG_PA, &plain).unwrap();
    let mut buf = [0u8; 37];
    // No ASID yet: INACTIVE; an unknown handle: INVALID_GUEST.
    assert_eq!(
        fw.guest_read_private_sev(h, IMG_PA, &mut buf),
        Err(S::Inactive)
    );
    assert_eq!(
        fw.guest_read_private_sev(h + 1, IMG_PA, &mut buf),
        Err(S::InvalidGuest)
    );
    assert_eq!(activate(&fw, h, SEV_ASID), S::Success);
    ok(
        &fw,
        SevCmd::LaunchUpdateData,
        &mut launch_update_data(h, IMG_PA, plain.len() as u32),
    );
    assert_ne!(fw.mem().read_vec(IMG_PA, 0x40).unwrap(), &plain[..0x40]);
    // Unaligned start and end, in the second page.
    fw.guest_read_private_sev(h, IMG_PA + 0x1013, &mut buf)
        .unwrap();
    assert_eq!(buf, plain[0x1013..0x1013 + 37]);
    // A whole page, and the last byte of one.
    let mut page = vec![0u8; 0x1000];
    fw.guest_read_private_sev(h, IMG_PA, &mut page).unwrap();
    assert_eq!(page, plain[..0x1000]);
    let mut last = [0u8; 1];
    fw.guest_read_private_sev(h, IMG_PA + 0xFFF, &mut last)
        .unwrap();
    assert_eq!(last[0], plain[0xFFF]);
    // Crossing the page: INVALID_LEN.
    assert_eq!(
        fw.guest_read_private_sev(h, IMG_PA + 0xFF0, &mut buf),
        Err(S::InvalidLen)
    );
}
