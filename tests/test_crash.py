"""An unclean end of the daemon (issue #8, "Hostile and unlucky input").

kill -9 of fuse4fs while files are open and writes are in flight: the
mount goes away by itself within seconds (the auto-unmount watchdog) and
nothing that uses it hangs; the next mount says that the file system was
not cleanly unmounted, frees the orphans (files unlinked while open at the
time of the kill: "orphan cleanup", and their blocks come back), and after
that mount and an unmount e2fsck -fn is clean; data that was fsync'ed
before the kill is there.  With a journal (ext3, ext4) the next mount
replays it and e2fsck -fn must find nothing at all.  (Without one, ext2,
a kill in the middle of a flush, with writers busy, may tear the orphan
list or the bitmaps: that one test accepts exactly those findings there,
and e2fsck -fy must then leave the image clean.)  SIGTERM is an orderly
end: the daemon unmounts, writes everything and exits 0.

All of this is about the FUSE daemon: the kernel driver has no daemon.
"""

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

import f4test
from f4test import pattern, read_file, write_file

pytestmark = [pytest.mark.fuse_only, pytest.mark.timeout(120)]

GONE_WITHIN = 5.0       # seconds for the mount to go away after a kill


def _counts(image):
    h = f4test.dumpe2fs_h(image)
    return int(h["Free blocks"]), int(h["Free inodes"])


def _wait_unmounted(mnt, timeout=GONE_WITHIN):
    deadline = time.monotonic() + timeout
    while f4test.is_mounted(mnt):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _ls_returns(mnt, timeout=5):
    """ls of the mount point must come back promptly (any result)."""
    t0 = time.monotonic()
    try:
        subprocess.run(["ls", "-la", mnt], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    return time.monotonic() - t0


def _journaled(fs):
    return "has_journal" in f4test.dumpe2fs_h(fs.image).get(
        "Filesystem features", "")


def _unclean_note(fs, log):
    """What the next mount says after a crash: a journaled file system is
    recovered from its journal, another one is just not clean."""
    if _journaled(fs):
        return re.search(r"recovering journal", log)
    return re.search(r"not cleanly unmounted", log)


def _log_since_last_mount(fs):
    return f4test.read_log(fs.log, limit=1 << 20).split("====")[-1]


# A process that uses the mount: an open file, its cwd, and (later) a read.
_HOLDER = r"""
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
os.chdir(sys.argv[2])
print("ready", flush=True)
sys.stdin.readline()
for what, fn in (("read", lambda: os.pread(fd, 100, 0)),
                 ("listdir", lambda: os.listdir(".")),
                 ("stat", lambda: os.stat(sys.argv[1]))):
    try:
        fn()
        print(what, "ok", flush=True)
    except OSError as e:
        print(what, "errno", e.errno, flush=True)
"""

# Writes 256 KiB chunks of pattern(seed) to a file, fsyncs every 4 chunks
# and reports the fsync'ed length, until a write fails.
_WRITER = r"""
import os, random, sys
path, seed = sys.argv[1], int(sys.argv[2])
rnd = random.Random(seed)
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
n = 0
print("ready", flush=True)
try:
    while True:
        os.write(fd, rnd.randbytes(1 << 18))
        n += 1
        if n % 4 == 0:
            os.fsync(fd)
            print("synced", n << 18, flush=True)
        if n > 40:
            print("truncating", flush=True)
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.fsync(fd)
            rnd = random.Random(seed)
            n = 0
            print("synced", 0, flush=True)
except OSError as e:
    print("error", e.errno, flush=True)
"""

# Creates, writes and removes small files and directories, until it fails.
_CHURN = r"""
import os, sys
d = sys.argv[1]
print("ready", flush=True)
i = 0
try:
    while True:
        p = os.path.join(d, "c%d" % (i % 50))
        with open(p, "wb") as f:
            f.write(b"x" * (i % 9000))
        if i % 3 == 0:
            os.unlink(p)
        if i % 7 == 0:
            # not makedirs: once the mount is gone that would recreate d
            # in the directory under it and churn on there, not fail
            try:
                os.mkdir(os.path.join(d, "dir%d" % (i % 11)))
            except FileExistsError:
                pass
        if i % 13 == 0:
            try:
                os.rmdir(os.path.join(d, "dir%d" % (i % 11)))
            except FileNotFoundError:
                pass
        i += 1
except OSError as e:
    print("error", e.errno, flush=True)
"""


def _start(code, *args):
    p = subprocess.Popen([sys.executable, "-c", code] + [str(a) for a in args],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline().strip()
    assert line == "ready", (line, p.stderr.read() if p.poll() is not None
                             else "")
    return p


def _kernel_stack(pid):
    """Where a stuck helper waits, for the failure message."""
    try:
        with open("/proc/%d/stack" % pid) as f:
            return " [kernel stack: %s]" % " <- ".join(
                l.split()[-1] for l in f.read().splitlines()[:8])
    except OSError as e:
        return " [no kernel stack: %s]" % e.strerror


def _finish(procs, timeout=5.0):
    """Wait for helper processes; returns {name: (output, hung)}."""
    out = {}
    deadline = time.monotonic() + timeout
    for name, p in procs.items():
        try:
            o, _ = p.communicate("go\n" if p.stdin and not p.stdin.closed
                                 else None,
                                 timeout=max(0.1, deadline - time.monotonic()))
            out[name] = (o, False)
        except subprocess.TimeoutExpired:
            where = _kernel_stack(p.pid)
            p.kill()
            o, _ = p.communicate()
            out[name] = (o + where, True)
        except (BrokenPipeError, ValueError):
            o = p.stdout.read() if p.stdout else ""
            p.wait()
            out[name] = (o, False)
    return out


def _kill9_daemon(fs):
    """SIGKILL only the daemon (not its auto-unmount watchdog)."""
    proc = fs.proc
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    fs.proc = None


def _after_kill(fs, procs):
    """The rules for right after a kill: the mount goes away, nothing
    hangs.  Returns (problems, {name: output of the helper})."""
    problems = []
    gone = _wait_unmounted(fs.mnt)
    if not gone:
        problems.append("still mounted %.0f s after the daemon was killed"
                        % GONE_WITHIN)
    took = _ls_returns(fs.mnt)
    if took is None:
        problems.append("ls of the mount point hung")
    res = _finish(procs)
    for name, (o, hung) in res.items():
        if hung:
            problems.append("%s hung after the kill (output %r)" % (name, o))
        elif name == "holder" and "read ok" in o:
            problems.append("holder: a read on the dead mount succeeded: %r"
                            % o)
    if not gone:
        f4test.umount(fs.mnt, lazy=True)
    fs.mounted = False
    return problems, {k: v[0] for k, v in res.items()}


KEEP = {"keep/a": pattern(100000, seed=1), "keep/b": pattern(1 << 20, seed=2)}


def _write_keep(fs):
    """Files written before the trouble; returns the free (blocks, inodes)
    with them, from dumpe2fs after an unmount.  Leaves fs unmounted."""
    os.mkdir(fs.path("keep"))
    for rel, data in KEEP.items():
        write_file(fs.path(rel), data)
    fs.unmount()
    return _counts(fs.image)


def _kill_with_unlinked_open(fs, kill):
    """With an unlinked file held open, an fd and a cwd on the mount,
    kill(fs) ends the daemon uncleanly.  Checks what must hold right
    after."""
    unl = fs.path("unlinked")
    fd = os.open(unl, os.O_RDWR | os.O_CREAT, 0o644)
    os.write(fd, pattern(3 << 20, seed=3))
    os.fsync(fd)
    os.unlink(unl)
    os.fsync(fd)
    rfd = os.open(fs.path("keep/b"), os.O_RDONLY)
    holder = _start(_HOLDER, fs.path("keep/a"), fs.path("keep"))
    # the orphan is on disk before the crash, as the kernel would have it
    h = f4test.dumpe2fs_h(fs.image)
    orphan_on_disk = h.get("First orphan inode") or \
        "orphan_present" in h.get("Filesystem features", "")
    try:
        kill(fs)
        problems, _ = _after_kill(fs, {"holder": holder})
        for f in (fd, rfd):
            e = f4test.errno_of(os.pread, f, 10, 0)
            if e == 0:
                problems.append("a read from an fd on the dead mount worked")
    finally:
        for f in (fd, rfd):
            try:
                os.close(f)
            except OSError:
                pass
    assert not problems, "\n".join(problems)
    assert orphan_on_disk, "the unlinked open file was not on the orphan " \
        "list on disk at the time of the kill:\n%s" % h
    h = f4test.dumpe2fs_h(fs.image)
    if _journaled(fs):
        assert "needs_recovery" in h["Filesystem features"], \
            "killed while mounted rw, yet the journal needs no recovery"
    else:
        assert h["Filesystem state"] != "clean", \
            "killed while mounted rw, yet marked clean"


def _next_mount_cleans_up(fs, base):
    fs.mount()
    log = _log_since_last_mount(fs)
    assert _unclean_note(fs, log), log
    m = re.search(r"orphan cleanup: (\d+) inodes? freed", log)
    assert m and int(m.group(1)) == 1, log
    for rel, data in KEEP.items():
        assert read_file(fs.path(rel)) == data
    assert sorted(os.listdir(fs.mnt)) == ["keep", "lost+found"]
    fs.unmount()
    assert _counts(fs.image) == base, (
        "the unlinked file's blocks or inode did not come back: free "
        "(blocks, inodes) %r, before %r" % (_counts(fs.image), base))
    fs.fsck()


@pytest.mark.image_size("64M")
@pytest.mark.variants("ext4", "ext3", "ext2")
def test_kill9_with_open_and_unlinked_files(fs):
    base = _write_keep(fs)
    fs.mount()
    _kill_with_unlinked_open(fs, _kill9_daemon)
    _next_mount_cleans_up(fs, base)


def _daemon_pids(image):
    """The daemonized fuse4fs for image, found with pgrep -f; its
    auto-unmount watchdog (a forked child with the same command line) is
    left out."""
    p = subprocess.run(["pgrep", "-f", "--", image], stdout=subprocess.PIPE,
                       text=True)
    parents = {}
    for pid in (int(x) for x in p.stdout.split()):
        try:
            with open("/proc/%d/stat" % pid) as f:
                parents[pid] = int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            pass
    return [pid for pid in parents if parents[pid] not in parents]


@pytest.mark.image_size("64M")
@pytest.mark.variants("ext4")
def test_kill9_daemonized(fs):
    """The same with fuse4fs in the background, as users run it: the pid
    comes from pgrep."""
    base = _write_keep(fs)
    image = os.path.realpath(fs.image)
    p = subprocess.run([f4test.fuse4fs_binary(), image, fs.mnt],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=20)
    try:
        assert p.returncode == 0, p.stdout
        assert f4test.is_mounted(fs.mnt)
        fs.mounted = True           # no fs.proc: not the harness's daemon

        def kill(_fs):
            pids = _daemon_pids(image)
            assert len(pids) == 1, "pgrep -f %s: %r" % (image, pids)
            os.kill(pids[0], signal.SIGKILL)
            deadline = time.monotonic() + 10
            while os.path.exists("/proc/%d" % pids[0]) and \
                    time.monotonic() < deadline:
                time.sleep(0.02)

        _kill_with_unlinked_open(fs, kill)
    finally:
        if f4test.is_mounted(fs.mnt):
            f4test.umount(fs.mnt, lazy=True)
        fs.mounted = False
        for pid in _daemon_pids(image):
            os.kill(pid, signal.SIGKILL)
    _next_mount_cleans_up(fs, base)


def _stream_ok(data, seed):
    """Which prefix of data matches the writer's stream; and whether every
    4 KiB block past it is either the stream's or zeros (never another
    file's old data)."""
    rnd = random.Random(seed)
    want = bytearray()
    while len(want) < len(data):
        want += rnd.randbytes(1 << 18)
    good = 0
    while good < len(data) and data[good:good + 4096] == \
            want[good:good + 4096]:
        good += 4096
    good = min(good, len(data))
    junk = []
    for off in range(good, len(data), 4096):
        blk = data[off:off + 4096]
        if blk != want[off:off + len(blk)] and blk.strip(b"\0"):
            junk.append(off)
    return good, junk


@pytest.mark.image_size("128M")
@pytest.mark.variants("ext4", "ext3", "ext4-1k", "ext2")
def test_kill9_during_writes(fs):
    """Writers (with fsyncs), a process creating and removing files, and
    an unlinked open file, all busy at the kill."""
    os.mkdir(fs.path("w"))
    os.mkdir(fs.path("churn"))
    write_file(fs.path("w", "before"), pattern(500000, seed=9))
    fd = os.open(fs.path("w", "before"), os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    procs, ufd = {}, None
    try:
        for i in range(3):
            procs["writer%d" % i] = _start(_WRITER, fs.path("w", "f%d" % i), i)
        procs["churn"] = _start(_CHURN, fs.path("churn"))
        ufd = os.open(fs.path("w", "gone"), os.O_RDWR | os.O_CREAT, 0o644)
        os.write(ufd, pattern(1 << 20, seed=10))
        os.unlink(fs.path("w", "gone"))
        time.sleep(1.5)
        _kill9_daemon(fs)
        problems, outs = _after_kill(fs, procs)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
        if ufd is not None:
            try:
                os.close(ufd)
            except OSError:
                pass
    writers = [n for n in procs if n.startswith("writer")]
    assert not problems, "\n".join(problems)
    synced = {}
    for name in writers:
        vals = re.findall(r"^(?:synced (\d+)|truncating)$", outs[name],
                          re.M)
        assert any(vals), "%s never fsync'ed: %r" % (name, outs[name])
        # Killed between its ftruncate and the "synced 0" after it, the
        # writer may find its file empty: it asked for that.
        synced[name] = int(vals[-1] or 0)

    fs.mount()
    log = _log_since_last_mount(fs)
    assert _unclean_note(fs, log), log
    assert read_file(fs.path("w", "before")) == pattern(500000, seed=9)
    for i, name in enumerate(sorted(writers)):
        data = read_file(fs.path("w", "f%d" % i))
        good, junk = _stream_ok(data, i)
        assert good >= synced[name], (
            "%s: %d bytes were fsync'ed before the kill, only %d are there "
            "(file size %d)" % (name, synced[name], good, len(data)))
        assert not junk, "%s: blocks past what was written hold other " \
            "data (offsets %s)" % (name, junk[:10])
    fs.unmount()
    if _journaled(fs):
        fs.fsck()           # replayed: nothing at all may be wrong
    else:
        _fsck_after_torn_flush(fs)


# What a kill in the middle of a flush may leave without a journal (ext2;
# README, "Known limitations"): libext2fs writes the blocks in
# order and then the superblock, so an inode can be linked into the orphan
# list while the superblock's head still points past it; the bitmaps and
# counts, an inode's i_blocks and its extent blocks, a new inode and the
# directory block naming it may each be from before or after the last
# change.  Never a name pointing at a freed inode, a block owned twice,
# or a damaged directory or extent tree.
_TORN_FLUSH_OK = re.compile(
    r"orphan|bitmap differences|count wrong|zero dtime|Fix\? (no|yes)$|"
    r"IGNORED|^Padding|^ *[-+(0-9 ,)-]+$|^Clear\? |^Inode \d+ was part of|"
    r"^Inode \d+, i_blocks is \d+, should be \d+|"
    r"^Unattached (zero-length )?inode \d+|^Connect to /lost\+found\?|"
    r"^Inode \d+ ref count is \d+, should be \d+")


def _fsck_after_torn_flush(fs):
    """e2fsck -fn; if it finds anything, it must be only what a torn
    flush explains (no lost or cross-linked data, no damaged directory),
    and after e2fsck -fy the image must be clean."""
    p = f4test.run(["e2fsck", "-fn", fs.image], check=False)
    if p.returncode == 0:
        return
    found = [l for l in p.stdout.splitlines()
             if l.strip() and not l.startswith(("Pass ", "e2fsck ", "/"))
             and "WARNING" not in l]
    bad = [l for l in found if not _TORN_FLUSH_OK.search(l)]
    assert not bad, "e2fsck -fn found more than a torn flush explains:\n" \
        + p.stdout
    print("torn flush, repaired by e2fsck -fy:\n" + "\n".join(found))
    f4test.run(["e2fsck", "-fy", fs.image], check=False)
    fs.fsck()


@pytest.mark.image_size("64M")
@pytest.mark.variants("ext4", "ext2")
def test_sigterm_unmounts_cleanly(fs):
    """SIGTERM: the daemon unmounts, writes everything (nothing was
    synced), frees the unlinked open file and exits 0; the image is clean
    and e2fsck agrees."""
    fs.unmount()
    base = _counts(fs.image)
    fs.mount()
    os.mkdir(fs.path("d"))
    data = {"d/f%d" % i: pattern(50000 * (i + 1), seed=20 + i)
            for i in range(5)}
    for rel, d in data.items():
        write_file(fs.path(rel), d)
    os.setxattr(fs.path("d/f0"), "user.x", b"y")
    ufd = os.open(fs.path("gone"), os.O_RDWR | os.O_CREAT, 0o644)
    os.write(ufd, pattern(2 << 20, seed=30))
    os.unlink(fs.path("gone"))
    proc = fs.proc
    try:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            rc = proc.wait(15)
        except subprocess.TimeoutExpired:
            rc = None
    finally:
        os.close(ufd)
    gone = _wait_unmounted(fs.mnt)
    took = _ls_returns(fs.mnt)
    if rc is not None:
        fs.proc = None
    if gone:
        fs.mounted = False
    log = _log_since_last_mount(fs)
    assert rc is not None, "the daemon still runs 15 s after SIGTERM"
    assert gone, "still mounted after SIGTERM"
    assert took is not None, "ls of the mount point hung"
    assert rc == 0, "exit status %d after SIGTERM:\n%s" % (rc, log)
    assert f4test.dumpe2fs_h(fs.image)["Filesystem state"] == "clean"
    fs.fsck()
    fs.mount()
    for rel, d in data.items():
        assert read_file(fs.path(rel)) == d, rel
    assert os.getxattr(fs.path("d/f0"), "user.x") == b"y"
    assert not os.path.exists(fs.path("gone"))
    log = _log_since_last_mount(fs)
    assert "not cleanly" not in log and "orphan" not in log, log
    shutil.rmtree(fs.path("d"))
    fs.unmount()
    assert _counts(fs.image) == base, (
        "blocks or inodes leaked: free %r, before %r" % (
            _counts(fs.image), base))


@pytest.mark.image_size("32M")
@pytest.mark.variants("ext4", "ext2")
def test_kill9_after_rmdir_then_write(fs):
    """The smallest crash that must stay consistent: a directory that is on
    disk is removed, a new file is written, and the daemon is killed
    before its next periodic flush.  The blocks the directory gave up must
    not hold the new file's data while the directory is still on disk:
    after the next mount and an unmount e2fsck -fn must be clean (the
    directory is either still there, intact, or gone)."""
    os.mkdir(fs.path("d"))
    for i in range(3):
        write_file(fs.path("d", "x%d" % i), b"hello")
    fd = os.open(fs.path("d"), os.O_RDONLY)
    os.fsync(fd)                # d and its block are on disk now
    os.close(fd)
    for i in range(3):
        os.unlink(fs.path("d", "x%d" % i))
    os.rmdir(fs.path("d"))
    write_file(fs.path("f"), pattern(1 << 20, seed=40))
    _kill9_daemon(fs)
    problems, _ = _after_kill(fs, {})
    assert not problems, "\n".join(problems)
    fs.mount()
    names = sorted(os.listdir(fs.mnt))
    d_state = "absent"
    if "d" in names:
        e = f4test.errno_of(os.listdir, fs.path("d"))
        d_state = "listable" if e == 0 else f4test.errname(e)
    fs.unmount()
    p = f4test.run(["e2fsck", "-fn", fs.image], check=False)
    assert p.returncode == 0 and d_state in ("absent", "listable"), (
        "after rmdir d, writing f and kill -9, the next mount shows %s, d "
        "is %s; e2fsck -fn exits %d:\n%s" % (names, d_state, p.returncode,
                                             p.stdout))
