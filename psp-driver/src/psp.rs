//! Serialized command submission (the kernel's `sev_do_cmd()` / `sev_cmd_mutex`).

use crate::sync::{Mutex, MutexGuard};
use crate::{Command, SevCmd, SevRetCode, Transport};
use nix::errno::Errno;
use std::fmt;
use std::sync::PoisonError;

/// A failed firmware command: which command, the firmware status and the OS error if any.
///
/// ```
/// use psp_driver::{PspError, SevCmd, SevRetCode};
///
/// let err = PspError {
///     cmd: SevCmd::SnpLaunchUpdate,
///     status: SevRetCode::InvalidPageState,
///     errno: None,
/// };
/// assert!(err.to_string().starts_with(
///     "SNP_LAUNCH_UPDATE failed: firmware status INVALID_PAGE_STATE (0x1A)"
/// ));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PspError {
    /// The command that failed.
    pub cmd: SevCmd,
    /// The firmware status ([`SevRetCode::NoFwCall`] if the firmware never ran).
    pub status: SevRetCode,
    /// The OS-level error, if any (`EIO` accompanies a firmware error on real hosts).
    pub errno: Option<Errno>,
}

impl PspError {
    /// Whether the firmware itself rejected the command (as opposed to an OS-level failure).
    pub const fn is_firmware_error(&self) -> bool {
        !matches!(self.status, SevRetCode::Success | SevRetCode::NoFwCall)
    }

    /// A short hint a person can act on, for the statuses and errors where one is known.
    pub fn hint(&self) -> Option<&'static str> {
        let from_status = match self.status {
            SevRetCode::DfflushRequired => Some(
                "the ASID was deactivated and not flushed yet: WBINVD on all CPUs, then DF_FLUSH",
            ),
            SevRetCode::WbinvdRequired => Some(
                "a DEACTIVATE happened after the last WBINVD: flush under the exclusive ASID lock",
            ),
            SevRetCode::InvalidGuestState => {
                Some("the guest is in the wrong state for this command (check the launch order)")
            }
            SevRetCode::InvalidPlatformState => {
                Some("the platform is in the wrong state for this command (INIT or SHUTDOWN first)")
            }
            SevRetCode::InvalidPageState => {
                Some("the page is not in the RMP state this command needs")
            }
            SevRetCode::AsidOwned => Some("the ASID is bound to another guest"),
            SevRetCode::Inactive => Some("the guest has no ASID: ACTIVATE it first"),
            SevRetCode::Active => Some("the guest is still bound to an ASID: DEACTIVATE it first"),
            SevRetCode::PolicyFailure => Some("the guest policy forbids this command"),
            SevRetCode::InvalidLen => {
                Some("a buffer is too small; the firmware wrote the needed length back")
            }
            SevRetCode::InvalidAsid => Some("the ASID is outside the range for this guest type"),
            _ => None,
        };
        from_status.or(match self.errno {
            Some(Errno::ENODEV) => Some("no PSP with SEV firmware on this host"),
            Some(Errno::ETIMEDOUT) => Some("the PSP did not answer; it is unusable until reset"),
            Some(Errno::EBUSY) => Some("the PSP is busy or marked dead after an earlier timeout"),
            _ => None,
        })
    }
}

impl fmt::Display for PspError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.status, self.errno) {
            (SevRetCode::NoFwCall | SevRetCode::Success, Some(errno)) => write!(
                f,
                "{} failed before reaching the firmware: {:?} ({})",
                self.cmd,
                errno,
                errno.desc()
            )?,
            (status, None | Some(Errno::EIO)) => {
                write!(f, "{} failed: firmware status {status}", self.cmd)?
            }
            (status, Some(errno)) => write!(
                f,
                "{} failed: {errno:?}, firmware status {status}",
                self.cmd
            )?,
        }
        if let Some(hint) = self.hint() {
            write!(f, "; {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PspError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.errno {
            Some(errno) if !matches!(errno, Errno::EIO) => Some(errno),
            _ => None,
        }
    }
}

/// A PSP: a [`Transport`] plus the guarantee that only one command is in flight at a time.
///
/// This is the kernel's `sev_do_cmd()`: one mutex (`sev_cmd_mutex`) serializes every
/// firmware command, system-wide. Share a `Psp` between threads with an `Arc` (it is
/// `Sync`); [`issue`](Psp::issue) blocks while another command is in flight.
///
/// `T` defaults to `Box<dyn Transport>`; any `Transport` works (`Psp<MyTransport>` avoids
/// the dynamic dispatch).
///
/// ```
/// use psp_driver::{Completion, Psp, SevCmd, SevDataActivate, Transport};
///
/// #[derive(Debug)]
/// struct Accept;
/// impl Transport for Accept {
///     fn submit(&self, _cmd: SevCmd, _buf: &mut [u8]) -> Completion {
///         Completion::SUCCESS
///     }
/// }
///
/// let psp = Psp::new(Accept);
/// let mut activate = SevDataActivate { handle: 1, asid: 5 };
/// psp.issue(&mut activate)?; // ACTIVATE, 8-byte buffer
/// psp.issue(&mut psp_driver::DfFlush)?; // DF_FLUSH, no buffer
/// # Ok::<(), psp_driver::PspError>(())
/// ```
pub struct Psp<T: Transport = Box<dyn Transport>> {
    cmd_mutex: Mutex<()>,
    transport: T,
}

impl<T: Transport> fmt::Debug for Psp<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Psp")
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

impl<T: Transport> Psp<T> {
    /// Wraps a transport.
    pub fn new(transport: T) -> Self {
        Psp {
            cmd_mutex: Mutex::new(()),
            transport,
        }
    }

    /// The transport, e.g. to inspect a software firmware's state. Calling its
    /// [`submit`](Transport::submit) directly bypasses the serialization.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// Unwraps the transport.
    pub fn into_inner(self) -> T {
        self.transport
    }

    /// Issues one typed command and waits for it; the buffer receives the firmware's
    /// output, also on failure.
    ///
    /// # Errors
    /// A [`PspError`] carrying the command, the firmware status and the OS error if any.
    pub fn issue<C: Command>(&self, buf: &mut C) -> Result<(), PspError> {
        self.lock().issue(buf)
    }

    /// Issues a command from raw bytes (for commands without a typed buffer here).
    ///
    /// # Errors
    /// `EINVAL` (status [`SevRetCode::NoFwCall`]) without calling the firmware when the kernel
    /// knows a buffer length for `cmd` and `buf` has another length; otherwise as
    /// [`issue`](Psp::issue).
    pub fn issue_raw(&self, cmd: SevCmd, buf: &mut [u8]) -> Result<(), PspError> {
        self.lock().issue_raw(cmd, buf)
    }

    /// Takes the command mutex and keeps it until the guard is dropped, so several commands
    /// run back to back with nothing in between (the `/dev/sev` ioctl path does this for
    /// INIT + command + SHUTDOWN).
    pub fn lock(&self) -> PspGuard<'_, T> {
        PspGuard {
            _guard: self
                .cmd_mutex
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
            transport: &self.transport,
        }
    }
}

/// Exclusive access to a [`Psp`]'s mailbox, from [`Psp::lock`]. Dropping it lets the next
/// command in.
#[must_use = "the mailbox is released as soon as the guard is dropped"]
pub struct PspGuard<'a, T: Transport> {
    _guard: MutexGuard<'a, ()>,
    transport: &'a T,
}

impl<T: Transport> fmt::Debug for PspGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PspGuard")
            .field("transport", self.transport)
            .finish()
    }
}

impl<T: Transport> PspGuard<'_, T> {
    /// As [`Psp::issue`], within this critical section.
    ///
    /// # Errors
    /// See [`Psp::issue`].
    pub fn issue<C: Command>(&mut self, buf: &mut C) -> Result<(), PspError> {
        complete(C::CMD, self.transport.submit(C::CMD, buf.as_mut_bytes()))
    }

    /// As [`Psp::issue_raw`], within this critical section.
    ///
    /// # Errors
    /// See [`Psp::issue_raw`].
    pub fn issue_raw(&mut self, cmd: SevCmd, buf: &mut [u8]) -> Result<(), PspError> {
        if let Some(len) = cmd.buffer_len()
            && len != buf.len()
        {
            return Err(PspError {
                cmd,
                status: SevRetCode::NoFwCall,
                errno: Some(Errno::EINVAL),
            });
        }
        complete(cmd, self.transport.submit(cmd, buf))
    }
}

#[inline]
fn complete(cmd: SevCmd, done: crate::Completion) -> Result<(), PspError> {
    if done.is_success() {
        Ok(())
    } else {
        Err(PspError {
            cmd,
            status: done.status,
            errno: done.errno,
        })
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::{Completion, DfFlush, SevDataPekCsr, SevDataSnpActivate};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Records calls; answers PEK_CSR like the firmware's length query (writes the
    /// needed length back and fails with INVALID_LEN).
    #[derive(Debug, Default)]
    struct Recorder {
        calls: AtomicUsize,
        in_flight: AtomicUsize,
        overlaps: AtomicUsize,
    }

    impl Transport for Recorder {
        fn submit(&self, cmd: SevCmd, buf: &mut [u8]) -> Completion {
            if self.in_flight.fetch_add(1, Ordering::SeqCst) != 0 {
                self.overlaps.fetch_add(1, Ordering::SeqCst);
            }
            self.calls.fetch_add(1, Ordering::SeqCst);
            std::thread::yield_now();
            let done = match cmd {
                SevCmd::PekCsr => {
                    if let Some(len) = buf.get_mut(8..12) {
                        len.copy_from_slice(&2048u32.to_le_bytes());
                    }
                    Completion::firmware(SevRetCode::InvalidLen)
                }
                SevCmd::DfFlush if !buf.is_empty() => Completion::os(Errno::EINVAL),
                SevCmd::Shutdown => Completion::os(Errno::ETIMEDOUT),
                _ => Completion::SUCCESS,
            };
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            done
        }
    }

    #[test]
    fn output_is_copied_back_even_on_failure() {
        let psp = Psp::new(Recorder::default());
        let mut csr = SevDataPekCsr::default();
        let err = psp.issue(&mut csr).unwrap_err();
        assert_eq!(
            (err.cmd, err.status, err.errno),
            (SevCmd::PekCsr, SevRetCode::InvalidLen, None)
        );
        assert_eq!({ csr.len }, 2048);
        assert!(err.is_firmware_error());
        assert_eq!(
            err.to_string(),
            "PEK_CSR failed: firmware status INVALID_LEN (0x04); \
             a buffer is too small; the firmware wrote the needed length back"
        );
    }

    #[test]
    fn buffer_less_commands_get_an_empty_buffer() {
        let psp = Psp::new(Recorder::default());
        psp.issue(&mut DfFlush).unwrap();
        let err = psp.issue(&mut crate::Shutdown).unwrap_err();
        assert!(!err.is_firmware_error());
        assert_eq!(
            err.to_string(),
            "SHUTDOWN failed before reaching the firmware: ETIMEDOUT (Connection timed out); \
             the PSP did not answer; it is unusable until reset"
        );
        assert!(std::error::Error::source(&err).is_some());
    }

    #[test]
    fn raw_lengths_are_checked_before_the_firmware() {
        let psp = Psp::new(Recorder::default());
        let mut short = [0u8; 7];
        let err = psp.issue_raw(SevCmd::Activate, &mut short).unwrap_err();
        assert_eq!(
            (err.status, err.errno),
            (SevRetCode::NoFwCall, Some(Errno::EINVAL))
        );
        assert_eq!(psp.transport().calls.load(Ordering::SeqCst), 0);
        let mut ok = [0u8; 8];
        psp.issue_raw(SevCmd::Activate, &mut ok).unwrap();
        // Commands without a known length pass through.
        psp.issue_raw(SevCmd::SnpPageSetState, &mut [0u8; 3])
            .unwrap();
        assert_eq!(psp.transport().calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn one_command_in_flight() {
        let psp = Arc::new(Psp::new(Recorder::default()));
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let psp = psp.clone();
                std::thread::spawn(move || {
                    for i in 0..500 {
                        let mut buf = SevDataSnpActivate {
                            gctx_paddr: i << 12,
                            asid: t,
                        };
                        psp.issue(&mut buf).unwrap();
                    }
                    // Back-to-back commands under one guard.
                    let mut guard = psp.lock();
                    guard.issue(&mut DfFlush).unwrap();
                    guard.issue_raw(SevCmd::DfFlush, &mut []).unwrap();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let rec = psp.transport();
        assert_eq!(rec.calls.load(Ordering::SeqCst), 8 * 502);
        assert_eq!(rec.overlaps.load(Ordering::SeqCst), 0);
    }
}
