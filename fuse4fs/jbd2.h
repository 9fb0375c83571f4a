/* SPDX-License-Identifier: GPL-2.0 */
/*
 * jbd2.h - the jbd2 journal's on-disk constants, shared by the replay
 * (journal.c) and the writer (txn.c).  The layout is the one the kernel's
 * journal documentation describes; every jbd2 field is big-endian.
 */
#ifndef FUSE4FS_JBD2_H
#define FUSE4FS_JBD2_H

#include <ext2fs/ext2_types.h>

#define JBD2_MAGIC		0xc03b3998U

#define JBD2_DESCRIPTOR		1
#define JBD2_COMMIT		2
#define JBD2_SB_V1		3
#define JBD2_SB_V2		4
#define JBD2_REVOKE		5

#define JBD2_COMPAT_CHECKSUM	0x00000001U
#define JBD2_INCOMPAT_REVOKE	0x00000001U
#define JBD2_INCOMPAT_64BIT	0x00000002U
#define JBD2_INCOMPAT_ASYNC	0x00000004U
#define JBD2_INCOMPAT_CSUM_V2	0x00000008U
#define JBD2_INCOMPAT_CSUM_V3	0x00000010U
#define JBD2_INCOMPAT_FC	0x00000020U
#define JBD2_INCOMPAT_KNOWN	0x0000003fU

#define JBD2_FLAG_ESCAPE	0x1
#define JBD2_FLAG_SAME_UUID	0x2
#define JBD2_FLAG_LAST_TAG	0x8

#define JBD2_CRC32_CHKSUM	1
#define JBD2_CRC32C_CHKSUM	4
#define JBD2_CRC32_CHKSUM_SIZE	4

#define JBD2_MIN_BLOCKS		1024
#define JBD2_DEFAULT_FC_BLOCKS	256

/* Journal superblock field offsets. */
#define JSB_BLOCKSIZE		0x0c
#define JSB_MAXLEN		0x10
#define JSB_FIRST		0x14
#define JSB_SEQUENCE		0x18
#define JSB_START		0x1c
#define JSB_ERRNO		0x20
#define JSB_COMPAT		0x24
#define JSB_INCOMPAT		0x28
#define JSB_ROCOMPAT		0x2c
#define JSB_UUID		0x30
#define JSB_CSUM_TYPE		0x50
#define JSB_NUM_FC		0x54
#define JSB_CHECKSUM		0xfc
#define JSB_SIZE		1024

#define JHDR_SIZE		12	/* magic, type, sequence */
#define JC_CSUM_TYPE		0x0c	/* commit block */
#define JC_CSUM_SIZE		0x0d
#define JC_CSUM			0x10
#define JC_COMMIT_SEC		0x30
#define JC_COMMIT_NSEC		0x38
#define JR_COUNT		0x0c	/* revoke block: bytes used */
#define JR_HDR_SIZE		16
#define JTAIL_SIZE		4	/* checksum tail of v2/v3 blocks */

static inline __u16 get_be16(const unsigned char *p)
{
	return (__u16)((p[0] << 8) | p[1]);
}

static inline __u32 get_be32(const unsigned char *p)
{
	return ((__u32)p[0] << 24) | ((__u32)p[1] << 16) |
	       ((__u32)p[2] << 8) | p[3];
}

static inline __u64 get_be64(const unsigned char *p)
{
	return ((__u64)get_be32(p) << 32) | get_be32(p + 4);
}

static inline void put_be16(unsigned char *p, __u16 v)
{
	p[0] = v >> 8;
	p[1] = v;
}

static inline void put_be32(unsigned char *p, __u32 v)
{
	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = v;
}

static inline void put_be64(unsigned char *p, __u64 v)
{
	put_be32(p, v >> 32);
	put_be32(p + 4, (__u32)v);
}

#endif /* FUSE4FS_JBD2_H */
