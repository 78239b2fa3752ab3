# syntax=docker/dockerfile:1
# Two targets:
#   docker build -t switchyard .                      CPU build (the last stage, so the default)
#   docker build --target cuda -t switchyard:cuda .   llama.cpp built with CUDA (run with --gpus all)

FROM nvidia/cuda:12.4.1-devel-ubuntu22.04 AS cuda-build
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3.11-dev build-essential cmake git \
 && rm -rf /var/lib/apt/lists/*
RUN python3.11 -m venv /venv
ENV PATH=/venv/bin:$PATH
WORKDIR /app
COPY pyproject.toml README.md ./
COPY proxy ./proxy
COPY adapters ./adapters
COPY extensions ./extensions
COPY deploy ./deploy
RUN CMAKE_ARGS="-DGGML_CUDA=on" pip install .

FROM nvidia/cuda:12.4.1-runtime-ubuntu22.04 AS cuda
ENV DEBIAN_FRONTEND=noninteractive PYTHONUNBUFFERED=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.11 libgomp1 espeak-ng ffmpeg \
 && rm -rf /var/lib/apt/lists/*
COPY --from=cuda-build /venv /venv
COPY --from=cuda-build /app /app
ENV PATH=/venv/bin:$PATH
RUN useradd --create-home switchyard && mkdir -p /data && chown switchyard /data
USER switchyard
# server.data_dir defaults to ./data: keep it on the /data volume.
WORKDIR /data
EXPOSE 8080
CMD ["switchyard", "serve", "--host", "0.0.0.0", "--port", "8080"]

FROM python:3.11-slim-bookworm AS cpu
ENV PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake espeak-ng ffmpeg \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY proxy ./proxy
COPY adapters ./adapters
COPY extensions ./extensions
COPY deploy ./deploy
RUN pip install .
RUN useradd --create-home switchyard && mkdir -p /data && chown switchyard /data
USER switchyard
# server.data_dir defaults to ./data: keep it on the /data volume.
WORKDIR /data
EXPOSE 8080
# Inside a container, listen on all interfaces; publish the port deliberately (-p 127.0.0.1:8080:8080).
CMD ["switchyard", "serve", "--host", "0.0.0.0", "--port", "8080"]
