//! Flexible-array buffers and `kvm_run` views, checked against the facts' byte layouts
//! (linux-uapi.md §4 sizes 2056 + 40·n and 264 + 40·n; §4.1, §5.2, §5.3, §6 offsets).

use kvm_coco_uapi::*;
use zerocopy::IntoBytes;

#[test]
fn tdx_capabilities_buffer_layout() {
    let mut caps = TdxCapabilitiesBuf::with_capacity(3);
    assert!(caps.as_bytes().len() >= 2056 + 3 * 40);
    assert_eq!(caps.capacity(), 3);
    caps.set_nent_to_capacity();
    // nent lives at offset 2048 (cpuid header), entries from 2056.
    assert_eq!(&caps.as_bytes()[2048..2052], &3u32.to_ne_bytes());
    // Simulate the kernel writing one entry and nent = 1.
    let bytes = caps.as_mut_bytes();
    bytes[2048..2052].copy_from_slice(&1u32.to_ne_bytes());
    bytes[2056..2060].copy_from_slice(&0x8000_0008u32.to_ne_bytes());
    bytes[2068..2072].copy_from_slice(&0x00ff_0000u32.to_ne_bytes()); // eax @ +12
    let e = caps.entry(0).unwrap();
    assert_eq!((e.function, e.eax), (0x8000_0008, 0x00ff_0000));
    assert_eq!(caps.len(), 1);
    assert!(caps.entry(1).is_none());
}

#[test]
fn kernel_written_nent_is_clamped() {
    let mut buf = CpuidFam::<KvmCpuid2, Vec<u64>>::with_capacity(2);
    buf.as_mut_bytes()[0..4].copy_from_slice(&1000u32.to_ne_bytes());
    assert_eq!(buf.nent(), 1000);
    assert_eq!(buf.len(), 2);
    assert_eq!(buf.entries().count(), 2);
}

#[test]
fn tdx_init_vm_buffer_layout() {
    let mut vm = TdxInitVmBuf::with_capacity(2);
    let hdr = KvmTdxInitVm {
        attributes: 0x1000_0000,
        xfam: 0xE7,
        ..Default::default()
    };
    vm.set_header(&hdr);
    vm.push(KvmCpuidEntry2 {
        function: 7,
        index: 0,
        flags: KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
        ..Default::default()
    })
    .unwrap();
    vm.push(KvmCpuidEntry2 {
        function: 0xd,
        index: 1,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        vm.push(KvmCpuidEntry2::default()),
        Err(FamError::Full { capacity: 2 })
    );
    let b = vm.as_bytes();
    assert_eq!(&b[0..8], &0x1000_0000u64.to_ne_bytes());
    assert_eq!(&b[256..260], &2u32.to_ne_bytes()); // cpuid.nent @256
    assert_eq!(&b[264..268], &7u32.to_ne_bytes()); // entries[0].function @264
    assert_eq!(&b[304..308], &0xdu32.to_ne_bytes()); // entries[1] @264+40
    assert_eq!(vm.header().xfam, 0xE7);
    assert_eq!(vm.find(0xd, 1).map(|e| e.index), Some(1));
    // set_header keeps nent.
    vm.set_header(&KvmTdxInitVm::default());
    assert_eq!(vm.nent(), 2);
    vm.clear();
    assert!(vm.is_empty());
}

#[test]
fn no_alloc_storage() {
    assert_eq!(
        CpuidFam::<KvmTdxCapabilities, [u64; 4]>::from_storage([0; 4]).unwrap_err(),
        FamError::StorageTooSmall {
            need: 2056,
            have: 32
        }
    );
    // 264 + 40 = 304 bytes = 38 words.
    let b = CpuidFam::<KvmTdxInitVm, [u64; 38]>::from_storage([1; 38]).unwrap();
    assert_eq!(b.capacity(), 1);
    assert!(b.as_bytes().iter().all(|&x| x == 0), "storage is zeroed");
}

fn run_page() -> Vec<u8> {
    vec![0u8; KVM_RUN_SIZE]
}

#[test]
fn memory_fault_view() {
    let mut run = run_page();
    run[8..12].copy_from_slice(&39u32.to_ne_bytes());
    run[32..40].copy_from_slice(&8u64.to_ne_bytes());
    run[40..48].copy_from_slice(&0xfee0_0000u64.to_ne_bytes());
    run[48..56].copy_from_slice(&0x1000u64.to_ne_bytes());
    assert_eq!(exit_reason(&run), Some(KVM_EXIT_MEMORY_FAULT));
    let f = KvmRunMemoryFault::read_from_run(&run).unwrap();
    assert!(f.is_private());
    assert_eq!((f.gpa, f.size), (0xfee0_0000, 0x1000));
    assert!(KvmRunMemoryFault::read_from_run(&run[..40]).is_none());
}

#[test]
fn map_gpa_range_view_and_reply() {
    let mut run = run_page();
    run[32..40].copy_from_slice(&12u64.to_ne_bytes()); // nr
    run[40..48].copy_from_slice(&0x20_0000u64.to_ne_bytes()); // args[0]
    run[48..56].copy_from_slice(&512u64.to_ne_bytes()); // args[1]
    run[56..64].copy_from_slice(&0x11u64.to_ne_bytes()); // args[2]: 2M, encrypted
    let mut hc = KvmRunHypercall::read_from_run(&run).unwrap();
    let req = hc.map_gpa_range().unwrap();
    assert_eq!(
        req,
        MapGpaRange {
            gpa: 0x20_0000,
            npages: 512,
            page_size: 1,
            private: true
        }
    );
    hc.set_ret(MapGpaRangeRet::Again);
    hc.write_to_run(&mut run).unwrap();
    assert_eq!(&run[88..96], &11u64.to_ne_bytes()); // hypercall.ret @88
}

#[test]
fn snp_req_certs_view() {
    let mut run = run_page();
    run[40..48].copy_from_slice(&4u64.to_ne_bytes()); // npages @40
    let mut c = KvmExitSnpReqCerts::read_from_run(&run).unwrap();
    assert_eq!(c.npages, 4);
    c.npages = 9;
    c.ret = SnpReqCertsRet::NoSpace.raw();
    c.write_to_run(&mut run).unwrap();
    assert_eq!(&run[48..56], &28u64.to_ne_bytes()); // ret @48
    assert_eq!(SnpReqCertsRet::Io.guest_exitinfo2(), 0xFFFF_FFFF_0000_0000);
    assert_eq!(
        SnpReqCertsRet::NoSpace.guest_exitinfo2(),
        0x0000_0001_0000_0000
    );
}

#[test]
fn tdx_get_quote_view() {
    let mut run = run_page();
    run[40..48].copy_from_slice(&0x10002u64.to_ne_bytes()); // tdx.nr @40
    run[56..64].copy_from_slice(&0x7000u64.to_ne_bytes()); // get_quote.gpa @56
    run[64..72].copy_from_slice(&0x2000u64.to_ne_bytes()); // get_quote.size @64
    let t = KvmRunTdx::read_from_run(&run).unwrap();
    assert_eq!(t.nr, TDVMCALL_GET_QUOTE);
    let mut q = KvmRunTdxGetQuote::read_from_run(&run).unwrap();
    assert_eq!((q.gpa, q.size), (0x7000, 0x2000));
    q.ret = TDVMCALL_STATUS_SUCCESS;
    q.write_to_run(&mut run).unwrap();
    let info = KvmRunTdxGetTdvmcallInfo::read_from_run(&run).unwrap();
    assert_eq!(
        info.leaf, 0x7000,
        "arms overlay the same union at kvm_run offset 48"
    );
}

#[test]
fn immediate_exit() {
    let mut run = run_page();
    set_immediate_exit(&mut run, true).unwrap();
    assert_eq!(run[1], 1);
    let h = KvmRunHeader::read_from_run(&run).unwrap();
    assert_eq!(h.immediate_exit, 1);
}

#[test]
fn launch_finish_odd_offsets_in_bytes() {
    let f = KvmSevSnpLaunchFinish {
        host_data: [0xAB; 32],
        flags: 0x1234,
        ..Default::default()
    };
    let b = f.as_bytes();
    assert_eq!(b.len(), 88);
    assert_eq!(b[18], 0);
    assert_eq!(b[19], 0xAB);
    assert_eq!(b[50], 0xAB);
    assert_eq!(b[51], 0);
    assert_eq!(&b[54..56], &0x1234u16.to_ne_bytes());
}
