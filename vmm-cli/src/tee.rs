//! The requested confidential-VM configuration shared by `check` and `launch`, validated
//! offline (before any host query or launch): an invalid policy or an option that does not
//! apply to the technology is a usage error.

use clap::Args;
use clap::builder::{PossibleValuesParser, TypedValueParser};
pub(crate) use kvm_coco::Tee;
use kvm_coco_uapi::{SevPolicy, SnpPolicy};

use crate::{CliError, cli_err, util};

/// `SVM_SEV_FEAT_SNP_ACTIVE` (bit 0): set by KVM itself (facts linux-uapi §3.5).
const SEV_FEAT_SNP_ACTIVE: u64 = 1;
/// `SVM_SEV_FEAT_SECURE_TSC` (bit 9): SNP VMs only.
const SEV_FEAT_SECURE_TSC: u64 = 1 << 9;

/// The technology-specific launch options `check` and `launch` share.
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct TeeOptions {
    /// Guest policy (SEV: 32 bits, SNP: 64 bits; decimal or 0x hex).
    #[arg(long, value_name = "N", value_parser = util::int::<u64>)]
    pub(crate) policy: Option<u64>,
    /// VMSA SEV_FEATURES to request (SEV-ES, SNP).
    #[arg(long, alias = "guest-features", value_name = "BITS", value_parser = util::int::<u64>)]
    pub(crate) vmsa_features: Option<u64>,
    /// TD attributes (TDX).
    #[arg(long, value_name = "BITS", value_parser = util::int::<u64>)]
    pub(crate) attributes: Option<u64>,
    /// TD XFAM (TDX).
    #[arg(long, value_name = "BITS", value_parser = util::int::<u64>)]
    pub(crate) xfam: Option<u64>,
}

impl TeeOptions {
    /// Validates the options for `tee` (see [`validate`]).
    pub(crate) fn validate(&self, tee: Tee) -> Result<TeeConfig, CliError> {
        validate(
            tee,
            self.policy,
            self.vmsa_features,
            self.attributes,
            self.xfam,
        )
    }
}

/// The `--tee` value parser: kvm-coco's [`Tee`] names (`sev`, `sev-es`, `snp`, `tdx`),
/// listed in the help and parsed with `Tee`'s `FromStr`.
pub(crate) fn tee_parser() -> impl TypedValueParser<Value = Tee> {
    PossibleValuesParser::new(Tee::ALL.map(Tee::name)).try_map(|s| s.parse::<Tee>())
}

/// A `--tee` value parser over the [`Tee`] names and one extra word that stands for
/// `none` (`launch --tee none`, `sim-host --tee all`): the word gives `None`.
pub(crate) fn tee_or(word: &'static str) -> impl TypedValueParser<Value = Option<Tee>> {
    let names = Tee::ALL.map(Tee::name).into_iter().chain([word]);
    PossibleValuesParser::new(names).try_map(move |s| match s.as_str() {
        w if w == word => Ok(None),
        t => t.parse::<Tee>().map(Some),
    })
}

/// A validated launch configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TeeConfig {
    /// The technology.
    pub tee: Tee,
    /// SEV / SEV-ES policy (32 bits).
    pub sev_policy: SevPolicy,
    /// SNP policy.
    pub snp_policy: SnpPolicy,
    /// Requested VMSA features (SEV-ES, SNP).
    pub vmsa_features: u64,
    /// TD attributes.
    pub attributes: u64,
    /// TD XFAM.
    pub xfam: u64,
}

impl TeeConfig {
    /// The policy in effect, as a number (SEV's 32 bits or SNP's 64).
    pub(crate) fn policy(&self) -> u64 {
        match self.tee {
            Tee::Snp => self.snp_policy.bits(),
            _ => u64::from(self.sev_policy.bits()),
        }
    }

    /// The minimum firmware API (major, minor) the policy demands (AMD).
    pub(crate) fn policy_api(&self) -> (u8, u8) {
        match self.tee {
            Tee::Snp => (self.snp_policy.abi_major(), self.snp_policy.abi_minor()),
            _ => (self.sev_policy.api_major(), self.sev_policy.api_minor()),
        }
    }
}

/// Default SEV / SEV-ES policies: nothing required (ES bit for SEV-ES).
const SEV_DEFAULT: u32 = 0;
const SEV_ES_DEFAULT: u32 = 1 << 2;
/// Default SNP policy `0x30000`: SMT allowed, bit 17 (must be one).
const SNP_DEFAULT: u64 = 0x3_0000;
/// Default TDX XFAM: x87 | SSE.
const XFAM_DEFAULT: u64 = 0x3;

/// Validates the options offline.
///
/// # Errors
/// A [`CliError`] (exit status 2) for an invalid policy or an option that does not apply.
pub(crate) fn validate(
    tee: Tee,
    policy: Option<u64>,
    vmsa_features: Option<u64>,
    attributes: Option<u64>,
    xfam: Option<u64>,
) -> Result<TeeConfig, CliError> {
    let mut c = TeeConfig {
        tee,
        sev_policy: SevPolicy::from_bits_retain(0),
        snp_policy: SnpPolicy::from_bits_retain(SNP_DEFAULT),
        vmsa_features: vmsa_features.unwrap_or(0),
        attributes: attributes.unwrap_or(0),
        xfam: xfam.unwrap_or(XFAM_DEFAULT),
    };
    let name = tee.name();
    if tee.is_amd() {
        if attributes.is_some() || xfam.is_some() {
            return Err(cli_err!(
                "--attributes and --xfam apply to --tee tdx, not {name}"
            ));
        }
    } else {
        if policy.is_some() {
            return Err(cli_err!(
                "--policy applies to AMD guests (sev, sev-es, snp); a TD is configured with --attributes and --xfam"
            ));
        }
        if vmsa_features.is_some() {
            return Err(cli_err!(
                "--vmsa-features applies to sev-es and snp, not tdx"
            ));
        }
        return Ok(c);
    }
    match tee {
        Tee::Sev | Tee::SevEs => {
            let es = tee == Tee::SevEs;
            let raw = policy.unwrap_or(u64::from(if es { SEV_ES_DEFAULT } else { SEV_DEFAULT }));
            let p = u32::try_from(raw)
                .map_err(|_| cli_err!("invalid policy {raw:#x}: an SEV policy has 32 bits"))?;
            let p = SevPolicy::from_bits_retain(p);
            p.validate()
                .map_err(|e| cli_err!("invalid policy {raw:#x}: {e}"))?;
            if p.contains(SevPolicy::ES) != es {
                return Err(cli_err!(
                    "invalid policy {raw:#x}: the ES bit (0x4) must be {} for --tee {name}",
                    if es { "set" } else { "clear" }
                ));
            }
            if !es && vmsa_features.is_some() {
                return Err(cli_err!(
                    "--vmsa-features applies to sev-es and snp (a plain SEV guest has no VMSA)"
                ));
            }
            if es && c.vmsa_features & SEV_FEAT_SECURE_TSC != 0 {
                return Err(cli_err!(
                    "invalid VMSA features {:#x}: SECURE_TSC (0x200) is for SNP guests only",
                    c.vmsa_features
                ));
            }
            c.sev_policy = p;
        }
        Tee::Snp => {
            let raw = policy.unwrap_or(SNP_DEFAULT);
            let p = SnpPolicy::from_bits_retain(raw);
            p.validate(SnpPolicy::KVM_SNP_POLICY_MASK_VALID)
                .map_err(|e| match e {
                    kvm_coco_uapi::PolicyError::Unsupported { bits } if bits & (1 << 18) != 0 => {
                        cli_err!(
                            "invalid policy {raw:#x}: MIGRATE_MA (bit 18) is not supported by KVM"
                        )
                    }
                    e => cli_err!("invalid policy {raw:#x}: {e}"),
                })?;
            c.snp_policy = p;
        }
        Tee::Tdx => {}
    }
    if c.vmsa_features & SEV_FEAT_SNP_ACTIVE != 0 {
        return Err(cli_err!(
            "invalid VMSA features {:#x}: SNP_ACTIVE (bit 0) is set by KVM itself, do not request it",
            c.vmsa_features
        ));
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_are_checked_offline() {
        // Hand-derived from facts linux-uapi §3.7.
        assert!(validate(Tee::Snp, None, None, None, None).is_ok());
        assert!(validate(Tee::Snp, Some(0x1_0000), None, None, None).is_err()); // no bit 17
        assert!(validate(Tee::Snp, Some(0x7_0000), None, None, None).is_err()); // MIGRATE_MA
        assert!(validate(Tee::Snp, Some(1 << 40), None, None, None).is_err());
        assert!(validate(Tee::Sev, Some(0x4), None, None, None).is_err()); // ES on SEV
        assert!(validate(Tee::SevEs, Some(0x1), None, None, None).is_err()); // no ES
        assert!(validate(Tee::Sev, Some(0x40), None, None, None).is_err()); // reserved
        assert!(validate(Tee::Tdx, Some(0), None, None, None).is_err());
        assert!(validate(Tee::Snp, None, None, Some(1), None).is_err());
        assert!(validate(Tee::Snp, None, Some(1), None, None).is_err());
        assert!(validate(Tee::SevEs, None, Some(0x200), None, None).is_err());
        let c = validate(Tee::Snp, Some(0x3_1f05), Some(0x20), None, None).unwrap();
        assert_eq!(c.policy_api(), (0x1f, 0x05));
    }
}
