//! Cross-check against an independent binding generator: `kvm-bindings` 0.14.2 (bindgen
//! over the kernel headers). Every struct it also defines must agree in size, alignment and
//! every field offset and size; every constant it also defines must agree in value.

use core::mem::{align_of, offset_of, size_of};
use kvm_coco_uapi::manifest::{FieldKind, Layout};

/// Size of a field's type, from a zero value (no unsafe needed).
macro_rules! field_size {
    ($t:ty, $f:ident) => {{
        let v: $t = Default::default();
        size_of_val(&v.$f)
    }};
}

/// Compares one struct; also proves the listed fields are exactly the named C fields the
/// manifest records, so no field can be skipped by accident.
/// The bindgen name of a field (bindgen renames `type` to `type_`).
macro_rules! theirs {
    (offset $t:ty, $f:ident) => {
        offset_of!($t, $f)
    };
    (offset $t:ty, $f:ident, $tf:ident) => {
        offset_of!($t, $tf)
    };
    (size $t:ty, $f:ident) => {
        field_size!($t, $f)
    };
    (size $t:ty, $f:ident, $tf:ident) => {
        field_size!($t, $tf)
    };
}

macro_rules! same_struct {
    ($ours:ty, $theirs:ty, [$($f:ident $(= $tf:ident)?),* $(,)?]) => {{
        assert_eq!(size_of::<$ours>(), size_of::<$theirs>(), "size of {}", stringify!($ours));
        assert_eq!(align_of::<$ours>(), align_of::<$theirs>(), "align of {}", stringify!($ours));
        $(
            assert_eq!(offset_of!($ours, $f), theirs!(offset $theirs, $f $(, $tf)?),
                "offset of {}::{}", stringify!($ours), stringify!($f));
            assert_eq!(field_size!($ours, $f), theirs!(size $theirs, $f $(, $tf)?),
                "size of {}::{}", stringify!($ours), stringify!($f));
        )*
        let listed: Vec<&str> = vec![$(kvm_coco_uapi::manifest::strip_raw(stringify!($f))),*];
        let named: Vec<&str> = <$ours as Layout>::LAYOUT.fields.iter()
            .filter(|f| f.kind == FieldKind::Named).map(|f| f.name).collect();
        assert_eq!(listed, named, "field list of {}", stringify!($ours));
        1usize
    }};
}

#[test]
fn structs_match_kvm_bindings() {
    let mut n = 0;
    n += same_struct!(
        kvm_coco_uapi::KvmSevCmd,
        kvm_bindings::kvm_sev_cmd,
        [id, pad0, data, error, sev_fd]
    );
    n += same_struct!(
        kvm_coco_uapi::KvmSevInit,
        kvm_bindings::kvm_sev_init,
        [vmsa_features, flags, ghcb_version, pad1, pad2]
    );
    n += same_struct!(
        kvm_coco_uapi::KvmSevLaunchStart,
        kvm_bindings::kvm_sev_launch_start,
        [
            handle,
            policy,
            dh_uaddr,
            dh_len,
            pad0,
            session_uaddr,
            session_len,
            pad1
        ]
    );
    n += same_struct!(
        kvm_coco_uapi::KvmSevLaunchUpdateData,
        kvm_bindings::kvm_sev_launch_update_data,
        [uaddr, len, pad0]
    );
    n += same_struct!(
        kvm_coco_uapi::KvmSevLaunchSecret,
        kvm_bindings::kvm_sev_launch_secret,
        [
            hdr_uaddr,
            hdr_len,
            pad0,
            guest_uaddr,
            guest_len,
            pad1,
            trans_uaddr,
            trans_len,
            pad2
        ]
    );
    n += same_struct!(
        kvm_coco_uapi::KvmSevLaunchMeasure,
        kvm_bindings::kvm_sev_launch_measure,
        [uaddr, len, pad0]
    );
    n += same_struct!(
        kvm_coco_uapi::KvmSevGuestStatus,
        kvm_bindings::kvm_sev_guest_status,
        [handle, policy, state]
    );
    n += same_struct!(
        kvm_coco_uapi::KvmSevDbg,
        kvm_bindings::kvm_sev_dbg,
        [src_uaddr, dst_uaddr, len, pad0]
    );
    n += same_struct!(
        kvm_coco_uapi::KvmSevAttestationReport,
        kvm_bindings::kvm_sev_attestation_report,
        [mnonce, uaddr, len, pad0]
    );
    n += same_struct!(
        kvm_coco_uapi::KvmSevSendStart,
        kvm_bindings::kvm_sev_send_start,
        [
            policy,
            pad0,
            pdh_cert_uaddr,
            pdh_cert_len,
            pad1,
            plat_certs_uaddr,
            plat_certs_len,
            pad2,
            amd_certs_uaddr,
            amd_certs_len,
            pad3,
            session_uaddr,
            session_len,
            pad4
        ]
    );
    n += same_struct!(
        kvm_coco_uapi::KvmSevSendUpdateData,
        kvm_bindings::kvm_sev_send_update_data,
        [
            hdr_uaddr,
            hdr_len,
            pad0,
            guest_uaddr,
            guest_len,
            pad1,
            trans_uaddr,
            trans_len,
            pad2
        ]
    );
    n += same_struct!(
        kvm_coco_uapi::KvmSevReceiveStart,
        kvm_bindings::kvm_sev_receive_start,
        [
            handle,
            policy,
            pdh_uaddr,
            pdh_len,
            pad0,
            session_uaddr,
            session_len,
            pad1
        ]
    );
    n += same_struct!(
        kvm_coco_uapi::KvmSevReceiveUpdateData,
        kvm_bindings::kvm_sev_receive_update_data,
        [
            hdr_uaddr,
            hdr_len,
            pad0,
            guest_uaddr,
            guest_len,
            pad1,
            trans_uaddr,
            trans_len,
            pad2
        ]
    );
    n += same_struct!(
        kvm_coco_uapi::KvmSevSnpLaunchStart,
        kvm_bindings::kvm_sev_snp_launch_start,
        [policy, gosvw, flags, pad0, pad1]
    );
    n += same_struct!(
        kvm_coco_uapi::KvmSevSnpLaunchUpdate,
        kvm_bindings::kvm_sev_snp_launch_update,
        [
            gfn_start,
            uaddr,
            len,
            r#type = type_,
            pad0,
            flags,
            pad1,
            pad2
        ]
    );
    n += same_struct!(
        kvm_coco_uapi::KvmSevSnpLaunchFinish,
        kvm_bindings::kvm_sev_snp_launch_finish,
        [
            id_block_uaddr,
            id_auth_uaddr,
            id_block_en,
            auth_key_en,
            vcek_disabled,
            host_data,
            pad0,
            flags,
            pad1
        ]
    );
    n += same_struct!(
        kvm_coco_uapi::KvmEncRegion,
        kvm_bindings::kvm_enc_region,
        [addr, size]
    );
    n += same_struct!(
        kvm_coco_uapi::KvmDeviceAttr,
        kvm_bindings::kvm_device_attr,
        [flags, group, attr, addr]
    );
    n += same_struct!(
        kvm_coco_uapi::KvmEnableCap,
        kvm_bindings::kvm_enable_cap,
        [cap, flags, args, pad]
    );
    n += same_struct!(
        kvm_coco_uapi::KvmCpuid2,
        kvm_bindings::kvm_cpuid2,
        [nent, padding]
    );
    n += same_struct!(
        kvm_coco_uapi::KvmCpuidEntry2,
        kvm_bindings::kvm_cpuid_entry2,
        [function, index, flags, eax, ebx, ecx, edx, padding]
    );
    n += same_struct!(
        kvm_coco_uapi::KvmUserspaceMemoryRegion2,
        kvm_bindings::kvm_userspace_memory_region2,
        [
            slot,
            flags,
            guest_phys_addr,
            memory_size,
            userspace_addr,
            guest_memfd_offset,
            guest_memfd,
            pad1,
            pad2
        ]
    );
    n += same_struct!(
        kvm_coco_uapi::KvmMemoryAttributes,
        kvm_bindings::kvm_memory_attributes,
        [address, size, attributes, flags]
    );
    n += same_struct!(
        kvm_coco_uapi::KvmCreateGuestMemfd,
        kvm_bindings::kvm_create_guest_memfd,
        [size, flags, reserved]
    );
    n += same_struct!(
        kvm_coco_uapi::KvmPreFaultMemory,
        kvm_bindings::kvm_pre_fault_memory,
        [gpa, size, flags, padding]
    );
    assert_eq!(n, 25);
}

#[test]
// Types differ per constant (bindgen makes most of them u32): widen both sides uniformly.
#[allow(clippy::useless_conversion)]
fn constants_match_kvm_bindings() {
    let pairs: &[(&str, u64, u64)] = &[
        (
            "KVMIO",
            u64::from(kvm_coco_uapi::KVMIO),
            u64::from(kvm_bindings::KVMIO),
        ),
        (
            "KVM_X86_DEFAULT_VM",
            u64::from(kvm_coco_uapi::KVM_X86_DEFAULT_VM),
            u64::from(kvm_bindings::KVM_X86_DEFAULT_VM),
        ),
        (
            "KVM_X86_SW_PROTECTED_VM",
            u64::from(kvm_coco_uapi::KVM_X86_SW_PROTECTED_VM),
            u64::from(kvm_bindings::KVM_X86_SW_PROTECTED_VM),
        ),
        (
            "KVM_X86_SEV_VM",
            u64::from(kvm_coco_uapi::KVM_X86_SEV_VM),
            u64::from(kvm_bindings::KVM_X86_SEV_VM),
        ),
        (
            "KVM_X86_SEV_ES_VM",
            u64::from(kvm_coco_uapi::KVM_X86_SEV_ES_VM),
            u64::from(kvm_bindings::KVM_X86_SEV_ES_VM),
        ),
        (
            "KVM_X86_SNP_VM",
            u64::from(kvm_coco_uapi::KVM_X86_SNP_VM),
            u64::from(kvm_bindings::KVM_X86_SNP_VM),
        ),
        (
            "KVM_X86_TDX_VM",
            u64::from(kvm_coco_uapi::KVM_X86_TDX_VM),
            u64::from(kvm_bindings::KVM_X86_TDX_VM),
        ),
        (
            "KVM_CAP_VM_COPY_ENC_CONTEXT_FROM",
            u64::from(kvm_coco_uapi::KVM_CAP_VM_COPY_ENC_CONTEXT_FROM),
            u64::from(kvm_bindings::KVM_CAP_VM_COPY_ENC_CONTEXT_FROM),
        ),
        (
            "KVM_CAP_EXIT_HYPERCALL",
            u64::from(kvm_coco_uapi::KVM_CAP_EXIT_HYPERCALL),
            u64::from(kvm_bindings::KVM_CAP_EXIT_HYPERCALL),
        ),
        (
            "KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM",
            u64::from(kvm_coco_uapi::KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM),
            u64::from(kvm_bindings::KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM),
        ),
        (
            "KVM_CAP_USER_MEMORY2",
            u64::from(kvm_coco_uapi::KVM_CAP_USER_MEMORY2),
            u64::from(kvm_bindings::KVM_CAP_USER_MEMORY2),
        ),
        (
            "KVM_CAP_MEMORY_FAULT_INFO",
            u64::from(kvm_coco_uapi::KVM_CAP_MEMORY_FAULT_INFO),
            u64::from(kvm_bindings::KVM_CAP_MEMORY_FAULT_INFO),
        ),
        (
            "KVM_CAP_MEMORY_ATTRIBUTES",
            u64::from(kvm_coco_uapi::KVM_CAP_MEMORY_ATTRIBUTES),
            u64::from(kvm_bindings::KVM_CAP_MEMORY_ATTRIBUTES),
        ),
        (
            "KVM_CAP_GUEST_MEMFD",
            u64::from(kvm_coco_uapi::KVM_CAP_GUEST_MEMFD),
            u64::from(kvm_bindings::KVM_CAP_GUEST_MEMFD),
        ),
        (
            "KVM_CAP_VM_TYPES",
            u64::from(kvm_coco_uapi::KVM_CAP_VM_TYPES),
            u64::from(kvm_bindings::KVM_CAP_VM_TYPES),
        ),
        (
            "KVM_CAP_PRE_FAULT_MEMORY",
            u64::from(kvm_coco_uapi::KVM_CAP_PRE_FAULT_MEMORY),
            u64::from(kvm_bindings::KVM_CAP_PRE_FAULT_MEMORY),
        ),
        (
            "KVM_X86_GRP_SYSTEM",
            u64::from(kvm_coco_uapi::KVM_X86_GRP_SYSTEM),
            u64::from(kvm_bindings::KVM_X86_GRP_SYSTEM),
        ),
        (
            "KVM_X86_XCOMP_GUEST_SUPP",
            u64::from(kvm_coco_uapi::KVM_X86_XCOMP_GUEST_SUPP),
            u64::from(kvm_bindings::KVM_X86_XCOMP_GUEST_SUPP),
        ),
        (
            "KVM_X86_GRP_SEV",
            u64::from(kvm_coco_uapi::KVM_X86_GRP_SEV),
            u64::from(kvm_bindings::KVM_X86_GRP_SEV),
        ),
        (
            "KVM_X86_SEV_VMSA_FEATURES",
            u64::from(kvm_coco_uapi::KVM_X86_SEV_VMSA_FEATURES),
            u64::from(kvm_bindings::KVM_X86_SEV_VMSA_FEATURES),
        ),
        (
            "KVM_SEV_SNP_ID_BLOCK_SIZE",
            u64::from(kvm_coco_uapi::KVM_SEV_SNP_ID_BLOCK_SIZE),
            u64::from(kvm_bindings::KVM_SEV_SNP_ID_BLOCK_SIZE),
        ),
        (
            "KVM_SEV_SNP_ID_AUTH_SIZE",
            u64::from(kvm_coco_uapi::KVM_SEV_SNP_ID_AUTH_SIZE),
            u64::from(kvm_bindings::KVM_SEV_SNP_ID_AUTH_SIZE),
        ),
        (
            "KVM_SEV_SNP_FINISH_DATA_SIZE",
            u64::from(kvm_coco_uapi::KVM_SEV_SNP_FINISH_DATA_SIZE),
            u64::from(kvm_bindings::KVM_SEV_SNP_FINISH_DATA_SIZE),
        ),
        (
            "KVM_SEV_SNP_PAGE_TYPE_NORMAL",
            u64::from(kvm_coco_uapi::KVM_SEV_SNP_PAGE_TYPE_NORMAL),
            u64::from(kvm_bindings::KVM_SEV_SNP_PAGE_TYPE_NORMAL),
        ),
        (
            "KVM_SEV_SNP_PAGE_TYPE_ZERO",
            u64::from(kvm_coco_uapi::KVM_SEV_SNP_PAGE_TYPE_ZERO),
            u64::from(kvm_bindings::KVM_SEV_SNP_PAGE_TYPE_ZERO),
        ),
        (
            "KVM_SEV_SNP_PAGE_TYPE_UNMEASURED",
            u64::from(kvm_coco_uapi::KVM_SEV_SNP_PAGE_TYPE_UNMEASURED),
            u64::from(kvm_bindings::KVM_SEV_SNP_PAGE_TYPE_UNMEASURED),
        ),
        (
            "KVM_SEV_SNP_PAGE_TYPE_SECRETS",
            u64::from(kvm_coco_uapi::KVM_SEV_SNP_PAGE_TYPE_SECRETS),
            u64::from(kvm_bindings::KVM_SEV_SNP_PAGE_TYPE_SECRETS),
        ),
        (
            "KVM_SEV_SNP_PAGE_TYPE_CPUID",
            u64::from(kvm_coco_uapi::KVM_SEV_SNP_PAGE_TYPE_CPUID),
            u64::from(kvm_bindings::KVM_SEV_SNP_PAGE_TYPE_CPUID),
        ),
        (
            "KVM_CPUID_FLAG_SIGNIFCANT_INDEX",
            u64::from(kvm_coco_uapi::KVM_CPUID_FLAG_SIGNIFCANT_INDEX),
            u64::from(kvm_bindings::KVM_CPUID_FLAG_SIGNIFCANT_INDEX),
        ),
        (
            "KVM_CPUID_FLAG_STATEFUL_FUNC",
            u64::from(kvm_coco_uapi::KVM_CPUID_FLAG_STATEFUL_FUNC),
            u64::from(kvm_bindings::KVM_CPUID_FLAG_STATEFUL_FUNC),
        ),
        (
            "KVM_CPUID_FLAG_STATE_READ_NEXT",
            u64::from(kvm_coco_uapi::KVM_CPUID_FLAG_STATE_READ_NEXT),
            u64::from(kvm_bindings::KVM_CPUID_FLAG_STATE_READ_NEXT),
        ),
        (
            "KVM_MEM_LOG_DIRTY_PAGES",
            u64::from(kvm_coco_uapi::KVM_MEM_LOG_DIRTY_PAGES),
            u64::from(kvm_bindings::KVM_MEM_LOG_DIRTY_PAGES),
        ),
        (
            "KVM_MEM_READONLY",
            u64::from(kvm_coco_uapi::KVM_MEM_READONLY),
            u64::from(kvm_bindings::KVM_MEM_READONLY),
        ),
        (
            "KVM_MEM_GUEST_MEMFD",
            u64::from(kvm_coco_uapi::KVM_MEM_GUEST_MEMFD),
            u64::from(kvm_bindings::KVM_MEM_GUEST_MEMFD),
        ),
        (
            "KVM_MEMORY_ATTRIBUTE_PRIVATE",
            u64::from(kvm_coco_uapi::KVM_MEMORY_ATTRIBUTE_PRIVATE),
            u64::from(kvm_bindings::KVM_MEMORY_ATTRIBUTE_PRIVATE),
        ),
        (
            "KVM_EXIT_UNKNOWN",
            u64::from(kvm_coco_uapi::KVM_EXIT_UNKNOWN),
            u64::from(kvm_bindings::KVM_EXIT_UNKNOWN),
        ),
        (
            "KVM_EXIT_EXCEPTION",
            u64::from(kvm_coco_uapi::KVM_EXIT_EXCEPTION),
            u64::from(kvm_bindings::KVM_EXIT_EXCEPTION),
        ),
        (
            "KVM_EXIT_IO",
            u64::from(kvm_coco_uapi::KVM_EXIT_IO),
            u64::from(kvm_bindings::KVM_EXIT_IO),
        ),
        (
            "KVM_EXIT_HYPERCALL",
            u64::from(kvm_coco_uapi::KVM_EXIT_HYPERCALL),
            u64::from(kvm_bindings::KVM_EXIT_HYPERCALL),
        ),
        (
            "KVM_EXIT_DEBUG",
            u64::from(kvm_coco_uapi::KVM_EXIT_DEBUG),
            u64::from(kvm_bindings::KVM_EXIT_DEBUG),
        ),
        (
            "KVM_EXIT_HLT",
            u64::from(kvm_coco_uapi::KVM_EXIT_HLT),
            u64::from(kvm_bindings::KVM_EXIT_HLT),
        ),
        (
            "KVM_EXIT_MMIO",
            u64::from(kvm_coco_uapi::KVM_EXIT_MMIO),
            u64::from(kvm_bindings::KVM_EXIT_MMIO),
        ),
        (
            "KVM_EXIT_IRQ_WINDOW_OPEN",
            u64::from(kvm_coco_uapi::KVM_EXIT_IRQ_WINDOW_OPEN),
            u64::from(kvm_bindings::KVM_EXIT_IRQ_WINDOW_OPEN),
        ),
        (
            "KVM_EXIT_SHUTDOWN",
            u64::from(kvm_coco_uapi::KVM_EXIT_SHUTDOWN),
            u64::from(kvm_bindings::KVM_EXIT_SHUTDOWN),
        ),
        (
            "KVM_EXIT_FAIL_ENTRY",
            u64::from(kvm_coco_uapi::KVM_EXIT_FAIL_ENTRY),
            u64::from(kvm_bindings::KVM_EXIT_FAIL_ENTRY),
        ),
        (
            "KVM_EXIT_INTR",
            u64::from(kvm_coco_uapi::KVM_EXIT_INTR),
            u64::from(kvm_bindings::KVM_EXIT_INTR),
        ),
        (
            "KVM_EXIT_SET_TPR",
            u64::from(kvm_coco_uapi::KVM_EXIT_SET_TPR),
            u64::from(kvm_bindings::KVM_EXIT_SET_TPR),
        ),
        (
            "KVM_EXIT_TPR_ACCESS",
            u64::from(kvm_coco_uapi::KVM_EXIT_TPR_ACCESS),
            u64::from(kvm_bindings::KVM_EXIT_TPR_ACCESS),
        ),
        (
            "KVM_EXIT_NMI",
            u64::from(kvm_coco_uapi::KVM_EXIT_NMI),
            u64::from(kvm_bindings::KVM_EXIT_NMI),
        ),
        (
            "KVM_EXIT_INTERNAL_ERROR",
            u64::from(kvm_coco_uapi::KVM_EXIT_INTERNAL_ERROR),
            u64::from(kvm_bindings::KVM_EXIT_INTERNAL_ERROR),
        ),
        (
            "KVM_EXIT_SYSTEM_EVENT",
            u64::from(kvm_coco_uapi::KVM_EXIT_SYSTEM_EVENT),
            u64::from(kvm_bindings::KVM_EXIT_SYSTEM_EVENT),
        ),
        (
            "KVM_EXIT_IOAPIC_EOI",
            u64::from(kvm_coco_uapi::KVM_EXIT_IOAPIC_EOI),
            u64::from(kvm_bindings::KVM_EXIT_IOAPIC_EOI),
        ),
        (
            "KVM_EXIT_HYPERV",
            u64::from(kvm_coco_uapi::KVM_EXIT_HYPERV),
            u64::from(kvm_bindings::KVM_EXIT_HYPERV),
        ),
        (
            "KVM_EXIT_X86_RDMSR",
            u64::from(kvm_coco_uapi::KVM_EXIT_X86_RDMSR),
            u64::from(kvm_bindings::KVM_EXIT_X86_RDMSR),
        ),
        (
            "KVM_EXIT_X86_WRMSR",
            u64::from(kvm_coco_uapi::KVM_EXIT_X86_WRMSR),
            u64::from(kvm_bindings::KVM_EXIT_X86_WRMSR),
        ),
        (
            "KVM_EXIT_DIRTY_RING_FULL",
            u64::from(kvm_coco_uapi::KVM_EXIT_DIRTY_RING_FULL),
            u64::from(kvm_bindings::KVM_EXIT_DIRTY_RING_FULL),
        ),
        (
            "KVM_EXIT_AP_RESET_HOLD",
            u64::from(kvm_coco_uapi::KVM_EXIT_AP_RESET_HOLD),
            u64::from(kvm_bindings::KVM_EXIT_AP_RESET_HOLD),
        ),
        (
            "KVM_EXIT_X86_BUS_LOCK",
            u64::from(kvm_coco_uapi::KVM_EXIT_X86_BUS_LOCK),
            u64::from(kvm_bindings::KVM_EXIT_X86_BUS_LOCK),
        ),
        (
            "KVM_EXIT_XEN",
            u64::from(kvm_coco_uapi::KVM_EXIT_XEN),
            u64::from(kvm_bindings::KVM_EXIT_XEN),
        ),
        (
            "KVM_EXIT_NOTIFY",
            u64::from(kvm_coco_uapi::KVM_EXIT_NOTIFY),
            u64::from(kvm_bindings::KVM_EXIT_NOTIFY),
        ),
        (
            "KVM_EXIT_MEMORY_FAULT",
            u64::from(kvm_coco_uapi::KVM_EXIT_MEMORY_FAULT),
            u64::from(kvm_bindings::KVM_EXIT_MEMORY_FAULT),
        ),
        (
            "KVM_SYSTEM_EVENT_SHUTDOWN",
            u64::from(kvm_coco_uapi::KVM_SYSTEM_EVENT_SHUTDOWN),
            u64::from(kvm_bindings::KVM_SYSTEM_EVENT_SHUTDOWN),
        ),
        (
            "KVM_SYSTEM_EVENT_RESET",
            u64::from(kvm_coco_uapi::KVM_SYSTEM_EVENT_RESET),
            u64::from(kvm_bindings::KVM_SYSTEM_EVENT_RESET),
        ),
        (
            "KVM_SYSTEM_EVENT_CRASH",
            u64::from(kvm_coco_uapi::KVM_SYSTEM_EVENT_CRASH),
            u64::from(kvm_bindings::KVM_SYSTEM_EVENT_CRASH),
        ),
        (
            "KVM_SYSTEM_EVENT_WAKEUP",
            u64::from(kvm_coco_uapi::KVM_SYSTEM_EVENT_WAKEUP),
            u64::from(kvm_bindings::KVM_SYSTEM_EVENT_WAKEUP),
        ),
        (
            "KVM_SYSTEM_EVENT_SUSPEND",
            u64::from(kvm_coco_uapi::KVM_SYSTEM_EVENT_SUSPEND),
            u64::from(kvm_bindings::KVM_SYSTEM_EVENT_SUSPEND),
        ),
        (
            "KVM_SYSTEM_EVENT_SEV_TERM",
            u64::from(kvm_coco_uapi::KVM_SYSTEM_EVENT_SEV_TERM),
            u64::from(kvm_bindings::KVM_SYSTEM_EVENT_SEV_TERM),
        ),
        (
            "KVM_MEMORY_EXIT_FLAG_PRIVATE",
            u64::from(kvm_coco_uapi::KVM_MEMORY_EXIT_FLAG_PRIVATE),
            u64::from(kvm_bindings::KVM_MEMORY_EXIT_FLAG_PRIVATE),
        ),
    ];
    for (name, ours, theirs) in pairs {
        assert_eq!(ours, theirs, "{name}");
    }
    // Every compared name is one the manifest records as a header constant.
    for (name, _, _) in pairs {
        assert!(
            kvm_coco_uapi::manifest::constants().any(|c| c.name == *name),
            "{name}"
        );
    }
}

/// The exit arms kvm-bindings has: `kvm_run` head, `hypercall`, `system_event`, `memory_fault`.
#[test]
fn kvm_run_views_match_kvm_bindings() {
    use kvm_bindings::kvm_run;
    use kvm_coco_uapi::{
        KVM_RUN_EXIT_REASON_OFFSET, KVM_RUN_EXIT_UNION_OFFSET, KVM_RUN_IMMEDIATE_EXIT_OFFSET,
        KVM_RUN_SIZE, KvmRunHeader, KvmRunHypercall, KvmRunMember, KvmRunMemoryFault,
        KvmRunSystemEvent,
    };
    assert_eq!(size_of::<kvm_run>(), KVM_RUN_SIZE);
    assert_eq!(offset_of!(kvm_run, exit_reason), KVM_RUN_EXIT_REASON_OFFSET);
    assert_eq!(
        offset_of!(kvm_run, immediate_exit),
        KVM_RUN_IMMEDIATE_EXIT_OFFSET
    );
    assert_eq!(
        offset_of!(kvm_run, __bindgen_anon_1),
        KVM_RUN_EXIT_UNION_OFFSET
    );
    for (ours, theirs) in [
        (
            offset_of!(KvmRunHeader, request_interrupt_window),
            offset_of!(kvm_run, request_interrupt_window),
        ),
        (
            offset_of!(KvmRunHeader, padding1),
            offset_of!(kvm_run, padding1),
        ),
        (
            offset_of!(KvmRunHeader, ready_for_interrupt_injection),
            offset_of!(kvm_run, ready_for_interrupt_injection),
        ),
        (
            offset_of!(KvmRunHeader, if_flag),
            offset_of!(kvm_run, if_flag),
        ),
        (offset_of!(KvmRunHeader, flags), offset_of!(kvm_run, flags)),
        (offset_of!(KvmRunHeader, cr8), offset_of!(kvm_run, cr8)),
        (
            offset_of!(KvmRunHeader, apic_base),
            offset_of!(kvm_run, apic_base),
        ),
    ] {
        assert_eq!(ours, theirs);
    }
    let u = offset_of!(kvm_run, __bindgen_anon_1);
    let mf = u + offset_of!(kvm_bindings::kvm_run__bindgen_ty_1, memory_fault);
    assert_eq!(KvmRunMemoryFault::KVM_RUN_OFFSET, mf);
    type Mf = kvm_bindings::kvm_run__bindgen_ty_1__bindgen_ty_27;
    assert_eq!(size_of::<KvmRunMemoryFault>(), size_of::<Mf>());
    assert_eq!(offset_of!(KvmRunMemoryFault, flags), offset_of!(Mf, flags));
    assert_eq!(offset_of!(KvmRunMemoryFault, gpa), offset_of!(Mf, gpa));
    assert_eq!(offset_of!(KvmRunMemoryFault, size), offset_of!(Mf, size));

    let hc = u + offset_of!(kvm_bindings::kvm_run__bindgen_ty_1, hypercall);
    assert_eq!(KvmRunHypercall::KVM_RUN_OFFSET, hc);
    type Hc = kvm_bindings::kvm_run__bindgen_ty_1__bindgen_ty_8;
    assert_eq!(size_of::<KvmRunHypercall>(), size_of::<Hc>());
    assert_eq!(offset_of!(KvmRunHypercall, nr), offset_of!(Hc, nr));
    assert_eq!(offset_of!(KvmRunHypercall, args), offset_of!(Hc, args));
    assert_eq!(offset_of!(KvmRunHypercall, ret), offset_of!(Hc, ret));
    assert_eq!(
        offset_of!(KvmRunHypercall, flags),
        offset_of!(Hc, __bindgen_anon_1)
    );

    let se = u + offset_of!(kvm_bindings::kvm_run__bindgen_ty_1, system_event);
    assert_eq!(KvmRunSystemEvent::KVM_RUN_OFFSET, se);
    type Se = kvm_bindings::kvm_run__bindgen_ty_1__bindgen_ty_19;
    assert_eq!(size_of::<KvmRunSystemEvent>(), size_of::<Se>());
    assert_eq!(offset_of!(KvmRunSystemEvent, r#type), offset_of!(Se, type_));
    assert_eq!(offset_of!(KvmRunSystemEvent, ndata), offset_of!(Se, ndata));
    assert_eq!(
        offset_of!(KvmRunSystemEvent, data),
        offset_of!(Se, __bindgen_anon_1)
    );
}
