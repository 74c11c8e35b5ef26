// Workload loops for the overhead benchmark: prints nanoseconds per operation.
//   loops exec N      spawn /bin/true N times (posix_spawn + wait)
//   loops open N PATH open+close PATH N times
//   loops connect N PORT   N loopback TCP connects to 127.0.0.1:PORT (accepted by a thread)
//   loops openmany N DIR   open+close N distinct files DIR/f<i % 1024> (throughput source)
//   loops openrate N RATE DIR  the same, paced at RATE opens per second
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int listener;

static void *acceptor(void *arg)
{
	long n = (long)arg;
	for (long i = 0; i < n; i++) {
		int c = accept(listener, NULL, NULL);
		if (c < 0)
			break;
		close(c);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: loops exec|open|connect|openmany N [ARG]\n");
		return 2;
	}
	long n = atol(argv[2]);
	long long t0 = now_ns();
	if (!strcmp(argv[1], "exec")) {
		char *args[] = {"/bin/true", NULL};
		for (long i = 0; i < n; i++) {
			pid_t pid;
			if (posix_spawn(&pid, "/bin/true", NULL, NULL, args, environ) != 0)
				return 1;
			waitpid(pid, NULL, 0);
		}
	} else if (!strcmp(argv[1], "open") && argc > 3) {
		for (long i = 0; i < n; i++) {
			int fd = open(argv[3], O_RDONLY);
			if (fd < 0)
				return 1;
			close(fd);
		}
	} else if (!strcmp(argv[1], "openmany") && argc > 3) {
		char path[4096];
		for (long i = 0; i < n; i++) {
			snprintf(path, sizeof(path), "%s/f%ld", argv[3], i % 1024);
			int fd = open(path, O_RDONLY | O_CREAT, 0600);
			if (fd >= 0)
				close(fd);
		}
	} else if (!strcmp(argv[1], "openrate") && argc > 4) {
		/* N opens of distinct files at RATE per second, paced in steps of 100 */
		double rate = atof(argv[3]);
		char path[4096];
		for (long i = 0; i < n; i++) {
			if (i % 100 == 0) {
				long long due = t0 + (long long)(i / rate * 1e9);
				while (now_ns() < due)
					;
			}
			snprintf(path, sizeof(path), "%s/f%ld", argv[4], i % 1024);
			int fd = open(path, O_RDONLY | O_CREAT, 0600);
			if (fd >= 0)
				close(fd);
		}
	} else if (!strcmp(argv[1], "connect") && argc > 3) {
		struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[3]))};
		inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
		listener = socket(AF_INET, SOCK_STREAM, 0);
		int one = 1;
		setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(listener, (struct sockaddr *)&a, sizeof(a)) || listen(listener, 4096)) {
			perror("bind/listen");
			return 1;
		}
		pthread_t th;
		pthread_create(&th, NULL, acceptor, (void *)n);
		t0 = now_ns();
		/* abortive close (RST): no TIME_WAIT, so bounded loops never run out of ports */
		struct linger lg = {.l_onoff = 1, .l_linger = 0};
		for (long i = 0; i < n; i++) {
			int s = socket(AF_INET, SOCK_STREAM, 0);
			if (connect(s, (struct sockaddr *)&a, sizeof(a))) {
				perror("connect");
				return 1;
			}
			setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
			close(s);
		}
		pthread_join(th, NULL);
	} else {
		fprintf(stderr, "bad mode\n");
		return 2;
	}
	long long t1 = now_ns();
	printf("%.1f\n", (double)(t1 - t0) / n);
	return 0;
}
