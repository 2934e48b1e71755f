/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The model blob's header: the one C definition (export/blob_format.py is the
 * one Python definition; tests/test_blob_format.py checks that they agree).
 * A blob is this header, then params_size bytes that are the memory image of
 * struct slm_params from the generated model.h.  Little endian.
 *
 * Included by the kernel module (kernel/schedlearn.c, kbuild: fields are
 * __le16/__le32, read with le*_to_cpu) and by the user-space gcc harnesses
 * (export/harness/harness.c, kernel/harness/cm_parity.c: plain stdint types,
 * read as stored, so those need a little-endian host).
 */
#ifndef SCHEDLEARN_BLOB_FORMAT_H
#define SCHEDLEARN_BLOB_FORMAT_H

#ifdef __KERNEL__
#include <linux/build_bug.h>
#include <linux/types.h>
#define SLM_BLOB_LE16 __le16
#define SLM_BLOB_LE32 __le32
#define SLM_BLOB_PACKED __packed
#else
#include <assert.h>
#include <stdint.h>
#define SLM_BLOB_LE16 uint16_t
#define SLM_BLOB_LE32 uint32_t
#define SLM_BLOB_PACKED __attribute__((__packed__))
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
	      "user-space blob readers take the little-endian fields as stored");
#endif

#define SLM_BLOB_MAGIC		0x4d4c4353u	/* "SCLM" read as a little-endian u32 */
#define SLM_BLOB_VERSION	1

struct schedlearn_blob_hdr {
	SLM_BLOB_LE32 magic;
	SLM_BLOB_LE16 version;
	SLM_BLOB_LE16 hdr_size;		/* == sizeof(struct schedlearn_blob_hdr) in version 1 */
	SLM_BLOB_LE32 arch_hash;	/* op sequence + shapes + scales; must equal SLM_ARCH_HASH */
	SLM_BLOB_LE32 n_in;
	SLM_BLOB_LE32 n_out;
	SLM_BLOB_LE32 window;
	SLM_BLOB_LE32 macs;		/* multiply-accumulates per step = per kernel decision */
	SLM_BLOB_LE32 params_size;	/* == sizeof(struct slm_params) */
	SLM_BLOB_LE32 crc32;		/* zlib crc32 of the params image */
} SLM_BLOB_PACKED;

static_assert(sizeof(struct schedlearn_blob_hdr) == 36, "version 1 header is 36 bytes");

#undef SLM_BLOB_LE16
#undef SLM_BLOB_LE32
#undef SLM_BLOB_PACKED

#endif
