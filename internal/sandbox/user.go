package sandbox

import (
	"context"
	"fmt"
	"os/exec"
	"os/user"
	"strconv"
	"sync"
	"time"

	"voltar/internal/fail"
)

// DefaultUser is the host account sandboxes run as. The Debian package's
// postinst creates it; voltar creates it itself when it is missing (a
// binary installed by hand).
//
// A named system account rather than a bare uid that /etc/passwd does not
// know: a uid nobody allocated can still be handed out later (by useradd,
// a container's subordinate range, an NFS mapping) to something that would
// then share the sandbox's processes and files; an account reserves it and
// shows in ps and audit logs what the process is. Not nobody: nobody is
// shared with NFS squashing and other daemons, whose processes a
// compromised sandbox could signal.
const DefaultUser = "voltar-sandbox"

var userMu sync.Mutex

// User returns the uid and gid of the account name, creating it as a
// system account without a home or a shell when it does not exist. It
// refuses root.
func User(name string) (uid, gid int, err error) {
	userMu.Lock()
	defer userMu.Unlock()
	u, err := user.Lookup(name)
	if _, unknown := err.(user.UnknownUserError); unknown {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, cerr := exec.CommandContext(ctx, "useradd", "--system", "--user-group", "--no-create-home",
			"--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", "--comment", "voltar sandbox", name).CombinedOutput()
		if cerr != nil {
			return 0, 0, fail.Hint(fmt.Errorf("sandbox: create user %s: %v: %s", name, cerr, out),
				"create it by hand: useradd --system --user-group --no-create-home --shell /usr/sbin/nologin %s", name)
		}
		u, err = user.Lookup(name)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("sandbox: user %s: %w", name, err)
	}
	uid, err = strconv.Atoi(u.Uid)
	if err != nil {
		return 0, 0, fmt.Errorf("sandbox: user %s: uid %q", name, u.Uid)
	}
	gid, err = strconv.Atoi(u.Gid)
	if err != nil {
		return 0, 0, fmt.Errorf("sandbox: user %s: gid %q", name, u.Gid)
	}
	if uid == 0 || gid == 0 {
		return 0, 0, fmt.Errorf("sandbox: user %s has uid %d, gid %d: the sandbox never runs as root", name, uid, gid)
	}
	return uid, gid, nil
}
