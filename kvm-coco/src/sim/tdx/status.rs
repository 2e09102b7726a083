//! SEAMCALL completion status: [`TdxStatus`], the TDX module's `RAX` on return.
//!
//! A status is a 64-bit value: bit 63 is set for errors, bit 62 for non-recoverable
//! errors, bits 47:40 are the class, and bits 31:0 carry details, most often the
//! **operand id** of the offending operand (`status + operand_id`: RAX 0, RCX 1, RDX 2,
//! R8 8, R9 9, or a TD_PARAMS field id from 64 up). KVM compares `status & 0xFFFF_FFFF_0000_0000`
//! ([`TdxStatus::code`]) with the named codes.
//!
//! Values: TDX module 1.5 `tdx_api_defs.h` / `error_codes.h` as recorded in the project's
//! firmware facts (§5.4).

use std::fmt;

/// A TDX module SEAMCALL status (`RAX` after the call).
///
/// ```
/// use kvm_coco::sim::tdx::{TdxStatus, OperandId};
/// let s = TdxStatus::OPERAND_INVALID.with_operand(OperandId::RCX);
/// assert_eq!(s.raw(), 0xC000_0100_0000_0001);
/// assert_eq!(s.code(), TdxStatus::OPERAND_INVALID);
/// assert_eq!(s.operand_id(), 1);
/// assert_eq!(s.to_string(), "TDX_OPERAND_INVALID (0xc000010000000001, operand RCX)");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TdxStatus(pub u64);

/// Operand ids appended to a status (`api_error_with_operand_id`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OperandId(pub u32);

impl OperandId {
    /// RAX (the leaf number).
    pub const RAX: Self = Self(0);
    /// RCX.
    pub const RCX: Self = Self(1);
    /// RDX.
    pub const RDX: Self = Self(2);
    /// R8.
    pub const R8: Self = Self(8);
    /// R9.
    pub const R9: Self = Self(9);
    /// TD_PARAMS.ATTRIBUTES.
    pub const ATTRIBUTES: Self = Self(64);
    /// TD_PARAMS.XFAM.
    pub const XFAM: Self = Self(65);
    /// TD_PARAMS.CONFIG_FLAGS (exec controls).
    pub const EXEC_CONTROLS: Self = Self(66);
    /// TD_PARAMS.EPTP_CONTROLS.
    pub const EPTP_CONTROLS: Self = Self(67);
    /// TD_PARAMS.MAX_VCPUS.
    pub const MAX_VCPUS: Self = Self(68);
    /// TD_PARAMS.CPUID_CONFIG (the leaf/sub-leaf is returned in RCX).
    pub const CPUID_CONFIG: Self = Self(69);
    /// TD_PARAMS.TSC_FREQUENCY.
    pub const TSC_FREQUENCY: Self = Self(70);
    /// TD_PARAMS.NUM_L2_VMS.
    pub const NUM_L2_VMS: Self = Self(71);

    /// The register or field name of a known id.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0 => "RAX",
            1 => "RCX",
            2 => "RDX",
            3 => "RBX",
            5 => "RBP",
            6 => "RSI",
            7 => "RDI",
            8 => "R8",
            9 => "R9",
            10 => "R10",
            11 => "R11",
            12 => "R12",
            13 => "R13",
            14 => "R14",
            15 => "R15",
            64 => "ATTRIBUTES",
            65 => "XFAM",
            66 => "EXEC_CONTROLS",
            67 => "EPTP_CONTROLS",
            68 => "MAX_VCPUS",
            69 => "CPUID_CONFIG",
            70 => "TSC_FREQUENCY",
            71 => "NUM_L2_VMS",
            _ => return None,
        })
    }
}

impl TdxStatus {
    /// `TDX_SUCCESS`.
    pub const SUCCESS: Self = Self(0);
    /// `TDX_OPERAND_INVALID`: an operand (see [`operand_id`](Self::operand_id)) is invalid.
    pub const OPERAND_INVALID: Self = Self(0xC000_0100_0000_0000);
    /// `TDX_OPERAND_BUSY`: a contended resource; KVM maps it to `-EBUSY` (never produced by
    /// the single-threaded model, listed for decoding).
    pub const OPERAND_BUSY: Self = Self(0x8000_0200_0000_0000);
    /// `TDX_TDCS_NOT_ALLOCATED`: fewer than the minimum number of TDCS pages were added.
    pub const TDCS_NOT_ALLOCATED: Self = Self(0xC000_0606_0000_0000);
    /// `TDX_LIFECYCLE_STATE_INCORRECT`: the TDR lifecycle state forbids the call.
    pub const LIFECYCLE_STATE_INCORRECT: Self = Self(0xC000_0607_0000_0000);
    /// `TDX_OP_STATE_INCORRECT`: the TDCS OP_STATE forbids the call.
    pub const OP_STATE_INCORRECT: Self = Self(0xC000_0608_0000_0000);
    /// `TDX_NO_VCPUS`: TDH.MR.FINALIZE without an initialized vCPU.
    pub const NO_VCPUS: Self = Self(0xC000_0609_0000_0000);
    /// `TDX_TDCX_NUM_INCORRECT`: too many (or too few) TDCS / TDVPS pages.
    pub const TDCX_NUM_INCORRECT: Self = Self(0xC000_0610_0000_0000);
    /// `TDX_VCPU_STATE_INCORRECT`: e.g. TDH.VP.INIT on an initialized vCPU.
    pub const VCPU_STATE_INCORRECT: Self = Self(0xC000_0700_0000_0000);
    /// `TDX_MAX_VCPUS_EXCEEDED`: TDH.VP.INIT beyond TD_PARAMS.MAX_VCPUS.
    pub const MAX_VCPUS_EXCEEDED: Self = Self(0xC000_0705_0000_0000);
    /// `TDX_TD_KEYS_NOT_CONFIGURED`: the TD's key is not configured on every package.
    pub const TD_KEYS_NOT_CONFIGURED: Self = Self(0x8000_0810_0000_0000);
    /// `TDX_KEY_CONFIGURED`: TDH.MNG.KEY.CONFIG on a package that already has the key.
    pub const KEY_CONFIGURED: Self = Self(0x0000_0815_0000_0000);
    /// `TDX_HKID_NOT_FREE`: TDH.MNG.CREATE with an HKID already assigned to a TD.
    pub const HKID_NOT_FREE: Self = Self(0xC000_0820_0000_0000);
    /// `TDX_EPT_WALK_FAILED`: a Secure-EPT parent level is missing.
    pub const EPT_WALK_FAILED: Self = Self(0xC000_0B00_0000_0000);
    /// `TDX_EPT_ENTRY_NOT_PRESENT`: the Secure-EPT leaf is not mapped.
    pub const EPT_ENTRY_NOT_PRESENT: Self = Self(0xC000_0B03_0000_0000);
    /// `TDX_EPT_ENTRY_STATE_INCORRECT`: the Secure-EPT entry is not in a state that allows
    /// the call (e.g. TDH.MEM.PAGE.ADD on a mapped GPA).
    pub const EPT_ENTRY_STATE_INCORRECT: Self = Self(0xC000_0B0D_0000_0000);

    /// KVM's `TDX_SEAMCALL_STATUS_MASK`: the status code without details.
    pub const STATUS_MASK: u64 = 0xFFFF_FFFF_0000_0000;

    const NAMES: [(Self, &'static str); 16] = [
        (Self::SUCCESS, "TDX_SUCCESS"),
        (Self::OPERAND_INVALID, "TDX_OPERAND_INVALID"),
        (Self::OPERAND_BUSY, "TDX_OPERAND_BUSY"),
        (Self::TDCS_NOT_ALLOCATED, "TDX_TDCS_NOT_ALLOCATED"),
        (
            Self::LIFECYCLE_STATE_INCORRECT,
            "TDX_LIFECYCLE_STATE_INCORRECT",
        ),
        (Self::OP_STATE_INCORRECT, "TDX_OP_STATE_INCORRECT"),
        (Self::NO_VCPUS, "TDX_NO_VCPUS"),
        (Self::TDCX_NUM_INCORRECT, "TDX_TDCX_NUM_INCORRECT"),
        (Self::VCPU_STATE_INCORRECT, "TDX_VCPU_STATE_INCORRECT"),
        (Self::MAX_VCPUS_EXCEEDED, "TDX_MAX_VCPUS_EXCEEDED"),
        (Self::TD_KEYS_NOT_CONFIGURED, "TDX_TD_KEYS_NOT_CONFIGURED"),
        (Self::KEY_CONFIGURED, "TDX_KEY_CONFIGURED"),
        (Self::HKID_NOT_FREE, "TDX_HKID_NOT_FREE"),
        (Self::EPT_WALK_FAILED, "TDX_EPT_WALK_FAILED"),
        (Self::EPT_ENTRY_NOT_PRESENT, "TDX_EPT_ENTRY_NOT_PRESENT"),
        (
            Self::EPT_ENTRY_STATE_INCORRECT,
            "TDX_EPT_ENTRY_STATE_INCORRECT",
        ),
    ];

    /// The raw 64-bit value.
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// This status with `operand` in the detail bits (`api_error_with_operand_id`).
    pub const fn with_operand(self, operand: OperandId) -> Self {
        Self(self.0 | operand.0 as u64)
    }

    /// The status code without details (`raw & 0xFFFF_FFFF_0000_0000`).
    pub const fn code(self) -> Self {
        Self(self.0 & Self::STATUS_MASK)
    }

    /// The detail bits 31:0; for most errors, the operand id.
    pub const fn operand_id(self) -> u32 {
        self.0 as u32
    }

    /// The class (bits 47:40), e.g. 0x06 for TD-state errors, 0x0B for Secure-EPT errors.
    pub const fn class(self) -> u8 {
        (self.0 >> 40) as u8
    }

    /// Bit 63: the call failed.
    pub const fn is_error(self) -> bool {
        self.0 >> 63 != 0
    }

    /// Bit 62: the failure is not recoverable by retrying.
    pub const fn is_non_recoverable(self) -> bool {
        (self.0 >> 62) & 1 != 0
    }

    /// Whether this is `TDX_SUCCESS`.
    pub const fn is_success(self) -> bool {
        self.0 == 0
    }

    /// The name of the status code, if it is one the model knows.
    pub fn name(self) -> Option<&'static str> {
        let code = self.code();
        Self::NAMES
            .iter()
            .find(|(s, _)| *s == code)
            .map(|(_, n)| *n)
    }
}

impl fmt::Display for TdxStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name().unwrap_or("TDX status"))?;
        write!(f, " ({:#018x}", self.0)?;
        let op = self.operand_id();
        if op != 0 || (self.is_error() && self.code() == Self::OPERAND_INVALID) {
            match OperandId(op).name() {
                Some(n) => write!(f, ", operand {n}")?,
                None => write!(f, ", details {op:#x}")?,
            }
        }
        f.write_str(")")
    }
}

impl fmt::Debug for TdxStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TdxStatus({self})")
    }
}

impl std::error::Error for TdxStatus {}

impl From<TdxStatus> for u64 {
    fn from(s: TdxStatus) -> Self {
        s.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_matches_facts() {
        // facts §5.4: status + operand id; PAGE.ADD on a mapped GPA → 0xC0000B0D00000000+RCX.
        let s = TdxStatus::EPT_ENTRY_STATE_INCORRECT.with_operand(OperandId::RCX);
        assert_eq!(s.raw(), 0xC000_0B0D_0000_0001);
        assert_eq!(s.class(), 0x0B);
        assert!(s.is_error() && s.is_non_recoverable());
        assert_eq!(s.name(), Some("TDX_EPT_ENTRY_STATE_INCORRECT"));
        assert!(!TdxStatus::KEY_CONFIGURED.is_error());
        assert!(TdxStatus::TD_KEYS_NOT_CONFIGURED.is_error());
        assert!(!TdxStatus::TD_KEYS_NOT_CONFIGURED.is_non_recoverable());
        assert_eq!(
            TdxStatus(0xC000_0100_0000_0040).to_string(),
            "TDX_OPERAND_INVALID (0xc000010000000040, operand ATTRIBUTES)"
        );
        assert_eq!(TdxStatus(0x1234_0000_0000_0000).name(), None);
    }
}
