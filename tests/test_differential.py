"""Differential test: one seeded sequence of a few hundred namespace and
data operations runs on the file system under test and on a fresh
kernel-ext4 mount of the same variant.  Every operation's outcome (success
or errno, bytes read) must be the same, and so must the final trees:
names, types, modes, owners, sizes, link counts, data checksums, symlink
targets, device numbers and which names share an inode.

F4_SEED=<n> replays one more seed on top of the fixed ones.
"""

import errno
import hashlib
import os
import random
import stat

import pytest

import f4test
from f4test import RENAME_EXCHANGE, RENAME_NOREPLACE, pattern, renameat2

DIRS = ["", "d0", "d1", "d0/d2", "d1/d3", "d0/d2/d4"]
NAMES = ["a", "b", "c", "e", "g", "h", "d0", "d1", "d2", "N" * 200]
SLOTS = 3


def gen_ops(seed, count):
    """A list of operations; paths relative to the work directory.  The
    generator does not track state: some operations fail, and the errno
    must then match too."""
    rnd = random.Random(seed)
    recent = []     # names recently created: likely (not surely) existing

    def path(new=False):
        if recent and not new and rnd.random() < 0.6:
            return rnd.choice(recent[-12:])
        d = rnd.choice(DIRS)
        n = rnd.choice(NAMES)
        p = os.path.join(d, n) if d else n
        if new:
            recent.append(p)
        return p

    ops = [("mkdir", d, 0o755) for d in DIRS[1:]]
    weights = [
        ("create", 12), ("mkdir", 5), ("rmdir", 3), ("unlink", 6),
        ("link", 6), ("symlink", 4), ("rename", 10), ("exchange", 3),
        ("noreplace", 3), ("truncate", 7), ("write", 14), ("append", 4),
        ("chmod", 4), ("chown", 3), ("mkfifo", 1), ("mknod", 1),
        ("hold", 4), ("fdwrite", 5), ("release", 3), ("read", 6),
    ]
    kinds = [k for k, w in weights for _ in range(w)]
    for i in range(count):
        k = rnd.choice(kinds)
        if k == "create":
            ops.append((k, path(True), rnd.choice([0o644, 0o600, 0o755,
                                                   0o4755])))
        elif k == "mkdir":
            ops.append((k, path(True), rnd.choice([0o755, 0o700, 0o2775])))
        elif k in ("rmdir", "unlink"):
            ops.append((k, path()))
        elif k == "mkfifo":
            ops.append((k, path(True)))
        elif k == "mknod":
            ops.append((k, path(True), rnd.choice([(1, 3), (259, 7),
                                                   (300, 70000)])))
        elif k in ("link", "rename", "exchange", "noreplace"):
            src = path()
            ops.append((k, src, path(k != "exchange")))
        elif k == "symlink":
            target = rnd.choice(["a", "../b", "d0/c", "nonexistent",
                                 "x" * rnd.choice([10, 59, 60, 300, 1000])])
            ops.append((k, target, path(True)))
        elif k == "truncate":
            ops.append((k, path(), rnd.choice([0, 1, 100, 4095, 4096, 4097,
                                               70000, 1 << 20, 3 << 20])))
        elif k == "write":
            off = rnd.choice([0, 0, 1, 1000, 4095, 4096, 65535, 65536,
                              rnd.randrange(2 << 20), 5 << 20])
            ops.append((k, path(), off, rnd.choice([1, 10, 4096, 5000, 70000]),
                        rnd.randrange(1 << 30)))
        elif k == "append":
            ops.append((k, path(), rnd.choice([1, 100, 5000]),
                        rnd.randrange(1 << 30)))
        elif k == "chmod":
            ops.append((k, path(), rnd.choice([0o644, 0o000, 0o777, 0o6755,
                                               0o1777, 0o640])))
        elif k == "chown":
            ops.append((k, path(), rnd.choice([0, 1000, 65534, -1]),
                        rnd.choice([0, 100, 65534, -1])))
        elif k == "hold":
            ops.append((k, rnd.randrange(SLOTS), path()))
        elif k == "fdwrite":
            ops.append((k, rnd.randrange(SLOTS), rnd.choice([0, 100, 9000]),
                        rnd.choice([5, 5000]), rnd.randrange(1 << 30)))
        elif k == "release":
            ops.append((k, rnd.randrange(SLOTS)))
        elif k == "read":
            ops.append((k, path()))
    return ops


class Runner:
    def __init__(self, root):
        self.root = root
        self.slots = [None] * SLOTS

    def p(self, rel):
        return os.path.join(self.root, rel)

    def do(self, op):
        k = op[0]
        if k in ("write", "append", "hold", "read"):
            # Never open fifos (would block) or device nodes (they are real
            # devices on the kernel mount, nodev on FUSE mounts).
            try:
                st = os.stat(self.p(op[2] if k == "hold" else op[1]))
                if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
                    return ("special", stat.S_IFMT(st.st_mode))
            except OSError:
                pass
        if k == "create":
            fd = os.open(self.p(op[1]), os.O_CREAT | os.O_EXCL | os.O_WRONLY,
                         op[2])
            os.close(fd)
            os.chmod(self.p(op[1]), op[2])    # not subject to the umask
        elif k == "mkdir":
            os.mkdir(self.p(op[1]), op[2])
        elif k == "rmdir":
            os.rmdir(self.p(op[1]))
        elif k == "unlink":
            os.unlink(self.p(op[1]))
        elif k == "mkfifo":
            os.mkfifo(self.p(op[1]), 0o644)
        elif k == "mknod":
            os.mknod(self.p(op[1]), stat.S_IFCHR | 0o600, os.makedev(*op[2]))
        elif k == "link":
            os.link(self.p(op[1]), self.p(op[2]))
        elif k == "rename":
            os.rename(self.p(op[1]), self.p(op[2]))
        elif k == "exchange":
            renameat2(self.p(op[1]), self.p(op[2]), RENAME_EXCHANGE)
        elif k == "noreplace":
            renameat2(self.p(op[1]), self.p(op[2]), RENAME_NOREPLACE)
        elif k == "symlink":
            os.symlink(op[1], self.p(op[2]))
        elif k == "truncate":
            os.truncate(self.p(op[1]), op[2])
        elif k == "write":
            fd = os.open(self.p(op[1]), os.O_WRONLY)
            try:
                return os.pwrite(fd, pattern(op[3], op[4]), op[2])
            finally:
                os.close(fd)
        elif k == "append":
            fd = os.open(self.p(op[1]), os.O_WRONLY | os.O_APPEND)
            try:
                os.write(fd, pattern(op[2], op[3]))
                return os.fstat(fd).st_size
            finally:
                os.close(fd)
        elif k == "chmod":
            os.chmod(self.p(op[1]), op[2])
        elif k == "chown":
            os.lchown(self.p(op[1]), op[2], op[3])
        elif k == "hold":
            self.release(op[1])
            self.slots[op[1]] = os.open(self.p(op[2]), os.O_RDWR)
        elif k == "fdwrite":
            fd = self.slots[op[1]]
            if fd is None:
                raise OSError(errno.EBADF, "empty slot")
            os.pwrite(fd, pattern(op[3], op[4]), op[2])
            st = os.fstat(fd)
            return (st.st_size, st.st_nlink)
        elif k == "release":
            self.release(op[1])
        elif k == "read":
            with open(self.p(op[1]), "rb") as f:
                return hashlib.sha256(f.read()).hexdigest()
        else:
            raise ValueError(k)
        return None

    def release(self, slot):
        if self.slots[slot] is not None:
            os.close(self.slots[slot])
            self.slots[slot] = None

    def run(self, op):
        try:
            return ("ok", self.do(op))
        except OSError as e:
            return ("err", errno.errorcode.get(e.errno, e.errno))

    def close_all(self):
        for i in range(SLOTS):
            self.release(i)


SEEDS = [1, 2]
if os.environ.get("F4_SEED"):
    SEEDS.append(int(os.environ["F4_SEED"]))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.timeout(600)
def test_differential(fs, kernel_ext4, seed):
    ops = gen_ops(seed, 400)
    roots = []
    for f in (fs, kernel_ext4):
        os.mkdir(f.path("w"))
        roots.append(f.path("w"))
    a, b = Runner(roots[0]), Runner(roots[1])
    old = os.umask(0o022)
    try:
        outcomes = []
        for i, op in enumerate(ops):
            ra, rb = a.run(op), b.run(op)
            outcomes.append(ra[0])
            assert ra == rb, (
                "op #%d %r: %s gives %r, kernel ext4 gives %r" % (
                    i, op, fs.driver, ra, rb))
            if i % 100 == 99:
                d = f4test.diff_snapshots(f4test.snapshot(roots[0]),
                                          f4test.snapshot(roots[1]),
                                          (fs.driver, "kernel"))
                assert not d, "after op #%d:\n  %s" % (i, "\n  ".join(d[:40]))
    finally:
        os.umask(old)
        a.close_all()
        b.close_all()
    f4test.assert_trees_equal(roots[0], roots[1], (fs.driver, "kernel"))
    # and once more from disk
    fs.remount()
    kernel_ext4.remount()
    f4test.assert_trees_equal(fs.path("w"), kernel_ext4.path("w"),
                              (fs.driver, "kernel"))
    # the sequence must do real work, not fail all the way through
    assert outcomes.count("ok") >= len(ops) // 3, outcomes.count("ok")
