"""pytest fixtures for the fuse4fs integration tests.

Environment:
  F4_DRIVER   fuse4fs (default) | kernel (mount -o loop) | fuse2fs
  F4_BIN      fuse4fs binary (default: <repo>/fuse4fs/fuse4fs)
  F4_VARIANTS comma-separated variants to keep (others are deselected)
  F4_TMPDIR   where per-test directories go (default /tmp)
  F4_KEEP     1: keep every test's image and mount dir (default: keep only
              those of failed tests)
  F4_TIMEOUT  per-test watchdog in seconds (default 300); on expiry the
              stacks are dumped and FUSE daemons are killed so that a hung
              request returns ENOTCONN instead of hanging the run
  F4_FUSE2FS_OPTS  extra -o options for fuse2fs (e.g. fakeroot)

Fixtures:
  fs            a fresh image of `variant`, mounted with the driver under
                test; an f4test.FS (.mnt .image .variant .driver .blocksize
                .inode_size .path() .remount(opts=) .unmount() .fsck()
                .statfs() .superblock() .sb_raw()).  Teardown unmounts,
                waits for the daemon to exit 0, runs e2fsck -fn.
  fs_unmounted  the same, made but not mounted (call .mount(opts)).
  kernel_ext4   a second fresh image of the same variant, mounted by the
                kernel's ext4 (skipped for variants the kernel cannot mount).
  variant       the variant name (parametrized over f4test.DEFAULT_VARIANTS
                unless a `variants` marker says otherwise).
  mount_opts    the logical mount options for `fs` (from the mount_opts
                marker; a test module may override this fixture, e.g. to
                parametrize it).
  driver        the driver name.
  fs_factory    make(variant, driver=None, image=None, name=None, opts=(),
                mount=True): more FS objects in the same test (another
                driver on the same image, a second image...); each is
                unmounted and checked with e2fsck -fn at teardown.

Markers:
  variants(*names)    run only on these variants (may name EXTRA_VARIANTS)
  mount_opts(*opts)   logical mount options: kernel, allow_other, ro, acl,
                      errors=..., fakeroot
  image_size(size)    image size, int or "64M"/"6G" (default 256M)
  mkfs_opts(*args)    extra mke2fs arguments
  fuse_only           deselected with F4_DRIVER=kernel
  timeout(seconds)    per-test watchdog
  serial              run alone, not beside other tests (make check runs
                      these in a second, serial pass after the parallel
                      one): tests that measure CPU time or how fast
                      something happens, or drop the kernel's caches.
                      SERIAL_TESTS below adds it.

Parallel runs: `make check` runs the suite with pytest-xdist
(-n PYTEST_JOBS --dist loadgroup -m "not serial", then -m serial alone).
Every worker has its own session directory (F4_TMPDIR/f4test-*), its own
mount points and images, and loop devices are taken with losetup -f, so
tests don't collide.  XDIST_GROUPS below keeps tests that share an
expensive module-scoped fixture or a build directory on one worker.
"""

import faulthandler
import os
import shutil
import sys
import tempfile
import threading

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import f4test  # noqa: E402

# Tests using these need root and the driver's binary.
MOUNT_FIXTURES = ("fs", "fs_unmounted", "kernel_ext4", "fs_factory", "driver")

# Tests (file, or file::function) that must not share the machine with
# other tests: they measure the daemon's CPU time, bound how long
# something takes, or change state every mount sees.
SERIAL_TESTS = (
    "test_kernel_sync.py",                       # writes vm/drop_caches
    "test_names_regress.py::test_dir_handle_below_hashed_dir",  # the same
    "test_session.py::test_idle_mount_sleeps",   # CPU time of an idle daemon
    "test_crash.py",                             # mount gone within 5 s
    "test_damage.py::test_errors_panic",         # ls answers within 5 s
    # Kernel crash images (crash_with_kernel): whether the kernel has
    # written a change in place before the shutdown depends on the
    # machine's dirty-page load, and beside other tests' writes it
    # sometimes has, so the image needs no replay and the tests' premise
    # (the unreplayed tree differs) fails.
    "test_journal_mount.py",
    "test_journal_replay.py",
)

# xdist groups: tests that share an expensive module-scoped fixture or
# build into the source tree run on one worker.
XDIST_GROUPS = {
    "test_fuzz.py": "fuzz",                      # builds fuzz/ (clang)
    "test_packaging.py": "packaging",            # make install in the tree
    "test_orphans.py::test_walk_200k_files_memory_bounded": "bigtree",
    "test_orphans.py::test_block_cache_honours_cache_size": "bigtree",
    "test_badargs.py": "badargs",                # shared bad images
}


def _table_match(item, table):
    base = os.path.basename(str(item.fspath))
    func = getattr(item, "originalname", None) or item.name
    for key in ("%s::%s" % (base, func), base):
        if key in table:
            return table[key] if isinstance(table, dict) else key
    return None

_session = {"base": None, "live": []}


# ---------------------------------------------------------------------------
# configuration, collection

def pytest_configure(config):
    for m in ("variants(*names): run the test only on these fs variants",
              "mount_opts(*opts): logical mount options for the fs fixture",
              "image_size(size): image size for the fs fixture",
              "mkfs_opts(*args): extra mke2fs arguments",
              "fuse_only: only meaningful for FUSE drivers; deselected for "
              "F4_DRIVER=kernel",
              "timeout(seconds): per-test watchdog",
              "serial: run alone, in make check's serial pass"):
        config.addinivalue_line("markers", m)


def pytest_report_header(config):
    drv = os.environ.get("F4_DRIVER", "fuse4fs")
    extra = ""
    if drv == "fuse4fs":
        extra = " binary=%s" % f4test.fuse4fs_binary()
    return ["fuse4fs tests: F4_DRIVER=%s%s page_size=%d variants=%s" % (
        drv, extra, f4test.PAGE_SIZE,
        os.environ.get("F4_VARIANTS") or ",".join(f4test.DEFAULT_VARIANTS))]


def _explicitly_parametrized(metafunc, name):
    for m in metafunc.definition.iter_markers("parametrize"):
        names = m.args[0]
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",")]
        if name in names:
            return True
    return False


def pytest_generate_tests(metafunc):
    if "variant" not in metafunc.fixturenames:
        return
    if _explicitly_parametrized(metafunc, "variant"):
        return
    m = metafunc.definition.get_closest_marker("variants")
    names = list(m.args) if m else list(f4test.DEFAULT_VARIANTS)
    for n in names:
        if n not in f4test.ALL_VARIANTS:
            raise pytest.UsageError("%s: unknown variant %r" % (
                metafunc.definition.nodeid, n))
    metafunc.parametrize("variant", names, ids=names)


def _item_variant(item):
    cs = getattr(item, "callspec", None)
    return cs.params.get("variant") if cs else None


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session, config, items):
    # Before -m selects and before xdist reads the groups.
    for item in items:
        if _table_match(item, SERIAL_TESTS):
            item.add_marker(pytest.mark.serial)
        group = _table_match(item, XDIST_GROUPS)
        if group:
            item.add_marker(pytest.mark.xdist_group(group))
    drv = os.environ.get("F4_DRIVER", "fuse4fs")
    if drv not in f4test.DRIVERS:
        raise pytest.UsageError("F4_DRIVER=%r: must be one of %s" % (
            drv, ", ".join(f4test.DRIVERS)))
    only = [v for v in os.environ.get("F4_VARIANTS", "").split(",") if v]
    keep, drop = [], []
    for item in items:
        v = _item_variant(item)
        if drv == "kernel" and item.get_closest_marker("fuse_only"):
            drop.append(item)
        elif drv == "kernel" and v and not f4test.kernel_can_mount(v):
            drop.append(item)
        elif only and v and v not in only:
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep

    needs_mount = [i for i in items
                   if set(MOUNT_FIXTURES) & set(getattr(i, "fixturenames", ()))]
    if not needs_mount:
        return
    if os.geteuid() != 0:
        raise pytest.UsageError(
            "the fuse4fs integration tests mount file systems and need root")
    if drv == "fuse4fs":
        b = f4test.fuse4fs_binary()
        if not (os.path.isfile(b) and os.access(b, os.X_OK)):
            raise pytest.UsageError(
                "F4_DRIVER=fuse4fs but the fuse4fs binary %s is missing or not "
                "executable: build it (./configure && make) or point F4_BIN at "
                "it; %d selected tests need it.  (F4_DRIVER=kernel runs the "
                "suite against the kernel's ext4.)" % (b, len(needs_mount)))
    elif drv == "fuse2fs" and not shutil.which("fuse2fs"):
        raise pytest.UsageError("F4_DRIVER=fuse2fs but fuse2fs is not installed")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "_f4_rep_" + rep.when, rep)


def pytest_sessionfinish(session, exitstatus):
    """Nothing may survive the session: sweep mounts and daemons."""
    left = []
    for fsobj in list(_session["live"]):
        what = fsobj.force_cleanup()
        if what:
            left.append("%r: %s" % (fsobj, what))
    base = _session["base"]
    if base:
        for e in f4test.mountinfo():
            if e[0].startswith(base + "/"):
                f4test.umount(e[0], lazy=True)
                left.append("stale mount %s lazily unmounted" % e[0])
        try:
            os.rmdir(base)
        except OSError:
            pass
    if left:
        sys.stderr.write("\nfuse4fs harness: cleaned up at session end:\n  " +
                         "\n  ".join(left) + "\n")


# ---------------------------------------------------------------------------
# fixtures

@pytest.fixture(scope="session")
def driver():
    return f4test.driver()


def _base_dir():
    if _session["base"] is None:
        parent = os.environ.get("F4_TMPDIR", "/tmp")
        base = tempfile.mkdtemp(prefix="f4test-", dir=parent)
        os.chmod(base, 0o755)       # other users must reach the mounts
        _session["base"] = base
    return _session["base"]


@pytest.fixture
def workdir(request):
    # Short paths: the superblock keeps only 63 bytes of the last mount
    # point, and the lifecycle tests compare it.
    name = request.node.name
    if name.startswith("test_"):
        name = name[5:]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:24]
    _session["count"] = _session.get("count", 0) + 1
    d = os.path.join(_base_dir(), "%d-%s" % (_session["count"], safe))
    os.mkdir(d, 0o755)
    os.chmod(d, 0o755)
    yield d
    failed = any(getattr(request.node, "_f4_rep_" + w, None) is not None and
                 getattr(request.node, "_f4_rep_" + w).failed
                 for w in ("setup", "call"))
    if os.environ.get("F4_KEEP") == "1" or failed or \
            any(f4test.is_mounted(os.path.join(d, x)) for x in os.listdir(d)):
        if failed:
            sys.stderr.write("\n[f4test] kept %s for inspection\n" % d)
        return
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def mount_opts(request):
    m = request.node.get_closest_marker("mount_opts")
    return tuple(m.args) if m else ()


def _image_params(request):
    m = request.node.get_closest_marker("image_size")
    size = f4test.parse_size(m.args[0]) if m else f4test.DEFAULT_IMAGE_SIZE
    m = request.node.get_closest_marker("mkfs_opts")
    extra = list(m.args) if m else []
    return size, extra


class _Watchdog:
    """Kills FUSE daemons of a test that runs too long, so that blocked
    system calls return (ENOTCONN) and the test fails instead of hanging."""

    def __init__(self, request):
        m = request.node.get_closest_marker("timeout")
        self.seconds = float(m.args[0]) if m else float(
            os.environ.get("F4_TIMEOUT", "300"))
        self.fss = []
        self.fired = False
        self.timer = threading.Timer(self.seconds, self.fire)
        self.timer.daemon = True
        self.timer.start()

    def fire(self):
        self.fired = True
        sys.stderr.write("\n[f4test] watchdog: test exceeded %.0f s; stacks:\n"
                         % self.seconds)
        faulthandler.dump_traceback(all_threads=True)
        for f in self.fss:
            if f.proc is not None:
                sys.stderr.write("[f4test] killing daemon pid %d (%s)\n" % (
                    f.proc.pid, f.mnt))
                try:
                    os.killpg(f.proc.pid, 9)
                except OSError:
                    pass

    def cancel(self):
        self.timer.cancel()


def _watchdog(request):
    w = getattr(request.node, "_f4_watchdog", None)
    if w is None:
        w = _Watchdog(request)
        request.node._f4_watchdog = w
        request.addfinalizer(w.cancel)
    return w


def _new_fs(request, workdir, variant, drv, opts, name):
    size, extra = _image_params(request)
    fsobj = f4test.FS(workdir, variant, drv=drv, size=size, mkfs_extra=extra,
                      opts=opts, name=name)
    _watchdog(request).fss.append(fsobj)
    _session["live"].append(fsobj)
    return fsobj


def _teardown_fs(request, fsobj):
    problems = []
    try:
        try:
            fsobj.unmount()
        except Exception as e:       # noqa: BLE001 - report, then clean up
            problems.append("unmount: %s" % e)
        left = fsobj.force_cleanup()
        if left:
            problems.append("teardown had to force: %s" % left)
        call = getattr(request.node, "_f4_rep_call", None)
        if fsobj.leaked_fds and call is not None and call.passed:
            problems.append("the test left files open below the mount "
                            "(closed by the harness): %s" % fsobj.leaked_fds)
        w = getattr(request.node, "_f4_watchdog", None)
        if w is not None and w.fired:
            problems.append("watchdog fired after %.0f s" % w.seconds)
        # e2fsck also after a failed unmount (as long as nothing is left
        # mounted): its verdict helps to tell what went wrong.
        if os.path.exists(fsobj.image) and not f4test.is_mounted(fsobj.mnt):
            try:
                fsobj.fsck()
            except AssertionError as e:
                problems.append(str(e))
    finally:
        if fsobj in _session["live"]:
            _session["live"].remove(fsobj)
    if problems:
        pytest.fail("%r:\n%s" % (fsobj, "\n".join(problems)), pytrace=False)


def _require_driver(drv):
    if drv == "fuse4fs":
        b = f4test.fuse4fs_binary()
        if not os.access(b, os.X_OK):
            pytest.fail("fuse4fs binary %s is missing or not executable (build "
                        "it or set F4_BIN)" % b, pytrace=False)


@pytest.fixture
def fs_unmounted(request, workdir, variant, mount_opts):
    drv = f4test.driver()
    _require_driver(drv)
    fsobj = _new_fs(request, workdir, variant, drv, mount_opts, "fs")
    fsobj.mkfs()
    yield fsobj
    _teardown_fs(request, fsobj)


@pytest.fixture
def fs(request, workdir, variant, mount_opts):
    drv = f4test.driver()
    _require_driver(drv)
    fsobj = _new_fs(request, workdir, variant, drv, mount_opts, "fs")
    fsobj.mkfs()
    try:
        fsobj.mount()
    except Exception:
        fsobj.force_cleanup()
        _session["live"].remove(fsobj)
        raise
    yield fsobj
    _teardown_fs(request, fsobj)


@pytest.fixture
def kernel_ext4(request, workdir, variant, mount_opts):
    if not f4test.kernel_can_mount(variant):
        pytest.skip("kernel ext4 cannot mount %s (%d-byte blocks on %d-byte "
                    "pages): no kernel reference" % (
                        variant, f4test.variant_blocksize(variant),
                        f4test.PAGE_SIZE))
    fsobj = _new_fs(request, workdir, variant, "kernel", mount_opts, "kern")
    fsobj.mkfs()
    try:
        fsobj.mount()
    except Exception:
        fsobj.force_cleanup()
        _session["live"].remove(fsobj)
        raise
    yield fsobj
    _teardown_fs(request, fsobj)


@pytest.fixture
def fs_factory(request, workdir):
    made = []

    def make(variant, driver=None, image=None, name=None, opts=(),
             mount=True):
        drv = driver or f4test.driver()
        _require_driver(drv)
        fsobj = _new_fs(request, workdir, variant, drv, opts,
                        name or "x%d" % len(made))
        if image is not None:
            fsobj.image = image
        else:
            fsobj.mkfs()
        made.append(fsobj)
        if mount:
            fsobj.mount()
        return fsobj

    yield make
    errors = []
    for fsobj in reversed(made):
        try:
            _teardown_fs(request, fsobj)
        except pytest.fail.Exception as e:
            errors.append(str(e))
    if errors:
        pytest.fail("\n".join(errors), pytrace=False)
