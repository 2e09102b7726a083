//! The owned backend: creates the VM on `/dev/kvm`, its guest RAM (a memory slot, and a
//! guest_memfd for SNP and TDX, per [`add_memory`](Backend::add_memory)) and its vCPUs, and
//! hands every confidential-computing call to a [`BorrowedVm`] over them.

use std::fs::File;
use std::os::fd::AsFd;
use std::sync::Arc;

use kvm_bindings::{kvm_regs, kvm_sregs};
use kvm_coco_uapi::{
    KvmSevInit, KvmSevSnpLaunchFinish, KvmSevSnpLaunchStart, TdxCapabilitiesBuf, TdxInitVmBuf,
};

use super::LaunchError;
use super::backend::{Backend, LaunchVcpu, Remaining, SnpPageType, Source};
use super::borrowed::{BorrowedVm, GuestRam, amd_limits};
use super::params::{HostLimits, SevSession, SnpIdentity};
use crate::caps::DEV_SEV;
use crate::error::Error;
use crate::exit::Exit;
use crate::memory::{GuestMapping, GuestMemfdFlags, MemoryRegion};
use crate::ops::EncryptOpError;
use crate::system::Kvm;
use crate::vcpu::Vcpu;
use crate::vm::Vm;
use crate::vm_type::{Tee, Vendor, VmType};

/// The owned convenience mode: a VM on `/dev/kvm` (plus `/dev/sev` for AMD types) with the
/// guest RAM and vCPUs it creates itself. Every confidential-computing call is made by a
/// [`BorrowedVm`] over them ([`borrowed`](Self::borrowed)).
///
/// ```no_run
/// use kvm_coco::Kvm;
/// use kvm_coco::launch::{InitParams, KvmBackend, Launch, SnpInit};
/// let kvm = Kvm::open()?;
/// match KvmBackend::new(&kvm, kvm_coco::VmType::Snp) {
///     Ok(backend) => { let _launch = Launch::new(backend, InitParams::Snp(SnpInit::default()))?; }
///     Err(e) if e.is_not_supported_on_host() => println!("{e}"),
///     Err(e) => return Err(e.into()),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct KvmBackend {
    vm: Vm,
    sev: Option<File>,
    limits: HostLimits,
    /// Guest RAM added so far, as the borrowed backend sees it.
    ram: Vec<GuestRam>,
    /// The mappings behind `ram` (the VM's slot table holds them too).
    mappings: Vec<Arc<GuestMapping>>,
    next_slot: u32,
}

impl KvmBackend {
    /// Creates a VM of `vm_type` for a launch.
    ///
    /// # Errors
    /// [`LaunchError::NotConfidential`] for a type that runs no technology (`default`,
    /// `sw-protected`); [`LaunchError::NotSupportedOnHost`] when `KVM_CAP_VM_TYPES` lacks the
    /// type or `/dev/sev` is missing for an AMD type; otherwise the core error.
    pub fn new(kvm: &Kvm, vm_type: VmType) -> Result<Self, LaunchError> {
        Tee::try_from(vm_type)?;
        let vm = match kvm.create_vm(vm_type) {
            Ok(vm) => vm,
            Err(Error::UnsupportedVmType { supported, .. }) => {
                return Err(LaunchError::NotSupportedOnHost {
                    vm_type,
                    reason: format!(
                        "KVM_CREATE_VM refuses {} (KVM_CAP_VM_TYPES offers: {supported})",
                        vm_type.kernel_name()
                    ),
                });
            }
            Err(e) => return Err(e.into()),
        };
        let mut limits = HostLimits::default();
        let sev = if vm_type.vendor() == Some(Vendor::Amd) {
            limits = amd_limits(kvm);
            match std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(DEV_SEV)
            {
                Ok(f) => Some(f),
                Err(e) => {
                    return Err(LaunchError::NotSupportedOnHost {
                        vm_type,
                        reason: format!("cannot open {DEV_SEV}: {e}"),
                    });
                }
            }
        } else {
            None
        };
        Ok(Self {
            vm,
            sev,
            limits,
            ram: Vec::new(),
            mappings: Vec::new(),
            next_slot: 0,
        })
    }

    /// The VM.
    pub fn vm(&self) -> &Vm {
        &self.vm
    }

    /// The backend over this VM, its `/dev/sev` fd and the RAM added so far, which makes
    /// every confidential-computing call of this one.
    pub fn borrowed(&self) -> BorrowedVm<'_> {
        BorrowedVm::of_vm(
            &self.vm,
            self.sev.as_ref().map(|f| f.as_fd()),
            &self.ram,
            self.limits.clone(),
        )
    }
}

impl Drop for KvmBackend {
    /// Unregisters the SEV / SEV-ES RAM registered in [`add_memory`](Backend::add_memory)
    /// before the mappings go (QEMU's `sev_ram_block_removed`).
    fn drop(&mut self) {
        let b = self.borrowed();
        for r in &self.ram {
            let _ = b.unregister_ram(r);
        }
    }
}

impl LaunchVcpu for Vcpu {
    fn id(&self) -> u32 {
        Vcpu::id(self) as u32
    }

    fn regs(&self) -> Result<kvm_regs, Error> {
        Vcpu::regs(self)
    }

    fn set_regs(&mut self, regs: &kvm_regs) -> Result<(), Error> {
        Vcpu::set_regs(self, regs)
    }

    fn sregs(&self) -> Result<kvm_sregs, Error> {
        Vcpu::sregs(self)
    }

    fn set_sregs(&mut self, sregs: &kvm_sregs) -> Result<(), Error> {
        Vcpu::set_sregs(self, sregs)
    }

    fn mark_protected(&mut self) {
        self.mark_state_protected();
    }

    fn run(&mut self) -> Result<Exit<'_>, Error> {
        Vcpu::run(self)
    }
}

impl Backend for KvmBackend {
    type Vcpu = Vcpu;

    fn vm_type(&self) -> VmType {
        self.vm.vm_type()
    }

    fn host_limits(&self) -> Result<HostLimits, LaunchError> {
        Ok(self.limits.clone())
    }

    fn add_memory(&mut self, gpa: u64, size: u64) -> Result<(), LaunchError> {
        let len = usize::try_from(size).map_err(|_| LaunchError::BadRegion {
            gpa,
            len: size,
            reason: "too large for this host",
        })?;
        let mapping = Arc::new(GuestMapping::anonymous(len)?);
        let mut region = MemoryRegion::new(self.next_slot, gpa, mapping.clone());
        // SAFETY: the mapping is kept by `self.mappings` (and by the VM's slot table) for as
        // long as `self.ram` describes it.
        let mut ram = unsafe { GuestRam::new(gpa, size, mapping.host_addr()) };
        if self
            .vm
            .vm_type()
            .characteristics()
            .contains(crate::Characteristics::PRIVATE_MEMORY)
        {
            let gmem = Arc::new(self.vm.create_guest_memfd(size, GuestMemfdFlags::empty())?);
            region = region.guest_memfd(gmem, 0);
            ram = ram.with_guest_memfd();
        }
        self.vm.set_memory_region(region)?;
        self.next_slot += 1;
        // SEV / SEV-ES guest RAM is pinned for the guest's life.
        self.borrowed().register_ram(&ram)?;
        self.mappings.push(mapping);
        self.ram.push(ram);
        Ok(())
    }

    fn set_private(&mut self, gpa: u64, size: u64, private: bool) -> Result<(), LaunchError> {
        self.borrowed().set_private(gpa, size, private)
    }

    fn read_shared(&self, gpa: u64, buf: &mut [u8]) -> Result<(), LaunchError> {
        self.borrowed().read_shared(gpa, buf)
    }

    fn write_shared(&mut self, gpa: u64, data: &[u8]) -> Result<(), LaunchError> {
        self.borrowed().write_shared(gpa, data)
    }

    fn enable_map_gpa_range_exits(&mut self) -> Result<(), LaunchError> {
        self.borrowed().enable_map_gpa_range_exits()
    }

    fn enable_split_irqchip(&mut self) -> Result<(), LaunchError> {
        self.borrowed().enable_split_irqchip()
    }

    fn create_vcpu(&mut self, id: u32) -> Result<Vcpu, LaunchError> {
        Ok(self.vm.create_vcpu(u64::from(id))?)
    }

    fn sev_init2(&mut self, init: &mut KvmSevInit) -> Result<(), EncryptOpError> {
        self.borrowed().sev_init2(init)
    }

    fn sev_launch_start(
        &mut self,
        policy: u32,
        session: Option<&SevSession>,
    ) -> Result<u32, EncryptOpError> {
        self.borrowed().sev_launch_start(policy, session)
    }

    fn sev_launch_update_data(
        &mut self,
        gpa: u64,
        len: u64,
        src: Source<'_>,
    ) -> Result<(), EncryptOpError> {
        self.borrowed().sev_launch_update_data(gpa, len, src)
    }

    fn sev_launch_update_vmsa(&mut self) -> Result<(), EncryptOpError> {
        self.borrowed().sev_launch_update_vmsa()
    }

    fn sev_launch_measure(&mut self) -> Result<Vec<u8>, EncryptOpError> {
        self.borrowed().sev_launch_measure()
    }

    fn sev_launch_secret(
        &mut self,
        header: &[u8],
        packet: &[u8],
        gpa: u64,
    ) -> Result<(), EncryptOpError> {
        self.borrowed().sev_launch_secret(header, packet, gpa)
    }

    fn sev_launch_finish(&mut self) -> Result<(), EncryptOpError> {
        self.borrowed().sev_launch_finish()
    }

    fn sev_dbg_decrypt(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), EncryptOpError> {
        self.borrowed().sev_dbg_decrypt(gpa, buf)
    }

    fn sev_dbg_encrypt(&mut self, gpa: u64, data: &[u8]) -> Result<(), EncryptOpError> {
        self.borrowed().sev_dbg_encrypt(gpa, data)
    }

    fn snp_enable_req_certs(&mut self) -> Result<(), EncryptOpError> {
        self.borrowed().snp_enable_req_certs()
    }

    fn snp_launch_start(&mut self, start: &mut KvmSevSnpLaunchStart) -> Result<(), EncryptOpError> {
        self.borrowed().snp_launch_start(start)
    }

    fn snp_launch_update(
        &mut self,
        range: &mut Remaining,
        page_type: SnpPageType,
        src: Source<'_>,
        cpuid_out: Option<&mut [u8; 4096]>,
    ) -> Result<(), EncryptOpError> {
        self.borrowed()
            .snp_launch_update(range, page_type, src, cpuid_out)
    }

    fn snp_launch_finish(
        &mut self,
        finish: &mut KvmSevSnpLaunchFinish,
        identity: Option<&SnpIdentity>,
    ) -> Result<(), EncryptOpError> {
        self.borrowed().snp_launch_finish(finish, identity)
    }

    fn tdx_capabilities(&mut self, buf: &mut TdxCapabilitiesBuf) -> Result<(), EncryptOpError> {
        self.borrowed().tdx_capabilities(buf)
    }

    fn tdx_init_vm(&mut self, init: &mut TdxInitVmBuf) -> Result<(), EncryptOpError> {
        self.borrowed().tdx_init_vm(init)
    }

    fn tdx_init_vcpu(&mut self, vcpu: &Vcpu, rcx: u64) -> Result<(), EncryptOpError> {
        self.borrowed().tdx_init_vcpu_fd(vcpu.kvm_ioctls(), rcx)
    }

    fn tdx_init_mem_region(
        &mut self,
        vcpu: &Vcpu,
        range: &mut Remaining,
        measure: bool,
        src: Source<'_>,
    ) -> Result<(), EncryptOpError> {
        self.borrowed()
            .tdx_init_mem_region_fd(vcpu.kvm_ioctls(), range, measure, src)
    }

    fn tdx_finalize_vm(&mut self) -> Result<(), EncryptOpError> {
        self.borrowed().tdx_finalize_vm()
    }
}
