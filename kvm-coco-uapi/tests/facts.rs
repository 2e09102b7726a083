//! Values from the facts tables (linux-uapi.md: §2, §3.1, §3.6, §3.7, §4, §5.1, §7), typed
//! by hand from the documentation, never from this crate's output.

use kvm_coco_uapi::*;

#[test]
fn ioctl_numbers_match_the_facts() {
    let expected: &[(&str, u32, u32)] = &[
        ("KVM_MEMORY_ENCRYPT_OP", KVM_MEMORY_ENCRYPT_OP, 0xC008_AEBA),
        (
            "KVM_MEMORY_ENCRYPT_REG_REGION",
            KVM_MEMORY_ENCRYPT_REG_REGION,
            0x8010_AEBB,
        ),
        (
            "KVM_MEMORY_ENCRYPT_UNREG_REGION",
            KVM_MEMORY_ENCRYPT_UNREG_REGION,
            0x8010_AEBC,
        ),
        ("KVM_GET_DEVICE_ATTR", KVM_GET_DEVICE_ATTR, 0x4018_AEE2),
        ("KVM_HAS_DEVICE_ATTR", KVM_HAS_DEVICE_ATTR, 0x4018_AEE3),
        ("KVM_SET_DEVICE_ATTR", KVM_SET_DEVICE_ATTR, 0x4018_AEE1),
        (
            "KVM_SET_USER_MEMORY_REGION2",
            KVM_SET_USER_MEMORY_REGION2,
            0x40A0_AE49,
        ),
        (
            "KVM_SET_MEMORY_ATTRIBUTES",
            KVM_SET_MEMORY_ATTRIBUTES,
            0x4020_AED2,
        ),
        (
            "KVM_CREATE_GUEST_MEMFD",
            KVM_CREATE_GUEST_MEMFD,
            0xC040_AED4,
        ),
        ("KVM_PRE_FAULT_MEMORY", KVM_PRE_FAULT_MEMORY, 0xC040_AED5),
        ("KVM_ENABLE_CAP", KVM_ENABLE_CAP, 0x4068_AEA3),
        ("KVM_CHECK_EXTENSION", KVM_CHECK_EXTENSION, 0xAE03),
        ("KVM_CREATE_VM", KVM_CREATE_VM, 0xAE01),
        ("KVM_CREATE_VCPU", KVM_CREATE_VCPU, 0xAE41),
        ("KVM_RUN", KVM_RUN, 0xAE80),
        ("KVM_SET_CPUID2", KVM_SET_CPUID2, 0x4008_AE90),
        ("KVM_SET_TSC_KHZ", KVM_SET_TSC_KHZ, 0xAEA2),
        ("SEV_ISSUE_CMD", SEV_ISSUE_CMD, 0xC010_5300),
        ("KVM_GET_API_VERSION", KVM_GET_API_VERSION, 0xAE00),
        ("KVM_GET_VCPU_MMAP_SIZE", KVM_GET_VCPU_MMAP_SIZE, 0xAE04),
        (
            "KVM_GET_SUPPORTED_CPUID",
            KVM_GET_SUPPORTED_CPUID,
            0xC008_AE05,
        ),
    ];
    for (name, got, want) in expected {
        assert_eq!(got, want, "{name}: {got:#x} != {want:#x}");
    }
}

#[test]
fn ioc_encoding_fields() {
    use kvm_coco_uapi::ioctl::*;
    // KVM_GET_REGS = _IOR(KVMIO, 0x81, struct kvm_regs /* 144 bytes */) = 0x8090AE81 (§5.1).
    assert_eq!(ior(KVMIO, 0x81, 144), 0x8090_AE81);
    // KVM_SET_SREGS = _IOW(KVMIO, 0x84, struct kvm_sregs /* 312 bytes */) = 0x4138AE84.
    assert_eq!(iow(KVMIO, 0x84, 312), 0x4138_AE84);
    assert_eq!(io(KVMIO, 0x80), 0xAE80);
    // Direction bits are the top two.
    assert_eq!(iowr(0, 0, 0) >> 30, 3);
}

#[test]
fn command_ids_match_the_facts() {
    let sev: &[(u32, u32)] = &[
        (KVM_SEV_INIT, 0),
        (KVM_SEV_LAUNCH_UPDATE_VMSA, 4),
        (KVM_SEV_SEND_UPDATE_VMSA, 10),
        (KVM_SEV_RECEIVE_UPDATE_VMSA, 14),
        (KVM_SEV_GUEST_STATUS, 16),
        (KVM_SEV_CERT_EXPORT, 19),
        (KVM_SEV_SEND_CANCEL, 21),
        (KVM_SEV_INIT2, 22),
        (KVM_SEV_SNP_LAUNCH_START, 100),
        (KVM_SEV_SNP_ENABLE_REQ_CERTS, 103),
        (KVM_SEV_NR_MAX, 104),
        (KVM_TDX_CAPABILITIES, 0),
        (KVM_TDX_GET_CPUID, 5),
        (SEV_FACTORY_RESET, 0),
        (SNP_VLEK_LOAD, 12),
        (SEV_MAX, 13),
    ];
    for (got, want) in sev {
        assert_eq!(got, want);
    }
    for id in SevCmdId::ALL {
        assert_eq!(SevCmdId::from_raw(id.raw()), Some(id));
    }
    assert_eq!(SevCmdId::from_raw(23), None);
    assert_eq!(SevCmdId::from_raw(99), None);
    assert_eq!(SevCmdId::from_raw(104), None);
    assert!(!SevCmdId::CertExport.has_handler());
    assert!(SevCmdId::SnpEnableReqCerts.is_snp());
    assert!(!SevCmdId::Init2.is_snp());
    for id in TdxCmdId::ALL {
        assert_eq!(TdxCmdId::from_raw(id.raw()), Some(id));
    }
    assert_eq!(TdxCmdId::from_raw(6), None);
    assert_eq!(TdxCmdId::Capabilities.scope(), TdxScope::Vm);
    assert_eq!(TdxCmdId::InitMemRegion.scope(), TdxScope::Vcpu);
    for c in SevPlatformCmd::ALL {
        assert_eq!(SevPlatformCmd::from_raw(c.raw()), Some(c));
    }
    assert_eq!(SevPlatformCmd::from_raw(13), None);
    assert!(!SevPlatformCmd::SnpCommit.needs_write()); // 7.3: no writable check
    assert!(SevPlatformCmd::SnpSetConfig.needs_write());
}

#[test]
fn exit_and_capability_numbers_match_the_facts() {
    assert_eq!(KVM_EXIT_MEMORY_FAULT, 39);
    assert_eq!(KVM_EXIT_TDX, 40);
    assert_eq!(KVM_EXIT_SNP_REQ_CERTS, 43);
    assert_eq!(KVM_SYSTEM_EVENT_SEV_TERM, 6);
    assert_eq!(KVM_SYSTEM_EVENT_TDX_FATAL, 7);
    assert_eq!(KVM_CAP_VM_TYPES, 235);
    assert_eq!(KVM_CAP_EXIT_HYPERCALL, 201);
    assert_eq!(KVM_CAP_GUEST_MEMFD_FLAGS, 244);
    assert_eq!(1u64 << KVM_HC_MAP_GPA_RANGE, 0x1000);
    assert_eq!(KVM_MAP_GPA_RANGE_ENCRYPTED, 0x10);
    assert_eq!(KVM_X86_SNP_POLICY_BITS, 1);
    assert_eq!(KVM_X86_SEV_SNP_REQ_CERTS, 2);
    assert_eq!(KVM_TDX_MEASURE_MEMORY_REGION, 1);
}

#[test]
fn vm_types_bitmap() {
    let all = VmTypes::from_check_extension(0b11_1111);
    assert_eq!(all.types().count(), 6);
    // SNP host with AMD-SB-3023 firmware: SEV-ES is missing.
    let snp_host = VmTypes::DEFAULT | VmTypes::SEV | VmTypes::SNP;
    assert!(!snp_host.supports(VmType::SevEs));
    assert!(snp_host.supports(VmType::Snp));
    assert_eq!(VmType::Tdx.bit().bits(), 1 << 5);
    assert_eq!(VmType::from_raw(6), None);
    assert_eq!(VmType::from_raw(4), Some(VmType::Snp));
}

#[test]
fn snp_policy_must_be_one() {
    // 0x30000 = SMT | RSVD_MBO, the usual QEMU default: valid.
    assert_eq!(
        SnpPolicy::from_bits_retain(0x30000).validate(SnpPolicy::KVM_SNP_POLICY_MASK_VALID),
        Ok(())
    );
    // Bit 17 clear.
    assert_eq!(
        SnpPolicy::from_bits_retain(0x10000).validate(u64::MAX),
        Err(PolicyError::MustBeOne { bit: 17 })
    );
}

#[test]
fn snp_policy_reserved_bits() {
    // Bit 26 and above are reserved in 7.3.
    let p = SnpPolicy::from_bits_retain(0x20000 | 1 << 26 | 1 << 40);
    assert_eq!(
        p.validate(u64::MAX),
        Err(PolicyError::ReservedBits {
            bits: 1 << 26 | 1 << 40
        })
    );
    // KVM_SNP_POLICY_MASK_VALID from the §3.7 table: bits 0..=17 and 19..=25.
    let valid: u64 = (0..=17).chain(19..=25).map(|b| 1u64 << b).sum();
    assert_eq!(SnpPolicy::KVM_SNP_POLICY_MASK_VALID, valid);
    assert_eq!(SnpPolicy::SNP_POLICY_MASK_BASE, 0x1F_FFFF);
}

#[test]
fn snp_policy_unsupported_bits() {
    // A host that reports only the base mask minus MIGRATE_MA (no feature_info).
    let supported = 0x1F_FFFF & !(1 << 18);
    let p = SnpPolicy::RSVD_MBO | SnpPolicy::RAPL_DIS;
    assert_eq!(
        p.validate(supported),
        Err(PolicyError::Unsupported { bits: 1 << 23 })
    );
    // MIGRATE_MA is never supported by KVM 7.3.
    let p = SnpPolicy::RSVD_MBO | SnpPolicy::MIGRATE_MA;
    assert_eq!(
        p.validate(SnpPolicy::KVM_SNP_POLICY_MASK_VALID),
        Err(PolicyError::Unsupported { bits: 1 << 18 })
    );
    // A host without SNP reports 0: everything is unsupported.
    assert!(matches!(
        SnpPolicy::RSVD_MBO.validate(0),
        Err(PolicyError::Unsupported { .. })
    ));
}

#[test]
fn snp_policy_abi_version() {
    let p = (SnpPolicy::RSVD_MBO).with_abi_version(1, 55);
    assert_eq!(p.bits(), 0x20000 | 0x0137);
    assert_eq!((p.abi_major(), p.abi_minor()), (1, 55));
    assert_eq!(p.check_firmware(1, 55), Ok(()));
    assert_eq!(p.check_firmware(2, 0), Ok(()));
    assert!(matches!(
        p.check_firmware(1, 54),
        Err(PolicyError::ApiVersionTooHigh { .. })
    ));
}

#[test]
fn sev_policy_checks() {
    // §3.7: NODBG bit 0 ... SEV bit 5, API_MAJOR 23:16, API_MINOR 31:24.
    assert_eq!(SevPolicy::NODBG.bits(), 1);
    assert_eq!(SevPolicy::SEV.bits(), 1 << 5);
    let p = (SevPolicy::NODBG | SevPolicy::ES).with_api_version(0, 17);
    assert_eq!(p.bits(), (17u32 << 24) | 0b101);
    assert_eq!((p.api_major(), p.api_minor()), (0, 17));
    assert_eq!(p.validate(), Ok(()));
    assert_eq!(p.check_firmware(0, 24), Ok(()));
    assert!(p.check_firmware(0, 16).is_err());
    for bit in 6..16 {
        assert_eq!(
            SevPolicy::from_bits_retain(1 << bit).validate(),
            Err(PolicyError::ReservedBits { bits: 1 << bit })
        );
    }
}

#[test]
fn sev_ret_code_names_and_values() {
    // §7.3 table.
    let table: &[(u32, &str)] = &[
        (0x00, "SEV_RET_SUCCESS"),
        (0x01, "SEV_RET_INVALID_PLATFORM_STATE"),
        (0x02, "SEV_RET_INVALID_GUEST_STATE"),
        (0x03, "SEV_RET_INVALID_CONFIG"),
        (0x13, "SEV_RET_HWSEV_RET_PLATFORM"),
        (0x16, "SEV_RET_INVALID_PARAM"),
        (0x1D, "SEV_RET_AEAD_OFLOW"),
        (0x1F, "SEV_RET_EXIT_RING_BUFFER"),
        (0x27, "SEV_RET_INVALID_KEY"),
        (0x28, "SEV_RET_SHUTDOWN_INCOMPLETE"),
        (0x3A, "SEV_RET_IN_USE"),
        (0x3F, "SEV_RET_SEV_STATUS_RESPONSE_TOO_LARGE"),
        (0xFFFF_FFFF, "SEV_RET_NO_FW_CALL"),
    ];
    for (raw, name) in table {
        let c = SevRetCode::from_raw(*raw);
        assert_eq!(c.name(), *name);
        assert_eq!(c.raw(), *raw);
    }
    for unnamed in [0x1E, 0x29, 0x2F, 0x34, 0x40, 0xFFFF] {
        assert_eq!(SevRetCode::from_raw(unnamed), SevRetCode::Unknown(unnamed));
        assert_eq!(SevRetCode::from_raw(unnamed).raw(), unnamed);
    }
    // 0x00..=0x3F minus the 9 unnamed codes, plus NO_FW_CALL.
    assert_eq!(SevRetCode::ALL.len(), 64 - 9 + 1);
    assert_eq!(SEV_RET_INAVLID_CONFIG, SEV_RET_INVALID_CONFIG);
    assert_eq!(SEV_RET_MAX, 0x40);
    assert!(SevRetCode::Success.is_success());
    assert!(!SevRetCode::NoFwCall.is_success());
}

#[test]
fn sev_ret_code_display() {
    assert_eq!(
        SevRetCode::InvalidGuestState.to_string(),
        "INVALID_GUEST_STATE (0x02)"
    );
    assert_eq!(
        SevRetCode::InvalidPageState.to_string(),
        "INVALID_PAGE_STATE (0x1A)"
    );
    assert_eq!(SevRetCode::NoFwCall.to_string(), "NO_FW_CALL (-1)");
    assert_eq!(SevRetCode::Unknown(0x1E).to_string(), "UNKNOWN (0x1E)");
    assert!(!SevRetCode::PolicyFailure.description().is_empty());
}

#[test]
fn platform_state() {
    let mut s = SevUserDataStatus::default();
    assert_eq!(s.platform_state(), Ok(SevPlatformState::Uninit));
    s.state = 2;
    assert_eq!(s.platform_state(), Ok(SevPlatformState::Working));
    s.state = 7;
    assert_eq!(s.platform_state(), Err(7));
    s.flags = 0x100;
    assert!(s.config_es());
}

#[test]
fn snp_status_bitfields_follow_gcc_lsb_first_allocation() {
    use zerocopy::FromBytes;
    // Byte 3 bit 0 = is_rmp_initialized; dword @8: bit 2 = vlek_en, bit 6 = ciphertext_hiding_en (§7.4).
    let mut raw = [0u8; 32];
    raw[3] = 0b1;
    raw[8] = 0b0100_0100;
    let s = SevUserDataSnpStatus::read_from_bytes(&raw).unwrap();
    assert!(s.is_rmp_initialized());
    assert!(s.vlek_en() && s.ciphertext_hiding_en());
    assert!(!s.mask_chip_id() && !s.mask_chip_key() && !s.feature_info() && !s.rapl_dis());
    let mut cfg = SevUserDataSnpConfig::default();
    cfg.set_mask_chip_key(true);
    assert_eq!(zerocopy::IntoBytes::as_bytes(&cfg)[8], 0b10);
    assert!(cfg.mask_chip_key() && !cfg.mask_chip_id());
    let v = SevUserDataSnpVlekLoad::new(0x1000);
    assert_eq!({ v.len }, 16);
}

#[test]
fn snp_page_types() {
    for (raw, ok) in [
        (0u8, false),
        (1, true),
        (2, false),
        (3, true),
        (4, true),
        (5, true),
        (6, true),
        (7, false),
    ] {
        assert_eq!(SnpPageType::from_raw(raw).is_some(), ok, "type {raw}");
    }
}

#[test]
fn sev_guest_state_is_a_u32_field() {
    // firmware-and-measurement.md §6.2: UNINIT 0 ... SENT 6.
    let st = KvmSevGuestStatus {
        handle: 1,
        policy: 0x1,
        state: 3,
    };
    assert_eq!(st.guest_state(), Ok(SevGuestState::Running));
    assert_eq!(SevGuestState::from_raw(6), Ok(SevGuestState::Sent));
    assert_eq!(SevGuestState::from_raw(0x100), Err(0x100));
    assert!(st.sev_policy().contains(SevPolicy::NODBG));
}
