//! The real backend: `/dev/kvm` through [`Vm`], [`Vcpu`] and the typed sub-commands of
//! [`crate::ops`], with `/dev/sev` for the AMD commands that need `sev_fd`.

use std::fs::File;
use std::os::fd::AsFd;
use std::sync::Arc;

use kvm_bindings::{kvm_regs, kvm_sregs};
use kvm_coco_uapi::vm::{KVM_X86_GRP_SEV, KVM_X86_SEV_VMSA_FEATURES, KVM_X86_SNP_POLICY_BITS};
use kvm_coco_uapi::{
    KvmSevDbg, KvmSevInit, KvmSevLaunchSecret, KvmSevLaunchStart, KvmSevLaunchUpdateData,
    KvmSevSnpLaunchFinish, KvmSevSnpLaunchStart, TdxCapabilitiesBuf, TdxInitVmBuf,
};

use super::LaunchError;
use super::backend::{Backend, LaunchVcpu, Remaining, SnpPageType, Source};
use super::params::{HostLimits, SevSession, SnpIdentity};
use crate::caps::DEV_SEV;
use crate::error::{Errno, Error};
use crate::exit::Exit;
use crate::memory::{GuestMapping, GuestMemfdFlags, MemoryAttributes, MemoryRegion};
use crate::ops::{EncryptOpError, FirmwareStatus};
use crate::system::Kvm;
use crate::vcpu::Vcpu;
use crate::vm::Vm;
use crate::vm_type::{Vendor, VmType};

const PAGE: u64 = 4096;

/// The real backend: a VM on `/dev/kvm` (plus `/dev/sev` for AMD types).
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
    /// Guest RAM added so far: base GPA and the host mapping (whose length is the size).
    regions: Vec<(u64, Arc<GuestMapping>)>,
    next_slot: u32,
}

impl KvmBackend {
    /// Creates a VM of `vm_type` for a launch.
    ///
    /// # Errors
    /// [`LaunchError::NotSupportedOnHost`] when `KVM_CAP_VM_TYPES` lacks the type or
    /// `/dev/sev` is missing for an AMD type; otherwise the core error.
    pub fn new(kvm: &Kvm, vm_type: VmType) -> Result<Self, LaunchError> {
        if !vm_type.is_confidential() {
            return Err(LaunchError::NotSupportedOnHost {
                vm_type,
                reason: "not a confidential VM type".into(),
            });
        }
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
            limits.vmsa_features = kvm
                .device_attr(KVM_X86_GRP_SEV, KVM_X86_SEV_VMSA_FEATURES)
                .unwrap_or(0);
            limits.snp_policy_bits = kvm
                .device_attr(KVM_X86_GRP_SEV, KVM_X86_SNP_POLICY_BITS)
                .unwrap_or(0);
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
            regions: Vec::new(),
            next_slot: 0,
        })
    }

    /// The VM.
    pub fn vm(&self) -> &Vm {
        &self.vm
    }

    fn sev_fd(&self) -> Result<std::os::fd::BorrowedFd<'_>, EncryptOpError> {
        self.sev.as_ref().map(|f| f.as_fd()).ok_or(EncryptOpError {
            command: "KVM_MEMORY_ENCRYPT_OP",
            errno: Errno::from_raw(libc::EBADF),
            firmware: FirmwareStatus::None,
            vm_type: self.vm.vm_type(),
            hint: Some("no /dev/sev fd"),
        })
    }

    /// The mapping holding `[gpa, gpa+len)` and the offset of `gpa` in it.
    fn host(&self, gpa: u64, len: u64) -> Option<(&Arc<GuestMapping>, u64)> {
        self.regions.iter().find_map(|(start, m)| {
            let end = gpa.checked_add(len)?;
            (gpa >= *start && end <= start + m.len() as u64).then(|| (m, gpa - start))
        })
    }

    fn efault(&self, command: &'static str) -> EncryptOpError {
        EncryptOpError {
            command,
            errno: Errno::from_raw(libc::EFAULT),
            firmware: FirmwareStatus::None,
            vm_type: self.vm.vm_type(),
            hint: Some("the range is outside the guest memory added to the launch"),
        }
    }

    /// Copies `src` (zero-padded) into guest RAM over `[gpa, gpa+len)` and returns the
    /// host address of `gpa`: the user address the kernel reads the content from, as in
    /// QEMU, where the image already sits in guest RAM.
    fn stage(
        &self,
        gpa: u64,
        len: u64,
        src: Source<'_>,
        command: &'static str,
    ) -> Result<u64, EncryptOpError> {
        let (m, off) = self.host(gpa, len).ok_or_else(|| self.efault(command))?;
        let mut page = [0u8; 4096];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(PAGE);
            src.page(gpa + done, &mut page);
            m.write(off + done, &page[..n as usize])
                .map_err(|_| self.efault(command))?;
            done += n;
        }
        Ok(m.host_addr() + off)
    }
}

impl Drop for KvmBackend {
    /// Unregisters the SEV / SEV-ES RAM registered in [`add_memory`](Backend::add_memory)
    /// before the mappings go (QEMU's `sev_ram_block_removed`).
    fn drop(&mut self) {
        if matches!(self.vm.vm_type(), VmType::Sev | VmType::SevEs) {
            for (_, m) in &self.regions {
                let _ = self.vm.unregister_encrypted_region(m, 0, m.len() as u64);
            }
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
        if self
            .vm
            .vm_type()
            .characteristics()
            .contains(crate::Characteristics::PRIVATE_MEMORY)
        {
            let gmem = Arc::new(self.vm.create_guest_memfd(size, GuestMemfdFlags::empty())?);
            region = region.guest_memfd(gmem, 0);
        }
        self.vm.set_memory_region(region)?;
        self.next_slot += 1;
        // SEV / SEV-ES guest RAM is pinned for the guest's life, as QEMU registers every RAM
        // block (sev_ram_block_added): the kernel must not move or swap encrypted pages.
        if matches!(self.vm.vm_type(), VmType::Sev | VmType::SevEs) {
            self.vm.register_encrypted_region(&mapping, 0, size)?;
        }
        self.regions.push((gpa, mapping));
        Ok(())
    }

    fn set_private(&mut self, gpa: u64, size: u64, private: bool) -> Result<(), LaunchError> {
        let a = if private {
            MemoryAttributes::PRIVATE
        } else {
            MemoryAttributes::empty()
        };
        Ok(self.vm.set_memory_attributes(gpa, size, a)?)
    }

    fn read_shared(&self, gpa: u64, buf: &mut [u8]) -> Result<(), LaunchError> {
        let len = buf.len() as u64;
        let (m, off) = self
            .host(gpa, len)
            .ok_or(LaunchError::NoMemory { gpa, len })?;
        Ok(m.read(off, buf)?)
    }

    fn write_shared(&mut self, gpa: u64, data: &[u8]) -> Result<(), LaunchError> {
        let len = data.len() as u64;
        let (m, off) = self
            .host(gpa, len)
            .ok_or(LaunchError::NoMemory { gpa, len })?;
        Ok(m.write(off, data)?)
    }

    fn enable_map_gpa_range_exits(&mut self) -> Result<(), LaunchError> {
        Ok(self.vm.enable_map_gpa_range_exits()?)
    }

    fn enable_split_irqchip(&mut self) -> Result<(), LaunchError> {
        let mut cap = kvm_bindings::kvm_enable_cap {
            cap: kvm_bindings::KVM_CAP_SPLIT_IRQCHIP,
            ..Default::default()
        };
        // 24 IOAPIC pins, as QEMU.
        cap.args[0] = 24;
        Ok(self.vm.enable_cap(&cap)?)
    }

    fn create_vcpu(&mut self, id: u32) -> Result<Vcpu, LaunchError> {
        Ok(self.vm.create_vcpu(u64::from(id))?)
    }

    fn sev_init2(&mut self, init: &mut KvmSevInit) -> Result<(), EncryptOpError> {
        self.vm.sev()?.init2(init)
    }

    fn sev_launch_start(
        &mut self,
        policy: u32,
        session: Option<&SevSession>,
    ) -> Result<u32, EncryptOpError> {
        let mut start = KvmSevLaunchStart {
            policy,
            ..Default::default()
        };
        if let Some(s) = session {
            start.dh_uaddr = s.dh_cert.as_ptr() as u64;
            start.dh_len = s.dh_cert.len() as u32;
            start.session_uaddr = s.session.as_ptr() as u64;
            start.session_len = s.session.len() as u32;
        }
        let fd = self.sev_fd()?;
        // SAFETY: `dh_uaddr`/`session_uaddr` point to the session's vectors with their
        // lengths, borrowed for the whole call.
        unsafe { self.vm.sev()?.launch_start(&mut start, fd) }?;
        Ok(start.handle)
    }

    fn sev_launch_update_data(
        &mut self,
        gpa: u64,
        len: u64,
        src: Source<'_>,
    ) -> Result<(), EncryptOpError> {
        let uaddr = self.stage(gpa, len, src, "KVM_SEV_LAUNCH_UPDATE_DATA")?;
        let mut upd = KvmSevLaunchUpdateData {
            uaddr,
            len: u32::try_from(len).map_err(|_| self.efault("KVM_SEV_LAUNCH_UPDATE_DATA"))?,
            ..Default::default()
        };
        // SAFETY: `uaddr..uaddr+len` lies inside a guest mapping owned by `self.regions`
        // (and registered with the VM), alive for the call; the kernel pins and encrypts
        // it in place.
        unsafe { self.vm.sev()?.launch_update_data(&mut upd) }
    }

    fn sev_launch_update_vmsa(&mut self) -> Result<(), EncryptOpError> {
        self.vm.sev()?.launch_update_vmsa()
    }

    fn sev_launch_measure(&mut self) -> Result<Vec<u8>, EncryptOpError> {
        self.vm.sev()?.launch_measure()
    }

    fn sev_launch_secret(
        &mut self,
        header: &[u8],
        packet: &[u8],
        gpa: u64,
    ) -> Result<(), EncryptOpError> {
        let len = packet.len() as u64;
        let (m, off) = self
            .host(gpa, len)
            .ok_or_else(|| self.efault("KVM_SEV_LAUNCH_SECRET"))?;
        let mut s = KvmSevLaunchSecret {
            hdr_uaddr: header.as_ptr() as u64,
            hdr_len: header.len() as u32,
            guest_uaddr: m.host_addr() + off,
            guest_len: packet.len() as u32,
            trans_uaddr: packet.as_ptr() as u64,
            trans_len: packet.len() as u32,
            ..Default::default()
        };
        // SAFETY: the header and packet slices are borrowed for the call with their
        // lengths; `guest_uaddr` lies in a guest mapping kept alive by `self.regions`.
        unsafe { self.vm.sev()?.launch_secret(&mut s) }
    }

    fn sev_launch_finish(&mut self) -> Result<(), EncryptOpError> {
        self.vm.sev()?.launch_finish()
    }

    fn sev_dbg_decrypt(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), EncryptOpError> {
        let len = buf.len() as u64;
        let (m, off) = self
            .host(gpa, len)
            .ok_or_else(|| self.efault("KVM_SEV_DBG_DECRYPT"))?;
        let mut d = KvmSevDbg {
            src_uaddr: m.host_addr() + off,
            dst_uaddr: buf.as_mut_ptr() as u64,
            len: u32::try_from(len).map_err(|_| self.efault("KVM_SEV_DBG_DECRYPT"))?,
            ..Default::default()
        };
        // SAFETY: `src_uaddr` lies in a guest mapping kept alive by `self.regions`;
        // `dst_uaddr` is `buf`, exclusively borrowed for the call, `len` bytes.
        unsafe { self.vm.sev()?.dbg_decrypt(&mut d) }
    }

    fn sev_dbg_encrypt(&mut self, gpa: u64, data: &[u8]) -> Result<(), EncryptOpError> {
        let len = data.len() as u64;
        let (m, off) = self
            .host(gpa, len)
            .ok_or_else(|| self.efault("KVM_SEV_DBG_ENCRYPT"))?;
        let mut d = KvmSevDbg {
            src_uaddr: data.as_ptr() as u64,
            dst_uaddr: m.host_addr() + off,
            len: u32::try_from(len).map_err(|_| self.efault("KVM_SEV_DBG_ENCRYPT"))?,
            ..Default::default()
        };
        // SAFETY: `src_uaddr` is `data`, borrowed for the call; `dst_uaddr` lies in a guest
        // mapping kept alive by `self.regions`, `len` bytes.
        unsafe { self.vm.sev()?.dbg_encrypt(&mut d) }
    }

    fn snp_enable_req_certs(&mut self) -> Result<(), EncryptOpError> {
        self.vm.sev()?.snp_enable_req_certs()
    }

    fn snp_launch_start(&mut self, start: &mut KvmSevSnpLaunchStart) -> Result<(), EncryptOpError> {
        let fd = self.sev_fd()?;
        self.vm.sev()?.snp_launch_start(start, fd)
    }

    fn snp_launch_update(
        &mut self,
        range: &mut Remaining,
        page_type: SnpPageType,
        src: Source<'_>,
        cpuid_out: Option<&mut [u8; 4096]>,
    ) -> Result<(), EncryptOpError> {
        const CMD: &str = "KVM_SEV_SNP_LAUNCH_UPDATE";
        let sev = self.vm.sev()?;
        let uaddr = self.stage(range.gpa, range.len, src, CMD)?;
        let mut upd = range.snp_launch_update(uaddr, page_type);
        let fd = self.sev_fd()?;
        // SAFETY: `uaddr..uaddr+len` lies inside a guest mapping kept alive by
        // `self.regions`, staged with the content above; for CPUID pages the kernel may
        // write the corrected page back there, which the mapping allows.
        let r = unsafe { sev.snp_launch_update(&mut upd, fd) };
        range.consume_snp(&upd);
        if r.is_err()
            && let Some(out) = cpuid_out
            && let Some((m, off)) = self.host(range.gpa, PAGE)
        {
            let _ = m.read(off, out);
        }
        r
    }

    fn snp_launch_finish(
        &mut self,
        finish: &mut KvmSevSnpLaunchFinish,
        identity: Option<&SnpIdentity>,
    ) -> Result<(), EncryptOpError> {
        let sev = self.vm.sev()?;
        if let Some(id) = identity {
            finish.id_block_uaddr = id.id_block.as_ptr() as u64;
            finish.id_auth_uaddr = id.id_auth.as_ptr() as u64;
        }
        let fd = self.sev_fd()?;
        // SAFETY: with `id_block_en`, the addresses point to the identity's 96-byte ID
        // block and 4096-byte ID auth, borrowed for the call.
        let r = unsafe { sev.snp_launch_finish(finish, fd) };
        finish.id_block_uaddr = 0;
        finish.id_auth_uaddr = 0;
        r
    }

    fn tdx_capabilities(&mut self, buf: &mut TdxCapabilitiesBuf) -> Result<(), EncryptOpError> {
        self.vm.tdx()?.capabilities_into(buf)
    }

    fn tdx_init_vm(&mut self, init: &mut TdxInitVmBuf) -> Result<(), EncryptOpError> {
        self.vm.tdx()?.init_vm(init)
    }

    fn tdx_init_vcpu(&mut self, vcpu: &Vcpu, rcx: u64) -> Result<(), EncryptOpError> {
        vcpu.tdx()?.init_vcpu(rcx)
    }

    fn tdx_init_mem_region(
        &mut self,
        vcpu: &Vcpu,
        range: &mut Remaining,
        measure: bool,
        src: Source<'_>,
    ) -> Result<(), EncryptOpError> {
        let td_vcpu = vcpu.tdx()?;
        let source_addr = self.stage(range.gpa, range.len, src, "KVM_TDX_INIT_MEM_REGION")?;
        let mut r = range.tdx_init_mem_region(source_addr);
        // SAFETY: `source_addr` points into a guest mapping kept alive by `self.regions`,
        // covering `nr_pages` pages staged above.
        let res = unsafe { td_vcpu.init_mem_region(&mut r, measure) };
        range.consume_tdx(&r);
        res
    }

    fn tdx_finalize_vm(&mut self) -> Result<(), EncryptOpError> {
        self.vm.tdx()?.finalize_vm()
    }
}
