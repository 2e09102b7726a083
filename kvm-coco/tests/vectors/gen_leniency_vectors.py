#!/usr/bin/env python3
"""Regenerates tests/vectors/firmware-leniency.json: what sev-snp-measure (SEV, SEV-ES, SNP,
snp:ovmf-hash) and tests/mrtd_ref.py (TDX) accept and compute for firmware images with edge
cases in their SEV and TDVF metadata (empty sections, odd sizes, overlaps, broken headers).

Exact procedure used for the committed file (run from the workspace root):

    python3 -m venv .venv && .venv/bin/pip install sev-snp-measure==0.0.13
    KVM_COCO_WRITE_INPUTS=/tmp/leniency-inputs \\
        cargo test -p kvm-coco --test measure_leniency -- --ignored write_inputs
    python3 kvm-coco/tests/vectors/gen_leniency_vectors.py .venv/bin/sev-snp-measure \\
        /tmp/leniency-inputs > kvm-coco/tests/vectors/firmware-leniency.json

The images are built by tests/measure_cases/mod.rs leniency_images(); "files" records their
SHA-256. Cases run with the inputs directory as the working directory. "tool", "args",
"status" and "stdout" are as in debian-firmware.json. Where sev-snp-measure refuses an SEV,
SEV-ES or snp:ovmf-hash case, "stdout_sev_metadata_unread" is what the same tool prints with
its SEV metadata parsing turned off (these modes do not use the table; QEMU does not read it
for them either).
"""
import hashlib
import json
import os
import subprocess
import sys

tool, inputs = os.path.abspath(sys.argv[1]), sys.argv[2]
python = os.path.join(os.path.dirname(tool), "python")
here = os.path.dirname(os.path.abspath(__file__))
mrtd_ref = os.path.join(here, "..", "mrtd_ref.py")

UNREAD = """
import sys
from sevsnpmeasure import cli, ovmf
ovmf.OVMF._parse_sev_metadata = lambda self: setattr(self, "_metadata_items", [])
sys.argv = ["sev-snp-measure"] + sys.argv[1:]
sys.exit(cli.main())
"""

cases = []


def ssm(args):
    p = subprocess.run([tool] + args, cwd=inputs, capture_output=True, text=True)
    case = {"tool": "sev-snp-measure", "args": args, "status": p.returncode, "stdout": p.stdout}
    mode = args[args.index("--mode") + 1]
    if p.returncode != 0 and mode in ("sev", "seves", "snp:ovmf-hash"):
        q = subprocess.run([python, "-c", UNREAD] + args, cwd=inputs, capture_output=True, text=True)
        assert q.returncode == 0, (args, q.stderr)
        case["stdout_sev_metadata_unread"] = q.stdout
    cases.append(case)


def tdx(img):
    p = subprocess.run([sys.executable, mrtd_ref, img], cwd=inputs, capture_output=True, text=True)
    cases.append({"tool": "mrtd_ref.py", "args": ["--mode", "tdx", "--ovmf", img], "status": p.returncode,
                  "stdout": p.stdout})


KERNEL = ["--kernel", "kernel.bin", "--initrd", "initrd.bin", "--append", "console=ttyS0"]
images = sorted(n for n in os.listdir(inputs) if n.startswith("len-") and n.endswith(".fd"))
for img in images:
    ov = ["--ovmf", img]
    ssm(["--mode", "sev"] + ov)
    ssm(["--mode", "seves", "--vcpus", "2", "--vcpu-type", "EPYC-Milan"] + ov)
    ssm(["--mode", "snp:ovmf-hash"] + ov)
    ssm(["--mode", "snp", "--vcpus", "2", "--vcpu-type", "EPYC-Genoa"] + ov)
    ssm(["--mode", "snp", "--vcpus", "1", "--vmm-type", "ec2"] + ov)
    ssm(["--mode", "snp", "--vcpus", "3", "--vmm-type", "gce"] + ov)
    ssm(["--mode", "snp", "--vcpus", "2", "--vcpu-type", "EPYC-v4"] + KERNEL + ov)
    ssm(["--mode", "sev"] + KERNEL + ov)
    tdx(img)

files = {}
for name in sorted(os.listdir(inputs)):
    with open(os.path.join(inputs, name), "rb") as f:
        files[name] = hashlib.sha256(f.read()).hexdigest()
with open(mrtd_ref, "rb") as f:
    mrtd_sha = hashlib.sha256(f.read()).hexdigest()
version = subprocess.run([tool, "--version"], capture_output=True, text=True).stdout.strip()
json.dump({"tools": {"sev-snp-measure": version, "mrtd_ref.py": "sha256 " + mrtd_sha},
           "generator": "kvm-coco/tests/vectors/gen_leniency_vectors.py", "files": files, "cases": cases},
          sys.stdout, indent=1)
print()
