"""Request documents that cannot run are refused before ComfyUI sees them, with the fix in the message."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from job.engine.inputs import gather_inputs
from job.engine.media import check_input_name, decode_image
from job.engine.request import parse_request
from job.errors import InvalidInput, UIFormatWorkflow
from tests.support.comfy import empty_image_workflow, png_bytes

DATA = Path(__file__).resolve().parents[1] / "data"


def _ui_export() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((DATA / "ui_format_workflow.json").read_text())
    return doc


@pytest.mark.parametrize("wrapped", [False, True], ids=["bare", "as-workflow-field"])
def test_ui_format_workflow_is_refused_with_how_to_export_the_api_format(wrapped: bool) -> None:
    doc = {"workflow": _ui_export()} if wrapped else _ui_export()

    with pytest.raises(UIFormatWorkflow) as caught:
        parse_request(doc)

    assert "Workflow > Export (API)" in caught.value.message
    assert caught.value.status_code == 422
    assert caught.value.to_body()["error"]["type"] == "ui_format_workflow"


@pytest.mark.parametrize(
    "name", ["../x.png", "/abs/x.png", "x\x00.png", "..\\x.png", "a/b.png", "", ".", "..", "C:x.png"]
)
def test_input_name_with_a_path_is_refused(name: str) -> None:
    with pytest.raises(InvalidInput, match="not a plain file name"):
        check_input_name(name)


def test_plain_input_names_pass() -> None:
    assert check_input_name("photo 1.final.png") == "photo 1.final.png"


def _request(image: str, name: str = "input.png") -> dict[str, Any]:
    return {"workflow": empty_image_workflow(), "images": [{"name": name, "image": image}]}


def test_bad_base64_input_is_an_invalid_input_naming_it() -> None:
    request = parse_request(_request("this is not base64!"))

    with pytest.raises(InvalidInput, match=r"'input.png'.*not valid base64"):
        gather_inputs(request)


def test_input_that_is_not_an_image_is_an_invalid_input_naming_it() -> None:
    request = parse_request(_request(base64.b64encode(b"%PDF-1.7 not a picture").decode()))

    with pytest.raises(InvalidInput, match=r"'input.png' is not an image"):
        gather_inputs(request)


def test_inline_input_accepts_base64_and_data_uris_alike() -> None:
    encoded = base64.b64encode(png_bytes()).decode()
    request = parse_request(
        {
            "workflow": empty_image_workflow(),
            "images": [
                {"name": "a.png", "image": encoded},
                {"name": "b.png", "image": f"data:image/png;base64,{encoded}"},
            ],
        }
    )

    assert gather_inputs(request) == {"a.png": png_bytes(), "b.png": png_bytes()}
    assert decode_image("c.png", encoded) == png_bytes()


def test_path_in_an_inline_input_name_is_refused_before_decoding() -> None:
    request = parse_request(_request(base64.b64encode(png_bytes()).decode(), name="../../etc/cron.d/x"))

    with pytest.raises(InvalidInput, match="not a plain file name"):
        gather_inputs(request)
