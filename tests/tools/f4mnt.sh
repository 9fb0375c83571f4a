#!/bin/sh
# f4mnt.sh - mount, remount and recreate one test image for f4fsx.
#
#   f4mnt.sh init STATE DRIVER IMAGE MNT "MKE2FS ARGS" [MOUNT OPTS]
#   f4mnt.sh mount|umount|fsck|remount|fresh|cleanup STATE
#
# STATE is a directory holding the configuration (conf) and the daemon's
# pid, exit status and logs.  DRIVER is fuse4fs ($F4_BIN or the tree's
# binary) or kernel (mount -t ext4 -o loop).  umount waits for the fuse4fs
# daemon to exit and fails unless it exited 0 (a normal exit also writes
# gcov counts); remount is umount, `e2fsck -fn`, mount; fresh unmounts
# without checking, runs mke2fs again and mounts.  f4fsx runs remount and
# fresh as its --remount-cmd and --fresh-cmd.
set -u
here=$(cd "$(dirname "$0")" && pwd)
cmd=${1:?usage: f4mnt.sh init|mount|umount|fsck|remount|fresh|cleanup STATE}
st=${2:?missing STATE directory}

say() { echo "f4mnt: $*" >&2; }

if [ "$cmd" = init ]; then
	mkdir -p "$st"
	bin=${F4_BIN:-$here/../../fuse4fs/fuse4fs}
	{
		printf 'DRIVER=%s\n' "$3"
		printf 'IMG=%s\n' "$4"
		printf 'MNT=%s\n' "$5"
		printf 'MKFS="%s"\n' "$6"
		printf 'OPTS=%s\n' "${7:-}"
		printf 'BIN=%s\n' "$bin"
	} >"$st/conf"
	mkdir -p "$5"
	exit 0
fi
. "$st/conf"

mounted() {
	awk -v m="$MNT" '$5 == m { f = 1 } END { exit !f }' /proc/self/mountinfo
}

do_mount() {
	n=$(($(cat "$st/nmounts" 2>/dev/null || echo 0) + 1))
	echo $n >"$st/nmounts"
	if [ "$DRIVER" = kernel ]; then
		mount -t ext4 -o loop "$IMG" "$MNT" || return 1
		return 0
	fi
	rm -f "$st/rc"
	set -- "$BIN"
	[ -n "$OPTS" ] && set -- "$@" -o "$OPTS"
	# The subshell outlives the daemon and records its exit status.
	( setsid "$@" "$IMG" "$MNT" -f </dev/null >"$st/daemon.$n.log" 2>&1
	  echo $? >"$st/rc" ) </dev/null >/dev/null 2>&1 &
	i=0
	while ! mounted; do
		if [ -f "$st/rc" ]; then
			say "$BIN exited $(cat "$st/rc") before mounting $MNT:"
			tail -20 "$st/daemon.$n.log" >&2
			return 1
		fi
		i=$((i + 1))
		[ $i -gt 300 ] && { say "$MNT: no mount after 15 s"; return 1; }
		sleep 0.05
	done
	return 0
}

do_umount() {
	mounted || return 0
	umount "$MNT" || { say "umount $MNT failed"; return 1; }
	[ "$DRIVER" = kernel ] && return 0
	i=0
	while [ ! -s "$st/rc" ]; do
		i=$((i + 1))
		[ $i -gt 1200 ] && { say "daemon still running 60 s after umount"; return 1; }
		sleep 0.05
	done
	rc=$(cat "$st/rc")
	if [ "$rc" != 0 ]; then
		say "fuse4fs exited $rc after umount of $MNT:"
		tail -20 "$st/daemon.$(cat "$st/nmounts").log" >&2
		return 1
	fi
	return 0
}

do_fsck() {
	out=$(e2fsck -fn "$IMG" 2>&1)
	rc=$?
	if [ $rc != 0 ]; then
		say "e2fsck -fn $IMG exited $rc:"
		echo "$out" | tail -40 >&2
		return 1
	fi
	return 0
}

# Best effort: never leave a mount or a daemon behind.
do_cleanup() {
	if mounted && ! umount "$MNT" 2>/dev/null; then
		minor=$(awk -v m="$MNT" '$5 == m { split($3, a, ":"); print a[2] }' \
			/proc/self/mountinfo)
		[ -n "$minor" ] && [ -e /sys/fs/fuse/connections/$minor/abort ] &&
			echo 1 >/sys/fs/fuse/connections/$minor/abort
		umount -l "$MNT" 2>/dev/null
	fi
	i=0
	while [ "$DRIVER" != kernel ] && [ -f "$st/nmounts" ] &&
	      [ ! -s "$st/rc" ] && [ $i -lt 200 ]; do
		i=$((i + 1))
		sleep 0.05
	done
	return 0
}

case $cmd in
mount)		do_mount ;;
umount)		do_umount ;;
fsck)		do_fsck ;;
remount)	do_umount && do_fsck && do_mount ;;
fresh)
	do_umount || do_cleanup
	# shellcheck disable=SC2086
	mke2fs -q -F $MKFS "$IMG" >/dev/null && do_mount ;;
cleanup)	do_cleanup ;;
*)		say "unknown command $cmd"; exit 2 ;;
esac
