//! Typed vCPU exits and their replies.
//!
//! [`Vcpu::run`](crate::Vcpu::run) returns an [`Exit`]. Exits the kernel expects an answer
//! to carry a reply handle whose only way to answer is a typed reply enum, so a value the
//! kernel would reject on the next `KVM_RUN` (with `EINVAL`) cannot be written:
//!
//! | exit | reply type | kernel values |
//! |---|---|---|
//! | [`MapGpaRange`] (`KVM_EXIT_HYPERCALL`, `KVM_HC_MAP_GPA_RANGE`) | [`MapGpaReply`] | 0, `EINVAL`, `EAGAIN` |
//! | [`SnpReqCerts`] (`KVM_EXIT_SNP_REQ_CERTS`, 43) | [`CertsReply`] | 0, `ENOSPC` + page count, `EAGAIN`, `EIO` |
//! | [`TdxExit`] (`KVM_EXIT_TDX`, 40) | [`TdVmCallStatus`] | TDVMCALL status codes |
//!
//! A reply that is not written leaves the kernel's pre-filled value: 0 (success) for
//! MAP_GPA_RANGE and certificate requests, `SUBFUNC_UNSUPPORTED` for GetQuote and
//! SetupEventNotifyInterrupt.

use std::fmt;

use kvm_coco_uapi::tdx::{
    TDVMCALL_STATUS_ALIGN_ERROR, TDVMCALL_STATUS_INVALID_OPERAND, TDVMCALL_STATUS_RETRY,
    TDVMCALL_STATUS_SUBFUNC_UNSUPPORTED, TDVMCALL_STATUS_SUCCESS,
};
use serde::Serialize;

/// Why a vCPU left `KVM_RUN`.
#[derive(Debug)]
#[non_exhaustive]
pub enum Exit<'a> {
    /// `KVM_EXIT_IO`, direction out: the guest wrote `data` to `port`.
    IoOut {
        /// The I/O port.
        port: u16,
        /// The bytes written (`size * count`).
        data: &'a [u8],
    },
    /// `KVM_EXIT_IO`, direction in: fill `data`; the guest sees it after the next run.
    IoIn {
        /// The I/O port.
        port: u16,
        /// The bytes to return to the guest.
        data: &'a mut [u8],
    },
    /// `KVM_EXIT_MMIO`, read: fill `data`.
    MmioRead {
        /// The guest-physical address.
        gpa: u64,
        /// The bytes to return to the guest.
        data: &'a mut [u8],
    },
    /// `KVM_EXIT_MMIO`, write.
    MmioWrite {
        /// The guest-physical address.
        gpa: u64,
        /// The bytes written.
        data: &'a [u8],
    },
    /// `KVM_EXIT_HLT` (only without an in-kernel irqchip).
    Hlt,
    /// `KVM_EXIT_SHUTDOWN`: triple fault.
    Shutdown,
    /// `KVM_RUN` returned `EINTR`: a signal arrived or `immediate_exit` was set. Not a guest
    /// event; re-run when ready.
    Interrupted,
    /// `KVM_EXIT_MEMORY_FAULT` (39): the guest accessed memory whose private/shared state
    /// differs from the access. Unlike every other exit, `KVM_RUN` returns `-1` with `EFAULT`
    /// (or `EHWPOISON`) for it; [`Vcpu::run`](crate::Vcpu::run) turns that into this variant.
    MemoryFault(MemoryFault),
    /// `KVM_EXIT_HYPERCALL` for `KVM_HC_MAP_GPA_RANGE`: a page-state change request (guest
    /// hypercall, SNP page state change, TDX MapGPA).
    MapGpaRange(MapGpaRange<'a>),
    /// `KVM_EXIT_HYPERCALL` with any other number (KVM does not forward others today).
    Hypercall {
        /// The hypercall number.
        nr: u64,
        /// Its arguments.
        args: [u64; 6],
    },
    /// `KVM_EXIT_SNP_REQ_CERTS` (43): an SNP extended guest request wants the certificate
    /// table.
    SnpReqCerts(SnpReqCerts<'a>),
    /// `KVM_EXIT_TDX` (40): a TDVMCALL forwarded to userspace.
    Tdx(TdxExit<'a>),
    /// `KVM_EXIT_SYSTEM_EVENT`.
    SystemEvent(SystemEvent<'a>),
    /// `KVM_EXIT_FAIL_ENTRY`: the hardware refused to enter the guest.
    FailEntry {
        /// `hardware_entry_failure_reason`.
        reason: u64,
        /// The physical CPU.
        cpu: u32,
    },
    /// `KVM_EXIT_INTERNAL_ERROR`.
    InternalError,
    /// `KVM_EXIT_IRQ_WINDOW_OPEN`.
    IrqWindowOpen,
    /// `KVM_EXIT_DEBUG`.
    Debug,
    /// `KVM_EXIT_INTR`.
    Intr,
    /// Any other exit reason, passed through as the raw `exit_reason`.
    Other(u32),
}

/// Whether a memory access was private or shared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// A shared (host-visible) access.
    Shared,
    /// A private access.
    Private,
}

/// A `KVM_EXIT_MEMORY_FAULT`: convert `[gpa, gpa+size)` to [`access`](Self::access)
/// (usually with [`Vm::convert_memory`](crate::Vm::convert_memory)) and run again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct MemoryFault {
    /// The raw `memory_fault.flags`.
    pub flags: u64,
    /// The faulting guest-physical address.
    pub gpa: u64,
    /// The size of the range.
    pub size: u64,
}

impl MemoryFault {
    /// Private if `KVM_MEMORY_EXIT_FLAG_PRIVATE` is set, else shared.
    pub fn access(&self) -> Access {
        if self.flags & u64::from(kvm_bindings::KVM_MEMORY_EXIT_FLAG_PRIVATE) != 0 {
            Access::Private
        } else {
            Access::Shared
        }
    }
}

/// The page size encoded in MAP_GPA_RANGE's attributes (bits 3:0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum MapGpaPageSize {
    /// `KVM_MAP_GPA_RANGE_PAGE_SZ_4K`.
    Size4K,
    /// `KVM_MAP_GPA_RANGE_PAGE_SZ_2M`.
    Size2M,
    /// `KVM_MAP_GPA_RANGE_PAGE_SZ_1G`.
    Size1G,
}

/// The answer to a [`MapGpaRange`] exit: the only values KVM accepts
/// (`kvm_is_valid_map_gpa_range_ret`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MapGpaReply {
    /// 0: the attributes were changed.
    Success,
    /// `EINVAL`: the request is invalid (TDX: INVALID_OPERAND; SNP: PSC error).
    Invalid,
    /// `EAGAIN`: try again (TDX: RETRY).
    Retry,
}

impl MapGpaReply {
    /// The value written to `hypercall.ret`.
    pub const fn raw(self) -> u64 {
        match self {
            Self::Success => 0,
            Self::Invalid => libc::EINVAL as u64,
            Self::Retry => libc::EAGAIN as u64,
        }
    }
}

/// A `KVM_HC_MAP_GPA_RANGE` request. KVM pre-sets the reply to 0 (success); the VMM is
/// expected to change the range's attributes before replying success.
pub struct MapGpaRange<'a> {
    /// First guest-physical address (4 KiB aligned; TDX shared bit stripped).
    pub gpa: u64,
    /// Number of 4 KiB pages (never 0).
    pub npages: u64,
    /// The raw attributes (`args[2]`).
    pub attributes: u64,
    /// Whether the guest was in 64-bit mode (`KVM_EXIT_HYPERCALL_LONG_MODE`).
    pub long_mode: bool,
    pub(crate) ret: &'a mut u64,
}

impl MapGpaRange<'_> {
    /// The size in bytes (`npages * 4096`, saturating).
    pub fn size(&self) -> u64 {
        self.npages.saturating_mul(4096)
    }

    /// The requested state: private if `KVM_MAP_GPA_RANGE_ENCRYPTED` (bit 4) is set.
    pub fn access(&self) -> Access {
        if self.attributes & 0x10 != 0 {
            Access::Private
        } else {
            Access::Shared
        }
    }

    /// The page-size hint, `None` for an encoding KVM does not define.
    pub fn page_size(&self) -> Option<MapGpaPageSize> {
        match self.attributes & 0xf {
            0 => Some(MapGpaPageSize::Size4K),
            1 => Some(MapGpaPageSize::Size2M),
            2 => Some(MapGpaPageSize::Size1G),
            _ => None,
        }
    }

    /// Writes the reply into `hypercall.ret`.
    pub fn reply(&mut self, reply: MapGpaReply) {
        *self.ret = reply.raw();
    }
}

impl fmt::Debug for MapGpaRange<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapGpaRange")
            .field("gpa", &format_args!("{:#x}", self.gpa))
            .field("npages", &self.npages)
            .field("attributes", &format_args!("{:#x}", self.attributes))
            .field("long_mode", &self.long_mode)
            .field("ret", &*self.ret)
            .finish()
    }
}

/// The answer to an [`SnpReqCerts`] exit (the KVM-defined codes, facts §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CertsReply {
    /// 0: the certificate table was written at `gpa`; KVM issues the guest request.
    Success,
    /// `ENOSPC`: the guest buffer is too small; the guest is told it needs `pages` pages
    /// (KVM copies `npages` to the guest's RBX).
    NeedPages(u64),
    /// `EAGAIN`: busy, the guest should retry (SNP_GUEST_VMM_ERR_BUSY).
    Busy,
    /// `EIO`: a generic failure (SNP_GUEST_VMM_ERR_GENERIC).
    Failed,
}

/// An SNP certificate request (`KVM_EXIT_SNP_REQ_CERTS`).
///
/// Write the certificate table into guest memory at [`gpa`](Self::gpa) (at most
/// [`npages`](Self::npages) pages), then [`reply`](Self::reply). While servicing it, hold a
/// shared `F_OFD_SETLK` lock on the certificate file and consider setting `immediate_exit`
/// so the vCPU returns right after the firmware request (kernel documentation).
pub struct SnpReqCerts<'a> {
    /// Guest-physical address of the certificate buffer (guest RAX, 4 KiB aligned).
    pub gpa: u64,
    /// Size of the buffer in 4 KiB pages (guest RBX).
    pub npages: u64,
    pub(crate) npages_out: &'a mut u64,
    pub(crate) ret: &'a mut u64,
}

impl SnpReqCerts<'_> {
    /// Writes the reply (`ret`, and `npages` for [`CertsReply::NeedPages`]).
    pub fn reply(&mut self, reply: CertsReply) {
        *self.ret = match reply {
            CertsReply::Success => 0,
            CertsReply::NeedPages(n) => {
                *self.npages_out = n;
                libc::ENOSPC as u64
            }
            CertsReply::Busy => libc::EAGAIN as u64,
            CertsReply::Failed => libc::EIO as u64,
        };
    }
}

impl fmt::Debug for SnpReqCerts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnpReqCerts")
            .field("gpa", &format_args!("{:#x}", self.gpa))
            .field("npages", &self.npages)
            .field("ret", &*self.ret)
            .finish()
    }
}

/// A TDVMCALL status code written to a [`TdxExit`]'s `ret`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TdVmCallStatus {
    /// `TDVMCALL_STATUS_SUCCESS`.
    Success,
    /// `TDVMCALL_STATUS_RETRY`.
    Retry,
    /// `TDVMCALL_STATUS_INVALID_OPERAND`.
    InvalidOperand,
    /// `TDVMCALL_STATUS_ALIGN_ERROR`.
    AlignError,
    /// `TDVMCALL_STATUS_SUBFUNC_UNSUPPORTED`.
    SubfuncUnsupported,
}

impl TdVmCallStatus {
    /// The raw status value.
    pub const fn raw(self) -> u64 {
        match self {
            Self::Success => TDVMCALL_STATUS_SUCCESS,
            Self::Retry => TDVMCALL_STATUS_RETRY,
            Self::InvalidOperand => TDVMCALL_STATUS_INVALID_OPERAND,
            Self::AlignError => TDVMCALL_STATUS_ALIGN_ERROR,
            Self::SubfuncUnsupported => TDVMCALL_STATUS_SUBFUNC_UNSUPPORTED,
        }
    }
}

/// A `KVM_EXIT_TDX` exit: a TDVMCALL that KVM forwards to userspace.
#[derive(Debug)]
#[non_exhaustive]
pub enum TdxExit<'a> {
    /// `TDVMCALL_GET_QUOTE` (0x10002): the guest asks for a quote of the TDREPORT in the
    /// shared buffer `[gpa, gpa+size)`. KVM pre-fills SUBFUNC_UNSUPPORTED.
    GetQuote(TdxReply<'a, GetQuote>),
    /// `TDVMCALL_GET_TD_VM_CALL_INFO` (0x10000) with leaf 1: report which TDVMCALLs
    /// userspace handles in `r11..r14`. KVM pre-fills SUCCESS.
    GetTdVmCallInfo(TdxReply<'a, GetTdVmCallInfo>),
    /// `TDVMCALL_SETUP_EVENT_NOTIFY_INTERRUPT` (0x10004): the vector (32..=255) to inject
    /// when a quote is ready. KVM pre-fills SUBFUNC_UNSUPPORTED.
    SetupEventNotifyInterrupt(TdxReply<'a, SetupEventNotifyInterrupt>),
    /// A TDVMCALL leaf this crate does not know.
    Unknown {
        /// The leaf (guest R11).
        nr: u64,
        /// `tdx.unknown.data`.
        data: [u64; 5],
    },
}

/// The arguments of a GetQuote TDVMCALL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GetQuote {
    /// Shared-memory buffer holding the TDREPORT, receiving the quote.
    pub gpa: u64,
    /// Buffer size in bytes.
    pub size: u64,
}

/// The registers returned by a GetTdVmCallInfo TDVMCALL (leaf 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct GetTdVmCallInfo {
    /// The requested leaf (always 1 for exits to userspace).
    pub leaf: u64,
    /// Returned R11 (bitmap of userspace-handled TDVMCALLs, e.g. bit 1: GetQuote).
    pub r11: u64,
    /// Returned R12.
    pub r12: u64,
    /// Returned R13.
    pub r13: u64,
    /// Returned R14.
    pub r14: u64,
}

/// The argument of a SetupEventNotifyInterrupt TDVMCALL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetupEventNotifyInterrupt {
    /// The interrupt vector (32..=255).
    pub vector: u64,
}

/// Hands the VMM the arguments of a TDX exit and takes its typed status (and, for
/// GetTdVmCallInfo, the returned registers).
pub struct TdxReply<'a, T> {
    /// The arguments as read from `kvm_run`.
    pub args: T,
    pub(crate) ret: &'a mut u64,
    pub(crate) out: Option<&'a mut [u64; 4]>,
}

impl<T> TdxReply<'_, T> {
    /// The value KVM pre-filled (or the last reply written).
    pub fn current(&self) -> u64 {
        *self.ret
    }

    /// Writes the TDVMCALL status.
    pub fn reply(&mut self, status: TdVmCallStatus) {
        *self.ret = status.raw();
    }
}

impl TdxReply<'_, GetTdVmCallInfo> {
    /// Writes SUCCESS and the registers `r11..r14` returned to the guest.
    pub fn reply_info(&mut self, r11: u64, r12: u64, r13: u64, r14: u64) {
        *self.ret = TdVmCallStatus::Success.raw();
        if let Some(out) = self.out.as_deref_mut() {
            *out = [r11, r12, r13, r14];
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for TdxReply<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TdxReply")
            .field("args", &self.args)
            .field("ret", &format_args!("{:#x}", *self.ret))
            .finish()
    }
}

/// A `KVM_EXIT_SYSTEM_EVENT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SystemEvent<'a> {
    /// `KVM_SYSTEM_EVENT_SHUTDOWN`.
    Shutdown,
    /// `KVM_SYSTEM_EVENT_RESET`.
    Reset,
    /// `KVM_SYSTEM_EVENT_CRASH`.
    Crash,
    /// `KVM_SYSTEM_EVENT_SEV_TERM` (6): an SEV-ES/SNP guest requested termination.
    SevTerm {
        /// The GHCB's guest-physical address (`data[0]`), 0 if absent.
        ghcb_gpa: u64,
    },
    /// `KVM_SYSTEM_EVENT_TDX_FATAL` (7): the TD reported a fatal error
    /// (`TDVMCALL_REPORT_FATAL_ERROR`).
    TdxFatal {
        /// The 16 GPRs in `VCPU_REGS` order (RAX=vp_enter_ret, RCX, RDX, RBX, 0, 0, RSI,
        /// RDI, R8..R15); shorter if the kernel sent fewer.
        regs: &'a [u64],
    },
    /// Any other type, passed through.
    Other {
        /// The event type.
        kind: u32,
        /// `data[..ndata]`.
        data: &'a [u64],
    },
}

impl<'a> SystemEvent<'a> {
    pub(crate) fn decode(kind: u32, data: &'a [u64]) -> Self {
        use kvm_coco_uapi::exit::{KVM_SYSTEM_EVENT_SEV_TERM, KVM_SYSTEM_EVENT_TDX_FATAL};
        match kind {
            kvm_bindings::KVM_SYSTEM_EVENT_SHUTDOWN => Self::Shutdown,
            kvm_bindings::KVM_SYSTEM_EVENT_RESET => Self::Reset,
            kvm_bindings::KVM_SYSTEM_EVENT_CRASH => Self::Crash,
            KVM_SYSTEM_EVENT_SEV_TERM => Self::SevTerm {
                ghcb_gpa: data.first().copied().unwrap_or(0),
            },
            KVM_SYSTEM_EVENT_TDX_FATAL => Self::TdxFatal { regs: data },
            kind => Self::Other { kind, data },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_gpa_reply_writes_only_kernel_accepted_values() {
        let mut ret = 0xdead;
        let mut exit = MapGpaRange {
            gpa: 0x1000,
            npages: 2,
            attributes: 0x11,
            long_mode: true,
            ret: &mut ret,
        };
        assert_eq!(exit.access(), Access::Private);
        assert_eq!(exit.page_size(), Some(MapGpaPageSize::Size2M));
        assert_eq!(exit.size(), 0x2000);
        exit.reply(MapGpaReply::Retry);
        assert_eq!(ret, 11); // EAGAIN
        let mut exit = MapGpaRange {
            gpa: 0,
            npages: 1,
            attributes: 0,
            long_mode: false,
            ret: &mut ret,
        };
        assert_eq!(exit.access(), Access::Shared);
        exit.reply(MapGpaReply::Invalid);
        assert_eq!(ret, 22); // EINVAL
    }

    #[test]
    fn certs_reply_codes_follow_the_kernel_protocol() {
        // Values: KVM_EXIT_SNP_REQ_CERTS documentation (facts linux-uapi §6).
        let (mut ret, mut npages) = (0, 4);
        let mut exit = SnpReqCerts {
            gpa: 0x2000,
            npages: 4,
            npages_out: &mut npages,
            ret: &mut ret,
        };
        exit.reply(CertsReply::NeedPages(9));
        assert_eq!((ret, npages), (28, 9));
        let mut exit = SnpReqCerts {
            gpa: 0x2000,
            npages: 4,
            npages_out: &mut npages,
            ret: &mut ret,
        };
        exit.reply(CertsReply::Busy);
        assert_eq!(ret, 11);
        let mut exit = SnpReqCerts {
            gpa: 0x2000,
            npages: 4,
            npages_out: &mut npages,
            ret: &mut ret,
        };
        exit.reply(CertsReply::Failed);
        assert_eq!(ret, 5);
        assert_eq!(npages, 9, "npages is only written for ENOSPC");
    }

    #[test]
    fn tdvmcall_status_values() {
        // arch/x86/include/asm/shared/tdx.h (facts linux-uapi §4.1).
        assert_eq!(TdVmCallStatus::Success.raw(), 0);
        assert_eq!(TdVmCallStatus::Retry.raw(), 1);
        assert_eq!(TdVmCallStatus::InvalidOperand.raw(), 0x8000_0000_0000_0000);
        assert_eq!(TdVmCallStatus::AlignError.raw(), 0x8000_0000_0000_0002);
        assert_eq!(
            TdVmCallStatus::SubfuncUnsupported.raw(),
            0x8000_0000_0000_0003
        );
    }

    #[test]
    fn system_events_decode() {
        assert_eq!(
            SystemEvent::decode(6, &[0xabc000]),
            SystemEvent::SevTerm { ghcb_gpa: 0xabc000 }
        );
        let regs = [1u64; 16];
        assert_eq!(
            SystemEvent::decode(7, &regs),
            SystemEvent::TdxFatal { regs: &regs }
        );
        assert_eq!(SystemEvent::decode(1, &[]), SystemEvent::Shutdown);
        assert!(matches!(
            SystemEvent::decode(99, &[]),
            SystemEvent::Other { kind: 99, .. }
        ));
        let mut ret = 0;
        let mut info = [0u64; 4];
        let mut r = TdxReply {
            args: GetTdVmCallInfo::default(),
            ret: &mut ret,
            out: Some(&mut info),
        };
        r.reply_info(2, 0, 0, 0);
        assert_eq!((ret, info), (0, [2, 0, 0, 0]));
    }
}
