# order-fleet image: worker, notifier and CLI in one (`docker run IMAGE worker|notifier|setup|…`).
#
#   docker build -t order-fleet .                       # npm ci inside the build (needs the registry)
#   scripts/docker/build-image.sh                       # or: from a tree installed on the host
#
# INSTALL=tree copies .tmp/image-tree (package.json, bin, dist and production node_modules,
# staged by scripts/docker/build-image.sh) instead of running npm in the build, for machines
# whose containers cannot reach the npm registry. NODE_IMAGE is any image with Node (current
# LTS) at /usr/local/bin/node: the official one by default, or the one scripts/docker/
# build-base-images.sh builds without a registry.
ARG NODE_IMAGE=node:26-bookworm-slim

FROM ${NODE_IMAGE} AS build
ARG INSTALL=npm
WORKDIR /build
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
COPY bin ./bin
COPY src ./src
# The glob matches nothing unless the tree was staged; package.json keeps the COPY non-empty.
COPY package.json .tmp/image-tre[e] /tree/
RUN set -eu; mkdir /app; \
    if [ "$INSTALL" = tree ]; then \
      test -d /tree/node_modules -a -d /tree/dist || { echo "INSTALL=tree needs .tmp/image-tree (scripts/docker/build-image.sh)" >&2; exit 1; }; \
      cp -a /tree/package.json /tree/bin /tree/dist /tree/node_modules /app/; \
    elif [ "$INSTALL" = npm ]; then \
      npm ci --ignore-scripts --no-audit --no-fund && npm run build && npm prune --omit=dev --no-audit --no-fund; \
      cp -a package.json bin dist node_modules /app/; \
    else echo "INSTALL must be npm or tree, not $INSTALL" >&2; exit 1; fi; \
    rm -rf /app/node_modules/.package-lock.json /app/node_modules/.cache

FROM ${NODE_IMAGE} AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="order-fleet" \
      org.opencontainers.image.description="Worker fleet on NATS JetStream: per-customer aggregators, partition ownership with fencing, KV checkpoints, SIGTERM handoff" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/order-fleet/order-fleet" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"
ENV NODE_ENV=production \
    PATH=/app/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
WORKDIR /app
# Owned by root and not writable by the app user: the root filesystem can be mounted read-only.
COPY --from=build /app /app
# A numeric non-root user (no passwd entry needed), so Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
EXPOSE 9464
STOPSIGNAL SIGTERM
# node is PID 1 and handles SIGTERM/SIGINT itself (graceful handoff). Never npm/npx here: they run
# the program under `sh -c`, which does not pass SIGTERM on.
ENTRYPOINT ["node", "/app/bin/order-fleet.js"]
CMD ["worker"]
