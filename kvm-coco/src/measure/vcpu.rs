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

/// Family, model and stepping from CPUID leaf 1 EAX, as AMD's CPUID specification (#25481,
/// Fn0000_0001_EAX) and the AMD64 APM (vol. 3, "Family, Model, Stepping") decode them:
///
/// - `Family = BaseFamily[11:8]`, plus `ExtFamily[27:20]` when `BaseFamily` is 0xF;
/// - `Model = BaseModel[7:4]`, with `ExtModel[19:16]` as its high nibble when `BaseFamily`
///   is 0xF (AMD) or 0x6 (Intel's SDM, which also uses it there);
/// - `Stepping = [3:0]`.
///
/// Reserved bits (31:28, 15:12 on AMD; the processor type, 13:12, on Intel) are not part of
/// any of them.
///
/// ```
/// use kvm_coco::measure::vcpu::fms_from_cpuid;
/// assert_eq!(fms_from_cpuid(0x00A0_0F11), (0x19, 0x01, 1)); // Milan
/// ```
pub const fn fms_from_cpuid(eax: u32) -> (u32, u32, u32) {
    let base_family = (eax >> 8) & 0xF;
    let ext_family = (eax >> 20) & 0xFF;
    let base_model = (eax >> 4) & 0xF;
    let ext_model = (eax >> 16) & 0xF;
    let family = if base_family == 0xF {
        base_family + ext_family
    } else {
        base_family
    };
    let model = if base_family == 0xF || base_family == 0x6 {
        (ext_model << 4) | base_model
    } else {
        base_model
    };
    (family, model, eax & 0xF)
}

/// The vCPU signature of a CPU whose CPUID leaf 1 EAX is `eax`: its family, model and
/// stepping ([`fms_from_cpuid`]) encoded again with [`cpu_sig`], which is the value QEMU's
/// `-cpu host` reports as the guest's CPUID leaf 1 EAX (and puts in RDX at reset) and what
/// sev-snp-measure's `--vcpu-family/--vcpu-model/--vcpu-stepping` give for that CPU. Bits
/// outside family, model and stepping are dropped.
///
/// ```
/// use kvm_coco::measure::vcpu::cpu_sig_from_cpuid;
/// assert_eq!(cpu_sig_from_cpuid(0x00A1_0F11), 0x00A1_0F11); // Genoa
/// assert_eq!(cpu_sig_from_cpuid(0xF0A0_0F11), 0x00A0_0F11); // reserved bits dropped
/// ```
pub const fn cpu_sig_from_cpuid(eax: u32) -> u32 {
    let (family, model, stepping) = fms_from_cpuid(eax);
    cpu_sig(family, model, stepping)
}

/// The vCPU signature of this machine's CPU ([`cpu_sig_from_cpuid`] of its CPUID leaf 1):
/// what a guest launched with the host's CPU model carries in its initial VMSAs. `None` off
/// x86-64.
pub fn host_cpu_sig() -> Option<u32> {
    #[cfg(target_arch = "x86_64")]
    {
        Some(cpu_sig_from_cpuid(std::arch::x86_64::__cpuid(1).eax))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// CPUID leaf 1 EAX values and the signatures worked out by hand from AMD's encoding
    /// (#25481 Fn0000_0001_EAX: ExtFamily 27:20, ExtModel 19:16, BaseFamily 11:8, BaseModel
    /// 7:4, Stepping 3:0; Family = BaseFamily + ExtFamily when BaseFamily is 0xF) and the
    /// facts' signature formula (firmware-and-measurement §2.2: `fam_hi<<20 | (model>>4)<<16
    /// | fam_lo<<8 | (model&0xF)<<4 | stepping`, fam_lo 0xF and fam_hi family − 0xF above
    /// 0xF).
    #[test]
    fn signature_from_cpuid_leaf_1() {
        let cases = [
            // Milan 0xA00F11: family 0xF + 0xA = 0x19, model 0x01, stepping 1 → the facts'
            // Milan signature 0xA00F11.
            (0x00A0_0F11, (0x19, 0x01, 1), 0x00A0_0F11),
            // Rome: ExtModel 3, BaseModel 1 → model 0x31; family 0xF + 0x8 = 0x17 → the
            // facts' Rome 0x830F10.
            (0x0083_0F10, (0x17, 0x31, 0), 0x0083_0F10),
            // Genoa: family 0x19, model 0x11, stepping 1 → 0xA10F11 (the software host's).
            (0x00A1_0F11, (0x19, 0x11, 1), 0x00A1_0F11),
            // Turin: family 0xF + 0xB = 0x1A, model 0, stepping 0 → the facts' 0xB00F00.
            (0x00B0_0F00, (0x1A, 0x00, 0), 0x00B0_0F00),
            // Milan with the reserved bits 31:28 and 15:12 set: they are not part of the
            // signature → 0xA00F11.
            (0xF0A0_FF11, (0x19, 0x01, 1), 0x00A0_0F11),
            // Intel family 6 (Sapphire Rapids 0x806F8): ExtModel 8, BaseModel 0xF → model
            // 0x8F; family 6 has no extended family → 0 | 8<<16 | 6<<8 | 0xF<<4 | 8.
            (0x0008_06F8, (0x06, 0x8F, 8), 0x0008_06F8),
            // Intel processor type (bits 13:12 = 01b) is dropped: 0x1067A → 0x1067A.
            (0x0001_167A, (0x06, 0x17, 0xA), 0x0001_067A),
            // Base family 5 < 0xF: ExtFamily (0xF here) and ExtModel (2) are reserved and
            // ignored → family 5, model 4, stepping 3 → 0x543.
            (0x00F2_0543, (0x05, 0x04, 3), 0x0000_0543),
        ];
        for (eax, fms, sig) in cases {
            assert_eq!(fms_from_cpuid(eax), fms, "{eax:#x}");
            assert_eq!(cpu_sig_from_cpuid(eax), sig, "{eax:#x}");
        }
    }

    #[test]
    fn the_host_signature_is_a_decoded_leaf_1() {
        let Some(sig) = host_cpu_sig() else { return };
        // Re-encoding an already canonical signature changes nothing, and no reserved bit
        // survives.
        assert_eq!(cpu_sig_from_cpuid(sig), sig);
        assert_eq!(sig & 0xF000_F000, 0);
    }
}
