//! Declares the `loom` cfg used by the model-checked lock-protocol tests.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(loom)");
}
