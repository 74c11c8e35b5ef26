/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers of the network sensor (struct se_net, SE_EV_NET).
 *
 *   se_net__take        take the arguments saved at sys_enter_* (checked by syscall nr)
 *   se_net__fd_sock     struct sock * behind an fd of the current task
 *   se_net__sock_*      family/type/protocol/cookie and addresses from a struct sock
 *   se_net__user_addr   parse a user sockaddr (AF_INET, AF_INET6, AF_UNIX)
 *   se_net__owner_*     the owner table (se_sock_owner_map) for state events
 *
 * Socket cookie: read from sk->__sk_common.skc_cookie. The kernel assigns a
 * cookie lazily (first SO_COOKIE / bpf_get_socket_cookie). The sensor makes
 * sure it is assigned before the syscall exit reads it wherever a hook with a
 * trusted struct sock runs in the caller's context:
 *   - tp_btf/inet_sock_set_state (every TCP state change: connect, listen,
 *     the accepted child before accept() returns),
 *   - tp_btf/sock_send_length (datagram sends: unconnected UDP sendto).
 * Elsewhere (bind before listen/connect, UDP connect, AF_UNIX, raw and packet
 * socket creation) the cookie is reported when already assigned, else 0.
 */
#ifndef SE_NET_H
#define SE_NET_H

#include "lib/common.h"

#define SE_AF_UNIX    1
#define SE_AF_INET    2
#define SE_AF_INET6   10
#define SE_AF_PACKET  17

#define SE_SOCK_TYPE_MASK 0xf
#define SE_S_IFMT   00170000
#define SE_S_IFSOCK 0140000

#define SE_EAGAIN       11
#define SE_EINPROGRESS  115
#define SE_ECONNABORTED 103

#define SE_UNIX_PATH_MAX 108

/* se_inflight.aux markers: which net syscall saved the arguments */
#define SE_NET_IN_CONNECT 0x4e430001u
#define SE_NET_IN_OTHER   0x4e430002u

static __always_inline __u16 se_net__ntohs(__u16 v)
{
	return __builtin_bswap16(v);
}

/* Take the arguments saved by this syscall's enter program (same tid, same nr). */
static __always_inline int se_net__take(long nr, struct se_inflight *out)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct se_inflight *v = bpf_map_lookup_elem(&se_inflight_map, &tid);
	if (!v)
		return -1;
	if (v->nr != (__u32)nr || (v->aux != SE_NET_IN_CONNECT && v->aux != SE_NET_IN_OTHER))
		return -1;
	__builtin_memcpy(out, v, sizeof(*out));
	bpf_map_delete_elem(&se_inflight_map, &tid);
	return 0;
}

static __always_inline void se_net__save(long nr, __u32 aux, const __u64 *args, int nargs,
					 const void *addr_copy, __u32 addr_len)
{
	struct se_inflight v = {};
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	for (int i = 0; i < 6; i++)
		if (i < nargs)
			v.args[i] = args[i];
	v.nr = nr;
	v.aux = aux;
	v.ts_ns = bpf_ktime_get_boot_ns();
	/* the sockaddr as the kernel is about to copy it (sockaddr_in6 is 28 bytes) */
	if (addr_copy && addr_len) {
		if (addr_len > sizeof(v.aux64))
			addr_len = sizeof(v.aux64);
		bpf_probe_read_user(v.aux64, addr_len & 0x3f, addr_copy);
	}
	bpf_map_update_elem(&se_inflight_map, &tid, &v, BPF_ANY);
}

/* struct sock * behind fd of the current task, NULL when fd is not a socket. */
static __always_inline struct sock *se_net__fd_sock(int fd)
{
	struct file *f = se_fd__file(fd);
	if (!f)
		return NULL;
	__u32 mode = BPF_CORE_READ(f, f_inode, i_mode);
	if ((mode & SE_S_IFMT) != SE_S_IFSOCK)
		return NULL;
	struct socket *sock = (struct socket *)BPF_CORE_READ(f, private_data);
	return BPF_CORE_READ(sock, sk);
}

static __always_inline void se_net__sock_info(struct se_net *ev, struct sock *sk)
{
	ev->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	ev->sock_type = BPF_CORE_READ(sk, sk_type);
	ev->protocol = BPF_CORE_READ(sk, sk_protocol);
	ev->cookie = BPF_CORE_READ(sk, __sk_common.skc_cookie.counter);
}

/* local address of an inet socket into saddr/sport */
static __always_inline void se_net__sock_local(struct se_net *ev, struct sock *sk)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family == SE_AF_INET) {
		__u32 a = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		__builtin_memcpy(ev->saddr, &a, 4);
	} else if (family == SE_AF_INET6) {
		BPF_CORE_READ_INTO(&ev->saddr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
	} else {
		return;
	}
	ev->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	if (!ev->sport) {
		/* closing: inet_put_port() already cleared skc_num, inet_sport stays */
		struct inet_sock *inet = (struct inet_sock *)sk;
		ev->sport = se_net__ntohs(BPF_CORE_READ(inet, inet_sport));
	}
}

/* peer address of an inet socket into daddr/dport */
static __always_inline void se_net__sock_remote(struct se_net *ev, struct sock *sk)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family == SE_AF_INET) {
		__u32 a = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		__builtin_memcpy(ev->daddr, &a, 4);
	} else if (family == SE_AF_INET6) {
		BPF_CORE_READ_INTO(&ev->daddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	} else {
		return;
	}
	ev->dport = se_net__ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
}

/*
 * Append a sun_path of n bytes (n = addrlen - 2) as unix_path: an abstract
 * name (leading NUL) becomes '@' + the name's bytes (which may hold NULs);
 * a filesystem path stops at its first NUL.
 */
static __always_inline void se_net__append_unix(struct se_heap *heap, __u32 *pos, struct se_net *ev,
						const void *sun_path, __u32 n, int user)
{
	__u32 p = *pos;
	if (!sun_path || n == 0 || p >= SE_EVENT_MAX - SE_UNIX_PATH_MAX - 8)
		return;
	if (n > SE_UNIX_PATH_MAX)
		n = SE_UNIX_PATH_MAX;
	char *dst = &heap->buf[p & SE_MASK];
	long err = user ? bpf_probe_read_user(dst, n & 0x7f, sun_path)
			: bpf_probe_read_kernel(dst, n & 0x7f, sun_path);
	if (err)
		return;
	__u32 len = n;
	if (dst[0] == 0) {
		dst[0] = '@';
	} else {
		for (__u32 i = 0; i < SE_UNIX_PATH_MAX; i++) {
			if (i >= n)
				break;
			if (heap->buf[(p + i) & SE_MASK] == 0) {
				len = i;
				break;
			}
		}
	}
	heap->buf[(p + len) & SE_MASK] = 0;
	ev->unix_path.off = p;
	ev->unix_path.len = len;
	*pos = p + len + 1;
}

/* Local name of an AF_UNIX socket (unix_sk(sk)->addr) as unix_path. */
static __always_inline void se_net__sock_unix(struct se_heap *heap, __u32 *pos, struct se_net *ev,
					      struct sock *sk)
{
	struct unix_sock *u = (struct unix_sock *)sk;
	struct unix_address *a = BPF_CORE_READ(u, addr);
	if (!a)
		return;
	int len = BPF_CORE_READ(a, len);
	if (len <= 2)
		return;
	const char *path = (const char *)a + bpf_core_field_offset(struct unix_address, name) + 2;
	se_net__append_unix(heap, pos, ev, path, len - 2, 0);
}

/*
 * A sockaddr copied at sys_enter (raw, up to 32 bytes) into the local (saddr)
 * or remote (daddr) address. Returns the family. AF_UNIX paths are appended
 * separately from user memory (they do not fit the copy).
 */
static __always_inline __u16 se_net__addr_copy(struct se_net *ev, const __u64 *copy, __u32 addrlen,
					       int remote)
{
	const __u8 *b = (const __u8 *)copy;
	__u16 family = 0;
	__builtin_memcpy(&family, b, 2);
	if (addrlen < 2)
		return 0;
	__u16 port = se_net__ntohs(*(const __u16 *)(b + 2));
	if (family == SE_AF_INET && addrlen >= 8) {
		if (remote) {
			__builtin_memcpy(ev->daddr, b + 4, 4);
			ev->dport = port;
		} else {
			__builtin_memcpy(ev->saddr, b + 4, 4);
			ev->sport = port;
		}
	} else if (family == SE_AF_INET6 && addrlen >= 24) {
		if (remote) {
			__builtin_memcpy(ev->daddr, b + 8, 16);
			ev->dport = port;
		} else {
			__builtin_memcpy(ev->saddr, b + 8, 16);
			ev->sport = port;
		}
	}
	return family;
}

/* ---- owner table -------------------------------------------------------- */

/* Remember the current task as the owner of sk (called in the owner's context). */
static __always_inline void se_net__owner_set(struct sock *sk, __u64 cookie, __s32 fd)
{
	struct se_sock_owner o = {};
	__u64 key = (__u64)sk;
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	o.pid = pid_tgid >> 32;
	o.tid = (__u32)pid_tgid;
	o.cookie = cookie;
	o.fd = fd;
	se_task__fill(&o.proc, task);
	o.start_ns = o.proc.start_ns;
	bpf_map_update_elem(&se_sock_owner_map, &key, &o, BPF_ANY);
}

#endif /* SE_NET_H */
