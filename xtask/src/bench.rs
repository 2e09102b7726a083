//! `cargo xtask bench [--quick]`: runs the project's criterion benchmarks, the comparison
//! crate (`bench/compare`) and sev-snp-measure on the same inputs, then prints one table of
//! ratios, each figure next to its baseline, all measured in this run.
//!
//! Figures are read from criterion's `new/estimates.json` (each bench writes into its own
//! `CRITERION_HOME` under the target directory, emptied first, so a bench that fails leaves
//! no stale numbers behind). A bench that does not exist or fails becomes a row saying so.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::workspace_root;

/// Options of `bench`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Short measurement times and small inputs.
    pub quick: bool,
}

impl Options {
    /// Parses `--quick`.
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let mut o = Options::default();
        for a in args {
            match a.as_str() {
                "--quick" => o.quick = true,
                other => {
                    return Err(format!(
                        "bench: unknown option `{other}` (expected --quick)"
                    ));
                }
            }
        }
        Ok(o)
    }
}

/// One criterion result: the point estimate of the time per iteration.
#[derive(Clone, Debug, PartialEq)]
pub struct Estimate {
    /// `group/function`.
    pub id: String,
    /// Nanoseconds per iteration (slope if criterion fitted one, else the mean).
    pub ns: f64,
}

/// Reads every `*/new/estimates.json` (with its `benchmark.json`) under `dir`, keyed by
/// criterion's `group/function` id.
pub fn read_estimates(dir: &Path) -> BTreeMap<String, Estimate> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if !p.is_dir() {
                continue;
            }
            if p.file_name().is_some_and(|n| n == "new") {
                if let Some(est) = read_one(&p) {
                    out.insert(est.id.clone(), est);
                }
            } else if p
                .file_name()
                .is_some_and(|n| n != "report" && n != "base" && n != "change")
            {
                stack.push(p);
            }
        }
    }
    out
}

fn read_json(p: &Path) -> Option<serde_json::Value> {
    serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok()
}

fn read_one(new_dir: &Path) -> Option<Estimate> {
    let b = read_json(&new_dir.join("benchmark.json"))?;
    let e = read_json(&new_dir.join("estimates.json"))?;
    let group = b.get("group_id")?.as_str()?;
    let id = match b.get("function_id").and_then(|f| f.as_str()) {
        Some(f) => format!("{group}/{f}"),
        None => group.to_owned(),
    };
    let point = |k: &str| {
        e.get(k)
            .and_then(|v| v.get("point_estimate"))
            .and_then(serde_json::Value::as_f64)
    };
    let ns = point("slope").or_else(|| point("mean"))?;
    Some(Estimate { id, ns })
}

/// A goal for a time ratio (target time / baseline time).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Goal {
    /// The ratio must be at most this.
    AtMost(f64, &'static str),
    /// Informational, with what "good" looks like.
    Info(&'static str),
}

/// One row of the table.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// What is compared.
    pub figure: String,
    /// The measured thing and its time.
    pub target: (String, Option<f64>),
    /// The baseline and its time.
    pub baseline: (String, Option<f64>),
    /// The goal.
    pub goal: Goal,
    /// Why there is no figure (bench missing or failed), if so.
    pub missing: Option<String>,
}

impl Row {
    fn ratio(&self) -> Option<f64> {
        match (self.target.1, self.baseline.1) {
            (Some(t), Some(b)) if b > 0.0 => Some(t / b),
            _ => None,
        }
    }

    fn verdict(&self) -> &'static str {
        match (self.ratio(), self.goal) {
            (Some(r), Goal::AtMost(max, _)) if r <= max => "yes",
            (Some(_), Goal::AtMost(..)) => "NO",
            _ => "-",
        }
    }
}

/// Formats nanoseconds with a readable unit.
pub fn fmt_ns(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{:.3} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

/// Renders the rows as one table.
pub fn render(rows: &[Row]) -> String {
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            let t = |(name, ns): &(String, Option<f64>)| match ns {
                Some(v) => format!("{name} {}", fmt_ns(*v)),
                None => format!("{name} (no figure)"),
            };
            let goal = match r.goal {
                Goal::AtMost(_, s) | Goal::Info(s) => s.to_owned(),
            };
            let ratio = match (&r.missing, r.ratio()) {
                (Some(m), _) => m.clone(),
                (None, Some(x)) => {
                    let diff = r.target.1.unwrap_or(0.0) - r.baseline.1.unwrap_or(0.0);
                    let sign = if diff < 0.0 { "-" } else { "+" };
                    format!("{x:.3} ({sign}{})", fmt_ns(diff.abs()))
                }
                (None, None) => "no figure".to_owned(),
            };
            [
                r.figure.clone(),
                t(&r.target),
                t(&r.baseline),
                ratio,
                goal,
                r.verdict().to_owned(),
            ]
        })
        .collect();
    let head = [
        "figure",
        "target",
        "baseline",
        "time ratio (target/baseline)",
        "goal",
        "meets",
    ];
    let mut w = head.map(str::len);
    for c in &cells {
        for (i, s) in c.iter().enumerate() {
            w[i] = w[i].max(s.chars().count());
        }
    }
    let line = |c: &[String; 6], out: &mut String| {
        let mut s = String::from("|");
        for (i, x) in c.iter().enumerate() {
            let pad = w[i] - x.chars().count();
            let _ = write!(s, " {x}{} |", " ".repeat(pad));
        }
        out.push_str(&s);
        out.push('\n');
    };
    let mut out = String::new();
    line(&head.map(str::to_owned), &mut out);
    let sep: Vec<String> = w.iter().map(|n| "-".repeat(*n)).collect();
    let _ = writeln!(out, "|-{}-|", sep.join("-|-"));
    for c in &cells {
        line(c, &mut out);
    }
    out
}

/// The target directory cargo uses for this workspace.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// The outcome of running one bench.
#[derive(Debug)]
struct Ran {
    estimates: BTreeMap<String, Estimate>,
    /// Why it produced no figures, if it failed.
    error: Option<String>,
}

/// Runs `cargo <args>` with `CRITERION_HOME=home` (emptied first) and extra env.
fn run_cargo_bench(label: &str, home: &Path, args: &[&str], env: &[(&str, String)]) -> Ran {
    let _ = std::fs::remove_dir_all(home);
    let _ = std::fs::create_dir_all(home);
    eprintln!("==> bench {label}: cargo {}", args.join(" "));
    let start = Instant::now();
    let child = Command::new("cargo")
        .args(args)
        .env("CRITERION_HOME", home)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(workspace_root())
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        .spawn();
    let error = match child {
        Err(e) => Some(format!("cannot run cargo: {e}")),
        Ok(mut child) => {
            // Show cargo's and the bench's stderr as it comes, and keep it for the reason.
            let mut stderr = String::new();
            if let Some(pipe) = child.stderr.take() {
                use std::io::BufRead as _;
                for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                    eprintln!("{line}");
                    stderr.push_str(&line);
                    stderr.push('\n');
                }
            }
            match child.wait() {
                Ok(s) if s.success() => None,
                Ok(_) => Some(summarize_failure(&stderr)),
                Err(e) => Some(format!("cannot wait for cargo: {e}")),
            }
        }
    };
    eprintln!("    ({:.0} s)", start.elapsed().as_secs_f64());
    Ran {
        estimates: read_estimates(home),
        error,
    }
}

/// A one-line reason from a failed cargo run's stderr.
pub fn summarize_failure(stderr: &str) -> String {
    if let Some(l) = stderr.lines().find(|l| l.contains("no bench target named")) {
        return format!(
            "bench does not exist yet ({})",
            l.trim_start_matches("error: ").trim()
        );
    }
    if let Some(l) = stderr.lines().find(|l| l.starts_with("error")) {
        return format!("failed: {}", l.trim());
    }
    if let Some(l) = stderr.lines().rev().find(|l| l.contains("panicked")) {
        return format!("failed: {}", l.trim());
    }
    format!(
        "failed: {}",
        stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no output")
            .trim()
    )
}

/// SHA-256 of SYN64K from the facts file (§8.1), to check the generator.
pub const SYN64K_SHA256: &str = "dac893496e53bf1a5643d761be49395899612ebe0178de53d93e1d6c373736fb";

/// A deterministic, incompressible-looking file of `len` bytes.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        // xorshift64
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Finds Debian's OVMF.fd: `$KVM_COCO_OVMF`, `/usr/share/ovmf/OVMF.fd`, or the `ovmf`
/// package fetched with `apt-get download` and unpacked with `dpkg -x` under `dir`.
fn find_ovmf(dir: &Path) -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("KVM_COCO_OVMF") {
        return Ok(PathBuf::from(p));
    }
    let system = PathBuf::from("/usr/share/ovmf/OVMF.fd");
    if system.exists() {
        return Ok(system);
    }
    let root = dir.join("ovmf-root");
    let unpacked = root.join("usr/share/ovmf/OVMF.fd");
    if unpacked.exists() {
        return Ok(unpacked);
    }
    let dl = dir.join("ovmf-deb");
    std::fs::create_dir_all(&dl).map_err(|e| e.to_string())?;
    let ok = Command::new("apt-get")
        .args(["download", "ovmf"])
        .current_dir(&dl)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        return Err(
            "no OVMF: set KVM_COCO_OVMF, install `ovmf`, or allow `apt-get download ovmf`".into(),
        );
    }
    let deb = std::fs::read_dir(&dl)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or("apt-get download ovmf produced no .deb")?;
    let ok = Command::new("dpkg")
        .arg("-x")
        .arg(&deb)
        .arg(&root)
        .status()
        .is_ok_and(|s| s.success());
    if ok && unpacked.exists() {
        Ok(unpacked)
    } else {
        Err(format!(
            "dpkg -x {} did not yield usr/share/ovmf/OVMF.fd",
            deb.display()
        ))
    }
}

/// Writes the measurement inputs and the cases file; returns the cases file path and a
/// description of the inputs.
fn prepare_inputs(dir: &Path, ovmf: &Path) -> Result<(PathBuf, String), String> {
    let inputs = dir.join("inputs");
    std::fs::create_dir_all(&inputs).map_err(|e| e.to_string())?;
    let syn = kvm_coco::measure::synthetic::syn64k();
    let got = hex::encode(Sha256::digest(&syn));
    if got != SYN64K_SHA256 {
        return Err(format!(
            "SYN64K generator is wrong: sha256 {got}, expected {SYN64K_SHA256}"
        ));
    }
    let write = |name: &str, data: &[u8]| -> Result<PathBuf, String> {
        let p = inputs.join(name);
        let same = std::fs::metadata(&p).is_ok_and(|m| m.len() == data.len() as u64)
            && std::fs::read(&p).is_ok_and(|d| d == data);
        if !same {
            std::fs::write(&p, data).map_err(|e| format!("{}: {e}", p.display()))?;
        }
        Ok(p)
    };
    let syn_path = write("syn64k.fd", &syn)?;
    let kernel = write("kernel-64m.bin", &pattern(64 << 20, 0x6b65_726e))?;
    let initrd = write("initrd-64m.bin", &pattern(64 << 20, 0x696e_6974))?;
    let s = |p: &Path| p.display().to_string();
    let cases = serde_json::json!([
        {
            "name": "ovmf-64vcpu",
            "ovmf": s(ovmf),
            "vcpus": 64,
            "vcpu_type": "EPYC-v4",
        },
        {
            "name": "syn64k-64vcpu-kernel64m-initrd64m",
            "ovmf": s(&syn_path),
            "vcpus": 64,
            "vcpu_type": "EPYC-v4",
            "kernel": s(&kernel),
            "initrd": s(&initrd),
            "append": "console=ttyS0",
        }
    ]);
    let path = dir.join("cases.json");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&cases).unwrap_or_default(),
    )
    .map_err(|e| e.to_string())?;
    let desc = format!(
        "inputs: ovmf-64vcpu = {} ({} bytes), 64 vCPUs EPYC-v4, no kernel; \
         syn64k-64vcpu-kernel64m-initrd64m = SYN64K (64 KiB, with a kernel-hash table; \
         Debian's OVMF.fd has no SNP_KERNEL_HASHES section, so no tool can measure a kernel \
         with it), 64 vCPUs, 64 MiB kernel + 64 MiB initrd + `console=ttyS0`",
        ovmf.display(),
        std::fs::metadata(ovmf).map(|m| m.len()).unwrap_or(0)
    );
    Ok((path, desc))
}

/// Times sev-snp-measure (Python, installed with pip into a venv under `dir`) on the cases.
const PY_TIMER: &str = r#"
import json, statistics, sys, time
from sevsnpmeasure import guest, vcpu_types
from sevsnpmeasure.sev_mode import SevMode
from sevsnpmeasure.vmm_types import VMMType
cases = json.load(open(sys.argv[1]))
runs = int(sys.argv[2])
out = {}
for c in cases:
    sig = vcpu_types.CPU_SIGS[c["vcpu_type"]]
    def f():
        return guest.calc_launch_digest(SevMode.SEV_SNP, c["vcpus"], sig, c["ovmf"],
                                        c.get("kernel"), c.get("initrd"), c.get("append"),
                                        0x1, "", VMMType.QEMU)
    digest = f()
    ts = []
    for _ in range(runs):
        t = time.perf_counter_ns()
        f()
        ts.append(time.perf_counter_ns() - t)
    out[c["name"]] = {"median_ns": statistics.median(ts), "min_ns": min(ts), "runs": runs,
                      "digest": digest.hex()}
print(json.dumps(out))
"#;

#[derive(Debug)]
struct PyResult {
    version: String,
    per_case: BTreeMap<String, (f64, usize, String)>,
}

fn sev_snp_measure(dir: &Path, cases: &Path, runs: usize) -> Result<PyResult, String> {
    let venv = dir.join("venv-sev-snp-measure");
    let py = venv.join("bin/python");
    if !py.exists() {
        eprintln!(
            "==> creating {} and installing sev-snp-measure with pip",
            venv.display()
        );
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err("python3 -m venv failed".into());
        }
    }
    let has = Command::new(&py)
        .args(["-c", "import sevsnpmeasure"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has {
        let ok = Command::new(&py)
            .args(["-m", "pip", "install", "--quiet", "sev-snp-measure"])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err("pip install sev-snp-measure failed".into());
        }
    }
    let version = Command::new(&py)
        .args([
            "-c",
            "import importlib.metadata as m; print(m.version('sev-snp-measure'))",
        ])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let script = dir.join("time_sev_snp_measure.py");
    std::fs::write(&script, PY_TIMER).map_err(|e| e.to_string())?;
    eprintln!("==> timing sev-snp-measure {version} ({runs} runs per case)");
    let out = Command::new(&py)
        .arg(&script)
        .arg(cases)
        .arg(runs.to_string())
        .output()
        .map_err(|e| format!("cannot run python: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "sev-snp-measure failed: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        ));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("timer output: {e}"))?;
    let mut per_case = BTreeMap::new();
    if let Some(o) = v.as_object() {
        for (k, c) in o {
            let ns = c["median_ns"].as_f64().unwrap_or(f64::NAN);
            let runs = c["runs"].as_u64().unwrap_or(0) as usize;
            let d = c["digest"].as_str().unwrap_or("").to_owned();
            per_case.insert(k.clone(), (ns, runs, d));
        }
    }
    Ok(PyResult { version, per_case })
}

/// Which functions of a group serve as the baseline of the others.
fn is_baseline(function: &str) -> bool {
    [
        "sha384",
        "sha256",
        "raw",
        "transport_direct",
        "kvm-ioctls",
        "kvm_ioctls",
        "floor",
        "libc",
    ]
    .iter()
    .any(|p| function.contains(p))
}

/// Rows for a bench whose groups each hold baselines and targets: every target against
/// every baseline of its group.
pub fn pair_rows(
    label: &str,
    estimates: &BTreeMap<String, Estimate>,
    goal: impl Fn(&str, &str) -> Goal,
) -> Vec<Row> {
    let mut groups: BTreeMap<&str, Vec<&Estimate>> = BTreeMap::new();
    for e in estimates.values() {
        let g = e.id.rsplit_once('/').map_or(e.id.as_str(), |(g, _)| g);
        groups.entry(g).or_default().push(e);
    }
    let mut rows = Vec::new();
    for (g, es) in groups {
        let fname = |e: &Estimate| {
            e.id.rsplit_once('/')
                .map_or(e.id.clone(), |(_, f)| f.to_owned())
        };
        let bases: Vec<&&Estimate> = es.iter().filter(|e| is_baseline(&fname(e))).collect();
        for t in es.iter().filter(|e| !is_baseline(&fname(e))) {
            if bases.is_empty() {
                rows.push(Row {
                    figure: format!("{label}: {g}"),
                    target: (fname(t), Some(t.ns)),
                    baseline: ("(none in group)".into(), None),
                    goal: Goal::Info("-"),
                    missing: None,
                });
            }
            for b in &bases {
                rows.push(Row {
                    figure: format!("{label}: {g}"),
                    target: (fname(t), Some(t.ns)),
                    baseline: (fname(b), Some(b.ns)),
                    goal: goal(&fname(t), &fname(b)),
                    missing: None,
                });
            }
        }
    }
    rows
}

fn missing_row(figure: &str, target: &str, baseline: &str, goal: Goal, why: String) -> Row {
    Row {
        figure: figure.to_owned(),
        target: (target.to_owned(), None),
        baseline: (baseline.to_owned(), None),
        goal,
        missing: Some(why),
    }
}

/// Rows of one project bench: its pairs, or one row saying why there are none.
fn bench_rows(
    label: &str,
    ran: &Ran,
    goal: impl Fn(&str, &str) -> Goal,
    default_goal: Goal,
) -> Vec<Row> {
    let rows = pair_rows(label, &ran.estimates, goal);
    if !rows.is_empty() && ran.error.is_none() {
        return rows;
    }
    let why = match &ran.error {
        Some(e) => e.clone(),
        None => "bench ran but produced no criterion results (placeholder bench?)".to_owned(),
    };
    let mut out = rows;
    out.push(missing_row(label, "-", "-", default_goal, why));
    out
}

/// `cargo xtask bench`.
pub fn run(args: &[String]) -> Result<(), String> {
    let opts = Options::parse(args)?;
    let target = target_dir();
    let dir = target.join("xtask-bench");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let crit = |name: &str| dir.join("criterion").join(name);
    let crit_args: Vec<&str> = if opts.quick {
        vec![
            "--warm-up-time",
            "0.5",
            "--measurement-time",
            "1.5",
            "--noplot",
        ]
    } else {
        vec!["--noplot"]
    };
    let with = |base: &[&'static str]| -> Vec<&str> {
        let mut v: Vec<&str> = base.to_vec();
        v.push("--");
        v.extend(crit_args.iter().copied());
        v
    };
    let started = Instant::now();
    let mut notes = Vec::new();

    // Inputs shared by kvm-coco, the sev crate and sev-snp-measure.
    let ovmf = find_ovmf(&dir);
    let prepared = ovmf
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|o| prepare_inputs(&dir, o));
    let mut env: Vec<(&str, String)> = Vec::new();
    if let Ok(o) = &ovmf {
        env.push(("KVM_COCO_OVMF", o.display().to_string()));
    }
    match &prepared {
        Ok((cases, desc)) => {
            env.push(("KVM_COCO_BENCH_CASES", cases.display().to_string()));
            notes.push(desc.clone());
        }
        Err(e) => notes.push(format!("inputs: {e}")),
    }
    let mib = if opts.quick { "64" } else { "256" };
    env.push(("KVM_COCO_BENCH_MIB", mib.to_owned()));

    // 1. Offline SNP measurement, kvm-coco's own bench.
    let measure = run_cargo_bench(
        "kvm-coco/measure",
        &crit("kvm-coco-measure"),
        &with(&["bench", "-p", "kvm-coco", "--bench", "measure"]),
        &env,
    );
    // 2. Comparison crate: kvm-coco vs the sev crate vs raw hashing, same inputs.
    let out_dir = dir.join("compare-out");
    let _ = std::fs::remove_dir_all(&out_dir);
    let _ = std::fs::create_dir_all(&out_dir);
    let mut cmp_env = env.clone();
    cmp_env.push(("KVM_COCO_BENCH_OUT", out_dir.display().to_string()));
    // Its own lock file and dependency versions: keep its artifacts apart.
    cmp_env.push((
        "CARGO_TARGET_DIR",
        target.join("compare").display().to_string(),
    ));
    let compare = if prepared.is_ok() {
        run_cargo_bench(
            "bench/compare/snp_measure",
            &crit("compare"),
            &with(&[
                "bench",
                "--manifest-path",
                "bench/compare/Cargo.toml",
                "--bench",
                "snp_measure",
            ]),
            &cmp_env,
        )
    } else {
        Ran {
            estimates: BTreeMap::new(),
            error: Some("inputs could not be prepared".into()),
        }
    };
    // 3. sev-snp-measure (Python).
    let py = match &prepared {
        Ok((cases, _)) => sev_snp_measure(&dir, cases, if opts.quick { 3 } else { 10 }),
        Err(_) => Err("inputs could not be prepared".into()),
    };
    // 4. Simulated SNP launch update.
    let launch = run_cargo_bench(
        "psp-driver/launch_update",
        &crit("psp-launch-update"),
        &with(&[
            "bench",
            "-p",
            "psp-driver",
            "--features",
            "sim",
            "--bench",
            "launch_update",
        ]),
        &env,
    );
    // 5. kvm-coco vs raw kvm-ioctls.
    let kvm = run_cargo_bench(
        "kvm-coco/kvm",
        &crit("kvm-coco-kvm"),
        &with(&["bench", "-p", "kvm-coco", "--bench", "kvm"]),
        &env,
    );
    // 6. psp-driver submission overhead.
    let submission = run_cargo_bench(
        "psp-driver/submission",
        &crit("psp-submission"),
        &with(&["bench", "-p", "psp-driver", "--bench", "submission"]),
        &env,
    );

    // 7. The software host: a served ioctl round trip and a full SNP launch of OVMF.
    let host = run_cargo_bench(
        "kvm-coco/host",
        &crit("kvm-coco-host"),
        &with(&["bench", "-p", "kvm-coco", "--bench", "host"]),
        &env,
    );

    // The table.
    let mut rows = Vec::new();
    rows.extend(bench_rows(
        "kvm-coco measure",
        &measure,
        |_, _| Goal::Info("close to 1"),
        Goal::Info("close to 1"),
    ));
    let case_names = ["ovmf-64vcpu", "syn64k-64vcpu-kernel64m-initrd64m"];
    for case in case_names {
        let g = format!("compare-{case}");
        let get = |f: &str| compare.estimates.get(&format!("{g}/{f}")).map(|e| e.ns);
        let fig = format!("SNP measurement, {case}");
        let why = || {
            compare
                .error
                .clone()
                .unwrap_or_else(|| "no figure in this run".to_owned())
        };
        let mk = |t: &str, b: &str, goal: Goal| {
            let (tn, bn) = (get(t), get(b));
            Row {
                figure: fig.clone(),
                target: (t.to_owned(), tn),
                baseline: (b.to_owned(), bn),
                goal,
                missing: if tn.is_some() && bn.is_some() {
                    None
                } else {
                    Some(why())
                },
            }
        };
        rows.push(mk(
            "kvm_coco_in_memory",
            "raw_hash_floor",
            Goal::Info("close to 1"),
        ));
        rows.push(mk(
            "kvm_coco_files",
            "sev_crate",
            Goal::AtMost(1.0, "<= 1.00"),
        ));
        let coco = get("kvm_coco_files");
        let (py_ns, py_name, py_missing) = match &py {
            Ok(p) => match p.per_case.get(case) {
                Some((ns, runs, _)) => (
                    Some(*ns),
                    format!("sev-snp-measure {} (median of {runs})", p.version),
                    None,
                ),
                None => (
                    None,
                    "sev-snp-measure".to_owned(),
                    Some("no result for this case".to_owned()),
                ),
            },
            Err(e) => (None, "sev-snp-measure".to_owned(), Some(e.clone())),
        };
        let missing = py_missing.or_else(|| coco.is_none().then(why));
        rows.push(Row {
            figure: fig.clone(),
            target: ("kvm_coco_files".to_owned(), coco),
            baseline: (py_name, py_ns),
            goal: Goal::AtMost(1.0, "<= 1.00"),
            missing,
        });
    }
    rows.extend(bench_rows(
        "psp-driver launch_update (sim)",
        &launch,
        |_, _| Goal::AtMost(1.0 / 0.9, "<= 1.11 (>= 0.9x throughput)"),
        Goal::AtMost(1.0 / 0.9, "<= 1.11 (>= 0.9x throughput)"),
    ));
    rows.extend(bench_rows(
        "kvm-coco vs kvm-ioctls",
        &kvm,
        |_, _| Goal::AtMost(1.02, "<= 1.02"),
        Goal::AtMost(1.02, "<= 1.02"),
    ));
    rows.extend(bench_rows(
        "software host",
        &host,
        |target, _| {
            if target.contains("launch") {
                Goal::AtMost(2.0, "<= 2.00")
            } else {
                Goal::Info("served round trip <= 20 µs")
            }
        },
        Goal::AtMost(2.0, "<= 2.00"),
    ));
    rows.extend(bench_rows(
        "psp-driver submission",
        &submission,
        |_, _| Goal::Info("overhead per command"),
        Goal::Info("overhead per command"),
    ));

    // Digest agreement: a figure is worth nothing if the answer differs.
    let digests = read_json(&out_dir.join("digests.json"));
    for case in case_names {
        let rust = digests.as_ref().and_then(|d| d.get(case));
        let sev = rust
            .and_then(|r| r["sev_crate"].as_str())
            .map(str::to_owned);
        let coco = rust.and_then(|r| r["kvm_coco"].as_str()).map(str::to_owned);
        let pyd = py
            .as_ref()
            .ok()
            .and_then(|p| p.per_case.get(case))
            .map(|x| x.2.clone());
        let all: Vec<&String> = [&sev, &coco, &pyd].into_iter().flatten().collect();
        let agree = all.len() == 3 && all.iter().all(|d| *d == all[0]);
        notes.push(format!(
            "digest {case}: kvm-coco {}, sev crate {}, sev-snp-measure {} -> {}",
            coco.as_deref().unwrap_or("?"),
            sev.as_deref().unwrap_or("?"),
            pyd.as_deref().unwrap_or("?"),
            if agree {
                "all three agree"
            } else {
                "NOT all available/equal"
            }
        ));
    }
    notes.push(
        "sev crate: 8.0.0 with default-features off and features [snp, crypto_nossl] (RustCrypto \
         sha2 0.10): no OpenSSL is built or linked; it reads the files itself, so it is compared \
         with kvm_coco_files (read + parse + plan + measure)"
            .to_owned(),
    );
    notes.push(format!(
        "raw_hash_floor: one core, SHA-384 over the firmware image and one 4 KiB page per vCPU, \
         SHA-256 over kernel and initrd, bytes in memory; launch_update region {mib} MiB"
    ));

    println!();
    println!(
        "cargo xtask bench{} — {} (time ratio = target time / baseline time; lower is faster)",
        if opts.quick { " --quick" } else { "" },
        fmt_ns(started.elapsed().as_nanos() as f64)
    );
    print!("{}", render(&rows));
    for n in notes {
        println!("- {n}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_are_read_from_criterion_layout() {
        let dir = std::env::temp_dir().join(format!("xtask-bench-test-{}", std::process::id()));
        let new = dir.join("grp").join("fn_a").join("new");
        std::fs::create_dir_all(&new).unwrap();
        std::fs::write(
            new.join("benchmark.json"),
            r#"{"group_id":"grp","function_id":"fn_a","value_str":null,"throughput":null,"full_id":"grp/fn_a","directory_name":"grp/fn_a","title":"grp/fn_a"}"#,
        )
        .unwrap();
        std::fs::write(
            new.join("estimates.json"),
            r#"{"mean":{"confidence_interval":{"confidence_level":0.95,"lower_bound":9.0,"upper_bound":11.0},"point_estimate":10.0,"standard_error":0.5},"median":{"confidence_interval":{"confidence_level":0.95,"lower_bound":9.0,"upper_bound":11.0},"point_estimate":9.5,"standard_error":0.5},"slope":null,"std_dev":{"confidence_interval":{"confidence_level":0.95,"lower_bound":0.1,"upper_bound":0.3},"point_estimate":0.2,"standard_error":0.05}}"#,
        )
        .unwrap();
        // A stale "base" directory must be ignored.
        let base = dir.join("grp").join("fn_b").join("base");
        std::fs::create_dir_all(&base).unwrap();
        std::fs::write(
            base.join("benchmark.json"),
            r#"{"group_id":"grp","function_id":"fn_b"}"#,
        )
        .unwrap();
        std::fs::write(
            base.join("estimates.json"),
            r#"{"mean":{"point_estimate":1.0}}"#,
        )
        .unwrap();
        let est = read_estimates(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(est.len(), 1);
        assert_eq!(est["grp/fn_a"].ns, 10.0);
    }

    #[test]
    fn pairs_targets_with_baselines_and_judges_goals() {
        let mut m = BTreeMap::new();
        for (id, ns) in [
            ("g/sha384_one_core", 100.0),
            ("g/launch_update_2m", 105.0),
            ("g/launch_update_4k", 200.0),
        ] {
            m.insert(
                id.to_owned(),
                Estimate {
                    id: id.to_owned(),
                    ns,
                },
            );
        }
        let rows = pair_rows("lu", &m, |_, _| Goal::AtMost(1.0 / 0.9, "<= 1.11"));
        assert_eq!(rows.len(), 2);
        let r2m = rows
            .iter()
            .find(|r| r.target.0 == "launch_update_2m")
            .unwrap();
        assert!((r2m.ratio().unwrap() - 1.05).abs() < 1e-9);
        assert_eq!(r2m.verdict(), "yes");
        let r4k = rows
            .iter()
            .find(|r| r.target.0 == "launch_update_4k")
            .unwrap();
        assert_eq!(r4k.verdict(), "NO");
        let table = render(&rows);
        assert_eq!(table.lines().count(), 4);
        assert!(table.contains("| 1.050 (+5.0 ns) "), "{table}");
    }

    #[test]
    fn missing_bench_is_a_row_not_a_figure() {
        let ran = Ran {
            estimates: BTreeMap::new(),
            error: Some(summarize_failure(
                "error: no bench target named `kvm` in `kvm-coco` package\n",
            )),
        };
        let rows = bench_rows(
            "kvm-coco vs kvm-ioctls",
            &ran,
            |_, _| Goal::Info("-"),
            Goal::AtMost(1.02, "<= 1.02"),
        );
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].ratio(), None);
        assert_eq!(rows[0].verdict(), "-");
        let m = rows[0].missing.as_deref().unwrap();
        assert!(m.starts_with("bench does not exist yet"), "{m}");
        assert!(render(&rows).contains("bench does not exist yet"));
    }
}
