"""Mount lifecycle: superblock bookkeeping, exclusive use of the image,
read-only mounts that leave the image untouched, daemon start-up errors."""

import errno
import os
import subprocess
import tempfile
import time

import pytest

import f4test
from f4test import pattern, read_file, sha256_file, write_file

# EXT3_FEATURE_INCOMPAT_RECOVER: the journal needs replaying
INCOMPAT_RECOVER = 0x0004


def test_superblock_after_mount_cycle(fs_unmounted):
    fs = fs_unmounted
    short = None
    if len(fs.mnt) >= 64:
        # s_last_mounted holds 63 bytes: use a mount point that fits
        short = tempfile.mkdtemp(prefix="f4lm-", dir="/tmp")
        os.chmod(short, 0o755)
        fs.mnt = short
    try:
        _superblock_cycle(fs)
    finally:
        if short and not f4test.is_mounted(short):
            os.rmdir(short)


def _superblock_cycle(fs):
    sb0 = f4test.read_superblock(fs.image)
    assert sb0["clean"]
    t0 = int(time.time())
    fs.mount()
    # While mounted read-write the image must not look clean to a checker
    # that runs after a crash: the kernel drops EXT2_VALID_FS (no
    # journal) or sets needs_recovery (journal).
    live = f4test.read_superblock(fs.image)
    assert (not live["s_state"] & f4test.EXT2_VALID_FS) or (
        live["s_feature_incompat"] & INCOMPAT_RECOVER), (
        "mounted read-write, yet the on-disk superblock says clean "
        "(state %#x, incompat %#x)" % (live["s_state"],
                                        live["s_feature_incompat"]))
    write_file(fs.path("f"), b"data")       # the kernel samples the mount
    fs.unmount()                            # point at the first open
    t1 = int(time.time())
    sb1 = f4test.read_superblock(fs.image)
    h = f4test.dumpe2fs_h(fs.image)
    assert h["Filesystem state"] == "clean"
    assert sb1["clean"] and not sb1["s_feature_incompat"] & INCOMPAT_RECOVER
    assert sb1["s_mnt_count"] == sb0["s_mnt_count"] + 1
    assert t0 - 1 <= sb1["mtime"] <= t1 + 1, (sb0["mtime"], sb1["mtime"], t0)
    assert sb1["wtime"] >= sb1["mtime"]
    assert sb1["s_last_mounted"] == fs.mnt, h.get("Last mounted on")
    assert h["Last mounted on"] == fs.mnt
    fs.fsck()
    # a second cycle counts again
    time.sleep(1.1)
    fs.mount()
    fs.unmount()
    sb2 = f4test.read_superblock(fs.image)
    assert sb2["s_mnt_count"] == sb0["s_mnt_count"] + 2
    assert sb2["mtime"] > sb1["mtime"]
    assert sb2["clean"]


def test_ro_mount_leaves_image_identical(fs_unmounted):
    fs = fs_unmounted
    fs.mount()
    os.makedirs(fs.path("a", "b"))
    write_file(fs.path("a", "small"), b"tiny")
    write_file(fs.path("a", "b", "big"), pattern(3 << 20))
    os.symlink("a/small", fs.path("link"))
    os.symlink("x" * 300, fs.path("longlink"))
    os.mkfifo(fs.path("fifo"))
    os.setxattr(fs.path("a", "small"), "user.attr", b"value")
    for i in range(300):
        write_file(fs.path("a", "many%03d" % i), b"%d" % i)
    fs.unmount()
    fs.fsck()
    before = sha256_file(fs.image)
    sb0 = f4test.read_superblock(fs.image)
    fs.mount(opts=["ro"])
    assert "ro" in f4test.mount_entry(fs.mnt)[3].split(",")
    snap = f4test.snapshot(fs.mnt)
    assert snap["entries"]["a/b/big"]["size"] == 3 << 20
    assert read_file(fs.path("link")) == b"tiny"
    assert os.getxattr(fs.path("a", "small"), "user.attr") == b"value"
    assert len(os.listdir(fs.path("a"))) == 302
    assert f4test.errno_of(write_file, fs.path("new"), b"") == errno.EROFS
    fs.unmount()
    assert sha256_file(fs.image) == before, "a read-only mount changed the image"
    assert f4test.read_superblock(fs.image)["s_mnt_count"] == sb0["s_mnt_count"]


@pytest.mark.fuse_only
def test_second_mount_refused(fs, fs_factory, workdir):
    """A second daemon on an image that is already mounted must refuse,
    say why, and leave the first mount alone."""
    write_file(fs.path("f"), b"first mount")
    mnt2 = os.path.join(workdir, "second.mnt")
    os.mkdir(mnt2)
    log = os.path.join(workdir, "second.log")
    proc = f4test.spawn_daemon(fs.driver, fs.image, mnt2, [], log)
    try:
        rc = proc.wait(15)
    except subprocess.TimeoutExpired:
        rc = None
    mounted = f4test.is_mounted(mnt2)
    if rc is None or mounted:
        # clean up the intruder before failing
        if mounted:
            f4test.umount(mnt2)
        if proc.poll() is None:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if f4test.is_mounted(mnt2):
            f4test.umount(mnt2, lazy=True)
    out = f4test.read_log(log)
    assert not mounted, "a second mount of a mounted image succeeded"
    assert rc is not None, "the second daemon neither mounted nor exited"
    assert rc != 0, "the second daemon exited 0 without mounting"
    assert out.strip(), "the second daemon failed without saying why"
    # the first mount still works
    assert read_file(fs.path("f")) == b"first mount"
    write_file(fs.path("g"), pattern(100000))
    assert read_file(fs.path("g")) == pattern(100000)
    assert sorted(os.listdir(fs.mnt)) == ["f", "g", "lost+found"]
    fs.remount()
    assert read_file(fs.path("g")) == pattern(100000)


@pytest.mark.fuse_only
def test_bad_images_fail_cleanly(workdir, driver):
    """The daemon must exit non-zero with a message, and mount nothing,
    for a missing image, a non-ext image and a missing mount point."""
    mnt = os.path.join(workdir, "mnt")
    os.mkdir(mnt)
    zeros = os.path.join(workdir, "zeros.img")
    with open(zeros, "wb") as f:
        f.truncate(64 << 20)
    good = f4test.make_image(os.path.join(workdir, "good.img"), "ext4")
    zeros_sum, good_sum = sha256_file(zeros), sha256_file(good)
    cases = [
        ("missing image", os.path.join(workdir, "nope.img"), mnt),
        ("not an ext2/3/4 image", zeros, mnt),
        ("missing mount point", good, os.path.join(workdir, "nomnt")),
    ]
    bad = []
    for label, image, target in cases:
        log = os.path.join(workdir, "".join(
            c if c.isalnum() else "_" for c in label) + ".log")
        proc = f4test.spawn_daemon(driver, image, target, [], log)
        try:
            rc = proc.wait(15)
        except subprocess.TimeoutExpired:
            rc = None
        if f4test.is_mounted(target):
            f4test.umount(target, lazy=True)
            bad.append("%s: mounted" % label)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            bad.append("%s: did not exit" % label)
        elif rc == 0:
            bad.append("%s: exit status 0" % label)
        if not f4test.read_log(log).strip():
            bad.append("%s: no message" % label)
    assert not bad, "\n".join(bad)
    # nothing was written to either image
    assert sha256_file(zeros) == zeros_sum
    assert sha256_file(good) == good_sum


def test_data_on_disk_after_unmount(fs):
    """Data written just before umount is on disk once umount returned
    (and, for FUSE, the daemon has exited): debugfs sees it."""
    data = pattern(1 << 20, seed=3)
    fd = os.open(fs.path("f"), os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, data)
    os.close(fd)
    fs.unmount()
    fs.fsck()
    out = f4test.debugfs(fs.image, "stat /f")
    assert "Size: %d" % len(data) in out, out
    fs.mount()
    assert read_file(fs.path("f")) == data
