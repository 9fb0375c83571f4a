/*
 * csum.c - metadata checksums on the hot paths.
 *
 * With metadata_csum every directory block carries a crc32c; libext2fs
 * computes it a byte at a time, which made checksumming the largest cost
 * of creating a file.  The same crc32c, with the CPU's crc32 instruction
 * where it has one, is computed here for the directory blocks fuse4fs
 * reads and writes itself (dir.c).  The format: the tail's checksum is
 * crc32c over the inode number and generation (little endian), seeded
 * with the file system's checksum seed, then over the block up to the
 * tail.
 */
#include "config.h"

#include <string.h>

#include "fuse4fs.h"

#if defined(__x86_64__)
#include <nmmintrin.h>

__attribute__((target("sse4.2")))
static uint32_t crc32c_hw(uint32_t crc, const unsigned char *p, size_t len)
{
	while (len >= 8) {
		uint64_t v;

		memcpy(&v, p, 8);
		crc = (uint32_t)_mm_crc32_u64(crc, v);
		p += 8;
		len -= 8;
	}
	while (len--)
		crc = _mm_crc32_u8(crc, *p++);
	return crc;
}

static int have_hw(void)
{
	static int have = -1;

	if (have < 0) {
		__builtin_cpu_init();
		have = __builtin_cpu_supports("sse4.2");
	}
	return have;
}
#endif

uint32_t f4_crc32c(uint32_t crc, const void *buf, size_t len)
{
#if defined(__x86_64__)
	if (have_hw())
		return crc32c_hw(crc, buf, len);
#endif
	return ext2fs_crc32c_le(crc, buf, len);
}

static uint32_t dirblock_csum(struct f4fs *f, ext2_ino_t dir, uint32_t gen,
			      const char *buf)
{
	uint32_t ino_le = ext2fs_cpu_to_le32(dir);
	uint32_t gen_le = ext2fs_cpu_to_le32(gen);
	uint32_t crc;

	crc = f4_crc32c(f->fs->csum_seed, &ino_le, sizeof(ino_le));
	crc = f4_crc32c(crc, &gen_le, sizeof(gen_le));
	return f4_crc32c(crc, buf,
			 f->blocksize - sizeof(struct ext2_dir_entry_tail));
}

static struct ext2_dir_entry_tail *tail_of(struct f4fs *f, const char *buf)
{
	struct ext2_dir_entry_tail *t;

	t = (struct ext2_dir_entry_tail *)(buf + f->blocksize - sizeof(*t));
	if (t->det_reserved_zero1 ||
	    ext2fs_le16_to_cpu(t->det_rec_len) != sizeof(*t) ||
	    ext2fs_le16_to_cpu(t->det_reserved_name_len) !=
	    EXT2_DIR_NAME_LEN_CSUM)
		return NULL;
	return t;
}

/*
 * Does a directory leaf block's checksum match?  1 yes, 0 no, -1 it has
 * no checksum tail (an htree index block, or a block from before
 * metadata_csum was turned on).
 */
int f4_dirblock_verify(struct f4fs *f, ext2_ino_t dir, uint32_t gen,
		       const char *buf)
{
	struct ext2_dir_entry_tail *t;

	if (!ext2fs_has_feature_metadata_csum(f->fs->super))
		return 1;
	t = tail_of(f, buf);
	if (!t)
		return -1;
	return ext2fs_le32_to_cpu(t->det_checksum) ==
	       dirblock_csum(f, dir, gen, buf);
}

/* Set the checksum of a directory leaf block that has a tail. */
int f4_dirblock_csum_set(struct f4fs *f, ext2_ino_t dir, uint32_t gen,
			 char *buf)
{
	struct ext2_dir_entry_tail *t;

	if (!ext2fs_has_feature_metadata_csum(f->fs->super))
		return 0;
	t = tail_of(f, buf);
	if (!t)
		return -EFSCORRUPTED;
	t->det_checksum = ext2fs_cpu_to_le32(dirblock_csum(f, dir, gen, buf));
	return 0;
}
