//go:build linux

package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"unsafe"

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
// forking *thread* dies, which is why spawns run only on threads locked for
// the emperor's lifetime (golang/go#27505).
func platformSysProcAttr(s *spawnSpec) (*syscall.SysProcAttr, error) {
	attr := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if s.cloneFlags != 0 {
		attr.Cloneflags = s.cloneFlags
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
func childrenOf(pid int) []int { return childrenIn("/proc/" + strconv.Itoa(pid)) }

func childrenIn(proc string) []int {
	tasks, err := readDir(proc + "/task")
	if err != nil {
		return nil
	}
	var kids []int
	for _, t := range tasks {
		data, err := os.ReadFile(proc + "/task/" + t.Name() + "/children")
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
		runtime.Gosched() // as the reaper does before it blocks: the loop runs now, here
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

// nofileLimit reports RLIMIT_NOFILE as the emperor runs with it.
func nofileLimit() (soft, hard uint64, err error) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return 0, 0, err
	}
	return lim.Cur, lim.Max, nil
}

// statOwner returns uid and gid from a stat result.
func statOwner(fi os.FileInfo) (uint32, uint32, uint64, uint64) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Uid, st.Gid, uint64(st.Dev), st.Ino
	}
	return 0, 0, 0, 0
}

// unreadBytes is how much of what the emperor wrote on its end of a
// protocol socket the vassal has not read yet (SIOCOUTQ: for a UNIX stream
// socket, data stays charged to the sender until the receiver consumes it).
func unreadBytes(fd int) (int, error) {
	return unix.IoctlGetInt(fd, unix.SIOCOUTQ)
}

// executableFile is dash's test for a command candidate: a regular file
// (through symlinks) the caller may execute; for root, one with any
// execute bit (Debian's dash checks it so).
func executableFile(path string) bool {
	var st unix.Stat_t
	if unix.Stat(path, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return false
	}
	if unix.Geteuid() == 0 {
		return st.Mode&0o111 != 0
	}
	return unix.Faccessat(unix.AT_FDCWD, path, unix.X_OK, unix.AT_EACCESS) == nil
}

// dupOnto makes fd also be newfd (a log file as stdout and stderr).
func dupOnto(fd, newfd int) error { return unix.Dup3(fd, newfd, 0) }

// setProcTitle makes the process's command line (what ps shows) name, as
// uWSGI's emperor-procname does: written over the argv area, cut to its
// size; the kernel's comm (start-stop-daemon's --name) stays. os.Args,
// whose strings live in that area, is copied first.
func setProcTitle(name string) {
	if len(argvArea) > 1 {
		n := copy(argvArea[:len(argvArea)-1], name)
		clear(argvArea[n:])
	}
}

// argvArea is the memory the kernel laid the command line out in. os.Args
// is copied out of it before anything reads it, so that writing a title
// there changes no string of the program.
var argvArea []byte

func init() {
	if len(os.Args) == 0 {
		return
	}
	start := unsafe.StringData(os.Args[0])
	last := os.Args[len(os.Args)-1]
	size := int(uintptr(unsafe.Pointer(unsafe.StringData(last)))-uintptr(unsafe.Pointer(start))) + len(last) + 1
	if size > 1 && size < 1<<20 {
		argvArea = unsafe.Slice(start, size)
	}
	args := make([]string, len(os.Args))
	for i, a := range os.Args {
		args[i] = strings.Clone(a)
	}
	os.Args = args
}

// setAddressSpaceLimit binds a process's virtual memory (limit-as).
func setAddressSpaceLimit(pid int, bytes uint64) error {
	lim := unix.Rlimit{Cur: bytes, Max: bytes}
	return unix.Prlimit(pid, unix.RLIMIT_AS, &lim, nil)
}

// reserveThreads has the runtime make n more OS threads now, while they
// can be had: n goroutines sit in a blocking system call while others
// keep every P busy, so the runtime hands their Ps to new threads.
func reserveThreads(n int) {
	var blocked, spun sync.WaitGroup
	done := make(chan struct{})
	for i := 0; i < n; i++ {
		blocked.Add(1)
		go func() {
			defer blocked.Done()
			ts := unix.Timespec{Nsec: 30e6}
			_, _, _ = unix.Syscall(unix.SYS_NANOSLEEP, uintptr(unsafe.Pointer(&ts)), 0, 0)
		}()
	}
	for i := 0; i < runtime.GOMAXPROCS(0); i++ {
		spun.Add(1)
		go func() {
			defer spun.Done()
			for {
				select {
				case <-done:
					return
				default:
					runtime.Gosched()
				}
			}
		}()
	}
	blocked.Wait()
	close(done)
	spun.Wait()
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
	ents, err := readDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			unix.CloseOnExec(fd)
		}
	}
}

// shimNeeded says whether vassals must pass through the pre-exec stage:
// Go's fork cannot shrink the bounding set, make mounts private or run the
// vassal-side hooks between fork and exec, so the emperor execs itself for
// that, then the real vassal.
func shimNeeded(c *emperorConfig) bool {
	return c.vassalCaps != 0 || c.cloneFlags&unix.CLONE_NEWNS != 0 || c.hooks.preExec()
}

// runShim runs in the child, still as root, between the emperor's fork and
// the vassal's exec: private mounts (so a vassal's umount cannot reach the
// host through shared propagation), the capability bounding set, then the
// tyrant's uid/gid, then the vassal-side hooks and the exec (asVassal).
func runShim(spec string) int {
	os.Unsetenv(shimEnv)
	s := parseShimSpec(spec)
	binsh = s.Binsh
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "[emperor] vassal pre-exec: %v\n", err)
		return 1
	}
	if s.Private {
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			return fail(fmt.Errorf("making mounts private: %w", err))
		}
	}
	if s.Caps != 0 {
		if err := shrinkBoundingSet(s.Caps | 1<<unix.CAP_SETPCAP); err != nil {
			return fail(err)
		}
	}
	if s.UID >= 0 {
		ppid := os.Getppid()
		if err := setIDs(s.UID, s.GID, nil); err != nil {
			return fail(err)
		}
		rearmParentDeath(ppid)
	}
	return s.asVassal()
}

// shrinkBoundingSet drops every capability not in keep from the bounding set
// of the calling thread, the one that will exec.
func shrinkBoundingSet(keep uint64) error {
	for c := 0; c <= lastCap(); c++ {
		if keep&(1<<uint(c)) != 0 {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && err != unix.EINVAL {
			return fmt.Errorf("unable to drop capability %d: %w", c, err)
		}
	}
	return nil
}

func lastCap() int {
	data, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 40
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return 40
	}
	return n
}

// dropEmperorPrivileges runs the emperor itself as uid/gid, keeping only the
// capabilities listed (uWSGI's paranoid tyrant: cap = setgid,setuid). Caps
// are per thread in Linux, so every step goes to all threads at once.
func dropEmperorPrivileges(uid, gid int, groups []int, keep uint64) error {
	if keep != 0 {
		for c := 0; c <= lastCap(); c++ {
			if keep&(1<<uint(c)) == 0 {
				if _, _, e := syscall.AllThreadsSyscall(unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, uintptr(c), 0); e != 0 && e != unix.EINVAL {
					return fmt.Errorf("cap: dropping capability %d from the bounding set: %w", c, e)
				}
			}
		}
		if _, _, e := syscall.AllThreadsSyscall(unix.SYS_PRCTL, unix.PR_SET_KEEPCAPS, 1, 0); e != 0 {
			return fmt.Errorf("cap: keepcaps: %w (not possible in a cgo build)", e)
		}
	}
	if uid >= 0 {
		if err := setIDs(uid, gid, groups); err != nil {
			return err
		}
		logDrop(uid, gid)
	}
	if keep != 0 {
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		data := [2]unix.CapUserData{
			{Effective: uint32(keep), Permitted: uint32(keep)},
			{Effective: uint32(keep >> 32), Permitted: uint32(keep >> 32)},
		}
		if _, _, e := syscall.AllThreadsSyscall(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); e != 0 {
			return fmt.Errorf("cap: capset: %w", e)
		}
	}
	return nil
}

// userNSMappings maps root inside a new user namespace to the vassal's host
// uid/gid, so CLONE_NEWUSER works without an external helper (uWSGI's
// setuid(0) there fails for want of a mapping).
func userNSMappings(attr *syscall.SysProcAttr, uid, gid int) bool {
	if attr.Cloneflags&unix.CLONE_NEWUSER == 0 {
		return false
	}
	attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: uid, Size: 1}}
	attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: gid, Size: 1}}
	attr.GidMappingsEnableSetgroups = false
	return true
}

func setHostname(name string) error { return unix.Sethostname([]byte(name)) }

// hookMount is uWSGI's mount hook: "fstype source target [flags]".
func hookMount(args []string) error {
	if len(args) < 3 {
		return fmt.Errorf("mount needs: fstype source target")
	}
	var flags uintptr
	if len(args) > 3 {
		for _, f := range strings.Split(args[3], ",") {
			switch f {
			case "bind":
				flags |= unix.MS_BIND
			case "recursive", "rec":
				flags |= unix.MS_REC
			case "readonly", "ro":
				flags |= unix.MS_RDONLY
			case "remount":
				flags |= unix.MS_REMOUNT
			case "private":
				flags |= unix.MS_PRIVATE
			}
		}
	}
	return unix.Mount(args[1], args[2], args[0], flags, "")
}

func hookUnmount(args []string) error {
	if len(args) < 1 {
		return fmt.Errorf("umount needs a target")
	}
	return unix.Unmount(args[0], unix.MNT_DETACH)
}

// unshareFromConfig applies the vassal's own "unshare" option. Mount, UTS,
// IPC and network namespaces are entered in place (all the runner's work
// happens on its locked main thread, which is the one that execs); a new
// pid namespace needs a child, so the runner re-runs itself there and
// waits, passing its exit status and signals through.
func unshareFromConfig(opts *Options) error {
	list, ok := opts.Last("unshare")
	if !ok || list == "" {
		return nil
	}
	flags, err := parseCloneFlags(list)
	if err != nil {
		return fmt.Errorf("unshare: %w", err)
	}
	if flags&unix.CLONE_NEWPID != 0 {
		return reexecInNamespaces(flags)
	}
	if err := unix.Unshare(int(flags)); err != nil {
		return fmt.Errorf("unshare(%s): %w", list, err)
	}
	if flags&unix.CLONE_NEWNS != 0 {
		// Private first: with shared propagation an umount here would
		// reach the host's mount table.
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			return fmt.Errorf("making mounts private: %w", err)
		}
	}
	return nil
}

// emperorUnshare puts the emperor, and so every vassal, in the new
// namespaces its config's unshare names, as uWSGI's emperor (as root)
// unshares itself. unshare(2) moves only the calling thread of a threaded
// process, so the main thread unshares and execs this binary again, which
// starts in them, with the environment and directory the config was read
// in. User and pid namespaces cannot be had so: a threaded process may not
// enter the first, nor make threads after the second.
func emperorUnshare(o *Options, env0 []string, cwd0 string) error {
	list, ok := o.Last("unshare")
	if !ok || list == "" || os.Getuid() != 0 {
		return nil
	}
	flags, err := parseCloneFlags(list)
	if err != nil {
		return fmt.Errorf("unshare: %w", err)
	}
	if flags&(unix.CLONE_NEWUSER|unix.CLONE_NEWPID) != 0 {
		return fmt.Errorf("unshare %s: the emperor cannot move itself into new user or pid namespaces (emperor-use-clone gives each vassal its own)", list)
	}
	if err := unix.Unshare(int(flags)); err != nil {
		return fmt.Errorf("unshare(%s): %w", list, err)
	}
	logRaw("[linux-namespace] applied unshare() mask: %d", flags)
	if flags&unix.CLONE_NEWNS != 0 {
		// Private first: with shared propagation a mount made in here
		// would reach the host's mount table.
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			return fmt.Errorf("making mounts private: %w", err)
		}
	}
	if err := os.Chdir(cwd0); err != nil {
		return fmt.Errorf("unshare: %w", err)
	}
	err = syscall.Exec(reexecPath(), os.Args, append(env0, reexecEnv+"="+reexecUnshared))
	return fmt.Errorf("unshare: running the emperor again in its namespaces: %w", err)
}

func reexecInNamespaces(flags uintptr) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	files := []uintptr{0, 1, 2}
	if fd, err := strconv.Atoi(os.Getenv("UWSGI_EMPEROR_FD")); err == nil && fd >= 3 {
		for len(files) < fd {
			files = append(files, ^uintptr(0))
		}
		files = append(files, uintptr(fd))
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1)
	pid, err := syscall.ForkExec(self, os.Args, &syscall.ProcAttr{
		Env: append(os.Environ(), runnerUnsharedEnv+"=1"), Files: files,
		Sys: &syscall.SysProcAttr{Cloneflags: flags, Pdeathsig: syscall.SIGKILL},
	})
	if err != nil {
		return fmt.Errorf("unshare: starting the vassal in new namespaces: %w", err)
	}
	go func() {
		for s := range sigs {
			_ = syscall.Kill(pid, s.(syscall.Signal))
		}
	}()
	for {
		var ws syscall.WaitStatus
		_, err := syscall.Wait4(pid, &ws, 0, nil)
		if err == syscall.EINTR {
			continue
		}
		if ws.Signaled() {
			os.Exit(128 + int(ws.Signal()))
		}
		os.Exit(ws.ExitStatus())
	}
}

// rearmParentDeath sets PDEATHSIG again after a uid/gid change, which the
// kernel clears it on (the reason tyrant vassals outlive uWSGI's emperor),
// and exits at once if the parent already died in between.
func rearmParentDeath(ppid int) {
	_ = unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0, 0, 0)
	if os.Getppid() != ppid {
		os.Exit(1)
	}
}

// childrenOfSelf reads /proc/self, not /proc/<getpid()>: as PID 1 of a
// container the two differ when /proc is the host's.
func childrenOfSelf() []int { return childrenIn("/proc/self") }

func monotonicNowUsec() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano() / 1000
}

// listenVassalNotify binds the socket vassals get as NOTIFY_SOCKET. The
// kernel stamps each datagram with the sender's pid (SO_PASSCRED), which is
// how a message is traced back to its vassal: one socket serves them all.
func listenVassalNotify(path string, out chan<- notifyMsg, done <-chan struct{}) error {
	_ = os.Remove(path)
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("vassals-notify-socket %s: %w", path, err)
	}
	_ = os.Chmod(path, 0o666)
	raw, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	_ = raw.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1) })
	if serr != nil {
		return fmt.Errorf("SO_PASSCRED: %w", serr)
	}
	go func() { <-done; conn.Close() }()
	go func() {
		buf := make([]byte, 4096)
		oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred))
		for {
			n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
			if err != nil {
				return
			}
			msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
			if err != nil || len(msgs) == 0 {
				continue
			}
			cred, err := unix.ParseUnixCredentials(&msgs[0])
			if err != nil {
				continue
			}
			select {
			case out <- notifyMsg{pid: int(cred.Pid), text: string(buf[:n])}:
			case <-done:
				return
			}
		}
	}()
	return nil
}

// parentPid reads a process's parent from /proc, to trace a notify message
// sent by a vassal's child back to the vassal.
func parentPid(pid int) int {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return 0
	}
	f := strings.Fields(s[i+2:])
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

// forkTable is the fd table a spawner thread forks from. Every fork copies
// the forking thread's whole table into the child, and every exec then
// closes the close-on-exec part of it again: with one protocol socket per
// vassal that is O(vassals) work per spawn, twice (measured: +25 µs per
// 1,000 open fds for each fork+exec, so a storm of 10,000 spawns costs
// seconds more). A spawner thread therefore unshares its fd table and keeps
// it nearly empty, borrowing the two descriptors a vassal needs from the
// emperor's table, through a pidfd, just for the fork.
type forkTable struct {
	self int // pidfd of the emperor, in the private table; -1: shared table
}

var sharedForkTable = &forkTable{self: -1}

// privateForkTable gives the calling thread, locked to it for life, its own
// fd table. On any failure before the unshare (old kernel, seccomp refusing
// pidfd_getfd, no /proc to tell the runtime's fds from ours) the thread
// keeps forking from the shared table, as every thread did before; a nil
// table means the thread is unusable and must go.
func privateForkTable() (*forkTable, error) {
	// Probe pidfd_getfd first: unsharing cannot be undone.
	probe, err := unix.PidfdOpen(os.Getpid(), 0)
	if err != nil {
		return sharedForkTable, fmt.Errorf("pidfd_open: %w", err)
	}
	dup, err := unix.PidfdGetfd(probe, probe, 0)
	unix.Close(probe)
	if err != nil {
		return sharedForkTable, fmt.Errorf("pidfd_getfd: %w", err)
	}
	unix.Close(dup)
	if _, err := os.Stat("/proc/thread-self/fd"); err != nil {
		return sharedForkTable, fmt.Errorf("no /proc/thread-self: %w", err)
	}
	// The runtime's poller fds must exist before the copy: any thread,
	// this one included, may write to the poller's eventfd by number.
	r, w, err := os.Pipe()
	if err != nil {
		return sharedForkTable, fmt.Errorf("pipe: %w", err)
	}
	r.Close()
	w.Close()
	if err := unix.Unshare(unix.CLONE_FILES); err != nil {
		return sharedForkTable, fmt.Errorf("unshare(CLONE_FILES): %w", err)
	}
	self, err := unix.PidfdOpen(os.Getpid(), 0)
	if err != nil {
		// Nothing can be borrowed into this private table: the thread
		// cannot spawn, and it has forked nothing, so it can go.
		return nil, fmt.Errorf("pidfd_open after unshare: %w", err)
	}
	closeCopiedFDs(self)
	return &forkTable{self: self}, nil
}

// closeCopiedFDs closes, in the private table, the copies of the emperor's
// descriptors that the copy took along (watches, listeners, sockets), so
// closing one in the emperor really closes it. Kept: stdio, which every
// vassal inherits, and the runtime's epoll and eventfd, which any thread
// may use by number.
func closeCopiedFDs(keep int) {
	dir, err := readDir("/proc/thread-self/fd")
	if err != nil {
		return // checked before the unshare; the copies stay, few and old
	}
	for _, ent := range dir {
		fd, err := strconv.Atoi(ent.Name())
		if err != nil || fd <= 2 || fd == keep {
			continue
		}
		target, err := os.Readlink("/proc/thread-self/fd/" + ent.Name())
		if err != nil || strings.HasPrefix(target, "anon_inode:[event") {
			continue
		}
		unix.Close(fd)
	}
}

// borrow returns fd as a descriptor of this thread's table; give it back
// with giveBack once the fork is done.
func (t *forkTable) borrow(fd int) (int, error) {
	if t.self < 0 {
		return fd, nil
	}
	return unix.PidfdGetfd(t.self, fd, 0)
}

func (t *forkTable) giveBack(fd int) {
	if t.self >= 0 {
		unix.Close(fd)
	}
}

// fsWatch is the kernel's inotify, read by the loop itself: its descriptor
// sits in the loop's poll set, so an event costs no goroutine hop, and
// close-after-write (IN_CLOSE_WRITE) tells a finished file from one still
// being written. Only the loop goroutine touches it.
type fsWatch struct {
	fd    int
	byWd  map[int32]string // watch descriptor -> the directory it was added as
	byDir map[string]int32
	buf   []byte // inotifyBuf: drain reads until the queue is empty, so its size only sets how many reads a burst takes
}

// inotifyBuf holds some 500 events of short names a read (1,000 configs
// moved in at once take two reads), and the longest event (16 bytes and
// NAME_MAX+1 of name) many times over. A burst that fills it leaves it
// resident, so it stays small.
const inotifyBuf = 16 << 10

// inotifyMask is what the emperor wants to hear of a watched directory.
const inotifyMask = unix.IN_CREATE | unix.IN_DELETE | unix.IN_MODIFY | unix.IN_CLOSE_WRITE |
	unix.IN_MOVED_FROM | unix.IN_MOVED_TO | unix.IN_ATTRIB | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF |
	unix.IN_ONLYDIR | unix.IN_EXCL_UNLINK

// inotifyNamesMask is for a directory watched only for the names in it
// coming and going (a monitor's parent, an awaited directory's nearest
// ancestor): a log file written beside the vassal directory must not wake
// the emperor at every line. Added to whatever mask the directory has
// already, so a directory watched in full for another reason stays so.
const inotifyNamesMask = unix.IN_CREATE | unix.IN_DELETE | unix.IN_MOVED_FROM | unix.IN_MOVED_TO |
	unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_ONLYDIR | unix.IN_EXCL_UNLINK | unix.IN_MASK_ADD

func newFSWatch(chan<- fsEvent, <-chan struct{}) (*fsWatch, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("inotify_init1: %w", err)
	}
	return &fsWatch{fd: fd, byWd: map[int32]string{}, byDir: map[string]int32{}, buf: make([]byte, inotifyBuf)}, nil
}

// pollFD is the descriptor the loop polls; drain reads it.
func (f *fsWatch) pollFD() int { return f.fd }

func (f *fsWatch) add(dir string, namesOnly bool) error {
	mask := uint32(inotifyMask)
	if namesOnly {
		mask = inotifyNamesMask
	}
	wd, err := unix.InotifyAddWatch(f.fd, dir, mask)
	if err != nil {
		return err
	}
	// The same inode under a second name returns the same watch: events
	// keep the first name, as the caller's physical paths expect. A name
	// watched again on a new inode (a directory made anew) gets the new one.
	if _, known := f.byWd[int32(wd)]; !known {
		f.byWd[int32(wd)] = dir
		f.byDir[dir] = int32(wd)
	}
	return nil
}

func (f *fsWatch) remove(dir string) {
	wd, ok := f.byDir[dir]
	if !ok {
		return
	}
	delete(f.byDir, dir)
	delete(f.byWd, wd)
	_, _ = unix.InotifyRmWatch(f.fd, uint32(wd)) // gone with its directory already: nothing to do
}

// drain reads every queued event (the queue is bounded by the kernel's
// max_queued_events) and hands each to fn.
func (f *fsWatch) drain(fn func(fsEvent)) error {
	for {
		n, err := unix.Read(f.fd, f.buf)
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading inotify: %w", err)
		}
		f.parse(f.buf[:n], fn)
	}
}

func (f *fsWatch) parse(b []byte, fn func(fsEvent)) {
	for len(b) >= unix.SizeofInotifyEvent {
		ev := (*unix.InotifyEvent)(unsafe.Pointer(&b[0]))
		end := unix.SizeofInotifyEvent + int(ev.Len)
		if end > len(b) {
			return
		}
		name := string(bytes.TrimRight(b[unix.SizeofInotifyEvent:end], "\x00"))
		b = b[end:]
		if ev.Mask&unix.IN_Q_OVERFLOW != 0 {
			fn(fsEvent{op: fsOverflow})
			continue
		}
		dir, ok := f.byWd[ev.Wd]
		if !ok {
			continue // a watch removed with events still queued
		}
		if ev.Mask&(unix.IN_DELETE_SELF|unix.IN_MOVE_SELF|unix.IN_IGNORED|unix.IN_UNMOUNT) != 0 {
			// The directory itself went (or moved, and its watch with
			// it): events from the old inode would carry the wrong name.
			// The name may be watched anew already, on another inode.
			delete(f.byWd, ev.Wd)
			if f.byDir[dir] == ev.Wd {
				delete(f.byDir, dir)
			}
			_, _ = unix.InotifyRmWatch(f.fd, uint32(ev.Wd))
			fn(fsEvent{path: dir, op: fsSelfGone | fsDir})
			continue
		}
		fn(fsEvent{path: filepath.Join(dir, name), op: inotifyOp(ev.Mask)})
	}
}

func inotifyOp(mask uint32) fsOp {
	var op fsOp
	for _, m := range []struct {
		bit uint32
		op  fsOp
	}{{unix.IN_MODIFY, fsWrite}, {unix.IN_CREATE, fsCreate}, {unix.IN_CLOSE_WRITE, fsClose},
		{unix.IN_MOVED_TO, fsMovedIn}, {unix.IN_DELETE, fsGone}, {unix.IN_MOVED_FROM, fsGone},
		{unix.IN_ATTRIB, fsAttrib}, {unix.IN_ISDIR, fsDir}} {
		if mask&m.bit != 0 {
			op |= m.op
		}
	}
	return op
}

// reapChild reaps the next child of the emperor to end, sleeping until
// one does (one system call: the wake-up and the reaping): its pid, or 0
// at once when there is no child to wait for.
func reapChild() (int, syscall.WaitStatus) {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, 0, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return 0, 0
		}
		return pid, ws
	}
}

// ==== Process trees: what /proc and cgroup v2 say about a process ==========

// procEnvValue returns the value of key in pid's environment as the kernel
// shows it (/proc/PID/environ: the block the process was exec'd with), and
// whether it is there. The process controls that block, so at most limit
// bytes are read; a key past them counts as absent.
func procEnvValue(pid int, key string, limit int) (string, bool) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return "", false
	}
	buf := make([]byte, limit+1)
	n, _ := f.Read(buf[1:]) // the kernel copies all it has, up to limit
	f.Close()
	env := buf[:n+1] // a NUL first: every entry follows one
	i := bytes.Index(env, []byte("\x00"+key+"="))
	if i < 0 {
		return "", false
	}
	v, _, _ := bytes.Cut(env[i+len(key)+2:], []byte{0})
	return string(v), true
}

// procStat is what /proc/PID/stat says of a process's origin: its process
// group and session, and when it started (clock ticks since boot; 0: gone),
// and whether it has died.
type procStat struct {
	pgid, sid int
	start     uint64
	zombie    bool // dead, not yet reaped
}

func readProcStat(pid int) procStat {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return procStat{}
	}
	f := strings.Fields(s[i+2:])
	if len(f) < 20 {
		return procStat{}
	}
	var st procStat
	st.pgid, _ = strconv.Atoi(f[2])
	st.sid, _ = strconv.Atoi(f[3])
	st.start, _ = strconv.ParseUint(f[19], 10, 64)
	st.zombie = f[0] == "Z" || f[0] == "X"
	return st
}

// ownCgroup2 returns the directory of the emperor's own cgroup v2 ("":
// none): its path in the hierarchy (/proc/self/cgroup's "0::" line), under
// /sys/fs/cgroup/unified on a hybrid host or /sys/fs/cgroup on a pure v2
// one, whichever has the v2 interface files.
func ownCgroup2() string {
	data, _ := os.ReadFile("/proc/self/cgroup")
	_, rel, found := strings.Cut(string(data), "0::")
	rel, _, _ = strings.Cut(rel, "\n")
	for _, mount := range []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup"} {
		if _, err := os.Stat(mount + "/cgroup.procs"); err == nil && found {
			return filepath.Join(mount, rel)
		}
	}
	return ""
}

// ownMemoryCgroup1 returns the directory of the emperor's own cgroup in a
// v1 memory hierarchy mounted at /sys/fs/cgroup/memory ("": none), as a
// hybrid host has it: its path from /proc/self/cgroup's memory line. Where
// the mount shows another root (a container without a cgroup namespace)
// the path is not there, and there is none.
func ownMemoryCgroup1() string {
	data, _ := os.ReadFile("/proc/self/cgroup")
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) == 3 && slices.Contains(strings.Split(f[1], ","), "memory") {
			dir := filepath.Join("/sys/fs/cgroup/memory", f[2])
			if _, err := os.Stat(dir + "/memory.usage_in_bytes"); err == nil {
				return dir
			}
		}
	}
	return ""
}

// intoCgroup makes the fork of attr start its child in the cgroup fd
// (clone3 with CLONE_INTO_CGROUP): the child is in it before it runs a
// single instruction, so nothing it forks can escape, and no later step
// can forget to move it. -1 clears it.
func intoCgroup(attr *syscall.SysProcAttr, fd int) {
	attr.UseCgroupFD, attr.CgroupFD = fd >= 0, fd
}

// releaseImagePages takes the emperor's own program pages (its code and
// read-only data) out of its page tables, for the kernel to fault back in
// as they are used. The binary is static, so all of it is the emperor's:
// fault-around maps it in 64 KB runs and, after a burst, nearly all 3 MB
// stays mapped though an idle emperor runs a small part of it. For a
// private file mapping with no anonymous page in it (smaps counts them)
// MADV_DONTNEED drops only page-table entries: the pages stay in the page
// cache, and what faults back is the file's bytes, which are the mapping's.
// A mapping with anonymous pages was written (a PIE build's relocated
// read-only data) and is left alone: dropping it would bring back the
// file's unrelocated bytes.
func releaseImagePages() {
	imageOnce.Do(findImagePages)
	for _, r := range imagePages {
		_, _, _ = unix.Syscall(unix.SYS_MADVISE, r.start, r.size, unix.MADV_DONTNEED)
	}
}

// imagePages are the mappings releaseImagePages drops, found once: the
// binary's mappings never change, and reading smaps at every collection
// would itself make garbage (some 200 KB: the file, its lines and their
// fields) that brings the next collection sooner.
var (
	imageOnce  sync.Once
	imagePages []pageRange
)

type pageRange struct{ start, size uintptr }

func findImagePages() {
	var self unix.Stat_t
	if unix.Stat("/proc/self/exe", &self) != nil {
		return
	}
	data, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return
	}
	dev := fmt.Sprintf("%02x:%02x", unix.Major(self.Dev), unix.Minor(self.Dev)) // as smaps spells it
	var start, end uint64
	ours := false
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":"):
			lo, hi, _ := strings.Cut(f[0], "-")
			start, _ = strconv.ParseUint(lo, 16, 64)
			end, _ = strconv.ParseUint(hi, 16, 64)
			ino, _ := strconv.ParseUint(f[4], 10, 64)
			ours = ino == self.Ino && f[3] == dev && len(f[1]) == 4 && f[1][1] == '-' && f[1][3] == 'p'
		case ours && len(f) >= 2 && f[0] == "Anonymous:":
			if f[1] == "0" && end > start {
				imagePages = append(imagePages, pageRange{uintptr(start), uintptr(end - start)})
			}
			ours = false
		}
	}
}

// setProcLimit sets RLIMIT_NPROC, soft and hard (limit-nproc).
func setProcLimit(n uint64) error {
	var lim unix.Rlimit
	setLimit(&lim.Cur, n)
	setLimit(&lim.Max, n)
	return unix.Setrlimit(unix.RLIMIT_NPROC, &lim)
}

// setPriority is prio: Linux keeps a nice value per thread, and vassals
// fork from spawner threads made before, so every thread gets it (threads
// made later are cloned from these). Where /proc is not (a jail), only the
// calling thread can be named.
func setPriority(n int) error {
	tasks, err := readDir("/proc/self/task")
	if err != nil {
		return syscall.Setpriority(syscall.PRIO_PROCESS, 0, n)
	}
	for _, t := range tasks {
		if tid, err := strconv.Atoi(t.Name()); err == nil {
			if err := syscall.Setpriority(syscall.PRIO_PROCESS, tid, n); err != nil && err != syscall.ESRCH {
				return err
			}
		}
	}
	return nil
}
