//! Guest-owner helpers: what a guest owner runs off the host to provision and
//! check a confidential guest.
//!
//! - [`session`]: legacy SEV key transport. [`session::OwnerSession`] builds
//!   the LAUNCH_START DH certificate and session blob from the platform's PDH;
//!   [`session::verify_launch_measure`] checks LAUNCH_MEASURE's output;
//!   [`session::build_secret`] builds a LAUNCH_SECRET packet.
//! - [`snp`]: SEV-SNP ID blocks and attestation report verification.
//! - [`guest_msg`]: the AES-256-GCM guest message envelope of SNP_GUEST_REQUEST.
//! - [`cert`]: SEV certificates and AMD's ECC encodings.
//! - `x509` (feature `x509`): AMD's X.509 ARK/ASK/VCEK chain as served by KDS, and SNP
//!   report verification against it, with AMD's Milan, Genoa and Turin roots built in.
//! - [`crypto`]: the channel's KDF, HMAC and AES-CTR.
//!
//! All secret material (ECDH keys, TEK/TIK, KEK/KIK) is zeroized on drop.

pub mod cert;
pub mod crypto;
pub mod guest_msg;
pub mod session;
pub mod snp;
#[cfg(feature = "x509")]
pub mod x509;

/// Errors of the guest-owner helpers.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum OwnerError {
    /// A public key or algorithm is not acceptable.
    #[error("invalid key: {0}")]
    InvalidKey(&'static str),
    /// A signature is malformed or does not verify.
    #[error("bad signature: {0}")]
    BadSignature(&'static str),
    /// The chain's root is not the trusted ARK.
    #[error("certificate chain is not rooted in the trusted ARK")]
    UntrustedRoot,
    /// The launch measurement does not match the expected digest.
    #[error("launch measurement does not match the expected digest")]
    MeasurementMismatch,
    /// A length is not acceptable.
    #[error("invalid length: {0}")]
    InvalidLength(&'static str),
}
