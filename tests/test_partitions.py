"""Whole-disk images (issue #9): -o partition=N and -o offset=BYTES.

An MBR disk made with sfdisk: three primary partitions (ext4, ext3, and
one left zeroed) and an extended partition with two logical ones, 5
(ext2) and 6 (ext4 with 1 KiB blocks); a GPT disk made with sgdisk with
three partitions (ext4, zeroed, ext2).  Each file system is made in place
with mke2fs -E offset=BYTES -d TREE, so every partition holds its own
files.

- `-o partition=N` mounts each and shows exactly that partition's tree;
  `-o offset=BYTES` mounts the same;
- a partition number that does not exist (9 on this disk, 7, 4 on a GPT
  disk with 3), the extended partition itself, or an image without a
  partition table give exit 2 and a clear message; 0 and 129 are usage
  errors (exit 1); a zeroed partition says it holds no ext2/3/4 file
  system; none of them writes anything;
- writes through a partition mount, up to ENOSPC, change no byte outside
  that partition; e2fsck -fn of each partition (a copy of its byte range)
  is clean;
- a file system bigger than its partition is refused before anything
  could be written past the partition's end.
"""

import contextlib
import errno
import hashlib
import json
import os
import struct
import subprocess

import pytest

import f4test
import journal_images as J
from f4test import pattern
from test_journal_mount import run_daemon

MiB = 1 << 20
EXIT_USAGE = 1
EXIT_OPEN = 2

pytestmark = pytest.mark.fuse_only

# MBR layout: (number, kind, size MiB); kind is an mke2fs -t type with a
# block size, "zero" for a partition left empty, or "extended"
MBR_LAYOUT = [
    (1, ("ext4", 4096), 24),
    (2, ("ext3", 1024), 16),
    (3, "zero", 8),
    (4, "extended", 40),
    (5, ("ext2", 4096), 16),
    (6, ("ext4", 1024), 16),
]
GPT_LAYOUT = [
    (1, ("ext4", 4096), 16),
    (2, "zero", 8),
    (3, ("ext2", 1024), 16),
]


# ---------------------------------------------------------------------------
# building disks

def partitions(image):
    """{number: (start byte, size in bytes)} as sfdisk reads the table."""
    p = f4test.run(["sfdisk", "-J", image])
    t = json.loads(p.stdout)["partitiontable"]
    ss = t.get("sectorsize", 512)
    out = {}
    for part in t["partitions"]:
        n = int(part["node"][len(image):])
        out[n] = (part["start"] * ss, part["size"] * ss)
    return out


def make_tree(root, n):
    os.makedirs(os.path.join(root, "sub", "deeper"))
    f4test.write_file(os.path.join(root, "whoami"),
                      ("partition %d\n" % n).encode())
    for i, size in enumerate([0, 1, 1000, 5000, 70000, 300000]):
        f4test.write_file(os.path.join(root, "sub", "f%d" % i),
                          pattern(size, n * 100 + i))
    f4test.write_file(os.path.join(root, "sub", "deeper", "x"),
                      pattern(12345, n))
    os.symlink("sub/f3", os.path.join(root, "link"))
    return root


def mkfs_at(image, start, size, kind, src):
    fstype, bs = kind
    f4test.run(["mke2fs", "-F", "-q", "-t", fstype, "-b", str(bs), "-I",
                "256", "-E", "offset=%d" % start, "-d", src, image,
                "%dk" % (size // 1024)])


def build_disk(workdir, label, layout, name):
    image = os.path.join(workdir, name)
    total = 2 + sum(s for n, k, s in layout)
    with open(image, "wb") as f:
        f.truncate((total + 2) * MiB)
    if label == "dos":
        lines = ["label: dos", "unit: sectors", ""]
        for n, kind, size in layout:
            t = "5" if kind == "extended" else "83"
            start = "start=2048, " if n == 1 else ""
            lines.append("%ssize=%dM, type=%s" % (start, size, t))
        f4test.run(["sfdisk", "-q", image], input="\n".join(lines) + "\n")
    else:
        argv = ["sgdisk", "-o"]
        for n, kind, size in layout:
            argv += ["-n", "%d:0:+%dM" % (n, size)]
        p = f4test.run(argv + [image], check=False)
        assert p.returncode == 0, p.stdout + p.stderr
    parts = partitions(image)
    trees = {}
    for n, kind, size in layout:
        if not isinstance(kind, tuple):
            continue
        src = make_tree(os.path.join(workdir, "%s-src%d" % (name, n)), n)
        mkfs_at(image, parts[n][0], parts[n][1], kind, src)
        trees[n] = src
    return image, parts, trees


@pytest.fixture
def mbr_disk(workdir):
    return build_disk(workdir, "dos", MBR_LAYOUT, "mbr.img")


@pytest.fixture
def gpt_disk(workdir):
    return build_disk(workdir, "gpt", GPT_LAYOUT, "gpt.img")


# ---------------------------------------------------------------------------
# helpers

@contextlib.contextmanager
def mounted(image, mnt, opts, log):
    """fuse4fs with the options; on leaving: umount, exit status 0."""
    os.makedirs(mnt, exist_ok=True)
    proc = f4test.spawn_daemon("fuse4fs", image, mnt, opts, log)
    try:
        f4test.wait_mounted(proc, mnt, log)
        yield mnt
        p = f4test.umount(mnt)
        assert p.returncode == 0, p.stderr
        rc = proc.wait(30)
        assert rc == 0, "exit %d:\n%s" % (rc, f4test.read_log(log))
    finally:
        if f4test.is_mounted(mnt):
            f4test.umount(mnt, lazy=True)
        if proc.poll() is None:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait()


def tree_of(root):
    snap = f4test.snapshot(root, ignore=("lost+found",))
    snap["entries"].pop(".", None)
    return snap


def assert_same_tree(mnt, src, what):
    d = f4test.diff_snapshots(tree_of(src), tree_of(mnt),
                              ("source", what))
    assert not d, "%s:\n%s" % (what, "\n".join(d[:30]))


def extract(image, start, size, out):
    with open(image, "rb") as f, open(out, "wb") as g:
        f.seek(start)
        left = size
        while left:
            b = f.read(min(left, 4 * MiB))
            assert b, "image too short"
            g.write(b)
            left -= len(b)
    return out


def fsck_partition(image, start, size, workdir, n):
    copy = extract(image, start, size,
                   os.path.join(workdir, "part%d.fsck.img" % n))
    try:
        J.assert_fsck_clean(copy)
    finally:
        os.unlink(copy)


def hash_range(image, start, end):
    h = hashlib.sha256()
    with open(image, "rb") as f:
        f.seek(start)
        left = end - start
        while left > 0:
            b = f.read(min(left, 4 * MiB))
            if not b:
                break
            h.update(b)
            left -= len(b)
    return h.hexdigest()


def outside_hashes(image, start, size):
    return (hash_range(image, 0, start),
            hash_range(image, start + size, os.path.getsize(image)))


# ---------------------------------------------------------------------------
# tests

def test_mbr_partitions(mbr_disk, workdir):
    image, parts, trees = mbr_disk
    table = f4test.run(["sfdisk", "-d", image]).stdout
    for n in sorted(trees):
        mnt = os.path.join(workdir, "p%d.mnt" % n)
        log = os.path.join(workdir, "p%d.log" % n)
        with mounted(image, mnt, ["partition=%d" % n], log):
            assert f4test.read_file(os.path.join(mnt, "whoami")) == \
                ("partition %d\n" % n).encode()
            assert_same_tree(mnt, trees[n], "partition %d" % n)
            st = os.statvfs(mnt)
            assert st.f_blocks * st.f_frsize <= parts[n][1]
    assert f4test.run(["sfdisk", "-d", image]).stdout == table
    for n in sorted(trees):
        fsck_partition(image, parts[n][0], parts[n][1], workdir, n)


def test_gpt_partitions(gpt_disk, workdir):
    image, parts, trees = gpt_disk
    assert sorted(parts) == [1, 2, 3]
    for n in sorted(trees):
        mnt = os.path.join(workdir, "g%d.mnt" % n)
        log = os.path.join(workdir, "g%d.log" % n)
        with mounted(image, mnt, ["partition=%d" % n], log):
            assert f4test.read_file(os.path.join(mnt, "whoami")) == \
                ("partition %d\n" % n).encode()
            assert_same_tree(mnt, trees[n], "GPT partition %d" % n)
            f4test.write_file(os.path.join(mnt, "added"), b"through gpt")
    p = f4test.run(["sgdisk", "-v", image], check=False)
    assert "No problems found" in p.stdout, p.stdout + p.stderr
    for n in sorted(trees):
        fsck_partition(image, parts[n][0], parts[n][1], workdir, n)
    mnt = os.path.join(workdir, "g.mnt")
    os.makedirs(mnt)
    before = J.file_sha(image)
    rc, out = run_daemon(image, mnt, ["partition=2"])
    assert rc == EXIT_OPEN and "not an ext2/ext3/ext4" in out, (rc, out)
    rc, out = run_daemon(image, mnt, ["partition=4"])
    assert rc == EXIT_OPEN and "no such partition" in out, (rc, out)
    assert J.file_sha(image) == before


@pytest.mark.parametrize("n", [1, 5, 6])
def test_offset_option_same_as_partition(mbr_disk, workdir, n):
    image, parts, trees = mbr_disk
    mnt = os.path.join(workdir, "o.mnt")
    log = os.path.join(workdir, "o.log")
    with mounted(image, mnt, ["offset=%d" % parts[n][0]], log):
        assert_same_tree(mnt, trees[n], "offset=%d" % parts[n][0])
    with mounted(image, mnt, ["partition=%d" % n], log):
        assert_same_tree(mnt, trees[n], "partition=%d" % n)


def test_bad_partitions(mbr_disk, workdir):
    image, parts, trees = mbr_disk
    plain = f4test.make_image(os.path.join(workdir, "plain.img"), "ext4",
                              32 * MiB)
    mnt = os.path.join(workdir, "bad.mnt")
    os.makedirs(mnt)
    sums = {image: J.file_sha(image), plain: J.file_sha(plain)}
    cases = [
        (image, "partition=0", EXIT_USAGE, ["partition"]),
        (image, "partition=129", EXIT_USAGE, ["partition"]),
        (image, "partition=-1", EXIT_USAGE, ["partition"]),
        (image, "partition=abc", EXIT_USAGE, ["partition"]),
        (image, "partition=7", EXIT_OPEN, ["no such partition"]),
        (image, "partition=9", EXIT_OPEN, ["no such partition"]),
        (image, "partition=4", EXIT_OPEN, ["extended"]),
        (image, "partition=3", EXIT_OPEN, ["not an ext2/ext3/ext4"]),
        (plain, "partition=1", EXIT_OPEN, ["no partition table"]),
    ]
    bad = []
    for img, opt, want_rc, words in cases:
        rc, out = run_daemon(img, mnt, [opt])
        if rc != want_rc or not all(w in out for w in words):
            bad.append("%s %s: exit %d (expected %d), output %r (expected "
                       "%r)" % (os.path.basename(img), opt, rc, want_rc,
                                out.strip(), words))
    assert not bad, "\n".join(bad)
    for img, s in sums.items():
        assert J.file_sha(img) == s, "%s changed" % img


def fill(mnt, rnd_seed):
    """Write until the file system is full, free some, write more, many
    small files and directories: every kind of block the allocator
    hands out, up to the last one."""
    written = {}
    i = 0
    while True:
        p = os.path.join(mnt, "fill%03d" % i)
        data = pattern(MiB, rnd_seed + i)
        try:
            f4test.write_file(p, data)
        except OSError as e:
            assert e.errno == errno.ENOSPC, e
            break
        written["fill%03d" % i] = data
        i += 1
        assert i < 1000
    for name in list(written)[::2]:
        os.unlink(os.path.join(mnt, name))
        del written[name]
    os.mkdir(os.path.join(mnt, "many"))
    for k in range(300):
        try:
            f4test.write_file(os.path.join(mnt, "many", "s%03d" % k),
                              pattern(k * 37, k))
        except OSError as e:
            assert e.errno == errno.ENOSPC, e
            break
        written["many/s%03d" % k] = pattern(k * 37, k)
    # the rest of the space, in a file written with holes
    p = os.path.join(mnt, "sparse")
    fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for off in range(0, 64 * MiB, 3 * 65536):
            try:
                os.pwrite(fd, b"z" * 65536, off)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
                break
    finally:
        os.close(fd)
    return written


@pytest.mark.parametrize("disk,n", [("mbr", 2), ("mbr", 6), ("mbr", 5),
                                    ("gpt", 3)])
def test_partition_writes_stay_inside(request, workdir, disk, n):
    image, parts, trees = request.getfixturevalue(disk + "_disk")
    start, size = parts[n]
    before = outside_hashes(image, start, size)
    others = {k: hash_range(image, v[0], v[0] + v[1])
              for k, v in parts.items() if k != n}
    mnt = os.path.join(workdir, "w.mnt")
    log = os.path.join(workdir, "w.log")
    with mounted(image, mnt, ["partition=%d" % n], log):
        written = fill(mnt, n * 1000)
        assert os.statvfs(mnt).f_bavail < 16
    assert outside_hashes(image, start, size) == before, \
        "writing to partition %d changed bytes outside it" % n
    for k, v in parts.items():
        if k == n or (disk == "mbr" and k == 4 and
                      v[0] <= start < v[0] + v[1]):
            continue
        assert hash_range(image, v[0], v[0] + v[1]) == others[k], \
            "partition %d changed" % k
    fsck_partition(image, start, size, workdir, n)
    with mounted(image, mnt, ["partition=%d" % n, "ro"], log):
        for name, data in written.items():
            assert f4test.read_file(os.path.join(mnt, name)) == data, name
        assert f4test.read_file(os.path.join(mnt, "whoami")) == \
            ("partition %d\n" % n).encode()


def test_file_system_bigger_than_partition_refused(mbr_disk, workdir):
    """mke2fs told a size 4 MiB past partition 3's end: mounting
    partition 3 must be refused, or writes could land in partition 4."""
    image, parts, trees = mbr_disk
    start, size = parts[3]
    src = make_tree(os.path.join(workdir, "big-src"), 3)
    f4test.run(["mke2fs", "-F", "-q", "-t", "ext4", "-b", "1024", "-E",
                "offset=%d" % start, "-d", src, image,
                "%dk" % ((size + 4 * MiB) // 1024)])
    mnt = os.path.join(workdir, "big.mnt")
    os.makedirs(mnt)
    before = J.file_sha(image)
    for opts in (["partition=3"], ["partition=3", "ro"]):
        rc, out = run_daemon(image, mnt, opts)
        assert rc == EXIT_OPEN, (opts, rc, out)
        assert "blocks but" in out or "too small" in out or \
            "truncated" in out, out
    assert J.file_sha(image) == before
    # with offset= alone there is no partition to respect: it mounts
    log = os.path.join(workdir, "big.log")
    with mounted(image, mnt, ["offset=%d" % start, "ro"], log):
        assert f4test.read_file(os.path.join(mnt, "whoami")) == \
            b"partition 3\n"


def journal_grows_past(fs_img, bs, new_blocks, target, fill):
    """Give fs_img a journal (needs_recovery set) whose logged primary
    superblock says the file system has new_blocks blocks, and which logs
    a copy of block target (past the real end) holding fill."""
    with open(fs_img, "rb") as f:
        sb0 = bytearray(f.read(bs))
    sbo = 1024 if bs > 1024 else 0          # the superblock in its block
    struct.pack_into("<I", sb0, sbo + 0x04, new_blocks)     # s_blocks_count
    ro_compat = struct.unpack_from("<I", sb0, sbo + 0x64)[0]
    if ro_compat & 0x400:                   # metadata_csum
        struct.pack_into("<I", sb0, sbo + 0x3FC, J.crc32c(
            0xFFFFFFFF, bytes(sb0[sbo:sbo + 0x3FC])))
    w = J.JournalWriter(fs_img, csum=3)
    w.transaction([(0 if bs > 1024 else 1, bytes(sb0)), (target, fill)])
    w.write()


@pytest.mark.parametrize("how", ["partition", "offset"])
def test_journal_replay_stays_inside(workdir, how):
    """Issue 15 item 3: a superblock copy in the journal must not raise
    the limit on where the replay writes.  Partition 1's file system logs
    a superblock that claims 3 times its size and a block past the
    partition's end (in partition 2); mounted with -o ro,partition=1 the
    block landed in partition 2.  With offset= alone the bound is the end
    of the image, and the logged block lies past it.  The mount must be
    refused, with nothing written anywhere."""
    bs = 4096
    image = os.path.join(workdir, "disk.img")
    with open(image, "wb") as f:
        f.truncate(36 * MiB)
    f4test.run(["sfdisk", "-q", image], input="label: dos\nunit: sectors\n\n"
               "start=2048, size=16M, type=83\nsize=16M, type=83\n")
    parts = partitions(image)
    start, size = parts[1]
    p2start, p2size = parts[2]
    fs_img = os.path.join(workdir, "p1.img")
    J.mkfs(fs_img, size // MiB, "-t", "ext4", "-b", str(bs), "-J", "size=4")
    fs_blocks = size // bs
    if how == "partition":
        target = (p2start - start) // bs + 5           # inside partition 2
        opts = ["ro", "partition=1"]
    else:
        target = (os.path.getsize(image) - start) // bs + 3   # past the end
        opts = ["ro", "offset=%d" % start]
    journal_grows_past(fs_img, bs, fs_blocks * 3, target,
                       pattern(bs, "intruder"))
    with open(fs_img, "rb") as f, open(image, "r+b") as g:
        g.seek(start)
        g.write(f.read())
    with open(image, "r+b") as g:          # partition 2: recognizable
        g.seek(p2start)
        g.write(pattern(p2size, "partition two"))
    before, length = J.file_sha(image), os.path.getsize(image)
    mnt = os.path.join(workdir, "mnt")
    os.makedirs(mnt)
    rc, out = run_daemon(image, mnt, opts)
    assert os.path.getsize(image) == length, "the image grew:\n" + out
    assert J.file_sha(image) == before, "the replay wrote:\n" + out
    assert rc == EXIT_OPEN, (rc, out)
    assert "outside the file system" in out, out
