/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Ring-buffer producer for benchmarks/ring_rate.py and tests/wire/test_batch.py.
 *
 * A BPF_PROG_TYPE_SYSCALL program run with BPF_PROG_TEST_RUN. Each run emits
 * ctx->count records with bpf_loop into one BPF ring buffer, like the sensors
 * do (per-CPU heap + bpf_ringbuf_output, BPF_RB_NO_WAKEUP), and reports how
 * many were written and how many failed (ring full) back in its context.
 *
 * Shapes:
 *   SHAPE_FILE  SE_EV_FILE records (se_hdr + se_proc + se_file + path and
 *               resolved strings): 200 + 24..70 + 32..78 bytes + 2 NULs, 8-aligned:
 *               264..352 bytes, variable size;
 *   SHAPE_SMALL 48-byte struct bench_small records (fixed size, reserve/commit);
 *   SHAPE_ECHO  one record copied from ctx->data (ctx->len bytes): lets a test
 *               push any record it built through a real kernel ring.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "shared/events.h"

#define SHAPE_FILE  1
#define SHAPE_SMALL 2
#define SHAPE_ECHO  3
#define ECHO_MAX    4096
#define HEAP_SIZE   8192

struct bench_small {
	struct se_hdr hdr;
	__u64 seq;
	__u32 pid;
	__u32 tid;
	__u64 a;
	__u64 b;
};

struct bench_ctx {
	__u32 shape;
	__u32 count;      /* records to emit (file/small) */
	__u64 seq;        /* sequence number of the first record */
	__u32 ok;         /* out: records written */
	__u32 failed;     /* out: reservations that failed (ring full) */
	__u32 len;        /* echo: bytes in data */
	__u32 _pad;
	__u8  data[ECHO_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 23);
} bench_ring SEC(".maps");

struct heap { __u8 buf[HEAP_SIZE]; };
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct heap);
} bench_heap SEC(".maps");

const char bench_path[128] = "/var/lib/sentinel-bench/tenant-0042/objects/2026/11/24/"
			     "blob-0123456789abcdef0123456789abcdef0123456789abcdef.dat";

/* force the struct into BTF so user space can build its dtype */
struct bench_small bench_small_btf_anchor SEC(".bss");

struct loop_ctx {
	struct bench_ctx *c;
	__u32 ok;
	__u32 failed;
};

static __always_inline void fill_proc(struct se_proc *p, __u64 seq)
{
	p->pid = 4000 + (seq & 1023);
	p->tid = p->pid;
	p->ppid = 1;
	p->ns_pid = p->pid;
	p->uid = 1000;
	p->euid = 1000;
	p->gid = 1000;
	p->egid = 1000;
	p->loginuid = 1000;
	p->sessionid = 3;
	p->mnt_ns = 4026531841u;
	p->pid_ns = 4026531836u;
	p->net_ns = 4026531840u;
	p->cgroup_id = 7777;
	p->start_ns = 1000000 + (seq & 1023);
	p->parent_start_ns = 1;
	__builtin_memcpy(p->comm, "bench-writer\0\0\0", SE_COMM_LEN);
}

static long emit_file(__u64 i, struct loop_ctx *lc)
{
	__u32 zero = 0;
	struct heap *h = bpf_map_lookup_elem(&bench_heap, &zero);
	if (!h)
		return 1;
	__u64 seq = lc->c->seq + i;
	struct se_file *e = (void *)h->buf;
	__u32 plen = 24 + (seq & 31) + ((seq >> 5) & 15);  /* 24..70 bytes of path */
	__u32 off = sizeof(*e);
	__builtin_memset(e, 0, sizeof(*e));
	e->hdr.type = SE_EV_FILE;
	e->hdr.cpu = bpf_get_smp_processor_id();
	e->hdr.ts_ns = bpf_ktime_get_boot_ns();
	fill_proc(&e->proc, seq);
	e->op = SE_FILE_OPEN;
	e->ret = 3 + (seq & 7);
	e->syscall_nr = 257;
	e->dirfd = -100;
	e->open_flags = 0101;
	e->mode = 0644;
	e->uid = (__u32)-1;
	e->gid = (__u32)-1;
	e->flags = SE_FILE_RESOLVED_BY_FD;
	e->dev = 259;
	e->ino = seq;                            /* the record's sequence number */
	e->dirfd2 = -100;
	/* path: the first plen bytes of the template, NUL-terminated */
	bpf_probe_read_kernel(h->buf + off, plen & 127, bench_path);
	h->buf[(off + plen) & (HEAP_SIZE - 1)] = 0;
	e->path.off = off;
	e->path.len = plen;
	off += plen + 1;
	/* resolved: same template, 8 bytes longer */
	bpf_probe_read_kernel(h->buf + (off & 1023), (plen + 8) & 127, bench_path);
	h->buf[(off + plen + 8) & (HEAP_SIZE - 1)] = 0;
	e->resolved.off = off;
	e->resolved.len = plen + 8;
	off += plen + 9;
	off = (off + 7) & ~7u;
	e->hdr.size = off;
	if (bpf_ringbuf_output(&bench_ring, h->buf, off & 1023, BPF_RB_NO_WAKEUP))
		lc->failed++;
	else
		lc->ok++;
	return 0;
}

static long emit_small(__u64 i, struct loop_ctx *lc)
{
	struct bench_small *e = bpf_ringbuf_reserve(&bench_ring, sizeof(*e), 0);
	if (!e) {
		lc->failed++;
		return 0;
	}
	__u64 seq = lc->c->seq + i;
	e->hdr.type = 100;
	e->hdr.size = sizeof(*e);
	e->hdr.cpu = bpf_get_smp_processor_id();
	e->hdr.ts_ns = bpf_ktime_get_boot_ns();
	e->seq = seq;
	e->pid = 4000 + (seq & 1023);
	e->tid = e->pid;
	e->a = seq * 3;
	e->b = ~seq;
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
	lc->ok++;
	return 0;
}

static long step(__u64 i, void *arg)
{
	struct loop_ctx *lc = arg;
	if (lc->c->shape == SHAPE_FILE)
		return emit_file(i, lc);
	return emit_small(i, lc);
}

SEC("syscall")
int produce(struct bench_ctx *ctx)
{
	struct loop_ctx lc = { .c = ctx };

	if (ctx->shape == SHAPE_ECHO) {
		__u32 zero = 0;
		struct heap *h = bpf_map_lookup_elem(&bench_heap, &zero);
		__u32 len = ctx->len;
		if (!h || len == 0 || len > ECHO_MAX)
			return -1;
		bpf_probe_read_kernel(h->buf, len & (ECHO_MAX - 1 + ECHO_MAX), ctx->data);
		if (bpf_ringbuf_output(&bench_ring, h->buf, len & (ECHO_MAX - 1 + ECHO_MAX), BPF_RB_NO_WAKEUP))
			ctx->failed = 1;
		else
			ctx->ok = 1;
		return 0;
	}
	bpf_loop(ctx->count, step, &lc, 0);
	ctx->ok = lc.ok;
	ctx->failed = lc.failed;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
