#!/usr/bin/env python3
"""Edits a field of a thin-pool superblock on a device or image and
recomputes its checksum (crc32c of bytes 4..4095, seed ~0, no final
inversion, XOR 160774), so that the open-time checks behind the checksum
are reached.  Usage: sbpoke.py <dev> <offset> <size 4|8> <value> [--no-csum]
"""
import struct
import sys

POLY = 0x82F63B78
TABLE = []
for i in range(256):
    c = i
    for _ in range(8):
        c = (c >> 1) ^ POLY if c & 1 else c >> 1
    TABLE.append(c)


def crc32c_raw(data, crc=0xFFFFFFFF):
    for b in data:
        crc = (crc >> 8) ^ TABLE[(crc ^ b) & 0xFF]
    return crc


def main():
    dev, off, size, value = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4], 0)
    with open(dev, "r+b") as f:
        blk = bytearray(f.read(4096))
        blk[off:off + size] = struct.pack("<I" if size == 4 else "<Q", value)
        if "--no-csum" not in sys.argv:
            csum = crc32c_raw(bytes(blk[4:])) ^ 160774
            blk[0:4] = struct.pack("<I", csum)
        f.seek(0)
        f.write(blk)


main()
