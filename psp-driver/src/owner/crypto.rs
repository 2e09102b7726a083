//! Symmetric primitives of the SEV key-transport channel (RustCrypto underneath).

use aes::Aes128;
use ctr::cipher::{KeyIvInit, StreamCipher};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// HMAC-SHA256 over the concatenation of `parts`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// Constant-time check of `expected == HMAC-SHA256(key, parts)`.
pub fn hmac_sha256_verify(key: &[u8], parts: &[&[u8]], expected: &[u8]) -> bool {
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    for p in parts {
        mac.update(p);
    }
    mac.verify_slice(expected).is_ok()
}

/// NIST SP 800-108 key derivation in counter mode with HMAC-SHA256, as the SEV
/// firmware runs it: block `i` (from 1) is
/// `HMAC(key, i (u32 LE) ‖ label ‖ 0x00 ‖ context ‖ L_bits (u32 LE))`; the
/// blocks are concatenated and truncated to `out.len()` bytes.
///
/// ```
/// # use psp_driver::owner::crypto::nist_kdf;
/// let mut master = [0u8; 16];
/// nist_kdf(&[0u8; 16], b"sev-master-secret", &[0u8; 16], &mut master);
/// assert_eq!(master[..4], [0xab, 0x4d, 0x26, 0x9f]);
/// ```
pub fn nist_kdf(key: &[u8], label: &[u8], context: &[u8], out: &mut [u8]) {
    let l_bits = ((out.len() as u64 * 8) as u32).to_le_bytes();
    for (i, chunk) in out.chunks_mut(32).enumerate() {
        let counter = (i as u32 + 1).to_le_bytes();
        let block = hmac_sha256(key, &[&counter, label, &[0u8], context, &l_bits]);
        chunk.copy_from_slice(&block[..chunk.len()]);
    }
}

/// AES-128 in CTR mode (128-bit big-endian counter starting at `iv`), in place.
/// Encryption and decryption are the same operation.
pub fn aes128_ctr(key: &[u8; 16], iv: &[u8; 16], data: &mut [u8]) {
    let mut c = ctr::Ctr128BE::<Aes128>::new(key.into(), iv.into());
    c.apply_keystream(data);
}
