# syntax=docker/dockerfile:1
# Two targets:
#   docker build -t switchyard .                      CPU build (the last stage, so the default)
#   docker build --target cuda -t switchyard:cuda .   llama.cpp built with CUDA (run with --gpus all)
# Wheels are built in a builder stage with the compilers; the final stages install those
# wheels and carry no compiler. llama.cpp is built for a portable CPU baseline
# (GGML_NATIVE=OFF), never for the build machine's own instruction set, so the image runs
# on any x86-64 node; the CUDA build names its GPU architectures instead of detecting them.
# The config is read from --config (or $SWITCHYARD_CONFIG); paths inside it (workflow
# specs, model files) are relative to that file, so e.g.
#   docker run ... switchyard serve --config /app/deploy/comfyui/switchyard.comfyui.yaml
# works from the image's working directory (/data).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG CUDA_VERSION=12.4.1

FROM ${PYTHON_IMAGE} AS cpu-build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake git \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY proxy ./proxy
COPY adapters ./adapters
COPY extensions ./extensions
RUN CMAKE_ARGS="-DGGML_NATIVE=OFF" pip wheel --wheel-dir /wheels .

FROM nvidia/cuda:${CUDA_VERSION}-devel-ubuntu22.04 AS cuda-build
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# Turing, Ampere (A100, consumer), Ada, Hopper: kernels for each, no detection at build time.
ARG CUDA_ARCHITECTURES="75;80;86;89;90"
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3.11-dev build-essential cmake git \
 && rm -rf /var/lib/apt/lists/*
RUN python3.11 -m venv /venv
ENV PATH=/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY proxy ./proxy
COPY adapters ./adapters
COPY extensions ./extensions
RUN CMAKE_ARGS="-DGGML_CUDA=on -DGGML_NATIVE=OFF -DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHITECTURES}" \
    pip wheel --wheel-dir /wheels .

FROM nvidia/cuda:${CUDA_VERSION}-runtime-ubuntu22.04 AS cuda
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv libgomp1 espeak-ng ffmpeg \
 && rm -rf /var/lib/apt/lists/*
RUN python3.11 -m venv /venv
ENV PATH=/venv/bin:$PATH
RUN --mount=type=bind,from=cuda-build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels switchyard
COPY deploy /app/deploy
RUN useradd --create-home --uid 10001 switchyard && mkdir -p /data && chown switchyard /data
USER 10001
# server.data_dir defaults to ./data: keep it on the /data volume.
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=4)"]
CMD ["switchyard", "serve", "--host", "0.0.0.0", "--port", "8080"]

FROM ${PYTHON_IMAGE} AS cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# Runtime libraries only: OpenMP for llama.cpp, espeak-ng for speech, ffmpeg for audio.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 espeak-ng ffmpeg \
 && rm -rf /var/lib/apt/lists/*
RUN --mount=type=bind,from=cpu-build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels switchyard
COPY deploy /app/deploy
RUN useradd --create-home --uid 10001 switchyard && mkdir -p /data && chown switchyard /data
USER 10001
# server.data_dir defaults to ./data: keep it on the /data volume.
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=4)"]
# Inside a container, listen on all interfaces; publish the port deliberately (-p 127.0.0.1:8080:8080).
CMD ["switchyard", "serve", "--host", "0.0.0.0", "--port", "8080"]
