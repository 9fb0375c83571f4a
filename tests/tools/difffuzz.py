#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""difffuzz: a differential namespace and permission fuzzer for fuse4fs.

One seeded random sequence of namespace, permission and attribute
operations runs, op by op, on two copies of the same starting image: one
mounted by fuse4fs (with allow_other and one of the MOUNT_VARIANTS below),
the other by the kernel's ext4 (mount -o loop).  Each operation runs in a
forked child as one of several users (uid, gid and supplementary groups,
one of them with more than 64 groups) and is done on both mounts; its
results (errno included, bytes read, the output of programs run) must be
equal.  Every --check-every operations and at the end the two trees are
compared: names, types, modes, owners, link counts, sizes, data, symlink
targets, device numbers, hard-link groups, extended attributes and the
mtimes that were set explicitly (those before 2017, so deterministic).
At the end both images must pass e2fsck -fn.

A difference is a failure unless DOCUMENTED_DIFFERENCES or
TREE_DIFFERENCES (below; --list-differences prints them with their
reasons) lists it.  KNOWN_DEFECTS names the defects of issue 15 (and the
ones this tool found) that a build may still have: a failure says which
one it matches, and with --known-ok such a failure ends its sequence
(counted) instead of failing the run.
On failure the tool prints the seed and the failing operation, then
reduces the sequence (delta debugging: replays subsets on fresh copies of
the starting image) and prints the shortest sequence it found that still
fails the same way; --save writes it as JSON for --replay.

Examples:
  difffuzz.py --seeds 1-20 --ops 400 --mount-variants own,dp,wb,dpwb
  difffuzz.py --seeds 7 --mount-variants own --ops 2000 --no-reduce
  difffuzz.py --replay /tmp/dfz-fail.json
  difffuzz.py --seeds 1-100 --known-ok      # known issue-15 defects end a
                                            # sequence instead of failing

Needs root, /dev/fuse, a loop device and the fuse4fs binary of this tree
(or F4_BIN).  Exit status: 0 all sequences passed, 1 a failure, 2 usage.
"""

import argparse
import errno
import json
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import traceback
import pickle

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import f4test  # noqa: E402

# ---------------------------------------------------------------------------
# configuration

# fuse4fs mount options per mount variant; the kernel side is always a
# plain loop mount (dev, suid, exec, acl: ext4's defaults).  "own" and
# "wb" leave the permission checks to fuse4fs on builds where allow_other
# doesn't imply default_permissions (before issue 15 item 16's fix); on
# later builds the mount shows default_permissions and they are judged as
# "dp" and "dpwb" (the documented differences and known defects of the
# mode fuse4fs checks itself no longer apply).
MOUNT_VARIANTS = {
    "own": ["allow_other", "suid", "dev"],
    "dp": ["allow_other", "default_permissions", "suid", "dev"],
    "wb": ["allow_other", "suid", "dev", "writeback_cache"],
    "dpwb": ["allow_other", "default_permissions", "suid", "dev",
             "writeback_cache"],
}

# Callers: name -> (uid, gid, supplementary groups).  "many" has 70
# supplementary groups; the kernel keeps them sorted, and the interesting
# one (1100, the group of some files) sorts last, 70th.
USERS = {
    "root": (0, 0, []),
    "u1": (1001, 1001, []),
    "u2": (1002, 1002, [1001]),
    "u3": (1003, 1003, [1100, 1101]),
    "many": (1004, 1004, list(range(1020, 1089)) + [1100]),
}
USER_WEIGHTS = [("root", 25), ("u1", 18), ("u2", 17), ("u3", 15),
                ("many", 25)]
UIDS = [0, 1001, 1002, 1003, 1004]
GIDS = [0, 1001, 1002, 1003, 1100, 1101, 1030]

DIRS = ["", "d0", "d1", "t", "d0/s", "big0", "big1", "big0/sub"]
NESTED_DIRS = ["d0/s", "big0/sub", "d1/e", "t/e", "d0/s/e"]
NAMES = ["a", "b", "c", "e", "prog", "sh", "fifo", "null"]
# Names of the starting tree (see populate) that ops pick often.
START_FILES = ["d0/a", "d1/a", "t/a", "d0/g", "t/g",
               "d0/prog", "d1/prog", "t/prog",
               "d0/sh", "d1/sh", "d0/fifo", "d1/fifo", "d0/null",
               "big0/entry0000", "big0/entry0001", "big1/entry0002",
               "big1/entry0003"]
BIG_DIRS = ("big0", "big1")
BIG_ENTRIES = 400           # 2+ blocks of 4 KiB: a hashed (htree) directory
XATTRS = ["user.a", "user.b", "trusted.t"]
MODES = [0o644, 0o600, 0o755, 0o777, 0o744, 0o604, 0o640, 0o060, 0o044,
         0o000, 0o711, 0o4755, 0o2755, 0o6777, 0o2777, 0o1777, 0o3777,
         0o2070, 0o4744]
EXPLICIT_TIME_BEFORE = 1500000000   # explicit times go below this

OPEN_FLAGS = {
    "r": os.O_RDONLY, "w": os.O_WRONLY, "rw": os.O_RDWR,
    "wc": os.O_WRONLY | os.O_CREAT,
    "wcx": os.O_WRONLY | os.O_CREAT | os.O_EXCL,
    "rwcx": os.O_RDWR | os.O_CREAT | os.O_EXCL,
    "wt": os.O_WRONLY | os.O_TRUNC, "rwt": os.O_RDWR | os.O_TRUNC,
    "wa": os.O_WRONLY | os.O_APPEND, "rwa": os.O_RDWR | os.O_APPEND,
    "rt": os.O_RDONLY | os.O_TRUNC, "wca": os.O_WRONLY | os.O_CREAT |
    os.O_APPEND,
}

OP_WEIGHTS = [
    ("create", 8), ("mkdir", 5), ("mknod", 3), ("symlink", 3), ("link", 4),
    ("unlink", 5), ("rmdir", 3), ("rename", 10), ("chmod", 9), ("chown", 6),
    ("utime", 6), ("truncate", 4), ("open", 12), ("exec", 5),
    ("setxattr", 5), ("removexattr", 2), ("getxattr", 3), ("access", 3),
    ("stat", 3), ("readdir", 2),
]
OP_KINDS = [k for k, _ in OP_WEIGHTS]

# ---------------------------------------------------------------------------
# Documented differences between fuse4fs and kernel ext4.  Each entry:
# (name, reason, predicate(op, variant, kernel_result, fuse_result)).
# Keep it short: every entry hides a class of results from the fuzzer.


def _ok(r):
    return r[0] == "ok"


def _err(r, *names):
    return r[0] == "err" and r[1] in names


DOCUMENTED_DIFFERENCES = [
    ("errno order without default_permissions",
     "When a call fails both for a permission and for another reason "
     "(the victim of rmdir or a directory rename is not a directory, the "
     "source of a rename doesn't exist in a directory the caller can't "
     "search, a device mknod without CAP_MKNOD, a protected_hardlinks "
     "refusal...), ext4 reports EACCES or EPERM but fuse4fs without "
     "default_permissions may report the other error: the VFS makes its "
     "type, existence and capability checks before the request reaches "
     "fuse4fs, and without default_permissions FUSE's permission hook "
     "grants the directory checks it would have made first.  Only which "
     "errno differs: whether the call fails is still compared.",
     lambda op, v, rk, rf: rk[0] == "err" and rf[0] == "err" and
     rk[1] in ("EACCES", "EPERM") and
     "default_permissions" not in MOUNT_VARIANTS[v]),
]

# Documented differences in the trees.  Each entry: (name, reason,
# predicate(variant, kernel_entry, fuse_entry)) -> the fields to leave out
# of the comparison of that entry.

TREE_DIFFERENCES = [
    ("writeback_cache: same-size truncate keeps mtime",
     "With writeback_cache the kernel keeps a regular file's size and times "
     "itself, and a truncate to the size the file already has leaves mtime "
     "alone (the man page says so), where ext4 sets it to now: an explicit "
     "old mtime may survive on fuse4fs where ext4 shows the time of the "
     "truncate.  The mtime of such an entry is then not compared.",
     lambda v, ek, ef: ("mtime_ns",) if "writeback_cache" in
     MOUNT_VARIANTS[v] and ek.get("type") == "reg" and
     "mtime_ns" not in ek and "mtime_ns" in ef else ()),
]

# Defects of issue 15 that this fuzzer finds on builds without their
# fixes.  With --known-ok a mismatch that matches one of these ends the
# sequence (counted as "known") instead of failing the run.  Arguments:
# op, mount variant, kernel result, fuse result, file type of the
# operation's first path on the kernel side after the op (or None).


KNOWN_DEFECTS = [
    ("found by difffuzz: moving a hashed directory to another parent "
     "fails with EUCLEAN",
     lambda op, v, rk, rf, ft: op[0] == "rename" and _ok(rk) and
     _err(rf, "EUCLEAN")),
    ("found by difffuzz: chown(f, -1, -1) by a non-owner clears "
     "setuid/setgid (ext4: EPERM)",
     lambda op, v, rk, rf, ft: op[0] == "chown" and op[3] == -1 and
     op[4] == -1 and _err(rk, "EPERM") and _ok(rf)),
    ("issue 15 item 4: rename of a directory into a hashed directory "
     "fails with ENOENT",
     lambda op, v, rk, rf, ft: op[0] == "rename" and _ok(rk) and
     _err(rf, "ENOENT")),
    ("issue 15 item 10: execve checked as a read, not as MAY_EXEC "
     "(runs without execute permission; execute-only files fail)",
     lambda op, v, rk, rf, ft: op[0] == "exec" and v in ("own", "wb") and
     (_err(rk, "EACCES") or _err(rf, "EACCES"))),
    ("issue 15 item 11: a non-owner can chmod away setuid/setgid bits",
     lambda op, v, rk, rf, ft: op[0] == "chmod" and _err(rk, "EPERM") and
     _ok(rf) and v in ("own", "wb")),
    ("issue 15 item 12: with writeback_cache anyone can set timestamps",
     lambda op, v, rk, rf, ft: op[0] == "utime" and
     _err(rk, "EPERM", "EACCES") and _ok(rf) and v in ("wb", "dpwb")),
    ("issue 15 item 16: FIFO/device opens unchecked without "
     "default_permissions",
     lambda op, v, rk, rf, ft: op[0] == "open" and _err(rk, "EACCES") and
     not _err(rf, "EACCES") and ft in ("fifo", "chr", "blk") and
     v in ("own", "wb")),
    ("issue 15 item 14: only 64 supplementary groups are read",
     lambda op, v, rk, rf, ft: op[1] == "many" and v in ("own", "wb") and
     ((_err(rk, "EACCES") and _ok(rf)) or (_ok(rk) and _err(rf, "EACCES")) or
      (op[0] == "access" and _ok(rk) and _ok(rf)))),
]

# ---------------------------------------------------------------------------
# operation generator (stateless: operations may fail; the errno must match)


def gen_ops(seed, count, exclude=()):
    rnd = random.Random(seed)
    recent = []
    kinds = [k for k, w in OP_WEIGHTS if k not in exclude for _ in range(w)]
    users = [u for u, w in USER_WEIGHTS if "user:" + u not in exclude
             for _ in range(w)]

    def path(new=False, dirish=False):
        r = rnd.random()
        if recent and not new and r < 0.4:
            return rnd.choice(recent[-16:])
        if dirish and r < 0.75:
            return rnd.choice(NESTED_DIRS + DIRS[1:])
        if not new and r < 0.65:
            return rnd.choice(START_FILES)
        d = rnd.choice(DIRS)
        if d in BIG_DIRS and rnd.random() < 0.3:
            n = "entry%04d" % rnd.randrange(6)
        else:
            n = rnd.choice(NAMES)
        p = d + "/" + n if d else n
        if new:
            recent.append(p)
        return p

    ops = []
    for _ in range(count):
        k = rnd.choice(kinds)
        u = rnd.choice(users)
        if k == "create":
            op = (k, u, path(True), rnd.choice(MODES))
        elif k == "mkdir":
            op = (k, u, path(True), rnd.choice([0o755, 0o777, 0o700, 0o2775,
                                                0o1777, 0o3777, 0o711]))
        elif k == "mknod":
            op = (k, u, path(True), rnd.choice(["fifo", "fifo", "null",
                                                "zero", "full"]),
                  rnd.choice(MODES))
        elif k == "symlink":
            op = (k, u, rnd.choice(["a", "prog", "../d0/prog", "s/e", "..",
                                    "missing", "fifo", "../big0/entry0001"]),
                  path(True))
        elif k == "link":
            op = (k, u, path(), path(True))
        elif k in ("unlink", "rmdir"):
            op = (k, u, path(dirish=(k == "rmdir")))
        elif k == "rename":
            src = path(dirish=rnd.random() < 0.5)
            dst = path(True)
            if rnd.random() < 0.3:
                dst = rnd.choice(BIG_DIRS + ("big0/sub",)) + "/" + \
                    rnd.choice(["m", "n", "entry0002"])
                recent.append(dst)
            op = (k, u, src, dst, rnd.choice(["plain", "plain", "noreplace",
                                              "exchange"]))
        elif k == "chmod":
            op = (k, u, path(dirish=rnd.random() < 0.3), rnd.choice(MODES))
        elif k == "chown":
            op = (k, u, path(dirish=rnd.random() < 0.2),
                  rnd.choice(UIDS + [-1, -1, -1]),
                  rnd.choice(GIDS + [-1]), rnd.choice([True, False]))
        elif k == "utime":
            t = []
            for _i in range(2):
                c = rnd.random()
                if c < 0.35:
                    t.append("now")
                elif c < 0.45:
                    t.append("omit")
                else:
                    t.append((rnd.randrange(1000000000, 1400000000),
                              rnd.choice([0, 1, 500000000, 999999999])))
            op = (k, u, path(), t[0], t[1], rnd.choice([True, False]))
        elif k == "truncate":
            op = (k, u, path(), rnd.choice([0, 1, 5, 100, 4096, 5000]))
        elif k == "open":
            op = (k, u, path(rnd.random() < 0.2), rnd.choice(
                sorted(OPEN_FLAGS)), rnd.choice(MODES[:8]),
                rnd.choice([0, 3, 17]))
        elif k == "exec":
            op = (k, u, rnd.choice([path(), path(), "d0/prog", "d1/prog",
                                    "t/prog", "d0/sh", "d1/sh"]))
        elif k == "setxattr":
            op = (k, u, path(dirish=rnd.random() < 0.3), rnd.choice(XATTRS),
                  rnd.choice(["v1", "value-2", "x" * 40]),
                  rnd.choice(["", "create", "replace"]))
        elif k in ("removexattr", "getxattr"):
            op = (k, u, path(), rnd.choice(XATTRS))
        elif k == "access":
            op = (k, u, path(dirish=rnd.random() < 0.3),
                  rnd.choice([os.R_OK, os.W_OK, os.X_OK,
                              os.R_OK | os.W_OK]))
        elif k == "stat":
            op = (k, u, path(dirish=rnd.random() < 0.3))
        elif k == "readdir":
            op = (k, u, path(dirish=True))
        ops.append(op)
    return ops

# ---------------------------------------------------------------------------
# executing one operation (in a child that already has the caller's ids)


DEVS = {"null": (1, 3), "zero": (1, 5), "full": (1, 7)}


def _ftype(mode):
    return {stat.S_IFREG: "reg", stat.S_IFDIR: "dir", stat.S_IFLNK: "lnk",
            stat.S_IFCHR: "chr", stat.S_IFBLK: "blk", stat.S_IFIFO: "fifo",
            stat.S_IFSOCK: "sock"}.get(stat.S_IFMT(mode), "?")


def _exec(path):
    r, w = os.pipe()
    try:
        pid = os.posix_spawn(path, [path], {"PATH": "/usr/bin:/bin"},
                             file_actions=[(os.POSIX_SPAWN_DUP2, w, 1),
                                           (os.POSIX_SPAWN_DUP2, w, 2)])
    finally:
        os.close(w)
    with os.fdopen(r, "rb") as f:
        out = f.read(4096)
    _, status = os.waitpid(pid, 0)
    return (os.waitstatus_to_exitcode(status), out.decode("utf-8", "replace"))


def do_op(root, op):
    """Run op below root; return its result (picklable).  Raises OSError."""
    k, p = op[0], os.path.join(root, op[2]) if len(op) > 2 else None
    if k == "create":
        os.close(os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, op[3]))
    elif k == "mkdir":
        os.mkdir(p, op[3])
    elif k == "mknod":
        if op[3] == "fifo":
            os.mknod(p, stat.S_IFIFO | op[4])
        else:
            os.mknod(p, stat.S_IFCHR | op[4], os.makedev(*DEVS[op[3]]))
    elif k == "symlink":
        os.symlink(op[2], os.path.join(root, op[3]))
    elif k == "link":
        os.link(p, os.path.join(root, op[3]), follow_symlinks=False)
    elif k == "unlink":
        os.unlink(p)
    elif k == "rmdir":
        os.rmdir(p)
    elif k == "rename":
        flags = {"plain": 0, "noreplace": f4test.RENAME_NOREPLACE,
                 "exchange": f4test.RENAME_EXCHANGE}[op[4]]
        f4test.renameat2(p, os.path.join(root, op[3]), flags)
    elif k == "chmod":
        os.chmod(p, op[3])
    elif k == "chown":
        os.chown(p, op[3], op[4], follow_symlinks=op[5])
    elif k == "utime":
        f4test.utimensat(p, op[3], op[4], follow=op[5])
    elif k == "truncate":
        os.truncate(p, op[3])
    elif k == "open":
        return _open(p, OPEN_FLAGS[op[3]], op[4], op[5])
    elif k == "exec":
        return _exec(p)
    elif k == "setxattr":
        flags = {"": 0, "create": os.XATTR_CREATE,
                 "replace": os.XATTR_REPLACE}[op[5]]
        os.setxattr(p, op[3], op[4].encode(), flags, follow_symlinks=False)
    elif k == "removexattr":
        os.removexattr(p, op[3], follow_symlinks=False)
    elif k == "getxattr":
        return os.getxattr(p, op[3], follow_symlinks=False)
    elif k == "access":
        return os.access(p, op[3], effective_ids=False)
    elif k == "stat":
        st = os.lstat(p)
        return (_ftype(st.st_mode), oct(stat.S_IMODE(st.st_mode)), st.st_uid,
                st.st_gid, st.st_nlink,
                None if stat.S_ISDIR(st.st_mode) else st.st_size)
    elif k == "readdir":
        return sorted(os.listdir(p))
    else:
        raise ValueError("unknown operation %r" % (op,))
    return None


def _open(p, flags, mode, nwrite):
    """Open (never blocking: FIFOs without a partner), write nwrite bytes
    if the mode allows it, read what is there if it allows that."""
    fd = os.open(p, flags | os.O_NONBLOCK, mode)
    res = []
    try:
        acc = flags & os.O_ACCMODE
        if acc != os.O_RDONLY and nwrite:
            res.append(("w", _call(os.write, fd, b"w" * nwrite)))
        if acc != os.O_WRONLY:
            if acc == os.O_RDWR:
                _call(os.lseek, fd, 0, os.SEEK_SET)
            r = _call(os.read, fd, 64)
            res.append(("r", r))
    finally:
        os.close(fd)
    return res


def _call(fn, *a):
    try:
        return fn(*a)
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))


def _unroot(v, root):
    """Results must not depend on where the mount is."""
    if isinstance(v, str):
        return v.replace(root, "@MNT")
    if isinstance(v, (list, tuple)):
        return type(v)(_unroot(x, root) for x in v)
    return v


def result_of(root, op):
    try:
        return ("ok", _unroot(do_op(root, op), root))
    except OSError as e:
        return ("err", errno.errorcode.get(e.errno, str(e.errno)))


def run_pair(op, roots, timeout=30):
    """Fork a child with the caller's ids that runs op below each root in
    turn; return the list of results."""
    uid, gid, groups = USERS[op[1]]
    r, w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            signal.alarm(timeout)
            os.chdir("/")
            os.setgroups(groups)
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
            os.umask(0o022)
            try:
                res = ("ok", [result_of(x, op) for x in roots])
            except BaseException:
                res = ("error", traceback.format_exc())
            with os.fdopen(w, "wb") as f:
                f.write(pickle.dumps(res))
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    if not data:
        return [("child", "died with status %d (timeout %d s?)" %
                 (status, timeout))] * len(roots)
    kind, val = pickle.loads(data)
    if kind != "ok":
        raise RuntimeError("difffuzz: the child running %r failed:\n%s" %
                           (op, val))
    return val


def fmt_op(op):
    uid, gid, groups = USERS[op[1]]
    who = "%s(%d:%d%s)" % (op[1], uid, gid,
                           "+%d groups" % len(groups) if groups else "")
    k, a = op[0], op[2:]
    if k == "chmod":
        a = (a[0], oct(a[1]))
    elif k in ("create", "mkdir"):
        a = (a[0], oct(a[1]))
    elif k == "mknod":
        a = (a[0], a[1], oct(a[2]))
    elif k == "open":
        a = (a[0], a[1], oct(a[2]), "write %d" % a[3])
    return "%-22s %s %s" % (who, k, " ".join(str(x) for x in a))


def fmt_res(r):
    if r[0] == "ok":
        return "OK" if r[1] is None else "OK %r" % (r[1],)
    return "%s %s" % (r[0] if r[0] != "err" else "", r[1])


# ---------------------------------------------------------------------------
# tree comparison


def snapshot(root):
    snap = f4test.snapshot(root, data=True)
    for rel, e in snap["entries"].items():
        full = root if rel == "." else os.path.join(root, rel)
        try:
            names = sorted(os.listxattr(full, follow_symlinks=False))
            e["xattrs"] = {n: os.getxattr(full, n, follow_symlinks=False)
                           for n in names if not n.startswith("system.")}
        except OSError as ex:
            e["xattrs"] = "error %s" % errno.errorcode.get(ex.errno)
        st = os.lstat(full)
        if st.st_mtime < EXPLICIT_TIME_BEFORE:
            e["mtime_ns"] = st.st_mtime_ns
    return snap


def compare_trees(kroot, froot, variant):
    sk, sf = snapshot(kroot), snapshot(froot)
    for rel, ek in sk["entries"].items():
        ef = sf["entries"].get(rel)
        if ef is None:
            continue
        for _name, _reason, pred in TREE_DIFFERENCES:
            for field in pred(variant, ek, ef):
                ek.pop(field, None)
                ef.pop(field, None)
    return f4test.diff_snapshots(sk, sf, ("kernel", "fuse4fs"))

# ---------------------------------------------------------------------------
# the two mounts


def populate(root):
    """The starting tree (made by the kernel once per fs variant)."""
    def mk(rel, mode, uid=0, gid=0, data=None, kind="file", src=None):
        p = os.path.join(root, rel)
        if kind == "dir":
            os.mkdir(p)
        elif kind == "fifo":
            os.mkfifo(p)
        elif kind == "null":
            os.mknod(p, stat.S_IFCHR | 0o600, os.makedev(1, 3))
        elif src:
            shutil.copyfile(src, p)
        else:
            with open(p, "wb") as f:
                f.write(data or b"")
        os.chown(p, uid, gid)
        os.chmod(p, mode)

    mk("d0", 0o777, kind="dir")
    mk("d1", 0o755, 1001, 1001, kind="dir")
    mk("t", 0o1777, kind="dir")
    mk("d0/s", 0o2775, 0, 1100, kind="dir")
    for d, mode in (("big0", 0o777), ("big1", 0o755)):
        mk(d, mode, kind="dir")
        for i in range(BIG_ENTRIES):
            mk("%s/entry%04d" % (d, i), 0o644, 1001 if i % 2 else 0,
               0 if i % 3 else 1100, data=b"%d" % i)
    mk("big0/sub", 0o777, 1002, 1002, kind="dir")
    mk("d0/prog", 0o755, src="/usr/bin/id")
    mk("d1/prog", 0o744, src="/usr/bin/id")
    mk("t/prog", 0o4755, src="/usr/bin/id")
    mk("d0/sh", 0o755, data=b"#!/bin/sh\necho script $0\nexit 3\n")
    mk("d1/sh", 0o711, 1001, 1001, data=b"#!/bin/sh\nexit 4\n")
    mk("d0/fifo", 0o644, kind="fifo")
    mk("d1/fifo", 0o044, 1001, 1001, kind="fifo")
    mk("d0/null", 0o666, kind="null")
    mk("d0/a", 0o604, 1002, 1100, data=b"secret of group 1100\n")
    mk("d1/a", 0o640, 1001, 1001, data=b"a of d1\n")
    mk("t/a", 0o666, 1003, 1003, data=b"t/a\n")
    # group 1100 is the 70th supplementary group of "many": denied by
    # d0/g's group bits although "other" may read; granted by t/g's
    mk("d0/g", 0o604, 0, 1100, data=b"group 1100 may not read this\n")
    mk("t/g", 0o640, 1001, 1100, data=b"group 1100 may read this\n")
    os.setxattr(os.path.join(root, "d0/a"), "user.a", b"start")


class Pair:
    """A kernel ext4 mount and a fuse4fs mount of copies of one template."""

    def __init__(self, workdir, template, fs_variant, mount_variant):
        self.workdir = workdir
        self.k = f4test.FS(workdir, fs_variant, drv="kernel", name="kern")
        self.f = f4test.FS(workdir, fs_variant, drv="fuse4fs", name="fuse",
                           opts=MOUNT_VARIANTS[mount_variant])
        for fsobj in (self.k, self.f):
            if os.path.exists(fsobj.image):
                os.unlink(fsobj.image)
            subprocess.run(["cp", "--sparse=always", template, fsobj.image],
                           check=True)
        self.k.mount()
        try:
            self.f.mount()
        except Exception:
            self.k.force_cleanup()
            raise
        for m in (self.k.mnt, self.f.mnt):
            os.chmod(m, 0o755)
        # Builds after issue 15 item 16 turn default_permissions on
        # whenever other users can reach the mount: then the kernel
        # checks, and results are judged as for the variant that asks for
        # it.
        e = f4test.mount_entry(self.f.mnt)
        self.effective = mount_variant
        if e and "default_permissions" in e[4].split(","):
            self.effective = {"own": "dp", "wb": "dpwb"}.get(
                mount_variant, mount_variant)

    def roots(self):
        return [self.k.mnt, self.f.mnt]

    def close(self, fsck=True):
        """Unmount both; with fsck, return e2fsck problems (list)."""
        problems = []
        for fsobj in (self.f, self.k):
            try:
                fsobj.unmount()
            except Exception as e:       # noqa: BLE001
                problems.append("%s: unmount: %s" % (fsobj.driver, e))
                fsobj.force_cleanup()
        if fsck:
            for fsobj in (self.k, self.f):
                p = f4test.run(["e2fsck", "-fn", fsobj.image], check=False)
                if p.returncode != 0:
                    problems.append("e2fsck -fn %s (%s) exited %d:\n%s%s" % (
                        fsobj.image, fsobj.driver, p.returncode, p.stdout,
                        p.stderr))
        return problems


def make_template(workdir, fs_variant, size):
    path = os.path.join(workdir, "template-%s.img" % fs_variant)
    if os.path.exists(path):
        return path
    tmp = f4test.FS(workdir, fs_variant, drv="kernel", size=size,
                    name="tmpl-" + fs_variant)
    tmp.mkfs()
    tmp.mount()
    try:
        populate(tmp.mnt)
    finally:
        tmp.unmount()
    os.rename(tmp.image, path)
    os.rmdir(tmp.mnt)
    return path

# ---------------------------------------------------------------------------
# running and judging a sequence


def judge(op, variant, rk, rf, ftype):
    """None if the results agree (or differ in a documented way), else
    ("known", label) or ("new", None)."""
    if rk == rf:
        return None
    for name, _reason, pred in DOCUMENTED_DIFFERENCES:
        if pred(op, variant, rk, rf):
            return None
    for label, pred in KNOWN_DEFECTS:
        if pred(op, variant, rk, rf, ftype):
            return ("known", label)
    return ("new", None)


def _ftype_at(root, op):
    if len(op) < 3 or not isinstance(op[2], str):
        return None
    try:
        return _ftype(os.lstat(os.path.join(root, op[2])).st_mode)
    except OSError:
        return None


class Failure:
    def __init__(self, kind, index, op=None, rk=None, rf=None, diffs=None,
                 label=None, text=""):
        self.kind = kind            # "op", "tree", "fsck"
        self.index = index
        self.op, self.rk, self.rf = op, rk, rf
        self.diffs = diffs or []
        self.label = label
        self.text = text

    def signature(self):
        if self.kind == "op":
            return ("op", self.op[0], self.rk[0], self.rk[1] if
                    self.rk[0] != "ok" else "", self.rf[0],
                    self.rf[1] if self.rf[0] != "ok" else "")
        if self.kind == "tree":
            return ("tree",)
        return (self.kind,)

    def describe(self):
        if self.kind == "op":
            s = "op #%d differs: %s\n    kernel : %s\n    fuse4fs: %s" % (
                self.index, fmt_op(self.op), fmt_res(self.rk),
                fmt_res(self.rf))
            if self.label:
                s += "\n    known defect: " + self.label
            return s
        if self.kind == "tree":
            return "trees differ after op #%d:\n    %s" % (
                self.index, "\n    ".join(self.diffs[:30]))
        return "%s after op #%d: %s" % (self.kind, self.index, self.text)


_NOTED = set()


def run_sequence(ops, workdir, template, fs_variant, mount_variant,
                 check_every=50, fsck=True, stop_sig=None, log=None):
    """Run ops on a fresh pair; return (number of ops run, Failure or
    None).  With stop_sig, stop at the first mismatch and report it only
    if its signature is stop_sig (used while reducing)."""
    pair = Pair(workdir, template, fs_variant, mount_variant)
    if log and pair.effective != mount_variant and \
            mount_variant not in _NOTED:
        _NOTED.add(mount_variant)
        log("  (the fuse4fs mount shows default_permissions: %s is judged "
            "as %s)" % (mount_variant, pair.effective))
    fail = None
    n = 0
    try:
        for i, op in enumerate(ops):
            rk, rf = run_pair(op, pair.roots())
            n += 1
            v = judge(op, pair.effective, rk, rf,
                      _ftype_at(pair.k.mnt, op))
            if v is not None:
                fail = Failure("op", i, op, rk, rf, label=v[1])
                break
            last = i == len(ops) - 1
            if (check_every and (i + 1) % check_every == 0) or last:
                d = compare_trees(pair.k.mnt, pair.f.mnt, mount_variant)
                if d:
                    fail = Failure("tree", i, diffs=d)
                    break
            if log and (i + 1) % 500 == 0:
                log("    ... %d ops" % (i + 1))
    finally:
        problems = pair.close(fsck=fsck and fail is None)
    if fail is None and problems:
        fail = Failure("fsck", n - 1, text="\n".join(problems))
    if stop_sig is not None and fail is not None and \
            fail.signature() != stop_sig:
        return n, None
    return n, fail


def _paths(op):
    return [a for a in op[2:] if isinstance(a, str) and a and
            (a in START_FILES or "/" in a or a in NAMES or a in DIRS)]


def _related(op, target):
    """Does op name a path equal to, below or above one of target's?"""
    for a in _paths(op):
        for b in _paths(target):
            if a == b or a.startswith(b + "/") or b.startswith(a + "/"):
                return True
    return False


def reduce_ops(ops, fail, workdir, template, fs_variant, mount_variant,
               budget, log):
    """Delta debugging (ddmin) over ops[:fail.index + 1]: the smallest
    subsequence found within budget seconds that fails with the same
    signature."""
    sig = fail.signature()
    cur = list(ops[:fail.index + 1])
    deadline = time.monotonic() + budget
    trials = [0]

    def fails(sub):
        trials[0] += 1
        ce = 0 if sig[0] == "op" else max(1, len(sub))
        _, f = run_sequence(sub, workdir, template, fs_variant,
                            mount_variant, check_every=ce,
                            fsck=sig[0] == "fsck", stop_sig=sig)
        return f is not None

    # Cheap first tries: the failing op alone, then the last few ops, then
    # the ops that name one of the failing op's paths (or a path below or
    # above one).
    if sig[0] == "op":
        for tail in (1, 2, 4, 8):
            if tail < len(cur) and fails(cur[-tail:]):
                cur = cur[-tail:]
                break
        else:
            near = [o for o in cur[:-1] if _related(o, cur[-1])] + cur[-1:]
            if len(near) < len(cur) and fails(near):
                cur = near
    n = 2
    while len(cur) >= 2 and time.monotonic() < deadline:
        chunk = (len(cur) + n - 1) // n
        parts = [cur[i:i + chunk] for i in range(0, len(cur), chunk)]
        reduced = False
        for i in range(len(parts)):
            if time.monotonic() >= deadline:
                break
            comp = [o for j, p in enumerate(parts) if j != i for o in p]
            if comp and fails(comp):
                cur = comp
                n = max(n - 1, 2)
                reduced = True
                break
        if not reduced:
            if n >= len(cur):
                break
            n = min(len(cur), n * 2)
    timed_out = time.monotonic() >= deadline
    log("  reduced to %d op(s) in %d replays%s" % (
        len(cur), trials[0], " (budget exhausted)" if timed_out else ""))
    return cur

# ---------------------------------------------------------------------------
# command line


def parse_seeds(s):
    """"1-20,33", or "random": a million seeds from one chosen by the
    clock (a long run with --time-limit explores new ground)."""
    if s == "random":
        first = random.SystemRandom().randrange(1, 1 << 31)
        return range(first, first + 1000000)
    out = []
    for part in s.split(","):
        if "-" in part:
            a, b = part.split("-", 1)
            out += list(range(int(a), int(b) + 1))
        elif part:
            out.append(int(part))
    return out


def main(argv=None, out=None):
    """The command line; out, if a list, also collects every line
    printed (the test module reports from it)."""
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Mount variants: " + "; ".join(
            "%s = %s" % (k, ",".join(v)) for k, v in MOUNT_VARIANTS.items()) +
        ".  Operation kinds: " + ", ".join(OP_KINDS) + ".",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="1",
                    help="e.g. 1-20,33, or random (default 1)")
    ap.add_argument("--ops", type=int, default=300,
                    help="operations per sequence (default 300)")
    ap.add_argument("--mount-variants", default="own,dp,wb,dpwb",
                    help="comma-separated, from %s" % ",".join(MOUNT_VARIANTS))
    ap.add_argument("--fs-variants", default="ext4",
                    help="comma-separated f4test variants the kernel can "
                         "mount (default ext4)")
    ap.add_argument("--image-size", default="64M")
    ap.add_argument("--check-every", type=int, default=50,
                    help="compare the trees every N ops (default 50)")
    ap.add_argument("--exclude", default="",
                    help="comma-separated operation kinds (and user:NAME) "
                         "not to generate")
    ap.add_argument("--known-ok", action="store_true",
                    help="a mismatch matching a known issue-15 defect ends "
                         "its sequence (counted) instead of failing")
    ap.add_argument("--keep-going", action="store_true",
                    help="after a failure, go on with the next sequence")
    ap.add_argument("--no-reduce", action="store_true")
    ap.add_argument("--reduce-budget", type=float, default=240,
                    help="seconds for reducing one failure (default 240)")
    ap.add_argument("--workdir", help="where images go (default: a new "
                                      "directory under F4_TMPDIR or /tmp)")
    ap.add_argument("--save", help="write the (reduced) failing sequence "
                                   "here as JSON")
    ap.add_argument("--replay", help="run the sequence in this JSON file")
    ap.add_argument("--time-limit", type=float, default=0,
                    help="stop starting new sequences after this many "
                         "seconds")
    ap.add_argument("--list-differences", action="store_true",
                    help="print the documented differences and exit")
    args = ap.parse_args(argv)

    def log(msg):
        print(msg, flush=True)
        if out is not None:
            out.append(msg)

    if args.list_differences:
        for name, reason, _ in DOCUMENTED_DIFFERENCES + TREE_DIFFERENCES:
            print("%s: %s\n" % (name, reason))
        for label, _ in KNOWN_DEFECTS:
            print("known defect (--known-ok): %s" % label)
        return 0
    if os.geteuid() != 0:
        ap.error("must run as root (mounts, mknod, setuid children)")
    mvs = [m for m in args.mount_variants.split(",") if m]
    for m in mvs:
        if m not in MOUNT_VARIANTS:
            ap.error("unknown mount variant %r" % m)
    fvs = [v for v in args.fs_variants.split(",") if v]
    for v in fvs:
        if v not in f4test.ALL_VARIANTS or not f4test.kernel_can_mount(v):
            ap.error("fs variant %r unknown or not mountable by the kernel"
                     % v)
    exclude = set(x for x in args.exclude.split(",") if x)
    for x in exclude:
        if x not in OP_KINDS and not (x.startswith("user:") and
                                      x[5:] in USERS):
            ap.error("--exclude: unknown %r" % x)
    size = f4test.parse_size(args.image_size)
    own_workdir = args.workdir is None
    workdir = args.workdir or tempfile.mkdtemp(
        prefix="difffuzz-", dir=os.environ.get("F4_TMPDIR", "/tmp"))
    os.makedirs(workdir, exist_ok=True)
    os.chmod(workdir, 0o755)

    if args.replay:
        with open(args.replay) as f:
            d = json.load(f)
        jobs = [(d.get("seed"), d["mount_variant"], d["fs_variant"],
                 [tuple(_untuple(x) for x in op) for op in d["ops"]])]
    else:
        seeds = parse_seeds(args.seeds)
        if args.seeds == "random":
            log("seeds from %d upwards" % seeds[0])
        jobs = ((seed, mv, fv, None) for seed in seeds for fv in fvs
                for mv in mvs)

    t0 = time.monotonic()
    total_ops = 0
    failures = []
    known = {}
    for seed, mv, fv, ops in jobs:
        if args.time_limit and time.monotonic() - t0 > args.time_limit:
            log("time limit of %.0f s reached" % args.time_limit)
            break
        if ops is None:
            ops = gen_ops(seed, args.ops, exclude)
        template = make_template(workdir, fv, size)
        t1 = time.monotonic()
        n, fail = run_sequence(ops, workdir, template, fv, mv,
                               args.check_every, log=log)
        total_ops += n
        tag = "seed %s %s/%s" % (seed, fv, mv)
        if fail is None:
            log("%s: %d ops, no difference (%.1f s)" % (
                tag, n, time.monotonic() - t1))
            continue
        if args.known_ok and fail.kind == "op" and fail.label:
            known[fail.label] = known.get(fail.label, 0) + 1
            log("%s: known defect after %d ops: %s" % (tag, n, fail.label))
            continue
        log("%s: FAILED after %d ops\n  %s" % (tag, n, fail.describe()))
        red = ops[:fail.index + 1]
        if not args.no_reduce:
            red = reduce_ops(ops, fail, workdir, template, fv, mv,
                             args.reduce_budget, log)
        log("  reproduce: tests/tools/difffuzz.py --seeds %s --fs-variants "
            "%s --mount-variants %s --ops %d" % (seed, fv, mv, len(ops)))
        log("  reduced sequence (%d ops):" % len(red))
        for op in red:
            log("    " + fmt_op(op))
        failures.append((tag, fail, red))
        if args.save:
            with open(args.save, "w") as f:
                json.dump({"seed": seed, "mount_variant": mv,
                           "fs_variant": fv, "ops": red,
                           "failure": fail.describe()}, f, indent=1)
            log("  saved to %s" % args.save)
        if not args.keep_going:
            break
    log("difffuzz: %d operations in %.0f s, %d failure(s)%s" % (
        total_ops, time.monotonic() - t0, len(failures),
        "".join("; known %r: %d" % (k, v) for k, v in known.items())))
    if own_workdir and not failures:
        shutil.rmtree(workdir, ignore_errors=True)
    elif failures:
        log("images and logs kept in %s" % workdir)
    return 1 if failures else 0


def _untuple(x):
    return tuple(x) if isinstance(x, list) else x


if __name__ == "__main__":
    sys.exit(main())
