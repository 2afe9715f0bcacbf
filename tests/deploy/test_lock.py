"""docker/requirements.lock: the hashed list of Python packages the image installs besides torch.

The lock is written by scripts/lock.sh (`make lock`), which needs PyPI; these tests need nothing.
They check that the lock still answers its inputs: every dependency of pyproject.toml and of the
pinned ComfyUI's requirements is locked at a version its specifier allows, every pin carries a hash,
comfy-cli is at its pin, torch and its CUDA libraries are left to the CUDA index, and the inputs'
fingerprint recorded in the lock's header is the one they have now. The last catches an edit of
pyproject.toml or pins.toml that was not followed by `make lock`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.conftest import REPO

LOCK = REPO / "docker" / "requirements.lock"
COMFYUI_REQUIREMENTS = REPO / "docker" / "comfyui-requirements.txt"
PYPROJECT = REPO / "pyproject.toml"
PINS = REPO / "job" / "comfyui" / "pins.toml"
LOCK_SH = REPO / "scripts" / "lock.sh"
REFRESH = "make lock (scripts/lock.sh)"
# Left to the CUDA index: torch and the CUDA libraries that only torch's wheels may choose.
TORCH_PACKAGES = {"torch", "torchvision", "torchaudio"}
CUDA_LIBRARIES = re.compile(r"nvidia-.*|triton")
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)\s*\\?$")
_HASH = re.compile(r"^--hash=sha256:[0-9a-f]{64}\s*\\?$")


@dataclass
class Lock:
    header: dict[str, str]  # "# key: value" lines before the first pin
    pins: dict[str, str]  # canonical name -> version
    hashes: dict[str, list[str]]


def parse_lock(text: str) -> Lock:
    """The lock's pins and hashes; any line that is neither (nor a comment) fails the parse."""
    header: dict[str, str] = {}
    pins: dict[str, str] = {}
    hashes: dict[str, list[str]] = {}
    current = ""
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            if not pins and (field := re.match(r"#\s*([a-z0-9-]+):\s*(\S.*)$", line)):
                header[field[1]] = field[2]
            continue
        if pin := _PIN.match(line):
            current = canonicalize_name(pin[1])
            assert current not in pins, f"line {number}: {current} is pinned twice"
            pins[current], hashes[current] = pin[2], []
        elif _HASH.match(line) and current:
            hashes[current].append(line.split("=", 1)[1].rstrip(" \\"))
        else:
            pytest.fail(f"line {number} of {LOCK.name} is not a pin, a hash or a comment: {raw!r}")
    return Lock(header, pins, hashes)


def fingerprint(pyproject: dict, comfyui_requirements: str, pins: dict) -> str:
    """sha256 of the lock's inputs, by the recipe scripts/lock.sh writes into the header."""
    inputs = {
        "dependencies": pyproject["project"]["dependencies"],
        "comfyui-requirements": comfyui_requirements,
        **{key: pins[key] for key in ("comfy-cli", "torch", "torchvision", "torchaudio")},
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def stale_reason(lock: Lock, pyproject: dict, comfyui_requirements: str, pins: dict) -> str | None:
    """Why the lock no longer matches its inputs, or None when it does."""
    recorded = lock.header.get("inputs-sha256", "")
    assert re.fullmatch(r"[0-9a-f]{64}", recorded), f"{LOCK.name} records no inputs-sha256 in its header"
    if recorded != fingerprint(pyproject, comfyui_requirements, pins):
        return (
            f"{LOCK.relative_to(REPO)} is stale: pyproject.toml's dependencies, {COMFYUI_REQUIREMENTS.name} or the "
            f"comfy-cli/torch pins of pins.toml changed since it was written. Run {REFRESH} and commit the result."
        )
    return None


def image_environment() -> dict[str, str]:
    """The marker environment of the image's interpreter, as the lock's header names it."""
    lock = parse_lock(LOCK.read_text())
    return {
        "python_version": lock.header["python"],
        "python_full_version": lock.header["python"] + ".0",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "extra": "",
    }


def assert_locked(lock: Lock, requirements: list[str], origin: str) -> int:
    """Each requirement that applies to the image is pinned at a version it allows; returns how many."""
    checked = 0
    for line in requirements:
        requirement = Requirement(line)
        if requirement.marker and not requirement.marker.evaluate(image_environment()):
            continue
        name = canonicalize_name(requirement.name)
        assert name in lock.pins, f"{requirement} ({origin}) is not in {LOCK.name}: run {REFRESH}"
        assert requirement.specifier.contains(lock.pins[name], prereleases=True), (
            f"{LOCK.name} pins {name}=={lock.pins[name]}, which {requirement} ({origin}) excludes: run {REFRESH}"
        )
        checked += 1
    return checked


def requirement_lines(text: str) -> list[str]:
    """The requirements of a requirements.txt, without comments and blank lines."""
    return [line.split(" #")[0].strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


@pytest.fixture(scope="module")
def lock() -> Lock:
    return parse_lock(LOCK.read_text())


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomllib.loads(PYPROJECT.read_text())


@pytest.fixture(scope="module")
def pins() -> dict:
    return tomllib.loads(PINS.read_text())


def test_lock_was_made_from_the_current_inputs(lock: Lock, pyproject: dict, pins: dict):
    reason = stale_reason(lock, pyproject, COMFYUI_REQUIREMENTS.read_text(), pins)
    assert reason is None, reason


def test_a_dependency_added_to_pyproject_makes_the_lock_stale(lock: Lock, pyproject: dict, pins: dict):
    edited = {**pyproject, "project": {**pyproject["project"]}}
    edited["project"]["dependencies"] = [*pyproject["project"]["dependencies"], "tenacity>=9"]
    reason = stale_reason(lock, edited, COMFYUI_REQUIREMENTS.read_text(), pins)
    assert reason and "make lock" in reason


def test_every_project_dependency_is_locked_at_a_version_it_allows(lock: Lock, pyproject: dict):
    dependencies = pyproject["project"]["dependencies"]
    image = image_environment()
    applicable = [d for d in dependencies if (marker := Requirement(d).marker) is None or marker.evaluate(image)]
    assert len(applicable) > 10, f"only {len(applicable)} of pyproject.toml's dependencies apply to the image"
    assert assert_locked(lock, dependencies, "pyproject.toml") == len(applicable)


def test_every_pin_carries_a_hash(lock: Lock):
    assert len(lock.pins) > 50, f"{LOCK.name} holds only {len(lock.pins)} pins"
    unhashed = sorted(name for name, hashes in lock.hashes.items() if not hashes)
    assert not unhashed, f"pinned without --hash (pip --require-hashes refuses them): {unhashed}"


def test_comfy_cli_is_locked_at_its_pin(lock: Lock, pins: dict):
    assert lock.pins.get("comfy-cli") == pins["comfy-cli"], (
        f"{LOCK.name} has comfy-cli {lock.pins.get('comfy-cli')}, pins.toml pins {pins['comfy-cli']}: run {REFRESH}"
    )


def test_torch_and_its_cuda_libraries_are_left_to_the_cuda_index(lock: Lock):
    """From PyPI they would be CUDA 13 builds, which Cloud Run's L4 driver (535) cannot run."""
    assert not TORCH_PACKAGES & set(lock.pins), f"{LOCK.name} pins {TORCH_PACKAGES & set(lock.pins)}"
    cuda = sorted(name for name in lock.pins if CUDA_LIBRARIES.fullmatch(name))
    assert not cuda, f"{LOCK.name} pins torch's CUDA libraries {cuda}; they must come with torch from its index"


def test_comfyui_requirements_are_the_pinned_comfyuis(pins: dict):
    text = COMFYUI_REQUIREMENTS.read_text()
    origin = re.match(r"# ComfyUI (\S+)'s requirements\.txt, as released:\n#   (\S+)\n", text)
    assert origin, f"{COMFYUI_REQUIREMENTS.name} does not say which ComfyUI it comes from"
    assert origin[1] == pins["comfyui"], (
        f"{COMFYUI_REQUIREMENTS.name} is ComfyUI {origin[1]}'s, pins.toml pins {pins['comfyui']}: run {REFRESH}"
    )
    assert origin[2].endswith(f"/v{pins['comfyui']}/requirements.txt"), origin[2]


def test_every_comfyui_requirement_is_locked_at_a_version_it_allows(lock: Lock):
    requirements = requirement_lines(COMFYUI_REQUIREMENTS.read_text())
    others = [r for r in requirements if canonicalize_name(Requirement(r).name) not in TORCH_PACKAGES]
    assert len(others) > 20, f"{COMFYUI_REQUIREMENTS.name} holds only {len(others)} requirements"
    assert assert_locked(lock, others, COMFYUI_REQUIREMENTS.name) == len(others)


def test_lock_targets_the_python_of_the_image(lock: Lock):
    bases = re.findall(r"^FROM python:(\d+\.\d+)[-.]\S* AS (\S+)", (REPO / "Dockerfile").read_text(), re.M)
    python = {stage: version for version, stage in bases}.get("base")
    assert python, "the Dockerfile's base stage is not an official python image"
    locked = lock.header.get("python")
    assert locked == python, f"{LOCK.name} is for Python {locked}, the image runs {python}: run {REFRESH}"
    assert lock.header.get("platform") == "x86_64-manylinux_2_28", lock.header.get("platform")


# ------------------------------------------------------------------------------ scripts/lock.sh --


@pytest.fixture
def uv_standin(tmp_path: Path) -> Path:
    """A stand-in for uv: `pip compile -o FILE` writes one hashed pin to FILE; it records every call."""
    script = tmp_path / "uv-standin"
    script.write_text(
        r"""#!/usr/bin/env bash
printf '%s\n' "$*" >> "$UV_STANDIN_LOG"
cat > /dev/null
while [[ $# -gt 0 ]]; do
  if [[ $1 == --output-file ]]; then printf 'comfy-cli==1.0 \\\n    --hash=sha256:%064d\n' 0 > "$2"; fi
  shift
done
"""
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def test_lock_sh_writes_the_fingerprint_these_tests_recompute(tmp_path: Path, uv_standin: Path):
    """The script's recipe and this file's agree, on a copy of the repository (uv stood in for)."""
    root = tmp_path / "repo"
    for path in (LOCK_SH, PYPROJECT, PINS):
        (root / path.relative_to(REPO)).parent.mkdir(parents=True, exist_ok=True)
        (root / path.relative_to(REPO)).write_bytes(path.read_bytes())
    (root / "docker").mkdir()
    (root / "scripts" / "lock.sh").chmod(0o755)
    pins = tomllib.loads(PINS.read_text())
    comfyui = tmp_path / "ComfyUI"
    comfyui.mkdir()
    (comfyui / "comfyui_version.py").write_text(f'__version__ = "{pins["comfyui"]}"\n')
    (comfyui / "requirements.txt").write_text("torch\nnumpy>=1.25.0\n#non essential dependencies:\nkornia")
    log = tmp_path / "uv.log"
    env = {
        **os.environ,
        "UV": str(uv_standin),
        "UV_STANDIN_LOG": str(log),
        "COMFYUI_SRC": str(comfyui),
        "PYTHON": sys.executable,
    }
    result = subprocess.run(
        ["bash", str(root / "scripts" / "lock.sh")], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0, result.stderr

    copied = (root / "docker" / "comfyui-requirements.txt").read_text()
    assert requirement_lines(copied) == ["torch", "numpy>=1.25.0", "kornia"]
    written = parse_lock((root / "docker" / "requirements.lock").read_text())
    expected = fingerprint(tomllib.loads(PYPROJECT.read_text()), copied, pins)
    assert written.header["inputs-sha256"] == expected
    assert written.pins == {"comfy-cli": "1.0"}
    compiles = log.read_text().splitlines()
    assert len(compiles) == 2, compiles  # the lock, then the check beside the pinned torch
    assert "--generate-hashes" in compiles[0] and "--python-version 3.12" in compiles[0]
    assert f"--python-platform {written.header['platform']}" in compiles[0]
    assert "--constraint" in compiles[1]
