"""From a batch to its items: overrides per item, seeds drawn for "random", and each task's share.

A grid is the cartesian product of its value lists, the first list outermost: with
`{"6": {"text": [20 prompts]}, "3": {"seed": {"random": 10}}}` items 0-9 share the first prompt.
Tasks take contiguous runs of items, so one task runs a prompt's seeds back to back and ComfyUI's
cache serves the unchanged nodes (the text encoding) to every seed after the first.

A "random" seed is not random at all: it is a hash of the batch id, the item's index and the input
it sets, so a rerun, a retried task or a reader of result.json gets the same number every time.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from job.batch.spec import Batch, Overrides
from job.errors import InvalidRequest

RANDOM = "random"
MAX_ITEMS = 100_000
SEED_RANGE = 2**32  # every sampler takes it, and so does numpy's seed() that some custom nodes call

_ITEM_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


@dataclass(frozen=True)
class Item:
    """One item of a batch: its place, its folder name and the overrides it runs with."""

    index: int
    id: str
    overrides: Overrides  # as run: every "random" seed replaced by its number
    seeds: dict[str, int] = field(default_factory=dict)  # "node.input" -> the seed drawn for "random"

    def workflow(self, base: Mapping[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return apply_overrides(base, self.overrides)


def plan_items(batch: Batch) -> list[Item]:
    """Every item of the batch, in order, checked against the workflow (InvalidRequest on a mistake)."""
    where = f"batch spec {batch.source.uri}"
    if batch.spec.items is not None:
        raw: list[tuple[str | None, Overrides]] = [(item.id, item.overrides) for item in batch.spec.items]
        if len(raw) > MAX_ITEMS:
            raise InvalidRequest(f"{where}: {len(raw)} items are more than {MAX_ITEMS}; split the batch")
        for index, (_, overrides) in enumerate(raw):
            for node, name in _addresses(overrides):
                check_input(batch.workflow, node, name, f"{where}: `items.{index}.overrides`")
    else:
        raw = [(None, overrides) for overrides in _grid(batch.spec.grid or {}, batch.workflow, where)]
    width = max(4, len(str(len(raw) - 1)))
    items: list[Item] = []
    seen: dict[str, int] = {}
    for index, (given, overrides) in enumerate(raw):
        item_id = given if given is not None else f"{index:0{width}d}"
        _check_item_id(item_id, f"{where}: `items.{index}.id`")
        if item_id in seen:
            first = seen[item_id]
            raise InvalidRequest(f"{where}: items {first} and {index} share the id {item_id!r}; ids must differ")
        seen[item_id] = index
        resolved, seeds = _draw_seeds(overrides, batch.id, index)
        items.append(Item(index=index, id=item_id, overrides=resolved, seeds=seeds))
    return items


def task_share(count: int, task_index: int, task_count: int) -> range:
    """The contiguous run of item indexes task `task_index` of `task_count` runs (possibly empty)."""
    if not 0 <= task_index < task_count:
        raise ValueError(f"task index {task_index} is outside 0..{task_count - 1}")
    return range(count * task_index // task_count, count * (task_index + 1) // task_count)


def random_seed(batch_id: str, index: int, node: str, name: str) -> int:
    """The seed "random" stands for: the same for the same batch id, item index and input, always."""
    digest = hashlib.sha256(f"{batch_id}\x00{index}\x00{node}\x00{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % SEED_RANGE


def is_seed_input(name: str) -> bool:
    """Inputs where "random" means a drawn seed: `seed`, `noise_seed`, any name ending in "seed"."""
    return name.lower().endswith("seed")


def apply_overrides(base: Mapping[str, dict[str, Any]], overrides: Overrides) -> dict[str, dict[str, Any]]:
    """A copy of `base` with the overrides set; nodes not touched are shared, not copied."""
    workflow = dict(base)
    for node, inputs in overrides.items():
        workflow[node] = {**base[node], "inputs": {**base[node].get("inputs", {}), **inputs}}
    return workflow


def check_input(workflow: Mapping[str, dict[str, Any]], node: str, name: str, where: str) -> None:
    """An override must name a node of the workflow and one of its inputs: a typo fails here, not in 200 runs."""
    if node not in workflow:
        nodes = ", ".join(list(workflow)[:30])
        raise InvalidRequest(f"{where}: node {node!r} is not in the workflow (its nodes: {nodes})")
    known = workflow[node].get("inputs", {})
    if name not in known:
        kind = workflow[node].get("class_type")
        raise InvalidRequest(
            f"{where}: node {node} ({kind}) has no input {name!r}; its inputs are: {', '.join(sorted(known))}"
        )


def _grid(grid: Mapping[str, Any], workflow: Mapping[str, dict[str, Any]], where: str) -> Iterator[Overrides]:
    axes: list[tuple[str, str, list[Any]]] = []
    for node, inputs in grid.items():
        if not inputs:
            raise InvalidRequest(f"{where}: `grid.{node}` is empty; give it input -> list of values")
        for name, values in inputs.items():
            check_input(workflow, node, name, f"{where}: `grid.{node}.{name}`")
            axes.append((node, name, _axis(values, f"{where}: `grid.{node}.{name}`", name)))
    total = math.prod(len(values) for _, _, values in axes)
    if total > MAX_ITEMS:
        raise InvalidRequest(f"{where}: the grid makes {total} items, more than {MAX_ITEMS}; split the batch")
    for combination in itertools.product(*(values for _, _, values in axes)):
        overrides: Overrides = {}
        for (node, name, _), value in zip(axes, combination, strict=True):
            overrides.setdefault(node, {})[name] = value
        yield overrides


def _axis(values: object, where: str, name: str) -> list[Any]:
    if isinstance(values, dict) and set(values) == {RANDOM}:
        count = values[RANDOM]
        if not is_seed_input(name):
            raise InvalidRequest(f'{where}: {{"random": N}} draws seeds, and {name!r} is not a seed input')
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_ITEMS:
            raise InvalidRequest(f'{where}: {{"random": N}} needs N, a whole number from 1 to {MAX_ITEMS}')
        return [RANDOM] * count
    if not isinstance(values, list) or not values:
        raise InvalidRequest(
            f"{where} must be a non-empty list of values (the grid combines every value of every list), "
            f'or {{"random": N}} for N seeds; a single value is a list of one: [{values!r}]'
        )
    return values


def _addresses(overrides: Overrides) -> Iterator[tuple[str, str]]:
    for node, inputs in overrides.items():
        for name in inputs:
            yield node, name


def _draw_seeds(overrides: Overrides, batch_id: str, index: int) -> tuple[Overrides, dict[str, int]]:
    seeds: dict[str, int] = {}
    resolved: Overrides = {}
    for node, inputs in overrides.items():
        resolved[node] = {}
        for name, value in inputs.items():
            if value == RANDOM and is_seed_input(name):
                value = seeds[f"{node}.{name}"] = random_seed(batch_id, index, node, name)
            resolved[node][name] = value
    return resolved, seeds


def _check_item_id(item_id: str, where: str) -> None:
    """Ids are folder names; '_' and '.' starts and '.json' ends are the batch's own files."""
    if (
        not item_id
        or len(item_id) > 128
        or not set(item_id) <= _ITEM_ID_CHARS
        or item_id[0] in "._"
        or item_id.endswith(".json")
    ):
        raise InvalidRequest(
            f"{where} {item_id!r} must be 1-128 letters, digits, '.', '_' or '-', not start with '.' or '_' "
            "and not end in '.json'"
        )
