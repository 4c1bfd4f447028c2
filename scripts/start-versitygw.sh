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
version=v1.8.0
addr=${VOLTAR_TEST_S3:-127.0.0.1:7070}
access=${VOLTAR_TEST_S3_ACCESS_KEY:-voltar-test}
secret=${VOLTAR_TEST_S3_SECRET_KEY:-voltar-test-secret}
dir=${VERSITYGW_DIR:-/var/tmp/voltar-versitygw}
pidfile=$dir/versitygw.pid
log=$dir/versitygw.log

# Where `go install` puts binaries: $GOBIN, else $GOPATH/bin.
gobin() {
	d=$(go env GOBIN)
	[ -n "$d" ] || d=$(go env GOPATH)/bin
	echo "$d"
}

bin=$(command -v versitygw 2>/dev/null || true)
if [ -z "$bin" ] && command -v go >/dev/null 2>&1; then
	bin=$(gobin)/versitygw
fi

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
				echo "start-versitygw: PID $pid did not exit within 20s" >&2
				exit 1
			fi
			sleep 0.2
		done
		echo "start-versitygw: stopped PID $pid" >&2
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
		echo "start-versitygw: versitygw is not installed and go is not on PATH" >&2
		exit 1
	fi
	echo "start-versitygw: installing versitygw $version (takes about 2 minutes)" >&2
	go install "github.com/versity/versitygw/cmd/versitygw@$version"
	bin=$(gobin)/versitygw
fi

if ready; then
	exit 0
fi
if running; then
	echo "start-versitygw: PID $(cat "$pidfile") is alive but $addr does not answer; see $log" >&2
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

i=0
while ! ready; do
	if ! running; then
		echo "start-versitygw: versitygw exited; its log ($log):" >&2
		cat "$log" >&2
		rm -f "$pidfile"
		exit 1
	fi
	i=$((i + 1))
	if [ $i -ge 100 ]; then
		echo "start-versitygw: $addr did not answer within 20s; see $log" >&2
		exit 1
	fi
	sleep 0.2
done
echo "start-versitygw: versitygw PID $(cat "$pidfile"): S3 at http://$addr, data in $dir/data" >&2
