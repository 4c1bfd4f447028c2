# service.sh — sourced by the start-*.sh scripts that run the test services
# (mailpit, versitygw, sshd + MariaDB) in the background. POSIX sh.
# The caller sets `me` (its name, for messages) first.

say() { echo "$me: $*" >&2; }

# gobin prints where `go install` puts binaries: $GOBIN, else $GOPATH/bin.
gobin() {
	d=$(go env GOBIN)
	[ -n "$d" ] || d=$(go env GOPATH)/bin
	echo "$d"
}

# find_bin NAME prints NAME's path on PATH, else where `go install` would
# put it (which may not exist yet).
find_bin() {
	command -v "$1" 2>/dev/null && return
	command -v go >/dev/null 2>&1 && echo "$(gobin)/$1"
}

# go_install NAME MODULE@VERSION WHAT_IT_TAKES: installs NAME when
# missing and prints its path.
go_install() {
	b=$(find_bin "$1" || true)
	if [ -n "$b" ] && [ -x "$b" ]; then
		echo "$b"
		return
	fi
	if ! command -v go >/dev/null 2>&1; then
		say "$1 is not installed and go is not on PATH"
		return 1
	fi
	say "installing $2 ($3)"
	go install "$2" >&2 || return 1
	echo "$(gobin)/$1"
}

# alive PIDFILE: the process it names runs.
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# stop_pid PIDFILE NAME SECONDS: stops the process, waits for it to exit.
stop_pid() {
	if alive "$1"; then
		pid=$(cat "$1")
		kill "$pid"
		i=0
		while kill -0 "$pid" 2>/dev/null; do
			i=$((i + 1))
			if [ $i -ge $(($3 * 5)) ]; then
				say "$2 (PID $pid) did not exit within $3s"
				return 1
			fi
			sleep 0.2
		done
		say "stopped $2 (PID $pid)"
	fi
	rm -f "$1"
}

# wait_ready READY_CMD PID SECONDS WHAT LOG: polls READY_CMD until it
# succeeds; fails, showing the log, when PID exits or time runs out.
wait_ready() {
	i=0
	until $1; do
		if ! kill -0 "$2" 2>/dev/null; then
			say "$4 exited; its log ($5):"
			tail -n 30 "$5" >&2 || true
			return 1
		fi
		i=$((i + 1))
		if [ $i -ge $(($3 * 5)) ]; then
			say "$4 did not answer within $3s; its log ($5):"
			tail -n 30 "$5" >&2 || true
			return 1
		fi
		sleep 0.2
	done
}
