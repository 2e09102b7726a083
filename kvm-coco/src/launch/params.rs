//! Vendor-specific launch parameters: one enum, [`InitParams`], of one typed struct per
//! technology, checked against what the host reports before anything is issued.

use kvm_coco_uapi::{KvmCpuidEntry2, SnpPolicy};

use crate::caps::TdxCaps;
use crate::measure::firmware::FirmwareImage;
use crate::measure::plan::PlanInputs;
use crate::vm_type::{Tee, VmType};

/// The SEV policy's ES bit (`SEV_POLICY_MASK_ES`, bit 2).
pub const SEV_POLICY_ES: u32 = 1 << 2;
/// `SVM_SEV_FEAT_SNP_ACTIVE` (bit 0): set by KVM itself for SNP, never accepted from user
/// space (facts linux-uapi §3.5).
pub const SEV_FEAT_SNP_ACTIVE: u64 = 1 << 0;
/// `SVM_SEV_FEAT_DEBUG_SWAP` (bit 5).
pub const SEV_FEAT_DEBUG_SWAP: u64 = 1 << 5;
/// `SVM_SEV_FEAT_SECURE_TSC` (bit 9): SNP VMs only.
pub const SEV_FEAT_SECURE_TSC: u64 = 1 << 9;

/// The guest owner's LAUNCH_START material for SEV / SEV-ES key transport: the owner's
/// Diffie-Hellman certificate and the wrapped session blob (both from
/// `psp_driver::owner::session::OwnerSession`). Without it the firmware generates the
/// transport keys itself and no LAUNCH_SECRET can be verified by an owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SevSession {
    /// The owner's PDH-style certificate (`dh_uaddr`, 0x824 bytes).
    pub dh_cert: Vec<u8>,
    /// The session blob (`session_uaddr`, 0x80 bytes).
    pub session: Vec<u8>,
}

/// SEV (`KVM_X86_SEV_VM`) parameters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SevInit {
    /// The 32-bit guest policy (validated by the firmware, not by KVM).
    pub policy: u32,
    /// Owner key transport for LAUNCH_START.
    pub session: Option<SevSession>,
}

/// SEV-ES (`KVM_X86_SEV_ES_VM`) parameters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SevEsInit {
    /// The 32-bit guest policy; it must have the ES bit (2), which the owner's session
    /// also covers.
    pub policy: u32,
    /// VMSA `sev_features` requested at `KVM_SEV_INIT2` (⊆ the host's
    /// `KVM_X86_SEV_VMSA_FEATURES`; SECURE_TSC is SNP-only).
    pub vmsa_features: u64,
    /// GHCB protocol version (0 means KVM's default, 2).
    pub ghcb_version: u16,
    /// Owner key transport for LAUNCH_START.
    pub session: Option<SevSession>,
}

impl SevEsInit {
    /// The `SEV_FEATURES` KVM writes into every VMSA of this guest at
    /// `LAUNCH_UPDATE_VMSA`, which the firmware measures: [`vmsa_features`](Self::vmsa_features)
    /// as requested. Plans measure SEV-ES VMSAs with `SEV_FEATURES` 0 (as sev-snp-measure
    /// does), so [`Launch::add_plan`](super::Launch::add_plan) refuses a plan for
    /// parameters that request features.
    pub const fn guest_features(&self) -> u64 {
        self.vmsa_features
    }
}

/// The optional identity of an SNP guest, checked by the firmware at LAUNCH_FINISH.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnpIdentity {
    /// The 96-byte ID block (`KVM_SEV_SNP_ID_BLOCK_SIZE`).
    pub id_block: [u8; 96],
    /// The 4096-byte ID authentication structure (`KVM_SEV_SNP_ID_AUTH_SIZE`).
    pub id_auth: Box<[u8; 4096]>,
    /// Whether `id_auth` also carries an author key (`auth_key_en`).
    pub author_key: bool,
}

/// SEV-SNP (`KVM_X86_SNP_VM`) parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnpInit {
    /// The guest policy; validated with [`SnpPolicy::validate`] against the host's
    /// `KVM_X86_SNP_POLICY_BITS`.
    pub policy: SnpPolicy,
    /// VMSA `sev_features` (⊆ `KVM_X86_SEV_VMSA_FEATURES`; SNP_ACTIVE is set by KVM).
    pub vmsa_features: u64,
    /// GHCB protocol version (0 or 2).
    pub ghcb_version: u16,
    /// Guest-visible workarounds (GOSVW) passed to SNP_LAUNCH_START.
    pub gosvw: [u8; 16],
    /// Route certificate requests to the VMM (`KVM_SEV_SNP_ENABLE_REQ_CERTS`).
    pub req_certs: bool,
    /// ID block and authentication, if the owner provides them.
    pub identity: Option<SnpIdentity>,
    /// `HOST_DATA`: 32 bytes the report carries verbatim.
    pub host_data: [u8; 32],
    /// Do not sign reports with the VCEK (`vcek_disabled`).
    pub vcek_disabled: bool,
}

impl Default for SnpInit {
    /// Policy `0x30000` (SMT allowed, bit 17), GHCB version 2, nothing else.
    fn default() -> Self {
        Self {
            policy: SnpPolicy::SMT | SnpPolicy::RSVD_MBO,
            vmsa_features: 0,
            ghcb_version: 2,
            gosvw: [0; 16],
            req_certs: false,
            identity: None,
            host_data: [0; 32],
            vcek_disabled: false,
        }
    }
}

impl SnpInit {
    /// The `SEV_FEATURES` KVM writes into every VMSA of this guest (and the firmware
    /// measures at `SNP_LAUNCH_FINISH`): [`vmsa_features`](Self::vmsa_features) plus
    /// SNP_ACTIVE, which KVM sets itself. This is the plan's
    /// [`PlanInputs::guest_features`] (sev-snp-measure's `--guest-features`): 0x1 by
    /// default, 0x21 with DEBUG_SWAP.
    ///
    /// ```
    /// use kvm_coco::launch::SnpInit;
    /// use kvm_coco::launch::params::SEV_FEAT_DEBUG_SWAP;
    /// let p = SnpInit { vmsa_features: SEV_FEAT_DEBUG_SWAP, ..SnpInit::default() };
    /// assert_eq!(p.guest_features(), 0x21);
    /// ```
    pub const fn guest_features(&self) -> u64 {
        self.vmsa_features | SEV_FEAT_SNP_ACTIVE
    }
}

/// Intel TDX (`KVM_X86_TDX_VM`) parameters for `KVM_TDX_INIT_VM`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TdxInit {
    /// TD attributes (⊆ `supported_attrs`).
    pub attributes: u64,
    /// XFAM (⊆ `supported_xfam`).
    pub xfam: u64,
    /// CPUID values; every entry must be a configurable leaf and set only configurable
    /// bits. Leaf `0x80000008` EAX\[23:16\] is the guest physical address width (48 or 52).
    pub cpuid: Vec<KvmCpuidEntry2>,
    /// MRCONFIGID (SHA-384 size, opaque to the host).
    pub mrconfigid: [u8; 48],
    /// MROWNER.
    pub mrowner: [u8; 48],
    /// MROWNERCONFIG.
    pub mrownerconfig: [u8; 48],
    /// Initial RCX of every vCPU (`KVM_TDX_INIT_VCPU`; TDVF takes the TD HOB address).
    pub vcpu_rcx: u64,
}

impl Default for TdxInit {
    /// No attributes, XFAM x87|SSE (0x3), GPAW 48, zero MR digests, RCX 0.
    fn default() -> Self {
        Self {
            attributes: 0,
            xfam: 0x3,
            cpuid: vec![KvmCpuidEntry2 {
                function: 0x8000_0008,
                eax: 48 << 16,
                ..Default::default()
            }],
            mrconfigid: [0; 48],
            mrowner: [0; 48],
            mrownerconfig: [0; 48],
            vcpu_rcx: 0,
        }
    }
}

/// The vendor-specific parameters of a launch, one typed struct per technology.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InitParams {
    /// AMD SEV.
    Sev(SevInit),
    /// AMD SEV-ES.
    SevEs(SevEsInit),
    /// AMD SEV-SNP.
    Snp(SnpInit),
    /// Intel TDX.
    Tdx(TdxInit),
}

impl InitParams {
    /// The technology these parameters launch.
    pub const fn tee(&self) -> Tee {
        match self {
            Self::Sev(_) => Tee::Sev,
            Self::SevEs(_) => Tee::SevEs,
            Self::Snp(_) => Tee::Snp,
            Self::Tdx(_) => Tee::Tdx,
        }
    }

    /// The VM type these parameters launch.
    pub const fn vm_type(&self) -> VmType {
        self.tee().vm_type()
    }

    /// The `SEV_FEATURES` KVM writes into every VMSA of this guest (SEV-ES:
    /// [`SevEsInit::guest_features`], SNP: [`SnpInit::guest_features`]); `None` for SEV and
    /// TDX, which have no VMSA.
    pub const fn guest_features(&self) -> Option<u64> {
        match self {
            Self::SevEs(p) => Some(p.guest_features()),
            Self::Snp(p) => Some(p.guest_features()),
            Self::Sev(_) | Self::Tdx(_) => None,
        }
    }

    /// The inputs of this launch's plan over `firmware`, with what the parameters decide
    /// already set: for SNP, [`PlanInputs::guest_features`] is
    /// [`SnpInit::guest_features`], so the VMSAs the plan measures carry the features
    /// requested at `KVM_SEV_INIT2`. Set the rest (vCPUs, signature, kernel) before building
    /// the plan; [`Launch::add_plan`](super::Launch::add_plan) refuses a plan whose VMSAs
    /// disagree with the parameters.
    pub fn plan_inputs<'a>(&self, firmware: &'a FirmwareImage<'a>) -> PlanInputs<'a> {
        let mut inputs = PlanInputs::new(firmware);
        if let Self::Snp(p) = self {
            inputs.guest_features = p.guest_features();
        }
        inputs
    }
}

/// A parameter the host does not accept, found before any command was issued.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParamError {
    /// VMSA features outside `KVM_X86_SEV_VMSA_FEATURES` (or SNP-only / KVM-owned bits).
    #[error(
        "VMSA features {requested:#x} include {unsupported:#x}, not offered by this host (supported: {supported:#x})"
    )]
    VmsaFeatures {
        /// Requested.
        requested: u64,
        /// The offending bits.
        unsupported: u64,
        /// What the host offers for this VM type.
        supported: u64,
    },
    /// The SEV policy's ES bit (2) does not match the VM type (set for SEV-ES only).
    #[error("SEV policy {policy:#x}: the ES bit (0x4) must be {} for this VM type", if *es { "set" } else { "clear" })]
    SevPolicyEs {
        /// The policy.
        policy: u32,
        /// Whether the type needs the bit.
        es: bool,
    },
    /// A GHCB version KVM does not accept (0..=2).
    #[error("GHCB version {0} is not supported (0, 1 or 2; SNP needs 0 or 2)")]
    GhcbVersion(u16),
    /// The SNP policy fails KVM's checks.
    #[error("SNP policy {policy:#x} rejected: {source}")]
    SnpPolicy {
        /// The policy.
        policy: u64,
        /// Why.
        #[source]
        source: kvm_coco_uapi::PolicyError,
    },
    /// TD attributes outside `supported_attrs`.
    #[error("TD attributes {requested:#x} include unsupported bits {unsupported:#x}")]
    TdxAttributes {
        /// Requested.
        requested: u64,
        /// Offending bits.
        unsupported: u64,
    },
    /// XFAM outside `supported_xfam`.
    #[error("XFAM {requested:#x} includes unsupported bits {unsupported:#x}")]
    TdxXfam {
        /// Requested.
        requested: u64,
        /// Offending bits.
        unsupported: u64,
    },
    /// A CPUID leaf the TDX module does not let the VMM configure.
    #[error("CPUID leaf {function:#x}.{index:#x} is not configurable on this TDX module")]
    TdxCpuidLeaf {
        /// Leaf.
        function: u32,
        /// Sub-leaf.
        index: u32,
    },
    /// CPUID bits outside the configurable mask of their leaf.
    #[error(
        "CPUID leaf {function:#x}.{index:#x} sets non-configurable bits (eax/ebx/ecx/edx {bits:x?})"
    )]
    TdxCpuidBits {
        /// Leaf.
        function: u32,
        /// Sub-leaf.
        index: u32,
        /// The offending bits per register.
        bits: [u32; 4],
    },
    /// The guest physical address width in CPUID 0x80000008 is missing or not 48/52.
    #[error(
        "CPUID 0x80000008 EAX[23:16] must give a guest physical address width of 48 or 52 (found {0:?})"
    )]
    TdxGpaw(Option<u32>),
    /// More CPUID entries than `KVM_TDX_INIT_VM` takes (256).
    #[error("{0} CPUID entries; KVM_TDX_INIT_VM takes at most 256")]
    TdxCpuidCount(usize),
}

/// What the host offers, as far as the parameters are concerned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostLimits {
    /// `KVM_X86_SEV_VMSA_FEATURES` (0 if absent).
    pub vmsa_features: u64,
    /// `KVM_X86_SNP_POLICY_BITS` (0 if absent).
    pub snp_policy_bits: u64,
    /// `KVM_TDX_CAPABILITIES`, for TDX.
    pub tdx: Option<TdxCaps>,
}

fn check_vmsa(requested: u64, supported: u64, snp: bool) -> Result<(), ParamError> {
    // SNP_ACTIVE is KVM's; SECURE_TSC is masked out for SEV-ES (facts §3.5).
    let supported =
        supported & !SEV_FEAT_SNP_ACTIVE & if snp { u64::MAX } else { !SEV_FEAT_SECURE_TSC };
    let unsupported = requested & !supported;
    if unsupported != 0 {
        return Err(ParamError::VmsaFeatures {
            requested,
            unsupported,
            supported,
        });
    }
    Ok(())
}

impl InitParams {
    /// Checks the parameters against the host, as KVM and the firmware would, so a bad
    /// value is reported with its reason before any command.
    ///
    /// # Errors
    /// The first [`ParamError`] found.
    pub fn validate(&self, host: &HostLimits) -> Result<(), ParamError> {
        match self {
            Self::Sev(p) if p.policy & SEV_POLICY_ES != 0 => Err(ParamError::SevPolicyEs {
                policy: p.policy,
                es: false,
            }),
            Self::Sev(_) => Ok(()),
            Self::SevEs(p) if p.policy & SEV_POLICY_ES == 0 => Err(ParamError::SevPolicyEs {
                policy: p.policy,
                es: true,
            }),
            Self::SevEs(p) => {
                if p.ghcb_version > 2 {
                    return Err(ParamError::GhcbVersion(p.ghcb_version));
                }
                check_vmsa(p.vmsa_features, host.vmsa_features, false)
            }
            Self::Snp(p) => {
                if p.ghcb_version != 0 && p.ghcb_version != 2 {
                    return Err(ParamError::GhcbVersion(p.ghcb_version));
                }
                check_vmsa(p.vmsa_features, host.vmsa_features, true)?;
                p.policy
                    .validate(host.snp_policy_bits)
                    .map_err(|source| ParamError::SnpPolicy {
                        policy: p.policy.bits(),
                        source,
                    })
            }
            Self::Tdx(p) => {
                let Some(caps) = &host.tdx else {
                    return Ok(());
                };
                validate_tdx(p, caps)
            }
        }
    }
}

fn validate_tdx(p: &TdxInit, caps: &TdxCaps) -> Result<(), ParamError> {
    let unsupported = p.attributes & !caps.supported_attrs;
    if unsupported != 0 {
        return Err(ParamError::TdxAttributes {
            requested: p.attributes,
            unsupported,
        });
    }
    let unsupported = p.xfam & !caps.supported_xfam;
    if unsupported != 0 {
        return Err(ParamError::TdxXfam {
            requested: p.xfam,
            unsupported,
        });
    }
    if p.cpuid.len() > kvm_coco_uapi::KVM_MAX_CPUID_ENTRIES as usize {
        return Err(ParamError::TdxCpuidCount(p.cpuid.len()));
    }
    for e in &p.cpuid {
        let Some(c) = caps
            .cpuid
            .iter()
            .find(|c| c.function == e.function && c.index == e.index)
        else {
            return Err(ParamError::TdxCpuidLeaf {
                function: e.function,
                index: e.index,
            });
        };
        let bits = [
            e.eax & !c.eax,
            e.ebx & !c.ebx,
            e.ecx & !c.ecx,
            e.edx & !c.edx,
        ];
        if bits.iter().any(|&b| b != 0) {
            return Err(ParamError::TdxCpuidBits {
                function: e.function,
                index: e.index,
                bits,
            });
        }
    }
    let gpaw = p
        .cpuid
        .iter()
        .find(|e| e.function == 0x8000_0008)
        .map(|e| (e.eax >> 16) & 0xFF);
    match gpaw {
        Some(48 | 52) => Ok(()),
        other => Err(ParamError::TdxGpaw(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caps::TdxCpuidConfig;

    #[test]
    fn snp_policy_is_checked_with_the_uapi_rules() {
        let host = HostLimits {
            snp_policy_bits: 0x3_ffff | SnpPolicy::DEBUG.bits(),
            ..Default::default()
        };
        let ok = InitParams::Snp(SnpInit::default());
        assert_eq!(ok.validate(&host), Ok(()));
        // Bit 17 missing: KVM's -EINVAL, reported up front.
        let bad = InitParams::Snp(SnpInit {
            policy: SnpPolicy::SMT,
            ..Default::default()
        });
        assert!(matches!(
            bad.validate(&host),
            Err(ParamError::SnpPolicy { .. })
        ));
        // MIGRATE_MA is never accepted by KVM 7.3.
        let bad = InitParams::Snp(SnpInit {
            policy: SnpPolicy::RSVD_MBO | SnpPolicy::MIGRATE_MA,
            ..Default::default()
        });
        assert!(bad.validate(&host).is_err());
    }

    #[test]
    fn vmsa_features_follow_the_host_mask() {
        let host = HostLimits {
            vmsa_features: SEV_FEAT_DEBUG_SWAP | SEV_FEAT_SECURE_TSC,
            ..Default::default()
        };
        let es = |f| {
            InitParams::SevEs(SevEsInit {
                policy: SEV_POLICY_ES,
                vmsa_features: f,
                ..Default::default()
            })
        };
        // The ES bit must match the type.
        assert!(matches!(
            InitParams::SevEs(SevEsInit::default()).validate(&host),
            Err(ParamError::SevPolicyEs { es: true, .. })
        ));
        assert!(matches!(
            InitParams::Sev(SevInit {
                policy: SEV_POLICY_ES,
                session: None
            })
            .validate(&host),
            Err(ParamError::SevPolicyEs { es: false, .. })
        ));
        assert!(es(SEV_FEAT_DEBUG_SWAP).validate(&host).is_ok());
        // SECURE_TSC is SNP-only; SNP_ACTIVE is KVM's own bit.
        assert!(es(SEV_FEAT_SECURE_TSC).validate(&host).is_err());
        assert!(es(SEV_FEAT_SNP_ACTIVE).validate(&host).is_err());
        let snp = InitParams::Snp(SnpInit {
            vmsa_features: SEV_FEAT_SECURE_TSC,
            ..Default::default()
        });
        let host = HostLimits {
            snp_policy_bits: 0x3_ffff,
            ..host
        };
        assert!(snp.validate(&host).is_ok());
    }

    #[test]
    fn snp_guest_features_are_the_vmsa_features_plus_snp_active() {
        // facts firmware-and-measurement §2.2 (VMSA 0x3B0): SNP SEV_FEATURES default 0x1;
        // KVM's debug_swap (bit 5, linux-uapi §3.5) gives 0x21. SECURE_TSC is bit 9.
        assert_eq!(SnpInit::default().guest_features(), 0x1);
        for (requested, measured) in [(0x20, 0x21), (0x200, 0x201), (0x220, 0x221)] {
            let p = InitParams::Snp(SnpInit {
                vmsa_features: requested,
                ..SnpInit::default()
            });
            assert_eq!(p.guest_features(), Some(measured));
        }
        // SEV-ES: as requested (0x20 with debug_swap), no SNP_ACTIVE.
        let es = InitParams::SevEs(SevEsInit {
            policy: SEV_POLICY_ES,
            vmsa_features: 0x20,
            ..Default::default()
        });
        assert_eq!(es.guest_features(), Some(0x20));
        assert_eq!(InitParams::Sev(SevInit::default()).guest_features(), None);
        assert_eq!(InitParams::Tdx(TdxInit::default()).guest_features(), None);
    }

    #[test]
    fn plan_inputs_take_the_snp_features_from_the_parameters() {
        let image = crate::measure::synthetic::syn64k();
        let fw = FirmwareImage::parse(&image).unwrap();
        let snp = |vmsa_features| {
            InitParams::Snp(SnpInit {
                vmsa_features,
                ..SnpInit::default()
            })
        };
        assert_eq!(snp(0).plan_inputs(&fw).guest_features, 0x1);
        let mut inputs = snp(SEV_FEAT_DEBUG_SWAP).plan_inputs(&fw);
        assert_eq!(inputs.guest_features, 0x21);
        // And the VMSA the plan measures carries them at SEV_FEATURES (offset 0x3B0, facts
        // firmware-and-measurement §2.2).
        inputs.vcpu_sig = Some(0x00A0_0F11);
        let plan = crate::measure::LaunchPlan::snp(&inputs).unwrap();
        let vmsa = plan
            .steps
            .iter()
            .find(|s| s.kind == crate::measure::PageKind::Vmsa)
            .unwrap();
        let at = &vmsa.data.as_slice()[0x3B0..0x3B8];
        assert_eq!(u64::from_le_bytes(at.try_into().unwrap()), 0x21);
    }

    #[test]
    fn tdx_parameters_are_checked_against_capabilities() {
        let caps = TdxCaps {
            supported_attrs: 1 << 28,
            supported_xfam: 0x3,
            kernel_tdvmcallinfo_1_r11: 0,
            user_tdvmcallinfo_1_r11: 0,
            kernel_tdvmcallinfo_1_r12: 0,
            user_tdvmcallinfo_1_r12: 0,
            cpuid: vec![TdxCpuidConfig {
                function: 0x8000_0008,
                index: 0,
                eax: 0x00ff_0000,
                ebx: 0,
                ecx: 0,
                edx: 0,
            }],
        };
        let host = HostLimits {
            tdx: Some(caps),
            ..Default::default()
        };
        assert!(InitParams::Tdx(TdxInit::default()).validate(&host).is_ok());
        let p = |f: fn(&mut TdxInit)| {
            let mut t = TdxInit::default();
            f(&mut t);
            InitParams::Tdx(t).validate(&host)
        };
        assert!(matches!(
            p(|t| t.attributes = 1),
            Err(ParamError::TdxAttributes { unsupported: 1, .. })
        ));
        assert!(matches!(
            p(|t| t.xfam = 0x7),
            Err(ParamError::TdxXfam { unsupported: 4, .. })
        ));
        assert!(matches!(
            p(|t| t.cpuid[0].eax = 47 << 16),
            Err(ParamError::TdxGpaw(Some(47)))
        ));
        assert!(matches!(
            p(|t| t.cpuid[0].ebx = 1),
            Err(ParamError::TdxCpuidBits { .. })
        ));
        assert!(matches!(
            p(|t| t.cpuid.push(KvmCpuidEntry2 {
                function: 7,
                ..Default::default()
            })),
            Err(ParamError::TdxCpuidLeaf { function: 7, .. })
        ));
    }
}
