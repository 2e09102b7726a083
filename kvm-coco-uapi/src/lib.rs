//! Bit-for-bit definitions of the Linux confidential-computing uAPI for x86 KVM and the
//! AMD PSP: SEV, SEV-ES, SEV-SNP and Intel TDX, as of **Linux 7.3**.
//!
//! Every struct is `#[repr(C)]` (or `#[repr(C, packed)]` where the kernel packs: the
//! `/dev/sev` structs), derives the [`zerocopy`] traits (`FromBytes`, `IntoBytes`,
//! `KnownLayout`, `Immutable`) so it can be turned into and read back from ioctl buffers
//! without `unsafe`, keeps the kernel's name in UpperCamelCase (searchable by its C name
//! thanks to `#[doc(alias)]`) and the kernel's field names. Constants keep the kernel's
//! names; ioctl request numbers are computed by the `const fn`s of [`ioctl`] from
//! direction, type, number and size. The crate is `#![no_std]`, has no `unsafe` code and
//! performs no I/O: it is the vocabulary a VMM (or a software model of KVM) speaks.
//!
//! Everything is re-exported at the crate root; the modules group it by concept:
//!
//! | module | contents |
//! |---|---|
//! | [`vm`] | VM types ([`VmType`], [`VmTypes`] bitmap), capability numbers, `KVM_MEMORY_ENCRYPT_*`, [`KvmEncRegion`], `/dev/kvm` device attributes ([`KVM_X86_GRP_SEV`]) |
//! | [`sev`] | `KVM_SEV_*` ids ([`SevCmdId`]), [`KvmSevCmd`] and every SEV/SEV-ES argument struct, [`SevPolicy`], [`VmsaFeatures`] |
//! | [`snp`] | SNP launch structs, page types ([`SnpPageType`]), ID-block sizes, [`SnpPolicy`] |
//! | [`tdx`] | `KVM_TDX_*` ids ([`TdxCmdId`]), [`KvmTdxCmd`], [`KvmTdxCapabilities`], [`KvmTdxInitVm`], [`KvmTdxInitMemRegion`], the `KVM_EXIT_TDX` arms, TDVMCALL codes |
//! | [`cpuid`] | [`KvmCpuid2`], [`KvmCpuidEntry2`] and [`CpuidFam`], the owned buffer for flexible-array structs |
//! | [`memory`] | guest_memfd, [`KvmUserspaceMemoryRegion2`], memory attributes, pre-fault |
//! | [`exit`] | `KVM_EXIT_*` numbers, `kvm_run` exit arms with their offsets ([`KvmRunMember`]), MAP_GPA_RANGE and REQ_CERTS replies |
//! | [`sev_dev`] | `/dev/sev`: [`SEV_ISSUE_CMD`], [`SevIssueCmd`], platform commands, every `sev_user_data_*`, [`SevRetCode`] |
//! | [`manifest`] | machine-readable layouts of everything above, checked against the real headers |
//!
//! # Ioctls
//!
//! | ioctl | value | fd (scope) | argument |
//! |---|---|---|---|
//! | [`KVM_CHECK_EXTENSION`] | `0xAE03` | system or VM | capability number, e.g. [`KVM_CAP_VM_TYPES`] → [`VmTypes`] |
//! | [`KVM_CREATE_VM`] | `0xAE01` | system | VM type ([`VmType`]) |
//! | [`KVM_GET_DEVICE_ATTR`] / [`KVM_HAS_DEVICE_ATTR`] | `0x4018AEE2` / `0x4018AEE3` | system (`/dev/kvm`) | [`KvmDeviceAttr`], group [`KVM_X86_GRP_SEV`] |
//! | [`KVM_GET_SUPPORTED_CPUID`] | `0xC008AE05` | system | [`KvmCpuid2`] + entries ([`CpuidFam`]) |
//! | [`KVM_MEMORY_ENCRYPT_OP`] | `0xC008AEBA` | VM (SEV, SEV-ES, SNP, TDX); vCPU (TDX only) | pointer to [`KvmSevCmd`] or [`KvmTdxCmd`] |
//! | [`KVM_MEMORY_ENCRYPT_REG_REGION`] / [`KVM_MEMORY_ENCRYPT_UNREG_REGION`] | `0x8010AEBB` / `0x8010AEBC` | VM (SEV, SEV-ES) | [`KvmEncRegion`] |
//! | [`KVM_ENABLE_CAP`] | `0x4068AEA3` | VM | [`KvmEnableCap`], e.g. [`KVM_CAP_EXIT_HYPERCALL`] |
//! | [`KVM_SET_TSC_KHZ`] | `0xAEA2` | VM (SNP Secure TSC default) or vCPU | kHz value |
//! | [`KVM_CREATE_GUEST_MEMFD`] | `0xC040AED4` | VM | [`KvmCreateGuestMemfd`] |
//! | [`KVM_SET_USER_MEMORY_REGION2`] | `0x40A0AE49` | VM | [`KvmUserspaceMemoryRegion2`] |
//! | [`KVM_SET_MEMORY_ATTRIBUTES`] | `0x4020AED2` | VM | [`KvmMemoryAttributes`] |
//! | [`KVM_CREATE_VCPU`] | `0xAE41` | VM | vCPU id |
//! | [`KVM_SET_CPUID2`] | `0x4008AE90` | vCPU | [`KvmCpuid2`] + entries |
//! | [`KVM_PRE_FAULT_MEMORY`] | `0xC040AED5` | vCPU | [`KvmPreFaultMemory`] |
//! | [`KVM_RUN`] | `0xAE80` | vCPU | none; exit in the mmapped `kvm_run` ([`exit`]) |
//! | [`SEV_ISSUE_CMD`] | `0xC0105300` | `/dev/sev` | [`SevIssueCmd`] → `sev_user_data_*` |
//!
//! ## `KVM_MEMORY_ENCRYPT_OP` sub-commands
//!
//! | id | command | fd | `data` |
//! |---|---|---|---|
//! | 0, 1 | [`KVM_SEV_INIT`], [`KVM_SEV_ES_INIT`] (deprecated) | VM | none |
//! | 22 | [`KVM_SEV_INIT2`] | VM | [`KvmSevInit`] |
//! | 2 | [`KVM_SEV_LAUNCH_START`] | VM | [`KvmSevLaunchStart`] |
//! | 3 | [`KVM_SEV_LAUNCH_UPDATE_DATA`] | VM | [`KvmSevLaunchUpdateData`] |
//! | 4 | [`KVM_SEV_LAUNCH_UPDATE_VMSA`] | VM | none |
//! | 5 | [`KVM_SEV_LAUNCH_SECRET`] | VM | [`KvmSevLaunchSecret`] |
//! | 6 | [`KVM_SEV_LAUNCH_MEASURE`] | VM | [`KvmSevLaunchMeasure`] |
//! | 7 | [`KVM_SEV_LAUNCH_FINISH`] | VM | none |
//! | 8, 9, 11, 21 | [`KVM_SEV_SEND_START`], [`KVM_SEV_SEND_UPDATE_DATA`], [`KVM_SEV_SEND_FINISH`], [`KVM_SEV_SEND_CANCEL`] | VM | [`KvmSevSendStart`], [`KvmSevSendUpdateData`], none, none |
//! | 12, 13, 15 | [`KVM_SEV_RECEIVE_START`], [`KVM_SEV_RECEIVE_UPDATE_DATA`], [`KVM_SEV_RECEIVE_FINISH`] | VM | [`KvmSevReceiveStart`], [`KvmSevReceiveUpdateData`], none |
//! | 10, 14, 19 | SEND/RECEIVE_UPDATE_VMSA, CERT_EXPORT | VM | no handler: `-EINVAL` |
//! | 16 | [`KVM_SEV_GUEST_STATUS`] | VM | [`KvmSevGuestStatus`] |
//! | 17, 18 | [`KVM_SEV_DBG_DECRYPT`], [`KVM_SEV_DBG_ENCRYPT`] | VM | [`KvmSevDbg`] |
//! | 20 | [`KVM_SEV_GET_ATTESTATION_REPORT`] | VM | [`KvmSevAttestationReport`] |
//! | 100 | [`KVM_SEV_SNP_LAUNCH_START`] | VM | [`KvmSevSnpLaunchStart`] |
//! | 101 | [`KVM_SEV_SNP_LAUNCH_UPDATE`] | VM | [`KvmSevSnpLaunchUpdate`] |
//! | 102 | [`KVM_SEV_SNP_LAUNCH_FINISH`] | VM | [`KvmSevSnpLaunchFinish`] |
//! | 103 | [`KVM_SEV_SNP_ENABLE_REQ_CERTS`] (7.0) | VM | none |
//! | 0 | [`KVM_TDX_CAPABILITIES`] | VM | [`KvmTdxCapabilities`] + entries ([`TdxCapabilitiesBuf`]) |
//! | 1 | [`KVM_TDX_INIT_VM`] | VM | [`KvmTdxInitVm`] + entries ([`TdxInitVmBuf`]) |
//! | 2 | [`KVM_TDX_INIT_VCPU`] | vCPU | immediate: initial RCX |
//! | 3 | [`KVM_TDX_INIT_MEM_REGION`] | vCPU | [`KvmTdxInitMemRegion`] |
//! | 4 | [`KVM_TDX_FINALIZE_VM`] | VM | none |
//! | 5 | [`KVM_TDX_GET_CPUID`] | vCPU | [`KvmCpuid2`] + entries |
//!
//! # Example: what the host offers, and a TDX sub-command as bytes
//!
//! ```
//! use kvm_coco_uapi::{
//!     KVM_MEMORY_ENCRYPT_OP, KVM_TDX_MEASURE_MEMORY_REGION, KvmTdxCmd, KvmTdxInitMemRegion,
//!     TdxCmdId, TdxScope, VmType, VmTypes,
//! };
//! use zerocopy::IntoBytes;
//!
//! // KVM_CHECK_EXTENSION(KVM_CAP_VM_TYPES) returned bits 0 (default) and 5 (TDX).
//! let offered = VmTypes::from_check_extension(0b10_0001);
//! assert!(offered.supports(VmType::Tdx) && !offered.supports(VmType::Snp));
//!
//! // KVM_TDX_INIT_MEM_REGION, measured: 16 pages of `source` at GPA 0xffff_0000.
//! let source = vec![0x90u8; 16 * 4096];
//! let region = KvmTdxInitMemRegion {
//!     source_addr: source.as_ptr() as u64,
//!     gpa: 0xffff_0000,
//!     nr_pages: 16,
//! };
//! let cmd = KvmTdxCmd::new(
//!     TdxCmdId::InitMemRegion,
//!     KVM_TDX_MEASURE_MEMORY_REGION as u32,
//!     &raw const region as u64,
//! );
//! // struct kvm_tdx_cmd { __u32 id; __u32 flags; __u64 data; __u64 hw_error; }
//! let bytes = cmd.as_bytes();
//! assert_eq!(bytes.len(), 24);
//! assert_eq!(bytes[..8], [3, 0, 0, 0, 1, 0, 0, 0]); // id 3, flags MEASURE
//! assert_eq!(bytes[16..], [0; 8]); // hw_error: KVM requires 0 on input
//! // It goes to a vCPU fd: ioctl(vcpu_fd, KVM_MEMORY_ENCRYPT_OP, &cmd), 0xC008AEBA.
//! assert_eq!(TdxCmdId::InitMemRegion.scope(), TdxScope::Vcpu);
//! assert_eq!(KVM_MEMORY_ENCRYPT_OP, 0xC008_AEBA);
//! ```
//!
//! # Traps worth knowing
//!
//! * [`KVM_MEMORY_ENCRYPT_OP`] encodes size 8 (a pointer), not the size of the command
//!   struct; REG/UNREG_REGION are `_IOR` although input-only.
//! * [`KvmSevCmd::sev_fd`] is remembered **as a number** by LAUNCH_START / RECEIVE_START /
//!   SNP_LAUNCH_START: keep that `/dev/sev` fd open under the same number.
//! * `/dev/sev` structs are packed: [`SevIssueCmd::data`] is at offset 4.
//! * [`KvmSevSnpLaunchFinish::host_data`] sits at the odd offset 19.
//! * [`KvmSevGuestStatus::state`] is a `u32` although the documentation says `u8`.
//! * [`KVM_TDX_CAPABILITIES`]: `-E2BIG` does **not** report the needed entry count.
//! * [`KvmSevSnpLaunchUpdate`] and [`KvmTdxInitMemRegion`] are in/out: loop until done.
//! * [`KVM_EXIT_SNP_REQ_CERTS`] is 43 (patch-era code says 40 or 42); [`KVM_EXIT_TDX`] is 40.
//! * [`KVM_EXIT_MEMORY_FAULT`] comes with `KVM_RUN` returning -1 / `EFAULT`.
//! * A MAP_GPA_RANGE or REQ_CERTS reply outside the accepted set makes the next `KVM_RUN`
//!   fail with `-EINVAL` ([`MapGpaRangeRet`], [`SnpReqCertsRet`]).
//!
//! # Verification
//!
//! Layouts are checked three ways: compile-time assertions of every size, alignment and
//! offset from hand-typed tables; a test against the independent `kvm-bindings` crate;
//! and `cargo xtask uapi-check`, which compiles one C `_Static_assert` per item of the
//! [`manifest`] against Debian's `linux-libc-dev` 7.3.4 headers.
//!
//! # Features
//!
//! * `alloc` (default): heap-backed [`CpuidFam`] constructors and the
//!   [`TdxCapabilitiesBuf`] / [`TdxInitVmBuf`] aliases. Without it, [`CpuidFam`] works over
//!   caller-provided `[u64; N]` storage.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(feature = "alloc")]
extern crate alloc;

#[macro_use]
mod macros;

pub mod cpuid;
pub mod error;
pub mod exit;
pub mod ioctl;
pub mod manifest;
pub mod memory;
pub mod sev;
pub mod sev_dev;
pub mod snp;
pub mod tdx;
pub mod vm;

/// Compiles and runs the README's example as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

pub use cpuid::*;
pub use error::*;
pub use exit::*;
pub use ioctl::*;
pub use memory::*;
pub use sev::*;
pub use sev_dev::*;
pub use snp::*;
pub use tdx::*;
pub use vm::*;
