"""Damaged images (issue #8, "Hostile and unlucky input").

A fresh, populated image is damaged on purpose with debugfs (inode fields,
superblock fields, whole or partial blocks of metadata), then mounted and
walked like `ls -lR`, `cat` of every file, `readlink`, `getfattr -d` and a
few writes.  What must hold (fuse4fs(1), errors=; ext4's behaviour):

- the daemon neither crashes nor hangs, and after hitting the damage it
  keeps serving the healthy part of the file system;
- the operation that hit the damage fails with EUCLEAN ("Structure needs
  cleaning", ext4's EFSCORRUPTED) or EIO, and nothing healthy fails;
- the damage is logged with the inode number, once (not again on every
  access);
- nothing outside the file system is written (the image carries padding
  past the file system's end) and healthy files are unchanged after a
  remount;
- the superblock records the error (dumpe2fs: "... with errors", "FS Error
  count"), so that e2fsck checks the file system;
- errors=continue|remount-ro|panic, and the superblock's default (tune2fs
  -e), behave as documented;
- a superblock that can't be right makes the mount itself refuse: one line
  on stderr, exit status 2.

The kernel's ext4 is the reference (F4_DRIVER=kernel runs everything that
is comparable); it reports a checksum failure as EFSBADCRC (EBADMSG), and a
lookup past a damaged entry of an unchecksummed directory as ENOENT, which
are accepted from the kernel only.
"""

import errno
import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time

import pytest

import f4test
from f4test import pattern, read_file, sha256_file, write_file

pytestmark = [pytest.mark.timeout(90)]

IMAGE_SIZE = 32 << 20
PAD_SIZE = 1 << 20

NBIG = 250              # files in big/: an htree directory of 3+ blocks
BIGNAME = "a-file-with-a-longish-name-%04d"
BIG_XATTR = b"V" * 3000  # does not fit in the inode: an xattr block


def _frag_data():
    """40 separate 4 KiB pieces: more extents than fit in the inode."""
    out = bytearray(39 * 65536 + 4096)
    for i in range(40):
        out[i * 65536:i * 65536 + 4096] = pattern(4096, seed=100 + i)
    return bytes(out)


def expected_tree():
    """relpath -> ("reg", data) | ("lnk", target) | ("dir", names)."""
    t = {
        "small": ("reg", b"small file\n"),
        "d/f1": ("reg", pattern(10000, seed=1)),
        "d/f2": ("reg", pattern(200000, seed=2)),
        "sub/deep/f3": ("reg", pattern(5000, seed=3)),
        "sub/g": ("reg", pattern(70000, seed=4)),
        "frag": ("reg", _frag_data()),
        "fastlink": ("lnk", "small"),
        "slowlink": ("lnk", "x" * 200),
    }
    for i in range(NBIG):
        t["big/" + BIGNAME % i] = ("reg", b"%d\n" % i)
    dirs = {"": set()}
    for rel in list(t):
        parts = rel.split("/")
        for k in range(len(parts)):
            parent = "/".join(parts[:k])
            dirs.setdefault(parent, set()).add(parts[k])
    for d, names in dirs.items():
        if d:
            t[d] = ("dir", names)
    t[""] = ("dir", dirs[""] | {"lost+found"})
    t["lost+found"] = ("dir", set())
    return t


XATTRS = {"small": {"user.small": b"hello"}, "d/f1": {"user.big": BIG_XATTR}}


_pristine = {}


def _make_pristine(path, variant, workdir, size):
    src = os.path.join(workdir, "src")
    os.mkdir(src)
    for rel, (kind, val) in sorted(expected_tree().items()):
        full = os.path.join(src, rel)
        if kind == "dir":
            os.makedirs(full, exist_ok=True)
            continue
        os.makedirs(os.path.dirname(full), exist_ok=True)
        if kind == "lnk":
            os.symlink(val, full)
        elif rel == "frag":
            with open(full, "wb") as f:
                for i in range(40):
                    f.seek(i * 65536)
                    f.write(val[i * 65536:i * 65536 + 4096])
        else:
            write_file(full, val)
    with open(path, "wb") as f:
        f.truncate(size)
    f4test.run(["mke2fs", "-F", "-q"] + f4test.ALL_VARIANTS[variant] +
               ["-d", src, path])
    p = f4test.run(["e2fsck", "-fyD", path], check=False)   # index dirs
    assert p.returncode in (0, 1), p.stdout + p.stderr
    val = os.path.join(workdir, "bigxattr")
    write_file(val, BIG_XATTR)
    f4test.debugfs(path, "ea_set /small user.small hello",
                   "ea_set -f %s /d/f1 user.big" % val, write=True)
    p = f4test.run(["e2fsck", "-fn", path], check=False)
    assert p.returncode == 0, "the populated image is not clean:\n" + p.stdout
    out = f4test.debugfs(path, "htree_dump /big")
    assert "Indirect levels" in out, "big/ is not an htree directory"
    with open(path, "ab") as f:
        f.write(pattern(PAD_SIZE, seed=77))


@pytest.fixture(scope="module", autouse=True)
def _pristine_images():
    yield
    for d in list(_pristine.values()):
        shutil.rmtree(os.path.dirname(d), ignore_errors=True)
    _pristine.clear()


def populated_image(path, variant, workdir, size=IMAGE_SIZE):
    """A fresh copy of an image of variant (made with mke2fs -d once per
    module) holding expected_tree(), with indexed directories, an xattr in
    the inode and one in a block.  PAD_SIZE bytes of padding follow the
    file system."""
    key = (variant, size)
    if key not in _pristine:
        d = tempfile.mkdtemp(prefix="f4dmg-",
                             dir=os.environ.get("F4_TMPDIR", "/tmp"))
        img = os.path.join(d, "pristine.img")
        _make_pristine(img, variant, d, size)
        _pristine[key] = img
    f4test.run(["cp", "--sparse=always", _pristine[key], path])
    return path


def padding_sum(path, size=IMAGE_SIZE):
    """sha256 of the bytes past the file system's end."""
    with open(path, "rb") as f:
        f.seek(size)
        data = f.read()
    assert len(data) == PAD_SIZE, "the image changed size: %d" % (
        size + len(data))
    return hashlib.sha256(data).hexdigest()


def inode_map(image, tree):
    """relpath -> inode number, from debugfs (before the damage)."""
    dirs = sorted(r for r, (k, _) in tree.items() if k == "dir")
    out = f4test.debugfs(image, *["ls -p /" + d for d in dirs])
    res = {"": 2}
    cur = None
    cmd_re = re.compile(r"^debugfs:\s+ls -p /(.*)$")
    for line in out.splitlines():
        m = cmd_re.match(line)
        if m:
            cur = m.group(1)
            continue
        f = line.strip().split("/")
        if len(f) >= 7 and f[0] == "" and f[1].isdigit() and cur is not None:
            name = f[5]
            if name in (".", ".."):
                continue
            res[os.path.join(cur, name) if cur else name] = int(f[1])
    missing = [r for r in tree if r not in res]
    assert not missing, "debugfs ls did not show %s:\n%s" % (missing[:5], out)
    return res


def sb_info(image):
    """dumpe2fs -h fields (also when dumpe2fs complains, e.g. about the
    journal)."""
    p = f4test.run(["dumpe2fs", "-h", image], check=False)
    out = {}
    for line in p.stdout.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            out[k.strip()] = v.strip()
    assert "Filesystem state" in out, p.stdout + p.stderr
    return out


def assert_error_recorded(image, inos=None):
    """The superblock says the file system has errors, as the kernel's
    ext4_error() leaves it: state "with errors", an error count, and the
    first error's inode.  (The error code: test_error_code_recorded.)"""
    h = sb_info(image)
    problems = []
    if "with errors" not in h["Filesystem state"]:
        problems.append("Filesystem state: %s" % h["Filesystem state"])
    if int(h.get("FS Error count", "0")) <= 0:
        problems.append("FS Error count: %s" % h.get("FS Error count"))
    if inos is not None and int(h.get("First error inode #", "0")) not in inos:
        problems.append("First error inode #: %s, expected one of %s" % (
            h.get("First error inode #"), sorted(inos)[:20]))
    assert not problems, "the superblock does not record the damage:\n  " + \
        "\n  ".join(problems)
    return h


def allowed_errors(drv):
    """What a damaged structure may produce: EUCLEAN (EFSCORRUPTED) or EIO;
    the kernel also says EBADMSG (EFSBADCRC) for a bad checksum."""
    a = {errno.EUCLEAN, errno.EIO}
    if drv == "kernel":
        # ext4 reports a bad checksum as EFSBADCRC (EBADMSG), and a lookup
        # that runs into a damaged entry of an unchecksummed directory
        # block as ENOENT: kernel quirks, not accepted from fuse4fs
        a |= {errno.EBADMSG, errno.ENOENT}
    return a


def user_xattrs(path):
    return {n: os.getxattr(path, n, follow_symlinks=False)
            for n in os.listxattr(path, follow_symlinks=False)
            if n.startswith("user.")}


def exercise(mnt, tree, only=None):
    """ls -lR, cat, readlink, getfattr -d over the expected tree.

    Returns (results, mismatches): results[(relpath, op)] = errno (0 for
    success); mismatches: descriptions of successful operations that gave
    the wrong answer.
    """
    res, bad = {}, []
    for rel in sorted(tree):
        if only is not None and rel not in only:
            continue
        kind, want = tree[rel]
        full = os.path.join(mnt, rel) if rel else mnt

        def op(name, fn, check=None):
            try:
                got = fn()
            except OSError as e:
                res[(rel, name)] = e.errno
                return
            res[(rel, name)] = 0
            if check is not None:
                msg = check(got)
                if msg:
                    bad.append("%s %s: %s" % (rel or "/", name, msg))

        ftype = {"reg": stat.S_IFREG, "dir": stat.S_IFDIR,
                 "lnk": stat.S_IFLNK}[kind]
        op("lstat", lambda: os.lstat(full),
           lambda st: None if stat.S_IFMT(st.st_mode) == ftype else
           "type %o" % stat.S_IFMT(st.st_mode))
        if kind == "dir":
            op("listdir", lambda: set(os.listdir(full)),
               lambda names: None if names >= want else
               "missing %s" % sorted(want - names)[:5])
        elif kind == "reg":
            op("read", lambda: read_file(full),
               lambda data: None if data == want else
               "%d bytes, content differs" % len(data))
        else:
            op("readlink", lambda: os.readlink(full),
               lambda t: None if t == want else "target %r" % t[:40])
        want_x = XATTRS.get(rel, {})
        op("getfattr", lambda: user_xattrs(full),
           lambda x: None if x == want_x else "xattrs %r" % sorted(x))
    return res, bad


def log_lines_about(fs, ino):
    """Lines of the daemon's log (this test's mounts) naming inode ino."""
    log = f4test.read_log(fs.log, limit=1 << 20)
    return [l for l in log.splitlines()
            if re.search(r"\binode #?%d\b" % ino, l)]


def repair(image):
    """Make a deliberately damaged image clean again for the teardown's
    e2fsck -fn (which then checks that e2fsck could repair it)."""
    for _ in range(3):
        f4test.run(["e2fsck", "-fy", image], check=False)
        if f4test.run(["e2fsck", "-fn", image], check=False).returncode == 0:
            return


# ---------------------------------------------------------------------------
# what to damage

def _stat_field(image, path, regex):
    out = f4test.debugfs(image, "stat " + path)
    m = re.search(regex, out)
    assert m, "no %s in debugfs stat %s:\n%s" % (regex, path, out)
    return int(m.group(1))


def _itable_block(image, path, inode_size):
    out = f4test.debugfs(image, "imap " + path)
    m = re.search(r"located at block (\d+), offset 0x([0-9a-f]+)", out)
    assert m, out
    return int(m.group(1)), int(m.group(2), 16)


class Damage:
    def __init__(self, cmds, damaged, target, log=None, detect=True):
        self.cmds = cmds            # debugfs -w requests
        self.damaged = set(damaged)  # paths that may fail
        self.target = target        # path whose operations must fail
        self.log = log or target    # path whose inode must be logged
        self.detect = detect        # False: not detectable, only no crash


def _children(tree, d):
    return [r for r in tree if r.startswith(d + "/")]


def damage_for(case, image, tree, inos, blocksize, inode_size):
    big = ["big"] + _children(tree, "big")
    if case == "mode-bogus-type":
        return Damage(["sif /d/f1 mode 0170644"], ["d/f1"], "d/f1")
    if case == "mode-zero":
        return Damage(["sif /d/f1 mode 0"], ["d/f1"], "d/f1")
    if case == "size-negative":
        return Damage(["sif /d/f2 size 0x8000000000000000"], ["d/f2"], "d/f2")
    if case == "fast-symlink-size":
        return Damage(["sif /fastlink size 200"], ["fastlink"], "fastlink")
    if case == "links-count-zero":
        return Damage(["sif /sub/deep/f3 links_count 0"], ["sub/deep/f3"],
                      "sub/deep/f3")
    if case == "block0-deadbeef":
        return Damage(["sif /d/f1 block[0] 0xdeadbeef"], ["d/f1"], "d/f1")
    if case == "extent-depth":
        # i_block[1]: eh_max 4, eh_depth 5 (ext4 allows at most 5 levels,
        # and a depth-5 tree in a 200 KB file points nowhere sensible)
        return Damage(["sif /d/f2 block[1] 0x00050004"], ["d/f2"], "d/f2")
    if case == "extent-start-outside":
        # i_block[5]: ee_start_lo of the first extent
        return Damage(["sif /d/f2 block[5] 0xdeadbeef"], ["d/f2"], "d/f2")
    if case == "indirect-outside":
        return Damage(["sif /d/f2 block[IND] 0xdeadbeef"], ["d/f2"], "d/f2")
    if case == "flags-inline-and-extents":
        return Damage(["sif /d/f2 flags 0x10080000"], ["d/f2"], "d/f2")
    if case == "flags-extents-cleared":
        return Damage(["sif /d/f2 flags 0"], ["d/f2"], "d/f2")
    if case == "file-acl-outside":
        return Damage(["sif /small file_acl 0xdeadbeef"], ["small"], "small")
    if case == "dir-block":
        return Damage(["zap_block -f /d 0"], ["d", "d/f1", "d/f2"], "d")
    if case == "dir-block-partial":
        # rec_len of the entry after "." and ".." (0xffff: past the block)
        return Damage(["zap_block -f /d -o 28 -l 2 -p 0xff 0"],
                      ["d", "d/f1", "d/f2"], "d")
    if case == "htree-root":
        return Damage(["zap_block -f /big 0"], big, "big")
    if case == "htree-leaf":
        return Damage(["zap_block -f /big 1"], big, "big")
    if case == "extent-tree-block":
        etb = _stat_field(image, "/frag", r"\(ETB0\):\s*(\d+)")
        return Damage(["zap_block %d" % etb], ["frag"], "frag")
    if case == "xattr-block":
        blk = _stat_field(image, "/d/f1", r"File ACL:\s*(\d+)")
        assert blk, "d/f1 has no xattr block"
        return Damage(["zap_block %d" % blk], ["d/f1"], "d/f1")
    if case == "symlink-block":
        # Any bytes are a valid symlink target: neither ext4 nor fuse4fs
        # can tell.  Only: no crash, no harm elsewhere.
        return Damage(["zap_block -f /slowlink 0"], ["slowlink"], "slowlink",
                      detect=False)
    if case in ("inode-table-block", "inode-table-partial"):
        blk, off = _itable_block(image, "/big/" + BIGNAME % 100, inode_size)
        per = blocksize // inode_size
        ino = inos["big/" + BIGNAME % 100]
        if case == "inode-table-partial":
            # 4 bytes of the extent header (i_block at 0x28) of one inode
            return Damage(["zap_block -o %d -l 4 -p 0x5a %d" % (off + 0x28,
                                                               blk)],
                          ["big/" + BIGNAME % 100],
                          "big/" + BIGNAME % 100)
        first = ino - off // inode_size
        hit = [r for r, i in inos.items() if first <= i < first + per]
        return Damage(["zap_block -p 0x5a %d" % blk], hit,
                      "big/" + BIGNAME % 100)
    raise ValueError(case)


EXT4_CASES = [
    "mode-bogus-type", "mode-zero", "size-negative", "fast-symlink-size",
    "links-count-zero", "block0-deadbeef", "extent-depth",
    "extent-start-outside", "flags-inline-and-extents",
    "flags-extents-cleared", "file-acl-outside", "dir-block", "htree-root",
    "htree-leaf", "extent-tree-block", "xattr-block", "symlink-block",
    "inode-table-block", "inode-table-partial",
]
EXT2_CASES = [
    "mode-bogus-type", "block0-deadbeef", "indirect-outside", "dir-block",
    "dir-block-partial", "htree-root", "xattr-block",
]


def _damaged_fs(fs_factory, workdir, variant, case):
    """(fs, damage, tree, inos, pad) for a populated image damaged by
    case; not mounted."""
    image = os.path.join(workdir, "dmg.img")
    populated_image(image, variant, workdir)
    tree = expected_tree()
    inos = inode_map(image, tree)
    bs = f4test.variant_blocksize(variant)
    isz = f4test.variant_inode_size(variant)
    dmg = damage_for(case, image, tree, inos, bs, isz)
    # what lies below a damaged directory may be out of reach too
    dmg.damaged |= {r for r in tree
                    if any(x and r.startswith(x + "/") for x in dmg.damaged)}
    out = f4test.debugfs(image, *dmg.cmds, write=True)
    assert "nvalid" not in out and "sage:" not in out, out
    pad = padding_sum(image)
    fs = fs_factory(variant, image=image, name="dmg", mount=False)
    return fs, dmg, tree, inos, pad


def _check_damage_run(fs, dmg, tree, inos):
    """Walk everything twice and write a little; check the rules."""
    allowed = allowed_errors(fs.driver)
    problems = []

    res, bad = exercise(fs.mnt, tree)
    # writes: a new file, and one into (or next to) the damage
    new = pattern(100000, seed=9)
    res[("new1", "create")] = f4test.errno_of(write_file, fs.path("new1"), new)
    kind = tree[dmg.target][0]
    tpath = fs.path(dmg.target)
    if kind == "reg":
        def append():
            with open(tpath, "ab") as f:
                f.write(b"more")
        res[(dmg.target, "append")] = f4test.errno_of(append)
    elif kind == "dir":
        res[(dmg.target, "create")] = f4test.errno_of(
            write_file, os.path.join(tpath, "newfile"), b"x")

    wrong = {k: f4test.errname(e) for k, e in res.items()
             if e and e not in allowed}
    if wrong:
        problems.append("errors other than %s: %s" % (
            "/".join(f4test.errname(e) for e in sorted(allowed)), wrong))
    hurt = {k: f4test.errname(e) for k, e in res.items()
            if e and k[0] not in dmg.damaged}
    if hurt:
        problems.append("healthy files failed: %s" % hurt)
    bad = [b for b in bad if b.split(" ")[0] not in dmg.damaged]
    if bad:
        problems.append("healthy files read wrong: %s" % bad)
    hit = {k: f4test.errname(e) for k, e in res.items()
           if k[0] == dmg.target and e}
    if dmg.detect and not hit:
        problems.append("nothing that touched %s failed: %s" % (
            dmg.target, {k: f4test.errname(e) for k, e in res.items()
                         if k[0] == dmg.target}))
    if fs.proc is not None and fs.proc.poll() is not None:
        problems.append("the daemon died (status %s)" % fs.proc.returncode)
        return problems, res

    # the damage is logged with the inode number, once
    log_ino = inos[dmg.log]
    before = None
    if fs.driver != "kernel" and dmg.detect:
        before = log_lines_about(fs, log_ino)
        if not before:
            problems.append("nothing logged about inode %d:\n%s" % (
                log_ino, f4test.read_log(fs.log)))

    # keeps serving: everything healthy again, the damage again
    res2, bad2 = exercise(fs.mnt, tree)
    if fs.proc is not None and fs.proc.poll() is not None:
        problems.append("the daemon died (status %s)" % fs.proc.returncode)
        return problems, res
    hurt2 = {k: f4test.errname(e) for k, e in res2.items()
             if e and k[0] not in dmg.damaged}
    if hurt2:
        problems.append("after the damage, healthy files failed: %s" % hurt2)
    for k, e in res2.items():
        if e and e not in allowed:
            problems.append("second walk: %s gave %s" % (k, f4test.errname(e)))
    res[("new2", "create")] = f4test.errno_of(write_file, fs.path("new2"), new)
    if res[("new2", "create")] or read_file(fs.path("new2")) != new:
        problems.append("writing a new file after the damage failed: %s" %
                        f4test.errname(res[("new2", "create")]))
    if before is not None and before:
        again = log_lines_about(fs, log_ino)
        if len(again) != len(before):
            problems.append("inode %d logged again on every access (%d "
                            "lines, then %d):\n  %s" % (
                                log_ino, len(before), len(again),
                                "\n  ".join(again[:10])))
    return problems, res


@pytest.mark.image_size("32M")
@pytest.mark.variants("ext4")
@pytest.mark.parametrize("case", EXT4_CASES)
def test_damaged_ext4(fs_factory, workdir, variant, case):
    _damage_test(fs_factory, workdir, variant, case)


@pytest.mark.image_size("32M")
@pytest.mark.variants("ext2")
@pytest.mark.parametrize("case", EXT2_CASES)
def test_damaged_ext2(fs_factory, workdir, variant, case):
    _damage_test(fs_factory, workdir, variant, case)


def _damage_test(fs_factory, workdir, variant, case):
    fs, dmg, tree, inos, pad = _damaged_fs(fs_factory, workdir, variant, case)
    try:
        fs.mount()
        problems, res = _check_damage_run(fs, dmg, tree, inos)
        new_ok = res.get(("new1", "create")) == 0
        try:
            fs.unmount()
        except f4test.MountError as e:
            problems.append(str(e))
        if padding_sum(fs.image) != pad:
            problems.append("bytes past the end of the file system changed")
        if dmg.detect:
            # the kernel names the directory of a bad inode it looked up
            near = dmg.damaged | {dmg.log} | {os.path.dirname(r)
                                              for r in dmg.damaged}
            try:
                assert_error_recorded(fs.image, {inos[r] for r in near})
            except AssertionError as e:
                problems.append(str(e))
        # healthy files (and what was written) survive a remount
        fs.mount()
        healthy = {r for r in tree if r not in dmg.damaged and
                   not any(r.startswith(x + "/") for x in dmg.damaged)}
        res3, bad3 = exercise(fs.mnt, tree, only=healthy)
        failed = {k: f4test.errname(e) for k, e in res3.items() if e}
        if failed or bad3:
            problems.append("after a remount, healthy files: %s %s" % (
                failed, bad3))
        if new_ok and read_file(fs.path("new1")) != pattern(100000, seed=9):
            problems.append("new1 lost after remount")
        fs.unmount()
        assert not problems, "%s (%s):\n- %s" % (case, "; ".join(dmg.cmds),
                                                  "\n- ".join(problems))
    finally:
        if fs.mounted:
            fs.force_cleanup()
        repair(fs.image)


@pytest.mark.image_size("32M")
@pytest.mark.variants("ext4")
@pytest.mark.parametrize("case", ["dir-block", "block0-deadbeef"])
def test_error_code_recorded(fs_factory, workdir, variant, case):
    """s_first_error_errcode / s_last_error_errcode hold the kernel's
    EXT4_ERR_* codes (EXT4_ERR_EIO 2, EXT4_ERR_EFSBADCRC 4,
    EXT4_ERR_EFSCORRUPTED 5), which dumpe2fs decodes by name; an errno
    there shows up as UNKNOWN_ERRCODE_<n>."""
    fs, dmg, tree, inos, pad = _damaged_fs(fs_factory, workdir, variant, case)
    try:
        fs.mount()
        exercise(fs.mnt, tree, only={dmg.target})
        fs.unmount()
        h = assert_error_recorded(fs.image)
        codes = ("EFSCORRUPTED", "EFSBADCRC", "EIO")
        assert h.get("First error err") in codes and \
            h.get("Last error err") in codes, (
                "First error err: %s, Last error err: %s" % (
                    h.get("First error err"), h.get("Last error err")))
    finally:
        if fs.mounted:
            fs.force_cleanup()
        repair(fs.image)


# ---------------------------------------------------------------------------
# errors=

def _hit_dir_damage(fs):
    """The damage of "dir-block": listing /d fails as it should."""
    e = f4test.errno_of(os.listdir, fs.path("d"))
    assert e in allowed_errors(fs.driver), "listing the damaged dir: %s" % (
        f4test.errname(e))


@pytest.mark.image_size("32M")
@pytest.mark.variants("ext4")
@pytest.mark.parametrize("how", ["option", "superblock"])
def test_errors_remount_ro(fs_factory, workdir, variant, how):
    """errors=remount-ro (or tune2fs -e remount-ro): after the first
    damage every change fails with EROFS; reads still work; what was
    written before is kept."""
    fs, dmg, tree, inos, pad = _damaged_fs(fs_factory, workdir, variant,
                                           "dir-block")
    if how == "superblock":
        f4test.run(["tune2fs", "-e", "remount-ro", fs.image])
        opts = []
    else:
        opts = ["errors=remount-ro"]
    try:
        fs.mount(opts)
        before = pattern(50000, seed=11)
        write_file(fs.path("before"), before)
        f4test.sync_fs(fs.mnt)      # ext4 drops what its journal still holds
        _hit_dir_damage(fs)
        E = errno.EROFS
        assert f4test.errno_of(write_file, fs.path("after"), b"x") == E
        assert f4test.errno_of(os.mkdir, fs.path("newdir")) == E
        assert f4test.errno_of(os.unlink, fs.path("small")) == E
        assert f4test.errno_of(os.rename, fs.path("small"),
                               fs.path("small2")) == E
        assert f4test.errno_of(os.setxattr, fs.path("sub/g"), "user.n",
                               b"v") == E

        def append():
            with open(fs.path("sub/g"), "ab") as f:
                f.write(b"more")
        assert f4test.errno_of(append) == E
        assert f4test.errno_of(os.truncate, fs.path("sub/g"), 0) == E
        # reading goes on
        res, bad = exercise(fs.mnt, tree, only={r for r in tree
                                               if r not in dmg.damaged})
        assert not bad and not any(res.values()), (bad, res)
        assert read_file(fs.path("before")) == before
        if fs.proc is not None:
            assert fs.proc.poll() is None, "the daemon stopped"
        fs.unmount()
        assert padding_sum(fs.image) == pad
        assert_error_recorded(fs.image)
        fs.mount(["errors=continue"])
        assert read_file(fs.path("before")) == before
        assert read_file(fs.path("sub/g")) == tree["sub/g"][1]
        assert os.path.exists(fs.path("small"))
        fs.unmount()
    finally:
        if fs.mounted:
            fs.force_cleanup()
        repair(fs.image)


@pytest.mark.image_size("32M")
@pytest.mark.variants("ext4")
@pytest.mark.parametrize("how", ["default", "option-over-superblock"])
def test_errors_continue(fs_factory, workdir, variant, how):
    """errors=continue (mke2fs's default s_errors, or the option over a
    superblock that says remount-ro): after the damage, writes go on."""
    fs, dmg, tree, inos, pad = _damaged_fs(fs_factory, workdir, variant,
                                           "dir-block")
    opts = []
    if how != "default":
        f4test.run(["tune2fs", "-e", "remount-ro", fs.image])
        opts = ["errors=continue"]
    else:
        assert sb_info(fs.image)["Errors behavior"] == "Continue"
    try:
        fs.mount(opts)
        _hit_dir_damage(fs)
        data = pattern(300000, seed=12)
        write_file(fs.path("after"), data)
        os.mkdir(fs.path("newdir"))
        os.rename(fs.path("small"), fs.path("newdir/small"))
        os.setxattr(fs.path("sub/g"), "user.n", b"v")
        f4test.sync_fs(fs.mnt)
        fs.unmount()
        assert padding_sum(fs.image) == pad
        assert_error_recorded(fs.image)
        fs.mount()
        assert read_file(fs.path("after")) == data
        assert read_file(fs.path("newdir/small")) == tree["small"][1]
        assert os.getxattr(fs.path("sub/g"), "user.n") == b"v"
        fs.unmount()
    finally:
        if fs.mounted:
            fs.force_cleanup()
        repair(fs.image)


_HOLDER = r"""
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
os.chdir(sys.argv[2])
print("ready", flush=True)
sys.stdin.readline()
try:
    os.pread(fd, 100, 0)
    print("read ok", flush=True)
except OSError as e:
    print("read errno %d" % e.errno, flush=True)
try:
    os.listdir(".")
    print("cwd ok", flush=True)
except OSError as e:
    print("cwd errno %d" % e.errno, flush=True)
"""


@pytest.mark.fuse_only
@pytest.mark.image_size("32M")
@pytest.mark.variants("ext4")
@pytest.mark.parametrize("how", ["option", "superblock"])
def test_errors_panic(fs_factory, workdir, variant, how):
    """errors=panic (or tune2fs -e panic): the daemon stops at the first
    damage, the mount goes away, nothing hangs (processes using the mount
    get errors), the daemon's status is non-zero, the error is on disk,
    and the next mount works."""
    fs, dmg, tree, inos, pad = _damaged_fs(fs_factory, workdir, variant,
                                           "dir-block")
    if how == "superblock":
        f4test.run(["tune2fs", "-e", "panic", fs.image])
        opts = []
    else:
        opts = ["errors=panic"]
    holder = None
    try:
        fs.mount(opts)
        write_file(fs.path("before"), b"before the panic")
        f4test.sync_fs(fs.mnt)
        holder = subprocess.Popen(
            [sys.executable, "-c", _HOLDER, fs.path("sub/g"), fs.path("sub")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert holder.stdout.readline().strip() == "ready"
        proc = fs.proc
        _hit_dir_damage(fs)
        try:
            rc = proc.wait(10)
        except subprocess.TimeoutExpired:
            rc = None
        assert rc is not None, "errors=panic: the daemon still runs 10 s " \
            "after the damage"
        deadline = time.monotonic() + 5
        while f4test.is_mounted(fs.mnt) and time.monotonic() < deadline:
            time.sleep(0.05)
        still = f4test.is_mounted(fs.mnt)
        t0 = time.monotonic()
        try:
            ls = subprocess.run(["ls", "-la", fs.mnt], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, timeout=5)
        except subprocess.TimeoutExpired:
            ls = None
        try:
            out, _ = holder.communicate("go\n", timeout=5)
        except subprocess.TimeoutExpired:
            holder.kill()
            out = "hung"
        holder = None
        fs.proc = None
        fs.mounted = f4test.is_mounted(fs.mnt)
        assert not still, "the mount is still there 5 s after the panic"
        assert ls is not None, "ls of the mount point hung after the panic"
        assert time.monotonic() - t0 < 5
        assert "hung" not in out and "read ok" not in out, (
            "a process with a file open on the mount: %r" % out)
        assert rc != 0, "the daemon exited 0 after errors=panic"
        log = f4test.read_log(fs.log)
        assert "panic" in log, log
        assert log_lines_about(fs, inos["d"]), log
        assert padding_sum(fs.image) == pad
        assert_error_recorded(fs.image, {inos["d"]})
        # the next mount works (errors=continue: the damage is still there)
        fs.mount(["errors=continue"])
        assert read_file(fs.path("before")) == b"before the panic"
        assert read_file(fs.path("sub/g")) == tree["sub/g"][1]
        fs.unmount()
    finally:
        if holder is not None:
            holder.kill()
            holder.wait()
        if fs.mounted or fs.proc is not None:
            fs.force_cleanup()
        repair(fs.image)


# ---------------------------------------------------------------------------
# bitmaps and the journal

def _group0_block(image, what):
    out = f4test.run(["dumpe2fs", image]).stdout
    m = re.search(r"%s at (\d+)" % what, out)
    assert m, out
    return int(m.group(1))


@pytest.mark.fuse_only
@pytest.mark.image_size("32M")
@pytest.mark.variants("ext4")
@pytest.mark.parametrize("what", ["Block bitmap", "Inode bitmap"])
def test_damaged_bitmap(fs_factory, workdir, variant, what):
    """A bitmap with a bad checksum: fuse4fs(1) mounts read-only with a
    warning; everything reads; changes fail with EROFS; and ("in every
    mode the error is recorded in the superblock") e2fsck is told."""
    image = os.path.join(workdir, "dmg.img")
    populated_image(image, variant, workdir)
    tree = expected_tree()
    blk = _group0_block(image, what)
    f4test.debugfs(image, "zap_block -p 0x5a %d" % blk, write=True)
    pad = padding_sum(image)
    fs = fs_factory(variant, image=image, name="dmg", mount=False)
    try:
        fs.mount()
        log = f4test.read_log(fs.log).split("====")[-1]
        assert re.search(r"bitmap.*read-only", log), log
        assert "ro" in f4test.mount_entry(fs.mnt)[3].split(","), \
            f4test.mount_entry(fs.mnt)
        res, bad = exercise(fs.mnt, tree)
        assert not bad and not any(res.values()), (bad, {
            k: f4test.errname(e) for k, e in res.items() if e})
        assert f4test.errno_of(write_file, fs.path("new"), b"x") == \
            errno.EROFS
        assert fs.proc.poll() is None
        fs.unmount()
        assert padding_sum(fs.image) == pad
        assert_error_recorded(fs.image)
    finally:
        if fs.mounted:
            fs.force_cleanup()
        repair(fs.image)


@pytest.mark.image_size("32M")
@pytest.mark.variants("ext4")
def test_damaged_journal_superblock(fs_factory, workdir, variant, driver):
    """A zeroed journal superblock.  The kernel refuses to mount ("Could
    not load journal inode").  fuse4fs may refuse too (exit status 2, one
    line naming the journal), or mount; if it mounts, the damage must be
    recorded in the superblock like any other."""
    image = os.path.join(workdir, "dmg.img")
    populated_image(image, variant, workdir)
    tree = expected_tree()
    jblk = int(f4test.debugfs(image, "bmap <8> 0").strip())
    f4test.debugfs(image, "zap_block %d" % jblk, write=True)
    pad = padding_sum(image)
    before = sha256_file(image)
    fs = fs_factory(variant, image=image, name="dmg", mount=False)
    try:
        try:
            fs.mount()
        except f4test.MountError as e:
            refused = str(e)
        else:
            refused = None
        if refused is not None:
            assert sha256_file(image) == before, "a refused mount wrote"
            if driver != "kernel":
                lines = [l for l in f4test.read_log(fs.log).splitlines()
                         if l.strip() and not l.startswith("====")]
                assert len(lines) == 1 and "journal" in lines[0], lines
                assert "exited with status 2 " in refused, refused
            return
        res, bad = exercise(fs.mnt, tree)
        assert not bad and not any(res.values()), (bad, res)
        write_file(fs.path("new"), b"data")
        fs.unmount()
        assert padding_sum(fs.image) == pad
        h = sb_info(fs.image)
        assert "with errors" in h["Filesystem state"], (
            "mounted with a zeroed journal superblock, said nothing and left "
            "the file system marked %r (the kernel refuses to mount it: "
            "\"Could not load journal inode\").  Log:\n%s" % (
                h["Filesystem state"], f4test.read_log(fs.log)))
    finally:
        if fs.mounted:
            fs.force_cleanup()
        repair(fs.image)


# ---------------------------------------------------------------------------
# superblocks that can't be right: the mount refuses

SB_CASES = [
    ("s_inodes_count", "0"),
    ("s_inodes_count", "0xffffffff"),
    ("s_first_data_block", "1"),        # must be 0 with 4 KiB blocks
    ("s_first_data_block", "9000"),     # past the end
    ("s_log_block_size", "20"),
    ("s_log_block_size", "1"),          # 2 KiB: nothing fits any more
    ("s_blocks_per_group", "0"),
    ("s_blocks_per_group", "100"),
    ("s_inodes_per_group", "0"),
    ("s_desc_size", "3"),
]


@pytest.mark.parametrize("field,value", SB_CASES,
                         ids=["%s=%s" % c for c in SB_CASES])
def test_damaged_superblock_refused(workdir, driver, field, value):
    image = f4test.make_image(os.path.join(workdir, "sb.img"), "ext4",
                              size=16 << 20)
    f4test.debugfs(image, "ssv %s %s" % (field, value), write=True)
    before = sha256_file(image)
    mnt = os.path.join(workdir, "mnt")
    os.mkdir(mnt)
    log = os.path.join(workdir, "daemon.log")
    if driver == "kernel":
        p = f4test.run(["mount", "-t", "ext4", "-o", "loop", image, mnt],
                       check=False)
        if f4test.is_mounted(mnt):
            f4test.umount(mnt)
            pytest.fail("the kernel mounted it")
        assert p.returncode != 0
        return          # (ext4 records the error in the superblock, though)
    proc = f4test.spawn_daemon(driver, image, mnt, [], log)
    deadline = time.monotonic() + 15
    while proc.poll() is None and not f4test.is_mounted(mnt) and \
            time.monotonic() < deadline:
        time.sleep(0.02)
    rc = proc.poll()
    mounted = f4test.is_mounted(mnt)
    if mounted:
        # before cleaning up: does it even hold together?
        probe = subprocess.run(["ls", "-lR", mnt], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, timeout=20)
        f4test.umount(mnt)
    if proc.poll() is None:
        try:
            rc = proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if f4test.is_mounted(mnt):
        f4test.umount(mnt, lazy=True)
    out = f4test.read_log(log)
    fsck = f4test.run(["e2fsck", "-fn", image], check=False)
    assert not mounted, (
        "%s=%s: mounted a file system whose superblock e2fsck rejects "
        "(e2fsck -fn: %d: %s); ls -lR: %s; daemon log:\n%s" % (
            field, value, fsck.returncode,
            " / ".join(fsck.stdout.splitlines()[1:4]),
            probe.stdout[-300:], out))
    assert rc == 2, "exit status %r, documented 2; output:\n%s" % (rc, out)
    lines = [l for l in out.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("fuse4fs: "), out
    assert sha256_file(image) == before, "a refused mount changed the image"
