//! Buffers of the platform, legacy SEV and SEV-ES commands.
//!
//! Field names are the kernel's. "In"/"out" below is from the host's point of view: the
//! firmware writes "out" fields back into the buffer, and the driver copies the buffer back
//! even when the command fails.

// zerocopy's `KnownLayout` derive emits private helper types without `Debug`; every public
// type of this module derives `Debug` through the `fw_*` macros.
#![allow(missing_debug_implementations)]

use crate::command::impl_command;

/// `flags` bit of [`SevDataInit`] / [`SevDataInitEx`] that enables SEV-ES (`SEV_INIT_FLAGS_SEV_ES`).
pub const SEV_INIT_FLAGS_SEV_ES: u32 = 0x01;

/// Largest certificate or blob the `/dev/sev` driver accepts (`SEV_FW_BLOB_MAX_SIZE`, 16 KiB).
pub const SEV_FW_BLOB_MAX_SIZE: usize = 0x4000;

fw_buffer! {
    /// INIT: initializes the platform and gives the firmware its Trusted Memory Region.
    pub struct SevDataInit = "sev_data_init", size 20 {
        /// In: [`SEV_INIT_FLAGS_SEV_ES`] to enable SEV-ES.
        @0 pub flags: u32,
        /// Reserved, zero.
        @4 pub reserved: u32,
        /// In: physical address of the TMR (1 MiB, 1 MiB-aligned; 2 MiB with SNP).
        @8 pub tmr_address: u64,
        /// In: TMR length in bytes.
        @16 pub tmr_len: u32,
    }
}

fw_buffer! {
    /// INIT_EX: INIT with a host-supplied non-volatile storage area (32 KiB).
    pub struct SevDataInitEx = "sev_data_init_ex", size 36 {
        /// In: the size of this buffer, 36.
        @0 pub length: u32,
        /// In: [`SEV_INIT_FLAGS_SEV_ES`].
        @4 pub flags: u32,
        /// In: physical address of the TMR.
        @8 pub tmr_address: u64,
        /// In: TMR length.
        @16 pub tmr_len: u32,
        /// Reserved, zero.
        @20 pub reserved: u32,
        /// In: physical address of the NV area (0: the firmware uses its own SPI storage).
        @24 pub nv_address: u64,
        /// In: NV area length.
        @32 pub nv_len: u32,
    }
}

fw_buffer! {
    /// PEK_CSR: writes a certificate signing request for the PEK.
    ///
    /// With `len` too small the firmware fails with INVALID_LEN and writes the needed length.
    pub struct SevDataPekCsr = "sev_data_pek_csr", size 12 {
        /// In: physical address of the CSR output buffer.
        @0 pub address: u64,
        /// In/out: buffer length; the CSR length on return.
        @8 pub len: u32,
    }
}

fw_buffer! {
    /// PEK_CERT_IMPORT: imports the PEK certificate signed by the owner, plus the OCA certificate.
    pub struct SevDataPekCertImport = "sev_data_pek_cert_import", size 28 {
        /// In: physical address of the PEK certificate.
        @0 pub pek_cert_address: u64,
        /// In: its length.
        @8 pub pek_cert_len: u32,
        /// Reserved, zero.
        @12 pub reserved: u32,
        /// In: physical address of the OCA certificate.
        @16 pub oca_cert_address: u64,
        /// In: its length.
        @24 pub oca_cert_len: u32,
    }
}

fw_buffer! {
    /// PDH_CERT_EXPORT: exports the PDH certificate and the platform chain (PEK, OCA, CEK).
    pub struct SevDataPdhCertExport = "sev_data_pdh_cert_export", size 28 {
        /// In: physical address of the PDH certificate output buffer.
        @0 pub pdh_cert_address: u64,
        /// In/out: its length.
        @8 pub pdh_cert_len: u32,
        /// Reserved, zero.
        @12 pub reserved: u32,
        /// In: physical address of the certificate-chain output buffer.
        @16 pub cert_chain_address: u64,
        /// In/out: its length.
        @24 pub cert_chain_len: u32,
    }
}

fw_buffer! {
    /// DOWNLOAD_FIRMWARE: installs a firmware image.
    pub struct SevDataDownloadFirmware = "sev_data_download_firmware", size 12 {
        /// In: physical address of the image.
        @0 pub address: u64,
        /// In: image length.
        @8 pub len: u32,
    }
}

fw_buffer! {
    /// GET_ID: writes the two 64-byte chip identifiers.
    pub struct SevDataGetId = "sev_data_get_id", size 12 {
        /// In: physical address of the output buffer.
        @0 pub address: u64,
        /// In/out: buffer length; the needed length on INVALID_LEN.
        @8 pub len: u32,
    }
}

fw_buffer! {
    /// ACTIVATE: binds a guest to an ASID and installs its key (legacy SEV, SEV-ES).
    ///
    /// An ASID that is dirty (deactivated since the last DF_FLUSH) fails with DFFLUSH_REQUIRED.
    pub struct SevDataActivate = "sev_data_activate", size 8 {
        /// In: guest handle.
        @0 pub handle: u32,
        /// In: the ASID (SEV-ES: 1 ≤ asid < min_sev_asid; SEV: min_sev_asid ≤ asid ≤ max).
        @4 pub asid: u32,
    }
}

fw_buffer! {
    /// DEACTIVATE: unbinds a guest from its ASID, which becomes dirty until a DF_FLUSH.
    pub struct SevDataDeactivate = "sev_data_deactivate", size 4 {
        /// In: guest handle.
        @0 pub handle: u32,
    }
}

fw_buffer! {
    /// DECOMMISSION: destroys a guest context. Fails with ACTIVE while an ASID is bound.
    pub struct SevDataDecommission = "sev_data_decommission", size 4 {
        /// In: guest handle.
        @0 pub handle: u32,
    }
}

fw_buffer! {
    /// GUEST_STATUS: reads a guest's policy, ASID and state.
    pub struct SevDataGuestStatus = "sev_data_guest_status", size 13 {
        /// In: guest handle.
        @0 pub handle: u32,
        /// Out: guest policy.
        @4 pub policy: u32,
        /// Out: bound ASID (0 if none).
        @8 pub asid: u32,
        /// Out: guest state (0 UNINIT, 1 LUPDATE, 2 LSECRET, 3 RUNNING, 4 SUPDATE, 5 RUPDATE).
        @12 pub state: u8,
    }
}

fw_buffer! {
    /// LAUNCH_START: creates a guest context from a policy and, optionally, an owner session.
    pub struct SevDataLaunchStart = "sev_data_launch_start", size 36 {
        /// In/out: 0 to create a new handle (written back), or an existing handle to share its keys.
        @0 pub handle: u32,
        /// In: guest policy.
        @4 pub policy: u32,
        /// In: physical address of the guest owner's Diffie-Hellman certificate.
        @8 pub dh_cert_address: u64,
        /// In: its length.
        @16 pub dh_cert_len: u32,
        /// Reserved, zero.
        @20 pub reserved: u32,
        /// In: physical address of the session blob.
        @24 pub session_address: u64,
        /// In: its length.
        @32 pub session_len: u32,
    }
}

fw_buffer! {
    /// LAUNCH_UPDATE_DATA: encrypts guest memory in place and extends the launch digest.
    pub struct SevDataLaunchUpdateData = "sev_data_launch_update_data", size 20 {
        /// In: guest handle.
        @0 pub handle: u32,
        /// Reserved, zero.
        @4 pub reserved: u32,
        /// In: physical address of the memory (16-byte aligned).
        @8 pub address: u64,
        /// In: length (multiple of 16).
        @16 pub len: u32,
    }
}

fw_buffer! {
    /// LAUNCH_UPDATE_VMSA: encrypts a vCPU's VMSA page (SEV-ES) and extends the launch digest.
    pub struct SevDataLaunchUpdateVmsa = "sev_data_launch_update_vmsa", size 20 {
        /// In: guest handle.
        @0 pub handle: u32,
        /// Reserved, zero.
        @4 pub reserved: u32,
        /// In: physical address of the VMSA page.
        @8 pub address: u64,
        /// In: length (4096).
        @16 pub len: u32,
    }
}

fw_buffer! {
    /// LAUNCH_MEASURE: writes the launch measurement (HMAC of the digest, plus the mnonce).
    pub struct SevDataLaunchMeasure = "sev_data_launch_measure", size 20 {
        /// In: guest handle.
        @0 pub handle: u32,
        /// Reserved, zero.
        @4 pub reserved: u32,
        /// In: physical address of the output buffer (0 to query the length).
        @8 pub address: u64,
        /// In/out: buffer length; the measurement length (48) on return.
        @16 pub len: u32,
    }
}

fw_buffer! {
    /// LAUNCH_UPDATE_SECRET (LAUNCH_SECRET in the SEV API): injects a wrapped secret.
    pub struct SevDataLaunchSecret = "sev_data_launch_secret", size 52 {
        /// In: guest handle.
        @0 pub handle: u32,
        /// Reserved, zero.
        @4 pub reserved1: u32,
        /// In: physical address of the packet header.
        @8 pub hdr_address: u64,
        /// In: header length.
        @16 pub hdr_len: u32,
        /// Reserved, zero.
        @20 pub reserved2: u32,
        /// In: guest physical address the secret is written to.
        @24 pub guest_address: u64,
        /// In: length of the guest region.
        @32 pub guest_len: u32,
        /// Reserved, zero.
        @36 pub reserved3: u32,
        /// In: physical address of the encrypted secret.
        @40 pub trans_address: u64,
        /// In: its length.
        @48 pub trans_len: u32,
    }
}

fw_buffer! {
    /// LAUNCH_FINISH: ends the launch; the guest becomes RUNNING.
    pub struct SevDataLaunchFinish = "sev_data_launch_finish", size 4 {
        /// In: guest handle.
        @0 pub handle: u32,
    }
}

fw_buffer! {
    /// ATTESTATION_REPORT: the legacy SEV attestation report (0xD0 bytes).
    pub struct SevDataAttestationReport = "sev_data_attestation_report", size 36 {
        /// In: guest handle.
        @0 pub handle: u32,
        /// Reserved, zero.
        @4 pub reserved: u32,
        /// In: physical address of the report buffer (0 to query the length).
        @8 pub address: u64,
        /// In: the caller's nonce, copied into the report.
        @16 pub mnonce: [u8; 16],
        /// In/out: buffer length; the report length on return.
        @32 pub len: u32,
    }
}

fw_buffer! {
    /// SEND_START: starts migrating a guest out to a target platform.
    pub struct SevDataSendStart = "sev_data_send_start", size 68 {
        /// In: guest handle.
        @0 pub handle: u32,
        /// Out: guest policy.
        @4 pub policy: u32,
        /// In: physical address of the target's PDH certificate.
        @8 pub pdh_cert_address: u64,
        /// In: its length.
        @16 pub pdh_cert_len: u32,
        /// Reserved, zero.
        @20 pub reserved1: u32,
        /// In: physical address of the target platform's certificates.
        @24 pub plat_certs_address: u64,
        /// In: their length.
        @32 pub plat_certs_len: u32,
        /// Reserved, zero.
        @36 pub reserved2: u32,
        /// In: physical address of the AMD certificates.
        @40 pub amd_certs_address: u64,
        /// In: their length.
        @48 pub amd_certs_len: u32,
        /// Reserved, zero.
        @52 pub reserved3: u32,
        /// In: physical address of the session output buffer.
        @56 pub session_address: u64,
        /// In/out: its length.
        @64 pub session_len: u32,
    }
}

fw_buffer! {
    /// SEND_UPDATE_DATA: re-encrypts guest memory with the transport key.
    pub struct SevDataSendUpdateData = "sev_data_send_update_data", size 52 {
        /// In: guest handle.
        @0 pub handle: u32,
        /// Reserved, zero.
        @4 pub reserved1: u32,
        /// In: physical address of the packet header output.
        @8 pub hdr_address: u64,
        /// In/out: header length.
        @16 pub hdr_len: u32,
        /// Reserved, zero.
        @20 pub reserved2: u32,
        /// In: guest physical address of the memory.
        @24 pub guest_address: u64,
        /// In: its length.
        @32 pub guest_len: u32,
        /// Reserved, zero.
        @36 pub reserved3: u32,
        /// In: physical address of the transport output.
        @40 pub trans_address: u64,
        /// In: its length.
        @48 pub trans_len: u32,
    }
}

fw_buffer! {
    /// SEND_UPDATE_VMSA: re-encrypts a VMSA with the transport key.
    ///
    /// Unlike every sibling, the kernel's struct has **no `reserved1`** after `handle`:
    /// `hdr_address` sits at offset 4 and the size is 48, not 52. This mirrors the kernel
    /// header exactly (KVM never issues SEND_UPDATE_VMSA).
    pub struct SevDataSendUpdateVmsa = "sev_data_send_update_vmsa", size 48 {
        /// In: guest handle.
        @0 pub handle: u32,
        /// In: physical address of the packet header output.
        @4 pub hdr_address: u64,
        /// In/out: header length.
        @12 pub hdr_len: u32,
        /// Reserved, zero.
        @16 pub reserved2: u32,
        /// In: guest physical address of the VMSA.
        @20 pub guest_address: u64,
        /// In: its length.
        @28 pub guest_len: u32,
        /// Reserved, zero.
        @32 pub reserved3: u32,
        /// In: physical address of the transport output.
        @36 pub trans_address: u64,
        /// In: its length.
        @44 pub trans_len: u32,
    }
}

fw_buffer! {
    /// SEND_FINISH: completes an outgoing migration.
    pub struct SevDataSendFinish = "sev_data_send_finish", size 4 {
        /// In: guest handle.
        @0 pub handle: u32,
    }
}

fw_buffer! {
    /// SEND_CANCEL: cancels an outgoing migration.
    pub struct SevDataSendCancel = "sev_data_send_cancel", size 4 {
        /// In: guest handle.
        @0 pub handle: u32,
    }
}

fw_buffer! {
    /// RECEIVE_START: creates a guest context for an incoming migration.
    pub struct SevDataReceiveStart = "sev_data_receive_start", size 36 {
        /// In/out: 0 for a new handle (written back).
        @0 pub handle: u32,
        /// In: guest policy.
        @4 pub policy: u32,
        /// In: physical address of the source's PDH certificate.
        @8 pub pdh_cert_address: u64,
        /// In: its length.
        @16 pub pdh_cert_len: u32,
        /// Reserved, zero.
        @20 pub reserved1: u32,
        /// In: physical address of the session blob.
        @24 pub session_address: u64,
        /// In: its length.
        @32 pub session_len: u32,
    }
}

fw_buffer! {
    /// RECEIVE_UPDATE_DATA: imports transported guest memory.
    pub struct SevDataReceiveUpdateData = "sev_data_receive_update_data", size 52 {
        /// In: guest handle.
        @0 pub handle: u32,
        /// Reserved, zero.
        @4 pub reserved1: u32,
        /// In: physical address of the packet header.
        @8 pub hdr_address: u64,
        /// In: header length.
        @16 pub hdr_len: u32,
        /// Reserved, zero.
        @20 pub reserved2: u32,
        /// In: guest physical address of the destination.
        @24 pub guest_address: u64,
        /// In: its length.
        @32 pub guest_len: u32,
        /// Reserved, zero.
        @36 pub reserved3: u32,
        /// In: physical address of the transported data.
        @40 pub trans_address: u64,
        /// In: its length.
        @48 pub trans_len: u32,
    }
}

fw_buffer! {
    /// RECEIVE_UPDATE_VMSA: imports a transported VMSA.
    pub struct SevDataReceiveUpdateVmsa = "sev_data_receive_update_vmsa", size 52 {
        /// In: guest handle.
        @0 pub handle: u32,
        /// Reserved, zero.
        @4 pub reserved1: u32,
        /// In: physical address of the packet header.
        @8 pub hdr_address: u64,
        /// In: header length.
        @16 pub hdr_len: u32,
        /// Reserved, zero.
        @20 pub reserved2: u32,
        /// In: guest physical address of the VMSA.
        @24 pub guest_address: u64,
        /// In: its length.
        @32 pub guest_len: u32,
        /// Reserved, zero.
        @36 pub reserved3: u32,
        /// In: physical address of the transported data.
        @40 pub trans_address: u64,
        /// In: its length.
        @48 pub trans_len: u32,
    }
}

fw_buffer! {
    /// RECEIVE_FINISH: completes an incoming migration.
    pub struct SevDataReceiveFinish = "sev_data_receive_finish", size 4 {
        /// In: guest handle.
        @0 pub handle: u32,
    }
}

fw_buffer! {
    /// The layout shared by DBG_DECRYPT and DBG_ENCRYPT; issue it as [`DbgDecrypt`] or [`DbgEncrypt`].
    pub struct SevDataDbg = "sev_data_dbg", size 28 {
        /// In: guest handle.
        @0 pub handle: u32,
        /// Reserved, zero.
        @4 pub reserved: u32,
        /// In: source physical address.
        @8 pub src_addr: u64,
        /// In: destination physical address.
        @16 pub dst_addr: u64,
        /// In: length (multiple of 16).
        @24 pub len: u32,
    }
}

fw_alias! {
    /// DBG_DECRYPT: decrypts guest memory, if the guest policy allows debugging.
    #[doc(alias = "SEV_CMD_DBG_DECRYPT")]
    pub struct DbgDecrypt(SevDataDbg);
}

fw_alias! {
    /// DBG_ENCRYPT: encrypts into guest memory, if the guest policy allows debugging.
    #[doc(alias = "SEV_CMD_DBG_ENCRYPT")]
    pub struct DbgEncrypt(SevDataDbg);
}

fw_marker! {
    /// SHUTDOWN: returns the platform to UNINIT.
    pub struct Shutdown;
}

fw_marker! {
    /// FACTORY_RESET (PLATFORM_RESET): deletes the platform's persistent keys and state.
    pub struct FactoryReset;
}

fw_marker! {
    /// PEK_GEN: generates a new PEK (and PDH); the old certificates become invalid.
    pub struct PekGen;
}

fw_marker! {
    /// PDH_GEN: generates a new PDH key.
    pub struct PdhGen;
}

fw_marker! {
    /// DF_FLUSH: cleans dirty ASIDs and flushes the data-fabric write buffers.
    ///
    /// Fails with WBINVD_REQUIRED unless every core did a WBINVD since the last DEACTIVATE;
    /// see [`AsidManager`](crate::AsidManager) for the host protocol.
    pub struct DfFlush;
}

impl_command! {
    SevDataInit => Init,
    SevDataInitEx => InitEx,
    SevDataPekCsr => PekCsr,
    SevDataPekCertImport => PekCertImport,
    SevDataPdhCertExport => PdhCertExport,
    SevDataDownloadFirmware => DownloadFirmware,
    SevDataGetId => GetId,
    SevDataActivate => Activate,
    SevDataDeactivate => Deactivate,
    SevDataDecommission => Decommission,
    SevDataGuestStatus => GuestStatus,
    SevDataLaunchStart => LaunchStart,
    SevDataLaunchUpdateData => LaunchUpdateData,
    SevDataLaunchUpdateVmsa => LaunchUpdateVmsa,
    SevDataLaunchMeasure => LaunchMeasure,
    SevDataLaunchSecret => LaunchUpdateSecret,
    SevDataLaunchFinish => LaunchFinish,
    SevDataAttestationReport => AttestationReport,
    SevDataSendStart => SendStart,
    SevDataSendUpdateData => SendUpdateData,
    SevDataSendUpdateVmsa => SendUpdateVmsa,
    SevDataSendFinish => SendFinish,
    SevDataSendCancel => SendCancel,
    SevDataReceiveStart => ReceiveStart,
    SevDataReceiveUpdateData => ReceiveUpdateData,
    SevDataReceiveUpdateVmsa => ReceiveUpdateVmsa,
    SevDataReceiveFinish => ReceiveFinish,
    DbgDecrypt => DbgDecrypt,
    DbgEncrypt => DbgEncrypt,
    Shutdown => Shutdown,
    FactoryReset => FactoryReset,
    PekGen => PekGen,
    PdhGen => PdhGen,
    DfFlush => DfFlush,
}

// The firmware uses these `/dev/sev` user structs directly as command buffers
// (kernel `sev_cmd_buffer_len()`): PLATFORM_STATUS, SNP_CONFIG and SNP_VLEK_LOAD.
impl_command! {
    kvm_coco_uapi::sev_dev::SevUserDataStatus => PlatformStatus,
    kvm_coco_uapi::sev_dev::SevUserDataSnpConfig => SnpConfig,
    kvm_coco_uapi::sev_dev::SevUserDataSnpVlekLoad => SnpVlekLoad,
}
