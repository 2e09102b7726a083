//! Direct boot given as files (streamed into their digests) against sev-snp-measure's values
//! for SYN64K with `--kernel kernel.bin --initrd initrd.bin --append console=ttyS0`
//! (firmware-and-measurement facts §8.1 side files, §8.2 outputs).

mod measure_common;

use kvm_coco::measure::calc::{MeasureOptions, measure};
use kvm_coco::measure::firmware::FirmwareImage;
use kvm_coco::measure::hashes::{DirectBoot, SevHashes};
use kvm_coco::measure::plan::{LaunchPlan, PlanError, PlanInputs};
use kvm_coco::measure::synthetic::syn64k;

/// `--mode snp --vcpus 1 --vcpu-type EPYC-v4 K` on SYN64K (sev-snp-measure 0.0.13).
const SNP_K: &str = "5d2ef486503b2ee73a2eb4f2a8432921c53a3ee74ea6df6b1e0b5ccb2f54c389b5e93d3023d60c56969cfae886762306";
/// `--mode sev K` on SYN64K (sev-snp-measure 0.0.13).
const SEV_K: &str = "0449dc440298ed205dff0e3cca11f51337ac84500e8bc6321693c298ac14d738";
/// EPYC-v4's CPUID(1).EAX signature as sev-snp-measure defines it.
const EPYC_V4_SIG: u32 = 0x0080_0f12;

/// Writes the facts §8.1 side files `kernel.bin` and `initrd.bin` (the recipes of
/// [`measure_common::side_files`]) to a scratch directory.
fn side_files() -> (std::path::PathBuf, Vec<u8>, Vec<u8>) {
    let dir = measure_common::scratch("boot_files");
    let files = measure_common::side_files();
    let take = |name: &str| {
        let (_, bytes) = files.iter().find(|(n, _)| *n == name).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
        bytes.clone()
    };
    let kernel = take("kernel.bin");
    let initrd = take("initrd.bin");
    (dir, kernel, initrd)
}

#[test]
fn streamed_boot_files_match_the_tool() {
    let (dir, kernel, initrd) = side_files();
    let image = syn64k();
    let fw = FirmwareImage::parse(&image).unwrap();
    let hashes = SevHashes::from_files(
        &dir.join("kernel.bin"),
        Some(&dir.join("initrd.bin")),
        Some("console=ttyS0"),
    )
    .unwrap();
    // The facts' digests of the side files (computed with sha256sum).
    assert_eq!(
        hex::encode(hashes.kernel),
        "5438bbaf3e84daff499e05203d38184fa7003bbd25dbe59ea780229ab88590dc"
    );
    assert_eq!(
        hex::encode(hashes.initrd),
        "5f8f56d6cb3df6b1394d91f8814b806dd20005fe50bc36207b291cc1c10d1b87"
    );

    let mut inputs = PlanInputs::new(&fw);
    inputs.vcpu_sig = Some(EPYC_V4_SIG);
    inputs.boot_hashes = Some(hashes);
    let opts = MeasureOptions::default();
    let snp = measure(&LaunchPlan::snp(&inputs).unwrap(), &opts).unwrap();
    assert_eq!(hex::encode(snp.digest.as_bytes()), SNP_K);
    let sev = measure(&LaunchPlan::sev(&inputs).unwrap(), &opts).unwrap();
    assert_eq!(hex::encode(sev.digest.as_bytes()), SEV_K);

    // Bytes and digests together are refused: one boot, one source.
    inputs.boot = Some(DirectBoot {
        kernel: &kernel,
        initrd: Some(&initrd),
        cmdline: Some("console=ttyS0"),
    });
    assert_eq!(
        LaunchPlan::snp(&inputs).unwrap_err(),
        PlanError::BootGivenTwice
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_missing_kernel_file_is_an_io_error() {
    let err =
        SevHashes::from_files(std::path::Path::new("/nonexistent/kernel"), None, None).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
}
