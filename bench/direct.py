"""The smallest correct ComfyUI client: the baseline the runner and the service are measured against.

POST /prompt, wait on the websocket for `executing` with node None, read /history, fetch each file
with /view. One keep-alive HTTP connection and one websocket for the client's lifetime, no polling,
no checks: the floor any wrapper can only add to.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import websocket


class DirectClient:
    """Runs API-format workflows on a ComfyUI at `base_url`; not thread-safe (one socket)."""

    def __init__(self, base_url: str, *, timeout_s: float = 300.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.client_id = uuid.uuid4().hex
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout_s)
        ws_url = self.base_url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
        self._ws = websocket.create_connection(f"{ws_url}/ws?clientId={self.client_id}", timeout=timeout_s)

    def close(self) -> None:
        self._ws.close()
        self._http.close()

    def __enter__(self) -> DirectClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, workflow: dict[str, Any]) -> list[bytes]:
        """Queue, wait for the end, and return the bytes of every output file, in history order."""
        response = self._http.post("/prompt", json={"prompt": workflow, "client_id": self.client_id})
        response.raise_for_status()
        prompt_id = response.json()["prompt_id"]
        self._wait(prompt_id)
        history = self._http.get(f"/history/{prompt_id}").json()[prompt_id]
        files = []
        for node_output in history["outputs"].values():
            for items in node_output.values():
                for item in items if isinstance(items, list) else []:
                    if isinstance(item, dict) and "filename" in item:
                        params = {"filename": item["filename"], "subfolder": item["subfolder"], "type": item["type"]}
                        view = self._http.get("/view", params=params)
                        view.raise_for_status()
                        files.append(view.content)
        return files

    def _wait(self, prompt_id: str) -> None:
        while True:
            frame = self._ws.recv()
            if not isinstance(frame, str):
                continue  # binary preview
            event = json.loads(frame)
            data = event.get("data") or {}
            if data.get("prompt_id") != prompt_id:
                continue
            if event.get("type") == "executing" and data.get("node") is None:
                return
            if event.get("type") == "execution_error":
                raise RuntimeError(f"node {data.get('node_id')} failed: {data.get('exception_message')}")
