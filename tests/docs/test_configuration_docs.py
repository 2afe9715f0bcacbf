"""docs/configuration.md lists every environment variable the code reads, and nothing it doesn't."""

from __future__ import annotations

import re
from pathlib import Path

from job.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "configuration.md"
_DOC_ROW = re.compile(r"^\|\s*`([A-Z][A-Z0-9_]+)`", re.MULTILINE)
# Reads outside job/settings.py: the trigger's typed reader and any direct environ access.
_LITERAL_READ = re.compile(r"""(?:environ(?:\.get)?\s*[\[(]\s*|getenv\(\s*|env\.\w+\(\s*)["']([A-Z][A-Z0-9_]+)["']""")


def documented() -> set[str]:
    return set(_DOC_ROW.findall(DOC.read_text()))


def read_by_code() -> dict[str, str]:
    names = {name.upper(): "job/settings.py" for name in Settings.model_fields}
    for folder in ("job", "trigger"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "/devstack/" in path.as_posix():  # local stand-ins set variables for children; they read none
                continue
            for name in _LITERAL_READ.findall(path.read_text()):
                names.setdefault(name, str(path.relative_to(ROOT)))
    return names


def test_every_variable_the_code_reads_is_documented() -> None:
    missing = {name: where for name, where in read_by_code().items() if name not in documented()}
    assert not missing, f"add these to docs/configuration.md (read in): {missing}"


def test_the_page_lists_no_variable_the_code_does_not_read() -> None:
    stale = documented() - set(read_by_code()) - {"STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS"}
    assert not stale, f"docs/configuration.md lists variables nothing reads: {sorted(stale)}"


def test_the_seed_variables_keep_their_names_and_defaults() -> None:
    defaults = Settings.model_fields
    assert defaults["comfy_log_level"].default == "DEBUG"
    assert defaults["websocket_reconnect_attempts"].default == 5
    assert defaults["websocket_reconnect_delay_s"].default == 3
    assert defaults["websocket_trace"].default is False
    text = DOC.read_text()
    for row in ("| `COMFY_LOG_LEVEL` |", "| `WEBSOCKET_RECONNECT_ATTEMPTS` |", "| `WEBSOCKET_RECONNECT_DELAY_S` |"):
        assert row in text
