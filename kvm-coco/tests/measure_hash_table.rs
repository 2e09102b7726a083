//! Reading QEMU's kernel hash table back ([`SevHashes::parse_table`]) from bytes built here
//! by hand from the layout in the facts (firmware-and-measurement §1.9: GUIDs in `bytes_le`
//! form, entries `GUID ‖ u16 0x32 ‖ SHA-256`, table length 0xA8, padded to 176 bytes), with
//! digests of known inputs taken from FIPS 180-2 / well-known SHA-256 values.

use kvm_coco::measure::hashes::{HashTableError, SevHashes};

/// `uuid.UUID(s).bytes_le`, written out by hand.
fn bytes_le(s: &str) -> [u8; 16] {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    let b: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let mut o = [0u8; 16];
    // time_low, time_mid, time_hi little-endian; the rest as written.
    o[..4].copy_from_slice(&[b[3], b[2], b[1], b[0]]);
    o[4..6].copy_from_slice(&[b[5], b[4]]);
    o[6..8].copy_from_slice(&[b[7], b[6]]);
    o[8..].copy_from_slice(&b[8..]);
    o
}

fn unhex(s: &str) -> [u8; 32] {
    let mut o = [0u8; 32];
    for (i, b) in o.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
    }
    o
}

/// SHA-256 of the empty string.
const SHA256_EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// SHA-256 of "abc" (FIPS 180-2, appendix B.1).
const SHA256_ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
/// SHA-256 of the single byte 0x00.
const SHA256_NUL: &str = "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d";

const HEADER: &str = "9438d606-4f22-4cc9-b479-a793d411fd21";
const CMDLINE: &str = "97d02dd8-bd20-4c94-aa78-e7714d36ab2a";
const INITRD: &str = "44baf731-3a2f-4bd7-9af1-41e29169781d";
const KERNEL: &str = "4de79437-abd2-427f-b835-d5b172d2045b";

fn entry(guid: &str, hash: &str) -> Vec<u8> {
    let mut e = bytes_le(guid).to_vec();
    e.extend_from_slice(&0x32u16.to_le_bytes());
    e.extend_from_slice(&unhex(hash));
    e
}

fn table(entries: &[Vec<u8>]) -> Vec<u8> {
    let body: usize = entries.iter().map(Vec::len).sum();
    let mut t = bytes_le(HEADER).to_vec();
    t.extend_from_slice(&((18 + body) as u16).to_le_bytes());
    for e in entries {
        t.extend_from_slice(e);
    }
    t.resize(t.len().div_ceil(16) * 16, 0);
    t
}

#[test]
fn a_hand_built_table_reads_back() {
    let t = table(&[
        entry(CMDLINE, SHA256_NUL),
        entry(INITRD, SHA256_EMPTY),
        entry(KERNEL, SHA256_ABC),
    ]);
    assert_eq!(t.len(), 176, "facts: padded to 176 bytes");
    assert_eq!(&t[16..18], &[0xA8, 0x00], "facts: length 0xA8");
    let h = SevHashes::parse_table(&t).unwrap();
    assert_eq!(h.cmdline, unhex(SHA256_NUL));
    assert_eq!(h.initrd, unhex(SHA256_EMPTY));
    assert_eq!(h.kernel, unhex(SHA256_ABC));
    // What QEMU would write for kernel "abc", no initrd, no command line: the same bytes.
    let q = SevHashes::compute(&kvm_coco::measure::hashes::DirectBoot {
        kernel: b"abc",
        initrd: None,
        cmdline: None,
    });
    assert_eq!(q.table().to_vec(), t);
}

#[test]
fn entries_in_another_order_and_unknown_entries_are_accepted() {
    let mut unknown = bytes_le("00000000-1111-2222-3333-444444444444").to_vec();
    unknown.extend_from_slice(&20u16.to_le_bytes());
    unknown.extend_from_slice(&[0xee, 0xee]);
    let t = table(&[
        entry(KERNEL, SHA256_ABC),
        unknown,
        entry(CMDLINE, SHA256_NUL),
        entry(INITRD, SHA256_EMPTY),
    ]);
    let h = SevHashes::parse_table(&t).unwrap();
    assert_eq!(h.kernel, unhex(SHA256_ABC));
    assert_eq!(h.cmdline, unhex(SHA256_NUL));
}

#[test]
fn malformed_tables_are_refused_with_the_reason() {
    let good = table(&[
        entry(CMDLINE, SHA256_NUL),
        entry(INITRD, SHA256_EMPTY),
        entry(KERNEL, SHA256_ABC),
    ]);
    assert_eq!(
        SevHashes::parse_table(&good[..10]),
        Err(HashTableError::TooShort(10))
    );
    let mut bad = good.clone();
    bad[0] ^= 1;
    assert_eq!(SevHashes::parse_table(&bad), Err(HashTableError::BadHeader));
    assert_eq!(
        SevHashes::parse_table(&good[..100]),
        Err(HashTableError::BadLength {
            len: 0xA8,
            available: 100
        })
    );
    let t = table(&[entry(CMDLINE, SHA256_NUL), entry(KERNEL, SHA256_ABC)]);
    assert_eq!(
        SevHashes::parse_table(&t),
        Err(HashTableError::Missing("initrd"))
    );
    let t = table(&[
        entry(CMDLINE, SHA256_NUL),
        entry(INITRD, SHA256_EMPTY),
        entry(INITRD, SHA256_EMPTY),
        entry(KERNEL, SHA256_ABC),
    ]);
    assert_eq!(
        SevHashes::parse_table(&t),
        Err(HashTableError::Duplicate("initrd"))
    );
    // An entry length that runs past the table.
    let mut t = good.clone();
    t[18 + 16] = 0x40;
    assert_eq!(
        SevHashes::parse_table(&t),
        Err(HashTableError::BadEntry {
            offset: 18,
            len: 0x40
        })
    );
    // A known entry with the wrong length.
    let mut e = entry(INITRD, SHA256_EMPTY);
    e[16] = 0x30;
    e.truncate(0x30);
    let t = table(&[entry(CMDLINE, SHA256_NUL), e, entry(KERNEL, SHA256_ABC)]);
    assert!(matches!(
        SevHashes::parse_table(&t),
        Err(HashTableError::BadEntry { len: 0x30, .. })
    ));
}
