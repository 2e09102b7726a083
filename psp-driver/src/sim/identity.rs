//! The simulated chip identity: every key of the platform, drawn from the
//! firmware's seeded random generator, and the certificates binding them.
//!
//! - SEV: OCA (self-signed, or imported by PEK_CERT_IMPORT) → PEK (signed by the
//!   OCA and the CEK) → PDH (signed by the PEK). The CEK is the chip key.
//! - SNP: ARK (self-signed) → ASK → VCEK, in the SEV certificate layout with
//!   P-384 keys and ECDSA-SHA384 (AMD's real ARK and ASK are RSA-4096 X.509).

use p384::SecretKey;
use p384::ecdsa::SigningKey;
use p384::elliptic_curve::Generate;
use rand_chacha::ChaCha20Rng;

use crate::owner::OwnerError;
use crate::owner::cert::{SevCert, algo, usage};

/// Keys and certificates of the simulated chip.
pub(crate) struct Identity {
    pub api: (u8, u8),
    pub cek: SigningKey,
    pub oca: Option<SigningKey>,
    pub pek: SigningKey,
    pub pdh: SecretKey,
    pub vcek: SigningKey,
    pub cek_cert: SevCert,
    pub oca_cert: SevCert,
    pub pek_cert: SevCert,
    pub pdh_cert: SevCert,
    pub ark_cert: SevCert,
    pub ask_cert: SevCert,
    pub vcek_cert: SevCert,
    pub chip_id: [u8; 64],
}

impl core::fmt::Debug for Identity {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Identity")
            .field("chip_id", &self.chip_id)
            .finish_non_exhaustive()
    }
}

fn signed(
    key: &SigningKey,
    key_usage: u32,
    key_algo: u32,
    api: (u8, u8),
    signers: &[(&SigningKey, u32, u32)],
) -> Result<SevCert, OwnerError> {
    let mut c = SevCert::new(key.verifying_key(), key_usage, key_algo, api);
    for (slot, (k, u, a)) in signers.iter().enumerate() {
        c.sign(slot, k, *u, *a)?;
    }
    Ok(c)
}

impl Identity {
    pub fn generate(rng: &mut ChaCha20Rng, api: (u8, u8)) -> Result<Self, OwnerError> {
        use rand_core::Rng;
        let cek = SigningKey::generate_from_rng(rng);
        let ark = SigningKey::generate_from_rng(rng);
        let ask = SigningKey::generate_from_rng(rng);
        let vcek = SigningKey::generate_from_rng(rng);
        let mut chip_id = [0u8; 64];
        rng.fill_bytes(&mut chip_id);
        let cek_cert = signed(&cek, usage::CEK, algo::ECDSA_SHA256, api, &[])?;
        let ark_cert = signed(
            &ark,
            usage::ARK,
            algo::ECDSA_SHA384,
            api,
            &[(&ark, usage::ARK, algo::ECDSA_SHA384)],
        )?;
        let ask_cert = signed(
            &ask,
            usage::ASK,
            algo::ECDSA_SHA384,
            api,
            &[(&ark, usage::ARK, algo::ECDSA_SHA384)],
        )?;
        let vcek_cert = signed(
            &vcek,
            usage::CEK,
            algo::ECDSA_SHA384,
            api,
            &[(&ask, usage::ASK, algo::ECDSA_SHA384)],
        )?;
        let pek = SigningKey::generate_from_rng(rng);
        let pdh = SecretKey::generate_from_rng(rng);
        let mut id = Self {
            api,
            cek,
            oca: None,
            pek,
            pdh,
            vcek,
            oca_cert: cek_cert,
            pek_cert: cek_cert,
            pdh_cert: cek_cert,
            cek_cert,
            ark_cert,
            ask_cert,
            vcek_cert,
            chip_id,
        };
        id.pek_gen(rng)?;
        Ok(id)
    }

    /// PEK_GEN: a new self-signed OCA, a new PEK (signed by OCA and CEK) and a new PDH.
    pub fn pek_gen(&mut self, rng: &mut ChaCha20Rng) -> Result<(), OwnerError> {
        let oca = SigningKey::generate_from_rng(rng);
        self.oca_cert = signed(
            &oca,
            usage::OCA,
            algo::ECDSA_SHA256,
            self.api,
            &[(&oca, usage::OCA, algo::ECDSA_SHA256)],
        )?;
        self.oca = Some(oca);
        self.pek = SigningKey::generate_from_rng(rng);
        self.sign_pek()?;
        self.pdh_gen(rng)
    }

    fn sign_pek(&mut self) -> Result<(), OwnerError> {
        let mut c = SevCert::new(
            self.pek.verifying_key(),
            usage::PEK,
            algo::ECDSA_SHA256,
            self.api,
        );
        if let Some(oca) = &self.oca {
            c.sign(0, oca, usage::OCA, algo::ECDSA_SHA256)?;
        }
        c.sign(1, &self.cek, usage::CEK, algo::ECDSA_SHA256)?;
        self.pek_cert = c;
        Ok(())
    }

    /// PDH_GEN: a new PDH signed by the PEK.
    pub fn pdh_gen(&mut self, rng: &mut ChaCha20Rng) -> Result<(), OwnerError> {
        self.pdh = SecretKey::generate_from_rng(rng);
        let vk = p384::ecdsa::VerifyingKey::from(self.pdh.public_key());
        let mut c = SevCert::new(&vk, usage::PDH, algo::ECDH_SHA256, self.api);
        c.sign(0, &self.pek, usage::PEK, algo::ECDSA_SHA256)?;
        self.pdh_cert = c;
        Ok(())
    }

    /// PEK_CERT_IMPORT: replaces the OCA with an external one. `pek_cert` must
    /// certify this chip's PEK and be signed by `oca_cert`'s key.
    pub fn import_pek(&mut self, pek_cert: &SevCert, oca_cert: &SevCert) -> Result<(), OwnerError> {
        let oca = oca_cert.public_key()?;
        if oca_cert.pub_key_usage.get() != usage::OCA || pek_cert.pub_key_usage.get() != usage::PEK
        {
            return Err(OwnerError::InvalidKey("wrong key usage"));
        }
        if &pek_cert.public_key()? != self.pek.verifying_key() {
            return Err(OwnerError::InvalidKey("not this platform's PEK"));
        }
        oca_cert.verify_signed_by(&oca, usage::OCA)?;
        pek_cert.verify_signed_by(&oca, usage::OCA)?;
        let mut c = *pek_cert;
        // Keep the OCA signature, (re)write the CEK signature in slot 2.
        c.sign(1, &self.cek, usage::CEK, algo::ECDSA_SHA256)?;
        self.pek_cert = c;
        self.oca_cert = *oca_cert;
        self.oca = None;
        Ok(())
    }
}
