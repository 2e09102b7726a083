//! Layout tests: every buffer against the facts tables (linux-uapi.md §8.2,
//! firmware-and-measurement.md §1.7 and §3.4), transcribed by hand.

use super::*;
use crate::{Command, SevCmd};
use core::mem::{align_of, offset_of, size_of};
use zerocopy::IntoBytes;

macro_rules! sizes {
    ( $( $ty:ty = $size:literal ),* $(,)? ) => {
        &[ $( (stringify!($ty), size_of::<$ty>(), align_of::<$ty>(), $size) ),* ]
    };
}

#[test]
fn buffer_sizes_match_the_facts() {
    let table: &[(&str, usize, usize, usize)] = sizes![
        SevDataInit = 20,
        SevDataInitEx = 36,
        SevDataPekCsr = 12,
        SevDataPekCertImport = 28,
        SevDataPdhCertExport = 28,
        SevDataDownloadFirmware = 12,
        SevDataGetId = 12,
        SevDataActivate = 8,
        SevDataDeactivate = 4,
        SevDataDecommission = 4,
        SevDataGuestStatus = 13,
        SevDataLaunchStart = 36,
        SevDataLaunchUpdateData = 20,
        SevDataLaunchUpdateVmsa = 20,
        SevDataLaunchMeasure = 20,
        SevDataLaunchSecret = 52,
        SevDataLaunchFinish = 4,
        SevDataAttestationReport = 36,
        SevDataSendStart = 68,
        SevDataSendUpdateData = 52,
        SevDataSendUpdateVmsa = 48,
        SevDataSendFinish = 4,
        SevDataSendCancel = 4,
        SevDataReceiveStart = 36,
        SevDataReceiveUpdateData = 52,
        SevDataReceiveUpdateVmsa = 52,
        SevDataReceiveFinish = 4,
        SevDataDbg = 28,
        DbgDecrypt = 28,
        DbgEncrypt = 28,
        SevDataSnpAddr = 8,
        SnpGctxCreate = 8,
        SnpDecommission = 8,
        SnpPlatformStatus = 8,
        SevDataSnpActivate = 12,
        SevDataSnpLaunchStart = 48,
        SevDataSnpLaunchUpdate = 32,
        SevDataSnpLaunchFinish = 64,
        SevDataSnpGuestStatus = 16,
        SevDataSnpGuestRequest = 24,
        SevDataSnpPageReclaim = 8,
        SevDataSnpPageUnsmash = 8,
        SevDataSnpDbg = 24,
        SnpDbgDecrypt = 24,
        SnpDbgEncrypt = 24,
        SevDataSnpInitEx = 64,
        SevDataRange = 16,
        SevDataRangeList = 8,
        SevDataSnpShutdownEx = 8,
        SevDataSnpCommit = 4,
        SevDataSnpFeatureInfo = 16,
        SnpFeatureInfo = 16,
        SevDataSnpVerifyMitigation = 64,
        SevDataSnpDownloadFirmware = 12,
        kvm_coco_uapi::SevUserDataStatus = 12,
        kvm_coco_uapi::SevUserDataSnpConfig = 64,
        kvm_coco_uapi::SevUserDataSnpVlekLoad = 16,
        DfFlush = 0,
        SnpDfFlush = 0,
        Shutdown = 0,
        FactoryReset = 0,
        PekGen = 0,
        PdhGen = 0,
        SnpInit = 0,
        SnpShutdown = 0,
    ];
    for &(name, size, align, expected) in table {
        assert_eq!(size, expected, "sizeof({name})");
        assert_eq!(align, 1, "alignof({name})");
    }
}

#[test]
fn offsets_of_irregular_buffers() {
    // The one struct without `reserved1` (facts §8.2 warning).
    assert_eq!(offset_of!(SevDataSendUpdateVmsa, hdr_address), 4);
    assert_eq!(offset_of!(SevDataSendUpdateVmsa, trans_len), 44);
    // Its siblings keep `reserved1`.
    assert_eq!(offset_of!(SevDataSendUpdateData, hdr_address), 8);
    assert_eq!(offset_of!(SevDataReceiveUpdateVmsa, hdr_address), 8);
    assert_eq!(offset_of!(SevDataLaunchSecret, trans_address), 0x28);
    assert_eq!(offset_of!(SevDataLaunchSecret, trans_len), 0x30);
    // Unaligned fields of packed structs.
    assert_eq!(offset_of!(SevDataGuestStatus, state), 12);
    assert_eq!(offset_of!(SevDataAttestationReport, mnonce), 0x10);
    assert_eq!(offset_of!(SevDataAttestationReport, len), 0x20);
    assert_eq!(offset_of!(SevDataSendStart, session_len), 64);
    assert_eq!(offset_of!(SevDataSnpLaunchStart, gosvw), 0x20);
    assert_eq!(offset_of!(SevDataSnpLaunchUpdate, address), 0x10);
    assert_eq!(offset_of!(SevDataSnpLaunchFinish, host_data), 0x20);
    assert_eq!(offset_of!(SevDataSnpInitEx, max_snp_asid), 16);
    assert_eq!(offset_of!(SevDataSnpVerifyMitigation, dst_paddr), 32);
    assert_eq!(offset_of!(SevDataSnpActivate, asid), 8);
}

/// Every command id is bound to a buffer whose length equals what the facts table of
/// `sev_cmd_buffer_len` gives, through the `Command` trait.
#[test]
fn commands_bind_the_right_buffer() {
    fn check<C: Command>(cmd: SevCmd, len: usize) {
        assert_eq!(C::CMD, cmd);
        assert_eq!(C::LEN, len, "{cmd}");
        assert_eq!(cmd.buffer_len(), Some(len), "{cmd}");
        assert_eq!(C::new_zeroed().as_bytes().len(), len);
    }
    check::<SevDataInit>(SevCmd::Init, 20);
    check::<SevDataInitEx>(SevCmd::InitEx, 36);
    check::<kvm_coco_uapi::SevUserDataStatus>(SevCmd::PlatformStatus, 12);
    check::<SevDataPekCsr>(SevCmd::PekCsr, 12);
    check::<SevDataPekCertImport>(SevCmd::PekCertImport, 28);
    check::<SevDataPdhCertExport>(SevCmd::PdhCertExport, 28);
    check::<SevDataDownloadFirmware>(SevCmd::DownloadFirmware, 12);
    check::<SevDataGetId>(SevCmd::GetId, 12);
    check::<SevDataActivate>(SevCmd::Activate, 8);
    check::<SevDataDeactivate>(SevCmd::Deactivate, 4);
    check::<SevDataDecommission>(SevCmd::Decommission, 4);
    check::<SevDataGuestStatus>(SevCmd::GuestStatus, 13);
    check::<SevDataLaunchStart>(SevCmd::LaunchStart, 36);
    check::<SevDataLaunchUpdateData>(SevCmd::LaunchUpdateData, 20);
    check::<SevDataLaunchUpdateVmsa>(SevCmd::LaunchUpdateVmsa, 20);
    check::<SevDataLaunchMeasure>(SevCmd::LaunchMeasure, 20);
    check::<SevDataLaunchSecret>(SevCmd::LaunchUpdateSecret, 52);
    check::<SevDataLaunchFinish>(SevCmd::LaunchFinish, 4);
    check::<SevDataAttestationReport>(SevCmd::AttestationReport, 36);
    check::<SevDataSendStart>(SevCmd::SendStart, 68);
    check::<SevDataSendUpdateData>(SevCmd::SendUpdateData, 52);
    check::<SevDataSendUpdateVmsa>(SevCmd::SendUpdateVmsa, 48);
    check::<SevDataSendFinish>(SevCmd::SendFinish, 4);
    check::<SevDataSendCancel>(SevCmd::SendCancel, 4);
    check::<SevDataReceiveStart>(SevCmd::ReceiveStart, 36);
    check::<SevDataReceiveUpdateData>(SevCmd::ReceiveUpdateData, 52);
    check::<SevDataReceiveUpdateVmsa>(SevCmd::ReceiveUpdateVmsa, 52);
    check::<SevDataReceiveFinish>(SevCmd::ReceiveFinish, 4);
    check::<DbgDecrypt>(SevCmd::DbgDecrypt, 28);
    check::<DbgEncrypt>(SevCmd::DbgEncrypt, 28);
    check::<Shutdown>(SevCmd::Shutdown, 0);
    check::<FactoryReset>(SevCmd::FactoryReset, 0);
    check::<PekGen>(SevCmd::PekGen, 0);
    check::<PdhGen>(SevCmd::PdhGen, 0);
    check::<DfFlush>(SevCmd::DfFlush, 0);
    check::<SnpInit>(SevCmd::SnpInit, 0);
    check::<SnpShutdown>(SevCmd::SnpShutdown, 0);
    check::<SnpDfFlush>(SevCmd::SnpDfFlush, 0);
    check::<SevDataSnpInitEx>(SevCmd::SnpInitEx, 64);
    check::<SevDataSnpShutdownEx>(SevCmd::SnpShutdownEx, 8);
    check::<SnpPlatformStatus>(SevCmd::SnpPlatformStatus, 8);
    check::<SnpGctxCreate>(SevCmd::SnpGctxCreate, 8);
    check::<SnpDecommission>(SevCmd::SnpDecommission, 8);
    check::<SevDataSnpActivate>(SevCmd::SnpActivate, 12);
    check::<SevDataSnpGuestStatus>(SevCmd::SnpGuestStatus, 16);
    check::<SevDataSnpGuestRequest>(SevCmd::SnpGuestRequest, 24);
    check::<SevDataSnpLaunchStart>(SevCmd::SnpLaunchStart, 48);
    check::<SevDataSnpLaunchUpdate>(SevCmd::SnpLaunchUpdate, 32);
    check::<SevDataSnpLaunchFinish>(SevCmd::SnpLaunchFinish, 64);
    check::<SnpDbgDecrypt>(SevCmd::SnpDbgDecrypt, 24);
    check::<SnpDbgEncrypt>(SevCmd::SnpDbgEncrypt, 24);
    check::<SevDataSnpVerifyMitigation>(SevCmd::SnpVerifyMitigation, 64);
    check::<SevDataSnpPageReclaim>(SevCmd::SnpPageReclaim, 8);
    check::<SevDataSnpPageUnsmash>(SevCmd::SnpPageUnsmash, 8);
    check::<kvm_coco_uapi::SevUserDataSnpConfig>(SevCmd::SnpConfig, 64);
    check::<SevDataSnpCommit>(SevCmd::SnpCommit, 4);
    check::<kvm_coco_uapi::SevUserDataSnpVlekLoad>(SevCmd::SnpVlekLoad, 16);
    check::<SevDataSnpFeatureInfo>(SevCmd::SnpFeatureInfo, 16);
}

/// Bitfield accessors put the bits where facts §8.2 / §3.4 say (bytes checked by hand).
#[test]
fn bitfields_land_on_the_documented_bits() {
    let mut upd = SevDataSnpLaunchUpdate::default();
    upd.set_page_size(true);
    upd.set_page_type(6); // CPUID page
    upd.set_imi_page(true);
    // page_size bit 0, page_type bits 3:1 = 0b110 -> 0x0C, imi_page bit 4 -> 0x10.
    assert_eq!(upd.as_bytes()[8..12], [0x1D, 0, 0, 0]);
    assert_eq!(upd.page_type(), 6);
    assert!(upd.page_size() && upd.imi_page());
    upd.set_page_type(0xFF); // masked to 3 bits
    assert_eq!(upd.page_type(), 7);
    assert_eq!(upd.as_bytes()[8], 0x1F);
    upd.set_page_type(1);
    upd.set_page_size(false);
    upd.set_imi_page(false);
    assert_eq!(upd.as_bytes()[8..12], [0x02, 0, 0, 0]);

    upd.set_vmpl1_perms(0x11);
    upd.set_vmpl2_perms(0x22);
    upd.set_vmpl3_perms(0x33);
    assert_eq!(upd.as_bytes()[24..28], [0x00, 0x11, 0x22, 0x33]);
    assert_eq!(
        (upd.vmpl1_perms(), upd.vmpl2_perms(), upd.vmpl3_perms()),
        (0x11, 0x22, 0x33)
    );

    let mut fin = SevDataSnpLaunchFinish::default();
    fin.set_id_block_en(true);
    fin.set_vcek_disabled(true);
    assert_eq!(fin.as_bytes()[24], 0b101);
    assert!(fin.id_block_en() && !fin.auth_key_en() && fin.vcek_disabled());
    fin.set_auth_key_en(true);
    fin.set_id_block_en(false);
    assert_eq!(fin.as_bytes()[24], 0b110);

    let mut start = SevDataSnpLaunchStart::default();
    start.set_imi_en(true);
    assert_eq!(start.as_bytes()[24], 0b10);
    assert!(!start.ma_en() && start.imi_en());

    let mut init = SevDataSnpInitEx::default();
    init.set_init_rmp(true);
    init.set_ciphertext_hiding_en(true);
    init.set_tio_en(true);
    assert_eq!(init.as_bytes()[0], 0b1_1001);
    assert!(!init.list_paddr_en() && !init.rapl_dis());

    let mut sd = SevDataSnpShutdownEx::default();
    sd.set_x86_snp_shutdown(true);
    assert_eq!(sd.as_bytes()[4], 0b10);
    assert!(!sd.iommu_snp_shutdown());

    let mut vm = SevDataSnpVerifyMitigation::default();
    vm.set_src_paddr_en(true);
    assert_eq!(vm.as_bytes()[16], 0b10);
    assert!(!vm.dst_paddr_en());

    let mut rc = SevDataSnpPageReclaim { paddr: 0x1000 };
    rc.set_page_size(true);
    assert_eq!({ rc.paddr }, 0x1001);
    assert!(rc.page_size());
}

/// Fields serialize little-endian at their documented offsets (spot checks by hand).
#[test]
fn byte_images() {
    let a = SevDataSnpActivate {
        gctx_paddr: 0x1122_3344_5566_7000,
        asid: 7,
    };
    assert_eq!(
        a.as_bytes(),
        &[0x00, 0x70, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 7, 0, 0, 0]
    );
    let v = SevDataSendUpdateVmsa {
        handle: 1,
        hdr_address: 0xAABB,
        ..Default::default()
    };
    assert_eq!(&v.as_bytes()[..8], &[1, 0, 0, 0, 0xBB, 0xAA, 0, 0]);
    let d = DbgEncrypt(SevDataDbg {
        handle: 9,
        len: 16,
        ..Default::default()
    });
    assert_eq!(d.as_bytes()[0], 9);
    assert_eq!(d.as_bytes()[24], 16);
}
