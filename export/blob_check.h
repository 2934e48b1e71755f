/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The rules a model blob must pass before its params are used: which header
 * fields must hold what, how long a blob is, when the checksum is judged,
 * and where each byte of a blob arriving in pieces goes.  The one C
 * definition (export/blob_format.py is the Python one), beside the header
 * layout it checks, so that every reader below and above may include it:
 * the kernel module (kernel/schedlearn.c, /dev/schedlearn writes), its
 * fuzz harness (tests/fuzz/fuzz_blob.c: the code fuzzed is the code
 * loaded), the sched_ext loader (kernel/scx/model_blob.h), the export
 * harness (export/harness/harness.c) and the module's decision path in user
 * space (kernel/harness/cm_parity.c).  Each maps a verdict to its own
 * report: an errno and a dmesg line, a `why` line, a stderr line.
 *
 * The includer provides blob_format.h (struct schedlearn_blob_hdr, the
 * magic and version) and the generated model.h.  The model a blob must
 * describe is model.h's SLM_* constants and struct slm_params, unless the
 * includer first defines SLM_BLOB_MODEL(x) (the constant x of another
 * prefix: N_IN, N_OUT, WINDOW, MACS, ARCH_HASH) and SLM_BLOB_PARAMS (that
 * prefix's params struct), as harness.c does for -DPREFIX.
 * No floats, no allocation; every check is O(1) but the user-space crc32.
 */
#ifndef SCHEDLEARN_BLOB_CHECK_H
#define SCHEDLEARN_BLOB_CHECK_H

#ifndef __KERNEL__
#include <stddef.h>
#include <stdint.h>
/* user space: blob_format.h asserts a little-endian host, fields are read as stored */
#ifndef le16_to_cpu
#define le16_to_cpu(x) ((uint16_t)(x))
#define le32_to_cpu(x) ((uint32_t)(x))
#endif
#endif

#ifndef SLM_BLOB_MODEL
#define SLM_BLOB_MODEL(x) SLM_##x
#define SLM_BLOB_PARAMS struct slm_params
#endif

#define SLM_HDR_SIZE sizeof(struct schedlearn_blob_hdr)
#define SLM_BLOB_SIZE (SLM_HDR_SIZE + sizeof(SLM_BLOB_PARAMS))

/* The module's default cost bound (its max_macs parameter), MACs per decision. */
#define SLM_BLOB_MAX_MACS (1u << 20)

/* Why a blob is refused. */
enum slm_blob_verdict {
	SLM_BLOB_OK,
	SLM_BLOB_BAD_MAGIC,
	SLM_BLOB_BAD_VERSION,
	SLM_BLOB_BAD_HDR_SIZE,
	SLM_BLOB_BAD_ARCH,
	SLM_BLOB_BAD_SHAPE,		/* n_in, n_out or window */
	SLM_BLOB_BAD_MACS,		/* not the model's, or over the reader's bound */
	SLM_BLOB_BAD_PARAMS_SIZE,
	SLM_BLOB_TOO_LONG,		/* more bytes than header + params */
	SLM_BLOB_BAD_CRC,
	SLM_BLOB_TRUNCATED,		/* fewer: the module sees it at close() */
};

/* A few words for a verdict, for readers that report in one line. */
static inline const char *slm_blob_why(enum slm_blob_verdict v)
{
	switch (v) {
	case SLM_BLOB_OK:
		return "ok";
	case SLM_BLOB_BAD_MAGIC:
		return "bad magic";
	case SLM_BLOB_BAD_VERSION:
		return "format version";
	case SLM_BLOB_BAD_HDR_SIZE:
		return "header size";
	case SLM_BLOB_BAD_ARCH:
		return "arch hash";
	case SLM_BLOB_BAD_SHAPE:
		return "shape";
	case SLM_BLOB_BAD_MACS:
		return "MACs per decision";
	case SLM_BLOB_BAD_PARAMS_SIZE:
		return "params size";
	case SLM_BLOB_TOO_LONG:
		return "too long";
	case SLM_BLOB_BAD_CRC:
		return "crc32";
	case SLM_BLOB_TRUNCATED:
		return "truncated";
	}
	return "?";
}

/* Everything but the length and the checksum; max_macs: the reader's cost bound. */
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
	if (le32_to_cpu(h->arch_hash) != SLM_BLOB_MODEL(ARCH_HASH))
		return SLM_BLOB_BAD_ARCH;
	if (le32_to_cpu(h->n_in) != SLM_BLOB_MODEL(N_IN) ||
	    le32_to_cpu(h->n_out) != SLM_BLOB_MODEL(N_OUT) ||
	    le32_to_cpu(h->window) != SLM_BLOB_MODEL(WINDOW))
		return SLM_BLOB_BAD_SHAPE;
	if (macs != SLM_BLOB_MODEL(MACS) || macs > max_macs)
		return SLM_BLOB_BAD_MACS;
	if (le32_to_cpu(h->params_size) != sizeof(SLM_BLOB_PARAMS))
		return SLM_BLOB_BAD_PARAMS_SIZE;
	return SLM_BLOB_OK;
}

/* crc: zlib's crc32 of the received params image. */
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

static inline unsigned char *slm_blob_dst(struct schedlearn_blob_hdr *hdr, SLM_BLOB_PARAMS *params,
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

#ifndef __KERNEL__
/*
 * A whole blob of len bytes in memory (user-space readers of a file):
 * everything but the checksum, the header first so that a file that is no
 * blob at all says so.  Then, for SLM_BLOB_OK, slm_blob_check_crc() on the
 * crc32 of the SLM_BLOB_SIZE - SLM_HDR_SIZE bytes after the header.
 */
static inline enum slm_blob_verdict
slm_blob_check_image(const void *blob, size_t len, unsigned int max_macs)
{
	enum slm_blob_verdict v;

	if (len < SLM_HDR_SIZE)
		return SLM_BLOB_TRUNCATED;
	v = slm_blob_check_hdr(blob, max_macs);	/* packed: any alignment */
	if (v != SLM_BLOB_OK)
		return v;
	if (slm_blob_room(0, len) != SLM_BLOB_OK)
		return SLM_BLOB_TOO_LONG;
	return slm_blob_complete(len) ? SLM_BLOB_OK : SLM_BLOB_TRUNCATED;
}

/* zlib's crc32 (the header's checksum) for readers that do not link zlib. */
static inline uint32_t slm_blob_crc32(const void *buf, size_t n)
{
	const unsigned char *p = buf;
	uint32_t crc = 0xffffffffu;
	size_t i;
	int k;

	for (i = 0; i < n; i++) {
		crc ^= p[i];
		for (k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0xedb88320u & -(crc & 1));
	}
	return ~crc;
}
#endif

#endif
