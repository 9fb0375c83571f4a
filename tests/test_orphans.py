"""Orphan inodes (issue #4): inodes that lost their last name while still
in use.

- A file unlinked while open keeps its data, and reads and writes through
  the descriptor go on working, with fstat() saying nlink 0, until the
  last close; then its blocks and its inode are free again (statfs, and
  the superblock's counts after unmount).
- A directory removed while it is another process's working directory
  behaves as on kernel ext4: stat(".") works, listing it gives nothing, and
  the inode is not handed out again while the directory is still in use.
  Likewise an O_PATH descriptor keeps its unlinked file's inode.
- kill -9 of the daemon with unlinked-but-open files: the next mount says
  it cleans the orphans up, the blocks come back, and e2fsck -fn is clean.
  The same for orphans left by kernel ext4 (EXT4_IOC_SHUTDOWN with and
  without log flush): replay, then cleanup.  Both on-disk forms: the
  classic s_last_orphan chain and the orphan_file feature.
- A read-only mount of such an image frees the orphans as the kernel's
  does ("orphan cleanup on readonly fs"), when the device is writable.
- 50 unlinked-open files closed in random order (removal from the middle
  of the orphan chain), with a crash half-way: the chain on disk still
  holds exactly the remaining ones.  1100 of them with a one-block orphan
  file: the overflow goes to the classic chain, as in the kernel.
- More ways to lose the last name while in use (rename over an open
  file, the last of two hard links, rmdir of an open directory), and
  relinking an unlinked open file (ENOENT), compared with kernel ext4.
- The daemon's memory stays bounded during a walk over 200,000 files.

Debian 12's mke2fs.conf does not turn orphan_file on for ext4, so the
"chain" cases pass -O ^orphan_file explicitly and the "ofile" cases
-O orphan_file.
"""

import errno
import os
import random
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time

import pytest

import f4test
import journal_images as J
from f4test import pattern

ORPHAN_FORMS = [
    pytest.param("chain", marks=pytest.mark.mkfs_opts("-O", "^orphan_file"),
                 id="chain"),
    pytest.param("ofile", marks=pytest.mark.mkfs_opts("-O", "orphan_file"),
                 id="ofile"),
]


# ---------------------------------------------------------------------------
# helpers

def bfree(mnt):
    return os.statvfs(mnt).f_bfree


def ffree(mnt):
    return os.statvfs(mnt).f_ffree


def wait_counts(mnt, blocks, inodes, timeout=5.0):
    """statfs until the free counts are (blocks, inodes); the kernel sends
    RELEASE after close() returns, so allow it a moment.  Returns the last
    counts seen."""
    deadline = time.monotonic() + timeout
    while True:
        st = os.statvfs(mnt)
        got = (st.f_bfree, st.f_ffree)
        if got == (blocks, inodes) or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def wait_free_inodes(mnt, want, timeout=10.0):
    deadline = time.monotonic() + timeout
    while ffree(mnt) != want:
        if time.monotonic() > deadline:
            raise AssertionError("free inodes %d, expected %d" % (
                ffree(mnt), want))
        time.sleep(0.02)


def sb_counts(image):
    h = f4test.dumpe2fs_h(image)
    return int(h["Free blocks"]), int(h["Free inodes"])


def orphan_state(image):
    """(first orphan inode or 0, orphan_present feature set)"""
    h = J.dumpe2fs_h(image)
    feats = h.get("Filesystem features", "").split()
    return int(h.get("First orphan inode", "0")), "orphan_present" in feats


def assert_fsck_clean(image):
    """e2fsck -fn: exit 0 and no question answered 'no' (e2fsck -n exits
    0 after declining to fix wrong summary counts)."""
    J.assert_fsck_clean(image)


def log_pos(fs):
    try:
        return os.path.getsize(fs.log)
    except OSError:
        return 0


def log_since(fs, pos):
    with open(fs.log, "rb") as f:
        f.seek(pos)
        return f.read().decode("utf-8", "replace")


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def loop_devices_of(image):
    p = f4test.run(["losetup", "-j", image], check=False)
    return [l for l in p.stdout.splitlines() if l.strip()]


def crash_daemon(fs, holders=()):
    """kill -9 the daemon (its process group), then the processes holding
    files open below the mount; wait until the mount and its loop device
    are gone, so that the image can be mounted again."""
    assert fs.proc is not None and fs.proc.poll() is None, \
        "daemon not running before the crash"
    fs.kill_daemon()
    for pid in holders:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)
    deadline = time.monotonic() + 10
    while f4test.is_mounted(fs.mnt) and time.monotonic() < deadline:
        time.sleep(0.05)
    if f4test.is_mounted(fs.mnt):
        # the watchdog should have detached it; don't leave it behind
        f4test.umount(fs.mnt, lazy=True)
    fs.mounted = False
    deadline = time.monotonic() + 10
    while loop_devices_of(fs.image) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not loop_devices_of(fs.image), \
        "loop device still attached after the crash: %s" % loop_devices_of(
            fs.image)


def hold_after(setup):
    """Fork a child that runs setup() (opening what it must keep open),
    then holds it all until killed.  Returns the child's pid once setup()
    is done; if it raised, kills the child and fails with its error."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            setup()
            os.write(w, b"k")
            while True:
                time.sleep(60)
        except BaseException as e:      # noqa: BLE001
            os.write(w, ("E%r" % e).encode())
        finally:
            os._exit(1)
    os.close(w)
    msg = os.read(r, 4096)
    os.close(r)
    if msg != b"k":
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise AssertionError("holder child failed: %r" % msg)
    return pid


def hold_unlinked(mnt, names, sizes, seed=0):
    """Fork a child that creates the files, writes them, unlinks them,
    fsyncs the files and the directory (so that the unlinks and the orphan
    records reach the image) and then holds them open until killed.
    Returns the child's pid once all that is done."""
    def setup():
        fds = []
        for i, (n, size) in enumerate(zip(names, sizes)):
            p = os.path.join(mnt, n)
            fd = os.open(p, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            os.write(fd, pattern(size, seed + i))
            os.unlink(p)
            fds.append(fd)
        for fd in fds:
            os.fsync(fd)
        fsync_dir(mnt)
    return hold_after(setup)


# ---------------------------------------------------------------------------
# unlinked while open

@pytest.mark.variants("ext2", "ext4", "ext4-1k", "ext4-inline")
def test_unlinked_open_file_lives_until_close(fs_unmounted):
    fs = fs_unmounted
    sb0 = sb_counts(fs.image)
    fs.mount()
    p = fs.path("victim")
    b0, i0 = bfree(fs.mnt), ffree(fs.mnt)
    data = pattern(3 << 20, 1)
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
        b1 = bfree(fs.mnt)
        used = b0 - b1
        assert used >= (3 << 20) // fs.blocksize, (b0, b1)
        os.unlink(p)
        assert "victim" not in os.listdir(fs.mnt)
        f4test.assert_errno(errno.ENOENT, os.stat, p)
        st = os.fstat(fd)
        assert st.st_nlink == 0 and st.st_size == len(data)
        assert stat.S_ISREG(st.st_mode)
        # the data is all still there and can be changed and grown
        assert f4test.pread_all(fd, len(data), 0) == data
        os.pwrite(fd, b"rewritten", 4096)
        more = pattern(1 << 20, 2)
        os.pwrite(fd, more, len(data))
        os.fsync(fd)
        assert f4test.pread_all(fd, 9, 4096) == b"rewritten"
        assert f4test.pread_all(fd, len(more), len(data)) == more
        assert os.fstat(fd).st_size == len(data) + len(more)
        assert os.fstat(fd).st_nlink == 0
        os.ftruncate(fd, 100000)
        assert os.fstat(fd).st_size == 100000
        os.pwrite(fd, more, 200000)
        # while it is open nothing is given back
        os.sync()
        assert bfree(fs.mnt) < b0
        assert ffree(fs.mnt) == i0 - 1
    finally:
        os.close(fd)
    os.sync()
    got = wait_counts(fs.mnt, b0, i0)
    assert got == (b0, i0), "after close: free blocks/inodes %s, expected %s" \
        % (got, (b0, i0))
    fs.unmount()
    assert_fsck_clean(fs.image)
    assert sb_counts(fs.image) == sb0, "superblock free counts (blocks, " \
        "inodes) %s, at mkfs %s" % (sb_counts(fs.image), sb0)
    assert orphan_state(fs.image) == (0, False)
    fs.mount()
    assert (bfree(fs.mnt), ffree(fs.mnt)) == (b0, i0)
    assert sorted(os.listdir(fs.mnt)) == ["lost+found"]


@pytest.mark.fuse_only
@pytest.mark.variants("ext4")
@pytest.mark.parametrize("form", ORPHAN_FORMS)
def test_many_unlinked_open_files_closed_in_random_order(fs_unmounted, form):
    """50 unlinked-open files; close half in random order (removals from
    the middle of the on-disk list), crash, and the next mount must find
    exactly the other 25 on the list; then the free counts are those of
    the empty file system."""
    fs = fs_unmounted
    sb0 = sb_counts(fs.image)
    fs.mount()
    b0, i0 = bfree(fs.mnt), ffree(fs.mnt)
    rnd = random.Random(50)
    n = 50
    sizes = [rnd.choice([0, 1, 5000, 70000, 300000]) for _ in range(n)]
    order = list(range(n))
    rnd.shuffle(order)
    r, w = os.pipe()
    r2, w2 = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            fds = []
            for i in range(n):
                p = fs.path("o%02d" % i)
                fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
                os.write(fd, pattern(sizes[i], i))
                fds.append(fd)
            for i in rnd.sample(range(n), n):     # unlink in another order
                os.unlink(fs.path("o%02d" % i))
            for i in order[:n // 2]:
                assert os.fstat(fds[i]).st_nlink == 0
                assert f4test.pread_all(fds[i], sizes[i], 0) == \
                    pattern(sizes[i], i)
                os.close(fds[i])
            # The kernel may send RELEASE after close() returns (pending
            # writeback holds the file): wait until the daemon has freed
            # the closed ones, so that the fsync below covers them.
            wait_free_inodes(fs.mnt, i0 - (n - n // 2))
            for i in order[n // 2:]:
                os.fsync(fds[i])
            fsync_dir(fs.mnt)
            os.write(w, b"k")
            os.read(r2, 1)
            os._exit(0)
        except BaseException as e:      # noqa: BLE001
            os.write(w, ("E%r" % e).encode())
            os._exit(1)
    os.close(w)
    os.close(r2)
    msg = os.read(r, 4096)
    if msg != b"k":
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("child failed: %r" % msg)
    assert os.listdir(fs.mnt) == ["lost+found"]
    crash_daemon(fs, holders=[pid])
    first, present = orphan_state(fs.image)
    if form == "chain":
        assert first, "no orphan chain on disk after the crash"
    else:
        assert present, "orphan_present not set after the crash"
    pos = log_pos(fs)
    fs.mount()
    out = log_since(fs, pos)
    assert "orphan cleanup: %d inodes freed" % (n - n // 2) in out, out
    got = wait_counts(fs.mnt, b0, i0, timeout=0)
    assert got == (b0, i0), "after orphan cleanup: %s, expected %s" % (
        got, (b0, i0))
    fs.unmount()
    assert_fsck_clean(fs.image)
    assert sb_counts(fs.image) == sb0
    assert orphan_state(fs.image) == (0, False)


@pytest.mark.fuse_only
@pytest.mark.variants("ext4")
@pytest.mark.parametrize("form", ORPHAN_FORMS)
def test_many_unlinked_open_files_all_closed(fs_unmounted, form):
    """50 unlinked-open files closed in random order, all of them: all
    freed, nothing left on the orphan list, e2fsck clean."""
    fs = fs_unmounted
    sb0 = sb_counts(fs.image)
    fs.mount()
    b0, i0 = bfree(fs.mnt), ffree(fs.mnt)
    rnd = random.Random(7)
    fds = {}
    try:
        for i in range(50):
            p = fs.path("m%02d" % i)
            fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
            fds[i] = fd
            os.write(fd, pattern(rnd.choice([0, 100, 8192, 200000]), i))
        for i in rnd.sample(range(50), 50):
            os.unlink(fs.path("m%02d" % i))
        for k, i in enumerate(rnd.sample(range(50), 50)):
            if k % 10 == 0:
                os.fsync(fds[i])
            os.close(fds.pop(i))
    finally:
        for fd in fds.values():
            os.close(fd)
    got = wait_counts(fs.mnt, b0, i0)
    assert got == (b0, i0), (got, (b0, i0))
    fs.unmount()
    assert_fsck_clean(fs.image)
    assert sb_counts(fs.image) == sb0
    assert orphan_state(fs.image) == (0, False)
    pos = log_pos(fs)
    fs.mount()
    assert "orphan" not in log_since(fs, pos)


@pytest.mark.fuse_only
@pytest.mark.variants("ext4")
def test_orphan_cases_like_kernel(fs, kernel_ext4):
    """More ways to lose the last name while in use, compared with kernel
    ext4: an unlinked open file can't be linked again (only O_TMPFILE
    files can); rename over an open file; the last of two hard links; a
    directory removed while open (opendir), with new inodes created
    meanwhile."""
    import ctypes
    libc = ctypes.CDLL("libc.so.6", use_errno=True)

    def relink(fd, dst):
        if libc.linkat(-100, ("/proc/self/fd/%d" % fd).encode(), -100,
                       os.fsencode(dst), 0x400) < 0:
            return errno.errorcode[ctypes.get_errno()]
        return "ok"

    def scenario(m):
        out = {}
        fd = os.open(os.path.join(m, "u"), os.O_RDWR | os.O_CREAT, 0o644)
        os.write(fd, b"data")
        os.unlink(os.path.join(m, "u"))
        out["relink-unlinked"] = relink(fd, os.path.join(m, "u2"))
        out["u2"] = os.path.exists(os.path.join(m, "u2"))
        os.close(fd)
        f4test.write_file(os.path.join(m, "a"), b"AAA")
        f4test.write_file(os.path.join(m, "b"), b"BBB")
        fd = os.open(os.path.join(m, "b"), os.O_RDONLY)
        os.rename(os.path.join(m, "a"), os.path.join(m, "b"))
        out["renamed-over"] = (os.pread(fd, 10, 0), os.fstat(fd).st_nlink)
        os.close(fd)
        out["b"] = f4test.read_file(os.path.join(m, "b"))
        f4test.write_file(os.path.join(m, "h1"), b"H")
        os.link(os.path.join(m, "h1"), os.path.join(m, "h2"))
        fd = os.open(os.path.join(m, "h1"), os.O_RDONLY)
        os.unlink(os.path.join(m, "h1"))
        n1 = os.fstat(fd).st_nlink
        os.unlink(os.path.join(m, "h2"))
        out["hardlinks"] = (n1, os.fstat(fd).st_nlink, os.pread(fd, 5, 0))
        os.close(fd)
        os.mkdir(os.path.join(m, "dd"))
        dfd = os.open(os.path.join(m, "dd"), os.O_RDONLY | os.O_DIRECTORY)
        os.rmdir(os.path.join(m, "dd"))
        for i in range(20):
            f4test.write_file(os.path.join(m, "z%02d" % i), b"")
        try:
            st = os.fstat(dfd)
            out["open-dir"] = (stat.filemode(st.st_mode), st.st_nlink)
        except OSError as e:
            out["open-dir"] = errno.errorcode[e.errno]
        try:
            out["open-dir-list"] = os.listdir(dfd)
        except OSError as e:
            out["open-dir-list"] = errno.errorcode[e.errno]
        os.close(dfd)
        for i in range(20):
            os.unlink(os.path.join(m, "z%02d" % i))
        return out

    got = scenario(fs.mnt)
    ref = scenario(kernel_ext4.mnt)
    diff = ["%s: fuse4fs %r, kernel %r" % (k, got.get(k), ref.get(k))
            for k in sorted(ref) if got.get(k) != ref.get(k)]
    assert not diff, "\n".join(diff)
    assert ref["relink-unlinked"] == "ENOENT"


@pytest.mark.fuse_only
@pytest.mark.variants("ext4")
@pytest.mark.mkfs_opts("-O", "orphan_file", "-E", "orphan_file_size=1")
@pytest.mark.timeout(200)
def test_orphan_file_full_falls_back_to_chain(fs_unmounted):
    """A one-block orphan file holds about a thousand inodes; 1100 files
    unlinked while open need the classic chain too, as the kernel does.
    300 are closed in random order, then the daemon is killed: the next
    mount must free exactly the other 800, with the free counts e2fsck
    -fy's orphan processing of a copy gives."""
    import resource
    fs = fs_unmounted
    fs.mount()
    i0 = ffree(fs.mnt)
    n, closed = 1100, 300

    def setup():
        resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))
        fds = []
        for i in range(n):
            p = fs.path("o%04d" % i)
            fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
            os.write(fd, pattern(i % 3 * 5000, i))
            fds.append(fd)
        for i in range(n):
            os.unlink(fs.path("o%04d" % i))
        for i in random.Random(3).sample(range(n), closed):
            os.close(fds[i])
            fds[i] = None
        wait_free_inodes(fs.mnt, i0 - (n - closed))
        os.fsync([fd for fd in fds if fd is not None][0])
        fsync_dir(fs.mnt)
    pid = hold_after(setup)
    crash_daemon(fs, holders=[pid])
    first, present = orphan_state(fs.image)
    assert first and present, "expected both the orphan file and the " \
        "chain in use: first orphan %d, orphan_present %s" % (first, present)
    ref = fs.image + ".e2fsck"
    shutil.copy(fs.image, ref)
    f4test.run(["e2fsck", "-fy", ref], check=False)
    want = sb_counts(ref)
    os.unlink(ref)
    pos = log_pos(fs)
    fs.mount()
    out = log_since(fs, pos)
    assert "orphan cleanup: %d inodes freed" % (n - closed) in out, out
    fs.unmount()
    assert_fsck_clean(fs.image)
    assert sb_counts(fs.image) == want, (sb_counts(fs.image), want)
    assert orphan_state(fs.image) == (0, False)


@pytest.mark.fuse_only
# ---------------------------------------------------------------------------
# crashes

@pytest.mark.variants("ext4")
@pytest.mark.parametrize("form", ORPHAN_FORMS)
def test_kill9_with_unlinked_open_files(fs_unmounted, form):
    fs = fs_unmounted
    sb0 = sb_counts(fs.image)
    fs.mount()
    b0, i0 = bfree(fs.mnt), ffree(fs.mnt)
    pid = hold_unlinked(fs.mnt, ["a", "b", "c"], [4 << 20, 100000, 1])
    assert bfree(fs.mnt) < b0 - (4 << 20) // fs.blocksize
    crash_daemon(fs, holders=[pid])
    first, present = orphan_state(fs.image)
    if form == "chain":
        assert first, "no orphan chain on disk after kill -9"
    else:
        assert present, "orphan_present not set after kill -9"
    pos = log_pos(fs)
    fs.mount()
    out = log_since(fs, pos)
    assert re.search(r"orphan cleanup: 3 inodes freed", out), \
        "the mount after the crash did not report the cleanup:\n" + out
    got = wait_counts(fs.mnt, b0, i0, timeout=0)
    assert got == (b0, i0), "free counts after cleanup %s, before %s" % (
        got, (b0, i0))
    assert os.listdir(fs.mnt) == ["lost+found"]
    fs.unmount()
    assert_fsck_clean(fs.image)
    assert sb_counts(fs.image) == sb0
    assert orphan_state(fs.image) == (0, False)


@pytest.mark.fuse_only
@pytest.mark.variants("ext2")
def test_kill9_with_unlinked_open_files_no_journal(fs_unmounted):
    """ext2 has no journal; the orphan chain still lets the next mount
    free what the crash left."""
    test_kill9_with_unlinked_open_files(fs_unmounted, "chain")


def kernel_orphan_image(path, mkfs_args, flag, n=3):
    """A kernel ext4 mount with n unlinked-open files, shut down with the
    given EXT4_IOC_SHUTDOWN flag after the unlinks were committed (fsync
    of an open file commits the running transaction).  Returns the image's
    free counts as they were before the files were created."""
    J.mkfs(path, 64, *mkfs_args)
    before = sb_counts(path)
    with J.mounted(path, "commit=60") as mnt:
        fds = []
        try:
            for i in range(n):
                fd = os.open(mnt / ("k%d" % i), os.O_RDWR | os.O_CREAT, 0o644)
                fds.append(fd)
                os.write(fd, pattern(1 << 20, i))
                os.fsync(fd)
            J.run(["sync"])
            for i in range(n):
                os.unlink(mnt / ("k%d" % i))
            os.fsync(fds[0])
            J.shutdown(mnt, flag)
        finally:
            for fd in fds:
                os.close(fd)
    return before


@pytest.mark.fuse_only
@pytest.mark.parametrize("flag", [J.GOING_FLAGS_LOGFLUSH,
                                  J.GOING_FLAGS_NOLOGFLUSH],
                         ids=["logflush", "nologflush"])
@pytest.mark.parametrize("form", ["chain", "ofile"])
def test_kernel_orphans_cleaned(fs_factory, workdir, form, flag):
    img = os.path.join(workdir, "k.img")
    feat = "^orphan_file" if form == "chain" else "orphan_file"
    before = kernel_orphan_image(img, ["-t", "ext4", "-b", "4096", "-O",
                                       feat], flag)
    assert J.needs_recovery(img), "the shutdown left nothing to replay"
    # Oracle: e2fsck -fy on a copy replays the journal and frees the
    # orphans.
    ref = img + ".e2fsck"
    shutil.copy(img, ref)
    p = f4test.run(["e2fsck", "-fy", ref], check=False)
    assert p.returncode in (0, 1), p.stdout + p.stderr
    ref_counts = sb_counts(ref)
    assert ref_counts == before, "oracle: %s, before the files: %s" % (
        ref_counts, before)
    os.unlink(ref)

    fs = fs_factory("ext4", image=img, name="k", mount=False)
    fs.mount()
    out = f4test.read_log(fs.log)
    assert "recovering journal" in out and "journal recovered" in out, out
    assert "orphan cleanup: 3 inodes freed" in out, out
    assert os.listdir(fs.mnt) == ["lost+found"]
    fs.unmount()
    assert not J.needs_recovery(img)
    assert_fsck_clean(img)
    assert sb_counts(img) == before
    assert orphan_state(img) == (0, False)


@pytest.mark.fuse_only
@pytest.mark.parametrize("form", ["chain", "ofile"])
def test_kernel_orphans_on_read_only_mount(fs_factory, workdir, form):
    """A read-only mount of an image with orphans (on a writable device):
    kernel ext4 replays the journal and also cleans the orphans up ("orphan
    cleanup on readonly fs"), so statfs shows the space free.  fuse4fs must
    show the same."""
    img = os.path.join(workdir, "k.img")
    feat = "^orphan_file" if form == "chain" else "orphan_file"
    kernel_orphan_image(img, ["-t", "ext4", "-b", "4096", "-O", feat],
                        J.GOING_FLAGS_LOGFLUSH)
    kimg = img + ".kernel"
    shutil.copy(img, kimg)
    kmnt = os.path.join(workdir, "kernel.mnt")
    os.mkdir(kmnt)
    dev = f4test.run(["losetup", "-f", "--show", kimg]).stdout.strip()
    try:
        f4test.run(["mount", "-t", "ext4", "-o", "ro", dev, kmnt])
        try:
            st = os.statvfs(kmnt)
            kernel = (st.f_bfree, st.f_ffree)
        finally:
            f4test.run(["umount", kmnt])
    finally:
        f4test.run(["losetup", "-d", dev], check=False)
    kernel_after = orphan_state(kimg)
    os.unlink(kimg)

    fs = fs_factory("ext4", image=img, name="k", mount=False, opts=["ro"])
    fs.mount()
    try:
        st = os.statvfs(fs.mnt)
        ours = (st.f_bfree, st.f_ffree)
        fs.unmount()
        ours_after = orphan_state(img)
        assert (ours, ours_after) == (kernel, kernel_after), (
            "read-only mount of an image with orphans: fuse4fs free "
            "blocks/inodes %s, orphans left on disk %s; kernel %s, %s\n%s" % (
                ours, ours_after, kernel, kernel_after,
                f4test.read_log(fs.log)))
    finally:
        if not fs.mounted:
            fs.mount(opts=[])       # clean up for the final e2fsck


# ---------------------------------------------------------------------------
# removed directories and O_PATH descriptors

def _cwd_scenario(mnt, reuse):
    """A child makes MNT/d its working directory; the parent removes it
    and, with reuse, creates 20 files (an allocator that takes free inodes
    at once would hand out d's inode); then the child looks at '.'.
    Returns what the child saw, and the free inode count with d."""
    os.mkdir(os.path.join(mnt, "d"))
    i0 = ffree(mnt)
    r, w = os.pipe()
    r2, w2 = os.pipe()
    r3, w3 = os.pipe()
    pid = os.fork()
    if pid == 0:
        out = []
        try:
            os.chdir(os.path.join(mnt, "d"))
            os.write(w, b"k")
            os.read(r2, 1)
            for what, fn in (
                    ("stat", lambda: os.stat(".")),
                    ("listdir", lambda: sorted(os.listdir("."))),
                    ("create", lambda: os.close(os.open(
                        "new", os.O_CREAT | os.O_WRONLY, 0o644))),
                    ("mkdir", lambda: os.mkdir("sub")),
                    ("stat-dotdot", lambda: os.stat("..").st_ino),
                    ("stat-again", lambda: os.stat("."))):
                try:
                    v = fn()
                    if isinstance(v, os.stat_result):
                        v = (stat.filemode(v.st_mode), v.st_nlink)
                    out.append((what, "ok", v))
                except OSError as e:
                    out.append((what, errno.errorcode.get(e.errno, e.errno)))
        except BaseException as e:      # noqa: BLE001
            out.append(("error", repr(e)))
        os.write(w3, repr(out).encode())
        os._exit(0)
    os.read(r, 1)
    os.rmdir(os.path.join(mnt, "d"))
    for i in range(20 if reuse else 0):
        f4test.write_file(os.path.join(mnt, "n%02d" % i), b"x")
    os.write(w2, b"k")
    os.close(w3)
    seen = b""
    while True:
        b = os.read(r3, 65536)
        if not b:
            break
        seen += b
    os.waitpid(pid, 0)
    return seen.decode(), i0


@pytest.mark.fuse_only
@pytest.mark.variants("ext4")
@pytest.mark.parametrize("reuse", [False, True],
                         ids=["alone", "then-creates"])
def test_rmdir_of_a_working_directory(fs, kernel_ext4, reuse):
    results = {}
    for f in (fs, kernel_ext4):
        seen, i0 = _cwd_scenario(f.mnt, reuse)
        for i in range(20 if reuse else 0):
            os.unlink(f.path("n%02d" % i))
        # once nobody uses the directory its inode is free again
        got = wait_counts(f.mnt, bfree(f.mnt), i0 + 1)
        results[f.driver] = (seen, got[1] - i0)
    assert results["fuse4fs"] == results["kernel"], (
        "fuse4fs: %r\nkernel:  %r" % (results["fuse4fs"], results["kernel"]))
    # what the kernel gives, spelled out
    assert "('stat', 'ok', ('drwxr-xr-x', 0))" in results["kernel"][0]


@pytest.mark.fuse_only
@pytest.mark.variants("ext4")
def test_opath_descriptor_keeps_unlinked_inode(fs, kernel_ext4):
    """An O_PATH descriptor opens nothing in the file system (no FUSE
    OPEN), yet the kernel keeps the inode: fstat() must keep describing
    the unlinked file even after new files are created."""
    results = {}
    for f in (fs, kernel_ext4):
        p = f.path("f")
        f4test.write_file(p, b"hello")
        fd = os.open(p, os.O_PATH)
        try:
            os.unlink(p)
            for i in range(10):
                os.mkdir(f.path("new%d" % i))
            try:
                st = os.fstat(fd)
                results[f.driver] = (stat.filemode(st.st_mode), st.st_nlink,
                                     st.st_size)
            except OSError as e:
                results[f.driver] = errno.errorcode[e.errno]
        finally:
            os.close(fd)
        for i in range(10):
            os.rmdir(f.path("new%d" % i))
    assert results["fuse4fs"] == results["kernel"], results
    assert results["kernel"] == ("-rw-r--r--", 0, 5)


# ---------------------------------------------------------------------------
# memory over a big tree

TREE_DIRS = 2000
TREE_FILES = 100            # per directory: 200,000 files


@pytest.fixture(scope="module")
def big_tree_image(tmp_path_factory):
    """A 1 GiB ext4 image holding 2000 directories of 100 empty files,
    made with mke2fs -d from a tree in tmpfs (much faster than creating
    200,000 files through any mount)."""
    if os.path.isdir("/dev/shm"):
        src = tempfile.mkdtemp(prefix="f4tree-", dir="/dev/shm")
    else:
        src = str(tmp_path_factory.mktemp("bigtree"))
    try:
        for d in range(TREE_DIRS):
            dp = os.path.join(src, "d%04d" % d)
            os.mkdir(dp)
            for i in range(TREE_FILES):
                os.close(os.open(os.path.join(dp, "file-%03d" % i),
                                 os.O_CREAT | os.O_WRONLY, 0o644))
        img = str(tmp_path_factory.mktemp("bigimg") / "big.img")
        with open(img, "wb") as f:
            f.truncate(1 << 30)
        f4test.run(["mke2fs", "-q", "-F", "-t", "ext4", "-b", "4096", "-I",
                    "256", "-N", str(TREE_DIRS * (TREE_FILES + 1) + 10000),
                    "-d", src, img])
    finally:
        shutil.rmtree(src, ignore_errors=True)
    yield img
    os.unlink(img)


def _walk(mnt):
    """find(1) stats every entry; returns how many it listed."""
    p = subprocess.run(["find", mnt, "-printf", "%i %s\n"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.returncode == 0, p.stderr[-2000:]
    return p.stdout.count(b"\n")


def _hwm_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM for pid %d" % pid)


def _daemon_pid(fs):
    pid = fs.proc.pid
    with open("/proc/%d/comm" % pid) as f:
        assert f.read().strip() == "fuse4fs"
    # cross-check with pgrep: the daemon serving this image
    p = f4test.run(["pgrep", "-f", "fuse4fs.* %s " % re.escape(fs.image)],
                   check=False)
    assert str(pid) in p.stdout.split(), (pid, p.stdout)
    return pid


def _copy_image(src, workdir):
    dst = os.path.join(workdir, "big.img")
    f4test.run(["cp", "--sparse=always", src, dst])
    return dst


@pytest.mark.fuse_only
@pytest.mark.timeout(400)
def test_walk_200k_files_memory_bounded(big_tree_image, fs_factory, workdir):
    """Walk (stat every name) 200,000 files three times with the default
    options; the daemon's peak RSS must stay within cache_size (64 MiB by
    default) + 64 MiB, and the third walk must not raise it further (no
    growth per walk)."""
    img = _copy_image(big_tree_image, workdir)
    fs = fs_factory("ext4", image=img, name="big", mount=False)
    fs.mount()
    pid = _daemon_pid(fs)
    expected = TREE_DIRS * (TREE_FILES + 1) + 2     # + root, lost+found
    hwm = []
    for _ in range(3):
        assert _walk(fs.mnt) == expected
        hwm.append(_hwm_kib(pid))
    print("\nfuse4fs peak RSS (VmHWM) after each walk over %d entries: %s "
          "KiB" % (expected, hwm))
    fs.unmount()
    assert_fsck_clean(img)
    limit = (64 + 64) * 1024
    assert hwm[2] <= hwm[1] + 8 * 1024, \
        "RSS still grows with every walk: %s KiB" % hwm
    assert max(hwm) <= limit, (
        "peak RSS %d KiB over 200,000 files exceeds cache_size + 64 MiB = "
        "%d KiB (per walk: %s)" % (max(hwm), limit, hwm))


@pytest.mark.fuse_only
@pytest.mark.timeout(400)
def test_block_cache_honours_cache_size(big_tree_image, fs_factory):
    """The block cache's share of the RSS: the same walk over 50,000 of
    the files (some 15 MiB of inode tables and directories) with
    cache_size=1m and with cache_size=8m; the difference in peak RSS is
    what the cache holds, and may exceed 8 MiB only by its bookkeeping
    (25%)."""
    peaks = {}
    part = ["d%04d" % d for d in range(TREE_DIRS // 4)]
    for cs in ("1m", "8m"):
        fs = fs_factory("ext4", image=big_tree_image, name="c" + cs,
                        mount=False, opts=["ro", "cache_size=" + cs])
        fs.mount()
        pid = _daemon_pid(fs)
        for _ in range(2):
            p = subprocess.run(["find"] + part + ["-printf", "%i %s\n"],
                               cwd=fs.mnt, stdout=subprocess.PIPE)
            assert p.returncode == 0
            assert p.stdout.count(b"\n") == len(part) * (TREE_FILES + 1)
        peaks[cs] = _hwm_kib(pid)
        fs.unmount()
    extra = peaks["8m"] - peaks["1m"]
    print("\nfuse4fs peak RSS: cache_size=1m %d KiB, cache_size=8m %d KiB: "
          "the cache costs %d KiB" % (peaks["1m"], peaks["8m"], extra))
    assert extra <= 8 * 1024 * 5 // 4, (
        "cache_size=8m made the daemon %d KiB bigger than cache_size=1m "
        "(%s)" % (extra, peaks))
