"""Installation and the mount(8) helper paths.

- `make install DESTDIR=...` (in the configured build tree at the top of the
  repository) installs exactly the binary, the mount.fuse4fs link and the two
  man pages, and `make uninstall DESTDIR=...` removes them again.
- mount(8) mounts an image through /sbin/mount.fuse4fs from an fstab line
  (`mount -T FILE DIR`) and from `mount -t fuse4fs`, and through
  mount.fuse3(8) with the type fuse.fuse4fs; each time a file is written
  through the mount, the mount is unmounted, the daemon exits and
  `e2fsck -fn` finds the image clean.

mount(8) looks for helpers only in /sbin, /sbin/fs.d and /sbin/fs, and
mount.fuse3 runs `fuse4fs` from a fixed PATH, so the helper tests put
temporary links /sbin/mount.fuse4fs and /usr/local/bin/fuse4fs to the built
binary in place: only where nothing is, removed again at teardown, under a
lock so that two test runs on one machine don't remove each other's.  If an
installed fuse4fs is already there, the test fails and says so rather than
test the wrong binary.

Needs the built tree; the mount tests need root.
"""

import contextlib
import errno
import fcntl
import json
import os
import signal
import stat
import subprocess
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(REPO, "fuse4fs", "fuse4fs")
MAN = os.path.join(REPO, "fuse4fs", "fuse4fs.1")

HELPER = "/sbin/mount.fuse4fs"
PATH_PROG = "/usr/local/bin/fuse4fs"
LOCK = os.path.join("/run/lock" if os.path.isdir("/run/lock") else "/tmp",
                    "fuse4fs-test-helpers.lock")
FUSE4FS_TYPES = ("fuse.fuse4fs", "fuseblk.fuse4fs")
TEXT = "written through the mount helper\n"


def run(args, **kw):
    kw.setdefault("timeout", 300)
    return subprocess.run([str(a) for a in args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True,
                          **kw)


def need_build():
    for p in (os.path.join(REPO, "Makefile"), BIN, MAN):
        if not os.path.exists(p):
            pytest.fail("%s is missing: configure and build the tree first "
                        "(autoreconf -fi && ./configure && make)" % p,
                        pytrace=False)


def need_root():
    if os.geteuid() != 0:
        pytest.fail("this test mounts file systems: run it as root",
                    pytrace=False)


def make_var(name):
    """The value of a variable of the configured Makefile, as make sees it."""
    r = run(["make", "-s", "--no-print-directory", "-C", REPO, "-f",
             "Makefile", "-f", "-", "print-" + name],
            input="print-%:\n\t@echo '$($*)'\n")
    assert r.returncode == 0, r.stderr
    value = r.stdout.strip()
    assert value.startswith("/"), (name, value)
    return value


def tree(root):
    """Everything that isn't a directory below root, relative to it."""
    found = set()
    for d, dirs, files in os.walk(root):
        for n in files + [x for x in dirs if os.path.islink(os.path.join(d, x))]:
            found.add(os.path.relpath(os.path.join(d, n), root))
    return found


# ---- make install / uninstall ----------------------------------------------

def test_make_install_and_uninstall_destdir(tmp_path):
    need_build()
    dest = tmp_path / "destdir"
    bindir, sbindir, mandir = (make_var(n) for n in
                               ("bindir", "sbindir", "mandir"))
    expected = {
        bindir + "/fuse4fs": "binary",
        sbindir + "/mount.fuse4fs": "link",
        mandir + "/man1/fuse4fs.1": "page",
        mandir + "/man8/mount.fuse4fs.8": "so",
    }
    outside = {p: os.path.lexists(p) for p in expected}

    r = run(["make", "-C", REPO, "install", "DESTDIR=%s" % dest])
    assert r.returncode == 0, r.stdout + r.stderr
    got = tree(dest)
    assert got == {p.lstrip("/") for p in expected}, \
        "make install put %s" % sorted(got)
    for path, kind in expected.items():
        full = str(dest) + path
        st = os.lstat(full)
        if kind == "binary":
            assert stat.S_ISREG(st.st_mode)
            assert stat.S_IMODE(st.st_mode) == 0o755
            with open(full, "rb") as a, open(BIN, "rb") as b:
                assert a.read() == b.read(), "installed binary differs"
        elif kind == "link":
            assert stat.S_ISLNK(st.st_mode), "%s is not a symlink" % path
            target = os.readlink(full)
            # Absolute links point into the final tree, not into DESTDIR
            resolved = target if target.startswith("/") else \
                os.path.normpath(os.path.join(os.path.dirname(path), target))
            assert resolved == bindir + "/fuse4fs", target
        elif kind == "page":
            assert stat.S_IMODE(st.st_mode) == 0o644
            with open(full) as a, open(MAN) as b:
                assert a.read() == b.read()
        else:
            with open(full) as fp:
                assert fp.read().strip() == ".so man1/fuse4fs.1"
    # The installed page renders, and so does the .so one from its tree
    r = run(["man", "--warnings", "-l", str(dest) + mandir + "/man1/fuse4fs.1"],
            env=dict(os.environ, MANWIDTH="80", MANPAGER="cat"))
    assert r.returncode == 0 and not r.stderr, r.stderr
    assert "fuse4fs - mount an ext2" in r.stdout
    for path, existed in outside.items():
        assert os.path.lexists(path) == existed, \
            "make install DESTDIR=... touched %s outside DESTDIR" % path

    r = run(["make", "-C", REPO, "uninstall", "DESTDIR=%s" % dest])
    assert r.returncode == 0, r.stdout + r.stderr
    assert tree(dest) == set(), "left after make uninstall: %s" % sorted(
        tree(dest))
    for path, existed in outside.items():
        assert os.path.lexists(path) == existed, \
            "make uninstall DESTDIR=... touched %s outside DESTDIR" % path


# ---- helpers for mounting through mount(8) ---------------------------------

@contextlib.contextmanager
def helper_lock():
    fd = os.open(LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        deadline = time.monotonic() + 600
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() > deadline:
                    pytest.fail("another test run holds %s" % LOCK)
                time.sleep(0.2)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def temporary_link(path, target):
    """path -> target while in use; made only where nothing was."""
    made = False
    if os.path.lexists(path):
        if os.path.realpath(path) != os.path.realpath(target):
            pytest.fail("%s exists and leads to %s, not to the built %s: "
                        "remove the installed fuse4fs (apt-get remove "
                        "fuse4fs, or make uninstall) to run this test" % (
                            path, os.path.realpath(path), target),
                        pytrace=False)
    else:
        os.symlink(target, path)
        made = True
    try:
        yield
    finally:
        if made and os.path.islink(path) and os.readlink(path) == target:
            os.unlink(path)


def make_image(tmp_path):
    image, mnt = tmp_path / "fs.img", tmp_path / "mnt"
    mnt.mkdir()
    r = run(["mke2fs", "-q", "-F", "-t", "ext4", image, "64M"])
    assert r.returncode == 0, r.stderr
    return str(image), str(mnt)


def daemons_for(image):
    """pids of fuse4fs processes serving image (found by their argv)."""
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as fp:
                argv = fp.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        if os.path.basename(argv[0]) in ("fuse4fs", "mount.fuse4fs") and \
                image in argv:
            pids.append(int(d))
    return pids


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as fp:
            return fp.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_gone(pids, timeout=30):
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def mount_info(mnt):
    r = run(["findmnt", "-J", "-o", "SOURCE,FSTYPE,OPTIONS", "--mountpoint",
             mnt])
    if r.returncode != 0:
        return None
    return json.loads(r.stdout)["filesystems"][0]


def is_mounted(mnt):
    return mount_info(mnt) is not None


def fsck_clean(image):
    r = run(["e2fsck", "-fn", image])
    assert r.returncode == 0, "e2fsck -fn:\n" + r.stdout + r.stderr


# What each way of mounting needs: (helper links, fstab type or None for
# `mount -t fuse4fs`).
WAYS = {
    "fstab-fuse4fs": ([HELPER], "fuse4fs"),
    "mount-t-fuse4fs": ([HELPER], None),
    "fstab-fuse.fuse4fs": ([PATH_PROG], "fuse.fuse4fs"),
}


@pytest.mark.parametrize("way", sorted(WAYS))
def test_mount_helper(tmp_path, way):
    """Mount through mount(8), write, umount, e2fsck -fn clean."""
    need_build()
    need_root()
    links, fstype = WAYS[way]
    image, mnt = make_image(tmp_path)
    opts = "defaults,noexec,nofail"
    if fstype:
        fstab = tmp_path / "fstab"
        fstab.write_text("%s %s %s %s,x-fuse4fs.test=1 0 0\n" % (
            image, mnt, fstype, opts))
        cmd = ["mount", "-T", fstab, mnt]
    else:
        cmd = ["mount", "-t", "fuse4fs", "-o", opts, image, mnt]

    with contextlib.ExitStack() as stack:
        stack.enter_context(helper_lock())
        for link in links:
            stack.enter_context(temporary_link(link, BIN))
        pids = []
        try:
            r = run(cmd, timeout=60)
            assert r.returncode == 0, "%s: %s%s" % (cmd, r.stdout, r.stderr)
            info = mount_info(mnt)
            assert info, "%s returned 0 but nothing is mounted" % cmd
            pids = daemons_for(image)
            assert pids, "no fuse4fs process for %s" % image
            assert info["fstype"] in FUSE4FS_TYPES, info
            assert "noexec" in info["options"].split(","), info
            with open(os.path.join(mnt, "hello"), "w") as fp:
                fp.write(TEXT)
            os.mkdir(os.path.join(mnt, "dir"))
            os.link(os.path.join(mnt, "hello"), os.path.join(mnt, "dir", "l"))
            with open(os.path.join(mnt, "dir", "l")) as fp:
                assert fp.read() == TEXT
            assert os.stat(os.path.join(mnt, "hello")).st_nlink == 2

            r = run(["umount", mnt], timeout=60)
            assert r.returncode == 0, r.stderr
            assert not is_mounted(mnt)
            assert wait_gone(pids), "fuse4fs still running 30 s after umount"
        finally:
            if is_mounted(mnt):
                run(["umount", mnt], timeout=60)
            if is_mounted(mnt):
                run(["umount", "-l", mnt], timeout=60)
            if not wait_gone(pids, 10):
                for p in pids:          # ours: started by this test's mount
                    if alive(p):
                        os.kill(p, signal.SIGKILL)
                wait_gone(pids, 10)

    fsck_clean(image)
    r = run(["debugfs", "-R", "cat /dir/l", image])
    assert r.stdout == TEXT, "not in the image after umount: %r" % r.stdout


def test_quickstart_opens_dev_fuse(tmp_path):
    """quickstart.sh makes /dev/fuse 0666 where no udev has, as .ci/run
    does, so that a newcomer's first `make check` passes the tests of
    unprivileged mounts.  Tried on a stand-in device node; apt-get is
    stubbed to fail, so nothing gets installed whatever the script
    does."""
    need_root()
    dev = tmp_path / "fuse"
    os.mknod(str(dev), 0o600 | stat.S_IFCHR, os.makedev(10, 229))
    os.chmod(str(dev), 0o600)
    stub = tmp_path / "bin"
    stub.mkdir()
    (stub / "apt-get").write_text("#!/bin/sh\nexit 1\n")
    (stub / "apt-get").chmod(0o755)
    env = dict(os.environ, F4_DEV_FUSE=str(dev),
               PATH="%s:%s" % (stub, os.environ["PATH"]))
    p = subprocess.run([os.path.join(REPO, "quickstart.sh"),
                        "--dev-fuse-only"], env=env, capture_output=True,
                       text=True, timeout=60)
    assert stat.S_IMODE(os.stat(str(dev)).st_mode) == 0o666, (
        p.returncode, p.stdout, p.stderr)
    assert p.returncode == 0 and "0666" in p.stdout, (p.stdout, p.stderr)
