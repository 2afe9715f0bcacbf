"""No request sees another's files, and none leaves files behind: attacks of a hostile caller, on the
real session ComfyUI, through `Runner.run` (what every way in goes through) and through POST /predict.

Each refusal is checked for its status, its error type, the node and input it names, and for what
did not happen: no prompt reached ComfyUI and no file appeared in its input, output or temp folder.
"""

from __future__ import annotations

import base64
import io
import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from job.comfyui.process import ComfyServer
from job.devstack.gcs_emulator import GcsEmulator
from job.engine.runner import Runner, RunResult
from job.errors import RunTimeout, WorkerError, WorkflowInvalid
from job.service.app import create_app
from job.settings import Settings
from tests.service.conftest import Service, b64, emulator_storages
from tests.support.comfy import comfy_files, empty_image_workflow, invert_workflow, load_image_workflow, png_bytes
from tests.support.serve import serve_in_thread
from tests.support.waiting import wait_for

pytestmark = pytest.mark.comfyui


def _history_size(server: ComfyServer) -> int:
    """How many prompts ComfyUI has run: a refused workflow must not add one."""
    return len(httpx.get(f"{server.base_url}/history", timeout=30).json())


@pytest.fixture(autouse=True)
def no_leftover_run_folders(comfy_base: Path) -> None:
    """Start from an input folder without run folders: tests that attach to the session ComfyUI over
    COMFYUI_URL leave theirs (an attached ComfyUI's API cannot delete files), and they are no
    evidence about this test's runs."""
    for folder in _run_folders(comfy_base):
        shutil.rmtree(folder)


def _run_folders(base: Path) -> list[Path]:
    runs = base / "input" / "_runs"
    return sorted(runs.iterdir()) if runs.is_dir() else []


def _pixel(data: bytes) -> tuple[int, int, int]:
    with Image.open(io.BytesIO(data)) as img:
        pixel = img.convert("RGB").getpixel((0, 0))
    assert isinstance(pixel, tuple)
    return (int(pixel[0]), int(pixel[1]), int(pixel[2]))


def _inverse(color: tuple[int, int, int]) -> tuple[int, int, int]:
    r, g, b = color
    return (255 - r, 255 - g, 255 - b)


def _is_inverse_of(pixel: tuple[int, int, int], color: tuple[int, int, int]) -> bool:
    """ComfyUI works in floats: a channel may come back one off."""
    return all(abs(got - want) <= 2 for got, want in zip(pixel, _inverse(color), strict=True))


def _slow_invert(name: str, blurs: int = 12) -> dict[str, Any]:
    """LoadImage -> a chain of big blurs (seconds of CPU) -> ImageInvert -> SaveImage."""
    graph: dict[str, Any] = {"1": {"class_type": "LoadImage", "inputs": {"image": name}}}
    previous = "1"
    for index in range(blurs):
        node = str(index + 10)
        graph[node] = {"class_type": "ImageBlur", "inputs": {"image": [previous, 0], "blur_radius": 31, "sigma": 8.0}}
        previous = node
    graph["2"] = {"class_type": "ImageInvert", "inputs": {"image": [previous, 0]}}
    graph["3"] = {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "slow_secret"}}
    return graph


def _assert_refused(exc: WorkerError, node_id: str, input_name: str | None, says: str) -> None:
    assert isinstance(exc, WorkflowInvalid)
    assert (exc.status_code, exc.error_type) == (400, "workflow_invalid")
    assert exc.node_errors is not None
    [error] = exc.node_errors[node_id]["errors"]
    assert (error["type"], error["input"]) == ("file_not_allowed", input_name)
    assert says in error["message"]
    assert f"node {node_id} " in exc.message
    assert "may name only a file this request sends in `images` or `inputs`" in exc.message, "what is allowed"


@pytest.fixture
def service(runner: Runner, comfy_settings_session: Settings, gcs: GcsEmulator) -> Iterator[Service]:
    """The /predict service on the session ComfyUI, as tests/service/conftest.py's `service` builds it."""
    settings = comfy_settings_session.model_copy(update={"log_format": "json"})
    app = create_app(settings, runner, storages=emulator_storages(gcs))
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=120) as http:
        yield Service(app=app, settings=settings, url=url, http=http)


@pytest.fixture
def runner_with(comfy_server: ComfyServer) -> Iterator[Any]:
    """A runner of its own on the session ComfyUI, with other file settings (KEEP_OUTPUTS, ...)."""
    made: list[Runner] = []

    def make(**changes: Any) -> Runner:
        made.append(Runner(comfy_server, config=replace(comfy_server.config, **changes)))
        return made[-1]

    yield make
    for runner in made:
        runner.close()


# --- another request's inputs -------------------------------------------------------------------


def test_a_request_cannot_load_another_requests_upload_even_while_that_request_runs(
    runner: Runner, comfy_server: ComfyServer, comfy_base: Path
) -> None:
    secret = (10, 200, 30)
    results: list[RunResult] = []
    a = threading.Thread(
        target=lambda: results.append(
            runner.run(_slow_invert("secret_a.png"), inputs={"secret_a.png": png_bytes((384, 384), secret)})
        )
    )
    a.start()
    try:
        # While A runs, its upload is on disk: in a folder of A's own, not input/secret_a.png.
        [folder] = wait_for(lambda: _run_folders(comfy_base), timeout_s=30, what="A's input folder")
        assert (folder / "secret_a.png").is_file()
        assert not (comfy_base / "input" / "secret_a.png").exists()
        before = _history_size(comfy_server)
        guesses = {
            "secret_a.png": "is not a file this request supplied",
            f"_runs/{folder.name}/secret_a.png": "names another request's files",
            f"../input/_runs/{folder.name}/secret_a.png": "'..'",
        }
        for guess, says in guesses.items():
            with pytest.raises(WorkflowInvalid) as caught:
                runner.run(load_image_workflow(guess, prefix="B_steal"), timeout_s=30)
            _assert_refused(caught.value, "1", "image", says)
        assert _history_size(comfy_server) == before, "none of B's attempts reached ComfyUI"
    finally:
        a.join(timeout=120)

    [result] = results
    assert _is_inverse_of(_pixel(result.files[0].data), secret), "A got its own picture, inverted"
    assert _run_folders(comfy_base) == [], "A's input folder went with A's run"
    assert not any("secret_a" in path or "B_steal" in path for path in comfy_files(comfy_base))


def test_a_name_the_request_did_not_supply_is_refused_with_what_it_did_supply(runner: Runner) -> None:
    with pytest.raises(WorkflowInvalid) as caught:
        runner.run(load_image_workflow("secret_a.png"), inputs={"mine.png": png_bytes()}, timeout_s=30)

    _assert_refused(caught.value, "1", "image", "is not a file this request supplied")
    assert "'secret_a.png' is not a file this request supplied" in caught.value.message
    assert "this request sent: 'mine.png'" in caught.value.message


# --- other requests' outputs and any file on disk -----------------------------------------------


def _values_that_reach_outside(tmp_path: Path) -> list[tuple[str, str]]:
    picture = tmp_path / "anywhere.png"
    picture.write_bytes(png_bytes())
    return [
        ("A_out_00001_.png [output]", "annotation"),
        ("A_out_00001_.png [temp]", "annotation"),
        ("secret_a.png [input]", "annotation"),
        ("../output/A_out_00001_.png", "'..'"),
        ("..\\output\\A_out_00001_.png", "'..'"),
        (str(picture), "absolute path"),
        ("C:\\Users\\x.png", "absolute path"),
        ("secret\x00.png", "NUL"),
    ]


def test_loader_values_that_reach_outside_the_requests_files_are_refused_before_anything_runs(
    runner: Runner, comfy_server: ComfyServer, comfy_base: Path, tmp_path: Path
) -> None:
    # A's output exists while B tries: kept on disk by a KEEP_OUTPUTS run, as a debugging operator would.
    keeper = Runner(comfy_server, config=replace(comfy_server.config, keep_outputs=True))
    try:
        [kept] = keeper.run(empty_image_workflow(size=16, prefix="A_out"), timeout_s=30).files
    finally:
        keeper.close()
    kept_path = comfy_base / "output" / kept.filename
    assert kept_path.is_file()
    try:
        before_files, before_runs = comfy_files(comfy_base), _history_size(comfy_server)
        attacks = [
            (value.replace("A_out_00001_.png", kept.filename), says)
            for value, says in _values_that_reach_outside(tmp_path)
        ]
        for value, says in attacks:
            with pytest.raises(WorkflowInvalid) as caught:
                runner.run(load_image_workflow(value, prefix="B_read"), inputs={"own.png": png_bytes()}, timeout_s=30)
            _assert_refused(caught.value, "1", "image", says)
        assert comfy_files(comfy_base) == before_files, "nothing uploaded, nothing written"
        assert _history_size(comfy_server) == before_runs, "nothing queued"
    finally:
        kept_path.unlink()


def test_a_model_list_value_that_climbs_out_is_refused_too(runner: Runner, comfy_server: ComfyServer) -> None:
    before = _history_size(comfy_server)
    workflow = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "../../input/x.safetensors"}},
                "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "m"}}}  # fmt: skip

    with pytest.raises(WorkflowInvalid) as caught:
        runner.run(workflow, timeout_s=30)

    _assert_refused(caught.value, "1", "ckpt_name", "'..'")
    assert _history_size(comfy_server) == before


def test_load_image_output_is_refused_unless_allow_output_inputs(
    runner: Runner, runner_with: Any, comfy_server: ComfyServer, comfy_base: Path
) -> None:
    trusted = runner_with(allow_output_inputs=True, keep_outputs=True)
    [earlier] = trusted.run(empty_image_workflow(size=16, color=0x3060F0, prefix="earlier"), timeout_s=30).files
    workflow = load_image_workflow(f"{earlier.filename} [output]", prefix="reread", class_type="LoadImageOutput")
    try:
        before = _history_size(comfy_server)
        with pytest.raises(WorkflowInvalid) as caught:
            runner.run(workflow, timeout_s=30)
        _assert_refused(caught.value, "1", None, "reads ComfyUI's output folder")
        assert "ALLOW_OUTPUT_INPUTS=true" in caught.value.message
        assert _history_size(comfy_server) == before

        [reread] = trusted.run(workflow, timeout_s=30).files  # the operator's choice, for trusted callers
        assert _pixel(reread.data) == (0x30, 0x60, 0xF0)
    finally:
        for name in ("earlier", "reread"):
            for path in (comfy_base / "output").glob(f"{name}_*"):
                path.unlink()


@pytest.mark.parametrize(
    ("class_type", "inputs", "input_name"),
    [
        ("VHS_LoadImagePath", {"image": "/etc/hostname"}, None),  # VideoHelperSuite's "Load Image (Path)"
        ("Image Load", {"image_path": "/etc/hostname"}, "image_path"),  # WAS Node Suite's
        ("LoadImagesFromDir //Inspire", {"directory": "/"}, None),
        ("SomeCustomLoader", {"directory": "/var/data"}, "directory"),
    ],
)
def test_nodes_that_take_a_path_are_refused_by_name(
    runner: Runner, comfy_server: ComfyServer, class_type: str, inputs: dict[str, Any], input_name: str | None
) -> None:
    before = _history_size(comfy_server)
    workflow = {"1": {"class_type": class_type, "inputs": inputs},
                "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "p"}}}  # fmt: skip

    with pytest.raises(WorkflowInvalid) as caught:
        runner.run(workflow, timeout_s=30)

    _assert_refused(caught.value, "1", input_name, "path")
    assert _history_size(comfy_server) == before, "refused here, not by ComfyUI as an unknown node"


def test_a_file_input_fed_by_a_link_is_refused(runner: Runner, comfy_server: ComfyServer) -> None:
    before = _history_size(comfy_server)
    workflow = load_image_workflow(["5", 0])
    workflow["5"] = {"class_type": "PrimitiveString", "inputs": {"value": "A_out_00001_.png [output]"}}

    with pytest.raises(WorkflowInvalid) as caught:
        runner.run(workflow, timeout_s=30)

    _assert_refused(caught.value, "1", "image", "not take it from a link")
    assert _history_size(comfy_server) == before


# --- every run's files are its own, and go with it ----------------------------------------------


def test_a_run_reads_its_own_upload_from_a_folder_of_its_own_and_leaves_nothing_behind(
    runner: Runner, comfy_base: Path
) -> None:
    before = comfy_files(comfy_base)
    seen: list[set[str]] = []
    color = (40, 90, 250)

    result = runner.run(
        invert_workflow("photo.png", prefix="own"),
        inputs={"photo.png": png_bytes(color=color)},
        timeout_s=30,
        on_progress=lambda progress: seen.append(comfy_files(comfy_base) - before),
    )

    assert _is_inverse_of(_pixel(result.files[0].data), color)
    during = set().union(*seen)
    [upload] = [path for path in during if path.startswith("input/")]
    assert upload.startswith("input/_runs/") and upload.endswith("/photo.png"), upload
    assert comfy_files(comfy_base) == before, "its input folder and its output file are gone"
    assert _run_folders(comfy_base) == []


def test_outputs_are_deleted_once_read_unless_keep_outputs(runner: Runner, runner_with: Any, comfy_base: Path) -> None:
    [gone] = runner.run(empty_image_workflow(size=8, prefix="deleted"), timeout_s=30).files
    [kept] = runner_with(keep_outputs=True).run(empty_image_workflow(size=8, prefix="kept"), timeout_s=30).files

    assert gone.data and kept.data
    assert not (comfy_base / "output" / gone.filename).exists()
    kept_path = comfy_base / "output" / kept.filename
    assert kept_path.read_bytes() == kept.data
    kept_path.unlink()


def test_identical_runs_each_write_and_return_their_own_files(runner: Runner, comfy_base: Path) -> None:
    before = comfy_files(comfy_base)
    workflow = empty_image_workflow(size=8, prefix="twice")

    first, second = (runner.run(workflow, timeout_s=30) for _ in range(2))

    # ComfyUI would serve the second from its cache, re-reporting the first's file, deleted by now.
    # The run ends at its last output; ComfyUI writes the history entry a moment later.
    entry = wait_for(lambda: runner.client.history(second.prompt_id), timeout_s=30, what="the second run's history")
    cached = {
        node for name, data in entry["status"]["messages"] if name == "execution_cached" for node in data["nodes"]
    }
    assert "1" in cached, "the unchanged EmptyImage comes from ComfyUI's cache"
    assert "2" not in cached, "but SaveImage ran again, for this run"
    assert _pixel(first.files[0].data) == _pixel(second.files[0].data)  # the same picture, each run's own file
    assert comfy_files(comfy_base) == before


def test_a_run_past_its_deadline_leaves_neither_its_input_nor_what_it_wrote(runner: Runner, comfy_base: Path) -> None:
    before = comfy_files(comfy_base)
    workflow = _slow_invert("big.png", blurs=60)
    workflow["4"] = {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "early"}}
    prompt_ids: set[str] = set()

    with pytest.raises(RunTimeout):
        runner.run(
            workflow,
            inputs={"big.png": png_bytes((512, 512))},
            timeout_s=4,
            on_progress=lambda p: prompt_ids.add(p.prompt_id),
        )

    [prompt_id] = prompt_ids
    # A blur under way at the deadline may outlive the answer: its files go once ComfyUI is done.
    runner.overruns.wait_free(time.monotonic() + 60)
    entry = wait_for(lambda: runner.client.history(prompt_id), timeout_s=30, what="the prompt in /history")
    [early] = entry["outputs"]["4"]["images"]
    assert early["filename"].startswith("early"), "the interrupted run had written a file"
    assert comfy_files(comfy_base) == before, "which went, with its input folder"


def test_one_request_with_many_outputs_leaves_none_behind(runner: Runner, comfy_base: Path) -> None:
    before = comfy_files(comfy_base)

    result = runner.run(empty_image_workflow(size=4, batch=256, prefix="many"), timeout_s=120)

    assert len(result.files) == 256
    assert len({file.filename for file in result.files}) == 256
    assert comfy_files(comfy_base) == before


# --- the same through POST /predict ------------------------------------------------------------


def _refusal(response: httpx.Response, input_name: str | None, says: str) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == "error"
    error = body["error"]
    assert error["type"] == "workflow_invalid"
    [item] = error["node_errors"]["1"]["errors"]
    assert (item["type"], item["input"]) == ("file_not_allowed", input_name)
    assert says in item["message"]
    assert "Traceback" not in error["message"] and "/tmp" not in error["message"].replace(says, "")
    return body


def test_predict_cannot_read_another_requests_upload(
    service: Service, comfy_server: ComfyServer, comfy_base: Path
) -> None:
    before = comfy_files(comfy_base)
    secret = (250, 10, 10)
    owner = service.predict(
        {
            "workflow": invert_workflow("secret_a.png"),
            "images": [{"name": "secret_a.png", "image": b64(png_bytes(color=secret))}],
        }
    )
    assert owner.status_code == 200, owner.text
    assert _is_inverse_of(_pixel(base64.b64decode(owner.json()["images"][0]["image"])), secret)
    runs = _history_size(comfy_server)

    thief = service.predict({"workflow": load_image_workflow("secret_a.png", prefix="B_steal")})

    _refusal(thief, "image", "is not a file this request supplied")
    assert _history_size(comfy_server) == runs
    assert comfy_files(comfy_base) == before, "A's upload and output went with A's request"


@pytest.mark.parametrize(
    ("workflow", "input_name", "says"),
    [
        (load_image_workflow("x_00001_.png [output]"), "image", "annotation"),
        (load_image_workflow("../output/x_00001_.png"), "image", "'..'"),
        (load_image_workflow("/etc/hostname"), "image", "absolute path"),
        (load_image_workflow("x_00001_.png [output]", class_type="LoadImageOutput"), None, "output folder"),
    ],
    ids=["annotation", "dot-dot", "absolute", "LoadImageOutput"],
)
def test_predict_refuses_values_that_reach_outside(
    service: Service,
    comfy_server: ComfyServer,
    comfy_base: Path,
    workflow: dict[str, Any],
    input_name: str | None,
    says: str,
) -> None:
    before, runs = comfy_files(comfy_base), _history_size(comfy_server)

    response = service.predict({"workflow": workflow, "images": [{"name": "own.png", "image": b64(png_bytes())}]})

    _refusal(response, input_name, says)
    assert comfy_files(comfy_base) == before
    assert _history_size(comfy_server) == runs


def test_predict_leaves_no_files_behind(service: Service, comfy_base: Path) -> None:
    before = comfy_files(comfy_base)

    response = service.predict(
        {"workflow": invert_workflow("in.png", prefix="svc"), "images": [{"name": "in.png", "image": b64(png_bytes())}]}
    )

    assert response.status_code == 200, response.text
    assert comfy_files(comfy_base) == before
    assert _run_folders(comfy_base) == []


# --- a bounded soak ------------------------------------------------------------------------------


@pytest.mark.slow
def test_soak_three_callers_three_hundred_requests_no_cross_reads_no_growth(service: Service, comfy_base: Path) -> None:
    """Three callers upload `photo.png` each in its own colour, 100 times: every answer is the inverse
    of the caller's own picture (a shared input folder would mix them up), every tenth request also
    tries another caller's file and is refused, and the folders end as they began."""
    colors = [(200, 20, 20), (20, 200, 20), (20, 20, 200)]
    per_caller, deadline_s = 100, 600
    before = comfy_files(comfy_base)
    failures: list[str] = []
    counts = {"ok": 0, "refused": 0}
    lock = threading.Lock()
    started = time.monotonic()

    def caller(index: int) -> None:
        color = colors[index]
        photo = b64(png_bytes((16, 16), color))
        with httpx.Client(base_url=service.url, timeout=120) as http:
            for n in range(per_caller):
                if time.monotonic() - started > deadline_s:
                    failures.append(f"caller {index}: out of time after {n} requests")
                    return
                body = {"workflow": invert_workflow("photo.png", prefix=f"soak{index}"),
                        "images": [{"name": "photo.png", "image": photo}]}  # fmt: skip
                response = http.post("/predict", json=body)
                if response.status_code != 200:
                    failures.append(f"caller {index} #{n}: {response.status_code} {response.text[:200]}")
                    continue
                got = _pixel(base64.b64decode(response.json()["images"][0]["image"]))
                if not _is_inverse_of(got, color):
                    failures.append(f"caller {index} #{n}: got {got}, another caller's picture")
                if n % 10 == 9:
                    steal = http.post("/predict", json={"workflow": load_image_workflow("photo.png")})
                    if steal.status_code != 400 or steal.json()["error"]["type"] != "workflow_invalid":
                        failures.append(f"caller {index} #{n}: a read of another's file answered {steal.status_code}")
                        continue
                with lock:
                    counts["ok"] += 1
                    counts["refused"] += n % 10 == 9

    with ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(caller, range(3)))
    elapsed = time.monotonic() - started
    after = comfy_files(comfy_base)

    print(
        f"\nsoak: {counts['ok']} requests ok + {counts['refused']} cross-reads refused in {elapsed:.1f} s "
        f"({3 * per_caller / elapsed:.1f} requests/s), {len(failures)} failures, "
        f"files in input/output/temp before {len(before)}, after {len(after)}"
    )
    assert failures == []
    assert counts == {"ok": 3 * per_caller, "refused": 3 * per_caller // 10}
    assert after == before, f"left behind: {sorted(after - before)[:10]}"
