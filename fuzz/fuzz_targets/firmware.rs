//! Firmware image metadata: the OVMF footer table, the SEV metadata (ASEV sections), the
//! SEV-ES reset block and TDVF, then every launch plan built from them and their
//! measurement. Any input must give a value or a typed error, never a panic.
//!
//! Plans are built for every input, but only plans adding at most [`MEASURED_PLAN_LIMIT`]
//! bytes are measured. Metadata may declare up to `MAX_PLAN_BYTES` (64 GiB) of zero or
//! extended memory, and measuring that is linear in the bytes: a 4 GiB TDX `MR_EXTEND`
//! section alone takes about 25 s in a release build. Such an input is slow, not wrong, and
//! the loops it would drive are the same ones a 16 MiB plan drives.
#![no_main]

use kvm_coco::measure::plan::PlanInputs;
use kvm_coco::measure::{FirmwareImage, LaunchPlan, MeasureOptions, measure};
use libfuzzer_sys::fuzz_target;

/// Largest plan measured (16 MiB: more than any real OVMF or TDVF image adds).
const MEASURED_PLAN_LIMIT: u64 = 16 << 20;

fuzz_target!(|data: &[u8]| {
    let Ok(fw) = FirmwareImage::parse(data) else {
        return;
    };
    let _ = fw.footer_entries().len();
    let _ = fw.checked_reset_eip();
    let _ = fw.checked_hash_table();
    let _ = fw.checked_secret_block();
    let _ = fw.checked_sev_metadata();
    let _ = fw.checked_tdvf();
    let opts = MeasureOptions {
        log: true,
        progress: None,
    };
    let inputs = PlanInputs {
        vcpus: 2,
        vcpu_sig: kvm_coco::measure::vcpu::cpu_type_sig("EPYC-v4"),
        ..PlanInputs::new(&fw)
    };
    for plan in [
        LaunchPlan::sev(&inputs),
        LaunchPlan::sev_es(&inputs),
        LaunchPlan::snp(&inputs),
        LaunchPlan::snp_firmware_only(&fw),
        LaunchPlan::tdx(&fw),
    ]
    .into_iter()
    .flatten()
    {
        if plan.total_len() > MEASURED_PLAN_LIMIT {
            continue;
        }
        if let Ok(m) = measure(&plan, &opts)
            && let Some(log) = m.log
        {
            // The log of a measurement replays (with its plan) to the same digest.
            let replayed = log.replay_plan(&plan).expect("a fresh log replays");
            assert_eq!(replayed, m.digest);
        }
    }
});
