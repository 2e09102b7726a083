//! Detection and skip logic, table and JSON shape; no hardware needed.

use super::*;

/// A `/proc/cpuinfo` excerpt of this project's CI machine kind (facts
/// kvm-on-this-machine-kind: a guest without svm/vmx, kvm + kvm_pvm loaded).
const CPUINFO_GUEST: &str = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\n\
model name\t: AMD EPYC\nflags\t\t: fpu vme sse2 hypervisor sha_ni avx2\n\nprocessor\t: 1\n\
vendor_id\t: GenuineIntel\nflags\t\t: svm\n";

fn ci_machine() -> Host {
    Host {
        cpu: Cpu::parse(CPUINFO_GUEST),
        kvm_modules: vec!["kvm".into(), "kvm_pvm".into()],
        kvm_params: BTreeMap::from([("kvm.tdp_mmu".to_owned(), "N".to_owned())]),
        kvm: KvmHost::Available {
            api_version: 12,
            vm_types_bits: 1,
            vm_types: vec!["default".into()],
            tdx: Err("VM type `tdx` is not supported by this host (supported: default)".into()),
        },
        sev: SevHost::Unavailable {
            reason: "AMD SEV is not available on this host: /dev/sev does not exist (is kvm_amd loaded with sev=1?)"
                .into(),
        },
    }
}

fn snp_host() -> Host {
    Host {
        cpu: Cpu {
            vendor: "AuthenticAMD".into(),
            model_name: "AMD EPYC 9654 96-Core Processor".into(),
            family_model: Some((25, 17)),
            flags: vec![
                "svm".into(),
                "sev".into(),
                "sev_es".into(),
                "sev_snp".into(),
                "sme".into(),
            ],
        },
        kvm_modules: vec!["kvm".into(), "kvm_amd".into()],
        kvm_params: BTreeMap::from([
            ("kvm_amd.sev".to_owned(), "Y".to_owned()),
            ("kvm_amd.sev_es".to_owned(), "Y".to_owned()),
            ("kvm_amd.sev_snp".to_owned(), "Y".to_owned()),
        ]),
        kvm: KvmHost::Available {
            api_version: 12,
            // default (0), sev (2), sev-es (3), snp (4).
            vm_types_bits: 0b1_1101,
            vm_types: vec![
                "default".into(),
                "sev".into(),
                "sev-es".into(),
                "snp".into(),
            ],
            tdx: Err("VM type `tdx` is not supported".into()),
        },
        sev: SevHost::Present {
            platform_status: Ok("API 1.55 build 21, state 1, 0 guests".into()),
            snp_platform_status: Ok("API 1.55 build 21, state 1".into()),
        },
    }
}

fn tdx_host() -> Host {
    Host {
        cpu: Cpu {
            vendor: "GenuineIntel".into(),
            model_name: "Intel(R) Xeon(R) Platinum 8580".into(),
            family_model: Some((6, 207)),
            flags: vec!["vmx".into(), "tdx_host_platform".into()],
        },
        kvm_modules: vec!["kvm".into(), "kvm_intel".into()],
        kvm_params: BTreeMap::from([("kvm_intel.tdx".to_owned(), "Y".to_owned())]),
        kvm: KvmHost::Available {
            api_version: 12,
            vm_types_bits: 1 | 1 << 5,
            vm_types: vec!["default".into(), "tdx".into()],
            tdx: Ok("supported_attrs=0x50000000 supported_xfam=0x6db 2 configurable CPUID leaves".into()),
        },
        sev: SevHost::Unavailable {
            reason: "AMD SEV is not available on this host: /dev/sev does not exist (is kvm_amd loaded with sev=1?)"
                .into(),
        },
    }
}

fn decision<'a>(plan: &'a [Planned], name: &str) -> &'a Decision {
    &plan
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no tier {name}"))
        .decision
}

fn skip_reason<'a>(plan: &'a [Planned], name: &str) -> &'a str {
    match decision(plan, name) {
        Decision::Skip(r) => r,
        other => panic!("{name}: expected a skip, got {other:?}"),
    }
}

#[test]
fn cpuinfo_parse_reads_the_first_processor_only() {
    let cpu = Cpu::parse(CPUINFO_GUEST);
    assert_eq!(cpu.vendor, "AuthenticAMD");
    assert_eq!(cpu.model_name, "AMD EPYC");
    // sha_ni/avx2 are not relevant; svm belongs to the second block and must not leak in.
    assert_eq!(cpu.flags, vec!["hypervisor".to_owned()]);
    assert!(cpu.is_amd() && !cpu.is_intel());
    // The first block has a family but no model.
    assert_eq!(cpu.family_model, None);
    // Family and model are decimal; the second processor's values do not leak in.
    let milan = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\n\
                 model name\t: AMD EPYC 7763\n\nprocessor\t: 1\nvendor_id\t: AuthenticAMD\n\
                 cpu family\t: 26\nmodel\t\t: 2\n";
    assert_eq!(Cpu::parse(milan).family_model, Some((25, 1)));
}

#[test]
fn options_parse() {
    let o = Options::parse(&["--json".into(), "--dangerous".into()]).unwrap();
    assert!(o.json && o.dangerous);
    assert_eq!(o.firmware, None);
    let o = Options::parse(&["--firmware".into(), "/x/OVMF.fd".into()]).unwrap();
    assert_eq!(
        o.firmware.as_deref(),
        Some(std::path::Path::new("/x/OVMF.fd"))
    );
    let o = Options::parse(&["--firmware=/y.fd".into()]).unwrap();
    assert_eq!(o.firmware.as_deref(), Some(std::path::Path::new("/y.fd")));
    assert!(
        Options::parse(&["--firmware".into()])
            .unwrap_err()
            .contains("needs a path")
    );
    let o = Options::parse(&["--vcek".into(), "/v/vcek.der".into()]).unwrap();
    assert_eq!(o.vcek.as_deref(), Some(std::path::Path::new("/v/vcek.der")));
    let o = Options::parse(&["--vcek=/w.pem".into()]).unwrap();
    assert_eq!(o.vcek.as_deref(), Some(std::path::Path::new("/w.pem")));
    assert!(
        Options::parse(&["--vcek".into()])
            .unwrap_err()
            .contains("needs a path")
    );
    let o = Options::parse(&["--sim-host".into(), "--dangerous".into()]).unwrap();
    assert!(o.sim_host && o.dangerous && !o.json);
    assert!(!Options::parse(&["--json".into()]).unwrap().sim_host);
    assert_eq!(Options::parse(&[]).unwrap(), Options::default());
    assert!(
        Options::parse(&["--force".into()])
            .unwrap_err()
            .contains("--force")
    );
}

#[test]
fn ci_machine_runs_default_and_skips_every_confidential_tier() {
    let host = ci_machine();
    let plan = plan(&host, &Options::default());
    assert_eq!(
        decision(&plan, "default/guest"),
        &Decision::Run(Check::DefaultGuest)
    );
    assert_eq!(
        decision(&plan, "default/capabilities"),
        &Decision::Run(Check::DefaultCaps)
    );
    let snp = skip_reason(&plan, "snp/launch");
    assert!(
        snp.starts_with(
            "/dev/kvm offers VM types [default]; KVM_X86_SNP_VM (4) is not among them — SNP needs an AMD EPYC host with SEV-SNP enabled in BIOS and kvm_amd.sev_snp=1"
        ),
        "{snp}"
    );
    assert!(snp.contains("shows no svm flag"), "{snp}");
    assert!(
        snp.contains("kvm_amd is not loaded (KVM modules: kvm, kvm_pvm)"),
        "{snp}"
    );
    assert!(skip_reason(&plan, "sev/launch").contains("KVM_X86_SEV_VM (2)"));
    assert!(skip_reason(&plan, "sev-es/launch").contains("KVM_X86_SEV_ES_VM (3)"));
    let tdx = skip_reason(&plan, "tdx/launch");
    assert!(
        tdx.contains("KVM_X86_TDX_VM (5) is not among them — TDX needs an Intel"),
        "{tdx}"
    );
    assert!(tdx.contains("this CPU is AuthenticAMD (AMD EPYC)"), "{tdx}");
    assert!(skip_reason(&plan, "sw-protected/memory").contains("KVM_X86_SW_PROTECTED_VM (1)"));
    // No tier of a separate software backend: without --sim-host, nothing confidential runs.
    assert!(plan.iter().all(|p| !p.name.starts_with("sim/")), "{plan:?}");
    assert!(
        plan.iter()
            .all(|p| !matches!(p.decision, Decision::Run(Check::Launch(_)))),
        "{plan:?}"
    );
    for name in ["sev/platform-status", "snp/platform-status", "snp/vcek"] {
        assert!(
            skip_reason(&plan, name).contains("/dev/sev does not exist"),
            "{name}"
        );
    }
    for name in [
        "sev/factory-reset",
        "sev/pek-gen",
        "sev/pdh-gen",
        "snp/set-config",
        "snp/commit",
    ] {
        let r = skip_reason(&plan, name);
        assert!(
            r.contains("/dev/sev does not exist") && r.contains("--dangerous"),
            "{name}: {r}"
        );
    }
    // --dangerous cannot conjure a /dev/sev.
    let plan = super::plan(
        &host,
        &Options {
            dangerous: true,
            ..Options::default()
        },
    );
    let r = skip_reason(&plan, "snp/commit");
    assert!(
        r.contains("/dev/sev does not exist") && !r.contains("--dangerous"),
        "{r}"
    );
}

#[test]
fn snp_host_runs_the_real_amd_launch_tiers() {
    let host = snp_host();
    let plan = plan(&host, &Options::default());
    for (name, tee) in [
        ("sev/launch", Tee::Sev),
        ("sev-es/launch", Tee::SevEs),
        ("snp/launch", Tee::Snp),
    ] {
        assert_eq!(
            decision(&plan, name),
            &Decision::Run(Check::Launch(tee)),
            "{name}"
        );
    }
    let tdx = skip_reason(&plan, "tdx/launch");
    assert!(tdx.contains("this CPU is AuthenticAMD"), "{tdx}");
    assert_eq!(
        decision(&plan, "sev/platform-status"),
        &Decision::Run(Check::SevPlatformStatus)
    );
    assert_eq!(
        decision(&plan, "snp/platform-status"),
        &Decision::Run(Check::SnpPlatformStatus)
    );
    assert_eq!(decision(&plan, "snp/vcek"), &Decision::Run(Check::SnpVcek));
    let r = skip_reason(&plan, "snp/commit");
    assert!(
        r.starts_with("destructive: SNP_COMMIT") && r.ends_with("pass --dangerous to run it"),
        "{r}"
    );

    let plan = super::plan(
        &host,
        &Options {
            dangerous: true,
            ..Options::default()
        },
    );
    assert_eq!(
        decision(&plan, "sev/factory-reset"),
        &Decision::Run(Check::FactoryReset)
    );
    assert_eq!(
        decision(&plan, "snp/commit"),
        &Decision::Run(Check::SnpCommit)
    );
    assert_eq!(
        decision(&plan, "snp/set-config"),
        &Decision::Run(Check::SnpSetConfig)
    );

    // An SEV-only firmware: SNP commands are skipped even with --dangerous.
    let mut sev_only = snp_host();
    sev_only.sev = SevHost::Present {
        platform_status: Ok("API 0.24".into()),
        snp_platform_status: Err("SNP_PLATFORM_STATUS failed: ENODEV".into()),
    };
    if let KvmHost::Available { vm_types_bits, .. } = &mut sev_only.kvm {
        *vm_types_bits = 0b1101;
    }
    let plan = super::plan(
        &sev_only,
        &Options {
            dangerous: true,
            ..Options::default()
        },
    );
    assert!(skip_reason(&plan, "snp/commit").contains("SNP is not usable"));
    assert!(skip_reason(&plan, "snp/platform-status").contains("offers no SNP VM type"));
    assert!(skip_reason(&plan, "snp/vcek").contains("reported TCB is unknown"));
    assert_eq!(
        decision(&plan, "sev/pek-gen"),
        &Decision::Run(Check::PekGen)
    );
}

#[test]
fn tdx_host_runs_the_real_tdx_tiers_and_skips_amd() {
    let plan = plan(&tdx_host(), &Options::default());
    assert_eq!(
        decision(&plan, "tdx/launch"),
        &Decision::Run(Check::Launch(Tee::Tdx))
    );
    assert_eq!(
        decision(&plan, "tdx/capabilities"),
        &Decision::Run(Check::TdxCapabilities)
    );
    let sev = skip_reason(&plan, "sev/launch");
    assert!(
        sev.starts_with("/dev/kvm offers VM types [default, tdx]; KVM_X86_SEV_VM (2)"),
        "{sev}"
    );
    assert!(sev.contains("this CPU is GenuineIntel"), "{sev}");
}

#[test]
fn missing_kvm_skips_the_default_tier() {
    let mut host = ci_machine();
    host.kvm = KvmHost::Unavailable {
        reason: "cannot open /dev/kvm: ENOENT (2): No such file or directory".into(),
    };
    let plan = plan(&host, &Options::default());
    assert!(skip_reason(&plan, "default/guest").contains("ENOENT"));
    assert!(skip_reason(&plan, "snp/launch").starts_with("/dev/kvm is not usable"));
    // A broken /dev/kvm is not a skip: the default tier runs and reports the failure.
    host.kvm = KvmHost::Broken {
        reason: "unexpected KVM API version 11 (expected 12)".into(),
    };
    let plan = super::plan(&host, &Options::default());
    assert_eq!(
        decision(&plan, "default/guest"),
        &Decision::Run(Check::DefaultGuest)
    );
}

#[test]
fn execute_maps_outcomes_and_json_has_the_table_shape() {
    let host = snp_host();
    let opts = Options::default();
    let planned = plan(&host, &opts);
    let results = execute(&planned, |c| match c {
        Check::SnpPlatformStatus => Outcome::Failed("SNP_PLATFORM_STATUS failed: EIO".into()),
        Check::Launch(Tee::Snp) => {
            Outcome::NotRun("report verification not available on the real backend".into())
        }
        Check::Launch(Tee::Sev) => Outcome::Skipped("cannot open /dev/sev".into()),
        other => Outcome::Passed(format!("{other:?} ok")),
    });
    assert_eq!(results.len(), planned.len());
    let get = |n: &str| results.iter().find(|r| r.name == n).unwrap();
    assert_eq!(get("default/guest").status, Status::Passed);
    assert_eq!(get("snp/platform-status").status, Status::Failed);
    assert_eq!(
        get("snp/platform-status").reason,
        "SNP_PLATFORM_STATUS failed: EIO"
    );
    assert_eq!(get("snp/launch").status, Status::NotRun);
    assert_eq!(
        get("snp/launch").reason,
        "report verification not available on the real backend"
    );
    assert_eq!(get("sev/launch").status, Status::Skipped);
    assert_eq!(get("tdx/launch").status, Status::Skipped);
    assert_eq!(get("snp/commit").status, Status::Skipped);
    assert_eq!(get("snp/commit").duration_ms, 0.0);

    let v = to_json(&host, &opts, &results);
    let tiers = v["tiers"].as_array().unwrap();
    assert_eq!(tiers.len(), results.len());
    for t in tiers {
        let o = t.as_object().unwrap();
        let mut keys: Vec<&str> = o.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["duration_ms", "name", "reason", "status"]);
        assert!(
            ["passed", "failed", "skipped", "not-run"].contains(&o["status"].as_str().unwrap())
        );
        assert!(o["duration_ms"].is_number());
    }
    let snp = tiers.iter().find(|t| t["name"] == "snp/launch").unwrap();
    assert_eq!(snp["status"], "not-run");
    assert_eq!(v["summary"]["failed"], 1);
    assert_eq!(
        v["summary"]["passed"].as_u64().unwrap()
            + v["summary"]["failed"].as_u64().unwrap()
            + v["summary"]["skipped"].as_u64().unwrap()
            + v["summary"]["not-run"].as_u64().unwrap(),
        results.len() as u64
    );
    assert_eq!(v["host"]["cpu"]["vendor"], "AuthenticAMD");
    assert_eq!(v["host"]["kvm"]["state"], "available");
    assert_eq!(
        v["host"]["kvm"]["vm_types"],
        serde_json::json!(["default", "sev", "sev-es", "snp"])
    );
    assert_eq!(v["host"]["sev"]["state"], "present");
    assert_eq!(v["host"]["sev"]["platform_status"]["ok"], true);
    assert_eq!(v["host"]["kvm"]["tdx"]["ok"], false);
    assert!(v["host"]["kvm"]["tdx"]["error"].is_string());
    assert_eq!(v["dangerous"], false);
    assert_eq!(v["sim_host"], false);
    let sim = Options {
        sim_host: true,
        ..Options::default()
    };
    assert_eq!(to_json(&host, &sim, &results)["sim_host"], true);
}

#[test]
fn table_lists_every_tier_with_status_and_reason() {
    let host = ci_machine();
    let planned = plan(&host, &Options::default());
    let results = execute(&planned, |_| -> Result<String, String> {
        Err("boom".into())
    });
    let table = render_table(&host, &Options::default(), &results);
    assert!(
        table.contains("/dev/kvm: API 12, VM types [default] (0x1)"),
        "{table}"
    );
    let header = table.lines().find(|l| l.starts_with("tier")).unwrap();
    assert!(header.contains("status") && header.contains("duration") && header.contains("reason"));
    for r in &results {
        let line = table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(r.name.as_str()))
            .unwrap_or_else(|| panic!("no row for {}", r.name));
        assert!(line.contains(r.status.as_str()), "{line}");
        assert!(line.ends_with(&r.reason), "{line}");
    }
    // Only default/guest and default/capabilities ran (and "failed").
    assert!(table.contains("0 passed, 2 failed,"), "{table}");
    assert!(!table.contains("software host"), "{table}");
    let sim = Options {
        sim_host: true,
        ..Options::default()
    };
    let table = render_table(&host, &sim, &results);
    assert!(
        table.starts_with("software host: this run's /dev/kvm and /dev/sev system calls were answered by kvm-coco's models"),
        "{table}"
    );
}

/// Firmware selection: an explicit image is used as given (and a bad one fails the tier at
/// its step); an installed image without the needed metadata falls back to the built-in one
/// and says so.
#[test]
fn launch_tier_firmware_selection() {
    let dir = std::env::temp_dir().join(format!("hw-test-fw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let missing = dir.join("missing.fd");
    // 64 KiB of zeros: no OVMF footer table, so no TDVF metadata.
    let blank = dir.join("blank.fd");
    std::fs::write(&blank, vec![0u8; 0x10000]).unwrap();
    let (missing_sev, blank_explicit, blank_installed) = served(|sim| {
        let t = Target::SoftwareHost(sim);
        let tdx = Check::Launch(Tee::Tdx);
        (
            run_check(
                Check::Launch(Tee::Sev),
                &FirmwareSource::Explicit(missing.clone()),
                t,
            ),
            run_check(tdx, &FirmwareSource::Explicit(blank.clone()), t),
            run_check(tdx, &FirmwareSource::Installed(blank.clone()), t),
        )
    });
    match missing_sev {
        Outcome::Failed(r) => assert!(r.starts_with("firmware: cannot read"), "{r}"),
        other => panic!("{other:?}"),
    }
    match blank_explicit {
        Outcome::Failed(r) => assert!(
            r.starts_with("firmware: ") || r.starts_with("plan: "),
            "{r}"
        ),
        other => panic!("{other:?}"),
    }
    match blank_installed {
        Outcome::Passed(r) => {
            assert!(r.contains("built-in 64 KiB image"), "{r}");
            assert!(
                r.contains(&format!("{} unusable for TDX", blank.display())),
                "{r}"
            );
        }
        other => panic!("{other:?}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        FirmwareSource::resolve(Some(&missing)),
        FirmwareSource::Explicit(missing)
    );
}

/// On a host without the VM type, the real launch tier (should it be run anyway) reports
/// a skip with the kernel's refusal, never a pass.
#[test]
fn real_launch_tier_without_the_vm_type_is_not_a_pass() {
    let kvm = match Kvm::open() {
        Ok(k) => k,
        Err(e) => {
            kvm_coco_test_skip::skip("/dev/kvm", e);
            return;
        }
    };
    if kvm.supported_vm_types().contains(VmType::Snp) {
        kvm_coco_test_skip::skip(
            "a host without the VM type",
            "this host offers SNP VMs; the refusal cannot be checked here",
        );
        return;
    }
    match run_check(
        Check::Launch(Tee::Snp),
        &FirmwareSource::BuiltIn,
        Target::Hardware,
    ) {
        Outcome::Skipped(r) => assert!(r.contains("not supported on this host"), "{r}"),
        other => panic!("{other:?}"),
    }
}

/// Runs `f` on a thread served by a fresh software host (the `--sim-host` seed).
fn served<T: Send>(f: impl FnOnce(&SoftwareHost) -> T + Send) -> T {
    under_software_host(SIM_HOST_SEED, f).unwrap_or_else(|e| panic!("{e}"))
}

/// What detection reports on a thread the software host serves, on this project's CI
/// machine kind.
fn sim_served_host() -> Host {
    let mut host = ci_machine();
    host.kvm = KvmHost::Available {
        api_version: 12,
        vm_types_bits: 0x3d,
        vm_types: ["default", "sev", "sev-es", "snp", "tdx"]
            .map(String::from)
            .to_vec(),
        tdx: Ok(
            "supported_attrs=0x10000000 supported_xfam=0x602ff 6 configurable CPUID leaves".into(),
        ),
    };
    host.sev = SevHost::Present {
        platform_status: Ok("API 1.55 build 25, state 0, 0 guests, flags 0x0".into()),
        snp_platform_status: Ok("API 1.55 build 25, state 0".into()),
    };
    host
}

#[test]
fn sim_host_plan_runs_every_launch_and_status_tier() {
    let host = sim_served_host();
    let sim = Options {
        sim_host: true,
        ..Options::default()
    };
    let plan = plan(&host, &sim);
    for (name, tee) in [
        ("sev/launch", Tee::Sev),
        ("sev-es/launch", Tee::SevEs),
        ("snp/launch", Tee::Snp),
        ("tdx/launch", Tee::Tdx),
    ] {
        assert_eq!(
            decision(&plan, name),
            &Decision::Run(Check::Launch(tee)),
            "{name}"
        );
    }
    assert_eq!(
        decision(&plan, "tdx/capabilities"),
        &Decision::Run(Check::TdxCapabilities)
    );
    assert_eq!(
        decision(&plan, "sev/platform-status"),
        &Decision::Run(Check::SevPlatformStatus)
    );
    assert_eq!(
        decision(&plan, "snp/platform-status"),
        &Decision::Run(Check::SnpPlatformStatus)
    );
    assert_eq!(skip_reason(&plan, "snp/vcek"), SIM_HOST_NO_VCEK);
    assert!(plan.iter().all(|p| !p.name.starts_with("sim/")), "{plan:?}");
    // Destructive tiers stay behind --dangerous.
    for name in ["sev/pek-gen", "sev/pdh-gen"] {
        let r = skip_reason(&plan, name);
        assert!(r.ends_with("pass --dangerous to run it"), "{name}: {r}");
    }
    for (name, cmd) in [
        ("sev/factory-reset", "FACTORY_RESET"),
        ("snp/set-config", "SNP_SET_CONFIG"),
        ("snp/commit", "SNP_COMMIT"),
    ] {
        let r = skip_reason(&plan, name);
        assert!(
            r.starts_with(&format!(
                "the software host's firmware does not implement {cmd}"
            )),
            "{name}: {r}"
        );
    }
    for name in sim_host_required(&sim) {
        assert!(
            matches!(decision(&plan, name), Decision::Run(_)),
            "{name} is required under --sim-host but not planned to run"
        );
    }

    let dangerous = Options {
        dangerous: true,
        ..sim.clone()
    };
    let plan = super::plan(&host, &dangerous);
    assert_eq!(
        decision(&plan, "sev/pek-gen"),
        &Decision::Run(Check::PekGen)
    );
    assert_eq!(
        decision(&plan, "sev/pdh-gen"),
        &Decision::Run(Check::PdhGen)
    );
    assert!(skip_reason(&plan, "snp/commit").contains("does not implement SNP_COMMIT"));
    let required = sim_host_required(&dangerous);
    assert!(required.contains(&"sev/pek-gen") && !required.contains(&"snp/commit"));
    for name in required {
        assert!(
            matches!(decision(&plan, name), Decision::Run(_)),
            "{name} is required under --sim-host --dangerous but not planned to run"
        );
    }

    // The same host without the flag: the VCEK and the destructive commands are the
    // hardware's, planned as before.
    let plan = super::plan(
        &host,
        &Options {
            dangerous: true,
            ..Options::default()
        },
    );
    assert_eq!(decision(&plan, "snp/vcek"), &Decision::Run(Check::SnpVcek));
    assert_eq!(
        decision(&plan, "snp/commit"),
        &Decision::Run(Check::SnpCommit)
    );
}

#[test]
fn sim_host_shortfall_names_the_tiers_that_did_not_pass() {
    let host = sim_served_host();
    let opts = Options {
        sim_host: true,
        ..Options::default()
    };
    let planned = plan(&host, &opts);
    let all_pass = execute(&planned, |c| Outcome::Passed(format!("{c:?}")));
    assert_eq!(sim_host_shortfall(&opts, &all_pass), Vec::<String>::new());
    let some_not = execute(&planned, |c| match c {
        Check::Launch(Tee::Snp) => Outcome::NotRun("no guest".into()),
        Check::Launch(Tee::Tdx) => Outcome::Skipped("no TDX".into()),
        Check::SevPlatformStatus => Outcome::Failed("EIO".into()),
        c => Outcome::Passed(format!("{c:?}")),
    });
    assert_eq!(
        sim_host_shortfall(&opts, &some_not),
        [
            "snp/launch (not run)",
            "tdx/launch (skipped)",
            "sev/platform-status (failed)"
        ]
    );
    let missing: Vec<TierResult> = all_pass
        .into_iter()
        .filter(|r| r.name != "sev-es/launch")
        .collect();
    assert_eq!(
        sim_host_shortfall(&opts, &missing),
        ["sev-es/launch (not planned)"]
    );
}

/// `--sim-host` end to end: detection on the served thread sees the software host's VM
/// types and `/dev/sev`, and every tier it offers runs the hardware tier code and passes,
/// with the platform's own measurement compared.
#[test]
fn sim_host_run_passes_every_tier_the_software_host_offers() {
    let opts = Options {
        sim_host: true,
        dangerous: true,
        ..Options::default()
    };
    let (host, results) = served(|sim| {
        detect_and_execute(&opts, &FirmwareSource::BuiltIn, Target::SoftwareHost(sim))
    });
    match &host.kvm {
        KvmHost::Available { vm_types, tdx, .. } => {
            for t in ["sev", "sev-es", "snp", "tdx"] {
                assert!(vm_types.iter().any(|v| v == t), "{t}: {vm_types:?}");
            }
            assert!(tdx.is_ok(), "{tdx:?}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(
            host.sev,
            SevHost::Present {
                platform_status: Ok(_),
                snp_platform_status: Ok(_)
            }
        ),
        "{:?}",
        host.sev
    );
    assert_eq!(
        sim_host_shortfall(&opts, &results),
        Vec::<String>::new(),
        "{results:#?}"
    );
    let reason = |n: &str| &results.iter().find(|r| r.name == n).unwrap().reason;
    for (name, evidence) in [
        (
            "sev/launch",
            "the platform's LAUNCH_MEASURE verified by the guest owner",
        ),
        (
            "sev-es/launch",
            "the platform's LAUNCH_MEASURE verified by the guest owner",
        ),
        ("snp/launch", "the guest's own attestation report"),
        ("tdx/launch", "the TD's own TDREPORT"),
    ] {
        let r = reason(name);
        assert!(r.contains("on the software host"), "{name}: {r}");
        assert!(r.contains("built-in 64 KiB image"), "{name}: {r}");
        assert!(r.contains(evidence), "{name}: {r}");
        assert!(
            r.contains("the launcher's log = offline log"),
            "{name}: {r}"
        );
    }
    assert!(reason("snp/launch").contains("MEASUREMENT = offline"));
    assert!(reason("tdx/launch").contains("MRTD = offline"));
    assert_eq!(reason("snp/vcek"), SIM_HOST_NO_VCEK);
    // The real default VM tiers need the real /dev/kvm; nothing else may fail.
    for r in &results {
        let real_kvm_missing =
            r.name.starts_with("default/") && !std::path::Path::new("/dev/kvm").exists();
        assert!(
            r.status != Status::Failed || real_kvm_missing,
            "{}: {}",
            r.name,
            r.reason
        );
    }
    // The serving stayed on the served thread: this one still sees the machine itself.
    if !std::path::Path::new(DEV_SEV_PATH).exists() {
        assert!(matches!(detect().sev, SevHost::Unavailable { .. }));
    }
}

/// Launches `tee` on the built-in image with the offline digest as the expected value,
/// optionally with one bit of it flipped.
fn launch_expecting(tee: Tee, target: Target<'_>, flip: bool) -> (Outcome, String) {
    use kvm_coco::measure::{FirmwareImage, MeasureOptions, measure};
    let image = kvm_coco::measure::synthetic::syn64k();
    let fw = FirmwareImage::parse(&image).unwrap();
    let plan = launch::build_plan(&fw, tee, launch::vcpu_sig()).unwrap();
    let offline = measure(
        &plan,
        &MeasureOptions {
            log: true,
            progress: None,
        },
    )
    .unwrap();
    let digest = offline.digest.as_bytes().to_vec();
    let mut expected = digest.clone();
    if flip {
        expected[0] ^= 1;
    }
    let steps = launch::launch_and_compare(
        tee,
        &plan,
        "built-in image",
        &expected,
        offline.log.as_ref().unwrap(),
        target,
    );
    (launch::outcome(steps), hex::encode(digest))
}

/// The tiers compare the platform's own measurement with the expected value: an expected
/// value one bit off fails every tier at that comparison, and the failure shows the
/// platform's value — the offline digest, read back from the guest's evidence.
#[test]
fn sim_host_tiers_fail_when_the_platform_measurement_differs() {
    served(|sim| {
        for (tee, step) in [
            (Tee::Sev, "LAUNCH_MEASURE verification: "),
            (Tee::SevEs, "LAUNCH_MEASURE verification: "),
            (
                Tee::Snp,
                "report measurement: the guest's report has MEASUREMENT ",
            ),
            (Tee::Tdx, "TDREPORT MRTD: the TD's TDREPORT has MRTD "),
        ] {
            let target = Target::SoftwareHost(sim);
            let (good, digest) = launch_expecting(tee, target, false);
            assert!(matches!(good, Outcome::Passed(_)), "{tee:?}: {good:?}");
            match launch_expecting(tee, target, true).0 {
                Outcome::Failed(r) => {
                    assert!(r.starts_with(step), "{tee:?}: {r}");
                    if matches!(tee, Tee::Snp | Tee::Tdx) {
                        assert!(r.starts_with(&format!("{step}{digest}")), "{tee:?}: {r}");
                    }
                }
                other => panic!("{tee:?}: {other:?}"),
            }
        }
    });
}

/// The hardware path (no guest program can be loaded) on a launch that completes: SEV
/// checks LAUNCH_MEASURE as under the software host; SNP and TDX are "not run", naming the
/// expected value and saying the platform's value is not observable from the host.
#[test]
fn hardware_path_says_what_it_verified_and_what_it_cannot() {
    served(|sim| {
        let _ = sim;
        let (sev, _) = launch_expecting(Tee::Sev, Target::Hardware, false);
        match sev {
            Outcome::Passed(r) => {
                assert!(r.contains("SEV launch on the hardware"), "{r}");
                assert!(
                    r.contains("LAUNCH_MEASURE verified by the guest owner"),
                    "{r}"
                );
            }
            other => panic!("{other:?}"),
        }
        for (tee, what) in [(Tee::Snp, "MEASUREMENT"), (Tee::Tdx, "MRTD")] {
            let (out, digest) = launch_expecting(tee, Target::Hardware, false);
            match out {
                Outcome::NotRun(r) => {
                    assert!(r.starts_with(&format!("{what} not compared: ")), "{r}");
                    assert!(r.contains("hw-test boots no guest agent"), "{r}");
                    assert!(
                        r.contains(&format!("expected {what} (offline) {digest}")),
                        "{r}"
                    );
                    assert!(r.contains("what ran and held: "), "{r}");
                    assert!(r.contains("on the hardware"), "{r}");
                    assert!(r.contains("launch completed"), "{r}");
                    assert!(!r.contains(&format!("{what} = offline")), "{r}");
                }
                other => panic!("{tee:?}: {other:?}"),
            }
        }
    });
}

/// The destructive commands the `--sim-host` plan skips are those the software firmware
/// refuses as unimplemented; the others pass on it.
#[test]
fn sim_firmware_lacks_exactly_the_skipped_commands() {
    served(|sim| {
        // SNP initialized, as in a run (SNP_SET_CONFIG needs it).
        let snp = launch::run(
            Tee::Snp,
            &FirmwareSource::BuiltIn,
            Target::SoftwareHost(sim),
        );
        assert!(matches!(snp, Outcome::Passed(_)), "{snp:?}");
        for (check, cmd) in SIM_FIRMWARE_LACKS {
            match run_simple(check) {
                Err(e) => assert!(e.contains("INVALID_COMMAND"), "{cmd}: {e}"),
                Ok(r) => panic!("{cmd} is implemented now ({r}): run its tier under --sim-host"),
            }
        }
        for check in [Check::PekGen, Check::PdhGen] {
            let r = run_simple(check);
            assert!(r.is_ok(), "{check:?}: {r:?}");
        }
    });
}
