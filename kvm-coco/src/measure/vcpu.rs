//! vCPU models (CPUID signatures) and VMM conventions that shape the initial VMSA.

use std::fmt;
use std::str::FromStr;

/// Computes the CPUID(1).EAX signature from family, model and stepping, as AMD's CPUID
/// specification (#25481, Fn0000_0001_EAX) defines it: families above 0xF use the extended
/// family field.
///
/// ```
/// use kvm_coco::measure::vcpu::cpu_sig;
/// assert_eq!(cpu_sig(25, 1, 1), 0x00A0_0F11); // Milan
/// assert_eq!(cpu_sig(23, 1, 2), 0x0080_0F12); // EPYC
/// ```
pub const fn cpu_sig(family: u32, model: u32, stepping: u32) -> u32 {
    let (fam_lo, fam_hi) = if family > 0xF {
        (0xF, (family - 0xF) & 0xFF)
    } else {
        (family, 0)
    };
    (fam_hi << 20)
        | (((model >> 4) & 0xF) << 16)
        | (fam_lo << 8)
        | ((model & 0xF) << 4)
        | (stepping & 0xF)
}

/// QEMU's AMD CPU model names and their signatures (the names sev-snp-measure accepts).
pub const CPU_TYPES: &[(&str, u32)] = &[
    ("EPYC", cpu_sig(23, 1, 2)),
    ("EPYC-v1", cpu_sig(23, 1, 2)),
    ("EPYC-v2", cpu_sig(23, 1, 2)),
    ("EPYC-IBPB", cpu_sig(23, 1, 2)),
    ("EPYC-v3", cpu_sig(23, 1, 2)),
    ("EPYC-v4", cpu_sig(23, 1, 2)),
    ("EPYC-Rome", cpu_sig(23, 49, 0)),
    ("EPYC-Rome-v1", cpu_sig(23, 49, 0)),
    ("EPYC-Rome-v2", cpu_sig(23, 49, 0)),
    ("EPYC-Rome-v3", cpu_sig(23, 49, 0)),
    ("EPYC-Milan", cpu_sig(25, 1, 1)),
    ("EPYC-Milan-v1", cpu_sig(25, 1, 1)),
    ("EPYC-Milan-v2", cpu_sig(25, 1, 1)),
    ("EPYC-Genoa", cpu_sig(25, 17, 0)),
    ("EPYC-Genoa-v1", cpu_sig(25, 17, 0)),
    ("EPYC-Turin", cpu_sig(26, 0, 0)),
];

/// The signature of a QEMU CPU model name, if known.
pub fn cpu_type_sig(name: &str) -> Option<u32> {
    CPU_TYPES.iter().find(|(n, _)| *n == name).map(|&(_, s)| s)
}

/// The VMM whose initial-VMSA conventions the plan follows.
///
/// QEMU on KVM is the reference; EC2 and GCE differ in a few reset values and in ordering, as
/// sev-snp-measure models them (see [`super::vmsa::InitialVmsa::for_vmm`]).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub enum VmmType {
    /// QEMU on KVM with `KVM_SEV_INIT2` (MXCSR 0x1F80 / FCW 0x037F in the VMSA).
    #[default]
    Qemu,
    /// Amazon EC2: BSP CS attribute 0x9A, SS 0x92, TR 0x83, RDX 0x600, no FPU reset values,
    /// and the CPUID page measured after all other metadata pages.
    Ec2,
    /// Google GCE: G_PAT 0x00070106, RDX 0x600, no FPU reset values, SNP_SEC_MEM unmeasured.
    Gce,
}

/// Error for an unknown VMM type name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown VMM type '{0}' (expected QEMU, ec2 or gce)")]
pub struct UnknownVmmType(pub String);

impl FromStr for VmmType {
    type Err = UnknownVmmType;

    /// Accepts the names sev-snp-measure accepts: `QEMU`, `ec2`, `gce`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "QEMU" => Ok(Self::Qemu),
            "ec2" => Ok(Self::Ec2),
            "gce" => Ok(Self::Gce),
            _ => Err(UnknownVmmType(s.to_string())),
        }
    }
}

impl fmt::Display for VmmType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Qemu => "QEMU",
            Self::Ec2 => "ec2",
            Self::Gce => "gce",
        })
    }
}
