//! Synthetic OVMF-like firmware images for demos, tests and hardware-free launches.
//!
//! A synthetic image is a tiny stand-in for OVMF / TDVF: a byte pattern overlaid with the
//! structures [`FirmwareImage::parse`](super::firmware::FirmwareImage::parse) looks for and
//! the launch planner measures:
//!
//! * the OVMF GUIDed footer table, ending 32 bytes before the image end;
//! * SEV metadata ("ASEV" at `size − 0xE00`): SNP_SEC_MEM, SNP_SECRETS, CPUID and
//!   SNP_KERNEL_HASHES sections;
//! * the SEV-ES reset block (the AP reset EIP), the kernel-hash-table and secret-block
//!   footer entries;
//! * TDVF metadata (GUID at `size − 0xF10`, "TDVF" descriptor at `size − 0xF00`).
//!
//! The layout follows the SYN64K recipe of the project's firmware facts
//! (`firmware-and-measurement.md` §8.1). [`syn64k`] is that image bit for bit (SHA-256
//! `dac89349…36fb`), so measurements of it can be compared with sev-snp-measure's output
//! for the same file; [`syn128k`], [`synnohash`] and [`synnoasev`] vary every part of the
//! layout. [`SyntheticImage`] builds any other combination.
//!
//! The code in the images is not executable: a synthetic image can be measured and launched
//! up to the point where a vCPU would run the firmware.
//!
//! # Example
//!
//! ```
//! use kvm_coco::measure::{firmware::FirmwareImage, synthetic};
//!
//! let image = synthetic::syn64k();
//! let fw = FirmwareImage::parse(&image)?;
//! assert_eq!(image.len(), 0x10000);
//! assert_eq!(fw.reset_eip(), Some(0x80_4004));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use super::firmware::{FOOTER_ENTRY_HEADER, FOOTER_TABLE_END_FROM_IMAGE_END, Guid};

/// Offset of the TDVF GUID from the end of the image (the descriptor follows 16 bytes later).
pub const TDVF_GUID_FROM_END: usize = 0xF10;
/// Offset of the "TDVF" descriptor from the end of the image (the footer's TDX entry data).
pub const TDVF_DESCRIPTOR_FROM_END: usize = 0xF00;
/// Offset of the "ASEV" SEV metadata from the end of the image (the footer's SEV entry data).
pub const SEV_METADATA_FROM_END: usize = 0xE00;

/// One TDVF section descriptor (`TDVF_SECTION`, 32 bytes on disk).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyntheticTdvfSection {
    /// Offset of the section's raw data in the image.
    pub data_offset: u32,
    /// Size of the raw data in the image (0 for memory-only sections).
    pub raw_size: u32,
    /// Guest physical address the section is mapped at.
    pub memory_address: u64,
    /// Size of the section in guest memory.
    pub memory_data_size: u64,
    /// Section type: 0 BFV, 1 CFV, 2 TD_HOB, 3 TempMem.
    pub section_type: u32,
    /// Attributes: bit 0 MR_EXTEND, bit 1 PAGE_AUG.
    pub attributes: u32,
}

/// One SEV metadata section (`gpa, size, type`, 12 bytes on disk).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyntheticSevSection {
    /// Guest physical address of the section.
    pub gpa: u32,
    /// Size of the section in bytes.
    pub size: u32,
    /// Section type: 1 SNP_SEC_MEM, 2 SNP_SECRETS, 3 CPUID, 4 SVSM_CAA,
    /// 0x10 SNP_KERNEL_HASHES.
    pub section_type: u32,
}

/// Recipe of a synthetic image, laid out like SYN64K (facts §8.1).
///
/// Footer entries are written in a fixed order: TDX metadata offset, SEV metadata offset,
/// hash table, secret block, reset block, then the closing footer entry. A part set to
/// `None` is left out of the image and of the footer table.
#[derive(Debug, Clone)]
pub struct SyntheticImage {
    /// Image size in bytes.
    pub size: usize,
    /// Fill byte for each offset before the structures are written.
    pub pattern: fn(usize) -> u8,
    /// TDVF sections; `Some` writes the TDVF GUID, the descriptor and the TDX footer entry.
    pub tdvf: Option<Vec<SyntheticTdvfSection>>,
    /// SEV metadata sections; `Some` writes "ASEV" and the SEV metadata footer entry.
    pub sev_metadata: Option<Vec<SyntheticSevSection>>,
    /// Kernel hash table `(gpa, size)`; a GPA of 0 means "no hash support" to QEMU.
    pub hash_table: Option<(u32, u32)>,
    /// Legacy SEV secret block `(gpa, size)`.
    pub secret_block: Option<(u32, u32)>,
    /// SEV-ES AP reset EIP (the reset-block entry).
    pub reset_eip: Option<u32>,
}

/// Why a [`SyntheticImage`] cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyntheticError {
    /// A structure does not fit in the image at its fixed place.
    #[error(
        "{what} ({len} bytes, {from_end:#x} from the end) does not fit in a {size:#x}-byte image"
    )]
    DoesNotFit {
        /// The structure.
        what: &'static str,
        /// Its length.
        len: usize,
        /// Distance of its start from the end of the image.
        from_end: usize,
        /// The image size.
        size: usize,
    },
    /// The footer table or a descriptor is longer than its length field can say.
    #[error("{what} is too long ({len} bytes) for its length field")]
    TooLong {
        /// The structure.
        what: &'static str,
        /// Its length.
        len: usize,
    },
}

/// Writes `bytes` `from_end` bytes before the end of `img`.
fn put(
    img: &mut [u8],
    what: &'static str,
    from_end: usize,
    bytes: &[u8],
) -> Result<(), SyntheticError> {
    let size = img.len();
    let err = SyntheticError::DoesNotFit {
        what,
        len: bytes.len(),
        from_end,
        size,
    };
    let start = size.checked_sub(from_end).ok_or(err.clone())?;
    let dst = start
        .checked_add(bytes.len())
        .and_then(|end| img.get_mut(start..end))
        .ok_or(err)?;
    dst.copy_from_slice(bytes);
    Ok(())
}

/// The "SIGNATURE, u32 length, u32 version 1, u32 count" header of ASEV and TDVF.
fn descriptor_header(
    what: &'static str,
    signature: &[u8; 4],
    entry_len: usize,
    count: usize,
) -> Result<Vec<u8>, SyntheticError> {
    let len = count
        .checked_mul(entry_len)
        .and_then(|l| l.checked_add(16))
        .unwrap_or(usize::MAX);
    let too_long = SyntheticError::TooLong { what, len };
    let len32 = u32::try_from(len).map_err(|_| too_long.clone())?;
    let count32 = u32::try_from(count).map_err(|_| too_long)?;
    let mut d = Vec::with_capacity(len);
    d.extend_from_slice(signature);
    for v in [len32, 1, count32] {
        d.extend_from_slice(&v.to_le_bytes());
    }
    Ok(d)
}

impl SyntheticImage {
    /// The SYN64K recipe (facts §8.1); [`build`](Self::build) gives [`syn64k`].
    pub fn syn64k() -> Self {
        Self {
            size: 0x10000,
            pattern: |i| (i % 251) as u8,
            tdvf: Some(tdvf(&[
                (0x0, 0x4000, 0xFFFF_0000, 0x4000, 1, 0),
                (0x4000, 0xC000, 0xFFFF_4000, 0xC000, 0, 1),
                (0, 0, 0x80_9000, 0x2000, 2, 0),
                (0, 0, 0x80_0000, 0x6000, 3, 0),
            ])),
            sev_metadata: Some(sev(&[
                (0x80_0000, 0x1000, 1),
                (0x80_1000, 0x1000, 2),
                (0x80_2000, 0x1000, 3),
                (0x80_3000, 0x1000, 0x10),
                (0x80_4000, 0x2000, 1),
            ])),
            hash_table: Some((0x80_3C00, 0x400)),
            secret_block: Some((0x80_5000, 0x1000)),
            reset_eip: Some(0x80_4004),
        }
    }

    /// The 128 KiB recipe: every SEV section type (CPUID before SECRETS, SVSM_CAA), the hash
    /// table at the end of its page, TDVF with a BFV whose raw data is shorter than its memory.
    pub fn syn128k() -> Self {
        Self {
            size: 0x20000,
            pattern: |i| ((i * 7 + 3) % 256) as u8 ^ (i >> 12) as u8,
            tdvf: Some(tdvf(&[
                (0x0, 0x10000, 0xFFFE_0000, 0x10000, 0, 1),
                (0x10000, 0x8000, 0xFFFF_0000, 0x10000, 0, 1),
                (0x18000, 0x8000, 0xFFFD_0000, 0x8000, 1, 0),
                (0, 0, 0x90_0000, 0x3000, 2, 0),
                (0, 0, 0x81_0000, 0x4000, 3, 0),
            ])),
            sev_metadata: Some(sev(&[
                (0x80_0000, 0x3000, 1),
                (0x80_3000, 0x1000, 3),
                (0x80_4000, 0x1000, 2),
                (0x80_5000, 0x1000, 4),
                (0x80_6000, 0x1000, 0x10),
                (0x80_7000, 0x2000, 1),
            ])),
            hash_table: Some((0x80_6F40, 0x400)),
            secret_block: Some((0x80_4000, 0x1000)),
            reset_eip: Some(0x80_B004),
        }
    }

    /// The 64 KiB recipe without kernel-hash support (hash GPA 0) and without a secret block.
    pub fn synnohash() -> Self {
        Self {
            size: 0x10000,
            pattern: |i| ((i / 3) % 256) as u8,
            tdvf: Some(tdvf(&[
                (0x8000, 0x8000, 0xFFFF_8000, 0x8000, 0, 1),
                (0x0, 0x8000, 0xFFFF_0000, 0x8000, 1, 0),
            ])),
            sev_metadata: Some(sev(&[
                (0x80_0000, 0x4000, 1),
                (0x80_4000, 0x1000, 2),
                (0x80_5000, 0x1000, 3),
            ])),
            hash_table: Some((0, 0)),
            secret_block: None,
            reset_eip: Some(0x80_1000),
        }
    }

    /// The 32 KiB recipe without SEV and TDVF metadata: reset block and hash table only.
    pub fn synnoasev() -> Self {
        Self {
            size: 0x8000,
            pattern: |i| (i.wrapping_mul(2_654_435_761) >> 13) as u8,
            tdvf: None,
            sev_metadata: None,
            hash_table: Some((0x80_5000, 0x1000)),
            secret_block: None,
            reset_eip: Some(0x80_2004),
        }
    }

    /// Builds the image.
    ///
    /// # Errors
    ///
    /// [`SyntheticError::DoesNotFit`] when `size` is too small for a structure at its fixed
    /// place, [`SyntheticError::TooLong`] when a descriptor or the footer table outgrows its
    /// length field. Structures may overlap each other (tests use that for broken images).
    pub fn build(&self) -> Result<Vec<u8>, SyntheticError> {
        let mut img: Vec<u8> = (0..self.size).map(self.pattern).collect();
        let mut table: Vec<u8> = Vec::new();
        let mut entry = |data: &[u8], guid: Guid| -> Result<(), SyntheticError> {
            let len = data.len() + FOOTER_ENTRY_HEADER;
            let len16 = u16::try_from(len).map_err(|_| SyntheticError::TooLong {
                what: "footer entry",
                len,
            })?;
            table.extend_from_slice(data);
            table.extend_from_slice(&len16.to_le_bytes());
            table.extend_from_slice(&guid.0);
            Ok(())
        };
        if let Some(secs) = &self.tdvf {
            put(
                &mut img,
                "TDVF GUID",
                TDVF_GUID_FROM_END,
                &Guid::TDVF_METADATA.0,
            )?;
            let mut d = descriptor_header("TDVF descriptor", b"TDVF", 32, secs.len())?;
            for s in secs {
                d.extend_from_slice(&s.data_offset.to_le_bytes());
                d.extend_from_slice(&s.raw_size.to_le_bytes());
                d.extend_from_slice(&s.memory_address.to_le_bytes());
                d.extend_from_slice(&s.memory_data_size.to_le_bytes());
                d.extend_from_slice(&s.section_type.to_le_bytes());
                d.extend_from_slice(&s.attributes.to_le_bytes());
            }
            put(&mut img, "TDVF descriptor", TDVF_DESCRIPTOR_FROM_END, &d)?;
            entry(
                &(TDVF_DESCRIPTOR_FROM_END as u32).to_le_bytes(),
                Guid::TDX_METADATA_OFFSET,
            )?;
        }
        if let Some(items) = &self.sev_metadata {
            let mut d = descriptor_header("SEV metadata", b"ASEV", 12, items.len())?;
            for s in items {
                for v in [s.gpa, s.size, s.section_type] {
                    d.extend_from_slice(&v.to_le_bytes());
                }
            }
            put(&mut img, "SEV metadata", SEV_METADATA_FROM_END, &d)?;
            entry(
                &(SEV_METADATA_FROM_END as u32).to_le_bytes(),
                Guid::OVMF_SEV_METADATA,
            )?;
        }
        let pair = |(a, b): (u32, u32)| [a.to_le_bytes(), b.to_le_bytes()].concat();
        if let Some(h) = self.hash_table {
            entry(&pair(h), Guid::SEV_HASH_TABLE_RV)?;
        }
        if let Some(s) = self.secret_block {
            entry(&pair(s), Guid::SEV_SECRET_BLOCK)?;
        }
        if let Some(r) = self.reset_eip {
            entry(&r.to_le_bytes(), Guid::SEV_ES_RESET_BLOCK)?;
        }
        let total = table.len() + FOOTER_ENTRY_HEADER;
        let total16 = u16::try_from(total).map_err(|_| SyntheticError::TooLong {
            what: "footer table",
            len: total,
        })?;
        table.extend_from_slice(&total16.to_le_bytes());
        table.extend_from_slice(&Guid::OVMF_TABLE_FOOTER.0);
        put(
            &mut img,
            "footer table",
            FOOTER_TABLE_END_FROM_IMAGE_END + table.len(),
            &table,
        )?;
        Ok(img)
    }
}

/// TDVF sections from `(DataOffset, RawSize, Addr, MemSize, Type, Attr)` tuples.
fn tdvf(secs: &[(u32, u32, u64, u64, u32, u32)]) -> Vec<SyntheticTdvfSection> {
    secs.iter()
        .map(
            |&(
                data_offset,
                raw_size,
                memory_address,
                memory_data_size,
                section_type,
                attributes,
            )| {
                SyntheticTdvfSection {
                    data_offset,
                    raw_size,
                    memory_address,
                    memory_data_size,
                    section_type,
                    attributes,
                }
            },
        )
        .collect()
}

/// SEV sections from `(gpa, size, type)` tuples.
fn sev(items: &[(u32, u32, u32)]) -> Vec<SyntheticSevSection> {
    items
        .iter()
        .map(|&(gpa, size, section_type)| SyntheticSevSection {
            gpa,
            size,
            section_type,
        })
        .collect()
}

/// Builds one of the fixed recipes; they fit by construction (the tests below build each).
fn fixed(recipe: SyntheticImage) -> Vec<u8> {
    recipe.build().unwrap_or_default()
}

/// SYN64K (facts §8.1): 64 KiB with TDVF and SEV metadata, a kernel-hash table, a secret
/// block and a reset block, so SNP direct boot can be measured.
pub fn syn64k() -> Vec<u8> {
    fixed(SyntheticImage::syn64k())
}

/// The image of [`SyntheticImage::syn128k`].
pub fn syn128k() -> Vec<u8> {
    fixed(SyntheticImage::syn128k())
}

/// The image of [`SyntheticImage::synnohash`].
pub fn synnohash() -> Vec<u8> {
    fixed(SyntheticImage::synnohash())
}

/// The image of [`SyntheticImage::synnoasev`].
pub fn synnoasev() -> Vec<u8> {
    fixed(SyntheticImage::synnoasev())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn syn64k_matches_the_facts_sha256() {
        // SHA-256 of SYN64K from the firmware facts §8.1 (produced there by an independent
        // implementation of the recipe).
        assert_eq!(
            hex::encode(Sha256::digest(syn64k())),
            "dac893496e53bf1a5643d761be49395899612ebe0178de53d93e1d6c373736fb"
        );
    }

    #[test]
    fn fixed_recipes_build_at_their_size() {
        for r in [
            SyntheticImage::syn64k(),
            SyntheticImage::syn128k(),
            SyntheticImage::synnohash(),
            SyntheticImage::synnoasev(),
        ] {
            assert_eq!(r.build().map(|i| i.len()), Ok(r.size));
        }
    }

    #[test]
    fn footer_table_sits_where_the_facts_say() {
        // Facts §8.1: the SYN64K footer table is 136 bytes at 0xFF58..0xFFDF, its last
        // entry is `u16 136 ‖ 96b582de-…` and the last 32 bytes keep the pattern.
        let img = syn64k();
        assert_eq!(img[0xFFCE..0xFFD0], 136u16.to_le_bytes());
        assert_eq!(img[0xFFD0..0xFFD4], [0xde, 0x82, 0xb5, 0x96]);
        assert_eq!(img[0xFF58..0xFF5C], 0xF00u32.to_le_bytes());
        assert!((0xFFE0..0x10000).all(|i| img[i] == (i % 251) as u8));
    }

    #[test]
    fn too_small_images_are_errors() {
        let r = SyntheticImage {
            size: 0x800,
            ..SyntheticImage::syn64k()
        };
        assert_eq!(
            r.build(),
            Err(SyntheticError::DoesNotFit {
                what: "TDVF GUID",
                len: 16,
                from_end: 0xF10,
                size: 0x800
            })
        );
        let r = SyntheticImage {
            size: 0x40,
            ..SyntheticImage::synnoasev()
        };
        assert!(matches!(
            r.build(),
            Err(SyntheticError::DoesNotFit {
                what: "footer table",
                ..
            })
        ));
    }
}
