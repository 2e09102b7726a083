//! The launch over a VM the caller created: [`BorrowedVm`] issues the confidential-computing
//! calls of a launch on a kvm-ioctls [`VmFd`] (and the `/dev/sev` fd) that a VMM owns, into
//! guest RAM the VMM registered and described with [`GuestRam`], with the VMM's vCPUs
//! ([`BorrowedVcpu`]). It is the one implementation of those calls: [`KvmBackend`] (the owned
//! convenience mode) creates the VM, memory and vCPUs and hands every call to a
//! [`BorrowedVm`] over them ([`KvmBackend::borrowed`]).
//!
//! [`KvmBackend`]: super::KvmBackend
//! [`KvmBackend::borrowed`]: super::KvmBackend::borrowed

use std::borrow::Cow;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::ptr::NonNull;

use kvm_bindings::{kvm_enc_region, kvm_regs, kvm_run, kvm_sregs};
use kvm_coco_uapi::vm::{KVM_X86_GRP_SEV, KVM_X86_SEV_VMSA_FEATURES, KVM_X86_SNP_POLICY_BITS};
use kvm_coco_uapi::{
    KvmSevDbg, KvmSevInit, KvmSevLaunchSecret, KvmSevLaunchStart, KvmSevLaunchUpdateData,
    KvmSevSnpLaunchFinish, KvmSevSnpLaunchStart, TdxCapabilitiesBuf, TdxInitVmBuf,
};
use kvm_ioctls::{VcpuFd, VmFd};

use super::LaunchError;
use super::backend::{Backend, LaunchVcpu, Remaining, SnpPageType, Source};
use super::params::{HostLimits, SevSession, SnpIdentity};
use crate::error::{Errno, Error, RegisterOp};
use crate::exit::Exit;
use crate::memory::{MemoryAttributes, copy_from_guest, copy_to_guest};
use crate::ops::{EncryptOpError, FirmwareStatus, SevVm, TdxVcpu, TdxVm};
use crate::system::Kvm;
use crate::vcpu::StateProtection;
use crate::vm::Vm;
use crate::vm_type::{Characteristics, Tee, Vendor, VmType};

const PAGE: u64 = 4096;

/// One guest-physical range of RAM a VMM registered with the VM (a memory slot, or part of
/// one), and where it lives in the VMM's address space.
///
/// The launcher writes the initial image into guest RAM through `host_addr` (the slot's
/// `userspace_addr`, the VMM's shared mapping), hands those addresses to the kernel as
/// `uaddr` of the populate commands, and for SEV and SEV-ES pins the range
/// (`KVM_MEMORY_ENCRYPT_REG_REGION`). For SNP and TDX the slot must also be bound to a
/// guest_memfd (`KVM_CREATE_GUEST_MEMFD` + `KVM_SET_USER_MEMORY_REGION2` with
/// `KVM_MEM_GUEST_MEMFD`), which [`with_guest_memfd`](Self::with_guest_memfd) states.
///
/// ```
/// use kvm_coco::GuestMapping;
/// use kvm_coco::launch::GuestRam;
/// let mem = GuestMapping::anonymous(0x20_0000)?;
/// // SAFETY: `mem` stays mapped for as long as the launch uses the description.
/// let ram = unsafe { GuestRam::new(0, 0x20_0000, mem.host_addr()) }.with_guest_memfd();
/// assert!(ram.is_guest_memfd());
/// # Ok::<(), kvm_coco::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestRam {
    gpa: u64,
    size: u64,
    host_addr: u64,
    guest_memfd: bool,
}

impl GuestRam {
    /// Guest-physical `[gpa, gpa+size)` is backed by the host memory at `host_addr`.
    ///
    /// # Safety
    ///
    /// `[host_addr, host_addr+size)` must be a readable and writable mapping of this process
    /// (the shared half of the memory slot covering `[gpa, gpa+size)`) that stays mapped for
    /// as long as a [`BorrowedVm`] or a [`Launch`](super::Launch) holding this description
    /// exists: the launcher writes the initial image there, and the kernel reads, encrypts
    /// and (for SEV) pins it.
    pub unsafe fn new(gpa: u64, size: u64, host_addr: u64) -> Self {
        Self {
            gpa,
            size,
            host_addr,
            guest_memfd: false,
        }
    }

    /// States that the slot is bound to a guest_memfd (required for SNP and TDX).
    #[must_use]
    pub fn with_guest_memfd(mut self) -> Self {
        self.guest_memfd = true;
        self
    }

    /// The first guest-physical address.
    pub fn gpa(&self) -> u64 {
        self.gpa
    }

    /// The size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The host address of [`gpa`](Self::gpa).
    pub fn host_addr(&self) -> u64 {
        self.host_addr
    }

    /// Whether the slot is guest_memfd-backed.
    pub fn is_guest_memfd(&self) -> bool {
        self.guest_memfd
    }

    /// The offset of `gpa` when `[gpa, gpa+len)` lies inside this range.
    fn offset_of(&self, gpa: u64, len: u64) -> Option<u64> {
        let end = gpa.checked_add(len)?;
        (gpa >= self.gpa && end <= self.gpa + self.size).then(|| gpa - self.gpa)
    }

    fn enc_region(&self) -> kvm_enc_region {
        kvm_enc_region {
            addr: self.host_addr,
            size: self.size,
        }
    }
}

/// The `KVM_X86_GRP_SEV` attributes of the host, read from `kvm`.
pub(crate) fn amd_limits(kvm: &Kvm) -> HostLimits {
    HostLimits {
        vmsa_features: kvm
            .device_attr(KVM_X86_GRP_SEV, KVM_X86_SEV_VMSA_FEATURES)
            .unwrap_or(0),
        snp_policy_bits: kvm
            .device_attr(KVM_X86_GRP_SEV, KVM_X86_SNP_POLICY_BITS)
            .unwrap_or(0),
        tdx: None,
    }
}

/// A [`Backend`] over a VM the caller created and keeps: its kvm-ioctls [`VmFd`], the
/// `/dev/sev` fd for the AMD types, the guest RAM it registered ([`GuestRam`]) and, once
/// handed over with [`Launch::adopt_vcpu`](super::Launch::adopt_vcpu), its vCPUs
/// ([`BorrowedVcpu`]). The launcher issues only the confidential-computing calls
/// (`KVM_SEV_INIT2` / `KVM_TDX_INIT_VM`, the launch commands, `KVM_TDX_INIT_VCPU`,
/// `KVM_SET_MEMORY_ATTRIBUTES`, `KVM_MEMORY_ENCRYPT_REG_REGION` for SEV / SEV-ES RAM) and
/// writes the initial image into the caller's RAM; it creates no VM, memory slot, guest_memfd
/// or vCPU. When the launch is finished (or dropped) the fds simply go back to the caller.
///
/// Order, as the kernel requires: create the VM of the confidential type and its memory
/// slots, make the `BorrowedVm` and [`Launch::new`](super::Launch::new) (`KVM_SEV_INIT2` /
/// `KVM_TDX_INIT_VM`), then create the vCPUs (`KVM_CREATE_VCPU`) and adopt them.
///
/// The SEV / SEV-ES RAM pinned at [`Launch::new`](super::Launch::new) stays pinned until the
/// VM fd is closed (the kernel unpins it then); a VMM that unmaps guest RAM earlier
/// unregisters it itself (`KVM_MEMORY_ENCRYPT_UNREG_REGION`).
#[derive(Debug)]
pub struct BorrowedVm<'a> {
    fd: &'a VmFd,
    /// The owned [`Vm`] behind `fd`, for [`KvmBackend`](super::KvmBackend) (its vCPUs are
    /// marked protected with the VM's).
    vm: Option<&'a Vm>,
    vm_type: VmType,
    sev: Option<BorrowedFd<'a>>,
    ram: Cow<'a, [GuestRam]>,
    limits: HostLimits,
}

impl<'a> BorrowedVm<'a> {
    /// A backend over `vm_fd`, a VM the caller created with `KVM_CREATE_VM` of `vm_type`,
    /// `sev_fd` an open `/dev/sev` (required for SEV, SEV-ES and SNP), `ram` the guest RAM
    /// the caller registered. The host's `KVM_X86_GRP_SEV` attributes (checked against the
    /// parameters) are read from `/dev/kvm`; see [`with_host_limits`](Self::with_host_limits).
    ///
    /// # Errors
    /// [`LaunchError::NotConfidential`] for a type that runs no technology (`default`,
    /// `sw-protected`);
    /// [`LaunchError::NotAvailable`] for an AMD type without `sev_fd`;
    /// [`LaunchError::BadRegion`] for RAM that is not 4 KiB aligned, or SNP / TDX RAM not
    /// bound to a guest_memfd.
    pub fn new(
        vm_fd: &'a VmFd,
        vm_type: VmType,
        sev_fd: Option<BorrowedFd<'a>>,
        ram: impl IntoIterator<Item = GuestRam>,
    ) -> Result<Self, LaunchError> {
        Tee::try_from(vm_type)?;
        let amd = vm_type.vendor() == Some(Vendor::Amd);
        if amd && sev_fd.is_none() {
            return Err(LaunchError::NotAvailable {
                verb: "BorrowedVm::new",
                vm_type,
                reason: "SEV, SEV-ES and SNP launches need the /dev/sev fd",
            });
        }
        let ram: Vec<GuestRam> = ram.into_iter().collect();
        let private = vm_type
            .characteristics()
            .contains(Characteristics::PRIVATE_MEMORY);
        for r in &ram {
            if r.size == 0
                || !r.gpa.is_multiple_of(PAGE)
                || !r.size.is_multiple_of(PAGE)
                || r.gpa.checked_add(r.size).is_none()
            {
                return Err(LaunchError::BadRegion {
                    gpa: r.gpa,
                    len: r.size,
                    reason: "guest memory must be non-empty and 4 KiB aligned",
                });
            }
            if private && !r.guest_memfd {
                return Err(LaunchError::BadRegion {
                    gpa: r.gpa,
                    len: r.size,
                    reason: "SNP and TDX guest RAM must be bound to a guest_memfd (GuestRam::with_guest_memfd)",
                });
            }
        }
        let limits = match Kvm::open() {
            Ok(kvm) if amd => amd_limits(&kvm),
            _ => HostLimits::default(),
        };
        Ok(Self {
            fd: vm_fd,
            vm: None,
            vm_type,
            sev: sev_fd,
            ram: Cow::Owned(ram),
            limits,
        })
    }

    /// The backend of a [`Vm`] this crate owns, over RAM described by `ram`.
    pub(crate) fn of_vm(
        vm: &'a Vm,
        sev_fd: Option<BorrowedFd<'a>>,
        ram: &'a [GuestRam],
        limits: HostLimits,
    ) -> Self {
        Self {
            fd: vm.kvm_ioctls(),
            vm: Some(vm),
            vm_type: vm.vm_type(),
            sev: sev_fd,
            ram: Cow::Borrowed(ram),
            limits,
        }
    }

    /// Replaces the host values the launch parameters are checked against (the
    /// `KVM_X86_GRP_SEV` attributes), e.g. with those the VMM read itself.
    #[must_use]
    pub fn with_host_limits(mut self, limits: HostLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The VM fd.
    pub fn vm_fd(&self) -> &'a VmFd {
        self.fd
    }

    /// The guest RAM the launch writes into.
    pub fn ram(&self) -> &[GuestRam] {
        &self.ram
    }

    fn sev_view(&self) -> Result<SevVm<'a>, EncryptOpError> {
        Ok(match self.vm {
            Some(vm) => vm.sev()?,
            None => SevVm::borrowed(self.fd, self.vm_type)?,
        })
    }

    fn tdx_view(&self) -> Result<TdxVm<'a>, EncryptOpError> {
        Ok(match self.vm {
            Some(vm) => vm.tdx()?,
            None => TdxVm::borrowed(self.fd, self.vm_type)?,
        })
    }

    fn sev_fd(&self) -> Result<BorrowedFd<'a>, EncryptOpError> {
        self.sev.ok_or(EncryptOpError {
            command: "KVM_MEMORY_ENCRYPT_OP",
            errno: Errno::from_raw(libc::EBADF),
            firmware: FirmwareStatus::None,
            vm_type: self.vm_type,
            hint: Some("no /dev/sev fd"),
        })
    }

    /// The RAM holding `[gpa, gpa+len)` and the offset of `gpa` in it.
    fn host(&self, gpa: u64, len: u64) -> Option<(&GuestRam, u64)> {
        self.ram
            .iter()
            .find_map(|r| r.offset_of(gpa, len).map(|off| (r, off)))
    }

    fn efault(&self, command: &'static str) -> EncryptOpError {
        EncryptOpError {
            command,
            errno: Errno::from_raw(libc::EFAULT),
            firmware: FirmwareStatus::None,
            vm_type: self.vm_type,
            hint: Some("the range is outside the guest memory added to the launch"),
        }
    }

    /// Copies `data` into guest RAM at `gpa`.
    fn write(&self, gpa: u64, data: &[u8]) -> Option<()> {
        let (r, off) = self.host(gpa, data.len() as u64)?;
        // SAFETY: `[host_addr+off, +len)` lies inside a range the caller vouched for
        // (`GuestRam::new`) as a live, writable mapping; `data` is a Rust slice, which never
        // points into guest memory.
        unsafe { copy_to_guest((r.host_addr + off) as *mut u8, data) };
        Some(())
    }

    /// Copies guest RAM at `gpa` into `buf`.
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Option<()> {
        let (r, off) = self.host(gpa, buf.len() as u64)?;
        // SAFETY: as in `write`: a live, readable mapping vouched for by `GuestRam::new`,
        // and an exclusively borrowed Rust slice as destination.
        unsafe { copy_from_guest((r.host_addr + off) as *const u8, buf) };
        Some(())
    }

    /// Zeroes guest RAM over `[gpa, gpa+len)`.
    fn zero(&self, gpa: u64, len: u64) -> Option<()> {
        const ZEROS: [u8; PAGE as usize] = [0; PAGE as usize];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(PAGE);
            self.write(gpa + done, ZEROS.get(..n as usize)?)?;
            done += n;
        }
        Some(())
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
        let (r, off) = self.host(gpa, len).ok_or_else(|| self.efault(command))?;
        // The part the source covers is copied in one go; the rest is zeroed.
        let (lo, covered) = src.covering(gpa, len);
        let hi = lo + covered.len() as u64;
        self.zero(gpa, lo - gpa)
            .and_then(|()| self.write(lo, covered))
            .and_then(|()| self.zero(hi, gpa + len - hi))
            .ok_or_else(|| self.efault(command))?;
        Ok(r.host_addr + off)
    }

    fn pins_ram(&self) -> bool {
        matches!(self.vm_type, VmType::Sev | VmType::SevEs)
    }

    /// `KVM_MEMORY_ENCRYPT_REG_REGION` of `ram` for SEV / SEV-ES (nothing for the other
    /// types): the kernel must not move or swap encrypted pages, as QEMU registers every RAM
    /// block (`sev_ram_block_added`).
    pub(crate) fn register_ram(&self, ram: &GuestRam) -> Result<(), LaunchError> {
        if self.pins_ram() {
            crate::vm::encrypted_region(self.fd, self.vm_type, true, ram.enc_region())?;
        }
        Ok(())
    }

    /// `KVM_MEMORY_ENCRYPT_UNREG_REGION` of `ram` for SEV / SEV-ES.
    pub(crate) fn unregister_ram(&self, ram: &GuestRam) -> Result<(), LaunchError> {
        if self.pins_ram() {
            crate::vm::encrypted_region(self.fd, self.vm_type, false, ram.enc_region())?;
        }
        Ok(())
    }

    /// `KVM_TDX_INIT_VCPU` on a vCPU fd.
    pub(crate) fn tdx_init_vcpu_fd(&self, vcpu: &VcpuFd, rcx: u64) -> Result<(), EncryptOpError> {
        TdxVcpu::borrowed(vcpu, self.vm_type)?.init_vcpu(rcx)
    }

    /// One `KVM_TDX_INIT_MEM_REGION` on a vCPU fd.
    pub(crate) fn tdx_init_mem_region_fd(
        &self,
        vcpu: &VcpuFd,
        range: &mut Remaining,
        measure: bool,
        src: Source<'_>,
    ) -> Result<(), EncryptOpError> {
        let td_vcpu = TdxVcpu::borrowed(vcpu, self.vm_type)?;
        let source_addr = self.stage(range.gpa, range.len, src, "KVM_TDX_INIT_MEM_REGION")?;
        let mut r = range.tdx_init_mem_region(source_addr);
        // SAFETY: `source_addr` points into guest RAM vouched for by `GuestRam::new`,
        // covering `nr_pages` pages staged above.
        let res = unsafe { td_vcpu.init_mem_region(&mut r, measure) };
        range.consume_tdx(&r);
        res
    }
}

/// A vCPU the caller created (`KVM_CREATE_VCPU` on its VM fd), lent to a launch over a
/// [`BorrowedVm`] with [`Launch::adopt_vcpu`](super::Launch::adopt_vcpu). The launcher sets
/// its initial registers from the plan's VMSA (SEV-ES, SNP) before they are encrypted and
/// issues `KVM_TDX_INIT_VCPU` / `KVM_TDX_INIT_MEM_REGION` on it (TDX); once the launch is
/// finished the caller runs it, through its own fd or with [`run`](LaunchVcpu::run) (typed
/// exits).
#[derive(Debug)]
pub struct BorrowedVcpu<'a> {
    fd: &'a mut VcpuFd,
    run: NonNull<kvm_run>,
    id: u32,
    protection: StateProtection,
}

// SAFETY: `run` points into the kvm_run mmap owned by the borrowed fd, which moves with the
// value (as an exclusive borrow); it is only dereferenced through `&mut self`.
unsafe impl Send for BorrowedVcpu<'_> {}
// SAFETY: shared (`&self`) methods only issue vCPU ioctls, which the kernel serializes with the
// vCPU mutex; the kvm_run page is only touched through `&mut self`.
unsafe impl Sync for BorrowedVcpu<'_> {}

impl<'a> BorrowedVcpu<'a> {
    /// vCPU `id` of a VM of `vm_type`.
    pub fn new(fd: &'a mut VcpuFd, id: u32, vm_type: VmType) -> Self {
        let run = NonNull::from(fd.get_kvm_run());
        Self {
            fd,
            run,
            id,
            protection: StateProtection::new(vm_type),
        }
    }

    /// The vCPU fd.
    pub fn fd(&self) -> &VcpuFd {
        self.fd
    }

    /// Whether the register state is protected (and register ioctls refused).
    pub fn is_state_protected(&self) -> bool {
        self.protection.is_protected()
    }

    fn reg<T>(
        &self,
        op: RegisterOp,
        name: &'static str,
        f: impl FnOnce(&VcpuFd) -> Result<T, vmm_sys_util::errno::Error>,
    ) -> Result<T, Error> {
        self.protection.check(op)?;
        f(self.fd).map_err(|e| self.protection.map_error(op, name, e.into()))
    }
}

impl AsRawFd for BorrowedVcpu<'_> {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl LaunchVcpu for BorrowedVcpu<'_> {
    fn id(&self) -> u32 {
        self.id
    }

    fn regs(&self) -> Result<kvm_regs, Error> {
        self.reg(RegisterOp::Regs, "KVM_GET_REGS", |f| f.get_regs())
    }

    fn set_regs(&mut self, regs: &kvm_regs) -> Result<(), Error> {
        self.reg(RegisterOp::Regs, "KVM_SET_REGS", |f| f.set_regs(regs))
    }

    fn sregs(&self) -> Result<kvm_sregs, Error> {
        self.reg(RegisterOp::Sregs, "KVM_GET_SREGS", |f| f.get_sregs())
    }

    fn set_sregs(&mut self, sregs: &kvm_sregs) -> Result<(), Error> {
        self.reg(RegisterOp::Sregs, "KVM_SET_SREGS", |f| f.set_sregs(sregs))
    }

    fn mark_protected(&mut self) {
        self.protection.mark_protected();
    }

    fn run(&mut self) -> Result<Exit<'_>, Error> {
        // SAFETY: `self.run` is `self.fd`'s kvm_run mapping, taken in `new` from the same fd,
        // which this value borrows exclusively.
        unsafe { crate::vcpu::run_fd(self.fd, self.run) }
    }
}

impl<'a> Backend for BorrowedVm<'a> {
    type Vcpu = BorrowedVcpu<'a>;

    fn vm_type(&self) -> VmType {
        self.vm_type
    }

    fn host_limits(&self) -> Result<HostLimits, LaunchError> {
        Ok(self.limits.clone())
    }

    fn initialized(&mut self) -> Result<(), LaunchError> {
        for r in self.ram.iter() {
            self.register_ram(r)?;
        }
        Ok(())
    }

    /// Checks that the caller's RAM covers `[gpa, gpa+size)` (the VMM made the slots).
    fn add_memory(&mut self, gpa: u64, size: u64) -> Result<(), LaunchError> {
        // Ranges may span adjacent slots: check page by page run.
        let mut at = gpa;
        let end = gpa.saturating_add(size);
        while at < end {
            let r = self
                .ram
                .iter()
                .find(|r| r.offset_of(at, 1).is_some())
                .ok_or(LaunchError::NoMemory {
                    gpa: at,
                    len: end - at,
                })?;
            at = r.gpa + r.size;
        }
        Ok(())
    }

    fn set_private(&mut self, gpa: u64, size: u64, private: bool) -> Result<(), LaunchError> {
        let a = if private {
            MemoryAttributes::PRIVATE
        } else {
            MemoryAttributes::empty()
        };
        Ok(crate::vm::set_memory_attributes(
            self.fd,
            self.vm_type,
            gpa,
            size,
            a,
        )?)
    }

    fn read_shared(&self, gpa: u64, buf: &mut [u8]) -> Result<(), LaunchError> {
        let len = buf.len() as u64;
        self.read(gpa, buf)
            .ok_or(LaunchError::NoMemory { gpa, len })
    }

    fn write_shared(&mut self, gpa: u64, data: &[u8]) -> Result<(), LaunchError> {
        let len = data.len() as u64;
        self.write(gpa, data)
            .ok_or(LaunchError::NoMemory { gpa, len })
    }

    fn enable_map_gpa_range_exits(&mut self) -> Result<(), LaunchError> {
        let mut cap = kvm_bindings::kvm_enable_cap {
            cap: kvm_coco_uapi::vm::KVM_CAP_EXIT_HYPERCALL,
            ..Default::default()
        };
        cap.args[0] = 1 << kvm_coco_uapi::KVM_HC_MAP_GPA_RANGE;
        self.fd
            .enable_cap(&cap)
            .map_err(|e| Error::ioctl("KVM_ENABLE_CAP", e).into())
    }

    fn enable_split_irqchip(&mut self) -> Result<(), LaunchError> {
        let mut cap = kvm_bindings::kvm_enable_cap {
            cap: kvm_bindings::KVM_CAP_SPLIT_IRQCHIP,
            ..Default::default()
        };
        // 24 IOAPIC pins, as QEMU.
        cap.args[0] = 24;
        self.fd
            .enable_cap(&cap)
            .map_err(|e| Error::ioctl("KVM_ENABLE_CAP", e).into())
    }

    fn create_vcpu(&mut self, _id: u32) -> Result<BorrowedVcpu<'a>, LaunchError> {
        Err(LaunchError::NotAvailable {
            verb: "create_vcpu",
            vm_type: self.vm_type,
            reason: "over a borrowed VM the VMM creates its vCPUs and hands them over with Launch::adopt_vcpu",
        })
    }

    fn sev_init2(&mut self, init: &mut KvmSevInit) -> Result<(), EncryptOpError> {
        self.sev_view()?.init2(init)
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
        unsafe { self.sev_view()?.launch_start(&mut start, fd) }?;
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
        // SAFETY: `uaddr..uaddr+len` lies inside guest RAM vouched for by `GuestRam::new`
        // (and registered with the VM); the kernel pins and encrypts it in place.
        unsafe { self.sev_view()?.launch_update_data(&mut upd) }
    }

    fn sev_launch_update_vmsa(&mut self) -> Result<(), EncryptOpError> {
        self.sev_view()?.launch_update_vmsa()
    }

    fn sev_launch_measure(&mut self) -> Result<Vec<u8>, EncryptOpError> {
        self.sev_view()?.launch_measure()
    }

    fn sev_launch_secret(
        &mut self,
        header: &[u8],
        packet: &[u8],
        gpa: u64,
    ) -> Result<(), EncryptOpError> {
        let len = packet.len() as u64;
        let (r, off) = self
            .host(gpa, len)
            .ok_or_else(|| self.efault("KVM_SEV_LAUNCH_SECRET"))?;
        let mut s = KvmSevLaunchSecret {
            hdr_uaddr: header.as_ptr() as u64,
            hdr_len: header.len() as u32,
            guest_uaddr: r.host_addr + off,
            guest_len: packet.len() as u32,
            trans_uaddr: packet.as_ptr() as u64,
            trans_len: packet.len() as u32,
            ..Default::default()
        };
        // SAFETY: the header and packet slices are borrowed for the call with their
        // lengths; `guest_uaddr` lies in guest RAM vouched for by `GuestRam::new`.
        unsafe { self.sev_view()?.launch_secret(&mut s) }
    }

    fn sev_launch_finish(&mut self) -> Result<(), EncryptOpError> {
        self.sev_view()?.launch_finish()
    }

    fn sev_dbg_decrypt(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), EncryptOpError> {
        let len = buf.len() as u64;
        let (r, off) = self
            .host(gpa, len)
            .ok_or_else(|| self.efault("KVM_SEV_DBG_DECRYPT"))?;
        let mut d = KvmSevDbg {
            src_uaddr: r.host_addr + off,
            dst_uaddr: buf.as_mut_ptr() as u64,
            len: u32::try_from(len).map_err(|_| self.efault("KVM_SEV_DBG_DECRYPT"))?,
            ..Default::default()
        };
        // SAFETY: `src_uaddr` lies in guest RAM vouched for by `GuestRam::new`; `dst_uaddr`
        // is `buf`, exclusively borrowed for the call, `len` bytes.
        unsafe { self.sev_view()?.dbg_decrypt(&mut d) }
    }

    fn sev_dbg_encrypt(&mut self, gpa: u64, data: &[u8]) -> Result<(), EncryptOpError> {
        let len = data.len() as u64;
        let (r, off) = self
            .host(gpa, len)
            .ok_or_else(|| self.efault("KVM_SEV_DBG_ENCRYPT"))?;
        let mut d = KvmSevDbg {
            src_uaddr: data.as_ptr() as u64,
            dst_uaddr: r.host_addr + off,
            len: u32::try_from(len).map_err(|_| self.efault("KVM_SEV_DBG_ENCRYPT"))?,
            ..Default::default()
        };
        // SAFETY: `src_uaddr` is `data`, borrowed for the call; `dst_uaddr` lies in guest RAM
        // vouched for by `GuestRam::new`, `len` bytes.
        unsafe { self.sev_view()?.dbg_encrypt(&mut d) }
    }

    fn snp_enable_req_certs(&mut self) -> Result<(), EncryptOpError> {
        self.sev_view()?.snp_enable_req_certs()
    }

    fn snp_launch_start(&mut self, start: &mut KvmSevSnpLaunchStart) -> Result<(), EncryptOpError> {
        let fd = self.sev_fd()?;
        self.sev_view()?.snp_launch_start(start, fd)
    }

    fn snp_launch_update(
        &mut self,
        range: &mut Remaining,
        page_type: SnpPageType,
        src: Source<'_>,
        cpuid_out: Option<&mut [u8; 4096]>,
    ) -> Result<(), EncryptOpError> {
        const CMD: &str = "KVM_SEV_SNP_LAUNCH_UPDATE";
        let sev = self.sev_view()?;
        let uaddr = self.stage(range.gpa, range.len, src, CMD)?;
        let mut upd = range.snp_launch_update(uaddr, page_type);
        let fd = self.sev_fd()?;
        // SAFETY: `uaddr..uaddr+len` lies inside guest RAM vouched for by `GuestRam::new`,
        // staged with the content above; for CPUID pages the kernel may write the corrected
        // page back there, which the mapping allows.
        let r = unsafe { sev.snp_launch_update(&mut upd, fd) };
        range.consume_snp(&upd);
        if r.is_err()
            && let Some(out) = cpuid_out
        {
            let _ = self.read(range.gpa, out);
        }
        r
    }

    fn snp_launch_finish(
        &mut self,
        finish: &mut KvmSevSnpLaunchFinish,
        identity: Option<&SnpIdentity>,
    ) -> Result<(), EncryptOpError> {
        let sev = self.sev_view()?;
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
        self.tdx_view()?.capabilities_into(buf)
    }

    fn tdx_init_vm(&mut self, init: &mut TdxInitVmBuf) -> Result<(), EncryptOpError> {
        self.tdx_view()?.init_vm(init)
    }

    fn tdx_init_vcpu(&mut self, vcpu: &BorrowedVcpu<'a>, rcx: u64) -> Result<(), EncryptOpError> {
        self.tdx_init_vcpu_fd(vcpu.fd, rcx)
    }

    fn tdx_init_mem_region(
        &mut self,
        vcpu: &BorrowedVcpu<'a>,
        range: &mut Remaining,
        measure: bool,
        src: Source<'_>,
    ) -> Result<(), EncryptOpError> {
        self.tdx_init_mem_region_fd(vcpu.fd, range, measure, src)
    }

    fn tdx_finalize_vm(&mut self) -> Result<(), EncryptOpError> {
        self.tdx_view()?.finalize_vm()
    }
}
