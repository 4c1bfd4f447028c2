// Package lvm holds voltar's scenario tests against real LVM: thick and thin
// snapshots of volumes in use, partition tables and whole-volume
// filesystems, a vfat EFI system partition (the host kernel has no vfat),
// `voltar volumes`, snapshot-size preflight, COW overflow, and
// recovery after kill -9 and SIGTERM. They drive the voltar binary and check
// what it leaves: archives extracted with GNU tar, `lvs`, loop devices,
// mounts, exit codes and messages.
//
// The tests carry the build tag uml and run only inside the User-Mode Linux
// guest (the host kernel has no device-mapper, and the host's LVM must never
// be touched):
//
//	scripts/test-lvm.sh                                         # what make test-lvm runs
//	VOLTAR_BIN=$PWD/bin/voltar test/uml/go-test.sh ./test/lvm -test.v
//
// Without the tag this package is empty, so `go test ./...` and `go vet
// ./...` on the host pass over it.
package lvm
