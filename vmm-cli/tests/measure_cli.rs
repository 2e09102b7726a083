//! `vmm-cli measure` as a drop-in replacement for sev-snp-measure: the real binary against
//! the committed sev-snp-measure vectors, live against the tool when installed, plus the
//! extra modes and the error behaviour.

#[path = "../../kvm-coco/tests/measure_cases/mod.rs"]
mod measure_cases;
#[path = "../../kvm-coco/tests/measure_common/mod.rs"]
mod measure_common;

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use measure_common::*;

fn inputs(name: &str) -> (PathBuf, bool) {
    let dir = scratch(name);
    let ovmf = write_inputs(&dir);
    (dir, ovmf)
}

fn vmm_cli(dir: &Path, args: &[&str]) -> Output {
    let mut c = Command::cargo_bin("vmm-cli").unwrap();
    c.current_dir(dir).arg("measure").args(args);
    c.output().unwrap()
}

fn assert_input_error(o: &Output, what: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{what}: {err}");
    assert!(o.stdout.is_empty(), "{what}");
    assert_eq!(
        err.lines().count(),
        1,
        "{what}: one line expected, got {err:?}"
    );
    assert!(err.starts_with("error: "), "{what}: {err}");
    assert!(!err.contains("panicked"), "{what}: {err}");
}

#[test]
fn committed_vectors_through_the_binary() {
    let v = load_vectors();
    let (dir, have_ovmf) = inputs("cli_vectors");
    let (mut ok, mut rejected) = (0, 0);
    for c in &v.cases {
        if !have_ovmf && c.args.iter().any(|a| a == "OVMF.fd") {
            continue;
        }
        let args: Vec<&str> = c.args.iter().map(String::as_str).collect();
        let o = vmm_cli(&dir, &args);
        if c.status == 0 {
            assert_eq!(
                String::from_utf8_lossy(&o.stdout),
                c.stdout,
                "vmm-cli measure {}",
                c.args.join(" ")
            );
            assert_eq!(o.status.code(), Some(0));
            ok += 1;
        } else {
            assert_input_error(&o, &c.args.join(" "));
            rejected += 1;
        }
    }
    eprintln!("{}: {ok} outputs identical, {rejected} rejections", v.tool);
    assert!(ok > 100 || !have_ovmf);
}

/// Debian's OVMF / TDVF images (tests/vectors/debian-firmware.json, fetched by
/// tests/vectors/fetch_debian_firmware.sh): the first case of every image and mode through
/// the binary, including sid's ovmf-inteltdx in every mode. Without the images a reported
/// skip, or a failure where the oracles are required (CI).
#[test]
fn debian_firmware_through_the_binary() {
    let v = measure_cases::load_debian_vectors();
    let Some(images) = measure_cases::debian_firmware(&v) else {
        return;
    };
    let dir = scratch("cli_debian");
    for (n, b) in &images {
        std::fs::write(dir.join(n), b).unwrap();
    }
    for (n, b) in side_files() {
        std::fs::write(dir.join(n), b).unwrap();
    }
    let mut seen = std::collections::BTreeSet::new();
    let (mut ok, mut rejected) = (0, 0);
    for c in &v.cases {
        let key = (
            measure_cases::image_of(&c.args),
            measure_cases::mode_of(&c.args),
            c.status,
        );
        if !seen.insert(key) {
            continue;
        }
        let args: Vec<&str> = c.args.iter().map(String::as_str).collect();
        let o = vmm_cli(&dir, &args);
        if c.status == 0 {
            assert_eq!(
                String::from_utf8_lossy(&o.stdout),
                c.stdout,
                "vmm-cli measure {} ({})",
                c.args.join(" "),
                String::from_utf8_lossy(&o.stderr)
            );
            ok += 1;
        } else {
            assert_input_error(&o, &c.args.join(" "));
            rejected += 1;
        }
    }
    eprintln!("Debian firmware: {ok} outputs identical to the references, {rejected} rejections");
    assert!(ok >= 45);
}

#[test]
fn live_against_tool() {
    let Some(tool) = ssm_tool() else { return };
    let (dir, have_ovmf) = inputs("cli_live");
    let v = load_vectors();
    let mut n = 0;
    for c in &v.cases {
        if !have_ovmf && c.args.iter().any(|a| a == "OVMF.fd") {
            continue;
        }
        let theirs = std::process::Command::new(&tool)
            .args(&c.args)
            .current_dir(&dir)
            .output()
            .unwrap();
        let args: Vec<&str> = c.args.iter().map(String::as_str).collect();
        let ours = vmm_cli(&dir, &args);
        assert_eq!(ours.stdout, theirs.stdout, "{}", c.args.join(" "));
        assert_eq!(
            ours.status.success(),
            theirs.status.success(),
            "{}",
            c.args.join(" ")
        );
        n += 1;
    }
    eprintln!("live: {n} invocations print the same as {}", tool.display());
}

#[test]
fn tdx_mode() {
    let (dir, have_ovmf) = inputs("cli_tdx");
    if have_ovmf {
        let o = vmm_cli(&dir, &["--mode", "tdx", "--ovmf", "OVMF.fd"]);
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            "4c7206f0f483c524f12c366c711e9049030a8d47c471ee5aa9c4999a08de4057fb887fed0744d5631a212967fb231c47\n"
        );
    }
    assert_input_error(
        &vmm_cli(&dir, &["--mode", "tdx", "--ovmf", "synnoasev.fd"]),
        "tdx without TDVF",
    );
    assert_input_error(
        &vmm_cli(
            &dir,
            &[
                "--mode",
                "tdx",
                "--ovmf",
                "syn64k.fd",
                "--kernel",
                "kernel.bin",
            ],
        ),
        "tdx kernel",
    );
}

// facts §8.4: SYN64K, TIK 00..0f, MNONCE 10..1f, api 0.24 build 15 policy 1.
#[test]
fn sev_launch_measure_hmac() {
    let (dir, _) = inputs("cli_hmac");
    std::fs::write(dir.join("tik.bin"), (0u8..16).collect::<Vec<_>>()).unwrap();
    std::fs::write(dir.join("tik.hex"), "000102030405060708090a0b0c0d0e0f\n").unwrap();
    for tik in ["tik.bin", "tik.hex"] {
        let args = [
            "--mode",
            "sev",
            "--ovmf",
            "syn64k.fd",
            "--tik",
            tik,
            "--mnonce",
            "101112131415161718191a1b1c1d1e1f",
            "--api-major",
            "0",
            "--api-minor",
            "24",
            "--build",
            "15",
            "--policy",
            "1",
        ];
        let o = vmm_cli(&dir, &args);
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            "eb20920036526031edb5cb6c0f09476d365612f3b0d56deaa9ed91484d07e380\n"
        );
        let mut j = args.to_vec();
        j.push("--json");
        let v: serde_json::Value = serde_json::from_slice(&vmm_cli(&dir, &j).stdout).unwrap();
        assert_eq!(
            v["measurement"],
            "dac893496e53bf1a5643d761be49395899612ebe0178de53d93e1d6c373736fb"
        );
        assert_eq!(
            v["launch_measure"],
            "eb20920036526031edb5cb6c0f09476d365612f3b0d56deaa9ed91484d07e380"
        );
    }
    let partial = [
        "--mode",
        "sev",
        "--ovmf",
        "syn64k.fd",
        "--tik",
        "tik.bin",
        "--policy",
        "1",
    ];
    assert_input_error(&vmm_cli(&dir, &partial), "partial HMAC options");
}

#[test]
fn log_and_expect() {
    let (dir, _) = inputs("cli_log");
    let args = [
        "--mode",
        "snp",
        "--vcpus",
        "2",
        "--vcpu-type",
        "EPYC-v4",
        "--ovmf",
        "syn64k.fd",
        "--log",
        "log.json",
    ];
    let o = vmm_cli(&dir, &args);
    assert!(o.status.success());
    let printed = String::from_utf8_lossy(&o.stdout).trim().to_string();
    // sev-snp-measure 0.0.13 with the same first eight arguments on SYN64K.
    assert_eq!(
        printed,
        "b5605e79edf8236251f14cb87a4b0f3ae0c583e6a3e1d2cc48cdbbef0d12dc29196cf98ca4ec6591bc755204948e9f16"
    );
    let log: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("log.json")).unwrap()).unwrap();
    assert_eq!(log["digest"], printed.as_str());
    assert_eq!(log["entries"].as_array().unwrap().len(), 16 + 6 + 2);
    assert_eq!(log["entries"][23]["running"], printed.as_str());

    let mut ok = args[..8].to_vec();
    ok.extend(["--expect", &printed]);
    assert_eq!(vmm_cli(&dir, &ok).status.code(), Some(0));
    let mut bad = args[..8].to_vec();
    bad.extend(["--expect", "00"]);
    let o = vmm_cli(&dir, &bad);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("mismatch"));
}

#[test]
fn dump_vmsa_writes_the_tool_s_pages() {
    use sha2::{Digest, Sha384};
    let (dir, _) = inputs("cli_dump");
    let o = vmm_cli(
        &dir,
        &[
            "--mode",
            "snp",
            "--vcpus",
            "2",
            "--vcpu-type",
            "EPYC-v4",
            "--ovmf",
            "syn64k.fd",
            "--dump-vmsa",
        ],
    );
    assert!(o.status.success());
    // facts §8.2 --dump-vmsa hashes.
    assert_eq!(
        hex::encode(Sha384::digest(
            std::fs::read(dir.join("vmsa0.bin")).unwrap()
        )),
        "77920c4c629ff47e90c0e174fc1ad0eb6fa664f88cd4739488058a8c6cb1a77b3856f55378e9518d0da99452d51c553a"
    );
    assert_eq!(
        hex::encode(Sha384::digest(
            std::fs::read(dir.join("vmsa1.bin")).unwrap()
        )),
        "4ccbf6f5c2f88acda04b6f3627bb1b277bde6496f66a71b17cef2fe82acf2fead866fb7aa5b4d2545dca584e94f6a8c6"
    );
}

#[test]
fn bad_inputs_are_one_line_errors() {
    let (dir, _) = inputs("cli_bad");
    let syn = std::fs::read(dir.join("syn64k.fd")).unwrap();
    std::fs::write(dir.join("trunc.fd"), &syn[..syn.len() - 100]).unwrap();
    let mut lying = syn.clone();
    lying[0x10000 - 50] = 0xFF;
    std::fs::write(dir.join("lying.fd"), &lying).unwrap();
    std::fs::write(dir.join("garbage.fd"), b"this is not firmware").unwrap();
    std::fs::write(dir.join("empty.fd"), b"").unwrap();
    // One invocation per line, arguments separated by spaces (none contains one).
    let cases = [
        "--mode snp --vcpus 1 --vcpu-type EPYC --ovmf missing.fd",
        "--mode snp --vcpus 1 --vcpu-type EPYC --ovmf trunc.fd",
        "--mode seves --vcpus 1 --vcpu-type EPYC --ovmf garbage.fd",
        "--mode sev --ovmf lying.fd",
        "--mode sev --ovmf empty.fd",
        "--mode snp --vcpus 1 --ovmf syn64k.fd",
        "--mode snp --vcpu-type EPYC --ovmf syn64k.fd",
        "--mode snp --vcpus 1 --vcpu-type EPYC --vcpu-sig 1 --ovmf syn64k.fd",
        "--mode snp --vcpus 1 --vcpu-family 25 --ovmf syn64k.fd",
        "--mode snp --vcpus 1 --vcpu-type Skylake --ovmf syn64k.fd",
        "--mode snp --vcpus 1 --vcpu-type EPYC --vmm-type xen --ovmf syn64k.fd",
        "--mode snp --vcpus x --vcpu-type EPYC --ovmf syn64k.fd",
        "--mode seves --vcpus 1 --vcpu-type EPYC --snp-ovmf-hash 00 --ovmf syn64k.fd",
        "--mode snp --vcpus 1 --vcpu-type EPYC --snp-ovmf-hash zz --ovmf syn64k.fd",
        "--mode sev --initrd initrd.bin --ovmf syn64k.fd",
        "--mode sev --append x --ovmf syn64k.fd",
        "--mode sev --kernel missing.bin --ovmf syn64k.fd",
        "--mode sev --dump-vmsa --ovmf syn64k.fd",
        "--mode wat --ovmf syn64k.fd",
        "--ovmf syn64k.fd",
        "--mode sev",
    ];
    for case in cases {
        let args: Vec<&str> = case.split(' ').collect();
        assert_input_error(&vmm_cli(&dir, &args), case);
    }
}
