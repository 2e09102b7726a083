//! SEV-SNP launch: `struct kvm_sev_snp_launch_{start,update,finish}`, the page types, the
//! ID-block sizes and the 64-bit SNP guest policy.
//!
//! The SNP flow on a [`crate::KVM_X86_SNP_VM`]: `KVM_SEV_INIT2` → (optionally
//! [`crate::KVM_SEV_SNP_ENABLE_REQ_CERTS`], before any vCPU) → [`crate::KVM_SEV_SNP_LAUNCH_START`]
//! → [`crate::KVM_SEV_SNP_LAUNCH_UPDATE`] for every initial page (guest_memfd-backed, already
//! set PRIVATE with `KVM_SET_MEMORY_ATTRIBUTES`) → create vCPUs and set their registers →
//! [`crate::KVM_SEV_SNP_LAUNCH_FINISH`], which also encrypts and measures every VMSA.
//!
//! Once the VM is SNP-active every SEV command with an id below 100 gives `-EPERM`.

use crate::error::PolicyError;

uapi_consts! { CONSTANTS;
    /// `KVM_SEV_SNP_ID_BLOCK_SIZE` (96): bytes KVM copies from
    /// [`KvmSevSnpLaunchFinish::id_block_uaddr`].
    pub const KVM_SEV_SNP_ID_BLOCK_SIZE: u32 = 96;
    /// `KVM_SEV_SNP_ID_AUTH_SIZE` (4096): bytes KVM copies from
    /// [`KvmSevSnpLaunchFinish::id_auth_uaddr`].
    pub const KVM_SEV_SNP_ID_AUTH_SIZE: u32 = 4096;
    /// `KVM_SEV_SNP_FINISH_DATA_SIZE` (32): size of [`KvmSevSnpLaunchFinish::host_data`].
    pub const KVM_SEV_SNP_FINISH_DATA_SIZE: u32 = 32;
    /// `KVM_SEV_PAGE_TYPE_INVALID` (0): never valid in a launch update (added after 6.12).
    pub const KVM_SEV_PAGE_TYPE_INVALID: u32 = 0x0;
    /// `KVM_SEV_SNP_PAGE_TYPE_NORMAL` (1): contents are encrypted and measured.
    pub const KVM_SEV_SNP_PAGE_TYPE_NORMAL: u32 = 0x1;
    /// `KVM_SEV_SNP_PAGE_TYPE_ZERO` (3): zero pages, measured as such; `uaddr` is ignored.
    pub const KVM_SEV_SNP_PAGE_TYPE_ZERO: u32 = 0x3;
    /// `KVM_SEV_SNP_PAGE_TYPE_UNMEASURED` (4): encrypted, contents not measured.
    pub const KVM_SEV_SNP_PAGE_TYPE_UNMEASURED: u32 = 0x4;
    /// `KVM_SEV_SNP_PAGE_TYPE_SECRETS` (5): the firmware fills the secrets page.
    pub const KVM_SEV_SNP_PAGE_TYPE_SECRETS: u32 = 0x5;
    /// `KVM_SEV_SNP_PAGE_TYPE_CPUID` (6): the CPUID page; the firmware validates it. If it
    /// rejects it (`SEV_RET_INVALID_PARAM`), KVM copies the corrected page **back into the
    /// user source buffer**.
    pub const KVM_SEV_SNP_PAGE_TYPE_CPUID: u32 = 0x6;
}

/// An SNP launch page type ([`KvmSevSnpLaunchUpdate::type`]); values mirror the firmware's
/// `SNP_PAGE_TYPE_*`. Value 2 (VMSA) exists in firmware but is used only by KVM itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum SnpPageType {
    /// [`KVM_SEV_SNP_PAGE_TYPE_NORMAL`]
    Normal = KVM_SEV_SNP_PAGE_TYPE_NORMAL as u8,
    /// [`KVM_SEV_SNP_PAGE_TYPE_ZERO`]
    Zero = KVM_SEV_SNP_PAGE_TYPE_ZERO as u8,
    /// [`KVM_SEV_SNP_PAGE_TYPE_UNMEASURED`]
    Unmeasured = KVM_SEV_SNP_PAGE_TYPE_UNMEASURED as u8,
    /// [`KVM_SEV_SNP_PAGE_TYPE_SECRETS`]
    Secrets = KVM_SEV_SNP_PAGE_TYPE_SECRETS as u8,
    /// [`KVM_SEV_SNP_PAGE_TYPE_CPUID`]
    Cpuid = KVM_SEV_SNP_PAGE_TYPE_CPUID as u8,
}

impl SnpPageType {
    /// Decodes a page type KVM accepts (1, 3, 4, 5, 6); anything else is `None` (`-EINVAL`).
    pub const fn from_raw(raw: u8) -> Option<Self> {
        match raw as u32 {
            KVM_SEV_SNP_PAGE_TYPE_NORMAL => Some(Self::Normal),
            KVM_SEV_SNP_PAGE_TYPE_ZERO => Some(Self::Zero),
            KVM_SEV_SNP_PAGE_TYPE_UNMEASURED => Some(Self::Unmeasured),
            KVM_SEV_SNP_PAGE_TYPE_SECRETS => Some(Self::Secrets),
            KVM_SEV_SNP_PAGE_TYPE_CPUID => Some(Self::Cpuid),
            _ => None,
        }
    }

    /// The raw value.
    pub const fn raw(self) -> u8 {
        self as u8
    }
}

uapi_structs! { STRUCTS;
    /// [`crate::KVM_SEV_SNP_LAUNCH_START`] argument (`struct kvm_sev_snp_launch_start`,
    /// 64 bytes).
    ///
    /// KVM refuses (`-EINVAL`) a policy with bits outside the host's supported mask or
    /// without bit 17 ([`SnpPolicy::validate`]), non-zero `flags`, or a second start. A
    /// failing firmware GCTX_CREATE gives **`-ENOTTY`** (not `-EIO`). Uses and remembers
    /// [`crate::KvmSevCmd::sev_fd`].
    #[repr(C)]
    pub struct KvmSevSnpLaunchStart as "kvm_sev_snp_launch_start" {
        /// The 64-bit SNP guest policy ([`SnpPolicy`]).
        pub policy: u64,
        /// Guest OS-visible workarounds, passed to the firmware.
        pub gosvw: [u8; 16],
        /// Must be 0.
        pub flags: u16,
        /// Not checked.
        pub pad0: [u8; 6],
        /// Not checked.
        pub pad1: [u64; 4],
    }

    /// [`crate::KVM_SEV_SNP_LAUNCH_UPDATE`] argument (`struct kvm_sev_snp_launch_update`,
    /// 64 bytes, **in/out**).
    ///
    /// `len` must be a non-zero multiple of 4096, `uaddr` non-zero and 4 KiB-aligned unless
    /// the type is ZERO, `flags` 0, and `gfn_start` must lie in a guest_memfd memslot whose
    /// range is already PRIVATE. On success KVM may have processed only part of the range:
    /// it advances `gfn_start` (and `uaddr`, except for ZERO) and reduces `len`, so **call
    /// again until `len == 0`**. If nothing could be processed the result is `-EIO` (the
    /// kernel documentation's `-EAGAIN` is not what 7.3 returns).
    #[repr(C)]
    pub struct KvmSevSnpLaunchUpdate as "kvm_sev_snp_launch_update" {
        /// First guest frame number of the range.
        pub gfn_start: u64,
        /// User address of the source contents.
        pub uaddr: u64,
        /// Length in bytes (multiple of 4096).
        pub len: u64,
        /// Page type ([`SnpPageType`]).
        pub r#type: u8,
        /// Padding.
        pub pad0: u8,
        /// Must be 0.
        pub flags: u16,
        /// Padding.
        pub pad1: u32,
        /// Reserved.
        pub pad2: [u64; 4],
    }

    /// [`crate::KVM_SEV_SNP_LAUNCH_FINISH`] argument (`struct kvm_sev_snp_launch_finish`,
    /// 88 bytes).
    ///
    /// **Trap:** `host_data` sits at the odd offset 19, `flags` at 54.
    /// `id_block_uaddr` is read (96 bytes) only when `id_block_en != 0`, together with
    /// 4096 bytes from `id_auth_uaddr`; `auth_key_en` counts only with `id_block_en`.
    #[repr(C)]
    pub struct KvmSevSnpLaunchFinish as "kvm_sev_snp_launch_finish" {
        /// User address of the 96-byte ID block.
        pub id_block_uaddr: u64,
        /// User address of the 4096-byte ID authentication structure.
        pub id_auth_uaddr: u64,
        /// Non-zero: use the ID block.
        pub id_block_en: u8,
        /// Non-zero: the ID auth contains an author key.
        pub auth_key_en: u8,
        /// Non-zero: forbid VCEK-signed reports (passed through).
        pub vcek_disabled: u8,
        /// Host data copied verbatim into attestation reports (offset 19).
        pub host_data: [u8; 32],
        /// Not checked.
        pub pad0: [u8; 3],
        /// Must be 0.
        pub flags: u16,
        /// Not checked.
        pub pad1: [u64; 4],
    }
}

impl KvmSevSnpLaunchUpdate {
    /// The decoded page type, `None` if KVM would refuse it.
    pub const fn page_type(&self) -> Option<SnpPageType> {
        SnpPageType::from_raw(self.r#type)
    }
}

bitflags::bitflags! {
    /// The 64-bit SNP guest policy ([`KvmSevSnpLaunchStart::policy`]; `SNP_POLICY_MASK_*`).
    ///
    /// Bits 7:0 are the minimum ABI minor version, bits 15:8 the major version
    /// ([`SnpPolicy::abi_major`]). Bit 17 must be one.
    ///
    /// ```
    /// use kvm_coco_uapi::{PolicyError, SnpPolicy};
    /// let p = SnpPolicy::RSVD_MBO | SnpPolicy::SMT;
    /// assert_eq!(p.bits(), 0x30000);
    /// assert!(p.validate(SnpPolicy::KVM_SNP_POLICY_MASK_VALID).is_ok());
    /// assert_eq!(SnpPolicy::SMT.validate(u64::MAX), Err(PolicyError::MustBeOne { bit: 17 }));
    /// ```
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub struct SnpPolicy: u64 {
        /// Bit 16: SMT may be enabled on the host.
        const SMT = 1 << 16;
        /// Bit 17: reserved, **must be one** (`-EINVAL` otherwise).
        const RSVD_MBO = 1 << 17;
        /// Bit 18: a migration agent may be associated. KVM 7.3 does **not** support it.
        const MIGRATE_MA = 1 << 18;
        /// Bit 19: debugging is allowed.
        const DEBUG = 1 << 19;
        /// Bit 20: the guest may be activated on one socket only.
        const SINGLE_SOCKET = 1 << 20;
        /// Bit 21: CXL may be used for guest memory (firmware feature dependent).
        const CXL_ALLOW = 1 << 21;
        /// Bit 22: AES-256-XTS memory encryption is required.
        const MEM_AES_256_XTS = 1 << 22;
        /// Bit 23: RAPL must be disabled.
        const RAPL_DIS = 1 << 23;
        /// Bit 24: ciphertext hiding for DRAM is required.
        const CIPHERTEXT_HIDING_DRAM = 1 << 24;
        /// Bit 25: page swap is disabled (firmware API ≥ 1.58).
        const PAGE_SWAP_DISABLE = 1 << 25;
    }
}

impl SnpPolicy {
    /// Bits 7:0: minimum ABI minor version.
    pub const ABI_MINOR_MASK: u64 = 0xFF;
    /// Bits 15:8: minimum ABI major version.
    pub const ABI_MAJOR_MASK: u64 = 0xFF00;
    /// The bit number of [`SnpPolicy::RSVD_MBO`].
    pub const RSVD_MBO_BIT: u32 = 17;
    /// `SNP_POLICY_MASK_BASE` (0x1FFFFF, kernel-internal): bits 20:0, the base the PSP
    /// driver starts from.
    pub const SNP_POLICY_MASK_BASE: u64 = 0x1F_FFFF;
    /// `KVM_SNP_POLICY_MASK_VALID` (kernel-internal, `svm/sev.c`): every bit KVM 7.3 can
    /// ever accept: bits 25:0 except MIGRATE_MA (18). The host's actual mask
    /// ([`crate::KVM_X86_SNP_POLICY_BITS`]) is this ANDed with what the firmware supports.
    pub const KVM_SNP_POLICY_MASK_VALID: u64 = 0x03FF_FFFF & !(1 << 18);

    /// Minimum ABI major version (bits 15:8).
    pub const fn abi_major(self) -> u8 {
        (self.bits() >> 8) as u8
    }

    /// Minimum ABI minor version (bits 7:0).
    pub const fn abi_minor(self) -> u8 {
        self.bits() as u8
    }

    /// The same policy with the minimum ABI version replaced.
    pub const fn with_abi_version(self, major: u8, minor: u8) -> Self {
        let rest = self.bits() & !(Self::ABI_MAJOR_MASK | Self::ABI_MINOR_MASK);
        Self::from_bits_retain(rest | (major as u64) << 8 | minor as u64)
    }

    /// The checks KVM's SNP_LAUNCH_START makes, against `supported` (the value of the
    /// [`crate::KVM_X86_SNP_POLICY_BITS`] attribute; [`Self::KVM_SNP_POLICY_MASK_VALID`]
    /// for an offline check):
    /// 1. no bit outside [`Self::KVM_SNP_POLICY_MASK_VALID`] ([`PolicyError::ReservedBits`]);
    /// 2. bit 17 set ([`PolicyError::MustBeOne`]);
    /// 3. no bit outside `supported` ([`PolicyError::Unsupported`]). The ABI version bits
    ///    are always within the supported mask of an SNP host (it is 0 without SNP).
    pub const fn validate(self, supported: u64) -> Result<(), PolicyError> {
        let bits = self.bits();
        let reserved = bits & !Self::KVM_SNP_POLICY_MASK_VALID & !(1 << 18);
        if reserved != 0 {
            return Err(PolicyError::ReservedBits { bits: reserved });
        }
        if bits & Self::RSVD_MBO.bits() == 0 {
            return Err(PolicyError::MustBeOne {
                bit: Self::RSVD_MBO_BIT,
            });
        }
        let unsupported = bits & !supported;
        if unsupported != 0 {
            return Err(PolicyError::Unsupported { bits: unsupported });
        }
        Ok(())
    }

    /// Checks that a platform running firmware ABI `major.minor` satisfies the policy's
    /// minimum ABI version.
    pub const fn check_firmware(self, major: u8, minor: u8) -> Result<(), PolicyError> {
        crate::sev::check_api(self.abi_major(), self.abi_minor(), major, minor)
    }
}

// Layout facts (linux-uapi.md §3.3).
assert_layout!(KvmSevSnpLaunchStart, 64, 8, { policy: 0, gosvw: 8, flags: 24, pad0: 26, pad1: 32 });
assert_layout!(KvmSevSnpLaunchUpdate, 64, 8, {
    gfn_start: 0, uaddr: 8, len: 16, r#type: 24, pad0: 25, flags: 26, pad1: 28, pad2: 32
});
assert_layout!(KvmSevSnpLaunchFinish, 88, 8, {
    id_block_uaddr: 0, id_auth_uaddr: 8, id_block_en: 16, auth_key_en: 17, vcek_disabled: 18,
    host_data: 19, pad0: 51, flags: 54, pad1: 56
});
