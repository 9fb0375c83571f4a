"""ioctls: inode flags (FS_IOC_GETFLAGS/SETFLAGS, chattr/lsattr) and what
immutable and append-only forbid, FS_IOC_FSGETXATTR/FSSETXATTR,
FS_IOC_GETVERSION/SETVERSION, FITRIM (fstrim), and ioctls that make no
sense (ENOTTY).

The expectations are kernel ext4's; most tests run the same operations on
a kernel ext4 mount of the same variant (kernel_ext4) and compare.
Users: U1 2000:2000, U2 2001:2001.
"""

import errno
import fcntl
import os
import re
import struct

import pytest

import f4test
from f4test import pattern, run, write_file

U1 = (2000, 2000)
U2 = (2001, 2001)


def _IOC(d, t, nr, size):
    return (d << 30) | (size << 16) | (ord(t) << 8) | nr


_IOR = lambda t, nr, size: _IOC(2, t, nr, size)        # noqa: E731
_IOW = lambda t, nr, size: _IOC(1, t, nr, size)        # noqa: E731
_IOWR = lambda t, nr, size: _IOC(3, t, nr, size)       # noqa: E731

FS_IOC_GETFLAGS = _IOR("f", 1, 8)
FS_IOC_SETFLAGS = _IOW("f", 2, 8)
FS_IOC_GETVERSION = _IOR("v", 1, 8)
FS_IOC_SETVERSION = _IOW("v", 2, 8)
FSXATTR = struct.Struct("<IIIII8s")
FS_IOC_FSGETXATTR = _IOR("X", 31, FSXATTR.size)
FS_IOC_FSSETXATTR = _IOW("X", 32, FSXATTR.size)
FSTRIM_RANGE = struct.Struct("<QQQ")
FITRIM = _IOWR("X", 121, FSTRIM_RANGE.size)
TCGETS = 0x5401
BLKGETSIZE64 = _IOR(chr(0x12), 114, 8)

FS_SECRM_FL = 0x1
FS_SYNC_FL = 0x8
FS_IMMUTABLE_FL = 0x10
FS_APPEND_FL = 0x20
FS_NODUMP_FL = 0x40
FS_NOATIME_FL = 0x80
FS_EXTENT_FL = 0x80000
FS_INLINE_DATA_FL = 0x10000000

FS_XFLAG_IMMUTABLE = 0x8
FS_XFLAG_APPEND = 0x10
FS_XFLAG_SYNC = 0x20
FS_XFLAG_NODUMP = 0x80
FS_XFLAG_NOATIME = 0x40


def get_flags(path):
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        buf = fcntl.ioctl(fd, FS_IOC_GETFLAGS, b"\0" * 8)
        return struct.unpack("<i", buf[:4])[0] & 0xffffffff
    finally:
        os.close(fd)


def set_flags(path, flags):
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        fcntl.ioctl(fd, FS_IOC_SETFLAGS, struct.pack("<q", flags))
    finally:
        os.close(fd)


def fsgetxattr(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        return FSXATTR.unpack(fcntl.ioctl(fd, FS_IOC_FSGETXATTR,
                                          b"\0" * FSXATTR.size))
    finally:
        os.close(fd)


def fssetxattr(path, xflags, extsize=0, projid=0, cowextsize=0):
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.ioctl(fd, FS_IOC_FSSETXATTR,
                    FSXATTR.pack(xflags, extsize, 0, projid, cowextsize,
                                 b"\0" * 8))
    finally:
        os.close(fd)


def lsattr(path):
    out = run(["lsattr", "-d", path]).stdout
    return out.split()[0]


def chattr(arg, path, check=True):
    return run(["chattr", arg, path], check=check)


def E(fn, *args, **kw):
    return f4test.errname(f4test.errno_of(fn, *args, **kw))


@pytest.fixture(autouse=True)
def _umask():
    old = os.umask(0o022)
    yield
    os.umask(old)


# ---------------------------------------------------------------------------
# chattr / lsattr, compared letter by letter

# chattr's letters and their FS_*_FL bits
LETTERS = {"a": 0x20, "c": 0x4, "d": 0x40, "e": 0x80000, "i": 0x10,
           "j": 0x4000, "m": 0x400, "s": 0x1, "t": 0x8000, "u": 0x2,
           "x": 0x2000000, "A": 0x80, "C": 0x800000, "D": 0x10000,
           "F": 0x40000000, "P": 0x20000000, "S": 0x8, "T": 0x20000}


def _chattr_table(root):
    """chattr +X on a fresh file and directory for every letter: exit
    status and the flags after; then clearing the bit again through
    FS_IOC_SETFLAGS; lsattr of everything at the end."""
    out = {}
    paths = []
    for letter, bit in LETTERS.items():
        f = os.path.join(root, "f" + letter)
        d = os.path.join(root, "d" + letter)
        write_file(f, b"x")
        os.mkdir(d)
        for what, p in (("file", f), ("dir", d)):
            r = chattr("+" + letter, p, check=False)
            out["+%s %s" % (letter, what)] = (r.returncode, get_flags(p))
            out["-%s %s" % (letter, what)] = (
                E(set_flags, p, get_flags(p) & ~bit), get_flags(p))
            paths.append(p)
    lines = run(["lsattr", "-d"] + paths).stdout.splitlines()
    for line in lines:
        flags, p = line.split(None, 1)
        out["lsattr " + os.path.basename(p)] = flags
    return out


@pytest.mark.variants("ext4", "ext2", "ext3", "ext4-inline")
def test_chattr_letters_like_kernel(fs, kernel_ext4):
    a = _chattr_table(fs.mnt)
    b = _chattr_table(kernel_ext4.mnt)
    # Clearing e on an extent file asks kernel ext4 to migrate it to block
    # maps, which it does or refuses depending on writeback timing: not
    # compared.
    skip = {"-e file", "-e dir", "lsattr fe", "lsattr de"} \
        if fs.variant.startswith("ext4") else set()
    bad = ["%s: %s, kernel %s" % (k, a[k], b[k]) for k in a
           if a[k] != b[k] and k not in skip]
    assert not bad, "\n".join(bad)


@pytest.mark.variants("ext4", "ext2")
def test_flags_round_trip(fs, fs_factory, variant):
    f = fs.path("f")
    d = fs.path("d")
    write_file(f, b"data")
    os.mkdir(d)
    base_f = get_flags(f)
    base_d = get_flags(d)
    want_ext = FS_EXTENT_FL if variant == "ext4" else 0
    assert base_f & ~FS_EXTENT_FL == 0 and base_f & FS_EXTENT_FL == want_ext
    set_flags(f, base_f | FS_NODUMP_FL | FS_NOATIME_FL | FS_SYNC_FL)
    chattr("+dAS", d)
    assert get_flags(f) == base_f | FS_NODUMP_FL | FS_NOATIME_FL | FS_SYNC_FL
    assert lsattr(f)[:8] == "--S---dA"
    assert get_flags(d) == base_d | FS_NODUMP_FL | FS_NOATIME_FL | FS_SYNC_FL
    fs.remount()
    assert get_flags(f) == base_f | FS_NODUMP_FL | FS_NOATIME_FL | FS_SYNC_FL
    assert get_flags(d) == base_d | FS_NODUMP_FL | FS_NOATIME_FL | FS_SYNC_FL
    # the inode on disk
    fs.unmount()
    assert f4test.inode_flags(fs.image, "f") & 0xff == 0xc8
    # and the kernel reads them
    k = fs_factory(variant, driver="kernel", image=fs.image, name="k")
    assert get_flags(k.path("f")) == base_f | 0xc8
    chattr("-S", k.path("f"))
    k.unmount()
    fs.mount()
    assert get_flags(f) == base_f | FS_NODUMP_FL | FS_NOATIME_FL
    set_flags(f, base_f)
    assert lsattr(f)[:8] == "--------"
    assert get_flags(f) == base_f


@pytest.mark.variants("ext4")
def test_noatime_flag(fs, kernel_ext4):
    """+A: reads do not update atime (relatime would, atime <= mtime)."""
    def body(m):
        p = m.path("f")
        write_file(p, b"data")
        os.utime(p, (1000000000, 1000000000))
        q = m.path("g")
        write_file(q, b"data")
        os.utime(q, (1000000000, 1000000000))
        chattr("+A", p)
        f4test.read_file(p)
        f4test.read_file(q)
        return os.stat(p).st_atime_ns, os.stat(q).st_atime_ns > 10 ** 18
    got = body(fs)
    assert got == (1000000000 * 10 ** 9, True)
    assert got == body(kernel_ext4)


# ---------------------------------------------------------------------------
# what immutable and append-only forbid

def _ops_table(root, name):
    """Try every modification on root/name (prepared by the caller);
    returns {op: errno name}.  The file holds b"data" and user.y."""
    p = os.path.join(root, name)
    other = os.path.join(root, "other-" + name)
    write_file(other, b"other")
    out = {}

    def op_open(flags):
        fd = os.open(p, flags)
        try:
            if flags & (os.O_WRONLY | os.O_RDWR):
                os.write(fd, b"+more")
        finally:
            os.close(fd)

    out["open r"] = E(op_open, os.O_RDONLY)
    out["open w"] = E(op_open, os.O_WRONLY)
    out["open rw"] = E(op_open, os.O_RDWR)
    out["open w|append"] = E(op_open, os.O_WRONLY | os.O_APPEND)
    out["open rw|append"] = E(op_open, os.O_RDWR | os.O_APPEND)
    out["open w|append|trunc"] = E(op_open,
                                   os.O_WRONLY | os.O_APPEND | os.O_TRUNC)
    out["open r|trunc"] = E(op_open, os.O_RDONLY | os.O_TRUNC)
    out["truncate"] = E(os.truncate, p, 2)
    out["truncate grow"] = E(os.truncate, p, 100000)
    out["chmod"] = E(os.chmod, p, 0o600)
    out["chown"] = E(os.chown, p, 1, 1)
    out["utime"] = E(os.utime, p, (1, 1))
    out["utime now"] = E(os.utime, p, None)
    out["setxattr user"] = E(os.setxattr, p, "user.x", b"1")
    out["setxattr trusted"] = E(os.setxattr, p, "trusted.x", b"1")
    out["removexattr"] = E(os.removexattr, p, "user.y")
    out["getxattr"] = E(os.getxattr, p, "user.y")
    out["link"] = E(os.link, p, p + ".lnk")
    out["rename"] = E(os.rename, p, p + ".ren")
    out["rename onto"] = E(os.rename, other, p)
    out["unlink"] = E(os.unlink, p)
    out["content"] = f4test.read_file(p) if os.path.exists(p) else None
    return out


def _prepare(root, name, flag):
    p = os.path.join(root, name)
    write_file(p, b"data")
    os.setxattr(p, "user.y", b"y")
    chattr("+" + flag, p)
    return p


@pytest.mark.variants("ext4", "ext2")
def test_immutable_file(fs, kernel_ext4):
    got = {}
    for m in (fs, kernel_ext4):
        _prepare(m.mnt, "f", "i")
        got[m] = _ops_table(m.mnt, "f")
        chattr("-i", m.path("f"))
    a, b = got[fs], got[kernel_ext4]
    assert a == b
    perm = f4test.errname(errno.EPERM)
    assert a["content"] == b"data"
    for op in ("open w", "open rw", "open w|append", "open r|trunc",
               "truncate", "chmod", "chown", "utime", "setxattr user",
               "removexattr", "link", "rename", "rename onto", "unlink"):
        assert a[op] == perm, op
    assert a["open r"] == "OK" and a["getxattr"] == "OK"
    # cleared again: everything works
    p = fs.path("f")
    with open(p, "ab") as f:
        f.write(b"!")
    os.unlink(p)


@pytest.mark.variants("ext4", "ext2")
def test_append_only_file(fs, kernel_ext4):
    got = {}
    for m in (fs, kernel_ext4):
        _prepare(m.mnt, "f", "a")
        got[m] = _ops_table(m.mnt, "f")
        chattr("-a", m.path("f"))
    a, b = got[fs], got[kernel_ext4]
    assert a == b
    perm = f4test.errname(errno.EPERM)
    for op in ("open w", "open rw", "open w|append|trunc", "open r|trunc",
               "truncate", "chmod", "setxattr user", "removexattr", "link",
               "rename", "rename onto", "unlink"):
        assert a[op] == perm, op
    assert a["open w|append"] == "OK" and a["open rw|append"] == "OK"
    assert a["content"] == b"data+more+more"


@pytest.mark.variants("ext4", "ext2")
def test_append_only_cannot_be_escaped(fs):
    """fcntl(F_SETFL) must not turn O_APPEND off on an append-only file;
    whatever the driver answers, no write lands anywhere but the end."""
    p = fs.path("f")
    write_file(p, b"0123456789")
    chattr("+a", p)
    fd = os.open(p, os.O_WRONLY | os.O_APPEND)
    try:
        try:
            fcntl.fcntl(fd, fcntl.F_SETFL, 0)
        except OSError as e:
            assert e.errno == errno.EPERM
        try:
            os.pwrite(fd, b"XX", 0)
        except OSError as e:
            assert e.errno == errno.EPERM
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, b"YY")
        except OSError as e:
            assert e.errno == errno.EPERM
    finally:
        os.close(fd)
    data = f4test.read_file(p)
    assert data.startswith(b"0123456789"), data
    assert data[10:] in (b"", b"XX", b"YY", b"XXYY"), data
    chattr("-a", p)


@pytest.mark.variants("ext4", "ext2")
def test_immutable_directory(fs, kernel_ext4):
    def body(root):
        d = os.path.join(root, "d")
        os.mkdir(d)
        write_file(os.path.join(d, "in"), b"in")
        os.mkdir(os.path.join(d, "sub"))
        chattr("+i", d)
        out = {
            "create": E(write_file, os.path.join(d, "new"), b""),
            "mkdir": E(os.mkdir, os.path.join(d, "newdir")),
            "symlink": E(os.symlink, "x", os.path.join(d, "sl")),
            "unlink": E(os.unlink, os.path.join(d, "in")),
            "rename in": E(os.rename, os.path.join(d, "in"),
                           os.path.join(d, "in2")),
            "rename out": E(os.rename, os.path.join(d, "in"),
                            os.path.join(root, "out")),
            "rmdir sub": E(os.rmdir, os.path.join(d, "sub")),
            "rmdir d": E(os.rmdir, d),
            "rename d": E(os.rename, d, os.path.join(root, "d2")),
            "write in": E(write_file, os.path.join(d, "in"), b"changed"),
            "create in sub": E(write_file, os.path.join(d, "sub", "x"), b""),
            "list": sorted(os.listdir(d)),
            "chmod": E(os.chmod, d, 0o700),
        }
        chattr("-i", d)
        return out
    a = body(fs.mnt)
    assert a == body(kernel_ext4.mnt)
    assert a["create"] == f4test.errname(errno.EPERM)
    assert a["write in"] == "OK" and a["create in sub"] == "OK"
    assert a["list"] == ["in", "sub"]


@pytest.mark.variants("ext4", "ext2")
def test_append_only_directory(fs, kernel_ext4):
    def body(root):
        d = os.path.join(root, "d")
        os.mkdir(d)
        write_file(os.path.join(d, "in"), b"in")
        chattr("+a", d)
        out = {
            "create": E(write_file, os.path.join(d, "new"), b""),
            "mkdir": E(os.mkdir, os.path.join(d, "newdir")),
            "unlink": E(os.unlink, os.path.join(d, "in")),
            "rename in": E(os.rename, os.path.join(d, "in"),
                           os.path.join(d, "in2")),
            "rename into": E(os.rename, os.path.join(root, "x"),
                             os.path.join(d, "x")) if os.path.exists(
                                 os.path.join(root, "x")) else None,
            "list": sorted(os.listdir(d)),
        }
        chattr("-a", d)
        return out
    write_file(fs.path("x"), b"")
    write_file(kernel_ext4.path("x"), b"")
    a = body(fs.mnt)
    assert a == body(kernel_ext4.mnt)
    assert a["create"] == "OK" and a["unlink"] == f4test.errname(errno.EPERM)


@pytest.mark.variants("ext4")
@pytest.mark.mount_opts("kernel")
def test_who_may_change_flags(fs, kernel_ext4):
    """Only root sets or clears i and a; the owner may change the other
    flags; others nothing."""
    def body(m):
        os.chmod(m.mnt, 0o755)
        p = m.path("mine")
        write_file(p, b"")
        os.chown(p, *U1)
        base = get_flags(p)
        out = {}
        out["u1 +d"] = f4test.errno_as(U1[0], U1[1], set_flags, p,
                                       base | FS_NODUMP_FL)
        out["u1 +i"] = f4test.errno_as(U1[0], U1[1], set_flags, p,
                                       base | FS_NODUMP_FL | FS_IMMUTABLE_FL)
        out["u1 +a"] = f4test.errno_as(U1[0], U1[1], set_flags, p,
                                       base | FS_NODUMP_FL | FS_APPEND_FL)
        out["u2 -d"] = f4test.errno_as(U2[0], U2[1], set_flags, p, base)
        out["u2 get"] = f4test.errno_as(U2[0], U2[1], get_flags, p)
        out["flags1"] = get_flags(p)
        set_flags(p, base | FS_APPEND_FL)
        out["u1 -a"] = f4test.errno_as(U1[0], U1[1], set_flags, p, base)
        out["u1 +d on a"] = f4test.errno_as(U1[0], U1[1], set_flags, p,
                                            base | FS_APPEND_FL |
                                            FS_NODUMP_FL)
        set_flags(p, base | FS_IMMUTABLE_FL)
        out["root +d on i"] = f4test.errno_of(set_flags, p,
                                              base | FS_IMMUTABLE_FL |
                                              FS_NODUMP_FL)
        out["root -i +d"] = f4test.errno_of(set_flags, p,
                                            base | FS_NODUMP_FL)
        out["flags2"] = get_flags(p)
        set_flags(p, base)
        return out
    a = body(fs)
    b = body(kernel_ext4)
    assert a == b
    assert a["u1 +d"] == 0 and a["u1 +i"] == errno.EPERM
    assert a["u1 +a"] == errno.EPERM and a["u2 -d"] == errno.EPERM
    assert a["u1 -a"] == errno.EPERM


# ---------------------------------------------------------------------------
# fsxattr

@pytest.mark.variants("ext4", "ext2")
def test_fsxattr(fs, kernel_ext4):
    def body(root):
        p = os.path.join(root, "f")
        write_file(p, b"data")
        out = {"fresh": fsgetxattr(p)[:4]}
        fssetxattr(p, FS_XFLAG_NODUMP | FS_XFLAG_NOATIME | FS_XFLAG_SYNC)
        out["get"] = fsgetxattr(p)[:4]
        out["flags"] = get_flags(p)
        out["lsattr"] = lsattr(p)
        set_flags(p, get_flags(p) & ~FS_SYNC_FL)
        out["after setflags"] = fsgetxattr(p)[:4]
        out["projid 5"] = E(fssetxattr, p, 0, projid=5)
        out["extsize"] = E(fssetxattr, p, 0, extsize=1 << 20)
        out["cowextsize"] = E(fssetxattr, p, 0, cowextsize=1 << 20)
        fssetxattr(p, FS_XFLAG_APPEND)
        out["append flags"] = get_flags(p)
        out["append write"] = E(write_file, p, b"x")
        fssetxattr(p, 0)
        out["cleared"] = fsgetxattr(p)[:4]
        out["cleared flags"] = get_flags(p)
        d = os.path.join(root, "d")
        os.mkdir(d)
        fssetxattr(d, FS_XFLAG_NODUMP)
        out["dir"] = fsgetxattr(d)[:4]
        return out
    a = body(fs.mnt)
    assert a == body(kernel_ext4.mnt)
    assert a["get"][0] == FS_XFLAG_NODUMP | FS_XFLAG_NOATIME | FS_XFLAG_SYNC
    assert a["flags"] & 0xff == FS_NODUMP_FL | FS_NOATIME_FL | FS_SYNC_FL
    assert a["append write"] == f4test.errname(errno.EPERM)
    fs.remount()
    assert fsgetxattr(fs.path("d"))[0] == FS_XFLAG_NODUMP


# ---------------------------------------------------------------------------
# generation

def _debugfs_generation(image, path):
    out = f4test.debugfs_stat(image, path)
    m = re.search(r"Generation:\s*(\d+)", out)
    assert m, out
    return int(m.group(1))


def get_version(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        buf = fcntl.ioctl(fd, FS_IOC_GETVERSION, b"\0" * 8)
        return struct.unpack("<I", buf[:4])[0]
    finally:
        os.close(fd)


def set_version(path, v):
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.ioctl(fd, FS_IOC_SETVERSION, struct.pack("<q", v))
    finally:
        os.close(fd)


@pytest.mark.variants("ext4", "ext2", "ext3")
def test_getversion_is_generation(fs, kernel_ext4):
    names = ["f%d" % i for i in range(8)]
    for n in names:
        write_file(fs.path(n), b"")
    os.mkdir(fs.path("d"))
    names.append("d")
    gens = {n: get_version(fs.path(n)) for n in names}
    # the kernel: SETVERSION on the same variant (refused with
    # metadata_csum)
    write_file(kernel_ext4.path("f"), b"")
    kres = f4test.errno_of(set_version, kernel_ext4.path("f"), 4242)
    kver = get_version(kernel_ext4.path("f"))
    res = f4test.errno_of(set_version, fs.path("f0"), 4242)
    assert res == kres
    if res == 0:
        assert kver == 4242
        gens["f0"] = 4242
    assert get_version(fs.path("f0")) == gens["f0"]
    fs.unmount()
    for n in names:
        assert _debugfs_generation(fs.image, n) == gens[n], n
    # fresh inodes get varied generations
    assert len(set(gens.values())) > 1
    fs.mount()
    assert {n: get_version(fs.path(n)) for n in names} == gens


@pytest.mark.variants("ext4", "ext2")
def test_setversion_directory(fs, kernel_ext4):
    """With metadata_csum the generation seeds the checksums of the
    inode's blocks, so kernel ext4 refuses FS_IOC_SETVERSION (ENOTTY);
    without it a new generation must leave the directory readable."""
    res = {}
    for m in (fs, kernel_ext4):
        d = m.path("d")
        os.mkdir(d)
        for i in range(40):
            write_file(os.path.join(d, "entry-%02d" % i), b"")
        res[m] = f4test.errname(f4test.errno_of(set_version, d, 4242))
        assert sorted(os.listdir(d)) == ["entry-%02d" % i for i in range(40)]
    assert res[fs] == res[kernel_ext4]
    fs.remount()
    assert len(os.listdir(fs.path("d"))) == 40
    write_file(fs.path("d", "more"), b"")


# ---------------------------------------------------------------------------
# FITRIM

def _du(path):
    return int(run(["du", "--block-size=1", path]).stdout.split()[0])


@pytest.mark.variants("ext4", "ext2", "ext4-1k")
def test_fstrim_punches_image(fs):
    keep = pattern(1 << 20, 9)
    write_file(fs.path("keep"), keep)
    big = fs.path("big")
    chunk = pattern(1 << 20, 1)
    fd = os.open(big, os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        for _ in range(64):
            os.write(fd, chunk)
        os.fsync(fd)
    finally:
        os.close(fd)
    f4test.sync_fs(fs.mnt)
    # a first trim: whatever was never used
    p = run(["fstrim", "-v", fs.mnt])
    assert re.search(r"\d+ (bytes|B|KiB|MiB|GiB)", p.stdout), p.stdout
    before = _du(fs.image)
    os.unlink(big)
    f4test.sync_fs(fs.mnt)
    p = run(["fstrim", "-v", fs.mnt])
    m = re.search(r"\((\d+) bytes\) trimmed", p.stdout)
    assert m, p.stdout
    assert int(m.group(1)) >= 60 << 20, p.stdout
    after = _du(fs.image)
    assert before - after >= 60 << 20, (before, after)
    assert f4test.read_file(fs.path("keep")) == keep
    fs.remount()
    assert f4test.read_file(fs.path("keep")) == keep


def fitrim(path, start, length, minlen):
    fd = os.open(path, os.O_RDONLY)
    try:
        buf = fcntl.ioctl(fd, FITRIM, FSTRIM_RANGE.pack(start, length,
                                                        minlen))
        return FSTRIM_RANGE.unpack(buf)
    finally:
        os.close(fd)


@pytest.mark.variants("ext4")
@pytest.mark.mount_opts("kernel")
def test_fitrim_arguments(fs, kernel_ext4):
    def body(m):
        os.chmod(m.mnt, 0o755)
        size = m.statfs().f_blocks * m.statfs().f_frsize
        out = {}
        for label, args in (("all", (0, 2 ** 64 - 1, 0)),
                            ("past end", (size * 4, 1 << 20, 0)),
                            ("huge minlen", (0, 2 ** 64 - 1, 1 << 40)),
                            ("short len", (0, 1024, 0))):
            try:
                r = fitrim(m.mnt, *args)
                out[label] = "OK"
                assert r[1] <= size, (label, r)
            except OSError as e:
                out[label] = f4test.errname(e.errno)
        out["non-root"] = f4test.errname(f4test.errno_as(
            U1[0], U1[1], fitrim, m.mnt, 0, 2 ** 64 - 1, 0))
        return out
    a = body(fs)
    assert a == body(kernel_ext4)
    assert a["all"] == "OK" and a["non-root"] == f4test.errname(errno.EPERM)


# ---------------------------------------------------------------------------
# nonsense

@pytest.mark.variants("ext4", "ext2")
def test_nonsense_ioctls(fs, kernel_ext4):
    def body(root):
        write_file(os.path.join(root, "f"), b"data")
        out = {}
        for what in ("f", "."):
            fd = os.open(os.path.join(root, what), os.O_RDONLY)
            try:
                for label, cmd, arg in (
                        ("TCGETS", TCGETS, b"\0" * 64),
                        ("BLKGETSIZE64", BLKGETSIZE64, b"\0" * 8),
                        ("_IO f 250", _IOC(0, "f", 250, 0), 0),
                        ("_IOR f 251", _IOR("f", 251, 4), b"\0" * 4),
                        ("_IOW z 1", _IOW("z", 1, 16), b"\0" * 16)):
                    try:
                        fcntl.ioctl(fd, cmd, arg)
                        out[what + " " + label] = "OK"
                    except OSError as e:
                        out[what + " " + label] = f4test.errname(e.errno)
            finally:
                os.close(fd)
        return out
    a = body(fs.mnt)
    assert a == body(kernel_ext4.mnt)
    assert set(a.values()) == {f4test.errname(errno.ENOTTY)}
