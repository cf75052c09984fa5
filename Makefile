# Sokoban: `make run` serves on the embedded default, `make test` installs what
# the tests need and runs them all. CI (.ci/run) calls `make test`.

GO       ?= go
BIN      ?= bin/sokoban
DATA     ?= ./data
LISTEN   ?= 127.0.0.1:2222
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
LINT     := $(shell $(GO) env GOPATH)/bin/golangci-lint
LINT_VERSION := v2.15.0

.PHONY: all build run deps test test-only lint vet bench fuzz clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/sokoban

# One node, all state under $(DATA), the example buildpack as the default.
run: build
	$(BIN) serve --data $(DATA) --listen $(LISTEN) --buildpacks ./examples/buildpacks/static

# Everything the tests need: Debian packages (git, OpenSSH client, redis-server,
# bubblewrap, slirp4netns and nftables for the build network, nsenter and ip
# for the network tests, systemd for systemd-analyze), Go modules, and
# SeaweedFS's weed, the S3 server with conditional writes the tests run
# (built once from the Go module proxy and cached, see .ci/seaweedfs).
deps:
	@missing=""; \
	for p in git:git ssh:openssh-client ssh-keygen:openssh-client redis-server:redis-server bwrap:bubblewrap \
		slirp4netns:slirp4netns nft:nftables nsenter:util-linux ip:iproute2 systemd-analyze:systemd; do \
		cmd=$${p%%:*}; pkg=$${p##*:}; \
		command -v $$cmd >/dev/null 2>&1 || test -x /usr/sbin/$$cmd || test -x /sbin/$$cmd || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi
	$(GO) mod download
	@./.ci/seaweedfs >/dev/null

test: deps test-only

test-only: vet
	$(GO) test -race -timeout 20m ./...

vet:
	$(GO) vet ./...

lint:
	@test -x $(LINT) || GOFLAGS= $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(LINT_VERSION)
	$(LINT) run ./...

# Pushes through Sokoban against the same pushes through plain OpenSSH +
# git receive-pack, alternating, in one run; prints both and their ratio.
# Needs root: it runs its own sshd with a dedicated git-shell user.
bench: deps
	@command -v /usr/sbin/sshd >/dev/null 2>&1 || { SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq openssh-server; }
	$(GO) test -run '^$$' -bench . -benchtime 10x -timeout 30m ./bench/

# Each parser of what a push sends (Procfile, .buildpacks, .slugignore,
# bin/release YAML) and the terminal filter fuzzed for FUZZTIME; what a fuzzer finds goes
# into the package's testdata/fuzz/ and then runs with every `go test`. Minimizing
# each new input (60s by default) took most of a short run, so it is off;
# add -parallel 1 to FUZZFLAGS on a shared machine.
FUZZTIME ?= 30s
FUZZFLAGS ?= -fuzzminimizetime 1x
FUZZ_TARGETS := buildpack:FuzzParseProcfile buildpack:FuzzReadBuildpacksFile buildpack:FuzzSlugignore \
	buildpack:FuzzParseRelease internal/termsafe:FuzzFilter

fuzz:
	@for pt in $(FUZZ_TARGETS); do \
		pkg=$${pt%%:*}; t=$${pt##*:}; \
		echo "fuzz: $$pkg $$t for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) $(FUZZFLAGS) ./$$pkg/ || exit 1; \
	done

clean:
	rm -rf bin
