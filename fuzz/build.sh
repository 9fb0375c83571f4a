#!/bin/sh
# Build the fuse4fs core fuzzer (fuzz/f4fuzz, libFuzzer) and its plain
# replay driver (fuzz/f4fuzz-replay, no libFuzzer), both with ASan and
# UBSan.  UBSan findings abort (-fno-sanitize-recover), so they are
# reported like any crash instead of being printed and forgotten.
#
#   fuzz/build.sh [fuzzer|replay|all|coverage]     (default: all)
#
# "coverage" builds fuzz/f4fuzz-cov, the replay driver with clang source
# coverage and no sanitizers, to see what a corpus reaches:
#   LLVM_PROFILE_FILE=/tmp/f4-%p.profraw fuzz/f4fuzz-cov CORPUS/*
#   llvm-profdata merge -o f4.profdata /tmp/f4-*.profraw
#   llvm-cov report fuzz/f4fuzz-cov -instr-profile=f4.profdata
#
# Environment: CC (default clang), EXTRA_CFLAGS; F4FUZZ_SRC, a copy of the
# tree (config.h, Makefile.in, fuse4fs/, lib/) to build the core from
# instead of this one, e.g. with a local fix to fuzz past a known bug;
# F4FUZZ_OUT, where the binaries go (default: fuzz/).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
outdir=$(mkdir -p "${F4FUZZ_OUT:-$here}" && cd "${F4FUZZ_OUT:-$here}" && pwd)
harness=$here/f4fuzz.c
cd "${F4FUZZ_SRC:-$top}"
top=$(pwd)

what=${1:-all}
CC=${CC:-clang}

if ! command -v "$CC" >/dev/null 2>&1; then
	echo "build.sh: $CC not found (install clang and libclang-rt-dev)" >&2
	exit 1
fi
if [ ! -f config.h ]; then
	echo "build.sh: no config.h, running ./configure" >&2
	./configure >/dev/null
fi

# The core: every fuse4fs/*.c but the FUSE layer, plus lib/support/cache.c.
# The FUSE layer is what Makefile.in lists in FUSE_OBJS (fuse4fs.c, ops.c,
# session.c, and whatever joins them), so a new core file is picked up
# without touching this script.
fuse_objs=$(sed -n '/^FUSE_OBJS/,/[^\\]$/p' Makefile.in |
	    tr ' \t\\' '\n\n\n' | sed -n 's,^\(fuse4fs/.*\)\.o$,\1.c,p')
[ -n "$fuse_objs" ] ||
	fuse_objs="fuse4fs/fuse4fs.c fuse4fs/ops.c fuse4fs/session.c"
CORE="lib/support/cache.c"
for src in fuse4fs/*.c; do
	case " $(echo $fuse_objs) " in
	*" $src "*) ;;
	*) CORE="$CORE $src" ;;
	esac
done

# The core must not need FUSE: say so loudly if a core file includes a
# FUSE header, directly or through the FUSE layer's ops.h / mount.h.
fuse_inc='#include.*\(<fuse[_a-z]*\.h>\|<linux/fuse\.h>\|"ops\.h"\|"mount\.h"\)'
if grep -l "$fuse_inc" $CORE >/dev/null 2>&1; then
	echo "build.sh: core files include FUSE headers:" >&2
	grep -n "$fuse_inc" $CORE >&2
	exit 1
fi

DEPS_CFLAGS=$(pkg-config --cflags ext2fs com_err uuid)
DEPS_LIBS=$(pkg-config --libs ext2fs com_err uuid)
VERSION=$(sed -n 's/^#define PACKAGE_VERSION "\(.*\)"/\1/p' config.h)

CFLAGS="-g -O1 -fno-omit-frame-pointer -D_GNU_SOURCE \
	-DFUSE4FS_VERSION=\"${VERSION:-fuzz}\" \
	-I. -Ilib -I$top $DEPS_CFLAGS \
	-Wall -Wextra -Wno-unused-parameter -Wno-sign-compare \
	-Wno-missing-field-initializers ${EXTRA_CFLAGS:-}"
SAN="-fsanitize=address,undefined -fno-sanitize-recover=all"

build() {
	out=$1; shift
	# shellcheck disable=SC2086
	$CC $CFLAGS "$@" -o "$out.tmp" $CORE "$harness" $DEPS_LIBS -lpthread
	mv "$out.tmp" "$out"
	echo "built $out"
}

case "$what" in
fuzzer|all)
	build "$outdir/f4fuzz" -fsanitize=fuzzer $SAN ;;
esac
case "$what" in
replay|all)
	build "$outdir/f4fuzz-replay" -DF4FUZZ_REPLAY $SAN ;;
esac
case "$what" in
coverage)
	build "$outdir/f4fuzz-cov" -DF4FUZZ_REPLAY \
		-fprofile-instr-generate -fcoverage-mapping ;;
esac
case "$what" in
fuzzer|replay|all|coverage) ;;
*) echo "usage: $0 [fuzzer|replay|all|coverage]" >&2; exit 2 ;;
esac
