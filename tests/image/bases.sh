#!/usr/bin/env bash
# The Dockerfile's base images, made here: no registry of container images is reachable, so
# debootstrap builds a Debian root filesystem from the package archive apt uses, and
# `podman import` gives it the name the Dockerfile's FROM line says. Each base is kept as a
# tarball in $SLUICE_IMAGE_CACHE (default /var/cache/sluice-image), keyed by its name, and
# imported again only when podman does not have it.
#
#   debian:bookworm       debootstrap --variant=minbase bookworm, with the official image's
#                         apt sources (bookworm, bookworm-updates, bookworm-security)
#   debian:bookworm-slim  the same tree without documentation, man pages and locales, and the
#                         dpkg path exclusions that keep them out (as the official -slim image)
set -euo pipefail
cd "$(dirname "$0")/../.."
CACHE=${SLUICE_IMAGE_CACHE:-/var/cache/sluice-image}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
mkdir -p "$CACHE"

bases=$(awk 'toupper($1) == "FROM" && $2 !~ /^(build|scratch)$/ {print $2}' Dockerfile | sort -u)

rootfs() {  # the debootstrapped bookworm tree, made once
  local dir=$CACHE/bookworm-rootfs
  if [ ! -f "$dir/.complete" ]; then
    rm -rf "$dir"
    echo "debootstrap bookworm -> $dir"
    debootstrap --variant=minbase bookworm "$dir" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
      || { tail -20 "$CACHE/debootstrap.log"; exit 1; }
    rm -f "$dir/etc/apt/sources.list"
    cat >"$dir/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: $MIRROR
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${MIRROR%/debian}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
    chroot "$dir" apt-get clean
    rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin "$dir"/var/log/*.log
    touch "$dir/.complete"
  fi
  echo "$dir"
}

for base in $bases; do
  case "$base" in
    debian:bookworm | debian:bookworm-slim) ;;
    *) echo "bases.sh: no recipe for base image $base" >&2; exit 1 ;;
  esac
  tar_file=$CACHE/${base//[:\/]/_}.tar
  if [ ! -s "$tar_file" ]; then
    src=$(rootfs | tail -1)
    tree=$src
    if [ "$base" = debian:bookworm-slim ]; then
      tree=$CACHE/bookworm-slim-rootfs
      rm -rf "$tree"
      cp -a "$src" "$tree"
      rm -rf "$tree"/usr/share/doc/* "$tree"/usr/share/man/* "$tree"/usr/share/info/* \
        "$tree"/usr/share/locale/* "$tree"/usr/share/lintian/*
      cat >"$tree/etc/dpkg/dpkg.cfg.d/docker" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
DPKG
    fi
    tar --numeric-owner --exclude=./.complete -C "$tree" -cf "$tar_file.tmp" .
    mv "$tar_file.tmp" "$tar_file"
    [ "$tree" = "$src" ] || rm -rf "$tree"
  fi
  name=docker.io/library/$base
  if ! podman image exists "$name"; then
    podman import --quiet "$tar_file" "$name" >/dev/null
    echo "imported $name from $tar_file"
  else
    echo "have $name"
  fi
done
