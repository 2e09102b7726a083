//! Built-in guest images, so `vmm-cli launch` works on a fresh machine with nothing else
//! installed.
//!
//! * [`tiny_firmware`]: a 64 KiB OVMF-like image with an OVMF footer table, SEV metadata
//!   (ASEV), a TDVF descriptor, a kernel-hash table and a reset vector: the SYN64K recipe
//!   of the project's firmware facts (§8.1), so its measurements can be checked against
//!   sev-snp-measure's published values for that image.
//! * [`REAL_MODE_GUEST`]: a plain real-mode program for ordinary KVM VMs.

/// `mov dx, 0x3f8; mov al, 'K'; out dx, al; hlt`: writes `K` to COM1 and halts.
pub(crate) const REAL_MODE_GUEST: [u8; 7] = [0xba, 0xf8, 0x03, 0xb0, b'K', 0xee, 0xf4];

/// The byte the real-mode guest writes.
pub(crate) const REAL_MODE_OUTPUT: u8 = b'K';

/// A GUID in its on-disk (little-endian fields) form from its text form.
fn guid(text: &str) -> [u8; 16] {
    let hexs: String = text.chars().filter(|c| *c != '-').collect();
    let b: Vec<u8> = (0..hexs.len() / 2)
        .filter_map(|i| hexs.get(2 * i..2 * i + 2))
        .filter_map(|s| u8::from_str_radix(s, 16).ok())
        .collect();
    let mut g = [0u8; 16];
    if b.len() == 16 {
        g[..4].copy_from_slice(&[b[3], b[2], b[1], b[0]]);
        g[4..6].copy_from_slice(&[b[5], b[4]]);
        g[6..8].copy_from_slice(&[b[7], b[6]]);
        g[8..].copy_from_slice(&b[8..]);
    }
    g
}

const GUID_FOOTER: &str = "96b582de-1fb2-45f7-baea-a366c55a082d";
const GUID_RESET: &str = "00f771de-1a7e-4fcb-890e-68c77e2fb44e";
const GUID_SEV_META: &str = "dc886566-984a-4798-a75e-5585a7bf67cc";
const GUID_HASH_TABLE: &str = "7255371f-3a3b-4b04-927b-1da6efa8d454";
const GUID_SECRET: &str = "4c2eb361-7d9b-4cc3-8081-127c90d3d294";
const GUID_TDX_META: &str = "e47a6535-984a-4798-865e-4685a7bf8ec2";
const GUID_TDVF: &str = "e9eaf9f3-168e-44d5-a8eb-7f4d8738f6ae";

fn le32(v: &mut Vec<u8>, x: u32) {
    v.extend_from_slice(&x.to_le_bytes());
}

/// The built-in 64 KiB firmware image (SYN64K, firmware facts §8.1).
pub(crate) fn tiny_firmware() -> Vec<u8> {
    const S: usize = 0x10000;
    let mut img: Vec<u8> = (0..S).map(|i| (i % 251) as u8).collect();
    let mut put = |off: usize, b: &[u8]| {
        if let Some(d) = img.get_mut(off..off + b.len()) {
            d.copy_from_slice(b);
        }
    };
    // TDVF: GUID, then the descriptor with four sections.
    put(S - 0xF10, &guid(GUID_TDVF));
    let sections: [(u32, u32, u64, u64, u32, u32); 4] = [
        (0x0, 0x4000, 0xFFFF_0000, 0x4000, 1, 0),
        (0x4000, 0xC000, 0xFFFF_4000, 0xC000, 0, 1),
        (0, 0, 0x80_9000, 0x2000, 2, 0),
        (0, 0, 0x80_0000, 0x6000, 3, 0),
    ];
    let mut d = b"TDVF".to_vec();
    le32(&mut d, 16 + 32 * sections.len() as u32);
    le32(&mut d, 1);
    le32(&mut d, sections.len() as u32);
    for (off, raw, addr, mem, ty, attr) in sections {
        le32(&mut d, off);
        le32(&mut d, raw);
        d.extend_from_slice(&addr.to_le_bytes());
        d.extend_from_slice(&mem.to_le_bytes());
        le32(&mut d, ty);
        le32(&mut d, attr);
    }
    put(S - 0xF00, &d);
    // ASEV: SNP_SEC_MEM, SNP_SECRETS, CPUID, kernel hashes, SNP_SEC_MEM.
    let items: [(u32, u32, u32); 5] = [
        (0x80_0000, 0x1000, 1),
        (0x80_1000, 0x1000, 2),
        (0x80_2000, 0x1000, 3),
        (0x80_3000, 0x1000, 0x10),
        (0x80_4000, 0x2000, 1),
    ];
    let mut a = b"ASEV".to_vec();
    le32(&mut a, 16 + 12 * items.len() as u32);
    le32(&mut a, 1);
    le32(&mut a, items.len() as u32);
    for (gpa, size, ty) in items {
        le32(&mut a, gpa);
        le32(&mut a, size);
        le32(&mut a, ty);
    }
    put(S - 0xE00, &a);
    // Footer table, entries `data ‖ u16 len ‖ GUID`, ending 32 bytes before the end.
    let mut table = Vec::new();
    let mut entry = |data: &[u8], g: &str| {
        table.extend_from_slice(data);
        table.extend_from_slice(&((data.len() + 18) as u16).to_le_bytes());
        table.extend_from_slice(&guid(g));
    };
    entry(&0xF00u32.to_le_bytes(), GUID_TDX_META);
    entry(&0xE00u32.to_le_bytes(), GUID_SEV_META);
    entry(
        &[0x80_3C00u32.to_le_bytes(), 0x400u32.to_le_bytes()].concat(),
        GUID_HASH_TABLE,
    );
    entry(
        &[0x80_5000u32.to_le_bytes(), 0x1000u32.to_le_bytes()].concat(),
        GUID_SECRET,
    );
    entry(&0x80_4004u32.to_le_bytes(), GUID_RESET);
    table.extend_from_slice(&((table.len() + 18) as u16).to_le_bytes());
    table.extend_from_slice(&guid(GUID_FOOTER));
    put(S - 32 - table.len(), &table);
    img
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_firmware_is_syn64k() {
        use sha2::Digest;
        // SHA-256 of SYN64K from the firmware facts §8.1 (independent recipe output).
        let d = sha2::Sha256::digest(tiny_firmware());
        assert_eq!(
            hex::encode(d),
            "dac893496e53bf1a5643d761be49395899612ebe0178de53d93e1d6c373736fb"
        );
    }

    #[test]
    fn guid_is_little_endian_on_disk() {
        assert_eq!(
            guid("00f771de-1a7e-4fcb-890e-68c77e2fb44e")[..4],
            [0xde, 0x71, 0xf7, 0x00]
        );
    }
}
