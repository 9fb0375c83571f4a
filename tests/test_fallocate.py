"""fallocate(2) modes and lseek(2) SEEK_DATA/SEEK_HOLE.

Each scenario runs on the file system under test and, side by side, on a
kernel ext4 mount of the same variant; errno, size, st_blocks, contents
and the SEEK_DATA/SEEK_HOLE map must agree.  Kernel ext4 refuses mode 0
and ZERO_RANGE on block-mapped (ext2/ext3) files but punches holes in
them; unwritten extents read as zeros and count as holes.

COLLAPSE_RANGE and INSERT_RANGE: the kernel's ext4 does them on extent
files; FUSE has no request for them, so a FUSE driver must answer
EOPNOTSUPP and leave the file alone (never a silent success).
"""

import errno
import hashlib
import os

import pytest

import f4test
from f4test import pattern

FALLOC_FL_KEEP_SIZE = f4test.FALLOC_FL_KEEP_SIZE
FALLOC_FL_PUNCH_HOLE = f4test.FALLOC_FL_PUNCH_HOLE
FALLOC_FL_NO_HIDE_STALE = f4test.FALLOC_FL_NO_HIDE_STALE
FALLOC_FL_COLLAPSE_RANGE = f4test.FALLOC_FL_COLLAPSE_RANGE
FALLOC_FL_ZERO_RANGE = f4test.FALLOC_FL_ZERO_RANGE
FALLOC_FL_INSERT_RANGE = f4test.FALLOC_FL_INSERT_RANGE
FALLOC_FL_UNSHARE_RANGE = f4test.FALLOC_FL_UNSHARE_RANGE

KiB = 1024
MiB = 1 << 20

fallocate = f4test.fallocate


def falloc_errno(fd, mode, off, length):
    return f4test.errno_of(fallocate, fd, mode, off, length)


def seek_map(fd):
    """[(data_start, data_end), ...] from SEEK_DATA/SEEK_HOLE."""
    size = os.fstat(fd).st_size
    segs, pos = [], 0
    while pos < size:
        try:
            d = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as e:
            if e.errno != errno.ENXIO:
                raise
            break
        h = os.lseek(fd, d, os.SEEK_HOLE)
        assert h > d, (d, h)
        segs.append((d, h))
        pos = h
    return segs


def seek_errno(fd, off, whence):
    try:
        return os.lseek(fd, off, whence)
    except OSError as e:
        return errno.errorcode[e.errno]


def describe(fd, sync=True):
    """Everything the comparison looks at for an open file."""
    if sync:
        os.fsync(fd)
    st = os.fstat(fd)
    # the map first: kernel ext4 counts cached pages over unwritten
    # extents as data, so reading first would change its answer
    smap = seek_map(fd)
    h = hashlib.sha256()
    off = 0
    while True:
        b = os.pread(fd, 1 << 20, off)
        if not b:
            break
        h.update(b)
        off += len(b)
    return {"size": st.st_size, "blocks": st.st_blocks,
            "sha": h.hexdigest()[:16], "map": smap}


def is_fuse(fsobj):
    return fsobj.driver != "kernel"


def blocksize(fsobj):
    return fsobj.sb_raw()["blocksize"]


# ---------------------------------------------------------------------------
# the mode matrix, compared with kernel ext4

def _setup_data(fd, n=64 * KiB):
    os.pwrite(fd, pattern(n, 5), 0)
    os.fsync(fd)


# (name, setup(fd), [(mode, offset, length), ...])
SCENARIOS = [
    ("alloc_empty", None, [(0, 0, 1 * MiB)]),
    ("alloc_keep_empty", None, [(FALLOC_FL_KEEP_SIZE, 0, 1 * MiB)]),
    ("alloc_unaligned", None, [(0, 1000, 10000)]),
    ("alloc_inside_data", _setup_data, [(0, 8 * KiB, 16 * KiB)]),
    ("alloc_past_eof", _setup_data, [(0, 60 * KiB, 100 * KiB)]),
    ("alloc_keep_past_eof", _setup_data,
     [(FALLOC_FL_KEEP_SIZE, 64 * KiB, 256 * KiB)]),
    ("alloc_keep_far", _setup_data,
     [(FALLOC_FL_KEEP_SIZE, 1 * MiB, 64 * KiB)]),
    ("punch_aligned", _setup_data,
     [(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 8 * KiB, 16 * KiB)]),
    ("punch_unaligned", _setup_data,
     [(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 5000, 20000)]),
    ("punch_to_eof", _setup_data,
     [(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 32 * KiB, 1 * MiB)]),
    ("punch_all", _setup_data,
     [(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 64 * KiB)]),
    ("punch_in_hole", None,
     [(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 8 * KiB)]),
    ("punch_unwritten", None,
     [(FALLOC_FL_KEEP_SIZE, 0, 256 * KiB),
      (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 64 * KiB, 64 * KiB)]),
    ("zero_aligned", _setup_data, [(FALLOC_FL_ZERO_RANGE, 8 * KiB, 16 * KiB)]),
    ("zero_unaligned", _setup_data, [(FALLOC_FL_ZERO_RANGE, 1000, 30000)]),
    ("zero_extends", _setup_data,
     [(FALLOC_FL_ZERO_RANGE, 60 * KiB, 16 * KiB)]),
    ("zero_keep_past_eof", _setup_data,
     [(FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, 60 * KiB, 16 * KiB)]),
    ("zero_in_hole", None, [(FALLOC_FL_ZERO_RANGE, 0, 100 * KiB)]),
    # always refused
    ("punch_without_keep", _setup_data, [(FALLOC_FL_PUNCH_HOLE, 0, 4096)]),
    ("no_hide_stale", _setup_data, [(FALLOC_FL_NO_HIDE_STALE, 0, 4096)]),
    ("unshare", _setup_data, [(FALLOC_FL_UNSHARE_RANGE, 0, 4096)]),
    ("zero_and_punch", _setup_data,
     [(FALLOC_FL_ZERO_RANGE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
       0, 4096)]),
    ("bad_length", _setup_data, [(0, 0, 0), (0, 0, -4096), (0, -4096, 8192)]),
]


def _run_scenario(fsobj, name, setup, ops):
    p = fsobj.path(name)
    fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        if setup:
            setup(fd)
        errs = [f4test.errname(falloc_errno(fd, *op)) for op in ops]
        return dict(describe(fd), errnos=errs)
    finally:
        os.close(fd)


def _page_map(segs):
    """A data map rounded out to whole pages (and merged)."""
    ps = f4test.PAGE_SIZE
    out = []
    for s, e in segs:
        s, e = s // ps * ps, -(-e // ps) * ps
        if out and out[-1][1] >= s:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def _differs(fsobj, ops, a, b):
    """Compare one scenario's results (a: under test, b: kernel).

    Two kernel artefacts are not required of the driver under test:
    - ZERO_RANGE on blocks smaller than a page: the kernel zeroes the
      partial pages at the ends in place (data) and makes only whole
      pages unwritten, so its map is page granular there;
    - punching block-mapped files: the kernel keeps indirect blocks that
      no longer map anything; freeing them is fine (fewer st_blocks, but
      never fewer than the data blocks)."""
    a, b = dict(a), dict(b)
    bs = blocksize(fsobj)
    if bs < f4test.PAGE_SIZE and any(op[0] & FALLOC_FL_ZERO_RANGE
                                     for op in ops):
        a["map"], b["map"] = _page_map(a["map"]), _page_map(b["map"])
    if not fsobj.variant.startswith("ext4") and a["blocks"] != b["blocks"]:
        data = sum(e - s for s, e in a["map"]) // 512
        if data <= a["blocks"] <= b["blocks"] <= a["blocks"] + 3 * bs // 512:
            a["blocks"] = b["blocks"]
    return a != b


@pytest.mark.variants("ext4", "ext4-1k", "ext2", "ext3", "ext4-inline")
def test_modes_like_kernel(fs, kernel_ext4):
    bad = []
    for name, setup, ops in SCENARIOS:
        a = _run_scenario(fs, name, setup, ops)
        b = _run_scenario(kernel_ext4, name, setup, ops)
        if _differs(fs, ops, a, b):
            bad.append("%s: %s\n  kernel: %s" % (name, a, b))
    assert not bad, "differs from kernel ext4:\n" + "\n".join(bad)
    # the same after a remount (what was written reached the disk); the
    # kernel's mount too, for a cold page cache
    fs.remount()
    kernel_ext4.remount()
    for name, setup, ops in SCENARIOS:
        fd = os.open(fs.path(name), os.O_RDONLY)
        fd2 = os.open(kernel_ext4.path(name), os.O_RDONLY)
        try:
            a, b = describe(fd, sync=False), describe(fd2, sync=False)
        finally:
            os.close(fd)
            os.close(fd2)
        if _differs(fs, ops, a, b):
            bad.append("%s after remount: %s\n  kernel: %s" % (name, a, b))
    assert not bad, "differs from kernel ext4:\n" + "\n".join(bad)


@pytest.mark.variants("ext4", "ext2", "ext4-64k")
def test_collapse_insert(fs):
    """Never a silent success: FUSE drivers answer EOPNOTSUPP and leave
    the file as it was; kernel ext4 shifts the data on extent files and
    answers EOPNOTSUPP on block-mapped ones."""
    bs = blocksize(fs)
    data = pattern(16 * bs, 3)
    for mode in (FALLOC_FL_COLLAPSE_RANGE, FALLOC_FL_INSERT_RANGE):
        p = fs.path("f%x" % mode)
        fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
            e = falloc_errno(fd, mode, 4 * bs, 2 * bs)
            got = f4test.pread_all(fd, 32 * bs, 0)
        finally:
            os.close(fd)
        extents = fs.variant.startswith("ext4")
        if is_fuse(fs) or not extents:
            assert e == errno.EOPNOTSUPP, f4test.errname(e)
            assert got == data
        elif mode == FALLOC_FL_COLLAPSE_RANGE:
            assert e == 0
            assert got == data[:4 * bs] + data[6 * bs:]
        else:
            assert e == 0
            assert got == data[:4 * bs] + bytes(2 * bs) + data[4 * bs:]
    fs.remount()
    for mode in (FALLOC_FL_COLLAPSE_RANGE, FALLOC_FL_INSERT_RANGE):
        got = f4test.read_file(fs.path("f%x" % mode))
        if is_fuse(fs) or not fs.variant.startswith("ext4"):
            assert got == data


@pytest.mark.variants("ext4")
def test_fallocate_bad_files(fs):
    f4test.write_file(fs.path("f"), b"x" * 100)
    os.mkfifo(fs.path("fifo"))
    fd = os.open(fs.path("f"), os.O_RDONLY)
    try:
        assert falloc_errno(fd, 0, 0, 4096) == errno.EBADF
    finally:
        os.close(fd)
    fd = os.open(fs.path("fifo"), os.O_RDWR)
    try:
        assert falloc_errno(fd, 0, 0, 4096) == errno.ESPIPE
    finally:
        os.close(fd)
    # O_APPEND is no obstacle for fallocate
    fd = os.open(fs.path("f"), os.O_WRONLY | os.O_APPEND)
    try:
        fallocate(fd, 0, 0, 8192)
        assert os.fstat(fd).st_size == 8192
    finally:
        os.close(fd)
    data = f4test.read_file(fs.path("f"))
    assert data == b"x" * 100 + bytes(8192 - 100)


# ---------------------------------------------------------------------------
# preallocation: st_blocks, zeros, writes into unwritten extents

@pytest.mark.variants("ext4", "ext4-1k", "ext4-64k", "ext4-inline")
def test_preallocation(fs):
    bs = blocksize(fs)
    p = fs.path("f")
    fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        st0 = os.fstat(fd)
        assert st0.st_blocks == 0
        fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 4 * MiB)
        st = os.fstat(fd)
        assert st.st_size == 0
        # at least the 4 MiB, at most a few extent tree blocks more
        assert 4 * MiB // 512 <= st.st_blocks <= 4 * MiB // 512 + 4 * bs // 512
        assert os.pread(fd, 100, 0) == b""
        fallocate(fd, 0, 0, 2 * MiB)
        assert os.fstat(fd).st_size == 2 * MiB
        assert os.fstat(fd).st_blocks == st.st_blocks
        # unwritten: a hole for SEEK_DATA (asked before anything is read:
        # kernel ext4 counts cached pages over unwritten extents as data)
        assert seek_map(fd) == []
        # write into the middle of the preallocated range
        w = pattern(10000, 1)
        os.pwrite(fd, w, 1 * MiB + 100)
        os.fsync(fd)
        lo = (1 * MiB + 100) // bs * bs
        hi = -(-(1 * MiB + 100 + 10000) // bs) * bs
        assert seek_map(fd) == [(lo, hi)]
        got = f4test.pread_all(fd, 2 * MiB, 0)
        assert got == bytes(1 * MiB + 100) + w + bytes(MiB - 100 - 10000)
        assert os.fstat(fd).st_blocks == st.st_blocks
        # extend into the KEEP_SIZE part: zeros, no new blocks
        os.ftruncate(fd, 3 * MiB)
        assert f4test.pread_all(fd, MiB, 2 * MiB) == bytes(MiB)
        assert os.fstat(fd).st_blocks == st.st_blocks
        # truncating gives the preallocation beyond EOF back
        os.ftruncate(fd, 1 * MiB)
        assert os.fstat(fd).st_blocks <= 1 * MiB // 512 + 4 * bs // 512
    finally:
        os.close(fd)
    fs.remount()
    fd = os.open(p, os.O_RDONLY)
    try:
        assert os.fstat(fd).st_size == 1 * MiB
        assert seek_map(fd) == []
        assert f4test.pread_all(fd, MiB, 0) == bytes(MiB)
    finally:
        os.close(fd)


@pytest.mark.variants("ext4", "ext4-1k")
def test_preallocation_enospc(fs):
    """Preallocating more than is free fails with ENOSPC; whatever was
    allocated comes back when the file goes."""
    f4test.sync_fs(fs.mnt)
    free = fs.statfs().f_bfree * fs.statfs().f_frsize
    for mode in (FALLOC_FL_KEEP_SIZE, 0):
        p = fs.path("f%d" % mode)
        fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            assert falloc_errno(fd, mode, 0, free + 64 * MiB) == errno.ENOSPC
            os.fsync(fd)
            st = os.fstat(fd)
            if mode == FALLOC_FL_KEEP_SIZE:
                assert st.st_size == 0
            assert st.st_size <= st.st_blocks * 512
        finally:
            os.close(fd)
        os.unlink(p)
        f4test.sync_fs(fs.mnt)
        # the blocks come back when the kernel forgets the inode
        st = f4test.wait_statfs(fs.mnt,
                                lambda st: st.f_bfree * st.f_frsize == free)
        assert st.f_bfree * st.f_frsize == free
    # and the file system is still usable
    f4test.write_file(fs.path("after"), b"x" * 100000)
    assert f4test.read_file(fs.path("after")) == b"x" * 100000


# ---------------------------------------------------------------------------
# SEEK_DATA / SEEK_HOLE

def _craft(fsobj, name, sync):
    """A file with data, holes, unwritten ranges (where the format has
    them), a punched hole and a trailing hole."""
    p = fsobj.path(name)
    fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o644)
    extents = falloc_errno(fd, FALLOC_FL_KEEP_SIZE, 0, 4096) == 0
    if extents:
        fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096)
    os.pwrite(fd, pattern(8 * KiB, 1), 0)
    os.pwrite(fd, pattern(100, 2), 1 * MiB + 10000)
    os.pwrite(fd, pattern(64 * KiB, 3), 1536 * KiB)
    if extents:
        fallocate(fd, 0, 2 * MiB, 1 * MiB)
        os.pwrite(fd, pattern(4 * KiB, 4), 2560 * KiB)
        fallocate(fd, FALLOC_FL_KEEP_SIZE, 5 * MiB, 1 * MiB)
    os.pwrite(fd, pattern(128 * KiB, 5), 3 * MiB + 512 * KiB)
    fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
              3 * MiB + 544 * KiB, 32 * KiB)
    os.ftruncate(fd, 4 * MiB + 12345)
    if sync:
        os.fsync(fd)
    return fd, extents


def _probe_offsets(fd, size):
    out = {}
    for off in (0, 4095, 8191, 8192, 1 * MiB, 1 * MiB + 10050, 2 * MiB,
                2 * MiB + 100, 2560 * KiB + 4095, 3 * MiB + 530 * KiB,
                size - 1, size, size + 1, size + 10 * MiB, -1):
        out[off] = (seek_errno(fd, off, os.SEEK_DATA),
                    seek_errno(fd, off, os.SEEK_HOLE))
    return out


@pytest.mark.variants("ext4", "ext4-1k", "ext2", "ext3", "ext4-inline")
def test_seek_data_hole_like_kernel(fs, kernel_ext4):
    res = {}
    for m in (fs, kernel_ext4):
        fd, extents = _craft(m, "crafted", sync=True)
        try:
            size = os.fstat(fd).st_size
            res[m] = (extents, seek_map(fd), _probe_offsets(fd, size))
        finally:
            os.close(fd)
    assert res[fs] == res[kernel_ext4]
    extents, smap, _ = res[fs]
    bs = blocksize(fs)
    # the data map as ext4 reports it, block granular
    up = lambda x: -(-x // bs) * bs        # noqa: E731
    down = lambda x: x // bs * bs          # noqa: E731
    want = [(0, 8 * KiB), (down(1 * MiB + 10000), up(1 * MiB + 10100)),
            (1536 * KiB, 1600 * KiB)]
    if extents:
        want.append((2560 * KiB, 2564 * KiB))
    want += [(3 * MiB + 512 * KiB, 3 * MiB + 544 * KiB),
             (3 * MiB + 576 * KiB, 3 * MiB + 640 * KiB)]
    # adjacent ranges merge (1 KiB blocks: the 100 bytes stay apart)
    merged = []
    for s, e in want:
        if merged and merged[-1][1] >= s:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    assert smap == merged
    # and after a remount
    fs.remount()
    fd = os.open(fs.path("crafted"), os.O_RDONLY)
    try:
        assert seek_map(fd) == smap
    finally:
        os.close(fd)


@pytest.mark.variants("ext4", "ext4-1k")
def test_seek_data_hole_unsynced(fs, kernel_ext4):
    """Without fsync: data still in the page cache counts as data."""
    res = {}
    for m in (fs, kernel_ext4):
        fd, _ = _craft(m, "crafted", sync=False)
        try:
            size = os.fstat(fd).st_size
            res[m] = (seek_map(fd), _probe_offsets(fd, size))
        finally:
            os.close(fd)
    assert res[fs] == res[kernel_ext4]


@pytest.mark.variants("ext4", "ext2")
def test_seek_small_cases(fs):
    def probe(name, data=None, size=None):
        p = fs.path(name)
        fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            if data:
                os.write(fd, data)
            if size is not None:
                os.ftruncate(fd, size)
            os.fsync(fd)
            return [seek_errno(fd, off, wh) for off in (0, 1, 4096)
                    for wh in (os.SEEK_DATA, os.SEEK_HOLE)]
        finally:
            os.close(fd)
    ENXIO = "ENXIO"
    # empty
    assert probe("empty") == [ENXIO] * 6
    # only a hole
    assert probe("hole", size=1 * MiB) == [ENXIO, 0, ENXIO, 1, ENXIO, 4096]
    # only data
    assert probe("data", data=b"x" * 10) == [0, 10, 1, 10, ENXIO, ENXIO]
    # data, then a hole to EOF
    assert probe("dh", data=b"x" * 10, size=1 * MiB) == [
        0, blocksize(fs), 1, blocksize(fs), ENXIO, 4096]
