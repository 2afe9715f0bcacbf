"""docs/api.md, the public contract, stays true to the code: error types and statuses, request
fields, outbox names, HTTP routes, and the section numbers the code cites.

The routes come from the real FastAPI app, built on a stand-in runner: `create_app` only keeps the
runner (its routes call it), so nothing starts ComfyUI or opens a connection.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import BaseModel

import job.errors as errors_module
import job.service.handlers as handlers_module
from job.engine.request import InputImage, OutputOptions, WorkflowRequest
from job.errors import WorkerError
from job.items import outbox
from job.service import async_requests, predict
from job.service.app import create_app
from job.service.schemas import PredictResponse
from job.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "api.md"
_SECTION = re.compile(r"^## (\d+)\. (.+)$", re.MULTILINE)
# | `type` | 400 | `Class` | ...   (class `—` for the HTTP layer's own refusals)
_ERROR_ROW = re.compile(r"^\|\s*`([a-z_]+)`\s*\|\s*([^|]+?)\s*\|\s*(?:`(\w+)`|—)\s*\|", re.MULTILINE)
_FIELD_ROW = re.compile(r"^\|\s*`([A-Za-z_][\w.\[\]]*)`\s*\|", re.MULTILINE)
_ENDPOINT = re.compile(r"^### 5\.\d+ `([A-Z]+) (/\S*)`$", re.MULTILINE)
_CITATION = re.compile(r"api\.md,? sections? (\d+(?:(?:, | and )\d+)*)")
_HTTP_LAYER_TYPE = re.compile(r"""["']([a-z]+_error)["']""")


def doc_text() -> str:
    return DOC.read_text()


def sections() -> dict[int, str]:
    """Section number -> its text, heading to the next heading."""
    text = doc_text()
    heads = list(_SECTION.finditer(text))
    return {
        int(head[1]): text[head.start() : heads[i + 1].start() if i + 1 < len(heads) else len(text)]
        for i, head in enumerate(heads)
    }


def section(title: str) -> str:
    """The one section whose title starts with `title`."""
    text = doc_text()
    found = [head for head in _SECTION.finditer(text) if head[2].startswith(title)]
    assert len(found) == 1, f"docs/api.md needs exactly one section titled {title!r}..."
    return sections()[int(found[0][1])]


def error_classes() -> list[type[WorkerError]]:
    """Every WorkerError class job/errors.py defines (the walk tests/test_errors.py does)."""
    found = [
        cls
        for _, cls in inspect.getmembers(errors_module, inspect.isclass)
        if issubclass(cls, WorkerError) and cls.__module__ == errors_module.__name__
    ]
    assert len(found) >= 20, found
    return found


def http_layer_types() -> set[str]:
    """The error types job/service/handlers.py renders for refusals that are not WorkerErrors."""
    source = inspect.getsource(handlers_module)
    found = set(handlers_module._HTTP_TYPES.values()) | set(_HTTP_LAYER_TYPE.findall(source))
    assert {"method_not_allowed", "internal_error", "http_error"} <= found, found
    return found


def error_rows() -> list[tuple[str, str, str | None]]:
    rows = [(kind, status, cls or None) for kind, status, cls in _ERROR_ROW.findall(section("Errors"))]
    assert rows, "no error table in docs/api.md's Errors section"
    return rows


def documented_fields(text: str) -> set[str]:
    return set(_FIELD_ROW.findall(text))


def public_names(model: type[BaseModel]) -> set[str]:
    """The names a client writes: the alias where there is one (`async`, `return`)."""
    names = {field.alias or name for name, field in model.model_fields.items()}
    assert names, model
    return names


def build_app() -> FastAPI:
    return create_app(Settings(api_token="guard-test"), SimpleNamespace(server=None))  # type: ignore[arg-type]


# --- sections ------------------------------------------------------------------------------------


def test_sections_are_numbered_one_to_n() -> None:
    numbers = [int(head[1]) for head in _SECTION.finditer(doc_text())]
    assert len(numbers) >= 10
    assert numbers == list(range(1, len(numbers) + 1)), f"number the sections 1, 2, 3...: {numbers}"


def test_every_citation_of_the_doc_names_a_section_it_has() -> None:
    cited: dict[str, set[int]] = {}
    paths = [*(ROOT / "job").rglob("*.py"), *(ROOT / "trigger").rglob("*.py"), *(ROOT / "docs").glob("*.md")]
    for path in [*paths, ROOT / "README.md"]:
        for match in _CITATION.finditer(path.read_text()):
            numbers = {int(n) for n in re.findall(r"\d+", match[1])}
            cited.setdefault(str(path.relative_to(ROOT)), set()).update(numbers)
    assert cited, "nothing cites docs/api.md by section"
    known = set(sections())
    wrong = {where: sorted(numbers - known) for where, numbers in cited.items() if numbers - known}
    assert not wrong, f"these cite sections docs/api.md does not have: {wrong}"


def test_nothing_cites_the_old_contract_file() -> None:
    paths = [*(ROOT / "job").rglob("*.py"), *(ROOT / "trigger").rglob("*.py"), *(ROOT / "docs").glob("*.md")]
    stale = [str(path.relative_to(ROOT)) for path in [*paths, ROOT / "README.md"] if "CONTRACT.md" in path.read_text()]
    assert not stale, f"cite docs/api.md section N instead of CONTRACT.md in: {stale}"


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", error_classes(), ids=lambda cls: cls.__name__)
def test_every_error_class_is_documented_with_its_type_and_status(cls: type[WorkerError]) -> None:
    assert (cls.error_type, str(cls.status_code), cls.__name__) in error_rows(), (
        f"add `| `{cls.error_type}` | {cls.status_code} | `{cls.__name__}` | ... |` to docs/api.md's Errors table"
    )


def test_the_doc_names_no_error_type_or_class_the_code_lacks() -> None:
    classes = {cls.__name__ for cls in error_classes()}
    types = {cls.error_type for cls in error_classes()} | http_layer_types()
    rows = error_rows()
    unknown_types = {kind for kind, _, _ in rows} - types
    assert not unknown_types, f"docs/api.md lists error types no code sends: {sorted(unknown_types)}"
    unknown_classes = {cls for _, _, cls in rows if cls} - classes
    assert not unknown_classes, f"docs/api.md lists error classes job/errors.py lacks: {sorted(unknown_classes)}"
    # each worker error is listed once; the HTTP layer's rows are the ones without a class
    named = [cls for _, _, cls in rows if cls]
    assert len(named) == len(set(named)), f"an error class is listed twice: {sorted(named)}"
    assert {kind for kind, _, cls in rows if cls is None} == http_layer_types(), "the HTTP layer's table is off"


def test_every_status_the_doc_gives_an_error_is_an_http_status() -> None:
    statuses = {status for _, status, cls in error_rows() if cls}
    assert statuses and all(re.fullmatch(r"[1-5]\d\d", status) for status in statuses), statuses


# --- the request and the response ----------------------------------------------------------------


def test_every_request_field_is_documented_and_nothing_else() -> None:
    rows = documented_fields(section("The request document"))
    for prefix, model in (("", WorkflowRequest), ("output.", OutputOptions), ("images[].", InputImage)):
        documented = {
            row.removeprefix(prefix) for row in rows if row.startswith(prefix) and "." not in row[len(prefix) :]
        }
        code = public_names(model)
        assert documented == code, (
            f"{model.__name__}: undocumented {sorted(code - documented)}, not in the code {sorted(documented - code)}"
        )


def test_every_sync_response_field_is_documented_and_nothing_else() -> None:
    documented, code = documented_fields(section("The sync response")), public_names(PredictResponse)
    assert documented == code, f"undocumented {sorted(code - documented)}, not in the code {sorted(documented - code)}"


def test_the_ui_format_refusal_and_bare_workflows_are_described() -> None:
    text = section("The request document")
    for phrase in ("Export (API)", "ui_format_workflow", "Bare workflows", "`nodes`"):
        assert phrase in text


# --- the outbox and async requests ---------------------------------------------------------------


def test_the_outbox_file_names_appear() -> None:
    names = {outbox.RESULT, outbox.STATUS}
    assert names == {"result.json", "status.json"}
    text = section("The inbox and the outbox")
    for name in names:
        assert f"{name} " in text and f"`{name}`" in text, f"the outbox section does not name {name}"


def test_the_object_prefixes_of_async_and_uri_outputs_appear() -> None:
    text = doc_text()
    assert f"gs://INBOX/{async_requests.PREFIX}/<id>.json" in text
    assert f"gs://OUTBOX/<OUTBOX_PREFIX>{async_requests.PREFIX}/<id>/" in text
    assert f"gs://OUTBOX/{predict.OUTBOX_PREFIX}/<prompt_id>/" in text


# --- HTTP routes ---------------------------------------------------------------------------------


def test_every_route_the_app_registers_is_documented() -> None:
    app = build_app()
    api = {(method, route.path) for route in app.routes if isinstance(route, APIRoute) for method in route.methods}
    others = {getattr(route, "path", "") for route in app.routes if not isinstance(route, APIRoute)}
    assert {("POST", "/predict"), ("GET", "/status/{request_id}")} <= api
    assert {"/docs", "/openapi.json"} <= others
    text = doc_text()
    assert api == set(_ENDPOINT.findall(section("HTTP endpoints"))), "one `### 5.N `METHOD /path`` per route"
    missing = [path for path in sorted(others) if f"`{path}`" not in text and f"`GET {path}`" not in text]
    assert not missing, f"docs/api.md does not name these routes: {missing}"


def test_auth_limits_and_async_answers_are_described() -> None:
    text = section("HTTP endpoints")
    wanted = ["API_TOKEN", "Authorization: Bearer", "413", "429", "Retry-After", "202", "status_url"]
    wanted += ["Prefer: respond-async", "MAX_BODY_BYTES", "MAX_QUEUE_DEPTH", "X-Serverless-Authorization"]
    missing = [phrase for phrase in wanted if phrase not in text]
    assert not missing, missing
