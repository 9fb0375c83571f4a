"""POSIX ACLs (mount option acl): setfacl/getfacl round trips, default
ACL inheritance, the mode <-> mask link, minimal ACLs that are not stored,
enforcement for non-root users, and the same image read by kernel ext4.

The expectations are the kernel's ext4 (F4_DRIVER=kernel passes them; for
the kernel the acl option is always on).  Users: U1 2000:2000,
U2 2001:2001 (member of G 2002), U3 2003:2003.
"""

import errno
import os
import stat
import struct

import pytest

import f4test
from f4test import assert_errno, run, run_as, write_file

pytestmark = pytest.mark.mount_opts("acl")

U1 = (2000, 2000)
U2 = (2001, 2001)
U3 = (2003, 2003)
G = 2002

ACL_ACCESS = "system.posix_acl_access"
ACL_DEFAULT = "system.posix_acl_default"

# the VFS's xattr form of an ACL
ACL_USER_OBJ, ACL_USER, ACL_GROUP_OBJ, ACL_GROUP, ACL_MASK, ACL_OTHER = (
    0x01, 0x02, 0x04, 0x08, 0x10, 0x20)
ACL_UNDEFINED_ID = 0xffffffff


def acl_xattr(*entries):
    """(tag, perm, id) tuples -> the system.posix_acl_* value."""
    out = struct.pack("<I", 2)
    for tag, perm, qid in entries:
        out += struct.pack("<HHI", tag, perm,
                           ACL_UNDEFINED_ID if qid is None else qid)
    return out


@pytest.fixture(autouse=True)
def _umask():
    old = os.umask(0o022)
    yield
    os.umask(old)


def getfacl(path, effective=False):
    """getfacl's entries, numeric, without the header; with effective the
    '#effective:' comments are kept (tabs squeezed)."""
    argv = ["getfacl", "-n", "-p", "--omit-header"]
    if not effective:
        argv.append("-E")
    out = run(argv + [path]).stdout
    return [" ".join(line.split()) for line in out.splitlines()
            if line.strip()]


def setfacl(*args):
    run(["setfacl"] + list(args))


def stored_acl_names(path):
    """The system.posix_acl_* names getfattr shows for path."""
    p = run(["getfattr", "-h", "-m", "^system\\.posix_acl", "--absolute-names",
             path], check=False)
    return sorted(line.strip() for line in p.stdout.splitlines()
                  if line.startswith("system."))


def mode_of(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


# ---------------------------------------------------------------------------
# round trips

@pytest.mark.variants("ext4", "ext2", "ext4-1k", "ext4-64k")
def test_setfacl_getfacl_round_trip(fs):
    f = fs.path("f")
    d = fs.path("d")
    write_file(f, b"x")
    os.chmod(f, 0o640)
    os.mkdir(d, 0o750)
    setfacl("-m", "u:%d:rwx,u:%d:r,g:%d:rw,m::rwx" % (U1[0], U2[0], G), f)
    want_f = ["user::rw-", "user:%d:rwx" % U1[0], "user:%d:r--" % U2[0],
              "group::r--", "group:%d:rw-" % G, "mask::rwx", "other::---"]
    assert getfacl(f) == want_f
    # the group class bits of the mode are the mask
    assert mode_of(f) == 0o670
    setfacl("-m", "u:%d:rwx" % U3[0], d)
    setfacl("-d", "-m", "u::rwx,g::r-x,o::---,u:%d:rx,g:%d:rwx" % (U1[0], G),
            d)
    want_d = ["user::rwx", "user:%d:rwx" % U3[0], "group::r-x", "mask::rwx",
              "other::---",
              "default:user::rwx", "default:user:%d:r-x" % U1[0],
              "default:group::r-x", "default:group:%d:rwx" % G,
              "default:mask::rwx", "default:other::---"]
    assert getfacl(d) == want_d
    assert stored_acl_names(d) == [ACL_ACCESS, ACL_DEFAULT]
    fs.remount()
    assert getfacl(f) == want_f
    assert getfacl(d) == want_d
    assert mode_of(f) == 0o670
    # remove entries, then everything
    setfacl("-x", "u:%d" % U2[0], f)
    assert getfacl(f) == ["user::rw-", "user:%d:rwx" % U1[0], "group::r--",
                          "group:%d:rw-" % G, "mask::rwx", "other::---"]
    setfacl("-k", d)
    assert getfacl(d) == want_d[:5]
    assert stored_acl_names(d) == [ACL_ACCESS]
    setfacl("-b", f)
    assert getfacl(f) == ["user::rw-", "group::r--", "other::---"]
    assert stored_acl_names(f) == []
    assert mode_of(f) == 0o640
    fs.remount()
    assert getfacl(f) == ["user::rw-", "group::r--", "other::---"]
    assert getfacl(d) == want_d[:5]


@pytest.mark.variants("ext4", "ext2")
def test_acl_xattr_interface(fs):
    """The raw system.posix_acl_* xattrs: ENODATA when absent, the value
    comes back as set, a default ACL only on directories, malformed
    values refused."""
    f = fs.path("f")
    d = fs.path("d")
    write_file(f, b"")
    os.mkdir(d)
    assert_errno(errno.ENODATA, os.getxattr, f, ACL_ACCESS)
    assert_errno(errno.ENODATA, os.getxattr, d, ACL_DEFAULT)
    a = acl_xattr((ACL_USER_OBJ, 6, None), (ACL_USER, 7, U1[0]),
                  (ACL_GROUP_OBJ, 4, None), (ACL_MASK, 6, None),
                  (ACL_OTHER, 4, None))
    os.setxattr(f, ACL_ACCESS, a)
    assert os.getxattr(f, ACL_ACCESS) == a
    assert mode_of(f) == 0o664
    os.setxattr(d, ACL_DEFAULT, a)
    assert os.getxattr(d, ACL_DEFAULT) == a
    assert_errno(errno.EACCES, os.setxattr, f, ACL_DEFAULT, a)
    assert_errno(errno.EOPNOTSUPP, os.setxattr, f, ACL_ACCESS, b"junk")
    # no mask with a named entry, and a lone entry: invalid
    assert_errno(errno.EINVAL, os.setxattr, f, ACL_ACCESS, acl_xattr(
        (ACL_USER_OBJ, 6, None), (ACL_USER, 7, U1[0]),
        (ACL_GROUP_OBJ, 4, None), (ACL_OTHER, 4, None)))
    assert_errno(errno.EINVAL, os.setxattr, f, ACL_ACCESS,
                 acl_xattr((ACL_USER_OBJ, 6, None)))
    assert os.getxattr(f, ACL_ACCESS) == a
    assert sorted(os.listxattr(d)) == [ACL_DEFAULT]
    assert os.listxattr(f) == [ACL_ACCESS]
    os.removexattr(f, ACL_ACCESS)
    assert_errno(errno.ENODATA, os.getxattr, f, ACL_ACCESS)
    assert os.listxattr(f) == []
    # removing the ACL leaves the mode as it was
    assert mode_of(f) == 0o664
    fs.remount()
    assert os.getxattr(d, ACL_DEFAULT) == a
    assert_errno(errno.ENODATA, os.getxattr, f, ACL_ACCESS)


@pytest.mark.variants("ext4")
def test_equivalent_acl_not_stored(fs):
    """An ACL that says no more than the mode changes the mode and is not
    kept as an xattr."""
    f = fs.path("f")
    write_file(f, b"")
    os.chmod(f, 0o600)
    setfacl("--set", "u::rwx,g::r-x,o::r--", f)
    assert mode_of(f) == 0o754
    assert stored_acl_names(f) == []
    a = acl_xattr((ACL_USER_OBJ, 6, None), (ACL_GROUP_OBJ, 0, None),
                  (ACL_OTHER, 4, None))
    os.setxattr(f, ACL_ACCESS, a)
    assert mode_of(f) == 0o604
    assert stored_acl_names(f) == []
    assert_errno(errno.ENODATA, os.getxattr, f, ACL_ACCESS)
    # an extended ACL is stored; cutting it back to the minimum drops it
    setfacl("-m", "u:%d:r" % U1[0], f)
    assert stored_acl_names(f) == [ACL_ACCESS]
    setfacl("--set", "u::rw,g::r,o::-", f)
    assert stored_acl_names(f) == []
    assert mode_of(f) == 0o640
    fs.remount()
    assert stored_acl_names(f) == []
    assert mode_of(f) == 0o640


@pytest.mark.variants("ext4", "ext2")
def test_chmod_updates_mask(fs):
    f = fs.path("f")
    write_file(f, b"")
    setfacl("--set", "u::rw,u:%d:rwx,g::rx,g:%d:rw,m::rwx,o::r" % (U1[0], G),
            f)
    assert mode_of(f) == 0o674
    os.chmod(f, 0o640)
    # the group bits of chmod set the mask, not the owning group's entry
    assert getfacl(f) == ["user::rw-", "user:%d:rwx" % U1[0], "group::r-x",
                          "group:%d:rw-" % G, "mask::r--", "other::---"]
    eff = getfacl(f, effective=True)
    assert "user:%d:rwx #effective:r--" % U1[0] in eff
    assert "group::r-x #effective:r--" in eff
    assert mode_of(f) == 0o640
    os.chmod(f, 0o2775)
    assert getfacl(f)[4] == "mask::rwx"
    assert mode_of(f) == 0o2775
    # and setting the mask changes the mode's group bits
    setfacl("-m", "m::r-x", f)
    assert mode_of(f) == 0o2755
    fs.remount()
    assert mode_of(f) == 0o2755
    assert getfacl(f) == ["user::rwx", "user:%d:rwx" % U1[0], "group::r-x",
                          "group:%d:rw-" % G, "mask::r-x", "other::r-x"]


# ---------------------------------------------------------------------------
# inheritance

def _inherit_ops(root):
    """Make objects under a directory with a default ACL; return what the
    checks look at (modes, ACLs)."""
    d = os.path.join(root, "d")
    os.mkdir(d, 0o755)
    setfacl("-d", "--set",
            "u::rwx,u:%d:rwx,g::r-x,g:%d:-wx,m::rwx,o::r-x" % (U1[0], G), d)
    out = {}
    old = os.umask(0o077)       # the umask does not apply under a default ACL
    try:
        fd = os.open(os.path.join(d, "f666"), os.O_CREAT | os.O_WRONLY, 0o666)
        os.close(fd)
        fd = os.open(os.path.join(d, "f640"), os.O_CREAT | os.O_WRONLY, 0o640)
        os.close(fd)
        os.mkdir(os.path.join(d, "sub"), 0o777)
        os.mkdir(os.path.join(d, "sub750"), 0o750)
        os.mkfifo(os.path.join(d, "fifo"), 0o666)
        os.symlink("f666", os.path.join(d, "link"))
        fd = os.open(os.path.join(d, "sub", "deep"),
                     os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)
    finally:
        os.umask(old)
    # outside the directory the umask applies again
    old = os.umask(0o077)
    try:
        fd = os.open(os.path.join(root, "plain"), os.O_CREAT | os.O_WRONLY,
                     0o666)
        os.close(fd)
    finally:
        os.umask(old)
    for name in ("d/f666", "d/f640", "d/sub", "d/sub750", "d/fifo",
                 "d/sub/deep", "plain"):
        p = os.path.join(root, name)
        out[name] = (oct(mode_of(p)), getfacl(p))
    out["d/link"] = oct(stat.S_IMODE(os.lstat(os.path.join(d, "link")
                                             ).st_mode))
    return out


@pytest.mark.variants("ext4", "ext2", "ext4-1k")
def test_default_acl_inheritance(fs, kernel_ext4):
    got = _inherit_ops(fs.mnt)
    u, g = U1[0], G
    dflt = ["default:user::rwx", "default:user:%d:rwx" % u,
            "default:group::r-x", "default:group:%d:-wx" % g,
            "default:mask::rwx", "default:other::r-x"]
    want = {
        # access ACL = default ACL with user::, mask:: and other:: cut by
        # the create mode; the mode's group bits are the mask
        "d/f666": ("0o664", ["user::rw-", "user:%d:rwx" % u, "group::r-x",
                             "group:%d:-wx" % g, "mask::rw-", "other::r--"]),
        "d/f640": ("0o640", ["user::rw-", "user:%d:rwx" % u, "group::r-x",
                             "group:%d:-wx" % g, "mask::r--", "other::---"]),
        "d/sub": ("0o775", ["user::rwx", "user:%d:rwx" % u, "group::r-x",
                            "group:%d:-wx" % g, "mask::rwx", "other::r-x"] +
                  dflt),
        "d/sub750": ("0o750", ["user::rwx", "user:%d:rwx" % u, "group::r-x",
                               "group:%d:-wx" % g, "mask::r-x",
                               "other::---"] + dflt),
        "d/fifo": ("0o664", ["user::rw-", "user:%d:rwx" % u, "group::r-x",
                             "group:%d:-wx" % g, "mask::rw-", "other::r--"]),
        "d/sub/deep": ("0o600", ["user::rw-", "user:%d:rwx" % u,
                                 "group::r-x", "group:%d:-wx" % g,
                                 "mask::---", "other::---"]),
        "plain": ("0o600", ["user::rw-", "group::---", "other::---"]),
        "d/link": "0o777",
    }
    assert got == want
    assert got == _inherit_ops(kernel_ext4.mnt)
    fs.remount()
    for name in ("d/f666", "d/sub", "d/sub/deep"):
        assert (oct(mode_of(fs.path(name))), getfacl(fs.path(name))) == \
            want[name]


@pytest.mark.variants("ext4")
@pytest.mark.mount_opts("kernel", "acl")
def test_inheritance_as_user(fs):
    """A non-root user creating in a directory with a default ACL: owner
    is the user, access ACL from the default ACL, umask ignored."""
    d = fs.path("d")
    os.mkdir(d)
    os.chmod(d, 0o777)
    setfacl("-d", "--set", "u::rwx,u:%d:r,g::rx,m::rx,o::-" % U2[0], d)

    def body():
        os.umask(0o022)
        fd = os.open(os.path.join(d, "mine"), os.O_CREAT | os.O_WRONLY, 0o666)
        os.close(fd)
        os.mkdir(os.path.join(d, "mydir"), 0o777)
        return True

    run_as(U1[0], U1[1], body)
    st = os.stat(fs.path("d", "mine"))
    assert (st.st_uid, st.st_gid) == U1
    assert mode_of(fs.path("d", "mine")) == 0o640
    assert getfacl(fs.path("d", "mine")) == [
        "user::rw-", "user:%d:r--" % U2[0], "group::r-x", "mask::r--",
        "other::---"]
    assert mode_of(fs.path("d", "mydir")) == 0o750
    assert "default:user:%d:r--" % U2[0] in getfacl(fs.path("d", "mydir"))


# ---------------------------------------------------------------------------
# enforcement

def _access_table(paths):
    out = {}
    for name, p in paths.items():
        r = []
        for flags in (os.O_RDONLY, os.O_WRONLY):
            try:
                os.close(os.open(p, flags))
                r.append("ok")
            except OSError as e:
                r.append(errno.errorcode[e.errno])
        out[name] = r
    return out


@pytest.mark.variants("ext4", "ext2")
@pytest.mark.parametrize("mount_opts", [("kernel", "acl"),
                                        ("allow_other", "acl")],
                         ids=["kernel_perms", "daemon_perms"])
def test_acl_enforced_for_users(fs):
    os.chmod(fs.mnt, 0o755)
    paths = {}
    for name, mode, acl in (
            # a named user gets more than the other class
            ("grant", 0o600, "u:%d:rw,g:%d:r,m::rw" % (U1[0], G)),
            # a named user gets less than the other class
            ("deny", 0o644, "u:%d:-" % U1[0]),
            # the mask limits named entries
            ("masked", 0o600, "u:%d:rw,g:%d:rw,m::r" % (U1[0], G)),
            # a named group
            ("group", 0o600, "g:%d:rw" % G),
            # the owner entry beats named entries (owner is U1)
            ("owner", 0o044, "u:%d:rw" % U1[0])):
        p = fs.path(name)
        write_file(p, b"data")
        os.chmod(p, mode)
        setfacl("-m", acl, p)
        paths[name] = p
    os.chown(paths["owner"], *U1)
    setfacl("-m", "m::rw", paths["owner"])
    # a directory only U1 may write into, by ACL
    os.mkdir(fs.path("dir"), 0o755)
    setfacl("-m", "u:%d:rwx" % U1[0], fs.path("dir"))

    want = {
        U1: {"grant": ["ok", "ok"], "deny": ["EACCES", "EACCES"],
             "masked": ["ok", "EACCES"], "group": ["EACCES", "EACCES"],
             "owner": ["EACCES", "EACCES"]},
        # U2 is in G; the files' group is root's, so without a named entry
        # U2 is in the other class
        U2: {"grant": ["ok", "EACCES"], "deny": ["ok", "EACCES"],
             "masked": ["ok", "EACCES"], "group": ["ok", "ok"],
             "owner": ["ok", "EACCES"]},
        U3: {"grant": ["EACCES", "EACCES"], "deny": ["ok", "EACCES"],
             "masked": ["EACCES", "EACCES"], "group": ["EACCES", "EACCES"],
             "owner": ["ok", "EACCES"]},
    }
    groups = {U1: (), U2: (G,), U3: ()}
    bad = []
    for who, exp in want.items():
        got = run_as(who[0], who[1], _access_table, paths,
                     groups=groups[who])
        if got != exp:
            bad.append("uid %d: got %s, want %s" % (who[0], got, exp))
    assert not bad, "\n".join(bad)

    def create(name):
        fd = os.open(os.path.join(fs.path("dir"), name),
                     os.O_CREAT | os.O_WRONLY, 0o644)
        os.close(fd)
    assert f4test.errno_as(U1[0], U1[1], create, "by-u1") == 0
    assert f4test.errno_as(U2[0], U2[1], create, "by-u2",
                           groups=(G,)) == errno.EACCES
    # chmod through the mask takes the named user's write away
    os.chmod(paths["grant"], 0o640)
    got = run_as(U1[0], U1[1], _access_table, {"grant": paths["grant"]})
    assert got == {"grant": ["ok", "EACCES"]}
    # removing the ACL leaves the mode: U1 is other now
    setfacl("-b", paths["deny"])
    got = run_as(U1[0], U1[1], _access_table, {"deny": paths["deny"]})
    assert got == {"deny": ["ok", "EACCES"]}


@pytest.mark.variants("ext4")
@pytest.mark.mount_opts("kernel", "acl")
def test_only_owner_sets_acl(fs):
    os.chmod(fs.mnt, 0o755)
    p = fs.path("f")
    write_file(p, b"")
    os.chmod(p, 0o666)
    mine = fs.path("mine")
    write_file(mine, b"")
    os.chown(mine, *U1)
    a = acl_xattr((ACL_USER_OBJ, 6, None), (ACL_USER, 7, U2[0]),
                  (ACL_GROUP_OBJ, 4, None), (ACL_MASK, 6, None),
                  (ACL_OTHER, 4, None))
    assert f4test.errno_as(U1[0], U1[1], os.setxattr, p, ACL_ACCESS,
                           a) == errno.EPERM
    assert f4test.errno_as(U1[0], U1[1], os.setxattr, mine, ACL_ACCESS,
                           a) == 0
    assert f4test.errno_as(U1[0], U1[1], os.getxattr, p, ACL_ACCESS) == \
        errno.ENODATA
    assert run_as(U1[0], U1[1], os.getxattr, mine, ACL_ACCESS) == a
    assert stored_acl_names(p) == []
    assert mode_of(mine) == 0o664


# ---------------------------------------------------------------------------
# the same image through both drivers

def _acl_population(root):
    f = os.path.join(root, "f")
    d = os.path.join(root, "d")
    write_file(f, b"x")
    os.mkdir(d)
    setfacl("-m", "u:%d:rwx,g:%d:r,u:%d:-" % (U1[0], G, U3[0]), f)
    setfacl("-m", "u:%d:rx" % U2[0], d)
    setfacl("-d", "-m", "u:%d:rw,g::-" % U1[0], d)
    # many entries: the ACL goes to the external block
    big = os.path.join(root, "big")
    write_file(big, b"")
    setfacl("-m", ",".join("u:%d:r" % (3000 + i) for i in range(60)), big)


def _acl_dump(root):
    return {n: (oct(mode_of(os.path.join(root, n))),
                getfacl(os.path.join(root, n)))
            for n in ("f", "d", "big")}


@pytest.mark.variants("ext4", "ext2")
def test_acls_written_here_read_by_kernel(fs, fs_factory, variant):
    _acl_population(fs.mnt)
    want = _acl_dump(fs.mnt)
    assert len(want["big"][1]) == 64
    fs.unmount()
    fs.fsck()
    k = fs_factory(variant, driver="kernel", image=fs.image, name="k",
                   opts=("acl",))
    assert _acl_dump(k.mnt) == want
    # the kernel inherits from the default ACL fuse4fs stored
    write_file(k.path("d", "new"), b"")
    assert getfacl(k.path("d", "new")) == [
        "user::rw-", "user:%d:rw-" % U1[0], "group::---", "mask::r--",
        "other::r--"]


@pytest.mark.variants("ext4", "ext2")
def test_acls_written_by_kernel_read_here(fs_factory, fs_unmounted, variant):
    fs = fs_unmounted
    k = fs_factory(variant, driver="kernel", image=fs.image, name="k",
                   opts=("acl",))
    _acl_population(k.mnt)
    want = _acl_dump(k.mnt)
    k.unmount()
    k.fsck()
    fs.mount()
    assert _acl_dump(fs.mnt) == want
    write_file(fs.path("d", "new"), b"")
    assert getfacl(fs.path("d", "new")) == [
        "user::rw-", "user:%d:rw-" % U1[0], "group::---", "mask::r--",
        "other::r--"]


# ---------------------------------------------------------------------------
# without the acl option

@pytest.mark.fuse_only
@pytest.mark.variants("ext4")
@pytest.mark.mount_opts()
def test_no_acl_option(fs):
    """Without -o acl (fuse4fs' default) the ACL xattrs are not supported.
    (The kernel's ext4 always has ACLs: no reference run.)"""
    f = fs.path("f")
    d = fs.path("d")
    write_file(f, b"")
    os.mkdir(d)
    a = acl_xattr((ACL_USER_OBJ, 6, None), (ACL_USER, 7, U1[0]),
                  (ACL_GROUP_OBJ, 4, None), (ACL_MASK, 6, None),
                  (ACL_OTHER, 4, None))
    for p, n in ((f, ACL_ACCESS), (d, ACL_ACCESS), (d, ACL_DEFAULT)):
        assert_errno(errno.EOPNOTSUPP, os.setxattr, p, n, a)
        assert_errno(errno.EOPNOTSUPP, os.getxattr, p, n)
        assert_errno(errno.EOPNOTSUPP, os.removexattr, p, n)
    assert run(["setfacl", "-m", "u:%d:rw" % U1[0], f],
               check=False).returncode != 0
    assert os.listxattr(f) == [] and os.listxattr(d) == []
    assert mode_of(f) == 0o644
    # ordinary xattrs still work
    os.setxattr(f, "user.x", b"1")
    assert os.getxattr(f, "user.x") == b"1"
