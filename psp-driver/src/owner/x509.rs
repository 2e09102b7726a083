//! AMD's X.509 endorsement certificates and verification of SEV-SNP attestation reports
//! against them.
//!
//! A real SNP report is signed by a per-chip, per-TCB key: the VCEK (or, on cloud
//! platforms, a VLEK). AMD's Key Distribution Service (KDS, `https://kdsintf.amd.com`) serves
//! its certificate together with the chain that endorses it:
//!
//! ```text
//! ARK-<product>    self-signed root, RSA-4096, RSASSA-PSS SHA-384
//!   └─ SEV-<product>        ASK (or SEV-VLEK-<product>, the ASVK), RSA-4096, signed by the ARK
//!        └─ SEV-VCEK / SEV-VLEK   ECDSA P-384 key, signed by the ASK/ASVK
//! ```
//!
//! The VCEK carries AMD's extensions (OIDs under `1.3.6.1.4.1.3704.1`): the product name,
//! the TCB it was derived for (one SPL per firmware component) and the chip's hardware ID.
//! [`verify_report`] checks the whole chain, the report's ECDSA signature, and that the
//! report's `REPORTED_TCB` and `CHIP_ID` are the ones the certificate was issued for.
//!
//! AMD's ARK and ASK for Milan, Genoa and Turin are built in ([`Product::builtin_ark`],
//! [`Product::builtin_ask`]); a chain whose root is not one of them verifies only with
//! [`VerifyOptions::allow_unknown_root`], and the result says so ([`Root::Unknown`]).
//!
//! Sources of the facts used here: AMD, "Versioned Chip Endorsement Key (VCEK) Certificate
//! and KDS Interface Specification" (publication 57230) for the chain, algorithms and
//! extension OIDs; AMD, "SEV Secure Nested Paging Firmware ABI Specification" (publication
//! 56860) for the report and TCB layouts. The built-in certificates are the ones KDS serves
//! at `/vcek/v1/{Milan,Genoa,Turin}/cert_chain`.
//!
//! ```
//! use psp_driver::owner::x509::{AmdCert, Product};
//!
//! let ark = Product::Milan.builtin_ark();
//! assert_eq!(ark.common_name().as_deref(), Some("ARK-Milan"));
//! // The built-in ASK is signed by the built-in ARK.
//! Product::Milan.builtin_ask().verify_signed_by(&ark).unwrap();
//! // Not the other way round.
//! assert!(ark.verify_signed_by(&Product::Milan.builtin_ask()).is_err());
//! ```

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use p384::ecdsa::VerifyingKey as EcdsaKey;
use rsa::RsaPublicKey;
use rsa::pkcs1::{DecodeRsaPublicKey, RsaPssParams};
use rsa::pss;
use rsa::signature::Verifier;
use rsa::traits::PublicKeyParts;
use sha2::Sha384;
use x509_cert::Certificate;
use x509_cert::crl::CertificateList;
use x509_cert::der::asn1::{Any, BitString, Ia5StringRef, ObjectIdentifier};
use x509_cert::der::{Decode, Encode, Reader, SliceReader};
use x509_cert::spki::AlgorithmIdentifier;

use super::cert::{algo, verify_message};
use crate::report::{AttestationReport, SIG_ALGO_ECDSA_P384_SHA384, TcbVersion};

/// Object identifiers of the algorithms and of AMD's certificate extensions.
pub mod oid {
    use super::ObjectIdentifier;

    /// `rsaEncryption` (PKCS #1), the key algorithm of AMD's ARK and ASK.
    pub const RSA_ENCRYPTION: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
    /// `id-RSASSA-PSS`, the signature algorithm of every AMD endorsement certificate.
    pub const RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
    /// `id-mgf1`, the only mask generation function of PKCS #1.
    pub const MGF1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.8");
    /// `id-sha384`.
    pub const SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
    /// `id-ecPublicKey`, the key algorithm of the VCEK and VLEK.
    pub const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
    /// `secp384r1` (NIST P-384).
    pub const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");

    /// AMD extension: certificate structure version (INTEGER).
    pub const AMD_STRUCT_VERSION: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.1");
    /// AMD extension: product name, e.g. `Milan-B0` (IA5String).
    pub const AMD_PRODUCT_NAME: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.2");
    /// AMD extension: boot loader SPL (INTEGER).
    pub const AMD_BL_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.1");
    /// AMD extension: PSP OS (TEE) SPL (INTEGER).
    pub const AMD_TEE_SPL: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.2");
    /// AMD extension: SNP firmware SPL (INTEGER).
    pub const AMD_SNP_SPL: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.3");
    /// AMD extension: microcode SPL (INTEGER).
    pub const AMD_UCODE_SPL: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.8");
    /// AMD extension: FMC SPL, Turin and later (INTEGER).
    pub const AMD_FMC_SPL: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.9");
    /// AMD extension: hardware ID, the chip ID the VCEK was derived for (OCTET STRING; 64
    /// bytes on Milan and Genoa, 8 bytes on Turin).
    pub const AMD_HW_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.4");
    /// AMD extension: cloud service provider ID of a VLEK (IA5String).
    pub const AMD_CSP_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.5");
}

/// Errors of AMD certificate parsing and report verification.
///
/// Every variant names the certificate (by subject common name) or the report field at
/// fault, so the message says what to fetch or fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum X509Error {
    /// The bytes are not a DER or PEM certificate.
    #[error("{what} is not an X.509 certificate")]
    Decode {
        /// What was being parsed.
        what: String,
        /// The ASN.1 decoding error.
        #[source]
        source: x509_cert::der::Error,
    },
    /// A certificate uses an algorithm AMD's chain does not use.
    #[error("certificate '{cert}': unsupported {what} {oid}")]
    UnsupportedAlgorithm {
        /// Subject of the certificate.
        cert: String,
        /// `signature algorithm`, `key algorithm`, `PSS hash`…
        what: &'static str,
        /// The algorithm's OID.
        oid: String,
    },
    /// A public key cannot be used.
    #[error("certificate '{cert}': invalid public key: {why}")]
    InvalidKey {
        /// Subject of the certificate.
        cert: String,
        /// Why.
        why: &'static str,
    },
    /// The certificate's issuer is not the subject of the certificate above it.
    #[error("certificate '{cert}' is issued by '{issuer}', not by '{expected}'")]
    IssuerMismatch {
        /// Subject of the certificate.
        cert: String,
        /// Its issuer.
        issuer: String,
        /// The subject of the certificate given as its signer.
        expected: String,
    },
    /// The signature does not verify under the issuer's key.
    #[error("certificate '{cert}' is not signed by '{signer}' (signature does not verify)")]
    BadSignature {
        /// Subject of the certificate.
        cert: String,
        /// Subject of the would-be signer.
        signer: String,
    },
    /// The certificate is not valid yet at the verification time.
    #[error("certificate '{cert}' is not valid before {not_before}")]
    NotYetValid {
        /// Subject of the certificate.
        cert: String,
        /// Start of its validity.
        not_before: String,
    },
    /// The certificate has expired at the verification time.
    #[error("certificate '{cert}' expired at {not_after}")]
    Expired {
        /// Subject of the certificate.
        cert: String,
        /// End of its validity.
        not_after: String,
    },
    /// The chain's root is not one of AMD's built-in ARKs.
    #[error("root '{subject}' is not AMD's ARK for Milan, Genoa or Turin")]
    UnknownRoot {
        /// Subject of the root.
        subject: String,
    },
    /// The certificate is on its issuer's revocation list.
    #[error("certificate '{cert}' is revoked by '{by}'")]
    Revoked {
        /// Subject of the revoked certificate.
        cert: String,
        /// Issuer of the revocation list.
        by: String,
    },
    /// The certificates do not form an ARK → ASK → VCEK/VLEK chain.
    #[error("not an AMD endorsement chain: {0}")]
    ChainShape(String),
    /// The certificates name different products.
    #[error("certificate '{cert}' is for {found}, but the chain is for {expected}")]
    ProductMismatch {
        /// Subject of the certificate.
        cert: String,
        /// What it names.
        found: String,
        /// The chain's product.
        expected: Product,
    },
    /// No built-in AMD certificate for the issuer of a leaf certificate.
    #[error(
        "no built-in AMD certificate for issuer '{issuer}': pass the ARK and ASK/ASVK files too"
    )]
    NoBuiltinIssuer {
        /// The leaf's issuer.
        issuer: String,
    },
    /// The report is not signed, or not with ECDSA P-384/SHA-384.
    #[error("report: {0}")]
    UnsupportedReport(String),
    /// The report says it is signed by one kind of key, the chain ends in the other.
    #[error("report is signed by the {report}, but the certificate is a {cert}")]
    SigningKeyMismatch {
        /// The key the report names.
        report: LeafKind,
        /// The certificate's kind.
        cert: LeafKind,
    },
    /// The report's signature does not verify under the chain's leaf key.
    #[error("report signature does not verify under '{cert}'")]
    ReportSignature {
        /// Subject of the leaf certificate.
        cert: String,
    },
    /// The certificate was issued for another chip.
    #[error("certificate '{cert}' is for chip {cert_hw_id}, not for chip {report_chip_id}")]
    ChipIdMismatch {
        /// Subject of the leaf certificate.
        cert: String,
        /// Hardware ID in the certificate (hex).
        cert_hw_id: String,
        /// The chip ID it was compared with (a report's CHIP_ID or the platform's ID), hex.
        report_chip_id: String,
    },
    /// The certificate was issued for another TCB than the reported TCB (a report's
    /// `REPORTED_TCB` or the platform's).
    #[error(
        "certificate '{cert}' is for {component} SPL {cert_spl}, the reported TCB has {report_spl}: fetch the VCEK for this TCB"
    )]
    TcbMismatch {
        /// Subject of the leaf certificate.
        cert: String,
        /// The TCB component.
        component: &'static str,
        /// Its SPL in the certificate.
        cert_spl: u8,
        /// Its SPL in the reported TCB.
        report_spl: u8,
    },
}

fn decode_err(what: impl Into<String>) -> impl FnOnce(x509_cert::der::Error) -> X509Error {
    let what = what.into();
    move |source| X509Error::Decode { what, source }
}

/// An AMD SEV-SNP product generation, which fixes the root of trust and the TCB layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Product {
    /// 3rd generation EPYC (family 19h, models 00h–0Fh).
    Milan,
    /// 4th generation EPYC (family 19h, models 10h–1Fh and A0h–AFh).
    Genoa,
    /// 5th generation EPYC (family 1Ah).
    Turin,
}

const ARK_MILAN: &str = include_str!("amd_roots/ark_milan.pem");
const ASK_MILAN: &str = include_str!("amd_roots/ask_milan.pem");
const ARK_GENOA: &str = include_str!("amd_roots/ark_genoa.pem");
const ASK_GENOA: &str = include_str!("amd_roots/ask_genoa.pem");
const ARK_TURIN: &str = include_str!("amd_roots/ark_turin.pem");
const ASK_TURIN: &str = include_str!("amd_roots/ask_turin.pem");

/// AMD's Key Distribution Service.
pub const KDS_URL: &str = "https://kdsintf.amd.com";

impl Product {
    /// Every product with built-in certificates.
    pub const ALL: [Product; 3] = [Product::Milan, Product::Genoa, Product::Turin];

    /// The name KDS and the certificates use: `Milan`, `Genoa`, `Turin`.
    pub const fn name(self) -> &'static str {
        match self {
            Product::Milan => "Milan",
            Product::Genoa => "Genoa",
            Product::Turin => "Turin",
        }
    }

    /// The product a name starts with (`Milan-B0` is Milan), case-insensitively.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| {
            name.get(..p.name().len())
                .is_some_and(|n| n.eq_ignore_ascii_case(p.name()))
        })
    }

    /// The product of a CPUID family/model, as in a version 3+ report.
    pub fn from_cpuid(family: u8, model: u8) -> Option<Self> {
        match (family, model) {
            (0x19, 0x00..=0x0F) => Some(Product::Milan),
            (0x19, 0x10..=0x1F | 0xA0..=0xAF) => Some(Product::Genoa),
            (0x1A, _) => Some(Product::Turin),
            _ => None,
        }
    }

    fn pem(self) -> (&'static str, &'static str) {
        match self {
            Product::Milan => (ARK_MILAN, ASK_MILAN),
            Product::Genoa => (ARK_GENOA, ASK_GENOA),
            Product::Turin => (ARK_TURIN, ASK_TURIN),
        }
    }

    /// AMD's root key certificate (ARK) of this product, built in.
    pub fn builtin_ark(self) -> AmdCert {
        // The built-in PEM files are fixed, parsed by this crate's tests.
        AmdCert::from_pem(self.pem().0).expect("built-in ARK parses")
    }

    /// AMD's signing key certificate (ASK) of this product, built in.
    pub fn builtin_ask(self) -> AmdCert {
        AmdCert::from_pem(self.pem().1).expect("built-in ASK parses")
    }

    /// The KDS address of the VCEK for `chip_id` at `tcb` (in this product's TCB layout):
    /// `https://kdsintf.amd.com/vcek/v1/{product}/{hwID}?blSPL=..&teeSPL=..&snpSPL=..&ucodeSPL=..`,
    /// with the 64-byte chip ID as hardware ID, except on Turin, whose KDS takes the first 8
    /// bytes and an `fmcSPL` first. SPLs are decimal, at least two digits.
    ///
    /// ```
    /// use psp_driver::owner::x509::Product;
    /// use psp_driver::report::TcbVersion;
    ///
    /// let url = Product::Genoa.kds_vcek_url(&[0xAB; 64], TcbVersion::new(7, 0, 14, 72));
    /// assert!(url.starts_with("https://kdsintf.amd.com/vcek/v1/Genoa/abababab"));
    /// assert!(url.ends_with("?blSPL=07&teeSPL=00&snpSPL=14&ucodeSPL=72"));
    /// ```
    pub fn kds_vcek_url(self, chip_id: &[u8], tcb: TcbVersion) -> String {
        let id = match self {
            Product::Milan | Product::Genoa => chip_id,
            Product::Turin => chip_id.get(..8).unwrap_or(chip_id),
        };
        let query: Vec<String> = self
            .tcb_components(tcb)
            .into_iter()
            .map(|(part, spl)| format!("{}={spl:02}", part.kds_query))
            .collect();
        format!(
            "{KDS_URL}/vcek/v1/{}/{}?{}",
            self.name(),
            hex(id),
            query.join("&")
        )
    }

    /// The KDS address of this product's ASK and ARK bundle.
    pub fn kds_cert_chain_url(self) -> String {
        format!("{KDS_URL}/vcek/v1/{}/cert_chain", self.name())
    }

    /// Where each TCB component sits in this product's TCB version (byte index), in the
    /// order KDS lists them: Milan/Genoa `[0] boot loader, [1] TEE, [6] SNP, [7] microcode`;
    /// Turin `[0] FMC, [1] boot loader, [2] TEE, [3] SNP, [7] microcode` (SNP ABI
    /// specification, TCB_VERSION).
    pub const fn tcb_layout(self) -> &'static [(TcbPart, usize)] {
        match self {
            Product::Milan | Product::Genoa => &[
                (TcbPart::BOOT_LOADER, 0),
                (TcbPart::TEE, 1),
                (TcbPart::SNP, 6),
                (TcbPart::MICROCODE, 7),
            ],
            Product::Turin => &[
                (TcbPart::FMC, 0),
                (TcbPart::BOOT_LOADER, 1),
                (TcbPart::TEE, 2),
                (TcbPart::SNP, 3),
                (TcbPart::MICROCODE, 7),
            ],
        }
    }

    /// Splits a TCB version into its components in this product's layout.
    pub fn tcb_components(self, tcb: TcbVersion) -> Vec<(TcbPart, u8)> {
        let b = tcb.0.to_le_bytes();
        self.tcb_layout()
            .iter()
            .map(|&(part, i)| (part, b[i]))
            .collect()
    }
}

/// One component of a TCB version: its name, its KDS query parameter and the VCEK
/// extension that carries its SPL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TcbPart {
    /// Name for messages: `boot loader`, `TEE`, `SNP`, `microcode`, `FMC`.
    pub name: &'static str,
    /// KDS query parameter: `blSPL`, `teeSPL`, `snpSPL`, `ucodeSPL`, `fmcSPL`.
    pub kds_query: &'static str,
    /// The VCEK/VLEK extension with this component's SPL.
    pub oid: ObjectIdentifier,
}

impl TcbPart {
    /// Boot loader.
    pub const BOOT_LOADER: Self = Self {
        name: "boot loader",
        kds_query: "blSPL",
        oid: oid::AMD_BL_SPL,
    };
    /// PSP OS (TEE).
    pub const TEE: Self = Self {
        name: "TEE",
        kds_query: "teeSPL",
        oid: oid::AMD_TEE_SPL,
    };
    /// SNP firmware.
    pub const SNP: Self = Self {
        name: "SNP",
        kds_query: "snpSPL",
        oid: oid::AMD_SNP_SPL,
    };
    /// Microcode.
    pub const MICROCODE: Self = Self {
        name: "microcode",
        kds_query: "ucodeSPL",
        oid: oid::AMD_UCODE_SPL,
    };
    /// FMC (Turin and later).
    pub const FMC: Self = Self {
        name: "FMC",
        kds_query: "fmcSPL",
        oid: oid::AMD_FMC_SPL,
    };
}

impl fmt::Display for Product {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which key signs reports: the chip's VCEK or a cloud provider's VLEK.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LeafKind {
    /// Versioned chip endorsement key (report `SIGNING_KEY` 0).
    Vcek,
    /// Versioned loaded endorsement key (report `SIGNING_KEY` 1).
    Vlek,
}

impl fmt::Display for LeafKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LeafKind::Vcek => "VCEK",
            LeafKind::Vlek => "VLEK",
        })
    }
}

/// One parsed X.509 certificate of AMD's endorsement hierarchy.
#[derive(Clone, Debug)]
pub struct AmdCert {
    cert: Certificate,
    der: Vec<u8>,
}

impl AmdCert {
    /// Parses one DER certificate.
    ///
    /// # Errors
    /// [`X509Error::Decode`] if the bytes are not exactly one certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, X509Error> {
        let cert = Certificate::from_der(der).map_err(decode_err("DER input"))?;
        Ok(Self {
            cert,
            der: der.to_vec(),
        })
    }

    /// Parses one PEM certificate (the first of a bundle is an error: use [`AmdCert::parse`]).
    ///
    /// # Errors
    /// [`X509Error::Decode`] if the text is not exactly one PEM certificate.
    pub fn from_pem(pem: &str) -> Result<Self, X509Error> {
        let mut all = Self::parse(pem.as_bytes())?;
        match all.len() {
            1 => Ok(all.remove(0)),
            n => Err(X509Error::ChainShape(format!(
                "expected one PEM certificate, found {n}"
            ))),
        }
    }

    /// Parses a file's contents: one DER certificate, or one or more PEM certificates (as in
    /// KDS's `cert_chain`, which holds the ASK then the ARK).
    ///
    /// # Errors
    /// [`X509Error::Decode`] for anything else.
    pub fn parse(bytes: &[u8]) -> Result<Vec<Self>, X509Error> {
        let text = bytes.trim_ascii_start();
        if text.starts_with(b"-----BEGIN") {
            let certs = Certificate::load_pem_chain(text).map_err(decode_err("PEM input"))?;
            return certs
                .into_iter()
                .map(|cert| {
                    let der = cert.to_der().map_err(decode_err("PEM certificate"))?;
                    Ok(Self { cert, der })
                })
                .collect();
        }
        Ok(vec![Self::from_der(bytes)?])
    }

    /// The DER encoding.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The parsed certificate.
    pub fn certificate(&self) -> &Certificate {
        &self.cert
    }

    /// The subject's common name, e.g. `ARK-Milan`, `SEV-Milan`, `SEV-VCEK`.
    pub fn common_name(&self) -> Option<String> {
        cn(self.cert.tbs_certificate().subject())
    }

    /// The issuer's common name.
    pub fn issuer_common_name(&self) -> Option<String> {
        cn(self.cert.tbs_certificate().issuer())
    }

    /// A short label for messages: the common name, or the whole subject without one.
    pub fn label(&self) -> String {
        self.common_name()
            .unwrap_or_else(|| self.cert.tbs_certificate().subject().to_string())
    }

    /// Whether subject and issuer are the same name (a root).
    pub fn is_self_issued(&self) -> bool {
        let t = self.cert.tbs_certificate();
        t.subject() == t.issuer()
    }

    /// Start and end of validity.
    pub fn validity(&self) -> (SystemTime, SystemTime) {
        let v = self.cert.tbs_certificate().validity();
        (v.not_before.to_system_time(), v.not_after.to_system_time())
    }

    /// The raw value of the extension `id`, if present.
    pub fn extension(&self, id: ObjectIdentifier) -> Option<&[u8]> {
        self.cert
            .tbs_certificate()
            .extensions()?
            .iter()
            .find(|e| e.extn_id == id)
            .map(|e| e.extn_value.as_bytes())
    }

    fn ext_u8(&self, id: ObjectIdentifier) -> Result<Option<u8>, X509Error> {
        let Some(raw) = self.extension(id) else {
            return Ok(None);
        };
        let v = u8::from_der(raw).map_err(decode_err(format!(
            "extension {id} of certificate '{}'",
            self.label()
        )))?;
        Ok(Some(v))
    }

    /// The product name of a VCEK/VLEK (`Milan-B0`, `Genoa`, `Turin`…).
    pub fn product_name(&self) -> Option<String> {
        let raw = self.extension(oid::AMD_PRODUCT_NAME)?;
        Ia5StringRef::from_der(raw).ok().map(|s| s.to_string())
    }

    /// The hardware ID of a VCEK: the chip ID it was derived for.
    pub fn hw_id(&self) -> Option<&[u8]> {
        // KDS stores the ID bytes directly as the extension value (no nested OCTET STRING).
        self.extension(oid::AMD_HW_ID)
    }

    /// The cloud service provider a VLEK was issued to.
    pub fn csp_id(&self) -> Option<String> {
        let raw = self.extension(oid::AMD_CSP_ID)?;
        Ia5StringRef::from_der(raw).ok().map(|s| s.to_string())
    }

    /// The TCB the VCEK/VLEK was derived for, in `product`'s TCB layout, if the certificate
    /// carries the SPL extensions.
    ///
    /// # Errors
    /// [`X509Error::Decode`] if an SPL extension is not a small INTEGER.
    pub fn tcb(&self, product: Product) -> Result<Option<TcbVersion>, X509Error> {
        let mut b = [0u8; 8];
        for &(part, i) in product.tcb_layout() {
            match self.ext_u8(part.oid)? {
                Some(spl) => b[i] = spl,
                // The FMC SPL is Turin's addition: a certificate without it counts it as 0.
                None if part == TcbPart::FMC => {}
                None => return Ok(None),
            }
        }
        Ok(Some(TcbVersion(u64::from_le_bytes(b))))
    }

    /// The leaf kind, from the common name (`SEV-VCEK` / `SEV-VLEK`) or, failing that, from
    /// the extensions (a hardware ID means VCEK, a CSP ID means VLEK).
    pub fn leaf_kind(&self) -> Option<LeafKind> {
        match self.common_name().as_deref() {
            Some("SEV-VCEK") => Some(LeafKind::Vcek),
            Some("SEV-VLEK") => Some(LeafKind::Vlek),
            _ if self.extension(oid::AMD_HW_ID).is_some() => Some(LeafKind::Vcek),
            _ if self.extension(oid::AMD_CSP_ID).is_some() => Some(LeafKind::Vlek),
            _ => None,
        }
    }

    /// The ECDSA P-384 public key of a VCEK/VLEK.
    ///
    /// # Errors
    /// [`X509Error::UnsupportedAlgorithm`] or [`X509Error::InvalidKey`] if the key is not a
    /// valid P-384 point.
    pub fn ecdsa_key(&self) -> Result<EcdsaKey, X509Error> {
        let spki = self.cert.tbs_certificate().subject_public_key_info();
        if spki.algorithm.oid != oid::EC_PUBLIC_KEY {
            return Err(unsupported(
                &self.label(),
                "key algorithm",
                spki.algorithm.oid,
            ));
        }
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
        if curve != Some(oid::SECP384R1) {
            return Err(self.invalid_key("not a P-384 key"));
        }
        let bits = spki
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| self.invalid_key("public key is not whole bytes"))?;
        EcdsaKey::from_sec1_bytes(bits).map_err(|_| self.invalid_key("not a point on P-384"))
    }

    /// The RSA public key of an ARK, ASK or ASVK.
    ///
    /// # Errors
    /// [`X509Error::UnsupportedAlgorithm`] or [`X509Error::InvalidKey`] if the key is not a
    /// usable RSA key (at least 2048 bits).
    pub fn rsa_key(&self) -> Result<RsaPublicKey, X509Error> {
        let spki = self.cert.tbs_certificate().subject_public_key_info();
        if spki.algorithm.oid != oid::RSA_ENCRYPTION && spki.algorithm.oid != oid::RSASSA_PSS {
            return Err(unsupported(
                &self.label(),
                "key algorithm",
                spki.algorithm.oid,
            ));
        }
        let bits = spki
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| self.invalid_key("public key is not whole bytes"))?;
        let key = RsaPublicKey::from_pkcs1_der(bits)
            .map_err(|_| self.invalid_key("not a PKCS #1 RSA public key"))?;
        if key.n_bits_precision() < 2048 {
            return Err(self.invalid_key("RSA key shorter than 2048 bits"));
        }
        Ok(key)
    }

    /// Checks that `issuer` issued and signed this certificate: the issuer name matches and
    /// the RSASSA-PSS (SHA-384, MGF1-SHA-384) signature over the to-be-signed part verifies
    /// under the issuer's RSA key.
    ///
    /// # Errors
    /// [`X509Error::IssuerMismatch`], [`X509Error::BadSignature`], or an algorithm/key error.
    pub fn verify_signed_by(&self, issuer: &AmdCert) -> Result<(), X509Error> {
        let tbs = self.cert.tbs_certificate();
        let issuer_tbs = issuer.cert.tbs_certificate();
        if tbs.issuer() != issuer_tbs.subject() {
            return Err(X509Error::IssuerMismatch {
                cert: self.label(),
                issuer: self
                    .issuer_common_name()
                    .unwrap_or_else(|| tbs.issuer().to_string()),
                expected: issuer.label(),
            });
        }
        verify_pss(
            &self.label(),
            tbs.signature(),
            self.cert.signature_algorithm(),
            self.cert.signature(),
            tbs_der(&self.der, &self.label())?,
            issuer,
        )
    }

    /// Checks the validity period at `at`.
    ///
    /// # Errors
    /// [`X509Error::NotYetValid`] or [`X509Error::Expired`].
    pub fn check_validity(&self, at: SystemTime) -> Result<(), X509Error> {
        let v = self.cert.tbs_certificate().validity();
        if at < v.not_before.to_system_time() {
            return Err(X509Error::NotYetValid {
                cert: self.label(),
                not_before: v.not_before.to_string(),
            });
        }
        if at > v.not_after.to_system_time() {
            return Err(X509Error::Expired {
                cert: self.label(),
                not_after: v.not_after.to_string(),
            });
        }
        Ok(())
    }

    fn spki_der(&self) -> Option<Vec<u8>> {
        self.cert
            .tbs_certificate()
            .subject_public_key_info()
            .to_der()
            .ok()
    }

    fn invalid_key(&self, why: &'static str) -> X509Error {
        X509Error::InvalidKey {
            cert: self.label(),
            why,
        }
    }
}

/// Verifies that `issuer` signed `tbs` (the raw DER of a to-be-signed part) with
/// RSASSA-PSS, SHA-384 for hash and MGF1, as `alg` (which must equal the inner `tbs_alg`)
/// says. `label` names the signed object in errors.
fn verify_pss(
    label: &str,
    tbs_alg: &AlgorithmIdentifier<Any>,
    alg: &AlgorithmIdentifier<Any>,
    signature: &BitString,
    tbs: &[u8],
    issuer: &AmdCert,
) -> Result<(), X509Error> {
    if alg.oid != oid::RSASSA_PSS {
        return Err(unsupported(label, "signature algorithm", alg.oid));
    }
    if tbs_alg != alg {
        return Err(X509Error::ChainShape(format!(
            "'{label}' names two different signature algorithms"
        )));
    }
    let salt_len = pss_salt_len(label, alg)?;
    let key = issuer.rsa_key()?;
    let bad = || X509Error::BadSignature {
        cert: label.to_owned(),
        signer: issuer.label(),
    };
    let sig_bytes = signature.as_bytes().ok_or_else(bad)?;
    let sig = pss::Signature::try_from(sig_bytes).map_err(|_| bad())?;
    pss::VerifyingKey::<Sha384>::new_with_salt_len(key, salt_len)
        .verify(tbs, &sig)
        .map_err(|_| bad())
}

/// The salt length of RSASSA-PSS parameters that use SHA-384 for hash and MGF1.
fn pss_salt_len(label: &str, alg: &AlgorithmIdentifier<Any>) -> Result<usize, X509Error> {
    let params = alg.parameters.as_ref().ok_or_else(|| {
        X509Error::ChainShape(format!("'{label}' has RSASSA-PSS without parameters"))
    })?;
    let der = params
        .to_der()
        .map_err(decode_err("RSASSA-PSS parameters"))?;
    let p = RsaPssParams::<Any>::from_der(&der)
        .map_err(decode_err(format!("RSASSA-PSS parameters of '{label}'")))?;
    if p.hash.oid != oid::SHA384 {
        return Err(unsupported(label, "PSS hash", p.hash.oid));
    }
    if p.mask_gen.oid != oid::MGF1 {
        return Err(unsupported(label, "PSS mask generation", p.mask_gen.oid));
    }
    let mgf_hash = p.mask_gen.parameters.as_ref().map_or(p.hash.oid, |h| h.oid);
    if mgf_hash != oid::SHA384 {
        return Err(unsupported(label, "PSS MGF1 hash", mgf_hash));
    }
    Ok(usize::from(p.salt_len))
}

/// The DER bytes of the to-be-signed part of a signed structure (`SEQUENCE { tbs,
/// algorithm, signature }`), exactly as they appear.
fn tbs_der<'a>(der: &'a [u8], label: &str) -> Result<&'a [u8], X509Error> {
    let mut r = SliceReader::new(der).map_err(decode_err(label))?;
    r.sequence(|inner| {
        let tbs = inner.tlv_bytes()?;
        inner.tlv_bytes()?;
        inner.tlv_bytes()?;
        Ok(tbs)
    })
    .map_err(decode_err(format!("'{label}'")))
}

fn unsupported(label: &str, what: &'static str, id: ObjectIdentifier) -> X509Error {
    X509Error::UnsupportedAlgorithm {
        cert: label.to_owned(),
        what,
        oid: id.to_string(),
    }
}

fn cn(name: &x509_cert::name::Name) -> Option<String> {
    name.common_name().ok().flatten().map(String::from)
}

/// What a certificate-table entry holds, by its GUID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TableCert {
    /// AMD root key, GUID `c0b406a4-a803-4952-9743-3fb6014cd0ae`.
    Ark,
    /// AMD signing key, GUID `4ab7b379-bbac-4fe4-a02f-05aef327c782`.
    Ask,
    /// VCEK, GUID `63da758d-e664-4564-adc5-f4b93be8accd`.
    Vcek,
    /// VLEK, GUID `a8074bc2-a25a-483e-aae6-39c045a0b8a1`.
    Vlek,
}

impl TableCert {
    /// Every known entry kind.
    pub const ALL: [TableCert; 4] = [
        TableCert::Ark,
        TableCert::Ask,
        TableCert::Vcek,
        TableCert::Vlek,
    ];

    /// The entry's GUID in the table's byte order (RFC 4122, most significant byte first).
    pub const fn guid(self) -> [u8; 16] {
        match self {
            TableCert::Ark => [
                0xc0, 0xb4, 0x06, 0xa4, 0xa8, 0x03, 0x49, 0x52, 0x97, 0x43, 0x3f, 0xb6, 0x01, 0x4c,
                0xd0, 0xae,
            ],
            TableCert::Ask => [
                0x4a, 0xb7, 0xb3, 0x79, 0xbb, 0xac, 0x4f, 0xe4, 0xa0, 0x2f, 0x05, 0xae, 0xf3, 0x27,
                0xc7, 0x82,
            ],
            TableCert::Vcek => [
                0x63, 0xda, 0x75, 0x8d, 0xe6, 0x64, 0x45, 0x64, 0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8,
                0xac, 0xcd,
            ],
            TableCert::Vlek => [
                0xa8, 0x07, 0x4b, 0xc2, 0xa2, 0x5a, 0x48, 0x3e, 0xaa, 0xe6, 0x39, 0xc0, 0x45, 0xa0,
                0xb8, 0xa1,
            ],
        }
    }

    /// The kind of a GUID, if known.
    pub fn from_guid(guid: &[u8; 16]) -> Option<Self> {
        Self::ALL.into_iter().find(|k| &k.guid() == guid)
    }
}

/// One entry of an SNP certificate table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableEntry {
    /// The entry's GUID.
    pub guid: [u8; 16],
    /// What the GUID says it is, if it is one of AMD's.
    pub kind: Option<TableCert>,
    /// The certificate bytes (DER for AMD's entries).
    pub data: Vec<u8>,
}

/// Length of one certificate-table entry: `GUID[16] ‖ offset u32 ‖ length u32`.
pub const TABLE_ENTRY_LEN: usize = 24;

/// Parses the certificate table a host hands to an SNP guest with an extended report (the
/// blob a VMM writes for `KVM_EXIT_SNP_REQ_CERTS`, and what `/dev/sev-guest` returns):
/// entries of `GUID[16] ‖ offset u32 ‖ length u32` (little-endian, offsets from the start
/// of the table), ended by an all-zero entry, then the certificates.
///
/// # Errors
/// [`X509Error::ChainShape`] if the table has no terminator or an entry points outside it.
pub fn parse_cert_table(bytes: &[u8]) -> Result<Vec<TableEntry>, X509Error> {
    let mut out = Vec::new();
    for (i, e) in bytes.chunks(TABLE_ENTRY_LEN).enumerate() {
        let (Some(guid), Some(off), Some(len)) = (
            e.get(..16).and_then(|g| <[u8; 16]>::try_from(g).ok()),
            e.get(16..20)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_le_bytes),
            e.get(20..24)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_le_bytes),
        ) else {
            break;
        };
        if guid == [0; 16] && off == 0 && len == 0 {
            return Ok(out);
        }
        let data = usize::try_from(off)
            .ok()
            .zip(usize::try_from(len).ok())
            .and_then(|(o, l)| bytes.get(o..o.checked_add(l)?))
            .ok_or_else(|| {
                X509Error::ChainShape(format!(
                    "certificate table entry {i} ({off:#x}+{len:#x}) lies outside the {} bytes given",
                    bytes.len()
                ))
            })?;
        out.push(TableEntry {
            guid,
            kind: TableCert::from_guid(&guid),
            data: data.to_vec(),
        });
    }
    Err(X509Error::ChainShape(
        "certificate table has no terminating all-zero entry".into(),
    ))
}

/// Whether `bytes` starts like a certificate table: a first entry with a known AMD GUID.
pub fn looks_like_cert_table(bytes: &[u8]) -> bool {
    bytes
        .get(..16)
        .and_then(|g| <&[u8; 16]>::try_from(g).ok())
        .is_some_and(|g| TableCert::from_guid(g).is_some())
}

/// A certificate revocation list of AMD's hierarchy, as KDS serves it at
/// `/vcek/v1/{product}/crl`: issued and signed (RSASSA-PSS SHA-384) by the product's ARK,
/// listing revoked ASKs and ASVKs by serial number.
#[derive(Clone, Debug)]
pub struct AmdCrl {
    crl: CertificateList,
    der: Vec<u8>,
}

impl AmdCrl {
    /// Parses a DER or PEM (`X509 CRL`) revocation list.
    ///
    /// # Errors
    /// [`X509Error::Decode`] for anything else.
    pub fn parse(bytes: &[u8]) -> Result<Self, X509Error> {
        let text = bytes.trim_ascii_start();
        let der = if text.starts_with(b"-----BEGIN") {
            let (label, der) =
                x509_cert::der::pem::decode_vec(text).map_err(|e| X509Error::Decode {
                    what: "PEM revocation list".into(),
                    source: e.into(),
                })?;
            if label != "X509 CRL" {
                return Err(X509Error::ChainShape(format!(
                    "expected a PEM 'X509 CRL', found '{label}'"
                )));
            }
            der
        } else {
            bytes.to_vec()
        };
        let crl = CertificateList::from_der(&der).map_err(decode_err("revocation list"))?;
        Ok(Self { crl, der })
    }

    /// The issuer's common name (`ARK-Milan` for AMD's).
    pub fn issuer_common_name(&self) -> Option<String> {
        cn(&self.crl.tbs_cert_list.issuer)
    }

    /// When the list was issued, and when the next one is due.
    pub fn updates(&self) -> (SystemTime, Option<SystemTime>) {
        let t = &self.crl.tbs_cert_list;
        (
            t.this_update.to_system_time(),
            t.next_update.map(|n| n.to_system_time()),
        )
    }

    /// Whether the list names `cert`'s serial number (the caller checks that this list
    /// covers `cert`'s issuer).
    pub fn lists(&self, cert: &AmdCert) -> bool {
        let serial = cert.cert.tbs_certificate().serial_number();
        self.crl
            .tbs_cert_list
            .revoked_certificates
            .iter()
            .flatten()
            .any(|r| &r.serial_number == serial)
    }

    /// Checks that `issuer` issued and signed this list.
    ///
    /// # Errors
    /// [`X509Error::IssuerMismatch`], [`X509Error::BadSignature`], or an algorithm/key error.
    pub fn verify_signed_by(&self, issuer: &AmdCert) -> Result<(), X509Error> {
        let label = format!(
            "revocation list of '{}'",
            self.issuer_common_name().unwrap_or_default()
        );
        let t = &self.crl.tbs_cert_list;
        if &t.issuer != issuer.cert.tbs_certificate().subject() {
            return Err(X509Error::IssuerMismatch {
                cert: label,
                issuer: self
                    .issuer_common_name()
                    .unwrap_or_else(|| t.issuer.to_string()),
                expected: issuer.label(),
            });
        }
        verify_pss(
            &label,
            &t.signature,
            &self.crl.signature_algorithm,
            &self.crl.signature,
            tbs_der(&self.der, &label)?,
            issuer,
        )
    }
}

/// How far the chain's root is trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Root {
    /// The root's key is AMD's built-in ARK of this product.
    Amd(Product),
    /// The root is self-signed but not one of AMD's (accepted only on request).
    Unknown,
}

/// Options of [`AmdChain::verify`] and [`verify_report`].
#[derive(Clone, Copy, Debug)]
pub struct VerifyOptions {
    /// Check every certificate's validity period at this time; `None` skips the check.
    pub at: Option<SystemTime>,
    /// Accept a self-signed root that is not one of AMD's built-in ARKs.
    pub allow_unknown_root: bool,
}

impl Default for VerifyOptions {
    /// Validity checked now; only AMD's roots.
    fn default() -> Self {
        Self {
            at: Some(SystemTime::now()),
            allow_unknown_root: false,
        }
    }
}

/// An ARK → ASK (or ASVK) → VCEK (or VLEK) chain.
#[derive(Clone, Debug)]
pub struct AmdChain {
    /// The root key certificate.
    pub ark: AmdCert,
    /// The signing key certificate (ASK for a VCEK, ASVK for a VLEK).
    pub ask: AmdCert,
    /// The VCEK or VLEK certificate.
    pub leaf: AmdCert,
}

/// What a successful chain verification established.
#[derive(Clone, Debug)]
pub struct VerifiedChain {
    /// The product the chain is for.
    pub product: Product,
    /// Whether the root is AMD's.
    pub root: Root,
    /// VCEK or VLEK.
    pub leaf_kind: LeafKind,
    /// The leaf's ECDSA P-384 key, which signs reports.
    pub key: EcdsaKey,
    /// The TCB the leaf was issued for, if it says.
    pub tcb: Option<TcbVersion>,
    /// The chip the leaf was issued for (VCEK only).
    pub hw_id: Option<Vec<u8>>,
    /// The leaf's subject common name, for messages.
    pub subject: String,
}

impl VerifiedChain {
    /// Checks that the leaf was issued for this chip at this TCB: `chip_id` (a report's
    /// `CHIP_ID`, or the platform's GET_ID2) must start with the leaf's hardware ID, and
    /// `reported_tcb` must equal the leaf's TCB component by component. An all-zero chip ID
    /// (masked by policy) and a leaf without hardware ID (a VLEK) or without TCB
    /// extensions are not compared. Returns whether the chip ID and the TCB were compared.
    ///
    /// # Errors
    /// [`X509Error::ChipIdMismatch`] or [`X509Error::TcbMismatch`].
    pub fn check_platform(
        &self,
        chip_id: &[u8],
        reported_tcb: TcbVersion,
    ) -> Result<(bool, bool), X509Error> {
        let mut chip_id_checked = false;
        if let Some(hw) = &self.hw_id
            && chip_id.iter().any(|&b| b != 0)
        {
            if hw.is_empty() || !chip_id.starts_with(hw) {
                return Err(X509Error::ChipIdMismatch {
                    cert: self.subject.clone(),
                    cert_hw_id: hex(hw),
                    report_chip_id: hex(&chip_id[..hw.len().min(chip_id.len())]),
                });
            }
            chip_id_checked = true;
        }
        let Some(cert_tcb) = self.tcb else {
            return Ok((chip_id_checked, false));
        };
        let ours = self.product.tcb_components(cert_tcb);
        let theirs = self.product.tcb_components(reported_tcb);
        for ((part, cert_spl), (_, report_spl)) in ours.into_iter().zip(theirs) {
            if cert_spl != report_spl {
                return Err(X509Error::TcbMismatch {
                    cert: self.subject.clone(),
                    component: part.name,
                    cert_spl,
                    report_spl,
                });
            }
        }
        Ok((chip_id_checked, true))
    }
}

impl AmdChain {
    /// Orders certificates given in any order (for example a KDS `cert_chain` bundle plus
    /// a VCEK): the self-issued one is the ARK, the one it issued is the ASK, and the one the
    /// ASK issued is the leaf. With only a leaf, AMD's built-in ARK and ASK of the issuer's
    /// product complete the chain.
    ///
    /// # Errors
    /// [`X509Error::ChainShape`] if the certificates are not one such chain,
    /// [`X509Error::NoBuiltinIssuer`] for a lone leaf of an unknown issuer.
    pub fn from_certs(certs: Vec<AmdCert>) -> Result<Self, X509Error> {
        if let [leaf] = certs.as_slice() {
            return Self::with_builtin_issuers(leaf.clone());
        }
        if certs.len() != 3 {
            return Err(X509Error::ChainShape(format!(
                "expected ARK, ASK and VCEK (3 certificates) or the VCEK alone, got {}",
                certs.len()
            )));
        }
        let issued_by = |child: &AmdCert, parent: &AmdCert| {
            child.cert.tbs_certificate().issuer() == parent.cert.tbs_certificate().subject()
        };
        let roots: Vec<&AmdCert> = certs.iter().filter(|c| c.is_self_issued()).collect();
        let [ark] = roots.as_slice() else {
            return Err(X509Error::ChainShape(format!(
                "expected exactly one self-signed root, found {}",
                roots.len()
            )));
        };
        let ask = certs
            .iter()
            .find(|c| !c.is_self_issued() && issued_by(c, ark))
            .ok_or_else(|| {
                X509Error::ChainShape(format!("no certificate issued by '{}'", ark.label()))
            })?;
        let leaf = certs
            .iter()
            .find(|c| !c.is_self_issued() && issued_by(c, ask))
            .ok_or_else(|| {
                X509Error::ChainShape(format!("no certificate issued by '{}'", ask.label()))
            })?;
        Ok(Self {
            ark: (*ark).clone(),
            ask: ask.clone(),
            leaf: leaf.clone(),
        })
    }

    /// The chain in a certificate table ([`parse_cert_table`]): its ARK, ASK and VCEK/VLEK
    /// entries, completed with AMD's built-in ARK and ASK when the table holds only the
    /// leaf. Entries with other GUIDs are ignored.
    ///
    /// # Errors
    /// As [`parse_cert_table`], [`AmdCert::from_der`] and [`AmdChain::from_certs`].
    pub fn from_cert_table(bytes: &[u8]) -> Result<Self, X509Error> {
        let certs = parse_cert_table(bytes)?
            .into_iter()
            .filter(|e| e.kind.is_some())
            .map(|e| AmdCert::from_der(&e.data))
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_certs(certs)
    }

    /// A chain of `leaf` under AMD's built-in ARK and ASK of the product its issuer names
    /// (`SEV-Milan` → Milan).
    ///
    /// # Errors
    /// [`X509Error::NoBuiltinIssuer`] if the issuer is not a built-in ASK.
    pub fn with_builtin_issuers(leaf: AmdCert) -> Result<Self, X509Error> {
        let issuer = leaf.issuer_common_name().unwrap_or_default();
        let product = issuer
            .strip_prefix("SEV-")
            .filter(|p| !p.starts_with("VLEK"))
            .and_then(Product::from_name)
            .ok_or(X509Error::NoBuiltinIssuer { issuer })?;
        Ok(Self {
            ark: product.builtin_ark(),
            ask: product.builtin_ask(),
            leaf,
        })
    }

    /// Checks the chain against its ARK's revocation list: the list must be signed by this
    /// chain's ARK and, if `at` is given, issued before it; the ASK (or ASVK) must not be
    /// listed. A list past its next update is still used (KDS lists change rarely); the
    /// caller can compare [`AmdCrl::updates`] with its own freshness policy.
    ///
    /// # Errors
    /// [`X509Error::Revoked`], or why the list cannot be used.
    pub fn check_revocation(&self, crl: &AmdCrl, at: Option<SystemTime>) -> Result<(), X509Error> {
        crl.verify_signed_by(&self.ark)?;
        if let Some(at) = at
            && at < crl.updates().0
        {
            return Err(X509Error::NotYetValid {
                cert: format!(
                    "revocation list of '{}'",
                    crl.issuer_common_name().unwrap_or_default()
                ),
                not_before: crl.crl.tbs_cert_list.this_update.to_string(),
            });
        }
        if crl.lists(&self.ask) {
            return Err(X509Error::Revoked {
                cert: self.ask.label(),
                by: self.ark.label(),
            });
        }
        Ok(())
    }

    /// Verifies the chain: the ARK is self-signed, the ASK is signed by the ARK, the leaf by
    /// the ASK (all RSASSA-PSS SHA-384); the leaf holds a P-384 key; the root is AMD's (or
    /// an unknown root is allowed); the certificates agree on the product; and, if
    /// `opts.at` is set, every certificate is valid then.
    ///
    /// # Errors
    /// The first check that fails, as an [`X509Error`].
    pub fn verify(&self, opts: &VerifyOptions) -> Result<VerifiedChain, X509Error> {
        let ark_name = self.ark.label();
        if !self.ark.is_self_issued() {
            return Err(X509Error::ChainShape(format!(
                "root '{ark_name}' is not self-issued"
            )));
        }
        self.ark.verify_signed_by(&self.ark)?;
        self.ask.verify_signed_by(&self.ark)?;
        self.leaf.verify_signed_by(&self.ask)?;
        let key = self.leaf.ecdsa_key()?;
        if let Some(at) = opts.at {
            for c in [&self.ark, &self.ask, &self.leaf] {
                c.check_validity(at)?;
            }
        }
        let ark_spki = self.ark.spki_der();
        let root = Product::ALL
            .into_iter()
            .find(|p| ark_spki.is_some() && p.builtin_ark().spki_der() == ark_spki)
            .map_or(Root::Unknown, Root::Amd);
        if root == Root::Unknown && !opts.allow_unknown_root {
            return Err(X509Error::UnknownRoot { subject: ark_name });
        }
        let product = match root {
            Root::Amd(p) => p,
            Root::Unknown => ark_name
                .strip_prefix("ARK-")
                .and_then(Product::from_name)
                .ok_or_else(|| {
                    X509Error::ChainShape(format!(
                        "root '{ark_name}' does not name a product (ARK-Milan, ARK-Genoa, ARK-Turin)"
                    ))
                })?,
        };
        let ask_product = self.ask.label();
        if !ask_product.ends_with(product.name()) {
            return Err(X509Error::ProductMismatch {
                cert: self.ask.label(),
                found: ask_product,
                expected: product,
            });
        }
        if let Some(name) = self.leaf.product_name()
            && Product::from_name(&name) != Some(product)
        {
            return Err(X509Error::ProductMismatch {
                cert: self.leaf.label(),
                found: name,
                expected: product,
            });
        }
        let leaf_kind = self.leaf.leaf_kind().ok_or_else(|| {
            X509Error::ChainShape(format!(
                "certificate '{}' is neither a VCEK nor a VLEK",
                self.leaf.label()
            ))
        })?;
        Ok(VerifiedChain {
            product,
            root,
            leaf_kind,
            key,
            tcb: self.leaf.tcb(product)?,
            hw_id: self.leaf.hw_id().map(<[u8]>::to_vec),
            subject: self.leaf.label(),
        })
    }
}

/// What [`verify_report`] established about a report.
#[derive(Clone, Debug)]
pub struct VerifiedReport {
    /// The verified chain.
    pub chain: VerifiedChain,
    /// Whether the report's `CHIP_ID` was compared with the VCEK's hardware ID (not possible
    /// for a VLEK, or when the guest policy masks the chip ID).
    pub chip_id_checked: bool,
    /// Whether the report's `REPORTED_TCB` was compared with the certificate's TCB.
    pub tcb_checked: bool,
}

/// Verifies an SNP attestation report against AMD's X.509 chain: the chain
/// ([`AmdChain::verify`]), the report's ECDSA P-384/SHA-384 signature under the leaf key,
/// that the report names the leaf's kind (VCEK or VLEK), and that the report's
/// `REPORTED_TCB` and `CHIP_ID` are those the certificate was issued for.
///
/// Policy decisions on the contents (measurement, policy, report data) are the caller's.
///
/// # Errors
/// The first check that fails, as an [`X509Error`] naming it.
pub fn verify_report(
    report: &AttestationReport,
    chain: &AmdChain,
    opts: &VerifyOptions,
) -> Result<VerifiedReport, X509Error> {
    let verified = chain.verify(opts)?;
    if report.signature_algo.get() != SIG_ALGO_ECDSA_P384_SHA384 {
        return Err(X509Error::UnsupportedReport(format!(
            "signature algorithm {} is not ECDSA P-384 with SHA-384",
            report.signature_algo.get()
        )));
    }
    let report_key = match report.signing_key() {
        0 => LeafKind::Vcek,
        1 => LeafKind::Vlek,
        7 => {
            return Err(X509Error::UnsupportedReport(
                "the report is not signed".into(),
            ));
        }
        k => {
            return Err(X509Error::UnsupportedReport(format!(
                "reserved SIGNING_KEY {k}"
            )));
        }
    };
    if report_key != verified.leaf_kind {
        return Err(X509Error::SigningKeyMismatch {
            report: report_key,
            cert: verified.leaf_kind,
        });
    }
    verify_message(
        &verified.key,
        algo::ECDSA_SHA384,
        report.signed_bytes(),
        &report.signature,
    )
    .map_err(|_| X509Error::ReportSignature {
        cert: verified.subject.clone(),
    })?;

    let (chip_id_checked, tcb_checked) =
        verified.check_platform(&report.chip_id, report.reported_tcb())?;
    Ok(VerifiedReport {
        chain: verified,
        chip_id_checked,
        tcb_checked,
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Seconds since the Unix epoch as a [`SystemTime`] (for [`VerifyOptions::at`]).
pub fn unix_time(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}
