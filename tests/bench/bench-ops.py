#!/usr/bin/env python3
"""Timed operations of the guest benchmark (tests/bench/guest-bench.sh),
each in ONE process so that the time measured is the kernel's, not the
start of a dmsetup or blkdiscard process (0.3-1 s under emulation).

  bench-ops.py discard DEV
      BLKDISCARD of the whole device in one ioctl (what `blkdiscard DEV`
      does); prints "bytes=N start=EPOCH end=EPOCH seconds=S"
  bench-ops.py message NAME SECTOR TEXT
      a device-mapper target message (what `dmsetup message` does);
      prints "start=EPOCH end=EPOCH seconds=S"

start/end are CLOCK_REALTIME seconds (comparable with fio's
--log_unix_epoch latency logs), seconds is CLOCK_MONOTONIC elapsed.
Exit status 1 (and the errno on stderr) when the operation fails.
"""
import fcntl
import os
import struct
import sys
import time

BLKDISCARD = 0x1277  # _IO(0x12, 119)
HDR = struct.Struct("=3IIIIiII4xQ128s129s7s")  # struct dm_ioctl
TARGET_MSG = (3 << 30) | (HDR.size << 16) | (0xFD << 8) | 14  # DM_TARGET_MSG


def timed(fn):
    w0, m0 = time.time(), time.monotonic()
    fn()
    m1, w1 = time.monotonic(), time.time()
    return w0, w1, m1 - m0


def discard(dev):
    fd = os.open(dev, os.O_WRONLY)
    size = os.lseek(fd, 0, os.SEEK_END)
    w0, w1, s = timed(lambda: fcntl.ioctl(fd, BLKDISCARD, struct.pack("=QQ", 0, size)))
    os.close(fd)
    print(f"bytes={size} start={w0:.6f} end={w1:.6f} seconds={s:.6f}")


def message(name, sector, text):
    payload = struct.pack("=Q", int(sector)) + text.encode() + b"\0"
    size = 16384
    buf = bytearray(size)
    HDR.pack_into(buf, 0, 4, 0, 0, size, HDR.size, 0, 0, 0, 0, 0, name.encode(), b"", b"")
    buf[HDR.size:HDR.size + len(payload)] = payload
    ctl = os.open("/dev/mapper/control", os.O_RDWR)
    w0, w1, s = timed(lambda: fcntl.ioctl(ctl, TARGET_MSG, buf, True))
    os.close(ctl)
    print(f"start={w0:.6f} end={w1:.6f} seconds={s:.6f}")


def main():
    a = sys.argv[1:]
    try:
        if len(a) == 2 and a[0] == "discard":
            discard(a[1])
        elif len(a) == 4 and a[0] == "message":
            message(a[1], a[2], a[3])
        else:
            sys.stderr.write(__doc__)
            return 2
    except OSError as e:
        sys.stderr.write(f"bench-ops.py {' '.join(a)}: {e}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
