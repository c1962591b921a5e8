#!/bin/sh
# Profiles the capturer during one round of the drain benchmark (1,000,000 lines).
#
#   scripts/profile-drain.sh perf     # perf record -g of the capturer; top symbols printed
#   scripts/profile-drain.sh strace   # syscall counts of the capturer's whole run (strace -c)
#
# LOG_CAPTURER_READ_PAUSE (e.g. 0) is passed on to the capturer, to compare settings.
# Output goes to target/profile/. Needs perf or strace (apt-get install linux-perf strace).
set -eu
tool=${1:?usage: profile-drain.sh perf|strace}
cd "$(dirname "$0")/.."
out=target/profile
mkdir -p "$out"
cargo build --release -q -p capturer-runtime -p capturer-tests --bin bench --bin log-capturer

target/release/bench drain --rounds 1 >"$out/drain.log" 2>&1 &
bench=$!
# The capturer starts after the writer's lines are in the daemon's log and curl read them once.
pid=""
for _ in $(seq 600); do
    for p in $(pgrep -P "$bench" 2>/dev/null); do
        case "$(cat "/proc/$p/comm" 2>/dev/null)" in log-capturer) pid=$p ;; esac
    done
    [ -n "$pid" ] && break
    sleep 0.1
done
[ -n "$pid" ] || { echo "profile: no capturer appeared; see $out/drain.log" >&2; kill "$bench"; exit 1; }
echo "profile: attaching $tool to log-capturer pid $pid"
case "$tool" in
perf)
    perf record -q -F 997 -g -p "$pid" -o "$out/perf.data" -- sleep 8 2>/dev/null || true
    wait "$bench" || true
    perf report -i "$out/perf.data" --no-children --percent-limit 1.5 --stdio \
        --sort symbol -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -40
    ;;
strace)
    # Until the capturer exits, so the counts cover all 1,000,000 lines (strace slows it).
    strace -c -f -p "$pid" -o "$out/strace.txt" 2>/dev/null || true
    wait "$bench" || true
    head -20 "$out/strace.txt"
    ;;
*)
    echo "profile: unknown tool $tool" >&2
    kill "$bench"
    exit 2
    ;;
esac
grep -E '^round|VERDICT' "$out/drain.log" || true
