// Command emperor is a drop-in replacement for the uWSGI Emperor: it watches
// directories and glob patterns of vassal configs and keeps one process
// running per config. Run with an `emperor` option it is the emperor; run
// with a vassal config (as the emperor runs its vassals by default) it is
// the vassal runner.
//
// Start reading at the emperor and its loop: one goroutine owns all state
// and selects over the channels of loopInputs; every case is one call into
// a section below. The sections, in the order the loop uses them:
//
//	The emperor and its loop   the state, its start, the select
//	Timers                     every delay is a deadline on one heap; the kinds and what each fires
//	Signals                    HUP, INT/TERM/QUIT, USR1, URG, WINCH
//	Watching configs           monitors (dirs, globs), scans, inotify hints, content digests
//	Config files with several instances  FILE:SECTION vassals, per-instance digests
//	Symlinked configs          the chains a symlinked config resolves through, each link watched
//	Vassals and their lifecycle  records, admission, wake, reload, stop and curse, deletion
//	Spawning                   fork+exec batches, the spawner threads, how a vassal is exec'd
//	Direct exec                the runner's work done at fork time for simple configs
//	Exits, respawns and strays the reaper, what an exit leads to, killing leftovers
//	The Emperor protocol       bytes from vassals, heartbeats
//	The blacklist              uWSGI's crash-loop throttle
//	On-demand vassals          sockets the emperor holds until a client comes
//	Stats                      the snapshot, uWSGI's JSON layout, Prometheus, the server, --status
//	systemd and a parent emperor  sd_notify both ways, an emperor as a vassal
//	Shutdown                   ragnarok, no mercy, the burial
//	The emperor's configuration   options read once into emperorConfig
//	Options and help           uWSGI's option table and what the emperor does with each, --help
//	Command line and start-up  main, run, what an invocation becomes
//	Command lines              when a line is exec'd directly, when it goes to /bin/sh -c
//	Daemon life                daemonize, logto, log-date, pidfiles, vacuum, log reopening
//	The emperor's own servers and daemons  the companion uWSGI, attach-daemon*
//	The vassal runner          a vassal config applied in-process, then exec
//	Hooks around vassals       start/stop hooks, *-as-vassal, *-as-emperor
//	The pre-exec stage         the emperor re-executed between fork and exec
//	Logging and small helpers
//
// Beside this file: emperor_linux.go and emperor_other.go hold the
// operating-system verbs (reaping, epoll, namespaces, capabilities, fd
// tables), the same API on every system; config_parse.go is uWSGI's config
// language (ini, xml, json, yaml, magic variables, placeholders, logic).
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// ==== The emperor and its loop ==========================================

// emperor is the whole state of a running emperor. The loop goroutine owns
// it: every field is read and written there only, so nothing needs a lock.
// Other goroutines hand data in through the channels of in and get answers
// the same way; code that runs off the loop holds a narrow handle of its
// own (spawnerPool, statsServer), never an *emperor. Each field is one
// concern, declared at the top of its section below.
type emperor struct {
	cfg      *emperorConfig // the options, read once; never changed after start
	in       loopInputs     // what the loop selects on
	timers   timerQueue     // every delay, as a deadline on one heap
	watch    configWatch    // monitors, scans and inotify
	links    symlinks       // what symlinked configs resolve through
	vassals  vassalTable    // every vassal record and its indexes
	spawns   spawnBatch     // forks being prepared, and the spawner threads
	mem      memoryState    // a burst's memory, given back once it settles
	strays   strayState     // processes that are not vassals
	poll     pollSet        // descriptors the loop reads, in one epoll set
	black    *blacklist     // the crash-loop throttle
	sd       systemdState   // what systemd was told, and when
	parent   parentLink     // our own emperor, when we are a vassal
	shutdown shutdownState  // set once ragnarok starts
}

// loopInputs are the channels the loop selects on. Each is fed by one
// goroutine that owns its source and exits once done is closed.
type loopInputs struct {
	exits    chan childExit           // the reaper: every wait4 result
	spawned  chan struct{}            // to the reaper: a child was started (see startReaper)
	readable chan readyFD             // the poller: a descriptor of poll became readable
	fsHints  chan fsEvent             // file events, where they come over a channel (not Linux)
	sigs     chan os.Signal           // signals the emperor acts on
	statsReq chan chan *statsSnapshot // stats clients, asking for a snapshot
	notified chan notifyMsg           // sd_notify datagrams from vassals
	odResult chan odResolved          // on-demand-exec output readers
	done     chan struct{}            // closed when the emperor is buried
}

func newEmperor(cfg *emperorConfig) (*emperor, error) {
	e := &emperor{
		cfg: cfg,
		in: loopInputs{
			exits:    make(chan childExit, 256),
			spawned:  make(chan struct{}, 1),
			readable: make(chan readyFD, 256),
			fsHints:  make(chan fsEvent, 1024),
			sigs:     make(chan os.Signal, 16),
			statsReq: make(chan chan *statsSnapshot),
			notified: make(chan notifyMsg, 256),
			odResult: make(chan odResolved, 64),
			done:     make(chan struct{}),
		},
		watch: configWatch{refused: map[string]fileState{}, writing: map[string]time.Time{}, goneSeen: map[string]bool{}, logReopen: map[string]bool{}},
		links: symlinks{
			chains: map[linkKey]linkChain{},
			byPath: map[string]map[linkKey]bool{},
			dirs:   map[string]int{},
		},
		vassals: vassalTable{
			byName: map[string]*vassal{},
			byPid:  map[int]*vassal{},
			byFd:   map[int]*vassal{},
			odByFd: map[int]*vassal{},
			byFile: map[fileKey][]*vassal{},
		},
		spawns: spawnBatch{baseEnv: vassalEnv(os.Environ(), cfg.ownFiles...)},
		strays: strayState{helpers: map[int]string{}},
		black:  newBlacklist(cfg.throttleMs, cfg.maxThrottleMs),
		parent: parentLink{fd: -1},
	}
	if cfg.uwsgi != "" {
		e.spawns.baseEnv = append(e.spawns.baseEnv, uwsgiBinaryEnv+"="+cfg.uwsgi)
	}
	var err error
	if e.spawns.devnull, err = os.OpenFile(os.DevNull, os.O_RDWR, 0); err != nil {
		return nil, fmt.Errorf("open %s: %w", os.DevNull, err)
	}
	// Spawner threads are made now: while threads can be had (creating
	// them lazily under a pid limit would fail just when spawning matters),
	// and outside any jail, where /proc tells their fds apart. Inherited
	// fds are marked close-on-exec first: the threads' tables copy flags.
	cloexecInherited()
	e.spawns.pool = startSpawnerPool()
	reserveThreads(spareThreads)
	// The jail comes before the monitors, so their paths (and binary-path)
	// are read inside it, as uWSGI's are; sockets are bound later, from in
	// there, and the uid/capability drop comes after binding.
	if err := enterChroot(cfg.own.chroot); err != nil {
		return nil, err
	}
	if err := emperorJailed(cfg.opts, cfg.own.drops()); err != nil {
		return nil, err
	}
	if e.watch.startCwd, err = os.Getwd(); err != nil {
		return nil, fmt.Errorf("getcwd: %w", err)
	}
	e.watch.own = &monitor{id: -1, dir: e.watch.startCwd}
	for i, arg := range cfg.monitors {
		m, err := newMonitor(i, arg, e.watch.startCwd)
		if err != nil {
			return nil, err
		}
		e.watch.monitors = append(e.watch.monitors, m)
	}
	if e.poll.watcher, err = newFDWatcher(e.in.readable, e.in.done); err != nil {
		return nil, err
	}
	return e, nil
}

// start does what must happen before the first scan: process-wide settings,
// the pidfile, signal and child handling, watches, the stats server.
func (e *emperor) start() error {
	clearSpawnThreadSigmask()
	e.mem.startMemory()
	if err := becomeSubreaper(); err != nil {
		logRaw("[emperor] %v (escaped grandchildren will not be collected)", err)
	}
	// Go's runtime raised the soft limit to (nearly) the hard one before
	// main, and its fork and exec give children back the original: the
	// emperor gets a descriptor per vassal, while vassals keep the limit
	// the operator set (select()-based programs rely on a low one).
	if soft, hard, err := nofileLimit(); err == nil {
		logRaw("[emperor] RLIMIT_NOFILE: %d (hard %d); vassals start with the soft limit the emperor was given", soft, hard)
	}
	e.startTracking()
	notifySignals(e.in.sigs)
	startReaper(e.in.exits, e.in.spawned, e.in.done)
	e.sd.notify = newSDNotifier()
	e.attachParentEmperor()
	if e.cfg.notifySocket != "" {
		if err := listenVassalNotify(e.cfg.notifySocket, e.in.notified, e.in.done); err != nil {
			return err
		}
		e.cfg.daemon.createdSockets = append(e.cfg.daemon.createdSockets, e.cfg.notifySocket)
		e.spawns.baseEnv = append(e.spawns.baseEnv, "NOTIFY_SOCKET="+e.cfg.notifySocket,
			"WATCHDOG_USEC="+strconv.FormatInt(e.cfg.heartbeat.Microseconds(), 10))
	}
	if e.parent.fd >= 0 {
		logRaw("*** starting uWSGI sub-Emperor ***")
	} else {
		logRaw("*** starting uWSGI Emperor ***")
	}
	e.cfg.daemon.writePidfiles(e.cfg.daemon.pidfiles)
	if e.cfg.stats != "" {
		e.bindStats()
	}
	e.watch.fs = e.startFileWatch()
	for _, m := range e.watch.monitors {
		if m.missing {
			logRaw("[emperor] vassal directory %s does not exist: waiting for it to appear", m.dir)
			e.awaitDir(m)
			continue
		}
		for _, d := range m.watchDirs() {
			e.watch.fs.add(d)
		}
		if !m.glob {
			// A directory removed while a vassal sits in it lives on
			// until that process goes (no DELETE_SELF before): its
			// parent sees the name go, and come back.
			e.watch.fs.addNames(filepath.Dir(m.dir))
		}
	}
	if p := e.cfg.own; p.drops() {
		if err := dropEmperorPrivileges(p.uid, p.gid, p.groups, p.caps); err != nil {
			return err
		}
		logRaw("[emperor] running as uid %d gid %d (capabilities kept: %x)", os.Getuid(), os.Getgid(), p.caps)
		if e.cfg.tyrant && p.caps&(1<<5) == 0 && os.Getuid() != 0 {
			logRaw("[emperor] warning: cap without 'kill': the emperor cannot signal vassals of other users (stop relies on the protocol byte, and they will not die with the emperor)")
		}
	}
	if p := e.cfg.own; p.drops() {
		if err := e.userHooks("as-user"); err != nil {
			return err
		}
	}
	if d := &e.cfg.daemon; d.logto2 != "" {
		if err := d.useLog(d.logto2); err != nil {
			return err
		}
	}
	e.cfg.daemon.writePidfiles(e.cfg.daemon.pidfiles2)
	e.watchLogReopen()
	daemonUp()
	return nil
}

// loop is the only owner of vassal state: everything else talks to it
// through the channels it selects on.
func (e *emperor) loop() int {
	if err := e.start(); err != nil {
		logRaw("emperor: %v", err)
		return 1
	}
	if err := e.runEmperorStart(); err != nil {
		logRaw("emperor: %v", err)
		return 1
	}
	e.addCompanions()
	e.scanAll()
	e.watch.scanned = true
	e.timers.push(timerItem{at: time.Now().Add(e.cfg.freq), kind: tFullScan})
	// Every config present at start has been spawned (or is throttled or
	// waiting for its first client): now the service is up.
	e.sd.notify.send("READY=1\nSTATUS=" + e.statusLine())
	e.sd.lastStatus = time.Now()
	if e.sd.notify != nil && e.sd.notify.watchdog > 0 {
		e.timers.push(timerItem{at: time.Now().Add(e.sd.notify.watchdog), kind: tWatchdog})
	}
	// With spawner threads forking every vassal, the loop leaves the main
	// thread: an event then runs it on the thread that received it (the
	// reaper's, the poller's) instead of waking the main thread on another
	// CPU, a switch that cost every respawn about 0.04 ms (paired runs).
	// Without them the loop forks vassals itself and stays where it is:
	// PDEATHSIG is tied to the forking thread (see init).
	if e.spawns.pool.n > 0 {
		runtime.UnlockOSThread()
	}
	timer := time.NewTimer(time.Hour)
	for {
		if e.shutdown.dying && len(e.vassals.byName) == 0 {
			if code := e.bury(); !e.shutdown.again {
				return code
			}
			return e.runAgain()
		}
		e.armTimer(timer)
		select {
		case ex := <-e.in.exits:
			e.onExit(ex)
		case r := <-e.in.readable:
			e.onReadable(r)
		case <-e.poll.more():
			e.readPending()
		case ev := <-e.in.fsHints:
			e.onFSEvent(ev)
		case s := <-e.in.sigs:
			e.onSignal(s)
		case <-timer.C:
			e.fireTimers()
		case reply := <-e.in.statsReq:
			reply <- e.snapshot()
		case r := <-e.in.odResult:
			e.onDemandResolved(r)
		case m := <-e.in.notified:
			e.onNotify(m)
		}
	}
}

// noCompare, a struct's first field, makes it incomparable: no code
// compares these by value, and without it the binary carries an equality
// function for each (a kilobyte for vassal alone).
type noCompare [0]func()

// childExit is one reaped process.
type childExit struct {
	_      noCompare
	pid    int
	status syscall.WaitStatus
}

// readyFD says a vassal protocol socket became readable (or hung up).
type readyFD struct {
	_     noCompare
	fd    int
	token uint32
}

// notifyMsg is one sd_notify datagram from a vassal (or one of its
// children), with the sender's pid from the kernel.
type notifyMsg struct {
	_    noCompare
	pid  int
	text string
}

type odResolved struct {
	_    noCompare
	v    *vassal
	gen  uint64
	sock string
}

// startReaper owns all waiting: no other code calls wait4, so exits are never
// stolen. Where the platform can (reapChild), the reaper sleeps in a
// blocking wait4 while the emperor has a child: the kernel wakes that
// thread itself as a child dies and the same call reaps it, where SIGCHLD
// would pass through the runtime's signal goroutine first (two thread
// wake-ups more on the way to a respawn). With no child to wait for (or
// no blocking wait) it sleeps until SIGCHLD, and then reaps with WNOHANG
// until none is left, so coalesced signals lose nothing; a spawn wakes it
// too (spawned: the loop's hint that there is a child again). A reaper
// asleep in wait4 when done closes ends with the last child, or with the
// process.
func startReaper(out chan<- childExit, spawned <-chan struct{}, done <-chan struct{}) {
	sigchld := make(chan os.Signal, 1)
	signal.Notify(sigchld, syscall.SIGCHLD)
	go func() {
		defer signal.Stop(sigchld)
		for {
			pid, ws := reapChild()
			if pid <= 0 {
				select {
				case <-sigchld:
				case <-spawned:
				case <-done:
					return
				}
				continue
			}
			select {
			case out <- childExit{pid: pid, status: ws}:
			case <-done:
				return
			}
			// The loop was readied by the send onto this thread's P:
			// yield it now, before the next wait, rather than leave it
			// waiting while this thread blocks in the kernel until the
			// runtime notices (tens of microseconds) and another thread
			// takes it over.
			runtime.Gosched()
		}
	}()
}

// signalsWatched are the signals the emperor acts on, as uWSGI's emperor
// does (core/emperor.c: emperor_loop and its signal handlers).
var signalsWatched = []os.Signal{syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM, syscall.SIGQUIT,
	syscall.SIGUSR1, syscall.SIGURG, syscall.SIGWINCH}

func notifySignals(ch chan os.Signal) {
	signal.Notify(ch, signalsWatched...)
	// Catching SIGPIPE (rather than ignoring it) keeps a closed log pipe from
	// killing the emperor while vassals still start with the default
	// disposition: ignored signals survive exec, caught ones do not.
	signal.Notify(ch, syscall.SIGPIPE)
}

// startFileWatch opens the kernel's file events: on Linux inotify, read by
// the loop from its poll set; elsewhere fsnotify, whose goroutine sends
// them on fsHints.
func (e *emperor) startFileWatch() *fileWatch {
	k, err := newFSWatch(e.in.fsHints, e.in.done)
	if err != nil {
		logRaw("[emperor] file watching unavailable (%v): polling every emperor-freq", err)
		return &fileWatch{}
	}
	fw := &fileWatch{k: k}
	if fd := k.pollFD(); fd >= 0 {
		fw.token = e.poll.token()
		if err := e.poll.watcher.add(fd, fw.token); err != nil {
			logRaw("[emperor] file watching unavailable (%v): polling every emperor-freq", err)
			return &fileWatch{}
		}
	}
	return fw
}

// ==== Timers ============================================================
// Every delay is a deadline in the loop's queue: the emperor never sleeps,
// so a throttled vassal holds up nothing else.

// timerKind says what a deadline is for. Each kind has its row in
// timerKinds; a kind without one fails TestEveryTimerKindIsHandled.
type timerKind uint8

const (
	tFullScan      timerKind = iota // the safety-net scan of every monitor
	tRescan                         // a debounced look at what inotify reported (mon)
	tSweep                          // look for strays shortly after a vassal ended
	tMercy                          // reload-mercy ran out at shutdown
	tStatus                         // STATUS= to systemd, at most once a second
	tWatchdog                       // WATCHDOG=1 to systemd
	tStatsRetry                     // bind the stats address again
	tRespawn                        // a throttled vassal's time has come (v)
	tKill                           // a stopping vassal overstayed: SIGKILL its tree (v)
	tHeartbeat                      // a heartbeat deadline (v)
	tReloadCheck                    // did a vassal read its reload byte? (v)
	tSettle                         // files written to and left open: quiet long enough?
	tAdopt                          // a smart daemon's pidfile: written yet? (v)
	tGone                           // a config gone a removal-grace ago: still gone? (v, any gen)
	tReleaseMemory                  // spawning may have settled: give the burst's memory back
	numTimerKinds
)

// timerKinds is, per kind, its name, whether it belongs to one vassal
// process (then it is dropped once that process or record is gone: its gen
// moved on), and what firing it does.
var timerKinds = [numTimerKinds]struct {
	name   string
	vassal bool
	fire   func(e *emperor, it timerItem)
}{
	tFullScan:      {"full scan", false, (*emperor).fullScanDue},
	tRescan:        {"rescan", false, func(e *emperor, it timerItem) { e.rescanDirty(e.watch.monitors[it.mon]) }},
	tSweep:         {"sweep", false, func(e *emperor, _ timerItem) { e.strays.sweepDue = false; e.sweepStrays() }},
	tMercy:         {"mercy", false, func(e *emperor, _ timerItem) { e.noMercy() }},
	tStatus:        {"status", false, func(e *emperor, _ timerItem) { e.sendStatus() }},
	tWatchdog:      {"watchdog", false, (*emperor).watchdogDue},
	tStatsRetry:    {"stats retry", false, (*emperor).statsRetryDue},
	tRespawn:       {"respawn", true, func(e *emperor, it timerItem) { e.wake(it.v) }},
	tKill:          {"kill", true, func(e *emperor, it timerItem) { e.killDue(it.v) }},
	tHeartbeat:     {"heartbeat", true, func(e *emperor, it timerItem) { e.checkHeartbeat(it.v) }},
	tReloadCheck:   {"reload check", true, func(e *emperor, it timerItem) { e.reloadCheckDue(it.v) }},
	tSettle:        {"settle", false, (*emperor).settleDue},
	tAdopt:         {"adopt", true, func(e *emperor, it timerItem) { e.adoptDue(it.v) }},
	tGone:          {"gone", false, (*emperor).goneDue},
	tReleaseMemory: {"release memory", false, (*emperor).releaseMemoryDue},
}

type timerItem struct {
	_    noCompare
	at   time.Time
	kind timerKind
	v    *vassal // vassal kinds: the record
	gen  uint64  // vassal kinds: the generation it was set for
	mon  int     // tRescan: the monitor's index
}

// timerQueue is a binary min-heap on deadline.
type timerQueue struct{ items []timerItem }

func (q *timerQueue) push(it timerItem) {
	q.items = append(q.items, it)
	i := len(q.items) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !q.items[i].at.Before(q.items[p].at) {
			break
		}
		q.items[i], q.items[p] = q.items[p], q.items[i]
		i = p
	}
}

func (q *timerQueue) next() (time.Time, bool) {
	if len(q.items) == 0 {
		return time.Time{}, false
	}
	return q.items[0].at, true
}

func (q *timerQueue) popDue(now time.Time) (timerItem, bool) {
	if len(q.items) == 0 || q.items[0].at.After(now) {
		return timerItem{}, false
	}
	top := q.items[0]
	last := len(q.items) - 1
	q.items[0] = q.items[last]
	q.items[last] = timerItem{}
	q.items = q.items[:last]
	i := 0
	for {
		l, r, m := 2*i+1, 2*i+2, i
		if l < len(q.items) && q.items[l].at.Before(q.items[m].at) {
			m = l
		}
		if r < len(q.items) && q.items[r].at.Before(q.items[m].at) {
			m = r
		}
		if m == i {
			break
		}
		q.items[i], q.items[m] = q.items[m], q.items[i]
		i = m
	}
	return top, true
}

func (e *emperor) armTimer(t *time.Timer) {
	d := time.Hour
	if at, ok := e.timers.next(); ok {
		d = time.Until(at)
		if d < 0 {
			d = 0
		}
	}
	t.Reset(d)
}

// fireTimers runs every deadline that has passed, in deadline order.
func (e *emperor) fireTimers() {
	now := time.Now()
	for {
		it, ok := e.timers.popDue(now)
		if !ok {
			return
		}
		kind := timerKinds[it.kind]
		if kind.vassal && (it.v.gen != it.gen || it.v.deleted) {
			continue
		}
		kind.fire(e, it)
	}
}

func (e *emperor) fullScanDue(timerItem) {
	t0, waited := time.Now(), e.spawns.waited
	if !e.shutdown.dying {
		e.retryWatches()
		e.scanAll()
	}
	// The scan's own cost: waiting for forks of configs it found is not
	// scanning.
	cost := time.Since(t0) - (e.spawns.waited - waited)
	e.timers.push(timerItem{at: time.Now().Add(e.fullScanInterval(cost)), kind: tFullScan})
	if e.mem.quiet.Load() {
		// An idle emperor's scan ran code that nothing runs again until
		// the next scan: its pages go back as well.
		releaseImagePages()
		trace("released", "image")
	}
}

func (e *emperor) watchdogDue(timerItem) {
	e.sd.notify.send("WATCHDOG=1")
	e.timers.push(timerItem{at: time.Now().Add(e.sd.notify.watchdog), kind: tWatchdog})
}

func (e *emperor) statsRetryDue(timerItem) {
	if !e.shutdown.dying {
		e.bindStats()
	}
}

// ==== Signals ===========================================================

func (e *emperor) onSignal(s os.Signal) {
	switch s {
	case syscall.SIGHUP:
		if e.cfg.daemon.logReopen {
			e.cfg.daemon.reopenLog()
		}
		if !e.cfg.master {
			e.reloadAll()
		} else if !e.shutdown.dying {
			e.shutdown.again = true
			e.ragnarok()
		}
	case syscall.SIGUSR1:
		e.dumpStatus()
	case syscall.SIGURG:
		e.clearBlacklist()
	case syscall.SIGINT, syscall.SIGTERM, syscall.SIGQUIT:
		e.shutdown.again = false // a stop during a master's restart stops
		e.ragnarok()
	case syscall.SIGWINCH:
		if !e.shutdown.dying {
			e.scanAll()
		}
	}
}

func (e *emperor) reloadAll() {
	e.sd.notify.send(fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", monotonicUsec()))
	now := time.Now().Unix()
	for _, v := range e.vassals.live() {
		if v.deleted {
			continue
		}
		v.lastMod = now
		if v.pid == 0 && v.onDemand == "" {
			// Waiting out its throttle: SIGHUP reloads what runs, as
			// uWSGI's does; only a config edit or SIGURG is a kick.
			continue
		}
		e.reload(v, "SIGHUP")
	}
	e.sd.notify.send("READY=1\nSTATUS=" + e.statusLine())
}

func (e *emperor) dumpStatus() {
	for _, v := range e.vassals.live() {
		logRaw("vassal instance %s (last modified %d) status %d loyal %d zerg %d", v.shownName(), v.lastMod, v.status, b2i(v.loyal), b2i(v.zergOf != nil))
	}
}

func (e *emperor) clearBlacklist() {
	logVerbose("[emperor] cleaning up blacklist ...")
	e.black.clear()
	// The operator's kick: everything waiting out a throttle starts now.
	for _, v := range e.vassals.live() {
		if !v.deleted {
			e.wake(v)
		}
	}
}

// ==== Watching configs ==================================================

// configWatch is what the loop knows of the places configs come from.
// Invariant: every directory a monitor lists is watched by fs (or fs has
// failed and the periodic scan is the only source, at a shorter interval).
type configWatch struct {
	monitors      []*monitor           // one per --emperor value, in order; fixed after start
	fs            *fileWatch           // inotify (kqueue elsewhere); nil-safe
	startCwd      string               // the emperor's cwd inside its jail: base of relative globs
	own           *monitor             // the monitor of the emperor's own servers and daemons; no scan lists it
	refused       map[string]fileState // tyrant refusals already logged, by name, with the stat logged
	lastRead      configRead           // the config read last, for the looks that follow at once
	writing       map[string]time.Time // files open for writing (by path), with their last write
	goneSeen      map[string]bool      // paths whose last kernel event was their removal (see rescanDirty)
	settlePending bool                 // a tSettle timer is queued (while writing is not empty)
	scanned       bool                 // the first scan is done
	logReopen     map[string]bool      // touch-logreopen files, by absolute path
	inBatch       bool                 // kernel events are being read: rescans wait for the batch's end
	batch         []*monitor           // monitors marked during the batch
}

// monitor is one --emperor value: a directory or a glob pattern.
type monitor struct {
	_             noCompare
	id            int
	arg           string // as stats show it: absolute dir, or the pattern
	glob          bool
	dir           string // dir: the directory; glob: the emperor's start cwd
	pattern       string
	rescanPending bool
	fullRescan    bool
	dirty         map[string]bool     // names inotify reported since the last look
	globDirs      []string            // a glob's watched directories (watchDirs), physical paths
	globSet       map[string]bool     // the same, for lookups
	globAlias     map[string][]string // physical dir -> the matched paths naming it
	globReadd     map[string]bool     // watched dirs moved or deleted: watch again
	globBase      string              // globLevels, computed once
	globLevelPats []string
	lastErr       string
	missing       bool   // dir: the directory does not exist (yet); awaited
	scans         uint32 // scans made: the mark of the records the last one saw
	awaitAt       string // missing: its nearest existing ancestor, watched
}

func newMonitor(id int, value, startCwd string) (*monitor, error) {
	m := &monitor{id: id}
	switch {
	case strings.HasPrefix(value, "dir://"):
		return m, m.initDir(strings.TrimPrefix(value, "dir://"), startCwd)
	case strings.HasPrefix(value, "glob://"):
		m.initGlob(strings.TrimPrefix(value, "glob://"), startCwd)
		return m, nil
	case strings.Contains(value, "://"):
		scheme, _, _ := strings.Cut(value, "://")
		return nil, fmt.Errorf("emperor %s: imperial monitor %q is not supported (dir:// and glob:// are)", value, scheme)
	}
	if fi, err := os.Stat(value); err == nil && fi.IsDir() {
		return m, m.initDir(value, startCwd)
	}
	if _, err := os.Lstat(value); os.IsNotExist(err) && !strings.ContainsAny(value, "*?[") && configKindByExt(value) == "" {
		// uWSGI takes it for a glob that only ever matches itself, and
		// never notices the directory once it is made (a typo in the
		// path looks like an emperor governing nothing). It is awaited.
		if !filepath.IsAbs(value) {
			value = filepath.Join(startCwd, value)
		}
		m.dir, m.arg, m.missing = filepath.Clean(value), filepath.Clean(value), true
		return m, nil
	}
	// Like uWSGI: anything else that is not an existing directory is a
	// glob, which may match nothing yet.
	m.initGlob(value, startCwd)
	return m, nil
}

func (m *monitor) initDir(dir, startCwd string) error {
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(startCwd, dir)
	}
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return fmt.Errorf("emperor %s: %w", dir, err)
	}
	m.dir, m.arg = real, real
	return nil
}

func (m *monitor) initGlob(pattern, startCwd string) {
	m.glob, m.pattern, m.arg, m.dir = true, pattern, pattern, startCwd
}

// watchDirs are the directories whose inotify events hint at a change. For a
// glob, the deepest directory of the pattern without wildcards and every
// directory matching a deeper part of it (/srv/*/conf/*.ini: /srv, each
// /srv/X and each /srv/X/conf), so configs and new directories alike are
// events; rescans of the glob keep the list current (refreshGlobDirs).
// They are physical paths: inotify watches an inode once, under the first
// name it was given.
func (m *monitor) watchDirs() []string {
	if !m.glob {
		return []string{m.dir}
	}
	if m.globDirs == nil {
		m.setGlobDirs(m.listGlobDirs())
	}
	return m.globDirs
}

// fullPattern is the glob as an absolute pattern.
func (m *monitor) fullPattern() string {
	if filepath.IsAbs(m.pattern) {
		return m.pattern
	}
	return filepath.Join(m.dir, m.pattern)
}

// globLevels are the glob's wildcard-free base directory and the patterns
// of each deeper directory level (/srv, then /srv/*, /srv/*/conf).
func (m *monitor) globLevels() (string, []string) {
	if m.globBase != "" {
		return m.globBase, m.globLevelPats
	}
	d := filepath.Dir(m.fullPattern())
	base := d
	for strings.ContainsAny(base, "*?[") {
		base = filepath.Dir(base)
	}
	var levels []string
	prefix := base
	for _, name := range splitPath(strings.TrimPrefix(d, base)) {
		prefix = filepath.Join(prefix, name)
		levels = append(levels, prefix)
	}
	m.globBase, m.globLevelPats = base, levels
	return base, levels
}

// listGlobDirs returns the glob's directories, each by its physical path
// with the paths that matched it.
func (m *monitor) listGlobDirs() map[string][]string {
	base, levels := m.globLevels()
	dirs := map[string][]string{}
	add := func(d string) {
		real, err := filepath.EvalSymlinks(d)
		if err != nil {
			real = d // gone meanwhile, or the base not there yet
		}
		if !slices.Contains(dirs[real], d) {
			dirs[real] = append(dirs[real], d)
		}
	}
	add(base)
	for _, level := range levels {
		matches, _ := filepath.Glob(level)
		for _, match := range matches {
			if fi, err := os.Stat(match); err == nil && fi.IsDir() {
				add(match)
			}
		}
	}
	return dirs
}

func (m *monitor) setGlobDirs(alias map[string][]string) {
	m.globAlias = alias
	m.globDirs = make([]string, 0, len(alias))
	m.globSet = make(map[string]bool, len(alias))
	for d := range alias {
		m.globDirs = append(m.globDirs, d)
		m.globSet[d] = true
	}
	sort.Strings(m.globDirs)
}

// refreshGlobDirs watches directories that now match a glob's directory
// part, watches again those that were moved or deleted (inotify dropped
// them, even if a new one has the name now), and lets go of the rest.
func (e *emperor) refreshGlobDirs(m *monitor) {
	oldDirs, oldSet := m.watchDirs(), m.globSet
	m.setGlobDirs(m.listGlobDirs())
	for _, d := range m.globDirs {
		if (!oldSet[d] || m.globReadd[d]) && e.watch.fs.add(d) {
			delete(m.globReadd, d)
		}
	}
	for _, d := range oldDirs {
		if !m.globSet[d] {
			e.releaseWatch(d)
		}
	}
}

// globHint sorts an event under a glob's directories. A config the pattern
// matches is checked by name; a directory at one of its levels (or a
// watched one itself) changes what is watched: a full rescan. Anything
// else there (an app's logs, sockets, caches) is none of the emperor's
// business, and costs nothing.
func (e *emperor) globHint(m *monitor, path string) bool {
	hit := false
	if m.globSet[path] {
		if m.globReadd == nil {
			m.globReadd = map[string]bool{}
		}
		m.globReadd[path] = true
		m.fullRescan, hit = true, true
	}
	aliases := m.globAlias[filepath.Dir(path)]
	if len(aliases) == 0 {
		return hit
	}
	full := m.fullPattern()
	_, levels := m.globLevels()
	for _, alias := range aliases {
		p := filepath.Join(alias, filepath.Base(path))
		if ok, _ := filepath.Match(full, p); ok {
			if name := m.globName(p); e.cfg.validName(name) {
				e.markDirty(m, name)
				hit = true
			}
		}
		for _, level := range levels {
			if ok, _ := filepath.Match(level, p); ok {
				m.fullRescan, hit = true, true
			}
		}
	}
	return hit
}

// globName is a matched path as the glob names its vassal: relative to
// the emperor's start directory for a relative pattern, as uWSGI does.
func (m *monitor) globName(path string) string {
	if filepath.IsAbs(m.pattern) {
		return path
	}
	name, _ := filepath.Rel(m.dir, path)
	return name
}

// pathOf is the config path of a vassal name of this monitor.
func (m *monitor) pathOf(name string) string {
	if m.glob && filepath.IsAbs(name) {
		return name
	}
	return filepath.Join(m.dir, name)
}

// watches reports whether dir is one of the monitor's watched directories;
// a glob may have thousands, and every inotify event asks.
func (m *monitor) watches(dir string) bool {
	if !m.glob {
		return dir == m.dir
	}
	m.watchDirs()
	return m.globSet[dir]
}

// candidate is one config the monitor lists: its vassal name and the path
// to stat.
type candidate struct {
	_          noCompare
	name, path string
	instance   string // the section, for an instance of a file that declares several
}

func (m *monitor) list() ([]candidate, error) {
	if m.glob {
		p := m.pattern
		if !filepath.IsAbs(p) {
			p = filepath.Join(m.dir, p)
		}
		matches, err := filepath.Glob(p)
		if err != nil {
			return nil, err
		}
		out := make([]candidate, 0, len(matches))
		for _, path := range matches {
			out = append(out, candidate{name: m.globName(path), path: path})
		}
		return out, nil
	}
	// A FIFO swapped in for the directory must not block the open.
	f, err := os.OpenFile(m.dir, os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	out := make([]candidate, 0, len(names))
	for _, n := range names {
		out = append(out, candidate{name: n, path: filepath.Join(m.dir, n)})
	}
	return out, nil
}

func (e *emperor) scanAll() {
	e.spawning(func() {
		for _, m := range e.watch.monitors {
			e.scanMonitor(m)
		}
	})
}

// scanMonitor is the source of truth: list, stat, compare. inotify only
// decides when it runs.
func (e *emperor) scanMonitor(m *monitor) {
	if m.missing {
		e.awaitDir(m) // the safety net for an awaited directory, too
		return
	}
	if m.glob {
		e.refreshGlobDirs(m)
	}
	cands, err := m.list()
	if err != nil {
		// A vanished or unreadable directory stops nothing: vassals keep
		// running until it is readable again and says otherwise.
		if msg := err.Error(); msg != m.lastErr {
			logVerbose("[emperor] cannot scan %s: %v", m.arg, err)
			m.lastErr = msg
		}
		return
	}
	if m.lastErr != "" {
		logVerbose("[emperor] %s is readable again", m.arg)
		m.lastErr = ""
		for _, d := range m.watchDirs() {
			e.watch.fs.add(d) // a directory that came back needs a new watch
		}
	}
	// Each record this scan sees is marked with its number, rather than
	// collected in a set: a scan of 1,000 configs made 50 KB of garbage.
	m.scans++
	see := func(recs []*vassal) {
		for _, r := range recs {
			r.scanMark, r.goneSince = m.scans, time.Time{}
		}
	}
	var listed map[string]bool // only if symlinked configs are followed
	if len(e.links.chains) > 0 {
		listed = make(map[string]bool, len(cands))
	}
	for _, c := range cands {
		if !e.cfg.validName(c.name) {
			continue
		}
		if listed != nil {
			listed[c.name] = true
		}
		recs := e.recordsOf(m, c.name)
		if e.beingWritten(m, c) {
			see(recs) // read once its writer is done
			continue
		}
		changed := func(st fileState) bool { return len(recs) == 0 || !recs[0].file.sameStat(st) }
		st, ok := e.statConfig(c.path)
		if !ok || changed(st) {
			// New, changed or dangling: watch its chain first, then look
			// again, so a change in between is seen now or is an event.
			e.followLink(m, c)
			st, ok = e.statConfig(c.path)
		}
		if !ok {
			continue
		}
		if !changed(st) {
			see(recs) // the idle case: nothing to admit
			continue
		}
		if e.mayBeWriting(c.path, st) {
			see(recs)
			continue
		}
		for _, name := range e.admit(m, c, st) {
			if v := e.vassals.byName[name]; v != nil && v.mon == m {
				see([]*vassal{v})
			}
		}
	}
	// With none followed when the scan began, every chain now is one it
	// followed for a config it listed.
	if listed != nil {
		for key := range e.links.chains {
			if key.mon == m && !listed[key.name] {
				e.unfollowLink(key)
			}
		}
	}
	for _, v := range e.vassals.live() {
		if v.mon == m && !v.deleted && v.scanMark != m.scans && v.zergOf == nil {
			e.configGone(v)
		}
	}
}

// statConfig stats a config the way the monitor counts it: a regular file
// (through symlinks), or with --emperor-nofollow the symlink itself. The
// stat lands in a local buffer: with os.Stat every scan of 1,000 configs
// made 200 KB of FileInfo garbage, the most of an idle emperor's.
func (e *emperor) statConfig(path string) (fileState, bool) {
	var st unix.Stat_t
	if statPath(path, !e.cfg.nofollow, &st) != nil {
		return fileState{}, false
	}
	mode := uint32(st.Mode) & unix.S_IFMT
	isLink := mode == unix.S_IFLNK
	if mode != unix.S_IFREG && !(e.cfg.nofollow && isLink) {
		return fileState{}, false
	}
	uid, gid := st.Uid, st.Gid
	if e.cfg.tyrant && e.cfg.tyrantNofollow && !e.cfg.nofollow {
		// The link's owner decides: a symlink to someone else's file must
		// not borrow that owner.
		var link unix.Stat_t
		if statPath(path, false, &link) != nil {
			return fileState{}, false
		}
		uid, gid = link.Uid, link.Gid
	}
	return fileState{dev: uint64(st.Dev), ino: uint64(st.Ino), mtime: st.Mtim.Nano(), size: st.Size, uid: uid, gid: gid, link: isLink}, true
}

// statPath is stat(2), or lstat(2) when not follow, retried on EINTR as
// os.Stat does (a network filesystem can be interrupted).
func statPath(path string, follow bool, st *unix.Stat_t) error {
	for {
		var err error
		if follow {
			err = unix.Stat(path, st)
		} else {
			err = unix.Lstat(path, st)
		}
		if err != unix.EINTR {
			return err
		}
	}
}

// fileState is what the emperor remembers of a config to tell a real change
// from an atomic replace with the same content.
type fileState struct {
	_        noCompare
	dev, ino uint64
	mtime    int64
	size     int64
	uid, gid uint32
	link     bool
	digest   uint64 // of the content (followed) or link target (nofollow); 0: unknown
}

func (f fileState) sameStat(g fileState) bool {
	return f.dev == g.dev && f.ino == g.ino && f.mtime == g.mtime && f.size == g.size && f.uid == g.uid && f.gid == g.gid
}

// maxDigestSize bounds how much of a config is read to compare content; a
// bigger file counts as changed whenever its stat changes.
const maxDigestSize = 4 << 20

// digestSeed keys the content digests, chosen at random at each start. A
// digest only tells "same content" (no reload) from "changed", so a
// collision could only skip one reload, and only the config's writer
// chooses its bytes: they could as well not write. With a secret seed no
// one can even compute a collision, and maphash (the runtime's own hash)
// costs the binary next to nothing where crypto/sha256 brought 160 KB.
var digestSeed = maphash.MakeSeed()

// digestOf is the digest of a vassal's config: the file's, or its
// instance's effective config.
func (e *emperor) digestOf(v *vassal, st fileState) uint64 {
	if v.instance != "" {
		return e.instanceDigest(v, st)
	}
	return e.digest(v.path, st)
}

func (e *emperor) digest(path string, st fileState) uint64 {
	var h maphash.Hash
	h.SetSeed(digestSeed)
	if e.cfg.nofollow && st.link {
		target, err := os.Readlink(path)
		if err != nil {
			return 0
		}
		h.WriteByte('l') // a link is never the same as a file holding its target
		h.WriteString(target)
		return h.Sum64() | 1
	}
	data, err := readRegularFile(path, maxDigestSize)
	if err != nil {
		return 0 // unreadable now, or too big: counts as changed
	}
	h.WriteByte('f')
	h.Write(data)
	return h.Sum64() | 1 // never 0, which means unknown
}

// checkChange decides between reload and nothing: new content reloads; the
// same content reloads only when the same inode got a new mtime (touch);
// the same content under a new inode is an atomic replace (editor,
// consul-template, a ConfigMap ..data swap) and changes nothing.
func (e *emperor) checkChange(v *vassal, st fileState) {
	if v.file.sameStat(st) || v.then == thenDelete {
		return
	}
	if e.cfg.tyrant && (st.uid != v.uid || st.gid != v.gid) {
		// Stop, then the rescan after removal starts it as the new owner.
		logRaw("!!! permissions of file %s changed. stopping the instance... !!!", v.name)
		e.stop(v, thenDelete)
		return
	}
	st.digest = e.digestOf(v, st)
	old := v.file
	v.file = st
	sameInode := old.dev == st.dev && old.ino == st.ino
	switch {
	case st.digest == 0 || st.digest != old.digest:
		v.lastMod = st.mtime / 1e9
		v.noDirect = false // a new config: its program may be exec'd directly again
		e.reload(v, "config change")
	case sameInode && st.mtime != old.mtime:
		v.lastMod = st.mtime / 1e9
		e.reload(v, "touch")
	}
}

// onFSHint takes a path inotify reported. A change to one config name is
// checked on its own (O(1) per event, so a burst of a thousand new files is
// not a thousand full scans); anything else (a ..data swap, a directory, an
// overflow, "" for "look everywhere") rescans the whole monitor. Both wait a
// short debounce that folds an editor's save or a tar's burst into one look.
// It reports whether the path was a config (or on a symlinked config's
// way).
func (e *emperor) onFSHint(path string) bool {
	config := false
	for _, m := range e.watch.monitors {
		switch {
		case m.missing:
			continue
		case path == "" || path == m.dir:
			m.fullRescan = true
		case !m.glob && filepath.Dir(path) == m.dir:
			name := filepath.Base(path)
			if !e.cfg.validName(name) {
				m.fullRescan = true
				break
			}
			e.markDirty(m, name)
			config = true
		case m.glob:
			if !e.globHint(m, path) {
				continue
			}
			config = true
		default:
			continue
		}
		e.scheduleRescan(m)
	}
	return e.recheckLinked(path) || config
}

// recheckLinked looks again at every symlinked config whose chain holds
// path: a link on the way, the file it reaches, the missing name of a
// dangling link, or a watched directory itself changed.
func (e *emperor) recheckLinked(path string) bool {
	for key := range e.links.byPath[path] {
		e.markDirty(key.mon, key.name)
		e.scheduleRescan(key.mon)
	}
	return len(e.links.byPath[path]) > 0
}

// fsEvent is one file event: what happened to a path in a watched
// directory (or to the directory itself).
type fsEvent struct {
	_    noCompare
	path string
	op   fsOp
}

// fsOp is a set of what happened.
type fsOp uint16

const (
	fsWrite    fsOp = 1 << iota // content changed; the writer may not be done
	fsCreate                    // a new name: a file its creator may still be writing
	fsClose                     // a writer closed the file: it is done
	fsMovedIn                   // renamed into the directory: complete
	fsGone                      // deleted, or renamed away
	fsAttrib                    // metadata: touch, chmod, chown
	fsSelfGone                  // the watched directory itself was deleted or moved
	fsOverflow                  // events were lost: look everywhere
	fsDir                       // the name is a directory
)

// writeSettle is how long a file written to and not closed (a writer that
// keeps it open) must stay quiet before it is read: long enough for a
// slow writer's next chunk, short next to the time a human takes.
const writeSettle = time.Second

// onFSEvent acts on a file event at once, except for a file still being
// written (cat > app.ini, echo >> app.ini, an editor writing in place):
// that is read when its writer closes it, or once it has been quiet for
// writeSettle. A file renamed into place is complete, and read at once.
func (e *emperor) onFSEvent(ev fsEvent) {
	trace("event", ev.path)
	switch {
	case ev.op&fsOverflow != 0:
		clear(e.watch.goneSeen) // the events that would end them may be lost
		e.onFSHint("")
		return
	case ev.op&fsSelfGone != 0:
		e.watchedDirGone(ev.path)
	}
	e.awaitedChanged(ev.path)
	if ev.op&(fsGone|fsDir) == fsGone|fsDir {
		e.watchedDirGone(ev.path) // a monitor's directory, seen from its parent
	}
	w := &e.watch
	if w.logReopen[ev.path] && ev.op&(fsAttrib|fsClose|fsMovedIn|fsCreate) != 0 {
		e.cfg.daemon.reopenLog()
	}
	if ev.op&fsGone != 0 && ev.op&(fsCreate|fsMovedIn) == 0 && w.inBatch {
		w.goneSeen[ev.path] = true
	} else {
		delete(w.goneSeen, ev.path)
	}
	switch {
	case ev.op&(fsClose|fsMovedIn|fsGone) != 0:
		delete(w.writing, ev.path)
	case ev.op&fsDir != 0:
	case ev.op&fsWrite != 0 || ev.op&fsCreate != 0 && regularFile(ev.path):
		if e.onFSHint(ev.path) {
			w.writing[ev.path] = time.Now()
			if !w.settlePending {
				w.settlePending = true
				e.timers.push(timerItem{at: time.Now().Add(writeSettle), kind: tSettle})
			}
		}
		return
	case ev.op&fsAttrib != 0 && !w.writing[ev.path].IsZero():
		return // a chmod while the file is being written
	}
	e.onFSHint(ev.path)
}

// settleDue reads the files that stayed quiet for writeSettle while open
// for writing, and waits again for the rest.
func (e *emperor) settleDue(timerItem) {
	w := &e.watch
	w.settlePending = false
	next := time.Time{}
	for path, last := range w.writing {
		// The file's own stamp too: a loop held up past the settle time
		// may find this timer due before the write events still queued.
		if fi, err := os.Stat(path); err == nil && fi.ModTime().After(last) && time.Since(fi.ModTime()) >= 0 {
			last = fi.ModTime()
		}
		if due := last.Add(writeSettle); time.Now().Before(due) {
			if next.IsZero() || due.Before(next) {
				next = due
			}
			continue
		}
		delete(w.writing, path)
		e.onFSHint(path)
	}
	if !next.IsZero() {
		w.settlePending = true
		e.timers.push(timerItem{at: next, kind: tSettle})
	}
}

// beingWritten reports whether a config (or the file a symlinked one
// reaches) is open for writing: not to be read yet.
func (e *emperor) beingWritten(m *monitor, c candidate) bool {
	if len(e.watch.writing) == 0 {
		return false
	}
	if !e.watch.writing[c.path].IsZero() {
		return true
	}
	for _, p := range e.links.chains[linkKey{m, c.name}].paths {
		if !e.watch.writing[p].IsZero() {
			return true
		}
	}
	return false
}

// mayBeWriting: a scan (not an event) found a new or changed config
// written to less than writeSettle ago. No event says its writer is done
// (it was written before the watch existed, or there is no watch), so it is
// read once it has been quiet for writeSettle, or its close is seen.
//
// The first scan trusts what it finds, as uWSGI does: configs present at
// start are spawned before systemd hears READY=1.
func (e *emperor) mayBeWriting(path string, st fileState) bool {
	if !e.watch.scanned {
		return false
	}
	last := time.Unix(0, st.mtime)
	if age := time.Since(last); age < 0 || age >= writeSettle {
		return false // quiet long enough; or stamped in the future (touch -d)
	}
	w := &e.watch
	if w.writing[path].Before(last) {
		w.writing[path] = last
	}
	if !w.settlePending {
		w.settlePending = true
		e.timers.push(timerItem{at: last.Add(writeSettle), kind: tSettle})
	}
	return true
}

// regularFile reports whether path is a regular file itself (not a link).
func regularFile(path string) bool {
	fi, err := os.Lstat(path)
	return err == nil && fi.Mode().IsRegular()
}

// awaitDir watches a missing monitor directory's nearest existing
// ancestor, so its creation (or a parent's) is an event; if it exists by
// now, it is watched and scanned. A directory made below the ancestor
// before its watch was in place sends no event (mkdir -p makes the whole
// path at once), so the ancestor is looked for again until the watch is
// on the deepest one; a path made and removed under it without end is
// left to the scans.
func (e *emperor) awaitDir(m *monitor) {
	for range 64 {
		if fi, err := os.Stat(m.dir); err == nil && fi.IsDir() {
			e.dirBack(m)
			return
		}
		at := filepath.Dir(m.dir)
		for {
			if fi, err := os.Stat(at); err == nil && fi.IsDir() {
				break
			}
			if at == filepath.Dir(at) {
				return // not even / (a jail without it): the scans look
			}
			at = filepath.Dir(at)
		}
		if at == m.awaitAt {
			return // watched since before: nothing was made below it meanwhile
		}
		old := m.awaitAt
		m.awaitAt = at
		e.watch.fs.addNames(at)
		e.releaseWatch(old)
	}
}

// dirBack: an awaited monitor directory exists (again). It is watched and
// scanned in full: the scan starts what it holds and stops the vassals
// whose configs it no longer holds.
func (e *emperor) dirBack(m *monitor) {
	if real, err := filepath.EvalSymlinks(m.dir); err == nil {
		m.dir = real
	}
	m.missing = false
	old := m.awaitAt
	m.awaitAt = ""
	e.watch.fs.add(m.dir)
	e.releaseWatch(old)
	logRaw("[emperor] vassal directory %s is there: watching it", m.dir)
	m.fullRescan = true
	e.scheduleRescan(m)
}

// watchedDirGone: the kernel dropped a watched directory (deleted, moved
// away). A monitor's own directory is awaited again; its vassals keep
// running until it is back and says otherwise.
func (e *emperor) watchedDirGone(dir string) {
	for _, m := range e.watch.monitors {
		if m.glob || m.missing || m.dir != dir {
			continue
		}
		if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
			e.watch.fs.add(dir) // replaced at once by another directory
			m.fullRescan = true
			e.scheduleRescan(m)
			continue
		}
		logRaw("[emperor] vassal directory %s is gone: its vassals keep running until it is back", dir)
		m.missing = true
		e.awaitDir(m)
	}
}

// awaitedChanged looks again for every missing monitor directory awaited
// in the directory an event happened in.
func (e *emperor) awaitedChanged(path string) {
	for _, m := range e.watch.monitors {
		if m.missing && (filepath.Dir(path) == m.awaitAt || path == m.awaitAt) {
			e.awaitDir(m)
		}
	}
}

// releaseWatch drops the watch on dir unless something else still needs it.
func (e *emperor) releaseWatch(dir string) {
	if dir != "" && !e.dirInUse(dir) {
		e.watch.fs.remove(dir)
	}
}

// dirInUse reports whether a monitor, a symlink chain or an awaited
// directory needs dir watched.
func (e *emperor) dirInUse(dir string) bool {
	if e.isWatchedMonitorDir(dir) || e.links.dirs[dir] > 0 {
		return true
	}
	for p := range e.watch.logReopen {
		if filepath.Dir(p) == dir {
			return true
		}
	}
	for _, m := range e.watch.monitors {
		if m.missing && m.awaitAt == dir || !m.glob && filepath.Dir(m.dir) == dir {
			return true
		}
	}
	return false
}

func (e *emperor) markDirty(m *monitor, name string) {
	if m.dirty == nil {
		m.dirty = map[string]bool{}
	}
	m.dirty[name] = true
}

// scheduleRescan arranges a look at what was marked in m: right after the
// batch of kernel events being read (one look for every event of one read:
// a tar's burst, an editor's save), or, when events come one by one over a
// channel (fsnotify elsewhere, and the emperor's own rechecks), after
// fsDebounce, while more may still arrive.
func (e *emperor) scheduleRescan(m *monitor) {
	if e.watch.inBatch {
		// Even with a timer's look already due: what the batch noted of
		// removals is for the batch's own looks, and goes with them.
		if !slices.Contains(e.watch.batch, m) {
			e.watch.batch = append(e.watch.batch, m)
		}
		m.rescanPending = true
		return
	}
	if m.rescanPending {
		return
	}
	m.rescanPending = true
	e.timers.push(timerItem{at: time.Now().Add(fsDebounce), kind: tRescan, mon: m.id})
}

const fsDebounce = 500 * time.Microsecond

// drainFileEvents reads every queued kernel file event, then looks at what
// they marked, at once.
func (e *emperor) drainFileEvents(fw *fileWatch) {
	e.watch.inBatch = true
	err := fw.k.drain(e.onFSEvent)
	e.watch.inBatch = false
	if err != nil {
		logRaw("[emperor] %v: rescanning everything", err)
		e.onFSHint("")
	}
	batch := e.watch.batch
	e.watch.batch = nil
	e.spawning(func() {
		for _, m := range batch {
			if m.rescanPending {
				e.rescanDirty(m)
			}
		}
	})
	// A removal seen matters to this batch's looks only: a later look
	// (a settle, a scan) must not skip the file for it, and the names of
	// files no look is for (temporary files) must not pile up.
	if len(e.watch.goneSeen) > 0 {
		clear(e.watch.goneSeen)
	}
}

// rescanDirty runs a debounced look: the whole monitor, or just the names
// inotify reported.
func (e *emperor) rescanDirty(m *monitor) {
	m.rescanPending = false
	dirty, full := m.dirty, m.fullRescan
	m.dirty, m.fullRescan = nil, false
	if e.shutdown.dying {
		return
	}
	e.spawning(func() {
		if full {
			e.scanMonitor(m)
		}
		// Also after a full scan: a name marked through a symlink chain
		// must have its chain resolved again even if its stat is the same.
		for name := range dirty {
			e.checkOne(m, candidate{name: name, path: m.pathOf(name)})
		}
	})
}

// configGone: v's config is no longer there. The vassal is stopped once
// the config has stayed gone for removal-grace: a config deleted and
// written again (git checkout, rm then cp) is a change, as uWSGI's scan
// sees it, not a stop and a new process; and while the whole directory is
// gone (rm -rf, a swap) its vassals run on until it is back.
func (e *emperor) configGone(v *vassal) {
	if v.then == thenDelete || v.deleted {
		return
	}
	if v.goneSince.IsZero() {
		v.goneSince = time.Now()
		if e.cfg.removalGrace > 0 {
			e.timers.push(timerItem{at: v.goneSince.Add(e.cfg.removalGrace), kind: tGone, v: v})
			return
		}
	}
	if time.Since(v.goneSince) < e.cfg.removalGrace || v.mon.missing || !dirExists(v.mon.dir) {
		return
	}
	e.stop(v, thenDelete)
}

// goneDue looks again at a config that went a removal-grace ago.
func (e *emperor) goneDue(it timerItem) {
	v := it.v
	if v.deleted || v.goneSince.IsZero() || e.shutdown.dying {
		return
	}
	e.spawning(func() { e.checkOne(v.mon, candidate{name: v.configName(), path: v.path}) })
}

func dirExists(dir string) bool {
	fi, err := os.Stat(dir)
	return err == nil && fi.IsDir()
}

// checkOne is scanMonitor for a single name.
func (e *emperor) checkOne(m *monitor, c candidate) {
	trace("check", c.name)
	// Whatever changed may have been a link on the way: resolve again.
	e.followLink(m, c)
	if e.beingWritten(m, c) {
		return // read once its writer is done
	}
	st, ok := e.statConfig(c.path)
	gone := e.watch.goneSeen[c.path]
	delete(e.watch.goneSeen, c.path)
	if !ok {
		for _, v := range e.recordsOf(m, c.name) {
			e.configGone(v)
		}
		return
	}
	if gone {
		// Its removal was the last kernel event read, yet it is there
		// again (rm, then a write in place): its creation's event is
		// queued behind, and what is there may be half written. That
		// event and its writer's close bring the look at it.
		return
	}
	e.admit(m, c, st)
}

func (e *emperor) isWatchedMonitorDir(dir string) bool {
	for _, m := range e.watch.monitors {
		if m.watches(dir) {
			return true
		}
	}
	return false
}

// fileWatch is the loop's side of the kernel's file events. They are only
// hints: when it cannot watch (no inotify, NFS, out of watches) the
// periodic scan still sees everything.
type fileWatch struct {
	_      noCompare
	k      *fsWatch // the platform's watcher (emperor_linux.go, emperor_other.go); nil: none
	token  uint32   // k's registration in the poll set
	failed bool     // a watch could not be added: polling is the only source
	warned bool     // the failure was logged (once, not on every retry)
}

// live reports whether every directory that matters is watched.
func (f *fileWatch) live() bool { return f != nil && f.k != nil && !f.failed }

// retryWatches tries again to watch every directory after a failure (out
// of inotify watches): polling covers the gap, inotify comes back when it can.
func (e *emperor) retryWatches() {
	if e.watch.fs == nil || e.watch.fs.k == nil || !e.watch.fs.failed {
		return
	}
	e.watch.fs.failed = false
	for _, m := range e.watch.monitors {
		for _, d := range m.watchDirs() {
			e.watch.fs.add(d)
		}
		// And the watches start() and awaitDir() add beside a monitor's
		// own (the parent that sees it go and come back, the ancestor
		// that sees it made), and the touch-logreopen files' below.
		if m.awaitAt != "" {
			e.watch.fs.addNames(m.awaitAt)
		} else if !m.glob {
			e.watch.fs.addNames(filepath.Dir(m.dir))
		}
	}
	e.watchLogReopen()
	for d := range e.links.dirs {
		if !e.isWatchedMonitorDir(d) {
			e.watch.fs.add(d)
		}
	}
	if !e.watch.fs.failed {
		e.watch.fs.warned = false
		logRaw("[emperor] file watching restored")
	}
}

func (f *fileWatch) remove(dir string) {
	if f != nil && f.k != nil {
		f.k.remove(dir)
	}
}

// add watches dir and reports whether it now is.
func (f *fileWatch) add(dir string) bool { return f.addMask(dir, false) }

// addNames watches dir only for the names in it coming and going.
func (f *fileWatch) addNames(dir string) bool { return f.addMask(dir, true) }

func (f *fileWatch) addMask(dir string, namesOnly bool) bool {
	if f == nil || f.k == nil {
		return false
	}
	err := f.k.add(dir, namesOnly)
	if err != nil && !os.IsNotExist(err) {
		f.failed = true
		if !f.warned {
			f.warned = true
			logRaw("[emperor] cannot watch %s (%v): it is polled every emperor-freq", dir, err)
		}
	}
	return err == nil
}

// fullScanInterval keeps the safety-net scan cheap: every emperor-freq for
// an ordinary directory, but never more than 1% of a core for a huge one,
// and 0.02% while inotify sees every change (every directory a monitor
// lists and every one a symlinked config resolves through is watched), when
// the scan only guards against what no event reports (a network
// filesystem). With 1,000 configs a scan costs ~2 ms: every ~10 s then;
// never rarer than once a minute, or emperor-freq if that is longer.
func (e *emperor) fullScanInterval(cost time.Duration) time.Duration {
	factor := time.Duration(100)
	if e.watch.fs.live() {
		factor = 5000
	}
	return min(max(cost*factor, e.cfg.freq), max(maxScanInterval, e.cfg.freq))
}

const maxScanInterval = time.Minute

// ==== Config files with several instances ================================
// A config file can declare several instances of its app in its main
// section: `emperor-instances = eu us` (a list in JSON and YAML, the
// element's text in XML). Each instance is a vassal of its own, named
// FILE:SECTION and started as `--ini FILE:SECTION` (or the format's loader),
// which every uWSGI config loader reads as that section of the file: a
// real uWSGI vassal reads exactly it, and so does the runner. `--set
// instance=SECTION` comes first, so %(instance) names the instance in
// sockets, logs and chdir; %n and the other magic variables stay the file's.
// A file without the declaration is one vassal, as it always was, and
// uWSGI's own emperor, which knows no such option, runs such a file as one
// vassal of its main section.

// instancesKey declares a file's instances.
const instancesKey = "emperor-instances"

// instancesOf reads the instances a config file declares, nil for none.
// The file is read once (bounded, non-blocking) and kept for the digests
// that follow at once.
func (e *emperor) instancesOf(c candidate, st fileState) []string {
	if e.cfg.nofollow && st.link {
		return nil
	}
	if e.cfg.tyrant && (st.uid == 0 || st.gid == 0) {
		return nil // refused anyway: nothing of a root-owned file is read
	}
	kind := configKindByExt(c.path)
	if kind == "" {
		return nil
	}
	data := e.readConfigOnce(c.path, st)
	if data == nil || !mayDeclareInstances(data) {
		return nil
	}
	opts, err := configParseText(kind, &cfgText{name: c.path, data: data}, "")
	if err != nil {
		return nil
	}
	var secs []string
	for _, o := range opts {
		if o.Key != instancesKey {
			continue
		}
		for _, s := range strings.FieldsFunc(o.Value, func(r rune) bool { return r == ' ' || r == ',' || r == '\t' }) {
			if validInstance(s) && !slices.Contains(secs, s) {
				secs = append(secs, s)
			}
		}
	}
	return secs
}

// mayDeclareInstances says whether a config's text could declare
// instances: every format spells a key as it is written, but for JSON's
// and YAML's backslash escapes and XML's character references. Most
// configs have neither the key nor those, and are not parsed for it.
func mayDeclareInstances(data []byte) bool {
	return bytes.Contains(data, []byte(instancesKey)) || bytes.IndexByte(data, '\\') >= 0 || bytes.IndexByte(data, '&') >= 0
}

// validInstance: a section name that stays one word on every command line
// and in every path it reaches.
func validInstance(s string) bool {
	for _, r := range s {
		if r <= ' ' || r == ':' || r == '/' || r == '%' || r == 0x7f {
			return false
		}
	}
	return s != "" && len(s) <= 64
}

// readConfigOnce reads a config for the checks of one look at it: the
// declaration, then each instance's digest, share one read.
func (e *emperor) readConfigOnce(path string, st fileState) []byte {
	r := &e.watch.lastRead
	if r.path == path && r.st.sameStat(st) {
		return r.data
	}
	data, err := readRegularFile(path, maxDigestSize)
	if err != nil {
		data = nil
	}
	*r = configRead{path: path, st: st, data: data}
	return data
}

// configRead is the last config read, for the looks that follow at once.
type configRead struct {
	path string
	st   fileState
	data []byte
}

// instanceDigest is what one instance's effective config is: its
// section's options, with those of the sections of the same file it loads
// (`ini = :base`) and the content of the files it includes (readable by
// the config's owner), so a change of a shared part reloads exactly the
// instances that use it.
func (e *emperor) instanceDigest(v *vassal, st fileState) uint64 {
	data := e.readConfigOnce(v.path, st)
	if data == nil {
		return 0
	}
	kind := configKindByExt(v.path)
	var h maphash.Hash
	h.SetSeed(digestSeed)
	seen := map[string]bool{}
	var add func(section string, depth int)
	add = func(section string, depth int) {
		if seen[section] || depth > 8 {
			return
		}
		seen[section] = true
		opts, err := configParseText(kind, &cfgText{name: v.path, data: data}, section)
		if err != nil {
			h.WriteString("error")
			return
		}
		for _, o := range opts {
			if o.Key == instancesKey {
				continue // declaring another instance changes none of these
			}
			h.WriteString(o.Key)
			h.WriteByte('=')
			h.WriteString(o.Value)
			h.WriteByte('\n')
			if _, loader := configOptionKind[o.Key]; !loader && o.Key != "include" && o.Key != "inherit" {
				continue
			}
			file, sec, hasSec := configSplitSection(digestMagic(v.path, o.Value))
			if configScheme(file) != "" {
				continue // exec://, http://: never run or fetched by the emperor
			}
			if file != "" && !filepath.IsAbs(file) {
				file = filepath.Join(filepath.Dir(v.path), file)
			}
			switch {
			case hasSec && (file == "" || sameFile(file, v.path)):
				add(sec, depth+1)
			case file != "":
				e.digestIncluded(&h, v, file)
			}
		}
	}
	add(v.instance, 0)
	return h.Sum64() | 1
}

// digestMagic expands the magic variables that name the config file itself
// (%p %s %d %n %e), the ones a loader value uses to point at another
// section of the same file (JSON and YAML have no ":section" shorthand).
func digestMagic(path, value string) string {
	if !strings.Contains(value, "%") {
		return value
	}
	if full, err := filepath.EvalSymlinks(path); err == nil {
		path = full
	}
	dir, base := filepath.Split(path)
	stem, ext := base, ""
	if dot := strings.LastIndexByte(base, '.'); dot >= 0 {
		stem, ext = base[:dot], base[dot+1:]
	}
	var b strings.Builder
	for i := 0; i < len(value); i++ {
		if value[i] == '%' && i+1 < len(value) {
			if j := strings.IndexByte("%psdne", value[i+1]); j >= 0 {
				b.WriteString([...]string{"%", path, base, dir, stem, ext}[j])
				i++
				continue
			}
		}
		b.WriteByte(value[i])
	}
	return b.String()
}

// digestIncluded adds an included file's content to a digest, when it is
// a regular file the config's owner owns (in tyrant mode the emperor
// reads nothing on a user's behalf that the user could not).
func (e *emperor) digestIncluded(h *maphash.Hash, v *vassal, file string) {
	if e.cfg.tyrant {
		fi, err := os.Stat(file)
		if err != nil {
			return
		}
		if uid, _, _, _ := statOwner(fi); uid != v.uid {
			return
		}
	}
	if data, err := readRegularFile(file, maxDigestSize); err == nil {
		h.WriteString(file)
		h.Write(data)
	}
}

// recordsOf are the vassals a config file of m has: its instances, or its
// one vassal.
func (e *emperor) recordsOf(m *monitor, file string) []*vassal {
	if recs := e.vassals.byFile[fileKey{m, file}]; len(recs) > 0 {
		return recs
	}
	if v := e.vassals.byName[file]; v != nil && v.mon == m && v.instance == "" {
		return []*vassal{v}
	}
	return nil
}

// fileKey names a config file of a monitor.
type fileKey struct {
	mon  *monitor
	file string
}

// admit takes a config file that is there, as st says, into the vassal
// table: its one vassal, or one per instance it declares; vassals of
// instances it no longer declares (or of the file before it declared any)
// are stopped. It returns the names it holds now.
func (e *emperor) admit(m *monitor, c candidate, st fileState) []string {
	recs := e.recordsOf(m, c.name)
	if len(recs) > 0 && recs[0].file.sameStat(st) {
		names := make([]string, len(recs))
		for i, r := range recs {
			names[i], r.goneSince = r.name, time.Time{}
		}
		return names
	}
	secs := e.instancesOf(c, st)
	cands := []candidate{c}
	if len(secs) > 0 {
		cands = cands[:0]
		for _, s := range secs {
			cands = append(cands, candidate{name: c.name + ":" + s, path: c.path, instance: s})
		}
	}
	names := make([]string, 0, len(cands))
	for _, cc := range cands {
		names = append(names, cc.name)
		switch v := e.vassals.byName[cc.name]; {
		case v == nil:
			e.addVassal(m, cc, st)
		case v.mon == m:
			v.goneSince = time.Time{}
			e.checkChange(v, st)
		}
	}
	for _, r := range recs {
		if !slices.Contains(names, r.name) && r.then != thenDelete {
			e.stop(r, thenDelete) // a section no longer declared
		}
	}
	e.watch.lastRead = configRead{} // no config text is kept past its look
	return names
}

// ==== Symlinked configs =================================================

// symlinks is every symlinked config being followed. Invariants: byPath
// and dirs are derived from chains (each path and directory of a chain
// names its key; each directory counts the chains holding it), and a
// directory is watched while its count is above zero or a monitor lists it.
type symlinks struct {
	chains map[linkKey]linkChain       // symlinked configs, dangling ones too
	byPath map[string]map[linkKey]bool // path -> configs whose chain holds it
	dirs   map[string]int              // watched dirs of those chains, refcounted
}

// linkKey names a config by its monitor and name, so a dangling link (no
// vassal yet) is followed like a vassal's config.
type linkKey struct {
	mon  *monitor
	name string
}

// linkChain is what a symlinked config's meaning depends on: the
// directories to watch, and the paths whose change matters.
type linkChain struct {
	dirs, paths []string
}

// followLink watches what a symlinked config resolves through
// (sites-enabled -> sites-available, a deploy's current -> releases/42), so
// touching or rewriting the target, re-pointing a link on the way, or the
// target of a dangling link appearing is an event, not something the
// safety-net scan finds later. With --emperor-nofollow the link itself
// counts, and it is in the watched dir.
func (e *emperor) followLink(m *monitor, c candidate) {
	key := linkKey{m, c.name}
	chain := e.resolveLink(c.path)
	// Resolved before the watches exist: a link re-pointed meanwhile would
	// go unseen. Once they are added, resolve again until nothing moved.
	for try := 0; e.watchChain(key, chain) && try < 2; try++ {
		again := e.resolveLink(c.path)
		if slices.Equal(again.paths, chain.paths) {
			return
		}
		chain = again
	}
}

// resolveLink is the chain of a symlinked config, nothing for any other.
func (e *emperor) resolveLink(path string) linkChain {
	if e.cfg.nofollow {
		return linkChain{}
	}
	if fi, err := os.Lstat(path); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		return linkChain{}
	}
	return symlinkChain(path)
}

// watchChain makes chain what key follows, and reports whether it has
// anything to watch.
func (e *emperor) watchChain(key linkKey, chain linkChain) bool {
	old := e.links.chains[key]
	if len(chain.paths) == 0 {
		if len(old.paths) != 0 {
			e.unfollowLink(key)
		}
		return false
	}
	// New watches first, then the old ones go: a directory on both chains
	// is never unwatched in between. Every watch is added again: a
	// directory replaced under the same name needs a new one.
	for _, dir := range chain.dirs {
		e.links.dirs[dir]++
		if !e.isWatchedMonitorDir(dir) {
			e.watch.fs.add(dir)
		}
	}
	for _, p := range slices.Concat(chain.paths, chain.dirs) {
		if e.links.byPath[p] == nil {
			e.links.byPath[p] = map[linkKey]bool{}
		}
		e.links.byPath[p][key] = true
	}
	e.releaseChain(key, old, chain)
	e.links.chains[key] = chain
	return true
}

func (e *emperor) unfollowLink(key linkKey) {
	e.releaseChain(key, e.links.chains[key], linkChain{})
	delete(e.links.chains, key)
}

// releaseChain drops what old holds for key and kept does not.
func (e *emperor) releaseChain(key linkKey, old, kept linkChain) {
	for _, dir := range old.dirs {
		if e.links.dirs[dir]--; e.links.dirs[dir] <= 0 {
			delete(e.links.dirs, dir)
			e.releaseWatch(dir)
		}
	}
	for _, p := range slices.Concat(old.paths, old.dirs) {
		if slices.Contains(kept.paths, p) || slices.Contains(kept.dirs, p) {
			continue
		}
		if set := e.links.byPath[p]; set != nil {
			delete(set, key)
			if len(set) == 0 {
				delete(e.links.byPath, p)
			}
		}
	}
}

// symlinkChain resolves path one component at a time, as the kernel does,
// and returns the directories holding each symlink met on the way and the
// file finally reached, with those paths themselves; for a dangling link,
// as far as it resolves, ending with the name that is missing.
func symlinkChain(path string) linkChain {
	var ch linkChain
	note := func(dir, p string) {
		if !slices.Contains(ch.dirs, dir) {
			ch.dirs = append(ch.dirs, dir)
		}
		if !slices.Contains(ch.paths, p) {
			ch.paths = append(ch.paths, p)
		}
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return linkChain{}
	}
	rest := splitPath(abs)
	cur := "/"
	for hops := 0; len(rest) > 0; {
		name := rest[0]
		rest = rest[1:]
		if name == ".." {
			cur = filepath.Dir(cur) // cur is physical: no link left in it
			continue
		}
		next := filepath.Join(cur, name)
		fi, err := os.Lstat(next)
		if err != nil {
			note(cur, next) // dangling: the name whose arrival matters
			return ch
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			if len(rest) == 0 {
				note(cur, next)
			}
			cur = next
			continue
		}
		if hops++; hops > 40 {
			return ch // a loop: ELOOP for open() as well
		}
		target, err := os.Readlink(next)
		if err != nil {
			return ch
		}
		note(cur, next)
		if filepath.IsAbs(target) {
			cur = "/"
		}
		rest = append(splitPath(target), rest...)
	}
	return ch
}

// splitPath splits a path into its names, without the empty and "."
// ones; ".." stays, for the caller to resolve physically.
func splitPath(p string) []string {
	var out []string
	for _, name := range strings.Split(p, "/") {
		if name != "" && name != "." {
			out = append(out, name)
		}
	}
	return out
}

// ==== Vassals and their lifecycle =======================================

// vassalTable is every vassal record and the indexes the loop finds one
// by. Invariants: byName holds exactly the records not deleted; order holds
// them in insertion order (stats and SIGUSR1 list them so), plus nDeleted
// deleted ones until live() compacts them; byPid holds v while v.pid > 0,
// byFd while v.sock >= 0, odByFd while v's listener is in the epoll set.
type vassalTable struct {
	byName     map[string]*vassal
	order      []*vassal
	nDeleted   int
	byPid      map[int]*vassal
	byFd       map[int]*vassal
	odByFd     map[int]*vassal
	byFile     map[fileKey][]*vassal // the instances of each config file that declares several
	zergs      int                   // zerg records, at most emperor-broodlord
	zergStarts int                   // zerg records ever made: UWSGI_BROODLORD_NUM never goes down
}

// vassal is one config and the process running it. Only the loop goroutine
// touches these. A group's small fields come last in it, so that none pads
// the next: the record fits the allocator's 512-byte class, one per
// vassal.
type vassal struct {
	_ noCompare
	// The config.
	name     string    // as uWSGI names it: the file name (dir monitor) or the matched path (glob); FILE:SECTION for an instance
	instance string    // the section, for an instance of a file that declares several
	mon      *monitor  // the monitor that listed it
	path     string    // what is stat()ed: absolute
	file     fileState // the config as last admitted
	uid      uint32    // the config's owner: who a tyrant vassal runs as
	gid      uint32

	// The process. gen is bumped per spawn and per exit: a timer carries
	// the gen it was set for, and one set for an earlier process is dropped.
	pid          int // 0: not running
	sock         int // emperor end of the protocol socketpair, -1 when closed
	gen          uint64
	zergOf       *vassal    // a zerg: the vassal it reinforces (emperor-broodlord)
	zergNum      int        // a zerg: UWSGI_BROODLORD_NUM, the count of zerg starts
	companion    *companion // one of the emperor's own servers or daemons; nil for a config's vassal
	adoptTries   int        // a smart daemon's pidfile looked for since its launcher exited
	token        uint32     // sock's registration in the poll set
	spawnPending bool       // collected for a batch of fork+execs, not yet run
	noDirect     bool       // exec'ing its program directly failed: the runner starts it
	hookRan      bool       // vassals-stop-hook ran for the last process's end
	adopting     bool       // its process is being looked for: no stray sweep meanwhile (it is a child too)

	// Where it is in its life.
	killedFor string    // why the emperor itself killed the running process, for restart_reason
	goneSince time.Time // when its config was last seen gone; zero while it is there
	then      afterExit // what happens once the process is gone
	status    vassalStatus
	deleted   bool // the record is gone from the table; timers for it are dropped

	// What the process said on the protocol (reset at each spawn).
	heartbeatAt    time.Time // the last byte 26, on the monotonic clock
	flood          floodMeter
	spoke          bool // sent at least one byte: it understands the protocol
	loyal          bool // byte 17
	ready          bool // byte 1
	accept         bool // byte 5
	heartbeatArmed bool // a tHeartbeat timer is queued

	// On demand: the socket name and the listener the emperor holds.
	onDemand string // "" for an ordinary vassal
	odFd     int    // -1 if none
	odToken  uint32 // odFd's registration in the poll set
	scanMark uint32 // the number of the last scan of its monitor that saw its config

	// The stats document's fields, Unix seconds (uWSGI's names and units).
	born, lastMod                       int64 // the config's mtime at admission and at the last change
	firstRun, lastRun, cursed           int64 // spawn times; when it was last asked to stop
	lastLoyal, lastReady, lastAccepting int64
	lastHeartbeat                       int64
	respawns                            int       // reloads (uWSGI counts them as respawns)
	starts                              int       // processes started for this record
	nextRetry                           time.Time // when a throttled vassal starts again
	lastExit, lastReason                string    // how the last process ended; why it was restarted
	exitCode                            int       // last exit code, or -signal
}

// vassalStatus is uWSGI's status of a vassal; SIGUSR1 prints its number.
type vassalStatus uint8

const (
	statusRunning    vassalStatus = iota // running, or waiting to run
	statusCursed                         // asked to stop; killed at its deadline
	statusToOnDemand                     // stopping, to wait for its next client
)

// afterExit is what the loop does once a vassal's process is gone.
type afterExit int

const (
	thenRespawn   afterExit = iota // died on its own: respawn through the blacklist gate
	thenDelete                     // config removed or emperor stopping
	thenRestart                    // config reload of a vassal that cannot reload in place
	thenVoluntary                  // asked to be stopped (byte 22)
	thenIdle                       // on-demand vassal going back to waiting for a client
)

// live returns the records in insertion order, deleted ones compacted
// away. The compaction builds a new slice rather than shifting the old one
// in place: a caller ranging over an earlier result (ragnarok deleting as
// it goes, and deleteVassal looking for zergs in the middle) keeps a stable
// view, in which a record deleted meanwhile has v.deleted set.
func (t *vassalTable) live() []*vassal {
	if t.nDeleted > 0 {
		kept := make([]*vassal, 0, len(t.order)-t.nDeleted)
		for _, v := range t.order {
			if !v.deleted {
				kept = append(kept, v)
			}
		}
		t.order = kept
		t.nDeleted = 0
	}
	return t.order
}

func (e *emperor) addVassal(m *monitor, c candidate, st fileState) {
	if e.cfg.tyrant && (st.uid == 0 || st.gid == 0) {
		// Logged once per change of the file, not on every scan.
		if prev, seen := e.watch.refused[c.name]; !seen || !prev.sameStat(st) {
			logRaw("[emperor-tyrant] invalid permissions for vassal %s", c.name)
			e.watch.refused[c.name] = st
		}
		return
	}
	delete(e.watch.refused, c.name)
	v := &vassal{name: c.name, instance: c.instance, mon: m, path: c.path, file: st, sock: -1, odFd: -1,
		born: st.mtime / 1e9, lastMod: st.mtime / 1e9, uid: st.uid, gid: st.gid}
	v.file.digest = e.digestOf(v, st)
	e.vassals.byName[c.name] = v
	e.vassals.order = append(e.vassals.order, v)
	if v.instance != "" {
		k := fileKey{m, v.configName()}
		e.vassals.byFile[k] = append(e.vassals.byFile[k], v)
	}
	if e.cfg.odExt == "" && e.cfg.odDir == "" && e.cfg.odExec != "" {
		e.resolveOnDemandExec(v)
		return
	}
	e.placeVassal(v, e.onDemandName(v))
}

// placeVassal starts a new record: on-demand ones bind their socket and
// wait for a client, others spawn; both respect the blacklist.
func (e *emperor) placeVassal(v *vassal, sock string) {
	v.onDemand = sock
	if sock != "" && v.firstRun == 0 {
		// uWSGI stamps an instance when it registers it, before any run.
		v.firstRun = time.Now().Unix()
		v.lastRun = v.firstRun
	}
	if wait := e.black.wait(v.name, time.Now()); wait > 0 {
		e.scheduleRespawn(v, wait)
		return
	}
	e.wake(v)
}

// wake starts a vassal whose time has come: an on-demand one goes back to
// watching its socket, any other is spawned.
func (e *emperor) wake(v *vassal) {
	if v.pid != 0 || e.shutdown.dying || v.deleted {
		return
	}
	if v.onDemand == "" {
		e.spawn(v)
		return
	}
	if v.odFd < 0 {
		if err := e.bindOnDemand(v); err != nil {
			logRaw("emperor_add()/bind(): vassal %s: %v", v.name, err)
			e.black.add(v.name, time.Now())
			e.scheduleRespawn(v, e.black.wait(v.name, time.Now()))
			return
		}
		logRaw("[uwsgi-emperor] %s -> \"on demand\" instance detected, waiting for connections on socket \"%s\" ...", v.name, v.onDemand)
	}
	e.armOnDemand(v)
}

// reload asks a running vassal to reload. One that speaks the protocol gets
// byte 1 and reloads in place (a uWSGI master keeps its pid); one that never
// spoke it could not act on the byte, so it is restarted instead.
func (e *emperor) reload(v *vassal, reason string) {
	if e.shutdown.dying {
		return
	}
	v.lastReason = reason
	if v.pid == 0 && v.onDemand != "" {
		// Idle on-demand: the next client gets the new config anyway.
		v.ready, v.accept = false, false
		logVerbose("[emperor] updated configuration for \"on demand\" instance %s", v.name)
		return
	}
	if v.pid == 0 {
		// A config edit is the operator's kick for a throttled vassal.
		e.spawn(v)
		return
	}
	if v.status != statusRunning {
		return
	}
	if !e.sendByte(v, 1) {
		// The vassal could be dead already (uWSGI curses it here): a
		// restart gets the new config running either way.
		e.stop(v, thenRestart)
		return
	}
	v.respawns++
	v.lastRun = time.Now().Unix()
	v.ready, v.accept = false, false
	logVerbose("[emperor] reload the uwsgi instance %s", v.name)
	if !v.spoke {
		// It may not know the protocol at all (nginx, a plain binary):
		// whether it took the byte decides, after a grace.
		e.timers.push(timerItem{at: time.Now().Add(e.cfg.reloadGrace), kind: tReloadCheck, v: v, gen: v.gen})
	}
}

// reloadCheckDue decides for a vassal that has never spoken the protocol
// and was sent the reload byte a grace ago. Still unread on our end of
// the socketpair (SIOCOUTQ), it never will be: the vassal does not read
// its emperor fd, and is restarted instead. Read, the vassal is left to
// reload itself, exactly as uWSGI leaves every vassal.
func (e *emperor) reloadCheckDue(v *vassal) {
	if v.pid == 0 || v.status != statusRunning || v.sock < 0 || v.spoke {
		return
	}
	unread, err := unreadBytes(v.sock)
	switch {
	case err != nil:
		logVerbose("[emperor] vassal %s: cannot tell whether it read its reload byte (%v): restarting it", v.name, err)
	case unread > 0:
		logVerbose("[emperor] vassal %s did not read its reload byte in %v: restarting it", v.name, e.cfg.reloadGrace)
	default:
		logVerbose("[emperor] vassal %s read its reload byte: it reloads itself", v.name)
		return
	}
	e.stop(v, thenRestart)
}

// stop asks the vassal to exit: the stop byte, and SIGTERM to its process
// group when it never spoke the protocol (it cannot have understood the
// byte). Whatever is left at the deadline is killed with its whole tree.
func (e *emperor) stop(v *vassal, then afterExit) {
	trace("stop", v.name)
	if v.pid == 0 {
		if then == thenDelete {
			e.deleteVassal(v)
		}
		return
	}
	if then == thenDelete || v.status == statusRunning {
		v.then = then
	}
	if v.status != statusRunning {
		return
	}
	code := byte(0)
	if e.cfg.gracefulShutdown {
		code = 2
	}
	e.sendByte(v, code)
	if !v.spoke {
		sig := syscall.SIGTERM
		if v.companion != nil && v.companion.stopSig != 0 {
			sig = v.companion.stopSig
		}
		signalTree(v.pid, sig)
	}
	status := statusCursed
	if then == thenIdle {
		status = statusToOnDemand
	} else if then != thenRestart {
		logVerbose("[emperor] stop the uwsgi instance %s", v.shownName())
	}
	grace := e.cfg.curseTolerance
	if e.shutdown.dying {
		grace = e.cfg.reloadMercy
	}
	e.curse(v, status, grace)
}

// curse marks v as stopping (uWSGI's curse) and arms its deadline:
// whatever of it is left after grace is killed with its whole tree.
func (e *emperor) curse(v *vassal, status vassalStatus, grace time.Duration) {
	v.status, v.cursed = status, time.Now().Unix()
	if !e.shutdown.dying {
		e.armKill(v, grace) // at shutdown, reload-mercy's end kills what is left
	}
}

func (e *emperor) armKill(v *vassal, after time.Duration) {
	e.timers.push(timerItem{at: time.Now().Add(after), kind: tKill, v: v, gen: v.gen})
}

// killDue: a stopping vassal overstayed its deadline. Its tree is killed,
// again every curse-tolerance until it is gone (a process in D state may
// take a while).
func (e *emperor) killDue(v *vassal) {
	if v.pid > 0 {
		logVerbose("[emperor] vassal %s (pid: %d) did not stop in time, killing it", v.name, v.pid)
		signalTree(v.pid, syscall.SIGKILL)
		e.armKill(v, e.cfg.curseTolerance)
	}
}

func (e *emperor) sendByte(v *vassal, b byte) bool {
	if v.sock < 0 {
		return false
	}
	_, err := syscall.Write(v.sock, []byte{b})
	if err != nil && err != syscall.EAGAIN {
		logVerbose("[emperor] vassal %s: write of byte %d: %v", v.name, b, err)
		return false
	}
	return err == nil
}

func (e *emperor) closeSock(v *vassal) {
	if v.sock < 0 {
		return
	}
	e.poll.watcher.remove(v.sock)
	delete(e.vassals.byFd, v.sock)
	syscall.Close(v.sock)
	v.sock = -1
}

func (e *emperor) deleteVassal(v *vassal) {
	if v.deleted {
		return
	}
	e.closeSock(v)
	e.closeOnDemand(v)
	v.deleted = true
	v.gen++
	e.vassals.nDeleted++
	delete(e.vassals.byName, v.name)
	e.strays.cg.ended(v, true)
	if v.instance != "" {
		k := fileKey{v.mon, v.configName()}
		rs := e.vassals.byFile[k]
		if i := slices.Index(rs, v); i >= 0 {
			copy(rs[i:], rs[i+1:])
			rs[len(rs)-1] = nil // no hold on the record
			e.vassals.byFile[k] = rs[:len(rs)-1]
		}
		if len(e.vassals.byFile[k]) == 0 {
			delete(e.vassals.byFile, k)
		}
	}
	if !v.hookRan {
		e.runStopHook(v)
	}
	logVerbose("[emperor] removed uwsgi instance %s", v.shownName())
	if v.zergOf != nil {
		e.vassals.zergs--
	}
	for _, z := range e.vassals.live() {
		if z.zergOf == v && !z.deleted {
			e.stop(z, thenDelete) // a zerg goes with its vassal's config
		}
	}
	if !v.loyal && !e.cfg.noBlacklist && !e.shutdown.dying && v.firstRun != 0 {
		e.black.add(v.name, time.Now())
	}
	if !e.shutdown.dying {
		e.recheck(v)
	}
}

// recheck looks again, after the debounce, at the name a record just gave
// up, in every monitor that may list it: another monitor may list the same
// name, or the config came back while the old process was stopping. Only
// the name: a full rescan per removal would make a mass removal quadratic.
func (e *emperor) recheck(v *vassal) {
	for _, m := range e.watch.monitors {
		if m.glob {
			if e.globHint(m, v.path) {
				e.scheduleRescan(m)
			}
			continue
		}
		if name := filepath.Base(v.configName()); e.cfg.validName(name) {
			e.markDirty(m, name)
			e.scheduleRescan(m)
		}
	}
	e.recheckLinked(v.path)
}

// spawnFailed treats a failed start like a crash, so a missing binary or a
// full process table is retried with the blacklist's growing delay instead
// of in a tight loop.
func (e *emperor) spawnFailed(v *vassal, err error) {
	logVerbose("[emperor] cannot spawn vassal %s: %v", v.name, err)
	v.lastExit = "spawn failed: " + err.Error()
	e.black.add(v.name, time.Now())
	e.scheduleRespawn(v, e.black.wait(v.name, time.Now()))
}

func (e *emperor) scheduleRespawn(v *vassal, wait time.Duration) {
	v.gen++
	v.nextRetry = time.Now().Add(wait)
	e.timers.push(timerItem{at: v.nextRetry, kind: tRespawn, v: v, gen: v.gen})
}

// ==== Spawning ==========================================================

// spawnBatch is the loop's side of starting processes. Invariants: batch
// is nil outside spawning(); inside, sent <= len(batch) jobs went to the
// pool and finished <= sent came back; a job's vassal has spawnPending set
// until finishSpawn.
type spawnBatch struct {
	_        noCompare
	batch    []*spawnJob   // spawns collected by spawning()
	sent     int           // how many of batch the spawner threads took
	finished int           // how many of those they finished
	pool     *spawnerPool  // the spawner threads (pool.n == 0: the loop forks itself)
	waited   time.Duration // time the loop spent waiting for spawners
	devnull  *os.File      // stdin of every vassal but on-demand ones
	baseEnv  []string      // the environment every vassal starts from
}

// spawn starts the vassal's process with the protocol socket on fd 3,
// /dev/null on stdin and the emperor's stdout/stderr, in the config's
// directory, in a process group of its own. Within spawning() the fork is
// handed to a spawner thread at once and recorded when the batch ends;
// outside, it is a batch of one.
func (e *emperor) spawn(v *vassal) {
	if v.spawnPending {
		return // already collected in this batch
	}
	if e.spawns.batch == nil {
		e.spawning(func() { e.spawn(v) })
		return
	}
	e.mem.burst()
	job := e.prepareSpawn(v)
	if job == nil {
		return
	}
	e.spawns.batch = append(e.spawns.batch, job)
	e.feedSpawners(false)
	// Preparing is faster than forking: past a short queue, wait for the
	// spawners rather than hold every prepared plan of a storm at once.
	for len(e.spawns.batch)-e.spawns.sent > maxQueuedSpawns && e.spawns.pool.n > 0 {
		e.feedSpawner()
	}
}

// maxQueuedSpawns is how many prepared spawns may wait for a spawner
// thread: enough to keep every spawner busy, few enough that a storm of
// 10,000 configs does not hold 10,000 exec plans in memory.
const maxQueuedSpawns = 64

// spawnJob is one prepared fork+exec. The fork itself runs on a spawner
// thread; everything before and after happens on the loop.
type spawnJob struct {
	_            noCompare
	v            *vassal
	plan         *execPlan
	direct       bool                // plan.direct, kept after the plan is dropped
	cred         *syscall.Credential // plan's, the same: a direct spawn's uid/gid drop
	stdin        int
	ours, theirs int
	cgroup       cgroupPlan
	cgroupErr    error // the cgroup could not be opened: the vassal runs without
	pid          int
	err          error
}

// run forks and execs the job from the given fd table, into which the
// vassal's stdin and protocol socket are borrowed for the fork only. On a
// spawner thread, spare is its ready-made v1 memory cgroup and in1 the v1
// memory cgroup the thread is in ("": its home), which run moves it to for
// the fork and leaves it in (nil: not on one, and so not in a cgroup of
// its own).
func (j *spawnJob) run(ft *forkTable, spare, in1 *string) {
	trace("spawner", j.v.name)
	stdin, err := ft.borrow(j.stdin)
	if err != nil {
		j.err = fmt.Errorf("pidfd_getfd: %w", err)
		return
	}
	defer ft.giveBack(stdin)
	theirs, err := ft.borrow(j.theirs)
	if err != nil {
		j.err = fmt.Errorf("pidfd_getfd: %w", err)
		return
	}
	defer ft.giveBack(theirs)
	attr := &syscall.ProcAttr{
		Dir: j.plan.dir, Env: j.plan.env, Sys: j.plan.attr,
		Files: []uintptr{uintptr(stdin), 1, 2, uintptr(theirs)},
	}
	// The v1 memory cgroup first: what making the v2 ones costs the
	// kernel is charged to this vassal, not to the last one's.
	if m := j.cgroup.mem1; m != "" && spare != nil {
		if enterCgroup1(m, spare) == nil {
			*in1 = m
		} else if *in1 != "" && joinCgroup1(j.cgroup.home1) == nil {
			*in1 = "" // not left in the last vassal's for this one's fork
		}
	}
	// The vassal starts in its cgroup (clone3 with CLONE_INTO_CGROUP):
	// there before it runs a single instruction, so nothing it forks can
	// escape, and no later step can forget to move it.
	cg, err := j.cgroup.open()
	if j.cgroupErr = err; cg >= 0 {
		intoCgroup(j.plan.attr, cg)
		defer syscall.Close(cg)
	}
	trace("clone", j.v.name)
	j.pid, j.err = syscall.ForkExec(j.plan.path, j.plan.argv, attr)
	if j.err != nil {
		j.err = fmt.Errorf("exec %s: %w", j.plan.path, j.err)
	}
	j.plan = nil // not needed after the fork; a storm should not keep it
}

func (e *emperor) prepareSpawn(v *vassal) *spawnJob {
	trace("prepare", v.name)
	ours, theirs, err := protocolSocketpair()
	if err != nil {
		e.spawnFailed(v, fmt.Errorf("socketpair: %w", err))
		return nil
	}
	plan, err := e.execPlan(v)
	if err != nil {
		syscall.Close(ours)
		syscall.Close(theirs)
		e.spawnFailed(v, err)
		return nil
	}
	v.spawnPending = true
	trace("planned", v.name)
	return &spawnJob{v: v, plan: plan, direct: plan.direct, cred: plan.attr.Credential, stdin: e.stdinFor(v), ours: ours, theirs: theirs, cgroup: e.strays.cg.planFor(v)}
}

// finishSpawn records a started vassal, or the failure.
func (e *emperor) finishSpawn(j *spawnJob) {
	v, ours, pid := j.v, j.ours, j.pid
	v.spawnPending = false
	syscall.Close(j.theirs)
	if j.cgroupErr != nil {
		// The planned cgroup stays on record (its end finds nothing to
		// read, counts it as used and passes it by): forgotten, the next
		// process would count as the vassal's first and start in its own
		// cgroup, which a cgroup.kill may have left killing every child.
		logRaw("[emperor] vassal %s: cgroup: %v", v.name, j.cgroupErr)
	}
	if j.err != nil && j.direct {
		// The program could not be exec'd directly (a script without #!,
		// say, which sh runs as a shell script): the runner does it the
		// shell's way, at once and from now on.
		syscall.Close(ours)
		v.noDirect = true
		e.spawn(v)
		return
	}
	if j.err != nil {
		syscall.Close(ours)
		e.spawnFailed(v, j.err)
		return
	}
	_ = syscall.SetNonblock(ours, true)
	v.token = e.poll.token()
	v.sock, v.pid = ours, pid
	v.gen++
	v.status, v.then, v.cursed = statusRunning, thenRespawn, 0
	v.spoke, v.loyal, v.ready, v.accept, v.heartbeatArmed = false, false, false, false, false
	v.flood = floodMeter{}
	v.lastHeartbeat, v.nextRetry = 0, time.Time{}
	now := time.Now().Unix()
	if v.firstRun == 0 {
		v.firstRun = now
	}
	v.lastRun = now
	e.vassals.byPid[pid] = v
	e.vassals.byFd[ours] = v
	v.starts++
	select {
	case e.in.spawned <- struct{}{}:
	default: // the reaper has a hint already
	}
	if err := e.poll.watcher.add(ours, v.token); err != nil {
		logVerbose("[emperor] vassal %s: %v", v.name, err)
	}
	if e.cfg.daemon.limitAS > 0 {
		// uWSGI's limit-as binds the whole instance; here it binds the
		// vassals, whose limit it is meant to be (the emperor's runtime
		// reserves address space it never uses).
		if err := setAddressSpaceLimit(pid, e.cfg.daemon.limitAS); err != nil {
			logVerbose("[emperor] vassal %s: limit-as: %v", v.name, err)
		}
	}
	trace("forked", v.name)
	logVerbose("[emperor] vassal %s started (pid: %d)", v.name, pid)
	if c := j.cred; j.direct && c != nil {
		// The drop the runner would have logged, made by the fork.
		groups := make([]int, len(c.Groups))
		for i, g := range c.Groups {
			groups[i] = int(g)
		}
		sort.Ints(groups)
		logDropTo(int(c.Uid), int(c.Gid), groups)
	}
	v.hookRan = false
	e.startAsEmperor(v)
	e.markStatusDirty()
}

// spawning collects the spawns f asks for. Each fork+exec goes to a spawner
// thread as soon as it is prepared, so the loop reads and parses the next
// config while earlier ones fork on every core. Exits of the new children
// cannot be handled before they are recorded: the loop is here until all
// are. Nested calls join the outer batch.
func (e *emperor) spawning(f func()) {
	if e.spawns.batch != nil {
		f()
		return
	}
	e.spawns.batch, e.spawns.sent, e.spawns.finished = []*spawnJob{}, 0, 0
	f()
	if e.spawns.pool.n == 0 {
		for _, j := range e.spawns.batch {
			j.run(sharedForkTable, nil, nil)
		}
	} else {
		e.feedSpawners(true)
	}
	jobs := e.spawns.batch
	e.spawns.batch = nil
	for _, j := range jobs {
		e.finishSpawn(j)
	}
	e.spawned(len(jobs))
}

// memoryState keeps an idle emperor's heap close to what its records
// need. A burst of spawns (configs read and parsed, exec plans,
// environments) grows the Go heap several times over that; the runtime
// keeps freed pages for reuse and gives them back only slowly, and between
// bursts the garbage of periodic scans would grow the heap to the
// collector's floor (4 MB at the default GOGC) before a collection. So a
// burst runs with the collector at its default pace, and once no spawn has
// come for memSettle the collector goes to idleGCPercent and, after a real
// burst, the garbage is collected, every free page returned at once, and
// the program's own pages the burst mapped are unmapped (releaseImagePages).
// Every later collection while idle maps most of the read-only data back
// (stack scans read the function tables, marking reads type data), and so
// does every safety-net scan, so after each of them those pages are
// unmapped again.
type memoryState struct {
	_         noCompare
	lastSpawn time.Time   // when the last batch of spawns ended
	spawns    int         // processes started since the last release
	due       bool        // a tReleaseMemory timer is queued
	idle      bool        // the collector runs at idleGCPercent
	burstGC   int         // the GC percent for bursts (GOGC's); 0: GOGC is the operator's, left alone
	quiet     atomic.Bool // no spawn for memSettle: a collection is followed by a release
}

const (
	// memSettle is how long spawning must pause before memory is given
	// back: far longer than the gaps within a storm, short next to how long
	// an emperor then idles.
	memSettle = time.Second
	// idleGCPercent lets an idle heap grow by a quarter before a
	// collection, which with 1,000 vassals costs under a millisecond.
	idleGCPercent = 25
	// releaseAfter is how many spawns make a burst worth a forced
	// collection; after fewer, the idle pace reclaims what they left.
	releaseAfter = 16
)

// startMemory sets the idle pace, unless GOGC says otherwise.
func (m *memoryState) startMemory() {
	if os.Getenv("GOGC") == "" {
		m.burstGC, m.idle = debug.SetGCPercent(idleGCPercent), true
	}
	m.quiet.Store(true)
	afterEachGC(func() {
		if m.quiet.Load() {
			releaseImagePages()
		}
	})
}

// afterEachGC runs f after every collection, on the runtime's finalizer
// goroutine: a sentinel nothing references is found unreachable by each
// cycle, and its finalizer arms itself again.
func afterEachGC(f func()) {
	runtime.SetFinalizer(&gcSentinel{f}, gcFired)
}

type gcSentinel struct{ f func() }

func gcFired(s *gcSentinel) {
	s.f()
	runtime.SetFinalizer(s, gcFired)
}

// burst puts the collector at its burst pace before a spawn is prepared.
func (m *memoryState) burst() {
	m.quiet.Store(false)
	if m.idle {
		debug.SetGCPercent(m.burstGC)
		m.idle = false
	}
}

// spawned ends a batch of n spawns: the release comes memSettle later.
func (e *emperor) spawned(n int) {
	if n > 0 {
		e.mem.lastSpawn = time.Now()
		e.mem.spawns += n
	}
	switch {
	case e.mem.due:
	case n > 0:
		e.mem.due = true
		e.timers.push(timerItem{at: e.mem.lastSpawn.Add(memSettle), kind: tReleaseMemory})
	default:
		e.mem.settle() // nothing came of it
	}
}

func (e *emperor) releaseMemoryDue(timerItem) {
	if settled := e.mem.lastSpawn.Add(memSettle); time.Now().Before(settled) {
		e.timers.push(timerItem{at: settled, kind: tReleaseMemory}) // still spawning
		return
	}
	e.mem.due = false
	e.mem.settle()
	if e.mem.spawns >= releaseAfter {
		// Off the loop: the collection takes milliseconds with 10,000
		// vassals, and the loop need not wait. The goroutine ends with it.
		go func() {
			debug.FreeOSMemory()
			releaseImagePages()
			trace("released", "memory")
		}()
	}
	e.mem.spawns = 0
}

// settle puts the collector back at its idle pace.
func (m *memoryState) settle() {
	m.quiet.Store(true)
	if m.burstGC != 0 && !m.idle {
		debug.SetGCPercent(idleGCPercent)
		m.idle = true
	}
}

// feedSpawners hands collected jobs to the spawner threads and counts the
// finished ones: without waiting (while f is still collecting), or until
// every job is done.
func (e *emperor) feedSpawners(wait bool) {
	if e.spawns.pool.n == 0 {
		return
	}
	for e.spawns.finished < len(e.spawns.batch) {
		if wait {
			e.feedSpawner()
		} else if !e.trySpawnerStep() {
			return
		}
	}
}

// spawnerStep returns the next job to hand over and where to, or a nil
// channel once all are handed over. feedSpawner then waits for one step (a
// hand-over or a finished job), trySpawnerStep takes one only if ready.
func (e *emperor) spawnerStep() (chan<- *spawnJob, *spawnJob) {
	if e.spawns.sent < len(e.spawns.batch) {
		return e.spawns.pool.jobs, e.spawns.batch[e.spawns.sent]
	}
	return nil, nil // a nil channel: only finished jobs can come
}

func (e *emperor) feedSpawner() {
	jobs, next := e.spawnerStep()
	defer func(t0 time.Time) { e.spawns.waited += time.Since(t0) }(time.Now())
	select {
	case jobs <- next:
		e.spawns.sent++
	case <-e.spawns.pool.done:
		e.spawns.finished++
	}
}

func (e *emperor) trySpawnerStep() bool {
	jobs, next := e.spawnerStep()
	select {
	case jobs <- next:
		e.spawns.sent++
	case <-e.spawns.pool.done:
		e.spawns.finished++
	default:
		return false
	}
	return true
}

// maxSpawners bounds the spawner threads: past a few, forks serialise on
// the kernel's process-table lock anyway.
const maxSpawners = 4

// spareThreads is how many goroutines block at once at start, so that the
// runtime holds idle OS threads beyond its usual few (measured here: 16
// threads instead of 12). It makes one whenever a goroutine blocks in a
// system call while others want to run, and dies (fatal error: newosproc)
// if it cannot, which under a pids limit full of vassals would take every
// vassal with it; threads it made once it keeps and reuses.
const spareThreads = 8

// spawnerPool is the handle the spawner threads hold: they run off the
// loop and see nothing of the emperor but a job in and a token out. A job
// is owned by its thread from the hand-over until the token comes back.
type spawnerPool struct {
	jobs chan *spawnJob // the loop hands a job over
	done chan struct{}  // a spawner finished one
	n    int            // threads running; read by the loop only, set before any job
}

// startSpawnerPool starts one spawner thread per CPU (at most
// maxSpawners), each with an fd table of its own (see forkTable). They are
// locked to their OS threads and never return, so each thread lives as long
// as the emperor: PDEATHSIG is tied to the forking thread (golang/go#27505).
func startSpawnerPool() *spawnerPool {
	n := min(max(runtime.NumCPU(), 1), runtime.GOMAXPROCS(0), maxSpawners)
	p := &spawnerPool{jobs: make(chan *spawnJob, n), done: make(chan struct{}, n)}
	ready := make(chan spawnerState)
	for i := 0; i < n; i++ {
		go p.spawner(i, ready)
	}
	shared, gone := 0, 0
	var why error
	for i := 0; i < n; i++ {
		st := <-ready
		if st.running {
			p.n++
		}
		if st.err == nil {
			continue
		}
		why = st.err
		if st.running {
			shared++
		} else {
			gone++
		}
	}
	if shared > 0 {
		logRaw("[emperor] %d of %d spawner threads fork from the shared fd table (%v): each spawn copies every open fd, slower with many vassals", shared, n, why)
	}
	if gone > 0 {
		logRaw("[emperor] %d of %d spawner threads could not start (%v)", gone, n, why)
	}
	return p
}

type spawnerState struct {
	_       noCompare
	running bool
	err     error // why the thread has no private fd table
}

// spawner is spawner thread id: off the loop, for the emperor's lifetime.
func (p *spawnerPool) spawner(id int, ready chan<- spawnerState) {
	runtime.LockOSThread()
	clearSpawnThreadSigmask()
	ft, err := privateForkTable()
	ready <- spawnerState{running: ft != nil, err: err}
	if ft == nil {
		return // the thread goes, with its half-made table
	}
	spare := "" // a v1 memory cgroup made ready for the next new vassal
	in1 := ""   // the v1 memory cgroup the thread is in; "": its home
	var next *spawnJob
	for {
		j := next
		if j == nil {
			var ok bool
			if j, ok = <-p.jobs; !ok {
				return
			}
		}
		next = nil
		mem1, home1 := j.cgroup.mem1, j.cgroup.home1 // the job is the loop's again once done is sent
		j.run(ft, &spare, &in1)
		p.done <- struct{}{}
		select {
		case next = <-p.jobs:
		default:
		}
		if in1 != "" && (next == nil || next.cgroup.mem1 == "") {
			// Home again while idle, so that no vassal's memory cgroup
			// holds an emperor thread; in a burst the thread moves
			// straight on to the next vassal's (one move, not two).
			if err := joinCgroup1(home1); err != nil {
				logRaw("[emperor] spawner thread left in %s: %v", in1, err)
			}
			in1 = ""
		}
		if mem1 != "" && spare == "" && next == nil {
			// Made now, after the hand-back, when no job waits: the next
			// new vassal's spawn only renames it. (With one waiting, as
			// in a burst, it would be made on that job's way all the same,
			// and renamed besides.)
			dir := filepath.Join(filepath.Dir(mem1), "spare."+itoa(id))
			if syscall.Mkdir(dir, 0o755) == nil {
				spare = dir
			}
		}
	}
}

// spawnSpec is what the platform layer needs to start a vassal.
type spawnSpec struct {
	cloneFlags uintptr
}

// vassalArgv is uWSGI's argv: BINARY [before...] --ini NAME [after...].
func (e *emperor) vassalArgv(v *vassal) []string {
	argv := make([]string, 0, 3+len(e.cfg.before)+len(e.cfg.after))
	argv = append(argv, e.cfg.argv0)
	argv = append(argv, e.cfg.before...)
	if v.zergOf != nil {
		// The [zerg] section of the same file: every config format reads
		// FILE:SECTION so.
		argv = append(argv, e.cfg.configFlag(v.zergOf.name), v.zergOf.name+":zerg")
	} else if v.instance != "" {
		argv = append(argv, "--set", "instance="+v.instance, e.cfg.configFlag(v.configName()), v.name)
	} else {
		argv = append(argv, e.cfg.configFlag(v.name), e.magicConfig(v))
	}
	return append(argv, e.cfg.after...)
}

// execPlan decides how the vassal is exec'd: directly, with the tyrant's
// credentials applied by fork, or through the emperor's own pre-exec stage
// when something must happen between fork and exec that fork cannot do.
func (e *emperor) execPlan(v *vassal) (*execPlan, error) {
	env := append(append([]string{e.strays.marker(v)}, e.spawns.baseEnv...), "UWSGI_EMPEROR_FD=3")
	if v.zergOf != nil {
		env = append(env, "UWSGI_BROODLORD_NUM="+itoa(v.zergNum))
	}
	attr, err := platformSysProcAttr(&spawnSpec{cloneFlags: e.cfg.cloneFlags})
	if err != nil {
		return nil, err
	}
	if v.companion != nil {
		return e.companionPlan(v, env, attr)
	}
	plan := &execPlan{path: e.cfg.binary, argv: e.vassalArgv(v), dir: e.cfg.spawnDir(v), env: env, attr: attr}
	if e.directRunner() && !v.noDirect {
		if direct := e.directPlan(plan); direct != nil {
			return direct, nil
		}
	}
	uid, gid := os.Getuid(), os.Getgid()
	if e.cfg.tyrant {
		uid, gid = int(v.uid), int(v.gid)
		logRaw("[emperor-tyrant] dropping privileges to %d %d for instance %s", uid, gid, v.name)
	}
	inUserNS := userNSMappings(attr, uid, gid)
	if shimNeeded(e.cfg) {
		spec := shimSpec{Exec: e.cfg.binary, Caps: e.cfg.vassalCaps, UID: -1, GID: -1, Private: e.cfg.cloneFlags != 0}
		if e.cfg.tyrant {
			spec.UID, spec.GID = uid, gid
		}
		e.preExecSpec(&spec, v)
		plan.path, plan.env = e.cfg.self, append(env, shimEnv+"="+spec.String())
		return plan, nil
	}
	if e.cfg.tyrant && !inUserNS {
		attr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
	}
	return plan, nil
}

// execPlan is how one vassal process is started.
type execPlan struct {
	_      noCompare
	path   string
	argv   []string
	dir    string
	env    []string
	attr   *syscall.SysProcAttr
	direct bool // the vassal's program itself, without the runner (directPlan)
}

// stdinFor: an on-demand vassal gets its listening socket as fd 0 (a uWSGI
// vassal serves an inherited socket on fd 0 by itself); others /dev/null.
func (e *emperor) stdinFor(v *vassal) int {
	if v.odFd >= 0 {
		e.disarmOnDemand(v)
		return v.odFd
	}
	return int(e.spawns.devnull.Fd())
}

// spawnDir is the vassal's working directory: its config's directory for
// dir:// monitors, the emperor's start directory for globs (whose names
// are relative to it), as in uWSGI.
func (c *emperorConfig) spawnDir(v *vassal) string { return v.mon.dir }

// ==== Direct exec: the runner's work done at fork time ==================

// directRunner says whether vassals may skip the runner: the vassal program
// is this binary, and nothing needs the runner's own process (tyrant
// credentials, namespaces and capabilities keep their proven paths).
func (e *emperor) directRunner() bool {
	return e.cfg.binary == e.cfg.self && e.cfg.argv0 == e.cfg.binary && !e.cfg.tyrant &&
		e.cfg.cloneFlags == 0 && e.cfg.vassalCaps == 0 && !e.cfg.hooks.preExec()
}

// runnerOnly are config keys only the runner's own process can carry out.
func runnerOnly(key string) bool {
	for _, p := range []string{"hook-", "exec-", "mount-", "umount-", "call-"} {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	switch key {
	case "unshare", "chroot", "show-config", "strict", "cgroup", "cgroup-opt", "umask", "unenv":
		return true
	}
	return false
}

// directPlan does the runner's work at fork time for a config that only
// sets env, chdir, uid/gid and a binary patch: parse it in the emperor and
// exec the program directly, one process start less per spawn (the runner
// is a Go program: ~0.5 ms). Anything else, including a config that does
// not parse, returns nil and goes through the runner, which reports errors
// with file and line. Configs that could run commands while being parsed
// (exec://, @(), includes) never take this path.
func (e *emperor) directPlan(base *execPlan) *execPlan {
	name := base.argv[len(base.argv)-len(e.cfg.after)-1]
	if !filepath.IsAbs(name) {
		name = filepath.Join(base.dir, name)
	}
	raw := e.watch.lastRead.data // read by the look at it that starts this spawn
	if e.watch.lastRead.path != name || raw == nil {
		var err error
		if raw, err = readRegularFile(name, maxDigestSize); err != nil {
			return nil // the runner reads it and says what is wrong
		}
	}
	for _, risky := range []string{"exec://", "@(", "include", "inherit", "config"} {
		if strings.Contains(string(raw), risky) {
			return nil
		}
	}
	args := configAsINI(base.argv[1:])
	penv := withoutEnv(base.env, uwsgiBinaryEnv) // what the program itself gets
	spec := optionParseSpec(base.env, base.dir, e.cfg.self)
	spec.OneFile, spec.First = true, raw
	opts, err := ParseArgs(args, spec)
	if err != nil {
		return nil
	}
	for _, o := range opts.List {
		if runnerOnly(o.Key) {
			return nil
		}
	}
	env := withEnv(penv, opts.All("env"))
	dir := base.dir
	if d, ok := opts.Last("chdir"); ok && d != "" {
		if !filepath.IsAbs(d) {
			d = filepath.Join(dir, d)
		}
		dir = d
	}
	cmd, privileged := patchFirst(opts, args)
	if cmd == nil {
		// An app server's config: what the runner would exec, at once.
		bin, err := findUWSGI(base.env)
		if err != nil {
			return nil // the runner says why
		}
		return &execPlan{path: bin, argv: append([]string{bin}, base.argv[1:]...), dir: base.dir, env: penv, attr: base.attr, direct: true}
	}
	if cmd.shell && cmd.direct == nil {
		return nil // a shell line: the runner execs /bin/sh itself
	}
	for _, key := range runnerSetupKeys {
		if opts.Has(key) {
			return nil // what the runner does before the program runs
		}
	}
	paths := cmd.candidates(env, dir)
	if len(paths) == 0 {
		return nil // the runner reports it, as sh or execvp would
	}
	argv, env := cmd.argvEnv(env, dir)
	attr := *base.attr
	if !privileged && (opts.Has("uid") || opts.Has("gid")) {
		if os.Getuid() != 0 {
			return nil
		}
		cred, err := credentialFor(opts)
		if err != nil {
			return nil
		}
		attr.Credential = cred
	}
	return &execPlan{path: paths[0], argv: argv, dir: dir, env: env, attr: &attr, direct: true}
}

// patchFirst picks the patch the runner would exec first: a privileged
// one (before the uid/gid drop), else an unprivileged one.
func patchFirst(opts *Options, args []string) (*command, bool) {
	for _, key := range []string{"privileged-binary-patch", "unprivileged-binary-patch"} {
		if cmd := patchCommand(opts, key, args); cmd != nil {
			return cmd, key == "privileged-binary-patch"
		}
	}
	return nil, false
}

// patchCommand is a binary patch: KEY (a program, given the runner's own
// arguments, as uWSGI passes its argv on) or KEY-arg (a command line); nil
// when the config sets neither.
func patchCommand(opts *Options, key string, args []string) *command {
	if prog, ok := opts.Last(key); ok && prog != "" {
		return &command{argv: append([]string{prog}, args...)}
	}
	if line, ok := opts.Last(key + "-arg"); ok {
		// Empty too: uWSGI runs /bin/sh -c "", which exits at once.
		cmd := shellCommand(line)
		if opts.Has("binsh") {
			cmd.direct = nil // what another shell would exec is not dash's to prove
		}
		return cmd
	}
	return nil
}

// withEnv returns env with the KEY=VALUE settings of a config's env
// options applied in order, as the runner applies them.
func withEnv(env []string, sets []string) []string {
	out := append([]string(nil), env...)
	for _, kv := range sets {
		k, _, ok := strings.Cut(kv, "=")
		if !ok {
			// "env = NAME" is uWSGI's putenv("NAME"), which glibc takes
			// for an unset.
			out = slices.DeleteFunc(out, func(e string) bool { return strings.HasPrefix(e, k+"=") })
			continue
		}
		replaced := false
		for i, old := range out {
			if strings.HasPrefix(old, k+"=") {
				out[i], replaced = kv, true
			}
		}
		if !replaced {
			out = append(out, kv)
		}
	}
	return out
}

// credentialFor resolves the config's uid/gid the way dropPrivileges does.
func credentialFor(opts *Options) (*syscall.Credential, error) {
	uidStr, _ := opts.Last("uid")
	gidStr, hasGID := opts.Last("gid")
	uid, gid := os.Getuid(), os.Getgid()
	var u *account
	var err error
	if uidStr != "" {
		if u, uid, err = lookupUser(uidStr); err != nil {
			return nil, err
		}
		if u != nil && !hasGID {
			gid = u.gid
		}
	}
	if hasGID && gidStr != "" {
		if gid, err = lookupGroup(gidStr); err != nil {
			return nil, err
		}
	}
	// Supplementary groups as uWSGI sets them with a gid: the add-gid
	// list alone, else none for no-initgroups or without a uid, else the
	// user's (initgroups).
	var groups []uint32
	switch adds := opts.All("add-gid"); {
	case len(adds) > 0 && hasGID:
		for _, g := range adds {
			n, err := lookupGroup(g)
			if err != nil {
				return nil, fmt.Errorf("add-gid: %w", err)
			}
			groups = append(groups, uint32(n))
		}
	case hasGID && (uidStr == "" || opts.Flag("no-initgroups")):
	default:
		groups = []uint32{uint32(gid)}
		if u != nil {
			for _, n := range append(groupsOf(u.name), u.gid) {
				if n != gid && !slices.Contains(groups, uint32(n)) {
					groups = append(groups, uint32(n))
				}
			}
		}
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: groups}, nil
}

// ==== Exits, respawns and strays ========================================

// strayState tells the emperor's own helper children from vassals' strays:
// every child that is neither a vassal nor a helper is a stray. A stray is
// killed only when it is shown to descend from a vassal that ended: a
// daemon that a live vassal double-forked lands on the emperor too, and
// must live as long as its vassal.
type strayState struct {
	helpers  map[int]string // the emperor's own children (hooks, on-demand-exec), with what to log of their exit
	sweepDue bool           // a sweep is queued
	sources  string         // the hash of the watched sources: the same for every emperor run on them
	identity string         // this emperor in vassal markers: SOURCES.PID.START
	endedPid map[int]bool   // pids of the vassals that ended since the last sweep: their process groups (and sessions, if they made one)
	leftOnce map[int]bool   // strays nobody could be shown to own, logged once
	cg       cgroupTrack    // the vassals' cgroups, where the emperor can make them
}

// vassalMarkerEnv is set in every vassal's environment to IDENTITY/NAME:
// the emperor (a hash of its watched sources, its pid and its start time in
// clock ticks since boot) and the vassal. Fork keeps the environment and
// most programs exec with the one they have, so a stray re-parented to the
// emperor, or a process a SIGKILLed emperor left behind, still says whose
// it is. The marker comes first in the environment, so that the bounded
// read of /proc/PID/environ finds it.
const vassalMarkerEnv = "EMPEROR_VASSAL"

// markerReadLimit bounds the read of a stray's environment, which its
// process controls.
const markerReadLimit = 64 << 10

// cgroupTrack is the cgroup v2 side of tracking: where the emperor can
// make cgroups below its own, each vassal runs in one of its own, started
// there by clone3, so its whole tree, daemons that left its session
// included, is known to the kernel and dies with one write to cgroup.kill.
type cgroupTrack struct {
	dir     string            // emperor.IDENTITY below the emperor's own cgroup; "": the marker alone
	byName  map[string]string // vassal -> its running instance's cgroup below dir, v.NAME/N (N: its starts before it)
	idle    map[string]bool   // vassals whose last instance's cgroup emptied by itself: their next one starts there
	pending map[string]bool   // cgroups (their directories) of deleted vassals and dead emperors, removed once empty
	enable  string            // the controllers each vassal's cgroup turns on for its processes' ("+memory +pids"), or ""
	mem1    string            // where v2 has no memory controller: emperor.IDENTITY in the v1 memory hierarchy, below the emperor's own; ""
	home1   string            // the emperor's own v1 memory cgroup, to which a spawner thread goes back
}

// memoryFromV1 is for a hybrid host, whose memory controller is bound to a
// v1 hierarchy: each vassal gets a cgroup of its own there as well, for its
// memory figure (v2 still tracks and kills). clone3 starts a child in a v2
// cgroup only, so the spawner thread joins the vassal's v1 memory cgroup
// for the fork, which the child inherits, and goes back after (v1 lets a
// thread be in a cgroup of its own).
func (c *cgroupTrack) memoryFromV1(identity string) {
	own := ownMemoryCgroup1()
	if own == "" || os.Mkdir(filepath.Join(own, "emperor."+identity), 0o755) != nil {
		return
	}
	c.mem1, c.home1 = filepath.Join(own, "emperor."+identity), own
}

// enterCgroup1 moves the calling thread into the v1 cgroup dir, which a
// new vassal has not yet: its spare is renamed to it (a rename within the
// parent is a moment, a new cgroup about 0.1 ms), or it is made.
func enterCgroup1(dir string, spare *string) error {
	err := joinCgroup1(dir)
	if !errors.Is(err, syscall.ENOENT) {
		return err
	}
	if *spare == "" || syscall.Rename(*spare, dir) != nil {
		_ = syscall.Mkdir(dir, 0o755)
	}
	*spare = ""
	return joinCgroup1(dir)
}

// joinCgroup1 moves the calling thread (alone) into the v1 cgroup dir:
// "0" in its tasks file names the writer, and a single thread moves
// without the lock that moving a whole process takes.
func joinCgroup1(dir string) error {
	fd, err := syscall.Open(dir+"/tasks", syscall.O_WRONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	_, err = syscall.Write(fd, []byte{'0'})
	return err
}

// startTracking gives the emperor its identity (the hash of its sources:
// the start directory and the monitors as given, its pid, its start time),
// makes its cgroup or says why there is none, and cleans up after a dead
// predecessor.
func (e *emperor) startTracking() {
	s, cg := &e.strays, &e.strays.cg
	s.identity = fmt.Sprintf("%x.%d.%d", fnv64(strings.Join(append(e.cfg.monitors[:len(e.cfg.monitors):len(e.cfg.monitors)], e.watch.startCwd), "\x00")), os.Getpid(), readProcStat(os.Getpid()).start)
	s.sources, _, _ = strings.Cut(s.identity, ".")
	s.endedPid, s.leftOnce = map[int]bool{}, map[int]bool{}
	cg.byName, cg.pending, cg.idle = map[string]string{}, map[string]bool{}, map[string]bool{}
	why := "emperor-no-cgroups"
	if uid := e.cfg.own.uid; uid > 0 && os.Getuid() == 0 {
		// The cgroups it made as root would not be its own to make
		// vassals' cgroups in, nor the cgroup it runs in to clone from.
		why = "the emperor drops to uid " + strconv.Itoa(uid)
	} else if !e.cfg.noCgroups {
		why = "no cgroup2 at /sys/fs/cgroup"
		if dir := ownCgroup2(); dir != "" {
			name := filepath.Join(dir, "emperor."+e.strays.identity)
			err := os.Mkdir(name, 0o755)
			if _, kerr := os.Stat(name + "/cgroup.kill"); err == nil && kerr != nil {
				// Without cgroup.kill (Linux 5.14) a tree cannot be ended at
				// once; clone3 into a cgroup (5.7) is then older still.
				err = kerr
				_ = syscall.Rmdir(name)
			}
			if err != nil {
				why = err.Error()
			} else {
				cg.dir = name
				if cg.enableCounters(name); !strings.Contains(cg.enable, "memory") {
					cg.memoryFromV1(e.strays.identity)
				}
			}
		}
	}
	mode := "environment marker (no delegated cgroup v2: " + why + ")"
	if cg.dir != "" {
		mode = "cgroup v2 (" + cg.dir + ")"
	}
	if cg.mem1 != "" {
		mode += ", memory figures from cgroup v1 (" + cg.mem1 + ")"
	}
	logRaw("[emperor] process tracking: %s", mode)
	// Kill what a predecessor on the same sources left running when it was
	// SIGKILLed (or OOM-killed): its vassals died with it (PDEATHSIG), their
	// own children did not. This comes before the first spawn, so a vassal
	// never runs beside its old self: first every process whose marker
	// names the dead emperor (one line per vassal), then whatever else is
	// in its cgroup, marker or not. Dead emperors' cgroups are removed once
	// empty.
	killed := map[string]int{} // per vassal
	self := os.Getpid()
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, proc := range procs {
		pid, _ := strconv.Atoi(proc[len("/proc/"):])
		m, ok := procEnvValue(pid, vassalMarkerEnv, markerReadLimit)
		id, name, _ := strings.Cut(m, "/")
		if same, gone := e.strays.identityGone(id); ok && same && gone && pid != self && syscall.Kill(pid, syscall.SIGKILL) == nil {
			killed[name]++
		}
	}
	for name, n := range killed {
		logRaw("[emperor] vassal %s: killed %d processes left by a dead emperor", name, n)
	}
	base := ownCgroup2()
	ents, _ := readDir(base)
	for _, ent := range ents {
		id, ok := strings.CutPrefix(ent.Name(), "emperor.")
		same, gone := e.strays.identityGone(id)
		dir := filepath.Join(base, ent.Name())
		if base == "" || !ok || !gone || rmdirTree(dir) == nil || !same {
			continue
		}
		// cgroup.kill of the emperor's cgroup reaches every vassal's below.
		if killCgroup(dir) == nil {
			logRaw("[emperor] killed what a dead emperor left in %s", dir)
		}
		e.strays.cg.pending[dir] = true
		e.scheduleSweep() // which removes the cgroups that emptied
	}
	// A dead emperor's v1 memory cgroups empty as the kills above land.
	base1 := ownMemoryCgroup1()
	ents, _ = readDir(base1)
	for _, ent := range ents {
		id, ok := strings.CutPrefix(ent.Name(), "emperor.")
		if same, gone := e.strays.identityGone(id); base1 != "" && ok && gone && rmdirTree(filepath.Join(base1, ent.Name())) != nil && same {
			e.strays.cg.pending[filepath.Join(base1, ent.Name())] = true
		}
	}
}

// fnv64 is FNV-1a: a stable hash, the same in every emperor.
func fnv64(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * 1099511628211
	}
	return h
}

// enableCounters turns on, for the cgroups below dir, the memory and pids
// controllers dir has (a delegated cgroup usually has them), so that each
// vassal's memory and process count can be shown; cpu.stat is there
// without any. dir holds no process, as a cgroup with controllers for its
// children must not; a vassal's cgroup enables none for its own (what runs
// below it counts in it all the same), so its first process can run in it.
func (c *cgroupTrack) enableCounters(dir string) {
	data, err := readRegularFile(filepath.Join(dir, "cgroup.controllers"), 4096)
	if err != nil {
		return
	}
	var enable []string
	for _, ctl := range strings.Fields(string(data)) {
		if ctl == "memory" || ctl == "pids" {
			enable = append(enable, "+"+ctl)
		}
	}
	if len(enable) > 0 && writeExisting(filepath.Join(dir, "cgroup.subtree_control"), strings.Join(enable, " ")) == nil {
		c.enable = strings.Join(enable, " ")
	}
}

// cgroupPlan is where a vassal process starts: its cgroup, which the
// spawner thread makes (each takes about 0.07 ms, and every cgroup
// operation on the host holds one kernel lock: the loop does not wait for
// them) and opens for clone3, in its own fd table.
type cgroupPlan struct {
	_     noCompare
	base  string // the vassal's cgroup, made first when missing; "": dir is there
	dir   string // the instance's (base itself for a vassal's first process); "": none
	mem1  string // the vassal's v1 memory cgroup, which the spawner thread joins for the fork; "": none
	home1 string // the v1 memory cgroup the spawner thread goes back to
}

// cgroupEscape writes a vassal's name as a cgroup's: '%' as %25 first, so
// that the escapes of '/' (%2F) and '\n' (%0A) cannot collide with a name
// that spelled them out.
func cgroupEscape(name string) string {
	var b []byte
	for i := 0; i < len(name); i++ {
		var esc string
		switch name[i] {
		case '%':
			esc = "%25"
		case '/':
			esc = "%2F"
		case '\n':
			esc = "%0A"
		default:
			if b != nil {
				b = append(b, name[i])
			}
			continue
		}
		if b == nil {
			b = append(make([]byte, 0, len(name)+8), name[:i]...)
		}
		b = append(b, esc...)
	}
	if b == nil {
		return name
	}
	return string(b)
}

// planFor names the cgroup of v's next process: the vassal's own, v.NAME,
// for its first, then v.NAME/N below it (N: its starts before it), or the
// one its last process left empty. The vassal's cgroup is kept across
// respawns, so its counters add up over them; the controllers its parent
// gives it count what runs below it too, so it enables none for its
// children and can hold a process itself.
func (c *cgroupTrack) planFor(v *vassal) cgroupPlan {
	if c.dir == "" {
		return cgroupPlan{}
	}
	// The vassal's cgroup is named after it, with the slashes of glob
	// monitors' paths and the newlines the kernel refuses in a cgroup's
	// name escaped (and so the escape character): no two vassals share
	// one. A name too long for a directory gets none: its marker tracks it.
	vname := "v." + cgroupEscape(v.name)
	p := cgroupPlan{base: filepath.Join(c.dir, vname), home1: c.home1}
	if c.mem1 != "" {
		p.mem1 = filepath.Join(c.mem1, vname)
		delete(c.pending, p.mem1)
	}
	if c.idle[v.name] {
		delete(c.idle, v.name)
		p.base, p.dir = "", filepath.Join(c.dir, c.byName[v.name])
		return p
	}
	// Each process after the first gets a fresh cgroup below the
	// vassal's: clone3 into a cgroup that was once killed through
	// cgroup.kill has its child killed at birth (seen on Linux 6.18),
	// while a new cgroup below a killed one starts clean. The vassal's
	// own cgroup is new (nothing was ever killed in it) when this emperor
	// has no instance of it on record and none of it waits for removal: a
	// deleted vassal's leaves the pending set only once it is gone.
	name := vname
	if _, known := c.byName[v.name]; known || c.pending[p.base] {
		// Past any killed cgroup of the same name that a process of the
		// vassal made below its own, and that waits for removal.
		for n := v.starts; ; n++ {
			if name = vname + "/" + itoa(n); !c.pending[filepath.Join(c.dir, name)] {
				break
			}
		}
	}
	delete(c.pending, p.base)
	c.byName[v.name] = name
	p.dir = filepath.Join(c.dir, name)
	return p
}

// open makes the plan's cgroups where missing and opens the instance's
// (-1: none, or it cannot be, and err says why).
func (p *cgroupPlan) open() (int, error) {
	if p.dir == "" {
		return -1, nil
	}
	if p.base != "" {
		_ = syscall.Mkdir(p.base, 0o755) // or there already; if neither, open says why
		if p.dir != p.base {
			_ = syscall.Mkdir(p.dir, 0o755) // or there from a spawn retried at once
		}
	}
	return syscall.Open(p.dir, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
}

// vassalCgroup is the vassal's own cgroup (v.NAME) in an instance's name
// below the emperor's.
func vassalCgroup(instance string) string {
	base, _, _ := strings.Cut(instance, "/")
	return base
}

// ended ends everything left in v's cgroup once its process is gone: the
// kernel signals each member, forks in flight included. A deleted
// vassal's cgroup is removed once empty.
func (c *cgroupTrack) ended(v *vassal, deleted bool) {
	name, ok := c.byName[v.name]
	if !ok {
		return
	}
	delete(c.idle, v.name)
	if !deleted && !cgroupPopulated(filepath.Join(c.dir, name)) {
		// Nothing was left in it, so nothing was killed in it: v's next
		// process starts in it again (a fresh cgroup costs about 0.17 ms
		// more: its making and the kernel's first clone into it).
		c.idle[v.name] = true
		return
	}
	_ = killCgroup(filepath.Join(c.dir, name))
	base := vassalCgroup(name)
	if name != base {
		c.pending[filepath.Join(c.dir, name)] = true
	} else {
		// The vassal's own stays (the next instance starts below it), but
		// the cgroups its process made below it go once empty: a vassal
		// that is an emperor itself, say.
		ents, _ := readDir(filepath.Join(c.dir, base))
		for _, ent := range ents {
			if ent.IsDir() {
				c.pending[filepath.Join(c.dir, base, ent.Name())] = true
			}
		}
	}
	if deleted {
		delete(c.byName, v.name)
		c.pending[filepath.Join(c.dir, base)] = true
		if c.mem1 != "" {
			c.pending[filepath.Join(c.mem1, base)] = true
		}
		c.removeEmpty()
	}
	// Otherwise the instance's cgroup goes at the sweep its exit queued:
	// the kernel offlines a removed cgroup under the lock that clone3
	// into a cgroup takes too, so an rmdir now would delay the respawn
	// (by about 0.15 ms here).
}

// removeEmpty removes the cgroups of deleted vassals that have emptied. A
// cgroup empties as its last members are reaped, by the emperor (a vassal,
// or strays re-parented to it) or by a vassal's own init in a pid
// namespace, which the emperor reaps last: so every reap retries it (a
// vassal's through the sweep it queues), and what is still busy then waits
// for the next reap, or the next emperor.
func (c *cgroupTrack) removeEmpty() {
	for dir := range c.pending {
		if err := rmdirTree(dir); err == nil || err == syscall.ENOENT {
			delete(c.pending, dir)
		}
	}
}

// cgroupPopulated says whether a process is in the cgroup dir or below
// (true when that cannot be read).
func cgroupPopulated(dir string) bool {
	var buf [64]byte
	return !bytes.HasPrefix(readKernelFile(dir+"/cgroup.events", buf[:]), []byte("populated 0\n"))
}

// readKernelFile reads the start of a file the kernel writes whole (a
// cgroup's), into buf, with raw calls and one read: it is on the way to a
// respawn, and a stats document reads one per vassal and counter (about
// 0.03 ms less than through os.File). nil: it cannot be read.
func readKernelFile(path string, buf []byte) []byte {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	defer syscall.Close(fd)
	n, err := syscall.Read(fd, buf)
	if err != nil || n <= 0 {
		return nil
	}
	return buf[:n]
}

// killCgroup SIGKILLs every process in the cgroup dir and below.
func killCgroup(dir string) error {
	fd, err := syscall.Open(dir+"/cgroup.kill", syscall.O_WRONLY|syscall.O_CLOEXEC, 0)
	if err == nil {
		_, err = syscall.Write(fd, []byte{'1'})
		syscall.Close(fd)
	}
	return err
}

// readDir lists dir in the kernel's order: os.ReadDir's sort is not
// needed by any caller, and its code is 8 KB of the binary.
func readDir(dir string) ([]os.DirEntry, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.ReadDir(-1)
}

// rmdirTree removes an empty cgroup and the cgroups below it, which a
// vassal that is an emperor itself (or sets up cgroups of its own) leaves
// when it is killed: a cgroup with children cannot be removed.
func rmdirTree(dir string) error {
	ents, _ := readDir(dir)
	for _, ent := range ents {
		if ent.IsDir() {
			_ = rmdirTree(filepath.Join(dir, ent.Name()))
		}
	}
	return syscall.Rmdir(dir)
}

// marker is the value of vassalMarkerEnv for v.
func (s *strayState) marker(v *vassal) string {
	return vassalMarkerEnv + "=" + s.identity + "/" + v.name
}

// identityGone parses another emperor's identity: whether it ran on the
// same sources as this one, and whether it is no longer running (its pid
// gone, or reused by a process that started at another time).
func (s *strayState) identityGone(identity string) (sameSources, gone bool) {
	src, rest, _ := strings.Cut(identity, ".")
	p, start, _ := strings.Cut(rest, ".")
	pid, err := strconv.Atoi(p)
	if err != nil || pid <= 0 || identity == s.identity {
		return false, false
	}
	// A zombie is gone too: an emperor SIGKILLed under a parent that does
	// not reap it (a shell that exec'd another program, say) keeps its pid
	// and start time until that parent dies.
	st := readProcStat(pid)
	return src == s.sources, st.zombie || strconv.FormatUint(st.start, 10) != start
}

// onExit handles a reaped process: a vassal's end, or an orphan that was
// re-parented to the emperor and is simply collected.
func (e *emperor) onExit(ex childExit) {
	v := e.vassals.byPid[ex.pid]
	if v == nil {
		if len(e.strays.cg.pending) > 0 {
			e.strays.cg.removeEmpty() // it may have been a cgroup's last
		}
		if note := e.strays.helpers[ex.pid]; note != "" {
			logRaw("[emperor] %s returned %d", note, exitCode(ex.status))
		}
		delete(e.strays.helpers, ex.pid)
		e.parentHooksDone(ex.pid)
		delete(e.strays.leftOnce, ex.pid)
		return
	}
	delete(e.vassals.byPid, ex.pid)
	trace("reaped", v.name)
	e.markStatusDirty()
	launched := v.companion != nil && v.companion.pidfile != "" && v.then == thenRespawn && !e.shutdown.dying &&
		ex.status.Exited() && ex.status.ExitStatus() == 0
	if !launched {
		// The group outlives its leader only by accident: clear it before
		// a respawn, so an old worker cannot hold the new one's port.
		_ = syscall.Kill(-ex.pid, syscall.SIGKILL)
	}
	if !launched {
		e.strays.endedPid[ex.pid] = true
		e.strays.cg.ended(v, false)
	}
	e.scheduleSweep()
	// The pid is gone (and may be reused): nothing below may signal it.
	v.pid = 0
	if v.sock >= 0 {
		// Bytes sent just before dying (loyalty, say) count: read them
		// before the socket goes, whatever order the events came in.
		e.readProtocol(v)
	}
	e.closeSock(v)
	v.gen++
	v.lastExit = describeExit(ex.status)
	v.exitCode = ex.status.ExitStatus()
	if ex.status.Signaled() {
		v.exitCode = -int(ex.status.Signal())
	}
	if launched {
		// A smart daemon's launcher, done daemonizing: the daemon is
		// the process its pidfile names, once it is written.
		v.adoptTries, v.adopting = 0, true
		e.adoptDue(v)
		return
	}
	then := v.then
	if e.shutdown.dying {
		then = thenDelete
	}
	if then != thenIdle {
		e.runStopHook(v)
		v.hookRan = true
	}
	switch then {
	case thenDelete:
		e.deleteVassal(v)
	case thenRestart:
		v.status = statusRunning
		e.wake(v)
	case thenIdle:
		v.status, v.cursed = statusRunning, 0
		v.ready, v.accept = false, false
		e.wake(v)
		logRaw("[uwsgi-emperor] %s -> back to \"on demand\" mode, waiting for connections on socket \"%s\" ...", v.name, v.onDemand)
	default:
		e.died(v, ex)
	}
}

// died respawns a vassal that ended without being asked to, through the
// blacklist: a vassal that never became loyal waits a growing delay.
func (e *emperor) died(v *vassal, ex childExit) {
	if v.status == statusRunning {
		logVerbose("[emperor] curse the uwsgi instance %s (pid: %d)", v.shownName(), ex.pid)
	}
	logVerbose("[emperor] vassal %s (pid: %d) %s", v.name, ex.pid, v.lastExit)
	switch {
	case v.killedFor != "":
		v.lastReason, v.killedFor = v.killedFor, ""
	case v.then == thenVoluntary:
		v.lastReason = "voluntary shutdown"
	default:
		v.lastReason = "exit"
	}
	if !v.goneSince.IsZero() {
		// Its config is gone (the removal grace is running): nothing to
		// start it from. Should the config come back, that is a new vassal.
		e.deleteVassal(v)
		return
	}
	v.status = statusRunning
	now := time.Now()
	if !v.loyal && !e.cfg.noBlacklist {
		e.black.add(v.name, now)
	}
	if wait := e.black.wait(v.name, now); wait > 0 {
		e.scheduleRespawn(v, wait)
	} else {
		// At once, not through the timers: a hop less (about 0.06 ms).
		v.gen++ // and no respawn timer left from before can fire
		e.wake(v)
	}
}

// exitCode is a status as a shell reports it: the code, or 128+signal.
func exitCode(ws syscall.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

func describeExit(ws syscall.WaitStatus) string {
	switch {
	case ws.Signaled():
		return "killed by signal " + itoa(int(ws.Signal())) + " (" + ws.Signal().String() + ")"
	case ws.Exited():
		return "exited with code " + itoa(ws.ExitStatus())
	}
	return "ended (status " + itoa(int(ws)) + ")"
}

// scheduleSweep arranges one look for stray processes shortly after a
// vassal ends: its orphaned descendants land on the emperor (subreaper).
func (e *emperor) scheduleSweep() {
	if e.strays.sweepDue {
		return
	}
	e.strays.sweepDue = true
	e.timers.push(timerItem{at: time.Now().Add(20 * time.Millisecond), kind: tSweep})
}

// sweepStrays kills every child of the emperor that is neither a vassal
// nor a helper and descends from a vassal that is gone: nothing outlives
// its vassal, and nothing dies with another one.
func (e *emperor) sweepStrays() {
	for _, c := range e.cfg.companions {
		if v := e.vassals.byName[c.name]; v != nil && v.adopting {
			e.scheduleSweep() // after the smart daemon is found
			return
		}
	}
	e.strays.cg.removeEmpty()
	var oldest uint64
	for _, pid := range childrenOfSelf() {
		if _, helper := e.strays.helpers[pid]; e.vassals.byPid[pid] != nil || helper {
			continue
		}
		owner, kill := e.verdict(pid, &oldest)
		switch {
		case kill:
			logVerbose("[emperor] killing stray process %d (%s) left behind by vassal %s", pid, procComm(pid), owner)
			signalTree(pid, syscall.SIGKILL)
		case owner == "" && !e.strays.leftOnce[pid]:
			e.strays.leftOnce[pid] = true
			logRaw("[emperor] leaving stray process %d (%s) alone: not shown to come from an ended vassal", pid, procComm(pid))
		}
	}
	e.strays.endedPid = map[int]bool{}
}

// verdict says whom a stray belongs to and whether it dies. In order: its
// marker (a vassal that is not running, or whose running process started
// after the stray, which so came from an earlier one, while the daemons of
// a vassal respawned at once live; or a dead predecessor's vassal);
// without a marker, its process group or session (an ended vassal's pid,
// or a running one's); last, its start time: a process older than every
// running vassal descends from none of them. An empty owner with kill
// false: nothing says whose it is, it is left. (With cgroups, cgroup.kill
// has already ended whatever an ended vassal left.) oldest is the start
// time of the oldest running vassal, read once per sweep when needed (0:
// not yet).
func (e *emperor) verdict(pid int, oldest *uint64) (owner string, kill bool) {
	s := &e.strays
	st := readProcStat(pid)
	if m, ok := procEnvValue(pid, vassalMarkerEnv, markerReadLimit); ok {
		id, name, _ := strings.Cut(m, "/")
		if same, gone := s.identityGone(id); same && gone {
			return name, true
		}
		if id != s.identity {
			return "", false // another emperor's
		}
		v := e.vassals.byName[name]
		return name, v == nil || v.pid <= 0 || st.start < readProcStat(v.pid).start
	}
	for _, g := range []int{st.pgid, st.sid} {
		if v := e.vassals.byPid[g]; v != nil || s.endedPid[g] {
			return "group " + itoa(g), v == nil
		}
	}
	if *oldest == 0 {
		*oldest = ^uint64(0)
		for vpid := range e.vassals.byPid {
			*oldest = min(*oldest, readProcStat(vpid).start)
		}
	}
	if 0 < st.start && st.start < *oldest { // 0: gone meanwhile
		return "older than all vassals", true
	}
	return "", false
}

func procComm(pid int) string {
	data, err := os.ReadFile("/proc/" + itoa(pid) + "/comm")
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(data))
}

// ==== The Emperor protocol ==============================================

// pollSet is the epoll set of every descriptor the loop reads: vassal
// protocol sockets, on-demand listeners and a parent emperor's fd. Each
// registration gets a fresh token, so a late report for a closed and
// reused fd number is told apart from a live one.
type pollSet struct {
	watcher   *fdWatcher
	nextToken uint32
	// pending are protocol sockets left with bytes unread when their read
	// budget ran out, read again on a later turn of the loop (each once:
	// its vassal's flood.pending says it is here).
	pending []readyFD
}

// Reading a vassal's socket is budgeted: a vassal writing to its emperor
// fd as fast as it can must not keep the loop from everything else. One
// turn reads at most protoBudget bytes of one socket (more than any vassal
// that speaks the protocol ever has waiting: a few bytes per event); what
// is left waits for a later turn, so exits, signals, config changes and
// stats requests are served between two reads.
const protoBudget = 4 << 10

// A vassal that sends more than floodBytes in one floodWindow is flooding:
// uWSGI's protocol is a handful of bytes per state change and a heartbeat
// byte every few seconds, so no vassal that speaks it gets near 16 KiB in a
// second. It is logged once per window, and killed (and respawned, as a
// hung vassal is) after floodWindows windows in a row: long enough that a
// burst is forgiven, short enough that a broken vassal does not burn the
// emperor's CPU for long.
const (
	floodWindow  = time.Second
	floodBytes   = 16 << 10
	floodWindows = 5
)

// floodMeter counts what a vassal sent in the current window.
type floodMeter struct {
	_       noCompare
	start   time.Time // the current window's start (monotonic)
	bytes   int       // sent in it
	streak  int       // windows in a row flagged, this one included
	flagged bool      // the current window has been logged as flooding
	pending bool      // its socket is in the poll set's pending list
}

// readyNow is a channel that is always ready to receive from.
var readyNow = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// more is ready while sockets wait for another read; nil (never ready)
// otherwise.
func (p *pollSet) more() <-chan struct{} {
	if len(p.pending) == 0 {
		return nil
	}
	return readyNow
}

// readPending gives every socket left with unread bytes one more budget.
func (e *emperor) readPending() {
	batch := e.poll.pending
	e.poll.pending = nil
	for _, r := range batch {
		if v := e.vassals.byFd[r.fd]; v != nil && v.token == r.token {
			v.flood.pending = false
			if e.readProtocol(v) {
				e.onHangup(v)
			}
		}
	}
}

func (p *pollSet) token() uint32 {
	p.nextToken++
	return p.nextToken
}

// onReadable drains a vassal's protocol socket: every pending byte, in
// order, then EOF if the vassal closed its end.
func (e *emperor) onReadable(r readyFD) {
	if r.fd == e.parent.fd && r.token == e.parent.token {
		e.onParentReadable()
		return
	}
	if fw := e.watch.fs; fw != nil && fw.k != nil && r.token == fw.token && r.fd == fw.k.pollFD() {
		e.drainFileEvents(fw)
		return
	}
	if v := e.vassals.odByFd[r.fd]; v != nil {
		if v.odToken == r.token {
			// A client waits in the backlog: the vassal, not the emperor,
			// accepts it.
			e.disarmOnDemand(v)
			if v.pid == 0 && !e.shutdown.dying {
				e.spawn(v)
			}
		}
		return
	}
	v := e.vassals.byFd[r.fd]
	if v == nil || v.token != r.token {
		return // a report for a descriptor already closed
	}
	if e.readProtocol(v) {
		e.onHangup(v)
	}
}

// readProtocol acts on the bytes waiting on the vassal's socket, at most
// protoBudget of them (the rest is read on a later turn of the loop), and
// reports whether the vassal closed its end.
func (e *emperor) readProtocol(v *vassal) (hungUp bool) {
	fd, token := v.sock, v.token
	var buf [512]byte
	for budget := protoBudget; ; {
		if budget <= 0 {
			if !v.flood.pending {
				v.flood.pending = true
				e.poll.pending = append(e.poll.pending, readyFD{fd: fd, token: token})
			}
			return false
		}
		n, err := syscall.Read(fd, buf[:min(len(buf), budget)])
		if n > 0 {
			budget -= n
			for _, b := range buf[:n] {
				e.onByte(v, b)
			}
			if v.sock != fd || e.meterFlood(v, n) {
				return false
			}
			continue
		}
		if err == syscall.EINTR {
			continue
		}
		if err == syscall.EAGAIN {
			e.poll.watcher.rearm(fd, token)
			return false
		}
		return true
	}
}

// meterFlood counts n bytes from v and reports whether v was found
// flooding for too long and is being killed for it.
func (e *emperor) meterFlood(v *vassal, n int) bool {
	f := &v.flood
	now := time.Now()
	if d := now.Sub(f.start); d >= floodWindow {
		if !f.flagged || d >= 2*floodWindow {
			f.streak = 0 // the last window was quiet: the streak is over
		}
		f.start, f.bytes, f.flagged = now, 0, false
	}
	f.bytes += n
	if f.flagged || f.bytes <= floodBytes {
		return false
	}
	f.flagged = true
	f.streak++
	if f.streak < floodWindows || v.pid == 0 || v.status != statusRunning {
		logRaw("[emperor] vassal %s is flooding its emperor fd (more than %d bytes in %v): reading it at most %d bytes at a time", v.name, floodBytes, floodWindow, protoBudget)
		return false
	}
	logRaw("[emperor] vassal %s kept flooding its emperor fd for %d seconds, brutally respawning it...", v.name, floodWindows*int(floodWindow/time.Second))
	v.killedFor = "flood"
	signalTree(v.pid, syscall.SIGKILL)
	// Nothing more is read from a process being killed: its exit closes
	// the socket.
	e.poll.watcher.remove(v.sock)
	return true
}

// onHangup: the vassal closed its end. One that spoke the protocol is dying
// (uWSGI's curse); one that never did may just close inherited fds, and is
// left alone.
func (e *emperor) onHangup(v *vassal) {
	e.closeSock(v)
	if !v.spoke || v.status != statusRunning || v.pid == 0 {
		return
	}
	logVerbose("[emperor] curse the uwsgi instance %s (pid: %d)", v.shownName(), v.pid)
	e.curse(v, statusCursed, e.cfg.curseTolerance)
}

// onByte acts on one Emperor-protocol byte from a vassal (uWSGI's
// core/emperor.c, emperor_loop: 1 ready, 5 accepting, 17 loyal, 22
// voluntary stop, 26 heartbeat).
func (e *emperor) onByte(v *vassal, b byte) {
	v.spoke = true
	now := time.Now().Unix()
	switch b {
	case 1:
		v.ready, v.lastReady = true, now
		logVerbose("[emperor] vassal %s has been spawned", v.name)
	case 5:
		v.accept, v.lastAccepting = true, now
		logVerbose("[emperor] vassal %s is ready to accept requests", v.name)
	case 17:
		v.loyal, v.lastLoyal = true, now
		logVerbose("[emperor] vassal %s is now loyal", v.name)
		e.black.remove(v.name)
	case 22:
		switch {
		case v.status != statusRunning:
		case v.onDemand != "":
			logVerbose("[emperor] bringing back instance %s to on-demand mode", v.name)
			e.stop(v, thenIdle)
		case v.zergOf != nil:
			e.stop(v, thenDelete) // an idle zerg retires
		default:
			e.stop(v, thenVoluntary)
		}
	case 30:
		e.onSOS(v)
	case 26:
		v.lastHeartbeat, v.heartbeatAt = now, time.Now()
		if !v.heartbeatArmed {
			v.heartbeatArmed = true
			e.timers.push(timerItem{at: v.heartbeatAt.Add(e.cfg.heartbeat), kind: tHeartbeat, v: v, gen: v.gen})
		}
	}
}

// checkHeartbeat runs when a heartbeat deadline passes; the timer is
// re-armed from the latest heartbeat rather than on every byte.
func (e *emperor) checkHeartbeat(v *vassal) {
	if v.pid == 0 || v.status != statusRunning || v.lastHeartbeat == 0 {
		v.heartbeatArmed = false
		return
	}
	limit := int64(e.cfg.heartbeat / time.Second)
	// Monotonic: a clock step must neither kill a healthy vassal nor spare
	// a hung one.
	due := v.heartbeatAt.Add(e.cfg.heartbeat)
	if time.Now().Before(due) {
		e.timers.push(timerItem{at: due, kind: tHeartbeat, v: v, gen: v.gen})
		return
	}
	v.heartbeatArmed = false
	v.lastHeartbeat = 0
	logRaw("[emperor] vassal %s sent no heartbeat in last %d seconds, brutally respawning it...", v.name, limit)
	v.killedFor = "heartbeat"
	signalTree(v.pid, syscall.SIGKILL)
}

// ==== The blacklist =====================================================

// blacklist is uWSGI's crash-loop throttle (core/emperor.c,
// uwsgi_emperor_blacklist_add): the first failure of
// a never-loyal vassal costs emperor-throttle µs (uWSGI's unit slip, kept so
// the first retry is immediate), each further one emperor-throttle ms more,
// halved on reaching emperor-max-throttle. Entries go on loyalty or SIGURG.
type blacklist struct {
	stepMs, maxMs int64
	entries       map[string]*blackEntry
	order         []string
}

type blackEntry struct {
	_           noCompare
	id          string
	first, last time.Time
	levelUs     int64
	attempt     int
}

func newBlacklist(stepMs, maxMs int64) *blacklist {
	return &blacklist{stepMs: stepMs, maxMs: maxMs, entries: map[string]*blackEntry{}}
}

func (b *blacklist) add(name string, now time.Time) {
	ent := b.entries[name]
	if ent == nil {
		b.entries[name] = &blackEntry{id: name, first: now, last: now, levelUs: b.stepMs}
		b.order = append(b.order, name)
		return
	}
	ent.last = now
	if ent.levelUs < b.maxMs*1000 {
		ent.levelUs += b.stepMs * 1000
	} else {
		logVerbose("[emperor] maximum throttle level for vassal %s reached !!!", name)
		ent.levelUs /= 2
	}
	ent.attempt++
	if ent.attempt == 2 {
		logVerbose("[emperor] unloyal bad behaving vassal found: %s throttling it...", name)
	}
}

// wait is how long the name must still wait before its next start.
func (b *blacklist) wait(name string, now time.Time) time.Duration {
	ent := b.entries[name]
	if ent == nil {
		return 0
	}
	until := ent.last.Add(time.Duration(ent.levelUs) * time.Microsecond)
	if d := until.Sub(now); d > 0 {
		return d
	}
	return 0
}

func (b *blacklist) remove(name string) {
	if b.entries[name] == nil {
		return
	}
	delete(b.entries, name)
	for i, n := range b.order {
		if n == name {
			b.order = append(b.order[:i], b.order[i+1:]...)
			break
		}
	}
}

func (b *blacklist) clear() {
	b.entries = map[string]*blackEntry{}
	b.order = nil
}

// ==== On-demand vassals =================================================
// The emperor binds the vassal's socket and watches it; the first client
// starts the vassal with the listener as fd 0. The emperor keeps its
// listener across crashes and idle periods, so a TCP socket never has to be
// bound again (uWSGI 2.0 closes and rebinds it, and the rebind can fail with
// EADDRINUSE).

// onDemandName finds the socket for a new record: from NAME+ext, or
// DIR/BASENAME.socket. The exec method is asynchronous (resolveOnDemandExec).
func (e *emperor) onDemandName(v *vassal) string {
	switch {
	case e.cfg.odExt != "":
		// An instance's socket name is in FILE:SECTION+ext, beside the file.
		return e.readOnDemandFile(v, v.path+instanceSuffix(v)+e.cfg.odExt)
	case e.cfg.odDir != "":
		base := filepath.Base(v.configName())
		dot := strings.LastIndexByte(base, '.')
		if dot <= 0 {
			return ""
		}
		// An instance's is STEM@SECTION.socket, as systemd names the
		// instance of a template: a ':' would make it a TCP address.
		stem := base[:dot]
		if v.instance != "" {
			stem += "@" + v.instance
		}
		return filepath.Join(e.cfg.odDir, stem+".socket")
	}
	return ""
}

// readOnDemandFile reads the socket name in a vassal's NAME+ext file, as
// root, on the loop. Opened without blocking (a FIFO there would hang the
// loop) and read once, at most a page; it must be a regular file. In tyrant
// mode it is the config owner's word, so it must be theirs too and not a
// symlink: else a user could have root read any file (the first line of
// /etc/shadow, say) and show it in the stats as a socket name. A refused
// file is logged by name, never by content, and the vassal is an ordinary
// one, as with no file at all.
func (e *emperor) readOnDemandFile(v *vassal, path string) string {
	flags := syscall.O_RDONLY | syscall.O_NONBLOCK | syscall.O_CLOEXEC
	if e.cfg.tyrant {
		flags |= syscall.O_NOFOLLOW
	}
	fd, err := syscall.Open(path, flags, 0)
	if err == syscall.ENOENT || err == syscall.ENOTDIR {
		return ""
	}
	refuse := func(why string) string {
		logRaw("[emperor] vassal %s: on-demand socket file %s refused: %s", v.name, path, why)
		return ""
	}
	if err == syscall.ELOOP && e.cfg.tyrant {
		return refuse("a symlink (tyrant mode reads only the config owner's own file)")
	}
	if err != nil {
		return refuse(err.Error())
	}
	defer syscall.Close(fd)
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return refuse(err.Error())
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return refuse("not a regular file")
	}
	if e.cfg.tyrant && st.Uid != v.uid {
		return refuse("owned by uid " + itoa(int(st.Uid)) + ", not by the config's owner " + itoa(int(v.uid)))
	}
	var buf [4096]byte
	n, err := syscall.Read(fd, buf[:])
	if err != nil || n < 0 {
		return ""
	}
	return firstControl(string(buf[:n]))
}

// instanceSuffix is ":SECTION" for an instance, "" for any other vassal.
func instanceSuffix(v *vassal) string {
	if v.instance == "" {
		return ""
	}
	return ":" + v.instance
}

// firstControl cuts s at its first control byte, as uWSGI reads socket names.
func firstControl(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] < 32 {
			return s[:i]
		}
	}
	return s
}

// resolveOnDemandExec runs CMD with the vassal's name as its argument off
// the loop (uWSGI blocks its whole loop on it) and hands the first line of
// its output back to the loop. The operator's CMD is a shell line; the
// name, which whoever may create files in the directory chose, never is:
// it reaches the shell as $1 (uWSGI's core/emperor.c pastes it into the
// line between double quotes, so a config named `$(id).ini` runs id, as
// root).
func (e *emperor) resolveOnDemandExec(v *vassal) {
	r, w, err := os.Pipe()
	if err != nil {
		logVerbose("[emperor] emperor-on-demand-exec for %s: %v", v.name, err)
		e.placeVassal(v, "")
		return
	}
	sh, path := shellExec()
	argv := []string{sh, "-c", e.cfg.odExec + ` "$1"`, "sh", v.name}
	pid, err := forkOnLoop(path, argv, &syscall.ProcAttr{
		Dir: e.cfg.spawnDir(v), Env: e.spawns.baseEnv, Files: []uintptr{e.spawns.devnull.Fd(), w.Fd(), 2},
		Sys: &syscall.SysProcAttr{Setpgid: true},
	})
	w.Close()
	if err != nil {
		r.Close()
		logVerbose("[emperor] emperor-on-demand-exec for %s: %v", v.name, err)
		e.placeVassal(v, "")
		return
	}
	e.strays.helpers[pid] = ""
	v.gen++
	go readOnDemandExec(r, pid, odResolved{v: v, gen: v.gen}, e.in.odResult, e.in.done)
}

// readOnDemandExec runs off the loop: it reads the command's first line
// (bounded in size and time) and hands it back with the record it is for,
// which it does not touch.
func readOnDemandExec(r *os.File, pid int, res odResolved, out chan<- odResolved, done <-chan struct{}) {
	defer r.Close()
	_ = r.SetReadDeadline(time.Now().Add(10 * time.Second))
	data, err := io.ReadAll(io.LimitReader(r, 4096))
	if err != nil {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
	res.sock = firstControl(string(data))
	select {
	case out <- res:
	case <-done:
	}
}

func (e *emperor) onDemandResolved(r odResolved) {
	if r.v.deleted || r.v.gen != r.gen || r.v.pid != 0 {
		return
	}
	e.placeVassal(r.v, r.sock)
}

// bindOnDemand binds the vassal's socket: host:port is TCP, anything else a
// UNIX path (mode 0666 as uWSGI; see clearSocketPath for what may be there
// already).
func (e *emperor) bindOnDemand(v *vassal) error {
	network := socketNetwork(v.onDemand)
	if network == "unix" {
		if err := clearSocketPath(v.onDemand); err != nil {
			return err
		}
	}
	lc := net.ListenConfig{}
	ln, err := lc.Listen(context.Background(), network, v.onDemand)
	if err != nil {
		return err
	}
	var f *os.File
	switch l := ln.(type) {
	case *net.TCPListener:
		f, err = l.File()
	case *net.UnixListener:
		l.SetUnlinkOnClose(false)
		f, err = l.File()
		if err == nil {
			// chmod follows a symlink: look first, so a path swapped after
			// the bind cannot make the emperor open up some other file.
			if fi, lerr := os.Lstat(v.onDemand); lerr != nil || fi.Mode()&os.ModeSocket == 0 {
				err = fmt.Errorf("%s: no longer the socket just bound", v.onDemand)
			} else {
				err = os.Chmod(v.onDemand, 0o666)
			}
		}
	}
	ln.Close()
	if err != nil {
		if f != nil {
			f.Close()
		}
		return err
	}
	// Keep a bare descriptor: it is dup'ed into vassals and watched by the
	// loop's poller, never read by the emperor.
	fd, err := syscall.Dup(int(f.Fd()))
	f.Close()
	if err != nil {
		return err
	}
	syscall.CloseOnExec(fd)
	if backlog := e.cfg.listen; backlog > 0 {
		_ = syscall.Listen(fd, backlog)
	}
	v.odFd = fd
	return nil
}

func (e *emperor) armOnDemand(v *vassal) {
	if v.odFd < 0 || e.vassals.odByFd[v.odFd] == v {
		return
	}
	v.odToken = e.poll.token()
	e.vassals.odByFd[v.odFd] = v
	if err := e.poll.watcher.add(v.odFd, v.odToken); err != nil {
		logVerbose("[emperor] vassal %s: %v", v.name, err)
	}
}

func (e *emperor) disarmOnDemand(v *vassal) {
	if v.odFd >= 0 && e.vassals.odByFd[v.odFd] == v {
		e.poll.watcher.remove(v.odFd)
		delete(e.vassals.odByFd, v.odFd)
	}
}

// closeOnDemand drops the listener with the record, and its path.
func (e *emperor) closeOnDemand(v *vassal) {
	if v.odFd < 0 {
		return
	}
	e.disarmOnDemand(v)
	syscall.Close(v.odFd)
	v.odFd = -1
	if socketNetwork(v.onDemand) == "unix" {
		if fi, err := os.Lstat(v.onDemand); err == nil && fi.Mode()&os.ModeSocket != 0 {
			_ = os.Remove(v.onDemand)
		}
	}
}

// clearSocketPath makes room for a UNIX socket at path. The path is the
// vassal's choice (its NAME+ext file, or the on-demand-exec command's
// answer) and the emperor is root: only a socket nobody listens on (left
// by a process that died) is removed. A file, a directory or a socket a
// live server holds is never removed, uWSGI's unlink-then-bind would
// replace /etc/passwd or another daemon's socket.
func clearSocketPath(path string) error {
	fi, err := os.Lstat(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("%s exists and is not a socket: left alone", path)
	}
	if socketListening(path) {
		return fmt.Errorf("%s: a server is listening on it: left alone", path)
	}
	return os.Remove(path)
}

// socketListening reports whether something accepts connections on the
// UNIX socket at path. The connect does not block: a full backlog is a
// live server too.
func socketListening(path string) bool {
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		return true // cannot tell: keep the file
	}
	defer syscall.Close(fd)
	syscall.CloseOnExec(fd)
	_ = syscall.SetNonblock(fd, true)
	err = syscall.Connect(fd, &syscall.SockaddrUnix{Name: path})
	return err != syscall.ECONNREFUSED && err != syscall.ENOENT
}

// ==== Stats =============================================================

// vassalState is what a vassal is doing, in the three classes systemd's
// STATUS=, the Prometheus gauge and --status count.
type vassalState uint8

const (
	stateRunning   vassalState = iota // a process is running
	stateThrottled                    // no process: waiting out the blacklist (or a failed spawn)
	stateOnDemand                     // no process: waiting for a client on its socket
	numVassalStates
)

// stateOf classifies a vassal by its pid (0 or -1: none) and on-demand
// socket name.
func stateOf(pid int, onDemand string) vassalState {
	switch {
	case pid > 0:
		return stateRunning
	case onDemand != "":
		return stateOnDemand
	}
	return stateThrottled
}

// statsSnapshot is a copy of what the stats server shows, handed out by the
// loop so that rendering and writing (to clients that may never read) happen
// off the loop.
type statsSnapshot struct {
	_             noCompare
	pid, uid, gid int
	tyrant        bool
	cwd           string
	monitors      []string
	vassals       []vassalStat
	blacklist     []blackStat
	cgroupDirs    cgroupDirs // where the vassals' cgroups are
}

// cgroupDirs are where the vassals' cgroups are: in v2, and in v1 for
// memory on a hybrid host ("": not there); enable is the controllers on
// for them ("+memory +pids").
type cgroupDirs struct {
	_                noCompare
	v2, mem1, enable string
}

type vassalStat struct {
	_                                   noCompare
	zerg                                bool
	id                                  string
	pid                                 int
	born, lastMod, lastHeartbeat        int64
	loyal, ready, accepting             bool
	lastLoyal, lastReady, lastAccepting int64
	firstRun, lastRun, cursed           int64
	onDemand, monitor                   string
	uid, gid                            uint32
	respawns                            int
	lastExit, lastReason                string
	nextRetry                           int64
	starts, exitCode                    int
	cgroup                              string // its cgroup below the snapshot's cgroupDirs, read when rendered (off the loop); "": none
}

type blackStat struct {
	_           noCompare
	id          string
	throttleMs  int64
	attempt     int
	first, last int64
}

func (e *emperor) snapshot() *statsSnapshot {
	s := &statsSnapshot{pid: os.Getpid(), uid: os.Getuid(), gid: os.Getgid(), cwd: e.watch.startCwd, tyrant: e.cfg.tyrant,
		cgroupDirs: cgroupDirs{v2: e.strays.cg.dir, mem1: e.strays.cg.mem1, enable: e.strays.cg.enable}}
	if len(e.watch.monitors) == 1 && !e.watch.monitors[0].glob {
		s.cwd = e.watch.monitors[0].dir // uWSGI sits in its vassal directory
	}
	for _, m := range e.watch.monitors {
		s.monitors = append(s.monitors, m.arg)
	}
	live := e.vassals.live()
	s.vassals = make([]vassalStat, 0, len(live))
	for _, v := range live {
		st := vassalStat{id: v.shownName(), zerg: v.zergOf != nil, pid: v.pid, born: v.born, lastMod: v.lastMod, lastHeartbeat: v.lastHeartbeat,
			loyal: v.loyal, ready: v.ready, accepting: v.accept, lastLoyal: v.lastLoyal, lastReady: v.lastReady,
			lastAccepting: v.lastAccepting, firstRun: v.firstRun, lastRun: v.lastRun, cursed: v.cursed,
			starts: v.starts, exitCode: v.exitCode,
			monitor: v.mon.arg, onDemand: v.onDemand, uid: v.uid, gid: v.gid, respawns: v.respawns, lastExit: v.lastExit, lastReason: v.lastReason}
		if v.pid == 0 {
			st.pid = -1
		}
		if name, ok := e.strays.cg.byName[v.name]; ok {
			st.cgroup = vassalCgroup(name) // v.NAME, without a copy
		}
		if v.pid == 0 && !v.nextRetry.IsZero() {
			st.nextRetry = v.nextRetry.Unix()
		}
		s.vassals = append(s.vassals, st)
	}
	for _, id := range e.black.order {
		ent := e.black.entries[id]
		s.blacklist = append(s.blacklist, blackStat{id: id, throttleMs: ent.levelUs / 1000, attempt: ent.attempt,
			first: ent.first.Unix(), last: ent.last.Unix()})
	}
	return s
}

// jsonWriter renders uWSGI's stats layout byte for byte: tab indentation,
// `"key":value`, list items of plain strings unindented, an empty list as
// "[\n\n<tabs>]". Unlike uWSGI it escapes strings. It appends to one
// buffer: the document for 10,000 vassals is megabytes.
type jsonWriter struct {
	b     []byte
	depth int
	first []bool
}

// The writer's methods build on a local slice and store it back once:
// each store of w.b is a pointer write the collector's write barrier sees,
// and a document has a dozen per vassal.

func (w *jsonWriter) tabs(b []byte) []byte {
	const some = "\t\t\t\t\t\t\t\t"
	for i := w.depth; i > 0; i -= len(some) {
		b = append(b, some[:min(i, len(some))]...)
	}
	return b
}

func (w *jsonWriter) sep(b []byte) []byte {
	n := len(w.first) - 1
	if n >= 0 {
		if !w.first[n] {
			b = append(b, ',', '\n')
		}
		w.first[n] = false
	}
	return b
}

// key writes a key: one of the stats document's own names, plain ASCII
// that needs no escaping.
func (w *jsonWriter) key(b []byte, key string) []byte {
	b = w.tabs(w.sep(b))
	b = append(b, '"')
	b = append(b, key...)
	return append(b, '"', ':')
}

func (w *jsonWriter) open(key string, brace byte) {
	b := w.b
	if key != "" {
		b = w.key(b, key)
	} else {
		b = w.sep(b)
		if brace == '{' && w.depth > 0 {
			b = w.tabs(b)
		}
	}
	w.b = append(b, brace, '\n')
	w.depth++
	w.first = append(w.first, true)
}

func (w *jsonWriter) close(brace byte) {
	b := append(w.b, '\n')
	w.depth--
	w.first = w.first[:len(w.first)-1]
	w.b = append(w.tabs(b), brace)
}

func (w *jsonWriter) str(key, val string) {
	w.b = appendJSONString(w.key(w.b, key), val)
}

func (w *jsonWriter) num(key string, n int64) {
	w.b = strconv.AppendInt(w.key(w.b, key), n, 10)
}

func (w *jsonWriter) item(val string) {
	w.b = appendJSONString(w.sep(w.b), val)
}

// appendJSONString quotes s as a JSON string. Names come from the file
// system, which allows any byte but '/' and NUL: each byte that is not
// part of valid UTF-8 becomes \ufffd, as Go's encoding/json writes it, so
// the document stays valid JSON for strict clients whatever a file is
// called.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	done := 0 // s[:done] is in b
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < utf8.RuneSelf && c != '"' && c != '\\' {
			i++ // copied with the run it is in
			continue
		}
		b = append(b, s[done:i]...)
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
			i++
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', "0123456789abcdef"[c>>4], "0123456789abcdef"[c&15])
			i++
		default:
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n == 1 {
				b = append(b, `\ufffd`...)
			} else {
				b = append(b, s[i:i+n]...)
			}
			i += n
		}
		done = i
	}
	b = append(b, s[done:]...)
	return append(b, '"')
}

// validUTF8 is s with each byte that is not part of valid UTF-8 replaced
// by U+FFFD (one per byte, as appendJSONString does).
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// termSafe is a name as the --status table prints it: valid UTF-8, and no
// control bytes, so a file name cannot send escape sequences to the
// operator's terminal.
func termSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 {
			return '?'
		}
		return r
	}, validUTF8(s))
}

func (s *statsSnapshot) render() []byte {
	doc, _ := s.renderTo(nil)
	return doc
}

// statsChunk is how much of a document is rendered before it is sent,
// when it goes straight to a client: with 1,000 vassals the document is
// half a megabyte, which every request would otherwise allocate whole and
// leave behind, and at the idle pace (idleGCPercent) nearly every request
// would set off a collection.
const statsChunk = 64 << 10

// sendTo writes the document to out as it is rendered.
func (s *statsSnapshot) sendTo(out io.Writer) error {
	_, err := s.renderTo(out)
	return err
}

// renderTo renders the document: into the returned bytes with no out, or
// to out a chunk at a time.
func (s *statsSnapshot) renderTo(out io.Writer) ([]byte, error) {
	size := 1024 + len(s.vassals)*560
	if out != nil {
		size = min(size, statsChunk+4096)
	}
	w := &jsonWriter{b: make([]byte, 0, size)}
	w.open("", '{')
	w.str("version", uwsgiVersion())
	w.num("pid", int64(s.pid))
	w.num("uid", int64(s.uid))
	w.num("gid", int64(s.gid))
	w.str("cwd", s.cwd)
	w.open("emperor", '[')
	for _, m := range s.monitors {
		w.item(m)
	}
	w.close(']')
	w.num("emperor_tyrant", int64(b2i(s.tyrant)))
	w.num("throttle_level", 0)
	w.open("vassals", '[')
	figures := cgroupFigures.getAll(s.cgroupDirs, s.vassals)
	for i := range s.vassals {
		s.vassals[i].render(w, figures[i])
		if out != nil && len(w.b) >= statsChunk {
			if _, err := out.Write(w.b); err != nil {
				return nil, err
			}
			w.b = w.b[:0]
		}
	}
	w.close(']')
	w.open("blacklist", '[')
	for _, b := range s.blacklist {
		w.open("", '{')
		w.str("id", b.id)
		w.num("throttle_level", b.throttleMs)
		w.num("attempt", int64(b.attempt))
		w.num("first_attempt", b.first)
		w.num("last_attempt", b.last)
		w.close('}')
	}
	w.close(']')
	w.close('}')
	if out != nil {
		_, err := out.Write(w.b)
		return nil, err
	}
	return w.b, nil
}

// render writes the vassal's record, with the figures of its cgroup.
func (v *vassalStat) render(w *jsonWriter, figures cgroupValues) {
	w.open("", '{')
	w.str("id", v.id)
	w.num("pid", int64(v.pid))
	w.num("born", v.born)
	w.num("last_mod", v.lastMod)
	w.num("last_heartbeat", v.lastHeartbeat)
	w.num("loyal", int64(b2i(v.loyal)))
	w.num("ready", int64(b2i(v.ready)))
	w.num("accepting", int64(b2i(v.accepting)))
	w.num("last_loyal", v.lastLoyal)
	w.num("last_ready", v.lastReady)
	w.num("last_accepting", v.lastAccepting)
	w.num("first_run", v.firstRun)
	w.num("last_run", v.lastRun)
	w.num("cursed", v.cursed)
	w.num("zerg", int64(b2i(v.zerg)))
	w.str("on_demand", v.onDemand)
	w.num("uid", int64(v.uid))
	w.num("gid", int64(v.gid))
	w.str("monitor", v.monitor)
	w.num("respawns", int64(v.respawns))
	// Beyond uWSGI's schema; its clients ignore unknown keys.
	w.str("last_exit", v.lastExit)
	w.str("restart_reason", v.lastReason)
	w.num("next_retry", v.nextRetry)
	for c, x := range figures {
		if x != absent {
			w.num(cgroupCounters[c].key, x)
		}
	}
	w.close('}')
}

// cgroupCounters are the figures the stats and /metrics show of a
// vassal's cgroup: CPU time always, memory and processes where those
// controllers are on (memory from a v1 hierarchy on a hybrid host). They cover the vassal's whole tree, daemons
// included, over all its respawns.
var cgroupCounters = [...]struct{ file, key string }{
	{"cpu.stat", "cgroup_cpu_usec"}, {"memory.current", "cgroup_memory_bytes"}, {"pids.current", "cgroup_pids"},
}

// cgroupValues are a cgroup's cgroupCounters, in their order.
type cgroupValues [len(cgroupCounters)]int64

// absent is a figure that is not there, for a vassal without a cgroup or
// without the controller.
const absent = -1 << 63

// cgroupFigures keeps the counters of vassals' cgroups for the stats
// renderers (off the loop, several at once): reading cpu.stat makes the
// kernel flush its per-CPU statistics, about 40 ms for 1,000 vassals, so a
// document is rendered from the figures read last, and when they are over
// a second old one goroutine reads them again for the next documents. A
// cgroup seen for the first time, or not asked for in ten seconds (a
// scraper's next visit), is read at once: nobody gets figures that old.
var cgroupFigures = cgroupCache{figures: map[string]*cgroupEntry{}}

type cgroupCache struct {
	mu         sync.Mutex
	figures    map[string]*cgroupEntry // by the vassal cgroup's name below the emperor's (v.NAME)
	refreshing bool                    // a goroutine is reading them again; it clears this when done
}

type cgroupEntry struct {
	_      noCompare
	values cgroupValues
	at     time.Time
	seen   bool // asked for since the last refresh: cgroups nobody asks for are dropped
}

// getAll returns the figures of each vassal's cgroup below dir (absent
// without one), under one lock for the whole document. The figures are
// kept by the cgroup's name below dir: one emperor's, the only one in the
// process.
func (c *cgroupCache) getAll(dirs cgroupDirs, vs []vassalStat) []cgroupValues {
	out := make([]cgroupValues, len(vs))
	var unread []int // new, or not asked for in ten seconds: read now
	refresh := false
	now := time.Now()
	c.mu.Lock()
	for i := range vs {
		out[i] = cgroupValues{absent, absent, absent}
		if vs[i].cgroup == "" {
			continue
		}
		e := c.figures[vs[i].cgroup]
		if e == nil || now.Sub(e.at) > 10*time.Second {
			unread = append(unread, i)
			continue
		}
		e.seen = true
		out[i] = e.values
		refresh = refresh || now.Sub(e.at) > time.Second
	}
	c.mu.Unlock()
	if len(unread) == 0 && !refresh {
		return out
	}
	for _, i := range unread {
		out[i] = readCgroupFigures(dirs, vs[i].cgroup)
	}
	c.mu.Lock()
	for _, i := range unread {
		c.figures[vs[i].cgroup] = &cgroupEntry{values: out[i], at: time.Now(), seen: true}
	}
	if refresh && !c.refreshing {
		c.refreshing = true
		go c.refresh(dirs)
	}
	c.mu.Unlock()
	return out
}

// refresh reads again every cgroup asked for since the last refresh and
// forgets the others (their vassals are gone).
func (c *cgroupCache) refresh(dirs cgroupDirs) {
	c.mu.Lock()
	var names []string
	for name, e := range c.figures {
		if e.seen {
			names = append(names, name)
		} else {
			delete(c.figures, name)
		}
	}
	c.mu.Unlock()
	fresh := make([]cgroupValues, len(names))
	for i, name := range names {
		fresh[i] = readCgroupFigures(dirs, name)
	}
	c.mu.Lock()
	for i, name := range names {
		c.figures[name] = &cgroupEntry{values: fresh[i], at: time.Now()}
	}
	c.refreshing = false
	c.mu.Unlock()
}

// readCgroupFigures reads the counters of the vassal cgroup name, its
// memory from v1 where the emperor keeps one there.
func readCgroupFigures(dirs cgroupDirs, name string) (values cgroupValues) {
	var buf [512]byte // the first line is all that is read: cpu.stat's usage_usec, or the number
	for c := range cgroupCounters {
		values[c] = absent
		file := dirs.v2 + "/" + name + "/" + cgroupCounters[c].file
		switch ctl, _, _ := strings.Cut(cgroupCounters[c].file, "."); {
		case ctl == "memory" && dirs.mem1 != "":
			file = dirs.mem1 + "/" + name + "/memory.usage_in_bytes"
		case ctl != "cpu" && !strings.Contains(dirs.enable, "+"+ctl):
			continue // not on for the vassals' cgroups: no file to look for
		}
		line := readKernelFile(file, buf[:])
		if line == nil {
			continue
		}
		if i := bytes.IndexByte(line, '\n'); i >= 0 {
			line = line[:i]
		}
		line = bytes.TrimPrefix(line, []byte("usage_usec "))
		if x, err := strconv.ParseInt(string(line), 10, 64); err == nil {
			values[c] = x
		}
	}
	return values
}

// prometheus renders the text exposition format (0.0.4) by hand.
func (s *statsSnapshot) prometheus() []byte {
	var b []byte
	metric := func(name, typ, help string) {
		b = append(b, "# HELP "+name+" "+help+"\n# TYPE "+name+" "+typ+"\n"...)
	}
	sample := func(name, labels string, v int64) {
		b = append(b, name...)
		if labels != "" {
			b = append(b, '{')
			b = append(b, labels...)
			b = append(b, '}')
		}
		b = append(b, ' ')
		b = strconv.AppendInt(b, v, 10)
		b = append(b, '\n')
	}
	var n [numVassalStates]int64
	for _, v := range s.vassals {
		n[stateOf(v.pid, v.onDemand)]++
	}
	metric("emperor_vassals", "gauge", "Vassals by state.")
	sample("emperor_vassals", `state="running"`, n[stateRunning])
	sample("emperor_vassals", `state="throttled"`, n[stateThrottled])
	sample("emperor_vassals", `state="on_demand"`, n[stateOnDemand])
	figures := cgroupFigures.getAll(s.cgroupDirs, s.vassals)
	labels := make([]string, len(s.vassals))
	for i := range s.vassals {
		labels[i] = `vassal="` + promLabel(s.vassals[i].id) + `"`
	}
	perVassal := []struct {
		name, typ, help string
		value           func(v *vassalStat, cg *cgroupValues) int64
	}{
		{"emperor_vassal_up", "gauge", "1 when the vassal has a running process.", func(v *vassalStat, cg *cgroupValues) int64 { return int64(b2i(v.pid > 0)) }},
		{"emperor_vassal_loyal", "gauge", "1 once the vassal sent byte 17.", func(v *vassalStat, cg *cgroupValues) int64 { return int64(b2i(v.loyal)) }},
		{"emperor_vassal_ready", "gauge", "1 once the vassal sent byte 1.", func(v *vassalStat, cg *cgroupValues) int64 { return int64(b2i(v.ready)) }},
		{"emperor_vassal_accepting", "gauge", "1 once the vassal sent byte 5.", func(v *vassalStat, cg *cgroupValues) int64 { return int64(b2i(v.accepting)) }},
		{"emperor_vassal_starts_total", "counter", "Processes started for the vassal.", func(v *vassalStat, cg *cgroupValues) int64 { return int64(v.starts) }},
		{"emperor_vassal_reloads_total", "counter", "Reloads (uWSGI's respawns).", func(v *vassalStat, cg *cgroupValues) int64 { return int64(v.respawns) }},
		{"emperor_vassal_last_exit_code", "gauge", "Exit code of the last process, minus the signal number if killed.", func(v *vassalStat, cg *cgroupValues) int64 { return int64(v.exitCode) }},
		{"emperor_vassal_cpu_microseconds_total", "counter", "CPU time of the vassal's cgroup.", func(v *vassalStat, cg *cgroupValues) int64 { return cg[0] }},
		{"emperor_vassal_memory_bytes", "gauge", "Memory of the vassal's cgroup.", func(v *vassalStat, cg *cgroupValues) int64 { return cg[1] }},
		{"emperor_vassal_processes", "gauge", "Processes in the vassal's cgroup.", func(v *vassalStat, cg *cgroupValues) int64 { return cg[2] }},
	}
	for _, m := range perVassal {
		metric(m.name, m.typ, m.help)
		for i := range s.vassals {
			if x := m.value(&s.vassals[i], &figures[i]); x != absent {
				sample(m.name, labels[i], x)
			}
		}
	}
	metric("emperor_vassal_throttle_milliseconds", "gauge", "Blacklist throttle level of a crash-looping vassal.")
	for _, bl := range s.blacklist {
		sample("emperor_vassal_throttle_milliseconds", `vassal="`+promLabel(bl.id)+`"`, bl.throttleMs)
	}
	return b
}

// promLabel escapes a label value; the exposition format wants UTF-8, and
// a name may be any bytes.
func promLabel(s string) string { return escapeBytes(validUTF8(s), "\\\"\n", `\\`, `\"`, `\n`) }

// bindStats starts the stats server, or retries every few seconds when its
// address is taken: no stats is no reason to stop governing.
func (e *emperor) bindStats() {
	if err := e.startStats(); err != nil {
		logRaw("[emperor] %v: retrying in 5 seconds", err)
		e.timers.push(timerItem{at: time.Now().Add(5 * time.Second), kind: tStatsRetry})
	}
}

// statsServer is what the stats server's goroutines hold: they run off
// the loop, and the only thing they get from it is a snapshot, asked for
// over req. Rendering and writing happen on their side, so a client that
// never reads costs the loop nothing.
type statsServer struct {
	req     chan<- chan *statsSnapshot
	done    <-chan struct{}
	timeout time.Duration // per client: to send an HTTP request, and to take the answer
}

func (e *emperor) statsServer() statsServer {
	return statsServer{req: e.in.statsReq, done: e.in.done, timeout: e.cfg.socketTimeout}
}

// chmodSocket gives a stats UNIX socket chmod-socket's mode, as uWSGI's
// bind does.
func (e *emperor) chmodSocket(path string) {
	if m := e.cfg.chmodSocket; m != 0 {
		if m == 0o666 {
			logRaw("chmod() socket to 666 for lazy and brave users")
		}
		if err := os.Chmod(path, os.FileMode(m)); err != nil {
			logRaw("[emperor] chmod-socket %s: %v", path, err)
		}
	}
}

// startStats binds the stats server: http://host:port is HTTP over TCP,
// host:port raw TCP, anything else a UNIX socket path. Both forms share
// the listener, the accepting goroutine and the cap on clients; the raw
// form writes the JSON at once, the HTTP form reads a request first.
func (e *emperor) startStats() error {
	addr, isHTTP := strings.CutPrefix(e.cfg.stats, "http://")
	network := "tcp"
	if !isHTTP {
		network = socketNetwork(addr)
	}
	if network == "unix" {
		_ = os.Remove(addr)
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		return fmt.Errorf("emperor-stats %s: %w", e.cfg.stats, err)
	}
	if network == "unix" {
		e.cfg.daemon.createdSockets = append(e.cfg.daemon.createdSockets, addr)
		e.chmodSocket(addr)
	}
	srv := e.statsServer()
	clients := newStatsClients()
	answer := srv.answer
	if e.cfg.statsHTTP && !isHTTP {
		answer = func(conn net.Conn) { srv.answerStatsHTTP(conn, clients) }
	}
	if isHTTP {
		logRaw("*** Emperor stats server enabled on http://%s ***", addr)
		answer = func(conn net.Conn) { srv.answerHTTP(conn, clients) }
	} else {
		fd := -1
		if sc, ok := ln.(syscall.Conn); ok {
			if rc, err := sc.SyscallConn(); err == nil {
				_ = rc.Control(func(f uintptr) { fd = int(f) })
			}
		}
		logRaw("*** Emperor stats server enabled on %s fd: %d ***", addr, fd)
	}
	go srv.serve(ln, clients, answer)
	go func() { <-srv.done; ln.Close() }()
	return nil
}

// maxStatsClients is how many stats clients are served at once, each with
// a descriptor and a goroutine of its own; more wait in the kernel's accept
// queue. Under a low RLIMIT_NOFILE they get a quarter of it at most, and a
// client accepted when fewer than statsFDReserve descriptors are left below
// the limit is closed at once: the descriptors are for vassals (a spawn
// takes a socketpair, a pipe and more), and a crowd of idle clients must
// never make a spawn fail with EMFILE.
const (
	maxStatsClients = 64
	statsFDReserve  = 16
)

func newStatsClients() *statsClients {
	c := &statsClients{cap: maxStatsClients}
	if soft, _, err := nofileLimit(); err == nil && soft < 1<<30 {
		c.nofile = int(soft)
		c.cap = max(1, min(maxStatsClients, c.nofile/4))
	}
	c.slots, c.becameIdle = make(chan struct{}, c.cap), make(chan struct{}, 1)
	return c
}

// statsClients is the cap on clients, shared by the accepting goroutine
// and the clients' own (hence the one lock in this file). A client that is
// still sending its HTTP request, or has had its answer and is only being
// let go, is idle: it costs a descriptor and nothing else, so when every
// slot is taken the one idle longest is cut off to make room. A crowd of
// connections that never send anything cannot lock real clients out for
// their whole timeout, only compete with them for slots.
type statsClients struct {
	slots      chan struct{} // one token per client being served
	becameIdle chan struct{} // a token: a client became idle since admit last looked
	cap        int           // how many: maxStatsClients, less under a low fd limit
	nofile     int           // RLIMIT_NOFILE, 0 if unknown
	mu         sync.Mutex    // guards idle
	idle       []net.Conn    // idle clients, the next to be cut off first
	// Only the accepting goroutine uses these: when it last logged a
	// shortage of descriptors (once per 10 s at most).
	lastShort time.Time
}

// shortOfFDs reports whether conn took one of the last statsFDReserve
// descriptors. The kernel hands out the lowest free number, so a number
// that high means every one below it is in use.
func (c *statsClients) shortOfFDs(conn net.Conn) bool {
	sc, ok := conn.(syscall.Conn)
	if !ok || c.nofile == 0 {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	fd := -1
	_ = rc.Control(func(f uintptr) { fd = int(f) })
	return fd >= c.nofile-statsFDReserve
}

// logShort logs a shortage of descriptors, once per 10 seconds at most.
func (c *statsClients) logShort(what string) {
	if now := time.Now(); now.Sub(c.lastShort) >= 10*time.Second {
		c.lastShort = now
		logRaw("[emperor] stats server: %s: descriptors are kept for vassals (RLIMIT_NOFILE %d)", what, c.nofile)
	}
}

// admit takes a slot for a new client, cutting off an idle one if none is
// free; it waits only while every client is busy being written to (each
// for at most its write timeout). A client admitted a moment ago may not
// have said it is idle yet: when none is idle, admit waits for a slot or
// for a client to become idle, whichever comes first, rather than for a
// slot alone, which a crowd of clients that send nothing would hold for
// their whole timeout, one admission after another.
func (c *statsClients) admit() {
	for {
		select {
		case c.slots <- struct{}{}:
			return
		default:
		}
		c.mu.Lock()
		var cut net.Conn
		if len(c.idle) > 0 {
			cut, c.idle = c.idle[0], c.idle[1:]
		}
		c.mu.Unlock()
		if cut != nil {
			// A deadline in the past ends the client's pending read at
			// once; its goroutine then closes it and gives the slot back.
			_ = cut.SetReadDeadline(time.Unix(1, 0))
			c.slots <- struct{}{}
			return
		}
		select {
		case c.slots <- struct{}{}:
			return
		case <-c.becameIdle:
		}
	}
}

func (c *statsClients) leave() { <-c.slots }

// setIdle marks conn idle (first in line to be cut off when served
// already, last when it has just arrived) or, with idle false, busy.
func (c *statsClients) setIdle(conn net.Conn, idle, served bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i := slices.Index(c.idle, conn); i >= 0 {
		c.idle = slices.Delete(c.idle, i, i+1)
	}
	switch {
	case !idle:
		return
	case served:
		c.idle = append(c.idle, nil)
		copy(c.idle[1:], c.idle)
		c.idle[0] = conn
	default:
		c.idle = append(c.idle, conn)
	}
	select {
	case c.becameIdle <- struct{}{}:
	default: // admit has a hint already
	}
}

func (s statsServer) serve(ln net.Listener, clients *statsClients, answer func(net.Conn)) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			select {
			case <-s.done:
				return
			default:
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				clients.logShort("out of descriptors, not accepting for now")
			} else {
				logRaw("[emperor] stats server: %v", err)
			}
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if clients.shortOfFDs(conn) {
			conn.Close()
			clients.logShort("fewer than " + itoa(statsFDReserve) + " descriptors left, client closed at once")
			continue
		}
		clients.admit()
		go func() {
			defer clients.leave()
			answer(conn)
		}()
	}
}

// fetch asks the loop for a copy of its state.
func (s statsServer) fetch() *statsSnapshot {
	reply := make(chan *statsSnapshot, 1)
	select {
	case s.req <- reply:
	case <-s.done:
		return nil
	}
	select {
	case snap := <-reply:
		return snap
	case <-s.done:
		return nil
	}
}

// answerStatsHTTP is uWSGI's stats-http: once the client has sent
// something (its request, whatever it is, within socket-timeout), the JSON
// behind uWSGI's own header block. A client that sends nothing is let go
// without an answer.
func (s statsServer) answerStatsHTTP(conn net.Conn, clients *statsClients) {
	s.answerDocument(conn, clients, true, (*statsSnapshot).sendTo)
}

// answerDocument sends one rendered document, after the client's request
// and behind uWSGI's header block with withHTTP, and closes the connection.
func (s statsServer) answerDocument(conn net.Conn, clients *statsClients, withHTTP bool, send func(*statsSnapshot, io.Writer) error) {
	defer conn.Close()
	if withHTTP {
		// The deadline first: set after, it would undo a cut-off
		// that came between.
		_ = conn.SetReadDeadline(time.Now().Add(s.timeout))
		clients.setIdle(conn, true, false)
		var req [4096]byte
		n, _ := conn.Read(req[:])
		clients.setIdle(conn, false, false)
		if n <= 0 {
			return
		}
	}
	snap := s.fetch()
	if snap == nil {
		return
	}
	_ = conn.SetWriteDeadline(time.Now().Add(s.timeout))
	if withHTTP {
		if _, err := conn.Write([]byte("HTTP/1.0 200 OK\r\nConnection: close\r\nAccess-Control-Allow-Origin: *\r\nContent-Type: application/json\r\n\r\n")); err != nil {
			return
		}
	}
	_ = send(snap, conn)
}

func (s statsServer) answer(conn net.Conn) {
	defer conn.Close()
	snap := s.fetch()
	if snap == nil {
		return
	}
	_ = conn.SetWriteDeadline(time.Now().Add(s.timeout))
	_ = snap.sendTo(conn)
}

// The HTTP form is a minimal HTTP/1.0 and 1.1 server (RFC 9112): one
// request per connection, answered with Connection: close, GET and HEAD of
// / (the JSON) and /metrics (Prometheus text). A request head is a few
// hundred bytes from Prometheus, curl or a browser; these limits bound
// what one client can make the emperor hold.
const (
	httpMaxHead    = 8 << 10 // request line and header fields, in bytes
	httpMaxHeaders = 64      // header fields
)

// httpStatusText holds every status the server answers with.
var httpStatusText = map[int]string{
	200: "OK",
	400: "Bad Request",
	404: "Not Found",
	405: "Method Not Allowed",
	414: "URI Too Long",
	431: "Request Header Fields Too Large",
	505: "HTTP Version Not Supported",
}

// answerHTTP reads one request within the socket timeout and answers it.
// A client that sends nothing, or too slowly, is closed without an answer
// once the timeout has run out (or earlier, to make room for another).
func (s statsServer) answerHTTP(conn net.Conn, clients *statsClients) {
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(s.timeout))
	clients.setIdle(conn, true, false)
	req, status := readHTTPRequest(conn)
	clients.setIdle(conn, false, false)
	if status == 0 {
		return
	}
	resp := httpResponse{status: status}
	if status == 200 {
		snap := s.fetch()
		if snap == nil {
			return
		}
		resp = statsPage(snap, req.path)
	}
	_ = conn.SetWriteDeadline(time.Now().Add(s.timeout))
	if resp.write(conn, req.head) != nil {
		return
	}
	// Closing with unread bytes in the socket (a body, a pipelined
	// request) makes the kernel send a reset, which can destroy the answer
	// before the client has read it: say we are done and wait for the
	// client's end, reading at most what a head may hold, a timeout long.
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	_ = conn.SetReadDeadline(time.Now().Add(s.timeout))
	clients.setIdle(conn, true, true)
	_, _ = io.CopyN(io.Discard, conn, httpMaxHead)
	clients.setIdle(conn, false, false)
}

// statsPage is the answer for one of the two pages (the request's path is
// known good).
func statsPage(snap *statsSnapshot, path string) httpResponse {
	if path == "/metrics" {
		return httpResponse{status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8", body: snap.prometheus()}
	}
	return httpResponse{status: 200, contentType: "application/json", body: snap.render(),
		fields: "Access-Control-Allow-Origin: *\r\n"}
}

// httpRequest is what the server needs of a request.
type httpRequest struct {
	path string // the target's path, without a query
	head bool   // HEAD: the answer without its body
}

// readHTTPRequest reads a request head (through the empty line) from r
// and checks it. The status is what to answer: 200 for a good request of
// a page, an error status otherwise, 0 when the client went away or ran
// out of time first (nothing is answered). A body is never read.
func readHTTPRequest(r io.Reader) (httpRequest, int) {
	buf := make([]byte, httpMaxHead)
	n, start, lineStart, lines := 0, 0, 0, 0
	for {
		m, err := r.Read(buf[n:])
		for i := n; i < n+m; i++ {
			if buf[i] != '\n' {
				continue
			}
			empty := i == lineStart || i == lineStart+1 && buf[lineStart] == '\r'
			switch {
			case empty && lines == 0:
				// An empty line before the request line is to be
				// ignored (RFC 9112, 2.2).
				start = i + 1
			case empty:
				return parseHTTPRequest(buf[start : lineStart-1])
			case lines > httpMaxHeaders:
				return httpRequest{}, 431
			default:
				lines++
			}
			lineStart = i + 1
		}
		n += m
		if n == len(buf) {
			if lines == 0 {
				return httpRequest{}, 414 // the request line alone fills the limit
			}
			return httpRequest{}, 431
		}
		if err != nil {
			return httpRequest{}, 0
		}
	}
}

// parseHTTPRequest checks a request head (the request line and the header
// fields, separated by LF or CRLF) and returns the request and the status
// to answer it with.
func parseHTTPRequest(head []byte) (httpRequest, int) {
	lines := strings.Split(string(head), "\n")
	for i := range lines {
		lines[i] = strings.TrimSuffix(lines[i], "\r")
	}
	method, rest, ok1 := strings.Cut(lines[0], " ")
	target, version, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 || !isHTTPToken(method) || target == "" || !httpFieldOK(target) || strings.ContainsRune(target, ' ') {
		return httpRequest{}, 400
	}
	switch {
	case version == "HTTP/1.0" || version == "HTTP/1.1":
	case len(version) == 8 && strings.HasPrefix(version, "HTTP/") && isDigit(version[5]) && version[6] == '.' && isDigit(version[7]):
		return httpRequest{}, 505
	default:
		return httpRequest{}, 400
	}
	hosts := 0
	for _, line := range lines[1:] {
		name, value, ok := strings.Cut(line, ":")
		// A name must touch its colon, and obsolete line folding (a line
		// starting with white space) is refused (RFC 9112, 5.1 and 5.2).
		if !ok || !isHTTPToken(name) || !httpFieldOK(value) {
			return httpRequest{}, 400
		}
		if strings.EqualFold(name, "Host") {
			hosts++
		}
	}
	// HTTP/1.1 requires exactly one Host field; 1.0 allows none (RFC 9112, 3.2).
	if hosts > 1 || hosts == 0 && version == "HTTP/1.1" {
		return httpRequest{}, 400
	}
	// The absolute form (http://host/path) must be accepted too (3.2.2).
	if scheme, after, ok := strings.Cut(target, "://"); ok && (strings.EqualFold(scheme, "http") || strings.EqualFold(scheme, "https")) {
		target = "/"
		if i := strings.IndexByte(after, '/'); i >= 0 {
			target = after[i:]
		}
	}
	path, _, _ := strings.Cut(target, "?")
	switch {
	case !strings.HasPrefix(path, "/"):
		return httpRequest{}, 400
	case path != "/" && path != "/metrics":
		return httpRequest{}, 404
	case method != "GET" && method != "HEAD":
		return httpRequest{}, 405
	}
	return httpRequest{path: path, head: method == "HEAD"}, 200
}

// isHTTPToken: a method or field name, RFC 9110's token.
func isHTTPToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || isDigit(c) || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// httpFieldOK: no control characters but tab (a stray CR or a NUL is how
// requests get smuggled past a parser).
func httpFieldOK(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// httpResponse is an answer: every one says Connection: close and carries
// its length, and an error one a line of text.
type httpResponse struct {
	status      int
	contentType string
	fields      string // more header fields, each ending in CRLF
	body        []byte
}

func (r httpResponse) write(w io.Writer, headOnly bool) error {
	text := httpStatusText[r.status]
	if r.status != 200 {
		r.contentType = "text/plain; charset=utf-8"
		r.body = []byte(strconv.Itoa(r.status) + " " + text + "\n")
		if r.status == 405 {
			r.fields = "Allow: GET, HEAD\r\n"
		}
	}
	h := make([]byte, 0, 256)
	h = append(h, "HTTP/1.1 "+strconv.Itoa(r.status)+" "+text+"\r\nContent-Type: "+r.contentType+"\r\n"+r.fields+"Content-Length: "...)
	h = strconv.AppendInt(h, int64(len(r.body)), 10)
	h = append(h, "\r\nDate: "...)
	h = time.Now().UTC().AppendFormat(h, "Mon, 02 Jan 2006 15:04:05 GMT")
	h = append(h, "\r\nConnection: close\r\n\r\n"...)
	bufs := net.Buffers{h}
	if !headOnly {
		bufs = append(bufs, r.body)
	}
	_, err := bufs.WriteTo(w)
	return err
}

// socketNetwork is uWSGI's rule for a socket address: "host:port" (or
// ":port") is TCP, anything else a UNIX socket path.
func socketNetwork(addr string) string {
	if strings.Contains(addr, ":") {
		return "tcp"
	}
	return "unix"
}

// connectAndRead prints what a stats server sends (uWSGI's --connect-and-read).
// An http:// address is asked for its document with a plain GET.
func connectAndRead(addr string) ([]byte, error) {
	hostport, isHTTP := strings.CutPrefix(addr, "http://")
	hostport, _, _ = strings.Cut(hostport, "/")
	if !isHTTP {
		hostport = addr
	}
	conn, err := net.DialTimeout(socketNetwork(hostport), hostport, 5*time.Second)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if isHTTP {
		if _, err := fmt.Fprintf(conn, "GET / HTTP/1.0\r\nHost: %s\r\n\r\n", hostport); err != nil {
			return nil, err
		}
	}
	data, err := io.ReadAll(io.LimitReader(conn, maxStatsDocument))
	if err != nil || !isHTTP {
		return data, err
	}
	return httpBody(data)
}

// maxStatsDocument bounds what --status and --connect-and-read read: the
// document for 10,000 vassals is under 5 MB.
const maxStatsDocument = 256 << 20

// httpBody is the body of a complete HTTP/1.x response with status 200.
func httpBody(resp []byte) ([]byte, error) {
	head, body, ok := bytes.Cut(resp, []byte("\r\n\r\n"))
	if !ok {
		return nil, fmt.Errorf("not an HTTP response")
	}
	status, _, _ := bytes.Cut(head, []byte("\r\n"))
	if f := strings.Fields(string(status)); len(f) < 2 || !strings.HasPrefix(f[0], "HTTP/1.") || f[1] != "200" {
		return nil, fmt.Errorf("HTTP status %q", status)
	}
	return body, nil
}

// printStatus renders a running emperor's stats as one line per vassal.
// The document is read with the config language's JSON parser (uWSGI's
// stats are JSON too); encoding/json would double the binary's size for it.
func printStatus(w io.Writer, data []byte) error {
	doc, err := (&cfgJSON{t: &cfgText{name: "stats", data: data}}).document()
	if err == nil && doc.kind != '{' {
		err = errors.New("not an object")
	}
	if err != nil {
		return fmt.Errorf("not an emperor stats document: %w", err)
	}
	vassals := jsonField(doc, "vassals")
	fmt.Fprintf(w, "emperor pid %d, %d vassals\n", jsonInt(jsonField(doc, "pid")), len(vassals.vals))
	fmt.Fprintf(w, "%-32s %8s %-10s %5s %8s  %s\n", "VASSAL", "PID", "STATE", "LOYAL", "RELOADS", "LAST EXIT")
	for _, v := range vassals.vals {
		num := func(key string) int { return jsonInt(jsonField(v, key)) }
		str := func(key string) string { return jsonField(v, key).str }
		pid := num("pid")
		state := [numVassalStates]string{stateRunning: "running", stateThrottled: "throttled", stateOnDemand: "on-demand"}[stateOf(pid, str("on_demand"))]
		switch {
		case state != "running":
		case num("accepting") == 1:
			state = "accepting"
		case num("ready") == 1:
			state = "ready"
		}
		fmt.Fprintf(w, "%-32s %8d %-10s %5d %8d  %s\n", termSafe(str("id")), pid, state, num("loyal"), num("respawns"), termSafe(str("last_exit")))
	}
	return nil
}

// jsonField is the value of key in obj (the last, if repeated), or an
// empty value when obj is not an object or lacks it.
func jsonField(obj *cfgJSONValue, key string) *cfgJSONValue {
	if obj.kind == '{' {
		for i := len(obj.keys) - 1; i >= 0; i-- {
			if obj.keys[i] == key {
				return obj.vals[i]
			}
		}
	}
	return &cfgJSONValue{}
}

// jsonInt is an integer value (0 for anything else).
func jsonInt(v *cfgJSONValue) int {
	if v.kind != 'n' {
		return 0
	}
	n, _ := strconv.Atoi(v.str)
	return n
}

// ==== systemd and a parent emperor ======================================
// The sd_notify protocol is one datagram per state change to
// $NOTIFY_SOCKET, written by hand (no libsystemd). An emperor started by
// another emperor is its vassal and speaks the Emperor protocol upwards.

// systemdState is what systemd was last told. Invariant: statusPending is
// true while exactly one tStatus timer is queued.
type systemdState struct {
	_             noCompare
	notify        *sdNotifier // nil when not started by systemd with NOTIFY_SOCKET
	statusPending bool
	lastStatus    time.Time
}

// parentLink is our own emperor's protocol fd when we are a sub-emperor,
// -1 otherwise.
type parentLink struct {
	fd      int
	token   uint32
	hookPid int    // the hooks of a message from our emperor are running: act when this process ends
	pending byte   // the message they are for
	queue   []byte // messages that came meanwhile, in order
}

// parentLost stands for the end of our emperor's connection among its
// message bytes.
const parentLost = 255

// parentHookPhases name the hooks of each message, as uWSGI logs them.
var parentHookPhases = map[byte]string{0: "emperor-stop", 1: "emperor-reload", 2: "emperor-stop", parentLost: "emperor-lost"}

type sdNotifier struct {
	conn     *net.UnixConn
	watchdog time.Duration // interval between WATCHDOG=1, 0 when off
}

func newSDNotifier() *sdNotifier {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		logRaw("[emperor] NOTIFY_SOCKET %s: %v", path, err)
		return nil
	}
	n := &sdNotifier{conn: conn}
	if usec, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64); err == nil && usec > 0 {
		if pid := os.Getenv("WATCHDOG_PID"); pid == "" || pid == itoa(os.Getpid()) {
			n.watchdog = time.Duration(usec) * time.Microsecond / 2
		}
	}
	return n
}

func (n *sdNotifier) send(state string) {
	if n == nil {
		return
	}
	_ = n.conn.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = n.conn.Write([]byte(state))
}

func monotonicUsec() int64 {
	return time.Since(processStart).Microseconds() + processStartMono
}

var processStart = time.Now()

var processStartMono = monotonicNowUsec()

// statusLine is the one-line summary for systemd's STATUS= and --status.
func (e *emperor) statusLine() string {
	var n [numVassalStates]int
	for _, v := range e.vassals.live() {
		n[stateOf(v.pid, v.onDemand)]++
	}
	return fmt.Sprintf("The Emperor is governing %d vassals (%d running, %d throttled, %d on demand)",
		n[stateRunning]+n[stateThrottled]+n[stateOnDemand], n[stateRunning], n[stateThrottled], n[stateOnDemand])
}

// markStatusDirty arranges one STATUS= update, at most once a second, and
// only when something changed: an idle host costs nothing.
func (e *emperor) markStatusDirty() {
	if e.sd.notify == nil || e.sd.statusPending {
		return
	}
	e.sd.statusPending = true
	at := e.sd.lastStatus.Add(time.Second)
	if now := time.Now(); at.Before(now) {
		at = now
	}
	e.timers.push(timerItem{at: at, kind: tStatus})
}

func (e *emperor) sendStatus() {
	e.sd.statusPending = false
	e.sd.lastStatus = time.Now()
	e.sd.notify.send("STATUS=" + e.statusLine())
}

// Sub-emperor: an emperor started by another emperor is its vassal. It is
// loyal at once (as uWSGI's), reloads on byte 1 and stops on 0, 2 or EOF.
func (e *emperor) attachParentEmperor() {
	fd, err := strconv.Atoi(os.Getenv("UWSGI_EMPEROR_FD"))
	if err != nil || fd < 0 {
		return
	}
	os.Unsetenv("UWSGI_EMPEROR_FD")
	logRaw("*** has_emperor mode detected (fd: %d) ***", fd)
	logRaw("announcing my loyalty to the Emperor...")
	_, _ = syscall.Write(fd, []byte{17})
	_ = syscall.SetNonblock(fd, true)
	syscall.CloseOnExec(fd)
	e.parent.fd, e.parent.token = fd, e.poll.token()
	if err := e.poll.watcher.add(fd, e.parent.token); err != nil {
		logRaw("[emperor] watching my emperor's fd: %v", err)
	}
}

func (e *emperor) onParentReadable() {
	var buf [16]byte
	for {
		n, err := syscall.Read(e.parent.fd, buf[:])
		if err == syscall.EINTR {
			continue
		}
		if err == syscall.EAGAIN {
			e.poll.watcher.rearm(e.parent.fd, e.parent.token)
			return
		}
		if n <= 0 {
			logRaw("lost connection with my emperor !!!")
			e.poll.watcher.remove(e.parent.fd)
			syscall.Close(e.parent.fd)
			e.parent.fd = -1
			e.parentMessage(parentLost)
			return
		}
		for _, b := range buf[:n] {
			if b <= 2 {
				logVerbose("received message %d from emperor", b)
				e.parentMessage(b)
			}
		}
	}
}

// parentMessage acts on a message from our emperor (0 or 2: stop, 1:
// reload, parentLost): first its hooks (hook-emperor-stop, -reload, -lost),
// as a uWSGI master runs them before it acts, each run even when one before
// it failed. They run in a process of their own, so the loop goes on
// serving; the stop or reload comes when that process ends, and messages
// that come meanwhile wait their turn (a few: a reload asked for twice
// while one is pending is one reload).
func (e *emperor) parentMessage(msg byte) {
	if q := e.parent.queue; len(q) < 8 && (len(q) == 0 || q[len(q)-1] != msg) {
		e.parent.queue = append(q, msg)
	}
	e.parentNext()
}

// parentNext starts on the next waiting message, unless hooks run.
func (e *emperor) parentNext() {
	for e.parent.hookPid == 0 && len(e.parent.queue) > 0 {
		msg := e.parent.queue[0]
		e.parent.queue = e.parent.queue[1:]
		hooks := e.cfg.hooks.parentHooks[msg]
		if len(hooks) == 0 || e.shutdown.dying {
			e.parentAct(msg)
			continue
		}
		spec := asEmperorSpec{Phase: parentHookPhases[msg], Hooks: hooks, Binsh: binsh}.String()
		env := append(os.Environ(), asEmperorEnv+"="+spec) // a fresh copy each call
		pid, err := forkOnLoop(e.cfg.self, []string{e.cfg.self}, &syscall.ProcAttr{
			Dir: e.watch.startCwd, Env: env, Files: []uintptr{e.spawns.devnull.Fd(), 1, 2},
			Sys: &syscall.SysProcAttr{Setpgid: true},
		})
		if err != nil {
			logRaw("[emperor] hook-%s: %v", parentHookPhases[msg], err)
			e.parentAct(msg)
			continue
		}
		e.strays.helpers[pid] = ""
		e.parent.hookPid, e.parent.pending = pid, msg
	}
}

// parentHooksDone is the end of the hooks' process: now the message.
func (e *emperor) parentHooksDone(pid int) {
	if pid != 0 && pid == e.parent.hookPid {
		e.parent.hookPid = 0
		e.parentAct(e.parent.pending)
		e.parentNext()
	}
}

func (e *emperor) parentAct(msg byte) {
	if msg == 1 {
		e.reloadAll()
		return
	}
	e.ragnarok()
}

// onNotify maps sd_notify states onto the Emperor protocol, so a daemon
// that only speaks systemd's dialect is ready, heartbeats and stops like a
// uWSGI vassal: READY=1 is bytes 1, 5 and 17; WATCHDOG=1 is 26; STOPPING=1
// is 22. It still gets SIGTERM to stop: it cannot read the stop byte.
func (e *emperor) onNotify(m notifyMsg) {
	v := e.vassalOf(m.pid)
	if v == nil {
		return
	}
	spoke := v.spoke
	for _, line := range strings.Split(m.text, "\n") {
		switch line {
		case "READY=1":
			for _, b := range []byte{1, 5, 17} {
				e.onByte(v, b)
			}
		case "WATCHDOG=1":
			e.onByte(v, 26)
		case "STOPPING=1":
			e.onByte(v, 22)
		}
	}
	v.spoke = spoke
}

// vassalOf finds the vassal a process belongs to: itself, or its nearest
// ancestor that is a vassal.
func (e *emperor) vassalOf(pid int) *vassal {
	for i := 0; i < 32 && pid > 1; i++ {
		if v := e.vassals.byPid[pid]; v != nil {
			return v
		}
		pid = parentPid(pid)
	}
	return nil
}

// ==== Shutdown ==========================================================

// shutdownState: once dying is set (ragnarok) nothing is spawned or
// reloaded again, and the loop exits when the last vassal is reaped.
type shutdownState struct {
	_     noCompare
	dying bool
	again bool // a master's SIGHUP: run the emperor again once buried
	since time.Time
}

// ragnarok: stop every vassal, give them reload-mercy, then kill what is
// left, every descendant included, and exit.
func (e *emperor) ragnarok() {
	if e.shutdown.dying {
		left := e.cfg.reloadMercy - time.Since(e.shutdown.since)
		logRaw("[emperor] *** RAGNAROK ALREADY EVOKED (mercyless in %d seconds)***", int(left.Seconds()+0.5))
		return
	}
	e.shutdown.dying, e.shutdown.since = true, time.Now()
	logRaw("[emperor] *** RAGNAROK EVOKED ***")
	if e.shutdown.again {
		// To systemd a master's restart is a reload: the pid stays,
		// and the new image says READY=1.
		e.sd.notify.send(fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", monotonicUsec()))
	} else {
		e.sd.notify.send("STOPPING=1")
	}
	for _, v := range e.vassals.live() {
		if v.deleted {
			continue
		}
		if v.pid == 0 {
			e.deleteVassal(v)
			continue
		}
		if v.status != statusRunning {
			v.then = thenDelete
			continue
		}
		e.stop(v, thenDelete)
	}
	e.timers.push(timerItem{at: time.Now().Add(e.cfg.reloadMercy), kind: tMercy})
}

// runAgain executes this emperor's binary again on its command line, in
// the directory it started in, as uWSGI's master reloads on SIGHUP: the
// emperor's config is read anew, and every vassal (all stopped by now)
// starts again under it. The pid stays; a daemon stays detached.
func (e *emperor) runAgain() int {
	// A stop that came while the vassals were buried wins over the
	// restart. From here on one takes its default action: there is nothing
	// left to stop but this process, and a signal caught now would be lost
	// in the exec.
	signal.Reset(syscall.SIGINT, syscall.SIGTERM, syscall.SIGQUIT)
	for len(e.in.sigs) > 0 {
		if s := <-e.in.sigs; s == syscall.SIGINT || s == syscall.SIGTERM || s == syscall.SIGQUIT {
			return 0
		}
	}
	env := append(os.Environ(), reexecEnv+"="+reexecReload)
	if e.cfg.daemon.daemonize != "" {
		env = append(env, daemonEnv+"=0") // detached already
	}
	err := os.Chdir(e.cfg.startDir)
	if err == nil {
		logRaw("[emperor] reloading: running %s again", os.Args[0])
		err = syscall.Exec(reexecPath(), os.Args, env)
	}
	logRaw("[emperor] cannot reload: %v", err)
	return 1
}

func (e *emperor) noMercy() {
	for _, v := range e.vassals.live() {
		if v.pid > 0 && !v.deleted {
			logVerbose("[emperor] NO MERCY for vassal %s !!!", v.name)
			signalTree(v.pid, syscall.SIGKILL)
		}
	}
}

// bury ends the emperor once every vassal is reaped: kill and reap any
// descendant still around, then exit 0.
func (e *emperor) bury() int {
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		kids := childrenOfSelf()
		if len(kids) == 0 {
			break
		}
		for _, k := range kids {
			signalTree(k, syscall.SIGKILL)
		}
		select {
		case <-e.in.exits:
		case <-time.After(50 * time.Millisecond):
		}
	}
	// What is still populated stays, for the next emperor to clean.
	_ = rmdirTree(e.strays.cg.dir)
	if e.strays.cg.mem1 != "" {
		_ = rmdirTree(e.strays.cg.mem1)
	}
	if !e.shutdown.again {
		if err := e.userHooks("as-user-atexit"); err != nil {
			logRaw("[emperor] %v", err)
		}
	}
	close(e.in.done)
	e.cfg.daemon.cleanUp()
	logVerbose("The Emperor is buried.")
	e.sd.notify.send("STATUS=The Emperor is buried.")
	return 0
}

// ==== The emperor's configuration =======================================

// emperorConfig is everything the emperor reads from its options once.
type emperorConfig struct {
	monitors         []string
	freq             time.Duration
	throttleMs       int64
	maxThrottleMs    int64
	heartbeat        time.Duration
	curseTolerance   time.Duration
	reloadGrace      time.Duration // how long a vassal that never spoke has to read the reload byte
	statsHTTP        bool          // stats-http: the stats answer a request with HTTP headers
	removalGrace     time.Duration // how long a config must stay gone before its vassal is stopped
	reloadMercy      time.Duration
	nofollow         bool
	noBlacklist      bool
	noCgroups        bool // emperor-no-cgroups: the environment marker alone tracks vassals' processes
	master           bool // master: SIGHUP restarts the emperor, config and all, as uWSGI's master
	startDir         string
	opts             *Options // for the start-up hook phases, run as the emperor gets to each
	chmodSocket      uint32   // chmod-socket: the stats UNIX socket's mode; 0: left to the umask
	gracefulShutdown bool
	stats            string
	socketTimeout    time.Duration
	listen           int
	daemon           daemonConfig
	hooks            hookConfig
	companions       []companion // the routers and daemons of the emperor's own config
	masterStats      string      // the master's stats address, served by the emperor
	binary           string
	argv0            string
	uwsgi            string // binary-path: the uWSGI app vassals run with; "": one on PATH
	extraExt         []string
	before, after    []string // argv around the vassal config
	cloneFlags       uintptr
	tyrant           bool
	tyrantNofollow   bool
	vassalCaps       uint64
	self             string // this executable, for the pre-exec stage
	own              ownPrivileges
	odExt            string   // on-demand socket name read from NAME+odExt
	odDir            string   // on-demand UNIX socket odDir/BASENAME.socket
	odExec           string   // on-demand socket name printed by this command
	notifySocket     string   // NOTIFY_SOCKET given to vassals, "" when off
	ignored          []string // app server's options: logged once the log is open
	ownFiles         []string // the files emperor options were read from (see vassalEnv)
}

func loadEmperorConfig(o *Options) (*emperorConfig, error) {
	ignored, err := readOptionNames(o)
	if err != nil {
		return nil, err
	}
	binsh = o.All("binsh")
	for _, key := range optionsIn(o, useCosmetic) {
		logRaw("[emperor] option --%s is accepted but has no effect here", key)
	}
	c := &emperorConfig{
		ignored:          ignored,
		monitors:         o.All("emperor"),
		freq:             time.Duration(o.Int(3, "emperor-freq")) * time.Second,
		throttleMs:       int64(o.Int(1000, "emperor-throttle")),
		maxThrottleMs:    int64(o.Int(180000, "emperor-max-throttle")),
		heartbeat:        time.Duration(o.Int(30, "emperor-required-heartbeat")) * time.Second,
		curseTolerance:   time.Duration(o.Int(30, "emperor-curse-tolerance")) * time.Second,
		reloadGrace:      time.Duration(o.Int(1000, "emperor-reload-grace")) * time.Millisecond,
		statsHTTP:        o.Flag("stats-http"),
		removalGrace:     time.Duration(o.Int(250, "emperor-removal-grace")) * time.Millisecond,
		reloadMercy:      time.Duration(o.Int(0, "reload-mercy")) * time.Second,
		nofollow:         o.Flag("emperor-nofollow"),
		noBlacklist:      o.Flag("emperor-no-blacklist"),
		noCgroups:        o.Flag("emperor-no-cgroups"),
		master:           o.Flag("master"),
		gracefulShutdown: o.Flag("emperor-graceful-shutdown"),
		socketTimeout:    time.Duration(o.Int(4, "socket-timeout")) * time.Second,
		listen:           o.Int(100, "listen"),
		extraExt:         o.All("emperor-extra-extension", "emperor-extra-ext"),
	}
	for _, op := range o.List {
		if i := strings.LastIndexByte(op.Src, ':'); op.Key == "emperor" && i > 0 {
			c.ownFiles = append(c.ownFiles, op.Src[:i])
		}
	}
	c.startDir, _ = os.Getwd()
	c.opts = o
	if v, ok := o.Last("chmod-socket"); ok {
		// Bare (or 1) is uWSGI's 666; else exactly three octal digits.
		c.chmodSocket = 0o666
		if v != "" && v != "1" && v != "true" {
			n, err := strconv.ParseUint(v, 8, 32)
			if len(v) != 3 || err != nil {
				return nil, fmt.Errorf("invalid chmod value: %s", v)
			}
			c.chmodSocket = uint32(n)
		}
	}
	c.stats, _ = o.Last("emperor-stats", "emperor-stats-server")
	c.odExt, _ = o.Last("emperor-on-demand-extension", "emperor-on-demand-ext")
	c.odDir, _ = o.Last("emperor-on-demand-directory", "emperor-on-demand-dir")
	c.odExec, _ = o.Last("emperor-on-demand-exec")
	if p, ok := o.Last("vassals-notify-socket"); ok && p != "" {
		c.notifySocket, _ = filepath.Abs(p)
	}
	c.tyrant = o.Flag("emperor-tyrant")
	c.tyrantNofollow = o.Flag("emperor-tyrant-nofollow")
	c.self, _ = os.Executable()
	if list, ok := o.Last("emperor-cap", "vassals-cap", "vassal-cap"); ok && list != "" {
		var err error
		if c.vassalCaps, err = parseCaps(list); err != nil {
			return nil, err
		}
	}
	if err := c.own.load(o); err != nil {
		return nil, err
	}
	if err := c.daemon.load(o, c.own); err != nil {
		return nil, err
	}
	c.companions, c.masterStats = companions(o)
	if err := c.hooks.load(o); err != nil {
		return nil, err
	}
	if c.freq <= 0 {
		// uWSGI spins with freq 0; a busy loop helps nobody.
		c.freq = time.Second
	}
	if c.reloadMercy <= 0 {
		// uWSGI waits 30 s; 5 s is plenty for a brutal stop (byte 0) and
		// keeps a shutdown with an uncooperative vassal well under 10 s.
		c.reloadMercy = 5 * time.Second
	}
	if c.curseTolerance <= 0 {
		c.curseTolerance = 30 * time.Second
	}
	if err := c.resolveBinary(o); err != nil {
		return nil, err
	}
	c.buildVassalArgs(o)
	if list, ok := o.Last("emperor-use-clone"); ok && list != "" && list != "0" {
		if c.cloneFlags, err = parseCloneFlags(list); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Vassals are started as this binary, the vassal runner, which decides
// per vassal: a binary patch it runs itself, anything else (an app
// server's config) it hands to a real uWSGI: binary-path when given (and
// not this binary, which an operator may have installed as uwsgi), else
// one found on PATH.
func (c *emperorConfig) resolveBinary(o *Options) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("cannot find my own executable: %w", err)
	}
	c.binary, c.argv0 = self, self
	if bin, ok := o.Last("binary-path"); ok && bin != "" {
		path, err := lookPath(bin)
		if err != nil {
			return fmt.Errorf("binary-path %s: %w", bin, err)
		}
		if !sameFile(path, self) {
			c.uwsgi = path
		}
	}
	if w, ok := o.Last("emperor-wrapper"); ok && w != "" {
		if c.binary, err = lookPath(w); err != nil {
			return fmt.Errorf("emperor-wrapper %s: %w", w, err)
		}
		c.argv0 = w
	}
	return nil
}

// buildVassalArgs lays out the argv around the vassal config exactly as
// uWSGI does (core/emperor.c, uwsgi_emperor_spawn_vassal).
func (c *emperorConfig) buildVassalArgs(o *Options) {
	for _, v := range o.All("vassals-inherit-before") {
		c.before = append(c.before, "--inherit", v)
	}
	for _, v := range o.All("vassals-include-before") {
		c.before = append(c.before, "--include", v)
	}
	for _, v := range o.All("vassal-set", "vassals-set") {
		c.before = append(c.before, "--set", v)
	}
	for _, v := range o.All("vassals-inherit") {
		c.after = append(c.after, "--inherit", v)
	}
	for _, v := range o.All("vassals-include") {
		c.after = append(c.after, "--include", v)
	}
}

// configFlag picks the loader flag from the config name's suffix; an
// --emperor-extra-extension name is passed with --config.
func (c *emperorConfig) configFlag(name string) string {
	if c.extraExtension(name) {
		return "--config"
	}
	if kind := configKindByExt(name); kind != "" {
		return "--" + kind
	}
	return "--inherit"
}

func (c *emperorConfig) extraExtension(name string) bool {
	for _, ext := range c.extraExt {
		if ext != "" && strings.HasSuffix(name, ext) {
			return true
		}
	}
	return false
}

// validName decides which directory entries are vassal configs. Dot-files
// are left out too (editor locks, ConfigMap internals), which uWSGI does not.
func (c *emperorConfig) validName(name string) bool {
	base := filepath.Base(name)
	if len(base) >= 255 || strings.HasPrefix(base, ".") {
		return false
	}
	return configKindByExt(base) != "" || c.extraExtension(base)
}

// vassalEnv is the emperor's environment as vassals get it: without the
// variables that belong to the emperor's own parent, and with every
// UWSGI_VASSAL_X=v turned into UWSGI_X=v. Nor does a vassal get what made
// this an emperor: UWSGI_EMPEROR, or a UWSGI_ variable naming one of the
// files (own) an emperor option came from (UWSGI_INI=emperor.ini). It
// would read them as its own options and become an emperor of the same
// directory, its vassals in turn: uWSGI forks without end that way. (uWSGI 2.0.21 unsets the variable
// before it reads it, so it passes on whatever entry slid into its place.)
func vassalEnv(environ []string, own ...string) []string {
	drop := map[string]bool{preemptOffMarker: true, uwsgiBinaryEnv: true, daemonEnv: true, "UWSGI_RELOADS": true, "NOTIFY_SOCKET": true, "UWSGI_EMPEROR_FD": true,
		"UWSGI_EMPEROR_FD_CONFIG": true, "LISTEN_FDS": true, "LISTEN_PID": true, "LISTEN_FDNAMES": true,
		"WATCHDOG_USEC": true, "WATCHDOG_PID": true, vassalMarkerEnv: true, "UWSGI_EMPEROR": true}
	if os.Getenv(preemptOffMarker) != "" {
		drop["GODEBUG"] = true
	}
	rewritten := map[string]string{}
	var keep []string
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		switch {
		case drop[k], strings.HasPrefix(k, "UWSGI_") && slices.Contains(own, v):
		case strings.HasPrefix(k, "UWSGI_VASSAL_") && len(k) > len("UWSGI_VASSAL_"):
			rewritten["UWSGI_"+k[len("UWSGI_VASSAL_"):]] = v
		default:
			keep = append(keep, kv)
		}
	}
	out := keep[:0:0]
	for _, kv := range keep {
		k, _, _ := strings.Cut(kv, "=")
		if _, overridden := rewritten[k]; !overridden {
			out = append(out, kv)
		}
	}
	keys := make([]string, 0, len(rewritten))
	for k := range rewritten {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		out = append(out, k+"="+rewritten[k])
	}
	return out
}

// ownPrivileges is what the emperor drops to after binding its sockets.
type ownPrivileges struct {
	_        noCompare
	uid, gid int
	groups   []int // supplementary groups after the drop, as uWSGI sets them
	caps     uint64
	chroot   string
}

// drops tells whether there is a drop to make: ids or capabilities asked
// for, and root to drop them from. Like uWSGI, an emperor not started as
// root (or run again so after a master's SIGHUP) leaves them alone.
func (p ownPrivileges) drops() bool { return (p.uid >= 0 || p.caps != 0) && os.Getuid() == 0 }

func (p *ownPrivileges) load(o *Options) error {
	p.uid, p.gid = -1, -1
	var err error
	if u, ok := o.Last("uid"); ok && u != "" {
		var usr *account
		if usr, p.uid, err = lookupUser(u); err != nil {
			return err
		}
		if usr != nil {
			p.gid = usr.gid
		}
	}
	if g, ok := o.Last("gid"); ok && g != "" {
		if p.gid, err = lookupGroup(g); err != nil {
			return err
		}
	}
	if p.uid >= 0 && p.gid < 0 {
		p.gid = os.Getgid()
	}
	if p.gid >= 0 && p.uid < 0 {
		p.uid = os.Getuid()
	}
	if p.uid >= 0 {
		cred, err := credentialFor(o)
		if err != nil {
			return err
		}
		for _, g := range cred.Groups {
			p.groups = append(p.groups, int(g))
		}
	}
	if list, ok := o.Last("cap"); ok && list != "" {
		if p.caps, err = parseCaps(list); err != nil {
			return err
		}
	}
	p.chroot, _ = o.Last("chroot")
	return nil
}

// capNames are uWSGI's capability names (core/utils.c,
// uwsgi_build_cap), by capability number.
var capNames = []string{"chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill",
	"setgid", "setuid", "setpcap", "linux_immutable", "net_bind_service", "net_broadcast",
	"net_admin", "net_raw", "ipc_lock", "ipc_owner", "sys_module", "sys_rawio", "sys_chroot",
	"sys_ptrace", "sys_pacct", "sys_admin", "sys_boot", "sys_nice", "sys_resource", "sys_time",
	"sys_tty_config", "mknod", "lease", "audit_write", "audit_control", "setfcap",
	"mac_override", "mac_admin", "syslog", "wake_alarm", "block_suspend", "audit_read",
	"perfmon", "bpf", "checkpoint_restore"}

// parseCaps reads a capability list (names or numbers) into a mask.
func parseCaps(list string) (uint64, error) {
	var mask uint64
	for _, name := range strings.FieldsFunc(list, func(r rune) bool { return r == ',' || r == ' ' }) {
		n, err := strconv.Atoi(name)
		if err != nil {
			n = -1
			for i, c := range capNames {
				if c == strings.ToLower(strings.TrimPrefix(strings.ToLower(name), "cap_")) {
					n = i
				}
			}
		}
		if n < 0 || n > 63 {
			logRaw("[security] unknown capability: %s", name)
			continue
		}
		mask |= 1 << uint(n)
	}
	if mask == 0 {
		return 0, fmt.Errorf("[security] empty capabilities mask !!!")
	}
	return mask, nil
}

// ==== Options and help ==================================================

// The emperor knows two tables. uWSGI 2.0.21's own (every option of its
// core and of the plugins Debian ships, with how getopt reads it) is
// generated into uwsgiOptionTable; the emperor's, options, says what the
// emperor does with the options it acts on, and adds the few of its own.
// One rule follows, for the command line and every config format: an
// option the emperor acts on works; one it does not act on is an app
// server's, accepted (a vassal's config hands it to the uWSGI that runs
// it) and, in the emperor's own configuration, logged once as ignored; a
// name in neither table is an error that names the closest option.

// optionKind says how the command line reads an option.
type optionKind uint8

const (
	optValue    optionKind = iota // takes one argument; the last one given wins
	optFlag                       // takes none
	optOptional                   // an optional argument: only --name=v gives one
	optList                       // takes one argument; every one given counts
)

// optionUse is what the emperor does with an option it knows.
type optionUse uint8

const (
	useEmperor  optionUse = iota // read by the emperor or the vassal runner, or passed to uWSGI
	useCosmetic                  // accepted, with a warning that it has no effect here
)

// optionSpec is one option the emperor acts on, with what it does here.
// Its kind is uWSGI's; an option of the emperor's own, which uWSGI's
// table lacks, takes a value when it names one (arg), else none. --help
// lists them in table order.
type optionSpec struct {
	name     string
	use      optionUse
	arg, def string
	help     string
}

// options is everything the emperor knows about its options, in one place.
var options = []optionSpec{
	{"emperor", useEmperor, "DIR|GLOB", "", "watch a directory or glob pattern of vassal configs (repeatable)"},
	{"emperor-freq", useEmperor, "N", "3", "seconds between full rescans (inotify acts at once)"},
	{"emperor-throttle", useEmperor, "MS", "1000", "blacklist step for crash-looping vassals"},
	{"emperor-max-throttle", useEmperor, "MS", "180000", "blacklist ceiling"},
	{"emperor-no-blacklist", useEmperor, "", "off", "never throttle respawns"},
	{"emperor-required-heartbeat", useEmperor, "N", "30", "reload a heartbeating vassal silent for N s"},
	{"emperor-curse-tolerance", useEmperor, "N", "30", "seconds a stopping vassal may linger before SIGKILL"},
	{"emperor-reload-grace", useEmperor, "MS", "1000", "a vassal that never spoke the protocol and leaves the reload byte unread this long is restarted"},
	{"emperor-removal-grace", useEmperor, "MS", "250", "a config must stay gone this long before its vassal is stopped (deleted and written again: a reload)"},
	{"reload-mercy", useEmperor, "N", "5", "seconds vassals get at shutdown before SIGKILL"},
	{"emperor-nofollow", useEmperor, "", "off", "use the symlink's own mtime (touch --no-dereference)"},
	{"emperor-extra-extension", useEmperor, "EXT", "", "also accept configs ending in EXT (repeatable)"},
	{"emperor-stats", useEmperor, "ADDR", "", "stats server on host:port or a UNIX socket path"},
	{"emperor-pidfile", useEmperor, "PATH", "", "write the emperor pid"},
	{"emperor-graceful-shutdown", useEmperor, "", "off", "send byte 2 (graceful) instead of 0 to stop"},
	{"binary-path", useEmperor, "PATH", "self", "program run for each vassal"},
	{"emperor-wrapper", useEmperor, "PATH", "", "argv[0] for vassals instead of binary-path"},
	{"vassal-set", useEmperor, "K=V", "", "pass --set K=V to every vassal (repeatable)"},
	{"vassals-include", useEmperor, "F", "", "pass --include F after the vassal config"},
	{"vassals-include-before", useEmperor, "F", "", "pass --include F before the vassal config"},
	{"vassals-inherit", useEmperor, "F", "", "pass --inherit F after the vassal config"},
	{"vassals-inherit-before", useEmperor, "F", "", "pass --inherit F before the vassal config"},
	{"socket-timeout", useEmperor, "N", "4", "stats client timeout: to send an HTTP request, to read the answer"},
	{"emperor-tyrant", useEmperor, "", "off", "run each vassal as the owner of its config"},
	{"emperor-tyrant-nofollow", useEmperor, "", "off", "tyrant: the owner of a symlink, not of its target"},
	{"emperor-use-clone", useEmperor, "LIST", "", "new namespaces per vassal: fs,net,ipc,pid,uts,user"},
	{"vassals-cap", useEmperor, "LIST", "", "capability bounding set of vassals (setpcap kept)"},
	{"emperor-on-demand-extension", useEmperor, "EXT", "", "on-demand socket name read from NAME+EXT"},
	{"emperor-on-demand-directory", useEmperor, "DIR", "", "on-demand UNIX socket DIR/BASENAME.socket"},
	{"emperor-no-cgroups", useEmperor, "", "off", "track vassals by environment marker, not cgroups"},
	{"emperor-on-demand-exec", useEmperor, "CMD", "", "on-demand socket name printed by CMD \"NAME\""},
	{"vassals-notify-socket", useEmperor, "PATH", "", "give vassals NOTIFY_SOCKET: sd_notify READY/WATCHDOG/STOPPING"},
	{"uid", useEmperor, "USER", "", "the emperor drops to this user after binding its sockets"},
	{"gid", useEmperor, "GROUP", "", "the emperor drops to this group after binding its sockets"},
	{"cap", useEmperor, "LIST", "", "capabilities the emperor keeps after dropping to uid"},
	{"chroot", useEmperor, "DIR", "", "the emperor chroots after binding its sockets"},
	{"listen", useEmperor, "N", "100", "backlog of on-demand sockets"},
	{"connect-and-read", useEmperor, "ADDR", "", "print the stats document of a running emperor"},
	{"status", useEmperor, "ADDR", "", "one line per vassal of a running emperor"},
	{"version", useEmperor, "", "", "print the version"},
	{name: "emperor-stats-server", use: useEmperor, help: "same as --emperor-stats"},
	{name: "emperor-procname", use: useEmperor, help: "the command line ps shows for the emperor"},
	{name: "emperor-wrapper-override", use: useEmperor, help: "argv[0] for vassals, tried before emperor-wrapper"},
	{name: "emperor-wrapper-fallback", use: useEmperor, help: "argv[0] for vassals, tried when emperor-wrapper fails"},
	{name: "emperor-broodlord", use: useEmperor, help: "at most N zergs started at once (Broodlord)"},
	{name: "emperor-on-demand-ext", use: useEmperor, help: "same as --emperor-on-demand-extension"},
	{name: "emperor-on-demand-dir", use: useEmperor, help: "same as --emperor-on-demand-directory"},
	{name: "emperor-extra-ext", use: useEmperor, help: "same as --emperor-extra-extension"},
	{name: "emperor-cap", use: useEmperor, help: "same as --vassals-cap"},
	{name: "vassal-cap", use: useEmperor, help: "same as --vassals-cap"},
	{name: "emperor-proxy-socket", use: useEmperor, help: "a uWSGI vassal's option: logged, the vassal binds it"},
	{name: "vassals-set", use: useEmperor, help: "same as --vassal-set"},
	{name: "vassals-start-hook", use: useEmperor, help: "command run for each vassal before its exec"},
	{name: "vassals-stop-hook", use: useEmperor, help: "command run after each vassal is gone"},
	{name: "hook-emperor-start", use: useEmperor, help: "hook run once before the first scan"},
	{name: "hook-as-emperor", use: useEmperor, help: "hook run by the emperor after each vassal starts"},
	{name: "mount-as-emperor", use: useEmperor, help: "mount done by the emperor after each vassal starts"},
	{name: "umount-as-emperor", use: useEmperor, help: "umount done by the emperor after each vassal starts"},
	{name: "exec-as-emperor", use: useEmperor, help: "command run by the emperor after each vassal starts"},
	{name: "call-as-emperor", use: useEmperor, help: "refused: calls a C function of a uWSGI binary"},
	{name: "hook-as-vassal", use: useEmperor, help: "hook run in each vassal's process before its exec"},
	{name: "exec-as-vassal", use: useEmperor, help: "command run in each vassal's process before its exec"},
	{name: "mount-as-vassal", use: useEmperor, help: "mount done in each vassal's process before its exec"},
	{name: "umount-as-vassal", use: useEmperor, help: "umount done in each vassal's process before its exec"},
	{name: "call-as-vassal", use: useEmperor, help: "refused: calls a C function of a uWSGI binary"},
	{name: "call-as-vassal1", use: useEmperor, help: "refused: calls a C function of a uWSGI binary"},
	{name: "call-as-vassal3", use: useEmperor, help: "refused: calls a C function of a uWSGI binary"},
	{name: "call-as-emperor1", use: useEmperor, help: "refused: calls a C function of a uWSGI binary"},
	{name: "call-as-emperor2", use: useEmperor, help: "refused: calls a C function of a uWSGI binary"},
	{name: "call-as-emperor4", use: useEmperor, help: "refused: calls a C function of a uWSGI binary"},
	{name: "vassal-sos", use: useEmperor, help: "a uWSGI vassal's option: logged, the vassal sends the SOS"},
	{name: "vassal-sos-backlog", use: useEmperor, help: "a uWSGI vassal's option: logged, the vassal sends the SOS"},
	{name: "hook-emperor-stop", use: useEmperor, help: "as a sub-emperor: hook run when its emperor sends stop, before stopping"},
	{name: "hook-emperor-reload", use: useEmperor, help: "as a sub-emperor: hook run when its emperor sends reload, before reloading"},
	{name: "hook-emperor-lost", use: useEmperor, help: "as a sub-emperor: hook run when the connection to its emperor ends"},
	{name: "log-strftime", use: useCosmetic, arg: "FORMAT", help: "accepted, no effect here (log-date takes the format)"},
	{name: "ini", use: useEmperor, help: "load an ini config"},
	{name: "xml", use: useEmperor, help: "load an xml config"},
	{name: "json", use: useEmperor, help: "load a json config"},
	{name: "js", use: useEmperor, help: "load a json config"},
	{name: "yaml", use: useEmperor, help: "load a yaml config"},
	{name: "yml", use: useEmperor, help: "load a yaml config"},
	{name: "include", use: useEmperor, help: "include a config (any format)"},
	{name: "inherit", use: useEmperor, help: "use a config as a base, its values expanded last"},
	{name: "config", use: useEmperor, help: "load a config, format by its name"},
	{name: "set", use: useEmperor, help: "set an option, or a placeholder: K=V"},
	{name: "set-placeholder", use: useEmperor, help: "set a placeholder: K=V"},
	{name: "set-ph", use: useEmperor, help: "set a placeholder: K=V"},
	{name: "chdir", use: useEmperor, help: "the emperor's directory (vassal runner: the program's)"},
	{name: "env", use: useEmperor, help: "K=V in the emperor's environment, so its vassals' (runner: the program's)"},
	{name: "unenv", use: useEmperor, help: "unset K for the emperor and its vassals"},
	{name: "umask", use: useEmperor, help: "umask of the emperor and its vassals"},
	{name: "prio", use: useEmperor, help: "nice of the emperor and its vassals"},
	{name: "envdir", use: useEmperor, help: "load a daemontools envdir (emperor and vassals; runner: the program's)"},
	{name: "early-envdir", use: useEmperor, help: "same as --envdir, while the config is read"},
	{name: "flock", use: useEmperor, help: "lock FILE (held while running), exit if locked"},
	{name: "flock-wait", use: useEmperor, help: "lock FILE, waiting if locked"},
	{name: "print", use: useEmperor, help: "print a line while the config is read"},
	{name: "binsh", use: useEmperor, help: "the shell of command lines (hooks, daemons, a patch's line): the first executable one, else /bin/sh"},
	{name: "limit-nproc", use: useEmperor, help: "RLIMIT_NPROC of the emperor and its vassals"},
	{name: "chmod-socket", use: useEmperor, help: "mode of the stats UNIX socket (bare: 666)"},
	{name: "wait-for-fs-timeout", use: useEmperor, help: "seconds wait_for_* hooks wait (60)"},
	{name: "privileged-binary-patch", use: useEmperor, help: "vassal runner: program run as root instead of an app server"},
	{name: "privileged-binary-patch-arg", use: useEmperor, help: "vassal runner: command line run as root instead of an app server"},
	{name: "unprivileged-binary-patch", use: useEmperor, help: "vassal runner: program run after uid/gid instead of an app server"},
	{name: "unprivileged-binary-patch-arg", use: useEmperor, help: "vassal runner: command line run after uid/gid instead of an app server"},
	{name: "unshare", use: useEmperor, help: "new namespaces for the emperor and its vassals (runner: the program's)"},
	{name: "safe-fd", use: useEmperor, help: "a descriptor left open for vassals"},
	{name: "pidfile", use: useEmperor, help: "write the emperor pid before the privilege drop"},
	{name: "log-date", use: useEmperor, help: "prefix log lines with the date, or a strftime format"},
	{name: "logdate", use: useEmperor, help: "same as --log-date"},
	{name: "daemonize", use: useEmperor, help: "detach and log to FILE"},
	{name: "daemonize2", use: useEmperor, help: "same as --daemonize"},
	{name: "logto", use: useEmperor, help: "log to FILE (or udp host:port)"},
	{name: "logto2", use: useEmperor, help: "log to FILE after the privilege drop"},
	{name: "touch-logreopen", use: useEmperor, help: "reopen the log when FILE is touched"},
	{name: "pidfile2", use: useEmperor, help: "write the emperor pid after the privilege drop"},
	{name: "safe-pidfile", use: useEmperor, help: "write the pidfile atomically"},
	{name: "safe-pidfile2", use: useEmperor, help: "write pidfile2 atomically"},
	{name: "max-fd", use: useEmperor, help: "RLIMIT_NOFILE of the emperor and its vassals"},
	{name: "limit-as", use: useEmperor, help: "RLIMIT_AS of each vassal, MB"},
	{name: "logfile-chown", use: useEmperor, help: "the log file to the emperor's uid/gid"},
	{name: "log-reopen", use: useEmperor, help: "reopen the log on SIGHUP"},
	{name: "vacuum", use: useEmperor, help: "remove pidfiles and UNIX sockets at exit"},
	{name: "die-on-term", use: useEmperor, help: "stop on SIGTERM (the emperor always does)"},
	{name: "no-orphans", use: useEmperor, help: "vassals die with the emperor (always so here)"},
	{name: "http", use: useEmperor, help: "an HTTP router, run by the emperor's router companion (uWSGI)"},
	{name: "http-socket", use: useEmperor, help: "run by the emperor's router companion (uWSGI)"},
	{name: "master", use: useEmperor, help: "accepted: the emperor is its own master"},
	{name: "plugins", use: useEmperor, help: "plugins of the emperor's router companion"},
	{name: "plugin", use: useEmperor, help: "plugins of the emperor's router companion"},
	{name: "emperor-magic-exec", use: useEmperor, help: "an executable config is run for its output"},
	{name: "early-emperor", use: useEmperor, help: "accepted: the emperor starts at once anyway"},
	{name: "imperial-monitor-list", use: useCosmetic, help: "accepted, no effect here"},
	{name: "imperial-monitors-list", use: useCosmetic, help: "accepted, no effect here"},
	{name: "stats-http", use: useEmperor, help: "stats answer with HTTP headers"},
	{name: "stats-minified", use: useCosmetic, help: "accepted, no effect here"},
	{name: "stats-min", use: useCosmetic, help: "accepted, no effect here"},
	{name: "show-config", use: useEmperor, help: "log the options as read"},
	{name: "help", use: useEmperor, help: "this list"},
	{name: "strict", use: useEmperor, help: "refuse names that are no option"},
}

// uwsgiOptionTable is uWSGI 2.0.21's option table, generated from
// testdata/uwsgi-2.0.21-options.tsv by TestGenerateOptionTable: the
// options sorted by name, each one byte for how many leading bytes its
// name shares with the one before ('0' + n), the rest of its name, then
// an upper-case letter (no option name has one) for its kind: V value, F
// flag, O optional argument, L list (a value that may be given again);
// W G P M say the same and that its one-letter form follows. It is
// byte-pair encoded: uwsgiOptionPairs is a list of three bytes each, a
// byte and the two it stands for in uwsgiOptionTable, each of which may
// stand for two more.
// BEGIN generated option table
const uwsgiOptionTable = "" +
	"0\xb9\x03\xddt\x11\xd3Ga1dd\x1c\xe6\x10\x92ڷ\x8cd\xb7X\x17 1f\xa1-\x88ue\x03\x1c\xac\xc9hook\xa6l\xe5\xb8[\x80\x9bNc" +
	"X|\x83fd\x15\x88\x83]\xe9\x12-\xdceue\x15og\x15qN\x14t\x13c\x15sg\xb66\xf5gfa\x99\t5\x1f]\x89\rw\x8b\xf8\x01\x0e1" +
	"sy\xb3\\\xc2\xe6\x1c\x05t\vlYa\xda\x05\x15da\xda\x05L=2\xa6,o\xdfc\x8f\x14\xbcwe\xb2h\x0f4.F0\xb0\x9b\xba\xe5\xb7t\xdd\x10" +
	"dep\xcf\\\f\x1ay\xb5p\x12dY\x1da)\xdbh\x96sh\xa6l\x80]\\#y\xe7\x17-w\x1an\xc3\\r,\x19-\x85\xc6`d\xa6\xa2\xb1\x11" +
	"*eWb2\x18d\x7flug\fV0c\xe6\x045[\r\b\xde6\"pi\x02샗\xe8pi\x02\x8a\x02p\at`\x02\x8b-\x92\xdas\x8a\x03" +
	"o\x02\xd7\x11y\xb3)y\xb3\x83udp-n#!:s\xa4\x15s\x10la\x03\xf8\x8b\xbc2\xd5ll\xfb\xf0\xf9\xbe1\xbe2\xbe4\xad\xfd\xfc\x82 <" +
	"\x06t\"i\xfcva\x91\x19\xc91\xc93\x15|\xb8\fǸ\xf4\xb5\x90:\x93N\x02\xb5\x909\x93\xb7\xb9l\x042pZrb\x05N\xec)h\x84\x8fm\x10" +
	"d\xaa\x0e7\xc0\xcale\x06vg)\x87x\xe7try)\x8fm\x10\xe3've\x9do-\xf7s\xa5\xe3'v\x10\x8f\x14sF9tryY\xf2ay" +
	"\x9eoo\x0f7\x9a7\x82\x10\x14t\x13cs\x89t\xef蟴s&flags&\x8cL3\xba\rw\x8b\xe8\t5sy\xb3/ax\x06\xc2\xf0t" +
	"s{b\xa2\xb1\xb64c\rs\x10\x03d\f\xc6-eof{do-\x97t-k\x18l\xc6-\x01r\a{f\vmYoc\v\xaa{Xlp " +
	"4\fd\"\xb7.\x16b\xb7m|-Xlp 5#eGc4o\x98m*eF<d{\xdbh-\ffo{saf!4\x9a4\xa3\xf5\t" +
	"2\vupN\xd9\xc8\x047\xc1\t1hd\x8d\xaf2Ze|\xbc\x01)\xbago\xcb-]F<\x1f]\x9db\x82ynes\x1f\xb0\x9b\xba\x01\x0fIm" +
	"\x99\np\x16\x01VIn\x05z\x01oVI\x03epVA\x87xVB\fVB\x99\np\x16\x01VAp\x12\x19tyVA}bo\xf5\x9d\fi\n" +
	"\x19\x9e]\x9do}.\x9ers\x1f\x16m\x92\x95\x1adVBsof\x0f8\x03ep\x96\b\x1c$XO6\f\xa1v\x19\x83m\x1bn\t;po\f\t" +
	"6\x03a\nc\xcbYoc\v\xaa\x89m#PC5\x11\xd3PC2own\x11%\x0f2\xfd\x0f2\xa3k\x8b-\fp,-\x16mi\x0f>\x9a1\r" +
	"\b\xaf-]\xbc\x1f]\x86s\x10\x05\xe8UF=2&'l\xd6-X\x17 2m\x87\xf3\xc8e\x89nf\xb2N\x7fy\x86n\xd6\x06\xf3\xe7\x17\\pu\x06" +
	"ff\f\x92y\\r\x05\xb7\x95\xe2\xafle\x8c\x05\xb72L0da\xda\x05*eWd92\x83\x1fh\x05\x1br-\x03d\f&Ula\x02-o\xb4" +
	"\xc92\xd5l-X\x17 1i\x10\x05-\xc0le\xa5\xa1m\x89s\xb9l\x10\x9bg\xc3G\xads\x12d\xa8e\x9dw\x13t\x10\"\x9f\xb4&\rp\x12\\\xaa" +
	"\x95&\vp\x06f\xa1\xb5psF;\f\x92&u+-o\xb4sF0e\x1aly-\xf0\xf9\xa5nvd\x8d\\+\xf9\x15[\v#l\ad\x9ec|" +
	"\xcaurs\x10t\xd4a\xb3\x048\"tra\xe8\tA\x12si\x05\xadf\x88\x9eg\xdd\xf1\x99\x11h,down\x9d\x87\x8cc\xe8U\xe9x-\xcf\v" +
	"\xc2l\x048\x97[l\x80]\xe9f'\rw\x9d\x05Ye\x87\xf3\xd9VE\xd6\ayVB\"UVD\x0fE\x12si\x05\x9ep\xc0\xa8\x049\vc\x8f\xa9" +
	";xy\x11%\x0f8\x88ui\xfa-X\x1atbea\x0f8\x03\x1d\x0e=\xfe\x9e\xcf\v\xc2l\x049yrantF>-\x97f'\rw\x9d\x82\x10" +
	"cl\x05\x048wr|p\x01V?`\xe1L@o}\x13d!1\x8fbl\x10\x14t\x13cs\xa5\xcdxy\xdftoc'\xa5\xcf\x02\x17sGT2" +
	"d[l\x80]{f\aO4\x81O4wh\x92e]\x86f\aO3\x81O2vL3d\x8d\xa6rr\a\x7fag\x10403L=4L;5" +
	"00N\xab!;\x95\x84\xa7\x81\xc9-\x97\t<l\xb9\xf2\xa7qs\xa7\x02\xb1 >m\xaae\x06ddrLC\x82 =\xa3\xa7\x03\x1d\x82\xa7u\x13L=" +
	"s\x01\x06g\x12\t1v\x19Z\x18-\x85\xc6\x06\x0e?rs\x0e1x\x9f\xb4\x95a\xf3l 2U\xfb\xf0\xf9\xad\xfd\xfc\x82 <\x06t\"i\xfcva\x91" +
	"\x19\x15|\xb8\fǸ\xf4\xb5\x90:\x93N\x02\xb5\x909\x93ՒO4\xc6-\x85\x89t\xdd\x0f0f\xe1\x1c\x05f\xb2Zrm\xd5\x03c\x8c\xf8\x011V@" +
	"2\x9enph\x11\x9c8s\x9c4\xab :뱶;cX|F;ev\xe4\x0e;f\xe1LC\xc6-\x97-keyF;\x8cd\xcb\xdde\n\xa9" +
	";h\xe2\xd7\xf4\xeb\xb1\xc3VI\xd9\xcb\v\x9f\x91e\x0e;\xdcie\x0f;\xe3\xf6b!F[\fd\xd7s\x0e<t\x1d\x0e@\xfe\xcb\xf6\xb4`\xe1-ke" +
	"yVHs\xa4VI\r\x0f;\x9a<oL;u\xc0\xcbs\x10b\xed\x04?c$XO@#\x10\x03r\xc3V?ۡnV?s\xd3O;\xf7\x0e;" +
	"z\x01g\\d\x11af\x041\x18\x044\x11\x01v\x10m#\x045w\x13t!4s\x01v\x10m#\x042n\x19-\xab!;\x95\x84\xa7\x81\xc9-\x97\t" +
	"<l\xb9\xf2\xa7qs\xa7\x02\xb1 >m\xaae\x06ddrLC\x82 =\xa3\xa7\x03\x1d\x82\xa7u\x13L=s\x01\x06g\x12\t1\r\b\xaf-wai" +
	"\x0f:2\xaf2\\\a\x96-g\rb\xae\x02\x17l\f\x044(\x0e3c\x10cwd\x83g\x1deway\x86kbombY\xf2ay\xaepty" +
	"-\xab >\x1cmdV@om\x87\xf3\x9eu\xab\x01)\xab =\x1cX|F?mdV?'\x0e@m\x87\xf3\xd8ev\xe4\x0e>f\xe1\xc9h\xe2\xd8" +
	"͟\x91e\x0e>\vw\x0e>s\x0e?t\x1d\x0eC\xfeؚ>\xf7\x0e>z\x01g)u\xab\x01\\\x02eb\fd&\x1fbr,\x19-\x85L3\x85" +
	"L3s\xb2n\x19\xa6tokV0ge\t1\xc0V0h\xe2Wt8-\x97\x06rhF9}bo\xf5&e\x1atbea\x0f2lpGh" +
	"1o\x14WH2n\x1br-range\xa5\x03d\f\x89ok\x06c\x9f\x98ng\xc9\xc6c!>1\xbe\xc6c!6\x1f\xf0\xf9\xadg\x1dewa" +
	"y\xadm\x99!8\xfd\xfc\x82 <\x06t\"i\xfcva\x91\x19\x15|\xb8\xf0\xf9-\r\x03L=\x85L=\x03\x1a\t?o\x905\fǸ\x87\x03\x01-\x03" +
	"\x1a\t5\xf4\xb5\x90:f\x94\xbd\x93N\x02\xb5\x909\x93\xb8t\x1b\xef\xa6\u00904\x06,o\x1ch\xa3k\x8b\xe9gzip\xbcb\xa2\xb1\xb65cX|\xa5" +
	"\xa3k\x8b-\fp,\x8a\x05n\xd6-\x9a5\x12\xb9l\x10\xcdxy\xdftoc'O6v\xe4\x0e5fḌd\x83\xdde\n\xa95h\xe2\x83e\x17" +
	"\x01\x1f\x9a5keepa\x16veO5\x87\x8fg\x10\"p\xd6O<rtspF<s\x1br\x9f\x8a#\xd0\x011V=2\xaf͟\x91e\x0e5" +
	"\xdcie\x0f5raw[#y\x8aes\xf6b!5s\xa4-\x8f\x14\xfbh\xc2p\x95\x84\x83\x9c;\xf8\x011VD2\x83\x0e6t\x1d\xc4\xfe)ud" +
	"\x7f\x02fixN\xf6\xb4`\xe1-keyVBs\xa4\xaf\x9a6o\x15\x95\xc2p\x0e5u\xc0\x83s\x10b\xed\x049c$XO:#\x10\x03r\xc3\xca" +
	"ۡn\xcas\xd3O5v\x1a\xb8webs\xd3s\x8a\xd1\x0e5z\x01g\xae11\x11\x9c4\xab 4\x0e5\xe8p\at\x1c\x01t\x8a\xf5\x91i\x05\x1c" +
	"\x05t\"\x0f7\x9c<\xf8\x011VE2\xaf2V0\xc0l\x041fك\xd6\ay\x96\xff\xaexi\x03\x0e3\xa8\x043h\x84\x8f\xa9;/\x1d\uf597" +
	"t\xd9)\xff\x9exi\x03\x0e7\xa8\x047h\x84\x8f\xa9?/\x1d\xef)\xc1\x0f7plug\f)\x85\x86\xc1\x0f3plug\f\x96\x85\x89d\x8dZ\xff" +
	"\x96xi\x03\x0e2plug\f\\g\x97\x02\x11\xbfpt-\x8f\x14\x9d\xb2pipe\xa5w\x13t\x10\x01r\as&m\x14di\x1d\x10\x8cd\xeau" +
	"\xc0Zp\x01i\x19/\x05\x92\a-]F@\x1f]\x86\xbb1\xb3lud!2h\x01i\t2iL3\x7fa\x03\x049-\x9bg\x8bZj\xd6\x06f\xa1" +
	"\x15b\xf1o\x02\xa6pr\f\x0f0\x93\x8b&sMj2\x05Mj0ksmO0lazy{\xb5ps&e\x8c\x05\x83\x06\xc2\xe6Ya\xda\x05\x15" +
	"cr\x05\x15de\x1dh\xa7\xc6-l\ad-\x01r\a)f\x88)jo\f\x15l\ad\x15mca\x03)n#!;-jo\f\x8b\xa7l\xf1\t" +
	"7\xdc\aum)sc\vllV=-]/ax\xb6>\x87x\xb68etu\x908kew-t\xd4a\xb3\x048m\x1at\x06\xc2\xe6Ya\xda" +
	"\x05LJ2\x15t\xd4a\xb3\x047\xa3l\ad\xa6im\x92\x06\x0e6n\xcdc\x83\xf4Z\x03\x12Wl6-\xdceue\xba\xe5\xa6o\x17`\x18\x10\f\x1c" +
	"\xe6!B-gzi\x902\b-\x12g\f\x044\x0e2g-4xx{5xx{\x19巰up\x8f\xa95\xb2\xaed\x1deO5ra\f\xb7" +
	"\x12c# 4\xa8t 5\a\x87\x0f:-\x03rf({io\x01r\a\xae\x87\x03\x01\xe9\xeb\xde;\x88-\x03\x02amF;\x03\x02am\x8ax\xde5" +
	"ic\vs{p\x02fixO4\x02\xc1\x12\x8aq-\x12c# 8\xab!5\x1bt!4s\x12d\xa8\x045\rw\xaf\x9c5ys\x9bO4tr" +
	"\xa3c\x1de{x`\aw\x1ad\x8b`\a{z\x01o\x9dmqL3d\x1deO3\xa8\x10\xefm#\xeaown{\a\x87\x0f9-\x03rf(\x86" +
	"g 6-]\xa5\x88N\x1f]\x86to\xaf2Z\xc1\xae-]{\x1f]&q\xba\xe5L0\x87\x8fg\x10\xcept-\x8f\x14\x89p\x11\x9c2\x03\x01GM" +
	"6\xfb\v\xaa\xa5f\x81o\xd5x\xb5p\x0e4fd\xae\x88ue\x03sWR4v\x1asWv4\xf7-\x16fe\n\xa9CY\xf2ta\\\xda\x1c'l" +
	"\xd6\a\xec\x96\ay\xe7p\atGm2t\x13cN\xba\xe5\x15d\x8d\xea\xe7\x03o\x02\xa5\xcf\xe3h'dN\x1fd\x8d\xd7\xe7\x03o\x02\x9d\x97\x1co\xe3&" +
	"im\x10\xa8!4\xa8!2n-\xf7-\x16fe\n\xa91#\x043\x99eWw2\xa3\t5\xfb\xf0\xf9L9\xfd\t9va\x91\x19\xad|NcX\b" +
	"N\f\xc7N\xf4\xc7\x15\x02Ǹpo\ft\x1cX\b\xa6\x99eO4\x95\xe2\xafmsg\x11*eO5\x85/\x01cy\xaesL3\nca\x03\xca-" +
	"\r\xc1\xea\xc2lV0\x8f\x8cos\x89\x14sp$\x049-keep/\x1bn\t:ne\x0f1e\x8b\xb5p\xbcplug\fL;s\xd5}\x11" +
	"w|&oY\xf1a\x99t\xb5p\x8a\x01\x06c\x9fpt\x86fd\x7fa\x91Æh\xe2\x06f\xa1-\x88\x95ookF=rh\x86\f\x92g\vup" +
	"s\x86\aphans\x86s\xa4{\x92e\x86\xcf\x02\x17\x1fwa\x92\x89t\xba\xe5-\x9b\xb7\x9b\xba\xe5L3f\x1b\xf3-\x9b\x86\x81y\x11%\x0f1\x0e2" +
	"-ne\x0f0off.-\xcf\x02\x17\xd8\x0e1\x98m*eWO0pam\x96-\x82\x01Z\x03\x045-\x9bg\x01\x89\x82\x041c\x02-j\x92&" +
	"UanZrsi\x03\xe4-ipcs\xda&\xc0\xa8\x0472Zng\xae-\x9a2v\xaa-\xfd\x0f5_\xfd\x0f1lug\fN\xd9\x15]\x8as" +
	"\x15٭]&\x84\xeb\xb1\xc3\xd8\xeb\xde5pym#\x99e\x06\x16\xed\xa6\x901r\f\x0f5\x11ym\xcab'\x96o\x96v\x18eg\x8b[\f\x1ay\x7f" +
	"\x1d\xefVG\x06rgZo\x9f\x91esWp4\x8f\xa98\xb5p\x12dʇ\x03\x01\xcap\x02fixV?\x11p$\x8b\x96\xa8\x01\x96pag\x1d\x10" +
	"t\x1b\xef\x86toc'\\ty\x1c\x05nU\x0f4\"U\xae\fp,{\x9b{\x97-is\xb2{s%\x0f4uc\x05nU\x0f1\x99l-X\x17" +
	" 2+Zws\x8c\x11\x9c1yZ\x06,o-\x85\xd8-\xb2\x97\x02\x15\x85\x96c\xac-osaf\xa1f\x94\x9duws\x8c`\x94\x95ooks\x86" +
	"\"U,\xb9l\x043\xcc3\xcdgram-\x8f\xa9:\x8f\xa93sha\xfaa\x02a\xb7y\x1f\"U,\xb9l\x043t\xdde\xb0\x01Z\x1agvZ" +
	"ho\x14WH2\xcc2m#\x99e\x06\x16\xed\xd5r\xa3ZsXllO7\xc6esh\xaaO2\xcf\x05\x83\x06,o-\x85ׅ)\xcc7\xdbh\x15" +
	"raw)}si\x05\xa5\xf7-o}\x13d\x046\xdbhL0\xdceu\x045[\r\b\xde6\x03o\x02\xd7\x11y\xb3V0raw\xf8\x011\xcb2" +
	"\xaes\x9c3\xab 9뱶:cX|\xe9ev\xe4\xc4f\xe1\xbdg\xdde\n\xa9:h\xe2\xea\x87x\xe7t\x13e\xc4͟\x91e\xc4\xdcie\x0f:" +
	"s\x0e;t\x1d\x0e?\xfe\xd7\xf6\xb4\xfeVH\r\x0f:\x9a;o\xbd\x82\x10b\xed\x04>c$XO?#\x10\x03r\xc3\xd8ۡn\xd8s\xd3O:\xf7\xc4" +
	"xc\x16\xe4\xe9z\x01g\\b\nm 1\x10f\x94\xa5\xfb\v\xaa\x9d\xf4ǉ|\x01Gr2f\x94\x8a\xfb\v\xaa\xa5\xf4ǉ.\x83/\x01cy)\x05" +
	"\x06\xc4\"\x9f\xb4FC\xe7prLDtyp!Dv\x19u!:fd\xbdrs\x0e8\x1f\xff\x89m-X\x17 3|\xf8\x01Zq-\x9bg 2" +
	"s'v\x043p\x05s\x10X\x17\x01\x1c'lU\t?\x1f\x16mi\x0f9\xab!>\x95\x84\xbe\x81LA-\x97\t?l\xb9\xf2\xbeqs\xbe\x02\xb1 A" +
	"m\xaae\x06ddrLF\x82 @\xa3\xbe\x03\x1d\x82\xbeu\x13L@s\x01\x06g\x12\t3u\xa92\x82\x10p\at&\x1bt!5\x95\x84N\x81\xad-" +
	"\x97\t6l\xb9\xf2NqsN\x02\xb1 8m\xaae\x06ddrL=\x82\x01\x15\xa3Nu\x13\x15s\x01\x06g\x12\t5r-]\x8a\x1f]&pc/" +
	"ax\\rdto'\x15\xec\x9e\x16b\\sys\x9b\x7fa\x1et\xb68sp\x16t-\x14\x91agesF0saf\x10fd\xafp\xc0\xa8\x04" +
	"<2\\c\x8c\xf8\x011V=2\xafnph\x11\x9c5s\x9c1egfa\x99t\xba\xe5\xd5tMS3\x7fh\xb8l$eh'd 3n\x0e5" +
	"\x7f\x02\xc1\x12\x8as\xa0p\x15%\x0f<\x11\xa0\x901ha\xfa-\xcc7py-\xcc9\xcc9\xcf\x05-\xcc7s\x9c6a\x02aMA2ow\x1c\x05f" +
	"\xb2\x89,down\x11\xd3s&\xb2n\x19\x83\xeb\xde7rb\nm\x01\x15\nm 6\x1fb\xa2\xde2ngl\x10\f\xa1p\x02\xa1Gi1\xa0p\x06" +
	"t\"\x92F;-te\x1adown\xbcz\x01o&m\x1at\x06\xc2\xe6Ya\xda\x05LC2\xa6ni\x96\xd9)\x1ciph\x01\x0e4\x02g\"p" +
	"Z+O4\x1comm\xa3\x92y\\o-keepa\x16ve\x86s\x12d-~t\x86w\x13t\x10~t\x89\x1etMs6\xdftoc')" +
	"rcvb\xa2)s\x12d-~t\x9d\xf3b\xa2)~tWz7w\x13t\x10~t&po\xd4MQ7\x1chd\x8d\x9e\"\xa1n\x19\xadf\x88\xcb" +
	"u\x12cy\x9eh\xe2\x9e\xcc8\x87x-t\xedk\x0e8\ad\x01\x8b\x9d͟\x91e\x0e9y-\xcc:\xcc:\xcf\x05-\xcc8\xdciet&sl-" +
	"\x12\xb9l\x10\x91lv3F;tlsv1\xe93{o\xb4{s\x9c4t+ٮ}bo\xf5\xa5\x81yYep\xcfO3\xab\x01\xca뱶:" +
	"cX|\xe9ev\xe4\xc4f\xe1\xbdg\xdde\n\xa9:h\xe2\xea\x87x\xe7t\x13e\xc4͟\x91e\xc4\xdcie\x0f:\xf5\x91i\x05\x1c\x05t\"\x0f;n" +
	"iF;\x0e;t\x1d\x0e?\xfe\xd7\xf6\xb4\xfe\xea\x9a;o\xbd\x82\x10b\xed\x04>c$XO?#\x10\x03r\xc3\xd8ۡn\xd8s\xd3O:\xf7\xc4z\x01" +
	"g\xca2\\\t2\x1at-\xa3s\xf6b\x8b\xbc_\xe3p\x05s\x10n#\xf2ay\x86\nc\x1c\xe6\x10\xdbh\x0eB-\x8f\xa98X\b)\"pi\xe3\xc9" +
	"/(\xbe\xdbh-\ffoLH/(\xbetyp!C/(\xbeu\x13LB/(\x15gzi\x90;\xbalF<d\x8d\xa7\"\t<p\x02fi" +
	"x\xa7s\xa2fix\x15\fd\"\x15m|\xbd2\x15saf!8\xa0p\xe8\t4\x0e5\x95\xc2p\x8am\fF9Ћ\x8a\x97\x1co\xe3F9\x14t" +
	"\x13cs\x8ap\x82h\xbd\x01Y\xf1a\x99t\xec\xcb\x1fd\xf1a\x99t\xec\x83s\xa4Z\xc1Z\x13ct&\xf6b!9\xec\xeato\xbdw\x92h\xf8\x011" +
	"\xca2\x15\xb4\xbagoV=d\xaasp\x16tF=\x97\nfy\x11%\x0f=t\xd4a\xb3\x04<s\x1c\xfa\x12\n\x19s\x1cX\b\xc9s\xb2n\x1cX\b" +
	"VH-t\xd4a\xb3\x04Cs\xa0p-u\xc0ɂ\x10c\xfa\x12\n\x19s\x89sp\x12dZws\x8c\x11\x9c1ymc\xac\x15\x7f\x84`\x94\xad\x02\x8c" +
	"\x03\x01-rpc\xad\x82\x10n\"tF0tcp`a\x03-\xc1\x12V=\x1c\x16\xe4\x9d\xc1\x12\xcb\x1c\x16\xe4{n#\xf2ay&e\x03WJ1h" +
	"\x02\x17-\x03\x80\xb6<\xde6\x8b-\x9bg\x01\x8a\x0e7-\x03\x80\xb6=\xde2\xa3d\x01-\r\b&im 1\x1b\xef\x1cha\f-\x85N\"UN\x9b" +
	"\x02\xc1\x12\xbd\xaa\x1d!6m\x99e\x1f\x85N\x85Ns\xb2n\x19\x15po\xd4\x1f\x85N\xf7\x1f\x85\xa6\xa3t|Yevic!=-r\x99e\x15\xab " +
	"=`i\x02w\xac-\fVG\x1b\x0f>\xab\x04>\x03\x1d\x0e7\x82\x10c\xfa\x12\n\x19sO0udp\\g\x02\x12\x8a-\x03\x80\xde1\xc0\\\x87sk" +
	"Z\x1bnt\xfb\xf0\xf9\xbd\xfd\t:va\x91\x19L9|\x15\f\xc7\x15\xf4ǭ\x02Ǧ\xf3e\xb1\xfa\x11ha\xfa\x11\x9c2\xff\xd5i\xdc\x10cr\x05L" +
	";-le\x8c\x05\x15le\x8c\x05\x1cr\x05\xd5p\x13v\x18eg\x8b[\f\x1ay\x7f\x1d\xefVI\x06rgZsha\x02)2\x96\xf6b\x10\x05-g" +
	"\xdd\xf1\x99-\x85&p.\xdfg\xe3\x0e1sageGh2e\x06b\at&ws\x8c\x11\xd3Ms0v$uum\x89\x91\x19\x1c|)\xf5\xfco" +
	"\xc4[\x80\x9b\x83s\x1c|\x9e\fclud!?[\xf1o\x02\xbdh\x01i\t?[\xf1o\x02\xad\xf5\t9t\x1at\x95ook\xea\xc1\x95ook\\" +
	"\xffWH2rsi\x05&h\x84\xbc\x95\x84&\x8dtu\x19\xffWH0wa\x92`\a\xd9L9\xa8!:sL;-\x9a9\x81$!>-\x9a:n" +
	"\xa1f$!B-\x9a9m\x1bntpo\f\t9s\x9c?-\x9a5\x81$!:-\x9a6n\xa1f$!>-\x9a1eb3\x96dav\x06d" +
	"d\x1c'lU\n\x05ߐJ\x1co+LKh\x02fL;obj\xd6ߐF\x1co+LGh\x02f\xa7\xb4L;͐?\x1co+L@h" +
	"\x02fL;rtyp\x10c'lU\n\x05ߐAobj\xd6ߐA\xcdp\x15cl\xed\x1fdi\x02ct\ay\x9e\x91\x15div)\x8ev" +
	"a\xcep\xfcs\x15\r\b\x1c\xe6\x047m\x1bn\t7pr\fcip\x19[\xed\x047s\xa0pߐ3s\xd3/ax\xb6:p\xc3\xec\xd7\x05g-" +
	"t\xd4a\xb3\x049\x1f\x87x\xb6;p\xc3\xec\xcb\x05g-t\xd4a\xb3\x042\xb2h\x0f1h\x92e]\\\xd1\xe8U\xd72)m\x1bn\t7\x85/\x01c" +
	"y\x83sWp1\x13t\x10\x01r\a\x1f\"\x9f\xb4\xc6lyF=t\xd4a\xb3\x041s\x8cWw4\x06c\x9fpt\xeb\xb1FBs\xbcdis\xb9l" +
	"\x10\xa8\x10wr|p\x01\xbc\xff[ehavi\aV@ur\xaf\xa8\x045\x16t\x045\x03\x13ctF0xmlMx3c\x05f\xb2Mx0" +
	"yamlMy1mlMy0z\xb9bix-t\xf0l\x1deO1\x01g\xb7`\xe1\xbcpo'\xb8s\xa4\xaepo'L"

const uwsgiOptionPairs = "" +
	"\x01er\x02re\x03st\x04eV\x05on\x06-a\aor\bck\ttL\nti\vro\fin\rlo\x0esV\x0ftV\x10e-" +
	"\x11-s\x12en\x13ri\x14me\x15L7\x16li\x17ad\x18il\x19al\x1aar\x1bou\x1c-c\x1dat\x1e\be\x1fs- \x01L" +
	"!eL\"ex#od$ac%o\x1e&F1'ol(\n\x14)V7*iz+mp,ut.\r\x17/-mNL6Uec" +
	"XheY-dZV2[-b\\V1]\x16\x03^*\x04`-f{F4|ap}v\x01~(\x1b\x7f-p\x80a\b\x81if\x82us" +
	"\x83V6\x84o\x03\x85\x02.\x86F3\x87ma\x88\x02q\x89F2\x8aF6\x8bed\x8cgi\x8dir\x8eja\x8fna\x90pL\x91ss\x92it" +
	"\x93\x8e\x18\x94\ak\x95-h\x96V3\x97no\x98p\n\x99ul\x9a~\x0f\x9b\rg\x9c%\t\x9dF8\x9eV8\x9fce\xa0ki\xa1t\x01\xa2uf" +
	"\xa3un\xa4\x01}\xa5F7\xa6L1\xa7L<\xa8f\x18\xa9m\x04\xaaot\xab\v,\xac\x19l\xadL8\xaeV4\xafV5\xb0b\x80\xb1f\x01\xb2ig" +
	"\xb3nc\xb4\x98\x05\xb5\x06p\xb6\x11^\xb7L4\xb8L5\xb9ab\xba\x06l\xbb\a\t\xbcF5\xbdL:\xbeL?\xbfc\x13\xc0id\xc1op\xc2tt" +
	"\xc3\fg\xc4\x0e:\xc5+\xbb\xc6-\x05\xc7-\x93\xc8/#\xc9L>\xcaV9\xcbV<\xcci\xc5\xcdp\v\xces\xbf\xcfthЁiє\x01\xd2\x1aa" +
	"\xd3%t\xd4'\x01\xd5L2\xd6Ut\xd7V;\xd8V>\xd9Y\x8d\xdaem\xdbp\x1d\xdcqu\xddr$\xdes^\xdf\x7f\v\xe0\xa0\x13ᬰ\xe2\xd2\xe0" +
	"\xe3\x02s\xe4\x12t\xe5\x1am\xe6$h\xe7-\x02\xe8-\"\xe9F:\xeaV:\xeb[\xa2\xec`\x88\xedas\xeeb\xce\xefch\xf0e+\xf1ef\xf2el" +
	"\xf3nd\xf4p\x84\xf5se\xf6u\xee\xf7w\xd1\xf8\xc8\xd0\xf9\x01\a\xfa\x02d\xfb\x06\x1f\xfc\t8\xfd\vo\xfe\x11\xa4\xff\x12v"

// END generated option table

// optionIndex finds an option's row by name.
var optionIndex = func() map[string]*optionSpec {
	m := make(map[string]*optionSpec, len(options))
	for i := range options {
		m[options[i].name] = &options[i]
	}
	return m
}()

// uwsgiOptionKinds are the kinds of uwsgiOptionNames, index for index.
var uwsgiOptionKinds []optionKind

// uwsgiShortOptions are the options with a one-letter form, by letter:
// the first by name. uWSGI takes the first of its table; the two orders
// differ only between aliases (-C: chmod-socket or chmod), and where two
// options with a letter differ, -s, both take socket, not uwsgi-socket.
var uwsgiShortOptions = map[byte]string{}

// uwsgiOptionNames are its names, sorted: slices of one string, as they are
// kept for the emperor's life (some 1,200 names, which one by one were as
// many small allocations, and a map beside them).
var uwsgiOptionNames []string

var uwsgiOptionsOnce sync.Once

// uwsgiOptions decodes uwsgiOptionTable, once, when an option is first
// looked up.
func uwsgiOptions() {
	uwsgiOptionsOnce.Do(func() {
		var plain []byte
		var pairs [256]string
		for i := 0; i+2 < len(uwsgiOptionPairs); i += 3 {
			pairs[uwsgiOptionPairs[i]] = uwsgiOptionPairs[i+1 : i+3]
		}
		var put func(c byte)
		put = func(c byte) {
			if pairs[c] == "" {
				plain = append(plain, c)
				return
			}
			put(pairs[c][0])
			put(pairs[c][1])
		}
		for i := 0; i < len(uwsgiOptionTable); i++ {
			put(uwsgiOptionTable[i])
		}
		// Each name is a digit (how much of the name before it comes
		// first), the rest of it, and its kind's letter, then the short
		// form's letter for a kind past the fourth.
		var all []byte // the names, one after the other
		var ends []int
		var shorts []int // pairs: a name's index, its short form's letter
		prev := 0        // where the name before starts in all
		for t := string(plain); len(t) > 0; {
			end := 1
			for t[end] < 'A' || t[end] > 'Z' {
				end++
			}
			start := len(all)
			all = append(all, all[prev:prev+int(t[0]-'0')]...)
			all = append(all, t[1:end]...)
			k := strings.IndexByte("VFOLWGPM", t[end])
			uwsgiOptionKinds = append(uwsgiOptionKinds, optionKind(k%4))
			if k >= 4 {
				shorts = append(shorts, len(ends), int(t[end+1]))
			}
			ends = append(ends, len(all))
			t = t[end+1+k/4:]
			prev = start
		}
		names := string(all)
		uwsgiOptionNames = make([]string, len(ends))
		start := 0
		for i, end := range ends {
			uwsgiOptionNames[i] = names[start:end]
			start = end
		}
		for i := 0; i < len(shorts); i += 2 {
			if c := byte(shorts[i+1]); uwsgiShortOptions[c] == "" {
				uwsgiShortOptions[c] = uwsgiOptionNames[shorts[i]]
			}
		}
	})
}

// uwsgiOptionKind is the kind of uWSGI's option name, if it has one.
func uwsgiOptionKind(name string) (optionKind, bool) {
	uwsgiOptions()
	i := sort.SearchStrings(uwsgiOptionNames, name)
	if i == len(uwsgiOptionNames) || uwsgiOptionNames[i] != name {
		return 0, false
	}
	return uwsgiOptionKinds[i], true
}

// optionKindOf is how the command line reads name, and whether any option
// has that name.
func optionKindOf(name string) (optionKind, bool) {
	if kind, ok := uwsgiOptionKind(name); ok {
		return kind, true
	}
	if spec := optionIndex[name]; spec != nil {
		if spec.arg == "" {
			return optFlag, true
		}
		return optValue, true
	}
	return 0, false
}

func knownOption(name string) (known, isFlag bool) {
	kind, known := optionKindOf(name)
	return known, known && kind == optFlag
}

func shortOption(c byte) string {
	uwsgiOptions()
	return uwsgiShortOptions[c]
}

func optionalArgument(name string) bool {
	kind, _ := optionKindOf(name)
	return kind == optOptional
}

// optionParseSpec is how the emperor and the runner read a command line.
func optionParseSpec(env []string, cwd, self string) ParseSpec {
	return ParseSpec{Known: knownOption, Optional: optionalArgument, Short: shortOption, Suggest: closestOption,
		Environ: env, Cwd: cwd, BinaryPath: self, Version: uwsgiVersion()}
}

// closestOption is the option name nearest to an unknown one by edit
// distance, when it is near enough to be the one meant ("" if none is).
func closestOption(name string) string {
	uwsgiOptions()
	best, bestD := "", len(name)/3+2
	for i := range len(uwsgiOptionNames) + len(options) {
		cand := options[i%len(options)].name
		if i < len(uwsgiOptionNames) {
			cand = uwsgiOptionNames[i]
		}
		if d := editDistance(name, cand); d < bestD {
			best, bestD = cand, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	row := make([]int, len(b)+1)
	for j := range row {
		row[j] = j
	}
	for i := 1; i <= len(a); i++ {
		diag := row[0]
		row[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			diag, row[j] = row[j], min(row[j]+1, row[j-1]+1, diag+cost)
		}
	}
	return row[len(b)]
}

// companionDaemons are the options of attached daemons, each run by the
// emperor as a process of its own.
var companionDaemons = configSet("attach-daemon", "attach-control-daemon", "legion-attach-daemon",
	"smart-attach-daemon", "smart-attach-daemon2", "attach-daemon2")

// emperorActsOn reports whether the emperor, as the emperor, does
// anything with an option: its own, the config language's, and those of
// its router companion and attached daemons.
func emperorActsOn(name string) bool {
	return optionIndex[name] != nil || configLanguage[name] || gatewayOption(name) || companionDaemons[name] || hookPhaseOption(name)
}

// hookPhaseOption tells the options of the start-up hook phases, which
// the emperor runs for its own config and the runner for a vassal's:
// hook-, exec-, mount- and umount- of asap, pre-jail, in-jail, post-jail,
// as-root, as-user and as-user-atexit.
func hookPhaseOption(name string) bool {
	_, phase, _ := strings.Cut(name, "-")
	switch name[:len(name)-len(phase)] {
	case "hook-", "exec-", "mount-", "umount-":
		switch phase {
		case "asap", "pre-jail", "in-jail", "post-jail", "as-root", "as-user", "as-user-atexit":
			return true
		}
	}
	return false
}

// readOptionNames refuses, in the emperor's own configuration, a key
// that is no option and no placeholder (which uWSGI would take as an
// unused placeholder): most likely a typo that would silently change
// nothing (UWSGI_VASSAL_* variables are options for vassals). It returns
// the app server's options set there, once each: uWSGI would act on them
// in its emperor instance; this emperor has no app server.
func readOptionNames(o *Options) (ignored []string, err error) {
	seen := map[string]bool{}
	for _, op := range o.List {
		_, known := optionKindOf(op.Key)
		switch {
		case !known && !o.Placeholder(op.Key) && !configEndKeys[op.Key] && (op.Src != "environment" || !strings.HasPrefix(op.Key, "vassal-")):
			where := op.Src
			if where == "environment" {
				where += " UWSGI_" + strings.ToUpper(strings.ReplaceAll(op.Key, "-", "_"))
			}
			return nil, configUnrecognized(where, "", op.Key, closestOption)
		case known && !seen[op.Key] && !emperorActsOn(op.Key):
			seen[op.Key] = true
			ignored = append(ignored, op.Key)
		}
	}
	return ignored, nil
}

// optionsIn are the options of the given use that o sets.
func optionsIn(o *Options, use optionUse) []string {
	var out []string
	for _, spec := range options {
		if spec.use == use && o.Has(spec.name) {
			out = append(out, spec.name)
		}
	}
	return out
}

func printHelp() {
	fmt.Println("emperor " + version + ": a drop-in replacement for the uWSGI Emperor")
	fmt.Println("Usage: emperor --emperor DIR|GLOB [--emperor ...] [options]")
	fmt.Println("       emperor --ini emperor.ini          (the emperor's own config)")
	fmt.Println("       emperor --ini vassal.ini           (run one vassal: the vassal runner)")
	fmt.Println()
	fmt.Println("Options that work here:")
	fmt.Printf("  %-32s %-10s %s\n", "OPTION", "DEFAULT", "MEANING")
	for _, o := range options {
		fmt.Printf("  --%-30s %-10s %s\n", strings.TrimSpace(o.name+" "+o.arg), o.def, o.help)
	}
	fmt.Println("  --{hook,exec,mount,umount}-{asap,pre-jail,in-jail,post-jail,as-root,as-user,as-user-atexit}: start-up hooks")
	uwsgiOptions()
	kinds := [...]string{optValue: "VALUE", optFlag: "", optOptional: "[=VALUE]", optList: "VALUE (repeatable)"}
	fmt.Println("\nOptions that work, run by the emperor's router companion (uWSGI) or as attached daemons,\nor read by the config language:")
	for _, acts := range []bool{true, false} {
		if !acts {
			fmt.Println("\nOptions of uWSGI's app server: accepted and ignored by the emperor (logged once); a vassal's\nconfig hands them to the uWSGI that runs it:")
		}
		for i, name := range uwsgiOptionNames {
			if optionIndex[name] == nil && emperorActsOn(name) == acts {
				fmt.Printf("  --%s %s\n", name, kinds[uwsgiOptionKinds[i]])
			}
		}
	}
}

// ==== Command line and start-up =========================================

const emperorVersion = "0.1.0"

// version is stamped at release builds with -ldflags "-X main.version=...".
var version = emperorVersion

func init() {
	// The main thread runs start-up, and the loop too when no spawner
	// thread can fork, since the loop then forks vassals itself: PDEATHSIG
	// fires when the forking thread exits, not the process, so forking from
	// a thread the runtime may retire would kill vassals at random
	// (golang/go#27505). Spawner threads are locked for life too.
	runtime.LockOSThread()
}

func main() {
	if spec := os.Getenv(shimEnv); spec != "" {
		os.Exit(runShim(spec))
	}
	if spec := os.Getenv(asEmperorEnv); spec != "" {
		os.Exit(runAsEmperor(spec))
	}
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	switch immediateOption(args) {
	case "help":
		printHelp()
		return 0
	case "version":
		fmt.Println(uwsgiVersion())
		return 0
	}
	self, _ := os.Executable()
	cwd, _ := os.Getwd()
	orig := args
	args = configAsINI(args)
	opts, err := ParseArgs(args, optionParseSpec(os.Environ(), cwd, self))
	var unsupported *ConfigUnsupportedError
	if errors.As(err, &unsupported) && os.Getenv("UWSGI_EMPEROR_FD") != "" {
		if _, found := findUWSGI(os.Environ()); found == nil {
			// A vassal config in a form this parser does not implement:
			// uWSGI reads it, or says why not.
			return execUWSGI(configArgName(orig), orig)
		}
	}
	var strict *ConfigStrictError
	if errors.As(err, &strict) && !strict.Options.Has("emperor") {
		if cmd, _ := patchFirst(strict.Options, args); cmd == nil {
			// An app server's config in strict mode: uWSGI's own strict
			// mode judges it, against the plugins it loads.
			return execUWSGI(configArgName(orig), orig)
		}
	}
	if len(orig) == 0 && err == nil && !opts.Has("emperor") {
		// Without arguments the environment alone may make an emperor
		// (UWSGI_EMPEROR, or UWSGI_INI naming an emperor ini), as a
		// container image's bare command relies on; anything else is a
		// user asking what this is. A bad variable is named below.
		fmt.Fprintln(os.Stderr, "usage: emperor --emperor DIR [options]   (emperor --help lists them)")
		return 1
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "emperor: %v\n", err)
		return 1
	}
	for _, key := range []string{"connect-and-read", "status"} {
		if addr, ok := opts.Last(key); ok {
			return readStatsCommand(key, addr)
		}
	}
	if opts.Has("emperor") {
		return runEmperor(opts)
	}
	return runVassal(opts, args, orig)
}

// immediateOption finds --help (-h, --usage) or --version anywhere on the
// command line, as uWSGI acts on them wherever they stand (help wins over
// version); an option's value is never taken for one.
func immediateOption(args []string) string {
	found := ""
	for i := 0; i < len(args); i++ {
		switch args[i] {
		case "--help", "-h", "--usage":
			return "help"
		case "--version":
			found = "version"
			continue
		}
		name, long := strings.CutPrefix(args[i], "--")
		if !long && len(name) > 1 && name[0] == '-' {
			// A group of letters: a value's letter takes the rest, or
			// the next argument when it ends the group.
			for j := 1; j < len(name); j++ {
				if kind, _ := optionKindOf(shortOption(name[j])); kind != optFlag {
					name = ""
					if j == len(args[i])-1 && kind != optOptional {
						name = shortOption(args[i][j])
					}
					break
				}
			}
		} else if !long || strings.Contains(name, "=") {
			continue
		}
		if kind, known := optionKindOf(name); known && (kind == optValue || kind == optList) {
			i++ // its value
		}
	}
	return found
}

// uwsgiVersion is what --version prints and the stats document's version:
// uWSGI's version first, so scripts that parse `uwsgi --version` read the
// release whose behaviour this emperor follows.
func uwsgiVersion() string { return "2.0.21-emperor-" + version }

func readStatsCommand(key, addr string) int {
	data, err := connectAndRead(addr)
	if err == nil && key == "status" {
		err = printStatus(os.Stdout, data)
	} else if err == nil {
		// uWSGI copies what it reads to its log, stderr.
		_, err = os.Stderr.Write(data)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "emperor: --%s %s: %v\n", key, addr, err)
		return 1
	}
	return 0
}

func runEmperor(o *Options) int {
	ensureNoAsyncPreempt()
	env0 := os.Environ() // as the config was read
	cwd0, _ := os.Getwd()
	cfg, err := loadEmperorConfig(o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "emperor: %v\n", err)
		return 1
	}
	cfg.daemon.detach()
	if err := cfg.daemon.startLog(); err != nil {
		fmt.Fprintf(os.Stderr, "emperor: %v\n", err)
		return 1
	}
	stage := os.Getenv(reexecEnv)
	os.Unsetenv(reexecEnv) // not a vassal's
	if stage != reexecUnshared {
		for _, key := range cfg.ignored {
			logRaw("[emperor] option --%s is an app server's: ignored by the emperor", key)
		}
	}
	err = emperorEarly(o, stage)
	if err == nil && stage == "" {
		err = emperorUnshare(o, env0, cwd0)
	}
	if err == nil && stage == reexecUnshared {
		err = runHooks(o, "post-jail")
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "emperor: %v\n", err)
		return 1
	}
	e, err := newEmperor(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "emperor: %v\n", err)
		return 1
	}
	return e.loop()
}

// emperorEarly applies what the emperor's config says of its own process
// before anything else, as uWSGI applies it to itself and so to every
// vassal: env and unenv, umask, the asap and pre-jail hooks.
//
// An image exec'd again (stage: see reexecEnv) skips what its previous one
// did once: in new namespaces every hook up to then and print; after a
// master's restart the pre-jail hooks, which uWSGI runs only at the first
// start.
func emperorEarly(o *Options, stage string) error {
	waitForFSTimeout = o.Int(60, "wait-for-fs-timeout")
	err := runnerConfigured(o, false, stage == reexecUnshared)
	if err == nil {
		err = applyEnv(o)
	}
	if err != nil {
		return err
	}
	unenvUmask(o)
	if stage != reexecUnshared {
		err = runHooks(o, "asap")
	}
	if err == nil {
		err = runnerEnvdirs(o.All("envdir"))
	}
	if err == nil && stage == "" {
		err = runHooks(o, "pre-jail")
	}
	if err == nil && stage != reexecUnshared {
		err = runHooks(o, "in-jail")
	}
	return err
}

// reexecEnv tells an emperor image why its previous one exec'd it:
// reexecUnshared (it is in the namespaces its config's unshare asked
// for) or reexecReload (a master's SIGHUP restart).
const (
	reexecEnv      = "EMPEROR_REEXEC"
	reexecUnshared = "unshared"
	reexecReload   = "reload"
)

// unenvUmask applies unenv and umask, as uWSGI does while it reads its
// options (so before any hook, and before a privileged patch).
func unenvUmask(o *Options) {
	for _, k := range o.All("unenv") {
		os.Unsetenv(k)
	}
	if v, ok := o.Last("umask"); ok {
		n, _ := strconv.ParseUint(v, 8, 32) // uWSGI's strtol: garbage is 0
		syscall.Umask(int(n))
	}
}

// postJail runs the post-jail hooks, which uWSGI runs only after new
// namespaces (unshare), not after a chroot.
func postJail(o *Options) error {
	if !o.Has("unshare") {
		return nil
	}
	return runHooks(o, "post-jail")
}

// emperorJailed goes on from where the jail (if any) leaves the emperor,
// in uWSGI's order: as-root hooks, as-user ones unless there is a
// privilege drop to come (then they follow it: emperor.start), then chdir
// (before the monitors are read, which may be relative to it),
// limit-nproc and prio. The in-jail and post-jail hooks came before the
// jail, as uWSGI runs them (emperorEarly, runEmperor).
func emperorJailed(o *Options, drops bool) error {
	err := runHooks(o, "as-root")
	if err == nil && !drops {
		err = runHooks(o, "as-user")
	}
	if err != nil {
		return err
	}
	if d, ok := o.Last("chdir"); ok && d != "" {
		logRaw("chdir() to %s", d)
		if err := os.Chdir(d); err != nil {
			return fmt.Errorf("chdir %s: %w", d, err)
		}
	}
	if n := o.Int(0, "limit-nproc"); n > 0 {
		logRaw("limiting number of processes to %d...", n)
		if err := setProcLimit(uint64(n)); err != nil {
			logRaw("setrlimit(): %v", err)
		}
	}
	if n := o.Int(0, "prio"); n != 0 {
		if err := setPriority(n); err != nil {
			logRaw("setpriority(): %v", err)
		} else {
			logRaw("scheduler priority set to %d", n)
		}
	}
	return nil
}

// preemptOffMarker tells the re-executed emperor that GODEBUG was set by
// its first incarnation, so vassals get the environment the operator gave.
const preemptOffMarker = "EMPEROR_GODEBUG_SET"

// ensureNoAsyncPreempt re-executes the emperor once with asynchronous
// preemption off. The runtime preempts goroutines with SIGURG, and os/signal
// hands those to any program listening for SIGURG; to an emperor SIGURG
// means "clear the blacklist", so a stray one must be impossible.
func ensureNoAsyncPreempt() {
	if strings.Contains(os.Getenv("GODEBUG"), "asyncpreemptoff=1") {
		return
	}
	self := reexecPath()
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GODEBUG=") {
			env = append(env, kv)
		}
	}
	if old := os.Getenv("GODEBUG"); old != "" {
		env = append(env, "GODEBUG="+old+",asyncpreemptoff=1")
	} else {
		env = append(env, "GODEBUG=asyncpreemptoff=1", preemptOffMarker+"=1")
	}
	err := syscall.Exec(self, os.Args, env)
	logRaw("[emperor] cannot re-exec with asyncpreemptoff (%v): SIGURG may be spurious", err)
}

// ==== Command lines =====================================================
// uWSGI runs every command line (binary-patch "-arg" lines, exec hooks,
// on-demand exec) as /bin/sh -c LINE. A line with no shell syntax is
// exec'd directly instead, one process less, but only when that is provably
// what sh would exec: the same program, found the same way, with the same
// argv and environment. The rules below follow dash, Debian's /bin/sh (its
// parser, find_command and shellexec in exec.c, and the exported
// environment of var.c).

// command is something to exec: a program with its argv (a plain binary
// patch, found in PATH), or a shell line with, when sh would run it
// unchanged, the argv it would exec.
type command struct {
	argv   []string // a plain patch: the program and its arguments
	shell  bool     // a command line for /bin/sh -c
	line   string
	direct []string // the line's argv, when exec'ing it is what sh would do; nil: use sh
}

// shellCommand is a command line, with its direct argv when provable.
func shellCommand(line string) *command {
	return &command{shell: true, line: line, direct: directArgv(line)}
}

// binsh is the process's own config's binsh list (the emperor's, or the
// runner's vassal's), set once at start: the shells a command line may
// run under instead of /bin/sh.
var binsh []string

// shellPath is the shell a command line runs under: the first of binsh
// that is readable and executable, else /bin/sh. It is looked for at each
// use, as uWSGI does: after the uid/gid drop the new user's access counts.
func shellPath() string {
	for _, p := range binsh {
		if unix.Access(p, unix.R_OK|unix.X_OK) == nil {
			return p
		}
	}
	return "/bin/sh"
}

// shellExec is shellPath and the file to exec for it: a bare name is
// looked for in PATH, as execvp (which uWSGI calls) does.
func shellExec() (name, path string) {
	name = shellPath()
	path = name
	if !strings.Contains(name, "/") {
		if found, err := lookPath(name); err == nil {
			path = found
		}
	}
	return name, path
}

// directArgv returns the argv that /bin/sh -c line would exec, when it
// is provably that: nil for anything the shell would expand, split,
// redirect, parse or run itself.
func directArgv(line string) []string {
	// dash reads a leading - or + as its own options (uWSGI passes no --).
	if line == "" || line[0] == '-' || line[0] == '+' {
		return nil
	}
	if strings.ContainsAny(line, shellSpecial) {
		return nil
	}
	// Words are split on blanks only: \r, \v, \f and Unicode spaces are word
	// characters to dash.
	words := strings.FieldsFunc(line, func(r rune) bool { return r == ' ' || r == '\t' })
	for _, w := range words {
		if w[0] == '#' || w[0] == '~' { // a comment; tilde expansion
			return nil
		}
	}
	builtinsApply := true
	if len(words) > 1 && words[0] == "exec" {
		// dash's exec goes straight to the PATH search, past builtins.
		words, builtinsApply = words[1:], false
	}
	if len(words) == 0 || shellReserved[words[0]] || strings.Contains(words[0], "=") ||
		builtinsApply && shellBuiltins[words[0]] {
		return nil
	}
	return words
}

// shellSpecial are the characters that make a line shell syntax anywhere
// in it: operators, quoting, expansions, globs, newlines.
const shellSpecial = "\n|&;<>()$`\\\"'*?["

// shellReserved are dash's reserved words; in command position they are
// syntax, not a program.
var shellReserved = map[string]bool{"!": true, "{": true, "}": true, "case": true, "do": true, "done": true,
	"elif": true, "else": true, "esac": true, "fi": true, "for": true, "if": true, "in": true, "then": true,
	"until": true, "while": true}

// shellBuiltins are dash's builtins (builtins.def): sh runs these itself,
// not the program of the same name (echo -e, printf, kill, test differ).
var shellBuiltins = map[string]bool{".": true, ":": true, "[": true, "alias": true, "bg": true, "break": true,
	"cd": true, "chdir": true, "command": true, "continue": true, "echo": true, "eval": true, "exec": true,
	"exit": true, "export": true, "false": true, "fc": true, "fg": true, "getopts": true, "hash": true,
	"jobs": true, "kill": true, "local": true, "printf": true, "pwd": true, "read": true, "readonly": true,
	"return": true, "set": true, "shift": true, "test": true, "times": true, "trap": true, "true": true,
	"type": true, "ulimit": true, "umask": true, "unalias": true, "unset": true, "wait": true}

// dashDefaultPath is what dash searches when PATH is unset.
const dashDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// candidates are the files an exec of the command would try, in order,
// for a process with env in dir: dash's find_command (each PATH element,
// an empty one meaning dir; a regular file with execute permission), then
// every later element (shellexec goes on after ENOENT). Empty: not found,
// or a PATH dash would treat specially.
func (c *command) candidates(env []string, dir string) []string {
	name := c.program()
	if name == "" {
		return nil
	}
	if strings.Contains(name, "/") {
		if !filepath.IsAbs(name) {
			name = filepath.Join(dir, name)
		}
		return []string{name}
	}
	path, ok := envLookup(env, "PATH")
	if !ok {
		path = dashDefaultPath
	}
	if strings.Contains(path, "%") {
		return nil // %builtin and %func elements: dash's own lookup
	}
	var paths []string
	for _, elem := range strings.Split(path, ":") {
		p := filepath.Join(elem, name)
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		paths = append(paths, p)
	}
	for i, p := range paths {
		if executableFile(p) {
			return paths[i:]
		}
	}
	return nil
}

// program is the name the command execs, "" for a line only sh can run.
func (c *command) program() string {
	switch {
	case !c.shell:
		return c.argv[0]
	case c.direct != nil:
		return c.direct[0]
	}
	return ""
}

// argvEnv is the argv and environment the program gets: a shell line's
// words, with the environment dash would pass on; a plain patch's argv
// and env unchanged.
func (c *command) argvEnv(env []string, dir string) ([]string, []string) {
	if !c.shell {
		return c.argv, env
	}
	return c.direct, dashEnv(env, dir)
}

// exec replaces the process with the command. A candidate that turns out
// to be missing is passed over, as dash does; any other failure, or no
// candidate at all, execs /bin/sh -c LINE instead: nothing has run yet,
// and sh then does (and reports) exactly what uWSGI's would. It returns
// only on failure.
func (c *command) exec(env []string, dir string) error {
	argv, penv := c.argvEnv(env, dir)
	err := fmt.Errorf("%s: not found", c.program())
	for _, p := range c.candidates(env, dir) {
		err = syscall.Exec(p, argv, penv)
		if err != syscall.ENOENT && err != syscall.ENOTDIR {
			break
		}
	}
	if !c.shell {
		return fmt.Errorf("exec %s: %w", argv[0], err)
	}
	sh, path := shellExec()
	return fmt.Errorf("exec %s: %w", sh, syscall.Exec(path, []string{sh, "-c", c.line}, env))
}

// dashEnv is the environment dash exports to what it runs: only entries
// with a valid name, the last of duplicates, IFS and OPTIND reset when
// inherited, and PWD always, corrected when it does not name dir.
func dashEnv(env []string, dir string) []string {
	idx := map[string]int{}
	var out []string
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !shellName(k) {
			continue
		}
		switch k {
		case "IFS":
			v = " \t\n"
		case "OPTIND":
			v = "1"
		}
		if i, seen := idx[k]; seen {
			out[i] = k + "=" + v
			continue
		}
		idx[k] = len(out)
		out = append(out, k+"="+v)
	}
	pwd, ok := envLookup(out, "PWD")
	if !ok || !filepath.IsAbs(pwd) || !sameFile(pwd, dir) {
		real, err := filepath.EvalSymlinks(dir)
		if err != nil {
			real = dir
		}
		if i, seen := idx["PWD"]; seen {
			out[i] = "PWD=" + real
		} else {
			out = append(out, "PWD="+real)
		}
	}
	return out
}

// sameFile reports whether two paths name the same file.
func sameFile(a, b string) bool {
	fa, errA := os.Stat(a)
	fb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(fa, fb)
}

// withoutEnv is env without key.
func withoutEnv(env []string, key string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !strings.HasPrefix(kv, key+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// shellName is a valid shell variable name.
func shellName(s string) bool {
	for i, c := range s {
		if c != '_' && (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return s != ""
}

// envLookup is the value of key in env, the last one where repeated.
func envLookup(env []string, key string) (string, bool) {
	val, found := "", false
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, key+"="); ok {
			val, found = v, true
		}
	}
	return val, found
}

// lookPath finds a program in the emperor's own PATH, as execvp would.
func lookPath(prog string) (string, error) {
	cwd, _ := os.Getwd()
	if paths := (&command{argv: []string{prog}}).candidates(os.Environ(), cwd); len(paths) > 0 {
		return paths[0], nil
	}
	return "", fmt.Errorf("%s: not found in PATH", prog)
}

// ==== Daemon life: logs, pidfiles, detaching ============================
// What init scripts and units expect of an emperor (Debian's uwsgi-emperor
// runs `--daemonize LOG --pidfile PID` under start-stop-daemon, which finds
// it again by pidfile, executable and process name), as uWSGI's
// core/uwsgi.c, core/logging.c and core/utils.c do it.

// daemonConfig is the emperor's own process settings, read once.
type daemonConfig struct {
	daemonize      string   // daemonize / daemonize2: detach, logging to this file
	logto, logto2  string   // log file (or udp host:port), before / after the privilege drop
	logChown       bool     // logfile-chown: the log file to the emperor's uid/gid
	logReopen      bool     // log-reopen: open the log again on SIGHUP
	touchReopen    []string // touch-logreopen: open the log again when one of these is touched
	pidfiles       []string // pidfile, safe-pidfile, emperor-pidfile: before the drop
	pidfiles2      []string // pidfile2, safe-pidfile2: after the drop
	safePid        map[string]bool
	vacuum         bool   // remove pidfiles and UNIX sockets at a clean exit
	procname       string // emperor-procname: the command line ps shows (comm stays, as in uWSGI)
	maxFD          uint64 // max-fd: RLIMIT_NOFILE for the emperor and its vassals
	limitAS        uint64 // limit-as, bytes: RLIMIT_AS of every vassal
	uid, gid       int    // for logfile-chown
	logFile        string // the log actually opened ("" for stderr as given)
	createdSockets []string
}

func (d *daemonConfig) load(o *Options, own ownPrivileges) error {
	d.daemonize, _ = o.Last("daemonize", "daemonize2")
	d.logto, _ = o.Last("logto")
	d.logto2, _ = o.Last("logto2")
	d.logChown = o.Flag("logfile-chown")
	d.logReopen = o.Flag("log-reopen")
	d.touchReopen = o.All("touch-logreopen")
	d.safePid = map[string]bool{}
	for _, key := range []string{"pidfile", "safe-pidfile", "emperor-pidfile", "pidfile2", "safe-pidfile2"} {
		p, ok := o.Last(key)
		if !ok || p == "" {
			continue
		}
		if strings.HasSuffix(key, "2") {
			d.pidfiles2 = append(d.pidfiles2, p)
		} else {
			d.pidfiles = append(d.pidfiles, p)
		}
		d.safePid[p] = strings.HasPrefix(key, "safe-")
	}
	d.vacuum = o.Flag("vacuum")
	d.procname, _ = o.Last("emperor-procname")
	if n := o.Int(0, "max-fd"); n > 0 {
		d.maxFD = uint64(n)
	}
	if n := o.Int(0, "limit-as"); n > 0 {
		d.limitAS = uint64(n) << 20
	}
	d.uid, d.gid = own.uid, own.gid
	if v, ok := o.Last("log-date", "logdate"); ok {
		logSettings.date = true
		switch strings.ToLower(v) {
		case "", "true", "1", "on", "yes":
		default:
			logSettings.strftime = v
		}
	}
	return nil
}

// daemonEnv marks the detached emperor; its value is the fd on which it
// tells the process that started it that it is up.
const daemonEnv = "EMPEROR_DAEMONIZED"

// detach runs the emperor again as a daemon in a session of its own, with
// the log file as stdout and stderr, and exits once it is up (its pidfile
// written), so the init script's next step finds it: 0 when it is up, 1
// when it failed (its reason is in the log).
func (d *daemonConfig) detach() {
	if d.daemonize == "" || os.Getenv(daemonEnv) != "" {
		return
	}
	log, err := openLogFile(d.daemonize)
	if err != nil {
		fmt.Fprintf(os.Stderr, "emperor: daemonize: %v\n", err)
		os.Exit(1)
	}
	null, err := os.Open(os.DevNull)
	if err != nil {
		fmt.Fprintf(os.Stderr, "emperor: daemonize: %v\n", err)
		os.Exit(1)
	}
	r, w, err := os.Pipe()
	if err != nil {
		fmt.Fprintf(os.Stderr, "emperor: daemonize: %v\n", err)
		os.Exit(1)
	}
	_, err = syscall.ForkExec(reexecPath(), os.Args, &syscall.ProcAttr{
		Env:   append(os.Environ(), daemonEnv+"=3"),
		Files: []uintptr{null.Fd(), log.Fd(), log.Fd(), w.Fd()},
		Sys:   &syscall.SysProcAttr{Setsid: true},
	})
	w.Close()
	if err != nil {
		fmt.Fprintf(os.Stderr, "emperor: daemonize: %v\n", err)
		os.Exit(1)
	}
	_ = r.SetReadDeadline(time.Now().Add(30 * time.Second))
	var up [1]byte
	if n, _ := r.Read(up[:]); n == 1 {
		os.Exit(0)
	}
	os.Exit(1)
}

// daemonUp tells the process that detached this one that it is up.
func daemonUp() {
	fd, err := strconv.Atoi(os.Getenv(daemonEnv))
	if err != nil || fd < 3 {
		return
	}
	os.Unsetenv(daemonEnv)
	_, _ = syscall.Write(fd, []byte{'1'})
	syscall.Close(fd)
}

// reexecPath is the path to exec this binary again by: the one it was
// started as, so the process keeps its name (comm is the basename of the
// path exec'd: an emperor installed as /usr/bin/uwsgi stays "uwsgi", which
// start-stop-daemon --name looks for), else the executable itself.
func reexecPath() string {
	self, err := os.Executable()
	if err != nil {
		self = "/proc/self/exe"
	}
	arg0 := os.Args[0]
	if !strings.Contains(arg0, "/") {
		if p, err := lookPath(arg0); err == nil {
			arg0 = p
		}
	}
	if sameFile(arg0, self) {
		return arg0
	}
	return self
}

// openLogFile opens a log file as uWSGI does: appended to, made if
// missing (0640, not touched by the umask), never truncated (logrotate's
// copytruncate relies on O_APPEND). "host:port" is a UDP logger.
func openLogFile(path string) (*os.File, error) {
	if socketNetwork(path) == "tcp" && !strings.Contains(path, "/") {
		c, err := net.Dial("udp", path)
		if err != nil {
			return nil, fmt.Errorf("udp logger %s: %w", path, err)
		}
		defer c.Close()
		return c.(*net.UDPConn).File()
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open log %s: %w", path, err)
	}
	return f, nil
}

// useLog makes path the emperor's stdout and stderr, which vassals
// inherit, as uWSGI's logto does.
func (d *daemonConfig) useLog(path string) error {
	f, err := openLogFile(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if d.logChown && d.uid >= 0 {
		_ = f.Chown(d.uid, d.gid)
	}
	if err := logOntoStdio(f); err != nil {
		return err
	}
	d.logFile = path
	return nil
}

// logOntoStdio makes the open log f stdout and stderr (fds 1 and 2).
func logOntoStdio(f *os.File) error {
	if err := dupOnto(int(f.Fd()), 1); err != nil {
		return err
	}
	return dupOnto(int(f.Fd()), 2)
}

// reopenLog opens the log file again (log-reopen on SIGHUP,
// touch-logreopen), after logrotate moved it away.
func (d *daemonConfig) reopenLog() {
	path := d.logFile
	if path == "" {
		path = d.daemonize
	}
	if path == "" {
		return
	}
	if err := d.useLog(path); err != nil {
		logRaw("[emperor] cannot reopen the log: %v", err)
		return
	}
	logRaw("[emperor] log reopened")
}

// writePidfiles writes the emperor's pid, mode 0644 whatever the umask
// (start-stop-daemon refuses a pidfile others can write), a "safe" one
// through a rename so a reader never sees it half written.
func (d *daemonConfig) writePidfiles(paths []string) {
	for _, p := range paths {
		logRaw("writing pidfile to %s", p)
		if err := writePidfile(p, d.safePid[p]); err != nil {
			// uWSGI goes on too: a full disk must not stop the vassals.
			logRaw("could not write pidfile. (%v)", err)
		}
	}
}

func writePidfile(path string, safe bool) error {
	target := path
	if safe {
		path = filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = f.WriteString(itoa(os.Getpid()) + "\n")
	if cerr := f.Chmod(0o644); err == nil {
		err = cerr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && safe {
		err = os.Rename(path, target)
	}
	return err
}

// startLog opens logto (a daemon already writes to its log), notices the
// journal, and applies the process limits: all before anything is logged
// that should go there.
func (d *daemonConfig) startLog() error {
	if d.logto != "" && d.daemonize == "" {
		if err := d.useLog(d.logto); err != nil {
			return err
		}
	}
	if d.daemonize != "" {
		d.logFile = d.daemonize
	}
	logSettings.journal = stderrIsJournal()
	return d.processLimits()
}

// watchLogReopen watches the touch-logreopen files' directories: touching
// one reopens the log at once.
func (e *emperor) watchLogReopen() {
	for _, p := range e.cfg.daemon.touchReopen {
		if abs, err := filepath.Abs(p); err == nil {
			e.watch.logReopen[abs] = true
			e.watch.fs.add(filepath.Dir(abs))
		}
	}
}

// setLimit sets an rlimit field, whose type the systems do not agree on.
func setLimit[T ~int64 | ~uint64](field *T, v uint64) { *field = T(v) }

// processLimits applies max-fd to the emperor (and so to every vassal, as
// in uWSGI) and names the process.
func (d *daemonConfig) processLimits() error {
	if d.maxFD > 0 {
		var lim syscall.Rlimit
		setLimit(&lim.Cur, d.maxFD)
		setLimit(&lim.Max, d.maxFD)
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return fmt.Errorf("max-fd %d: %w", d.maxFD, err)
		}
	}
	if d.procname != "" {
		setProcTitle(d.procname)
	}
	return nil
}

// cleanUp is vacuum at a clean exit: the pidfiles and the UNIX sockets the
// emperor made are removed.
func (d *daemonConfig) cleanUp() {
	if !d.vacuum {
		return
	}
	for _, p := range slices.Concat(d.pidfiles, d.pidfiles2, d.createdSockets) {
		if err := os.Remove(p); err == nil {
			logRaw("[emperor] removed %s", p)
		}
	}
}

// strftime formats t with a C strftime pattern (log-date=FORMAT), for the
// conversions log formats use.
func strftime(format string, t time.Time) string {
	var b []byte
	for i := 0; i < len(format); i++ {
		if format[i] != '%' || i+1 == len(format) {
			b = append(b, format[i])
			continue
		}
		i++
		switch c := format[i]; {
		case c < 128 && strftimeLayouts[c] != "":
			b = t.AppendFormat(b, strftimeLayouts[c])
		case c == 'j':
			b = append(b, fmt.Sprintf("%03d", t.YearDay())...)
		case c == 'n':
			b = append(b, '\n')
		case c == 't':
			b = append(b, '\t')
		case c == 's':
			b = strconv.AppendInt(b, t.Unix(), 10)
		case c == '%':
			b = append(b, '%')
		default:
			b = append(b, '%', c)
		}
	}
	return string(b)
}

// strftimeLayouts are the conversions Go's time layouts spell out.
var strftimeLayouts = [128]string{'a': "Mon", 'A': "Monday", 'b': "Jan", 'h': "Jan", 'B': "January",
	'c': "Mon Jan _2 15:04:05 2006", 'd': "02", 'e': "_2", 'F': "2006-01-02", 'H': "15", 'I': "03",
	'm': "01", 'M': "04", 'p': "PM", 'S': "05", 'T': "15:04:05", 'D': "01/02/06", 'y': "06", 'Y': "2006",
	'z': "-0700", 'Z': "MST"}

// ==== The emperor's own servers and daemons ==============================
// uWSGI runs the routers and servers of an emperor's own config (fastrouter,
// http, https, rawrouter, sslrouter, stats: the classic Emperor +
// FastRouter deployment) and its attach-daemon commands inside the emperor
// instance. Here the routers go to one companion uWSGI process, and every
// attached daemon is a process of its own; each is supervised like a
// vassal (respawned through the blacklist, in the stats, stopped at
// shutdown, gone with the emperor), under a name no config can have: "!".

// A `stats` address is the stats server of uWSGI's emperor master itself
// (core/master_utils.c, uwsgi_stats): the instance's counters, all zero
// for an emperor (routers are no sockets or workers of it), and its
// attached daemons, which are the emperor's here. The emperor serves that
// document: the companion uWSGI knows no daemons, and alone with stats it
// would have nothing to run (it exits with "no socket", over and over).

// companion is one of those processes: its fixed argv (cmd: the command
// as the config gave it, as uWSGI's stats show it), and for a daemon that
// daemonizes itself (smart-attach-daemon), the pidfile that names the
// process to watch once its launcher is gone.
type companion struct {
	name    string
	cmd     string
	argv    []string
	pidfile string
	stopSig syscall.Signal // the daemon's stop signal (attach-daemon2 stopsignal=); 0: SIGTERM
}

// gatewayOption reports whether an option of the emperor's own config
// belongs to the companion uWSGI: a router's or gateway's, or the
// instance's stats server (the emperor's own stats are emperor-stats).
func gatewayOption(name string) bool {
	for _, p := range []string{"http", "fastrouter", "rawrouter", "sslrouter", "forkptyrouter", "forkpty-router",
		"forkptyurouter", "forkpty-urouter", "tuntap-router", "tuntap-device"} {
		if name == p || strings.HasPrefix(name, p+"-") || p == "http" && strings.HasPrefix(name, "https") {
			return true
		}
	}
	return name == "stats" || name == "stats-server" || strings.HasPrefix(name, "stats-")
}

// companions reads the routers and daemons of the emperor's own config,
// and the address of the master's stats when the emperor serves them.
func companions(o *Options) (out []companion, masterStats string) {
	var gateway []string
	server := false
	for _, op := range o.List {
		if op.Key == "stats" || op.Key == "stats-server" {
			// The master's, whatever else runs: its daemons are ours.
			masterStats = op.Value
			continue
		}
		if gatewayOption(op.Key) {
			gateway = append(gateway, commandLineArg(op)...)
			// How stats are served is no server of its own.
			server = server || !strings.HasPrefix(op.Key, "stats")
		}
	}
	if server {
		// The gateways' plugins (Debian builds them as plugins), and what
		// the instance's routers run as.
		var with []string
		for _, op := range o.List {
			switch op.Key {
			case "plugin", "plugins", "uid", "gid":
				with = append(with, commandLineArg(op)...)
			}
		}
		out = append(out, companion{name: "!gateways", argv: slices.Concat([]string{"--master", "--die-on-term"}, with, gateway)})
	}
	// The daemons in the order the config gives them, as uWSGI registers
	// (and lists) them, each kind counted on its own.
	var plain, smart, two int
	for _, op := range o.List {
		switch {
		case configNameIn(op.Key, []string{"attach-daemon", "attach-control-daemon", "legion-attach-daemon"}):
			plain++
			out = append(out, companion{name: "!attach-daemon:" + itoa(plain), cmd: op.Value, argv: shellArgv(op.Value)})
		case configNameIn(op.Key, []string{"smart-attach-daemon", "smart-attach-daemon2"}):
			smart++
			pidfile, cmd, _ := strings.Cut(strings.TrimSpace(op.Value), " ")
			out = append(out, companion{name: "!smart-attach-daemon:" + itoa(smart), cmd: cmd, argv: shellArgv(cmd), pidfile: pidfile})
		case configNameIn(op.Key, []string{"attach-daemon2"}):
			kv := keyvals(op.Value)
			if kv["cmd"] == "" {
				continue
			}
			two++
			c := companion{name: "!attach-daemon2:" + itoa(two), cmd: kv["cmd"], argv: shellArgv(kv["cmd"])}
			if kv["pidfile"] != "" && configTrue(kv["daemonize"]) {
				c.pidfile = kv["pidfile"]
			}
			if n, err := strconv.Atoi(kv["stopsignal"]); err == nil {
				c.stopSig = syscall.Signal(n)
			}
			out = append(out, c)
		}
	}
	return out, masterStats
}

// shellArgv is how uWSGI runs a daemon's command: /bin/sh -c, or the
// program itself when that is provably the same.
func shellArgv(line string) []string {
	if argv := directArgv(line); argv != nil && len(binsh) == 0 {
		return argv
	}
	return []string{shellPath(), "-c", line}
}

// keyvals reads uWSGI's "k=v,k=v" option form.
func keyvals(s string) map[string]string {
	m := map[string]string{}
	for _, f := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(f, "=")
		m[strings.TrimSpace(k)] = v
	}
	return m
}

// commandLineArg is one option as a uWSGI command-line argument.
func commandLineArg(op Option) []string {
	if known, isFlag := knownOption(op.Key); known && isFlag {
		if !configTrue(op.Value) {
			return nil
		}
		return []string{"--" + op.Key}
	}
	return []string{"--" + op.Key + "=" + op.Value}
}

// addCompanions adds the records of the emperor's own servers and daemons
// (once, at start, before the first scan), and serves the master's stats.
func (e *emperor) addCompanions() {
	if e.cfg.masterStats != "" {
		if err := e.startMasterStats(); err != nil {
			logRaw("[emperor] %v", err)
		}
	}
	for i := range e.cfg.companions {
		c := &e.cfg.companions[i]
		if c.name == "!gateways" {
			bin, err := findUWSGI(e.spawns.baseEnv)
			if err != nil {
				logRaw("[emperor] the routers and servers of the emperor's config need uWSGI: %v", err)
				continue
			}
			c.argv = append([]string{bin}, c.argv...)
		}
		v := &vassal{name: c.name, mon: e.watch.own, path: c.name, sock: -1, odFd: -1, companion: c,
			uid: uint32(os.Getuid()), gid: uint32(os.Getgid())}
		e.vassals.byName[v.name] = v
		e.vassals.order = append(e.vassals.order, v)
		logVerbose("[emperor] %s: %s", c.name, strings.Join(c.argv, " "))
		e.wake(v)
	}
}

// startMasterStats serves the master's stats document on its address, as
// the emperor's stats server serves its own: off the loop, from snapshots.
func (e *emperor) startMasterStats() error {
	addr := e.cfg.masterStats
	network := socketNetwork(addr)
	if network == "unix" {
		_ = os.Remove(addr)
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		return fmt.Errorf("stats %s: %w", addr, err)
	}
	if network == "unix" {
		e.cfg.daemon.createdSockets = append(e.cfg.daemon.createdSockets, addr)
		e.chmodSocket(addr)
	}
	cmds := map[string]string{}
	for _, c := range e.cfg.companions {
		cmds[c.name] = c.cmd
	}
	srv := e.statsServer()
	clients := &statsClients{slots: make(chan struct{}, maxStatsClients)}
	cwd, withHTTP := e.watch.startCwd, e.cfg.statsHTTP
	fd := -1
	if sc, ok := ln.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			_ = rc.Control(func(f uintptr) { fd = int(f) })
		}
	}
	logRaw("*** Stats server enabled on %s fd: %d ***", addr, fd)
	go srv.serve(ln, clients, func(conn net.Conn) {
		srv.answerDocument(conn, clients, withHTTP, func(snap *statsSnapshot, out io.Writer) error {
			_, err := out.Write(renderMasterStats(snap, cwd, cmds))
			return err
		})
	})
	go func() { <-srv.done; ln.Close() }()
	return nil
}

// renderMasterStats is uWSGI's master stats document for an emperor: no
// sockets, no workers, the attached daemons (cmds: their commands by
// record name) with their pid (0 while down) and restarts (uWSGI 2.0.21
// means to show its spawn count there and always shows 0).
func renderMasterStats(snap *statsSnapshot, cwd string, cmds map[string]string) []byte {
	w := &jsonWriter{}
	w.open("", '{')
	w.str("version", uwsgiVersion())
	for _, k := range []string{"listen_queue", "listen_queue_errors", "signal_queue", "load"} {
		w.num(k, 0)
	}
	w.num("pid", int64(snap.pid))
	w.num("uid", int64(snap.uid))
	w.num("gid", int64(snap.gid))
	w.str("cwd", cwd)
	var daemons []vassalStat
	for _, v := range snap.vassals {
		if _, ok := cmds[v.id]; ok && v.id != "!gateways" {
			daemons = append(daemons, v)
		}
	}
	if len(daemons) > 0 {
		w.open("daemons", '[')
		for _, d := range daemons {
			w.open("", '{')
			w.str("cmd", cmds[d.id])
			w.num("pid", int64(max(d.pid, 0)))
			w.num("respawns", int64(max(d.starts-1, 0)))
			w.close('}')
		}
		w.close(']')
	}
	w.open("locks", '[')
	for _, l := range []string{"user 0", "signal", "filemon", "timer", "rbtimer", "cron", "rpc", "snmp"} {
		w.open("", '{')
		w.num(l, 0)
		w.close('}')
	}
	w.close(']')
	w.open("sockets", '[')
	w.close(']')
	w.open("workers", '[')
	w.close(']')
	w.close('}')
	return w.b
}

// companionPlan is how a companion is exec'd: its own argv, as the
// emperor, in the emperor's directory.
func (e *emperor) companionPlan(v *vassal, env []string, attr *syscall.SysProcAttr) (*execPlan, error) {
	c := v.companion
	path := c.argv[0]
	if !strings.Contains(path, "/") {
		found, err := lookPath(path)
		if err != nil {
			return nil, err
		}
		path = found
	}
	return &execPlan{path: path, argv: c.argv, dir: e.watch.startCwd, env: env, attr: attr}, nil
}

// adoptDue looks for a smart daemon's process, for up to two seconds after
// its launcher exited; a daemon that never appears has died.
func (e *emperor) adoptDue(v *vassal) {
	if v.pid != 0 || v.deleted || e.shutdown.dying || e.adoptDaemon(v) {
		v.adopting = false
		return
	}
	if v.adoptTries++; v.adoptTries < 20 {
		e.timers.push(timerItem{at: time.Now().Add(100 * time.Millisecond), kind: tAdopt, v: v, gen: v.gen})
		return
	}
	v.adopting = false
	v.lastExit = "no process in " + v.companion.pidfile
	e.died(v, childExit{})
}

// adoptDaemon: a smart daemon's launcher exited after daemonizing; the
// process its pidfile names (re-parented to the emperor, its subreaper)
// is the daemon from now on.
func (e *emperor) adoptDaemon(v *vassal) bool {
	data, err := readRegularFile(v.companion.pidfile, 64)
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 1 || e.vassals.byPid[pid] != nil || syscall.Kill(pid, 0) != nil {
		return false
	}
	v.pid = pid
	v.gen++
	e.vassals.byPid[pid] = v
	logVerbose("[emperor] %s: watching pid %d from %s", v.name, pid, v.companion.pidfile)
	return true
}

// ==== The vassal runner =================================================

// runVassal is the vassal runner: what a uWSGI instance does with a config
// that only patches in another program. It applies env, chdir and the
// privilege drop, then execs the program, which inherits the emperor fd.
func runVassal(opts *Options, args, orig []string) int {
	name := configArgName(args)
	if cmd, _ := patchFirst(opts, args); cmd == nil {
		// Not a binary patch: an app server's config, for a real uWSGI.
		return execUWSGI(name, orig)
	}
	os.Unsetenv(uwsgiBinaryEnv)
	waitForFSTimeout = opts.Int(60, "wait-for-fs-timeout")
	binsh = opts.All("binsh")
	// uWSGI's order (core/uwsgi.c, uwsgi_setup and uwsgi_start): what the
	// options do as they are read, asap hooks, envdirs, the log, the
	// config shown, the pidfile, pre-jail hooks, the privileged patch,
	// cgroups, in-jail hooks, namespaces, post-jail hooks, the chroot,
	// as-root hooks, the uid/gid drop, as-user hooks, the unprivileged
	// patch. A runner re-run in a new pid namespace (unshareFromConfig)
	// goes on after the namespaces.
	steps := []func() error{
		func() error { return runnerConfigured(opts, true, false) },
		func() error { return applyEnv(opts) },
		func() error { unenvUmask(opts); return nil },
		func() error { return runHooks(opts, "asap") },
		func() error { return runnerEnvdirs(opts.All("envdir")) },
		func() error { return runnerLog(opts) },
		func() error { return runnerPidfile(opts) },
		func() error { return runHooks(opts, "pre-jail") },
		func() error { return execPatch(opts, "privileged-binary-patch", args) },
		func() error { return cgroupFromConfig(opts) },
		func() error { return runHooks(opts, "in-jail") },
		func() error { return unshareFromConfig(opts) },
	}
	if os.Getenv(runnerUnsharedEnv) != "" {
		os.Unsetenv(runnerUnsharedEnv) // not the program's
		steps = nil
	}
	steps = append(steps,
		func() error { return postJail(opts) },
		func() error { return chrootFromConfig(opts) },
		func() error { return runHooks(opts, "as-root") },
		func() error { return dropPrivileges(opts) },
		func() error { return runHooks(opts, "as-user") },
		func() error { return execPatch(opts, "unprivileged-binary-patch", args) },
	)
	for _, step := range steps {
		if err := step(); err != nil {
			fmt.Fprintf(os.Stderr, "emperor: vassal %s: %v\n", name, err)
			return 1
		}
	}
	fmt.Fprintf(os.Stderr, "emperor: vassal %s: nothing to run: set unprivileged-binary-patch-arg (or privileged-binary-patch-arg, or binary-path to a uWSGI binary)\n", name)
	return 1
}

// runnerSetupKeys are the options the runner carries out before the
// program runs (runnerConfigured to runnerPidfile).
var runnerSetupKeys = []string{"flock", "flock-wait", "flock2", "flock-wait2", "print", "early-envdir",
	"envdir", "daemonize", "logto", "pidfile"}

// runnerConfigured does what uWSGI does with these options as it reads
// them: early-envdir loads, flock and flock-wait lock, print writes its
// value to stdout (unless quiet: it did already). The lock's fd outlives
// an exec when the program is to hold it (keep: the runner), not
// otherwise (the emperor's vassals).
func runnerConfigured(opts *Options, keep, quiet bool) error {
	for _, o := range opts.List {
		var err error
		switch o.Key {
		case "early-envdir":
			err = runnerEnvdirs([]string{o.Value})
		case "flock", "flock-wait":
			err = holdLock(o.Value, o.Key == "flock-wait", keep)
		case "print":
			if !quiet {
				fmt.Println(o.Value)
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// holdLock takes a write lock on path, as uWSGI's flock options do, on an
// fd left open across the exec: the program holds it while it runs, and a
// second instance fails (or, waiting, queues behind it).
func holdLock(path string, wait, keep bool) error {
	fd, err := syscall.Open(path, syscall.O_RDWR, 0) // no O_CLOEXEC: the lock may outlive the exec
	if err != nil {
		return fmt.Errorf("open(\"%s\"): %w", path, err)
	}
	if !keep {
		syscall.CloseOnExec(fd)
	}
	op := syscall.F_SETLK
	if wait {
		op = syscall.F_SETLKW
	}
	lk := syscall.Flock_t{Type: syscall.F_WRLCK}
	for {
		if err = syscall.FcntlFlock(uintptr(fd), op, &lk); err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		syscall.Close(fd)
		if !wait {
			return fmt.Errorf("uWSGI ERROR: %s is locked by another instance", path)
		}
		return fmt.Errorf("fcntl() on %s: %w", path, err)
	}
	return nil
}

// runnerEnvdirs loads daemontools envdirs as uWSGI does: each regular
// file whose name does not start with a dot sets the variable it names
// to its content up to a NUL, trailing white space cut; an empty file
// unsets it.
func runnerEnvdirs(dirs []string) error {
	for _, dir := range dirs {
		ents, err := readDir(dir)
		if err != nil {
			return fmt.Errorf("[uwsgi-envdir] %w", err)
		}
		for _, e := range ents {
			name := e.Name()
			if name[0] == '.' {
				continue
			}
			path := filepath.Join(dir, name)
			st, err := os.Stat(path)
			if err != nil {
				return fmt.Errorf("[uwsgi-envdir] %w", err)
			}
			if !st.Mode().IsRegular() {
				continue
			}
			if st.Size() == 0 {
				os.Unsetenv(name)
				continue
			}
			data, err := readRegularFile(path, 1<<20)
			if err != nil {
				return fmt.Errorf("[uwsgi-envdir] %w", err)
			}
			v, _, _ := strings.Cut(string(data), "\x00")
			if err := os.Setenv(name, strings.TrimRight(v, "\r\n\t ")); err != nil {
				return fmt.Errorf("[uwsgi-envdir] %s: %w", path, err)
			}
		}
	}
	return nil
}

// runnerLog makes the config's log the program's stdout and stderr, as
// uWSGI does before the patch (daemonize, under an emperor, is a logto):
// appended to, or emptied with log-truncate, mode logfile-chmod; flock2
// and flock-wait2 lock next, and show-config goes to it.
func runnerLog(opts *Options) error {
	path, _ := opts.Last("daemonize")
	if path == "" {
		path, _ = opts.Last("logto")
	}
	if path != "" {
		f, err := openLogFile(path)
		if err == nil && opts.Flag("log-truncate") && !strings.Contains(path, ":") {
			f.Close()
			f, err = os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
		}
		if err != nil {
			return err
		}
		defer f.Close()
		if m, ok := opts.Last("logfile-chmod"); ok {
			if n, err := strconv.ParseUint(m, 8, 32); err == nil {
				_ = f.Chmod(os.FileMode(n))
			}
		}
		if err := logOntoStdio(f); err != nil {
			return err
		}
	}
	for _, key := range []string{"flock2", "flock-wait2"} {
		if p, ok := opts.Last(key); ok {
			if err := holdLock(p, key == "flock-wait2", true); err != nil {
				return err
			}
		}
	}
	if opts.Flag("show-config") {
		fmt.Fprint(os.Stderr, ShowConfig(opts))
	}
	return nil
}

// runnerPidfile writes the pidfile, which is the program's pid: the
// runner becomes the program.
func runnerPidfile(opts *Options) error {
	if p, ok := opts.Last("pidfile"); ok && p != "" {
		fmt.Fprintf(os.Stderr, "writing pidfile to %s\n", p)
		if err := writePidfile(p, false); err != nil {
			fmt.Fprintf(os.Stderr, "could not write pidfile. (%v)\n", err)
		}
	}
	return nil
}

// runnerUnsharedEnv marks a runner re-run in the new pid namespace its
// config asked for: what came before the namespaces is done.
const runnerUnsharedEnv = "EMPEROR_UNSHARED"

// uwsgiBinaryEnv carries binary-path from the emperor to its vassal
// runners; it never reaches a vassal's own program.
const uwsgiBinaryEnv = "EMPEROR_UWSGI_BINARY"

// execUWSGI replaces the runner with a real uWSGI for a vassal that is an
// app server's config, with the runner's own arguments: uWSGI reads the
// config itself, from the same directory, with the emperor fd inherited.
func execUWSGI(name string, args []string) int {
	bin, err := findUWSGI(os.Environ())
	if err != nil {
		fmt.Fprintf(os.Stderr, "emperor: vassal %s: %v\n", name, err)
		return 1
	}
	os.Unsetenv(uwsgiBinaryEnv)
	err = syscall.Exec(bin, append([]string{bin}, args...), os.Environ())
	fmt.Fprintf(os.Stderr, "emperor: vassal %s: exec %s: %v\n", name, bin, err)
	return 1
}

// findUWSGI is the uWSGI app vassals run with: binary-path, else
// uwsgi-core or uwsgi on PATH, never this binary (which may be installed
// as /usr/bin/uwsgi).
func findUWSGI(env []string) (string, error) {
	if bin, ok := envLookup(env, uwsgiBinaryEnv); ok && bin != "" {
		return bin, nil
	}
	self, _ := os.Executable()
	cwd, _ := os.Getwd()
	for _, name := range []string{"uwsgi-core", "uwsgi"} {
		for _, p := range (&command{argv: []string{name}}).candidates(env, cwd) {
			if executableFile(p) && !sameFile(p, self) {
				return p, nil
			}
		}
	}
	return "", fmt.Errorf("it is an app server's config (no unprivileged-binary-patch-arg), and no uWSGI is installed: apt-get install uwsgi-core (and its plugins, e.g. uwsgi-plugin-python3), or set binary-path")
}

// applyEnv sets the config's env options in the runner's own environment,
// which its hooks and the patched program inherit.
func applyEnv(opts *Options) error {
	env := withEnv(os.Environ(), opts.All("env"))
	os.Clearenv()
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		if err := os.Setenv(k, v); err != nil {
			return fmt.Errorf("env %s: %w", k, err)
		}
	}
	return nil
}

// cgroupFromConfig puts the runner, and so the program it becomes, in
// each `cgroup` directory (made with cgroup-dir-mode, 700, when missing)
// and writes each `cgroup-opt` KEY=VALUE (or KEY:VALUE) into it, as uWSGI
// does at its start (core/utils.c, uwsgi_set_cgroup), and like it only as
// root, with its log lines. uWSGI writes the pid to a v1 cgroup's `tasks`;
// a cgroup v2 directory has no such file, and gets it in `cgroup.procs`.
// A vassal that moves itself so leaves the cgroup the emperor tracks it by:
// the emperor's environment marker still tells its processes.
func cgroupFromConfig(opts *Options) error {
	dirs := opts.All("cgroup")
	if len(dirs) == 0 || os.Getuid() != 0 {
		return nil
	}
	modeText, ok := opts.Last("cgroup-dir-mode")
	if !ok {
		modeText = "700"
	}
	mode, err := strconv.ParseUint(modeText, 8, 32)
	if err != nil {
		return fmt.Errorf("cgroup-dir-mode %q: %w", modeText, err)
	}
	for _, dir := range dirs {
		switch err := os.Mkdir(dir, os.FileMode(mode)); {
		case err == nil:
			fmt.Fprintf(os.Stderr, "created Linux cgroup %s with mode %o\n", dir, mode)
		case !errors.Is(err, os.ErrExist):
			return fmt.Errorf("cgroup: %w", err)
		default:
			if err := os.Chmod(dir, os.FileMode(mode)); err != nil {
				return fmt.Errorf("cgroup: %w", err)
			}
			fmt.Fprintf(os.Stderr, "using Linux cgroup %s with mode %o\n", dir, mode)
		}
		tasks := filepath.Join(dir, "tasks")
		if _, err := os.Stat(tasks); err != nil {
			tasks = filepath.Join(dir, "cgroup.procs")
		}
		if err := writeExisting(tasks, strconv.Itoa(os.Getpid())+"\n"); err != nil {
			return fmt.Errorf("could not set cgroup: %w", err)
		}
		fmt.Fprintf(os.Stderr, "assigned process %d to cgroup %s\n", os.Getpid(), tasks)
		for _, opt := range opts.All("cgroup-opt") {
			key, val, ok := strings.Cut(opt, "=")
			if !ok {
				if key, val, ok = strings.Cut(opt, ":"); !ok {
					return fmt.Errorf("invalid cgroup-opt syntax: %q", opt)
				}
			}
			file := filepath.Join(dir, key)
			if _, err := os.Stat(file); err != nil {
				continue // as uWSGI: a knob this cgroup has not is skipped
			}
			if err := writeExisting(file, val+"\n"); err != nil {
				return fmt.Errorf("could not set cgroup option %s to %s: %w", key, val, err)
			}
			fmt.Fprintf(os.Stderr, "set %s to %s\n", val, file)
		}
	}
	return nil
}

// writeExisting writes s to a file that must exist (a kernel interface
// file: creating one would be a mistake).
func writeExisting(path, s string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(s); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	return f.Close()
}

func chrootFromConfig(opts *Options) error {
	dir, _ := opts.Last("chroot")
	return enterChroot(dir)
}

// enterChroot jails the process in dir ("" = no jail).
func enterChroot(dir string) error {
	if dir == "" {
		return nil
	}
	if err := syscall.Chroot(dir); err != nil {
		return fmt.Errorf("chroot %s: %w", dir, err)
	}
	if err := os.Chdir("/"); err != nil {
		return fmt.Errorf("chroot %s: %w", dir, err)
	}
	return nil
}

// runHooks runs one phase's hooks: hook-PHASE actions, then exec-PHASE
// shell commands, each in config order. Any failure stops the vassal.
func runHooks(opts *Options, phase string) error {
	return runHookPhase(phase, opts.All("hook-"+phase), opts.All("mount-"+phase), opts.All("umount-"+phase), opts.All("exec-"+phase), nil)
}

// runHookPhase runs one phase's hooks as uWSGI's core/hooks.c does, each
// logged before it runs: hook actions, mounts, umounts, then exec command
// lines (through /bin/sh -c), each in config order. The first failure
// stops the phase; what it means is the caller's (fatal for a vassal's).
func runHookPhase(phase string, hooks, mounts, umounts, execs, _ []string) error {
	label := phase // as uWSGI names the phases in its log
	switch phase {
	case "as-root", "as-user":
		label = "as " + phase[3:]
	case "as-user-atexit":
		label = "atexit"
	}
	for _, g := range [...]struct {
		opt, verb, action string
		items             []string
	}{{"hook-", "running", "", hooks}, {"mount-", "mounting", "mount:", mounts},
		{"umount-", "un-mounting", "umount:", umounts}, {"exec-", "running", "exec:", execs}} {
		for _, h := range g.items {
			if g.opt == "exec-" && strings.HasPrefix(phase, "as-user") {
				// uWSGI names the ids these commands run with.
				fmt.Fprintf(os.Stderr, "running \"%s\" (as uid: %d gid: %d) ...\n", h, os.Getuid(), os.Getgid())
			} else {
				fmt.Fprintf(os.Stderr, "%s \"%s\" (%s)...\n", g.verb, h, label)
			}
			a := g.action + h
			if g.action == "" {
				a = strings.TrimPrefix(h, "!")
			}
			if err := runHookAction(a); err != nil {
				return fmt.Errorf("%s%s %q: %w", g.opt, phase, h, err)
			}
		}
	}
	return nil
}

// runShell runs a hook's command line through /bin/sh -c (or binsh), as uWSGI does,
// and fails, saying so as uWSGI does, on a non-zero exit.
func runShell(cmdline string) error {
	if rc := runWait(exec.Command(shellPath(), "-c", cmdline)); rc != 0 {
		fmt.Fprintf(os.Stderr, "command \"%s\" exited with non-zero code: %d\n", cmdline, rc)
		return fmt.Errorf("exited with code %d", rc)
	}
	return nil
}

// runHookAction performs one uWSGI hook, "action:arguments".
func runHookAction(h string) error {
	action, arg, ok := strings.Cut(h, ":")
	if !ok {
		return fmt.Errorf("invalid hook syntax, must be hook:args")
	}
	switch action {
	case "exec":
		return runShell(arg)
	case "safeexec":
		_ = runShell(arg) // logged, never fails
	case "cd":
		return os.Chdir(arg)
	case "create", "creat":
		f, err := os.OpenFile(arg, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o666)
		if err == nil {
			err = f.Close()
		}
		return err
	case "chmod":
		path, mode, _ := strings.Cut(arg, " ")
		m, err := strconv.ParseUint(strings.TrimSpace(mode), 8, 32)
		if err != nil {
			return fmt.Errorf("chmod %s: bad mode %q", path, mode)
		}
		return os.Chmod(path, os.FileMode(m))
	case "print", "log":
		fmt.Fprintln(os.Stderr, arg)
	case "chdir":
		return os.Chdir(arg)
	case "mkdir":
		return os.Mkdir(arg, 0o777)
	case "putenv":
		k, v, ok := strings.Cut(arg, "=")
		if !ok {
			return os.Unsetenv(k) // glibc's putenv("NAME")
		}
		return os.Setenv(k, v)
	case "unlink":
		return os.Remove(arg)
	case "write", "append", "writen", "appendn", "writefifo":
		path, content, ok := strings.Cut(arg, " ")
		if !ok && action != "appendn" {
			return fmt.Errorf("invalid hook %s syntax, must be: <file> <string>", action)
		}
		flags := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
		switch action {
		case "append", "appendn":
			flags = os.O_WRONLY | os.O_CREATE | os.O_APPEND
		case "writefifo":
			flags = os.O_WRONLY | syscall.O_NONBLOCK
		}
		if strings.HasSuffix(action, "n") {
			content += "\n"
		}
		f, err := os.OpenFile(path, flags, 0o666)
		if errors.Is(err, syscall.ENXIO) || errors.Is(err, syscall.ENODEV) {
			return nil // a FIFO nobody reads: nothing to tell
		}
		if err != nil {
			return err
		}
		_, err = f.WriteString(content)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	case "sticky":
		fi, err := os.Stat(arg)
		if err == nil {
			err = os.Chmod(arg, fi.Mode()|os.ModeSticky)
		}
		return err
	case "chown", "chown2":
		f := strings.SplitN(arg, " ", 3)
		if len(f) != 3 {
			return fmt.Errorf("invalid hook %s syntax, must be: <file> <uid> <gid>", action)
		}
		ids := f[1:]
		if action == "chown" { // names only, as getpwnam and getgrnam take them
			for i, file := range []string{"/etc/passwd", "/etc/group"} {
				e, ok := idFileEntry(file, ids[i], 0)
				if !ok {
					return fmt.Errorf("unable to find %s %s", [...]string{"uid", "gid"}[i], ids[i])
				}
				ids[i] = e[2]
			}
		}
		uid, uerr := strconv.Atoi(ids[0])
		gid, gerr := strconv.Atoi(ids[1])
		if uerr != nil || gerr != nil {
			return fmt.Errorf("invalid hook chown2 syntax, uid and gid must be numbers")
		}
		return os.Chown(f[0], uid, gid)
	case "wait_for_fs", "wait_for_file", "wait_for_dir":
		return waitForFS(arg, action[9:])
	case "hostname":
		return setHostname(arg)
	case "mount":
		return hookMount(strings.Fields(arg))
	case "umount":
		return hookUnmount(strings.Fields(arg))
	case "exit":
		code, _ := strconv.Atoi(arg)
		os.Exit(code)
	default:
		return fmt.Errorf("hook action not found: %s", action)
	}
	return nil
}

// waitForFSTimeout is wait-for-fs-timeout, in seconds: how long the
// wait_for_* hooks wait.
var waitForFSTimeout = 60

// waitForFS is the wait_for_fs, wait_for_file and wait_for_dir hooks
// (kind fs, file, dir), as uWSGI words and times them: a look every
// second until path is there (as a regular file, a directory), for one
// look more than the timeout. Polling: the hook runs in a vassal's start
// (or the emperor's), which has nothing else to do meanwhile.
func waitForFS(path, kind string) error {
	fmt.Fprintf(os.Stderr, "waiting for %s (max %d seconds) ...\n", path, waitForFSTimeout)
	for n := 0; ; n++ {
		if n > waitForFSTimeout {
			return fmt.Errorf("%s unavailable after %d seconds", path, n)
		}
		if fi, err := os.Stat(path); err == nil && (kind == "fs" || fi.Mode().IsRegular() == (kind == "file")) {
			logVerbose("%s found", path)
			return nil
		}
		time.Sleep(time.Second)
	}
}

// execPatch replaces the runner with the patched program, if the config
// names one. It only returns on failure or when there is nothing to exec.
func execPatch(opts *Options, key string, args []string) error {
	cmd := patchCommand(opts, key, args)
	if cmd == nil {
		return nil
	}
	if dir, ok := opts.Last("chdir"); ok && dir != "" {
		if err := os.Chdir(dir); err != nil {
			return fmt.Errorf("chdir: %w", err)
		}
	}
	cwd, err := os.Getwd()
	if err != nil {
		return fmt.Errorf("%s: getcwd: %w", key, err)
	}
	return fmt.Errorf("%s: %w", key, cmd.exec(os.Environ(), cwd))
}

// dropPrivileges applies the config's gid then uid (names or numbers), with
// the user's supplementary groups, as uWSGI's uid/gid options do. Only root
// can change them; asking for one's own ids is not an error.
func dropPrivileges(opts *Options) error {
	if !opts.Has("uid") && !opts.Has("gid") {
		return nil
	}
	cred, err := credentialFor(opts)
	if err != nil {
		return err
	}
	uid, gid := int(cred.Uid), int(cred.Gid)
	if os.Getuid() != 0 {
		if uid != os.Getuid() || gid != os.Getgid() {
			return fmt.Errorf("cannot switch to uid %d gid %d as non-root user %d", uid, gid, os.Getuid())
		}
		return nil
	}
	groups := make([]int, len(cred.Groups))
	for i, g := range cred.Groups {
		groups[i] = int(g)
	}
	ppid := os.Getppid()
	if err := setIDs(uid, gid, groups); err != nil {
		return err
	}
	logDrop(uid, gid)
	if os.Getenv("UWSGI_EMPEROR_FD") != "" {
		rearmParentDeath(ppid)
	}
	return nil
}

// account is a user of /etc/passwd: name, uid and primary gid.
type account struct {
	_        noCompare
	name     string
	uid, gid int
}

// lookupUser resolves a user name or a numeric uid. The accounts come from
// /etc/passwd and /etc/group, read as Go's os/user reads them in a static
// binary (no NSS), by a few lines here instead of that package's 30 KB. A
// uid with no entry is taken as it is, with no account (nil).
func lookupUser(s string) (*account, int, error) {
	f, ok := idFileEntry("/etc/passwd", s, 0)
	if !ok {
		f, ok = idFileEntry("/etc/passwd", s, 2)
	}
	if !ok {
		if n, err := strconv.Atoi(s); err == nil {
			return nil, n, nil
		}
		return nil, 0, fmt.Errorf("uid %s: unknown user %s", s, s)
	}
	uid, err1 := strconv.Atoi(f[2])
	gid, err2 := strconv.Atoi(f[3])
	if err1 != nil || err2 != nil {
		return nil, 0, fmt.Errorf("uid %s: malformed /etc/passwd entry", s)
	}
	return &account{name: f[0], uid: uid, gid: gid}, uid, nil
}

func lookupGroup(s string) (int, error) {
	if n, err := strconv.Atoi(s); err == nil {
		return n, nil
	}
	f, ok := idFileEntry("/etc/group", s, 0)
	if !ok {
		return 0, fmt.Errorf("gid %s: unknown group %s", s, s)
	}
	return strconv.Atoi(f[2])
}

// nameOfID is the name of a uid (in /etc/passwd) or gid (in /etc/group).
func nameOfID(file, id string) (string, bool) {
	f, ok := idFileEntry(file, id, 2)
	if !ok {
		return "", false
	}
	return f[0], true
}

// groupsOf is the gids of the groups of /etc/group that list name as a
// member.
func groupsOf(name string) []int {
	var gids []int
	eachIDFileEntry("/etc/group", func(f []string) bool {
		if slices.Contains(strings.Split(f[3], ","), name) {
			if n, err := strconv.Atoi(f[2]); err == nil {
				gids = append(gids, n)
			}
		}
		return false
	})
	return gids
}

// idFileEntry is the first entry of a passwd-format file whose field
// (0: name, 2: id) is key.
func idFileEntry(file, key string, field int) (found []string, ok bool) {
	eachIDFileEntry(file, func(f []string) bool {
		if f[field] == key {
			found, ok = f, true
		}
		return ok
	})
	return found, ok
}

// eachIDFileEntry calls fn with the fields of each entry (at least four)
// until it returns true.
func eachIDFileEntry(file string, fn func([]string) bool) {
	data, err := readRegularFile(file, configMaxFileSize)
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Split(line, ":"); len(f) >= 4 && !strings.HasPrefix(line, "#") && fn(f) {
			return
		}
	}
}

// logDrop writes the lines uWSGI writes as it drops to gid and uid,
// which it skips for root's 0: setgid, each supplementary group the
// kernel holds (in its order: ascending) but the gid, setuid.
func logDrop(uid, gid int) {
	groups, _ := syscall.Getgroups()
	logDropTo(uid, gid, groups)
}

func logDropTo(uid, gid int, groups []int) {
	if gid != 0 {
		logRaw("setgid() to %d", gid)
		for _, g := range groups {
			if g == gid {
				continue
			}
			if f, ok := idFileEntry("/etc/group", itoa(g), 2); ok {
				logRaw("set additional group %d (%s)", g, f[0])
			} else {
				logRaw("set additional group %d", g)
			}
		}
	}
	if uid != 0 {
		logRaw("setuid() to %d", uid)
	}
}

// setIDs switches the whole process to gid, uid with exactly the given
// supplementary groups (none for tyrant vassals, as uWSGI 2.0).
func setIDs(uid, gid int, groups []int) error {
	if groups == nil {
		groups = []int{}
	}
	if err := syscall.Setgroups(groups); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setgid(gid); err != nil {
		return fmt.Errorf("setgid(%d): %w", gid, err)
	}
	if err := syscall.Setuid(uid); err != nil {
		return fmt.Errorf("setuid(%d): %w", uid, err)
	}
	return nil
}

// configAsINI turns "--config FILE" for a name no loader claims (what the
// emperor passes for --emperor-extra-extension configs) into "--ini FILE":
// uWSGI would need a configurator plugin; the runner reads such files as INI.
func configAsINI(args []string) []string {
	out := append([]string(nil), args...)
	for i := 0; i+1 < len(out); i++ {
		if out[i] != "--config" {
			continue
		}
		if configKindByExt(out[i+1]) == "" {
			out[i] = "--ini"
		}
	}
	return out
}

// configArgName finds the vassal config on the runner's command line, for
// error messages.
func configArgName(args []string) string {
	for i := 0; i < len(args); i++ {
		a := strings.TrimLeft(args[i], "-")
		key, val, hasVal := strings.Cut(a, "=")
		if _, loader := configOptionKind[key]; !loader {
			continue
		}
		if hasVal {
			return val
		}
		if i+1 < len(args) {
			return args[i+1]
		}
	}
	if len(args) > 0 {
		return args[len(args)-1]
	}
	return "?"
}

// ==== Hooks around vassals ===============================================
// uWSGI's hooks of an emperor's config (core/emperor.c): vassals-start-hook
// and the *-as-vassal options run in the vassal's process before its exec
// (the pre-exec stage), the *-as-emperor options and vassals-stop-hook in
// processes of the emperor's own, never on the loop: a slow hook delays
// nothing else (uWSGI's loop waits for each).

// hookConfig is every hook option of the emperor's config, read once.
type hookConfig struct {
	startHook, stopHook string
	asVassal            phaseHooks        // hook-, mount-, umount-, exec-as-vassal
	asEmperor           phaseHooks        // hook-, mount-, umount-, exec-as-emperor
	emperorStart        []string          // hook-emperor-start: once, before the first scan; fatal
	parentHooks         map[byte][]string // hook-emperor-stop, -reload, -lost: a sub-emperor's, by its emperor's message
	overrides           []string          // emperor-wrapper-override
	fallbacks           []string          // emperor-wrapper-fallback
	magicExec           bool              // emperor-magic-exec: an executable config is run for its output
	broodlord           int               // emperor-broodlord: zergs at most at once
}

type phaseHooks struct{ hooks, mounts, umounts, execs []string }

func (p phaseHooks) any() bool {
	return len(p.hooks)+len(p.mounts)+len(p.umounts)+len(p.execs) > 0
}

func (h *hookConfig) load(o *Options) error {
	for _, key := range []string{"call-as-vassal", "call-as-vassal1", "call-as-vassal3", "call-as-emperor",
		"call-as-emperor1", "call-as-emperor2", "call-as-emperor4"} {
		if o.Has(key) {
			return fmt.Errorf("option --%s calls a C function inside a uWSGI binary by its symbol name: there is none here (use exec-%s or hook-%s)", key,
				strings.TrimRight(strings.TrimPrefix(key, "call-"), "1234"), strings.TrimRight(strings.TrimPrefix(key, "call-"), "1234"))
		}
	}
	h.startHook, _ = o.Last("vassals-start-hook")
	h.stopHook, _ = o.Last("vassals-stop-hook")
	h.asVassal = phaseHooks{o.All("hook-as-vassal"), o.All("mount-as-vassal"), o.All("umount-as-vassal"), o.All("exec-as-vassal")}
	h.asEmperor = phaseHooks{o.All("hook-as-emperor"), o.All("mount-as-emperor"), o.All("umount-as-emperor"), o.All("exec-as-emperor")}
	h.emperorStart = o.All("hook-emperor-start")
	h.parentHooks = map[byte][]string{0: o.All("hook-emperor-stop"), 2: o.All("hook-emperor-stop"),
		1: o.All("hook-emperor-reload"), parentLost: o.All("hook-emperor-lost")}
	h.overrides = o.All("emperor-wrapper-override")
	h.fallbacks = o.All("emperor-wrapper-fallback")
	h.magicExec = o.Flag("emperor-magic-exec")
	h.broodlord = o.Int(0, "emperor-broodlord")
	// uWSGI dies at the first vassal start on a malformed hook; here the
	// emperor does not start, with the reason.
	for _, hk := range slices.Concat(h.asVassal.hooks, h.asEmperor.hooks, h.emperorStart, h.parentHooks[1], h.parentHooks[2], h.parentHooks[parentLost]) {
		action, _, ok := strings.Cut(strings.TrimPrefix(hk, "!"), ":")
		if !ok {
			return fmt.Errorf("hook %q: invalid hook syntax, must be hook:args", hk)
		}
		if !hookActions[action] {
			return fmt.Errorf("hook %q: hook action not found: %s", hk, action)
		}
	}
	for _, opt := range []struct {
		name string
		why  string
	}{
		{"early-emperor", "the emperor starts at once anyway; --uid and --gid apply after its sockets are bound"},
		{"emperor-proxy-socket", "it is an option of a uWSGI vassal, which binds the socket itself"},
		{"vassal-sos", "it is an option of a uWSGI vassal, which sends the SOS itself"},
		{"vassal-sos-backlog", "it is an option of a uWSGI vassal, which sends the SOS itself"},
	} {
		if o.Has(opt.name) {
			logRaw("[emperor] --%s: %s", opt.name, opt.why)
		}
	}
	return nil
}

// hookActions are the hook actions the runner and the emperor carry out.
var hookActions = map[string]bool{"exec": true, "safeexec": true, "print": true, "log": true, "chdir": true,
	"cd": true, "mkdir": true, "putenv": true, "unlink": true, "write": true, "append": true, "create": true,
	"creat": true, "chmod": true, "hostname": true, "mount": true, "umount": true, "exit": true, "writen": true,
	"appendn": true, "writefifo": true, "sticky": true, "chown": true, "chown2": true, "wait_for_fs": true,
	"wait_for_file": true, "wait_for_dir": true}

// preExec reports whether vassals need the pre-exec stage for hooks.
func (h *hookConfig) preExec() bool {
	return h.startHook != "" || h.asVassal.any() || len(h.overrides)+len(h.fallbacks) > 0
}

// preExecSpec adds the vassal-side hooks of v to the pre-exec stage.
func (e *emperor) preExecSpec(s *shimSpec, v *vassal) {
	h := &e.cfg.hooks
	s.Name, s.StartHook = v.name, h.startHook
	s.Dir = e.cfg.spawnDir(v)
	s.Hooks, s.Mounts, s.Umounts, s.Execs = h.asVassal.hooks, h.asVassal.mounts, h.asVassal.umounts, h.asVassal.execs
	s.Overrides, s.Fallbacks, s.Binsh = h.overrides, h.fallbacks, binsh
}

// startAsEmperor runs the emperor-side hooks of a vassal that just
// started, in a process of their own that the loop does not wait for.
func (e *emperor) startAsEmperor(v *vassal) {
	h := e.cfg.hooks.asEmperor
	if !h.any() {
		return
	}
	spec := asEmperorSpec{Name: v.name, PID: v.pid, UID: int(v.uid), GID: int(v.gid),
		Hooks: h.hooks, Mounts: h.mounts, Umounts: h.umounts, Execs: h.execs, Binsh: binsh}
	e.helper(e.cfg.self, []string{e.cfg.self}, append(e.spawns.baseEnv[:len(e.spawns.baseEnv):len(e.spawns.baseEnv)], asEmperorEnv+"="+spec.String()), e.cfg.spawnDir(v), "", false)
}

// runStopHook runs vassals-stop-hook for a vassal whose process is gone:
// [CMD, NAME], no shell, with UWSGI_VASSALS_DIR, as uWSGI runs it, but in
// a process the loop does not wait for.
func (e *emperor) runStopHook(v *vassal) {
	cmd := e.cfg.hooks.stopHook
	if cmd == "" || v.companion != nil {
		return
	}
	path, err := lookPath(cmd)
	if err != nil {
		logRaw("[emperor] running vassal stop-hook: %s %s", cmd, v.name)
		logRaw("[emperor] %s stop-hook returned 1", v.name)
		return
	}
	logRaw("[emperor] running vassal stop-hook: %s %s", cmd, v.name)
	env := append(e.spawns.baseEnv[:len(e.spawns.baseEnv):len(e.spawns.baseEnv)], "UWSGI_VASSALS_DIR="+e.cfg.spawnDir(v))
	e.helper(path, []string{cmd, v.name}, env, e.cfg.spawnDir(v), v.name+" stop-hook", false)
}

// forkOnLoop is the loop's fork of a process of its own (a hook, a helper;
// none with a parent-death signal): from one thread, whose signal mask it
// empties first, since the child starts with the forking thread's and the
// runtime's threads keep the mask the emperor was started with.
func forkOnLoop(path string, argv []string, attr *syscall.ProcAttr) (int, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	clearSpawnThreadSigmask()
	return syscall.ForkExec(path, argv, attr)
}

// helper starts one of the emperor's own processes: it gets stdio only
// (never a vassal's socket), its exit is collected by the reaper, and,
// with a note, logged as "[emperor] NOTE returned CODE". It is the pid, 0
// when it could not start. Each gets a process group of its own, except
// one the emperor waits for (foreground): that one stays in the emperor's,
// as uWSGI runs it. In a group of its own it would be stopped at its first
// use of the terminal, and a Ctrl-C would not reach it.
func (e *emperor) helper(path string, argv, env []string, dir, note string, foreground bool) int {
	pid, err := forkOnLoop(path, argv, &syscall.ProcAttr{
		Dir: dir, Env: env, Files: []uintptr{e.spawns.devnull.Fd(), 1, 2},
		Sys: &syscall.SysProcAttr{Setpgid: !foreground},
	})
	if err != nil {
		logRaw("[emperor] %s: %v", filepath.Base(path), err)
		return 0
	}
	e.strays.helpers[pid] = note
	return pid
}

// runEmperorStart runs hook-emperor-start once, before the first scan, in
// a process of its own in the first directory monitor's directory (uWSGI's
// emperor sits in its last one), and waits for it: a failure is fatal, as in
// uWSGI.
func (e *emperor) runEmperorStart() error {
	dir := e.watch.startCwd
	for _, m := range e.watch.monitors {
		if !m.glob && !m.missing {
			dir = m.dir
		}
	}
	return e.runHookHelper("hook-emperor-start", asEmperorSpec{Phase: "emperor-start", Hooks: e.cfg.hooks.emperorStart, Binsh: binsh}, dir)
}

// runHookHelper runs one fatal phase's hooks (spec) in a process of its
// own, in dir, and waits for it; what names the phase in the error.
func (e *emperor) runHookHelper(what string, s asEmperorSpec, dir string) error {
	if len(s.Hooks)+len(s.Mounts)+len(s.Umounts)+len(s.Execs) == 0 {
		return nil
	}
	spec := s.String()
	// The reaper owns waiting (a wait of our own would race its wait4(-1)
	// and lose the status): the hook's exit is read from it, and any other
	// child's (an orphan adopted meanwhile) is handled as the loop would.
	// SIGCHLD wakes a reaper that had no child to wait for.
	pid := e.helper(e.cfg.self, []string{e.cfg.self}, append(os.Environ(), asEmperorEnv+"="+spec), dir, "", true)
	rc := 1
	for pid > 0 {
		ex := <-e.in.exits
		e.onExit(ex)
		if ex.pid == pid {
			rc = exitCode(ex.status)
			break
		}
	}
	if rc != 0 {
		logVerbose("FATAL hook failed, destroying instance")
		return fmt.Errorf("%s failed", what)
	}
	return nil
}

// userHooks are the emperor config's hooks of a phase that comes once the
// reaper runs: as-user (after the privilege drop) or atexit. They run in a
// helper, whose exit the reaper reports.
func (e *emperor) userHooks(phase string) error {
	o := e.cfg.opts
	return e.runHookHelper(phase+" hooks", asEmperorSpec{Phase: phase, Hooks: o.All("hook-" + phase),
		Mounts: o.All("mount-" + phase), Umounts: o.All("umount-" + phase), Execs: o.All("exec-" + phase), Binsh: binsh}, e.cfg.startDir)
}

// magicConfig is emperor-magic-exec: an executable config is run, and its
// output is the config (exec://). uWSGI hands the name to /bin/sh -c,
// relative for a directory monitor (so it is looked for in PATH, and a
// name with shell syntax is a command): here the absolute path, quoted.
func (e *emperor) magicConfig(v *vassal) string {
	if !e.cfg.hooks.magicExec || v.companion != nil || v.zergOf != nil {
		return v.name
	}
	fi, err := os.Stat(v.path)
	if err != nil || !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
		return v.name
	}
	return "exec://" + shellQuote(v.path)
}

// shellQuote is s as one word for /bin/sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// onSOS is byte 30, a vassal asking for reinforcements: with
// emperor-broodlord N, a zerg is started from the [zerg] section of the
// vassal's config (NAME:zerg), at most N at once. Zergs go away when they
// send byte 22 (idle), when the config goes, or with the emperor.
func (e *emperor) onSOS(v *vassal) {
	b := e.cfg.hooks.broodlord
	if b <= 0 || v.zergOf != nil || v.companion != nil || v.instance != "" || e.shutdown.dying || e.vassals.zergs >= b {
		return
	}
	logVerbose("[emperor] going in broodlord mode: launching zergs for %s", v.name)
	e.vassals.zergs++
	e.vassals.zergStarts++
	z := &vassal{name: v.name + ":zerg#" + itoa(e.vassals.zergStarts), mon: v.mon, path: v.path, sock: -1, odFd: -1,
		zergOf: v, zergNum: e.vassals.zergStarts, born: time.Now().Unix(), uid: v.uid, gid: v.gid, file: v.file}
	z.lastMod = z.born
	e.vassals.byName[z.name] = z
	e.vassals.order = append(e.vassals.order, z)
	e.spawn(z)
}

// configName is the name of the vassal's config file (without an
// instance's section).
func (v *vassal) configName() string {
	if v.instance != "" {
		return strings.TrimSuffix(v.name, ":"+v.instance)
	}
	return v.name
}

// shownName is a vassal's name as uWSGI shows it: every zerg of a.ini is
// a.ini:zerg.
func (v *vassal) shownName() string {
	if v.zergOf != nil {
		return v.zergOf.name + ":zerg"
	}
	return v.name
}

// ==== The pre-exec stage ================================================
// What must happen in a vassal's process between the emperor's fork and the
// vassal's exec, where Go's fork cannot run code: the emperor execs itself
// with shimEnv set. The platform part (emperor_linux.go's runShim: private
// mounts, the capability bounding set, the tyrant's uid/gid) comes first;
// then, as the vassal's user, uWSGI's vassal-side options in uWSGI's order
// (core/emperor.c, uwsgi_emperor_spawn_vassal): vassals-start-hook,
// hook-as-vassal, mount-as-vassal, umount-as-vassal, exec-as-vassal, then
// the exec: each emperor-wrapper-override, the program, each
// emperor-wrapper-fallback, and exit 26 when none could be exec'd.

// shimEnv marks the emperor's own binary running as a vassal's pre-exec
// stage; it never reaches the vassal.
const shimEnv = "EMPEROR_PRE_EXEC"

// shimSpec is the pre-exec stage's instructions, a specRecord in shimEnv.
type shimSpec struct {
	Exec      string // the program
	Caps      uint64 // bounding set to keep
	UID, GID  int    // the tyrant's ids, -1: unchanged
	Private   bool   // make mounts private (a new mount namespace)
	Name      string // the vassal, as hooks are told
	Dir       string // UWSGI_VASSALS_DIR for the start hook
	StartHook string
	Hooks     []string // hook-as-vassal
	Mounts    []string
	Umounts   []string
	Execs     []string // exec-as-vassal
	Overrides []string
	Fallbacks []string
	Binsh     []string // the emperor's binsh, for exec-as-vassal
}

func (s shimSpec) String() string {
	var r specRecord
	r.add("Exec", s.Exec)
	r.add("Caps", strconv.FormatUint(s.Caps, 10))
	r.add("UID", strconv.Itoa(s.UID))
	r.add("GID", strconv.Itoa(s.GID))
	r.add("Private", strconv.FormatBool(s.Private))
	r.add("Name", s.Name)
	r.add("Dir", s.Dir)
	r.add("StartHook", s.StartHook)
	r.list("Hooks", s.Hooks)
	r.list("Mounts", s.Mounts)
	r.list("Umounts", s.Umounts)
	r.list("Execs", s.Execs)
	r.list("Overrides", s.Overrides)
	r.list("Fallbacks", s.Fallbacks)
	r.list("Binsh", s.Binsh)
	return string(r.b)
}

func parseShimSpec(spec string) shimSpec {
	s := shimSpec{UID: -1, GID: -1}
	err := parseSpecRecord(spec, func(name, v string) (err error) {
		switch name {
		case "Exec":
			s.Exec = v
		case "Caps":
			s.Caps, err = strconv.ParseUint(v, 10, 64)
		case "UID":
			s.UID, err = strconv.Atoi(v)
		case "GID":
			s.GID, err = strconv.Atoi(v)
		case "Private":
			s.Private, err = strconv.ParseBool(v)
		case "Name":
			s.Name = v
		case "Dir":
			s.Dir = v
		case "StartHook":
			s.StartHook = v
		case "Hooks":
			s.Hooks = append(s.Hooks, v)
		case "Mounts":
			s.Mounts = append(s.Mounts, v)
		case "Umounts":
			s.Umounts = append(s.Umounts, v)
		case "Execs":
			s.Execs = append(s.Execs, v)
		case "Overrides":
			s.Overrides = append(s.Overrides, v)
		case "Fallbacks":
			s.Fallbacks = append(s.Fallbacks, v)
		case "Binsh":
			s.Binsh = append(s.Binsh, v)
		default:
			err = errors.New("unknown field")
		}
		return err
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "[emperor] vassal pre-exec: bad instructions: %v\n", err)
		os.Exit(1)
	}
	return s
}

// specRecord is how the emperor hands instructions to processes of its own
// through the environment (shimEnv, asEmperorEnv): space-separated
// NAME=VALUE fields, each value Go-quoted (so any bytes survive), a list
// as its name repeated. encoding/json would double the binary's size for
// these two structs.
type specRecord struct{ b []byte }

func (r *specRecord) add(name, value string) {
	if len(r.b) > 0 {
		r.b = append(r.b, ' ')
	}
	r.b = append(r.b, name...)
	r.b = append(r.b, '=')
	r.b = strconv.AppendQuote(r.b, value)
}

func (r *specRecord) list(name string, values []string) {
	for _, v := range values {
		r.add(name, v)
	}
}

// parseSpecRecord hands each field of a record to field, in order.
func parseSpecRecord(s string, field func(name, value string) error) error {
	for s != "" {
		name, rest, ok := strings.Cut(s, "=")
		if !ok {
			return fmt.Errorf("%q: no value", name)
		}
		quoted, err := strconv.QuotedPrefix(rest)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		value, _ := strconv.Unquote(quoted)
		if err := field(name, value); err != nil {
			return fmt.Errorf("%s=%s: %w", name, quoted, err)
		}
		s = strings.TrimPrefix(rest[len(quoted):], " ")
	}
	return nil
}

// asVassal runs the vassal-side options and execs the program; it returns
// only the exit code of a vassal that could not be started.
func (s shimSpec) asVassal() int {
	if s.StartHook != "" {
		if s.Dir != "" {
			os.Setenv("UWSGI_VASSALS_DIR", s.Dir)
		}
		fmt.Fprintf(os.Stderr, "[emperor] running vassal start-hook: %s %s\n", s.StartHook, s.Name)
		rc := runWait(exec.Command(s.StartHook, s.Name))
		fmt.Fprintf(os.Stderr, "[emperor] %s start-hook returned %d\n", s.Name, rc)
	}
	if err := runHookPhase("as-vassal", s.Hooks, s.Mounts, s.Umounts, s.Execs, nil); err != nil {
		logVerbose("FATAL hook failed, destroying instance")
		return 1
	}
	os.Unsetenv("UWSGI_VASSALS_DIR")
	argv := os.Args
	for _, w := range s.Overrides {
		fmt.Fprintf(os.Stderr, "[emperor] trying to use %s as binary wrapper ...\n", w)
		execvp(w, argv)
	}
	if err := execvp(s.Exec, argv); err != nil {
		fmt.Fprintf(os.Stderr, "execvp(): %v\n[emperor] binary path: %s\n[emperor] is the uwsgi binary in your system PATH ?\n", err, argv[0])
	}
	for _, f := range s.Fallbacks {
		fmt.Fprintf(os.Stderr, "[emperor] trying to use %s as binary fallback ...\n", f)
		execvp(f, argv)
	}
	return 26 // uWSGI's "exile" code
}

// execvp execs prog (looked up in PATH) with argv[0] as prog; it returns
// only on failure.
func execvp(prog string, argv []string) error {
	path, err := lookPath(prog)
	if err != nil {
		return err
	}
	return syscall.Exec(path, append([]string{prog}, argv[1:]...), os.Environ())
}

// runWait runs a command to its end and is its exit code as uWSGI's
// uwsgi_run_command_and_wait reports it: the status, 1 when it cannot run,
// the shell's 128+N for a signal.
func runWait(cmd *exec.Cmd) int {
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	err := cmd.Run()
	if cmd.ProcessState == nil {
		fmt.Fprintf(os.Stderr, "execvp(): %v\n", err)
		return 1
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return cmd.ProcessState.ExitCode()
}

// asEmperorEnv marks the emperor's own binary running the emperor-side
// options for a vassal that just started, off the loop: hook-as-emperor,
// mount-as-emperor, umount-as-emperor, exec-as-emperor (uWSGI runs them in
// its only loop, which waits for each).
const asEmperorEnv = "EMPEROR_AS_EMPEROR"

// fatalPhases are the hook phases whose first failure ends the emperor.
var fatalPhases = map[string]struct{}{"emperor-start": {}, "as-user": {}, "as-user-atexit": {}}

type asEmperorSpec struct {
	Phase           string // hooks of another phase (emperor-start), fatal
	Name            string
	PID, UID, GID   int
	Hooks           []string
	Mounts, Umounts []string
	Execs           []string
	Binsh           []string // the emperor's
}

func (s asEmperorSpec) String() string {
	var r specRecord
	r.add("Phase", s.Phase)
	r.add("Name", s.Name)
	r.add("PID", strconv.Itoa(s.PID))
	r.add("UID", strconv.Itoa(s.UID))
	r.add("GID", strconv.Itoa(s.GID))
	r.list("Hooks", s.Hooks)
	r.list("Mounts", s.Mounts)
	r.list("Umounts", s.Umounts)
	r.list("Execs", s.Execs)
	r.list("Binsh", s.Binsh)
	return string(r.b)
}

func parseAsEmperorSpec(spec string) (s asEmperorSpec, err error) {
	err = parseSpecRecord(spec, func(name, v string) (err error) {
		switch name {
		case "Phase":
			s.Phase = v
		case "Name":
			s.Name = v
		case "PID":
			s.PID, err = strconv.Atoi(v)
		case "UID":
			s.UID, err = strconv.Atoi(v)
		case "GID":
			s.GID, err = strconv.Atoi(v)
		case "Hooks":
			s.Hooks = append(s.Hooks, v)
		case "Mounts":
			s.Mounts = append(s.Mounts, v)
		case "Umounts":
			s.Umounts = append(s.Umounts, v)
		case "Execs":
			s.Execs = append(s.Execs, v)
		case "Binsh":
			s.Binsh = append(s.Binsh, v)
		default:
			err = errors.New("unknown field")
		}
		return err
	})
	return s, err
}

func runAsEmperor(spec string) int {
	os.Unsetenv(asEmperorEnv)
	s, err := parseAsEmperorSpec(spec)
	if err != nil {
		fmt.Fprintf(os.Stderr, "[emperor] as-emperor: bad instructions: %v\n", err)
		return 1
	}
	binsh = s.Binsh
	if _, ok := fatalPhases[s.Phase]; ok {
		if runHookPhase(s.Phase, s.Hooks, s.Mounts, s.Umounts, s.Execs, nil) != nil {
			return 1
		}
		return 0
	}
	if s.Phase != "" {
		// Not fatal: every hook runs, whatever the ones before did.
		rc := 0
		for _, h := range s.Hooks {
			if err := runHookPhase(s.Phase, []string{h}, nil, nil, nil, nil); err != nil {
				fmt.Fprintf(os.Stderr, "[emperor] %v\n", err)
				rc = 1
			}
		}
		return rc
	}
	who := fmt.Sprintf("as-emperor for vassal \"%s\" pid: %d uid: %d gid: %d", s.Name, s.PID, s.UID, s.GID)
	_ = runHookPhase("as-emperor", s.Hooks, nil, nil, nil, nil)
	_ = runHookPhase(who, nil, s.Mounts, s.Umounts, nil, nil)
	for _, c := range s.Execs {
		fmt.Fprintf(os.Stderr, "running \"%s\" (%s)...\n", c, who)
		cmd := exec.Command(shellPath(), "-c", c)
		cmd.Env = append(os.Environ(), "UWSGI_VASSAL_CONFIG="+s.Name, "UWSGI_VASSAL_PID="+itoa(s.PID),
			"UWSGI_VASSAL_UID="+itoa(s.UID), "UWSGI_VASSAL_GID="+itoa(s.GID))
		fmt.Fprintf(os.Stderr, "command \"%s\" exited with code: %d\n", c, runWait(cmd))
	}
	return 0
}

// ==== Logging and small helpers =========================================

// escapeBytes replaces each byte of s found in from by the string at its
// index in to (a Replacer of single bytes, without its machinery).
func escapeBytes(s, from string, to ...string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if j := strings.IndexByte(from, s[i]); j >= 0 {
			b.WriteString(to[j])
		} else {
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// Logging follows uWSGI: "raw" lines as they are, "verbose" lines behind a
// ctime-style stamp. One write per line keeps lines whole when vassals share
// the same stderr.
func logRaw(format string, a ...any) { writeLog(logSettings.date, format, a...) }

// tracing: EMPEROR_TRACE=1 logs the CLOCK_MONOTONIC time of each step an
// event takes through the emperor (the latency benchmark's breakdown).
var tracing = os.Getenv("EMPEROR_TRACE") != ""

func trace(step, name string) {
	if tracing {
		_, _ = os.Stderr.WriteString("TRACE " + strconv.FormatInt(monotonicNowUsec()*1000, 10) + " " + step + " " + name + "\n")
	}
}

func logVerbose(format string, a ...any) { writeLog(true, format, a...) }

// logSettings shape the emperor's own lines (uWSGI's core/logging.c). They
// are set at start, before any other goroutine logs.
var logSettings struct {
	date     bool   // log-date: raw lines are stamped too
	strftime string // log-date=FORMAT: the stamp's format ("": ctime's)
	journal  bool   // stderr is systemd's journal, which stamps lines itself
}

func writeLog(stamped bool, format string, a ...any) {
	line := fmt.Sprintf(format, a...)
	if stamped && !logSettings.journal {
		t := time.Now()
		stamp := t.Format("Mon Jan _2 15:04:05 2006")
		if logSettings.strftime != "" {
			stamp = strftime(logSettings.strftime, t)
		}
		line = stamp + " - " + line
	}
	_, _ = os.Stderr.WriteString(line + "\n")
}

// stderrIsJournal reports whether stderr is the stream systemd named in
// JOURNAL_STREAM (device:inode), not just inherited by something below it.
func stderrIsJournal() bool {
	dev, ino, ok := strings.Cut(os.Getenv("JOURNAL_STREAM"), ":")
	if !ok {
		return false
	}
	fi, err := os.Stderr.Stat()
	if err != nil {
		return false
	}
	_, _, d, i := statOwner(fi)
	return strconv.FormatUint(d, 10) == dev && strconv.FormatUint(i, 10) == ino
}

func itoa(n int) string { return strconv.Itoa(n) }

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
