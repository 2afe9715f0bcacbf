"""`.dev/stack.json`: where a running `worker-comfyui dev` listens, for `worker-comfyui submit` to find.

The stack writes it once every part answers and removes it when it stops; a file left by a stack
that was killed names a pid that is gone, and counts as no stack.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import google.cloud.storage as storage

STATE_FILE = "stack.json"


class StackNotRunning(RuntimeError):
    """No live dev stack uses this data folder; the message says how to start one."""


@dataclass(frozen=True)
class StackInfo:
    """The addresses and names of one running dev stack."""

    pid: int
    data_dir: str
    project: str
    gcs: str
    inbox_bucket: str
    outbox_bucket: str
    outbox_prefix: str
    comfyui: str
    function: str
    run_api: str
    service: str

    def alive(self) -> bool:
        """True while the process that wrote this file still runs."""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # someone else's process reuses the pid: not our stack
            return False
        return True

    def save(self, data_dir: Path) -> Path:
        path = data_dir / STATE_FILE
        partial = path.with_name(f".{STATE_FILE}.partial")
        partial.write_text(json.dumps(asdict(self), indent=2) + "\n")
        partial.replace(path)
        return path

    @classmethod
    def load(cls, data_dir: Path) -> StackInfo:
        """The live stack using `data_dir`, or StackNotRunning with what to do."""
        path = data_dir / STATE_FILE
        try:
            raw = json.loads(path.read_text())
            info = cls(**{field.name: raw[field.name] for field in fields(cls)})
        except FileNotFoundError:
            raise StackNotRunning(
                f"no dev stack is running with data in {data_dir}/ (no {path}): start one with "
                "`worker-comfyui dev` in another terminal, or send to a real bucket with --to gs://INBOX/prefix"
            ) from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StackNotRunning(f"{path} is unreadable ({exc}); restart `worker-comfyui dev`") from None
        if not info.alive():
            raise StackNotRunning(
                f"the dev stack that wrote {path} (pid {info.pid}) is gone; start it again with `worker-comfyui dev`"
            )
        return info

    @staticmethod
    def remove(data_dir: Path) -> None:
        (data_dir / STATE_FILE).unlink(missing_ok=True)

    def storage_client(self) -> storage.Client:
        """An anonymous google-cloud-storage client on the stack's emulator."""
        from job.storage.gcs import gcs_client

        return gcs_client(self.project, endpoint=self.gcs)
