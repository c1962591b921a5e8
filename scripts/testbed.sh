#!/usr/bin/env bash
# Makes a real Docker daemon and the local test image available, idempotently.
#
# 1. If the daemon at DOCKER_HOST (or /var/run/docker.sock) answers, it is used as is.
# 2. Otherwise, as root on Debian: install docker.io and busybox-static with apt (only if
#    missing), start `dockerd --bridge=none --iptables=false --ip6tables=false` in the
#    background with its log in $TESTBED_DIR/dockerd.log, and wait (bounded) until
#    `docker version` answers.
# 3. Build the image log-capturer-testbed/busybox:latest with `docker import` of a tar holding
#    the static busybox and its applet symlinks, unless it already exists. Nothing is pulled:
#    no registry is reachable here.
# 4. Install nats-server with apt (only if missing), for the tests of `--sink nats`: each test
#    runs servers of its own on loopback ports, so only the binary is needed (Debian puts it in
#    /usr/sbin; its systemd unit does not run here).
#
# Prints one line per decision, so a test log shows whether it started a daemon or reused one.
set -euo pipefail

TESTBED_DIR=${TESTBED_DIR:-/tmp/log-capturer-testbed}
IMAGE=${TESTBED_IMAGE:-log-capturer-testbed/busybox:latest}
WAIT_SECS=${TESTBED_WAIT_SECS:-60}
APPLETS="sh ash echo printf seq sleep cat head tail tr yes true false dd wc env date kill \
trap test [ sed awk tee ls mkdir rm cp mv touch stty"

say() { printf 'testbed: %s\n' "$*"; }
die() { printf 'testbed: error: %s\n' "$*" >&2; exit 1; }

mkdir -p "$TESTBED_DIR"

daemon_answers() { timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

# apt-get install the Debian packages named, as root.
apt_install() {
    [ "$(id -u)" -eq 0 ] || die "need root to install $* (or install it yourself)"
    command -v apt-get >/dev/null 2>&1 || die "no apt-get: install $* by hand"
    say "installing $* with apt"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >>"$TESTBED_DIR/apt.log" 2>&1 || die "apt-get update failed, see $TESTBED_DIR/apt.log"
    apt-get install -y -qq "$@" >>"$TESTBED_DIR/apt.log" 2>&1 \
        || die "apt-get install failed, see $TESTBED_DIR/apt.log"
}

install_packages() {
    local missing=()
    command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
    [ -x /bin/busybox ] || [ -x /usr/bin/busybox ] || missing+=(busybox-static)
    # Debian's docker.io brings its own client; a newer client already on PATH is fine.
    command -v docker >/dev/null 2>&1 || missing+=(docker.io)
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || die "need root to install ${missing[*]} (or start a Docker daemon yourself)"
    apt_install "${missing[@]}"
}

# The nats-server on PATH or in /usr/sbin (not on every user's PATH), or nothing.
nats_server() { command -v nats-server 2>/dev/null || { [ -x /usr/sbin/nats-server ] && echo /usr/sbin/nats-server; }; }

install_nats_server() {
    if [ -z "$(nats_server)" ]; then
        apt_install nats-server
        [ -n "$(nats_server)" ] || die "apt installed nats-server, but it is not on PATH nor in /usr/sbin"
    fi
    say "$("$(nats_server)" --version) at $(nats_server)"
}

start_daemon() {
    [ "$(id -u)" -eq 0 ] || die "no Docker daemon answers and only root can start one"
    if [ -n "${DOCKER_HOST:-}" ] && [ "${DOCKER_HOST}" != "unix:///var/run/docker.sock" ]; then
        die "DOCKER_HOST=$DOCKER_HOST does not answer; unset it to let the test bed start a local daemon"
    fi
    say "no daemon answers: starting dockerd (log: $TESTBED_DIR/dockerd.log)"
    # setsid: the daemon outlives this script and the terminal that ran it.
    setsid dockerd --bridge=none --iptables=false --ip6tables=false \
        >"$TESTBED_DIR/dockerd.log" 2>&1 < /dev/null &
    echo $! >"$TESTBED_DIR/dockerd.pid"
    local waited=0
    until daemon_answers; do
        if ! kill -0 "$(cat "$TESTBED_DIR/dockerd.pid")" 2>/dev/null; then
            tail -n 20 "$TESTBED_DIR/dockerd.log" >&2 || true
            die "dockerd exited during start-up, see $TESTBED_DIR/dockerd.log"
        fi
        if [ "$waited" -ge "$WAIT_SECS" ]; then
            tail -n 20 "$TESTBED_DIR/dockerd.log" >&2 || true
            die "dockerd did not answer within ${WAIT_SECS}s, see $TESTBED_DIR/dockerd.log"
        fi
        sleep 1
        waited=$((waited + 1))
    done
    say "started dockerd pid $(cat "$TESTBED_DIR/dockerd.pid") in ${waited}s"
}

build_image() {
    if docker image inspect "$IMAGE" >/dev/null 2>&1; then
        say "reusing image $IMAGE"
        return 0
    fi
    local busybox
    busybox=$(command -v busybox || true)
    [ -n "$busybox" ] || die "busybox not found"
    command -v file >/dev/null && file -L "$busybox" 2>/dev/null | grep -q "dynamically linked" \
        && die "$busybox is dynamically linked; install busybox-static"
    local root
    root=$(mktemp -d "$TESTBED_DIR/rootfs.XXXXXX")
    mkdir -p "$root/bin" "$root/tmp" "$root/proc" "$root/sys" "$root/dev" "$root/etc"
    cp "$busybox" "$root/bin/busybox"
    for a in $APPLETS; do ln -sf busybox "$root/bin/$a"; done
    tar -C "$root" -cf "$TESTBED_DIR/rootfs.tar" .
    docker import --change 'ENV PATH=/bin' --change 'CMD ["/bin/sh"]' \
        "$TESTBED_DIR/rootfs.tar" "$IMAGE" >/dev/null
    rm -rf "$root" "$TESTBED_DIR/rootfs.tar"
    say "built image $IMAGE from $busybox"
}

if daemon_answers; then
    say "reusing the running daemon ($(docker version --format 'server {{.Server.Version}}, API {{.Server.APIVersion}}'))"
else
    install_packages
    daemon_answers || start_daemon
    say "daemon: $(docker version --format 'server {{.Server.Version}}, API {{.Server.APIVersion}}')"
fi
build_image
install_nats_server
