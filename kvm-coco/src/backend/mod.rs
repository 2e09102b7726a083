//! Backends: what actually executes VM and vCPU operations.
//!
//! Only [`kvm`] exists: the host's `/dev/kvm`, reached through kvm-ioctls where it covers
//! an ioctl and through the few raw calls in [`kvm::ioctl`] where it does not. The public
//! types ([`Kvm`](crate::Kvm), [`Vm`](crate::Vm), [`Vcpu`](crate::Vcpu)) call into this
//! module only, so a software model of KVM can later be placed beside it behind the same
//! API without touching callers.

pub(crate) mod kvm;
