//! `vmm-cli`: the command-line front end of kvm-coco.

fn main() {}
