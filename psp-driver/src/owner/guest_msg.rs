//! SNP guest messages: the AES-256-GCM envelope a guest uses to talk to the
//! firmware through SNP_GUEST_REQUEST (Linux `struct snp_guest_msg_hdr`, SNP ABI
//! "Guest Messages"), and the attestation report request/response payloads.
//!
//! A message is a 0x60-byte header followed by the encrypted payload. The key
//! is a VMPCK from the secrets page, the 96-bit IV is the message sequence
//! number (little-endian, zero-extended), the additional data is header bytes
//! `0x30..0x60`, and the 16-byte tag sits at the start of the header. The
//! firmware answers with sequence number + 1.

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::OwnerError;

/// Length of [`SnpGuestMsgHdr`].
pub const MSG_HDR_LEN: usize = 0x60;
/// Largest payload in a one-page message.
pub const MSG_PAYLOAD_MAX: usize = 4096 - MSG_HDR_LEN;
/// `SNP_AEAD_AES_256_GCM`.
pub const AEAD_AES_256_GCM: u8 = 1;
/// `SNP_MSG_REPORT_REQ`.
pub const MSG_REPORT_REQ: u8 = 5;
/// `SNP_MSG_REPORT_RSP`.
pub const MSG_REPORT_RSP: u8 = 6;

/// The guest message header (0x60 bytes).
#[doc(alias = "snp_guest_msg_hdr")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct SnpGuestMsgHdr {
    /// AES-GCM tag (first 16 bytes used).
    pub authtag: [u8; 32],
    /// Message sequence number (the IV).
    pub msg_seqno: U64,
    /// Reserved.
    pub rsvd1: [u8; 8],
    /// AEAD algorithm, [`AEAD_AES_256_GCM`].
    pub algo: u8,
    /// Header version, 1.
    pub hdr_version: u8,
    /// Header size, 0x60.
    pub hdr_sz: U16,
    /// Message type ([`MSG_REPORT_REQ`], ...).
    pub msg_type: u8,
    /// Message version, 1.
    pub msg_version: u8,
    /// Payload size.
    pub msg_sz: U16,
    /// Reserved.
    pub rsvd2: U32,
    /// Index of the VMPCK used (0..=3).
    pub msg_vmpck: u8,
    /// Reserved.
    pub rsvd3: [u8; 35],
}

/// `MSG_REPORT_REQ` payload (0x60 bytes).
#[doc(alias = "snp_report_req")]
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct MsgReportReq {
    /// Data to include in the report.
    pub report_data: [u8; 64],
    /// VMPL to put in the report; must be ≥ the VMPCK index.
    pub vmpl: U32,
    /// bits 1:0 KEY_SEL (0 VLEK-or-VCEK, 1 VCEK, 2 VLEK).
    pub key_sel: U32,
    /// Reserved.
    pub rsvd: [u8; 24],
}

const _: () = assert!(core::mem::size_of::<SnpGuestMsgHdr>() == MSG_HDR_LEN);
const _: () = assert!(core::mem::size_of::<MsgReportReq>() == 0x60);

fn nonce(seqno: u64) -> Nonce<aes_gcm::aead::consts::U12> {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(&seqno.to_le_bytes());
    n.into()
}

/// Builds an encrypted message: header followed by the ciphertext of `payload`.
pub fn seal(
    vmpck: &[u8; 32],
    vmpck_id: u8,
    seqno: u64,
    msg_type: u8,
    payload: &[u8],
) -> Result<Vec<u8>, OwnerError> {
    if payload.len() > MSG_PAYLOAD_MAX {
        return Err(OwnerError::InvalidLength(
            "guest message payload larger than a page",
        ));
    }
    let mut hdr = SnpGuestMsgHdr::new_zeroed();
    hdr.msg_seqno = U64::new(seqno);
    hdr.algo = AEAD_AES_256_GCM;
    hdr.hdr_version = 1;
    hdr.hdr_sz = U16::new(MSG_HDR_LEN as u16);
    hdr.msg_type = msg_type;
    hdr.msg_version = 1;
    hdr.msg_sz = U16::new(payload.len() as u16);
    hdr.msg_vmpck = vmpck_id;
    let mut ct = payload.to_vec();
    let cipher = Aes256Gcm::new(vmpck.into());
    let tag = cipher
        .encrypt_inout_detached(
            &nonce(seqno),
            &hdr.as_bytes()[0x30..],
            ct.as_mut_slice().into(),
        )
        .map_err(|_| OwnerError::InvalidLength("AEAD input too long"))?;
    hdr.authtag[..16].copy_from_slice(&tag);
    let mut out = hdr.as_bytes().to_vec();
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Authenticates and decrypts a message built by [`seal`] (or the firmware).
pub fn open(vmpck: &[u8; 32], msg: &[u8]) -> Result<(SnpGuestMsgHdr, Vec<u8>), OwnerError> {
    let (hdr, rest) = SnpGuestMsgHdr::read_from_prefix(msg)
        .map_err(|_| OwnerError::InvalidLength("short guest message"))?;
    let n = hdr.msg_sz.get() as usize;
    let mut pt = rest
        .get(..n)
        .ok_or(OwnerError::InvalidLength("payload shorter than MSG_SZ"))?
        .to_vec();
    let mut tag = [0u8; 16];
    tag.copy_from_slice(&hdr.authtag[..16]);
    let tag: Tag = tag.into();
    Aes256Gcm::new(vmpck.into())
        .decrypt_inout_detached(
            &nonce(hdr.msg_seqno.get()),
            &hdr.as_bytes()[0x30..],
            pt.as_mut_slice().into(),
            &tag,
        )
        .map_err(|_| OwnerError::BadSignature("guest message authentication failed"))?;
    Ok((hdr, pt))
}
