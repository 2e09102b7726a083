//! The capabilities query agrees with an independent `KVM_CHECK_EXTENSION` probe.

use kvm_coco::{Availability, VmType};
use kvm_coco_tests::{kvm_or_skip, raw};

// Capability numbers from include/uapi/linux/kvm.h (facts linux-uapi §5.1).
const CAP_EXIT_HYPERCALL: u32 = 201;
const CAP_USER_MEMORY2: u32 = 231;
const CAP_MEMORY_FAULT_INFO: u32 = 232;
const CAP_MEMORY_ATTRIBUTES: u32 = 233;
const CAP_GUEST_MEMFD: u32 = 234;
const CAP_VM_TYPES: u32 = 235;
const CAP_PRE_FAULT_MEMORY: u32 = 236;
const CAP_GUEST_MEMFD_FLAGS: u32 = 244;

fn flag<T>(a: &Availability<T>) -> bool {
    a.is_available()
}

#[test]
fn capabilities_match_raw_check_extension() {
    let Some(kvm) = kvm_or_skip() else { return };
    let Some(fd) = raw::open_kvm() else { return };
    let caps = kvm.capabilities();
    let probe = |cap| raw::check_extension(&fd, cap);

    let types = probe(CAP_VM_TYPES);
    let expected_types = if types > 0 { types as u32 } else { 1 };
    assert_eq!(caps.vm_types.bits(), expected_types);

    assert_eq!(flag(&caps.memory.guest_memfd), probe(CAP_GUEST_MEMFD) > 0);
    if let Some(g) = caps.memory.guest_memfd.value() {
        assert_eq!(g.flags, probe(CAP_GUEST_MEMFD_FLAGS).max(0) as u64);
        assert_eq!(g.mmap, probe(CAP_GUEST_MEMFD_FLAGS) & 1 != 0);
        assert_eq!(g.init_shared, probe(CAP_GUEST_MEMFD_FLAGS) & 2 != 0);
    }
    let attrs = probe(CAP_MEMORY_ATTRIBUTES);
    assert_eq!(
        caps.memory.memory_attributes.value().copied(),
        (attrs > 0).then_some(attrs as u64)
    );
    assert_eq!(
        flag(&caps.memory.memory_fault_info),
        probe(CAP_MEMORY_FAULT_INFO) > 0
    );
    assert_eq!(
        flag(&caps.memory.user_memory_region2),
        probe(CAP_USER_MEMORY2) > 0
    );
    assert_eq!(
        flag(&caps.memory.pre_fault_memory),
        probe(CAP_PRE_FAULT_MEMORY) > 0
    );
    let hc = probe(CAP_EXIT_HYPERCALL);
    assert_eq!(
        caps.exit_hypercall.value().copied(),
        (hc > 0).then_some(hc as u64)
    );
    assert_eq!(caps.api_version, 12);
}

#[test]
fn vm_scope_answers_come_from_a_vm_of_each_type() {
    let Some(kvm) = kvm_or_skip() else { return };
    let caps = kvm.capabilities();
    // One VM-scope entry per supported type, each answered by a VM of that type.
    let listed: Vec<VmType> = caps.vm_scope.keys().copied().collect();
    let supported: Vec<VmType> = caps.vm_types.iter().collect();
    assert_eq!(listed, supported);
    let vm = kvm.create_vm(VmType::Default).unwrap();
    let default = caps.vm_scope[&VmType::Default].value().unwrap();
    assert_eq!(
        default.memory_attributes.value().copied(),
        Some(vm.check_extension(CAP_MEMORY_ATTRIBUTES))
            .filter(|v| *v > 0)
            .map(|v| v as u64)
    );
}

#[test]
fn sev_attributes_match_raw_get_device_attr() {
    let Some(kvm) = kvm_or_skip() else { return };
    let Some(fd) = raw::open_kvm() else { return };
    let caps = kvm.capabilities();
    // KVM_X86_GRP_SEV = 1; attrs 0 VMSA_FEATURES, 1 SNP_POLICY_BITS, 2 SNP_REQ_CERTS.
    assert_eq!(
        caps.sev.vmsa_features.value().copied(),
        raw::get_device_attr(&fd, 1, 0).ok()
    );
    assert_eq!(
        caps.sev.snp_policy_bits.value().copied(),
        raw::get_device_attr(&fd, 1, 1).ok()
    );
    assert_eq!(
        caps.sev.snp_req_certs.value().copied(),
        raw::get_device_attr(&fd, 1, 2).ok().map(|v| v != 0)
    );
    if let Err(errno) = raw::get_device_attr(&fd, 1, 0) {
        let reason = caps.sev.vmsa_features.reason().unwrap().to_string();
        assert!(reason.contains("KVM_X86_SEV_VMSA_FEATURES"), "{reason}");
        assert!(reason.contains(&format!("({errno})")), "{reason}");
    }
}

#[test]
fn tdx_and_platform_parts_explain_themselves() {
    let Some(kvm) = kvm_or_skip() else { return };
    let caps = kvm.capabilities();
    if !caps.vm_types.contains(VmType::Tdx) {
        let reason = caps
            .tdx
            .reason()
            .expect("TDX cannot be available")
            .to_string();
        assert!(reason.contains("`tdx`"), "{reason}");
        assert!(reason.contains(&caps.vm_types.to_string()), "{reason}");
    }
    if !std::path::Path::new("/dev/sev").exists() {
        let reason = caps.sev_platform.reason().unwrap().to_string();
        assert!(reason.starts_with("/dev/sev: ENOENT"), "{reason}");
    }
}

#[test]
fn capabilities_serialize_with_top_level_vm_type_names() {
    let Some(kvm) = kvm_or_skip() else { return };
    let Some(fd) = raw::open_kvm() else { return };
    let caps = kvm.capabilities();
    let json = serde_json::to_value(&caps).unwrap();
    let names: Vec<&str> = json["vm_types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    // Bit n of KVM_CAP_VM_TYPES is VM type n (KVM_X86_DEFAULT_VM 0, KVM_X86_SW_PROTECTED_VM 1,
    // KVM_X86_SEV_VM 2, KVM_X86_SEV_ES_VM 3, KVM_X86_SNP_VM 4, KVM_X86_TDX_VM 5); without the
    // capability only the default type exists.
    const NAMES: [&str; 6] = ["default", "sw-protected", "sev", "sev-es", "snp", "tdx"];
    let mask = match raw::check_extension(&fd, CAP_VM_TYPES) {
        n if n > 0 => n as u32,
        _ => 1,
    };
    let expected: Vec<&str> = (0..NAMES.len())
        .filter(|&bit| mask & (1 << bit) != 0)
        .map(|bit| NAMES[bit])
        .collect();
    assert_eq!(names, expected);
    assert!(names.contains(&"default"));
    assert!(json["memory"]["guest_memfd"]["available"].is_boolean());
    assert!(json["tdx"]["available"].is_boolean());
}
