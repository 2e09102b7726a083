//! Launch-digest primitives shared by the offline calculators and the software firmware.
//!
//! The AMD PSP measures a guest while it is being launched:
//!
//! - **SEV and SEV-ES** keep one running SHA-256 (`GCTX.LD`) over the plaintext of every
//!   `LAUNCH_UPDATE_DATA` and `LAUNCH_UPDATE_VMSA` region, in command order. It is a stream
//!   hash, not a chain: [`SevLaunchDigest`] is that stream. `LAUNCH_MEASURE` then MACs the
//!   final digest together with the platform version and the policy; [`launch_measure_message`]
//!   builds the exact message the firmware MACs.
//! - **SEV-SNP** chains a SHA-384 digest through one [`PageInfo`] per 4 KiB page of each
//!   `SNP_LAUNCH_UPDATE`: `LD = SHA384(PAGE_INFO{DIGEST_CUR = LD, CONTENTS, …, GPA})`.
//!   [`SnpLaunchDigest`] is that chain, [`snp_page_contents`] computes a page's `CONTENTS`
//!   field for its [`SnpPageType`].
//!
//! Contents digests of different pages are independent of each other, so a caller may compute
//! them in parallel and feed them to [`SnpLaunchDigest::update`] in order; only the chaining is
//! sequential.
//!
//! Everything here is pure computation: no I/O, no allocation.
//!
//! # Example
//!
//! Measuring one all-zero NORMAL page at GPA 0, starting from the all-zero digest that
//! `SNP_GCTX_CREATE` leaves behind:
//!
//! ```
//! use psp_driver::digest::{snp_page_contents, SnpLaunchDigest, SnpPageType};
//!
//! let page = [0u8; 4096];
//! let mut ld = SnpLaunchDigest::new();
//! ld.update(SnpPageType::Normal, 0, &snp_page_contents(SnpPageType::Normal, &page));
//! assert_eq!(
//!     ld.digest()[..4],
//!     [0x9d, 0x13, 0x63, 0x4b], // first bytes of the firmware's result for this page
//! );
//! ```

use sha2::{Digest, Sha256, Sha384};
use zerocopy::little_endian::{U16, U64};
use zerocopy::{Immutable, IntoBytes, KnownLayout};

/// Size of a guest page as the PSP measures it.
pub const PAGE_SIZE: usize = 4096;

/// Size of an SNP launch digest (SHA-384).
pub const SNP_DIGEST_SIZE: usize = 48;

/// Size of a SEV / SEV-ES launch digest (SHA-256).
pub const SEV_DIGEST_SIZE: usize = 32;

/// The GPA KVM records in the RMP entry of every VMSA page (`INITIAL_VMSA_GPA` in
/// `arch/x86/kvm/svm/sev.c`): `(u64)-1`, page aligned, bits above 51 cleared. The firmware
/// copies it into [`PageInfo::gpa`] when it measures the VMSA.
pub const SNP_VMSA_GPA: u64 = 0xFFFF_FFFF_F000;

/// `PAGE_INFO.LENGTH`: the size of [`PageInfo`].
pub const PAGE_INFO_LENGTH: u16 = 0x70;

/// Byte range of a VMSA that the firmware measures as zero (`GUEST_TSC_SCALE` at 0x2F0 and
/// `GUEST_TSC_OFFSET` at 0x2F8, which SecureTSC fills in after measuring).
pub const VMSA_TSC_FIELDS: core::ops::Range<usize> = 0x2F0..0x300;

/// `SEV_CHANNEL_CTX_MEASURE`: the context byte that starts the `LAUNCH_MEASURE` MAC message.
pub const SEV_CHANNEL_CTX_MEASURE: u8 = 0x04;

/// Length of the `LAUNCH_MEASURE` MAC message built by [`launch_measure_message`].
pub const LAUNCH_MEASURE_MESSAGE_LEN: usize = 1 + 3 + 4 + SEV_DIGEST_SIZE + 16;

/// The PAGE_TYPE of an `SNP_LAUNCH_UPDATE` (bits 3:1 of its flags word).
///
/// The type decides what the firmware puts in [`PageInfo::contents`] (see
/// [`snp_page_contents`]) and what it does with the page: NORMAL and VMSA pages are
/// measured by content, the other types by GPA and type alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum SnpPageType {
    /// `PAGE_TYPE_NORMAL` (1): data, encrypted as given, measured by SHA-384 of its content.
    Normal = 1,
    /// `PAGE_TYPE_VMSA` (2): a vCPU save area; measured by content with the TSC fields
    /// ([`VMSA_TSC_FIELDS`]) zeroed. 4 KiB pages only.
    Vmsa = 2,
    /// `PAGE_TYPE_ZERO` (3): the firmware zero-fills the page. Contents digest is all zero.
    Zero = 3,
    /// `PAGE_TYPE_UNMEASURED` (4): encrypted as given, contents not measured, but its
    /// PAGE_INFO (type and GPA) still enters the digest.
    Unmeasured = 4,
    /// `PAGE_TYPE_SECRETS` (5): the firmware builds the secrets page. 4 KiB only.
    Secrets = 5,
    /// `PAGE_TYPE_CPUID` (6): the firmware validates the CPUID table. 4 KiB only.
    Cpuid = 6,
}

impl SnpPageType {
    /// The firmware encoding of a page type, or `None` for 0 and values ≥ 7 (which the
    /// firmware rejects with INVALID_PARAM).
    pub const fn from_raw(raw: u8) -> Option<Self> {
        Some(match raw {
            1 => Self::Normal,
            2 => Self::Vmsa,
            3 => Self::Zero,
            4 => Self::Unmeasured,
            5 => Self::Secrets,
            6 => Self::Cpuid,
            _ => return None,
        })
    }

    /// Whether the page content enters the digest (NORMAL and VMSA only).
    pub const fn measures_contents(self) -> bool {
        matches!(self, Self::Normal | Self::Vmsa)
    }
}

/// The SNP `PAGE_INFO` structure (0x70 bytes, packed), hashed once per 4 KiB page of each
/// `SNP_LAUNCH_UPDATE` to advance the launch digest.
///
/// Layout per the firmware (`sev_mcmd.h`). sev-snp-measure and the `sev` crate name the bytes
/// 0x64..0x66 `vmpl3, vmpl2, vmpl1` and 0x67 reserved; the firmware layout used here has a
/// reserved byte at 0x64 and VMPL1..3 at 0x65..0x67. Both agree whenever the permissions are
/// zero, which is what QEMU and KVM always pass.
#[doc(alias = "PAGE_INFO")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct PageInfo {
    /// `DIGEST_CUR`: the launch digest before this page (`GCTX.LD`).
    pub digest_cur: [u8; SNP_DIGEST_SIZE],
    /// `CONTENTS`: see [`snp_page_contents`].
    pub contents: [u8; SNP_DIGEST_SIZE],
    /// `LENGTH`: always [`PAGE_INFO_LENGTH`].
    pub length: U16,
    /// `PAGE_TYPE`: a [`SnpPageType`] value.
    pub page_type: u8,
    /// Bit 0 `IMI_PAGE`; bits 7:1 reserved.
    pub imi_page: u8,
    /// Reserved, zero.
    pub reserved: u8,
    /// `VMPL1_PERMS`.
    pub vmpl1_perms: u8,
    /// `VMPL2_PERMS`.
    pub vmpl2_perms: u8,
    /// `VMPL3_PERMS`.
    pub vmpl3_perms: u8,
    /// `GPA`: the page's guest physical address as recorded in its RMP entry
    /// ([`SNP_VMSA_GPA`] for VMSA pages).
    pub gpa: U64,
}

const _: () = assert!(core::mem::size_of::<PageInfo>() == PAGE_INFO_LENGTH as usize);

impl PageInfo {
    /// A PAGE_INFO for one page with zero VMPL permissions and `IMI_PAGE` clear, as QEMU/KVM
    /// launches produce.
    pub fn new(
        digest_cur: &[u8; SNP_DIGEST_SIZE],
        contents: &[u8; SNP_DIGEST_SIZE],
        page_type: SnpPageType,
        gpa: u64,
    ) -> Self {
        Self {
            digest_cur: *digest_cur,
            contents: *contents,
            length: U16::new(PAGE_INFO_LENGTH),
            page_type: page_type as u8,
            imi_page: 0,
            reserved: 0,
            vmpl1_perms: 0,
            vmpl2_perms: 0,
            vmpl3_perms: 0,
            gpa: U64::new(gpa),
        }
    }

    /// `SHA384(PAGE_INFO)`: the launch digest after this page.
    pub fn digest(&self) -> [u8; SNP_DIGEST_SIZE] {
        Sha384::digest(self.as_bytes()).into()
    }
}

/// The `CONTENTS` field the firmware puts into [`PageInfo`] for a 4 KiB `page` of `page_type`.
///
/// - NORMAL: `SHA384(page)`.
/// - VMSA: `SHA384(page)` with bytes 0x2F0..0x2FF ([`VMSA_TSC_FIELDS`]) taken as zero.
/// - ZERO, UNMEASURED, SECRETS, CPUID: 48 zero bytes; `page` is not read.
pub fn snp_page_contents(page_type: SnpPageType, page: &[u8; PAGE_SIZE]) -> [u8; SNP_DIGEST_SIZE] {
    match page_type {
        SnpPageType::Normal => Sha384::digest(page).into(),
        SnpPageType::Vmsa => {
            let mut h = Sha384::new();
            h.update(&page[..VMSA_TSC_FIELDS.start]);
            h.update([0u8; VMSA_TSC_FIELDS.end - VMSA_TSC_FIELDS.start]);
            h.update(&page[VMSA_TSC_FIELDS.end..]);
            h.finalize().into()
        }
        SnpPageType::Zero | SnpPageType::Unmeasured | SnpPageType::Secrets | SnpPageType::Cpuid => {
            [0; SNP_DIGEST_SIZE]
        }
    }
}

/// The SNP launch digest (`GCTX.LD`): a SHA-384 chain through one [`PageInfo`] per page.
///
/// `SNP_GCTX_CREATE` zeroes the context, so [`SnpLaunchDigest::new`] starts from 48 zero
/// bytes; [`SnpLaunchDigest::from_digest`] resumes from a known intermediate value (e.g. a
/// precomputed firmware-only digest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnpLaunchDigest {
    ld: [u8; SNP_DIGEST_SIZE],
}

impl Default for SnpLaunchDigest {
    fn default() -> Self {
        Self::new()
    }
}

impl SnpLaunchDigest {
    /// The digest right after `SNP_GCTX_CREATE`: 48 zero bytes.
    pub const fn new() -> Self {
        Self {
            ld: [0; SNP_DIGEST_SIZE],
        }
    }

    /// Resumes a chain from an intermediate digest.
    pub const fn from_digest(ld: [u8; SNP_DIGEST_SIZE]) -> Self {
        Self { ld }
    }

    /// Measures one 4 KiB page: `LD = SHA384(PAGE_INFO{LD, contents, page_type, gpa})`.
    ///
    /// `contents` is the page's [`snp_page_contents`]. A 2 MiB `SNP_LAUNCH_UPDATE` is
    /// 512 calls with `gpa` advancing by 0x1000.
    pub fn update(&mut self, page_type: SnpPageType, gpa: u64, contents: &[u8; SNP_DIGEST_SIZE]) {
        self.ld = PageInfo::new(&self.ld, contents, page_type, gpa).digest();
    }

    /// The current digest (the report's MEASUREMENT once the launch is finished).
    pub const fn digest(&self) -> [u8; SNP_DIGEST_SIZE] {
        self.ld
    }
}

/// The SEV / SEV-ES launch digest: one running SHA-256 over the plaintext of every
/// `LAUNCH_UPDATE_DATA` and `LAUNCH_UPDATE_VMSA` region, in command order.
///
/// The firmware hashes each region unaltered (a VMSA as its full 4096-byte page) before
/// encrypting it in place; the boundaries between regions do not matter.
#[derive(Debug, Clone, Default)]
pub struct SevLaunchDigest {
    hasher: Sha256,
}

impl SevLaunchDigest {
    /// The digest state right after `LAUNCH_START` (an empty SHA-256).
    pub fn new() -> Self {
        Self::default()
    }

    /// Measures one `LAUNCH_UPDATE_DATA` / `LAUNCH_UPDATE_VMSA` region.
    pub fn update(&mut self, region: &[u8]) {
        self.hasher.update(region);
    }

    /// The digest of everything measured so far, leaving the state usable.
    pub fn current(&self) -> [u8; SEV_DIGEST_SIZE] {
        self.hasher.clone().finalize().into()
    }

    /// `SHA256_Final`: the digest `LAUNCH_MEASURE` MACs and `ATTESTATION` reports.
    pub fn finalize(self) -> [u8; SEV_DIGEST_SIZE] {
        self.hasher.finalize().into()
    }
}

/// The message the firmware MACs with the guest's TIK (HMAC-SHA256) in `LAUNCH_MEASURE`:
/// `0x04 ‖ API_MAJOR ‖ API_MINOR ‖ BUILD ‖ POLICY (u32 LE) ‖ LD (32) ‖ MNONCE (16)`.
///
/// `api_major`, `api_minor` and `build` are the running firmware's (as `PLATFORM_STATUS`
/// reports them), `policy` the guest policy given at `LAUNCH_START`, `mnonce` the 16 bytes the
/// firmware draws from its TRNG and returns next to the MAC.
pub fn launch_measure_message(
    api_major: u8,
    api_minor: u8,
    build: u8,
    policy: u32,
    ld: &[u8; SEV_DIGEST_SIZE],
    mnonce: &[u8; 16],
) -> [u8; LAUNCH_MEASURE_MESSAGE_LEN] {
    let mut m = [0u8; LAUNCH_MEASURE_MESSAGE_LEN];
    m[0] = SEV_CHANNEL_CTX_MEASURE;
    m[1] = api_major;
    m[2] = api_minor;
    m[3] = build;
    m[4..8].copy_from_slice(&policy.to_le_bytes());
    m[8..8 + SEV_DIGEST_SIZE].copy_from_slice(ld);
    m[8 + SEV_DIGEST_SIZE..].copy_from_slice(mnonce);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    // Micro vectors: facts firmware-and-measurement.md §3.3 (sev-snp-measure's GCTX, [RUN]).
    #[test]
    fn snp_micro_vectors() {
        let zero = [0u8; PAGE_SIZE];
        let one = |t, gpa, page: &[u8; PAGE_SIZE]| {
            let mut ld = SnpLaunchDigest::new();
            ld.update(t, gpa, &snp_page_contents(t, page));
            ld.digest().to_vec()
        };
        assert_eq!(
            one(SnpPageType::Normal, 0, &zero),
            h(
                "9d13634b6014bb21cf059b2dc694e7bff01a8a7137041100cd2b695f3d10fb687267b97808b27f8f471d943bc6f53a20"
            )
        );
        let mut pat = [0u8; PAGE_SIZE];
        for (i, b) in pat.iter_mut().enumerate() {
            *b = i as u8;
        }
        assert_eq!(
            one(SnpPageType::Normal, 0xFFFF_F000, &pat),
            h(
                "79d7e453f7b541d04f7f51cccc6f4acca624b7a97430595dd7c98bd8c7a897656a91c611473f137680bd00e9e72e47c4"
            )
        );
        assert_eq!(
            one(SnpPageType::Zero, 0x1000, &pat),
            h(
                "4bd4147976a1e7554c1c778a781affc1c672f1965a727ba16084989b7e356044a28bbe585a2f75dac9356fa5ab78f061"
            )
        );
        assert_eq!(
            one(SnpPageType::Unmeasured, 0x2000, &pat),
            h(
                "cc5aed6a06f63b38d24155dfa38e924c44b41d2339bc8a7d3cb1995e67607e8889a81c2d42e75bb95627b40e344b8929"
            )
        );
        assert_eq!(
            one(SnpPageType::Secrets, 0x3000, &pat),
            h(
                "56a257bb27ff6656e6b6bc227e34e6bbce81bf7ccdf961c680295369708e4df280fa28220ab7c554ef7cf24fabb86504"
            )
        );
        assert_eq!(
            one(SnpPageType::Cpuid, 0x4000, &pat),
            h(
                "0acb0f4e9aa7ba97447f36f5cdf321a2f5b0682d1b57467571bde89f1920df24d03f18bd3c20e27400e0fdae40d02d92"
            )
        );
        assert_eq!(
            one(SnpPageType::Vmsa, SNP_VMSA_GPA, &zero),
            h(
                "f4577da9b848673216afc3909e5ea7aa80150dda441526874cd2b0282894709b46484c13a07221aefbedfff667199259"
            )
        );
        let mut ld = SnpLaunchDigest::new();
        for (t, gpa) in [
            (SnpPageType::Normal, 0),
            (SnpPageType::Zero, 0x1000),
            (SnpPageType::Secrets, 0x3000),
            (SnpPageType::Cpuid, 0x4000),
            (SnpPageType::Vmsa, SNP_VMSA_GPA),
        ] {
            ld.update(t, gpa, &snp_page_contents(t, &zero));
        }
        assert_eq!(
            ld.digest().to_vec(),
            h(
                "d7c8ce905e2568c7982b48607da5ec76c7c1e5a59be8bf0879599cd89aa203bf134a332ee1f54c4008535e51afc2b34e"
            )
        );
    }

    #[test]
    fn page_info_layout() {
        let pi = PageInfo::new(
            &[0; 48],
            &[0; 48],
            SnpPageType::Normal,
            0x1122_3344_5566_7788,
        );
        let b = pi.as_bytes();
        assert_eq!(b.len(), 0x70);
        assert_eq!(&b[0x60..0x64], &[0x70, 0x00, 0x01, 0x00]);
        assert_eq!(&b[0x68..0x70], &0x1122_3344_5566_7788u64.to_le_bytes());
    }

    #[test]
    fn vmsa_tsc_fields_not_measured() {
        let zero = [0u8; PAGE_SIZE];
        let mut tsc = zero;
        tsc[0x2F0..0x300].fill(0xAA);
        assert_eq!(
            snp_page_contents(SnpPageType::Vmsa, &zero),
            snp_page_contents(SnpPageType::Vmsa, &tsc)
        );
        assert_ne!(
            snp_page_contents(SnpPageType::Normal, &zero),
            snp_page_contents(SnpPageType::Normal, &tsc)
        );
    }

    #[test]
    fn page_type_raw() {
        assert_eq!(SnpPageType::from_raw(0), None);
        assert_eq!(SnpPageType::from_raw(7), None);
        for t in 1..=6u8 {
            assert_eq!(SnpPageType::from_raw(t).map(|p| p as u8), Some(t));
        }
    }

    #[test]
    fn sev_stream_ignores_boundaries() {
        let mut a = SevLaunchDigest::new();
        a.update(b"hello ");
        a.update(b"world");
        assert_eq!(a.current(), a.clone().finalize());
        let mut b = SevLaunchDigest::new();
        b.update(b"hello world");
        assert_eq!(a.finalize(), b.finalize());
        // SHA-256("") (FIPS 180-4 / well-known value).
        assert_eq!(
            SevLaunchDigest::new().finalize().to_vec(),
            h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
    }

    #[test]
    fn measure_message_layout() {
        let m = launch_measure_message(1, 40, 40, 3, &[0xAA; 32], &[0xBB; 16]);
        assert_eq!(&m[..8], &[4, 1, 40, 40, 3, 0, 0, 0]);
        assert_eq!(&m[8..40], &[0xAA; 32]);
        assert_eq!(&m[40..], &[0xBB; 16]);
    }
}
