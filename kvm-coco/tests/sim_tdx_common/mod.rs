//! Helpers shared by the sim_tdx_* tests: hex, synthetic TDVF images, a QEMU-like
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
    use kvm_coco::measure::synthetic::{SyntheticImage, SyntheticTdvfSection};
    SyntheticImage {
        size,
        pattern: |i| (i % 251) as u8,
        tdvf: Some(
            secs.iter()
                .map(|s| SyntheticTdvfSection {
                    data_offset: s.data_offset,
                    raw_size: s.raw,
                    memory_address: s.gpa,
                    memory_data_size: s.mem,
                    section_type: s.kind,
                    attributes: s.attr,
                })
                .collect(),
        ),
        sev_metadata: None,
        hash_table: None,
        secret_block: None,
        reset_eip: None,
    }
    .build()
    .unwrap()
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

/// Makes `[gpa, gpa + bytes.len())` private and initializes it from `bytes` (staged at
/// [`USER_BASE`]) with one KVM_TDX_INIT_MEM_REGION, measured (MR.EXTEND) iff `measure`.
pub fn add_pages(vm: &SimTdxVm, vcpu: &SimTdxVcpu, gpa: u64, bytes: &[u8], measure: bool) {
    let len = bytes.len() as u64;
    make_private(vm, gpa, len);
    let mut r = KvmTdxInitMemRegion {
        source_addr: USER_BASE,
        gpa,
        nr_pages: len / 4096,
    };
    vcpu.init_mem_region(
        &mut r,
        measure,
        &UserRegion {
            addr: USER_BASE,
            bytes,
        },
    )
    .unwrap();
}

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
