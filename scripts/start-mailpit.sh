#!/bin/sh
# Starts mailpit, the SMTP server the report tests deliver to, in the background.
#   start-mailpit.sh          install mailpit if missing, start it, wait until its API answers
#   start-mailpit.sh stop     stop the mailpit this script started (by its PID file)
#   start-mailpit.sh status   exit 0 when the API answers
# Idempotent: when the API already answers, start does nothing.
# Environment (defaults in brackets):
#   MAILPIT_SMTP  SMTP address [127.0.0.1:1025]
#   MAILPIT_HTTP  HTTP API address [127.0.0.1:8025]; tests read VOLTAR_TEST_MAILPIT
#   MAILPIT_DIR   PID file and log [/tmp/voltar-mailpit]
# mailpit is looked up on PATH, then in $(go env GOBIN) or $(go env GOPATH)/bin.
# Mailpit runs without TLS and accepts any SMTP user and password, also over
# plain text: a test server on loopback only.
set -eu
version=v1.33.1
smtp=${MAILPIT_SMTP:-127.0.0.1:1025}
http=${MAILPIT_HTTP:-127.0.0.1:8025}
dir=${MAILPIT_DIR:-/tmp/voltar-mailpit}
pidfile=$dir/mailpit.pid
log=$dir/mailpit.log

# Where `go install` puts binaries: $GOBIN, else $GOPATH/bin.
gobin() {
	d=$(go env GOBIN)
	[ -n "$d" ] || d=$(go env GOPATH)/bin
	echo "$d"
}

bin=$(command -v mailpit 2>/dev/null || true)
if [ -z "$bin" ] && command -v go >/dev/null 2>&1; then
	bin=$(gobin)/mailpit
fi

ready() {
	[ -n "$bin" ] && [ -x "$bin" ] && "$bin" readyz --listen "$http" >/dev/null 2>&1
}

running() {
	[ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

case "${1:-start}" in
status)
	ready
	exit
	;;
stop)
	if running; then
		pid=$(cat "$pidfile")
		kill "$pid"
		i=0
		while kill -0 "$pid" 2>/dev/null; do
			i=$((i + 1))
			if [ $i -ge 100 ]; then
				echo "start-mailpit: PID $pid did not exit within 20s" >&2
				exit 1
			fi
			sleep 0.2
		done
		echo "start-mailpit: stopped PID $pid" >&2
	fi
	rm -f "$pidfile"
	exit 0
	;;
start) ;;
*)
	echo "usage: $0 [start|stop|status]" >&2
	exit 2
	;;
esac

if [ -z "$bin" ] || [ ! -x "$bin" ]; then
	if ! command -v go >/dev/null 2>&1; then
		echo "start-mailpit: mailpit is not installed and go is not on PATH" >&2
		exit 1
	fi
	echo "start-mailpit: installing mailpit $version (takes a few minutes)" >&2
	go install "github.com/axllent/mailpit@$version"
	bin=$(gobin)/mailpit
fi

if ready; then
	exit 0
fi
if running; then
	echo "start-mailpit: PID $(cat "$pidfile") is alive but $http does not answer; see $log" >&2
	exit 1
fi

mkdir -p "$dir"
# setsid: mailpit outlives this script and the shell or test that ran it.
setsid "$bin" --smtp "$smtp" --listen "$http" --disable-version-check \
	--smtp-auth-accept-any --smtp-auth-allow-insecure --smtp-disable-rdns \
	</dev/null >"$log" 2>&1 &
echo $! >"$pidfile"

i=0
while ! ready; do
	if ! running; then
		echo "start-mailpit: mailpit exited; its log ($log):" >&2
		cat "$log" >&2
		rm -f "$pidfile"
		exit 1
	fi
	i=$((i + 1))
	if [ $i -ge 100 ]; then
		echo "start-mailpit: $http did not answer within 20s; see $log" >&2
		exit 1
	fi
	sleep 0.2
done
echo "start-mailpit: mailpit PID $(cat "$pidfile"): SMTP $smtp, API http://$http" >&2
