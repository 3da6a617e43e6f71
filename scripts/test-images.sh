#!/usr/bin/env bash
# Creates the images the tests run, without any registry: a rootfs made of Debian's static busybox is
# `docker import`ed once and tagged with every name the tests use (`postgres:16`, `redis:7`, …). The tests
# only need the names (the product classifies volumes by image name) and a shell with coreutils inside.
#
# Idempotent: the image carries a label `persist.test.hash` over busybox and this script; when an image with
# the current hash exists, the script only (re)tags it, which takes well under a second. It never pulls.
#
# Usage: scripts/test-images.sh            (DOCKER_HOST etc. are honoured)
set -euo pipefail

BUSYBOX=/bin/busybox

log() { printf 'test-images: %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

is_static_busybox() {
    # ldd exits non-zero for "not a dynamic executable"; Debian's `busybox` package is dynamic, which would
    # not run inside an image without a libc.
    [[ -x "$BUSYBOX" ]] && "$BUSYBOX" true 2>/dev/null && ! ldd "$BUSYBOX" >/dev/null 2>&1
}

ensure_busybox() {
    is_static_busybox && return 0
    if [[ "$(id -u)" != 0 ]]; then
        die "$BUSYBOX is missing or not statically linked, and only root can install it; run: sudo apt-get install -y busybox-static"
    fi
    log "installing busybox-static (Debian)"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y --no-install-recommends busybox-static >/dev/null 2>&1; then
        apt-get update -qq || die "apt-get update failed"
        apt-get install -y --no-install-recommends busybox-static >/dev/null ||
            die "apt-get install busybox-static failed"
    fi
    is_static_busybox || die "$BUSYBOX is still not a static busybox after installing busybox-static"
}

# The names tests may use (one list, shared with the e2e harness); every one is the same local image.
tags_file="$(dirname "${BASH_SOURCE[0]}")/test-images.txt"
TEST_IMAGE_TAGS=()
while read -r line; do
    [[ -z "$line" || "$line" == \#* ]] || TEST_IMAGE_TAGS+=("$line")
done <"$tags_file"
((${#TEST_IMAGE_TAGS[@]} > 0)) || die "no image names in $tags_file"

command -v docker >/dev/null 2>&1 || die "the \`docker\` CLI is not on PATH"
docker info >/dev/null 2>&1 || die "no Docker Engine answers at ${DOCKER_HOST:-the current docker context} (scripts/test.sh starts one)"
ensure_busybox

# What the image is made of: busybox and this recipe (not the names, which only change tags).
hash=$(cat "$BUSYBOX" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16)

image_id=$(docker images --quiet --no-trunc --filter "label=persist.test.hash=$hash" | head -n 1)
if [[ -z "$image_id" ]]; then
    log "building the test image (hash $hash)"
    root=$(mktemp -d)
    trap 'rm -rf "$root"' EXIT
    mkdir -p "$root"/{bin,etc,root,tmp,var/tmp,var/lib,var/log,run,proc,sys,dev,home,data,usr}
    chmod 1777 "$root/tmp" "$root/var/tmp"
    chmod 0700 "$root/root"
    # Merged /usr: every applet is a symlink in /bin, and the usual other directories point there.
    ln -s bin "$root/sbin"
    ln -s ../bin "$root/usr/bin"
    ln -s ../bin "$root/usr/sbin"
    cp "$BUSYBOX" "$root/bin/busybox"
    while read -r applet; do
        [[ "$applet" == busybox || -e "$root/bin/$applet" ]] || ln -s busybox "$root/bin/$applet"
    done < <("$BUSYBOX" --list)
    # root, a uid 999 user like the database images have, and nobody.
    cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
postgres:x:999:999:uid 999 user of the test image:/home/postgres:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
    cat >"$root/etc/group" <<'EOF'
root:x:0:
postgres:x:999:
nogroup:x:65534:
EOF
    mkdir -p "$root/home/postgres"
    tar_owner=()
    if [[ "$(id -u)" == 0 ]]; then
        chown 999:999 "$root/home/postgres"
    else
        tar_owner=(--owner=0 --group=0) # the files are ours, not root's: store them as root's
    fi
    printf 'persist-test\n' >"$root/etc/hostname"
    : >"$root/etc/hosts"
    # PID 1 that stops at once on `docker stop` (a bare `sleep` as PID 1 ignores SIGTERM, so every stop would
    # wait 10 s for SIGKILL).
    cat >"$root/bin/persist-test-idle" <<'EOF'
#!/bin/sh
trap 'exit 0' TERM INT
sleep infinity &
wait $!
EOF
    chmod 0755 "$root/bin/persist-test-idle"

    tar -C "$root" --numeric-owner "${tar_owner[@]}" --sort=name --mtime='2000-01-01 00:00:00Z' -cf - . |
        docker import \
            --change 'CMD ["/bin/persist-test-idle"]' \
            --change 'LABEL persist.test=true' \
            --change "LABEL persist.test.hash=$hash" \
            --message "docker-persist test image (busybox-static)" \
            - "${TEST_IMAGE_TAGS[0]}" >/dev/null || die "docker import of the test image failed"
    image_id=$(docker images --quiet --no-trunc --filter "label=persist.test.hash=$hash" | head -n 1)
    [[ -n "$image_id" ]] || die "the imported test image is not listed by its label"
fi

tagged=0
for tag in "${TEST_IMAGE_TAGS[@]}"; do
    current=$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
    if [[ "$current" != "$image_id" ]]; then
        docker tag "$image_id" "$tag" || die "docker tag $tag failed"
        tagged=$((tagged + 1))
    fi
done

# Older builds of the test image that no name points to any more.
stale=$(docker images --quiet --filter label=persist.test=true --filter dangling=true)
if [[ -n "$stale" ]]; then
    # shellcheck disable=SC2086 # one id per word
    docker rmi $stale >/dev/null 2>&1 || log "some stale test images are still in use; left in place"
fi

log "image ${image_id#sha256:} ready as ${TEST_IMAGE_TAGS[*]} ($tagged tag(s) updated)"
