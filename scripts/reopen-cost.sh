#!/usr/bin/env bash
# The daemon's cost of one reopen against the size of the log: `since` at the log's end (what a
# rotation asked before issue 18) against `tail=1000` (the new reopen's floor).
#
#   scripts/reopen-cost.sh [SIZES...]      default: 100000 1000000 2000000 lines
#
# For each size it runs a container (label lc.bench) that writes that many lines with `seq`,
# waits until they are all in its log, then asks the daemon for its log REPEATS times (3) each
# way, without follow (the scan is the same; a follow would never end), and prints dockerd's
# CPU per request (utime + stime from /proc/<pid>/stat, the test bed's pid in
# /tmp/log-capturer-testbed/dockerd.pid), the wall times and the bytes sent. It removes only
# the containers it made. The daemon is shared: other engineers' load shows in the figures.
set -euo pipefail
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(100000 1000000 2000000)
repeats=${REPEATS:-3}
sock=${DOCKER_SOCK:-/var/run/docker.sock}
pid=$(cat /tmp/log-capturer-testbed/dockerd.pid)
tck=$(getconf CLK_TCK)
image=log-capturer-testbed/busybox:latest
made=()
cleanup() { [ ${#made[@]} -eq 0 ] || docker rm -f "${made[@]}" >/dev/null; }
trap cleanup EXIT

cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
logs() { curl -sf --unix-socket "$sock" "http://x/containers/$1/logs?stdout=1&stderr=1&timestamps=1&$2"; }

# One way of asking, REPEATS times: "<CPU ms per request> <wall s ...> <bytes>".
measure() {
    local id=$1 query=$2 ticks=0 walls="" a b s e
    for _ in $(seq "$repeats"); do
        a=$(cpu)
        s=$(date +%s.%N)
        logs "$id" "$query" >/tmp/reopen-cost.out
        e=$(date +%s.%N)
        b=$(cpu)
        ticks=$((ticks + b - a))
        walls="$walls $(echo "$e - $s" | bc)"
    done
    echo "$(echo "scale=1; $ticks * 1000 / $tck / $repeats" | bc) ms;$walls s; $(stat -c %s /tmp/reopen-cost.out) bytes"
}

echo "lines | since at the end: dockerd CPU per request; wall; bytes | tail=1000: the same"
for n in "${sizes[@]}"; do
    name="lc-reopen-cost-$n-$$"
    id=$(docker run -d --network none --label lc.bench --name "$name" "$image" \
        sh -c "seq 1 $n; sleep 100000")
    made+=("$id")
    # Written when the last entry is line n.
    until logs "$id" "tail=1" | tr -d '\000-\002' | grep -q " $n\$"; do sleep 1; done
    last=$(logs "$id" "tail=1" | tail -c +9 | cut -d' ' -f1)
    since="$(date -d "$last" +%s).$(echo "$last" | sed 's/.*\.\([0-9]*\)Z/\1/')"
    echo "$n | $(measure "$id" "since=$since") | $(measure "$id" "tail=1000")"
done
