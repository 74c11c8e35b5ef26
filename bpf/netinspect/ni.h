/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The network inspector (netinspect.bpf.o): maps, settings and the packet
 * parser shared by its three programs, declared once.
 *
 *   xdp.bpf.c         ni_xdp         ingress, tail-called from slot 0 of the enforcement
 *                                    entry program's se_xdp_next: detections (se_netdet)
 *   tc_ingress.bpf.c  ni_tc_ingress  clsact ingress: flow table, DNS copies (se_dns)
 *   tc_egress.bpf.c   ni_tc_egress   clsact egress: the same, plus the socket cookie
 *
 * Definitions are __weak so the BPF static linker (bpftool gen object)
 * merges the three copies into one instance. The wire structs and enums are
 * in shared/events.h ("network inspector"); settings are the .rodata
 * se_ni_cfg the loader writes before load (netinspect/kernel.py).
 *
 * Verifier shape: the parser writes what it finds into a per-CPU scratch
 * struct in map memory (one slot per hook). Values read back from map memory
 * are unknown scalars to the verifier, so the paths through the VLAN tags
 * and the IPv6 extension headers (bounded, unrolled) converge instead of
 * multiplying the states of everything after them; offsets read back are
 * bounded again before they touch the packet. No program ever drops: a
 * parse failure increments exactly one counter of its hook and the packet
 * passes.
 */
#ifndef SE_NI_H
#define SE_NI_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "shared/events.h"

#define SE_NI_AF_INET        2
#define SE_NI_AF_INET6       10
#define SE_NI_ETH_P_IP       0x0800
#define SE_NI_ETH_P_IPV6     0x86DD
#define SE_NI_ETH_P_8021Q    0x8100
#define SE_NI_ETH_P_8021AD   0x88A8
#define SE_NI_PROTO_ICMP     1
#define SE_NI_PROTO_TCP      6
#define SE_NI_PROTO_UDP      17
#define SE_NI_PROTO_ICMPV6   58
#define SE_NI_TC_ACT_OK      0
#define SE_NI_DNS_PORT       53
#define SE_NI_TCP_FIN        0x01
#define SE_NI_TCP_SYN        0x02
#define SE_NI_TCP_RST        0x04
#define SE_NI_TCP_ACK        0x10
#define SE_NI_ICMP_ECHO      8      /* ICMP echo request / reply types */
#define SE_NI_ICMP_ECHOREPLY 0
#define SE_NI_ICMP6_ECHO     128
#define SE_NI_ICMP6_ECHOREPLY 129
#define SE_NI_OFF_MAX        0x4000 /* largest header offset the parser follows (16 KiB) */
#define SE_NI_SRC_ENTRIES    32768  /* sources tracked by the detections */
#define SE_NI_PORT_ENTRIES   65536  /* (source, protocol, port) seen in the current window */
#define SE_NI_LICENSE char LICENSE[] SEC("license") __weak = "Dual BSD/GPL"

/* Settings, written by the loader into .rodata before load. */
const volatile struct se_ni_config se_ni_cfg __weak = {};

/* se_netdet and se_dns records; size set by the loader (NiSettings.ring_bytes) */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} se_ni_ring SEC(".maps") __weak;

/* enum se_ni_counter per hook: index hook * SE_NI_C_MAX + counter */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SE_NI_HOOK_MAX * SE_NI_C_MAX);
	__type(key, __u32);
	__type(value, __u64);
} se_ni_counters SEC(".maps") __weak;

/* the flow table (TC): both directions of a connection in one entry; size set by the loader */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct se_ni_flow_key);
	__type(value, struct se_ni_flow);
} se_ni_flows SEC(".maps") __weak;

/* ---- detection state (XDP) ------------------------------------------------ */

/* a source address */
struct se_ni_src_key {
	__u32 family;
	__u8  addr[16];
};

/* a source's counts in its current window (atomic adds: every CPU counts into one entry) */
struct se_ni_src {
	__u64 window_start_ns;
	__u64 syn;                 /* TCP SYN without ACK */
	__u64 icmp;                /* ICMP / ICMPv6 echo requests */
	__u64 ports;               /* distinct (protocol, destination port) */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SE_NI_SRC_ENTRIES);
	__type(key, struct se_ni_src_key);
	__type(value, struct se_ni_src);
} se_ni_src SEC(".maps") __weak;

/* one (source, protocol, destination port): value = the source window it was last counted in */
struct se_ni_port_key {
	__u32 family;
	__u8  addr[16];
	__u16 proto;
	__u16 port;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SE_NI_PORT_ENTRIES);
	__type(key, struct se_ni_port_key);
	__type(value, __u64);
} se_ni_ports SEC(".maps") __weak;

/* the aggregate SYN count of every source (spoofed floods) */
struct se_ni_agg {
	__u64 window_start_ns;
	__u64 syn;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct se_ni_agg);
} se_ni_agg SEC(".maps") __weak;

/* ---- the parser's output ---------------------------------------------------- */

/* what the parser found in one packet; offsets are from the start of the packet (Ethernet header) */
struct se_ni_pkt {
	__u8  saddr[16];
	__u8  daddr[16];
	__u32 l3_off;
	__u32 l4_off;              /* L4 header (walking the IPv6 extension headers: the next one) */
	__u32 payload_off;         /* L4 payload */
	__u32 payload_len;         /* by the IP lengths, 0 when they say less than the headers */
	__u32 ip_end;              /* l3_off + IP total length */
	__u32 ip_bytes;            /* IPv4 total length, IPv6 payload length + 40 */
	__u16 sport;               /* host order; 0 when the protocol has no ports */
	__u16 dport;
	__u16 icmp_id;             /* echo id (echo request / reply), else 0 */
	__u8  family;
	__u8  proto;
	__u8  tcp_flags;
	__u8  icmp_type;
	__u8  icmp_code;
	__u8  nexthdr;             /* IPv6: next header while walking the extension headers */
};

/* slot per hook: XDP, TC ingress and TC egress never share one on a CPU */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SE_NI_HOOK_MAX);
	__type(key, __u32);
	__type(value, struct se_ni_pkt);
} se_ni_scratch SEC(".maps") __weak;

/* keeps every network-inspector wire type in the object's BTF (decoder and mirror tests read it) */
struct se_ni_wire {
	struct se_netdet netdet;
	struct se_dns dns;
	struct se_ni_flow_key flow_key;
	struct se_ni_flow flow;
	struct se_ni_config config;
	struct se_ni_src_key src_key;
	struct se_ni_src src;
	struct se_ni_port_key port_key;
	struct se_ni_agg agg;
	enum se_event_type event_type;
	enum se_ni_hook hook;
	enum se_ni_counter counter;
	enum se_ni_det_kind det_kind;
	enum se_ni_dir dir;
	enum se_ni_initiator initiator;
	enum se_ni_dns_flags dns_flags;
};
struct se_ni_wire se_ni_wire_anchor __weak;

/* ---- helpers --------------------------------------------------------------- */

static __always_inline void se_ni__count(__u32 hook, __u32 counter, __u64 n)
{
	__u32 key = hook * SE_NI_C_MAX + counter;
	__u64 *v = bpf_map_lookup_elem(&se_ni_counters, &key);
	if (v)
		*v += n;                 /* per CPU: no other writer */
}

static __always_inline struct se_ni_pkt *se_ni__scratch(__u32 hook)
{
	__u32 key = hook;
	return bpf_map_lookup_elem(&se_ni_scratch, &key);
}

static __always_inline int se_ni__is_ext(__u8 nh)
{
	return nh == 0 || nh == 43 || nh == 44 || nh == 60 || nh == 51;
}

/* TCP / UDP / ICMP header at p->l4_off (bounded again here), up to the payload. */
static __always_inline int se_ni__l4(void *data, void *end, struct se_ni_pkt *p)
{
	__u32 l4 = p->l4_off;
	if (l4 > SE_NI_OFF_MAX)
		return SE_NI_C_BAD_L4;
	__u8 *h = data + l4;
	__u32 hlen = 0;
	__u8 proto = p->proto;
	if (proto == SE_NI_PROTO_TCP) {
		if ((void *)(h + 20) > end)
			return SE_NI_C_BAD_L4;
		__u32 doff = h[12] >> 4;
		if (doff < 5)
			return SE_NI_C_BAD_L4;
		p->sport = ((__u16)h[0] << 8) | h[1];
		p->dport = ((__u16)h[2] << 8) | h[3];
		p->tcp_flags = h[13];
		hlen = doff * 4;
	} else if (proto == SE_NI_PROTO_UDP) {
		if ((void *)(h + 8) > end)
			return SE_NI_C_BAD_L4;
		p->sport = ((__u16)h[0] << 8) | h[1];
		p->dport = ((__u16)h[2] << 8) | h[3];
		hlen = 8;
	} else if ((proto == SE_NI_PROTO_ICMP && p->family == SE_NI_AF_INET) ||
		   (proto == SE_NI_PROTO_ICMPV6 && p->family == SE_NI_AF_INET6)) {
		if ((void *)(h + 8) > end)
			return SE_NI_C_BAD_L4;
		__u8 type = h[0];
		p->icmp_type = type;
		p->icmp_code = h[1];
		if (type == SE_NI_ICMP_ECHO || type == SE_NI_ICMP_ECHOREPLY ||
		    type == SE_NI_ICMP6_ECHO || type == SE_NI_ICMP6_ECHOREPLY)
			p->icmp_id = ((__u16)h[4] << 8) | h[5];
		hlen = 8;
	}
	__u32 poff = l4 + hlen;
	p->payload_off = poff;
	__u32 ip_end = p->ip_end;
	p->payload_len = ip_end > poff ? ip_end - poff : 0;
	return 0;
}

static __always_inline int se_ni__ipv4(void *data, void *end, struct se_ni_pkt *p)
{
	__u32 off = p->l3_off;
	if (off > 64)
		return SE_NI_C_BAD_L2;
	__u8 *ip = data + off;
	if ((void *)(ip + 20) > end)
		return SE_NI_C_BAD_IPV4;
	if ((ip[0] >> 4) != 4)
		return SE_NI_C_BAD_IPV4;
	__u32 hl = (ip[0] & 0x0f) * 4;
	if (hl < 20)
		return SE_NI_C_BAD_IHL;
	if ((void *)(ip + hl) > end)
		return SE_NI_C_BAD_IHL;
	__u32 tot = ((__u32)ip[2] << 8) | ip[3];
	if (tot < hl)
		return SE_NI_C_BAD_IPV4;
	p->family = SE_NI_AF_INET;
	p->proto = ip[9];
	__builtin_memcpy(p->saddr, ip + 12, 4);
	__builtin_memcpy(p->daddr, ip + 16, 4);
	p->ip_bytes = tot;
	p->ip_end = off + tot;
	if ((((__u32)ip[6] << 8) | ip[7]) & 0x1fff)
		return SE_NI_C_FRAGMENT;
	p->l4_off = off + hl;
	return se_ni__l4(data, end, p);
}

static __always_inline int se_ni__ipv6(void *data, void *end, struct se_ni_pkt *p)
{
	__u32 off = p->l3_off;
	if (off > 64)
		return SE_NI_C_BAD_L2;
	__u8 *ip = data + off;
	if ((void *)(ip + 40) > end)
		return SE_NI_C_BAD_IPV6;
	if ((ip[0] >> 4) != 6)
		return SE_NI_C_BAD_IPV6;
	__u32 plen = ((__u32)ip[4] << 8) | ip[5];
	p->family = SE_NI_AF_INET6;
	__builtin_memcpy(p->saddr, ip + 8, 16);
	__builtin_memcpy(p->daddr, ip + 24, 16);
	p->ip_bytes = plen + 40;
	p->ip_end = off + 40 + plen;
	p->nexthdr = ip[6];
	p->l4_off = off + 40;
#pragma unroll
	for (int i = 0; i < SE_NI_IPV6_EXT_MAX; i++) {
		__u8 nh = p->nexthdr;
		if (!se_ni__is_ext(nh))
			break;
		__u32 at = p->l4_off;
		if (at > SE_NI_OFF_MAX)
			return SE_NI_C_BAD_IPV6;
		__u8 *h = data + at;
		if ((void *)(h + 8) > end)
			return SE_NI_C_BAD_IPV6;
		__u32 len;
		if (nh == 44) {                          /* fragment */
			if ((((__u32)h[2] << 8) | h[3]) & 0xfff8) {
				p->proto = h[0];
				return SE_NI_C_FRAGMENT;
			}
			len = 8;
		} else if (nh == 51) {                   /* AH: 4-byte units, minus 2 */
			len = ((__u32)h[1] + 2) * 4;
		} else {
			len = ((__u32)h[1] + 1) * 8;
		}
		if ((void *)(h + len) > end)
			return SE_NI_C_BAD_IPV6;         /* the header claims more than the packet holds */
		p->nexthdr = h[0];
		p->l4_off = at + len;
	}
	if (se_ni__is_ext(p->nexthdr))
		return SE_NI_C_IPV6_EXT_LIMIT;
	p->proto = p->nexthdr;
	return se_ni__l4(data, end, p);
}

/*
 * Parse one packet from its Ethernet header into p (zeroed first). Returns 0
 * when the L3 and L4 headers were read (a protocol without ports included),
 * else the counter of the reason (SE_NI_C_NON_IP, SE_NI_C_FRAGMENT, SE_NI_C_BAD_*).
 */
static __always_inline int se_ni__parse(void *data, void *end, struct se_ni_pkt *p)
{
	__builtin_memset(p, 0, sizeof(*p));
	__u8 *eth = data;
	if ((void *)(eth + 14) > end)
		return SE_NI_C_BAD_L2;
	__u16 proto = ((__u16)eth[12] << 8) | eth[13];
	__u32 off = 14;
#pragma unroll
	for (int i = 0; i < SE_NI_VLAN_MAX; i++) {
		if (proto != SE_NI_ETH_P_8021Q && proto != SE_NI_ETH_P_8021AD)
			break;
		__u8 *vh = data + off;
		if ((void *)(vh + 4) > end)
			return SE_NI_C_BAD_L2;
		proto = ((__u16)vh[2] << 8) | vh[3];
		off += 4;
	}
	if (proto == SE_NI_ETH_P_8021Q || proto == SE_NI_ETH_P_8021AD)
		return SE_NI_C_BAD_L2;
	p->l3_off = off;
	if (proto == SE_NI_ETH_P_IP)
		return se_ni__ipv4(data, end, p);
	if (proto == SE_NI_ETH_P_IPV6)
		return se_ni__ipv6(data, end, p);
	return SE_NI_C_NON_IP;
}

/* ---- TC: flow table and DNS -------------------------------------------------- */

static __always_inline int se_ni__is_echo(const struct se_ni_pkt *p)
{
	__u8 t = p->icmp_type;
	if (p->family == SE_NI_AF_INET)
		return t == SE_NI_ICMP_ECHO || t == SE_NI_ICMP_ECHOREPLY;
	return t == SE_NI_ICMP6_ECHO || t == SE_NI_ICMP6_ECHOREPLY;
}

/*
 * Is an egress packet sent by the socket of the flow's local end? Not SYN-ACKs
 * (a request socket's), RSTs and pure ACKs (also sent by the namespace's
 * control socket, for TIME_WAIT), nor ICMP other than echo requests (replies
 * and errors come from the kernel's ICMP socket): their cookie would name no
 * process, or the wrong one.
 */
static __always_inline int se_ni__owned(const struct se_ni_pkt *p)
{
	__u8 flags = p->tcp_flags;
	if (p->proto == SE_NI_PROTO_TCP)
		return !(flags & SE_NI_TCP_RST) &&
		       ((flags & (SE_NI_TCP_SYN | SE_NI_TCP_ACK)) == SE_NI_TCP_SYN || (flags & SE_NI_TCP_FIN) ||
			p->payload_len > 0);
	if ((p->proto == SE_NI_PROTO_ICMP && p->family == SE_NI_AF_INET) ||
	    (p->proto == SE_NI_PROTO_ICMPV6 && p->family == SE_NI_AF_INET6))
		return p->icmp_type == SE_NI_ICMP_ECHO || p->icmp_type == SE_NI_ICMP6_ECHO;
	return 1;
}

/*
 * Wire packets and L3 bytes of one skb. TC sees TCP's GSO packets before they
 * are cut into segments (egress: TCP always builds them, whatever the device
 * offloads) and GRO packets after they were merged (ingress): gso_segs
 * segments, each with the headers again, which the one IP header of the skb
 * counts once.
 */
static __always_inline void se_ni__wire(struct __sk_buff *skb, const struct se_ni_pkt *p, __u64 *pkts,
					__u64 *bytes)
{
	__u32 segs = skb->gso_size ? skb->gso_segs : 1;
	if (segs == 0)
		segs = 1;
	if (segs > 0xffff)
		segs = 0xffff;
	__u32 hdr = p->payload_off > p->l3_off ? p->payload_off - p->l3_off : 0;
	if (hdr > SE_NI_OFF_MAX)
		hdr = SE_NI_OFF_MAX;
	*pkts = segs;
	*bytes = (__u64)p->ip_bytes + (__u64)(segs - 1) * hdr;
}

static __always_inline void se_ni__flow(struct __sk_buff *skb, __u32 hook, __u32 dir, struct se_ni_pkt *p,
					__u64 now)
{
	struct se_ni_flow_key k = {};
	k.ifindex = skb->ifindex;
	k.family = p->family;
	k.proto = p->proto;
	if (dir == SE_NI_DIR_IN) {
		k.lport = p->dport;
		k.rport = p->sport;
		__builtin_memcpy(k.laddr, p->daddr, 16);
		__builtin_memcpy(k.raddr, p->saddr, 16);
	} else {
		k.lport = p->sport;
		k.rport = p->dport;
		__builtin_memcpy(k.laddr, p->saddr, 16);
		__builtin_memcpy(k.raddr, p->daddr, 16);
	}
	if ((p->proto == SE_NI_PROTO_ICMP && p->family == SE_NI_AF_INET) ||
	    (p->proto == SE_NI_PROTO_ICMPV6 && p->family == SE_NI_AF_INET6)) {
		/* one entry per echo exchange: the reply files under the request's type */
		__u8 type = p->icmp_type;
		if (se_ni__is_echo(p)) {
			k.lport = p->icmp_id;
			type = p->family == SE_NI_AF_INET ? SE_NI_ICMP_ECHO : SE_NI_ICMP6_ECHO;
		}
		k.rport = ((__u16)type << 8) | p->icmp_code;
	}

	struct se_ni_flow *f = bpf_map_lookup_elem(&se_ni_flows, &k);
	if (!f) {
		struct se_ni_flow fresh = {};
		long err = bpf_map_update_elem(&se_ni_flows, &k, &fresh, BPF_NOEXIST);
		if (err == 0)
			se_ni__count(hook, SE_NI_C_FLOW_NEW, 1);
		f = bpf_map_lookup_elem(&se_ni_flows, &k);
		if (!f) {
			se_ni__count(hook, SE_NI_C_FLOW_FULL, 1);
			return;
		}
	}
	/* the value is this CPU's: no other writer */
	__u8 flags = p->tcp_flags;
	__u32 in = dir == SE_NI_DIR_IN;
	if (!f->first_ns) {
		f->first_ns = now;
		if (p->proto == SE_NI_PROTO_TCP && (flags & (SE_NI_TCP_SYN | SE_NI_TCP_ACK)) ==
		    (SE_NI_TCP_SYN | SE_NI_TCP_ACK))
			f->initiator = in ? SE_NI_INIT_LOCAL : SE_NI_INIT_REMOTE;   /* a reply came first */
		else
			f->initiator = in ? SE_NI_INIT_REMOTE : SE_NI_INIT_LOCAL;
	}
	if (p->proto == SE_NI_PROTO_TCP && (flags & (SE_NI_TCP_SYN | SE_NI_TCP_ACK)) == SE_NI_TCP_SYN)
		f->initiator = in ? SE_NI_INIT_REMOTE : SE_NI_INIT_LOCAL;
	f->last_ns = now;
	__u64 pkts, bytes;
	se_ni__wire(skb, p, &pkts, &bytes);
	if (in) {
		f->pkts_in += pkts;
		f->bytes_in += bytes;
		f->flags_in |= flags;
	} else {
		f->pkts_out += pkts;
		f->bytes_out += bytes;
		f->flags_out |= flags;
		if (!f->cookie && se_ni__owned(p))
			f->cookie = bpf_get_socket_cookie(skb);
	}
}

/* fill and submit one se_dns of SIZE message bytes at most (a constant: ring records have fixed sizes) */
#define SE_NI_DNS_EMIT(SIZE)                                                                         \
	do {                                                                                         \
		struct se_dns *ev = bpf_ringbuf_reserve(&se_ni_ring, sizeof(struct se_dns) + (SIZE), 0); \
		if (!ev) {                                                                           \
			se_ni__count(hook, SE_NI_C_RING_DROPPED, 1);                                 \
			return;                                                                      \
		}                                                                                    \
		__builtin_memset(ev, 0, sizeof(struct se_dns));                                      \
		__u32 n = copy;                                                                      \
		if (n > (SIZE))                                                                      \
			n = (SIZE);                                                                  \
		if (n == 0 || bpf_skb_load_bytes(skb, poff, (void *)(ev + 1), n) < 0)                \
			n = 0;                                                                       \
		ev->hdr.type = SE_EV_DNS;                                                            \
		ev->hdr.size = sizeof(struct se_dns) + n;                                            \
		ev->hdr.cpu = bpf_get_smp_processor_id();                                            \
		ev->hdr.ts_ns = now;                                                                 \
		ev->ifindex = skb->ifindex;                                                          \
		ev->dir = dir;                                                                       \
		ev->family = p->family;                                                              \
		ev->proto = p->proto;                                                                \
		ev->flags = n < plen ? SE_NI_DNS_TRUNC : 0;                                          \
		ev->sport = p->sport;                                                                \
		ev->dport = p->dport;                                                                \
		ev->payload_len = plen > 0xffff ? 0xffff : plen;                                     \
		__builtin_memcpy(ev->saddr, p->saddr, 16);                                           \
		__builtin_memcpy(ev->daddr, p->daddr, 16);                                           \
		ev->cookie = cookie;                                                                 \
		ev->msg.off = sizeof(struct se_dns);                                                 \
		ev->msg.len = n;                                                                     \
		bpf_ringbuf_submit(ev, BPF_RB_NO_WAKEUP);                                            \
		se_ni__count(hook, SE_NI_C_DNS, 1);                                                  \
	} while (0)

/* A DNS message (UDP or TCP, port 53 on either side): copy up to se_ni_cfg.dns_max bytes of the payload. */
static __always_inline void se_ni__dns(struct __sk_buff *skb, __u32 hook, __u32 dir, struct se_ni_pkt *p,
				       __u64 now)
{
	if (p->proto != SE_NI_PROTO_UDP && p->proto != SE_NI_PROTO_TCP)
		return;
	if (p->sport != SE_NI_DNS_PORT && p->dport != SE_NI_DNS_PORT)
		return;
	__u32 plen = p->payload_len;
	if (p->proto == SE_NI_PROTO_TCP && plen == 0)
		return;                              /* handshake, bare ACK, FIN */
	__u32 poff = p->payload_off;
	if (poff > SE_NI_OFF_MAX)
		return;
	/* what the skb holds past the headers (the IP lengths may claim more) */
	__u32 avail = skb->len > poff ? skb->len - poff : 0;
	__u32 copy = plen < avail ? plen : avail;
	__u32 max = se_ni_cfg.dns_max;
	if (max > SE_NI_DNS_MAX)
		max = SE_NI_DNS_MAX;
	if (copy > max)
		copy = max;
	__u64 cookie = dir == SE_NI_DIR_OUT ? bpf_get_socket_cookie(skb) : 0;
	if (copy <= 256)
		SE_NI_DNS_EMIT(256);
	else if (copy <= 512)
		SE_NI_DNS_EMIT(512);
	else
		SE_NI_DNS_EMIT(SE_NI_DNS_MAX);
}

/* The whole TC program: count, parse, flow table, DNS. Always TC_ACT_OK. */
static __always_inline int se_ni__tc(struct __sk_buff *skb, __u32 hook, __u32 dir)
{
	se_ni__count(hook, SE_NI_C_PACKETS, 1);
	se_ni__count(hook, SE_NI_C_BYTES, skb->len);
	/* headers outside the linear part (GSO/GRO, some drivers): pull the first 128 bytes in */
	__u32 want = skb->len < 128 ? skb->len : 128;
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	if (data + want > end) {
		bpf_skb_pull_data(skb, want);
		data = (void *)(long)skb->data;
		end = (void *)(long)skb->data_end;
	}
	struct se_ni_pkt *p = se_ni__scratch(hook);
	if (!p)
		return SE_NI_TC_ACT_OK;
	int why = se_ni__parse(data, end, p);
	if (why) {
		se_ni__count(hook, why, 1);
		return SE_NI_TC_ACT_OK;
	}
	__u64 now = bpf_ktime_get_boot_ns();
	if (se_ni_cfg.flows)
		se_ni__flow(skb, hook, dir, p, now);
	if (se_ni_cfg.dns)
		se_ni__dns(skb, hook, dir, p, now);
	return SE_NI_TC_ACT_OK;
}

#endif /* SE_NI_H */
