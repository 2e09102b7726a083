//! `TD_PARAMS` (the 1024-byte input of TDH.MNG.INIT) and the capability set the software
//! module validates it against ([`TdxModuleConfig`]).
//!
//! Layout: TDX module 1.5 `tdx_api_defs.h` (firmware facts §5.3). Check order in
//! [`TdxModuleConfig::validate`]: ATTRIBUTES, XFAM, MAX_VCPUS, NUM_L2_VMS, reserved_0,
//! CONFIG_FLAGS, EPTP_CONTROLS, TSC_FREQUENCY, reserved_1, MSR_CONFIG_CTLS reserved bits,
//! reserved_2, then each CPUID_CONFIG value and the unused tail; each failure is
//! `TDX_OPERAND_INVALID` plus the field's operand id (reserved fields: RDX, the
//! TD_PARAMS pointer).

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::status::{OperandId, TdxStatus};

/// Size of `TD_PARAMS`.
pub const TD_PARAMS_SIZE: usize = 1024;
/// Number of CPUID_CONFIG slots that fit in TD_PARAMS (0x100..0x400, 16 bytes each).
pub const MAX_CPUID_CONFIGS: usize = 48;
/// `TD_PARAMS.ATTRIBUTES` bit 0: off-TD debug (host may read TD state).
pub const TDX_TD_ATTR_DEBUG: u64 = 1 << 0;
/// `TD_PARAMS.ATTRIBUTES` bit 28: SEPT #VE disabled.
pub const TDX_TD_ATTR_SEPT_VE_DISABLE: u64 = 1 << 28;
/// `TD_PARAMS.ATTRIBUTES` bit 29: migratable.
pub const TDX_TD_ATTR_MIGRATABLE: u64 = 1 << 29;
/// `TD_PARAMS.ATTRIBUTES` bit 30: PKS.
pub const TDX_TD_ATTR_PKS: u64 = 1 << 30;
/// `TD_PARAMS.ATTRIBUTES` bit 31: Key Locker.
pub const TDX_TD_ATTR_KL: u64 = 1 << 31;
/// `TD_PARAMS.ATTRIBUTES` bit 63: PERFMON.
pub const TDX_TD_ATTR_PERFMON: u64 = 1 << 63;
/// `CONFIG_FLAGS` bit 0: GPAW (52-bit guest physical address width).
pub const TDX_CONFIG_FLAGS_MAX_GPAW: u64 = 1 << 0;
/// `CONFIG_FLAGS` bit 1: FLEXIBLE_PENDING_VE.
pub const TDX_CONFIG_FLAGS_FLEXIBLE_PENDING_VE: u64 = 1 << 1;
/// `CONFIG_FLAGS` bit 2: NO_RBP_MOD.
pub const TDX_CONFIG_FLAGS_NO_RBP_MOD: u64 = 1 << 2;
/// EPTP memory type write-back (bits 2:0).
pub const VMX_EPTP_MT_WB: u64 = 6;
/// EPTP page-walk length 4 (bits 5:3 = 3).
pub const VMX_EPTP_PWL_4: u64 = 3 << 3;
/// EPTP page-walk length 5 (bits 5:3 = 4).
pub const VMX_EPTP_PWL_5: u64 = 4 << 3;
/// Lowest accepted TSC_FREQUENCY (units of 25 MHz): 100 MHz.
pub const TSC_FREQUENCY_MIN: u16 = 4;
/// Highest accepted TSC_FREQUENCY (units of 25 MHz): 10 GHz.
pub const TSC_FREQUENCY_MAX: u16 = 400;
/// Most L2 VMs a TD may have.
pub const MAX_L2_VMS: u8 = 3;
/// CPUID sub-leaf value meaning "no sub-leaf" in the module's tables.
pub const CPUID_NO_SUBLEAF: u32 = 0xFFFF_FFFF;

/// One CPUID_CONFIG value of TD_PARAMS (`cpuid_config_return_values_t`, 16 bytes).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Default,
    FromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
    Unaligned,
)]
#[repr(C)]
pub struct CpuidConfigValue {
    /// EAX.
    pub eax: U32,
    /// EBX.
    pub ebx: U32,
    /// ECX.
    pub ecx: U32,
    /// EDX.
    pub edx: U32,
}

impl CpuidConfigValue {
    /// The four registers in EAX, EBX, ECX, EDX order.
    pub fn regs(&self) -> [u32; 4] {
        [
            self.eax.get(),
            self.ebx.get(),
            self.ecx.get(),
            self.edx.get(),
        ]
    }

    /// From EAX, EBX, ECX, EDX.
    pub fn from_regs(r: [u32; 4]) -> Self {
        Self {
            eax: r[0].into(),
            ebx: r[1].into(),
            ecx: r[2].into(),
            edx: r[3].into(),
        }
    }
}

/// `TD_PARAMS` (1024 bytes, little-endian, TDX module 1.5).
///
/// The VMM (KVM's `setup_tdparams`) builds it from `kvm_tdx_init_vm`; TDH.MNG.INIT checks
/// it against the module's capabilities. MRCONFIGID, MROWNER and MROWNERCONFIG are copied
/// verbatim into the TDREPORT; **no field of TD_PARAMS enters MRTD**.
#[doc(alias = "td_params")]
#[derive(Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct TdParams {
    /// TD attributes (`TDX_TD_ATTR_*`).
    pub attributes: U64,
    /// Extended feature mask (XCR0 | IA32_XSS format).
    pub xfam: U64,
    /// Maximum number of vCPUs (0 is invalid).
    pub max_vcpus: U16,
    /// Number of L2 VMs (≤ 3).
    pub num_l2_vms: u8,
    /// Bit 0: IA32_ARCH_CAPABILITIES configuration is used; bits 7:1 reserved.
    pub msr_config_ctls: u8,
    /// Reserved, zero.
    pub reserved_0: [u8; 4],
    /// EPT controls: memory type (WB) and page-walk length − 1.
    pub eptp_controls: U64,
    /// `TDX_CONFIG_FLAGS_*`.
    pub config_flags: U64,
    /// Virtual TSC frequency in units of 25 MHz (4..=400).
    pub tsc_frequency: U16,
    /// Reserved, zero.
    pub reserved_1: [u8; 38],
    /// MRCONFIGID.
    pub mr_config_id: [u8; 48],
    /// MROWNER.
    pub mr_owner: [u8; 48],
    /// MROWNERCONFIG.
    pub mr_owner_config: [u8; 48],
    /// IA32_ARCH_CAPABILITIES configuration.
    pub ia32_arch_capabilities_config: U64,
    /// Reserved, zero.
    pub reserved_2: [u8; 24],
    /// CPUID_CONFIG values, in the order of the module's configurable-leaf list; slots past
    /// that list are reserved (zero).
    pub cpuid_config_vals: [CpuidConfigValue; MAX_CPUID_CONFIGS],
}

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<TdParams>() == TD_PARAMS_SIZE);
    assert!(offset_of!(TdParams, xfam) == 0x08);
    assert!(offset_of!(TdParams, max_vcpus) == 0x10);
    assert!(offset_of!(TdParams, num_l2_vms) == 0x12);
    assert!(offset_of!(TdParams, msr_config_ctls) == 0x13);
    assert!(offset_of!(TdParams, reserved_0) == 0x14);
    assert!(offset_of!(TdParams, eptp_controls) == 0x18);
    assert!(offset_of!(TdParams, config_flags) == 0x20);
    assert!(offset_of!(TdParams, tsc_frequency) == 0x28);
    assert!(offset_of!(TdParams, reserved_1) == 0x2A);
    assert!(offset_of!(TdParams, mr_config_id) == 0x50);
    assert!(offset_of!(TdParams, mr_owner) == 0x80);
    assert!(offset_of!(TdParams, mr_owner_config) == 0xB0);
    assert!(offset_of!(TdParams, ia32_arch_capabilities_config) == 0xE0);
    assert!(offset_of!(TdParams, reserved_2) == 0xE8);
    assert!(offset_of!(TdParams, cpuid_config_vals) == 0x100);
};

impl Default for TdParams {
    fn default() -> Self {
        Self::new_zeroed()
    }
}

/// One CPUID leaf the module virtualizes: its native value and which bits the host may
/// configure.
///
/// A leaf is *configurable* (listed in TDSYSINFO's CPUID_CONFIG and in KVM's capabilities)
/// when `config_direct | allow_direct` is non-zero. For such a leaf the virtual value is
/// `native` with CONFIG_DIRECT bits replaced by the configured value and ALLOW_DIRECT bits
/// cleared where the configured value is 0; a configured 1 outside both masks is
/// `TDX_OPERAND_INVALID + CPUID_CONFIG`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuidLeafConfig {
    /// Leaf (EAX input).
    pub leaf: u32,
    /// Sub-leaf, or [`CPUID_NO_SUBLEAF`].
    pub subleaf: u32,
    /// Native value (EAX, EBX, ECX, EDX).
    pub native: [u32; 4],
    /// Bits whose virtual value is the configured value.
    pub config_direct: [u32; 4],
    /// Bits that read native only where the configured value is 1.
    pub allow_direct: [u32; 4],
}

impl CpuidLeafConfig {
    /// Whether the host can configure any bit of this leaf.
    pub fn is_configurable(&self) -> bool {
        (0..4).any(|i| self.config_direct[i] | self.allow_direct[i] != 0)
    }

    /// The configurable-bits mask (`config_direct | allow_direct`).
    pub fn configurable_mask(&self) -> [u32; 4] {
        let mut m = [0; 4];
        for (i, v) in m.iter_mut().enumerate() {
            *v = self.config_direct[i] | self.allow_direct[i];
        }
        m
    }

    const fn fixed(leaf: u32, subleaf: u32, native: [u32; 4]) -> Self {
        Self {
            leaf,
            subleaf,
            native,
            config_direct: [0; 4],
            allow_direct: [0; 4],
        }
    }
}

/// The capability set of the software TDX module (what TDH.SYS.RD would report) plus the
/// model's identity values and seed.
///
/// [`Default`] is a synthetic, Sapphire-Rapids-like configuration chosen for the model: it
/// is plausible, not a dump of a real module's TDSYSINFO.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TdxModuleConfig {
    /// ATTRIBUTES bits that may be 1.
    pub attributes_fixed0: u64,
    /// ATTRIBUTES bits that must be 1.
    pub attributes_fixed1: u64,
    /// XFAM bits that may be 1.
    pub xfam_fixed0: u64,
    /// XFAM bits that must be 1.
    pub xfam_fixed1: u64,
    /// Largest MAX_VCPUS accepted.
    pub max_vcpus_per_td: u16,
    /// Whether 5-level EPT (GPAW 52) is supported.
    pub ept_5level: bool,
    /// The CPUID leaves the module virtualizes; the configurable ones, in order, are the
    /// CPUID_CONFIG list (at most [`MAX_CPUID_CONFIGS`]).
    pub cpuid: Vec<CpuidLeafConfig>,
    /// Number of packages (each needs TDH.MNG.KEY.CONFIG).
    pub num_packages: u32,
    /// Private HKIDs are `1..=num_private_hkids`.
    pub num_private_hkids: u16,
    /// Pages of a TDVPS (the TDVPR plus `tdvps_pages − 1` TDCX pages).
    pub tdvps_pages: u32,
    /// CPUSVN reported in the TDREPORT.
    pub cpusvn: [u8; 16],
    /// TEE_TCB_SVN of the module.
    pub tee_tcb_svn: [u8; 16],
    /// MRSEAM: measurement of the module.
    pub mrseam: [u8; 48],
    /// MRSIGNERSEAM (zero for an Intel-signed module).
    pub mrsignerseam: [u8; 48],
    /// SEAM attributes.
    pub seam_attributes: u64,
    /// Seed of every key and TD_UUID the model generates.
    pub seed: [u8; 32],
}

/// Minimum number of TDCS pages (`MIN_NUM_TDCS_PAGES`).
pub const MIN_NUM_TDCS_PAGES: u32 = 6;
/// Maximum number of TDCS pages (`MAX_NUM_TDCS_PAGES`).
pub const MAX_NUM_TDCS_PAGES: u32 = 9;

impl Default for TdxModuleConfig {
    fn default() -> Self {
        const ALL: u32 = u32::MAX;
        let cpuid = vec![
            // Leaf 0: max basic leaf 0xD, "GenuineIntel".
            CpuidLeafConfig::fixed(
                0,
                CPUID_NO_SUBLEAF,
                [0xD, 0x756e_6547, 0x6c65_746e, 0x4965_6e69],
            ),
            CpuidLeafConfig {
                leaf: 1,
                subleaf: CPUID_NO_SUBLEAF,
                native: [0x0008_06F8, 0x0080_0800, 0xF7FA_3223, 0x1F8B_FBFF],
                config_direct: [0; 4],
                allow_direct: [0, 0, 0x0000_0002, 0x0000_0000],
            },
            CpuidLeafConfig {
                leaf: 7,
                subleaf: 0,
                native: [0x2, 0xF3BF_FBFB, 0x1B41_7FFE, 0xFFDC_4412],
                config_direct: [0; 4],
                allow_direct: [0, 0x0000_0810 | 0x0020_0000, 0x0000_0020, 0],
            },
            CpuidLeafConfig {
                leaf: 7,
                subleaf: 1,
                native: [0x0000_1C30, 0, 0, 0],
                config_direct: [0; 4],
                allow_direct: [0x0000_0010, 0, 0, 0],
            },
            CpuidLeafConfig {
                leaf: 0xD,
                subleaf: 0,
                native: [0x0006_02E7, 0x2B00, 0x2B00, 0],
                config_direct: [0; 4],
                allow_direct: [0; 4],
            },
            CpuidLeafConfig {
                leaf: 0xD,
                subleaf: 1,
                native: [0x1F, 0, 0x0001_9900, 0],
                config_direct: [0; 4],
                allow_direct: [0x0000_0010, 0, 0, 0],
            },
            CpuidLeafConfig::fixed(0x8000_0000, CPUID_NO_SUBLEAF, [0x8000_0008, 0, 0, 0]),
            CpuidLeafConfig {
                leaf: 0x8000_0001,
                subleaf: CPUID_NO_SUBLEAF,
                native: [0, 0, 0x0000_0121, 0x2C10_0800],
                config_direct: [0; 4],
                allow_direct: [0, 0, 0x0000_0100, 0],
            },
            CpuidLeafConfig {
                leaf: 0x8000_0008,
                subleaf: CPUID_NO_SUBLEAF,
                native: [0x0000_3034, 0, 0, 0],
                config_direct: [0x00FF_0000, 0, 0, 0],
                allow_direct: [0, ALL & 0x200, 0, 0],
            },
        ];
        Self {
            attributes_fixed0: TDX_TD_ATTR_DEBUG
                | TDX_TD_ATTR_SEPT_VE_DISABLE
                | TDX_TD_ATTR_PKS
                | TDX_TD_ATTR_KL
                | TDX_TD_ATTR_PERFMON,
            attributes_fixed1: 0,
            xfam_fixed0: 0x0006_02FF,
            xfam_fixed1: 0x0000_0003,
            max_vcpus_per_td: 576,
            ept_5level: true,
            cpuid,
            num_packages: 1,
            num_private_hkids: 16,
            tdvps_pages: 6,
            cpusvn: [0; 16],
            tee_tcb_svn: [3, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            mrseam: [0x5e; 48],
            mrsignerseam: [0; 48],
            seam_attributes: 0,
            seed: [0; 32],
        }
    }
}

/// The validated, module-internal form of TD_PARAMS (what TDH.MNG.INIT stores in the TDCS).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TdConfig {
    /// ATTRIBUTES.
    pub attributes: u64,
    /// XFAM.
    pub xfam: u64,
    /// MAX_VCPUS.
    pub max_vcpus: u16,
    /// GPAW: `true` for 52-bit guest physical addresses.
    pub gpaw52: bool,
    /// Secure-EPT levels (4 or 5).
    pub ept_levels: u8,
    /// TSC frequency in 25 MHz units.
    pub tsc_frequency: u16,
    /// MRCONFIGID.
    pub mr_config_id: [u8; 48],
    /// MROWNER.
    pub mr_owner: [u8; 48],
    /// MROWNERCONFIG.
    pub mr_owner_config: [u8; 48],
    /// The TD's virtual CPUID: (leaf, sub-leaf or [`CPUID_NO_SUBLEAF`], EAX..EDX).
    pub cpuid: Vec<(u32, u32, [u32; 4])>,
}

impl TdConfig {
    /// The shared-GPA bit of this TD: bit 51 with GPAW 52, bit 47 otherwise.
    pub fn shared_bit(&self) -> u64 {
        if self.gpaw52 { 1 << 51 } else { 1 << 47 }
    }
}

fn invalid(op: OperandId) -> TdxStatus {
    TdxStatus::OPERAND_INVALID.with_operand(op)
}

impl TdxModuleConfig {
    /// The configurable leaves, in CPUID_CONFIG order.
    pub fn cpuid_configs(&self) -> impl Iterator<Item = &CpuidLeafConfig> {
        self.cpuid
            .iter()
            .filter(|c| c.is_configurable())
            .take(MAX_CPUID_CONFIGS)
    }

    /// Number of configurable leaves (TDSYSINFO `NUM_CPUID_CONFIG`).
    pub fn num_cpuid_config(&self) -> usize {
        self.cpuid_configs().count()
    }

    /// Validates `p` as TDH.MNG.INIT does, in the module's order. On success returns the
    /// TD configuration; on failure `(status, rcx)` where `rcx` is the CPUID leaf/sub-leaf
    /// (`subleaf << 32 | leaf`) for a CPUID_CONFIG error and 0 otherwise.
    ///
    /// # Errors
    /// `TDX_OPERAND_INVALID` plus the operand id of the first bad field.
    pub fn validate(&self, p: &TdParams) -> Result<TdConfig, (TdxStatus, u64)> {
        let attributes = p.attributes.get();
        if attributes & !self.attributes_fixed0 != 0
            || attributes & self.attributes_fixed1 != self.attributes_fixed1
        {
            return Err((invalid(OperandId::ATTRIBUTES), 0));
        }
        let xfam = p.xfam.get();
        if xfam & !self.xfam_fixed0 != 0 || xfam & self.xfam_fixed1 != self.xfam_fixed1 {
            return Err((invalid(OperandId::XFAM), 0));
        }
        let max_vcpus = p.max_vcpus.get();
        if max_vcpus == 0 || max_vcpus > self.max_vcpus_per_td {
            return Err((invalid(OperandId::MAX_VCPUS), 0));
        }
        if p.num_l2_vms > MAX_L2_VMS {
            return Err((invalid(OperandId::NUM_L2_VMS), 0));
        }
        if p.reserved_0 != [0; 4] {
            return Err((invalid(OperandId::RDX), 0));
        }
        let flags = p.config_flags.get();
        let known = TDX_CONFIG_FLAGS_MAX_GPAW
            | TDX_CONFIG_FLAGS_FLEXIBLE_PENDING_VE
            | TDX_CONFIG_FLAGS_NO_RBP_MOD;
        if flags & !known != 0 || (flags & TDX_CONFIG_FLAGS_MAX_GPAW != 0 && !self.ept_5level) {
            return Err((invalid(OperandId::EXEC_CONTROLS), 0));
        }
        let gpaw52 = flags & TDX_CONFIG_FLAGS_MAX_GPAW != 0;
        let eptp = p.eptp_controls.get();
        let pwl = (eptp >> 3) & 7;
        let ept_ok = eptp & !0x3F == 0
            && eptp & 7 == VMX_EPTP_MT_WB
            && (pwl == 3 || (pwl == 4 && self.ept_5level))
            && (!gpaw52 || pwl == 4);
        if !ept_ok {
            return Err((invalid(OperandId::EPTP_CONTROLS), 0));
        }
        let tsc_frequency = p.tsc_frequency.get();
        if !(TSC_FREQUENCY_MIN..=TSC_FREQUENCY_MAX).contains(&tsc_frequency) {
            return Err((invalid(OperandId::TSC_FREQUENCY), 0));
        }
        if p.reserved_1.iter().any(|&b| b != 0)
            || p.msr_config_ctls & !1 != 0
            || p.reserved_2 != [0; 24]
        {
            return Err((invalid(OperandId::RDX), 0));
        }
        let mut cpuid = Vec::with_capacity(self.cpuid.len());
        let mut slot = 0usize;
        for c in &self.cpuid {
            let mut v = c.native;
            if c.is_configurable() && slot < MAX_CPUID_CONFIGS {
                let cfg = p
                    .cpuid_config_vals
                    .get(slot)
                    .map(CpuidConfigValue::regs)
                    .unwrap_or_default();
                slot += 1;
                for i in 0..4 {
                    if cfg[i] & !(c.config_direct[i] | c.allow_direct[i]) != 0 {
                        let rcx = (u64::from(c.subleaf) << 32) | u64::from(c.leaf);
                        return Err((invalid(OperandId::CPUID_CONFIG), rcx));
                    }
                    v[i] = (v[i] & !c.config_direct[i]) | (cfg[i] & c.config_direct[i]);
                    v[i] &= cfg[i] | !c.allow_direct[i];
                }
            }
            cpuid.push((c.leaf, c.subleaf, v));
        }
        if p.cpuid_config_vals
            .iter()
            .skip(slot)
            .any(|v| v.regs() != [0; 4])
        {
            return Err((invalid(OperandId::RDX), 0));
        }
        Ok(TdConfig {
            attributes,
            xfam,
            max_vcpus,
            gpaw52,
            ept_levels: if pwl == 4 { 5 } else { 4 },
            tsc_frequency,
            mr_config_id: p.mr_config_id,
            mr_owner: p.mr_owner,
            mr_owner_config: p.mr_owner_config,
            cpuid,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> TdParams {
        TdParams {
            xfam: 3.into(),
            max_vcpus: 4.into(),
            eptp_controls: (VMX_EPTP_MT_WB | VMX_EPTP_PWL_4).into(),
            tsc_frequency: 100.into(),
            ..TdParams::default()
        }
    }

    #[test]
    fn field_checks_in_order() {
        let cfg = TdxModuleConfig::default();
        assert!(cfg.validate(&good()).is_ok());
        let op = |p: &TdParams| cfg.validate(p).map(|_| ()).map_err(|(s, _)| s.operand_id());
        let mut p = good();
        p.attributes = (1u64 << 5).into();
        p.max_vcpus = 0.into(); // a later field is bad too: ATTRIBUTES is reported first
        assert_eq!(op(&p), Err(64));
        let mut p = good();
        p.xfam = 1.into(); // fixed1 (x87|SSE) missing
        assert_eq!(op(&p), Err(65));
        let mut p = good();
        p.max_vcpus = 0.into();
        assert_eq!(op(&p), Err(68));
        let mut p = good();
        p.num_l2_vms = 4;
        assert_eq!(op(&p), Err(71));
        let mut p = good();
        p.reserved_0[3] = 1;
        assert_eq!(op(&p), Err(2));
        let mut p = good();
        p.config_flags = (1u64 << 3).into();
        assert_eq!(op(&p), Err(66));
        let mut p = good();
        p.eptp_controls = (VMX_EPTP_MT_WB | (2 << 3)).into();
        assert_eq!(op(&p), Err(67));
        let mut p = good();
        p.config_flags = TDX_CONFIG_FLAGS_MAX_GPAW.into(); // GPAW 52 needs 5-level EPT
        assert_eq!(op(&p), Err(67));
        for bad in [3u16, 401] {
            let mut p = good();
            p.tsc_frequency = bad.into();
            assert_eq!(op(&p), Err(70));
        }
        for ok in [4u16, 400] {
            let mut p = good();
            p.tsc_frequency = ok.into();
            assert_eq!(op(&p), Ok(()));
        }
        let mut p = good();
        p.reserved_1[37] = 1;
        assert_eq!(op(&p), Err(2));
        let mut p = good();
        p.reserved_2[0] = 1;
        assert_eq!(op(&p), Err(2));
        let mut p = good();
        p.cpuid_config_vals[47].edx = 1.into();
        assert_eq!(op(&p), Err(2));
    }

    #[test]
    fn cpuid_config_bits() {
        let cfg = TdxModuleConfig::default();
        // Leaf 1 is the first configurable leaf; ECX bit 1 is ALLOW_DIRECT, bit 0 is not.
        let mut p = good();
        p.cpuid_config_vals[0].ecx = 1.into();
        let (s, rcx) = cfg.validate(&p).unwrap_err();
        assert_eq!(
            s,
            TdxStatus::OPERAND_INVALID.with_operand(OperandId::CPUID_CONFIG)
        );
        assert_eq!(rcx, (u64::from(CPUID_NO_SUBLEAF) << 32) | 1);
        // Allowed bit left 0 → cleared in the virtual value; set → native.
        let leaf1 = |td: &TdConfig| td.cpuid.iter().find(|c| c.0 == 1).unwrap().2;
        let td = cfg.validate(&good()).unwrap();
        assert_eq!(leaf1(&td)[2] & 2, 0);
        let mut p = good();
        p.cpuid_config_vals[0].ecx = 2.into();
        let td = cfg.validate(&p).unwrap();
        assert_eq!(leaf1(&td)[2] & 2, 2);
    }
}
