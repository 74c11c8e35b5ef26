/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Network enforcement: maps and helpers of cgroup/connect4|6 (outbound
 * connect deny, EPERM) and of the XDP entry program (inbound source drop).
 *
 * Every map here is pinned with the rest of the enforcement object
 * (src/sentinel_edge/enforce/netmaps.py registers them) and adopted by a
 * restarted agent.
 *
 * Tries: se_enf_v4_key / se_enf_v6_key, prefixlen = 32 + network prefix
 * length, the generation in the first 32 bits compared. Two kinds of entries:
 *   - policy entries under the policy set's generation (written by apply,
 *     dropped with their generation); the trie answers with the longest
 *     match only, so user space gives a more specific entry the policies of
 *     every covering prefix as well;
 *   - response blocks (a rule's block_address action) under generation 0,
 *     which apply never writes nor drops: they survive every policy flip.
 *     They carry no policy (n = 0) and a deadline, expires_ns, compared with
 *     bpf_ktime_get_boot_ns() here, so a block ends on time with no agent.
 *     A hit on one is reported with gen 0 and policy_idx SE_ENF_IDX_BLOCK.
 * A block is looked up first (it always enforces), then the policy set.
 *
 * Scope of the connect policies is the exec scope (se_enf__choose's rules)
 * plus ports: match_val.ports[i] is the one port of policy idx[i] (0 = every
 * port), or, when the policy has several, SE_ENF_NET_PORT_SET in its scope
 * flags and one se_enf_scope entry {gen, idx, SE_SCOPE_WHAT_PORT, port}
 * per port. Inbound policies apply on the interfaces they name: one
 * se_enf_scope entry {gen, idx, SE_SCOPE_WHAT_IFINDEX, ifindex} each; the
 * task scope means nothing in XDP and is ignored there.
 */
#ifndef SE_ENF_NET_H
#define SE_ENF_NET_H

#include "enforce/enforce.h"
#include <bpf/bpf_endian.h>

#define SE_ENF_AF_INET        2
#define SE_ENF_AF_INET6       10
#define SE_ENF_ETH_P_IP       0x0800
#define SE_ENF_ETH_P_IPV6     0x86DD
#define SE_ENF_ETH_P_8021Q    0x8100
#define SE_ENF_ETH_P_8021AD   0x88A8
#define SE_ENF_XDP_DROP       1
#define SE_ENF_XDP_PASS       2

#define SE_ENF_IDX_BLOCK      0xFFFFFFFFu   /* policy_idx of a response-block hit (gen 0) */
#define SE_ENF_BLOCK_GEN      0             /* generation of the response blocks */
#define SE_ENF_NET_PORT_SET   (1u << 8)     /* se_enf_policy.scope: ports in se_enf_scope */
#define SE_SCOPE_WHAT_PORT    4             /* se_enf_scope_key.what: value = host-order port */
#define SE_SCOPE_WHAT_IFINDEX 5             /* se_enf_scope_key.what: value = ifindex (inbound) */
#define SE_ENF_REPORT_NS      1000000000ULL /* at most one event per source (XDP) or process+destination
                                             * (connect) per second, with the count */
#define SE_ENF_RATE_TASK      0x80000000u   /* se_enf_rate_key.ifindex of a connect report: bit | tgid */
#define SE_ENF_XDP_SLOTS      8             /* se_xdp_next: slot 0 = the network inspector */
#define SE_ENF_NET_ENTRIES    65536         /* per trie: two policy generations during apply + blocks */

/* outbound connect deny, IPv4 (and IPv4-mapped IPv6 destinations of connect6) */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, SE_ENF_NET_ENTRIES);
	__type(key, struct se_enf_v4_key);
	__type(value, struct se_enf_match_val);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} se_enf_conn4 SEC(".maps") __weak;

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, SE_ENF_NET_ENTRIES);
	__type(key, struct se_enf_v6_key);
	__type(value, struct se_enf_match_val);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} se_enf_conn6 SEC(".maps") __weak;

/* inbound source drop (XDP), IPv4 */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, SE_ENF_NET_ENTRIES);
	__type(key, struct se_enf_v4_key);
	__type(value, struct se_enf_match_val);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} se_enf_in4 SEC(".maps") __weak;

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, SE_ENF_NET_ENTRIES);
	__type(key, struct se_enf_v6_key);
	__type(value, struct se_enf_match_val);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} se_enf_in6 SEC(".maps") __weak;

/* what the XDP entry program hands every packet it lets through to: slot 0 is
 * the network inspector's (a later issue); an empty slot means XDP_PASS */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, SE_ENF_XDP_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
} se_xdp_next SEC(".maps") __weak;

/* XDP report rate limit per (interface, source) */
struct se_enf_rate_key {
	__u32 ifindex;
	__u32 family;
	__u8  addr[16];
};

struct se_enf_rate {
	__u64 last_ns;             /* when this source was last reported */
	__u64 pending;             /* packets hit since, not reported yet */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct se_enf_rate_key);
	__type(value, struct se_enf_rate);
} se_enf_xrate SEC(".maps") __weak;

/* keeps the rate-limit types in the object's BTF (mirror tests) */
struct se_enf_net_wire {
	struct se_enf_rate_key rate_key;
	struct se_enf_rate rate;
};
struct se_enf_net_wire se_enf_net_wire_anchor __weak;

/* A trie entry still in force: a response block's deadline is checked here. */
static __always_inline struct se_enf_match_val *se_enf_net__live(struct se_enf_match_val *m, __u64 now)
{
	if (m && m->expires_ns && now >= m->expires_ns)
		return NULL;
	return m;
}

static __always_inline struct se_enf_match_val *se_enf_net__lookup4(void *trie, __u32 gen, const __u8 *addr,
								     __u64 now)
{
	struct se_enf_v4_key k = { .prefixlen = 32 + 32, .gen = gen };
	__builtin_memcpy(k.addr, addr, 4);
	return se_enf_net__live(bpf_map_lookup_elem(trie, &k), now);
}

static __always_inline struct se_enf_match_val *se_enf_net__lookup6(void *trie, __u32 gen, const __u8 *addr,
								     __u64 now)
{
	struct se_enf_v6_key k = { .prefixlen = 32 + 128, .gen = gen };
	__builtin_memcpy(k.addr, addr, 16);
	return se_enf_net__live(bpf_map_lookup_elem(trie, &k), now);
}

/*
 * Connect: pick the policy of a matched entry that applies to this port and
 * task, enforcing ones first (se_enf__choose plus the port check).
 */
static __always_inline int se_enf_net__choose(__u32 gen, const struct se_enf_match_val *m, __u16 port,
					      const struct se_proc *p, struct task_struct *task,
					      __u32 *enforce)
{
	int audit_idx = -1;
	__u32 n = m->n;
	for (__u32 i = 0; i < SE_ENF_MATCH_MAX; i++) {
		if (i >= n)
			break;
		__u16 want = m->ports[i];
		if (want && want != port)
			continue;
		struct se_enf_policy_key pk = { .gen = gen, .idx = m->idx[i] };
		struct se_enf_policy *pol = bpf_map_lookup_elem(&se_enf_policies, &pk);
		if (!pol)
			continue;
		if ((pol->scope & SE_ENF_NET_PORT_SET) &&
		    !se_enf__scope_has(gen, pk.idx, SE_SCOPE_WHAT_PORT, port, 0))
			continue;
		if (!se_enf__in_scope(gen, pk.idx, pol, p, task))
			continue;
		if (pol->enforce) {
			*enforce = 1;
			return pk.idx;
		}
		if (audit_idx < 0)
			audit_idx = pk.idx;
	}
	*enforce = 0;
	return audit_idx;
}

/*
 * Is a report of this source due (XDP: per interface; connect: per process)? Returns the packets to report (this
 * one and those hit since the last report) or 0 while the source was
 * reported less than SE_ENF_REPORT_NS ago (the packet is then counted).
 */
static __always_inline __u32 se_enf_net__report_due(__u32 ifindex, __u32 family, const __u8 *addr, __u64 now)
{
	struct se_enf_rate_key k = { .ifindex = ifindex, .family = family };
	if (family == SE_ENF_AF_INET)
		__builtin_memcpy(k.addr, addr, 4);
	else
		__builtin_memcpy(k.addr, addr, 16);
	struct se_enf_rate *r = bpf_map_lookup_elem(&se_enf_xrate, &k);
	if (!r) {
		struct se_enf_rate fresh = { .last_ns = now, .pending = 0 };
		bpf_map_update_elem(&se_enf_xrate, &k, &fresh, BPF_NOEXIST);
		return 1;
	}
	__u64 last = r->last_ns;
	if (now - last < SE_ENF_REPORT_NS ||
	    __sync_val_compare_and_swap(&r->last_ns, last, now) != last) {
		__sync_fetch_and_add(&r->pending, 1);
		return 0;
	}
	__u64 pending = __sync_lock_test_and_set(&r->pending, 0);
	return pending >= 0xFFFFFFFFULL ? 0xFFFFFFFFu : (__u32)pending + 1;
}

/*
 * The decision of cgroup/connect4|6 for a destination already looked up:
 * `block` (generation 0) and `m` (active generation), either may be NULL.
 * Returns 1 to let the connect go on, 0 to fail it with EPERM.
 */
static __always_inline int se_enf_net__connect(struct bpf_sock_addr *ctx, const struct se_enf_state *st,
					       __u32 family, const __u8 *addr, __u16 port,
					       struct se_enf_match_val *block, struct se_enf_match_val *m)
{
	struct se_heap *heap = se_heap__get();
	if (!heap)
		return 1;
	struct se_enforce *ev = se_event__init(heap, SE_EV_ENFORCE, sizeof(struct se_enforce));
	if (!ev)
		return 1;
	struct task_struct *task = bpf_get_current_task_btf();
	__u32 gen = st->active_gen;
	__u32 enforce = 0;
	int idx;
	if (block) {
		gen = SE_ENF_BLOCK_GEN;
		idx = (int)SE_ENF_IDX_BLOCK;
		enforce = 1;
	} else {
		idx = se_enf_net__choose(gen, m, port, &ev->proc, task, &enforce);
		if (idx < 0)
			return 1;
	}
	se_enf__count(SE_ENF_STAT_HITS);

	struct inode *inode = BPF_CORE_READ(task, mm, exe_file, f_inode);
	__u32 dev = inode ? se_enf__dev(inode) : 0;
	__u64 ino = inode ? BPF_CORE_READ(inode, i_ino) : 0;
	ev->kind = SE_ENF_CONNECT;
	ev->policy_idx = idx;
	ev->gen = gen;
	ev->match = SE_ENF_BY_NETWORK;
	ev->dev = dev;
	ev->ino = ino;
	ev->igen = inode ? BPF_CORE_READ(inode, i_generation) : 0;
	ev->family = family;
	ev->port = port;
	ev->protocol = ctx->protocol;
	if (family == SE_ENF_AF_INET)
		__builtin_memcpy(ev->addr, addr, 4);
	else
		__builtin_memcpy(ev->addr, addr, 16);

	int allow = 1;
	if (enforce && st->armed) {
		if (se_enf__protected_task(task, st) || (inode && se_enf__safe_exe(dev, ino))) {
			se_enf__count(SE_ENF_STAT_SPARED);
			ev->action = SE_ENF_ACT_AUDIT;
			ev->result = -1;               /* EPERM: not allowed to act on this task */
		} else {
			ev->action = SE_ENF_ACT_DENY;
			se_enf__count(SE_ENF_STAT_DENIES);
			allow = 0;
		}
	} else {
		ev->action = SE_ENF_ACT_AUDIT;
		se_enf__count(SE_ENF_STAT_AUDITS);
	}
	/* a process retrying a denied destination is reported once a second, with the count */
	__u32 due = se_enf_net__report_due(SE_ENF_RATE_TASK | (ev->proc.pid & 0x7fffffff), family, addr,
					   bpf_ktime_get_boot_ns());
	if (due) {
		ev->count = due;
		se_enf__emit(heap, sizeof(struct se_enforce));
	}
	return allow;
}

/* XDP: pick the policy of a matched entry that names this interface, enforcing ones first. */
static __always_inline int se_enf_net__choose_if(__u32 gen, const struct se_enf_match_val *m, __u32 ifindex,
						 __u32 *enforce)
{
	int audit_idx = -1;
	__u32 n = m->n;
	for (__u32 i = 0; i < SE_ENF_MATCH_MAX; i++) {
		if (i >= n)
			break;
		struct se_enf_policy_key pk = { .gen = gen, .idx = m->idx[i] };
		struct se_enf_policy *pol = bpf_map_lookup_elem(&se_enf_policies, &pk);
		if (!pol || !se_enf__scope_has(gen, pk.idx, SE_SCOPE_WHAT_IFINDEX, ifindex, 0))
			continue;
		if (pol->enforce) {
			*enforce = 1;
			return pk.idx;
		}
		if (audit_idx < 0)
			audit_idx = pk.idx;
	}
	*enforce = 0;
	return audit_idx;
}

/*
 * XDP: the verdict for a packet from `addr`, with its report. Returns
 * SE_ENF_XDP_DROP or SE_ENF_XDP_PASS. No task context: se_proc stays zero.
 */
static __always_inline int se_enf_net__inbound(struct xdp_md *ctx, __u32 family, const __u8 *addr, __u16 proto)
{
	struct se_enf_state *st = se_enf__state();
	if (!st)
		return SE_ENF_XDP_PASS;
	__u64 now = bpf_ktime_get_boot_ns();
	struct se_enf_match_val *m;
	__u32 gen = SE_ENF_BLOCK_GEN;
	__u32 enforce = 1;
	int idx = (int)SE_ENF_IDX_BLOCK;
	if (family == SE_ENF_AF_INET)
		m = se_enf_net__lookup4(&se_enf_in4, SE_ENF_BLOCK_GEN, addr, now);
	else
		m = se_enf_net__lookup6(&se_enf_in6, SE_ENF_BLOCK_GEN, addr, now);
	if (!m) {
		gen = st->active_gen;
		if (!gen)
			return SE_ENF_XDP_PASS;
		if (family == SE_ENF_AF_INET)
			m = se_enf_net__lookup4(&se_enf_in4, gen, addr, now);
		else
			m = se_enf_net__lookup6(&se_enf_in6, gen, addr, now);
		if (!m)
			return SE_ENF_XDP_PASS;
		idx = se_enf_net__choose_if(gen, m, ctx->ingress_ifindex, &enforce);
		if (idx < 0)
			return SE_ENF_XDP_PASS;
	}
	se_enf__count(SE_ENF_STAT_HITS);
	int drop = enforce && st->armed;
	se_enf__count(drop ? SE_ENF_STAT_DROPS : SE_ENF_STAT_AUDITS);

	__u32 count = se_enf_net__report_due(ctx->ingress_ifindex, family, addr, now);
	if (!count)
		return drop ? SE_ENF_XDP_DROP : SE_ENF_XDP_PASS;
	struct se_heap *heap = se_heap__get();
	if (!heap)
		return drop ? SE_ENF_XDP_DROP : SE_ENF_XDP_PASS;
	/* se_event__init reads the current task: meaningless here, so build the header alone */
	for (__u32 i = 0; i < (sizeof(struct se_enforce) + 7) / 8; i++)
		((__u64 *)heap->buf)[i] = 0;
	struct se_enforce *ev = (struct se_enforce *)heap->buf;
	ev->hdr.type = SE_EV_ENFORCE;
	ev->hdr.cpu = bpf_get_smp_processor_id();
	ev->hdr.ts_ns = now;
	ev->kind = SE_ENF_INBOUND;
	ev->action = drop ? SE_ENF_ACT_DROP : SE_ENF_ACT_AUDIT;
	ev->policy_idx = idx;
	ev->gen = gen;
	ev->match = SE_ENF_BY_NETWORK;
	ev->family = family;
	ev->protocol = proto;
	if (family == SE_ENF_AF_INET)
		__builtin_memcpy(ev->addr, addr, 4);
	else
		__builtin_memcpy(ev->addr, addr, 16);
	ev->ifindex = ctx->ingress_ifindex;
	ev->count = count;
	se_enf__emit(heap, sizeof(struct se_enforce));
	return drop ? SE_ENF_XDP_DROP : SE_ENF_XDP_PASS;
}

/*
 * The connect / sendmsg decision (cgroup sock_addr hooks), shared by
 * connect4|6 and sendmsg4|6: unconnected UDP sendto() names its destination
 * per datagram and never passes connect, so it is checked at sendmsg.
 */
static __always_inline int se_enf_net__check4(struct bpf_sock_addr *ctx)
{
	struct se_enf_state *st = se_enf__state();
	if (!st)
		return 1;
	__u64 now = bpf_ktime_get_boot_ns();
	__u32 ip = ctx->user_ip4;              /* network order, as the trie stores it */
	__u8 *addr = (__u8 *)&ip;
	__u16 port = bpf_ntohs((__u16)ctx->user_port);

	struct se_enf_match_val *block = se_enf_net__lookup4(&se_enf_conn4, SE_ENF_BLOCK_GEN, addr, now);
	struct se_enf_match_val *m = NULL;
	if (!block) {
		if (!st->active_gen)
			return 1;
		m = se_enf_net__lookup4(&se_enf_conn4, st->active_gen, addr, now);
		if (!m)
			return 1;
	}
	return se_enf_net__connect(ctx, st, SE_ENF_AF_INET, addr, port, block, m);
}

static __always_inline int se_enf_net__check6(struct bpf_sock_addr *ctx)
{
	struct se_enf_state *st = se_enf__state();
	if (!st)
		return 1;
	__u64 now = bpf_ktime_get_boot_ns();
	__u32 ip6[4];
	ip6[0] = ctx->user_ip6[0];
	ip6[1] = ctx->user_ip6[1];
	ip6[2] = ctx->user_ip6[2];
	ip6[3] = ctx->user_ip6[3];
	__u16 port = bpf_ntohs((__u16)ctx->user_port);

	if (ip6[0] == 0 && ip6[1] == 0 && ip6[2] == bpf_htonl(0x0000ffff)) {
		__u8 *addr = (__u8 *)&ip6[3];
		struct se_enf_match_val *block = se_enf_net__lookup4(&se_enf_conn4, SE_ENF_BLOCK_GEN, addr, now);
		struct se_enf_match_val *m = NULL;
		if (!block) {
			if (!st->active_gen)
				return 1;
			m = se_enf_net__lookup4(&se_enf_conn4, st->active_gen, addr, now);
			if (!m)
				return 1;
		}
		return se_enf_net__connect(ctx, st, SE_ENF_AF_INET, addr, port, block, m);
	}

	__u8 *addr = (__u8 *)ip6;
	struct se_enf_match_val *block = se_enf_net__lookup6(&se_enf_conn6, SE_ENF_BLOCK_GEN, addr, now);
	struct se_enf_match_val *m = NULL;
	if (!block) {
		if (!st->active_gen)
			return 1;
		m = se_enf_net__lookup6(&se_enf_conn6, st->active_gen, addr, now);
		if (!m)
			return 1;
	}
	return se_enf_net__connect(ctx, st, SE_ENF_AF_INET6, addr, port, block, m);
}

#endif /* SE_ENF_NET_H */
