/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Layout of a schedlearn model blob (written by export/blob.py):
 * this header, then params_size bytes that are the memory image of
 * struct slm_params from the generated model.h.  Little endian.
 */
#ifndef SCHEDLEARN_SLM_BLOB_H
#define SCHEDLEARN_SLM_BLOB_H

#include <linux/build_bug.h>
#include <linux/types.h>

#define SLM_BLOB_MAGIC		0x4d4c4353u	/* "SCLM" read as a little-endian u32 */
#define SLM_BLOB_VERSION	1

struct schedlearn_blob_hdr {
	__le32 magic;
	__le16 version;
	__le16 hdr_size;	/* == sizeof(struct schedlearn_blob_hdr) in version 1 */
	__le32 arch_hash;	/* op sequence + shapes + scales; must equal SLM_ARCH_HASH */
	__le32 n_in;
	__le32 n_out;
	__le32 window;
	__le32 macs;		/* multiply-accumulates per decision */
	__le32 params_size;	/* == sizeof(struct slm_params) */
	__le32 crc32;		/* zlib crc32 of the params image */
} __packed;

static_assert(sizeof(struct schedlearn_blob_hdr) == 36);

#endif
