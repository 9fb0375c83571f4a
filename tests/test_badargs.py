"""Bad command lines and unusable images (issue #8, "Hostile and unlucky
input"): every mistake is one clear line on stderr and the documented exit
status (fuse4fs(1), EXIT STATUS: 1 bad usage or options, 2 the file system
can't be opened or checked), nothing is mounted, no daemon stays behind,
and the image is not touched.  A read-only image asked for read-write falls
back to a read-only mount with a message, as the kernel does for a
read-only loop device.
"""

import errno
import os
import re
import shutil
import subprocess
import tempfile
import time

import pytest

import f4test
from f4test import pattern, read_file, sha256_file, write_file

EXIT_USAGE = 1
EXIT_FS = 2

NOBODY = 65534


def _leftover_pids(needle):
    """Pids of processes whose command line contains needle (not us)."""
    p = subprocess.run(["pgrep", "-f", "--", needle], stdout=subprocess.PIPE,
                       text=True)
    return [int(x) for x in p.stdout.split() if int(x) != os.getpid()]


def _cleanup(mnt, needle):
    """Last resort after a case that wrongly mounted or left a daemon."""
    done = []
    if f4test.is_mounted(mnt):
        if f4test.umount(mnt).returncode != 0:
            f4test.umount(mnt, lazy=True)
        done.append("mounted")
    deadline = time.monotonic() + 10
    pids = _leftover_pids(needle)
    while pids and time.monotonic() < deadline:
        time.sleep(0.1)
        pids = _leftover_pids(needle)
    for pid in pids:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
        done.append("daemon %d left running" % pid)
    return done


def _run_fuse4fs(argv, as_user=False, timeout=20):
    cmd = [f4test.fuse4fs_binary()] + list(argv)
    if as_user:
        cmd = ["setpriv", "--reuid=%d" % NOBODY, "--regid=%d" % NOBODY,
               "--clear-groups"] + cmd
    try:
        return subprocess.run(cmd, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        return e


# ---------------------------------------------------------------------------
# the table: (id, argv with {img} {mnt} {zeros} ... placeholders, exit
# status, what the one line must say, run as nobody)

CASES = [
    # positional arguments
    ("no-arguments", [], EXIT_USAGE, r"missing", False),
    ("only-image", ["{img}"], EXIT_USAGE, r"missing.*MOUNTPOINT", False),
    ("extra-positional", ["{img}", "{mnt}", "{other}"], EXIT_USAGE,
     r"too many arguments", False),
    # the mount point
    ("mountpoint-missing", ["{img}", "{nomnt}"], EXIT_USAGE,
     r"No such file or directory", False),
    ("mountpoint-not-a-directory", ["{img}", "{afile}"], EXIT_USAGE,
     r"not a directory", False),
    ("mountpoint-already-mounted", ["{img}", "{busymnt}"], EXIT_USAGE,
     r"already a mount point", False),
    # the image
    ("image-missing", ["{noimg}", "{mnt}"], EXIT_FS,
     r"No such file or directory", False),
    ("image-is-a-directory", ["{adir}", "{mnt}"], EXIT_FS,
     r"is a directory", False),
    ("image-unreadable", ["{unreadable}", "{mnt}"], EXIT_FS,
     r"[Pp]ermission denied|cannot read", True),
    ("image-zeros", ["{zeros}", "{mnt}"], EXIT_FS,
     r"not an ext2/ext3/ext4 file system", False),
    ("image-random", ["{random}", "{mnt}"], EXIT_FS,
     r"not an ext2/ext3/ext4 file system", False),
    # contradictory options
    ("fakeroot-with-kernel", ["-o", "fakeroot,kernel", "{img}", "{mnt}"],
     EXIT_USAGE, r"fakeroot", False),
    ("fakeroot-with-default_permissions",
     ["-o", "default_permissions", "-o", "fakeroot", "{img}", "{mnt}"],
     EXIT_USAGE, r"fakeroot", False),
    ("offset-with-partition", ["-o", "offset=1048576,partition=1", "{img}",
                               "{mnt}"], EXIT_USAGE, r"offset.*partition",
     False),
    ("norecovery-with-rw", ["-o", "norecovery,rw", "{img}", "{mnt}"],
     EXIT_USAGE, r"norecovery", False),
    ("noload-with-rw", ["-o", "rw", "-o", "noload", "{img}", "{mnt}"],
     EXIT_USAGE, r"norecovery|noload", False),
    # malformed values
    ("errors-bogus", ["-o", "errors=bogus", "{img}", "{mnt}"], EXIT_USAGE,
     r"errors", False),
    ("errors-empty", ["-o", "errors=", "{img}", "{mnt}"], EXIT_USAGE,
     r"errors", False),
    ("errors-no-value", ["-o", "errors", "{img}", "{mnt}"], EXIT_USAGE,
     r"errors", False),
    ("cache_size-abc", ["-o", "cache_size=abc", "{img}", "{mnt}"],
     EXIT_USAGE, r"cache_size", False),
    ("cache_size-too-small", ["-o", "cache_size=1", "{img}", "{mnt}"],
     EXIT_USAGE, r"cache_size", False),
    ("offset-negative", ["-o", "offset=-1", "{img}", "{mnt}"], EXIT_USAGE,
     r"offset", False),
    ("offset-garbage", ["-o", "offset=12abc", "{img}", "{mnt}"], EXIT_USAGE,
     r"offset", False),
    ("partition-0", ["-o", "partition=0", "{img}", "{mnt}"], EXIT_USAGE,
     r"partition", False),
    ("partition-999", ["-o", "partition=999", "{img}", "{mnt}"], EXIT_USAGE,
     r"partition", False),
    ("commit-0", ["-o", "commit=0", "{img}", "{mnt}"], EXIT_USAGE,
     r"commit", False),
    ("threads-0", ["-o", "threads=0", "{img}", "{mnt}"], EXIT_USAGE,
     r"threads", False),
    ("spin-too-long", ["-o", "spin=20000", "{img}", "{mnt}"], EXIT_USAGE,
     r"spin", False),
    ("spin-negative", ["-o", "spin=-1", "{img}", "{mnt}"], EXIT_USAGE,
     r"spin", False),
    ("ro-with-value", ["-o", "ro=1", "{img}", "{mnt}"], EXIT_USAGE,
     r"ro", False),
    # unknown options
    ("unknown-o-option", ["-o", "nosuchthing", "{img}", "{mnt}"], EXIT_USAGE,
     r"nosuchthing", False),
    ("unknown-flag", ["-x", "{img}", "{mnt}"], EXIT_USAGE, r"-x", False),
    ("unknown-long-flag", ["--nosuchflag", "{img}", "{mnt}"], EXIT_USAGE,
     r"--nosuchflag", False),
    ("o-without-argument", ["{img}", "{mnt}", "-o"], EXIT_USAGE, r"-o",
     False),
]


@pytest.fixture(scope="module")
def bad_inputs():
    """Images and paths shared by the table (made once; every case checks
    that its image is unchanged).  In a directory that nobody can reach,
    for the case run as another user."""
    d = tempfile.mkdtemp(prefix="f4badargs-",
                         dir=os.environ.get("F4_TMPDIR", "/tmp"))
    os.chmod(d, 0o755)
    p = {}
    p["img"] = f4test.make_image(os.path.join(d, "good.img"), "ext4",
                                 size=16 << 20)
    p["mnt"] = os.path.join(d, "mnt")
    os.mkdir(p["mnt"])
    p["other"] = os.path.join(d, "other")
    os.mkdir(p["other"])
    p["nomnt"] = os.path.join(d, "no-such-mnt")
    p["noimg"] = os.path.join(d, "no-such.img")
    p["afile"] = os.path.join(d, "a-file")
    write_file(p["afile"], b"not a directory\n")
    p["adir"] = os.path.join(d, "a-dir.img")
    os.mkdir(p["adir"])
    p["zeros"] = os.path.join(d, "zeros.img")
    with open(p["zeros"], "wb") as f:
        f.truncate(16 << 20)
    p["random"] = os.path.join(d, "random.img")
    write_file(p["random"], pattern(2 << 20, seed=8))
    p["unreadable"] = os.path.join(d, "unreadable.img")
    f4test.make_image(p["unreadable"], "ext4", size=16 << 20)
    os.chmod(p["unreadable"], 0)
    p["busymnt"] = os.path.join(d, "busy")
    os.mkdir(p["busymnt"])
    os.chmod(d, 0o755)
    f4test.run(["mount", "-t", "tmpfs", "-o", "size=1m", "f4busy",
                p["busymnt"]])
    p["dir"] = d
    yield p
    if f4test.is_mounted(p["busymnt"]):
        f4test.umount(p["busymnt"], lazy=True)
    if not any(f4test.is_mounted(p[k]) for k in ("mnt", "other", "busymnt")):
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.fuse_only
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_command_line(case, bad_inputs):
    name, argv, want_rc, want_msg, as_user = case
    p = bad_inputs
    argv = [a.format(**p) for a in argv]
    images = [p[k] for k in ("img", "zeros", "random", "unreadable")]
    sums = {i: sha256_file(i) for i in images}
    mounts = [p["mnt"], p["other"]]
    before = {m: f4test.mount_entry(m) for m in mounts + [p["busymnt"]]}

    res = _run_fuse4fs(argv, as_user=as_user)
    left = []
    for m in mounts:
        if f4test.mount_entry(m) != before[m]:
            left += _cleanup(m, p["dir"])
    left += _cleanup("/nonexistent-f4", p["dir"])

    assert not isinstance(res, subprocess.TimeoutExpired), (
        "%s: fuse4fs %s neither failed nor returned within 20 s" % (
            name, " ".join(argv)))
    err_lines = [l for l in res.stderr.splitlines() if l.strip()]
    problems = []
    if res.returncode != want_rc:
        problems.append("exit status %d, documented %d" % (res.returncode,
                                                          want_rc))
    if len(err_lines) != 1:
        problems.append("%d lines on stderr, wanted exactly one" %
                        len(err_lines))
    elif not err_lines[0].startswith("fuse4fs"):
        problems.append("the line does not say who is talking")
    if not re.search(want_msg, res.stderr):
        problems.append("stderr does not match /%s/" % want_msg)
    if left:
        problems.append("left behind: %s" % ", ".join(left))
    for i in images:
        if sha256_file(i) != sums[i]:
            problems.append("%s was modified" % i)
    assert f4test.mount_entry(p["busymnt"]) == before[p["busymnt"]], (
        "the mount that was already there changed")
    assert not problems, "%s: fuse4fs %s\n  %s\nstdout: %r\nstderr: %r" % (
        name, " ".join(argv), "\n  ".join(problems), res.stdout, res.stderr)


@pytest.mark.fuse_only
def test_help_and_version_exit_0(bad_inputs):
    """The two ways to ask rather than mount: status 0, nothing mounted."""
    for flag in ("--help", "-h", "--version", "-V"):
        res = _run_fuse4fs([flag])
        assert res.returncode == 0, (flag, res.returncode, res.stderr)
        assert res.stdout.strip(), flag
    assert not f4test.is_mounted(bad_inputs["mnt"])


# ---------------------------------------------------------------------------
# a read-only image asked for read-write

# util-linux's loop set-up falls back to a read-only loop device on EROFS
# and EACCES but not on EPERM, so the kernel reference only exists for the
# read-only bind mount; chattr +i is a fuse4fs-only case.
@pytest.fixture(params=[pytest.param("immutable", marks=pytest.mark.fuse_only),
                        "ro-bind"])
def readonly_image(request, fs_unmounted, workdir):
    """fs_unmounted's image made unwritable: chattr +i, or reached through
    a read-only bind mount of its directory."""
    fs = fs_unmounted
    # content to read back: made with debugfs so that no driver is needed
    src = os.path.join(workdir, "content")
    write_file(src, pattern(300000, seed=5))
    f4test.debugfs(fs.image, "write %s content" % src, write=True)
    orig_image = fs.image
    robind = None
    if request.param == "immutable":
        f4test.run(["chattr", "+i", fs.image])
    else:
        d = os.path.join(workdir, "imgdir")
        os.mkdir(d)
        newimg = os.path.join(d, "ro.img")
        os.rename(fs.image, newimg)
        robind = os.path.join(workdir, "robind")
        os.mkdir(robind)
        f4test.run(["mount", "--bind", d, robind])
        f4test.run(["mount", "-o", "remount,bind,ro", robind])
        fs.image = os.path.join(robind, "ro.img")
    try:
        yield fs, request.param
    finally:
        if fs.mounted:
            fs.force_cleanup()
        if request.param == "immutable":
            f4test.run(["chattr", "-i", orig_image], check=False)
        else:
            for _ in range(20):
                if f4test.umount(robind).returncode == 0:
                    break
                time.sleep(0.2)
            if f4test.is_mounted(robind):
                f4test.umount(robind, lazy=True)
            os.rename(os.path.join(workdir, "imgdir", "ro.img"), orig_image)
            fs.image = orig_image


@pytest.mark.variants("ext4", "ext2")
@pytest.mark.image_size("32M")
def test_readonly_image_mounts_readonly(readonly_image):
    """fuse4fs(1): "fuse4fs mounts read-only on its own, with a warning,
    when the image or device can't be opened for writing".  The kernel
    does the same for a read-only loop device (mount(8): "source
    write-protected, mounted read-only"), so this runs against it too."""
    fs, how = readonly_image
    assert f4test.errno_of(os.open, fs.image, os.O_RDWR) in (
        errno.EPERM, errno.EROFS, errno.EACCES), "the image is writable"
    before = sha256_file(fs.image)
    fs.mount()          # no "ro": read-write was asked for
    ent = f4test.mount_entry(fs.mnt)
    assert "ro" in ent[3].split(","), "mounted %s read-write: %r" % (how, ent)
    assert read_file(fs.path("content")) == pattern(300000, seed=5)
    assert f4test.errno_of(write_file, fs.path("new"), b"x") == errno.EROFS
    assert f4test.errno_of(os.mkdir, fs.path("newdir")) == errno.EROFS
    assert f4test.errno_of(os.unlink, fs.path("content")) == errno.EROFS
    if fs.driver != "kernel":
        log = f4test.read_log(fs.log)
        assert re.search(r"read-only", log.split("====")[-1]), (
            "no message about the read-only fallback:\n" + log)
    fs.unmount()
    assert sha256_file(fs.image) == before, "the read-only image changed"


# ---------------------------------------------------------------------------
# features whose names and contents fuse4fs can't decode yet (issue 15,
# item 9): a read-only mount served ciphertext names and data and failed
# case-insensitive lookups; now such a file system is refused, even
# read-only, with one line naming the feature.

@pytest.mark.fuse_only
@pytest.mark.parametrize("feature", ["casefold", "encrypt"])
@pytest.mark.parametrize("mode", ["ro", "rw"])
def test_undecoded_feature_refused(workdir, feature, mode):
    img = f4test.make_image(os.path.join(workdir, "f.img"), "ext4",
                            size=16 << 20, extra=["-O", feature])
    mnt = os.path.join(workdir, "mnt")
    os.mkdir(mnt)
    before = sha256_file(img)
    res = _run_fuse4fs(["-o", mode, img, mnt])
    left = _cleanup(mnt, img)
    assert not isinstance(res, subprocess.TimeoutExpired), (
        "fuse4fs -o %s on a %s file system did not return" % (mode, feature))
    assert not left, "mounted a %s file system -o %s (exit %d): %s" % (
        feature, mode, res.returncode, ", ".join(left))
    assert res.returncode == EXIT_FS, (res.returncode, res.stderr)
    lines = [l for l in res.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("fuse4fs"), res.stderr
    assert re.search(r"\b%s\b" % feature, lines[0]), res.stderr
    assert sha256_file(img) == before, "a refused mount changed the image"
