//! The software host's decoding of served ioctl arguments, fed as raw bytes behind the
//! pointer: real `ioctl(2)` calls on a thread the software host serves, on the fds it hands
//! out (`/dev/kvm`, a confidential VM of each type, a vCPU, `/dev/sev`), with fuzzed
//! request choices and fuzzed argument bytes. The host must answer every call (a value or
//! an errno) and never crash or hang.
//!
//! Input: `[vm type][setup flags]` then calls of
//! `[target][request][sub-command lo][sub-command hi][ptr patch][len lo][len hi][bytes…]`.
//! Argument buffers live in one mapping followed by a `PROT_NONE` guard, so an argument
//! that names a length past its buffer makes the host's copy fault (`EFAULT`) instead of
//! touching other memory of this process; fuzzed values that point into other memory of
//! this process are moved into the guard ([`Arena::confine`]).
#![no_main]

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;

use kvm_coco::sim::host::SoftwareHost;
use kvm_coco_uapi as u;
use libfuzzer_sys::fuzz_target;

const KVMIO: u32 = 0xAE;
/// `KVM_GET_REGS`, `KVM_SET_REGS` (`struct kvm_regs`, 144 bytes), `KVM_GET_SREGS`,
/// `KVM_SET_SREGS` (`struct kvm_sregs`, 312 bytes).
const KVM_GET_REGS: u32 = u::ior(KVMIO, 0x81, 144);
const KVM_SET_REGS: u32 = u::iow(KVMIO, 0x82, 144);
const KVM_GET_SREGS: u32 = u::ior(KVMIO, 0x83, 312);
const KVM_SET_SREGS: u32 = u::iow(KVMIO, 0x84, 312);

/// Bytes of one argument buffer; two of them (the argument, and the payload a command's
/// `data` field points to) sit at the end of the readable part of the mapping.
const BUF: usize = 64 << 10;
const GUARD: usize = 16 << 20;

struct Arena {
    base: *mut u8,
}

// SAFETY: the arena is only used by the fuzzing thread; the static needs Sync.
unsafe impl Sync for Arena {}
// SAFETY: as above.
unsafe impl Send for Arena {}

impl Arena {
    fn new() -> Self {
        let len = 2 * BUF + GUARD;
        // SAFETY: a fresh anonymous mapping; nothing else is affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        // SAFETY: the first 2·BUF bytes of the mapping just made become read-write; the
        // guard after them stays PROT_NONE.
        let r = unsafe { libc::mprotect(p, 2 * BUF, libc::PROT_READ | libc::PROT_WRITE) };
        assert_eq!(r, 0);
        Self { base: p.cast() }
    }
    /// The argument buffer (`i` = 0) or the payload buffer (`i` = 1), refilled: `bytes`,
    /// then zeros.
    fn fill(&self, i: usize, bytes: &[u8]) -> *mut u8 {
        let p = self.base.wrapping_add(i * BUF);
        let n = bytes.len().min(BUF);
        // SAFETY: `p..p + BUF` is inside the read-write part of the arena, which this
        // thread alone uses, and `bytes` is not in the arena.
        unsafe {
            std::ptr::write_bytes(p, 0, BUF);
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, n);
        }
        p
    }
    /// Replaces every 8-byte-aligned value in the first `len` bytes of buffer `i` that
    /// points into memory this process has mapped (`mapped`), other than the arena, with an
    /// address in the guard. The served calls write through the pointers in their arguments
    /// as the kernel does; a fuzzed pointer that happened to name this process's own memory
    /// (libFuzzer learns such values from the host's comparisons) would let a call
    /// overwrite the fuzzer itself. Inside the arena a pointer reaches the buffers; values
    /// that point nowhere stay as they are (the host answers `EFAULT`).
    fn confine(&self, i: usize, len: usize, mapped: &[(u64, u64)]) {
        let lo = self.base as u64;
        let hi = lo + (2 * BUF) as u64;
        let guard = hi + 4096;
        for off in (0..len.min(BUF)).step_by(8) {
            let p = self.base.wrapping_add(i * BUF + off);
            // SAFETY: inside the read-write part of the arena (`off + 8 <= BUF`, as BUF is
            // a multiple of 8).
            let v = unsafe { std::ptr::read_unaligned(p.cast::<u64>()) };
            let outside_arena = !(lo..hi).contains(&v);
            if outside_arena && mapped.iter().any(|&(a, b)| (a..b).contains(&v)) {
                self.write_u64(i, off, guard);
            }
        }
    }
    fn write_u64(&self, i: usize, off: usize, v: u64) {
        if off + 8 <= BUF {
            let p = self.base.wrapping_add(i * BUF + off);
            // SAFETY: inside the read-write part of the arena.
            unsafe { std::ptr::write_unaligned(p.cast::<u64>(), v) };
        }
    }
}

fn setup() -> &'static Arena {
    static ONCE: OnceLock<(SoftwareHost, Arena)> = OnceLock::new();
    let (host, arena) = ONCE.get_or_init(|| {
        let host = SoftwareHost::builder()
            .seed(3)
            .default_guest_program(false)
            .start()
            .expect("software host");
        (host, Arena::new())
    });
    let _ = host.serve_current_thread();
    arena
}

/// The address ranges this process has mapped now (`/proc/self/maps`).
fn mappings() -> Vec<(u64, u64)> {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (a, b) = l.split_whitespace().next()?.split_once('-')?;
            Some((
                u64::from_str_radix(a, 16).ok()?,
                u64::from_str_radix(b, 16).ok()?,
            ))
        })
        .collect()
}

fn ioctl(fd: RawFd, req: u32, arg: u64) -> i32 {
    // SAFETY: every argument handed to the served ioctls points into the arena (or is an
    // integer); the software host reads and writes it with process_vm_readv/writev, which
    // fault at the guard instead of touching other memory.
    unsafe { libc::ioctl(fd, req as _, arg) }
}

fn own(fd: i32) -> Option<OwnedFd> {
    // SAFETY: a non-negative result of a call that returns a new fd, owned by nobody else.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

fuzz_target!(|data: &[u8]| {
    let arena = setup();
    let Some((&[ty, flags], mut rest)) = data.split_first_chunk::<2>().map(|(a, b)| (a, b)) else {
        return;
    };
    let vm_type = [
        u::KVM_X86_SEV_VM,
        u::KVM_X86_SEV_ES_VM,
        u::KVM_X86_SNP_VM,
        u::KVM_X86_TDX_VM,
    ][usize::from(ty % 4)];
    let Ok(kvm) = File::options().read(true).write(true).open("/dev/kvm") else {
        return;
    };
    let Some(vm) = own(ioctl(kvm.as_raw_fd(), u::KVM_CREATE_VM, u64::from(vm_type))) else {
        return;
    };
    let sev = File::options().read(true).write(true).open("/dev/sev").ok();
    let sev_fd = sev.as_ref().map_or(-1, |f| f.as_raw_fd());
    let vcpu = if flags & 1 != 0 {
        own(ioctl(vm.as_raw_fd(), u::KVM_CREATE_VCPU, 0))
    } else {
        None
    };
    let gmem = if flags & 2 != 0 {
        let p = arena.fill(0, &[]);
        arena.write_u64(0, 0, 0x20_0000); // size
        own(ioctl(vm.as_raw_fd(), u::KVM_CREATE_GUEST_MEMFD, p as u64))
    } else {
        None
    };
    let gmem_fd = gmem.as_ref().map_or(-1, |f| f.as_raw_fd());
    let mut calls = 0;
    while let Some((&[target, req, sub_lo, sub_hi, patch, len_lo, len_hi], tail)) =
        rest.split_first_chunk::<7>()
    {
        if calls == 8 {
            break;
        }
        calls += 1;
        let len = usize::from(u16::from_le_bytes([len_lo, len_hi])).min(tail.len());
        let (bytes, next) = tail.split_at(len);
        rest = next;
        let sub = u32::from(u16::from_le_bytes([sub_lo, sub_hi]));
        // Payload: the fuzzed bytes, with an optional pointer into the payload buffer
        // itself (so `uaddr`-style fields can point somewhere readable) and an optional
        // guest_memfd / `/dev/sev` fd number patched in.
        let payload = arena.fill(1, bytes);
        let arg0 = arena.fill(0, bytes);
        let mapped = mappings();
        arena.confine(0, bytes.len(), &mapped);
        arena.confine(1, bytes.len(), &mapped);
        if patch & 0x80 != 0 {
            let off = usize::from(patch & 0x1f) * 8;
            arena.write_u64(1, off, payload as u64);
            arena.write_u64(0, off, payload as u64);
        }
        if patch & 0x40 != 0 {
            let off = usize::from((patch >> 2) & 0xf) * 4;
            arena.write_u64(0, off, gmem_fd as u32 as u64);
        }
        let (fd, request, arg) = match target % 4 {
            // /dev/kvm
            0 => {
                let r = [
                    u::KVM_CHECK_EXTENSION,
                    u::KVM_GET_DEVICE_ATTR,
                    u::KVM_HAS_DEVICE_ATTR,
                    u::KVM_GET_SUPPORTED_CPUID,
                    u::KVM_GET_VCPU_MMAP_SIZE,
                ][usize::from(req) % 5];
                let arg = if r == u::KVM_CHECK_EXTENSION {
                    u64::from(sub)
                } else {
                    arg0 as u64
                };
                (kvm.as_raw_fd(), r, arg)
            }
            // The VM.
            1 => {
                let r = [
                    u::KVM_MEMORY_ENCRYPT_OP,
                    u::KVM_MEMORY_ENCRYPT_REG_REGION,
                    u::KVM_MEMORY_ENCRYPT_UNREG_REGION,
                    u::KVM_SET_USER_MEMORY_REGION2,
                    u::KVM_SET_MEMORY_ATTRIBUTES,
                    u::KVM_CREATE_GUEST_MEMFD,
                    u::KVM_ENABLE_CAP,
                    u::KVM_CHECK_EXTENSION,
                    u::KVM_GET_DEVICE_ATTR,
                    u::KVM_HAS_DEVICE_ATTR,
                    u::KVM_SET_TSC_KHZ,
                    u::KVM_CREATE_VCPU,
                ][usize::from(req) % 12];
                let arg = match r {
                    u::KVM_MEMORY_ENCRYPT_OP => {
                        encrypt_op(arena, vm_type, sub, patch, payload, sev_fd)
                    }
                    u::KVM_CHECK_EXTENSION | u::KVM_SET_TSC_KHZ | u::KVM_CREATE_VCPU => {
                        u64::from(sub % 64)
                    }
                    _ => arg0 as u64,
                };
                (vm.as_raw_fd(), r, arg)
            }
            // The vCPU.
            2 => {
                let Some(v) = &vcpu else { continue };
                let r = [
                    u::KVM_MEMORY_ENCRYPT_OP,
                    u::KVM_SET_CPUID2,
                    KVM_GET_REGS,
                    KVM_SET_REGS,
                    KVM_GET_SREGS,
                    KVM_SET_SREGS,
                    u::KVM_PRE_FAULT_MEMORY,
                    u::KVM_SET_TSC_KHZ,
                ][usize::from(req) % 8];
                let arg = match r {
                    u::KVM_MEMORY_ENCRYPT_OP => {
                        encrypt_op(arena, vm_type, sub, patch, payload, sev_fd)
                    }
                    u::KVM_SET_TSC_KHZ => u64::from(sub),
                    _ => arg0 as u64,
                };
                (v.as_raw_fd(), r, arg)
            }
            // /dev/sev
            _ => {
                if sev_fd < 0 {
                    continue;
                }
                let cmd = u::SevIssueCmd {
                    cmd: sub % 32,
                    data: if patch & 0x20 != 0 { 0 } else { payload as u64 },
                    error: 0,
                };
                let p = arena.fill(0, zerocopy::IntoBytes::as_bytes(&cmd));
                (sev_fd, u::SEV_ISSUE_CMD, p as u64)
            }
        };
        let r = ioctl(fd, request, arg);
        // A served call returns a value or -1 with an errno; never anything else.
        assert!(r >= -1, "ioctl returned {r}");
        if r > 2 && matches!(request, u::KVM_CREATE_GUEST_MEMFD | u::KVM_CREATE_VCPU) {
            drop(own(r));
        }
    }
    drop((gmem, vcpu, vm, sev, kvm));
});

/// A `KVM_MEMORY_ENCRYPT_OP` argument for a VM of `vm_type`: `kvm_sev_cmd` or
/// `kvm_tdx_cmd` with the fuzzed sub-command and `data` pointing at the payload; returns
/// its address.
fn encrypt_op(
    arena: &Arena,
    vm_type: u32,
    sub: u32,
    patch: u8,
    payload: *mut u8,
    sev_fd: RawFd,
) -> u64 {
    let data = if patch & 0x20 != 0 { 0 } else { payload as u64 };
    let p = if vm_type == u::KVM_X86_TDX_VM {
        let cmd = u::KvmTdxCmd {
            id: sub % 8,
            flags: u32::from(patch & 1),
            data,
            hw_error: 0,
        };
        arena.fill(0, zerocopy::IntoBytes::as_bytes(&cmd))
    } else {
        let cmd = u::KvmSevCmd {
            id: sub % 32,
            pad0: 0,
            data,
            error: 0,
            sev_fd: if patch & 0x10 != 0 {
                u32::from(patch)
            } else {
                sev_fd as u32
            },
        };
        arena.fill(0, zerocopy::IntoBytes::as_bytes(&cmd))
    };
    p as u64
}
