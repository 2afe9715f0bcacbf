""" "random" seeds are reproducible: the same batch id and item index give the same seed, in every
run, and each item's result.json records the seed it ran with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from job.batch.plan import plan_items, random_seed
from job.batch.spec import load_batch
from job.cli import build_parser
from job.commands.batch import batch_run_command
from job.settings import Settings
from job.storage import Storages
from tests.batch.conftest import noise_workflow

SPEC = {
    "id": "seeded",
    "workflow": noise_workflow(),
    "items": [
        {"id": "fixed", "overrides": {"2": {"seed": 42}}},
        {"id": "drawn-a", "overrides": {"2": {"seed": "random"}}},
        {"id": "drawn-b", "overrides": {"2": {"seed": "random", "strength": 0.9}}},
    ],
}


def write_spec(folder: Path, doc: dict, name: str = "seeded.batch.json") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps(doc))
    return path


def seeds_of(path: Path, **settings) -> list[dict[str, int]]:
    batch = load_batch(str(path), Storages(), Settings(outbox_uri=None, **settings))
    return [item.seeds for item in plan_items(batch)]


def test_random_seed_depends_on_batch_id_and_index_only(tmp_path):
    first = seeds_of(write_spec(tmp_path / "a", SPEC))
    again = seeds_of(write_spec(tmp_path / "b", SPEC))
    other_id = seeds_of(write_spec(tmp_path / "c", {**SPEC, "id": "seeded-2"}))

    assert (
        first
        == again
        == [{}, {"2.seed": random_seed("seeded", 1, "2", "seed")}, {"2.seed": random_seed("seeded", 2, "2", "seed")}]
    )
    assert first[1] != first[2]  # each index its own seed
    assert other_id[1:] != first[1:]
    assert all(0 <= seed < 2**32 for item in first for seed in item.values())


def test_execution_placeholder_gives_each_execution_its_own_seeds_and_folder(tmp_path):
    path = write_spec(tmp_path, {**SPEC, "id": "nightly-{execution}", "prefix": str(tmp_path / "out/{execution}")})

    monday = load_batch(str(path), Storages(), Settings(outbox_uri=None, cloud_run_execution="job-abc12"))
    tuesday = load_batch(str(path), Storages(), Settings(outbox_uri=None, cloud_run_execution="job-def34"))

    assert (monday.id, monday.prefix) == ("nightly-job-abc12", f"{tmp_path}/out/job-abc12/")
    assert tuesday.id == "nightly-job-def34"
    assert plan_items(monday)[1].seeds != plan_items(tuesday)[1].seeds


@pytest.mark.comfyui
def test_two_runs_of_one_batch_record_the_same_seeds_and_make_the_same_images(tmp_path, comfy_server):
    path = write_spec(tmp_path, SPEC)
    settings = Settings(comfyui_url=comfy_server.base_url, outbox_uri=None, cloud_run_execution=None)
    runs = []
    for name in ("first", "second"):
        args = build_parser().parse_args(["batch", "run", str(path), "--tasks", "2", "--prefix", str(tmp_path / name)])
        assert batch_run_command(args, settings) == 0
        runs.append(
            {
                item["id"]: json.loads((tmp_path / name / item["id"] / "result.json").read_text())
                for item in SPEC["items"]
            }
        )

    first, second = runs
    for item_id in ("fixed", "drawn-a", "drawn-b"):
        assert first[item_id]["batch"]["seeds"] == second[item_id]["batch"]["seeds"]
        assert first[item_id]["batch"]["overrides"] == second[item_id]["batch"]["overrides"]
        # Every pixel alike (ImageAddNoise draws its noise from the seed); the PNG's embedded prompt
        # differs by each run's own cache key (docs/api.md section 2), so the files' bytes do not.
        images = [_pixels(Path(run[item_id]["images"][0]["uri"])) for run in runs]
        assert images[0] == images[1]
    assert first["fixed"]["batch"]["seeds"] == {}
    assert first["fixed"]["batch"]["overrides"] == {"2": {"seed": 42}}
    assert first["drawn-a"]["batch"]["overrides"] == {"2": {"seed": random_seed("seeded", 1, "2", "seed")}}
    assert first["drawn-b"]["batch"]["overrides"]["2"]["strength"] == 0.9
    distinct = {Path(first[item_id]["images"][0]["uri"]).read_bytes() for item_id in first}
    assert len(distinct) == 3
    summary = json.loads((tmp_path / "first" / "summary.json").read_text())
    assert summary["counts"] == {"items": 3, "succeeded": 3, "failed": 0}


def _pixels(path: Path) -> tuple[str, tuple[int, int], bytes]:
    with Image.open(path) as image:
        return image.mode, image.size, image.tobytes()
