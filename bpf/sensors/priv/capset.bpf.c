/* SPDX-License-Identifier: GPL-2.0 */
/*
 * capset(2): the header's version and target pid, the three capability sets
 * before and after, every id (unchanged by capset, reported for context).
 */
#include "priv.h"

/* struct __user_cap_header_struct */
struct priv_cap_header {
	__u32 version;
	__s32 pid;
};

SEC("tp/syscalls/sys_enter_capset")
int priv_capset_enter(struct se_sys_enter_ctx *ctx)
{
	if (se_skip(SE_SENSOR_PRIV))
		return 0;
	struct se_inflight v = {};
	struct priv_cap_header hdr = {};
	struct priv_caps caps;
	struct se_ids ids;

	bpf_probe_read_user(&hdr, sizeof(hdr), (void *)ctx->args[0]);
	v.args[0] = hdr.version;
	v.args[1] = (__u32)hdr.pid;
	priv__caps(&caps);
	v.args[3] = caps.effective;
	v.args[4] = caps.permitted;
	v.args[5] = caps.inheritable;
	priv__ids(&ids);
	priv__ids_pack(&ids, v.aux64);
	priv__save(&v, ctx->id);
	return 0;
}

SEC("tp/syscalls/sys_exit_capset")
int priv_capset_exit(struct se_sys_exit_ctx *ctx)
{
	struct se_inflight in;
	if (priv__take(&in, ctx->id))
		return 0;
	struct se_heap *heap = se_heap__get();
	if (!heap)
		return 0;
	struct se_cred *ev = se_event__init(heap, SE_EV_CRED, sizeof(struct se_cred));
	if (!ev)
		return 0;
	struct priv_caps caps;

	ev->op = SE_CRED_CAPSET;
	ev->ret = ctx->ret;
	ev->args[0] = in.args[0];   /* _LINUX_CAPABILITY_VERSION_* */
	ev->args[1] = in.args[1];   /* target pid (0: the caller) */
	priv__ids_unpack(in.aux64, &ev->old_ids);
	priv__ids(&ev->new_ids);
	ev->old_cap_effective = in.args[3];
	ev->old_cap_permitted = in.args[4];
	ev->old_cap_inheritable = in.args[5];
	priv__caps(&caps);
	ev->new_cap_effective = caps.effective;
	ev->new_cap_permitted = caps.permitted;
	ev->new_cap_inheritable = caps.inheritable;
	se_event__emit(SE_SENSOR_PRIV, heap, sizeof(struct se_cred));
	return 0;
}

SE_LICENSE;
