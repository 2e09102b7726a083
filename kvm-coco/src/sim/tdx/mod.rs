//! The software TDX stack: a TDX module 1.5 model ([`SimTdxModule`], SEAMCALL level) and a
//! model of Linux 7.3 KVM's TDX layer on top of it ([`SimTdxVm`], [`SimTdxVcpu`]).
//!
//! | module | what |
//! |---|---|
//! | [`status`] | [`TdxStatus`]: SEAMCALL completion status with class and operand id |
//! | [`params`] | [`TdParams`] (TD_PARAMS) and the module capability set [`TdxModuleConfig`] |
//! | [`module`] | the TD lifecycle, OP_STATE legality, MRTD / RTMR, TDREPORT, private memory |
//! | [`report`] | [`TdReport`] (TDREPORT_STRUCT) and the TD quote v4 ([`TdQuote`]) |
//! | [`kvm`] | the `KVM_TDX_*` sub-commands with KVM's errnos |
//!
//! Measurement blocks are the ones of [`crate::measure::calc`], so the MRTD of a simulated
//! launch and the offline MRTD of the same plan come from one definition.
//!
//! # Example: a TD launch end to end
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use kvm_coco::sim::tdx::*;
//! use kvm_coco_uapi::{KvmCpuidEntry2, KvmMemoryAttributes, KvmTdxInitMemRegion, KvmTdxInitVm,
//!     TdxInitVmBuf, KVM_MEMORY_ATTRIBUTE_PRIVATE};
//!
//! let module = Arc::new(Mutex::new(SimTdxModule::new(TdxModuleConfig::default())));
//! let vm = SimTdxVm::new(module.clone(), SimKvmConfig::default());
//! let mut init = TdxInitVmBuf::with_capacity(1);
//! // Guest physical address width 48 (CPUID 0x80000008 EAX[23:16]).
//! init.push(KvmCpuidEntry2 { function: 0x8000_0008, eax: 48 << 16, ..Default::default() }).unwrap();
//! vm.init_vm(&mut init)?;
//! vm.enable_split_irqchip().unwrap();
//! let vcpu = vm.create_vcpu(0).unwrap();
//! vcpu.init(0)?;
//!
//! let page = [0x90u8; 4096];
//! vm.add_guest_memfd_region(0x1000, 0x1000).unwrap();
//! vm.set_memory_attributes(&KvmMemoryAttributes {
//!     address: 0x1000, size: 0x1000, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE, flags: 0,
//! }).unwrap();
//! let mut region = KvmTdxInitMemRegion { source_addr: 0x7000_0000, gpa: 0x1000, nr_pages: 1 };
//! vcpu.init_mem_region(&mut region, true, &UserRegion { addr: 0x7000_0000, bytes: &page })?;
//! assert_eq!(region.nr_pages, 0);
//! vm.finalize()?;
//!
//! // The host sees ciphertext; the guest sees the page.
//! assert_ne!(vm.host_read_private(0x1000).unwrap(), page);
//! let td = vm.td().unwrap();
//! assert_eq!(*module.lock().unwrap().guest_read_private(td, 0x1000).unwrap(), page);
//! assert!(vm.mrtd().is_some());
//! # Ok::<(), KvmTdxError>(())
//! ```

#![forbid(unsafe_code)]

pub mod kvm;
pub mod module;
pub mod params;
pub mod report;
pub mod status;

pub use kvm::{
    KvmTdxError, SimKvmConfig, SimTdxVcpu, SimTdxVm, TdState, UserMemory, UserRegion, UserSpace,
};
pub use module::{Lifecycle, OpState, SeamcallLeaf, SimTdxModule, TdHandle, VcpuState, VpHandle};
pub use params::{CpuidLeafConfig, TdConfig, TdParams, TdxModuleConfig};
pub use report::{QuoteError, QuoteHeaderV4, TdQuote, TdQuoteBody, TdReport};
pub use status::{OperandId, TdxStatus};
