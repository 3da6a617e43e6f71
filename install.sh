#!/usr/bin/env bash
# Builds docker-persist from this checkout and installs it as a Docker CLI plugin.
#
#   ./install.sh            installs to ${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins/docker-persist (your user)
#   ./install.sh --system   installs to /usr/local/lib/docker/cli-plugins/docker-persist (every user; root)
#   ./install.sh --help
set -euo pipefail

usage() {
    cat <<EOF
Usage: ./install.sh [--system]

Builds docker-persist in release mode (cargo build --release --locked; on Linux a static executable, which
the local fast path needs) and installs it as the Docker CLI plugin \`docker persist\`.

Options:
  --system    install into /usr/local/lib/docker/cli-plugins, for every user (needs root),
              instead of ${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins
  -h, --help  show this help

Afterwards, check with: docker persist --help
EOF
}

die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

system=0
while (($# > 0)); do
    case "$1" in
    --system) system=1 ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        printf 'error: unknown argument \x60%s\x60\n\n' "$1" >&2
        usage >&2
        exit 2
        ;;
    esac
    shift
done

cd "$(dirname "${BASH_SOURCE[0]}")"

command -v cargo >/dev/null 2>&1 || die "\`cargo\` is not on PATH; install Rust from https://rustup.rs"

# The build, in one place. On Linux the executable is linked statically: the local fast path runs this very
# executable inside a helper container that holds nothing else (docker persist falls back to the engine's
# archive API with a dynamic build). The explicit --target keeps build scripts and proc-macros dynamic.
if [[ "$(uname -s)" == Linux ]]; then
    triple=$(rustc -vV 2>/dev/null | sed -n 's/^host: //p')
    [[ -n "$triple" ]] || die "\`rustc -vV\` did not name the host target"
    build=(env RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --locked --target "$triple")
    binary="target/$triple/release/docker-persist"
else
    build=(cargo build --release --locked)
    binary=target/release/docker-persist
fi

if ((system)); then
    dest_dir=/usr/local/lib/docker/cli-plugins
    [[ "$(id -u)" == 0 ]] || die "--system installs into $dest_dir and needs root; run: sudo ./install.sh --system"
else
    dest_dir="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
fi
dest="$dest_dir/docker-persist"

printf '==> building: %s\n' "${build[*]}" >&2
"${build[@]}" || die "the build failed (see above)"
[[ -x "$binary" ]] || die "the build did not produce $binary"

mkdir -p "$dest_dir" || die "cannot create $dest_dir"
# Copy next to the destination, then rename: a running `docker persist` is never handed a half-written file.
install -m 0755 "$binary" "$dest.new" || die "cannot write $dest.new"
mv -f "$dest.new" "$dest" || die "cannot move $dest.new to $dest"

version=$("$dest" docker-cli-plugin-metadata 2>/dev/null | sed -n 's/.*"Version": *"\([^"]*\)".*/\1/p' || true)
printf '==> installed docker-persist %s as %s\n' "${version:-(unknown version)}" "$dest" >&2
if ! command -v docker >/dev/null 2>&1; then
    # shellcheck disable=SC2016 # backticks are literal
    echo 'note: the `docker` CLI is not on PATH; the plugin is used through it' >&2
fi
printf 'check with: docker persist --help\n' >&2
