//! The system calls the software host is made of: the seccomp user-notification filter and
//! its listener, reading and writing another process's memory, memfds and the shared
//! `kvm_run` mapping. This is the only module of the software host with `unsafe` code; each
//! block is one system call (or one access to a mapping this module made) and says why it is
//! sound.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;

use psp_driver::sim::mem::{MemBacking, MemError};

use crate::error::Errno;
use crate::sim::sev::USER_ADDRESS_SPACE;
use crate::sim::user::UserMemory;

/// `SEV_ISSUE_CMD` (`_IOWR('S', 0x0, struct sev_issue_cmd)`).
pub(crate) const SEV_ISSUE_CMD: u32 = kvm_coco_uapi::sev_dev::SEV_ISSUE_CMD;
/// `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV` (Linux 5.19): once the supervisor has received a
/// call, only a fatal signal interrupts the caller's wait. Without it a signal (a VMM kicking
/// its vCPU threads) restarts a call the model already carried out, and a launch command
/// would run twice.
const SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV: libc::c_ulong = 1 << 5;
/// The ioctl type byte of every KVM ioctl.
const KVMIO: u32 = 0xAE;
/// `AUDIT_ARCH_X86_64`.
const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;

fn last_errno() -> Errno {
    Errno::from_raw(
        io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO),
    )
}

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// The classic-BPF program: `openat`, `open` and the ioctls of type `KVMIO` plus
/// `SEV_ISSUE_CMD` go to the supervisor; everything else runs as usual.
fn program() -> Vec<libc::sock_filter> {
    use libc::{
        BPF_ABS, BPF_ALU, BPF_AND, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_RSH, BPF_W,
        SECCOMP_RET_ALLOW, SECCOMP_RET_USER_NOTIF,
    };
    let ld = (BPF_LD | BPF_W | BPF_ABS) as u16;
    let jeq = (BPF_JMP | BPF_JEQ | BPF_K) as u16;
    let ret = (BPF_RET | BPF_K) as u16;
    // seccomp_data: nr @0, arch @4, instruction_pointer @8, args[6] @16 (args[1] low word @24).
    vec![
        /* 0 */ stmt(ld, 4),
        /* 1 */ jump(jeq, AUDIT_ARCH_X86_64, 1, 0),
        /* 2 */ stmt(ret, SECCOMP_RET_ALLOW),
        /* 3 */ stmt(ld, 0),
        /* 4 */ jump(jeq, libc::SYS_openat as u32, 9, 0),
        /* 5 */ jump(jeq, libc::SYS_open as u32, 8, 0),
        /* 6 */ jump(jeq, libc::SYS_ioctl as u32, 1, 0),
        /* 7 */ stmt(ret, SECCOMP_RET_ALLOW),
        /* 8 */ stmt(ld, 24),
        /* 9 */ jump(jeq, SEV_ISSUE_CMD, 4, 0),
        /* 10 */ stmt((BPF_ALU | BPF_RSH | BPF_K) as u16, 8),
        /* 11 */ stmt((BPF_ALU | BPF_AND | BPF_K) as u16, 0xff),
        /* 12 */ jump(jeq, KVMIO, 1, 0),
        /* 13 */ stmt(ret, SECCOMP_RET_ALLOW),
        /* 14 */ stmt(ret, SECCOMP_RET_USER_NOTIF),
    ]
}

/// Installs the filter on the calling thread (and so on every thread it creates afterwards)
/// and returns the listener.
///
/// # Errors
/// The errno of `prctl` or `seccomp` (`EINVAL` on a kernel without user notification,
/// `EBUSY` if the thread already has a listener-creating filter, `EACCES` without
/// `no_new_privs` or `CAP_SYS_ADMIN`).
pub(crate) fn install_filter() -> Result<OwnedFd, Errno> {
    let prog = program();
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr().cast_mut(),
    };
    // SAFETY: PR_SET_NO_NEW_PRIVS takes plain integers and touches no memory of ours.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(last_errno());
    }
    // SAFETY: `fprog` points to `prog`, both alive for the call; the kernel copies the
    // program. The flag asks for a listener fd as the return value, which we own.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
            &raw const fprog,
        )
    };
    if fd < 0 {
        return Err(last_errno());
    }
    // SAFETY: the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// One intercepted system call.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Notif {
    /// The notification id (valid until answered or the caller dies).
    pub id: u64,
    /// The calling thread's id.
    pub pid: i32,
    /// The system call number.
    pub nr: i64,
    /// Its raw arguments.
    pub args: [u64; 6],
}

/// Receives the next notification (blocks until one is pending).
///
/// # Errors
/// `ENOENT` if the caller died before it was received; other errnos of the ioctl.
pub(crate) fn recv(listener: &OwnedFd) -> Result<Notif, Errno> {
    // SAFETY: `seccomp_notif` is plain data; all-zero is the required input.
    let mut n: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    // SAFETY: the ioctl writes one `seccomp_notif` into `n`, which we own.
    let r = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_RECV as _,
            &raw mut n,
        )
    };
    if r < 0 {
        return Err(last_errno());
    }
    Ok(Notif {
        id: n.id,
        pid: n.pid as i32,
        nr: i64::from(n.data.nr),
        args: n.data.args,
    })
}

/// How a served call ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Returns `val`.
    Value(i64),
    /// Fails with the errno.
    Error(Errno),
    /// Not ours: the real system call runs.
    Continue,
}

/// Answers notification `id`.
///
/// # Errors
/// `ENOENT` if the caller is gone (or was interrupted): nothing to do.
pub(crate) fn respond(listener: &OwnedFd, id: u64, answer: Answer) -> Result<(), Errno> {
    let (val, error, flags) = match answer {
        Answer::Value(v) => (v, 0, 0),
        Answer::Error(e) => (0, -e.raw(), 0),
        Answer::Continue => (0, 0, libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32),
    };
    let mut resp = libc::seccomp_notif_resp {
        id,
        val,
        error,
        flags,
    };
    // SAFETY: the ioctl reads one `seccomp_notif_resp` from `resp`, alive for the call.
    let r = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_SEND as _,
            &raw mut resp,
        )
    };
    if r < 0 { Err(last_errno()) } else { Ok(()) }
}

/// Installs a copy of `fd` in the caller of notification `id` and completes its system
/// call with the new fd number (`SECCOMP_ADDFD_FLAG_SEND`).
///
/// # Errors
/// The ioctl's errno (`ENOENT` if the caller is gone, `EMFILE` at its fd limit).
pub(crate) fn addfd_send(
    listener: &OwnedFd,
    id: u64,
    fd: &OwnedFd,
    cloexec: bool,
) -> Result<i32, Errno> {
    let mut a = libc::seccomp_notif_addfd {
        id,
        flags: libc::SECCOMP_ADDFD_FLAG_SEND as u32,
        srcfd: fd.as_raw_fd() as u32,
        newfd: 0,
        newfd_flags: if cloexec { libc::O_CLOEXEC as u32 } else { 0 },
    };
    // SAFETY: the ioctl reads one `seccomp_notif_addfd` from `a`; `srcfd` is an fd we own,
    // alive for the call (the kernel takes its own reference).
    let r = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_ADDFD as _,
            &raw mut a,
        )
    };
    if r < 0 { Err(last_errno()) } else { Ok(r) }
}

/// `SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP` (Linux 6.6): the caller and the supervisor hand the
/// CPU to each other on every call and answer instead of waking across CPUs, which cuts the
/// round trip when the CPUs are otherwise idle.
const SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP: u64 = 1;

/// Asks for synchronous wake-ups on `listener` (a no-op on kernels without it).
pub(crate) fn sync_wake_up(listener: &OwnedFd) {
    let flags = SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP;
    // SAFETY: SECCOMP_IOCTL_NOTIF_SET_FLAGS takes the flags as a plain integer argument and
    // touches no memory of ours.
    let _ = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_SET_FLAGS as _,
            flags,
        )
    };
}

/// Whether notification `id` is still pending (its caller alive and waiting).
pub(crate) fn id_valid(listener: &OwnedFd, id: u64) -> bool {
    let mut id = id;
    // SAFETY: the ioctl reads one `u64` from `id`, alive for the call.
    unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_ID_VALID as _,
            &raw mut id,
        ) == 0
    }
}

/// A new memfd of `len` bytes named `name` (close-on-exec in this process).
///
/// # Errors
/// The errno of `memfd_create` or `ftruncate`.
pub(crate) fn memfd(name: &str, len: u64) -> Result<OwnedFd, Errno> {
    let cname = CString::new(name).map_err(|_| Errno::from_raw(libc::EINVAL))?;
    // SAFETY: `cname` is a NUL-terminated string alive for the call; the result is a new fd.
    let fd = unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(last_errno());
    }
    // SAFETY: the kernel returned a new fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let len = i64::try_from(len).map_err(|_| Errno::from_raw(libc::EINVAL))?;
    // SAFETY: plain integer arguments on an fd we own.
    if unsafe { libc::ftruncate(fd.as_raw_fd(), len) } != 0 {
        return Err(last_errno());
    }
    Ok(fd)
}

/// A connected pair of Unix stream sockets (close-on-exec): one end is handed out as a VM
/// fd, the other tells when the last copy of the first is closed (it hangs up).
///
/// # Errors
/// The errno of `socketpair`.
pub(crate) fn socketpair() -> Result<(OwnedFd, OwnedFd), Errno> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: the kernel writes two fds into `fds`, which we own.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if r != 0 {
        return Err(last_errno());
    }
    // SAFETY: both are new fds that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// An eventfd (close-on-exec, non-blocking) to wake the supervisor's poll.
///
/// # Errors
/// The errno of `eventfd`.
pub(crate) fn eventfd() -> Result<OwnedFd, Errno> {
    // SAFETY: plain integer arguments; the result is a new fd.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(last_errno());
    }
    // SAFETY: a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Signals an eventfd.
pub(crate) fn eventfd_signal(fd: &OwnedFd) {
    let one = 1u64.to_ne_bytes();
    // SAFETY: writes 8 bytes from `one`, alive for the call.
    let _ = unsafe { libc::write(fd.as_raw_fd(), one.as_ptr().cast(), 8) };
}

/// Drains an eventfd.
pub(crate) fn eventfd_drain(fd: &OwnedFd) {
    let mut v = [0u8; 8];
    // SAFETY: reads at most 8 bytes into `v`, which we own.
    let _ = unsafe { libc::read(fd.as_raw_fd(), v.as_mut_ptr().cast(), 8) };
}

/// `poll` over `fds` (each `(fd, events)`) for at most `timeout_ms`; returns the `revents`.
pub(crate) fn poll(fds: &[(RawFd, i16)], timeout_ms: i32) -> Vec<i16> {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|&(fd, events)| libc::pollfd {
            fd,
            events,
            revents: 0,
        })
        .collect();
    // SAFETY: `p` holds `p.len()` initialized pollfds the kernel updates in place.
    let r = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, timeout_ms) };
    if r <= 0 {
        return vec![0; fds.len()];
    }
    p.iter().map(|x| x.revents).collect()
}

/// Sends `fd` over the Unix socket `sock` (`SCM_RIGHTS`) with one byte of data.
///
/// # Errors
/// The errno of `sendmsg`.
pub(crate) fn send_fd(sock: RawFd, fd: RawFd) -> Result<(), Errno> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut cbuf = [0u64; 4];
    // SAFETY: `msghdr` is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE is a pure size computation.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(size_of::<RawFd>() as u32) } as usize;
    // SAFETY: `msg` describes `cbuf`, which is large enough for one fd's control message
    // (32 bytes >= CMSG_SPACE(4) = 24), so CMSG_FIRSTHDR is non-null and the header and
    // data pointers stay inside `cbuf`.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&raw const msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(size_of::<RawFd>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<RawFd>(), fd);
    }
    // SAFETY: `msg` points to `iov`/`byte` and `cbuf`, all alive for the call.
    let r = unsafe { libc::sendmsg(sock, &raw const msg, 0) };
    if r < 0 { Err(last_errno()) } else { Ok(()) }
}

/// Receives one fd sent by [`send_fd`].
///
/// # Errors
/// The errno of `recvmsg`; `EBADMSG` if no fd came with the message.
pub(crate) fn recv_fd(sock: RawFd) -> Result<OwnedFd, Errno> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut cbuf = [0u64; 4];
    // SAFETY: `msghdr` is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = size_of_val(&cbuf);
    // SAFETY: `msg` points to buffers we own, alive for the call.
    let r = unsafe { libc::recvmsg(sock, &raw mut msg, libc::MSG_CMSG_CLOEXEC) };
    if r < 0 {
        return Err(last_errno());
    }
    // SAFETY: the kernel filled `msg` and `cbuf`; CMSG_FIRSTHDR reads only inside them and
    // returns null when there is no control message.
    let fd = unsafe {
        let c = libc::CMSG_FIRSTHDR(&raw const msg);
        if c.is_null() || (*c).cmsg_type != libc::SCM_RIGHTS {
            return Err(Errno::from_raw(libc::EBADMSG));
        }
        std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<RawFd>())
    };
    // SAFETY: SCM_RIGHTS installed a new fd in this process that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Another process's (or this process's) memory, read and written with
/// `process_vm_readv` / `process_vm_writev`: `EFAULT` for an unmapped byte, as
/// `copy_from_user` gives.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ProcessMemory {
    pid: i32,
}

impl ProcessMemory {
    /// The memory of the process (or thread) `pid`.
    pub(crate) fn new(pid: i32) -> Self {
        Self { pid }
    }

    /// Copies `buf.len()` bytes from `addr`.
    pub(crate) fn read_at(&self, addr: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let mut done = 0usize;
        while done < buf.len() {
            let local = libc::iovec {
                iov_base: buf[done..].as_mut_ptr().cast(),
                iov_len: buf.len() - done,
            };
            let remote = libc::iovec {
                iov_base: (addr as usize).wrapping_add(done) as *mut libc::c_void,
                iov_len: buf.len() - done,
            };
            // SAFETY: `local` describes the unfilled tail of `buf`, which we own; `remote` is
            // only dereferenced by the kernel, in the other address space, with its checks.
            let n = unsafe { libc::process_vm_readv(self.pid, &local, 1, &remote, 1, 0) };
            if n <= 0 {
                return Err(Errno::from_raw(libc::EFAULT));
            }
            done += n as usize;
        }
        Ok(())
    }

    /// Copies `data` to `addr`.
    pub(crate) fn write_at(&self, addr: u64, data: &[u8]) -> Result<(), Errno> {
        let mut done = 0usize;
        while done < data.len() {
            let local = libc::iovec {
                iov_base: data[done..].as_ptr().cast_mut().cast(),
                iov_len: data.len() - done,
            };
            let remote = libc::iovec {
                iov_base: (addr as usize).wrapping_add(done) as *mut libc::c_void,
                iov_len: data.len() - done,
            };
            // SAFETY: `local` describes the unwritten tail of `data`, only read; `remote` is
            // only dereferenced by the kernel, in the other address space, with its checks.
            let n = unsafe { libc::process_vm_writev(self.pid, &local, 1, &remote, 1, 0) };
            if n <= 0 {
                return Err(Errno::from_raw(libc::EFAULT));
            }
            done += n as usize;
        }
        Ok(())
    }

    /// Reads a NUL-terminated path of at most `PATH_MAX` bytes at `addr`.
    pub(crate) fn read_path(&self, addr: u64) -> Result<Vec<u8>, Errno> {
        let mut out = Vec::new();
        let mut chunk = [0u8; 256];
        let mut a = addr;
        while out.len() < libc::PATH_MAX as usize {
            // Stay inside the page of `a`, so a path ending just before an unmapped page
            // reads without faulting.
            let room = (4096 - (a & 4095)) as usize;
            let n = room.min(chunk.len());
            self.read_at(a, &mut chunk[..n])?;
            if let Some(end) = chunk[..n].iter().position(|&b| b == 0) {
                out.extend_from_slice(&chunk[..end]);
                return Ok(out);
            }
            out.extend_from_slice(&chunk[..n]);
            a += n as u64;
        }
        Err(Errno::from_raw(libc::ENAMETOOLONG))
    }
}

impl UserMemory for ProcessMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), Errno> {
        self.read_at(addr, buf)
    }

    fn write(&self, addr: u64, data: &[u8]) -> Result<(), Errno> {
        self.write_at(addr, data)
    }
}

impl MemBacking for ProcessMemory {
    fn len(&self) -> usize {
        USER_ADDRESS_SPACE as usize
    }

    /// Never used: the address space is not one host buffer; every access goes through
    /// [`with_range_mut`](MemBacking::with_range_mut).
    fn with_mut(&self, _f: &mut dyn FnMut(&mut [u8])) {}

    fn read_range(&self, off: usize, buf: &mut [u8]) -> Result<(), MemError> {
        self.read_at(off as u64, buf)
            .map_err(|_| MemError::InvalidRange {
                pa: off as u64,
                len: buf.len() as u64,
            })
    }

    fn write_range(&self, off: usize, data: &[u8]) -> Result<(), MemError> {
        self.write_at(off as u64, data)
            .map_err(|_| MemError::InvalidRange {
                pa: off as u64,
                len: data.len() as u64,
            })
    }

    fn with_range_mut(
        &self,
        off: usize,
        len: usize,
        f: &mut dyn FnMut(&mut [u8]),
    ) -> Result<(), MemError> {
        let bad = MemError::InvalidRange {
            pa: off as u64,
            len: len as u64,
        };
        let mut buf = vec![0u8; len];
        self.read_at(off as u64, &mut buf)
            .map_err(|_| bad.clone())?;
        let before = buf.clone();
        f(&mut buf);
        if buf != before {
            self.write_at(off as u64, &buf).map_err(|_| bad)?;
        }
        Ok(())
    }
}

/// A shared mapping of a vCPU's memfd: the `kvm_run` page the VMM maps too. Accessed with
/// volatile copies only, since the VMM's process may touch it concurrently.
#[derive(Debug)]
pub(crate) struct RunPage {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory owned by this value; every access is a volatile
// byte copy, so sharing it between threads cannot create a Rust-level data race on a typed
// value.
unsafe impl Send for RunPage {}
// SAFETY: as above.
unsafe impl Sync for RunPage {}

impl RunPage {
    /// Maps the first `len` bytes of `fd` shared, read-write.
    ///
    /// # Errors
    /// The errno of `mmap`.
    pub(crate) fn map(fd: &OwnedFd, len: usize) -> Result<Self, Errno> {
        // SAFETY: a new shared mapping of an fd we own; no existing memory is affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(last_errno());
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or(Errno::from_raw(libc::ENOMEM))?;
        Ok(Self { ptr, len })
    }

    /// Copies `buf.len()` bytes at offset `off` out of the page (nothing past its end).
    pub(crate) fn read(&self, off: usize, buf: &mut [u8]) {
        for (i, b) in buf.iter_mut().enumerate() {
            let o = off + i;
            *b = if o < self.len {
                // SAFETY: `o < len`, inside the live mapping; volatile, byte-sized.
                unsafe { self.ptr.as_ptr().add(o).read_volatile() }
            } else {
                0
            };
        }
    }

    /// Copies `data` into the page at offset `off` (nothing past its end).
    pub(crate) fn write(&self, off: usize, data: &[u8]) {
        for (i, &b) in data.iter().enumerate() {
            let o = off + i;
            if o < self.len {
                // SAFETY: `o < len`, inside the live, writable mapping; volatile, byte-sized.
                unsafe { self.ptr.as_ptr().add(o).write_volatile(b) };
            }
        }
    }
}

impl Drop for RunPage {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping `map` made, which nothing else references.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}
