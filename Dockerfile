# ordermesh: one image for every service (SERVICES picks what a container runs) and for the
# payment-provider simulator (entrypoint: node dist/bin/psp-simulator.js).
# Runs as 1000:1000 on a read-only root filesystem: the only writable paths are DATA_DIR (/data,
# a volume) and /tmp (a tmpfs). See docs/deploy.md.

# ── build: compile the application sources, then keep the production dependencies only ─────
FROM node:24-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
# no install scripts: no production dependency needs one, and the build runs on the image's own
# Node.js instead of downloading the `node` dev dependency
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json moleculer.config.ts ./
COPY bin bin
COPY lib lib
COPY services services
COPY mixins mixins
COPY models models
# only the sources copied above are compiled: no tests, benchmarks or source maps in the image
RUN node node_modules/typescript/bin/tsc -p tsconfig.build.json --sourceMap false --incremental false \
 && npm prune --omit=dev --ignore-scripts --no-audit --no-fund \
 && rm -rf node_modules/.cache

# ── runtime ────────────────────────────────────────────────────────────────────────────────
FROM node:24-bookworm-slim
ENV NODE_ENV=production \
    DATA_DIR=/data \
    ADMIN_PORT=9000
WORKDIR /app
# owned by root and read-only to the process: only /data is its own
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
RUN mkdir -p /data && chown 1000:1000 /data && chmod 0700 /data
VOLUME /data
USER 1000:1000
# 3000: the gateway's HTTP API; 9000: probes of every process (ADMIN_PORT), never published
EXPOSE 3000 9000
# the process's own liveness: a gateway on its PORT, every other process on ADMIN_PORT
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "dist/bin/ordermesh.js", "probe", "livez"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "dist/bin/ordermesh.js"]
CMD ["start"]
