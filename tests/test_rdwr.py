"""Reading and writing: offsets, O_APPEND, O_TRUNC, holes, files over
4 GiB, mmap, ENOSPC."""

import errno
import hashlib
import mmap
import os
import random

import pytest

import f4test
from f4test import pattern, pread_all, read_file, write_file

GiB = 1 << 30


def test_pwrite_pread_offsets(fs):
    """Random writes at arbitrary offsets (across block boundaries, past
    EOF) against an in-memory model."""
    bs = fs.blocksize
    rnd = random.Random(1234)
    size_limit = 40 * bs + 777
    model = bytearray()
    p = fs.path("f")
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
    # block edges, and the end of ext2/3's twelve direct blocks
    offsets = [0, 1, bs - 1, bs, bs + 1, 2 * bs - 3, 12 * bs - 1, 13 * bs]
    for i in range(200):
        if i < len(offsets):
            off = offsets[i]
            n = [1, 2, 3, bs, bs + 2][i % 5]
        else:
            off = rnd.randrange(size_limit)
            n = rnd.choice([1, 7, 100, bs - 1, bs, bs + 1, 3 * bs + 5])
        data = pattern(n, seed=i)
        assert os.pwrite(fd, data, off) == n
        if len(model) < off + n:
            model.extend(bytes(off + n - len(model)))
        model[off:off + n] = data
        if i % 20 == 0:
            assert os.fstat(fd).st_size == len(model)
            roff = rnd.randrange(len(model))
            rlen = rnd.randrange(1, 4 * bs)
            assert os.pread(fd, rlen, roff) == bytes(model[roff:roff + rlen])
    # reads at and past EOF
    assert os.pread(fd, 10, len(model)) == b""
    assert os.pread(fd, 10, len(model) + 12345) == b""
    assert os.pread(fd, 10, len(model) - 3) == bytes(model[-3:])
    # the file position: write() advances it, pwrite() does not
    os.lseek(fd, 5, os.SEEK_SET)
    os.write(fd, b"pos")
    model[5:8] = b"pos"
    assert os.lseek(fd, 0, os.SEEK_CUR) == 8
    os.pwrite(fd, b"X", 0)
    model[0:1] = b"X"
    assert os.lseek(fd, 0, os.SEEK_CUR) == 8
    assert os.lseek(fd, 0, os.SEEK_END) == len(model)
    os.close(fd)
    assert read_file(p) == bytes(model)
    fs.remount()
    assert read_file(p) == bytes(model)
    assert os.stat(p).st_size == len(model)


def test_large_sequential(fs):
    data = pattern(24 << 20, seed=5)
    p = fs.path("big")
    with open(p, "wb") as f:
        for i in range(0, len(data), 1 << 20):
            f.write(data[i:i + (1 << 20)])
    assert f4test.sha256_file(p) == hashlib.sha256(data).hexdigest()
    fs.remount()
    assert read_file(p) == data
    # odd-sized reads
    fd = os.open(p, os.O_RDONLY)
    for off, n in ((0, 1), (4095, 3), ((3 << 20) - 1, 70001), (len(data) - 5, 100)):
        assert os.pread(fd, n, off) == data[off:off + n]
    os.close(fd)


def test_append(fs):
    p = fs.path("log")
    write_file(p, b"start;")
    fd1 = os.open(p, os.O_WRONLY | os.O_APPEND)
    fd2 = os.open(p, os.O_WRONLY | os.O_APPEND)
    os.write(fd1, b"one;")
    os.write(fd2, b"two;")
    # lseek does not matter for O_APPEND writes
    os.lseek(fd1, 0, os.SEEK_SET)
    os.write(fd1, b"three;")
    assert os.lseek(fd1, 0, os.SEEK_CUR) == len(b"start;one;two;three;")
    # Linux: pwrite() on an O_APPEND descriptor appends regardless of the
    # offset (see pwrite(2), BUGS)
    os.pwrite(fd2, b"four;", 0)
    os.close(fd1)
    os.close(fd2)
    assert read_file(p) == b"start;one;two;three;four;"
    # append after a truncate by someone else goes to the new end
    fd = os.open(p, os.O_RDWR | os.O_APPEND)
    os.truncate(p, 6)
    os.write(fd, b"again")
    os.close(fd)
    assert read_file(p) == b"start;again"
    # O_APPEND on a new, empty file with O_CREAT
    fd = os.open(fs.path("new"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, b"a" * (fs.blocksize + 3))
    os.write(fd, b"b")
    os.close(fd)
    assert read_file(fs.path("new")) == b"a" * (fs.blocksize + 3) + b"b"
    fs.remount()
    assert read_file(p) == b"start;again"
    assert os.stat(fs.path("new")).st_size == fs.blocksize + 4


def test_o_trunc(fs):
    p = fs.path("f")
    write_file(p, pattern(5 * fs.blocksize))
    ino = os.stat(p).st_ino
    fd = os.open(p, os.O_WRONLY | os.O_TRUNC)
    st = os.fstat(fd)
    assert (st.st_size, st.st_blocks) == (0, 0)
    os.write(fd, b"short")
    os.close(fd)
    assert read_file(p) == b"short"
    assert os.stat(p).st_ino == ino
    # Linux truncates on O_RDONLY|O_TRUNC as well (if writable)
    fd = os.open(p, os.O_RDONLY | os.O_TRUNC)
    assert os.read(fd, 10) == b""
    os.close(fd)
    assert os.stat(p).st_size == 0
    # O_CREAT|O_TRUNC on an existing file
    write_file(p, b"x" * 100)
    fd = os.open(p, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    assert os.fstat(fd).st_size == 0
    os.close(fd)
    fs.remount()
    assert os.stat(p).st_size == 0 and os.stat(p).st_blocks == 0


def test_holes(fs):
    bs = fs.blocksize
    p = fs.path("sparse")
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
    # Tail first: a file that starts as inline data and is then extended
    # far beyond EOF gets the whole gap allocated by the kernel's ext4.
    os.pwrite(fd, b"tail", (20 << 20) + 5)
    os.pwrite(fd, b"middle", 10 << 20)
    os.pwrite(fd, b"head", 0)
    st = os.fstat(fd)
    assert st.st_size == (20 << 20) + 9
    # three blocks of data, plus a few metadata blocks at most
    assert 3 * bs // 512 <= st.st_blocks <= (3 * bs + 8 * bs) // 512
    assert os.pread(fd, 100, 4) == bytes(100)
    assert pread_all(fd, 1 << 20, 1 << 20) == bytes(1 << 20)
    assert os.pread(fd, 12, (10 << 20) - 6) == bytes(6) + b"middle"
    # a byte in the middle of a hole block, unaligned
    os.pwrite(fd, b"!", 5 * bs + 1234 % bs)
    blk = os.pread(fd, bs, 5 * bs)
    assert blk == bytes(1234 % bs) + b"!" + bytes(bs - 1234 % bs - 1)
    os.close(fd)
    fs.remount()
    data = read_file(p)
    assert len(data) == (20 << 20) + 9
    assert data[:4] == b"head" and data[(10 << 20):(10 << 20) + 6] == b"middle"
    assert data.count(0) == len(data) - len(b"headmiddletail!")
    # a file created by truncate alone has no blocks and reads zeros
    q = fs.path("empty_big")
    write_file(q, b"")
    os.truncate(q, 3 << 20)
    assert os.stat(q).st_blocks == 0
    assert read_file(q) == bytes(3 << 20)


def test_over_4gib(fs):
    p = fs.path("huge")
    payload = pattern(3 * fs.blocksize + 17, seed=9)
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
    off5 = 5 * GiB
    assert os.pwrite(fd, payload, off5) == len(payload)
    # straddling the 4 GiB boundary (32-bit offset and block-number bugs)
    edge = 4 * GiB - 100
    os.pwrite(fd, b"E" * 200, edge)
    os.pwrite(fd, b"two", 2 * GiB - 1)
    st = os.fstat(fd)
    assert st.st_size == off5 + len(payload)
    assert st.st_blocks * 512 < 64 * fs.blocksize + 1024 * 1024
    os.close(fd)

    def check():
        fd = os.open(p, os.O_RDONLY)
        try:
            assert pread_all(fd, len(payload), off5) == payload
            assert os.pread(fd, 300, edge - 50) == bytes(50) + b"E" * 200 + bytes(50)
            assert os.pread(fd, 5, 2 * GiB - 2) == b"\0two\0"
            assert os.pread(fd, 4096, 4 * GiB + 4096) == bytes(4096)
            assert os.pread(fd, 4096, 3 * GiB) == bytes(4096)
            assert os.pread(fd, 10, off5 + len(payload)) == b""
            assert os.fstat(fd).st_size == off5 + len(payload)
        finally:
            os.close(fd)
    check()
    fs.remount()
    check()
    # shrink below 4 GiB: the high blocks go away, data below stays
    os.truncate(p, 4 * GiB - 50)
    fd = os.open(p, os.O_RDONLY)
    assert os.pread(fd, 100, edge - 50) == bytes(50) + b"E" * 50
    assert os.pread(fd, 10, 4 * GiB - 50) == b""
    os.close(fd)
    assert os.stat(p).st_blocks * 512 < 16 * fs.blocksize + 512 * 1024
    fs.remount()
    assert os.stat(p).st_size == 4 * GiB - 50


def test_mmap_shared_write(fs):
    bs = fs.blocksize
    p = fs.path("mm")
    size = 3 * max(bs, mmap.PAGESIZE) + 100
    write_file(p, bytes(size))
    with open(p, "r+b") as f:
        mm = mmap.mmap(f.fileno(), size)
        mm[0:5] = b"hello"
        mm[size - 5:size] = b"world"
        mm[bs:bs + 3] = b"mid"
        mm.flush()
        mm.close()
    data = read_file(p)
    assert data[:5] == b"hello" and data[-5:] == b"world"
    assert data[bs:bs + 3] == b"mid"
    # a write() is visible through a mapping made afterwards
    fd = os.open(p, os.O_RDWR)
    os.pwrite(fd, b"W", 7)
    mm = mmap.mmap(fd, size, prot=mmap.PROT_READ)
    assert mm[5:8] == b"\0\0W"
    mm.close()
    os.close(fd)
    fs.remount()
    data = read_file(p)
    assert data[:8] == b"hello\0\0W" and data[-5:] == b"world"


def _fill(path, chunk):
    """Write until ENOSPC; return the number of bytes written."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    total = 0
    err = None
    try:
        i = 0
        while True:
            data = pattern(chunk, seed=i)
            try:
                n = os.write(fd, data)
            except OSError as e:
                err = e.errno
                break
            total += n
            if n < chunk:
                # a short write: the next one must fail
                try:
                    os.write(fd, data[n:])
                    raise AssertionError("write after a short write at %d "
                                         "succeeded" % total)
                except OSError as e:
                    err = e.errno
                break
            i += 1
        os.fsync(fd)
    finally:
        os.close(fd)
    assert err == errno.ENOSPC, "filling up ended with %s" % f4test.errname(err)
    return total


def _expected_fill(total, chunk):
    out = bytearray()
    i = 0
    while len(out) < total:
        out += pattern(chunk, seed=i)
        i += 1
    return bytes(out[:total])


@pytest.mark.image_size("64M")
def test_enospc(fs):
    chunk = 1 << 20
    f4test.sync_fs(fs.mnt)
    start = fs.statfs()
    write_file(fs.path("small"), b"before the flood")
    total = _fill(fs.path("fill"), chunk)
    s = fs.statfs()
    # root may use the reserved blocks (s_r_blocks_count): the file system
    # is really full.  (The kernel keeps back only its own small internal
    # reserve, min(2%, 4096 clusters).)
    assert s.f_bfree * fs.blocksize < 2 * chunk + 8 * fs.blocksize, (
        "ENOSPC for root with %d blocks still free: %s" % (s.f_bfree, s))
    assert total > (start.f_bfree * fs.blocksize) // 2
    # other operations get ENOSPC too, or succeed without blocks
    assert f4test.errno_of(write_file, fs.path("more"), pattern(4 * chunk)) \
        == errno.ENOSPC
    fs.remount()
    assert os.stat(fs.path("fill")).st_size == total
    assert read_file(fs.path("fill")) == _expected_fill(total, chunk)
    assert read_file(fs.path("small")) == b"before the flood"
    for n in ("fill", "more", "small"):
        if os.path.exists(fs.path(n)):
            os.unlink(fs.path(n))
    f4test.sync_fs(fs.mnt)
    # the last file unlinked is freed when the kernel forgets it, which
    # may come a few requests after unlink() returns
    end = f4test.wait_statfs(fs.mnt, lambda st: (st.f_bfree, st.f_ffree) ==
                             (start.f_bfree, start.f_ffree))
    assert (end.f_bfree, end.f_ffree) == (start.f_bfree, start.f_ffree)
    fs.remount()
    end = fs.statfs()
    assert (end.f_bfree, end.f_ffree) == (start.f_bfree, start.f_ffree)
    # and the space is usable again
    write_file(fs.path("again"), pattern(4 * chunk))
    assert read_file(fs.path("again")) == pattern(4 * chunk)
