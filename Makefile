# sluice — the two commands of the README's quick start, and a few more.
BUILD ?= build
TYPE ?= Release
JOBS ?= $(shell nproc)

# Debian 12 packages: build toolchain, libraries, and the real peers the tests and benchmarks use.
DEB_PACKAGES := cmake ninja-build g++ pkg-config libuv1-dev node-llhttp libssl-dev \
  prometheus-cpp-dev libyaml-cpp-dev libcli11-dev libgtest-dev nlohmann-json3-dev python3 libnghttp2-dev \
  curl nginx-light haproxy wrk python3-aiohttp python3-websockets python3-h2 nghttp2-client python3-yaml procps util-linux prometheus chromium \
  openssl ca-certificates
# The chart tests (tests/chart): Helm's template engine (Go's text/template with sprig), JSON
# Schema for values.schema.json, Node.js for kubernetes-models (npm packages from the lockfile).
# NodeSource's nodejs ships npm itself and conflicts with Debian's npm: that one is asked for
# only where there is no npm command.
DEB_PACKAGES += golang-go golang-github-masterminds-sprig-dev golang-gopkg-yaml.v2-dev \
  python3-jsonschema nodejs $(if $(shell command -v npm),,npm)

.PHONY: deps build test test-sanitize test-image demo bench format clean

deps:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed$$' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing: $$missing"; \
	  if [ "$$(id -u)" != 0 ]; then SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "all Debian packages present"; fi

build: deps
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=$(TYPE)
	cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j 2

# The whole suite under ASan+UBSan (LeakSanitizer included) in $(SAN_BUILD), then, when clang
# and its runtimes are installable, each libFuzzer target for a fixed number of inputs from a
# fixed seed (tests/fuzz/CMakeLists.txt; FUZZ_SECONDS caps a slow machine) in $(FUZZ_BUILD).
# clang also builds the sanitizer tree when it can (about twice as fast as g++ there); g++
# otherwise. README: "Fuzzing and sanitizers".
SAN_BUILD ?= build-san
FUZZ_BUILD ?= build-fuzz
SANITIZE ?= address,undefined
FUZZ_SECONDS ?= 30
SAN_CTEST_ARGS ?=
# Only for test-sanitize: `make test` never needs them.
FUZZ_PACKAGES := clang libclang-rt-14-dev llvm
# Succeeds when clang can link a libFuzzer target with ASan and UBSan.
HAVE_LIBFUZZER = (tmp=$$(mktemp -d) && \
  echo 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }' \
    > $$tmp/probe.cc && \
  clang++ -fsanitize=fuzzer,address,undefined $$tmp/probe.cc -o $$tmp/probe >/dev/null 2>&1; \
  ok=$$?; rm -rf $$tmp; [ $$ok = 0 ])

test-sanitize: deps
	@missing=$$(for p in $(FUZZ_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed$$' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing for test-sanitize: $$missing"; \
	  if [ "$$(id -u)" != 0 ]; then SUDO=sudo; fi; \
	  ($$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing) \
	    || echo "could not install $$missing: g++ builds the sanitizer tree, no fuzzing"; \
	fi
	@if $(HAVE_LIBFUZZER); then cc="-DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++"; else cc=""; fi; \
	set -ex; \
	cmake -S . -B $(SAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSLUICE_SANITIZE=$(SANITIZE) $$cc; \
	cmake --build $(SAN_BUILD) -j $(JOBS); \
	cd $(SAN_BUILD) && ctest --output-on-failure -j 2 $(SAN_CTEST_ARGS)
	@if ! $(HAVE_LIBFUZZER); then echo "SKIPPED: the fuzz targets need clang with libFuzzer ($(FUZZ_PACKAGES))"; exit 0; fi; \
	set -ex; \
	cmake -S . -B $(FUZZ_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSLUICE_FUZZ=ON \
	  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DSLUICE_FUZZ_SECONDS=$(FUZZ_SECONDS); \
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzzers; \
	cd $(FUZZ_BUILD) && ctest --output-on-failure -j 2 -L fuzz

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
