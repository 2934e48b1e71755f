/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The module's rules for a model blob arriving over /dev/schedlearn: which
 * header fields must hold what, where each received byte goes, when the
 * header and the checksum are judged.  One definition, included by the
 * module (kernel/schedlearn.c) and by its user-space fuzz harness
 * (tests/fuzz/fuzz_blob.c), so that the code fuzzed is the code loaded.
 *
 * The includer provides blob_format.h (struct schedlearn_blob_hdr, the
 * magic and version) and model.h (SLM_* shape constants, struct slm_params).
 * No floats, no allocation, no loops: every call is O(1).
 */
#ifndef SCHEDLEARN_SLM_BLOB_CHECK_H
#define SCHEDLEARN_SLM_BLOB_CHECK_H

#ifndef __KERNEL__
#include <stddef.h>
#include <stdint.h>
/* user space: blob_format.h asserts a little-endian host, fields are read as stored */
#ifndef le16_to_cpu
#define le16_to_cpu(x) ((uint16_t)(x))
#define le32_to_cpu(x) ((uint32_t)(x))
#endif
#endif

#define SLM_HDR_SIZE sizeof(struct schedlearn_blob_hdr)
#define SLM_BLOB_SIZE (SLM_HDR_SIZE + sizeof(struct slm_params))

/* Why a blob is refused; the module turns each into an errno and a dmesg line. */
enum slm_blob_verdict {
	SLM_BLOB_OK,
	SLM_BLOB_BAD_MAGIC,
	SLM_BLOB_BAD_VERSION,
	SLM_BLOB_BAD_HDR_SIZE,
	SLM_BLOB_BAD_ARCH,
	SLM_BLOB_BAD_SHAPE,
	SLM_BLOB_BAD_MACS,
	SLM_BLOB_BAD_PARAMS_SIZE,
	SLM_BLOB_TOO_LONG,		/* more bytes than header + params */
	SLM_BLOB_BAD_CRC,
};

/* Everything but the checksum, which needs the params; max_macs: the module's cost bound. */
static inline enum slm_blob_verdict
slm_blob_check_hdr(const struct schedlearn_blob_hdr *h, unsigned int max_macs)
{
	unsigned int macs = le32_to_cpu(h->macs);

	if (le32_to_cpu(h->magic) != SLM_BLOB_MAGIC)
		return SLM_BLOB_BAD_MAGIC;
	if (le16_to_cpu(h->version) != SLM_BLOB_VERSION)
		return SLM_BLOB_BAD_VERSION;
	if (le16_to_cpu(h->hdr_size) != SLM_HDR_SIZE)
		return SLM_BLOB_BAD_HDR_SIZE;
	if (le32_to_cpu(h->arch_hash) != SLM_ARCH_HASH)
		return SLM_BLOB_BAD_ARCH;
	if (le32_to_cpu(h->n_in) != SLM_N_IN || le32_to_cpu(h->n_out) != SLM_N_OUT ||
	    le32_to_cpu(h->window) != SLM_WINDOW)
		return SLM_BLOB_BAD_SHAPE;
	if (macs != SLM_MACS || macs > max_macs)
		return SLM_BLOB_BAD_MACS;
	if (le32_to_cpu(h->params_size) != sizeof(struct slm_params))
		return SLM_BLOB_BAD_PARAMS_SIZE;
	return SLM_BLOB_OK;
}

/* crc: zlib crc32 of the received params image. */
static inline enum slm_blob_verdict
slm_blob_check_crc(const struct schedlearn_blob_hdr *h, unsigned int crc)
{
	return crc == le32_to_cpu(h->crc32) ? SLM_BLOB_OK : SLM_BLOB_BAD_CRC;
}

/*
 * A blob in pieces: `len` bytes already received into hdr, then params.
 * slm_blob_room() refuses a piece that would make the blob too long;
 * slm_blob_dst() says where the next bytes of a piece of `avail` go and
 * how many (*take) fit before the header/params boundary;
 * after each copy, slm_blob_at_hdr_end()/slm_blob_complete() say whether
 * the header or the checksum is to be judged now.
 */
static inline enum slm_blob_verdict slm_blob_room(size_t len, size_t n)
{
	return n > SLM_BLOB_SIZE || len > SLM_BLOB_SIZE - n ? SLM_BLOB_TOO_LONG : SLM_BLOB_OK;
}

static inline unsigned char *slm_blob_dst(struct schedlearn_blob_hdr *hdr, struct slm_params *params,
					  size_t len, size_t avail, size_t *take)
{
	if (len < SLM_HDR_SIZE) {
		*take = avail < SLM_HDR_SIZE - len ? avail : SLM_HDR_SIZE - len;
		return (unsigned char *)hdr + len;
	}
	*take = avail;	/* slm_blob_room() keeps it within params */
	return (unsigned char *)params + (len - SLM_HDR_SIZE);
}

static inline int slm_blob_at_hdr_end(size_t len)
{
	return len == SLM_HDR_SIZE;
}

static inline int slm_blob_complete(size_t len)
{
	return len == SLM_BLOB_SIZE;
}

#endif
