#!/usr/bin/env bash
# Fetches a newer nats-server (Debian trixie's package, 2.10.x) without installing it: apt-get
# download + dpkg -x into a cache dir. Prints the binary's path on stdout; progress goes to stderr.
# Used by scripts/docker/build-base-images.sh for the NATS image, and by hand to run the R3 cluster
# tests and `npm run chaos` on 2.10 (NATS_CLUSTER_SERVER_BIN, --nats-server): 2.9.10 has the KV
# compare-and-swap bug nats-server#4320.
set -euo pipefail
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE="${NATS_SUITE:-trixie}"
CACHE_DIR="${CACHE_DIR:-/var/cache/order-fleet-docker}"
dir="$CACHE_DIR/nats-$SUITE"
bin="$dir/root/usr/sbin/nats-server"
if [ ! -x "$bin" ]; then
  echo "fetching nats-server from Debian $SUITE" >&2
  rm -rf "$dir" && mkdir -p "$dir/apt/lists/partial" "$dir/apt/archives/partial"
  echo "deb $MIRROR $SUITE main" >"$dir/sources.list"
  opts=(-o "Dir::Etc::SourceList=$dir/sources.list" -o "Dir::Etc::SourceParts=-"
    -o "Dir::State::Lists=$dir/apt/lists" -o "Dir::Cache=$dir/apt" -o "APT::Get::List-Cleanup=0")
  apt-get "${opts[@]}" update -qq >&2
  (cd "$dir" && apt-get "${opts[@]}" download nats-server >&2)
  dpkg -x "$dir"/nats-server_*.deb "$dir/root"
  rm -rf "$dir/apt"
fi
"$bin" --version >&2
echo "$bin"
