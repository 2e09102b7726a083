//! The library against the committed sev-snp-measure vectors
//! (tests/vectors/sev-snp-measure.json, produced by tests/vectors/gen_ssm_vectors.py), and
//! live against sev-snp-measure itself when it is installed.

mod measure_common;

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine;
use kvm_coco::measure::calc::{MeasureOptions, measure};
use kvm_coco::measure::firmware::FirmwareImage;
use kvm_coco::measure::hashes::DirectBoot;
use kvm_coco::measure::plan::{LaunchPlan, PlanInputs};
use kvm_coco::measure::vcpu::{VmmType, cpu_sig, cpu_type_sig};
use measure_common::*;

/// Writes the inputs the vectors were made from (used by gen_ssm_vectors.py).
#[test]
#[ignore = "writes the vector inputs to $KVM_COCO_WRITE_INPUTS"]
fn write_inputs() {
    let dir = std::env::var_os("KVM_COCO_WRITE_INPUTS").expect("set KVM_COCO_WRITE_INPUTS");
    assert!(
        measure_common::write_inputs(Path::new(&dir)),
        "Debian OVMF.fd is needed"
    );
}

/// Computes what sev-snp-measure prints for `args`, through the library API. `Err` for the
/// cases the tool rejects.
fn run_case(args: &[String], files: &BTreeMap<&str, Vec<u8>>) -> Result<String, String> {
    let mut o: BTreeMap<&str, &str> = BTreeMap::new();
    let mut it = args.iter();
    while let Some(k) = it.next() {
        o.insert(k.as_str(), it.next().ok_or("missing value")?.as_str());
    }
    let file = |k: &str| {
        o.get(k)
            .map(|n| files.get(n).ok_or(format!("no file {n}")).map(|v| &v[..]))
            .transpose()
    };
    let img = file("--ovmf")?.ok_or("no --ovmf")?;
    let fw = FirmwareImage::parse(img).map_err(|e| e.to_string())?;
    let mode = o["--mode"];
    if mode == "snp:ovmf-hash" {
        let plan = LaunchPlan::snp_firmware_only(&fw).map_err(|e| e.to_string())?;
        return Ok(measure(&plan, &MeasureOptions::default())
            .unwrap()
            .digest
            .to_string());
    }
    let mut inp = PlanInputs::new(&fw);
    inp.vcpus = o
        .get("--vcpus")
        .map_or(Ok(0), |v| v.parse())
        .map_err(|_| "vcpus")?;
    inp.vcpu_sig = if let Some(f) = o.get("--vcpu-family") {
        let n = |k: &str| o.get(k).and_then(|v| v.parse::<u32>().ok()).ok_or("fms");
        Some(cpu_sig(
            f.parse().map_err(|_| "family")?,
            n("--vcpu-model")?,
            n("--vcpu-stepping")?,
        ))
    } else if let Some(s) = o.get("--vcpu-sig") {
        Some(int0(s).ok_or("sig")? as u32)
    } else {
        o.get("--vcpu-type")
            .map(|t| cpu_type_sig(t).ok_or("type"))
            .transpose()?
    };
    inp.vmm = o
        .get("--vmm-type")
        .map_or(Ok(VmmType::Qemu), |v| v.parse())
        .map_err(|_| "vmm")?;
    inp.guest_features = o
        .get("--guest-features")
        .map_or(Some(1), |v| int0(v))
        .ok_or("features")?;
    let initrd = file("--initrd")?;
    if let Some(kernel) = file("--kernel")? {
        inp.boot = Some(DirectBoot {
            kernel,
            initrd,
            cmdline: o.get("--append").copied(),
        });
    }
    if let Some(h) = o.get("--snp-ovmf-hash") {
        inp.snp_firmware_digest = Some(hex::decode(h).unwrap().try_into().unwrap());
    }
    let plan = match mode {
        "sev" => LaunchPlan::sev(&inp),
        "seves" => LaunchPlan::sev_es(&inp),
        "snp" => LaunchPlan::snp(&inp),
        m => panic!("mode {m}"),
    }
    .map_err(|e| e.to_string())?;
    let d = measure(&plan, &MeasureOptions::default())
        .map_err(|e| e.to_string())?
        .digest;
    Ok(match o.get("--output-format") {
        Some(&"base64") => base64::engine::general_purpose::STANDARD.encode(d.as_bytes()),
        _ => d.to_string(),
    })
}

fn inputs() -> (BTreeMap<&'static str, Vec<u8>>, bool) {
    let mut files: BTreeMap<&str, Vec<u8>> =
        synthetic_images().into_iter().chain(side_files()).collect();
    let ovmf = debian_ovmf()
        .map(|(_, b)| files.insert("OVMF.fd", b))
        .is_some();
    (files, ovmf)
}

#[test]
fn committed_vectors() {
    let v = load_vectors();
    let (files, have_ovmf) = inputs();
    for (name, b) in &files {
        assert_eq!(
            v.files.get(*name),
            Some(&sha256_hex(b)),
            "input {name} differs from the one the vectors used"
        );
    }
    let (mut ok, mut rejected, mut skipped) = (0, 0, 0);
    for c in &v.cases {
        if !have_ovmf && c.args.iter().any(|a| a == "OVMF.fd") {
            skipped += 1;
            continue;
        }
        let ours = run_case(&c.args, &files);
        if c.status == 0 {
            assert_eq!(
                ours.as_deref(),
                Ok(c.stdout.trim()),
                "sev-snp-measure {}",
                c.args.join(" ")
            );
            ok += 1;
        } else {
            assert!(
                ours.is_err(),
                "sev-snp-measure rejects {} but we computed {ours:?}",
                c.args.join(" ")
            );
            rejected += 1;
        }
    }
    eprintln!(
        "{}: {ok} digests matched, {rejected} rejections matched, {skipped} skipped (no OVMF.fd)",
        v.tool
    );
    assert!(ok > 100);
}

/// Runs the tool itself on a sample of the cases (every 7th; the CLI test runs all of them).
#[test]
fn live_against_tool() {
    let Some(tool) = ssm_tool() else { return };
    let dir = scratch("measure_vectors_live");
    let have_ovmf = measure_common::write_inputs(&dir);
    let (files, _) = inputs();
    let v = load_vectors();
    let mut n = 0;
    for c in v.cases.iter().step_by(7) {
        if !have_ovmf && c.args.iter().any(|a| a == "OVMF.fd") {
            continue;
        }
        let out = std::process::Command::new(&tool)
            .args(&c.args)
            .current_dir(&dir)
            .output()
            .unwrap();
        let ours = run_case(&c.args, &files);
        if out.status.success() {
            assert_eq!(
                ours.as_deref(),
                Ok(String::from_utf8_lossy(&out.stdout).trim()),
                "{}",
                c.args.join(" ")
            );
        } else {
            assert!(ours.is_err(), "{}", c.args.join(" "));
        }
        n += 1;
    }
    eprintln!("live: {n} cases agree with {}", tool.display());
}
