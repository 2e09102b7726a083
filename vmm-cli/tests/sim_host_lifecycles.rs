//! 100 lifecycles of `vmm-cli sim-host` child processes: each serves a `vmm-cli launch` of
//! SEV, SEV-ES, SNP or TDX (under one of several fault plans) that is killed at a random
//! point or left to finish. Each `sim-host` exits with its program's status — 137 (128 +
//! SIGKILL) only where the test killed the program, 0 where the program printed its
//! measurement, 1 where it printed the launch error an injected fault causes — and leaves no
//! process, memfd or file behind.

use std::path::Path;
use std::process::{Command, Stdio};

#[path = "procs/mod.rs"]
mod procs;
use procs::{children, entries, exe, with_marker};
use std::time::{Duration, Instant};

/// The memfds the processes `pids` hold open.
fn memfds_of(pids: &[u32]) -> usize {
    pids.iter()
        .filter_map(|p| std::fs::read_dir(format!("/proc/{p}/fd")).ok())
        .flat_map(|d| d.flatten())
        .filter(|e| {
            std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().starts_with("/memfd:"))
        })
        .count()
}

/// Fault plans of the runs: none; transient answers the launcher rides out; firmware
/// failures it reports (exit status 1).
const PLANS: [(&str, bool); 3] = [
    ("", false),
    (
        "snp_launch_update:partial=1%30,init_mem_region:partial=1%30,init_vm:eagain%30,\
         finalize_vm:busy%30,capabilities:e2big%30",
        false,
    ),
    (
        "launch_update_data:fw=0x13%50,snp_launch_finish:fw=0xb%50,launch_start:busy%30,\
         init_mem_region:eagain",
        true,
    ),
];

#[test]
fn a_hundred_launches_killed_at_random_points_exit_with_the_programs_status_and_leave_nothing() {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = tmp.join("sim_host_lifecycles");
    let status_dir = tmp.join("sim_host_lifecycles_status");
    for d in [&dir, &status_dir] {
        let _ = std::fs::remove_dir_all(d);
        std::fs::create_dir_all(d).unwrap();
    }
    let shm_before = entries(Path::new("/dev/shm"));
    let mut rng: u64 = 0x1f3c_7c1e;
    let (mut killed, mut finished, mut failed) = (0, 0, 0);
    let started = Instant::now();
    for i in 0..100u32 {
        let tee = ["sev", "sev-es", "snp", "tdx"][(i % 4) as usize];
        let (faults, may_fail) = PLANS[(i / 4 % 3) as usize];
        let marker = format!("kvm-coco-lifecycle-test-{}-{i}", std::process::id());
        let out = status_dir.join(format!("{i}.out"));
        let err = status_dir.join(format!("{i}.err"));
        let mut cmd = Command::new(exe());
        cmd.current_dir(&dir)
            .args(["sim-host", "--seed", &i.to_string()]);
        if !faults.is_empty() {
            cmd.args(["--faults", faults]);
        }
        let mut sim = cmd
            .arg("--")
            .arg(exe())
            .args(["launch", "--backend", "kvm", "--tee", tee])
            .env("KVM_COCO_TEST_MARKER", &marker)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap();
        // The launch program, killed after 0 to ~150 ms, or (one run in five) left to
        // finish.
        let t0 = Instant::now();
        let launch = loop {
            if let Some(&p) = children(sim.id()).first() {
                break Some(p);
            }
            if sim.try_wait().unwrap().is_some() || t0.elapsed() > Duration::from_secs(10) {
                break None;
            }
            std::thread::sleep(Duration::from_micros(200));
        };
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let mut kill_sent = false;
        if !rng.is_multiple_of(5) {
            std::thread::sleep(Duration::from_micros(rng % 150_000));
            if let Some(p) = launch {
                kill_sent = Command::new("kill")
                    .args(["-9", &p.to_string()])
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
            }
        }
        let code = loop {
            if let Some(st) = sim.try_wait().unwrap() {
                break st.code();
            }
            if t0.elapsed() > Duration::from_secs(60) {
                let _ = sim.kill();
                panic!("run {i} ({tee}, faults {faults:?}) did not end within 60 s");
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        let stdout = std::fs::read_to_string(&out).unwrap();
        let stderr = std::fs::read_to_string(&err).unwrap();
        let what = format!("run {i} ({tee}, faults {faults:?}): exit {code:?}\n{stdout}{stderr}");
        match code {
            Some(137) => {
                assert!(kill_sent, "{what}: killed, but not by the test");
                killed += 1;
            }
            Some(0) => {
                assert!(
                    stdout.contains("measurement:"),
                    "{what}: no measurement printed"
                );
                finished += 1;
            }
            Some(1) => {
                assert!(
                    may_fail && stderr.contains("error: launch failed: "),
                    "{what}: status 1 without the launch error of an injected fault"
                );
                failed += 1;
            }
            _ => panic!("{what}: not the program's status"),
        }
        std::fs::remove_file(&out).unwrap();
        std::fs::remove_file(&err).unwrap();
        let left = with_marker(&marker);
        assert!(
            left.is_empty(),
            "run {i}: processes {left:?} survived, holding {} memfds",
            memfds_of(&left)
        );
        assert!(entries(&dir).is_empty(), "run {i} left {:?}", entries(&dir));
    }
    let shm_after = entries(Path::new("/dev/shm"));
    let new: Vec<_> = shm_after
        .iter()
        .filter(|e| !shm_before.contains(e))
        .collect();
    assert!(new.is_empty(), "/dev/shm entries left: {new:?}");
    eprintln!(
        "sim-host lifecycles: 100 runs in {:.1} s: {killed} killed, {finished} finished, \
         {failed} failed by injected firmware faults",
        started.elapsed().as_secs_f64()
    );
    assert!(
        killed >= 20,
        "only {killed} of 100 runs were killed mid-way"
    );
    assert!(finished >= 10, "only {finished} of 100 runs finished");
}
