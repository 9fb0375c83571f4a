"""O_TMPFILE (issue #4).

libfuse 3.14 does not dispatch FUSE_TMPFILE; fuse4fs handles it in its own
request loop.  An O_TMPFILE file is an orphan from birth: nlink 0, data
through the descriptor, and either linkat() gives it a name (through
/proc/self/fd/N with AT_SYMLINK_FOLLOW, or AT_EMPTY_PATH) or its blocks are
freed when it is closed (or by the next mount after a crash).  O_EXCL
forbids the link.  Outcomes and errnos are compared with kernel ext4.

Note: os.link(src, dst, follow_symlinks=True) calls link(2), which does
not follow the /proc magic link and fails with EXDEV on any file system,
so linkat(2) is called through ctypes here.
"""

import ctypes
import errno
import os
import stat

import pytest

import f4test
import journal_images as J
from f4test import pattern

import test_orphans as TO

AT_FDCWD = -100
AT_SYMLINK_FOLLOW = 0x400
AT_EMPTY_PATH = 0x1000

_libc = ctypes.CDLL("libc.so.6", use_errno=True)
_libc.linkat.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int,
                         ctypes.c_char_p, ctypes.c_int]


def linkat(olddirfd, oldpath, newpath, flags):
    if _libc.linkat(olddirfd, os.fsencode(oldpath), AT_FDCWD,
                    os.fsencode(newpath), flags) < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), oldpath, None, newpath)


def link_fd(fd, newpath):
    """Give the file open on fd the name newpath, as the O_TMPFILE man
    page shows: linkat(AT_FDCWD, "/proc/self/fd/N", ..., AT_SYMLINK_FOLLOW)."""
    linkat(AT_FDCWD, "/proc/self/fd/%d" % fd, newpath, AT_SYMLINK_FOLLOW)


def link_fd_empty_path(fd, newpath):
    linkat(fd, "", newpath, AT_EMPTY_PATH)


def outcome(fn, *args):
    try:
        v = fn(*args)
        return ("ok", v)
    except OSError as e:
        return errno.errorcode.get(e.errno, e.errno)


def mode_nlink(st):
    return (stat.filemode(st.st_mode), st.st_nlink, st.st_size, st.st_uid)


@pytest.fixture(autouse=True)
def _umask():
    old = os.umask(0o022)
    yield
    os.umask(old)


def scenario(mnt):
    """The O_TMPFILE calls; returns their observable outcomes."""
    d = os.path.join(mnt, "d")
    os.mkdir(d)
    f4test.write_file(os.path.join(mnt, "regular"), b"x")
    res = {}
    data = pattern(200000, 5)

    fd = os.open(d, os.O_TMPFILE | os.O_RDWR, 0o600)
    try:
        st = os.fstat(fd)
        res["new"] = mode_nlink(st)
        res["new-isreg"] = stat.S_ISREG(st.st_mode)
        os.write(fd, data)
        res["readback"] = f4test.pread_all(fd, len(data), 0) == data
        res["size"] = os.fstat(fd).st_size
        res["dir-empty"] = os.listdir(d)
        os.setxattr(fd, "user.tag", b"tmp")
        os.fchmod(fd, 0o640)
        res["link"] = outcome(link_fd, fd, os.path.join(d, "named"))
        res["after-link"] = mode_nlink(os.fstat(fd))
        res["same-inode"] = os.stat(os.path.join(d, "named")).st_ino == \
            os.fstat(fd).st_ino
        res["named-data"] = f4test.read_file(os.path.join(d, "named")) == data
        res["named-xattr"] = os.getxattr(os.path.join(d, "named"),
                                         "user.tag")
        # a linked O_TMPFILE is an ordinary file: a second link works
        res["link-again"] = outcome(link_fd, fd, os.path.join(mnt, "second"))
        res["after-second"] = os.fstat(fd).st_nlink
        res["link-exists"] = outcome(link_fd, fd, os.path.join(d, "named"))
    finally:
        os.close(fd)

    # O_EXCL: never to be linked
    fd = os.open(d, os.O_TMPFILE | os.O_RDWR | os.O_EXCL, 0o600)
    try:
        os.write(fd, b"secret")
        res["excl-link"] = outcome(link_fd, fd, os.path.join(d, "excl"))
        res["excl-nlink"] = os.fstat(fd).st_nlink
    finally:
        os.close(fd)

    # AT_EMPTY_PATH (needs CAP_DAC_READ_SEARCH: we are root)
    fd = os.open(d, os.O_TMPFILE | os.O_WRONLY, 0o666)
    try:
        res["wronly-mode"] = mode_nlink(os.fstat(fd))
        os.write(fd, b"empty path")
        res["empty-path-link"] = outcome(link_fd_empty_path, fd,
                                         os.path.join(d, "viaempty"))
    finally:
        os.close(fd)
    res["viaempty"] = f4test.read_file(os.path.join(d, "viaempty"))

    # a tmpfile nobody links leaves no name behind
    fd = os.open(mnt, os.O_TMPFILE | os.O_RDWR, 0o644)
    os.write(fd, b"gone")
    os.close(fd)

    # errors
    res["rdonly"] = outcome(os.open, d, os.O_TMPFILE | os.O_RDONLY, 0o600)
    res["on-file"] = outcome(os.open, os.path.join(mnt, "regular"),
                             os.O_TMPFILE | os.O_RDWR, 0o600)
    res["no-dir"] = outcome(os.open, os.path.join(mnt, "nodir"),
                            os.O_TMPFILE | os.O_RDWR, 0o600)
    res["names"] = sorted(os.listdir(d)), sorted(os.listdir(mnt))
    return res


@pytest.mark.fuse_only
@pytest.mark.variants("ext4", "ext2", "ext4-inline")
def test_tmpfile_like_kernel(fs, kernel_ext4):
    got = scenario(fs.mnt)
    ref = scenario(kernel_ext4.mnt)
    diff = ["%s: fuse4fs %r, kernel %r" % (k, got.get(k), ref.get(k))
            for k in sorted(set(got) | set(ref)) if got.get(k) != ref.get(k)]
    assert not diff, "\n".join(diff)
    # what the kernel gives, spelled out
    assert ref["new"] == ("-rw-------", 0, 0, 0)
    assert ref["link"] == ("ok", None) and ref["after-link"][1] == 1
    assert ref["excl-link"] == "ENOENT"
    # the named file survives a remount, with its data
    data = pattern(200000, 5)
    fs.remount()
    assert f4test.read_file(fs.path("d", "named")) == data
    st = os.stat(fs.path("d", "named"))
    assert (stat.S_IMODE(st.st_mode), st.st_nlink) == (0o640, 2)
    assert os.getxattr(fs.path("d", "named"), "user.tag") == b"tmp"
    assert f4test.read_file(fs.path("d", "viaempty")) == b"empty path"
    fs.unmount()
    J.assert_fsck_clean(fs.image)


@pytest.mark.variants("ext4", "ext4-1k")
def test_unlinked_tmpfile_reclaimed_on_close(fs_unmounted):
    fs = fs_unmounted
    sb0 = TO.sb_counts(fs.image)
    fs.mount()
    b0, i0 = TO.bfree(fs.mnt), TO.ffree(fs.mnt)
    fd = os.open(fs.mnt, os.O_TMPFILE | os.O_RDWR, 0o600)
    try:
        os.write(fd, pattern(4 << 20, 1))
        os.fsync(fd)
        assert TO.bfree(fs.mnt) <= b0 - (4 << 20) // fs.blocksize
        assert TO.ffree(fs.mnt) == i0 - 1
        assert os.fstat(fd).st_nlink == 0
    finally:
        os.close(fd)
    got = TO.wait_counts(fs.mnt, b0, i0)
    assert got == (b0, i0), "after close: %s, before: %s" % (got, (b0, i0))
    assert os.listdir(fs.mnt) == ["lost+found"]
    fs.unmount()
    J.assert_fsck_clean(fs.image)
    assert TO.sb_counts(fs.image) == sb0
    assert TO.orphan_state(fs.image) == (0, False)


@pytest.mark.fuse_only
@pytest.mark.variants("ext4")
@pytest.mark.parametrize("form", TO.ORPHAN_FORMS)
def test_tmpfile_open_at_crash_is_freed_by_next_mount(fs_unmounted, form):
    fs = fs_unmounted
    sb0 = TO.sb_counts(fs.image)
    fs.mount()

    def setup():
        fd = os.open(fs.mnt, os.O_TMPFILE | os.O_RDWR, 0o600)
        os.write(fd, pattern(2 << 20, 3))
        os.fsync(fd)
        TO.fsync_dir(fs.mnt)
    pid = TO.hold_after(setup)
    TO.crash_daemon(fs, holders=[pid])
    first, present = TO.orphan_state(fs.image)
    assert first or present, "the O_TMPFILE inode is not on the orphan list"
    pos = TO.log_pos(fs)
    fs.mount()
    out = TO.log_since(fs, pos)
    assert "orphan cleanup: 1 inode freed" in out, out
    fs.unmount()
    J.assert_fsck_clean(fs.image)
    assert TO.sb_counts(fs.image) == sb0
    assert TO.orphan_state(fs.image) == (0, False)


@pytest.mark.fuse_only
@pytest.mark.variants("ext4")
def test_linked_tmpfile_leaves_no_orphan(fs_unmounted):
    """Linking takes the inode off the orphan list: a crash after the
    link (and an fsync) leaves a normal file and nothing to clean up."""
    fs = fs_unmounted
    fs.mount()
    data = pattern(300000, 9)

    def setup():
        fd = os.open(fs.mnt, os.O_TMPFILE | os.O_RDWR, 0o644)
        os.write(fd, data)
        link_fd(fd, fs.path("kept"))
        os.fsync(fd)
        TO.fsync_dir(fs.mnt)
    pid = TO.hold_after(setup)
    TO.crash_daemon(fs, holders=[pid])
    assert TO.orphan_state(fs.image) == (0, False)
    pos = TO.log_pos(fs)
    fs.mount()
    assert "orphan" not in TO.log_since(fs, pos)
    assert f4test.read_file(fs.path("kept")) == data
    assert os.stat(fs.path("kept")).st_nlink == 1
    fs.unmount()
    J.assert_fsck_clean(fs.image)


@pytest.mark.fuse_only
@pytest.mark.variants("ext4")
def test_tmpfile_on_read_only_mount(fs, kernel_ext4):
    got = {}
    for f in (fs, kernel_ext4):
        f.remount(opts=["ro"])
        got[f.driver] = outcome(os.open, f.mnt, os.O_TMPFILE | os.O_RDWR,
                                0o600)
        if got[f.driver][0] == "ok":
            os.close(got[f.driver][1])
    assert got["fuse4fs"] == got["kernel"] == "EROFS", got


@pytest.mark.fuse_only
@pytest.mark.variants("ext4")
@pytest.mark.mount_opts("allow_other")
def test_tmpfile_permissions(fs, kernel_ext4):
    """Another user: O_TMPFILE needs write and search permission on the
    directory, and the file belongs to the caller."""
    uid, gid = 4321, 4321

    def as_user(mnt):
        out = {}
        for name in ("open", "closed"):
            p = os.path.join(mnt, name)
            try:
                fd = os.open(p, os.O_TMPFILE | os.O_RDWR, 0o640)
            except OSError as e:
                out[name] = errno.errorcode[e.errno]
                continue
            st = os.fstat(fd)
            out[name] = (stat.filemode(st.st_mode), st.st_uid, st.st_gid,
                         st.st_nlink)
            os.write(fd, b"user data")
            try:
                link_fd(fd, os.path.join(p, "mine"))
                out[name + "-link"] = "ok"
            except OSError as e:
                out[name + "-link"] = errno.errorcode[e.errno]
            os.close(fd)
        return out

    got = {}
    for f in (fs, kernel_ext4):
        os.mkdir(f.path("open"), 0o777)
        os.chmod(f.path("open"), 0o777)
        os.mkdir(f.path("closed"), 0o755)
        got[f.driver] = f4test.run_as(uid, gid, as_user, f.mnt)
        if got[f.driver].get("open-link") == "ok":
            st = os.stat(f.path("open", "mine"))
            got[f.driver]["mine"] = (st.st_uid, st.st_gid, st.st_nlink)
    assert got["fuse4fs"] == got["kernel"], got
    assert got["kernel"]["closed"] == "EACCES"
