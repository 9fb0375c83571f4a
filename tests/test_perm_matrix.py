"""Permissions, table-driven, against the kernel's ext4 (issue 15).

For a matrix of objects (owner, group, mode with setuid/setgid/sticky
bits), callers (root, the owner not in the file's group, a member of the
group, a member through its 70th supplementary group, somebody else) and
operations (open r/w/rw, execve, chmod, chown, chgrp, utimes explicit and
"now", truncate, setfacl, unlink and rename in sticky and plain
directories), each caller does each operation once on a fuse4fs mount and
once on a kernel ext4 mount of the same tree, and the two must agree on
the errno and on the mode left behind.

fuse4fs modes covered:
- allow_other (which implies default_permissions: the kernel checks),
  with and without writeback_cache;
- the mode where fuse4fs checks permissions itself, which is left only
  for mounts nobody but their owner can reach: each caller mounts an
  image of its own (through fusermount3, root directly) and works on it,
  with and without writeback_cache.

One difference is expected and asserted as such: where fuse4fs checks
itself without the write-back cache, a chmod by a non-owner who may write
a regular file, dropping exactly the setuid/setgid bits a write would
drop, looks the same as the chmod the kernel sends for a writer (libfuse
3.14 doesn't take on FUSE_HANDLE_KILLPRIV), so fuse4fs allows it.

Besides the matrix, one test per defect of issue 15 items 10-16.
"""

import errno
import os
import re
import stat
import struct
import subprocess

import pytest

import f4test
from f4test import run_as

pytestmark = [pytest.mark.variants("ext4"), pytest.mark.image_size("64M"),
              pytest.mark.fuse_only,
              pytest.mark.skipif(f4test.driver() != "fuse4fs",
                                 reason="fuse4fs' own options and modes")]

U1 = (2000, 2000)           # owner of the "u1" objects, not in G
U2 = (2001, 2001)           # member of G
U3 = (2003, 2003)           # nobody in particular
U4 = (2004, 2004)           # member of G through its 70th group
G = 2002
MANY = tuple(range(1000, 1069)) + (G,)     # G sorts 70th, as /proc lists

CALLERS = {
    "root": (0, 0, ()),
    "owner": (U1[0], U1[1], ()),
    "member": (U2[0], U2[1], (G,)),
    "member70": (U4[0], U4[1], MANY),
    "other": (U3[0], U3[1], ()),
}

OWNERS = {"u1": (U1[0], G), "root": (0, G)}
FILE_MODES = (0o604, 0o640, 0o066, 0o744, 0o711, 0o4755, 0o2775, 0o6777,
              0o2745)
DIR_MODES = (0o2777, 0o3777, 0o2755, 0o1777, 0o755)
FILE_OPS = ("open_r", "open_w", "open_rw", "exec", "chmod_same",
            "chmod_dropid", "chgrp_own", "chown_give", "utime_set",
            "utime_now", "truncate", "setfacl")
DIR_OPS = ("chmod_same", "chmod_dropid", "setfacl", "utime_set")
STICKY_DIRS = {"s_root": (0, 0, 0o1777), "s_u1": (U1[0], G, 0o1777),
               "p_root": (0, 0, 0o777)}
VICTIMS = {"v_root": (0, 0), "v_u1": U1, "v_u2": U2, "v_u3": U3}

TRUE_BIN = open("/bin/true", "rb").read()

# ACL_USER_OBJ rw, ACL_USER U3 r, ACL_GROUP_OBJ r, ACL_MASK r, ACL_OTHER -
ACL_XATTR = struct.pack("<I", 2) + b"".join(
    struct.pack("<HHI", tag, perm, ident) for tag, perm, ident in (
        (0x01, 6, 0xffffffff), (0x02, 4, U3[0]), (0x04, 4, 0xffffffff),
        (0x10, 4, 0xffffffff), (0x20, 0, 0xffffffff)))


@pytest.fixture(autouse=True)
def _umask():
    old = os.umask(0o022)
    yield
    os.umask(old)


# ---------------------------------------------------------------------------
# the tree each caller works on

def plan(caller):
    """[(key, op, relpath)] for one caller; objects are per caller and
    per operation, so that every operation meets the object fresh."""
    out = []
    base = "c_" + caller
    for oname in OWNERS:
        for m in FILE_MODES:
            for op in FILE_OPS:
                rel = "%s/f_%s_%04o_%s" % (base, oname, m, op)
                out.append(("file %s %04o %s" % (oname, m, op), op, rel))
        for m in DIR_MODES:
            for op in DIR_OPS:
                rel = "%s/d_%s_%04o_%s" % (base, oname, m, op)
                out.append(("dir %s %04o %s" % (oname, m, op), op, rel))
    for dname in STICKY_DIRS:
        for vname in VICTIMS:
            for op in ("unlink", "rename"):
                rel = "%s/%s/%s_%s" % (base, dname, vname, op)
                out.append(("%s %s %s" % (dname, vname, op), op, rel))
    return out


def populate(root, callers, uidmap=None):
    """As root: the objects of these callers below root (owners' uids
    translated through uidmap)."""
    def own(uid, gid):
        os.chown(p, (uidmap or {}).get(uid, uid), gid)

    for caller in callers:
        base = os.path.join(root, "c_" + caller)
        os.mkdir(base, 0o755)
        for oname, (uid, gid) in OWNERS.items():
            for m in FILE_MODES:
                for op in FILE_OPS:
                    p = os.path.join(base, "f_%s_%04o_%s" % (oname, m, op))
                    f4test.write_file(p, TRUE_BIN if op == "exec"
                                      else b"data\n")
                    own(uid, gid)
                    os.chmod(p, m)
            for m in DIR_MODES:
                for op in DIR_OPS:
                    p = os.path.join(base, "d_%s_%04o_%s" % (oname, m, op))
                    os.mkdir(p)
                    own(uid, gid)
                    os.chmod(p, m)
        for dname, (uid, gid, m) in STICKY_DIRS.items():
            d = os.path.join(base, dname)
            os.mkdir(d)
            for vname, (vu, vg) in VICTIMS.items():
                for op in ("unlink", "rename"):
                    p = os.path.join(d, "%s_%s" % (vname, op))
                    f4test.write_file(p, b"victim\n")
                    own(vu, vg)
                    os.chmod(p, 0o644)
            p = d
            own(uid, gid)
            os.chmod(d, m)


def _exec(path):
    pid = os.fork()
    if pid == 0:
        try:
            os.execv(path, [path])
        except OSError as e:
            os._exit(100 + e.errno)
        os._exit(99)
    _, status = os.waitpid(pid, 0)
    rc = os.waitstatus_to_exitcode(status)
    if rc >= 100:
        raise OSError(rc - 100, os.strerror(rc - 100), path)
    if rc:
        raise RuntimeError("%s exited %d" % (path, rc))


def do_op(op, p):
    if op in ("open_r", "open_w", "open_rw"):
        fl = {"open_r": os.O_RDONLY, "open_w": os.O_WRONLY,
              "open_rw": os.O_RDWR}[op]
        os.close(os.open(p, fl))
    elif op == "exec":
        _exec(p)
    elif op == "chmod_same":
        os.chmod(p, stat.S_IMODE(os.lstat(p).st_mode))
    elif op == "chmod_dropid":
        os.chmod(p, stat.S_IMODE(os.lstat(p).st_mode) & 0o1777)
    elif op == "chgrp_own":
        os.chown(p, -1, os.getgid())
    elif op == "chown_give":
        os.chown(p, U3[0], -1)
    elif op == "utime_set":
        os.utime(p, ns=(981158400 * 10**9, 981158400 * 10**9))
    elif op == "utime_now":
        os.utime(p, None)
    elif op == "truncate":
        os.truncate(p, 0)
    elif op == "setfacl":
        os.setxattr(p, "system.posix_acl_access", ACL_XATTR)
    elif op == "unlink":
        os.unlink(p)
    elif op == "rename":
        os.rename(p, p + ".moved")
    else:
        raise ValueError(op)


def probe(root, items):
    """In the caller's process: {key: (errno, mode after or errno)}."""
    out = {}
    for key, op, rel in items:
        p = os.path.join(root, rel)
        e = f4test.errno_of(do_op, op, p)
        try:
            after = "%o" % os.lstat(p).st_mode
        except OSError as x:
            after = errno.errorcode.get(x.errno, x.errno)
        out[key] = (f4test.errname(e), after)
    return out


def probe_as(caller, root):
    uid, gid, groups = CALLERS[caller]
    return run_as(uid, gid, probe, root, plan(caller), groups=groups)


# ---------------------------------------------------------------------------
# mounts

def mount_as_user(fsobj, uid, gid, groups, opts, prefix=()):
    """fsobj's image mounted by uid:gid (its owner now) through
    fusermount3: a mount only that user can reach."""
    os.chown(fsobj.image, uid, gid)
    os.chown(fsobj.mnt, uid, gid)
    pre = list(prefix) + ["setpriv", "--reuid=%d" % uid, "--regid=%d" % gid]
    pre.append("--groups=" + ",".join(map(str, groups)) if groups
               else "--clear-groups")
    argv = pre + f4test.daemon_argv("fuse4fs", fsobj.image, fsobj.mnt, opts)
    with open(fsobj.log, "ab") as f:
        f.write(("==== %s\n" % " ".join(argv)).encode())
        fsobj.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                      stdout=f, stderr=f,
                                      start_new_session=True)
    f4test.wait_mounted(fsobj.proc, fsobj.mnt, fsobj.log)
    fsobj.mounted = True


# fusermount3 wants a user name: unprivileged mounts are nobody's
NOBODY = 65534


def own_mount(fs_factory, caller, opts):
    """A mount of a fresh image that only `caller` can reach, populated
    by root beforehand.  Root mounts it directly; any other caller is
    played by nobody with the caller's gid and groups, and the objects
    the caller owns are nobody's.  Returns (FS, uid, gid, groups) of
    whoever now works on it."""
    uid, gid, groups = CALLERS[caller]
    fsobj = fs_factory("ext4", name="own_%s_%s" % (caller, len(opts)),
                       opts=[], mount=True)
    populate(fsobj.mnt, [caller], {uid: NOBODY} if uid else None)
    fsobj.unmount()
    if uid == 0:
        fsobj.mount(opts)
    else:
        uid = NOBODY
        mount_as_user(fsobj, uid, gid, groups, opts)
    return fsobj, uid, gid, groups


@pytest.fixture
def ext4_results(fs_factory):
    """What kernel ext4 does, for every caller (computed once per test)."""
    k = fs_factory("ext4", driver="kernel", name="kern", opts=["acl"])
    populate(k.mnt, CALLERS)
    return {c: probe_as(c, k.mnt) for c in CALLERS}


def killpriv_shape(key, caller):
    """The one expected difference (see the module docstring): a regular
    file the caller doesn't own but may write, chmod-ed to exactly what
    the kernel's killpriv for a writer would leave."""
    m = re.match(r"file (\w+) (\d+) chmod_dropid$", key)
    if not m:
        return None
    owner, mode = OWNERS[m.group(1)], int(m.group(2), 8)
    uid, gid, groups = CALLERS[caller]
    if uid in (0, owner[0]):
        return None
    member = owner[1] == gid or owner[1] in groups
    bits = (mode >> 3) & 7 if member else mode & 7
    if not bits & 2:
        return None
    new = mode & ~0o4000
    if mode & 0o2010 == 0o2010:
        new &= ~0o2000
    if new == mode or new != mode & 0o1777:
        return None
    return ("OK", "%o" % (0o100000 | new))


def compare(label, got, want, expected_diff=None):
    assert len(want) == len(got) > 200, "%s: %d results, ext4 %d" % (
        label, len(got), len(want))
    bad = []
    for key in want:
        exp = want[key]
        if expected_diff:
            alt = expected_diff(key)
            if alt is not None:
                exp = alt
        if got.get(key) not in (exp if isinstance(exp, list) else [exp]):
            bad.append("%s: %s: fuse4fs %s, ext4 %s%s" % (
                label, key, got.get(key), want[key],
                "" if exp == want[key] else " (expected %s)" % (exp,)))
    return bad


# ---------------------------------------------------------------------------
# the matrix

@pytest.mark.timeout(600)
@pytest.mark.parametrize("wb", [False, True], ids=["nowb", "writeback"])
def test_matrix_allow_other(fs_factory, ext4_results, wb):
    """allow_other (the kernel checks, default_permissions implied), and
    the same with default_permissions given explicitly."""
    bad = []
    for extra in ([], ["default_permissions"]):
        opts = ["allow_other", "acl"] + extra + (["writeback_cache"]
                                                 if wb else [])
        fsobj = fs_factory("ext4", name="ao%d" % len(extra), opts=opts)
        populate(fsobj.mnt, CALLERS)
        for c in CALLERS:
            bad += compare("%s as %s" % (",".join(opts), c),
                           probe_as(c, fsobj.mnt), ext4_results[c])
        fsobj.unmount()
    assert not bad, "%d differences from ext4:\n%s" % (len(bad),
                                                      "\n".join(bad))


@pytest.mark.timeout(600)
@pytest.mark.parametrize("wb", [False, True], ids=["nowb", "writeback"])
def test_matrix_own_checks(fs_factory, ext4_results, wb):
    """fuse4fs checking permissions itself: each caller on a mount of its
    own (nobody else can reach it)."""
    bad = []
    opts = ["writeback_cache"] if wb else []
    for c in CALLERS:
        fsobj, uid, gid, groups = own_mount(fs_factory, c, opts)

        def diff(key, c=c):
            m = re.match(r"(file|dir) \w+ (\d+) setfacl$", key)
            if m:
                # No acl option here (with it the kernel checks): the
                # ACL is refused, by the kernel first for non-owners.
                kind = 0o100000 if m.group(1) == "file" else 0o40000
                kept = "%o" % (kind | int(m.group(2), 8))
                return [("ENOTSUP", kept), ("EPERM", kept)]
            return None if wb else killpriv_shape(key, c)
        got = run_as(uid, gid, probe, fsobj.mnt, plan(c), groups=groups)
        bad += compare("own mount %s as %s" % (",".join(opts), c),
                       got, ext4_results[c], diff)
        fsobj.unmount()
    assert not bad, "%d differences from ext4:\n%s" % (len(bad),
                                                      "\n".join(bad))


# ---------------------------------------------------------------------------
# issue 15, one test per item

def _both(fs_factory, opts):
    """[fuse4fs mount with opts, kernel ext4 mount]."""
    return [fs_factory("ext4", name="f", opts=opts),
            fs_factory("ext4", driver="kernel", name="k", opts=["acl"])]


def _mkfile(p, uid, gid, mode, data=b"data\n"):
    f4test.write_file(p, data)
    os.chown(p, uid, gid)
    os.chmod(p, mode)


def _mkdir(p, uid, gid, mode):
    os.mkdir(p)
    os.chown(p, uid, gid)
    os.chmod(p, mode)


def _own_mount(fs_factory, setup, gid=NOBODY, groups=(), opts=(),
               prefix=()):
    """An image set up by root, then mounted by nobody (gid, groups):
    fuse4fs checks permissions itself."""
    fsobj = fs_factory("ext4", name="own")
    setup(fsobj.mnt)
    fsobj.unmount()
    mount_as_user(fsobj, NOBODY, gid, groups, list(opts), prefix)
    return fsobj


EXEC_CASES = (("p744", 0o744, "EACCES"), ("p711", 0o711, "OK"),
              ("p4744", 0o4744, "EACCES"), ("p4711", 0o4711, "OK"))


def _exec_setup(mnt):
    for name, mode, _ in EXEC_CASES:
        _mkfile(os.path.join(mnt, name), 0, 0, mode, TRUE_BIN)


def _exec_all(mnt):
    return {n: f4test.errname(f4test.errno_of(_exec, os.path.join(mnt, n)))
            for n, _, _ in EXEC_CASES}


def test_exec_needs_execute_permission(fs_factory):
    """Item 10: a root-owned 0744 program (or 4744) may not be run by
    others on an allow_other mount; a 0711 one may, unreadable."""
    want = {n: w for n, _, w in EXEC_CASES}
    for m in _both(fs_factory, ["allow_other", "suid"]):
        _exec_setup(m.mnt)
        assert run_as(*U3, _exec_all, m.mnt) == want, m


def test_exec_needs_execute_permission_own_checks(fs_factory):
    """Item 10 where fuse4fs checks itself (a mount only nobody reaches)."""
    fsobj = _own_mount(fs_factory, _exec_setup)
    assert run_as(NOBODY, NOBODY, _exec_all, fsobj.mnt) == {
        n: w for n, _, w in EXEC_CASES}


SETID_CHMODS = (
    # (name, dir?, mode, chmod to, ext4's answer for a non-owner)
    ("d2777", True, 0o2777, 0o777, "EPERM"),
    ("d3777", True, 0o3777, 0o1777, "EPERM"),
    ("f2766", False, 0o2766, 0o766, "EPERM"),   # setgid, no group x
    ("f6766", False, 0o6766, 0o766, "EPERM"),   # more than a write drops
)


def _setid_setup(mnt):
    for name, isdir, mode, _, _ in SETID_CHMODS:
        p = os.path.join(mnt, name)
        (_mkdir if isdir else _mkfile)(p, 0, 0, mode)


def _setid_chmod_all(mnt):
    out = {}
    for name, _, _, new, _ in SETID_CHMODS:
        p = os.path.join(mnt, name)
        e = f4test.errno_of(os.chmod, p, new)
        out[name] = (f4test.errname(e), "%o" % stat.S_IMODE(
            os.lstat(p).st_mode))
    return out


def test_nonowner_cannot_chmod_setid_away(fs_factory):
    """Item 11: root's 2777 directory, chmod 0777 by somebody else:
    EPERM, the mode stays; the same for setgid files the kernel's
    killpriv would not touch."""
    want = {n: (w, "%o" % m) for n, _, m, _, w in SETID_CHMODS}
    for m in _both(fs_factory, ["allow_other"]):
        _setid_setup(m.mnt)
        assert run_as(*U3, _setid_chmod_all, m.mnt) == want, m


def test_nonowner_cannot_chmod_setid_away_own_checks(fs_factory):
    fsobj = _own_mount(fs_factory, _setid_setup)
    assert run_as(NOBODY, NOBODY, _setid_chmod_all, fsobj.mnt) == {
        n: (w, "%o" % m) for n, _, m, _, w in SETID_CHMODS}


def _set_time(p):
    os.utime(p, ns=(981158400 * 10**9, 981158400 * 10**9))


def _time_setup(mnt):
    _mkfile(os.path.join(mnt, "rootfile"), 0, 0, 0o644)
    _mkfile(os.path.join(mnt, "shared"), 0, 0, 0o666)


def _times_all(mnt):
    out = {}
    for n in ("rootfile", "shared"):
        p = os.path.join(mnt, n)
        out[n + " explicit"] = f4test.errname(f4test.errno_of(_set_time, p))
        out[n + " now"] = f4test.errname(f4test.errno_of(os.utime, p, None))
    return out


TIMES_WANT = {"rootfile explicit": "EPERM", "rootfile now": "EACCES",
              "shared explicit": "EPERM", "shared now": "OK"}


def test_writeback_times_need_ownership(fs_factory):
    """Item 12: with writeback_cache nobody but the owner sets explicit
    times (a root 0644 file and a root 0666 one), and a refused time
    does not show up after a remount."""
    fsobj, k = _both(fs_factory, ["allow_other", "writeback_cache"])
    for m in (fsobj, k):
        _time_setup(m.mnt)
        assert run_as(*U3, _times_all, m.mnt) == TIMES_WANT, m
    fsobj.remount()
    assert os.stat(fsobj.path("rootfile")).st_mtime != 981158400


def test_writeback_times_need_ownership_own_checks(fs_factory):
    fsobj = _own_mount(fs_factory, _time_setup, opts=["writeback_cache"])
    assert run_as(NOBODY, NOBODY, _times_all, fsobj.mnt) == TIMES_WANT
    fsobj.unmount()
    fsobj.mount()
    assert os.stat(fsobj.path("rootfile")).st_mtime != 981158400


@pytest.mark.parametrize("opts", ["allow_other,acl", "kernel,acl"])
def test_setfacl_drops_setgid_for_non_members(fs_factory, opts):
    """Item 13: an owner outside the file's group sets an ACL: setgid
    goes, as with chmod; an owner in the group (through its 70th
    group) keeps it."""
    def setup(mnt):
        for n in ("f", "d"):
            p = os.path.join(mnt, n)
            (_mkfile if n == "f" else _mkdir)(p, U1[0], G, 0o2775)

    def setfacl(mnt):
        res = {}
        for n in ("f", "d"):
            p = os.path.join(mnt, n)
            os.setxattr(p, "system.posix_acl_access", ACL_XATTR)
            res[n] = "%o" % stat.S_IMODE(os.lstat(p).st_mode)
        return res

    for m in _both(fs_factory, opts.split(",")):
        setup(m.mnt)
        assert run_as(*U1, setfacl, m.mnt) == {"f": "640", "d": "640"}, m
        for n in ("f", "d"):
            os.chmod(m.path(n), 0o2775)
        assert run_as(U1[0], U1[1], setfacl, m.mnt, groups=MANY) == {
            "f": "2640", "d": "2640"}, m


def _groups_setup(mnt):
    _mkfile(os.path.join(mnt, "g0604"), 0, G, 0o604)
    _mkfile(os.path.join(mnt, "g0640"), 0, G, 0o640)


def _read_both(mnt):
    return {n: f4test.errname(f4test.errno_of(
        f4test.read_file, os.path.join(mnt, n))) for n in ("g0604", "g0640")}


def test_group_beyond_64th_counts(fs_factory):
    """Item 14: a member of the file's group through its 70th group gets
    the group's bits: 0604 refuses, 0640 grants."""
    want = {"g0604": "EACCES", "g0640": "OK"}
    for m in _both(fs_factory, ["allow_other"]):
        _groups_setup(m.mnt)
        assert run_as(*U4, _read_both, m.mnt, groups=MANY) == want, m


def test_group_beyond_64th_counts_own_checks(fs_factory):
    fsobj = _own_mount(fs_factory, _groups_setup, gid=U4[1], groups=MANY)
    assert run_as(NOBODY, U4[1], _read_both, fsobj.mnt, groups=MANY) == {
        "g0604": "EACCES", "g0640": "OK"}


def test_unreadable_groups_fail_closed(fs_factory):
    """Item 14: the daemon runs in a PID namespace of its own, so a
    caller outside it comes with pid 0 and fuse4fs can't read its
    groups.  A member of the file's group must get no more than a
    member would: 0604 stays closed (kernel ext4 says EACCES to the
    member), and 0640 too, since other (0) denies it."""
    fsobj = _own_mount(fs_factory, _groups_setup, gid=NOBODY, groups=(G,),
                       prefix=["unshare", "--pid", "--fork"])
    assert run_as(NOBODY, NOBODY, _read_both, fsobj.mnt, groups=(G,)) == {
        "g0604": "EACCES", "g0640": "EACCES"}


@pytest.mark.parametrize("opts", [
    "rw,nosuid,kernel,acl", "kernel,nosuid", "nodev,kernel",
    "kernel,nodev,nosuid", "nosuid,kernel,suid"])
def test_explicit_nosuid_nodev_beat_kernel(fs_factory, opts):
    """Item 15: what `kernel` implies gives way to nosuid/nodev given
    anywhere; the last of suid/nosuid wins."""
    fsobj = fs_factory("ext4", name="f", opts=opts.split(","))
    flags = f4test.mount_entry(fsobj.mnt)[3].split(",")
    words = opts.split(",")
    want_nosuid = "nosuid" in words and (
        "suid" not in words or words.index("suid") < words.index("nosuid"))
    assert ("nosuid" in flags) == want_nosuid, flags
    assert ("nodev" in flags) == ("nodev" in words), flags


def _fifo_setup(mnt):
    os.mkfifo(os.path.join(mnt, "fifo"))
    os.chown(os.path.join(mnt, "fifo"), U1[0], U1[1])
    os.chmod(os.path.join(mnt, "fifo"), 0o044)


def _open_fifo(mnt):
    fd = os.open(os.path.join(mnt, "fifo"), os.O_RDWR | os.O_NONBLOCK)
    os.close(fd)


def test_fifo_open_checked_under_allow_other(fs_factory):
    """Item 16: the kernel never asks the server before opening a FIFO;
    under allow_other it checks it itself (default_permissions implied):
    the owner of a 0044 FIFO can't open it, nor can others."""
    for m in _both(fs_factory, ["allow_other"]):
        _fifo_setup(m.mnt)
        for who in (U1, U3):
            assert f4test.errno_as(*who, _open_fifo, m.mnt) == \
                errno.EACCES, (m, who)
        opts = f4test.mount_entry(m.mnt)[4]
        if m.driver == "fuse4fs":
            assert "default_permissions" in opts.split(","), opts
