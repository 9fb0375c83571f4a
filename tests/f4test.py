"""Shared helpers for the fuse4fs integration tests.

Everything here is plain Python (no pytest fixtures); conftest.py builds
the fixtures on top of it.  The pieces:

- drivers and variants: how an image is made (mke2fs arguments per
  variant) and how it is mounted (fuse4fs, kernel ext4 via a loop device,
  or Debian's fuse2fs, chosen by F4_DRIVER);
- FS: one image plus one mount point, with mount/unmount/remount/fsck;
- running code as another user (fork + setresuid, or setpriv for commands);
- snapshots of a directory tree and their comparison;
- superblock readers (dumpe2fs -h, the raw on-disk superblock) and debugfs;
- ctypes wrappers for calls Python's os module lacks (renameat2,
  utimensat with UTIME_NOW/UTIME_OMIT, telldir/seekdir).
"""

import ctypes
import ctypes.util
import errno
import gc
import hashlib
import os
import pickle
import random
import signal
import stat
import struct
import subprocess
import sys
import time
import traceback

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ---------------------------------------------------------------------------
# configuration from the environment

DRIVERS = ("fuse4fs", "kernel", "fuse2fs")


def driver():
    d = os.environ.get("F4_DRIVER", "fuse4fs")
    if d not in DRIVERS:
        raise ValueError("F4_DRIVER=%r: must be one of %s" % (d, ", ".join(DRIVERS)))
    return d


def fuse4fs_binary():
    return os.environ.get("F4_BIN") or os.path.join(REPO, "fuse4fs", "fuse4fs")


def is_fuse(drv=None):
    return (drv or driver()) != "kernel"


PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
MiB = 1 << 20
GiB = 1 << 30
DEFAULT_IMAGE_SIZE = 256 * MiB
MOUNT_TIMEOUT = 10.0        # seconds until MNT must appear in mountinfo
EXIT_TIMEOUT = 30.0         # seconds for the daemon to exit after umount

# ---------------------------------------------------------------------------
# variants: mke2fs arguments.  Block and inode size are always explicit so
# that mke2fs.conf's "small" type (1 KiB blocks below 512 MiB) does not
# silently turn every small test image into a 1 KiB-block file system.

VARIANTS = {
    "ext2": ["-t", "ext2", "-b", "4096", "-I", "256"],
    "ext3": ["-t", "ext3", "-b", "4096", "-I", "256"],
    "ext4": ["-t", "ext4", "-b", "4096", "-I", "256"],
    "ext4-1k": ["-t", "ext4", "-b", "1024", "-I", "256"],
    "ext4-64k": ["-t", "ext4", "-b", "65536", "-I", "256"],
    "ext4-inline": ["-t", "ext4", "-b", "4096", "-I", "256", "-O", "inline_data"],
}
# Not in the default parametrization; tests ask for them by name.
EXTRA_VARIANTS = {
    # 128-byte inodes: no room for the extra timestamp fields, so times
    # have one-second granularity and the 1901..2038 range.
    "ext4-i128": ["-t", "ext4", "-b", "4096", "-I", "128"],
    "ext2-i128": ["-t", "ext2", "-b", "4096", "-I", "128"],
}
ALL_VARIANTS = dict(VARIANTS, **EXTRA_VARIANTS)
DEFAULT_VARIANTS = tuple(VARIANTS)


def variant_blocksize(variant):
    args = ALL_VARIANTS[variant]
    return int(args[args.index("-b") + 1])


def variant_inode_size(variant):
    args = ALL_VARIANTS[variant]
    return int(args[args.index("-I") + 1])


def kernel_can_mount(variant):
    """The kernel's ext4 needs block size <= page size."""
    return variant_blocksize(variant) <= PAGE_SIZE


def run(argv, check=True, input=None, **kw):
    """Run a command, capture text output; on failure raise with output."""
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, input=input, **kw)
    if check and p.returncode != 0:
        raise RuntimeError("%s exited %d\nstdout:\n%s\nstderr:\n%s" % (
            " ".join(map(str, argv)), p.returncode, p.stdout, p.stderr))
    return p


def make_image(path, variant, size=DEFAULT_IMAGE_SIZE, extra=()):
    """A fresh sparse image file of the given variant."""
    if os.path.exists(path):
        os.unlink(path)
    with open(path, "wb") as f:
        f.truncate(size)
    run(["mke2fs", "-F", "-q"] + ALL_VARIANTS[variant] + list(extra) + [path])
    return path


def parse_size(v):
    if isinstance(v, int):
        return v
    v = str(v).strip().upper()
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    if v and v[-1] in mult:
        return int(v[:-1]) * mult[v[-1]]
    return int(v)


# ---------------------------------------------------------------------------
# mount table

def _unescape_mountinfo(s):
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and i + 4 <= len(s) and s[i + 1:i + 4].isdigit():
            out.append(chr(int(s[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def mountinfo():
    """List of (mount_point, fstype, source, mount_opts, super_opts)."""
    res = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, right = line.rstrip("\n").split(" - ", 1)
            lf = left.split(" ")
            rf = right.split(" ")
            res.append((_unescape_mountinfo(lf[4]), rf[0],
                        _unescape_mountinfo(rf[1]), lf[5],
                        rf[2] if len(rf) > 2 else ""))
    return res


def mount_entry(mnt):
    """The topmost mountinfo entry for mnt, or None."""
    mnt = os.path.realpath(mnt)
    found = None
    for e in mountinfo():
        if e[0] == mnt:
            found = e
    return found


def is_mounted(mnt):
    return mount_entry(mnt) is not None


# ---------------------------------------------------------------------------
# mount option mapping per driver

def map_opts(drv, opts):
    """Translate the harness's logical mount options for a driver.

    Logical options: kernel (the kernel checks permissions: allow_other +
    default_permissions), allow_other, ro, acl, errors=..., fakeroot, and
    anything else, passed through unchanged to fuse4fs.
    """
    opts = [o for o in (opts or ()) if o]
    out = []
    if drv == "fuse4fs":
        return list(opts)
    if drv == "fuse2fs":
        for o in opts:
            if o == "kernel":
                out += ["allow_other", "default_permissions"]
            elif o == "acl":
                continue            # fuse2fs has no such option
            else:
                out.append(o)
        extra = os.environ.get("F4_FUSE2FS_OPTS", "")
        out += [o for o in extra.split(",") if o]
        return list(dict.fromkeys(out))
    # kernel ext4: it always checks permissions itself and every user can
    # reach a kernel mount, so kernel/allow_other/fakeroot mean nothing.
    for o in opts:
        if o in ("kernel", "allow_other", "default_permissions", "fakeroot"):
            continue
        out.append(o)
    return out


def daemon_argv(drv, image, mnt, opts):
    mapped = map_opts(drv, opts)
    if drv == "fuse4fs":
        argv = [fuse4fs_binary()]
    elif drv == "fuse2fs":
        argv = ["fuse2fs"]
    else:
        raise ValueError(drv)
    if mapped:
        argv += ["-o", ",".join(mapped)]
    return argv + [image, mnt, "-f"]


class MountError(Exception):
    pass


def spawn_daemon(drv, image, mnt, opts, log_path):
    """Start a FUSE daemon in the foreground; return the Popen."""
    log = open(log_path, "ab")
    try:
        return subprocess.Popen(daemon_argv(drv, image, mnt, opts),
                                stdin=subprocess.DEVNULL, stdout=log,
                                stderr=log, start_new_session=True)
    finally:
        log.close()


def read_log(path, limit=8000):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return ""
    return data[-limit:].decode("utf-8", "replace")


def wait_mounted(proc, mnt, log_path, timeout=MOUNT_TIMEOUT):
    """Wait until mnt shows up in mountinfo; raise with the daemon's log."""
    deadline = time.monotonic() + timeout
    while True:
        if is_mounted(mnt):
            return
        rc = proc.poll()
        if rc is not None:
            raise MountError("daemon %s exited with status %d before %s was "
                             "mounted; its output:\n%s" % (
                                 " ".join(proc.args), rc, mnt,
                                 read_log(log_path)))
        if time.monotonic() > deadline:
            raise MountError("%s did not appear in /proc/self/mountinfo within "
                             "%.0f s of starting %s; daemon output:\n%s" % (
                                 mnt, timeout, " ".join(proc.args),
                                 read_log(log_path)))
        time.sleep(0.02)


def close_fds_under(mnt):
    """Close this process's file descriptors open below mnt; return a
    list of the paths closed."""
    closed = []
    prefix = os.path.realpath(mnt)
    try:
        cwd = os.readlink("/proc/self/cwd")
    except OSError:
        cwd = ""
    if cwd == prefix or cwd.startswith(prefix + "/"):
        os.chdir("/")
        closed.append("cwd " + cwd)
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink("/proc/self/fd/" + name)
        except OSError:
            continue
        if target == prefix or target.startswith(prefix + "/"):
            try:
                os.close(int(name))
                closed.append(target)
            except OSError:
                pass
    return closed


def umount(mnt, lazy=False):
    argv = ["umount"] + (["-l"] if lazy else []) + [mnt]
    return run(argv, check=False)


# ---------------------------------------------------------------------------
# the file system under test

class FS:
    """One image file and one mount point.

    Attributes: mnt, image, variant, driver, blocksize, inode_size, opts,
    workdir, proc (the FUSE daemon's Popen, None for the kernel driver).
    """

    def __init__(self, workdir, variant, drv=None, size=DEFAULT_IMAGE_SIZE,
                 mkfs_extra=(), opts=(), name="fs"):
        self.workdir = workdir
        self.variant = variant
        self.driver = drv or driver()
        self.size = size
        self.mkfs_extra = list(mkfs_extra)
        self.opts = list(opts)
        self.image = os.path.join(workdir, name + ".img")
        self.mnt = os.path.join(workdir, name + ".mnt")
        self.log = os.path.join(workdir, name + ".log")
        self.blocksize = variant_blocksize(variant)
        self.inode_size = variant_inode_size(variant)
        self.proc = None
        self.mounted = False
        self.mount_count = 0        # how many times this object mounted
        self.leaked_fds = []        # fds of ours that kept the mount busy
        os.makedirs(self.mnt, exist_ok=True)
        os.chmod(self.mnt, 0o755)

    def __repr__(self):
        return "<FS %s %s %s%s>" % (self.driver, self.variant, self.mnt,
                                    " mounted" if self.mounted else "")

    # -- image ---------------------------------------------------------

    def mkfs(self):
        make_image(self.image, self.variant, self.size, self.mkfs_extra)
        return self

    # -- paths -------------------------------------------------------------

    def path(self, *parts):
        return os.path.join(self.mnt, *parts)

    p = path

    # -- mount / unmount -------------------------------------------------

    def mount(self, opts=None):
        assert not self.mounted, "already mounted"
        if opts is not None:
            self.opts = list(opts)
        if self.driver == "kernel":
            mopts = ["loop"] + map_opts("kernel", self.opts)
            p = run(["mount", "-t", "ext4", "-o", ",".join(mopts), self.image,
                     self.mnt], check=False)
            if p.returncode != 0:
                raise MountError("mount -t ext4 -o %s %s %s failed (%d):\n%s%s" % (
                    ",".join(mopts), self.image, self.mnt, p.returncode,
                    p.stdout, p.stderr))
            if not is_mounted(self.mnt):
                raise MountError("mount succeeded but %s is not in mountinfo" %
                                 self.mnt)
        else:
            if self.driver == "fuse4fs":
                b = fuse4fs_binary()
                if not os.access(b, os.X_OK):
                    raise MountError("fuse4fs binary %s is missing or not "
                                     "executable (build it, or set F4_BIN)" % b)
            with open(self.log, "ab") as f:
                f.write(("==== %s\n" % " ".join(
                    daemon_argv(self.driver, self.image, self.mnt,
                                self.opts))).encode())
            self.proc = spawn_daemon(self.driver, self.image, self.mnt,
                                     self.opts, self.log)
            try:
                wait_mounted(self.proc, self.mnt, self.log)
            except MountError:
                self._kill_daemon()
                if is_mounted(self.mnt):
                    umount(self.mnt, lazy=True)
                raise
        self.mounted = True
        self.mount_count += 1
        return self

    def _kill_daemon(self):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    pass
                try:
                    self.proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        rc = self.proc.poll()
        self.proc = None
        return rc

    def unmount(self, retries=15):
        """umount MNT; for FUSE the daemon must then exit 0 within 30 s.

        Raises (after cleaning up) if the unmount or the daemon misbehaves.
        """
        if not self.mounted:
            return
        last = None
        for i in range(retries):
            p = umount(self.mnt)
            if p.returncode == 0 and not is_mounted(self.mnt):
                last = None
                break
            last = p
            # A leftover open file (e.g. a raw fd of a test that failed
            # half-way) keeps the mount busy: let the garbage collector
            # close file objects, then close our own fds below the mount.
            gc.collect()
            if i == 0:
                self.leaked_fds += close_fds_under(self.mnt)
            time.sleep(0.1 if i < 5 else 0.3)
        if last is not None:
            self.force_cleanup()
            raise MountError("umount %s failed: %s%s (forced lazy umount)" % (
                self.mnt, last.stdout, last.stderr))
        self.mounted = False
        if self.proc is not None:
            proc = self.proc
            try:
                rc = proc.wait(EXIT_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._kill_daemon()
                raise MountError("daemon %s still running %.0f s after umount; "
                                 "killed.  Output:\n%s" % (
                                     " ".join(proc.args), EXIT_TIMEOUT,
                                     read_log(self.log)))
            self.proc = None
            if rc != 0:
                raise MountError("daemon %s exited with status %d after umount;"
                                 " output:\n%s" % (" ".join(proc.args), rc,
                                                   read_log(self.log)))

    def force_cleanup(self):
        """Last resort: lazy umount, kill the daemon.  Returns a description
        of what had to be done ('' when nothing was left)."""
        done = []
        if is_mounted(self.mnt):
            for _ in range(3):
                if umount(self.mnt).returncode == 0:
                    break
                gc.collect()
                time.sleep(0.2)
            if is_mounted(self.mnt):
                umount(self.mnt, lazy=True)
                done.append("lazy umount of %s" % self.mnt)
            else:
                done.append("umount of %s" % self.mnt)
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self._kill_daemon()
                done.append("killed daemon")
        self.proc = None
        self.mounted = False
        return ", ".join(done)

    def fsck(self):
        """e2fsck -fn IMAGE must exit 0."""
        p = run(["e2fsck", "-fn", self.image], check=False)
        assert p.returncode == 0, "e2fsck -fn %s exited %d:\n%s%s" % (
            self.image, p.returncode, p.stdout, p.stderr)
        return p.stdout + p.stderr

    def remount(self, opts=None, fsck=True):
        """Unmount, check with e2fsck, mount again (same opts if None)."""
        self.unmount()
        if fsck:
            self.fsck()
        return self.mount(opts)

    # -- conveniences ------------------------------------------------------

    def statfs(self):
        return os.statvfs(self.mnt)

    def superblock(self):
        return dumpe2fs_h(self.image)

    def sb_raw(self):
        return read_superblock(self.image)

    def kill_daemon(self):
        """Simulate a crash (FUSE drivers only)."""
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            self.proc = None


# ---------------------------------------------------------------------------
# running as another user

def _child_setid(uid, gid, groups):
    os.setgroups(list(groups))
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)


class ChildError(Exception):
    pass


def run_as(uid, gid, fn, *args, groups=(), umask=None, **kwargs):
    """Call fn(*args, **kwargs) in a forked child with the given ids.

    Returns fn's (picklable) result.  An OSError in the child is raised
    again here with the same errno and filename; any other exception
    becomes ChildError carrying the child's traceback.
    """
    r, w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            try:
                _child_setid(uid, gid, groups)
                if umask is not None:
                    os.umask(umask)
                res = ("ok", fn(*args, **kwargs))
            except OSError as e:
                res = ("oserror", (e.errno, e.strerror, e.filename, e.filename2))
            except BaseException:
                res = ("error", traceback.format_exc())
            data = pickle.dumps(res)
            with os.fdopen(w, "wb") as f:
                f.write(data)
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    if not data:
        raise ChildError("child as uid %d exited without a result (status %d)"
                         % (uid, status))
    kind, val = pickle.loads(data)
    if kind == "ok":
        return val
    if kind == "oserror":
        en, msg, fn1, fn2 = val
        if fn2 is not None:
            raise OSError(en, msg, fn1, None, fn2)
        if fn1 is not None:
            raise OSError(en, msg, fn1)
        raise OSError(en, msg)
    raise ChildError("in child as uid %d:\n%s" % (uid, val))


def errno_of(fn, *args, **kwargs):
    """0 if fn(*args) succeeds, else the OSError's errno."""
    try:
        fn(*args, **kwargs)
        return 0
    except OSError as e:
        return e.errno


def errno_as(uid, gid, fn, *args, groups=(), **kwargs):
    """errno_of(fn, *args) run as another user."""
    try:
        run_as(uid, gid, fn, *args, groups=groups, **kwargs)
        return 0
    except OSError as e:
        return e.errno


def run_cmd_as(uid, gid, argv, groups=None, check=True):
    """Run a command as another user through setpriv(1)."""
    pre = ["setpriv", "--reuid=%d" % uid, "--regid=%d" % gid]
    if groups:
        pre.append("--groups=" + ",".join(str(g) for g in groups))
    else:
        pre.append("--clear-groups")
    return run(pre + list(argv), check=check)


def errname(e):
    return errno.errorcode.get(e, str(e)) if e else "OK"


def assert_errno(expected, fn, *args, **kwargs):
    """fn(*args) must fail with errno expected (or one of a tuple)."""
    got = errno_of(fn, *args, **kwargs)
    exp = expected if isinstance(expected, tuple) else (expected,)
    assert got in exp, "%s%r: expected %s, got %s" % (
        getattr(fn, "__name__", fn), args, "/".join(errname(x) for x in exp),
        errname(got))


# ---------------------------------------------------------------------------
# data helpers

def pattern(n, seed=0):
    """n bytes of deterministic pseudo-random data for a seed."""
    return random.Random(seed).randbytes(n)


def write_file(path, data, mode=0o644):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
    finally:
        os.close(fd)


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def pread_all(fd, size, off):
    out = bytearray()
    while len(out) < size:
        b = os.pread(fd, size - len(out), off + len(out))
        if not b:
            break
        out += b
    return bytes(out)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


# ---------------------------------------------------------------------------
# tree snapshots

def snapshot(root, data=True, dir_sizes=False, times=False, ignore=()):
    """Describe the tree under root.

    Returns {"entries": {relpath: dict}, "links": set of frozensets of
    relpaths that share one inode}.  Entry fields: type, mode, uid, gid,
    size (not for directories unless dir_sizes), nlink, sha256 (regular
    files, if data), target (symlinks), rdev (devices), and with times the
    atime/mtime in ns.
    """
    entries = {}
    by_ino = {}

    def visit(rel):
        full = os.path.join(root, rel) if rel else root
        st = os.lstat(full)
        fmt = stat.S_IFMT(st.st_mode)
        e = {"type": {stat.S_IFREG: "reg", stat.S_IFDIR: "dir",
                      stat.S_IFLNK: "lnk", stat.S_IFCHR: "chr",
                      stat.S_IFBLK: "blk", stat.S_IFIFO: "fifo",
                      stat.S_IFSOCK: "sock"}.get(fmt, hex(fmt)),
             "mode": oct(stat.S_IMODE(st.st_mode)),
             "uid": st.st_uid, "gid": st.st_gid, "nlink": st.st_nlink}
        if fmt != stat.S_IFDIR or dir_sizes:
            e["size"] = st.st_size
        if fmt == stat.S_IFREG and data:
            e["sha256"] = sha256_file(full)
        elif fmt == stat.S_IFLNK:
            e["target"] = os.readlink(full)
        elif fmt in (stat.S_IFCHR, stat.S_IFBLK):
            e["rdev"] = (os.major(st.st_rdev), os.minor(st.st_rdev))
        if times:
            e["mtime_ns"] = st.st_mtime_ns
            e["atime_ns"] = st.st_atime_ns
        entries[rel or "."] = e
        by_ino.setdefault(st.st_ino, []).append(rel or ".")
        if fmt == stat.S_IFDIR:
            for name in sorted(os.listdir(full)):
                r = os.path.join(rel, name) if rel else name
                if r in ignore:
                    continue
                visit(r)

    visit("")
    links = set(frozenset(v) for v in by_ino.values() if len(v) > 1)
    return {"entries": entries, "links": links}


def diff_snapshots(a, b, names=("a", "b")):
    """Human-readable list of differences between two snapshots."""
    out = []
    ea, eb = a["entries"], b["entries"]
    for k in sorted(set(ea) | set(eb)):
        if k not in ea:
            out.append("only in %s: %s %r" % (names[1], k, eb[k]))
        elif k not in eb:
            out.append("only in %s: %s %r" % (names[0], k, ea[k]))
        elif ea[k] != eb[k]:
            fields = sorted(set(ea[k]) | set(eb[k]))
            d = ["%s %s=%r %s=%r" % (f, names[0], ea[k].get(f), names[1],
                                     eb[k].get(f))
                 for f in fields if ea[k].get(f) != eb[k].get(f)]
            out.append("%s: %s" % (k, "; ".join(d)))
    la, lb = a["links"], b["links"]
    for s in sorted(la - lb, key=sorted):
        out.append("hard-link group only in %s: %s" % (names[0], sorted(s)))
    for s in sorted(lb - la, key=sorted):
        out.append("hard-link group only in %s: %s" % (names[1], sorted(s)))
    return out


def assert_trees_equal(root_a, root_b, names=("a", "b"), **kw):
    d = diff_snapshots(snapshot(root_a, **kw), snapshot(root_b, **kw), names)
    assert not d, "trees differ:\n  " + "\n  ".join(d[:60])


# ---------------------------------------------------------------------------
# superblock, dumpe2fs, debugfs

def dumpe2fs_h(image):
    """dumpe2fs -h as a dict of 'Field name' -> string value."""
    p = run(["dumpe2fs", "-h", image])
    out = {}
    for line in p.stdout.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            out[k.strip()] = v.strip()
    return out


# (name, offset, struct format) in struct ext2_super_block; little endian.
_SB_FIELDS = [
    ("s_inodes_count", 0x00, "I"), ("s_blocks_count_lo", 0x04, "I"),
    ("s_r_blocks_count_lo", 0x08, "I"), ("s_free_blocks_count_lo", 0x0C, "I"),
    ("s_free_inodes_count", 0x10, "I"), ("s_first_data_block", 0x14, "I"),
    ("s_log_block_size", 0x18, "I"), ("s_blocks_per_group", 0x20, "I"),
    ("s_inodes_per_group", 0x28, "I"), ("s_mtime", 0x2C, "I"),
    ("s_wtime", 0x30, "I"), ("s_mnt_count", 0x34, "H"),
    ("s_max_mnt_count", 0x36, "h"), ("s_magic", 0x38, "H"),
    ("s_state", 0x3A, "H"), ("s_errors", 0x3C, "H"),
    ("s_lastcheck", 0x40, "I"), ("s_rev_level", 0x4C, "I"),
    ("s_inode_size", 0x58, "H"), ("s_feature_compat", 0x5C, "I"),
    ("s_feature_incompat", 0x60, "I"), ("s_feature_ro_compat", 0x64, "I"),
    ("s_min_extra_isize", 0x15C, "H"), ("s_want_extra_isize", 0x15E, "H"),
    ("s_flags", 0x160, "I"), ("s_blocks_count_hi", 0x150, "I"),
    ("s_r_blocks_count_hi", 0x154, "I"), ("s_free_blocks_count_hi", 0x158, "I"),
    ("s_overhead_clusters", 0x248, "I"),
    ("s_mtime_hi", 0x275, "B"), ("s_wtime_hi", 0x274, "B"),
    ("s_error_count", 0x194, "I"),
]
EXT2_VALID_FS = 0x0001
EXT2_ERROR_FS = 0x0002
EXT3_ORPHAN_FS = 0x0004


def read_superblock(image):
    """The primary superblock's fields, read from the image directly."""
    with open(image, "rb") as f:
        f.seek(1024)
        raw = f.read(1024)
    sb = {}
    for name, off, fmt in _SB_FIELDS:
        sb[name] = struct.unpack_from("<" + fmt, raw, off)[0]
    sb["s_last_mounted"] = raw[0x88:0x88 + 64].split(b"\0", 1)[0].decode(
        "utf-8", "replace")
    sb["s_volume_name"] = raw[0x78:0x78 + 16].split(b"\0", 1)[0].decode(
        "utf-8", "replace")
    sb["mtime"] = sb["s_mtime"] | (sb["s_mtime_hi"] << 32)
    sb["wtime"] = sb["s_wtime"] | (sb["s_wtime_hi"] << 32)
    sb["blocksize"] = 1024 << sb["s_log_block_size"]
    sb["clean"] = bool(sb["s_state"] & EXT2_VALID_FS) and not (
        sb["s_state"] & EXT2_ERROR_FS)
    sb["r_blocks"] = sb["s_r_blocks_count_lo"] | (sb["s_r_blocks_count_hi"] << 32)
    sb["blocks"] = sb["s_blocks_count_lo"] | (sb["s_blocks_count_hi"] << 32)
    sb["free_blocks"] = (sb["s_free_blocks_count_lo"] |
                         (sb["s_free_blocks_count_hi"] << 32))
    return sb


def debugfs(image, *cmds, write=False):
    """Run debugfs requests on an (unmounted) image; return stdout."""
    argv = ["debugfs"] + (["-w"] if write else [])
    if len(cmds) == 1:
        return run(argv + ["-R", cmds[0], image]).stdout
    return run(argv + ["-f", "-", image], input="\n".join(cmds) + "\n").stdout


def debugfs_stat(image, path):
    """debugfs 'stat' of a path (relative to the fs root)."""
    return debugfs(image, "stat /" + path.lstrip("/"))


def inode_flags(image, path):
    """The inode's Flags: value from debugfs stat, as an int."""
    for line in debugfs_stat(image, path).splitlines():
        if "Flags:" in line:
            part = line.split("Flags:", 1)[1].split()[0]
            return int(part, 16)
    raise AssertionError("no Flags in debugfs stat of %s" % path)


EXT4_INLINE_DATA_FL = 0x10000000
EXT4_EXTENTS_FL = 0x00080000
EXT4_INDEX_FL = 0x00001000

# ---------------------------------------------------------------------------
# ctypes wrappers

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
RENAME_WHITEOUT = 4
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2


def _check(res, *names):
    if res < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), *names)
    return res


FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
FALLOC_FL_NO_HIDE_STALE = 0x04
FALLOC_FL_COLLAPSE_RANGE = 0x08
FALLOC_FL_ZERO_RANGE = 0x10
FALLOC_FL_INSERT_RANGE = 0x20
FALLOC_FL_UNSHARE_RANGE = 0x40


def fallocate(fd, mode, off, length):
    """fallocate(2) with any mode (os.posix_fallocate has none)."""
    _libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64,
                                ctypes.c_int64]
    _libc.fallocate.restype = ctypes.c_int
    if _libc.fallocate(fd, mode, off, length) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def renameat2(old, new, flags=0):
    _libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int,
                                ctypes.c_char_p, ctypes.c_uint]
    _check(_libc.renameat2(AT_FDCWD, os.fsencode(old), AT_FDCWD,
                           os.fsencode(new), flags), old, new)


class _timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def utimensat(path, atime, mtime, follow=True):
    """atime/mtime: None (= UTIME_NOW), "omit", "now", or (sec, nsec)."""
    def ts(v):
        if v is None or v == "now":
            return _timespec(0, UTIME_NOW)
        if v == "omit":
            return _timespec(0, UTIME_OMIT)
        return _timespec(int(v[0]), int(v[1]))
    arr = (_timespec * 2)(ts(atime), ts(mtime))
    _libc.utimensat.argtypes = [ctypes.c_int, ctypes.c_char_p,
                                ctypes.POINTER(_timespec), ctypes.c_int]
    _check(_libc.utimensat(AT_FDCWD, os.fsencode(path), arr,
                           0 if follow else AT_SYMLINK_NOFOLLOW), path)


class _dirent64(ctypes.Structure):
    _fields_ = [("d_ino", ctypes.c_uint64), ("d_off", ctypes.c_int64),
                ("d_reclen", ctypes.c_ushort), ("d_type", ctypes.c_ubyte),
                ("d_name", ctypes.c_char * 256)]


_libc.opendir.restype = ctypes.c_void_p
_libc.opendir.argtypes = [ctypes.c_char_p]
_libc.readdir64.restype = ctypes.POINTER(_dirent64)
_libc.readdir64.argtypes = [ctypes.c_void_p]
_libc.telldir.restype = ctypes.c_long
_libc.telldir.argtypes = [ctypes.c_void_p]
_libc.seekdir.restype = None
_libc.seekdir.argtypes = [ctypes.c_void_p, ctypes.c_long]
_libc.rewinddir.restype = None
_libc.rewinddir.argtypes = [ctypes.c_void_p]
_libc.closedir.argtypes = [ctypes.c_void_p]


class Dir:
    """opendir/readdir/telldir/seekdir through libc."""

    def __init__(self, path):
        self.dirp = _libc.opendir(os.fsencode(path))
        if not self.dirp:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e), path)

    def read(self):
        """(name, d_ino, d_type) of the next entry or None at the end."""
        ctypes.set_errno(0)
        d = _libc.readdir64(self.dirp)
        if not d:
            e = ctypes.get_errno()
            if e:
                raise OSError(e, os.strerror(e))
            return None
        return (os.fsdecode(d.contents.d_name), d.contents.d_ino,
                d.contents.d_type)

    def read_all(self):
        out = []
        while True:
            e = self.read()
            if e is None:
                return out
            out.append(e)

    def tell(self):
        return _libc.telldir(self.dirp)

    def seek(self, pos):
        _libc.seekdir(self.dirp, pos)

    def rewind(self):
        _libc.rewinddir(self.dirp)

    def close(self):
        if self.dirp:
            _libc.closedir(self.dirp)
            self.dirp = None

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def __del__(self):
        self.close()


# d_type values
DT_UNKNOWN, DT_FIFO, DT_CHR, DT_DIR, DT_BLK, DT_REG, DT_LNK, DT_SOCK = (
    0, 1, 2, 4, 6, 8, 10, 12)


def dtype_of_mode(mode):
    return {stat.S_IFIFO: DT_FIFO, stat.S_IFCHR: DT_CHR, stat.S_IFDIR: DT_DIR,
            stat.S_IFBLK: DT_BLK, stat.S_IFREG: DT_REG, stat.S_IFLNK: DT_LNK,
            stat.S_IFSOCK: DT_SOCK}[stat.S_IFMT(mode)]


def wait_statfs(path, ok, timeout=5.0):
    """statvfs(path) until ok(st) holds or timeout seconds pass; returns
    the last result.  The kernel sends RELEASE and FORGET after close()
    returns, so space held by a just-closed unlinked file comes back a
    moment later, not at once as on kernel ext4.  Even a FORGET queued
    before unlink() or rmdir() returned may reach the daemon only after
    several later requests (the kernel lets up to 8 queued requests
    overtake pending forgets), so a statfs right after an unlink, rm -rf
    or sync can still count the last inode removed, and its blocks, as
    in use.  Each statvfs here is one more request, so this converges."""
    deadline = time.monotonic() + timeout
    while True:
        st = os.statvfs(path)
        if ok(st) or time.monotonic() > deadline:
            return st
        time.sleep(0.02)


def sync_fs(path):
    """syncfs(2) on the file system holding path."""
    fd = os.open(path, os.O_RDONLY)
    try:
        _libc.syncfs.argtypes = [ctypes.c_int]
        _check(_libc.syncfs(fd), path)
    finally:
        os.close(fd)
