#!/usr/bin/env python3
"""Regenerates tests/vectors/debian-firmware.json: the reference measurements of every OVMF /
TDVF image Debian ships, by sev-snp-measure (SEV, SEV-ES, SNP, snp:ovmf-hash) and by
tests/mrtd_ref.py (TDX MRTD).

Exact procedure used for the committed file (run from the workspace root):

    kvm-coco/tests/vectors/fetch_debian_firmware.sh            # -> target/debian-firmware/
    python3 -m venv .venv && .venv/bin/pip install sev-snp-measure==0.0.13
    python3 kvm-coco/tests/vectors/gen_debian_vectors.py .venv/bin/sev-snp-measure \\
        target/debian-firmware > kvm-coco/tests/vectors/debian-firmware.json

Every case runs in a scratch directory holding links to the images and the side files
(kernel.bin, initrd.bin, kernel2.bin, initrd-empty.bin, the same bytes as
tests/measure_common/mod.rs side_files()), so "args" holds file names relative to it.
"tool" names the reference that produced the case; "args" are the `vmm-cli measure` (and,
for sev-snp-measure, the tool's own) arguments; "status" and "stdout" are the reference's
exit status and standard output. mrtd_ref.py is run as `mrtd_ref.py IMAGE`.
"""
import hashlib
import json
import os
import subprocess
import sys
import tempfile

tool, images_dir = os.path.abspath(sys.argv[1]), sys.argv[2]
here = os.path.dirname(os.path.abspath(__file__))
mrtd_ref = os.path.join(here, "..", "mrtd_ref.py")

# name -> (suite, package, version, path in the package). The same pins as
# fetch_debian_firmware.sh.
IMAGES = {}
with open(os.path.join(here, "fetch_debian_firmware.sh")) as f:
    text = f.read()
pins = text[text.index("PINS='") + 6:]
for line in pins[:pins.index("'")].strip().splitlines():
    suite, pkg, ver, path, name, _ = line.split()
    IMAGES[name] = {"suite": suite, "package": pkg, "version": ver, "path": "/" + path}

# Whole images (QEMU -bios; SNP and TDX boot only these) and the pflash code halves
# (OVMF_CODE*.fd; SEV and SEV-ES guests boot them as pflash unit 0, whose contents QEMU
# measures).
WHOLE = [n for n in IMAGES if "_CODE" not in n]
CODE = [n for n in IMAGES if "_CODE" in n]

ALL_TYPES = ["EPYC", "EPYC-v1", "EPYC-v2", "EPYC-IBPB", "EPYC-v3", "EPYC-v4", "EPYC-Rome", "EPYC-Rome-v1",
             "EPYC-Rome-v2", "EPYC-Rome-v3", "EPYC-Milan", "EPYC-Milan-v1", "EPYC-Milan-v2", "EPYC-Genoa",
             "EPYC-Genoa-v1", "EPYC-Turin"]
VCPUS = [1, 2, 3, 4, 8, 16, 64]
SEVES_SPECS = [
    ["--vcpu-type", "EPYC-v4"],
    ["--vcpu-type", "EPYC-Rome"],
    ["--vcpu-type", "EPYC-Milan-v2"],
    ["--vcpu-type", "EPYC-Genoa"],
    ["--vcpu-type", "EPYC-Turin"],
    ["--vcpu-sig", "0xa10f11"],
    ["--vcpu-family", "25", "--vcpu-model", "1", "--vcpu-stepping", "1"],
]
KERNELS = [
    ["--kernel", "kernel.bin"],
    ["--kernel", "kernel.bin", "--initrd", "initrd.bin", "--append", "console=ttyS0"],
    ["--kernel", "kernel2.bin", "--initrd", "initrd-empty.bin", "--append", "root=/dev/vda1 ro quiet"],
]
SIDE = {
    "kernel.bin": bytes((13 * i + 5) % 256 for i in range(10000)),
    "initrd.bin": b"\xab" * 3000,
    "kernel2.bin": bytes((31 * i + 7) % 253 for i in range(70001)),
    "initrd-empty.bin": b"",
}

cases = []
work = tempfile.mkdtemp(prefix="debian-vectors-")
for name in IMAGES:
    os.symlink(os.path.abspath(os.path.join(images_dir, name)), os.path.join(work, name))
for name, data in SIDE.items():
    with open(os.path.join(work, name), "wb") as f:
        f.write(data)


def ssm(args):
    p = subprocess.run([tool] + args, cwd=work, capture_output=True, text=True)
    cases.append({"tool": "sev-snp-measure", "args": args, "status": p.returncode, "stdout": p.stdout})
    return p


def tdx(img):
    p = subprocess.run([sys.executable, mrtd_ref, img], cwd=work, capture_output=True, text=True)
    cases.append({"tool": "mrtd_ref.py", "args": ["--mode", "tdx", "--ovmf", img], "status": p.returncode,
                  "stdout": p.stdout})


for img in WHOLE:
    ov = ["--ovmf", img]
    ssm(["--mode", "sev"] + ov)
    ssm(["--mode", "sev", "--output-format", "base64"] + ov)
    h = ssm(["--mode", "snp:ovmf-hash"] + ov).stdout.strip()
    for i, t in enumerate(ALL_TYPES):
        ssm(["--mode", "snp", "--vcpus", str(VCPUS[i % len(VCPUS)]), "--vcpu-type", t] + ov)
    for i, spec in enumerate(SEVES_SPECS):
        ssm(["--mode", "seves", "--vcpus", str(VCPUS[(i + 3) % len(VCPUS)])] + spec + ov)
    for vmm in ["ec2", "gce"]:
        for mode in ["snp", "seves"]:
            ssm(["--mode", mode, "--vcpus", "4", "--vmm-type", vmm] + ov)
    for feats in ["0x21", "0x0"]:
        ssm(["--mode", "snp", "--vcpus", "2", "--vcpu-type", "EPYC-Milan", "--guest-features", feats] + ov)
    ssm(["--mode", "snp", "--vcpus", "3", "--vcpu-type", "EPYC-Genoa", "--snp-ovmf-hash", h] + ov)
    for i, k in enumerate(KERNELS):
        ssm(["--mode", "sev"] + k + ov)
        ssm(["--mode", "seves", "--vcpus", str(1 + i), "--vcpu-type", "EPYC-Milan"] + k + ov)
        ssm(["--mode", "snp", "--vcpus", str(1 + i), "--vcpu-type", "EPYC-Genoa"] + k + ov)
    ssm(["--mode", "snp", "--vcpus", "2", "--vmm-type", "gce"] + KERNELS[1] + ov)
    tdx(img)

for img in CODE:
    ov = ["--ovmf", img]
    ssm(["--mode", "sev"] + ov)
    ssm(["--mode", "sev"] + KERNELS[1] + ov)
    ssm(["--mode", "seves", "--vcpus", "1", "--vcpu-type", "EPYC-v4"] + ov)
    ssm(["--mode", "seves", "--vcpus", "8", "--vcpu-type", "EPYC-Genoa"] + ov)

files = {}
for name in sorted(os.listdir(work)):
    with open(os.path.join(work, name), "rb") as f:
        files[name] = hashlib.sha256(f.read()).hexdigest()
for name, meta in IMAGES.items():
    meta["sha256"] = files[name]

with open(mrtd_ref, "rb") as f:
    mrtd_sha = hashlib.sha256(f.read()).hexdigest()
version = subprocess.run([tool, "--version"], capture_output=True, text=True).stdout.strip()
json.dump({"tools": {"sev-snp-measure": version, "mrtd_ref.py": "sha256 " + mrtd_sha},
           "generator": "kvm-coco/tests/vectors/gen_debian_vectors.py",
           "fetch": "kvm-coco/tests/vectors/fetch_debian_firmware.sh",
           "images": IMAGES, "files": files, "cases": cases}, sys.stdout, indent=1)
print()
