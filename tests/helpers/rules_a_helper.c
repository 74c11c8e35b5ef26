/*
 * Triggers for the default-rule tests of tests/rules/default (rules-a half).
 * Each subcommand does one behaviour and prints key=value lines (pid first).
 *   regain_root     setresuid(65534, 65534, 0), then setresuid(0, 0, 0): a non-root uid becomes 0
 *   drop_root       setresuid(65534, 65534, 65534): root gives up its ids for good
 *   capgain         drop CAP_SYS_PTRACE from the effective set, then raise it again
 *   capdrop         drop CAP_SYS_PTRACE from the effective set only
 *   vm_readv        process_vm_readv from a forked child
 *   vm_readv_self   process_vm_readv from this process itself
 *   vm_writev_self  process_vm_writev into this process itself
 *   poke            PTRACE_ATTACH a forked child, PTRACE_POKEDATA one word, detach
 *   peek            PTRACE_ATTACH a forked child, PTRACE_PEEKDATA one word, detach
 *   traceme         a forked child calls PTRACE_TRACEME (child= is the actor)
 * Must run as root; every child is killed and reaped before exit.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/capability.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile long target_word = 0x5e5e5e5e;

static pid_t spawn_sleeper(void)
{
	pid_t child = fork();
	if (child < 0) {
		perror("fork");
		exit(2);
	}
	if (child == 0) {
		alarm(20); /* never outlive a crashed parent for long */
		for (;;)
			pause();
	}
	return child;
}

static void reap(pid_t child)
{
	int status;
	kill(child, SIGKILL);
	waitpid(child, &status, 0);
}

static int do_regain_root(void)
{
	int r1 = setresuid(65534, 65534, 0);
	int r2 = setresuid(0, 0, 0);
	printf("pid=%d\nfirst_ret=%d\nsecond_ret=%d\nuid=%d\n", getpid(), r1, r2, (int)getuid());
	return r1 || r2;
}

static int do_drop_root(void)
{
	int r = setresuid(65534, 65534, 65534);
	printf("pid=%d\nret=%d\nuid=%d\n", getpid(), r, (int)getuid());
	return r != 0;
}

static int caps(int regain)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct data[2];
	memset(data, 0, sizeof(data));
	if (syscall(SYS_capget, &hdr, data))
		return perror("capget"), 1;
	if (!(data[0].permitted & (1u << CAP_SYS_PTRACE)))
		return fprintf(stderr, "CAP_SYS_PTRACE not permitted\n"), 1;
	data[0].effective &= ~(1u << CAP_SYS_PTRACE);
	int r1 = syscall(SYS_capset, &hdr, data);
	int r2 = 0;
	if (regain) {
		data[0].effective |= 1u << CAP_SYS_PTRACE;
		r2 = syscall(SYS_capset, &hdr, data);
	}
	printf("pid=%d\ndrop_ret=%d\nraise_ret=%d\n", getpid(), r1, r2);
	return r1 || r2;
}

static int vm_readv(int self)
{
	pid_t target = self ? getpid() : spawn_sleeper();
	long buf = 0;
	struct iovec local = { .iov_base = &buf, .iov_len = sizeof(buf) };
	struct iovec remote = { .iov_base = (void *)&target_word, .iov_len = sizeof(buf) };
	ssize_t n = process_vm_readv(target, &local, 1, &remote, 1, 0);
	int err = errno;
	if (!self)
		reap(target);
	printf("pid=%d\ntarget=%d\nret=%zd\nerrno=%d\nvalue=%ld\n", getpid(), target, n, n < 0 ? err : 0, buf);
	return n != sizeof(buf);
}

static int vm_writev_self(void)
{
	long v = 0x1234;
	struct iovec local = { .iov_base = &v, .iov_len = sizeof(v) };
	struct iovec remote = { .iov_base = (void *)&target_word, .iov_len = sizeof(v) };
	ssize_t n = process_vm_writev(getpid(), &local, 1, &remote, 1, 0);
	printf("pid=%d\ntarget=%d\nret=%zd\n", getpid(), getpid(), n);
	return n != sizeof(v);
}

static int do_trace(int poke)
{
	pid_t child = spawn_sleeper();
	int status;
	long r = ptrace(PTRACE_ATTACH, child, NULL, NULL);
	long r2 = -1;
	if (r == 0) {
		waitpid(child, &status, 0);
		if (poke)
			r2 = ptrace(PTRACE_POKEDATA, child, (void *)&target_word, (void *)0x0badc0deL);
		else {
			errno = 0;
			long w = ptrace(PTRACE_PEEKDATA, child, (void *)&target_word, NULL);
			r2 = errno ? -1 : (w == 0x5e5e5e5e ? 0 : 1);
		}
		ptrace(PTRACE_DETACH, child, NULL, NULL);
	}
	reap(child);
	printf("pid=%d\ntarget=%d\nattach_ret=%ld\nop_ret=%ld\n", getpid(), child, r, r2);
	return r != 0 || r2 != 0;
}

static int do_traceme(void)
{
	pid_t child = fork();
	if (child < 0)
		return perror("fork"), 1;
	if (child == 0)
		_exit(ptrace(PTRACE_TRACEME, 0, NULL, NULL) == 0 ? 0 : 3);
	int status;
	waitpid(child, &status, 0);
	printf("pid=%d\nchild=%d\nchild_status=%d\n", getpid(), child, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	return !WIFEXITED(status) || WEXITSTATUS(status) != 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s regain_root|drop_root|capgain|capdrop|vm_readv|vm_readv_self|"
				"vm_writev_self|poke|peek|traceme\n", argv[0]);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	const char *c = argv[1];
	if (!strcmp(c, "regain_root")) return do_regain_root();
	if (!strcmp(c, "drop_root")) return do_drop_root();
	if (!strcmp(c, "capgain")) return caps(1);
	if (!strcmp(c, "capdrop")) return caps(0);
	if (!strcmp(c, "vm_readv")) return vm_readv(0);
	if (!strcmp(c, "vm_readv_self")) return vm_readv(1);
	if (!strcmp(c, "vm_writev_self")) return vm_writev_self();
	if (!strcmp(c, "poke")) return do_trace(1);
	if (!strcmp(c, "peek")) return do_trace(0);
	if (!strcmp(c, "traceme")) return do_traceme();
	fprintf(stderr, "unknown subcommand %s\n", c);
	return 2;
}
