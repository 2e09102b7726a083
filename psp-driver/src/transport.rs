//! The firmware mailbox seen as a transport.

use crate::{SevCmd, SevRetCode};
use nix::errno::Errno;
use std::sync::Arc;

/// How one firmware command ended: the firmware status, plus an OS-level error if the
/// command failed outside the firmware.
///
/// This mirrors what the kernel's `__sev_do_cmd_locked()` reports: `status` is the
/// mailbox status (`*psp_ret`), `errno` the function's negative return (as a positive
/// [`Errno`]). On real hardware a non-zero status comes with `EIO`; a transport may leave
/// `errno` as `None` in that case, [`Psp`](crate::Psp) treats any non-success status as a
/// failure either way. An OS-level failure before the firmware ran (no device: `ENODEV`;
/// the PSP timed out earlier: `EBUSY`; a timeout: `ETIMEDOUT`) carries a status of
/// [`SevRetCode::NoFwCall`] or whatever the transport saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub struct Completion {
    /// The firmware status of the command.
    pub status: SevRetCode,
    /// The OS-level error, if any.
    pub errno: Option<Errno>,
}

impl Completion {
    /// The command succeeded.
    pub const SUCCESS: Completion = Completion {
        status: SevRetCode::Success,
        errno: None,
    };

    /// The firmware ran the command and returned `status` (no OS-level error).
    pub const fn firmware(status: SevRetCode) -> Completion {
        Completion {
            status,
            errno: None,
        }
    }

    /// The command failed at the OS level before reaching the firmware.
    pub const fn os(errno: Errno) -> Completion {
        Completion {
            status: SevRetCode::NoFwCall,
            errno: Some(errno),
        }
    }

    /// Whether the command succeeded: status SUCCESS and no OS-level error.
    pub const fn is_success(&self) -> bool {
        self.errno.is_none() && matches!(self.status, SevRetCode::Success)
    }
}

/// A PSP firmware mailbox: something that executes one firmware command at a time.
///
/// Implementations: the software firmware (feature `sim`), test doubles, or a bridge to a
/// real PSP. A userspace process on Linux cannot reach the mailbox directly (the kernel's
/// ccp driver owns it); `/dev/sev` platform commands go through
/// [`DevSev`](crate::DevSev) instead.
///
/// A transport does **not** need to serialize commands itself: [`Psp`](crate::Psp)
/// guarantees that `submit` is never called concurrently, like the kernel's
/// `sev_cmd_mutex`. It must be `Send + Sync` so a `Psp` can be shared between threads.
///
/// ```
/// use psp_driver::{Completion, SevCmd, SevRetCode, Transport};
///
/// /// Accepts every command and reports success, touching nothing.
/// #[derive(Debug)]
/// struct Accept;
///
/// impl Transport for Accept {
///     fn submit(&self, _cmd: SevCmd, _buf: &mut [u8]) -> Completion {
///         Completion::SUCCESS
///     }
/// }
///
/// let mut buf = [0u8; 8];
/// assert!(Accept.submit(SevCmd::Activate, &mut buf).is_success());
/// ```
pub trait Transport: Send + Sync + core::fmt::Debug {
    /// Issues one firmware command.
    ///
    /// `buf` is the command buffer: exactly [`SevCmd::buffer_len`] bytes for the commands
    /// the kernel knows, empty for buffer-less commands (DF_FLUSH, SNP_DF_FLUSH, PEK_GEN,
    /// ...). The transport updates it in place with the firmware's output **even when the
    /// command fails**, like the PSP mailbox (the kernel copies the buffer back in every
    /// case; length queries such as PEK_CSR rely on it).
    fn submit(&self, cmd: SevCmd, buf: &mut [u8]) -> Completion;
}

impl<T: Transport + ?Sized> Transport for Box<T> {
    fn submit(&self, cmd: SevCmd, buf: &mut [u8]) -> Completion {
        (**self).submit(cmd, buf)
    }
}

impl<T: Transport + ?Sized> Transport for Arc<T> {
    fn submit(&self, cmd: SevCmd, buf: &mut [u8]) -> Completion {
        (**self).submit(cmd, buf)
    }
}

impl<T: Transport + ?Sized> Transport for &T {
    fn submit(&self, cmd: SevCmd, buf: &mut [u8]) -> Completion {
        (**self).submit(cmd, buf)
    }
}
