# sluice's image. The build stage installs the build packages of the Makefile's DEB_PACKAGES and
# runs the same cmake commands as `make build`; the runtime stage has only the libraries sluice
# links and the CA bundle (TLS origination verifies against it), and runs as a numeric non-root
# user, as the Helm chart's runAsNonRoot wants.
#
#   docker build -t sluice:0.1.0 .
#
# CI has no Docker engine, so this file is not built there: tests/chart/test_image.py checks that
# it stays identical to what CI runs (packages, cmake commands, the libraries `ldd` finds).

FROM debian:bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      cmake ninja-build g++ pkg-config libuv1-dev node-llhttp libssl-dev \
      prometheus-cpp-dev libyaml-cpp-dev libcli11-dev libgtest-dev nlohmann-json3-dev python3 \
      libnghttp2-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release \
 && cmake --build build -j $(nproc)

FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libuv1 libyaml-cpp0.7 libprometheus-cpp-core1.0 libssl3 libnghttp2-14 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 sluice \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin sluice
COPY --from=build /src/build/sluice /usr/local/bin/sluice
# The static admin client the Helm chart's sluice-tools init container copies for the app's hooks.
COPY --from=build /src/build/sluice-drain /usr/local/bin/sluice-drain
USER 10001:10001
EXPOSE 8080 8081 9901
ENTRYPOINT ["/usr/local/bin/sluice"]
