"""ComfyUI's HTTP API, one method per endpoint, with its failures translated into ours.

This is the only module that knows ComfyUI's URLs. The job, the service and the CLI all reach
ComfyUI through it (via the runner), so the protocol lives in one place.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from job.comfyui.compat import is_output_node, upload_reference
from job.comfyui.validation import prompt_error
from job.errors import ComfyUnavailable, InvalidInput, WorkerError

_PER_CLASS_READS = 16  # new classes in one workflow read one by one; more, and the whole catalogue at once


@dataclass(frozen=True)
class QueueState:
    running: frozenset[str]
    pending: frozenset[str]

    def holds(self, prompt_id: str) -> bool:
        return prompt_id in self.running or prompt_id in self.pending


@contextmanager
def comfy_errors(base_url: str) -> Iterator[None]:
    """Turn httpx's transport and status errors into ComfyUnavailable, naming the address."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise ComfyUnavailable(f"ComfyUI at {base_url} did not answer in time ({exc.__class__.__name__})") from exc
    except httpx.TransportError as exc:
        raise ComfyUnavailable(f"ComfyUI at {base_url} is unreachable: {exc}") from exc
    except httpx.HTTPStatusError as exc:
        body = exc.response.text[:500]
        raise ComfyUnavailable(
            f"ComfyUI answered {exc.response.status_code} to {exc.request.url.path}: {body}"
        ) from exc


class ComfyClient:
    """A synchronous client for one ComfyUI server."""

    def __init__(self, base_url: str, *, timeout_s: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout_s)
        self._object_info: dict[str, Any] | None = None
        self._classes: dict[str, dict[str, Any] | None] = {}  # class -> its /object_info entry; None: not installed

    def close(self) -> None:
        self._http.close()

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http://", "ws://", 1).replace("https://", "wss://", 1) + "/ws"

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        with comfy_errors(self.base_url):
            response = self._http.request(method, path, **kwargs)
            response.raise_for_status()
            return response.json() if response.content else None

    # --- reading ---------------------------------------------------------------------------------

    def system_stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", "/system_stats")
        return result

    def object_info(self, *, refresh: bool = False) -> dict[str, Any]:
        """Every node class and its inputs; cached. Model lists in it go stale as files land in models/."""
        if self._object_info is None or refresh:
            self._object_info = self._json("GET", "/object_info")
        return self._object_info or {}

    def class_info(self, class_types: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The /object_info entries of those of `class_types` that ComfyUI has; cached per class.

        One small /object_info/{class} read per class not seen before, not the whole catalogue; past
        `_PER_CLASS_READS` new classes, one read of the whole. A class ComfyUI lacks is remembered as
        such (the prompt's validation names it), so no workflow costs more than that until
        `forget_classes`. What is read here is the schema, not the model lists in it.
        """
        names = set(class_types)
        missing = names - self._classes.keys()
        if len(missing) > _PER_CLASS_READS:
            catalogue = self._json("GET", "/object_info") or {}
            self._object_info = catalogue
            for class_type in missing:
                info = catalogue.get(class_type)
                self._classes[class_type] = info if isinstance(info, dict) else None
        else:
            for class_type in missing:
                info = (self._json("GET", f"/object_info/{quote(class_type, safe='')}") or {}).get(class_type)
                self._classes[class_type] = info if isinstance(info, dict) else None
        return {name: info for name in names if (info := self._classes.get(name)) is not None}

    def forget_classes(self) -> None:
        """Drop what `class_info` remembers: the server restarted, and may have other nodes now."""
        self._classes = {}

    def output_classes(self, class_types: Iterable[str]) -> frozenset[str]:
        """Those of `class_types` that are output nodes (what ComfyUI runs a prompt for)."""
        return frozenset(name for name, info in self.class_info(class_types).items() if is_output_node(info))

    def history(self, prompt_id: str) -> dict[str, Any] | None:
        """The finished prompt's history entry, or None while it is queued or running."""
        entries = self._json("GET", f"/history/{prompt_id}") or {}
        entry: dict[str, Any] | None = entries.get(prompt_id)
        return entry

    def queue(self) -> QueueState:
        raw = self._json("GET", "/queue") or {}

        def ids(key: str) -> frozenset[str]:
            return frozenset(str(item[1]) for item in raw.get(key, []) if len(item) > 1)

        return QueueState(running=ids("queue_running"), pending=ids("queue_pending"))

    def view(self, filename: str, subfolder: str, folder_type: str) -> bytes:
        with comfy_errors(self.base_url):
            response = self._http.get(
                "/view", params={"filename": filename, "subfolder": subfolder, "type": folder_type}
            )
            response.raise_for_status()
            return response.content

    # --- acting ----------------------------------------------------------------------------------

    def upload_image(
        self, name: str, data: bytes, *, subfolder: str = "", content_type: str = "application/octet-stream"
    ) -> str:
        """Put an input file into `subfolder` of ComfyUI's input folder under `name` (a bare file name).

        Returns the value a loader takes for it (`subfolder/name`); any file type, despite the route's name.
        """
        form = {"overwrite": "true", "type": "input", **({"subfolder": subfolder} if subfolder else {})}
        with comfy_errors(self.base_url):
            response = self._http.post("/upload/image", files={"image": (name, data, content_type)}, data=form)
        if response.status_code >= 400:
            raise InvalidInput(f"ComfyUI refused input {name!r}: {response.text[:300]}")
        return upload_reference(response.json(), name, subfolder)

    def queue_prompt(
        self,
        workflow: dict[str, Any],
        client_id: str,
        prompt_id: str | None = None,
        extra_data: Mapping[str, Any] | None = None,
    ) -> str:
        """Queue the workflow (under `prompt_id` if given); a 400 becomes a typed error naming each bad node.

        `extra_data` is POST /prompt's own (0.33 and 0.3.75 alike): ComfyUI hands it to the nodes (its
        API nodes read `api_key_comfy_org` / `auth_token_comfy_org` there, and keep those two out of
        /history). ComfyUI writes the body's `client_id` into it, so ours always wins; a `client_id`
        inside it is dropped all the same: our websocket routes the run's events by ours.
        """
        body: dict[str, Any] = {"prompt": workflow, "client_id": client_id}
        if prompt_id is not None:
            body["prompt_id"] = prompt_id
        if extra_data:
            body["extra_data"] = {key: value for key, value in extra_data.items() if key != "client_id"}
        with comfy_errors(self.base_url):
            response = self._http.post("/prompt", json=body)
        if response.status_code == 400:
            try:
                refusal = response.json()
            except json.JSONDecodeError:
                refusal = {"error": {"message": response.text}}
            raise prompt_error(refusal, workflow, self._object_info_or_empty)
        with comfy_errors(self.base_url):
            response.raise_for_status()
        answer = response.json()
        queued_id: str = answer["prompt_id"]
        if answer.get("node_errors"):
            # ComfyUI queued only the outputs that validated; running half a workflow would
            # silently drop the rest, so take it back and report every bad node.
            self.delete_queued(queued_id)
            self.interrupt(queued_id)
            raise prompt_error(answer, workflow, self._object_info_or_empty)
        return queued_id

    def interrupt(self, prompt_id: str) -> None:
        """Stop the prompt if it is running (ComfyUI 0.3.x interrupts only the named prompt)."""
        self._json("POST", "/interrupt", json={"prompt_id": prompt_id})

    def delete_queued(self, prompt_id: str) -> None:
        self._json("POST", "/queue", json={"delete": [prompt_id]})

    def _object_info_or_empty(self) -> dict[str, Any]:
        """Fresh: the choices a missing-model error lists must include files added since the last read."""
        try:
            return self.object_info(refresh=True)
        except WorkerError:
            return {}
