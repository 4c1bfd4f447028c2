#!/bin/sh
# Starts the sshd and MariaDB that the database-dump tests talk to, on 127.0.0.1.
#   start-sshd-mariadb.sh          install what is missing, start both, wait until they answer
#   start-sshd-mariadb.sh stop     stop what this script started (by its PID files)
#   start-sshd-mariadb.sh status   exit 0 when both answer
# Idempotent: when both answer, start only re-checks the test user and files.
# No service starts by itself (no systemd): both run in the background under
# setsid, with their own configuration, keys and data under one state dir.
# Environment (defaults in brackets):
#   VOLTAR_TEST_SSHD_MARIADB  state dir [/tmp/voltar-sshd-mariadb]; the tests
#                             read the same variable, with the same default
#   SSHD_PORT [2222]   MARIADB_PORT [3307]
# What the state dir holds for the tests:
#   client_key            unencrypted ed25519 key that logs in as root
#   known_hosts           "[127.0.0.1]:PORT <host key>"
#   other_host_key.pub    a key that is not the server's (wrong-key tests)
#   my.cnf                [client] user, password, socket: the dump's credentials
#   password              the test user's password alone
#   run/mysqld.sock       MariaDB's socket (root logs in through it, unix_socket auth)
#   env                   VOLTAR_TEST_SSHD_MARIADB=...; SSH and MariaDB addresses
set -eu
me=start-sshd-mariadb
. "$(dirname "$0")/service.sh"
dir=${VOLTAR_TEST_SSHD_MARIADB:-/tmp/voltar-sshd-mariadb}
sshd_port=${SSHD_PORT:-2222}
db_port=${MARIADB_PORT:-3307}
sshd_pid=$dir/sshd.pid
run=$dir/run # MariaDB runs as mysql: its socket and PID file live here
db_pid=$run/mariadbd.pid
sock=$run/mysqld.sock
data=$dir/data
user=voltar_test

sshd_ready() {
	alive "$sshd_pid" && [ -f "$dir/known_hosts" ] &&
		ssh-keyscan -T 2 -p "$sshd_port" -t ed25519 127.0.0.1 2>/dev/null | grep -q ssh-ed25519
}

db_ready() {
	alive "$db_pid" && mariadb-admin --no-defaults --socket="$sock" -u root ping >/dev/null 2>&1
}

case "${1:-start}" in
status)
	sshd_ready && db_ready
	exit
	;;
stop)
	rc=0
	stop_pid "$sshd_pid" sshd 30 || rc=1
	stop_pid "$db_pid" mariadbd 30 || rc=1
	exit $rc
	;;
start) ;;
*)
	echo "usage: $0 [start|stop|status]" >&2
	exit 2
	;;
esac

if [ ! -x /usr/sbin/sshd ] || ! command -v mariadbd >/dev/null 2>&1 ||
	! command -v mysqldump >/dev/null 2>&1 || ! command -v ssh-keyscan >/dev/null 2>&1; then
	say "installing openssh-server and mariadb-server"
	# The packages' scripts would start the services (and MariaDB on its
	# default socket); a policy-rc.d that says no stops them, removed again
	# unless one was there before.
	policy=/usr/sbin/policy-rc.d
	if [ ! -e $policy ]; then
		printf '#!/bin/sh\nexit 101\n' >$policy
		chmod 0755 $policy
		trap 'rm -f $policy' EXIT
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends openssh-server openssh-client mariadb-server mariadb-client >/dev/null
fi

mkdir -p "$dir"
chmod 0755 "$dir"

# --- sshd: its own host key, config and authorized key -----------------------
[ -f "$dir/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -C voltar-test-host -f "$dir/ssh_host_ed25519_key"
[ -f "$dir/client_key" ] || ssh-keygen -q -t ed25519 -N '' -C voltar-test-client -f "$dir/client_key"
[ -f "$dir/other_host_key" ] || ssh-keygen -q -t ed25519 -N '' -C voltar-test-other -f "$dir/other_host_key"
cp "$dir/client_key.pub" "$dir/authorized_keys"
chmod 0600 "$dir/client_key" "$dir/authorized_keys"
printf '[127.0.0.1]:%s %s\n' "$sshd_port" "$(cut -d' ' -f1,2 "$dir/ssh_host_ed25519_key.pub")" >"$dir/known_hosts"
cat >"$dir/sshd_config" <<EOF
Port $sshd_port
ListenAddress 127.0.0.1
HostKey $dir/ssh_host_ed25519_key
PidFile $sshd_pid
AuthorizedKeysFile $dir/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
X11Forwarding no
AllowTcpForwarding no
PrintMotd no
LogLevel VERBOSE
Subsystem sftp internal-sftp
EOF

if ! sshd_ready; then
	stop_pid "$sshd_pid" sshd 30 || true
	mkdir -p /run/sshd
	chmod 0755 /run/sshd
	/usr/sbin/sshd -t -f "$dir/sshd_config"
	# -E: log to a file; sshd daemonizes itself and writes its PID file.
	setsid /usr/sbin/sshd -f "$dir/sshd_config" -E "$dir/sshd.log" </dev/null
	i=0
	until sshd_ready; do
		i=$((i + 1))
		if [ $i -ge 100 ]; then
			say "sshd did not answer on 127.0.0.1:$sshd_port within 20s; its log ($dir/sshd.log):"
			tail -n 30 "$dir/sshd.log" >&2 || true
			exit 1
		fi
		sleep 0.2
	done
fi

# --- MariaDB: its own data dir, socket and port -------------------------------
if ! db_ready; then
	stop_pid "$db_pid" mariadbd 30 || true
	if [ ! -d "$data/mysql" ]; then
		rm -rf "$data"
		mkdir -p "$data"
		chown mysql:mysql "$data"
		mariadb-install-db --no-defaults --user=mysql --datadir="$data" --auth-root-authentication-method=socket \
			>"$dir/install-db.log" 2>&1 || {
			say "mariadb-install-db failed; its log ($dir/install-db.log):"
			tail -n 30 "$dir/install-db.log" >&2
			exit 1
		}
	fi
	mkdir -p "$run"
	chown mysql:mysql "$run"
	touch "$dir/mariadbd.log"
	chown mysql:mysql "$dir/mariadbd.log"
	setsid mariadbd --no-defaults --user=mysql --datadir="$data" --socket="$sock" --port="$db_port" \
		--bind-address=127.0.0.1 --skip-name-resolve --pid-file="$db_pid" --log-error="$dir/mariadbd.log" \
		</dev/null >/dev/null 2>&1 &
	wait_ready db_ready $! 60 mariadbd "$dir/mariadbd.log" || exit 1
fi

# --- the test user; its password only ever goes through stdin and files ------
if [ ! -s "$dir/password" ]; then
	umask 077
	printf 'vtpw-%s\n' "$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')" >"$dir/password.tmp"
	mv "$dir/password.tmp" "$dir/password"
	umask 022
fi
pw=$(cat "$dir/password")
mariadb --no-defaults --socket="$sock" -u root <<EOF
CREATE USER IF NOT EXISTS '$user'@'localhost' IDENTIFIED BY '$pw';
ALTER USER '$user'@'localhost' IDENTIFIED BY '$pw';
CREATE USER IF NOT EXISTS '$user'@'127.0.0.1' IDENTIFIED BY '$pw';
ALTER USER '$user'@'127.0.0.1' IDENTIFIED BY '$pw';
GRANT ALL PRIVILEGES ON *.* TO '$user'@'localhost';
GRANT ALL PRIVILEGES ON *.* TO '$user'@'127.0.0.1';
EOF
(
	umask 077
	cat >"$dir/my.cnf" <<EOF
[client]
user=$user
password=$pw
socket=$sock
EOF
)
cat >"$dir/env" <<EOF
VOLTAR_TEST_SSHD_MARIADB=$dir
VOLTAR_TEST_SSHD=127.0.0.1:$sshd_port
VOLTAR_TEST_MARIADB_SOCKET=$sock
VOLTAR_TEST_MARIADB_PORT=$db_port
EOF
say "sshd PID $(cat "$sshd_pid") on 127.0.0.1:$sshd_port, MariaDB PID $(cat "$db_pid") on $sock and 127.0.0.1:$db_port"
cat "$dir/env"
