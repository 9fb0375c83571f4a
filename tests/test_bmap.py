"""FIBMAP through fuse4fs (FUSE_BMAP, sent only for fuseblk mounts).

The kernel's FIBMAP on a fuseblk mount asks the daemon for the device
block of a file block, in units of the mount's block size.  The answers
are compared with debugfs `bmap` on the unmounted image: written blocks
give their block number, holes and unwritten (preallocated) blocks 0, as
kernel ext4 answers.
"""

import fcntl
import os
import struct

import pytest

import f4test

FIBMAP = 1


def fibmap(fd, lblk):
    return struct.unpack("i", fcntl.ioctl(fd, FIBMAP,
                                          struct.pack("i", lblk)))[0]


def debugfs_bmap(image, name, lblk):
    """(physical block, unwritten) of a file block; (0, False) in a hole."""
    p = f4test.run(["debugfs", "-R", "bmap /%s %d" % (name, lblk), image],
                   check=False)
    out = p.stdout.split()
    assert out and out[0].isdigit(), (p.stdout, p.stderr)
    return int(out[0]), "(uninit)" in p.stdout


@pytest.mark.fuse_only
@pytest.mark.variants("ext4", "ext3", "ext2")
def test_fibmap_matches_debugfs(fs, variant):
    bs = fs.blocksize
    extents = variant == "ext4"
    path = fs.path("f")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, f4test.pattern(bs + 100, 1), 0)        # blocks 0-1
        os.pwrite(fd, f4test.pattern(bs, 2), 10 * bs)        # block 10
        os.pwrite(fd, f4test.pattern(3 * bs, 3), 1500 * bs)  # indirect
        if extents:
            os.posix_fallocate(fd, 20 * bs, 3 * bs)          # unwritten
        os.fsync(fd)
        want_blocks = [0, 1, 2, 9, 10, 11, 20, 21, 22, 1500, 1502, 1503]
        got = {b: fibmap(fd, b) for b in want_blocks}
    finally:
        os.close(fd)
    fs.unmount()
    for b in want_blocks:
        pblk, unwritten = debugfs_bmap(fs.image, "f", b)
        want = 0 if unwritten else pblk
        assert got[b] == want, (
            "FIBMAP of block %d: fuse4fs %d, on disk %d%s" %
            (b, got[b], pblk, " (unwritten)" if unwritten else ""))
    assert got[0] and got[10] and got[1500], got
    assert got[2] == got[9] == 0
    fs.mount()
