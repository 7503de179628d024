/* A service for the supervisor benchmark: reports its start the way
 * cprobe.c does (CLOCK_MONOTONIC as its first action, one datagram to
 * PROBE_SOCK), then sleeps until it is killed, as a daemon would run. Any
 * supervisor can run it: it needs no emperor fd and ignores its argv. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>

int main(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	const char *name = getenv("PROBE_NAME"), *sock = getenv("PROBE_SOCK");
	char line[256];
	int n = snprintf(line, sizeof line, "%s start %d %lld ", name ? name : "?", (int)getpid(),
	                 (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
	int s = socket(AF_UNIX, SOCK_DGRAM, 0);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	if (sock) strncpy(a.sun_path, sock, sizeof a.sun_path - 1);
	sendto(s, line, n, 0, (struct sockaddr *)&a, sizeof a);
	close(s);
	for (;;)
		pause();
}
