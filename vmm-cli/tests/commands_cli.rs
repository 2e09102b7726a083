//! `vmm-cli check`, `caps`, `report` and `launch`, driven through the real binary.
//!
//! Oracles: sev-snp-measure's published values for the SYN64K image (committed in
//! kvm-coco/tests/vectors and firmware facts §8.1/§8.2), which the built-in firmware
//! reproduces; SYN64K's MRTD from the separate reference calculator (kvm-coco/tests/mrtd_ref.py);
//! /proc/self/limits for the memlock limit; the kernel's VM-type numbers.

#[path = "../../kvm-coco/tests/measure_common/mod.rs"]
mod measure_common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use psp_driver::sim::{PhysMem, SimConfig, SimFirmware};
use zerocopy::IntoBytes;

fn bin() -> Command {
    Command::cargo_bin("vmm-cli").unwrap()
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vmm-cli-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Runs the binary with `args`.
fn run(args: &[&str]) -> Output {
    bin().args(args).output().unwrap()
}

/// Runs the binary with `args` then `paths`.
fn run_args<P: AsRef<OsStr>>(
    args: impl IntoIterator<Item = &'static str>,
    paths: impl IntoIterator<Item = P>,
) -> Output {
    bin().args(args).args(paths).output().unwrap()
}

/// Runs `vmm-cli report <file> <args…>`.
fn run_report(file: &Path, args: &[&str]) -> Output {
    bin().arg("report").arg(file).args(args).output().unwrap()
}

/// Runs `vmm-cli report <file> <args…> --chain <chain…>`.
fn run_report_chain<P: AsRef<OsStr>>(file: &Path, args: &[&str], chain: &[P]) -> Output {
    bin()
        .arg("report")
        .arg(file)
        .args(args)
        .arg("--chain")
        .args(chain)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs and asserts a usage/input error: exit 2, exactly one line on stderr, no panic.
fn usage_error(args: &[&str]) -> String {
    let o = run(args);
    let err = stderr(&o);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{args:?}: stderr {err} stdout {}",
        stdout(&o)
    );
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    let lines: Vec<_> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{args:?}: {err}");
    assert!(lines[0].starts_with("error"), "{args:?}: {err}");
    err
}

/// Whether /dev/kvm opens read-write for this process.
fn kvm_usable() -> Result<(), String> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map(drop)
        .map_err(|e| e.to_string())
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(o)))
}

/// The VM types this host offers, from `caps --json` (None without KVM).
fn host_vm_types() -> Option<Vec<String>> {
    kvm_usable().ok()?;
    let o = run(&["caps", "--json"]);
    let v = json(&o);
    Some(
        v["vm_types"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_owned())
            .collect(),
    )
}

// ---- caps -----------------------------------------------------------------------------

#[test]
fn caps_json_lists_vm_types_by_name() {
    let o = run(&["caps", "--json"]);
    assert!(!stderr(&o).contains("panicked"));
    let v = json(&o);
    let types = v["vm_types"].as_array().expect("vm_types array");
    let known = ["default", "sw-protected", "sev", "sev-es", "snp", "tdx"];
    for t in types {
        assert!(known.contains(&t.as_str().unwrap()), "{t}");
    }
    match kvm_usable() {
        Ok(()) => {
            assert_eq!(o.status.code(), Some(0));
            assert!(types.iter().any(|t| t == "default"), "{v}");
            assert_eq!(v["api_version"], 12);
            assert!(v["sev"]["vmsa_features"]["available"].is_boolean());
        }
        Err(e) => {
            kvm_coco_test_skip::skip("/dev/kvm", format_args!("{e}; checked the refusal only"));
            assert_eq!(o.status.code(), Some(1));
            assert_eq!(v["kvm"]["available"], false);
        }
    }
}

#[test]
fn caps_text_names_every_part() {
    let o = run(&["caps"]);
    let out = stdout(&o);
    if let Err(e) = kvm_usable() {
        kvm_coco_test_skip::skip("/dev/kvm", format_args!("{e}; checked the refusal only"));
        assert!(out.contains("not usable"), "{out}");
        return;
    }
    assert_eq!(o.status.code(), Some(0));
    for label in [
        "KVM API version",
        "VM types",
        "guest_memfd",
        "SEV VMSA features",
        "TDX",
        "SEV platform",
    ] {
        assert!(out.contains(label), "{label}: {out}");
    }
}

// ---- check ----------------------------------------------------------------------------

#[test]
fn check_snp_explains_why_the_launch_is_impossible_here() {
    let o = run(&["check", "--tee", "snp"]);
    let out = stdout(&o);
    assert!(!stderr(&o).contains("panicked"));
    match host_vm_types() {
        None => {
            kvm_coco_test_skip::skip("/dev/kvm", "not usable; checked the explanation only");
            assert_eq!(o.status.code(), Some(1));
            assert!(out.contains("[FAIL] kvm/device"), "{out}");
        }
        Some(t) if t.iter().any(|x| x == "snp") => kvm_coco_test_skip::skip(
            "a host without the VM type",
            "this host offers SNP; the explanation of its absence cannot be checked here",
        ),
        Some(t) => {
            assert_eq!(o.status.code(), Some(1), "{out}");
            let offered = t.join(", ");
            assert!(
                out.contains(&format!(
                    "KVM offers VM types [{offered}]; snp (4) is not among them"
                )),
                "{out}"
            );
            assert!(out.contains("sev_snp=1"), "{out}");
            assert!(out.contains("fix:"), "{out}");
            assert!(out.contains("impossible"), "{out}");
        }
    }
}

#[test]
fn check_json_has_categories_statuses_and_fixes() {
    let o = run(&["check", "--tee", "tdx", "--json"]);
    let v = json(&o);
    let checks = v["checks"].as_array().unwrap();
    assert!(!checks.is_empty());
    for c in checks {
        assert!(c["category"].is_string() && c["message"].is_string(), "{c}");
        let s = c["status"].as_str().unwrap();
        assert!(["pass", "fail", "skip", "warn"].contains(&s), "{c}");
        if s == "fail" {
            assert!(c["fix"].is_string(), "a failure without a fix hint: {c}");
        }
    }
    let failed = checks.iter().filter(|c| c["status"] == "fail").count();
    assert_eq!(v["failed"], failed);
    assert_eq!(v["ready"], failed == 0);
    assert_eq!(o.status.code(), Some(if failed == 0 { 0 } else { 1 }));
    if let Some(t) = host_vm_types()
        && !t.iter().any(|x| x == "tdx")
    {
        let vt = checks.iter().find(|c| c["name"] == "vm-type").unwrap();
        assert_eq!(vt["status"], "fail");
        let msg = vt["message"].as_str().unwrap();
        assert!(msg.contains("tdx (5) is not among them"), "{msg}");
        assert!(msg.contains("kvm_intel"), "{msg}");
    }
}

/// RLIMIT_MEMLOCK (soft) in bytes from /proc/self/limits; None for unlimited.
fn memlock() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max locked memory"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[test]
fn check_sev_compares_memlock_with_the_guest_memory() {
    let o = run(&["check", "--tee", "sev", "--memory", "64G", "--json"]);
    let v = json(&o);
    let m = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "memlock")
        .unwrap()
        .clone();
    match memlock() {
        Some(limit) if limit < 64 << 30 => {
            assert_eq!(m["status"], "fail", "{m}");
            assert!(
                m["message"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("{} KiB", limit / 1024))
            );
            assert_eq!(o.status.code(), Some(1));
        }
        _ => assert_eq!(m["status"], "pass", "{m}"),
    }
    // SNP memory is guest_memfd: not charged to the limit.
    let o = run(&["check", "--tee", "snp", "--json"]);
    let v = json(&o);
    let m = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "memlock")
        .unwrap()
        .clone();
    assert_eq!(m["status"], "skip");
}

#[test]
fn check_rejects_invalid_policies_and_options() {
    // Bit 17 clear, MIGRATE_MA, reserved bits: facts linux-uapi §3.7.
    let e = usage_error(&["check", "--tee", "snp", "--policy", "0x10000"]);
    assert!(e.contains("invalid policy 0x10000"), "{e}");
    usage_error(&["check", "--tee", "snp", "--policy", "0x70000"]);
    usage_error(&["check", "--tee", "snp", "--policy", "0x8000030000"]);
    usage_error(&["check", "--tee", "sev", "--policy", "0x4"]);
    usage_error(&["check", "--tee", "sev-es", "--policy", "0x1"]);
    usage_error(&["check", "--tee", "sev", "--policy", "0x100000000"]);
    usage_error(&["check", "--tee", "snp", "--policy", "banana"]);
    usage_error(&["check", "--tee", "tdx", "--policy", "1"]);
    usage_error(&["check", "--tee", "snp", "--xfam", "3"]);
    usage_error(&["check", "--tee", "snp", "--vmsa-features", "1"]);
    usage_error(&["check", "--tee", "sev", "--memory", "lots"]);
    usage_error(&["check", "--tee", "arm-cca"]);
    usage_error(&["check"]);
}

// ---- launch ---------------------------------------------------------------------------

/// The sev-snp-measure output for `args` (space-separated) on SYN64K (committed vectors).
fn ssm(args: &str) -> String {
    measure_common::ssm_output(&args.split(' ').collect::<Vec<_>>())
}

/// The lines of `text` that start with `prefix`.
fn lines_with<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.starts_with(prefix)).collect()
}

/// The value after `label` on its line of the text output.
fn field<'a>(out: &'a str, label: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(label))
        .unwrap_or_else(|| panic!("no '{label}' line in {out}"))
        .trim()
}

/// Whether this host's KVM offers the VM type `name`.
fn host_offers(name: &str) -> bool {
    host_vm_types().is_some_and(|t| t.iter().any(|x| x == name))
}

#[test]
fn launch_without_arguments_runs_the_builtin_snp_guest_and_verifies_its_report() {
    // The README's set-up command.
    let o = run(&["launch"]);
    let (out, err) = (stdout(&o), stderr(&o));
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    if host_offers("snp") {
        kvm_coco_test_skip::skip(
            "a host without the VM type",
            "this host offers SNP; the launch ran on its KVM, not on the software host",
        );
        assert_eq!(field(&out, "host:"), "kvm", "{out}");
        assert!(
            out.contains("measurement:  not observable from the host"),
            "{out}"
        );
        return;
    }
    // Exactly one note, naming the software host; nothing else on stderr.
    let notes = lines_with(&err, "note:");
    assert_eq!(notes.len(), 1, "{err}");
    assert!(notes[0].contains("using the software host"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(
        field(&out, "host:"),
        "software host in this process (seed 0)"
    );
    // The report's MEASUREMENT, compared with the launch log's expected value.
    let expected = field(&out, "expected:").split(' ').next().unwrap();
    let platform = field(&out, "platform:");
    assert_eq!(
        platform,
        format!("{expected} (SNP attestation report MEASUREMENT)"),
        "{out}"
    );
    assert!(out.contains("measurement:  matches"), "{out}");
    assert!(out.contains("verified:     signature verified"), "{out}");
    // REPORT_DATA is the text the command binds into the request.
    assert!(
        out.contains(&format!(
            "evidence:     report_data: {}",
            hex::encode(b"vmm-cli launch")
        )),
        "{out}"
    );
}

#[test]
fn launch_sim_prints_one_note_and_the_same_result_in_json() {
    let o = run(&["launch", "--backend", "sim", "--seed", "3", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(lines_with(&err, "note:").len(), 1, "{err}");
    assert!(
        err.starts_with("note: using the software host in this process"),
        "{err}"
    );
    let v = json(&o);
    assert_eq!(v["host"], "software");
    assert_eq!(v["seed"], 3);
    assert_eq!(v["tee"], "snp");
    assert_eq!(
        v["platform_measurement"]["source"],
        "SNP attestation report MEASUREMENT"
    );
    assert_eq!(
        v["platform_measurement"]["value"],
        v["expected_measurement"]
    );
    assert_eq!(v["evidence"]["measurement"], v["expected_measurement"]);
    assert_eq!(v["measurement_check"], "matches");
    assert_eq!(v["verification"]["status"], "verified");
    // Nothing is called "measurement" without saying whose it is.
    assert!(v.get("measurement").is_none(), "{v}");
}

/// `launch --backend sim --json <args>`, which must succeed.
fn launch_json(args: &[&str]) -> serde_json::Value {
    let o = bin()
        .args(["launch", "--backend", "sim", "--json"])
        .args(args)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
    json(&o)
}

#[test]
fn launch_where_the_software_host_is_refused_exits_with_the_reason() {
    // Under `sim-host` the program already has a seccomp listener; the kernel refuses a
    // second one (EBUSY), so the launch's own software host cannot be served.
    let exe = assert_cmd::cargo::cargo_bin("vmm-cli");
    let o = bin()
        .args(["sim-host", "--"])
        .arg(&exe)
        .args(["launch", "--backend", "sim"])
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}{}", stdout(&o));
    assert_eq!(stdout(&o), "");
    let lines: Vec<_> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].starts_with("error: the software host cannot run: "),
        "{err}"
    );
    assert!(lines[0].contains("seccomp user notification"), "{err}");
}

#[test]
fn launch_on_a_kvm_that_offers_snp_claims_no_platform_measurement() {
    // Under `sim-host` the KVM this program sees offers SNP, as on SNP hardware: the launch
    // runs on it directly and boots no guest agent, so the host observes no report.
    let exe = assert_cmd::cargo::cargo_bin("vmm-cli");
    let o = bin()
        .args(["sim-host", "--"])
        .arg(&exe)
        .args([
            "launch",
            "--backend",
            "kvm",
            "--vcpus",
            "8",
            "--vcpu-sig",
            "10555152",
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stderr(&o),
        "",
        "no note: the software host of this launch is not used"
    );
    let v = json(&o);
    assert_eq!(v["host"], "kvm");
    assert_eq!(v["seed"], serde_json::Value::Null);
    assert_eq!(
        v["expected_measurement"],
        ssm("--mode snp --vcpus 8 --vcpu-sig 10555152 --ovmf syn64k.fd").as_str()
    );
    assert_eq!(v["platform_measurement"], serde_json::Value::Null);
    assert_eq!(v["measurement_check"], "not observable from the host");
    assert_eq!(v["verification"], serde_json::Value::Null);
    let o = bin()
        .args(["sim-host", "--"])
        .arg(&exe)
        .arg("launch")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(!out.contains("matches"), "{out}");
    assert!(
        out.contains("measurement:  not observable from the host"),
        "{out}"
    );
}

#[test]
fn launch_measurements_equal_sev_snp_measure() {
    // SNP: both the expected value and the one the guest's report carries are
    // sev-snp-measure's.
    let v = launch_json(&["--vcpus", "8", "--vcpu-sig", "10555152"]);
    let want = ssm("--mode snp --vcpus 8 --vcpu-sig 10555152 --ovmf syn64k.fd");
    assert_eq!(v["expected_measurement"], want.as_str());
    assert_eq!(v["platform_measurement"]["value"], want.as_str());
    assert_eq!(v["measurement_check"], "matches");
    let v = launch_json(&[
        "--vcpus",
        "2",
        "--vcpu-sig",
        "0xa10f10",
        "--host-data",
        "07",
    ]);
    let want = ssm("--mode snp --vcpus 2 --vcpu-type EPYC-Genoa --ovmf syn64k.fd");
    assert_eq!(v["platform_measurement"]["value"], want.as_str());
    assert!(
        v["evidence"]["host_data"]
            .as_str()
            .unwrap()
            .starts_with("0700")
    );
    // SEV-ES and SEV: the expected value is sev-snp-measure's; the platform's value is
    // LAUNCH_MEASURE, an HMAC the host cannot check, so nothing "matches".
    for (args, want) in [
        (
            &["--tee", "sev-es", "--vcpus", "3", "--vcpu-sig", "0xa10f11"][..],
            ssm("--mode seves --vcpus 3 --vcpu-sig 0xa10f11 --ovmf syn64k.fd"),
        ),
        // SEV: the launch digest of SYN64K is its SHA-256 (facts §8.1).
        (&["--tee", "sev"][..], ssm("--mode sev --ovmf syn64k.fd")),
    ] {
        let v = launch_json(args);
        assert_eq!(v["expected_measurement"], want.as_str(), "{args:?}");
        assert_eq!(v["platform_measurement"]["source"], "LAUNCH_MEASURE");
        let measure = v["platform_measurement"]["value"].as_str().unwrap();
        let mnonce = v["platform_measurement"]["mnonce"].as_str().unwrap();
        assert_eq!((measure.len(), mnonce.len()), (64, 32), "{v}");
        assert_ne!(measure, want, "LAUNCH_MEASURE is an HMAC, not the digest");
        assert_eq!(v["measurement_check"], "verifiable by the guest owner");
    }
    assert_eq!(
        ssm("--mode sev --ovmf syn64k.fd"),
        "dac893496e53bf1a5643d761be49395899612ebe0178de53d93e1d6c373736fb"
    );
}

#[test]
fn snp_report_round_trip_through_the_report_command() {
    let report = tmp("snp.report");
    let log = tmp("snp.log.json");
    let o = bin()
        .args([
            "launch",
            "--backend",
            "sim",
            "--seed",
            "7",
            "--host-data",
            "abcd",
            "--json",
        ])
        .arg("--report-out")
        .arg(&report)
        .arg("--log")
        .arg(&log)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["verification"]["status"], "verified");
    assert_eq!(v["measurement_check"], "matches");
    let measurement = v["expected_measurement"].as_str().unwrap().to_owned();
    assert_eq!(v["platform_measurement"]["value"], measurement.as_str());
    assert_eq!(std::fs::metadata(&report).unwrap().len(), 0x4A0);
    let l: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&log).unwrap()).unwrap();
    assert_eq!(l["digest"], measurement.as_str());

    // Same seed: verifies; the JSON carries the fields.
    let o = run_report(&report, &["--sim-chain", "--seed", "7", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let r = json(&o);
    assert_eq!(r["measurement"], measurement.as_str());
    assert!(r["host_data"].as_str().unwrap().starts_with("abcd00"));
    assert_eq!(r["verification"]["status"], "verified");
    // Text output.
    let o = run_report(&report, &["--sim-chain", "--seed", "7"]);
    assert!(
        stdout(&o).contains("signature verified against the simulated"),
        "{}",
        stdout(&o)
    );
    // Another platform (seed): signature mismatch, exit 1.
    let o = run_report(&report, &["--sim-chain", "--seed", "8"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("verification failed"), "{}", stdout(&o));
    // No chain: displayed, not verified.
    let o = run_report(&report, &[]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("not verified"));

    // Tampered report_data: exit 1.
    let mut bytes = std::fs::read(&report).unwrap();
    bytes[0x50] ^= 1;
    let bad = tmp("snp.tampered");
    std::fs::write(&bad, &bytes).unwrap();
    let o = run_report(&bad, &["--sim-chain", "--seed", "7"]);
    assert_eq!(o.status.code(), Some(1));
}

/// The firmware seed of the software host started with `seed` (`SoftwareHost`'s documented
/// derivation: psp-driver's default firmware seed with `seed` little-endian in bytes 0..8).
fn host_firmware_seed(seed: u64) -> [u8; 32] {
    let mut s = SimConfig::default().seed;
    s[..8].copy_from_slice(&seed.to_le_bytes());
    s
}

/// Writes the simulated chain (SEV certificate format) of the platform with `seed`.
fn write_chain(seed: [u8; 32]) -> [PathBuf; 3] {
    let cfg = SimConfig {
        seed,
        ..SimConfig::default()
    };
    let c = SimFirmware::new(cfg, std::sync::Arc::new(PhysMem::new()))
        .certs()
        .snp;
    let paths = [tmp("ark.cert"), tmp("ask.cert"), tmp("vcek.cert")];
    for (p, cert) in paths.iter().zip([c.ark, c.ask, c.vcek]) {
        std::fs::write(p, cert.as_bytes()).unwrap();
    }
    paths
}

#[test]
fn report_verifies_against_user_supplied_sev_format_chain() {
    let report = tmp("chain.report");
    let o = run_args(["launch", "--backend", "sim", "--report-out"], [&report]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // The software host's firmware with the default seed 0.
    let [ark, ask, vcek] = write_chain(host_firmware_seed(0));
    let o = run_report_chain(&report, &[], &[&ark, &ask, &vcek]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("verified against the given ARK/ASK/VCEK"));
    // Another platform's chain: exit 1.
    let [ark2, ask2, vcek2] = write_chain([9; 32]);
    let o = run_report_chain(&report, &[], &[&ark2, &ask2, &vcek2]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    // psp-driver's own default seed is another platform.
    let [ark3, ask3, vcek3] = write_chain(SimConfig::default().seed);
    let o = run_report_chain(&report, &[], &[&ark3, &ask3, &vcek3]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    // Wrong order: the ASK is not a root key.
    let [ark, ask, vcek] = write_chain(host_firmware_seed(0));
    let o = run_report_chain(&report, &[], &[&ask, &ark, &vcek]);
    assert_eq!(o.status.code(), Some(1));
    // X.509 and wrong-size certificates: input errors.
    let pem = tmp("ark.pem");
    std::fs::write(
        &pem,
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let e = usage_error(&[
        "report",
        report.to_str().unwrap(),
        "--chain",
        pem.to_str().unwrap(),
        ask.to_str().unwrap(),
        vcek.to_str().unwrap(),
    ]);
    assert!(e.contains("X.509"), "{e}");
    let short = tmp("short.cert");
    std::fs::write(&short, [1u8; 100]).unwrap();
    usage_error(&[
        "report",
        report.to_str().unwrap(),
        "--chain",
        short.to_str().unwrap(),
        ask.to_str().unwrap(),
        vcek.to_str().unwrap(),
    ]);
    usage_error(&[
        "report",
        report.to_str().unwrap(),
        "--chain",
        ark.to_str().unwrap(),
    ]);
}

#[test]
fn tdx_launch_writes_a_tdreport_that_the_report_command_verifies() {
    let report = tmp("td.report");
    let o = bin()
        .args([
            "launch",
            "--backend",
            "sim",
            "--tee",
            "tdx",
            "--mrconfigid",
            "0102",
            "--json",
        ])
        .arg("--report-out")
        .arg(&report)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = json(&o);
    // The built-in firmware is SYN64K: its MRTD by the separate reference calculator, both
    // expected and as the TD's own TDREPORT carries it.
    let mrtd = v["expected_measurement"].as_str().unwrap().to_owned();
    assert_eq!(mrtd, measure_common::SYN64K_MRTD);
    assert_eq!(v["platform_measurement"]["source"], "TDREPORT MRTD");
    assert_eq!(
        v["platform_measurement"]["value"],
        measure_common::SYN64K_MRTD
    );
    assert_eq!(v["measurement_check"], "matches");
    assert_eq!(v["verification"]["status"], "verified");
    assert!(
        v["evidence"]["mrconfigid"]
            .as_str()
            .unwrap()
            .starts_with("010200")
    );
    assert_eq!(std::fs::metadata(&report).unwrap().len(), 1024);
    let o = run_report(&report, &["--sim-chain", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let r = json(&o);
    assert_eq!(r["type"], "TDX TDREPORT");
    assert_eq!(r["mrtd"], mrtd.as_str());
    assert!(r["mrconfigid"].as_str().unwrap().starts_with("010200"));
    // Another module seed: the MAC does not verify.
    let o = run_report(&report, &["--sim-chain", "--seed", "3"]);
    assert_eq!(o.status.code(), Some(1));
    // --chain is for SNP reports.
    usage_error(&["report", report.to_str().unwrap(), "--chain", "a", "b", "c"]);
}

#[test]
fn sev_launches_print_the_launch_measure_without_claiming_a_match() {
    for tee in ["sev", "sev-es"] {
        let o = run(&["launch", "--backend", "sim", "--tee", tee]);
        let out = stdout(&o);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let platform = field(&out, "platform:");
        assert!(platform.contains("(LAUNCH_MEASURE, mnonce "), "{out}");
        assert!(
            out.contains("measurement:  verifiable by the guest owner"),
            "{out}"
        );
        assert!(!out.contains("matches"), "{out}");
    }
    // SEV: the expected digest is SYN64K's SHA-256, sev-snp-measure's value.
    let o = run(&["launch", "--backend", "sim", "--tee", "sev"]);
    assert!(
        field(&stdout(&o), "expected:").starts_with(&ssm("--mode sev --ovmf syn64k.fd")),
        "{}",
        stdout(&o)
    );
}

#[test]
fn launch_backend_kvm_without_the_vm_type_fails_with_the_reason() {
    for (tee, abi) in [("snp", 4), ("tdx", 5), ("sev", 2)] {
        if host_offers(tee) {
            kvm_coco_test_skip::skip(
                "a host without the VM type",
                format_args!("this host offers {tee}; its refusal cannot be checked here"),
            );
            continue;
        }
        let o = run(&["launch", "--backend", "kvm", "--tee", tee, "--json"]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(!err.contains("panicked"), "{err}");
        // Nothing was launched: no output, one line saying why, no note of a fallback.
        assert_eq!(stdout(&o), "");
        let lines: Vec<_> = err.lines().collect();
        assert_eq!(lines.len(), 1, "{err}");
        assert!(lines[0].starts_with("error: --backend kvm: "), "{err}");
        if kvm_usable().is_ok() {
            assert!(
                lines[0].contains(&format!("{tee} ({abi}) is not among them")),
                "{err}"
            );
        }
    }
}

#[test]
fn launch_tee_none_runs_the_plain_guest_on_a_default_vm() {
    if let Err(e) = kvm_usable() {
        kvm_coco_test_skip::skip("/dev/kvm", format_args!("{e}; checked the refusal only"));
        let o = run(&["launch", "--tee", "none"]);
        assert_eq!(o.status.code(), Some(1));
        assert!(!stderr(&o).contains("panicked"));
        return;
    }
    let o = run(&["launch", "--tee", "none", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["host"], "kvm");
    assert_eq!(v["vm_type"], "default");
    // The built-in program writes 'K' to COM1 and halts after its 7 bytes at 0x1000.
    assert_eq!(v["serial"], "K");
    assert_eq!(v["halted_at"], "0x1007");
    assert_eq!(stderr(&o), "");
    let o = run(&["launch", "--tee", "none", "--backend", "kvm"]);
    assert!(stdout(&o).contains("serial:   \"K\""), "{}", stdout(&o));
}

#[test]
fn launch_rejects_bad_input_before_launching() {
    let e = usage_error(&["launch", "--policy", "0x10000"]);
    assert!(e.contains("invalid policy"), "{e}");
    usage_error(&["launch", "--tee", "tdx", "--policy", "1"]);
    usage_error(&["launch", "--tee", "sev", "--policy", "0x4"]);
    usage_error(&["launch", "--initrd", "/nonexistent"]);
    usage_error(&["launch", "--append", "console=ttyS0"]);
    usage_error(&["launch", "--id-block", "/nonexistent"]);
    usage_error(&["launch", "--host-data", "zz"]);
    usage_error(&["launch", "--host-data", &"00".repeat(33)]);
    usage_error(&["launch", "--tee", "sev", "--host-data", "00"]);
    usage_error(&["launch", "--tee", "snp", "--mrconfigid", "00"]);
    usage_error(&["launch", "--tee", "sev", "--report-out", "/tmp/x"]);
    usage_error(&["launch", "--tee", "tdx", "--kernel", "/nonexistent"]);
    usage_error(&["launch", "--vcpus", "0"]);
    usage_error(&["launch", "--memory", "1T"]);
    usage_error(&["launch", "--backend", "qemu"]);
    // Evidence and seeds belong to the software host.
    let e = usage_error(&["launch", "--backend", "kvm", "--report-out", "/tmp/x"]);
    assert!(e.contains("needs the software host"), "{e}");
    usage_error(&[
        "launch",
        "--backend",
        "kvm",
        "--tee",
        "tdx",
        "--quote-out",
        "/tmp/x",
    ]);
    usage_error(&["launch", "--backend", "kvm", "--seed", "1"]);
    // A plain guest takes no confidential-computing options.
    for extra in [
        &["--backend", "sim"][..],
        &["--policy", "0x30000"],
        &["--seed", "1"],
        &["--report-out", "/tmp/x"],
        &["--vcpus", "2"],
        &["--firmware", "/nonexistent"],
    ] {
        let e = usage_error(&[&["launch", "--tee", "none"][..], extra].concat());
        assert!(e.contains("does not apply to --tee none"), "{extra:?}: {e}");
    }
    usage_error(&["launch", "--firmware", "/nonexistent/OVMF.fd"]);
    usage_error(&["launch", "--kernel", "/nonexistent/vmlinuz"]);
    // Garbage and truncated firmware.
    let garbage = tmp("garbage.fd");
    std::fs::write(&garbage, vec![0x5au8; 0x10000]).unwrap();
    usage_error(&["launch", "--firmware", garbage.to_str().unwrap()]);
    let short = tmp("short.fd");
    std::fs::write(&short, [0u8; 100]).unwrap();
    usage_error(&["launch", "--firmware", short.to_str().unwrap()]);
    let empty = tmp("empty.fd");
    std::fs::write(&empty, []).unwrap();
    usage_error(&["launch", "--firmware", empty.to_str().unwrap()]);
    // ID block / auth of the wrong size.
    let blk = tmp("id.block");
    std::fs::write(&blk, [0u8; 95]).unwrap();
    let auth = tmp("id.auth");
    std::fs::write(&auth, [0u8; 4096]).unwrap();
    let e = usage_error(&[
        "launch",
        "--id-block",
        blk.to_str().unwrap(),
        "--id-auth",
        auth.to_str().unwrap(),
    ]);
    assert!(e.contains("96"), "{e}");
}

#[test]
fn report_rejects_missing_truncated_and_garbage_files() {
    usage_error(&["report", "/nonexistent/report.bin"]);
    usage_error(&["report"]);
    let report = tmp("trunc.src");
    let o = run_args(["launch", "--backend", "sim", "--report-out"], [&report]);
    assert_eq!(o.status.code(), Some(0));
    let bytes = std::fs::read(&report).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", bytes[..1000].to_vec()),
        ("longer", [bytes.clone(), vec![0]].concat()),
        ("empty", Vec::new()),
        ("garbage", vec![0xff; 0x4A0]),
        ("zeros", vec![0; 0x4A0]),
        (
            "quote-header-only",
            [
                4u16.to_le_bytes().to_vec(),
                vec![2, 0],
                0x81u32.to_le_bytes().to_vec(),
                vec![0; 100],
            ]
            .concat(),
        ),
    ];
    for (name, b) in cases {
        let p = tmp(&format!("bad-{name}.bin"));
        std::fs::write(&p, b).unwrap();
        usage_error(&["report", p.to_str().unwrap()]);
        usage_error(&["report", p.to_str().unwrap(), "--sim-chain"]);
    }
    usage_error(&["report", report.to_str().unwrap(), "--seed", "1"]);
}

#[test]
fn tdx_quote_round_trip() {
    let quote = tmp("td.quote");
    let o = bin()
        .args([
            "launch",
            "--backend",
            "sim",
            "--tee",
            "tdx",
            "--seed",
            "5",
            "--json",
        ])
        .arg("--quote-out")
        .arg(&quote)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = json(&o);
    let mrtd = v["platform_measurement"]["value"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(mrtd, measure_common::SYN64K_MRTD);
    assert_eq!(v["quote_out"], quote.to_str().unwrap());
    let o = run_report(&quote, &["--sim-chain", "--seed", "5", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let r = json(&o);
    assert_eq!(r["type"], "TDX TD quote v4");
    assert_eq!(r["mrtd"], mrtd.as_str());
    let o = run_report(&quote, &["--sim-chain", "--seed", "6"]);
    assert_eq!(o.status.code(), Some(1));
    // Truncated quote: input error.
    let bytes = std::fs::read(&quote).unwrap();
    let t = tmp("td.quote.trunc");
    std::fs::write(&t, &bytes[..bytes.len() - 1]).unwrap();
    usage_error(&["report", t.to_str().unwrap()]);
    usage_error(&["launch", "--tee", "snp", "--quote-out", "/tmp/q"]);
}

/// Runs the binary as uid/gid 65534 through setpriv (facts kvm-on-this-machine-kind §5), if
/// this process is root and setpriv exists.
fn unprivileged(args: &[&str]) -> Option<Output> {
    let id = std::process::Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&id.stdout).trim() != "0" {
        return None;
    }
    let exe = assert_cmd::cargo::cargo_bin("vmm-cli");
    std::process::Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .arg(exe)
        .args(args)
        .output()
        .ok()
        .filter(|o| !String::from_utf8_lossy(&o.stderr).contains("setpriv:"))
}

#[test]
fn without_kvm_access_check_and_caps_explain_and_launch_says_why() {
    let Some(o) = unprivileged(&["check", "--tee", "snp"]) else {
        kvm_coco_test_skip::skip(
            "root and setpriv",
            "needs to run as root with setpriv to drop privileges",
        );
        return;
    };
    let out = stdout(&o);
    if !out.contains("[FAIL] kvm/device") {
        kvm_coco_test_skip::skip(
            "/dev/kvm closed to others",
            "/dev/kvm is accessible to uid 65534 here",
        );
        return;
    }
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("permission denied opening /dev/kvm"), "{out}");
    let o = unprivileged(&["caps", "--json"]).unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(json(&o)["kvm"]["available"], false);
    // The software host is started, but it lets the kernel open the existing /dev/kvm,
    // which refuses: the launch fails with that reason.
    let o = unprivileged(&["launch"]).unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let notes = lines_with(&err, "note:");
    assert_eq!(notes.len(), 1, "{err}");
    assert!(
        notes[0].contains("permission denied opening /dev/kvm"),
        "{err}"
    );
    assert!(notes[0].contains("using the software host"), "{err}");
    let errors = lines_with(&err, "error:");
    assert_eq!(errors.len(), 1, "{err}");
    assert!(
        errors[0].starts_with("error: software host: permission denied opening /dev/kvm"),
        "{err}"
    );
}

#[test]
fn snp_id_block_is_checked_by_the_firmware() {
    use psp_driver::owner::snp::{IdBlock, key_digest, sign_id_block};
    // The expected launch digest: sev-snp-measure's value for SYN64K, 8 vCPUs, 0xA10F10.
    let ld: [u8; 48] = hex::decode(ssm(
        "--mode snp --vcpus 8 --vcpu-sig 10555152 --ovmf syn64k.fd",
    ))
    .unwrap()
    .try_into()
    .unwrap();
    let key = p384::ecdsa::SigningKey::from_slice(&[7u8; 48]).unwrap();
    let block = IdBlock::new(ld, 0x30000);
    let auth = sign_id_block(&block, &key, None).unwrap();
    let (b, a) = (tmp("good.idblock"), tmp("good.idauth"));
    std::fs::write(&b, block.as_bytes()).unwrap();
    std::fs::write(&a, auth.as_bytes()).unwrap();
    let report = tmp("id.report");
    let base = [
        "launch",
        "--backend",
        "sim",
        "--vcpus",
        "8",
        "--vcpu-sig",
        "10555152",
    ];
    let o = bin()
        .args(base)
        .arg("--id-block")
        .arg(&b)
        .arg("--id-auth")
        .arg(&a)
        .arg("--report-out")
        .arg(&report)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = run_report(&report, &["--sim-chain", "--json"]);
    assert_eq!(
        json(&o)["id_key_digest"],
        hex::encode(key_digest(&auth.id_key)).as_str()
    );
    // Another guest (one vCPU) against the same ID block: the firmware refuses the launch.
    let o = bin()
        .args(["launch", "--backend", "sim", "--id-block"])
        .arg(&b)
        .arg("--id-auth")
        .arg(&a)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("BAD_MEASUREMENT"), "{err}");
    assert!(!err.contains("panicked"));
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error")).count(),
        1,
        "{err}"
    );
}

#[test]
fn a_policy_the_firmware_refuses_is_a_negative_result() {
    // ABI 255.0 is valid as a policy but newer than the simulated firmware (1.55).
    let o = run(&["launch", "--backend", "sim", "--policy", "0x3ff00"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("POLICY_FAILURE"), "{err}");
    assert!(!err.contains("panicked"));
}

// ---- report against AMD's X.509 chain ---------------------------------------------------
//
// Oracle: a real Milan attestation report and the VCEK that signed it, with AMD's KDS
// cert_chain bundles (psp-driver/tests/vectors/amd, from the virtee/sev 8.0.0 test data),
// which OpenSSL 3.0 verifies independently (`openssl verify`, `openssl dgst -sha384 -verify`).

fn amd_vector(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../psp-driver/tests/vectors/amd")
        .join(name);
    assert!(p.exists(), "{}", p.display());
    p.to_str().unwrap().to_owned()
}

fn amd_root(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../psp-driver/src/owner/amd_roots")
        .join(name);
    p.to_str().unwrap().to_owned()
}

#[test]
fn real_amd_report_verifies_against_the_vcek_alone_and_full_chains() {
    let report = amd_vector("report_milan.bin");
    // The VCEK alone: the built-in Milan ARK/ASK complete the chain.
    let o = run(&["report", &report, "--chain", &amd_vector("vcek_milan.der")]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("AMD ARK-Milan -> SEV-Milan -> SEV-VCEK"),
        "{out}"
    );
    assert!(
        out.contains("REPORTED_TCB matches the certificate"),
        "{out}"
    );
    assert!(out.contains("CHIP_ID matches the certificate"), "{out}");
    // The KDS bundle plus the VCEK, and the three files in scrambled order: same result.
    for chain in [
        vec![
            amd_vector("cert_chain_milan.pem"),
            amd_vector("vcek_milan.der"),
        ],
        vec![
            amd_vector("vcek_milan.der"),
            amd_root("ark_milan.pem"),
            amd_root("ask_milan.pem"),
        ],
    ] {
        let o = bin()
            .args(["report", &report, "--json", "--chain"])
            .args(&chain)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{chain:?}: {}", stderr(&o));
        let v = json(&o);
        let ver = &v["verification"];
        assert_eq!(ver["status"], "verified");
        assert_eq!(ver["root"], "amd");
        assert_eq!(ver["product"], "Milan");
        assert_eq!(ver["signing_key"], "VCEK");
        assert_eq!(ver["tcb_checked"], true);
        assert_eq!(ver["chip_id_checked"], true);
        assert_eq!(v["reported_tcb"], "0x7308000000000003");
        // The VCEK's extensions, read with `openssl asn1parse`: blSPL 3, teeSPL 0, snpSPL 8,
        // ucodeSPL 0x73.
        assert_eq!(
            v["reported_tcb_parts"],
            "boot loader 3, TEE 0, SNP 8, microcode 115 (Milan layout)"
        );
        assert_eq!(v["platform_info_flags"], "SMT_EN");
        // Where KDS serves this VCEK (chip ID and TCB above; AMD publication 57230).
        assert_eq!(
            v["vcek_url"],
            "https://kdsintf.amd.com/vcek/v1/Milan/d49554ec717f4e5b0fe6b143bcf0405bd7ae304727edf46603f2a76aef6a3abc15d7af38db757039029f0efacfd08e244324884738c72b082e2f87a44d541eb6?blSPL=03&teeSPL=00&snpSPL=08&ucodeSPL=115"
        );
    }
}

#[test]
fn real_amd_report_verifies_against_an_extended_report_certificate_table() {
    // GUID ‖ offset ‖ length entries (GHCB specification), an all-zero terminator, then DER.
    let vcek = std::fs::read(amd_vector("vcek_milan.der")).unwrap();
    let mut table = hex::decode("63da758de6644564adc5f4b93be8accd").unwrap();
    table.extend_from_slice(&48u32.to_le_bytes());
    table.extend_from_slice(&u32::try_from(vcek.len()).unwrap().to_le_bytes());
    table.extend_from_slice(&[0; 24]);
    table.extend_from_slice(&vcek);
    let path = tmp("certs.table");
    std::fs::write(&path, &table).unwrap();
    let o = bin()
        .args(["report", &amd_vector("report_milan.bin"), "--chain"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("AMD ARK-Milan -> SEV-Milan -> SEV-VCEK"));
    // The same table cut short: an input error.
    std::fs::write(&path, &table[..40]).unwrap();
    let e = usage_error(&[
        "report",
        &amd_vector("report_milan.bin"),
        "--chain",
        path.to_str().unwrap(),
    ]);
    assert!(e.contains("certificate table"), "{e}");
}

#[test]
fn real_amd_report_fails_when_tampered_expired_or_under_another_chip() {
    let report = amd_vector("report_milan.bin");
    let vcek = amd_vector("vcek_milan.der");
    // One flipped bit of REPORT_DATA.
    let mut bytes = std::fs::read(&report).unwrap();
    bytes[0x50] ^= 1;
    let tampered = tmp("milan-tampered.report");
    std::fs::write(&tampered, &bytes).unwrap();
    let o = run(&["report", tampered.to_str().unwrap(), "--chain", &vcek]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("report signature does not verify"),
        "{}",
        stdout(&o)
    );
    // After the VCEK's end of validity (2031-01-01).
    let o = run(&["report", &report, "--chain", &vcek, "--at", "1924992000"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("'SEV-VCEK' expired"), "{}", stdout(&o));
    // Another chip's (Turin) VCEK.
    let o = run(&["report", &report, "--chain", &amd_vector("vcek_turin.der")]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
}

/// A report signed by the stand-in PKI's VCEK (psp-driver/tests/vectors/amd/test-pki).
fn test_pki_report(reported_tcb: u64) -> PathBuf {
    test_pki_report_with(reported_tcb, |_| {})
}

/// Like [`test_pki_report`], with further fields set before signing.
fn test_pki_report_with(
    reported_tcb: u64,
    edit: impl FnOnce(&mut psp_driver::report::AttestationReport),
) -> PathBuf {
    use p384::ecdsa::SigningKey;
    use psp_driver::owner::cert::{algo, sign_message};
    use psp_driver::report::AttestationReport;
    use zerocopy::FromZeros;
    use zerocopy::little_endian::{U32, U64};
    let scalar = std::fs::read_to_string(amd_vector("test-pki/vcek.scalar.hex")).unwrap();
    let key = SigningKey::from_slice(&hex::decode(scalar.trim()).unwrap()).unwrap();
    let mut r = AttestationReport::new_zeroed();
    r.version = U32::new(2);
    r.signature_algo = U32::new(1);
    r.reported_tcb = U64::new(reported_tcb);
    for (i, b) in r.chip_id.iter_mut().enumerate() {
        *b = i as u8;
    }
    edit(&mut r);
    r.signature = sign_message(&key, algo::ECDSA_SHA384, r.signed_bytes()).unwrap();
    let p = tmp(&format!(
        "test-pki-{reported_tcb:x}-v{}-{:x}.report",
        r.version.get(),
        r.cpuid_fam_id
    ));
    std::fs::write(&p, r.as_bytes()).unwrap();
    p
}

#[test]
fn a_chain_not_rooted_in_amd_needs_allow_unknown_root_and_must_match_the_tcb() {
    let chain = [
        amd_vector("test-pki/ark.pem"),
        amd_vector("test-pki/ask.pem"),
        amd_vector("test-pki/vcek.der"),
    ];
    let good = test_pki_report(0x7308_0000_0000_0003);
    let o = run_report_chain(&good, &[], &chain);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("--allow-unknown-root"),
        "{}",
        stdout(&o)
    );
    let o = run_report_chain(&good, &["--json", "--allow-unknown-root"], &chain);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert_eq!(json(&o)["verification"]["root"], "unknown");
    // SNP SPL 9 in the report, 8 in the certificate.
    let stale = test_pki_report(0x7309_0000_0000_0003);
    let o = run_report_chain(&stale, &["--allow-unknown-root"], &chain);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("SNP SPL 8, the reported TCB has 9"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn a_revocation_list_from_the_root_can_revoke_the_ask() {
    let chain = [
        amd_vector("test-pki/ark.pem"),
        amd_vector("test-pki/ask.pem"),
        amd_vector("test-pki/vcek.der"),
    ];
    let report = test_pki_report(0x7308_0000_0000_0003);
    let run = |crl: &str| {
        run_report_chain(
            &report,
            &["--allow-unknown-root", "--crl", &amd_vector(crl)],
            &chain,
        )
    };
    let o = run("test-pki/crl_empty.pem");
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("'SEV-Milan' not revoked"),
        "{}",
        stdout(&o)
    );
    let o = run("test-pki/crl_ask_revoked.pem");
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("certificate 'SEV-Milan' is revoked by 'ARK-Milan'"),
        "{}",
        stdout(&o)
    );
    // Not a revocation list: an input error.
    let e = usage_error(&[
        "report",
        report.to_str().unwrap(),
        "--crl",
        &amd_vector("test-pki/ark.pem"),
        "--chain",
        &amd_vector("vcek_milan.der"),
    ]);
    assert!(e.contains("revocation list"), "{e}");
}

#[test]
fn bad_amd_certificate_inputs_are_usage_errors() {
    let report = amd_vector("report_milan.bin");
    let garbage = tmp("garbage.der");
    std::fs::write(&garbage, [0x30, 0x82, 0x01]).unwrap();
    let e = usage_error(&["report", &report, "--chain", garbage.to_str().unwrap()]);
    assert!(e.contains("not an X.509 certificate"), "{e}");
    // The bundle alone has no VCEK.
    let e = usage_error(&[
        "report",
        &report,
        "--chain",
        &amd_vector("cert_chain_milan.pem"),
    ]);
    assert!(e.contains("got 2"), "{e}");
    // A lone certificate whose issuer is not a built-in ASK.
    let e = usage_error(&[
        "report",
        &report,
        "--chain",
        &amd_vector("test-pki/ask.pem"),
    ]);
    assert!(e.contains("no built-in AMD certificate"), "{e}");
    // Options that need --chain.
    usage_error(&["report", &report, "--allow-unknown-root"]);
    usage_error(&["report", &report, "--at", "5"]);
}

#[test]
fn version_3_reports_name_their_product_and_tcb_layout() {
    // Family 1Ah is Turin: [0] FMC, [1] boot loader, [2] TEE, [3] SNP, [7] microcode
    // (firmware facts §3.7).
    let turin = test_pki_report_with(0x0900_0000_0403_0201, |r| {
        r.version = zerocopy::little_endian::U32::new(3);
        (r.cpuid_fam_id, r.cpuid_mod_id, r.cpuid_step) = (0x1A, 0x02, 0x01);
    });
    let o = run_report(&turin, &["--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["cpuid"], "family 0x1a model 0x2 stepping 0x1 (Turin)");
    assert_eq!(
        v["reported_tcb_parts"],
        "FMC 1, boot loader 2, TEE 3, SNP 4, microcode 9 (Turin layout)"
    );
    // The test chip ID is 00 01 02 …: Turin's KDS takes its first 8 bytes.
    assert_eq!(
        v["vcek_url"],
        "https://kdsintf.amd.com/vcek/v1/Turin/0001020304050607?fmcSPL=01&blSPL=02&teeSPL=03&snpSPL=04&ucodeSPL=09"
    );
    // Family 19h model 01h is Milan: [0] boot loader, [1] TEE, [6] SNP, [7] microcode.
    let milan = test_pki_report_with(0x0908_0000_0000_0201, |r| {
        r.version = zerocopy::little_endian::U32::new(3);
        (r.cpuid_fam_id, r.cpuid_mod_id, r.cpuid_step) = (0x19, 0x01, 0x01);
    });
    let o = run_report(&milan, &[]);
    let out = stdout(&o);
    assert!(
        out.contains("boot loader 1, TEE 2, SNP 8, microcode 9 (Milan layout)"),
        "{out}"
    );
    // A version 2 report without a chain: no layout is guessed.
    let v2 = test_pki_report(0x7308_0000_0000_0003);
    let o = run_report(&v2, &["--json"]);
    let v = json(&o);
    assert!(v.get("reported_tcb_parts").is_none(), "{v}");
    assert!(v.get("cpuid").is_none(), "{v}");
}
