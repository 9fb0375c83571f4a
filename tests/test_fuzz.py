# SPDX-License-Identifier: GPL-2.0
"""The core fuzzer (fuzz/): build it, replay every kept crash and
regression input, and fuzz from the seed corpus for a while.

Environment:
  F4_FUZZ_SECONDS  how long test_fuzz_from_seeds fuzzes (default 60;
                   make check-long fuzzes longer)
  F4_FUZZ_KEEP     a directory to copy a failing run's log and input to
                   (default: the pytest tmp_path, printed on failure)

Nothing here is skipped: without clang (and its libFuzzer runtime) the
build fails and so do the tests, as CI installs clang.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FUZZ = REPO / "fuzz"
FUZZER = FUZZ / "f4fuzz"
REPLAY = FUZZ / "f4fuzz-replay"
SEEDS = FUZZ / "seeds"
KEPT_DIRS = [FUZZ / "crashes", FUZZ / "regressions"]

# What the replay and the fuzzer must never print.
SANITIZER_RE = re.compile(
    r"ERROR: (AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer)|"
    r"runtime error:|SUMMARY: (AddressSanitizer|UndefinedBehaviorSanitizer|"
    r"LeakSanitizer|libFuzzer)|==ERROR: libFuzzer|"
    r"libext2fs complained about what the core passed")

SAN_ENV = {
    # full stacks through the (frame-pointer-less) libext2fs
    "ASAN_OPTIONS": "detect_leaks=1:fast_unwind_on_malloc=0:"
                    "abort_on_error=0:symbolize=1",
    "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
}


def _sources():
    srcs = [FUZZ / "f4fuzz.c", FUZZ / "build.sh", REPO / "Makefile.in"]
    srcs += sorted((REPO / "fuse4fs").glob("*.[ch]"))
    srcs += sorted((REPO / "lib" / "support").glob("*.[ch]"))
    return srcs


def _stale(binary):
    if not binary.exists():
        return True
    built = binary.stat().st_mtime
    return any(s.stat().st_mtime > built for s in _sources() if s.exists())


@pytest.fixture(scope="module")
def binaries():
    """fuzz/f4fuzz and fuzz/f4fuzz-replay, (re)built when older than any
    source.  A missing clang is a failure, not a skip."""
    if _stale(FUZZER) or _stale(REPLAY):
        env = {k: v for k, v in os.environ.items()
               if k not in ("F4FUZZ_SRC", "F4FUZZ_OUT")}
        res = subprocess.run(["sh", str(FUZZ / "build.sh"), "all"],
                             cwd=REPO, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True,
                             timeout=1800)
        assert res.returncode == 0, "fuzz/build.sh failed:\n" + res.stdout
    assert os.access(FUZZER, os.X_OK) and os.access(REPLAY, os.X_OK)
    return FUZZER, REPLAY


@pytest.fixture(scope="module")
def seed_dir(tmp_path_factory):
    """The committed seeds, or freshly made ones if there are none."""
    if SEEDS.is_dir() and any(SEEDS.iterdir()):
        return SEEDS
    out = tmp_path_factory.mktemp("seeds")
    res = subprocess.run(["sh", str(FUZZ / "make_seeds.sh"), str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, timeout=600)
    assert res.returncode == 0, "make_seeds.sh failed:\n" + res.stdout
    assert any(out.iterdir())
    return out


def _env():
    env = dict(os.environ)
    env.update(SAN_ENV)
    env.pop("F4FUZZ_COMERR_OK", None)
    return env


def _replay(replay, path, timeout=30):
    """Run one input; a hang is reported like a crash."""
    try:
        res = subprocess.run([str(replay), str(path)],
                             stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True,
                             errors="replace", env=_env(), timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = e.stdout or ""
        if isinstance(out, bytes):
            out = out.decode(errors="replace")
        return -1, "HANG: still running after %d s\n%s" % (timeout, out)
    return res.returncode, res.stdout


def _kept_inputs():
    files = []
    for d in KEPT_DIRS:
        if d.is_dir():
            files += sorted(p for p in d.iterdir()
                            if p.is_file() and not p.name.startswith(".")
                            and p.suffix not in (".txt", ".md"))
    return files


KEPT = _kept_inputs()


@pytest.mark.parametrize("path", KEPT, ids=[p.parent.name + "/" + p.name
                                           for p in KEPT])
def test_replay_kept_input(binaries, path):
    """Every crash ever found, and every regression input, runs clean."""
    rc, out = _replay(binaries[1], path)
    bad = SANITIZER_RE.search(out)
    assert rc == 0 and not bad, (
        "%s: exit %d\n%s" % (path.relative_to(REPO), rc, out[-20000:]))


def test_kept_dirs_exist():
    """Crash inputs are kept under fuzz/crashes (named after the bug),
    regression inputs under fuzz/regressions."""
    for d in KEPT_DIRS:
        assert d.is_dir(), "%s is missing" % d


def test_seeds_replay_clean(binaries, seed_dir):
    """The seed images themselves mount, walk, run their programs and
    unmount without a sanitizer report."""
    seeds = sorted(p for p in seed_dir.iterdir() if p.is_file())
    assert len(seeds) >= 10
    res = subprocess.run([str(binaries[1])] + [str(s) for s in seeds],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, errors="replace", env=_env(),
                         timeout=600)
    assert res.returncode == 0 and not SANITIZER_RE.search(res.stdout), \
        res.stdout[-20000:]
    assert "%d inputs ran" % len(seeds) in res.stdout


def test_pack_roundtrip(binaries, tmp_path):
    """f4pack.py and the harness agree on the input format: an image
    packed and unpacked again (f4fuzz-replay -x) is the same image, up to
    the harness's superblock fixups (none for this plain ext2 image)."""
    img = tmp_path / "plain.img"
    with open(img, "wb") as fp:
        fp.truncate(256 * 1024)
    subprocess.run(["mke2fs", "-q", "-F", "-b", "1024", "-O",
                    "^resize_inode", str(img)], check=True,
                   env=dict(os.environ, MKE2FS_CONFIG="/dev/null",
                            PATH=os.environ.get("PATH", "") +
                            ":/sbin:/usr/sbin"),
                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    packed = tmp_path / "plain.in"
    subprocess.run(["/usr/bin/python3", str(FUZZ / "f4pack.py"), str(img),
                    str(packed)], check=True)
    assert packed.stat().st_size < img.stat().st_size // 4
    out = tmp_path / "unpacked.img"
    subprocess.run([str(binaries[1]), "-x", str(packed), str(out)],
                   check=True, env=_env())
    assert out.read_bytes() == img.read_bytes()


def _stats(log):
    """The last libFuzzer status line and the final stat:: values."""
    status = [l for l in log.splitlines() if re.match(r"#\d+\s", l)]
    stats = dict(re.findall(r"^stat::(\w+):\s+(\d+)", log, re.M))
    return (status[-1] if status else ""), stats


def test_fuzz_from_seeds(binaries, seed_dir, tmp_path):
    """Fuzz for F4_FUZZ_SECONDS from the seeds: no crash, leak, timeout,
    sanitizer report or out-of-memory."""
    seconds = int(os.environ.get("F4_FUZZ_SECONDS", "60"))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    cmd = [str(binaries[0]), "-timeout=10", "-rss_limit_mb=2048",
           "-max_len=262144", "-max_total_time=%d" % seconds,
           "-print_final_stats=1", "-artifact_prefix=%s/" % artifacts,
           str(corpus), str(seed_dir)]
    env = _env()
    # libFuzzer's own leak check; fast unwinding keeps the rate up
    env["ASAN_OPTIONS"] = "detect_leaks=1:symbolize=1"
    res = subprocess.run(cmd, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True,
                         errors="replace", env=env,
                         timeout=seconds + 900)
    log = res.stdout
    status, stats = _stats(log)
    execs = int(stats.get("number_of_executed_units", "0"))
    sys.stdout.write("\nlibFuzzer: %s\nlibFuzzer: %d executions in %d s, "
                     "%s exec/s, %s new units, peak rss %s MB\n" % (
                         status, execs, seconds,
                         stats.get("average_exec_per_sec", "?"),
                         stats.get("new_units_added", "?"),
                         stats.get("peak_rss_mb", "?")))
    found = sorted(artifacts.iterdir())
    if res.returncode != 0 or found or SANITIZER_RE.search(log):
        keep = Path(os.environ.get("F4_FUZZ_KEEP", str(tmp_path)))
        keep.mkdir(parents=True, exist_ok=True)
        (keep / "fuzz.log").write_text(log)
        for a in found:
            if keep != tmp_path:
                shutil.copy(a, keep / a.name)
        pytest.fail("the fuzzer found something (exit %d); inputs: %s; "
                    "log and inputs kept in %s (replay an input with "
                    "fuzz/f4fuzz-replay, then keep it under fuzz/crashes/)"
                    "\n%s" % (res.returncode,
                              ", ".join(a.name for a in found) or "none",
                              keep, log[-15000:]))
    # at the least, every seed ran once
    nseeds = sum(1 for p in seed_dir.iterdir() if p.is_file())
    assert execs >= nseeds, log[-5000:]
