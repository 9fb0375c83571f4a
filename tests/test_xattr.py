"""Extended attributes: setxattr flags, getxattr/listxattr size rules,
namespaces and who sees them, where values are stored (in the inode, in an
external block, shared blocks), size limits, and cross-checks with the
kernel's ext4 on the same image.

Every expectation is what the kernel's ext4 does (F4_DRIVER=kernel passes
all of them).  Geometries: the default variants, plus ext2 with 1 KiB
blocks (the "ext2-1k" parameters below are variant ext2 with -b 1024).
"""

import ctypes
import ctypes.util
import errno
import os
import re
import stat
import time

import pytest

import f4test
from f4test import assert_errno, pattern, run, run_as, write_file

U1 = (2000, 2000)

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6",
                    use_errno=True)
for _fn in ("getxattr", "lgetxattr"):
    getattr(_libc, _fn).argtypes = [ctypes.c_char_p, ctypes.c_char_p,
                                    ctypes.c_void_p, ctypes.c_size_t]
    getattr(_libc, _fn).restype = ctypes.c_ssize_t
for _fn in ("listxattr", "llistxattr"):
    getattr(_libc, _fn).argtypes = [ctypes.c_char_p, ctypes.c_void_p,
                                    ctypes.c_size_t]
    getattr(_libc, _fn).restype = ctypes.c_ssize_t


def _check(res, path):
    if res < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), path)
    return res


def getxattr_raw(path, name, size, follow=True):
    """getxattr(2) with a buffer of `size` bytes (0: NULL buffer).
    Returns (return value, bytes)."""
    fn = _libc.getxattr if follow else _libc.lgetxattr
    buf = ctypes.create_string_buffer(max(size, 1))
    n = _check(fn(os.fsencode(path), name.encode(),
                  buf if size else None, size), path)
    return n, buf.raw[:n] if size else b""


def listxattr_raw(path, size, follow=True):
    fn = _libc.listxattr if follow else _libc.llistxattr
    buf = ctypes.create_string_buffer(max(size, 1))
    n = _check(fn(os.fsencode(path), buf if size else None, size), path)
    return n, buf.raw[:n] if size else b""


@pytest.fixture(autouse=True)
def _umask():
    old = os.umask(0o022)
    yield
    os.umask(old)


def sb_blocksize(fsobj):
    """The real block size (the 1 KiB parameters override the variant's)."""
    return fsobj.sb_raw()["blocksize"]


def file_acl_block(image, path):
    """debugfs stat's 'File ACL:' (the external xattr block, 0 if none)."""
    out = f4test.debugfs_stat(image, path)
    m = re.search(r"File ACL:\s*(\d+)", out)
    assert m, "no File ACL in debugfs stat of %s:\n%s" % (path, out)
    return int(m.group(1))


def dump_xattrs(root):
    """{relpath: {name: value}} of every object under root, through
    getfattr(1) (-d -m - -e hex: all namespaces root can see)."""
    p = run(["getfattr", "-R", "-P", "-h", "-d", "-m", "-", "-e", "hex",
             "--absolute-names", root])
    out, cur = {}, None
    for line in p.stdout.splitlines():
        if line.startswith("# file: "):
            cur = os.path.relpath(line[len("# file: "):], root)
            out[cur] = {}
        elif "=" in line and cur is not None:
            k, v = line.split("=", 1)
            assert v.startswith("0x"), line
            out[cur][k] = bytes.fromhex(v[2:])
        elif line.strip() and cur is not None:
            # a name without a value is an empty value
            out[cur][line.strip()] = b""
    return {k: v for k, v in out.items() if v}


# Geometries for the layout tests: variant name, extra mke2fs options.
GEOMS = [
    pytest.param("ext2", id="ext2-4k"),
    pytest.param("ext2", marks=pytest.mark.mkfs_opts("-b", "1024"),
                 id="ext2-1k"),
    pytest.param("ext4", id="ext4-4k"),
    pytest.param("ext4-1k", id="ext4-1k"),
]
GEOMS_64K = GEOMS + [pytest.param("ext4-64k", id="ext4-64k")]

NAMESPACES = ("user", "trusted", "security")


# ---------------------------------------------------------------------------
# set / get / list / remove semantics

def test_create_replace_remove(fs):
    os.mkdir(fs.path("d"))
    write_file(fs.path("f"), b"data")
    for obj in ("f", "d"):
        p = fs.path(obj)
        for ns in NAMESPACES:
            n = ns + ".k"
            assert_errno(errno.ENODATA, os.getxattr, p, n)
            assert_errno(errno.ENODATA, os.setxattr, p, n, b"r",
                         os.XATTR_REPLACE)
            assert_errno(errno.ENODATA, os.getxattr, p, n)
            os.setxattr(p, n, b"first", os.XATTR_CREATE)
            assert os.getxattr(p, n) == b"first"
            assert_errno(errno.EEXIST, os.setxattr, p, n, b"again",
                         os.XATTR_CREATE)
            assert os.getxattr(p, n) == b"first"
            os.setxattr(p, n, b"second", os.XATTR_REPLACE)
            assert os.getxattr(p, n) == b"second"
            os.setxattr(p, n, b"third!")            # no flag: replace
            assert os.getxattr(p, n) == b"third!"
            os.setxattr(p, n + "2", b"new")         # no flag: create
            os.setxattr(p, n + "0", b"")            # an empty value
            assert os.getxattr(p, n + "0") == b""
            assert getxattr_raw(p, n + "0", 0)[0] == 0
            os.removexattr(p, n + "2")
            assert_errno(errno.ENODATA, os.getxattr, p, n + "2")
            assert_errno(errno.ENODATA, os.removexattr, p, n + "2")
        assert sorted(os.listxattr(p)) == sorted(
            ns + s for ns in NAMESPACES for s in (".k", ".k0"))
    fs.remount()
    for obj in ("f", "d"):
        p = fs.path(obj)
        got = {n: os.getxattr(p, n) for n in os.listxattr(p)}
        want = {}
        for ns in NAMESPACES:
            want[ns + ".k"] = b"third!"
            want[ns + ".k0"] = b""
        assert got == want, obj
        for n in list(got):
            os.removexattr(p, n)
        assert os.listxattr(p) == []
    assert f4test.read_file(fs.path("f")) == b"data"


def test_get_and_list_sizes(fs):
    p = fs.path("f")
    # a little data: on ext4-inline it lives in the inode's system.data,
    # which must never show up in the list
    write_file(p, b"small file")
    assert os.listxattr(p) == []
    assert listxattr_raw(p, 0) == (0, b"")
    vals = {"user.a": b"1", "user.bb": pattern(37, 1),
            "trusted.ccc": pattern(100, 2), "security.dddd": b"xyz"}
    for n, v in vals.items():
        os.setxattr(p, n, v)
    for n, v in vals.items():
        assert getxattr_raw(p, n, 0)[0] == len(v), n
        assert getxattr_raw(p, n, len(v)) == (len(v), v), n
        assert getxattr_raw(p, n, len(v) + 50) == (len(v), v), n
        if len(v) > 1:
            assert_errno(errno.ERANGE, getxattr_raw, p, n, len(v) - 1)
    assert_errno(errno.ENODATA, getxattr_raw, p, "user.missing", 0)
    assert_errno(errno.ENODATA, getxattr_raw, p, "user.missing", 100)
    total = sum(len(n) + 1 for n in vals)
    n, _ = listxattr_raw(p, 0)
    assert n == total
    n, raw = listxattr_raw(p, total)
    assert n == total
    assert raw.endswith(b"\0")
    assert sorted(raw[:-1].split(b"\0")) == sorted(x.encode() for x in vals)
    assert_errno(errno.ERANGE, listxattr_raw, p, total - 1)
    assert_errno(errno.ERANGE, listxattr_raw, p, 1)
    assert f4test.read_file(p) == b"small file"


def test_bad_names(fs):
    p = fs.path("f")
    write_file(p, b"x")
    got, want = {}, {}
    for n in ("foo.bar", "userx", "system.foo", "system.data", "os2.x"):
        for op, fn, args in (("set", os.setxattr, (p, n, b"v")),
                             ("get", os.getxattr, (p, n)),
                             ("remove", os.removexattr, (p, n))):
            got[op + " " + n] = f4test.errname(f4test.errno_of(fn, *args))
            want[op + " " + n] = f4test.errname(errno.EOPNOTSUPP)
    for n in ("user.", "trusted.", "security."):
        for op, fn, args in (("set", os.setxattr, (p, n, b"v")),
                             ("get", os.getxattr, (p, n)),
                             ("remove", os.removexattr, (p, n))):
            got[op + " " + n] = f4test.errname(f4test.errno_of(fn, *args))
            want[op + " " + n] = f4test.errname(errno.EINVAL)
    bad = {k: v for k, v in got.items() if v != want[k]}
    assert not bad, "expected %s" % ({k: want[k] for k in bad},)
    assert os.listxattr(p) == []
    # 255 bytes is the longest name; 256 is refused by the VFS
    longest = "user." + "n" * 250
    os.setxattr(p, longest, b"long")
    assert_errno(errno.ERANGE, os.setxattr, p, longest + "n", b"v")
    fs.remount()
    assert os.getxattr(p, longest) == b"long"
    assert os.listxattr(p) == [longest]


@pytest.mark.variants("ext4")
@pytest.mark.parametrize("mount_opts", [("allow_other",), ("kernel",)],
                         ids=["daemon_perms", "kernel_perms"])
def test_namespaces_as_non_root(fs):
    """trusted.* is root's: hidden from others' listxattr, ENODATA to
    their getxattr, EPERM to their setxattr; security.* is readable but not
    writable; user.* follows the file's permission bits."""
    os.chmod(fs.mnt, 0o755)
    p = fs.path("f")
    write_file(p, b"x")
    os.chmod(p, 0o644)
    mine = fs.path("mine")
    write_file(mine, b"y")
    os.chown(mine, *U1)
    for q in (p, mine):
        os.setxattr(q, "user.u", b"uu")
        os.setxattr(q, "trusted.t", b"tt")
        os.setxattr(q, "security.s", b"ss")
    assert sorted(os.listxattr(p)) == ["security.s", "trusted.t", "user.u"]

    def as_user():
        out = {}
        for q in (p, mine):
            k = os.path.basename(q)
            out[k + " list"] = sorted(os.listxattr(q))
            out[k + " list size"] = listxattr_raw(q, 0)[0]
            for n in ("user.u", "trusted.t", "security.s"):
                try:
                    out[k + " get " + n] = os.getxattr(q, n)
                except OSError as e:
                    out[k + " get " + n] = errno.errorcode[e.errno]
            for n in ("user.new", "trusted.new", "security.new"):
                out[k + " set " + n] = f4test.errname(
                    f4test.errno_of(os.setxattr, q, n, b"v"))
            out[k + " rm trusted.t"] = f4test.errname(
                f4test.errno_of(os.removexattr, q, "trusted.t"))
        out["mine rm user.u"] = f4test.errname(
            f4test.errno_of(os.removexattr, mine, "user.u"))
        return out

    got = run_as(U1[0], U1[1], as_user)
    want = {
        "f list": ["security.s", "user.u"],
        "f list size": len("security.s\0user.u\0"),
        "f get user.u": b"uu", "f get trusted.t": "ENODATA",
        "f get security.s": b"ss",
        "f set user.new": "EACCES", "f set trusted.new": "EPERM",
        "f set security.new": "EPERM", "f rm trusted.t": "EPERM",
        "mine list": ["security.s", "user.u"],
        "mine list size": len("security.s\0user.u\0"),
        "mine get user.u": b"uu", "mine get trusted.t": "ENODATA",
        "mine get security.s": b"ss",
        "mine set user.new": "OK", "mine set trusted.new": "EPERM",
        "mine set security.new": "EPERM", "mine rm trusted.t": "EPERM",
        "mine rm user.u": "OK",
    }
    assert got == want
    assert sorted(os.listxattr(mine)) == ["security.s", "trusted.t",
                                          "user.new"]
    assert sorted(os.listxattr(p)) == ["security.s", "trusted.t", "user.u"]


@pytest.mark.variants("ext4", "ext2")
def test_special_files(fs):
    """user.* is only for regular files and directories: EPERM to set and
    remove, ENODATA to get on symlinks, fifos and devices; trusted.* and
    security.* work on them."""
    write_file(fs.path("f"), b"x")
    os.symlink("f", fs.path("l"))
    os.mkfifo(fs.path("fifo"))
    os.mknod(fs.path("chr"), 0o644 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(fs.path("blk"), 0o644 | stat.S_IFBLK, os.makedev(7, 0))
    for obj in ("l", "fifo", "chr", "blk"):
        p = fs.path(obj)
        kw = {"follow_symlinks": False}
        assert_errno(errno.EPERM, os.setxattr, p, "user.x", b"v", **kw)
        assert_errno(errno.ENODATA, os.getxattr, p, "user.x", **kw)
        assert_errno(errno.EPERM, os.removexattr, p, "user.x", **kw)
        os.setxattr(p, "trusted.x", b"t-" + obj.encode(), **kw)
        os.setxattr(p, "security.x", b"s-" + obj.encode(), **kw)
        assert sorted(os.listxattr(p, **kw)) == ["security.x", "trusted.x"]
    # the symlink's attributes are its own, not its target's
    assert os.listxattr(fs.path("l")) == []
    fs.remount()
    for obj in ("l", "fifo", "chr", "blk"):
        p = fs.path(obj)
        assert os.getxattr(p, "trusted.x", follow_symlinks=False) == \
            b"t-" + obj.encode()
        assert getxattr_raw(p, "security.x", 100, follow=False)[1] == \
            b"s-" + obj.encode()
        os.removexattr(p, "trusted.x", follow_symlinks=False)
        assert os.listxattr(p, follow_symlinks=False) == ["security.x"]


# ---------------------------------------------------------------------------
# where values go, and how large they may be

def max_block_value(bs, name):
    """The largest value the kernel's ext4 fits into an empty xattr block:
    32-byte header, a 16-byte entry plus the name suffix rounded to 4, a
    4-byte end marker; values are padded to 4 bytes."""
    suffix = name.split(".", 1)[1]
    room = bs - 32 - (16 + (len(suffix) + 3) // 4 * 4) - 4
    return min(room // 4 * 4, 65536)


@pytest.mark.parametrize("variant", GEOMS_64K)
def test_value_placement_and_limits(fs):
    bs = sb_blocksize(fs)
    # small: in the inode (256-byte inodes have room), no block
    write_file(fs.path("small"), b"")
    os.setxattr(fs.path("small"), "user.s", b"tiny value")
    # three values of a quarter block each: more than the inode holds,
    # they go to one external block
    write_file(fs.path("three"), b"")
    three = {"user.v%d" % i: pattern(bs // 4, i) for i in range(3)}
    for n, v in three.items():
        os.setxattr(fs.path("three"), n, v)
    # the largest value a block holds, for two name lengths
    write_file(fs.path("max1"), b"")
    write_file(fs.path("max8"), b"")
    m1 = max_block_value(bs, "user.a")
    m8 = max_block_value(bs, "user.abcdefgh")
    os.setxattr(fs.path("max1"), "user.a", pattern(m1, 7))
    os.setxattr(fs.path("max8"), "user.abcdefgh", pattern(m8, 8))
    write_file(fs.path("over"), b"")
    over = fs.path("over")
    if m1 < 65536:
        assert_errno(errno.ENOSPC, os.setxattr, over, "user.a",
                     pattern(m1 + 1, 9))
        assert_errno(errno.ENOSPC, os.setxattr, over, "user.abcdefgh",
                     pattern(m8 + 1, 9))
    assert_errno(errno.E2BIG, os.setxattr, over, "user.a",
                 pattern(65537, 9))
    assert_errno(errno.E2BIG, os.setxattr, over, "user.b",
                 pattern(1 << 20, 9))
    assert os.listxattr(over) == []
    # a value that does not fit leaves the old one in place
    os.setxattr(fs.path("max1"), "user.b", b"1")
    assert_errno(errno.ENOSPC, os.setxattr, fs.path("max1"), "user.a",
                 pattern(m1 + 4 if m1 + 4 <= 65536 else 65536, 10))
    assert os.getxattr(fs.path("max1"), "user.a") == pattern(m1, 7)
    os.removexattr(fs.path("max1"), "user.b")

    fs.unmount()
    fs.fsck()
    assert file_acl_block(fs.image, "small") == 0
    assert file_acl_block(fs.image, "three") != 0
    assert file_acl_block(fs.image, "max1") != 0
    fs.mount()
    assert os.getxattr(fs.path("small"), "user.s") == b"tiny value"
    assert {n: os.getxattr(fs.path("three"), n)
            for n in os.listxattr(fs.path("three"))} == three
    assert os.getxattr(fs.path("max1"), "user.a") == pattern(m1, 7)
    assert os.getxattr(fs.path("max8"), "user.abcdefgh") == pattern(m8, 8)


@pytest.mark.parametrize("variant", GEOMS)
def test_fill_until_enospc_like_kernel(fs, kernel_ext4):
    """Add values until ENOSPC: the same number fits as on kernel ext4,
    for large values (block only) and small ones (inode, then block)."""
    bs = sb_blocksize(fs)

    def fill(m, prefix, size):
        p = m.path(prefix)
        write_file(p, b"")
        n = 0
        while True:
            try:
                os.setxattr(p, "user.%s%03d" % (prefix, n),
                            pattern(size, n))
            except OSError as e:
                return n, e.errno
            n += 1
            assert n < 10000

    got = {}
    for m in (fs, kernel_ext4):
        got[m.driver + ("-ref" if m is kernel_ext4 else "")] = [
            fill(m, "big", bs // 5), fill(m, "small", 24),
            fill(m, "tiny", 0)]
    a, b = list(got.values())
    assert a == b, got
    assert a[0][1] == errno.ENOSPC
    fs.remount()
    p = fs.path("small")
    names = sorted(os.listxattr(p))
    assert len(names) == a[1][0]
    for i, n in enumerate(names):
        assert os.getxattr(p, n) == pattern(24, i)


# ---------------------------------------------------------------------------
# the same image through both drivers

def _populate(root, tag, bs):
    """Files and attributes of all placements; returns the expected dump."""
    os.mkdir(os.path.join(root, "dir" + tag))
    want = {}
    objs = {"small" + tag: {"user.s": b"s" + tag.encode(),
                            "trusted.t": b"t", "security.x": b""},
            "block" + tag: {"user.b%d" % i: pattern(bs // 4, i + 10)
                            for i in range(3)},
            "mixed" + tag: dict({"user.tiny": b"1"},
                                **{"trusted.big%d" % i: pattern(300, i)
                                   for i in range(2)}),
            "dir" + tag: {"user.d": pattern(200, 3), "security.y": b"yy"}}
    for name, attrs in objs.items():
        p = os.path.join(root, name)
        if not os.path.exists(p):
            write_file(p, b"content of " + name.encode())
        for n, v in attrs.items():
            os.setxattr(p, n, v)
        want[name] = attrs
    os.symlink("small" + tag, os.path.join(root, "link" + tag))
    os.setxattr(os.path.join(root, "link" + tag), "trusted.l", b"link",
                follow_symlinks=False)
    want["link" + tag] = {"trusted.l": b"link"}
    return want


CROSS = [pytest.param("ext2", id="ext2-4k"),
         pytest.param("ext2", marks=pytest.mark.mkfs_opts("-b", "1024"),
                      id="ext2-1k"),
         pytest.param("ext4", id="ext4-4k"),
         pytest.param("ext4-1k", id="ext4-1k"),
         pytest.param("ext4-inline", id="ext4-inline")]


@pytest.mark.parametrize("variant", CROSS)
def test_written_here_read_by_kernel(fs, fs_factory, variant):
    want = _populate(fs.mnt, "", sb_blocksize(fs))
    # replace and remove some, so that blocks are rewritten
    v = pattern(sb_blocksize(fs) // 8, 99)
    os.setxattr(fs.path("block"), "user.b1", v)
    want["block"]["user.b1"] = v
    os.removexattr(fs.path("mixed"), "trusted.big0")
    del want["mixed"]["trusted.big0"]
    assert dump_xattrs(fs.mnt) == want
    fs.unmount()
    fs.fsck()
    k = fs_factory(variant, driver="kernel", image=fs.image, name="k")
    assert dump_xattrs(k.mnt) == want


@pytest.mark.parametrize("variant", CROSS)
def test_written_by_kernel_read_here(fs_factory, fs_unmounted, variant):
    fs = fs_unmounted
    k = fs_factory(variant, driver="kernel", image=fs.image, name="k")
    want = _populate(k.mnt, "", sb_blocksize(k))
    k.unmount()
    k.fsck()
    fs.mount()
    assert dump_xattrs(fs.mnt) == want
    # and change them here: the kernel must see the changes
    os.setxattr(fs.path("small"), "user.s", pattern(700, 5))
    want["small"]["user.s"] = pattern(700, 5)
    for i in range(3):
        os.removexattr(fs.path("block"), "user.b%d" % i)
    del want["block"]
    more = pattern(sb_blocksize(fs) // 3, 6)
    os.setxattr(fs.path("dir"), "trusted.more", more)
    want["dir"]["trusted.more"] = more
    assert dump_xattrs(fs.mnt) == want
    fs.unmount()
    fs.fsck()
    k.mount()
    assert dump_xattrs(k.mnt) == want
    k.unmount()
    assert file_acl_block(fs.image, "block") == 0


@pytest.mark.parametrize("variant", [
    pytest.param("ext2", id="ext2-4k"),
    pytest.param("ext4", id="ext4-4k"),
    pytest.param("ext4-1k", id="ext4-1k")])
def test_shared_xattr_blocks(fs_factory, fs_unmounted, variant):
    """50 files whose identical xattr blocks the kernel shares (one block,
    refcount 50); changes here must copy, not write through the shared
    block, and keep the refcount right."""
    fs = fs_unmounted
    N = 50
    bs = fs.sb_raw()["blocksize"]
    big = pattern(bs // 3, 1)
    k = fs_factory(variant, driver="kernel", image=fs.image, name="k")
    for i in range(N):
        p = k.path("f%02d" % i)
        write_file(p, b"")
        os.setxattr(p, "user.big", big)
        os.setxattr(p, "user.big2", big[::-1])
    k.unmount()
    blocks = {file_acl_block(fs.image, "f%02d" % i) for i in range(N)}
    assert len(blocks) == 1 and 0 not in blocks, \
        "the kernel did not share the xattr block: %s" % sorted(blocks)
    shared = blocks.pop()

    fs.mount()
    free0 = fs.statfs().f_bfree
    for i in range(N):
        p = fs.path("f%02d" % i)
        assert os.getxattr(p, "user.big") == big
        assert os.getxattr(p, "user.big2") == big[::-1]
    want = {"f%02d" % i: {"user.big": big, "user.big2": big[::-1]}
            for i in range(N)}
    for i in range(0, 10):          # replace one value
        v = pattern(bs // 3, 100 + i)
        os.setxattr(fs.path("f%02d" % i), "user.big", v)
        want["f%02d" % i]["user.big"] = v
    for i in range(10, 20):         # remove one value
        os.removexattr(fs.path("f%02d" % i), "user.big")
        del want["f%02d" % i]["user.big"]
    for i in range(20, 25):         # remove both: no block left
        os.removexattr(fs.path("f%02d" % i), "user.big")
        os.removexattr(fs.path("f%02d" % i), "user.big2")
        del want["f%02d" % i]
    for i in range(25, 30):         # add a small one (fits in the inode)
        os.setxattr(fs.path("f%02d" % i), "user.s", b"small")
        want["f%02d" % i]["user.s"] = b"small"
    for i in range(30, 35):         # add a big one (block must change)
        os.setxattr(fs.path("f%02d" % i), "user.more", pattern(bs // 8, i))
        want["f%02d" % i]["user.more"] = pattern(bs // 8, i)
    for i in range(35, 40):         # remove the files
        os.unlink(fs.path("f%02d" % i))
        del want["f%02d" % i]
    assert dump_xattrs(fs.mnt) == want
    f4test.sync_fs(fs.mnt)
    # at most one new block for each file whose block content changed
    # (0-19, 30-34: the kernel shares identical results even more); files
    # 20-24 hold none any more, 25-29 fit the small value in the inode,
    # the unlinked ones only drop a reference to the shared block
    assert fs.statfs().f_bfree >= free0 - 25
    fs.unmount()
    fs.fsck()
    for i in range(40, N):          # untouched files keep the shared block
        assert file_acl_block(fs.image, "f%02d" % i) == shared, i
    for i in range(20, 25):
        assert file_acl_block(fs.image, "f%02d" % i) == 0, i
    k.mount()
    assert dump_xattrs(k.mnt) == want
    # the kernel can still change and delete through the shared block
    for i in range(40, N):
        os.unlink(k.path("f%02d" % i))
    k.unmount()
    k.fsck()


@pytest.mark.parametrize("variant", [
    pytest.param("ext2", id="ext2-4k"),
    pytest.param("ext4", id="ext4-4k"),
    pytest.param("ext4-1k", id="ext4-1k")])
def test_xattr_blocks_are_freed(fs):
    """Removing attributes, or the files that hold them, gives their
    external blocks back (statfs free count)."""
    bs = sb_blocksize(fs)
    N = 20
    for i in range(N):
        write_file(fs.path("f%02d" % i), b"")
    f4test.sync_fs(fs.mnt)
    free0 = fs.statfs().f_bfree
    for i in range(N):
        # distinct values: no sharing
        os.setxattr(fs.path("f%02d" % i), "user.big", pattern(bs // 2, i))
    f4test.sync_fs(fs.mnt)
    free1 = fs.statfs().f_bfree
    assert free1 == free0 - N, (free0, free1)
    for i in range(N // 2):
        os.removexattr(fs.path("f%02d" % i), "user.big")
    f4test.sync_fs(fs.mnt)
    assert fs.statfs().f_bfree == free0 - N // 2
    for i in range(N // 2, N):
        os.unlink(fs.path("f%02d" % i))
    f4test.sync_fs(fs.mnt)
    assert fs.statfs().f_bfree == free0
    fs.remount()
    assert fs.statfs().f_bfree == free0


# ---------------------------------------------------------------------------
# ea_inode: values too big for the xattr block live in inodes of their own
# (issue 15, item 2).  Deleting a file with an xattr block killed the
# daemon (a NULL callback to libext2fs's iterator), also at mount through
# orphan recovery; EA inodes were never freed, and the owner's i_blocks
# lacked the value's blocks, which the kernel charges (e2fsck agrees).

EA_GEOMS = [
    pytest.param("ext4", marks=pytest.mark.mkfs_opts("-O", "ea_inode"),
                 id="ea-4k"),
    pytest.param("ext4-1k", marks=pytest.mark.mkfs_opts("-O", "ea_inode"),
                 id="ea-1k"),
]


def _counts(mnt, want=None, timeout=5.0):
    """(free blocks, free inodes); with want, wait up to timeout for them
    (the kernel's FORGET, after which an unlinked inode goes, comes
    asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        f4test.sync_fs(mnt)
        st = os.statvfs(mnt)
        got = st.f_bfree, st.f_ffree
        if want is None or got == want or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


@pytest.mark.parametrize("variant", EA_GEOMS)
def test_ea_inode_rm_of_file_with_xattrs(fs):
    """touch d; setfattr -n user.a -v <700 bytes> d; rm d (the crash), and
    the same with a value in an EA inode, and with both."""
    bs = sb_blocksize(fs)
    free0 = _counts(fs.mnt)
    cases = {"block": [("user.a", pattern(700, 1))],
             "eainode": [("user.big", pattern(3 * bs + 5, 2))],
             "both": [("user.a", pattern(700, 3)),
                      ("user.big", pattern(2 * bs, 4)),
                      ("trusted.big", pattern(bs + 1, 5))]}
    for name, attrs in cases.items():
        p = fs.path(name)
        write_file(p, b"")
        for k, v in attrs:
            os.setxattr(p, k, v)
        for k, v in attrs:
            assert os.getxattr(p, k) == v
        os.unlink(p)
        assert os.listdir(fs.mnt) == ["lost+found"], name
        assert _counts(fs.mnt, free0) == free0, (
            "%s: not everything came back after rm" % name)
    fs.remount()
    assert _counts(fs.mnt) == free0


def _ea_steps(root, bs):
    """Set, replace and remove values in EA inodes; after each step, the
    file's st_blocks and the free counts (relative to the start)."""
    a = os.path.join(root, "a")
    b = os.path.join(root, "b")
    write_file(a, b"")
    write_file(b, b"")
    base = _counts(root)
    out = []

    def note(what, unlinked=False):
        # first as stat(1) asks (statx for the blocks only: what the
        # kernel has cached), then in full
        p = run(["stat", "-c", "%b", a], check=False)
        blocks = None
        if p.returncode == 0:
            blocks = (int(p.stdout), os.stat(a).st_blocks)
        cnt = _counts(root)
        if unlinked:
            # freed at the kernel's FORGET, which comes asynchronously
            before = out[-1][3]
            deadline = time.monotonic() + 5
            while base[1] - cnt[1] >= before and \
                    time.monotonic() < deadline:
                time.sleep(0.05)
                cnt = _counts(root)
        out.append((what, blocks, base[0] - cnt[0], base[1] - cnt[1]))

    # distinct values: the kernel shares EA inodes holding equal ones
    os.setxattr(a, "user.big", pattern(3 * bs + 100, 10))
    note("set big")
    os.setxattr(a, "user.big2", pattern(2 * bs, 11))
    note("set big2")
    os.setxattr(a, "user.big", pattern(5 * bs, 12))
    note("replace big with bigger")
    os.setxattr(a, "user.big", pattern(100, 13))
    note("replace big with small")
    os.setxattr(a, "user.big", pattern(bs + 1, 14))
    note("replace small with big")
    os.setxattr(a, "user.blk", pattern(700, 15))
    note("set block value")
    os.removexattr(a, "user.big2")
    note("remove big2")
    os.setxattr(b, "user.x", pattern(4 * bs, 16))
    os.setxattr(b, "user.y", pattern(600, 17))
    note("set b")
    os.unlink(b)
    note("unlink b", unlinked=True)
    want = {"user.big": pattern(bs + 1, 14), "user.blk": pattern(700, 15)}
    got = {k: os.getxattr(a, k) for k in os.listxattr(a)}
    assert got == want
    os.unlink(a)
    note("unlink a", unlinked=True)
    return out


@pytest.mark.parametrize("variant", EA_GEOMS)
def test_ea_inode_values_like_kernel(fs, kernel_ext4):
    bs = sb_blocksize(fs)
    got = _ea_steps(fs.mnt, bs)
    want = _ea_steps(kernel_ext4.mnt, bs)
    assert got == want, "\n".join(
        "%-24s fuse4fs %r kernel %r" % (g[0], g[1:], w[1:])
        for g, w in zip(got, want))
    # everything given back
    assert got[-1][2:] == (0, -2), got[-1]


def _ea_populate(root, bs):
    want = {}
    for i in range(4):
        p = os.path.join(root, "f%d" % i)
        write_file(p, b"")
        want["f%d" % i] = {"user.big": pattern(2 * bs + i, 20 + i),
                           "user.small": pattern(300 + i, 30 + i)}
        for k, v in want["f%d" % i].items():
            os.setxattr(p, k, v)
    return want


def _ea_change(root, bs, want):
    """Replace, remove and unlink on the other driver's values."""
    os.setxattr(os.path.join(root, "f0"), "user.big", pattern(3 * bs, 40))
    want["f0"]["user.big"] = pattern(3 * bs, 40)
    os.setxattr(os.path.join(root, "f1"), "user.big", pattern(50, 41))
    want["f1"]["user.big"] = pattern(50, 41)
    os.removexattr(os.path.join(root, "f2"), "user.big")
    del want["f2"]["user.big"]
    os.unlink(os.path.join(root, "f3"))
    del want["f3"]


def _ea_dump(root):
    return {n: {k: os.getxattr(os.path.join(root, n), k)
                for k in os.listxattr(os.path.join(root, n))}
            for n in os.listdir(root) if n != "lost+found"}


@pytest.mark.parametrize("variant", EA_GEOMS)
def test_ea_inode_kernel_and_here(fs_factory, fs_unmounted, variant):
    """Values written by the kernel, changed and deleted here, and the
    other way round; e2fsck -fn clean after each driver."""
    fs = fs_unmounted
    bs = sb_blocksize(fs)
    k = fs_factory(variant, driver="kernel", image=fs.image, name="k")
    want = _ea_populate(k.mnt, bs)
    blocks = {n: os.stat(os.path.join(k.mnt, n)).st_blocks for n in want}
    k.unmount()
    k.fsck()
    fs.mount()
    assert _ea_dump(fs.mnt) == want
    assert {n: os.stat(fs.path(n)).st_blocks for n in want} == blocks
    _ea_change(fs.mnt, bs, want)
    _ea_populate_more = {"g": pattern(2 * bs + 7, 50)}
    write_file(fs.path("g"), b"")
    os.setxattr(fs.path("g"), "user.big", _ea_populate_more["g"])
    want["g"] = {"user.big": _ea_populate_more["g"]}
    assert _ea_dump(fs.mnt) == want
    fs.unmount()
    fs.fsck()
    k.mount()
    assert _ea_dump(k.mnt) == want
    # the kernel replaces, removes and deletes what fuse4fs wrote
    os.setxattr(os.path.join(k.mnt, "f0"), "user.big", pattern(4 * bs, 70))
    want["f0"]["user.big"] = pattern(4 * bs, 70)
    os.removexattr(os.path.join(k.mnt, "f1"), "user.small")
    del want["f1"]["user.small"]
    os.unlink(os.path.join(k.mnt, "g"))
    del want["g"]
    assert _ea_dump(k.mnt) == want
    k.unmount()
    k.fsck()
    fs.mount()
    assert _ea_dump(fs.mnt) == want
    for n in list(want):
        os.unlink(fs.path(n))
    fs.unmount()
    fs.fsck()
    out = f4test.debugfs(fs.image, "ls -l /")
    assert "f0" not in out


@pytest.mark.parametrize("variant", EA_GEOMS)
@pytest.mark.fuse_only
def test_ea_inode_orphan_recovery(fs_unmounted):
    """kill -9 of the daemon while a file with values in an EA inode and
    an xattr block is open and unlinked: the next mount frees it all
    (the daemon died there before)."""
    from test_orphans import crash_daemon, hold_after, log_pos, log_since
    fs = fs_unmounted
    fs.mount()
    bs = sb_blocksize(fs)
    free0 = _counts(fs.mnt)

    def setup():
        p = fs.path("victim")
        fd = os.open(p, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, pattern(3 * bs, 60))
        os.setxattr(p, "user.a", pattern(700, 61))
        os.setxattr(p, "user.big", pattern(2 * bs + 3, 62))
        os.unlink(p)
        os.fsync(fd)
        fd2 = os.open(fs.mnt, os.O_RDONLY | os.O_DIRECTORY)
        os.fsync(fd2)
        os.close(fd2)
    pid = hold_after(setup)
    assert _counts(fs.mnt) != free0
    crash_daemon(fs, holders=[pid])
    pos = log_pos(fs)
    fs.mount()
    out = log_since(fs, pos)
    assert re.search(r"orphan cleanup: 1 inode", out), out
    assert os.listdir(fs.mnt) == ["lost+found"]
    assert _counts(fs.mnt, free0) == free0


@pytest.mark.parametrize("variant", EA_GEOMS)
def test_ea_inode_in_shared_block(fs_factory, fs_unmounted, variant):
    """The kernel shares identical xattr blocks, EA-inode references and
    all (one reference per block).  Changing one sharer copies the block
    here: the copy must take its own references, or removing a value from
    one file frees the EA inode the others still name."""
    fs = fs_unmounted
    bs = sb_blocksize(fs)
    k = fs_factory(variant, driver="kernel", image=fs.image, name="k")
    attrs = [("user.fill", pattern(60, 80)), ("user.a", pattern(700, 81)),
             ("user.big", pattern(bs + 904, 82))]
    want = {}
    for n in "pqr":
        write_file(os.path.join(k.mnt, n), b"")
        for key, v in attrs:
            os.setxattr(os.path.join(k.mnt, n), key, v)
        want[n] = dict(attrs)
    k.unmount()
    k.fsck()
    blocks = {file_acl_block(fs.image, n) for n in "pqr"}
    assert len(blocks) == 1 and 0 not in blocks, (
        "the kernel did not share the block: %r" % blocks)
    fs.mount()
    os.removexattr(fs.path("p"), "user.big")
    del want["p"]["user.big"]
    os.setxattr(fs.path("q"), "user.c", b"1")
    want["q"]["user.c"] = b"1"
    assert _ea_dump(fs.mnt) == want
    fs.unmount()
    fs.fsck()
    k.mount()
    assert _ea_dump(k.mnt) == want
    k.unmount()
    fs.mount()
    os.unlink(fs.path("r"))
    del want["r"]
    os.setxattr(fs.path("q"), "user.big", pattern(2 * bs, 83))
    want["q"]["user.big"] = pattern(2 * bs, 83)
    assert _ea_dump(fs.mnt) == want
    fs.unmount()
    fs.fsck()
    k.mount()
    assert _ea_dump(k.mnt) == want
    for n in list(want):
        os.unlink(os.path.join(k.mnt, n))


@pytest.mark.parametrize("variant", EA_GEOMS)
@pytest.mark.fuse_only
def test_ea_inode_kernel_orphan_recovered(fs_factory, fs_unmounted,
                                          variant):
    """An orphan written by the kernel (made one with debugfs: no name,
    no links, on s_last_orphan) that has an xattr block and a value in an
    EA inode: the mount frees it all."""
    fs = fs_unmounted
    bs = sb_blocksize(fs)
    k = fs_factory(variant, driver="kernel", image=fs.image, name="k")
    free0 = _counts(k.mnt)
    p = os.path.join(k.mnt, "victim")
    write_file(p, pattern(2 * bs, 90))
    os.setxattr(p, "user.a", pattern(700, 91))
    os.setxattr(p, "user.big", pattern(3 * bs + 1, 92))
    ino = os.stat(p).st_ino
    k.unmount()
    f4test.debugfs(fs.image, "unlink /victim", "sif <%d> links_count 0" % ino,
                   "ssv last_orphan %d" % ino, write=True)
    fs.mount()
    log = f4test.read_log(fs.log)
    assert re.search(r"orphan cleanup: 1 inode", log), log
    assert os.listdir(fs.mnt) == ["lost+found"]
    assert _counts(fs.mnt) == free0
