"""A full file system (issue #8, "Hostile and unlucky input").

Data space (one big file, many small ones), inodes and xattr space run
out: the call that can't be satisfied fails with ENOSPC, nothing written
before is lost (also after a remount), and deleting everything gives back
exactly the free blocks and inodes there were before (statfs after sync,
dumpe2fs after unmount): no leaked blocks.  The root-reserved blocks stay
out of reach of other users, as with the kernel's ext4.  Every image must
pass e2fsck -fn at the end (the fixtures check).
"""

import errno
import os
import shutil

import pytest

import f4test
from f4test import pattern, read_file, write_file

NOBODY = 65534
CHUNK = 1 << 20


def _chunk(i):
    return pattern(CHUNK, seed=1000 + i)


def _stream(n):
    """The first n bytes of the big file's content."""
    out = bytearray()
    i = 0
    while len(out) < n:
        out += _chunk(i)
        i += 1
    return bytes(out[:n])


def _counts(fs):
    """(free blocks, free inodes) from statfs after a sync."""
    f4test.sync_fs(fs.mnt)
    st = fs.statfs()
    return st.f_bfree, st.f_ffree


def _dumpe2fs_counts(fs):
    h = f4test.dumpe2fs_h(fs.image)
    return int(h["Free blocks"]), int(h["Free inodes"])


def _baseline(fs):
    """Free counts of the file system as it is now, from dumpe2fs (after
    an unmount) and from statfs (after mounting again)."""
    f4test.sync_fs(fs.mnt)
    fs.unmount()
    disk = _dumpe2fs_counts(fs)
    fs.mount()
    return _counts(fs), disk


def _assert_back_to(fs, base, what):
    """After deleting everything: exactly the free counts of base."""
    (s_blocks, s_inodes), (d_blocks, d_inodes) = base
    f4test.sync_fs(fs.mnt)
    # unlinked inodes are freed when the kernel forgets them, a moment
    # after the unlink returns
    st = f4test.wait_statfs(fs.mnt, lambda st: (st.f_bfree, st.f_ffree) ==
                            (s_blocks, s_inodes))
    now = st.f_bfree, st.f_ffree
    assert now == (s_blocks, s_inodes), (
        "%s: statfs after deleting everything and syncing: %d free blocks, "
        "%d free inodes; before: %d, %d" % (what, now[0], now[1], s_blocks,
                                            s_inodes))
    fs.unmount()
    disk = _dumpe2fs_counts(fs)
    assert disk == (d_blocks, d_inodes), (
        "%s: dumpe2fs after deleting everything: %d free blocks, %d free "
        "inodes; before: %d, %d (leaked blocks or inodes)" % (
            what, disk[0], disk[1], d_blocks, d_inodes))
    fs.fsck()


KEEP = {"keep/a": pattern(10000, seed=1), "keep/b": pattern(300000, seed=2),
        "keep/c": pattern(1 << 20, seed=3)}


def _write_keep(fs):
    os.mkdir(fs.path("keep"))
    for rel, data in KEEP.items():
        write_file(fs.path(rel), data)
    os.setxattr(fs.path("keep/a"), "user.keep", b"kept")


def _check_keep(fs):
    for rel, data in KEEP.items():
        assert read_file(fs.path(rel)) == data, "%s changed" % rel
    assert os.getxattr(fs.path("keep/a"), "user.keep") == b"kept"


def _fill_one_file(path):
    """Append 1 MiB chunks until a write fails.  Returns (bytes written,
    errno of the failure, errno of fsync afterwards)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    written, err, i = 0, 0, 0
    try:
        while True:
            data = memoryview(_chunk(i))
            try:
                while data:
                    n = os.write(fd, data)
                    written += n
                    data = data[n:]
            except OSError as e:
                err = e.errno
                break
            i += 1
            if i > 4096:
                break
        ferr = f4test.errno_of(os.fsync, fd)
    finally:
        os.close(fd)
    return written, err, ferr


# ---------------------------------------------------------------------------

@pytest.mark.image_size("16M")
@pytest.mark.variants("ext4", "ext2", "ext4-1k")
def test_enospc_one_big_file(fs):
    _write_keep(fs)
    base = _baseline(fs)
    written, err, ferr = _fill_one_file(fs.path("big"))
    assert err == errno.ENOSPC, "filling the file system: %s after %d " \
        "bytes" % (f4test.errname(err), written)
    assert ferr == 0, "fsync after ENOSPC: %s (what write() accepted must " \
        "be on disk)" % f4test.errname(ferr)
    assert written > 4 << 20, written
    st = fs.statfs()
    assert st.f_bavail == 0, "ENOSPC with %d blocks available" % st.f_bavail
    # what was accepted is there, and so is everything else
    assert os.path.getsize(fs.path("big")) == written
    assert read_file(fs.path("big")) == _stream(written)
    _check_keep(fs)
    assert f4test.errno_of(write_file, fs.path("keep/more"),
                           pattern(1 << 20)) == errno.ENOSPC
    fs.remount()
    assert read_file(fs.path("big")) == _stream(written)
    _check_keep(fs)
    os.unlink(fs.path("big"))
    os.unlink(fs.path("keep/more"))
    _assert_back_to(fs, base, "one big file")


@pytest.mark.image_size("16M")
@pytest.mark.variants("ext4", "ext2")
def test_enospc_many_small_files(fs):
    _write_keep(fs)
    base = _baseline(fs)
    os.mkdir(fs.path("many"))
    done, err, last = 0, 0, None
    for i in range(100000):
        data = (b"%08d" % i) * 4096         # 32 KiB
        last = fs.path("many", "f%05d" % i)
        err = f4test.errno_of(write_file, last, data)
        if err:
            break
        done += 1
    assert err == errno.ENOSPC, "after %d files: %s" % (done,
                                                        f4test.errname(err))
    assert done > 50, done
    st = fs.statfs()
    assert st.f_ffree > 0, "ran out of inodes, not of blocks"

    def check():
        for i in range(done):
            p = fs.path("many", "f%05d" % i)
            assert read_file(p) == (b"%08d" % i) * 4096, p
        if os.path.exists(last):        # the one that failed: a prefix
            got = read_file(last)
            assert got == ((b"%08d" % done) * 4096)[:len(got)]
        _check_keep(fs)
    check()
    fs.remount()
    check()
    shutil.rmtree(fs.path("many"))
    _assert_back_to(fs, base, "many small files")


@pytest.mark.image_size("16M")
@pytest.mark.mkfs_opts("-N", "64")
@pytest.mark.variants("ext4", "ext2")
def test_enospc_inodes(fs):
    _write_keep(fs)
    base = _baseline(fs)
    free_inodes = fs.statfs().f_ffree
    assert 0 < free_inodes < 200, free_inodes
    os.mkdir(fs.path("i"))
    made, err = 0, 0
    for n in range(10000):
        err = f4test.errno_of(write_file, fs.path("i", "e%04d" % n), b"")
        if err:
            break
        made += 1
    assert err == errno.ENOSPC, "creating file %d: %s" % (made,
                                                          f4test.errname(err))
    assert made == free_inodes - 1, (made, free_inodes)
    assert fs.statfs().f_ffree == 0
    assert f4test.errno_of(os.mkdir, fs.path("i", "d")) == errno.ENOSPC
    assert f4test.errno_of(os.symlink, "x", fs.path("i", "l")) == errno.ENOSPC
    assert f4test.errno_of(os.mknod, fs.path("i", "p"),
                           0o644 | 0o010000) == errno.ENOSPC
    assert not os.path.exists(fs.path("i", "e%04d" % made))
    # data still goes into the inodes there are
    write_file(fs.path("i", "e0000"), pattern(200000, seed=6))
    os.link(fs.path("i", "e0001"), fs.path("i", "hardlink"))
    _check_keep(fs)
    fs.remount()
    assert len(os.listdir(fs.path("i"))) == made + 1
    assert read_file(fs.path("i", "e0000")) == pattern(200000, seed=6)
    _check_keep(fs)
    shutil.rmtree(fs.path("i"))
    _assert_back_to(fs, base, "inodes")


@pytest.mark.image_size("32M")
@pytest.mark.variants("ext4", "ext2")
def test_enospc_xattrs(fs):
    _write_keep(fs)
    base = _baseline(fs)
    write_file(fs.path("x"), b"xattrs here")
    names, err = [], 0
    for n in range(1000):
        name = "user.attr%04d" % n
        err = f4test.errno_of(os.setxattr, fs.path("x"), name,
                              pattern(200, seed=n))
        if err:
            break
        names.append(name)
    assert err == errno.ENOSPC, "xattr %d: %s" % (len(names),
                                                  f4test.errname(err))
    assert len(names) >= 10, names

    def check():
        got = sorted(n for n in os.listxattr(fs.path("x"))
                     if n.startswith("user.attr"))
        assert got == names
        for n, name in enumerate(names):
            assert os.getxattr(fs.path("x"), name) == pattern(200, seed=n)
        assert read_file(fs.path("x")) == b"xattrs here"
        _check_keep(fs)
    check()
    # a smaller one may still fit, a replacement of the same size must
    os.setxattr(fs.path("x"), names[0], pattern(200, seed=0),
                os.XATTR_REPLACE)
    fs.remount()
    check()
    for name in names:
        os.removexattr(fs.path("x"), name)
    os.unlink(fs.path("x"))
    _assert_back_to(fs, base, "xattrs")


# ---------------------------------------------------------------------------
# reserved blocks

def _fill_as_user(path):
    """Runs as NOBODY: fill path until a write fails."""
    written, err, ferr = _fill_one_file(path)
    return written, err


def _reserved_run(fsobj):
    """Fill fsobj as NOBODY, then write as root.  Returns a dict."""
    pub = fsobj.path("pub")
    os.mkdir(pub)
    os.chmod(pub, 0o777)
    sb = fsobj.sb_raw()
    bs = sb["blocksize"]
    out = {"r_blocks": sb["r_blocks"], "blocks": sb["blocks"], "bs": bs}
    written, err = f4test.run_as(NOBODY, NOBODY, _fill_as_user,
                                 os.path.join(pub, "user"))
    out["user_written"], out["user_err"] = written, err
    f4test.sync_fs(fsobj.mnt)
    st = fsobj.statfs()
    out["bfree_after_user"], out["bavail_after_user"] = st.f_bfree, \
        st.f_bavail
    # root reaches into the reserve
    want = sb["r_blocks"] * bs // 2
    out["root_err"] = f4test.errno_of(write_file, fsobj.path("root"),
                                      pattern(want, seed=7))
    out["root_ok"] = (out["root_err"] == 0 and
                      read_file(fsobj.path("root")) == pattern(want, seed=7))
    # and the user still can't
    out["user_again"] = f4test.errno_as(
        NOBODY, NOBODY, write_file, os.path.join(pub, "more"),
        pattern(2 * bs, seed=8))
    os.unlink(os.path.join(pub, "user"))
    if os.path.exists(os.path.join(pub, "more")):
        os.unlink(os.path.join(pub, "more"))
    os.unlink(fsobj.path("root"))
    return out


@pytest.mark.image_size("64M")
@pytest.mark.mkfs_opts("-m", "10")
@pytest.mark.mount_opts("allow_other")
@pytest.mark.variants("ext4", "ext2")
def test_reserved_blocks_for_root(fs, kernel_ext4):
    """mke2fs -m 10: a user fills the file system and gets ENOSPC with the
    reserved 10% still free; root can then write into them; the user
    still can't.  The kernel's ext4 on an identical image is the
    reference for how much the user gets."""
    got = _reserved_run(fs)
    ref = _reserved_run(kernel_ext4) if fs.driver != "kernel" else got
    bs = got["bs"]
    problems = []
    if got["user_err"] != errno.ENOSPC:
        problems.append("the user's fill ended with %s" %
                        f4test.errname(got["user_err"]))
    if got["bfree_after_user"] < got["r_blocks"] * 0.95:
        problems.append("after the user's ENOSPC only %d blocks are free; "
                        "%d are reserved for root (the user wrote %d MiB, "
                        "the kernel lets the user write %d MiB)" % (
                            got["bfree_after_user"], got["r_blocks"],
                            got["user_written"] >> 20,
                            ref["user_written"] >> 20))
    if not got["root_ok"]:
        problems.append("root could not write into the reserved blocks: %s"
                        % f4test.errname(got["root_err"]))
    if got["user_again"] != errno.ENOSPC:
        problems.append("the user's second write: %s" %
                        f4test.errname(got["user_again"]))
    tol = got["blocks"] * bs // 50          # 2% of the file system
    if abs(got["user_written"] - ref["user_written"]) > tol:
        problems.append("the user wrote %d bytes, on the kernel %d" % (
            got["user_written"], ref["user_written"]))
    assert not problems, "\n".join(problems) + "\n%r\nkernel: %r" % (got, ref)
