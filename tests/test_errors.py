"""The error tree drawn in job/errors.py's docstring is the one the code has, and every error renders one shape."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import pytest

import job.errors as errors_module
from job.errors import ECHO_LIMIT, LIST_LIMIT, WorkerError, clip

_ROW = re.compile(r"^[\s│├└─]*(?P<name>[A-Z]\w+)\s+(?P<status>\d{3}|4xx)\b:?\s*(?P<type>[a-z_]+)?(?P<rest>.*)$")


def _documented() -> dict[str, re.Match[str]]:
    rows = (_ROW.match(line) for line in (errors_module.__doc__ or "").splitlines())
    return {row["name"]: row for row in rows if row}


def _error_classes() -> list[type[WorkerError]]:
    return [
        cls
        for _, cls in inspect.getmembers(errors_module, inspect.isclass)
        if issubclass(cls, WorkerError) and cls.__module__ == errors_module.__name__
    ]


def test_docstring_tree_lists_exactly_the_error_classes() -> None:
    assert set(_documented()) == {cls.__name__ for cls in _error_classes()}


@pytest.mark.parametrize("cls", _error_classes(), ids=lambda cls: cls.__name__)
def test_error_renders_the_canonical_body_with_its_documented_status_and_type(cls: type[WorkerError]) -> None:
    row = _documented()[cls.__name__]
    if row["status"] == "4xx":
        assert 400 <= cls.status_code < 500
    else:
        assert cls.status_code == int(row["status"])
        assert cls.error_type == row["type"]
    assert cls.retryable == ("retryable" in row["rest"])

    plain = cls("what to change")
    detailed = cls(
        "node 3 is wrong",
        node_errors={"3": {"class_type": "KSampler", "errors": [{"type": "x", "message": "y"}]}},
        node_id="3",
        unused=None,
    )

    assert plain.to_body() == {
        "status": "error",
        "error": {"type": cls.error_type, "message": "what to change", "id": plain.id},
    }
    assert detailed.to_body() == {
        "status": "error",
        "error": {
            "type": cls.error_type,
            "message": "node 3 is wrong",
            "id": detailed.id,
            "node_errors": {"3": {"class_type": "KSampler", "errors": [{"type": "x", "message": "y"}]}},
            "node_id": "3",
        },
    }
    assert re.fullmatch(r"[0-9a-f]{12}", plain.id) and plain.id != detailed.id
    assert json.loads(json.dumps(detailed.to_body())) == detailed.to_body()
    assert str(plain) == "what to change"


def test_a_body_never_carries_a_traceback_a_server_path_or_a_long_echo() -> None:
    home = str(Path.home())
    raised = WorkerError(
        f"node 2 failed: OSError: cannot open '{home}/ComfyUI/input/x.png' or /tmp/a/b.png; gs://bucket/a/b stays",
        node_errors={"2": {"class_type": "LoadImage", "errors": [{"received": "A" * 100_000, "message": "\ud800"}]}},
        choices=[f"model-{n}.safetensors" for n in range(1000)],
    )

    body = raised.to_body()
    text = json.dumps(body, ensure_ascii=False)

    assert home not in text and "/tmp/" not in text
    assert "'<server>/x.png'" in body["error"]["message"] and "gs://bucket/a/b stays" in body["error"]["message"]
    received = body["error"]["node_errors"]["2"]["errors"][0]["received"]
    assert received.startswith("A" * ECHO_LIMIT) and len(received) < ECHO_LIMIT + 50
    assert len(body["error"]["choices"]) == LIST_LIMIT + 1
    assert len(text) < 20_000
    text.encode("utf-8")  # a lone surrogate would make this raise: it is escaped


def test_clip_says_how_much_it_left_out() -> None:
    assert clip("short") == "short"
    assert clip("x" * 310, 300) == "x" * 300 + "... (10 more characters)"
