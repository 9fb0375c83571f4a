"""sync(1) and syncfs(2) make everything written so far durable.

The kernel sends FUSE_SYNCFS for syncfs(2) and for sync(1) on a FUSE
mount.  libfuse 3.14 has no handler for it, so fuse4fs answers it itself
(session.c).  Each test mounts with a long commit interval, so nothing
reaches the image in the background, writes, syncs, kills the daemon
with SIGKILL (a crash), and requires the synced work on the image, with
`e2fsck -fn` clean after the next mount has recovered it.
"""

import os
import subprocess

import pytest

import f4test
from f4test import pattern, read_file, write_file

pytestmark = [pytest.mark.fuse_only, pytest.mark.mount_opts("commit=600")]


def _work(fs):
    os.mkdir(fs.path("d"))
    write_file(fs.path("d/a"), pattern(300000, seed=3))
    os.link(fs.path("d/a"), fs.path("d/b"))
    os.symlink("a", fs.path("d/s"))
    write_file(fs.path("gone"), b"x" * 5000)
    os.rename(fs.path("gone"), fs.path("d/renamed"))


def _check_after_crash(fs):
    fs.kill_daemon()
    f4test.umount(fs.mnt, lazy=True)
    fs.mounted = False
    fs.mount()
    assert read_file(fs.path("d/a")) == pattern(300000, seed=3)
    assert os.stat(fs.path("d/a")).st_nlink == 2
    assert os.stat(fs.path("d/b")).st_ino == os.stat(fs.path("d/a")).st_ino
    assert os.readlink(fs.path("d/s")) == "a"
    assert read_file(fs.path("d/renamed")) == b"x" * 5000
    assert not os.path.exists(fs.path("gone"))


@pytest.mark.variants("ext4", "ext2", "ext4-1k")
def test_syncfs_is_durable(fs):
    _work(fs)
    f4test.sync_fs(fs.mnt)
    _check_after_crash(fs)


@pytest.mark.variants("ext4")
def test_sync_command_is_durable(fs):
    _work(fs)
    subprocess.run(["sync"], check=True)
    _check_after_crash(fs)


@pytest.mark.variants("ext4")
@pytest.mark.mount_opts("ro")
def test_syncfs_on_read_only_mount(fs):
    f4test.sync_fs(fs.mnt)
    assert os.listdir(fs.mnt) == ["lost+found"]
