#!/usr/bin/env bash
# Refresh docker/requirements.lock, the hashed list of every Python package the image installs
# besides torch, torchvision and torchaudio (those come from the CUDA index: docker/torch-matrix.toml).
# `make lock` runs this; run it after changing pyproject.toml's dependencies or a pin in
# job/comfyui/pins.toml (tests/deploy/test_lock.py fails until you do).
#
#   scripts/lock.sh                                # keep the locked versions that still fit
#   scripts/lock.sh --upgrade                      # any `uv pip compile` option: --upgrade-package X, ...
#   COMFYUI_SRC=/path/to/ComfyUI scripts/lock.sh   # ComfyUI's requirements.txt from a local tree
#
# Inputs: pyproject.toml's [project.dependencies]; ComfyUI's requirements.txt at the pinned version,
# copied to docker/comfyui-requirements.txt (from GitHub, or from COMFYUI_SRC after checking its
# version); comfy-cli at its pin. The lock targets the image's interpreter: CPython 3.12 on
# x86_64 manylinux_2_28, wheels only. It is then resolved once more together with the pinned torch,
# torchvision and torchaudio, so a lock that the pinned torch cannot live with fails here, not in
# the image build. Needs uv (`pip install uv`, or UV=/path/to/uv), Python >= 3.11 and PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."

LOCK=docker/requirements.lock
COMFYUI_REQUIREMENTS=docker/comfyui-requirements.txt
PYTHON_VERSION=3.12
PLATFORM=x86_64-manylinux_2_28
INDEX_URL=${LOCK_INDEX_URL:-https://pypi.org/simple}

die() {
  echo "lock.sh: $*" >&2
  exit 1
}

python=${PYTHON:-}
if [[ -z $python ]]; then
  if [[ -x .venv/bin/python ]]; then python=.venv/bin/python; else python=python3; fi
fi
uv=${UV:-}
if [[ -z $uv ]]; then
  if [[ -x .venv/bin/uv ]]; then
    uv=.venv/bin/uv
  elif command -v uv > /dev/null; then
    uv=uv
  else
    die "uv not found: pip install uv (or set UV=/path/to/uv)"
  fi
fi

pin() { "$python" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))[sys.argv[2]])' job/comfyui/pins.toml "$1"; }
comfyui=$(pin comfyui)
comfy_cli=$(pin comfy-cli)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# 1. ComfyUI's requirements.txt at the pinned version, copied with a header naming its origin. The
#    header is the same wherever the file was read, so the inputs' fingerprint is too.
url="https://raw.githubusercontent.com/comfyanonymous/ComfyUI/v${comfyui}/requirements.txt"
if [[ -n ${COMFYUI_SRC:-} ]]; then
  found=$("$python" -c 'import runpy, sys; print(runpy.run_path(sys.argv[1])["__version__"])' \
    "$COMFYUI_SRC/comfyui_version.py") || die "$COMFYUI_SRC holds no comfyui_version.py"
  [[ $found == "$comfyui" ]] || die "$COMFYUI_SRC is ComfyUI $found; job/comfyui/pins.toml pins $comfyui"
  cp "$COMFYUI_SRC/requirements.txt" "$work/comfyui.txt"
else
  curl -fsSL --retry 3 "$url" -o "$work/comfyui.txt" || die "cannot fetch $url (set COMFYUI_SRC to a ComfyUI $comfyui tree)"
fi
{
  echo "# ComfyUI ${comfyui}'s requirements.txt, as released:"
  echo "#   $url"
  echo "# An input of docker/requirements.lock, written by scripts/lock.sh (make lock): do not edit. The"
  echo "# image build compares it with the cloned ComfyUI's requirements.txt and fails if they differ."
  cat "$work/comfyui.txt"
  # The released file may end without a newline; the build compares lines, not bytes.
  [[ -z $(tail -c 1 "$work/comfyui.txt") ]] || echo
} > "$COMFYUI_REQUIREMENTS"

# 2. The lock. torch, torchvision and torchaudio are overridden away (a marker that never holds), so
#    neither they nor their CUDA libraries (nvidia-*, triton) from PyPI's CUDA 13 build enter it.
printf '%s; sys_platform == "never"\n' torch torchvision torchaudio > "$work/no-torch.txt"
compile=("$uv" pip compile --no-config --quiet --index-url "$INDEX_URL" --python-version "$PYTHON_VERSION"
  --python-platform "$PLATFORM" --only-binary :all:)
if [[ -f $LOCK ]]; then cp "$LOCK" "$work/lock.txt"; fi # uv keeps the versions of the file it rewrites
echo "comfy-cli==$comfy_cli" | "${compile[@]}" --generate-hashes --override "$work/no-torch.txt" \
  --custom-compile-command "scripts/lock.sh" --output-file "$work/lock.txt" "$@" \
  pyproject.toml "$COMFYUI_REQUIREMENTS" -

# 3. The same inputs with the pinned torch, torchvision and torchaudio, held to the lock's versions.
printf '%s\n' "comfy-cli==$comfy_cli" "torch==$(pin torch)" "torchvision==$(pin torchvision)" \
  "torchaudio==$(pin torchaudio)" |
  "${compile[@]}" --no-header --no-annotate --constraint "$work/lock.txt" \
    pyproject.toml "$COMFYUI_REQUIREMENTS" - > /dev/null ||
  die "the new lock does not resolve beside torch $(pin torch), torchvision $(pin torchvision), torchaudio $(pin torchaudio)"

# 4. The fingerprint of the inputs, which tests/deploy/test_lock.py recomputes to catch a stale lock.
fingerprint=$("$python" - << 'EOF'
import hashlib
import json
import tomllib
from pathlib import Path

pins = tomllib.loads(Path("job/comfyui/pins.toml").read_text())
inputs = {
    "dependencies": tomllib.loads(Path("pyproject.toml").read_text())["project"]["dependencies"],
    "comfyui-requirements": Path("docker/comfyui-requirements.txt").read_text(),
    **{key: pins[key] for key in ("comfy-cli", "torch", "torchvision", "torchaudio")},
}
print(hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest())
EOF
)
{
  echo "# Every Python package the image installs besides torch, torchvision and torchaudio, pinned with"
  echo "# hashes (the Dockerfile runs pip install --require-hashes --no-deps on it). Those three, and their"
  echo "# own dependencies, come from the CUDA index (docker/torch-matrix.toml): the refresh reaches PyPI"
  echo "# only, so it cannot take their hashes; pins.toml holds their versions and the build checks CUDA 12."
  echo "# Do not edit: run make lock (scripts/lock.sh)."
  echo "# python: $PYTHON_VERSION"
  echo "# platform: $PLATFORM"
  echo "# inputs: pyproject.toml [project.dependencies], $COMFYUI_REQUIREMENTS, and the comfy-cli,"
  echo "#   torch, torchvision and torchaudio pins of job/comfyui/pins.toml"
  echo "# inputs-sha256: $fingerprint"
  cat "$work/lock.txt"
} > "$LOCK"
echo "lock.sh: wrote $LOCK ($(grep -c '^[a-z0-9]' "$LOCK") packages) and $COMFYUI_REQUIREMENTS" >&2
