# SPDX-License-Identifier: GPL-2.0
"""A bounded run of the differential namespace and permission fuzzer
(tests/tools/difffuzz.py): seeded random sequences of create, mkdir,
mknod, symlink, link, unlink, rmdir, rename (plain, NOREPLACE, EXCHANGE,
into and out of hashed directories), chmod with setuid/setgid/sticky,
chown, utimensat, truncate, opens of every access mode, execve and
xattr calls, as several users (one with 70 supplementary groups), on
fuse4fs with allow_other in each mount variant and on kernel ext4 at the
same time.  Every result and, every 50 operations and at the end, the
two trees must agree, except for the tool's documented differences; both
images must pass e2fsck -fn.  A failure message carries the seed and the
reduced operation sequence.

Environment:
  F4_DIFFFUZZ_SEEDS  seeds per mount variant (default "1-3")
  F4_DIFFFUZZ_OPS    operations per sequence (default 300)

The long campaign is `make check-long` (tests/tools/difffuzz.py with a
time limit).
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "tools"))
import difffuzz  # noqa: E402

SEEDS = os.environ.get("F4_DIFFFUZZ_SEEDS", "1-3")
OPS = int(os.environ.get("F4_DIFFFUZZ_OPS", "300"))
# Every mount variant on ext4; two more file-system variants on the mount
# variants most unlike each other (1 KiB blocks: deeper hashed
# directories; ext3: block maps).
CASES = [(m, "ext4") for m in sorted(difffuzz.MOUNT_VARIANTS)] + \
    [("own", "ext4-1k"), ("dpwb", "ext4-1k"), ("dp", "ext3")]


@pytest.mark.fuse_only
@pytest.mark.timeout(900)
@pytest.mark.parametrize("mount_variant,fs_variant", CASES,
                         ids=["%s-%s" % c for c in CASES])
def test_difffuzz(workdir, mount_variant, fs_variant):
    out = []
    rc = difffuzz.main(["--seeds", SEEDS, "--ops", str(OPS),
                        "--mount-variants", mount_variant,
                        "--fs-variants", fs_variant,
                        "--workdir", workdir, "--keep-going",
                        "--reduce-budget", "30"], out=out)
    assert rc == 0, "difffuzz found differences between fuse4fs (%s) and " \
        "kernel ext4 (%s):\n%s" % (mount_variant, fs_variant, "\n".join(out))
