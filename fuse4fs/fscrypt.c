/*
 * fscrypt.c - encrypted directories without the key, as the kernel shows
 * them.
 *
 * fuse4fs never has encryption keys.  Like the kernel without the key, it
 * lists the names in an encrypted directory in their "no-key" form: the
 * base64url encoding (RFC 4648, no padding) of
 *
 *	le32 hash, le32 minor_hash	the entry's directory hash, or 0
 *	up to 149 bytes of ciphertext	the whole name if it fits, else its
 *	32 bytes of SHA-256		first 149 bytes and the digest of the
 *					rest
 *
 * and takes such names back in lookups.  The hash is the one the kernel's
 * htree readdir computes (of the ciphertext, with the directory's hash
 * version), so a listing here reads exactly like the kernel's.  Encrypted
 * symlink targets ({le16 length, ciphertext}) read back the same way with
 * a zero hash.
 */
#include "config.h"

#include <stdint.h>
#include <string.h>

#include "fuse4fs.h"

#define NOKEY_HASH	8			/* the two hash words */
#define NOKEY_BYTES	149
#define NOKEY_MAX	(NOKEY_HASH + NOKEY_BYTES + 32)

/* ---- SHA-256 (FIPS 180-4) -------------------------------------------- */

static const uint32_t sha_k[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1,
	0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
	0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
	0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
	0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
	0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
	0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
	0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
	0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static uint32_t ror(uint32_t x, int n)
{
	return (x >> n) | (x << (32 - n));
}

static void sha256_block(uint32_t h[8], const unsigned char *p)
{
	uint32_t w[64], a, b, c, d, e, f, g, k, t1, t2;
	int i;

	for (i = 0; i < 16; i++)
		w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
		       (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
	for (; i < 64; i++)
		w[i] = w[i - 16] + w[i - 7] +
		       (ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^
			(w[i - 15] >> 3)) +
		       (ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ (w[i - 2] >> 10));
	a = h[0]; b = h[1]; c = h[2]; d = h[3];
	e = h[4]; f = h[5]; g = h[6]; k = h[7];
	for (i = 0; i < 64; i++) {
		t1 = k + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) +
		     ((e & f) ^ (~e & g)) + sha_k[i] + w[i];
		t2 = (ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) +
		     ((a & b) ^ (a & c) ^ (b & c));
		k = g; g = f; f = e; e = d + t1;
		d = c; c = b; b = a; a = t1 + t2;
	}
	h[0] += a; h[1] += b; h[2] += c; h[3] += d;
	h[4] += e; h[5] += f; h[6] += g; h[7] += k;
}

static void sha256(const void *data, size_t len, unsigned char out[32])
{
	uint32_t h[8] = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
			  0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 };
	const unsigned char *p = data;
	unsigned char tail[128];
	uint64_t bits = (uint64_t)len * 8;
	size_t n, i;

	for (; len >= 64; len -= 64, p += 64)
		sha256_block(h, p);
	memset(tail, 0, sizeof(tail));
	memcpy(tail, p, len);
	tail[len] = 0x80;
	n = len + 9 <= 64 ? 64 : 128;
	for (i = 0; i < 8; i++)
		tail[n - 1 - i] = bits >> (8 * i);
	sha256_block(h, tail);
	if (n == 128)
		sha256_block(h, tail + 64);
	for (i = 0; i < 8; i++) {
		out[4 * i] = h[i] >> 24;
		out[4 * i + 1] = h[i] >> 16;
		out[4 * i + 2] = h[i] >> 8;
		out[4 * i + 3] = h[i];
	}
}

/* ---- base64url, no padding ------------------------------------------- */

static const char b64[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static size_t b64_encode(const unsigned char *src, size_t len, char *dst)
{
	uint32_t acc = 0;
	int bits = 0;
	size_t i, o = 0;

	for (i = 0; i < len; i++) {
		acc = acc << 8 | src[i];
		bits += 8;
		while (bits >= 6) {
			bits -= 6;
			dst[o++] = b64[(acc >> bits) & 63];
		}
	}
	if (bits)
		dst[o++] = b64[(acc << (6 - bits)) & 63];
	return o;
}

/* Decoded length, or -1 if src isn't canonical base64url. */
static int b64_decode(const char *src, size_t len, unsigned char *dst,
		      size_t max)
{
	uint32_t acc = 0;
	int bits = 0;
	size_t i, o = 0;

	for (i = 0; i < len; i++) {
		const char *p = src[i] ? strchr(b64, src[i]) : NULL;

		if (!p)
			return -1;
		acc = acc << 6 | (uint32_t)(p - b64);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o == max)
				return -1;
			dst[o++] = acc >> bits;
		}
	}
	/* leftover bits must be zero, and fewer than a character's worth */
	if (bits >= 6 || (acc & ((1U << bits) - 1)))
		return -1;
	return o;
}

/* ---- no-key names ----------------------------------------------------- */

int f4_is_encrypted(const struct ext2_inode_large *inode)
{
	return !!(inode->i_flags & EXT4_ENCRYPT_FL);
}

size_t f4_nokey_len(size_t ctlen)
{
	size_t n = ctlen > NOKEY_BYTES ? NOKEY_MAX : NOKEY_HASH + ctlen;

	return (n * 4 + 2) / 3;
}

void f4_nokey_encode(uint32_t hash, uint32_t minor, const char *ct,
		     size_t ctlen, char *out, size_t *outlen)
{
	unsigned char raw[NOKEY_MAX];
	size_t n;

	raw[0] = hash; raw[1] = hash >> 8; raw[2] = hash >> 16;
	raw[3] = hash >> 24;
	raw[4] = minor; raw[5] = minor >> 8; raw[6] = minor >> 16;
	raw[7] = minor >> 24;
	if (ctlen <= NOKEY_BYTES) {
		memcpy(raw + NOKEY_HASH, ct, ctlen);
		n = NOKEY_HASH + ctlen;
	} else {
		memcpy(raw + NOKEY_HASH, ct, NOKEY_BYTES);
		sha256(ct + NOKEY_BYTES, ctlen - NOKEY_BYTES,
		       raw + NOKEY_HASH + NOKEY_BYTES);
		n = NOKEY_MAX;
	}
	*outlen = b64_encode(raw, n, out);
	out[*outlen] = 0;
}

/*
 * Turn a name given in an encrypted directory back into what is stored.
 * Short forms carry the whole ciphertext (nk->exact); the long form only
 * its start and a digest of the rest, which f4_nokey_match() checks.
 * -ENOENT: no entry can have this name, as the kernel says.
 */
int f4_nokey_decode(const char *name, size_t len, struct f4_nokey *nk)
{
	int n;

	if (len > (NOKEY_MAX * 4 + 2) / 3)
		return -ENOENT;
	n = b64_decode(name, len, nk->raw, sizeof(nk->raw));
	if (n < NOKEY_HASH + 1 ||
	    (n > NOKEY_HASH + NOKEY_BYTES && n != NOKEY_MAX))
		return -ENOENT;
	nk->exact = n != NOKEY_MAX;
	nk->ct = (const char *)nk->raw + NOKEY_HASH;
	nk->ctlen = nk->exact ? (size_t)n - NOKEY_HASH : 0;
	return 0;
}

int f4_nokey_match(const struct f4_nokey *nk, const char *de, size_t delen)
{
	unsigned char digest[32];

	if (nk->exact)
		return delen == nk->ctlen && !memcmp(de, nk->ct, delen);
	if (delen <= NOKEY_BYTES || memcmp(de, nk->ct, NOKEY_BYTES))
		return 0;
	sha256(de + NOKEY_BYTES, delen - NOKEY_BYTES, digest);
	return !memcmp(digest, nk->raw + NOKEY_HASH + NOKEY_BYTES, 32);
}
