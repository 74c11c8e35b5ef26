/* SPDX-License-Identifier: GPL-2.0 */
/*
 * io_uring: ring creation (io_uring/io_uring_create) and request submission
 * (io_uring/io_uring_submit_req, kernel 5.19+). io_uring performs file and
 * network I/O without the syscalls other sensors watch, so which processes
 * use it, and for which operations, is worth knowing.
 *
 * Volume: a busy ring submits millions of requests per second. Submissions
 * are reported at most once per SE_IO_URING_WINDOW_NS for each (tgid, ring,
 * opcode) through the LRU map se_io_uring_rate_map; the next reported one
 * carries in `suppressed` how many were skipped, and each skipped one counts
 * as SE_STAT_DEDUPED of the mem sensor.
 *
 * Submissions from an SQPOLL ring are made by the ring's kernel-side thread
 * (iou-sqp-<pid>, in the owner's thread group): sq_thread is then 1.
 */
#include "mem.h"

SEC("tp/io_uring/io_uring_create")
int mem_io_uring_create(struct trace_event_raw_io_uring_create *ctx)
{
	if (se_skip(SE_SENSOR_MEM))
		return 0;
	struct se_heap *heap = se_heap__get();
	if (!heap)
		return 0;
	struct se_io_uring *ev = se_event__init(heap, SE_EV_IO_URING, sizeof(struct se_io_uring));
	if (!ev)
		return 0;
	ev->op = SE_IO_URING_SETUP;
	ev->ring_fd = ctx->fd;
	ev->ret = ctx->fd;
	ev->ring_ctx = (__u64)ctx->ctx;
	ev->entries = ctx->sq_entries;
	ev->setup_flags = ctx->flags;
	se_event__emit(SE_SENSOR_MEM, heap, sizeof(struct se_io_uring));
	return 0;
}

SEC("tp/io_uring/io_uring_submit_req")
int mem_io_uring_submit(struct trace_event_raw_io_uring_submit_req *ctx)
{
	if (se_skip(SE_SENSOR_MEM))
		return 0;
	struct se_io_uring_key key = {
		.ring_ctx = (__u64)ctx->ctx,
		.tgid = bpf_get_current_pid_tgid() >> 32,
		.opcode = ctx->opcode,
	};
	__u64 now = bpf_ktime_get_boot_ns();
	__u32 suppressed = 0;
	struct se_io_uring_rate *r = bpf_map_lookup_elem(&se_io_uring_rate_map, &key);
	if (r) {
		if (now - r->window_start_ns < SE_IO_URING_WINDOW_NS) {
			__sync_fetch_and_add(&r->suppressed, 1);
			se_stat__inc(SE_SENSOR_MEM, SE_STAT_DEDUPED);
			return 0;
		}
		suppressed = r->suppressed;
	}
	struct se_io_uring_rate fresh = { .window_start_ns = now };
	bpf_map_update_elem(&se_io_uring_rate_map, &key, &fresh, BPF_ANY);

	struct se_heap *heap = se_heap__get();
	if (!heap)
		return 0;
	struct se_io_uring *ev = se_event__init(heap, SE_EV_IO_URING, sizeof(struct se_io_uring));
	if (!ev)
		return 0;
	ev->op = SE_IO_URING_SUBMIT;
	ev->ring_fd = -1;
	ev->ring_ctx = key.ring_ctx;
	ev->opcode = key.opcode;
	ev->user_data = ctx->user_data;
	ev->req_flags = ctx->flags;
	ev->sq_thread = ctx->sq_thread;
	ev->suppressed = suppressed;
	se_event__emit(SE_SENSOR_MEM, heap, sizeof(struct se_io_uring));
	return 0;
}

SE_LICENSE;
