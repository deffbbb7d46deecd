# sluice — the two commands of the README's quick start, and a few more.
BUILD ?= build
TYPE ?= Release
JOBS ?= $(shell nproc)

# Debian 12 packages: build toolchain, libraries, and the real peers the tests and benchmarks use.
DEB_PACKAGES := cmake ninja-build g++ pkg-config libuv1-dev node-llhttp libssl-dev \
  prometheus-cpp-dev libyaml-cpp-dev libcli11-dev libgtest-dev nlohmann-json3-dev \
  curl nginx-light haproxy wrk python3-aiohttp python3-websockets python3-yaml procps util-linux prometheus chromium \
  openssl ca-certificates

.PHONY: deps build test demo bench format clean

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

demo: build
	./$(BUILD)/sluice demo

bench: build
	bench/run.sh

format:
	clang-format -i $$(git ls-files '*.cc' '*.h')

clean:
	rm -rf $(BUILD)
