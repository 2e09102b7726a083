//! Launch, measure, attest and run confidential VMs on Linux KVM.
//!
//! The crate is layered the way the kernel is:
//!
//! | module | what |
//! |---|---|
//! | [`system`] | [`Kvm`]: `/dev/kvm`, capability checks, VM creation |
//! | [`vm_type`] | [`VmType`], the [`Characteristics`] derived from it, and the technology [`Tee`] |
//! | [`caps`] | [`Capabilities`]: the one capabilities query |
//! | [`vm`] | [`Vm`]: vCPUs, memory slots, guest_memfd, memory attributes |
//! | [`memory`] | [`GuestMapping`], [`GuestMemfd`], [`MemoryRegion`] |
//! | [`vcpu`] | [`Vcpu`]: `KVM_RUN`, registers, protected state |
//! | [`exit`] | [`Exit`]: typed exits with typed replies |
//! | [`ops`] | the `KVM_MEMORY_ENCRYPT_OP` sub-commands (SEV, SNP, TDX) |
//! | [`error`] | [`Error`], [`Errno`] |
//! | [`launch`] | launch flows (typestate) over the real and the simulated backend |
//! | [`measure`] | launch plans and offline launch measurement |
//! | `sim` | the software host and its models of the firmware and of KVM's confidential-computing layers (feature `sim`, off by default) |
//!
//! The ioctl plumbing that kvm-ioctls does not provide lives in a private `backend::kvm`
//! module, the only place besides [`memory`]'s `mmap` that calls into the kernel directly.
//!
//! # Example: a tiny real-mode guest
//!
//! The guest writes `'A'` to the serial port and halts
//! (`mov dx, 0x3f8; mov al, 'A'; out dx, al; hlt`). Without `/dev/kvm` (or without
//! permission) the example prints why and stops.
//!
//! ```
//! use std::sync::Arc;
//! use kvm_coco::{Exit, GuestMapping, Kvm, MemoryRegion, VmType};
//!
//! let kvm = match Kvm::open() {
//!     Ok(kvm) => kvm,
//!     Err(e) if e.is_kvm_unavailable() => {
//!         println!("skipped: {e}");
//!         return Ok(());
//!     }
//!     Err(e) => return Err(e),
//! };
//! # // Watchdog: SIGALRM ends this doctest process should KVM_RUN ever hang.
//! # // SAFETY: alarm(2) only arms a timer.
//! # unsafe { libc::alarm(30) };
//! let vm = kvm.create_vm(VmType::Default)?;
//! let mem = Arc::new(GuestMapping::anonymous(0x10_0000)?);
//! mem.write(0x1000, &[0xba, 0xf8, 0x03, 0xb0, b'A', 0xee, 0xf4])?;
//! vm.set_memory_region(MemoryRegion::new(0, 0, mem))?;
//!
//! let mut vcpu = vm.create_vcpu(0)?;
//! let mut sregs = vcpu.sregs()?;
//! sregs.cs.base = 0;
//! sregs.cs.selector = 0;
//! vcpu.set_sregs(&sregs)?;
//! let mut regs = vcpu.regs()?;
//! regs.rip = 0x1000;
//! regs.rflags = 2;
//! vcpu.set_regs(&regs)?;
//!
//! let mut out = Vec::new();
//! loop {
//!     match vcpu.run()? {
//!         Exit::IoOut { port: 0x3f8, data } => out.extend_from_slice(data),
//!         Exit::Hlt => break,
//!         other => panic!("unexpected exit {other:?}"),
//!     }
//! }
//! assert_eq!(out, b"A");
//! # Ok::<(), kvm_coco::Error>(())
//! ```

pub mod caps;
pub mod error;
pub mod exit;
pub mod launch;
pub mod measure;
pub mod memory;
pub mod ops;
#[cfg(feature = "sim")]
pub mod sim;
pub mod system;
pub mod vcpu;
pub mod vm;
pub mod vm_type;

mod backend;

pub use caps::{Availability, Capabilities, Unavailable};
pub use error::{Errno, Error, RegisterOp, Result};
pub use exit::{
    Access, CertsReply, Exit, MapGpaReply, MemoryFault, SystemEvent, TdVmCallStatus, TdxExit,
};
pub use launch::{InitParams, Launch, LaunchError};
pub use memory::{
    GuestMapping, GuestMemfd, GuestMemfdFlags, MemoryAttributes, MemoryRegion, MemoryRegionFlags,
    MemoryState,
};
pub use ops::EncryptOpError;
pub use system::Kvm;
pub use vcpu::Vcpu;
pub use vm::Vm;
pub use vm_type::{Characteristics, NotConfidential, Tee, Vendor, VmType, VmTypes};
