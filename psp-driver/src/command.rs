//! Binding of command buffers to firmware command ids.

use crate::SevCmd;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

mod sealed {
    pub trait Sealed {}
}

/// A firmware command buffer type, bound at compile time to the one command it serves.
///
/// [`Psp::issue`](crate::Psp::issue) takes any `C: Command` and submits `C::CMD` with the
/// buffer's bytes, so a buffer cannot be paired with the wrong command id, and its length
/// always equals what the kernel's `sev_cmd_buffer_len()` expects for that command
/// (checked at compile time for every implementation). Buffer-less commands (DF_FLUSH,
/// SNP_DF_FLUSH, PEK_GEN, ...) are zero-sized markers such as [`DfFlush`](crate::DfFlush).
///
/// The trait is sealed: the implementations are the buffers of this crate (and the
/// `sev_user_data_*` structs of `kvm-coco-uapi` that the firmware uses directly).
/// Commands without a typed buffer can still be sent with
/// [`Psp::issue_raw`](crate::Psp::issue_raw).
///
/// ```
/// use psp_driver::{Command, SevCmd, SevDataSnpLaunchUpdate, SevDataLaunchUpdateVmsa, DfFlush};
///
/// assert_eq!(SevDataSnpLaunchUpdate::CMD, SevCmd::SnpLaunchUpdate);
/// assert_eq!(SevDataSnpLaunchUpdate::LEN, 32);
/// assert_eq!(SevDataLaunchUpdateVmsa::CMD, SevCmd::LaunchUpdateVmsa);
/// assert_eq!(DfFlush::LEN, 0);
/// ```
pub trait Command:
    IntoBytes
    + FromBytes
    + KnownLayout
    + Immutable
    + Copy
    + Send
    + Sync
    + core::fmt::Debug
    + sealed::Sealed
{
    /// The firmware command this buffer belongs to.
    const CMD: SevCmd;
    /// The buffer length in bytes (0 for buffer-less commands).
    const LEN: usize = core::mem::size_of::<Self>();
}

/// Implements [`Command`] for `$ty` and checks its size against [`SevCmd::buffer_len`].
macro_rules! impl_command {
    ( $( $ty:ty => $cmd:ident ),* $(,)? ) => {
        $(
            impl $crate::command::Sealed for $ty {}
            impl $crate::Command for $ty {
                const CMD: $crate::SevCmd = $crate::SevCmd::$cmd;
            }
            const _: () = assert!(
                match $crate::SevCmd::$cmd.buffer_len() {
                    Some(len) => len == core::mem::size_of::<$ty>(),
                    None => false,
                },
                concat!(stringify!($ty), " does not match the buffer length of ", stringify!($cmd))
            );
        )*
    };
}
pub(crate) use impl_command;
pub(crate) use sealed::Sealed;
