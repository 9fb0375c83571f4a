"""Inode attributes: stat fields, chmod/chown, truncate, utimensat,
timestamp granularity and range, which operations touch mtime/ctime,
setuid/setgid clearing, statfs.

The expectations are what the kernel's ext4 does (F4_DRIVER=kernel passes
all of them); several tests also compare directly with a kernel mount.
"""

import errno
import os
import stat
import time

import pytest

import f4test
from f4test import (RENAME_EXCHANGE, assert_errno, pattern, read_file,
                    renameat2, run_as, utimensat, write_file)

U1 = (2000, 2000)
U2 = (2001, 2001)

S32_MIN = -(1 << 31)
S32_MAX = (1 << 31) - 1
EXT4_EXTRA_TIMESTAMP_MAX = (1 << 34) - 1 + S32_MIN   # 2446-05-10


@pytest.fixture(autouse=True)
def _umask():
    old = os.umask(0o022)
    yield
    os.umask(old)


def big_inodes(fs):
    """Inodes of more than 128 bytes hold nanoseconds and epoch bits."""
    return fs.inode_size > 128


def tick(fs):
    """Sleep long enough for the next timestamp to differ."""
    if big_inodes(fs):
        time.sleep(0.03)
    else:
        # one-second timestamps: wait until the next second has begun
        now = time.time()
        time.sleep(1 - (now - int(now)) + 0.03)


def expect_time(fs, sec, nsec):
    """The (sec, nsec) the kernel's ext4 stores for a requested time."""
    if big_inodes(fs):
        lo, hi = S32_MIN, EXT4_EXTRA_TIMESTAMP_MAX
    else:
        lo, hi = S32_MIN, S32_MAX
        nsec = 0
    # The VFS clamps to the range and drops the nanoseconds of a time
    # that ends up on either bound (timestamp_truncate()).
    if sec <= lo:
        return lo, 0
    if sec >= hi:
        return hi, 0
    return sec, nsec


def ns(t):
    return t[0] * 1000000000 + t[1]


# ---------------------------------------------------------------------------
# stat of new objects

def test_stat_new_objects(fs):
    t0 = time.time()
    tick(fs)
    root_before = os.stat(fs.mnt)
    tick(fs)
    write_file(fs.path("f"), b"")
    os.mkdir(fs.path("d"))
    os.symlink("f", fs.path("s"))
    os.mkfifo(fs.path("p"), 0o600)
    t1 = time.time()
    rst = os.stat(fs.mnt)
    sts = {n: os.lstat(fs.path(n)) for n in ("f", "d", "s", "p")}
    inos = {st.st_ino for st in sts.values()} | {rst.st_ino}
    assert len(inos) == 5, "inode numbers must be distinct"
    for n, st in sts.items():
        assert st.st_dev == rst.st_dev, n
        assert (st.st_uid, st.st_gid) == (0, 0), n
        assert st.st_blksize == fs.blocksize, n
        # a new inode gets one timestamp for all three
        assert st.st_atime_ns == st.st_mtime_ns == st.st_ctime_ns, n
        assert t0 - 1 <= st.st_mtime <= t1 + 1, n
    f, d, s, p = sts["f"], sts["d"], sts["s"], sts["p"]
    assert stat.S_ISREG(f.st_mode) and stat.S_IMODE(f.st_mode) == 0o644
    assert (f.st_nlink, f.st_size, f.st_blocks) == (1, 0, 0)
    assert stat.S_ISDIR(d.st_mode) and stat.S_IMODE(d.st_mode) == 0o755
    assert d.st_nlink == 2
    if fs.variant == "ext4-inline":
        # a new directory lives in the inode's i_block + system.data
        assert (d.st_size, d.st_blocks) == (60, 0)
    else:
        assert (d.st_size, d.st_blocks) == (fs.blocksize, fs.blocksize // 512)
    assert stat.S_ISLNK(s.st_mode) and s.st_size == 1 and s.st_blocks == 0
    assert stat.S_ISFIFO(p.st_mode) and stat.S_IMODE(p.st_mode) == 0o600
    # the parent: mtime and ctime moved, one more link for d
    assert rst.st_mtime_ns > root_before.st_mtime_ns
    assert rst.st_ctime_ns > root_before.st_ctime_ns
    assert rst.st_nlink == root_before.st_nlink + 1


def test_blocks_of_small_files(fs):
    bs = fs.blocksize
    write_file(fs.path("one"), b"x")
    write_file(fs.path("three"), pattern(3 * bs))
    write_file(fs.path("sparse"), b"")
    with open(fs.path("sparse"), "r+b") as f:
        f.seek(5 * bs)
        f.write(b"y")

    def check():
        one = os.stat(fs.path("one"))
        if fs.variant == "ext4-inline":
            # inline data: no data block; ext4 reports the size in
            # 512-byte units so that tools do not take it for a hole
            assert one.st_blocks == 1
        else:
            assert one.st_blocks == bs // 512
        assert os.stat(fs.path("three")).st_blocks == 3 * bs // 512
        st = os.stat(fs.path("sparse"))
        assert st.st_size == 5 * bs + 1
        assert st.st_blocks == bs // 512
    check()
    fs.remount()
    check()


# ---------------------------------------------------------------------------
# chmod / chown

def test_chmod_chown(fs):
    p = fs.path("f")
    write_file(p, b"data")
    os.mkdir(fs.path("d"))
    os.symlink("f", fs.path("s"))
    for mode in (0o000, 0o777, 0o4755, 0o2755, 0o1777, 0o7777, 0o640, 0o001):
        c0 = os.stat(p).st_ctime_ns
        tick(fs)
        os.chmod(p, mode)
        st = os.stat(p)
        assert stat.S_ISREG(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == mode, oct(mode)
        assert st.st_ctime_ns > c0
        os.chmod(fs.path("d"), mode)
        assert os.stat(fs.path("d")).st_mode == stat.S_IFDIR | mode
    os.chmod(p, 0o640)
    os.chmod(fs.path("d"), 0o755)
    # chmod through a symlink changes the target
    os.chmod(fs.path("s"), 0o600)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
    assert stat.S_IMODE(os.lstat(fs.path("s")).st_mode) == 0o777

    os.chown(p, 1234, 5678)
    st = os.stat(p)
    assert (st.st_uid, st.st_gid) == (1234, 5678)
    os.chown(p, -1, 42)
    assert (os.stat(p).st_uid, os.stat(p).st_gid) == (1234, 42)
    os.chown(p, 77, -1)
    assert (os.stat(p).st_uid, os.stat(p).st_gid) == (77, 42)
    # 32-bit ids (ext4 keeps the high 16 bits in osd2)
    os.chown(p, 100000, 200000)
    assert (os.stat(p).st_uid, os.stat(p).st_gid) == (100000, 200000)
    os.lchown(fs.path("s"), 3, 4)
    assert (os.lstat(fs.path("s")).st_uid, os.lstat(fs.path("s")).st_gid) == (3, 4)
    assert os.stat(p).st_uid == 100000
    os.chown(fs.path("d"), 65534, 65534)
    fs.remount()
    assert os.stat(p).st_mode == stat.S_IFREG | 0o600
    assert (os.stat(p).st_uid, os.stat(p).st_gid) == (100000, 200000)
    assert (os.lstat(fs.path("s")).st_uid, os.lstat(fs.path("s")).st_gid) == (3, 4)
    assert (os.stat(fs.path("d")).st_uid, os.stat(fs.path("d")).st_gid) == (
        65534, 65534)


# ---------------------------------------------------------------------------
# truncate

def test_truncate(fs):
    bs = fs.blocksize
    p = fs.path("f")
    data = pattern(3 * bs + 123)
    write_file(p, data)
    # down to the middle of the second block, then up again: the tail of
    # that block and everything after must read as zeros
    os.truncate(p, bs + 100)
    st = os.stat(p)
    assert st.st_size == bs + 100
    assert st.st_blocks == 2 * bs // 512
    assert read_file(p) == data[:bs + 100]
    os.truncate(p, 3 * bs)
    assert os.stat(p).st_size == 3 * bs
    assert os.stat(p).st_blocks == 2 * bs // 512        # extending is sparse
    got = read_file(p)
    assert got[:bs + 100] == data[:bs + 100]
    assert got[bs + 100:] == bytes(2 * bs - 100)
    # through an fd, far up and to zero
    fd = os.open(p, os.O_RDWR)
    os.ftruncate(fd, 1 << 30)
    assert os.fstat(fd).st_size == 1 << 30
    assert os.fstat(fd).st_blocks == 2 * bs // 512
    assert os.pread(fd, 10, (1 << 30) - 10) == bytes(10)
    assert os.pread(fd, 10, 1 << 30) == b""
    os.ftruncate(fd, 0)
    assert os.fstat(fd).st_size == 0
    assert os.fstat(fd).st_blocks == 0
    assert os.pread(fd, 10, 0) == b""
    os.pwrite(fd, b"after", 7)
    assert os.pread(fd, 20, 0) == bytes(7) + b"after"
    os.close(fd)
    assert_errno(errno.EINVAL, os.truncate, p, -1)
    assert_errno(errno.EISDIR, os.truncate, fs.mnt, 0)
    assert_errno(errno.ENOENT, os.truncate, fs.path("missing"), 0)
    fs.remount()
    assert read_file(p) == bytes(7) + b"after"

    # a file that starts small (inline on ext4-inline) and grows past the
    # inode, then shrinks back
    q = fs.path("g")
    write_file(q, b"small")
    os.truncate(q, 2 * bs + 5)
    assert read_file(q) == b"small" + bytes(2 * bs)
    os.truncate(q, 3)
    assert read_file(q) == b"sma"
    fs.remount()
    assert read_file(q) == b"sma"


# ---------------------------------------------------------------------------
# utimensat

@pytest.mark.variants(*f4test.DEFAULT_VARIANTS, "ext4-i128")
def test_utimensat(fs):
    p = fs.path("f")
    write_file(p, b"x")
    os.symlink("f", fs.path("s"))

    def times(path, follow=True):
        st = os.stat(path) if follow else os.lstat(path)
        return st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns

    a_req, m_req = (1000000000, 123456789), (1100000000, 987654321)
    c0 = times(p)[2]
    tick(fs)
    utimensat(p, a_req, m_req)
    a, m, c = times(p)
    assert a == ns(expect_time(fs, *a_req))
    assert m == ns(expect_time(fs, *m_req))
    assert c > c0, "utimensat must update ctime"

    # UTIME_OMIT leaves that time alone; UTIME_NOW takes the current time
    tick(fs)
    t0 = time.time()
    utimensat(p, "omit", "now")
    a2, m2, c2 = times(p)
    assert a2 == a
    assert t0 - 1 <= m2 / 1e9 <= time.time() + 1
    assert c2 >= m2 - 1000000000 and c2 > c
    tick(fs)
    utimensat(p, "now", "omit")
    a3, m3, c3 = times(p)
    assert m3 == m2 and a3 > a2 and c3 > c2
    # both omitted: nothing changes, not even ctime
    tick(fs)
    utimensat(p, "omit", "omit")
    assert times(p) == (a3, m3, c3)

    # AT_SYMLINK_NOFOLLOW changes the link, not the target
    utimensat(fs.path("s"), (5, 0), (6, 0), follow=False)
    assert times(fs.path("s"), follow=False)[:2] == (5 * 10**9, 6 * 10**9)
    assert times(p)[:2] == (a3, m3)

    # directories too
    utimensat(fs.mnt, (7, 70), (8, 80))
    assert times(fs.mnt)[:2] == (ns(expect_time(fs, 7, 70)),
                                 ns(expect_time(fs, 8, 80)))
    assert_errno(errno.EINVAL, utimensat, p, (0, 1000000000), (0, 0))
    assert_errno(errno.ENOENT, utimensat, fs.path("missing"), None, None)

    fs.remount()
    assert times(p)[:2] == (a3, m3)
    assert times(fs.path("s"), follow=False)[:2] == (5 * 10**9, 6 * 10**9)


TIME_CASES = [
    (0, 0), (1, 1), (1000, 999999999), (-1, 500000000), (-1000, 5),
    (S32_MAX, 0), (S32_MAX + 1, 7), (S32_MAX + 100, 7), (1 << 32, 1),
    (EXT4_EXTRA_TIMESTAMP_MAX, 999999999), (EXT4_EXTRA_TIMESTAMP_MAX + 1, 3),
    (1 << 40, 0), (S32_MIN, 0), (S32_MIN, 777), (S32_MIN - 100, 5),
    (S32_MIN + 1, 999999999), (EXT4_EXTRA_TIMESTAMP_MAX - 1, 999999999), (1700000000, 123456789),
]


@pytest.mark.variants("ext4", "ext2", "ext4-1k", "ext4-i128", "ext2-i128")
def test_timestamp_range_vs_kernel(fs, kernel_ext4, fs_factory):
    """Granularity and range of timestamps: nanoseconds and 1901..2446
    with 256-byte inodes, seconds and 1901..2038 with 128-byte inodes;
    values outside are clamped.  Compared with the kernel, and the image
    written by the driver under test is read back by the kernel."""
    want = {}
    for i, (sec, nsec) in enumerate(TIME_CASES):
        name = "t%02d" % i
        for f in (fs, kernel_ext4):
            write_file(f.path(name), b"")
            # atime gets the case, mtime its mirror image in the list
            other = TIME_CASES[-1 - i]
            utimensat(f.path(name), (sec, nsec), other)
        want[name] = (ns(expect_time(fs, sec, nsec)),
                      ns(expect_time(fs, *TIME_CASES[-1 - i])))

    def read(f):
        return {n: (os.stat(f.path(n)).st_atime_ns, os.stat(f.path(n)).st_mtime_ns)
                for n in want}
    got_k = read(kernel_ext4)
    assert got_k == want, "the kernel differs from the model in this test"
    assert read(fs) == want
    fs.remount()
    assert read(fs) == want
    # the on-disk encoding (epoch bits, nanoseconds) as the kernel reads it
    fs.unmount()
    view = fs_factory(fs.variant, driver="kernel", image=fs.image, name="kview")
    assert read(view) == want


# ---------------------------------------------------------------------------
# which operations update which times

def _mc(path):
    st = os.lstat(path)
    return st.st_mtime_ns, st.st_ctime_ns


def test_times_updated_by_operations(fs):
    m = fs.mnt
    for d in ("A", "B", "A/sub", "X", "Y", "X/dx"):
        os.mkdir(os.path.join(m, d))
    for f in ("A/f", "A/keep", "B/victim", "Y/fy", "A/tr", "A/empty"):
        write_file(os.path.join(m, f), b"abc" if f != "A/empty" else b"")

    def case(label, op, expect, watch_after=None):
        """expect: {path: (mtime_changes, ctime_changes)} for paths as they
        are named before op; watch_after renames a path for after op."""
        watch_after = watch_after or {}
        for p in expect:
            utimensat(os.path.join(m, p), (1000, 0), (1000, 0))
        before = {p: _mc(os.path.join(m, p)) for p in expect}
        tick(fs)
        op()
        for p, (want_m, want_c) in expect.items():
            after = _mc(os.path.join(m, watch_after.get(p, p)))
            got = (after[0] != before[p][0], after[1] != before[p][1])
            assert got == (want_m, want_c), (
                "%s: %s: mtime/ctime changed %s, the kernel's ext4 gives %s"
                % (label, p, got, (want_m, want_c)))

    P = lambda *a: os.path.join(m, *a)          # noqa: E731

    def write_some():
        fd = os.open(P("A", "f"), os.O_WRONLY)
        os.pwrite(fd, b"xyz", 1)
        os.close(fd)

    def append_some():
        with open(P("A", "f"), "ab") as f:
            f.write(b"+")

    def read_some():
        with open(P("A", "f"), "rb") as f:
            f.read()

    def ftrunc_same():
        fd = os.open(P("A", "tr"), os.O_WRONLY)
        os.ftruncate(fd, os.fstat(fd).st_size)
        os.close(fd)

    case("write", write_some, {"A/f": (True, True), "A": (False, False)})
    case("append", append_some, {"A/f": (True, True)})
    case("read", read_some, {"A/f": (False, False), "A": (False, False)})
    case("truncate down", lambda: os.truncate(P("A", "tr"), 1),
         {"A/tr": (True, True), "A": (False, False)})
    case("truncate up", lambda: os.truncate(P("A", "tr"), 5000),
         {"A/tr": (True, True)})
    case("truncate to same size", lambda: os.truncate(P("A", "tr"), 5000),
         {"A/tr": (True, True)})
    case("ftruncate to same size", ftrunc_same, {"A/tr": (True, True)})
    case("O_TRUNC of empty file",
         lambda: os.close(os.open(P("A", "empty"), os.O_WRONLY | os.O_TRUNC)),
         {"A/empty": (True, True)})
    case("O_TRUNC", lambda: os.close(os.open(P("A", "tr"),
                                             os.O_WRONLY | os.O_TRUNC)),
         {"A/tr": (True, True)})
    case("chmod", lambda: os.chmod(P("A", "f"), 0o600),
         {"A/f": (False, True), "A": (False, False)})
    case("chown", lambda: os.chown(P("A", "f"), 5, 5),
         {"A/f": (False, True), "A": (False, False)})
    case("setxattr", lambda: os.setxattr(P("A", "f"), "user.k", b"v"),
         {"A/f": (False, True), "A": (False, False)})
    case("link", lambda: os.link(P("A", "f"), P("A", "f2")),
         {"A/f": (False, True), "A": (True, True)})
    case("link across dirs", lambda: os.link(P("A", "f"), P("B", "f3")),
         {"A/f": (False, True), "A": (False, False), "B": (True, True)})
    case("unlink one of several links", lambda: os.unlink(P("A", "f2")),
         {"A/f": (False, True), "A": (True, True), "B": (False, False)})
    case("create", lambda: write_file(P("A", "new"), b""),
         {"A": (True, True), "A/f": (False, False)})
    case("mkdir", lambda: os.mkdir(P("A", "nd")), {"A": (True, True)})
    case("rmdir", lambda: os.rmdir(P("A", "nd")), {"A": (True, True)})
    case("symlink", lambda: os.symlink("f", P("A", "sl")), {"A": (True, True)})
    case("mknod", lambda: os.mkfifo(P("A", "fifo")), {"A": (True, True)})
    case("unlink", lambda: os.unlink(P("A", "fifo")), {"A": (True, True)})
    case("rename in one dir", lambda: os.rename(P("A", "new"), P("A", "new2")),
         {"A": (True, True), "A/new": (False, True), "B": (False, False)},
         {"A/new": "A/new2"})
    # across directories, over an existing file whose link count drops
    os.link(P("B", "victim"), P("B", "victim_alias"))
    case("rename file across dirs over a file",
         lambda: os.rename(P("A", "keep"), P("B", "victim")),
         {"A": (True, True), "B": (True, True), "A/keep": (False, True),
          "B/victim_alias": (False, True)},
         {"A/keep": "B/victim"})
    case("rename dir across dirs",
         lambda: os.rename(P("A", "sub"), P("B", "sub")),
         {"A": (True, True), "B": (True, True), "A/sub": (False, True)},
         {"A/sub": "B/sub"})
    case("RENAME_EXCHANGE dir and file across dirs",
         lambda: renameat2(P("X", "dx"), P("Y", "fy"), RENAME_EXCHANGE),
         {"X": (True, True), "Y": (True, True), "X/dx": (False, True),
          "Y/fy": (False, True)},
         {"X/dx": "Y/fy", "Y/fy": "X/dx"})
    case("utimensat", lambda: utimensat(P("A", "f"), (5, 0), (5, 0)),
         {"A": (False, False)})


def test_atime_relatime(fs):
    """The kernel's default relatime: a read updates atime if it is not
    newer than mtime/ctime (or older than a day); otherwise it stays."""
    p = fs.path("f")
    write_file(p, b"hello")
    utimensat(p, (1000, 0), "omit")
    tick(fs)
    t0 = time.time()
    with open(p, "rb") as f:
        assert f.read() == b"hello"
    a1 = os.stat(p).st_atime
    assert a1 >= t0 - 1, "a read with an old atime must update it"
    tick(fs)
    with open(p, "rb") as f:
        f.read()
    assert os.stat(p).st_atime == a1, "relatime: a fresh atime stays"


# ---------------------------------------------------------------------------
# setuid / setgid clearing

def _write_byte(path):
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, b"w")
    finally:
        os.close(fd)


@pytest.mark.mount_opts("allow_other")
@pytest.mark.variants("ext4", "ext2")
def test_setid_bits_cleared(fs):
    p = fs.path("f")
    write_file(p, b"data")

    def setup(mode, uid=U1[0], gid=U1[1]):
        os.chown(p, uid, gid)
        os.chmod(p, mode)

    def mode():
        return stat.S_IMODE(os.stat(p).st_mode)

    # write by the (unprivileged) owner clears S_ISUID, and S_ISGID when
    # group-exec is set
    setup(0o6777)
    run_as(*U1, _write_byte, p)
    assert mode() == 0o777
    # write by another user, same
    setup(0o6777)
    run_as(*U2, _write_byte, p)
    assert mode() == 0o777
    # S_ISGID without group-exec (mandatory-locking marker): cleared only
    # when the writer is not in the file's group
    setup(0o6767)
    run_as(*U1, _write_byte, p)
    assert mode() == 0o2767
    setup(0o6767)
    run_as(*U2, _write_byte, p)
    assert mode() == 0o767
    # truncate, even to the same size, clears them too
    setup(0o6777)
    run_as(*U2, os.truncate, p, 3)
    assert mode() == 0o777
    setup(0o6777)
    run_as(*U2, os.truncate, p, 3)
    assert mode() == 0o777
    # root (CAP_FSETID) keeps them on write and truncate
    setup(0o6777)
    _write_byte(p)
    os.truncate(p, 2)
    assert mode() == 0o6777
    # a timestamp update does not clear them
    setup(0o6777)
    run_as(*U2, utimensat, p, None, None)
    assert mode() == 0o6777
    # chown, even by root and even to the same ids, clears S_ISUID and
    # (with group-exec) S_ISGID of a regular file
    setup(0o6755)
    os.chown(p, -1, -1)
    assert mode() == 0o755
    setup(0o6755)
    os.chown(p, 5, 5)
    assert mode() == 0o755
    setup(0o6745)
    os.chown(p, 6, 6)
    assert mode() == 0o2745
    # ... but not of a directory
    os.mkdir(fs.path("d"))
    os.chmod(fs.path("d"), 0o6755)
    os.chown(fs.path("d"), 7, 7)
    assert stat.S_IMODE(os.stat(fs.path("d")).st_mode) == 0o6755
    # chmod by an owner who is not in the file's group drops S_ISGID
    setup(0o755, gid=0)
    run_as(*U1, os.chmod, p, 0o6777)
    assert mode() == 0o4777
    setup(0o755)
    run_as(*U1, os.chmod, p, 0o6777)
    assert mode() == 0o6777
    fs.remount()
    assert mode() == 0o6777


# ---------------------------------------------------------------------------
# statfs

def test_statfs_plausible(fs):
    sb = f4test.read_superblock(fs.image)
    s = fs.statfs()
    bs = fs.blocksize
    assert s.f_bsize == bs and s.f_frsize == bs
    assert s.f_namemax == 255
    assert 0 < s.f_blocks <= sb["blocks"]
    assert 0 < s.f_bavail <= s.f_bfree <= s.f_blocks
    assert s.f_files == sb["s_inodes_count"]
    # inodes 1..10 are reserved and 11 is lost+found
    assert s.f_ffree == s.f_files - 11
    assert s.f_favail == s.f_ffree

    f4test.sync_fs(fs.mnt)
    base = fs.statfs()
    size = 4 << 20
    write_file(fs.path("big"), pattern(size))
    os.mkdir(fs.path("dir"))
    f4test.sync_fs(fs.mnt)
    s2 = fs.statfs()
    assert base.f_bfree - s2.f_bfree >= size // bs
    assert base.f_bfree - s2.f_bfree <= size // bs + 64
    assert s2.f_ffree == base.f_ffree - 2
    assert s2.f_blocks == base.f_blocks and s2.f_files == base.f_files
    os.unlink(fs.path("big"))
    os.rmdir(fs.path("dir"))
    f4test.sync_fs(fs.mnt)
    # freed when the kernel forgets the inodes, a moment after the calls
    s3 = f4test.wait_statfs(fs.mnt, lambda st: (st.f_bfree, st.f_ffree) ==
                            (base.f_bfree, base.f_ffree))
    assert (s3.f_bfree, s3.f_ffree) == (base.f_bfree, base.f_ffree)
    fs.remount()
    s4 = fs.statfs()
    assert (s4.f_bfree, s4.f_ffree, s4.f_blocks) == (
        base.f_bfree, base.f_ffree, base.f_blocks)


def _statfs_vs_kernel(fs, view, mine):
    k = view.statfs()
    sb = f4test.read_superblock(view.image)
    for field in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_files",
                  "f_ffree", "f_namemax"):
        assert getattr(mine, field) == getattr(k, field), (
            "%s: %s, kernel ext4 %s" % (field, getattr(mine, field),
                                        getattr(k, field)))
    # The kernel also holds back min(2%, 4096 clusters) of the blocks for
    # itself (s_resv_clusters): its f_bavail is f_bfree - r_blocks - resv.
    # A daemon may or may not subtract that internal reserve.
    assert k.f_bavail <= mine.f_bavail <= mine.f_bfree - sb["r_blocks"], (
        "f_bavail %d, kernel %d, f_bfree - r_blocks %d" % (
            mine.f_bavail, k.f_bavail, mine.f_bfree - sb["r_blocks"]))


@pytest.mark.variants("ext2", "ext3", "ext4", "ext4-1k", "ext4-inline")
def test_statfs_matches_kernel(fs, fs_factory):
    fresh = fs.statfs()
    for i in range(20):
        os.makedirs(fs.path("d%d" % (i % 4), "e%d" % i))
        write_file(fs.path("d%d" % (i % 4), "f%d" % i), pattern(i * 7000))
    f4test.sync_fs(fs.mnt)
    busy = fs.statfs()
    fs.unmount()
    view = fs_factory(fs.variant, driver="kernel", image=fs.image, name="kview")
    _statfs_vs_kernel(fs, view, busy)
    view.unmount()
    fs2 = fs_factory(fs.variant, mount=True, name="fresh")
    fresh2 = fs2.statfs()
    assert fresh2 == fresh
    fs2.unmount()
    view2 = fs_factory(fs.variant, driver="kernel", image=fs2.image,
                       name="kview2")
    _statfs_vs_kernel(fs2, view2, fresh)
