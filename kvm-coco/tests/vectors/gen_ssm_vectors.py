#!/usr/bin/env python3
"""Regenerates tests/vectors/sev-snp-measure.json by running sev-snp-measure.

Exact procedure used for the committed file (run from the workspace root):

    python3 -m venv /work/venv-ssm && /work/venv-ssm/bin/pip install sev-snp-measure==0.0.13
    apt-get download ovmf && dpkg -x ovmf_2022.11-6+deb12u2_all.deb ovmfroot   # or: apt-get install ovmf
    KVM_COCO_WRITE_INPUTS=/tmp/ssm-inputs KVM_COCO_OVMF=ovmfroot/usr/share/ovmf/OVMF.fd \
        cargo test -p kvm-coco --test measure_vectors -- --ignored write_inputs
    python3 kvm-coco/tests/vectors/gen_ssm_vectors.py /work/venv-ssm/bin/sev-snp-measure /tmp/ssm-inputs \
        > kvm-coco/tests/vectors/sev-snp-measure.json

Every case is run with the inputs directory as the working directory, so "args" holds file
names relative to it. "status" and "stdout" are the tool's exit status and standard output.
"""
import hashlib
import json
import os
import subprocess
import sys

tool, inputs = sys.argv[1], sys.argv[2]

VCPU_SPECS = [
    ["--vcpu-type", "EPYC-v4"],
    ["--vcpu-type", "EPYC-Milan"],
    ["--vcpu-type", "EPYC-Genoa"],
    ["--vcpu-type", "EPYC-Rome-v2"],
    ["--vcpu-type", "EPYC-Turin"],
    ["--vcpu-sig", "0xa10f11"],
    ["--vcpu-sig", "10555152"],
    ["--vcpu-family", "25", "--vcpu-model", "17", "--vcpu-stepping", "1"],
    ["--vcpu-family", "15", "--vcpu-model", "107", "--vcpu-stepping", "2"],
]
ALL_TYPES = ["EPYC", "EPYC-v1", "EPYC-v2", "EPYC-IBPB", "EPYC-v3", "EPYC-v4", "EPYC-Rome", "EPYC-Rome-v1",
             "EPYC-Rome-v2", "EPYC-Rome-v3", "EPYC-Milan", "EPYC-Milan-v1", "EPYC-Milan-v2", "EPYC-Genoa",
             "EPYC-Genoa-v1", "EPYC-Turin"]
KERNELS = [
    ["--kernel", "kernel.bin"],
    ["--kernel", "kernel.bin", "--initrd", "initrd.bin", "--append", "console=ttyS0"],
    ["--kernel", "kernel2.bin", "--append", "root=/dev/vda1 ro quiet"],
    ["--kernel", "kernel2.bin", "--initrd", "initrd-empty.bin"],
    ["--kernel", "kernel.bin", "--initrd", "initrd.bin"],
]
IMAGES = ["syn64k.fd", "syn128k.fd", "synnohash.fd", "synnoasev.fd", "OVMF.fd"]
HASH_OK = {"syn64k.fd", "syn128k.fd", "synnoasev.fd"}      # SEV / SEV-ES kernel hashes
SNP_HASH_OK = {"syn64k.fd", "syn128k.fd"}                  # SNP_KERNEL_HASHES section

cases = []


def run(args):
    p = subprocess.run([tool] + args, cwd=inputs, capture_output=True, text=True)
    cases.append({"args": args, "status": p.returncode, "stdout": p.stdout})
    return p


for img in IMAGES:
    ov = ["--ovmf", img]
    run(["--mode", "sev"] + ov)
    run(["--mode", "sev", "--output-format", "base64"] + ov)
    h = run(["--mode", "snp:ovmf-hash"] + ov).stdout.strip()
    n = 0
    for vcpus in [1, 2, 3, 8, 64]:
        for mode in ["snp", "seves"]:
            spec = VCPU_SPECS[n % len(VCPU_SPECS)]
            n += 1
            run(["--mode", mode, "--vcpus", str(vcpus)] + spec + ov)
    for feats in ["0x1", "0x21", "0x3", "0x0", "0x4001"]:
        run(["--mode", "snp", "--vcpus", "4", "--vcpu-type", "EPYC-Milan", "--guest-features", feats] + ov)
    for vmm in ["ec2", "gce"]:
        for mode in ["snp", "seves"]:
            run(["--mode", mode, "--vcpus", "3", "--vmm-type", vmm] + ov)
            run(["--mode", mode, "--vcpus", "2", "--vmm-type", vmm, "--vcpu-type", "EPYC-Genoa"] + ov)
    run(["--mode", "snp", "--vcpus", "2", "--vcpu-type", "EPYC-v4", "--snp-ovmf-hash", h] + ov)
    run(["--mode", "snp", "--vcpus", "5", "--vcpu-type", "EPYC-v4", "--vmm-type", "ec2", "--snp-ovmf-hash", h] + ov)
    run(["--mode", "snp", "--vcpus", "1", "--vcpu-type", "EPYC-v4", "--output-format", "base64"] + ov)
    for i, k in enumerate(KERNELS):
        run(["--mode", "sev"] + k + ov)
        run(["--mode", "seves", "--vcpus", str(1 + i), "--vcpu-type", "EPYC-Milan"] + k + ov)
        run(["--mode", "snp", "--vcpus", str(1 + i), "--vcpu-type", "EPYC-Genoa"] + k + ov)
    run(["--mode", "snp", "--vcpus", "2", "--vmm-type", "gce"] + KERNELS[1] + ov)
    run(["--mode", "snp", "--vcpus", "2", "--vmm-type", "ec2", "--guest-features", "0x21"] + KERNELS[1] + ov)

for t in ALL_TYPES:
    run(["--mode", "snp", "--vcpus", "2", "--vcpu-type", t, "--ovmf", "OVMF.fd"])
    run(["--mode", "seves", "--vcpus", "2", "--vcpu-type", t, "--ovmf", "syn64k.fd"])

files = {}
for name in sorted(os.listdir(inputs)):
    with open(os.path.join(inputs, name), "rb") as f:
        files[name] = hashlib.sha256(f.read()).hexdigest()

version = subprocess.run([tool, "--version"], capture_output=True, text=True).stdout.strip()
json.dump({"tool": version, "generator": "kvm-coco/tests/vectors/gen_ssm_vectors.py", "files": files,
           "cases": cases}, sys.stdout, indent=1)
print()
