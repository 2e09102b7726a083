//! Launch, measure, attest and run confidential VMs on Linux KVM.

pub mod measure;
