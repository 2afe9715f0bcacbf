"""Models from outside the image: a parallel copy from GCS (fake-gcs-server) or a folder, and a
mounted volume mapped with extra_model_paths.yaml that ComfyUI's own loader then reads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from job.comfyui import model_sync
from job.comfyui.install import install_comfyui
from job.comfyui.model_sync import sync_models
from job.comfyui.mount import write_extra_model_paths
from job.comfyui.process import ComfyServer
from job.devstack.gcs_emulator import GcsEmulator
from job.errors import ComfyUnavailable, ConfigurationError, StorageError
from job.settings import load_settings

BUCKET = "models"


@pytest.fixture
def prefix(gcs: GcsEmulator, request: pytest.FixtureRequest) -> str:
    """A fresh prefix per test holding two models, plus an object outside it that must be ignored."""
    prefix = f"{request.node.name}/models"
    gcs.create_bucket(BUCKET)
    bucket = gcs.client().bucket(BUCKET)
    bucket.blob(f"{prefix}/checkpoints/a.safetensors").upload_from_string(b"a" * 1500)
    bucket.blob(f"{prefix}/loras/style/b.safetensors").upload_from_string(b"b" * 2500)
    bucket.blob(f"{prefix}/loras/").upload_from_string(b"")  # a console-made "folder" placeholder
    bucket.blob(f"{request.node.name}/elsewhere.safetensors").upload_from_string(b"x")
    return prefix


def files_under(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_sync_copies_every_object_under_the_prefix_into_models(gcs, prefix, tmp_path):
    report = sync_models(f"gs://{BUCKET}/{prefix}", tmp_path / "ComfyUI", workers=4, client=gcs.client())
    assert files_under(tmp_path / "ComfyUI") == {
        "models/checkpoints/a.safetensors": b"a" * 1500,
        "models/loras/style/b.safetensors": b"b" * 2500,
    }
    assert (report.files, report.copied, report.skipped, report.bytes_copied) == (2, 2, 0, 4000)


def test_second_sync_skips_models_already_present_and_fixes_damaged_ones(gcs, prefix, tmp_path):
    uri, comfyui = f"gs://{BUCKET}/{prefix}/", tmp_path / "ComfyUI"
    sync_models(uri, comfyui, workers=2, client=gcs.client())
    again = sync_models(uri, comfyui, workers=2, client=gcs.client())
    assert (again.copied, again.skipped) == (0, 2)

    truncated = comfyui / "models" / "checkpoints" / "a.safetensors"
    truncated.write_bytes(b"a" * 10)
    repaired = sync_models(uri, comfyui, workers=2, client=gcs.client())
    assert (repaired.copied, repaired.skipped) == (1, 1)
    assert truncated.read_bytes() == b"a" * 1500


def test_leftover_partial_file_from_a_crash_is_neither_loaded_nor_kept(gcs, prefix, tmp_path):
    comfyui = tmp_path / "ComfyUI"
    leftover = comfyui / "models" / "checkpoints" / ".a.safetensors.part"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"half a model")
    sync_models(f"gs://{BUCKET}/{prefix}", comfyui, workers=2, client=gcs.client())
    assert (comfyui / "models" / "checkpoints" / "a.safetensors").read_bytes() == b"a" * 1500
    assert not leftover.exists()
    assert not [p for p in (comfyui / "models").rglob("*.part")]


def test_large_objects_arrive_intact_through_parallel_slices(gcs, tmp_path, monkeypatch):
    big = os.urandom(3 * 1024 * 1024 + 17)
    gcs.client().bucket(BUCKET).blob("sliced/unet/big.safetensors").upload_from_string(big)
    monkeypatch.setattr(model_sync, "SLICE_BYTES", 512 * 1024)  # seven slices
    report = sync_models(
        f"gs://{BUCKET}/sliced", tmp_path / "ComfyUI", workers=4, client=gcs.client(), sliced_download_bytes=1024
    )
    assert (tmp_path / "ComfyUI" / "models" / "unet" / "big.safetensors").read_bytes() == big
    assert report.bytes_copied == len(big)


def test_many_files_arrive_intact_with_eight_workers(gcs, tmp_path):
    bucket = gcs.client().bucket(BUCKET)
    for index in range(24):
        bucket.blob(f"many/loras/l{index:02}.safetensors").upload_from_string(bytes([index]) * (100 + index))
    report = sync_models(f"gs://{BUCKET}/many", tmp_path / "ComfyUI", workers=8, client=gcs.client())
    assert report.copied == 24
    copied = files_under(tmp_path / "ComfyUI" / "models" / "loras")
    assert copied[f"l{7:02}.safetensors"] == bytes([7]) * 107


def test_missing_bucket_is_a_configuration_error_naming_models_uri(gcs, tmp_path):
    with pytest.raises(ConfigurationError, match=r"MODELS_URI=gs://no-such-bucket/models"):
        sync_models("gs://no-such-bucket/models", tmp_path, workers=2, client=gcs.client())


@pytest.mark.parametrize("uri", ["gs://", "/definitely/not/here"])
def test_source_that_is_neither_a_bucket_nor_a_folder_is_refused(uri, tmp_path):
    with pytest.raises(ConfigurationError, match="MODELS_URI"):
        sync_models(uri, tmp_path, workers=2)


def test_workers_below_one_are_refused(tmp_path):
    with pytest.raises(ConfigurationError, match="MODELS_DOWNLOAD_WORKERS"):
        sync_models(str(tmp_path), tmp_path, workers=0)


def test_local_folder_is_copied_like_a_bucket(tmp_path):
    source = tmp_path / "disk"
    (source / "vae").mkdir(parents=True)
    (source / "vae" / "ae.safetensors").write_bytes(b"v" * 300)
    report = sync_models(str(source), tmp_path / "ComfyUI", workers=2)
    assert files_under(tmp_path / "ComfyUI") == {"models/vae/ae.safetensors": b"v" * 300}
    assert report.copied == 1


def test_unwritable_destination_is_a_storage_error_and_leaves_nothing_half_written(tmp_path):
    source = tmp_path / "disk"
    (source / "vae").mkdir(parents=True)
    (source / "vae" / "ae.safetensors").write_bytes(b"v" * 300)
    comfyui = tmp_path / "ComfyUI"
    (comfyui / "models").mkdir(parents=True)
    (comfyui / "models" / "vae").write_text("a file where the vae folder should be")
    with pytest.raises(StorageError, match="vae"):
        sync_models(str(source), comfyui, workers=2)
    assert not list((comfyui / "models").rglob("*.part"))


# ------------------------------------------------------------------------- a mounted volume --


@pytest.fixture(scope="module")
def comfyui_dir() -> Path:
    """The local ComfyUI tree at the pinned version (installed once, like the other tests')."""
    path = Path(os.environ["COMFYUI_DIR"]) if os.environ.get("COMFYUI_DIR") else load_settings().comfyui_dir
    return install_comfyui(path)


COMFY_LOADER = """
import json, sys
sys.argv = ["main.py"]  # ComfyUI parses its command line at import
import utils.extra_config, folder_paths
utils.extra_config.load_extra_path_config(PATH)
print(json.dumps({name: folder_paths.get_filename_list(name) for name in ("checkpoints", "text_encoders", "loras")}))
"""


def test_mounted_volume_is_mapped_so_comfyui_lists_its_models(tmp_path, comfyui_dir):
    mount = tmp_path / "mnt" / "models"
    for relative in ("checkpoints/m.safetensors", "clip/t5.safetensors", "loras/x/y.safetensors", "mine/z.bin"):
        (mount / relative).parent.mkdir(parents=True, exist_ok=True)
        (mount / relative).write_bytes(b"0")
    target = tmp_path / "extra_model_paths.yaml"
    written = write_extra_model_paths(mount, comfyui_dir, target=target)
    assert written == target and "mine" in target.read_text(), "folders beyond the standard ones are mapped"

    # ComfyUI's own loader, in its own interpreter, reads what we wrote.
    script = COMFY_LOADER.replace("PATH", repr(str(target)))
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=comfyui_dir, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(comfyui_dir)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    listed = json.loads(result.stdout.strip().splitlines()[-1])
    assert "m.safetensors" in listed["checkpoints"]
    assert "t5.safetensors" in listed["text_encoders"], "the legacy clip/ folder maps to text_encoders"
    assert "x/y.safetensors" in listed["loras"]


def test_extra_model_paths_goes_next_to_comfyui_by_default(tmp_path):
    (tmp_path / "mount").mkdir()
    written = write_extra_model_paths(tmp_path / "mount", tmp_path / "ComfyUI")
    assert written == tmp_path / "ComfyUI" / "extra_model_paths.yaml"
    assert f"base_path: {json.dumps(str(tmp_path / 'mount'))}" in written.read_text()


def test_mount_that_is_not_a_folder_is_a_configuration_error(tmp_path):
    with pytest.raises(ConfigurationError, match=r"MODELS_MOUNT=.* is not a folder"):
        write_extra_model_paths(tmp_path / "not-mounted", tmp_path)


def test_the_mount_mapping_is_written_before_comfyui_starts(tmp_path):
    """ComfyUI reads extra_model_paths.yaml once, as it starts: a stand-in main.py (named as such)
    records whether the file was there at that moment."""
    mount = tmp_path / "mount"
    (mount / "checkpoints").mkdir(parents=True)
    comfyui_dir = tmp_path / "ComfyUI"
    comfyui_dir.mkdir()
    (comfyui_dir / "main.py").write_text(
        "import os\nopen('seen.txt', 'w').write(str(os.path.exists('extra_model_paths.yaml')))\n"
    )
    settings = load_settings(comfyui_dir=comfyui_dir, models_mount=mount, comfyui_restart=False)
    server = ComfyServer(settings.comfyui()).start()
    try:
        with pytest.raises(ComfyUnavailable):  # the stand-in exits at once
            server.wait_ready(30)
    finally:
        server.stop()
    assert (comfyui_dir / "seen.txt").read_text() == "True"
