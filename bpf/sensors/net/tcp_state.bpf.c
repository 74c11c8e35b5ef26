/* SPDX-License-Identifier: GPL-2.0 */
/*
 * TCP state changes (tp_btf/inet_sock_set_state, a trusted struct sock):
 *   CLOSE -> SYN_SENT   runs inside connect() in the caller's context: the
 *                       caller is recorded as the socket's owner
 *                       (se_sock_owner_map, key = struct sock *);
 *   SYN_SENT -> ESTABLISHED / CLOSE
 *                       SE_NET_CONNECT_DONE (not for a blocking connect()
 *                       still in flight: its CONNECT has the result),
 *                       ret 0 or -sk_err (sk_err is set
 *                       before the socket is closed: ECONNREFUSED on RST,
 *                       ETIMEDOUT...; 0 means the owner gave up itself, which
 *                       is reported as -ECONNABORTED);
 *   any other change into ESTABLISHED or CLOSE
 *                       SE_NET_STATE with the 5-tuple, for flows (not for
 *                       an ownerless passive socket going ESTABLISHED before
 *                       accept(): the ACCEPT event reports it); into
 *                       CLOSE ret is -sk_err (-ECONNRESET after a reset).
 * These often run in softirq context on another task's time, so se_proc is
 * the owner's context saved in the owner table (zeroed, owner_pid 0, when the
 * owner is unknown, e.g. a passively opened socket before accept()).
 * Every transition also assigns the socket cookie, so syscall exits that read
 * skc_cookie (connect, listen, accept) find it set.
 */
#include "net.h"

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(net_tcp_state, const struct sock *csk, const int oldstate, const int newstate)
{
	struct sock *sk = (struct sock *)csk;
	if (!se_sensor__on(SE_SENSOR_NET))
		return 0;
	if (sk->sk_protocol != IPPROTO_TCP)
		return 0;
	__u64 cookie = bpf_get_socket_cookie(sk);
	__u64 key = (__u64)sk;

	if (newstate == TCP_SYN_SENT || newstate == TCP_LISTEN) {
		/* in connect() / listen(): the current task owns the socket */
		if (se_skip(SE_SENSOR_NET))
			return 0;
		__s32 fd = -1;
		__u32 tid = (__u32)bpf_get_current_pid_tgid();
		struct se_inflight *in = bpf_map_lookup_elem(&se_inflight_map, &tid);
		if (in && (in->aux == SE_NET_IN_CONNECT || in->aux == SE_NET_IN_OTHER))
			fd = in->args[0];
		se_net__owner_set(sk, cookie, fd);
		return 0;
	}
	bool done = oldstate == TCP_SYN_SENT &&
		    (newstate == TCP_ESTABLISHED || newstate == TCP_CLOSE);
	if (!done && newstate != TCP_ESTABLISHED && newstate != TCP_CLOSE)
		return 0;

	struct se_sock_owner *o = bpf_map_lookup_elem(&se_sock_owner_map, &key);
	if (o && se_cfg.agent_tgid && o->pid == se_cfg.agent_tgid)
		goto out;
	/*
	 * Volume: a blocking connect() still in flight returns this very result
	 * (its CONNECT event carries it), and a passively opened socket going
	 * ESTABLISHED before accept() has no owner yet (its ACCEPT event follows):
	 * neither adds anything, and together they were a third of the events of
	 * every TCP connection.
	 */
	if (!done && newstate == TCP_ESTABLISHED && !o)
		goto out;
	if (done && o) {
		struct se_inflight *in = bpf_map_lookup_elem(&se_inflight_map, &o->tid);
		struct socket *so = sk->sk_socket;
		struct file *f = so ? so->file : NULL;
		__u32 fflags = f ? f->f_flags : 0;
		if (in && in->aux == SE_NET_IN_CONNECT && !(fflags & 04000 /* O_NONBLOCK */))
			goto out;
	}
	struct se_heap *heap = se_heap__get();
	if (!heap)
		goto out;
	struct se_net *ev = se_event__init(heap, SE_EV_NET, sizeof(struct se_net));
	if (!ev)
		goto out;
	if (o) {
		__builtin_memcpy(&ev->proc, &o->proc, sizeof(ev->proc));
		ev->owner_pid = o->pid;
		ev->fd = o->fd;
	} else {
		__builtin_memset(&ev->proc, 0, sizeof(ev->proc));
		ev->fd = -1;
	}
	ev->op = done ? SE_NET_CONNECT_DONE : SE_NET_STATE;
	if (newstate == TCP_CLOSE) {
		int err = sk->sk_err;
		/* STATE: -sk_err (-ECONNRESET for a reset, 0 for an orderly close) */
		ev->ret = err ? -err : (done ? -SE_ECONNABORTED : 0);
	}
	ev->old_state = oldstate;
	ev->new_state = newstate;
	se_net__sock_info(ev, sk);
	ev->cookie = cookie;
	se_net__sock_local(ev, sk);
	se_net__sock_remote(ev, sk);
	se_event__emit(SE_SENSOR_NET, heap, sizeof(struct se_net));
out:
	if (newstate == TCP_CLOSE)
		bpf_map_delete_elem(&se_sock_owner_map, &key);
	return 0;
}

SE_LICENSE;
