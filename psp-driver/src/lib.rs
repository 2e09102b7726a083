//! AMD Platform Security Processor (PSP) driver: the firmware side of SEV, SEV-ES and SEV-SNP.
//!
//! This crate is the user-space counterpart of the kernel's `drivers/crypto/ccp` SEV code
//! plus the ASID protocol of KVM's `svm/sev.c` (Linux 7.3):
//!
//! * **Command buffers** ([`buffers`]): every `sev_data_*` mailbox buffer a host issues,
//!   bit-for-bit (`#[repr(C, packed)]`, zerocopy, sizes and offsets asserted at compile time),
//!   with typed accessors for the C bitfields.
//! * **Command ids** ([`SevCmd`]) and the [`Command`] trait that binds each buffer type to
//!   its command, so a buffer cannot be sent with the wrong id.
//! * **Serialized submission**: a [`Psp`] owns a [`Transport`] (the firmware mailbox) and
//!   lets one command run at a time, like `sev_cmd_mutex`. Failures are [`PspError`]s
//!   carrying the command, the firmware status ([`SevRetCode`]) and the OS errno.
//! * **ASIDs** ([`AsidManager`]): allocation over the SEV / SEV-ES / SNP ranges with lazy
//!   reclaim, ACTIVATE / SNP_ACTIVATE, DEACTIVATE under the shared lock, DF_FLUSH after a
//!   cache write-back under the exclusive lock, and a guard against binding a dirty ASID.
//! * **`/dev/sev`** ([`DevSev`]): safe platform management on real AMD hosts (status, chip id,
//!   PEK/PDH certificates, key generation, SNP commit/config/VLEK), with a clear error when
//!   SEV is not available, behind the [`Platform`] trait that a [`Psp`] over the software
//!   firmware (feature `sim`) implements too, with the same `/dev/sev` semantics.
//! * **Guest-owner side** (feature `owner`): session blobs, LAUNCH_SECRET packets, ID blocks
//!   and report verification; with feature `x509`, verification of real SNP reports against
//!   AMD's X.509 ARK → ASK → VCEK chain, the Milan, Genoa and Turin roots built in.
//!
//! # Example: a transport, serialized commands and the ASID protocol
//!
//! ```
//! use psp_driver::{
//!     AsidClass, AsidConfig, AsidManager, Completion, NoWriteBack, Psp, SevCmd,
//!     SevDataSnpLaunchUpdate, SevRetCode, Transport,
//! };
//! use std::sync::Arc;
//!
//! /// A firmware that rejects SNP_LAUNCH_UPDATE and accepts everything else.
//! #[derive(Debug)]
//! struct Firmware;
//!
//! impl Transport for Firmware {
//!     fn submit(&self, cmd: SevCmd, _buf: &mut [u8]) -> Completion {
//!         match cmd {
//!             SevCmd::SnpLaunchUpdate => Completion::firmware(SevRetCode::InvalidPageState),
//!             _ => Completion::SUCCESS,
//!         }
//!     }
//! }
//!
//! let psp = Arc::new(Psp::new(Firmware));
//!
//! // Typed buffers: the command id comes from the type.
//! let mut update = SevDataSnpLaunchUpdate { gctx_paddr: 0x1000, address: 0x20_0000, ..Default::default() };
//! update.set_page_type(1); // SNP_PAGE_TYPE_NORMAL
//! let err = psp.issue(&mut update).unwrap_err();
//! assert!(err.to_string().starts_with(
//!     "SNP_LAUNCH_UPDATE failed: firmware status INVALID_PAGE_STATE (0x1A)"
//! ));
//!
//! // ASIDs: SNP guests get [1, min_sev_asid - 1].
//! let asids = AsidManager::new(psp.clone(), AsidConfig::new(16, 64, true), NoWriteBack)?;
//! let mut lease = asids.allocate(AsidClass::Snp)?;
//! asids.bind_snp(&mut lease, 0x1000)?;   // SNP_ACTIVATE
//! asids.release(lease)?;                 // SNP_DECOMMISSION, ASID reclaimable after a flush
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Example: platform status on a real host
//!
//! ```no_run
//! use psp_driver::{DevSev, DevSevError, Platform};
//!
//! match DevSev::open_read_only(psp_driver::DEV_SEV_PATH) {
//!     Ok(sev) => {
//!         let status = sev.platform_status()?;
//!         println!("SEV firmware {}.{} build {}", status.api_major, status.api_minor, status.build);
//!     }
//!     // "AMD SEV is not available on this host: /dev/sev does not exist (is kvm_amd loaded with sev=1?)"
//!     Err(e @ DevSevError::NotFound { .. }) => eprintln!("{e}"),
//!     Err(e) => return Err(e.into()),
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Features
//!
//! * `sim`: the software PSP firmware (a [`Transport`]), for tests and measurements on
//!   machines without SEV hardware; a [`Psp`] over it implements [`Platform`].
//! * `owner`: guest-owner helpers (session blobs, LAUNCH_SECRET packets, verification).
//!
//! # Model checking
//!
//! The lock protocol is checked exhaustively with loom:
//! `RUSTFLAGS="--cfg loom" cargo test -p psp-driver --test loom --release`.

pub mod digest;
pub mod report;

#[cfg(feature = "owner")]
pub mod owner;
#[cfg(feature = "sim")]
pub mod sim;

mod asid;
pub mod buffers;
mod cmd;
mod command;
mod dev_sev;
mod psp;
mod sync;
mod transport;

pub use asid::{
    AsidClass, AsidConfig, AsidError, AsidLease, AsidManager, Binding, CacheWriteBack, FnWriteBack,
    MAX_ASID_LIMIT, NoWriteBack,
};
pub use buffers::*;
pub use cmd::{SEV_CMD_MAX, SevCmd, UnknownSevCmd};
pub use command::Command;
pub use dev_sev::{DEV_SEV_PATH, DevSev, DevSevError, PdhCertExport, Platform};
pub use psp::{Psp, PspError, PspGuard};
pub use transport::{Completion, Transport};

/// The `/dev/sev` uAPI definitions (`SevUserData*`, [`SevPlatformCmd`]) used by [`Platform`].
pub use kvm_coco_uapi::sev_dev;
/// The `/dev/sev` command ids, carried by [`DevSevError::Command`].
pub use kvm_coco_uapi::sev_dev::SevPlatformCmd;
/// The firmware status of a command (`sev_ret_code`), from `kvm-coco-uapi`.
pub use kvm_coco_uapi::sev_dev::SevRetCode;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
