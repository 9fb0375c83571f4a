#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""Pack an ext2/3/4 image into an f4fuzz input (see fuzz/f4fuzz.c).

    f4pack.py [--flags0 N] [--flags1 N] [--salt N] [--ops HEX | --random-ops N]
              [--seed S] IMAGE OUT

The input is a 6-byte header (flags0, flags1, image size in 64 KiB units
minus one, name salt, u16 program length), the operation program, then
the image's non-zero 64-byte granules as chunks (u32 offset, u16 length,
data).  Zeros are left out, so a 1 MiB image packs into a few KiB.
"""

import argparse
import random
import struct
import sys

GRANULE = 64
UNIT = 64 * 1024
MAX_CHUNK = 65535 // GRANULE * GRANULE


def chunks(img):
    """(offset, bytes) runs of non-zero granules."""
    zero = bytes(GRANULE)
    out = []
    start = None
    for off in range(0, len(img), GRANULE):
        nz = img[off:off + GRANULE] != zero
        if nz and start is None:
            start = off
        if start is not None and (not nz or off + GRANULE - start >
                                  MAX_CHUNK):
            end = off if not nz else off + GRANULE
            out.append((start, img[start:end]))
            start = None
    if start is not None:
        out.append((start, img[start:]))
    return out


def pack(img, flags0=0, flags1=0, salt=0, ops=b""):
    # mke2fs may leave a new image file short of its last (zero) blocks
    img = img + bytes(-len(img) % UNIT)
    if len(img) % UNIT or not 0 < len(img) <= 256 * UNIT:
        raise ValueError("image size must be a multiple of 64 KiB, "
                         "at most 16 MiB (got %d)" % len(img))
    if len(ops) > 0xffff:
        raise ValueError("program too long")
    out = bytearray(struct.pack("<BBBBH", flags0, flags1,
                                len(img) // UNIT - 1, salt, len(ops)))
    out += ops
    for off, data in chunks(img):
        out += struct.pack("<IH", off, len(data)) + data
    return bytes(out)


def unpack(data):
    """The image an input describes (before the harness's fixups)."""
    flags0, flags1, size, salt, plen = struct.unpack_from("<BBBBH", data)
    size = (size + 1) * UNIT
    img = bytearray(size)
    pos = 6 + plen
    while pos + 6 <= len(data):
        off, n = struct.unpack_from("<IH", data, pos)
        pos += 6
        piece = data[pos:pos + n]
        if off < size:
            piece = piece[:size - off]
            img[off:off + len(piece)] = piece
        pos += n
    return bytes(img)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--flags0", type=lambda s: int(s, 0), default=0)
    ap.add_argument("--flags1", type=lambda s: int(s, 0), default=0)
    ap.add_argument("--salt", type=lambda s: int(s, 0), default=0)
    ap.add_argument("--ops", default="", help="program as hex")
    ap.add_argument("--random-ops", type=int, default=0,
                    help="a random program of this many bytes")
    ap.add_argument("--seed", default="0")
    ap.add_argument("image")
    ap.add_argument("out")
    a = ap.parse_args()
    ops = bytes.fromhex(a.ops)
    if a.random_ops:
        rng = random.Random(a.seed)
        ops += bytes(rng.randrange(256) for _ in range(a.random_ops))
    with open(a.image, "rb") as fp:
        img = fp.read()
    data = pack(img, a.flags0, a.flags1, a.salt, ops)
    with open(a.out, "wb") as fp:
        fp.write(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
