//! QEMU as an independent client of the software host: Debian's QEMU (>= 10.0, with
//! `sev-snp-guest`) launches an SNP guest with Debian's OVMF, unmodified, through its own
//! `/dev/kvm` and `/dev/sev` system calls. The stand-in guest asks for its attestation report;
//! the measurement in that report must equal sev-snp-measure's (`--vmm-type QEMU`) for the
//! same OVMF, vCPU count and type, and the report must verify against the simulated
//! ARK/ASK/VCEK chain.
//!
//! Needs `qemu-system-x86_64` (`$KVM_COCO_QEMU` or PATH), Debian's OVMF and sev-snp-measure;
//! `.ci/run` installs all three. Where one is missing the test reports a skip naming it
//! (`kvm_coco_test_skip`), or fails where the oracles are required (`CI` or
//! `KVM_COCO_REQUIRE_ORACLES` set).

#[path = "measure_common/mod.rs"]
mod measure_common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kvm_coco::VmType;
use kvm_coco::sim::host::{FaultPlan, SoftwareHost};
use psp_driver::owner::snp::verify_report;
use psp_driver::report::AttestationReport;
use zerocopy::FromBytes;

/// Reports the missing dependency (`kvm_coco_test_skip::skip`: a visible skip, or a failure
/// where the oracles are required, as in CI).
fn missing(what: &str) {
    kvm_coco_test_skip::skip("QEMU", what);
}

fn qemu() -> Option<PathBuf> {
    let q = std::env::var_os("KVM_COCO_QEMU")
        .map_or_else(|| PathBuf::from("qemu-system-x86_64"), PathBuf::from);
    let out = Command::new(&q).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // "QEMU emulator version 10.0.2 (...)"
    let major: u32 = text
        .split("version ")
        .nth(1)?
        .split('.')
        .next()?
        .parse()
        .ok()?;
    (major >= 10).then_some(q)
}

fn ssm(ovmf: &Path, vcpus: u32) -> Option<String> {
    let tool = measure_common::ssm_tool()?;
    let out = Command::new(tool)
        .args([
            "--mode",
            "snp",
            "--vmm-type",
            "QEMU",
            "--vcpu-type",
            "EPYC-v4",
        ])
        .args(["--vcpus", &vcpus.to_string()])
        .arg("--ovmf")
        .arg(ovmf)
        .output()
        .ok()?;
    assert!(out.status.success(), "sev-snp-measure failed: {out:?}");
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Waits at most 120 s for QEMU (killed then, with the trace's path in the panic) and
/// returns its status and standard error.
fn wait_for(mut child: std::process::Child, trace: &Path) -> (std::process::ExitStatus, String) {
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "QEMU did not exit within 120 s; trace in {}",
                trace.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut stderr);
    }
    (status, stderr)
}

struct Run {
    status: std::process::ExitStatus,
    reports: Vec<Vec<u8>>,
    host: SoftwareHost,
    trace: PathBuf,
    stderr: String,
}

fn run_qemu(qemu: &Path, ovmf: &Path, vcpus: u32, faults: FaultPlan, tag: &str) -> Run {
    let dir = measure_common::scratch(&format!("host_qemu_{tag}"));
    let trace = dir.join("trace.jsonl");
    let host = SoftwareHost::builder()
        .serve([VmType::Snp])
        .seed(0)
        .faults(faults)
        .trace(&trace)
        .default_guest_program(true)
        .start()
        .unwrap();
    let mut cmd = Command::new(qemu);
    cmd.args([
        "-machine",
        "q35,confidential-guest-support=sev0,memory-backend=ram1",
        "-object",
        "memory-backend-memfd,id=ram1,size=512M,share=true",
        // The C-bit check compares with the host's CPUID, which has none here.
        "-object",
        "sev-snp-guest,id=sev0,cbitpos=0,reduced-phys-bits=1",
        "-nographic",
        "-accel",
        "kvm",
        "-cpu",
        "EPYC-v4",
        "-nodefaults",
        "-serial",
        "none",
        "-monitor",
        "none",
    ])
    .arg("-smp")
    .arg(vcpus.to_string())
    .arg("-bios")
    .arg(ovmf)
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    let child = host.spawn(&mut cmd).unwrap();
    let (status, stderr) = wait_for(child, &trace);
    Run {
        status,
        reports: host.reports(),
        host,
        trace,
        stderr,
    }
}

fn check_snp(vcpus: u32) {
    let Some(qemu) = qemu() else {
        return missing("qemu-system-x86_64 >= 10.0 not found (Debian bookworm-backports)");
    };
    // Both report their own skip.
    let Some((ovmf, _)) = measure_common::debian_ovmf() else {
        return;
    };
    let Some(expected) = ssm(&ovmf, vcpus) else {
        return;
    };
    let run = run_qemu(
        &qemu,
        &ovmf,
        vcpus,
        FaultPlan::none(),
        &format!("snp{vcpus}"),
    );
    assert!(
        run.status.success(),
        "QEMU exited with {:?}: {}",
        run.status,
        run.stderr
    );
    let report = run.reports.last().expect("the guest obtained a report");
    let report = AttestationReport::read_from_bytes(report).unwrap();
    let chain = run.host.sev_host().unwrap().firmware().certs().snp;
    let ark = chain.ark.public_key().unwrap();
    verify_report(&report, &chain, Some(&ark)).unwrap();
    assert_eq!(
        hex::encode(report.measurement),
        expected,
        "the measurement in the guest's report vs sev-snp-measure --vmm-type QEMU ({vcpus} vCPUs)"
    );
    // The trace: one JSON object per line, the launch commands in it.
    let text = std::fs::read_to_string(&run.trace).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let sub = |name: &str| lines.iter().filter(|l| l["subcommand"] == name).count();
    assert!(sub("KVM_SEV_SNP_LAUNCH_START") == 1, "{text}");
    assert!(sub("KVM_SEV_SNP_LAUNCH_UPDATE") >= 2);
    assert_eq!(sub("KVM_SEV_SNP_LAUNCH_FINISH"), 1);
}

#[test]
fn qemu_snp_one_vcpu_report_carries_sev_snp_measures_digest() {
    check_snp(1);
}

#[test]
fn qemu_snp_four_vcpus_report_carries_sev_snp_measures_digest() {
    check_snp(4);
}

/// QEMU 11.1 (the first with `tdx-guest`), from a Debian trixie tree made by `.ci/run`
/// (`target/trixie-qemu/root`, or `$KVM_COCO_QEMU_TDX_ROOT`), run with that tree's own
/// dynamic loader and libraries.
fn qemu_tdx_tree() -> Option<PathBuf> {
    let root = std::env::var_os("KVM_COCO_QEMU_TDX_ROOT").map_or_else(
        || measure_common::workspace().join("target/trixie-qemu/root"),
        PathBuf::from,
    );
    root.join("usr/bin/qemu-system-x86_64")
        .exists()
        .then_some(root)
}

#[test]
fn qemu_tdx_tdreport_carries_the_independent_mrtd() {
    let Some(root) = qemu_tdx_tree() else {
        return missing("no QEMU 11.1 tree at target/trixie-qemu/root (.ci/run makes it)");
    };
    // Reports its own skip.
    let Some((ovmf, img)) = measure_common::debian_ovmf() else {
        return;
    };
    // The independent MRTD calculation (facts §5.1), a separate Python implementation.
    let out = Command::new("python3")
        .arg(measure_common::workspace().join("kvm-coco/tests/mrtd_ref.py"))
        .arg(&ovmf)
        .output()
        .unwrap();
    assert!(out.status.success(), "mrtd_ref.py: {out:?}");
    let expected = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(expected.len(), 96, "{expected}");
    drop(img);

    let dir = measure_common::scratch("host_qemu_tdx");
    let trace = dir.join("trace.jsonl");
    let host = SoftwareHost::builder()
        .serve([VmType::Tdx])
        .trace(&trace)
        .default_guest_program(true)
        .start()
        .unwrap();
    let libs = format!(
        "{0}/lib/x86_64-linux-gnu:{0}/usr/lib/x86_64-linux-gnu",
        root.display()
    );
    let mut cmd = Command::new(root.join("lib64/ld-linux-x86-64.so.2"));
    cmd.arg("--library-path")
        .arg(libs)
        .arg(root.join("usr/bin/qemu-system-x86_64"))
        .arg("-L")
        .arg(root.join("usr/share/qemu"))
        .arg("-L")
        .arg(root.join("usr/share/seabios"))
        .args([
            "-machine",
            "q35,kernel-irqchip=split,confidential-guest-support=tdx0",
            "-object",
            "tdx-guest,id=tdx0",
            "-nographic",
            "-accel",
            "kvm",
            "-cpu",
            "host",
            "-smp",
            "1",
            "-m",
            "512M",
            "-nodefaults",
            "-serial",
            "none",
            "-monitor",
            "none",
        ])
        .arg("-bios")
        .arg(&ovmf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let child = host.spawn(&mut cmd).unwrap();
    let (status, stderr) = wait_for(child, &trace);
    assert!(status.success(), "QEMU exited with {status:?}: {stderr}");
    let reports = host.reports();
    let report = reports.last().expect("the TD obtained a TDREPORT");
    let report = kvm_coco::sim::tdx::TdReport::read_from_bytes(report).unwrap();
    host.tdx_module()
        .lock()
        .unwrap()
        .verify_report(&report)
        .unwrap();
    assert_eq!(
        hex::encode(report.td_info.mrtd),
        expected,
        "the TD's own MRTD vs mrtd_ref.py for the same OVMF"
    );
}
