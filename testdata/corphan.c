/* A vassal for the scratch-image check (.ci/scratch-image): it orphans a
 * grandchild, which the container's PID 1 (the emperor) must then reap, and
 * sleeps until it is killed, as a daemon would. Built with gcc -static: a
 * scratch image has no libc. */
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void) {
	pid_t child = fork();
	if (child == 0) {
		if (fork() == 0) {
			usleep(500000); /* long enough to be reparented */
			printf("corphan: orphan %d has parent %d\n", (int)getpid(), (int)getppid());
			fflush(stdout);
			_exit(0);
		}
		_exit(0);
	}
	waitpid(child, NULL, 0);
	printf("corphan: %d orphaned a grandchild\n", (int)getpid());
	fflush(stdout);
	for (;;)
		pause();
}
