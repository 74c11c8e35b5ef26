// SPDX-License-Identifier: GPL-2.0-only
/*
 * Header walk of a BPF ring buffer (BPF_MAP_TYPE_RINGBUF) for
 * RingReader.drain_batch (loader/ringbuf.py), loaded with ctypes.
 *
 * Same rules as the Python walk there: each record has an 8-byte header
 * (u32 length | BUSY bit 31 | DISCARD bit 30, u32 page offset) and records
 * are 8-byte aligned. The walk starts at data + base (the consumer position
 * masked by the ring size; the data area is mapped twice in a row, so a run
 * of records never wraps), visits headers while their offset is below
 * `avail` bytes and fewer than `limit` records (discarded ones included) were
 * walked, and stops at the first BUSY (uncommitted) record.
 *
 * For every record that is not discarded, starts[k] receives the payload
 * offset from base (header + 8) and lengths[k] its length; discarded records
 * are consumed but not listed. `starts` and `lengths` must hold
 * min(limit, ceil(avail / 8)) entries. Returns the number of records listed;
 * *consumed receives the bytes walked (what to add to the consumer position).
 */
#include <stdint.h>

#define SE_RB_BUSY    (1u << 31)
#define SE_RB_DISCARD (1u << 30)
#define SE_RB_HDR     8u

int64_t se_ring_walk(const uint8_t *data, uint64_t base, uint64_t avail, int64_t limit,
		     int64_t *starts, int64_t *lengths, uint64_t *consumed)
{
	const uint8_t *area = data + base;
	uint64_t off = 0;
	int64_t walked = 0;
	int64_t kept = 0;

	while (off < avail && walked < limit) {
		/* acquire pairs with the kernel's release of the header on commit */
		uint32_t hdr = __atomic_load_n((const uint32_t *)(area + off), __ATOMIC_ACQUIRE);
		uint32_t len;

		if (hdr & SE_RB_BUSY)
			break;
		len = hdr & ~(SE_RB_BUSY | SE_RB_DISCARD);
		if (!(hdr & SE_RB_DISCARD)) {
			starts[kept] = (int64_t)(off + SE_RB_HDR);
			lengths[kept] = (int64_t)len;
			kept++;
		}
		walked++;
		off += ((uint64_t)len + SE_RB_HDR + 7) & ~(uint64_t)7;
	}
	*consumed = off;
	return kept;
}
