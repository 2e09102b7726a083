//! vCPU register state and the VMSA KVM builds from it (`sev_es_sync_vmsa`).

use kvm_bindings::{kvm_dtable, kvm_regs, kvm_segment, kvm_sregs};

use psp_driver::sim::mem::PAGE_SIZE;

/// `DR7_FIXED_1`: the only DR7 bit that may be set when a VMSA is encrypted.
pub const DR7_FIXED_1: u64 = 0x400;
/// The reset PAT (`MSR_IA32_CR_PAT` default), the VMSA's G_PAT.
pub const RESET_PAT: u64 = 0x0007_0406_0007_0406;

const X86_CR0_NW: u64 = 1 << 29;
const X86_CR0_CD: u64 = 1 << 30;
const X86_CR4_MCE: u64 = 1 << 6;
const EFER_SVME: u64 = 1 << 12;

/// The register state of a simulated vCPU as KVM holds it before the VMSA is encrypted.
#[derive(Clone, Copy, Debug)]
pub struct VcpuRegs {
    /// General-purpose registers, RIP and RFLAGS (`KVM_GET/SET_REGS`).
    pub regs: kvm_regs,
    /// Segments, descriptor tables, control registers, EFER (`KVM_GET/SET_SREGS`).
    pub sregs: kvm_sregs,
    /// DR6 (`KVM_SET_DEBUGREGS`).
    pub dr6: u64,
    /// DR7 (`KVM_SET_DEBUGREGS`); bits other than [`DR7_FIXED_1`] make VMSA encryption fail.
    pub dr7: u64,
    /// XCR0 (`KVM_SET_XCRS`).
    pub xcr0: u64,
    /// IA32_XSS.
    pub xss: u64,
    /// PKRU.
    pub pkru: u32,
    /// The guest PAT.
    pub pat: u64,
    /// MXCSR of the guest FPU state.
    pub mxcsr: u32,
    /// x87 control word of the guest FPU state.
    pub fcw: u16,
}

fn seg(selector: u16, base: u64, type_: u8, s: u8) -> kvm_segment {
    kvm_segment {
        base,
        limit: 0xFFFF,
        selector,
        type_,
        present: 1,
        s,
        ..Default::default()
    }
}

impl VcpuRegs {
    /// The state after `KVM_CREATE_VCPU` on SVM (`kvm_vcpu_reset` + `init_vmcb`): CS
    /// F000:FFF0 with base 0xFFFF0000 (type 0xA), data segments type 2, LDTR type 2, TR
    /// busy 16-bit TSS (type 3), CR0 = NW|CD|ET, RDX = 0x600 (no CPUID set yet), DR6/DR7 at
    /// their reset values, XCR0 = 1, PAT at reset, MXCSR 0x1F80, FCW 0x037F.
    pub fn reset() -> Self {
        let data = seg(0, 0, 2, 1);
        let sregs = kvm_sregs {
            cs: seg(0xF000, 0xFFFF_0000, 0xA, 1),
            ds: data,
            es: data,
            fs: data,
            gs: data,
            ss: data,
            tr: seg(0, 0, 3, 0),
            ldt: seg(0, 0, 2, 0),
            gdt: kvm_dtable {
                base: 0,
                limit: 0xFFFF,
                ..Default::default()
            },
            idt: kvm_dtable {
                base: 0,
                limit: 0xFFFF,
                ..Default::default()
            },
            cr0: 0x6000_0010,
            ..Default::default()
        };
        let regs = kvm_regs {
            rip: 0xFFF0,
            rflags: 2,
            rdx: 0x600,
            ..Default::default()
        };
        Self {
            regs,
            sregs,
            dr6: 0xFFFF_0FF0,
            dr7: DR7_FIXED_1,
            xcr0: 1,
            xss: 0,
            pkru: 0,
            pat: RESET_PAT,
            mxcsr: 0x1F80,
            fcw: 0x037F,
        }
    }

    /// The VMSA page: the VMCB save area as SVM programs it from this state (CR0 without
    /// CD/NW, CR4 with the host's MCE, EFER with SVME), then the GPRs, RIP, XCR0, PKRU,
    /// XSS, DR6 and `sev_features`; with `sync_fpu` (every VM type but DEFAULT) also MXCSR
    /// and the x87 control word. Offsets: firmware-and-measurement facts §2.2.
    pub fn vmsa(&self, sev_features: u64, sync_fpu: bool) -> Box<[u8; PAGE_SIZE]> {
        let mut p = Box::new([0u8; PAGE_SIZE]);
        let mut put = |off: usize, b: &[u8]| p[off..off + b.len()].copy_from_slice(b);
        let mut vseg = |off: usize, s: &kvm_segment| {
            let attrib: u16 = if s.unusable != 0 {
                0
            } else {
                u16::from(s.type_ & 0xF)
                    | u16::from(s.s & 1) << 4
                    | u16::from(s.dpl & 3) << 5
                    | u16::from(s.present & 1) << 7
                    | u16::from(s.avl & 1) << 8
                    | u16::from(s.l & 1) << 9
                    | u16::from(s.db & 1) << 10
                    | u16::from(s.g & 1) << 11
            };
            put(off, &s.selector.to_le_bytes());
            put(off + 2, &attrib.to_le_bytes());
            put(off + 4, &s.limit.to_le_bytes());
            put(off + 8, &s.base.to_le_bytes());
        };
        let s = &self.sregs;
        vseg(0x00, &s.es);
        vseg(0x10, &s.cs);
        vseg(0x20, &s.ss);
        vseg(0x30, &s.ds);
        vseg(0x40, &s.fs);
        vseg(0x50, &s.gs);
        vseg(0x70, &s.ldt);
        vseg(0x90, &s.tr);
        let mut dt = |off: usize, d: &kvm_dtable| {
            put(off + 4, &u32::from(d.limit).to_le_bytes());
            put(off + 8, &d.base.to_le_bytes());
        };
        dt(0x60, &s.gdt);
        dt(0x80, &s.idt);
        let r = &self.regs;
        let q = [
            (0x0D0, s.efer | EFER_SVME),
            (0x140, self.xss),
            (0x148, s.cr4 | X86_CR4_MCE),
            (0x150, s.cr3),
            (0x158, s.cr0 & !(X86_CR0_CD | X86_CR0_NW)),
            (0x160, self.dr7),
            (0x168, self.dr6),
            (0x170, r.rflags),
            (0x178, r.rip),
            (0x1D8, r.rsp),
            (0x1F8, r.rax),
            (0x268, self.pat),
            (0x308, r.rcx),
            (0x310, r.rdx),
            (0x318, r.rbx),
            (0x328, r.rbp),
            (0x330, r.rsi),
            (0x338, r.rdi),
            (0x340, r.r8),
            (0x348, r.r9),
            (0x350, r.r10),
            (0x358, r.r11),
            (0x360, r.r12),
            (0x368, r.r13),
            (0x370, r.r14),
            (0x378, r.r15),
            (0x3B0, sev_features),
            (0x3E8, self.xcr0),
        ];
        for (off, v) in q {
            put(off, &v.to_le_bytes());
        }
        put(0x2E8, &self.pkru.to_le_bytes());
        if sync_fpu {
            put(0x408, &self.mxcsr.to_le_bytes());
            put(0x410, &self.fcw.to_le_bytes());
        }
        p
    }
}
