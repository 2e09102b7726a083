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
//! permission) the example says why and stops.
//!
//! ```
//! use std::sync::Arc;
//! use kvm_coco::{Exit, GuestMapping, Kvm, MemoryRegion, VmType};
//!
//! let kvm = match Kvm::open() {
//!     Ok(kvm) => kvm,
//!     Err(e) if e.is_kvm_unavailable() => {
//!         eprintln!("no KVM here: {e}");
//! #       // As a doctest: a visible skip, or a failure where /dev/kvm is required (CI).
//! #       kvm_coco_test_skip::skip("/dev/kvm", &e);
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
//!
//! # Example: a confidential launch over the VMM's own VM
//!
//! A VMM keeps its VM: it creates the VM, the guest RAM (a shared mapping and a
//! guest_memfd per range) and the vCPUs with kvm-ioctls, and lends them to a [`Launch`]
//! through [`BorrowedVm`](launch::BorrowedVm), which issues only the confidential-computing
//! calls (`KVM_SEV_INIT2`, `SNP_LAUNCH_START`, `SNP_LAUNCH_UPDATE`, `SNP_LAUNCH_FINISH`, …)
//! and writes the initial image into the VMM's RAM. Here an SEV-SNP guest with one vCPU is
//! launched from a small synthetic firmware image. On a machine without SNP the software
//! host (feature `sim`) answers this thread's `/dev/kvm` and `/dev/sev` calls; on an SNP
//! host, leave those two lines out and the kernel answers the same calls.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
//!
//! use kvm_bindings::{KVM_MEM_GUEST_MEMFD, kvm_create_guest_memfd, kvm_userspace_memory_region2};
//! use kvm_coco::launch::{BorrowedVcpu, BorrowedVm, GuestRam, InitParams, Launch, SnpInit};
//! use kvm_coco::measure::{FirmwareImage, LaunchPlan, plan::PlanInputs};
//! use kvm_coco::{GuestMapping, VmType};
//!
//! # if let Err(e) = kvm_coco::sim::host::SoftwareHost::probe() {
//! #     // A visible skip, or a failure where seccomp is required (CI).
//! #     kvm_coco_test_skip::skip("seccomp user notification", e);
//! #     return Ok(());
//! # }
//! let host = kvm_coco::sim::host::SoftwareHost::builder().start()?;
//! host.serve_current_thread()?;
//!
//! // What enters the initial image: the firmware, its metadata pages and the VMSA of one
//! // EPYC-v4 vCPU.
//! let image = kvm_coco::measure::synthetic::syn64k();
//! let firmware = FirmwareImage::parse(&image)?;
//! let plan = LaunchPlan::snp(&PlanInputs {
//!     vcpus: 1,
//!     vcpu_sig: kvm_coco::measure::vcpu::cpu_type_sig("EPYC-v4"),
//!     ..PlanInputs::new(&firmware)
//! })?;
//!
//! // The VMM's VM, /dev/sev fd and guest RAM, one memory slot per range the plan fills.
//! let kvm = kvm_ioctls::Kvm::new()?;
//! let vm_fd = kvm.create_vm_with_type(u64::from(VmType::Snp.abi_value()))?;
//! let sev = std::fs::OpenOptions::new().read(true).write(true).open("/dev/sev")?;
//! let mut ram = Vec::new();
//! let mut lent = Vec::new();
//! for (slot, (gpa, size)) in (0..).zip(kvm_coco::launch::plan_memory(&plan)) {
//!     let shared = GuestMapping::anonymous(usize::try_from(size)?)?;
//!     let gmem = vm_fd.create_guest_memfd(kvm_create_guest_memfd { size, ..Default::default() })?;
//!     // SAFETY: KVM_CREATE_GUEST_MEMFD returned a new fd that nothing else owns.
//!     let gmem = unsafe { OwnedFd::from_raw_fd(gmem) };
//!     let region = kvm_userspace_memory_region2 {
//!         slot,
//!         flags: KVM_MEM_GUEST_MEMFD,
//!         guest_phys_addr: gpa,
//!         memory_size: size,
//!         userspace_addr: shared.host_addr(),
//!         guest_memfd: u32::try_from(gmem.as_raw_fd())?,
//!         ..Default::default()
//!     };
//!     // SAFETY: `shared` stays mapped (in `ram`) until after the VM fd is closed.
//!     unsafe { vm_fd.set_user_memory_region2(region)? };
//!     // SAFETY: the same mapping, kept for longer than the launch.
//!     lent.push(unsafe { GuestRam::new(gpa, size, shared.host_addr()) }.with_guest_memfd());
//!     ram.push((shared, gmem));
//! }
//!
//! // kvm-coco launches over it. The vCPUs come after KVM_SEV_INIT2, as the kernel requires.
//! let vm = BorrowedVm::new(&vm_fd, VmType::Snp, Some(sev.as_fd()), lent)?;
//! let mut launch = Launch::new(vm, InitParams::Snp(SnpInit::default()))?;
//! let mut vcpu_fd = vm_fd.create_vcpu(0)?;
//! launch.adopt_vcpu(BorrowedVcpu::new(&mut vcpu_fd, 0, VmType::Snp))?;
//! let mut launch = launch.start()?;
//! launch.add_plan(&plan)?;
//! let launch = launch.measure()?.finish()?;
//!
//! // The value the platform's measurement must equal, computed on the host from what the
//! // launch handed over. sev-snp-measure (--mode snp --vcpus 1 --vcpu-type EPYC-v4 --ovmf
//! // syn64k.fd) computes the same from the image alone. The platform's own value is the
//! // MEASUREMENT of the guest's attestation report (kvm-coco/examples/own_vm.rs asks the
//! // guest for it).
//! assert_eq!(
//!     hex::encode(launch.expected_measurement()),
//!     "54d686bed4f38e22c5e3ec6b7fdbd7288e0c4175469bf7274fcbe4ab5837f978\
//!      04371497a3ce833231b857a75e3054f2"
//! );
//!
//! // The launch is over: the VM and vCPU fds are the VMM's again. It closes them before it
//! // unmaps the guest RAM.
//! let (vm, vcpus) = launch.into_parts();
//! drop((vm, vcpus));
//! drop((vcpu_fd, vm_fd));
//! drop(ram);
//! # Ok(())
//! # }
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

/// The README's examples, compiled as doctests (the guest example is `no_run`: it needs
/// `/dev/kvm`; the crate-level example above runs the same guest where there is one).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

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
