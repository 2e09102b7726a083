//! Intel TDX sub-commands (`struct kvm_tdx_cmd`): VM scope (CAPABILITIES, INIT_VM,
//! FINALIZE_VM) through [`TdxVm`] ([`Vm::tdx`]), vCPU scope (INIT_VCPU, INIT_MEM_REGION,
//! GET_CPUID) through [`TdxVcpu`] ([`Vcpu::tdx`]).
//!
//! [`Vm::tdx`]: crate::Vm::tdx
//! [`Vcpu::tdx`]: crate::Vcpu::tdx
//!
//! Order (Linux 7.3, `intel-tdx.rst`): `KVM_CREATE_VM(5)` → CAPABILITIES → INIT_VM →
//! split irqchip → `KVM_CREATE_VCPU` → INIT_VCPU (per vCPU) → guest_memfd slots and
//! `PRIVATE` attributes → INIT_MEM_REGION… → FINALIZE_VM → `KVM_RUN`.

use kvm_coco_uapi::tdx::{
    KVM_TDX_CAPABILITIES, KVM_TDX_FINALIZE_VM, KVM_TDX_GET_CPUID, KVM_TDX_INIT_MEM_REGION,
    KVM_TDX_INIT_VCPU, KVM_TDX_INIT_VM, KVM_TDX_MEASURE_MEMORY_REGION,
};
use kvm_coco_uapi::{
    CpuidFam, CpuidFamHeader, KVM_MAX_CPUID_ENTRIES, KvmCpuid2, KvmTdxCapabilities,
    KvmTdxInitMemRegion, KvmTdxInitVm, TdxCapabilitiesBuf, TdxInitVmBuf,
};

use super::{
    Command, EncryptOpError, Immediate, NoPayload, Payload, TdxVcpu, TdxVm, address_free,
    struct_payloads, sub_commands,
};

struct_payloads!(KvmTdxInitMemRegion);

// SAFETY: `as_mut_ptr` points to the buffer's storage, laid out as the header `H` followed
// by `capacity()` 40-byte entries; `nent` is clamped to the capacity first, so the kernel
// never reads or writes past the storage.
unsafe impl<H: CpuidFamHeader> Payload for CpuidFam<H, Vec<u64>> {
    fn data(&mut self) -> u64 {
        if self.nent() as usize > self.capacity() {
            self.set_nent_to_capacity();
        }
        self.as_mut_ptr() as u64
    }
}

/// The `kvm_cpuid2`-with-entries buffer of KVM_TDX_GET_CPUID.
pub type CpuidBuf = CpuidFam<KvmCpuid2, Vec<u64>>;

sub_commands! { Tdx, VmScope;
    /// `KVM_TDX_CAPABILITIES` (0, VM scope).
    Capabilities = KVM_TDX_CAPABILITIES, TdxCapabilitiesBuf;
    /// `KVM_TDX_INIT_VM` (1, VM scope).
    InitVm = KVM_TDX_INIT_VM, TdxInitVmBuf;
    /// `KVM_TDX_FINALIZE_VM` (4, VM scope).
    FinalizeVm = KVM_TDX_FINALIZE_VM, NoPayload;
}

sub_commands! { Tdx, VcpuScope;
    /// `KVM_TDX_INIT_VCPU` (2, vCPU scope; `data` = initial RCX).
    InitVcpu = KVM_TDX_INIT_VCPU, Immediate;
    /// `KVM_TDX_INIT_MEM_REGION` (3, vCPU scope).
    InitMemRegion = KVM_TDX_INIT_MEM_REGION, KvmTdxInitMemRegion;
    /// `KVM_TDX_GET_CPUID` (5, vCPU scope).
    GetCpuid = KVM_TDX_GET_CPUID, CpuidBuf;
}

// CAPABILITIES, INIT_VM and GET_CPUID: a header and inline CPUID entries, whose count the
// `Payload` impl clamps to the storage (no pointer inside); FINALIZE_VM: no payload;
// INIT_VCPU: an immediate the kernel does not dereference.
address_free!(Capabilities, InitVm, GetCpuid, FinalizeVm, InitVcpu);

/// First capacity tried by [`TdxVm::capabilities`]; doubled on `E2BIG` up to
/// `KVM_MAX_CPUID_ENTRIES` (256).
pub const CAPABILITIES_INITIAL_ENTRIES: usize = 32;

fn grow(cap: usize) -> Option<usize> {
    let max = KVM_MAX_CPUID_ENTRIES as usize;
    (cap < max).then(|| (cap * 2).min(max))
}

/// Reads `KVM_TDX_CAPABILITIES` through `read`, starting with `initial` entries and
/// doubling the buffer on `E2BIG` up to `KVM_MAX_CPUID_ENTRIES` (256), as QEMU does: the
/// kernel does not report how many entries it needs. `read` issues the command into the
/// buffer it is given (`nent` is set to the buffer's capacity first); the `E2BIG` of the
/// largest size is returned as is.
pub fn read_capabilities_growing(
    initial: usize,
    mut read: impl FnMut(&mut TdxCapabilitiesBuf) -> Result<(), EncryptOpError>,
) -> Result<TdxCapabilitiesBuf, EncryptOpError> {
    let mut cap = initial;
    loop {
        let mut buf = TdxCapabilitiesBuf::with_capacity(cap);
        buf.set_nent_to_capacity();
        match read(&mut buf) {
            Ok(()) => return Ok(buf),
            Err(e) if e.errno.raw() == libc::E2BIG => match grow(cap) {
                Some(next) => cap = next,
                None => return Err(e),
            },
            Err(e) => return Err(e),
        }
    }
}

/// The VM-scoped TDX sub-commands, one method each.
impl TdxVm<'_> {
    /// `KVM_TDX_CAPABILITIES` into a caller buffer (`cpuid.nent` = its capacity). `E2BIG`
    /// means the buffer is too small; the kernel does not say how large it must be.
    ///
    /// ```no_run
    /// use kvm_coco_uapi::TdxCapabilitiesBuf;
    /// let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::Tdx)?;
    /// let mut buf = TdxCapabilitiesBuf::with_capacity(64);
    /// vm.tdx()?.capabilities_into(&mut buf)?;
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn capabilities_into(&self, buf: &mut TdxCapabilitiesBuf) -> Result<(), EncryptOpError> {
        buf.set_nent_to_capacity();
        self.issue(Command::<Capabilities>::new(buf), 0)
    }

    /// `KVM_TDX_CAPABILITIES`, retrying `E2BIG` with a doubling buffer (32, 64, … 256
    /// entries): supported attributes, XFAM, TDVMCALL info and the configurable CPUID bits.
    ///
    /// ```no_run
    /// let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::Tdx)?;
    /// let caps = vm.tdx()?.capabilities()?;
    /// println!("attrs {:#x}", caps.header().supported_attrs);
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn capabilities(&self) -> Result<TdxCapabilitiesBuf, EncryptOpError> {
        read_capabilities_growing(CAPABILITIES_INITIAL_ENTRIES, |buf| {
            self.capabilities_into(buf)
        })
    }

    /// `KVM_TDX_INIT_VM`: attributes, XFAM, MRCONFIGID/MROWNER/MROWNERCONFIG and the CPUID
    /// configuration (≤ 256 entries). Once, before any vCPU; `hw_error` is reported in the
    /// error on a SEAMCALL failure.
    ///
    /// ```no_run
    /// use kvm_coco_uapi::TdxInitVmBuf;
    /// let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::Tdx)?;
    /// let mut init = TdxInitVmBuf::with_capacity(0);
    /// vm.tdx()?.init_vm(&mut init)?;
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn init_vm(&self, init: &mut TdxInitVmBuf) -> Result<(), EncryptOpError> {
        self.issue(Command::<InitVm>::new(init), 0)
    }

    /// `KVM_TDX_FINALIZE_VM`: computes MRTD; the TD becomes runnable. `EBUSY` means retry.
    ///
    /// ```no_run
    /// let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::Tdx)?;
    /// vm.tdx()?.finalize_vm()?;
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn finalize_vm(&self) -> Result<(), EncryptOpError> {
        self.issue(Command::<FinalizeVm>::new(&mut NoPayload), 0)
    }
}

/// The vCPU-scoped TDX sub-commands, one method each.
impl TdxVcpu<'_> {
    /// `KVM_TDX_INIT_VCPU`: initializes the vCPU with `rcx` as its initial RCX (x2APIC mode,
    /// APIC base). Once per vCPU.
    ///
    /// ```no_run
    /// # let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::Tdx)?;
    /// let vcpu = vm.create_vcpu(0)?;
    /// vcpu.tdx()?.init_vcpu(0)?;
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn init_vcpu(&self, rcx: u64) -> Result<(), EncryptOpError> {
        self.issue(Command::<InitVcpu>::new(&mut Immediate(rcx)), 0)
    }

    /// `KVM_TDX_INIT_MEM_REGION`: copies `nr_pages` pages from `source_addr` into the private
    /// GPA range and, with `measure`, extends MRTD with them. The kernel advances the struct
    /// as it goes (also on error); call again while `nr_pages > 0` after `EINTR`.
    ///
    /// # Safety
    ///
    /// `source_addr` must point to `nr_pages * 4096` readable bytes of this process for the
    /// duration of the call.
    ///
    /// ```no_run
    /// use kvm_coco_uapi::KvmTdxInitMemRegion;
    /// # let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::Tdx)?;
    /// # let vcpu = vm.create_vcpu(0)?;
    /// let src = kvm_coco::GuestMapping::anonymous(0x1000)?;
    /// let mut r = KvmTdxInitMemRegion { source_addr: src.host_addr(), gpa: 0xffff_f000, nr_pages: 1 };
    /// // SAFETY: `src` is mapped for the call.
    /// unsafe { vcpu.tdx()?.init_mem_region(&mut r, true)? };
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub unsafe fn init_mem_region(
        &self,
        region: &mut KvmTdxInitMemRegion,
        measure: bool,
    ) -> Result<(), EncryptOpError> {
        let flags = if measure {
            KVM_TDX_MEASURE_MEMORY_REGION as u32
        } else {
            0
        };
        // SAFETY: forwarded from this function's contract.
        unsafe { self.issue_unchecked(Command::<InitMemRegion>::new(region), flags) }
    }

    /// `KVM_TDX_GET_CPUID`: the TD's virtualized CPUID (only before FINALIZE_VM). On `E2BIG`
    /// the kernel reports the needed count, and the call is repeated once with it.
    ///
    /// ```no_run
    /// # let vm = kvm_coco::Kvm::open()?.create_vm(kvm_coco::VmType::Tdx)?;
    /// # let vcpu = vm.create_vcpu(0)?;
    /// let cpuid = vcpu.tdx()?.get_cpuid()?;
    /// println!("{} leaves", cpuid.len());
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn get_cpuid(&self) -> Result<CpuidBuf, EncryptOpError> {
        let mut buf = CpuidBuf::with_capacity(KVM_MAX_CPUID_ENTRIES as usize);
        buf.set_nent_to_capacity();
        match self.issue(Command::<GetCpuid>::new(&mut buf), 0) {
            Err(e) if e.errno.raw() == libc::E2BIG && buf.nent() as usize > buf.capacity() => {
                let mut bigger = CpuidBuf::with_capacity(buf.nent() as usize);
                bigger.set_nent_to_capacity();
                self.issue(Command::<GetCpuid>::new(&mut bigger), 0)?;
                Ok(bigger)
            }
            Err(e) => Err(e),
            Ok(()) => Ok(buf),
        }
    }
}

/// The header type of [`TdxCapabilitiesBuf`], re-exported for convenience.
pub type TdxCapabilitiesHeader = KvmTdxCapabilities;
/// The header type of [`TdxInitVmBuf`], re-exported for convenience.
pub type TdxInitVmHeader = KvmTdxInitVm;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{CommandFamily, CommandScope, Family, Scope, SubCommand};

    /// The id, family and scope of `C`.
    fn ids<C: SubCommand>() -> (u32, Family, Scope) {
        (
            C::ID,
            <C::Family as CommandFamily>::FAMILY,
            <C::Scope as CommandScope>::SCOPE,
        )
    }

    #[test]
    fn ids_and_scopes_match_the_kernel() {
        // enum kvm_tdx_cmd_id (facts linux-uapi §4).
        use Family::Tdx;
        assert_eq!(ids::<Capabilities>(), (0, Tdx, Scope::Vm));
        assert_eq!(ids::<InitVm>(), (1, Tdx, Scope::Vm));
        assert_eq!(ids::<InitVcpu>(), (2, Tdx, Scope::Vcpu));
        assert_eq!(ids::<InitMemRegion>(), (3, Tdx, Scope::Vcpu));
        assert_eq!(ids::<FinalizeVm>(), (4, Tdx, Scope::Vm));
        assert_eq!(ids::<GetCpuid>(), (5, Tdx, Scope::Vcpu));
    }

    #[test]
    fn capability_buffer_growth_is_bounded() {
        let mut seq = vec![CAPABILITIES_INITIAL_ENTRIES];
        while let Some(n) = grow(*seq.last().unwrap()) {
            seq.push(n);
        }
        assert_eq!(seq, [32, 64, 128, 256]);
    }

    #[test]
    fn fam_payload_clamps_nent_to_capacity() {
        let mut buf = CpuidBuf::with_capacity(2);
        // A header claiming more entries than the storage holds.
        buf.as_mut_bytes()[0..4].copy_from_slice(&100u32.to_ne_bytes());
        let ptr = buf.data();
        assert_eq!(buf.nent(), 2);
        assert_eq!(ptr, buf.as_mut_ptr() as u64);
    }
}
