//! `vmm-cli caps`: everything the capabilities query knows about this host.
//!
//! Human output is one line per item; `--json` prints
//! [`kvm_coco::Capabilities`] as serialized by kvm-coco (top-level `vm_types` array of
//! names, each other part `{"available": …, "value"|"reason": …}`).

use clap::Args;
use kvm_coco::caps::{MemoryCaps, SevPlatformCaps};
use kvm_coco::{Availability, Capabilities, Kvm};

use crate::util::print_json;
use crate::{CliError, Outcome};

/// Options of `vmm-cli caps`.
#[derive(Debug, Args)]
pub struct CapsArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

fn show<T>(a: &Availability<T>, f: impl Fn(&T) -> String) -> String {
    match a {
        Availability::Available(v) => f(v),
        Availability::Unavailable(r) => format!("no ({r})"),
    }
}

fn memory_lines(m: &MemoryCaps) -> Vec<(String, String)> {
    vec![
        (
            "guest_memfd".into(),
            show(&m.guest_memfd, |g| {
                let mut f = Vec::new();
                if g.mmap {
                    f.push("mmap");
                }
                if g.init_shared {
                    f.push("init_shared");
                }
                format!("yes (flags {:#x}: {})", g.flags, f.join(", "))
            }),
        ),
        (
            "memory attributes".into(),
            show(&m.memory_attributes, |a| format!("{a:#x}")),
        ),
        (
            "memory fault info".into(),
            show(&m.memory_fault_info, |_| "yes".into()),
        ),
        (
            "user memory region2".into(),
            show(&m.user_memory_region2, |_| "yes".into()),
        ),
        (
            "pre-fault memory".into(),
            show(&m.pre_fault_memory, |_| "yes".into()),
        ),
    ]
}

fn platform(p: &SevPlatformCaps) -> String {
    let snp = show(&p.snp, |s| {
        format!(
            "SNP API {}.{} build {} state {} rmp {} guests {} tcb {:#018x}",
            s.api_major,
            s.api_minor,
            s.build_id,
            s.state,
            if s.rmp_initialized {
                "initialized"
            } else {
                "not initialized"
            },
            s.guest_count,
            s.current_tcb_version
        )
    });
    format!(
        "{}: API {}.{} build {} state {} guests {}; {snp}",
        p.device, p.api_major, p.api_minor, p.build, p.state, p.guest_count
    )
}

/// Renders the capabilities as `label  value` lines.
pub(crate) fn text(c: &Capabilities) -> String {
    let mut rows: Vec<(String, String)> = vec![
        ("KVM API version".into(), c.api_version.to_string()),
        ("VM types".into(), c.vm_types.to_string()),
    ];
    for (k, v) in memory_lines(&c.memory) {
        rows.push((format!("/dev/kvm {k}"), v));
    }
    for (t, m) in &c.vm_scope {
        match m {
            Availability::Available(m) => {
                for (k, v) in memory_lines(m) {
                    rows.push((format!("{t} VM {k}"), v));
                }
            }
            Availability::Unavailable(r) => rows.push((format!("{t} VM"), format!("no ({r})"))),
        }
    }
    rows.push((
        "exit hypercall".into(),
        show(&c.exit_hypercall, |m| {
            let map = if m & (1 << 12) != 0 {
                " (KVM_HC_MAP_GPA_RANGE)"
            } else {
                ""
            };
            format!("{m:#x}{map}")
        }),
    ));
    rows.push((
        "SEV VMSA features".into(),
        show(&c.sev.vmsa_features, |v| format!("{v:#x}")),
    ));
    rows.push((
        "SNP policy bits".into(),
        show(&c.sev.snp_policy_bits, |v| format!("{v:#x}")),
    ));
    rows.push((
        "SNP REQ_CERTS".into(),
        show(&c.sev.snp_req_certs, |v| {
            if *v { "yes" } else { "no" }.into()
        }),
    ));
    rows.push((
        "TDX".into(),
        show(&c.tdx, |t| {
            format!(
                "attributes {:#x}, XFAM {:#x}, {} configurable CPUID leaves",
                t.supported_attrs,
                t.supported_xfam,
                t.cpuid.len()
            )
        }),
    ));
    rows.push(("SEV platform".into(), show(&c.sev_platform, platform)));
    let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter().map(|(k, v)| format!("{k:w$}  {v}\n")).collect()
}

/// Runs `vmm-cli caps`.
pub(crate) fn run(a: &CapsArgs) -> Result<Outcome, CliError> {
    let kvm = match Kvm::open() {
        Ok(k) => k,
        Err(e) => {
            let reason = crate::check::kvm_open_reason(&e);
            if a.json {
                print_json(&serde_json::json!({
                    "vm_types": [],
                    "kvm": {"available": false, "reason": reason},
                }));
            } else {
                println!("/dev/kvm  not usable: {reason}");
            }
            return Ok(Outcome::Negative);
        }
    };
    let caps = kvm.capabilities();
    if a.json {
        let v = serde_json::to_value(&caps)
            .map_err(|e| crate::cli_err!("cannot serialize capabilities: {e}"))?;
        print_json(&v);
    } else {
        print!("{}", text(&caps));
    }
    Ok(Outcome::Success)
}
