"""The request loop: spinning (-o spin=USEC) and several worker threads.

After a request a worker polls /dev/fuse for up to spin_us before it goes
to sleep.  These tests hold the two promises the manual makes for it:

- an idle mount sleeps: after a burst of requests the daemon uses next to
  no CPU time, with one thread or several, and with a long spin window;
- requests are served the same with spinning on or off and with several
  workers taking turns at polling: a mixed workload from two processes
  gives the expected tree, and e2fsck -fn is clean (the fixture checks).
"""

import os
import subprocess
import time

import pytest

from f4test import pattern, read_file, write_file

pytestmark = pytest.mark.fuse_only

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """User + system CPU time of a process, all its threads."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is the state (field 3): utime and stime are fields 14, 15
    return (int(fields[11]) + int(fields[12])) / TICK


def burst(root, n=300):
    os.mkdir(os.path.join(root, "b"))
    for i in range(n):
        p = os.path.join(root, "b", "f%d" % i)
        write_file(p, b"x" * 100)
        os.stat(p)
    for i in range(n):
        os.unlink(os.path.join(root, "b", "f%d" % i))
    os.rmdir(os.path.join(root, "b"))


@pytest.mark.variants("ext4")
@pytest.mark.parametrize("mount_opts", [(), ("threads=3",),
                                        ("spin=10000", "threads=2")],
                         ids=["default", "threads3", "spin10ms"])
def test_idle_mount_sleeps(fs):
    pid = fs.proc.pid
    burst(fs.mnt)
    time.sleep(0.3)                 # past any spin window
    before = cpu_seconds(pid)
    time.sleep(2.0)
    used = cpu_seconds(pid) - before
    # A worker that kept polling would use about 2 s here.  The flusher
    # thread wakes a few times a second and does next to nothing.
    assert used < 0.2, "idle daemon used %.2f s of CPU in 2 s" % used


@pytest.mark.variants("ext4", "ext2", "ext4-1k")
@pytest.mark.parametrize("mount_opts", [("spin=0",), ("threads=4",),
                                        ("spin=1000", "threads=2")],
                         ids=["nospin", "threads4", "spin1ms"])
def test_requests_from_two_processes(fs):
    """Two writers at once: every file has its own contents afterwards."""
    script = r"""
import os, sys
root, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
d = os.path.join(root, tag)
os.mkdir(d)
for i in range(n):
    p = os.path.join(d, "f%d" % i)
    with open(p, "wb") as f:
        f.write((tag + str(i)).encode() * (i % 50 + 1))
    os.stat(p)
    if i % 3 == 0:
        os.rename(p, p + ".r")
    if i % 7 == 0:
        os.link(os.path.join(d, "f%d" % i + (".r" if i % 3 == 0 else "")),
                os.path.join(d, "l%d" % i))
for i in range(0, n, 5):
    os.unlink(os.path.join(d, "f%d" % i + (".r" if i % 3 == 0 else "")))
"""
    n = 400
    procs = [subprocess.Popen(["python3", "-c", script, fs.mnt, tag, str(n)])
             for tag in ("a", "b")]
    for p in procs:
        assert p.wait(120) == 0
    for tag in ("a", "b"):
        d = fs.path(tag)
        want = set()
        for i in range(n):
            name = "f%d" % i + (".r" if i % 3 == 0 else "")
            if i % 5:
                want.add(name)
            if i % 7 == 0:
                want.add("l%d" % i)
        assert set(os.listdir(d)) == want
        for name in want:
            i = int(name[1:].split(".")[0])
            data = read_file(os.path.join(d, name))
            assert data == (tag + str(i)).encode() * (i % 50 + 1), name
            linked = i % 7 == 0 and i % 5 != 0
            assert os.lstat(os.path.join(d, name)).st_nlink == \
                (2 if linked else 1), name
    # big data through the same loop
    blob = pattern(3 << 20, seed=7)
    write_file(fs.path("blob"), blob)
    fs.remount()
    assert read_file(fs.path("blob")) == blob


def _mount_devnum(mnt):
    with open("/proc/self/mountinfo") as f:
        found = None
        for line in f:
            fields = line.split()
            if fields[4] == mnt:
                found = fields[2]
    assert found, "%s not in mountinfo" % mnt
    return found


def _holder_readahead_kb(path):
    st = os.stat(path)
    dev = "%d:%d" % (os.major(st.st_dev), os.minor(st.st_dev))
    for p in ("/sys/dev/block/%s/queue/read_ahead_kb" % dev,
              "/sys/dev/block/%s/../queue/read_ahead_kb" % dev):
        try:
            with open(p) as f:
                return int(f.read())
        except OSError:
            continue
    return 2048                     # fuse4fs's fallback: no block device


@pytest.mark.variants("ext4", "ext4-1k", "ext2")
@pytest.mark.parametrize("mount_opts", [(), ("nofuseblk",)],
                         ids=["fuseblk", "plain"])
def test_readahead_window(fs):
    """Root's mount reads ahead as far as the disk under the image does
    (the kernel's default for a FUSE mount is 128 KiB), and sequential
    reads through that window, across holes and unwritten extents, return
    exactly what was written."""
    if os.geteuid() != 0:
        pytest.skip("only root may set a mount's readahead")
    dev = _mount_devnum(fs.mnt)
    paths = ["/sys/class/bdi/%s-fuseblk/read_ahead_kb" % dev,
             "/sys/class/bdi/%s/read_ahead_kb" % dev]
    have = None
    for p in paths:
        if os.path.exists(p):
            with open(p) as f:
                have = int(f.read())
            break
    assert have is not None, "no bdi for %s (%s)" % (fs.mnt, dev)
    want = max(_holder_readahead_kb(fs.image), 128)
    assert have >= want, "readahead %d KiB, the disk has %d" % (have, want)

    mib = 1 << 20
    blob = pattern(24 * mib, seed=3)
    with open(fs.path("seq"), "wb") as f:
        f.write(blob[:8 * mib])
        f.seek(12 * mib)                     # a hole of 4 MiB
        f.write(blob[12 * mib:20 * mib])
    fd = os.open(fs.path("seq"), os.O_RDWR)
    try:
        os.posix_fallocate(fd, 20 * mib, 4 * mib)   # unwritten extent
    finally:
        os.close(fd)
    expect = blob[:8 * mib] + bytes(4 * mib) + blob[12 * mib:20 * mib] + \
        bytes(4 * mib)
    fs.remount()                             # cold: the reads reach us
    for bs in (mib, 128 << 10, 4096 * 3 + 1):
        got = bytearray()
        with open(fs.path("seq"), "rb") as f:
            while True:
                b = f.read(bs)
                if not b:
                    break
                got += b
        assert bytes(got) == expect, "read in pieces of %d differs" % bs
