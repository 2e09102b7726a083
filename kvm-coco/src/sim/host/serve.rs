//! The dispatcher: one intercepted call in, one answer out. It tells which file the call's fd
//! is (the real `/dev/kvm`, a file the host handed out, or anything else), reads the argument
//! through the caller's pointer as `copy_from_user` does, runs the model, writes results
//! back as the kernel does, and answers; calls that are not the host's run in the real kernel.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use kvm_bindings::{kvm_regs, kvm_sregs};
use kvm_coco_uapi::sev::*;
use kvm_coco_uapi::tdx::{
    KVM_TDX_CAPABILITIES, KVM_TDX_GET_CPUID, KVM_TDX_INIT_MEM_REGION, KVM_TDX_INIT_VM,
};
use kvm_coco_uapi::vm::{
    KVM_X86_GRP_SEV, KVM_X86_SEV_SNP_REQ_CERTS, KVM_X86_SEV_VMSA_FEATURES, KVM_X86_SNP_POLICY_BITS,
};
use kvm_coco_uapi::*;
use zerocopy::{FromBytes, Immutable, IntoBytes};

use super::Shared;
use super::devsev;
use super::faults::FaultAction;
use super::run;
use super::sys::{self, Answer, Notif, ProcessMemory, RunPage};
use super::trace::TraceLine;
use crate::error::{Errno, RegisterOp};
use crate::launch::backend::LaunchVcpu;
use crate::sim::guest::{GuestOp, GuestOutcome};
use crate::sim::guest::{HostMemory, SimVcpu};
use crate::sim::sev::SimSevVm;
use crate::sim::tdx::{SimKvmConfig, SimTdxVm};
use crate::vm_type::VmType;

const EFAULT: Errno = Errno::from_raw(libc::EFAULT);
const EINVAL: Errno = Errno::from_raw(libc::EINVAL);
const ENOTTY: Errno = Errno::from_raw(libc::ENOTTY);
const EIO: Errno = Errno::from_raw(libc::EIO);
const ENXIO: Errno = Errno::from_raw(libc::ENXIO);
const EAGAIN: Errno = Errno::from_raw(libc::EAGAIN);
const EBUSY: Errno = Errno::from_raw(libc::EBUSY);
const EINTR: Errno = Errno::from_raw(libc::EINTR);
const PAGE: u64 = 4096;

/// `/dev/kvm`'s device number (misc 10, minor 232).
const KVM_RDEV: u64 = (10 << 8) | 232;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A file identity: `(st_dev, st_ino)`.
pub(crate) type Key = (u64, u64);

/// The model behind a served VM.
pub(crate) enum ModelVm {
    Amd(SimSevVm),
    Tdx(SimTdxVm),
}

/// A served VM: its model, what the host knows of its memory, its vCPUs and files.
pub(crate) struct ServedVm {
    pub key: Key,
    pub vm_type: VmType,
    pub model: ModelVm,
    pub mem: Arc<Mutex<HostMemory>>,
    pub vcpus: Mutex<Vec<Arc<ServedVcpu>>>,
    pub files: Mutex<Vec<Key>>,
    /// The host's end of the VM fd's socket pair: it hangs up when the last copy of the VM
    /// fd is closed, and the VM is destroyed.
    pub hangup: OwnedFd,
    /// Counts the VM until it is dropped; declared last, so the count drops only after the
    /// model (ASID released, pages reclaimed).
    pub _alive: Alive,
}

/// One count in the host's `vm_models` while a served VM exists.
pub(crate) struct Alive(Arc<std::sync::atomic::AtomicUsize>);

impl Alive {
    pub fn new(count: &Arc<std::sync::atomic::AtomicUsize>) -> Self {
        count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Self(count.clone())
    }
}

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A served vCPU: its `kvm_run` page and the model vCPU with its guest program.
pub(crate) struct ServedVcpu {
    pub page: RunPage,
    /// What `KVM_SET_CPUID2` set (`kvm_cpuid2` and its entries), for `KVM_GET_CPUID2`.
    pub cpuid: Mutex<Vec<u8>>,
    /// The signal mask `KVM_SET_SIGNAL_MASK` set for the duration of `KVM_RUN`.
    pub sigmask: Mutex<Option<u64>>,
    pub sim: Mutex<SimVcpu>,
    /// Whether a guest program was ever loaded (else the default one runs).
    pub loaded: Mutex<bool>,
}

/// What a file the host handed out is.
#[derive(Clone)]
pub(crate) enum Obj {
    /// A stand-in `/dev/kvm` (the machine has none).
    KvmStandIn,
    /// An open `/dev/sev`; whether it was opened for writing.
    DevSev { writable: bool },
    /// A VM fd.
    Vm(Arc<ServedVm>),
    /// A vCPU fd.
    Vcpu(Arc<ServedVm>, Arc<ServedVcpu>),
    /// A guest_memfd of a VM, with the model's fd for it (AMD).
    Gmem(Arc<ServedVm>, i32),
}

enum FdClass {
    RealKvm,
    Ours(Obj),
    Other,
}

fn kind_name(c: &FdClass) -> &'static str {
    match c {
        FdClass::RealKvm | FdClass::Ours(Obj::KvmStandIn) => "kvm",
        FdClass::Ours(Obj::DevSev { .. }) => "sev",
        FdClass::Ours(Obj::Vm(_)) => "vm",
        FdClass::Ours(Obj::Vcpu(..)) => "vcpu",
        FdClass::Ours(Obj::Gmem(..)) => "guest_memfd",
        FdClass::Other => "other",
    }
}

fn key_of(fd: &OwnedFd) -> Result<Key, Errno> {
    let f = std::fs::File::from(fd.try_clone().map_err(|_| EIO)?);
    let m = f.metadata().map_err(|_| EIO)?;
    Ok((m.dev(), m.ino()))
}

fn hex(b: &[u8]) -> String {
    hex::encode(b)
}

/// The name of an ioctl request the host knows.
fn ioctl_name(req: u32) -> String {
    let known: &[(u32, &str)] = &[
        (KVM_GET_API_VERSION, "KVM_GET_API_VERSION"),
        (KVM_CREATE_VM, "KVM_CREATE_VM"),
        (KVM_CHECK_EXTENSION, "KVM_CHECK_EXTENSION"),
        (KVM_GET_VCPU_MMAP_SIZE, "KVM_GET_VCPU_MMAP_SIZE"),
        (KVM_GET_SUPPORTED_CPUID, "KVM_GET_SUPPORTED_CPUID"),
        (KVM_CREATE_VCPU, "KVM_CREATE_VCPU"),
        (KVM_RUN, "KVM_RUN"),
        (KVM_SET_CPUID2, "KVM_SET_CPUID2"),
        (KVM_SET_TSC_KHZ, "KVM_SET_TSC_KHZ"),
        (KVM_ENABLE_CAP, "KVM_ENABLE_CAP"),
        (KVM_MEMORY_ENCRYPT_OP, "KVM_MEMORY_ENCRYPT_OP"),
        (
            KVM_MEMORY_ENCRYPT_REG_REGION,
            "KVM_MEMORY_ENCRYPT_REG_REGION",
        ),
        (
            KVM_MEMORY_ENCRYPT_UNREG_REGION,
            "KVM_MEMORY_ENCRYPT_UNREG_REGION",
        ),
        (KVM_SET_DEVICE_ATTR, "KVM_SET_DEVICE_ATTR"),
        (KVM_GET_DEVICE_ATTR, "KVM_GET_DEVICE_ATTR"),
        (KVM_HAS_DEVICE_ATTR, "KVM_HAS_DEVICE_ATTR"),
        (KVM_SET_USER_MEMORY_REGION2, "KVM_SET_USER_MEMORY_REGION2"),
        (KVM_SET_MEMORY_ATTRIBUTES, "KVM_SET_MEMORY_ATTRIBUTES"),
        (KVM_CREATE_GUEST_MEMFD, "KVM_CREATE_GUEST_MEMFD"),
        (KVM_PRE_FAULT_MEMORY, "KVM_PRE_FAULT_MEMORY"),
        (sys::SEV_ISSUE_CMD, "SEV_ISSUE_CMD"),
        (KVM_GET_REGS, "KVM_GET_REGS"),
        (KVM_SET_REGS, "KVM_SET_REGS"),
        (KVM_GET_SREGS, "KVM_GET_SREGS"),
        (KVM_SET_SREGS, "KVM_SET_SREGS"),
    ];
    known.iter().find(|(r, _)| *r == req).map_or_else(
        || format!("ioctl {req:#010x} (nr {:#04x})", req & 0xff),
        |(_, n)| (*n).to_string(),
    )
}

const fn io_rw(dir: u32, nr: u32, size: usize) -> u32 {
    (dir << 30) | ((size as u32) << 16) | (0xAE << 8) | nr
}
const KVM_GET_REGS: u32 = io_rw(2, 0x81, size_of::<kvm_regs>());
const KVM_SET_REGS: u32 = io_rw(1, 0x82, size_of::<kvm_regs>());
const KVM_GET_SREGS: u32 = io_rw(2, 0x83, size_of::<kvm_sregs>());
const KVM_SET_SREGS: u32 = io_rw(1, 0x84, size_of::<kvm_sregs>());
/// `KVM_SET_USER_MEMORY_REGION` (the original, without guest_memfd).
const KVM_SET_USER_MEMORY_REGION: u32 = io_rw(1, 0x46, 32);
/// `struct kvm_sregs2` (320 bytes): the segments, tables and control registers of
/// `kvm_sregs` (its first 280 bytes), then `flags` and the PDPTRs instead of the interrupt
/// bitmap.
const SREGS2_LEN: usize = 320;
const SREGS_COMMON: usize = 280;
const KVM_GET_SREGS2: u32 = io_rw(2, 0xcc, SREGS2_LEN);
const KVM_SET_SREGS2: u32 = io_rw(1, 0xcd, SREGS2_LEN);
/// `KVM_SET_SIGNAL_MASK` = `_IOW(KVMIO, 0x8b, struct kvm_signal_mask)` (4 bytes: `len`).
const KVM_SET_SIGNAL_MASK: u32 = io_rw(1, 0x8b, 4);
const KVM_GET_CPUID2: u32 = io_rw(3, 0x91, size_of::<KvmCpuid2>());
/// `struct kvm_msrs` header: `nmsrs`, `pad`.
const KVM_GET_MSRS: u32 = io_rw(3, 0x88, 8);
const KVM_SET_MSRS: u32 = io_rw(1, 0x89, 8);
const KVM_GET_FPU: u32 = io_rw(2, 0x8c, 416);
const KVM_SET_FPU: u32 = io_rw(1, 0x8d, 416);
const KVM_GET_DEBUGREGS: u32 = io_rw(2, 0xa1, 128);
const KVM_SET_DEBUGREGS: u32 = io_rw(1, 0xa2, 128);
const KVM_GET_XSAVE: u32 = io_rw(2, 0xa4, 4096);
const KVM_SET_XSAVE: u32 = io_rw(1, 0xa5, 4096);
const KVM_GET_XCRS: u32 = io_rw(2, 0xa6, 392);
const KVM_SET_XCRS: u32 = io_rw(1, 0xa7, 392);
const KVM_GET_XSAVE2: u32 = io_rw(2, 0xcf, 4096);
const KVM_GET_TSC_KHZ: u32 = io_rw(0, 0xa3, 0);
/// The TSC frequency the model reports (2 GHz).
const DEFAULT_TSC_KHZ: u32 = 2_000_000;
const KVM_CAP_SREGS2: u32 = 200;
const KVM_CAP_XSAVE2: u32 = 208;
const KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2: u32 = 168;
const KVM_CAP_DIRTY_LOG_RING: u32 = 192;
const KVM_CAP_DIRTY_LOG_RING_ACQ_REL: u32 = 223;

/// VM ioctls (by number) accepted without a model: the in-kernel irqchip, PIT, clocks,
/// eventfds, coalesced MMIO, MSR filter, identity map and TSS addresses.
const VM_GENERIC: &[(u32, &str)] = &[
    (0x42, "KVM_GET_DIRTY_LOG"),
    (0x44, "KVM_SET_NR_MMU_PAGES"),
    (0x47, "KVM_SET_TSS_ADDR"),
    (0x48, "KVM_SET_IDENTITY_MAP_ADDR"),
    (0x60, "KVM_CREATE_IRQCHIP"),
    (0x61, "KVM_IRQ_LINE"),
    (0x62, "KVM_GET_IRQCHIP"),
    (0x63, "KVM_SET_IRQCHIP"),
    (0x67, "KVM_REGISTER_COALESCED_MMIO / KVM_IRQ_LINE_STATUS"),
    (0x68, "KVM_UNREGISTER_COALESCED_MMIO"),
    (0x6a, "KVM_SET_GSI_ROUTING"),
    (0x76, "KVM_IRQFD"),
    (0x77, "KVM_CREATE_PIT2"),
    (0x78, "KVM_SET_BOOT_CPU_ID"),
    (0x79, "KVM_IOEVENTFD"),
    (0x7b, "KVM_SET_CLOCK"),
    (0x7c, "KVM_GET_CLOCK"),
    (0x9f, "KVM_GET_PIT2"),
    (0xa0, "KVM_SET_PIT2"),
    (0xa5, "KVM_SIGNAL_MSI"),
    (0xb2, "KVM_SET_PMU_EVENT_FILTER"),
    (0xc6, "KVM_X86_SET_MSR_FILTER"),
];

/// vCPU ioctls (by number) accepted without a model: interrupt and event state, the local
/// APIC, MP state, MCE set-up, the signal mask, guest debugging, paravirtual clock.
const VCPU_GENERIC: &[(u32, &str)] = &[
    (0x86, "KVM_INTERRUPT"),
    (0x8e, "KVM_GET_LAPIC"),
    (0x8f, "KVM_SET_LAPIC"),
    (0x92, "KVM_TPR_ACCESS_REPORTING"),
    (0x93, "KVM_SET_VAPIC_ADDR"),
    (0x98, "KVM_GET_MP_STATE"),
    (0x99, "KVM_SET_MP_STATE"),
    (0x9a, "KVM_NMI"),
    (0x9b, "KVM_SET_GUEST_DEBUG"),
    (0x9c, "KVM_X86_SETUP_MCE"),
    (0x9e, "KVM_X86_SET_MCE"),
    (0x9f, "KVM_GET_VCPU_EVENTS"),
    (0xa0, "KVM_SET_VCPU_EVENTS"),
    (0xa3, "KVM_ENABLE_CAP"),
    (0xad, "KVM_KVMCLOCK_CTRL"),
    (0xb7, "KVM_SMI"),
    (0xbe, "KVM_GET_NESTED_STATE"),
    (0xbf, "KVM_SET_NESTED_STATE"),
];

fn read<T: FromBytes>(pm: &ProcessMemory, addr: u64) -> Result<T, Errno> {
    let mut buf = vec![0u8; size_of::<T>()];
    pm.read_at(addr, &mut buf)?;
    T::read_from_bytes(&buf).map_err(|_| EFAULT)
}

fn write<T: IntoBytes + Immutable>(pm: &ProcessMemory, addr: u64, v: &T) -> Result<(), Errno> {
    pm.write_at(addr, v.as_bytes())
}

/// The size of the argument struct of an SEV sub-command (0: none).
fn sev_payload_len(id: u32) -> usize {
    match id {
        KVM_SEV_INIT2 => size_of::<KvmSevInit>(),
        KVM_SEV_LAUNCH_START => size_of::<KvmSevLaunchStart>(),
        KVM_SEV_LAUNCH_UPDATE_DATA => size_of::<KvmSevLaunchUpdateData>(),
        KVM_SEV_LAUNCH_SECRET => size_of::<KvmSevLaunchSecret>(),
        KVM_SEV_LAUNCH_MEASURE => size_of::<KvmSevLaunchMeasure>(),
        KVM_SEV_GUEST_STATUS => size_of::<KvmSevGuestStatus>(),
        KVM_SEV_DBG_DECRYPT | KVM_SEV_DBG_ENCRYPT => size_of::<KvmSevDbg>(),
        KVM_SEV_GET_ATTESTATION_REPORT => size_of::<KvmSevAttestationReport>(),
        KVM_SEV_SEND_START => size_of::<KvmSevSendStart>(),
        KVM_SEV_SEND_UPDATE_DATA => size_of::<KvmSevSendUpdateData>(),
        KVM_SEV_RECEIVE_START => size_of::<KvmSevReceiveStart>(),
        KVM_SEV_RECEIVE_UPDATE_DATA => size_of::<KvmSevReceiveUpdateData>(),
        KVM_SEV_SNP_LAUNCH_START => size_of::<KvmSevSnpLaunchStart>(),
        KVM_SEV_SNP_LAUNCH_UPDATE => size_of::<KvmSevSnpLaunchUpdate>(),
        KVM_SEV_SNP_LAUNCH_FINISH => size_of::<KvmSevSnpLaunchFinish>(),
        _ => 0,
    }
}

fn sev_name(id: u32) -> &'static str {
    SevCmdId::ALL
        .iter()
        .find(|c| **c as u32 == id)
        .map_or("KVM_MEMORY_ENCRYPT_OP (unknown SEV sub-command)", |c| {
            c.name()
        })
}

fn tdx_name(id: u32) -> &'static str {
    TdxCmdId::from_raw(id).map_or(
        "KVM_MEMORY_ENCRYPT_OP (unknown TDX sub-command)",
        TdxCmdId::name,
    )
}

/// The most CPUID entries a TDX argument may carry (`KVM_MAX_CPUID_ENTRIES`).
const MAX_CPUID_ENTRIES: usize = 256;

/// One call being served: the notification, the caller's memory and the trace line.
struct Call<'a> {
    sh: &'a Shared,
    listener: &'a OwnedFd,
    n: Notif,
    pm: ProcessMemory,
    line: TraceLine,
}

impl Shared {
    fn classify(&self, pid: i32, fd: i64) -> FdClass {
        let Ok(m) = std::fs::metadata(format!("/proc/{pid}/fd/{fd}")) else {
            return FdClass::Other;
        };
        if let Some(o) = lock(&self.objects).get(&(m.dev(), m.ino())) {
            return FdClass::Ours(o.clone());
        }
        if m.file_type().is_char_device() && m.rdev() == KVM_RDEV {
            return FdClass::RealKvm;
        }
        FdClass::Other
    }

    /// Serves one notification and answers it.
    pub(crate) fn serve(&self, listener: &OwnedFd, n: Notif, process: i32) {
        let start = Instant::now();
        let mut call = Call {
            sh: self,
            listener,
            n,
            pm: ProcessMemory::new(process),
            line: TraceLine {
                pid: n.pid,
                ..TraceLine::default()
            },
        };
        let answer = match n.nr {
            libc::SYS_openat => call.open(n.args[1], n.args[2]),
            libc::SYS_open => call.open(n.args[0], n.args[1]),
            libc::SYS_ioctl => call.ioctl(),
            _ => Answer::Continue,
        };
        let answer = match answer {
            // Already completed by ADDFD.
            Answer::Value(v) if v == i64::MIN => None,
            a => Some(a),
        };
        match answer {
            Some(Answer::Value(v)) => call.line.result = Some(v),
            Some(Answer::Error(e)) => call.line.errno = Some(e.to_string()),
            _ => {}
        }
        // Not the host's (the real kernel answers): no trace line. Otherwise the line is
        // written before the caller is answered, so the trace is in call order and complete
        // once the caller goes on.
        if !(matches!(answer, Some(Answer::Continue)) && call.line.note.is_none()) {
            self.served_calls
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if let Some(t) = &self.trace {
                call.line.us = start.elapsed().as_micros() as u64;
                t.write(&call.line);
            }
        }
        if let Some(a) = answer {
            let _ = sys::respond(listener, n.id, a);
        }
    }
}

/// The errno a failed register or run call of the guest runner answers with.
fn errno_of(e: crate::error::Error) -> Errno {
    e.errno().unwrap_or(EIO)
}

/// The result of an injected fault that needs no model call (`partial` and a firmware
/// status are the caller's).
fn plain_fault(f: FaultAction) -> Option<Result<(), Errno>> {
    match f {
        FaultAction::Again => Some(Err(EAGAIN)),
        FaultAction::Interrupted => Some(Err(EINTR)),
        FaultAction::Busy => Some(Err(EBUSY)),
        FaultAction::TooBig => Some(Err(Errno::from_raw(libc::E2BIG))),
        FaultAction::Stall => Some(Ok(())),
        FaultAction::Partial(_) | FaultAction::FirmwareStatus(_) => None,
    }
}

/// An injected fault on a TDX command: a firmware status becomes `hw_error` with `EIO`;
/// `None` for `partial`.
fn tdx_fault(f: FaultAction, cmd: &mut KvmTdxCmd) -> Option<Result<(), Errno>> {
    match f {
        FaultAction::FirmwareStatus(s) => {
            cmd.hw_error = u64::from(s);
            Some(Err(EIO))
        }
        f => plain_fault(f),
    }
}

/// The answer that says "completed by `SECCOMP_ADDFD_FLAG_SEND`".
const DONE: Answer = Answer::Value(i64::MIN);

impl Call<'_> {
    fn hand_out(&mut self, fd: &OwnedFd, key: Key, obj: Obj, cloexec: bool) -> Answer {
        lock(&self.sh.objects).insert(key, obj);
        match sys::addfd_send(self.listener, self.n.id, fd, cloexec) {
            Ok(newfd) => {
                self.line.result = Some(i64::from(newfd));
                DONE
            }
            Err(e) => {
                lock(&self.sh.objects).remove(&key);
                Answer::Error(e)
            }
        }
    }

    fn open(&mut self, path_ptr: u64, flags: u64) -> Answer {
        let Ok(path) = self.pm.read_path(path_ptr) else {
            return Answer::Continue;
        };
        let cloexec = flags & libc::O_CLOEXEC as u64 != 0;
        let path = String::from_utf8_lossy(&path).into_owned();
        let obj = if path == "/dev/sev" && self.sh.serves_amd() {
            Obj::DevSev {
                writable: flags & libc::O_ACCMODE as u64 != libc::O_RDONLY as u64,
            }
        } else if path == "/dev/kvm" && !self.sh.real_kvm {
            Obj::KvmStandIn
        } else {
            return Answer::Continue;
        };
        self.line.call = "openat";
        self.line.fd_kind = if matches!(obj, Obj::DevSev { .. }) {
            "sev"
        } else {
            "kvm"
        };
        self.line.path = Some(path);
        // One end of a socket pair: the other tells the host when the caller's last copy is
        // closed, and the file is forgotten.
        let (ours, theirs) = match sys::socketpair() {
            Ok(p) => p,
            Err(e) => return Answer::Error(e),
        };
        let key = match key_of(&theirs) {
            Ok(k) => k,
            Err(e) => return Answer::Error(e),
        };
        lock(&self.sh.files).insert(key, ours);
        self.sh.wake();
        let a = self.hand_out(&theirs, key, obj, cloexec);
        if a != DONE {
            lock(&self.sh.files).remove(&key);
        }
        a
    }

    fn ioctl(&mut self) -> Answer {
        let fd = self.n.args[0] as i32 as i64;
        let req = self.n.args[1] as u32;
        let arg = self.n.args[2];
        let class = self.sh.classify(self.n.pid, fd);
        self.line.call = "ioctl";
        self.line.fd = Some(fd);
        self.line.fd_kind = kind_name(&class);
        self.line.ioctl = Some(ioctl_name(req));
        match class {
            FdClass::Other => Answer::Continue,
            FdClass::RealKvm => self.system(req, arg, true),
            FdClass::Ours(Obj::KvmStandIn) => self.system(req, arg, false),
            FdClass::Ours(Obj::DevSev { writable }) => self.dev_sev(req, arg, writable),
            FdClass::Ours(Obj::Vm(vm)) => self.vm(&vm, req, arg),
            FdClass::Ours(Obj::Vcpu(vm, vcpu)) => self.vcpu(&vm, &vcpu, req, arg),
            FdClass::Ours(Obj::Gmem(..)) => Answer::Error(ENOTTY),
        }
    }

    // ---- /dev/kvm ------------------------------------------------------------------

    fn vm_types(&self) -> u64 {
        let mut t = if self.sh.real_kvm {
            self.sh.real_vm_types
        } else {
            0
        };
        for v in self.sh.served.iter() {
            t |= 1 << v.abi_value();
        }
        t
    }

    fn system(&mut self, req: u32, arg: u64, real: bool) -> Answer {
        match req {
            KVM_GET_SUPPORTED_CPUID if real && self.sh.served.contains(VmType::Tdx) => {
                self.supported_cpuid(arg)
            }
            KVM_CHECK_EXTENSION if arg == u64::from(KVM_CAP_VM_TYPES) => {
                Answer::Value(self.vm_types() as i64)
            }
            KVM_GET_DEVICE_ATTR | KVM_HAS_DEVICE_ATTR => {
                let a: KvmDeviceAttr = match read(&self.pm, arg) {
                    Ok(a) => a,
                    Err(e) => return Answer::Error(e),
                };
                if a.group != KVM_X86_GRP_SEV {
                    return if real {
                        self.pass()
                    } else {
                        Answer::Error(ENXIO)
                    };
                }
                let Some(amd) = self.sh.amd_if_served() else {
                    return Answer::Error(ENXIO);
                };
                let v = match a.attr {
                    KVM_X86_SEV_VMSA_FEATURES => amd.config().supported_vmsa_features,
                    KVM_X86_SNP_POLICY_BITS => amd.snp_policy_bits(),
                    KVM_X86_SEV_SNP_REQ_CERTS => 1,
                    _ => return Answer::Error(ENXIO),
                };
                if req == KVM_GET_DEVICE_ATTR
                    && let Err(e) = self.pm.write_at(a.addr, &v.to_le_bytes())
                {
                    return Answer::Error(e);
                }
                Answer::Value(0)
            }
            KVM_CREATE_VM => {
                let Some(t) = VmType::from_abi(arg as u32).filter(|t| self.sh.served.contains(*t))
                else {
                    return if real {
                        self.pass()
                    } else {
                        Answer::Error(EINVAL)
                    };
                };
                self.create_vm(t)
            }
            _ if real => self.pass(),
            KVM_GET_API_VERSION => Answer::Value(i64::from(KVM_API_VERSION)),
            KVM_GET_VCPU_MMAP_SIZE => Answer::Value(self.sh.vcpu_mmap_size as i64),
            KVM_CHECK_EXTENSION => Answer::Value(self.sh.system_cap(arg as u32)),
            _ => self.unknown(),
        }
    }

    /// `KVM_GET_SUPPORTED_CPUID` on a real KVM while TDX is served: the real answer, with
    /// CPUID 0x80000008 EAX[23:16] (GuestPhysBits) filled in from the physical address width
    /// where the host leaves it 0 (KVM without two-dimensional paging). A TDX host always has
    /// EPT, and KVM_TDX_INIT_VM refuses a guest physical address width other than 48 or 52.
    fn supported_cpuid(&mut self, arg: u64) -> Answer {
        const ENTRY: usize = size_of::<KvmCpuidEntry2>();
        let Some(kvm) = &self.sh.real else {
            return Answer::Continue;
        };
        let mut hdr: KvmCpuid2 = match read(&self.pm, arg) {
            Ok(h) => h,
            Err(e) => return Answer::Error(e),
        };
        let Ok(cpuid) = kvm.get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES) else {
            return Answer::Continue;
        };
        let mut entries: Vec<kvm_bindings::kvm_cpuid_entry2> = cpuid.as_slice().to_vec();
        for e in &mut entries {
            if e.function == 0x8000_0008 && (e.eax >> 16) & 0xff == 0 {
                e.eax |= (e.eax & 0xff) << 16;
            }
        }
        if (hdr.nent as usize) < entries.len() {
            hdr.nent = entries.len() as u32;
            let _ = write(&self.pm, arg, &hdr);
            return Answer::Error(Errno::from_raw(libc::E2BIG));
        }
        hdr.nent = entries.len() as u32;
        let mut out = hdr.as_bytes().to_vec();
        for e in &entries {
            out.extend_from_slice(&e.as_bytes()[..ENTRY]);
        }
        self.line.note = Some("the real KVM's answer, GuestPhysBits filled in".into());
        match self.pm.write_at(arg, &out) {
            Ok(()) => Answer::Value(0),
            Err(e) => Answer::Error(e),
        }
    }

    /// Not the host's call after all: the real kernel answers (no trace line).
    fn pass(&mut self) -> Answer {
        Answer::Continue
    }

    fn unknown(&mut self) -> Answer {
        self.line.note = Some("not modelled: ENOTTY".into());
        Answer::Error(ENOTTY)
    }

    fn create_vm(&mut self, t: VmType) -> Answer {
        let model = match t {
            VmType::Tdx => {
                ModelVm::Tdx(SimTdxVm::new(self.sh.tdx.clone(), SimKvmConfig::default()))
            }
            _ => match SimSevVm::new(self.sh.amd(), t.abi_value()) {
                Ok(vm) => ModelVm::Amd(vm),
                Err(e) => return Answer::Error(e),
            },
        };
        let (ours, theirs) = match sys::socketpair() {
            Ok(p) => p,
            Err(e) => return Answer::Error(e),
        };
        let key = match key_of(&theirs) {
            Ok(k) => k,
            Err(e) => return Answer::Error(e),
        };
        let user: Arc<dyn crate::sim::user::UserMemory + Send + Sync> = Arc::new(self.pm);
        let vm = Arc::new(ServedVm {
            key,
            vm_type: t,
            model,
            mem: Arc::new(Mutex::new(HostMemory::new(user))),
            vcpus: Mutex::new(Vec::new()),
            files: Mutex::new(Vec::new()),
            hangup: ours,
            _alive: Alive::new(&self.sh.vm_models),
        });
        lock(&self.sh.vms).insert(key, vm.clone());
        self.sh
            .vms_created
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.sh.wake();
        let a = self.hand_out(&theirs, key, Obj::Vm(vm), true);
        if a != DONE {
            self.sh.destroy_vm(key);
        }
        a
    }

    // ---- /dev/sev ------------------------------------------------------------------

    fn dev_sev(&mut self, req: u32, arg: u64, writable: bool) -> Answer {
        if req != sys::SEV_ISSUE_CMD {
            return Answer::Error(EINVAL);
        }
        let mut before = [0u8; size_of::<sev_dev::SevIssueCmd>()];
        if self.pm.read_at(arg, &mut before).is_ok() {
            self.line.arg_before = Some(hex(&before));
        }
        let (r, out) = devsev::issue(self.sh.amd(), &self.pm, arg, writable);
        self.line.subcommand = Some(out.name);
        self.line.fw_error = (out.status != 0).then_some(out.status);
        let mut after = [0u8; size_of::<sev_dev::SevIssueCmd>()];
        if self.pm.read_at(arg, &mut after).is_ok() {
            self.line.arg_after = Some(hex(&after));
        }
        match r {
            Ok(()) => Answer::Value(0),
            Err(e) => Answer::Error(e),
        }
    }

    // ---- VM fds ----------------------------------------------------------------------

    fn vm(&mut self, vm: &Arc<ServedVm>, req: u32, arg: u64) -> Answer {
        let r: Result<i64, Errno> = match req {
            KVM_CHECK_EXTENSION => Ok(self.vm_cap(vm, arg as u32)),
            KVM_MEMORY_ENCRYPT_OP => return self.encrypt_op(vm, arg),
            KVM_CREATE_VCPU => return self.create_vcpu(vm, arg),
            KVM_CREATE_GUEST_MEMFD => return self.create_gmem(vm, arg),
            KVM_SET_USER_MEMORY_REGION2 | KVM_SET_USER_MEMORY_REGION => {
                self.set_region(vm, req, arg)
            }
            KVM_SET_MEMORY_ATTRIBUTES => self.set_attributes(vm, arg),
            KVM_MEMORY_ENCRYPT_REG_REGION | KVM_MEMORY_ENCRYPT_UNREG_REGION => {
                read::<KvmEncRegion>(&self.pm, arg).and_then(|r| match &vm.model {
                    ModelVm::Amd(m) if req == KVM_MEMORY_ENCRYPT_REG_REGION => {
                        m.register_region(&r).map(|()| 0)
                    }
                    ModelVm::Amd(m) => m.unregister_region(&r).map(|()| 0),
                    ModelVm::Tdx(_) => Err(ENOTTY),
                })
            }
            KVM_ENABLE_CAP => {
                let cap = read::<KvmEnableCap>(&self.pm, arg);
                if let Ok(c) = &cap {
                    self.line.arg_before = Some(hex(c.as_bytes()));
                }
                cap.and_then(|c| match (&vm.model, c.cap) {
                    // Another capability the VM reports: accepted, nothing modelled.
                    (_, cap)
                        if !matches!(
                            cap,
                            KVM_CAP_EXIT_HYPERCALL | kvm_bindings::KVM_CAP_SPLIT_IRQCHIP
                        ) && self.vm_cap(vm, cap) > 0 =>
                    {
                        Ok(0)
                    }
                    (ModelVm::Tdx(m), kvm_bindings::KVM_CAP_SPLIT_IRQCHIP) => {
                        m.enable_split_irqchip().map(|()| 0)
                    }
                    (_, KVM_CAP_EXIT_HYPERCALL) => {
                        if c.args[0] & !(1 << KVM_HC_MAP_GPA_RANGE) != 0 {
                            Err(EINVAL)
                        } else {
                            Ok(0)
                        }
                    }
                    (_, kvm_bindings::KVM_CAP_SPLIT_IRQCHIP) => Ok(0),
                    _ => Err(EINVAL),
                })
            }
            KVM_SET_TSC_KHZ => match &vm.model {
                ModelVm::Amd(m) => {
                    m.set_tsc_khz(arg as u32);
                    Ok(0)
                }
                ModelVm::Tdx(_) => Ok(0),
            },
            KVM_GET_TSC_KHZ => Ok(i64::from(DEFAULT_TSC_KHZ)),
            _ => return self.generic(req, arg, VM_GENERIC),
        };
        match r {
            Ok(v) => Answer::Value(v),
            Err(e) => Answer::Error(e),
        }
    }

    fn vm_cap(&self, vm: &ServedVm, cap: u32) -> i64 {
        let private = vm
            .vm_type
            .characteristics()
            .contains(crate::Characteristics::PRIVATE_MEMORY);
        match cap {
            KVM_CAP_VM_TYPES => self.vm_types() as i64,
            KVM_CAP_MEMORY_ATTRIBUTES if private => KVM_MEMORY_ATTRIBUTE_PRIVATE as i64,
            KVM_CAP_GUEST_MEMFD if private => 1,
            KVM_CAP_GUEST_MEMFD_FLAGS if private => 0,
            KVM_CAP_EXIT_HYPERCALL => 1 << KVM_HC_MAP_GPA_RANGE,
            KVM_CAP_PRE_FAULT_MEMORY => 1,
            KVM_CAP_USER_MEMORY2 | KVM_CAP_MEMORY_FAULT_INFO => 1,
            // Not modelled for served VMs: the VMM falls back to the older ioctls
            // (KVM_SET_SREGS, KVM_GET_XSAVE), the dirty log is not tracked.
            KVM_CAP_SREGS2
            | KVM_CAP_XSAVE2
            | KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2
            | KVM_CAP_DIRTY_LOG_RING
            | KVM_CAP_DIRTY_LOG_RING_ACQ_REL => 0,
            c => self.sh.system_cap(c),
        }
    }

    fn encrypt_op(&mut self, vm: &Arc<ServedVm>, arg: u64) -> Answer {
        match &vm.model {
            ModelVm::Amd(m) => self.sev_op(vm, m, arg),
            ModelVm::Tdx(m) => self.tdx_vm_op(m, arg),
        }
    }

    fn sev_op(&mut self, vm: &ServedVm, m: &SimSevVm, arg: u64) -> Answer {
        if arg == 0 {
            // A NULL argument probes for SEV support.
            return Answer::Value(0);
        }
        let mut cmd: KvmSevCmd = match read(&self.pm, arg) {
            Ok(c) => c,
            Err(e) => return Answer::Error(e),
        };
        let id = cmd.id;
        let name = sev_name(id);
        self.line.subcommand = Some(name);
        let len = sev_payload_len(id);
        let mut payload = vec![0u8; len];
        let payload_ok = len > 0 && self.pm.read_at(cmd.data, &mut payload).is_ok();
        if !payload_ok {
            payload.clear();
        }
        let original = payload.clone();
        self.line.arg_before = Some(hex(&payload));
        // `sev_fd` names a file of the caller: the model sees its own /dev/sev fd for it.
        let user_sev_fd = cmd.sev_fd;
        let amd = self.sh.amd_state();
        cmd.sev_fd = match self.sh.classify(self.n.pid, i64::from(user_sev_fd as i32)) {
            FdClass::Ours(Obj::DevSev { .. }) => amd.dev_sev_fd as u32,
            FdClass::Other if user_sev_fd as i32 >= 0 && self.fd_open(user_sev_fd) => {
                amd.other_fd as u32
            }
            FdClass::Other => u32::MAX,
            _ => amd.other_fd as u32,
        };
        let fault = self.sh.faults.check(name);
        let mut r = match (fault, id) {
            (Some(f), _) => {
                self.line.fault = Some(f.to_string());
                self.inject_sev(m, &mut cmd, &mut payload, f)
            }
            _ => m.mem_enc_op(&mut cmd, &mut payload),
        };
        if r.is_ok()
            && id == KVM_SEV_SNP_LAUNCH_UPDATE
            && let (Ok(before), Ok(after)) = (
                KvmSevSnpLaunchUpdate::read_from_bytes(&original),
                KvmSevSnpLaunchUpdate::read_from_bytes(&payload),
            )
            && u32::from(before.r#type) == KVM_SEV_SNP_PAGE_TYPE_SECRETS
            && after.gfn_start > before.gfn_start
        {
            lock(&vm.mem).secrets = Some(before.gfn_start * PAGE);
        }
        cmd.sev_fd = user_sev_fd;
        self.line.fw_error = (cmd.error != 0).then_some(cmd.error);
        self.line.arg_after = Some(hex(&payload));
        // sev_mem_enc_ioctl copies the command (with `error`) back whatever happened, and
        // each handler copies its struct back where it writes results.
        if write(&self.pm, arg, &cmd).is_err() {
            r = Err(EFAULT);
        }
        if payload_ok && payload != original && self.pm.write_at(cmd.data, &payload).is_err() {
            r = Err(EFAULT);
        }
        match r {
            Ok(()) => Answer::Value(0),
            Err(e) => Answer::Error(e),
        }
    }

    fn fd_open(&self, fd: u32) -> bool {
        std::fs::symlink_metadata(format!("/proc/{}/fd/{}", self.n.pid, fd as i32)).is_ok()
    }

    fn inject_sev(
        &mut self,
        m: &SimSevVm,
        cmd: &mut KvmSevCmd,
        payload: &mut [u8],
        f: FaultAction,
    ) -> Result<(), Errno> {
        if let Some(r) = plain_fault(f) {
            return r;
        }
        match f {
            FaultAction::FirmwareStatus(s) => {
                cmd.error = s;
                Err(EIO)
            }
            _ => {
                // SNP_LAUNCH_UPDATE: do at most k pages, then EAGAIN with the progress
                // written back (other commands: no partial form, plain EAGAIN).
                let k = if let FaultAction::Partial(k) = f {
                    k
                } else {
                    0
                };
                let Ok(mut upd) = KvmSevSnpLaunchUpdate::read_from_bytes(payload) else {
                    return Err(EAGAIN);
                };
                if cmd.id != KVM_SEV_SNP_LAUNCH_UPDATE || upd.len <= k * PAGE {
                    return m.mem_enc_op(cmd, payload);
                }
                let total = upd.len;
                upd.len = k * PAGE;
                let mut part = upd.as_bytes().to_vec();
                let r = m.mem_enc_op(cmd, &mut part);
                let mut done = KvmSevSnpLaunchUpdate::read_from_bytes(&part).map_err(|_| EFAULT)?;
                let consumed = k * PAGE - done.len;
                done.len = total - consumed;
                payload.copy_from_slice(done.as_bytes());
                r.and(Err(EAGAIN))
            }
        }
    }

    fn tdx_vm_op(&mut self, m: &SimTdxVm, arg: u64) -> Answer {
        let mut cmd: KvmTdxCmd = match read(&self.pm, arg) {
            Ok(c) => c,
            Err(e) => return Answer::Error(e),
        };
        let name = tdx_name(cmd.id);
        self.line.subcommand = Some(name);
        let (mut data, data_ok) = match cmd.id {
            KVM_TDX_CAPABILITIES => self.tdx_buf::<KvmTdxCapabilities>(cmd.data),
            KVM_TDX_INIT_VM => self.tdx_buf::<KvmTdxInitVm>(cmd.data),
            _ => (Vec::new(), false),
        };
        let original = data.clone();
        self.line.arg_before = Some(hex(&data));
        let r = match self.sh.faults.check(name) {
            Some(f) => {
                self.line.fault = Some(f.to_string());
                tdx_fault(f, &mut cmd).unwrap_or(Err(EAGAIN))
            }
            None => m.tdx_ioctl(&mut cmd, &mut data),
        };
        self.finish_tdx(arg, &cmd, data_ok, &original, &data, r)
    }

    /// Reads a TDX argument buffer: a header `H` whose `cpuid.nent` (at the end of the
    /// header, as in both `kvm_tdx_capabilities` and `kvm_tdx_init_vm`) counts the
    /// `kvm_cpuid_entry2`s that follow.
    fn tdx_buf<H>(&self, addr: u64) -> (Vec<u8>, bool) {
        let hdr = size_of::<H>();
        let mut h = vec![0u8; hdr];
        if self.pm.read_at(addr, &mut h).is_err() {
            return (Vec::new(), false);
        }
        let nent_off = hdr - size_of::<KvmCpuid2>();
        let nent = u32::from_le_bytes(h[nent_off..nent_off + 4].try_into().unwrap_or_default());
        let n = (nent as usize).min(MAX_CPUID_ENTRIES);
        let mut buf = vec![0u8; hdr + n * size_of::<KvmCpuidEntry2>()];
        buf[..hdr].copy_from_slice(&h);
        let _ = self.pm.read_at(addr + hdr as u64, &mut buf[hdr..]);
        (buf, true)
    }

    fn finish_tdx(
        &mut self,
        arg: u64,
        cmd: &KvmTdxCmd,
        data_ok: bool,
        original: &[u8],
        data: &[u8],
        r: Result<(), Errno>,
    ) -> Answer {
        let mut r = r;
        self.line.arg_after = Some(hex(data));
        if cmd.hw_error != 0 {
            self.line.hw_error = Some(format!("{:#x}", cmd.hw_error));
        }
        if write(&self.pm, arg, cmd).is_err() {
            r = Err(EFAULT);
        }
        if data_ok && data != original && self.pm.write_at(cmd.data, data).is_err() {
            r = Err(EFAULT);
        }
        match r {
            Ok(()) => Answer::Value(0),
            Err(e) => Answer::Error(e),
        }
    }

    fn create_vcpu(&mut self, vm: &Arc<ServedVm>, arg: u64) -> Answer {
        let id = arg as u32;
        let sim = match &vm.model {
            ModelVm::Amd(m) => m.create_vcpu(id).map(|v| {
                SimVcpu::amd(
                    vm.vm_type,
                    self.sh.amd().clone(),
                    m.clone(),
                    v,
                    vm.mem.clone(),
                )
            }),
            ModelVm::Tdx(m) => m
                .create_vcpu(id)
                .map(|v| SimVcpu::tdx(m.clone(), v, vm.mem.clone())),
        };
        let sim = match sim {
            Ok(s) => s,
            Err(e) => return Answer::Error(e),
        };
        let fd = match sys::memfd(&format!("kvm-coco:vcpu{id}"), self.sh.vcpu_mmap_size as u64) {
            Ok(f) => f,
            Err(e) => return Answer::Error(e),
        };
        let (page, key) = match (RunPage::map(&fd, self.sh.vcpu_mmap_size), key_of(&fd)) {
            (Ok(p), Ok(k)) => (p, k),
            (Err(e), _) | (_, Err(e)) => return Answer::Error(e),
        };
        let vcpu = Arc::new(ServedVcpu {
            page,
            cpuid: Mutex::new(Vec::new()),
            sigmask: Mutex::new(None),
            sim: Mutex::new(sim),
            loaded: Mutex::new(false),
        });
        lock(&vm.vcpus).push(vcpu.clone());
        lock(&vm.files).push(key);
        self.hand_out(&fd, key, Obj::Vcpu(vm.clone(), vcpu), true)
    }

    fn create_gmem(&mut self, vm: &Arc<ServedVm>, arg: u64) -> Answer {
        let g: KvmCreateGuestMemfd = match read(&self.pm, arg) {
            Ok(g) => g,
            Err(e) => return Answer::Error(e),
        };
        self.line.arg_before = Some(hex(g.as_bytes()));
        let model_fd = match &vm.model {
            ModelVm::Amd(m) => match m.create_guest_memfd(g.size, g.flags) {
                Ok(fd) => fd,
                Err(e) => return Answer::Error(e),
            },
            ModelVm::Tdx(_) => {
                if g.flags & !(GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED) != 0
                    || g.size == 0
                    || !g.size.is_multiple_of(PAGE)
                {
                    return Answer::Error(EINVAL);
                }
                -1
            }
        };
        let fd = match sys::memfd("kvm-coco:guest_memfd", g.size) {
            Ok(f) => f,
            Err(e) => return Answer::Error(e),
        };
        let key = match key_of(&fd) {
            Ok(k) => k,
            Err(e) => return Answer::Error(e),
        };
        lock(&vm.files).push(key);
        self.hand_out(&fd, key, Obj::Gmem(vm.clone(), model_fd), true)
    }

    fn set_region(&mut self, vm: &ServedVm, req: u32, arg: u64) -> Result<i64, Errno> {
        let mut r = if req == KVM_SET_USER_MEMORY_REGION {
            let mut b = [0u8; 32];
            self.pm.read_at(arg, &mut b)?;
            let mut r2 = KvmUserspaceMemoryRegion2::default();
            r2.as_mut_bytes()[..32].copy_from_slice(&b);
            r2
        } else {
            read::<KvmUserspaceMemoryRegion2>(&self.pm, arg)?
        };
        self.line.arg_before = Some(hex(r.as_bytes()));
        let gmem = r.flags & KVM_MEM_GUEST_MEMFD != 0;
        match &vm.model {
            ModelVm::Amd(m) => {
                if gmem {
                    let amd = self.sh.amd_state();
                    r.guest_memfd = match self
                        .sh
                        .classify(self.n.pid, i64::from(r.guest_memfd as i32))
                    {
                        FdClass::Ours(Obj::Gmem(_, mfd)) if mfd >= 0 => mfd as u32,
                        FdClass::Other if !self.fd_open(r.guest_memfd) => u32::MAX,
                        _ => amd.other_fd as u32,
                    };
                }
                m.set_user_memory_region2(&r)?;
            }
            ModelVm::Tdx(m) => {
                if r.memory_size != 0 && gmem {
                    match self
                        .sh
                        .classify(self.n.pid, i64::from(r.guest_memfd as i32))
                    {
                        FdClass::Ours(Obj::Gmem(owner, _)) if owner.key == vm.key => {}
                        _ => return Err(EINVAL),
                    }
                    m.add_guest_memfd_region(r.guest_phys_addr, r.memory_size)?;
                }
            }
        }
        let mut mem = lock(&vm.mem);
        if r.memory_size == 0 {
            mem.slots.retain(|s| s.0 != r.guest_phys_addr);
            mem.ram.retain(|s| s.0 != r.guest_phys_addr);
        } else {
            mem.slots
                .push((r.guest_phys_addr, r.memory_size, r.userspace_addr));
            mem.ram.push((r.guest_phys_addr, r.memory_size));
        }
        Ok(0)
    }

    fn set_attributes(&mut self, vm: &ServedVm, arg: u64) -> Result<i64, Errno> {
        let a: KvmMemoryAttributes = read(&self.pm, arg)?;
        self.line.arg_before = Some(hex(a.as_bytes()));
        match &vm.model {
            ModelVm::Amd(m) => m.set_memory_attributes(&a)?,
            ModelVm::Tdx(m) => m.set_memory_attributes(&a)?,
        }
        let end = a.address.saturating_add(a.size);
        lock(&vm.mem).set_private(
            a.address,
            end,
            a.attributes & KVM_MEMORY_ATTRIBUTE_PRIVATE != 0,
        );
        Ok(0)
    }

    /// The ioctls of a VM or vCPU that a VMM issues for devices and state the model does not
    /// simulate (interrupt controllers, clocks, eventfds, …): accepted as the kernel accepts
    /// them, with outputs zeroed. Anything else gets `ENOTTY` and a trace note.
    fn generic(&mut self, req: u32, arg: u64, table: &[(u32, &'static str)]) -> Answer {
        let nr = req & 0xff;
        let Some((_, name)) = table.iter().find(|(n, _)| *n == nr) else {
            return self.unknown();
        };
        self.line.ioctl = Some((*name).to_string());
        self.line.note = Some("accepted, not modelled".into());
        let dir = req >> 30;
        let size = ((req >> 16) & 0x3fff) as usize;
        // _IOR / _IOWR: the kernel writes the struct back; hand back zeros (except the
        // count fields a VMM reads, kept as the VMM wrote them).
        if dir & 2 != 0 && size > 0 && arg != 0 {
            let mut b = vec![0u8; size];
            if self.pm.read_at(arg, &mut b).is_err() {
                return Answer::Error(EFAULT);
            }
            if dir == 2 {
                b.fill(0);
            }
            if self.pm.write_at(arg, &b).is_err() {
                return Answer::Error(EFAULT);
            }
        } else if dir & 1 != 0 && size > 0 && arg != 0 {
            let mut b = vec![0u8; size];
            if self.pm.read_at(arg, &mut b).is_err() {
                return Answer::Error(EFAULT);
            }
        }
        Answer::Value(0)
    }

    /// `KVM_SET_SIGNAL_MASK`: the mask `KVM_RUN` runs with (`arg` 0 clears it; `len` must be
    /// 8, the kernel's sigset size).
    fn set_sigmask(&mut self, vcpu: &ServedVcpu, arg: u64) -> Result<i64, Errno> {
        if arg == 0 {
            *lock(&vcpu.sigmask) = None;
            return Ok(0);
        }
        let mut b = [0u8; 12];
        self.pm.read_at(arg, &mut b)?;
        if u32::from_le_bytes(b[..4].try_into().unwrap_or_default()) != 8 {
            return Err(EINVAL);
        }
        *lock(&vcpu.sigmask) = Some(u64::from_le_bytes(b[4..].try_into().unwrap_or_default()));
        Ok(0)
    }

    /// Whether the calling thread has a signal that `KVM_RUN` would return `EINTR` for: one
    /// pending and not blocked by the run's signal mask (or by the thread's own mask).
    fn signal_pending(&self, vcpu: &ServedVcpu) -> bool {
        let Ok(status) = std::fs::read_to_string(format!("/proc/{}/status", self.n.pid)) else {
            return false;
        };
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
                .unwrap_or(0)
        };
        let pending = field("SigPnd:") | field("ShdPnd:");
        let blocked = lock(&vcpu.sigmask).unwrap_or_else(|| field("SigBlk:"));
        pending & !blocked != 0
    }

    fn set_cpuid(&mut self, vcpu: &ServedVcpu, arg: u64) -> Result<i64, Errno> {
        let (buf, ok) = self.tdx_buf::<KvmCpuid2>(arg);
        if !ok {
            return Err(EFAULT);
        }
        *lock(&vcpu.cpuid) = buf;
        Ok(0)
    }

    /// `KVM_GET_CPUID2`: what `KVM_SET_CPUID2` set (`E2BIG` with the count written back when
    /// the caller's `nent` is too small).
    fn get_cpuid(&mut self, vcpu: &ServedVcpu, arg: u64) -> Result<i64, Errno> {
        let hdr: KvmCpuid2 = read(&self.pm, arg)?;
        let stored = lock(&vcpu.cpuid).clone();
        let have = if stored.len() >= size_of::<KvmCpuid2>() {
            (stored.len() - size_of::<KvmCpuid2>()) / size_of::<KvmCpuidEntry2>()
        } else {
            0
        };
        if (hdr.nent as usize) < have {
            let mut h = hdr;
            h.nent = have as u32;
            write(&self.pm, arg, &h)?;
            return Err(Errno::from_raw(libc::E2BIG));
        }
        if stored.is_empty() {
            let mut h = hdr;
            h.nent = 0;
            write(&self.pm, arg, &h)?;
            return Ok(0);
        }
        self.pm.write_at(arg, &stored)?;
        Ok(0)
    }

    /// `KVM_SET_MSRS` / `KVM_GET_MSRS`: every MSR is accepted (the VMSA takes its values from
    /// the reset state); the result is the count, as KVM returns. On a TD the host-initiated
    /// accesses KVM emulates itself are accepted as well (the TD's real MSRs are the TDX
    /// module's).
    fn msrs(&mut self, vm: &ServedVm, vcpu: &ServedVcpu, arg: u64) -> Result<i64, Errno> {
        if !matches!(vm.model, ModelVm::Tdx(_)) {
            lock(&vcpu.sim).register_access(RegisterOp::Msrs)?;
        }
        let mut n = [0u8; 4];
        self.pm.read_at(arg, &mut n)?;
        Ok(i64::from(u32::from_le_bytes(n).min(4096)))
    }

    /// `KVM_SET_XCRS`: XCR0 goes into the state the VMSA is built from.
    fn set_xcrs(&mut self, vcpu: &ServedVcpu, arg: u64) -> Result<i64, Errno> {
        // struct kvm_xcrs { u32 nr_xcrs; u32 flags; struct { u32 xcr; u32 rsvd; u64 value; } xcrs[16]; ... }
        let mut b = [0u8; 8 + 16 * 16];
        self.pm.read_at(arg, &mut b)?;
        let nr = u32::from_le_bytes(b[0..4].try_into().unwrap_or_default()).min(16) as usize;
        let sim = lock(&vcpu.sim);
        sim.register_access(RegisterOp::Xcrs)?;
        for i in 0..nr {
            let e = &b[8 + 16 * i..8 + 16 * (i + 1)];
            let xcr = u32::from_le_bytes(e[0..4].try_into().unwrap_or_default());
            let value = u64::from_le_bytes(e[8..16].try_into().unwrap_or_default());
            if xcr == 0 {
                sim.set_xcr0(value)?;
            }
        }
        Ok(0)
    }

    /// `KVM_SET_DEBUGREGS`: DR6 and DR7 go into the VMSA's state.
    fn set_debugregs(&mut self, vcpu: &ServedVcpu, arg: u64) -> Result<i64, Errno> {
        // struct kvm_debugregs { u64 db[4]; u64 dr6; u64 dr7; u64 flags; u64 reserved[9]; }
        let mut b = [0u8; 56];
        self.pm.read_at(arg, &mut b)?;
        let dr6 = u64::from_le_bytes(b[32..40].try_into().unwrap_or_default());
        let dr7 = u64::from_le_bytes(b[40..48].try_into().unwrap_or_default());
        lock(&vcpu.sim).set_debug_regs(dr6, dr7)?;
        Ok(0)
    }

    // ---- vCPU fds ----------------------------------------------------------------------

    fn vcpu(&mut self, vm: &Arc<ServedVm>, vcpu: &Arc<ServedVcpu>, req: u32, arg: u64) -> Answer {
        let r: Result<i64, Errno> = match req {
            KVM_RUN => return self.run(vm, vcpu),
            KVM_MEMORY_ENCRYPT_OP => return self.tdx_vcpu_op(vm, vcpu, arg),
            KVM_GET_REGS => lock(&vcpu.sim)
                .regs()
                .map_err(errno_of)
                .and_then(|r| write(&self.pm, arg, &r).map(|()| 0)),
            KVM_SET_REGS => read::<kvm_regs>(&self.pm, arg)
                .and_then(|r| lock(&vcpu.sim).set_regs(&r).map_err(errno_of).map(|()| 0)),
            KVM_GET_SREGS | KVM_GET_SREGS2 => {
                lock(&vcpu.sim).sregs().map_err(errno_of).and_then(|r| {
                    // `kvm_sregs2` starts with the 280 bytes it shares with `kvm_sregs`; its
                    // flags and PDPTRs stay 0.
                    let (len, n) = if req == KVM_GET_SREGS {
                        (size_of::<kvm_sregs>(), size_of::<kvm_sregs>())
                    } else {
                        (SREGS2_LEN, SREGS_COMMON)
                    };
                    let mut b = vec![0u8; len];
                    b[..n].copy_from_slice(&r.as_bytes()[..n]);
                    self.pm.write_at(arg, &b).map(|()| 0)
                })
            }
            KVM_SET_SREGS | KVM_SET_SREGS2 => {
                let len = if req == KVM_SET_SREGS {
                    size_of::<kvm_sregs>()
                } else {
                    SREGS_COMMON
                };
                let mut r = kvm_sregs::default();
                self.pm
                    .read_at(arg, &mut r.as_mut_bytes()[..len])
                    .and_then(|()| lock(&vcpu.sim).set_sregs(&r).map_err(errno_of).map(|()| 0))
            }
            KVM_SET_CPUID2 => self.set_cpuid(vcpu, arg),
            KVM_SET_SIGNAL_MASK => self.set_sigmask(vcpu, arg),
            KVM_GET_CPUID2 => self.get_cpuid(vcpu, arg),
            // Pre-faulting maps nothing the model tracks: allowed where KVM allows it (SNP
            // after SNP_LAUNCH_FINISH, TDX after FINALIZE_VM), with the range written back as
            // done.
            KVM_PRE_FAULT_MEMORY => {
                let allowed = match &vm.model {
                    ModelVm::Amd(m) => m.pre_fault_allowed(),
                    ModelVm::Tdx(m) => m.td_state() == crate::sim::tdx::TdState::Runnable,
                };
                if allowed {
                    read::<KvmPreFaultMemory>(&self.pm, arg).and_then(|mut p| {
                        p.gpa = p.gpa.saturating_add(p.size);
                        p.size = 0;
                        write(&self.pm, arg, &p).map(|()| 0)
                    })
                } else {
                    Err(Errno::from_raw(libc::EOPNOTSUPP))
                }
            }
            KVM_SET_MSRS | KVM_GET_MSRS => self.msrs(vm, vcpu, arg),
            KVM_SET_XCRS => self.set_xcrs(vcpu, arg),
            KVM_SET_DEBUGREGS => self.set_debugregs(vcpu, arg),
            KVM_GET_XSAVE2 => lock(&vcpu.sim)
                .register_access(RegisterOp::Xsave)
                .and_then(|()| self.pm.write_at(arg, &[0u8; 4096]))
                .map(|()| 0),
            KVM_SET_TSC_KHZ => Ok(0),
            KVM_GET_XSAVE | KVM_SET_XSAVE => lock(&vcpu.sim)
                .register_access(RegisterOp::Xsave)
                .map(|()| 0),
            KVM_GET_XCRS => lock(&vcpu.sim)
                .register_access(RegisterOp::Xcrs)
                .map(|()| 0),
            KVM_GET_DEBUGREGS => lock(&vcpu.sim)
                .register_access(RegisterOp::DebugRegs)
                .map(|()| 0),
            KVM_GET_FPU | KVM_SET_FPU => {
                lock(&vcpu.sim).register_access(RegisterOp::Fpu).map(|()| 0)
            }
            KVM_GET_TSC_KHZ => Ok(i64::from(DEFAULT_TSC_KHZ)),
            _ => return self.generic(req, arg, VCPU_GENERIC),
        };
        match r {
            Ok(v) => Answer::Value(v),
            Err(e) => Answer::Error(e),
        }
    }

    fn tdx_vcpu_op(&mut self, vm: &ServedVm, vcpu: &ServedVcpu, arg: u64) -> Answer {
        let ModelVm::Tdx(_) = &vm.model else {
            return Answer::Error(ENOTTY);
        };
        let mut cmd: KvmTdxCmd = match read(&self.pm, arg) {
            Ok(c) => c,
            Err(e) => return Answer::Error(e),
        };
        let name = tdx_name(cmd.id);
        self.line.subcommand = Some(name);
        let (mut data, data_ok) = match cmd.id {
            KVM_TDX_INIT_MEM_REGION => {
                let mut b = vec![0u8; size_of::<KvmTdxInitMemRegion>()];
                let ok = self.pm.read_at(cmd.data, &mut b).is_ok();
                (if ok { b } else { Vec::new() }, ok)
            }
            KVM_TDX_GET_CPUID => self.tdx_buf::<KvmCpuid2>(cmd.data),
            _ => (Vec::new(), false),
        };
        let original = data.clone();
        self.line.arg_before = Some(hex(&data));
        let sim = lock(&vcpu.sim);
        let Some(tv) = sim.tdx_vcpu() else {
            return Answer::Error(ENOTTY);
        };
        let fault = self.sh.faults.check(name);
        let r = match fault {
            Some(f @ FaultAction::Partial(k)) if cmd.id == KVM_TDX_INIT_MEM_REGION => {
                self.line.fault = Some(f.to_string());
                match KvmTdxInitMemRegion::read_from_bytes(&data) {
                    Ok(mut reg) if reg.nr_pages > k => {
                        let total = reg.nr_pages;
                        reg.nr_pages = k;
                        let mut part = reg.as_bytes().to_vec();
                        let r = tv.tdx_ioctl(&mut cmd, &mut part, &self.pm);
                        match KvmTdxInitMemRegion::read_from_bytes(&part) {
                            Ok(mut done) => {
                                done.nr_pages += total - k;
                                data.copy_from_slice(done.as_bytes());
                                r.and(Err(EAGAIN))
                            }
                            Err(_) => Err(EFAULT),
                        }
                    }
                    _ => tv.tdx_ioctl(&mut cmd, &mut data, &self.pm),
                }
            }
            Some(f) => {
                self.line.fault = Some(f.to_string());
                tdx_fault(f, &mut cmd).unwrap_or(Err(EAGAIN))
            }
            None => tv.tdx_ioctl(&mut cmd, &mut data, &self.pm),
        };
        drop(sim);
        self.finish_tdx(arg, &cmd, data_ok, &original, &data, r)
    }

    fn run(&mut self, vm: &ServedVm, vcpu: &ServedVcpu) -> Answer {
        if run::immediate_exit(&vcpu.page) {
            return Answer::Error(EINTR);
        }
        let mut sim = lock(&vcpu.sim);
        let (ret, npages) = run::reply(&vcpu.page);
        sim.take_reply(ret, npages);
        {
            let mut loaded = lock(&vcpu.loaded);
            if !*loaded && self.sh.default_program {
                *loaded = true;
                let ops = default_program(vm, sim.id());
                sim.load_program(ops);
            }
        }
        if self.sh.default_program && sim.is_idle() {
            // Nothing to run (an AP the stand-in guest never starts): KVM_RUN blocks, as for
            // a vCPU waiting for INIT-SIPI, until the VMM kicks it (`immediate_exit`), the
            // VM is destroyed or the caller dies.
            drop(sim);
            return self.block(vm, vcpu);
        }
        let unregistered = unregistered_ram(vm);
        let before = sim.outcomes().len();
        let r = match sim.run() {
            Ok(exit) => {
                let errno = run::encode(&vcpu.page, &exit);
                self.line.note = Some(match &unregistered {
                    Some(w) => format!("exit {exit:?}; {w}"),
                    None => format!("exit {exit:?}"),
                });
                errno.map_or(Answer::Value(0), Answer::Error)
            }
            Err(e) => Answer::Error(e.errno().unwrap_or(EIO)),
        };
        for o in &sim.outcomes()[before..] {
            if let GuestOutcome::SnpReport {
                report: None,
                exitinfo2,
                rsp_status,
                ..
            } = o
            {
                let note = format!(
                    "; the guest's report request failed (SW_EXITINFO2 {exitinfo2:?}, response status {rsp_status:?})"
                );
                self.line
                    .note
                    .get_or_insert_with(String::new)
                    .push_str(&note);
            }
            match o {
                GuestOutcome::SnpReport {
                    report: Some(r), ..
                } => lock(&self.sh.reports).push(r.clone()),
                GuestOutcome::TdReport(r) => lock(&self.sh.reports).push(r.clone()),
                _ => {}
            }
        }
        r
    }
}

impl Call<'_> {
    fn block(&mut self, vm: &ServedVm, vcpu: &ServedVcpu) -> Answer {
        self.line.note = Some("blocked: nothing to run".into());
        loop {
            std::thread::sleep(std::time::Duration::from_millis(2));
            if run::immediate_exit(&vcpu.page) || self.signal_pending(vcpu) {
                return Answer::Error(EINTR);
            }
            if !lock(&self.sh.vms).contains_key(&vm.key) {
                return Answer::Error(EIO);
            }
            if !sys::id_valid(self.listener, self.n.id) {
                return Answer::Error(EINTR);
            }
        }
    }
}

/// For an SEV or SEV-ES guest, a warning naming the guest RAM that was never registered with
/// `KVM_MEMORY_ENCRYPT_REG_REGION`: the kernel does not keep those encrypted pages pinned
/// while the guest runs, so they may move under it.
fn unregistered_ram(vm: &ServedVm) -> Option<String> {
    let ModelVm::Amd(m) = &vm.model else {
        return None;
    };
    if !matches!(vm.vm_type, VmType::Sev | VmType::SevEs) {
        return None;
    }
    let regions = m.registered_regions();
    let covered = |uaddr: u64, size: u64| {
        regions
            .iter()
            .any(|r| uaddr >= r.addr && uaddr + size <= r.addr.saturating_add(r.size))
    };
    let missing: Vec<String> = lock(&vm.mem)
        .slots
        .iter()
        .filter(|&&(_, size, uaddr)| !covered(uaddr, size))
        .map(|&(gpa, size, _)| format!("{gpa:#x}+{size:#x}"))
        .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "warning: guest RAM {} not registered with KVM_MEMORY_ENCRYPT_REG_REGION (not pinned while the guest runs)",
            missing.join(", ")
        )
    })
}

/// What a vCPU of an external program runs when nobody loaded a program: vCPU 0 converts
/// the top three pages of the largest RAM range to shared (a page-state change the VMM
/// completes), asks for its attestation report there (SNP report with a one-page certificate
/// buffer and the two message pages, or a TDREPORT through GetQuote) and powers the machine
/// off; SEV and SEV-ES guests power off at once; other vCPUs wait (they are never started by
/// the stand-in guest, as APs wait for their INIT-SIPI).
fn default_program(vm: &ServedVm, id: u32) -> Vec<GuestOp> {
    let mut report_data = [0u8; 64];
    report_data[..16].copy_from_slice(b"kvm-coco simhost");
    let shared = lock(&vm.mem).largest_ram().and_then(|(start, size)| {
        let top = start.checked_add(size)? & !(PAGE - 1);
        top.checked_sub(3 * PAGE).filter(|b| *b >= start)
    });
    match (vm.vm_type, id, shared) {
        (VmType::Snp, 0, Some(p)) => vec![
            GuestOp::MapGpa {
                gpa: p,
                npages: 3,
                private: false,
            },
            GuestOp::SnpReport {
                report_data,
                certs_gpa: p,
                npages: 1,
            },
            GuestOp::PowerOff,
        ],
        (VmType::Tdx, 0, Some(p)) => vec![
            GuestOp::MapGpa {
                gpa: p,
                npages: 3,
                private: false,
            },
            GuestOp::GetQuote {
                gpa: p,
                size: 2 * PAGE,
                report_data,
            },
            GuestOp::PowerOff,
        ],
        (_, 0, _) => vec![GuestOp::PowerOff],
        _ => Vec::new(),
    }
}

/// Host-wide objects by identity.
pub(crate) type Objects = HashMap<Key, Obj>;
