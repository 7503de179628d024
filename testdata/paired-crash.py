#!/usr/bin/env python3
"""Crash -> respawn of two emperor builds, paired: one C probe vassal under
each, killed in turn N times (the order alternating), each kill timed to the
respawned probe's first instruction (CLOCK_MONOTONIC, stamped by the probe).
Pairing is what lets the figures tell 0.05 ms apart on a machine whose own
fork+exec drifts by more than that within minutes.

  cc -O2 -static -o /tmp/cprobe testdata/cprobe.c
  git stash; go build -o /tmp/emperor-a .; git stash pop; go build -o /tmp/emperor-b .
  python3 testdata/paired-crash.py /tmp/emperor-a /tmp/emperor-b /tmp/cprobe 500
"""
import os, shutil, signal, socket, statistics, subprocess, sys, tempfile, time

bins, probe, n = sys.argv[1:3], sys.argv[3], int(sys.argv[4])
root = tempfile.mkdtemp(prefix="paired-crash.")
ems, sinks, pids = [], [], []
try:
    for i, binary in enumerate(bins):
        d = os.path.join(root, str(i))
        os.makedirs(os.path.join(d, "vassals"))
        path = os.path.join(d, "sink.sock")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.bind(path)
        s.settimeout(10)
        with open(os.path.join(d, "vassals", "ck.ini"), "w") as f:
            f.write("[uwsgi]\nenv = PROBE_SOCK=%s\nenv = PROBE_NAME=ck\nunprivileged-binary-patch = %s\n" % (path, probe))
        ems.append(subprocess.Popen([binary, "--emperor", os.path.join(d, "vassals")], stderr=subprocess.DEVNULL))
        sinks.append(s)

    def started(i):
        while True:
            f = sinks[i].recv(300).split()
            if f[1] == b"start":
                return int(f[2]), int(f[3])

    pids = [started(i)[0] for i in range(2)]
    took = [[], []]
    for k in range(n):
        for i in ((0, 1) if k % 2 == 0 else (1, 0)):
            time.sleep(0.01)  # the probe's loyalty byte lands: no throttle
            t0 = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
            os.kill(pids[i], signal.SIGKILL)
            pids[i], t1 = started(i)
            took[i].append((t1 - t0) / 1e6)
    for binary, t in zip(bins, took):
        t.sort()
        print("%s: crash -> respawn median %.3f ms (p25 %.3f, p75 %.3f, %d crashes)" %
              (binary, statistics.median(t), t[len(t) // 4], t[3 * len(t) // 4], len(t)))
finally:
    for e in ems:
        e.terminate()
    for e in ems:
        e.wait()
    shutil.rmtree(root, ignore_errors=True)
