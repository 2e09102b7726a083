//! Parsing OVMF / TDVF firmware images into a typed description.
//!
//! OVMF builds for confidential guests describe themselves through a *GUIDed footer table*
//! that ends 32 bytes before the end of the image: walking backwards from the footer entry
//! (`96b582de-1fb2-45f7-baea-a366c55a082d`), each entry is `data ‖ u16 entry_len ‖ GUID`
//! with `entry_len = len(data) + 18`. QEMU reads the entries that matter for launching:
//!
//! | entry | GUID | data | parsed into |
//! |---|---|---|---|
//! | SEV-ES reset block | `00f771de-…` | u32 AP reset EIP | [`FirmwareImage::reset_eip`] |
//! | SEV metadata | `dc886566-…` | u32 offset from the end to the "ASEV" header | [`FirmwareImage::sev_metadata`] |
//! | SEV hash table | `7255371f-…` | u32 GPA, u32 size | [`FirmwareImage::hash_table`] |
//! | SEV secret block | `4c2eb361-…` | u32 GPA, u32 size | [`FirmwareImage::secret_block`] |
//! | TDX metadata | `e47a6535-…` | u32 offset from the end to the "TDVF" descriptor | [`FirmwareImage::tdvf`] |
//!
//! [`FirmwareImage::parse`] borrows the image and reads the footer table, rejecting an
//! inconsistent table with a [`FirmwareError`] naming what is wrong and at which byte offset.
//! The entries are decoded at the same time, but a malformed entry or metadata table does not
//! make the image unusable: each mode of measurement reads only what it needs, as QEMU does
//! and as the reference calculators do (SEV and SEV-ES: the image, the reset block and the
//! hash-table entry; SNP: also the SEV metadata; TDX: the TDVF metadata alone), and the plan
//! for that mode reports the error of what it reads ([`FirmwareImage::checked_sev_metadata`]
//! and the other `checked_` accessors). An image without a footer table is valid (a plain SEV
//! guest can still measure it); what a launch needs from it is checked when a plan is built.
//!
//! The SEV metadata is read as sev-snp-measure 0.0.13 reads it: a section of size zero is
//! accepted and adds nothing (edk2's IntelTdx build lists its SVSM_CAA and SNP_SEC_MEM
//! sections that way), the SNP_SECRETS and CPUID sections are one page at their GPA whatever
//! size they declare, sections may overlap each other or the firmware, and a header may be
//! longer than its descriptors. Refused, naming the section: an unknown section type, a
//! ZERO-page section (SNP_SEC_MEM, SVSM_CAA, SNP_KERNEL_HASHES) whose size is not a multiple
//! of 4 KiB (the tool refuses these too), and, beyond the tool, a section that adds pages at
//! a GPA that is not 4 KiB aligned (no launch can add a page there: the launch commands take
//! a frame number). A TDVF section of size zero is likewise accepted and adds nothing, as
//! the reference MRTD calculation treats it; the other TDVF checks are QEMU's.

use std::fmt;

use thiserror::Error;

/// Size of an OVMF footer-table entry header (`u16 length ‖ GUID`).
pub const FOOTER_ENTRY_HEADER: usize = 18;

/// Distance from the end of the image to the end of the footer table.
pub const FOOTER_TABLE_END_FROM_IMAGE_END: usize = 32;

/// A UEFI GUID stored in its mixed-endian on-disk form (`uuid.bytes_le`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// Builds the on-disk form of the GUID `d1-d2-d3-d4[0..2]-d4[2..8]`.
    pub const fn new(d1: u32, d2: u16, d3: u16, d4: [u8; 8]) -> Self {
        let a = d1.to_le_bytes();
        let b = d2.to_le_bytes();
        let c = d3.to_le_bytes();
        Self([
            a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d4[0], d4[1], d4[2], d4[3], d4[4],
            d4[5], d4[6], d4[7],
        ])
    }

    /// `96b582de-1fb2-45f7-baea-a366c55a082d`: the footer entry that closes the table.
    pub const OVMF_TABLE_FOOTER: Self = Self::new(
        0x96b582de,
        0x1fb2,
        0x45f7,
        [0xba, 0xea, 0xa3, 0x66, 0xc5, 0x5a, 0x08, 0x2d],
    );
    /// `00f771de-1a7e-4fcb-890e-68c77e2fb44e`: the SEV-ES AP reset block.
    pub const SEV_ES_RESET_BLOCK: Self = Self::new(
        0x00f771de,
        0x1a7e,
        0x4fcb,
        [0x89, 0x0e, 0x68, 0xc7, 0x7e, 0x2f, 0xb4, 0x4e],
    );
    /// `dc886566-984a-4798-a75e-5585a7bf67cc`: offset of the "ASEV" SEV metadata.
    pub const OVMF_SEV_METADATA: Self = Self::new(
        0xdc886566,
        0x984a,
        0x4798,
        [0xa7, 0x5e, 0x55, 0x85, 0xa7, 0xbf, 0x67, 0xcc],
    );
    /// `7255371f-3a3b-4b04-927b-1da6efa8d454`: where QEMU puts the kernel hash table.
    pub const SEV_HASH_TABLE_RV: Self = Self::new(
        0x7255371f,
        0x3a3b,
        0x4b04,
        [0x92, 0x7b, 0x1d, 0xa6, 0xef, 0xa8, 0xd4, 0x54],
    );
    /// `4c2eb361-7d9b-4cc3-8081-127c90d3d294`: the legacy SEV secret block.
    pub const SEV_SECRET_BLOCK: Self = Self::new(
        0x4c2eb361,
        0x7d9b,
        0x4cc3,
        [0x80, 0x81, 0x12, 0x7c, 0x90, 0xd3, 0xd2, 0x94],
    );
    /// `e47a6535-984a-4798-865e-4685a7bf8ec2`: offset of the TDVF metadata.
    pub const TDX_METADATA_OFFSET: Self = Self::new(
        0xe47a6535,
        0x984a,
        0x4798,
        [0x86, 0x5e, 0x46, 0x85, 0xa7, 0xbf, 0x8e, 0xc2],
    );
    /// `e9eaf9f3-168e-44d5-a8eb-7f4d8738f6ae`: the GUID right before the "TDVF" descriptor.
    pub const TDVF_METADATA: Self = Self::new(
        0xe9eaf9f3,
        0x168e,
        0x44d5,
        [0xa8, 0xeb, 0x7f, 0x4d, 0x87, 0x38, 0xf6, 0xae],
    );
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
            u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            u16::from_le_bytes([b[4], b[5]]),
            u16::from_le_bytes([b[6], b[7]]),
            b[8],
            b[9],
            b[10],
            b[11],
            b[12],
            b[13],
            b[14],
            b[15]
        )
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({self})")
    }
}

/// Why a firmware image was rejected. Every variant names the byte offset in the image.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum FirmwareError {
    /// A structure runs past the end of the image (or before its start).
    #[error("{what} at offset {offset:#x} needs {need} bytes but the image is {len:#x} bytes")]
    Truncated {
        /// The structure being read.
        what: &'static str,
        /// Where it starts (may be the offset a table pointed at).
        offset: u64,
        /// Bytes it needs.
        need: u64,
        /// Image length.
        len: usize,
    },
    /// The footer's total length does not describe a table inside the image.
    #[error("footer table at {offset:#x} claims {claimed} bytes, only {available} are available")]
    TableLength {
        /// Offset of the footer entry.
        offset: usize,
        /// Length the footer claims.
        claimed: usize,
        /// Bytes actually available before the footer (plus the footer itself).
        available: usize,
    },
    /// A footer-table entry's length is too small or runs out of the table.
    #[error("footer-table entry {guid} at {offset:#x} has length {len}, {problem}")]
    EntryLength {
        /// The entry's GUID.
        guid: Guid,
        /// Offset of the entry's length field.
        offset: usize,
        /// Its length field.
        len: usize,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// Bytes left at the start of the footer table that do not form an entry.
    #[error("footer table has {len} stray bytes at {offset:#x}")]
    StrayTableBytes {
        /// Where they start.
        offset: usize,
        /// How many.
        len: usize,
    },
    /// Two footer-table entries with the same GUID.
    #[error("duplicate footer-table entry {guid} at {offset:#x} (first at {first:#x})")]
    DuplicateEntry {
        /// The GUID.
        guid: Guid,
        /// Offset of the second entry's data.
        offset: usize,
        /// Offset of the first entry's data.
        first: usize,
    },
    /// A known footer entry's data is too short for its fields.
    #[error("footer entry {guid} at {offset:#x} has {len} data bytes, needs {need}")]
    EntryTooShort {
        /// The GUID.
        guid: Guid,
        /// Offset of the entry's data.
        offset: usize,
        /// Data length.
        len: usize,
        /// Bytes its fields need.
        need: usize,
    },
    /// A required GUID is missing.
    #[error("{what}: GUID {guid} not found at {offset:#x}")]
    MissingGuid {
        /// What the GUID marks.
        what: &'static str,
        /// The expected GUID.
        guid: Guid,
        /// Where it was expected.
        offset: usize,
    },
    /// A metadata header has the wrong signature.
    #[error("{what} at {offset:#x}: signature {found:02x?}, expected {expected:?}")]
    BadSignature {
        /// The header.
        what: &'static str,
        /// Its offset.
        offset: usize,
        /// The four bytes found.
        found: [u8; 4],
        /// The expected signature.
        expected: &'static str,
    },
    /// A metadata header has an unsupported version.
    #[error("{what} at {offset:#x}: version {version}, expected 1")]
    BadVersion {
        /// The header.
        what: &'static str,
        /// Its offset.
        offset: usize,
        /// The version found.
        version: u32,
    },
    /// A metadata header's length does not match its entry count.
    #[error(
        "{what} at {offset:#x}: length {claimed} does not match {count} entries ({expected} bytes)"
    )]
    HeaderLength {
        /// The header.
        what: &'static str,
        /// Its offset.
        offset: usize,
        /// The length field.
        claimed: u32,
        /// The entry count.
        count: u32,
        /// The length the count implies.
        expected: u64,
    },
    /// A section has an unknown type or attribute bits.
    #[error("{what} #{index} at {offset:#x}: unknown {field} {value:#x}")]
    UnknownValue {
        /// The table.
        what: &'static str,
        /// Section index.
        index: usize,
        /// Offset of the section descriptor.
        offset: usize,
        /// Which field.
        field: &'static str,
        /// Its value.
        value: u64,
    },
    /// A section is misaligned, not whole pages, or lies outside the range it must lie in.
    #[error("{what} #{index} at {offset:#x}: {problem}")]
    SectionOutOfRange {
        /// The table.
        what: &'static str,
        /// Section index.
        index: usize,
        /// Offset of the section descriptor.
        offset: usize,
        /// What is wrong.
        problem: String,
    },
    /// Two TDVF sections cover the same guest memory.
    #[error("{what} #{second} at {offset:#x} overlaps #{first}")]
    SectionOverlap {
        /// The table.
        what: &'static str,
        /// The earlier section.
        first: usize,
        /// The later section.
        second: usize,
        /// Offset of the later section's descriptor.
        offset: usize,
    },
}

/// One entry of the OVMF footer table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FooterEntry<'a> {
    /// The entry's GUID.
    pub guid: Guid,
    /// Offset of its data in the image.
    pub offset: usize,
    /// The data (borrowed from the image).
    pub data: &'a [u8],
}

/// A guest-physical range given by a footer entry (`u32 base, u32 size`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpaRange {
    /// Base GPA. 0 means "not supported" for the hash table.
    pub gpa: u32,
    /// Size in bytes.
    pub size: u32,
}

/// Type of an "ASEV" SEV metadata section (OVMF `OvmfSevMetadataSectionDesc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SevSectionType {
    /// 1: memory OVMF pre-validates; SNP measures it as ZERO pages (UNMEASURED on GCE).
    SnpSecMem,
    /// 2: the SNP secrets page.
    SnpSecrets,
    /// 3: the SNP CPUID page.
    Cpuid,
    /// 4: the SVSM calling-area page; ZERO pages.
    SvsmCaa,
    /// 0x10: the page that holds QEMU's kernel/initrd/cmdline hash table.
    SnpKernelHashes,
}

impl SevSectionType {
    /// The on-disk value.
    pub const fn raw(self) -> u32 {
        match self {
            Self::SnpSecMem => 1,
            Self::SnpSecrets => 2,
            Self::Cpuid => 3,
            Self::SvsmCaa => 4,
            Self::SnpKernelHashes => 0x10,
        }
    }

    fn from_raw(v: u32) -> Option<Self> {
        Some(match v {
            1 => Self::SnpSecMem,
            2 => Self::SnpSecrets,
            3 => Self::Cpuid,
            4 => Self::SvsmCaa,
            0x10 => Self::SnpKernelHashes,
            _ => return None,
        })
    }
}

/// One "ASEV" metadata section: guest memory QEMU must add to an SNP guest's initial image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SevSection {
    /// Guest-physical base (4 KiB aligned unless the section adds nothing).
    pub gpa: u32,
    /// Size in bytes, as the table declares it: a multiple of 4 KiB, possibly zero, for the
    /// ZERO-page sections; anything for SNP_SECRETS and CPUID (see
    /// [`measured_len`](Self::measured_len)).
    pub size: u32,
    /// What the section is.
    pub kind: SevSectionType,
}

impl SevSection {
    /// Bytes the section adds to an SNP guest: one page for SNP_SECRETS and CPUID whatever
    /// size they declare, `size` for the others (zero: the section adds nothing), as
    /// sev-snp-measure measures them.
    pub const fn measured_len(&self) -> u32 {
        match self.kind {
            SevSectionType::SnpSecrets | SevSectionType::Cpuid => 4096,
            _ => self.size,
        }
    }
}

/// The "ASEV" SEV metadata of an OVMF image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SevMetadata {
    /// Offset of the "ASEV" header in the image.
    pub offset: usize,
    /// Sections in table order (the order QEMU adds them in).
    pub sections: Vec<SevSection>,
}

/// Type of a TDVF metadata section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TdvfSectionType {
    /// 0: boot firmware volume (code).
    Bfv,
    /// 1: configuration firmware volume (variables).
    Cfv,
    /// 2: TD HOB, built by the VMM.
    TdHob,
    /// 3: temporary memory.
    TempMem,
    /// 4: permanent memory (td-shim).
    PermMem,
    /// 5: payload (td-shim).
    Payload,
    /// 6: payload parameters (td-shim).
    PayloadParam,
}

impl TdvfSectionType {
    fn from_raw(v: u32) -> Option<Self> {
        Some(match v {
            0 => Self::Bfv,
            1 => Self::Cfv,
            2 => Self::TdHob,
            3 => Self::TempMem,
            4 => Self::PermMem,
            5 => Self::Payload,
            6 => Self::PayloadParam,
            _ => return None,
        })
    }
}

/// TDVF section attribute bit 0: the VMM extends the section's pages into MRTD (MR.EXTEND).
pub const TDVF_ATTR_MR_EXTEND: u32 = 1 << 0;
/// TDVF section attribute bit 1: the pages are added after boot (PAGE.AUG), not measured.
pub const TDVF_ATTR_PAGE_AUG: u32 = 1 << 1;

/// One TDVF metadata section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TdvfSection {
    /// Offset of the section's initial content in the image.
    pub data_offset: u32,
    /// Bytes of initial content in the image (0 for memory the VMM fills).
    pub raw_data_size: u32,
    /// Guest-physical base (4 KiB aligned).
    pub memory_address: u64,
    /// Size of the guest memory (≥ `raw_data_size`, 4 KiB multiple; zero adds nothing).
    pub memory_data_size: u64,
    /// Section type.
    pub kind: TdvfSectionType,
    /// Attribute bits ([`TDVF_ATTR_MR_EXTEND`], [`TDVF_ATTR_PAGE_AUG`]).
    pub attributes: u32,
}

impl TdvfSection {
    /// Whether the section's pages are extended into MRTD.
    pub const fn mr_extend(&self) -> bool {
        self.attributes & TDVF_ATTR_MR_EXTEND != 0
    }

    /// Whether the section is accepted later (PAGE.AUG) instead of added at build time.
    pub const fn page_aug(&self) -> bool {
        self.attributes & TDVF_ATTR_PAGE_AUG != 0
    }
}

/// The TDVF metadata of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdvfMetadata {
    /// Offset of the "TDVF" descriptor in the image.
    pub offset: usize,
    /// Sections in table order (the order QEMU initialises them in).
    pub sections: Vec<TdvfSection>,
}

/// A footer item as decoded at parse time: absent, well formed, or why it is not.
type Decoded<T> = Option<Result<T, FirmwareError>>;

/// A parsed OVMF / TDVF image, borrowing its bytes.
#[derive(Debug, Clone)]
pub struct FirmwareImage<'a> {
    bytes: &'a [u8],
    footer: Vec<FooterEntry<'a>>,
    reset_eip: Decoded<u32>,
    hash_table: Decoded<GpaRange>,
    secret_block: Decoded<GpaRange>,
    sev_metadata: Decoded<SevMetadata>,
    tdvf: Decoded<TdvfMetadata>,
}

fn checked<T>(d: &Decoded<T>) -> Result<Option<&T>, FirmwareError> {
    d.as_ref()
        .map(|r| r.as_ref().map_err(Clone::clone))
        .transpose()
}

fn valid<T>(d: &Decoded<T>) -> Option<&T> {
    d.as_ref().and_then(|r| r.as_ref().ok())
}

fn read<const N: usize>(
    img: &[u8],
    off: usize,
    what: &'static str,
) -> Result<[u8; N], FirmwareError> {
    off.checked_add(N)
        .and_then(|end| img.get(off..end))
        .and_then(|s| s.try_into().ok())
        .ok_or(FirmwareError::Truncated {
            what,
            offset: off as u64,
            need: N as u64,
            len: img.len(),
        })
}

fn u32_at(img: &[u8], off: usize, what: &'static str) -> Result<u32, FirmwareError> {
    read::<4>(img, off, what).map(u32::from_le_bytes)
}

fn u64_at(img: &[u8], off: usize, what: &'static str) -> Result<u64, FirmwareError> {
    read::<8>(img, off, what).map(u64::from_le_bytes)
}

fn entry_u32(e: &FooterEntry<'_>, idx: usize, need: usize) -> Result<u32, FirmwareError> {
    let short = FirmwareError::EntryTooShort {
        guid: e.guid,
        offset: e.offset,
        len: e.data.len(),
        need,
    };
    let b = e.data.get(idx * 4..idx * 4 + 4).ok_or(short)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// The GPA at which a firmware image of `len` bytes is mapped: it ends at 4 GiB.
pub const fn firmware_gpa(len: usize) -> u64 {
    (1u64 << 32).wrapping_sub(len as u64)
}

impl<'a> FirmwareImage<'a> {
    /// Parses an image. Nothing is copied; the result borrows `bytes`.
    ///
    /// # Errors
    /// A [`FirmwareError`] naming the first inconsistency of the footer table and its offset.
    /// A malformed entry or metadata table is not an error here: the `checked_` accessors
    /// (and the plans of the modes that read it) report it.
    ///
    /// # Example
    /// ```
    /// use kvm_coco::measure::firmware::FirmwareImage;
    /// // A blob without a footer table is a valid (if featureless) image.
    /// let blob = vec![0u8; 8192];
    /// let fw = FirmwareImage::parse(&blob).unwrap();
    /// assert!(fw.footer_entries().is_empty() && fw.reset_eip().is_none());
    /// ```
    pub fn parse(bytes: &'a [u8]) -> Result<Self, FirmwareError> {
        let footer = parse_footer(bytes)?;
        let find = |g: Guid| footer.iter().find(|e| e.guid == g);
        let reset_eip = find(Guid::SEV_ES_RESET_BLOCK).map(|e| entry_u32(e, 0, 4));
        let range = |e: &FooterEntry<'_>| -> Result<GpaRange, FirmwareError> {
            Ok(GpaRange {
                gpa: entry_u32(e, 0, 8)?,
                size: entry_u32(e, 1, 8)?,
            })
        };
        let hash_table = find(Guid::SEV_HASH_TABLE_RV).map(range);
        let secret_block = find(Guid::SEV_SECRET_BLOCK).map(range);
        let sev_metadata = find(Guid::OVMF_SEV_METADATA)
            .map(|e| entry_u32(e, 0, 4).and_then(|off| parse_asev(bytes, off)));
        let tdvf = find(Guid::TDX_METADATA_OFFSET)
            .map(|e| entry_u32(e, 0, 4).and_then(|off| parse_tdvf(bytes, off)));
        Ok(Self {
            bytes,
            footer,
            reset_eip,
            hash_table,
            secret_block,
            sev_metadata,
            tdvf,
        })
    }

    /// The whole image.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// GPA of the first byte of the image (`4 GiB − len`), where QEMU maps it.
    pub fn gpa(&self) -> u64 {
        firmware_gpa(self.bytes.len())
    }

    /// The footer-table entries, in address order.
    pub fn footer_entries(&self) -> &[FooterEntry<'a>] {
        &self.footer
    }

    /// The footer entry with `guid`, if present.
    pub fn footer_entry(&self, guid: Guid) -> Option<&FooterEntry<'a>> {
        self.footer.iter().find(|e| e.guid == guid)
    }

    /// The SEV-ES AP reset EIP (the reset block), needed for SEV-ES and SNP VMSAs. `None`
    /// when the image has no reset block or a malformed one
    /// ([`checked_reset_eip`](Self::checked_reset_eip) tells which).
    pub fn reset_eip(&self) -> Option<u32> {
        valid(&self.reset_eip).copied()
    }

    /// The reset block: `Ok(None)` when the image has none.
    ///
    /// # Errors
    /// The [`FirmwareError`] of a malformed reset-block entry.
    pub fn checked_reset_eip(&self) -> Result<Option<u32>, FirmwareError> {
        checked(&self.reset_eip).map(Option::<&u32>::copied)
    }

    /// Where QEMU puts the kernel hash table. A GPA of 0 means hashes are not supported.
    /// `None` when the entry is absent or malformed
    /// ([`checked_hash_table`](Self::checked_hash_table) tells which).
    pub fn hash_table(&self) -> Option<GpaRange> {
        valid(&self.hash_table).copied()
    }

    /// The hash-table entry: `Ok(None)` when the image has none.
    ///
    /// # Errors
    /// The [`FirmwareError`] of a malformed entry.
    pub fn checked_hash_table(&self) -> Result<Option<GpaRange>, FirmwareError> {
        checked(&self.hash_table).map(Option::<&GpaRange>::copied)
    }

    /// The legacy SEV secret block (the LAUNCH_SECRET target). `None` when the entry is
    /// absent or malformed ([`checked_secret_block`](Self::checked_secret_block) tells which).
    pub fn secret_block(&self) -> Option<GpaRange> {
        valid(&self.secret_block).copied()
    }

    /// The secret-block entry: `Ok(None)` when the image has none.
    ///
    /// # Errors
    /// The [`FirmwareError`] of a malformed entry.
    pub fn checked_secret_block(&self) -> Result<Option<GpaRange>, FirmwareError> {
        checked(&self.secret_block).map(Option::<&GpaRange>::copied)
    }

    /// The "ASEV" SEV metadata. `None` when the image has none or a malformed one
    /// ([`checked_sev_metadata`](Self::checked_sev_metadata) tells which).
    pub fn sev_metadata(&self) -> Option<&SevMetadata> {
        valid(&self.sev_metadata)
    }

    /// The "ASEV" SEV metadata: `Ok(None)` when the image has none. Only SNP reads it.
    ///
    /// # Errors
    /// The [`FirmwareError`] naming the header field or the section that is malformed.
    pub fn checked_sev_metadata(&self) -> Result<Option<&SevMetadata>, FirmwareError> {
        checked(&self.sev_metadata)
    }

    /// The TDVF metadata. `None` when the image has none or a malformed one
    /// ([`checked_tdvf`](Self::checked_tdvf) tells which).
    pub fn tdvf(&self) -> Option<&TdvfMetadata> {
        valid(&self.tdvf)
    }

    /// The TDVF metadata: `Ok(None)` when the image has none. Only TDX reads it.
    ///
    /// # Errors
    /// The [`FirmwareError`] naming the header field or the section that is malformed.
    pub fn checked_tdvf(&self) -> Result<Option<&TdvfMetadata>, FirmwareError> {
        checked(&self.tdvf)
    }
}

fn parse_footer(img: &[u8]) -> Result<Vec<FooterEntry<'_>>, FirmwareError> {
    let Some(footer_off) = img
        .len()
        .checked_sub(FOOTER_TABLE_END_FROM_IMAGE_END + FOOTER_ENTRY_HEADER)
    else {
        return Ok(Vec::new());
    };
    let guid = Guid(read::<16>(img, footer_off + 2, "footer GUID")?);
    if guid != Guid::OVMF_TABLE_FOOTER {
        return Ok(Vec::new());
    }
    let total = usize::from(u16::from_le_bytes(read::<2>(
        img,
        footer_off,
        "footer length",
    )?));
    let table_end = footer_off + FOOTER_ENTRY_HEADER;
    if total < FOOTER_ENTRY_HEADER || total > table_end {
        return Err(FirmwareError::TableLength {
            offset: footer_off,
            claimed: total,
            available: table_end,
        });
    }
    let start = table_end - total;
    let mut entries: Vec<FooterEntry<'_>> = Vec::new();
    // `end` is the end of the not-yet-parsed part of the table (below the footer entry).
    let mut end = footer_off;
    while end > start {
        if end - start < FOOTER_ENTRY_HEADER {
            return Err(FirmwareError::StrayTableBytes {
                offset: start,
                len: end - start,
            });
        }
        let hdr = end - FOOTER_ENTRY_HEADER;
        let len = usize::from(u16::from_le_bytes(read::<2>(
            img,
            hdr,
            "footer entry length",
        )?));
        let guid = Guid(read::<16>(img, hdr + 2, "footer entry GUID")?);
        if len < FOOTER_ENTRY_HEADER {
            return Err(FirmwareError::EntryLength {
                guid,
                offset: hdr,
                len,
                problem: "shorter than its 18-byte header",
            });
        }
        if len > end - start {
            return Err(FirmwareError::EntryLength {
                guid,
                offset: hdr,
                len,
                problem: "runs past the start of the table",
            });
        }
        let data_off = end - len;
        if guid == Guid::OVMF_TABLE_FOOTER {
            return Err(FirmwareError::DuplicateEntry {
                guid,
                offset: data_off,
                first: footer_off,
            });
        }
        if let Some(first) = entries.iter().find(|e| e.guid == guid) {
            return Err(FirmwareError::DuplicateEntry {
                guid,
                offset: data_off,
                first: first.offset,
            });
        }
        entries.push(FooterEntry {
            guid,
            offset: data_off,
            data: &img[data_off..hdr],
        });
        end = data_off;
    }
    entries.reverse();
    Ok(entries)
}

fn header_at(img: &[u8], offset_from_end: u32, what: &'static str) -> Result<usize, FirmwareError> {
    let off = img
        .len()
        .checked_sub(offset_from_end as usize)
        .ok_or(FirmwareError::Truncated {
            what,
            offset: img.len() as u64 - u64::from(offset_from_end).min(img.len() as u64),
            need: u64::from(offset_from_end),
            len: img.len(),
        })?;
    Ok(off)
}

/// How a metadata header's length must relate to its descriptors.
#[derive(Clone, Copy)]
enum HeaderLen {
    /// `length == 16 + entry_size × count` (TDVF, as QEMU checks it).
    Exact,
    /// `length` covers the descriptors; bytes after them are ignored (ASEV, as
    /// sev-snp-measure reads it: it takes the descriptors from the first `length` bytes).
    Covers,
}

/// Checks the 16-byte header of a metadata table at `off` (`signature[4] ‖ length u32 ‖
/// version u32 ‖ count u32`, shared by OVMF's SEV and TDVF metadata): the signature,
/// version 1, at least `min_entries` entries, the length against `16 + entry_size × count`
/// as `len_rule` says, and every descriptor inside the image. Returns the entry count.
fn table_header(
    img: &[u8],
    off: usize,
    what: &'static str,
    signature: &'static str,
    (entry_size, len_rule): (u64, HeaderLen),
    min_entries: u32,
) -> Result<u32, FirmwareError> {
    let sig = read::<4>(img, off, what)?;
    if sig.as_slice() != signature.as_bytes() {
        return Err(FirmwareError::BadSignature {
            what,
            offset: off,
            found: sig,
            expected: signature,
        });
    }
    let length = u32_at(img, off + 4, what)?;
    let version = u32_at(img, off + 8, what)?;
    let num = u32_at(img, off + 12, what)?;
    if version != 1 {
        return Err(FirmwareError::BadVersion {
            what,
            offset: off,
            version,
        });
    }
    let expected = 16 + entry_size * u64::from(num);
    let length_ok = match len_rule {
        HeaderLen::Exact => u64::from(length) == expected,
        HeaderLen::Covers => num == 0 || u64::from(length) >= expected,
    };
    if !length_ok || num < min_entries {
        return Err(FirmwareError::HeaderLength {
            what,
            offset: off,
            claimed: length,
            count: num,
            expected,
        });
    }
    if off as u64 + expected > img.len() as u64 {
        return Err(FirmwareError::Truncated {
            what,
            offset: off as u64,
            need: expected,
            len: img.len(),
        });
    }
    Ok(num)
}

fn check_overlap(
    what: &'static str,
    ranges: &[(u64, u64)],
    index: usize,
    desc_off: usize,
) -> Result<(), FirmwareError> {
    let (b, e) = ranges[index];
    for (i, &(ob, oe)) in ranges[..index].iter().enumerate() {
        // Empty ranges cover nothing.
        if b < e && ob < oe && b < oe && ob < e {
            return Err(FirmwareError::SectionOverlap {
                what,
                first: i,
                second: index,
                offset: desc_off,
            });
        }
    }
    Ok(())
}

const ASEV: &str = "SEV metadata";

fn parse_asev(img: &[u8], offset_from_end: u32) -> Result<SevMetadata, FirmwareError> {
    let off = header_at(img, offset_from_end, ASEV)?;
    let num = table_header(img, off, ASEV, "ASEV", (12, HeaderLen::Covers), 0)?;
    let mut sections = Vec::with_capacity(num as usize);
    for i in 0..num as usize {
        let d = off + 16 + 12 * i;
        let gpa = u32_at(img, d, ASEV)?;
        let sz = u32_at(img, d + 4, ASEV)?;
        let raw = u32_at(img, d + 8, ASEV)?;
        let kind = SevSectionType::from_raw(raw).ok_or(FirmwareError::UnknownValue {
            what: ASEV,
            index: i,
            offset: d,
            field: "section type",
            value: raw.into(),
        })?;
        let bad = |problem: String| FirmwareError::SectionOutOfRange {
            what: ASEV,
            index: i,
            offset: d,
            problem,
        };
        let section = SevSection {
            gpa,
            size: sz,
            kind,
        };
        // SNP_SECRETS and CPUID are one page whatever their size; the others are ZERO pages
        // (or the kernel-hashes page), whole pages only.
        let one_page = matches!(kind, SevSectionType::SnpSecrets | SevSectionType::Cpuid);
        if !one_page && !sz.is_multiple_of(4096) {
            return Err(bad(format!(
                "{kind:?} section {gpa:#x}+{sz:#x} is not a whole number of 4 KiB pages"
            )));
        }
        if section.measured_len() != 0 && !gpa.is_multiple_of(4096) {
            return Err(bad(format!(
                "{kind:?} section at {gpa:#x} is not 4 KiB aligned"
            )));
        }
        sections.push(section);
    }
    Ok(SevMetadata {
        offset: off,
        sections,
    })
}

const TDVF: &str = "TDVF metadata";

/// Highest guest-physical address + 1 a TDVF section may reach (52-bit GPA width).
pub const MAX_GPA: u64 = 1 << 52;

/// Largest TDVF section accepted (4 GiB); larger ones cannot be firmware memory.
pub const MAX_TDVF_SECTION: u64 = 1 << 32;

fn parse_tdvf(img: &[u8], offset_from_end: u32) -> Result<TdvfMetadata, FirmwareError> {
    let off = header_at(img, offset_from_end, TDVF)?;
    let guid_off = off.checked_sub(16).ok_or(FirmwareError::Truncated {
        what: "TDVF metadata GUID",
        offset: 0,
        need: 16,
        len: img.len(),
    })?;
    if Guid(read::<16>(img, guid_off, "TDVF metadata GUID")?) != Guid::TDVF_METADATA {
        return Err(FirmwareError::MissingGuid {
            what: TDVF,
            guid: Guid::TDVF_METADATA,
            offset: guid_off,
        });
    }
    let num = table_header(img, off, TDVF, "TDVF", (32, HeaderLen::Exact), 2)?;
    let mut sections = Vec::with_capacity(num as usize);
    let mut ranges = Vec::with_capacity(num as usize);
    for i in 0..num as usize {
        let d = off + 16 + 32 * i;
        let data_offset = u32_at(img, d, TDVF)?;
        let raw_data_size = u32_at(img, d + 4, TDVF)?;
        let memory_address = u64_at(img, d + 8, TDVF)?;
        let memory_data_size = u64_at(img, d + 16, TDVF)?;
        let raw_type = u32_at(img, d + 24, TDVF)?;
        let attributes = u32_at(img, d + 28, TDVF)?;
        let unknown = |field, value: u64| FirmwareError::UnknownValue {
            what: TDVF,
            index: i,
            offset: d,
            field,
            value,
        };
        let kind =
            TdvfSectionType::from_raw(raw_type).ok_or(unknown("section type", raw_type.into()))?;
        if attributes & !(TDVF_ATTR_MR_EXTEND | TDVF_ATTR_PAGE_AUG) != 0 {
            return Err(unknown("attribute bits", attributes.into()));
        }
        let bad = |problem: String| FirmwareError::SectionOutOfRange {
            what: TDVF,
            index: i,
            offset: d,
            problem,
        };
        // A section of size zero is accepted and adds nothing (the TDX plan skips it), as
        // sev-snp-measure does with empty SEV metadata sections.
        let end = memory_address.checked_add(memory_data_size);
        if !memory_address.is_multiple_of(4096)
            || !memory_data_size.is_multiple_of(4096)
            || end.is_none()
        {
            return Err(bad(format!(
                "memory {memory_address:#x}+{memory_data_size:#x} is not 4 KiB aligned or overflows"
            )));
        }
        if end.is_some_and(|e| e > MAX_GPA) || memory_data_size > MAX_TDVF_SECTION {
            return Err(bad(format!(
                "memory {memory_address:#x}+{memory_data_size:#x} exceeds the 52-bit GPA space or 4 GiB"
            )));
        }
        if memory_data_size < u64::from(raw_data_size) {
            return Err(bad(format!(
                "raw size {raw_data_size:#x} exceeds memory size {memory_data_size:#x}"
            )));
        }
        match kind {
            TdvfSectionType::Bfv | TdvfSectionType::Cfv if raw_data_size == 0 => {
                return Err(bad(format!("{kind:?} section has no raw data")));
            }
            TdvfSectionType::TdHob | TdvfSectionType::TempMem if raw_data_size != 0 => {
                return Err(bad(format!("{kind:?} section must not have raw data")));
            }
            _ => {}
        }
        if u64::from(data_offset) + u64::from(raw_data_size) > img.len() as u64 {
            return Err(bad(format!(
                "raw data {data_offset:#x}+{raw_data_size:#x} runs past the image end {:#x}",
                img.len()
            )));
        }
        ranges.push((memory_address, end.unwrap_or(u64::MAX)));
        check_overlap(TDVF, &ranges, i, d)?;
        sections.push(TdvfSection {
            data_offset,
            raw_data_size,
            memory_address,
            memory_data_size,
            kind,
            attributes,
        });
    }
    Ok(TdvfMetadata {
        offset: off,
        sections,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_display_matches_canonical_form() {
        assert_eq!(
            Guid::OVMF_TABLE_FOOTER.to_string(),
            "96b582de-1fb2-45f7-baea-a366c55a082d"
        );
        // bytes_le of the footer GUID, as Python's uuid.UUID(...).bytes_le gives it.
        assert_eq!(
            Guid::OVMF_TABLE_FOOTER.0,
            [
                0xde, 0x82, 0xb5, 0x96, 0xb2, 0x1f, 0xf7, 0x45, 0xba, 0xea, 0xa3, 0x66, 0xc5, 0x5a,
                0x08, 0x2d
            ]
        );
    }

    fn with_table(entries: &[(&[u8], Guid)], len_override: Option<u16>) -> Vec<u8> {
        let mut t = Vec::new();
        for (d, g) in entries {
            t.extend_from_slice(d);
            t.extend_from_slice(&((d.len() + 18) as u16).to_le_bytes());
            t.extend_from_slice(&g.0);
        }
        let total = len_override.unwrap_or((t.len() + 18) as u16);
        t.extend_from_slice(&total.to_le_bytes());
        t.extend_from_slice(&Guid::OVMF_TABLE_FOOTER.0);
        let mut img = vec![0u8; 4096];
        let end = 4096 - 32;
        img[end - t.len()..end].copy_from_slice(&t);
        img
    }

    #[test]
    fn table_errors() {
        let ok = with_table(
            &[(&0x1234u32.to_le_bytes(), Guid::SEV_ES_RESET_BLOCK)],
            None,
        );
        assert_eq!(FirmwareImage::parse(&ok).unwrap().reset_eip(), Some(0x1234));
        let dup = with_table(
            &[
                (&[1, 0, 0, 0], Guid::SEV_ES_RESET_BLOCK),
                (&[2, 0, 0, 0], Guid::SEV_ES_RESET_BLOCK),
            ],
            None,
        );
        assert!(matches!(
            FirmwareImage::parse(&dup),
            Err(FirmwareError::DuplicateEntry { .. })
        ));
        let lie = with_table(&[(&[1, 0, 0, 0], Guid::SEV_ES_RESET_BLOCK)], Some(5000));
        assert!(matches!(
            FirmwareImage::parse(&lie),
            Err(FirmwareError::TableLength { .. })
        ));
        let stray = with_table(
            &[(&[1, 0, 0, 0], Guid::SEV_ES_RESET_BLOCK)],
            Some(22 + 18 + 3),
        );
        assert!(matches!(
            FirmwareImage::parse(&stray),
            Err(FirmwareError::StrayTableBytes { .. })
        ));
        // A malformed entry does not fail the parse; its checked accessor reports it.
        let short = with_table(&[(&[1, 0], Guid::SEV_ES_RESET_BLOCK)], None);
        let fw = FirmwareImage::parse(&short).unwrap();
        assert_eq!(fw.reset_eip(), None);
        assert!(matches!(
            fw.checked_reset_eip(),
            Err(FirmwareError::EntryTooShort { need: 4, .. })
        ));
        let far = with_table(
            &[(&0x10_0000u32.to_le_bytes(), Guid::OVMF_SEV_METADATA)],
            None,
        );
        let fw = FirmwareImage::parse(&far).unwrap();
        assert!(fw.sev_metadata().is_none());
        assert!(matches!(
            fw.checked_sev_metadata(),
            Err(FirmwareError::Truncated { .. })
        ));
        assert_eq!(fw.checked_tdvf(), Ok(None));
    }
}
