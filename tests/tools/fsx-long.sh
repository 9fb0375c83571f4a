#!/bin/sh
# fsx-long.sh - long runs of f4fsx on fuse4fs, per file system variant.
#
#   fsx-long.sh [-o OPS] [-s SEEDS] [-v VARIANTS] [-x OPS_OFF] [-r] [-d WORKDIR]
#
#   -o OPS      ops per seed and variant (default 100000)
#   -s SEEDS    seeds, comma separated or FIRST-LAST (default 1-2)
#   -v VARIANTS comma separated from ext4-4k ext4-1k ext3-4k ext2-4k, each
#               optionally suffixed +wbc for -o writeback_cache (default:
#               all four, with and without writeback_cache)
#   -x LIST     ops to leave out (f4fsx -x), e.g. pburst while the fallocate
#               defect of issue 15 is unfixed
#   -r          on a failure, reduce the op sequence (f4fsx --reduce)
#   -d DIR      work directory (default /tmp/fsx-long.$$)
#
# Each run: a fresh 128 MiB image, two files, random ops with a remount
# (umount, e2fsck -fn, mount) about every 300 ops, a final unmount and
# e2fsck -fn.  Prints one line per run and a total; exit 1 if any failed.
# The fuse4fs binary is $F4_BIN or the tree's.
set -u
here=$(cd "$(dirname "$0")" && pwd)
fsx=$here/f4fsx
mnt_sh=$here/f4mnt.sh
ops=100000
seeds=1-2
variants=ext4-4k,ext4-1k,ext3-4k,ext2-4k,ext4-4k+wbc,ext4-1k+wbc,ext3-4k+wbc,ext2-4k+wbc
off=
reduce=
work=/tmp/fsx-long.$$
while getopts o:s:v:x:rd: c; do
	case $c in
	o) ops=$OPTARG ;;
	s) seeds=$OPTARG ;;
	v) variants=$OPTARG ;;
	x) off=$OPTARG ;;
	r) reduce=1 ;;
	d) work=$OPTARG ;;
	*) sed -n '2,20p' "$0"; exit 2 ;;
	esac
done
[ -x "$fsx" ] || { echo "fsx-long: $fsx not built (make tools)" >&2; exit 2; }
case $seeds in
*-*) seeds=$(seq "${seeds%-*}" "${seeds#*-}") ;;
*) seeds=$(echo "$seeds" | tr , ' ') ;;
esac
mkdir -p "$work"
total=0
failed=0
for v in $(echo "$variants" | tr , ' '); do
	base=${v%+wbc}
	opts=
	[ "$base" != "$v" ] && opts=writeback_cache
	fstype=${base%-*}
	bs=${base#*-}
	bs=${bs%k}
	bs=$((bs * 1024))
	# What fuse4fs refuses with EOPNOTSUPP (documented in doc/HACKING.md):
	# collapse and insert everywhere, and every mode but punch in files
	# without extents, as kernel ext4 does.
	unsup=collapse,insert
	[ "$fstype" != ext4 ] && unsup=falloc,fkeep,zero,zerokeep,collapse,insert
	for seed in $seeds; do
		d=$work/$v.$seed
		rm -rf "$d"
		mkdir -p "$d"
		truncate -s 128M "$d/img"
		"$mnt_sh" init "$d/st" fuse4fs "$d/img" "$d/mnt" \
			"-t $fstype -b $bs" "$opts"
		t0=$(date +%s)
		echo "fsx-long: $v seed $seed: $ops ops ..."
		set -- -S "$seed" -N "$ops" -f 2 -l 8m -o 256k -b "$bs" \
			-U "$unsup" -M 1000 \
			--remount-cmd "$mnt_sh remount $d/st" \
			--fresh-cmd "$mnt_sh fresh $d/st" \
			--reduce-out "$d/reduced.log" -L "$d/run.log"
		[ -n "$off" ] && set -- "$@" -x "$off"
		[ -n "$reduce" ] && set -- "$@" --reduce
		if "$mnt_sh" fresh "$d/st" &&
		   nice "$fsx" "$@" "$d/mnt" >"$d/out" 2>&1 &&
		   "$mnt_sh" umount "$d/st" && "$mnt_sh" fsck "$d/st"; then
			echo "fsx-long: $v seed $seed: OK $ops ops in $(($(date +%s) - t0)) s"
			total=$((total + ops))
			rm -f "$d/img" "$d/run.log"
		else
			failed=$((failed + 1))
			echo "fsx-long: $v seed $seed: FAILED (kept in $d):"
			grep -m3 -E 'FAILURE|mismatch|difference|f4mnt' "$d/out"
			grep -A200 'REDUCED' "$d/out" | head -60
			"$mnt_sh" cleanup "$d/st"
		fi
	done
done
echo "fsx-long: $total ops passed; $failed run(s) failed"
[ $failed = 0 ]
