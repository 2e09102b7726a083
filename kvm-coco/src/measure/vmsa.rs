//! The initial VMSA (SEV-ES save area) page of a vCPU, as KVM hands it to the firmware.
//!
//! For SEV-ES and SEV-SNP guests the register state is encrypted, so the firmware measures
//! each vCPU's 4 KiB VMSA page at launch. The page is the reset state KVM computes for the
//! vCPU (QEMU sets RDX to the CPUID signature), with the AP's reset vector taken from the
//! firmware's SEV-ES reset block. Only the fields below are non-zero:
//!
//! | offset | field | QEMU/KVM value |
//! |---|---|---|
//! | 0x000..0x09F | ES, CS, SS, DS, FS, GS, GDTR, LDTR, IDTR, TR | real-mode reset segments |
//! | 0x0D0 | EFER | 0x1000 (SVME) |
//! | 0x148 / 0x158 | CR4 / CR0 | 0x40 (MCE) / 0x10 (ET) |
//! | 0x160 / 0x168 | DR7 / DR6 | 0x400 / 0xFFFF0FF0 |
//! | 0x170 / 0x178 | RFLAGS / RIP | 0x2 / EIP & 0xFFFF |
//! | 0x268 | G_PAT | 0x0007040600070406 |
//! | 0x310 | RDX | CPUID(1).EAX signature |
//! | 0x3B0 | SEV_FEATURES | SNP: guest features; SEV-ES: 0 |
//! | 0x3E8 | XCR0 | 1 |
//! | 0x408 / 0x410 | MXCSR / X87_FCW | 0x1F80 / 0x037F (KVM with `KVM_SEV_INIT2`) |

use psp_driver::digest::PAGE_SIZE;

use super::vcpu::VmmType;

/// EIP of the boot vCPU after reset.
pub const BSP_EIP: u32 = 0xFFFF_FFF0;

/// Offsets of the VMSA fields this module writes (AMD APM vol. 2, table B-4).
pub mod offsets {
    /// ES segment (each segment: selector u16, attrib u16, limit u32, base u64).
    pub const ES: usize = 0x000;
    /// CS segment.
    pub const CS: usize = 0x010;
    /// SS segment.
    pub const SS: usize = 0x020;
    /// DS segment.
    pub const DS: usize = 0x030;
    /// FS segment.
    pub const FS: usize = 0x040;
    /// GS segment.
    pub const GS: usize = 0x050;
    /// GDTR.
    pub const GDTR: usize = 0x060;
    /// LDTR.
    pub const LDTR: usize = 0x070;
    /// IDTR.
    pub const IDTR: usize = 0x080;
    /// TR.
    pub const TR: usize = 0x090;
    /// EFER.
    pub const EFER: usize = 0x0D0;
    /// CR4.
    pub const CR4: usize = 0x148;
    /// CR3.
    pub const CR3: usize = 0x150;
    /// CR0.
    pub const CR0: usize = 0x158;
    /// DR7.
    pub const DR7: usize = 0x160;
    /// DR6.
    pub const DR6: usize = 0x168;
    /// RFLAGS.
    pub const RFLAGS: usize = 0x170;
    /// RIP.
    pub const RIP: usize = 0x178;
    /// G_PAT.
    pub const G_PAT: usize = 0x268;
    /// RDX.
    pub const RDX: usize = 0x310;
    /// SEV_FEATURES.
    pub const SEV_FEATURES: usize = 0x3B0;
    /// XCR0.
    pub const XCR0: usize = 0x3E8;
    /// MXCSR (u32).
    pub const MXCSR: usize = 0x408;
    /// X87_FCW (u16).
    pub const X87_FCW: usize = 0x410;
}

/// The initial register state of one vCPU, from which [`InitialVmsa::page`] builds the VMSA.
///
/// Construct it with [`InitialVmsa::for_vmm`] and adjust fields if a VMM differs further
/// (e.g. `mxcsr = 0, x87_fcw = 0` for kernels before `KVM_SEV_INIT2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitialVmsa {
    /// Reset EIP: [`BSP_EIP`] for vCPU 0, the reset-block EIP for APs. CS.base gets
    /// `eip & 0xFFFF0000`, RIP `eip & 0xFFFF`.
    pub eip: u32,
    /// SEV_FEATURES (SNP: the guest features, bit 0 SNPActive; SEV-ES: 0).
    pub sev_features: u64,
    /// RDX at reset.
    pub rdx: u64,
    /// CS attribute (VMCB compressed format).
    pub cs_attrib: u16,
    /// SS attribute.
    pub ss_attrib: u16,
    /// TR attribute.
    pub tr_attrib: u16,
    /// G_PAT.
    pub g_pat: u64,
    /// MXCSR.
    pub mxcsr: u32,
    /// X87 FPU control word.
    pub x87_fcw: u16,
}

impl InitialVmsa {
    /// The reset state `vmm` gives a vCPU starting at `eip`.
    ///
    /// `vcpu_sig` is the CPUID(1).EAX signature QEMU puts into RDX; EC2 and GCE use 0x600
    /// instead and ignore it.
    pub fn for_vmm(vmm: VmmType, eip: u32, vcpu_sig: u32, sev_features: u64) -> Self {
        let qemu = Self {
            eip,
            sev_features,
            rdx: u64::from(vcpu_sig),
            cs_attrib: 0x9B,
            ss_attrib: 0x93,
            tr_attrib: 0x8B,
            g_pat: 0x0007_0406_0007_0406,
            mxcsr: 0x1F80,
            x87_fcw: 0x037F,
        };
        match vmm {
            VmmType::Qemu => qemu,
            VmmType::Ec2 => Self {
                cs_attrib: if eip == BSP_EIP { 0x9A } else { 0x9B },
                ss_attrib: 0x92,
                tr_attrib: 0x83,
                rdx: 0x600,
                mxcsr: 0,
                x87_fcw: 0,
                ..qemu
            },
            VmmType::Gce => Self {
                g_pat: 0x0007_0106,
                rdx: 0x600,
                mxcsr: 0,
                x87_fcw: 0,
                ..qemu
            },
        }
    }

    /// Writes the VMSA into `page` (which is zeroed first).
    pub fn write(&self, page: &mut [u8; PAGE_SIZE]) {
        page.fill(0);
        let mut seg = |off: usize, sel: u16, attr: u16, limit: u32, base: u64| {
            page[off..off + 2].copy_from_slice(&sel.to_le_bytes());
            page[off + 2..off + 4].copy_from_slice(&attr.to_le_bytes());
            page[off + 4..off + 8].copy_from_slice(&limit.to_le_bytes());
            page[off + 8..off + 16].copy_from_slice(&base.to_le_bytes());
        };
        use offsets::*;
        seg(ES, 0, 0x93, 0xFFFF, 0);
        seg(
            CS,
            0xF000,
            self.cs_attrib,
            0xFFFF,
            u64::from(self.eip & 0xFFFF_0000),
        );
        seg(SS, 0, self.ss_attrib, 0xFFFF, 0);
        seg(DS, 0, 0x93, 0xFFFF, 0);
        seg(FS, 0, 0x93, 0xFFFF, 0);
        seg(GS, 0, 0x93, 0xFFFF, 0);
        seg(GDTR, 0, 0, 0xFFFF, 0);
        seg(LDTR, 0, 0x82, 0xFFFF, 0);
        seg(IDTR, 0, 0, 0xFFFF, 0);
        seg(TR, 0, self.tr_attrib, 0xFFFF, 0);
        let mut q = |off: usize, v: u64| page[off..off + 8].copy_from_slice(&v.to_le_bytes());
        q(EFER, 0x1000);
        q(CR4, 0x40);
        q(CR3, 0);
        q(CR0, 0x10);
        q(DR7, 0x400);
        q(DR6, 0xFFFF_0FF0);
        q(RFLAGS, 0x2);
        q(RIP, u64::from(self.eip & 0xFFFF));
        q(G_PAT, self.g_pat);
        q(RDX, self.rdx);
        q(SEV_FEATURES, self.sev_features);
        q(XCR0, 1);
        page[MXCSR..MXCSR + 4].copy_from_slice(&self.mxcsr.to_le_bytes());
        page[X87_FCW..X87_FCW + 2].copy_from_slice(&self.x87_fcw.to_le_bytes());
    }

    /// The VMSA page.
    pub fn page(&self) -> Box<[u8; PAGE_SIZE]> {
        let mut p = Box::new([0u8; PAGE_SIZE]);
        self.write(&mut p);
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256, Sha384};

    // facts firmware-and-measurement.md §8.2: sev-snp-measure --dump-vmsa on SYN64K
    // (EPYC-v4 = 0x800F12, AP EIP 0x804004).
    #[test]
    fn vmsa_dumps_match_tool() {
        let sig = 0x0080_0F12;
        let bsp = InitialVmsa::for_vmm(VmmType::Qemu, BSP_EIP, sig, 1).page();
        let ap = InitialVmsa::for_vmm(VmmType::Qemu, 0x0080_4004, sig, 1).page();
        assert_eq!(
            hex::encode(Sha384::digest(&bsp[..])),
            "77920c4c629ff47e90c0e174fc1ad0eb6fa664f88cd4739488058a8c6cb1a77b3856f55378e9518d0da99452d51c553a"
        );
        assert_eq!(
            hex::encode(Sha384::digest(&ap[..])),
            "4ccbf6f5c2f88acda04b6f3627bb1b277bde6496f66a71b17cef2fe82acf2fead866fb7aa5b4d2545dca584e94f6a8c6"
        );
        let bsp = InitialVmsa::for_vmm(VmmType::Qemu, BSP_EIP, sig, 0).page();
        let ap = InitialVmsa::for_vmm(VmmType::Qemu, 0x0080_4004, sig, 0).page();
        assert_eq!(
            hex::encode(Sha256::digest(&bsp[..])),
            "8295cef559b57130391d59605890ef93297720b48bef9a8c3c985b9c3fb0788c"
        );
        assert_eq!(
            hex::encode(Sha256::digest(&ap[..])),
            "a9ada635ae0d6fe0bd217df18dc94f3e5544627e237fb7c0ee2cb514fd4e0d55"
        );
    }
}
