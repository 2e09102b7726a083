//! vCPUs: running, exits, registers and protected guest state.
//!
//! A [`Vcpu`] is created by [`Vm::create_vcpu`](crate::Vm::create_vcpu). It keeps the VM's
//! memory alive (the guest may touch it for as long as the vCPU fd exists).
//!
//! # Protected state
//!
//! On SEV-ES, SNP and TDX VMs the register state becomes owned by the hardware: after
//! `KVM_SEV_LAUNCH_UPDATE_VMSA` (SEV-ES), inside `KVM_SEV_SNP_LAUNCH_FINISH` (SNP), or from
//! creation (TDX, unless the TD is a debug TD). The kernel then answers the register ioctls
//! with `EINVAL`. A [`Vcpu`] refuses them itself, before any system call, with
//! [`Error::ProtectedState`]. It learns that its state is protected from the VM type (TDX)
//! and from the launch flow: the VM marks all its vCPUs when `KVM_SEV_LAUNCH_UPDATE_VMSA` or
//! `KVM_SEV_SNP_LAUNCH_FINISH` succeeds, and a launcher can mark them explicitly
//! ([`Vcpu::mark_state_protected`]). An `EINVAL` from the kernel on such a VM is mapped to
//! the same error.

use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use kvm_bindings::{
    CpuId, Msrs, kvm_debugregs, kvm_fpu, kvm_guest_debug, kvm_regs, kvm_run, kvm_sregs, kvm_xcrs,
    kvm_xsave,
};
use kvm_ioctls::{VcpuExit, VcpuFd};

use crate::backend::kvm::{ioctl, run_page};
use crate::error::{Errno, Error, RegisterOp, Result};
use crate::exit::{Exit, MapGpaRange, MemoryFault, SystemEvent};
use crate::memory::check_range;
use crate::vm::VmShared;
use crate::vm_type::{Characteristics, VmType};

/// Whether a vCPU's register state is protected, and the check applied before every
/// register ioctl.
///
/// A refusal happens only for VM types with [`Characteristics::PROTECTED_STATE`] whose vCPU
/// has been marked protected: on a default VM using the legacy `KVM_SEV_ES_INIT` the kernel
/// does not refuse (it silently returns stale values), and neither does this check.
///
/// ```
/// use kvm_coco::{Error, RegisterOp, VmType, vcpu::StateProtection};
/// let p = StateProtection::new(VmType::SevEs);
/// assert!(p.check(RegisterOp::Regs).is_ok());
/// p.mark_protected(); // after KVM_SEV_LAUNCH_UPDATE_VMSA
/// assert!(matches!(p.check(RegisterOp::Regs), Err(Error::ProtectedState { .. })));
/// ```
#[derive(Debug)]
pub struct StateProtection {
    vm_type: VmType,
    protected: AtomicBool,
}

impl StateProtection {
    /// The initial state for a new vCPU of `vm_type`: protected from the start for TDX
    /// ([`Characteristics::PROTECTED_AT_CREATION`]), unprotected otherwise.
    pub fn new(vm_type: VmType) -> Self {
        let at_creation = vm_type
            .characteristics()
            .contains(Characteristics::PROTECTED_AT_CREATION);
        Self {
            vm_type,
            protected: AtomicBool::new(at_creation),
        }
    }

    /// The VM type.
    pub fn vm_type(&self) -> VmType {
        self.vm_type
    }

    /// Whether register ioctls are refused.
    pub fn is_protected(&self) -> bool {
        self.vm_type
            .characteristics()
            .contains(Characteristics::PROTECTED_STATE)
            && self.protected.load(Ordering::Relaxed)
    }

    /// Whether the state has been marked protected, whatever the VM type (on types without
    /// protected state the mark has no effect on [`check`](Self::check)).
    pub fn is_marked(&self) -> bool {
        self.protected.load(Ordering::Relaxed)
    }

    /// Records that the state became protected.
    pub fn mark_protected(&self) {
        self.protected.store(true, Ordering::Relaxed);
    }

    /// Sets the flag explicitly (e.g. `false` for the vCPUs of a TDX debug TD).
    pub fn set_protected(&self, protected: bool) {
        self.protected.store(protected, Ordering::Relaxed);
    }

    /// `Err(ProtectedState)` if `op` must be refused.
    pub fn check(&self, op: RegisterOp) -> Result<()> {
        if self.is_protected() {
            return Err(Error::ProtectedState {
                op,
                vm_type: self.vm_type,
            });
        }
        Ok(())
    }

    /// Maps the kernel's answer to a register ioctl: `EINVAL` on a VM type with protected
    /// state means the state is protected (Linux 7.3 `x86.c`/`regs.c`); the flag is set and
    /// [`Error::ProtectedState`] returned. Anything else is an [`Error::Ioctl`].
    pub fn map_error(&self, op: RegisterOp, name: &'static str, errno: Errno) -> Error {
        if errno.raw() == libc::EINVAL
            && self
                .vm_type
                .characteristics()
                .contains(Characteristics::PROTECTED_STATE)
        {
            self.mark_protected();
            return Error::ProtectedState {
                op,
                vm_type: self.vm_type,
            };
        }
        Error::ioctl(name, errno)
    }
}

/// A virtual CPU.
///
/// ```no_run
/// use kvm_coco::{Kvm, VmType, Exit};
/// let vm = Kvm::open()?.create_vm(VmType::Default)?;
/// let mut vcpu = vm.create_vcpu(0)?;
/// match vcpu.run()? {
///     Exit::Hlt => println!("halted"),
///     other => println!("{other:?}"),
/// }
/// # Ok::<(), kvm_coco::Error>(())
/// ```
#[derive(Debug)]
pub struct Vcpu {
    fd: VcpuFd,
    run: NonNull<kvm_run>,
    id: u64,
    protection: Arc<StateProtection>,
    // Keeps the VM fd and every memory mapping alive while this vCPU can run.
    _vm: Arc<VmShared>,
}

// SAFETY: `run` points into the kvm_run mmap owned by `fd`, which moves with the value; it is
// only dereferenced through `&mut self`.
unsafe impl Send for Vcpu {}
// SAFETY: shared (`&self`) methods only issue vCPU ioctls, which the kernel serializes with
// the vCPU mutex; the kvm_run page is only touched through `&mut self`.
unsafe impl Sync for Vcpu {}

impl Vcpu {
    pub(crate) fn new(
        mut fd: VcpuFd,
        id: u64,
        vm: Arc<VmShared>,
        protection: Arc<StateProtection>,
    ) -> Self {
        let run = NonNull::from(fd.get_kvm_run());
        Self {
            fd,
            run,
            id,
            protection,
            _vm: vm,
        }
    }

    /// The vCPU id given at creation.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The VM type.
    pub fn vm_type(&self) -> VmType {
        self.protection.vm_type
    }

    /// The protected-state tracker of this vCPU.
    pub fn state_protection(&self) -> &StateProtection {
        &self.protection
    }

    /// Whether register ioctls are refused (see the [module docs](self)).
    pub fn is_state_protected(&self) -> bool {
        self.protection.is_protected()
    }

    /// Records that this vCPU's state is now protected. [`SevVm::launch_update_vmsa`]
    /// (SEV-ES) and [`SevVm::snp_launch_finish`] (SNP) do it for every vCPU of the VM; a
    /// launch flow driving the kernel another way calls this (or
    /// [`Vm::mark_vcpus_state_protected`]) itself.
    ///
    /// [`SevVm::launch_update_vmsa`]: crate::ops::SevVm::launch_update_vmsa
    /// [`SevVm::snp_launch_finish`]: crate::ops::SevVm::snp_launch_finish
    /// [`Vm::mark_vcpus_state_protected`]: crate::Vm::mark_vcpus_state_protected
    pub fn mark_state_protected(&self) {
        self.protection.mark_protected();
    }

    /// The underlying kvm-ioctls vCPU fd, for ioctls this crate does not wrap.
    ///
    /// Register ioctls issued through it bypass the protected-state check.
    pub fn kvm_ioctls(&self) -> &VcpuFd {
        &self.fd
    }

    /// Sets `kvm_run.immediate_exit`: while set, `KVM_RUN` returns at once with
    /// [`Exit::Interrupted`] without entering the guest.
    ///
    /// ```no_run
    /// # use kvm_coco::{Kvm, VmType, Exit};
    /// # let vm = Kvm::open()?.create_vm(VmType::Default)?;
    /// let mut vcpu = vm.create_vcpu(0)?;
    /// vcpu.set_immediate_exit(true);
    /// assert!(matches!(vcpu.run()?, Exit::Interrupted));
    /// vcpu.set_immediate_exit(false);
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn set_immediate_exit(&mut self, on: bool) {
        self.fd.set_kvm_immediate_exit(u8::from(on));
    }

    /// `KVM_RUN`: runs the guest until it exits to userspace.
    ///
    /// `EINTR` (a signal or `immediate_exit`) is returned as [`Exit::Interrupted`], and the
    /// `-1/EFAULT` of a memory fault as [`Exit::MemoryFault`]. Exits that need an answer
    /// carry a typed reply handle; the answer is picked up by the next `run`.
    ///
    /// ```no_run
    /// # use kvm_coco::{Kvm, VmType, Exit};
    /// # let vm = Kvm::open()?.create_vm(VmType::Default)?;
    /// # let mut vcpu = vm.create_vcpu(0)?;
    /// loop {
    ///     match vcpu.run()? {
    ///         Exit::IoOut { port: 0x3f8, data } => print!("{}", String::from_utf8_lossy(data)),
    ///         Exit::Hlt => break,
    ///         Exit::Interrupted => continue,
    ///         other => panic!("unexpected {other:?}"),
    ///     }
    /// }
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn run(&mut self) -> Result<Exit<'_>> {
        // SAFETY: `self.run` is the kvm_run mapping of `self.fd`.
        unsafe { run_fd(&mut self.fd, self.run) }
    }

    fn reg<T>(
        &self,
        op: RegisterOp,
        name: &'static str,
        f: impl FnOnce(&VcpuFd) -> std::result::Result<T, vmm_sys_util::errno::Error>,
    ) -> Result<T> {
        self.protection.check(op)?;
        f(&self.fd).map_err(|e| self.protection.map_error(op, name, e.into()))
    }

    /// `KVM_GET_REGS`: the general-purpose registers.
    ///
    /// ```no_run
    /// # use kvm_coco::{Kvm, VmType};
    /// let vm = Kvm::open()?.create_vm(VmType::Default)?;
    /// let vcpu = vm.create_vcpu(0)?;
    /// assert_eq!(vcpu.regs()?.rip, 0xfff0);
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn regs(&self) -> Result<kvm_regs> {
        self.reg(RegisterOp::Regs, "KVM_GET_REGS", |f| f.get_regs())
    }

    /// `KVM_SET_REGS`.
    ///
    /// ```no_run
    /// # use kvm_coco::{Kvm, VmType};
    /// # let vm = Kvm::open()?.create_vm(VmType::Default)?;
    /// let vcpu = vm.create_vcpu(0)?;
    /// let mut regs = vcpu.regs()?;
    /// regs.rip = 0x1000;
    /// vcpu.set_regs(&regs)?;
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn set_regs(&self, regs: &kvm_regs) -> Result<()> {
        self.reg(RegisterOp::Regs, "KVM_SET_REGS", |f| f.set_regs(regs))
    }

    /// `KVM_GET_SREGS`: segment and control registers.
    ///
    /// ```no_run
    /// # use kvm_coco::{Kvm, VmType};
    /// # let vm = Kvm::open()?.create_vm(VmType::Default)?;
    /// let vcpu = vm.create_vcpu(0)?;
    /// assert_eq!(vcpu.sregs()?.cs.selector, 0xf000);
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn sregs(&self) -> Result<kvm_sregs> {
        self.reg(RegisterOp::Sregs, "KVM_GET_SREGS", |f| f.get_sregs())
    }

    /// `KVM_SET_SREGS`.
    ///
    /// ```no_run
    /// # use kvm_coco::{Kvm, VmType};
    /// # let vm = Kvm::open()?.create_vm(VmType::Default)?;
    /// let vcpu = vm.create_vcpu(0)?;
    /// let mut sregs = vcpu.sregs()?;
    /// sregs.cs.base = 0;
    /// sregs.cs.selector = 0;
    /// vcpu.set_sregs(&sregs)?;
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn set_sregs(&self, sregs: &kvm_sregs) -> Result<()> {
        self.reg(RegisterOp::Sregs, "KVM_SET_SREGS", |f| f.set_sregs(sregs))
    }

    /// `KVM_GET_FPU`.
    ///
    /// ```no_run
    /// # use kvm_coco::{Kvm, VmType};
    /// # let vm = Kvm::open()?.create_vm(VmType::Default)?;
    /// let fpu = vm.create_vcpu(0)?.fpu()?;
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn fpu(&self) -> Result<kvm_fpu> {
        self.reg(RegisterOp::Fpu, "KVM_GET_FPU", |f| f.get_fpu())
    }

    /// `KVM_SET_FPU`.
    ///
    /// ```no_run
    /// # use kvm_coco::{Kvm, VmType};
    /// # let vm = Kvm::open()?.create_vm(VmType::Default)?;
    /// let vcpu = vm.create_vcpu(0)?;
    /// let mut fpu = vcpu.fpu()?;
    /// fpu.mxcsr = 0x1f80;
    /// vcpu.set_fpu(&fpu)?;
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn set_fpu(&self, fpu: &kvm_fpu) -> Result<()> {
        self.reg(RegisterOp::Fpu, "KVM_SET_FPU", |f| f.set_fpu(fpu))
    }

    /// `KVM_GET_XSAVE` (the legacy 4 KiB area).
    ///
    /// ```no_run
    /// # use kvm_coco::{Kvm, VmType};
    /// # let vm = Kvm::open()?.create_vm(VmType::Default)?;
    /// let xsave = vm.create_vcpu(0)?.xsave()?;
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn xsave(&self) -> Result<kvm_xsave> {
        self.reg(RegisterOp::Xsave, "KVM_GET_XSAVE", |f| f.get_xsave())
    }

    /// `KVM_SET_XSAVE` (the legacy 4 KiB area).
    ///
    /// # Safety
    ///
    /// If the host reports `KVM_CAP_XSAVE2` larger than 4096 bytes, the kernel reads that
    /// many bytes from `xsave`: the caller must then pass a buffer of that size (as with
    /// kvm-ioctls' `VcpuFd::set_xsave`).
    ///
    /// ```no_run
    /// # use kvm_coco::{Kvm, VmType};
    /// # let vm = Kvm::open()?.create_vm(VmType::Default)?;
    /// let vcpu = vm.create_vcpu(0)?;
    /// let xsave = vcpu.xsave()?;
    /// // SAFETY: this host's XSAVE area fits in 4 KiB.
    /// unsafe { vcpu.set_xsave(&xsave)? };
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub unsafe fn set_xsave(&self, xsave: &kvm_xsave) -> Result<()> {
        self.reg(RegisterOp::Xsave, "KVM_SET_XSAVE", |f| {
            // SAFETY: forwarded from this function's contract.
            unsafe { f.set_xsave(xsave) }
        })
    }

    /// `KVM_GET_XCRS`.
    ///
    /// ```no_run
    /// # use kvm_coco::{Kvm, VmType};
    /// # let vm = Kvm::open()?.create_vm(VmType::Default)?;
    /// let xcrs = vm.create_vcpu(0)?.xcrs()?;
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn xcrs(&self) -> Result<kvm_xcrs> {
        self.reg(RegisterOp::Xcrs, "KVM_GET_XCRS", |f| f.get_xcrs())
    }

    /// `KVM_SET_XCRS`.
    ///
    /// ```no_run
    /// # use kvm_coco::{Kvm, VmType};
    /// # let vm = Kvm::open()?.create_vm(VmType::Default)?;
    /// let vcpu = vm.create_vcpu(0)?;
    /// let xcrs = vcpu.xcrs()?;
    /// vcpu.set_xcrs(&xcrs)?;
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn set_xcrs(&self, xcrs: &kvm_xcrs) -> Result<()> {
        self.reg(RegisterOp::Xcrs, "KVM_SET_XCRS", |f| f.set_xcrs(xcrs))
    }

    /// `KVM_GET_DEBUGREGS`.
    ///
    /// ```no_run
    /// # use kvm_coco::{Kvm, VmType};
    /// # let vm = Kvm::open()?.create_vm(VmType::Default)?;
    /// let dr = vm.create_vcpu(0)?.debug_regs()?;
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn debug_regs(&self) -> Result<kvm_debugregs> {
        self.reg(RegisterOp::DebugRegs, "KVM_GET_DEBUGREGS", |f| {
            f.get_debug_regs()
        })
    }

    /// `KVM_SET_DEBUGREGS`.
    ///
    /// ```no_run
    /// # use kvm_coco::{Kvm, VmType};
    /// # let vm = Kvm::open()?.create_vm(VmType::Default)?;
    /// let vcpu = vm.create_vcpu(0)?;
    /// let dr = vcpu.debug_regs()?;
    /// vcpu.set_debug_regs(&dr)?;
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn set_debug_regs(&self, regs: &kvm_debugregs) -> Result<()> {
        self.reg(RegisterOp::DebugRegs, "KVM_SET_DEBUGREGS", |f| {
            f.set_debug_regs(regs)
        })
    }

    /// `KVM_GET_MSRS`: fills the entries of `msrs` whose `index` is set; returns how many
    /// were read.
    ///
    /// ```no_run
    /// # use kvm_coco::{Kvm, VmType};
    /// use kvm_bindings::{Msrs, kvm_msr_entry};
    /// # let vm = Kvm::open()?.create_vm(VmType::Default)?;
    /// let vcpu = vm.create_vcpu(0)?;
    /// let mut msrs = Msrs::from_entries(&[kvm_msr_entry { index: 0xc000_0080, ..Default::default() }]).unwrap();
    /// assert_eq!(vcpu.msrs(&mut msrs)?, 1);
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn msrs(&self, msrs: &mut Msrs) -> Result<usize> {
        self.reg(RegisterOp::Msrs, "KVM_GET_MSRS", |f| f.get_msrs(msrs))
    }

    /// `KVM_SET_MSRS`: returns how many entries were written.
    ///
    /// ```no_run
    /// # use kvm_coco::{Kvm, VmType};
    /// use kvm_bindings::{Msrs, kvm_msr_entry};
    /// # let vm = Kvm::open()?.create_vm(VmType::Default)?;
    /// let vcpu = vm.create_vcpu(0)?;
    /// let msrs = Msrs::from_entries(&[kvm_msr_entry { index: 0x174, data: 0, ..Default::default() }]).unwrap();
    /// vcpu.set_msrs(&msrs)?;
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn set_msrs(&self, msrs: &Msrs) -> Result<usize> {
        self.reg(RegisterOp::Msrs, "KVM_SET_MSRS", |f| f.set_msrs(msrs))
    }

    /// `KVM_SET_GUEST_DEBUG`.
    ///
    /// ```no_run
    /// # use kvm_coco::{Kvm, VmType};
    /// use kvm_bindings::kvm_guest_debug;
    /// # let vm = Kvm::open()?.create_vm(VmType::Default)?;
    /// let vcpu = vm.create_vcpu(0)?;
    /// vcpu.set_guest_debug(&kvm_guest_debug::default())?;
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn set_guest_debug(&self, dbg: &kvm_guest_debug) -> Result<()> {
        self.reg(RegisterOp::GuestDebug, "KVM_SET_GUEST_DEBUG", |f| {
            f.set_guest_debug(dbg)
        })
    }

    /// `KVM_SET_CPUID2`.
    ///
    /// ```no_run
    /// # use kvm_coco::{Kvm, VmType};
    /// let kvm = Kvm::open()?;
    /// let vm = kvm.create_vm(VmType::Default)?;
    /// let vcpu = vm.create_vcpu(0)?;
    /// vcpu.set_cpuid2(&kvm.supported_cpuid()?)?;
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn set_cpuid2(&self, cpuid: &CpuId) -> Result<()> {
        self.fd
            .set_cpuid2(cpuid)
            .map_err(|e| Error::ioctl("KVM_SET_CPUID2", e))
    }

    /// `KVM_PRE_FAULT_MEMORY`: maps `[gpa, gpa+size)` into the guest's page tables ahead of
    /// use, repeating the call while the kernel reports partial progress (`EINTR`,
    /// `EAGAIN`).
    ///
    /// SNP and TDX VMs allow it only after the launch is finished
    /// ([`Characteristics::PRE_FAULT_AFTER_FINISH`]).
    ///
    /// ```no_run
    /// # use kvm_coco::{Kvm, VmType};
    /// # let vm = Kvm::open()?.create_vm(VmType::Default)?;
    /// let vcpu = vm.create_vcpu(0)?;
    /// vcpu.pre_fault_memory(0, 0x20_0000)?;
    /// # Ok::<(), kvm_coco::Error>(())
    /// ```
    pub fn pre_fault_memory(&self, gpa: u64, size: u64) -> Result<()> {
        check_range(gpa, size)?;
        let mut range = kvm_coco_uapi::memory::KvmPreFaultMemory {
            gpa,
            size,
            ..Default::default()
        };
        while range.size > 0 {
            match ioctl::pre_fault_memory(&self.fd, &mut range) {
                Ok(()) => {}
                Err(e) if matches!(e.raw(), libc::EINTR | libc::EAGAIN) => {}
                Err(e) => return Err(Error::ioctl("KVM_PRE_FAULT_MEMORY", e)),
            }
        }
        Ok(())
    }
}

impl std::os::fd::AsRawFd for Vcpu {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

/// `KVM_RUN` on `fd` with the typed [`Exit`] (the body of [`Vcpu::run`], shared with vCPUs a
/// VMM created itself).
///
/// # Safety
///
/// `run_ptr` must be `fd`'s `kvm_run` mapping (`VcpuFd::get_kvm_run`).
pub(crate) unsafe fn run_fd(fd: &mut VcpuFd, run_ptr: NonNull<kvm_run>) -> Result<Exit<'_>> {
    let exit = match fd.run() {
        Ok(exit) => exit,
        Err(e) if e.errno() == libc::EINTR => return Ok(Exit::Interrupted),
        Err(e) => return Err(Error::ioctl("KVM_RUN", e)),
    };
    Ok(match exit {
        VcpuExit::IoOut(port, data) => Exit::IoOut { port, data },
        VcpuExit::IoIn(port, data) => Exit::IoIn { port, data },
        VcpuExit::MmioRead(gpa, data) => Exit::MmioRead { gpa, data },
        VcpuExit::MmioWrite(gpa, data) => Exit::MmioWrite { gpa, data },
        VcpuExit::Hlt => Exit::Hlt,
        VcpuExit::Shutdown => Exit::Shutdown,
        VcpuExit::MemoryFault { flags, gpa, size } => {
            Exit::MemoryFault(MemoryFault { flags, gpa, size })
        }
        VcpuExit::Hypercall(h) if h.nr == kvm_coco_uapi::KVM_HC_MAP_GPA_RANGE => {
            Exit::MapGpaRange(MapGpaRange {
                gpa: h.args[0],
                npages: h.args[1],
                attributes: h.args[2],
                long_mode: h.longmode & 1 != 0,
                ret: h.ret,
            })
        }
        VcpuExit::Hypercall(h) => Exit::Hypercall {
            nr: h.nr,
            args: h.args,
        },
        VcpuExit::SystemEvent(kind, data) => Exit::SystemEvent(SystemEvent::decode(kind, data)),
        VcpuExit::FailEntry(reason, cpu) => Exit::FailEntry { reason, cpu },
        VcpuExit::InternalError => Exit::InternalError,
        VcpuExit::IrqWindowOpen => Exit::IrqWindowOpen,
        VcpuExit::Debug(_) => Exit::Debug,
        VcpuExit::Intr => Exit::Intr,
        VcpuExit::Unsupported(reason) => {
            // SAFETY: `run_ptr` points to `fd`'s kvm_run mapping (this function's contract),
            // alive as long as `fd`; the kvm-ioctls exit value borrowing it holds no
            // reference in this arm, and the result borrows `fd` mutably, so no other access
            // to the page can happen while it lives.
            unsafe { run_page::decode_unsupported(run_ptr, reason) }
        }
        VcpuExit::Unknown => Exit::Other(kvm_bindings::KVM_EXIT_UNKNOWN),
        VcpuExit::Exception => Exit::Other(kvm_bindings::KVM_EXIT_EXCEPTION),
        VcpuExit::SetTpr => Exit::Other(kvm_bindings::KVM_EXIT_SET_TPR),
        VcpuExit::TprAccess => Exit::Other(kvm_bindings::KVM_EXIT_TPR_ACCESS),
        VcpuExit::Nmi => Exit::Other(kvm_bindings::KVM_EXIT_NMI),
        VcpuExit::IoapicEoi(_) => Exit::Other(kvm_bindings::KVM_EXIT_IOAPIC_EOI),
        VcpuExit::Hyperv => Exit::Other(kvm_bindings::KVM_EXIT_HYPERV),
        VcpuExit::X86Rdmsr(_) => Exit::Other(kvm_bindings::KVM_EXIT_X86_RDMSR),
        VcpuExit::X86Wrmsr(_) => Exit::Other(kvm_bindings::KVM_EXIT_X86_WRMSR),
        // Exits of other architectures (s390, PowerPC): pass the raw reason through.
        // SAFETY: `run_ptr` points to this vCPU's live kvm_run page; the kvm-ioctls exit
        // value holds no reference in this arm, and `exit_reason` is a plain u32 the
        // kernel wrote before KVM_RUN returned.
        _ => Exit::Other(unsafe { (*run_ptr.as_ptr()).exit_reason }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protection_refuses_every_register_op_once_marked() {
        let ops = [
            RegisterOp::Regs,
            RegisterOp::Sregs,
            RegisterOp::Fpu,
            RegisterOp::Xsave,
            RegisterOp::Xcrs,
            RegisterOp::DebugRegs,
            RegisterOp::Msrs,
            RegisterOp::GuestDebug,
        ];
        for t in [VmType::SevEs, VmType::Snp] {
            let p = StateProtection::new(t);
            for op in ops {
                assert!(p.check(op).is_ok(), "{t} before launch");
            }
            p.mark_protected();
            for op in ops {
                match p.check(op) {
                    Err(Error::ProtectedState { op: o, vm_type }) => {
                        assert_eq!((o, vm_type), (op, t));
                    }
                    other => panic!("{t} {op}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn tdx_is_protected_from_creation_unless_debug() {
        let p = StateProtection::new(VmType::Tdx);
        assert!(p.is_protected());
        p.set_protected(false);
        assert!(p.check(RegisterOp::Regs).is_ok());
    }

    #[test]
    fn types_without_protected_state_never_refuse() {
        for t in [VmType::Default, VmType::SwProtected, VmType::Sev] {
            let p = StateProtection::new(t);
            p.mark_protected();
            assert!(p.check(RegisterOp::Regs).is_ok(), "{t}");
            // EINVAL stays an ordinary ioctl error there.
            let e = p.map_error(
                RegisterOp::Regs,
                "KVM_GET_REGS",
                Errno::from_raw(libc::EINVAL),
            );
            assert!(matches!(e, Error::Ioctl { .. }), "{t}");
        }
    }

    #[test]
    fn kernel_einval_maps_to_protected_state() {
        let p = StateProtection::new(VmType::SevEs);
        let e = p.map_error(
            RegisterOp::Sregs,
            "KVM_GET_SREGS",
            Errno::from_raw(libc::EINVAL),
        );
        assert!(matches!(
            e,
            Error::ProtectedState {
                op: RegisterOp::Sregs,
                vm_type: VmType::SevEs
            }
        ));
        assert!(p.is_protected(), "the kernel's answer marks the vCPU");
        let e = p.map_error(
            RegisterOp::Sregs,
            "KVM_GET_SREGS",
            Errno::from_raw(libc::EFAULT),
        );
        assert!(matches!(
            e,
            Error::Ioctl {
                op: "KVM_GET_SREGS",
                ..
            }
        ));
    }
}
