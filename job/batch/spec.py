"""The batch spec: a workflow, its items (a list or a grid), and where their outputs go.

    {
      "id": "nightly-foxes",                           optional; default: the spec's file name
      "workflow": "sdxl.json",                         inline, a path (relative to the spec) or gs://
      "grid": {"6": {"text": ["a red fox", "a grey wolf"]},    every combination of the lists,
               "3": {"seed": {"random": 10}}},                 or "items": [{"id", "overrides"}, ...]
      "prefix": "gs://outbox/nightly/{execution}/",    optional; default: as for an inbox drop
      "tasks": 4,                                      the task count of a `.batch.json` drop and the CLI
      "output": {"format": "webp"}, "timeout_s": 600, "inputs": {...}, "images": [...]
    }

`load_batch` reads and checks all of it (the workflow too) before a task boots ComfyUI or writes a
byte: a bad spec is one InvalidRequest that names the field and says what to change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from job.engine.request import InputImage, OutputOptions, parse_json, parse_request
from job.errors import InputNotFound, InvalidJSON, InvalidRequest, RequestError
from job.items.inbox import Inbox, ItemSource
from job.settings import Settings
from job.storage import Storages, as_folder
from trigger.objects import InboxLayout

SPEC_SUFFIX = ".batch.json"
MAX_TASKS = 10_000
LOCAL_EXECUTION = "local"  # what {execution} means outside Cloud Run

Overrides = dict[str, dict[str, Any]]

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


class ItemSpec(BaseModel):
    """One explicit item."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(None, description="Folder name of the item under the prefix; default: its index, padded.")
    overrides: Overrides = Field(
        default_factory=dict, description='Node inputs to set, e.g. {"6": {"text": "a red fox"}, "3": {"seed": 42}}.'
    )


class BatchSpec(BaseModel):
    """The batch spec document (docs/batch.md)."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(
        None, description="Batch id: random seeds derive from it. Default: the spec's name without .batch.json."
    )
    workflow: dict[str, Any] | str = Field(
        description="API-format workflow inline, or a path (relative to the spec) or gs:// URI of one."
    )
    items: list[ItemSpec] | None = Field(None, description="Explicit items, each with its overrides.")
    grid: dict[str, dict[str, Any]] | None = Field(
        None, description='node -> input -> list of values; the items are every combination. {"random": N}: N seeds.'
    )
    prefix: str | None = Field(
        None, description="Where items go (<prefix><item-id>/): gs://bucket/path/ or a folder. {execution} allowed."
    )
    tasks: int = Field(1, ge=1, le=MAX_TASKS, description="Task count of a .batch.json drop and of `batch run`.")
    output: OutputOptions = Field(default_factory=OutputOptions)  # type: ignore[arg-type]
    timeout_s: float | None = Field(None, gt=0, le=86400, description="Deadline of each item's run in seconds.")
    inputs: dict[str, str] = Field(default_factory=dict, description="Inputs by reference for every item.")
    images: list[InputImage] = Field(default_factory=list, description="Inline inputs for every item.")

    @model_validator(mode="after")
    def _items_named_one_way(self) -> BatchSpec:
        if (self.items is None) == (self.grid is None):
            raise ValueError(
                "name the items with exactly one of `items` (a list of {id, overrides}) or `grid` "
                "(node -> input -> list of values, combined every way)"
            )
        if self.items == [] or self.grid == {}:
            raise ValueError("`items` or `grid` is empty: a batch needs at least one item")
        return self


@dataclass(frozen=True)
class Batch:
    """A loaded, checked batch: what every task of it needs before planning its share."""

    id: str
    source: ItemSource  # the spec itself; each item's result.json names it as `source`
    spec: BatchSpec
    workflow: dict[str, dict[str, Any]]
    prefix: str  # ends in "/": items go to <prefix><item-id>/


def load_batch(uri: str, storages: Storages, settings: Settings, *, prefix: str | None = None) -> Batch:
    """Read the spec at `uri` (gs://bucket/name.batch.json[#generation] or a path) and its workflow.

    Raises a RequestError (InvalidRequest, InvalidJSON, InputNotFound, ...) for anything the spec's
    author must fix, StorageError when storage failed us.
    """
    source = ItemSource.parse(uri)
    raw = Inbox(storages).read(source)
    try:
        doc = parse_json(raw)
    except InvalidJSON as exc:
        raise InvalidJSON(f"batch spec {uri} is not valid JSON: {exc.message.split(';')[0]}") from None
    if not isinstance(doc, dict):
        raise InvalidRequest(f"batch spec {uri} must be a JSON object with `workflow` and `items` or `grid`")
    try:
        spec = BatchSpec.model_validate(doc)
    except ValidationError as exc:
        raise InvalidRequest(f"batch spec {uri} is invalid: {_explain(exc)}") from None
    execution = settings.cloud_run_execution or LOCAL_EXECUTION
    batch_id = _expand(spec.id or default_id(source), execution, "id", uri)
    if not _ID.fullmatch(batch_id):
        raise InvalidRequest(
            f"batch spec {uri}: `id` {batch_id!r} must be 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    prefix = _expand(prefix or spec.prefix or default_prefix(source, settings), execution, "prefix", uri)
    return Batch(
        id=batch_id,
        source=source,
        spec=spec,
        workflow=_workflow(spec, source, storages),
        prefix=_check_prefix(prefix, uri),
    )


def default_id(source: ItemSource) -> str:
    """The spec's file name without `.batch.json` (or `.json`)."""
    name = PurePosixPath(source.name).name
    return name.removesuffix(SPEC_SUFFIX) if name.endswith(SPEC_SUFFIX) else name.removesuffix(".json")


def default_prefix(source: ItemSource, settings: Settings) -> str:
    """As for an inbox drop: gs://OUTBOX/<OUTBOX_PREFIX><path/name>/; locally a folder beside the spec."""
    return source.outbox_folder(InboxLayout(settings.outbox_bucket, settings.outbox_prefix), default_id(source))


def _workflow(spec: BatchSpec, source: ItemSource, storages: Storages) -> dict[str, dict[str, Any]]:
    """The base workflow, inline or read from where `workflow` points, checked like a request's."""
    where = f"batch spec {source.uri}: `workflow`"
    if isinstance(spec.workflow, dict):
        doc: object = spec.workflow
    else:
        ref = _resolve(spec.workflow, source, where)
        where = f"{where} ({ref})"
        try:
            doc = parse_json(storages.read(ref))
        except InputNotFound:
            raise InvalidRequest(f"{where} does not exist; give a path relative to the spec, or a gs:// URI") from None
        except InvalidJSON as exc:
            raise InvalidJSON(f"{where}: {exc.message}") from None
    try:
        request = parse_request(doc)
    except RequestError as exc:
        raise type(exc)(f"{where}: {exc.message}") from None
    if request.images or request.inputs:
        raise InvalidRequest(
            f"{where} is a request document with `images` or `inputs`: move them into the batch spec, "
            "where they apply to every item"
        )
    return request.workflow


def _resolve(ref: str, source: ItemSource, where: str) -> str:
    """A workflow reference as a URI: gs:// as given, a path relative to the spec's folder."""
    if ref.startswith("gs://"):
        return ref
    if "://" in ref:
        raise InvalidRequest(f"{where} {ref!r}: give a path or a gs:// URI")
    resolved = source.beside(ref)
    if resolved is None:
        raise InvalidRequest(f"{where} {ref!r} leaves the spec's bucket; give a gs:// URI")
    return resolved


def _expand(value: str, execution: str, field: str, uri: str) -> str:
    """Fill in {execution}: a fresh folder (and fresh seeds) per execution, e.g. for nightly runs."""

    def fill(match: re.Match[str]) -> str:
        if match.group(1) != "execution":
            raise InvalidRequest(
                f"batch spec {uri}: `{field}` has the placeholder {{{match.group(1)}}}; the only one is "
                "{execution} (the Cloud Run execution's name)"
            )
        return execution

    return _PLACEHOLDER.sub(fill, value)


def _check_prefix(prefix: str, uri: str) -> str:
    if prefix.startswith("gs://"):
        bucket = prefix[len("gs://") :].partition("/")[0]
        if not bucket:
            raise InvalidRequest(f"batch spec {uri}: `prefix` {prefix!r} names no bucket; use gs://bucket/path/")
    elif "://" in prefix:
        raise InvalidRequest(f"batch spec {uri}: `prefix` {prefix!r} must be gs://bucket/path/ or a folder")
    return as_folder(prefix)


def _explain(exc: ValidationError) -> str:
    return "; ".join(f"`{'.'.join(str(p) for p in err['loc']) or '(spec)'}`: {err['msg']}" for err in exc.errors())
