#!/usr/bin/env bash
# A private Docker Engine that listens on TCP with mutual TLS, for tests of `docker persist` against a
# `tcp://` endpoint with `--tlsverify` (and of its errors when the certificates are wrong).
#
#   scripts/tls-dockerd.sh start   generate a CA, a server and a client certificate, start dockerd, wait
#                                  until it answers, print the environment to use (eval-able)
#   scripts/tls-dockerd.sh env     print that environment again
#   scripts/tls-dockerd.sh stop    stop the daemon and remove its directory (data, certificates, logs)
#
# Needs root (dockerd), `dockerd` and `openssl` on PATH. It never touches the system engine: the daemon has
# its own data root, exec root (and so its own containerd), pid file and unix socket, all under $DIR, a
# bridge of its own ($PERSIST_TLS_BRIDGE, default dptls0: `--bridge none` would delete the host's docker0)
# and no iptables rules.
#
# Settings (environment):
#   PERSIST_TLS_DIR      where everything lives (default: ${TMPDIR:-/tmp}/persist-tls-dockerd)
#   PERSIST_TLS_PORT     TCP port on 127.0.0.1 (default: 23760)
#   PERSIST_TLS_STORAGE  storage driver (default: vfs, which works on any filesystem)
#
# After `start`:
#   eval "$(scripts/tls-dockerd.sh env)"       # DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH
#   docker version                              # or: docker persist …
# or, with flags instead of the environment:
#   docker -H tcp://127.0.0.1:23760 --tlsverify --tlscacert $DIR/client/ca.pem \
#          --tlscert $DIR/client/cert.pem --tlskey $DIR/client/key.pem version
# $DIR/client-nocert/ holds only ca.pem, to check that a client without a certificate is refused.
set -euo pipefail

DIR=${PERSIST_TLS_DIR:-${TMPDIR:-/tmp}/persist-tls-dockerd}
PORT=${PERSIST_TLS_PORT:-23760}
STORAGE=${PERSIST_TLS_STORAGE:-vfs}
HOST="tcp://127.0.0.1:${PORT}"
BRIDGE=${PERSIST_TLS_BRIDGE:-dptls0}

die() {
	echo "tls-dockerd: $*" >&2
	exit 1
}

print_env() {
	[[ -f "$DIR/client/ca.pem" ]] || die "not started: no certificates in $DIR/client"
	echo "export DOCKER_HOST=$HOST"
	echo "export DOCKER_TLS_VERIFY=1"
	echo "export DOCKER_CERT_PATH=$DIR/client"
	echo "# flags instead: -H $HOST --tlsverify --tlscacert $DIR/client/ca.pem --tlscert $DIR/client/cert.pem --tlskey $DIR/client/key.pem"
	echo "# unix socket of the same daemon (no TLS): unix://$DIR/docker.sock"
}

gen_certs() {
	local c="$DIR/certs"
	mkdir -p "$c" "$DIR/client" "$DIR/client-nocert"
	# CA
	openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=docker-persist test CA" \
		-keyout "$c/ca-key.pem" -out "$c/ca.pem" 2>/dev/null
	# server: valid for 127.0.0.1 and localhost
	openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
		-keyout "$c/server-key.pem" -out "$c/server.csr" 2>/dev/null
	printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$c/server.ext"
	openssl x509 -req -in "$c/server.csr" -CA "$c/ca.pem" -CAkey "$c/ca-key.pem" -CAcreateserial \
		-days 2 -extfile "$c/server.ext" -out "$c/server-cert.pem" 2>/dev/null
	# client
	openssl req -newkey rsa:2048 -nodes -subj "/CN=client" \
		-keyout "$DIR/client/key.pem" -out "$c/client.csr" 2>/dev/null
	printf 'extendedKeyUsage=clientAuth\n' >"$c/client.ext"
	openssl x509 -req -in "$c/client.csr" -CA "$c/ca.pem" -CAkey "$c/ca-key.pem" -CAcreateserial \
		-days 2 -extfile "$c/client.ext" -out "$DIR/client/cert.pem" 2>/dev/null
	cp "$c/ca.pem" "$DIR/client/ca.pem"
	cp "$c/ca.pem" "$DIR/client-nocert/ca.pem"
	chmod 0600 "$c"/*key.pem "$DIR/client/key.pem"
}

start() {
	[[ $(id -u) -eq 0 ]] || die "must run as root (dockerd)"
	command -v dockerd >/dev/null || die "dockerd not found"
	command -v openssl >/dev/null || die "openssl not found"
	if [[ -f "$DIR/pid" ]] && kill -0 "$(cat "$DIR/pid")" 2>/dev/null; then
		print_env
		return
	fi
	mkdir -p "$DIR"
	touch "$DIR/.persist-tls-dockerd" # stop removes only a directory that carries this mark
	[[ -f "$DIR/client/ca.pem" ]] || gen_certs
	local c="$DIR/certs"
	# A bridge of its own: `--bridge none` would make dockerd delete the host engine's `docker0`.
	if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
		ip link add "$BRIDGE" type bridge
		ip addr add 198.18.254.1/24 dev "$BRIDGE"
		ip link set "$BRIDGE" up
	fi
	# its own (empty) daemon.json, so that /etc/docker/daemon.json cannot clash with the flags below
	echo '{}' >"$DIR/daemon.json"
	# The exec root holds containerd's unix sockets, whose paths must stay under 108 bytes: a short
	# directory of its own rather than one below $DIR, which may be deep (a test's temporary home).
	local exec_root
	exec_root=$(mktemp -d /tmp/dp-tls-exec.XXXXXX)
	echo "$exec_root" >"$DIR/exec-root"
	dockerd --config-file "$DIR/daemon.json" \
		--data-root "$DIR/data" --exec-root "$exec_root" --pidfile "$DIR/pid" \
		-H "$HOST" -H "unix://$DIR/docker.sock" \
		--tlsverify --tlscacert "$c/ca.pem" --tlscert "$c/server-cert.pem" --tlskey "$c/server-key.pem" \
		--bridge "$BRIDGE" --iptables=false --ip-masq=false --storage-driver "$STORAGE" \
		>"$DIR/dockerd.log" 2>&1 &
	local dpid=$! _
	for _ in $(seq 1 60); do
		kill -0 "$dpid" 2>/dev/null || break
		if docker -H "unix://$DIR/docker.sock" version >/dev/null 2>&1; then
			print_env
			return
		fi
		sleep 0.5
	done
	tail -n 20 "$DIR/dockerd.log" >&2 || true
	stop
	die "dockerd exited or did not answer within 30 s (log above)"
}

stop() {
	if [[ -f "$DIR/pid" ]]; then
		local pid
		pid=$(cat "$DIR/pid")
		if kill -0 "$pid" 2>/dev/null; then
			kill "$pid"
			local _
			for _ in $(seq 1 40); do
				kill -0 "$pid" 2>/dev/null || break
				sleep 0.25
			done
			kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
		fi
	fi
	ip link show "$BRIDGE" >/dev/null 2>&1 && ip link delete "$BRIDGE"
	# vfs leaves plain directories; a killed overlay daemon may leave mounts
	if [[ -f "$DIR/.persist-tls-dockerd" ]]; then
		local exec_root="" root
		[[ -f "$DIR/exec-root" ]] && exec_root=$(cat "$DIR/exec-root")
		for root in "$DIR" ${exec_root:+"$exec_root"}; do
			{ grep -o " $root/[^ ]*" /proc/mounts 2>/dev/null || true; } | sort -r | while read -r m; do
				umount "$m" 2>/dev/null || true
			done
		done
		[[ "$exec_root" == /tmp/dp-tls-exec.* ]] && rm -rf "$exec_root"
		rm -rf "$DIR"
	fi
}

case "${1:-}" in
start) start ;;
stop) stop ;;
env) print_env ;;
*)
	echo "usage: $0 start|env|stop" >&2
	exit 2
	;;
esac
