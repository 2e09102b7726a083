//! Helpers shared by the sim_tdx_* tests: hex, GUIDs, synthetic TDVF images, a QEMU-like
//! driver of the simulated KVM TDX layer, and a from-the-facts MRTD reference.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use kvm_coco::sim::tdx::*;
use kvm_coco_uapi::{
    KVM_MEMORY_ATTRIBUTE_PRIVATE, KvmCpuidEntry2, KvmMemoryAttributes, KvmTdxInitMemRegion,
    TdxInitVmBuf,
};
use sha2::{Digest, Sha384};

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// GUID text → on-disk (bytes_le) form.
pub fn guid(s: &str) -> [u8; 16] {
    let h: String = s.chars().filter(|c| *c != '-').collect();
    let b: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let mut g = [0u8; 16];
    g[..4].copy_from_slice(&[b[3], b[2], b[1], b[0]]);
    g[4..6].copy_from_slice(&[b[5], b[4]]);
    g[6..8].copy_from_slice(&[b[7], b[6]]);
    g[8..].copy_from_slice(&b[8..]);
    g
}

/// One TDVF section (facts §5.1): data offset, raw size, GPA, memory size, type, attributes.
#[derive(Clone, Copy, Debug)]
pub struct Sec {
    pub data_offset: u32,
    pub raw: u32,
    pub gpa: u64,
    pub mem: u64,
    pub kind: u32,
    pub attr: u32,
}

/// A synthetic firmware image of `size` bytes with a TDVF descriptor at `size - 0xF00` and
/// an OVMF footer table holding only the TDX metadata-offset entry (facts §5.1, §8.1).
pub fn tdvf_image(size: usize, secs: &[Sec]) -> Vec<u8> {
    let mut img: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let desc = size - 0xF00;
    img[desc - 16..desc].copy_from_slice(&guid("e9eaf9f3-168e-44d5-a8eb-7f4d8738f6ae"));
    let mut d = Vec::new();
    d.extend_from_slice(b"TDVF");
    d.extend_from_slice(&(16 + 32 * secs.len() as u32).to_le_bytes());
    d.extend_from_slice(&1u32.to_le_bytes());
    d.extend_from_slice(&(secs.len() as u32).to_le_bytes());
    for s in secs {
        d.extend_from_slice(&s.data_offset.to_le_bytes());
        d.extend_from_slice(&s.raw.to_le_bytes());
        d.extend_from_slice(&s.gpa.to_le_bytes());
        d.extend_from_slice(&s.mem.to_le_bytes());
        d.extend_from_slice(&s.kind.to_le_bytes());
        d.extend_from_slice(&s.attr.to_le_bytes());
    }
    img[desc..desc + d.len()].copy_from_slice(&d);
    // Footer table ending at size - 32: [u32 0xF00, u16 22, TDX GUID] [u16 40, footer GUID].
    let mut t = Vec::new();
    t.extend_from_slice(&0xF00u32.to_le_bytes());
    t.extend_from_slice(&22u16.to_le_bytes());
    t.extend_from_slice(&guid("e47a6535-984a-4798-865e-4685a7bf8ec2"));
    t.extend_from_slice(&40u16.to_le_bytes());
    t.extend_from_slice(&guid("96b582de-1fb2-45f7-baea-a366c55a082d"));
    let end = size - 32;
    img[end - t.len()..end].copy_from_slice(&t);
    img
}

/// The initial content QEMU passes for a section: the raw data zero-padded to its size.
pub fn section_source(img: &[u8], s: &Sec) -> Vec<u8> {
    let mut v = vec![0u8; s.mem as usize];
    if s.raw != 0 {
        let o = s.data_offset as usize;
        v[..s.raw as usize].copy_from_slice(&img[o..o + s.raw as usize]);
    }
    v
}

/// MRTD from the facts §5.1 algorithm, written here from the facts (not from the crate):
/// per page in section order, PAGE.ADD block, then for MR_EXTEND sections 16 × (MR.EXTEND
/// header block ‖ 256 bytes).
pub fn reference_mrtd(img: &[u8], secs: &[Sec]) -> [u8; 48] {
    let mut h = Sha384::new();
    for s in secs.iter().filter(|s| s.attr & 2 == 0) {
        let src = section_source(img, s);
        for p in 0..(s.mem / 4096) {
            let gpa = s.gpa + p * 4096;
            let mut b = [0u8; 128];
            b[..12].copy_from_slice(b"MEM.PAGE.ADD");
            b[16..24].copy_from_slice(&gpa.to_le_bytes());
            h.update(b);
            if s.attr & 1 != 0 {
                for c in 0..16u64 {
                    let mut b = [0u8; 128];
                    b[..9].copy_from_slice(b"MR.EXTEND");
                    b[16..24].copy_from_slice(&(gpa + c * 256).to_le_bytes());
                    h.update(b);
                    let o = (p * 4096 + c * 256) as usize;
                    h.update(&src[o..o + 256]);
                }
            }
        }
    }
    h.finalize().into()
}

pub fn new_module() -> Arc<Mutex<SimTdxModule>> {
    Arc::new(Mutex::new(SimTdxModule::new(TdxModuleConfig::default())))
}

/// The minimal CPUID KVM needs in INIT_VM: 0x80000008 with GPAW `bits`.
pub fn init_vm_buf(bits: u32) -> TdxInitVmBuf {
    let mut b = TdxInitVmBuf::with_capacity(1);
    b.push(KvmCpuidEntry2 {
        function: 0x8000_0008,
        eax: bits << 16,
        ..Default::default()
    })
    .unwrap();
    b
}

/// CREATE_VM → INIT_VM(GPAW 48) → split irqchip → `n` vCPUs with INIT_VCPU.
pub fn initialized_vm(kvm: SimKvmConfig, n: u32) -> (SimTdxVm, Vec<SimTdxVcpu>) {
    let vm = SimTdxVm::new(new_module(), kvm);
    vm.init_vm(&mut init_vm_buf(48)).unwrap();
    vm.enable_split_irqchip().unwrap();
    let vcpus: Vec<_> = (0..n).map(|i| vm.create_vcpu(i).unwrap()).collect();
    for v in &vcpus {
        v.init(0).unwrap();
    }
    (vm, vcpus)
}

pub fn make_private(vm: &SimTdxVm, gpa: u64, size: u64) {
    vm.add_guest_memfd_region(gpa, size).unwrap();
    vm.set_memory_attributes(&KvmMemoryAttributes {
        address: gpa,
        size,
        attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE,
        flags: 0,
    })
    .unwrap();
}

pub const USER_BASE: u64 = 0x7f00_0000_0000;

/// Loads TDVF sections the way QEMU does: one INIT_MEM_REGION per section in table order,
/// MEASURE iff MR_EXTEND (PAGE_AUG sections skipped, as the MRTD calculators do).
pub fn load_tdvf(vm: &SimTdxVm, vcpu: &SimTdxVcpu, img: &[u8], secs: &[Sec]) {
    for (i, s) in secs.iter().enumerate().filter(|(_, s)| s.attr & 2 == 0) {
        make_private(vm, s.gpa, s.mem);
        let src = section_source(img, s);
        let addr = USER_BASE + (i as u64) * 0x1_0000_0000;
        let user = UserRegion { addr, bytes: &src };
        let mut r = KvmTdxInitMemRegion {
            source_addr: addr,
            gpa: s.gpa,
            nr_pages: s.mem / 4096,
        };
        vcpu.init_mem_region(&mut r, s.attr & 1 != 0, &user)
            .unwrap();
        assert_eq!(r.nr_pages, 0);
        assert_eq!(r.gpa, s.gpa + s.mem);
    }
}

/// Module-level TD build: MNG.CREATE, KEY.CONFIG, 6 × ADDCX, MNG.INIT with `params`.
pub fn module_td(m: &mut SimTdxModule, params: &TdParams) -> TdHandle {
    let hkid = m.free_hkid().unwrap();
    let td = m.tdh_mng_create(hkid).unwrap();
    m.tdh_mng_key_config(td, 0).unwrap();
    for _ in 0..6 {
        m.tdh_mng_addcx(td).unwrap();
    }
    m.tdh_mng_init(td, params).unwrap();
    td
}

/// TD_PARAMS the default module accepts: XFAM x87|SSE, 4 vCPUs, 4-level EPT, 2.5 GHz.
pub fn good_params() -> TdParams {
    TdParams {
        xfam: 3.into(),
        max_vcpus: 4.into(),
        eptp_controls: (6u64 | (3 << 3)).into(),
        tsc_frequency: 100.into(),
        ..TdParams::default()
    }
}

/// VP.CREATE, 5 × VP.ADDCX, VP.INIT.
pub fn module_vcpu(m: &mut SimTdxModule, td: TdHandle) -> VpHandle {
    let vp = m.tdh_vp_create(td).unwrap();
    for _ in 0..5 {
        m.tdh_vp_addcx(vp).unwrap();
    }
    m.tdh_vp_init(vp, 0).unwrap();
    vp
}

/// Secure-EPT levels 3, 2, 1 for the region of `gpa` (4-level EPT).
pub fn sept_for(m: &mut SimTdxModule, td: TdHandle, gpa: u64) {
    for level in [3u8, 2, 1] {
        if !m.sept_present(td, gpa, level) {
            m.tdh_mem_sept_add(td, gpa, level).unwrap();
        }
    }
}
