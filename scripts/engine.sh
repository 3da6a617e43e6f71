# shellcheck shell=bash
# Makes sure a Docker Engine is reachable for the tests. Sourced by scripts/test.sh, not run on its own:
#
#   source scripts/engine.sh
#   persist_engine_ensure          # returns non-zero, after an `error:` line, when no engine can be had
#
# 1. If `docker info` answers (honouring DOCKER_HOST / the current context), that engine is used.
# 2. Otherwise, when running as root and `dockerd` is installed, a private dockerd is started with its own data
#    root, exec root and socket under a temp dir, in a network namespace of its own (`unshare --net`), so
#    that its docker0 bridge, networks and addresses never meet the host's or another engine's (a second
#    dockerd in the host's namespace either fights over docker0 or, with `--bridge none`, deletes it).
#    /etc/docker/daemon.json is not read. DOCKER_HOST is exported to point at it, and an EXIT trap stops it
#    and removes the dir (callers that need their own EXIT trap call `persist_engine_stop` from it).
#    Containers of the private engine reach each other but not the outside world, which tests never need.
# 3. Otherwise it says why no engine can be had.
#
# Knobs: PERSIST_ENGINE_WAIT (seconds to wait for the private dockerd, default 60),
#        PERSIST_ENGINE_STORAGE_DRIVER (default: dockerd's own choice),
#        PERSIST_ENGINE_FORCE_PRIVATE=1 (start a private dockerd even when an engine answers).

PERSIST_ENGINE_DIR=""
PERSIST_ENGINE_PID=""

_persist_engine_log() { printf 'engine: %s\n' "$*" >&2; }
_persist_engine_err() { printf 'error: %s\n' "$*" >&2; }

persist_engine_ensure() {
    local probe
    if [[ "${PERSIST_ENGINE_FORCE_PRIVATE:-0}" != 1 ]]; then
        if probe=$(docker info --format '{{.ServerVersion}}' 2>&1); then
            _persist_engine_log "using Docker Engine ${probe} at ${DOCKER_HOST:-the current docker context}"
            return 0
        fi
        _persist_engine_log "no engine answers at ${DOCKER_HOST:-the current docker context}: $(printf '%s' "$probe" | tail -n 1)"
    fi

    if [[ "$(id -u)" != 0 ]]; then
        _persist_engine_err "no Docker Engine is reachable, and a private dockerd can only be started as root (running as uid $(id -u)); start Docker or set DOCKER_HOST"
        return 1
    fi
    if ! command -v dockerd >/dev/null 2>&1; then
        _persist_engine_err "no Docker Engine is reachable, and \`dockerd\` is not installed to start a private one (Debian: apt-get install docker.io)"
        return 1
    fi
    if ! command -v unshare >/dev/null 2>&1; then
        _persist_engine_err "no Docker Engine is reachable, and \`unshare\` (util-linux) is missing to start a private one in its own network namespace"
        return 1
    fi
    _persist_engine_start
}

# The errors of a dockerd log and its last lines; its info lines are mostly gRPC chatter.
_persist_engine_show_log() {
    {
        grep -E 'level=(error|fatal)' "$1" | tail -n 10
        tail -n 3 "$1"
    } | awk '!seen[$0]++' | sed 's/^/    /' >&2
    if cp "$1" /tmp/docker-persist-dockerd.log 2>/dev/null; then
        printf '    (whole log kept as /tmp/docker-persist-dockerd.log)\n' >&2
    fi
}

_persist_engine_start() {
    local dir wait="${PERSIST_ENGINE_WAIT:-60}" i
    # Short parent: containerd's sockets live under the exec root and unix socket paths are limited to 108 bytes.
    dir=$(mktemp -d /tmp/dp-dockerd.XXXXXX) || { _persist_engine_err "cannot create a temp dir for a private dockerd"; return 1; }
    PERSIST_ENGINE_DIR="$dir"
    trap persist_engine_stop EXIT
    # Make a signal end the shell through `exit`, so that the EXIT trap runs.
    trap 'exit 130' INT
    trap 'exit 143' TERM

    # An explicit, empty config file: the host's /etc/docker/daemon.json names its own data-root, which
    # dockerd refuses to combine with --data-root.
    printf '{}\n' >"$dir/daemon.json"
    local args=(
        --config-file "$dir/daemon.json"
        --data-root "$dir/data"
        --exec-root "$dir/exec"
        --pidfile "$dir/pid"
        -H "unix://$dir/docker.sock"
        # Nothing to forward or masquerade to: the namespace has no way out.
        --iptables=false
        --ip6tables=false
        --ip-forward=false
        --ip-masq=false
        --cgroup-parent /docker-persist-test
        --shutdown-timeout 5
    )
    if [[ -n "${PERSIST_ENGINE_STORAGE_DRIVER:-}" ]]; then
        args+=(--storage-driver "$PERSIST_ENGINE_STORAGE_DRIVER")
    fi
    _persist_engine_log "starting a private dockerd in $dir (log: $dir/dockerd.log)"
    # unshare execs dockerd in place, so $! is dockerd's pid.
    unshare --net -- dockerd "${args[@]}" >"$dir/dockerd.log" 2>&1 </dev/null &
    PERSIST_ENGINE_PID=$!
    export DOCKER_HOST="unix://$dir/docker.sock"
    unset DOCKER_CONTEXT

    for ((i = 0; i < wait * 4; i++)); do
        if ! kill -0 "$PERSIST_ENGINE_PID" 2>/dev/null; then
            _persist_engine_err "the private dockerd exited during start-up; from its log ($dir/dockerd.log):"
            _persist_engine_show_log "$dir/dockerd.log"
            PERSIST_ENGINE_PID=""
            return 1
        fi
        if docker info >/dev/null 2>&1; then
            _persist_engine_log "private dockerd $(docker info --format '{{.ServerVersion}}' 2>/dev/null) (pid $PERSIST_ENGINE_PID) answers at $DOCKER_HOST"
            return 0
        fi
        sleep 0.25
    done
    _persist_engine_err "the private dockerd did not answer within ${wait}s; from its log ($dir/dockerd.log):"
    _persist_engine_show_log "$dir/dockerd.log"
    return 1
}

# Stops the private dockerd (if this shell started one) and removes its dir. Safe to call more than once.
persist_engine_stop() {
    local dir="$PERSIST_ENGINE_DIR" pid="$PERSIST_ENGINE_PID" i mnt
    [[ -n "$dir" ]] || return 0
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
        _persist_engine_log "stopping the private dockerd (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        # dockerd gives containers --shutdown-timeout seconds, then stops its own containerd.
        for ((i = 0; i < 120; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.25
        done
        if kill -0 "$pid" 2>/dev/null; then
            _persist_engine_log "dockerd did not stop in 30s; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    fi
    # Whatever dockerd left mounted under its dir (it normally unmounts everything), deepest first.
    while read -r mnt; do
        umount -l "$mnt" 2>/dev/null || true
    done < <(awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r)
    rm -rf --one-file-system "$dir" 2>/dev/null || _persist_engine_log "could not remove all of $dir"
    PERSIST_ENGINE_DIR=""
    PERSIST_ENGINE_PID=""
}
