"""`worker-comfyui run` as a person sees it: the real CLI in a pseudo-terminal, against a real ComfyUI.

On a terminal the person sees our few lines, the path of ComfyUI's log (which holds its lines) and
errors in plain words; `-v` streams ComfyUI's log instead; off a terminal the output is JSON lines as
before. The runs that boot their own ComfyUI are slow; the bad-input runs never reach ComfyUI.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import warnings
import zlib
from pathlib import Path

import pytest
from PIL import Image

from job.commands.console import print_error
from job.devstack.gcs_emulator import free_port
from job.engine.media import check_media
from job.errors import ComfyCrashed, ExecutionFailed, InvalidInput
from tests.support.comfy import png_bytes
from tests.support.media import png_with

pytestmark = pytest.mark.comfyui  # a real ComfyUI: the test's own (or, for bad inputs, none reached)

REPO = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).with_name("worker-comfyui"))
RUN = [CLI, "run", "workflows/invert_input.json", "--image", "input.png=workflows/input.png"]
COMFYUI_LINE = "Starting server"  # ComfyUI prints it at every boot
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][0-9A-Za-z]")


def own_comfyui(tmp_path: Path, args: str = "") -> dict[str, str]:
    """The environment of a CLI that boots a ComfyUI of its own, on a free port, under `tmp_path`."""
    env = {
        **os.environ,
        "COMFYUI_PORT": str(free_port()),
        "COMFYUI_ARGS": f"--base-directory {tmp_path / 'base'} --disable-all-custom-nodes {args}",
        "COMFY_LOG_LEVEL": "INFO",
        "TERM": "xterm-256color",
    }
    for name in ("COMFYUI_URL", "LOG_FORMAT", "PYTHONWARNINGS"):
        env.pop(name, None)
    return env


def in_terminal(command: list[str], env: dict[str, str], timeout_s: float = 240) -> tuple[int, str]:
    """Run `command` with a pseudo-terminal (250 columns) as its stdin, stdout and stderr; its exit
    code and what it wrote, terminal codes removed and carriage returns made line ends."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 250, 0, 0))
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdin=follower, stdout=follower, stderr=follower)
    os.close(follower)
    chunks: list[bytes] = []
    try:
        while True:
            ready, _, _ = select.select([leader], [], [], timeout_s)
            assert ready, f"no output for {timeout_s} s; so far:\n{b''.join(chunks)[-3000:]!r}"
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: every writer has closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        code = proc.wait(timeout=timeout_s)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(leader)
    text = _ANSI.sub("", b"".join(chunks).decode("utf-8", "replace")).replace("\r\n", "\n").replace("\r", "\n")
    return code, text


def named_log(text: str) -> Path:
    (path,) = re.findall(r"ComfyUI's log: (\S+)", text)
    return Path(path)


# --- a run that works -----------------------------------------------------------------------------


@pytest.mark.slow
def test_on_a_terminal_comfyuis_log_goes_to_a_file_whose_path_is_printed(tmp_path: Path) -> None:
    out = tmp_path / "out"

    code, text = in_terminal([*RUN, "--out", str(out)], own_comfyui(tmp_path))

    assert code == 0, text[-3000:]
    log = named_log(text)  # named once, and only once
    comfyui_lines = [line.strip() for line in log.read_text().splitlines() if len(line.strip()) > 12]
    assert any(COMFYUI_LINE in line for line in comfyui_lines)
    assert "[comfyui]" not in log.read_text() and "\x1b" not in log.read_text()  # ComfyUI's lines, plain
    shown = [line for line in comfyui_lines if line in text]
    assert not shown, f"ComfyUI's lines on the terminal: {shown[:5]}"
    assert '{"severity"' not in text and "Traceback" not in text
    assert "starting ComfyUI" in text  # our own lines stay
    (written,) = out.iterdir()
    assert str(written) in text and "done: 1 file(s)" in text


@pytest.mark.slow
def test_verbose_streams_comfyuis_log_to_the_terminal(tmp_path: Path) -> None:
    code, text = in_terminal([*RUN, "--out", str(tmp_path / "out"), "-v"], own_comfyui(tmp_path))

    assert code == 0, text[-3000:]
    assert COMFYUI_LINE in text
    assert "ComfyUI's log:" not in text


@pytest.mark.slow
def test_off_a_terminal_the_log_is_json_lines_as_before(tmp_path: Path) -> None:
    command = [*RUN, "--out", str(tmp_path / "out")]

    done = subprocess.run(
        command, cwd=REPO, env=own_comfyui(tmp_path), capture_output=True, text=True, timeout=240, check=False
    )

    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stderr.splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    rest = " ".join(line for line in lines if line.strip() and not line.startswith("{"))
    assert rest.startswith("done: 1 file(s)"), rest  # the summary is the one line that is not JSON
    assert all({"severity", "message", "logger"} <= set(record) for record in records)
    comfyui = [record["message"] for record in records if record["logger"] == "comfyui"]
    assert any(message.startswith("[comfyui] ") and COMFYUI_LINE in message for message in comfyui)
    assert any(record["message"].startswith("starting ComfyUI") for record in records)
    assert "ComfyUI's log:" not in done.stderr


# --- a ComfyUI that does not come up --------------------------------------------------------------


def test_a_comfyui_that_fails_to_boot_shows_its_last_lines_and_where_the_rest_is(tmp_path: Path) -> None:
    code, text = in_terminal([*RUN, "--out", str(tmp_path / "out")], own_comfyui(tmp_path, "--no-such-flag"))

    assert code == 1, text[-3000:]
    assert "error (comfyui_unavailable): ComfyUI is not running (failed)" in text
    tail = [line for line in text.splitlines() if line.startswith("  | ")]
    assert 0 < len(tail) <= 20
    assert "unrecognized arguments: --no-such-flag" in tail[-1]
    (whole,) = re.findall(r"ComfyUI's whole log: (\S+)", text)
    assert Path(whole) == named_log(text) and "--no-such-flag" in Path(whole).read_text()
    assert "Traceback" not in text


# --- bad files on the command line ----------------------------------------------------------------


def _no_comfyui(tmp_path: Path) -> dict[str, str]:
    """Attached to a port nothing answers on, with short deadlines: a bad input must be refused
    before any of that matters (else the message is comfyui_unavailable, and the test fails)."""
    return {
        **own_comfyui(tmp_path),
        "COMFYUI_URL": f"http://127.0.0.1:{free_port()}",
        "COMFYUI_BOOT_TIMEOUT_S": "3",
        "RUN_TIMEOUT_S": "3",
    }


def _bad_files(folder: Path) -> dict[str, Path]:
    files = {
        "bomb": png_with(20_000, 20_000, zlib.compress(b"\x00" * 1000)),
        "bomb_under_twice_the_limit": png_with(12_000, 12_000, zlib.compress(b"\x00" * 1000)),
        "truncated": png_bytes()[:60],
        "text": b"not a picture\n",
    }
    for name, data in files.items():
        (folder / f"{name}.png").write_bytes(data)
    (folder / "a-folder.png").mkdir()
    return {name: folder / f"{name}.png" for name in files} | {"folder": folder / "a-folder.png"}


IMAGE_CASES = {
    "bomb": ({}, "has more pixels than it is safe to decode; send an image of at most"),
    # Below twice Pillow's limit it only warns; where warnings are errors the warning is raised.
    "bomb_under_twice_the_limit": (
        {"PYTHONWARNINGS": "error::RuntimeWarning"},
        "has more pixels than it is safe to decode",
    ),
    "truncated": ({}, "is not an image, audio or video this worker accepts; send an image Pillow opens"),
    "text": ({}, "is not an image, audio or video this worker accepts; send an image Pillow opens"),
    "folder": ({}, "is a folder; give the path of a file: an image Pillow opens"),
    "missing": ({}, "there is no file"),
    "not_a_folder": ({}, "(Not a directory); give the path of a file"),
    "too_large": ({"INPUT_MAX_BYTES": "100"}, "is larger than 100 bytes (INPUT_MAX_BYTES); give a smaller file"),
}


def one_error_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


@pytest.mark.parametrize("case", sorted(IMAGE_CASES))
def test_a_bad_image_file_is_one_line_that_names_it(case: str, tmp_path: Path) -> None:
    files = _bad_files(tmp_path)
    path = {
        "missing": tmp_path / "missing.png",
        "not_a_folder": files["text"] / "x.png",
        "too_large": REPO / "workflows" / "input.png",
    }.get(case) or files[case]
    env, expected = IMAGE_CASES[case]
    value = f"input.png={path}"

    code, text = in_terminal([*RUN[:3], "--image", value, "--out", str(tmp_path / "out")], _no_comfyui(tmp_path) | env)

    assert code == 1
    line = one_error_line(text)
    assert line.startswith(f"error (invalid_input): --image {value}: ")
    assert expected in line


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        (
            "missing",
            "error (invalid_input): workflow: there is no file {path}; give the path of an API-format workflow",
        ),
        ("folder", "error (invalid_input): workflow: {path} is a folder; give the path of an API-format workflow"),
        ("not_json", "error (invalid_json): workflow {path}: the request is not valid JSON"),
    ],
)
def test_a_bad_workflow_file_is_one_line_that_names_it(case: str, expected: str, tmp_path: Path) -> None:
    path = {"missing": tmp_path / "nope.json", "folder": tmp_path, "not_json": REPO / "workflows" / "input.png"}[case]

    code, text = in_terminal([CLI, "run", str(path), "--out", str(tmp_path / "out")], _no_comfyui(tmp_path))

    assert code == 1
    assert one_error_line(text).startswith(expected.format(path=path))


# --- the shared check, as /predict and the job meet it --------------------------------------------


def _truncated_tiff() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (1, 2, 3)).save(buffer, format="TIFF")
    return buffer.getvalue()[:100]  # past the header: Pillow warns "Truncated File Read"


@pytest.mark.parametrize(
    "data",
    [png_with(12_000, 12_000, zlib.compress(b"\x00" * 1000)), _truncated_tiff()],
    ids=["bomb_warning", "truncated_tiff_warning"],
)
def test_where_warnings_are_errors_check_media_still_answers_invalid_input(data: bytes) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InvalidInput, match=r"input 'x\.png' "):
            check_media("x.png", data)


# --- errors in plain words, from the file that holds ComfyUI's log ---------------------------------


def test_a_crash_shows_the_last_twenty_lines_of_comfyuis_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "comfyui.log"
    log.write_text("".join(f"line {n}\n" for n in range(1, 31)))

    print_error(ComfyCrashed("ComfyUI exited with code -9 while running prompt p1"), log)

    shown = capsys.readouterr().err.splitlines()
    assert shown[0] == "error (comfyui_crashed): ComfyUI exited with code -9 while running prompt p1"
    assert shown[1:-1] == [f"  | line {n}" for n in range(11, 31)]
    assert shown[-1] == f"ComfyUI's whole log: {log}"


def test_a_failed_node_points_to_comfyuis_log_for_its_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "comfyui.log"
    log.write_text("Traceback (most recent call last):\n  File 'nodes.py', line 1\nRuntimeError: boom\n")
    error = ExecutionFailed(
        "node 4 (ImageBatch) failed: RuntimeError: boom",
        node_errors={"4": {"class_type": "ImageBatch", "errors": [{"type": "RuntimeError", "message": "boom"}]}},
    )

    print_error(error, log)

    shown = capsys.readouterr().err
    assert shown.splitlines() == [
        "error (execution_error): node 4 (ImageBatch) failed: RuntimeError: boom",
        "  node 4 (ImageBatch): boom",
        f"the node's traceback is in ComfyUI's log: {log}",
    ]
