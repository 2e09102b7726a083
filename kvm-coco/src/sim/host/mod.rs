//! The software host: the models of KVM (`svm/sev.c`, `vmx/tdx.c`), the PSP firmware and the
//! TDX module answering a process's own `/dev/kvm` and `/dev/sev` system calls, so that the
//! code that runs on real hardware — [`KvmBackend`](crate::launch::KvmBackend), the
//! [`ops`](crate::ops) wrappers, psp-driver's `DevSev`, or another VMM altogether — runs
//! unchanged on any Linux machine.
//!
//! It works at the system-call boundary with seccomp user notification: a filter on the
//! served threads sends `openat`/`open` and the KVM and `SEV_ISSUE_CMD` ioctls to a
//! supervisor, which answers the calls that are its own and lets every other call run in the
//! real kernel (`SECCOMP_USER_NOTIF_FLAG_CONTINUE`). No library is preloaded, so statically
//! linked VMMs are served too.
//!
//! What the VMM sees:
//!
//! - `/dev/sev` opens (a file of the host's) and `SEV_ISSUE_CMD` reaches the software
//!   firmware with the ccp driver's checks; `/dev/kvm` opens even on a machine without KVM
//!   (then a stand-in answers the system ioctls).
//! - `KVM_CHECK_EXTENSION(KVM_CAP_VM_TYPES)` adds the served types; `KVM_GET_DEVICE_ATTR` in
//!   `KVM_X86_GRP_SEV` answers; `KVM_CREATE_VM` of a served type returns a VM fd whose every
//!   ioctl, and those of its vCPUs and guest_memfds, the model answers. A default VM is
//!   created by the real KVM, untouched.
//! - Argument structs are read and written through the caller's pointers (`EFAULT` for a bad
//!   one), the caller's memory is encrypted and measured in place, results (`error`,
//!   progress, length probes, corrected CPUID pages) are written back as the kernel does.
//! - `KVM_RUN` runs the model's guest program ([`GuestOp`]) and writes real `kvm_run` exits
//!   into the page the VMM mapped; the VMM answers them as on hardware.
//! - A VM is destroyed (its ASID released) when the last copy of its VM fd is closed; its
//!   vCPU and guest_memfd fds then answer nothing more.
//!
//! ```no_run
//! use kvm_coco::Kvm;
//! use kvm_coco::sim::host::SoftwareHost;
//! use kvm_coco::VmType;
//!
//! let host = SoftwareHost::builder().seed(7).start()?;
//! host.serve_current_thread()?;
//! // From here on this thread (and the threads it creates) sees an SNP-capable KVM.
//! let kvm = Kvm::open()?;
//! assert!(kvm.supported_vm_types().contains(VmType::Snp));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Reading an argument and then letting the real call run is racy against the caller's
//! other threads: the software host is a test host, never a security boundary.

mod devsev;
mod faults;
mod run;
mod serve;
mod sys;
mod trace;

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;

pub use faults::{FaultAction, FaultPlan, FaultRule, FaultSpecError, FaultWhen};

use self::serve::{Key, Obj, Objects, ServedVm, lock};
use self::sys::Notif;
use self::trace::Trace;
use crate::error::Errno;
use crate::sim::guest::{GuestOp, GuestOutcome};
use crate::sim::sev::{SimSevConfig, SimSevHost};
use crate::sim::tdx::{SimTdxModule, TdxModuleConfig};
use crate::sim::workers::Workers;
use crate::vm_type::{VmType, VmTypes};
use psp_driver::AsidClass;

/// Errors of the software host.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// seccomp user notification cannot be used here.
    #[error(
        "the software host needs seccomp user notification (Linux >= 5.14 with SECCOMP_ADDFD_FLAG_SEND), which this system refuses: {errno}"
    )]
    Unsupported {
        /// The errno of the failed `seccomp` call.
        errno: Errno,
    },
    /// The host's own set-up failed (a system call of the supervisor).
    #[error("software host set-up failed at {what}: {errno}")]
    Setup {
        /// The step.
        what: &'static str,
        /// Its errno.
        errno: Errno,
    },
    /// The trace file cannot be created.
    #[error("cannot create the trace file {path}: {source}")]
    Trace {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The fd is not a vCPU fd the host handed out.
    #[error("fd {fd} is not a vCPU of the software host")]
    NotAVcpu {
        /// The fd.
        fd: RawFd,
    },
    /// Starting the program failed.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Configures and starts a [`SoftwareHost`].
#[derive(Debug)]
pub struct SoftwareHostBuilder {
    served: VmTypes,
    seed: u64,
    faults: FaultPlan,
    trace: Option<PathBuf>,
    default_program: bool,
    workers: usize,
}

impl Default for SoftwareHostBuilder {
    fn default() -> Self {
        Self {
            served: [VmType::Sev, VmType::SevEs, VmType::Snp, VmType::Tdx]
                .into_iter()
                .collect(),
            seed: 0,
            faults: FaultPlan::none(),
            trace: None,
            default_program: false,
            workers: 16,
        }
    }
}

impl SoftwareHostBuilder {
    /// Serves only these VM types (default: SEV, SEV-ES, SNP and TDX). Non-confidential types
    /// are ignored: they always go to the real KVM.
    pub fn serve(mut self, types: impl IntoIterator<Item = VmType>) -> Self {
        self.served = types.into_iter().filter(|t| t.is_confidential()).collect();
        self
    }

    /// The seed of the firmware identities, keys and the fault plan's draws (default 0).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Faults to inject ([`FaultPlan`]).
    pub fn faults(mut self, plan: FaultPlan) -> Self {
        self.faults = plan;
        self
    }

    /// Writes a JSON line per served call to `path` ([module docs](self) of `trace`).
    pub fn trace(mut self, path: impl AsRef<Path>) -> Self {
        self.trace = Some(path.as_ref().to_path_buf());
        self
    }

    /// vCPUs that nobody loaded a guest program into run the default one (vCPU 0 asks for
    /// its attestation report, then terminates): for unmodified external programs.
    pub fn default_guest_program(mut self, on: bool) -> Self {
        self.default_program = on;
        self
    }

    /// Starts the supervisor. It serves nothing until a thread asks
    /// ([`serve_current_thread`](SoftwareHost::serve_current_thread)) or a program is
    /// started under it ([`spawn`](SoftwareHost::spawn)).
    ///
    /// # Errors
    /// [`HostError::Trace`] or [`HostError::Setup`].
    pub fn start(self) -> Result<SoftwareHost, HostError> {
        prime_malloc_heap_shrink();
        let trace = match &self.trace {
            Some(p) => Some(Trace::create(p).map_err(|source| HostError::Trace {
                path: p.clone(),
                source,
            })?),
            None => None,
        };
        self.faults.seed(self.seed);
        let real_kvm = std::fs::metadata("/dev/kvm").is_ok();
        let real = kvm_ioctls::Kvm::new().ok();
        let (real_vm_types, vcpu_mmap_size) = match &real {
            Some(k) => {
                let types = k.check_extension_raw(u64::from(kvm_coco_uapi::KVM_CAP_VM_TYPES));
                let size = k.get_vcpu_mmap_size().unwrap_or(3 * 4096);
                (if types > 0 { types as u64 } else { 1 }, size)
            }
            None => (0, 3 * 4096),
        };
        let setup = |what| move |errno| HostError::Setup { what, errno };
        let wake = sys::eventfd().map_err(setup("eventfd"))?;
        // The seed goes into the first 8 bytes of each model's default seed (firmware identity
        // and keys, TDX module MAC key and quoting key), the way `vmm-cli report --sim-chain
        // --seed` rebuilds the simulated chains.
        let mut tdx_cfg = TdxModuleConfig::default();
        tdx_cfg.seed[..8].copy_from_slice(&self.seed.to_le_bytes());
        let shared = Arc::new(Shared {
            served: self.served,
            seed: self.seed,
            faults: self.faults,
            trace,
            default_program: self.default_program,
            real_kvm,
            real,
            real_vm_types,
            vcpu_mmap_size,
            amd: OnceLock::new(),
            tdx: Arc::new(Mutex::new(SimTdxModule::new(tdx_cfg))),
            objects: Mutex::new(HashMap::new()),
            vms: Mutex::new(HashMap::new()),
            files: Mutex::new(HashMap::new()),
            reports: Mutex::new(Vec::new()),
            incoming: Mutex::new(Vec::new()),
            wake,
            stop: AtomicBool::new(false),
            served_calls: AtomicU64::new(0),
            vms_created: AtomicU64::new(0),
            vms_destroyed: AtomicU64::new(0),
            vm_models: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            listeners: AtomicU64::new(0),
        });
        let s = shared.clone();
        let workers = self.workers.max(1);
        let manager = std::thread::Builder::new()
            .name("kvm-coco-simhost".into())
            .spawn(move || manager(&s, workers))
            .map_err(|e| HostError::Setup {
                what: "supervisor thread",
                errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EAGAIN)),
            })?;
        Ok(SoftwareHost {
            shared,
            manager: Some(manager),
        })
    }
}

/// The AMD model of the host, made on first use over the served process's memory.
pub(crate) struct AmdState {
    host: Arc<SimSevHost>,
    /// The model's own `/dev/sev` fd, which a caller's served `/dev/sev` maps to.
    dev_sev_fd: i32,
    /// A model fd that is open but not `/dev/sev` (for a caller's other files).
    other_fd: i32,
}

/// What the supervisor threads share.
pub(crate) struct Shared {
    served: VmTypes,
    seed: u64,
    faults: FaultPlan,
    trace: Option<Trace>,
    default_program: bool,
    real_kvm: bool,
    /// The supervisor's own handle on the real `/dev/kvm`, for the generic capabilities.
    real: Option<kvm_ioctls::Kvm>,
    real_vm_types: u64,
    vcpu_mmap_size: usize,
    amd: OnceLock<AmdState>,
    tdx: Arc<Mutex<SimTdxModule>>,
    objects: Mutex<Objects>,
    vms: Mutex<HashMap<Key, Arc<ServedVm>>>,
    /// Files other than VMs (`/dev/sev`, a stand-in `/dev/kvm`): the host's end of each
    /// one's socket pair, which hangs up when the caller's last copy is closed.
    files: Mutex<HashMap<Key, OwnedFd>>,
    reports: Mutex<Vec<Vec<u8>>>,
    /// Listeners waiting to be polled: the listener and the process it serves.
    incoming: Mutex<Vec<(Arc<OwnedFd>, i32)>>,
    wake: OwnedFd,
    stop: AtomicBool,
    served_calls: AtomicU64,
    vms_created: AtomicU64,
    vms_destroyed: AtomicU64,
    /// Served VMs not yet dropped, in the map or not: a destroyed VM's model is dropped by
    /// the last holder of its `Arc`, which may be a worker finishing a call.
    vm_models: Arc<std::sync::atomic::AtomicUsize>,
    listeners: AtomicU64,
}

impl Shared {
    fn serves_amd(&self) -> bool {
        [VmType::Sev, VmType::SevEs, VmType::Snp]
            .into_iter()
            .any(|t| self.served.contains(t))
    }

    /// The AMD model; made at the first served listener's registration.
    fn amd_state(&self) -> &AmdState {
        self.amd
            .get_or_init(|| self.make_amd(std::process::id() as i32))
    }

    fn make_amd(&self, pid: i32) -> AmdState {
        let mut cfg = SimSevConfig::default();
        cfg.firmware.seed[..8].copy_from_slice(&self.seed.to_le_bytes());
        let mem: Arc<dyn psp_driver::sim::mem::MemBacking> = Arc::new(sys::ProcessMemory::new(pid));
        // Cannot fail: the configuration's ASID space is the firmware default's.
        let host = SimSevHost::over_process(cfg.clone(), mem)
            .or_else(|_| SimSevHost::new(cfg))
            .expect("the default SEV configuration describes a host");
        let dev_sev_fd = host.open_dev_sev();
        let other_fd = host.open_other();
        AmdState {
            host,
            dev_sev_fd,
            other_fd,
        }
    }

    fn amd(&self) -> &Arc<SimSevHost> {
        &self.amd_state().host
    }

    fn amd_if_served(&self) -> Option<&Arc<SimSevHost>> {
        self.serves_amd().then(|| self.amd())
    }

    /// `KVM_CHECK_EXTENSION` for a capability the model does not define: the real KVM's
    /// answer where there is one, else the capabilities a launch needs.
    fn system_cap(&self, cap: u32) -> i64 {
        use kvm_coco_uapi::*;
        if let Some(k) = &self.real
            && cap != KVM_CAP_VM_TYPES
        {
            return i64::from(k.check_extension_raw(u64::from(cap)));
        }
        match cap {
            KVM_CAP_VM_TYPES => self.served.iter().fold(0, |t, v| t | 1 << v.abi_value()),
            KVM_CAP_USER_MEMORY2 | KVM_CAP_GUEST_MEMFD | KVM_CAP_MEMORY_FAULT_INFO => 1,
            KVM_CAP_EXIT_HYPERCALL => 1 << kvm_coco_uapi::KVM_HC_MAP_GPA_RANGE,
            c if c == kvm_bindings::KVM_CAP_USER_MEMORY
                || c == kvm_bindings::KVM_CAP_SPLIT_IRQCHIP
                || c == kvm_bindings::KVM_CAP_IMMEDIATE_EXIT =>
            {
                1
            }
            c if c == kvm_bindings::KVM_CAP_NR_MEMSLOTS => 509,
            c if c == kvm_bindings::KVM_CAP_MAX_VCPUS || c == kvm_bindings::KVM_CAP_NR_VCPUS => {
                4096
            }
            _ => 0,
        }
    }

    fn wake(&self) {
        sys::eventfd_signal(&self.wake);
    }

    /// Destroys a VM: its files stop answering, the model VM is dropped (the kernel's
    /// `kvm_destroy_vm`: ASID released, pages reclaimed).
    fn destroy_vm(&self, key: Key) {
        let Some(vm) = lock(&self.vms).remove(&key) else {
            return;
        };
        let mut objects = lock(&self.objects);
        objects.remove(&key);
        for k in lock(&vm.files).drain(..) {
            objects.remove(&k);
        }
        drop(objects);
        lock(&vm.vcpus).clear();
        self.vms_destroyed.fetch_add(1, Ordering::Relaxed);
    }
}

/// glibc's malloc reads `/proc/sys/vm/overcommit_memory` the first time it shrinks the heap
/// of a thread arena, while it holds that arena's lock, and remembers the answer. Were that
/// first read an `openat` of a served thread, the supervisor would have to answer it while
/// any allocation or free of its own on that arena waits for the same lock: a deadlock.
/// Shrinking a thread arena's heap once, before anything is served, makes glibc take the
/// answer then. (Other C libraries do not read files in `free`; this is then harmless.)
fn prime_malloc_heap_shrink() {
    let shrink = || {
        // Chunks below the mmap threshold come from the arena's heap; freed last to first
        // they merge into its top, which is then trimmed.
        let chunks: Vec<Vec<u8>> = (0..24).map(|i| vec![i as u8; 96 << 10]).collect();
        for c in chunks.into_iter().rev() {
            std::hint::black_box(&c);
            drop(c);
        }
    };
    // A new thread's first allocation makes it a thread arena of its own.
    let _ = std::thread::Builder::new()
        .name("kvm-coco-malloc-prime".into())
        .spawn(shrink)
        .map(std::thread::JoinHandle::join);
    shrink();
}

type Job = (Arc<OwnedFd>, Notif, i32);

/// Whether a call may take long (a guest run, a firmware command): it goes to a worker, so
/// the supervisor keeps answering other threads' calls meanwhile. Everything else is
/// answered on the supervisor thread itself, which saves a thread switch per call.
fn is_slow(n: &Notif) -> bool {
    n.nr == libc::SYS_ioctl
        && matches!(
            n.args[1] as u32,
            kvm_coco_uapi::KVM_RUN | kvm_coco_uapi::KVM_MEMORY_ENCRYPT_OP | sys::SEV_ISSUE_CMD
        )
}

/// The supervisor: polls the listeners, the VMs' hang-up sockets and the wake eventfd;
/// answers quick calls itself and hands slow ones to the workers.
fn manager(sh: &Arc<Shared>, workers: usize) {
    let served = sh.clone();
    let pool = Workers::start(
        "kvm-coco-simhost",
        workers,
        move |(listener, n, pid): Job| {
            served.serve(&listener, n, pid);
        },
    );
    let mut listeners: Vec<(Arc<OwnedFd>, i32)> = Vec::new();
    while !sh.stop.load(Ordering::Relaxed) {
        listeners.extend(lock(&sh.incoming).drain(..));
        let vms: Vec<(Key, RawFd)> = lock(&sh.vms)
            .iter()
            .map(|(k, v)| (*k, v.hangup.as_raw_fd()))
            .chain(lock(&sh.files).iter().map(|(k, f)| (*k, f.as_raw_fd())))
            .collect();
        let mut fds = vec![(sh.wake.as_raw_fd(), libc::POLLIN)];
        fds.extend(listeners.iter().map(|(l, _)| (l.as_raw_fd(), libc::POLLIN)));
        fds.extend(vms.iter().map(|&(_, fd)| (fd, libc::POLLIN)));
        let rev = sys::poll(&fds, 1000);
        if rev[0] != 0 {
            sys::eventfd_drain(&sh.wake);
        }
        // Hang-ups first: a VMM that closed a VM and then creates the next one finds the
        // first destroyed (its ASID free), as the kernel destroys a VM at the last close.
        for (j, &(key, _)) in vms.iter().enumerate() {
            let idx = fds.len() - vms.len() + j;
            if rev[idx] & (libc::POLLHUP | libc::POLLIN | libc::POLLERR) != 0 {
                sh.destroy_vm(key);
                if lock(&sh.files).remove(&key).is_some() {
                    lock(&sh.objects).remove(&key);
                }
            }
        }
        let mut gone = Vec::new();
        for (i, (l, pid)) in listeners.iter().enumerate() {
            let r = rev[1 + i];
            if r & libc::POLLIN != 0 {
                match sys::recv(l) {
                    // Without a worker thread, slow calls are answered here too.
                    Ok(n) => match &pool {
                        Some(p) if is_slow(&n) => p.send((l.clone(), n, *pid)),
                        _ => sh.serve(l, n, *pid),
                    },
                    Err(e) if e.raw() == libc::ENOENT || e.raw() == libc::EINTR => {}
                    Err(_) => gone.push(i),
                }
            } else if r & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
                // Every thread the filter served has exited.
                gone.push(i);
            }
        }
        for i in gone.into_iter().rev() {
            listeners.swap_remove(i);
            sh.listeners.fetch_sub(1, Ordering::Relaxed);
        }
    }
    drop(pool);
}

/// A running software host; see the [module docs](self).
///
/// Dropping it stops the supervisor; threads still filtered afterwards get `ENOSYS` from the
/// intercepted calls, so drop it only after the served threads are done.
#[derive(Debug)]
pub struct SoftwareHost {
    shared: Arc<Shared>,
    manager: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("served", &self.served)
            .field("seed", &self.seed)
            .finish_non_exhaustive()
    }
}

/// Counts a leak check compares before and after.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostStats {
    /// Calls served (answered by the model, not passed on).
    pub served_calls: u64,
    /// VMs created.
    pub vms_created: u64,
    /// VMs destroyed.
    pub vms_destroyed: u64,
    /// VMs alive.
    pub vms_alive: usize,
    /// Files handed out and still tracked (VM, vCPU, guest_memfd, `/dev/sev`, stand-ins).
    pub files_tracked: usize,
    /// ASIDs bound to a guest in the AMD model (not free, not awaiting a flush).
    pub asids_in_use: usize,
    /// Listeners (served threads or programs) still connected.
    pub listeners: u64,
}

impl SoftwareHost {
    /// A builder with the defaults: SEV, SEV-ES, SNP and TDX served, seed 0, no faults, no
    /// trace.
    pub fn builder() -> SoftwareHostBuilder {
        SoftwareHostBuilder::default()
    }

    /// Whether seccomp user notification works for this process: `Ok` or the one-line reason.
    ///
    /// # Errors
    /// [`HostError::Unsupported`].
    pub fn probe() -> Result<(), HostError> {
        // A filter is per thread and cannot be removed: probe on a throw-away thread.
        std::thread::spawn(|| sys::install_filter().map(drop))
            .join()
            .unwrap_or(Err(Errno::from_raw(libc::EINVAL)))
            .map_err(|errno| HostError::Unsupported { errno })
    }

    fn add_listener(&self, listener: OwnedFd, pid: i32) {
        sys::sync_wake_up(&listener);
        let sh = &self.shared;
        if sh.serves_amd() {
            let _ = sh.amd.get_or_init(|| sh.make_amd(pid));
        }
        sh.listeners.fetch_add(1, Ordering::Relaxed);
        lock(&sh.incoming).push((Arc::new(listener), pid));
        sh.wake();
    }

    /// Serves the calling thread and every thread it creates from now on. A thread cannot be
    /// un-served: keep the host alive while it runs.
    ///
    /// # Errors
    /// [`HostError::Unsupported`] where seccomp user notification is refused.
    pub fn serve_current_thread(&self) -> Result<(), HostError> {
        let listener = sys::install_filter().map_err(|errno| HostError::Unsupported { errno })?;
        self.add_listener(listener, std::process::id() as i32);
        Ok(())
    }

    /// Starts `cmd` as a program served by the host: every thread of the process it starts,
    /// also after that process `exec`s another program (`sh -c 'exec …'`).
    ///
    /// Processes it forks inherit the filter but are not served: the host reads and writes
    /// the memory of the process it started, and the AMD model's view of user memory is
    /// that one address space, so a forked child's confidential-VM calls would see the
    /// wrong memory. Run the VMM as the started process (or `exec` it).
    ///
    /// # Errors
    /// [`HostError::Spawn`] if the program cannot be started or the filter cannot be
    /// installed in it.
    pub fn spawn(&self, cmd: &mut Command) -> Result<Child, HostError> {
        use std::os::unix::process::CommandExt;
        let program = cmd.get_program().to_string_lossy().into_owned();
        let spawn_err = |source| HostError::Spawn {
            program: program.clone(),
            source,
        };
        let (ours, theirs) =
            sys::socketpair().map_err(|e| spawn_err(std::io::Error::from_raw_os_error(e.raw())))?;
        let theirs_fd = theirs.as_raw_fd();
        // SAFETY: the closure runs in the forked child before exec and only makes raw system
        // calls (prctl, seccomp, sendmsg, close) on fds it owns; the filter program is
        // built inside without touching locks held by other threads of the parent (the
        // allocator is fork-safe).
        unsafe {
            cmd.pre_exec(move || {
                let listener = sys::install_filter()
                    .map_err(|e| std::io::Error::from_raw_os_error(e.raw()))?;
                sys::send_fd(theirs_fd, listener.as_raw_fd())
                    .map_err(|e| std::io::Error::from_raw_os_error(e.raw()))?;
                drop(listener);
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(&spawn_err)?;
        drop(theirs);
        let listener = match sys::recv_fd(ours.as_raw_fd()) {
            Ok(l) => l,
            Err(e) => {
                // No listener came: the program died between fork and exec (a signal from
                // outside, say) and the socket closed unsent. It ran nothing and needs no
                // serving; its status is the caller's to collect, as for any program.
                let end = std::time::Instant::now() + std::time::Duration::from_secs(2);
                while std::time::Instant::now() < end {
                    if let Ok(Some(_)) = child.try_wait() {
                        return Ok(child);
                    }
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                return Err(spawn_err(std::io::Error::from_raw_os_error(e.raw())));
            }
        };
        self.add_listener(listener, child.id() as i32);
        Ok(child)
    }

    /// Loads guest operations into the vCPU behind `vcpu_fd` (a vCPU fd of this process the
    /// host handed out); they run at the next `KVM_RUN`s.
    ///
    /// # Errors
    /// [`HostError::NotAVcpu`].
    pub fn load_program(
        &self,
        vcpu_fd: &impl AsRawFd,
        ops: impl IntoIterator<Item = GuestOp>,
    ) -> Result<(), HostError> {
        let (_, vcpu) = self.vcpu(vcpu_fd)?;
        *lock(&vcpu.loaded) = true;
        lock(&vcpu.sim).load_program(ops);
        Ok(())
    }

    /// What the guest behind `vcpu_fd` observed so far.
    ///
    /// # Errors
    /// [`HostError::NotAVcpu`].
    pub fn outcomes(&self, vcpu_fd: &impl AsRawFd) -> Result<Vec<GuestOutcome>, HostError> {
        let (_, vcpu) = self.vcpu(vcpu_fd)?;
        Ok(lock(&vcpu.sim).outcomes().to_vec())
    }

    fn vcpu(
        &self,
        fd: &impl AsRawFd,
    ) -> Result<(Arc<ServedVm>, Arc<serve::ServedVcpu>), HostError> {
        let raw = fd.as_raw_fd();
        let m = std::fs::metadata(format!("/proc/self/fd/{raw}"))
            .map_err(|_| HostError::NotAVcpu { fd: raw })?;
        match lock(&self.shared.objects).get(&(m.dev(), m.ino())) {
            Some(Obj::Vcpu(vm, v)) => Ok((vm.clone(), v.clone())),
            _ => Err(HostError::NotAVcpu { fd: raw }),
        }
    }

    /// The attestation reports (SNP reports, TDREPORTs) guests obtained so far, in order.
    pub fn reports(&self) -> Vec<Vec<u8>> {
        lock(&self.shared.reports).clone()
    }

    /// The AMD model (firmware, ASIDs), once a served thread or program exists.
    pub fn sev_host(&self) -> Option<&Arc<SimSevHost>> {
        self.shared.amd.get().map(|a| &a.host)
    }

    /// The TDX module model.
    pub fn tdx_module(&self) -> &Arc<Mutex<SimTdxModule>> {
        &self.shared.tdx
    }

    /// Counts for leak checks.
    pub fn stats(&self) -> HostStats {
        let sh = &self.shared;
        HostStats {
            served_calls: sh.served_calls.load(Ordering::Relaxed),
            vms_created: sh.vms_created.load(Ordering::Relaxed),
            vms_destroyed: sh.vms_destroyed.load(Ordering::Relaxed),
            vms_alive: lock(&sh.vms).len(),
            files_tracked: lock(&sh.objects).len(),
            asids_in_use: self.sev_host().map_or(0, |h| {
                [AsidClass::Sev, AsidClass::SevEs]
                    .into_iter()
                    .map(|c| {
                        let (used, reclaim) = h.asids().usage(c);
                        used - reclaim
                    })
                    .sum()
            }),
            listeners: sh.listeners.load(Ordering::Relaxed),
        }
    }

    /// Waits (at most `timeout`) until every file whose last copy was closed has been
    /// forgotten and every such VM destroyed; returns whether the host is settled.
    pub fn settle(&self, timeout: std::time::Duration) -> bool {
        let end = std::time::Instant::now() + timeout;
        loop {
            self.shared.wake();
            std::thread::sleep(std::time::Duration::from_millis(5));
            let hung = |fd: RawFd| sys::poll(&[(fd, libc::POLLIN)], 0)[0] != 0;
            let hung: Vec<Key> = lock(&self.shared.vms)
                .iter()
                .filter(|(_, v)| hung(v.hangup.as_fd().as_raw_fd()))
                .map(|(k, _)| *k)
                .chain(
                    lock(&self.shared.files)
                        .iter()
                        .filter(|(_, f)| hung(f.as_raw_fd()))
                        .map(|(k, _)| *k),
                )
                .collect();
            // A destroyed VM leaves the map before its model is dropped: settled once every
            // model still counted is one of the map's (the count is read first, so a model
            // dropped late is never missed).
            if hung.is_empty()
                && self.shared.vm_models.load(Ordering::SeqCst) <= lock(&self.shared.vms).len()
            {
                return true;
            }
            if std::time::Instant::now() > end {
                return false;
            }
        }
    }
}

impl Drop for SoftwareHost {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.wake();
        if let Some(m) = self.manager.take() {
            let _ = m.join();
        }
    }
}
