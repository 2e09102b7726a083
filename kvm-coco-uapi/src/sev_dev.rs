//! The `/dev/sev` platform-management uAPI (`include/uapi/linux/psp-sev.h`).
//!
//! `/dev/sev` is the AMD PSP driver's (ccp, `drivers/crypto/ccp/sev-dev.c`) character
//! device. It has a single ioctl, [`SEV_ISSUE_CMD`], whose argument [`SevIssueCmd`] names a
//! platform command ([`SEV_FACTORY_RESET`] … [`SNP_VLEK_LOAD`], typed as [`SevPlatformCmd`]),
//! points at that command's `sev_user_data_*` buffer and receives the firmware status
//! ([`SevRetCode`]).
//!
//! Traps:
//! * Every struct here is **packed** (`__attribute__((packed))` in the installed header,
//!   alignment 1): [`SevIssueCmd::data`] sits at the unaligned offset 4. Read fields by
//!   value; Rust refuses references to them.
//! * Commands that change platform state need the file opened for writing (`O_WRONLY` or
//!   `O_RDWR`), otherwise `-EPERM`; see [`SevPlatformCmd::needs_write`].
//! * `ioctl` returns `-1` with `errno` *and* a firmware status in `error`: both matter. A
//!   status of [`SevRetCode::NoFwCall`] means the driver failed before calling firmware.
//! * An unknown command (including [`SEV_MAX`]) gives `-EINVAL` and the struct is not
//!   copied back, so `error` keeps whatever user space put there.
//!
//! The firmware command buffers the driver builds from these (`sev_data_*`) are
//! kernel-internal and not part of this crate.

use crate::ioctl::iowr;
use core::fmt;

uapi_consts! { IOCTLS;
    /// The `/dev/sev` ioctl type byte, `'S'`.
    pub const SEV_IOC_TYPE: u32 = b'S' as u32;
    /// `_IOWR('S', 0x0, struct sev_issue_cmd)` = `0xC0105300`: the one ioctl of `/dev/sev`.
    ///
    /// Encodes size 16 (the packed [`SevIssueCmd`]). Any other request number on `/dev/sev`
    /// gives `-EINVAL`; without a PSP with SEV the device is absent or the ioctl gives
    /// `-ENODEV`.
    pub const SEV_ISSUE_CMD: u32 = iowr(SEV_IOC_TYPE, 0x0, core::mem::size_of::<SevIssueCmd>());
    /// `flags` bit 8 of [`SevUserDataStatus`]: the platform is configured so that SEV-ES
    /// guests can be launched.
    pub const SEV_STATUS_FLAGS_CONFIG_ES: u32 = 0x0100;
}

uapi_consts! { CONSTANTS;
    /// Resets the platform's persistent state (keys, certificates). No argument.
    ///
    /// Needs write access. `-EBUSY` while the platform is WORKING (guests exist); the
    /// driver shuts an INIT platform down first.
    pub const SEV_FACTORY_RESET: u32 = 0;
    /// Queries the SEV platform status into a [`SevUserDataStatus`]. Read-only access suffices.
    pub const SEV_PLATFORM_STATUS: u32 = 1;
    /// Regenerates the Platform Endorsement Key. No argument; needs write access.
    ///
    /// The driver initializes an UNINIT platform for the call and shuts it down afterwards.
    pub const SEV_PEK_GEN: u32 = 2;
    /// Generates a PEK certificate signing request into a buffer described by
    /// [`SevUserDataPekCsr`]. Needs write access.
    ///
    /// `address == 0` or `length == 0` queries the needed length (written back to `length`);
    /// a `length` above 16384 gives `-EFAULT` (not `-EINVAL`).
    pub const SEV_PEK_CSR: u32 = 3;
    /// Regenerates the Platform Diffie-Hellman key. No argument; needs write access.
    pub const SEV_PDH_GEN: u32 = 4;
    /// Exports the PDH certificate and the certificate chain ([`SevUserDataPdhCertExport`]).
    ///
    /// Any zero address or length queries both lengths; each length is limited to 16384
    /// (`-EFAULT` above). Write access is needed only when the platform is not yet INIT
    /// (the driver must initialize it).
    pub const SEV_PDH_CERT_EXPORT: u32 = 5;
    /// Imports a signed PEK certificate and the owner's OCA certificate
    /// ([`SevUserDataPekCertImport`]). Needs write access; each blob ≤ 16384 bytes
    /// (`-EINVAL` above).
    pub const SEV_PEK_CERT_IMPORT: u32 = 6;
    /// Deprecated (the kernel warns once): reads two fixed 64-byte chip ids
    /// ([`SevUserDataGetId`]). Use [`SEV_GET_ID2`]. Needs firmware API ≥ 0.16
    /// (`-ENOTSUPP` otherwise).
    pub const SEV_GET_ID: u32 = 7;
    /// Reads the chip id into a caller buffer ([`SevUserDataGetId2`]); zero address or
    /// length queries the length. Needs firmware API ≥ 0.16.
    pub const SEV_GET_ID2: u32 = 8;
    /// Queries the SNP platform status into a [`SevUserDataSnpStatus`]. `data == 0` gives
    /// `-EINVAL`. Read-only access suffices.
    pub const SNP_PLATFORM_STATUS: u32 = 9;
    /// Commits the current firmware so that it cannot be rolled back (the driver builds the
    /// firmware buffer itself; no argument). In Linux 7.3 this needs **no** write access.
    pub const SNP_COMMIT: u32 = 10;
    /// Sets the system-wide SNP configuration ([`SevUserDataSnpConfig`]): reported TCB and
    /// chip-id / chip-key masking. Needs write access; `-ENODEV` unless SNP is initialized.
    pub const SNP_SET_CONFIG: u32 = 11;
    /// Loads a wrapped VLEK hashstick ([`SevUserDataSnpVlekLoad`]). Needs write access;
    /// `-ENODEV` unless SNP is initialized; `len` must be 16 and the version 0 (`-EINVAL`).
    pub const SNP_VLEK_LOAD: u32 = 12;
    /// One past the last command. The kernel rejects `cmd > SEV_MAX` and also `SEV_MAX`
    /// itself with `-EINVAL`.
    pub const SEV_MAX: u32 = 13;
}

uapi_structs! { STRUCTS;
    /// The argument of [`SEV_ISSUE_CMD`] (`struct sev_issue_cmd`, packed, 16 bytes).
    ///
    /// After every handled command the kernel copies the whole struct back, so `error`
    /// holds the firmware status ([`SevRetCode`]) whether the ioctl succeeded or not
    /// (`-EFAULT` if that copy fails). `data` is unaligned (offset 4).
    ///
    /// ```
    /// use kvm_coco_uapi::{SevIssueCmd, SevUserDataStatus, SEV_PLATFORM_STATUS};
    /// let status = SevUserDataStatus::default();
    /// let cmd = SevIssueCmd {
    ///     cmd: SEV_PLATFORM_STATUS,
    ///     data: &status as *const _ as u64,
    ///     error: 0,
    /// };
    /// assert_eq!(core::mem::size_of_val(&cmd), 16);
    /// ```
    #[repr(C, packed)]
    pub struct SevIssueCmd as "sev_issue_cmd" {
        /// In: the platform command id ([`SEV_FACTORY_RESET`] …, see [`SevPlatformCmd`]).
        pub cmd: u32,
        /// In: user address of the command's `sev_user_data_*` struct, or 0 for commands
        /// without an argument.
        pub data: u64,
        /// Out: the firmware status, see [`SevRetCode::from_raw`].
        pub error: u32,
    }

    /// [`SEV_PLATFORM_STATUS`] output (`struct sev_user_data_status`, packed, 12 bytes).
    ///
    /// `flags` sits at the unaligned offset 3 and `guest_count` at 8.
    #[repr(C, packed)]
    pub struct SevUserDataStatus as "sev_user_data_status" {
        /// Firmware API major version.
        pub api_major: u8,
        /// Firmware API minor version.
        pub api_minor: u8,
        /// Platform state: 0 UNINIT, 1 INIT, 2 WORKING ([`SevPlatformState`]).
        pub state: u8,
        /// Platform configuration flags ([`SEV_STATUS_FLAGS_CONFIG_ES`]).
        pub flags: u32,
        /// Firmware build id within the API version.
        pub build: u8,
        /// Number of active guests.
        pub guest_count: u32,
    }

    /// [`SEV_PEK_CSR`] argument (`struct sev_user_data_pek_csr`, packed, 12 bytes).
    #[repr(C, packed)]
    pub struct SevUserDataPekCsr as "sev_user_data_pek_csr" {
        /// In: user buffer for the CSR, or 0 to query the length.
        pub address: u64,
        /// In: buffer length (≤ 16384, else `-EFAULT`); out: the CSR length.
        pub length: u32,
    }

    /// [`SEV_PEK_CERT_IMPORT`] argument (`struct sev_user_data_pek_cert_import`, packed, 24 bytes).
    #[repr(C, packed)]
    pub struct SevUserDataPekCertImport as "sev_user_data_pek_cert_import" {
        /// In: user address of the signed PEK certificate.
        pub pek_cert_address: u64,
        /// In: its length (≤ 16384).
        pub pek_cert_len: u32,
        /// In: user address of the Owner Certificate Authority certificate (offset 12).
        pub oca_cert_address: u64,
        /// In: its length (≤ 16384).
        pub oca_cert_len: u32,
    }

    /// [`SEV_PDH_CERT_EXPORT`] argument (`struct sev_user_data_pdh_cert_export`, packed, 24 bytes).
    #[repr(C, packed)]
    pub struct SevUserDataPdhCertExport as "sev_user_data_pdh_cert_export" {
        /// In: user buffer for the PDH certificate (0 queries the lengths).
        pub pdh_cert_address: u64,
        /// In: buffer length; out: certificate length.
        pub pdh_cert_len: u32,
        /// In: user buffer for the certificate chain (PEK, OCA, CEK), offset 12.
        pub cert_chain_address: u64,
        /// In: buffer length; out: chain length.
        pub cert_chain_len: u32,
    }

    /// [`SEV_GET_ID`] output (`struct sev_user_data_get_id`, 128 bytes). Deprecated.
    #[repr(C, packed)]
    pub struct SevUserDataGetId as "sev_user_data_get_id" {
        /// Id of the first socket.
        pub socket1: [u8; 64],
        /// Id of the second socket.
        pub socket2: [u8; 64],
    }

    /// [`SEV_GET_ID2`] argument (`struct sev_user_data_get_id2`, packed, 12 bytes).
    #[repr(C, packed)]
    pub struct SevUserDataGetId2 as "sev_user_data_get_id2" {
        /// In: user buffer for the id, or 0 to query the length.
        pub address: u64,
        /// In: buffer length; out: id length.
        pub length: u32,
    }

    /// [`SNP_PLATFORM_STATUS`] output (`struct sev_user_data_snp_status`, packed, 32 bytes).
    ///
    /// Two C bitfield units are stored as plain integers here ([`Self::rmp_flags`] at
    /// byte 3, [`Self::feature_flags`] at byte 8) with accessors for each bit; bits are
    /// allocated LSB first as GCC does on x86-64. Linux 6.12 knew only the first three
    /// feature bits; `feature_info`, `rapl_dis` and the ciphertext-hiding bits are newer.
    #[repr(C, packed)]
    pub struct SevUserDataSnpStatus as "sev_user_data_snp_status" {
        /// Firmware API major version.
        pub api_major: u8,
        /// Firmware API minor version.
        pub api_minor: u8,
        /// SNP platform state (0 UNINIT, 1 INIT).
        pub state: u8,
        /// C bitfields `is_rmp_initialized:1` (bit 0) and `rsvd:7`; see
        /// [`Self::is_rmp_initialized`].
        @bitfield pub rmp_flags: u8,
        /// Firmware build id.
        pub build_id: u32,
        /// C bitfields (LSB first) `mask_chip_id`, `mask_chip_key`, `vlek_en`,
        /// `feature_info`, `rapl_dis`, `ciphertext_hiding_cap`, `ciphertext_hiding_en`,
        /// `rsvd1:25`; see the accessors.
        @bitfield pub feature_flags: u32,
        /// Number of guests the firmware currently manages.
        pub guest_count: u32,
        /// The TCB version the platform runs (SPL bytes, firmware layout).
        pub current_tcb_version: u64,
        /// The TCB version put into attestation reports (may lag the current one).
        pub reported_tcb_version: u64,
    }

    /// [`SNP_SET_CONFIG`] argument (`struct sev_user_data_snp_config`, packed, 64 bytes).
    #[repr(C, packed)]
    pub struct SevUserDataSnpConfig as "sev_user_data_snp_config" {
        /// The TCB version to put in attestation reports.
        pub reported_tcb: u64,
        /// C bitfields `mask_chip_id:1` (bit 0), `mask_chip_key:1` (bit 1), `rsvd:30`;
        /// see [`Self::mask_chip_id`] / [`Self::set_mask_chip_id`].
        @bitfield pub config_flags: u32,
        /// Reserved, must be zero.
        pub rsvd1: [u8; 52],
    }

    /// [`SNP_VLEK_LOAD`] argument (`struct sev_user_data_snp_vlek_load`, packed, 16 bytes).
    ///
    /// The driver insists on `len == 16` and `vlek_wrapped_version == 0` (`-EINVAL`), then
    /// copies the 432-byte hashstick ([`SevUserDataSnpWrappedVlekHashstick`]) from
    /// `vlek_wrapped_address`. [`SevUserDataSnpVlekLoad::new`] fills both for you.
    #[repr(C, packed)]
    pub struct SevUserDataSnpVlekLoad as "sev_user_data_snp_vlek_load" {
        /// Length of this struct: must be 16.
        pub len: u32,
        /// Hashstick format version: must be 0.
        pub vlek_wrapped_version: u8,
        /// Reserved.
        pub rsvd: [u8; 3],
        /// User address of the wrapped hashstick.
        pub vlek_wrapped_address: u64,
    }

    /// The wrapped VLEK hashstick (`struct sev_user_data_snp_wrapped_vlek_hashstick`,
    /// 432 opaque bytes as delivered by AMD's Key Distribution Service).
    #[repr(C, packed)]
    pub struct SevUserDataSnpWrappedVlekHashstick as "sev_user_data_snp_wrapped_vlek_hashstick" {
        /// Opaque hashstick bytes.
        pub data: [u8; 432],
    }
}

/// Records the C bitfields of this module for the header check.
macro_rules! bitfields {
    ( $list:ident; $( $c:literal . $m:literal @ $off:literal : $sz:literal [$bit:literal ; $w:literal] ),* $(,)? ) => {
        pub(crate) const $list: &[crate::manifest::BitfieldEntry] = &[ $(
            crate::manifest::BitfieldEntry {
                c_struct: $c, member: $m, storage_offset: $off, storage_size: $sz,
                bit: $bit, width: $w,
            }
        ),* ];
    };
}

bitfields! { BITFIELDS;
    "sev_user_data_snp_status"."is_rmp_initialized" @ 3 : 1 [0; 1],
    "sev_user_data_snp_status"."rsvd" @ 3 : 1 [1; 7],
    "sev_user_data_snp_status"."mask_chip_id" @ 8 : 4 [0; 1],
    "sev_user_data_snp_status"."mask_chip_key" @ 8 : 4 [1; 1],
    "sev_user_data_snp_status"."vlek_en" @ 8 : 4 [2; 1],
    "sev_user_data_snp_status"."feature_info" @ 8 : 4 [3; 1],
    "sev_user_data_snp_status"."rapl_dis" @ 8 : 4 [4; 1],
    "sev_user_data_snp_status"."ciphertext_hiding_cap" @ 8 : 4 [5; 1],
    "sev_user_data_snp_status"."ciphertext_hiding_en" @ 8 : 4 [6; 1],
    "sev_user_data_snp_status"."rsvd1" @ 8 : 4 [7; 25],
    "sev_user_data_snp_config"."mask_chip_id" @ 8 : 4 [0; 1],
    "sev_user_data_snp_config"."mask_chip_key" @ 8 : 4 [1; 1],
    "sev_user_data_snp_config"."rsvd" @ 8 : 4 [2; 30],
}

const fn bit(v: u32, n: u32) -> bool {
    (v >> n) & 1 == 1
}

impl SevUserDataStatus {
    /// The platform state, or the raw byte if the firmware reports a state this crate does
    /// not know.
    pub const fn platform_state(&self) -> Result<SevPlatformState, u8> {
        SevPlatformState::from_raw(self.state)
    }

    /// Whether [`SEV_STATUS_FLAGS_CONFIG_ES`] is set (SEV-ES guests can be launched).
    pub const fn config_es(&self) -> bool {
        self.flags & SEV_STATUS_FLAGS_CONFIG_ES != 0
    }
}

impl SevUserDataSnpStatus {
    /// `is_rmp_initialized` (byte 3, bit 0): the Reverse Map Table has been initialized.
    pub const fn is_rmp_initialized(&self) -> bool {
        self.rmp_flags & 1 == 1
    }
    /// `mask_chip_id` (bit 0): attestation reports carry a zero chip id.
    pub const fn mask_chip_id(&self) -> bool {
        bit(self.feature_flags, 0)
    }
    /// `mask_chip_key` (bit 1): attestation reports are not signed with the VCEK.
    pub const fn mask_chip_key(&self) -> bool {
        bit(self.feature_flags, 1)
    }
    /// `vlek_en` (bit 2): a VLEK hashstick is loaded and reports may be VLEK-signed.
    pub const fn vlek_en(&self) -> bool {
        bit(self.feature_flags, 2)
    }
    /// `feature_info` (bit 3): the firmware implements SNP_FEATURE_INFO.
    pub const fn feature_info(&self) -> bool {
        bit(self.feature_flags, 3)
    }
    /// `rapl_dis` (bit 4): RAPL is disabled.
    pub const fn rapl_dis(&self) -> bool {
        bit(self.feature_flags, 4)
    }
    /// `ciphertext_hiding_cap` (bit 5): the platform can hide ciphertext from the host.
    pub const fn ciphertext_hiding_cap(&self) -> bool {
        bit(self.feature_flags, 5)
    }
    /// `ciphertext_hiding_en` (bit 6): ciphertext hiding is enabled.
    pub const fn ciphertext_hiding_en(&self) -> bool {
        bit(self.feature_flags, 6)
    }
}

impl SevUserDataSnpConfig {
    /// `mask_chip_id` (bit 0 of the dword at offset 8).
    pub const fn mask_chip_id(&self) -> bool {
        bit(self.config_flags, 0)
    }
    /// `mask_chip_key` (bit 1 of the dword at offset 8).
    pub const fn mask_chip_key(&self) -> bool {
        bit(self.config_flags, 1)
    }
    /// Sets or clears `mask_chip_id`: report a zero chip id in attestation reports.
    pub const fn set_mask_chip_id(&mut self, on: bool) {
        self.config_flags = (self.config_flags & !1) | on as u32;
    }
    /// Sets or clears `mask_chip_key`: do not sign attestation reports with the VCEK.
    pub const fn set_mask_chip_key(&mut self, on: bool) {
        self.config_flags = (self.config_flags & !2) | ((on as u32) << 1);
    }
}

impl SevUserDataSnpVlekLoad {
    /// The only argument the kernel accepts: `len` 16, version 0, pointing at `address`.
    pub const fn new(vlek_wrapped_address: u64) -> Self {
        Self {
            len: core::mem::size_of::<Self>() as u32,
            vlek_wrapped_version: 0,
            rsvd: [0; 3],
            vlek_wrapped_address,
        }
    }
}

/// The `/dev/sev` platform commands as a typed enum (the values of [`SEV_FACTORY_RESET`] …
/// [`SNP_VLEK_LOAD`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u32)]
pub enum SevPlatformCmd {
    /// [`SEV_FACTORY_RESET`]
    FactoryReset = SEV_FACTORY_RESET,
    /// [`SEV_PLATFORM_STATUS`]
    PlatformStatus = SEV_PLATFORM_STATUS,
    /// [`SEV_PEK_GEN`]
    PekGen = SEV_PEK_GEN,
    /// [`SEV_PEK_CSR`]
    PekCsr = SEV_PEK_CSR,
    /// [`SEV_PDH_GEN`]
    PdhGen = SEV_PDH_GEN,
    /// [`SEV_PDH_CERT_EXPORT`]
    PdhCertExport = SEV_PDH_CERT_EXPORT,
    /// [`SEV_PEK_CERT_IMPORT`]
    PekCertImport = SEV_PEK_CERT_IMPORT,
    /// [`SEV_GET_ID`] (deprecated)
    GetId = SEV_GET_ID,
    /// [`SEV_GET_ID2`]
    GetId2 = SEV_GET_ID2,
    /// [`SNP_PLATFORM_STATUS`]
    SnpPlatformStatus = SNP_PLATFORM_STATUS,
    /// [`SNP_COMMIT`]
    SnpCommit = SNP_COMMIT,
    /// [`SNP_SET_CONFIG`]
    SnpSetConfig = SNP_SET_CONFIG,
    /// [`SNP_VLEK_LOAD`]
    SnpVlekLoad = SNP_VLEK_LOAD,
}

impl SevPlatformCmd {
    /// Every command, in numeric order.
    pub const ALL: [Self; 13] = [
        Self::FactoryReset,
        Self::PlatformStatus,
        Self::PekGen,
        Self::PekCsr,
        Self::PdhGen,
        Self::PdhCertExport,
        Self::PekCertImport,
        Self::GetId,
        Self::GetId2,
        Self::SnpPlatformStatus,
        Self::SnpCommit,
        Self::SnpSetConfig,
        Self::SnpVlekLoad,
    ];

    /// The command for a raw id, `None` for [`SEV_MAX`] and above (the kernel's `-EINVAL`).
    pub const fn from_raw(raw: u32) -> Option<Self> {
        if raw < SEV_MAX {
            Some(Self::ALL[raw as usize])
        } else {
            None
        }
    }

    /// The raw id for [`SevIssueCmd::cmd`].
    pub const fn raw(self) -> u32 {
        self as u32
    }

    /// The kernel name, e.g. `"SEV_PLATFORM_STATUS"`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::FactoryReset => "SEV_FACTORY_RESET",
            Self::PlatformStatus => "SEV_PLATFORM_STATUS",
            Self::PekGen => "SEV_PEK_GEN",
            Self::PekCsr => "SEV_PEK_CSR",
            Self::PdhGen => "SEV_PDH_GEN",
            Self::PdhCertExport => "SEV_PDH_CERT_EXPORT",
            Self::PekCertImport => "SEV_PEK_CERT_IMPORT",
            Self::GetId => "SEV_GET_ID",
            Self::GetId2 => "SEV_GET_ID2",
            Self::SnpPlatformStatus => "SNP_PLATFORM_STATUS",
            Self::SnpCommit => "SNP_COMMIT",
            Self::SnpSetConfig => "SNP_SET_CONFIG",
            Self::SnpVlekLoad => "SNP_VLEK_LOAD",
        }
    }

    /// Whether Linux 7.3 requires the `/dev/sev` fd to be writable for this command
    /// (`-EPERM` otherwise).
    ///
    /// [`SEV_PDH_CERT_EXPORT`] needs it only when the platform must first be initialized
    /// (state UNINIT); it is reported as `false` here. [`SNP_COMMIT`] does not need it in
    /// 7.3.
    pub const fn needs_write(self) -> bool {
        matches!(
            self,
            Self::FactoryReset
                | Self::PekGen
                | Self::PekCsr
                | Self::PdhGen
                | Self::PekCertImport
                | Self::SnpSetConfig
                | Self::SnpVlekLoad
        )
    }
}

impl fmt::Display for SevPlatformCmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// SEV platform state (`enum sev_state` in the kernel; the value of
/// [`SevUserDataStatus::state`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum SevPlatformState {
    /// `SEV_STATE_UNINIT` (0): the firmware is not initialized.
    Uninit = 0,
    /// `SEV_STATE_INIT` (1): initialized, no guest active.
    Init = 1,
    /// `SEV_STATE_WORKING` (2): at least one guest is active; [`SEV_FACTORY_RESET`] gives
    /// `-EBUSY`.
    Working = 2,
}

impl SevPlatformState {
    /// Decodes a state byte; unknown values are returned as the error.
    pub const fn from_raw(raw: u8) -> Result<Self, u8> {
        match raw {
            0 => Ok(Self::Uninit),
            1 => Ok(Self::Init),
            2 => Ok(Self::Working),
            other => Err(other),
        }
    }

    /// The raw value.
    pub const fn raw(self) -> u8 {
        self as u8
    }

    /// The kernel name (`"SEV_STATE_UNINIT"`, …).
    pub const fn name(self) -> &'static str {
        match self {
            Self::Uninit => "SEV_STATE_UNINIT",
            Self::Init => "SEV_STATE_INIT",
            Self::Working => "SEV_STATE_WORKING",
        }
    }
}

impl fmt::Display for SevPlatformState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name().trim_start_matches("SEV_STATE_"))
    }
}

/// Defines the `SEV_RET_*` constants and the [`SevRetCode`] enum from one table.
macro_rules! sev_ret_codes {
    ( $( $(#[$meta:meta])* $variant:ident = $name:ident = $value:expr, $desc:literal; )* ) => {
        uapi_consts! { RET_CONSTANTS;
            $(
                #[doc = concat!("Firmware status `", stringify!($name), "`: ", $desc, ".")]
                #[doc = ""]
                #[doc = concat!("Typed as [`SevRetCode::", stringify!($variant), "`].")]
                $(#[$meta])*
                pub const $name: u32 = $value;
            )*
            /// Firmware status 0x03 under the header's original misspelling (kept by the
            /// kernel for compatibility); same value as [`SEV_RET_INVALID_CONFIG`].
            pub const SEV_RET_INAVLID_CONFIG: u32 = 0x03;
            /// One past the highest status the Linux 7.3 header names (0x40).
            pub const SEV_RET_MAX: u32 = 0x40;
        }

        /// A firmware status (`sev_ret_code`), as returned in [`SevIssueCmd::error`] and in
        /// the `error` field of `KVM_MEMORY_ENCRYPT_OP`'s `kvm_sev_cmd`.
        ///
        /// One variant per kernel name, plus [`SevRetCode::Unknown`] which keeps any other
        /// value losslessly, so `from_raw(x).raw() == x` for every `x`.
        ///
        /// The firmware's codes are 16-bit; the kernel adds `SEV_RET_NO_FW_CALL = -1`
        /// (`0xFFFF_FFFF` in the `u32` error fields) for "the firmware was never called".
        /// Codes 0x28–0x3F are new since Linux 6.12 (SEV-TIO / TDISP); 0x1E, 0x29–0x2F and
        /// 0x34 have no name.
        ///
        /// ```
        /// use kvm_coco_uapi::SevRetCode;
        /// let s = SevRetCode::from_raw(2);
        /// assert_eq!(s, SevRetCode::InvalidGuestState);
        /// assert_eq!(s.name(), "SEV_RET_INVALID_GUEST_STATE");
        /// assert_eq!(s.to_string(), "INVALID_GUEST_STATE (0x02)");
        /// assert_eq!(SevRetCode::from_raw(0xFFFF_FFFF), SevRetCode::NoFwCall);
        /// assert_eq!(SevRetCode::from_raw(0x1E), SevRetCode::Unknown(0x1E));
        /// ```
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum SevRetCode {
            $(
                #[doc = concat!("`", stringify!($name), "`: ", $desc, ".")]
                $variant,
            )*
            /// A value the Linux 7.3 header does not name (kept as is).
            Unknown(u32),
        }

        impl SevRetCode {
            /// Every named status, in the header's order.
            pub const ALL: &'static [SevRetCode] = &[ $( SevRetCode::$variant ),* ];

            /// Decodes a raw status; never fails (unnamed values become [`Self::Unknown`]).
            pub const fn from_raw(raw: u32) -> Self {
                match raw {
                    $( $name => Self::$variant, )*
                    other => Self::Unknown(other),
                }
            }

            /// The raw value ([`Self::NoFwCall`] is `0xFFFF_FFFF`).
            pub const fn raw(self) -> u32 {
                match self {
                    $( Self::$variant => $name, )*
                    Self::Unknown(raw) => raw,
                }
            }

            /// The kernel name, e.g. `"SEV_RET_INVALID_GUEST_STATE"`; `"SEV_RET_UNKNOWN"` for
            /// [`Self::Unknown`].
            pub const fn name(self) -> &'static str {
                match self {
                    $( Self::$variant => stringify!($name), )*
                    Self::Unknown(_) => "SEV_RET_UNKNOWN",
                }
            }

            /// A one-line human description.
            pub const fn description(self) -> &'static str {
                match self {
                    $( Self::$variant => $desc, )*
                    Self::Unknown(_) => "status code not named by the Linux 7.3 header",
                }
            }
        }
    };
}

sev_ret_codes! {
    NoFwCall = SEV_RET_NO_FW_CALL = 0xFFFF_FFFF,
        "the driver failed before the firmware was called (not a firmware code)";
    Success = SEV_RET_SUCCESS = 0x00, "success";
    InvalidPlatformState = SEV_RET_INVALID_PLATFORM_STATE = 0x01,
        "the platform state does not allow this command";
    InvalidGuestState = SEV_RET_INVALID_GUEST_STATE = 0x02,
        "the guest state does not allow this command";
    /// The header also spells it `SEV_RET_INAVLID_CONFIG`.
    InvalidConfig = SEV_RET_INVALID_CONFIG = 0x03, "invalid platform configuration";
    InvalidLen = SEV_RET_INVALID_LEN = 0x04, "a buffer is too small";
    AlreadyOwned = SEV_RET_ALREADY_OWNED = 0x05, "the platform is already owned";
    InvalidCertificate = SEV_RET_INVALID_CERTIFICATE = 0x06, "a certificate is invalid";
    PolicyFailure = SEV_RET_POLICY_FAILURE = 0x07,
        "the guest policy does not allow this command";
    Inactive = SEV_RET_INACTIVE = 0x08, "the guest is not active";
    InvalidAddress = SEV_RET_INVALID_ADDRESS = 0x09, "an address is invalid";
    BadSignature = SEV_RET_BAD_SIGNATURE = 0x0A, "a signature failed to verify";
    BadMeasurement = SEV_RET_BAD_MEASUREMENT = 0x0B, "a measurement did not match";
    AsidOwned = SEV_RET_ASID_OWNED = 0x0C, "the ASID is already owned by another guest";
    InvalidAsid = SEV_RET_INVALID_ASID = 0x0D, "the ASID is invalid";
    WbinvdRequired = SEV_RET_WBINVD_REQUIRED = 0x0E, "a WBINVD must be executed first";
    DfflushRequired = SEV_RET_DFFLUSH_REQUIRED = 0x0F, "a DF_FLUSH must be issued first";
    InvalidGuest = SEV_RET_INVALID_GUEST = 0x10, "the guest handle is invalid";
    InvalidCommand = SEV_RET_INVALID_COMMAND = 0x11, "the command is invalid";
    Active = SEV_RET_ACTIVE = 0x12, "the guest is active";
    HwsevRetPlatform = SEV_RET_HWSEV_RET_PLATFORM = 0x13, "a hardware platform error occurred";
    HwsevRetUnsafe = SEV_RET_HWSEV_RET_UNSAFE = 0x14,
        "a hardware error left the platform unsafe";
    Unsupported = SEV_RET_UNSUPPORTED = 0x15, "the feature is not supported";
    InvalidParam = SEV_RET_INVALID_PARAM = 0x16, "a parameter is invalid";
    ResourceLimit = SEV_RET_RESOURCE_LIMIT = 0x17, "a firmware resource limit was reached";
    SecureDataInvalid = SEV_RET_SECURE_DATA_INVALID = 0x18,
        "the integrity check of secure data failed";
    InvalidPageSize = SEV_RET_INVALID_PAGE_SIZE = 0x19, "the page size is invalid";
    InvalidPageState = SEV_RET_INVALID_PAGE_STATE = 0x1A,
        "the RMP page state is invalid for this command";
    InvalidMdataEntry = SEV_RET_INVALID_MDATA_ENTRY = 0x1B, "a metadata entry is invalid";
    InvalidPageOwner = SEV_RET_INVALID_PAGE_OWNER = 0x1C, "the page is owned by someone else";
    AeadOflow = SEV_RET_AEAD_OFLOW = 0x1D, "the AEAD message counter overflowed";
    ExitRingBuffer = SEV_RET_EXIT_RING_BUFFER = 0x1F, "the firmware left ring-buffer mode";
    RmpInitRequired = SEV_RET_RMP_INIT_REQUIRED = 0x20, "the RMP must be initialized first";
    BadSvn = SEV_RET_BAD_SVN = 0x21, "the security version number is too low";
    BadVersion = SEV_RET_BAD_VERSION = 0x22, "the version is not supported";
    ShutdownRequired = SEV_RET_SHUTDOWN_REQUIRED = 0x23, "the platform must be shut down first";
    UpdateFailed = SEV_RET_UPDATE_FAILED = 0x24, "the firmware update failed";
    RestoreRequired = SEV_RET_RESTORE_REQUIRED = 0x25, "a restore is required";
    RmpInitializationFailed = SEV_RET_RMP_INITIALIZATION_FAILED = 0x26,
        "RMP initialization failed";
    InvalidKey = SEV_RET_INVALID_KEY = 0x27, "the key is invalid";
    ShutdownIncomplete = SEV_RET_SHUTDOWN_INCOMPLETE = 0x28, "the shutdown did not complete";
    IncorrectBufferLength = SEV_RET_INCORRECT_BUFFER_LENGTH = 0x30,
        "a buffer length is incorrect";
    ExpandBufferLengthRequest = SEV_RET_EXPAND_BUFFER_LENGTH_REQUEST = 0x31,
        "the buffer must be enlarged";
    SpdmRequest = SEV_RET_SPDM_REQUEST = 0x32, "an SPDM request is pending";
    SpdmError = SEV_RET_SPDM_ERROR = 0x33, "an SPDM error occurred";
    SevStatusErrInDevConn = SEV_RET_SEV_STATUS_ERR_IN_DEV_CONN = 0x35,
        "error in the device connection";
    SevStatusInvalidDevCtx = SEV_RET_SEV_STATUS_INVALID_DEV_CTX = 0x36,
        "the device context is invalid";
    SevStatusInvalidTdiCtx = SEV_RET_SEV_STATUS_INVALID_TDI_CTX = 0x37,
        "the TDI context is invalid";
    SevStatusInvalidTdi = SEV_RET_SEV_STATUS_INVALID_TDI = 0x38, "the TDI is invalid";
    SevStatusReclaimRequired = SEV_RET_SEV_STATUS_RECLAIM_REQUIRED = 0x39,
        "a reclaim is required";
    InUse = SEV_RET_IN_USE = 0x3A, "the resource is in use";
    SevStatusInvalidDevState = SEV_RET_SEV_STATUS_INVALID_DEV_STATE = 0x3B,
        "the device state is invalid";
    SevStatusInvalidTdiState = SEV_RET_SEV_STATUS_INVALID_TDI_STATE = 0x3C,
        "the TDI state is invalid";
    SevStatusDevCertChanged = SEV_RET_SEV_STATUS_DEV_CERT_CHANGED = 0x3D,
        "the device certificate changed";
    SevStatusResyncReq = SEV_RET_SEV_STATUS_RESYNC_REQ = 0x3E, "a resynchronization is required";
    SevStatusResponseTooLarge = SEV_RET_SEV_STATUS_RESPONSE_TOO_LARGE = 0x3F,
        "the response is too large";
}

impl SevRetCode {
    /// Whether this is [`SevRetCode::Success`].
    pub const fn is_success(self) -> bool {
        matches!(self, Self::Success)
    }
}

impl From<u32> for SevRetCode {
    fn from(raw: u32) -> Self {
        Self::from_raw(raw)
    }
}

impl From<SevRetCode> for u32 {
    fn from(code: SevRetCode) -> Self {
        code.raw()
    }
}

impl fmt::Display for SevRetCode {
    /// `INVALID_GUEST_STATE (0x02)`, `NO_FW_CALL (-1)`, `UNKNOWN (0x1E)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.name();
        let short = name.strip_prefix("SEV_RET_").unwrap_or(name);
        match self {
            Self::NoFwCall => write!(f, "{short} (-1)"),
            other => write!(f, "{short} (0x{:02X})", other.raw()),
        }
    }
}

// Layout facts (linux-uapi.md §7, gcc over the 7.3.4 headers).
assert_layout!(SevIssueCmd, 16, 1, { cmd: 0, data: 4, error: 12 });
assert_layout!(SevUserDataStatus, 12, 1, {
    api_major: 0, api_minor: 1, state: 2, flags: 3, build: 7, guest_count: 8
});
assert_layout!(SevUserDataPekCsr, 12, 1, { address: 0, length: 8 });
assert_layout!(SevUserDataPekCertImport, 24, 1, {
    pek_cert_address: 0, pek_cert_len: 8, oca_cert_address: 12, oca_cert_len: 20
});
assert_layout!(SevUserDataPdhCertExport, 24, 1, {
    pdh_cert_address: 0, pdh_cert_len: 8, cert_chain_address: 12, cert_chain_len: 20
});
assert_layout!(SevUserDataGetId, 128, 1, { socket1: 0, socket2: 64 });
assert_layout!(SevUserDataGetId2, 12, 1, { address: 0, length: 8 });
assert_layout!(SevUserDataSnpStatus, 32, 1, {
    api_major: 0, api_minor: 1, state: 2, rmp_flags: 3, build_id: 4, feature_flags: 8,
    guest_count: 12, current_tcb_version: 16, reported_tcb_version: 24
});
assert_layout!(SevUserDataSnpConfig, 64, 1, { reported_tcb: 0, config_flags: 8, rsvd1: 12 });
assert_layout!(SevUserDataSnpVlekLoad, 16, 1, {
    len: 0, vlek_wrapped_version: 4, rsvd: 5, vlek_wrapped_address: 8
});
assert_layout!(SevUserDataSnpWrappedVlekHashstick, 432, 1, { data: 0 });
const _: () = assert!(SEV_ISSUE_CMD == 0xC010_5300);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::bitfields;
    use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

    /// Each accessor reads exactly the bit the bitfield record (checked against gcc by
    /// `cargo xtask uapi-check`) says.
    #[test]
    fn accessors_match_bitfield_records() {
        type Get = fn(&[u8]) -> bool;
        // `(C struct, member, struct size, accessor)` for accessor `$m` of `$ty`.
        macro_rules! accessor {
            ($ty:ident, $c:expr, $m:ident) => {
                ($c, stringify!($m), size_of::<$ty>(), {
                    let get: Get = |b| $ty::read_from_bytes(b).is_ok_and(|s| s.$m());
                    get
                })
            };
        }
        const STATUS: &str = "sev_user_data_snp_status";
        const CONFIG: &str = "sev_user_data_snp_config";
        let accessors = [
            accessor!(SevUserDataSnpStatus, STATUS, is_rmp_initialized),
            accessor!(SevUserDataSnpStatus, STATUS, mask_chip_id),
            accessor!(SevUserDataSnpStatus, STATUS, mask_chip_key),
            accessor!(SevUserDataSnpStatus, STATUS, vlek_en),
            accessor!(SevUserDataSnpStatus, STATUS, feature_info),
            accessor!(SevUserDataSnpStatus, STATUS, rapl_dis),
            accessor!(SevUserDataSnpStatus, STATUS, ciphertext_hiding_cap),
            accessor!(SevUserDataSnpStatus, STATUS, ciphertext_hiding_en),
            accessor!(SevUserDataSnpConfig, CONFIG, mask_chip_id),
            accessor!(SevUserDataSnpConfig, CONFIG, mask_chip_key),
        ];
        for (c, m, size, get) in accessors {
            let rec = bitfields()
                .find(|e| e.c_struct == c && e.member == m)
                .unwrap_or_else(|| panic!("no record for {c}.{m}"));
            assert_eq!(rec.width, 1);
            let mut bytes = [0u8; 64];
            let byte = rec.storage_offset + (rec.bit / 8) as usize;
            bytes[byte] = 1 << (rec.bit % 8);
            assert!(get(&bytes[..size]), "{c}.{m} set");
            // Every other single bit in the storage unit leaves the accessor false.
            for other in 0..(rec.storage_size * 8) as u32 {
                if other == rec.bit {
                    continue;
                }
                let mut bytes = [0u8; 64];
                bytes[rec.storage_offset + (other / 8) as usize] = 1 << (other % 8);
                assert!(!get(&bytes[..size]), "{c}.{m} with bit {other}");
            }
        }
        // The setters write the recorded bits.
        let mut cfg = SevUserDataSnpConfig::default();
        cfg.set_mask_chip_id(true);
        assert_eq!(cfg.as_bytes()[8], 1);
        cfg.set_mask_chip_id(false);
        cfg.set_mask_chip_key(true);
        assert_eq!(cfg.as_bytes()[8], 2);
    }

    #[test]
    fn zerocopy_traits() {
        fn needs<T: FromBytes + IntoBytes + KnownLayout + Immutable>() {}
        needs::<SevIssueCmd>();
        needs::<SevUserDataSnpStatus>();
    }
}
