"""Quota and project quota: usage, limits, project IDs.

This machine's kernel has CONFIG_QUOTA but not CONFIG_QFMT_V2, so it
cannot mount a file system with the quota feature at all ("The kernel was
not built with CONFIG_QUOTA and CONFIG_QFMT_V2"): there is no kernel run
of the same workload to compare with.  The oracle is e2fsck instead: it
computes every id's usage from the inodes and compares it with the quota
files (teardown runs e2fsck -fn; test_fsck_sees_wrong_usage shows that it
does notice a wrong figure), plus usage computed here from stat() of
every inode through the mount, compared with what debugfs lists.

Limits come from the standard tools: quota-tools' quotacheck and setquota
write vfsv1 quota files on a kernel ext4 mount (old-style quota files,
which this kernel handles without quotaon), and tune2fs -O quota moves
the limits into the hidden quota inodes, as one would prepare an image on
another machine.
"""

import ctypes
import errno
import fcntl
import os
import re
import shutil
import struct
import time

import pytest

import f4test

pytestmark = [pytest.mark.fuse_only, pytest.mark.variants("ext4", "ext4-1k")]

FS_IOC_FSGETXATTR = 0x801C581F
FS_IOC_FSSETXATTR = 0x401C5820
FSX = struct.Struct("=IIIII8s")
FS_XFLAG_PROJINHERIT = 0x200
USER, GROUP = 1000, 1000


def get_fsx(path):
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        buf = fcntl.ioctl(fd, FS_IOC_FSGETXATTR, bytes(FSX.size))
    finally:
        os.close(fd)
    return list(FSX.unpack(buf))


def set_project(path, projid, inherit=None):
    fd = os.open(path, os.O_RDONLY)
    try:
        fsx = list(FSX.unpack(fcntl.ioctl(fd, FS_IOC_FSGETXATTR,
                                          bytes(FSX.size))))
        fsx[3] = projid
        if inherit is not None:
            fsx[0] = (fsx[0] | FS_XFLAG_PROJINHERIT) if inherit else \
                (fsx[0] & ~FS_XFLAG_PROJINHERIT)
        fcntl.ioctl(fd, FS_IOC_FSSETXATTR, FSX.pack(*fsx))
    finally:
        os.close(fd)


def projid(path):
    return get_fsx(path)[3]


def list_quota(image, kind):
    """debugfs lq: {id: (space bytes, inodes, bsoft, bhard, isoft, ihard)}"""
    out = f4test.debugfs(image, "lq " + kind)
    res = {}
    for line in out.splitlines():
        f = line.split()
        if len(f) == 7 and f[0].isdigit():
            v = [int(x) for x in f]
            res[v[0]] = (v[1], v[4], v[2], v[3], v[5], v[6])
    return res


def usage_by_stat(root, with_project):
    """Usage per id from stat() of every inode reachable under root."""
    seen = set()
    use = {"user": {}, "group": {}, "project": {}}

    def add(kind, ident, st):
        sp, ino = use[kind].get(ident, (0, 0))
        use[kind][ident] = (sp + st.st_blocks * 512, ino + 1)

    def visit(path):
        st = os.lstat(path)
        if st.st_ino in seen:
            return
        seen.add(st.st_ino)
        add("user", st.st_uid, st)
        add("group", st.st_gid, st)
        if with_project:
            add("project", projid(path) if not os.path.islink(path) else
                _link_projid(path), st)
        if os.path.isdir(path) and not os.path.islink(path):
            for n in os.listdir(path):
                visit(os.path.join(path, n))

    visit(root)
    return use


_link_projids = {}


def _link_projid(path):
    # symlinks can't be opened for the ioctl; the test records theirs
    return _link_projids[os.path.realpath(os.path.dirname(path)) + "/" +
                         os.path.basename(path)]


def assert_usage_matches(fs, expected):
    """What debugfs lists equals usage computed from stat(); zero rows of
    ids that own nothing any more are fine."""
    for kind, want in expected.items():
        if kind == "project" and not want:
            continue
        got = list_quota(fs.image, kind)
        for ident in set(got) | set(want):
            g = got.get(ident, (0, 0))[:2]
            w = want.get(ident, (0, 0))
            assert g == w, "%s quota of id %d: file says %s, stat() says %s" \
                % (kind, ident, g, w)


def workload(fs, with_project):
    """Every operation that changes who owns what, or how much."""
    m = fs.mnt
    os.mkdir(fs.path("u"))
    os.chown(fs.path("u"), USER, GROUP)
    f4test.write_file(fs.path("u/data"), f4test.pattern(300 * 1024))
    os.chown(fs.path("u/data"), USER, GROUP + 1)
    os.link(fs.path("u/data"), fs.path("hard"))
    os.setxattr(fs.path("u/data"), "user.big", b"x" * 900)
    os.truncate(fs.path("u/data"), 100 * 1024)
    fd = os.open(fs.path("u/pre"), os.O_CREAT | os.O_RDWR, 0o644)
    os.posix_fallocate(fd, 0, 1 << 20)
    # punch a hole in the middle (FALLOC_FL_PUNCH_HOLE|KEEP_SIZE)
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.fallocate(fd, 3, ctypes.c_long(128 << 10),
                          ctypes.c_long(256 << 10)) == 0
    os.close(fd)
    os.chown(fs.path("u/pre"), USER + 1, GROUP)

    # as the user: files, directories, a symlink, removals
    def as_user():
        os.mkdir(os.path.join(m, "u/sub"))
        for i in range(20):
            f4test.write_file(os.path.join(m, "u/sub/f%d" % i),
                              f4test.pattern(i * 3000, seed=i))
        os.symlink("x" * 200, os.path.join(m, "u/sub/longlink"))
        os.symlink("short", os.path.join(m, "u/sub/shortlink"))
        for i in range(0, 20, 3):
            os.unlink(os.path.join(m, "u/sub/f%d" % i))
        os.rename(os.path.join(m, "u/sub/f1"), os.path.join(m, "u/f1"))
        os.mkdir(os.path.join(m, "u/gone"))
        f4test.write_file(os.path.join(m, "u/gone/x"), b"y" * 5000)
        os.unlink(os.path.join(m, "u/gone/x"))
        os.rmdir(os.path.join(m, "u/gone"))
    f4test.run_as(USER, GROUP, as_user)
    _link_projids[fs.path("u/sub/longlink")] = 0
    _link_projids[fs.path("u/sub/shortlink")] = 0

    # unlinked while open: counts until the last close
    fd = os.open(fs.path("u/open"), os.O_CREAT | os.O_RDWR, 0o644)
    os.fchown(fd, USER, GROUP)
    os.write(fd, b"z" * 40000)
    os.unlink(fs.path("u/open"))
    os.write(fd, b"z" * 40000)
    os.close(fd)
    os.unlink(fs.path("hard"))

    if with_project:
        os.mkdir(fs.path("p"))
        set_project(fs.path("p"), 42, inherit=True)
        os.mkdir(fs.path("p/d"))
        f4test.write_file(fs.path("p/d/a"), b"a" * 70000)
        os.chown(fs.path("p/d/a"), USER, GROUP)
        f4test.write_file(fs.path("u/moved"), b"m" * 9000)
        set_project(fs.path("u/moved"), 42)
        os.rename(fs.path("u/moved"), fs.path("p/moved"))
        set_project(fs.path("u/f1"), 7)
        os.setxattr(fs.path("p/d/a"), "user.v", b"v" * 700)
        os.truncate(fs.path("p/d/a"), 3000)


@pytest.mark.parametrize("features", [
    pytest.param(f, marks=pytest.mark.mkfs_opts("-O", f), id=f)
    for f in ("quota", "quota,project")])
@pytest.mark.mount_opts("allow_other")
def test_usage_exact_after_workload(fs_unmounted, variant, features):
    """A mixed workload leaves the quota files exactly right: e2fsck -fn
    (teardown) agrees, and so does usage computed from stat()."""
    fs = fs_unmounted
    fs.mount()
    with_project = "project" in features
    workload(fs, with_project)
    want = usage_by_stat(fs.mnt, with_project)
    fs.unmount()
    fs.fsck()
    assert_usage_matches(fs, want)
    assert list_quota(fs.image, "user")[USER][1] >= 18
    # and again across a second mount that changes the same ids
    fs.mount()
    shutil.rmtree(fs.path("u/sub"))
    f4test.write_file(fs.path("u/more"), b"q" * 123456)
    os.chown(fs.path("u/more"), USER, GROUP)
    want = usage_by_stat(fs.mnt, with_project)
    fs.unmount()
    fs.fsck()
    assert_usage_matches(fs, want)


@pytest.mark.mkfs_opts("-O", "quota")
def test_fsck_sees_wrong_usage(fs_unmounted, variant):
    """The oracle works: an owner changed behind the quota files' back
    (debugfs, offline) makes e2fsck -fn complain."""
    fs = fs_unmounted
    fs.mount()
    f4test.write_file(fs.path("f"), b"x" * 50000)
    fs.unmount()
    fs.fsck()
    f4test.debugfs(fs.image, "sif /f uid 4242", write=True)
    p = f4test.run(["e2fsck", "-fn", fs.image], check=False)
    assert p.returncode != 0 and "quota" in (p.stdout + p.stderr).lower(), \
        p.stdout + p.stderr
    # leave a clean image for the teardown check
    f4test.debugfs(fs.image, "sif /f uid 0", write=True)


@pytest.mark.mkfs_opts("-O", "quota")
def test_many_ids_grow_the_tree(fs_unmounted, variant):
    """Ids spread over the whole 32-bit range need new tree and data
    blocks in the quota files; a second mount finds and updates them."""
    fs = fs_unmounted
    fs.mount()
    ids = sorted({(i * 2654435761) % 4000000000 + 1 for i in range(1, 120)} |
                 set(range(2000, 2040)))
    os.mkdir(fs.path("d"))
    for i in ids:
        p = fs.path("d/%d" % i)
        f4test.write_file(p, b"i" * (i % 7 * 1000))
        os.chown(p, i, i % 5000)
    want = usage_by_stat(fs.mnt, False)
    fs.unmount()
    fs.fsck()
    assert_usage_matches(fs, want)
    fs.mount()
    for i in ids[::2]:
        os.unlink(fs.path("d/%d" % i))
    for i in ids[1::4]:
        os.chown(fs.path("d/%d" % i), i + 1, 77)
    want = usage_by_stat(fs.mnt, False)
    fs.unmount()
    fs.fsck()
    assert_usage_matches(fs, want)


# ---------------------------------------------------------------------------
# limits

def _need(*tools):
    missing = [t for t in tools if not shutil.which(t)]
    if missing:
        pytest.skip("needs %s (Debian package quota)" % ", ".join(missing))


def image_with_limits(fs, kernel_mnt, limits, grace=None, project=()):
    """Make fs.image with limits set by quota-tools on a kernel mount,
    then moved into the quota inodes by tune2fs -O quota.

    This kernel can't mount project quota at all, so project limits
    (kind "p") are set by setquota as user limits of the same id in a
    second file, which only gets the project file's magic number before
    tune2fs -O project imports it as aquota.project."""
    _need("quotacheck", "setquota")
    os.makedirs(kernel_mnt, exist_ok=True)
    p = f4test.run(["mount", "-o", "loop,usrquota,grpquota", fs.image,
                    kernel_mnt], check=False)
    if p.returncode:
        pytest.skip("the kernel cannot mount the image: " + p.stderr)
    try:
        f4test.run(["quotacheck", "-cugm", "-F", "vfsv1", kernel_mnt])
        user = os.path.join(kernel_mnt, "aquota.user")
        if project:
            saved = user + ".saved"
            shutil.copyfile(user, saved)
            for ident, bsoft, bhard, isoft, ihard in project:
                f4test.run(["setquota", "-F", "vfsv1", "-u", str(ident),
                            str(bsoft), str(bhard), str(isoft), str(ihard),
                            kernel_mnt])
            prj = os.path.join(kernel_mnt, "aquota.project")
            shutil.copyfile(user, prj)
            with open(prj, "r+b") as f:
                f.write(struct.pack("<I", 0xD9C03F14))
            shutil.copyfile(saved, user)
            os.unlink(saved)
        for kind, ident, bsoft, bhard, isoft, ihard in limits:
            f4test.run(["setquota", "-F", "vfsv1", "-" + kind, str(ident),
                        str(bsoft), str(bhard), str(isoft), str(ihard),
                        kernel_mnt])
    finally:
        f4test.run(["umount", kernel_mnt])
    if project:
        f4test.run(["tune2fs", "-O", "quota,project", "-Q",
                    "usrquota,grpquota,prjquota", fs.image])
        assert list_quota(fs.image, "project")[project[0][0]][3] == \
            project[0][2]
    else:
        f4test.run(["tune2fs", "-O", "quota", fs.image])
    if grace is not None:
        set_grace(fs.image, grace)
    fs.fsck()


def set_grace(image, seconds):
    """Grace times live in the header of the quota files; quota-tools'
    own setting of them doesn't survive tune2fs, so patch them in."""
    bs = int(re.search(r"Block size:\s+(\d+)",
                       f4test.run(["dumpe2fs", "-h", image]).stdout).group(1))
    for ino in (3, 4):
        out = f4test.debugfs(image, "bmap <%d> 0" % ino).strip()
        with open(image, "r+b") as f:
            f.seek(int(out) * bs + 8)
            f.write(struct.pack("<II", seconds, seconds))


def write_until_error(path, chunk=4096, limit=64 << 20):
    """Append until an error; return (bytes written, errno)."""
    n = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        while n < limit:
            try:
                w = os.write(fd, b"q" * chunk)
            except OSError as e:
                return n, e.errno
            n += w
            if w < chunk:
                try:
                    os.write(fd, b"q" * chunk)
                except OSError as e:
                    return n, e.errno
                return n, 0
        os.fsync(fd)
        return n, 0
    finally:
        os.close(fd)


@pytest.mark.mount_opts("allow_other")
def test_block_and_inode_hard_limits(fs_unmounted, workdir, variant):
    """EDQUOT at the user's hard limits of blocks and inodes, and at the
    group's; root is exempt."""
    fs = fs_unmounted
    # 1 KiB units: soft 0, hard 400 KiB for the user; 10 inodes
    image_with_limits(fs, os.path.join(workdir, "k"), [
        ("u", USER, 0, 400, 0, 10), ("g", 1234, 0, 0, 0, 3)])
    fs.mount()
    os.mkdir(fs.path("home"))
    os.chown(fs.path("home"), USER, GROUP)
    home = fs.path("home")

    n, err = f4test.run_as(USER, GROUP, write_until_error,
                           os.path.join(home, "big"))
    assert err == errno.EDQUOT, "writing stopped with %s after %d bytes" % (
        f4test.errname(err), n)
    # the directory (one block) and the file share the 400 KiB
    assert 400 * 1024 - 2 * fs.blocksize - 8192 <= n <= 400 * 1024, n
    assert f4test.errno_as(USER, GROUP, lambda: os.truncate(
        os.path.join(home, "big"), n)) == 0
    # fallocate is refused as well
    def falloc():
        fd = os.open(os.path.join(home, "fa"), os.O_CREAT | os.O_WRONLY)
        try:
            os.posix_fallocate(fd, 0, 1 << 20)
        finally:
            os.close(fd)
    assert f4test.errno_as(USER, GROUP, falloc) == errno.EDQUOT
    # a directory or a long symlink takes a block at once: refused too
    assert f4test.errno_as(USER, GROUP, os.mkdir,
                           os.path.join(home, "d")) == errno.EDQUOT
    assert f4test.errno_as(USER, GROUP, os.symlink, "t" * 100,
                           os.path.join(home, "l")) == errno.EDQUOT
    assert sorted(os.listdir(home)) == ["big", "fa"]
    # inodes: home, big and fa count; up to 10 in all
    made = 0

    def create_many():
        nonlocal made
        for i in range(50):
            os.close(os.open(os.path.join(home, "e%d" % i),
                             os.O_CREAT | os.O_WRONLY, 0o644))
            made += 1
    assert f4test.errno_as(USER, GROUP, create_many) == errno.EDQUOT
    assert sorted(os.listdir(home)) == sorted(
        ["big", "fa"] + ["e%d" % i for i in range(7)])
    assert f4test.errno_as(USER, GROUP, os.mkdir,
                           os.path.join(home, "dir")) == errno.EDQUOT

    # links need no inode, but a directory that must grow for them needs
    # a block: refused, at most the one block over
    def link_many():
        for i in range(500):
            os.link(os.path.join(home, "big"),
                    os.path.join(home, "L%03d" % i + "x" * 200))
    du = os.stat(home).st_blocks
    assert f4test.errno_as(USER, GROUP, link_many) == errno.EDQUOT
    assert os.stat(home).st_blocks <= du + 3 * fs.blocksize // 512
    links = [n for n in os.listdir(home) if n.startswith("L")]
    assert os.stat(os.path.join(home, "big")).st_nlink == len(links) + 1
    for n in links:
        os.unlink(os.path.join(home, n))

    # root is exempt: it may fill the user's file past the limit
    with open(os.path.join(home, "big"), "ab") as f:
        f.write(b"r" * 200000)
    os.close(os.open(os.path.join(home, "rootmade"), os.O_CREAT, 0o644))
    os.chown(os.path.join(home, "rootmade"), USER, GROUP)

    # the group limit: 3 inodes of group 1234, reached through chgrp
    os.mkdir(fs.path("g"))
    os.chmod(fs.path("g"), 0o777)
    for i in range(3):
        f4test.write_file(fs.path("g/r%d" % i), b"")
        os.chown(fs.path("g/r%d" % i), 0, 1234)
    f4test.write_file(fs.path("g/mine"), b"")
    os.chown(fs.path("g/mine"), 2000, 2000)
    assert f4test.errno_as(2000, 2000, os.chown, fs.path("g/mine"), -1,
                           1234, groups=(1234,)) == errno.EDQUOT
    os.unlink(fs.path("g/r0"))
    # r0 is released when the kernel forgets it, a moment after unlink
    for _ in range(50):
        err = f4test.errno_as(2000, 2000, os.chown, fs.path("g/mine"), -1,
                              1234, groups=(1234,))
        if err != errno.EDQUOT:
            break
        time.sleep(0.1)
    assert err == 0, f4test.errname(err)
    fs.unmount()
    fs.fsck()
    q = list_quota(fs.image, "user")[USER]
    assert q[0] > 400 * 1024 and q[3] == 400 and q[5] == 10, q
    assert q[1] == 11, q


@pytest.mark.mount_opts("allow_other")
def test_soft_limit_grace(fs_unmounted, workdir, variant):
    """Over the soft limit is allowed until the grace time runs out; then
    EDQUOT, as with the hard limit."""
    fs = fs_unmounted
    image_with_limits(fs, os.path.join(workdir, "k"), [
        ("u", USER, 100, 0, 2, 0)], grace=2)
    fs.mount()
    os.mkdir(fs.path("home"))
    os.chown(fs.path("home"), USER, GROUP)
    home = fs.path("home")

    def step1():
        f4test.write_file(os.path.join(home, "a"), b"a" * 150 * 1024)
        f4test.write_file(os.path.join(home, "b"), b"")
    f4test.run_as(USER, GROUP, step1)      # over both soft limits: fine
    time.sleep(3)
    assert f4test.errno_as(USER, GROUP, f4test.write_file,
                           os.path.join(home, "c"), b"") == errno.EDQUOT
    n, err = f4test.run_as(USER, GROUP, write_until_error,
                           os.path.join(home, "a"))
    # only what fits in the last block already allocated
    assert err == errno.EDQUOT and n < fs.blocksize, (n, err)
    # back under the soft limits: allowed again, grace starts afresh
    os.unlink(os.path.join(home, "a"))
    os.unlink(os.path.join(home, "b"))
    f4test.run_as(USER, GROUP, f4test.write_file, os.path.join(home, "c"),
                  b"c" * 10000)


# ---------------------------------------------------------------------------
# project IDs

@pytest.mark.mkfs_opts("-O", "quota,project")
@pytest.mark.mount_opts("allow_other")
def test_project_ids(fs, variant):
    """chattr -p / lsattr -p / chattr +P, inheritance, and EXDEV for
    links and renames into another project's inheriting directory."""
    os.mkdir(fs.path("p"))
    f4test.run(["chattr", "+P", "-p", "9", fs.path("p")])
    out = f4test.run(["lsattr", "-pd", fs.path("p")]).stdout
    assert out.split()[0] == "9" and "P" in out.split()[1], out
    os.mkdir(fs.path("p/sub"))
    f4test.write_file(fs.path("p/sub/f"), b"x")
    assert projid(fs.path("p/sub")) == 9 and projid(fs.path("p/sub/f")) == 9
    assert get_fsx(fs.path("p/sub"))[0] & FS_XFLAG_PROJINHERIT
    f4test.write_file(fs.path("out"), b"y")
    assert projid(fs.path("out")) == 0
    f4test.assert_errno(errno.EXDEV, os.link, fs.path("out"),
                        fs.path("p/out"))
    f4test.assert_errno(errno.EXDEV, os.rename, fs.path("out"),
                        fs.path("p/out"))
    # leaving is fine; so is arriving with the right project
    os.rename(fs.path("p/sub/f"), fs.path("f"))
    assert projid(fs.path("f")) == 9
    os.rename(fs.path("f"), fs.path("p/f"))
    set_project(fs.path("out"), 9)
    os.link(fs.path("out"), fs.path("p/out"))
    # exchange checks both directions
    os.mkdir(fs.path("q"))
    set_project(fs.path("q"), 5, inherit=True)
    f4test.write_file(fs.path("q/g"), b"g")
    f4test.assert_errno(errno.EXDEV, f4test.renameat2, fs.path("q/g"),
                        fs.path("p/f"), 2)
    # only the owner (or root) sets a project
    os.chown(fs.path("q/g"), USER, GROUP)
    assert f4test.errno_as(2000, 2000, set_project, fs.path("q/g"),
                           6) == errno.EPERM
    f4test.run_as(USER, GROUP, set_project, fs.path("q/g"), 6)
    assert projid(fs.path("q/g")) == 6
    want = usage_by_stat(fs.mnt, True)
    fs.unmount()
    fs.fsck()
    assert_usage_matches(fs, want)
    assert list_quota(fs.image, "project")[9][1] == 4
    fs.mount()


@pytest.mark.mkfs_opts("-O", "quota")
def test_project_needs_feature(fs, variant):
    """Without the project feature a file's project stays 0, as in ext4."""
    f4test.write_file(fs.path("f"), b"x")
    assert projid(fs.path("f")) == 0
    f4test.assert_errno(errno.EOPNOTSUPP, set_project, fs.path("f"), 3)
    set_project(fs.path("f"), 0)


@pytest.mark.mount_opts("allow_other")
def test_project_hard_limits(fs_unmounted, workdir, variant):
    """A project's hard limits bite whoever writes into its directory,
    and a file too big for the project can't be moved into it."""
    fs = fs_unmounted
    image_with_limits(fs, os.path.join(workdir, "k"), [],
                      project=[(42, 0, 200, 0, 5)])
    fs.mount()
    os.mkdir(fs.path("p"))
    os.chmod(fs.path("p"), 0o777)
    whole = os.statvfs(fs.mnt)
    set_project(fs.path("p"), 42, inherit=True)
    # df in the project's directory shows the project's limits (as ext4)
    st = os.statvfs(fs.path("p"))
    assert st.f_blocks == 200 * 1024 // fs.blocksize
    assert st.f_bavail == st.f_blocks - 1       # p's own block
    assert (st.f_files, st.f_ffree) == (5, 4)
    assert os.statvfs(fs.mnt).f_blocks == whole.f_blocks
    n, err = f4test.run_as(USER, GROUP, write_until_error, fs.path("p/big"))
    assert err == errno.EDQUOT, (n, f4test.errname(err))
    assert 200 * 1024 - 2 * fs.blocksize - 8192 <= n <= 200 * 1024, n

    def create_many():
        for i in range(10):
            f4test.write_file(fs.path("p/e%d" % i), b"")
    assert f4test.errno_as(USER, GROUP, create_many) == errno.EDQUOT
    # p, big and e0..e2: five inodes
    assert sorted(os.listdir(fs.path("p"))) == ["big", "e0", "e1", "e2"]
    f4test.write_file(fs.path("mine"), b"m" * 8192)
    os.chown(fs.path("mine"), USER, GROUP)
    os.unlink(fs.path("p/e0"))
    # e0 is released when the kernel forgets it, a moment after unlink:
    # then the project has one inode to spare, and "mine" is refused for
    # its blocks alone
    st = f4test.wait_statfs(fs.path("p"), lambda st: st.f_ffree == 1)
    assert (st.f_files, st.f_ffree) == (5, 1), st
    assert f4test.errno_as(USER, GROUP, set_project, fs.path("mine"),
                           42) == errno.EDQUOT
    assert projid(fs.path("mine")) == 0
    set_project(fs.path("mine"), 42)            # root may
    # the root directory too (statfs of the mount's root)
    set_project(fs.mnt, 42, inherit=True)
    st = os.statvfs(fs.mnt)
    assert (st.f_files, st.f_ffree) == (5, 0)
    fs.unmount()
    fs.fsck()
    q = list_quota(fs.image, "project")[42]
    assert q[0] > 200 * 1024 and q[1] == 6, q


def ea_values_by_owner(root, bs, with_project):
    """Values of more than a block (kept in EA inodes) per owner: each
    costs its file's owners an inode in quota, as e2fsck counts."""
    use = {"user": {}, "group": {}, "project": {}}
    seen = set()
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(d, n)
            st = os.lstat(p)
            if st.st_ino in seen or os.path.islink(p):
                continue
            seen.add(st.st_ino)
            big = sum(1 for k in os.listxattr(p)
                      if len(os.getxattr(p, k)) > bs)
            if not big:
                continue
            ids = {"user": st.st_uid, "group": st.st_gid}
            if with_project:
                ids["project"] = projid(p)
            for kind, ident in ids.items():
                use[kind][ident] = use[kind].get(ident, 0) + big
    return use


def ea_workload(fs, with_project):
    """Large values set, replaced and removed; files that hold them
    chowned, moved between projects, hard-linked, unlinked, and unlinked
    while open."""
    bs = fs.blocksize
    big = [f4test.pattern(k * bs + 7, seed=k) for k in range(1, 6)]
    os.mkdir(fs.path("e"))
    os.chown(fs.path("e"), USER, GROUP)
    for i in range(6):
        p = fs.path("e/f%d" % i)
        f4test.write_file(p, f4test.pattern(i * 5000, seed=i))
        os.setxattr(p, "user.big", big[i % 5])
        os.setxattr(p, "user.small", b"s" * 40)
    os.setxattr(fs.path("e/f0"), "user.two", big[4])
    os.setxattr(fs.path("e/f0"), "user.big", big[3])          # replace
    os.setxattr(fs.path("e/f1"), "user.big", b"now small")     # big->small
    os.setxattr(fs.path("e/f2"), "user.small", big[1])         # small->big
    os.removexattr(fs.path("e/f3"), "user.big")
    os.chown(fs.path("e/f4"), USER, GROUP)
    os.chown(fs.path("e/f5"), USER + 1, GROUP + 1)
    os.chown(fs.path("e/f0"), USER + 1, GROUP)
    os.link(fs.path("e/f4"), fs.path("e/f4link"))
    os.unlink(fs.path("e/f4"))

    def as_user():
        p = os.path.join(fs.mnt, "e/mine")
        f4test.write_file(p, b"m" * 3000)
        os.setxattr(p, "user.big", big[2])
        os.setxattr(p, "user.big2", big[0])
        os.removexattr(p, "user.big2")
        q = os.path.join(fs.mnt, "e/gone")
        f4test.write_file(q, b"")
        os.setxattr(q, "user.big", big[0])
        os.unlink(q)
    f4test.run_as(USER, GROUP, as_user)
    # unlinked while open, the value set through the descriptor
    fd = os.open(fs.path("e/open"), os.O_CREAT | os.O_RDWR, 0o644)
    os.fchown(fd, USER, GROUP)
    os.setxattr(fd, "user.big", big[1])
    os.unlink(fs.path("e/open"))
    os.setxattr(fd, "user.big2", big[2])
    os.close(fd)
    # equal values in several files, then one changed and one deleted
    for n in ("s1", "s2", "s3"):
        f4test.write_file(fs.path("e/" + n), b"")
        os.chown(fs.path("e/" + n), USER, GROUP)
        os.setxattr(fs.path("e/" + n), "user.same", big[3])
    os.setxattr(fs.path("e/s1"), "user.same", big[0])
    os.unlink(fs.path("e/s2"))
    if with_project:
        os.mkdir(fs.path("p"))
        set_project(fs.path("p"), 42, inherit=True)
        f4test.write_file(fs.path("p/x"), b"x" * 7000)
        os.setxattr(fs.path("p/x"), "user.big", big[4])
        set_project(fs.path("e/f2"), 42)
        set_project(fs.path("e/s3"), 9)
        os.chown(fs.path("p/x"), USER, GROUP)


def expected_with_ea(fs, with_project):
    want = usage_by_stat(fs.mnt, with_project)
    extra = ea_values_by_owner(fs.mnt, fs.blocksize, with_project)
    for kind, ids in extra.items():
        for ident, n in ids.items():
            sp, ino = want[kind][ident]
            want[kind][ident] = (sp, ino + n)
    return want, extra


@pytest.mark.parametrize("features", [
    pytest.param(f, marks=pytest.mark.mkfs_opts("-O", f), id=f)
    for f in ("quota,ea_inode", "quota,project,ea_inode")] + [
    pytest.param("bigalloc,quota,project,ea_inode", marks=pytest.mark.
                 mkfs_opts("-O", "bigalloc,quota,project,ea_inode", "-C",
                           "16384"), id="bigalloc")])
@pytest.mark.mount_opts("allow_other")
def test_usage_exact_with_ea_inode(fs_unmounted, variant, features):
    """Values kept in EA inodes are charged to their file's owners: an
    inode each, and their blocks (in the file's i_blocks), as the kernel
    charges them and e2fsck counts.  Read-write now (it was read-only);
    e2fsck -fn finds the accounting right after a mixed workload."""
    fs = fs_unmounted
    fs.mount()
    with_project = "project" in features
    ea_workload(fs, with_project)
    want, extra = expected_with_ea(fs, with_project)
    assert extra["user"].get(USER, 0) >= 4, extra
    fs.unmount()
    fs.fsck()
    assert_usage_matches(fs, want)
    # a second mount: remove it all but one file, chown that one back
    fs.mount()
    for n in os.listdir(fs.path("e")):
        if n != "mine":
            os.unlink(fs.path("e/" + n))
    if with_project:
        shutil.rmtree(fs.path("p"))
    os.chown(fs.path("e/mine"), 0, 0)
    want, _ = expected_with_ea(fs, with_project)
    fs.unmount()
    fs.fsck()
    assert_usage_matches(fs, want)
    assert list_quota(fs.image, "user").get(USER, (0, 0))[:2] == (
        want["user"].get(USER, (0, 0))), want["user"]


@pytest.mark.mkfs_opts("-O", "ea_inode")
@pytest.mark.mount_opts("allow_other")
def test_ea_inode_value_limits(fs_unmounted, workdir, variant):
    """A large value costs an inode and its blocks against the owner's
    limits, as on ext4: EDQUOT past them, the old value left in place;
    root is exempt."""
    fs = fs_unmounted
    bs_k = 4 if variant == "ext4" else 1
    # 1 KiB units: user: 6 inodes and 20 blocks' worth of KiB
    image_with_limits(fs, os.path.join(workdir, "k"), [
        ("u", USER, 0, 20 * bs_k, 0, 6), ("u", USER + 1, 0, 0, 0, 2),
        ("g", 1234, 0, 0, 0, 2)])
    fs.mount()
    bs = fs.blocksize
    os.mkdir(fs.path("h"))
    os.chown(fs.path("h"), USER, GROUP)
    home = fs.path("h")
    # h and f: two inodes, two blocks (h's); values: 4 inodes more
    f = os.path.join(home, "f")

    def setx(name, size, seed):
        os.setxattr(f, name, f4test.pattern(size, seed=seed))

    def make():
        f4test.write_file(f, b"")
        for i in range(4):
            setx("user.v%d" % i, 2 * bs, i)
    f4test.run_as(USER, GROUP, make)
    assert f4test.errno_as(USER, GROUP, setx, "user.v4", 2 * bs,
                           9) == errno.EDQUOT
    assert "user.v4" not in os.listxattr(f)
    # ext4 charges a new value before it lets go of the one it replaces:
    # at the inode limit, a replacement is refused too
    assert f4test.errno_as(USER, GROUP, setx, "user.v0", 3 * bs,
                           10) == errno.EDQUOT
    assert os.getxattr(f, "user.v0") == f4test.pattern(2 * bs, seed=0)
    assert f4test.errno_as(USER, GROUP, os.removexattr, f, "user.v3") == 0
    # blocks: 1 (h) + 3 * 2; 5 more next to the 2 replaced are fine
    assert f4test.errno_as(USER, GROUP, setx, "user.v0", 5 * bs, 10) == 0
    # 1 + 5 + 2 + 2 = 10; 12 in place of 2 ends at 20, the limit, but
    # needs 22 on the way
    assert f4test.errno_as(USER, GROUP, setx, "user.v1", 12 * bs,
                           11) == errno.EDQUOT
    assert os.getxattr(f, "user.v1") == f4test.pattern(2 * bs, seed=1)
    assert f4test.errno_as(USER, GROUP, setx, "user.v1", 10 * bs, 11) == 0
    # root may
    setx("user.v4", 2 * bs, 12)
    # USER+1 has room for 2 inodes: one file and one value
    os.mkdir(fs.path("o"))
    os.chmod(fs.path("o"), 0o777)
    f4test.write_file(fs.path("o/one"), b"")
    os.chown(fs.path("o/one"), USER + 1, GROUP)
    os.setxattr(fs.path("o/one"), "user.v", f4test.pattern(2 * bs))
    assert f4test.errno_as(USER + 1, GROUP, os.setxattr,
                           fs.path("o/one"), "user.w",
                           f4test.pattern(2 * bs)) == errno.EDQUOT
    # chgrp takes the values' inodes along: group 1234 has room for 2,
    # a file with two values is 3
    g = os.path.join(home, "g")
    f4test.write_file(g, b"")
    os.chown(g, USER, GROUP)
    os.setxattr(g, "user.a", f4test.pattern(bs + 1))
    os.setxattr(g, "user.b", f4test.pattern(bs + 2))
    assert f4test.errno_as(USER, GROUP, os.chown, g, -1, 1234,
                           groups=(1234,)) == errno.EDQUOT
    os.removexattr(g, "user.b")
    assert f4test.errno_as(USER, GROUP, os.chown, g, -1, 1234,
                           groups=(1234,)) == 0
    fs.unmount()
    fs.fsck()
    q = list_quota(fs.image, "user")
    assert list_quota(fs.image, "group")[1234][1] == 2
    assert q[USER][1] == 8 and q[USER + 1][1] == 2, q
    assert q[USER][0] == (1 + 5 + 10 + 2 + 2 + 2) * bs, q


@pytest.mark.mkfs_opts("-O", "quota,project,ea_inode")
def test_ea_inode_orphan_quota(fs_unmounted, variant):
    """kill -9 while a file with values in EA inodes is open and unlinked:
    the next mount frees it and gives its owners back the file, its
    blocks and the values' inodes; e2fsck -fn agrees."""
    from test_orphans import crash_daemon, hold_after
    fs = fs_unmounted
    fs.mount()
    bs = fs.blocksize
    f4test.write_file(fs.path("keep"), b"k" * 3000)
    os.chown(fs.path("keep"), USER, GROUP)
    os.setxattr(fs.path("keep"), "user.big", f4test.pattern(2 * bs))

    def setup():
        p = fs.path("victim")
        fd = os.open(p, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        os.fchown(fd, USER, GROUP)
        os.write(fd, f4test.pattern(3 * bs, seed=3))
        os.setxattr(p, "user.big", f4test.pattern(2 * bs + 3, seed=4))
        os.setxattr(p, "user.big2", f4test.pattern(bs + 3, seed=5))
        os.unlink(p)
        os.fsync(fd)
        fd2 = os.open(fs.mnt, os.O_RDONLY | os.O_DIRECTORY)
        os.fsync(fd2)
        os.close(fd2)
    pid = hold_after(setup)
    crash_daemon(fs, holders=[pid])
    fs.mount()
    assert sorted(os.listdir(fs.mnt)) == ["keep", "lost+found"]
    want, _ = expected_with_ea(fs, True)
    fs.unmount()
    fs.fsck()
    assert_usage_matches(fs, want)
    assert list_quota(fs.image, "user")[USER][1] == 2
