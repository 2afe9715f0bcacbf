"""The torch set the image installs is a known one that Cloud Run's L4 driver runs.

docker/torch-matrix.toml lists torch / torchvision / torchaudio sets with their index, their CUDA
build and their sources; its [l4] table says which CUDA majors Cloud Run's L4 driver (535, CUDA
12.2) runs. job/comfyui/pins.toml must pin a set of that table, and the Dockerfile must install it
from that set's index. So a torch bump without evidence, or a switch to a CUDA 13 index, fails
here with the reason, before an image is built that cannot start on Cloud Run.
"""

from __future__ import annotations

import re
import tomllib
from typing import Any

import pytest

from tests.deploy.conftest import REPO

MATRIX = REPO / "docker" / "torch-matrix.toml"
PINS = REPO / "job" / "comfyui" / "pins.toml"
DOCKERFILE = REPO / "Dockerfile"
TRIO = ("torch", "torchvision", "torchaudio")


@pytest.fixture(scope="module")
def matrix() -> dict[str, Any]:
    return tomllib.loads(MATRIX.read_text())


@pytest.fixture(scope="module")
def pins() -> dict[str, str]:
    return tomllib.loads(PINS.read_text())


def dockerfile_index() -> str:
    """The default of the Dockerfile's TORCH_INDEX_URL."""
    found = re.findall(r"^ARG TORCH_INDEX_URL=(\S+)$", DOCKERFILE.read_text(), re.M)
    assert len(found) == 1, f"the Dockerfile declares TORCH_INDEX_URL {len(found)} times"
    return found[0]


def image_set(matrix: dict[str, Any], pins: dict[str, str], index: str) -> dict[str, Any]:
    """The matrix's set for these pins and index, if the L4 runs it; else fail with the reason."""
    where = ", ".join(f"{key} {pins[key]}" for key in TRIO)
    l4 = matrix["l4"]
    driver = f"Cloud Run's L4 driver ({l4['driver']}, CUDA {l4['cuda']})"
    known = [s for s in matrix["set"] if all(s[key] == pins[key] for key in TRIO)]
    if not known:
        pytest.fail(
            f"{where} (job/comfyui/pins.toml) is not a set of {MATRIX.name}: add it, with sources that it imports "
            f"together and a CUDA 12 build on its index, before pinning it; {driver} runs no CUDA 13 build"
        )
    chosen = next((s for s in known if s["index"] == index), None)
    if chosen is None:
        pytest.fail(f"{MATRIX.name} has {where} on {[s['index'] for s in known]}, not on the Dockerfile's {index}")
    major = int(chosen["cuda"].split(".")[0])
    if major not in l4["runs_cuda_majors"] or not chosen["runs_on_l4"]:
        pytest.fail(
            f"{index} is a CUDA {chosen['cuda']} build: {driver} runs CUDA {l4['runs_cuda_majors']} builds only "
            f"(CUDA 13 needs driver >= 580). Keep a CUDA 12 index until Cloud Run documents a newer driver"
        )
    return chosen


def test_the_image_installs_a_known_set_the_l4_driver_runs(matrix: dict[str, Any], pins: dict[str, str]):
    chosen = image_set(matrix, pins, dockerfile_index())
    assert chosen["runs_on_l4"] is True
    assert chosen["cuda"].startswith("12."), chosen["cuda"]


def test_torchaudio_comes_from_where_the_set_says(matrix: dict[str, Any], pins: dict[str, str]):
    """PyPI's torchaudio is a CUDA 13 build; the image's set takes it from the CUDA index."""
    chosen = image_set(matrix, pins, dockerfile_index())
    install = re.search(r'pip install (.*)"torchaudio==\$\(pin torchaudio\)"', DOCKERFILE.read_text())
    assert install, "the Dockerfile does not install torchaudio at its pin"
    source = chosen["index"] if '--index-url "${TORCH_INDEX_URL}"' in install[1] else "https://pypi.org/simple"
    assert source == chosen["torchaudio_index"], f"torchaudio comes from {source}, the set says {chosen}"


def test_a_torch_bump_without_a_set_fails_naming_the_matrix(matrix: dict[str, Any], pins: dict[str, str]):
    with pytest.raises(pytest.fail.Exception, match=r"not a set of torch-matrix\.toml"):
        image_set(matrix, {**pins, "torch": "2.15.0"}, dockerfile_index())


def test_a_cuda_13_index_fails_naming_the_l4_driver(matrix: dict[str, Any], pins: dict[str, str]):
    with pytest.raises(pytest.fail.Exception, match=r"L4 driver \(535[.\d]*, CUDA 12\.2\) runs CUDA \[12\]"):
        image_set(matrix, pins, "https://download.pytorch.org/whl/cu130")


def test_every_set_is_sourced_and_consistent(matrix: dict[str, Any]):
    """A set says where its facts come from, and its index tag, CUDA and L4 verdict agree."""
    sets = matrix["set"]
    assert sets, f"{MATRIX.name} lists no sets"
    l4_majors = matrix["l4"]["runs_cuda_majors"]
    assert l4_majors == [12], "Cloud Run documents driver 535 (CUDA 12.2): update the sources with the majors"
    assert matrix["l4"]["sources"], "the driver's version has no source"
    for entry in sets:
        name = f"torch {entry['torch']} on {entry['index']}"
        assert entry["sources"] and all(isinstance(s, str) and s for s in entry["sources"]), f"{name}: no sources"
        tag = re.fullmatch(r"https://download\.pytorch\.org/whl/cu(\d+)(\d)", entry["index"])
        assert tag, f"{name}: not a CUDA wheel index"
        assert entry["cuda"] == f"{tag[1]}.{tag[2]}", f"{name}: index says CUDA {tag[1]}.{tag[2]}, set {entry['cuda']}"
        runs = int(entry["cuda"].split(".")[0]) in l4_majors
        assert entry["runs_on_l4"] is runs, f"{name}: runs_on_l4 is {entry['runs_on_l4']}, CUDA {entry['cuda']}"
