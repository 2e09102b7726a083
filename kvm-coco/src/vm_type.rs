//! VM types (`KVM_CREATE_VM`'s argument on x86), the characteristics derived from them, and
//! the confidential-computing technology ([`Tee`]) a confidential type launches.
//!
//! [`Tee`] is the one name of a technology across the workspace: launch plans, launch logs
//! and the launcher use it, and command lines parse it (`sev`, `sev-es`, `snp`, `tdx`).
//! [`VmType`] stays the KVM VM type, which also has `default` and `sw-protected`; the
//! conversions between them are `From<Tee> for VmType` (always possible) and
//! [`VmType::tee`] / `TryFrom<VmType> for Tee` (fails with [`NotConfidential`] for a type
//! that runs no technology).
//!
//! The kernel encodes a VM type as a small integer (`KVM_X86_*_VM`). What a type *implies*
//! (private memory, protected register state, a mandatory init command, when
//! `KVM_PRE_FAULT_MEMORY` is allowed) is not part of that value: [`VmType::characteristics`]
//! derives it from the type, following `kvm_arch_init_vm`, `sev_vm_init` and `tdx_vm_init`
//! in Linux 7.3.
//!
//! ```
//! use kvm_coco::{Characteristics, VmType};
//! let snp: VmType = "snp".parse().unwrap();
//! assert_eq!(snp.abi_value(), 4);
//! assert!(snp.characteristics().contains(Characteristics::PRIVATE_MEMORY | Characteristics::PROTECTED_STATE));
//! assert_eq!(snp.to_string(), "snp");
//! ```

use std::fmt;
use std::str::FromStr;

use bitflags::bitflags;
use kvm_coco_uapi::vm::VmType as UapiVmType;
use serde::{Serialize, Serializer};

/// A KVM VM type on x86.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum VmType {
    /// `KVM_X86_DEFAULT_VM` (0): an ordinary VM.
    #[doc(alias = "KVM_X86_DEFAULT_VM")]
    Default,
    /// `KVM_X86_SW_PROTECTED_VM` (1): guest_memfd-backed private memory without hardware
    /// protection. Development and testing only; its ABI is not stable.
    #[doc(alias = "KVM_X86_SW_PROTECTED_VM")]
    SwProtected,
    /// `KVM_X86_SEV_VM` (2): AMD SEV, memory encryption. Needs `KVM_SEV_INIT2`.
    #[doc(alias = "KVM_X86_SEV_VM")]
    Sev,
    /// `KVM_X86_SEV_ES_VM` (3): AMD SEV-ES, SEV plus encrypted register state (VMSA).
    #[doc(alias = "KVM_X86_SEV_ES_VM")]
    SevEs,
    /// `KVM_X86_SNP_VM` (4): AMD SEV-SNP, SEV-ES plus integrity (RMP) and private memory.
    #[doc(alias = "KVM_X86_SNP_VM")]
    Snp,
    /// `KVM_X86_TDX_VM` (5): Intel TDX trust domain.
    #[doc(alias = "KVM_X86_TDX_VM")]
    Tdx,
}

bitflags! {
    /// What a [`VmType`] implies, derived from the type (never stored in the ABI value).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct Characteristics: u32 {
        /// Guest memory can be private (backed by guest_memfd, toggled with
        /// `KVM_SET_MEMORY_ATTRIBUTES`): the kernel's `has_private_mem`.
        const PRIVATE_MEMORY = 1 << 0;
        /// Register state can become protected: register ioctls fail once the vCPU's state
        /// is sealed. The kernel's `has_protected_state`.
        const PROTECTED_STATE = 1 << 1;
        /// A vendor init command (`KVM_SEV_INIT2`, `KVM_TDX_INIT_VM`) must run before vCPUs
        /// are created or run. The kernel's `need_init` (SEV) / TD state machine (TDX).
        const NEED_INIT = 1 << 2;
        /// `KVM_PRE_FAULT_MEMORY` is allowed from creation on.
        const PRE_FAULT = 1 << 3;
        /// `KVM_PRE_FAULT_MEMORY` becomes allowed only after the launch is finished
        /// (`KVM_SEV_SNP_LAUNCH_FINISH`, `KVM_TDX_FINALIZE_VM`).
        const PRE_FAULT_AFTER_FINISH = 1 << 4;
        /// Guest memory is encrypted by the hardware.
        const ENCRYPTED_MEMORY = 1 << 5;
        /// `KVM_MEMORY_ENCRYPT_OP` sub-commands are accepted on the VM fd.
        const ENCRYPT_OP = 1 << 6;
        /// `KVM_MEMORY_ENCRYPT_REG_REGION` / `UNREG_REGION` pin guest memory (SEV, SEV-ES).
        const ENC_REGION = 1 << 7;
        /// The guest's EOI is not visible to KVM (TDX `has_protected_eoi`).
        const PROTECTED_EOI = 1 << 8;
        /// vCPU state is protected from vCPU creation on (TDX, unless the TD has the DEBUG
        /// attribute), rather than after a launch step.
        const PROTECTED_AT_CREATION = 1 << 9;
    }
}

/// The CPU vendor whose technology a VM type uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Vendor {
    /// AMD SEV family.
    Amd,
    /// Intel TDX.
    Intel,
}

impl VmType {
    /// Every type, in ABI order.
    pub const ALL: [VmType; 6] = [
        Self::Default,
        Self::SwProtected,
        Self::Sev,
        Self::SevEs,
        Self::Snp,
        Self::Tdx,
    ];

    /// The confidential types (those that accept `KVM_MEMORY_ENCRYPT_OP`).
    pub const CONFIDENTIAL: [VmType; 4] = [Self::Sev, Self::SevEs, Self::Snp, Self::Tdx];

    /// The value passed to `KVM_CREATE_VM`.
    pub const fn abi_value(self) -> u32 {
        self.to_uapi().raw()
    }

    /// The type with this `KVM_CREATE_VM` value, if known.
    pub const fn from_abi(value: u32) -> Option<Self> {
        match UapiVmType::from_raw(value) {
            Some(t) => Some(Self::from_uapi(t)),
            None => None,
        }
    }

    /// The uAPI enum, which carries the `KVM_X86_*_VM` values.
    const fn to_uapi(self) -> UapiVmType {
        match self {
            Self::Default => UapiVmType::Default,
            Self::SwProtected => UapiVmType::SwProtected,
            Self::Sev => UapiVmType::Sev,
            Self::SevEs => UapiVmType::SevEs,
            Self::Snp => UapiVmType::Snp,
            Self::Tdx => UapiVmType::Tdx,
        }
    }

    /// The type behind a uAPI value.
    const fn from_uapi(t: UapiVmType) -> Self {
        match t {
            UapiVmType::Default => Self::Default,
            UapiVmType::SwProtected => Self::SwProtected,
            UapiVmType::Sev => Self::Sev,
            UapiVmType::SevEs => Self::SevEs,
            UapiVmType::Snp => Self::Snp,
            UapiVmType::Tdx => Self::Tdx,
        }
    }

    /// The name used on command lines and in JSON: `default`, `sw-protected`, `sev`,
    /// `sev-es`, `snp`, `tdx`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::SwProtected => "sw-protected",
            Self::Sev => "sev",
            Self::SevEs => "sev-es",
            Self::Snp => "snp",
            Self::Tdx => "tdx",
        }
    }

    /// The kernel constant's name, e.g. `KVM_X86_SNP_VM`.
    pub fn kernel_name(self) -> &'static str {
        self.to_uapi().name()
    }

    /// What this type implies (Linux 7.3 `kvm_arch_init_vm`, `sev_vm_init`, `tdx_vm_init`).
    pub const fn characteristics(self) -> Characteristics {
        use Characteristics as C;
        match self {
            Self::Default => C::PRE_FAULT,
            Self::SwProtected => C::PRIVATE_MEMORY.union(C::PRE_FAULT),
            Self::Sev => C::NEED_INIT
                .union(C::PRE_FAULT)
                .union(C::ENCRYPTED_MEMORY)
                .union(C::ENCRYPT_OP)
                .union(C::ENC_REGION),
            Self::SevEs => C::NEED_INIT
                .union(C::PRE_FAULT)
                .union(C::ENCRYPTED_MEMORY)
                .union(C::ENCRYPT_OP)
                .union(C::ENC_REGION)
                .union(C::PROTECTED_STATE),
            Self::Snp => C::NEED_INIT
                .union(C::PRE_FAULT_AFTER_FINISH)
                .union(C::ENCRYPTED_MEMORY)
                .union(C::ENCRYPT_OP)
                .union(C::PROTECTED_STATE)
                .union(C::PRIVATE_MEMORY),
            Self::Tdx => C::NEED_INIT
                .union(C::PRE_FAULT_AFTER_FINISH)
                .union(C::ENCRYPTED_MEMORY)
                .union(C::ENCRYPT_OP)
                .union(C::PROTECTED_STATE)
                .union(C::PRIVATE_MEMORY)
                .union(C::PROTECTED_EOI)
                .union(C::PROTECTED_AT_CREATION),
        }
    }

    /// Whether this is a confidential type (accepts `KVM_MEMORY_ENCRYPT_OP`).
    pub const fn is_confidential(self) -> bool {
        self.characteristics().contains(Characteristics::ENCRYPT_OP)
    }

    /// The confidential-computing technology this type runs, `None` for `default` and
    /// `sw-protected`.
    pub const fn tee(self) -> Option<Tee> {
        match self {
            Self::Sev => Some(Tee::Sev),
            Self::SevEs => Some(Tee::SevEs),
            Self::Snp => Some(Tee::Snp),
            Self::Tdx => Some(Tee::Tdx),
            Self::Default | Self::SwProtected => None,
        }
    }

    /// The vendor technology, `None` for `default` and `sw-protected`.
    pub const fn vendor(self) -> Option<Vendor> {
        match self {
            Self::Sev | Self::SevEs | Self::Snp => Some(Vendor::Amd),
            Self::Tdx => Some(Vendor::Intel),
            Self::Default | Self::SwProtected => None,
        }
    }
}

/// A confidential-computing technology: what a launch plan, a launch log and a launch are
/// for. Each names one confidential [`VmType`] (`VmType::from(tee)`).
///
/// Prints and parses as the command-line names `sev`, `sev-es`, `snp`, `tdx` (the names of
/// the matching VM types); serializes (launch logs) as `sev`, `sev_es`, `snp`, `tdx`.
///
/// ```
/// use kvm_coco::{Tee, VmType};
/// let tee: Tee = "sev-es".parse()?;
/// assert_eq!(VmType::from(tee), VmType::SevEs);
/// assert_eq!(tee.to_string(), "sev-es");
/// assert_eq!(VmType::Default.tee(), None);
/// assert!(Tee::try_from(VmType::SwProtected).is_err());
/// # Ok::<(), kvm_coco::vm_type::ParseTeeError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tee {
    /// AMD SEV: memory encryption; SHA-256 launch digest over the data regions.
    Sev,
    /// AMD SEV-ES: SEV plus encrypted register state; SHA-256 over the data regions and the
    /// VMSAs.
    SevEs,
    /// AMD SEV-SNP: SEV-ES plus integrity; SHA-384 PAGE_INFO chain.
    Snp,
    /// Intel TDX: MRTD (SHA-384 over PAGE.ADD / MR.EXTEND blocks).
    Tdx,
}

impl Tee {
    /// Every technology, in VM-type order.
    pub const ALL: [Tee; 4] = [Self::Sev, Self::SevEs, Self::Snp, Self::Tdx];

    /// The KVM VM type that runs this technology.
    pub const fn vm_type(self) -> VmType {
        match self {
            Self::Sev => VmType::Sev,
            Self::SevEs => VmType::SevEs,
            Self::Snp => VmType::Snp,
            Self::Tdx => VmType::Tdx,
        }
    }

    /// The command-line name: `sev`, `sev-es`, `snp`, `tdx`.
    pub const fn name(self) -> &'static str {
        self.vm_type().name()
    }

    /// The CPU vendor of the technology.
    pub const fn vendor(self) -> Vendor {
        match self {
            Self::Sev | Self::SevEs | Self::Snp => Vendor::Amd,
            Self::Tdx => Vendor::Intel,
        }
    }

    /// Whether the technology is AMD's (SEV, SEV-ES, SNP).
    pub const fn is_amd(self) -> bool {
        matches!(self.vendor(), Vendor::Amd)
    }
}

impl fmt::Display for Tee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A string that names no [`Tee`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown confidential-computing technology `{0}` (expected one of: sev, sev-es, snp, tdx)")]
pub struct ParseTeeError(pub String);

impl FromStr for Tee {
    type Err = ParseTeeError;

    /// Parses `sev`, `sev-es`, `snp` or `tdx` (ASCII case ignored).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| ParseTeeError(s.to_owned()))
    }
}

/// A VM type that runs no confidential-computing technology (`default`, `sw-protected`)
/// where one is needed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0} is not a confidential VM type: this needs one of sev, sev-es, snp, tdx (`default` and `sw-protected` VMs have no launch to measure)"
)]
pub struct NotConfidential(pub VmType);

impl From<Tee> for VmType {
    fn from(t: Tee) -> Self {
        t.vm_type()
    }
}

impl TryFrom<VmType> for Tee {
    type Error = NotConfidential;

    fn try_from(t: VmType) -> Result<Self, Self::Error> {
        t.tee().ok_or(NotConfidential(t))
    }
}

impl From<UapiVmType> for VmType {
    fn from(t: UapiVmType) -> Self {
        Self::from_uapi(t)
    }
}

impl From<VmType> for UapiVmType {
    fn from(t: VmType) -> Self {
        t.to_uapi()
    }
}

impl fmt::Display for VmType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A string that names no [`VmType`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown VM type `{0}` (expected one of: default, sw-protected, sev, sev-es, snp, tdx)")]
pub struct ParseVmTypeError(pub String);

impl FromStr for VmType {
    type Err = ParseVmTypeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| ParseVmTypeError(s.to_owned()))
    }
}

impl Serialize for VmType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// A set of VM types, as reported by `KVM_CHECK_EXTENSION(KVM_CAP_VM_TYPES)`: bit `n` set
/// means `KVM_CREATE_VM(n)` is accepted.
///
/// Prints as a comma-separated list of names and serializes as a JSON array of names.
///
/// ```
/// use kvm_coco::{VmType, VmTypes};
/// let set = VmTypes::from_bits(0b1_0101);
/// assert!(set.contains(VmType::Snp));
/// assert_eq!(set.to_string(), "default, sev, snp");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct VmTypes(u32);

impl VmTypes {
    /// The set with only `default` (what a kernel without `KVM_CAP_VM_TYPES` supports).
    pub const DEFAULT_ONLY: VmTypes = VmTypes(1);

    /// Wraps the raw bitmap returned by the kernel. Bits of unknown types are kept.
    pub const fn from_bits(bits: u32) -> Self {
        Self(bits)
    }

    /// The raw bitmap.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Whether the set contains `t`.
    pub const fn contains(self, t: VmType) -> bool {
        self.0 & (1 << t.abi_value()) != 0
    }

    /// The known types in the set, in ABI order.
    pub fn iter(self) -> impl Iterator<Item = VmType> {
        VmType::ALL.into_iter().filter(move |t| self.contains(*t))
    }
}

impl From<kvm_coco_uapi::vm::VmTypes> for VmTypes {
    fn from(t: kvm_coco_uapi::vm::VmTypes) -> Self {
        Self(t.bits())
    }
}

impl FromIterator<VmType> for VmTypes {
    fn from_iter<I: IntoIterator<Item = VmType>>(iter: I) -> Self {
        Self(iter.into_iter().fold(0, |b, t| b | (1 << t.abi_value())))
    }
}

impl fmt::Display for VmTypes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for t in self.iter() {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            f.write_str(t.name())?;
        }
        if first {
            f.write_str("none")?;
        }
        Ok(())
    }
}

impl Serialize for VmTypes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_abi_values_match_kernel() {
        // ABI values from arch/x86/include/uapi/asm/kvm.h (facts linux-uapi §1).
        let expected = [
            ("default", 0),
            ("sw-protected", 1),
            ("sev", 2),
            ("sev-es", 3),
            ("snp", 4),
            ("tdx", 5),
        ];
        for (name, abi) in expected {
            let t: VmType = name.parse().unwrap();
            assert_eq!(t.abi_value(), abi);
            assert_eq!(t.to_string(), name);
            assert_eq!(VmType::from_abi(abi), Some(t));
        }
        assert!("sev_es".parse::<VmType>().is_err());
        assert_eq!(VmType::from_abi(6), None);
    }

    #[test]
    fn characteristics_follow_the_kernel_flags() {
        use Characteristics as C;
        // has_protected_state: SEV_ES, SNP, TDX (facts §9.3).
        let protected: Vec<_> = VmType::ALL
            .into_iter()
            .filter(|t| t.characteristics().contains(C::PROTECTED_STATE))
            .collect();
        assert_eq!(protected, [VmType::SevEs, VmType::Snp, VmType::Tdx]);
        // has_private_mem: SW_PROTECTED, SNP, TDX (facts §1).
        let private: Vec<_> = VmType::ALL
            .into_iter()
            .filter(|t| t.characteristics().contains(C::PRIVATE_MEMORY))
            .collect();
        assert_eq!(private, [VmType::SwProtected, VmType::Snp, VmType::Tdx]);
        // pre_fault_allowed only after finish: SNP, TDX.
        for t in VmType::ALL {
            let c = t.characteristics();
            assert_ne!(
                c.contains(C::PRE_FAULT),
                c.contains(C::PRE_FAULT_AFTER_FINISH),
                "{t}"
            );
        }
        assert!(!VmType::Default.is_confidential());
        assert!(VmType::Tdx.is_confidential());
    }

    #[test]
    fn tee_names_and_vm_types_follow_the_kernel() {
        // Names and KVM_X86_*_VM values from facts linux-uapi §1: SEV 2, SEV-ES 3, SNP 4,
        // TDX 5; DEFAULT (0) and SW_PROTECTED (1) run no technology.
        let expected = [
            ("sev", Tee::Sev, 2),
            ("sev-es", Tee::SevEs, 3),
            ("snp", Tee::Snp, 4),
            ("tdx", Tee::Tdx, 5),
        ];
        for (name, tee, abi) in expected {
            assert_eq!(name.parse::<Tee>(), Ok(tee));
            assert_eq!(tee.to_string(), name);
            assert_eq!(VmType::from(tee).abi_value(), abi);
            assert_eq!(VmType::from_abi(abi).and_then(VmType::tee), Some(tee));
            assert_eq!(Tee::try_from(VmType::from(tee)), Ok(tee));
        }
        for t in [VmType::Default, VmType::SwProtected] {
            assert_eq!(t.tee(), None);
            assert_eq!(Tee::try_from(t), Err(NotConfidential(t)));
        }
        assert!(
            Tee::try_from(VmType::Default)
                .unwrap_err()
                .to_string()
                .starts_with("default is not a confidential VM type")
        );
        // `none`, the VM type names that are not technologies, and the serde spelling are
        // not command-line names.
        for bad in ["none", "default", "sw-protected", "sev_es", ""] {
            assert_eq!(bad.parse::<Tee>(), Err(ParseTeeError(bad.to_owned())));
        }
        // The launch log's JSON spelling is unchanged.
        assert_eq!(serde_json::to_string(&Tee::SevEs).unwrap(), r#""sev_es""#);
        assert_eq!(serde_json::from_str::<Tee>(r#""tdx""#).unwrap(), Tee::Tdx);
        assert!(Tee::Snp.is_amd() && !Tee::Tdx.is_amd());
    }

    #[test]
    fn vm_types_set_prints_and_serializes_names() {
        let s: VmTypes = [VmType::Default, VmType::Tdx].into_iter().collect();
        assert_eq!(s.bits(), 0b10_0001);
        assert_eq!(s.to_string(), "default, tdx");
        assert_eq!(serde_json::to_string(&s).unwrap(), r#"["default","tdx"]"#);
        assert_eq!(VmTypes::from_bits(0).to_string(), "none");
    }
}
