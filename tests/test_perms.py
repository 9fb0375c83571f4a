"""Permission checks as unprivileged users, and root's bypass rules.

Every test runs twice: with `allow_other` and with `kernel` (=
allow_other + default_permissions + suid + dev).  Since issue 15,
allow_other implies default_permissions, so the kernel checks in both;
fuse4fs' own checks, left only for mounts nobody but their owner can
reach, are compared with ext4 in test_perm_matrix.py.  Against the kernel
driver both mean the same mount.  The expected results are the
kernel's (POSIX DAC: the owner class wins over the group class over the
other class, supplementary groups count, root bypasses read/write/search
but needs an x bit somewhere to execute).

Users (no passwd entries needed): U1 2000:2000, U2 2001:2001,
U3 2003:2003; group G 2002.
"""

import errno
import os
import stat

import pytest

import f4test
from f4test import (RENAME_EXCHANGE, renameat2, run_as, utimensat,
                    write_file)

U1 = (2000, 2000)
U2 = (2001, 2001)
U3 = (2003, 2003)
G = 2002

pytestmark = pytest.mark.variants("ext4")


@pytest.fixture(params=[("allow_other",), ("kernel",)],
                ids=["daemon_perms", "kernel_perms"])
def mount_opts(request):
    return request.param


@pytest.fixture(autouse=True)
def _umask():
    old = os.umask(0o022)
    yield
    os.umask(old)


def mkfile(path, uid, gid, mode, data=b"data"):
    write_file(path, data)
    os.chown(path, uid, gid)
    os.chmod(path, mode)


def mkdir(path, uid, gid, mode):
    os.mkdir(path)
    os.chown(path, uid, gid)
    os.chmod(path, mode)


def E(name):
    return getattr(errno, name) if name else 0


def check_table(uid, gid, table, groups=()):
    """table: list of (label, expected errno name or '', callable, args).
    Runs all calls as uid/gid in one child; returns the mismatches."""
    def body():
        out = []
        for label, _exp, fn, args in table:
            out.append(f4test.errno_of(fn, *args))
        return out
    got = run_as(uid, gid, body, groups=groups)
    bad = []
    for (label, exp, _fn, _args), g in zip(table, got):
        if g != E(exp):
            bad.append("%s: expected %s, got %s" % (
                label, exp or "success", f4test.errname(g)))
    return bad


# ---------------------------------------------------------------------------
# file access matrix: open modes and access(2)

MODES = [0o000, 0o400, 0o200, 0o100, 0o040, 0o020, 0o004, 0o002, 0o001,
         0o600, 0o066, 0o606, 0o660, 0o644, 0o755, 0o707, 0o070, 0o777,
         0o604, 0o460, 0o046, 0o007]


def _probe_files(paths):
    out = {}
    for p in paths:
        r = []
        for flags in (os.O_RDONLY, os.O_WRONLY, os.O_RDWR,
                      os.O_RDONLY | os.O_TRUNC):
            try:
                fd = os.open(p, flags)
                os.close(fd)
                r.append(0)
            except OSError as e:
                r.append(e.errno)
        r += [os.access(p, os.R_OK), os.access(p, os.W_OK),
              os.access(p, os.X_OK), os.access(p, os.R_OK | os.W_OK)]
        out[p] = r
    return out


def _expected(uid, groups, fuid, fgid, mode):
    if uid == 0:
        r = w = True
        x = bool(mode & 0o111)
    else:
        if uid == fuid:
            bits = (mode >> 6) & 7
        elif fgid in groups:
            bits = (mode >> 3) & 7
        else:
            bits = mode & 7
        r, w, x = bool(bits & 4), bool(bits & 2), bool(bits & 1)
    acc = lambda ok: 0 if ok else errno.EACCES       # noqa: E731
    return [acc(r), acc(w), acc(r and w), acc(r and w), r, w, x, r and w]


def test_file_access_matrix(fs):
    os.mkdir(fs.path("w"))
    paths = []
    for m in MODES:
        p = fs.path("w", "m%04o" % m)
        mkfile(p, U1[0], G, m, b"")
        paths.append(p)
    who = [("owner U1", U1, ()), ("owner U1 also in G", U1, (G,)),
           ("group member U2", U2, (G,)), ("other U3", U3, ()), ("root", (0, 0), ())]
    bad = []
    for label, (uid, gid), groups in who:
        if uid == 0:
            got = _probe_files(paths)
        else:
            got = run_as(uid, gid, _probe_files, paths, groups=groups)
        for m, p in zip(MODES, paths):
            want = _expected(uid, set(groups) | {gid}, U1[0], G, m)
            if got[p] != want:
                bad.append("%s, mode %04o: got %s, want %s (O_RDONLY, O_WRONLY,"
                           " O_RDWR, O_RDONLY|O_TRUNC errnos; access R W X RW)"
                           % (label, m, got[p], want))
    assert not bad, "\n".join(bad)
    # nothing was truncated by the refused O_TRUNC opens, nor by the
    # allowed ones of empty files
    for p in paths:
        assert os.stat(p).st_size == 0


def test_o_trunc_needs_write(fs):
    os.mkdir(fs.path("w"), 0o777)
    os.chmod(fs.path("w"), 0o777)
    mkfile(fs.path("w", "ro"), *U1, 0o644, b"keep me")
    mkfile(fs.path("w", "rw"), *U1, 0o666, b"truncate me")
    bad = check_table(*U2, [
        ("O_WRONLY|O_TRUNC of 0644 file", "EACCES", os.open,
         (fs.path("w", "ro"), os.O_WRONLY | os.O_TRUNC)),
        ("truncate() of 0644 file", "EACCES", os.truncate,
         (fs.path("w", "ro"), 0)),
        ("O_CREAT|O_RDONLY of existing 0644 file", "", os.open,
         (fs.path("w", "ro"), os.O_CREAT | os.O_RDONLY)),
        ("truncate() of 0666 file", "", os.truncate, (fs.path("w", "rw"), 3)),
    ])
    assert not bad, "\n".join(bad)
    assert f4test.read_file(fs.path("w", "ro")) == b"keep me"
    assert f4test.read_file(fs.path("w", "rw")) == b"tru"


# ---------------------------------------------------------------------------
# directories: search (x), list (r), modify (w+x)

def test_directory_permissions(fs):
    w = fs.path("w")
    mkdir(w, 0, 0, 0o755)
    for mode in (0o700, 0o711, 0o744, 0o733, 0o722, 0o755, 0o777):
        d = os.path.join(w, "d%03o" % mode)
        mkdir(d, *U1, 0o755)
        mkfile(os.path.join(d, "f"), *U1, 0o644)
        mkfile(os.path.join(d, "victim"), *U1, 0o644)
        os.mkdir(os.path.join(d, "sub"))
        mkfile(os.path.join(d, "sub", "deep"), *U1, 0o644)
        os.chmod(d, mode)
    mkfile(os.path.join(w, "d777", "u2file"), *U2, 0o644)
    P = lambda mode, *a: os.path.join(w, "d%03o" % mode, *a)   # noqa: E731
    mk = lambda p: os.close(os.open(p, os.O_CREAT | os.O_WRONLY, 0o644))  # noqa: E731
    table = [
        # no permission at all for others
        ("listdir 700", "EACCES", os.listdir, (P(0o700),)),
        ("stat 700/f", "EACCES", os.stat, (P(0o700, "f"),)),
        ("stat 700/sub/deep", "EACCES", os.stat, (P(0o700, "sub", "deep"),)),
        ("chdir 700", "EACCES", os.chdir, (P(0o700),)),
        # search only
        ("listdir 711", "EACCES", os.listdir, (P(0o711),)),
        ("stat 711/f", "", os.stat, (P(0o711, "f"),)),
        ("read 711/f", "", f4test.read_file, (P(0o711, "f"),)),
        ("stat 711/missing", "ENOENT", os.stat, (P(0o711, "missing"),)),
        ("chdir 711", "", os.chdir, (P(0o711),)),
        ("create in 711", "EACCES", mk, (P(0o711, "new"),)),
        # read only: names visible, nothing behind them
        ("listdir 744", "", os.listdir, (P(0o744),)),
        ("stat 744/f", "EACCES", os.stat, (P(0o744, "f"),)),
        ("stat 744/missing", "EACCES", os.stat, (P(0o744, "missing"),)),
        ("open 744/f", "EACCES", os.open, (P(0o744, "f"), os.O_RDONLY)),
        ("chdir 744", "EACCES", os.chdir, (P(0o744),)),
        # write + search without read
        ("listdir 733", "EACCES", os.listdir, (P(0o733),)),
        ("create in 733", "", mk, (P(0o733, "new"),)),
        ("unlink in 733", "", os.unlink, (P(0o733, "victim"),)),
        ("stat 733/missing", "ENOENT", os.stat, (P(0o733, "missing"),)),
        # write without search is useless
        ("create in 722", "EACCES", mk, (P(0o722, "new"),)),
        ("mkdir in 722", "EACCES", os.mkdir, (P(0o722, "new"),)),
        ("unlink in 722", "EACCES", os.unlink, (P(0o722, "victim"),)),
        # read + search, no write
        ("create in 755", "EACCES", mk, (P(0o755, "new"),)),
        ("mkdir in 755", "EACCES", os.mkdir, (P(0o755, "new"),)),
        ("mkdir existing in 755", "EEXIST", os.mkdir, (P(0o755, "f"),)),
        ("mkfifo in 755", "EACCES", os.mkfifo, (P(0o755, "new"),)),
        ("symlink in 755", "EACCES", os.symlink, ("x", P(0o755, "new"))),
        ("link into 755", "EACCES", os.link,
         (P(0o777, "u2file"), P(0o755, "new"))),
        ("unlink in 755", "EACCES", os.unlink, (P(0o755, "victim"),)),
        ("unlink missing in 755", "ENOENT", os.unlink, (P(0o755, "missing"),)),
        ("rmdir in 755", "EACCES", os.rmdir, (P(0o755, "sub"),)),
        ("rename within 755", "EACCES", os.rename,
         (P(0o755, "f"), P(0o755, "g"))),
        ("rename out of 755", "EACCES", os.rename,
         (P(0o755, "f"), P(0o777, "g"))),
        ("rename into 755", "EACCES", os.rename,
         (P(0o777, "victim"), P(0o755, "g"))),
        ("read 755/f", "", f4test.read_file, (P(0o755, "f"),)),
        # all allowed
        ("create in 777", "", mk, (P(0o777, "new"),)),
        ("mkdir in 777", "", os.mkdir, (P(0o777, "newdir"),)),
        ("symlink in 777", "", os.symlink, ("x", P(0o777, "sl"))),
        ("rename within 777", "", os.rename, (P(0o777, "new"), P(0o777, "new2"))),
        ("unlink in 777", "", os.unlink, (P(0o777, "new2"),)),
    ]
    bad = check_table(*U2, table)
    assert not bad, "\n".join(bad)
    assert os.stat(P(0o733, "new")).st_uid == U2[0]
    assert not os.path.exists(P(0o733, "victim"))
    assert os.path.exists(P(0o755, "victim"))
    assert sorted(os.listdir(P(0o777))) == ["f", "newdir", "sl", "sub", "u2file",
                                          "victim"]

    # root: search/read/write of every directory regardless of mode
    os.chmod(P(0o700), 0)
    assert sorted(os.listdir(P(0o700))) == ["f", "sub", "victim"]
    assert os.access(P(0o700), os.R_OK | os.W_OK | os.X_OK)
    mk(P(0o700, "root_made"))
    os.unlink(P(0o700, "victim"))
    assert f4test.read_file(P(0o700, "sub", "deep")) == b"data"


def test_rename_dir_needs_write_on_itself(fs):
    """Moving a directory to another parent rewrites its '..' entry, so
    it needs write permission on the directory itself."""
    w = fs.path("w")
    mkdir(w, 0, 0, 0o777)
    mkdir(fs.path("w", "a"), *U2, 0o777)
    mkdir(fs.path("w", "b"), *U2, 0o777)
    mkdir(fs.path("w", "a", "d"), *U1, 0o755)
    mkdir(fs.path("w", "a", "mine"), *U2, 0o755)
    bad = check_table(*U2, [
        ("move U1's 0755 dir to another parent", "EACCES", os.rename,
         (fs.path("w", "a", "d"), fs.path("w", "b", "d"))),
        ("exchange U1's dir across parents", "EACCES", renameat2,
         (fs.path("w", "a", "d"), fs.path("w", "b"), RENAME_EXCHANGE)),
        ("rename U1's dir within its parent", "", os.rename,
         (fs.path("w", "a", "d"), fs.path("w", "a", "d2"))),
        ("move own dir to another parent", "", os.rename,
         (fs.path("w", "a", "mine"), fs.path("w", "b", "mine"))),
    ])
    assert not bad, "\n".join(bad)
    assert sorted(os.listdir(fs.path("w", "a"))) == ["d2"]
    assert os.stat(fs.path("w", "b", "mine", "..")).st_ino == \
        os.stat(fs.path("w", "b")).st_ino


# ---------------------------------------------------------------------------
# ownership of new files

def _create(path, mode, umask=0, is_dir=False):
    os.umask(umask)
    if is_dir:
        os.mkdir(path, mode)
    else:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, mode))
    st = os.lstat(path)
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


def test_new_file_ownership(fs):
    mkdir(fs.path("plain"), 0, 0, 0o777)
    mkdir(fs.path("sg"), 0, G, 0o2777)
    cases = [
        # (who, groups, path, mode, umask, is_dir, expected (uid, gid, mode))
        (U1, (), "plain/f", 0o666, 0o022, False, (2000, 2000, 0o644)),
        (U1, (), "plain/g", 0o777, 0o027, False, (2000, 2000, 0o750)),
        (U1, (), "plain/d", 0o777, 0o022, True, (2000, 2000, 0o755)),
        (U1, (), "plain/sgid", 0o2775, 0, False, (2000, 2000, 0o2775)),
        # setgid directory: the group is inherited, subdirectories inherit
        # the bit; a non-member cannot create a setgid+group-exec file
        (U1, (), "sg/f", 0o644, 0, False, (2000, G, 0o644)),
        (U1, (), "sg/d", 0o777, 0, True, (2000, G, 0o2777)),
        (U1, (), "sg/x", 0o2775, 0, False, (2000, G, 0o775)),
        (U1, (G,), "sg/y", 0o2775, 0, False, (2000, G, 0o2775)),
        (U1, (), "sg/z", 0o2765, 0, False, (2000, G, 0o2765)),
    ]
    bad = []
    for (uid, gid), groups, rel, mode, umask, is_dir, want in cases:
        got = run_as(uid, gid, _create, fs.path(rel), mode, umask, is_dir,
                     groups=groups)
        if got != want:
            bad.append("%s mode %04o umask %03o by %d groups %s: got %s, "
                       "want %s" % (rel, mode, umask, uid, groups,
                                    (got[0], got[1], oct(got[2])),
                                    (want[0], want[1], oct(want[2]))))
    # inside the inherited setgid subdirectory
    got = run_as(*U2, _create, fs.path("sg", "d", "deeper"), 0o755, 0, True)
    if got != (2001, G, 0o2755):
        bad.append("sg/d/deeper: got %s" % (got,))
    assert not bad, "\n".join(bad)
    snap = f4test.snapshot(fs.mnt)
    fs.remount()
    d = f4test.diff_snapshots(snap, f4test.snapshot(fs.mnt))
    assert not d, d


# ---------------------------------------------------------------------------
# chmod / chown / utimes

def test_chmod_chown_permissions(fs):
    w = fs.path("w")
    mkdir(w, 0, 0, 0o777)
    f = fs.path("w", "f")
    mkfile(f, *U1, 0o644)
    os.symlink("f", fs.path("w", "s"))
    os.lchown(fs.path("w", "s"), *U1)
    table_u2 = [
        ("chmod of another's file", "EPERM", os.chmod, (f, 0o777)),
        ("chown of another's file to self", "EPERM", os.chown, (f, 2001, -1)),
        ("chown of another's file, same uid", "EPERM", os.chown, (f, 2000, -1)),
        ("chgrp of another's file", "EPERM", os.chown, (f, -1, 2001)),
        ("chown -1 -1 of another's file", "", os.chown, (f, -1, -1)),
        ("lchown of another's symlink", "EPERM", os.lchown,
         (fs.path("w", "s"), 2001, 2001)),
    ]
    bad = check_table(*U2, table_u2)
    table_u1 = [
        ("owner chmod", "", os.chmod, (f, 0o600)),
        ("owner chown to same uid and gid", "", os.chown, (f, 2000, 2000)),
        ("owner chown to another uid", "EPERM", os.chown, (f, 2001, -1)),
        ("owner chgrp to a group it is not in", "EPERM", os.chown, (f, -1, G)),
    ]
    bad += check_table(*U1, table_u1)
    bad += check_table(*U1, [
        ("owner chgrp to a supplementary group", "", os.chown, (f, -1, G)),
    ], groups=(G,))
    assert not bad, "\n".join(bad)
    st = os.stat(f)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (2000, G, 0o600)
    # root may do anything
    os.chown(f, 4242, 4343)
    os.chmod(f, 0o7000)
    st = os.stat(f)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (4242, 4343,
                                                                0o7000)


def test_utimes_permissions(fs):
    w = fs.path("w")
    mkdir(w, 0, 0, 0o777)
    wr = fs.path("w", "writable")
    ro = fs.path("w", "readonly")
    own = fs.path("w", "own")
    mkfile(wr, *U1, 0o666)
    mkfile(ro, *U1, 0o644)
    mkfile(own, *U2, 0o000)
    T = (1000, 0)
    bad = check_table(*U2, [
        # a non-owner with write access may only set both times to now
        ("now,now on writable", "", utimensat, (wr, "now", "now")),
        ("omit,omit on writable", "", utimensat, (wr, "omit", "omit")),
        ("now,omit on writable", "EPERM", utimensat, (wr, "now", "omit")),
        ("explicit on writable", "EPERM", utimensat, (wr, T, T)),
        ("now,explicit on writable", "EPERM", utimensat, (wr, "now", T)),
        ("now,now on read-only", "EACCES", utimensat, (ro, "now", "now")),
        ("omit,omit on read-only", "", utimensat, (ro, "omit", "omit")),
        ("explicit on read-only", "EPERM", utimensat, (ro, T, T)),
        # the owner may set anything, whatever the mode
        ("owner explicit on 0000 file", "", utimensat, (own, T, T)),
        ("owner now on 0000 file", "", utimensat, (own, "now", "now")),
    ])
    assert not bad, "\n".join(bad)
    utimensat(ro, (5, 0), (6, 0))       # root
    assert (os.stat(ro).st_atime, os.stat(ro).st_mtime) == (5, 6)


# ---------------------------------------------------------------------------
# sticky directories

def test_sticky_directory(fs):
    t = fs.path("tmp")
    mkdir(t, *U3, 0o1777)
    for name, owner in (("a1", U1), ("a2", U1), ("a3", U1), ("b1", U2),
                        ("b2", U2), ("c1", U1), ("c2", U1)):
        mkfile(os.path.join(t, name), *owner, 0o666)
    mkdir(os.path.join(t, "adir"), *U1, 0o777)
    T = lambda n: os.path.join(t, n)     # noqa: E731
    bad = check_table(*U2, [
        ("unlink another's file", "EPERM", os.unlink, (T("a1"),)),
        ("rename another's file", "EPERM", os.rename, (T("a1"), T("x"))),
        ("rename own file over another's", "EPERM", os.rename,
         (T("b1"), T("a2"))),
        ("exchange own with another's", "EPERM", renameat2,
         (T("b1"), T("a2"), RENAME_EXCHANGE)),
        ("rmdir another's dir", "EPERM", os.rmdir, (T("adir"),)),
        ("write another's 0666 file", "", f4test.write_file, (T("a3"), b"w")),
        ("rename own file", "", os.rename, (T("b1"), T("b1renamed"))),
        ("unlink own file", "", os.unlink, (T("b2"),)),
    ])
    # the directory's owner may remove anybody's entries
    bad += check_table(*U3, [
        ("dir owner unlinks U1's file", "", os.unlink, (T("c1"),)),
        ("dir owner renames U1's file", "", os.rename, (T("c2"), T("c2x"))),
    ])
    bad += check_table(*U1, [
        ("file owner unlinks own file", "", os.unlink, (T("a1"),)),
    ])
    assert not bad, "\n".join(bad)
    os.unlink(T("a2"))              # root
    os.rmdir(T("adir"))
    assert sorted(os.listdir(t)) == ["a3", "b1renamed", "c2x"]
    assert f4test.read_file(T("a3")) == b"w"


# ---------------------------------------------------------------------------
# root

def test_root_bypass(fs):
    d = fs.path("locked")
    mkdir(d, *U1, 0o000)
    f = os.path.join(d, "f")
    mkfile(f, *U1, 0o000, b"secret")
    assert f4test.read_file(f) == b"secret"
    fd = os.open(f, os.O_RDWR)
    os.pwrite(fd, b"S", 0)
    os.close(fd)
    assert f4test.read_file(f) == b"Secret"
    assert os.access(f, os.R_OK | os.W_OK)
    # execute needs at least one x bit, even for root
    assert not os.access(f, os.X_OK)
    for m in (0o100, 0o010, 0o001):
        os.chmod(f, m)
        assert os.access(f, os.X_OK), oct(m)
    # directories are always searchable and writable for root
    assert os.access(d, os.R_OK | os.W_OK | os.X_OK)
    os.mkdir(os.path.join(d, "sub"))
    ro = fs.path("ro")
    mkdir(ro, *U1, 0o555)
    write_file(os.path.join(ro, "new"), b"")
    os.rename(os.path.join(ro, "new"), os.path.join(d, "moved"))
    assert sorted(os.listdir(d)) == ["f", "moved", "sub"]


def test_hardlink_protection(fs):
    """link(2) to a file the caller neither owns nor can read and write is
    refused when fs.protected_hardlinks is on (a VFS rule, the same for
    every file system)."""
    with open("/proc/sys/fs/protected_hardlinks") as fh:
        protected = fh.read().strip() == "1"
    mkdir(fs.path("w"), 0, 0, 0o777)
    mkfile(fs.path("w", "ro"), *U1, 0o644)
    mkfile(fs.path("w", "rw"), *U1, 0o666)
    bad = check_table(*U2, [
        ("link to another's 0644 file", "EPERM" if protected else "",
         os.link, (fs.path("w", "ro"), fs.path("w", "l1"))),
        ("link to another's 0666 file", "", os.link,
         (fs.path("w", "rw"), fs.path("w", "l2"))),
    ])
    assert not bad, "\n".join(bad)
    assert os.stat(fs.path("w", "rw")).st_nlink == 2
