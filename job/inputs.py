"""A request's inputs as bytes by name: inline images decoded, references fetched in parallel."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from job.errors import InvalidInput
from job.request import WorkflowRequest, check_input_name, decode_image

Fetch = Callable[[str], bytes]


def gather_inputs(request: WorkflowRequest, fetch: Fetch | None = None) -> dict[str, bytes]:
    """Every input the workflow needs uploaded; a bad one raises InvalidInput naming it."""
    inputs = {image.name: decode_image(image.name, image.image) for image in request.images}
    references = {check_input_name(name): uri for name, uri in request.inputs.items()}
    duplicated = sorted(set(inputs) & set(references))
    if duplicated:
        raise InvalidInput(f"input name(s) {duplicated} appear in both `images` and `inputs`; use each name once")
    if references and fetch is None:
        raise InvalidInput("inputs by reference (`inputs`) are not available here; send them inline in `images`")
    if references:
        assert fetch is not None
        with ThreadPoolExecutor(max_workers=min(8, len(references))) as pool:
            fetched = dict(zip(references, pool.map(fetch, references.values()), strict=True))
        inputs.update(fetched)
    return inputs
