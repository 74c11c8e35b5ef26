/*
 * Triggers for the mem sensor's kernel tests. One subcommand per behaviour;
 * every value a test must compare is printed as key=value on stdout.
 *   mprotect    anonymous RW page -> RWX, plus file RX mappings (must be silent)
 *   mmap_rwx    anonymous RWX mapping
 *   mmap_anon_rx anonymous R+X mapping (reported only with mem.anon_exec)
 *   ptrace      PTRACE_ATTACH to a forked child
 *   vm_writev   process_vm_writev into a forked child
 *   memfd_exec  memfd_create + copy of /bin/true + fexecve
 *   module      finit_module(fd, "", 0) and delete_module(name, O_NONBLOCK)
 *   bpf_load    BPF_PROG_LOAD of a 2-instruction socket filter, then
 *               BPF_OBJ_GET_INFO_BY_FD on it
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

static char target_buf[64] = "untouched";

static pid_t spawn_sleeper(void)
{
	pid_t child = fork();
	if (child < 0) {
		perror("fork");
		exit(2);
	}
	if (child == 0) {
		for (;;)
			pause();
	}
	return child;
}

static int do_mprotect(void)
{
	void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return perror("mmap"), 1;
	int fd = open("/bin/true", O_RDONLY);
	if (fd < 0)
		return perror("open"), 1;
	/* what the dynamic loader does: must not be reported */
	void *f = mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
	void *g = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
	if (f == MAP_FAILED || g == MAP_FAILED)
		return perror("mmap file"), 1;
	int rg = mprotect(g, 4096, PROT_READ | PROT_EXEC);
	int r = mprotect(p, 4096, PROT_READ | PROT_WRITE | PROT_EXEC);
	printf("pid=%d\naddr=%lu\nret=%d\nfile_rx=%lu\nfile_mprotect=%lu\nfile_mprotect_ret=%d\nfd=%d\n",
	       getpid(), (unsigned long)p, r, (unsigned long)f, (unsigned long)g, rg, fd);
	return 0;
}

static int do_mmap(int prot)
{
	void *p = mmap(NULL, 8192, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return perror("mmap"), 1;
	printf("pid=%d\naddr=%lu\n", getpid(), (unsigned long)p);
	return 0;
}

static int do_ptrace(void)
{
	pid_t child = spawn_sleeper();
	long r = ptrace(PTRACE_ATTACH, child, NULL, NULL);
	int err = errno;
	int status;
	if (r == 0) {
		waitpid(child, &status, 0);
		ptrace(PTRACE_DETACH, child, NULL, NULL);
	}
	kill(child, SIGKILL);
	waitpid(child, &status, 0);
	printf("pid=%d\nchild=%d\nret=%ld\nerrno=%d\n", getpid(), child, r, r ? err : 0);
	return 0;
}

static int do_vm_writev(void)
{
	pid_t child = spawn_sleeper();
	char msg[] = "written-by-vm_writev";
	struct iovec local = { .iov_base = msg, .iov_len = sizeof(msg) };
	/* same address in the child: it is a fork of this process */
	struct iovec remote = { .iov_base = target_buf, .iov_len = sizeof(msg) };
	ssize_t n = process_vm_writev(child, &local, 1, &remote, 1, 0);
	int status;
	kill(child, SIGKILL);
	waitpid(child, &status, 0);
	printf("pid=%d\nchild=%d\nret=%zd\nremote=%lu\n", getpid(), child, n, (unsigned long)target_buf);
	return 0;
}

static int do_memfd_exec(void)
{
	int fd = memfd_create("se_test_memfd", MFD_CLOEXEC);
	if (fd < 0)
		return perror("memfd_create"), 1;
	int src = open("/bin/true", O_RDONLY);
	if (src < 0)
		return perror("open"), 1;
	char buf[65536];
	ssize_t n;
	while ((n = read(src, buf, sizeof(buf))) > 0)
		if (write(fd, buf, n) != n)
			return perror("write"), 1;
	close(src);
	printf("pid=%d\nfd=%d\n", getpid(), fd);
	fflush(stdout);
	char *argv[] = { "se-memfd-true", NULL };
	char *envp[] = { NULL };
	fexecve(fd, argv, envp);
	perror("fexecve");
	return 1;
}

static int do_module(void)
{
	int fd = open("/dev/null", O_RDONLY);
	long r1 = syscall(SYS_finit_module, fd, "", 0);
	int e1 = errno;
	long r2 = syscall(SYS_delete_module, "se_test_mod", O_NONBLOCK);
	int e2 = errno;
	printf("pid=%d\nfd=%d\nfinit_ret=%ld\nfinit_errno=%d\ndelete_ret=%ld\ndelete_errno=%d\n",
	       getpid(), fd, r1, r1 ? e1 : 0, r2, r2 ? e2 : 0);
	return 0;
}

static int do_bpf_load(void)
{
	struct bpf_insn insns[2] = {
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = 0 },
		{ .code = BPF_JMP | BPF_EXIT },
	};
	union bpf_attr attr;
	memset(&attr, 0, sizeof(attr));
	attr.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
	attr.insn_cnt = 2;
	attr.insns = (uint64_t)(unsigned long)insns;
	attr.license = (uint64_t)(unsigned long)"GPL";
	strncpy(attr.prog_name, "se_test_prog", sizeof(attr.prog_name) - 1);
	long fd = syscall(SYS_bpf, BPF_PROG_LOAD, &attr, sizeof(attr));
	printf("pid=%d\nfd=%ld\nerrno=%d\n", getpid(), fd, fd < 0 ? errno : 0);
	if (fd < 0)
		return 1;
	/* a second, non-load command (reported only with mem.bpf_all_commands) */
	struct bpf_prog_info info;
	memset(&info, 0, sizeof(info));
	memset(&attr, 0, sizeof(attr));
	attr.info.bpf_fd = fd;
	attr.info.info_len = sizeof(info);
	attr.info.info = (uint64_t)(unsigned long)&info;
	long r = syscall(SYS_bpf, BPF_OBJ_GET_INFO_BY_FD, &attr, sizeof(attr));
	printf("info_ret=%ld\nprog_id=%u\n", r, info.id);
	close(fd);
	return r != 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s mprotect|mmap_rwx|mmap_anon_rx|ptrace|vm_writev|memfd_exec|module|bpf_load\n", argv[0]);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	const char *c = argv[1];
	if (!strcmp(c, "mprotect")) return do_mprotect();
	if (!strcmp(c, "mmap_rwx")) return do_mmap(PROT_READ | PROT_WRITE | PROT_EXEC);
	if (!strcmp(c, "mmap_anon_rx")) return do_mmap(PROT_READ | PROT_EXEC);
	if (!strcmp(c, "ptrace")) return do_ptrace();
	if (!strcmp(c, "vm_writev")) return do_vm_writev();
	if (!strcmp(c, "memfd_exec")) return do_memfd_exec();
	if (!strcmp(c, "module")) return do_module();
	if (!strcmp(c, "bpf_load")) return do_bpf_load();
	fprintf(stderr, "unknown subcommand %s\n", c);
	return 2;
}
