//! Shared inputs of the comparison benchmark (see `benches/snp_measure.rs`).
//!
//! The inputs are files written by `cargo xtask bench` so that every implementation (kvm-coco,
//! the `sev` crate and the Python sev-snp-measure) reads exactly the same bytes.

#![forbid(unsafe_code)]

use std::path::PathBuf;

/// One measurement input set.
#[derive(Debug, Clone)]
pub struct Case {
    /// Short name, used as the criterion group.
    pub name: String,
    /// The firmware image.
    pub ovmf: PathBuf,
    /// Number of vCPUs.
    pub vcpus: u32,
    /// The QEMU CPU model.
    pub vcpu_type: String,
    /// Direct-boot kernel, if any.
    pub kernel: Option<PathBuf>,
    /// Direct-boot initrd, if any.
    pub initrd: Option<PathBuf>,
    /// Kernel command line, if any.
    pub append: Option<String>,
}

/// Reads the cases from the JSON file named by `KVM_COCO_BENCH_CASES`:
/// `[{"name", "ovmf", "vcpus", "vcpu_type", "kernel"?, "initrd"?, "append"?}]`.
pub fn cases() -> Result<Vec<Case>, String> {
    let path = std::env::var_os("KVM_COCO_BENCH_CASES")
        .ok_or("KVM_COCO_BENCH_CASES is not set (run through `cargo xtask bench`)")?;
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("{}: {e}", PathBuf::from(&path).display()))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let arr = v.as_array().ok_or("cases file is not a JSON array")?;
    let s = |c: &serde_json::Value, k: &str| c.get(k).and_then(|x| x.as_str()).map(str::to_owned);
    arr.iter()
        .map(|c| {
            Ok(Case {
                name: s(c, "name").ok_or("case without name")?,
                ovmf: s(c, "ovmf").ok_or("case without ovmf")?.into(),
                vcpus: c
                    .get("vcpus")
                    .and_then(serde_json::Value::as_u64)
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or("case without vcpus")?,
                vcpu_type: s(c, "vcpu_type").ok_or("case without vcpu_type")?,
                kernel: s(c, "kernel").map(PathBuf::from),
                initrd: s(c, "initrd").map(PathBuf::from),
                append: s(c, "append"),
            })
        })
        .collect()
}
