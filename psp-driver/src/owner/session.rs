//! Legacy SEV key transport: LAUNCH_START session blob, LAUNCH_MEASURE check and
//! LAUNCH_SECRET packets (SEV API "Key Transport" and "LAUNCH_SECRET").

use p384::ecdh::diffie_hellman;
use p384::elliptic_curve::Generate;
use p384::{PublicKey, SecretKey};
use zerocopy::little_endian::U32;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::OwnerError;
use super::cert::{SevCert, algo, usage};
use super::crypto::{aes128_ctr, hmac_sha256, hmac_sha256_verify, nist_kdf};

/// SEV_CHANNEL_CTX_MEASURE, the first byte of the LAUNCH_MEASURE HMAC input.
pub const CTX_MEASURE: u8 = 0x04;
/// SEV_CHANNEL_CTX_SECRET, the first byte of the LAUNCH_SECRET MAC input.
pub const CTX_SECRET: u8 = 0x01;

/// The LAUNCH_START session buffer (0x80 bytes).
#[doc(alias = "SEV_SESSION_BUF")]
#[repr(C)]
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    FromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
    Unaligned,
)]
pub struct SessionBuf {
    /// Nonce, the context of the master-secret derivation.
    pub nonce: [u8; 16],
    /// `TEK ‖ TIK` encrypted with AES-128-CTR under the KEK.
    pub wrap_tk: [u8; 32],
    /// CTR initial counter for `wrap_tk`.
    pub wrap_iv: [u8; 16],
    /// HMAC-SHA256 of `wrap_tk` under the KIK.
    pub wrap_mac: [u8; 32],
    /// HMAC-SHA256 of the policy (u32 LE) under the TIK.
    pub policy_mac: [u8; 32],
}

/// The LAUNCH_SECRET packet header (52 bytes).
#[doc(alias = "SEV_PACKET_HEADER")]
#[repr(C)]
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    FromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
    Unaligned,
)]
pub struct PacketHeader {
    /// bit0 COMPRESSED (unsupported by the firmware).
    pub flags: U32,
    /// CTR initial counter.
    pub iv: [u8; 16],
    /// HMAC-SHA256 under the TIK (see [`secret_mac`]).
    pub mac: [u8; 32],
}

const _: () = assert!(core::mem::size_of::<SessionBuf>() == 0x80);
const _: () = assert!(core::mem::size_of::<PacketHeader>() == 52);

/// The transport keys shared by the guest owner and the firmware.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct TransportKeys {
    /// Transport encryption key.
    pub tek: [u8; 16],
    /// Transport integrity key.
    pub tik: [u8; 16],
}

impl core::fmt::Debug for TransportKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("TransportKeys { .. }")
    }
}

/// Key-encryption and key-integrity keys derived from the ECDH secret.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct WrapKeys {
    /// Key-encryption key.
    pub kek: [u8; 16],
    /// Key-integrity key.
    pub kik: [u8; 16],
}

impl core::fmt::Debug for WrapKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("WrapKeys { .. }")
    }
}

impl WrapKeys {
    /// Derives KEK and KIK from the shared secret `z` and the session nonce:
    /// `master = KDF(z, "sev-master-secret", nonce)`, `KEK = KDF(master, "sev-kek")`,
    /// `KIK = KDF(master, "sev-kik")`.
    pub fn derive(z: &[u8], nonce: &[u8; 16]) -> Self {
        let mut master = [0u8; 16];
        nist_kdf(z, b"sev-master-secret", nonce, &mut master);
        let mut k = Self {
            kek: [0; 16],
            kik: [0; 16],
        };
        nist_kdf(&master, b"sev-kek", &[], &mut k.kek);
        nist_kdf(&master, b"sev-kik", &[], &mut k.kik);
        master.zeroize();
        k
    }
}

/// Wraps `keys` into a session buffer with already-derived wrap keys.
pub fn wrap_session(
    wrap: &WrapKeys,
    keys: &TransportKeys,
    nonce: [u8; 16],
    iv: [u8; 16],
    policy: u32,
) -> SessionBuf {
    let mut s = SessionBuf {
        nonce,
        wrap_iv: iv,
        ..Default::default()
    };
    s.wrap_tk[..16].copy_from_slice(&keys.tek);
    s.wrap_tk[16..].copy_from_slice(&keys.tik);
    aes128_ctr(&wrap.kek, &iv, &mut s.wrap_tk);
    s.wrap_mac = hmac_sha256(&wrap.kik, &[&s.wrap_tk]);
    s.policy_mac = hmac_sha256(&keys.tik, &[&policy.to_le_bytes()]);
    s
}

/// Why unwrapping a session failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnwrapError {
    /// WRAP_MAC does not match.
    WrapMac,
    /// POLICY_MAC does not match.
    PolicyMac,
}

/// The firmware side of [`wrap_session`]: checks WRAP_MAC, decrypts TEK‖TIK and
/// checks POLICY_MAC.
pub fn unwrap_session(
    wrap: &WrapKeys,
    s: &SessionBuf,
    policy: u32,
) -> Result<TransportKeys, UnwrapError> {
    if !hmac_sha256_verify(&wrap.kik, &[&s.wrap_tk], &s.wrap_mac) {
        return Err(UnwrapError::WrapMac);
    }
    let mut tk = s.wrap_tk;
    aes128_ctr(&wrap.kek, &s.wrap_iv, &mut tk);
    let mut keys = TransportKeys {
        tek: [0; 16],
        tik: [0; 16],
    };
    keys.tek.copy_from_slice(&tk[..16]);
    keys.tik.copy_from_slice(&tk[16..]);
    tk.zeroize();
    if !hmac_sha256_verify(&keys.tik, &[&policy.to_le_bytes()], &s.policy_mac) {
        return Err(UnwrapError::PolicyMac);
    }
    Ok(keys)
}

/// The ECDH shared secret `Z`: the 48-byte big-endian x coordinate of `d·Q`.
pub fn shared_secret(secret: &SecretKey, peer: &PublicKey) -> zeroize::Zeroizing<[u8; 48]> {
    let ss = diffie_hellman(secret.to_nonzero_scalar(), peer.as_affine());
    let mut z = zeroize::Zeroizing::new([0u8; 48]);
    z.copy_from_slice(ss.raw_secret_bytes());
    z
}

/// A guest owner's launch session: its ECDH key pair and the transport keys.
///
/// ```
/// use psp_driver::owner::session::OwnerSession;
/// use psp_driver::owner::cert::{SevCert, usage, algo};
/// use rand_core::SeedableRng;
/// # fn main() -> Result<(), psp_driver::owner::OwnerError> {
/// let mut rng = rand_chacha::ChaCha20Rng::from_seed([7; 32]);
/// // The platform's PDH (normally from PDH_CERT_EXPORT).
/// use p384::elliptic_curve::Generate;
/// let pdh = p384::SecretKey::generate_from_rng(&mut rng);
/// let pdh_cert = SevCert::new(&p384::ecdsa::SigningKey::from(&pdh).verifying_key().clone(),
///                             usage::PDH, algo::ECDH_SHA256, (1, 55));
/// let session = OwnerSession::new(&mut rng, &pdh_cert, 0x1)?;
/// assert_eq!(session.dh_cert().pub_key_usage.get(), usage::PDH);
/// # Ok(()) }
/// ```
pub struct OwnerSession {
    secret: SecretKey,
    dh_cert: SevCert,
    keys: TransportKeys,
    session: SessionBuf,
    policy: u32,
}

impl core::fmt::Debug for OwnerSession {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OwnerSession")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl OwnerSession {
    /// Creates a session for `policy` with the platform's PDH certificate: draws
    /// an ECDH key, TEK, TIK, nonce and IV from `rng` and wraps the keys.
    pub fn new<R: rand_core::CryptoRng + ?Sized>(
        rng: &mut R,
        pdh_cert: &SevCert,
        policy: u32,
    ) -> Result<Self, OwnerError> {
        if pdh_cert.pub_key_usage.get() != usage::PDH {
            return Err(OwnerError::InvalidKey("certificate is not a PDH"));
        }
        let pdh = PublicKey::from(pdh_cert.public_key()?);
        let secret = SecretKey::generate_from_rng(rng);
        let mut keys = TransportKeys {
            tek: [0; 16],
            tik: [0; 16],
        };
        let mut nonce = [0u8; 16];
        let mut iv = [0u8; 16];
        rng.fill_bytes(&mut keys.tek);
        rng.fill_bytes(&mut keys.tik);
        rng.fill_bytes(&mut nonce);
        rng.fill_bytes(&mut iv);
        let z = shared_secret(&secret, &pdh);
        let wrap = WrapKeys::derive(&z[..], &nonce);
        let session = wrap_session(&wrap, &keys, nonce, iv, policy);
        let vk = p384::ecdsa::VerifyingKey::from(secret.public_key());
        let dh_cert = SevCert::new(
            &vk,
            usage::PDH,
            algo::ECDH_SHA256,
            (pdh_cert.api_major, pdh_cert.api_minor),
        );
        Ok(Self {
            secret,
            dh_cert,
            keys,
            session,
            policy,
        })
    }

    /// The owner's DH certificate, for LAUNCH_START's `dh_cert_paddr`.
    pub fn dh_cert(&self) -> &SevCert {
        &self.dh_cert
    }
    /// The session buffer, for LAUNCH_START's `session_paddr`.
    pub fn session(&self) -> &SessionBuf {
        &self.session
    }
    /// The transport keys.
    pub fn keys(&self) -> &TransportKeys {
        &self.keys
    }
    /// The policy the session was made for.
    pub fn policy(&self) -> u32 {
        self.policy
    }
    /// The owner's ECDH secret key.
    pub fn secret_key(&self) -> &SecretKey {
        &self.secret
    }
}

/// The firmware's running version, as it enters the measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FwVersion {
    /// API major version.
    pub api_major: u8,
    /// API minor version.
    pub api_minor: u8,
    /// Build number.
    pub build: u8,
}

/// LAUNCH_MEASURE's HMAC: `HMAC-SHA256(TIK, 0x04 ‖ major ‖ minor ‖ build ‖ policy ‖ LD ‖ MNONCE)`.
///
/// ```
/// # use psp_driver::owner::session::{launch_measure, FwVersion};
/// // The sev crate's `session::tests::verify` vector.
/// let tik = [0x66,0x32,0x0d,0xb7,0x31,0x58,0xa3,0x5a,0x25,0x5d,0x05,0x17,0x58,0xe9,0x5e,0xd4];
/// let ld = [0xe3,0xb0,0xc4,0x42,0x98,0xfc,0x1c,0x14,0x9a,0xfb,0xf4,0xc8,0x99,0x6f,0xb9,0x24,
///           0x27,0xae,0x41,0xe4,0x64,0x9b,0x93,0x4c,0xa4,0x95,0x99,0x1b,0x78,0x52,0xb8,0x55];
/// let nonce = [0x4f,0xbe,0x0b,0xed,0xba,0xd6,0xc8,0x6a,0xe8,0xf6,0x89,0x71,0xd1,0x03,0xe5,0x54];
/// let m = launch_measure(&tik, FwVersion { api_major: 0, api_minor: 0x12, build: 0x0f }, 0, &ld, &nonce);
/// assert_eq!(m[..4], [0x6f, 0xaa, 0xb2, 0xda]);
/// ```
pub fn launch_measure(
    tik: &[u8; 16],
    fw: FwVersion,
    policy: u32,
    ld: &[u8; 32],
    mnonce: &[u8; 16],
) -> [u8; 32] {
    hmac_sha256(
        tik,
        &[
            &[CTX_MEASURE, fw.api_major, fw.api_minor, fw.build],
            &policy.to_le_bytes(),
            ld,
            mnonce,
        ],
    )
}

/// Checks the 48-byte LAUNCH_MEASURE output (`MEASURE[32] ‖ MNONCE[16]`)
/// against the expected launch digest.
pub fn verify_launch_measure(
    tik: &[u8; 16],
    fw: FwVersion,
    policy: u32,
    expected_ld: &[u8; 32],
    output: &[u8; 48],
) -> Result<(), OwnerError> {
    let mut nonce = [0u8; 16];
    nonce.copy_from_slice(&output[32..]);
    if hmac_sha256_verify(
        tik,
        &[
            &[CTX_MEASURE, fw.api_major, fw.api_minor, fw.build],
            &policy.to_le_bytes(),
            expected_ld,
            &nonce,
        ],
        &output[..32],
    ) {
        Ok(())
    } else {
        Err(OwnerError::MeasurementMismatch)
    }
}

/// The LAUNCH_SECRET MAC:
/// `HMAC-SHA256(TIK, 0x01 ‖ FLAGS ‖ IV ‖ GUEST_LEN ‖ TRANS_LEN ‖ CIPHERTEXT ‖ MEASURE)`.
pub fn secret_mac(
    tik: &[u8; 16],
    hdr: &PacketHeader,
    guest_len: u32,
    ciphertext: &[u8],
    measure: &[u8; 32],
) -> [u8; 32] {
    hmac_sha256(
        tik,
        &[
            &[CTX_SECRET],
            &hdr.flags.get().to_le_bytes(),
            &hdr.iv,
            &guest_len.to_le_bytes(),
            &(ciphertext.len() as u32).to_le_bytes(),
            ciphertext,
            measure,
        ],
    )
}

/// Builds a LAUNCH_SECRET packet: encrypts `plaintext` with AES-128-CTR(TEK, iv)
/// and MACs it together with the launch `measure`. Returns the header and the
/// ciphertext (the transport buffer). `plaintext.len()` must be a non-zero
/// multiple of 16 for the firmware to accept it.
pub fn build_secret(
    keys: &TransportKeys,
    measure: &[u8; 32],
    iv: [u8; 16],
    plaintext: &[u8],
) -> Result<(PacketHeader, Vec<u8>), OwnerError> {
    if plaintext.is_empty()
        || !plaintext.len().is_multiple_of(16)
        || u32::try_from(plaintext.len()).is_err()
    {
        return Err(OwnerError::InvalidLength(
            "secret length must be a non-zero multiple of 16",
        ));
    }
    let mut ct = plaintext.to_vec();
    aes128_ctr(&keys.tek, &iv, &mut ct);
    let mut hdr = PacketHeader {
        flags: U32::new(0),
        iv,
        mac: [0; 32],
    };
    hdr.mac = secret_mac(&keys.tik, &hdr, ct.len() as u32, &ct, measure);
    Ok((hdr, ct))
}
