/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * SentinelEdge wire contract.
 *
 * Every struct that crosses a ring buffer (kernel -> user) or a config map
 * (user -> kernel) lives in this one header. Rules:
 *   - fixed-width types only, explicit padding, 8-byte aligned sizes;
 *   - every event starts with struct se_hdr followed by struct se_proc;
 *   - variable-length data (paths, argv, names) is appended after the fixed
 *     part and referenced by a struct se_str {off, len} whose offset is
 *     relative to the start of the event;
 *   - the user-space decoder is generated at run time from the BTF of the
 *     compiled object, and a test compares it with bpftool's view of the same
 *     BTF, so a change here never silently corrupts events.
 *
 * The event type values are part of the contract: never renumber, only add.
 */
#ifndef SE_EVENTS_H
#define SE_EVENTS_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* ---- limits ------------------------------------------------------------ */
#define SE_COMM_LEN        16
#define SE_PATH_MAX        4096   /* one path (host path, after the walk) */
#define SE_PATH_DEPTH      64     /* dentry components walked per path */
#define SE_ARGV_MAX        4096   /* bytes of argv copied per exec */
#define SE_ENV_VALUE_MAX   512    /* bytes of LD_PRELOAD / LD_LIBRARY_PATH */
#define SE_ENV_SCAN_MAX    256    /* environment strings scanned per exec */
#define SE_NAME_MAX        256    /* short names: xattr, fs type, memfd name */
#define SE_EVENT_MAX       16384  /* largest event ever emitted */
#define SE_PREFIX_MAX      8      /* include / exclude path prefixes */
#define SE_PREFIX_LEN      64

/* ---- event types (se_hdr.type) ------------------------------------------ */
enum se_event_type {
	SE_EV_EXEC        = 1,   /* struct se_exec */
	SE_EV_FORK        = 2,   /* struct se_fork */
	SE_EV_EXIT        = 3,   /* struct se_exit */
	SE_EV_COMM        = 4,   /* struct se_comm */
	SE_EV_FILE        = 10,  /* struct se_file (op in se_file.op) */
	SE_EV_NET         = 20,  /* struct se_net  (op in se_net.op) */
	SE_EV_CRED        = 30,  /* struct se_cred (setuid family, capset) */
	SE_EV_NS          = 31,  /* struct se_ns   (mount, umount, unshare, setns) */
	SE_EV_MEM         = 40,  /* struct se_mem  (mmap / mprotect W+X, anon X) */
	SE_EV_PTRACE      = 41,  /* struct se_ptrace (ptrace, process_vm_*) */
	SE_EV_MEMFD       = 42,  /* struct se_memfd */
	SE_EV_MODULE      = 43,  /* struct se_module (init/finit/delete_module) */
	SE_EV_BPF         = 44,  /* struct se_bpf  (bpf() by other processes) */
	SE_EV_IO_URING    = 45,  /* struct se_io_uring */
	SE_EV_ENFORCE     = 50,  /* struct se_enforce (enforce.bpf.o, ring se_enf_ring) */
	SE_EV_NETDET      = 60,  /* struct se_netdet (netinspect.bpf.o, ring se_ni_ring) */
	SE_EV_DNS         = 61,  /* struct se_dns    (netinspect.bpf.o, ring se_ni_ring) */
	SE_EV_FLOW        = 62,  /* reserved: flow records synthesised by user space from se_ni_flows */
	SE_EV_LOSS        = 90,  /* reserved: synthesised by user space */
};

/* ---- sensors: the unit of on/off switches, rings and loss counters ------ */
enum se_sensor {
	SE_SENSOR_PROCESS = 0,   /* exec, fork, exit, comm */
	SE_SENSOR_FILE    = 1,
	SE_SENSOR_NET     = 2,
	SE_SENSOR_PRIV    = 3,   /* cred changes, namespaces, mounts */
	SE_SENSOR_MEM     = 4,   /* mmap/mprotect, ptrace, memfd, module, bpf, io_uring */
	SE_SENSOR_MAX     = 5,
};

/* per-sensor counters in the se_stats per-CPU array: index sensor*SE_STAT_MAX+stat */
enum se_stat {
	SE_STAT_EMITTED   = 0,   /* events handed to the ring successfully */
	SE_STAT_DROPPED   = 1,   /* ring full: bpf_ringbuf_output failed */
	SE_STAT_DEDUPED   = 2,   /* suppressed by the in-kernel dedup window */
	SE_STAT_FILTERED  = 3,   /* suppressed by prefix filters */
	SE_STAT_ERRORS    = 4,   /* a read failed, partial event emitted */
	SE_STAT_MAX       = 5,
};

/* ---- common header ------------------------------------------------------ */
struct se_hdr {
	__u16 type;      /* enum se_event_type */
	__u16 size;      /* total bytes of this event, variable data included */
	__u32 cpu;
	__u64 ts_ns;     /* bpf_ktime_get_boot_ns() */
};

/* a variable-length field: bytes at [off, off+len) from the event start */
struct se_str {
	__u16 off;
	__u16 len;       /* bytes without the terminating NUL */
};

/* the calling task, filled by se_fill_proc() for every event */
struct se_proc {
	__u32 pid;       /* tgid, host pid namespace */
	__u32 tid;
	__u32 ppid;      /* real parent's tgid */
	__u32 ns_pid;    /* pid inside the task's own pid namespace */
	__u32 uid;
	__u32 euid;
	__u32 gid;
	__u32 egid;
	__u32 loginuid;  /* (u32)-1 when unset */
	__u32 sessionid;
	__u32 mnt_ns;
	__u32 pid_ns;
	__u32 net_ns;
	__u32 _pad0;
	__u64 cgroup_id; /* cgroup v2 id (bpf_get_current_cgroup_id) */
	__u64 start_ns;  /* group leader start_boottime: (pid, start_ns) names a process */
	__u64 parent_start_ns;
	char  comm[SE_COMM_LEN];
};

/* ---- process ------------------------------------------------------------ */
enum se_exec_flags {
	SE_EXEC_ARGV_TRUNC      = 1 << 0,
	SE_EXEC_FILENAME_TRUNC  = 1 << 1,
	SE_EXEC_EXE_DELETED     = 1 << 2,  /* exe inode has no links left */
	SE_EXEC_EXE_MEMFD       = 1 << 3,  /* exe is a memfd */
	SE_EXEC_SETUID          = 1 << 4,  /* euid changed by the exec */
	SE_EXEC_SETGID          = 1 << 5,  /* egid changed by the exec */
	SE_EXEC_SECUREEXEC      = 1 << 6,  /* AT_SECURE set for the new image */
	SE_EXEC_ENV_TRUNC       = 1 << 7,
	SE_EXEC_CWD_TRUNC       = 1 << 8,
	SE_EXEC_EXE_TRUNC       = 1 << 9,
};

/* what an fd of 0/1/2 is */
enum se_fd_kind {
	SE_FD_NONE = 0, SE_FD_TTY = 1, SE_FD_PIPE = 2, SE_FD_SOCKET = 3,
	SE_FD_FILE = 4, SE_FD_CHAR = 5, SE_FD_OTHER = 6,
};

struct se_exec {
	struct se_hdr  hdr;
	struct se_proc proc;         /* already the new image (comm is the new one) */
	__u32 flags;                 /* enum se_exec_flags */
	__u32 argc;                  /* NUL-separated strings in argv */
	__u32 old_uid;               /* credentials before the exec */
	__u32 old_euid;
	__u32 old_gid;
	__u32 old_egid;
	__u32 exe_dev;               /* new_encode_dev() of the exe's superblock */
	__u32 exe_nlink;
	__u64 exe_ino;
	__u32 exe_mode;
	__u32 exe_uid;
	__u8  fd_kind[3];            /* enum se_fd_kind of fds 0, 1, 2 */
	__u8  _pad0[5];
	struct se_str filename;      /* as given to execve (bprm->filename) */
	struct se_str interp;        /* bprm->interp: differs for #! scripts */
	struct se_str exe_path;      /* resolved absolute path of the running image */
	struct se_str cwd;
	struct se_str argv;          /* NUL-separated, argc strings */
	struct se_str ld_preload;    /* value of LD_PRELOAD when set */
	struct se_str ld_library_path;
	struct se_str _pad1;
};

struct se_fork {
	struct se_hdr  hdr;
	struct se_proc proc;         /* the parent (caller of fork/clone) */
	__u32 child_pid;
	__u32 child_tid;
	__u64 child_start_ns;
	__u32 is_thread;             /* CLONE_THREAD: a new thread, same process */
	__u32 _pad0;
};

struct se_exit {
	struct se_hdr  hdr;
	struct se_proc proc;
	__s32 exit_code;             /* (status >> 8) & 0xff */
	__s32 exit_signal;           /* status & 0x7f: the killing signal, 0 if none */
	__u32 core_dumped;
	__u32 is_thread;             /* a thread exited, the process lives on */
};

struct se_comm {
	struct se_hdr  hdr;
	struct se_proc proc;
	char  old_comm[SE_COMM_LEN];
	char  new_comm[SE_COMM_LEN];
};

/* ---- file ------------------------------------------------------------- */
enum se_file_op {
	SE_FILE_OPEN = 1, SE_FILE_UNLINK = 2, SE_FILE_RENAME = 3, SE_FILE_CHMOD = 4,
	SE_FILE_CHOWN = 5, SE_FILE_LINK = 6, SE_FILE_SYMLINK = 7, SE_FILE_UTIMES = 8,
	SE_FILE_TRUNCATE = 9, SE_FILE_SETXATTR = 10, SE_FILE_MKDIR = 11, SE_FILE_RMDIR = 12,
};

enum se_file_flags {
	SE_FILE_PATH_TRUNC      = 1 << 0,  /* a path hit SE_PATH_MAX or SE_PATH_DEPTH */
	SE_FILE_RESOLVED_BY_FD  = 1 << 1,  /* resolved comes from the opened file itself */
	SE_FILE_FOLLOW          = 1 << 2,  /* the final component is followed (not AT_SYMLINK_NOFOLLOW) */
};

struct se_file {
	struct se_hdr  hdr;
	struct se_proc proc;
	__u32 op;                    /* enum se_file_op */
	__s32 ret;                   /* syscall result: fd or 0, or -errno */
	__u32 syscall_nr;
	__s32 dirfd;                 /* AT_FDCWD (-100) or a directory fd; fd for f* calls */
	__u32 open_flags;            /* O_* for open; AT_* flags for *at calls; RENAME_* */
	__u32 mode;                  /* creation mode / chmod mode */
	__u32 uid;                   /* chown target ids ((u32)-1 = unchanged) */
	__u32 gid;
	__u32 flags;                 /* enum se_file_flags */
	__u32 dev;                   /* device of the file when known (open success) */
	__u64 ino;
	__u64 size;                  /* truncate length */
	struct se_str path;          /* raw first path argument, as given */
	struct se_str path2;         /* raw second path (rename/link target, symlink target) */
	struct se_str base;          /* absolute directory that path is relative to (dirfd or cwd); empty for absolute paths */
	struct se_str base2;         /* same for path2 */
	struct se_str resolved;      /* absolute host path of the opened file (from its fd), when available */
	struct se_str xattr_name;
	__s32 dirfd2;                /* base of path2: renameat/linkat new dirfd (AT_FDCWD otherwise) */
	__u32 resolve;               /* openat2 RESOLVE_* flags */
};

/* ---- network ------------------------------------------------------------ */
enum se_net_op {
	SE_NET_SOCKET = 1,           /* raw / packet socket created */
	SE_NET_CONNECT = 2,          /* connect() returned (ret may be -EINPROGRESS) */
	SE_NET_CONNECT_DONE = 3,     /* async connect completed (from TCP state, matched by socket) */
	SE_NET_ACCEPT = 4,
	SE_NET_BIND = 5,
	SE_NET_LISTEN = 6,
	SE_NET_SENDTO = 7,           /* UDP datagram to an explicit address on an unconnected socket */
	SE_NET_STATE = 8,            /* TCP state change */
	SE_NET_DGRAM = 9,            /* first datagram sent on a connected UDP socket (once per socket): its
	                              * cookie and both addresses, so packets seen later have their process */
};

struct se_net {
	struct se_hdr  hdr;
	struct se_proc proc;         /* for SE_NET_STATE / CONNECT_DONE: the socket's owner, see owner_pid */
	__u32 op;                    /* enum se_net_op */
	__s32 ret;
	__s32 fd;
	__u16 family;                /* AF_INET, AF_INET6, AF_UNIX, AF_PACKET */
	__u16 sock_type;             /* SOCK_STREAM, SOCK_DGRAM, SOCK_RAW ... */
	__u16 protocol;              /* IPPROTO_* or ETH_P_* for packet sockets */
	__u16 sport;                 /* host byte order */
	__u16 dport;
	__u8  old_state;             /* TCP_* for SE_NET_STATE */
	__u8  new_state;
	__u8  saddr[16];             /* IPv4 in the first 4 bytes */
	__u8  daddr[16];
	__u64 cookie;                /* socket cookie, ties packets to the process */
	__u32 backlog;
	__u32 flags;                 /* socket() type flags, accept4 flags, sendto flags */
	__u32 owner_pid;             /* pid recorded when the socket was connected (state events) */
	__u32 _pad0;
	__u64 bytes;                 /* sendto length */
	struct se_str unix_path;     /* AF_UNIX path ('@' first for abstract) */
	struct se_str _pad1;
};

/* ---- privilege and namespaces ------------------------------------------ */
enum se_cred_op {
	SE_CRED_SETUID = 1, SE_CRED_SETREUID = 2, SE_CRED_SETRESUID = 3, SE_CRED_SETFSUID = 4,
	SE_CRED_SETGID = 5, SE_CRED_SETREGID = 6, SE_CRED_SETRESGID = 7, SE_CRED_SETFSGID = 8,
	SE_CRED_CAPSET = 9,
};

struct se_ids {
	__u32 uid, euid, suid, fsuid;
	__u32 gid, egid, sgid, fsgid;
};

struct se_cred {
	struct se_hdr  hdr;
	struct se_proc proc;
	__u32 op;                    /* enum se_cred_op */
	__s32 ret;
	__u32 args[3];               /* the ids asked for, as given */
	__u32 _pad0;
	struct se_ids old_ids;
	struct se_ids new_ids;
	__u64 old_cap_effective;
	__u64 old_cap_permitted;
	__u64 old_cap_inheritable;
	__u64 new_cap_effective;
	__u64 new_cap_permitted;
	__u64 new_cap_inheritable;
};

enum se_ns_op {
	SE_NS_MOUNT = 1, SE_NS_UMOUNT = 2, SE_NS_UNSHARE = 3, SE_NS_SETNS = 4,
	SE_NS_MOVE_MOUNT = 5,         /* new mount API: attach a mount (source: from_path or the fd in `fd`) */
	SE_NS_OPEN_TREE = 6,          /* new mount API: open (OPEN_TREE_CLONE: copy) a mount tree; ret = its fd */
};

struct se_ns {
	struct se_hdr  hdr;
	struct se_proc proc;
	__u32 op;                    /* enum se_ns_op */
	__s32 ret;
	__u64 flags;                 /* mount flags / unshare CLONE_* / umount flags */
	__s32 fd;                    /* setns fd */
	__u32 nstype;                /* setns nstype */
	__u32 new_mnt_ns;            /* namespace ids after the call */
	__u32 new_pid_ns;
	__u32 new_net_ns;
	__u32 _pad0;
	struct se_str source;
	struct se_str target;
	struct se_str fstype;
	struct se_str _pad1;
	/* added by the priv sensor: every namespace id before and after the call */
	__u32 new_uts_ns;
	__u32 new_ipc_ns;
	__u32 new_user_ns;           /* cred->user_ns */
	__u32 new_cgroup_ns;
	__u32 old_mnt_ns;            /* ids at syscall entry */
	__u32 old_pid_ns;            /* like new_pid_ns: nsproxy->pid_ns_for_children */
	__u32 old_net_ns;
	__u32 old_uts_ns;
	__u32 old_ipc_ns;
	__u32 old_user_ns;
	__u32 old_cgroup_ns;
	__u32 _pad2;
};

/* ---- memory and injection ----------------------------------------------- */
enum se_mem_op { SE_MEM_MMAP = 1, SE_MEM_MPROTECT = 2 };

struct se_mem {
	struct se_hdr  hdr;
	struct se_proc proc;
	__u32 op;                    /* enum se_mem_op */
	__u32 prot;
	__u32 mmap_flags;
	__s32 fd;
	__u64 addr;
	__u64 len;
	__s64 ret;                   /* mmap address or -errno; mprotect 0 or -errno */
	__u32 vma_flags;             /* mprotect: VM_* of the target mapping when found */
	__u32 anon;                  /* 1 when no file backs the memory */
};

enum se_ptrace_op { SE_PTRACE = 1, SE_PROCESS_VM_READV = 2, SE_PROCESS_VM_WRITEV = 3 };

struct se_ptrace {
	struct se_hdr  hdr;
	struct se_proc proc;
	__u32 op;                    /* enum se_ptrace_op */
	__s32 ret32;
	__s64 ret;
	__u64 request;               /* PTRACE_* for ptrace */
	__u64 addr;
	__u32 target_pid;
	__u32 _pad0;
	__u64 target_start_ns;       /* 0 when the target could not be read */
	char  target_comm[SE_COMM_LEN];
};

struct se_memfd {
	struct se_hdr  hdr;
	struct se_proc proc;
	__u32 mfd_flags;
	__s32 ret;                   /* fd or -errno */
	struct se_str name;
	struct se_str _pad0;
};

enum se_module_op { SE_MODULE_INIT = 1, SE_MODULE_FINIT = 2, SE_MODULE_DELETE = 3 };

struct se_module {
	struct se_hdr  hdr;
	struct se_proc proc;
	__u32 op;                    /* enum se_module_op */
	__s32 ret;                   /* -ENOSYS on kernels without module support */
	__s32 fd;                    /* finit_module */
	__u32 mod_flags;
	__u64 len;                   /* init_module image length */
	__u32 syscall_nr;
	__u32 via_raw_tp;            /* 1 when caught by the raw_tp/sys_enter fallback (no result) */
	struct se_str name;          /* delete_module name, or finit_module file path */
	struct se_str _pad0;
};

struct se_bpf {
	struct se_hdr  hdr;
	struct se_proc proc;
	__u32 cmd;                   /* BPF_PROG_LOAD ... */
	__s32 ret;
	__u32 prog_type;
	__u32 insn_cnt;
	__u32 attach_type;
	__u32 _pad0;
	char  prog_name[16];
};

enum se_io_uring_op { SE_IO_URING_SETUP = 1, SE_IO_URING_SUBMIT = 2, SE_IO_URING_REGISTER = 3 };

struct se_io_uring {
	struct se_hdr  hdr;
	struct se_proc proc;
	__u32 op;                    /* enum se_io_uring_op */
	__s32 ret;
	__u32 entries;               /* setup: sq entries */
	__u32 setup_flags;
	__u32 opcode;                /* submit: IORING_OP_* */
	__u32 sq_thread;             /* submitted from the SQPOLL kernel thread */
	__u64 req_flags;
	__u64 user_data;
	__u64 ring_ctx;              /* kernel address of the ring, links setup and submissions */
	/* added by the mem sensor: in-kernel rate limit of submissions, see SE_IO_URING_WINDOW_NS */
	__u32 suppressed;            /* submissions of the same (pid, ring, opcode) not reported since the last event */
	__s32 ring_fd;               /* setup: the ring's fd (-1 when unknown) */
};

/*
 * io_uring submissions are reported at most once per SE_IO_URING_WINDOW_NS
 * for each (tgid, ring ctx, opcode); the next reported one carries the number
 * suppressed in between. Suppressed submissions count as SE_STAT_DEDUPED.
 */
#define SE_IO_URING_WINDOW_NS  1000000000ULL

/*
 * se_fallback_syscalls values: the event type in the low 16 bits and the
 * family's op (e.g. enum se_module_op) in the high 16 bits.
 */
#define SE_FALLBACK_VALUE(type, op) ((__u32)(type) | ((__u32)(op) << 16))

/* ---- enforcement (bpf/enforce/, object enforce.bpf.o, pinned in bpffs) --
 *
 * Policy maps are keyed by a generation: user space writes a new policy set
 * under the next generation, flips se_enf_state.active_gen with one write,
 * then deletes the old generation's entries. A program reads active_gen once
 * per invocation, so it sees one whole policy set, never a mix or nothing.
 */
#define SE_ENF_POLICY_MAX  256     /* policies per set (idx < this) */
#define SE_ENF_MATCH_MAX   8       /* policies sharing one map entry */
#define SE_ENF_PATH_LPM    248     /* bytes of a path compared by the prefix trie (LPM data <= 256) */

enum se_enf_kind {
	SE_ENF_EXEC     = 1,       /* exec deny (sched_process_exec) */
	SE_ENF_BPF      = 2,       /* bpf(BPF_PROG_LOAD) by a non-allowed program */
	SE_ENF_MODULE   = 3,       /* init_module / finit_module by a non-allowed program */
	SE_ENF_CONNECT  = 4,       /* outbound connect (cgroup/connect4|6) */
	SE_ENF_INBOUND  = 5,       /* inbound packet source (XDP) */
};

enum se_enf_action {
	SE_ENF_ACT_AUDIT = 0,      /* audit mode, or the kill switch is off: observed, let through */
	SE_ENF_ACT_KILL  = 1,      /* SIGKILL sent (result: bpf_send_signal's return) */
	SE_ENF_ACT_DENY  = 2,      /* the call failed with EPERM */
	SE_ENF_ACT_DROP  = 3,      /* packet dropped */
};

enum se_enf_match {
	SE_ENF_BY_IDENTITY = 1,    /* (dev, ino, generation) of the executable */
	SE_ENF_BY_PREFIX   = 2,    /* resolved path of the executable */
	SE_ENF_BY_FILENAME = 3,    /* path given to execve / the #! script (absolute only) */
	SE_ENF_BY_NETWORK  = 4,    /* CIDR (and port) */
	SE_ENF_BY_ALLOWLIST = 5,   /* not on the allow list (kernel tamper) */
};

/* se_enf_state[0]: the whole switchboard */
struct se_enf_state {
	__u32 active_gen;          /* generation of the policy set in force */
	__u32 armed;               /* kill switch: 0 = nothing is blocked (hits are reported as audit) */
	__u32 agent_tgid;          /* never killed or denied */
	__u32 _pad0;
	__u64 agent_start_ns;      /* start_boottime of the agent (with agent_tgid: the agent's identity) */
	__u64 updated_ns;          /* bpf_ktime_get_boot_ns() style clock of the last change (user space) */
};

enum se_enf_scope_flags {
	SE_SCOPE_USERS      = 1 << 0,   /* uid or euid in the set (what 1) */
	SE_SCOPE_HOST       = 1 << 1,   /* only tasks in the initial pid namespace */
	SE_SCOPE_CONTAINERS = 1 << 2,   /* only tasks outside the initial pid namespace */
	SE_SCOPE_CGROUPS    = 1 << 3,   /* cgroup v2 id in the set (what 2): named containers */
	SE_SCOPE_PARENTS    = 1 << 4,   /* parent's executable (dev, ino) in the set (what 3) */
};

/* se_enf_meta[0]: which build of enforce.bpf.o is pinned (a new build replaces it) */
struct se_enf_meta {
	__u8  obj_sha256[32];
	__u64 installed_ns;
};

struct se_enf_policy_key {
	__u32 gen;
	__u32 idx;
};

#define SE_ENF_ID_LEN 64

struct se_enf_policy {
	__u32 kind;                /* enum se_enf_kind */
	__u32 enforce;             /* 1 enforce, 0 audit */
	__u32 scope;               /* enum se_enf_scope_flags */
	__u32 host_pid_ns;         /* inum of the initial pid namespace (host/containers scope) */
	char  id[SE_ENF_ID_LEN];   /* the policy id (for user space: an adopting agent names its hits) */
};

#define SE_SCOPE_WHAT_UID    1
#define SE_SCOPE_WHAT_CGROUP 2
#define SE_SCOPE_WHAT_PARENT 3

struct se_enf_scope_key {
	__u32 gen;
	__u16 idx;
	__u16 what;                /* SE_SCOPE_WHAT_* */
	__u64 value;               /* uid, cgroup id, or parent exe ino */
	__u64 value2;              /* parent exe dev (0 otherwise) */
};

/* which policies one map entry belongs to */
struct se_enf_match_val {
	__u32 igen;                /* inode generation to compare (identity entries) */
	__u16 has_igen;            /* 0: the filesystem has no generation, compare (dev, ino) only */
	__u16 n;                   /* entries used in idx */
	__u16 idx[SE_ENF_MATCH_MAX];
	__u16 ports[SE_ENF_MATCH_MAX];  /* connect: host-order port per idx, 0 = every port */
	__u64 expires_ns;          /* 0 = never; else bpf_ktime_get_boot_ns() deadline (response blocks) */
};

struct se_enf_ident_key {
	__u32 gen;
	__u32 dev;                 /* new_encode_dev(i_sb->s_dev) */
	__u64 ino;
};

struct se_enf_path_key {     /* LPM trie: prefixlen = 32 + 8 * bytes of path compared */
	__u32 prefixlen;
	__u32 gen;
	char  path[SE_ENF_PATH_LPM];
};

struct se_enf_v4_key {       /* LPM trie: prefixlen = 32 + network prefix length */
	__u32 prefixlen;
	__u32 gen;
	__u8  addr[4];
};

struct se_enf_v6_key {
	__u32 prefixlen;
	__u32 gen;
	__u8  addr[16];
};

struct se_enforce {
	struct se_hdr  hdr;
	struct se_proc proc;         /* the acting task (zero for XDP) */
	__u32 kind;                  /* enum se_enf_kind */
	__u32 action;                /* enum se_enf_action */
	__s32 result;                /* 0 done; else -errno of the failed action */
	__u32 policy_idx;
	__u32 gen;                   /* policy set generation the decision was made under */
	__u32 match;                 /* enum se_enf_match */
	__u32 dev;                   /* executable identity (exec, bpf, module) */
	__u32 igen;
	__u64 ino;
	__u32 family;                /* AF_INET / AF_INET6 (connect, inbound) */
	__u16 port;                  /* host order: remote port (connect) */
	__u16 protocol;              /* IPPROTO_* (inbound) */
	__u8  addr[16];              /* remote (connect) or source (inbound) address */
	__u32 ifindex;               /* inbound */
	__u32 count;                 /* inbound: packets dropped since the last report of this source */
	__u64 aux;                   /* bpf: the bpf() command; module: syscall number */
	struct se_str path;          /* exe path (exec: resolved; tamper: current exe) */
	struct se_str filename;      /* exec: path given to execve (the script for #!) */
};

/* ---- network inspector (bpf/netinspect/, object netinspect.bpf.o) -------
 *
 * XDP (tail-called from slot 0 of the enforcement entry program's
 * se_xdp_next) runs the detections on ingress; TC clsact ingress and egress
 * keep the flow table and copy DNS messages. Packets belong to no task in
 * XDP/TC: the se_proc of these events is zero, user space attributes them
 * through the socket cookie (egress) and the net sensor's socket events.
 */
#define SE_NI_DNS_MAX       1024   /* bytes of a DNS message copied (TCP: with its 2-byte length) */
#define SE_NI_IPV6_EXT_MAX  8      /* IPv6 extension headers walked before giving up */
#define SE_NI_VLAN_MAX      2      /* stacked VLAN tags (802.1Q / 802.1ad) */

enum se_ni_hook {
	SE_NI_HOOK_XDP    = 0,
	SE_NI_HOOK_TC_IN  = 1,
	SE_NI_HOOK_TC_OUT = 2,
	SE_NI_HOOK_MAX    = 3,
};

/* se_ni_counters (per-CPU array): index hook * SE_NI_C_MAX + counter */
enum se_ni_counter {
	SE_NI_C_PACKETS      = 0,   /* packets seen by the hook */
	SE_NI_C_BYTES        = 1,
	SE_NI_C_NON_IP       = 2,   /* neither IPv4 nor IPv6 (ARP ...): passed, not parsed */
	SE_NI_C_BAD_L2       = 3,   /* truncated Ethernet or VLAN header, or more VLAN tags than SE_NI_VLAN_MAX */
	SE_NI_C_BAD_IPV4     = 4,   /* truncated IPv4 header, version != 4 */
	SE_NI_C_BAD_IHL      = 5,   /* IHL < 5 or the options run past the packet */
	SE_NI_C_BAD_IPV6     = 6,   /* truncated IPv6 header or extension header */
	SE_NI_C_IPV6_EXT_LIMIT = 7, /* more than SE_NI_IPV6_EXT_MAX extension headers (or a loop) */
	SE_NI_C_BAD_L4       = 8,   /* truncated TCP (or doff < 5) / UDP / ICMP header */
	SE_NI_C_FRAGMENT     = 9,   /* non-first fragment: no L4 header to parse */
	SE_NI_C_FLOW_NEW     = 10,  /* flow entries created */
	SE_NI_C_FLOW_FULL    = 11,  /* flow entry could not be created */
	SE_NI_C_DNS          = 12,  /* DNS messages emitted */
	SE_NI_C_DETECTION    = 13,  /* detection events emitted */
	SE_NI_C_RING_DROPPED = 14,  /* ring full: an event was lost */
	SE_NI_C_MAX          = 15,
};

enum se_ni_det_kind {
	SE_NI_DET_SYN_FLOOD_SRC = 1,   /* SYNs from one source in a window */
	SE_NI_DET_SYN_FLOOD_ALL = 2,   /* SYNs from all sources in a window (spoofed floods) */
	SE_NI_DET_PORT_SCAN     = 3,   /* distinct destination ports (TCP and UDP) of one source in a window */
	SE_NI_DET_ICMP_FLOOD    = 4,   /* ICMP / ICMPv6 echo requests from one source in a window */
};

enum se_ni_dir { SE_NI_DIR_IN = 0, SE_NI_DIR_OUT = 1 };

/* flow initiator, as first seen by the flow table */
enum se_ni_initiator {
	SE_NI_INIT_UNKNOWN = 0,
	SE_NI_INIT_REMOTE  = 1,    /* first packet inbound (or an inbound SYN without ACK) */
	SE_NI_INIT_LOCAL   = 2,    /* first packet outbound (or an outbound SYN without ACK) */
};

enum se_ni_dns_flags {
	SE_NI_DNS_TRUNC = 1 << 0,  /* the message was longer than what was copied */
};

/* se_ni_flows key (LRU per-CPU hash): one entry per interface and connection,
 * both directions in one entry ("local" = this host's side of the interface).
 * ICMP: lport = echo id (0 for other types), rport = type << 8 | code of the
 * first packet. Addresses: IPv4 in the first 4 bytes, the rest zero. */
struct se_ni_flow_key {
	__u32 ifindex;
	__u8  family;              /* AF_INET / AF_INET6 */
	__u8  proto;               /* IPPROTO_TCP / UDP / ICMP / ICMPV6, or another L4 number (ports 0) */
	__u16 lport;               /* host order */
	__u16 rport;
	__u16 _pad0;
	__u8  laddr[16];
	__u8  raddr[16];
	__u32 _pad1;
};

/* se_ni_flows value, per CPU: user space sums the CPUs (min first_ns, max
 * last_ns, OR of flags, first non-zero cookie and initiator) */
struct se_ni_flow {
	__u64 first_ns;            /* bpf_ktime_get_boot_ns() */
	__u64 last_ns;
	__u64 pkts_in;
	__u64 bytes_in;            /* L3 bytes (IP header included), as the IP total length says */
	__u64 pkts_out;
	__u64 bytes_out;
	__u64 cookie;              /* socket cookie of egress packets (0: none seen) */
	__u8  flags_in;            /* TCP flags seen inbound, OR-ed */
	__u8  flags_out;
	__u8  initiator;           /* enum se_ni_initiator */
	__u8  _pad0[5];
};

struct se_netdet {
	struct se_hdr  hdr;
	struct se_proc proc;         /* zero: packets belong to no task here */
	__u32 kind;                  /* enum se_ni_det_kind */
	__u32 ifindex;
	__u16 family;                /* AF_INET / AF_INET6 (0 for SYN_FLOOD_ALL) */
	__u16 protocol;              /* IPPROTO_* of the packet that crossed the threshold */
	__u16 port;                  /* host order: its destination port (0 for ICMP) */
	__u16 _pad0;
	__u8  saddr[16];             /* the source (zero for SYN_FLOOD_ALL) */
	__u8  daddr[16];             /* the destination of the packet that crossed the threshold */
	__u64 count;                 /* packets, or distinct ports (scan), in the window so far */
	__u64 threshold;
	__u64 window_ns;
	__u64 window_start_ns;
};

struct se_dns {
	struct se_hdr  hdr;
	struct se_proc proc;         /* zero; user space attributes by cookie */
	__u32 ifindex;
	__u8  dir;                   /* enum se_ni_dir */
	__u8  family;
	__u8  proto;                 /* IPPROTO_UDP / IPPROTO_TCP */
	__u8  flags;                 /* enum se_ni_dns_flags */
	__u16 sport;                 /* host order */
	__u16 dport;
	__u16 payload_len;           /* L4 payload bytes of the packet */
	__u16 _pad0;
	__u8  saddr[16];
	__u8  daddr[16];
	__u64 cookie;                /* socket cookie (egress; 0 when none) */
	struct se_str msg;           /* the DNS message as copied (TCP: 2-byte length first) */
	__u32 _pad1;
};

/* .rodata of netinspect.bpf.o, set by the loader before load */
struct se_ni_config {
	__u64 window_ns;             /* detection window (every detection) */
	__u32 syn_src_threshold;     /* SYNs from one source per window (0: off) */
	__u32 syn_all_threshold;     /* SYNs from all sources per window (0: off) */
	__u32 scan_ports_threshold;  /* distinct destination ports per source per window (0: off) */
	__u32 icmp_threshold;        /* ICMP echo requests per source per window (0: off) */
	__u32 flows;                 /* 1: keep the flow table in TC */
	__u32 dns;                   /* 1: copy DNS messages (UDP/TCP port 53) in TC */
	__u32 dns_max;               /* bytes copied per message, <= SE_NI_DNS_MAX */
	__u32 _pad0;
};

/* ---- configuration: .rodata, set by the loader before load ------------- */
struct se_config {
	__u32 agent_tgid;                    /* events of this process are ignored */
	__u32 sensor_enabled;                /* bit per enum se_sensor */
	__u64 dedup_window_ns;               /* 0 disables open dedup */
	__u32 n_include;                     /* file path prefixes (0 = everything) */
	__u32 n_exclude;
	char  include[SE_PREFIX_MAX][SE_PREFIX_LEN];
	char  exclude[SE_PREFIX_MAX][SE_PREFIX_LEN];
	__u32 argv_max;                      /* bytes of argv, <= SE_ARGV_MAX */
	__u32 capture_env;                   /* scan env for LD_PRELOAD / LD_LIBRARY_PATH */
	__u32 mem_anon_exec;                 /* report mmap/mprotect PROT_EXEC on anonymous memory */
	__u32 bpf_all_cmds;                  /* report every bpf() command, not only loads */
};

#endif /* SE_EVENTS_H */
