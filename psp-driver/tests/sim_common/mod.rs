//! Test helpers written from the facts, independently of the code under test:
//! the SYN64K image (facts §8.1), the QEMU/KVM initial VMSA (facts §2.2), the
//! kernel hash table (facts §1.9) and a firmware driver for launch flows.
#![allow(dead_code)]

use psp_driver::sim::{SimConfig, SimFirmware, mem::PhysMem};
use psp_driver::{SevCmd, SevRetCode, Transport};
use sha2::{Digest, Sha256};
use std::sync::Arc;

pub fn guid_le(s: &str) -> [u8; 16] {
    let h: String = s.chars().filter(|c| *c != '-').collect();
    let b = hex::decode(h).unwrap();
    let mut o = [0u8; 16];
    o[0..4].copy_from_slice(&[b[3], b[2], b[1], b[0]]);
    o[4..6].copy_from_slice(&[b[5], b[4]]);
    o[6..8].copy_from_slice(&[b[7], b[6]]);
    o[8..].copy_from_slice(&b[8..]);
    o
}

pub const SYN_SIZE: usize = 0x10000;

/// The SYN64K synthetic firmware image (facts §8.1).
pub fn syn64k() -> Vec<u8> {
    let s = SYN_SIZE;
    let mut img: Vec<u8> = (0..s).map(|i| (i % 251) as u8).collect();
    let put = |img: &mut Vec<u8>, off: usize, b: &[u8]| img[off..off + b.len()].copy_from_slice(b);
    // TDVF block.
    put(
        &mut img,
        s - 0xF10,
        &guid_le("e9eaf9f3-168e-44d5-a8eb-7f4d8738f6ae"),
    );
    let mut tdvf = Vec::new();
    tdvf.extend_from_slice(b"TDVF");
    for v in [144u32, 1, 4] {
        tdvf.extend_from_slice(&v.to_le_bytes());
    }
    for (off, raw, addr, msize, ty, attr) in [
        (0u32, 0x4000u32, 0xFFFF_0000u64, 0x4000u64, 1u32, 0u32),
        (0x4000, 0xC000, 0xFFFF_4000, 0xC000, 0, 1),
        (0, 0, 0x80_9000, 0x2000, 2, 0),
        (0, 0, 0x80_0000, 0x6000, 3, 0),
    ] {
        tdvf.extend_from_slice(&off.to_le_bytes());
        tdvf.extend_from_slice(&raw.to_le_bytes());
        tdvf.extend_from_slice(&addr.to_le_bytes());
        tdvf.extend_from_slice(&msize.to_le_bytes());
        tdvf.extend_from_slice(&ty.to_le_bytes());
        tdvf.extend_from_slice(&attr.to_le_bytes());
    }
    put(&mut img, s - 0xF00, &tdvf);
    // ASEV block.
    let mut asev = Vec::new();
    asev.extend_from_slice(b"ASEV");
    for v in [76u32, 1, 5] {
        asev.extend_from_slice(&v.to_le_bytes());
    }
    for (gpa, size, ty) in ASEV_ITEMS {
        for v in [gpa, size, ty] {
            asev.extend_from_slice(&v.to_le_bytes());
        }
    }
    put(&mut img, s - 0xE00, &asev);
    // Footer table.
    let mut t = Vec::new();
    let mut entry = |data: &[u8], guid: &str| {
        t.extend_from_slice(data);
        t.extend_from_slice(&((data.len() + 18) as u16).to_le_bytes());
        t.extend_from_slice(&guid_le(guid));
    };
    entry(
        &0x0F00u32.to_le_bytes(),
        "e47a6535-984a-4798-865e-4685a7bf8ec2",
    );
    entry(
        &0x0E00u32.to_le_bytes(),
        "dc886566-984a-4798-a75e-5585a7bf67cc",
    );
    entry(
        &[0x0080_3C00u32.to_le_bytes(), 0x400u32.to_le_bytes()].concat(),
        "7255371f-3a3b-4b04-927b-1da6efa8d454",
    );
    entry(
        &[0x0080_5000u32.to_le_bytes(), 0x1000u32.to_le_bytes()].concat(),
        "4c2eb361-7d9b-4cc3-8081-127c90d3d294",
    );
    entry(
        &0x0080_4004u32.to_le_bytes(),
        "00f771de-1a7e-4fcb-890e-68c77e2fb44e",
    );
    t.extend_from_slice(&136u16.to_le_bytes());
    t.extend_from_slice(&guid_le("96b582de-1fb2-45f7-baea-a366c55a082d"));
    assert_eq!(t.len(), 136);
    put(&mut img, 0xFF58, &t);
    img
}

/// ASEV items of SYN64K: (gpa, size, type).
pub const ASEV_ITEMS: [(u32, u32, u32); 5] = [
    (0x80_0000, 0x1000, 1),
    (0x80_1000, 0x1000, 2),
    (0x80_2000, 0x1000, 3),
    (0x80_3000, 0x1000, 0x10),
    (0x80_4000, 0x2000, 1),
];
pub const AP_EIP: u32 = 0x80_4004;
pub const HASH_TABLE_GPA: u64 = 0x80_3C00;

pub fn kernel_bin() -> Vec<u8> {
    (0..10000u32).map(|i| ((13 * i + 5) % 256) as u8).collect()
}
pub fn initrd_bin() -> Vec<u8> {
    vec![0xAB; 3000]
}

/// The padded 176-byte QEMU hash table (facts §1.9).
pub fn hash_table(kernel: &[u8], initrd: &[u8], cmdline: &str) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&guid_le("9438d606-4f22-4cc9-b479-a793d411fd21"));
    t.extend_from_slice(&168u16.to_le_bytes());
    let mut c = cmdline.as_bytes().to_vec();
    c.push(0);
    for (guid, data) in [
        ("97d02dd8-bd20-4c94-aa78-e7714d36ab2a", c.as_slice()),
        ("44baf731-3a2f-4bd7-9af1-41e29169781d", initrd),
        ("4de79437-abd2-427f-b835-d5b172d2045b", kernel),
    ] {
        t.extend_from_slice(&guid_le(guid));
        t.extend_from_slice(&50u16.to_le_bytes());
        t.extend_from_slice(&Sha256::digest(data));
    }
    t.resize(176, 0);
    t
}

/// The QEMU/KVM initial VMSA (facts §2.2) for `eip`, vCPU signature `sig` and
/// SEV_FEATURES `features`.
pub fn vmsa(eip: u32, sig: u32, features: u64) -> Vec<u8> {
    let mut v = vec![0u8; 4096];
    let seg = |v: &mut Vec<u8>, off: usize, sel: u16, attr: u16, limit: u32, base: u64| {
        v[off..off + 2].copy_from_slice(&sel.to_le_bytes());
        v[off + 2..off + 4].copy_from_slice(&attr.to_le_bytes());
        v[off + 4..off + 8].copy_from_slice(&limit.to_le_bytes());
        v[off + 8..off + 16].copy_from_slice(&base.to_le_bytes());
    };
    seg(&mut v, 0x00, 0, 0x93, 0xFFFF, 0);
    seg(
        &mut v,
        0x10,
        0xF000,
        0x9B,
        0xFFFF,
        (eip & 0xFFFF_0000) as u64,
    );
    for off in [0x20, 0x30, 0x40, 0x50] {
        seg(&mut v, off, 0, 0x93, 0xFFFF, 0);
    }
    seg(&mut v, 0x60, 0, 0, 0xFFFF, 0);
    seg(&mut v, 0x70, 0, 0x82, 0xFFFF, 0);
    seg(&mut v, 0x80, 0, 0, 0xFFFF, 0);
    seg(&mut v, 0x90, 0, 0x8B, 0xFFFF, 0);
    let q = |v: &mut Vec<u8>, off: usize, x: u64| v[off..off + 8].copy_from_slice(&x.to_le_bytes());
    q(&mut v, 0xD0, 0x1000);
    q(&mut v, 0x148, 0x40);
    q(&mut v, 0x158, 0x10);
    q(&mut v, 0x160, 0x400);
    q(&mut v, 0x168, 0xFFFF_0FF0);
    q(&mut v, 0x170, 0x2);
    q(&mut v, 0x178, (eip & 0xFFFF) as u64);
    q(&mut v, 0x268, 0x0007_0406_0007_0406);
    q(&mut v, 0x310, sig as u64);
    q(&mut v, 0x3B0, features);
    q(&mut v, 0x3E8, 1);
    v[0x408..0x40C].copy_from_slice(&0x1F80u32.to_le_bytes());
    v[0x410..0x412].copy_from_slice(&0x037Fu16.to_le_bytes());
    v
}

pub const EPYC_V4_SIG: u32 = 0x80_0F12;

pub fn fw() -> SimFirmware {
    SimFirmware::new(SimConfig::default(), Arc::new(PhysMem::new()))
}

pub fn fw_with(cfg: SimConfig) -> SimFirmware {
    SimFirmware::new(cfg, Arc::new(PhysMem::new()))
}

pub fn run(fw: &SimFirmware, cmd: SevCmd, buf: &mut [u8]) -> SevRetCode {
    fw.submit(cmd, buf).status
}

pub fn ok(fw: &SimFirmware, cmd: SevCmd, buf: &mut [u8]) {
    let s = run(fw, cmd, buf);
    assert_eq!(s, SevRetCode::Success, "{cmd:?} failed");
}

// Command buffer builders, from the packed layouts of facts §1.7 / §3.4.
pub fn b_u32s(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn launch_update_data(handle: u32, pa: u64, len: u32) -> Vec<u8> {
    let mut b = vec![0u8; 20];
    b[0..4].copy_from_slice(&handle.to_le_bytes());
    b[8..16].copy_from_slice(&pa.to_le_bytes());
    b[16..20].copy_from_slice(&len.to_le_bytes());
    b
}

pub fn snp_addr(pa: u64) -> Vec<u8> {
    pa.to_le_bytes().to_vec()
}

pub fn snp_launch_start(gctx: u64, policy: u64) -> Vec<u8> {
    let mut b = vec![0u8; 0x30];
    b[0..8].copy_from_slice(&gctx.to_le_bytes());
    b[8..16].copy_from_slice(&policy.to_le_bytes());
    b
}

pub fn snp_activate(gctx: u64, asid: u32) -> Vec<u8> {
    let mut b = vec![0u8; 12];
    b[0..8].copy_from_slice(&gctx.to_le_bytes());
    b[8..12].copy_from_slice(&asid.to_le_bytes());
    b
}

pub fn snp_launch_update(gctx: u64, pa: u64, page_type: u8, huge: bool) -> Vec<u8> {
    let mut b = vec![0u8; 0x20];
    b[0..8].copy_from_slice(&gctx.to_le_bytes());
    let f = u32::from(huge) | (page_type as u32) << 1;
    b[8..12].copy_from_slice(&f.to_le_bytes());
    b[16..24].copy_from_slice(&pa.to_le_bytes());
    b
}

pub fn snp_launch_finish(
    gctx: u64,
    id_block: u64,
    id_auth: u64,
    flags: u64,
    host_data: [u8; 32],
) -> Vec<u8> {
    let mut b = vec![0u8; 0x40];
    b[0..8].copy_from_slice(&gctx.to_le_bytes());
    b[8..16].copy_from_slice(&id_block.to_le_bytes());
    b[16..24].copy_from_slice(&id_auth.to_le_bytes());
    b[24..32].copy_from_slice(&flags.to_le_bytes());
    b[32..64].copy_from_slice(&host_data);
    b
}

pub const GCTX: u64 = 0x7000_0000;
pub const ASID: u32 = 1;
/// Host PA backing guest GPA `gpa` in these tests.
pub fn pa_of(gpa: u64) -> u64 {
    0x0010_0000_0000 + gpa
}
pub const VMSA_PA: u64 = 0x6000_0000;

/// SNP platform up, a context at [`GCTX`] launched with `policy`, no ASID yet.
pub fn snp_launched_inactive(policy: u64) -> SimFirmware {
    let fw = fw();
    ok(&fw, SevCmd::SnpInit, &mut []);
    fw.rmp_make_firmware(GCTX).unwrap();
    ok(&fw, SevCmd::SnpGctxCreate, &mut snp_addr(GCTX));
    ok(
        &fw,
        SevCmd::SnpLaunchStart,
        &mut snp_launch_start(GCTX, policy),
    );
    fw
}

/// SNP platform up, a context at [`GCTX`], launched with `policy`, activated with [`ASID`].
pub fn snp_started(policy: u64) -> SimFirmware {
    let fw = snp_launched_inactive(policy);
    ok(&fw, SevCmd::SnpActivate, &mut snp_activate(GCTX, ASID));
    fw
}

/// An OCA key (fixed test scalar) and its self-signed OCA certificate, the owner chain
/// PEK_CERT_IMPORT expects (facts §6).
pub fn self_signed_oca() -> (p384::ecdsa::SigningKey, psp_driver::owner::cert::SevCert) {
    use psp_driver::owner::cert::{SevCert, algo, usage};
    let oca_key = p384::ecdsa::SigningKey::from_slice(&[0x42; 48]).unwrap();
    let mut oca = SevCert::new(
        oca_key.verifying_key(),
        usage::OCA,
        algo::ECDSA_SHA256,
        (1, 55),
    );
    oca.sign(0, &oca_key, usage::OCA, algo::ECDSA_SHA256)
        .unwrap();
    (oca_key, oca)
}

/// Writes `data` (one page) at the PA for `gpa`, makes it pre-guest and runs SNP_LAUNCH_UPDATE.
pub fn snp_page(fw: &SimFirmware, gpa: u64, page_type: u8, data: &[u8]) -> SevRetCode {
    let pa = pa_of(gpa);
    fw.mem().write(pa, data).unwrap();
    fw.rmp_make_private(pa, gpa, ASID, false).unwrap();
    run(
        fw,
        SevCmd::SnpLaunchUpdate,
        &mut snp_launch_update(GCTX, pa, page_type, false),
    )
}

/// Feeds the SYN64K SNP launch in the sev-snp-measure order (facts §3.8).
pub fn snp_syn64k_launch(fw: &SimFirmware, kernel: bool, vcpus: usize) {
    snp_image_launch(fw, &syn64k(), &ASEV_ITEMS, AP_EIP, kernel, vcpus);
}

/// Feeds an SNP launch of `img` with its ASEV `items` (facts §3.8).
pub fn snp_image_launch(
    fw: &SimFirmware,
    img: &[u8],
    items: &[(u32, u32, u32)],
    ap_eip: u32,
    kernel: bool,
    vcpus: usize,
) {
    let base = 0x1_0000_0000u64 - img.len() as u64;
    for (i, page) in img.chunks(4096).enumerate() {
        assert_eq!(
            snp_page(fw, base + (i * 4096) as u64, 1, page),
            SevRetCode::Success
        );
    }
    for &(gpa, size, ty) in items {
        for p in 0..(size / 4096) {
            let g = (gpa + p * 4096) as u64;
            let zero = vec![0u8; 4096];
            let st = match ty {
                1 => snp_page(fw, g, 3, &zero),
                2 => snp_page(fw, g, 5, &zero),
                3 => snp_page(fw, g, 6, &zero),
                0x10 if kernel => {
                    let mut page = vec![0u8; 4096];
                    let t = hash_table(&kernel_bin(), &initrd_bin(), "console=ttyS0");
                    let off = (HASH_TABLE_GPA & 0xFFF) as usize;
                    page[off..off + t.len()].copy_from_slice(&t);
                    snp_page(fw, g, 1, &page)
                }
                0x10 => snp_page(fw, g, 3, &zero),
                _ => unreachable!(),
            };
            assert_eq!(st, SevRetCode::Success, "ASEV item {gpa:#x} type {ty}");
        }
    }
    for cpu in 0..vcpus {
        let eip = if cpu == 0 { 0xFFFF_FFF0 } else { ap_eip };
        let pa = VMSA_PA + (cpu * 4096) as u64;
        fw.mem().write(pa, &vmsa(eip, EPYC_V4_SIG, 1)).unwrap();
        fw.rmp_make_private(pa, 0xFFFF_FFFF_F000, ASID, false)
            .unwrap();
        ok(
            fw,
            SevCmd::SnpLaunchUpdate,
            &mut snp_launch_update(GCTX, pa, 2, false),
        );
    }
}
