#!/bin/sh
# Starts versitygw, the S3 server the S3 store tests talk to, in the background.
#   start-versitygw.sh          install versitygw if missing, start it, wait until it answers
#   start-versitygw.sh stop     stop the versitygw this script started (by its PID file)
#   start-versitygw.sh status   exit 0 when it answers
# Idempotent: when the address already answers, start does nothing.
# Environment (defaults in brackets):
#   VOLTAR_TEST_S3             listen address [127.0.0.1:7070]; the tests read the
#                              same variable, with the same default
#   VOLTAR_TEST_S3_ACCESS_KEY  root access key [voltar-test]
#   VOLTAR_TEST_S3_SECRET_KEY  root secret key [voltar-test-secret]
#   VERSITYGW_DIR              PID file, log and the posix backend's data under
#                              data/ (one directory per bucket) [/var/tmp/voltar-versitygw]
# versitygw is looked up on PATH, then in $(go env GOBIN) or $(go env GOPATH)/bin.
# Plain HTTP on loopback: a test server only. The tests create (and remove)
# their own buckets.
set -eu
me=start-versitygw
. "$(dirname "$0")/service.sh"
version=v1.8.0
addr=${VOLTAR_TEST_S3:-127.0.0.1:7070}
access=${VOLTAR_TEST_S3_ACCESS_KEY:-voltar-test}
secret=${VOLTAR_TEST_S3_SECRET_KEY:-voltar-test-secret}
dir=${VERSITYGW_DIR:-/var/tmp/voltar-versitygw}
pidfile=$dir/versitygw.pid
log=$dir/versitygw.log

# Any HTTP answer (an S3 error for the anonymous request included) means ready.
ready() {
	if command -v curl >/dev/null 2>&1; then
		curl -s -o /dev/null --max-time 2 "http://$addr/"
		return
	fi
	rc=0
	wget -q -O /dev/null -T 2 -t 1 "http://$addr/" 2>/dev/null || rc=$?
	[ $rc -eq 0 ] || [ $rc -eq 8 ] # 8: the server answered with an error status
}

case "${1:-start}" in
status)
	ready
	exit
	;;
stop)
	stop_pid "$pidfile" versitygw 20
	exit
	;;
start) ;;
*)
	echo "usage: $0 [start|stop|status]" >&2
	exit 2
	;;
esac

bin=$(go_install versitygw "github.com/versity/versitygw/cmd/versitygw@$version" "takes about 2 minutes")

if ready; then
	exit 0
fi
if alive "$pidfile"; then
	say "PID $(cat "$pidfile") is alive but $addr does not answer; see $log"
	exit 1
fi

# The posix backend keeps object metadata in extended attributes.
mkdir -p "$dir/data"
chmod 0700 "$dir"
# setsid: versitygw outlives this script and the shell or test that ran it.
# The keys are passed in the environment, not in argv (visible in ps).
ROOT_ACCESS_KEY_ID=$access ROOT_SECRET_ACCESS_KEY=$secret \
	setsid "$bin" --port "$addr" --quiet posix "$dir/data" \
	</dev/null >"$log" 2>&1 &
echo $! >"$pidfile"
wait_ready ready "$(cat "$pidfile")" 20 versitygw "$log" || {
	rm -f "$pidfile"
	exit 1
}
say "versitygw PID $(cat "$pidfile"): S3 at http://$addr, data in $dir/data"
