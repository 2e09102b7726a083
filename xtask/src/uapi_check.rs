//! `cargo xtask uapi-check`: compares `kvm-coco-uapi` with the real Linux headers.

/// Runs the check.
pub fn run(_args: &[String]) -> Result<(), String> {
    Err("uapi-check is not implemented yet".to_string())
}
