# voltar — build, demo, tests. Run as root on Debian (loop devices, mounts).
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
BIN     := bin/voltar

.PHONY: all build deps test-deps services demo test test-unit test-lvm test-soak bench fuzz vet clean deb test-deb test-monitoring

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/voltar

# Debian packages voltar itself needs at run time.
deps:
	scripts/install-deps.sh runtime

# Everything the tests need: filesystem tools, GNU tar, UML with LVM.
test-deps:
	scripts/install-deps.sh test

demo: deps build
	scripts/demo.sh

vet:
	$(GO) vet ./...
	$(GO) vet -tags uml ./...

# Every test, with the real components. VOLTAR_TEST_REQUIRE_ALL=1 (set by CI)
# turns a missing component into a failure instead of a skip.
test: test-deps build vet services test-unit test-lvm test-deb

# Real servers the tests talk to, on 127.0.0.1: mailpit (SMTP + API), an
# sshd with a MariaDB behind it for the database dumps, versitygw (S3), and
# libvirtd for the libvirt domain tests (their guests run under QEMU TCG).
services:
	scripts/start-mailpit.sh
	scripts/start-sshd-mariadb.sh
	scripts/start-versitygw.sh
	scripts/start-libvirtd.sh

test-unit:
	$(GO) test -count=1 -timeout 20m ./...

test-lvm: test-deps
	scripts/test-lvm.sh

# The Debian package voltar_<version>_amd64.deb (packaging/nfpm.yaml; nfpm is
# pinned in go.mod's tool directive). About 10 s once the Go cache is warm.
deb:
	VERSION=$(VERSION) GO=$(GO) scripts/build-deb.sh

# Installs the package on this machine, checks it, runs the demo with it,
# removes and purges it (also on failure). 12-35 s after make deb.
test-deb: test-deps deb
	scripts/test-deb.sh

# The Prometheus rules (promtool test rules) and the Grafana dashboard
# against a real run's textfile; also part of test-unit. About 20 s.
test-monitoring: test-deps
	$(GO) test -count=1 -v ./test/monitoring

# Long soaks, not part of `make test` (about 17 minutes; README "Crash
# safety"): 50 runs of 40 image volumes backed up 4 at a time; 50 backups
# killed with SIGKILL at random moments for each of: image volumes to a
# local store, to a store that fills up, to an S3 server that is killed
# mid-upload too, qcow2 images with snapshot hooks, and LVM volumes in UML.
test-soak: test-deps build services
	VOLTAR_TEST_SOAK_RUNS=50 $(GO) test -count=1 -timeout 60m -v -run 'TestConcurrentVolumesOfOneRun' ./internal/backup/
	VOLTAR_TEST_SOAK_RUNS=50 $(GO) test -count=1 -timeout 60m -v ./test/soak/
	VOLTAR_TEST_SOAK_RUNS=50 TEST_RUN=Soak scripts/test-lvm.sh

# Slow benchmarks, not part of `make test`: voltar side by side with tar,
# pigz and zstd on a reproducible corpus (docs/performance.md), then the Go
# benchmarks. BENCH_SCALE=1 adds the 1M-file and 16 GiB scaling runs.
bench: test-deps build
	bench/run.sh
	$(GO) test -run '^$$' -bench . -benchmem ./internal/...

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzReadTable -fuzztime 60s ./internal/disk
	$(GO) test -run '^$$' -fuzz FuzzReadHeader -fuzztime 30s ./internal/volume/qcow2
	$(GO) test -run '^$$' -fuzz FuzzReadStream -fuzztime 60s ./internal/sandbox
	$(GO) test -run '^$$' -fuzz FuzzRead -fuzztime 30s ./internal/index
	$(GO) test -run '^$$' -fuzz FuzzParseFlat -fuzztime 30s ./internal/index

clean:
	rm -rf bin demo voltar_*_amd64.deb
