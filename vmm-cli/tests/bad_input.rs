//! A corpus of malformed inputs for every `vmm-cli` command and option: files (missing,
//! empty, a directory, random bytes, truncated, the wrong size), hex, integers, sizes,
//! policies, feature bits, TEE and backend names, `--faults` specs and output paths. Each
//! must be refused before anything runs, with exit code 2 and exactly one line on stderr
//! that starts with `error` and names the offending value, and no panic.

use std::path::PathBuf;
use std::process::Output;

use assert_cmd::Command;

/// The malformed files the corpus refers to, made once in a private directory.
struct Files {
    dir: PathBuf,
}

impl Files {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("vmm-cli-bad-input-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("a-directory")).unwrap();
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut random = vec![0u8; 4096];
        for b in &mut random {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            *b = rng as u8;
        }
        std::fs::write(dir.join("empty"), b"").unwrap();
        std::fs::write(dir.join("random"), &random).unwrap();
        std::fs::write(dir.join("random-100"), &random[..100]).unwrap();
        // The size of an SNP report (0x4A0) but random: not a report of any version.
        std::fs::write(dir.join("random-report"), &random[..0x4A0]).unwrap();
        // One byte short of an ID block (96) and of an ID auth (4096).
        std::fs::write(dir.join("id-block-95"), &random[..95]).unwrap();
        std::fs::write(dir.join("id-block-96"), &random[..96]).unwrap();
        std::fs::write(dir.join("syn64k"), kvm_coco::measure::synthetic::syn64k()).unwrap();
        std::fs::write(dir.join("id-auth-4095"), &random[..4095]).unwrap();
        std::fs::write(
            dir.join("pem-garbage"),
            b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }

    /// [`path`](Self::path), kept for the whole test (the corpus borrows it).
    fn s(&self, name: &str) -> &'static str {
        leak(self.path(name))
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `s`, kept for the whole test.
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn run(args: &[impl AsRef<std::ffi::OsStr>]) -> Output {
    Command::cargo_bin("vmm-cli")
        .unwrap()
        .args(args)
        .timeout(std::time::Duration::from_secs(120))
        .output()
        .unwrap()
}

/// Checks one corpus entry; returns a description of what is wrong with the answer.
fn check(args: &[String], names: &str) -> Option<String> {
    let o = run(args);
    let err = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    let problem = if o.status.code() != Some(2) {
        Some(format!("exit {:?}", o.status.code()))
    } else if err.contains("panicked") {
        Some("panicked".into())
    } else if lines.len() != 1 {
        Some(format!("{} lines on stderr", lines.len()))
    } else if !lines[0].starts_with("error") {
        Some("the line does not start with `error`".into())
    } else if !names.is_empty() && !lines[0].contains(names) {
        Some(format!("the line does not name `{names}`"))
    } else {
        None
    };
    problem.map(|p| format!("{args:?}: {p}; stderr: {err}"))
}

#[test]
fn every_malformed_input_is_one_line_and_exit_2() {
    let f = Files::new();
    let missing = f.path("no-such-file");
    let unwritable = "/proc/no-such-dir/out".to_owned();
    let dir = f.path("a-directory");
    // (arguments, a string the error line must contain: the offending value or option).
    let mut corpus: Vec<(Vec<String>, String)> = Vec::new();
    let mut add = |args: &[&str], names: &str| {
        corpus.push((
            args.iter().map(|s| (*s).to_owned()).collect(),
            names.to_owned(),
        ));
    };

    // ---- measure ----------------------------------------------------------------------
    let amd = ["--vcpus", "1", "--vcpu-type", "EPYC-v4"];
    let unreadable = [
        (missing.as_str(), "no-such-file"),
        (f.s("empty"), "empty"),
        (dir.as_str(), "a-directory"),
    ];
    // Any image is a valid SEV firmware (measured as a byte stream) and any whole number of
    // pages a valid "snp:ovmf-hash" one; the metadata-driven modes need a real image.
    let no_metadata = [(f.s("random"), "random"), (f.s("random-100"), "random-100")];
    for mode in ["snp", "seves", "sev", "snp:ovmf-hash", "tdx"] {
        let files: Vec<(&str, &str)> = match mode {
            "sev" => unreadable.to_vec(),
            "snp:ovmf-hash" => unreadable
                .iter()
                .chain(&no_metadata[1..])
                .copied()
                .collect(),
            _ => unreadable.iter().chain(&no_metadata).copied().collect(),
        };
        for (file, name) in files {
            let mut a = vec!["measure", "--mode", mode, "--ovmf", file];
            if matches!(mode, "snp" | "seves") {
                a.extend(amd);
            }
            add(&a, name);
        }
    }
    let syn = f.path("syn64k");
    let base = ["measure", "--mode", "seves", "--ovmf", syn.as_str()];
    add(&["measure", "--mode", "bogus", "--ovmf", &missing], "bogus");
    add(&["measure", "--mode", "snp"], "--ovmf");
    add(&["measure", "--ovmf", &missing], "--mode");
    for (extra, names) in [
        (&["--vcpus", "0", "--vcpu-type", "EPYC-v4"][..], ""),
        (&["--vcpus", "-1", "--vcpu-type", "EPYC-v4"], ""),
        (&["--vcpus", "abc", "--vcpu-type", "EPYC-v4"], "abc"),
        (
            &["--vcpus", "99999999999", "--vcpu-type", "EPYC-v4"],
            "99999999999",
        ),
        (&["--vcpus", "1", "--vcpu-type", "NoSuchCpu"], "NoSuchCpu"),
        (&["--vcpus", "1", "--vcpu-sig", "zz"], "zz"),
        (&["--vcpus", "1", "--vcpu-sig", "0x"], ""),
        (&["--vcpus", "1", "--vcpu-sig", "0x1ffffffff"], ""),
        (
            &[
                "--vcpus",
                "1",
                "--vcpu-family",
                "300",
                "--vcpu-model",
                "1",
                "--vcpu-stepping",
                "1",
            ],
            "300",
        ),
        (
            &[
                "--vcpus",
                "1",
                "--vcpu-family",
                "25",
                "--vcpu-model",
                "-3",
                "--vcpu-stepping",
                "1",
            ],
            "",
        ),
        (
            &[
                "--vcpus",
                "1",
                "--vcpu-family",
                "25",
                "--vcpu-model",
                "1",
                "--vcpu-stepping",
                "99",
            ],
            "99",
        ),
        (
            &[
                "--vcpus",
                "1",
                "--vcpu-type",
                "EPYC-v4",
                "--vmm-type",
                "bogus",
            ],
            "bogus",
        ),
        (
            &[
                "--vcpus",
                "1",
                "--vcpu-type",
                "EPYC-v4",
                "--guest-features",
                "xyz",
            ],
            "xyz",
        ),
        (
            &[
                "--vcpus",
                "1",
                "--vcpu-type",
                "EPYC-v4",
                "--guest-features",
                "0x1ffffffffffffffffff",
            ],
            "",
        ),
        (
            &[
                "--vcpus",
                "1",
                "--vcpu-type",
                "EPYC-v4",
                "--output-format",
                "bogus",
            ],
            "bogus",
        ),
        (
            &[
                "--vcpus",
                "1",
                "--vcpu-type",
                "EPYC-v4",
                "--kernel",
                missing.as_str(),
            ],
            "no-such-file",
        ),
        (
            &[
                "--vcpus",
                "1",
                "--vcpu-type",
                "EPYC-v4",
                "--kernel",
                dir.as_str(),
            ],
            "a-directory",
        ),
        (
            &[
                "--vcpus",
                "1",
                "--vcpu-type",
                "EPYC-v4",
                "--initrd",
                missing.as_str(),
            ],
            "--kernel",
        ),
    ] {
        let mut a: Vec<&str> = base.to_vec();
        a.extend(extra);
        add(&a, names);
    }

    // ---- check ------------------------------------------------------------------------
    add(&["check", "--tee", "bogus"], "bogus");
    add(&["check"], "--tee");
    for (opt, val) in [
        ("--policy", "xyz"),
        ("--policy", "0x1ffffffffffffffffff"),
        ("--memory", "0"),
        ("--memory", "12Q"),
        ("--memory", "-5"),
        ("--memory", "99999999999T"),
        ("--vmsa-features", "abc"),
        ("--attributes", "zz"),
        ("--xfam", "0xg"),
    ] {
        add(&["check", "--tee", "snp", opt, val], val);
    }

    // ---- report -----------------------------------------------------------------------
    for (file, name) in [
        (missing.as_str(), "no-such-file"),
        (f.s("empty"), "empty"),
        (dir.as_str(), "a-directory"),
        (f.s("random-100"), "random-100"),
        (f.s("random-report"), "random-report"),
    ] {
        add(&["report", file], name);
    }
    add(&["report"], "FILE");
    // A real SNP report to check certificates and CRLs against.
    let report = f.path("report.bin");
    let made = run(&[
        "launch",
        "--backend",
        "sim",
        "--report-out",
        report.as_str(),
    ]
    .map(str::to_owned));
    assert_eq!(made.status.code(), Some(0), "{made:?}");
    for (opt, val, names) in [
        ("--chain", missing.as_str(), "no-such-file"),
        ("--chain", f.s("random"), "random"),
        ("--chain", f.s("pem-garbage"), "pem-garbage"),
        // A revocation list is only checked along a chain.
        ("--crl", missing.as_str(), "--chain"),
        ("--at", "yesterday", "yesterday"),
        ("--seed", "abc", "abc"),
    ] {
        add(&["report", &report, opt, val], names);
    }

    // ---- launch -----------------------------------------------------------------------
    add(&["launch", "--backend", "bogus"], "bogus");
    add(&["launch", "--tee", "bogus"], "bogus");
    let random = f.path("random");
    for (extra, names) in [
        (&["--policy", "xyz"][..], "xyz"),
        (
            &["--policy", "0x1ffffffffffffffffff"],
            "0x1ffffffffffffffffff",
        ),
        (&["--vmsa-features", "abc"], "abc"),
        (&["--attributes", "zz"], "zz"),
        (&["--xfam", "0xg"], "0xg"),
        (&["--vcpus", "0"], "--vcpus"),
        (&["--vcpus", "abc"], "abc"),
        (&["--vcpu-sig", "zz"], "zz"),
        (&["--memory", "0"], "0"),
        (&["--memory", "12Q"], "12Q"),
        (&["--memory", "-1M"], "-1"),
        (&["--firmware", missing.as_str()], "no-such-file"),
        (&["--firmware", f.s("empty")], "empty"),
        (&["--firmware", random.as_str()], "random"),
        (&["--firmware", dir.as_str()], "a-directory"),
        (&["--kernel", missing.as_str()], "no-such-file"),
        (
            &["--kernel", random.as_str(), "--initrd", missing.as_str()],
            "no-such-file",
        ),
        (&["--initrd", random.as_str()], "--kernel"),
        (
            &["--id-block", missing.as_str(), "--id-auth", random.as_str()],
            "no-such-file",
        ),
        (
            &[
                "--id-block",
                f.s("id-block-95"),
                "--id-auth",
                random.as_str(),
            ],
            "id-block-95",
        ),
        (
            &[
                "--id-block",
                f.s("id-block-96"),
                "--id-auth",
                f.s("id-auth-4095"),
            ],
            "id-auth-4095",
        ),
        (&["--id-block", random.as_str()], "--id-auth"),
        (&["--host-data", "zz"], "--host-data"),
        (&["--host-data", leak("ab".repeat(33))], "--host-data"),
        (&["--tee", "tdx", "--mrconfigid", "xyz"], "--mrconfigid"),
        (
            &["--tee", "tdx", "--mrconfigid", leak("ab".repeat(49))],
            "--mrconfigid",
        ),
        (&["--mrconfigid", "00"], "--mrconfigid"),
        (&["--report-out", unwritable.as_str()], "no-such-dir"),
        (
            &["--tee", "tdx", "--quote-out", unwritable.as_str()],
            "no-such-dir",
        ),
        (&["--log", unwritable.as_str()], "no-such-dir"),
        (&["--report-out", dir.as_str()], "a-directory"),
        (&["--log", dir.as_str()], "a-directory"),
        (&["--seed", "abc"], "abc"),
    ] {
        let mut a = vec!["launch", "--backend", "sim"];
        a.extend(extra);
        add(&a, names);
    }

    // ---- sim-host ---------------------------------------------------------------------
    add(&["sim-host", "--tee", "bogus", "--", "true"], "bogus");
    add(&["sim-host", "--seed", "abc", "--", "true"], "abc");
    add(&["sim-host", "--"], "PROGRAM");
    for spec in [
        "bogus",
        "eagain",
        "KVM_SEV_SNP_LAUNCH_UPDATE",
        "KVM_SEV_SNP_LAUNCH_UPDATE=",
        "KVM_SEV_SNP_LAUNCH_UPDATE=nosuch",
        "KVM_SEV_SNP_LAUNCH_UPDATE=partial=abc",
        "KVM_SEV_SNP_LAUNCH_UPDATE=fw=zz",
        "KVM_SEV_SNP_LAUNCH_UPDATE=eagain@",
        "KVM_SEV_SNP_LAUNCH_UPDATE=eagain@abc",
        "KVM_SEV_SNP_LAUNCH_UPDATE=eagain%200",
        "KVM_SEV_SNP_LAUNCH_UPDATE=eagain%-1",
        "KVM_SEV_SNP_LAUNCH_UPDATE=eagain,,",
    ] {
        add(&["sim-host", "--faults", spec, "--", "true"], "");
    }
    for (opt, val, names) in [
        ("--trace", unwritable.as_str(), "no-such-dir"),
        ("--trace", dir.as_str(), "a-directory"),
        ("--report-out", unwritable.as_str(), "no-such-dir"),
        ("--report-out", dir.as_str(), "a-directory"),
    ] {
        add(&["sim-host", opt, val, "--", "true"], names);
    }

    // ---- the command line itself --------------------------------------------------------
    add(&["no-such-command"], "no-such-command");
    add(&["measure", "--no-such-option"], "--no-such-option");

    let failures: Vec<String> = corpus
        .iter()
        .filter_map(|(args, names)| check(args, names))
        .collect();
    eprintln!(
        "bad-input corpus: {} inputs, {} wrong",
        corpus.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} malformed inputs were not refused with one line and exit 2:\n{}",
        failures.len(),
        corpus.len(),
        failures.join("\n")
    );
}

/// The corpus helper itself: a well-formed command is not counted as refused.
#[test]
fn a_good_command_is_not_a_refusal() {
    let args: Vec<String> = ["measure", "--help"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    assert!(
        check(&args, "").is_some(),
        "--help exits 0, which the check must flag"
    );
}
