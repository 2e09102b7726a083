//! The real-KVM backend.
//!
//! * [`ioctl`]: raw ioctls that kvm-ioctls 0.25 lacks (system-fd device attributes, the
//!   vCPU-scope `KVM_MEMORY_ENCRYPT_OP`, `KVM_PRE_FAULT_MEMORY`). Every `unsafe` call to the
//!   kernel outside kvm-ioctls lives there.
//! * [`run_page`]: decoding of the `kvm_run` exit arms kvm-ioctls reports as unsupported
//!   (`KVM_EXIT_TDX`, `KVM_EXIT_SNP_REQ_CERTS`).

pub(crate) mod ioctl;
pub(crate) mod run_page;
