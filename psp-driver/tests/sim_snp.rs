//! SNP launch through the software firmware: digests against sev-snp-measure
//! and the facts' micro-vectors, attestation, ID blocks, and misuse statuses.

mod sim_common;

use p384::ecdsa::SigningKey;
use psp_driver::owner::snp::{IdBlock, SnpCertChain, key_digest, sign_id_block, verify_report};
use psp_driver::sim::RmpState;
use psp_driver::{SevCmd, SevRetCode as S};
use sha2::{Digest, Sha256, Sha384};
use sim_common::*;
use zerocopy::IntoBytes;

const POLICY: u64 = 0x30000;

fn hx(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

fn ld(fw: &psp_driver::sim::SimFirmware) -> String {
    hex::encode(fw.snp_launch_digest(GCTX).unwrap())
}

#[test]
fn helpers_match_the_facts() {
    // SYN64K and the VMSA template are built from the facts; check them
    // against the facts' own hashes before using them as inputs.
    let img = syn64k();
    assert_eq!(
        hex::encode(Sha256::digest(&img)),
        "dac893496e53bf1a5643d761be49395899612ebe0178de53d93e1d6c373736fb"
    );
    let t = hash_table(&kernel_bin(), &initrd_bin(), "console=ttyS0");
    assert_eq!(
        t,
        hx(
            "06d63894224fc94cb479a793d411fd21a800d82dd09720bd944caa78e7714d36ab2a3200f18aae9b3c09e55bc3047ad361e2442d7c53372470b2958fb83293209a784f7131f7ba442f3ad74b9af141e29169781d32005f8f56d6cb3df6b1394d91f8814b806dd20005fe50bc36207b291cc1c10d1b873794e74dd2ab7f42b835d5b172d2045b32005438bbaf3e84daff499e05203d38184fa7003bbd25dbe59ea780229ab88590dc0000000000000000"
        )
    );
    assert_eq!(
        hex::encode(Sha384::digest(vmsa(0xFFFF_FFF0, EPYC_V4_SIG, 1))),
        "77920c4c629ff47e90c0e174fc1ad0eb6fa664f88cd4739488058a8c6cb1a77b3856f55378e9518d0da99452d51c553a"
    );
    assert_eq!(
        hex::encode(Sha384::digest(vmsa(AP_EIP, EPYC_V4_SIG, 1))),
        "4ccbf6f5c2f88acda04b6f3627bb1b277bde6496f66a71b17cef2fe82acf2fead866fb7aa5b4d2545dca584e94f6a8c6"
    );
}

#[test]
fn micro_vectors_per_page_type() {
    // facts §3.3, each from LD = 0.
    let zero = vec![0u8; 4096];
    let pattern: Vec<u8> = (0..4096).map(|i| (i % 256) as u8).collect();
    let cases: [(u64, u8, &[u8], &str); 6] = [
        (
            0,
            1,
            &zero,
            "9d13634b6014bb21cf059b2dc694e7bff01a8a7137041100cd2b695f3d10fb687267b97808b27f8f471d943bc6f53a20",
        ),
        (
            0xFFFF_F000,
            1,
            &pattern,
            "79d7e453f7b541d04f7f51cccc6f4acca624b7a97430595dd7c98bd8c7a897656a91c611473f137680bd00e9e72e47c4",
        ),
        (
            0x1000,
            3,
            &pattern,
            "4bd4147976a1e7554c1c778a781affc1c672f1965a727ba16084989b7e356044a28bbe585a2f75dac9356fa5ab78f061",
        ),
        (
            0x2000,
            4,
            &pattern,
            "cc5aed6a06f63b38d24155dfa38e924c44b41d2339bc8a7d3cb1995e67607e8889a81c2d42e75bb95627b40e344b8929",
        ),
        (
            0x3000,
            5,
            &pattern,
            "56a257bb27ff6656e6b6bc227e34e6bbce81bf7ccdf961c680295369708e4df280fa28220ab7c554ef7cf24fabb86504",
        ),
        (
            0x4000,
            6,
            &zero,
            "0acb0f4e9aa7ba97447f36f5cdf321a2f5b0682d1b57467571bde89f1920df24d03f18bd3c20e27400e0fdae40d02d92",
        ),
    ];
    for (gpa, ty, data, want) in cases {
        let fw = snp_started(POLICY);
        assert_eq!(snp_page(&fw, gpa, ty, data), S::Success, "type {ty}");
        assert_eq!(ld(&fw), want, "type {ty}");
    }
    // VMSA of an all-zero page at the KVM VMSA GPA.
    let fw = snp_started(POLICY);
    fw.mem().write(VMSA_PA, &zero).unwrap();
    fw.rmp_make_private(VMSA_PA, 0xFFFF_FFFF_F000, ASID, false)
        .unwrap();
    ok(
        &fw,
        SevCmd::SnpLaunchUpdate,
        &mut snp_launch_update(GCTX, VMSA_PA, 2, false),
    );
    assert_eq!(
        ld(&fw),
        "f4577da9b848673216afc3909e5ea7aa80150dda441526874cd2b0282894709b46484c13a07221aefbedfff667199259"
    );
    assert!(fw.rmp_entry(VMSA_PA).vmsa);
}

#[test]
fn micro_vector_chain() {
    let fw = snp_started(POLICY);
    let zero = vec![0u8; 4096];
    assert_eq!(snp_page(&fw, 0, 1, &zero), S::Success);
    assert_eq!(snp_page(&fw, 0x1000, 3, &zero), S::Success);
    assert_eq!(snp_page(&fw, 0x3000, 5, &zero), S::Success);
    assert_eq!(snp_page(&fw, 0x4000, 6, &zero), S::Success);
    fw.mem().write(VMSA_PA, &zero).unwrap();
    fw.rmp_make_private(VMSA_PA, 0xFFFF_FFFF_F000, ASID, false)
        .unwrap();
    ok(
        &fw,
        SevCmd::SnpLaunchUpdate,
        &mut snp_launch_update(GCTX, VMSA_PA, 2, false),
    );
    assert_eq!(
        ld(&fw),
        "d7c8ce905e2568c7982b48607da5ec76c7c1e5a59be8bf0879599cd89aa203bf134a332ee1f54c4008535e51afc2b34e"
    );
}

#[test]
fn syn64k_matches_sev_snp_measure() {
    // facts §8.2, rows 1 and 2 (sev-snp-measure 0.0.13, EPYC-v4, 1 vCPU).
    let fw = snp_started(POLICY);
    snp_syn64k_launch(&fw, false, 1);
    assert_eq!(
        ld(&fw),
        "54d686bed4f38e22c5e3ec6b7fdbd7288e0c4175469bf7274fcbe4ab5837f97804371497a3ce833231b857a75e3054f2"
    );
    let fw = snp_started(POLICY);
    snp_syn64k_launch(&fw, true, 1);
    assert_eq!(
        ld(&fw),
        "5d2ef486503b2ee73a2eb4f2a8432921c53a3ee74ea6df6b1e0b5ccb2f54c389b5e93d3023d60c56969cfae886762306"
    );
}

#[test]
fn firmware_only_digest_matches_ovmf_hash_mode() {
    // facts §8.2 row 3: `--mode snp:ovmf-hash` is the LD after the firmware pages.
    let fw = snp_started(POLICY);
    let img = syn64k();
    let base = 0x1_0000_0000u64 - SYN_SIZE as u64;
    for (i, page) in img.chunks(4096).enumerate() {
        assert_eq!(snp_page(&fw, base + (i * 4096) as u64, 1, page), S::Success);
    }
    assert_eq!(
        ld(&fw),
        "57f4a54bb9723bd9ee73400d75ea4442030ec0923d282c30adb4ceba2921f77c94561078b24aa0c3432a7158c93171cb"
    );
}

#[test]
fn two_megabyte_update_equals_512_small_ones() {
    let data: Vec<u8> = (0..(2usize << 20)).map(|i| (i * 7 % 253) as u8).collect();
    let gpa = 0x4000_0000u64;
    let big = snp_started(POLICY);
    big.mem().write(pa_of(gpa), &data).unwrap();
    big.rmp_make_private(pa_of(gpa), gpa, ASID, true).unwrap();
    ok(
        &big,
        SevCmd::SnpLaunchUpdate,
        &mut snp_launch_update(GCTX, pa_of(gpa), 1, true),
    );
    let small = snp_started(POLICY);
    for (i, p) in data.chunks(4096).enumerate() {
        assert_eq!(snp_page(&small, gpa + (i * 4096) as u64, 1, p), S::Success);
    }
    assert_eq!(ld(&big), ld(&small));
    // Both left ciphertext behind, the same (same PA, same VEK? no: different
    // guests have different VEKs), and not the plaintext.
    let ct = big.mem().read_vec(pa_of(gpa), 4096).unwrap();
    assert_ne!(ct, data[..4096]);
}

#[test]
fn pages_are_encrypted_and_debug_follows_policy() {
    let secret = b"top secret guest data, 32 bytes!".repeat(128);
    // Without DEBUG: ciphertext, and SNP_DBG_DECRYPT is refused.
    let fw = snp_started(POLICY);
    assert_eq!(snp_page(&fw, 0x10_0000, 1, &secret), S::Success);
    let seen = fw.mem().read_vec(pa_of(0x10_0000), 4096).unwrap();
    assert_ne!(seen, secret);
    assert_eq!(fw.rmp_entry(pa_of(0x10_0000)).state(), RmpState::GuestValid);
    let dst = 0x5000_0000u64;
    let mut dbg = [
        GCTX.to_le_bytes(),
        pa_of(0x10_0000).to_le_bytes(),
        dst.to_le_bytes(),
    ]
    .concat();
    assert_eq!(run(&fw, SevCmd::SnpDbgDecrypt, &mut dbg), S::PolicyFailure);
    // With DEBUG (bit 19): plaintext comes back.
    let fw = snp_started(POLICY | 1 << 19);
    assert_eq!(snp_page(&fw, 0x10_0000, 1, &secret), S::Success);
    assert_ne!(fw.mem().read_vec(pa_of(0x10_0000), 4096).unwrap(), secret);
    ok(&fw, SevCmd::SnpDbgDecrypt, &mut dbg);
    assert_eq!(fw.mem().read_vec(dst, 4096).unwrap(), secret);
    // DBG_ENCRYPT puts new plaintext back into the guest page.
    let new = vec![0x42u8; 4096];
    fw.mem().write(dst, &new).unwrap();
    let mut enc = [
        dst.to_le_bytes(),
        dst.to_le_bytes(),
        pa_of(0x10_0000).to_le_bytes(),
    ]
    .concat();
    enc[0..8].copy_from_slice(&GCTX.to_le_bytes());
    ok(&fw, SevCmd::SnpDbgEncrypt, &mut enc);
    let dst2 = 0x5000_1000u64;
    let mut dbg2 = [
        GCTX.to_le_bytes(),
        pa_of(0x10_0000).to_le_bytes(),
        dst2.to_le_bytes(),
    ]
    .concat();
    ok(&fw, SevCmd::SnpDbgDecrypt, &mut dbg2);
    assert_eq!(fw.mem().read_vec(dst2, 4096).unwrap(), new);
}

#[test]
fn report_is_signed_by_the_vcek_chain() {
    let fw = snp_started(POLICY);
    snp_syn64k_launch(&fw, false, 2);
    let host_data = [0x11u8; 32];
    ok(
        &fw,
        SevCmd::SnpLaunchFinish,
        &mut snp_launch_finish(GCTX, 0, 0, 0, host_data),
    );
    let report = fw.guest_report(GCTX, &[0x33; 64], 0).unwrap();
    assert_eq!(report.as_bytes().len(), 0x4A0);
    assert_eq!(report.version.get(), 2);
    assert_eq!(report.policy.get(), POLICY);
    assert_eq!(report.host_data, host_data);
    assert_eq!(report.report_data, [0x33; 64]);
    assert_eq!(report.report_id_ma, [0xFF; 32]);
    assert_eq!(
        report.measurement.to_vec(),
        fw.snp_launch_digest(GCTX).unwrap().to_vec()
    );
    let certs = fw.certs();
    verify_report(&report, &certs.snp, None).unwrap();
    let ark = certs.snp.ark.public_key().unwrap();
    verify_report(&report, &certs.snp, Some(&ark)).unwrap();
    // Tampering breaks the signature.
    let mut bad = report;
    bad.measurement[0] ^= 1;
    assert!(verify_report(&bad, &certs.snp, None).is_err());
    // A chain from another chip does not verify against this ARK.
    let other = fw_with(psp_driver::sim::SimConfig {
        seed: [9; 32],
        ..Default::default()
    });
    assert!(verify_report(&report, &other.certs().snp, Some(&ark)).is_err());
    let mixed = SnpCertChain {
        vcek: other.certs().snp.vcek,
        ..certs.snp
    };
    assert!(verify_report(&report, &mixed, None).is_err());
    // The requested VMPL is echoed.
    assert_eq!(fw.guest_report(GCTX, &[0; 64], 2).unwrap().vmpl.get(), 2);
    // A guest launched with VCEK_DISABLED and no VLEK gets INVALID_KEY.
    let fw = snp_started(POLICY);
    ok(
        &fw,
        SevCmd::SnpLaunchFinish,
        &mut snp_launch_finish(GCTX, 0, 0, 4, [0; 32]),
    );
    assert_eq!(
        fw.guest_report(GCTX, &[0; 64], 0).unwrap_err(),
        S::InvalidKey
    );
}

#[test]
fn deterministic_from_the_seed() {
    let a = snp_started(POLICY);
    let b = snp_started(POLICY);
    for fw in [&a, &b] {
        snp_syn64k_launch(fw, false, 1);
        ok(
            fw,
            SevCmd::SnpLaunchFinish,
            &mut snp_launch_finish(GCTX, 0, 0, 0, [0; 32]),
        );
    }
    let ra = a.guest_report(GCTX, &[1; 64], 0).unwrap();
    let rb = b.guest_report(GCTX, &[1; 64], 0).unwrap();
    assert_eq!(ra.as_bytes(), rb.as_bytes());
    assert_eq!(
        a.mem().read_vec(pa_of(0xFFFF_0000), 4096).unwrap(),
        b.mem().read_vec(pa_of(0xFFFF_0000), 4096).unwrap()
    );
    let c = fw_with(psp_driver::sim::SimConfig {
        seed: [1; 32],
        ..Default::default()
    });
    assert_ne!(c.certs().snp.vcek, a.certs().snp.vcek);
}

fn id_keys() -> (SigningKey, SigningKey) {
    (
        SigningKey::from_slice(&[7u8; 48]).unwrap(),
        SigningKey::from_slice(&[9u8; 48]).unwrap(),
    )
}

#[test]
fn launch_finish_with_id_block_and_author_key() {
    let fw = snp_started(POLICY);
    snp_syn64k_launch(&fw, false, 1);
    let digest: [u8; 48] = hx("54d686bed4f38e22c5e3ec6b7fdbd7288e0c4175469bf7274fcbe4ab5837f97804371497a3ce833231b857a75e3054f2").try_into().unwrap();
    let block = IdBlock::new(digest, POLICY);
    // facts §3.6: the SYN64K ID block bytes.
    assert_eq!(
        hex::encode(&block.as_bytes()[0x30..]),
        format!("{}{}", "00".repeat(32), "01000000000000000000030000000000")
    );
    let (idk, authk) = id_keys();
    let auth = sign_id_block(&block, &idk, Some(&authk)).unwrap();
    let (id_pa, auth_pa) = (0x5100_0000u64, 0x5200_0000u64);
    fw.mem().write(id_pa, block.as_bytes()).unwrap();
    fw.mem().write(auth_pa, auth.as_bytes()).unwrap();

    // Wrong policy in the ID block: POLICY_FAILURE; wrong LD: BAD_MEASUREMENT.
    let mut wrong = block;
    wrong.policy.set(POLICY | 1 << 19);
    fw.mem().write(id_pa, wrong.as_bytes()).unwrap();
    assert_eq!(
        run(
            &fw,
            SevCmd::SnpLaunchFinish,
            &mut snp_launch_finish(GCTX, id_pa, auth_pa, 3, [0; 32])
        ),
        S::PolicyFailure
    );
    let mut wrong = block;
    wrong.ld[0] ^= 1;
    fw.mem().write(id_pa, wrong.as_bytes()).unwrap();
    assert_eq!(
        run(
            &fw,
            SevCmd::SnpLaunchFinish,
            &mut snp_launch_finish(GCTX, id_pa, auth_pa, 3, [0; 32])
        ),
        S::BadMeasurement
    );
    // A bad signature: BAD_SIGNATURE.
    fw.mem().write(id_pa, block.as_bytes()).unwrap();
    let mut bad_auth = auth;
    bad_auth.id_block_sig.r[0] ^= 1;
    fw.mem().write(auth_pa, bad_auth.as_bytes()).unwrap();
    assert_eq!(
        run(
            &fw,
            SevCmd::SnpLaunchFinish,
            &mut snp_launch_finish(GCTX, id_pa, auth_pa, 3, [0; 32])
        ),
        S::BadSignature
    );
    // Wrong algorithm: INVALID_PARAM.
    let mut bad_algo = auth;
    bad_algo.id_key_algo.set(2);
    fw.mem().write(auth_pa, bad_algo.as_bytes()).unwrap();
    assert_eq!(
        run(
            &fw,
            SevCmd::SnpLaunchFinish,
            &mut snp_launch_finish(GCTX, id_pa, auth_pa, 3, [0; 32])
        ),
        S::InvalidParam
    );

    fw.mem().write(auth_pa, auth.as_bytes()).unwrap();
    ok(
        &fw,
        SevCmd::SnpLaunchFinish,
        &mut snp_launch_finish(GCTX, id_pa, auth_pa, 3, [0; 32]),
    );
    let r = fw.guest_report(GCTX, &[0; 64], 0).unwrap();
    assert_eq!(r.id_key_digest, key_digest(&auth.id_key));
    assert_eq!(r.author_key_digest, key_digest(&auth.author_key));
    assert!(r.author_key_en());
    verify_report(&r, &fw.certs().snp, None).unwrap();
}

#[test]
fn id_key_digest_vector() {
    // facts §3.6: d = 1 (Q = G).
    let mut d = [0u8; 48];
    d[47] = 1;
    let k = SigningKey::from_slice(&d).unwrap();
    let pk = psp_driver::owner::cert::encode_public_key(k.verifying_key());
    assert_eq!(
        hex::encode(key_digest(&pk)),
        "01ce77b697886b46c6e363a9d02bbee2506e4b21ca4b3085f35f20e4cf66ac780e01e38aad53f973cbcea56e59a7b382"
    );
}

#[test]
fn cpuid_page_is_validated_and_corrected() {
    let fw = snp_started(POLICY);
    let mut page = vec![0u8; 4096];
    page[0..4].copy_from_slice(&1u32.to_le_bytes());
    // Leaf 7.0 with EBX bit 2 (not allowed by the default policy) and bit 0.
    page[0x10..0x14].copy_from_slice(&7u32.to_le_bytes());
    page[0x10 + 28..0x10 + 32].copy_from_slice(&0b101u32.to_le_bytes());
    assert_eq!(snp_page(&fw, 0x80_2000, 6, &page), S::InvalidParam);
    // The corrected table was written back unencrypted; the digest did not move.
    let back = fw.mem().read_vec(pa_of(0x80_2000), 4096).unwrap();
    assert_eq!(
        u32::from_le_bytes(back[0x2C..0x30].try_into().unwrap()),
        0b001
    );
    assert_eq!(fw.snp_launch_digest(GCTX).unwrap(), [0; 48]);
    // Too many entries: INVALID_PARAM, nothing written.
    let mut many = vec![0u8; 4096];
    many[0..4].copy_from_slice(&65u32.to_le_bytes());
    let fw = snp_started(POLICY);
    assert_eq!(snp_page(&fw, 0x80_2000, 6, &many), S::InvalidParam);
    assert_eq!(fw.mem().read_vec(pa_of(0x80_2000), 4096).unwrap(), many);
}

#[test]
fn launch_update_checks_in_firmware_order() {
    let fw = snp_started(POLICY);
    let pa = pa_of(0x20_0000);
    // Reserved bits: INVALID_PARAM (before anything else).
    let mut b = snp_launch_update(GCTX, pa, 1, false);
    b[12] = 1;
    assert_eq!(run(&fw, SevCmd::SnpLaunchUpdate, &mut b), S::InvalidParam);
    // Page not pre-guest: INVALID_PAGE_STATE.
    assert_eq!(
        run(
            &fw,
            SevCmd::SnpLaunchUpdate,
            &mut snp_launch_update(GCTX, pa, 1, false)
        ),
        S::InvalidPageState
    );
    // Wrong page size.
    fw.rmp_make_private(pa, 0x20_0000, ASID, false).unwrap();
    assert_eq!(
        run(
            &fw,
            SevCmd::SnpLaunchUpdate,
            &mut snp_launch_update(GCTX, pa, 1, true)
        ),
        S::InvalidPageSize
    );
    // Type 0 and 7: INVALID_PARAM.
    assert_eq!(
        run(
            &fw,
            SevCmd::SnpLaunchUpdate,
            &mut snp_launch_update(GCTX, pa, 0, false)
        ),
        S::InvalidParam
    );
    assert_eq!(
        run(
            &fw,
            SevCmd::SnpLaunchUpdate,
            &mut snp_launch_update(GCTX, pa, 7, false)
        ),
        S::InvalidParam
    );
    // VMSA on a 2M page: INVALID_PAGE_SIZE.
    let big = pa_of(0x4000_0000);
    fw.rmp_make_private(big, 0x4000_0000, ASID, true).unwrap();
    assert_eq!(
        run(
            &fw,
            SevCmd::SnpLaunchUpdate,
            &mut snp_launch_update(GCTX, big, 2, true)
        ),
        S::InvalidPageSize
    );
    // Page owned by another ASID: INVALID_PAGE_OWNER.
    let other = pa_of(0x30_0000);
    fw.rmp_make_private(other, 0x30_0000, 2, false).unwrap();
    assert_eq!(
        run(
            &fw,
            SevCmd::SnpLaunchUpdate,
            &mut snp_launch_update(GCTX, other, 1, false)
        ),
        S::InvalidPageOwner
    );
    // Not a context: INVALID_GUEST.
    assert_eq!(
        run(
            &fw,
            SevCmd::SnpLaunchUpdate,
            &mut snp_launch_update(0x1234_5000, pa, 1, false)
        ),
        S::InvalidGuest
    );
    // After LAUNCH_FINISH: INVALID_GUEST_STATE.
    ok(
        &fw,
        SevCmd::SnpLaunchFinish,
        &mut snp_launch_finish(GCTX, 0, 0, 0, [0; 32]),
    );
    assert_eq!(
        run(
            &fw,
            SevCmd::SnpLaunchUpdate,
            &mut snp_launch_update(GCTX, pa, 1, false)
        ),
        S::InvalidGuestState
    );
}

#[test]
fn launch_update_without_asid_is_inactive() {
    let fw = snp_launched_inactive(POLICY);
    let pa = pa_of(0);
    fw.rmp_make_private(pa, 0, ASID, false).unwrap();
    assert_eq!(
        run(
            &fw,
            SevCmd::SnpLaunchUpdate,
            &mut snp_launch_update(GCTX, pa, 1, false)
        ),
        S::Inactive
    );
    assert_eq!(
        run(
            &fw,
            SevCmd::SnpLaunchFinish,
            &mut snp_launch_finish(GCTX, 0, 0, 0, [0; 32])
        ),
        S::Inactive
    );
}

#[test]
fn platform_and_context_checks() {
    let fw = fw();
    // Before SNP_INIT: INVALID_PLATFORM_STATE.
    assert_eq!(
        run(&fw, SevCmd::SnpGctxCreate, &mut snp_addr(GCTX)),
        S::InvalidPlatformState
    );
    // Unaligned: INVALID_PARAM first.
    assert_eq!(
        run(&fw, SevCmd::SnpGctxCreate, &mut snp_addr(GCTX + 8)),
        S::InvalidParam
    );
    ok(&fw, SevCmd::SnpInit, &mut []);
    assert_eq!(run(&fw, SevCmd::SnpInit, &mut []), S::InvalidPlatformState);
    // Page not firmware-owned: INVALID_PAGE_STATE.
    assert_eq!(
        run(&fw, SevCmd::SnpGctxCreate, &mut snp_addr(GCTX)),
        S::InvalidPageState
    );
    fw.rmp_make_firmware(GCTX).unwrap();
    ok(&fw, SevCmd::SnpGctxCreate, &mut snp_addr(GCTX));
    assert_eq!(fw.rmp_entry(GCTX).state(), RmpState::Context);
    // Policy failures (facts §3.5).
    for bad in [
        0x10000u64,
        0x20000,
        0x30000 | 1 << 21,
        0x30000 | 2 << 8,
        0x30000 | 1 << 8 | 56,
    ] {
        assert_eq!(
            run(
                &fw,
                SevCmd::SnpLaunchStart,
                &mut snp_launch_start(GCTX, bad)
            ),
            S::PolicyFailure,
            "{bad:#x}"
        );
    }
    ok(
        &fw,
        SevCmd::SnpLaunchStart,
        &mut snp_launch_start(GCTX, 0x30000 | 1 << 8 | 55),
    );
    assert_eq!(
        run(
            &fw,
            SevCmd::SnpLaunchStart,
            &mut snp_launch_start(GCTX, POLICY)
        ),
        S::InvalidGuestState
    );
    // ACTIVATE: ASID out of the ES range / out of range.
    assert_eq!(
        run(&fw, SevCmd::SnpActivate, &mut snp_activate(GCTX, 0)),
        S::InvalidAsid
    );
    assert_eq!(
        run(&fw, SevCmd::SnpActivate, &mut snp_activate(GCTX, 12)),
        S::InvalidAsid
    );
    assert_eq!(
        run(&fw, SevCmd::SnpActivate, &mut snp_activate(GCTX, 99)),
        S::InvalidAsid
    );
    ok(&fw, SevCmd::SnpActivate, &mut snp_activate(GCTX, 3));
    assert_eq!(
        run(&fw, SevCmd::SnpActivate, &mut snp_activate(GCTX, 4)),
        S::Active
    );
    // DECOMMISSION: context back to firmware; the pending ASID is clean again.
    ok(&fw, SevCmd::SnpDecommission, &mut snp_addr(GCTX));
    assert_eq!(fw.rmp_entry(GCTX).state(), RmpState::Firmware);
    assert_eq!(fw.asid_state(3), Some(psp_driver::sim::AsidState::Clean));
    assert_eq!(
        run(
            &fw,
            SevCmd::SnpLaunchStart,
            &mut snp_launch_start(GCTX, POLICY)
        ),
        S::InvalidGuest
    );
}

#[test]
fn running_guest_decommission_dirties_the_asid() {
    let fw = snp_started(POLICY);
    ok(
        &fw,
        SevCmd::SnpLaunchFinish,
        &mut snp_launch_finish(GCTX, 0, 0, 0, [0; 32]),
    );
    assert_eq!(fw.asid_state(ASID), Some(psp_driver::sim::AsidState::InUse));
    ok(&fw, SevCmd::SnpDecommission, &mut snp_addr(GCTX));
    assert_eq!(fw.asid_state(ASID), Some(psp_driver::sim::AsidState::Dirty));
    // Re-activating a dirty ASID: DFFLUSH_REQUIRED; DF_FLUSH needs WBINVD first.
    ok(&fw, SevCmd::SnpGctxCreate, &mut snp_addr(GCTX));
    ok(
        &fw,
        SevCmd::SnpLaunchStart,
        &mut snp_launch_start(GCTX, POLICY),
    );
    assert_eq!(
        run(&fw, SevCmd::SnpActivate, &mut snp_activate(GCTX, ASID)),
        S::DfflushRequired
    );
    assert_eq!(run(&fw, SevCmd::SnpDfFlush, &mut []), S::WbinvdRequired);
    fw.wbinvd();
    ok(&fw, SevCmd::SnpDfFlush, &mut []);
    ok(&fw, SevCmd::SnpActivate, &mut snp_activate(GCTX, ASID));
}

#[test]
fn guest_status_reports_policy_asid_state() {
    let fw = snp_started(POLICY);
    let out = 0x5300_0000u64;
    let mut b = [GCTX.to_le_bytes(), out.to_le_bytes()].concat();
    ok(&fw, SevCmd::SnpGuestStatus, &mut b);
    let s = fw.mem().read_vec(out, 0x14).unwrap();
    assert_eq!(u64::from_le_bytes(s[0..8].try_into().unwrap()), POLICY);
    assert_eq!(u32::from_le_bytes(s[8..12].try_into().unwrap()), ASID);
    assert_eq!(s[12], 1);
}

/// Debian's OVMF.fd (facts §4.4), if installed with the expected hash.
/// facts §4.4: the ASEV items (gpa, length, section type) of Debian's OVMF.fd; its reset
/// EIP is 0x80_B004.
const DEBIAN_OVMF_ITEMS: [(u32, u32, u32); 5] = [
    (0x80_0000, 0x9000, 1),
    (0x80_A000, 0x3000, 1),
    (0x80_D000, 0x1000, 2),
    (0x80_E000, 0x1000, 3),
    (0x80_F000, 0x11000, 1),
];

fn debian_ovmf() -> Option<Vec<u8>> {
    let path = std::env::var("KVM_COCO_OVMF").unwrap_or_else(|_| "/usr/share/ovmf/OVMF.fd".into());
    let Ok(img) = std::fs::read(&path) else {
        kvm_coco_test_skip::skip(
            "OVMF",
            format_args!("cannot read {path}; install Debian's `ovmf` or set KVM_COCO_OVMF"),
        );
        return None;
    };
    if hex::encode(Sha256::digest(&img))
        != "7b456907dd0786d415999e801a1ac4637b8ed4d7cf5378cfc6edbe5e574dd773"
    {
        kvm_coco_test_skip::skip(
            "OVMF",
            format_args!("{path} is not Debian ovmf 2022.11-6+deb12u2; set KVM_COCO_OVMF"),
        );
        return None;
    }
    Some(img)
}

#[test]
fn debian_ovmf_matches_sev_snp_measure() {
    let Some(img) = debian_ovmf() else { return };
    let fw = snp_started(POLICY);
    snp_image_launch(&fw, &img, &DEBIAN_OVMF_ITEMS, 0x80_B004, false, 1);
    // facts §8.3: sev-snp-measure --mode snp --vcpus 1 --vcpu-type EPYC-v4.
    assert_eq!(
        ld(&fw),
        "11570979c77a0adb515761a702527c8b9e11554e730552621d950988613a3a75c6ff1703f540bd22a9beede8fe7a97e3"
    );
    // snp:ovmf-hash: the firmware pages alone.
    let fw = snp_started(POLICY);
    snp_image_launch(&fw, &img, &[], 0x80_B004, false, 0);
    assert_eq!(
        ld(&fw),
        "ba2c811512ef868474f239a21f7d7057d65a20de87a003c4f116e4fb1573183bfbcd75c3e99b2f558575a5d0094f73c6"
    );
}

#[test]
fn vcpu_counts_match_sev_snp_measure() {
    // sev-snp-measure 0.0.13 --mode snp --vcpu-type EPYC-v4 --ovmf syn64k.fd [K] --vcpus N,
    // run offline against the SYN64K recipe (facts §8.1).
    for (vcpus, kernel, want) in [
        (
            2,
            false,
            "b5605e79edf8236251f14cb87a4b0f3ae0c583e6a3e1d2cc48cdbbef0d12dc29196cf98ca4ec6591bc755204948e9f16",
        ),
        (
            2,
            true,
            "4f6755ccbefac815fd6d73444cb8f947a5d2cb40ba0a5b4dbdba71d1d860f87bd66e0f403ecb5f10549ae024870e6228",
        ),
        (
            4,
            false,
            "72bdc495b34f1a6b47bede01ab1b793d3425c193c6333c54f32e8651b4fff6e80e0d504d7e931fc1c23950356100022c",
        ),
        (
            4,
            true,
            "1b7e37015f4165d3f45363e93558d98d420b6e0476b84c3769b9580e0dc58241bf5850b09b3248cbc597b511663ccf17",
        ),
    ] {
        let fw = snp_started(POLICY);
        snp_syn64k_launch(&fw, kernel, vcpus);
        assert_eq!(ld(&fw), want, "{vcpus} vCPUs, kernel {kernel}");
    }
}

#[test]
fn debian_ovmf_four_vcpus() {
    let Some(img) = debian_ovmf() else { return };
    let fw = snp_started(POLICY);
    snp_image_launch(&fw, &img, &DEBIAN_OVMF_ITEMS, 0x80_B004, false, 4);
    // sev-snp-measure --mode snp --vcpus 4 --vcpu-type EPYC-v4 --ovmf OVMF.fd.
    assert_eq!(
        ld(&fw),
        "32ac9d7a17d28f7cd4404a4516d2f00519668c40ada2062351c36767e908eb3f090d66c33ab10f80150e00a4385b6d0f"
    );
}

#[test]
fn guest_request_returns_an_encrypted_signed_report() {
    use psp_driver::owner::guest_msg::{MSG_REPORT_REQ, MSG_REPORT_RSP, MsgReportReq, open, seal};
    use zerocopy::FromBytes;
    let policy = POLICY | 1 << 19;
    let fw = snp_started(policy);
    snp_syn64k_launch(&fw, false, 1);
    // Before LAUNCH_FINISH the guest cannot send messages.
    let (req_pa, res_pa) = (0x5400_0000u64, 0x5400_1000u64);
    let mut gr = [
        GCTX.to_le_bytes(),
        req_pa.to_le_bytes(),
        res_pa.to_le_bytes(),
    ]
    .concat();
    assert_eq!(
        run(&fw, SevCmd::SnpGuestRequest, &mut gr),
        S::InvalidGuestState
    );
    ok(
        &fw,
        SevCmd::SnpLaunchFinish,
        &mut snp_launch_finish(GCTX, 0, 0, 0, [0; 32]),
    );
    // The guest reads its VMPCKs from the secrets page (here through the debug interface).
    let secrets_pa = pa_of(0x80_1000);
    let out = 0x5500_0000u64;
    let mut dbg = [
        GCTX.to_le_bytes(),
        secrets_pa.to_le_bytes(),
        out.to_le_bytes(),
    ]
    .concat();
    ok(&fw, SevCmd::SnpDbgDecrypt, &mut dbg);
    let secrets = fw.mem().read_vec(out, 4096).unwrap();
    assert_eq!(u32::from_le_bytes(secrets[0..4].try_into().unwrap()), 3);
    let vmpck0: [u8; 32] = secrets[0x20..0x40].try_into().unwrap();
    let vmpck1: [u8; 32] = secrets[0x40..0x60].try_into().unwrap();
    assert_ne!(vmpck0, [0; 32]);
    assert_ne!(vmpck0, vmpck1);

    let mut req = MsgReportReq::read_from_bytes(&[0u8; 0x60][..]).unwrap();
    req.report_data = [0xAB; 64];
    let msg = seal(&vmpck0, 0, 1, MSG_REPORT_REQ, req.as_bytes()).unwrap();
    fw.mem().write(req_pa, &msg).unwrap();
    ok(&fw, SevCmd::SnpGuestRequest, &mut gr);
    let resp = fw.mem().read_vec(res_pa, 4096).unwrap();
    let (hdr, body) = open(&vmpck0, &resp).unwrap();
    assert_eq!((hdr.msg_type, hdr.msg_seqno.get()), (MSG_REPORT_RSP, 2));
    assert_eq!(u32::from_le_bytes(body[0..4].try_into().unwrap()), 0);
    assert_eq!(u32::from_le_bytes(body[4..8].try_into().unwrap()), 0x4A0);
    let report =
        psp_driver::report::AttestationReport::read_from_bytes(&body[0x20..0x20 + 0x4A0]).unwrap();
    assert_eq!(report.report_data, [0xAB; 64]);
    assert_eq!(
        hex::encode(report.measurement),
        "54d686bed4f38e22c5e3ec6b7fdbd7288e0c4175469bf7274fcbe4ab5837f97804371497a3ce833231b857a75e3054f2"
    );
    verify_report(&report, &fw.certs().snp, None).unwrap();
    // The response does not open with another key.
    assert!(open(&vmpck1, &resp).is_err());
    // Replaying sequence number 1: AEAD_OFLOW (the sequence check); 3 is next.
    assert_eq!(run(&fw, SevCmd::SnpGuestRequest, &mut gr), S::AeadOflow);
    // KEY_SEL 2 (VLEK only, none loaded): the response carries INVALID_KEY.
    let mut vlek = req;
    vlek.key_sel.set(2);
    fw.mem()
        .write(
            req_pa,
            &seal(&vmpck0, 0, 3, MSG_REPORT_REQ, vlek.as_bytes()).unwrap(),
        )
        .unwrap();
    ok(&fw, SevCmd::SnpGuestRequest, &mut gr);
    let (hdr, body) = open(&vmpck0, &fw.mem().read_vec(res_pa, 4096).unwrap()).unwrap();
    assert_eq!(
        (
            hdr.msg_seqno.get(),
            u32::from_le_bytes(body[0..4].try_into().unwrap())
        ),
        (4, 0x27)
    );
    // VMPCK1 with VMPL 0: the response carries INVALID_PARAM.
    let msg = seal(&vmpck1, 1, 1, MSG_REPORT_REQ, req.as_bytes()).unwrap();
    fw.mem().write(req_pa, &msg).unwrap();
    ok(&fw, SevCmd::SnpGuestRequest, &mut gr);
    let (_, body) = open(&vmpck1, &fw.mem().read_vec(res_pa, 4096).unwrap()).unwrap();
    assert_eq!(u32::from_le_bytes(body[0..4].try_into().unwrap()), 0x16);
    // A forged tag is refused.
    let mut msg = seal(&vmpck0, 0, 5, MSG_REPORT_REQ, req.as_bytes()).unwrap();
    msg[0] ^= 1;
    fw.mem().write(req_pa, &msg).unwrap();
    assert_eq!(run(&fw, SevCmd::SnpGuestRequest, &mut gr), S::InvalidParam);
}

#[test]
fn snp_platform_status_init_ex_and_reclaim() {
    let fw = fw();
    // SNP_INIT_EX with reserved bits: INVALID_PARAM.
    let mut ex = vec![0u8; 64];
    ex[0..4].copy_from_slice(&(1u32 << 7).to_le_bytes());
    assert_eq!(run(&fw, SevCmd::SnpInitEx, &mut ex), S::InvalidParam);
    ex[0..4].copy_from_slice(&1u32.to_le_bytes());
    ok(&fw, SevCmd::SnpInitEx, &mut ex);
    // SNP_PLATFORM_STATUS: the status page must be firmware-owned once SNP is up.
    let page = 0x5600_0000u64;
    assert_eq!(
        run(&fw, SevCmd::SnpPlatformStatus, &mut snp_addr(page)),
        S::InvalidPageState
    );
    fw.rmp_make_firmware(page).unwrap();
    ok(&fw, SevCmd::SnpPlatformStatus, &mut snp_addr(page));
    let s = fw.mem().read_vec(page, 32).unwrap();
    assert_eq!((s[0], s[1], s[2], s[3] & 1), (1, 55, 1, 1));
    assert_eq!(u32::from_le_bytes(s[12..16].try_into().unwrap()), 0);
    // Firmware pages cannot be made shared directly; SNP_PAGE_RECLAIM first.
    assert!(fw.rmp_make_shared(page, false).is_err());
    ok(&fw, SevCmd::SnpPageReclaim, &mut snp_addr(page));
    fw.rmp_make_shared(page, false).unwrap();
    assert_eq!(fw.rmp_entry(page).state(), RmpState::Hypervisor);
    // Reclaiming a hypervisor page: INVALID_PAGE_STATE.
    assert_eq!(
        run(&fw, SevCmd::SnpPageReclaim, &mut snp_addr(page)),
        S::InvalidPageState
    );
    // Unknown command ids: INVALID_COMMAND.
    assert_eq!(fw.execute(0x0FF, &mut []), S::InvalidCommand);
}
