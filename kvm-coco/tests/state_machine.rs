//! Model-based state-machine tests of the software host: random command sequences (proptest)
//! sent as real `ioctl(2)` calls with raw argument structs — `KVM_CREATE_VM`,
//! `KVM_MEMORY_ENCRYPT_OP` sub-commands of SEV, SEV-ES, SNP and TDX, `KVM_CREATE_VCPU`,
//! `SEV_ISSUE_CMD` on `/dev/sev` — on the fds the software host hands out, so the bytes the
//! kernel would see are what is tested.
//!
//! Every answer (errno, firmware status in `kvm_sev_cmd.error`, TDX `hw_error`, written-back
//! lengths) is compared with a reference transition table written in this file from the
//! facts (`/work/shared/facts`: linux-uapi.md §3, §4, §7, §9, §10; firmware-and-measurement.md
//! §1.4, §1.8, §5.1, §5.4, §6), never from the implementation. Steps whose answer the facts
//! do not determine (a second legacy LAUNCH_START, re-populating a page, …) are not issued;
//! they are counted as skipped.
//!
//! After every step these invariants are checked:
//!
//! - ASIDs (linux-uapi §9.2, firmware §6.3): KVM hands out the lowest free ASID of the
//!   class's range; a freed ASID stays used until a flush, which happens only when a range is
//!   full; the firmware's view of each ASID (allocated at LAUNCH_START, in use after
//!   LAUNCH_FINISH, dirty or clean after the VM is destroyed) matches; an ASID that is dirty
//!   in the firmware is never bound again before DF_FLUSH; no two live VMs share one.
//! - Private memory is never readable from the host: after a measured update, neither the
//!   encrypted SEV page nor, for SNP and TDX, the shared mapping or the guest_memfd at the
//!   populated GPA shows the plaintext; the guest itself (`KVM_RUN` after the launch) reads
//!   the plaintext back as private memory.
//! - A rejected command leaves the measurement unchanged: the SEV launch digest (SHA-256
//!   over the accepted updates, firmware §1.4) is predicted here and checked through
//!   LAUNCH_MEASURE's HMAC; the TD's MRTD (SHA-384 over the PAGE.ADD and MR.EXTEND blocks of
//!   the accepted INIT_MEM_REGIONs, firmware §5.1) is predicted and checked against the
//!   TDREPORT the TD obtains; a rejected LAUNCH_UPDATE_DATA leaves the page untouched. (SEV-ES
//!   digests after LAUNCH_UPDATE_VMSA and SNP digests include VMSAs this test does not
//!   rebuild: tests/lifecycles.rs checks those against the offline calculator.)
//! - A finished launch cannot be updated (every update after LAUNCH_FINISH /
//!   SNP_LAUNCH_FINISH / FINALIZE_VM is refused).
//! - No fd or memfd outlives its VM: `/proc/self/fd` and its memfd links are counted before
//!   and after each case.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::RawFd;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use kvm_coco::sim::host::SoftwareHost;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use psp_driver::AsidClass;
use psp_driver::sim::AsidState;
use sha2::{Digest, Sha256, Sha384};

// ---- ioctl numbers (linux-uapi §2, §5.1, §7.1) ------------------------------------------

const KVM_CREATE_VM: u64 = 0xAE01;
const KVM_CREATE_VCPU: u64 = 0xAE41;
const KVM_MEMORY_ENCRYPT_OP: u64 = 0xC008_AEBA;
const KVM_SET_USER_MEMORY_REGION2: u64 = 0x40A0_AE49;
const KVM_SET_MEMORY_ATTRIBUTES: u64 = 0x4020_AED2;
const KVM_CREATE_GUEST_MEMFD: u64 = 0xC040_AED4;
const KVM_ENABLE_CAP: u64 = 0x4068_AEA3;
const SEV_ISSUE_CMD: u64 = 0xC010_5300;
const KVM_RUN: u64 = 0xAE80;
/// `KVM_GET_VCPU_MMAP_SIZE` (`_IO(KVMIO, 0x04)`, /dev/kvm).
const KVM_GET_VCPU_MMAP_SIZE: u64 = 0xAE04;
/// `KVM_CAP_EXIT_HYPERCALL` and its MAP_GPA_RANGE bit (linux-uapi §5.1).
const KVM_CAP_EXIT_HYPERCALL: u32 = 201;
/// `kvm_run` exit reasons and system-event types (linux-uapi §5.1, §4.1).
const KVM_EXIT_HYPERCALL: u32 = 3;
const KVM_EXIT_SYSTEM_EVENT: u32 = 24;
const KVM_EXIT_MEMORY_FAULT: u32 = 39;
const KVM_EXIT_TDX: u32 = 40;
const KVM_SYSTEM_EVENT_SEV_TERM: u32 = 6;
const KVM_SYSTEM_EVENT_TDX_FATAL: u32 = 7;
/// `KVM_CAP_SPLIT_IRQCHIP` (include/uapi/linux/kvm.h).
const KVM_CAP_SPLIT_IRQCHIP: u32 = kvm_bindings::KVM_CAP_SPLIT_IRQCHIP;

/// VM types (linux-uapi §1).
const SEV_VM: u64 = 2;
const SEV_ES_VM: u64 = 3;
const SNP_VM: u64 = 4;
const TDX_VM: u64 = 5;

/// Firmware status codes (firmware §1.2).
const INVALID_PLATFORM_STATE: u32 = 0x01;
const INVALID_GUEST_STATE: u32 = 0x02;
const INVALID_LENGTH: u32 = 0x04;

/// `TDX_NO_VCPUS` (firmware §5.1, TDH.MR.FINALIZE).
const TDX_NO_VCPUS: u64 = 0xC000_0609_0000_0000;

/// Guest-physical base and size of every VM's RAM.
const GPA: u64 = 0x10_0000;
const PAGES: usize = 8;
const PAGE: usize = 4096;
/// SNP and TDX populate pages `0..POPULATED`; the last two stay for the guest's shared
/// quote buffer.
const POPULATED: u8 = 6;

// ---- argument structs (layouts from linux-uapi §2, §3.2, §3.3, §4, §5.1, §7.1) ------------

#[repr(C)]
#[derive(Default)]
struct SevCmd {
    id: u32,
    pad0: u32,
    data: u64,
    error: u32,
    sev_fd: u32,
}

#[repr(C)]
#[derive(Default)]
struct SevInit {
    vmsa_features: u64,
    flags: u32,
    ghcb_version: u16,
    pad1: u16,
    pad2: [u32; 8],
}

#[repr(C)]
#[derive(Default)]
struct LaunchStart {
    handle: u32,
    policy: u32,
    dh_uaddr: u64,
    dh_len: u32,
    pad0: u32,
    session_uaddr: u64,
    session_len: u32,
    pad1: u32,
}

/// `kvm_sev_launch_update_data`, also `kvm_sev_launch_measure`.
#[repr(C)]
#[derive(Default)]
struct UaddrLen {
    uaddr: u64,
    len: u32,
    pad0: u32,
}

#[repr(C)]
#[derive(Default)]
struct GuestStatus {
    handle: u32,
    policy: u32,
    state: u32,
}

#[repr(C)]
#[derive(Default)]
struct SnpLaunchStart {
    policy: u64,
    gosvw: [u8; 16],
    flags: u16,
    pad0: [u8; 6],
    pad1: [u64; 4],
}

#[repr(C)]
#[derive(Default)]
struct SnpLaunchUpdate {
    gfn_start: u64,
    uaddr: u64,
    len: u64,
    page_type: u8,
    pad0: u8,
    flags: u16,
    pad1: u32,
    pad2: [u64; 4],
}

#[repr(C)]
#[derive(Default)]
struct SnpLaunchFinish {
    id_block_uaddr: u64,
    id_auth_uaddr: u64,
    id_block_en: u8,
    auth_key_en: u8,
    vcek_disabled: u8,
    host_data: [u8; 32],
    pad0: [u8; 3],
    flags: u16,
    pad1: [u64; 4],
}

#[repr(C)]
#[derive(Default)]
struct TdxCmd {
    id: u32,
    flags: u32,
    data: u64,
    hw_error: u64,
}

#[repr(C)]
#[derive(Default)]
struct TdxInitMemRegion {
    source_addr: u64,
    gpa: u64,
    nr_pages: u64,
}

#[repr(C)]
#[derive(Default)]
struct Region2 {
    slot: u32,
    flags: u32,
    guest_phys_addr: u64,
    memory_size: u64,
    userspace_addr: u64,
    guest_memfd_offset: u64,
    guest_memfd: u32,
    pad1: u32,
    pad2: [u64; 14],
}

#[repr(C)]
#[derive(Default)]
struct MemoryAttributes {
    address: u64,
    size: u64,
    attributes: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct CreateGuestMemfd {
    size: u64,
    flags: u64,
    reserved: [u64; 6],
}

#[repr(C)]
struct EnableCap {
    cap: u32,
    flags: u32,
    args: [u64; 4],
    pad: [u8; 64],
}

#[repr(C, packed)]
#[derive(Default)]
struct SevIssueCmd {
    cmd: u32,
    data: u64,
    error: u32,
}

const _: () = {
    assert!(size_of::<SevCmd>() == 24);
    assert!(size_of::<SevInit>() == 48);
    assert!(size_of::<LaunchStart>() == 40);
    assert!(size_of::<UaddrLen>() == 16);
    assert!(size_of::<GuestStatus>() == 12);
    assert!(size_of::<SnpLaunchStart>() == 64);
    assert!(size_of::<SnpLaunchUpdate>() == 64);
    assert!(size_of::<SnpLaunchFinish>() == 88);
    assert!(std::mem::offset_of!(SnpLaunchFinish, host_data) == 19);
    assert!(std::mem::offset_of!(SnpLaunchFinish, flags) == 54);
    assert!(size_of::<TdxCmd>() == 24);
    assert!(size_of::<TdxInitMemRegion>() == 24);
    assert!(size_of::<Region2>() == 160);
    assert!(size_of::<MemoryAttributes>() == 32);
    assert!(size_of::<CreateGuestMemfd>() == 64);
    assert!(size_of::<EnableCap>() == 104);
    assert!(size_of::<SevIssueCmd>() == 16);
};

/// `ioctl(fd, req, arg)`: the result or the errno.
fn ioctl(fd: RawFd, req: u64, arg: u64) -> Result<i32, i32> {
    // SAFETY: every caller passes as `arg` either an integer the request takes by value or
    // the address of a live struct of the size the request encodes (or that the
    // sub-command's `data` names), which outlives the call.
    let r = unsafe { libc::ioctl(fd, req as libc::c_ulong, arg) };
    if r < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap())
    } else {
        Ok(r)
    }
}

fn close(fd: RawFd) {
    // SAFETY: `fd` is an fd this test opened and closes exactly once.
    unsafe { libc::close(fd) };
}

fn errno_name(e: Option<i32>) -> String {
    match e {
        None => "ok".into(),
        Some(e) => format!("{} ({e})", std::io::Error::from_raw_os_error(e)),
    }
}

/// An anonymous shared mapping of `len` bytes, unmapped on drop.
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Mapping {
    fn new(len: usize) -> Self {
        // SAFETY: a fresh anonymous mapping; no existing memory is affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        Self { ptr: p.cast(), len }
    }
    fn addr(&self) -> u64 {
        self.ptr as u64
    }
    fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping is `len` readable bytes while `self` lives. The software host
        // writes into it only during this thread's own ioctls, never concurrently.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
    fn write(&self, off: usize, data: &[u8]) {
        assert!(off + data.len() <= self.len);
        // SAFETY: in bounds (checked), the mapping is writable and not otherwise borrowed.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.add(off), data.len()) };
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping this value created; nothing refers to it afterwards.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// Page contents that differ in every 32-byte chunk, from a counter.
fn pattern(len: usize, salt: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut x = salt.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

/// Whether any 32-byte aligned chunk of `plain` appears at the same offset in `seen`.
fn leaks_plaintext(seen: &[u8], plain: &[u8]) -> bool {
    seen.chunks(32).zip(plain.chunks(32)).any(|(a, b)| a == b)
}

// ---- the command alphabet ------------------------------------------------------------

/// The technology of a VM slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tee {
    Sev,
    SevEs,
    Snp,
    Tdx,
}

impl Tee {
    fn vm_type(self) -> u64 {
        match self {
            Tee::Sev => SEV_VM,
            Tee::SevEs => SEV_ES_VM,
            Tee::Snp => SNP_VM,
            Tee::Tdx => TDX_VM,
        }
    }
    fn amd(self) -> bool {
        self != Tee::Tdx
    }
}

#[derive(Clone, Copy, Debug)]
enum Op {
    // KVM_MEMORY_ENCRYPT_OP, AMD (linux-uapi §3.1).
    Init2,
    LaunchStart,
    UpdateData {
        page: u8,
        pages: u8,
    },
    UpdateVmsa,
    MeasureQuery,
    Measure,
    Finish,
    GuestStatus,
    SnpStart,
    SnpUpdate {
        page: u8,
    },
    SnpFinish,
    NoHandler {
        id: u32,
    },
    // KVM_MEMORY_ENCRYPT_OP, TDX (linux-uapi §4).
    TdxCaps {
        small: bool,
    },
    TdxInitVm,
    TdxInitVcpu {
        vcpu: u8,
    },
    TdxInitMem {
        vcpu: u8,
        page: u8,
        measure: bool,
    },
    TdxFinalize,
    // Generic.
    /// SNP, TDX after the launch: `KVM_RUN` the guest (read a populated page privately;
    /// TDX: TDREPORT through GetQuote) and check what it saw.
    RunGuest,
    CreateVcpu,
    Destroy,
    // /dev/sev (linux-uapi §7).
    PlatformStatus,
    SnpPlatformStatus,
    PekGen,
    PdhGen,
    BadSevCmd,
}

/// The operation a generated step `(sel, a, b)` names on a VM of `tee`.
fn op_for(tee: Tee, sel: u8, a: u8, b: u8) -> Op {
    let page = a % PAGES as u8;
    let amd_common = |s: u8| match s {
        0 => Op::Destroy,
        1 => Op::CreateVcpu,
        2 => Op::PlatformStatus,
        3 => Op::SnpPlatformStatus,
        4 => Op::PekGen,
        5 => Op::PdhGen,
        6 => Op::BadSevCmd,
        _ => Op::NoHandler {
            id: [10, 14, 19, 104][usize::from(b % 4)],
        },
    };
    match tee {
        Tee::Sev | Tee::SevEs => match sel % 20 {
            0..=1 => Op::Init2,
            2..=3 => Op::LaunchStart,
            4..=7 => Op::UpdateData {
                page,
                pages: 1 + b % 2,
            },
            8 => Op::UpdateVmsa,
            9 => Op::MeasureQuery,
            10..=11 => Op::Measure,
            12 => Op::Finish,
            13 => Op::GuestStatus,
            14 => Op::SnpStart,
            s => amd_common(s - 15 + (b % 3) * 2),
        },
        Tee::Snp => match sel % 20 {
            0..=1 => Op::Init2,
            2..=3 => Op::SnpStart,
            4..=8 => Op::SnpUpdate {
                page: a % POPULATED,
            },
            9..=10 => Op::SnpFinish,
            11 => Op::LaunchStart,
            12 => Op::GuestStatus,
            13 => Op::UpdateData { page, pages: 1 },
            s => amd_common(s - 14 + (b % 2) * 3),
        },
        Tee::Tdx => match sel % 20 {
            0..=1 => Op::TdxCaps {
                small: b.is_multiple_of(3),
            },
            2..=3 => Op::TdxInitVm,
            4..=6 => Op::CreateVcpu,
            7..=8 => Op::TdxInitVcpu { vcpu: b % 3 },
            9..=14 => Op::TdxInitMem {
                vcpu: b % 3,
                page: a % POPULATED,
                measure: b.is_multiple_of(2),
            },
            15..=16 => Op::TdxFinalize,
            17 => Op::Destroy,
            _ => Op::PlatformStatus,
        },
    }
}

/// The next step of the launch protocol (linux-uapi §10) for `vm` in its reference state:
/// most generated steps follow the protocol, so that sequences reach the late states.
fn guided(vm: Option<&VmRef>, tee: Tee, a: u8, b: u8) -> Op {
    let Some(vm) = vm else {
        return if tee == Tee::Tdx {
            Op::TdxInitVm
        } else {
            Op::Init2
        };
    };
    let free_page = || {
        (0..POPULATED)
            .map(|i| (a.wrapping_add(i)) % POPULATED)
            .find(|p| !vm.populated.contains(p))
    };
    match tee {
        Tee::Sev | Tee::SevEs => match vm.sev {
            _ if !vm.inited => Op::Init2,
            _ if vm.vcpu_fds.is_empty() => Op::CreateVcpu,
            SevGuest::None => Op::LaunchStart,
            SevGuest::LUpdate => match b % 4 {
                0 if tee == Tee::SevEs && !vm.vmsa_done && a.is_multiple_of(2) => Op::UpdateVmsa,
                0 => Op::Measure,
                _ => Op::UpdateData {
                    page: a % (PAGES as u8 - 1),
                    pages: 1 + b % 2,
                },
            },
            SevGuest::LSecret => Op::Finish,
            SevGuest::Running => {
                [Op::Destroy, Op::GuestStatus, Op::PlatformStatus][usize::from(b % 3)]
            }
        },
        Tee::Snp => match vm.snp {
            _ if !vm.inited => Op::Init2,
            _ if vm.vcpu_fds.is_empty() => Op::CreateVcpu,
            SnpGuest::NoContext => Op::SnpStart,
            SnpGuest::Launch => match free_page() {
                Some(page) if !b.is_multiple_of(4) => Op::SnpUpdate { page },
                _ => Op::SnpFinish,
            },
            SnpGuest::Running => {
                [Op::Destroy, Op::SnpPlatformStatus, Op::RunGuest][usize::from(b % 3)]
            }
        },
        Tee::Tdx => match vm.td {
            TdState::Uninitialized => Op::TdxInitVm,
            TdState::Initialized => {
                if vm.vcpu_fds.is_empty() {
                    return Op::CreateVcpu;
                }
                if let Some(v) = vm.vcpu_inited.iter().position(|i| !i) {
                    return Op::TdxInitVcpu { vcpu: v as u8 };
                }
                match free_page() {
                    Some(page) if !b.is_multiple_of(4) => Op::TdxInitMem {
                        vcpu: b % vm.vcpu_fds.len() as u8,
                        page,
                        measure: a.is_multiple_of(2),
                    },
                    _ => Op::TdxFinalize,
                }
            }
            TdState::Runnable => {
                [Op::Destroy, Op::TdxCaps { small: false }, Op::RunGuest][usize::from(b % 3)]
            }
        },
    }
}

// ---- the reference model (from the facts) -------------------------------------------

/// The expected answer of one step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Expect {
    /// `None`: success.
    errno: Option<i32>,
    /// The firmware status to find in `kvm_sev_cmd.error` / `sev_issue_cmd.error`; `None`:
    /// not checked (the facts name no status for this answer).
    fw: Option<u32>,
}

const fn ok() -> Option<Expect> {
    Some(Expect {
        errno: None,
        fw: None,
    })
}
const fn err(e: i32) -> Option<Expect> {
    Some(Expect {
        errno: Some(e),
        fw: None,
    })
}
const fn fw_err(status: u32) -> Option<Expect> {
    Some(Expect {
        errno: Some(libc::EIO),
        fw: Some(status),
    })
}

/// Legacy SEV guest states (firmware §6.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SevGuest {
    /// No LAUNCH_START yet (UNINIT).
    None,
    LUpdate,
    LSecret,
    Running,
}

/// SNP guest context states (firmware §6.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SnpGuest {
    NoContext,
    Launch,
    Running,
}

/// TD states (linux-uapi §10.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TdState {
    Uninitialized,
    Initialized,
    Runnable,
}

/// One VM as the reference sees it, with the test's handles on it.
struct VmRef {
    tee: Tee,
    fd: RawFd,
    vcpu_fds: Vec<RawFd>,
    gmem_fd: Option<RawFd>,
    /// Shared RAM (the memslot's `userspace_addr`).
    ram: Mapping,
    // AMD
    inited: bool,
    asid: Option<u32>,
    sev: SevGuest,
    handle: u32,
    policy: u32,
    vmsa_done: bool,
    /// The launch digest input stream (firmware §1.4), while it is predictable (no VMSA).
    ld: Option<Sha256>,
    snp: SnpGuest,
    populated: BTreeSet<u8>,
    /// The plaintext of each populated page (SNP, TDX).
    plain: BTreeMap<u8, Vec<u8>>,
    /// The guest ran (and terminated).
    guest_ran: bool,
    /// The MRTD input stream (firmware §5.1): PAGE.ADD and MR.EXTEND blocks of the accepted
    /// INIT_MEM_REGIONs.
    mrtd: Sha384,
    // TDX
    td: TdState,
    bugged: bool,
    vcpu_inited: Vec<bool>,
}

/// The AMD host's ASIDs as KVM keeps them (linux-uapi §9.2): used and reclaimable bitmaps.
#[derive(Debug, Default)]
struct AsidRef {
    used: BTreeSet<u32>,
    reclaim: BTreeSet<u32>,
    flushes: u64,
    /// ASIDs the firmware holds dirty (deactivated after running) since the last flush.
    dirty: BTreeSet<u32>,
}

impl AsidRef {
    /// `sev_alloc_asid`: the lowest free ASID of `range`; if none, one flush (every
    /// reclaimable ASID freed) and a retry; `None` is `-EBUSY`.
    fn alloc(&mut self, range: std::ops::RangeInclusive<u32>) -> Option<u32> {
        let free = |s: &Self| range.clone().find(|a| !s.used.contains(a));
        let asid = match free(self) {
            Some(a) => a,
            None => {
                if !range.clone().any(|a| self.reclaim.contains(&a)) {
                    return None;
                }
                for a in std::mem::take(&mut self.reclaim) {
                    self.used.remove(&a);
                }
                self.flushes += 1;
                self.dirty.clear();
                free(self)?
            }
        };
        self.used.insert(asid);
        Some(asid)
    }
}

/// Platform-wide reference state.
#[derive(Debug, Default)]
struct PlatformRef {
    /// A legacy SEV INIT2 succeeded (the legacy platform is at least INIT, §10.1).
    legacy_inited: bool,
    /// A SNP INIT2 succeeded.
    snp_inited: bool,
    asids: AsidRef,
    min_sev_asid: u32,
    max_asid: u32,
}

impl PlatformRef {
    fn range(&self, tee: Tee) -> std::ops::RangeInclusive<u32> {
        // linux-uapi §9.2: SEV [min_sev_asid, max]; SEV-ES and SNP share [1, min_sev_asid-1].
        match tee {
            Tee::Sev => self.min_sev_asid..=self.max_asid,
            _ => 1..=self.min_sev_asid - 1,
        }
    }
}

/// Counts of the reference's live guests.
fn live_sev_guests(vms: &BTreeMap<u8, VmRef>) -> u32 {
    vms.values()
        .filter(|v| v.tee != Tee::Snp && v.tee.amd() && v.sev != SevGuest::None)
        .count() as u32
}
fn live_snp_guests(vms: &BTreeMap<u8, VmRef>) -> u32 {
    vms.values()
        .filter(|v| v.tee == Tee::Snp && v.snp != SnpGuest::NoContext)
        .count() as u32
}

/// The reference answer of `op` on `vm` (linux-uapi §3.1 dispatcher rules, §10; firmware §1.8,
/// §6), or `None` where the facts do not determine it (the step is then not issued).
fn expect_amd(vm: &VmRef, op: Op) -> Option<Expect> {
    let snp_active = vm.tee == Tee::Snp && vm.inited;
    let legacy = |f: &dyn Fn() -> Option<Expect>| {
        // §3.1 rule 3: once SNP-active, ids < 100 give EPERM; rule 5: before INIT, ENOTTY.
        if snp_active {
            err(libc::EPERM)
        } else if !vm.inited {
            err(libc::ENOTTY)
        } else {
            f()
        }
    };
    match op {
        Op::Init2 => {
            if snp_active {
                err(libc::EPERM)
            } else if vm.inited || !vm.vcpu_fds.is_empty() {
                // §10.1: a second INIT2, or INIT2 after KVM_CREATE_VCPU: EINVAL.
                err(libc::EINVAL)
            } else {
                ok()
            }
        }
        Op::LaunchStart => legacy(&|| match vm.sev {
            // §10.1 step 5; handle written back (firmware §1.8 step 6).
            SevGuest::None => ok(),
            // The facts do not say what a second LAUNCH_START does.
            _ => None,
        }),
        Op::UpdateData { page, pages } => {
            if usize::from(page) + usize::from(pages) > PAGES {
                return None;
            }
            legacy(&|| match vm.sev {
                // No LAUNCH_START: KVM issues with the remembered sev_fd, none yet (§2).
                SevGuest::None => err(libc::EBADF),
                SevGuest::LUpdate => ok(),
                _ => fw_err(INVALID_GUEST_STATE),
            })
        }
        Op::UpdateVmsa => match vm.tee {
            // §3.1 id 4: SEV-ES only, ENOTTY otherwise.
            Tee::Sev => err(libc::ENOTTY),
            Tee::Snp => {
                if snp_active {
                    err(libc::EPERM)
                } else {
                    None
                }
            }
            _ => legacy(&|| {
                if vm.vcpu_fds.is_empty() {
                    None
                } else if vm.vmsa_done {
                    // §10.2: a vCPU already protected: EINVAL.
                    err(libc::EINVAL)
                } else {
                    match vm.sev {
                        SevGuest::None => err(libc::EBADF),
                        SevGuest::LUpdate => ok(),
                        _ => fw_err(INVALID_GUEST_STATE),
                    }
                }
            }),
        },
        Op::MeasureQuery => legacy(&|| match vm.sev {
            SevGuest::None => err(libc::EBADF),
            // firmware §1.4: len < 48 gives INVALID_LENGTH with 48 written back.
            SevGuest::LUpdate => fw_err(INVALID_LENGTH),
            // firmware §1.8: the guest state is checked before the length.
            _ => fw_err(INVALID_GUEST_STATE),
        }),
        Op::Measure => legacy(&|| match vm.sev {
            SevGuest::None => err(libc::EBADF),
            SevGuest::LUpdate => ok(),
            _ => fw_err(INVALID_GUEST_STATE),
        }),
        Op::Finish => legacy(&|| match vm.sev {
            SevGuest::None => err(libc::EBADF),
            SevGuest::LSecret => ok(),
            _ => fw_err(INVALID_GUEST_STATE),
        }),
        Op::GuestStatus => legacy(&|| match vm.sev {
            SevGuest::None => err(libc::EBADF),
            _ => ok(),
        }),
        Op::SnpStart => {
            if vm.tee != Tee::Snp {
                return None;
            }
            if !vm.inited {
                // §10.3 table: SNP_LAUNCH_START before INIT2.
                err(libc::ENOTTY)
            } else if vm.snp != SnpGuest::NoContext {
                err(libc::EINVAL)
            } else {
                ok()
            }
        }
        Op::SnpUpdate { page } => {
            if !vm.inited || vm.snp == SnpGuest::NoContext {
                // §3.1 rule 5 exception, §10.3 table: no context gives EINVAL.
                return err(libc::EINVAL);
            }
            if vm.populated.contains(&page) {
                // An already-assigned page: EIO (§10.3 step 8), status not named.
                return err(libc::EIO);
            }
            match vm.snp {
                SnpGuest::Launch => ok(),
                // §10.3: firmware-detected state errors; firmware §3.5 LAUNCH_UPDATE step 9.
                _ => fw_err(INVALID_GUEST_STATE),
            }
        }
        Op::SnpFinish => {
            if !vm.inited {
                err(libc::ENOTTY)
            } else {
                match vm.snp {
                    SnpGuest::NoContext => err(libc::EINVAL),
                    SnpGuest::Launch => ok(),
                    // §10.3: twice, VMSAs already protected.
                    SnpGuest::Running if !vm.vcpu_fds.is_empty() => err(libc::EINVAL),
                    SnpGuest::Running => None,
                }
            }
        }
        Op::NoHandler { id } => {
            // §3.1 rule 3 (EPERM for ids < 100 once SNP-active), then rule 4 / §12.8: EINVAL.
            if snp_active && id < 100 {
                err(libc::EPERM)
            } else {
                err(libc::EINVAL)
            }
        }
        Op::RunGuest => {
            if vm.tee == Tee::Snp
                && vm.snp == SnpGuest::Running
                && !vm.vcpu_fds.is_empty()
                && !vm.guest_ran
                && !vm.populated.is_empty()
            {
                ok()
            } else {
                None
            }
        }
        Op::CreateVcpu => {
            if vm.vcpu_fds.len() >= 3 || vm.snp == SnpGuest::Running {
                None
            } else {
                ok()
            }
        }
        Op::Destroy => ok(),
        _ => None,
    }
}

/// The reference answer of a TDX step (linux-uapi §4, §10.4; firmware §5.1, §5.4).
fn expect_tdx(vm: &VmRef, op: Op) -> Option<Expect> {
    let vcpu_ok = |v: u8| usize::from(v) < vm.vcpu_fds.len();
    if vm.bugged && !matches!(op, Op::Destroy) {
        // A SEAMCALL failure bugged the VM (KVM_BUG_ON): every later call fails.
        return match op {
            Op::TdxInitVcpu { vcpu } | Op::TdxInitMem { vcpu, .. } if !vcpu_ok(vcpu) => None,
            Op::CreateVcpu | Op::TdxInitVcpu { .. } | Op::TdxInitMem { .. } => err(libc::EIO),
            _ => err(libc::EIO),
        };
    }
    match op {
        // §4: allowed in any TD state; E2BIG (nent not updated) below the module's count.
        Op::TdxCaps { small } => {
            if small {
                err(libc::E2BIG)
            } else {
                ok()
            }
        }
        Op::TdxInitVm => match vm.td {
            TdState::Uninitialized => ok(),
            _ => err(libc::EINVAL),
        },
        Op::CreateVcpu => match vm.td {
            _ if vm.vcpu_fds.len() >= 3 => None,
            TdState::Initialized => ok(),
            // §10.4 step 6: needs an INITIALIZED TD, else EIO.
            _ => err(libc::EIO),
        },
        Op::TdxInitVcpu { vcpu } => {
            if !vcpu_ok(vcpu) {
                None
            } else if vm.td == TdState::Runnable || vm.vcpu_inited[usize::from(vcpu)] {
                err(libc::EINVAL)
            } else {
                ok()
            }
        }
        Op::TdxInitMem { vcpu, page, .. } => {
            if !vcpu_ok(vcpu) {
                None
            } else if vm.td == TdState::Runnable || !vm.vcpu_inited[usize::from(vcpu)] {
                err(libc::EINVAL)
            } else if vm.populated.contains(&page) {
                None
            } else {
                ok()
            }
        }
        Op::RunGuest => {
            if vm.td == TdState::Runnable && vm.vcpu_inited.contains(&true) && !vm.guest_ran {
                ok()
            } else {
                None
            }
        }
        Op::TdxFinalize => match vm.td {
            TdState::Initialized if vm.vcpu_inited.iter().any(|&i| i) => ok(),
            // firmware §5.1: TDH.MR.FINALIZE without an initialized vCPU: TDX_NO_VCPUS,
            // which KVM reports as EIO with hw_error (linux-uapi §10.4).
            TdState::Initialized => err(libc::EIO),
            _ => err(libc::EINVAL),
        },
        Op::Destroy => ok(),
        _ => None,
    }
}

// ---- the driver ------------------------------------------------------------------------

/// Open fds of this process and how many of them are memfds.
fn fd_counts() -> (usize, usize) {
    let mut fds = 0;
    let mut memfds = 0;
    for e in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        fds += 1;
        if std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().starts_with("/memfd:")) {
            memfds += 1;
        }
    }
    (fds, memfds)
}

/// Test-wide state: the host, `/dev/kvm`, `/dev/sev` and the platform reference.
struct World {
    host: SoftwareHost,
    kvm: RawFd,
    sev: RawFd,
    plat: PlatformRef,
    steps: u64,
    skipped: u64,
    rejected: u64,
    cases: u64,
    /// Per command: (issued, accepted).
    per_op: BTreeMap<&'static str, (u64, u64)>,
}

fn open(path: &str) -> RawFd {
    let p = std::ffi::CString::new(path).unwrap();
    // SAFETY: a NUL-terminated path; the fd is owned by the caller.
    let fd = unsafe { libc::open(p.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    assert!(fd >= 0, "open {path}: {}", std::io::Error::last_os_error());
    fd
}

/// A check that fails the case with a message.
macro_rules! check {
    ($cond:expr, $($msg:tt)*) => {
        if !$cond {
            return Err(TestCaseError::fail(format!($($msg)*)));
        }
    };
}

impl World {
    fn fw(&self) -> &psp_driver::sim::SimFirmware {
        self.host
            .sev_host()
            .expect("the AMD model exists")
            .firmware()
    }

    /// The firmware's view of every ASID.
    fn asid_states(&self) -> Vec<(u32, AsidState)> {
        (1..=self.plat.max_asid)
            .map(|a| (a, self.fw().asid_state(a).unwrap()))
            .collect()
    }

    /// `SEV_ISSUE_CMD` on `/dev/sev`: the result and the `error` field.
    fn sev_issue(&self, cmd: u32, data: u64) -> (Result<i32, i32>, u32) {
        let mut c = SevIssueCmd {
            cmd,
            data,
            error: 0xdead_beef,
        };
        let r = ioctl(self.sev, SEV_ISSUE_CMD, &raw mut c as u64);
        (r, c.error)
    }

    /// Firmware version (api_major, api_minor, build) from PLATFORM_STATUS (§7.4).
    fn platform_status(&self) -> [u8; 12] {
        let mut st = [0u8; 12];
        let (r, _) = self.sev_issue(1, st.as_mut_ptr() as u64);
        assert_eq!(r, Ok(0));
        st
    }

    fn create_vm(&mut self, tee: Tee) -> Result<VmRef, TestCaseError> {
        let fd = ioctl(self.kvm, KVM_CREATE_VM, tee.vm_type())
            .map_err(|e| TestCaseError::fail(format!("KVM_CREATE_VM({tee:?}): {e}")))?;
        let ram = Mapping::new(PAGES * PAGE);
        let mut gmem_fd = None;
        let mut region = Region2 {
            slot: 0,
            guest_phys_addr: GPA,
            memory_size: (PAGES * PAGE) as u64,
            userspace_addr: ram.addr(),
            ..Default::default()
        };
        if matches!(tee, Tee::Snp | Tee::Tdx) {
            let mut g = CreateGuestMemfd {
                size: (PAGES * PAGE) as u64,
                ..Default::default()
            };
            let gfd = ioctl(fd, KVM_CREATE_GUEST_MEMFD, &raw mut g as u64)
                .map_err(|e| TestCaseError::fail(format!("KVM_CREATE_GUEST_MEMFD: {e}")))?;
            region.flags = 4; // KVM_MEM_GUEST_MEMFD
            region.guest_memfd = gfd as u32;
            gmem_fd = Some(gfd);
        }
        check!(
            ioctl(fd, KVM_SET_USER_MEMORY_REGION2, &raw const region as u64) == Ok(0),
            "KVM_SET_USER_MEMORY_REGION2 on {tee:?}"
        );
        if gmem_fd.is_some() {
            let a = MemoryAttributes {
                address: GPA,
                size: (PAGES * PAGE) as u64,
                attributes: 8, // KVM_MEMORY_ATTRIBUTE_PRIVATE
                flags: 0,
            };
            check!(
                ioctl(fd, KVM_SET_MEMORY_ATTRIBUTES, &raw const a as u64) == Ok(0),
                "KVM_SET_MEMORY_ATTRIBUTES"
            );
        }
        if gmem_fd.is_some() {
            // MAP_GPA_RANGE exits (linux-uapi §5.2), for the guest's page conversions.
            let cap = EnableCap {
                cap: KVM_CAP_EXIT_HYPERCALL,
                flags: 0,
                args: [1 << 12, 0, 0, 0],
                pad: [0; 64],
            };
            check!(
                ioctl(fd, KVM_ENABLE_CAP, &raw const cap as u64) == Ok(0),
                "KVM_ENABLE_CAP(EXIT_HYPERCALL)"
            );
        }
        if tee == Tee::Tdx {
            let cap = EnableCap {
                cap: KVM_CAP_SPLIT_IRQCHIP,
                flags: 0,
                args: [24, 0, 0, 0],
                pad: [0; 64],
            };
            check!(
                ioctl(fd, KVM_ENABLE_CAP, &raw const cap as u64) == Ok(0),
                "KVM_ENABLE_CAP(SPLIT_IRQCHIP)"
            );
        }
        Ok(VmRef {
            tee,
            fd,
            vcpu_fds: Vec::new(),
            gmem_fd,
            ram,
            inited: false,
            asid: None,
            sev: SevGuest::None,
            handle: 0,
            policy: 0,
            vmsa_done: false,
            ld: Some(Sha256::new()),
            snp: SnpGuest::NoContext,
            populated: BTreeSet::new(),
            plain: BTreeMap::new(),
            guest_ran: false,
            mrtd: Sha384::new(),
            td: TdState::Uninitialized,
            bugged: false,
            vcpu_inited: Vec::new(),
        })
    }

    /// Destroys a VM: closes every fd of it and waits until the host has destroyed it; the
    /// ASID reference follows (linux-uapi §9.2 `sev_asid_free`, firmware §6.3).
    fn destroy(&mut self, vm: VmRef) -> Result<(), TestCaseError> {
        for fd in &vm.vcpu_fds {
            close(*fd);
        }
        if let Some(g) = vm.gmem_fd {
            close(g);
        }
        close(vm.fd);
        check!(
            self.host.settle(Duration::from_secs(10)),
            "the host did not settle after closing a VM"
        );
        if let Some(asid) = vm.asid {
            self.plat.asids.reclaim.insert(asid);
            let ran = vm.sev == SevGuest::Running || vm.snp == SnpGuest::Running;
            let bound = vm.sev != SevGuest::None || vm.snp != SnpGuest::NoContext;
            let st = self.fw().asid_state(asid).unwrap();
            if bound && ran {
                // DEACTIVATE of an in-use ASID: dirty until DF_FLUSH.
                check!(
                    st == AsidState::Dirty,
                    "ASID {asid} of a destroyed running VM is {st:?}, not Dirty"
                );
                self.plat.asids.dirty.insert(asid);
            } else {
                // Never bound, or only allocated (pending): clean.
                check!(
                    st == AsidState::Clean,
                    "ASID {asid} of a destroyed VM that never ran is {st:?}, not Clean"
                );
            }
        }
        Ok(())
    }

    /// Checks the ASID invariants after a step.
    fn check_asids(&self, vms: &BTreeMap<u8, VmRef>) -> Result<(), TestCaseError> {
        let states = self.asid_states();
        let mut owners: BTreeMap<u32, u8> = BTreeMap::new();
        for (slot, vm) in vms {
            let Some(asid) = vm.asid else { continue };
            if let Some(other) = owners.insert(asid, *slot) {
                check!(false, "ASID {asid} held by VMs {other} and {slot}");
            }
            let expect = match (vm.sev, vm.snp) {
                (SevGuest::None, SnpGuest::NoContext) => AsidState::Clean,
                (SevGuest::Running, _) | (_, SnpGuest::Running) => AsidState::InUse,
                _ => AsidState::Allocated,
            };
            let st = states[(asid - 1) as usize].1;
            // Allocated at INIT2 but not yet bound: the firmware still sees it clean (or,
            // before a flush, dirty from its previous guest: never bound then).
            if expect == AsidState::Clean {
                check!(
                    matches!(st, AsidState::Clean | AsidState::Dirty),
                    "unbound ASID {asid} of VM {slot} is {st:?}"
                );
                check!(
                    !(st == AsidState::Dirty) || self.plat.asids.dirty.contains(&asid),
                    "ASID {asid} dirty in the firmware but not since a destroyed VM"
                );
            } else {
                check!(
                    st == expect,
                    "ASID {asid} of VM {slot} ({:?}/{:?}) is {st:?}, expected {expect:?}",
                    vm.sev,
                    vm.snp
                );
            }
        }
        for (asid, st) in states {
            if self.plat.asids.dirty.contains(&asid) {
                // Never reused before DF_FLUSH.
                check!(
                    st == AsidState::Dirty,
                    "ASID {asid}, dirty since its VM was destroyed and not flushed, is {st:?}"
                );
            } else if !owners.contains_key(&asid) {
                check!(
                    st == AsidState::Clean,
                    "ASID {asid} owned by no live VM and flushed is {st:?}"
                );
            }
        }
        // KVM's bitmaps: used / reclaimable per range.
        let asids = self.host.sev_host().unwrap().asids();
        for (class, tee) in [(AsidClass::Sev, Tee::Sev), (AsidClass::Snp, Tee::Snp)] {
            let range = self.plat.range(tee);
            let used = range
                .clone()
                .filter(|a| self.plat.asids.used.contains(a))
                .count();
            let reclaim = range
                .filter(|a| self.plat.asids.reclaim.contains(a))
                .count();
            let got = asids.usage(class);
            check!(
                got == (used, reclaim),
                "KVM's {class} ASIDs (used, reclaimable) = {got:?}, reference {:?}",
                (used, reclaim)
            );
        }
        Ok(())
    }

    /// Runs the guest of a launched SNP VM or TD on the vCPU `fd` with raw `KVM_RUN`s: it
    /// reads a populated page as private memory (it must see the plaintext the host no
    /// longer can), and a TD also converts the last two pages to shared, obtains its
    /// TDREPORT through GetQuote there (whose MRTD must be the reference's, firmware §5.1,
    /// §5.5) and terminates. The VMM side answers the exits as linux-uapi §4.1 and §5.2-5.3
    /// describe.
    fn run_guest(&self, vm: &mut VmRef, fd: RawFd) -> Result<(), TestCaseError> {
        vm.guest_ran = true;
        // A populated page to read back, if any (a TD may have none).
        let read = vm.plain.iter().next().map(|(&p, d)| (p, d.clone()));
        let shared = GPA + u64::from(POPULATED) * PAGE as u64;
        let mut program = Vec::new();
        if let Some((page, _)) = &read {
            program.push(kvm_coco::sim::guest::GuestOp::Read {
                gpa: GPA + u64::from(*page) * PAGE as u64,
                len: 64,
                private: true,
            });
        }
        if vm.tee == Tee::Tdx {
            program.push(kvm_coco::sim::guest::GuestOp::MapGpa {
                gpa: shared,
                npages: 2,
                private: false,
            });
            program.push(kvm_coco::sim::guest::GuestOp::GetQuote {
                gpa: shared,
                size: 0x2000,
                report_data: [0x3c; 64],
            });
        }
        program.push(kvm_coco::sim::guest::GuestOp::Terminate { code: 0 });
        self.host.load_program(&fd, program).unwrap();
        let size = ioctl(self.kvm, KVM_GET_VCPU_MMAP_SIZE, 0).unwrap() as usize;
        // SAFETY: maps the vCPU's kvm_run (a fresh shared mapping of the fd), unmapped below.
        let run = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        check!(run != libc::MAP_FAILED, "mmap of the vCPU's kvm_run");
        let run = run.cast::<u8>();
        // SAFETY: offsets inside the `size`-byte kvm_run mapping (linux-uapi §5.4); the host
        // writes it only during this thread's KVM_RUN.
        let rd = |off: usize| unsafe { run.add(off).cast::<u64>().read_unaligned() };
        // SAFETY: as above.
        let wr = |off: usize, v: u64| unsafe { run.add(off).cast::<u64>().write_unaligned(v) };
        let set_attrs = |gpa: u64, size: u64, private: bool| {
            let a = MemoryAttributes {
                address: gpa,
                size,
                attributes: if private { 8 } else { 0 },
                flags: 0,
            };
            ioctl(vm.fd, KVM_SET_MEMORY_ATTRIBUTES, &raw const a as u64)
        };
        let mut ended = None;
        for _ in 0..16 {
            let r = ioctl(fd, KVM_RUN, 0);
            let reason = rd(8) as u32;
            match (r, reason) {
                (Ok(_), KVM_EXIT_HYPERCALL) => {
                    // args[0] GPA, args[1] pages, args[2] bit 4: encrypted (§5.2).
                    let (gpa, n, attrs) = (rd(40), rd(48), rd(56));
                    let a = set_attrs(gpa, n * PAGE as u64, attrs & 0x10 != 0);
                    wr(88, u64::from(a.is_err()) * libc::EINVAL as u64);
                }
                (Ok(_), KVM_EXIT_TDX) => wr(48, 0), // GetQuote: SUCCESS (§4.1)
                (Err(libc::EFAULT), KVM_EXIT_MEMORY_FAULT) => {
                    // §5.3: flags bit 3 private, gpa, size.
                    let _ = set_attrs(rd(40), rd(48), rd(32) & 8 != 0);
                }
                (Ok(_), KVM_EXIT_SYSTEM_EVENT) => {
                    ended = Some(rd(32) as u32);
                    break;
                }
                other => {
                    ended = Some(u32::MAX - other.1);
                    break;
                }
            }
        }
        // SAFETY: the mapping made above; nothing refers to it afterwards.
        unsafe { libc::munmap(run.cast(), size) };
        let want = if vm.tee == Tee::Tdx {
            KVM_SYSTEM_EVENT_TDX_FATAL
        } else {
            KVM_SYSTEM_EVENT_SEV_TERM
        };
        check!(
            ended == Some(want),
            "the guest did not terminate as asked: {ended:?}"
        );
        let outcomes = self.host.outcomes(&fd).unwrap();
        let seen = outcomes.iter().find_map(|o| match o {
            kvm_coco::sim::guest::GuestOutcome::Read { data, .. } => Some(data.clone()),
            _ => None,
        });
        if let Some((page, plain)) = &read {
            check!(
                seen.as_deref() == Some(&plain[..64]),
                "the guest's private read of page {page} is not what was populated"
            );
        }
        if vm.tee == Tee::Tdx {
            let report = outcomes.iter().find_map(|o| match o {
                kvm_coco::sim::guest::GuestOutcome::TdReport(r) => Some(r.clone()),
                _ => None,
            });
            let Some(report) = report else {
                return Err(TestCaseError::fail(format!("no TDREPORT: {outcomes:?}")));
            };
            // TDINFO.MRTD at 0x210 (firmware §5.5).
            let want: [u8; 48] = vm.mrtd.clone().finalize().into();
            check!(
                report[0x210..0x240] == want,
                "TDREPORT MRTD is not the reference's over the accepted INIT_MEM_REGIONs \
                 (a rejected command changed the measurement?)"
            );
        }
        Ok(())
    }

    /// Issues one `KVM_MEMORY_ENCRYPT_OP` SEV sub-command; the result and the command struct.
    fn sev_op(&self, vm: &VmRef, id: u32, data: u64, sev_fd: RawFd) -> (Option<i32>, SevCmd) {
        let mut c = SevCmd {
            id,
            data,
            error: 0,
            sev_fd: sev_fd as u32,
            ..Default::default()
        };
        let r = ioctl(vm.fd, KVM_MEMORY_ENCRYPT_OP, &raw mut c as u64);
        (r.err(), c)
    }

    fn tdx_op(&self, fd: RawFd, id: u32, flags: u32, data: u64) -> (Option<i32>, TdxCmd) {
        let mut c = TdxCmd {
            id,
            flags,
            data,
            hw_error: 0,
        };
        let r = ioctl(fd, KVM_MEMORY_ENCRYPT_OP, &raw mut c as u64);
        (r.err(), c)
    }

    /// Runs one step on `slot`; `Ok(false)` if it was not issued.
    fn step(
        &mut self,
        vms: &mut BTreeMap<u8, VmRef>,
        tee: Tee,
        slot: u8,
        op: Op,
        salt: u64,
    ) -> Result<bool, TestCaseError> {
        // /dev/sev platform commands (linux-uapi §7; firmware §6.1).
        match op {
            Op::PlatformStatus => {
                let st = self.platform_status();
                let count = u32::from_le_bytes(st[8..12].try_into().unwrap());
                let expect = live_sev_guests(vms);
                check!(
                    count == expect,
                    "PLATFORM_STATUS guest_count {count}, reference {expect}"
                );
                if expect > 0 {
                    check!(
                        st[2] == 2,
                        "platform state {} with guests, not WORKING",
                        st[2]
                    );
                } else if self.plat.legacy_inited {
                    check!(
                        st[2] == 1,
                        "platform state {} without guests, not INIT",
                        st[2]
                    );
                }
                return Ok(true);
            }
            Op::SnpPlatformStatus => {
                let mut st = [0u8; 32];
                let (r, _) = self.sev_issue(9, st.as_mut_ptr() as u64);
                check!(r == Ok(0), "SNP_PLATFORM_STATUS: {r:?}");
                let count = u32::from_le_bytes(st[12..16].try_into().unwrap());
                let expect = live_snp_guests(vms);
                check!(
                    count == expect,
                    "SNP_PLATFORM_STATUS guest_count {count}, reference {expect}"
                );
                if self.plat.snp_inited {
                    check!(st[2] == 1, "SNP platform state {}, not INIT", st[2]);
                }
                return Ok(true);
            }
            Op::PekGen | Op::PdhGen => {
                // Issued only where the facts fix the platform state: INIT or WORKING.
                if !self.plat.legacy_inited {
                    return Ok(false);
                }
                let working = live_sev_guests(vms) > 0;
                let (r, error) = self.sev_issue(if matches!(op, Op::PekGen) { 2 } else { 4 }, 0);
                // firmware §6.1: PEK_GEN only in INIT; PDH_GEN in INIT and WORKING.
                if matches!(op, Op::PekGen) && working {
                    check!(
                        r == Err(libc::EIO) && error == INVALID_PLATFORM_STATE,
                        "PEK_GEN in WORKING: {r:?} error {error:#x}"
                    );
                    self.rejected += 1;
                } else {
                    check!(r == Ok(0), "{op:?}: {r:?} error {error:#x}");
                }
                return Ok(true);
            }
            Op::BadSevCmd => {
                // §7.1: cmd >= SEV_MAX: EINVAL, nothing copied back.
                let (r, error) = self.sev_issue(13, 0);
                check!(
                    r == Err(libc::EINVAL) && error == 0xdead_beef,
                    "SEV_ISSUE_CMD(13): {r:?} error {error:#x}"
                );
                self.rejected += 1;
                return Ok(true);
            }
            _ => {}
        }
        if let std::collections::btree_map::Entry::Vacant(e) = vms.entry(slot) {
            if matches!(op, Op::Destroy) {
                return Ok(false);
            }
            e.insert(self.create_vm(tee)?);
        }
        let vm = vms.get(&slot).unwrap();
        let expect = if tee.amd() {
            expect_amd(vm, op)
        } else {
            expect_tdx(vm, op)
        };
        let Some(expect) = expect else {
            return Ok(false);
        };
        if expect.errno.is_some() {
            self.rejected += 1;
        }
        let counts = self.per_op.entry(op_name(op)).or_default();
        counts.0 += 1;
        counts.1 += u64::from(expect.errno.is_none());
        if matches!(op, Op::Destroy) {
            let vm = vms.remove(&slot).unwrap();
            self.destroy(vm)?;
            return Ok(true);
        }
        // A finished launch cannot be updated.
        let finished = vm.sev == SevGuest::Running
            || vm.snp == SnpGuest::Running
            || vm.td == TdState::Runnable;
        if finished
            && matches!(
                op,
                Op::UpdateData { .. }
                    | Op::UpdateVmsa
                    | Op::SnpUpdate { .. }
                    | Op::TdxInitMem { .. }
                    | Op::Measure
            )
        {
            check!(
                expect.errno.is_some(),
                "reference lets {op:?} update a finished launch"
            );
        }
        if tee.amd() {
            self.amd_step(vms, slot, op, expect, salt)
        } else {
            self.tdx_step(vms.get_mut(&slot).unwrap(), op, expect, salt)
        }
        .map(|()| true)
    }

    fn amd_step(
        &mut self,
        vms: &mut BTreeMap<u8, VmRef>,
        slot: u8,
        op: Op,
        expect: Expect,
        salt: u64,
    ) -> Result<(), TestCaseError> {
        let sev_fd = self.sev;
        let vm = vms.get_mut(&slot).unwrap();
        let answer = |got: Option<i32>, c: &SevCmd| -> Result<(), TestCaseError> {
            check!(
                got == expect.errno,
                "{:?} on {:?}: {} (error {:#x}), reference {}",
                op,
                vm.tee,
                errno_name(got),
                c.error,
                errno_name(expect.errno)
            );
            if let Some(fw) = expect.fw {
                check!(
                    c.error == fw,
                    "{op:?}: firmware status {:#x}, reference {fw:#x}",
                    c.error
                );
            }
            Ok(())
        };
        match op {
            Op::Init2 => {
                // The ASID the reference expects (linux-uapi §9.2); EBUSY if none.
                let mut init = SevInit::default();
                let (got, c) = self.sev_op(vm, 22, &raw mut init as u64, sev_fd);
                let predicted = if expect.errno.is_none() {
                    let range = self.plat.range(vm.tee);
                    match self.plat.asids.alloc(range) {
                        Some(a) => Some(a),
                        None => {
                            check!(got == Some(libc::EBUSY), "INIT2 with no free ASID: {got:?}");
                            return Ok(());
                        }
                    }
                } else {
                    None
                };
                answer(got, &c)?;
                if let Some(a) = predicted {
                    vm.inited = true;
                    vm.asid = Some(a);
                    if vm.tee == Tee::Snp {
                        self.plat.snp_inited = true;
                    } else {
                        self.plat.legacy_inited = true;
                    }
                }
            }
            Op::LaunchStart => {
                let policy = if vm.tee == Tee::SevEs { 0x4 } else { 0 };
                let mut s = LaunchStart {
                    policy,
                    ..Default::default()
                };
                let (got, c) = self.sev_op(vm, 2, &raw mut s as u64, sev_fd);
                answer(got, &c)?;
                if got.is_none() {
                    // firmware §1.8: handles run 1..1024.
                    check!((1..=1024).contains(&s.handle), "handle {}", s.handle);
                    vm.handle = s.handle;
                    vm.policy = policy;
                    vm.sev = SevGuest::LUpdate;
                }
            }
            Op::UpdateData { page, pages } => {
                let off = usize::from(page) * PAGE;
                let len = usize::from(pages) * PAGE;
                let plain = pattern(len, salt);
                vm.ram.write(off, &plain);
                let mut u = UaddrLen {
                    uaddr: vm.ram.addr() + off as u64,
                    len: len as u32,
                    pad0: 0,
                };
                let (got, c) = self.sev_op(vm, 3, &raw mut u as u64, sev_fd);
                answer(got, &c)?;
                let seen = &vm.ram.bytes()[off..off + len];
                if got.is_none() {
                    // Encrypted in place: the host reads no plaintext.
                    check!(
                        !leaks_plaintext(seen, &plain),
                        "plaintext readable after LAUNCH_UPDATE_DATA"
                    );
                    if let Some(ld) = vm.ld.as_mut() {
                        ld.update(&plain);
                    }
                } else {
                    check!(
                        seen == plain,
                        "a rejected LAUNCH_UPDATE_DATA changed the page"
                    );
                }
            }
            Op::UpdateVmsa => {
                let (got, c) = self.sev_op(vm, 4, 0, sev_fd);
                answer(got, &c)?;
                if got.is_none() {
                    vm.vmsa_done = true;
                    // The VMSA page enters the digest: no longer predicted here.
                    vm.ld = None;
                }
            }
            Op::MeasureQuery => {
                let mut m = UaddrLen::default();
                let (got, c) = self.sev_op(vm, 6, &raw mut m as u64, sev_fd);
                answer(got, &c)?;
                if vm.sev == SevGuest::LUpdate {
                    check!(m.len == 48, "length query wrote {}", m.len);
                }
            }
            Op::Measure => {
                let mut blob = [0u8; 48];
                let mut m = UaddrLen {
                    uaddr: blob.as_mut_ptr() as u64,
                    len: 48,
                    pad0: 0,
                };
                let (got, c) = self.sev_op(vm, 6, &raw mut m as u64, sev_fd);
                answer(got, &c)?;
                if got.is_none() {
                    vm.sev = SevGuest::LSecret;
                    if let Some(ld) = vm.ld.clone() {
                        // firmware §1.4: MEASURE = HMAC-SHA256(TIK, 0x04 ‖ API_MAJOR ‖
                        // API_MINOR ‖ BUILD ‖ POLICY ‖ LD ‖ MNONCE); no session: TIK = 0 (§1.5).
                        let st = self.platform_status();
                        let ld = ld.finalize();
                        let mut mac = Hmac::<Sha256>::new_from_slice(&[0u8; 16]).unwrap();
                        mac.update(&[0x04, st[0], st[1], st[7]]);
                        mac.update(&vm.policy.to_le_bytes());
                        mac.update(&ld);
                        mac.update(&blob[32..48]);
                        let want: [u8; 32] = mac.finalize().into_bytes().into();
                        check!(
                            blob[..32] == want,
                            "LAUNCH_MEASURE is not the HMAC over the reference launch digest \
                             (a rejected command changed the measurement?)"
                        );
                    }
                }
            }
            Op::Finish => {
                let (got, c) = self.sev_op(vm, 7, 0, sev_fd);
                answer(got, &c)?;
                if got.is_none() {
                    vm.sev = SevGuest::Running;
                }
            }
            Op::GuestStatus => {
                let mut s = GuestStatus::default();
                let (got, c) = self.sev_op(vm, 16, &raw mut s as u64, sev_fd);
                answer(got, &c)?;
                if got.is_none() {
                    // firmware §6.2 state values.
                    let state = match vm.sev {
                        SevGuest::LUpdate => 1,
                        SevGuest::LSecret => 2,
                        SevGuest::Running => 3,
                        SevGuest::None => 0,
                    };
                    check!(
                        (s.handle, s.policy, s.state) == (vm.handle, vm.policy, state),
                        "GUEST_STATUS {:?}, reference {:?}",
                        (s.handle, s.policy, s.state),
                        (vm.handle, vm.policy, state)
                    );
                }
            }
            Op::SnpStart => {
                let mut s = SnpLaunchStart {
                    // linux-uapi §3.7: bit 17 must be one; SMT (bit 16) allowed.
                    policy: 0x3_0000,
                    ..Default::default()
                };
                let (got, c) = self.sev_op(vm, 100, &raw mut s as u64, sev_fd);
                answer(got, &c)?;
                if got.is_none() {
                    vm.snp = SnpGuest::Launch;
                }
            }
            Op::SnpUpdate { page } => {
                let plain = pattern(PAGE, salt);
                let src = Mapping::new(PAGE);
                src.write(0, &plain);
                let mut u = SnpLaunchUpdate {
                    gfn_start: (GPA >> 12) + u64::from(page),
                    uaddr: src.addr(),
                    len: PAGE as u64,
                    page_type: 1, // NORMAL
                    ..Default::default()
                };
                let (got, c) = self.sev_op(vm, 101, &raw mut u as u64, sev_fd);
                answer(got, &c)?;
                if got.is_none() {
                    check!(u.len == 0, "SNP_LAUNCH_UPDATE left len {}", u.len);
                    vm.populated.insert(page);
                    vm.plain.insert(page, plain.clone());
                    check_private(vm, page, &plain)?;
                }
            }
            Op::SnpFinish => {
                let mut f = SnpLaunchFinish::default();
                let (got, c) = self.sev_op(vm, 102, &raw mut f as u64, sev_fd);
                answer(got, &c)?;
                if got.is_none() {
                    vm.snp = SnpGuest::Running;
                }
            }
            Op::NoHandler { id } => {
                let (got, c) = self.sev_op(vm, id, 0, sev_fd);
                answer(got, &c)?;
            }
            Op::RunGuest => {
                let fd = vm.vcpu_fds[0];
                self.run_guest(vm, fd)?;
            }
            Op::CreateVcpu => {
                let id = vm.vcpu_fds.len() as u64;
                let r = ioctl(vm.fd, KVM_CREATE_VCPU, id);
                check!(r.is_ok(), "KVM_CREATE_VCPU({id}) on {:?}: {r:?}", vm.tee);
                vm.vcpu_fds.push(r.unwrap());
            }
            _ => unreachable!("{op:?}"),
        }
        Ok(())
    }

    fn tdx_step(
        &mut self,
        vm: &mut VmRef,
        op: Op,
        expect: Expect,
        salt: u64,
    ) -> Result<(), TestCaseError> {
        let answer = |got: Option<i32>| -> Result<(), TestCaseError> {
            check!(
                got == expect.errno,
                "{op:?} on TDX: {}, reference {}",
                errno_name(got),
                errno_name(expect.errno)
            );
            Ok(())
        };
        match op {
            Op::TdxCaps { small } => {
                // struct kvm_tdx_capabilities: 2056 bytes + 40 per entry; nent at 2048.
                let n = if small { 0 } else { 256 };
                let mut buf = vec![0u64; (2056 + 40 * n) / 8];
                buf[256] = n as u64;
                let (got, _) = self.tdx_op(vm.fd, 0, 0, buf.as_mut_ptr() as u64);
                answer(got)?;
                let nent = buf[256] as u32;
                if small {
                    check!(nent == 0, "E2BIG updated nent to {nent}");
                } else if got.is_none() {
                    check!(
                        (1..=256).contains(&nent) && buf[0] != 0 && buf[1] != 0,
                        "capabilities: nent {nent}, attrs {:#x}, xfam {:#x}",
                        buf[0],
                        buf[1]
                    );
                }
            }
            Op::TdxInitVm => {
                // struct kvm_tdx_init_vm: 264 bytes + 40 per entry: xfam x87|SSE, one CPUID
                // entry 0x80000008 with GPAW 48 (§10.4 step 5).
                let mut buf = vec![0u32; (264 + 40) / 4];
                buf[2] = 0x3; // xfam (u64 at 8)
                buf[64] = 1; // cpuid.nent at 256
                buf[66] = 0x8000_0008; // entries[0].function at 264
                buf[66 + 3] = 48 << 16; // eax
                let (got, c) = self.tdx_op(vm.fd, 1, 0, buf.as_mut_ptr() as u64);
                answer(got)?;
                if got.is_none() {
                    check!(c.hw_error == 0, "INIT_VM hw_error {:#x}", c.hw_error);
                    vm.td = TdState::Initialized;
                }
            }
            Op::CreateVcpu => {
                let id = vm.vcpu_fds.len() as u64;
                let r = ioctl(vm.fd, KVM_CREATE_VCPU, id);
                answer(r.err())?;
                if let Ok(fd) = r {
                    vm.vcpu_fds.push(fd);
                    vm.vcpu_inited.push(false);
                }
            }
            Op::RunGuest => {
                let v = vm.vcpu_inited.iter().position(|&i| i).unwrap();
                let fd = vm.vcpu_fds[v];
                self.run_guest(vm, fd)?;
            }
            Op::TdxInitVcpu { vcpu } => {
                let fd = vm.vcpu_fds[usize::from(vcpu)];
                let (got, _) = self.tdx_op(fd, 2, 0, 0);
                answer(got)?;
                if got.is_none() {
                    vm.vcpu_inited[usize::from(vcpu)] = true;
                }
            }
            Op::TdxInitMem {
                vcpu,
                page,
                measure,
            } => {
                let fd = vm.vcpu_fds[usize::from(vcpu)];
                let plain = pattern(PAGE, salt);
                let src = Mapping::new(PAGE);
                src.write(0, &plain);
                let gpa = GPA + u64::from(page) * PAGE as u64;
                let mut r = TdxInitMemRegion {
                    source_addr: src.addr(),
                    gpa,
                    nr_pages: 1,
                };
                let (got, _) = self.tdx_op(fd, 3, u32::from(measure), &raw mut r as u64);
                answer(got)?;
                if got.is_none() {
                    // §4: the remaining range is written back.
                    check!(
                        (r.source_addr, r.gpa, r.nr_pages)
                            == (src.addr() + PAGE as u64, gpa + PAGE as u64, 0),
                        "INIT_MEM_REGION wrote back {:#x} {:#x} {}",
                        r.source_addr,
                        r.gpa,
                        r.nr_pages
                    );
                    vm.populated.insert(page);
                    check_private(vm, page, &plain)?;
                    // firmware §5.1: PAGE.ADD, then (MEASURE) 16 × MR.EXTEND of 256 bytes.
                    let mut block = [0u8; 128];
                    block[..12].copy_from_slice(b"MEM.PAGE.ADD");
                    block[16..24].copy_from_slice(&gpa.to_le_bytes());
                    vm.mrtd.update(block);
                    if measure {
                        for (k, chunk) in plain.chunks(256).enumerate() {
                            let mut hdr = [0u8; 128];
                            hdr[..9].copy_from_slice(b"MR.EXTEND");
                            hdr[16..24].copy_from_slice(&(gpa + 256 * k as u64).to_le_bytes());
                            vm.mrtd.update(hdr);
                            vm.mrtd.update(chunk);
                        }
                    }
                    vm.plain.insert(page, plain);
                }
            }
            Op::TdxFinalize => {
                let (got, c) = self.tdx_op(vm.fd, 4, 0, 0);
                answer(got)?;
                if got.is_none() {
                    vm.td = TdState::Runnable;
                } else if vm.td == TdState::Initialized && !vm.bugged {
                    check!(
                        c.hw_error == TDX_NO_VCPUS,
                        "FINALIZE without vCPUs: hw_error {:#x}",
                        c.hw_error
                    );
                    vm.bugged = true;
                }
            }
            _ => unreachable!("{op:?}"),
        }
        Ok(())
    }
}

/// After `plain` was populated into private page `page`: the host's shared mapping at that
/// GPA and the guest_memfd read at its offset give no plaintext.
fn check_private(vm: &VmRef, page: u8, plain: &[u8]) -> Result<(), TestCaseError> {
    let off = usize::from(page) * PAGE;
    check!(
        !leaks_plaintext(&vm.ram.bytes()[off..off + PAGE], plain),
        "private page {page} readable through the shared mapping"
    );
    if let Some(g) = vm.gmem_fd {
        let mut buf = vec![0u8; PAGE];
        // SAFETY: `buf` is PAGE writable bytes; `g` is the VM's guest_memfd.
        let n = unsafe { libc::pread(g, buf.as_mut_ptr().cast(), PAGE, off as i64) };
        if n > 0 {
            check!(
                !leaks_plaintext(&buf[..n as usize], plain),
                "private page {page} readable through the guest_memfd"
            );
        }
    }
    Ok(())
}

fn op_name(op: Op) -> &'static str {
    match op {
        Op::Init2 => "INIT2",
        Op::LaunchStart => "LAUNCH_START",
        Op::UpdateData { .. } => "LAUNCH_UPDATE_DATA",
        Op::UpdateVmsa => "LAUNCH_UPDATE_VMSA",
        Op::MeasureQuery => "LAUNCH_MEASURE(len=0)",
        Op::Measure => "LAUNCH_MEASURE",
        Op::Finish => "LAUNCH_FINISH",
        Op::GuestStatus => "GUEST_STATUS",
        Op::SnpStart => "SNP_LAUNCH_START",
        Op::SnpUpdate { .. } => "SNP_LAUNCH_UPDATE",
        Op::SnpFinish => "SNP_LAUNCH_FINISH",
        Op::NoHandler { .. } => "no-handler id",
        Op::TdxCaps { .. } => "TDX_CAPABILITIES",
        Op::TdxInitVm => "TDX_INIT_VM",
        Op::TdxInitVcpu { .. } => "TDX_INIT_VCPU",
        Op::TdxInitMem { .. } => "TDX_INIT_MEM_REGION",
        Op::TdxFinalize => "TDX_FINALIZE_VM",
        Op::RunGuest => "KVM_RUN",
        Op::CreateVcpu => "KVM_CREATE_VCPU",
        Op::Destroy => "destroy",
        Op::PlatformStatus => "PLATFORM_STATUS",
        Op::SnpPlatformStatus => "SNP_PLATFORM_STATUS",
        Op::PekGen => "PEK_GEN",
        Op::PdhGen => "PDH_GEN",
        Op::BadSevCmd => "SEV_ISSUE_CMD(13)",
    }
}

/// One generated case: the technology of each of three VM slots and the steps
/// `(slot, selector, a, b)`.
type Case = ([u8; 3], Vec<(u8, u8, u8, u8)>);

fn case_strategy() -> impl Strategy<Value = Case> {
    (
        [0u8..4, 0u8..4, 0u8..4],
        prop::collection::vec((0u8..3, any::<u8>(), any::<u8>(), any::<u8>()), 1..48),
    )
}

fn tee_of(n: u8) -> Tee {
    [Tee::Sev, Tee::SevEs, Tee::Snp, Tee::Tdx][usize::from(n % 4)]
}

/// Runs one case; every VM is destroyed at the end and the fd counts compared.
fn run_case(world: &mut World, case: &Case) -> Result<(), TestCaseError> {
    let before = fd_counts();
    let (tees, steps) = case;
    let mut vms: BTreeMap<u8, VmRef> = BTreeMap::new();
    let mut result = Ok(());
    for (i, &(slot, sel, a, b)) in steps.iter().enumerate() {
        let tee = tee_of(tees[usize::from(slot)]);
        // Five steps in eight follow the protocol, the others are any command.
        let op = if sel % 8 < 5 {
            guided(vms.get(&slot), tee, a, b)
        } else {
            op_for(tee, sel / 8, a, b)
        };
        let salt = (world.cases << 16) ^ i as u64 ^ (u64::from(sel) << 8);
        match world.step(&mut vms, tee, slot, op, salt) {
            Ok(true) => world.steps += 1,
            Ok(false) => world.skipped += 1,
            Err(e) => {
                result = Err(e);
                break;
            }
        }
        if let Err(e) = world.check_asids(&vms) {
            result = Err(e);
            break;
        }
    }
    let slots: Vec<u8> = vms.keys().copied().collect();
    for s in slots {
        let vm = vms.remove(&s).unwrap();
        let r = world.destroy(vm);
        if result.is_ok() {
            result = r;
        }
    }
    world.cases += 1;
    result?;
    world.check_asids(&vms)?;
    let after = fd_counts();
    check!(
        after == before,
        "(fds, memfds) {before:?} before the case, {after:?} after its VMs were destroyed"
    );
    Ok(())
}

/// Number of cases: `KVM_COCO_STATE_MACHINE_CASES`, default 128 (a debug build runs them in a
/// few seconds).
fn case_count() -> u32 {
    std::env::var("KVM_COCO_STATE_MACHINE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128)
}

#[test]
fn random_command_sequences_follow_the_facts_transition_tables() {
    let mut builder = SoftwareHost::builder().seed(11);
    // A JSON line per served call, for a failing case.
    if let Some(p) = std::env::var_os("KVM_COCO_STATE_MACHINE_TRACE") {
        builder = builder.trace(p);
    }
    let host = builder.start().unwrap();
    host.serve_current_thread()
        .expect("seccomp user notification is required by the software host");
    let kvm = open("/dev/kvm");
    let sev = open("/dev/sev");
    // The AMD model exists once this thread is served; its ASID space (CPUID 0x8000001F).
    let cfg = host.sev_host().expect("the AMD model").firmware().config();
    let world = RefCell::new(World {
        host,
        kvm,
        sev,
        plat: PlatformRef {
            min_sev_asid: cfg.min_sev_asid,
            max_asid: cfg.max_asid,
            ..Default::default()
        },
        steps: 0,
        skipped: 0,
        rejected: 0,
        cases: 0,
        per_op: BTreeMap::new(),
    });
    let cases = case_count();
    // The seed of the sequences: `KVM_COCO_STATE_MACHINE_SEED` to replay a run, else fresh
    // (printed, so a failure can be replayed).
    let seed: u64 = std::env::var("KVM_COCO_STATE_MACHINE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("state machine: KVM_COCO_STATE_MACHINE_SEED={seed}");
    let mut rng_seed = [0u8; 32];
    rng_seed[..8].copy_from_slice(&seed.to_le_bytes());
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &rng_seed);
    let mut runner = TestRunner::new_with_rng(
        Config {
            cases,
            // The host and the reference carry state from case to case: a shrunk re-run would
            // not start where the failing case did, so the failing case is reported as it ran.
            max_shrink_iters: 0,
            failure_persistence: None,
            ..Config::default()
        },
        rng,
    );
    let started = std::time::Instant::now();
    let r = runner.run(&case_strategy(), |case| {
        run_case(&mut world.borrow_mut(), &case)
    });
    let w = world.into_inner();
    eprintln!(
        "state machine: {} cases, {} steps issued ({} rejected as the reference expected), \
         {} not issued (answer not fixed by the facts), {} ASID flushes, {:.1} s",
        w.cases,
        w.steps,
        w.rejected,
        w.skipped,
        w.plat.asids.flushes,
        started.elapsed().as_secs_f64()
    );
    eprintln!("per command (issued, accepted): {:?}", w.per_op);
    r.unwrap();
    assert_eq!(w.cases, u64::from(cases));
    // The sequences reach the interesting states: flushes happened, most steps were issued,
    // every command ran.
    assert!(
        w.steps > w.skipped,
        "{} issued, {} skipped",
        w.steps,
        w.skipped
    );
    for name in [
        "INIT2",
        "LAUNCH_START",
        "LAUNCH_UPDATE_DATA",
        "LAUNCH_UPDATE_VMSA",
        "LAUNCH_MEASURE",
        "LAUNCH_FINISH",
        "SNP_LAUNCH_START",
        "SNP_LAUNCH_UPDATE",
        "SNP_LAUNCH_FINISH",
        "TDX_INIT_VM",
        "TDX_INIT_MEM_REGION",
        "TDX_FINALIZE_VM",
        "KVM_RUN",
        "destroy",
    ] {
        assert!(
            w.per_op.get(name).is_some_and(|c| c.1 > 0),
            "{name} never accepted"
        );
    }
    if cases >= 64 {
        assert!(w.plat.asids.flushes > 0, "no ASID range ever filled up");
    }
    close(w.kvm);
    close(w.sev);
    drop(w.host);
}
