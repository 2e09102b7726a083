//! `TDREPORT_STRUCT` (1024 bytes) and the TD quote v4 (48-byte header, 584-byte body).
//!
//! Layouts: TDX module 1.5 `tdx_api_defs.h` and Intel DCAP `sgx_quote_4.h` (firmware facts
//! §5.5); every offset is checked at compile time.
//!
//! **The MAC is a model.** The CPU MACs a TDREPORT with a key only the CPU (and the
//! quoting enclave through `EVERIFYREPORT2`) can use; the software module uses
//! HMAC-SHA256 under a per-module key derived from its seed, over REPORTMACSTRUCT bytes
//! 0x00..0xE0 (which include TEE_TCB_INFO_HASH and TEE_INFO_HASH, so the MAC covers the
//! whole report). Likewise the quote's signature data is an HMAC under the model's quoting
//! key, not an ECDSA-P256 signature: it proves nothing outside the model.

use sha2::{Digest, Sha384};
use thiserror::Error;
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Size of a TDREPORT.
pub const TDREPORT_SIZE: usize = 1024;
/// TDREPORT type byte for TDX.
pub const TDX_REPORT_TYPE: u8 = 0x81;
/// Quote v4 header size.
pub const QUOTE_HEADER_SIZE: usize = 48;
/// TD quote v4 body size.
pub const QUOTE_BODY_SIZE: usize = 584;
/// Quote version.
pub const QUOTE_VERSION: u16 = 4;
/// Attestation key type ECDSA-P256.
pub const ATT_KEY_TYPE_ECDSA_P256: u16 = 2;
/// TEE type of a TD quote.
pub const TEE_TYPE_TDX: u32 = 0x81;
/// Intel's QE vendor id `939a7233-f79c-4ca9-940a-0db3957f0607` (DCAP).
pub const INTEL_QE_VENDOR_ID: [u8; 16] = [
    0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07,
];

/// `REPORTMACSTRUCT` (256 bytes at TDREPORT offset 0).
#[doc(alias = "reportmacstruct")]
#[derive(Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct ReportMacStruct {
    /// TYPE (0x81 for TDX), SUBTYPE, VERSION (0 without service TDs), reserved.
    pub report_type: [u8; 4],
    /// Reserved.
    pub reserved1: [u8; 12],
    /// CPU security version.
    pub cpusvn: [u8; 16],
    /// SHA-384 of TEE_TCB_INFO.
    pub tee_tcb_info_hash: [u8; 48],
    /// SHA-384 of TDINFO.
    pub tee_info_hash: [u8; 48],
    /// Caller-supplied data (e.g. a nonce or a key hash).
    pub report_data: [u8; 64],
    /// Reserved.
    pub reserved2: [u8; 32],
    /// The MAC (see the module documentation: a model).
    pub mac: [u8; 32],
}

/// `TEE_TCB_INFO` (256 bytes at TDREPORT offset 0x100): the TDX module's identity.
#[doc(alias = "tee_tcb_info")]
#[derive(Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct TeeTcbInfo {
    /// Which of the following fields are valid (bit per field in the model: SVN, MRSEAM,
    /// MRSIGNERSEAM, ATTRIBUTES).
    pub valid: U64,
    /// TEE_TCB_SVN.
    pub tee_tcb_svn: [u8; 16],
    /// MRSEAM.
    pub mrseam: [u8; 48],
    /// MRSIGNERSEAM.
    pub mrsignerseam: [u8; 48],
    /// SEAM attributes.
    pub attributes: U64,
    /// Reserved.
    pub reserved: [u8; 128],
}

/// `TDINFO` (512 bytes at TDREPORT offset 0x200): the TD's measurements and configuration.
#[doc(alias = "tdinfo")]
#[derive(Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct TdInfo {
    /// TD ATTRIBUTES.
    pub attributes: U64,
    /// XFAM.
    pub xfam: U64,
    /// MRTD: the build-time measurement.
    pub mrtd: [u8; 48],
    /// MRCONFIGID.
    pub mrconfigid: [u8; 48],
    /// MROWNER.
    pub mrowner: [u8; 48],
    /// MROWNERCONFIG.
    pub mrownerconfig: [u8; 48],
    /// RTMR0..3.
    pub rtmr: [[u8; 48]; 4],
    /// SERVTD_HASH (zero without bound service TDs).
    pub servtd_hash: [u8; 48],
    /// Reserved.
    pub reserved: [u8; 64],
}

/// `TDREPORT_STRUCT` (1024 bytes), as TDG.MR.REPORT writes it.
#[doc(alias = "tdreport_struct")]
#[derive(Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct TdReport {
    /// REPORTMACSTRUCT.
    pub report_mac: ReportMacStruct,
    /// TEE_TCB_INFO.
    pub tee_tcb_info: TeeTcbInfo,
    /// TDINFO.
    pub td_info: TdInfo,
}

/// Bytes of REPORTMACSTRUCT covered by the (model) MAC: everything before the MAC.
pub const REPORT_MAC_COVERED: usize = 0xE0;

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<ReportMacStruct>() == 256);
    assert!(size_of::<TeeTcbInfo>() == 256);
    assert!(size_of::<TdInfo>() == 512);
    assert!(size_of::<TdReport>() == TDREPORT_SIZE);
    assert!(offset_of!(ReportMacStruct, reserved1) == 4);
    assert!(offset_of!(ReportMacStruct, cpusvn) == 0x10);
    assert!(offset_of!(ReportMacStruct, tee_tcb_info_hash) == 0x20);
    assert!(offset_of!(ReportMacStruct, tee_info_hash) == 0x50);
    assert!(offset_of!(ReportMacStruct, report_data) == 0x80);
    assert!(offset_of!(ReportMacStruct, reserved2) == 0xC0);
    assert!(offset_of!(ReportMacStruct, mac) == REPORT_MAC_COVERED);
    assert!(offset_of!(TdReport, tee_tcb_info) == 0x100);
    assert!(0x100 + offset_of!(TeeTcbInfo, tee_tcb_svn) == 0x108);
    assert!(0x100 + offset_of!(TeeTcbInfo, mrseam) == 0x118);
    assert!(0x100 + offset_of!(TeeTcbInfo, mrsignerseam) == 0x148);
    assert!(0x100 + offset_of!(TeeTcbInfo, attributes) == 0x178);
    assert!(0x100 + offset_of!(TeeTcbInfo, reserved) == 0x180);
    assert!(offset_of!(TdReport, td_info) == 0x200);
    assert!(0x200 + offset_of!(TdInfo, xfam) == 0x208);
    assert!(0x200 + offset_of!(TdInfo, mrtd) == 0x210);
    assert!(0x200 + offset_of!(TdInfo, mrconfigid) == 0x240);
    assert!(0x200 + offset_of!(TdInfo, mrowner) == 0x270);
    assert!(0x200 + offset_of!(TdInfo, mrownerconfig) == 0x2A0);
    assert!(0x200 + offset_of!(TdInfo, rtmr) == 0x2D0);
    assert!(0x200 + offset_of!(TdInfo, servtd_hash) == 0x390);
    assert!(0x200 + offset_of!(TdInfo, reserved) == 0x3C0);
};

impl TdReport {
    /// An all-zero report.
    pub fn zeroed() -> Self {
        Self::new_zeroed()
    }

    /// Parses 1024 bytes.
    ///
    /// # Errors
    /// [`QuoteError::Length`] if `bytes` is not exactly 1024 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, QuoteError> {
        Self::read_from_bytes(bytes).map_err(|_| QuoteError::Length {
            what: "TDREPORT",
            need: TDREPORT_SIZE,
            have: bytes.len(),
        })
    }

    /// RTMR `i` (0..4).
    pub fn rtmr(&self, i: usize) -> Option<&[u8; 48]> {
        self.td_info.rtmr.get(i)
    }

    /// SHA-384 of TEE_TCB_INFO, as REPORTMACSTRUCT.TEE_TCB_INFO_HASH must hold.
    pub fn compute_tee_tcb_info_hash(&self) -> [u8; 48] {
        Sha384::digest(self.tee_tcb_info.as_bytes()).into()
    }

    /// SHA-384 of TDINFO, as REPORTMACSTRUCT.TEE_INFO_HASH must hold.
    pub fn compute_tee_info_hash(&self) -> [u8; 48] {
        Sha384::digest(self.td_info.as_bytes()).into()
    }

    /// The bytes the model's MAC covers.
    pub fn mac_input(&self) -> &[u8] {
        &self.report_mac.as_bytes()[..REPORT_MAC_COVERED]
    }
}

/// The quote v4 header (48 bytes).
#[doc(alias = "sgx_quote4_header_t")]
#[derive(Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct QuoteHeaderV4 {
    /// 4.
    pub version: U16,
    /// 2 (ECDSA-P256).
    pub att_key_type: U16,
    /// 0x81 (TDX).
    pub tee_type: U32,
    /// Reserved.
    pub reserved: U32,
    /// QE vendor id.
    pub qe_vendor_id: [u8; 16],
    /// User data (QE-defined).
    pub user_data: [u8; 20],
}

/// The TD quote v4 body (584 bytes at quote offset 48).
#[doc(alias = "sgx_report2_body_t")]
#[derive(Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct TdQuoteBody {
    /// TEE_TCB_SVN.
    pub tee_tcb_svn: [u8; 16],
    /// MRSEAM.
    pub mrseam: [u8; 48],
    /// MRSIGNERSEAM.
    pub mrsignerseam: [u8; 48],
    /// SEAM attributes.
    pub seam_attributes: U64,
    /// TD attributes.
    pub td_attributes: U64,
    /// XFAM.
    pub xfam: U64,
    /// MRTD.
    pub mrtd: [u8; 48],
    /// MRCONFIGID.
    pub mrconfigid: [u8; 48],
    /// MROWNER.
    pub mrowner: [u8; 48],
    /// MROWNERCONFIG.
    pub mrownerconfig: [u8; 48],
    /// RTMR0..3.
    pub rtmr: [[u8; 48]; 4],
    /// REPORTDATA.
    pub report_data: [u8; 64],
}

/// Offset of MRTD in a whole quote.
pub const QUOTE_MRTD_OFFSET: usize = QUOTE_HEADER_SIZE + core::mem::offset_of!(TdQuoteBody, mrtd);
/// Offset of REPORTDATA in a whole quote.
pub const QUOTE_REPORT_DATA_OFFSET: usize =
    QUOTE_HEADER_SIZE + core::mem::offset_of!(TdQuoteBody, report_data);
/// Offset of `sig_data_len` in a whole quote.
pub const QUOTE_SIG_LEN_OFFSET: usize = QUOTE_HEADER_SIZE + QUOTE_BODY_SIZE;

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<QuoteHeaderV4>() == QUOTE_HEADER_SIZE);
    assert!(offset_of!(QuoteHeaderV4, att_key_type) == 2);
    assert!(offset_of!(QuoteHeaderV4, tee_type) == 4);
    assert!(offset_of!(QuoteHeaderV4, reserved) == 8);
    assert!(offset_of!(QuoteHeaderV4, qe_vendor_id) == 12);
    assert!(offset_of!(QuoteHeaderV4, user_data) == 28);
    assert!(size_of::<TdQuoteBody>() == QUOTE_BODY_SIZE);
    assert!(offset_of!(TdQuoteBody, mrseam) == 16);
    assert!(offset_of!(TdQuoteBody, mrsignerseam) == 64);
    assert!(offset_of!(TdQuoteBody, seam_attributes) == 112);
    assert!(offset_of!(TdQuoteBody, td_attributes) == 120);
    assert!(offset_of!(TdQuoteBody, xfam) == 128);
    assert!(offset_of!(TdQuoteBody, mrtd) == 136);
    assert!(offset_of!(TdQuoteBody, mrconfigid) == 184);
    assert!(offset_of!(TdQuoteBody, mrowner) == 232);
    assert!(offset_of!(TdQuoteBody, mrownerconfig) == 280);
    assert!(offset_of!(TdQuoteBody, rtmr) == 328);
    assert!(offset_of!(TdQuoteBody, report_data) == 520);
    assert!(QUOTE_MRTD_OFFSET == 184);
    assert!(QUOTE_REPORT_DATA_OFFSET == 568);
    assert!(QUOTE_SIG_LEN_OFFSET == 632);
};

impl TdQuoteBody {
    /// The body a quoting enclave builds from a (verified) TDREPORT.
    pub fn from_report(r: &TdReport) -> Self {
        Self {
            tee_tcb_svn: r.tee_tcb_info.tee_tcb_svn,
            mrseam: r.tee_tcb_info.mrseam,
            mrsignerseam: r.tee_tcb_info.mrsignerseam,
            seam_attributes: r.tee_tcb_info.attributes,
            td_attributes: r.td_info.attributes,
            xfam: r.td_info.xfam,
            mrtd: r.td_info.mrtd,
            mrconfigid: r.td_info.mrconfigid,
            mrowner: r.td_info.mrowner,
            mrownerconfig: r.td_info.mrownerconfig,
            rtmr: r.td_info.rtmr,
            report_data: r.report_mac.report_data,
        }
    }
}

impl TdQuoteBody {
    /// Parses a 584-byte body (e.g. `quote[48..632]`).
    ///
    /// # Errors
    /// [`QuoteError::Length`] unless `bytes` is exactly 584 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, QuoteError> {
        Self::read_from_bytes(bytes).map_err(|_| QuoteError::Length {
            what: "TD quote body",
            need: QUOTE_BODY_SIZE,
            have: bytes.len(),
        })
    }
}

impl std::fmt::Display for TdQuoteBody {
    /// One `name: value` line per field, digests in lower-case hex.
    ///
    /// ```
    /// use kvm_coco::sim::tdx::TdQuoteBody;
    /// let body = TdQuoteBody::from_slice(&[0u8; 584]).unwrap();
    /// assert!(body.to_string().contains(&format!("mrtd: {}", "00".repeat(48))));
    /// ```
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let h = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        writeln!(f, "tee_tcb_svn: {}", h(&self.tee_tcb_svn))?;
        writeln!(f, "mrseam: {}", h(&self.mrseam))?;
        writeln!(f, "mrsignerseam: {}", h(&self.mrsignerseam))?;
        writeln!(f, "seam_attributes: {:#018x}", self.seam_attributes.get())?;
        writeln!(f, "td_attributes: {:#018x}", self.td_attributes.get())?;
        writeln!(f, "xfam: {:#018x}", self.xfam.get())?;
        writeln!(f, "mrtd: {}", h(&self.mrtd))?;
        writeln!(f, "mrconfigid: {}", h(&self.mrconfigid))?;
        writeln!(f, "mrowner: {}", h(&self.mrowner))?;
        writeln!(f, "mrownerconfig: {}", h(&self.mrownerconfig))?;
        for (i, r) in self.rtmr.iter().enumerate() {
            writeln!(f, "rtmr{i}: {}", h(r))?;
        }
        write!(f, "report_data: {}", h(&self.report_data))
    }
}

/// Why a report or quote cannot be parsed or verified.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum QuoteError {
    /// Wrong or short length.
    #[error("{what}: need {need} bytes, have {have}")]
    Length {
        /// What was parsed.
        what: &'static str,
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// The header does not describe a TD quote v4.
    #[error("not a TD quote v4 (version {version}, tee_type {tee_type:#x})")]
    NotTdQuoteV4 {
        /// The version field.
        version: u16,
        /// The tee_type field.
        tee_type: u32,
    },
    /// The TDREPORT's hashes or MAC do not verify.
    #[error("TDREPORT does not verify: {0}")]
    ReportMac(&'static str),
    /// The quote's (model) signature does not verify.
    #[error("quote signature does not verify")]
    Signature,
}

/// A parsed TD quote v4: header, body and the signature data that follows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TdQuote {
    /// The header.
    pub header: QuoteHeaderV4,
    /// The body.
    pub body: TdQuoteBody,
    /// The signature data (`sig_data_len` bytes after offset 636).
    pub signature: Vec<u8>,
}

impl TdQuote {
    /// Parses a quote: header (checked to be version 4, TEE type 0x81), body,
    /// `sig_data_len` and that many signature bytes.
    ///
    /// # Errors
    /// [`QuoteError::Length`] for a short buffer, [`QuoteError::NotTdQuoteV4`] for another
    /// quote type.
    pub fn parse(bytes: &[u8]) -> Result<Self, QuoteError> {
        let short = |need| QuoteError::Length {
            what: "TD quote",
            need,
            have: bytes.len(),
        };
        let (header, rest) =
            QuoteHeaderV4::read_from_prefix(bytes).map_err(|_| short(QUOTE_HEADER_SIZE))?;
        if header.version.get() != QUOTE_VERSION || header.tee_type.get() != TEE_TYPE_TDX {
            return Err(QuoteError::NotTdQuoteV4 {
                version: header.version.get(),
                tee_type: header.tee_type.get(),
            });
        }
        let (body, rest) =
            TdQuoteBody::read_from_prefix(rest).map_err(|_| short(QUOTE_SIG_LEN_OFFSET))?;
        let (len, rest) =
            U32::read_from_prefix(rest).map_err(|_| short(QUOTE_SIG_LEN_OFFSET + 4))?;
        let len = len.get() as usize;
        let signature = rest
            .get(..len)
            .ok_or(short(QUOTE_SIG_LEN_OFFSET + 4 + len))?
            .to_vec();
        Ok(Self {
            header,
            body,
            signature,
        })
    }

    /// Serializes header ‖ body ‖ `sig_data_len` ‖ signature.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(QUOTE_SIG_LEN_OFFSET + 4 + self.signature.len());
        v.extend_from_slice(self.header.as_bytes());
        v.extend_from_slice(self.body.as_bytes());
        v.extend_from_slice(&(self.signature.len() as u32).to_le_bytes());
        v.extend_from_slice(&self.signature);
        v
    }

    /// The bytes the signature covers (header ‖ body).
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(QUOTE_SIG_LEN_OFFSET);
        v.extend_from_slice(self.header.as_bytes());
        v.extend_from_slice(self.body.as_bytes());
        v
    }
}

impl QuoteHeaderV4 {
    /// The header of a TD quote v4 with Intel's QE vendor id and zero user data.
    pub fn td_v4() -> Self {
        Self {
            version: QUOTE_VERSION.into(),
            att_key_type: ATT_KEY_TYPE_ECDSA_P256.into(),
            tee_type: TEE_TYPE_TDX.into(),
            reserved: 0.into(),
            qe_vendor_id: INTEL_QE_VENDOR_ID,
            user_data: [0; 20],
        }
    }
}
