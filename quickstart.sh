#!/bin/bash
# fuse4fs quick start, for a fresh Debian 12 machine, as root:
#   1. install the build and test dependencies (apt-get),
#   2. build fuse4fs (autoreconf, configure, make),
#   3. make a 256 MiB ext4 demo image demo/demo.img and mount it on demo/mnt.
# It also makes /dev/fuse 0666 where nothing (udev) has, as .ci/run does, so
# that the tests of mounts by ordinary users can pass; "--dev-fuse-only" does
# just that.
# Safe to run again: it rebuilds what changed, keeps an existing demo image,
# and says so if the demo is already mounted.  Then run the tests with
# "make check" (what CI runs).
set -euo pipefail

cd "$(dirname "$(readlink -f "$0")")"
top=$(pwd)

# The packages the build and the test suite need (.ci/run installs the same).
PACKAGES=(
	build-essential autoconf automake pkg-config
	libfuse3-dev fuse3 libext2fs-dev comerr-dev uuid-dev
	e2fsprogs python3-pytest attr acl fuse2fs fio
	util-linux fdisk gdisk procps man-db groff-base
)

say() { printf 'quickstart: %s\n' "$*"; }
die() { printf 'quickstart: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run me as root (sudo ./quickstart.sh): I install packages and mount"

# On a normal Debian system udev makes /dev/fuse 0666, so that users can
# mount through fusermount3; a container without udev keeps the kernel's
# 0600, and "make check" would fail its unprivileged-mount tests for the
# machine's sake.  F4_DEV_FUSE names another device node (for the tests).
dev_fuse=${F4_DEV_FUSE:-/dev/fuse}
if [ -c "$dev_fuse" ] && [ "$(stat -c %a "$dev_fuse")" != 666 ]; then
	say "$dev_fuse is $(stat -c %a "$dev_fuse") (no udev here?): making it 0666 as udev would, so that users can mount"
	chmod 0666 "$dev_fuse"
fi
[ "${1:-}" != --dev-fuse-only ] || exit 0
command -v apt-get >/dev/null || die "this needs apt-get (Debian 12)"

say "installing build and test dependencies with apt-get"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null

if [ ! -x configure ] || [ configure.ac -nt configure ]; then
	say "autoreconf -fi"
	autoreconf -fi
fi
if [ ! -f Makefile ] || [ configure -nt config.status ]; then
	say "./configure"
	./configure >/dev/null
fi
say "make -j2"
make -j2 >/dev/null
bin=$top/fuse4fs/fuse4fs
say "built $("$bin" --version) as ./fuse4fs/fuse4fs"

demo=$top/demo
img=$demo/demo.img
mnt=$demo/mnt
mkdir -p "$mnt"

if mountpoint -q "$mnt"; then
	say "the demo is already mounted:"
	findmnt --mountpoint "$mnt"
	say "unmount it with: umount ./demo/mnt"
	exit 0
fi

fresh=0
if [ ! -f "$img" ]; then
	say "making the demo image ./demo/demo.img (256 MiB, ext4)"
	mke2fs -q -F -t ext4 -L fuse4fs-demo "$img" 256M >/dev/null
	fresh=1
else
	say "using the existing demo image ./demo/demo.img"
fi

say "mounting: ./fuse4fs/fuse4fs ./demo/demo.img ./demo/mnt"
"$bin" "$img" "$mnt"
if [ "$fresh" = 1 ]; then
	echo "Hello from fuse4fs." >"$mnt/hello.txt"
	ln "$mnt/hello.txt" "$mnt/hello-link.txt"
fi

echo
findmnt --mountpoint "$mnt"
echo
ls -li "$mnt"
echo
say "demo/demo.img is mounted read-write on ./demo/mnt by fuse4fs."
say "(hello.txt and hello-link.txt are hard links: one inode number, one kernel inode.)"
say "unmount:   umount ./demo/mnt"
say "run tests: make check          (root; the full suite takes a while)"
say "read:      man -l fuse4fs/fuse4fs.1"
