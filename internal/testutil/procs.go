package testutil

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// SandboxPIDs lists the User-Mode Linux processes (isolation: sandbox)
// below ancestor; direct: its children only, the sandboxes' main
// processes (the launcher is a child and execs UML).
func SandboxPIDs(ancestor int, direct bool) []int {
	depth := 50
	if direct {
		depth = 1
	}
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, de := range ents {
		pid, err := strconv.Atoi(de.Name())
		if err != nil {
			continue
		}
		if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); strings.HasSuffix(exe, "/linux.uml") && hasAncestor(pid, ancestor, depth) {
			out = append(out, pid)
		}
	}
	return out
}

// hasAncestor reports whether ancestor is among the depth nearest
// ancestors of pid.
func hasAncestor(pid, ancestor, depth int) bool {
	for i := 0; i < depth && pid > 1; i++ {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return false
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) < 2 {
			return false
		}
		pid, _ = strconv.Atoi(f[1])
		if pid == ancestor {
			return true
		}
	}
	return false
}
