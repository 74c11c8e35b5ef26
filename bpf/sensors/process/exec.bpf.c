/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Successful exec: the new image is in place and has not run an instruction.
 * File name as given, interpreter, resolved exe path with device/inode, cwd,
 * argv, LD_PRELOAD/LD_LIBRARY_PATH, what fds 0/1/2 are, credential changes.
 */
#include "lib/common.h"

#define S_IFMT   00170000
#define S_IFSOCK 0140000
#define S_IFREG  0100000
#define S_IFCHR  0020000
#define S_IFIFO  0010000

static __always_inline __u8 fd_kind(int fd)
{
	struct file *f = se_fd__file(fd);
	if (!f)
		return SE_FD_NONE;
	struct inode *ino = BPF_CORE_READ(f, f_inode);
	__u32 mode = BPF_CORE_READ(ino, i_mode) & S_IFMT;
	if (mode == S_IFIFO)
		return SE_FD_PIPE;
	if (mode == S_IFSOCK)
		return SE_FD_SOCKET;
	if (mode == S_IFREG)
		return SE_FD_FILE;
	if (mode == S_IFCHR) {
		__u32 major = BPF_CORE_READ(ino, i_rdev) >> 20;
		/* 4: tty/vc, 5: /dev/tty + ptmx, 136-143: unix98 pts */
		if (major == 4 || major == 5 || (major >= 136 && major <= 143))
			return SE_FD_TTY;
		return SE_FD_CHAR;
	}
	return SE_FD_OTHER;
}

struct env_scan {
	struct se_heap *heap;
	struct se_exec *ev;
	__u32 *pos;
	unsigned long cur;
	unsigned long end;
	__u32 found;
	__u32 trunc;
};

#define ENV_HEAD 256   /* one read covers most variables whole */

/*
 * One environment string: read once (up to ENV_HEAD bytes) into the heap's
 * scratch tail, look at its name there, and skip it by the length the read
 * returned. Only a longer string needs a second read to find its end.
 */
static long env_scan_one(__u32 idx, struct env_scan *s)
{
	if (s->cur >= s->end || s->found == 3)
		return 1;
	struct se_heap *heap = se_heap__get();
	if (!heap)
		return 1;
	const char *h = heap->buf + SE_EVENT_MAX;   /* scratch: never part of an event */
	long n = bpf_probe_read_user_str(heap->buf + SE_EVENT_MAX, ENV_HEAD, (void *)s->cur);
	if (n <= 0)
		return 1;
	if (n > 15 && h[0] == 'L' && h[1] == 'D' && h[2] == '_') {
		__u32 p = *s->pos;
		if (!(s->found & 1) && h[3] == 'P' && h[4] == 'R' && h[5] == 'E' &&
		    h[6] == 'L' && h[7] == 'O' && h[8] == 'A' && h[9] == 'D' && h[10] == '=') {
			if (se_event__append_str(s->heap, &p, &s->ev->ld_preload, (void *)(s->cur + 11), SE_ENV_VALUE_MAX, 1))
				s->trunc = 1;
			s->found |= 1;
		} else if (!(s->found & 2) && h[3] == 'L' && h[4] == 'I' && h[5] == 'B' &&
			   h[6] == 'R' && h[7] == 'A' && h[8] == 'R' && h[9] == 'Y' &&
			   h[10] == '_' && h[11] == 'P' && h[12] == 'A' && h[13] == 'T' &&
			   h[14] == 'H' && h[15] == '=') {
			if (se_event__append_str(s->heap, &p, &s->ev->ld_library_path, (void *)(s->cur + 16), SE_ENV_VALUE_MAX, 1))
				s->trunc = 1;
			s->found |= 2;
		}
		*s->pos = p;
	} else if (n > 10 && n <= 15 && h[0] == 'L' && h[1] == 'D' && h[2] == '_' && h[3] == 'P' &&
		   h[10] == '=' && !(s->found & 1) && h[4] == 'R' && h[5] == 'E' && h[6] == 'L' &&
		   h[7] == 'O' && h[8] == 'A' && h[9] == 'D') {
		/* a short LD_PRELOAD=x */
		__u32 p = *s->pos;
		se_event__append_str(s->heap, &p, &s->ev->ld_preload, (void *)(s->cur + 11), SE_ENV_VALUE_MAX, 1);
		s->found |= 1;
		*s->pos = p;
	}
	if (n < ENV_HEAD) {
		s->cur += n;
		return 0;
	}
	/* a long variable: find its end (at most SE_PATH_MAX at a time) */
	long m = bpf_probe_read_user_str(heap->buf + SE_EVENT_MAX, SE_PATH_MAX, (void *)s->cur);
	if (m <= 0)
		return 1;
	s->cur += m;
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(process_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	if (se_skip(SE_SENSOR_PROCESS))
		return 0;
	struct se_heap *heap = se_heap__get();
	if (!heap)
		return 0;
	struct se_exec *ev = se_event__init(heap, SE_EV_EXEC, sizeof(struct se_exec));
	if (!ev)
		return 0;
	__u32 pos = sizeof(struct se_exec);
	__u32 flags = 0;

	/* credentials before the exec, saved at sys_enter_execve */
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct se_inflight *in = bpf_map_lookup_elem(&se_inflight_map, &tid);
	if (!in && old_pid != (pid_t)tid) {
		__u32 otid = old_pid;   /* exec from a non-leader thread: the tid changed */
		in = bpf_map_lookup_elem(&se_inflight_map, &otid);
	}
	if (in) {
		ev->old_uid = in->aux64[0];
		ev->old_euid = in->aux64[1];
		ev->old_gid = in->aux64[2];
		ev->old_egid = in->aux64[3];
		bpf_map_delete_elem(&se_inflight_map, &tid);
	} else {
		ev->old_uid = ev->proc.uid;
		ev->old_euid = ev->proc.euid;
		ev->old_gid = ev->proc.gid;
		ev->old_egid = ev->proc.egid;
	}
	if (ev->old_euid != ev->proc.euid)
		flags |= SE_EXEC_SETUID;
	if (ev->old_egid != ev->proc.egid)
		flags |= SE_EXEC_SETGID;
	if (BPF_CORE_READ_BITFIELD_PROBED(bprm, secureexec))
		flags |= SE_EXEC_SECUREEXEC;

	/* the executed file */
	struct file *file = BPF_CORE_READ(bprm, file);
	struct inode *inode = BPF_CORE_READ(file, f_inode);
	dev_t sdev = BPF_CORE_READ(inode, i_sb, s_dev);
	ev->exe_dev = ((sdev >> 20) << 8) | (sdev & 0xff) | ((sdev & 0xfff00) << 12);
	ev->exe_ino = BPF_CORE_READ(inode, i_ino);
	ev->exe_nlink = BPF_CORE_READ(inode, __i_nlink);
	ev->exe_mode = BPF_CORE_READ(inode, i_mode);
	ev->exe_uid = BPF_CORE_READ(inode, i_uid.val);
	if (ev->exe_nlink == 0)
		flags |= SE_EXEC_EXE_DELETED;

	if (se_event__append_str(heap, &pos, &ev->filename, BPF_CORE_READ(bprm, filename), SE_PATH_MAX, 0))
		flags |= SE_EXEC_FILENAME_TRUNC;
	se_event__append_str(heap, &pos, &ev->interp, BPF_CORE_READ(bprm, interp), SE_PATH_MAX, 0);
	if (se_path__append(heap, &pos, &ev->exe_path, __builtin_preserve_access_index(&file->f_path)))
		flags |= SE_EXEC_EXE_TRUNC;
	{
		/* memfd images live on an internal mount as "memfd:<name>" */
		char head[7] = {};
		const unsigned char *dname = BPF_CORE_READ(file, f_path.dentry, d_name.name);
		bpf_probe_read_kernel(head, 6, dname);
		if (head[0] == 'm' && head[1] == 'e' && head[2] == 'm' && head[3] == 'f' &&
		    head[4] == 'd' && head[5] == ':')
			flags |= SE_EXEC_EXE_MEMFD;
	}
	if (se_path__append_cwd(heap, &pos, &ev->cwd))
		flags |= SE_EXEC_CWD_TRUNC;

	/* argv from the new mm */
	struct mm_struct *mm = BPF_CORE_READ(p, mm);
	unsigned long arg_start = BPF_CORE_READ(mm, arg_start);
	unsigned long arg_end = BPF_CORE_READ(mm, arg_end);
	__u32 argv_max = se_cfg.argv_max;
	if (argv_max == 0 || argv_max > SE_ARGV_MAX)
		argv_max = SE_ARGV_MAX;
	if (arg_end > arg_start) {
		unsigned long len = arg_end - arg_start;
		if (len > argv_max) {
			len = argv_max;
			flags |= SE_EXEC_ARGV_TRUNC;
		}
		__u32 p0 = pos;
		if (p0 < SE_EVENT_MAX - SE_ARGV_MAX && len > 0 && len <= SE_ARGV_MAX) {
			if (bpf_probe_read_user(&heap->buf[p0 & SE_MASK], len, (void *)arg_start) == 0) {
				ev->argv.off = p0;
				ev->argv.len = len;
				pos = p0 + len;
			} else {
				flags |= SE_EXEC_ARGV_TRUNC;   /* unreadable: say argv is incomplete */
			}
		} else {
			flags |= SE_EXEC_ARGV_TRUNC;   /* no room left after very long paths */
		}
	}
	ev->argc = BPF_CORE_READ(bprm, argc);

	if (se_cfg.capture_env) {
		struct env_scan s = {
			.heap = heap, .ev = ev, .pos = &pos,
			.cur = BPF_CORE_READ(mm, env_start), .end = BPF_CORE_READ(mm, env_end),
		};
		bpf_loop(SE_ENV_SCAN_MAX, env_scan_one, &s, 0);
		if (s.trunc)
			flags |= SE_EXEC_ENV_TRUNC;
	}

	ev->fd_kind[0] = fd_kind(0);
	ev->fd_kind[1] = fd_kind(1);
	ev->fd_kind[2] = fd_kind(2);
	ev->flags = flags;
	se_event__emit(SE_SENSOR_PROCESS, heap, pos);
	return 0;
}

SE_LICENSE;
