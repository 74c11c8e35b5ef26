// SPDX-License-Identifier: GPL-2.0
/*
 * ni_xdp: the network inspector's ingress detections, tail-called from slot 0
 * of the enforcement entry program's se_xdp_next (bpf/enforce/xdp_entry.bpf.c)
 * for every packet that program lets through. Per window of
 * se_ni_cfg.window_ns it counts, per source, TCP SYNs without ACK, ICMP /
 * ICMPv6 echo requests and distinct (protocol, destination port) pairs of
 * SYNs and UDP datagrams (port scan), and SYNs of every source together
 * (spoofed floods); a count that reaches its threshold exactly emits one
 * se_netdet, so each kind reports at most once per window and source.
 * Counts are atomic adds on shared entries (every CPU counts into one).
 * Always XDP_PASS: drops are the entry program's, through the deny tries
 * user space fills in response.
 */
#include "netinspect/ni.h"

static __always_inline int se_ni__window_over(__u64 now, __u64 start, __u64 win)
{
	return (__s64)(now - start) >= (__s64)win;   /* another CPU may have started it just after `now` */
}

static __always_inline void se_ni__report(struct xdp_md *ctx, __u32 kind, const struct se_ni_pkt *p,
					  int with_src, __u64 count, __u64 threshold, __u64 start, __u64 now)
{
	struct se_netdet *ev = bpf_ringbuf_reserve(&se_ni_ring, sizeof(struct se_netdet), 0);
	if (!ev) {
		se_ni__count(SE_NI_HOOK_XDP, SE_NI_C_RING_DROPPED, 1);
		return;
	}
	__builtin_memset(ev, 0, sizeof(struct se_netdet));
	ev->hdr.type = SE_EV_NETDET;
	ev->hdr.size = sizeof(struct se_netdet);
	ev->hdr.cpu = bpf_get_smp_processor_id();
	ev->hdr.ts_ns = now;
	ev->kind = kind;
	ev->ifindex = ctx->ingress_ifindex;
	ev->protocol = p->proto;
	if (p->proto == SE_NI_PROTO_TCP || p->proto == SE_NI_PROTO_UDP)
		ev->port = p->dport;
	if (with_src) {
		ev->family = p->family;
		__builtin_memcpy(ev->saddr, p->saddr, 16);
	}
	__builtin_memcpy(ev->daddr, p->daddr, 16);
	ev->count = count;
	ev->threshold = threshold;
	ev->window_ns = se_ni_cfg.window_ns;
	ev->window_start_ns = start;
	bpf_ringbuf_submit(ev, BPF_RB_NO_WAKEUP);
	se_ni__count(SE_NI_HOOK_XDP, SE_NI_C_DETECTION, 1);
}

/* SYNs of every source in the window (SE_NI_DET_SYN_FLOOD_ALL) */
static __always_inline void se_ni__syn_all(struct xdp_md *ctx, const struct se_ni_pkt *p, __u64 now, __u64 win)
{
	__u32 zero = 0;
	struct se_ni_agg *a = bpf_map_lookup_elem(&se_ni_agg, &zero);
	if (!a)
		return;
	__u64 start = a->window_start_ns;
	if (!start || se_ni__window_over(now, start, win)) {
		if (__sync_val_compare_and_swap(&a->window_start_ns, start, now) == start)
			__sync_lock_test_and_set(&a->syn, 0);
		start = a->window_start_ns;
	}
	__u64 thr = se_ni_cfg.syn_all_threshold;
	__u64 n = __sync_fetch_and_add(&a->syn, 1) + 1;
	if (n == thr)
		se_ni__report(ctx, SE_NI_DET_SYN_FLOOD_ALL, p, 0, n, thr, start, now);
}

/* a (protocol, port) not yet counted in this source's window: 1 when this packet counted it */
static __always_inline int se_ni__new_port(const struct se_ni_pkt *p, __u64 start)
{
	struct se_ni_port_key k = {};
	k.family = p->family;
	__builtin_memcpy(k.addr, p->saddr, 16);
	k.proto = p->proto;
	k.port = p->dport;
	__u64 *seen = bpf_map_lookup_elem(&se_ni_ports, &k);
	if (!seen)
		return bpf_map_update_elem(&se_ni_ports, &k, &start, BPF_NOEXIST) == 0;
	__u64 old = *seen;
	if (old == start)
		return 0;
	return __sync_val_compare_and_swap(seen, old, start) == old;
}

static __always_inline void se_ni__detect(struct xdp_md *ctx, const struct se_ni_pkt *p)
{
	__u64 win = se_ni_cfg.window_ns;
	if (!win)
		return;
	__u8 proto = p->proto;
	int syn = proto == SE_NI_PROTO_TCP &&
		  (p->tcp_flags & (SE_NI_TCP_SYN | SE_NI_TCP_ACK)) == SE_NI_TCP_SYN;
	int echo = (proto == SE_NI_PROTO_ICMP && p->family == SE_NI_AF_INET && p->icmp_type == SE_NI_ICMP_ECHO) ||
		   (proto == SE_NI_PROTO_ICMPV6 && p->family == SE_NI_AF_INET6 &&
		    p->icmp_type == SE_NI_ICMP6_ECHO);
	int scan = (syn || proto == SE_NI_PROTO_UDP) && se_ni_cfg.scan_ports_threshold;
	__u64 now = bpf_ktime_get_boot_ns();
	if (syn && se_ni_cfg.syn_all_threshold)
		se_ni__syn_all(ctx, p, now, win);
	if (!((syn && se_ni_cfg.syn_src_threshold) || (echo && se_ni_cfg.icmp_threshold) || scan))
		return;

	struct se_ni_src_key k = {};
	k.family = p->family;
	__builtin_memcpy(k.addr, p->saddr, 16);
	struct se_ni_src *s = bpf_map_lookup_elem(&se_ni_src, &k);
	if (!s) {
		struct se_ni_src fresh = { .window_start_ns = now };
		bpf_map_update_elem(&se_ni_src, &k, &fresh, BPF_NOEXIST);
		s = bpf_map_lookup_elem(&se_ni_src, &k);
		if (!s)
			return;
	}
	__u64 start = s->window_start_ns;
	if (se_ni__window_over(now, start, win)) {
		if (__sync_val_compare_and_swap(&s->window_start_ns, start, now) == start) {
			__sync_lock_test_and_set(&s->syn, 0);
			__sync_lock_test_and_set(&s->icmp, 0);
			__sync_lock_test_and_set(&s->ports, 0);
		}
		start = s->window_start_ns;
	}
	if (syn && se_ni_cfg.syn_src_threshold) {
		__u64 thr = se_ni_cfg.syn_src_threshold;
		__u64 n = __sync_fetch_and_add(&s->syn, 1) + 1;
		if (n == thr)
			se_ni__report(ctx, SE_NI_DET_SYN_FLOOD_SRC, p, 1, n, thr, start, now);
	}
	if (echo && se_ni_cfg.icmp_threshold) {
		__u64 thr = se_ni_cfg.icmp_threshold;
		__u64 n = __sync_fetch_and_add(&s->icmp, 1) + 1;
		if (n == thr)
			se_ni__report(ctx, SE_NI_DET_ICMP_FLOOD, p, 1, n, thr, start, now);
	}
	if (scan && se_ni__new_port(p, start)) {
		__u64 thr = se_ni_cfg.scan_ports_threshold;
		__u64 n = __sync_fetch_and_add(&s->ports, 1) + 1;
		if (n == thr)
			se_ni__report(ctx, SE_NI_DET_PORT_SCAN, p, 1, n, thr, start, now);
	}
}

SEC("xdp")
int ni_xdp(struct xdp_md *ctx)
{
	se_ni__count(SE_NI_HOOK_XDP, SE_NI_C_PACKETS, 1);
	se_ni__count(SE_NI_HOOK_XDP, SE_NI_C_BYTES, bpf_xdp_get_buff_len(ctx));
	struct se_ni_pkt *p = se_ni__scratch(SE_NI_HOOK_XDP);
	if (!p)
		return XDP_PASS;
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	int why = se_ni__parse(data, end, p);
	if (why) {
		se_ni__count(SE_NI_HOOK_XDP, why, 1);
		return XDP_PASS;
	}
	se_ni__detect(ctx, p);
	return XDP_PASS;
}

SE_NI_LICENSE;
