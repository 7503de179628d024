/* A minimal vassal for the burst benchmark: stamps CLOCK_MONOTONIC into a
 * datagram as its first action (same line format as the Go probe), sends
 * byte 17 (loyal) on the emperor fd, then waits for the stop byte. Small
 * enough that the benchmark measures the emperor, not the vassal. */
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
	const char *name = getenv("PROBE_NAME"), *sock = getenv("PROBE_SOCK"), *efd = getenv("UWSGI_EMPEROR_FD");
	char line[256];
	int n = snprintf(line, sizeof line, "%s start %d %lld ", name ? name : "?", (int)getpid(),
	                 (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
	int s = socket(AF_UNIX, SOCK_DGRAM, 0);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	if (sock) strncpy(a.sun_path, sock, sizeof a.sun_path - 1);
	sendto(s, line, n, 0, (struct sockaddr *)&a, sizeof a);
	if (!efd) return 0;
	int fd = atoi(efd);
	char b = 17;
	write(fd, &b, 1);
	while (read(fd, &b, 1) == 1)
		if (b == 0) return 0;
	return 0;
}
