/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Shared by the privilege sensor programs: reading the caller's credentials
 * and namespaces, and finding the enter half of an enter/exit pair.
 */
#ifndef SE_PRIV_H
#define SE_PRIV_H

#include "lib/common.h"

/* se_inflight.aux marker of the priv sensor's saved syscalls */
#define PRIV_INFLIGHT_MARK 0x50524956u /* "PRIV" */

/* The current task's credentials (objective: real_cred). */
static __always_inline void priv__ids(struct se_ids *ids)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	const struct cred *c = BPF_CORE_READ(task, real_cred);

	ids->uid = BPF_CORE_READ(c, uid.val);
	ids->euid = BPF_CORE_READ(c, euid.val);
	ids->suid = BPF_CORE_READ(c, suid.val);
	ids->fsuid = BPF_CORE_READ(c, fsuid.val);
	ids->gid = BPF_CORE_READ(c, gid.val);
	ids->egid = BPF_CORE_READ(c, egid.val);
	ids->sgid = BPF_CORE_READ(c, sgid.val);
	ids->fsgid = BPF_CORE_READ(c, fsgid.val);
}

/*
 * One capability set as a 64-bit mask. kernel_cap_t is `struct { u64 val; }`
 * since 6.3 and `struct { u32 cap[2]; }` before: both are 8 bytes and, on a
 * little-endian machine, the same bits, so the field is read whole (CO-RE
 * relocates its offset inside struct cred).
 */
#define PRIV_CAP(cred, field) ({					\
	__u64 __v = 0;							\
	bpf_core_read(&__v, sizeof(__v), &(cred)->field);		\
	__v; })

struct priv_caps {
	__u64 effective, permitted, inheritable;
};

static __always_inline void priv__caps(struct priv_caps *caps)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	const struct cred *c = BPF_CORE_READ(task, real_cred);

	caps->effective = PRIV_CAP(c, cap_effective);
	caps->permitted = PRIV_CAP(c, cap_permitted);
	caps->inheritable = PRIV_CAP(c, cap_inheritable);
}

/* the 8 ids packed two per u64, to fit se_inflight.aux64 */
static __always_inline void priv__ids_pack(const struct se_ids *ids, __u64 *aux64)
{
	aux64[0] = ids->uid | ((__u64)ids->euid << 32);
	aux64[1] = ids->suid | ((__u64)ids->fsuid << 32);
	aux64[2] = ids->gid | ((__u64)ids->egid << 32);
	aux64[3] = ids->sgid | ((__u64)ids->fsgid << 32);
}

static __always_inline void priv__ids_unpack(const __u64 *aux64, struct se_ids *ids)
{
	ids->uid = aux64[0];
	ids->euid = aux64[0] >> 32;
	ids->suid = aux64[1];
	ids->fsuid = aux64[1] >> 32;
	ids->gid = aux64[2];
	ids->egid = aux64[2] >> 32;
	ids->sgid = aux64[3];
	ids->fsgid = aux64[3] >> 32;
}

/* Namespace ids of the current task, in the order of struct se_ns' old_* fields. */
struct priv_ns_ids {
	__u32 mnt, pid, net, uts, ipc, user, cgroup, _pad;
};

static __always_inline void priv__ns(struct priv_ns_ids *n)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct nsproxy *ns = BPF_CORE_READ(task, nsproxy);

	n->mnt = BPF_CORE_READ(ns, mnt_ns, ns.inum);
	n->pid = BPF_CORE_READ(ns, pid_ns_for_children, ns.inum);
	n->net = BPF_CORE_READ(ns, net_ns, ns.inum);
	n->uts = BPF_CORE_READ(ns, uts_ns, ns.inum);
	n->ipc = BPF_CORE_READ(ns, ipc_ns, ns.inum);
	n->cgroup = BPF_CORE_READ(ns, cgroup_ns, ns.inum);
	n->user = BPF_CORE_READ(task, real_cred, user_ns, ns.inum);
	n->_pad = 0;
}

/*
 * Take the saved enter half of the current syscall. Only an entry that this
 * sensor saved for this very syscall counts; anything else is left alone.
 */
static __always_inline int priv__take(struct se_inflight *out, long nr)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct se_inflight *v = bpf_map_lookup_elem(&se_inflight_map, &tid);
	if (!v || v->aux != PRIV_INFLIGHT_MARK || v->nr != (__u32)nr)
		return -1;
	__builtin_memcpy(out, v, sizeof(*out));
	bpf_map_delete_elem(&se_inflight_map, &tid);
	return 0;
}

static __always_inline void priv__save(struct se_inflight *v, long nr)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	v->nr = nr;
	v->aux = PRIV_INFLIGHT_MARK;
	v->ts_ns = bpf_ktime_get_boot_ns();
	bpf_map_update_elem(&se_inflight_map, &tid, v, BPF_ANY);
}

/*
 * Save old namespace ids (packed in aux64) with the syscall's first nargs
 * arguments: a tracepoint program that reads past its tracepoint's record is
 * refused at attach (EACCES), so never read more than the syscall has.
 */
static __always_inline void priv__ns_save(struct se_sys_enter_ctx *ctx, int nargs)
{
	struct se_inflight v = {};
	struct priv_ns_ids n;

	for (int i = 0; i < 5; i++)
		if (i < nargs)
			v.args[i] = ctx->args[i];
	priv__ns(&n);
	v.aux64[0] = n.mnt | ((__u64)n.pid << 32);
	v.aux64[1] = n.net | ((__u64)n.uts << 32);
	v.aux64[2] = n.ipc | ((__u64)n.user << 32);
	v.aux64[3] = n.cgroup;
	priv__save(&v, ctx->id);
}

/*
 * Start a struct se_ns at syscall exit: op, result, and every namespace id
 * before (from the saved entry) and after the call.
 */
static __always_inline struct se_ns *priv__ns_event(struct se_heap *heap, const struct se_inflight *in,
						    __u32 op, long ret)
{
	struct se_ns *ev = se_event__init(heap, SE_EV_NS, sizeof(struct se_ns));
	if (!ev)
		return NULL;
	struct priv_ns_ids n;

	ev->op = op;
	ev->ret = ret;
	ev->old_mnt_ns = in->aux64[0];
	ev->old_pid_ns = in->aux64[0] >> 32;
	ev->old_net_ns = in->aux64[1];
	ev->old_uts_ns = in->aux64[1] >> 32;
	ev->old_ipc_ns = in->aux64[2];
	ev->old_user_ns = in->aux64[2] >> 32;
	ev->old_cgroup_ns = in->aux64[3];
	priv__ns(&n);
	ev->new_mnt_ns = n.mnt;
	ev->new_pid_ns = n.pid;
	ev->new_net_ns = n.net;
	ev->new_uts_ns = n.uts;
	ev->new_ipc_ns = n.ipc;
	ev->new_user_ns = n.user;
	ev->new_cgroup_ns = n.cgroup;
	return ev;
}

/* The enter program of a namespace or mount syscall: save its first nargs arguments and the
 * namespace ids at entry (tracepoint sys_enter_<name>, program priv_<name>_enter). */
#define PRIV_NS_ENTER(name, nargs)                                      \
	SEC("tp/syscalls/sys_enter_" #name)                              \
	int priv_##name##_enter(struct se_sys_enter_ctx *ctx)            \
	{                                                                \
		if (se_skip(SE_SENSOR_PRIV))                             \
			return 0;                                        \
		priv__ns_save(ctx, nargs);                               \
		return 0;                                                \
	}

/* At exit: take the saved entry and start the event (NULL: nothing to report). */
static __always_inline struct se_ns *priv__ns_exit(struct se_sys_exit_ctx *ctx, struct se_inflight *in,
						   struct se_heap **heap, __u32 op)
{
	if (priv__take(in, ctx->id))
		return NULL;
	*heap = se_heap__get();
	if (!*heap)
		return NULL;
	return priv__ns_event(*heap, in, op, ctx->ret);
}

#endif /* SE_PRIV_H */
