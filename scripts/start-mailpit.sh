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
me=start-mailpit
. "$(dirname "$0")/service.sh"
version=v1.33.1
smtp=${MAILPIT_SMTP:-127.0.0.1:1025}
http=${MAILPIT_HTTP:-127.0.0.1:8025}
dir=${MAILPIT_DIR:-/tmp/voltar-mailpit}
pidfile=$dir/mailpit.pid
log=$dir/mailpit.log

bin=$(find_bin mailpit || true)

ready() {
	[ -n "$bin" ] && [ -x "$bin" ] && "$bin" readyz --listen "$http" >/dev/null 2>&1
}

case "${1:-start}" in
status)
	ready
	exit
	;;
stop)
	stop_pid "$pidfile" mailpit 20
	exit
	;;
start) ;;
*)
	echo "usage: $0 [start|stop|status]" >&2
	exit 2
	;;
esac

bin=$(go_install mailpit "github.com/axllent/mailpit@$version" "takes a few minutes")

if ready; then
	exit 0
fi
if alive "$pidfile"; then
	say "PID $(cat "$pidfile") is alive but $http does not answer; see $log"
	exit 1
fi

mkdir -p "$dir"
# setsid: mailpit outlives this script and the shell or test that ran it.
setsid "$bin" --smtp "$smtp" --listen "$http" --disable-version-check \
	--smtp-auth-accept-any --smtp-auth-allow-insecure --smtp-disable-rdns \
	</dev/null >"$log" 2>&1 &
echo $! >"$pidfile"
wait_ready ready "$(cat "$pidfile")" 20 mailpit "$log" || {
	rm -f "$pidfile"
	exit 1
}
say "mailpit PID $(cat "$pidfile"): SMTP $smtp, API http://$http"
