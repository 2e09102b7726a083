//! The simulated KVM TDX layer against the errno rules of linux-uapi facts §4, §9.3 and
//! §10.4 (every row of the out-of-order table that the model can produce).

mod sim_tdx_common;

use kvm_coco::RegisterOp;
use kvm_coco::sim::tdx::params::{TDX_TD_ATTR_DEBUG, TDX_TD_ATTR_SEPT_VE_DISABLE};
use kvm_coco::sim::tdx::*;
use kvm_coco_uapi::tdx::{KVM_TDX_CAPABILITIES, KVM_TDX_FINALIZE_VM, KVM_TDX_INIT_VCPU};
use kvm_coco_uapi::{
    CpuidFam, KVM_CPUID_FLAG_SIGNIFCANT_INDEX, KvmCpuid2, KvmCpuidEntry2, KvmTdxCapabilities,
    KvmTdxCmd, KvmTdxInitMemRegion, KvmTdxInitVm, TdxCapabilitiesBuf, TdxCmdId,
};
use sim_tdx_common::*;
use zerocopy::IntoBytes;

const EINVAL: i32 = libc::EINVAL;
const EIO: i32 = libc::EIO;
const E2BIG: i32 = libc::E2BIG;

fn errno<T: std::fmt::Debug>(r: Result<T, KvmTdxError>) -> i32 {
    r.unwrap_err().errno.raw()
}

fn finalized() -> (SimTdxVm, Vec<SimTdxVcpu>) {
    let (vm, v) = initialized_vm(SimKvmConfig::default(), 2);
    add_pages(&vm, &v[0], 0x1000, &[7u8; 4096], true);
    vm.finalize().unwrap();
    (vm, v)
}

#[test]
fn capabilities() {
    let vm = SimTdxVm::new(new_module(), SimKvmConfig::default());
    // Too small: E2BIG and nent is NOT updated.
    let mut small = TdxCapabilitiesBuf::with_capacity(2);
    small.set_nent_to_capacity();
    assert_eq!(errno(vm.capabilities(&mut small)), E2BIG);
    assert_eq!(small.nent(), 2);
    assert_eq!(small.header().supported_attrs, 0);
    // hw_error ≠ 0 on input.
    let mut buf = TdxCapabilitiesBuf::with_capacity(64);
    buf.set_nent_to_capacity();
    let mut cmd = KvmTdxCmd::new(TdxCmdId::Capabilities, 0, 0);
    cmd.hw_error = 1;
    assert_eq!(
        vm.tdx_ioctl(&mut cmd, buf.as_mut_bytes())
            .unwrap_err()
            .raw(),
        EINVAL
    );
    // flags ≠ 0.
    let mut cmd = KvmTdxCmd {
        id: KVM_TDX_CAPABILITIES,
        flags: 1,
        data: 0,
        hw_error: 0,
    };
    assert_eq!(
        vm.tdx_ioctl(&mut cmd, buf.as_mut_bytes())
            .unwrap_err()
            .raw(),
        EINVAL
    );
    // Unknown VM command.
    let mut cmd = KvmTdxCmd {
        id: KVM_TDX_INIT_VCPU,
        flags: 0,
        data: 0,
        hw_error: 0,
    };
    assert_eq!(vm.tdx_ioctl(&mut cmd, &mut []).unwrap_err().raw(), EINVAL);
    let mut cmd = KvmTdxCmd {
        id: 6,
        flags: 0,
        data: 0,
        hw_error: 0,
    };
    assert_eq!(vm.tdx_ioctl(&mut cmd, &mut []).unwrap_err().raw(), EINVAL);

    vm.capabilities(&mut buf).unwrap();
    let h = buf.header();
    // Default module: fixed0 has DEBUG, SEPT_VE_DISABLE, …; KVM 7.3 supports SEPT_VE_DISABLE only.
    assert_eq!(h.supported_attrs, TDX_TD_ATTR_SEPT_VE_DISABLE);
    assert_eq!(h.supported_xfam, 0x0006_02FF);
    assert_eq!(h.user_tdvmcallinfo_1_r11, 1 << 1);
    assert_eq!(h.kernel_tdvmcallinfo_1_r11, 0);
    // The default module has 6 configurable leaves: 1, 7.0, 7.1, 0xD.1, 0x80000001, 0x80000008.
    assert_eq!(buf.nent(), 6);
    let e = buf.find(0x8000_0008, 0).unwrap();
    assert_eq!((e.eax >> 16) & 0xFF, 0xFF, "GPAW knob reported as 0xff");
    let e7 = buf.find(7, 0).unwrap();
    assert_eq!(e7.flags, KVM_CPUID_FLAG_SIGNIFCANT_INDEX);
    assert_eq!(e7.ebx, 1 << 21, "HLE (4) and RTM (11) cleared, bit 21 kept");
    assert_eq!(e7.ecx, 0, "WAITPKG cleared");
    assert_eq!(
        buf.find(1, 0).unwrap().flags,
        0,
        "no-subleaf leaf reported with index 0"
    );
    // Exactly nent = configurable count also works; allowed in any TD state.
    let mut exact = TdxCapabilitiesBuf::with_capacity(6);
    exact.set_nent_to_capacity();
    vm.capabilities(&mut exact).unwrap();
    vm.init_vm(&mut init_vm_buf(48)).unwrap();
    vm.capabilities(&mut exact).unwrap();
}

#[test]
fn init_vm_checks() {
    let vm = SimTdxVm::new(new_module(), SimKvmConfig::default());
    // flags ≠ 0.
    let mut b = init_vm_buf(48);
    let mut cmd = KvmTdxCmd::new(TdxCmdId::InitVm, 1, 0);
    assert_eq!(
        vm.tdx_ioctl(&mut cmd, b.as_mut_bytes()).unwrap_err().raw(),
        EINVAL
    );
    // nent > 256 → E2BIG (checked before reading the entries).
    let mut hdr = KvmTdxInitVm::default();
    hdr.cpuid.nent = 257;
    let mut raw = hdr.as_bytes().to_vec();
    let mut cmd = KvmTdxCmd::new(TdxCmdId::InitVm, 0, 0);
    assert_eq!(vm.tdx_ioctl(&mut cmd, &mut raw).unwrap_err().raw(), E2BIG);
    // reserved ≠ 0, cpuid.padding ≠ 0.
    let mut b = init_vm_buf(48);
    let mut h = b.header();
    h.reserved[11] = 1;
    b.set_header(&h);
    assert_eq!(errno(vm.init_vm(&mut b)), EINVAL);
    let mut b = init_vm_buf(48);
    let mut h = b.header();
    h.cpuid.padding = 1;
    b.set_header(&h);
    assert_eq!(errno(vm.init_vm(&mut b)), EINVAL);
    // Unsupported attributes (DEBUG is not in KVM 7.3's list), GPAW not 48/52, no 0x80000008,
    // a leaf the module cannot configure.
    let mut b = init_vm_buf(48);
    let mut h = b.header();
    h.attributes = TDX_TD_ATTR_DEBUG;
    b.set_header(&h);
    assert_eq!(errno(vm.init_vm(&mut b)), EINVAL);
    assert_eq!(errno(vm.init_vm(&mut init_vm_buf(40))), EINVAL);
    let mut b = kvm_coco_uapi::TdxInitVmBuf::with_capacity(0);
    assert_eq!(errno(vm.init_vm(&mut b)), EINVAL);
    let mut b = init_vm_buf(48);
    let mut b2 = kvm_coco_uapi::TdxInitVmBuf::with_capacity(2);
    b2.push(b.entry(0).unwrap()).unwrap();
    b2.push(KvmCpuidEntry2 {
        function: 0x4000_0000,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(errno(vm.init_vm(&mut b2)), EINVAL);
    // A value the module rejects: hw_error is copied back, errno EINVAL, TD torn down.
    let mut b3 = kvm_coco_uapi::TdxInitVmBuf::with_capacity(2);
    b3.push(b.entry(0).unwrap()).unwrap();
    b3.push(KvmCpuidEntry2 {
        function: 1,
        ecx: 1,
        ..Default::default()
    })
    .unwrap();
    let e = vm.init_vm(&mut b3).unwrap_err();
    assert_eq!(e.errno.raw(), EINVAL);
    assert_eq!(
        e.hw_error,
        TdxStatus(0xC000_0100_0000_0045),
        "OPERAND_INVALID + CPUID_CONFIG (69)"
    );
    assert_eq!(vm.td_state(), TdState::Uninitialized);
    assert_eq!(
        vm.module().lock().unwrap().free_hkid(),
        Some(1),
        "HKID released"
    );
    // Success, then INIT_VM again: EINVAL.
    vm.init_vm(&mut b).unwrap();
    assert_eq!(vm.td_state(), TdState::Initialized);
    assert_eq!(vm.shared_bit(), 1 << 47);
    assert_eq!(errno(vm.init_vm(&mut init_vm_buf(48))), EINVAL);

    // TSC frequency out of the module's range (50 MHz = 2 units): TDH.MNG.INIT's status.
    let kvm = SimKvmConfig {
        tsc_khz: 50_000,
        ..Default::default()
    };
    let vm = SimTdxVm::new(new_module(), kvm);
    let e = vm.init_vm(&mut init_vm_buf(48)).unwrap_err();
    assert_eq!(e.errno.raw(), EINVAL);
    assert_eq!(e.hw_error.raw(), 0xC000_0100_0000_0046);
    // GPAW 52 needs 5-level EPT.
    let vm = SimTdxVm::new(
        new_module(),
        SimKvmConfig {
            ept_5level: false,
            ..Default::default()
        },
    );
    assert_eq!(errno(vm.init_vm(&mut init_vm_buf(52))), EINVAL);
    let vm = SimTdxVm::new(new_module(), SimKvmConfig::default());
    vm.init_vm(&mut init_vm_buf(52)).unwrap();
    assert_eq!(vm.shared_bit(), 1 << 51);
}

#[test]
fn vcpu_creation() {
    let vm = SimTdxVm::new(new_module(), SimKvmConfig::default());
    // No split irqchip: EINVAL; CREATE_VCPU before INIT_VM: EIO.
    assert_eq!(vm.create_vcpu(0).unwrap_err().raw(), EINVAL);
    vm.enable_split_irqchip().unwrap();
    assert_eq!(vm.create_vcpu(0).unwrap_err().raw(), EIO);
    // FINALIZE before INIT_VM: EINVAL.
    assert_eq!(errno(vm.finalize()), EINVAL);
    vm.init_vm(&mut init_vm_buf(48)).unwrap();
    let v = vm.create_vcpu(0).unwrap();
    assert_eq!(vm.create_vcpu(0).unwrap_err().raw(), libc::EEXIST);
    assert_eq!(vm.create_vcpu(64).unwrap_err().raw(), EINVAL);
    assert_eq!(vm.enable_split_irqchip().unwrap_err().raw(), EINVAL);
    // INIT_VCPU once; the second time EINVAL; flags ≠ 0 EINVAL.
    let mut cmd = KvmTdxCmd {
        id: KVM_TDX_INIT_VCPU,
        flags: 1,
        data: 0,
        hw_error: 0,
    };
    assert_eq!(
        v.tdx_ioctl(&mut cmd, &mut [], &UserSpace::new())
            .unwrap_err()
            .raw(),
        EINVAL
    );
    v.init(0x1234).unwrap();
    assert_eq!(errno(v.init(0)), EINVAL);
    // hw_error ≠ 0 and unknown ids on the vCPU fd.
    let mut cmd = KvmTdxCmd::new(TdxCmdId::InitVcpu, 0, 0);
    cmd.hw_error = 5;
    assert_eq!(
        v.tdx_ioctl(&mut cmd, &mut [], &UserSpace::new())
            .unwrap_err()
            .raw(),
        EINVAL
    );
    let mut cmd = KvmTdxCmd {
        id: KVM_TDX_FINALIZE_VM,
        flags: 0,
        data: 0,
        hw_error: 0,
    };
    assert_eq!(
        v.tdx_ioctl(&mut cmd, &mut [], &UserSpace::new())
            .unwrap_err()
            .raw(),
        EINVAL
    );
    let vp = v.vp().unwrap();
    assert_eq!(
        vm.module().lock().unwrap().vcpu_state(vp),
        Some((VcpuState::Initialized, Some(0)))
    );
}

#[test]
fn finalize_without_vcpu_is_eio_and_bugs_the_vm() {
    let vm = SimTdxVm::new(new_module(), SimKvmConfig::default());
    vm.init_vm(&mut init_vm_buf(48)).unwrap();
    vm.enable_split_irqchip().unwrap();
    let v = vm.create_vcpu(0).unwrap(); // created, not INIT_VCPU'd: the module has no vCPU
    let e = vm.finalize().unwrap_err();
    assert_eq!(e.errno.raw(), EIO);
    assert_eq!(e.hw_error, TdxStatus::NO_VCPUS);
    assert!(vm.is_bugged());
    assert_eq!(errno(v.init(0)), EIO);
    assert_eq!(errno(vm.finalize()), EIO);
    let mut caps = TdxCapabilitiesBuf::with_capacity(8);
    caps.set_nent_to_capacity();
    assert_eq!(errno(vm.capabilities(&mut caps)), EIO);
}

#[test]
fn init_mem_region_rules() {
    let (vm, v) = initialized_vm(SimKvmConfig::default(), 1);
    let v1 = vm.create_vcpu(1).unwrap();
    let src = vec![0xA5u8; 4 * 4096];
    let user = UserRegion {
        addr: USER_BASE,
        bytes: &src,
    };
    make_private(&vm, 0x10_0000, 0x3000);
    let r = |gpa, nr| KvmTdxInitMemRegion {
        source_addr: USER_BASE,
        gpa,
        nr_pages: nr,
    };
    // Before that vCPU's INIT_VCPU.
    assert_eq!(
        errno(v1.init_mem_region(&mut r(0x10_0000, 1), false, &user)),
        EINVAL
    );
    // Flags other than MEASURE.
    let mut reg = r(0x10_0000, 1);
    let mut cmd = KvmTdxCmd::new(TdxCmdId::InitMemRegion, 2, 0);
    assert_eq!(
        v[0].tdx_ioctl(&mut cmd, reg.as_mut_bytes(), &user)
            .unwrap_err()
            .raw(),
        EINVAL
    );
    // Alignment, zero pages, zero source, overflow, shared GPA.
    for mut bad in [
        KvmTdxInitMemRegion {
            source_addr: USER_BASE + 8,
            gpa: 0x10_0000,
            nr_pages: 1,
        },
        KvmTdxInitMemRegion {
            source_addr: 0,
            gpa: 0x10_0000,
            nr_pages: 1,
        },
        r(0x10_0800, 1),
        r(0x10_0000, 0),
        r(0xFFFF_FFFF_FFFF_F000, 2),
        r(1 << 47, 1),
        r((1 << 47) - 0x1000, 2),
    ] {
        let before = bad;
        assert_eq!(
            errno(v[0].init_mem_region(&mut bad, false, &user)),
            EINVAL,
            "{before:?}"
        );
        assert_eq!(bad, before, "early checks leave the struct alone");
    }
    // A range that runs into non-private memory: progress is copied back.
    let mut reg = r(0x10_2000, 2);
    assert_eq!(errno(v[0].init_mem_region(&mut reg, true, &user)), EINVAL);
    assert_eq!(
        reg,
        KvmTdxInitMemRegion {
            source_addr: USER_BASE + 0x1000,
            gpa: 0x10_3000,
            nr_pages: 1
        }
    );
    // Source not mapped: EFAULT, also with progress copied back.
    let mut reg = KvmTdxInitMemRegion {
        source_addr: USER_BASE + 0x3000,
        gpa: 0x10_0000,
        nr_pages: 2,
    };
    assert_eq!(
        errno(v[0].init_mem_region(&mut reg, false, &user)),
        libc::EFAULT
    );
    assert_eq!(reg.nr_pages, 1);
    // The page already populated: EEXIST.
    assert_eq!(
        errno(v[0].init_mem_region(&mut r(0x10_0000, 1), false, &user)),
        libc::EEXIST
    );
    // Private but without guest_memfd: EINVAL.
    vm.set_memory_attributes(&kvm_coco_uapi::KvmMemoryAttributes {
        address: 0x20_0000,
        size: 0x1000,
        attributes: kvm_coco_uapi::KVM_MEMORY_ATTRIBUTE_PRIVATE,
        flags: 0,
    })
    .unwrap();
    assert_eq!(
        errno(v[0].init_mem_region(&mut r(0x20_0000, 1), false, &user)),
        EINVAL
    );
    assert!(!vm.is_bugged());
}

#[test]
fn measure_flag_interleaves_per_page() {
    // Two measured pages: PAGE.ADD(a), 16 × EXTEND(a), PAGE.ADD(b), 16 × EXTEND(b) (facts §5.1),
    // which differs from adding both pages first.
    let (vm, v) = initialized_vm(SimKvmConfig::default(), 1);
    let src: Vec<u8> = (0..8192u32).map(|i| (i * 7 % 256) as u8).collect();
    add_pages(&vm, &v[0], 0x5000, &src, true);
    vm.finalize().unwrap();
    let secs = [Sec {
        data_offset: 0,
        raw: 0x2000,
        gpa: 0x5000,
        mem: 0x2000,
        kind: 0,
        attr: 1,
    }];
    assert_eq!(hex(&vm.mrtd().unwrap()), hex(&reference_mrtd(&src, &secs)));
}

#[test]
fn get_cpuid() {
    let (vm, v) = initialized_vm(SimKvmConfig::default(), 1);
    let mut small = CpuidFam::<KvmCpuid2, Vec<u64>>::with_capacity(2);
    small.set_nent_to_capacity();
    assert_eq!(errno(v[0].get_cpuid(&mut small)), E2BIG);
    // Default module leaves within 0..=0xD and 0x80000000..=0x80000008: 0, 1, 7.0, 7.1, 0xD.0,
    // 0xD.1, 0x80000000, 0x80000001, 0x80000008 = 9.
    assert_eq!(small.nent(), 9, "needed count written back");
    let mut buf = CpuidFam::<KvmCpuid2, Vec<u64>>::with_capacity(32);
    buf.set_nent_to_capacity();
    v[0].get_cpuid(&mut buf).unwrap();
    assert_eq!(buf.nent(), 9);
    let leaves: Vec<(u32, u32)> = buf.entries().map(|e| (e.function, e.index)).collect();
    assert_eq!(
        leaves,
        [
            (0, 0),
            (1, 0),
            (7, 0),
            (7, 1),
            (0xD, 0),
            (0xD, 1),
            (0x8000_0000, 0),
            (0x8000_0001, 0),
            (0x8000_0008, 0)
        ]
    );
    assert_eq!(buf.find(0, 0).unwrap().ebx, 0x756e_6547);
    assert_eq!((buf.find(0x8000_0008, 0).unwrap().eax >> 16) & 0xFF, 48);
    // ALLOW_DIRECT bit left 0 in INIT_VM → cleared (leaf 1 ECX bit 1, native 1).
    assert_eq!(buf.find(1, 0).unwrap().ecx & 2, 0);
    assert_eq!(
        buf.find(7, 1).unwrap().flags,
        KVM_CPUID_FLAG_SIGNIFCANT_INDEX
    );
    // After FINALIZE: EINVAL.
    add_pages(&vm, &v[0], 0, &[0u8; 4096], false);
    vm.finalize().unwrap();
    assert_eq!(errno(v[0].get_cpuid(&mut buf)), EINVAL);
}

#[test]
fn after_finalize() {
    let (vm, v) = finalized();
    assert_eq!(vm.td_state(), TdState::Runnable);
    let page = [0u8; 4096];
    let user = UserRegion {
        addr: USER_BASE,
        bytes: &page,
    };
    let mut r = KvmTdxInitMemRegion {
        source_addr: USER_BASE,
        gpa: 0x2000,
        nr_pages: 1,
    };
    assert_eq!(errno(v[0].init_mem_region(&mut r, false, &user)), EINVAL);
    assert_eq!(errno(v[1].init(0)), EINVAL);
    let mut buf = CpuidFam::<KvmCpuid2, Vec<u64>>::with_capacity(32);
    buf.set_nent_to_capacity();
    assert_eq!(errno(v[0].get_cpuid(&mut buf)), EINVAL);
    assert_eq!(errno(vm.finalize()), EINVAL);
    assert_eq!(errno(vm.init_vm(&mut init_vm_buf(48))), EINVAL);
    assert_eq!(vm.create_vcpu(5).unwrap_err().raw(), EIO);
    v[0].run().unwrap();
    assert!(!vm.is_bugged());
}

#[test]
fn kvm_run_rules() {
    let (vm, v) = initialized_vm(SimKvmConfig::default(), 1);
    let late = vm.create_vcpu(1).unwrap();
    // Before FINALIZE.
    assert_eq!(v[0].run().unwrap_err().raw(), EINVAL);
    add_pages(&vm, &v[0], 0, &[0u8; 4096], true);
    vm.finalize().unwrap();
    v[0].run().unwrap();
    assert_eq!(v[0].run_with_sync_regs(1, 0).unwrap_err().raw(), EINVAL);
    assert_eq!(v[0].run_with_sync_regs(0, 4).unwrap_err().raw(), EINVAL);
    // A vCPU without INIT_VCPU, after FINALIZE.
    assert_eq!(late.run().unwrap_err().raw(), EINVAL);
}

#[test]
fn protected_register_state() {
    let (_vm, v) = initialized_vm(SimKvmConfig::default(), 1);
    assert!(v[0].is_state_protected());
    for op in [
        RegisterOp::Regs,
        RegisterOp::Sregs,
        RegisterOp::Fpu,
        RegisterOp::Xsave,
        RegisterOp::DebugRegs,
        RegisterOp::GuestDebug,
    ] {
        assert_eq!(
            v[0].register_access(op).unwrap_err().raw(),
            EINVAL,
            "{op:?}"
        );
    }
    // A kernel that allows DEBUG TDs: the vCPU state is not protected.
    let kvm = SimKvmConfig {
        supported_td_attrs: TDX_TD_ATTR_SEPT_VE_DISABLE | TDX_TD_ATTR_DEBUG,
        ..Default::default()
    };
    let vm = SimTdxVm::new(new_module(), kvm);
    let mut b = init_vm_buf(48);
    let mut h = b.header();
    h.attributes = TDX_TD_ATTR_DEBUG;
    b.set_header(&h);
    vm.init_vm(&mut b).unwrap();
    vm.enable_split_irqchip().unwrap();
    let d = vm.create_vcpu(0).unwrap();
    assert!(!d.is_state_protected());
    d.register_access(RegisterOp::Regs).unwrap();
}

#[test]
fn capabilities_buffer_is_2056_plus_40n() {
    // The byte-level entry point reads exactly the uAPI layout.
    let vm = SimTdxVm::new(new_module(), SimKvmConfig::default());
    let mut raw = vec![0u8; 2056 + 40 * 6];
    raw[2048..2052].copy_from_slice(&6u32.to_le_bytes());
    let mut cmd = KvmTdxCmd::new(TdxCmdId::Capabilities, 0, 0);
    vm.tdx_ioctl(&mut cmd, &mut raw).unwrap();
    assert_eq!(u32::from_le_bytes(raw[2048..2052].try_into().unwrap()), 6);
    let last = 2056 + 40 * 5;
    assert_eq!(
        u32::from_le_bytes(raw[last..last + 4].try_into().unwrap()),
        0x8000_0008
    );
    // One byte short of the sixth entry: EFAULT.
    let mut short = raw[..raw.len() - 1].to_vec();
    assert_eq!(
        vm.tdx_ioctl(&mut cmd, &mut short).unwrap_err().raw(),
        libc::EFAULT
    );
    assert_eq!(std::mem::size_of::<KvmTdxCapabilities>(), 2056);
}
