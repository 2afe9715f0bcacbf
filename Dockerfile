# syntax=docker/dockerfile:1.7
#
# worker-comfyui: one image for the Cloud Run job (`worker-comfyui job`) and the /predict service
# (`worker-comfyui serve`, the default command). Build with BuildKit (docker buildx, Cloud Build
# with DOCKER_BUILDKIT=1):
#
#   docker build --build-arg MODEL_TYPE=sdxl \
#     --secret id=hf_token,env=HUGGINGFACE_ACCESS_TOKEN -t worker-comfyui:sdxl .
#
# Layers, bottom to top: Debian and Python; torch, torchvision and torchaudio (versions from
# job/comfyui/pins.toml, wheels from a CUDA 12 index); the locked Python packages
# (docker/requirements.lock) and ComfyUI; custom nodes (custom_nodes.txt); the models of MODEL_TYPE
# (fetched in a separate downloader stage); this project. A code change rebuilds only the top
# layer; a MODEL_TYPE change rebuilds the models and the project, never torch or ComfyUI.
#
# CUDA: Cloud Run's L4 driver is 535.216.03 (CUDA 12.2). torch comes from the CUDA 12.6 wheel
# index and brings its own CUDA 12.6 runtime libraries (the nvidia-*-cu12 wheels), which run on
# that driver through CUDA minor-version compatibility. A CUDA 13 build would need driver >= 580,
# so the build refuses one. docker/torch-matrix.toml lists the known-good sets with their sources;
# docs/deployment.md, "GPU driver and CUDA", explains them.
#
# Base: python:3.12-slim-bookworm (Debian 12, CPython 3.12, which the lock is compiled for), not
# nvidia/cuda. Nothing here uses a CUDA base's libraries: the torch wheels carry their CUDA runtime,
# and Cloud Run injects the driver. The nvidia/cuda 12.2 tags follow the R535 driver branch, which
# has reached end of life, and NVIDIA may withdraw such tags
# (https://gitlab.com/nvidia/container-images/cuda/-/blob/master/doc/support-policy.md). The base
# stage sets what the NVIDIA container runtime reads, as nvidia/cuda images do (NVIDIA_* below).

ARG MODEL_TYPE=flux1-dev-fp8

# ------------------------------------------------------------------------------------- models --
# Independent of every other stage: changing MODEL_TYPE re-runs only this stage and the copy below.
FROM python:3.12-slim-bookworm AS downloader
ARG MODEL_TYPE
# Why DL3064: the token is accepted as a build argument for builds that pass it the seed's way. It
# lives only in this stage, which the final image does not inherit; prefer `--secret id=hf_token`.
# hadolint ignore=DL3064
ARG HUGGINGFACE_ACCESS_TOKEN=""
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Why DL3008: Debian's archive drops superseded package versions, so exact pins break rebuilds;
# the base tag fixes the Debian release and this stage only needs a working curl.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*
COPY docker/models.txt docker/download_models.sh /build/
RUN --mount=type=secret,id=hf_token,required=false \
    HF_TOKEN_FILE=/run/secrets/hf_token /build/download_models.sh "${MODEL_TYPE}" /models /build/models.txt

# ------------------------------------------------------------------------- Debian and Python --
FROM python:3.12-slim-bookworm AS base
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# NVIDIA_VISIBLE_DEVICES and NVIDIA_DRIVER_CAPABILITIES ask the NVIDIA container runtime for the
# GPU and the driver's compute (CUDA) and utility (nvidia-smi) libraries; without a CUDA base image
# nothing else sets them. LD_LIBRARY_PATH and the PATH entry are where that runtime mounts the
# driver, as in nvidia/cuda's images. No NVIDIA_REQUIRE_CUDA: the driver check is the build's own.
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    LD_LIBRARY_PATH=/usr/local/nvidia/lib:/usr/local/nvidia/lib64 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:/usr/local/nvidia/bin:${PATH} \
    COMFYUI_DIR=/opt/comfyui/ComfyUI
# git: ComfyUI and git-pinned custom nodes are cloned; tini: PID 1 that forwards SIGTERM and reaps;
# libgl1 and libglib2.0-0: OpenCV, which many custom nodes import.
# Why DL3008: as above; the base tag fixes the Debian release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates git tini libgl1 libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv "${VIRTUAL_ENV}"

# ------------------------------------------------------------------------ torch and ComfyUI --
FROM base AS comfyui
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# A CUDA 12.x wheel index: cu126, the only CUDA 12 build of torch 2.14. Read docker/torch-matrix.toml
# before changing it; a CUDA 13 index does not run on the L4's driver.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126
COPY job/comfyui/pins.toml /opt/worker/pins.toml
# torch, torchvision and torchaudio at the pins.toml versions, all three from the CUDA index, in a
# layer of their own (the largest, and the one that changes least). torch brings its dependencies
# from that index; torchvision and torchaudio come --no-deps, so pip cannot fetch a second torch
# (torchvision's numpy and pillow come hashed from the lock below). torchaudio is the CUDA index's,
# not PyPI's: PyPI has none for torch 2.14, and its torchaudio 2.11 is a CUDA 13.2 build that refuses
# to import beside a CUDA 12 torch. torchaudio 2.11 is built on torch's stable ABI (it requires
# torch >= 2.11) and runs beside 2.14. The build fails unless torch is a CUDA 12 build; the freeze
# then becomes the constraints file (PIP_CONSTRAINT below) that keeps custom nodes from swapping any
# of the three.
RUN pin() { python -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))[sys.argv[2]])' /opt/worker/pins.toml "$1"; } \
 && pip install --index-url "${TORCH_INDEX_URL}" "torch==$(pin torch)" \
 && pip install --index-url "${TORCH_INDEX_URL}" --no-deps "torchvision==$(pin torchvision)" "torchaudio==$(pin torchaudio)" \
 && python -c 'import sys, torch; cuda = torch.version.cuda or "none"; sys.exit(0 if cuda.startswith("12.") else f"torch {torch.__version__} is built for CUDA {cuda}; Cloud Run L4 (driver 535, CUDA 12.2) needs a CUDA 12.x build: set TORCH_INDEX_URL")' \
 && pip freeze | grep -E '^(torch|torchvision|torchaudio)==' > /opt/worker/constraints.txt

# Everything else, from the lock (scripts/lock.sh, `make lock`): ComfyUI's requirements, comfy-cli and
# this project's dependencies, each at a hashed version, installed --no-deps so nothing unlocked
# slips in. comfy-cli then installs ComfyUI at the pinned version with --skip-requirement (the lock
# already holds its requirements); the build fails if the cloned requirements.txt is not the one
# the lock was made from, or if `pip check` finds an unmet requirement. ComfyUI's sources are
# byte-compiled here: at run time the non-root user cannot write __pycache__, and every cold start
# would compile them again.
COPY docker/requirements.lock docker/comfyui-requirements.txt /opt/worker/
RUN pin() { python -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))[sys.argv[2]])' /opt/worker/pins.toml "$1"; } \
 && comfyui_version="$(pin comfyui)" \
 && pip install --require-hashes --no-deps --only-binary :all: -r /opt/worker/requirements.lock \
 && python -c 'import sys, importlib.metadata as m; v = m.version("comfy-cli"); sys.exit(0 if v == sys.argv[1] else f"comfy-cli {v} is locked, {sys.argv[1]} pinned: run scripts/lock.sh")' "$(pin comfy-cli)" \
 && python -c 'import torch, torchvision, torchaudio' \
 && comfy --skip-prompt --workspace "${COMFYUI_DIR}" install --nvidia --version "${comfyui_version}" --skip-torch-or-directml --skip-requirement --skip-manager \
 && grep -Ev '^\s*(#|$)' /opt/worker/comfyui-requirements.txt > /tmp/locked-requirements.txt \
 && grep -Ev '^\s*(#|$)' "${COMFYUI_DIR}/requirements.txt" > /tmp/cloned-requirements.txt \
 && if ! diff -u /tmp/locked-requirements.txt /tmp/cloned-requirements.txt; then \
      echo "ComfyUI ${comfyui_version}'s requirements.txt is not docker/comfyui-requirements.txt: run scripts/lock.sh" >&2; exit 1; \
    fi \
 && rm /tmp/locked-requirements.txt /tmp/cloned-requirements.txt \
 && python -c 'import runpy, sys; v = runpy.run_path(sys.argv[1])["__version__"]; sys.exit(0 if v == sys.argv[2] else f"ComfyUI {v} installed, {sys.argv[2]} pinned")' \
      "${COMFYUI_DIR}/comfyui_version.py" "${comfyui_version}" \
 && pip check \
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

# The project's dependencies are in the lock, installed above: --no-deps, and `pip check` proves
# they are all met (also after the custom nodes' requirements).
WORKDIR /opt/worker/src
COPY pyproject.toml README.md ./
COPY job ./job
COPY trigger ./trigger
RUN pip install --no-deps . && pip check && rm -rf /opt/worker/src/build

USER 10001:10001
WORKDIR /home/worker
EXPOSE 8080
# tini is PID 1: it forwards SIGTERM from Cloud Run to worker-comfyui and reaps orphans. The job
# overrides only the arguments (`worker-comfyui job`), so tini stays in front of both commands.
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["worker-comfyui", "serve"]
