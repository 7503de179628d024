//go:build linux

package main

import (
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// becomeSubreaper makes orphaned descendants of vassals (daemonized
// grandchildren, workers of a SIGKILLed master) re-parent to the emperor
// instead of init, so they can be found, killed and reaped.
func becomeSubreaper() error {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_CHILD_SUBREAPER): %w", err)
	}
	return nil
}

// clearSpawnThreadSigmask empties the signal mask of the calling (locked)
// thread. Go's fork restores the forking thread's mask in the child, so an
// empty mask here is what every vassal starts with, whatever mask the
// emperor itself inherited.
func clearSpawnThreadSigmask() {
	var empty unix.Sigset_t
	_ = unix.PthreadSigmask(unix.SIG_SETMASK, &empty, nil)
}

// platformSysProcAttr returns the process attributes every vassal gets:
// its own process group (so stop and kill reach its whole tree) and a
// parent-death signal. Go sets PDEATHSIG after the credential change, so it
// survives the tyrant setuid (uWSGI loses it there). PDEATHSIG fires when the
// forking *thread* dies, which is why all spawns run on the main thread,
// locked for the emperor's lifetime (golang/go#27505).
func platformSysProcAttr(s *spawnSpec) (*syscall.SysProcAttr, error) {
	attr := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if s.cloneFlags != 0 {
		attr.Cloneflags = s.cloneFlags
	}
	if s.cred != nil {
		attr.Credential = s.cred
	}
	return attr, nil
}

// parseCloneFlags turns uWSGI's namespace list ("fs,net,ipc,pid,uts") into
// CLONE_NEW* flags.
func parseCloneFlags(list string) (uintptr, error) {
	var flags uintptr
	for _, name := range strings.FieldsFunc(list, func(r rune) bool { return r == ',' || r == ' ' }) {
		switch name {
		case "fs", "ns", "mount", "mnt":
			flags |= unix.CLONE_NEWNS
		case "net":
			flags |= unix.CLONE_NEWNET
		case "ipc":
			flags |= unix.CLONE_NEWIPC
		case "pid":
			flags |= unix.CLONE_NEWPID
		case "uts":
			flags |= unix.CLONE_NEWUTS
		case "user":
			flags |= unix.CLONE_NEWUSER
		case "sysvsem":
			flags |= unix.CLONE_SYSVSEM
		case "cgroup":
			flags |= unix.CLONE_NEWCGROUP
		default:
			return 0, fmt.Errorf("unknown namespace subsystem: %s", name)
		}
	}
	return flags, nil
}

// childrenOf lists the direct children of pid from /proc/PID/task/*/children.
// Cheap compared with a walk of all of /proc, and it sees orphans that were
// re-parented to us as subreaper.
func childrenOf(pid int) []int {
	tasks, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	if err != nil {
		return nil
	}
	var kids []int
	for _, t := range tasks {
		data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/task/" + t.Name() + "/children")
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(data)) {
			if n, err := strconv.Atoi(f); err == nil {
				kids = append(kids, n)
			}
		}
	}
	return kids
}

// descendantsOf returns every descendant of pid, children before their own
// children, so killing in order stops each level before it can fork more.
func descendantsOf(pid int) []int {
	var out []int
	queue := childrenOf(pid)
	seen := map[int]bool{}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if seen[p] {
			continue
		}
		seen[p] = true
		out = append(out, p)
		queue = append(queue, childrenOf(p)...)
	}
	return out
}

// signalTree sends sig to the process group of pid and to every descendant
// of pid, including those that left the group with setsid/setpgid.
func signalTree(pid int, sig syscall.Signal) {
	if pid <= 0 {
		return
	}
	desc := descendantsOf(pid)
	_ = syscall.Kill(-pid, sig)
	_ = syscall.Kill(pid, sig)
	for _, d := range desc {
		_ = syscall.Kill(d, sig)
	}
}

// startReaper owns all waiting: no other code calls wait4, so exits are never
// stolen. SIGCHLD only wakes it; wait4(-1, WNOHANG) is repeated until empty so
// coalesced signals lose nothing.
func startReaper(out chan<- childExit, done <-chan struct{}) {
	sigchld := make(chan os.Signal, 1)
	signal.Notify(sigchld, syscall.SIGCHLD)
	go func() {
		defer signal.Stop(sigchld)
		for {
			for {
				var ws syscall.WaitStatus
				pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
				if err == syscall.EINTR {
					continue
				}
				if pid <= 0 || err != nil {
					break
				}
				select {
				case out <- childExit{pid: pid, status: ws}:
				case <-done:
					return
				}
			}
			select {
			case <-sigchld:
			case <-done:
				return
			}
		}
	}()
}

// fdWatcher reports readiness of vassal protocol sockets with one epoll
// instance and one goroutine, instead of a goroutine per vassal: 10,000
// vassals must not cost 10,000 stacks. Edge-triggered: the loop reads until
// EAGAIN after each report. The token tells a stale report for a closed and
// reused fd number apart from a live one.
type fdWatcher struct {
	epfd int
	out  chan<- readyFD
	done <-chan struct{}
}

func newFDWatcher(out chan<- readyFD, done <-chan struct{}) (*fdWatcher, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	w := &fdWatcher{epfd: epfd, out: out, done: done}
	go w.run()
	return w, nil
}

func (w *fdWatcher) run() {
	events := make([]unix.EpollEvent, 256)
	for {
		n, err := unix.EpollWait(w.epfd, events, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return
		}
		for i := 0; i < n; i++ {
			ev := readyFD{fd: int(events[i].Fd), token: uint32(events[i].Pad)}
			select {
			case w.out <- ev:
			case <-w.done:
				return
			}
		}
	}
}

func (w *fdWatcher) add(fd int, token uint32) error {
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(fd), Pad: int32(token)}
	if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return fmt.Errorf("epoll_ctl(add %d): %w", fd, err)
	}
	return nil
}

// rearm is a no-op with edge-triggered epoll; other systems need it.
func (w *fdWatcher) rearm(fd int, token uint32) {}

func (w *fdWatcher) remove(fd int) {
	_ = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_DEL, fd, nil)
}

// raiseNofileLimit lifts the soft RLIMIT_NOFILE to the hard limit: every
// vassal costs the emperor one descriptor.
func raiseNofileLimit() (uint64, uint64, error) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return 0, 0, err
	}
	old := lim.Cur
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
			return old, old, err
		}
	}
	return old, lim.Cur, nil
}

// statOwner returns uid and gid from a stat result.
func statOwner(fi os.FileInfo) (uint32, uint32, uint64, uint64) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Uid, st.Gid, uint64(st.Dev), st.Ino
	}
	return 0, 0, 0, 0
}

// protocolSocketpair makes the Emperor-protocol channel, close-on-exec from
// birth so no other vassal can inherit it.
func protocolSocketpair() (int, int, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, -1, err
	}
	return fds[0], fds[1], nil
}

// cloexecInherited marks every descriptor the emperor inherited beyond
// stdio close-on-exec: a pipe leaked by whatever started the emperor must
// not reach its vassals.
func cloexecInherited() {
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err == nil {
		return
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			unix.CloseOnExec(fd)
		}
	}
}
