//! Intel TDX: `enum kvm_tdx_cmd_id`, `struct kvm_tdx_cmd`, the capability / init structs,
//! the `KVM_EXIT_TDX` (exit 40) layout and the TDVMCALL codes.
//!
//! All TDX sub-commands use [`crate::KVM_MEMORY_ENCRYPT_OP`] with a [`KvmTdxCmd`], on the
//! VM fd or the vCPU fd depending on the command ([`TdxCmdId::scope`]). Common rule:
//! `hw_error` must be 0 on input (`-EINVAL`). The documented flow is: `KVM_CREATE_VM(TDX)` →
//! [`KVM_TDX_CAPABILITIES`] → [`KVM_TDX_INIT_VM`] → create vCPUs → [`KVM_TDX_INIT_VCPU`] →
//! `KVM_SET_CPUID2` → [`KVM_TDX_INIT_MEM_REGION`] (per region, PRIVATE first) →
//! [`KVM_TDX_FINALIZE_VM`].

use crate::cpuid::{CpuidFamHeader, KvmCpuid2};

uapi_consts! { CMD_IDS;
    /// `KVM_TDX_CAPABILITIES` (0), **VM scope** (a VM created as TDX; `-ENOTTY` otherwise):
    /// fills a [`KvmTdxCapabilities`]. Allowed in any TD state, no locks, `flags` 0.
    ///
    /// **Trap:** input `cpuid.nent` must be ≥ the module's number of configurable leaves,
    /// else `-E2BIG` and **nent is not updated**: grow the buffer and retry blindly. This
    /// command does not copy the `kvm_tdx_cmd` back.
    pub const KVM_TDX_CAPABILITIES: u32 = 0;
    /// `KVM_TDX_INIT_VM` (1), VM scope, before any vCPU: [`KvmTdxInitVm`]. `hw_error` is
    /// written back.
    pub const KVM_TDX_INIT_VM: u32 = 1;
    /// `KVM_TDX_INIT_VCPU` (2), vCPU scope: `data` is an **immediate**, the initial guest
    /// RCX (not a pointer).
    pub const KVM_TDX_INIT_VCPU: u32 = 2;
    /// `KVM_TDX_INIT_MEM_REGION` (3), vCPU scope: [`KvmTdxInitMemRegion`] (in/out), `flags`
    /// 0 or [`KVM_TDX_MEASURE_MEMORY_REGION`].
    pub const KVM_TDX_INIT_MEM_REGION: u32 = 3;
    /// `KVM_TDX_FINALIZE_VM` (4), VM scope, `data` 0: seals the measurement (MRTD).
    pub const KVM_TDX_FINALIZE_VM: u32 = 4;
    /// `KVM_TDX_GET_CPUID` (5), vCPU scope: a `kvm_cpuid2` buffer (in/out). If it is too
    /// small the result is `-E2BIG` **and `nent` is written back** with the needed count
    /// (unlike KVM_TDX_CAPABILITIES).
    pub const KVM_TDX_GET_CPUID: u32 = 5;
    /// `KVM_TDX_CMD_NR_MAX` (6): enum terminator.
    pub const KVM_TDX_CMD_NR_MAX: u32 = 6;
    /// `KVM_TDX_MEASURE_MEMORY_REGION` (bit 0 of [`KvmTdxCmd::flags`] for
    /// [`KVM_TDX_INIT_MEM_REGION`]): extend each page into MRTD (TDH.MR.EXTEND, 256-byte
    /// chunks).
    pub const KVM_TDX_MEASURE_MEMORY_REGION: u64 = 1 << 0;
}

/// The fd a TDX sub-command goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TdxScope {
    /// The VM fd.
    Vm,
    /// A vCPU fd.
    Vcpu,
}

/// Every `KVM_TDX_*` sub-command as a typed enum (`enum kvm_tdx_cmd_id`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u32)]
pub enum TdxCmdId {
    /// [`KVM_TDX_CAPABILITIES`]
    Capabilities = KVM_TDX_CAPABILITIES,
    /// [`KVM_TDX_INIT_VM`]
    InitVm = KVM_TDX_INIT_VM,
    /// [`KVM_TDX_INIT_VCPU`]
    InitVcpu = KVM_TDX_INIT_VCPU,
    /// [`KVM_TDX_INIT_MEM_REGION`]
    InitMemRegion = KVM_TDX_INIT_MEM_REGION,
    /// [`KVM_TDX_FINALIZE_VM`]
    FinalizeVm = KVM_TDX_FINALIZE_VM,
    /// [`KVM_TDX_GET_CPUID`]
    GetCpuid = KVM_TDX_GET_CPUID,
}

impl TdxCmdId {
    /// Every sub-command in numeric order.
    pub const ALL: [Self; 6] = [
        Self::Capabilities,
        Self::InitVm,
        Self::InitVcpu,
        Self::InitMemRegion,
        Self::FinalizeVm,
        Self::GetCpuid,
    ];

    /// Decodes a raw id.
    pub const fn from_raw(raw: u32) -> Option<Self> {
        if raw < KVM_TDX_CMD_NR_MAX {
            Some(Self::ALL[raw as usize])
        } else {
            None
        }
    }

    /// The raw id.
    pub const fn raw(self) -> u32 {
        self as u32
    }

    /// Which fd the command must be issued on; the other fd's dispatcher does not know the
    /// command and rejects it.
    pub const fn scope(self) -> TdxScope {
        match self {
            Self::Capabilities | Self::InitVm | Self::FinalizeVm => TdxScope::Vm,
            Self::InitVcpu | Self::InitMemRegion | Self::GetCpuid => TdxScope::Vcpu,
        }
    }

    /// The kernel name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Capabilities => "KVM_TDX_CAPABILITIES",
            Self::InitVm => "KVM_TDX_INIT_VM",
            Self::InitVcpu => "KVM_TDX_INIT_VCPU",
            Self::InitMemRegion => "KVM_TDX_INIT_MEM_REGION",
            Self::FinalizeVm => "KVM_TDX_FINALIZE_VM",
            Self::GetCpuid => "KVM_TDX_GET_CPUID",
        }
    }
}

uapi_structs! { STRUCTS;
    /// The argument of [`crate::KVM_MEMORY_ENCRYPT_OP`] for TDX (`struct kvm_tdx_cmd`,
    /// 24 bytes).
    #[repr(C)]
    pub struct KvmTdxCmd as "kvm_tdx_cmd" {
        /// The sub-command ([`TdxCmdId`]).
        pub id: u32,
        /// Sub-command flags (0 unless documented).
        pub flags: u32,
        /// A user pointer or an immediate, depending on the command.
        pub data: u64,
        /// Must be 0 on input; out: the TDX module (SEAMCALL) status for INIT_VM and
        /// FINALIZE_VM.
        pub hw_error: u64,
    }

    /// [`KVM_TDX_CAPABILITIES`] output header (`struct kvm_tdx_capabilities`, 2056 bytes),
    /// followed by `cpuid.nent` configurable-CPUID entries (2056 + 40·n bytes in all; use
    /// [`TdxCapabilitiesBuf`]).
    ///
    /// Each returned CPUID entry is a *mask of configurable bits*: a sub-leaf of
    /// 0xFFFFFFFF is reported as 0; leaf 0x80000008 EAX\[23:16\] reads 0xff (the GPAW knob,
    /// only 48 or 52 accepted); TSX and WAITPKG bits are cleared.
    #[repr(C)]
    pub struct KvmTdxCapabilities as "kvm_tdx_capabilities" {
        /// TD attributes user space may set (a zero value from the module gives `-EIO`).
        pub supported_attrs: u64,
        /// XFAM bits user space may set.
        pub supported_xfam: u64,
        /// TDVMCALL sub-functions (leaf 1, R11) handled by the kernel (0 in 7.3).
        pub kernel_tdvmcallinfo_1_r11: u64,
        /// TDVMCALL sub-functions (leaf 1, R11) forwarded to user space: `BIT(1)`,
        /// SetupEventNotifyInterrupt, in 7.3.
        pub user_tdvmcallinfo_1_r11: u64,
        /// Leaf 1 R12, kernel (0 in 7.3).
        pub kernel_tdvmcallinfo_1_r12: u64,
        /// Leaf 1 R12, user (0 in 7.3).
        pub user_tdvmcallinfo_1_r12: u64,
        /// Reserved.
        pub reserved: [u64; 250],
        /// The CPUID array header (in: capacity; out: count).
        pub cpuid: KvmCpuid2,
    }

    /// [`KVM_TDX_INIT_VM`] argument header (`struct kvm_tdx_init_vm`, 264 bytes), followed
    /// by `cpuid.nent` ≤ 256 entries (264 + 40·n bytes; use [`TdxInitVmBuf`]).
    ///
    /// KVM checks: TD uninitialized, `kvm_tdx_cmd.flags == 0`, `nent ≤ 256` (`-E2BIG`),
    /// `reserved` all zero, `cpuid.padding == 0`, `nent` stable between its two reads
    /// (`-EINVAL` otherwise).
    #[repr(C)]
    pub struct KvmTdxInitVm as "kvm_tdx_init_vm" {
        /// TD attributes (within `supported_attrs`).
        pub attributes: u64,
        /// Extended feature mask (within `supported_xfam`).
        pub xfam: u64,
        /// MRCONFIGID (SHA-384 digest).
        pub mrconfigid: [u64; 6],
        /// MROWNER (SHA-384 digest).
        pub mrowner: [u64; 6],
        /// MROWNERCONFIG (SHA-384 digest).
        pub mrownerconfig: [u64; 6],
        /// Must be zero.
        pub reserved: [u64; 12],
        /// The CPUID array header (count of entries that follow).
        pub cpuid: KvmCpuid2,
    }

    /// [`KVM_TDX_INIT_MEM_REGION`] argument (`struct kvm_tdx_init_mem_region`, 24 bytes,
    /// **in/out**).
    ///
    /// `source_addr` non-zero and page-aligned, `gpa` page-aligned and private (shared bit
    /// clear), `nr_pages` non-zero, the range already PRIVATE. The struct is **always copied
    /// back** with the remaining range, even on error; a pending signal gives `-EINTR` with
    /// partial progress.
    #[repr(C)]
    pub struct KvmTdxInitMemRegion as "kvm_tdx_init_mem_region" {
        /// User address of the source pages.
        pub source_addr: u64,
        /// Guest physical address.
        pub gpa: u64,
        /// Number of 4 KiB pages.
        pub nr_pages: u64,
    }

    /// The `tdx` arm of the `kvm_run` exit union for [`crate::KVM_EXIT_TDX`] (64 bytes at
    /// `kvm_run` offset 32). The inner union starting at offset 16 of this struct (kvm_run
    /// offset 48) is read through [`KvmRunTdxGetQuote`], [`KvmRunTdxGetTdvmcallInfo`],
    /// [`KvmRunTdxSetupEventNotify`] or [`KvmRunTdxUnknown`], chosen by `nr`.
    #[repr(C)]
    pub struct KvmRunTdx as ("kvm_run", "tdx") {
        /// Always 0.
        pub flags: u64,
        /// The TDVMCALL leaf (guest R11), e.g. [`TDVMCALL_GET_QUOTE`].
        pub nr: u64,
        /// The anonymous union of the per-call arms (each starts with `ret`).
        @anon pub args: [u64; 6],
    }

    /// `kvm_run.tdx.unknown` (kvm_run offset 48): any other leaf.
    #[repr(C)]
    pub struct KvmRunTdxUnknown as ("kvm_run", "tdx.unknown") {
        /// Status returned to the guest.
        pub ret: u64,
        /// Raw arguments.
        pub data: [u64; 5],
    }

    /// `kvm_run.tdx.get_quote` (kvm_run offset 48), for [`TDVMCALL_GET_QUOTE`]. KVM
    /// pre-fills `ret` with [`TDVMCALL_STATUS_SUBFUNC_UNSUPPORTED`]; `gpa` has the shared bit
    /// stripped (a private GPA is rejected in the kernel).
    #[repr(C)]
    pub struct KvmRunTdxGetQuote as ("kvm_run", "tdx.get_quote") {
        /// Status returned to the guest (write before the next `KVM_RUN`).
        pub ret: u64,
        /// Shared GPA of the quote buffer.
        pub gpa: u64,
        /// Its size.
        pub size: u64,
    }

    /// `kvm_run.tdx.get_tdvmcall_info` (kvm_run offset 48), for
    /// [`TDVMCALL_GET_TD_VM_CALL_INFO`] with leaf 1 (leaf 0 is answered in the kernel). KVM
    /// pre-fills `ret` with success; `r11`–`r14` are copied back to the guest.
    #[repr(C)]
    pub struct KvmRunTdxGetTdvmcallInfo as ("kvm_run", "tdx.get_tdvmcall_info") {
        /// Status.
        pub ret: u64,
        /// The requested leaf (guest R12).
        pub leaf: u64,
        /// Output R11.
        pub r11: u64,
        /// Output R12.
        pub r12: u64,
        /// Output R13.
        pub r13: u64,
        /// Output R14.
        pub r14: u64,
    }

    /// `kvm_run.tdx.setup_event_notify` (kvm_run offset 48), for
    /// [`TDVMCALL_SETUP_EVENT_NOTIFY_INTERRUPT`]; only vectors 32..=255 reach user space.
    #[repr(C)]
    pub struct KvmRunTdxSetupEventNotify as ("kvm_run", "tdx.setup_event_notify") {
        /// Status (pre-filled with SUBFUNC_UNSUPPORTED).
        pub ret: u64,
        /// The interrupt vector.
        pub vector: u64,
    }
}

impl CpuidFamHeader for KvmTdxCapabilities {
    const CPUID_OFFSET: usize = core::mem::offset_of!(KvmTdxCapabilities, cpuid);
}

impl CpuidFamHeader for KvmTdxInitVm {
    const CPUID_OFFSET: usize = core::mem::offset_of!(KvmTdxInitVm, cpuid);
}

/// A heap-allocated [`KvmTdxCapabilities`] with room for its CPUID entries (feature
/// `alloc`). Set `nent` to the capacity before the call ([`crate::CpuidFam::set_nent_to_capacity`]).
#[cfg(feature = "alloc")]
pub type TdxCapabilitiesBuf = crate::CpuidFam<KvmTdxCapabilities, alloc::vec::Vec<u64>>;

/// A heap-allocated [`KvmTdxInitVm`] with room for its CPUID entries (feature `alloc`).
#[cfg(feature = "alloc")]
pub type TdxInitVmBuf = crate::CpuidFam<KvmTdxInitVm, alloc::vec::Vec<u64>>;

impl KvmTdxCmd {
    /// A command with `data` (pointer or immediate) and `flags`; `hw_error` is 0 as KVM
    /// requires.
    pub const fn new(id: TdxCmdId, flags: u32, data: u64) -> Self {
        Self {
            id: id.raw(),
            flags,
            data,
            hw_error: 0,
        }
    }
}

/// `TDVMCALL_GET_TD_VM_CALL_INFO` (0x10000, `asm/shared/tdx.h`, kernel-internal).
pub const TDVMCALL_GET_TD_VM_CALL_INFO: u64 = 0x10000;
/// `TDVMCALL_MAP_GPA` (0x10001): handled in the kernel, surfaces as
/// `KVM_EXIT_HYPERCALL` / `KVM_HC_MAP_GPA_RANGE` in chunks of ≤ 2 MiB.
pub const TDVMCALL_MAP_GPA: u64 = 0x10001;
/// `TDVMCALL_GET_QUOTE` (0x10002): exits with [`KvmRunTdxGetQuote`].
pub const TDVMCALL_GET_QUOTE: u64 = 0x10002;
/// `TDVMCALL_REPORT_FATAL_ERROR` (0x10003): surfaces as `KVM_EXIT_SYSTEM_EVENT` type
/// [`crate::KVM_SYSTEM_EVENT_TDX_FATAL`] with 16 GPRs in `data`.
pub const TDVMCALL_REPORT_FATAL_ERROR: u64 = 0x10003;
/// `TDVMCALL_SETUP_EVENT_NOTIFY_INTERRUPT` (0x10004): exits with
/// [`KvmRunTdxSetupEventNotify`].
pub const TDVMCALL_SETUP_EVENT_NOTIFY_INTERRUPT: u64 = 0x10004;

/// TDVMCALL status `SUCCESS` (0).
pub const TDVMCALL_STATUS_SUCCESS: u64 = 0;
/// TDVMCALL status `RETRY` (1).
pub const TDVMCALL_STATUS_RETRY: u64 = 1;
/// TDVMCALL status `INVALID_OPERAND`.
pub const TDVMCALL_STATUS_INVALID_OPERAND: u64 = 0x8000_0000_0000_0000;
/// TDVMCALL status `ALIGN_ERROR`.
pub const TDVMCALL_STATUS_ALIGN_ERROR: u64 = 0x8000_0000_0000_0002;
/// TDVMCALL status `SUBFUNC_UNSUPPORTED`.
pub const TDVMCALL_STATUS_SUBFUNC_UNSUPPORTED: u64 = 0x8000_0000_0000_0003;

// Layout facts (linux-uapi.md §4, §4.1).
assert_layout!(KvmTdxCmd, 24, 8, { id: 0, flags: 4, data: 8, hw_error: 16 });
assert_layout!(KvmTdxCapabilities, 2056, 8, {
    supported_attrs: 0, supported_xfam: 8, kernel_tdvmcallinfo_1_r11: 16,
    user_tdvmcallinfo_1_r11: 24, kernel_tdvmcallinfo_1_r12: 32, user_tdvmcallinfo_1_r12: 40,
    reserved: 48, cpuid: 2048
});
assert_layout!(KvmTdxInitVm, 264, 8, {
    attributes: 0, xfam: 8, mrconfigid: 16, mrowner: 64, mrownerconfig: 112, reserved: 160,
    cpuid: 256
});
assert_layout!(KvmTdxInitMemRegion, 24, 8, { source_addr: 0, gpa: 8, nr_pages: 16 });
// kvm_run offsets minus the `tdx` member's offset 32.
assert_layout!(KvmRunTdx, 64, 8, { flags: 0, nr: 8, args: 16 });
assert_layout!(KvmRunTdxUnknown, 48, 8, { ret: 0, data: 8 });
assert_layout!(KvmRunTdxGetQuote, 24, 8, { ret: 0, gpa: 8, size: 16 });
assert_layout!(KvmRunTdxGetTdvmcallInfo, 48, 8, {
    ret: 0, leaf: 8, r11: 16, r12: 24, r13: 32, r14: 40
});
assert_layout!(KvmRunTdxSetupEventNotify, 16, 8, { ret: 0, vector: 8 });
