//! `KVM_RUN` exits that matter for confidential VMs, and safe byte-offset views of the
//! mmapped `struct kvm_run`.
//!
//! A VMM maps the vCPU's `kvm_run` page (`mmap(vcpu_fd, 0)`, size from
//! `KVM_GET_VCPU_MMAP_SIZE`). Instead of a 2352-byte C union, this crate gives one small
//! zerocopy struct per exit arm plus its offset in `kvm_run` ([`KvmRunMember`]), so the arm
//! can be copied out of (and a reply copied back into) the page as a byte slice, without
//! `unsafe`:
//!
//! ```
//! use kvm_coco_uapi::{exit_reason, KvmRunMember, KvmRunMemoryFault, KVM_EXIT_MEMORY_FAULT,
//!     KVM_MEMORY_EXIT_FLAG_PRIVATE, KVM_RUN_SIZE};
//! let mut run = [0u8; KVM_RUN_SIZE]; // stands for the mmapped page
//! run[8..12].copy_from_slice(&KVM_EXIT_MEMORY_FAULT.to_ne_bytes());
//! run[32..40].copy_from_slice(&KVM_MEMORY_EXIT_FLAG_PRIVATE.to_ne_bytes());
//! run[40..48].copy_from_slice(&0x1000u64.to_ne_bytes());
//! assert_eq!(exit_reason(&run), Some(KVM_EXIT_MEMORY_FAULT));
//! let f = KvmRunMemoryFault::read_from_run(&run).unwrap();
//! assert!(f.is_private());
//! assert_eq!(f.gpa, 0x1000);
//! ```
//!
//! Exits specific to confidential VMs:
//! * [`KVM_EXIT_MEMORY_FAULT`] (39): private/shared mismatch; note `KVM_RUN` returns
//!   **-1 with `errno` EFAULT or EHWPOISON**, not 0, and `exit_reason` is valid only then.
//! * [`KVM_EXIT_HYPERCALL`] (3) with `nr` = [`KVM_HC_MAP_GPA_RANGE`]: a page-state change
//!   (guest hypercall, SNP GHCB page-state change, TDX MapGPA), if enabled through
//!   [`crate::KVM_CAP_EXIT_HYPERCALL`].
//! * [`KVM_EXIT_TDX`] (40): TDVMCALLs forwarded to user space ([`crate::KvmRunTdx`]).
//! * [`KVM_EXIT_SNP_REQ_CERTS`] (43, Linux 7.0): SNP extended guest request certificates.
//! * [`KVM_EXIT_SYSTEM_EVENT`] (24) with [`KVM_SYSTEM_EVENT_SEV_TERM`] or
//!   [`KVM_SYSTEM_EVENT_TDX_FATAL`].

use crate::manifest::Layout;
use zerocopy::{FromBytes, IntoBytes};

uapi_consts! { EXIT_REASONS;
    /// `KVM_EXIT_UNKNOWN` (0).
    pub const KVM_EXIT_UNKNOWN: u32 = 0;
    /// `KVM_EXIT_EXCEPTION` (1).
    pub const KVM_EXIT_EXCEPTION: u32 = 1;
    /// `KVM_EXIT_IO` (2).
    pub const KVM_EXIT_IO: u32 = 2;
    /// `KVM_EXIT_HYPERCALL` (3): see [`KvmRunHypercall`].
    pub const KVM_EXIT_HYPERCALL: u32 = 3;
    /// `KVM_EXIT_DEBUG` (4).
    pub const KVM_EXIT_DEBUG: u32 = 4;
    /// `KVM_EXIT_HLT` (5).
    pub const KVM_EXIT_HLT: u32 = 5;
    /// `KVM_EXIT_MMIO` (6).
    pub const KVM_EXIT_MMIO: u32 = 6;
    /// `KVM_EXIT_IRQ_WINDOW_OPEN` (7).
    pub const KVM_EXIT_IRQ_WINDOW_OPEN: u32 = 7;
    /// `KVM_EXIT_SHUTDOWN` (8).
    pub const KVM_EXIT_SHUTDOWN: u32 = 8;
    /// `KVM_EXIT_FAIL_ENTRY` (9).
    pub const KVM_EXIT_FAIL_ENTRY: u32 = 9;
    /// `KVM_EXIT_INTR` (10).
    pub const KVM_EXIT_INTR: u32 = 10;
    /// `KVM_EXIT_SET_TPR` (11).
    pub const KVM_EXIT_SET_TPR: u32 = 11;
    /// `KVM_EXIT_TPR_ACCESS` (12).
    pub const KVM_EXIT_TPR_ACCESS: u32 = 12;
    /// `KVM_EXIT_NMI` (16).
    pub const KVM_EXIT_NMI: u32 = 16;
    /// `KVM_EXIT_INTERNAL_ERROR` (17).
    pub const KVM_EXIT_INTERNAL_ERROR: u32 = 17;
    /// `KVM_EXIT_SYSTEM_EVENT` (24): see [`KvmRunSystemEvent`].
    pub const KVM_EXIT_SYSTEM_EVENT: u32 = 24;
    /// `KVM_EXIT_IOAPIC_EOI` (26).
    pub const KVM_EXIT_IOAPIC_EOI: u32 = 26;
    /// `KVM_EXIT_HYPERV` (27).
    pub const KVM_EXIT_HYPERV: u32 = 27;
    /// `KVM_EXIT_X86_RDMSR` (29).
    pub const KVM_EXIT_X86_RDMSR: u32 = 29;
    /// `KVM_EXIT_X86_WRMSR` (30).
    pub const KVM_EXIT_X86_WRMSR: u32 = 30;
    /// `KVM_EXIT_DIRTY_RING_FULL` (31).
    pub const KVM_EXIT_DIRTY_RING_FULL: u32 = 31;
    /// `KVM_EXIT_AP_RESET_HOLD` (32): an SEV-ES AP reset hold request.
    pub const KVM_EXIT_AP_RESET_HOLD: u32 = 32;
    /// `KVM_EXIT_X86_BUS_LOCK` (33).
    pub const KVM_EXIT_X86_BUS_LOCK: u32 = 33;
    /// `KVM_EXIT_XEN` (34).
    pub const KVM_EXIT_XEN: u32 = 34;
    /// `KVM_EXIT_NOTIFY` (37).
    pub const KVM_EXIT_NOTIFY: u32 = 37;
    /// `KVM_EXIT_MEMORY_FAULT` (39): see [`KvmRunMemoryFault`]. Reported with `KVM_RUN`
    /// returning -1 / `EFAULT` or `EHWPOISON`.
    pub const KVM_EXIT_MEMORY_FAULT: u32 = 39;
    /// `KVM_EXIT_TDX` (40): see [`crate::KvmRunTdx`].
    pub const KVM_EXIT_TDX: u32 = 40;
    /// `KVM_EXIT_ARM_SEA` (41), arm64 only.
    pub const KVM_EXIT_ARM_SEA: u32 = 41;
    /// `KVM_EXIT_ARM_LDST64B` (42), arm64 only. Patch-era SNP code used 42 for REQ_CERTS:
    /// that number was taken by this exit in the same merge window.
    pub const KVM_EXIT_ARM_LDST64B: u32 = 42;
    /// `KVM_EXIT_SNP_REQ_CERTS` (**43** in every released header; Linux 7.0): see
    /// [`KvmExitSnpReqCerts`]. Do not use 40 or 42 from patch-era code.
    pub const KVM_EXIT_SNP_REQ_CERTS: u32 = 43;
}

uapi_consts! { EXIT_FLAGS;
    /// `KVM_SYSTEM_EVENT_SHUTDOWN` (1).
    pub const KVM_SYSTEM_EVENT_SHUTDOWN: u32 = 1;
    /// `KVM_SYSTEM_EVENT_RESET` (2).
    pub const KVM_SYSTEM_EVENT_RESET: u32 = 2;
    /// `KVM_SYSTEM_EVENT_CRASH` (3).
    pub const KVM_SYSTEM_EVENT_CRASH: u32 = 3;
    /// `KVM_SYSTEM_EVENT_WAKEUP` (4).
    pub const KVM_SYSTEM_EVENT_WAKEUP: u32 = 4;
    /// `KVM_SYSTEM_EVENT_SUSPEND` (5).
    pub const KVM_SYSTEM_EVENT_SUSPEND: u32 = 5;
    /// `KVM_SYSTEM_EVENT_SEV_TERM` (6): an SEV-ES/SNP guest asked to terminate; `ndata` 1,
    /// `data[0]` = the GHCB GPA.
    pub const KVM_SYSTEM_EVENT_SEV_TERM: u32 = 6;
    /// `KVM_SYSTEM_EVENT_TDX_FATAL` (7): TDVMCALL ReportFatalError; `ndata` 16, `data` =
    /// the 16 GPRs in VCPU_REGS order (RAX = vp_enter_ret, RCX, RDX, RBX, 0, 0, RSI, RDI,
    /// R8..R15).
    pub const KVM_SYSTEM_EVENT_TDX_FATAL: u32 = 7;
    /// `KVM_MEMORY_EXIT_FLAG_PRIVATE` (bit 3 of [`KvmRunMemoryFault::flags`]): the access was
    /// private. No RWX bits are defined.
    pub const KVM_MEMORY_EXIT_FLAG_PRIVATE: u64 = 1 << 3;
    /// `KVM_EXIT_HYPERCALL_LONG_MODE` (bit 0 of [`KvmRunHypercall::flags`]); TDX always
    /// sets it.
    pub const KVM_EXIT_HYPERCALL_LONG_MODE: u64 = 1 << 0;
}

uapi_consts! { PARA;
    /// `KVM_HC_MAP_GPA_RANGE` (12): the hypercall number in [`KvmRunHypercall::nr`] for a
    /// private/shared conversion request.
    pub const KVM_HC_MAP_GPA_RANGE: u64 = 12;
    /// `KVM_FEATURE_HC_MAP_GPA_RANGE` (16): KVM CPUID feature bit advertising the hypercall.
    pub const KVM_FEATURE_HC_MAP_GPA_RANGE: u32 = 16;
    /// `KVM_FEATURE_MIGRATION_CONTROL` (17): KVM CPUID feature bit.
    pub const KVM_FEATURE_MIGRATION_CONTROL: u32 = 17;
    /// `MSR_KVM_MIGRATION_CONTROL` (0x4b564d08).
    pub const MSR_KVM_MIGRATION_CONTROL: u32 = 0x4b56_4d08;
    /// `KVM_MAP_GPA_RANGE_PAGE_SZ_4K` (0): page-size encoding in `args[2]` bits 3:0.
    pub const KVM_MAP_GPA_RANGE_PAGE_SZ_4K: u64 = 0;
    /// `KVM_MAP_GPA_RANGE_PAGE_SZ_2M` (1).
    pub const KVM_MAP_GPA_RANGE_PAGE_SZ_2M: u64 = 1 << 0;
    /// `KVM_MAP_GPA_RANGE_PAGE_SZ_1G` (2).
    pub const KVM_MAP_GPA_RANGE_PAGE_SZ_1G: u64 = 1 << 1;
    /// `KVM_MAP_GPA_RANGE_ENCRYPTED` (0x10): `args[2]` bit 4 set, make the range private.
    pub const KVM_MAP_GPA_RANGE_ENCRYPTED: u64 = kvm_map_gpa_range_enc_stat(1);
    /// `KVM_MAP_GPA_RANGE_DECRYPTED` (0): bit 4 clear, make the range shared.
    pub const KVM_MAP_GPA_RANGE_DECRYPTED: u64 = kvm_map_gpa_range_enc_stat(0);
}

/// `KVM_MAP_GPA_RANGE_ENC_STAT(n)` = `n << 4`.
pub const fn kvm_map_gpa_range_enc_stat(n: u64) -> u64 {
    n << 4
}

/// `sizeof(struct kvm_run)` on x86-64: 2352 bytes (the mmapped area is at least one page).
pub const KVM_RUN_SIZE: usize = 2352;
/// Offset of `kvm_run.immediate_exit` (u8).
pub const KVM_RUN_IMMEDIATE_EXIT_OFFSET: usize = 1;
/// Offset of `kvm_run.exit_reason` (u32).
pub const KVM_RUN_EXIT_REASON_OFFSET: usize = 8;
/// Offset of the exit union in `kvm_run`.
pub const KVM_RUN_EXIT_UNION_OFFSET: usize = 32;
/// Size of the exit union (`char padding[256]`).
pub const KVM_RUN_EXIT_UNION_SIZE: usize = 256;

uapi_structs! { STRUCTS;
    /// The fixed head of `struct kvm_run` (first 32 bytes, before the exit union).
    #[repr(C)]
    pub struct KvmRunHeader as ["kvm_run"] {
        /// In: request an interrupt-window exit.
        pub request_interrupt_window: u8,
        /// In: return immediately with `-EINTR` (used with REQ_CERTS to come back after the
        /// firmware request).
        pub immediate_exit: u8,
        /// Padding.
        pub padding1: [u8; 6],
        /// Out: the `KVM_EXIT_*` reason.
        pub exit_reason: u32,
        /// Out.
        pub ready_for_interrupt_injection: u8,
        /// Out.
        pub if_flag: u8,
        /// Out: `KVM_RUN_X86_*` flags.
        pub flags: u16,
        /// In/out: CR8.
        pub cr8: u64,
        /// In/out: APIC base MSR.
        pub apic_base: u64,
    }

    /// `kvm_run.hypercall` (72 bytes at offset 32) for [`KVM_EXIT_HYPERCALL`].
    ///
    /// For [`KVM_HC_MAP_GPA_RANGE`]: `args[0]` = start GPA (page-aligned; TDX shared bit
    /// stripped), `args[1]` = number of 4 KiB pages (never 0), `args[2]` = attributes
    /// (bits 3:0 page size, bit 4 private). KVM sets `ret = 0` before exiting; reply
    /// 0, EINVAL (22) or EAGAIN (11) — **any other value makes the next `KVM_RUN` fail with
    /// `-EINVAL`**. Update the memory attributes before replying 0.
    #[repr(C)]
    pub struct KvmRunHypercall as ("kvm_run", "hypercall") {
        /// Hypercall number.
        pub nr: u64,
        /// Arguments.
        pub args: [u64; 6],
        /// In: the result returned to the guest.
        pub ret: u64,
        /// [`KVM_EXIT_HYPERCALL_LONG_MODE`]; shares storage with the older `u32 longmode`.
        pub flags: u64,
    }

    /// `kvm_run.system_event` (136 bytes at offset 32) for [`KVM_EXIT_SYSTEM_EVENT`].
    #[repr(C)]
    pub struct KvmRunSystemEvent as ("kvm_run", "system_event") {
        /// `KVM_SYSTEM_EVENT_*`.
        pub r#type: u32,
        /// Number of valid `data` words.
        pub ndata: u32,
        /// Event data (shares storage with the older `u64 flags`).
        pub data: [u64; 16],
    }

    /// `kvm_run.memory_fault` (24 bytes at offset 32) for [`KVM_EXIT_MEMORY_FAULT`].
    #[repr(C)]
    pub struct KvmRunMemoryFault as ("kvm_run", "memory_fault") {
        /// [`KVM_MEMORY_EXIT_FLAG_PRIVATE`].
        pub flags: u64,
        /// Faulting GPA.
        pub gpa: u64,
        /// Size of the range.
        pub size: u64,
    }

    /// `struct kvm_exit_snp_req_certs` (24 bytes), `kvm_run.snp_req_certs` at offset 32,
    /// for [`KVM_EXIT_SNP_REQ_CERTS`] (Linux 7.0, enabled by
    /// [`crate::KVM_SEV_SNP_ENABLE_REQ_CERTS`]).
    ///
    /// `gpa` (guest RAX, 4 KiB-aligned) and `npages` (guest RBX) are verbatim; write the
    /// certificate table into guest shared memory at `gpa`, then set `ret` before the next
    /// `KVM_RUN` ([`SnpReqCertsRet`]). Any value other than 0, ENOSPC, EAGAIN or EIO makes
    /// `KVM_RUN` fail with `-EINVAL`. Patch-era drafts had `gfn` and 32-bit fields.
    #[repr(C)]
    pub struct KvmExitSnpReqCerts as "kvm_exit_snp_req_certs" {
        /// Guest physical address of the certificate buffer.
        pub gpa: u64,
        /// Its size in pages (in); with ENOSPC, the needed page count (out).
        pub npages: u64,
        /// The reply (0 on exit).
        pub ret: u64,
    }
}

/// An exit arm of `struct kvm_run`: its offset, and copy-out / copy-in over the mmapped
/// bytes (no `unsafe`, no alignment requirement).
pub trait KvmRunMember: Layout + FromBytes + IntoBytes + zerocopy::Immutable + Sized {
    /// Byte offset of the arm from the start of `struct kvm_run`.
    const KVM_RUN_OFFSET: usize;

    /// Copies the arm out of the `kvm_run` bytes; `None` if `run` is too short.
    fn read_from_run(run: &[u8]) -> Option<Self> {
        let off = Self::KVM_RUN_OFFSET;
        let bytes = run.get(off..off + core::mem::size_of::<Self>())?;
        Self::read_from_bytes(bytes).ok()
    }

    /// Copies the arm into the `kvm_run` bytes (e.g. to set `ret`); `None` if too short.
    fn write_to_run(&self, run: &mut [u8]) -> Option<()> {
        let off = Self::KVM_RUN_OFFSET;
        let dst = run.get_mut(off..off + core::mem::size_of::<Self>())?;
        dst.copy_from_slice(self.as_bytes());
        Some(())
    }
}

/// Defines [`KvmRunMember`] impls and records each offset for the header check.
macro_rules! run_members {
    ( $list:ident; $( $ty:ty => $member:literal @ $off:expr; )* ) => {
        $( impl KvmRunMember for $ty { const KVM_RUN_OFFSET: usize = $off; } )*
        /// `offsetof(struct kvm_run, <member>)` for every [`KvmRunMember`].
        pub(crate) const $list: &[$crate::manifest::ExprEntry] = &[ $(
            $crate::manifest::ExprEntry {
                name: concat!(stringify!($ty), "::KVM_RUN_OFFSET"),
                c_expr: concat!("offsetof(struct kvm_run, ", $member, ")"),
                value: <$ty as KvmRunMember>::KVM_RUN_OFFSET as i128,
            },
        )* ];
    };
}

run_members! { RUN_OFFSETS;
    KvmRunHeader => "request_interrupt_window" @ 0;
    KvmRunHypercall => "hypercall" @ KVM_RUN_EXIT_UNION_OFFSET;
    KvmRunSystemEvent => "system_event" @ KVM_RUN_EXIT_UNION_OFFSET;
    KvmRunMemoryFault => "memory_fault" @ KVM_RUN_EXIT_UNION_OFFSET;
    KvmExitSnpReqCerts => "snp_req_certs" @ KVM_RUN_EXIT_UNION_OFFSET;
    crate::KvmRunTdx => "tdx" @ KVM_RUN_EXIT_UNION_OFFSET;
    crate::KvmRunTdxUnknown => "tdx.unknown" @ KVM_RUN_EXIT_UNION_OFFSET + 16;
    crate::KvmRunTdxGetQuote => "tdx.get_quote" @ KVM_RUN_EXIT_UNION_OFFSET + 16;
    crate::KvmRunTdxGetTdvmcallInfo => "tdx.get_tdvmcall_info" @ KVM_RUN_EXIT_UNION_OFFSET + 16;
    crate::KvmRunTdxSetupEventNotify => "tdx.setup_event_notify" @ KVM_RUN_EXIT_UNION_OFFSET + 16;
}

/// Other `kvm_run` facts checked against the header.
pub(crate) const RUN_FACTS: &[crate::manifest::ExprEntry] = &[
    crate::manifest::ExprEntry {
        name: "KVM_RUN_SIZE",
        c_expr: "sizeof(struct kvm_run)",
        value: KVM_RUN_SIZE as i128,
    },
    crate::manifest::ExprEntry {
        name: "KVM_RUN_IMMEDIATE_EXIT_OFFSET",
        c_expr: "offsetof(struct kvm_run, immediate_exit)",
        value: KVM_RUN_IMMEDIATE_EXIT_OFFSET as i128,
    },
    crate::manifest::ExprEntry {
        name: "KVM_RUN_EXIT_REASON_OFFSET",
        c_expr: "offsetof(struct kvm_run, exit_reason)",
        value: KVM_RUN_EXIT_REASON_OFFSET as i128,
    },
    crate::manifest::ExprEntry {
        name: "KVM_RUN_EXIT_UNION_OFFSET",
        c_expr: "offsetof(struct kvm_run, padding)",
        value: KVM_RUN_EXIT_UNION_OFFSET as i128,
    },
    crate::manifest::ExprEntry {
        name: "KVM_RUN_EXIT_UNION_SIZE",
        c_expr: "sizeof(((struct kvm_run *)0)->padding)",
        value: KVM_RUN_EXIT_UNION_SIZE as i128,
    },
];

/// Reads `kvm_run.exit_reason` from the mmapped bytes.
pub fn exit_reason(run: &[u8]) -> Option<u32> {
    let b = run.get(KVM_RUN_EXIT_REASON_OFFSET..KVM_RUN_EXIT_REASON_OFFSET + 4)?;
    u32::read_from_bytes(b).ok()
}

/// Sets or clears `kvm_run.immediate_exit` in the mmapped bytes.
pub fn set_immediate_exit(run: &mut [u8], on: bool) -> Option<()> {
    *run.get_mut(KVM_RUN_IMMEDIATE_EXIT_OFFSET)? = on as u8;
    Some(())
}

impl KvmRunMemoryFault {
    /// Whether the faulting access was private ([`KVM_MEMORY_EXIT_FLAG_PRIVATE`]).
    pub const fn is_private(&self) -> bool {
        self.flags & KVM_MEMORY_EXIT_FLAG_PRIVATE != 0
    }
}

/// A decoded [`KVM_HC_MAP_GPA_RANGE`] request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MapGpaRange {
    /// Start GPA.
    pub gpa: u64,
    /// Number of 4 KiB pages.
    pub npages: u64,
    /// Page-size encoding (`args[2]` bits 3:0: 0 = 4K, 1 = 2M, 2 = 1G).
    pub page_size: u64,
    /// `true`: make private; `false`: make shared.
    pub private: bool,
}

/// The replies KVM accepts in [`KvmRunHypercall::ret`] after a MAP_GPA_RANGE exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MapGpaRangeRet {
    /// 0: done.
    Success,
    /// EINVAL (22): refused (TDX: INVALID_OPERAND; SNP: page-state-change error).
    Invalid,
    /// EAGAIN (11): retry (TDX: RETRY).
    Again,
}

impl MapGpaRangeRet {
    /// The value to store in `ret`.
    pub const fn raw(self) -> u64 {
        match self {
            Self::Success => 0,
            Self::Invalid => 22,
            Self::Again => 11,
        }
    }
}

impl KvmRunHypercall {
    /// Decodes a MAP_GPA_RANGE request (`None` for another hypercall).
    pub const fn map_gpa_range(&self) -> Option<MapGpaRange> {
        if self.nr != KVM_HC_MAP_GPA_RANGE {
            return None;
        }
        Some(MapGpaRange {
            gpa: self.args[0],
            npages: self.args[1],
            page_size: self.args[2] & 0xF,
            private: self.args[2] & KVM_MAP_GPA_RANGE_ENCRYPTED != 0,
        })
    }

    /// Sets the reply.
    pub const fn set_ret(&mut self, ret: MapGpaRangeRet) {
        self.ret = ret.raw();
    }
}

/// The replies KVM accepts in [`KvmExitSnpReqCerts::ret`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SnpReqCertsRet {
    /// 0: certificates written; KVM issues the firmware guest request.
    Success,
    /// ENOSPC (28): the buffer is too small; set `npages` to the needed count. The guest
    /// gets `SNP_GUEST_VMM_ERR_INVALID_LEN` and RBX = `npages`.
    NoSpace,
    /// EAGAIN (11): busy; the guest gets `SNP_GUEST_VMM_ERR_BUSY`.
    Again,
    /// EIO (5): generic failure.
    Io,
}

impl SnpReqCertsRet {
    /// The value to store in `ret`.
    pub const fn raw(self) -> u64 {
        match self {
            Self::Success => 0,
            Self::NoSpace => 28,
            Self::Again => 11,
            Self::Io => 5,
        }
    }

    /// `SW_EXITINFO2` the guest will see, `(vmm_err << 32) | fw_err` with `fw_err` 0
    /// (for [`Self::Success`] the firmware status fills the low half).
    pub const fn guest_exitinfo2(self) -> u64 {
        match self {
            Self::Success => 0,
            Self::NoSpace => 1 << 32,
            Self::Again => 2 << 32,
            Self::Io => 0xFFFF_FFFF_0000_0000,
        }
    }
}

// Layout facts (linux-uapi.md §5.2–§5.4, §6), relative to each member's kvm_run offset.
assert_layout!(KvmRunHeader, 32, 8, {
    request_interrupt_window: 0, immediate_exit: 1, padding1: 2, exit_reason: 8,
    ready_for_interrupt_injection: 12, if_flag: 13, flags: 14, cr8: 16, apic_base: 24
});
assert_layout!(KvmRunHypercall, 72, 8, { nr: 0, args: 8, ret: 56, flags: 64 });
assert_layout!(KvmRunSystemEvent, 136, 8, { r#type: 0, ndata: 4, data: 8 });
assert_layout!(KvmRunMemoryFault, 24, 8, { flags: 0, gpa: 8, size: 16 });
assert_layout!(KvmExitSnpReqCerts, 24, 8, { gpa: 0, npages: 8, ret: 16 });
