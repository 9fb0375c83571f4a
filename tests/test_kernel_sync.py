"""What the kernel caches must stay true: changes fuse4fs makes that the
kernel can't know about (ioctls, ACLs) are invalidated in its cache; a
generation change (FS_IOC_SETVERSION) doesn't make the kernel's inode stale;
NFS-style file handles (name_to_handle_at / open_by_handle_at) work after the
kernel has dropped its caches and go stale when the inode is reused; the
superblock's lifetime-writes counter counts each byte once.

Expectations are kernel ext4's; some tests run the same steps on a kernel
ext4 mount of the same variant (kernel_ext4) and compare.
"""

import ctypes
import ctypes.util
import errno
import fcntl
import os
import struct
import time

import pytest

import f4test
from f4test import pattern, write_file

import test_ioctl
from test_ioctl import get_flags, set_flags, set_version, get_version

FS_NOATIME_FL = test_ioctl.FS_NOATIME_FL
FS_NODUMP_FL = test_ioctl.FS_NODUMP_FL


def _ctime(path):
    return os.stat(path).st_ctime_ns


def _changes_ctime(path, fn):
    """Run fn(); return (ctime the kernel shows now, ctime before)."""
    before = _ctime(path)
    time.sleep(0.02)
    fn()
    return _ctime(path), before


# ---------------------------------------------------------------------------
# item 6: attribute changes the kernel can't see reach its cache

@pytest.mark.variants("ext4", "ext2")
def test_chattr_ctime_visible(fs, kernel_ext4):
    """chattr +A / -A, fsxattr and SETVERSION change ctime on disk; stat
    through the mount must show it at once, as on ext4, not only after a
    remount."""
    for m in (fs, kernel_ext4):
        write_file(m.path("f"), b"x")
        os.mkdir(m.path("d"))
    shown = {}
    for name in ("f", "d"):
        p = fs.path(name)
        base = get_flags(p)
        for flags in (FS_NOATIME_FL, 0, FS_NODUMP_FL):
            now, before = _changes_ctime(p,
                                         lambda: set_flags(p, base | flags))
            assert now > before, "%s: ctime unchanged after SETFLAGS %#x" % (
                name, flags)
        # the same on ext4
        k = kernel_ext4.path(name)
        kbase = get_flags(k)
        now, before = _changes_ctime(
            k, lambda: set_flags(k, kbase | FS_NOATIME_FL))
        assert now > before
        shown[name] = _ctime(p)
    # what the kernel showed is what is on disk
    fs.remount()
    for name in ("f", "d"):
        assert _ctime(fs.path(name)) == shown[name], name


@pytest.mark.variants("ext2", "ext3")
def test_setversion_ctime_visible(fs):
    write_file(fs.path("f"), b"x")
    p = fs.path("f")
    now, before = _changes_ctime(p, lambda: set_version(p, 4242))
    assert now > before
    shown = _ctime(p)
    fs.remount()
    assert _ctime(p) == shown


@pytest.mark.variants("ext4")
@pytest.mark.mount_opts("acl")
def test_acl_mode_visible(fs):
    """Setting an access ACL changes the file's mode (the group bits are the
    ACL mask) and ctime: stat must show both at once."""
    p = fs.path("f")
    write_file(p, b"x", mode=0o600)
    os.chmod(p, 0o600)
    before = os.stat(p)
    time.sleep(0.02)
    f4test.run(["setfacl", "-m", "u:2000:rwx", p])
    after = os.stat(p)
    assert after.st_mode & 0o777 == 0o670
    assert after.st_ctime_ns > before.st_ctime_ns
    fs.remount()
    again = os.stat(p)
    assert (again.st_mode, again.st_ctime_ns) == (after.st_mode,
                                                 after.st_ctime_ns)


# ---------------------------------------------------------------------------
# item 5: SETVERSION doesn't make the kernel's inode stale

@pytest.mark.variants("ext2", "ext3")
@pytest.mark.mount_opts("allow_other")
def test_setversion_open_file_usable(fs, kernel_ext4):
    """chattr -v on a file that is open and known to the kernel: the open
    file, new opens and stat keep working (they returned EIO: the kernel
    saw a new generation for an inode it holds and took it as stale)."""
    data = pattern(20000)
    p = fs.path("f")
    write_file(p, data)
    os.mkdir(fs.path("d"))
    write_file(fs.path("d", "g"), b"g")
    fd = os.open(p, os.O_RDWR)
    try:
        set_version(p, 4242)
        assert get_version(p) == 4242
        # a fresh lookup of the same names (ls -l, a path walk)
        assert sorted(os.listdir(fs.mnt))[:2] == ["d", "f"]
        for name in os.listdir(fs.mnt):
            os.lstat(fs.path(name))
        assert os.stat(p).st_size == len(data)
        assert os.pread(fd, len(data), 0) == data
        os.pwrite(fd, b"new", 0)
        with open(p, "rb") as f:
            assert f.read(3) == b"new"
        set_version(fs.path("d"), 77)
        assert os.listdir(fs.path("d")) == ["g"]
        assert f4test.read_file(fs.path("d", "g")) == b"g"
    finally:
        os.close(fd)
    # after the kernel has let go, the new version is what a lookup sees
    f4test.run(["sh", "-c", "echo 2 > /proc/sys/vm/drop_caches"])
    assert get_version(p) == 4242
    fs.remount()
    assert get_version(p) == 4242
    assert get_version(fs.path("d")) == 77
    # ext4 agrees on the version (SETVERSION is allowed there too)
    write_file(kernel_ext4.path("f"), b"")
    set_version(kernel_ext4.path("f"), 4242)
    assert get_version(kernel_ext4.path("f")) == 4242


# ---------------------------------------------------------------------------
# item 7: file handles (what NFS export uses)

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
MAX_HANDLE_SZ = 128


class _FileHandle(ctypes.Structure):
    _fields_ = [("handle_bytes", ctypes.c_uint),
                ("handle_type", ctypes.c_int),
                ("f_handle", ctypes.c_ubyte * MAX_HANDLE_SZ)]


def name_to_handle(path):
    h = _FileHandle()
    h.handle_bytes = MAX_HANDLE_SZ
    mount_id = ctypes.c_int()
    if _libc.name_to_handle_at(-100, os.fsencode(path), ctypes.byref(h),
                               ctypes.byref(mount_id), 0) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), path)
    return h


def open_by_handle(mount_fd, h, flags=os.O_RDONLY):
    fd = _libc.open_by_handle_at(mount_fd, ctypes.byref(h), flags)
    if fd < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return fd


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("2\n")


def _reopen_by_handles(m):
    """Make a tree, take handles, and open each by its handle after
    dropping the kernel's caches; what each open shows."""
    os.makedirs(m.path("d", "sub"))
    write_file(m.path("d", "sub", "f"), pattern(5000))
    write_file(m.path("d", "sub", "g"), b"g")
    handles = {n: name_to_handle(m.path(*n.split("/")))
               for n in ("d", "d/sub", "d/sub/f", "d/sub/g")}
    inos = {n: os.stat(m.path(*n.split("/"))).st_ino for n in handles}
    mfd = os.open(m.mnt, os.O_RDONLY | os.O_DIRECTORY)
    got = {}
    try:
        # files first: reconnecting a directory lists its entries
        for n, h in sorted(handles.items(), reverse=True):
            drop_caches()
            try:
                fd = open_by_handle(mfd, h)
            except OSError as e:
                pytest.fail("%r: %s: %s" % (m, n, e))
            try:
                st = os.fstat(fd)
                assert st.st_ino == inos[n], n
                if n.startswith("d/sub/"):
                    got[n] = os.pread(fd, 10000, 0)
                else:
                    got[n] = sorted(os.listdir(fd))
            finally:
                os.close(fd)
        # again, with the inodes held by the kernel
        for n, h in handles.items():
            os.close(open_by_handle(mfd, h))
    finally:
        os.close(mfd)
    return got


EXPECT_HANDLES = {"d": ["sub"], "d/sub": ["f", "g"],
                  "d/sub/f": pattern(5000), "d/sub/g": b"g"}


@pytest.mark.variants("ext4", "ext2")
def test_handles_after_drop_caches(fs, kernel_ext4):
    """Handles of files and directories open the same inodes after the
    kernel has forgotten them (it then asks the daemon for "." of the
    inode number, and ".." of directories), as on ext4."""
    assert _reopen_by_handles(kernel_ext4) == EXPECT_HANDLES
    assert _reopen_by_handles(fs) == EXPECT_HANDLES


@pytest.mark.variants("ext4-inline")
def test_handles_inline_dirs(fs):
    """The same with inline directories, where "." and ".." are not
    stored as entries.  (Kernel ext4 6.x gives ESTALE for the handle of an
    inline subdirectory here, so there is nothing to compare with.)"""
    assert _reopen_by_handles(fs) == EXPECT_HANDLES


@pytest.mark.variants("ext4", "ext2")
def test_handle_of_reused_inode_is_stale(fs):
    """A handle of a deleted inode gives ESTALE, also once its number
    belongs to a new file (the generation tells them apart)."""
    write_file(fs.path("old"), b"old")
    ino = os.stat(fs.path("old")).st_ino
    h = name_to_handle(fs.path("old"))
    os.unlink(fs.path("old"))
    drop_caches()
    mfd = os.open(fs.mnt, os.O_RDONLY | os.O_DIRECTORY)
    try:
        f4test.assert_errno(errno.ESTALE, open_by_handle, mfd, h)
        # take the number again
        for i in range(64):
            write_file(fs.path("new%d" % i), b"new")
            if os.stat(fs.path("new%d" % i)).st_ino == ino:
                break
        else:
            pytest.fail("inode %d was not reused" % ino)
        drop_caches()
        f4test.assert_errno(errno.ESTALE, open_by_handle, mfd, h)
        # and with the new inode in the kernel's cache
        fd = os.open(fs.path("new%d" % i), os.O_RDONLY)
        try:
            f4test.assert_errno(errno.ESTALE, open_by_handle, mfd, h)
        finally:
            os.close(fd)
        # the new file's own handle works
        fd = open_by_handle(mfd, name_to_handle(fs.path("new%d" % i)))
        assert os.read(fd, 10) == b"new"
        os.close(fd)
    finally:
        os.close(mfd)


@pytest.mark.variants("ext2")
def test_handle_after_setversion(fs, kernel_ext4):
    """The generation is the version: as on ext4, a handle made before
    chattr -v is stale once the kernel has let go of the inode, and a new
    handle works."""
    for m in (fs, kernel_ext4):
        write_file(m.path("f"), b"f")
    res = {}
    for m in (fs, kernel_ext4):
        h = name_to_handle(m.path("f"))
        set_version(m.path("f"), 99)
        drop_caches()
        mfd = os.open(m.mnt, os.O_RDONLY | os.O_DIRECTORY)
        try:
            res[m] = f4test.errno_of(open_by_handle, mfd, h)
            fd = open_by_handle(mfd, name_to_handle(m.path("f")))
            assert os.read(fd, 5) == b"f"
            os.close(fd)
        finally:
            os.close(mfd)
    assert res[fs] == res[kernel_ext4] == errno.ESTALE


# ---------------------------------------------------------------------------
# item 8: s_kbytes_written

def _kbytes_written(image):
    with open(image, "rb") as f:
        f.seek(1024 + 0x178)
        return struct.unpack("<Q", f.read(8))[0]


@pytest.mark.variants("ext4", "ext2")
def test_lifetime_writes_counted_once(fs):
    size = 20 << 20
    fs.unmount()
    before = _kbytes_written(fs.image)
    fs.mount()
    with open(fs.path("big"), "wb") as f:
        chunk = pattern(1 << 20)
        for _ in range(size >> 20):
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())
    fs.unmount()
    added = _kbytes_written(fs.image) - before
    # the data, plus some metadata; never twice the data
    assert size >> 10 <= added < (size >> 10) * 5 // 4, added
    lifetime = f4test.dumpe2fs_h(fs.image)["Lifetime writes"]
    assert lifetime
    fs.mount()


# ---------------------------------------------------------------------------
# the FUSE layer without a kernel (tests/tools/f4session.c): what a mount
# can't make happen on demand

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
F4SESSION_ASAN = os.path.join(REPO, "tests", "tools", "f4session-asan")


def _f4session_sources():
    skip = ("fuse4fs.c", "session.c")
    core = sorted(os.path.join(REPO, "fuse4fs", n)
                  for n in os.listdir(os.path.join(REPO, "fuse4fs"))
                  if n.endswith(".c") and n not in skip)
    return ([os.path.join(REPO, "tests", "tools", "f4session.c"),
             os.path.join(REPO, "lib", "support", "cache.c")] + core)


def f4session():
    """tests/tools/f4session built with AddressSanitizer, so that use of
    freed state fails instead of passing by luck; rebuilt when older than
    its sources."""
    srcs = _f4session_sources()
    deps = srcs + [os.path.join(REPO, "config.h")] + [
        os.path.join(REPO, "fuse4fs", n)
        for n in os.listdir(os.path.join(REPO, "fuse4fs"))
        if n.endswith(".h")]
    if os.path.exists(F4SESSION_ASAN):
        built = os.stat(F4SESSION_ASAN).st_mtime
        if all(os.stat(d).st_mtime <= built for d in deps):
            return F4SESSION_ASAN
    cflags = f4test.run(["pkg-config", "--cflags", "fuse3", "ext2fs",
                         "com_err", "uuid"]).stdout.split()
    libs = f4test.run(["pkg-config", "--libs", "fuse3", "ext2fs", "com_err",
                       "uuid"]).stdout.split()
    tmp = F4SESSION_ASAN + ".tmp%d" % os.getpid()
    f4test.run(["gcc", "-I" + REPO, "-I" + os.path.join(REPO, "lib"),
                "-D_GNU_SOURCE", "-DFUSE4FS_VERSION=\"test\""] + cflags +
               ["-O1", "-g", "-fsanitize=address,undefined",
                "-fno-sanitize-recover=all", "-fno-omit-frame-pointer",
                "-o", tmp] + srcs + libs + ["-lpthread"])
    os.rename(tmp, F4SESSION_ASAN)
    return F4SESSION_ASAN


def _session_image(tmp_path, nfiles=5):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(nfiles):
        (src / ("file%d" % i)).write_bytes(b"%d" % i)
    img = str(tmp_path / "fs.img")
    f4test.make_image(img, "ext4", 32 << 20, ["-d", str(src)])
    return img


def _run_session(img, *args):
    p = f4test.run([f4session(), img] + list(args), check=False)
    out = p.stdout + p.stderr
    if img != "-":
        fsck = f4test.run(["e2fsck", "-fn", img], check=False)
        assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    return p.returncode, out


def test_readdirplus_lost_reply_drops_references(tmp_path):
    """A READDIRPLUS reply the kernel never gets (writing it fails with
    ENOENT) must give back the lookup references of its entries: they kept
    unlinked files (orphans) alive until unmount."""
    rc, out = _run_session(_session_image(tmp_path), "readdirplus-lost")
    assert rc == 0, out
    assert "after a lost reply: 0, after a delivered one: 6" in out, out


def test_forget_after_destroy(tmp_path):
    """FORGET handled after DESTROY (a fuseblk unmount with several
    workers) must not touch the closed file system (it read freed
    memory: a crash)."""
    rc, out = _run_session(_session_image(tmp_path), "forget-after-destroy")
    assert rc == 0, out
    assert "survived" in out


def test_sysfs_write_error():
    """Setting the mount's readahead in sysfs: a write whose flush fails
    is an error, and the stream is closed once (it was closed twice)."""
    rc, out = _run_session("-", "sysfs-write", "/dev/full")
    assert rc == 0, out
    assert "No space left on device" in out, out


# ---------------------------------------------------------------------------
# open(O_TRUNC) by another user drops setuid and group-executable setgid.
# Truncating inside the OPEN request (atomic O_TRUNC) left the kernel with
# the old mode, since an open's reply carries no attributes, and the next
# hard link by a third user was refused as a link to a setgid program
# (fs.protected_hardlinks).  Found by tests/tools/difffuzz.py, seed 3.

def _trunc_then_link(root, mode):
    prog, link = os.path.join(root, "t/prog"), os.path.join(root, "d/prog")
    os.mkdir(os.path.join(root, "t"))
    os.mkdir(os.path.join(root, "d"))
    os.chmod(os.path.join(root, "d"), 0o777)
    write_file(prog, b"#!/bin/sh\n")
    os.chmod(prog, mode)
    fd = f4test.run_as(1004, 1004, os.open, prog, os.O_RDONLY | os.O_TRUNC)
    assert isinstance(fd, int)
    got = f4test.errno_as(1001, 1001, os.link, prog, link)
    return got, oct(os.stat(prog).st_mode & 0o7777), os.stat(prog).st_size


@pytest.mark.parametrize("mode", [0o2777, 0o4777, 0o6777, 0o2767])
@pytest.mark.mount_opts("allow_other")
def test_open_trunc_drops_setid_in_kernel_cache(fs, kernel_ext4, mode):
    with open("/proc/sys/fs/protected_hardlinks") as f:
        assert f.read().strip() == "1", "the test needs protected_hardlinks"
    assert _trunc_then_link(fs.mnt, mode) == \
        _trunc_then_link(kernel_ext4.mnt, mode)
