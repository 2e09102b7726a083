//! The SEV-SNP attestation report and the AMD key and signature encodings it uses.
//!
//! The report is the 0x4A0-byte structure the firmware writes in answer to an
//! `MSG_REPORT_REQ` guest message (SNP ABI specification, "ATTESTATION_REPORT";
//! AMD firmware 1.55 writes version 2). Bytes `0x000..0x2A0` are signed with
//! ECDSA P-384 over SHA-384 by the chip's VCEK (or VLEK); the signature sits at
//! `0x2A0` in AMD's encoding: `R` and `S` as 72-byte little-endian integers.
//!
//! Everything here is a plain byte layout (`zerocopy`, alignment 1), usable by
//! verifiers without any cryptography dependency.
//!
//! ```
//! use psp_driver::report::{AttestationReport, SIGNED_LEN};
//! use zerocopy::FromBytes;
//!
//! let bytes = [0u8; 0x4A0];
//! let report = AttestationReport::ref_from_bytes(&bytes[..]).unwrap();
//! assert_eq!(report.version.get(), 0);
//! assert_eq!(report.signed_bytes().len(), SIGNED_LEN);
//! ```

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Size of [`AttestationReport`] in bytes.
pub const REPORT_LEN: usize = 0x4A0;
/// Number of leading report bytes covered by the signature (`0x000..0x2A0`).
pub const SIGNED_LEN: usize = 0x2A0;
/// `SIGNATURE_ALGO` value for ECDSA P-384 with SHA-384.
pub const SIG_ALGO_ECDSA_P384_SHA384: u32 = 1;
/// Curve identifier of P-384 in AMD's public-key structure.
pub const CURVE_P384: u32 = 2;
/// Length of each zero-extended little-endian integer in AMD's ECDSA encodings.
pub const ECC_INT_LEN: usize = 72;

/// A TCB version: one security version number per firmware component.
///
/// On Milan and Genoa the bytes are `[0] BOOT_LOADER, [1] TEE, [2..6] reserved,
/// [6] SNP, [7] MICROCODE`; Turin and later use another order, so the raw
/// value is kept and the accessors name the Milan/Genoa meaning.
#[doc(alias = "TCB_VERSION")]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TcbVersion(pub u64);

impl TcbVersion {
    /// Builds a Milan/Genoa TCB version from its components.
    pub const fn new(boot_loader: u8, tee: u8, snp: u8, microcode: u8) -> Self {
        Self(boot_loader as u64 | (tee as u64) << 8 | (snp as u64) << 48 | (microcode as u64) << 56)
    }
    /// Boot-loader SVN (byte 0).
    pub const fn boot_loader(self) -> u8 {
        self.0 as u8
    }
    /// PSP OS (TEE) SVN (byte 1).
    pub const fn tee(self) -> u8 {
        (self.0 >> 8) as u8
    }
    /// SNP firmware SVN (byte 6).
    pub const fn snp(self) -> u8 {
        (self.0 >> 48) as u8
    }
    /// Microcode patch level (byte 7).
    pub const fn microcode(self) -> u8 {
        (self.0 >> 56) as u8
    }
}

/// AMD's ECDSA signature structure (0x200 bytes): `R[72] @0`, `S[72] @0x48`,
/// both little-endian and zero-extended, then reserved bytes.
///
/// The report, the ID block authentication structure and the simulated
/// certificates all use this encoding.
#[doc(alias = "ECDSA_SIG")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct EcdsaSignature {
    /// `r`, little-endian, zero-extended to 72 bytes.
    pub r: [u8; ECC_INT_LEN],
    /// `s`, little-endian, zero-extended to 72 bytes.
    pub s: [u8; ECC_INT_LEN],
    /// Reserved, zero.
    pub reserved: [u8; 0x200 - 2 * ECC_INT_LEN],
}

impl Default for EcdsaSignature {
    fn default() -> Self {
        Self::new_zeroed()
    }
}

/// AMD's ECC public-key structure (0x404 bytes): `CURVE u32 @0`, `QX[72] @4`,
/// `QY[72] @0x4C` (little-endian, zero-extended), then reserved bytes.
///
/// Used for the ID and author keys of an SNP ID block (their SHA-384 digests
/// appear in the report) and inside SEV certificates.
#[doc(alias = "ECC_PUBKEY")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct EccPublicKey {
    /// Curve identifier; [`CURVE_P384`] for P-384.
    pub curve: U32,
    /// Affine x coordinate, little-endian, zero-extended to 72 bytes.
    pub qx: [u8; ECC_INT_LEN],
    /// Affine y coordinate, little-endian, zero-extended to 72 bytes.
    pub qy: [u8; ECC_INT_LEN],
    /// Reserved, zero.
    pub reserved: [u8; 0x404 - 4 - 2 * ECC_INT_LEN],
}

impl Default for EccPublicKey {
    fn default() -> Self {
        Self::new_zeroed()
    }
}

/// The SEV-SNP attestation report (0x4A0 bytes), in the layout written by AMD
/// firmware 1.55 (report version 2). Fields marked "version ≥ 3/5" are reserved
/// (zero) in version 2.
///
/// The report is signed over [`SIGNED_LEN`] bytes with the key named by
/// [`key_info`](Self::key_info) bits 4:2 (0 = VCEK, 1 = VLEK, 7 = none).
#[doc(alias = "ATTESTATION_REPORT")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct AttestationReport {
    /// Report format version (2 for firmware 1.55).
    pub version: U32,
    /// Guest SVN from the ID block (0 without one).
    pub guest_svn: U32,
    /// The guest policy given at SNP_LAUNCH_START.
    pub policy: U64,
    /// Family ID from the ID block.
    pub family_id: [u8; 16],
    /// Image ID from the ID block.
    pub image_id: [u8; 16],
    /// The VMPL requested in the report request.
    pub vmpl: U32,
    /// Signature algorithm; [`SIG_ALGO_ECDSA_P384_SHA384`].
    pub signature_algo: U32,
    /// Current TCB version of the platform.
    pub current_tcb: U64,
    /// Platform information: bit0 SMT_EN, bit1 TSME_EN, bit2 ECC_EN, bit3 RAPL_DIS,
    /// bit4 CIPHERTEXT_HIDING_EN, bit5 ALIAS_CHECK_COMPLETE, bit7 TIO_EN.
    pub platform_info: U64,
    /// bit0 AUTHOR_KEY_EN, bit1 MASK_CHIP_KEY, bits 4:2 SIGNING_KEY (0 VCEK, 1 VLEK, 7 none).
    pub key_info: U32,
    /// Reserved.
    pub reserved0: U32,
    /// Guest-supplied data (typically a nonce or a key hash).
    pub report_data: [u8; 64],
    /// The launch measurement (GCTX.LD, SHA-384 chain of PAGE_INFO structures).
    pub measurement: [u8; 48],
    /// Host data given at SNP_LAUNCH_FINISH.
    pub host_data: [u8; 32],
    /// SHA-384 of the ID public key structure (zero without an ID block).
    pub id_key_digest: [u8; 48],
    /// SHA-384 of the author public key structure (zero without one).
    pub author_key_digest: [u8; 48],
    /// Random ID drawn at SNP_LAUNCH_START.
    pub report_id: [u8; 32],
    /// REPORT_ID of the migration agent, `0xFF` × 32 without one.
    pub report_id_ma: [u8; 32],
    /// TCB version reported to guests (SNP_CONFIG).
    pub reported_tcb: U64,
    /// CPUID family (version ≥ 3).
    pub cpuid_fam_id: u8,
    /// CPUID model (version ≥ 3).
    pub cpuid_mod_id: u8,
    /// CPUID stepping (version ≥ 3).
    pub cpuid_step: u8,
    /// Reserved.
    pub reserved1: [u8; 0x1A0 - 0x18B],
    /// Chip identifier (zero when MASK_CHIP_ID is set).
    pub chip_id: [u8; 64],
    /// Committed TCB version.
    pub committed_tcb: U64,
    /// Build number of the running firmware.
    pub current_build: u8,
    /// Minor version of the running firmware.
    pub current_minor: u8,
    /// Major version of the running firmware.
    pub current_major: u8,
    /// Reserved.
    pub reserved2: u8,
    /// Build number of the committed firmware.
    pub committed_build: u8,
    /// Minor version of the committed firmware.
    pub committed_minor: u8,
    /// Major version of the committed firmware.
    pub committed_major: u8,
    /// Reserved.
    pub reserved3: u8,
    /// TCB version at launch (set at SNP_GCTX_CREATE).
    pub launch_tcb: U64,
    /// Launch mitigation vector (version ≥ 5).
    pub launch_mit_vector: U64,
    /// Current mitigation vector (version ≥ 5).
    pub current_mit_vector: U64,
    /// Reserved.
    pub reserved4: [u8; SIGNED_LEN - 0x208],
    /// Signature over bytes `0x000..0x2A0`.
    pub signature: EcdsaSignature,
}

const _: () = assert!(core::mem::size_of::<AttestationReport>() == REPORT_LEN);
const _: () = assert!(core::mem::size_of::<EcdsaSignature>() == 0x200);
const _: () = assert!(core::mem::size_of::<EccPublicKey>() == 0x404);
const _: () = assert!(core::mem::offset_of!(AttestationReport, measurement) == 0x90);
const _: () = assert!(core::mem::offset_of!(AttestationReport, report_id) == 0x140);
const _: () = assert!(core::mem::offset_of!(AttestationReport, chip_id) == 0x1A0);
const _: () = assert!(core::mem::offset_of!(AttestationReport, launch_tcb) == 0x1F0);
const _: () = assert!(core::mem::offset_of!(AttestationReport, signature) == SIGNED_LEN);

impl Default for AttestationReport {
    fn default() -> Self {
        Self::new_zeroed()
    }
}

impl AttestationReport {
    /// The bytes covered by the signature (`0x000..0x2A0`).
    pub fn signed_bytes(&self) -> &[u8] {
        &self.as_bytes()[..SIGNED_LEN]
    }

    /// The signing key named in [`key_info`](Self::key_info) bits 4:2
    /// (0 = VCEK, 1 = VLEK, 7 = none).
    pub fn signing_key(&self) -> u32 {
        (self.key_info.get() >> 2) & 0x7
    }

    /// Whether an author key was bound at launch (`key_info` bit 0).
    pub fn author_key_en(&self) -> bool {
        self.key_info.get() & 1 != 0
    }

    /// The current TCB as a [`TcbVersion`].
    pub fn current_tcb(&self) -> TcbVersion {
        TcbVersion(self.current_tcb.get())
    }

    /// The reported TCB as a [`TcbVersion`].
    pub fn reported_tcb(&self) -> TcbVersion {
        TcbVersion(self.reported_tcb.get())
    }
}
