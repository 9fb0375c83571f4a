"""Journaled writes (issue 14): a crash at any instant leaves a file system
that needs only its journal replayed.

fuse4fs commits its metadata as jbd2 transactions in the file system's own
journal.  The tests stop it in the middle of a workload, either with the
shutdown ioctl (EXT4_IOC_SHUTDOWN, in its three modes: flush everything;
commit the log but write nothing home; stop at once) or with kill -9, and
then replay the image:

- interoperability: after a LOGFLUSH shutdown the log holds committed,
  not checkpointed transactions; kernel ext4 (mount, umount), e2fsck -E
  journal_only and fuse4fs's own replay (mount, umount) must all give the
  tree that was there before the shutdown, and e2fsck -fn is clean after
  each; journals with checksum v3, v2 and without checksums, 4 KiB and
  1 KiB blocks, 64bit and not;
- shutdown in each mode and kill -9 at random moments during a busy
  workload (untar-like creates, renames over existing names, links,
  unlinks of open files, appends, rm -rf, and a logger that appends a
  record and fsyncs it): the image replays, e2fsck -fn is clean and every
  record whose fsync returned is there;
- a block that begins with the jbd2 magic is escaped in the log and comes
  back intact; a journal of 1 MiB takes thousands of creates in one
  window (each commit holds about a quarter of the journal);
- the shutdown ioctl itself: root only, EIO afterwards, and not one byte
  of the image changes from the shutdown to the end of the daemon;
- a clean unmount leaves an empty journal (sequence advanced) without
  needs_recovery, and while mounted read-write needs_recovery is set.
"""

import errno
import fcntl
import hashlib
import os
import random
import shutil
import struct
import subprocess
import sys
import time

import pytest

import f4test
import journal_images as J

pytestmark = [pytest.mark.fuse_only, pytest.mark.timeout(240)]

SHUTDOWN = J.EXT4_IOC_SHUTDOWN
DEFAULT, LOGFLUSH, NOLOGFLUSH = 0, 1, 2
MODES = {"default": DEFAULT, "logflush": LOGFLUSH, "nologflush": NOLOGFLUSH}

# name -> (fixture variant, mke2fs arguments, journal checksum version)
CASES = {
    "ext4-csum3": ("ext4", ["-t", "ext4", "-b", "4096", "-I", "256"], 3),
    "ext4-csum2": ("ext4", ["-t", "ext4", "-b", "4096", "-I", "256"], 2),
    "ext4-nocsum": ("ext4", ["-t", "ext4", "-b", "4096", "-I", "256"], 0),
    "ext3": ("ext3", ["-t", "ext3", "-b", "4096", "-I", "256"], 0),
    "ext4-1k-csum3": ("ext4-1k", ["-t", "ext4", "-b", "1024", "-I", "256"],
                      3),
    "ext4-32bit-csum3": ("ext4", ["-t", "ext4", "-b", "4096", "-I", "256",
                                  "-O", "^64bit"], 3),
}


def shutdown(path, mode):
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.ioctl(fd, SHUTDOWN, struct.pack("I", mode))
    finally:
        os.close(fd)


def make_image(workdir, name, case, size_mb=128, extra=()):
    variant, args, csum = CASES[case]
    img = os.path.join(workdir, name + ".img")
    J.mkfs(img, size_mb, *args, *extra)
    if csum:
        # journal checksums (v3 is what the kernel uses with
        # metadata_csum), set in the journal superblock by debugfs
        cmds = os.path.join(workdir, "jo-c.cmds")
        with open(cmds, "w") as f:
            f.write("jo -c -v %d\njc\n" % csum)
        J.run(["debugfs", "-w", "-f", cmds, img])
        inc = J.walk_log(img)["incompat"]
        want = J.INCOMPAT_CSUM_V3 if csum == 3 else J.INCOMPAT_CSUM_V2
        assert inc & want, "debugfs did not set journal csum v%d" % csum
    return img, variant


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def log_of(fs):
    return f4test.read_log(fs.log, limit=1 << 20).split("====")[-1]


# ---------------------------------------------------------------------------
# replay three ways

def replays_agree(fs, expected=None):
    """fs is unmounted after a shutdown: its image needs replay.  Replays a
    copy with the kernel and one with e2fsck -E journal_only, and the image
    itself with fuse4fs; all three must give the same tree (and expected,
    if given) and e2fsck -fn must be clean after each.  Leaves fs mounted
    (fuse4fs, after its replay) and returns the tree."""
    img = fs.image
    assert J.needs_recovery(img), "the shut-down image needs no recovery"
    kcopy, ecopy = img + ".kernel", img + ".e2fsck"
    shutil.copyfile(img, kcopy)
    shutil.copyfile(img, ecopy)
    try:
        with J.mounted(kcopy) as mnt:
            ktree = J.snapshot_tree(mnt)
        J.assert_fsck_clean(kcopy)
        p = J.run(["e2fsck", "-E", "journal_only", "-y", ecopy], check=False)
        assert p.returncode in (0, 1), p.stdout + p.stderr
        J.assert_fsck_clean(ecopy)
        etree = J.tree_of(ecopy)
    finally:
        os.unlink(kcopy)
        os.unlink(ecopy)
    fs.mount()
    assert "recovering journal" in log_of(fs), log_of(fs)
    ftree = J.snapshot_tree(fs.mnt)
    diff = J.diff_trees(ktree, ftree)
    assert not diff, "kernel vs fuse4fs replay:\n" + "\n".join(diff[:20])
    diff = J.diff_trees(etree, ftree)
    assert not diff, "e2fsck vs fuse4fs replay:\n" + "\n".join(diff[:20])
    if expected is not None:
        diff = J.diff_trees(expected, ftree)
        assert not diff, "before the shutdown vs after the replay:\n" + \
            "\n".join(diff[:20])
    return ftree


# ---------------------------------------------------------------------------
# a fixed workload, for the interoperability tests

def fixed_workload(root, seed, held):
    rnd = random.Random(seed)
    for d in range(4):
        dp = os.path.join(root, "d%d" % d)
        os.mkdir(dp)
        for i in range(40):
            p = os.path.join(dp, "f%d" % i)
            with open(p, "wb") as f:
                f.write(rnd.randbytes(rnd.choice([0, 50, 3000, 20000])))
            os.chmod(p, 0o600 | rnd.randrange(0o100))
        os.rename(os.path.join(dp, "f0"), os.path.join(dp, "f1"))
        os.link(os.path.join(dp, "f2"), os.path.join(dp, "link"))
        os.symlink("t" * 30, os.path.join(dp, "short"))
        os.symlink("long/" * 40, os.path.join(dp, "long"))
        os.setxattr(os.path.join(dp, "f3"), "user.k", b"v" * 100)
        with open(os.path.join(dp, "f4"), "ab") as f:
            f.write(b"appended" * 500)
        fd = os.open(os.path.join(dp, "open"), os.O_RDWR | os.O_CREAT, 0o644)
        os.write(fd, rnd.randbytes(50000))
        os.unlink(os.path.join(dp, "open"))
        held.append(fd)
    shutil.rmtree(os.path.join(root, "d0"))


@pytest.mark.parametrize("case", sorted(CASES))
def test_logflush_replays_alike(fs_factory, workdir, case):
    """LOGFLUSH in the middle of a workload: the log holds committed
    transactions nobody wrote home; three replayers agree."""
    img, variant = make_image(workdir, "j", case)
    fs = fs_factory(variant, image=img, name="j")
    held = []
    try:
        fixed_workload(fs.mnt, 1, held)
        fd = os.open(fs.path("d1", "f5"), os.O_RDONLY)
        os.fsync(fd)                # a commit and its checkpoint
        os.close(fd)
        os.mkdir(fs.path("after"))
        fixed_workload(fs.path("after"), 2, held)
        os.rename(fs.path("d1"), fs.path("after", "moved"))
        before = J.snapshot_tree(fs.mnt)
        shutdown(fs.mnt, LOGFLUSH)
        assert f4test.errno_of(os.stat, fs.path("d2")) == errno.EIO
    finally:
        for fd in held:
            os.close(fd)
    fs.unmount()
    log = J.walk_log(img)
    assert log["txns"], "LOGFLUSH left no committed transaction: %r" % log
    replays_agree(fs, before)
    # and fuse4fs goes on writing the replayed image
    f4test.write_file(fs.path("later"), b"after the replay")
    fs.unmount()
    assert not J.needs_recovery(img)
    assert J.walk_log(img)["start"] == 0


# ---------------------------------------------------------------------------
# random moments of a busy workload

TREE_WORKER = r"""
import os, random, shutil, sys
root, seed = sys.argv[1], int(sys.argv[2])
rnd = random.Random(seed)
held, live, n = [], [], 0
try:
    while True:
        d = os.path.join(root, "d%d" % n)
        os.mkdir(d)
        nf = rnd.randint(3, 30)
        for i in range(nf):
            p = os.path.join(d, "f%d" % i)
            with open(p, "wb") as f:
                f.write(rnd.randbytes(rnd.choice([0, 100, 3000, 9000, 40000])))
            os.chmod(p, 0o600 | rnd.randrange(0o100))
        os.rename(os.path.join(d, "f0"), os.path.join(d, "f%d" % (nf - 1)))
        os.link(os.path.join(d, "f1"), os.path.join(d, "hl"))
        os.symlink("x" * rnd.choice([10, 100]), os.path.join(d, "sl"))
        with open(os.path.join(d, "hl"), "ab") as f:
            f.write(b"appended" * rnd.randint(1, 2000))
        fd = os.open(os.path.join(d, "open"), os.O_RDWR | os.O_CREAT, 0o644)
        os.write(fd, rnd.randbytes(20000))
        os.unlink(os.path.join(d, "open"))
        held.append(fd)
        if len(held) > 3:
            os.close(held.pop(0))
        live.append(d)
        if len(live) > 4:
            shutil.rmtree(live.pop(rnd.randrange(len(live) - 1)))
        n += 1
except OSError as e:
    print("stopped", e.errno, flush=True)
"""

LOGGER = r"""
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
i = 0
try:
    while True:
        os.write(fd, b"rec %08d\n" % i)
        os.fsync(fd)
        print("synced", i, flush=True)
        i += 1
except OSError as e:
    print("stopped", e.errno, flush=True)
"""


def start(script, *args):
    return subprocess.Popen([sys.executable, "-c", script] +
                            [str(a) for a in args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def finish(procs):
    out = {}
    for name, p in procs.items():
        try:
            o, _ = p.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            o, _ = p.communicate()
            o += "\n(hung: killed)"
        out[name] = o
    return out


def busy_then(fs, seed, stop):
    """Run the workload for a random while, then stop(fs); returns the
    number of log records whose fsync had returned (-1: none)."""
    rnd = random.Random(seed)
    os.mkdir(fs.path("tree"))
    procs = {"tree": start(TREE_WORKER, fs.path("tree"), seed),
             "logger": start(LOGGER, fs.path("records"))}
    try:
        time.sleep(rnd.uniform(0.2, 1.5))
        stop(fs)
    finally:
        out = finish(procs)
    synced = [int(x) for x in
              (l.split()[1] for l in out["logger"].splitlines()
               if l.startswith("synced "))]
    assert "hung" not in out["tree"] + out["logger"], out
    return synced[-1] if synced else -1


def check_records(fs, synced):
    try:
        with open(fs.path("records"), "rb") as f:
            data = f.read()
    except FileNotFoundError:
        assert synced < 0, "records file gone; %d were fsync'ed" % synced
        return
    lines = data.split(b"\n")
    tail = lines.pop()
    assert tail == b"", "a torn record at the end: %r" % tail[:40]
    want = [b"rec %08d" % i for i in range(len(lines))]
    assert lines == want, "records out of order or damaged"
    assert len(lines) > synced, (
        "record %d was fsync'ed but only %d records are there" % (
            synced, len(lines)))


def replay_and_check(fs, synced):
    """e2fsck -E journal_only on a copy, then e2fsck -fn clean; fuse4fs's
    own replay of the image, the records, an unmount and e2fsck -fn (at
    teardown)."""
    copy = fs.image + ".e2fsck"
    shutil.copyfile(fs.image, copy)
    try:
        J.run(["e2fsck", "-E", "journal_only", "-y", copy], check=False)
        J.assert_fsck_clean(copy)
    finally:
        os.unlink(copy)
    fs.mount()
    check_records(fs, synced)
    fs.unmount()
    J.assert_fsck_clean(fs.image)


def kill9(fs):
    proc = fs.proc
    os.kill(proc.pid, 9)
    proc.wait(10)
    fs.proc = None
    deadline = time.monotonic() + 5
    while f4test.is_mounted(fs.mnt) and time.monotonic() < deadline:
        time.sleep(0.02)
    if f4test.is_mounted(fs.mnt):
        f4test.umount(fs.mnt, lazy=True)
    fs.mounted = False


@pytest.mark.parametrize("round_", range(2))
@pytest.mark.parametrize("case", ["ext4-csum3", "ext3"])
@pytest.mark.parametrize("mode", sorted(MODES))
def test_shutdown_at_random_moments(fs_factory, workdir, mode, case, round_):
    img, variant = make_image(workdir, "j", case)
    fs = fs_factory(variant, image=img, name="j")
    seed = hash((mode, case, round_)) & 0xffff
    synced = busy_then(fs, seed, lambda f: shutdown(f.mnt, MODES[mode]))
    before = sha(img)
    fs.unmount()
    assert sha(img) == before, "the image changed after the shutdown"
    replay_and_check(fs, synced)


@pytest.mark.parametrize("round_", range(3))
@pytest.mark.parametrize("case", ["ext4-csum3", "ext3", "ext4-1k-csum3"])
def test_kill9_at_random_moments(fs_factory, workdir, case, round_):
    img, variant = make_image(workdir, "j", case)
    fs = fs_factory(variant, image=img, name="j")
    seed = hash(("kill", case, round_)) & 0xffff
    synced = busy_then(fs, seed, kill9)
    replay_and_check(fs, synced)


@pytest.mark.parametrize("case", ["ext4-csum3", "ext3"])
def test_kill9_with_tiny_cache(fs_factory, workdir, case):
    """Nothing dirty goes home before its commit, even when the cache is
    far too small for the changes (without a journal, evicted inode table
    and directory blocks would reach the disk long before the bitmaps and
    the superblock): thousands of creates with no fsync and no periodic
    commit, kill -9, and the replayed image is clean."""
    img, variant = make_image(workdir, "j", case)
    fs = fs_factory(variant, image=img, name="j",
                    opts=["cache_size=256k", "commit=600"])
    f4test.write_file(fs.path("first"), b"committed")
    fd = os.open(fs.path("first"), os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    for d in range(8):
        os.mkdir(fs.path("d%d" % d))
        for i in range(250):
            with open(fs.path("d%d" % d, "f%d" % i), "wb") as f:
                f.write(b"x" * (i * 37 % 5000))
    shutil.rmtree(fs.path("d3"))
    kill9(fs)
    replay_and_check(fs, -1)
    fs.mount()
    assert f4test.read_file(fs.path("first")) == b"committed"


# ---------------------------------------------------------------------------
# the log's format

def test_escaped_block(fs_factory, workdir):
    """A metadata block that begins with the jbd2 magic (here a symlink's
    target block) is logged escaped and replayed intact by all three."""
    img, variant = make_image(workdir, "j", "ext4-csum3")
    fs = fs_factory(variant, image=img, name="j")
    target = struct.pack(">I", J.JBD2_MAGIC) + b"m" * 200
    os.symlink(target, fs.path("magic"))
    os.mkdir(fs.path("d"))
    shutdown(fs.mnt, LOGFLUSH)
    fs.unmount()
    tags = [t for txn in J.walk_log(img)["txns"] for t in txn["tags"]]
    assert any(flags & J.FLAG_ESCAPE for _, flags in tags), tags
    replays_agree(fs)
    assert os.readlink(fs.path("magic").encode()) == target


def test_small_journal_many_commits(fs_factory, workdir):
    """A 1 MiB journal (1024 blocks) and thousands of creates without an
    fsync: transactions commit at a quarter of the journal each and the
    log wraps; a shutdown leaves a log all three replay alike."""
    img, variant = make_image(workdir, "j", "ext4-1k-csum3", size_mb=256,
                              extra=("-J", "size=1"))
    seq0 = J.walk_log(img)["sequence"]
    fs = fs_factory(variant, image=img, name="j")
    for d in range(6):
        os.mkdir(fs.path("d%d" % d))
        for i in range(600):
            with open(fs.path("d%d" % d, "file-with-a-long-name-%05d" % i),
                      "wb") as f:
                f.write(b"%d" % i)
    before = J.snapshot_tree(fs.mnt)
    shutdown(fs.mnt, LOGFLUSH)
    fs.unmount()
    log = J.walk_log(img)
    assert log["sequence"] - seq0 >= 8, (
        "only %d commits for 3,600 creates in a 1 MiB journal" % (
            log["sequence"] - seq0))
    replays_agree(fs, before)


# ---------------------------------------------------------------------------
# mount, unmount and the ioctl itself

@pytest.mark.parametrize("case", ["ext4-csum3", "ext3"])
def test_needs_recovery_while_mounted(fs_factory, workdir, case):
    img, variant = make_image(workdir, "j", case)
    seq0 = J.walk_log(img)["sequence"]
    incompat = J.walk_log(img)["incompat"]
    fs = fs_factory(variant, image=img, name="j")
    f4test.write_file(fs.path("a"), b"x" * 10000)
    assert J.needs_recovery(img)
    fs.unmount()
    assert not J.needs_recovery(img)
    log = J.walk_log(img)
    assert log["start"] == 0 and log["sequence"] > seq0, log
    assert log["incompat"] == incompat, "journal features changed"
    assert J.dumpe2fs_h(img)["Filesystem state"] == "clean"
    with J.mounted(img) as mnt:     # the kernel: nothing to replay
        assert (mnt / "a").read_bytes() == b"x" * 10000


@pytest.mark.mount_opts("allow_other")
def test_shutdown_permissions_and_eio(fs):
    """Root only; afterwards every operation fails with EIO and nothing
    more reaches the image, not even at unmount."""
    f4test.write_file(fs.path("a"), b"data")
    os.chmod(fs.mnt, 0o777)

    def as_user():
        shutdown(fs.mnt, DEFAULT)
    assert f4test.errno_as(1000, 1000, as_user) == errno.EPERM
    assert f4test.errno_of(shutdown, fs.mnt, 7) == errno.EINVAL
    fd = os.open(fs.mnt, os.O_RDONLY)
    fcntl.ioctl(fd, SHUTDOWN, struct.pack("I", DEFAULT))
    before = sha(fs.image)
    for fn, args in ((os.stat, (fs.path("a"),)),
                     (os.listdir, (fs.mnt,)),
                     (os.mkdir, (fs.path("b"),)),
                     (f4test.read_file, (fs.path("a"),))):
        assert f4test.errno_of(fn, *args) == errno.EIO, fn
    fcntl.ioctl(fd, SHUTDOWN, struct.pack("I", DEFAULT))   # again: no-op
    os.close(fd)
    fs.unmount()
    assert sha(fs.image) == before, "the image changed after the shutdown"
    fs.mount()
    assert f4test.read_file(fs.path("a")) == b"data"


@pytest.mark.variants("ext2")
def test_shutdown_without_journal(fs):
    """ext2: the default mode flushes everything, then stops."""
    os.mkdir(fs.path("d"))
    f4test.write_file(fs.path("d", "f"), b"kept" * 1000)
    shutdown(fs.mnt, DEFAULT)
    assert f4test.errno_of(os.listdir, fs.mnt) == errno.EIO
    fs.unmount()
    fs.mount()
    assert f4test.read_file(fs.path("d", "f")) == b"kept" * 1000
