"""Mounts by a user who is not root (issue #9).

fuse4fs run by an ordinary user mounts through the setuid fusermount3, as
a plain FUSE mount (no fuseblk, no loop device).  Here the user is nobody
(uid 65534), with a home-like directory inside the test's work directory:

- an image owned by root and readable by all: `fuse4fs -o ro IMAGE
  ~/mnt` mounts it; files show their on-disk owners and modes, and the
  permission checks follow them (a 0600 root file can't be read, a 0700
  root directory can't be listed, the user's own files can); writes fail
  with EROFS; root (not allow_other) can't look in; `fusermount3 -u`
  unmounts; the image is unchanged.  Without -o ro, fuse4fs finds the
  image not writable and mounts it read-only, saying so.  An image the
  user can't read is refused (exit 2).
- an image the user owns: mounted read-write, the user creates files and
  directories (owned by the user), `fusermount3 -u` unmounts, the daemon
  exits 0 and e2fsck -fn is clean, debugfs sees the data and the owner.

If unprivileged FUSE mounts cannot work on the machine (for instance
/dev/fuse is not accessible to users: fusermount3 opens it with the
user's file-system uid) the tests fail and say why: skipping would hide
that fuse4fs' unprivileged mode is untested.
"""

import errno
import os
import re
import stat
import subprocess

import pytest

import f4test
import journal_images as J
from f4test import pattern

UID = GID = 65534           # nobody / nogroup


def setpriv(argv):
    return ["setpriv", "--reuid=%d" % UID, "--regid=%d" % GID,
            "--clear-groups"] + list(argv)


def dev_fuse_note():
    try:
        st = os.stat("/dev/fuse")
        mode = stat.filemode(st.st_mode)
        owner = "%d:%d" % (st.st_uid, st.st_gid)
    except OSError as e:
        return "/dev/fuse: %s" % e
    note = "/dev/fuse is %s %s" % (mode, owner)
    if not st.st_mode & 0o006:
        note += (": not accessible to other users, and fusermount3 opens "
                 "it with the calling user's file-system uid, so no "
                 "unprivileged FUSE mount can work on this machine (a "
                 "normal system has it 0666)")
    return note


@pytest.fixture
def home(workdir):
    """A home-like directory of the user, with a mount point in it."""
    h = os.path.join(workdir, "home")
    os.mkdir(h)
    os.mkdir(os.path.join(h, "mnt"))
    for d in (h, os.path.join(h, "mnt")):
        os.chown(d, UID, GID)
        os.chmod(d, 0o755)
    return h


class UserMount:
    """fuse4fs run by the user, in the foreground (so that its exit can
    be waited for)."""

    def __init__(self, image, mnt, opts, log):
        self.image, self.mnt, self.log = image, mnt, log
        argv = [f4test.fuse4fs_binary()]
        if opts:
            argv += ["-o", ",".join(opts)]
        argv += [image, mnt, "-f"]
        self.argv = setpriv(argv)
        with open(log, "ab") as f:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=f, stderr=f,
                start_new_session=True,
                env=dict(os.environ, HOME=os.path.dirname(mnt)))

    def wait_mounted(self):
        try:
            f4test.wait_mounted(self.proc, self.mnt, self.log)
        except f4test.MountError as e:
            self.cleanup()
            pytest.fail("user %d could not mount %s: %s\n%s" % (
                UID, self.image, e, dev_fuse_note()), pytrace=False)

    def unmount(self):
        p = f4test.run(setpriv(["fusermount3", "-u", self.mnt]), check=False)
        assert p.returncode == 0, "fusermount3 -u: %s%s" % (p.stdout,
                                                             p.stderr)
        assert not f4test.is_mounted(self.mnt)
        try:
            rc = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.cleanup()
            pytest.fail("daemon still running 30 s after fusermount3 -u")
        assert rc == 0, "daemon exit status %d:\n%s" % (
            rc, f4test.read_log(self.log))

    def cleanup(self):
        if f4test.is_mounted(self.mnt):
            f4test.umount(self.mnt, lazy=True)
        if self.proc.poll() is None:
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()


def outcome(fn, *args):
    try:
        return ("ok", fn(*args))
    except OSError as e:
        return errno.errorcode.get(e.errno, e.errno)


def _look_around(mnt):
    """Run as the user: what can be seen and done."""
    res = {}
    for name in ("pub", "secret", "userfile", "dir700", "grpfile"):
        st = os.lstat(os.path.join(mnt, name))
        res["stat-" + name] = (stat.filemode(st.st_mode), st.st_uid,
                               st.st_gid)
    res["read-pub"] = outcome(f4test.read_file, os.path.join(mnt, "pub"))
    res["read-secret"] = outcome(f4test.read_file,
                                 os.path.join(mnt, "secret"))
    res["read-userfile"] = outcome(f4test.read_file,
                                   os.path.join(mnt, "userfile"))
    res["read-grpfile"] = outcome(f4test.read_file,
                                  os.path.join(mnt, "grpfile"))
    res["list-dir700"] = outcome(os.listdir, os.path.join(mnt, "dir700"))
    res["stat-in-dir700"] = outcome(os.stat, os.path.join(mnt, "dir700",
                                                          "inner"))
    res["create"] = outcome(f4test.write_file, os.path.join(mnt, "new"),
                            b"x")
    res["append-userfile"] = outcome(
        os.open, os.path.join(mnt, "userfile"), os.O_WRONLY | os.O_APPEND)
    if isinstance(res["append-userfile"], tuple):
        os.close(res["append-userfile"][1])
        res["append-userfile"] = "opened"
    return res


EXPECTED_RO = {
    "stat-pub": ("-rw-r--r--", 0, 0),
    "stat-secret": ("-rw-------", 0, 0),
    "stat-userfile": ("-rw-------", UID, GID),
    "stat-dir700": ("drwx------", 0, 0),
    "stat-grpfile": ("-rw-r-----", 0, GID),
    "read-pub": ("ok", b"for everyone\n"),
    "read-secret": "EACCES",
    "read-userfile": ("ok", b"nobody's own\n"),
    "read-grpfile": ("ok", b"group\n"),    # the user's own group
    "list-dir700": "EACCES",
    "stat-in-dir700": "EACCES",
    "create": "EROFS",
    "append-userfile": "EROFS",
}


def populate_as_root(fs):
    fs.mount()
    f4test.write_file(fs.path("pub"), b"for everyone\n", 0o644)
    f4test.write_file(fs.path("secret"), b"root only\n", 0o600)
    f4test.write_file(fs.path("userfile"), b"nobody's own\n", 0o600)
    os.chown(fs.path("userfile"), UID, GID)
    f4test.write_file(fs.path("grpfile"), b"group\n", 0o640)
    os.chown(fs.path("grpfile"), 0, GID)
    os.mkdir(fs.path("dir700"), 0o700)
    f4test.write_file(fs.path("dir700", "inner"), b"hidden\n")
    for p, m in (("pub", 0o644), ("secret", 0o600), ("userfile", 0o600),
                 ("grpfile", 0o640), ("dir700", 0o700)):
        os.chmod(fs.path(p), m)
    fs.unmount()
    J.assert_fsck_clean(fs.image)


@pytest.mark.fuse_only
@pytest.mark.variants("ext4")
def test_user_mounts_root_image_read_only(fs_unmounted, home, workdir):
    fs = fs_unmounted
    populate_as_root(fs)
    os.chmod(fs.image, 0o644)
    before = J.file_sha(fs.image)
    mnt = os.path.join(home, "mnt")
    log = os.path.join(workdir, "user.log")

    um = UserMount(fs.image, mnt, ["ro"], log)
    try:
        um.wait_mounted()
        e = f4test.mount_entry(mnt)
        assert e[1] == "fuse.fuse4fs", e
        assert "ro" in e[3].split(","), e
        assert "user_id=%d" % UID in e[4], e
        got = f4test.run_as(UID, GID, _look_around, mnt)
        diff = ["%s: got %r, expected %r" % (k, got.get(k), v)
                for k, v in EXPECTED_RO.items() if got.get(k) != v]
        assert not diff, "\n".join(diff)
        # not allow_other: nobody else, not even root, may look in
        assert f4test.errno_of(os.stat, os.path.join(mnt, "pub")) == \
            errno.EACCES
        um.unmount()
    finally:
        um.cleanup()
    assert J.file_sha(fs.image) == before, "a read-only mount changed it"

    # without -o ro: the image is not writable by the user, so fuse4fs
    # mounts it read-only and says so
    um = UserMount(fs.image, mnt, [], log)
    try:
        um.wait_mounted()
        assert "ro" in f4test.mount_entry(mnt)[3].split(",")
        out = f4test.read_log(log)
        assert "write-protected" in out and "read-only" in out, out
        got = f4test.run_as(UID, GID, _look_around, mnt)
        assert got["create"] == "EROFS" and got["read-secret"] == "EACCES"
        um.unmount()
    finally:
        um.cleanup()
    assert J.file_sha(fs.image) == before

    # an image the user can't read at all
    os.chmod(fs.image, 0o600)
    um = UserMount(fs.image, mnt, ["ro"], log)
    try:
        rc = um.proc.wait(20)
    except subprocess.TimeoutExpired:
        rc = None
    finally:
        um.cleanup()
    assert rc == 2, "mounting an unreadable image: exit %r\n%s" % (
        rc, f4test.read_log(log))
    assert "Permission denied" in f4test.read_log(log)
    os.chmod(fs.image, 0o644)


@pytest.mark.fuse_only
@pytest.mark.variants("ext4")
@pytest.mark.mkfs_opts("-E", "root_owner=%d:%d" % (UID, GID))
def test_user_mounts_own_image_read_write(fs_unmounted, home, workdir):
    fs = fs_unmounted
    os.chown(fs.image, UID, GID)
    os.chmod(fs.image, 0o644)
    mnt = os.path.join(home, "mnt")
    log = os.path.join(workdir, "user.log")
    data = pattern(1 << 20, 7)

    def work(mnt):
        res = {}
        os.mkdir(os.path.join(mnt, "docs"))
        p = os.path.join(mnt, "docs", "big")
        f4test.write_file(p, data)
        fd = os.open(p, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
        f4test.write_file(os.path.join(mnt, "small"), b"hi\n")
        os.chmod(os.path.join(mnt, "small"), 0o600)
        os.symlink("docs/big", os.path.join(mnt, "link"))
        st = os.stat(p)
        res["owner"] = (st.st_uid, st.st_gid)
        res["chown-root"] = outcome(os.chown, p, 0, 0)
        res["readback"] = f4test.read_file(os.path.join(mnt, "link")) == data
        res["lost+found"] = outcome(os.listdir,
                                    os.path.join(mnt, "lost+found"))
        return res

    um = UserMount(fs.image, mnt, [], log)
    try:
        um.wait_mounted()
        e = f4test.mount_entry(mnt)
        assert e[1] == "fuse.fuse4fs" and "rw" in e[3].split(","), e
        got = f4test.run_as(UID, GID, work, mnt)
        assert got == {"owner": (UID, GID), "chown-root": "EPERM",
                       "readback": True, "lost+found": "EACCES"}, got
        um.unmount()
    finally:
        um.cleanup()
    J.assert_fsck_clean(fs.image)
    out = f4test.debugfs(fs.image, "stat /docs/big")
    assert re.search(r"User:\s+%d\s+Group:\s+%d\b" % (UID, GID), out), out
    p = subprocess.run(["debugfs", "-R", "cat /docs/big", fs.image],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout == data
    # mounted again by the user: all there
    um = UserMount(fs.image, mnt, [], log)
    try:
        um.wait_mounted()
        got = f4test.run_as(UID, GID, lambda m: (
            f4test.read_file(os.path.join(m, "small")),
            sorted(os.listdir(m))), mnt)
        assert got == (b"hi\n", ["docs", "link", "lost+found", "small"]), got
        um.unmount()
    finally:
        um.cleanup()
    J.assert_fsck_clean(fs.image)
