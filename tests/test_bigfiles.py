"""Large files and open flags: offsets beyond 4 GiB, the largest file the
format allows (EFBIG past it, as kernel ext4's s_maxbytes), O_APPEND,
O_TRUNC and O_DIRECT.

The images stay small and sparse: file offsets need no image space, only
the few blocks written (and their mapping blocks) do.

The size limits are kernel ext4's (fs/ext4/super.c): extent files end
one block short of 2^32 blocks; block-mapped files are limited by the
indirect tree and, without huge_file, by i_blocks counting 512-byte
sectors in 32 bits.  test_max_file_size checks the formula against a
kernel mount where the kernel can mount the variant.
"""

import errno
import mmap
import os
import stat

import pytest

import f4test
from f4test import pattern, read_file, write_file

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
TiB = 1 << 40
MAX_LFS_FILESIZE = (1 << 63) - 1

EXT4_FEATURE_RO_COMPAT_HUGE_FILE = 0x0008
EXT4_FEATURE_INCOMPAT_EXTENTS = 0x0040


def max_bitmap_size(bits, huge_file):
    """Largest block-mapped file (kernel ext4_max_bitmap_size)."""
    ppb = 1 << (bits - 2)
    nd = 12
    if huge_file:
        upper = ((1 << 48) - 1) >> (bits - 9)
    else:
        upper = ((1 << 32) - 1) >> (bits - 9)
    res = nd + ppb + ppb * ppb + ppb ** 3
    meta = 1 + (1 + ppb) + (1 + ppb + ppb * ppb)
    if res + meta <= upper:
        return min(res << bits, MAX_LFS_FILESIZE)
    res = upper
    upper -= nd
    meta = 1
    upper -= ppb
    if upper < ppb * ppb:
        meta += 1 + -(-upper // ppb)
        return min((res - meta) << bits, MAX_LFS_FILESIZE)
    meta += 1 + ppb
    upper -= ppb * ppb
    meta += 1 + -(-upper // ppb) + -(-upper // (ppb * ppb))
    return min((res - meta) << bits, MAX_LFS_FILESIZE)


def max_extent_size(bits, huge_file):
    """Largest extent-mapped file (kernel ext4_max_size)."""
    upper = MAX_LFS_FILESIZE
    if not huge_file:
        upper = (((1 << 32) - 1) >> (bits - 9)) << bits
    return min(((1 << 32) - 1) << bits, upper)


def fs_geometry(fsobj):
    """(block bits, extents feature, huge_file feature) of the image."""
    sb = f4test.read_superblock(fsobj.image)
    bits = sb["blocksize"].bit_length() - 1
    incompat, ro_compat = sb["s_feature_incompat"], sb["s_feature_ro_compat"]
    return (bits, bool(incompat & EXT4_FEATURE_INCOMPAT_EXTENTS),
            bool(ro_compat & EXT4_FEATURE_RO_COMPAT_HUGE_FILE))


def max_file_size(fsobj):
    """s_maxbytes for new files of this file system (extent files where
    the extents feature is on)."""
    bits, extents, huge = fs_geometry(fsobj)
    if extents:
        return max_extent_size(bits, huge)
    return max_bitmap_size(bits, huge)


def probe_max_truncate(path):
    """The largest size ftruncate accepts, found by bisection."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        lo, hi = 0, 1 << 62
        while hi - lo > 1:
            mid = (lo + hi) // 2
            try:
                os.ftruncate(fd, mid)
                lo = mid
            except OSError as e:
                assert e.errno == errno.EFBIG, e
                hi = mid
        os.ftruncate(fd, 0)
    finally:
        os.close(fd)
    os.unlink(path)
    return lo


def pwrite_result(fd, data, off):
    try:
        return os.pwrite(fd, data, off)
    except OSError as e:
        return errno.errorcode[e.errno]


@pytest.fixture(autouse=True)
def _umask():
    old = os.umask(0o022)
    yield
    os.umask(old)


# ---------------------------------------------------------------------------
# beyond 4 GiB

def test_beyond_4g(fs):
    p = fs.path("big")
    pieces = [(4 * GiB - 100, pattern(300, 1)),       # across 2^32
              (5 * GiB + 12345, pattern(70000, 2)),
              (8 * GiB - 1, b"Z"),
              (2 * GiB - 7, pattern(14, 3))]           # across 2^31
    fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        for off, data in pieces:
            assert os.pwrite(fd, data, off) == len(data)
        st = os.fstat(fd)
        assert st.st_size == 8 * GiB
        # a few blocks, not gigabytes
        assert st.st_blocks * 512 < 4 * MiB
        for off, data in pieces:
            assert f4test.pread_all(fd, len(data), off) == data
        # holes read as zeros, also across the 4 GiB mark
        assert os.pread(fd, 4096, 4 * GiB + 4096) == bytes(4096)
        assert os.pread(fd, 10, 8 * GiB - 1) == b"Z"
        assert os.pread(fd, 10, 8 * GiB) == b""
        # lseek with large offsets
        assert os.lseek(fd, 6 * GiB, os.SEEK_SET) == 6 * GiB
        assert os.write(fd, b"at six") == 6
        assert os.lseek(fd, 0, os.SEEK_CUR) == 6 * GiB + 6
        assert os.lseek(fd, -1, os.SEEK_END) == 8 * GiB - 1
    finally:
        os.close(fd)
    fs.remount()
    fd = os.open(p, os.O_RDWR)
    try:
        assert os.fstat(fd).st_size == 8 * GiB
        for off, data in pieces:
            assert f4test.pread_all(fd, len(data), off) == data
        assert os.pread(fd, 6, 6 * GiB) == b"at six"
        # truncate between the pieces
        os.ftruncate(fd, 5 * GiB + 12345 + 1000)
        assert os.fstat(fd).st_size == 5 * GiB + 13345
        assert f4test.pread_all(fd, 70000, 5 * GiB + 12345) == \
            pieces[1][1][:1000]
        os.ftruncate(fd, 4 * GiB + 100)
        assert os.pread(fd, 300, 4 * GiB - 100) == pieces[0][1][:200]
    finally:
        os.close(fd)
    fs.remount()
    assert os.stat(p).st_size == 4 * GiB + 100
    fd = os.open(p, os.O_RDONLY)
    try:
        assert os.pread(fd, 300, 4 * GiB - 100) == pieces[0][1][:200]
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------
# the largest file

LIMIT_GEOMS = [
    pytest.param("ext4", id="ext4-4k"),
    pytest.param("ext4-1k", id="ext4-1k"),
    pytest.param("ext2", id="ext2-4k"),
    pytest.param("ext2", marks=pytest.mark.mkfs_opts("-b", "1024"),
                 id="ext2-1k"),
    pytest.param("ext3", id="ext3-4k"),
    pytest.param("ext4-64k", id="ext4-64k"),
]


@pytest.mark.parametrize("variant", LIMIT_GEOMS)
def test_max_file_size(fs, fs_factory, variant):
    lim = max_file_size(fs)
    bits, extents, _ = fs_geometry(fs)
    bs = 1 << bits
    if f4test.kernel_can_mount(variant):
        # the formula is the kernel's: check it on a kernel mount of the
        # same geometry
        if fs.driver == "kernel":
            assert probe_max_truncate(fs.path("probe")) == lim
        else:
            img = os.path.join(fs.workdir, "k.img")
            f4test.make_image(img, variant, fs.size, fs.mkfs_extra)
            k = fs_factory(variant, driver="kernel", image=img, name="k")
            assert probe_max_truncate(k.path("probe")) == lim
            k.unmount()
    p = fs.path("f")
    fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.ftruncate(fd, lim)
        assert os.fstat(fd).st_size == lim
        assert f4test.errno_of(os.ftruncate, fd, lim + 1) == errno.EFBIG
        assert os.fstat(fd).st_size == lim
        os.ftruncate(fd, 0)
        res = {
            "a few bytes before": pwrite_result(fd, b"abcd", lim - 2 * bs),
            "last byte": pwrite_result(fd, b"Z", lim - 1),
            "at the limit": pwrite_result(fd, b"abcd", lim),
            "past the limit": pwrite_result(fd, b"abcd", lim + bs),
            "far past": pwrite_result(fd, b"abcd", 1 << 62),
            "across the limit": pwrite_result(fd, b"0123456789", lim - 4),
        }
        # the kernel cuts a write that crosses the limit short
        assert res == {"a few bytes before": 4, "last byte": 1,
                       "at the limit": "EFBIG", "past the limit": "EFBIG",
                       "far past": "EFBIG", "across the limit": 4}
        assert os.fstat(fd).st_size == lim
        assert os.pread(fd, 4, lim - 2 * bs) == b"abcd"
        assert os.pread(fd, 10, lim - 4) == b"0123"
        assert os.pread(fd, 10, lim) == b""
        # O_APPEND at the limit
        fa = os.open(p, os.O_WRONLY | os.O_APPEND)
        try:
            assert f4test.errno_of(os.write, fa, b"x") == errno.EFBIG
        finally:
            os.close(fa)
        assert os.fstat(fd).st_size == lim
    finally:
        os.close(fd)
    fs.remount()
    fd = os.open(p, os.O_RDONLY)
    try:
        assert os.fstat(fd).st_size == lim
        assert os.pread(fd, 4, lim - 2 * bs) == b"abcd"
        assert os.pread(fd, 10, lim - 4) == b"0123"
        assert os.pread(fd, 4, lim - 3 * bs) == bytes(4)
    finally:
        os.close(fd)
    if f4test.kernel_can_mount(variant) and fs.driver != "kernel":
        # the kernel reads the same image
        fs.unmount()
        fs.fsck()
        k2 = fs_factory(variant, driver="kernel", image=fs.image, name="k2")
        fd = os.open(k2.path("f"), os.O_RDONLY)
        try:
            assert os.fstat(fd).st_size == lim
            assert os.pread(fd, 4, lim - 2 * bs) == b"abcd"
            assert os.pread(fd, 10, lim - 4) == b"0123"
        finally:
            os.close(fd)


@pytest.mark.variants("ext4", "ext4-1k")
def test_fallocate_at_the_limit(fs):
    import test_fallocate as tf
    lim = max_file_size(fs)
    bs = 1 << fs_geometry(fs)[0]
    p = fs.path("f")
    fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        tf.fallocate(fd, tf.FALLOC_FL_KEEP_SIZE, lim - 4 * bs, 4 * bs)
        assert os.fstat(fd).st_size == 0
        assert os.fstat(fd).st_blocks >= 4 * bs // 512
        assert tf.falloc_errno(fd, tf.FALLOC_FL_KEEP_SIZE, lim - bs,
                               2 * bs) == errno.EFBIG
        assert tf.falloc_errno(fd, 0, lim, bs) == errno.EFBIG
        tf.fallocate(fd, 0, lim - bs, bs)
        assert os.fstat(fd).st_size == lim
        assert os.pread(fd, 10, lim - 5) == bytes(5)
        os.ftruncate(fd, 0)
        assert os.fstat(fd).st_blocks == 0
    finally:
        os.close(fd)


@pytest.mark.variants("ext4", "ext2")
def test_rlimit_fsize(fs):
    """RLIMIT_FSIZE: EFBIG past the limit, a short write across it."""
    import resource
    import signal

    def body(p):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 * MiB, 1 * MiB))
        fd = os.open(p, os.O_CREAT | os.O_WRONLY, 0o644)
        try:
            out = [pwrite_result(fd, b"x" * 100, 1 * MiB - 50),
                   pwrite_result(fd, b"x", 1 * MiB),
                   pwrite_result(fd, b"x", 5 * GiB),
                   f4test.errname(f4test.errno_of(os.ftruncate, fd,
                                                  2 * MiB))]
        finally:
            os.close(fd)
        return out
    got = f4test.run_as(0, 0, body, fs.path("f"))
    assert got == [50, "EFBIG", "EFBIG", "EFBIG"]
    assert os.stat(fs.path("f")).st_size == 1 * MiB


# ---------------------------------------------------------------------------
# O_APPEND, O_TRUNC

@pytest.mark.variants("ext4", "ext2", "ext4-inline", "ext4-1k")
def test_o_append(fs):
    p = fs.path("f")
    write_file(p, b"start;")
    a = os.open(p, os.O_WRONLY | os.O_APPEND)
    b = os.open(p, os.O_RDWR | os.O_APPEND)
    try:
        os.write(a, b"one;")
        os.write(b, b"two;")
        os.lseek(a, 0, os.SEEK_SET)
        os.write(a, b"three;")               # still at the end
        assert os.lseek(a, 0, os.SEEK_CUR) == len(b"start;one;two;three;")
        # pwrite on an O_APPEND fd appends on Linux
        os.pwrite(b, b"four;", 0)
        assert os.pread(b, 6, 0) == b"start;"
        for i in range(100):
            os.write(a if i % 2 else b, b"%03d," % i)
    finally:
        os.close(a)
        os.close(b)
    want = b"start;one;two;three;four;" + b"".join(b"%03d," % i
                                                   for i in range(100))
    assert read_file(p) == want
    # append to a sparse file beyond 4 GiB
    q = fs.path("sparse")
    fd = os.open(q, os.O_CREAT | os.O_WRONLY, 0o644)
    os.ftruncate(fd, 4 * GiB + 5)
    os.close(fd)
    fd = os.open(q, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, b"tail")
    finally:
        os.close(fd)
    assert os.stat(q).st_size == 4 * GiB + 9
    fs.remount()
    assert read_file(p) == want
    fd = os.open(q, os.O_RDONLY)
    try:
        assert os.pread(fd, 100, 4 * GiB) == bytes(5) + b"tail"
    finally:
        os.close(fd)


@pytest.mark.variants("ext4", "ext2", "ext4-inline")
def test_o_trunc(fs, kernel_ext4):
    def body(m):
        f4test.sync_fs(m.mnt)
        free0 = m.statfs().f_bfree
        p = m.path("f")
        write_file(p, pattern(3 * MiB, 1))
        fd = os.open(p, os.O_WRONLY)
        os.pwrite(fd, b"far", 5 * GiB)
        os.close(fd)
        os.utime(p, (1000000000, 1000000000))
        out = {}
        fd = os.open(p, os.O_WRONLY | os.O_TRUNC)
        try:
            st = os.fstat(fd)
            out["size"], out["blocks"] = st.st_size, st.st_blocks
            out["mtime changed"] = st.st_mtime_ns != 10 ** 18
            os.write(fd, b"new")
        finally:
            os.close(fd)
        out["content"] = read_file(p)
        f4test.sync_fs(m.mnt)
        out["free back"] = m.statfs().f_bfree - free0
        # O_TRUNC of an empty file; with O_RDONLY (Linux truncates)
        e = m.path("e")
        write_file(e, b"")
        os.close(os.open(e, os.O_WRONLY | os.O_TRUNC))
        out["empty"] = os.stat(e).st_size
        write_file(e, b"abc")
        os.close(os.open(e, os.O_RDONLY | os.O_TRUNC))
        out["rdonly trunc"] = os.stat(e).st_size
        # O_TRUNC on a directory or a fifo
        os.mkdir(m.path("d"))
        out["dir"] = f4test.errname(f4test.errno_of(
            os.open, m.path("d"), os.O_RDONLY | os.O_TRUNC))
        os.mkfifo(m.path("fifo"))
        fd = os.open(m.path("fifo"), os.O_RDWR | os.O_TRUNC)
        os.close(fd)
        out["fifo"] = stat.S_ISFIFO(os.stat(m.path("fifo")).st_mode)
        return out
    a = body(fs)
    b = body(kernel_ext4)
    # b"new" may go back into the inode on inline_data (kernel ext4 keeps
    # a file that left the inode in blocks): either is fine
    assert -1 <= a.pop("free back") <= 0
    b.pop("free back")
    assert a == b
    assert a["size"] == 0 and a["blocks"] == 0 and a["content"] == b"new"
    assert a["mtime changed"]
    fs.remount()
    assert read_file(fs.path("f")) == b"new"


# ---------------------------------------------------------------------------
# O_DIRECT

def _aligned(n):
    return mmap.mmap(-1, n)


@pytest.mark.variants("ext4", "ext4-1k", "ext2", "ext4-inline", "ext4-64k")
def test_o_direct(fs):
    p = fs.path("f")
    CH = 64 * KiB
    data = pattern(4 * CH, 11)
    fd = os.open(p, os.O_CREAT | os.O_RDWR | os.O_DIRECT, 0o644)
    try:
        buf = _aligned(CH)
        for i in range(4):
            buf[:] = data[i * CH:(i + 1) * CH]
            assert os.pwrite(fd, buf, i * CH) == CH
        assert os.fstat(fd).st_size == 4 * CH
        # read back directly, in pieces and at once
        rbuf = _aligned(4 * CH)
        assert os.preadv(fd, [rbuf], 0) == 4 * CH
        assert bytes(rbuf) == data
        small = _aligned(CH)
        assert os.preadv(fd, [small], 2 * CH) == CH
        assert bytes(small) == data[2 * CH:3 * CH]
        # past EOF: a short read, then nothing
        assert os.preadv(fd, [rbuf], 3 * CH) == CH
        assert os.preadv(fd, [rbuf], 4 * CH) == 0
        # extend with a direct write beyond EOF, leaving a hole
        buf[:] = pattern(CH, 12)
        assert os.pwrite(fd, buf, 8 * CH) == CH
        assert os.fstat(fd).st_size == 9 * CH
        assert os.preadv(fd, [small], 6 * CH) == CH
        assert bytes(small) == bytes(CH)
    finally:
        os.close(fd)
    # buffered and direct views agree both ways
    want = data + bytes(4 * CH) + pattern(CH, 12)
    assert read_file(p) == want
    fd = os.open(p, os.O_RDWR)
    try:
        os.pwrite(fd, b"buffered!", CH + 10)
    finally:
        os.close(fd)
    want = want[:CH + 10] + b"buffered!" + want[CH + 19:]
    fd = os.open(p, os.O_RDONLY | os.O_DIRECT)
    try:
        rbuf = _aligned(CH)
        assert os.preadv(fd, [rbuf], CH) == CH
        assert bytes(rbuf) == want[CH:2 * CH]
    finally:
        os.close(fd)
    fs.remount()
    assert read_file(p) == want
    fd = os.open(p, os.O_RDONLY | os.O_DIRECT)
    try:
        rbuf = _aligned(9 * CH)
        assert os.preadv(fd, [rbuf], 0) == 9 * CH
        assert bytes(rbuf) == want
    finally:
        os.close(fd)
