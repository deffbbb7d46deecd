# sluice — the two commands of the README's quick start, and a few more.
BUILD ?= build
TYPE ?= Release
JOBS ?= $(shell nproc)

# Debian 12 packages: build toolchain, libraries, and the real peers the tests and benchmarks use.
DEB_PACKAGES := cmake ninja-build g++ pkg-config libuv1-dev node-llhttp libssl-dev \
  prometheus-cpp-dev libyaml-cpp-dev libcli11-dev libgtest-dev nlohmann-json3-dev python3 libnghttp2-dev \
  curl nginx-light haproxy wrk python3-aiohttp python3-websockets python3-h2 nghttp2-client python3-yaml procps util-linux prometheus chromium \
  openssl ca-certificates iproute2 stress-ng
# iproute2: `ip netns` (tests/e2e/test_admin_access.py); util-linux: script(1) and prlimit(1)
# (test_drain, test_limits); stress-ng: the CPU hog of the load-beside run (README).
# The chart tests (tests/chart): Helm's template engine (Go's text/template with sprig), JSON
# Schema for values.schema.json, Node.js for kubernetes-models (npm packages from the lockfile).
# NodeSource's nodejs ships npm itself and conflicts with Debian's npm: that one is asked for
# only where there is no npm command.
DEB_PACKAGES += golang-go golang-github-masterminds-sprig-dev golang-gopkg-yaml.v2-dev \
  python3-jsonschema nodejs $(if $(shell command -v npm),,npm)
# gRPC peers (issue 16): Python's grpcio (generic handlers, no code generation) in the e2e
# tests; Go's gRPC and x/net (h2c) for the test and benchmark upstreams, built from Debian's
# GOPATH sources (/usr/share/gocode), nothing downloaded.
DEB_PACKAGES += python3-grpcio golang-google-grpc-dev golang-golang-x-net-dev

.PHONY: deps build test test-sanitize test-tsan soak fuzz-corpus test-image demo bench format clean

deps:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed$$' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing: $$missing"; \
	  if [ "$$(id -u)" != 0 ]; then SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "all Debian packages present"; fi
	@# libnghttp2-14 at the latest Debian 12 update: its updates carry the fixes for crafted
	@# frames (CVE-2023-44487, CVE-2024-28182 backports; issue #15). Package lists older than
	@# a day are refreshed first; nothing is printed when it is already the latest.
	@if [ "$$(id -u)" != 0 ]; then SUDO=sudo; fi; \
	if [ -z "$$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -1)" ]; then \
	  $$SUDO apt-get update -qq >/dev/null 2>&1 || echo "warning: apt-get update failed; checking libnghttp2-14 against the cached lists" >&2; \
	fi; \
	inst=$$(dpkg-query -W -f='$${Version}' libnghttp2-14 2>/dev/null); \
	cand=$$(apt-cache policy libnghttp2-14 2>/dev/null | awk '/Candidate:/ {print $$2}'); \
	if [ -n "$$cand" ] && [ "$$cand" != "(none)" ] && [ "$$cand" != "$$inst" ]; then \
	  echo "upgrading libnghttp2-14 $$inst -> $$cand"; \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --only-upgrade libnghttp2-14; \
	fi
	@# The chart tests' npm packages, from the lockfile (tests/chart/test_chart.py checks the
	@# stamp and fails, rather than installing, when they are missing or stale).
	@stamp=tests/chart/node_modules/.sluice-lock-sha256; \
	want=$$(sha256sum tests/chart/package-lock.json | cut -d' ' -f1); \
	if [ "$$(cat $$stamp 2>/dev/null)" = "$$want" ]; then echo "tests/chart/node_modules up to date"; \
	else (cd tests/chart && npm ci --no-audit --no-fund --loglevel=error) && echo "$$want" > $$stamp; fi
	@# The gRPC Node client's npm package (@grpc/grpc-js), the same way (tests/e2e/test_grpc_node.py
	@# checks the stamp and fails when it is missing or stale).
	@stamp=tests/grpc_node/node_modules/.sluice-lock-sha256; \
	want=$$(sha256sum tests/grpc_node/package-lock.json | cut -d' ' -f1); \
	if [ "$$(cat $$stamp 2>/dev/null)" = "$$want" ]; then echo "tests/grpc_node/node_modules up to date"; \
	else (cd tests/grpc_node && npm ci --no-audit --no-fund --loglevel=error) && echo "$$want" > $$stamp; fi

build: deps
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=$(TYPE)
	cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j 2

# One clang tree, $(SAN_BUILD), built with ASan+UBSan (LeakSanitizer included) and libFuzzer's
# coverage (SLUICE_FUZZ=ON; one build instead of two, which CI's time needs): the unit and e2e
# suites, then each libFuzzer target for a fixed number of inputs from a fixed seed, starting
# from the committed corpus (tests/fuzz/CMakeLists.txt, run_fuzz.sh; FUZZ_SECONDS caps a slow
# machine, and a run it cuts below half its inputs fails). clang, its runtimes and libFuzzer are
# required: when they cannot be installed this fails, it never skips.
# README: "Fuzzing and sanitizers".
SAN_BUILD ?= build-san
TSAN_BUILD ?= build-tsan
FUZZ_SECONDS ?= 60
SAN_CTEST_ARGS ?=
TSAN_CTEST_ARGS ?=
# Only for test-sanitize and test-tsan: `make test` never needs them.
FUZZ_PACKAGES := clang libclang-rt-14-dev llvm
# Succeeds when clang can link a libFuzzer target with ASan and UBSan.
HAVE_LIBFUZZER = (tmp=$$(mktemp -d) && \
  echo 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }' \
    > $$tmp/probe.cc && \
  clang++ -fsanitize=fuzzer,address,undefined $$tmp/probe.cc -o $$tmp/probe >/dev/null 2>&1; \
  ok=$$?; rm -rf $$tmp; [ $$ok = 0 ])
CLANG := -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++

.PHONY: clang-deps
clang-deps: deps
	@missing=$$(for p in $(FUZZ_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed$$' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing for the sanitizer and fuzz trees: $$missing"; \
	  if [ "$$(id -u)" != 0 ]; then SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing \
	    || { echo "ERROR: could not install $$missing: no sanitizer or fuzz run" >&2; exit 1; }; \
	fi
	@if ! $(HAVE_LIBFUZZER); then \
	  echo "ERROR: clang++ cannot link a libFuzzer target with ASan and UBSan ($(FUZZ_PACKAGES))" >&2; \
	  exit 1; fi

SAN_CMAKE = cmake -S . -B $(SAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSLUICE_FUZZ=ON \
  $(CLANG) -DSLUICE_FUZZ_SECONDS=$(FUZZ_SECONDS)

test-sanitize: clang-deps
	set -e; \
	$(SAN_CMAKE); \
	cmake --build $(SAN_BUILD) -j $(JOBS); \
	cd $(SAN_BUILD); \
	ctest --output-on-failure -j 2 -LE fuzz $(SAN_CTEST_ARGS); \
	ctest --output-on-failure -j 2 -L fuzz

# Minimizes the committed fuzz corpus (tests/fuzz/corpus) with libFuzzer's -merge=1, keeping
# what the last `make test-sanitize` found; commit the result.
fuzz-corpus: clang-deps
	$(SAN_CMAKE)
	cmake --build $(SAN_BUILD) -j $(JOBS) --target fuzz-corpus

# The unit and e2e suites under ThreadSanitizer in $(TSAN_BUILD) (clang). Every report fails the
# run (sanitize.reports, tests/CMakeLists.txt). There are no suppressions: one would need a file
# named in TSAN_OPTIONS (tests/CMakeLists.txt) with the reason written next to each entry.
test-tsan: clang-deps
	set -e; \
	cmake -S . -B $(TSAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSLUICE_SANITIZE=thread $(CLANG); \
	cmake --build $(TSAN_BUILD) -j $(JOBS); \
	cd $(TSAN_BUILD) && ctest --output-on-failure -j 2 $(TSAN_CTEST_ARGS)

# bench/soak.py for SOAK_DURATION on the Release build: mixed HTTP, WebSocket echoes, reloads,
# an upstream restart. Fails on any unexpected error, on RSS growth above SOAK_RSS_MIB or
# descriptor growth above SOAK_FD between the first and the last window after warm-up, on idle
# descriptors not back to their count before the run, or on sluice not exiting 0.
SOAK_DURATION ?= 2m
SOAK_RSS_MIB ?= 4
SOAK_FD ?= 8
soak: build
	/usr/bin/python3 bench/soak.py --sluice $(BUILD)/sluice --duration $(SOAK_DURATION) \
	  --warmup 20s --window 20s --reload-interval 30s \
	  --max-rss-drift-mib $(SOAK_RSS_MIB) --max-fd-drift $(SOAK_FD) --max-idle-fd-diff 0 \
	  --max-unexpected-errors 0

# The Dockerfile built and its image run (README, "The image"): podman builds without a
# daemon (RUN steps in a chroot); debootstrap makes the base images, cached as tarballs in
# $(IMAGE_CACHE) by name (tests/image/bases.sh); the image's own sluice then runs under chroot
# as uid 10001 (tests/image/test_image_run.py). Containers themselves cannot start here.
IMAGE ?= localhost/sluice:test
IMAGE_CACHE ?= /var/cache/sluice-image
IMAGE_PACKAGES := podman debootstrap python3
test-image:
	@missing=$$(for p in $(IMAGE_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed$$' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing for test-image: $$missing"; \
	  if [ "$$(id -u)" != 0 ]; then SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@set -e; t0=$$(date +%s); \
	SLUICE_IMAGE_CACHE=$(IMAGE_CACHE) tests/image/bases.sh; t1=$$(date +%s); \
	podman build --isolation=chroot --pull=never -t $(IMAGE) .; t2=$$(date +%s); \
	SLUICE_IMAGE=$(IMAGE) /usr/bin/python3 tests/image/test_image_run.py -v; t3=$$(date +%s); \
	echo "test-image: bases $$((t1 - t0)) s, podman build $$((t2 - t1)) s, run $$((t3 - t2)) s, total $$((t3 - t0)) s"

demo: build
	./$(BUILD)/sluice demo

bench: build
	bench/run.sh

format:
	clang-format -i $$(git ls-files '*.cc' '*.h')

clean:
	rm -rf $(BUILD)
