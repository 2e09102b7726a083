//! Launch plans and offline launch measurement for SEV, SEV-ES, SEV-SNP and TDX.
//!
//! The pieces, in the order a caller uses them:
//!
//! 1. [`firmware::FirmwareImage::parse`] reads an OVMF / TDVF image (borrowed, not copied)
//!    into its footer table, SEV metadata, reset block and TDVF sections.
//! 2. [`plan::LaunchPlan`] turns the firmware, an optional direct-boot kernel
//!    ([`hashes::DirectBoot`]), the vCPU count and model ([`vcpu`]), guest features and VMM
//!    conventions into the ordered steps a launcher executes.
//! 3. [`calc::measure`] computes the measurement the firmware will report for that plan
//!    (SEV / SEV-ES launch digest, SNP MEASUREMENT, TDX MRTD), optionally with a
//!    [`log::LaunchLog`]; [`calc::sev_launch_measure`] adds the SEV `LAUNCH_MEASURE` HMAC.
//!
//! [`synthetic`] builds small OVMF-like images (SYN64K and variants) for demos, tests and
//! hardware-free launches.
//!
//! The shared SNP / SEV digest primitives live in [`psp_driver::digest`], so the software
//! firmware measures exactly what this module predicts.
//!
//! # Example
//!
//! The SNP measurement of a minimal image (two pages, no metadata, so no VMSA can be built;
//! [`plan::LaunchPlan::snp_firmware_only`] measures the firmware pages alone):
//!
//! ```
//! use kvm_coco::measure::{calc, firmware::FirmwareImage, plan::LaunchPlan};
//!
//! let image = vec![0u8; 8192];
//! let fw = FirmwareImage::parse(&image)?;
//! let plan = LaunchPlan::snp_firmware_only(&fw)?;
//! let m = calc::measure(&plan, &calc::MeasureOptions { log: true, progress: None })?;
//! assert_eq!(m.log.unwrap().entries.len(), 2);
//! assert_eq!(m.digest.as_bytes().len(), 48);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod calc;
pub mod firmware;
pub mod hashes;
pub mod log;
pub mod plan;
pub mod synthetic;
pub mod vcpu;
pub mod vmsa;

pub use calc::{LaunchDigest, MeasureError, MeasureOptions, Measurement, measure};
pub use firmware::{FirmwareError, FirmwareImage};
pub use log::LaunchLog;
pub use plan::{Data, LaunchPlan, PageKind, PlanError, PlanInputs, Step, Tee};
