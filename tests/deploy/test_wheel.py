"""What the image installs (`pip install .` in the Dockerfile): the worker and the trigger, never the
local stand-ins of Google Cloud, which exist for source checkouts (make demo, the tests)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the wheel built from a copy of the sources (the checkout stays clean)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for package in ("job", "trigger"):
        shutil.copytree(REPO / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(src)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    return out


@pytest.fixture(scope="module")
def wheel_names(wheel_dir: Path) -> set[str]:
    (wheel,) = wheel_dir.glob("worker_comfyui-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def test_the_wheel_leaves_the_local_stand_ins_out(wheel_names: set[str]) -> None:
    assert not [name for name in wheel_names if name.startswith("job/devstack/")]


def test_the_wheel_carries_the_worker_the_trigger_and_the_pins(wheel_names: set[str]) -> None:
    for package in ("job/engine", "job/items", "job/storage", "job/comfyui", "job/service", "job/client", "trigger"):
        assert f"{package}/__init__.py" in wheel_names, package
    assert {"job/comfyui/pins.toml", "job/cli.py", "job/client/local_stack.py", "trigger/main.py"} <= wheel_names


def test_the_cli_runs_from_the_wheel_without_the_stand_ins(wheel_dir: Path) -> None:
    """Imported from the wheel's own files, as in the image, `worker-comfyui --help` works and offers no `dev`.

    This checkout's editable install would find job/devstack for any `job` package, so its finder
    is taken off the import path first."""
    unpacked = wheel_dir / "unpacked"
    with zipfile.ZipFile(next(wheel_dir.glob("worker_comfyui-*.whl"))) as archive:
        archive.extractall(unpacked)
    code = (
        "import sys; sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in getattr(f, '__module__', '')]; "
        "from job.cli import main; sys.exit(main(['--help']))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=unpacked, capture_output=True, text=True, timeout=60, env={"PYTHONPATH": str(unpacked), "PATH": "/usr/bin"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    offered = re.findall(r"^    (\w+)  ", result.stdout, re.MULTILINE)
    assert offered == ["comfyui", "run", "job", "serve", "submit", "batch"], result.stdout
