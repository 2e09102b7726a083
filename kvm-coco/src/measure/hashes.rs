//! QEMU's kernel / initrd / command-line hash table for SEV, SEV-ES and SEV-SNP direct boot.
//!
//! When QEMU boots a kernel directly (`-kernel`, `-initrd`, `-append`) into a SEV guest, it
//! writes a table of their SHA-256 digests into the firmware's hash-table area and measures it
//! with the firmware, so the guest's launch digest covers the kernel it will boot. OVMF later
//! refuses a kernel whose digest does not match. Layout (all GUIDs in on-disk `bytes_le` form):
//!
//! ```text
//! GUID 9438d606-… ‖ u16 length = 0xA8
//!   ‖ cmdline entry ‖ initrd entry ‖ kernel entry     (each: GUID ‖ u16 0x32 ‖ SHA-256)
//!   ‖ zero padding to a multiple of 16 bytes (176 bytes in total)
//! ```

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::firmware::Guid;

/// `9438d606-4f22-4cc9-b479-a793d411fd21`: the table header GUID.
pub const SEV_HASH_TABLE_HEADER: Guid = Guid::new(
    0x9438d606,
    0x4f22,
    0x4cc9,
    [0xb4, 0x79, 0xa7, 0x93, 0xd4, 0x11, 0xfd, 0x21],
);
/// `97d02dd8-bd20-4c94-aa78-e7714d36ab2a`: the command-line entry.
pub const SEV_CMDLINE_ENTRY: Guid = Guid::new(
    0x97d02dd8,
    0xbd20,
    0x4c94,
    [0xaa, 0x78, 0xe7, 0x71, 0x4d, 0x36, 0xab, 0x2a],
);
/// `44baf731-3a2f-4bd7-9af1-41e29169781d`: the initrd entry.
pub const SEV_INITRD_ENTRY: Guid = Guid::new(
    0x44baf731,
    0x3a2f,
    0x4bd7,
    [0x9a, 0xf1, 0x41, 0xe2, 0x91, 0x69, 0x78, 0x1d],
);
/// `4de79437-abd2-427f-b835-d5b172d2045b`: the kernel entry.
pub const SEV_KERNEL_ENTRY: Guid = Guid::new(
    0x4de79437,
    0xabd2,
    0x427f,
    [0xb8, 0x35, 0xd5, 0xb1, 0x72, 0xd2, 0x04, 0x5b],
);

/// Length of one table entry (`GUID ‖ u16 ‖ SHA-256`).
pub const ENTRY_LEN: usize = 16 + 2 + 32;
/// Length of the unpadded table (`GUID ‖ u16 ‖ 3 entries`), the value of its length field.
pub const TABLE_LEN: usize = 16 + 2 + 3 * ENTRY_LEN;
/// Length of the table as QEMU measures it: padded with zeros to a multiple of 16.
pub const PADDED_TABLE_LEN: usize = TABLE_LEN.div_ceil(16) * 16;

/// The names of the three entries, in table order.
const ENTRY_NAMES: [&str; 3] = ["cmdline", "initrd", "kernel"];

/// Why [`SevHashes::parse_table`] refused a table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashTableError {
    /// Fewer bytes than the header.
    #[error("kernel hash table: {0} bytes, shorter than its 18-byte header")]
    TooShort(usize),
    /// The first 16 bytes are not the table GUID.
    #[error("kernel hash table: the header GUID is not 9438d606-4f22-4cc9-b479-a793d411fd21")]
    BadHeader,
    /// The length field is smaller than the header or larger than the bytes given.
    #[error("kernel hash table: length field {len} is outside 18..={available}")]
    BadLength {
        /// The length field.
        len: usize,
        /// The bytes given.
        available: usize,
    },
    /// An entry header is cut off, or its length field runs past the table.
    #[error("kernel hash table: entry at offset {offset} has a bad length ({len})")]
    BadEntry {
        /// Offset of the entry in the table.
        offset: usize,
        /// Its length field (0 if the entry header itself is cut off).
        len: usize,
    },
    /// A known entry appears twice.
    #[error("kernel hash table: the {0} entry appears twice")]
    Duplicate(&'static str),
    /// A known entry is missing.
    #[error("kernel hash table: no {0} entry")]
    Missing(&'static str),
}

/// The inputs of a direct kernel boot, borrowed.
#[derive(Debug, Clone, Copy, Default)]
pub struct DirectBoot<'a> {
    /// The kernel file as given to QEMU (`-kernel`).
    pub kernel: &'a [u8],
    /// The initrd (`-initrd`); `None` hashes as empty.
    pub initrd: Option<&'a [u8]>,
    /// The command line (`-append`); `None` hashes as the empty string.
    pub cmdline: Option<&'a str>,
}

/// The three SHA-256 digests QEMU puts into the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SevHashes {
    /// `SHA256(cmdline ‖ 0x00)`.
    pub cmdline: [u8; 32],
    /// `SHA256(initrd)` (of nothing without an initrd).
    pub initrd: [u8; 32],
    /// `SHA256(kernel)`.
    pub kernel: [u8; 32],
}

impl SevHashes {
    /// Hashes the inputs; the kernel and the initrd are hashed concurrently.
    pub fn compute(boot: &DirectBoot<'_>) -> Self {
        let (kernel, initrd) = rayon::join(
            || Sha256::digest(boot.kernel).into(),
            || Sha256::digest(boot.initrd.unwrap_or_default()).into(),
        );
        let mut c = Sha256::new();
        c.update(boot.cmdline.unwrap_or_default().as_bytes());
        c.update([0u8]);
        Self {
            cmdline: c.finalize().into(),
            initrd,
            kernel,
        }
    }

    /// Hashes the files QEMU would be given (`-kernel`, `-initrd`) and the command line,
    /// streaming the files through a small buffer instead of loading them, the kernel and
    /// the initrd concurrently. Equal to [`compute`](Self::compute) over the files' bytes.
    ///
    /// ```
    /// use kvm_coco::measure::hashes::{DirectBoot, SevHashes};
    /// let dir = std::env::temp_dir().join(format!("kvm-coco-doc-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
    /// let kernel = dir.join("bzImage");
    /// std::fs::write(&kernel, vec![0x90u8; 3 << 20])?;
    /// let streamed = SevHashes::from_files(&kernel, None, Some("console=ttyS0"))?;
    /// let loaded = SevHashes::compute(&DirectBoot {
    ///     kernel: &std::fs::read(&kernel)?,
    ///     initrd: None,
    ///     cmdline: Some("console=ttyS0"),
    /// });
    /// assert_eq!(streamed, loaded);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// The I/O error of opening or reading a file.
    pub fn from_files(
        kernel: &Path,
        initrd: Option<&Path>,
        cmdline: Option<&str>,
    ) -> std::io::Result<Self> {
        let (kernel, initrd) = rayon::join(
            || sha256_file(kernel),
            || initrd.map_or_else(|| Ok(Sha256::digest([]).into()), sha256_file),
        );
        let mut c = Sha256::new();
        c.update(cmdline.unwrap_or_default().as_bytes());
        c.update([0u8]);
        Ok(Self {
            cmdline: c.finalize().into(),
            initrd: initrd?,
            kernel: kernel?,
        })
    }

    /// Reads a table back, as the guest firmware does before it boots the kernel: the
    /// header GUID, the table length (at most `bytes.len()`; bytes after it, such as the
    /// padding, are ignored), then entries of `GUID ‖ u16 length ‖ SHA-256` in any order.
    /// Entries with other GUIDs are skipped by their length, as OVMF does; each of the
    /// three known entries must appear exactly once with a length of [`ENTRY_LEN`].
    ///
    /// ```
    /// use kvm_coco::measure::hashes::{DirectBoot, SevHashes};
    /// let h = SevHashes::compute(&DirectBoot { kernel: b"bzImage", ..Default::default() });
    /// assert_eq!(SevHashes::parse_table(&h.table())?, h);
    /// assert!(SevHashes::parse_table(&h.table()[..40]).is_err());
    /// # Ok::<(), kvm_coco::measure::hashes::HashTableError>(())
    /// ```
    ///
    /// # Errors
    /// [`HashTableError`], naming what is wrong and where.
    pub fn parse_table(bytes: &[u8]) -> Result<Self, HashTableError> {
        let header = bytes
            .get(..18)
            .ok_or(HashTableError::TooShort(bytes.len()))?;
        if header[..16] != SEV_HASH_TABLE_HEADER.0 {
            return Err(HashTableError::BadHeader);
        }
        let len = usize::from(u16::from_le_bytes([header[16], header[17]]));
        if len < 18 || len > bytes.len() {
            return Err(HashTableError::BadLength {
                len,
                available: bytes.len(),
            });
        }
        let mut found: [Option<[u8; 32]>; 3] = [None; 3];
        let mut off = 18;
        while off < len {
            let head = bytes.get(off..off + 18).filter(|_| off + 18 <= len).ok_or(
                HashTableError::BadEntry {
                    offset: off,
                    len: 0,
                },
            )?;
            let elen = usize::from(u16::from_le_bytes([head[16], head[17]]));
            if elen < 18 || off + elen > len {
                return Err(HashTableError::BadEntry {
                    offset: off,
                    len: elen,
                });
            }
            let slot = [SEV_CMDLINE_ENTRY, SEV_INITRD_ENTRY, SEV_KERNEL_ENTRY]
                .iter()
                .position(|g| head[..16] == g.0);
            if let Some(i) = slot {
                if elen != ENTRY_LEN {
                    return Err(HashTableError::BadEntry {
                        offset: off,
                        len: elen,
                    });
                }
                if found[i].is_some() {
                    return Err(HashTableError::Duplicate(ENTRY_NAMES[i]));
                }
                let mut h = [0u8; 32];
                h.copy_from_slice(&bytes[off + 18..off + ENTRY_LEN]);
                found[i] = Some(h);
            }
            off += elen;
        }
        match found {
            [Some(cmdline), Some(initrd), Some(kernel)] => Ok(Self {
                cmdline,
                initrd,
                kernel,
            }),
            _ => {
                let i = found.iter().position(Option::is_none).unwrap_or(0);
                Err(HashTableError::Missing(ENTRY_NAMES[i]))
            }
        }
    }

    /// The padded table, exactly as QEMU writes and measures it.
    pub fn table(&self) -> [u8; PADDED_TABLE_LEN] {
        let mut t = [0u8; PADDED_TABLE_LEN];
        t[..16].copy_from_slice(&SEV_HASH_TABLE_HEADER.0);
        t[16..18].copy_from_slice(&(TABLE_LEN as u16).to_le_bytes());
        for (i, (guid, hash)) in [
            (SEV_CMDLINE_ENTRY, &self.cmdline),
            (SEV_INITRD_ENTRY, &self.initrd),
            (SEV_KERNEL_ENTRY, &self.kernel),
        ]
        .into_iter()
        .enumerate()
        {
            let e = 18 + i * ENTRY_LEN;
            t[e..e + 16].copy_from_slice(&guid.0);
            t[e + 16..e + 18].copy_from_slice(&(ENTRY_LEN as u16).to_le_bytes());
            t[e + 18..e + ENTRY_LEN].copy_from_slice(hash);
        }
        t
    }
}

/// SHA-256 of a file, read through one reused 1 MiB buffer.
fn sha256_file(path: &Path) -> std::io::Result<[u8; 32]> {
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut h = Sha256::new();
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(h.finalize().into());
        }
        h.update(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // facts firmware-and-measurement.md §8.1: SYN64K side files and the resulting table.
    #[test]
    fn table_matches_facts_vector() {
        let kernel: Vec<u8> = (0..10000u32).map(|i| ((13 * i + 5) % 256) as u8).collect();
        let initrd = vec![0xABu8; 3000];
        let h = SevHashes::compute(&DirectBoot {
            kernel: &kernel,
            initrd: Some(&initrd),
            cmdline: Some("console=ttyS0"),
        });
        assert_eq!(
            hex::encode(h.table()),
            "06d63894224fc94cb479a793d411fd21a800d82dd09720bd944caa78e7714d36ab2a3200f18aae9b3c09e55bc3047ad361e2442d7c53372470b2958fb83293209a784f7131f7ba442f3ad74b9af141e29169781d32005f8f56d6cb3df6b1394d91f8814b806dd20005fe50bc36207b291cc1c10d1b873794e74dd2ab7f42b835d5b172d2045b32005438bbaf3e84daff499e05203d38184fa7003bbd25dbe59ea780229ab88590dc0000000000000000"
        );
        assert_eq!(PADDED_TABLE_LEN, 176);
    }
}
