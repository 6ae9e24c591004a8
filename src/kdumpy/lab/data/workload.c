/*
 * kdumpy lab workload: puts the guest into states that a crash dump must show.
 *
 *   workload anon MB      fill MB of anonymous memory with a non-zero pattern, then sleep
 *                         (user pages for dump level bit 8; process "kdumpy-anon")
 *   workload zero MB      touch MB of anonymous memory with zeros, then sleep
 *                         (zero pages for dump level bit 1; process "kdumpy-zero")
 *   workload dstate       a vfork parent waiting for its child: TASK_UNINTERRUPTIBLE ("D")
 *                         (process "kdumpy-dstate", child "kdumpy-vchild")
 *   workload freeze DIR   freeze the filesystem at DIR (FIFREEZE), so writers block in D state
 *   workload write FILE   write to FILE (blocks in D state on a frozen filesystem)
 *   workload oom          allocate and touch memory until the OOM killer acts
 *
 * Built statically on the host by kdumpy.lab so the guest needs no libc (for arm64 guests
 * with aarch64-linux-gnu-gcc).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static void sleep_forever(void)
{
	for (;;)
		pause();
}

static char *map(size_t bytes)
{
	char *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	return p;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	if (!strcmp(argv[1], "anon") && argc == 3) {
		size_t bytes = strtoul(argv[2], NULL, 0) << 20;
		char *p = map(bytes);
		prctl(PR_SET_NAME, "kdumpy-anon");
		for (size_t i = 0; i < bytes; i++)
			p[i] = (char)(0x5a ^ (i * 2654435761u >> 13));
		sleep_forever();
	}
	if (!strcmp(argv[1], "zero") && argc == 3) {
		size_t bytes = strtoul(argv[2], NULL, 0) << 20;
		volatile char *p = map(bytes);
		prctl(PR_SET_NAME, "kdumpy-zero");
		/* A write fault allocates a real zero-filled page (a read would map the zero page). */
		for (size_t i = 0; i < bytes; i += 4096)
			p[i] = 0;
		sleep_forever();
	}
	if (!strcmp(argv[1], "dstate")) {
		prctl(PR_SET_NAME, "kdumpy-dstate");
		/* The parent sleeps uninterruptibly until the child execs or exits; the child
		 * only pauses, via the raw system call so it touches no shared libc state. */
		if (vfork() == 0) {
			syscall(SYS_prctl, PR_SET_NAME, "kdumpy-vchild", 0, 0, 0);
			for (;;)
#ifdef SYS_pause
				syscall(SYS_pause);
#else /* arm64 has no pause(2): ppoll on no descriptors, no timeout */
				syscall(SYS_ppoll, NULL, 0, NULL, NULL, 0);
#endif
		}
		return 0;
	}
	if (!strcmp(argv[1], "freeze") && argc == 3) {
		int fd = open(argv[2], O_RDONLY);
		if (fd < 0 || ioctl(fd, FIFREEZE, 0) < 0) {
			perror("freeze");
			return 1;
		}
		return 0;
	}
	if (!strcmp(argv[1], "write") && argc == 3) {
		prctl(PR_SET_NAME, "kdumpy-frozen");
		int fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd < 0) {
			perror("open");
			return 1;
		}
		for (;;)
			if (write(fd, "kdumpy", 6) < 0)
				return 1;
	}
	if (!strcmp(argv[1], "oom")) {
		prctl(PR_SET_NAME, "kdumpy-oom");
		for (;;) {
			char *p = map(16 << 20);
			memset(p, 0x6b, 16 << 20);
		}
	}
	return 2;
}
