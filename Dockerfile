# syntax=docker/dockerfile:1
# Build stage: compile TypeScript with the dev dependencies.
FROM node:20-bookworm-slim AS build
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
FROM node:20-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
COPY packages/resource-server/package.json ./packages/resource-server/
RUN npm ci --omit=dev --no-audit --no-fund --ignore-scripts && npm rebuild argon2

# Runtime: compiled JS, production node_modules, migrations; runs as the unprivileged node user.
FROM node:20-bookworm-slim
ENV NODE_ENV=production HOST=0.0.0.0 PORT=3000
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/packages/resource-server/package.json ./packages/resource-server/
COPY --from=build /app/packages/resource-server/dist ./packages/resource-server/dist
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY migrations ./migrations
USER node
EXPOSE 3000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:'+(process.env.PORT||3000)+'/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
# The node flags are those of `npm start` (package.json; docs/benchmarks.md says why).
CMD ["node", "--heap-growing-percent=100", "dist/server.js"]
