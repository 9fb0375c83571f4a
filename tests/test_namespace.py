"""Namespace operations: create, mkdir/rmdir, unlink, link, symlink, mknod,
rename and renameat2, name length and link-count limits.

Expected errnos are the ones the kernel's ext4 returns (checked with
F4_DRIVER=kernel); fuse4fs has to give the same.
"""

import errno
import os
import random
import stat

import pytest

import f4test
from f4test import (RENAME_EXCHANGE, RENAME_NOREPLACE, assert_errno, pattern,
                    read_file, renameat2, write_file)


@pytest.fixture(autouse=True)
def _umask():
    old = os.umask(0o022)
    yield
    os.umask(old)


def ino(p):
    return os.lstat(p).st_ino


def nlink(p):
    return os.lstat(p).st_nlink


# ---------------------------------------------------------------------------
# create / open

def test_create_excl(fs):
    p = fs.path("f")
    fd = os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    os.write(fd, b"first")
    os.close(fd)
    st = os.stat(p)
    assert stat.S_ISREG(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o644          # 0666 & ~022
    assert (st.st_uid, st.st_gid, st.st_nlink, st.st_size) == (0, 0, 1, 5)

    assert_errno(errno.EEXIST, os.open, p, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    # O_CREAT without O_EXCL opens the existing file and keeps its data
    # and mode.
    fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o600)
    assert os.read(fd, 100) == b"first"
    os.close(fd)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o644
    # O_EXCL does not follow a symlink, even a dangling one.
    os.symlink("nowhere", fs.path("dangling"))
    assert_errno(errno.EEXIST, os.open, fs.path("dangling"),
                 os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    assert not os.path.lexists(fs.path("nowhere"))
    # O_CREAT without O_EXCL through a dangling symlink creates the target.
    os.close(os.open(fs.path("dangling"), os.O_CREAT | os.O_WRONLY, 0o640))
    assert stat.S_IMODE(os.stat(fs.path("nowhere")).st_mode) == 0o640
    # Creating in a missing directory or below a file.
    assert_errno(errno.ENOENT, os.open, fs.path("nodir", "x"),
                 os.O_CREAT | os.O_WRONLY)
    assert_errno(errno.ENOTDIR, os.open, fs.path("f", "x"),
                 os.O_CREAT | os.O_WRONLY)
    assert_errno(errno.ENOTDIR, os.open, fs.path("f") + "/", os.O_RDONLY)
    # Directories: O_CREAT on an existing dir, write access, O_DIRECTORY.
    os.mkdir(fs.path("d"))
    assert_errno(errno.EISDIR, os.open, fs.path("d"), os.O_CREAT | os.O_RDONLY)
    assert_errno(errno.EEXIST, os.open, fs.path("d"),
                 os.O_CREAT | os.O_EXCL | os.O_RDONLY)
    assert_errno(errno.EISDIR, os.open, fs.path("d"), os.O_WRONLY)
    assert_errno(errno.EISDIR, os.open, fs.path("d"), os.O_RDWR)
    assert_errno(errno.ENOTDIR, os.open, p, os.O_RDONLY | os.O_DIRECTORY)
    assert_errno(errno.ENOENT, os.open, fs.path("missing"), os.O_RDONLY)

    fs.remount()
    assert read_file(p) == b"first"
    assert read_file(fs.path("nowhere")) == b""
    assert os.readlink(fs.path("dangling")) == "nowhere"


def test_create_many_kinds_then_remount(fs):
    os.mkdir(fs.path("d"))
    write_file(fs.path("d", "file"), b"data")
    os.symlink("file", fs.path("d", "sl"))
    os.mkfifo(fs.path("d", "fifo"))
    before = f4test.snapshot(fs.mnt)
    fs.remount()
    d = f4test.diff_snapshots(before, f4test.snapshot(fs.mnt),
                              ("before", "after remount"))
    assert not d, d


# ---------------------------------------------------------------------------
# mkdir / rmdir / unlink

def test_mkdir_rmdir(fs):
    root_links = nlink(fs.mnt)
    os.mkdir(fs.path("d"), 0o750)
    st = os.stat(fs.path("d"))
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o750
    assert st.st_nlink == 2
    assert nlink(fs.mnt) == root_links + 1
    assert os.stat(fs.path("d", "..")).st_ino == ino(fs.mnt)
    assert os.stat(fs.path("d", ".")).st_ino == st.st_ino
    assert sorted(os.listdir(fs.path("d"))) == []

    assert_errno(errno.EEXIST, os.mkdir, fs.path("d"))
    assert_errno(errno.EEXIST, os.mkdir, fs.mnt)
    write_file(fs.path("file"), b"x")
    assert_errno(errno.EEXIST, os.mkdir, fs.path("file"))
    assert_errno(errno.ENOTDIR, os.mkdir, fs.path("file", "sub"))
    assert_errno(errno.ENOENT, os.mkdir, fs.path("no", "sub"))

    os.mkdir(fs.path("d", "sub"))
    assert nlink(fs.path("d")) == 3
    write_file(fs.path("d", "sub", "f"), b"")
    assert_errno(errno.ENOTEMPTY, os.rmdir, fs.path("d"))
    assert_errno(errno.ENOTEMPTY, os.rmdir, fs.path("d", "sub"))
    assert_errno(errno.ENOTDIR, os.rmdir, fs.path("file"))
    assert_errno(errno.ENOTDIR, os.rmdir, fs.path("d", "sub", "f"))
    assert_errno(errno.EISDIR, os.unlink, fs.path("d"))
    assert_errno(errno.EISDIR, os.unlink, fs.mnt)
    assert_errno(errno.EINVAL, os.rmdir, fs.path("d", "."))
    assert_errno(errno.ENOTEMPTY, os.rmdir, fs.path("d", ".."))
    assert_errno(errno.ENOTEMPTY, os.rmdir, fs.path("d", "sub", ".."))
    assert_errno(errno.EBUSY, os.rmdir, fs.mnt)
    assert_errno(errno.ENOENT, os.rmdir, fs.path("nonexistent"))

    os.unlink(fs.path("d", "sub", "f"))
    os.rmdir(fs.path("d", "sub"))
    assert nlink(fs.path("d")) == 2
    assert_errno(errno.ENOENT, os.stat, fs.path("d", "sub"))
    fs.remount()
    assert nlink(fs.path("d")) == 2
    assert nlink(fs.mnt) == root_links + 1
    os.rmdir(fs.path("d"))
    assert nlink(fs.mnt) == root_links
    fs.remount()
    assert nlink(fs.mnt) == root_links
    assert sorted(os.listdir(fs.mnt)) == ["file", "lost+found"]


def test_unlink_open_file(fs):
    p = fs.path("f")
    data = pattern(50000)
    write_file(p, data)
    free0 = fs.statfs().f_bfree
    fd = os.open(p, os.O_RDWR)
    os.unlink(p)
    assert_errno(errno.ENOENT, os.stat, p)
    assert "f" not in os.listdir(fs.mnt)
    # The open file lives on as an orphan: readable, writable, nlink 0.
    assert os.fstat(fd).st_nlink == 0
    assert f4test.pread_all(fd, len(data), 0) == data
    os.pwrite(fd, b"more", len(data))
    assert os.fstat(fd).st_size == len(data) + 4
    assert_errno(errno.ENOENT, os.unlink, p)
    # A new file can take the name while the orphan is open.
    write_file(p, b"new")
    os.close(fd)
    f4test.sync_fs(fs.mnt)
    # The orphan's blocks are free again once the last fd is closed (the
    # new 3-byte file may take one block, allow one more for metadata).
    freed = -(-(len(data) + 4) // fs.blocksize)
    st = f4test.wait_statfs(fs.mnt, lambda st: st.f_bfree >= free0 + freed - 2)
    assert st.f_bfree >= free0 + freed - 2
    fs.remount()
    assert read_file(p) == b"new"


# ---------------------------------------------------------------------------
# hard links

def test_hardlinks(fs):
    a, b = fs.path("a"), fs.path("b")
    os.mkdir(fs.path("sub"))
    c = fs.path("sub", "c")
    write_file(a, b"one")
    os.link(a, b)
    os.link(b, c)
    for p in (a, b, c):
        assert ino(p) == ino(a)
        assert nlink(p) == 3
    # A write through one name is seen at once through the others, also
    # through an fd opened before the write.
    fda = os.open(a, os.O_RDONLY)
    write_file(b, b"second version")
    assert os.fstat(fda).st_size == len(b"second version")
    assert os.pread(fda, 100, 0) == b"second version"
    assert read_file(c) == b"second version"
    fdc = os.open(c, os.O_WRONLY | os.O_APPEND)
    os.write(fdc, b"+tail")
    os.close(fdc)
    assert os.fstat(fda).st_size == len(b"second version+tail")
    assert os.pread(fda, 100, 0) == b"second version+tail"
    os.chmod(c, 0o600)
    assert stat.S_IMODE(os.stat(a).st_mode) == 0o600
    assert stat.S_IMODE(os.fstat(fda).st_mode) == 0o600

    os.unlink(a)
    assert nlink(b) == 2 and nlink(c) == 2
    assert os.fstat(fda).st_nlink == 2
    os.close(fda)

    assert_errno(errno.EEXIST, os.link, b, c)
    assert_errno(errno.EPERM, os.link, fs.path("sub"), fs.path("dirlink"))
    assert_errno(errno.ENOENT, os.link, fs.path("missing"), fs.path("x"))
    assert_errno(errno.ENOENT, os.link, b, fs.path("nodir", "x"))
    fs.remount()
    assert ino(b) == ino(c)
    assert nlink(b) == 2
    assert read_file(c) == b"second version+tail"
    os.unlink(c)
    assert nlink(b) == 1
    fs.remount()
    assert nlink(b) == 1 and read_file(b) == b"second version+tail"


def test_listing_after_changes_through_other_names(fs):
    """ls -l of a directory whose files the kernel already knows (listed
    without attributes) and files it doesn't (listed with them): every
    name shows the current attributes, also for hard links changed
    through a name in another directory, before and after a remount."""
    os.mkdir(fs.path("d"))
    os.mkdir(fs.path("other"))
    for i in range(40):
        write_file(fs.path("d", "f%d" % i), b"x" * i)
    for i in range(0, 40, 4):
        os.link(fs.path("d", "f%d" % i), fs.path("other", "l%d" % i))

    def listing():
        out = {}
        with os.scandir(fs.path("d")) as it:
            for e in it:
                st = e.stat(follow_symlinks=False)
                out[e.name] = (e.inode(), st.st_ino, stat.S_IMODE(st.st_mode),
                               st.st_nlink, st.st_size, st.st_uid)
        return out

    for round_ in range(2):
        before = listing()
        assert len(before) == 40
        for i in range(0, 40, 4):      # change through the other name
            lp = fs.path("other", "l%d" % i)
            os.chmod(lp, 0o640 - round_)
            os.chown(lp, 1000 + i, 1000)
            with open(lp, "ab") as f:
                f.write(b"more")
            if i % 8 == 0:
                os.link(lp, fs.path("other", "m%d.%d" % (i, round_)))
        after = listing()
        for i in range(40):
            name = "f%d" % i
            d_ino, ino_, mode, nl, size, uid = after[name]
            assert d_ino == ino_ == before[name][0]
            if i % 4:
                assert after[name] == before[name], name
                continue
            assert mode == 0o640 - round_, name
            assert uid == 1000 + i, name
            assert size == i + 4 * (round_ + 1), name
            assert nl == 2 + (round_ + 1 if i % 8 == 0 else 0), name
        fs.remount()
        assert listing() == after


# ---------------------------------------------------------------------------
# symlinks

SYMLINK_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789/._- "


def symlink_max(fs):
    """Longest symlink target: PATH_MAX - 1, and for ext4 also
    block size - 1 (ext4 needs the target plus NUL to fit one block)."""
    return min(4095, fs.blocksize - 1)


def test_symlink_sizes(fs):
    lmax = symlink_max(fs)
    lengths = sorted({1, 2, 58, 59, 60, 61, 100, 255, 256, 1000, 1023,
                      2048, 4095, lmax})
    lengths = [n for n in lengths if n <= lmax]
    targets = {}
    for n in lengths:
        # Distinct, path-like targets: letters, digits, slashes, dots,
        # spaces.
        rnd = random.Random(n)
        t = "".join(rnd.choice(SYMLINK_CHARS) for _ in range(n))
        assert len(t.encode()) == n
        targets[n] = t
        os.symlink(t, fs.path("s%d" % n))

    def check():
        for n, t in targets.items():
            p = fs.path("s%d" % n)
            st = os.lstat(p)
            assert stat.S_ISLNK(st.st_mode), n
            assert stat.S_IMODE(st.st_mode) == 0o777, n
            assert st.st_size == n, n
            assert os.readlink(p) == t, "symlink of %d bytes" % n
    check()
    for n in (lmax + 1, 4096, 5000):
        assert_errno(errno.ENAMETOOLONG, os.symlink, "y" * n,
                     fs.path("long%d" % n))
        assert not os.path.lexists(fs.path("long%d" % n))
    fs.remount()
    check()


def test_symlink_resolution(fs):
    os.mkdir(fs.path("d"))
    write_file(fs.path("d", "target"), b"payload")
    os.symlink("d/target", fs.path("rel"))
    os.symlink(fs.path("d", "target"), fs.path("abs"))
    os.symlink("d", fs.path("dirlink"))
    os.symlink("loop2", fs.path("loop1"))
    os.symlink("loop1", fs.path("loop2"))
    os.symlink("missing", fs.path("dangling"))
    assert read_file(fs.path("rel")) == b"payload"
    assert read_file(fs.path("abs")) == b"payload"
    assert read_file(fs.path("dirlink", "target")) == b"payload"
    assert os.stat(fs.path("rel")).st_ino == ino(fs.path("d", "target"))
    assert_errno(errno.ELOOP, os.stat, fs.path("loop1"))
    assert_errno(errno.ENOENT, os.stat, fs.path("dangling"))
    assert_errno(errno.EEXIST, os.symlink, "x", fs.path("rel"))
    assert_errno(errno.EINVAL, os.readlink, fs.path("d", "target"))
    assert_errno(errno.ENOENT, os.symlink, "x", fs.path("nodir", "s"))
    # unlink removes the link, not the target
    os.unlink(fs.path("rel"))
    assert read_file(fs.path("d", "target")) == b"payload"


# ---------------------------------------------------------------------------
# mknod

DEVICES = [
    ("chr_1_3", stat.S_IFCHR, (1, 3)),
    ("blk_7_0", stat.S_IFBLK, (7, 0)),
    ("chr_255_255", stat.S_IFCHR, (255, 255)),
    # Numbers over 255 need ext4's new device encoding.
    ("chr_300_70000", stat.S_IFCHR, (300, 70000)),
    ("blk_259_4095", stat.S_IFBLK, (259, 4095)),
]


def test_mknod(fs):
    for name, kind, (ma, mi) in DEVICES:
        os.mknod(fs.path(name), kind | 0o640, os.makedev(ma, mi))
    os.mknod(fs.path("fifo"), stat.S_IFIFO | 0o600)
    os.mkfifo(fs.path("fifo2"), 0o644)
    os.mknod(fs.path("sock"), stat.S_IFSOCK | 0o755)
    os.mknod(fs.path("reg"), stat.S_IFREG | 0o600)
    assert_errno(errno.EEXIST, os.mknod, fs.path("fifo"), stat.S_IFIFO | 0o600)
    assert_errno(errno.EPERM, os.mknod, fs.path("dir"), stat.S_IFDIR | 0o755)

    def check():
        for name, kind, (ma, mi) in DEVICES:
            st = os.lstat(fs.path(name))
            assert stat.S_IFMT(st.st_mode) == kind, name
            assert stat.S_IMODE(st.st_mode) == 0o640, name
            assert (os.major(st.st_rdev), os.minor(st.st_rdev)) == (ma, mi), name
            assert st.st_size == 0 and st.st_nlink == 1
        assert stat.S_ISFIFO(os.lstat(fs.path("fifo")).st_mode)
        assert stat.S_IMODE(os.lstat(fs.path("fifo2")).st_mode) == 0o644
        assert stat.S_ISSOCK(os.lstat(fs.path("sock")).st_mode)
        st = os.lstat(fs.path("reg"))
        assert stat.S_ISREG(st.st_mode) and st.st_size == 0
    check()
    # The fifo works as a pipe (the kernel does that part, but the open
    # goes through the file system).
    fd = os.open(fs.path("fifo"), os.O_RDWR)
    os.write(fd, b"through the pipe")
    assert os.read(fd, 100) == b"through the pipe"
    os.close(fd)
    fs.remount()
    check()


# ---------------------------------------------------------------------------
# rename

def test_rename_file_over_file(fs):
    a, b, b2 = fs.path("a"), fs.path("b"), fs.path("b2")
    write_file(a, b"AAAA")
    write_file(b, b"BB")
    os.link(b, b2)
    ia, ib = ino(a), ino(b)
    fdb = os.open(b, os.O_RDONLY)
    os.rename(a, b)
    assert not os.path.lexists(a)
    assert ino(b) == ia and read_file(b) == b"AAAA"
    # the replaced inode keeps its other name and loses one link
    assert ino(b2) == ib and nlink(b2) == 1 and read_file(b2) == b"BB"
    assert os.fstat(fdb).st_nlink == 1
    assert os.pread(fdb, 10, 0) == b"BB"
    os.close(fdb)
    # renaming onto a hard link of itself is a successful no-op: both
    # names stay
    os.link(b, fs.path("b_alias"))
    os.rename(b, fs.path("b_alias"))
    assert ino(b) == ino(fs.path("b_alias")) == ia and nlink(b) == 2
    os.rename(b, b)
    assert read_file(b) == b"AAAA"
    # the last name of an inode replaced while it is open
    fd2 = os.open(b2, os.O_RDONLY)
    os.rename(fs.path("b_alias"), b2)
    assert os.fstat(fd2).st_nlink == 0
    assert os.pread(fd2, 10, 0) == b"BB"
    os.close(fd2)
    assert nlink(b) == 2
    fs.remount()
    assert sorted(os.listdir(fs.mnt)) == ["b", "b2", "lost+found"]
    assert ino(b) == ino(b2) == ia and nlink(b) == 2
    assert read_file(b2) == b"AAAA"


def test_rename_dir_over_empty_dir(fs):
    os.mkdir(fs.path("d1"))
    os.mkdir(fs.path("d1", "inner"))
    write_file(fs.path("d1", "f"), b"x")
    os.mkdir(fs.path("d2"))
    root_links = nlink(fs.mnt)
    i1 = ino(fs.path("d1"))
    os.rename(fs.path("d1"), fs.path("d2"))
    assert not os.path.lexists(fs.path("d1"))
    assert ino(fs.path("d2")) == i1
    assert sorted(os.listdir(fs.path("d2"))) == ["f", "inner"]
    assert nlink(fs.mnt) == root_links - 1
    assert nlink(fs.path("d2")) == 3
    assert os.stat(fs.path("d2", "inner", "..")).st_ino == i1
    fs.remount()
    assert nlink(fs.mnt) == root_links - 1
    assert read_file(fs.path("d2", "f")) == b"x"


def test_rename_dir_across_parents(fs):
    for d in ("A", "B", "A/d", "A/d/sub"):
        os.mkdir(fs.path(d))
    write_file(fs.path("A", "d", "f"), b"content")
    ia, ib, idd = ino(fs.path("A")), ino(fs.path("B")), ino(fs.path("A", "d"))
    assert (nlink(fs.path("A")), nlink(fs.path("B"))) == (3, 2)
    os.rename(fs.path("A", "d"), fs.path("B", "d"))
    assert (nlink(fs.path("A")), nlink(fs.path("B"))) == (2, 3)
    assert os.stat(fs.path("B", "d", "..")).st_ino == ib
    assert os.stat(fs.path("B", "d", "sub", "..")).st_ino == idd
    assert os.listdir(fs.path("A")) == []
    assert nlink(fs.path("B", "d")) == 3
    # move it further down and back up
    os.rename(fs.path("B", "d"), fs.path("A", "deeper"))
    os.rename(fs.path("A", "deeper", "sub"), fs.path("B", "sub2"))
    assert (nlink(fs.path("A")), nlink(fs.path("B"))) == (3, 3)
    assert nlink(fs.path("A", "deeper")) == 2
    assert os.stat(fs.path("B", "sub2", "..")).st_ino == ib
    assert os.stat(fs.path("A", "deeper", "..")).st_ino == ia
    fs.remount()
    assert (nlink(fs.path("A")), nlink(fs.path("B"))) == (3, 3)
    assert os.stat(fs.path("A", "deeper", "..")).st_ino == ia
    assert os.stat(fs.path("B", "sub2", "..")).st_ino == ib
    assert read_file(fs.path("A", "deeper", "f")) == b"content"


def test_rename_errors(fs):
    for d in ("d", "d/sub", "full", "e"):
        os.mkdir(fs.path(d))
    write_file(fs.path("full", "x"), b"")
    write_file(fs.path("f"), b"file")
    before = f4test.snapshot(fs.mnt)
    assert_errno(errno.ENOTEMPTY, os.rename, fs.path("e"), fs.path("full"))
    assert_errno(errno.ENOTEMPTY, os.rename, fs.path("d", "sub"), fs.path("d"))
    assert_errno(errno.EINVAL, os.rename, fs.path("d"), fs.path("d", "sub", "x"))
    assert_errno(errno.EINVAL, os.rename, fs.path("d"), fs.path("d", "sub"))
    assert_errno(errno.EISDIR, os.rename, fs.path("f"), fs.path("e"))
    assert_errno(errno.ENOTDIR, os.rename, fs.path("e"), fs.path("f"))
    assert_errno(errno.ENOENT, os.rename, fs.path("nope"), fs.path("x"))
    assert_errno(errno.ENOENT, os.rename, fs.path("f"), fs.path("nodir", "x"))
    assert_errno(errno.ENOTDIR, os.rename, fs.path("f"), fs.path("f", "x"))
    assert_errno(errno.EBUSY, os.rename, fs.path("d", "."), fs.path("x"))
    assert_errno(errno.EBUSY, os.rename, fs.path("e"), fs.path("d", "."))
    assert_errno(errno.EBUSY, os.rename, fs.path("e"), fs.path("d", ".."))
    assert_errno(errno.ENAMETOOLONG, os.rename, fs.path("f"), fs.path("n" * 256))
    # nothing changed
    d = f4test.diff_snapshots(before, f4test.snapshot(fs.mnt))
    assert not d, d


def test_renameat2_noreplace(fs):
    os.mkdir(fs.path("A"))
    os.mkdir(fs.path("B"))
    write_file(fs.path("A", "f"), b"f")
    write_file(fs.path("B", "g"), b"g")
    os.mkdir(fs.path("A", "dir"))
    os.mkdir(fs.path("B", "dir"))
    fi = ino(fs.path("A", "f"))
    assert_errno(errno.EEXIST, renameat2, fs.path("A", "f"), fs.path("B", "g"),
                 RENAME_NOREPLACE)
    assert_errno(errno.EEXIST, renameat2, fs.path("A", "dir"),
                 fs.path("B", "dir"), RENAME_NOREPLACE)
    assert_errno(errno.EEXIST, renameat2, fs.path("A", "f"), fs.path("B", "dir"),
                 RENAME_NOREPLACE)
    assert read_file(fs.path("B", "g")) == b"g"
    renameat2(fs.path("A", "f"), fs.path("B", "f"), RENAME_NOREPLACE)
    assert ino(fs.path("B", "f")) == fi
    assert not os.path.lexists(fs.path("A", "f"))
    renameat2(fs.path("A", "dir"), fs.path("B", "dir2"), RENAME_NOREPLACE)
    assert (nlink(fs.path("A")), nlink(fs.path("B"))) == (2, 4)
    assert os.stat(fs.path("B", "dir2", "..")).st_ino == ino(fs.path("B"))
    assert_errno(errno.ENOENT, renameat2, fs.path("A", "missing"),
                 fs.path("B", "new"), RENAME_NOREPLACE)
    assert_errno(errno.EINVAL, renameat2, fs.path("B", "f"), fs.path("B", "g"),
                 RENAME_NOREPLACE | RENAME_EXCHANGE)
    fs.remount()
    assert sorted(os.listdir(fs.path("B"))) == ["dir", "dir2", "f", "g"]
    assert nlink(fs.path("B")) == 4


def test_renameat2_exchange(fs):
    for d in ("A", "B", "A/da", "B/db", "A/da/inner"):
        os.mkdir(fs.path(d))
    write_file(fs.path("A", "fa"), b"file a")
    write_file(fs.path("B", "fb"), b"file b")
    write_file(fs.path("A", "fa2"), b"file a2")
    I = {p: ino(fs.path(*p.split("/"))) for p in
         ("A", "B", "A/da", "B/db", "A/fa", "B/fb", "A/fa2")}

    # two files in one directory
    renameat2(fs.path("A", "fa"), fs.path("A", "fa2"), RENAME_EXCHANGE)
    assert read_file(fs.path("A", "fa")) == b"file a2"
    assert ino(fs.path("A", "fa")) == I["A/fa2"]
    assert ino(fs.path("A", "fa2")) == I["A/fa"]
    # two files across parents
    renameat2(fs.path("A", "fa"), fs.path("B", "fb"), RENAME_EXCHANGE)
    assert read_file(fs.path("B", "fb")) == b"file a2"
    assert read_file(fs.path("A", "fa")) == b"file b"
    # two directories across parents: both '..' entries change, link
    # counts of the parents do not
    links = (nlink(fs.path("A")), nlink(fs.path("B")))
    renameat2(fs.path("A", "da"), fs.path("B", "db"), RENAME_EXCHANGE)
    assert ino(fs.path("A", "da")) == I["B/db"]
    assert ino(fs.path("B", "db")) == I["A/da"]
    assert os.stat(fs.path("A", "da", "..")).st_ino == I["A"]
    assert os.stat(fs.path("B", "db", "..")).st_ino == I["B"]
    assert os.listdir(fs.path("B", "db")) == ["inner"]
    assert (nlink(fs.path("A")), nlink(fs.path("B"))) == links
    # a directory with a file across parents: the link counts move
    renameat2(fs.path("B", "db"), fs.path("A", "fa"), RENAME_EXCHANGE)
    assert stat.S_ISDIR(os.lstat(fs.path("A", "fa")).st_mode)
    assert stat.S_ISREG(os.lstat(fs.path("B", "db")).st_mode)
    assert (nlink(fs.path("A")), nlink(fs.path("B"))) == (links[0] + 1,
                                                          links[1] - 1)
    assert os.stat(fs.path("A", "fa", "..")).st_ino == I["A"]
    assert read_file(fs.path("B", "db")) == b"file b"
    assert ino(fs.path("A", "fa")) == I["A/da"]

    # errors
    assert_errno(errno.ENOENT, renameat2, fs.path("A", "fa2"),
                 fs.path("B", "missing"), RENAME_EXCHANGE)
    assert_errno(errno.ENOENT, renameat2, fs.path("A", "missing"),
                 fs.path("A", "fa2"), RENAME_EXCHANGE)
    assert_errno(errno.EINVAL, renameat2, fs.path("A", "fa"),
                 fs.path("A", "fa", "inner"), RENAME_EXCHANGE)
    assert_errno(errno.EINVAL, renameat2, fs.path("A", "fa", "inner"),
                 fs.path("A", "fa"), RENAME_EXCHANGE)
    # exchanging a name with itself succeeds and changes nothing
    renameat2(fs.path("A", "fa2"), fs.path("A", "fa2"), RENAME_EXCHANGE)
    assert read_file(fs.path("A", "fa2")) == b"file a"

    snap = f4test.snapshot(fs.mnt)
    fs.remount()
    d = f4test.diff_snapshots(snap, f4test.snapshot(fs.mnt),
                              ("before", "after remount"))
    assert not d, d
    assert os.stat(fs.path("A", "fa", "..")).st_ino == I["A"]
    assert os.stat(fs.path("A", "da", "..")).st_ino == I["A"]


# ---------------------------------------------------------------------------
# limits

def test_name_length(fs):
    n255 = "a" * 255
    n256 = "b" * 256
    write_file(fs.path(n255), b"255")
    os.mkdir(fs.path("d" * 255))
    os.symlink("t", fs.path("s" * 255))
    assert read_file(fs.path(n255)) == b"255"
    E = errno.ENAMETOOLONG
    assert_errno(E, os.open, fs.path(n256), os.O_CREAT | os.O_WRONLY)
    assert_errno(E, os.stat, fs.path(n256))
    assert_errno(E, os.mkdir, fs.path(n256))
    assert_errno(E, os.unlink, fs.path(n256))
    assert_errno(E, os.rmdir, fs.path(n256))
    assert_errno(E, os.link, fs.path(n255), fs.path(n256))
    assert_errno(E, os.symlink, "t", fs.path(n256))
    assert_errno(E, os.mknod, fs.path(n256), stat.S_IFIFO | 0o600)
    assert_errno(E, os.rename, fs.path(n255), fs.path(n256))
    assert_errno(E, renameat2, fs.path(n255), fs.path(n256), RENAME_NOREPLACE)
    assert sorted(os.listdir(fs.mnt)) == sorted(
        [n255, "d" * 255, "s" * 255, "lost+found"])
    fs.remount()
    assert read_file(fs.path(n255)) == b"255"
    assert os.readlink(fs.path("s" * 255)) == "t"


@pytest.mark.variants("ext4", "ext2", "ext4-inline")
@pytest.mark.timeout(600)
def test_emlink(fs):
    """ext4 caps i_links_count at 65000: the link that would make it
    65001 fails with EMLINK (the kernel applies the same cap to ext2)."""
    f = fs.path("f")
    write_file(f, b"x")
    # The names are spread over 65 directories: this is about the link
    # count, not about huge directories (test_dirs has those).
    n = 1
    while n < 65000:
        d = fs.path("L%02d" % (n // 1000))
        if n % 1000 == 0 or n == 1:
            os.mkdir(d)
        os.link(f, os.path.join(d, "%d" % n))
        n += 1
    assert nlink(f) == 65000
    assert_errno(errno.EMLINK, os.link, f, fs.path("L00", "one-too-many"))
    assert nlink(f) == 65000
    assert not os.path.lexists(fs.path("L00", "one-too-many"))
    fs.remount()
    assert nlink(f) == 65000
    assert nlink(fs.path("L64", "64999")) == 65000
    assert_errno(errno.EMLINK, os.link, f, fs.path("L00", "one-too-many"))
    os.unlink(fs.path("L00", "1"))
    os.link(f, fs.path("L00", "again"))
    assert nlink(fs.path("L00", "again")) == 65000


def test_dir_nlink_many_subdirs(fs):
    d = fs.path("parent")
    os.mkdir(d)
    n = 300
    for i in range(n):
        os.mkdir(os.path.join(d, "sub%03d" % i))
    for i in range(0, n, 7):
        write_file(os.path.join(d, "file%03d" % i), b"")   # files do not count
    assert nlink(d) == n + 2
    fs.remount()
    assert nlink(d) == n + 2
    for i in range(0, n, 2):
        os.rmdir(os.path.join(d, "sub%03d" % i))
    assert nlink(d) == n // 2 + 2
    os.mkdir(fs.path("other"))
    for i in range(1, 21, 2):
        os.rename(os.path.join(d, "sub%03d" % i), fs.path("other", "s%d" % i))
    assert nlink(d) == n // 2 - 10 + 2
    assert nlink(fs.path("other")) == 12
    fs.remount()
    assert nlink(d) == n // 2 - 10 + 2
    assert nlink(fs.path("other")) == 12
    subdirs = [e for e in os.listdir(d) if e.startswith("sub")]
    assert len(subdirs) == n // 2 - 10
