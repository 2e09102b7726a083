//! The library against the committed sev-snp-measure vectors
//! (tests/vectors/sev-snp-measure.json, produced by tests/vectors/gen_ssm_vectors.py), and
//! live against sev-snp-measure itself when it is installed.

mod measure_cases;
mod measure_common;

use std::collections::BTreeMap;
use std::path::Path;

use measure_cases::run_case;
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
