# SPDX-License-Identifier: GPL-2.0
"""Helpers for the journal replay tests: images, kernel crashes, tree
snapshots, fsck, and a writer for hand-made jbd2 journals.

The jbd2 layout used by JournalWriter follows the kernel's
Documentation/filesystems/ext4/journal.rst; every journal it writes is
also replayed by e2fsck in the tests, as an independent check of the
format.
"""

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import stat
import struct
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
F4REPLAY = REPO / "tests" / "tools" / "f4replay"
SOURCES = [REPO / "tests" / "tools" / "f4replay.c",
           REPO / "fuse4fs" / "journal.c",
           REPO / "fuse4fs" / "journal.h"]
CFLAGS = ["-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-sign-compare",
          "-D_GNU_SOURCE", "-I" + str(REPO), "-I" + str(REPO / "lib"),
          "-I/usr/include/ext2fs"]
LIBS = ["-lext2fs", "-lcom_err"]

JBD2_MAGIC = 0xC03B3998
DESCRIPTOR, COMMIT, SB_V1, SB_V2, REVOKE = 1, 2, 3, 4, 5
COMPAT_CHECKSUM = 0x1
INCOMPAT_REVOKE = 0x1
INCOMPAT_64BIT = 0x2
INCOMPAT_ASYNC = 0x4
INCOMPAT_CSUM_V2 = 0x8
INCOMPAT_CSUM_V3 = 0x10
FLAG_ESCAPE, FLAG_SAME_UUID, FLAG_LAST_TAG = 1, 2, 8

# EXT4_IOC_SHUTDOWN = _IOR('X', 125, __u32)
EXT4_IOC_SHUTDOWN = (2 << 30) | (4 << 16) | (ord("X") << 8) | 125
GOING_FLAGS_LOGFLUSH = 1
GOING_FLAGS_NOLOGFLUSH = 2


def run(cmd, check=True, **kw):
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    kw.setdefault("text", True)
    res = subprocess.run([str(c) for c in cmd], **kw)
    if check and res.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s\n%s" % (
            " ".join(map(str, cmd)), res.returncode, res.stdout, res.stderr))
    return res


# ---- building f4replay -------------------------------------------------

def build_f4replay(out, sanitize=False):
    cmd = ["gcc"] + CFLAGS
    if sanitize:
        cmd += ["-O1", "-g", "-fsanitize=address,undefined",
                "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]
    cmd += ["-o", out, SOURCES[0], SOURCES[1]] + LIBS
    run(cmd)
    return Path(out)


def ensure_f4replay():
    """The binary that `make tools` builds; built by hand when missing or
    older than its sources (configure may not work yet)."""
    if F4REPLAY.exists():
        built = F4REPLAY.stat().st_mtime
        if all(s.stat().st_mtime <= built for s in SOURCES):
            return F4REPLAY
    return build_f4replay(F4REPLAY)


# ---- images ------------------------------------------------------------

def mkfs(img, size_mb, *args):
    img = Path(img)
    if img.exists():
        img.unlink()
    with open(img, "wb") as f:
        f.truncate(size_mb << 20)
    run(["mke2fs", "-q", "-F", *args, img])
    return img


def dumpe2fs_h(img):
    # dumpe2fs exits non-zero when the journal superblock is damaged, after
    # printing the file system superblock
    out = run(["dumpe2fs", "-h", img], check=False).stdout
    info = {}
    for line in out.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            info[k.strip()] = v.strip()
    return info


def features(img):
    return dumpe2fs_h(img).get("Filesystem features", "").split()


def needs_recovery(img):
    return "needs_recovery" in features(img)


def blocksize(img):
    return int(dumpe2fs_h(img)["Block size"])


def fsck_check(img):
    """e2fsck -fn: clean means exit 0 and no question asked (e2fsck -n
    exits 0 even after answering "no" to wrong summary counts)."""
    res = run(["e2fsck", "-fn", img], check=False)
    out = res.stdout + res.stderr
    problems = [l for l in out.splitlines()
                if re.search(r"\?\s*no\s*$", l) or "WARNING" in l
                or "wrong" in l.lower()]
    return res.returncode == 0 and not problems, out


def assert_fsck_clean(img):
    ok, out = fsck_check(img)
    assert ok, "e2fsck -fn %s is not clean:\n%s" % (img, out)


def read_block(img, blk, bs):
    with open(img, "rb") as f:
        f.seek(blk * bs)
        return f.read(bs)


def write_block(img, blk, bs, data):
    assert len(data) == bs
    with open(img, "r+b") as f:
        f.seek(blk * bs)
        f.write(data)


def free_blocks(img, n, goal):
    out = run(["debugfs", "-R", "ffb %d %d" % (n, goal), img]).stdout
    m = re.search(r"Free blocks found:\s*([\d ]+)", out)
    blocks = [int(x) for x in m.group(1).split()]
    assert len(blocks) == n
    return blocks


def journal_map(img):
    """Physical blocks of the journal inode, in logical order (from the
    block map that `debugfs stat` prints; mapping blocks such as (IND) or
    (ETB0) are left out)."""
    out = run(["debugfs", "-R", "stat <8>", img]).stdout
    jmap = {}
    for m in re.finditer(r"\((\d+)(?:-(\d+))?\):(\d+)(?:-(\d+))?", out):
        lo = int(m.group(1))
        hi = int(m.group(2) or lo)
        p = int(m.group(3))
        for i in range(hi - lo + 1):
            jmap[lo + i] = p + i
    assert sorted(jmap) == list(range(len(jmap))), "journal has holes"
    return [jmap[i] for i in range(len(jmap))]


def set_needs_recovery(img, on=True):
    """Set EXT3_FEATURE_INCOMPAT_RECOVER in the primary superblock (by
    hand: debugfs -w would wait for MMP on mmp file systems)."""
    with open(img, "r+b") as f:
        f.seek(1024)
        sb = bytearray(f.read(1024))
        incompat, ro_compat = struct.unpack_from("<II", sb, 0x60)
        incompat = incompat | 0x4 if on else incompat & ~0x4
        struct.pack_into("<I", sb, 0x60, incompat)
        if ro_compat & 0x400:           # metadata_csum
            struct.pack_into("<I", sb, 0x3FC,
                             crc32c(0xFFFFFFFF, bytes(sb[:0x3FC])))
        f.seek(1024)
        f.write(sb)


def file_sha(img):
    h = hashlib.sha256()
    with open(img, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---- f4replay -------------------------------------------------------------

def f4replay(img, binary=None, env=None):
    res = run([binary or F4REPLAY, img], check=False, env=env)
    report = {}
    for line in res.stdout.splitlines():
        m = re.match(r"^(\w+): (-?\d+)$", line)
        if m:
            report[m.group(1)] = int(m.group(2))
    return res, report


# ---- kernel mounts ---------------------------------------------------------

@contextlib.contextmanager
def mounted(img, opts="", mnt=None, fstype=None):
    own = mnt is None
    if own:
        mnt = tempfile.mkdtemp(prefix="f4jmnt.")
    o = "loop" + ("," + opts if opts else "")
    run(["mount"] + (["-t", fstype] if fstype else []) + ["-o", o, img, mnt])
    try:
        yield Path(mnt)
    finally:
        for _ in range(50):
            if run(["umount", mnt], check=False).returncode == 0:
                break
            time.sleep(0.1)
        else:
            run(["umount", mnt])
        if own:
            os.rmdir(mnt)


def shutdown(mnt, flags=GOING_FLAGS_LOGFLUSH):
    fd = os.open(mnt, os.O_RDONLY)
    try:
        fcntl.ioctl(fd, EXT4_IOC_SHUTDOWN, struct.pack("I", flags))
    finally:
        os.close(fd)


def snapshot_tree(root):
    """name -> (type, mode, size, nlink, uid, gid, mtime_ns, content)"""
    root = Path(root)
    snap = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                content = os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                content = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                content = None
            snap[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode),
                         st.st_size if not stat.S_ISDIR(st.st_mode) else 0,
                         st.st_nlink, st.st_uid, st.st_gid, st.st_mtime_ns,
                         content)
    return snap


def tree_of(img):
    with mounted(img, "ro,noload") as mnt:
        return snapshot_tree(mnt)


def diff_trees(a, b):
    lines = []
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            lines.append("%s: %r != %r" % (k, a.get(k), b.get(k)))
    return lines


# ---- checksums ---------------------------------------------------------------

def _table(poly, reflected):
    t = []
    for i in range(256):
        if reflected:
            c = i
            for _ in range(8):
                c = (c >> 1) ^ poly if c & 1 else c >> 1
        else:
            c = i << 24
            for _ in range(8):
                c = ((c << 1) ^ poly) if c & 0x80000000 else c << 1
            c &= 0xFFFFFFFF
        t.append(c)
    return t


_CRC32C = _table(0x82F63B78, True)
_CRC32BE = _table(0x04C11DB7, False)


def crc32c(crc, data):
    """Raw CRC32c (no pre/post inversion), as ext2fs_crc32c_le."""
    t = _CRC32C
    for b in data:
        crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc


def crc32_be(crc, data):
    """Raw big-endian CRC32, as ext2fs_crc32_be (jbd2 checksum v1)."""
    t = _CRC32BE
    for b in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ t[((crc >> 24) ^ b) & 0xFF]
    return crc


# ---- a hand-made jbd2 journal ------------------------------------------------

class JournalWriter:
    """Writes transactions straight into the journal of an image.

    Features of the journal superblock are set as asked (csum None, 1, 2
    or 3; is64; async); transactions are laid out from `start` and wrap at
    the end of the log like the kernel's.  Every field can be broken on
    purpose through the keyword arguments.
    """

    def __init__(self, img, csum=3, is64=True, async_commit=False,
                 extra_incompat=0):
        self.img = Path(img)
        self.bs = blocksize(img)
        self.map = journal_map(img)
        sb = bytearray(read_block(img, self.map[0], self.bs)[:1024])
        magic, btype = struct.unpack_from(">II", sb, 0)
        assert magic == JBD2_MAGIC and btype == SB_V2
        self.maxlen, self.first = struct.unpack_from(">II", sb, 0x10)
        self.uuid = bytes(sb[0x30:0x40])
        self.csum = csum
        self.is64 = is64
        compat = COMPAT_CHECKSUM if csum == 1 else 0
        incompat = INCOMPAT_REVOKE | extra_incompat
        if is64:
            incompat |= INCOMPAT_64BIT
        if async_commit:
            incompat |= INCOMPAT_ASYNC
        if csum == 2:
            incompat |= INCOMPAT_CSUM_V2
        if csum == 3:
            incompat |= INCOMPAT_CSUM_V3
        struct.pack_into(">III", sb, 0x24, compat, incompat, 0)
        sb[0x50] = 4 if csum in (2, 3) else 0
        self.sb = sb
        self.seed = crc32c(0xFFFFFFFF, self.uuid)
        self.txns = []

    # layout helpers
    @property
    def v23(self):
        return self.csum in (2, 3)

    def tag_bytes(self):
        if self.csum == 3:
            return 16
        return 8 + (4 if self.is64 else 0) + (2 if self.csum == 2 else 0)

    def transaction(self, blocks=(), revokes=(), commit=True, **opts):
        """blocks: [(target, data)], revokes: [block]; opts:
        commit_time, bad_commit_csum, bad_descr_csum, bad_data_csum
        (index), no_last_tag, same_uuid (default True), tag_count
        (override), revoke_count (override r_count), commit_csum_zero."""
        self.txns.append((list(blocks), list(revokes), commit, opts))

    def _descr(self, tid, tags, opts):
        bs, tb = self.bs, self.tag_bytes()
        b = bytearray(bs)
        struct.pack_into(">III", b, 0, JBD2_MAGIC, DESCRIPTOR, tid)
        off = 12
        end = bs - (4 if self.v23 else 0)
        for i, (target, flags, csum) in enumerate(tags):
            last = i == len(tags) - 1
            same = opts.get("same_uuid", True) and i > 0
            if same:
                flags |= FLAG_SAME_UUID
            if last and not opts.get("no_last_tag"):
                flags |= FLAG_LAST_TAG
            if self.csum == 3:
                struct.pack_into(">IIII", b, off, target & 0xFFFFFFFF, flags,
                                 target >> 32 if self.is64 else 0, csum)
            else:
                struct.pack_into(">IHH", b, off, target & 0xFFFFFFFF,
                                 csum & 0xFFFF, flags)
                if self.is64:
                    struct.pack_into(">I", b, off + 8, target >> 32)
            off += tb
            if not same:
                b[off:off + 16] = self.uuid
                off += 16
            assert off <= end, "too many tags for one descriptor"
        if self.v23:
            c = crc32c(self.seed, bytes(b))
            if opts.get("bad_descr_csum"):
                c ^= 1
            struct.pack_into(">I", b, bs - 4, c)
        return bytes(b)

    def max_tags(self):
        per = self.tag_bytes()
        end = self.bs - (4 if self.v23 else 0) - 12 - 16
        return end // per

    def build(self, start, sequence, commit_time=1700000000):
        """Lay the transactions out; returns [(journal block, data)]."""
        bs = self.bs
        last = self.maxlen
        out = []
        pos = start
        tid = sequence

        def put(data):
            nonlocal pos
            out.append((pos, data))
            pos += 1
            if pos >= last:
                pos = self.first

        for blocks, revokes, commit, opts in self.txns:
            crc = 0xFFFFFFFF
            tags, datas = [], []
            for i, (target, data) in enumerate(blocks):
                assert len(data) == bs
                flags = 0
                if data[:4] == struct.pack(">I", JBD2_MAGIC):
                    flags |= FLAG_ESCAPE
                    data = b"\0\0\0\0" + data[4:]
                c = 0
                if self.v23:
                    c = crc32c(crc32c(self.seed, struct.pack(">I", tid)), data)
                    if opts.get("bad_data_csum") == i:
                        c ^= 1
                tags.append((target, flags, c))
                datas.append(data)
            per = self.max_tags()
            for i in range(0, len(tags), per):
                d = self._descr(tid, tags[i:i + per], opts)
                if self.csum == 1:
                    crc = crc32_be(crc, d)
                put(d)
                for data in datas[i:i + per]:
                    if self.csum == 1:
                        crc = crc32_be(crc, data)
                    put(data)
            if revokes:
                b = bytearray(bs)
                rl = 8 if self.is64 else 4
                struct.pack_into(">III", b, 0, JBD2_MAGIC, REVOKE, tid)
                off = 16
                for r in revokes:
                    struct.pack_into(">Q" if self.is64 else ">I", b, off, r)
                    off += rl
                struct.pack_into(">I", b, 12, opts.get("revoke_count", off))
                if self.v23:
                    struct.pack_into(">I", b, bs - 4,
                                     crc32c(self.seed, bytes(b)))
                put(bytes(b))
            if commit:
                b = bytearray(bs)
                struct.pack_into(">III", b, 0, JBD2_MAGIC, COMMIT, tid)
                ct = opts.get("commit_time", commit_time)
                struct.pack_into(">QI", b, 0x30, ct, 0)
                if self.csum == 1:
                    b[0x0C], b[0x0D] = 1, 4
                    struct.pack_into(">I", b, 0x10, crc)
                elif self.v23:
                    struct.pack_into(">I", b, 0x10,
                                     crc32c(self.seed, bytes(b)))
                if opts.get("bad_commit_csum"):
                    b[0x10] ^= 0xFF
                put(bytes(b))
            commit_time += 1
            tid = (tid + 1) & 0xFFFFFFFF
        return out

    def write(self, start=None, sequence=1, end_marker=True, **kw):
        start = self.first if start is None else start
        blocks = self.build(start, sequence, **kw)
        sb = self.sb
        struct.pack_into(">II", sb, 0x18, sequence, start)
        if self.v23:
            struct.pack_into(">I", sb, 0xFC, 0)
            struct.pack_into(">I", sb, 0xFC, crc32c(0xFFFFFFFF, bytes(sb)))
        else:
            struct.pack_into(">I", sb, 0xFC, 0)
        with open(self.img, "r+b") as f:
            f.seek(self.map[0] * self.bs)
            f.write(bytes(sb))
            for pos, data in blocks:
                f.seek(self.map[pos] * self.bs)
                f.write(data)
            if end_marker and blocks:
                # a zeroed block ends the log
                pos = blocks[-1][0] + 1
                if pos >= self.maxlen:
                    pos = self.first
                f.seek(self.map[pos] * self.bs)
                f.write(bytes(self.bs))
        set_needs_recovery(self.img)
        return blocks


def corrupt_jsb(img, offset, value, fmt=">I", fix_csum=True):
    """Overwrite a field of the journal superblock (re-checksummed)."""
    bs = blocksize(img)
    blk = journal_map(img)[0]
    b = bytearray(read_block(img, blk, bs))
    struct.pack_into(fmt, b, offset, value)
    incompat = struct.unpack_from(">I", b, 0x28)[0]
    if fix_csum and incompat & (INCOMPAT_CSUM_V2 | INCOMPAT_CSUM_V3):
        struct.pack_into(">I", b, 0xFC, 0)
        struct.pack_into(">I", b, 0xFC, crc32c(0xFFFFFFFF, bytes(b[:1024])))
    write_block(img, blk, bs, bytes(b))


def losetup(path):
    return run(["losetup", "-f", "--show", path]).stdout.strip()


def lodetach(dev):
    run(["losetup", "-d", dev], check=False)


def walk_log(img):
    """Walk the live log as the kernel would (checksums not verified):
    {'start', 'sequence', 'txns': [{'tid', 'tags': [(target, flags)],
    'revokes', 'wrapped'}], 'wrapped'}."""
    bs = blocksize(img)
    jmap = journal_map(img)
    with open(img, "rb") as f:
        def rd(pos):
            f.seek(jmap[pos] * bs)
            return f.read(bs)
        sb = rd(0)
        maxlen, first, seq, start = struct.unpack_from(">IIII", sb, 0x10)
        compat, incompat = struct.unpack_from(">II", sb, 0x24)
        last = maxlen
        if incompat & 0x20:
            nfc = struct.unpack_from(">I", sb, 0x54)[0] or 256
            last = maxlen - nfc
        is64 = incompat & INCOMPAT_64BIT
        v23 = incompat & (INCOMPAT_CSUM_V2 | INCOMPAT_CSUM_V3)
        if incompat & INCOMPAT_CSUM_V3:
            tb = 16
        else:
            tb = 8 + (4 if is64 else 0) + (2 if incompat & INCOMPAT_CSUM_V2
                                           else 0)
        res = {"start": start, "sequence": seq, "txns": [], "wrapped": False,
               "maxlen": maxlen, "first": first, "incompat": incompat,
               "compat": compat}
        if not start:
            return res
        pos, tid, walked = start, seq, 0
        cur = {"tid": tid, "tags": [], "revokes": 0, "wrapped": False}

        def adv(p):
            p += 1
            if p >= last:
                cur["wrapped"] = True
                p = first
            return p

        while walked < last - first:
            b = rd(pos)
            magic, btype, bseq = struct.unpack_from(">III", b, 0)
            if magic != JBD2_MAGIC or bseq != tid:
                break
            pos = adv(pos)
            walked += 1
            if btype == DESCRIPTOR:
                off, end, n = 12, bs - (4 if v23 else 0), 0
                while off + tb <= end:
                    target = struct.unpack_from(">I", b, off)[0]
                    flags = struct.unpack_from(">H", b, off + 6)[0]
                    if is64:
                        target |= struct.unpack_from(">I", b, off + 8)[0] << 32
                    cur["tags"].append((target, flags))
                    n += 1
                    off += tb + (0 if flags & FLAG_SAME_UUID else 16)
                    if flags & FLAG_LAST_TAG:
                        break
                for _ in range(n):
                    pos = adv(pos)
                    walked += 1
            elif btype == REVOKE:
                cnt = struct.unpack_from(">I", b, 12)[0]
                cur["revokes"] += max(0, cnt - 16) // (8 if is64 else 4)
            elif btype == COMMIT:
                res["txns"].append(cur)
                res["wrapped"] |= cur["wrapped"]
                tid = (tid + 1) & 0xFFFFFFFF
                cur = {"tid": tid, "tags": [], "revokes": 0,
                       "wrapped": False}
            else:
                break
        return res
