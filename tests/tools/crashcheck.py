#!/usr/bin/env python3
"""crashcheck - what a power cut can leave behind a fuse4fs mount.

Issue 14's proof tool.  It runs a workload on a fuse4fs mount with every
write and flush the daemon sends to its image recorded (the LD_PRELOAD
shim tests/tools/f4wlog.so, built by `make tools`), rebuilds the image as
a disk could have held it at many cut points, recovers each such crash
state the way a mount would, and checks it.

Recording
  The image is made with mke2fs and copied (sparse) before the mount: the
  base.  The daemon runs with LD_PRELOAD=f4wlog.so and F4_WLOG_IMAGE set to
  the image path; the shim logs, in the order they ran, the daemon's
  pwrite/write/pwritev, ftruncate, fallocate punch/zero-range, BLKDISCARD /
  BLKZEROOUT, and its fsync/fdatasync/syncfs/sync, the calls that flush
  the device's write cache (sync_file_range and BLKFLSBUF do not, and are
  no flush here; see f4wlog.c).
  Root mounts are fuseblk, with a loop device attached to the image: that
  loop device is only the kernel's handle for the mount (fuseblk needs a
  block device; umount waits for the daemon through it).  The kernel sends
  no I/O to it: every write to the image is the daemon's own, through its
  own descriptor on the image file (blockio.c opens the path it is given),
  and that is what the shim records; `-o nofuseblk` would log the same
  writes.  Before any state is built, the whole log applied to the base
  must give exactly the final image, byte for byte, or the run stops: so
  the recorder missed nothing.  Two controls, the base and the final
  image, must then pass the same checks as a crash state.

Workload
  An untar of small files (0-20 KiB) in nested directories, in two halves,
  each followed by rounds of renames over existing names, hard links
  (some of whose old names are removed), unlinks of files held open and
  written while unlinked (closed a few rounds later), appends, overwrites
  and truncates, and `rm -rf` of subtrees, finally of a whole untarred
  tree; meanwhile a logger thread appends numbered records and fsyncs each.

Crash states
  With F_1..F_n the flushes in the log, three kinds of states are built:
  - flush:   everything up to and including a flush F_j;
  - between: a prefix of the log that ends between two flushes (writes
             reach the disk in the order they were issued);
  - subset:  everything up to F_{j-1}, and a random subset of the writes
             between F_{j-1} and F_j, split into 4 KiB pieces (a disk may
             reorder and tear writes that were not flushed yet).
  Discarded ranges read back as zeros.  States are built incrementally on
  one working copy of the base (records are applied in order, each state
  is a sparse copy of it), in a RAM-backed directory.

Recovery and checks, for each state
  (a) `e2fsck -E journal_only -y` replays the journal (it does not release
      orphans: that is what the kernel and fuse4fs do at mount time, after
      replay), then a read-write fuse4fs mount and unmount release the
      orphans, then `e2fsck -fn` must be clean (exit 0);
  (b) a read-write fuse4fs mount (its own journal replay and orphan
      cleanup) and unmount, then `e2fsck -fn` must be clean.
  An orphan list left by a crash is legal: both kernel ext4 and fuse4fs
  release it at the next mount, so it is judged only after that mount.
  (`e2fsck -fn` does not release orphans: on such an image, even one cut
  at a flush, it reports "Inodes that were part of a corrupted orphan
  linked list found" and exits 4.)
  When the state's superblock does not say needs_recovery, e2fsck's
  journal-only run changes nothing, so (a) is the same sequence of steps
  as (b) and is run once.  A state that fuse4fs refuses to mount is
  inconsistent.
  Lost records: the workload's logger appends numbered 64-byte records to
  /log/records and fsyncs after each; when an fsync returns, the size of
  the shim's log at that moment is noted.  Every record whose fsync
  returned before the cut must be in the recovered image (read with
  `debugfs -c -n ... cat`).

Usage
  crashcheck.py run [--variants V,...] [--states N] [--seeds S,...] ...
      record and check each variant; print a table; exit 1 if any state
      is inconsistent or lost fsync'ed records, 2 on a setup error.
  crashcheck.py record --variant V --dir DIR [--seed S] [--files N]
  crashcheck.py check --dir DIR [--states N] [--seed S]
      the two halves of `run`, on a directory of base.img, image.img,
      wlog and manifest.json.
  crashcheck.py interrupt --driver kernel|fuse4fs --how H,... [--runs N]
      live mounts instead of rebuilt states: the workload runs on a fresh
      mount and is interrupted after a random delay, by the shutdown ioctl
      (EXT4_IOC_SHUTDOWN in its three modes: shutdown-flush,
      shutdown-logflush, shutdown-nologflush) or by kill9 (SIGKILL of the
      fuse4fs daemon); the image left behind is checked like a crash
      state, and every record whose fsync returned before the interrupt
      must be there.  With --driver kernel it is the baseline: kernel ext4
      passes these checks on this workload.  fuse4fs without journaled
      writes answers the shutdown ioctl with ENOTTY (exit 2).
  --violate (run, check): a negative control.  States that no disk may
      produce (the log up to a flush, with about half of the writes of
      five earlier flush intervals left out) must come out broken; with
      --violate the exit status is 0 only if some state failed the checks.

Environment: F4_BIN (the fuse4fs binary), F4_WLOG_SHIM (the shim),
F4_CRASH_STATES (states per variant and seed), F4_CRASH_SEEDS
(comma-separated seeds), F4_CRASH_VARIANTS, F4_CRASH_FILES, F4_CRASH_DIR
(scratch directory; default /dev/shm if it has 2 GiB free, else $TMPDIR or
/tmp).  Failed states' details and unrecovered images are kept in
DIR/VARIANT.SEED/failed/.
"""

import argparse
import collections
import concurrent.futures
import json
import mmap
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SHIM = os.environ.get("F4_WLOG_SHIM") or os.path.join(HERE, "f4wlog.so")

MiB = 1 << 20
IMAGE_SIZE = 96 * MiB
REC_SIZE = 64
RECORDS = "/log/records"
PIECE = 4096            # unit in which unflushed writes may be reordered
ROUNDS = 30             # workload rounds of renames, links, unlinks, ...
DEFAULT_FILES = 1500
FSCK_TIMEOUT = 120      # seconds for e2fsck or debugfs on one state
MOUNT_TIMEOUT = 20      # seconds for fuse4fs to mount a state

# name: (mke2fs arguments, mount options)
_EXT4 = ["-t", "ext4", "-b", "4096", "-I", "256", "-i", "8192"]
VARIANTS = collections.OrderedDict([
    ("ext3", (["-t", "ext3", "-b", "4096", "-I", "256", "-i", "8192"], [])),
    ("ext4", (_EXT4, [])),
    ("ext4-nocsum", (_EXT4 + ["-O", "^metadata_csum"], [])),
    ("ext4-1k", (["-t", "ext4", "-b", "1024", "-I", "256", "-i", "8192"], [])),
    ("ext4-orphan_file", (_EXT4 + ["-O", "orphan_file"], [])),
    ("ext4-sync", (_EXT4, ["sync"])),
    ("ext4-dirsync", (_EXT4, ["dirsync"])),
])

W_WRITE, W_FLUSH, W_TRUNCATE, W_DISCARD, W_ZERO = 1, 2, 3, 4, 5
HDR = struct.Struct("<IIQQQ")
MAGIC = b"F4WLOG01"


def say(*a):
    print("crashcheck:", *a, file=sys.stderr, flush=True)


class SetupError(Exception):
    pass


def scratch_base():
    """F4_CRASH_DIR, else /dev/shm if it has room (a run keeps a few
    hundred MiB of logs and images there), else the temporary directory."""
    d = os.environ.get("F4_CRASH_DIR")
    if d:
        return d
    try:
        st = os.statvfs("/dev/shm")
        if st.f_bavail * st.f_frsize >= 2 << 30:
            return "/dev/shm"
    except OSError:
        pass
    return tempfile.gettempdir()


def fuse4fs_bin():
    return os.environ.get("F4_BIN") or os.path.join(REPO, "fuse4fs", "fuse4fs")


def run(argv, timeout=120, check=False, **kw):
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, errors="replace", timeout=timeout, **kw)
    if check and p.returncode:
        raise SetupError("%s exited %d:\n%s" % (" ".join(argv), p.returncode,
                                                p.stdout))
    return p


def record_bytes(i):
    head = "rec %08d " % i
    return (head + chr(97 + i % 26) * (REC_SIZE - 1 - len(head)) +
            "\n").encode()


# ---------------------------------------------------------------------------
# mounting

def is_mounted(mnt):
    mnt = os.path.realpath(mnt)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == mnt for line in f)


class Mount:
    """fuse4fs IMAGE MNT -f, optionally under the recording shim."""

    def __init__(self, image, mnt, opts=(), wlog=None, logfile=None):
        self.image, self.mnt = image, mnt
        argv = [fuse4fs_bin()]
        if opts:
            argv += ["-o", ",".join(opts)]
        argv += [image, mnt, "-f"]
        env = dict(os.environ)
        if wlog:
            env.update(LD_PRELOAD=SHIM, F4_WLOG_IMAGE=image, F4_WLOG=wlog)
        self.out = open(logfile or os.devnull, "ab")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=self.out, stderr=self.out,
                                     env=env, start_new_session=True)

    def wait_mounted(self, timeout=20):
        deadline = time.monotonic() + timeout
        while not is_mounted(self.mnt):
            if self.proc.poll() is not None:
                return False
            if time.monotonic() > deadline:
                self.kill()
                return False
            time.sleep(0.003)
        return True

    def umount(self, timeout=60):
        """Unmount, wait for the daemon; return its exit status."""
        for _ in range(100):
            p = run(["umount", self.mnt])
            if p.returncode == 0 or not is_mounted(self.mnt):
                break
            time.sleep(0.05)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            rc = -9
        self.out.close()
        return rc

    def kill(self):
        self.proc.kill()
        self.proc.wait()
        if is_mounted(self.mnt):
            run(["umount", "-l", self.mnt])


def mount_cycle(image, mnt, logfile):
    """A read-write mount and unmount: replay, orphan cleanup.  Returns
    None, or why it failed."""
    m = Mount(image, mnt, logfile=logfile)
    if not m.wait_mounted(MOUNT_TIMEOUT):
        rc = m.proc.wait()
        m.out.close()
        with open(logfile, "rb") as f:
            tail = f.read()[-600:].decode("utf-8", "replace").strip()
        if rc == -9:
            return "fuse4fs refused to mount: not mounted within %d s: %s" \
                % (MOUNT_TIMEOUT, tail)
        return "fuse4fs refused to mount (exit %s): %s" % (rc, tail)
    rc = m.umount()
    if rc:
        return "fuse4fs exited %d after unmount" % rc
    return None


# ---------------------------------------------------------------------------
# the workload

class Workload:
    """Untar-like tree, then rounds of renames over existing names, hard
    links, unlinks of open files, appends, overwrites and rm -rf, while a
    logger thread appends numbered records and fsyncs each."""

    def __init__(self, mnt, wlog, seed, nfiles):
        self.mnt, self.wlog, self.nfiles = mnt, wlog, nfiles
        self.rng = random.Random(seed)
        self.synced = []            # (record number, log size after fsync)
        self.stop = threading.Event()
        self.files = []
        self.dirs = []
        self.held = []
        self.error = None

    def p(self, *parts):
        return os.path.join(self.mnt, *parts)

    def content(self, size):
        b = bytes([self.rng.randrange(256)]) * 61 + b"END"
        return (b * (size // 64 + 1))[:size]

    def logger(self):
        fd = -1
        try:
            fd = os.open(self.p("log", "records"),
                         os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            i = 0
            while not self.stop.is_set():
                os.write(fd, record_bytes(i))
                os.fsync(fd)
                self.synced.append((i, os.stat(self.wlog).st_size))
                i += 1
                time.sleep(0.004)
        except OSError as e:
            self.error = e
        finally:
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass

    def untar(self, n, top):
        os.mkdir(self.p(top))
        sub = [top]
        for i in range(n):
            if i % 40 == 0:
                d = os.path.join(self.rng.choice(sub), "d%04d" % i)
                os.mkdir(self.p(d))
                sub.append(d)
                self.dirs.append(d)
            d = self.rng.choice(sub[1:] or sub)
            f = os.path.join(d, "f%05d" % i)
            size = self.rng.choice((0, 100, 700, 3000, 5000, 9000, 20000))
            with open(self.p(f), "wb") as fh:
                fh.write(self.content(size))
            if i % 7 == 0:
                os.chmod(self.p(f), 0o600)
            self.files.append(f)

    def pick(self):
        return self.rng.choice(self.files) if self.files else None

    def round(self, r):
        rng = self.rng
        for _ in range(12):                     # renames over existing names
            a, b = self.pick(), self.pick()
            if a and b and a != b:
                os.rename(self.p(a), self.p(b))
                self.files.remove(a)
        for k in range(8):                      # hard links, some unlinked
            a = self.pick()
            if not a:
                break
            new = os.path.join(rng.choice(self.dirs), "l%d_%d" % (r, k))
            os.link(self.p(a), self.p(new))
            self.files.append(new)
            if k % 2:
                os.unlink(self.p(a))
                self.files.remove(a)
        for _ in range(4):                      # unlink while open
            a = self.pick()
            if not a:
                break
            self.held.append(os.open(self.p(a), os.O_RDWR))
            os.unlink(self.p(a))
            self.files.remove(a)
            os.pwrite(self.held[-1], self.content(rng.choice((100, 6000))),
                      50)
        while len(self.held) > 6:               # ... and close later
            os.close(self.held.pop(0))
        for _ in range(12):                     # appends and overwrites
            a = self.pick()
            if not a:
                break
            with open(self.p(a), "r+b") as fh:
                if rng.random() < 0.5:
                    fh.seek(0, 2)
                    fh.write(self.content(rng.choice((10, 2000, 8192))))
                else:
                    fh.seek(rng.randrange(4096))
                    fh.write(self.content(rng.choice((10, 3000))))
                if rng.random() < 0.15:
                    fh.truncate(rng.randrange(1, 9000))
        if r % 3 == 2 and len(self.dirs) > 3:   # rm -rf of a subtree
            d = rng.choice(self.dirs)
            shutil.rmtree(self.p(d))
            self.dirs = [x for x in self.dirs
                         if x != d and not x.startswith(d + "/")]
            self.files = [x for x in self.files if not x.startswith(d + "/")]

    def run(self):
        os.mkdir(self.p("log"))
        t = threading.Thread(target=self.logger)
        t.start()
        try:
            half = self.nfiles // 2
            self.untar(half, "t1")
            for r in range(ROUNDS // 2):
                self.round(r)
            self.untar(self.nfiles - half, "t2")
            self.dirs = [d for d in self.dirs if os.path.isdir(self.p(d))]
            for r in range(ROUNDS // 2, ROUNDS):
                self.round(r)
            if len(self.dirs) > 1:
                d = self.dirs[0].split("/")[0]
                shutil.rmtree(self.p(d))        # a whole untarred tree
        finally:
            while self.held:
                try:
                    os.close(self.held.pop())
                except OSError:
                    pass            # the file system is gone (interrupt)
            self.stop.set()
            t.join()
        if self.error:
            raise self.error


def record(variant, d, seed, nfiles):
    """mkfs, copy the base, mount under the shim, run the workload."""
    mkfs, opts = VARIANTS[variant]
    os.makedirs(d, exist_ok=True)
    img, base = os.path.join(d, "image.img"), os.path.join(d, "base.img")
    wlog, mnt = os.path.join(d, "wlog"), os.path.join(d, "mnt")
    for f in (img, base, wlog):
        if os.path.exists(f):
            os.unlink(f)
    os.makedirs(mnt, exist_ok=True)
    if not os.path.exists(SHIM):
        raise SetupError("%s is missing: run `make tools`" % SHIM)
    with open(img, "wb") as f:
        f.truncate(IMAGE_SIZE)
    run(["mke2fs", "-q", "-F", "-E", "nodiscard"] + mkfs + [img], check=True)
    run(["cp", "--sparse=always", img, base], check=True)
    say("%s: recording the workload (%d files, seed %d, options %s)" % (
        variant, nfiles, seed, ",".join(opts) or "-"))
    t0 = time.monotonic()
    m = Mount(img, mnt, opts, wlog=wlog, logfile=os.path.join(d, "daemon.log"))
    if not m.wait_mounted():
        raise SetupError("%s: fuse4fs did not mount; see %s" % (
            variant, os.path.join(d, "daemon.log")))
    w = Workload(mnt, wlog, seed, nfiles)
    try:
        w.run()
    finally:
        rc = m.umount()
    if rc:
        raise SetupError("%s: fuse4fs exited %d" % (variant, rc))
    fsck = run(["e2fsck", "-fn", img])
    man = dict(variant=variant, seed=seed, files=nfiles, mkfs=mkfs, opts=opts,
               synced=w.synced, final_fsck_rc=fsck.returncode,
               seconds=round(time.monotonic() - t0, 1))
    with open(os.path.join(d, "manifest.json"), "w") as f:
        json.dump(man, f)
    if fsck.returncode:
        say("%s: WARNING: the image after a clean unmount is not clean:\n%s"
            % (variant, fsck.stdout))
    return man


# ---------------------------------------------------------------------------
# interrupting a live mount: shutdown ioctl, kill -9

EXT4_IOC_SHUTDOWN = (2 << 30) | (4 << 16) | (ord("X") << 8) | 125
INTERRUPTS = collections.OrderedDict([
    ("shutdown-flush", 0),      # flush everything, then stop
    ("shutdown-logflush", 1),   # commit the log, then stop
    ("shutdown-nologflush", 2),  # stop at once
    ("kill9", None),            # SIGKILL the daemon (fuse4fs only)
])


def close_fds_under(mnt):
    """Close whatever this process still has open below mnt (a workload
    stopped by an error half-way may leave a descriptor)."""
    mnt = os.path.realpath(mnt)
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink("/proc/self/fd/" + name)
        except OSError:
            continue
        if target == mnt or target.startswith(mnt + "/"):
            try:
                os.close(int(name))
            except OSError:
                pass


def interrupt_run(driver, variant, how, seed, d, nfiles, max_delay):
    """Run the workload on a fresh image mounted by driver (kernel or
    fuse4fs), interrupt it after a random delay, and check the image left
    behind like a crash state: every record whose fsync returned before
    the interrupt must be there.  Returns a result dict."""
    import fcntl
    mkfs, opts = VARIANTS[variant]
    rng = random.Random(seed)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(os.path.join(d, "mnt"))
    img, mnt = os.path.join(d, "image.img"), os.path.join(d, "mnt")
    nolog = os.path.join(d, "nolog")
    open(nolog, "w").close()
    with open(img, "wb") as f:
        f.truncate(IMAGE_SIZE)
    run(["mke2fs", "-q", "-F", "-E", "nodiscard"] + mkfs + [img], check=True)
    m = None
    if driver == "kernel":
        run(["mount", "-t", "ext4", "-o", ",".join(["loop"] + opts), img,
             mnt], check=True)
    else:
        m = Mount(img, mnt, opts, logfile=os.path.join(d, "daemon.log"))
        if not m.wait_mounted():
            raise SetupError("fuse4fs did not mount %s" % img)
    w = Workload(mnt, nolog, seed, nfiles)
    errors = []

    def work():
        try:
            w.run()
        except OSError as e:
            errors.append(e)
    t = threading.Thread(target=work)
    t.start()
    t.join(rng.uniform(0.02, max_delay))
    required = list(w.synced)           # fsync returned before the cut
    if how == "kill9":
        m.proc.kill()
    else:
        fd = os.open(mnt, os.O_RDONLY)
        try:
            fcntl.ioctl(fd, EXT4_IOC_SHUTDOWN,
                        struct.pack("I", INTERRUPTS[how]))
        except OSError as e:
            os.close(fd)
            w.stop.set()
            t.join()
            close_fds_under(mnt)
            if m:
                m.umount()
            else:
                run(["umount", mnt])
            raise SetupError("%s: the shutdown ioctl failed: %s" % (
                driver, e))
        os.close(fd)
    t.join(120)
    if t.is_alive():
        raise SetupError("%s: the workload hangs after %s" % (driver, how))
    close_fds_under(mnt)
    if m:
        if m.umount() not in (0, -9) and how != "kill9":
            raise SetupError("fuse4fs exited badly after %s" % how)
    else:
        for _ in range(50):
            if run(["umount", mnt]).returncode == 0:
                break
            time.sleep(0.1)
        else:
            run(["umount", mnt], check=True)
    res = check_state(img, os.path.join(d, "scratch"),
                      [(i, 0) for i, _ in required], 0)
    res.update(driver=driver, variant=variant, how=how, seed=seed,
               required=len(required), finished=not errors)
    if not res["problems"] and not res["lost"]:
        shutil.rmtree(d, ignore_errors=True)
    return res


def interrupt(driver, variants, hows, runs, seed, top, nfiles, max_delay):
    results = []
    for v in variants:
        for how in hows:
            for k in range(runs):
                s = seed * 1000 + k
                d = os.path.join(top, "%s.%s.%s.%d" % (driver, v, how, s))
                r = interrupt_run(driver, v, how, s, d, nfiles, max_delay)
                results.append(r)
                if r["problems"] or r["lost"]:
                    say("%s %s %s seed %d: %s%s (kept in %s)" % (
                        driver, v, how, s,
                        r["problems"][0].splitlines()[0] if r["problems"]
                        else "", " lost %d of %d fsync'ed records" % (
                            len(r["lost"]), r["required"])
                        if r["lost"] else "", d))
        say("%s %s: %d runs done" % (driver, v, len(results)))
    return results


def interrupt_table(results):
    rows = collections.OrderedDict()
    for r in results:
        k = (r["driver"], r["variant"], r["how"])
        c = rows.setdefault(k, collections.Counter())
        c["runs"] += 1
        c["finished"] += r["finished"]
        c["inconsistent"] += bool(r["problems"])
        c["losing"] += bool(r["lost"])
        c["lost"] += len(r["lost"])
    lines = ["| driver | variant | interrupt | runs | consistent | "
             "inconsistent | runs losing fsync'ed records | records lost |",
             "|---|---|---|---|---|---|---|---|"]
    tot = collections.Counter()
    for (drv, v, how), c in rows.items():
        lines.append("| %s | %s | %s | %d | %d | %d | %d | %d |" % (
            drv, v, how, c["runs"], c["runs"] - c["inconsistent"],
            c["inconsistent"], c["losing"], c["lost"]))
        tot.update(c)
    lines.append("| total | | | %d | %d | %d | %d | %d |" % (
        tot["runs"], tot["runs"] - tot["inconsistent"], tot["inconsistent"],
        tot["losing"], tot["lost"]))
    return "\n".join(lines), tot


# ---------------------------------------------------------------------------
# the log

class Op:
    __slots__ = ("type", "how", "off", "len", "data", "start", "end")


def parse_log(path):
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
    if mm[:8] != MAGIC:
        raise SetupError("%s: not a f4wlog log" % path)
    ops, pos = [], 8
    while pos + HDR.size <= len(mm):
        o = Op()
        o.type, o.how, seq, o.off, o.len = HDR.unpack_from(mm, pos)
        if seq != len(ops):
            raise SetupError("%s: record %d has sequence %d" % (
                path, len(ops), seq))
        o.start = pos
        pos += HDR.size
        o.data = pos if o.type == W_WRITE else None
        if o.type == W_WRITE:
            pos += o.len
        o.end = pos
        ops.append(o)
    return mm, ops


def apply_op(fd, mm, o, lo=None, hi=None):
    """Apply record o (or only its bytes [lo, hi)) to the image fd."""
    if o.type == W_WRITE:
        lo = o.off if lo is None else lo
        hi = o.off + o.len if hi is None else hi
        os.pwrite(fd, mm[o.data + lo - o.off:o.data + hi - o.off], lo)
    elif o.type in (W_DISCARD, W_ZERO):
        lo = o.off if lo is None else lo
        hi = o.off + o.len if hi is None else hi
        while lo < hi:
            n = min(hi - lo, MiB)
            os.pwrite(fd, bytes(n), lo)
            lo += n
    elif o.type == W_TRUNCATE:
        os.ftruncate(fd, o.off)


def pieces(o):
    """The PIECE-aligned pieces of a write that a disk may persist alone."""
    if o.type == W_TRUNCATE:
        return [(o, None, None)]
    out, lo, end = [], o.off, o.off + o.len
    while lo < end:
        hi = min(end, (lo // PIECE + 1) * PIECE)
        out.append((o, lo, hi))
        lo = hi
    return out


# ---------------------------------------------------------------------------
# crash states

class State:
    def __init__(self, kind, prefix, cut, extra=(), drop=()):
        self.kind = kind        # flush | between | subset | violation
        self.prefix = prefix    # records [0, prefix) applied in order
        self.cut = cut          # log position of the cut
        self.extra = extra      # pieces applied on top (subset states)
        self.drop = drop        # records left out (violation states)
        self.name = None

    def describe(self):
        s = "%s state: records 0..%d" % (self.kind, self.prefix - 1)
        if self.extra:
            s += " + %d unflushed pieces of records %s" % (
                len(self.extra), ",".join(str(x) for x in sorted(
                    {p[3] for p in self.extra})[:20]))
        if self.drop:
            s += " without %d flushed records (%d..%d)" % (
                len(self.drop), min(self.drop), max(self.drop))
        return s + ", cut at log position %d" % self.cut


def choose_states(ops, n, rng):
    """About n states, a third of each kind (fewer if the log is short)."""
    flushes = [i for i, o in enumerate(ops) if o.type == W_FLUSH]
    is_w = [o.type != W_FLUSH for o in ops]
    # intervals between consecutive flushes that hold writes: (lo, hi) =
    # (index after the previous flush, index of the flush)
    intervals, prev = [], 0
    for f in flushes + [len(ops)]:
        if any(is_w[prev:f]):
            intervals.append((prev, f))
        prev = f + 1
    states = []
    # flush states: the last flush of each run of flushes (others are
    # the same image)
    fl = [f for f in flushes if f + 1 == len(ops) or is_w[f + 1]]
    for f in rng.sample(fl, min(len(fl), n // 3)):
        states.append(State("flush", f + 1, ops[f].end))
    multi = [iv for iv in intervals if sum(is_w[iv[0]:iv[1]]) >= 2]
    nb = n // 3
    for _ in range(nb if multi else 0):
        lo, hi = rng.choice(multi)
        c = rng.randrange(lo + 1, hi)       # records [lo, c) of [lo, hi)
        states.append(State("between", c, ops[c - 1].end))
    ns = n - len(states)
    for _ in range(ns if multi else 0):
        lo, hi = rng.choice(multi)
        pcs = [p + (i,) for i in range(lo, hi) if is_w[i]
               for p in pieces(ops[i])]
        k = rng.randrange(1, len(pcs))
        extra = rng.sample(pcs, k)
        extra.sort(key=lambda p: p[3])      # in issue order where applied
        cut = ops[hi].start if hi < len(ops) else ops[-1].end
        states.append(State("subset", lo, cut, extra))
    states.sort(key=lambda s: (s.prefix, s.kind))
    for i, s in enumerate(states):
        s.name = "s%05d" % i
    return states


def violation_states(ops, n, rng):
    """A negative control: states no disk may produce.  Each is the log
    up to a flush with about half of the writes of five earlier
    flush-to-flush intervals left out, although later flushes made them
    durable.  The checker must find some of these broken whatever the
    build does, or it cannot fail."""
    flushes = [i for i, o in enumerate(ops) if o.type == W_FLUSH]
    intervals, prev = [], 0
    for f in flushes:
        w = [i for i in range(prev, f) if ops[i].type != W_FLUSH]
        if len(w) >= 2:
            intervals.append((w, f))
        prev = f + 1
    states = []
    if len(intervals) < 6:
        return states
    for k in range(n):
        picked = rng.sample(intervals[:-1], 5)
        last = max(f for _, f in picked)
        end = rng.choice([f for _, f in intervals if f > last])
        drop = set()
        for w, _ in picked:
            drop.update(rng.sample(w, max(1, len(w) // 2)))
        states.append(State("violation", end + 1, ops[end].end,
                            drop=frozenset(drop)))
    states.sort(key=lambda s: s.prefix)
    for i, s in enumerate(states):
        s.name = "v%05d" % i
    return states


# ---------------------------------------------------------------------------
# checking one state

CATEGORIES = [
    ("fuse4fs refused to mount", r"^(\(.\) )?fuse4fs refused"),
    ("orphan list/file", r"orphan"),
    ("bitmap differences", r"bitmap differences"),
    ("checksum mismatch", r"checksum"),
    ("free counts", r"free (blocks|inodes) count wrong|directories count wrong"),
    ("entry names a freed inode", r"deleted/unused inode|unused inode|"
     r"has deleted"),
    ("wrong link count", r"ref count is"),
    ("unattached inode", r"unattached"),
    ("wrong i_blocks / size", r"i_blocks is|i_size is"),
    ("multiply-claimed blocks", r"multiply-claimed|claimed by"),
    ("directory damage", r"directory|dir_nlink|\bhtree\b|\.\. in"),
    ("bad superblock", r"superblock|bad magic"),
]


def categorise(text):
    cats = set()
    for line in text.splitlines():
        low = line.lower()
        if not low.strip() or low.startswith(("e2fsck ", "pass ")):
            continue
        for name, rx in CATEGORIES:
            if re.search(rx, low):
                cats.add(name)
                break
    return cats or {"other"}


def needs_recovery(image):
    with open(image, "rb") as f:
        f.seek(1024 + 0x60)
        incompat = struct.unpack("<I", f.read(4))[0]
    return bool(incompat & 0x4)


def read_records(image):
    """The logger's file as debugfs reads it (catastrophic mode, no
    checksum checks: as much as can be read at all), and debugfs's
    complaints."""
    p = subprocess.run(["debugfs", "-c", "-n", "-R", "cat " + RECORDS, image],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=FSCK_TIMEOUT)
    err = [x for x in p.stderr.decode("utf-8", "replace").splitlines()
           if x.strip() and not x.startswith("debugfs ") and
           "catastrophic mode" not in x]
    return p.stdout, "; ".join(err)


def lost_records(image, synced, cut, notes=None):
    """Records whose fsync returned at or before log position cut and
    that image does not hold; why, if debugfs said something, goes to
    notes."""
    need = [i for i, pos in synced if pos <= cut]
    if not need:
        return []
    data, err = read_records(image)
    lost = [i for i in need
            if data[i * REC_SIZE:(i + 1) * REC_SIZE] != record_bytes(i)]
    if lost and notes is not None:
        notes.append("%d of %d records fsync'ed before the cut missing or "
                     "wrong (%d bytes read)%s" % (
                         len(lost), len(need), len(data),
                         ": debugfs: " + err if err else ""))
    return lost


def check_image(img, scratch, synced, cut, notes):
    """Recover img in place as a mount would, then check it.  Returns
    (problems, lost); what is known about lost records goes to notes."""
    problems = []
    why = mount_cycle(img, os.path.join(scratch, "mnt"),
                      os.path.join(scratch, "mount.log"))
    if why:
        problems.append(why)
    else:
        try:
            p = run(["e2fsck", "-fn", img], timeout=FSCK_TIMEOUT)
            if p.returncode:
                problems.append("e2fsck -fn exit %d:\n%s" % (
                    p.returncode, p.stdout.strip()))
        except subprocess.TimeoutExpired:
            problems.append("e2fsck -fn did not finish within %d s" %
                            FSCK_TIMEOUT)
    try:
        lost = lost_records(img, synced, cut, notes)
    except subprocess.TimeoutExpired:
        lost = [i for i, pos in synced if pos <= cut]
        notes.append("debugfs could not read %s within %d s" % (
            RECORDS, FSCK_TIMEOUT))
    return problems, lost


def check_state(path, scratch, synced, cut):
    """Both recovery paths; returns a result dict."""
    os.makedirs(os.path.join(scratch, "mnt"), exist_ok=True)
    res = dict(recovery=needs_recovery(path), problems=[], lost=[],
               lost_notes=[])
    if res["recovery"]:
        a = os.path.join(scratch, "a.img")
        run(["cp", "--sparse=always", path, a], check=True)
        try:
            p = run(["e2fsck", "-E", "journal_only", "-y", a],
                    timeout=FSCK_TIMEOUT)
        except subprocess.TimeoutExpired as e:
            p = subprocess.CompletedProcess(e.cmd, -9, "timed out", None)
        if p.returncode not in (0, 1):
            res["problems"].append("(a) e2fsck -E journal_only exit %d:\n%s"
                                   % (p.returncode, p.stdout.strip()))
        else:
            probs, lost = check_image(a, scratch, synced, cut,
                                      res["lost_notes"])
            res["problems"] += ["(a) " + x for x in probs]
            res["lost"] = lost
        os.unlink(a)
    probs, lost = check_image(path, scratch, synced, cut, res["lost_notes"])
    res["problems"] += [("(b) " if res["recovery"] else "") + x for x in probs]
    res["lost"] = sorted(set(res["lost"]) | set(lost))
    return res


# ---------------------------------------------------------------------------
# checking a recorded run

def check(d, nstates, seed, jobs=1, keep_failed=5, violate=False):
    with open(os.path.join(d, "manifest.json")) as f:
        man = json.load(f)
    variant = man["variant"]
    synced = man["synced"]
    mm, ops = parse_log(os.path.join(d, "wlog"))
    base, final = os.path.join(d, "base.img"), os.path.join(d, "image.img")
    work = os.path.join(d, "work.img")
    run(["cp", "--sparse=always", base, work], check=True)

    # The recorder must have seen everything: log + base == final image.
    fd = os.open(work, os.O_RDWR)
    for o in ops:
        apply_op(fd, mm, o)
    os.close(fd)
    if run(["cmp", "-s", work, final]).returncode:
        raise SetupError("%s: base + log differs from the final image: the "
                         "recorder missed writes" % variant)
    # Controls: the base and the final image must pass the very checks a
    # crash state gets, or the checker itself is broken.
    for name, img in (("base", base), ("final", final)):
        ctl = os.path.join(d, "control.img")
        run(["cp", "--sparse=always", img, ctl], check=True)
        r = check_state(ctl, os.path.join(d, "control.d"), synced,
                        ops[-1].end if name == "final" else 0)
        os.unlink(ctl)
        shutil.rmtree(os.path.join(d, "control.d"), ignore_errors=True)
        if r["problems"] or r["lost"]:
            raise SetupError("%s: control: the %s image fails the checks: "
                             "%s; lost records %s" % (variant, name,
                                                      r["problems"],
                                                      r["lost"][:10]))
    run(["cp", "--sparse=always", base, work], check=True)

    rng = random.Random(seed)
    if violate:
        states = violation_states(ops, nstates, rng)
    else:
        states = choose_states(ops, nstates, rng)
    nflush = sum(o.type == W_FLUSH for o in ops)
    say("%s: %d records (%d flushes, %.1f MiB), %d fsync'ed log records; "
        "checking %d crash states" % (variant, len(ops), nflush,
                                      len(mm) / MiB, len(synced), len(states)))
    fails_dir = os.path.join(d, "failed")
    os.makedirs(fails_dir, exist_ok=True)
    summary = dict(variant=variant, seed=seed, record_seed=man["seed"],
                   files=man["files"], opts=man["opts"], records=len(ops),
                   flushes=nflush, synced=len(synced), states=0, consistent=0,
                   inconsistent=0, states_losing=0, failed=0, records_lost=0,
                   recovery_states=0, by_kind={}, categories={},
                   examples=[])
    fd = os.open(work, os.O_RDWR)
    applied = 0
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=jobs)
    pending = collections.deque()
    kept = dict(bad=0, lost=0)      # failed states whose details are kept
    t0 = time.monotonic()

    def finish(st, fut, path, scratch):
        r = fut.result()
        summary["states"] += 1
        k = summary["by_kind"].setdefault(st.kind, [0, 0, 0])
        k[0] += 1
        summary["recovery_states"] += r["recovery"]
        bad = bool(r["problems"])
        if bad:
            summary["inconsistent"] += 1
            k[1] += 1
            for c in categorise("\n".join(r["problems"])):
                summary["categories"][c] = summary["categories"].get(c, 0) + 1
        else:
            summary["consistent"] += 1
        summary["failed"] += bool(bad or r["lost"])
        if r["lost"]:
            summary["states_losing"] += 1
            summary["records_lost"] += len(r["lost"])
            k[2] += 1
        if ((bad and kept["bad"] < keep_failed) or
                (r["lost"] and kept["lost"] < keep_failed)):
            kept["bad"] += bool(bad)
            kept["lost"] += bool(r["lost"])
            info = dict(state=st.name, what=st.describe(),
                        problems=r["problems"], lost=r["lost"][:50],
                        lost_notes=r["lost_notes"])
            summary["examples"].append(info)
            with open(os.path.join(fails_dir, st.name + ".txt"), "w") as f:
                f.write(json.dumps(info, indent=1) + "\n")
            # keep the unrecovered state for a look
            shutil.move(path + ".orig", os.path.join(fails_dir,
                                                     st.name + ".img"))
        if os.path.exists(path + ".orig"):
            os.unlink(path + ".orig")
        os.unlink(path)
        shutil.rmtree(scratch, ignore_errors=True)
        if summary["states"] % 50 == 0:
            say("%s: %d/%d states, %d inconsistent, %d losing records "
                "(%.0f s)" % (variant, summary["states"], len(states),
                              summary["inconsistent"],
                              summary["states_losing"],
                              time.monotonic() - t0))

    try:
        for st in states:
            while applied < st.prefix and not st.drop:
                apply_op(fd, mm, ops[applied])
                applied += 1
            path = os.path.join(d, st.name + ".img")
            if st.drop:
                # built from the base: records are left out in the middle
                run(["cp", "--sparse=always", base, path], check=True)
                sfd = os.open(path, os.O_RDWR)
                for i in range(st.prefix):
                    if i not in st.drop:
                        apply_op(sfd, mm, ops[i])
                os.close(sfd)
            else:
                run(["cp", "--sparse=always", work, path], check=True)
            if st.extra:
                sfd = os.open(path, os.O_RDWR)
                for o, lo, hi, _ in st.extra:
                    apply_op(sfd, mm, o, lo, hi)
                os.close(sfd)
            if min(kept.values()) < keep_failed:
                run(["cp", "--sparse=always", path, path + ".orig"],
                    check=True)
            scratch = os.path.join(d, st.name + ".d")
            fut = pool.submit(check_state, path, scratch, synced, st.cut)
            pending.append((st, fut, path, scratch))
            while len(pending) >= 2 * jobs:
                finish(*pending.popleft())
        while pending:
            finish(*pending.popleft())
    finally:
        os.close(fd)
        pool.shutdown()
    os.unlink(work)
    summary["seconds"] = round(time.monotonic() - t0, 1)
    with open(os.path.join(d, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    return summary


# ---------------------------------------------------------------------------
# the command line

def shown_examples(r, n=3):
    """The first n inconsistent states and the first n that lost
    records."""
    bad = [x for x in r["examples"] if x["problems"]][:n]
    lost = [x for x in r["examples"] if x["lost"]][:n]
    return [x for x in r["examples"] if x in bad or x in lost]


def table(results):
    lines = ["| variant | seed | states | consistent | inconsistent | "
             "states losing fsync'ed records | records lost | e2fsck findings |",
             "|---|---|---|---|---|---|---|---|"]
    tot = collections.Counter()
    for r in results:
        cats = ", ".join("%s %d" % kv for kv in sorted(
            r["categories"].items(), key=lambda kv: -kv[1]))
        lines.append("| %s%s | %d | %d | %d | %d | %d | %d | %s |" % (
            r["variant"], " (-o %s)" % ",".join(r["opts"]) if r["opts"] else "",
            r["seed"], r["states"], r["consistent"], r["inconsistent"],
            r["states_losing"], r["records_lost"], cats or "-"))
        for k in ("states", "consistent", "inconsistent", "states_losing",
                  "records_lost", "failed"):
            tot[k] += r[k]
    lines.append("| total | | %d | %d | %d | %d | %d | |" % (
        tot["states"], tot["consistent"], tot["inconsistent"],
        tot["states_losing"], tot["records_lost"]))
    return "\n".join(lines), tot


def env_list(name, default):
    v = os.environ.get(name)
    return [x for x in v.split(",") if x] if v else default


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--states", type=int,
                        default=int(os.environ.get("F4_CRASH_STATES", 60)),
                        help="crash states per variant and seed "
                        "(F4_CRASH_STATES, default 60)")
    common.add_argument("--jobs", type=int, default=1,
                        help="states checked in parallel (default 1)")
    common.add_argument("--violate", action="store_true",
                        help="negative control: check states that break "
                        "the disk model (flushed writes left out); the "
                        "checker must report failures")
    common.add_argument("--keep-failed", type=int, default=5,
                        help="failed states whose details and images are "
                        "kept (default 5)")
    r = sub.add_parser("run", parents=[common], help="record and check")
    r.add_argument("--variants", default=",".join(env_list(
        "F4_CRASH_VARIANTS", list(VARIANTS))),
        help="comma-separated, of: " + ", ".join(VARIANTS))
    r.add_argument("--seeds", default=",".join(env_list(
        "F4_CRASH_SEEDS", ["1"])), help="comma-separated (F4_CRASH_SEEDS)")
    r.add_argument("--files", type=int,
                   default=int(os.environ.get("F4_CRASH_FILES", DEFAULT_FILES)),
                   help="files the workload creates (F4_CRASH_FILES, "
                   "default %d)" % DEFAULT_FILES)
    r.add_argument("--dir", help="work directory, kept (default: a new one "
                   "under F4_CRASH_DIR or /dev/shm or /tmp, removed unless "
                   "states failed)")
    r.add_argument("--keep", action="store_true",
                   help="keep the work directory")
    r.add_argument("--json", help="write the results here")
    rec = sub.add_parser("record", help="only record a workload")
    rec.add_argument("--variant", required=True, choices=list(VARIANTS))
    rec.add_argument("--dir", required=True)
    rec.add_argument("--seed", type=int, default=1)
    rec.add_argument("--files", type=int, default=DEFAULT_FILES)
    c = sub.add_parser("check", parents=[common],
                       help="only check a recorded directory")
    c.add_argument("--dir", required=True)
    c.add_argument("--seed", type=int, default=1)
    i = sub.add_parser("interrupt", help="interrupt live mounts instead: "
                       "the shutdown ioctl or kill -9, at random moments")
    i.add_argument("--driver", choices=("kernel", "fuse4fs"),
                   default="fuse4fs")
    i.add_argument("--how", default="shutdown-logflush",
                   help="comma-separated, of: " + ", ".join(INTERRUPTS))
    i.add_argument("--variants", default=",".join(VARIANTS))
    i.add_argument("--runs", type=int, default=5,
                   help="interrupts per variant and kind (default 5)")
    i.add_argument("--seed", type=int, default=1)
    i.add_argument("--files", type=int, default=DEFAULT_FILES)
    i.add_argument("--max-delay", type=float, default=1.0,
                   help="latest interrupt, seconds into the workload")
    i.add_argument("--json", help="write the results here")
    a = ap.parse_args(argv)

    try:
        if a.cmd == "record":
            record(a.variant, a.dir, a.seed, a.files)
            return 0
        if a.cmd == "interrupt":
            hows = a.how.split(",")
            for h in hows:
                if h not in INTERRUPTS or (h == "kill9" and
                                           a.driver == "kernel"):
                    raise SetupError("no interrupt %r for %s" % (h, a.driver))
            top = tempfile.mkdtemp(prefix="crashcheck.", dir=scratch_base())
            res = interrupt(a.driver, a.variants.split(","), hows, a.runs,
                            a.seed, top, a.files, a.max_delay)
            if a.json:
                with open(a.json, "w") as f:
                    json.dump(res, f, indent=1)
            text, tot = interrupt_table(res)
            print(text)
            if not os.listdir(top):
                os.rmdir(top)
            return 1 if tot["inconsistent"] or tot["losing"] else 0
        if a.cmd == "check":
            res = [check(a.dir, a.states, a.seed, a.jobs, a.keep_failed,
                         a.violate)]
        else:
            variants = a.variants.split(",")
            for v in variants:
                if v not in VARIANTS:
                    raise SetupError("unknown variant %r" % v)
            top = a.dir or tempfile.mkdtemp(prefix="crashcheck.",
                                            dir=scratch_base())
            res = []
            try:
                for seed in [int(s) for s in a.seeds.split(",")]:
                    for v in variants:
                        d = os.path.join(top, "%s.%d" % (v, seed))
                        record(v, d, seed, a.files)
                        res.append(check(d, a.states, seed, a.jobs,
                                         a.keep_failed, a.violate))
                        if a.json:
                            with open(a.json, "w") as f:
                                json.dump(res, f, indent=1)
            finally:
                if not a.keep and not a.dir:
                    bad = any(r["inconsistent"] or r["states_losing"]
                              for r in res)
                    if bad:
                        say("failed states kept under %s/*/failed" % top)
                        for sub_d in os.listdir(top):
                            p = os.path.join(top, sub_d)
                            for f in os.listdir(p):
                                if f not in ("failed", "manifest.json",
                                             "summary.json"):
                                    fp = os.path.join(p, f)
                                    if os.path.isdir(fp):
                                        shutil.rmtree(fp, ignore_errors=True)
                                    else:
                                        os.unlink(fp)
                    else:
                        shutil.rmtree(top, ignore_errors=True)
    except (SetupError, OSError, subprocess.SubprocessError) as e:
        say("error:", e)
        return 2
    text, tot = table(res)
    print(text)
    for r in res:
        for ex in shown_examples(r):
            print("\n%s %s: %s" % (r["variant"], ex["state"], ex["what"]))
            for p in ex["problems"]:
                print("  " + "\n  ".join(p.splitlines()[:12]))
            if ex["lost"]:
                print("  lost fsync'ed records:", ex["lost"][:20])
                for n in ex["lost_notes"]:
                    print("  " + n)
    failed = tot["inconsistent"] or tot["states_losing"]
    if a.violate:
        say("negative control: %d of %d states that break the disk model "
            "failed the checks%s" % (tot["failed"], tot["states"],
                                     "" if failed else
                                     ": THE CHECKER CANNOT FAIL"))
        return 0 if failed else 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
