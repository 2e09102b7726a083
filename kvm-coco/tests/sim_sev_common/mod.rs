//! Shared helpers of the simulated-SEV tests: a VMM-like driver that executes a launch plan
//! on [`SimSevVm`] the way QEMU does (memory, vCPU reset state, the KVM sub-commands).
#![allow(dead_code)]

use std::sync::Arc;

use kvm_bindings::{kvm_regs, kvm_segment, kvm_sregs};
use kvm_coco::measure::plan::{LaunchPlan, PageKind, Tee};
use kvm_coco::sim::sev::*;
use kvm_coco_uapi::*;

/// Low guest RAM: [0, 16 MiB) (covers every metadata GPA of the test images).
pub const LOW_SIZE: u64 = 0x100_0000;

pub fn host() -> Arc<SimSevHost> {
    SimSevHost::new(SimSevConfig::default()).unwrap()
}

/// A VMM session: host, VM, `/dev/sev` fd, memslots and vCPUs.
pub struct Session {
    pub host: Arc<SimSevHost>,
    pub vm: SimSevVm,
    pub sev_fd: i32,
    pub vcpus: Vec<SimSevVcpu>,
    /// (gpa, size, uaddr) of each normal memslot.
    pub slots: Vec<(u64, u64, u64)>,
}

impl Session {
    pub fn new(host: &Arc<SimSevHost>, vm_type: u32) -> Self {
        let sev_fd = host.open_dev_sev();
        let vm = SimSevVm::new(host, vm_type).unwrap();
        Self {
            host: host.clone(),
            vm,
            sev_fd,
            vcpus: Vec::new(),
            slots: Vec::new(),
        }
    }

    /// A normal memslot backed by fresh VMM memory.
    pub fn add_ram(&mut self, slot: u32, gpa: u64, size: u64) -> u64 {
        let uaddr = self.host.mmap(size).unwrap();
        self.vm
            .set_user_memory_region2(&KvmUserspaceMemoryRegion2 {
                slot,
                guest_phys_addr: gpa,
                memory_size: size,
                userspace_addr: uaddr,
                ..Default::default()
            })
            .unwrap();
        self.slots.push((gpa, size, uaddr));
        uaddr
    }

    /// A guest_memfd memslot, entirely PRIVATE.
    pub fn add_private_ram(&mut self, slot: u32, gpa: u64, size: u64) {
        let uaddr = self.host.mmap(size).unwrap();
        let gmem = self.vm.create_guest_memfd(size, 0).unwrap();
        self.vm
            .set_user_memory_region2(&KvmUserspaceMemoryRegion2 {
                slot,
                flags: KVM_MEM_GUEST_MEMFD,
                guest_phys_addr: gpa,
                memory_size: size,
                userspace_addr: uaddr,
                guest_memfd: gmem as u32,
                ..Default::default()
            })
            .unwrap();
        self.vm
            .set_memory_attributes(&KvmMemoryAttributes {
                address: gpa,
                size,
                attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE,
                flags: 0,
            })
            .unwrap();
        self.slots.push((gpa, size, uaddr));
    }

    pub fn uaddr_of(&self, gpa: u64) -> u64 {
        let (g, _, u) = self
            .slots
            .iter()
            .find(|(g, s, _)| gpa >= *g && gpa < g + s)
            .expect("gpa in a slot");
        u + (gpa - g)
    }

    /// Creates `n` vCPUs in QEMU's reset state: vCPU 0 at 0xFFFFFFF0, the others at `ap_eip`,
    /// RDX = `sig`.
    pub fn qemu_vcpus(&mut self, n: u32, ap_eip: u32, sig: u32) {
        for i in 0..n {
            let v = self.vm.create_vcpu(i).unwrap();
            let eip = if i == 0 { 0xFFFF_FFF0 } else { ap_eip };
            qemu_reset(&v, eip, sig);
            self.vcpus.push(v);
        }
    }

    /// KVM_SEV_LAUNCH_START with `policy` and no session; returns the command struct as the
    /// kernel left it (the handle filled in).
    pub fn launch_start(&self, policy: u32) -> KvmSevLaunchStart {
        let mut start = KvmSevLaunchStart {
            policy,
            ..Default::default()
        };
        self.vm
            .sev_cmd(KVM_SEV_LAUNCH_START, self.sev_fd, &mut start)
            .unwrap();
        start
    }

    pub fn init2(&self, vmsa_features: u64) {
        let mut init = KvmSevInit {
            vmsa_features,
            ..Default::default()
        };
        self.vm
            .sev_cmd(KVM_SEV_INIT2, self.sev_fd, &mut init)
            .unwrap();
    }
}

/// QEMU's x86 reset state (`x86_cpu_reset`), set through KVM_SET_SREGS / KVM_SET_REGS.
pub fn qemu_reset(v: &SimSevVcpu, eip: u32, sig: u32) {
    let seg = |sel: u16, base: u64, type_: u8, s: u8| kvm_segment {
        base,
        limit: 0xFFFF,
        selector: sel,
        type_,
        present: 1,
        s,
        ..Default::default()
    };
    let mut sregs: kvm_sregs = v.sregs().unwrap();
    let data = seg(0, 0, 3, 1);
    sregs.cs = seg(0xF000, u64::from(eip & 0xFFFF_0000), 0xB, 1);
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = seg(0, 0, 0xB, 0);
    sregs.ldt = seg(0, 0, 2, 0);
    v.set_sregs(&sregs).unwrap();
    let regs = kvm_regs {
        rip: u64::from(eip & 0xFFFF),
        rflags: 2,
        rdx: u64::from(sig),
        ..Default::default()
    };
    v.set_regs(&regs).unwrap();
}

/// The padded bytes of a step.
pub fn step_bytes(data: &[u8], len: u64) -> Vec<u8> {
    let mut b = data.to_vec();
    b.resize(len as usize, 0);
    b
}

/// Executes the data steps of an SEV / SEV-ES plan (LAUNCH_UPDATE_DATA on the guest RAM),
/// then LAUNCH_UPDATE_VMSA for SEV-ES. LAUNCH_START must have happened.
pub fn sev_updates(s: &Session, plan: &LaunchPlan<'_>) {
    for st in &plan.steps {
        if st.kind == PageKind::Vmsa {
            continue;
        }
        assert_eq!(st.kind, PageKind::Measured);
        let uaddr = s.uaddr_of(st.gpa);
        s.host
            .write_user(uaddr, &step_bytes(st.data.as_slice(), st.len))
            .unwrap();
        let mut d = KvmSevLaunchUpdateData {
            uaddr,
            len: st.len as u32,
            ..Default::default()
        };
        s.vm.sev_cmd(KVM_SEV_LAUNCH_UPDATE_DATA, s.sev_fd, &mut d)
            .unwrap();
    }
    if plan.tee == Tee::SevEs {
        s.vm.sev_cmd_none(KVM_SEV_LAUNCH_UPDATE_VMSA, s.sev_fd)
            .unwrap();
    }
}

/// Executes the non-VMSA steps of an SNP plan with SNP_LAUNCH_UPDATE (looping on partial
/// progress). SNP_LAUNCH_START must have happened.
pub fn snp_updates(s: &Session, plan: &LaunchPlan<'_>) {
    for st in &plan.steps {
        if st.kind == PageKind::Vmsa {
            continue;
        }
        let ty = st.kind.snp_page_type() as u8;
        let uaddr = if st.kind == PageKind::Zero {
            0
        } else {
            s.host
                .mmap_bytes(&step_bytes(st.data.as_slice(), st.len))
                .unwrap()
        };
        let mut u = KvmSevSnpLaunchUpdate {
            gfn_start: st.gpa >> 12,
            uaddr,
            len: st.len,
            r#type: ty,
            ..Default::default()
        };
        while u.len != 0 {
            s.vm.sev_cmd(KVM_SEV_SNP_LAUNCH_UPDATE, s.sev_fd, &mut u)
                .unwrap();
        }
    }
}

/// Runs a complete launch of `plan` (QEMU conventions) and returns the launch digest the
/// firmware computed: the SNP MEASUREMENT from an attestation report, or for SEV / SEV-ES
/// the launch digest from the legacy ATTESTATION report (`KVM_SEV_GET_ATTESTATION_REPORT`).
pub fn launch(
    plan: &LaunchPlan<'_>,
    fw_len: u64,
    vcpus: u32,
    ap_eip: u32,
    sig: u32,
    features: u64,
) -> (Session, Vec<u8>) {
    let host = host();
    let fw_gpa = (1u64 << 32) - fw_len;
    match plan.tee {
        Tee::Snp => {
            let mut s = Session::new(&host, KVM_X86_SNP_VM);
            s.init2(features & !SVM_SEV_FEAT_SNP_ACTIVE);
            s.add_private_ram(0, 0, LOW_SIZE);
            s.add_private_ram(1, fw_gpa, fw_len);
            s.qemu_vcpus(vcpus, ap_eip, sig);
            let mut start = KvmSevSnpLaunchStart {
                policy: 0x30000,
                ..Default::default()
            };
            s.vm.sev_cmd(KVM_SEV_SNP_LAUNCH_START, s.sev_fd, &mut start)
                .unwrap();
            snp_updates(&s, plan);
            let mut fin = KvmSevSnpLaunchFinish::default();
            s.vm.sev_cmd(KVM_SEV_SNP_LAUNCH_FINISH, s.sev_fd, &mut fin)
                .unwrap();
            let gctx = s.vm.snp_context().unwrap();
            let r = host.firmware().guest_report(gctx, &[0; 64], 0).unwrap();
            let m = r.measurement.to_vec();
            (s, m)
        }
        Tee::Sev | Tee::SevEs => {
            let es = plan.tee == Tee::SevEs;
            let mut s = Session::new(
                &host,
                if es {
                    KVM_X86_SEV_ES_VM
                } else {
                    KVM_X86_SEV_VM
                },
            );
            s.init2(0);
            s.add_ram(0, 0, LOW_SIZE);
            s.add_ram(1, fw_gpa, fw_len);
            s.qemu_vcpus(vcpus, ap_eip, sig);
            s.launch_start(if es { 0x4 } else { 0 });
            sev_updates(&s, plan);
            let out = host.mmap(48).unwrap();
            let mut m = KvmSevLaunchMeasure {
                uaddr: out,
                len: 48,
                ..Default::default()
            };
            s.vm.sev_cmd(KVM_SEV_LAUNCH_MEASURE, s.sev_fd, &mut m)
                .unwrap();
            let ld = attestation_ld(&s);
            s.vm.sev_cmd_none(KVM_SEV_LAUNCH_FINISH, s.sev_fd).unwrap();
            (s, ld)
        }
        Tee::Tdx => panic!("not an AMD plan"),
    }
}

/// The launch digest from KVM_SEV_GET_ATTESTATION_REPORT (report offset 0x10, 32 bytes,
/// firmware-and-measurement facts §1.7).
pub fn attestation_ld(s: &Session) -> Vec<u8> {
    let buf = s.host.mmap(0xD0).unwrap();
    let mut a = KvmSevAttestationReport {
        mnonce: [7; 16],
        uaddr: buf,
        len: 0xD0,
        ..Default::default()
    };
    s.vm.sev_cmd(KVM_SEV_GET_ATTESTATION_REPORT, s.sev_fd, &mut a)
        .unwrap();
    let r = s.host.read_user_vec(buf, 0xD0).unwrap();
    assert_eq!(&r[..16], &[7; 16], "mnonce echoed");
    r[0x10..0x30].to_vec()
}
