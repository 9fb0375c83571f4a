"""Journal recovery through the mount (issue #5).

Images needing recovery are made by kernel ext4: a tree is written and
synced, more changes are committed by fsync() (but not checkpointed), and
the file system is shut down with EXT4_IOC_SHUTDOWN (helpers from
tests/journal_images.py and tests/test_journal_replay.py).  Then fuse4fs
mounts them:

- read-write and `-o ro`: the journal is replayed at mount, with progress
  and a summary on stderr; the tree through the mount is the one e2fsck
  -fy's replay of a copy gives (and the one the kernel saw before the
  crash); needs_recovery is cleared; e2fsck -fn is clean after unmount;
- `-o norecovery` / `-o noload`: mounted read-only without replay, which
  it says; the image is left untouched and still needs recovery;
- a read-only device (read-only loop device, immutable image file) that
  needs recovery: refused with exit 2 and a message pointing at
  norecovery; with norecovery it mounts; a clean file system on such a
  device is mounted read-only with a warning;
- an external journal or live fast commits: refused with exit 2 naming
  the feature, image untouched;
- after a read-write mount the journal is empty and valid: the kernel
  mounts the image without replay, and a second kernel crash is replayed
  correctly by fuse4fs again (sequence numbers carried on).
"""

import errno
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

import f4test
import journal_images as J
from test_journal_replay import change_tree, crash_with_kernel

EXIT_OPEN = 2           # fuse4fs: the file system can't be opened

pytestmark = pytest.mark.fuse_only


# ---------------------------------------------------------------------------
# helpers

def crashed_image(workdir, mkfs_args=("-t", "ext4", "-b", "4096"), opts="",
                  name="j.img"):
    """A kernel-crashed image needing recovery, the tree the kernel saw
    before the crash, and the tree e2fsck -fy's replay of a copy gives."""
    img = Path(workdir) / name
    J.mkfs(img, 64, *mkfs_args)
    expected = crash_with_kernel(img, opts, change_tree)
    assert J.needs_recovery(img)
    ref = Path(str(img) + ".e2fsck")
    shutil.copy(img, ref)
    p = J.run(["e2fsck", "-fy", ref], check=False)
    assert p.returncode in (0, 1), p.stdout + p.stderr
    oracle = J.tree_of(ref)
    ref.unlink()
    assert not J.diff_trees(oracle, expected), "e2fsck and the kernel " \
        "disagree:\n" + "\n".join(J.diff_trees(oracle, expected)[:20])
    # without the replay the tree is different: the comparisons below
    # are not vacuous
    assert J.diff_trees(J.tree_of(img), expected)
    return str(img), expected


def run_daemon(image, mnt, opts=(), timeout=20):
    """Run fuse4fs in the foreground expecting it to fail to mount.
    Returns (exit status, output); cleans up if it mounted after all."""
    argv = [f4test.fuse4fs_binary()]
    if opts:
        argv += ["-o", ",".join(opts)]
    argv += [image, mnt, "-f"]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    mounted = False
    while p.poll() is None and time.monotonic() < deadline:
        if f4test.is_mounted(mnt):
            mounted = True
            f4test.umount(mnt)
            break
        time.sleep(0.05)
    try:
        out, _ = p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, 9)
        out, _ = p.communicate()
    if f4test.is_mounted(mnt):
        f4test.umount(mnt, lazy=True)
    assert not mounted, "%s mounted:\n%s" % (" ".join(argv), out.decode())
    return p.returncode, out.decode("utf-8", "replace")


def snapshot(mnt):
    return J.snapshot_tree(mnt)


def assert_tree(mnt, expected, what):
    d = J.diff_trees(snapshot(mnt), expected)
    assert not d, "%s: tree differs from e2fsck's replay:\n%s" % (
        what, "\n".join(d[:30]))


class LoopDevs:
    """Loop devices this test attached; each is detached exactly once
    (a device number may be reused by someone else afterwards)."""

    def __init__(self):
        self.devs = []

    def attach(self, path, ro=False):
        argv = ["losetup", "-f", "--show"] + (["-r"] if ro else []) + [path]
        dev = J.run(argv).stdout.strip()
        self.devs.append(dev)
        return dev

    def detach(self, dev):
        if dev not in self.devs:
            return
        self.devs.remove(dev)
        for _ in range(50):
            if J.run(["losetup", "-d", dev], check=False).returncode == 0:
                return
            time.sleep(0.1)


@pytest.fixture
def loopdev():
    lo = LoopDevs()
    yield lo
    for dev in list(lo.devs):
        lo.detach(dev)


@pytest.fixture
def immutable():
    """chattr +i on files, undone at teardown."""
    made = []

    def set_immutable(path):
        J.run(["chattr", "+i", path])
        made.append(path)

    yield set_immutable
    for p in made:
        J.run(["chattr", "-i", p], check=False)


# ---------------------------------------------------------------------------
# replay at mount

CASES = {
    "ext4": (("-t", "ext4", "-b", "4096"), ""),
    "ext4-1k": (("-t", "ext4", "-b", "1024"), ""),
    "ext3": (("-t", "ext3", "-b", "4096"), ""),
    "ext4-data-journal": (("-t", "ext4", "-b", "4096"), "data=journal"),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("mode", ["rw", "ro"])
def test_mount_replays_journal(fs_factory, workdir, case, mode):
    mkfs_args, opts = CASES[case]
    img, expected = crashed_image(workdir, mkfs_args, opts)
    variant = "ext3" if case == "ext3" else (
        "ext4-1k" if case == "ext4-1k" else "ext4")
    fs = fs_factory(variant, image=img, name="j", mount=False,
                    opts=["ro"] if mode == "ro" else [])
    fs.mount()
    out = f4test.read_log(fs.log)
    assert "recovering journal" in out, out
    assert "journal recovered:" in out and "transactions" in out, out
    assert "replayed" in out, out
    ro = "ro" in f4test.mount_entry(fs.mnt)[3].split(",")
    assert ro == (mode == "ro")
    # the replay happened before the mount: the image is already current;
    # a read-write mount journals its own writes and, like the kernel,
    # keeps needs_recovery set while mounted
    assert J.needs_recovery(img) == (mode == "rw")
    assert_tree(fs.mnt, expected, "fuse4fs -o %s" % mode)
    if mode == "rw":
        f4test.write_file(fs.path("after-replay"), b"written after replay")
    fs.unmount()
    assert not J.needs_recovery(img)
    J.assert_fsck_clean(img)
    log = J.walk_log(img)
    assert log["start"] == 0, "journal not empty after unmount: %r" % log


@pytest.mark.parametrize("opt", ["norecovery", "noload"])
def test_norecovery_mounts_read_only_without_replay(fs_factory, workdir,
                                                    opt):
    img, expected = crashed_image(workdir)
    unreplayed = J.tree_of(img)
    before = J.file_sha(img)
    fs = fs_factory("ext4", image=img, name="j", mount=False, opts=[opt])
    fs.mount()
    out = f4test.read_log(fs.log)
    assert "recovering journal" not in out, out
    assert "norecovery" in out and "read-only" in out, out
    assert "ro" in f4test.mount_entry(fs.mnt)[3].split(",")
    d = J.diff_trees(snapshot(fs.mnt), unreplayed)
    assert not d, "norecovery should show the tree as on disk:\n" + \
        "\n".join(d[:20])
    assert f4test.errno_of(f4test.write_file, fs.path("x"), b"") == errno.EROFS
    fs.unmount()
    assert J.file_sha(img) == before, "norecovery changed the image"
    assert J.needs_recovery(img)
    p = J.run(["e2fsck", "-fn", img], check=False)
    assert "recovery" in (p.stdout + p.stderr).lower(), p.stdout + p.stderr
    # the harness's e2fsck -fn at teardown can't be clean before a replay:
    # replay it with fuse4fs now, and expect the tree the kernel saw
    fs.mount(opts=[])
    assert "recovering journal" in f4test.read_log(fs.log)
    assert_tree(fs.mnt, expected, "after a later rw mount")


@pytest.mark.parametrize("how", ["losetup-r", "chattr+i"])
def test_read_only_device_needing_recovery_refused(workdir, loopdev,
                                                   immutable, fs_factory,
                                                   how):
    img, expected = crashed_image(workdir)
    unreplayed = J.tree_of(img)
    before = J.file_sha(img)
    if how == "losetup-r":
        dev = loopdev.attach(img, ro=True)
    else:
        immutable(img)
        dev = img
    mnt = os.path.join(workdir, "ro.mnt")
    os.mkdir(mnt)
    for opts in ([], ["ro"]):
        rc, out = run_daemon(dev, mnt, opts)
        assert rc == EXIT_OPEN, "exit %d, expected %d:\n%s" % (
            rc, EXIT_OPEN, out)
        assert "read-only" in out and "norecovery" in out, \
            "the refusal should say the device is read-only and that " \
            "-o norecovery mounts it:\n" + out
    assert J.file_sha(img) == before
    # with norecovery it mounts, read-only, unreplayed
    fs = fs_factory("ext4", image=dev, name="rodev", mount=False,
                    opts=["norecovery"])
    fs.mount()
    assert "ro" in f4test.mount_entry(fs.mnt)[3].split(",")
    d = J.diff_trees(snapshot(fs.mnt), unreplayed)
    assert not d, "\n".join(d[:20])
    fs.unmount()
    assert J.file_sha(img) == before
    # the harness's final e2fsck needs a replayed image
    fs.image = img
    if how == "chattr+i":
        J.run(["chattr", "-i", img])
    else:
        loopdev.detach(dev)
    fs.mount(opts=[])
    assert_tree(fs.mnt, expected, "after the device became writable")


@pytest.mark.parametrize("how", ["losetup-r", "chattr+i"])
def test_clean_image_on_read_only_device_mounts_read_only(
        workdir, loopdev, immutable, fs_factory, how):
    """No recovery needed: a write-protected device is mounted read-only
    with a warning (as fuse4fs documents), not refused, and not mounted
    read-write only to fail on the first write."""
    img = f4test.make_image(os.path.join(workdir, "c.img"), "ext4",
                            64 << 20)
    before = J.file_sha(img)
    if how == "losetup-r":
        dev = loopdev.attach(img, ro=True)
    else:
        immutable(img)
        dev = img
    fs = fs_factory("ext4", image=dev, name="c", mount=False)
    try:
        fs.mount()
    except f4test.MountError as e:
        pytest.fail("default mount of a clean file system on a read-only "
                    "device (%s) failed: %s" % (how, e), pytrace=False)
    out = f4test.read_log(fs.log)
    assert "write-protected" in out and "read-only" in out, out
    assert "ro" in f4test.mount_entry(fs.mnt)[3].split(",")
    assert f4test.errno_of(f4test.write_file, fs.path("x"), b"") == \
        errno.EROFS
    fs.unmount()
    assert J.file_sha(img) == before


# ---------------------------------------------------------------------------
# unsupported journals

def external_journal_image(workdir):
    jimg = J.mkfs(Path(workdir) / "journal.img", 16, "-O", "journal_dev",
                  "-b", "4096")
    lo = LoopDevs()
    jdev = lo.attach(str(jimg))
    try:
        img = J.mkfs(Path(workdir) / "ext.img", 64, "-t", "ext4", "-b",
                     "4096", "-J", "device=" + jdev)
        with J.mounted(img, "journal_path=" + jdev) as mnt:
            (mnt / "file").write_bytes(b"x" * 10000)
            J.run(["sync"])
            (mnt / "file2").write_bytes(b"y" * 10000)
            J.run(["sync", "-f", str(mnt / "file2")])
            J.shutdown(mnt, J.GOING_FLAGS_LOGFLUSH)
    finally:
        lo.detach(jdev)
    return str(img), "external"


def fast_commit_image(workdir):
    img = J.mkfs(Path(workdir) / "fc.img", 64, "-t", "ext4", "-b", "4096",
                 "-O", "fast_commit")
    with J.mounted(img, "commit=60") as mnt:
        (mnt / "d").mkdir()
        J.run(["sync"])
        for i in range(5):
            with open(mnt / "d" / ("f%d" % i), "wb") as f:
                f.write(os.urandom(5000))
                f.flush()
                os.fsync(f.fileno())
        J.shutdown(mnt, J.GOING_FLAGS_NOLOGFLUSH)
    return str(img), "fast commit"


@pytest.mark.parametrize("make", [external_journal_image, fast_commit_image],
                         ids=["external", "fast_commit"])
def test_unsupported_journal_refused(workdir, make):
    """Refused with exit 2 naming what is unsupported, image untouched;
    -o norecovery mounts it read-only.  (No e2fsck at the end: the image
    still needs a recovery only the kernel can do.)"""
    img, word = make(workdir)
    assert J.needs_recovery(img)
    before = J.file_sha(img)
    mnt = os.path.join(workdir, "u.mnt")
    os.mkdir(mnt)
    for opts in ([], ["ro"]):
        rc, out = run_daemon(img, mnt, opts)
        assert rc == EXIT_OPEN, (rc, out)
        assert word in out and "not supported" in out, out
        assert J.file_sha(img) == before, "a refused mount changed the image"
    # norecovery still lets the data be read
    log = os.path.join(workdir, "u.log")
    proc = f4test.spawn_daemon("fuse4fs", img, mnt, ["norecovery"], log)
    try:
        f4test.wait_mounted(proc, mnt, log)
        assert "lost+found" in os.listdir(mnt)
        assert "ro" in f4test.mount_entry(mnt)[3].split(",")
        assert f4test.umount(mnt).returncode == 0
        assert proc.wait(30) == 0, f4test.read_log(log)
    finally:
        if f4test.is_mounted(mnt):
            f4test.umount(mnt, lazy=True)
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait()
    assert J.file_sha(img) == before


# ---------------------------------------------------------------------------
# the journal after a fuse4fs mount

def test_rw_mount_leaves_journal_usable_by_kernel(fs_factory, workdir):
    img, expected = crashed_image(workdir)
    fs = fs_factory("ext4", image=img, name="j", mount=False)
    fs.mount()
    assert_tree(fs.mnt, expected, "fuse4fs replay")
    f4test.write_file(fs.path("by-fuse4fs"), b"fuse4fs was here\n" * 1000)
    os.mkdir(fs.path("dir-by-fuse4fs"))
    fs.unmount()
    J.assert_fsck_clean(img)
    assert not J.needs_recovery(img)
    log = J.walk_log(img)
    assert log["start"] == 0, "journal left non-empty: %r" % log
    seq_after_fuse4fs = log["sequence"]

    # The kernel mounts it with nothing to replay, works, and crashes again
    def work(mnt):
        (mnt / "tree" / "kernel-new").write_bytes(b"k" * 50000)
        os.rename(mnt / "by-fuse4fs", mnt / "tree" / "moved-by-kernel")
        os.rmdir(mnt / "dir-by-fuse4fs")
        fd = os.open(mnt / "tree", os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
        with open(mnt / "tree" / "kernel-new", "rb+") as f:
            os.fsync(f.fileno())

    with J.mounted(img, "commit=60") as mnt:
        assert (mnt / "by-fuse4fs").read_bytes() == \
            b"fuse4fs was here\n" * 1000
        J.run(["sync"])
        work(mnt)
        expected2 = J.snapshot_tree(mnt)
        J.shutdown(mnt, J.GOING_FLAGS_LOGFLUSH)
        crash = img + ".crash"
        shutil.copy(img, crash)
    os.replace(crash, img)
    assert J.needs_recovery(img)
    log2 = J.walk_log(img)
    assert log2["txns"], log2
    assert log2["sequence"] >= seq_after_fuse4fs, (seq_after_fuse4fs, log2)

    fs.mount()
    assert f4test.read_log(fs.log).count("recovering journal") == 2
    assert_tree(fs.mnt, expected2, "second replay")
    fs.unmount()
    J.assert_fsck_clean(img)
    assert not J.needs_recovery(img)
