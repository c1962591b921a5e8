#!/usr/bin/env python3
"""Measures the Docker daemon behaviours the capturer's exactly-once rests on (docs/daemon.md).

    scripts/daemon-facts.py [scan|die|follow|resend|resend-long|skip|tty|local|restart|all] [--runs N]

Needs the test bed's daemon and image (scripts/testbed.sh); talks to /var/run/docker.sock
directly (no client library), runs containers with --network none and removes them.

- scan:   how long a reopen with `since` at the end of the log takes to send its first frame,
          by log size (the daemon decodes the file from its start to find `since`).
- die:    whether the log is complete when the `die` event is published (bytes readable then,
          against the final size).
- follow: whether a follow stream opened on a running container ends only after the whole
          log (bytes it sent, against the final size), with a container writing fast and exiting.
- resend: frames a follow stream sends twice with json-file max-size (the daemon rotating its
          own file under the reader).
- resend-long: the same with lines of 100,000 bytes (7 parts each), for json-file with max-size
          and for the local driver with a small max-size: whether a re-send can begin inside a
          long line, where only its parts, all stamped alike, come again.
- skip:   lines a follow stream never sends although they stay in the log, when the daemon
          rotates its files fast (1 MB files, about ten a second; nothing deleted), for
          json-file and for `local` with and without compression.
- tty:    how a TTY container's log is sent: messages (a 40,000-byte line, a short one, a last
          line without newline) back to back, each with its timestamp prefix.
- local:  how the `local` driver sends a line over 16 KiB (its last part's newline).
- restart: what inspect and the events say of a container waiting for its restart policy, and
          when it is stopped then.
"""
import calendar
import http.client
import re
import socket
import struct
import subprocess
import sys
import threading
import time

IMAGE = "log-capturer-testbed/busybox:latest"
SOCK = "/var/run/docker.sock"


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self):
        super().__init__("docker", timeout=300)

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(SOCK)


def get(path):
    c = UnixHTTP()
    c.request("GET", "/v1.41" + path)
    return c.getresponse()


def docker(*args):
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True).stdout.strip()


def run(script, *opts):
    return docker("run", "-d", "--network", "none", "--label", "lc.test=facts", *opts, IMAGE, "sh", "-c", script)


def frames(body):
    """(stream, payload) of a multiplexed body."""
    out, i = [], 0
    while i + 8 <= len(body):
        n = struct.unpack(">I", body[i + 4 : i + 8])[0]
        out.append((body[i], body[i + 8 : i + 8 + n]))
        i += 8 + n
    return out


def logs(cid, query=""):
    return get(f"/containers/{cid}/logs?stdout=1&stderr=1&timestamps=1{query}").read()


def writer(n):
    return f'i=0; while [ $i -lt {n} ]; do echo "o $i"; echo "e $i" >&2; i=$((i+1)); done'


def scan():
    print("scan: time to the first frame of a reopen with since = the last line's timestamp")
    for lines in (20_000, 100_000, 400_000):
        cid = run(f"seq 1 {lines}")
        docker("wait", cid)
        last = frames(logs(cid, "&tail=1"))[-1][1]
        ts = last.split(b" ", 1)[0].decode()
        secs = calendar.timegm(time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S"))
        since = f"{secs}.{ts[20:29]}"
        t0 = time.monotonic()
        r = get(f"/containers/{cid}/logs?stdout=1&timestamps=1&since={since}")
        head = time.monotonic() - t0
        r.read(9)
        first = time.monotonic() - t0
        r.read()
        tail_t0 = time.monotonic()
        logs(cid, "&tail=1")
        tail = time.monotonic() - tail_t0
        print(f"  {lines:>7} lines: response head {head*1000:6.1f} ms, first frame {first*1000:7.1f} ms; tail=1 {tail*1000:5.1f} ms")
        docker("rm", cid)


def die(runs):
    print(f"die: bytes readable when `die` is published, against the final log ({runs} runs)")
    short = 0
    for k in range(runs):
        cid = docker("create", "--network", "none", "--label", "lc.test=facts", IMAGE, "sh", "-c", writer(15_000))
        ev = subprocess.Popen(
            ["docker", "events", "--filter", f"container={cid}", "--filter", "event=die", "--format", "{{.TimeNano}}"],
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(0.3)
        docker("start", cid)
        ev.stdout.readline()
        at_die = len(logs(cid))
        ev.kill()
        ev.wait()
        time.sleep(2)
        final = len(logs(cid))
        short += at_die < final
        print(f"  run {k + 1}: at die {at_die} bytes, final {final}")
        docker("rm", cid)
    print(f"  short at die: {short} of {runs}")


def follow(runs):
    print(f"follow: bytes a follow stream sent before it ended, against the final log ({runs} runs)")
    short = 0
    for k in range(runs):
        cid = docker("create", "--network", "none", "--label", "lc.test=facts", IMAGE, "sh", "-c", writer(15_000))
        got = {}

        def read():
            got["n"] = len(get(f"/containers/{cid}/logs?follow=1&stdout=1&stderr=1&timestamps=1").read())

        t = threading.Thread(target=read)
        docker("start", cid)
        t.start()
        t.join()
        time.sleep(1)
        final = len(logs(cid))
        short += got["n"] < final
        print(f"  run {k + 1}: follow sent {got['n']} bytes, final {final}")
        docker("rm", cid)
    print(f"  ended early: {short} of {runs}")


def resend():
    print("resend: one follow stream of a json-file log with max-size=50k, max-file=3")
    script = 'i=0; while [ $i -lt 20000 ]; do echo "line $i"; i=$((i+1)); [ $((i % 20)) -eq 0 ] && usleep 10000; done'
    cid = run(script, "--log-opt", "max-size=50k", "--log-opt", "max-file=3")
    body = get(f"/containers/{cid}/logs?follow=1&stdout=1&stderr=1&timestamps=1").read()
    docker("rm", "-f", cid)
    msgs = [p for _, p in frames(body)]
    nums = [int(m.split()[2]) for m in msgs]
    backs = [(nums[i - 1], nums[i]) for i in range(1, len(nums)) if nums[i] <= nums[i - 1]]
    alone = sum(1 for a, b in backs if a == b)
    print(f"  frames {len(msgs)}, distinct {len(set(msgs))}, re-sent {len(msgs) - len(set(msgs))}, lines missing {20000 - len(set(nums))}")
    print(f"  {len(backs)} jumps back; {alone} re-sent the last line alone; e.g. {backs[:5]}")


def resend_long():
    print("resend-long: 300 lines of 100,000 bytes each; parts per line as one follow stream sent them")
    script = 'X=x; while [ ${#X} -lt 100000 ]; do X=$X$X; done; X=${X:0:99991}; i=0; while [ $i -lt 300 ]; do printf "%08d %s\\n" $i "$X"; i=$((i+1)); usleep 20000; done'
    for driver, opts in (("json-file", ["--log-opt", "max-size=1m", "--log-opt", "max-file=3"]),
                         ("local", ["--log-driver", "local", "--log-opt", "max-size=1m", "--log-opt", "max-file=3"])):
        cid = run(script, *opts)
        body = get(f"/containers/{cid}/logs?follow=1&stdout=1&stderr=1&timestamps=1").read()
        docker("rm", "-f", cid)
        sizes = {}
        for _, p in frames(body):
            ts, payload = p.split(b" ", 1)
            sizes.setdefault(ts, []).append(len(payload))
        # A line of 100,000 bytes is 100,000 payload bytes (json-file: and its newline).
        want = 100_001 if driver == "json-file" else 100_000
        over = [v for v in sizes.values() if sum(v) > want]
        # What came twice: the last part (its size), a full 16 KiB part, or more.
        last = sum(1 for v in over if sum(v) - want == v[-1])
        full = sum(1 for v in over if sum(v) - want == 16384 and v[-1] != 16384)
        print(f"  {driver}: {len(sizes)} lines, {sum(len(v) for v in sizes.values())} frames; "
              f"{len(over)} lines sent with more bytes than they hold: the last part twice "
              f"{last}, a full part twice {full}, more {len(over) - last - full}")


def skip(runs):
    print(f"skip: 60,000 numbered lines into 1 MB files (max-file=1000), one follow stream each ({runs} runs)")
    script = ("X=$(head -c 90 /dev/zero | tr '\\0' x); i=0; "
              "while [ $i -lt 60000 ]; do printf '%08d %s\\n' $i \"$X\"; i=$((i+1)); done")
    for driver, opts in (("json-file", []),
                         ("local", ["--log-driver", "local"]),
                         ("local compress=false", ["--log-driver", "local", "--log-opt", "compress=false"])):
        short = 0
        for _ in range(runs):
            cid = run(script, *opts, "--log-opt", "max-size=1m", "--log-opt", "max-file=1000")
            sent = {int(p.split(b" ", 2)[1]) for _, p in frames(get(
                f"/containers/{cid}/logs?follow=1&stdout=1&stderr=1&timestamps=1").read())
                if p.split(b" ", 2)[1].isdigit()}
            kept = {int(p.split(b" ", 2)[1]) for _, p in frames(logs(cid)) if p.split(b" ", 2)[1].isdigit()}
            docker("rm", "-f", cid)
            missing = len(kept - sent)
            short += missing > 0
            print(f"  {driver}: the log holds {len(kept)} lines, the follow stream sent {len(sent)}; {missing} never sent")
        print(f"  {driver}: {short} of {runs} follow streams skipped lines the log holds")


def tty():
    print("tty: the raw log of a TTY container (no frame headers), cut at each timestamp prefix")
    script = 'head -c 40000 /dev/zero | tr "\\0" x; echo; echo short; head -c 20000 /dev/zero | tr "\\0" y'
    cid = run(script, "-t")
    docker("wait", cid)
    body = logs(cid)
    docker("rm", cid)
    starts = [m.start() for m in re.finditer(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z ", body)]
    for a, b in zip(starts, starts[1:] + [len(body)]):
        msg = body[a:b]
        ts, payload = msg.split(b" ", 1)
        print(f"  {ts.decode()} payload {len(payload):>5} bytes, ends {payload[-3:]!r}")


def local():
    print("local: a 16,390-byte line and a short one, local driver, without and with a TTY")
    script = 'head -c 16390 /dev/zero | tr "\\0" x; echo; echo after'
    for tty in (False, True):
        cid = run(script, "--log-driver", "local", *(["-t"] if tty else []))
        docker("wait", cid)
        body = logs(cid)
        docker("rm", cid)
        if tty:
            starts = [m.start() for m in re.finditer(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z ", body)]
            msgs = [body[a:b] for a, b in zip(starts, starts[1:] + [len(body)])]
        else:
            msgs = [p for _, p in frames(body)]
        for m in msgs:
            ts, payload = m.split(b" ", 1)
            print(f"  tty={tty}: {ts.decode()} payload {len(payload):>5} bytes, ends {payload[-3:]!r}")


def restart():
    print("restart: a container with --restart always that exits at once, then docker stop")
    cid = run("echo hi; exit 0", "--restart", "always")
    ev = subprocess.Popen(
        ["docker", "events", "--filter", f"container={cid}", "--format", "{{.Action}}"],
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(6)
    fmt = "{{.State.Status}} Running={{.State.Running}} Restarting={{.State.Restarting}}"
    print(f"  waiting for a restart: {docker('inspect', '-f', fmt, cid)}")
    docker("stop", cid)
    print(f"  after docker stop:     {docker('inspect', '-f', fmt, cid)}")
    time.sleep(1)
    ev.kill()
    actions = ev.communicate()[0].split()
    docker("rm", "-f", cid)
    print(f"  events: {' '.join(actions)}")


def main():
    what = sys.argv[1] if len(sys.argv) > 1 else "all"
    runs = int(sys.argv[sys.argv.index("--runs") + 1]) if "--runs" in sys.argv else 10
    if what in ("scan", "all"):
        scan()
    if what in ("die", "all"):
        die(runs)
    if what in ("follow", "all"):
        follow(runs)
    if what in ("resend", "all"):
        resend()
    if what in ("resend-long", "all"):
        resend_long()
    if what in ("skip", "all"):
        skip(runs)
    if what in ("tty", "all"):
        tty()
    if what in ("local", "all"):
        local()
    if what in ("restart", "all"):
        restart()


if __name__ == "__main__":
    main()
