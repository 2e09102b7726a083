//! SEV-SNP guest-owner helpers: ID blocks and their authentication structure,
//! and verification of attestation reports against an ARK → ASK → VCEK chain.

use p384::ecdsa::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha384};
use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::OwnerError;
use super::cert::{SevCert, algo, encode_public_key, sign_message, usage, verify_message};
use crate::report::{AttestationReport, EccPublicKey, EcdsaSignature, SIG_ALGO_ECDSA_P384_SHA384};

/// The SNP ID block (0x60 bytes), given to SNP_LAUNCH_FINISH.
#[doc(alias = "ID_BLOCK")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct IdBlock {
    /// Expected launch digest; the firmware returns BAD_MEASUREMENT if it differs.
    pub ld: [u8; 48],
    /// Family ID, copied into the report.
    pub family_id: [u8; 16],
    /// Image ID, copied into the report.
    pub image_id: [u8; 16],
    /// Format version, 1 (not checked by firmware 1.55).
    pub version: U32,
    /// Guest SVN, copied into the report.
    pub guest_svn: U32,
    /// Expected policy; the firmware returns POLICY_FAILURE if it differs.
    pub policy: U64,
}

/// The ID authentication structure (0x1000 bytes).
#[doc(alias = "ID_AUTH")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct IdAuth {
    /// Algorithm of the ID key, 1 = ECDSA P-384 with SHA-384.
    pub id_key_algo: U32,
    /// Algorithm of the author key.
    pub auth_key_algo: U32,
    /// Reserved.
    pub reserved0: [u8; 0x38],
    /// ID key's signature of the ID block.
    pub id_block_sig: EcdsaSignature,
    /// The ID public key.
    pub id_key: EccPublicKey,
    /// Reserved.
    pub reserved1: [u8; 0x680 - 0x644],
    /// Author key's signature of the ID key structure.
    pub id_key_sig: EcdsaSignature,
    /// The author public key.
    pub author_key: EccPublicKey,
    /// Reserved.
    pub reserved2: [u8; 0x1000 - 0xC84],
}

const _: () = assert!(core::mem::size_of::<IdBlock>() == 0x60);
const _: () = assert!(core::mem::size_of::<IdAuth>() == 0x1000);
const _: () = assert!(core::mem::offset_of!(IdAuth, id_key) == 0x240);
const _: () = assert!(core::mem::offset_of!(IdAuth, author_key) == 0x880);

impl IdBlock {
    /// An ID block for `ld` and `policy`, version 1, zero IDs and SVN.
    pub fn new(ld: [u8; 48], policy: u64) -> Self {
        Self {
            ld,
            family_id: [0; 16],
            image_id: [0; 16],
            version: U32::new(1),
            guest_svn: U32::new(0),
            policy: U64::new(policy),
        }
    }
}

/// Signs `block` with `id_key` (and the ID key with `author_key` if given).
pub fn sign_id_block(
    block: &IdBlock,
    id_key: &SigningKey,
    author_key: Option<&SigningKey>,
) -> Result<IdAuth, OwnerError> {
    let mut auth = IdAuth::new_zeroed();
    auth.id_key_algo = U32::new(SIG_ALGO_ECDSA_P384_SHA384);
    auth.id_block_sig = sign_message(id_key, algo::ECDSA_SHA384, block.as_bytes())?;
    auth.id_key = encode_public_key(id_key.verifying_key());
    if let Some(a) = author_key {
        auth.auth_key_algo = U32::new(SIG_ALGO_ECDSA_P384_SHA384);
        auth.id_key_sig = sign_message(a, algo::ECDSA_SHA384, auth.id_key.as_bytes())?;
        auth.author_key = encode_public_key(a.verifying_key());
    }
    Ok(auth)
}

/// SHA-384 of an AMD public-key structure, as it appears in the report's
/// `ID_KEY_DIGEST` / `AUTHOR_KEY_DIGEST`.
pub fn key_digest(key: &EccPublicKey) -> [u8; 48] {
    Sha384::digest(key.as_bytes()).into()
}

/// The SNP endorsement chain: ARK (self-signed) → ASK → VCEK.
#[derive(Clone, Copy, Debug)]
pub struct SnpCertChain {
    /// AMD root key certificate.
    pub ark: SevCert,
    /// AMD signing key certificate, signed by the ARK.
    pub ask: SevCert,
    /// Versioned chip endorsement key certificate, signed by the ASK.
    pub vcek: SevCert,
}

impl SnpCertChain {
    /// Verifies the chain and returns the VCEK. If `trusted_ark` is given, the
    /// chain's ARK key must equal it.
    pub fn verify(&self, trusted_ark: Option<&VerifyingKey>) -> Result<VerifyingKey, OwnerError> {
        if self.ark.pub_key_usage.get() != usage::ARK
            || self.ask.pub_key_usage.get() != usage::ASK
            || self.vcek.pub_key_usage.get() != usage::CEK
        {
            return Err(OwnerError::InvalidKey(
                "unexpected key usage in the SNP chain",
            ));
        }
        let ark = self.ark.public_key()?;
        if let Some(t) = trusted_ark
            && t != &ark
        {
            return Err(OwnerError::UntrustedRoot);
        }
        self.ark.verify_signed_by(&ark, usage::ARK)?;
        let ask = self.ask.public_key()?;
        self.ask.verify_signed_by(&ark, usage::ARK)?;
        self.vcek.verify_signed_by(&ask, usage::ASK)?;
        self.vcek.public_key()
    }
}

/// Verifies an SNP attestation report: the chain (optionally against a trusted
/// ARK), then the report's ECDSA P-384/SHA-384 signature by the VCEK.
///
/// Policy decisions on the contents (measurement, policy, TCB, report data) are
/// the caller's.
///
/// ```
/// use p384::ecdsa::SigningKey;
/// use psp_driver::owner::cert::{SevCert, algo, sign_message, usage};
/// use psp_driver::owner::snp::{SnpCertChain, verify_report};
/// use psp_driver::report::AttestationReport;
/// use zerocopy::little_endian::U32;
///
/// let key = |b: u8| SigningKey::from_slice(&[b; 48]).unwrap();
/// let (ark, ask, vcek) = (key(1), key(2), key(3));
/// let cert = |k: &SigningKey, u: u32, signer: &SigningKey, su: u32| {
///     let mut c = SevCert::new(k.verifying_key(), u, algo::ECDSA_SHA384, (1, 55));
///     c.sign(0, signer, su, algo::ECDSA_SHA384).unwrap();
///     c
/// };
/// let chain = SnpCertChain {
///     ark: cert(&ark, usage::ARK, &ark, usage::ARK),
///     ask: cert(&ask, usage::ASK, &ark, usage::ARK),
///     vcek: cert(&vcek, usage::CEK, &ask, usage::ASK),
/// };
/// let mut report = AttestationReport::default();
/// report.version = U32::new(2);
/// report.signature_algo = U32::new(1);
/// report.signature = sign_message(&vcek, algo::ECDSA_SHA384, report.signed_bytes()).unwrap();
/// verify_report(&report, &chain, Some(ark.verifying_key())).unwrap();
///
/// report.report_data[0] ^= 1;
/// assert!(verify_report(&report, &chain, None).is_err());
/// ```
pub fn verify_report(
    report: &AttestationReport,
    chain: &SnpCertChain,
    trusted_ark: Option<&VerifyingKey>,
) -> Result<(), OwnerError> {
    let vcek = chain.verify(trusted_ark)?;
    if report.signature_algo.get() != SIG_ALGO_ECDSA_P384_SHA384 {
        return Err(OwnerError::BadSignature(
            "unsupported report signature algorithm",
        ));
    }
    if report.signing_key() != 0 {
        return Err(OwnerError::BadSignature("report is not signed by the VCEK"));
    }
    verify_message(
        &vcek,
        algo::ECDSA_SHA384,
        report.signed_bytes(),
        &report.signature,
    )
}
