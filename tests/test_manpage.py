"""The man page against the binary.

fuse4fs/fuse4fs.1 (made by configure from fuse4fs.1.in) must render without
warnings, and the options it documents must be exactly those that
`fuse4fs --help` prints, which must be exactly those the parser accepts.
The option table in README.md is held to the same set.

The man page layout this relies on (see the comment at the top of
fuse4fs.1.in): in the OPTIONS section every option is a `.TP` paragraph
whose tag line is `.B NAME`, `.BI NAME= VALUE` or `.BR FLAG ", " FLAG`;
command-line flags begin with `\\-`, -o options don't.

Needs the built tree (./configure && make), not root.
"""

import os
import re
import shutil
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(REPO, "fuse4fs", "fuse4fs")
MAN = os.path.join(REPO, "fuse4fs", "fuse4fs.1")

# Paths that don't exist: an accepted option makes fuse4fs complain about
# these, an unknown one makes it complain about the option first.
NO_DEV = "/nonexistent/fuse4fs-image"
NO_MNT = "/nonexistent/fuse4fs-mnt"
MISSING_FILE = "No such file or directory"

# A valid sample value for each -o option that takes one, by name; a new
# option with a value needs an entry here (the test says so).
SAMPLES = {
    "errors": "remount-ro",
    "cache_size": "32m",
    "lockfile": "/nonexistent/fuse4fs.lock",
    "offset": "1048576",
    "partition": "1",
    "commit": "10",
    "threads": "2",
    "spin": "0",
    "fsname": "sample",
    "subtype": "sample",
}
# ... and for the patterns (x-*, comment=*): a name that matches them.
PATTERN_SAMPLES = {"x-*": "x-fuse4fs.test", "comment=*": "comment=fuse4fs-test"}

# Known parser bugs: option -> reason.  The test for these is expected to
# fail (strictly: once fixed it fails until the entry is removed here).
KNOWN_BUGS = {}


def run(args, **kw):
    return subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=30, **kw)


def need(path):
    if not os.path.exists(path):
        pytest.fail("%s is missing: build the tree first (autoreconf -fi && "
                    "./configure && make)" % path, pytrace=False)


# ---- parsing --------------------------------------------------------------

def roff_args(rest):
    """Split a request's arguments as troff does (double quotes group)."""
    args, cur, quoted, had = [], "", False, False
    i = 0
    while i < len(rest):
        c = rest[i]
        if c == '"':
            if quoted and rest[i + 1:i + 2] == '"':
                cur += '"'
                i += 2
                continue
            quoted = not quoted
            had = True
        elif c in " \t" and not quoted:
            if cur or had:
                args.append(cur)
            cur, had = "", False
        else:
            cur += c
        i += 1
    if cur or had:
        args.append(cur)
    return args


def roff_text(s):
    s = re.sub(r"\\f[BIRP]|\\f\(..|\\&|\\%", "", s)
    s = s.replace(r"\-", "-").replace(r"\(dq", '"').replace(r"\e", "\\")
    return s


def tag_text(line):
    """The text of a .TP tag line: '.BI errors= MODE' -> 'errors=MODE'."""
    m = re.match(r"^\.(B|I|BI|IB|BR|RB|IR|RI)(?:\s+(.*))?$", line)
    assert m, "OPTIONS: a .TP tag line must be .B/.BI/.BR ...: %r" % line
    args = roff_args(m.group(2) or "")
    joiner = " " if m.group(1) in ("B", "I") else ""
    return roff_text(joiner.join(args)).strip()


def man_options(path=MAN):
    """(general flags, -o options) documented in OPTIONS, in order."""
    with open(path) as fp:
        lines = fp.read().splitlines()
    flags, opts, in_options = [], [], False
    for i, line in enumerate(lines):
        if line.startswith(".SH"):
            in_options = roff_args(line[3:].strip()) == ["OPTIONS"]
            continue
        if not in_options or line.strip() != ".TP":
            continue
        text = tag_text(lines[i + 1])
        if text.startswith("-"):
            for part in text.split(", "):
                flags.append(part.split()[0])
        else:
            opts.append(text)
    return flags, opts


def help_text():
    need(BIN)
    r = run([BIN, "--help"])
    assert r.returncode == 0, r.stderr
    return r.stdout


def help_options(text=None):
    """(general flags, -o options as 'name' or 'name=ARG') from --help."""
    text = help_text() if text is None else text
    flags, opts, section = [], [], None
    for line in text.splitlines():
        if line.startswith("general options:"):
            section = "general"
            continue
        if section == "general":
            m = re.match(r"^    (-\S.*?)(\s{2,}(.*))?$", line)
            if m:
                for part in m.group(1).split(", "):
                    flags.append(part.split()[0])
                if (m.group(3) or "").strip() == "mount options:":
                    section = "mount"
            continue
        if section == "mount":
            if not line.strip():
                if opts:
                    break
                continue
            m = re.match(r"^    (\S+)\s", line)
            assert m, "unexpected --help line: %r" % line
            opts.append(m.group(1))
    return flags, opts


def opt_name(opt):
    """'errors=MODE' -> 'errors'; patterns ('x-*', 'comment=*') stay."""
    if opt.endswith("*"):
        return opt
    return opt.split("=", 1)[0]


def sample_arg(opt):
    """What to pass to -o to use `opt` with a valid value."""
    if opt in PATTERN_SAMPLES:
        return PATTERN_SAMPLES[opt]
    if opt.endswith("*"):
        pytest.fail("no sample for the option pattern %r: add one to "
                    "PATTERN_SAMPLES" % opt, pytrace=False)
    if "=" not in opt:
        return opt
    name = opt_name(opt)
    if name not in SAMPLES:
        pytest.fail("no sample value for -o %s: add one to SAMPLES in %s" % (
            opt, __file__), pytrace=False)
    return "%s=%s" % (name, SAMPLES[name])


def _params():
    # Collected from the binary; a missing binary becomes one failing case.
    try:
        opts = help_options(run([BIN, "--help"]).stdout)[1]
    except (OSError, AssertionError, subprocess.SubprocessError):
        opts = []
    if not opts:
        return [pytest.param(None, id="no-binary")]
    return [pytest.param(o, id=o, marks=pytest.mark.xfail(
        reason=KNOWN_BUGS[o], strict=True)) if o in KNOWN_BUGS else
        pytest.param(o, id=o) for o in opts]


# ---- rendering ------------------------------------------------------------

def test_generated_page_is_current():
    need(MAN)
    with open(MAN) as fp:
        page = fp.read()
    assert not re.search(r"@[A-Z_]+@", page), "unsubstituted @VARIABLE@"
    r = run([BIN, "--version"])
    assert r.returncode == 0
    version = r.stdout.split()[1]
    th = [l for l in page.splitlines() if l.startswith(".TH ")]
    assert len(th) == 1
    assert roff_args(th[0][4:])[:2] == ["FUSE4FS", "1"]
    assert "fuse4fs %s" % version in roff_args(th[0][4:]), th[0]


def test_groff_renders_without_warnings():
    need(MAN)
    r = run(["groff", "-man", "-ww", "-z", "-Tutf8", MAN])
    assert r.returncode == 0 and r.stderr == "", r.stderr


def test_man_renders_without_warnings():
    need(MAN)
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8", MANPAGER="cat",
               PAGER="cat")
    r = run(["man", "--warnings", "-E", "UTF-8", "-l", MAN], env=env)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    text = r.stdout
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS",
                    "MOUNT HELPER AND FSTAB", "PERMISSIONS", "JOURNAL",
                    "ORPHANS", "HARDLINKS", "EXIT STATUS", "FILES",
                    "BUGS AND LIMITATIONS", "SEE ALSO"):
        assert re.search(r"^%s$" % section, text, re.M), \
            "section %s missing from the rendered page" % section


def test_whatis_entry():
    """apropos/whatis (and lintian) read the NAME line with lexgrog."""
    need(MAN)
    if not shutil.which("lexgrog"):
        pytest.fail("lexgrog (man-db) is missing", pytrace=False)
    r = run(["lexgrog", MAN])
    assert r.returncode == 0, r.stdout + r.stderr
    assert '"fuse4fs - mount an ext2, ext3 or ext4 file system' in r.stdout


# ---- the option sets ------------------------------------------------------

def test_o_options_documented_equal_help():
    need(MAN)
    _, doc = man_options()
    _, helped = help_options()
    assert len(helped) > 20, "parsed too few options from --help: %r" % helped
    dups = sorted({o for o in doc if doc.count(o) > 1})
    assert not dups, "documented twice in the man page: %s" % dups
    assert not (set(helped) - set(doc)), \
        "in --help but not in the man page: %s" % sorted(set(helped) - set(doc))
    assert not (set(doc) - set(helped)), \
        "in the man page but not in --help: %s" % sorted(set(doc) - set(helped))


def test_general_flags_documented_equal_help():
    need(MAN)
    doc, _ = man_options()
    helped, _ = help_options()
    assert {"-h", "--help", "-o"} <= set(helped), helped
    assert sorted(doc) == sorted(helped)


def test_exit_statuses_documented():
    """The man page and --help give the same five exit statuses."""
    need(MAN)
    text = help_text()
    for n in range(5):
        assert "%d " % n in text.split("exit status:", 1)[1]
    with open(MAN) as fp:
        page = fp.read()
    section = page.split('.SH "EXIT STATUS"', 1)[1].split(".SH", 1)[0]
    assert re.findall(r"^\.B (\d)$", section, re.M) == list("01234")


@pytest.mark.parametrize("opt", _params())
def test_option_accepted(opt):
    """Every option --help lists gets past the parser: the error is about
    the missing image, not the option."""
    assert opt is not None, "fuse4fs --help printed no options (binary %s)" % BIN
    arg = sample_arg(opt)
    r = run([BIN, "-o", arg, NO_DEV, NO_MNT])
    assert r.returncode == 1, (arg, r.returncode, r.stderr)
    assert "unknown option" not in r.stderr, (arg, r.stderr)
    assert "invalid value" not in r.stderr, (arg, r.stderr)
    assert MISSING_FILE in r.stderr, (arg, r.stderr)


def test_valued_options_need_a_value():
    for opt in help_options()[1]:
        if "=" not in opt or opt.endswith("*"):
            continue
        r = run([BIN, "-o", opt_name(opt), NO_DEV, NO_MNT])
        assert r.returncode == 1 and "needs a value" in r.stderr, (opt, r.stderr)


@pytest.mark.parametrize("arg", ["no_such_option", "r", "rox", "xfoo",
                                 "allow_others", "errors", "ro,bogus=1"])
def test_made_up_option_rejected(arg):
    need(BIN)
    r = run([BIN, "-o", arg, NO_DEV, NO_MNT])
    assert r.returncode == 1, (arg, r.stderr)
    assert ("unknown option" in r.stderr or "needs a value" in r.stderr), \
        (arg, r.stderr)
    assert MISSING_FILE not in r.stderr


def test_made_up_flag_rejected():
    need(BIN)
    r = run([BIN, "-Q", NO_DEV, NO_MNT])
    assert r.returncode == 1 and "unknown option '-Q'" in r.stderr, r.stderr


def test_bad_value_rejected():
    need(BIN)
    for arg in ("errors=sometimes", "threads=0", "commit=601",
                "cache_size=1k", "partition=129", "spin=10001",
                "spin=fast"):
        r = run([BIN, "-o", arg, NO_DEV, NO_MNT])
        assert r.returncode == 1 and "invalid value" in r.stderr, (arg, r.stderr)


def test_conflicts_documented_are_refused():
    need(BIN)
    for arg in ("fakeroot,default_permissions", "fakeroot,kernel",
                "offset=4096,partition=1", "norecovery,rw"):
        r = run([BIN, "-o", arg, NO_DEV, NO_MNT])
        assert r.returncode == 1 and MISSING_FILE not in r.stderr, \
            (arg, r.stderr)


def test_sloppy_as_mount_helper(tmp_path):
    """As mount.fuse4fs, -s means sloppy: unknown -o options are ignored."""
    need(BIN)
    helper = tmp_path / "mount.fuse4fs"
    helper.symlink_to(BIN)
    r = run([str(helper), "-s", "-o", "ro,no_such_option", NO_DEV, NO_MNT])
    assert r.returncode == 1, r.stderr
    assert "ignoring unknown option 'no_such_option'" in r.stderr, r.stderr
    assert MISSING_FILE in r.stderr
    r = run([str(helper), "-o", "ro,no_such_option", NO_DEV, NO_MNT])
    assert r.returncode == 1 and "unknown option" in r.stderr, r.stderr


# ---- README ---------------------------------------------------------------

README = os.path.join(REPO, "README.md")


def readme_section(title):
    with open(README) as fp:
        text = fp.read()
    m = re.search(r"^## %s\n(.*?)(?=^## |\Z)" % re.escape(title), text,
                  re.M | re.S)
    assert m, "README.md has no section '## %s'" % title
    return m.group(1)


def test_readme_option_table_equals_help():
    section = readme_section("Options")
    rows = re.findall(r"^\| `([^`]+)` \|", section, re.M)
    _, helped = help_options()
    dups = sorted({o for o in rows if rows.count(o) > 1})
    assert not dups, "README lists twice: %s" % dups
    assert set(rows) == set(helped), (
        "README table vs --help: only in README %s, only in --help %s" % (
            sorted(set(rows) - set(helped)), sorted(set(helped) - set(rows))))


def test_readme_general_flags_equal_help():
    section = readme_section("Options")
    para = section.split("General flags:", 1)[1].split("\n\n", 1)[0]
    flags = {t.split()[0] for t in re.findall(r"`(-[^`]*)`", para)}
    helped, _ = help_options()
    assert flags == set(helped), (sorted(flags), sorted(helped))
