# syntax=docker/dockerfile:1
# Node.js 24, an LTS line (package.json `engines` says >=22).
# Build stage: compile TypeScript with the dev dependencies.
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
COPY packages/resource-server/package.json ./packages/resource-server/
# --ignore-scripts: the root `prepare` (building packages/) needs their sources, and
# `npm run build` below builds them anyway; nothing here runs argon2.
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY packages ./packages
COPY app.ts server.ts ./
COPY lib ./lib
COPY plugins ./plugins
COPY routes ./routes
COPY schemas ./schemas
COPY scripts ./scripts
RUN npm run build

# Production dependencies only (argon2 ships prebuilt binaries for linux-x64/arm64 glibc).
# The workspace package is linked from node_modules to packages/, whose build is copied in
# below. Scripts are skipped (the root `prepare` needs the dev dependencies), then argon2's
# install step is run on its own, as a plain `npm ci` would.
FROM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
COPY packages/resource-server/package.json ./packages/resource-server/
RUN npm ci --omit=dev --no-audit --no-fund --ignore-scripts && npm rebuild argon2

# Runtime: compiled JS, production node_modules, migrations; runs as the unprivileged node user.
FROM node:24-bookworm-slim
# HOST: every interface of the container, so a published port reaches the app.
ENV NODE_ENV=production HOST=0.0.0.0 PORT=3000
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/packages/resource-server/package.json ./packages/resource-server/
COPY --from=build /app/packages/resource-server/dist ./packages/resource-server/dist
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY migrations ./migrations
USER node
# 9464: /metrics when METRICS_PORT=9464 (as in docker-compose.yml); unset, it is on 3000.
EXPOSE 3000 9464
# /ready, as docker-compose.yml: 200 whenever this instance takes traffic, a shared dependency
# down included (`degraded`), so an outage of PostgreSQL or Redis never marks every container
# unhealthy at once; not ready while starting (the port opens once migrations are applied) or
# shutting down (503 `draining`).
HEALTHCHECK --interval=10s --timeout=3s --start-period=40s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||3000)+'/ready').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# The node flags are those of `npm start` (package.json; docs/benchmarks.md says why).
CMD ["node", "--heap-growing-percent=100", "dist/server.js"]
