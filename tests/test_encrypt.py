"""Encrypted directories without the key (issue 17): fuse4fs never has
fscrypt keys, and must behave as the kernel's ext4 does without them.

The images are made by this machine's kernel: the test adds a raw v2
key to the mounted file system (FS_IOC_ADD_ENCRYPTION_KEY), sets a v2
policy on a directory (FS_IOC_SET_ENCRYPTION_POLICY), fills it, and
unmounts (which drops the key).  Then a copy is mounted by the kernel,
without the key, next to fuse4fs on the original, and the two must agree:
the no-key names listed (base64url of the directory hash and ciphertext,
or of a digest for long names), lookups of those names, ENOKEY for the
contents of encrypted files and for new names, the no-key form of
encrypted symlink targets, unlink and rmdir by no-key name.  Finally the
kernel mounts fuse4fs's result again with the key: what remains decrypts
right, and e2fsck -fn is clean.
"""

import errno
import fcntl
import os
import shutil
import stat
import struct

import pytest

import f4test

FS_IOC_ADD_ENCRYPTION_KEY = 0xC0506617
FS_IOC_SET_ENCRYPTION_POLICY = 0x800C6613
KEY = bytes(range(7, 71))                      # 64 raw bytes

pytestmark = [pytest.mark.fuse_only,
              pytest.mark.image_size("64M"),
              pytest.mark.mkfs_opts("-O", "encrypt"),
              pytest.mark.variants("ext4", "ext4-1k", "ext4-inline")]


def kernel_has_encryption():
    return os.path.exists("/sys/fs/ext4/features/encryption")


def add_key(mnt):
    """Add KEY to the file system at mnt; its identifier."""
    arg = bytearray(80 + len(KEY))
    struct.pack_into("<II", arg, 0, 2, 0)      # by identifier
    struct.pack_into("<II", arg, 40, len(KEY), 0)
    arg[80:] = KEY
    fd = os.open(mnt, os.O_RDONLY)
    try:
        fcntl.ioctl(fd, FS_IOC_ADD_ENCRYPTION_KEY, arg)
    finally:
        os.close(fd)
    return bytes(arg[8:24])


def set_policy(path, ident):
    # v2, AES-256-XTS contents, AES-256-CTS names, 16-byte name padding
    pol = struct.pack("<BBBBB3s16s", 2, 1, 4, 2, 0, b"\0" * 3, ident)
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.ioctl(fd, FS_IOC_SET_ENCRYPTION_POLICY, pol)
    finally:
        os.close(fd)


LONG = "L" * 200                               # ciphertext > 149 bytes


def populate(mnt):
    ident = add_key(mnt)
    s = os.path.join(mnt, "secret")
    os.mkdir(s)
    set_policy(s, ident)
    f4test.write_file(os.path.join(s, "hello.txt"), b"hi there")
    f4test.write_file(os.path.join(s, LONG), b"long name")
    f4test.write_file(os.path.join(s, "big"), f4test.pattern(70000))
    os.symlink("hello.txt", os.path.join(s, "link"))
    os.symlink("T" * 300, os.path.join(s, "longlink"))
    os.mkfifo(os.path.join(s, "fifo"))
    os.mkdir(os.path.join(s, "empty"))
    os.mkdir(os.path.join(s, "many"))
    for i in range(300):
        f4test.write_file(os.path.join(s, "many", "file-%03d" % i), b"%d" % i)
    os.link(os.path.join(s, "hello.txt"), os.path.join(s, "hard"))
    os.setxattr(os.path.join(s, "big"), "user.tag", b"v")
    os.mkdir(os.path.join(mnt, "plain"))
    f4test.write_file(os.path.join(mnt, "plain", "p"), b"plain")
    return ident


def tree(root):
    """What a user without the key sees: names, types, sizes, targets."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for n in sorted(dirs + files):
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            ent = (stat.S_IFMT(st.st_mode), st.st_mode & 0o7777,
                   st.st_nlink, st.st_size if not stat.S_ISDIR(st.st_mode)
                   else None)
            if stat.S_ISLNK(st.st_mode):
                ent += (os.readlink(p),)
            out[rel] = ent
    return out


def errno_of(fn, *args):
    try:
        fn(*args)
    except OSError as e:
        return e.errno
    return 0


def open_read(p):
    with open(p, "rb") as f:
        f.read()


def open_write(p):
    os.close(os.open(p, os.O_WRONLY))


def create(p):
    os.close(os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))


def find(d, size):
    """The no-key name of the regular file of this size in d."""
    for n in os.listdir(d):
        st = os.lstat(os.path.join(d, n))
        if stat.S_ISREG(st.st_mode) and st.st_size == size:
            return n
    raise AssertionError("no file of %d bytes in %s" % (size, d))


def find_long(d):
    for n in os.listdir(d):
        if len(n) > 200:
            return n
    raise AssertionError("no long no-key name in %s" % d)


def probe(mnt):
    """The same questions to either mount; answers comparable."""
    s = os.path.join(mnt, "secret")
    hello = os.path.join(s, find(s, 8))
    big = os.path.join(s, find(s, 70000))
    res = {
        "read": errno_of(open_read, hello),
        "write": errno_of(open_write, big),
        "truncate": errno_of(os.truncate, big, 0),
        "create": errno_of(create, os.path.join(s, "new")),
        "mkdir": errno_of(os.mkdir, os.path.join(s, "newdir")),
        "symlink": errno_of(os.symlink, "x", os.path.join(s, "newlink")),
        "link-in": errno_of(os.link, os.path.join(mnt, "plain", "p"),
                            os.path.join(s, "newhard")),
        "rename-in": errno_of(os.rename, os.path.join(mnt, "plain", "p"),
                              os.path.join(s, "moved")),
        "rename-within": errno_of(os.rename, hello,
                                  os.path.join(s, "renamed")),
        "bad-name": errno_of(os.lstat, os.path.join(s, "not-a-nokey!")),
        "wrong-name": errno_of(os.lstat, os.path.join(s, "A" * 32)),
        "xattr": os.getxattr(big, "user.tag"),
        "chmod": errno_of(os.chmod, big, 0o600),
    }
    # long no-key names are found (by digest)
    res["long"] = os.lstat(os.path.join(s, find_long(s))).st_size
    # outside encrypted directories everything works
    f4test.write_file(os.path.join(mnt, "plain", "q"), b"written")
    res["plain"] = f4test.read_file(os.path.join(mnt, "plain", "q"))
    return res


def mutate(mnt):
    """Removals by no-key name, on either mount."""
    s = os.path.join(mnt, "secret")
    os.unlink(os.path.join(s, find_long(s)))
    os.unlink(os.path.join(s, find(s, 70000)))
    empty = [n for n in os.listdir(s)
             if os.path.isdir(os.path.join(s, n)) and
             not os.listdir(os.path.join(s, n))]
    assert len(empty) == 1
    os.rmdir(os.path.join(s, empty[0]))
    many = [n for n in os.listdir(s)
            if os.path.isdir(os.path.join(s, n))][0]
    m = os.path.join(s, many)
    for n in sorted(os.listdir(m))[::2]:
        os.unlink(os.path.join(m, n))
    assert_errno_rmdir = errno_of(os.rmdir, m)
    return assert_errno_rmdir


@pytest.fixture
def encrypted(fs_factory, variant, workdir):
    if not kernel_has_encryption():
        pytest.skip("this kernel's ext4 has no encryption support")
    k = fs_factory(variant, driver="kernel", name="k")
    populate(k.mnt)
    k.unmount()
    copy = os.path.join(workdir, "kernel-copy.img")
    shutil.copyfile(k.image, copy)
    kern = fs_factory(variant, driver="kernel", image=copy, name="kv")
    fuse = fs_factory(variant, driver="fuse4fs", image=k.image, name="fv")
    return kern, fuse, k


def test_listing_matches_kernel_without_key(encrypted):
    kern, fuse, _ = encrypted
    a, b = tree(kern.mnt), tree(fuse.mnt)
    assert a == b
    # the names really are no-key names, not plaintext or raw ciphertext
    names = os.listdir(os.path.join(fuse.mnt, "secret"))
    assert "hello.txt" not in names and len(names) == 9
    assert all(set(n) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnop"
                              "qrstuvwxyz0123456789-_") for n in names)


def test_operations_match_kernel_without_key(encrypted):
    kern, fuse, _ = encrypted
    a, b = probe(kern.mnt), probe(fuse.mnt)
    assert a == b
    assert b["read"] == errno.ENOKEY and b["create"] == errno.ENOKEY
    assert tree(kern.mnt) == tree(fuse.mnt)


def test_removals_then_kernel_with_key(encrypted):
    kern, fuse, k = encrypted
    ra, rb = mutate(kern.mnt), mutate(fuse.mnt)
    assert ra == rb == errno.ENOTEMPTY
    assert tree(kern.mnt) == tree(fuse.mnt)
    fuse.unmount()
    # the key unlocks what fuse4fs left, names and contents
    k.mount()
    add_key(k.mnt)
    s = os.path.join(k.mnt, "secret")
    assert sorted(os.listdir(s)) == sorted(
        ["hello.txt", "hard", "link", "longlink", "fifo", "many"])
    assert f4test.read_file(os.path.join(s, "hard")) == b"hi there"
    assert os.readlink(os.path.join(s, "longlink")) == "T" * 300
    left = sorted(os.listdir(os.path.join(s, "many")))
    assert len(left) == 150 and all(n.startswith("file-") for n in left)
    for n in left[::10]:
        assert f4test.read_file(os.path.join(s, "many", n)) == \
            b"%d" % int(n[5:])
