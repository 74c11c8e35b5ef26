/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Kernel tamper deny: a BPF program load or a kernel module load by an
 * executable that is not on the policy's allow list gets SIGKILL at syscall
 * entry. The syscall itself still starts: for bpf(BPF_PROG_LOAD) the program
 * fd dies with the process before anything can attach it; for module loads
 * the kernel checks for a fatal signal while loading, but a module small
 * enough may finish before (see docs/policies.md: a kernel with BPF-LSM or
 * kprobe override can refuse it outright; this one cannot).
 */
#ifndef SE_TAMPER_H
#define SE_TAMPER_H

#include "enforce/enforce.h"

static __always_inline bool se_tamper__allowed(__u32 gen, __u32 idx, __u32 dev, __u64 ino)
{
	struct se_enf_ident_key k = { .gen = gen, .dev = dev, .ino = ino };
	struct se_enf_match_val *a = bpf_map_lookup_elem(&se_enf_tamper_allow, &k);
	if (!a)
		return false;
	for (__u32 i = 0; i < SE_ENF_MATCH_MAX; i++) {
		if (i >= a->n)
			break;
		if (a->idx[i] == idx)
			return true;
	}
	return false;
}

static __always_inline int se_tamper__check(__u32 kind, __u64 aux)
{
	struct se_enf_state *st = se_enf__state();
	if (!st || !st->active_gen)
		return 0;
	__u32 gen = st->active_gen;
	struct se_enf_policy_key tk = { .gen = gen, .idx = kind };
	struct se_enf_match_val *m = bpf_map_lookup_elem(&se_enf_tamper, &tk);
	if (!m)
		return 0;
	struct task_struct *task = bpf_get_current_task_btf();
	if (se_enf__protected_task(task, st))
		return 0;
	struct inode *inode = BPF_CORE_READ(task, mm, exe_file, f_inode);
	__u32 dev = inode ? se_enf__dev(inode) : 0;
	__u64 ino = inode ? BPF_CORE_READ(inode, i_ino) : 0;

	struct se_heap *heap = se_heap__get();
	if (!heap)
		return 0;
	struct se_enforce *ev = se_event__init(heap, SE_EV_ENFORCE, sizeof(struct se_enforce));
	if (!ev)
		return 0;
	__u32 enforce = 0;
	int idx = se_enf__choose(gen, m, &ev->proc, task, &enforce);
	if (idx < 0 || se_tamper__allowed(gen, idx, dev, ino))
		return 0;
	se_enf__count(SE_ENF_STAT_HITS);
	__u32 pos = sizeof(struct se_enforce);
	if (inode)
		se_path__append(heap, &pos, &ev->path,
				__builtin_preserve_access_index(&task->mm->exe_file->f_path));
	ev->kind = kind;
	ev->policy_idx = idx;
	ev->gen = gen;
	ev->match = SE_ENF_BY_ALLOWLIST;
	ev->dev = dev;
	ev->ino = ino;
	ev->igen = inode ? BPF_CORE_READ(inode, i_generation) : 0;
	ev->aux = aux;
	if (enforce && st->armed) {
		if (se_enf__safe_exe(dev, ino)) {
			se_enf__count(SE_ENF_STAT_SPARED);
			ev->action = SE_ENF_ACT_AUDIT;
			ev->result = -1;
		} else {
			ev->action = SE_ENF_ACT_KILL;
			ev->result = bpf_send_signal(SE_SIGKILL);
			se_enf__count(ev->result ? SE_ENF_STAT_KILL_FAIL : SE_ENF_STAT_KILLS);
		}
	} else {
		ev->action = SE_ENF_ACT_AUDIT;
		se_enf__count(SE_ENF_STAT_AUDITS);
	}
	se_enf__emit(heap, pos);
	return 0;
}

#endif /* SE_TAMPER_H */
