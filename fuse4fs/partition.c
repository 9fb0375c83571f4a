/*
 * partition.c - find partition N of a whole-disk image: MBR (primary and
 * logical partitions) or GPT, so users need not compute offsets.
 */
#include "config.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuse4fs.h"

#define MBR_SIG_OFF	510
#define MBR_PART_OFF	446
#define GPT_SIG		"EFI PART"

static uint32_t le32(const unsigned char *p)
{
	return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const unsigned char *p)
{
	return le32(p) | (uint64_t)le32(p + 4) << 32;
}

static int read_at(int fd, void *buf, size_t len, uint64_t off)
{
	ssize_t n = pread(fd, buf, len, off);

	return n == (ssize_t)len ? 0 : -EIO;
}

static int is_extended(unsigned char type)
{
	return type == 0x05 || type == 0x0f || type == 0x85;
}

static int gpt_find(int fd, unsigned int ssz, int number, uint64_t *start,
		    uint64_t *len, char *why, size_t whylen)
{
	unsigned char hdr[512], ent[128];
	uint64_t table, first, last;
	uint32_t count, esize;
	static const unsigned char zero[16];

	if (read_at(fd, hdr, sizeof(hdr), ssz) ||
	    memcmp(hdr, GPT_SIG, 8)) {
		snprintf(why, whylen, "protective MBR but no GPT header");
		return -EINVAL;
	}
	table = le64(hdr + 72);
	count = le32(hdr + 80);
	esize = le32(hdr + 84);
	if (esize < 128 || esize > 4096 || count > 65536) {
		snprintf(why, whylen, "GPT header is damaged");
		return -EINVAL;
	}
	if ((uint32_t)number > count) {
		snprintf(why, whylen, "no such partition (the GPT has %u "
			 "entries)", count);
		return -ENOENT;
	}
	if (read_at(fd, ent, sizeof(ent),
		    table * ssz + (uint64_t)(number - 1) * esize)) {
		snprintf(why, whylen, "cannot read the GPT entry");
		return -EIO;
	}
	if (!memcmp(ent, zero, 16)) {
		snprintf(why, whylen, "no such partition (GPT entry is "
			 "unused)");
		return -ENOENT;
	}
	first = le64(ent + 32);
	last = le64(ent + 40);
	if (last < first) {
		snprintf(why, whylen, "GPT entry is damaged");
		return -EINVAL;
	}
	*start = first * ssz;
	*len = (last - first + 1) * ssz;
	return 0;
}

/* Logical partitions 5, 6, ... live in a chain of extended boot records */
static int ebr_find(int fd, unsigned int ssz, uint64_t ext_start,
		    int number, uint64_t *start, uint64_t *len, char *why,
		    size_t whylen)
{
	unsigned char ebr[512];
	uint64_t cur = ext_start;
	int n = 5, hops = 0;

	while (hops++ < 128) {
		const unsigned char *p = ebr + MBR_PART_OFF;

		if (read_at(fd, ebr, sizeof(ebr), cur * ssz) ||
		    ebr[MBR_SIG_OFF] != 0x55 || ebr[MBR_SIG_OFF + 1] != 0xaa)
			break;
		if (n == number) {
			if (!p[4] || !le32(p + 12))
				break;
			*start = (cur + le32(p + 8)) * ssz;
			*len = (uint64_t)le32(p + 12) * ssz;
			return 0;
		}
		p += 16;
		if (!is_extended(p[4]) || !le32(p + 8))
			break;
		cur = ext_start + le32(p + 8);
		n++;
	}
	snprintf(why, whylen, "no such partition");
	return -ENOENT;
}

static unsigned int sector_size(int fd)
{
	struct stat st;
	int ssz = 0;

	if (!fstat(fd, &st) && S_ISBLK(st.st_mode) &&
	    !ioctl(fd, BLKSSZGET, &ssz) && ssz >= 512)
		return ssz;
	return 512;
}

int f4_find_partition(const char *device, int number,
		      unsigned long long *offset, unsigned long long *size,
		      char *why, size_t whylen)
{
	unsigned char mbr[512];
	uint64_t start = 0, len = 0;
	unsigned int ssz;
	int fd, ret, i;

	if (number < 1 || number > 128) {
		snprintf(why, whylen, "partition numbers go from 1 to 128");
		return -EINVAL;
	}
	fd = open(device, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(why, whylen, "%s", strerror(errno));
		return -errno;
	}
	ssz = sector_size(fd);
	if (read_at(fd, mbr, sizeof(mbr), 0) || mbr[MBR_SIG_OFF] != 0x55 ||
	    mbr[MBR_SIG_OFF + 1] != 0xaa) {
		snprintf(why, whylen, "no partition table (no MBR or GPT)");
		ret = -EINVAL;
		goto out;
	}
	/* A protective MBR (type 0xee) means the real table is a GPT */
	for (i = 0; i < 4; i++)
		if (mbr[MBR_PART_OFF + i * 16 + 4] == 0xee) {
			ret = gpt_find(fd, ssz, number, &start, &len, why,
				       whylen);
			if (ret == -EINVAL && ssz == 512)
				ret = gpt_find(fd, 4096, number, &start, &len,
					       why, whylen);
			goto found;
		}
	if (number <= 4) {
		const unsigned char *p = mbr + MBR_PART_OFF + (number - 1) * 16;

		if (!p[4] || !le32(p + 12)) {
			snprintf(why, whylen, "no such partition (MBR entry "
				 "%d is empty)", number);
			ret = -ENOENT;
			goto out;
		}
		if (is_extended(p[4])) {
			snprintf(why, whylen, "partition %d is an extended "
				 "partition; its logical partitions are 5 and "
				 "up", number);
			ret = -EINVAL;
			goto out;
		}
		start = (uint64_t)le32(p + 8) * ssz;
		len = (uint64_t)le32(p + 12) * ssz;
		ret = 0;
		goto found;
	}
	ret = -ENOENT;
	snprintf(why, whylen, "no such partition (no extended partition)");
	for (i = 0; i < 4; i++) {
		const unsigned char *p = mbr + MBR_PART_OFF + i * 16;

		if (is_extended(p[4])) {
			ret = ebr_find(fd, ssz, le32(p + 8), number, &start,
				       &len, why, whylen);
			break;
		}
	}
found:
	if (!ret) {
		*offset = start;
		*size = len;
	}
out:
	close(fd);
	return ret;
}
