"""`worker-comfyui comfyui install`: where the tree comes from, and what a user is told about it.

GitHub is made unreachable (a closed loopback port) so each case takes the path it names, on a
machine with or without the internet. Trees are tiny stand-ins of a release (main.py and
comfyui_version.py); requirements are not installed here (the session's real install covers them).
"""

from __future__ import annotations

import io
import logging
import tarfile
from pathlib import Path

import pytest

from job.comfyui import install
from job.comfyui.install import InstallError, install_comfyui, tree_version
from job.comfyui.pins import PINS


@pytest.fixture(autouse=True)
def github_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(install, "_RELEASE_URL", "http://127.0.0.1:9/v{version}.tar.gz")


def release_tarball(path: Path, version: str, *, top: str | None = None) -> Path:
    """A GitHub-style release archive: one top folder holding main.py and comfyui_version.py."""
    top = top or f"ComfyUI-{version}"
    files = {
        f"{top}/main.py": b"print('comfy')\n",
        f"{top}/comfyui_version.py": f'__version__ = "{version}"\n'.encode(),
    }
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_installs_the_named_release_archive_when_github_is_out_of_reach(tmp_path: Path) -> None:
    archive = release_tarball(tmp_path / "ComfyUI.tar.gz", PINS.comfyui)
    target = tmp_path / "cache" / "ComfyUI"

    assert install_comfyui(target, requirements=False, archive=archive) == target

    assert tree_version(target) == PINS.comfyui
    assert (target / "main.py").is_file()
    assert not [p.name for p in target.parent.iterdir() if p.name.startswith(".comfyui-")], "staging left behind"


def test_a_missing_archive_is_refused_with_the_setting_named(tmp_path: Path) -> None:
    with pytest.raises(InstallError, match=r"does not exist \(--archive, COMFYUI_ARCHIVE\)"):
        install_comfyui(tmp_path / "ComfyUI", requirements=False, archive=tmp_path / "nope.tar.gz")
    assert not (tmp_path / "ComfyUI").exists()


def test_an_archive_that_is_not_a_release_leaves_no_half_tree(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"not a tarball")
    with pytest.raises(InstallError, match="not a readable ComfyUI release tarball"):
        install_comfyui(tmp_path / "ComfyUI", requirements=False, archive=bad)
    assert not (tmp_path / "ComfyUI").exists()


def test_an_archive_of_another_version_installs_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    archive = release_tarball(tmp_path / "old.tar.gz", "0.1.2")
    with caplog.at_level(logging.WARNING, logger="job.comfyui.install"):
        install_comfyui(tmp_path / "ComfyUI", requirements=False, archive=archive)
    assert tree_version(tmp_path / "ComfyUI") == "0.1.2"
    assert f"holds ComfyUI 0.1.2, not the pinned {PINS.comfyui}" in caplog.text


def test_our_old_line_fallback_is_replaced_once_the_pinned_release_is_at_hand(tmp_path: Path) -> None:
    target = tmp_path / "ComfyUI"
    install._extract_release(release_tarball(tmp_path / "horde.tar.gz", PINS.horde_comfyui).open("rb"), target)
    (target / ".worker-comfyui-source").write_text("horde\n")
    (target / "models").mkdir()

    install_comfyui(target, requirements=False, archive=release_tarball(tmp_path / "pinned.tar.gz", PINS.comfyui))

    assert tree_version(target) == PINS.comfyui
    assert not (target / "models").exists(), "the old tree was swapped out whole"


def test_the_fallback_stays_with_a_warning_that_says_what_to_do(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    target = tmp_path / "ComfyUI"
    install._extract_release(release_tarball(tmp_path / "horde.tar.gz", PINS.horde_comfyui).open("rb"), target)
    (target / ".worker-comfyui-source").write_text("horde\n")

    with caplog.at_level(logging.WARNING, logger="job.comfyui.install"):
        install_comfyui(target, requirements=False)

    assert tree_version(target) == PINS.horde_comfyui
    assert f"NOT the pinned {PINS.comfyui}" in caplog.text
    assert "COMFYUI_ARCHIVE" in caplog.text and "github.com" in caplog.text


def test_a_tree_the_user_brought_is_used_as_it_is(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    target = tmp_path / "ComfyUI"
    install._extract_release(release_tarball(tmp_path / "mine.tar.gz", "0.9.9").open("rb"), target)
    with caplog.at_level(logging.WARNING, logger="job.comfyui.install"):
        install_comfyui(target, requirements=False, archive=release_tarball(tmp_path / "p.tar.gz", PINS.comfyui))
    assert tree_version(target) == "0.9.9"
    assert "is 0.9.9, not the pinned" in caplog.text
