//! SEV certificates (0x824 bytes) and AMD's ECC key and signature encodings.
//!
//! The layout is the SEV API's certificate format: a 0x414-byte signed body
//! (version, firmware API version, key usage and algorithm, a 0x404-byte public
//! key) followed by two signature slots. The platform's OCA → PEK → PDH chain
//! uses it; the software firmware also issues its simulated SNP ARK → ASK →
//! VCEK chain in this format (with P-384 keys and SHA-384 signatures) instead
//! of AMD's X.509 certificates, which use RSA-PSS for ARK and ASK.

use p384::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use p384::ecdsa::{Signature, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256, Sha384};
use zerocopy::little_endian::U32;
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::OwnerError;
use crate::report::{CURVE_P384, ECC_INT_LEN, EccPublicKey, EcdsaSignature};

/// Size of a [`SevCert`].
pub const SEV_CERT_LEN: usize = 0x824;
/// Length of the signed body of a [`SevCert`] (`0x000..0x414`).
pub const SEV_CERT_BODY_LEN: usize = 0x414;

/// Certificate key usage values (SEV API "Key Usage").
pub mod usage {
    /// AMD root key.
    pub const ARK: u32 = 0x0;
    /// AMD signing key.
    pub const ASK: u32 = 0x13;
    /// No key in this slot.
    pub const INVALID: u32 = 0x1000;
    /// Owner certificate authority.
    pub const OCA: u32 = 0x1001;
    /// Platform endorsement key.
    pub const PEK: u32 = 0x1002;
    /// Platform Diffie-Hellman key.
    pub const PDH: u32 = 0x1003;
    /// Chip endorsement key; the simulated SNP chain also uses it for the VCEK.
    pub const CEK: u32 = 0x1004;
}

/// Certificate algorithm values (SEV API "Algorithms").
pub mod algo {
    /// Empty slot.
    pub const INVALID: u32 = 0x0;
    /// ECDSA with SHA-256.
    pub const ECDSA_SHA256: u32 = 0x2;
    /// ECDH with SHA-256.
    pub const ECDH_SHA256: u32 = 0x3;
    /// ECDSA with SHA-384.
    pub const ECDSA_SHA384: u32 = 0x102;
    /// ECDH with SHA-384.
    pub const ECDH_SHA384: u32 = 0x103;
}

/// One signature slot of a [`SevCert`].
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct SevCertSig {
    /// Usage of the signing key ([`usage`]), [`usage::INVALID`] if empty.
    pub usage: U32,
    /// Signature algorithm ([`algo`]).
    pub algo: U32,
    /// The signature.
    pub sig: EcdsaSignature,
}

/// A SEV certificate (0x824 bytes).
#[doc(alias = "SEV_CERT")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct SevCert {
    /// Format version, 1.
    pub version: U32,
    /// Firmware API major version of the issuer.
    pub api_major: u8,
    /// Firmware API minor version of the issuer.
    pub api_minor: u8,
    /// Reserved.
    pub reserved0: u8,
    /// Reserved.
    pub reserved1: u8,
    /// Usage of the certified key ([`usage`]).
    pub pub_key_usage: U32,
    /// Algorithm of the certified key ([`algo`]).
    pub pub_key_algo: U32,
    /// The certified public key.
    pub pub_key: EccPublicKey,
    /// First signature.
    pub sig1: SevCertSig,
    /// Second signature.
    pub sig2: SevCertSig,
}

const _: () = assert!(core::mem::size_of::<SevCert>() == SEV_CERT_LEN);
const _: () = assert!(core::mem::offset_of!(SevCert, sig1) == SEV_CERT_BODY_LEN);

impl SevCert {
    /// Builds an unsigned certificate for `key` (both signature slots empty).
    pub fn new(key: &VerifyingKey, key_usage: u32, key_algo: u32, api: (u8, u8)) -> Self {
        let mut c = Self::new_zeroed();
        c.version = U32::new(1);
        c.api_major = api.0;
        c.api_minor = api.1;
        c.pub_key_usage = U32::new(key_usage);
        c.pub_key_algo = U32::new(key_algo);
        c.pub_key = encode_public_key(key);
        for s in [&mut c.sig1, &mut c.sig2] {
            s.usage = U32::new(usage::INVALID);
        }
        c
    }

    /// The signed body (`0x000..0x414`).
    pub fn body(&self) -> &[u8] {
        &self.as_bytes()[..SEV_CERT_BODY_LEN]
    }

    /// Signs the body with `signer` into slot `slot` (0 or 1).
    pub fn sign(
        &mut self,
        slot: usize,
        signer: &SigningKey,
        signer_usage: u32,
        sig_algo: u32,
    ) -> Result<(), OwnerError> {
        let sig = sign_message(signer, sig_algo, self.body())?;
        let s = if slot == 0 {
            &mut self.sig1
        } else {
            &mut self.sig2
        };
        s.usage = U32::new(signer_usage);
        s.algo = U32::new(sig_algo);
        s.sig = sig;
        Ok(())
    }

    /// Decodes the certified public key.
    pub fn public_key(&self) -> Result<VerifyingKey, OwnerError> {
        decode_public_key(&self.pub_key)
    }

    /// Verifies that some signature slot holds a valid signature of the body by
    /// `issuer`, made with a key of usage `issuer_usage`.
    pub fn verify_signed_by(
        &self,
        issuer: &VerifyingKey,
        issuer_usage: u32,
    ) -> Result<(), OwnerError> {
        for s in [&self.sig1, &self.sig2] {
            if s.usage.get() == issuer_usage
                && verify_message(issuer, s.algo.get(), self.body(), &s.sig).is_ok()
            {
                return Ok(());
            }
        }
        Err(OwnerError::BadSignature("certificate"))
    }
}

/// Encodes a P-384 public key in AMD's 0x404-byte structure.
pub fn encode_public_key(key: &VerifyingKey) -> EccPublicKey {
    let point = key.to_sec1_point(false);
    let raw = point.as_bytes();
    let mut k = EccPublicKey::new_zeroed();
    k.curve = U32::new(CURVE_P384);
    // Uncompressed SEC1: 0x04 ‖ X (48, BE) ‖ Y (48, BE).
    if raw.len() == 97 {
        be_to_le72(&raw[1..49], &mut k.qx);
        be_to_le72(&raw[49..97], &mut k.qy);
    }
    k
}

/// Decodes AMD's 0x404-byte public-key structure; fails unless the curve is
/// P-384 and the point is on the curve.
pub fn decode_public_key(k: &EccPublicKey) -> Result<VerifyingKey, OwnerError> {
    if k.curve.get() != CURVE_P384 {
        return Err(OwnerError::InvalidKey("curve is not P-384"));
    }
    if k.qx[48..].iter().chain(&k.qy[48..]).any(|&b| b != 0) {
        return Err(OwnerError::InvalidKey("coordinate wider than 384 bits"));
    }
    let mut sec1 = [0u8; 97];
    sec1[0] = 4;
    le72_to_be(&k.qx, &mut sec1[1..49]);
    le72_to_be(&k.qy, &mut sec1[49..97]);
    VerifyingKey::from_sec1_bytes(&sec1).map_err(|_| OwnerError::InvalidKey("point not on P-384"))
}

/// Encodes an ECDSA signature in AMD's little-endian `R`/`S` structure.
pub fn encode_signature(sig: &Signature) -> EcdsaSignature {
    let (r, s) = sig.split_bytes();
    let mut out = EcdsaSignature::new_zeroed();
    be_to_le72(&r, &mut out.r);
    be_to_le72(&s, &mut out.s);
    out
}

/// Decodes AMD's `R`/`S` structure.
pub fn decode_signature(sig: &EcdsaSignature) -> Result<Signature, OwnerError> {
    if sig.r[48..].iter().chain(&sig.s[48..]).any(|&b| b != 0) {
        return Err(OwnerError::BadSignature("integer wider than 384 bits"));
    }
    let mut r = [0u8; 48];
    let mut s = [0u8; 48];
    le72_to_be(&sig.r, &mut r);
    le72_to_be(&sig.s, &mut s);
    Signature::from_scalars(r, s).map_err(|_| OwnerError::BadSignature("r or s out of range"))
}

fn prehash(algo_id: u32, msg: &[u8]) -> Result<Vec<u8>, OwnerError> {
    match algo_id {
        algo::ECDSA_SHA256 => Ok(Sha256::digest(msg).to_vec()),
        algo::ECDSA_SHA384 => Ok(Sha384::digest(msg).to_vec()),
        _ => Err(OwnerError::InvalidKey("unsupported signature algorithm")),
    }
}

/// Signs `msg` (hashed with the hash of `sig_algo`) with deterministic ECDSA (RFC 6979).
pub fn sign_message(
    key: &SigningKey,
    sig_algo: u32,
    msg: &[u8],
) -> Result<EcdsaSignature, OwnerError> {
    let h = prehash(sig_algo, msg)?;
    let sig: Signature = key
        .sign_prehash(&h)
        .map_err(|_| OwnerError::BadSignature("signing failed"))?;
    Ok(encode_signature(&sig))
}

/// Verifies an AMD-encoded signature of `msg` (hashed with the hash of `sig_algo`).
pub fn verify_message(
    key: &VerifyingKey,
    sig_algo: u32,
    msg: &[u8],
    sig: &EcdsaSignature,
) -> Result<(), OwnerError> {
    let h = prehash(sig_algo, msg)?;
    let sig = decode_signature(sig)?;
    key.verify_prehash(&h, &sig)
        .map_err(|_| OwnerError::BadSignature("signature does not verify"))
}

fn be_to_le72(be: &[u8], le: &mut [u8; ECC_INT_LEN]) {
    for (d, s) in le.iter_mut().zip(be.iter().rev()) {
        *d = *s;
    }
}

fn le72_to_be(le: &[u8; ECC_INT_LEN], be: &mut [u8]) {
    let n = be.len();
    for (i, d) in be.iter_mut().enumerate() {
        *d = le[n - 1 - i];
    }
}
