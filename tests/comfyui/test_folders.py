"""Where a managed ComfyUI's files land, by ComfyUI 0.3.x's own rules, and what may be read there."""

from __future__ import annotations

from pathlib import Path

from job.comfyui.folders import local_path, output_folders


def test_defaults_are_under_the_comfyui_folder(tmp_path: Path) -> None:
    assert output_folders(tmp_path, ["--listen", "0.0.0.0"]) == {
        "output": tmp_path.resolve() / "output",
        "temp": tmp_path.resolve() / "temp",
    }


def test_base_directory_moves_both_and_relative_paths_start_in_comfyuis_folder(tmp_path: Path) -> None:
    folders = output_folders(tmp_path / "ComfyUI", ["--base-directory", "../data", "--cpu"])
    assert folders == {"output": tmp_path.resolve() / "data" / "output", "temp": tmp_path.resolve() / "data" / "temp"}


def test_explicit_folders_win_and_temp_gets_comfyuis_own_suffix(tmp_path: Path) -> None:
    argv = ["--base-directory", "/b", "--output-directory", "/out", "--temp-directory", "/scratch"]
    assert output_folders(tmp_path, argv) == {"output": Path("/out"), "temp": Path("/scratch/temp")}


def test_the_last_flag_wins_as_in_argparse(tmp_path: Path) -> None:
    argv = ["--output-directory", "/first", "--output-directory", "/second"]
    assert output_folders(tmp_path, argv)["output"] == Path("/second")


def test_only_regular_files_inside_the_typed_folder_are_read(tmp_path: Path) -> None:
    folders = {"output": tmp_path / "output", "temp": tmp_path / "temp"}
    (tmp_path / "output" / "sub").mkdir(parents=True)
    (tmp_path / "output" / "sub" / "a.png").write_bytes(b"png")
    (tmp_path / "secret.txt").write_text("no")

    assert local_path(folders, "output", "sub", "a.png") == tmp_path / "output" / "sub" / "a.png"
    assert local_path(folders, "output", "..", "secret.txt") is None, "a subfolder may not climb out"
    assert local_path(folders, "output", "", "../secret.txt") is None
    assert local_path(folders, "output", "", "missing.png") is None, "not there: the caller falls back on /view"
    assert local_path(folders, "output", "", "sub") is None, "a folder is not a file"
    assert local_path(folders, "input", "", "a.png") is None, "only output and temp are outputs"
