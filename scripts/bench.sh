#!/usr/bin/env bash
# Benchmarks `docker persist backup` and `restore` against the other ways of copying a volume, on the
# reference volume of DESIGN.md ("Performance targets"), and prints medians, the paired ratios the targets are
# stated in, and a verdict for each target. Results and how to read them: docs/benchmarks.md.
#
# Usage:
#   scripts/bench.sh [-n RUNS] [--no-build] [--settle SECS] [--results FILE] [--keep] [--only METHODS]
#                    [--destinations]
#   scripts/bench.sh --clean
#
#   -n, --runs N      measured rounds (default 3); one warm-up round runs first and is not counted
#   --no-build        use the existing build instead of `cargo build --release`: target/release/docker-persist,
#                     or, when the build has `--path`, the static one under target/<host triple>/release
#   --settle SECS     pause after `sync` that follows each bulk delete (a restored volume, a round's backup
#                     files) before the next timed step (default 3)
#   --results FILE    also write every sample as TSV (phase, method, round, seconds, load, max RSS, bytes,
#                     CPU seconds)
#   --keep            keep the work directory (backup files of the last round, logs) for a look afterwards
#   --only METHODS    run only these methods (comma-separated, e.g. `ours-universal,ours-universal-age`), to
#                     measure one comparison in less time; the reports leave out what did not run
#   --destinations    run the destination rounds instead (scripts/bench-destinations.sh): backup --to a local
#                     moto_server S3 and a local sshd SFTP against backup then boto3 upload_file / scp,
#                     push against the same copies, peak RSS, and backups --from of 50 backups
#   --clean           remove everything the benchmark made, the cached reference volume and the GNU
#                     tar/zstd image included, and exit
#
# Environment:
#   PERSIST_BENCH_BIN=PATH  measure this docker-persist executable instead of building one (implies
#                           --no-build), e.g. to compare two builds; for the fast path it must be static
#
# Data paths: when `docker-persist backup --help` offers `--path`, ours runs twice, as ours-universal and
# ours-fast (`--path universal|fast`), and the static executable the fast path needs is built (with
# RUSTFLAGS='-C target-feature=+crt-static' and an explicit --target) and used for every ours method. A build
# without `--path` has the universal path only: ours runs once, and the fast-path targets are reported as not
# available in this build.
#
# What one round runs, in an order rotated from round to round so that no method always goes first:
#   backup   (a)  docker run busybox tar czf          (the classic method)
#            (b0) docker cp CTR:/data/. - >/dev/null  (the engine's tar producer alone)
#            (b0e) the same from a container of an empty image, as docker persist's helper is: the engine
#                 looks up each entry's uid and gid in the container's /etc/passwd and /etc/group and
#                 caches only names it finds, so without those files every entry costs two failed lookups
#            (b)  docker cp CTR:/data/. - | zstd -T0 -3
#            (c)  GNU tar | zstd -T0 -3 in a container, volume read-only, /out bind-mounted
#            ours           docker persist backup ref   (through the docker CLI, as users run it), or
#            ours-universal and ours-fast, the same with `--path universal` / `--path fast`
#            ours-direct    the docker-persist executable … backup, under /usr/bin/time -v (peak RSS, CPU
#                           time); on the universal path, where our process does the work
#            ours-l1        the same with --level 1     (how much of our time is compression)
#            ours-universal-age, ours-fast-age (or ours-age)   the same as ours-universal / ours-fast, encrypted
#                           with age to a key made by `key init` for the run (`--encrypt-to`); their
#                           restores decrypt with it (`--identity`). Target: ≤ 1.10 × the plain time
#   restore  each into a fresh volume: (a') busybox tar xzf, (b') zstd -dc | docker cp -, (c') zstd -dc |
#            GNU tar -x in a container, ours or ours-universal and ours-fast (docker persist restore … --as
#            NEW --yes --no-safety-backup, each from its own backup of the round) and ours-direct (the
#            executable under /usr/bin/time -v, from the universal path's backup).
# Only the command itself is timed: creating the never-started container of (b)/(b') and removing it is
# not (it is reported as a setup cost), nor is `sync`, which runs between measurements so that one method's
# write-back is not billed to the next. Inputs are warmed before they are timed, so that every method starts
# from the same page cache: each round first reads every file of the reference volume once, and each restore
# first reads its backup file once. Each restored volume is removed after its step, then `sync` and the
# settle pause run before anything else is timed. Every sample records the 1-minute load average at its start.
# The warm-up round also restores each method's output and compares the restored tree (names, types, sizes,
# modes, owners, content) with the reference volume.
#
# Ratios are paired: for each measured round, ours / (reference) from that same round; the report gives the
# median of these per-round ratios with their min and max, next to the ratio of the medians, and the verdict
# table judges each target on the median of the per-round ratios.
#   universal path: backup ≤ 1.10 × (b), restore ≤ 1.10 × (b')
#   fast path:      backup ≤ 1.10 × (c), restore ≤ 1.00 × (c')
#   peak RSS of docker-persist ≤ 64 MB
#
# The reference volume `persist-bench-ref` is made once from `examples/archive_bench.rs gen` (the same tree
# docs/format.md measured) and reused while its marker file matches REF_VERSION. The GNU tar/zstd image
# `persist-bench-gnu:1` is made from Debian packages (`apt-get download`, `dpkg-deb -x`, `docker import`),
# never pulled. Every container, volume and image the benchmark makes is labelled `persist.bench=1`.
# The engine must run on this machine: (a) and (c) bind-mount the output directory.
set -euo pipefail

REF_VOLUME=persist-bench-ref
REF_VERSION="ref-v1 archive_bench-gen 8x64MiB+40000"
REF_MARKER=.persist-bench-ref
GNU_IMAGE=persist-bench-gnu:1
EMPTY_IMAGE=persist-bench-empty:1
GNU_PACKAGES=(tar zstd libc6 libacl1 libselinux1 libpcre2-8-0 zlib1g liblzma5 liblz4-1 dash)
BUSYBOX=busybox:latest
PROJECT=persistbench
LABEL=persist.bench=1

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
runs=3
build=1
keep=0
settle_secs=3
results=""
only=""
destinations=0
work=""
RUN_ID="$$-$(date +%s)"

log() { printf 'bench: %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}
usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
}

# ---------------------------------------------------------------------------------------------- setup

clean_all() {
    local ids
    ids=$(docker ps -aq --filter "label=$LABEL")
    # shellcheck disable=SC2086 # one id per word
    [[ -z "$ids" ]] || docker rm -f $ids >/dev/null
    ids=$( (
        docker volume ls -q --filter "label=$LABEL"
        docker volume ls -q --filter "name=persist-bench-"
    ) | sort -u)
    # shellcheck disable=SC2086
    [[ -z "$ids" ]] || docker volume rm -f $ids >/dev/null
    ids=$(docker images -q --filter "label=$LABEL" | sort -u)
    # shellcheck disable=SC2086
    [[ -z "$ids" ]] || docker rmi -f $ids >/dev/null
    log "removed every container, volume and image labelled $LABEL (the reference volume and $GNU_IMAGE included)"
}

cleanup() {
    local status=$? ids
    set +e
    # The destination rounds' servers.
    declare -F dest_cleanup >/dev/null && dest_cleanup
    ids=$(docker ps -aq --filter "label=persist.bench.run=$RUN_ID" 2>/dev/null)
    # shellcheck disable=SC2086
    [[ -z "$ids" ]] || docker rm -f $ids >/dev/null 2>&1
    ids=$(docker volume ls -q --filter "name=persist-bench-$RUN_ID-" 2>/dev/null)
    # shellcheck disable=SC2086
    [[ -z "$ids" ]] || docker volume rm -f $ids >/dev/null 2>&1
    if [[ -n "$work" && -d "$work" ]]; then
        if ((keep)); then
            log "kept $work"
        else
            rm -rf "$work"
        fi
    fi
    exit "$status"
}

need_tools() {
    local missing=() pkgs=()
    command -v docker >/dev/null || die "the \`docker\` CLI is not on PATH"
    command -v zstd >/dev/null || {
        missing+=(zstd)
        pkgs+=(zstd)
    }
    [[ -x /usr/bin/time ]] || {
        missing+=(/usr/bin/time)
        pkgs+=(time)
    }
    command -v apt-get >/dev/null || die "apt-get is needed to build the GNU tar/zstd image from Debian packages"
    command -v dpkg-deb >/dev/null || die "dpkg-deb is needed to build the GNU tar/zstd image"
    ((${#pkgs[@]} == 0)) && return 0
    [[ "$(id -u)" == 0 ]] || die "missing ${missing[*]}; install with: sudo apt-get install -y ${pkgs[*]}"
    log "installing ${pkgs[*]} (Debian)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends "${pkgs[@]}" >/dev/null 2>&1 || {
        apt-get update -qq && apt-get install -y --no-install-recommends "${pkgs[@]}" >/dev/null
    } || die "apt-get install ${pkgs[*]} failed"
}

# The plugin runs with a temp DOCKER_CONFIG (for its cli-plugins/ symlink), which would lose a context chosen
# in the user's config: pin the endpoint the docker CLI resolves now.
pin_endpoint() {
    if [[ -z "${DOCKER_HOST:-}" ]]; then
        DOCKER_HOST=$(docker context inspect --format '{{.Endpoints.docker.Host}}' 2>/dev/null) ||
            die "cannot resolve the current docker context's endpoint (\`docker context inspect\`)"
        export DOCKER_HOST
    fi
    unset DOCKER_CONTEXT
    docker info >/dev/null 2>&1 || die "no Docker Engine answers at $DOCKER_HOST"
}

ensure_busybox() {
    docker image inspect "$BUSYBOX" >/dev/null 2>&1 && return 0
    log "$BUSYBOX is missing; making the local test images (scripts/test-images.sh)"
    "$repo/scripts/test-images.sh" || die "scripts/test-images.sh failed"
}

# (c)'s image: GNU tar and zstd from Debian packages, unpacked into a rootfs and imported. No registry.
ensure_gnu_image() {
    docker image inspect "$GNU_IMAGE" >/dev/null 2>&1 && return 0
    log "building $GNU_IMAGE from Debian packages: ${GNU_PACKAGES[*]}"
    local dir="$work/gnu" deb
    mkdir -p "$dir/debs" "$dir/root"
    chmod 0755 "$work" "$dir" "$dir/debs" # apt-get download runs as _apt when it can read the directory
    if ! (cd "$dir/debs" && apt-get download "${GNU_PACKAGES[@]}" >/dev/null 2>&1); then
        [[ "$(id -u)" == 0 ]] && apt-get update -qq >/dev/null 2>&1
        (cd "$dir/debs" && apt-get download "${GNU_PACKAGES[@]}" >/dev/null) ||
            die "apt-get download ${GNU_PACKAGES[*]} failed"
    fi
    for deb in "$dir"/debs/*.deb; do
        dpkg-deb -x "$deb" "$dir/root"
    done
    [[ -e "$dir/root/bin/sh" ]] || ln -s dash "$dir/root/bin/sh"
    mkdir -p "$dir/root/tmp" "$dir/root/data" "$dir/root/out" "$dir/root/in"
    chmod 1777 "$dir/root/tmp"
    tar -C "$dir/root" --numeric-owner --owner=0 --group=0 -cf - . |
        docker import --change "LABEL $LABEL" --change 'CMD ["/bin/sh"]' \
            --message "docker-persist benchmark: GNU tar and zstd from Debian packages" - "$GNU_IMAGE" >/dev/null ||
        die "docker import of $GNU_IMAGE failed"
    local versions
    if ! versions=$(docker run --rm --network none --label "$LABEL" "$GNU_IMAGE" \
        sh -c 'tar --version && zstd --version' 2>&1); then
        docker rmi -f "$GNU_IMAGE" >/dev/null 2>&1 || true
        die "$GNU_IMAGE does not run tar and zstd (a shared library missing from GNU_PACKAGES? check with ldd): $versions"
    fi
    log "$GNU_IMAGE ready: $(printf '%s\n' "$versions" | grep -E '^(tar|\*\*\*)' | tr '\n' ' ')"
    rm -rf "$dir"
}

# An image with no files, like docker persist's helper image, for (b0e).
ensure_empty_image() {
    docker image inspect "$EMPTY_IMAGE" >/dev/null 2>&1 && return 0
    head -c 1024 /dev/zero | docker import --change "LABEL $LABEL" --message "docker-persist benchmark: empty" \
        - "$EMPTY_IMAGE" >/dev/null || die "docker import of $EMPTY_IMAGE failed"
}

ref_marker() {
    docker run --rm --network none --label "$LABEL" -v "$REF_VOLUME:/data:ro" "$BUSYBOX" \
        cat "/data/$REF_MARKER" 2>/dev/null || true
}

# The reference volume: examples/archive_bench.rs's tree (8 × 64 MiB half random, half word-like text, and
# 400 directories of 100 text files of 1–3 KiB, owned by 999:999), extracted into a labelled volume. The
# marker file is written last, so a volume whose filling was interrupted is rebuilt.
ensure_ref_volume() {
    if docker volume inspect "$REF_VOLUME" >/dev/null 2>&1; then
        [[ "$(ref_marker)" == "$REF_VERSION" ]] && {
            log "reusing the reference volume $REF_VOLUME ($REF_VERSION)"
            return 0
        }
        log "the reference volume $REF_VOLUME is stale or incomplete; rebuilding it"
        docker volume rm -f "$REF_VOLUME" >/dev/null || die "cannot remove $REF_VOLUME (in use?)"
    fi
    log "building the reference volume $REF_VOLUME (≈650 MB; once)"
    (cd "$repo" && cargo build --release --quiet --example archive_bench) ||
        die "cargo build --release --example archive_bench failed"
    "$repo/target/release/examples/archive_bench" gen "$work/ref.tar" >&2
    docker volume create --label "$LABEL" "$REF_VOLUME" >/dev/null
    docker run --rm -i --network none --label "$LABEL" -v "$REF_VOLUME:/data" "$BUSYBOX" \
        tar -x -C / <"$work/ref.tar" || die "filling $REF_VOLUME failed"
    rm -f "$work/ref.tar"
    printf '%s\n' "$REF_VERSION" | docker run --rm -i --network none --label "$LABEL" \
        -v "$REF_VOLUME:/data" "$BUSYBOX" sh -c "cat > /data/$REF_MARKER"
    [[ "$(ref_marker)" == "$REF_VERSION" ]] || die "the marker of $REF_VOLUME does not read back"
}

# Every path of a volume with its type, size, mode and owner, sorted.
tree_meta() {
    docker run --rm --network none --label "$LABEL" -v "$1:/data:ro" "$BUSYBOX" sh -c '
        cd /data && find . -exec stat -c "%n %F %s %a %u:%g" {} + | sort'
}

# A fingerprint of a volume's tree: every path with type, size, mode, owner, and the content of every file.
tree_fingerprint() {
    docker run --rm --network none --label "$LABEL" -v "$1:/data:ro" "$BUSYBOX" sh -c '
        cd /data || exit 1
        meta=$(find . -exec stat -c "%n %F %s %a %u:%g" {} + | sort | md5sum | cut -d" " -f1)
        data=$(find . -type f | sort | xargs cat | md5sum | cut -d" " -f1)
        n=$(find . | wc -l)
        echo "$n entries, meta $meta, data $data"'
}

# -------------------------------------------------------------------------------------------- measuring

cp_id=""
setup_secs=0
samples="" # TSV lines: phase method round seconds load1 maxrss_kib bytes
t_start=""

load1() { cut -d' ' -f1 /proc/loadavg; }

# Busy CPUs (out of nproc) over a quiet second before a round: the load that is not ours.
external_load() {
    local a b
    read -r -a a < <(head -n 1 /proc/stat)
    sleep 2
    read -r -a b < <(head -n 1 /proc/stat)
    awk -v u1="${a[1]}" -v n1="${a[2]}" -v s1="${a[3]}" -v i1="${a[4]}" -v w1="${a[5]}" -v q1="${a[6]}" \
        -v sq1="${a[7]}" -v st1="${a[8]}" -v u2="${b[1]}" -v n2="${b[2]}" -v s2="${b[3]}" -v i2="${b[4]}" \
        -v w2="${b[5]}" -v q2="${b[6]}" -v sq2="${b[7]}" -v st2="${b[8]}" -v cpus="$(nproc)" 'BEGIN {
            busy = (u2 - u1) + (n2 - n1) + (s2 - s1) + (q2 - q1) + (sq2 - sq1) + (st2 - st1)
            idle = (i2 - i1) + (w2 - w1)
            printf "%.2f", (busy + idle > 0) ? cpus * busy / (busy + idle) : 0 }'
}

start_timer() {
    sync
    t_load=$(load1)
    t_start=$EPOCHREALTIME
}

# stop_timer PHASE METHOD ROUND [MAXRSS_KIB] [BYTES] [CPU_SECONDS]
stop_timer() {
    local t_end=$EPOCHREALTIME secs
    secs=$(awk -v a="$t_start" -v b="$t_end" 'BEGIN { printf "%.3f", b - a }')
    samples+="$1	$2	$3	$secs	$t_load	${4:--}	${5:--}	${6:--}"$'\n'
    log "round $3: $1 $2 ${secs}s${4:+, peak RSS $((${4} / 1024)) MiB}${6:+, CPU ${6}s}"
}

# stop_timer_direct PHASE METHOD ROUND [BYTES]: stop_timer with the peak RSS and CPU time (user + sys) that
# /usr/bin/time -v wrote for persist_direct.
stop_timer_direct() {
    stop_timer "$1" "$2" "$3" "$(maxrss_of "$work/time.txt")" "${4:-}" "$(cpu_of "$work/time.txt")"
}

file_size() { stat -c %s "$1"; }

maxrss_of() { awk -F': ' '/Maximum resident set size/ { print $2 }' "$1"; }

cpu_of() {
    awk -F': ' '/User time \(seconds\)/ { u = $2 } /System time \(seconds\)/ { s = $2 }
        END { printf "%.2f", u + s }' "$1"
}

# The benchmark's Compose project: one service mounting the volume $1 as `ref`.
bench_compose() {
    cat <<EOF2
name: $PROJECT
services:
  app:
    image: $BUSYBOX
    volumes: [ref:/data]
volumes:
  ref:
    external: true
    name: $1
EOF2
}

persist_plugin() { DOCKER_CONFIG="$work/config" docker persist -f "$work/project/compose.yaml" "$@"; }

persist_direct() { /usr/bin/time -v -o "$work/time.txt" "$bin" -f "$work/project/compose.yaml" "$@"; }

# Reads every file of a volume once (and stats every entry), so that no method finds the page cache colder
# or warmer than another. Not timed. The data goes through a pipe, not straight to /dev/null, so that no
# shortcut (sendfile, splice) can skip the read.
warm_volume() {
    local t0=$EPOCHREALTIME bytes
    bytes=$(docker run --rm --network none --label "$LABEL" -v "$1:/data:ro" "$BUSYBOX" \
        sh -c 'find /data -type f -exec cat {} + | wc -c') || die "reading $1 to warm the page cache failed"
    log "round $round: warmed $1 (read $(mb "$bytes") MB in $(awk -v a="$t0" -v b="$EPOCHREALTIME" \
        'BEGIN { printf "%.1f", b - a }')s, not timed)"
}

warm_file() { dd if="$1" of=/dev/null bs=1M status=none; }

# After a bulk delete: write back what it left dirty and let the disk settle before the next timed step.
settle() {
    sync
    sleep "$settle_secs"
}

# One never-started container that mounts a volume at /data, for `docker cp`. Not timed; its create and
# remove are recorded as the setup cost of (b)/(b').
# cp_container VOLUME [:ro] [IMAGE]: sets cp_id and setup_secs.
cp_container() {
    local t0=$EPOCHREALTIME
    cp_id=$(docker create --network none --label "$LABEL" --label "persist.bench.run=$RUN_ID" \
        -v "$1:/data${2:-}" "${3:-$BUSYBOX}" /never-started)
    setup_secs=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }')
}

rm_container() {
    local t0=$EPOCHREALTIME
    docker rm -f "$1" >/dev/null
    setup_secs=$(awk -v a="$t0" -v b="$EPOCHREALTIME" -v s="$setup_secs" 'BEGIN { printf "%.3f", s + b - a }')
    samples+="setup	cp-container	$round	$setup_secs	-	-	-	-"$'\n'
}

# The --path arguments of one of our methods: ours-universal and ours-fast name their path; ours-direct and
# ours-l1 take the universal path, where our own process does the work that /usr/bin/time -v sees; plain
# `ours` (a build without --path) passes none.
path_args_of() {
    case "$1" in
    ours-universal | ours-fast) printf '%s\n' --path "${1#ours-}" ;;
    ours-universal-age | ours-fast-age) m=${1#ours-} && printf '%s\n' --path "${m%-age}" ;;
    ours-direct | ours-l1) ((fast_path)) && printf '%s\n' --path universal ;;
    esac
    return 0
}

# A step of ours that failed is reported with its output and not measured any further (nor, for a backup,
# the restore from it).
ours_failed() { # PHASE METHOD LOG
    log "$1 $2 failed; not measuring it any further. Its output:"
    sed 's/^/    /' "$3" >&2
    failed["$1 $2"]=1
}

backup_method() {
    local m=$1 out="$work/out/$round" path args=()
    case "$m" in
    a)
        start_timer
        docker run --rm --network none --label "$LABEL" -v "$REF_VOLUME:/data:ro" -v "$out:/backup" \
            "$BUSYBOX" tar czf /backup/a.tar.gz -C /data .
        stop_timer backup a "$round" "" "$(file_size "$out/a.tar.gz")"
        ;;
    b0 | b0e | b)
        cp_container "$REF_VOLUME" :ro "$([[ "$m" == b0e ]] && echo "$EMPTY_IMAGE" || echo "$BUSYBOX")"
        start_timer
        if [[ "$m" == b0* ]]; then
            docker cp "$cp_id:/data/." - >/dev/null
            stop_timer backup "$m" "$round"
        else
            docker cp "$cp_id:/data/." - | zstd -T0 -3 -q >"$out/b.tar.zst"
            stop_timer backup b "$round" "" "$(file_size "$out/b.tar.zst")"
        fi
        rm_container "$cp_id"
        ;;
    c)
        start_timer
        docker run --rm --network none --label "$LABEL" -v "$REF_VOLUME:/data:ro" -v "$out:/out" \
            "$GNU_IMAGE" sh -c 'tar -C /data -cf - . | zstd -T0 -3 -q > /out/c.tar.zst'
        stop_timer backup c "$round" "" "$(file_size "$out/c.tar.zst")"
        ;;
    ours | ours-universal | ours-fast | ours-direct | ours-l1 | ours-age | ours-universal-age | ours-fast-age)
        mapfile -t args < <(path_args_of "$m")
        [[ "$m" == ours-l1 ]] && args+=(--level 1)
        [[ "$m" == *-age ]] && args+=(--encrypt-to "$age_public")
        local runner=persist_plugin
        [[ "$m" == ours-direct || "$m" == ours-l1 ]] && runner=persist_direct
        start_timer
        if ! "$runner" -q backup ref --dir "$out/$m" "${args[@]}" >"$work/backup.out" 2>"$work/backup.log"; then
            ours_failed backup "$m" "$work/backup.log"
            return 0
        fi
        path=$(tail -n 1 "$work/backup.out")
        if [[ "$runner" == persist_direct ]]; then
            stop_timer_direct backup "$m" "$round" "$(file_size "$path")"
        else
            stop_timer backup "$m" "$round" "" "$(file_size "$path")"
        fi
        printf '%s\n' "$path" >"$out/$m.path"
        ;;
    *) die "unknown backup method $m" ;;
    esac
}

restore_method() {
    local m=$1 out="$work/out/$round" vol="persist-bench-$RUN_ID-$1" input args=()
    case "$m" in
    a) input=$out/a.tar.gz ;;
    b | c) input=$out/$m.tar.zst ;;
    ours | ours-universal | ours-fast | ours-age | ours-universal-age | ours-fast-age) input=$out/$m.path ;;
    ours-direct) input=$out/$ours_u.path ;;
    *) die "unknown restore method $m" ;;
    esac
    if [[ "$input" == *.path ]]; then
        # No backup of ours this round (it failed, and said so): nothing to restore from.
        [[ -e "$input" ]] || return 0
        input=$(cat "$input")
    fi
    docker volume rm -f "$vol" >/dev/null 2>&1 || true
    warm_file "$input"
    case "$m" in
    a)
        docker volume create --label "$LABEL" "$vol" >/dev/null
        start_timer
        docker run --rm --network none --label "$LABEL" -v "$vol:/data" -v "$out:/backup:ro" \
            "$BUSYBOX" tar xzf /backup/a.tar.gz -C /data
        stop_timer restore a "$round"
        ;;
    b)
        docker volume create --label "$LABEL" "$vol" >/dev/null
        cp_container "$vol"
        start_timer
        zstd -dc -q "$input" | docker cp - "$cp_id:/data"
        stop_timer restore b "$round"
        rm_container "$cp_id"
        ;;
    c)
        docker volume create --label "$LABEL" "$vol" >/dev/null
        start_timer
        docker run --rm --network none --label "$LABEL" -v "$vol:/data" -v "$out:/in:ro" \
            "$GNU_IMAGE" sh -c 'zstd -dc -q /in/c.tar.zst | tar -C /data -xf -'
        stop_timer restore c "$round"
        ;;
    ours*)
        mapfile -t args < <(path_args_of "$m")
        [[ "$m" == *-age ]] && args+=(--identity "$age_identity")
        local runner=persist_plugin
        [[ "$m" == ours-direct ]] && runner=persist_direct
        start_timer
        if ! "$runner" -q restore "$input" ref --as "$vol" --yes --no-safety-backup "${args[@]}" \
            >"$work/restore.log" 2>&1; then
            ours_failed restore "$m" "$work/restore.log"
            docker volume rm -f "$vol" >/dev/null 2>&1 || true
            settle
            return 0
        fi
        if [[ "$runner" == persist_direct ]]; then
            stop_timer_direct restore "$m" "$round"
        else
            stop_timer restore "$m" "$round"
        fi
        ;;
    esac
    if ((round == 0)); then
        local got
        got=$(tree_fingerprint "$vol")
        if [[ "$got" == "$ref_fingerprint" ]]; then
            log "check: ($m) restored the reference tree exactly"
        else
            log "check: ($m) restored a DIFFERENT tree: $got; first differences (< reference, > restored):"
            tree_meta "$REF_VOLUME" >"$work/meta.ref"
            tree_meta "$vol" >"$work/meta.got"
            local differs
            differs=$(diff "$work/meta.ref" "$work/meta.got" | grep '^[<>]' || true)
            [[ -n "$differs" ]] || differs="names, types, sizes, modes and owners agree; file contents differ"
            printf '%s\n' "$differs" | head -n 6 | sed 's/^/    /' >&2
            mismatches+="($m): $(printf '%s\n' "$differs" | head -n 2 | tr '\n' ' ')"$'\n'
        fi
    fi
    docker volume rm -f "$vol" >/dev/null
    settle
}

# ---------------------------------------------------------------------------------------------- report

# median_of PHASE METHOD → median seconds over the measured rounds (round ≥ 1), or "-"
median_of() {
    printf '%s' "$samples" | awk -F'\t' -v p="$1" -v m="$2" -v col="${3:-4}" '
        $1 == p && $2 == m && $3 >= 1 && $col != "-" { v[n++] = $col }
        END {
            if (n == 0) { print "-"; exit }
            for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
            print (n % 2) ? v[int(n / 2)] : (v[n / 2 - 1] + v[n / 2]) / 2 }'
}

median_load() {
    printf '%s' "$samples" | awk -F'\t' '$3 >= 1 && $5 != "-" { print $5 }' | sort -n |
        awk '{ v[n++] = $1 } END { print n ? v[int(n / 2)] : "-" }'
}

range_of() {
    printf '%s' "$samples" | awk -F'\t' -v p="$1" -v m="$2" '
        $1 == p && $2 == m && $3 >= 1 { if (n == 0 || $4 < lo) lo = $4; if (n == 0 || $4 > hi) hi = $4; n++ }
        END { if (n) printf "%.2f–%.2f (%d)", lo, hi, n; else print "-" }'
}

# Formatting that passes "-" (not measured) through.
mb() { awk -v b="$1" 'BEGIN { if (b == "-") print "-"; else printf "%.1f", b / 1e6 }'; }
mib() { awk -v k="$1" 'BEGIN { if (k == "-") print "-"; else printf "%.1f", k / 1024 }'; }

secs() { awk -v s="$1" 'BEGIN { printf "%.2f", s }'; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2f", a / b }'; }

# paired PHASE NUM DEN → "MEDIAN MIN MAX N" of the per-round ratios NUM / DEN, each taken from one measured
# round (round ≥ 1) that has both samples, or "- - - 0"
paired() {
    printf '%s' "$samples" | awk -F'\t' -v p="$1" -v a="$2" -v b="$3" '
        $1 == p && $3 >= 1 && $2 == a { x[$3] = $4 }
        $1 == p && $3 >= 1 && $2 == b { y[$3] = $4 }
        END {
            for (r in x) if ((r in y) && y[r] > 0) v[n++] = x[r] / y[r]
            if (n == 0) { print "- - - 0"; exit }
            for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
            printf "%.2f %.2f %.2f %d\n", (n % 2) ? v[int(n / 2)] : (v[n / 2 - 1] + v[n / 2]) / 2, v[0], v[n - 1], n }'
}

# ratio_row LABEL PHASE NUM DEN: the ratio of the medians, then the median, min and max of the per-round ratios
ratio_row() {
    local med lo hi n
    read -r med lo hi n < <(paired "$2" "$3" "$4")
    printf '| %s | %s | %s | %s | %s |\n' "$1" "$(ratio "$(median_of "$2" "$3")" "$(median_of "$2" "$4")")" \
        "$med" "$( ((n)) && echo "$lo–$hi" || echo -)" "$n"
}

# verdict_row TARGET PHASE NUM DEN LIMIT [WHY_NOT_MEASURED]: judged on the median of the per-round ratios
verdict_row() {
    local med lo hi n met
    if [[ -n "${6:-}" ]]; then
        printf '| %s | - | no: %s |\n' "$1" "$6"
        return 0
    fi
    read -r med lo hi n < <(paired "$2" "$3" "$4")
    if ((n == 0)); then
        if [[ -n "${failed["backup $3"]:-}${failed["$2 $3"]:-}" ]]; then
            printf '| %s | - | no: %s failed (its output is above) |\n' "$1" "$3"
        else
            printf '| %s | - | no: not measured |\n' "$1"
        fi
        return 0
    fi
    met=$(awk -v r="$med" -v l="$5" 'BEGIN { print (r <= l) ? "yes" : "no" }')
    printf '| %s | %s× (median of %d paired round%s, %s–%s) | %s |\n' "$1" "$med" "$n" "$( ((n == 1)) || echo s)" \
        "$lo" "$hi" "$met"
}

describe() { # (the text goes into a Markdown table: pipes escaped)
    case "$1" in
    a) printf 'busybox tar czf / tar xzf in a container (classic)' ;;
    b0) printf 'docker cp CTR:/data/. - > /dev/null (engine tar producer only)' ;;
    b0e) printf 'the same, CTR from an empty image (no /etc/passwd)' ;;
    b) printf '%s' 'docker cp \| zstd -T0 -3   /   zstd -dc \| docker cp -' ;;
    c) printf '%s' 'GNU tar \| zstd -T0 -3 in a container (fast-path reference)' ;;
    ours) printf 'docker persist backup / restore (plugin; this build has the universal path only)' ;;
    ours-universal) printf 'docker persist … --path universal (plugin)' ;;
    ours-fast) printf 'docker persist … --path fast (plugin; packs/unpacks in a helper container)' ;;
    ours-direct) printf 'docker-persist executable directly, universal path, under /usr/bin/time -v' ;;
    ours-l1) printf 'the same, --level 1' ;;
    ours-age) printf 'docker persist, encrypted with age (--encrypt-to / --identity)' ;;
    ours-universal-age) printf 'docker persist … --path universal, encrypted with age' ;;
    ours-fast-age) printf 'docker persist … --path fast, encrypted with age' ;;
    esac
}

report() {
    printf '\n## Results: medians of %d rounds (range, n), inputs warmed before timing\n\n' "$runs"
    printf '| phase | method | what | median s | range s (n) | stored MB | peak RSS MiB | CPU s |\n'
    printf '|---|---|---|---:|---:|---:|---:|---:|\n'
    local phase m med
    for phase in backup restore; do
        for m in a b0 b0e b c ours ours-universal ours-fast ours-direct ours-l1 ours-age ours-universal-age \
            ours-fast-age; do
            med=$(median_of "$phase" "$m")
            [[ "$med" == - ]] && continue
            printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$phase" "$m" "$(describe "$m")" "$(secs "$med")" \
                "$(range_of "$phase" "$m")" "$(mb "$(median_of "$phase" "$m" 7)")" \
                "$(mib "$(median_of "$phase" "$m" 6)")" "$(median_of "$phase" "$m" 8)"
        done
    done
    printf '\nNot timed: creating + removing the never-started container of (b)/(b'"'"'): median %ss.\n' \
        "$(median_of setup cp-container)"
    printf 'CPU s: user + sys of the docker-persist process, where /usr/bin/time -v runs it (ours-direct, ours-l1).\n'

    local u=$ours_u f=ours-fast
    printf '\n## Ratios: ours / reference, paired by round\n\n'
    printf '| ratio | of the medians | median per round | min–max per round | rounds |\n|---|---:|---:|---:|---:|\n'
    ratio_row "backup: $u / (b)" backup "$u" b
    ratio_row "restore: $u / (b')" restore "$u" b
    if ((fast_path)); then
        ratio_row "backup: $f / (c)" backup "$f" c
        ratio_row "restore: $f / (c')" restore "$f" c
    else
        ratio_row "backup: $u / (c) (what the fast path is to reach)" backup "$u" c
        ratio_row "restore: $u / (c')" restore "$u" c
    fi
    ratio_row "backup: (a) / $u, times faster than the classic method" backup a "$u"
    ratio_row "restore: (a') / $u" restore a "$u"
    if ((fast_path)); then
        ratio_row "backup: (a) / $f" backup a "$f"
        ratio_row "restore: (a') / $f" restore a "$f"
    fi
    ratio_row "backup: $u-age / $u (the cost of encryption)" backup "$u-age" "$u"
    ratio_row "restore: $u-age / $u" restore "$u-age" "$u"
    if ((fast_path)); then
        ratio_row "backup: $f-age / $f" backup "$f-age" "$f"
        ratio_row "restore: $f-age / $f" restore "$f-age" "$f"
    fi

    local no_fast=""
    ((fast_path)) || no_fast="the fast path is not available in this build"
    printf '\n## Verdict (on the median of the per-round ratios)\n\n| target | measured | met |\n|---|---|---|\n'
    verdict_row "universal path: backup ≤ 1.10 × (b)" backup "$u" b 1.10
    verdict_row "universal path: restore ≤ 1.10 × (b')" restore "$u" b 1.10
    verdict_row "fast path: backup ≤ 1.10 × (c)" backup "$f" c 1.10 "$no_fast"
    verdict_row "fast path: restore ≤ 1.00 × (c')" restore "$f" c 1.00 "$no_fast"
    verdict_row "encrypted, universal path: backup ≤ 1.10 × plain" backup "$u-age" "$u" 1.10
    verdict_row "encrypted, universal path: restore ≤ 1.10 × plain" restore "$u-age" "$u" 1.10
    verdict_row "encrypted, fast path: backup ≤ 1.10 × plain" backup "$f-age" "$f" 1.10 "$no_fast"
    verdict_row "encrypted, fast path: restore ≤ 1.10 × plain" restore "$f-age" "$f" 1.10 "$no_fast"
    local rss_max
    rss_max=$(printf '%s' "$samples" | awk -F'\t' '$6 != "-" && $6 > m { m = $6 } END { print m ? m : "-" }')
    if [[ "$rss_max" == - ]]; then
        printf '| peak RSS of docker-persist ≤ 64 MB | - | no: not measured |\n'
    else
        printf '| peak RSS of docker-persist ≤ 64 MB | %s MiB at most, warm-up included (median backup %s, restore %s; universal path) | %s |\n' \
            "$(mib "$rss_max")" "$(mib "$(median_of backup ours-direct 6)")" "$(mib "$(median_of restore ours-direct 6)")" \
            "$(awk -v k="$rss_max" 'BEGIN { print (k * 1024 <= 64e6) ? "yes" : "no" }')"
    fi
}

# ------------------------------------------------------------------------------------------------ main

while (($#)); do
    case "$1" in
    -n | --runs)
        [[ $# -ge 2 && "$2" =~ ^[1-9][0-9]*$ ]] || die "$1 needs a positive number"
        runs=$2
        shift 2
        ;;
    --no-build)
        build=0
        shift
        ;;
    --settle)
        [[ $# -ge 2 && "$2" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "$1 needs a number of seconds"
        settle_secs=$2
        shift 2
        ;;
    --results)
        [[ $# -ge 2 ]] || die "--results needs a file name"
        results=$2
        shift 2
        ;;
    --keep)
        keep=1
        shift
        ;;
    --only)
        [[ $# -ge 2 ]] || die "--only needs a comma-separated list of methods"
        only=",$2,"
        shift 2
        ;;
    --destinations)
        destinations=1
        shift
        ;;
    --clean)
        pin_endpoint
        clean_all
        exit 0
        ;;
    -h | --help)
        usage
        exit 0
        ;;
    *) die "unknown argument \`$1\` (see --help)" ;;
    esac
done

need_tools
pin_endpoint
trap cleanup EXIT
trap 'exit 130' INT TERM
work=$(mktemp -d "${TMPDIR:-/tmp}/persist-bench.XXXXXX")

if [[ -n "${PERSIST_BENCH_BIN:-}" ]]; then
    bin=$(realpath -- "$PERSIST_BENCH_BIN" 2>/dev/null) || die "PERSIST_BENCH_BIN=$PERSIST_BENCH_BIN does not exist"
    [[ -f "$bin" && -x "$bin" ]] || die "PERSIST_BENCH_BIN=$PERSIST_BENCH_BIN is not an executable file"
    build=0
    source_desc="PERSIST_BENCH_BIN, not built here"
    log "measuring PERSIST_BENCH_BIN=$bin (no build)"
else
    bin="$repo/target/release/docker-persist"
    if ((build)); then
        log "cargo build --release"
        (cd "$repo" && cargo build --release --quiet) || die "cargo build --release failed"
    fi
    [[ -x "$bin" ]] || die "$bin is missing; build it with \`cargo build --release\` or drop --no-build"
    source_desc="this repository at $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?')"
    ((build)) || source_desc+=", not rebuilt (--no-build)"
fi

# Which data paths this build has. With --path, ours runs once per path, and the fast path needs the
# executable to be static (its helper container runs it): build that one and measure it on both paths.
fast_path=0
bin_help=$("$bin" backup --help 2>&1) || die "\`$bin backup --help\` fails: $bin_help"
grep -q -- '--path' <<<"$bin_help" && fast_path=1
if ((fast_path)); then
    ours_methods=(ours-universal ours-fast)
    if [[ -z "${PERSIST_BENCH_BIN:-}" ]]; then
        host_triple=$(rustc -vV 2>/dev/null | sed -n 's/^host: //p')
        [[ -n "$host_triple" ]] || die "cannot tell the host target triple (\`rustc -vV\`)"
        static_bin="$repo/target/$host_triple/release/docker-persist"
        if ((build)); then
            log "this build has --path: cargo build --release --target $host_triple, static (for the fast path)"
            (cd "$repo" && RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --quiet \
                --target "$host_triple") || die "the static cargo build --release --target $host_triple failed"
        fi
        if [[ -x "$static_bin" ]]; then
            bin=$static_bin
        else
            log "warning: no static build at $static_bin (--no-build): ours-fast is likely to fail"
        fi
    fi
    bin_interp=$(readelf -l "$bin" 2>/dev/null || true)
    if grep -q 'program interpreter' <<<"$bin_interp"; then
        log "warning: $bin is dynamically linked, and the fast path needs a static executable: ours-fast is likely to fail"
    fi
    paths_desc="universal and fast (\`--path\`): ours-universal and ours-fast"
else
    ours_methods=(ours)
    paths_desc="universal only: the fast path is not available in this build (\`backup --help\` has no \`--path\`)"
fi
ours_u=${ours_methods[0]}
log "data paths: $paths_desc"
bin_version=$("$bin" --version 2>/dev/null || true)
bin_version=${bin_version%%$'\n'*}
bin_desc="$bin (${bin_version:-no --version}, sha256 $(sha256sum "$bin" | cut -c1-12); $source_desc)"

ensure_busybox
if ((!destinations)); then
    ensure_gnu_image
    ensure_empty_image
fi
ensure_ref_volume

# The engine must see this machine's files: (a) and (c) write into a bind-mounted directory.
mkdir -p "$work/probe"
docker run --rm --network none --label "$LABEL" -v "$work/probe:/probe" "$BUSYBOX" touch /probe/seen
[[ -e "$work/probe/seen" ]] || die "a bind mount of $work is not visible to the engine: the benchmark needs an engine on this machine"

mkdir -p "$work/project" "$work/config/cli-plugins"
ln -s "$bin" "$work/config/cli-plugins/docker-persist"
bench_compose "$REF_VOLUME" >"$work/project/compose.yaml"
persist_plugin --help >/dev/null 2>&1 || die "\`docker persist\` does not run through $work/config/cli-plugins"

restore_available=1
if ! persist_plugin restore --help >/dev/null 2>&1; then
    restore_available=0
    log "restore not available yet (\`docker persist restore --help\` fails): measuring the others' restores only"
fi

ref_fingerprint=$(tree_fingerprint "$REF_VOLUME")
log "reference: $ref_fingerprint"
mismatches=""
declare -A failed=() # "PHASE METHOD" of ours that failed, no longer measured

# The encrypted variants, to a key of this run's own (made by the build under test).
age_identity="$work/age-identity.txt"
"$bin" key init "$age_identity" >"$work/age-public.txt" 2>"$work/key-init.log" ||
    die "\`$bin key init\` failed: $(cat "$work/key-init.log")"
age_public=$(cat "$work/age-public.txt")
age_methods=()
for m in "${ours_methods[@]}"; do age_methods+=("$m-age"); done

backup_methods=(a b0 b0e b c "${ours_methods[@]}" "${age_methods[@]}" ours-direct ours-l1)
restore_methods=(a b c "${ours_methods[@]}" "${age_methods[@]}" ours-direct)
if [[ -n "$only" ]]; then
    keep_only() { local m; for m in "$@"; do [[ "$only" == *",$m,"* ]] && printf '%s\n' "$m"; done; return 0; }
    mapfile -t backup_methods < <(keep_only "${backup_methods[@]}")
    mapfile -t restore_methods < <(keep_only "${restore_methods[@]}")
    ((${#backup_methods[@]})) || die "--only $only names none of the methods"
    log "only: ${backup_methods[*]}"
fi
ext_loads=()
main_runs=$runs
if ((destinations)); then
    # shellcheck source=scripts/bench-destinations.sh
    source "$repo/scripts/bench-destinations.sh"
    dest_main
    main_runs=-1
fi
for ((round = 0; round <= main_runs; round++)); do
    mkdir -p "$work/out/$round"
    chmod 0777 "$work/out/$round"
    ext_loads+=("$(external_load)")
    log "round $round$( ((round == 0)) && echo ' (warm-up, not counted)'): busy CPUs outside the benchmark ${ext_loads[-1]} of $(nproc)"
    warm_volume "$REF_VOLUME"
    n=${#backup_methods[@]}
    for ((i = 0; i < n; i++)); do
        m=${backup_methods[$(((i + round) % n))]}
        [[ -z "${failed["backup $m"]:-}" ]] || continue
        backup_method "$m"
    done
    n=${#restore_methods[@]}
    for ((i = 0; i < n; i++)); do
        m=${restore_methods[$(((i + round) % n))]}
        if [[ "$m" == ours* ]] && { ((!restore_available)) || [[ -n "${failed["restore $m"]:-}" ]]; }; then
            continue
        fi
        restore_method "$m"
    done
    if ((round < runs)) || ((!keep)); then
        rm -rf "${work:?}/out/$round"
        settle
    fi
done

{
    printf '# docker-persist benchmark, %s\n\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    printf 'Machine: %s CPUs, %s MB RAM; engine %s, storage driver %s, kernel %s\n' \
        "$(nproc)" "$(awk '/MemTotal/ { printf "%d", $2 / 1024 }' /proc/meminfo)" \
        "$(docker version --format '{{.Server.Version}}')" "$(docker info --format '{{.Driver}}')" "$(uname -r)"
    printf 'docker-persist: %s\n' "$bin_desc"
    printf 'Data paths: %s\n' "$paths_desc"
    printf 'Reference volume: %s\n' "$ref_fingerprint"
    printf 'Noise: inputs read once before timing; sync and a %s s settle pause after each bulk delete\n' "$settle_secs"
    printf 'Load: busy CPUs outside the benchmark before each round: %s (of %s); 1-min load average at the start of the measurements: median %s\n' \
        "${ext_loads[*]}" "$(nproc)" "$(median_load)"
    if ((!restore_available)); then
        # shellcheck disable=SC2016 # backticks are Markdown here
        printf '\nrestore not available yet: `docker persist restore --help` fails, so ours is not measured for restore\n'
    fi
    if ((${#failed[@]})); then
        printf '\nFAILED (their output is above), not measured after that: %s\n' \
            "$(printf '%s\n' "${!failed[@]}" | sort | paste -sd, - | sed 's/,/, /g')"
    fi
    if [[ -n "$mismatches" ]]; then
        printf '\nWARNING: a restored tree differed from the reference (< reference, > restored):\n%s' "$mismatches"
    fi
    if ((destinations)); then
        dest_report
    else
        report
    fi
}

if [[ -n "$results" ]]; then
    {
        printf 'phase\tmethod\tround\tseconds\tload1\tmaxrss_kib\tbytes\tcpu_s\n'
        printf '%s' "$samples"
    } >"$results"
    log "samples written to $results"
fi
