#!/usr/bin/env bash
# Builds the real PostgreSQL server images the end-to-end tests run (tests/e2e/postgres.rs, and the major
# upgrade of tests/e2e/upgrade.rs), without any container registry: the Debian release that ships the major
# version (15: bookworm, 17: trixie) is bootstrapped with `debootstrap --variant=minbase` from the mirror
# this machine's apt uses, `postgresql-MAJOR` is installed into that rootfs with apt-get (no recommends), docs,
# caches and the JIT compiler (LLVM) are removed, a small entrypoint that behaves like the official image's
# (for what the tests need) is added, and the tree is loaded into the engine as an image (`docker load` of
# an archive made here, because `docker import --change` cannot set STOPSIGNAL on every engine):
#
#     persist-test/postgres-debian:15          (and :15-<hash>, the hash of this script and the major)
#     persist-test/postgres-debian:17          (`scripts/postgres-image.sh 17`)
#
# It is deliberately not tagged `postgres:16`: that name is the busybox stand-in of scripts/test-images.sh.
#
# The entrypoint (/usr/local/bin/docker-entrypoint.sh), like the official image's: PGDATA is
# /var/lib/postgresql/data (a VOLUME); on an empty data dir it runs initdb as user `postgres` (uid 999) with
# POSTGRES_USER (default postgres), POSTGRES_PASSWORD (required unless POSTGRES_HOST_AUTH_METHOD=trust),
# POSTGRES_DB (created when it is not `postgres`), POSTGRES_INITDB_ARGS, local connections trusted, other hosts
# by POSTGRES_HOST_AUTH_METHOD (default scram-sha-256), `listen_addresses = '*'`; then it execs the server in
# the foreground as `postgres`, PID 1. STOPSIGNAL is SIGINT, PostgreSQL's "fast" shutdown (SIGTERM would be
# "smart" shutdown, which waits for every client to disconnect): `docker stop` shuts it down cleanly within
# its timeout, and the next start finds a cleanly shut-down cluster.
#
# Idempotent: when the image tagged with the current hash exists, the script only makes sure `:MAJOR` points
# at it (well under a second). A build takes 1–2 min with the packages cached, about 3 min without, on a
# 2-core machine. A changed script builds a new image; untagged older builds of the same major that no
# container uses are removed (builds of other recipes are left: another checkout of the repository on the
# same engine may still use them). The .deb files are cached in
# ${XDG_CACHE_HOME:-$HOME/.cache}/docker-persist-test/debs (bookworm; debs-SUITE for the others), so a rebuild
# on the same machine downloads nothing. Needs root (debootstrap, chroot) and `debootstrap`.
#
# Knobs: PERSIST_DEBIAN_MIRROR (default: the bookworm mirror of /etc/apt/sources*, else deb.debian.org),
#        PERSIST_POSTGRES_IMAGE_REBUILD=1 (build even when the image exists).
#
# Usage: scripts/postgres-image.sh [MAJOR]  (15, the default, or 17; DOCKER_HOST etc. are honoured; prints
#        the image name on stdout)
set -euo pipefail

PG_MAJOR="${1:-15}"
# The Debian release whose own postgresql-MAJOR package the image is made of.
case "$PG_MAJOR" in
15) SUITE=bookworm ;;
17) SUITE=trixie ;;
*)
    printf 'error: no Debian release is known to ship postgresql-%s (15: bookworm, 17: trixie)\n' "$PG_MAJOR" >&2
    exit 2
    ;;
esac
REPO=persist-test/postgres-debian
IMAGE="$REPO:$PG_MAJOR"

log() { printf 'postgres-image: %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# The first `deb` source of this machine's apt that serves $SUITE itself (not -updates or -security), in
# one-line (sources.list) or deb822 (*.sources) format.
configured_mirror() {
    local files=() f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [[ -r "$f" ]] && files+=("$f")
    done
    ((${#files[@]} > 0)) || return 0
    awk -v suite="$SUITE" '
        function flush() {
            if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") && uris != "") {
                split(uris, u, " "); print u[1]; exit
            }
            types = ""; suites = ""; uris = ""
        }
        FILENAME ~ /\.sources$/ {
            if ($0 ~ /^[ \t]*$/) { flush(); next }
            if ($0 ~ /^[ \t]*#/) next
            if ($1 == "Types:") { $1 = ""; types = $0; sub(/^ +/, "", types) }
            if ($1 == "URIs:") { $1 = ""; uris = $0; sub(/^ +/, "", uris) }
            if ($1 == "Suites:") { $1 = ""; suites = $0; sub(/^ +/, "", suites) }
            next
        }
        { flush() }
        $1 == "deb" {
            i = 2
            if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
            if ($(i + 1) == suite) { print $i; exit }
        }
        END { flush() }
    ' "${files[@]}" 2>/dev/null | head -n 1
}

command -v docker >/dev/null 2>&1 || die "the \`docker\` CLI is not on PATH"
docker info >/dev/null 2>&1 || die "no Docker Engine answers at ${DOCKER_HOST:-the current docker context} (scripts/test.sh starts one)"

# What the image is made of: this recipe (the Debian packages are whatever the mirror serves for $SUITE).
hash=$( (cat "${BASH_SOURCE[0]}" && printf '%s\n' "$PG_MAJOR") | sha256sum | cut -c1-12)
versioned="$IMAGE-$hash"

if [[ "${PERSIST_POSTGRES_IMAGE_REBUILD:-0}" != 1 ]] && docker image inspect "$versioned" >/dev/null 2>&1; then
    current=$(docker image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
    wanted=$(docker image inspect --format '{{.Id}}' "$versioned")
    [[ "$current" == "$wanted" ]] || docker tag "$versioned" "$IMAGE" || die "docker tag $IMAGE failed"
    log "$IMAGE is ready (${wanted#sha256:})"
    printf '%s\n' "$IMAGE"
    exit 0
fi

[[ "$(id -u)" == 0 ]] || die "$IMAGE is missing, and building it needs root (debootstrap and chroot); run: sudo $0"
command -v debootstrap >/dev/null 2>&1 ||
    die "$IMAGE is missing, and building it needs \`debootstrap\` (Debian: apt-get install debootstrap)"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[[ -r "$keyring" ]] || die "$keyring is missing (Debian: apt-get install debian-archive-keyring)"

mirror="${PERSIST_DEBIAN_MIRROR:-$(configured_mirror)}"
mirror="${mirror:-http://deb.debian.org/debian}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/docker-persist-test/debs"
[[ "$SUITE" == bookworm ]] || cache="$cache-$SUITE"
mkdir -p "$cache" || die "cannot create $cache"

started=$SECONDS
# The rootfs, the logs and the image archive, all removed on exit.
work=$(mktemp -d "${TMPDIR:-/tmp}/persist-postgres-image.XXXXXX") || die "cannot create a temp dir"
root="$work/rootfs"
cleanup() {
    local mnt
    # Whatever is still mounted inside the rootfs (proc of the chroot), deepest first.
    while read -r mnt; do
        umount -l "$mnt" 2>/dev/null || true
    done < <(awk -v d="$work/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r)
    rm -rf --one-file-system "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "building $versioned from Debian $SUITE at $mirror (debs cached in $cache)"
debootstrap_log="$work/debootstrap.log"
# Two stages, so that the second one (dpkg installing the base system, most of the time) runs with
# dpkg's unsafe-io: no fsync per file, which only matters for a system that must survive a power cut.
if ! debootstrap --foreign --variant=minbase --keyring="$keyring" --cache-dir="$cache" \
    "$SUITE" "$root" "$mirror" >"$debootstrap_log" 2>&1; then
    tail -n 15 "$debootstrap_log" | sed 's/^/    /' >&2
    die "debootstrap --variant=minbase $SUITE from $mirror failed (set PERSIST_DEBIAN_MIRROR to another mirror)"
fi
mkdir -p "$root/etc/dpkg/dpkg.cfg.d"
printf 'force-unsafe-io\n' >"$root/etc/dpkg/dpkg.cfg.d/persist-build-unsafe-io"
if ! chroot "$root" /debootstrap/debootstrap --second-stage >>"$debootstrap_log" 2>&1; then
    tail -n 15 "$debootstrap_log" | sed 's/^/    /' >&2
    [[ -r "$root/debootstrap/debootstrap.log" ]] && tail -n 15 "$root/debootstrap/debootstrap.log" | sed 's/^/    /' >&2
    die "the second stage of debootstrap (installing the $SUITE base system) failed"
fi
log "debootstrap done ($((SECONDS - started))s)"

in_root() {
    chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
        LANG=C.UTF-8 HOME=/root "$@"
}

# No service may start inside the build's chroot.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 0755 "$root/usr/sbin/policy-rc.d"
# The uid and gid the official image uses, so that files of its data dir look the same.
in_root groupadd --system --gid 999 postgres
in_root useradd --system --uid 999 --gid 999 --home-dir /var/lib/postgresql --shell /bin/bash \
    --comment 'PostgreSQL administrator' postgres
# No cluster of Debian's own layout (/etc/postgresql/15/main): the entrypoint makes one in PGDATA.
mkdir -p "$root/etc/postgresql-common"
printf 'create_main_cluster = false\n' >"$root/etc/postgresql-common/createcluster.conf"
# Packages the cache already holds are not downloaded again.
find "$cache" -maxdepth 1 -name '*.deb' -exec cp -t "$root/var/cache/apt/archives/" {} +
mount -t proc proc "$root/proc"
apt_log="$work/apt.log"
if ! in_root apt-get install -y --no-install-recommends -o Dpkg::Options::=--force-confold \
    -o APT::Keep-Downloaded-Packages=true "postgresql-$PG_MAJOR" >"$apt_log" 2>&1; then
    tail -n 20 "$apt_log" | sed 's/^/    /' >&2
    die "apt-get install postgresql-$PG_MAJOR inside the $SUITE rootfs failed"
fi
umount "$root/proc"
cp -n -t "$cache/" "$root"/var/cache/apt/archives/*.deb 2>/dev/null || true
# Keep only the packages this build installed (older versions would pile up).
in_root dpkg-query -W -f='${Package}_${Version}_${Architecture}.deb\n' | sed 's/:/%3a/' | sort >"$work/keep"
find "$cache" -maxdepth 1 -name '*.deb' -printf '%f\n' | sort | comm -23 - "$work/keep" |
    sed "s|^|$cache/|" | xargs -r rm -f
log "postgresql-$PG_MAJOR installed ($((SECONDS - started))s)"

# Smaller: no JIT compiler (LLVM and its Z3 are most of the size; without llvmjit.so the server runs without
# JIT, and the entrypoint turns it off), no documentation, translations, locale sources (C.UTF-8 is built
# into the C library), caches or package lists.
mapfile -t jit < <(in_root dpkg-query -W -f='${Package}\n' 'libllvm*' 'libz3-*' 2>/dev/null)
((${#jit[@]} == 0)) || in_root dpkg --purge --force-depends "${jit[@]}" >/dev/null 2>&1 ||
    log "could not remove LLVM (kept)"
rm -rf "$root/usr/lib/postgresql/$PG_MAJOR/lib/llvmjit"* "$root/usr/lib/postgresql/$PG_MAJOR/lib/bitcode"
rm -rf "$root"/usr/share/{doc,man,info,locale,lintian,linda}/* "$root"/var/cache/apt/* "$root"/var/cache/debconf/*-old \
    "$root"/var/lib/apt/lists/* "$root"/var/log/* "$root/usr/sbin/policy-rc.d" \
    "$root/etc/dpkg/dpkg.cfg.d/persist-build-unsafe-io" "$root"/usr/share/i18n/*
rm -rf "$root/etc/postgresql/$PG_MAJOR" "$root/var/lib/postgresql/$PG_MAJOR"
mkdir -p "$root/var/lib/postgresql/data" "$root/var/run/postgresql" "$root/docker-entrypoint-initdb.d"
in_root chown postgres:postgres /var/lib/postgresql /var/lib/postgresql/data /var/run/postgresql
# The entrypoint drops to `postgres` with setpriv (util-linux in bookworm, a package of its own later).
if ! in_root sh -c 'command -v setpriv' >/dev/null; then
    mount -t proc proc "$root/proc"
    in_root apt-get install -y --no-install-recommends setpriv >>"$apt_log" 2>&1 ||
        die "setpriv is missing in the $SUITE rootfs and apt-get install setpriv failed"
    umount "$root/proc"
fi
chmod 0700 "$root/var/lib/postgresql/data"
chmod 3777 "$root/var/run/postgresql"

cat >"$root/usr/local/bin/docker-entrypoint.sh" <<'EOF'
#!/bin/sh
# The parts of the official postgres image's entrypoint that docker-persist's tests need: make the data dir,
# initdb on an empty one (POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB, POSTGRES_INITDB_ARGS,
# POSTGRES_HOST_AUTH_METHOD, *.sql and *.sh in /docker-entrypoint-initdb.d), then exec the server in the
# foreground as `postgres`.
set -eu
say() { printf '%s\n' "$*" >&2; }

if [ "${1#-}" != "$1" ]; then
    set -- postgres "$@"
fi

if [ "$1" = postgres ] && [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chown postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 0700 "$PGDATA"
    chmod 3777 /var/run/postgresql
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [ "$1" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
    auth="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"
    if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$auth" != trust ]; then
        say "error: the database is uninitialized and POSTGRES_PASSWORD is not set"
        say "hint: set POSTGRES_PASSWORD, or POSTGRES_HOST_AUTH_METHOD=trust to allow every connection without one"
        exit 1
    fi
    user="${POSTGRES_USER:-postgres}"
    pwfile=""
    if [ -n "${POSTGRES_PASSWORD:-}" ]; then
        pwfile=$(mktemp)
        printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    fi
    # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of words, as in the official image
    initdb --pgdata="$PGDATA" --username="$user" ${pwfile:+--pwfile="$pwfile"} --auth-local=trust \
        --auth-host="$auth" ${POSTGRES_INITDB_ARGS:-}
    [ -z "$pwfile" ] || rm -f "$pwfile"
    printf 'host all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"
    printf "listen_addresses = '*'\njit = off\n" >>"$PGDATA/postgresql.conf"

    db="${POSTGRES_DB:-$user}"
    if [ "$db" != postgres ] || [ -n "$(ls -A /docker-entrypoint-initdb.d 2>/dev/null)" ]; then
        pg_ctl --pgdata="$PGDATA" --wait --options="-c listen_addresses=''" start
        if [ "$db" != postgres ]; then
            # From stdin: psql interpolates :"db" (quoted as an identifier) there, not in -c
            echo 'CREATE DATABASE :"db";' |
                psql -v ON_ERROR_STOP=1 --username="$user" --dbname=postgres --no-psqlrc --set=db="$db"
        fi
        for f in /docker-entrypoint-initdb.d/*; do
            case "$f" in
            *.sql) say "running $f"; psql -v ON_ERROR_STOP=1 --username="$user" --dbname="$db" --no-psqlrc -f "$f" ;;
            *.sh) say "running $f"; . "$f" ;;
            esac
        done
        pg_ctl --pgdata="$PGDATA" --wait --mode=fast stop
    fi
    say "PostgreSQL init process complete; ready for start up."
fi

exec "$@"
EOF
chmod 0755 "$root/usr/local/bin/docker-entrypoint.sh"
ln -s usr/local/bin/docker-entrypoint.sh "$root/docker-entrypoint.sh"

pg_version=$(in_root dpkg-query -W -f='${Version}' "postgresql-$PG_MAJOR")
case "$(in_root dpkg --print-architecture)" in
amd64) arch=amd64 ;;
arm64) arch=arm64 ;;
i386) arch=386 ;;
ppc64el) arch=ppc64le ;;
s390x) arch=s390x ;;
*) die "no Docker architecture name for Debian's $(in_root dpkg --print-architecture)" ;;
esac

# `docker import --change` does not take STOPSIGNAL on every engine (20.10 refuses it), so the image is
# loaded as a docker-archive made here: one layer (the rootfs), a config with everything the official image
# sets, and a manifest naming the tag.
archive="$work/archive"
mkdir "$archive"
log "packing the rootfs ($(du -sh --one-file-system "$root" | cut -f1))"
layer_digest=$(tar -C "$root" --numeric-owner --one-file-system --sort=name \
    --exclude=./proc/* --exclude=./sys/* --exclude=./dev/* -cf - . |
    tee "$archive/layer.tar" | sha256sum | cut -d' ' -f1)
created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
config=$(printf '%s' \
    '{"architecture":"'"$arch"'","os":"linux","created":"'"$created"'",' \
    '"config":{' \
    '"Env":["PATH=/usr/lib/postgresql/'"$PG_MAJOR"'/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",' \
    '"LANG=C.UTF-8","PG_MAJOR='"$PG_MAJOR"'","PGDATA=/var/lib/postgresql/data"],' \
    '"Entrypoint":["docker-entrypoint.sh"],"Cmd":["postgres"],"StopSignal":"SIGINT",' \
    '"Volumes":{"/var/lib/postgresql/data":{}},"ExposedPorts":{"5432/tcp":{}},' \
    '"Labels":{"persist.test":"true","persist.test.image":"postgres-debian",' \
    '"persist.test.hash":"'"$hash"'","persist.test.postgresql":"'"$pg_version"'",' \
    '"persist.test.postgresql.major":"'"$PG_MAJOR"'"}},' \
    '"rootfs":{"type":"layers","diff_ids":["sha256:'"$layer_digest"'"]},' \
    '"history":[{"created":"'"$created"'","created_by":"scripts/postgres-image.sh",' \
    '"comment":"docker-persist test image: PostgreSQL '"$pg_version"' on Debian '"$SUITE"' (minbase)"}]}')
config_digest=$(printf '%s' "$config" | sha256sum | cut -d' ' -f1)
printf '%s' "$config" >"$archive/$config_digest.json"
printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["layer.tar"]}]' "$config_digest" "$versioned" \
    >"$archive/manifest.json"
log "loading it into the engine as $versioned"
tar -C "$archive" -cf - manifest.json "$config_digest.json" layer.tar | docker load >/dev/null ||
    die "docker load of $versioned failed"
docker tag "$versioned" "$IMAGE" || die "docker tag $IMAGE failed"

# Older untagged builds of this major (a rebuild moved its tags away) that no container uses any more.
docker images --filter label=persist.test.image=postgres-debian --filter dangling=true \
    --filter "label=persist.test.postgresql.major=$PG_MAJOR" --format '{{.ID}}' |
    while read -r id; do
        docker rmi "$id" >/dev/null 2>&1 || log "image $id is still in use; left in place"
    done

log "$IMAGE ready: PostgreSQL $pg_version, $(docker image inspect --format '{{.Size}}' "$IMAGE" | numfmt --to=iec) \
in $((SECONDS - started))s"
printf '%s\n' "$IMAGE"
