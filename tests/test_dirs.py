"""Directories: thousands of entries (htree), readdir exactly once,
telldir/seekdir stability, readdir while unlinking, EROFS on ro mounts."""

import errno
import os
import random
import shutil
import stat

import pytest

import f4test
from f4test import Dir, assert_errno, renameat2, utimensat, write_file


def listing(path):
    """All entries of a directory through readdir, '.' and '..' included;
    fails on a duplicate name."""
    with Dir(path) as d:
        entries = d.read_all()
    names = [e[0] for e in entries]
    dups = sorted({n for n in names if names.count(n) > 1}) \
        if len(set(names)) != len(names) else []
    assert not dups, "readdir returned these names more than once: %s" % dups[:20]
    return {e[0]: (e[1], e[2]) for e in entries}


def check_listing(path, expected_names):
    got = listing(path)
    assert "." in got and ".." in got
    names = set(got) - {".", ".."}
    missing = sorted(set(expected_names) - names)
    extra = sorted(names - set(expected_names))
    assert not missing and not extra, "missing %s..., unexpected %s..." % (
        missing[:10], extra[:10])
    return got


def name_for(i):
    # mostly short names, every tenth a long one so that blocks fill fast
    if i % 10 == 0:
        return "long-%05d-%s" % (i, "x" * 180)
    return "f%05d" % i


@pytest.mark.timeout(600)
@pytest.mark.image_size("1G")       # 5000 data blocks of 64 KiB on ext4-64k
def test_many_entries(fs):
    d = fs.path("big")
    os.mkdir(d)
    n = 5000
    for i in range(n):
        p = os.path.join(d, name_for(i))
        if i % 50 == 7:
            os.mkdir(p)
        else:
            write_file(p, b"%d" % i)
    all_names = {name_for(i) for i in range(n)}
    got = check_listing(d, all_names)
    # d_ino and d_type agree with lstat
    for name in random.Random(1).sample(sorted(all_names), 300) + [".", ".."]:
        st = os.lstat(os.path.join(d, name))
        assert got[name][0] == st.st_ino, name
        assert got[name][1] == f4test.dtype_of_mode(st.st_mode), name
    assert os.stat(d).st_nlink == 2 + len([i for i in range(n) if i % 50 == 7])

    # remove every other entry, list, add them back, list
    for i in range(0, n, 2):
        p = os.path.join(d, name_for(i))
        (os.rmdir if i % 50 == 7 else os.unlink)(p)
    half = {name_for(i) for i in range(1, n, 2)}
    check_listing(d, half)
    for i in range(0, n, 2):
        assert_errno(errno.ENOENT, os.lstat, os.path.join(d, name_for(i)))
    for i in range(0, n, 2):
        write_file(os.path.join(d, name_for(i)), b"re-%d" % i)
    check_listing(d, all_names)
    fs.remount()
    check_listing(d, all_names)
    # every name can be looked up, with the right content
    for i in range(n):
        p = os.path.join(d, name_for(i))
        if i % 50 == 7 and i % 2 == 1:
            assert stat.S_ISDIR(os.lstat(p).st_mode)
        else:
            want = (b"re-%d" if i % 2 == 0 else b"%d") % i
            assert f4test.read_file(p) == want, name_for(i)
    for bad in ("f99999", "long-00000-", "F00001", name_for(1) + "x"):
        assert_errno(errno.ENOENT, os.lstat, os.path.join(d, bad))
    fs.unmount()
    # a directory that big is hashed (htree), as the kernel makes it
    flags = f4test.inode_flags(fs.image, "big")
    assert flags & f4test.EXT4_INDEX_FL, (
        "directory with %d entries is not indexed (flags %#x)" % (n, flags))


def test_dot_entries(fs):
    os.makedirs(fs.path("a", "b"))
    for path, parent in ((fs.mnt, fs.mnt), (fs.path("a"), fs.mnt),
                         (fs.path("a", "b"), fs.path("a"))):
        got = listing(path)
        assert got["."] == (os.stat(path).st_ino, f4test.DT_DIR)
        assert got[".."] == (os.stat(parent).st_ino, f4test.DT_DIR)
    assert os.stat(fs.mnt).st_ino == 2
    # the types of every kind of entry
    write_file(fs.path("a", "f"), b"")
    os.symlink("f", fs.path("a", "l"))
    os.mkfifo(fs.path("a", "p"))
    os.mknod(fs.path("a", "c"), stat.S_IFCHR | 0o600, os.makedev(1, 3))
    os.mknod(fs.path("a", "k"), stat.S_IFBLK | 0o600, os.makedev(7, 1))
    os.mknod(fs.path("a", "s"), stat.S_IFSOCK | 0o600)
    want = {"f": f4test.DT_REG, "l": f4test.DT_LNK, "p": f4test.DT_FIFO,
            "c": f4test.DT_CHR, "k": f4test.DT_BLK, "s": f4test.DT_SOCK,
            "b": f4test.DT_DIR}
    for check in range(2):
        got = listing(fs.path("a"))
        assert {k: v[1] for k, v in got.items() if k not in (".", "..")} == want
        fs.remount()


def test_telldir_seekdir(fs):
    d = fs.path("d")
    os.mkdir(d)
    n = 400
    for i in range(n):
        write_file(os.path.join(d, "entry-%04d-%s" % (i, "y" * (i % 40))), b"")
    with Dir(d) as dh:
        order = []          # (position before reading, name)
        while True:
            pos = dh.tell()
            e = dh.read()
            if e is None:
                end = pos
                break
            order.append((pos, e[0]))
        assert len(order) == n + 2
        assert len({name for _, name in order}) == n + 2
        rnd = random.Random(7)
        # jump around: every position gives back its entry
        for k in rnd.sample(range(len(order)), 120):
            pos, name = order[k]
            dh.seek(pos)
            assert dh.read()[0] == name, "seekdir(%d)" % pos
        dh.seek(end)
        assert dh.read() is None
        # from a position, the rest of the directory follows in order
        k = len(order) // 3
        dh.seek(order[k][0])
        rest = [e[0] for e in dh.read_all()]
        assert rest == [name for _, name in order[k:]]
        dh.rewind()
        assert [e[0] for e in dh.read_all()] == [name for _, name in order]

        # delete a third of the entries (not the sampled ones); remaining
        # positions still lead to their entries, and reading on skips
        # only the deleted names
        keep_idx = set(rnd.sample(range(2, len(order)), 60))
        deleted = set()
        for k, (_, name) in enumerate(order):
            if k >= 2 and k not in keep_idx and k % 3 == 0:
                os.unlink(os.path.join(d, name))
                deleted.add(name)
        for k in sorted(keep_idx, key=lambda _: rnd.random()):
            pos, name = order[k]
            dh.seek(pos)
            assert dh.read()[0] == name, "seekdir(%d) after deletions" % pos
        k = min(keep_idx)
        dh.seek(order[k][0])
        rest = [e[0] for e in dh.read_all()]
        assert rest == [name for _, name in order[k:] if name not in deleted]


@pytest.mark.timeout(600)
def test_readdir_while_unlinking(fs):
    d = fs.path("d")
    os.mkdir(d)
    n = 2000
    names = ["n%04d%s" % (i, "z" * (i % 64)) for i in range(n)]
    for name in names:
        write_file(os.path.join(d, name), b"x")
    seen = []
    with os.scandir(d) as it:
        for e in it:
            seen.append(e.name)
            os.unlink(os.path.join(d, e.name))
    dups = len(seen) - len(set(seen))
    assert dups == 0, "%d names were returned twice while unlinking" % dups
    assert sorted(seen) == sorted(names), "entries not yet removed were missed"
    assert os.listdir(d) == []
    os.rmdir(d)

    # rm -rf of a nested tree
    t = fs.path("tree")
    for a in range(8):
        for b in range(8):
            sub = os.path.join(t, "a%d" % a, "b%d" % b)
            os.makedirs(sub)
            for c in range(10):
                write_file(os.path.join(sub, "f%d" % c), b"x" * c)
            os.symlink("f1", os.path.join(sub, "link"))
    shutil.rmtree(t)
    assert sorted(os.listdir(fs.mnt)) == ["lost+found"]
    f4test.sync_fs(fs.mnt)
    # the last directory removed is freed when the kernel forgets it,
    # which may come a few requests after rmdir() returns
    s = f4test.wait_statfs(fs.mnt, lambda st: st.f_ffree == st.f_files - 11)
    assert s.f_ffree == s.f_files - 11, (
        "%d inodes in use after rm -rf, expected 11" % (
            s.f_files - s.f_ffree))
    fs.remount()
    s = fs.statfs()
    assert s.f_ffree == s.f_files - 11
    assert sorted(os.listdir(fs.mnt)) == ["lost+found"]


def test_erofs(fs):
    os.mkdir(fs.path("d"))
    os.mkdir(fs.path("empty"))
    write_file(fs.path("f"), b"content")
    write_file(fs.path("g"), b"other")
    os.symlink("f", fs.path("sl"))
    os.mkfifo(fs.path("fifo"))
    os.setxattr(fs.path("f"), "user.k", b"v")
    # the first snapshot's reads may update atimes (relatime); the second
    # one's may not
    f4test.snapshot(fs.mnt)
    before = f4test.snapshot(fs.mnt, times=True)
    fs.remount(opts=["ro"])
    assert fs.statfs().f_flag & os.ST_RDONLY
    P = fs.path
    R = errno.EROFS
    calls = [
        ("open O_WRONLY", os.open, (P("f"), os.O_WRONLY)),
        ("open O_RDWR", os.open, (P("f"), os.O_RDWR)),
        ("open O_RDONLY|O_TRUNC", os.open, (P("f"), os.O_RDONLY | os.O_TRUNC)),
        ("open O_CREAT new", os.open, (P("new"), os.O_CREAT | os.O_RDONLY)),
        ("open O_WRONLY|O_APPEND", os.open, (P("f"), os.O_WRONLY | os.O_APPEND)),
        ("mkdir", os.mkdir, (P("newdir"),)),
        ("rmdir", os.rmdir, (P("empty"),)),
        ("unlink", os.unlink, (P("g"),)),
        ("unlink missing", os.unlink, (P("missing"),)),
        ("rename", os.rename, (P("f"), P("f2"))),
        ("rename over", os.rename, (P("f"), P("g"))),
        ("RENAME_EXCHANGE", renameat2, (P("f"), P("g"), f4test.RENAME_EXCHANGE)),
        ("link", os.link, (P("f"), P("f3"))),
        ("symlink", os.symlink, ("f", P("sl2"))),
        ("mknod fifo", os.mkfifo, (P("fifo2"),)),
        ("mknod chr", os.mknod, (P("chr"), stat.S_IFCHR | 0o600,
                                 os.makedev(1, 3))),
        ("chmod", os.chmod, (P("f"), 0o600)),
        ("chmod dir", os.chmod, (P("d"), 0o700)),
        ("chown", os.chown, (P("f"), 1, 1)),
        ("chown -1 -1", os.chown, (P("f"), -1, -1)),
        ("lchown symlink", os.lchown, (P("sl"), 1, 1)),
        ("utimensat now", utimensat, (P("f"), None, None)),
        ("utimensat explicit", utimensat, (P("f"), (1, 0), (2, 0))),
        ("truncate", os.truncate, (P("f"), 0)),
        ("setxattr", os.setxattr, (P("f"), "user.k2", b"v")),
        ("removexattr", os.removexattr, (P("f"), "user.k")),
    ]
    bad = []
    for label, fn, args in calls:
        got = f4test.errno_of(fn, *args)
        if got != R:
            bad.append("%s: %s" % (label, f4test.errname(got)))
    # a write through an fd opened for reading fails with EBADF as usual
    fd = os.open(P("f"), os.O_RDONLY)
    try:
        assert f4test.errno_of(os.write, fd, b"x") == errno.EBADF
        assert f4test.errno_of(os.ftruncate, fd, 0) in (errno.EINVAL,
                                                         errno.EBADF, R)
    finally:
        os.close(fd)
    assert not bad, "expected EROFS:\n" + "\n".join(bad)
    # reading still works and nothing changed
    assert f4test.read_file(P("f")) == b"content"
    assert os.getxattr(P("f"), "user.k") == b"v"
    assert os.readlink(P("sl")) == "f"
    after = f4test.snapshot(fs.mnt, times=True)
    # reads may not even touch atime on a read-only mount
    d = f4test.diff_snapshots(before, after, ("rw", "ro"))
    assert not d, d
