"""Casefolded directories (issue 17): names in a directory with the
casefold flag (chattr +F) are matched, checked for duplicates and hashed
(htree) by their NFD + casefold form in the file system's encoding
(utf8-12.1), as ext4 does; names invalid in the encoding match only
themselves byte for byte, and with encoding_flags=strict they can't be
created (EINVAL).

This machine's kernel has no CONFIG_UNICODE (no
/sys/fs/ext4/features/casefold), so it can't mount these file systems:
there is no kernel differential here.  The expectations are ext4's
documented behaviour (fs/ext4/namei.c, generic_ci_match), and every
test ends with e2fsck -fn, which recomputes the casefolded hash of every
name in every hashed directory and reports names that are duplicates
after casefolding.
"""

import errno
import fcntl
import os
import struct

import pytest

import f4test
from f4test import assert_errno
from journal_images import crc32c

FS_IOC_GETFLAGS = 0x80086601
FS_IOC_SETFLAGS = 0x40086602
CASEFOLD_FL = 0x40000000

STRICT = pytest.param("strict", marks=pytest.mark.mkfs_opts(
    "-O", "casefold", "-E", "encoding_flags=strict"), id="strict")
RELAXED = pytest.param("relaxed", marks=pytest.mark.mkfs_opts(
    "-O", "casefold"), id="relaxed")

pytestmark = [pytest.mark.fuse_only,
              pytest.mark.image_size("64M"),
              pytest.mark.variants("ext4", "ext4-1k", "ext4-inline")]


def get_flags(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        buf = fcntl.ioctl(fd, FS_IOC_GETFLAGS, b"\0" * 8)
        return struct.unpack("<i", buf[:4])[0] & 0xFFFFFFFF
    finally:
        os.close(fd)


def set_flags(path, flags):
    fd = os.open(path, os.O_RDONLY)
    try:
        v = struct.pack("<i", flags - (1 << 32) if flags >= 1 << 31
                        else flags)
        fcntl.ioctl(fd, FS_IOC_SETFLAGS, v + b"\0" * 4)
    finally:
        os.close(fd)


def casefold_dir(fs, name="cf"):
    d = fs.path(name)
    os.mkdir(d)
    set_flags(d, get_flags(d) | CASEFOLD_FL)
    assert get_flags(d) & CASEFOLD_FL
    return d


def touch(path):
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))


@pytest.mark.parametrize("mode", [STRICT, RELAXED])
def test_lookup_and_duplicates_ignore_case(fs, mode):
    d = casefold_dir(fs)
    touch(os.path.join(d, "ReadMe.TXT"))
    ino = os.stat(os.path.join(d, "ReadMe.TXT")).st_ino
    for other in ("readme.txt", "README.TXT", "rEADmE.txt"):
        assert os.stat(os.path.join(d, other)).st_ino == ino, other
    # every way of making a name that exists in another case: EEXIST
    p = os.path.join(d, "readme.txt")
    assert_errno(errno.EEXIST, touch, p)
    assert_errno(errno.EEXIST, os.mkdir, p)
    assert_errno(errno.EEXIST, os.symlink, "x", p)
    assert_errno(errno.EEXIST, os.mknod, p, 0o600)
    touch(fs.path("plain"))
    assert_errno(errno.EEXIST, os.link, fs.path("plain"), p)
    # O_CREAT without O_EXCL opens the existing file, as on ext4
    with open(os.path.join(d, "README.txt"), "a") as f:
        f.write("hello")
    assert os.listdir(d) == ["ReadMe.TXT"]
    with open(os.path.join(d, "ReadMe.TXT")) as f:
        assert f.read() == "hello"
    # and outside the casefolded directory, case still matters
    touch(fs.path("Plain"))
    assert {"Plain", "cf", "plain"} <= set(os.listdir(fs.mnt))


@pytest.mark.parametrize("mode", [RELAXED])
def test_kernel_caches_no_stale_case(fs, mode):
    """The kernel's FUSE dentries are case-sensitive: neither a cached
    absence nor a cached name may survive a change made in another case."""
    d = casefold_dir(fs)
    low, up = os.path.join(d, "abc"), os.path.join(d, "ABC")
    assert not os.path.exists(low)          # a negative lookup
    touch(up)
    assert os.path.exists(low)              # must not be hidden
    os.stat(up)
    os.unlink(low)
    assert not os.path.exists(up)           # must not survive
    # a name moved in by rename (the kernel keeps the moved dentry)
    touch(fs.path("f"))
    os.rename(fs.path("f"), os.path.join(d, "Moved"))
    os.stat(os.path.join(d, "Moved"))
    os.unlink(os.path.join(d, "moved"))
    assert not os.path.exists(os.path.join(d, "Moved"))
    # a directory listing with attributes (readdirplus, for inodes the
    # kernel doesn't hold yet: after a remount) caches no names
    touch(up)
    fs.remount()
    d = fs.path("cf")
    low, up = os.path.join(d, "abc"), os.path.join(d, "ABC")
    os.listdir(d)
    os.stat(up)
    os.unlink(low)
    assert not os.path.exists(up)
    assert os.listdir(d) == []


@pytest.mark.parametrize("mode", [STRICT, RELAXED])
def test_rename(fs, mode):
    d = casefold_dir(fs)
    j = lambda n: os.path.join(d, n)  # noqa: E731
    f4test.write_file(j("Target"), b"old")
    f4test.write_file(j("src"), b"new")
    # onto a name that exists in another case: replaces it, and the
    # entry keeps the name it had (ext4 rewrites the entry's inode only)
    os.rename(j("src"), j("TARGET"))
    assert os.listdir(d) == ["Target"]
    assert f4test.read_file(j("target")) == b"new"
    # changing only the case: both names are one file, so the kernel's
    # VFS makes it a no-op (as on ext4)
    os.rename(j("Target"), j("tArGeT"))
    assert os.listdir(d) == ["Target"]
    assert_errno(errno.EEXIST, f4test.renameat2, j("Target"), j("TARGET"),
                 1)                     # RENAME_NOREPLACE
    # across directories, and out again
    os.mkdir(j("Sub"))
    os.rename(j("target"), j("SUB/Inner"))
    assert os.listdir(j("sub")) == ["Inner"]
    os.rename(j("sub/INNER"), fs.path("out"))
    assert f4test.read_file(fs.path("out")) == b"new"
    os.rmdir(j("SUB"))
    assert os.listdir(d) == []


@pytest.mark.parametrize("mode", [STRICT, RELAXED])
def test_unicode_normalization(fs, mode):
    d = casefold_dir(fs)
    j = lambda n: os.path.join(d, n)  # noqa: E731
    touch(j("caf\u00e9"))                       # precomposed e-acute
    ino = os.stat(j("caf\u00e9")).st_ino
    # decomposed, and upper case decomposed: the same name after NFD+fold
    assert os.stat(j("cafe\u0301")).st_ino == ino
    assert os.stat(j("CAFE\u0301")).st_ino == ino
    assert os.stat(j("CAF\u00c9")).st_ino == ino
    assert_errno(errno.EEXIST, touch, j("CAFE\u0301"))
    touch(j("\u00c5ngstr\u00f6m"))
    assert os.stat(j("A\u030angstro\u0308m")).st_ino == \
        os.stat(j("\u00e5NGSTR\u00d6M")).st_ino
    # different letters stay different
    touch(j("cafe"))
    assert sorted(os.listdir(d)) == sorted(
        ["caf\u00e9", "cafe", "\u00c5ngstr\u00f6m"])
    os.unlink(j("CAFE\u0301"))
    assert sorted(os.listdir(d)) == sorted(["cafe", "\u00c5ngstr\u00f6m"])


@pytest.mark.parametrize("mode", [STRICT])
def test_strict_refuses_invalid_names(fs, mode):
    d = casefold_dir(fs).encode()
    bad = d + b"/bad\xff\xfe"
    assert_errno(errno.EINVAL, touch, bad)
    assert_errno(errno.EINVAL, os.mkdir, bad)
    assert_errno(errno.EINVAL, os.symlink, b"x", bad)
    touch(d + b"/ok")
    assert_errno(errno.EINVAL, os.link, d + b"/ok", bad)
    assert_errno(errno.EINVAL, os.rename, d + b"/ok", bad)
    assert not os.path.exists(bad)
    assert os.listdir(d) == [b"ok"]
    # outside casefolded directories any bytes are a name
    touch(os.path.join(fs.mnt.encode(), b"bad\xff"))


@pytest.mark.parametrize("mode", [RELAXED])
def test_relaxed_invalid_names_are_opaque(fs, mode):
    d = casefold_dir(fs).encode()
    touch(d + b"/X\xffy")
    # an invalid name matches only itself: its other case is another name
    assert not os.path.exists(d + b"/x\xffY")
    touch(d + b"/x\xffY")
    assert sorted(os.listdir(d)) == [b"X\xffy", b"x\xffY"]
    assert_errno(errno.EEXIST, touch, d + b"/X\xffy")
    os.unlink(d + b"/X\xffy")
    assert os.listdir(d) == [b"x\xffY"]


@pytest.mark.parametrize("mode", [RELAXED])
def test_chattr_casefold(fs, mode):
    d = fs.path("d")
    os.mkdir(d)
    touch(os.path.join(d, "f"))
    assert_errno(errno.ENOTEMPTY, set_flags, d, get_flags(d) | CASEFOLD_FL)
    os.unlink(os.path.join(d, "f"))
    set_flags(d, get_flags(d) | CASEFOLD_FL)
    # new directories inherit the flag; files don't take it
    os.mkdir(os.path.join(d, "Sub"))
    touch(os.path.join(d, "File"))
    assert get_flags(os.path.join(d, "sub")) & CASEFOLD_FL
    assert not get_flags(os.path.join(d, "file")) & CASEFOLD_FL
    assert_errno(errno.EOPNOTSUPP, set_flags, os.path.join(d, "file"),
                 CASEFOLD_FL)
    assert os.path.exists(os.path.join(d, "SUB"))
    assert_errno(errno.ENOTEMPTY, set_flags, d, get_flags(d) & ~CASEFOLD_FL)
    os.rmdir(os.path.join(d, "sub"))
    os.unlink(os.path.join(d, "FILE"))
    set_flags(d, get_flags(d) & ~CASEFOLD_FL)
    touch(os.path.join(d, "abc"))
    touch(os.path.join(d, "ABC"))       # case matters again
    assert sorted(os.listdir(d)) == ["ABC", "abc"]


@pytest.mark.variants("ext4")
def test_chattr_casefold_needs_feature(fs):
    d = fs.path("d")
    os.mkdir(d)
    assert_errno(errno.EOPNOTSUPP, set_flags, d, get_flags(d) | CASEFOLD_FL)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("mode", [STRICT, RELAXED])
def test_large_casefolded_directory(fs, mode):
    """Enough names for an htree (several leaves even at 4 KiB): every
    name hashed in its casefolded form, found in any case, before and
    after a remount (cold caches, lookups through the on-disk index)."""
    d = casefold_dir(fs)
    n = 700
    names = ["Entry-%04d-\u00c9t\u00e9" % i for i in range(n)]
    for name in names:
        touch(os.path.join(d, name))
    for name in names[::7]:
        assert os.path.exists(os.path.join(d, name.swapcase()))
    fs.remount()
    d = fs.path("cf")
    assert len(os.listdir(d)) == n
    missing = [nm for nm in names
               if not os.path.exists(os.path.join(d, nm.upper()))]
    assert not missing, missing[:5]
    for name in names[::2]:
        os.unlink(os.path.join(d, name.lower()))
    for name in names[1::4]:
        assert_errno(errno.EEXIST, touch, os.path.join(d, name.upper()))
    assert sorted(os.listdir(d)) == sorted(names[1::2])


def _patch_encoding_flags(image, flags):
    """Set s_encoding_flags and fix the superblock checksum."""
    with open(image, "r+b") as f:
        f.seek(1024)
        sb = bytearray(f.read(1024))
        struct.pack_into("<H", sb, 0x27E, flags)
        struct.pack_into("<I", sb, 0x3FC, crc32c(0xFFFFFFFF, bytes(sb[:0x3FC])))
        f.seek(1024)
        f.write(sb)


@pytest.mark.variants("ext4")
@pytest.mark.parametrize("mode", [RELAXED])
def test_unknown_encoding_flags_refused(fs_unmounted, mode):
    """An encoding flag fuse4fs doesn't know could change what names
    match: refused, naming the feature."""
    _patch_encoding_flags(fs_unmounted.image, 0x2)
    mnt = fs_unmounted.mnt
    res = f4test.run([f4test.fuse4fs_binary(), "-o", "ro",
                      fs_unmounted.image, mnt], check=False, timeout=60)
    assert not f4test.is_mounted(mnt)
    assert res.returncode != 0
    assert "casefold" in res.stderr, res.stderr
    _patch_encoding_flags(fs_unmounted.image, 0)


@pytest.mark.parametrize("mode", [RELAXED])
def test_mixed_workload_survives_remount(fs, mode):
    """Files in a casefolded tree get the usual treatment through names in
    any case; after a remount everything is found again and e2fsck (at
    teardown) finds the hashes and link counts right."""
    d = casefold_dir(fs, "Top")
    j = lambda n: os.path.join(d, n)  # noqa: E731
    os.mkdir(j("Dir"))
    f4test.write_file(j("dir/Data.bin"), f4test.pattern(300000))
    os.link(j("DIR/data.BIN"), j("Hard"))
    assert os.stat(j("hard")).st_nlink == 2
    os.setxattr(j("HARD"), "user.k", b"v")
    os.truncate(j("dir/DATA.bin"), 70000)
    fd = os.open(j("Dir/data.bin"), os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, 100000)
    finally:
        os.close(fd)
    for i in range(120):
        touch(j("dir/F%03d" % i))
    for i in range(0, 120, 3):
        os.unlink(j("DIR/f%03d" % i))
    os.rename(j("dir/f001"), j("HARD"))     # replaces the hard link
    fs.remount()
    d = fs.path("Top")
    assert sorted(os.listdir(d)) == ["Dir", "Hard"]
    assert os.stat(j("dir/data.bin")).st_nlink == 1
    assert os.stat(j("dir/data.bin")).st_size == 100000
    assert f4test.read_file(j("DIR/DATA.BIN"))[:70000] == \
        f4test.pattern(300000)[:70000]
    assert len(os.listdir(j("dIR"))) == 1 + 120 - 40 - 1
    assert os.stat(j("hard")).st_size == 0
