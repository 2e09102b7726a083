//! SEV and SEV-ES guest commands: `enum sev_cmd_id`, `struct kvm_sev_cmd` and every
//! argument struct (`arch/x86/include/uapi/asm/kvm.h`), plus the SEV guest policy and the
//! VMSA feature bits.
//!
//! Every sub-command is issued as `ioctl(vm_fd, KVM_MEMORY_ENCRYPT_OP, &KvmSevCmd)`
//! ([`crate::KVM_MEMORY_ENCRYPT_OP`]). The dispatcher (`sev_mem_enc_ioctl` in
//! `arch/x86/kvm/svm/sev.c`) checks, in this order:
//! 1. the `kvm_sev_cmd` copy (`-EFAULT`);
//! 2. mirror VMs may only use LAUNCH_UPDATE_VMSA, GUEST_STATUS, DBG_DECRYPT/ENCRYPT
//!    (`-EINVAL`);
//! 3. once the VM is SNP-active, every id below 100 gives **`-EPERM`** (even GUEST_STATUS);
//! 4. an unknown id gives `-EINVAL`;
//! 5. most commands on a VM that is not SEV-initialized give `-ENOTTY`
//!    (RECEIVE_UPDATE_DATA and SNP_LAUNCH_UPDATE give `-EINVAL`);
//! 6. a firmware failure gives `-EIO` with [`KvmSevCmd::error`] set to the firmware status
//!    ([`crate::SevRetCode`]); a PSP timeout gives `-ETIMEDOUT`, after which every command
//!    gets `-EBUSY`.
//!
//! SNP commands (ids 100–103) and structs live in [`crate::snp`].

use crate::error::PolicyError;
use core::fmt;

uapi_consts! { CMD_IDS;
    /// `KVM_SEV_INIT` (0), **deprecated**: only on [`crate::KVM_X86_DEFAULT_VM`] (`-EINVAL`
    /// otherwise); behaves as INIT2 for SEV with `ghcb_version` 0. No argument.
    pub const KVM_SEV_INIT: u32 = 0;
    /// `KVM_SEV_ES_INIT` (1), **deprecated**: INIT2 for SEV-ES with `ghcb_version` 1; the
    /// VMSA FPU/AVX state is not synced. `-ENOTTY` if SEV-ES is disabled. No argument.
    pub const KVM_SEV_ES_INIT: u32 = 1;
    /// `KVM_SEV_LAUNCH_START` (2): [`KvmSevLaunchStart`] (in/out). Uses
    /// [`KvmSevCmd::sev_fd`] and **remembers that fd number** for later commands.
    pub const KVM_SEV_LAUNCH_START: u32 = 2;
    /// `KVM_SEV_LAUNCH_UPDATE_DATA` (3): [`KvmSevLaunchUpdateData`]; encrypts and measures
    /// a user range in place (pinned, split into physically contiguous chunks).
    pub const KVM_SEV_LAUNCH_UPDATE_DATA: u32 = 3;
    /// `KVM_SEV_LAUNCH_UPDATE_VMSA` (4): SEV-ES only (`-ENOTTY` otherwise); encrypts every
    /// vCPU's VMSA, after which register ioctls are refused. No argument. Not described in
    /// the kernel's SEV documentation.
    pub const KVM_SEV_LAUNCH_UPDATE_VMSA: u32 = 4;
    /// `KVM_SEV_LAUNCH_SECRET` (5): [`KvmSevLaunchSecret`]; the guest range must be
    /// physically contiguous (`-EINVAL`).
    pub const KVM_SEV_LAUNCH_SECRET: u32 = 5;
    /// `KVM_SEV_LAUNCH_MEASURE` (6): [`KvmSevLaunchMeasure`] (in/out); `len == 0` queries
    /// the length, `len > 16384` gives `-EINVAL`.
    pub const KVM_SEV_LAUNCH_MEASURE: u32 = 6;
    /// `KVM_SEV_LAUNCH_FINISH` (7): no argument.
    pub const KVM_SEV_LAUNCH_FINISH: u32 = 7;
    /// `KVM_SEV_SEND_START` (8): [`KvmSevSendStart`] (in/out); `session_len == 0` queries.
    pub const KVM_SEV_SEND_START: u32 = 8;
    /// `KVM_SEV_SEND_UPDATE_DATA` (9): [`KvmSevSendUpdateData`] (in/out); a zero header or
    /// transport length queries; the guest range must not cross a page.
    pub const KVM_SEV_SEND_UPDATE_DATA: u32 = 9;
    /// `KVM_SEV_SEND_UPDATE_VMSA` (10): defined but **KVM has no handler** (`-EINVAL`).
    pub const KVM_SEV_SEND_UPDATE_VMSA: u32 = 10;
    /// `KVM_SEV_SEND_FINISH` (11): no argument.
    pub const KVM_SEV_SEND_FINISH: u32 = 11;
    /// `KVM_SEV_RECEIVE_START` (12): [`KvmSevReceiveStart`] (in/out); uses and remembers
    /// [`KvmSevCmd::sev_fd`].
    pub const KVM_SEV_RECEIVE_START: u32 = 12;
    /// `KVM_SEV_RECEIVE_UPDATE_DATA` (13): [`KvmSevReceiveUpdateData`]; `-EINVAL` (not
    /// `-ENOTTY`) on a non-SEV VM.
    pub const KVM_SEV_RECEIVE_UPDATE_DATA: u32 = 13;
    /// `KVM_SEV_RECEIVE_UPDATE_VMSA` (14): defined but **no handler** (`-EINVAL`).
    pub const KVM_SEV_RECEIVE_UPDATE_VMSA: u32 = 14;
    /// `KVM_SEV_RECEIVE_FINISH` (15): no argument.
    pub const KVM_SEV_RECEIVE_FINISH: u32 = 15;
    /// `KVM_SEV_GUEST_STATUS` (16): [`KvmSevGuestStatus`] (out).
    pub const KVM_SEV_GUEST_STATUS: u32 = 16;
    /// `KVM_SEV_DBG_DECRYPT` (17): [`KvmSevDbg`]; needs a debug-enabled policy. Length,
    /// source and destination must be non-zero; unaligned requests use bounce buffers.
    pub const KVM_SEV_DBG_DECRYPT: u32 = 17;
    /// `KVM_SEV_DBG_ENCRYPT` (18): [`KvmSevDbg`], same rules as DBG_DECRYPT.
    pub const KVM_SEV_DBG_ENCRYPT: u32 = 18;
    /// `KVM_SEV_CERT_EXPORT` (19): defined but **no handler** (`-EINVAL`).
    pub const KVM_SEV_CERT_EXPORT: u32 = 19;
    /// `KVM_SEV_GET_ATTESTATION_REPORT` (20): [`KvmSevAttestationReport`] (in/out);
    /// `len == 0` queries; at most 16384.
    pub const KVM_SEV_GET_ATTESTATION_REPORT: u32 = 20;
    /// `KVM_SEV_SEND_CANCEL` (21): no argument.
    pub const KVM_SEV_SEND_CANCEL: u32 = 21;
    /// `KVM_SEV_INIT2` (22): [`KvmSevInit`]; mandatory on [`crate::KVM_X86_SEV_VM`],
    /// [`crate::KVM_X86_SEV_ES_VM`] and [`crate::KVM_X86_SNP_VM`] before `KVM_RUN`.
    pub const KVM_SEV_INIT2: u32 = 22;
    /// `KVM_SEV_SNP_LAUNCH_START` (100): [`crate::KvmSevSnpLaunchStart`].
    pub const KVM_SEV_SNP_LAUNCH_START: u32 = 100;
    /// `KVM_SEV_SNP_LAUNCH_UPDATE` (101): [`crate::KvmSevSnpLaunchUpdate`] (in/out).
    pub const KVM_SEV_SNP_LAUNCH_UPDATE: u32 = 101;
    /// `KVM_SEV_SNP_LAUNCH_FINISH` (102): [`crate::KvmSevSnpLaunchFinish`].
    pub const KVM_SEV_SNP_LAUNCH_FINISH: u32 = 102;
    /// `KVM_SEV_SNP_ENABLE_REQ_CERTS` (103, new in Linux 7.0): no argument. Turns on
    /// `KVM_EXIT_SNP_REQ_CERTS` ([`crate::KVM_EXIT_SNP_REQ_CERTS`]); only on an SNP-active VM
    /// **before any vCPU is created** (`-EINVAL` otherwise). Probe with
    /// [`crate::KVM_X86_SEV_SNP_REQ_CERTS`].
    pub const KVM_SEV_SNP_ENABLE_REQ_CERTS: u32 = 103;
    /// `KVM_SEV_NR_MAX` (104): enum terminator, not a command.
    pub const KVM_SEV_NR_MAX: u32 = 104;
}

/// Every `KVM_SEV_*` sub-command as a typed enum (`enum sev_cmd_id`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u32)]
pub enum SevCmdId {
    /// [`KVM_SEV_INIT`] (deprecated)
    Init = KVM_SEV_INIT,
    /// [`KVM_SEV_ES_INIT`] (deprecated)
    EsInit = KVM_SEV_ES_INIT,
    /// [`KVM_SEV_LAUNCH_START`]
    LaunchStart = KVM_SEV_LAUNCH_START,
    /// [`KVM_SEV_LAUNCH_UPDATE_DATA`]
    LaunchUpdateData = KVM_SEV_LAUNCH_UPDATE_DATA,
    /// [`KVM_SEV_LAUNCH_UPDATE_VMSA`]
    LaunchUpdateVmsa = KVM_SEV_LAUNCH_UPDATE_VMSA,
    /// [`KVM_SEV_LAUNCH_SECRET`]
    LaunchSecret = KVM_SEV_LAUNCH_SECRET,
    /// [`KVM_SEV_LAUNCH_MEASURE`]
    LaunchMeasure = KVM_SEV_LAUNCH_MEASURE,
    /// [`KVM_SEV_LAUNCH_FINISH`]
    LaunchFinish = KVM_SEV_LAUNCH_FINISH,
    /// [`KVM_SEV_SEND_START`]
    SendStart = KVM_SEV_SEND_START,
    /// [`KVM_SEV_SEND_UPDATE_DATA`]
    SendUpdateData = KVM_SEV_SEND_UPDATE_DATA,
    /// [`KVM_SEV_SEND_UPDATE_VMSA`] (no handler)
    SendUpdateVmsa = KVM_SEV_SEND_UPDATE_VMSA,
    /// [`KVM_SEV_SEND_FINISH`]
    SendFinish = KVM_SEV_SEND_FINISH,
    /// [`KVM_SEV_RECEIVE_START`]
    ReceiveStart = KVM_SEV_RECEIVE_START,
    /// [`KVM_SEV_RECEIVE_UPDATE_DATA`]
    ReceiveUpdateData = KVM_SEV_RECEIVE_UPDATE_DATA,
    /// [`KVM_SEV_RECEIVE_UPDATE_VMSA`] (no handler)
    ReceiveUpdateVmsa = KVM_SEV_RECEIVE_UPDATE_VMSA,
    /// [`KVM_SEV_RECEIVE_FINISH`]
    ReceiveFinish = KVM_SEV_RECEIVE_FINISH,
    /// [`KVM_SEV_GUEST_STATUS`]
    GuestStatus = KVM_SEV_GUEST_STATUS,
    /// [`KVM_SEV_DBG_DECRYPT`]
    DbgDecrypt = KVM_SEV_DBG_DECRYPT,
    /// [`KVM_SEV_DBG_ENCRYPT`]
    DbgEncrypt = KVM_SEV_DBG_ENCRYPT,
    /// [`KVM_SEV_CERT_EXPORT`] (no handler)
    CertExport = KVM_SEV_CERT_EXPORT,
    /// [`KVM_SEV_GET_ATTESTATION_REPORT`]
    GetAttestationReport = KVM_SEV_GET_ATTESTATION_REPORT,
    /// [`KVM_SEV_SEND_CANCEL`]
    SendCancel = KVM_SEV_SEND_CANCEL,
    /// [`KVM_SEV_INIT2`]
    Init2 = KVM_SEV_INIT2,
    /// [`KVM_SEV_SNP_LAUNCH_START`]
    SnpLaunchStart = KVM_SEV_SNP_LAUNCH_START,
    /// [`KVM_SEV_SNP_LAUNCH_UPDATE`]
    SnpLaunchUpdate = KVM_SEV_SNP_LAUNCH_UPDATE,
    /// [`KVM_SEV_SNP_LAUNCH_FINISH`]
    SnpLaunchFinish = KVM_SEV_SNP_LAUNCH_FINISH,
    /// [`KVM_SEV_SNP_ENABLE_REQ_CERTS`]
    SnpEnableReqCerts = KVM_SEV_SNP_ENABLE_REQ_CERTS,
}

impl SevCmdId {
    /// Every sub-command, in numeric order.
    pub const ALL: [Self; 27] = [
        Self::Init,
        Self::EsInit,
        Self::LaunchStart,
        Self::LaunchUpdateData,
        Self::LaunchUpdateVmsa,
        Self::LaunchSecret,
        Self::LaunchMeasure,
        Self::LaunchFinish,
        Self::SendStart,
        Self::SendUpdateData,
        Self::SendUpdateVmsa,
        Self::SendFinish,
        Self::ReceiveStart,
        Self::ReceiveUpdateData,
        Self::ReceiveUpdateVmsa,
        Self::ReceiveFinish,
        Self::GuestStatus,
        Self::DbgDecrypt,
        Self::DbgEncrypt,
        Self::CertExport,
        Self::GetAttestationReport,
        Self::SendCancel,
        Self::Init2,
        Self::SnpLaunchStart,
        Self::SnpLaunchUpdate,
        Self::SnpLaunchFinish,
        Self::SnpEnableReqCerts,
    ];

    /// Decodes a raw id; `None` for ids the kernel rejects as unknown.
    pub const fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            0..=KVM_SEV_INIT2 => Some(Self::ALL[raw as usize]),
            KVM_SEV_SNP_LAUNCH_START..=KVM_SEV_SNP_ENABLE_REQ_CERTS => {
                Some(Self::ALL[(raw - KVM_SEV_SNP_LAUNCH_START + KVM_SEV_INIT2 + 1) as usize])
            }
            _ => None,
        }
    }

    /// The raw id for [`KvmSevCmd::id`].
    pub const fn raw(self) -> u32 {
        self as u32
    }

    /// Whether this is an SNP command (id ≥ 100). On an SNP-active VM every *other*
    /// command gives `-EPERM`.
    pub const fn is_snp(self) -> bool {
        self.raw() >= KVM_SEV_SNP_LAUNCH_START
    }

    /// Whether KVM 7.3 implements the command at all (SEND/RECEIVE_UPDATE_VMSA and
    /// CERT_EXPORT are defined but answered with `-EINVAL`).
    pub const fn has_handler(self) -> bool {
        !matches!(
            self,
            Self::SendUpdateVmsa | Self::ReceiveUpdateVmsa | Self::CertExport
        )
    }

    /// Whether a mirror VM (`KVM_CAP_VM_COPY_ENC_CONTEXT_FROM`) may issue it.
    pub const fn allowed_on_mirror(self) -> bool {
        matches!(
            self,
            Self::LaunchUpdateVmsa | Self::GuestStatus | Self::DbgDecrypt | Self::DbgEncrypt
        )
    }

    /// The kernel name, e.g. `"KVM_SEV_LAUNCH_START"`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Init => "KVM_SEV_INIT",
            Self::EsInit => "KVM_SEV_ES_INIT",
            Self::LaunchStart => "KVM_SEV_LAUNCH_START",
            Self::LaunchUpdateData => "KVM_SEV_LAUNCH_UPDATE_DATA",
            Self::LaunchUpdateVmsa => "KVM_SEV_LAUNCH_UPDATE_VMSA",
            Self::LaunchSecret => "KVM_SEV_LAUNCH_SECRET",
            Self::LaunchMeasure => "KVM_SEV_LAUNCH_MEASURE",
            Self::LaunchFinish => "KVM_SEV_LAUNCH_FINISH",
            Self::SendStart => "KVM_SEV_SEND_START",
            Self::SendUpdateData => "KVM_SEV_SEND_UPDATE_DATA",
            Self::SendUpdateVmsa => "KVM_SEV_SEND_UPDATE_VMSA",
            Self::SendFinish => "KVM_SEV_SEND_FINISH",
            Self::ReceiveStart => "KVM_SEV_RECEIVE_START",
            Self::ReceiveUpdateData => "KVM_SEV_RECEIVE_UPDATE_DATA",
            Self::ReceiveUpdateVmsa => "KVM_SEV_RECEIVE_UPDATE_VMSA",
            Self::ReceiveFinish => "KVM_SEV_RECEIVE_FINISH",
            Self::GuestStatus => "KVM_SEV_GUEST_STATUS",
            Self::DbgDecrypt => "KVM_SEV_DBG_DECRYPT",
            Self::DbgEncrypt => "KVM_SEV_DBG_ENCRYPT",
            Self::CertExport => "KVM_SEV_CERT_EXPORT",
            Self::GetAttestationReport => "KVM_SEV_GET_ATTESTATION_REPORT",
            Self::SendCancel => "KVM_SEV_SEND_CANCEL",
            Self::Init2 => "KVM_SEV_INIT2",
            Self::SnpLaunchStart => "KVM_SEV_SNP_LAUNCH_START",
            Self::SnpLaunchUpdate => "KVM_SEV_SNP_LAUNCH_UPDATE",
            Self::SnpLaunchFinish => "KVM_SEV_SNP_LAUNCH_FINISH",
            Self::SnpEnableReqCerts => "KVM_SEV_SNP_ENABLE_REQ_CERTS",
        }
    }
}

impl fmt::Display for SevCmdId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

uapi_structs! { STRUCTS;
    /// The argument of [`crate::KVM_MEMORY_ENCRYPT_OP`] for SEV (`struct kvm_sev_cmd`,
    /// 24 bytes).
    ///
    /// The whole struct is copied back after every handled command, so [`Self::error`]
    /// carries the firmware status even when the ioctl fails.
    ///
    /// **Trap:** LAUNCH_START, RECEIVE_START and SNP_LAUNCH_START store the `sev_fd`
    /// *number*; later commands resolve that number again in the calling process. Keep the
    /// same `/dev/sev` fd open, under the same number, for the VM's lifetime (`-EBADF`
    /// otherwise).
    #[repr(C)]
    pub struct KvmSevCmd as "kvm_sev_cmd" {
        /// The sub-command ([`KVM_SEV_INIT2`] …, see [`SevCmdId`]).
        pub id: u32,
        /// Padding.
        pub pad0: u32,
        /// User address of the argument struct (0 for commands without one).
        pub data: u64,
        /// Out: the firmware status ([`crate::SevRetCode::from_raw`]).
        pub error: u32,
        /// An open `/dev/sev` fd (needed by LAUNCH_START, RECEIVE_START, SNP_LAUNCH_START,
        /// SNP_LAUNCH_UPDATE and SNP_LAUNCH_FINISH).
        pub sev_fd: u32,
    }

    /// [`KVM_SEV_INIT2`] argument (`struct kvm_sev_init`, 48 bytes).
    ///
    /// KVM checks: `vmsa_features` ⊆ the [`crate::KVM_X86_SEV_VMSA_FEATURES`] attribute and
    /// 0 for plain SEV; `flags == 0`; `ghcb_version` 0 for SEV, ≤ 2 otherwise, 0 meaning 2
    /// for SEV-ES/SNP, and SNP needs 2 (an explicit 1 gives `-EINVAL`). `pad1`/`pad2` are
    /// not checked.
    #[repr(C)]
    pub struct KvmSevInit as "kvm_sev_init" {
        /// Initial VMSA `sev_features` ([`VmsaFeatures`]).
        pub vmsa_features: u64,
        /// Must be 0.
        pub flags: u32,
        /// GHCB protocol version (see above).
        pub ghcb_version: u16,
        /// Padding.
        pub pad1: u16,
        /// Reserved.
        pub pad2: [u32; 8],
    }

    /// [`KVM_SEV_LAUNCH_START`] argument (`struct kvm_sev_launch_start`, 40 bytes).
    ///
    /// The optional blobs (`dh_*`, `session_*`) are limited to 16384 bytes when their
    /// address is non-zero (`-EINVAL`).
    #[repr(C)]
    pub struct KvmSevLaunchStart as "kvm_sev_launch_start" {
        /// In: 0 for a new guest context; out: the firmware guest handle.
        pub handle: u32,
        /// The SEV guest policy ([`SevPolicy`]), passed to the firmware unchecked by KVM.
        pub policy: u32,
        /// User address of the guest owner's Diffie-Hellman certificate, or 0.
        pub dh_uaddr: u64,
        /// Its length.
        pub dh_len: u32,
        /// Padding.
        pub pad0: u32,
        /// User address of the launch session blob, or 0.
        pub session_uaddr: u64,
        /// Its length.
        pub session_len: u32,
        /// Padding.
        pub pad1: u32,
    }

    /// [`KVM_SEV_LAUNCH_UPDATE_DATA`] argument (`struct kvm_sev_launch_update_data`, 16 bytes).
    #[repr(C)]
    pub struct KvmSevLaunchUpdateData as "kvm_sev_launch_update_data" {
        /// User address of the range to encrypt in place.
        pub uaddr: u64,
        /// Its length.
        pub len: u32,
        /// Padding.
        pub pad0: u32,
    }

    /// [`KVM_SEV_LAUNCH_SECRET`] argument (`struct kvm_sev_launch_secret`, 48 bytes).
    #[repr(C)]
    pub struct KvmSevLaunchSecret as "kvm_sev_launch_secret" {
        /// User address of the packet header from the guest owner.
        pub hdr_uaddr: u64,
        /// Its length.
        pub hdr_len: u32,
        /// Padding.
        pub pad0: u32,
        /// User address (guest memory mapping) where the secret is injected; must be
        /// physically contiguous.
        pub guest_uaddr: u64,
        /// Its length.
        pub guest_len: u32,
        /// Padding.
        pub pad1: u32,
        /// User address of the encrypted secret.
        pub trans_uaddr: u64,
        /// Its length.
        pub trans_len: u32,
        /// Padding.
        pub pad2: u32,
    }

    /// [`KVM_SEV_LAUNCH_MEASURE`] argument (`struct kvm_sev_launch_measure`, 16 bytes; same
    /// layout as [`KvmSevLaunchUpdateData`]).
    #[repr(C)]
    pub struct KvmSevLaunchMeasure as "kvm_sev_launch_measure" {
        /// User buffer for the measurement, or 0 with `len == 0` to query the length.
        pub uaddr: u64,
        /// In: buffer length (≤ 16384); out: measurement length.
        pub len: u32,
        /// Padding.
        pub pad0: u32,
    }

    /// [`KVM_SEV_GUEST_STATUS`] output (`struct kvm_sev_guest_status`, 12 bytes, align 4).
    ///
    /// **Trap:** `state` is a `u32` in the header although the kernel documentation shows
    /// `u8` (the firmware's own field is a byte).
    #[repr(C)]
    pub struct KvmSevGuestStatus as "kvm_sev_guest_status" {
        /// The firmware guest handle.
        pub handle: u32,
        /// The guest policy.
        pub policy: u32,
        /// The firmware guest state (UNINIT 0, LUPDATE 1, LSECRET 2, RUNNING 3, SUPDATE 4,
        /// RUPDATE 5, SENT 6).
        pub state: u32,
    }

    /// [`KVM_SEV_DBG_DECRYPT`] / [`KVM_SEV_DBG_ENCRYPT`] argument (`struct kvm_sev_dbg`,
    /// 24 bytes).
    #[repr(C)]
    pub struct KvmSevDbg as "kvm_sev_dbg" {
        /// Source user address (non-zero).
        pub src_uaddr: u64,
        /// Destination user address (non-zero).
        pub dst_uaddr: u64,
        /// Length (non-zero).
        pub len: u32,
        /// Padding.
        pub pad0: u32,
    }

    /// [`KVM_SEV_GET_ATTESTATION_REPORT`] argument (`struct kvm_sev_attestation_report`,
    /// 32 bytes).
    #[repr(C)]
    pub struct KvmSevAttestationReport as "kvm_sev_attestation_report" {
        /// Guest-owner nonce included in the report.
        pub mnonce: [u8; 16],
        /// User buffer for the report, or 0 with `len == 0` to query the length.
        pub uaddr: u64,
        /// In: buffer length (≤ 16384); out: report length.
        pub len: u32,
        /// Padding.
        pub pad0: u32,
    }

    /// [`KVM_SEV_SEND_START`] argument (`struct kvm_sev_send_start`, 72 bytes).
    #[repr(C)]
    pub struct KvmSevSendStart as "kvm_sev_send_start" {
        /// Out: the guest policy.
        pub policy: u32,
        /// Padding.
        pub pad0: u32,
        /// User address of the target platform's PDH certificate.
        pub pdh_cert_uaddr: u64,
        /// Its length.
        pub pdh_cert_len: u32,
        /// Padding.
        pub pad1: u32,
        /// User address of the platform certificates.
        pub plat_certs_uaddr: u64,
        /// Their length.
        pub plat_certs_len: u32,
        /// Padding.
        pub pad2: u32,
        /// User address of the AMD certificates.
        pub amd_certs_uaddr: u64,
        /// Their length.
        pub amd_certs_len: u32,
        /// Padding.
        pub pad3: u32,
        /// User buffer for the session blob (0 length queries).
        pub session_uaddr: u64,
        /// In: buffer length; out: blob length.
        pub session_len: u32,
        /// Padding.
        pub pad4: u32,
    }

    /// [`KVM_SEV_SEND_UPDATE_DATA`] argument (`struct kvm_sev_send_update_data`, 48 bytes;
    /// same layout as [`KvmSevLaunchSecret`]).
    #[repr(C)]
    pub struct KvmSevSendUpdateData as "kvm_sev_send_update_data" {
        /// User buffer for the packet header.
        pub hdr_uaddr: u64,
        /// In: buffer length; out: header length (0 queries).
        pub hdr_len: u32,
        /// Padding.
        pub pad0: u32,
        /// Guest range to send (must not cross a page).
        pub guest_uaddr: u64,
        /// Its length.
        pub guest_len: u32,
        /// Padding.
        pub pad1: u32,
        /// User buffer for the encrypted data.
        pub trans_uaddr: u64,
        /// In: buffer length; out: data length (0 queries).
        pub trans_len: u32,
        /// Padding.
        pub pad2: u32,
    }

    /// [`KVM_SEV_RECEIVE_START`] argument (`struct kvm_sev_receive_start`, 40 bytes).
    #[repr(C)]
    pub struct KvmSevReceiveStart as "kvm_sev_receive_start" {
        /// In: 0 for a new context; out: the guest handle.
        pub handle: u32,
        /// The guest policy.
        pub policy: u32,
        /// User address of the source platform's PDH.
        pub pdh_uaddr: u64,
        /// Its length.
        pub pdh_len: u32,
        /// Padding.
        pub pad0: u32,
        /// User address of the session blob.
        pub session_uaddr: u64,
        /// Its length.
        pub session_len: u32,
        /// Padding.
        pub pad1: u32,
    }

    /// [`KVM_SEV_RECEIVE_UPDATE_DATA`] argument (`struct kvm_sev_receive_update_data`,
    /// 48 bytes; same layout as [`KvmSevLaunchSecret`]).
    #[repr(C)]
    pub struct KvmSevReceiveUpdateData as "kvm_sev_receive_update_data" {
        /// User address of the packet header.
        pub hdr_uaddr: u64,
        /// Its length.
        pub hdr_len: u32,
        /// Padding.
        pub pad0: u32,
        /// Destination guest range.
        pub guest_uaddr: u64,
        /// Its length.
        pub guest_len: u32,
        /// Padding.
        pub pad1: u32,
        /// User address of the encrypted data.
        pub trans_uaddr: u64,
        /// Its length.
        pub trans_len: u32,
        /// Padding.
        pub pad2: u32,
    }
}

/// The firmware's SEV guest state, as reported in [`KvmSevGuestStatus::state`] (AMD SEV API;
/// values from the firmware model's facts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum SevGuestState {
    /// 0: no guest context (or invalid).
    Uninit = 0,
    /// 1: LAUNCH_START done; LAUNCH_UPDATE_DATA/VMSA and LAUNCH_MEASURE allowed.
    Lupdate = 1,
    /// 2: LAUNCH_MEASURE done; LAUNCH_SECRET and LAUNCH_FINISH allowed.
    Lsecret = 2,
    /// 3: launched and running.
    Running = 3,
    /// 4: being sent (SEND_START done).
    Supdate = 4,
    /// 5: being received (RECEIVE_START done).
    Rupdate = 5,
    /// 6: sent (SEND_FINISH done).
    Sent = 6,
}

impl SevGuestState {
    /// Decodes a state; unknown values are returned as the error.
    pub const fn from_raw(raw: u32) -> Result<Self, u32> {
        Ok(match raw {
            0 => Self::Uninit,
            1 => Self::Lupdate,
            2 => Self::Lsecret,
            3 => Self::Running,
            4 => Self::Supdate,
            5 => Self::Rupdate,
            6 => Self::Sent,
            other => return Err(other),
        })
    }

    /// The raw value.
    pub const fn raw(self) -> u32 {
        self as u32
    }
}

impl KvmSevGuestStatus {
    /// The decoded guest state (the raw `u32` if unknown).
    pub const fn guest_state(&self) -> Result<SevGuestState, u32> {
        SevGuestState::from_raw(self.state)
    }

    /// The guest policy as [`SevPolicy`].
    pub const fn sev_policy(&self) -> SevPolicy {
        SevPolicy::from_bits_retain(self.policy)
    }
}

impl KvmSevCmd {
    /// A command with argument address `data` (0 for none), using `/dev/sev` fd `sev_fd`.
    pub const fn new(id: SevCmdId, data: u64, sev_fd: u32) -> Self {
        Self {
            id: id.raw(),
            pad0: 0,
            data,
            error: 0,
            sev_fd,
        }
    }

    /// The firmware status the kernel wrote back.
    pub const fn fw_error(&self) -> crate::SevRetCode {
        crate::SevRetCode::from_raw(self.error)
    }
}

/// Largest blob the kernel passes to the firmware (`SEV_FW_BLOB_MAX_SIZE`, kernel-internal
/// `include/linux/psp-sev.h`): 16384 bytes.
pub const SEV_FW_BLOB_MAX_SIZE: u32 = 0x4000;

/// Highest GHCB protocol version KVM 7.3 accepts in [`KvmSevInit::ghcb_version`]
/// (`GHCB_VERSION_MAX`, kernel-internal).
pub const GHCB_VERSION_MAX: u16 = 2;

bitflags::bitflags! {
    /// VMSA `sev_features` bits (`SVM_SEV_FEAT_*`, kernel-internal `asm/svm.h`), as used in
    /// [`KvmSevInit::vmsa_features`] and reported by [`crate::KVM_X86_SEV_VMSA_FEATURES`].
    ///
    /// Only bits in the host's attribute value may be requested. Unknown bits are kept.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub struct VmsaFeatures: u64 {
        /// Bit 0: SNP is active. KVM sets it itself for SNP VMs; it is **not** accepted from
        /// user space.
        const SNP_ACTIVE = 1 << 0;
        /// Bit 3: restricted injection. Defined, not offered by KVM 7.3.
        const RESTRICTED_INJECTION = 1 << 3;
        /// Bit 4: alternate injection. Defined, not offered by KVM 7.3.
        const ALTERNATE_INJECTION = 1 << 4;
        /// Bit 5: debug-register swap. Offered with SEV-ES when the CPU has DEBUG_SWAP and
        /// NO_NESTED_DATA_BP.
        const DEBUG_SWAP = 1 << 5;
        /// Bit 9: Secure TSC. SNP only (masked out for SEV-ES at INIT2); needs
        /// `KVM_SET_TSC_KHZ` on the VM before SNP_LAUNCH_START.
        const SECURE_TSC = 1 << 9;
    }
}

bitflags::bitflags! {
    /// The 32-bit SEV / SEV-ES guest policy ([`KvmSevLaunchStart::policy`];
    /// `SEV_POLICY_MASK_*` in the kernel-internal `psp-sev.h`, AMD SEV API).
    ///
    /// KVM passes it to the firmware unchecked; [`SevPolicy::validate`] catches locally what
    /// the firmware would refuse. Bits 23:16 hold the minimum firmware API major version,
    /// bits 31:24 the minor version (see [`SevPolicy::api_major`]).
    ///
    /// ```
    /// use kvm_coco_uapi::SevPolicy;
    /// let p = (SevPolicy::NODBG | SevPolicy::ES).with_api_version(1, 55);
    /// assert_eq!(p.api_major(), 1);
    /// assert!(p.validate().is_ok());
    /// assert!(SevPolicy::from_bits_retain(1 << 7).validate().is_err());
    /// ```
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub struct SevPolicy: u32 {
        /// Bit 0: debugging (DBG_DECRYPT/ENCRYPT) is forbidden.
        const NODBG = 1 << 0;
        /// Bit 1: key sharing with other guests is forbidden.
        const NOKS = 1 << 1;
        /// Bit 2: SEV-ES is required.
        const ES = 1 << 2;
        /// Bit 3: sending (migration) is forbidden.
        const NOSEND = 1 << 3;
        /// Bit 4: the guest must not leave the platform's domain.
        const DOMAIN = 1 << 4;
        /// Bit 5: the guest must not be sent to a non-SEV platform.
        const SEV = 1 << 5;
    }
}

impl SevPolicy {
    /// Bits 15:6, reserved (must be zero).
    pub const RESERVED_MASK: u32 = 0x0000_FFC0;
    /// Bits 23:16: minimum firmware API major version.
    pub const API_MAJOR_MASK: u32 = 0x00FF_0000;
    /// Bits 31:24: minimum firmware API minor version.
    pub const API_MINOR_MASK: u32 = 0xFF00_0000;

    /// Minimum firmware API major version (bits 23:16).
    pub const fn api_major(self) -> u8 {
        (self.bits() >> 16) as u8
    }

    /// Minimum firmware API minor version (bits 31:24).
    pub const fn api_minor(self) -> u8 {
        (self.bits() >> 24) as u8
    }

    /// The same policy with the minimum API version replaced.
    pub const fn with_api_version(self, major: u8, minor: u8) -> Self {
        let rest = self.bits() & !(Self::API_MAJOR_MASK | Self::API_MINOR_MASK);
        Self::from_bits_retain(rest | (major as u32) << 16 | (minor as u32) << 24)
    }

    /// Checks the reserved bits (15:6 must be zero).
    pub const fn validate(self) -> Result<(), PolicyError> {
        let bad = self.bits() & Self::RESERVED_MASK;
        if bad != 0 {
            return Err(PolicyError::ReservedBits { bits: bad as u64 });
        }
        Ok(())
    }

    /// Checks that a platform running firmware API `major.minor` satisfies the policy's
    /// minimum API version (the firmware answers POLICY_FAILURE otherwise).
    pub const fn check_firmware(self, major: u8, minor: u8) -> Result<(), PolicyError> {
        check_api(self.api_major(), self.api_minor(), major, minor)
    }
}

pub(crate) const fn check_api(
    want_major: u8,
    want_minor: u8,
    have_major: u8,
    have_minor: u8,
) -> Result<(), PolicyError> {
    if have_major > want_major || (have_major == want_major && have_minor >= want_minor) {
        Ok(())
    } else {
        Err(PolicyError::ApiVersionTooHigh {
            major: want_major,
            minor: want_minor,
            have_major,
            have_minor,
        })
    }
}

// Layout facts (linux-uapi.md §2 and §3.2).
assert_layout!(KvmSevCmd, 24, 8, { id: 0, pad0: 4, data: 8, error: 16, sev_fd: 20 });
assert_layout!(KvmSevInit, 48, 8, {
    vmsa_features: 0, flags: 8, ghcb_version: 12, pad1: 14, pad2: 16
});
assert_layout!(KvmSevLaunchStart, 40, 8, {
    handle: 0, policy: 4, dh_uaddr: 8, dh_len: 16, pad0: 20, session_uaddr: 24,
    session_len: 32, pad1: 36
});
assert_layout!(KvmSevLaunchUpdateData, 16, 8, { uaddr: 0, len: 8, pad0: 12 });
assert_layout!(KvmSevLaunchSecret, 48, 8, {
    hdr_uaddr: 0, hdr_len: 8, pad0: 12, guest_uaddr: 16, guest_len: 24, pad1: 28,
    trans_uaddr: 32, trans_len: 40, pad2: 44
});
assert_layout!(KvmSevLaunchMeasure, 16, 8, { uaddr: 0, len: 8, pad0: 12 });
assert_layout!(KvmSevGuestStatus, 12, 4, { handle: 0, policy: 4, state: 8 });
assert_layout!(KvmSevDbg, 24, 8, { src_uaddr: 0, dst_uaddr: 8, len: 16, pad0: 20 });
assert_layout!(KvmSevAttestationReport, 32, 8, { mnonce: 0, uaddr: 16, len: 24, pad0: 28 });
assert_layout!(KvmSevSendStart, 72, 8, {
    policy: 0, pad0: 4, pdh_cert_uaddr: 8, pdh_cert_len: 16, pad1: 20, plat_certs_uaddr: 24,
    plat_certs_len: 32, pad2: 36, amd_certs_uaddr: 40, amd_certs_len: 48, pad3: 52,
    session_uaddr: 56, session_len: 64, pad4: 68
});
assert_layout!(KvmSevSendUpdateData, 48, 8, {
    hdr_uaddr: 0, hdr_len: 8, pad0: 12, guest_uaddr: 16, guest_len: 24, pad1: 28,
    trans_uaddr: 32, trans_len: 40, pad2: 44
});
assert_layout!(KvmSevReceiveStart, 40, 8, {
    handle: 0, policy: 4, pdh_uaddr: 8, pdh_len: 16, pad0: 20, session_uaddr: 24,
    session_len: 32, pad1: 36
});
assert_layout!(KvmSevReceiveUpdateData, 48, 8, {
    hdr_uaddr: 0, hdr_len: 8, pad0: 12, guest_uaddr: 16, guest_len: 24, pad1: 28,
    trans_uaddr: 32, trans_len: 40, pad2: 44
});
