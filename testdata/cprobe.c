/* A minimal vassal for the latency and burst benchmarks: it stamps
 * CLOCK_MONOTONIC into a datagram as its first action (the Go probe's line
 * format), sends byte 17 (loyal) on the emperor fd, then reports each byte
 * it reads, stamped the same way, until the stop byte. Built static, so an
 * exec costs no dynamic loading: the benchmarks measure the emperor, not
 * the vassal. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>

static long long now(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(void) {
	long long t0 = now();
	const char *name = getenv("PROBE_NAME"), *sock = getenv("PROBE_SOCK"), *efd = getenv("UWSGI_EMPEROR_FD");
	char line[256];
	int s = socket(AF_UNIX, SOCK_DGRAM, 0);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	if (sock) strncpy(a.sun_path, sock, sizeof a.sun_path - 1);
	int n = snprintf(line, sizeof line, "%s start %d %lld ", name ? name : "?", (int)getpid(), t0);
	sendto(s, line, n, 0, (struct sockaddr *)&a, sizeof a);
	if (!efd) return 0;
	int fd = atoi(efd);
	char b = 17;
	write(fd, &b, 1);
	while (read(fd, &b, 1) == 1) {
		n = snprintf(line, sizeof line, "%s byte %d %lld %d", name ? name : "?", (int)getpid(), now(), b);
		sendto(s, line, n, 0, (struct sockaddr *)&a, sizeof a);
		if (b == 0) return 0;
	}
	return 0;
}
