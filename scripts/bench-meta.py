#!/usr/bin/env python3
"""Inputs of the guest benchmark's discard and delete rows
(scripts/bench-guest.sh).

  bench-meta.py xml OUT.xml SEED BLOCK_SECTORS DEL_MAP DISC_MAP OTHER_BLOCKS FREE
      thin_restore XML of one pool: thin 1 with DEL_MAP mapped blocks (the
      one deleted), thin 3 with DISC_MAP (the one discarded whole), thin 2
      with OTHER_BLOCKS (the thin doing I/O during the delete).  Mappings
      are range_mapping elements of 64 blocks; the runs of thins 1 and 3
      are scattered in random order over their part of the data device,
      thin 2's blocks are contiguous after them, then FREE free blocks
      (for the snapshot row's thin).  nr_data_blocks is the sum, so the
      data device needs exactly that many blocks.
  bench-meta.py trim IMAGE
      cut a metadata image after its last non-zero MiB (the guest copies
      that part onto a loop device of the full size); prints the MiB kept.
"""
import os
import random
import sys

RUN = 64


def device(f, r, dev_id, n, base):
    runs = [(v, min(RUN, n - v)) for v in range(0, n, RUN)]
    order = list(range(len(runs)))
    r.shuffle(order)
    where = [0] * len(runs)
    pos = base
    for k in order:
        where[k] = pos
        pos += runs[k][1]
    f.write(f'<device dev_id="{dev_id}" mapped_blocks="{n}" transaction="0" '
            f'creation_time="0" snap_time="0">\n')
    for (vb, ln), db in zip(runs, where):
        f.write(f'<range_mapping origin_begin="{vb}" data_begin="{db}" length="{ln}" time="0"/>\n')
    f.write("</device>\n")


def xml(path, seed, bs, ndel, ndisc, nother, free):
    r = random.Random(seed * 7919 + 3)
    with open(path, "w") as f:
        f.write(f'<superblock uuid="" time="0" transaction="1" flags="0" version="2" '
                f'data_block_size="{bs}" nr_data_blocks="{ndel + ndisc + nother + free}">\n')
        device(f, r, 1, ndel, 0)
        f.write(f'<device dev_id="2" mapped_blocks="{nother}" transaction="0" '
                f'creation_time="0" snap_time="0">\n'
                f'<range_mapping origin_begin="0" data_begin="{ndel + ndisc}" '
                f'length="{nother}" time="0"/>\n</device>\n')
        device(f, r, 3, ndisc, ndel)
        f.write("</superblock>\n")


def trim(path):
    fd = os.open(path, os.O_RDWR)
    size = os.lseek(fd, 0, os.SEEK_END)
    mib = 1 << 20
    end = pos = 0
    while pos < size:
        try:
            d = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:  # ENXIO: no data after pos
            break
        h = os.lseek(fd, d, os.SEEK_HOLE)
        p = d // mib * mib
        while p < h:
            os.lseek(fd, p, os.SEEK_SET)
            if os.read(fd, mib).strip(b"\0"):
                end = p + mib
            p += mib
        pos = h
    end = min(end, size)
    os.ftruncate(fd, end)
    os.close(fd)
    print((end + mib - 1) // mib)


def main():
    a = sys.argv[1:]
    if len(a) == 8 and a[0] == "xml":
        xml(a[1], *map(int, a[2:]))
    elif len(a) == 2 and a[0] == "trim":
        trim(a[1])
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
