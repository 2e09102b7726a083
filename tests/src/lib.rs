//! Shared helpers for the workspace integration tests.
//!
//! * [`kvm_or_skip`]: opens `/dev/kvm` or reports why the test is skipped
//!   ([`kvm_coco_test_skip::skip`]: fails where the dependencies are required, as in CI);
//! * [`Watchdog`]: bounds every `KVM_RUN` by kicking the vCPU thread with a signal;
//! * [`real_mode_guest`]: a VM with 1 MiB of memory and one vCPU in real mode at 0x1000
//!   ([`real_mode_vcpu`]: the memory and vCPU on a VM made by the caller);
//! * [`raw`]: independent probes that issue ioctls by number, without kvm-coco.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kvm_coco::{GuestMapping, Kvm, MemoryRegion, Vcpu, Vm, VmType};

/// Opens `/dev/kvm` for a real-KVM test, or reports a skip ([`kvm_coco_test_skip::skip`])
/// and returns `None` when KVM is missing, not permitted, not API version 12 or lacks user
/// memory.
pub fn kvm_or_skip() -> Option<Kvm> {
    let kvm = match Kvm::open() {
        Ok(kvm) => kvm,
        Err(e) => {
            kvm_coco_test_skip::skip(
                "/dev/kvm",
                format_args!(
                    "{e} ({})",
                    e.errno().map_or_else(String::new, |n| n.to_string())
                ),
            );
            return None;
        }
    };
    // KVM_CAP_USER_MEMORY = 3 (include/uapi/linux/kvm.h).
    if kvm.check_extension(3) <= 0 {
        kvm_coco_test_skip::skip("/dev/kvm", "KVM_CAP_USER_MEMORY is missing");
        return None;
    }
    Some(kvm)
}

/// The signal used to kick a vCPU thread out of `KVM_RUN`.
pub fn kick_signal() -> libc::c_int {
    libc::SIGRTMIN() + 4
}

extern "C" fn on_kick(_: libc::c_int) {}

fn install_kick_handler() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value; the handler is
        // an `extern "C"` function that does nothing, which is async-signal-safe. SA_RESTART
        // is deliberately not set, so an interrupted KVM_RUN returns EINTR.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_kick as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(kick_signal(), &sa, std::ptr::null_mut());
        }
    });
}

/// Kicks the thread that armed it with [`kick_signal`] every 10 ms once `timeout` has
/// passed, until dropped, so a hung `KVM_RUN` returns `EINTR` (seen as
/// `Exit::Interrupted`). [`Watchdog::fired`] tells whether it had to.
#[derive(Debug)]
pub struct Watchdog {
    stop: Arc<AtomicBool>,
    fired: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    /// Arms a watchdog for the calling thread.
    pub fn arm(timeout: Duration) -> Self {
        install_kick_handler();
        // SAFETY: pthread_self has no preconditions.
        let target = unsafe { libc::pthread_self() };
        let stop = Arc::new(AtomicBool::new(false));
        let fired = Arc::new(AtomicBool::new(false));
        let (s, f) = (Arc::clone(&stop), Arc::clone(&fired));
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + timeout;
            while !s.load(Ordering::Acquire) {
                if Instant::now() >= deadline {
                    f.store(true, Ordering::Release);
                    // SAFETY: `target` is the arming thread, which stays alive until it
                    // sets `stop` and joins this thread in `Drop`.
                    unsafe { libc::pthread_kill(target, kick_signal()) };
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Self {
            stop,
            fired,
            thread: Some(thread),
        }
    }

    /// Whether the timeout expired (and the thread was kicked).
    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::Acquire)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Guest code that writes `'A'` to port 0x3f8 and halts (real mode):
/// `mov dx, 0x3f8; mov al, 'A'; out dx, al; hlt`.
pub const OUT_HLT: [u8; 7] = [0xba, 0xf8, 0x03, 0xb0, b'A', 0xee, 0xf4];

/// A default VM with 1 MiB of memory at GPA 0 holding `code` at 0x1000, and vCPU 0 in real
/// mode (CS base 0) with RIP 0x1000.
pub fn real_mode_guest(kvm: &Kvm, code: &[u8]) -> kvm_coco::Result<(Vm, Vcpu, Arc<GuestMapping>)> {
    let vm = kvm.create_vm(VmType::Default)?;
    let (vcpu, mem) = real_mode_vcpu(&vm, code)?;
    Ok((vm, vcpu, mem))
}

/// On `vm`: 1 MiB of memory at GPA 0 holding `code` at 0x1000 (memory slot 0), and vCPU 0
/// in real mode (CS base 0) with RIP 0x1000. For VMs that need set-up before their first
/// vCPU (an in-kernel irqchip).
pub fn real_mode_vcpu(vm: &Vm, code: &[u8]) -> kvm_coco::Result<(Vcpu, Arc<GuestMapping>)> {
    let mem = Arc::new(GuestMapping::anonymous(0x10_0000)?);
    mem.write(0x1000, code)?;
    vm.set_memory_region(MemoryRegion::new(0, 0, Arc::clone(&mem)))?;
    let vcpu = vm.create_vcpu(0)?;
    let mut sregs = vcpu.sregs()?;
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    vcpu.set_sregs(&sregs)?;
    let mut regs = vcpu.regs()?;
    regs.rip = 0x1000;
    regs.rflags = 2;
    vcpu.set_regs(&regs)?;
    Ok((vcpu, mem))
}

/// Independent probes: ioctls issued by number with libc, numbers taken from the kernel
/// headers (facts linux-uapi §3.6, §5.1), not from kvm-coco or kvm-coco-uapi.
pub mod raw {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    /// `KVM_CHECK_EXTENSION` = `_IO(KVMIO, 0x03)`.
    pub const KVM_CHECK_EXTENSION: libc::c_ulong = 0xAE03;
    /// `KVM_GET_DEVICE_ATTR` = `_IOW(KVMIO, 0xe2, struct kvm_device_attr)`.
    pub const KVM_GET_DEVICE_ATTR: libc::c_ulong = 0x4018_AEE2;

    /// Opens `/dev/kvm` read-write; reports a skip ([`kvm_coco_test_skip::skip`]) and returns
    /// `None` if it cannot.
    pub fn open_kvm() -> Option<OwnedFd> {
        // SAFETY: a NUL-terminated path literal; the result is checked.
        let fd = unsafe { libc::open(c"/dev/kvm".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if fd < 0 {
            kvm_coco_test_skip::skip(
                "/dev/kvm",
                format_args!("open: {}", std::io::Error::last_os_error()),
            );
            return None;
        }
        // SAFETY: `fd` is a fresh descriptor owned by nobody else.
        Some(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// `KVM_CHECK_EXTENSION(cap)` on `fd`.
    pub fn check_extension(fd: &impl AsRawFd, cap: u32) -> i32 {
        // SAFETY: KVM_CHECK_EXTENSION takes an integer argument and dereferences nothing.
        unsafe {
            libc::ioctl(
                fd.as_raw_fd(),
                KVM_CHECK_EXTENSION,
                libc::c_ulong::from(cap),
            )
        }
    }

    /// `KVM_GET_DEVICE_ATTR(group, attr)` on `fd`: the u64 value or the errno.
    pub fn get_device_attr(fd: &impl AsRawFd, group: u32, attr: u64) -> Result<u64, i32> {
        let mut value = 0u64;
        // struct kvm_device_attr { u32 flags; u32 group; u64 attr; u64 addr; } (24 bytes).
        let mut a = [0u64; 3];
        a[0] = u64::from(group) << 32;
        a[1] = attr;
        a[2] = std::ptr::addr_of_mut!(value) as u64;
        // SAFETY: `a` is laid out as struct kvm_device_attr (flags 0 in the low half of the
        // first word on little-endian x86-64, group in the high half); the kernel writes
        // one u64 to `addr`, which points to `value`, alive for the call.
        let r = unsafe { libc::ioctl(fd.as_raw_fd(), KVM_GET_DEVICE_ATTR, a.as_mut_ptr()) };
        if r < 0 {
            Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
        } else {
            Ok(value)
        }
    }
}
