# syntax=docker/dockerfile:1.7
#
# worker-comfyui: one image for the Cloud Run job (`worker-comfyui job`) and the /predict service
# (`worker-comfyui serve`, the default command). Build with BuildKit (docker buildx, Cloud Build
# with DOCKER_BUILDKIT=1):
#
#   docker build --build-arg MODEL_TYPE=sdxl \
#     --secret id=hf_token,env=HUGGINGFACE_ACCESS_TOKEN -t worker-comfyui:sdxl .
#
# Layers, bottom to top: CUDA runtime and Python; torch and ComfyUI (versions from
# job/comfyui/pins.toml); custom nodes (custom_nodes.txt); the models of MODEL_TYPE (fetched in a
# separate downloader stage); this project. A code change rebuilds only the top layer; a MODEL_TYPE
# change rebuilds the models and the project, never torch or ComfyUI.
#
# CUDA: Cloud Run's L4 driver is 535.x (CUDA 12.2). The base is the CUDA 12.2 runtime, and torch
# comes from a CUDA 12.x wheel index, which runs on that driver through CUDA minor-version
# compatibility. A CUDA 13 torch would need driver >= 580, so the build refuses one. See
# docs/deployment.md, "GPU driver and CUDA".

ARG MODEL_TYPE=flux1-dev-fp8

# uv provides a standalone CPython 3.12; Ubuntu 22.04 ships 3.10 and the project needs >= 3.11.
FROM ghcr.io/astral-sh/uv:0.13.9 AS uv

# ------------------------------------------------------------------------------------- models --
# Independent of every other stage: changing MODEL_TYPE re-runs only this stage and the copy below.
FROM ubuntu:22.04 AS downloader
ARG MODEL_TYPE
# Why DL3064: the token is accepted as a build argument for builds that pass it the seed's way. It
# lives only in this stage, which the final image does not inherit; prefer `--secret id=hf_token`.
# hadolint ignore=DL3064
ARG HUGGINGFACE_ACCESS_TOKEN=""
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Why DL3008: Ubuntu's archive drops superseded package versions, so exact pins break rebuilds;
# the base tag is pinned and this stage only needs a working curl.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*
COPY docker/models.txt docker/download_models.sh /build/
RUN --mount=type=secret,id=hf_token,required=false \
    HF_TOKEN_FILE=/run/secrets/hf_token /build/download_models.sh "${MODEL_TYPE}" /models /build/models.txt

# --------------------------------------------------------------------------- CUDA and Python --
FROM nvidia/cuda:12.2.2-runtime-ubuntu22.04 AS base
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_PYTHON_INSTALL_DIR=/opt/python \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:${PATH} \
    COMFYUI_DIR=/opt/comfyui/ComfyUI
# git: ComfyUI and git-pinned custom nodes are cloned; tini: PID 1 that forwards SIGTERM and reaps;
# libgl1 and libglib2.0-0: OpenCV, which many custom nodes import.
# Why DL3008: as above; the CUDA base tag pins the distribution snapshot.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates git tini libgl1 libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=uv /uv /usr/local/bin/uv
RUN uv venv --seed --python 3.12 "${VIRTUAL_ENV}"

# ------------------------------------------------------------------------ torch and ComfyUI --
FROM base AS comfyui
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# A CUDA 12.x wheel index; see the note at the top before changing it.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
COPY job/comfyui/pins.toml /opt/worker/pins.toml
# The pins come from the same file the local installer reads. torch, torchvision and torchaudio are
# installed first from the CUDA index and then frozen into a constraints file (PIP_CONSTRAINT below),
# so neither ComfyUI's requirements nor a custom node can swap them for a CPU or CUDA 13 build.
# ComfyUI's sources are byte-compiled here: at run time the non-root user cannot write __pycache__,
# and every cold start would compile them again.
# Why DL3013: torchaudio has no pin of its own; pip picks the release that matches the pinned torch,
# and the freeze right after fixes it for every later install.
# hadolint ignore=DL3013
RUN pin() { python -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))[sys.argv[2]])' /opt/worker/pins.toml "$1"; } \
 && comfyui_version="$(pin comfyui)" \
 && pip install "comfy-cli==$(pin comfy-cli)" \
 && pip install --index-url "${TORCH_INDEX_URL}" "torch==$(pin torch)" "torchvision==$(pin torchvision)" torchaudio \
 && python -c 'import sys, torch; cuda = torch.version.cuda or "none"; sys.exit(0 if cuda.startswith("12.") else f"torch {torch.__version__} is built for CUDA {cuda}; Cloud Run L4 (driver 535, CUDA 12.2) needs a CUDA 12.x build: set TORCH_INDEX_URL")' \
 && pip freeze | grep -E '^(torch|torchvision|torchaudio)==' > /opt/worker/constraints.txt \
 && PIP_CONSTRAINT=/opt/worker/constraints.txt \
    comfy --skip-prompt --workspace "${COMFYUI_DIR}" install --nvidia --version "${comfyui_version}" --skip-torch-or-directml --skip-manager \
 && python -c 'import runpy, sys; v = runpy.run_path(sys.argv[1])["__version__"]; sys.exit(0 if v == sys.argv[2] else f"ComfyUI {v} installed, {sys.argv[2]} pinned")' \
      "${COMFYUI_DIR}/comfyui_version.py" "${comfyui_version}" \
 && python -m compileall -q -x '/(custom_nodes|tests|tests-unit)/' "${COMFYUI_DIR}" > /dev/null
ENV PIP_CONSTRAINT=/opt/worker/constraints.txt

# Custom nodes from the pinned list; any failed install fails the build. ComfyUI-Manager is not
# installed (--skip-manager above): the worker never changes nodes at run time.
COPY custom_nodes.txt docker/install_custom_nodes.sh /opt/worker/
RUN PYTHON=python /opt/worker/install_custom_nodes.sh /opt/worker/custom_nodes.txt "${COMFYUI_DIR}"

# ------------------------------------------------------------------------------------ runtime --
FROM comfyui AS runtime
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG MODEL_TYPE
ENV MODEL_TYPE=${MODEL_TYPE} \
    PORT=8080 \
    HOME=/home/worker

# A non-root user, who may write only where the worker writes at run time: ComfyUI's input,
# output, temp and user folders, models/ (MODELS_URI copies models there at boot) and the ComfyUI
# folder itself, not recursively (extra_model_paths.yaml for MODELS_MOUNT).
WORKDIR ${COMFYUI_DIR}
RUN useradd --create-home --uid 10001 --user-group --shell /usr/sbin/nologin worker \
 && mkdir -p input output temp user models \
 && chown -R worker:worker input output temp user models \
 && chown worker:worker .

COPY --from=downloader --chown=10001:10001 /models/ ${COMFYUI_DIR}/models/

WORKDIR /opt/worker/src
COPY pyproject.toml README.md ./
COPY job ./job
COPY trigger ./trigger
RUN pip install . && rm -rf /opt/worker/src/build

USER 10001:10001
WORKDIR /home/worker
EXPOSE 8080
# tini is PID 1: it forwards SIGTERM from Cloud Run to worker-comfyui and reaps orphans. The job
# overrides only the arguments (`worker-comfyui job`), so tini stays in front of both commands.
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["worker-comfyui", "serve"]
