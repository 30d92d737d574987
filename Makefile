# ovlsw: make help lists the targets.
GO      ?= go
PKGS    := ./...
BIN     := bin
PREFIX  ?= /usr/local
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
STATICCHECK_VERSION := v0.8.2


.PHONY: join-times route-figures dns-figures scale deps help build test unit race lint fuzz bench bench-go integ tidy-check demo install uninstall clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build bin/ovlsw
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ovlsw ./cmd/ovlsw

test: lint ## the whole suite: lint, every test with -race (root tests need root), e2e again with offloads off, every benchmark once
	$(GO) test -race -count=1 -timeout 20m $(PKGS)
	OVLSW_E2E_OFFLOAD=off $(GO) test -count=1 -timeout 10m -run 'E2E' ./bench/e2e/
	$(GO) test -run '^$$' -bench . -benchtime=1x -count=1 $(PKGS)

unit: ## tests that need no root (root tests skip)
	$(GO) test -count=1 -short $(PKGS)

race: ## tests with the race detector
	$(GO) test -race -count=1 $(PKGS)

lint: tidy-check ## gofmt, go vet, staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) $(PKGS)

tidy-check: ## go.mod and go.sum are tidy
	$(GO) mod tidy -diff

FUZZTIME ?= 60s
fuzz: ## run every fuzz target for FUZZTIME (default 60s)
	@for pkg in $$($(GO) list $(PKGS)); do \
	  for fz in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$fz"; $(GO) test -run '^$$' -fuzz "^$$fz$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; done

BENCHFLAGS ?=
bench: build ## underlay, kernel vxlan and ovlsw measured in one run (root; installs iperf3; BENCHFLAGS=--quick, --json, ...)
	@command -v iperf3 >/dev/null || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends iperf3; }
	$(GO) run ./bench/harness --ovlsw $(BIN)/ovlsw $(BENCHFLAGS)

bench-go: ## Go benchmarks of the hot functions, with allocations
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

scale: ## attach 1000 endpoints to one node: attach latency, memory per endpoint (root)
	OVLSW_SCALE=$${OVLSW_SCALE:-1000} $(GO) test -count=1 -v -run TestScaleEndpoints -timeout 30m ./bench/e2e/

SOAKFLAGS ?=
.PHONY: soak
soak: build ## 3 nodes under faults with traffic, 10 min by default: gaps, leaks, FDB, RSS (root; SOAKFLAGS=--quick, --duration 30m, --json)
	$(GO) run ./bench/soak --ovlsw $(BIN)/ovlsw $(SOAKFLAGS)

join-times: ## join time with the token exchange, with the secret kept, and --insecure: medians of 10 (root)
	OVLSW_JOIN_TIMES=$${OVLSW_JOIN_TIMES:-10} $(GO) test -count=1 -v -run TestJoinTime -timeout 10m ./bench/e2e/

dns-figures: ## the name service: freshness over 20 rounds, dnsperf against dnsmasq (root; installs dnsperf, dnsmasq-base, dnsutils)
	@command -v dnsperf >/dev/null && command -v dnsmasq >/dev/null && command -v dig >/dev/null || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends dnsperf dnsmasq-base dnsutils; }
	OVLSW_DNS_FRESHNESS=$${OVLSW_DNS_FRESHNESS:-20} OVLSW_DNSPERF=$${OVLSW_DNSPERF:-10} $(GO) test -count=1 -v -run 'TestNameFreshness|TestDNSPerfFigure' -timeout 30m ./bench/e2e/

route-figures: ## TCP 1 and 4 streams routed between subnets against bridged, medians of 3, one run (root)
	OVLSW_ROUTE_FIGURES=$${OVLSW_ROUTE_FIGURES:-3} $(GO) test -count=1 -v -run TestRouteThroughput -timeout 15m ./bench/e2e/

integ: ## end-to-end tests only (root)
	$(GO) test -count=1 -v -run 'E2E' ./bench/...

deps: ## install what the demo and the end-to-end tests use (Debian/Ubuntu, root)
	@command -v ip >/dev/null && command -v ping >/dev/null && command -v bridge >/dev/null || \
	  { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends iproute2 iputils-ping; }

demo: deps build ## two nodes in network namespaces, a ping across, torn down (root)
	sh ./bench/demo.sh $(BIN)/ovlsw

CNI_BIN_DIR ?= $(DESTDIR)/opt/cni/bin
UNIT_DIR    ?= $(PREFIX)/lib/systemd/system
CONF_DIR    ?= /etc/ovlsw
install: build ## install ovlsw, ovlsw-attach, ovlsw-cni, ovlsw-docker into PREFIX/bin, ovlsw-cni into CNI_BIN_DIR, the systemd unit and a sample /etc/ovlsw/ovlsw.yaml
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ovlsw-cni ./cmd/ovlsw-cni
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ovlsw-docker ./cmd/ovlsw-docker
	install -D -m 0755 $(BIN)/ovlsw-docker $(DESTDIR)$(PREFIX)/bin/ovlsw-docker
	install -D -m 0755 $(BIN)/ovlsw $(DESTDIR)$(PREFIX)/bin/ovlsw
	install -D -m 0755 $(BIN)/ovlsw-cni $(DESTDIR)$(PREFIX)/bin/ovlsw-cni
	install -D -m 0755 cmd/ovlsw-attach/ovlsw-attach $(DESTDIR)$(PREFIX)/bin/ovlsw-attach
	install -D -m 0755 $(BIN)/ovlsw-cni $(CNI_BIN_DIR)/ovlsw-cni
	install -d $(DESTDIR)$(UNIT_DIR)
	sed 's|/usr/local/bin/ovlsw|$(PREFIX)/bin/ovlsw|' cmd/ovlsw/ovlsw.service > $(DESTDIR)$(UNIT_DIR)/ovlsw.service
	chmod 0644 $(DESTDIR)$(UNIT_DIR)/ovlsw.service
	@# the sample configuration, never over an existing one
	[ -e $(DESTDIR)$(CONF_DIR)/ovlsw.yaml ] || install -D -m 0644 cmd/ovlsw/ovlsw.yaml $(DESTDIR)$(CONF_DIR)/ovlsw.yaml

uninstall: ## remove what install put in place (the configuration only if unchanged from the sample)
	rm -f $(DESTDIR)$(PREFIX)/bin/ovlsw $(DESTDIR)$(PREFIX)/bin/ovlsw-cni $(DESTDIR)$(PREFIX)/bin/ovlsw-attach $(CNI_BIN_DIR)/ovlsw-cni $(DESTDIR)$(PREFIX)/bin/ovlsw-docker
	rm -f $(DESTDIR)$(UNIT_DIR)/ovlsw.service
	if cmp -s cmd/ovlsw/ovlsw.yaml $(DESTDIR)$(CONF_DIR)/ovlsw.yaml; then rm -f $(DESTDIR)$(CONF_DIR)/ovlsw.yaml; rmdir $(DESTDIR)$(CONF_DIR) 2>/dev/null || true; fi

clean: ## remove build output
	rm -rf $(BIN)
