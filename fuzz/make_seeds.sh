#!/bin/sh
# Make the seed corpus for fuzz/f4fuzz: small ext2/3/4 images made by
# mke2fs -d and debugfs, one per feature set, packed with fuzz/f4pack.py
# (zeros left out) together with a random operation program.
#
#   fuzz/make_seeds.sh [OUTDIR]        (default: fuzz/seeds)
#
# Needs mke2fs, debugfs, e2fsck (e2fsprogs) and /usr/bin/python3.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/seeds}
PY=/usr/bin/python3
[ -x $PY ] || PY=python3
PATH=$PATH:/sbin:/usr/sbin
export MKE2FS_CONFIG=/dev/null		# only what we ask for
export E2FSPROGS_FAKE_TIME=1700000000	# reproducible timestamps
export SOURCE_DATE_EPOCH=1700000000

tmp=$(mktemp -d /tmp/f4seeds.XXXXXX)
trap 'rm -rf "$tmp"' EXIT INT TERM
mkdir -p "$out"

# ---- the tree every image starts from ------------------------------------
src=$tmp/src
mkdir -p "$src/a/b/c/d" "$src/big" "$src/empty"
printf 'hello, world\n' >"$src/hello.txt"
ln "$src/hello.txt" "$src/hardlink"
ln -s hello.txt "$src/fast-symlink"
ln -s "$(printf 'long/%.0s' $(seq 1 60))target" "$src/slow-symlink"
seq 1 900 | sed 's/^/line /' | head -c 5000 >"$src/five-k"
printf 'deep\n' >"$src/a/b/c/d/deep.txt"
printf 'b\n' >"$src/a/b/file-in-b"
mkfifo "$src/fifo"
mknod "$src/null" c 1 3 2>/dev/null || true
# 24 KiB with a marker per KiB: indirect blocks on 1k ext2/3
$PY -c '
import sys
with open(sys.argv[1], "wb") as f:
    for i in range(24):
        f.write(("block %d\n" % i).encode().ljust(1024, b"\0"))
' "$src/indirect"
# sparse: data at 5 MiB and near 70 MiB (double/triple indirect on 1k)
$PY -c '
import sys
with open(sys.argv[1], "wb") as f:
    f.seek(5 << 20); f.write(b"middle")
    f.seek((70 << 20) - 4); f.write(b"end\n")
' "$src/sparse"
# every other 4 KiB written: many extents (an extent tree on 1k blocks)
$PY -c '
import sys
with open(sys.argv[1], "wb") as f:
    for i in range(0, 120, 2):
        f.seek(i * 4096); f.write(("extent %d\n" % i).encode())
' "$src/frag"
# a directory big enough for an htree (after e2fsck -D); mostly hard
# links, so that its names cost no inodes in the seed
printf 'target of many links\n' >"$src/big/linked"
i=0
while [ $i -lt 180 ]; do
	if [ $((i % 20)) -eq 0 ]; then
		printf '%d\n' $i >"$src/big/an-entry-with-a-longish-name-$i"
	else
		ln "$src/big/linked" "$src/big/an-entry-with-a-longish-name-$i"
	fi
	i=$((i + 1))
done

# the same timestamps every time
find "$src" -exec touch -h -d @1700000000 {} +

# values for xattrs
$PY -c '
import struct, sys
# POSIX ACL xattr: version 2, then (tag, perm, id): USER_OBJ rw, USER 1000 r,
# GROUP_OBJ r, MASK r, OTHER r
e = [(1, 6, 0xffffffff), (2, 4, 1000), (4, 4, 0xffffffff),
     (0x10, 4, 0xffffffff), (0x20, 4, 0xffffffff)]
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<I", 2))
    for t, p, i in e:
        f.write(struct.pack("<HHI", t, p, i))
with open(sys.argv[2], "wb") as f:
    f.write(bytes((i * 7) & 0xff for i in range(500)))
with open(sys.argv[3], "wb") as f:
    f.write(bytes((i * 13 + 1) & 0xff or 1 for i in range(6000)))
' "$tmp/acl.bin" "$tmp/v500" "$tmp/v6000"
head -c 3072 /dev/zero | tr '\0' 'J' >"$tmp/jdata"

# ---- helpers -----------------------------------------------------------------

# mkimg NAME SIZE MKE2FS-OPTIONS...
mkimg() {
	name=$1 size=$2
	shift 2
	img=$tmp/$name.img
	rm -f "$img"
	mke2fs -q -F -U 0a8f5e1c-2c4b-4c1f-9d21-6d8e0c1f4f00 \
		-E root_owner=0:0,hash_seed=5e0b7d46-4b70-4b2d-8e8a-1d9a4e2b0c11 \
		-N ${INODES:-256} -d "$src" "$@" "$img" "$size" >"$tmp/mke2fs.log" 2>&1 || {
		cat "$tmp/mke2fs.log" >&2
		echo "make_seeds.sh: mke2fs $* failed" >&2
		exit 1
	}
}

dfs() {
	debugfs -w -f - "$img" >"$tmp/debugfs.log" 2>&1 || {
		cat "$tmp/debugfs.log" >&2
		exit 1
	}
}

add_xattrs() {
	dfs <<EOF
ea_set / user.root rootvalue
ea_set /hello.txt user.a A
ea_set -f $tmp/v500 /hello.txt trusted.big
ea_set -f $tmp/acl.bin /five-k system.posix_acl_access
ea_set -f $tmp/acl.bin /a system.posix_acl_default
ea_set /a security.selinux system_u:object_r:etc_t:s0
EOF
}

# hash-index every directory of more than one block
index_dirs() {
	e2fsck -fyD "$img" >/dev/null 2>&1 || [ $? -le 1 ]
}

# unlinked-but-open files: an orphan chain (s_last_orphan, i_dtime links),
# one to delete and one to truncate (nlink 1, size shorter than blocks)
make_orphans() {
	i1=$(debugfs -R "stat /five-k" "$img" 2>/dev/null |
	     sed -n 's/^Inode: \([0-9]*\).*/\1/p')
	i2=$(debugfs -R "stat /indirect" "$img" 2>/dev/null |
	     sed -n 's/^Inode: \([0-9]*\).*/\1/p')
	dfs <<EOF
unlink /five-k
sif <$i1> links_count 0
sif <$i1> dtime $i2
sif <$i2> size 1500
ssv last_orphan $i1
EOF
}

# a journal with committed transactions still to replay
journal_txns() {
	dfs <<EOF
jo $1
jw -b 60,61,62 $tmp/jdata
jw -b 63 -r 60 $tmp/jdata
jc
EOF
}

# pack NAME FLAGS0 FLAGS1 [SEED [SALT]]: one input from the current image
# (the salt's low two bits + 1 is the partition a 0x80 flags1 mounts)
pack() {
	$PY "$here/f4pack.py" --flags0 "$2" --flags1 "$3" --salt "${5:-7}" \
		--random-ops 240 --seed "$1-${4:-0}" "$img" "$out/$1"
}

# partitioned LABEL: put the current image (768 KiB at most) in partition 1
# of a 1 MiB disk with an MBR ("dos") or GPT partition table
partitioned() {
	disk=$tmp/disk-$1.img
	rm -f "$disk"
	truncate -s 1M "$disk"
	if [ "$1" = gpt ]; then
		sgdisk -a 1 -n 1:128:1663 -t 1:8300 "$disk" >/dev/null 2>&1 || {
			echo "make_seeds.sh: sgdisk failed" >&2
			exit 1
		}
	else
		echo 'start=128, size=1536, type=83' |
			sfdisk -q --label dos "$disk" >/dev/null 2>&1 || {
			echo "make_seeds.sh: sfdisk failed" >&2
			exit 1
		}
	fi
	dd if="$img" of="$disk" bs=512 seek=128 conv=notrunc status=none
	img=$disk
}

# Flag bits (fuzz/f4fuzz.c): flags0 1 ro, 2 drop metadata_csum,
# 4 norecovery, 0x18 errors=, 0x20 acl, 0x40 small cache, 0x80 non-root;
# flags1 1 sync, 2 dirsync, 4 noatime, 8 strictatime, 0x10 minixdf,
# 0x20 root without fakeroot, 0x40 readdirplus walk, 0x80 partition.

# ---- the images -------------------------------------------------------------

mkimg ext2-1k 512k -b 1024 -I 128 -O filetype,sparse_super,large_file,ext_attr,resize_inode,^dir_index
add_xattrs
pack ext2-1k 0 0
pack ext2-1k-user 0xa0 0x40 1

mkimg ext2-4k-htree 1m -b 4096 -O dir_index,filetype,sparse_super,large_file,ext_attr
add_xattrs
index_dirs
pack ext2-4k-htree 0 0x02

mkimg ext3-1k 4m -b 1024 -J size=1 -O has_journal,dir_index,filetype,sparse_super,large_file,ext_attr,resize_inode
add_xattrs
pack ext3-1k 0x08 0x01

mkimg ext3-1k-recovery 4m -b 1024 -J size=1 -O has_journal,dir_index,filetype,sparse_super,large_file,ext_attr
journal_txns ""
pack ext3-1k-recovery 0 0
pack ext3-1k-norecovery 0x04 0 1

mkimg ext4-4k 12m -b 4096 -J size=4 \
	-O has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize,dir_index,filetype,sparse_super,large_file,ext_attr,resize_inode
add_xattrs
pack ext4-4k 0x20 0x40
pack ext4-4k-nocsum 0x22 0 1

mkimg ext4-1k-csum-recovery 4m -b 1024 -J size=1 \
	-O extent,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize,dir_index,filetype,sparse_super,large_file,ext_attr
journal_txns -c
pack ext4-1k-csum-recovery 0 0

mkimg ext4-1k-nocsum 1m -b 1024 \
	-O extent,flex_bg,64bit,dir_nlink,extra_isize,dir_index,filetype,sparse_super,large_file,ext_attr,huge_file
add_xattrs
index_dirs
pack ext4-1k-htree 0 0
pack ext4-1k-htree-user 0xc0 0x48 1

mkimg ext4-1k-32bit 512k -b 1024 \
	-O extent,dir_nlink,extra_isize,dir_index,filetype,sparse_super,large_file,ext_attr,uninit_bg
add_xattrs
pack ext4-1k-32bit 0x10 0x10

mkimg ext4-4k-inline 1m -b 4096 -I 256 \
	-O extent,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize,dir_index,filetype,sparse_super,large_file,ext_attr,inline_data
add_xattrs
pack ext4-4k-inline 0x02 0
pack ext4-4k-inline-csum 0 0x20 1

mkimg ext4-1k-inline 512k -b 1024 -I 256 \
	-O extent,dir_nlink,extra_isize,filetype,sparse_super,large_file,ext_attr,inline_data
pack ext4-1k-inline 0 0x40

mkimg ext4-1k-nodirindex 512k -b 1024 \
	-O extent,dir_nlink,extra_isize,filetype,sparse_super,large_file,ext_attr,metadata_csum,^dir_index
add_xattrs
pack ext4-1k-nodirindex 0x02 0x04

mkimg ext4-1k-orphans 512k -b 1024 \
	-O extent,dir_nlink,extra_isize,dir_index,filetype,sparse_super,large_file,ext_attr
make_orphans
pack ext4-1k-orphans 0 0
pack ext4-1k-orphans-ro 0x01 0 1

mkimg ext2-1k-orphans 512k -b 1024 -I 128 -O filetype,sparse_super
make_orphans
pack ext2-1k-orphans 0 0

mkimg ext4-1k-orphan-file 4m -b 1024 -J size=1 \
	-O extent,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize,dir_index,filetype,sparse_super,large_file,ext_attr,orphan_file
add_xattrs
pack ext4-1k-orphan-file 0x02 0

mkimg ext4-1k-ea-inode 1m -b 1024 -I 256 \
	-O extent,dir_nlink,extra_isize,dir_index,filetype,sparse_super,large_file,ext_attr,ea_inode
add_xattrs
dfs <<EOF
ea_set -f $tmp/v6000 /hello.txt user.huge
ea_set -f $tmp/v6000 /fast-symlink trusted.huge
EOF
pack ext4-1k-ea-inode 0x02 0

# two levels of htree index: more leaves than the root holds (1k blocks)
mkdir "$src/huge"
i=0
while [ $i -lt 2600 ]; do
	ln "$src/big/linked" "$src/huge/a-rather-long-name-so-that-few-fit-in-a-block-$i"
	i=$((i + 1))
done
touch -d @1700000000 "$src/huge" "$src"
mkimg ext4-1k-htree2 1m -b 1024 \
	-O extent,dir_nlink,extra_isize,dir_index,filetype,sparse_super,large_file,ext_attr
index_dirs
rm -rf "$src/huge"
pack ext4-1k-htree2 0 0x40

mkimg ext4-1k-128 512k -b 1024 -I 128 \
	-O extent,dir_nlink,dir_index,filetype,sparse_super,large_file,ext_attr
add_xattrs
pack ext4-1k-128 0x18 0

mkimg ext4-1k-bigalloc 1m -b 1024 -C 4096 \
	-O extent,bigalloc,dir_nlink,extra_isize,dir_index,filetype,sparse_super,large_file,ext_attr
pack ext4-1k-bigalloc-ro 0x01 0

mkimg ext4-1k-casefold 512k -b 1024 -E encoding=utf8 \
	-O extent,dir_nlink,extra_isize,dir_index,filetype,sparse_super,large_file,ext_attr,casefold
index_dirs
pack ext4-1k-casefold-ro 0x01 0x40

# whole-disk images: the file system in partition 1 (flags1 0x80, salt 4)
mkimg ext4-1k-part 768k -b 1024 \
	-O extent,dir_nlink,extra_isize,dir_index,filetype,sparse_super,large_file,ext_attr
partitioned mbr
pack ext4-1k-mbr 0 0x80 0 4
mkimg ext2-1k-part 768k -b 1024 -I 128 -O filetype,sparse_super
partitioned gpt
pack ext2-1k-gpt 0 0x80 0 4

total=$(du -cb "$out"/* | tail -1 | cut -f1)
echo "make_seeds.sh: $(ls "$out" | wc -l) seeds, $total bytes in $out"
