//! The software model: in-process simulations of the confidential-computing firmware and of
//! the kernel code that drives it, so every launch flow can be exercised, measured and
//! attested on any Linux machine.
//!
//! Only compiled with the crate feature `sim`, which is off by default: a VMM that wants to
//! test against the software host enables it, usually for its tests alone
//! (`kvm-coco = { version = "...", features = ["sim"] }` under `[dev-dependencies]`).
//!
//! | module | what |
//! |---|---|
//! | [`tdx`] | a TDX module 1.5 model and Linux 7.3 KVM's TDX layer on top of it |
//! | [`sev`] | Linux 7.3 KVM's SEV / SEV-ES / SEV-SNP layer (`svm/sev.c`) over psp-driver's software PSP firmware |
//! | [`user`] | user-space memory as the simulated kernel reads and writes it |
//! | [`guest`] | the scripted guest programs a vCPU served by the software host runs |
//! | [`host`] | the software host: the models answering a process's own `/dev/kvm` and `/dev/sev` system calls |
//!
//! The models aim at fidelity: the same measurements, report layouts, state machines and
//! error codes (TDX module status, kernel errno) as the real stack, and deterministic
//! behaviour for a given seed. Where they cannot be the real thing (the CPU's report MAC,
//! memory encryption, quote signatures) the item documents what is modelled.

// Only the software host's system calls (`host::sys`) need `unsafe`; every other module of
// the model forbids it.

pub mod guest;
pub mod host;
pub(crate) mod ranges;
pub mod sev;
pub mod tdx;
pub mod user;
pub(crate) mod workers;
