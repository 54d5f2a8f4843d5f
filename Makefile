# crimux — one CRI endpoint, several isolation levels.
#
#   make up      install what is missing, start containerd if needed, run crimux
#   make test    every test: unit tests and integration tests with real containers
#   make down    stop the crimux that `make up` started
#
SHELL        := /bin/bash
GO           ?= go
PREFIX       ?= /usr/local
BIN_DIR      ?= $(PREFIX)/bin
OUT          := _output/bin
CONTAINERD_VERSION ?= v2.4.2
CRI_TOOLS_VERSION  ?= v1.37.0
RUNC_VERSION       ?= v1.2.6
GVISOR_VERSION     ?= v0.0.0-20260905035102-160fafc42237
K8S_VERSION        ?= v1.37.2
ETCD_VERSION       ?= v3.7.3
# Built from source once and kept outside the checkout (make clean keeps it).
E2E_CACHE          ?= /var/cache/crimux/e2e
HANDLERS           ?= runc gvisor
CRIMUX_SOCKET ?= /run/crimux/crimux.sock
LOG_DIR      ?= /var/log/crimux
VERSION      ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS      := -X github.com/crimux/crimux/router.Commit=$(VERSION)

.PHONY: all build deps packages runc containerd crictl gvisor critest-bin critest critest-bench install up down test unit fuzz integration integration-race soak e2e e2e-bin node-e2e node-e2e-bin bench bench-smoke bench-micro vet fmt clean demo-registry

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(OUT)/crimux ./cmd/crimux
	CGO_ENABLED=0 $(GO) build -ldflags "-s -w" -o $(OUT)/crimux-pause ./cmd/crimux-pause
	$(GO) build -o $(OUT)/crimux-testregistry ./test/cmd/crimux-testregistry

# Everything crimux and its tests need from outside the repo.
deps: packages runc containerd crictl gvisor

packages:
	@bash hack/install-packages.sh

runc:
	@bash hack/install-runc.sh $(RUNC_VERSION) $(BIN_DIR)

containerd:
	@bash hack/install-containerd.sh $(CONTAINERD_VERSION) $(BIN_DIR)

crictl:
	@bash hack/install-crictl.sh $(CRI_TOOLS_VERSION) $(BIN_DIR)

gvisor:
	@bash hack/install-gvisor.sh $(GVISOR_VERSION) $(BIN_DIR)

critest-bin:
	@bash hack/install-critest.sh $(CRI_TOOLS_VERSION) $(BIN_DIR)

# The CRI validation suite against a crimux of its own, per handler
# (make critest HANDLER=gvisor for one). Fails on any failure not in
# test/critest/skip.txt; the junit reports go to _output/critest. Handler
# fwd forwards to a containerd's own CRI, which critest also runs against
# directly: it fails on any spec that fails only through crimux.
HANDLER ?= $(HANDLERS) fwd
critest: critest-bin
	@for h in $(HANDLER); do \
	  $(GO) run ./test/critest -handler $$h -bin-dir $(BIN_DIR) -critest $(BIN_DIR)/critest || exit 1; \
	done

# critest -benchmark per handler; its JSON results are kept in
# test/critest/bench/<handler>/ for later comparison.
critest-bench: critest-bin
	@for h in $(HANDLER); do \
	  $(GO) run ./test/critest -handler $$h -benchmark -bin-dir $(BIN_DIR) -critest $(BIN_DIR)/critest || exit 1; \
	  mkdir -p test/critest/bench/$$h && cp _output/critest/critest-bench-$$h/*.json test/critest/bench/$$h/; \
	done

install: build
	install -m 0755 $(OUT)/crimux $(OUT)/crimux-pause $(BIN_DIR)/
	@bash hack/install-config.sh

up: deps install
	@bash hack/up.sh $(BIN_DIR) $(CRIMUX_SOCKET) $(LOG_DIR)

down:
	@bash hack/down.sh

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l . | grep -v '^_output')" || { gofmt -l .; echo 'gofmt needed'; exit 1; }

unit:
	$(GO) test -count=1 $$($(GO) list ./... | grep -v /test$$)

# Each fuzz target for a number of executions (seeds are in the tests; go test
# keeps what it finds in its cache, and a failing input in the package's
# testdata/fuzz). A count, not a duration: go1.26's fuzz coordinator can report
# its own -fuzztime deadline as a failure ("context deadline exceeded", no
# failing input; golang/go#75804, fixed in go1.27), and a count never sets that
# deadline. Each count takes 5 to 20 s on a 2-core machine. FUZZTIME=1000x (or
# 30s, which can meet that bug) overrides them all.
FUZZTIME ?=
FUZZ_TARGETS := internal/fsroot:FuzzOpenInRoot:4000 router:FuzzValidateSandboxConfig:20000 router:FuzzValidateContainerConfig:10000 conf:FuzzLoad:5000
fuzz:
	@for t in $(FUZZ_TARGETS); do \
	  pkg=$${t%%:*}; rest=$${t#*:}; fn=$${rest%%:*}; n=$${rest##*:}; \
	  ft=$(FUZZTIME); ft=$${ft:-$${n}x}; echo "== fuzz $$fn ($$pkg, $$ft)"; \
	  $(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $$ft ./$$pkg || exit 1; \
	done

# The integration suite once per handler.
integration:
	@for h in $(HANDLERS); do \
	  echo "== integration tests, handler $$h"; \
	  $(GO) test -count=1 -timeout 30m ./test/ -bin-dir $(BIN_DIR) -runtime-handler $$h || exit 1; \
	done

# The integration suite once more, against a crimux built with the race
# detector: any data race it reports fails the run.
integration-race:
	@echo "== integration tests against crimux -race, handler runc"
	CRIMUX_TEST_RACE=1 $(GO) test -count=1 -timeout 40m ./test/ -bin-dir $(BIN_DIR) -runtime-handler runc -containerd-pause 30s

# SOAK_N create/start/exec/stop/remove cycles of a two-container pod per
# handler; nothing may be left, goroutines and fds come back (it prints them).
SOAK_N ?= 200
soak:
	@set -o pipefail; for h in $(HANDLERS); do \
	  $(GO) test -count=1 -timeout 60m -run '^TestSoak$$' ./test/ -bin-dir $(BIN_DIR) -runtime-handler $$h -soak $(SOAK_N) -v | grep -E '^(soak|---|ok|FAIL)|left behind|grew' || exit 1; \
	done

# kubelet, kube-apiserver, kubectl and etcd from the module proxy, cached.
e2e-bin:
	@bash hack/install-k8s.sh $(K8S_VERSION) $(ETCD_VERSION) $(E2E_CACHE)/bin

# crimux under a real kubelet and API server: every scenario for the runc,
# gvisor and fwd RuntimeClasses (fwd forwards to a containerd's own CRI) and
# for pods without one (the default handler).
E2E_HANDLERS ?= runc,gvisor,fwd,
e2e: e2e-bin
	$(GO) run ./test/e2e -bin-dir $(BIN_DIR) -k8s-bin $(E2E_CACHE)/bin -handlers '$(E2E_HANDLERS)'

# Kubernetes' node conformance suite (test/e2e_node: its parallel-safe
# [NodeConformance] specs) through crimux for each handler in
# NODE_E2E_TARGETS, and through containerd's own CRI plugin (target
# containerd, runc) as the baseline, with the same images and the skip list
# test/nodee2e/skips.txt. Results in NODE_E2E_OUT (results.md, results.json,
# each target's logs). Fails if runc fails a spec containerd's CRI passes or
# gvisor fails any. NODE_E2E_FOCUS narrows it (a ginkgo regexp).
NODE_E2E_TARGETS ?= containerd,runc,gvisor
NODE_E2E_FOCUS   ?= \[NodeConformance\]
NODE_E2E_NODES   ?= 20
NODE_E2E_OUT     ?= _output/node-e2e
node-e2e-bin: e2e-bin
	@bash hack/install-node-e2e.sh $(K8S_VERSION) $(E2E_CACHE)/node

node-e2e: deps node-e2e-bin
	$(GO) run ./test/nodee2e -bin-dir $(BIN_DIR) -k8s-bin $(E2E_CACHE)/bin -node-bin $(E2E_CACHE)/node \
	  -targets '$(NODE_E2E_TARGETS)' -focus '$(NODE_E2E_FOCUS)' -nodes $(NODE_E2E_NODES) -out $(NODE_E2E_OUT)

# crimux against containerd's own CRI plugin on the same node, interleaved
# per iteration (test/bench): prints the table and writes results.json,
# results.md and chart.svg to BENCH_OUT (make bench BENCH_OUT=docs/bench
# refreshes what the README shows). Under 15 minutes on 2 cores. It measures
# and reports the targets; it fails only if the workload itself fails.
BENCH_OUT ?= _output/bench
bench: deps
	$(GO) run ./test/bench -bin-dir $(BIN_DIR) -out $(BENCH_OUT) -profile

# A short run that checks the benchmark works end to end (CI).
bench-smoke: deps
	$(GO) run ./test/bench -bin-dir $(BIN_DIR) -out _output/bench-smoke -smoke

# Go benchmarks of single calls through crimux; they print, assert nothing.
bench-micro:
	@for h in $(HANDLERS); do \
	  $(GO) test -count=1 -run '^$$' -bench . -benchtime 200x ./test/ -bin-dir $(BIN_DIR) -runtime-handler $$h || exit 1; \
	done

test: deps vet unit fuzz integration

demo-registry: build
	$(OUT)/crimux-testregistry -addr 127.0.0.1:5000

clean:
	rm -rf _output
