"""umount means the data is on the image (issue #9).

As root fuse4fs mounts as fuseblk over a self-clearing loop device, so the
kernel waits for the daemon's answer to DESTROY before umount(8) returns,
and the daemon writes everything and closes the image before answering.
So, with no sleep and no waiting for the daemon:

- mount (default options, the daemon in the background as a user runs
  it), write files of random sizes (some fsync()ed, some not), umount, and
  at once e2fsck -fn is clean and debugfs reads the last file's data; the
  loop device is gone.  30 times in a row on one image.
- the same through mount(8): `mount -t fuse4fs` (with a temporary
  /sbin/mount.fuse4fs link, see test_packaging.py).
- `-o nofuseblk` (a plain FUSE mount) gives no such guarantee: umount(8)
  returns before the daemon has finished.  The daemon must still finish
  cleanly (exit 0) and leave a clean image; only then is the data known
  to be on the image.
"""

import contextlib
import hashlib
import os
import random
import shutil
import subprocess

import pytest

import f4test
import journal_images as J
from f4test import pattern

import test_packaging as TP


def sha(data):
    return hashlib.sha256(data).hexdigest()


def loops_of(image):
    p = f4test.run(["losetup", "-j", image], check=False)
    return [l for l in p.stdout.splitlines() if l.strip()]


def debugfs_cat(image, path):
    p = subprocess.run(["debugfs", "-R", "cat " + path, image],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.returncode == 0, p.stderr
    return p.stdout


def write_batch(mnt, rnd, it):
    """A few files of random sizes, some fsync()ed; returns
    (path in the fs, data) of the last one written."""
    last = None
    d = "it%02d" % it
    os.mkdir(os.path.join(mnt, d))
    for k in range(rnd.randint(1, 4)):
        size = rnd.choice([0, 1, 100, 4095, 4096, 4097, 65536, 200000,
                           rnd.randrange(1 << 21), 12 << 20])
        data = pattern(size, it * 10 + k)
        rel = "%s/f%d" % (d, k)
        fd = os.open(os.path.join(mnt, rel), os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if rnd.random() < 0.5:
                os.fsync(fd)
        finally:
            os.close(fd)
        last = ("/" + rel, data)
    # and change and remove older things
    if it >= 2:
        shutil.rmtree(os.path.join(mnt, "it%02d" % (it - 2)))
    if it:
        old = os.path.join(mnt, "it%02d" % (it - 1))
        for name in os.listdir(old)[:1]:
            os.rename(os.path.join(old, name), os.path.join(mnt, d, "moved"))
    return last


def check_image(image, last, it):
    """What must hold the moment umount has returned."""
    ok, out = J.fsck_check(image)
    assert ok, "iteration %d: e2fsck -fn right after umount:\n%s" % (it, out)
    got = debugfs_cat(image, last[0])
    assert sha(got) == sha(last[1]), (
        "iteration %d: %s has %d bytes on the image right after umount, "
        "expected %d" % (it, last[0], len(got), len(last[1])))
    assert not loops_of(image), "iteration %d: loop device still there " \
        "after umount: %s" % (it, loops_of(image))


def daemons(image):
    return TP.daemons_for(image)


@contextlib.contextmanager
def no_daemon_left(image):
    try:
        yield
    finally:
        pids = daemons(image)
        if pids and not TP.wait_gone(pids, 30):
            for p in pids:      # started by this test for this image
                if TP.alive(p):
                    os.kill(p, 9)
            TP.wait_gone(pids, 10)


ITERATIONS = 30


@pytest.mark.fuse_only
@pytest.mark.variants("ext4", "ext2")
@pytest.mark.timeout(240)
def test_umount_means_data_on_image(fs_unmounted):
    fs = fs_unmounted
    rnd = random.Random(2024)
    binary = f4test.fuse4fs_binary()
    with no_daemon_left(fs.image):
        for it in range(ITERATIONS):
            p = f4test.run([binary, fs.image, fs.mnt], check=False)
            assert p.returncode == 0, "iteration %d: mount: %s%s" % (
                it, p.stdout, p.stderr)
            try:
                e = f4test.mount_entry(fs.mnt)
                assert e and e[1] == "fuseblk.fuse4fs", e
                last = write_batch(fs.mnt, rnd, it)
            finally:
                u = f4test.run(["umount", fs.mnt], check=False)
            assert u.returncode == 0, u.stderr
            check_image(fs.image, last, it)
    # all daemons are gone by now (the last within moments)
    assert TP.wait_gone(daemons(fs.image), 10)


@pytest.mark.fuse_only
@pytest.mark.variants("ext4")
@pytest.mark.timeout(240)
def test_umount_through_mount_helper(fs_unmounted):
    """mount -t fuse4fs IMAGE MNT through a temporary /sbin/mount.fuse4fs;
    same guarantee."""
    fs = fs_unmounted
    binary = f4test.fuse4fs_binary()
    rnd = random.Random(99)
    with contextlib.ExitStack() as stack:
        stack.enter_context(TP.helper_lock())
        stack.enter_context(TP.temporary_link(TP.HELPER, binary))
        stack.enter_context(no_daemon_left(fs.image))
        for it in range(10):
            p = f4test.run(["mount", "-t", "fuse4fs", fs.image, fs.mnt],
                           check=False)
            assert p.returncode == 0, "iteration %d: %s%s" % (
                it, p.stdout, p.stderr)
            try:
                e = f4test.mount_entry(fs.mnt)
                assert e and e[1] == "fuseblk.fuse4fs", e
                last = write_batch(fs.mnt, rnd, it)
            finally:
                u = f4test.run(["umount", fs.mnt], check=False)
            assert u.returncode == 0, u.stderr
            check_image(fs.image, last, it)


@pytest.mark.fuse_only
@pytest.mark.variants("ext4")
def test_nofuseblk_daemon_still_finishes(fs_unmounted):
    """-o nofuseblk: umount returns without waiting for the daemon, so the
    guarantee above does not hold (that is what fuseblk is for); but the
    daemon must finish on its own, exit 0, and leave everything on a
    clean image."""
    fs = fs_unmounted
    rnd = random.Random(5)
    for it in range(5):
        fs.mount(opts=["nofuseblk"])
        e = f4test.mount_entry(fs.mnt)
        assert e[1] == "fuse.fuse4fs", "nofuseblk mounted as %s" % e[1]
        assert not loops_of(fs.image), "nofuseblk uses no loop device"
        last = write_batch(fs.mnt, rnd, it)
        proc = fs.proc
        fs.unmount()            # umount, then waits for exit status 0
        assert proc.returncode == 0
        check_image(fs.image, last, it)
