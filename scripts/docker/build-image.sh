#!/usr/bin/env bash
# Builds the order-fleet image from a tree installed on this host (Dockerfile INSTALL=tree), for
# machines whose containers cannot reach the npm registry:
#   1. `npm run build` here, then a production-only install in .tmp/image-tree
#      (`npm ci --omit=dev`, from the host's npm cache when it can),
#   2. `docker build --build-arg INSTALL=tree`.
# IMAGE (default order-fleet:dev) names the result; NODE_IMAGE picks the Node base image (default:
# the one scripts/docker/build-base-images.sh builds). With registry access inside containers,
# plain `docker build -t order-fleet .` does all of this in the build instead.
set -euo pipefail
cd "$(dirname "$0")/../.."

IMAGE="${IMAGE:-order-fleet:dev}"
if [ -z "${NODE_IMAGE:-}" ]; then
  eval "$(scripts/docker/build-base-images.sh | grep '^NODE_IMAGE=')"
fi
log() { echo "[build-image] $*" >&2; }

tree=.tmp/image-tree
log "staging a production tree in $tree"
npm run -s build
rm -rf "$tree" && mkdir -p "$tree"
cp package.json package-lock.json "$tree/"
(cd "$tree" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --prefer-offline --loglevel=error >&2)
cp -a bin dist "$tree/"
rm -f "$tree/package-lock.json"

log "building $IMAGE on $NODE_IMAGE"
DOCKER_BUILDKIT=0 docker build -q \
  --build-arg INSTALL=tree \
  --build-arg "NODE_IMAGE=$NODE_IMAGE" \
  --build-arg "VERSION=$(node -p 'require("./package.json").version')" \
  --build-arg "REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
  --build-arg "CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  -t "$IMAGE" . >&2
echo "IMAGE=$IMAGE"
