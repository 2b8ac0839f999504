# syntax=docker/dockerfile:1
# sdq's CPU image: the API, the webhook delivery process and CPU workers (onnxruntime-node's CPU provider
# is bundled with it). No CUDA here; GPU workers use Dockerfile.gpu.
#   docker build -t sdq .
#   the API by default (`node dist/api.js`); `node dist/webhooks.js` or `node dist/worker.js` for the others

FROM node:20-bookworm-slim AS manifests
WORKDIR /src
COPY packages packages
COPY apps apps
RUN mkdir /manifests && find packages apps -mindepth 2 -maxdepth 2 -name package.json -exec cp --parents {} /manifests/ \;

FROM node:20-bookworm AS deps
WORKDIR /app
COPY package.json package-lock.json ./
COPY --from=manifests /manifests/ ./
# The CUDA provider download stays off: this image runs on the CPU.
ENV ONNXRUNTIME_NODE_INSTALL=skip ONNXRUNTIME_NODE_INSTALL_CUDA=skip
RUN npm ci --no-audit --no-fund --omit=dev && npm cache clean --force

FROM node:20-bookworm-slim AS runtime
# Debian's ffmpeg (libx264): workers write MP4 animations with it (FFMPEG_PATH)
RUN apt-get update && apt-get install -y --no-install-recommends ffmpeg && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=deps /app/node_modules node_modules
COPY --from=deps /app/package.json /app/package-lock.json ./
COPY --from=manifests /manifests/ ./
COPY packages packages
COPY apps apps
COPY scripts scripts
COPY tsconfig.json ./
# Compiled once, here: the processes start as plain JavaScript (dist/), nothing compiles at start-up.
RUN node scripts/build.mjs

# glibc.malloc.hugetlb=1: onnxruntime runs without its arena (it would keep each run's peak for ever);
# transparent huge pages keep malloc'd tensors about as fast (docs/BENCHMARKS.md, memory)
ENV NODE_ENV=production \
    GLIBC_TUNABLES=glibc.malloc.hugetlb=1 \
    PORT=3000 \
    EXECUTION_PROVIDERS=cpu \
    MODELS_DIR=/models

# Models are a volume; the API reads only their JSON (engine discovery), workers load the graphs.
RUN useradd --system --uid 10001 --home /app sdq && mkdir -p /models /app/.data && chown sdq /models /app/.data
VOLUME ["/models"]
USER sdq

EXPOSE 3000
# The API's readiness (Redis and storage reachable); docker-compose.yml gives each other service its own.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=6 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||3000)+'/readyz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
CMD ["node", "dist/api.js"]
