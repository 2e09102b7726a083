//! Buffers of the SEV-SNP commands.

// zerocopy's `KnownLayout` derive emits private helper types without `Debug`; every public
// type of this module derives `Debug` through the `fw_*` macros.
#![allow(missing_debug_implementations)]

use crate::command::impl_command;

fw_buffer! {
    /// A single guest-context (or status page) physical address: the layout of
    /// SNP_GCTX_CREATE, SNP_DECOMMISSION and SNP_PLATFORM_STATUS; issue it as
    /// [`SnpGctxCreate`], [`SnpDecommission`] or [`SnpPlatformStatus`].
    pub struct SevDataSnpAddr = "sev_data_snp_addr", size 8 {
        /// In: the page's physical address (low 12 bits zero, else INVALID_PARAM).
        @0 pub address: u64,
    }
}

fw_alias! {
    /// SNP_GCTX_CREATE: turns a firmware-owned page into a guest context.
    #[doc(alias = "SEV_CMD_SNP_GCTX_CREATE")]
    pub struct SnpGctxCreate(SevDataSnpAddr);
}

fw_alias! {
    /// SNP_DECOMMISSION: destroys a guest context and implicitly deactivates its ASID
    /// (which becomes dirty until the next SNP_DF_FLUSH).
    #[doc(alias = "SEV_CMD_SNP_DECOMMISSION")]
    pub struct SnpDecommission(SevDataSnpAddr);
}

fw_alias! {
    /// SNP_PLATFORM_STATUS: writes `sev_user_data_snp_status` to the page at `address`
    /// (which must be firmware-owned once SNP is initialized).
    #[doc(alias = "SEV_CMD_SNP_PLATFORM_STATUS")]
    pub struct SnpPlatformStatus(SevDataSnpAddr);
}

fw_buffer! {
    /// SNP_ACTIVATE: binds a guest context to an ASID (SEV-ES/SNP range).
    pub struct SevDataSnpActivate = "sev_data_snp_activate", size 12 {
        /// In: guest-context physical address.
        @0 pub gctx_paddr: u64,
        /// In: the ASID.
        @8 pub asid: u32,
    }
}

fw_buffer! {
    /// SNP_LAUNCH_START: starts an SNP launch with the guest policy.
    ///
    /// `flags` is the kernel's bitfield word `ma_en:1, imi_en:1, rsvd:30`; use
    /// [`ma_en`](Self::ma_en) and [`imi_en`](Self::imi_en).
    pub struct SevDataSnpLaunchStart = "sev_data_snp_launch_start", size 48 {
        /// In: guest-context physical address.
        @0 pub gctx_paddr: u64,
        /// In: the guest policy (u64).
        @8 pub policy: u64,
        /// In: migration-agent guest context (when `ma_en`).
        @16 pub ma_gctx_paddr: u64,
        /// In: bitfield word `ma_en:1, imi_en:1, rsvd:30`.
        @24 pub flags: u32,
        /// In: desired TSC frequency in kHz (SecureTSC), 0 for the default.
        @28 pub desired_tsc_khz: u32,
        /// In: guest OS-visible workarounds.
        @32 pub gosvw: [u8; 16],
    }
}

impl SevDataSnpLaunchStart {
    bit_flag! {
        /// `ma_en`: the guest is associated with a migration agent.
        flags: u32, ma_en, set_ma_en, 0
    }
    bit_flag! {
        /// `imi_en`: the launch is an incoming-migration-image launch.
        flags: u32, imi_en, set_imi_en, 1
    }
}

fw_buffer! {
    /// SNP_LAUNCH_UPDATE: adds one page to the guest and extends the launch digest.
    ///
    /// `page_info` is the bitfield word `page_size:1, page_type:3, imi_page:1, rsvd:27`;
    /// `vmpl_perms` is `rsvd3:8, vmpl1_perms:8, vmpl2_perms:8, vmpl3_perms:8`.
    /// KVM sets only `gctx_paddr`, `address`, `page_size` (4K) and `page_type`.
    pub struct SevDataSnpLaunchUpdate = "sev_data_snp_launch_update", size 32 {
        /// In: guest-context physical address.
        @0 pub gctx_paddr: u64,
        /// In: bitfield word `page_size:1, page_type:3, imi_page:1, rsvd:27`.
        @8 pub page_info: u32,
        /// Reserved, zero.
        @12 pub rsvd2: u32,
        /// In: physical address of the page (must be in the firmware/pre-guest RMP state).
        @16 pub address: u64,
        /// In: bitfield word `rsvd3:8, vmpl1_perms:8, vmpl2_perms:8, vmpl3_perms:8`.
        @24 pub vmpl_perms: u32,
        /// Reserved, zero.
        @28 pub rsvd4: u32,
    }
}

impl SevDataSnpLaunchUpdate {
    bit_flag! {
        /// `page_size`: false = 4 KiB, true = 2 MiB.
        page_info: u32, page_size, set_page_size, 0
    }
    bit_field! {
        /// `page_type`: the `SNP_PAGE_TYPE_*` value (1 normal, 2 VMSA, 3 zero, 4 unmeasured,
        /// 5 secrets, 6 CPUID).
        page_info: u32, page_type, set_page_type, u8, 1, 3
    }
    bit_flag! {
        /// `imi_page`: the page is part of the incoming migration image.
        page_info: u32, imi_page, set_imi_page, 4
    }
    bit_field! {
        /// `vmpl1_perms`: VMPL1 permission mask for the page.
        vmpl_perms: u32, vmpl1_perms, set_vmpl1_perms, u8, 8, 8
    }
    bit_field! {
        /// `vmpl2_perms`: VMPL2 permission mask for the page.
        vmpl_perms: u32, vmpl2_perms, set_vmpl2_perms, u8, 16, 8
    }
    bit_field! {
        /// `vmpl3_perms`: VMPL3 permission mask for the page.
        vmpl_perms: u32, vmpl3_perms, set_vmpl3_perms, u8, 24, 8
    }
}

fw_buffer! {
    /// SNP_LAUNCH_FINISH: measures the VMSAs, checks the ID block and finishes the launch.
    ///
    /// `flags` is the bitfield word `id_block_en:1, auth_key_en:1, vcek_disabled:1, rsvd:61`.
    pub struct SevDataSnpLaunchFinish = "sev_data_snp_launch_finish", size 64 {
        /// In: guest-context physical address.
        @0 pub gctx_paddr: u64,
        /// In: physical address of the ID block (when `id_block_en`).
        @8 pub id_block_paddr: u64,
        /// In: physical address of the ID authentication structure.
        @16 pub id_auth_paddr: u64,
        /// In: bitfield word `id_block_en:1, auth_key_en:1, vcek_disabled:1, rsvd:61`.
        @24 pub flags: u64,
        /// In: 32 bytes of host data copied into attestation reports.
        @32 pub host_data: [u8; 32],
    }
}

impl SevDataSnpLaunchFinish {
    bit_flag! {
        /// `id_block_en`: an ID block is supplied.
        flags: u64, id_block_en, set_id_block_en, 0
    }
    bit_flag! {
        /// `auth_key_en`: the ID auth structure carries an author key.
        flags: u64, auth_key_en, set_auth_key_en, 1
    }
    bit_flag! {
        /// `vcek_disabled`: the VCEK may not sign this guest's reports.
        flags: u64, vcek_disabled, set_vcek_disabled, 2
    }
}

fw_buffer! {
    /// SNP_GUEST_STATUS: writes the guest's policy, ASID, state and VCEK flag to a page.
    pub struct SevDataSnpGuestStatus = "sev_data_snp_guest_status", size 16 {
        /// In: guest-context physical address.
        @0 pub gctx_paddr: u64,
        /// In: physical address of the output page.
        @8 pub address: u64,
    }
}

fw_buffer! {
    /// SNP_GUEST_REQUEST: forwards an encrypted guest message and its response page.
    pub struct SevDataSnpGuestRequest = "sev_data_snp_guest_request", size 24 {
        /// In: guest-context physical address.
        @0 pub gctx_paddr: u64,
        /// In: physical address of the request page.
        @8 pub req_paddr: u64,
        /// In: physical address of the response page.
        @16 pub res_paddr: u64,
    }
}

fw_buffer! {
    /// SNP_PAGE_RECLAIM: returns a firmware or guest page to the hypervisor.
    pub struct SevDataSnpPageReclaim = "sev_data_snp_page_reclaim", size 8 {
        /// In: page physical address; bit 0 is the page size (1 = 2 MiB).
        @0 pub paddr: u64,
    }
}

impl SevDataSnpPageReclaim {
    bit_flag! {
        /// Page size bit: true for a 2 MiB page.
        paddr: u64, page_size, set_page_size, 0
    }
}

fw_buffer! {
    /// SNP_PAGE_UNSMASH: splits a 2 MiB RMP entry into 4 KiB entries.
    pub struct SevDataSnpPageUnsmash = "sev_data_snp_page_unsmash", size 8 {
        /// In: page physical address; bit 0 is the page size.
        @0 pub paddr: u64,
    }
}

impl SevDataSnpPageUnsmash {
    bit_flag! {
        /// Page size bit: true for a 2 MiB page.
        paddr: u64, page_size, set_page_size, 0
    }
}

fw_buffer! {
    /// The layout shared by SNP_DBG_DECRYPT and SNP_DBG_ENCRYPT; issue it as
    /// [`SnpDbgDecrypt`] or [`SnpDbgEncrypt`].
    pub struct SevDataSnpDbg = "sev_data_snp_dbg", size 24 {
        /// In: guest-context physical address.
        @0 pub gctx_paddr: u64,
        /// In: source page physical address.
        @8 pub src_addr: u64,
        /// In: destination page physical address.
        @16 pub dst_addr: u64,
    }
}

fw_alias! {
    /// SNP_DBG_DECRYPT: decrypts one guest page, if the guest policy allows debugging.
    #[doc(alias = "SEV_CMD_SNP_DBG_DECRYPT")]
    pub struct SnpDbgDecrypt(SevDataSnpDbg);
}

fw_alias! {
    /// SNP_DBG_ENCRYPT: encrypts one guest page, if the guest policy allows debugging.
    #[doc(alias = "SEV_CMD_SNP_DBG_ENCRYPT")]
    pub struct SnpDbgEncrypt(SevDataSnpDbg);
}

fw_buffer! {
    /// SNP_INIT_EX: initializes SEV-SNP with options.
    ///
    /// `flags` is the bitfield word
    /// `init_rmp:1, list_paddr_en:1, rapl_dis:1, ciphertext_hiding_en:1, tio_en:1, rsvd:27`.
    pub struct SevDataSnpInitEx = "sev_data_snp_init_ex", size 64 {
        /// In: bitfield word (see the type's documentation).
        @0 pub flags: u32,
        /// Reserved, zero.
        @4 pub rsvd1: u32,
        /// In: physical address of a [`SevDataRangeList`] (when `list_paddr_en`).
        @8 pub list_paddr: u64,
        /// In: with ciphertext hiding, the highest SNP ASID (SNP = [1, max_snp_asid]).
        @16 pub max_snp_asid: u16,
        /// Reserved, zero.
        @18 pub rsvd2: [u8; 46],
    }
}

impl SevDataSnpInitEx {
    bit_flag! {
        /// `init_rmp`: the firmware initializes the RMP.
        flags: u32, init_rmp, set_init_rmp, 0
    }
    bit_flag! {
        /// `list_paddr_en`: `list_paddr` points at a range list of host memory to protect.
        flags: u32, list_paddr_en, set_list_paddr_en, 1
    }
    bit_flag! {
        /// `rapl_dis`: disables RAPL.
        flags: u32, rapl_dis, set_rapl_dis, 2
    }
    bit_flag! {
        /// `ciphertext_hiding_en`: enables ciphertext hiding for SNP ASIDs up to `max_snp_asid`.
        flags: u32, ciphertext_hiding_en, set_ciphertext_hiding_en, 3
    }
    bit_flag! {
        /// `tio_en`: enables SEV-TIO.
        flags: u32, tio_en, set_tio_en, 4
    }
}

fw_buffer! {
    /// One range of a [`SevDataRangeList`] (not a command buffer by itself).
    pub struct SevDataRange = "sev_data_range", size 16 {
        /// Base physical address.
        @0 pub base: u64,
        /// Number of 4 KiB pages.
        @8 pub page_count: u32,
        /// Reserved, zero.
        @12 pub rsvd: u32,
    }
}

fw_buffer! {
    /// Header of the range list given to SNP_INIT_EX; `num_elements` [`SevDataRange`]
    /// entries follow it in memory (a C flexible array member).
    pub struct SevDataRangeList = "sev_data_range_list", size 8 {
        /// Number of ranges that follow.
        @0 pub num_elements: u32,
        /// Reserved, zero.
        @4 pub rsvd: u32,
    }
}

fw_buffer! {
    /// SNP_SHUTDOWN_EX: shuts SEV-SNP down with options.
    ///
    /// `flags` is the bitfield word `iommu_snp_shutdown:1, x86_snp_shutdown:1, rsvd1:30`.
    pub struct SevDataSnpShutdownEx = "sev_data_snp_shutdown_ex", size 8 {
        /// In: the size of this buffer, 8.
        @0 pub len: u32,
        /// In: bitfield word `iommu_snp_shutdown:1, x86_snp_shutdown:1, rsvd1:30`.
        @4 pub flags: u32,
    }
}

impl SevDataSnpShutdownEx {
    bit_flag! {
        /// `iommu_snp_shutdown`: also disables SNP enforcement in the IOMMU.
        flags: u32, iommu_snp_shutdown, set_iommu_snp_shutdown, 0
    }
    bit_flag! {
        /// `x86_snp_shutdown`: also clears SNP enablement on the x86 cores.
        flags: u32, x86_snp_shutdown, set_x86_snp_shutdown, 1
    }
}

fw_buffer! {
    /// SNP_COMMIT: commits the running firmware (no rollback below it afterwards).
    pub struct SevDataSnpCommit = "sev_data_snp_commit", size 4 {
        /// In: the size of this buffer, 4.
        @0 pub len: u32,
    }
}

fw_buffer! {
    /// SNP_FEATURE_INFO: writes one [`SnpFeatureInfo`] leaf to a page.
    pub struct SevDataSnpFeatureInfo = "sev_data_snp_feature_info", size 16 {
        /// In: the size of this buffer, 16.
        @0 pub length: u32,
        /// In: the leaf's ECX input (sub-function).
        @4 pub ecx_in: u32,
        /// In: physical address of the output.
        @8 pub feature_info_paddr: u64,
    }
}

fw_buffer! {
    /// The output of SNP_FEATURE_INFO: a CPUID-like register quadruple.
    ///
    /// ECX bit 1 X86_SHUTDOWN, bit 2 RAPL_DISABLE, bit 3 CIPHER_TEXT_HIDING,
    /// bit 4 AES_256_XTS_POLICY, bit 5 CXL_ALLOW_POLICY, bit 13 VERIFY_MITIGATION;
    /// EBX bit 1 SEV_TIO.
    pub struct SnpFeatureInfo = "snp_feature_info", size 16 {
        /// EAX.
        @0 pub eax: u32,
        /// EBX.
        @4 pub ebx: u32,
        /// ECX.
        @8 pub ecx: u32,
        /// EDX.
        @12 pub edx: u32,
    }
}

fw_buffer! {
    /// SNP_VERIFY_MITIGATION: queries or verifies a CPU vulnerability mitigation.
    ///
    /// `flags` is the bitfield word `dst_paddr_en:1, src_paddr_en:1, rsvd1:30`.
    pub struct SevDataSnpVerifyMitigation = "sev_data_snp_verify_mitigation", size 64 {
        /// In: the size of this buffer, 64.
        @0 pub length: u32,
        /// In: 0 REQ_STATUS, 1 REQ_VERIFY.
        @4 pub subcommand: u16,
        /// Reserved, zero.
        @6 pub rsvd: u16,
        /// In: the mitigation bit to process.
        @8 pub vector: u64,
        /// In: bitfield word `dst_paddr_en:1, src_paddr_en:1, rsvd1:30`.
        @16 pub flags: u32,
        /// Reserved, zero.
        @20 pub rsvd2: [u8; 4],
        /// In: physical address of optional input data.
        @24 pub src_paddr: u64,
        /// In: physical address the result is written to.
        @32 pub dst_paddr: u64,
        /// Reserved, zero.
        @40 pub rsvd3: [u8; 24],
    }
}

impl SevDataSnpVerifyMitigation {
    bit_flag! {
        /// `dst_paddr_en`: `dst_paddr` is valid.
        flags: u32, dst_paddr_en, set_dst_paddr_en, 0
    }
    bit_flag! {
        /// `src_paddr_en`: `src_paddr` is valid.
        flags: u32, src_paddr_en, set_src_paddr_en, 1
    }
}

fw_buffer! {
    /// The SNP firmware-download layout (same as [`SevDataDownloadFirmware`](crate::SevDataDownloadFirmware)).
    ///
    /// Linux 7.3 does not issue SNP_DOWNLOAD_FIRMWARE_EX, so this type is not bound to a
    /// command; send it with [`Psp::issue_raw`](crate::Psp::issue_raw) if needed.
    pub struct SevDataSnpDownloadFirmware = "sev_data_snp_download_firmware", size 12 {
        /// In: physical address of the image.
        @0 pub address: u64,
        /// In: image length.
        @8 pub len: u32,
    }
}

fw_marker! {
    /// SNP_INIT: initializes SEV-SNP with default options.
    pub struct SnpInit;
}

fw_marker! {
    /// SNP_SHUTDOWN: shuts SEV-SNP down.
    pub struct SnpShutdown;
}

fw_marker! {
    /// SNP_DF_FLUSH: the SNP form of DF_FLUSH, used once SNP is enabled.
    pub struct SnpDfFlush;
}

impl_command! {
    SnpGctxCreate => SnpGctxCreate,
    SnpDecommission => SnpDecommission,
    SnpPlatformStatus => SnpPlatformStatus,
    SevDataSnpActivate => SnpActivate,
    SevDataSnpLaunchStart => SnpLaunchStart,
    SevDataSnpLaunchUpdate => SnpLaunchUpdate,
    SevDataSnpLaunchFinish => SnpLaunchFinish,
    SevDataSnpGuestStatus => SnpGuestStatus,
    SevDataSnpGuestRequest => SnpGuestRequest,
    SevDataSnpPageReclaim => SnpPageReclaim,
    SevDataSnpPageUnsmash => SnpPageUnsmash,
    SnpDbgDecrypt => SnpDbgDecrypt,
    SnpDbgEncrypt => SnpDbgEncrypt,
    SevDataSnpInitEx => SnpInitEx,
    SevDataSnpShutdownEx => SnpShutdownEx,
    SevDataSnpCommit => SnpCommit,
    SevDataSnpFeatureInfo => SnpFeatureInfo,
    SevDataSnpVerifyMitigation => SnpVerifyMitigation,
    SnpInit => SnpInit,
    SnpShutdown => SnpShutdown,
    SnpDfFlush => SnpDfFlush,
}
