//! Shared helpers of the measurement tests: the synthetic firmware images (from
//! `kvm_coco::measure::synthetic`, anchored by the facts' SYN64K SHA-256 and the committed
//! vectors' input hashes), one-off image recipes, side files, locating OVMF and
//! sev-snp-measure.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The workspace root (every crate of the workspace sits one level below it).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A UEFI GUID string in on-disk (`bytes_le`) form.
pub fn guid(s: &str) -> [u8; 16] {
    let h: Vec<u8> = hex::decode(s.replace('-', "")).unwrap();
    let mut g = [0u8; 16];
    g[..4].copy_from_slice(&[h[3], h[2], h[1], h[0]]);
    g[4..6].copy_from_slice(&[h[5], h[4]]);
    g[6..8].copy_from_slice(&[h[7], h[6]]);
    g[8..].copy_from_slice(&h[8..]);
    g
}

pub const G_FOOTER: &str = "96b582de-1fb2-45f7-baea-a366c55a082d";
pub const G_RESET: &str = "00f771de-1a7e-4fcb-890e-68c77e2fb44e";
pub const G_SEVMETA: &str = "dc886566-984a-4798-a75e-5585a7bf67cc";
pub const G_HASH: &str = "7255371f-3a3b-4b04-927b-1da6efa8d454";
pub const G_SECRET: &str = "4c2eb361-7d9b-4cc3-8081-127c90d3d294";
pub const G_TDX: &str = "e47a6535-984a-4798-865e-4685a7bf8ec2";
pub const G_TDVF: &str = "e9eaf9f3-168e-44d5-a8eb-7f4d8738f6ae";

/// A TDVF section: (DataOffset, RawSize, Addr, MemSize, Type, Attr).
pub type TdvfSec = (u32, u32, u64, u64, u32, u32);

pub use kvm_coco::measure::synthetic::{syn64k, syn128k, synnoasev, synnohash};

/// The TDX MRTD of SYN64K (SHA-384, hex): `python3 kvm-coco/tests/mrtd_ref.py syn64k.fd`
/// (the facts §5.1 PAGE.ADD / MR.EXTEND stream), run on SYN64K written by a separate script
/// from the facts §8.1 recipe (its sha256 `dac89349…36fb` and sha384 `1f19e7ae…7cfe` equal
/// the facts' values).
pub const SYN64K_MRTD: &str = "dfb85dc63e40eab239d42d76516df3f7f7aa1489f6808288ab749ff89ba9db3d965d8e5924fc07bb3e30360ad5583d24";

/// A synthetic image recipe in tuple form, for the tests' malformed and one-off layouts;
/// [`Syn::build`] hands it to [`kvm_coco::measure::synthetic::SyntheticImage`].
pub struct Syn {
    pub size: usize,
    pub pattern: fn(usize) -> u8,
    pub tdvf: Option<Vec<TdvfSec>>,
    pub asev: Option<Vec<(u32, u32, u32)>>,
    pub hash: Option<(u32, u32)>,
    pub secret: Option<(u32, u32)>,
    pub reset: Option<u32>,
}

impl Syn {
    pub fn build(&self) -> Vec<u8> {
        use kvm_coco::measure::synthetic::{
            SyntheticImage, SyntheticSevSection, SyntheticTdvfSection,
        };
        SyntheticImage {
            size: self.size,
            pattern: self.pattern,
            tdvf: self.tdvf.as_ref().map(|v| {
                v.iter()
                    .map(|&(o, r, a, m, t, at)| SyntheticTdvfSection {
                        data_offset: o,
                        raw_size: r,
                        memory_address: a,
                        memory_data_size: m,
                        section_type: t,
                        attributes: at,
                    })
                    .collect()
            }),
            sev_metadata: self.asev.as_ref().map(|v| {
                v.iter()
                    .map(|&(gpa, size, t)| SyntheticSevSection {
                        gpa,
                        size,
                        section_type: t,
                    })
                    .collect()
            }),
            hash_table: self.hash,
            secret_block: self.secret,
            reset_eip: self.reset,
        }
        .build()
        .unwrap()
    }
}

/// The synthetic images, by the file names the vectors use.
pub fn synthetic_images() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("syn64k.fd", syn64k()),
        ("syn128k.fd", syn128k()),
        ("synnohash.fd", synnohash()),
        ("synnoasev.fd", synnoasev()),
    ]
}

/// The side files (kernel.bin, initrd.bin per facts §8.1, plus more).
pub fn side_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "kernel.bin",
            (0..10000u32).map(|i| ((13 * i + 5) % 256) as u8).collect(),
        ),
        ("initrd.bin", vec![0xAB; 3000]),
        (
            "kernel2.bin",
            (0..70001u32).map(|i| ((31 * i + 7) % 253) as u8).collect(),
        ),
        ("initrd-empty.bin", Vec::new()),
    ]
}

/// An integer argument as sev-snp-measure reads it: `0x…` hexadecimal, otherwise decimal.
pub fn int0(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

pub fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// SHA-256 of Debian bookworm's `ovmf` 2022.11-6+deb12u2 `/usr/share/ovmf/OVMF.fd` (facts §4.4).
pub const DEBIAN_OVMF_SHA256: &str =
    "7b456907dd0786d415999e801a1ac4637b8ed4d7cf5378cfc6edbe5e574dd773";

/// Debian's OVMF.fd from `$KVM_COCO_OVMF` or `/usr/share/ovmf/OVMF.fd`, if present with the
/// expected SHA-256; otherwise reports a skip (`kvm_coco_test_skip::skip`: fails where the
/// oracles are required) and returns `None`.
pub fn debian_ovmf() -> Option<(PathBuf, Vec<u8>)> {
    let path = std::env::var_os("KVM_COCO_OVMF")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/share/ovmf/OVMF.fd"));
    match std::fs::read(&path) {
        Ok(b) if sha256_hex(&b) == DEBIAN_OVMF_SHA256 => Some((path, b)),
        Ok(b) => {
            kvm_coco_test_skip::skip(
                "OVMF",
                format_args!(
                    "{} has sha256 {}, vectors were made with {DEBIAN_OVMF_SHA256} \
                     (Debian ovmf 2022.11-6+deb12u2); set KVM_COCO_OVMF",
                    path.display(),
                    sha256_hex(&b)
                ),
            );
            None
        }
        Err(e) => {
            kvm_coco_test_skip::skip(
                "OVMF",
                format_args!(
                    "cannot read {}: {e}; install Debian's `ovmf` or set KVM_COCO_OVMF",
                    path.display()
                ),
            );
            None
        }
    }
}

/// The sev-snp-measure executable: `$SEV_SNP_MEASURE`, `<workspace>/.venv/bin/sev-snp-measure`,
/// or `sev-snp-measure` on PATH, if it runs; otherwise reports a skip of the live comparison
/// (`kvm_coco_test_skip::skip`: fails where the oracles are required) and returns `None`.
pub fn ssm_tool() -> Option<PathBuf> {
    let ws = workspace();
    let candidates = [
        std::env::var_os("SEV_SNP_MEASURE").map(PathBuf::from),
        Some(ws.join(".venv/bin/sev-snp-measure")),
        Some(PathBuf::from("sev-snp-measure")),
    ];
    for c in candidates.into_iter().flatten() {
        if std::process::Command::new(&c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Some(c);
        }
    }
    kvm_coco_test_skip::skip(
        "sev-snp-measure",
        "not found (set SEV_SNP_MEASURE or install sev-snp-measure 0.0.13 into .venv, as \
         .ci/run does); the committed vectors are still compared, the live comparison is not",
    );
    None
}

/// Writes all inputs the vectors refer to into `dir` (and links OVMF.fd if available).
pub fn write_inputs(dir: &Path) -> bool {
    std::fs::create_dir_all(dir).unwrap();
    for (n, b) in synthetic_images().into_iter().chain(side_files()) {
        std::fs::write(dir.join(n), b).unwrap();
    }
    match debian_ovmf() {
        Some((_, b)) => {
            std::fs::write(dir.join("OVMF.fd"), b).unwrap();
            true
        }
        None => false,
    }
}

/// A scratch directory under the target dir.
pub fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// One committed sev-snp-measure vector.
#[derive(Debug, serde::Deserialize)]
pub struct Case {
    pub args: Vec<String>,
    pub status: i32,
    pub stdout: String,
}

/// The committed vector file.
#[derive(Debug, serde::Deserialize)]
pub struct Vectors {
    pub tool: String,
    pub files: std::collections::BTreeMap<String, String>,
    pub cases: Vec<Case>,
}

pub fn load_vectors() -> Vectors {
    let p = workspace().join("kvm-coco/tests/vectors/sev-snp-measure.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// The standard output (trimmed) of the committed sev-snp-measure case whose arguments are
/// exactly `args`, in order; panics when no such case was committed.
pub fn ssm_output(args: &[&str]) -> String {
    load_vectors()
        .cases
        .into_iter()
        .find(|c| c.args.iter().map(String::as_str).eq(args.iter().copied()))
        .unwrap_or_else(|| panic!("no committed sev-snp-measure vector for {args:?}"))
        .stdout
        .trim()
        .to_owned()
}

/// The offline measurement of `plan`, with its launch log.
pub fn offline(plan: &kvm_coco::measure::LaunchPlan<'_>) -> kvm_coco::measure::Measurement {
    kvm_coco::measure::measure(
        plan,
        &kvm_coco::measure::MeasureOptions {
            log: true,
            progress: None,
        },
    )
    .unwrap()
}

/// Plan inputs for an SEV-ES / SNP guest of `vcpus` vCPUs of the named QEMU CPU model.
pub fn amd_inputs<'a>(
    fw: &'a kvm_coco::measure::FirmwareImage<'a>,
    vcpus: u32,
    vcpu_type: &str,
) -> kvm_coco::measure::plan::PlanInputs<'a> {
    kvm_coco::measure::plan::PlanInputs {
        vcpus,
        vcpu_sig: kvm_coco::measure::vcpu::cpu_type_sig(vcpu_type),
        ..kvm_coco::measure::plan::PlanInputs::new(fw)
    }
}

/// A finished SNP launch of `plan` through [`KvmBackend`](kvm_coco::launch::KvmBackend) into
/// a 4 GiB guest with four vCPUs: 3 GiB of RAM below the PCI hole, the `fw_len`-byte flash
/// ending at 4 GiB, 1 GiB of RAM above 4 GiB. The calling thread must be served by a
/// [`SoftwareHost`](kvm_coco::sim::host::SoftwareHost) (or run on SNP hardware).
pub fn snp_4gib_launch(
    plan: &kvm_coco::measure::LaunchPlan<'_>,
    fw_len: u64,
) -> kvm_coco::launch::Launch<kvm_coco::launch::Finished, kvm_coco::launch::KvmBackend> {
    use kvm_coco::launch::{InitParams, KvmBackend, Launch, SnpInit};
    const GIB: u64 = 1 << 30;
    let kvm = kvm_coco::Kvm::open().unwrap();
    let backend = KvmBackend::new(&kvm, kvm_coco::VmType::Snp).unwrap();
    let mut launch = Launch::new(backend, InitParams::Snp(SnpInit::default())).unwrap();
    launch.add_memory(0, 3 * GIB).unwrap();
    launch.add_memory(4 * GIB - fw_len, fw_len).unwrap();
    launch.add_memory(4 * GIB, GIB).unwrap();
    for id in 0..4 {
        launch.create_vcpu(id).unwrap();
    }
    let mut launch = launch.start().unwrap();
    launch.add_plan(plan).unwrap();
    launch.measure().unwrap().finish().unwrap()
}

/// The attestation report the SNP guest behind `vcpu` obtains for `report_data` (a guest
/// program: one report request without a certificate buffer, then termination), checked
/// against the host's ARK/ASK/VCEK chain. The launch must not have enabled certificate
/// requests (the request then completes without an exit).
pub fn guest_snp_report(
    host: &kvm_coco::sim::host::SoftwareHost,
    vcpu: &mut kvm_coco::Vcpu,
    report_data: [u8; 64],
) -> psp_driver::report::AttestationReport {
    use kvm_coco::sim::guest::{GuestOp, GuestOutcome};
    use kvm_coco::{Exit, SystemEvent};
    use zerocopy::FromBytes;
    host.load_program(
        &*vcpu,
        [
            GuestOp::SnpReport {
                report_data,
                certs_gpa: 0,
                npages: 0,
            },
            GuestOp::Terminate { code: 0 },
        ],
    )
    .unwrap();
    match vcpu.run().unwrap() {
        Exit::SystemEvent(SystemEvent::SevTerm { .. }) => {}
        other => panic!("unexpected exit {other:?}"),
    }
    let outcomes = host.outcomes(&*vcpu).unwrap();
    let bytes = outcomes
        .iter()
        .find_map(|o| match o {
            GuestOutcome::SnpReport {
                report: Some(r), ..
            } => Some(r.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("the guest obtained no report: {outcomes:?}"));
    let report = psp_driver::report::AttestationReport::read_from_bytes(&bytes).unwrap();
    let chain = host.sev_host().unwrap().firmware().certs().snp;
    let ark = chain.ark.public_key().unwrap();
    psp_driver::owner::snp::verify_report(&report, &chain, Some(&ark)).unwrap();
    assert_eq!(report.report_data, report_data);
    report
}

/// The TDREPORT the TD behind `vcpu` obtains for `report_data` (a guest program: share two
/// pages at `shared_gpa`, GetQuote there, terminate; the VMM converts the pages and answers
/// the GetQuote), its MAC checked by the host's TDX module.
pub fn guest_td_report<B: kvm_coco::launch::Backend>(
    host: &kvm_coco::sim::host::SoftwareHost,
    backend: &mut B,
    vcpu: &mut kvm_coco::Vcpu,
    shared_gpa: u64,
    report_data: [u8; 64],
) -> kvm_coco::sim::tdx::TdReport {
    use kvm_coco::sim::guest::{GuestOp, GuestOutcome};
    use kvm_coco::{Access, Exit, MapGpaReply, SystemEvent, TdVmCallStatus, TdxExit};
    use zerocopy::FromBytes;
    host.load_program(
        &*vcpu,
        [
            GuestOp::MapGpa {
                gpa: shared_gpa,
                npages: 2,
                private: false,
            },
            GuestOp::GetQuote {
                gpa: shared_gpa,
                size: 0x2000,
                report_data,
            },
            GuestOp::Terminate { code: 0 },
        ],
    )
    .unwrap();
    for _ in 0..8 {
        match vcpu.run().unwrap() {
            Exit::MapGpaRange(mut m) => {
                backend
                    .set_private(m.gpa, m.size(), m.access() == Access::Private)
                    .unwrap();
                m.reply(MapGpaReply::Success);
            }
            Exit::Tdx(TdxExit::GetQuote(mut q)) => q.reply(TdVmCallStatus::Success),
            Exit::SystemEvent(SystemEvent::TdxFatal { .. }) => break,
            other => panic!("unexpected exit {other:?}"),
        }
    }
    let outcomes = host.outcomes(&*vcpu).unwrap();
    let report = outcomes
        .iter()
        .find_map(|o| match o {
            GuestOutcome::TdReport(r) => {
                Some(kvm_coco::sim::tdx::TdReport::read_from_bytes(r).unwrap())
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("the TD obtained no TDREPORT: {outcomes:?}"));
    host.tdx_module()
        .lock()
        .unwrap()
        .verify_report(&report)
        .unwrap();
    assert_eq!(report.report_mac.report_data, report_data);
    report
}

/// What this process holds: open fds, memfds among them, memfd mappings, threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessCounts {
    /// Open file descriptors.
    pub fds: usize,
    /// Those that are memfds.
    pub memfds: usize,
    /// Mappings of memfds.
    pub memfd_maps: usize,
    /// Threads.
    pub threads: usize,
}

/// The number in the `name` line of `/proc/self/status` (a `kB` unit dropped).
pub fn status_field(name: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .unwrap()
        .trim()
        .trim_end_matches(" kB")
        .parse()
        .unwrap()
}

/// This process's [`ProcessCounts`] now, from `/proc/self`.
pub fn process_counts() -> ProcessCounts {
    let mut fds = 0;
    let mut memfds = 0;
    for e in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        fds += 1;
        if std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().starts_with("/memfd:")) {
            memfds += 1;
        }
    }
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let memfd_maps = maps.lines().filter(|l| l.contains("/memfd:")).count();
    ProcessCounts {
        fds,
        memfds,
        memfd_maps,
        threads: status_field("Threads:") as usize,
    }
}
