"""File data paths that change a file's block map while data is written.

- Writes into preallocated (unwritten) extents, in random block order:
  every block must read back as written, the extent tree must stay
  valid (e2fsck -fn at teardown), on 4 KiB and 1 KiB blocks.  Checked
  against an in-memory model of the file and, where the kernel can mount
  the variant, against kernel ext4 doing the same operations.
- fio's random-write verify job over a preallocated file.
- Hole punching across the leaves of an extent tree deep enough to have
  index blocks.
"""

import os
import random
import re
import shutil
import subprocess

import pytest

import f4test

FALLOC_FL_KEEP_SIZE = f4test.FALLOC_FL_KEEP_SIZE
FALLOC_FL_PUNCH_HOLE = f4test.FALLOC_FL_PUNCH_HOLE
FALLOC_FL_ZERO_RANGE = f4test.FALLOC_FL_ZERO_RANGE

KiB = 1024
MiB = 1 << 20

fallocate = f4test.fallocate


def block_data(blk, gen, bs):
    """A recognizable block: its number and a generation, never zeros."""
    head = ("blk %d gen %d;" % (blk, gen)).encode()
    return (head * (bs // len(head) + 1))[:bs]


class Model:
    """The bytes a file must hold, kept in memory, and the same ops on a
    real file (opened O_RDWR; O_DIRECT is not needed: reads go through
    the kernel's page cache, which the tests drop by reopening after a
    remount)."""

    def __init__(self, paths):
        self.fds = [os.open(p, os.O_RDWR | os.O_CREAT, 0o644) for p in paths]
        self.data = bytearray()

    def close(self):
        for fd in self.fds:
            os.close(fd)
        self.fds = []

    def pwrite(self, off, buf):
        for fd in self.fds:
            assert os.pwrite(fd, buf, off) == len(buf)
        end = off + len(buf)
        if end > len(self.data):
            self.data.extend(bytes(end - len(self.data)))
        self.data[off:end] = buf

    def fallocate(self, mode, off, length):
        for fd in self.fds:
            fallocate(fd, mode, off, length)
        end = off + length
        if mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE):
            stop = min(end, len(self.data))
            if stop > off:
                self.data[off:stop] = bytes(stop - off)
        if not mode & FALLOC_FL_KEEP_SIZE and end > len(self.data):
            self.data.extend(bytes(end - len(self.data)))

    def fsync(self):
        for fd in self.fds:
            os.fsync(fd)


def read_whole(path):
    with open(path, "rb") as f:
        return f.read()


def first_difference(got, want, bs):
    """A readable account of where two file images differ."""
    if len(got) != len(want):
        return "size %d, expected %d" % (len(got), len(want))
    bad = [i // bs for i in range(0, len(want), bs)
           if got[i:i + bs] != want[i:i + bs]]
    zero = [b for b in bad if not any(got[b * bs:(b + 1) * bs])]
    return "%d blocks differ (%d of them zeros), first %s" % (
        len(bad), len(zero), bad[:10])


def check_file(path, model, bs, what):
    got = read_whole(path)
    assert got == bytes(model.data), "%s: %s" % (
        what, first_difference(got, model.data, bs))


def kernel_or_none(request, variant):
    """Kernel ext4 of the same variant, when the kernel can mount it."""
    if not f4test.kernel_can_mount(variant):
        return None
    return request.getfixturevalue("kernel_ext4")


# ---------------------------------------------------------------------------
# 1. random-order writes into one preallocated region (issue 15 item 1)

@pytest.mark.variants("ext4", "ext4-1k")
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_prealloc_random_block_writes(request, fs, variant, seed):
    """fallocate a region, write each block once in a random order, read
    back: nothing may come back zeroed, and the extent tree, i_blocks and
    bitmaps must stay consistent (e2fsck -fn at teardown)."""
    bs = fs.blocksize
    size = 8 * MiB if bs >= 4096 else 3 * MiB
    nblocks = size // bs
    kfs = kernel_or_none(request, variant)
    paths = [fs.path("f")] + ([kfs.path("f")] if kfs else [])
    m = Model(paths)
    try:
        m.fallocate(0, 0, size)
        order = list(range(nblocks))
        random.Random(seed).shuffle(order)
        for blk in order:
            m.pwrite(blk * bs, block_data(blk, seed, bs))
        m.fsync()
    finally:
        m.close()
    for p in paths:
        check_file(p, m, bs, "%s after random writes (seed %d)" % (p, seed))
    fs.remount()
    check_file(fs.path("f"), m, bs, "after remount (seed %d)" % seed)


@pytest.mark.variants("ext4", "ext4-1k")
@pytest.mark.timeout(240)
def test_fio_randwrite_verify(fs, variant):
    """The issue's fio job, smaller: fio preallocates the file
    (fallocate=native), writes it in random 4 KiB blocks and verifies
    every block's crc32c.  Failed with "verify: bad magic header 0"."""
    fio = shutil.which("fio")
    if not fio:
        pytest.fail("fio is not installed (it is a test dependency)")
    p = subprocess.run([fio, "--name=v", "--rw=randwrite", "--bs=4k",
                        "--size=32m", "--verify=crc32c", "--do_verify=1",
                        "--fallocate=native", "--randseed=15",
                        "--directory=" + fs.mnt],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=200)
    assert p.returncode == 0 and "verify:" not in p.stdout, p.stdout[-3000:]


# ---------------------------------------------------------------------------
# The class: writes in random order over preallocated regions of several
# shapes.  The suite had fallocate tests and random-write tests, but none
# that wrote a preallocated region piecemeal out of order, which is what
# splits unwritten extents (and their tree) in every possible place.

def random_writes(m, rng, bs, blocks, gen):
    """Write each of blocks once, in random order; some writes cover one
    block exactly, some only part of a block, some run into the next
    blocks (across extent boundaries)."""
    order = list(blocks)
    rng.shuffle(order)
    for blk in order:
        kind = rng.random()
        data = block_data(blk, gen, bs)
        if kind < 0.6:
            m.pwrite(blk * bs, data)
        elif kind < 0.8:
            start = rng.randrange(bs)
            m.pwrite(blk * bs + start, data[start:start + rng.randrange(
                1, bs - start + 1)])
        else:
            n = rng.randrange(2, 4)
            off = blk * bs + rng.randrange(bs)
            m.pwrite(off, b"".join(block_data(blk + i, gen, bs)
                                   for i in range(n))[:n * bs - bs // 2])


def shape_whole(m, rng, bs, nb):
    m.fallocate(0, 0, nb * bs)
    random_writes(m, rng, bs, range(nb), 1)


def shape_partial(m, rng, bs, nb):
    """Data, then preallocation over part of it and the hole after; the
    writes cover only some of the preallocated blocks."""
    for blk in range(0, nb // 4):
        m.pwrite(blk * bs, block_data(blk, 0, bs))
    m.fallocate(0, nb // 8 * bs + bs // 3, nb // 2 * bs)
    blocks = [b for b in range(nb // 8, nb * 3 // 4) if rng.random() < 0.6]
    random_writes(m, rng, bs, blocks, 1)


def shape_keep_size(m, rng, bs, nb):
    """KEEP_SIZE past EOF: writes there grow the file block by block."""
    m.pwrite(0, block_data(0, 0, bs)[:bs // 2])
    m.fallocate(FALLOC_FL_KEEP_SIZE, 0, nb * bs)
    random_writes(m, rng, bs, range(1, nb), 1)


def shape_boundaries(m, rng, bs, nb, other):
    """Unwritten extents that end next to each other but are not
    contiguous on disk (another file preallocates in between), and one
    longer than an unwritten extent may be (32767 blocks)."""
    step = 8
    for blk in range(0, nb, step):
        m.fallocate(FALLOC_FL_KEEP_SIZE, blk * bs, step * bs)
        fallocate(other, 0, blk * bs, bs)
    big = 32767 + 9
    m.fallocate(0, nb * bs, big * bs)
    edge = nb + 32767
    blocks = list(range(nb)) + list(range(nb, nb + 5)) + \
        list(range(edge - 6, edge + 6)) + list(range(nb + big - 3,
                                                       nb + big))
    random_writes(m, rng, bs, blocks, 1)


def shape_punch(m, rng, bs, nb):
    """Preallocate, write half, punch and zero ranges, preallocate again,
    write the rest: unwritten, written and hole extents interleaved."""
    m.fallocate(0, 0, nb * bs)
    blocks = list(range(nb))
    rng.shuffle(blocks)
    random_writes(m, rng, bs, blocks[:nb // 2], 1)
    for _ in range(6):
        off = rng.randrange(nb * bs)
        length = rng.randrange(1, 12 * bs)
        mode = rng.choice([FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                           FALLOC_FL_ZERO_RANGE, FALLOC_FL_ZERO_RANGE |
                           FALLOC_FL_KEEP_SIZE])
        m.fallocate(mode, off, length)
    m.fallocate(0, nb // 3 * bs, nb // 3 * bs)
    random_writes(m, rng, bs, blocks[nb // 2:], 2)
    random_writes(m, rng, bs, rng.sample(range(nb), nb // 5), 3)


SHAPES = {
    "whole": shape_whole,
    "partial": shape_partial,
    "keep_size": shape_keep_size,
    "boundaries": shape_boundaries,
    "punch": shape_punch,
}


@pytest.mark.variants("ext4", "ext4-1k")
@pytest.mark.image_size("640M")     # two 128 MiB unwritten runs (4 KiB)
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_prealloc_shapes(request, fs, variant, shape):
    """Random-order writes over preallocated regions of each shape, on
    fuse4fs and kernel ext4, against an in-memory model; again after a
    remount; e2fsck -fn at teardown."""
    bs = fs.blocksize
    # A random fill of n blocks peaks at about n/2 extents (written and
    # unwritten runs alternating): enough to overflow a leaf block (bs/12
    # extents), so that conversions split leaves and grow the tree.
    nb = max(600, 3 * (bs // 12))
    kfs = kernel_or_none(request, variant)
    mounts = [fs] + ([kfs] if kfs else [])
    for seed in (11, 12):
        name = "%s-%d" % (shape, seed)
        m = Model([x.path(name) for x in mounts])
        others = [os.open(x.path(name + ".other"), os.O_RDWR | os.O_CREAT,
                          0o644) for x in mounts]
        rng = random.Random(seed)
        try:
            if shape == "boundaries":
                # the same pattern on each mount: one model, both files
                fds = m.fds
                for fd, other in zip(fds, others):
                    m.fds = [fd]
                    saved = bytearray(m.data)
                    shape_boundaries(m, random.Random(seed), bs, nb, other)
                    if fd != fds[-1]:
                        m.data = saved
                m.fds = fds
            else:
                SHAPES[shape](m, rng, bs, nb)
            m.fsync()
        finally:
            m.close()
            for o in others:
                os.close(o)
        for x in mounts:
            check_file(x.path(name), m, bs, "%s %s seed %d" % (
                x.driver, shape, seed))
    fs.remount()
    for seed in (11, 12):
        name = "%s-%d" % (shape, seed)
        got = read_whole(fs.path(name))
        if kfs:
            want = read_whole(kfs.path(name))
            assert got == want, "%s after remount: %s" % (
                name, first_difference(got, want, bs))


# ---------------------------------------------------------------------------
# FITRIM and blocks freed since the last flush

FITRIM = 0xC0185879         # _IOWR('X', 121, struct fstrim_range)


@pytest.mark.variants("ext4", "ext2")
@pytest.mark.mount_opts("commit=600")
def test_fitrim_spares_blocks_freed_since_flush(fs):
    """A file deleted after the last flush is still on disk: its inode,
    directory entry and block map there still point at its blocks, and a
    crash brings it back.  FITRIM must not discard those blocks (nothing
    else may be written there before the flush that makes the deletion
    durable, see alloc.c): after a crash the file must read back whole,
    unless the trim made the deletion durable first."""
    import fcntl
    import struct as st
    from test_orphans import crash_daemon

    data = f4test.pattern(4 * MiB, 77)
    fd = os.open(fs.path("victim"), os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)            # fuse4fs flushes everything on fsync
    finally:
        os.close(fd)
    os.unlink(fs.path("victim"))
    fd = os.open(fs.mnt, os.O_RDONLY)
    try:
        r = fcntl.ioctl(fd, FITRIM, st.pack("QQQ", 0, 2 ** 64 - 1, 0))
    finally:
        os.close(fd)
    crash_daemon(fs)
    fs.fsck()
    fs.mount()
    # Either the deletion was made durable before the trim (and the
    # victim's blocks may be trimmed) or the victim is back, whole.
    if os.path.exists(fs.path("victim")):
        got = read_whole(fs.path("victim"))
        assert got == data, "victim after trim and crash: %s" % (
            first_difference(got, data, fs.blocksize))
    else:
        assert st.unpack("QQQ", r)[1] >= len(data), \
            "the victim's blocks were not trimmed"


# ---------------------------------------------------------------------------
# punching across the leaves of an extent tree with index blocks

def extent_index(image, path):
    """[(first logical block, leaf block)] of the index entries that point
    at leaves, and [(lblk, len)] of the leaf extents, from debugfs."""
    out = f4test.run(["debugfs", "-R", "ex " + path, image]).stdout
    index, leaves = [], []
    for line in out.splitlines():
        r = re.match(r"\s*(\d+)/\s*(\d+)\s+\d+/\s*\d+\s+(\d+)\s*-\s*"
                     r"(\d+)\s+(\d+)", line)
        if not r:
            continue
        level, depth, lo, hi, pblk = (int(x) for x in r.groups())
        if level == depth - 1:
            index.append((lo, pblk))
        elif level == depth:
            leaves.append((lo, hi - lo + 1))
    return index, leaves


def fragmented_file(fs, name, nblocks):
    """Every other block written: one extent per block, several leaves."""
    bs = fs.blocksize
    m = Model([fs.path(name)])
    for blk in range(0, nblocks, 2):
        m.pwrite(blk * bs, block_data(blk, 0, bs))
    m.fsync()
    m.close()
    return m


def punch(path, m, off, length):
    fd = os.open(path, os.O_RDWR)
    try:
        fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off,
                  length)
    finally:
        os.close(fd)
    stop = min(off + length, len(m.data))
    if stop > off:
        m.data[off:stop] = bytes(stop - off)


@pytest.mark.variants("ext4", "ext4-1k")
def test_punch_across_leaves(fs, variant):
    """Holes punched across the boundaries between the leaves of a
    depth-1 extent tree: contents as the model says, tree, i_blocks and
    bitmaps clean (e2fsck -fn at teardown)."""
    bs = fs.blocksize
    nb = 4 * (bs // 12) * 2          # about four leaves' worth of extents
    m = fragmented_file(fs, "f", nb)
    fs.unmount()
    index, _ = extent_index(fs.image, "/f")
    assert len(index) >= 3, index
    fs.mount()
    rng = random.Random(5)
    for key, _leaf in index[1:]:
        lo = max(0, key - rng.randrange(1, 40))
        hi = key + rng.randrange(1, 40)
        punch(fs.path("f"), m, lo * bs, (hi - lo) * bs)
        check_file(fs.path("f"), m, bs, "punch %d-%d" % (lo, hi - 1))
    # a range holding whole leaves
    punch(fs.path("f"), m, index[1][0] * bs - bs,
          (index[-1][0] - index[1][0] + 3) * bs)
    check_file(fs.path("f"), m, bs, "punch over whole leaves")
    fs.remount()
    check_file(fs.path("f"), m, bs, "after remount")


@pytest.mark.variants("ext4", "ext4-1k")
def test_punch_index_before_leaf(fs, variant):
    """A leaf whose index entry starts before the leaf's first extent (an
    index left behind by another tool: e2fsck calls it a mismatch, the
    blocks are what matter).  A hole punched from the leaf before up to
    a block between that index's start and the leaf's first extent used
    to find the later leaf, see nothing in range there, and stop: the
    earlier leaf's extents stayed mapped and read as data."""
    bs = fs.blocksize
    nb = 5 * (bs // 12)              # two or three leaves of extents
    m = fragmented_file(fs, "f", nb)
    fs.unmount()
    index, leaves = extent_index(fs.image, "/f")
    assert len(index) >= 2, index
    key = index[1][0]
    prev_end = max(l + n for l, n in leaves if l < key)   # one past
    assert prev_end < key, (prev_end, key)    # a hole between the leaves
    # The root index lives in i_block: a 12-byte header, then 12-byte
    # entries whose first 4 bytes are the logical start.
    f4test.run(["debugfs", "-w", "-R", "sif /f block[6] %d" % prev_end,
                fs.image])
    assert extent_index(fs.image, "/f")[0][1][0] == prev_end
    fs.mount()
    lo = prev_end - 9
    punch(fs.path("f"), m, lo * bs, (prev_end + 1 - lo) * bs)
    check_file(fs.path("f"), m, bs, "punch %d-%d" % (lo, prev_end))
    fs.unmount()
    # Only the crafted index may be wrong: no block still mapped after
    # the punch, nor leaked, nor counted twice.
    p = f4test.run(["e2fsck", "-fy", fs.image], check=False)
    problems = [l for l in p.stdout.splitlines()
                if "Fix? yes" in l or "differences" in l.lower()]
    assert p.returncode in (0, 1) and all(
        "does not match logical start" in l for l in problems), p.stdout
    fs.mount()
    check_file(fs.path("f"), m, bs, "after e2fsck")


# ---------------------------------------------------------------------------
# a directory whose block map points into an inode table

def _debugfs_int(image, req, regex):
    out = f4test.run(["debugfs", "-R", req, image]).stdout
    m = re.search(regex, out)
    assert m, "%s: no %s in:\n%s" % (req, regex, out)
    return int(m.group(1))


@pytest.mark.variants("ext4", "ext2")
@pytest.mark.parametrize("big", [False, True], ids=["linear", "htree"])
def test_dir_block_in_inode_table(fs, variant, big):
    """Issue 15: a damaged directory's blocks were checked against the
    size of the file system but not against its metadata.  Here the
    directory's first block is moved (contents and checksum intact) into
    an unused block of group 0's inode table: creating, renaming into and
    removing from that directory must fail with EUCLEAN, name the
    directory's inode in the log, and leave the inode table untouched."""
    bs = fs.blocksize
    os.mkdir(fs.path("d"))
    # empty files: no data blocks between the directory's own, which so
    # stay one extent, in the inode
    for i in range(300 if big else 3):
        f4test.write_file(fs.path("d", "file-with-a-long-name-%04d" % i), b"")
    f4test.write_file(fs.path("outside"), b"y")
    fs.unmount()
    img = fs.image
    dino = _debugfs_int(img, "stat /d", r"Inode: (\d+)")
    first = _debugfs_int(img, "blocks /d", r"(\d+)")
    ipg = _debugfs_int(img, "stats", r"Inodes per group:\s+(\d+)")
    # the block holding the last inodes of group 0: unused on a fresh fs
    itb = _debugfs_int(img, "imap <%d>" % ipg, r"located at block (\d+)")
    with open(img, "r+b") as f:
        f.seek(first * bs)
        block = f.read(bs)
        f.seek(itb * bs)
        saved = f.read(bs)
        assert not any(saved), "inode table block %d in use" % itb
        f.seek(itb * bs)
        f.write(block)
    # extent root in i_block: 3 words of header, then the first extent
    # (block, len|start_hi, start_lo); a block map's first pointer is [0]
    slot = 5 if variant == "ext4" else 0
    f4test.run(["debugfs", "-w", "-R", "sif /d block[%d] %d" % (slot, itb),
                img])
    assert _debugfs_int(img, "blocks /d", r"(\d+)") == itb
    fs.mount()
    try:
        tries = {
            "create": lambda: f4test.write_file(fs.path("d", "new"), b"z"),
            "rename": lambda: os.rename(fs.path("outside"),
                                        fs.path("d", "moved")),
            "unlink": lambda: os.unlink(fs.path(
                "d", "file-with-a-long-name-0001")),
            "mkdir": lambda: os.mkdir(fs.path("d", "sub")),
        }
        got = {k: f4test.errname(f4test.errno_of(fn) or 0)
               for k, fn in tries.items()}
        assert got == {k: "EUCLEAN" for k in tries}, got
        fs.unmount()
        with open(img, "rb") as f:
            f.seek(itb * bs)
            assert f.read(bs) == block, "the inode table block was written"
        log = f4test.read_log(fs.log, limit=1 << 20)
        assert re.search(r"inode #?%d\b.*metadata" % dino, log), log[-3000:]
    finally:
        if fs.mounted:
            fs.force_cleanup()
        # put the directory back where it was, for the teardown's e2fsck
        f4test.run(["debugfs", "-w", "-R", "sif /d block[%d] %d" % (
            slot, first), img])
        with open(img, "r+b") as f:
            f.seek(itb * bs)
            f.write(saved)
        for _ in range(3):
            if f4test.run(["e2fsck", "-fy", img], check=False).returncode < 4:
                break
