//go:build !linux

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"

	"github.com/fsnotify/fsnotify"
	"golang.org/x/sys/unix"
)

// On systems without a child subreaper the emperor still kills each vassal's
// process group; escaped grandchildren go to init.
func becomeSubreaper() error { return nil }

func clearSpawnThreadSigmask() {}

// reapChild reaps one ended child without sleeping (the reaper waits for
// SIGCHLD between drains here): its pid, or 0 when none has ended or there
// is no child.
func reapChild() (int, syscall.WaitStatus) {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return 0, 0
		}
		return pid, ws
	}
}

func platformSysProcAttr(s *spawnSpec) (*syscall.SysProcAttr, error) {
	if s.cloneFlags != 0 {
		return nil, fmt.Errorf("emperor-use-clone: namespaces are not supported on %s", runtime.GOOS)
	}
	attr := &syscall.SysProcAttr{Setpgid: true}
	return attr, nil
}

func parseCloneFlags(list string) (uintptr, error) {
	if list == "" {
		return 0, nil
	}
	return 0, fmt.Errorf("emperor-use-clone: namespaces are not supported on %s", runtime.GOOS)
}

func signalTree(pid int, sig syscall.Signal) {
	if pid <= 0 {
		return
	}
	_ = syscall.Kill(-pid, sig)
	_ = syscall.Kill(pid, sig)
}

// fdWatcher without epoll: one goroutine per fd, level-triggered poll(2),
// re-armed by the loop after it has drained the socket.
type fdWatcher struct {
	out  chan<- readyFD
	done <-chan struct{}
	mu   sync.Mutex
	arms map[int]chan struct{}
}

func newFDWatcher(out chan<- readyFD, done <-chan struct{}) (*fdWatcher, error) {
	return &fdWatcher{out: out, done: done, arms: map[int]chan struct{}{}}, nil
}

func (w *fdWatcher) add(fd int, token uint32) error {
	arm := make(chan struct{}, 1)
	w.mu.Lock()
	w.arms[fd] = arm
	w.mu.Unlock()
	go func() {
		for {
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			n, err := unix.Poll(fds, 1000)
			if err != nil && err != unix.EINTR {
				return
			}
			if n <= 0 {
				// A closed fd does not always wake poll here: look for removal.
				select {
				case _, ok := <-arm:
					if !ok {
						return
					}
				default:
				}
				continue
			}
			if fds[0].Revents&unix.POLLNVAL != 0 {
				return
			}
			select {
			case w.out <- readyFD{fd: fd, token: token}:
			case <-w.done:
				return
			}
			select {
			case _, ok := <-arm:
				if !ok {
					return
				}
			case <-w.done:
				return
			}
		}
	}()
	return nil
}

func (w *fdWatcher) rearm(fd int, token uint32) {
	w.mu.Lock()
	arm := w.arms[fd]
	w.mu.Unlock()
	if arm != nil {
		select {
		case arm <- struct{}{}:
		default:
		}
	}
}

func (w *fdWatcher) remove(fd int) {
	w.mu.Lock()
	if arm := w.arms[fd]; arm != nil {
		close(arm)
		delete(w.arms, fd)
	}
	w.mu.Unlock()
}

func nofileLimit() (soft, hard uint64, err error) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return 0, 0, err
	}
	return uint64(lim.Cur), uint64(lim.Max), nil
}

func statOwner(fi os.FileInfo) (uint32, uint32, uint64, uint64) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Uid, st.Gid, uint64(st.Dev), uint64(st.Ino)
	}
	return 0, 0, 0, 0
}

// unreadBytes: without SIOCOUTQ, a vassal that never spoke the protocol
// counts as one that did not read its reload byte, and is restarted.
func unreadBytes(fd int) (int, error) { return 1, nil }

func executableFile(path string) bool {
	var st unix.Stat_t
	if unix.Stat(path, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return false
	}
	if unix.Geteuid() == 0 {
		return st.Mode&0o111 != 0
	}
	return unix.Access(path, unix.X_OK) == nil
}

func dupOnto(fd, newfd int) error { return unix.Dup2(fd, newfd) }

// setProcTitle: the command line is left as it is elsewhere.
func setProcTitle(name string) {}

func setAddressSpaceLimit(pid int, bytes uint64) error {
	return fmt.Errorf("limit-as: not supported on %s", runtime.GOOS)
}

// reserveThreads: elsewhere the runtime makes its threads as it goes.
func reserveThreads(n int) {}

// protocolSocketpair: without SOCK_CLOEXEC, set it under the fork lock so
// a concurrent fork cannot inherit the pair.
func protocolSocketpair() (int, int, error) {
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		return -1, -1, err
	}
	syscall.CloseOnExec(fds[0])
	syscall.CloseOnExec(fds[1])
	return fds[0], fds[1], nil
}

// cloexecInherited marks inherited descriptors close-on-exec so they do not
// reach vassals.
func cloexecInherited() {
	var lim unix.Rlimit
	max := 1024
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &lim) == nil && lim.Cur < 65536 {
		max = int(lim.Cur)
	}
	for fd := 3; fd < max; fd++ {
		syscall.CloseOnExec(fd)
	}
}

func shimNeeded(c *emperorConfig) bool { return c.vassalCaps != 0 || c.hooks.preExec() }

func runShim(spec string) int {
	os.Unsetenv(shimEnv)
	s := parseShimSpec(spec)
	binsh = s.Binsh
	if s.Caps != 0 {
		fmt.Fprintf(os.Stderr, "[emperor] vassal-cap: capabilities are not supported on %s\n", runtime.GOOS)
		return 1
	}
	if s.UID >= 0 {
		if err := setIDs(s.UID, s.GID, nil); err != nil {
			fmt.Fprintf(os.Stderr, "[emperor] vassal pre-exec: %v\n", err)
			return 1
		}
	}
	return s.asVassal()
}

func dropEmperorPrivileges(uid, gid int, groups []int, keep uint64) error {
	if keep != 0 {
		return fmt.Errorf("cap: capabilities are not supported on %s", runtime.GOOS)
	}
	if uid >= 0 {
		if err := setIDs(uid, gid, groups); err != nil {
			return err
		}
		logDrop(uid, gid)
	}
	return nil
}

func userNSMappings(attr *syscall.SysProcAttr, uid, gid int) bool { return false }

func setHostname(name string) error {
	return fmt.Errorf("sethostname is not supported on %s", runtime.GOOS)
}

func hookMount(args []string) error {
	return fmt.Errorf("mount hooks are not supported on %s", runtime.GOOS)
}

func hookUnmount(args []string) error {
	return fmt.Errorf("umount hooks are not supported on %s", runtime.GOOS)
}

func emperorUnshare(o *Options, _ []string, _ string) error { return unshareFromConfig(o) }

func unshareFromConfig(opts *Options) error {
	if list, ok := opts.Last("unshare"); ok && list != "" {
		return fmt.Errorf("unshare: namespaces are not supported on %s", runtime.GOOS)
	}
	return nil
}

func rearmParentDeath(ppid int) {}

func childrenOfSelf() []int { return nil }

func monotonicNowUsec() int64 { return 0 }

func listenVassalNotify(path string, out chan<- notifyMsg, done <-chan struct{}) error {
	return fmt.Errorf("vassals-notify-socket: sender credentials are not supported on %s", runtime.GOOS)
}

func parentPid(pid int) int { return 0 }

// forkTable: private fd tables for forking threads are Linux-only; here
// every thread forks from the shared table.
type forkTable struct{}

var sharedForkTable = &forkTable{}

func privateForkTable() (*forkTable, error)     { return sharedForkTable, nil }
func (t *forkTable) borrow(fd int) (int, error) { return fd, nil }
func (t *forkTable) giveBack(fd int)            {}

// fsWatch elsewhere is fsnotify (kqueue): one goroutine forwards its
// events to the loop. There is no close-after-write event, so a file
// written to is acted on once it has been quiet for a while.
type fsWatch struct{ w *fsnotify.Watcher }

func newFSWatch(out chan<- fsEvent, done <-chan struct{}) (*fsWatch, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	go func() {
		defer w.Close()
		for {
			var ev fsEvent
			select {
			case e, ok := <-w.Events:
				if !ok {
					return
				}
				ev = fsEvent{path: filepath.Clean(e.Name), op: fsnotifyOp(e)}
			case _, ok := <-w.Errors:
				if !ok {
					return
				}
				ev = fsEvent{op: fsOverflow}
			case <-done:
				return
			}
			select {
			case out <- ev:
			case <-done:
				return
			}
		}
	}()
	return &fsWatch{w: w}, nil
}

func fsnotifyOp(e fsnotify.Event) fsOp {
	var op fsOp
	if e.Has(fsnotify.Write) {
		op |= fsWrite
	}
	if e.Has(fsnotify.Create) {
		op |= fsCreate
	}
	if e.Has(fsnotify.Remove) || e.Has(fsnotify.Rename) {
		op |= fsGone
	}
	if e.Has(fsnotify.Chmod) {
		op |= fsAttrib
	}
	return op
}

// pollFD: events come over the channel, not from a descriptor.
func (f *fsWatch) pollFD() int                  { return -1 }
func (f *fsWatch) drain(fn func(fsEvent)) error { return nil }
func (f *fsWatch) add(dir string, _ bool) error { return f.w.Add(dir) }
func (f *fsWatch) remove(dir string)            { _ = f.w.Remove(dir) }

// Process trees: without /proc a stray's environment and origin cannot be
// read here; childrenOfSelf finds no strays to ask about anyway.
func procEnvValue(pid int, key string, limit int) (string, bool) { return "", false }

type procStat struct {
	pgid, sid int
	start     uint64
	zombie    bool // dead, not yet reaped
}

func readProcStat(pid int) procStat { return procStat{} }

// cgroup v2 is Linux's: vassals are tracked by the environment marker.
func ownCgroup2() string { return "" }

func ownMemoryCgroup1() string { return "" }

func releaseImagePages() {}

func intoCgroup(attr *syscall.SysProcAttr, fd int) {}

// setProcLimit sets RLIMIT_NPROC, soft and hard (limit-nproc).
func setProcLimit(n uint64) error {
	var lim unix.Rlimit
	setLimit(&lim.Cur, n)
	setLimit(&lim.Max, n)
	return unix.Setrlimit(unix.RLIMIT_NPROC, &lim)
}

// setPriority is prio, for the whole process.
func setPriority(n int) error { return syscall.Setpriority(syscall.PRIO_PROCESS, 0, n) }
