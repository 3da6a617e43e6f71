# Destination rounds of the benchmark: sourced by scripts/bench.sh for `--destinations`, after its setup
# (the build under test, the reference volume, the project). Not run on its own.
#
# Servers, started here on free loopback ports and stopped at exit, as tests/e2e/destinations.rs starts them:
# `moto_server` (PyPI moto[server]) for S3, and OpenSSH's `sshd` with its own config, a throwaway host key and
# one throwaway client key, whose SFTP root is this machine's file system.
#
# One round, every step timed on its own, in an order rotated from round to round:
#   local        docker-persist backup ref (to the local directory only)
#   s3-copy      boto3's `upload_file` of that file (what `aws s3 cp` does: 8 MiB parts, 10 threads)
#   scp-copy     OpenSSH `scp` of that file to the sshd
#   ours-s3      docker-persist backup ref --to s3://…      (local file and upload in one pass)
#   ours-sftp    docker-persist backup ref --to sftp://…
#   push-s3      docker-persist push FILE --to s3://…       (the upload alone, against s3-copy)
#   push-sftp    docker-persist push FILE --to sftp://…     (against scp-copy)
# and two derived samples per round: two-step-s3 = local + s3-copy, two-step-sftp = local + scp-copy.
# Ours run directly under /usr/bin/time -v (peak RSS, CPU time). Once, before the rounds, 50 small backups
# of the project are put in a bucket and in an SFTP directory, and each round times `backups --from` there
# (list-s3, list-sftp).
# Targets: ours-s3 ≤ two-step-s3, ours-sftp ≤ two-step-sftp, peak RSS ≤ 64 MB.

DEST_BUCKET=bench
S3_KEY_ID=AKIAPERSISTBENCH
S3_SECRET=persist-bench-secret
dest_pids=()

dest_cleanup() {
    local p
    for p in "${dest_pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${dest_pids[@]}"; do wait "$p" 2>/dev/null || true; done
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() { # PORT PID WHAT
    local i
    for ((i = 0; i < 300; i++)); do
        (: </dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
        kill -0 "$2" 2>/dev/null || die "$3 exited before listening"
        sleep 0.1
    done
    die "$3 did not listen on $1"
}

boto() { # CODE: runs with `s3` the client and `B` the bucket
    python3 - "$s3_endpoint" "$DEST_BUCKET" "$S3_KEY_ID" "$S3_SECRET" <<EOF
import sys, boto3
from boto3.s3.transfer import TransferConfig
s3 = boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', aws_access_key_id=sys.argv[3],
                  aws_secret_access_key=sys.argv[4])
B = sys.argv[2]
$1
EOF
}

start_s3() {
    command -v moto_server >/dev/null || die "--destinations needs moto_server (pip install 'moto[server]')"
    local port
    port=$(free_port)
    moto_server -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
    dest_pids+=($!)
    wait_port "$port" "$!" moto_server
    s3_endpoint="http://127.0.0.1:$port"
    boto "s3.create_bucket(Bucket=B)"
}

start_sshd() {
    local d="$work/sshd" port sshd
    sshd=$(command -v sshd || echo /usr/sbin/sshd)
    [[ -x "$sshd" ]] || die "--destinations needs sshd (Debian openssh-server)"
    mkdir -p "$d" /run/sshd
    ssh-keygen -q -t ed25519 -N '' -f "$d/host_key"
    ssh-keygen -q -t ed25519 -N '' -f "$d/client_key"
    cp "$d/client_key.pub" "$d/authorized_keys"
    port=$(free_port)
    cat >"$d/sshd_config" <<EOF
Port $port
ListenAddress 127.0.0.1
HostKey $d/host_key
AuthorizedKeysFile $d/authorized_keys
PidFile $d/sshd.pid
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
Subsystem sftp internal-sftp
EOF
    "$sshd" -D -e -f "$d/sshd_config" 2>"$work/sshd.log" &
    dest_pids+=($!)
    wait_port "$port" "$!" sshd
    printf '[127.0.0.1]:%s %s\n' "$port" "$(cat "$d/host_key.pub")" >"$d/known_hosts"
    ssh_opts=(-F none -o "UserKnownHostsFile=$d/known_hosts" -o StrictHostKeyChecking=yes
        -o "IdentityFile=$d/client_key" -o IdentitiesOnly=yes -o BatchMode=yes)
    ssh_port=$port
    ssh_user=$(id -un)
    export DOCKER_PERSIST_SSH="ssh ${ssh_opts[*]}"
}

s3_url() { printf 's3://%s/%s?endpoint=%s&region=us-east-1' "$DEST_BUCKET" "$1" "$s3_endpoint"; }
sftp_url() { printf 'sftp://%s@127.0.0.1:%s%s' "$ssh_user" "$ssh_port" "$1"; }

# Ours with the S3 keys in the environment (never on a command line).
ours_dest() { AWS_ACCESS_KEY_ID=$S3_KEY_ID AWS_SECRET_ACCESS_KEY=$S3_SECRET persist_direct "$@"; }

dest_step() {
    local m=$1 out="$work/out/$round" local_file
    local_file=$(cat "$out/local.path" 2>/dev/null || true)
    case "$m" in
    local | ours-s3 | ours-sftp)
        local to=()
        if [[ "$m" == ours-s3 ]]; then
            to=(--to "$(s3_url "r$round")")
        elif [[ "$m" == ours-sftp ]]; then
            to=(--to "$(sftp_url "$work/sftp/r$round/ours")")
        fi
        start_timer
        if ! ours_dest -q backup ref --dir "$out/$m" "${to[@]}" >"$work/dest.out" 2>"$work/dest.log"; then
            ours_failed backup "$m" "$work/dest.log"
            return 0
        fi
        local path
        path=$(tail -n 1 "$work/dest.out")
        stop_timer_direct dest "$m" "$round" "$(file_size "$path")"
        if [[ "$m" == local ]]; then printf '%s\n' "$path" >"$out/local.path"; fi
        ;;
    s3-copy)
        [[ -n "$local_file" ]] || return 0
        start_timer
        boto "s3.upload_file('$local_file', B, 'r$round/copy/$(basename "$local_file")', Config=TransferConfig())"
        stop_timer dest s3-copy "$round"
        ;;
    scp-copy)
        [[ -n "$local_file" ]] || return 0
        mkdir -p "$work/sftp/r$round/copy"
        start_timer
        scp -q "${ssh_opts[@]}" -P "$ssh_port" "$local_file" "$ssh_user@127.0.0.1:$work/sftp/r$round/copy/"
        stop_timer dest scp-copy "$round"
        ;;
    push-s3 | push-sftp)
        [[ -n "$local_file" ]] || return 0
        local url
        if [[ "$m" == push-sftp ]]; then
            url=$(sftp_url "$work/sftp/r$round/push")
        else
            url=$(s3_url "r$round/push")
        fi
        start_timer
        if ! ours_dest -q push "$local_file" --to "$url" >"$work/dest.log" 2>&1; then
            ours_failed dest "$m" "$work/dest.log"
            return 0
        fi
        stop_timer_direct dest "$m" "$round"
        ;;
    list-s3 | list-sftp)
        local url n
        if [[ "$m" == list-sftp ]]; then
            url=$(sftp_url "$work/sftp/list")
        else
            url=$(s3_url list)
        fi
        start_timer
        if ! ours_dest backups --from "$url" --json >"$work/list.json" 2>"$work/dest.log"; then
            ours_failed dest "$m" "$work/dest.log"
            return 0
        fi
        stop_timer_direct dest "$m" "$round"
        n=$(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["backups"]))' "$work/list.json")
        if ((n != 50)); then log "warning: $m listed $n backups, not 50"; fi
        ;;
    esac
}

# A round's copies are removed before the next round (moto keeps objects in memory).
dest_clear_round() {
    boto "
for o in s3.list_objects_v2(Bucket=B, Prefix='r$round/').get('Contents', []):
    s3.delete_object(Bucket=B, Key=o['Key'])
for u in s3.list_multipart_uploads(Bucket=B).get('Uploads', []):
    print('open multipart upload left:', u['Key'])"
    rm -rf "${work:?}/sftp/r$round"
}

# 50 backups of the project (a small volume's, copied under 50 names) in the bucket and on the sshd.
dest_fill_listing() {
    local vol="persist-bench-$RUN_ID-small" small i name
    docker volume create --label "$LABEL" "$vol" >/dev/null
    docker run --rm --network none --label "$LABEL" -v "$vol:/data" "$BUSYBOX" \
        sh -c 'for i in $(seq 1 20); do head -c 3000 /dev/urandom > /data/f$i; done'
    mkdir -p "$work/small"
    bench_compose "$vol" >"$work/small/compose.yaml"
    "$bin" -f "$work/small/compose.yaml" -q backup ref --dir "$work/small/backups" >"$work/small.out" ||
        die "the small backup for the listing failed"
    small=$(tail -n 1 "$work/small.out")
    docker volume rm -f "$vol" >/dev/null
    mkdir -p "$work/sftp/list"
    for ((i = 0; i < 50; i++)); do
        name=$(printf '%s-202601%02dT%02d0000Z.tar' "$PROJECT" $((i / 24 + 1)) $((i % 24)))
        cp "$small" "$work/sftp/list/$name"
        printf '%s\n' "$name"
    done >"$work/list-names.txt"
    boto "
for n in open('$work/list-names.txt').read().split():
    s3.upload_file('$work/sftp/list/' + n, B, 'list/' + n)"
}

dest_report() {
    printf '\n## Destinations: medians of %d rounds (range, n)\n\n' "$runs"
    printf '| step | median s | range s (n) | peak RSS MiB | CPU s |\n|---|---:|---:|---:|---:|\n'
    local m
    for m in local s3-copy scp-copy two-step-s3 two-step-sftp ours-s3 ours-sftp push-s3 push-sftp list-s3 \
        list-sftp; do
        [[ "$(median_of dest "$m")" == - ]] && continue
        printf '| %s | %s | %s | %s | %s |\n' "$m" "$(secs "$(median_of dest "$m")")" "$(range_of dest "$m")" \
            "$(mib "$(median_of dest "$m" 6)")" "$(median_of dest "$m" 8)"
    done
    printf '\n| ratio | of the medians | median per round | min–max per round | rounds |\n|---|---:|---:|---:|---:|\n'
    ratio_row "backup --to S3 / (backup + boto3 upload_file)" dest ours-s3 two-step-s3
    ratio_row "backup --to SFTP / (backup + scp)" dest ours-sftp two-step-sftp
    ratio_row "backup --to S3 / backup alone" dest ours-s3 local
    ratio_row "backup --to SFTP / backup alone" dest ours-sftp local
    ratio_row "push to S3 / boto3 upload_file" dest push-s3 s3-copy
    ratio_row "push to SFTP / scp" dest push-sftp scp-copy
    printf '\n| target | measured | met |\n|---|---|---|\n'
    verdict_row "backup --to S3 ≤ 1.00 × (backup, then upload_file)" dest ours-s3 two-step-s3 1.00
    verdict_row "backup --to SFTP ≤ 1.00 × (backup, then scp)" dest ours-sftp two-step-sftp 1.00
    local rss_max
    rss_max=$(printf '%s' "$samples" | awk -F'\t' '$1 == "dest" && $6 != "-" && $6 > m { m = $6 } END { print m ? m : "-" }')
    printf '| peak RSS of docker-persist ≤ 64 MB | %s MiB at most | %s |\n' "$(mib "$rss_max")" \
        "$(awk -v k="$rss_max" 'BEGIN { print (k != "-" && k * 1024 <= 64e6) ? "yes" : "no" }')"
}

dest_main() {
    start_s3
    start_sshd
    log "S3 at $s3_endpoint (moto_server), SFTP at 127.0.0.1:$ssh_port (sshd)"
    dest_fill_listing
    local methods=(local s3-copy scp-copy ours-s3 ours-sftp push-s3 push-sftp list-s3 list-sftp) n i m
    for ((round = 0; round <= runs; round++)); do
        mkdir -p "$work/out/$round"
        ext_loads+=("$(external_load)")
        log "round $round$( ((round == 0)) && echo ' (warm-up, not counted)'): busy CPUs outside the benchmark ${ext_loads[-1]} of $(nproc)"
        warm_volume "$REF_VOLUME"
        # The copies need the local file: `local` first, the rest rotated.
        dest_step local
        n=$((${#methods[@]} - 1))
        for ((i = 0; i < n; i++)); do
            m=${methods[$((1 + (i + round) % n))]}
            [[ -z "${failed["backup $m"]:-}${failed["dest $m"]:-}" ]] || continue
            dest_step "$m"
        done
        samples+=$(printf '%s' "$samples" | awk -F'\t' -v r="$round" '
            $1 == "dest" && $3 == r { t[$2] = $4; l = $5 }
            END {
                if (("local" in t) && ("s3-copy" in t)) printf "dest\ttwo-step-s3\t%s\t%.3f\t%s\t-\t-\t-\n", r, t["local"] + t["s3-copy"], l
                if (("local" in t) && ("scp-copy" in t)) printf "dest\ttwo-step-sftp\t%s\t%.3f\t%s\t-\t-\t-\n", r, t["local"] + t["scp-copy"], l
            }')$'\n'
        dest_clear_round
        rm -rf "${work:?}/out/$round"
        settle
    done
}
