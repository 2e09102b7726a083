//! `vmm-cli sim-host` as a program runner: its exit status is the program's, a program killed
//! at any point leaves no process or file behind, and bad options are one-line errors.

use std::path::Path;
use std::process::{Command, Stdio};

#[path = "procs/mod.rs"]
mod procs;
use procs::{children, entries, exe, with_marker};
use std::time::{Duration, Instant};

/// The tests that start QEMU or count what is left in `/dev/shm` run one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn exit_status_is_the_programs() {
    for (args, code) in [
        (vec!["true"], 0),
        (vec!["false"], 1),
        (vec!["sh", "-c", "exit 42"], 42),
    ] {
        let st = Command::new(exe())
            .args(["sim-host", "--"])
            .args(&args)
            .status()
            .unwrap();
        assert_eq!(st.code(), Some(code), "{args:?}");
    }
    // A program killed by a signal: 128 + the signal, as a shell reports it.
    let st = Command::new(exe())
        .args(["sim-host", "--", "sh", "-c", "kill -9 $$"])
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(128 + 9));
}

#[test]
fn bad_options_are_one_line_errors() {
    for args in [
        vec!["sim-host"],
        vec![
            "sim-host",
            "--faults",
            "snp_launch_update:explode",
            "--",
            "true",
        ],
        vec!["sim-host", "--faults", "nocolon", "--", "true"],
        vec!["sim-host", "--tee", "sgx", "--", "true"],
        vec!["sim-host", "--seed", "x", "--", "true"],
        vec![
            "sim-host",
            "--trace",
            "/nonexistent/dir/t.jsonl",
            "--",
            "true",
        ],
        vec![
            "sim-host",
            "--report-out",
            "/nonexistent/dir/r.bin",
            "--",
            "true",
        ],
        vec!["sim-host", "--", "/nonexistent/program"],
    ] {
        let out = Command::new(exe()).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// The committed sev-snp-measure output for `args` (kvm-coco's vector file).
fn ssm_vector(args: &[&str]) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../kvm-coco/tests/vectors/sev-snp-measure.json");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| {
            c["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap())
                .eq(args.iter().copied())
        })
        .unwrap_or_else(|| panic!("no committed vector for {args:?}"))["stdout"]
        .as_str()
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn qemu_under_sim_host_writes_a_report_that_verifies() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let qemu_ok = Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let ovmf = Path::new("/usr/share/ovmf/OVMF.fd");
    if !qemu_ok || !ovmf.exists() {
        kvm_coco_test_skip::skip(
            "QEMU",
            format_args!(
                "qemu-system-x86_64 or {} missing (.ci/run installs both)",
                ovmf.display()
            ),
        );
        return;
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sim_host_report");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let report = dir.join("r.bin");
    let trace = dir.join("t.jsonl");
    let out = Command::new(exe())
        .args(["sim-host", "--tee", "snp", "--trace"])
        .arg(&trace)
        .arg("--report-out")
        .arg(&report)
        .args([
            "--",
            "qemu-system-x86_64",
            "-machine",
            "q35,confidential-guest-support=sev0,memory-backend=ram1",
            "-object",
            "memory-backend-memfd,id=ram1,size=512M,share=true",
            "-object",
            "sev-snp-guest,id=sev0,cbitpos=0,reduced-phys-bits=1",
            "-bios",
            "/usr/share/ovmf/OVMF.fd",
            "-nographic",
            "-accel",
            "kvm",
            "-cpu",
            "EPYC-v4",
            "-smp",
            "1",
            "-nodefaults",
            "-serial",
            "none",
            "-monitor",
            "none",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&trace)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["subcommand"] == "KVM_SEV_SNP_LAUNCH_FINISH" && l["result"] == 0)
    );
    let v = Command::new(exe())
        .args(["report", "--sim-chain"])
        .arg(&report)
        .output()
        .unwrap();
    assert!(v.status.success(), "{v:?}");
    let text = String::from_utf8_lossy(&v.stdout);
    assert!(text.contains("signature verified"), "{text}");
    let expected = ssm_vector(&[
        "--mode",
        "snp",
        "--vcpus",
        "1",
        "--vcpu-type",
        "EPYC-v4",
        "--ovmf",
        "OVMF.fd",
    ]);
    let measurement = text
        .lines()
        .find_map(|l| l.strip_prefix("measurement"))
        .unwrap()
        .trim();
    assert_eq!(
        measurement, expected,
        "the report's measurement vs sev-snp-measure"
    );
}

#[test]
fn fifty_programs_killed_at_random_points_leave_nothing_behind() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sim_host_kills");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let shm_before = entries(Path::new("/dev/shm"));
    let mut rng: u64 = 0x5eed;
    let (mut killed, mut finished) = (0, 0);
    for i in 0..50 {
        let marker = format!("kvm-coco-kill-test-{}-{i}", std::process::id());
        let stderr_path = dir.with_file_name(format!("sim_host_kills_stderr_{i}"));
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let mut sim = Command::new(exe())
            .current_dir(&dir)
            .args(["sim-host", "--tee", "snp,tdx", "--"])
            .arg(exe())
            .args(["launch", "--backend", "kvm", "--tee"])
            .arg(if i % 2 == 0 { "snp" } else { "tdx" })
            .env("KVM_COCO_TEST_MARKER", &marker)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        // Wait for the program, then kill it after 0 to ~40 ms.
        let start = Instant::now();
        let program = loop {
            if let Some(&p) = children(sim.id()).first() {
                break Some(p);
            }
            if sim.try_wait().unwrap().is_some() || start.elapsed() > Duration::from_secs(10) {
                break None;
            }
            std::thread::sleep(Duration::from_micros(200));
        };
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_micros(rng % 40_000));
        if let Some(p) = program {
            let _ = Command::new("kill").args(["-9", &p.to_string()]).status();
        }
        let st = sim.wait().unwrap();
        match st.code() {
            Some(137) => killed += 1,
            Some(0) => finished += 1,
            other => panic!(
                "sim-host exited with {other:?}, not the program's status; its stderr:\n{}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            ),
        }
        let _ = std::fs::remove_file(&stderr_path);
        assert!(
            with_marker(&marker).is_empty(),
            "a process of run {i} survived"
        );
        assert!(entries(&dir).is_empty(), "run {i} left {:?}", entries(&dir));
    }
    assert_eq!(entries(Path::new("/dev/shm")), shm_before);
    eprintln!("{killed} killed, {finished} finished before the kill");
    assert!(killed >= 10, "only {killed} of 50 runs were killed mid-way");
}
