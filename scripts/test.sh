#!/usr/bin/env bash
# The test command: `scripts/test.sh [CARGO TEST ARGS…]`.
#
# 1. makes sure a Docker Engine answers (scripts/engine.sh: the one at DOCKER_HOST / the current context, or a
#    private dockerd when running as root);
# 2. creates the local test images (scripts/test-images.sh: busybox tagged postgres:16, redis:7, …) and the
#    real PostgreSQL image (scripts/postgres-image.sh: Debian's postgresql-15, built once, then cached);
# 3. checks Compose v1 (`docker-compose`) and installs Compose v2 (scripts/compose-v2.sh);
# 4. builds the plugin and runs `cargo test --all-targets`: unit tests, insta snapshot tests (checked, never
#    written: INSTA_UPDATE=no) and the end-to-end binary tests/e2e;
# 5. checks that the tests left no container, volume or network behind.
#
# Extra arguments go to `cargo test`; when they pick targets (`--test e2e`, `--lib`, …) they replace
# `--all-targets`. Examples:
#   scripts/test.sh                                 everything
#   scripts/test.sh --test e2e guard                e2e tests whose name contains `guard`
#   scripts/test.sh --test e2e -- --exact harness::compose_v2_labels_a_named_volume_with_its_key
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

started=$SECONDS
step() { printf '\n==> %s\n' "$*" >&2; }
die() {
    printf '\nerror: %s\n' "$*" >&2
    exit 1
}
is_ci() { [[ -n "${CI:-}" && "${CI}" != false && "${CI}" != 0 ]]; }

step "Docker Engine"
command -v docker >/dev/null 2>&1 || die "the \`docker\` CLI is not on PATH"
# shellcheck source=scripts/engine.sh
source scripts/engine.sh
persist_engine_ensure || die "no Docker Engine to test against (see above)"

step "Test images"
bash scripts/test-images.sh || die "could not create the local test images (see above)"

step "PostgreSQL image"
# The real server the PostgreSQL tests run (tests/e2e/postgres.rs), built from Debian packages when missing
# (1–2 min with the packages cached, about 3 without; root only). Without it those tests fail, and so does
# this run; the other tests still run, so that one run reports everything.
postgres_image_status=0
bash scripts/postgres-image.sh >/dev/null || {
    postgres_image_status=$?
    printf 'error: could not make the PostgreSQL test image (see above); the PostgreSQL tests will fail\n' >&2
}
# A second major version (Debian trixie's postgresql-17), for the major upgrade tests (tests/e2e/upgrade_pg.rs).
bash scripts/postgres-image.sh 17 >/dev/null || {
    postgres_image_status=$?
    printf 'error: could not make the PostgreSQL 17 test image (see above); the major upgrade tests will fail\n' >&2
}

step "Compose v1 and v2"
command -v docker-compose >/dev/null 2>&1 ||
    die "Compose v1 (\`docker-compose\`) is not on PATH; the e2e tests drive it (Debian: apt-get install docker-compose)"
printf 'compose-v1: %s\n' "$(docker-compose version --short 2>/dev/null || echo '?')" >&2
# shellcheck source=scripts/compose-v2.sh
source scripts/compose-v2.sh || die "could not install Compose v2 (see above)"

cargo_flags=()
# CI builds exactly what Cargo.lock says; locally cargo may update it as usual.
is_ci && cargo_flags+=(--locked)

step "Build"
cargo build "${cargo_flags[@]}" --bin docker-persist || die "cargo build failed"
# The fast-path tests need a statically linked build (the helper image holds only the executable). The
# explicit --target keeps build scripts and proc-macros dynamic; without debug info the executable the
# tests import as a helper image stays small.
triple=$(rustc -vV | sed -n 's/^host: //p')
RUSTFLAGS='-C target-feature=+crt-static' CARGO_PROFILE_DEV_DEBUG=0 \
    cargo build "${cargo_flags[@]}" --bin docker-persist --target "$triple" ||
    die "the static build (RUSTFLAGS='-C target-feature=+crt-static' cargo build --target $triple) failed"
DOCKER_PERSIST_STATIC_BIN="$PWD/target/$triple/debug/docker-persist"
export DOCKER_PERSIST_STATIC_BIN

step "Tests"
# A temporary directory of this run's own: the tests check that nothing is left in it (the fast path's
# socket directories), which a shared /tmp cannot tell apart from another run's.
run_tmp=$(mktemp -d "${TMPDIR:-/tmp}/dp-test.XXXXXX")
trap 'rm -rf "$run_tmp"; persist_engine_stop' EXIT
export TMPDIR="$run_tmp"
# Snapshots are compared, never written or updated (`cargo insta review` is the way to accept new ones).
# CI always checks; a developer may set INSTA_UPDATE themselves.
if is_ci; then
    export INSTA_UPDATE=no
else
    export INSTA_UPDATE="${INSTA_UPDATE:-no}"
fi
# The e2e harness puts this in front of its run ids, so the leak check below finds what this run made.
PERSIST_TEST_RUN_PREFIX="t$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')"
export PERSIST_TEST_RUN_PREFIX
targets=(--all-targets)
for arg in "$@"; do
    [[ "$arg" == -- ]] && break
    case "$arg" in
    --lib | --bins | --bin | --bin=* | --tests | --test | --test=* | --examples | --example | --example=* | \
        --benches | --bench | --bench=* | --doc | --all-targets)
        targets=()
        break
        ;;
    esac
done
test_status=0
# --no-fail-fast: one run reports every failing test binary, not only the first.
cargo test --no-fail-fast "${cargo_flags[@]}" "${targets[@]}" "$@" || test_status=$?

step "Leftovers"
if [[ "${PERSIST_TEST_KEEP:-}" == 1 ]]; then
    printf 'not checked: PERSIST_TEST_KEEP=1 keeps what the tests made\n' >&2
else
    fmt='\t{{.Label "com.docker.compose.project"}}\t{{.Label "persist.test.run"}}'
    leftovers=$(
        {
            docker ps --all --format "container\t{{.ID}}$fmt"
            # Helper containers carry no project label; their owner label names the host and the pid of
            # the process that made them. Those of processes still running (another command) are theirs.
            docker ps --all --filter label=persist.helper=true \
                --format "helper\t{{.ID}}\t{{.Label \"persist.helper.owner\"}}" |
                while IFS=$'\t' read -r kind id owner; do
                    [[ -d "/proc/${owner##*:}" ]] || printf '%s\t%s\t\t\n' "$kind" "$id"
                done
            docker network ls --format "network\t{{.ID}}$fmt"
            docker volume ls --format "volume\t{{.Name}}$fmt"
        } | awk -F '\t' -v run="$PERSIST_TEST_RUN_PREFIX" \
            '$1 == "helper" || index($3, "dp-" run) == 1 || index($4, run) == 1 { print $1, $2 }'
    )
    if [[ -n "$leftovers" ]]; then
        printf 'error: the tests left these engine objects behind (removing them now):\n' >&2
        printf '%s\n' "$leftovers" | sed 's/^/    /' >&2
        # In the order listed: containers (with their anonymous volumes), networks, volumes.
        while read -r kind id; do
            case "$kind" in
            container | helper) docker rm --force --volumes "$id" >/dev/null 2>&1 || true ;;
            network) docker network rm "$id" >/dev/null 2>&1 || true ;;
            volume) docker volume rm --force "$id" >/dev/null 2>&1 || true ;;
            esac
        done <<<"$leftovers"
        ((test_status != 0)) || test_status=1
    else
        printf 'none\n' >&2
    fi
fi

elapsed=$((SECONDS - started))
if ((test_status == 0 && postgres_image_status != 0)); then
    die "scripts/postgres-image.sh failed (exit $postgres_image_status; see above) after ${elapsed}s"
fi
if ((test_status != 0)); then
    die "tests failed (exit $test_status) after ${elapsed}s; the failures are listed above"
fi
printf '\n==> all tests passed in %ss\n' "$elapsed" >&2
