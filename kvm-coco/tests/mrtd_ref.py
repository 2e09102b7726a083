#!/usr/bin/env python3
"""Reference TDX MRTD calculator, written from the algorithm alone (TDX module 1.5
TDH.MEM.PAGE.ADD / TDH.MR.EXTEND, QEMU's TDVF section order), as a second implementation
the Rust calculator is checked against.

usage: mrtd_ref.py IMAGE   -> prints the MRTD (SHA-384, hex)
"""
import hashlib
import struct
import sys
import uuid

FOOTER = uuid.UUID("96b582de-1fb2-45f7-baea-a366c55a082d").bytes_le
TDX_OFFSET = uuid.UUID("e47a6535-984a-4798-865e-4685a7bf8ec2").bytes_le


def footer_table(img):
    """Maps GUID bytes -> entry data, walking back from 32 bytes before the end."""
    pos = len(img) - 32
    total, guid = struct.unpack_from("<H16s", img, pos - 18)
    assert guid == FOOTER, "no footer table"
    start = pos - total
    pos -= 18
    out = {}
    while pos > start:
        length, guid = struct.unpack_from("<H16s", img, pos - 18)
        out[guid] = img[pos - length:pos - 18]
        pos -= length
    return out


def mrtd(img):
    off = struct.unpack_from("<I", footer_table(img)[TDX_OFFSET])[0]
    base = len(img) - off
    sig, length, version, count = struct.unpack_from("<4sIII", img, base)
    assert sig == b"TDVF" and version == 1 and length == 16 + 32 * count
    h = hashlib.sha384()
    for i in range(count):
        data_off, raw, gpa, size, kind, attr = struct.unpack_from("<IIQQII", img, base + 16 + 32 * i)
        if attr & 2:          # PAGE_AUG: not added at build time
            continue
        content = img[data_off:data_off + raw] + bytes(size - raw)
        for page in range(0, size, 4096):
            h.update(b"MEM.PAGE.ADD".ljust(16, b"\0") + struct.pack("<Q", gpa + page) + bytes(104))
            if attr & 1:      # MR_EXTEND
                for chunk in range(page, page + 4096, 256):
                    h.update(b"MR.EXTEND".ljust(16, b"\0") + struct.pack("<Q", gpa + chunk) + bytes(104))
                    h.update(content[chunk:chunk + 256])
    return h.hexdigest()


if __name__ == "__main__":
    with open(sys.argv[1], "rb") as f:
        print(mrtd(f.read()))
