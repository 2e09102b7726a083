//! `cargo xtask fuzz <smoke|run> [TARGET…] [--secs N]`: the coverage-guided fuzz targets
//! under `fuzz/` (cargo-fuzz, libFuzzer).
//!
//! - `smoke`: every target for `--secs` seconds (default 10) from its committed seed
//!   corpus: what CI runs.
//! - `run`: the named targets (all without names) for `--secs` seconds each (default 600).
//!
//! Each target starts from `fuzz/corpus/<target>` (read only: new inputs go to a scratch
//! corpus under `target/fuzz-corpus/<target>`) and its result — runs, coverage (libFuzzer's
//! `cov:` edge count and `ft:` features), corpus size, crashes — is printed as one table row
//! and appended to `target/fuzz-report.txt`. A crash fails the command; libFuzzer leaves the
//! input under `fuzz/artifacts/<target>/`, to be turned into a regression test.
//!
//! Needs a nightly toolchain (`rustup toolchain install nightly`) and `cargo-fuzz`
//! (`cargo install cargo-fuzz`).

use std::io::Write;
use std::process::Command;

/// Targets that serve their own thread with the software host. LeakSanitizer is off for
/// them: its exit-time check stops every thread from a helper that inherits the seccomp
/// filter, so the helper's own system calls would wait on the stopped supervisor. (The host
/// they start lives for the whole process, by design.)
const HOST_TARGETS: [&str; 2] = ["id_block", "host_ioctl"];

/// One finished run of a target.
struct Outcome {
    target: String,
    secs: u64,
    runs: Option<u64>,
    cov: Option<u64>,
    ft: Option<u64>,
    corpus: Option<u64>,
    crashed: bool,
}

pub fn run(args: &[String]) -> Result<(), String> {
    let usage = "usage: cargo xtask fuzz <smoke|run> [TARGET...] [--secs N]";
    let (mode, rest) = args.split_first().ok_or(usage)?;
    let mut secs = match mode.as_str() {
        "smoke" => 10,
        "run" => 600,
        _ => return Err(usage.into()),
    };
    let mut names = Vec::new();
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        if a == "--secs" {
            secs = it
                .next()
                .and_then(|v| v.parse().ok())
                .filter(|&s| s > 0)
                .ok_or("--secs needs a positive number of seconds")?;
        } else if a.starts_with('-') {
            return Err(format!("unknown option {a}\n{usage}"));
        } else {
            names.push(a.clone());
        }
    }
    let all = targets()?;
    if names.is_empty() {
        names = all.clone();
    }
    if let Some(bad) = names.iter().find(|n| !all.contains(n)) {
        return Err(format!(
            "no fuzz target {bad}; the targets are: {}",
            all.join(", ")
        ));
    }
    let root = super::workspace_root();
    super::step(
        "fuzz build",
        "cargo",
        &["+nightly", "fuzz", "build", "-O"],
        &[],
    )?;
    let mut outcomes = Vec::new();
    for t in &names {
        outcomes.push(run_one(&root, t, secs)?);
    }
    let mut table =
        String::from("target          secs        runs   cov     ft   corpus  crashes\n");
    for o in &outcomes {
        let n = |v: Option<u64>| v.map_or_else(|| "?".to_owned(), |v| v.to_string());
        table.push_str(&format!(
            "{:<14} {:>5} {:>11} {:>5} {:>6} {:>8} {:>8}\n",
            o.target,
            o.secs,
            n(o.runs),
            n(o.cov),
            n(o.ft),
            n(o.corpus),
            u8::from(o.crashed)
        ));
    }
    eprint!("{table}");
    let report = root.join("target/fuzz-report.txt");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&report)
    {
        let _ = writeln!(f, "{mode} --secs {secs}\n{table}");
    }
    let crashed: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.crashed)
        .map(|o| o.target.as_str())
        .collect();
    if crashed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "fuzz targets crashed: {} (inputs under fuzz/artifacts/)",
            crashed.join(", ")
        ))
    }
}

/// The target names: the `[[bin]]` names of `fuzz/Cargo.toml`.
fn targets() -> Result<Vec<String>, String> {
    let path = super::workspace_root().join("fuzz/Cargo.toml");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut out = Vec::new();
    let mut in_bin = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if in_bin && let Some(v) = line.strip_prefix("name = ") {
            out.push(v.trim_matches('"').to_owned());
        }
    }
    if out.is_empty() {
        return Err(format!("{} declares no fuzz target", path.display()));
    }
    Ok(out)
}

fn run_one(root: &std::path::Path, target: &str, secs: u64) -> Result<Outcome, String> {
    let scratch = root.join("target/fuzz-corpus").join(target);
    std::fs::create_dir_all(&scratch)
        .map_err(|e| format!("cannot create {}: {e}", scratch.display()))?;
    let seeds = root.join("fuzz/corpus").join(target);
    let time = format!("-max_total_time={secs}");
    eprintln!("==> fuzz {target} for {secs} s");
    let out = Command::new("cargo")
        .args(["+nightly", "fuzz", "run", "-O", target])
        .arg(&scratch)
        .arg(&seeds)
        .args(["--", &time, "-rss_limit_mb=4096", "-timeout=30"])
        .args(HOST_TARGETS.contains(&target).then_some("-detect_leaks=0"))
        // A fallible allocation must get its null back (the code under test turns it into
        // an error) instead of AddressSanitizer aborting on the size.
        .env(
            "ASAN_OPTIONS",
            if HOST_TARGETS.contains(&target) {
                "allocator_may_return_null=1:detect_leaks=0"
            } else {
                "allocator_may_return_null=1"
            },
        )
        .current_dir(root)
        .output()
        .map_err(|e| format!("cannot start cargo fuzz: {e}"))?;
    let log = String::from_utf8_lossy(&out.stderr);
    let log_path = root.join("target/fuzz-logs").join(format!("{target}.log"));
    if let Some(d) = log_path.parent() {
        let _ = std::fs::create_dir_all(d);
    }
    let _ = std::fs::write(&log_path, log.as_bytes());
    let last_stats = log
        .lines()
        .rev()
        .find(|l| l.starts_with('#') && l.contains("cov:"));
    let field = |name: &str| -> Option<u64> {
        let l = last_stats?;
        let mut words = l.split_whitespace();
        words.find(|w| *w == name)?;
        words.next()?.split('/').next()?.parse().ok()
    };
    let runs = log
        .lines()
        .rev()
        .find_map(|l| {
            l.strip_prefix("Done ")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .or_else(|| {
            last_stats?
                .split_whitespace()
                .next()?
                .trim_start_matches('#')
                .parse()
                .ok()
        });
    let crashed = !out.status.success();
    if crashed {
        // libFuzzer's report: from the sanitizer's or the panic's first line on.
        let start = log
            .lines()
            .position(|l| {
                l.contains("ERROR:") || l.contains("panicked") || l.contains("deadly signal")
            })
            .unwrap_or(0);
        for l in log.lines().skip(start).take(60) {
            eprintln!("{l}");
        }
        eprintln!("(the whole log: {})", log_path.display());
    }
    Ok(Outcome {
        target: target.to_owned(),
        secs,
        runs,
        cov: field("cov:"),
        ft: field("ft:"),
        corpus: field("corp:"),
        crashed,
    })
}
