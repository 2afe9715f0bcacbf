"""The trigger folder works both as the Cloud Function's source and as the package `trigger`."""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TRIGGER = REPO / "trigger"

LOAD_AS_CLOUD_FUNCTIONS_DOES = """
import sys
import functions_framework
app = functions_framework.create_app("on_inbox_object", "main.py", "cloudevent")
assert "trigger" not in sys.modules, "the function imported the repo's package, not its own folder"
claims = sys.modules["main.claims"]
print(claims.__file__)
"""


def test_function_source_loads_alone_as_cloud_functions_uploads_it(tmp_path):
    workspace = tmp_path / "workspace"  # what `gcloud functions deploy --source trigger` uploads
    shutil.copytree(TRIGGER, workspace, ignore=shutil.ignore_patterns("__pycache__"))

    result = subprocess.run(
        [sys.executable, "-c", LOAD_AS_CLOUD_FUNCTIONS_DOES],
        cwd=workspace,
        env={"PATH": "/usr/bin:/bin", "FUNCTION_TARGET": "on_inbox_object"},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).parent == workspace


def test_trigger_modules_import_as_a_package_for_the_job():
    from trigger.claims import ClaimStore
    from trigger.main import on_inbox_object

    assert ClaimStore.__module__ == "trigger.claims"
    assert callable(on_inbox_object)


def test_trigger_never_imports_the_job_package():
    """The function's upload holds this folder only; an import of `job` would fail there."""
    offenders = [
        f"{path.name}:{n}"
        for path in TRIGGER.glob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.match(r"\s*(from|import)\s+job\b", line)
    ]
    assert offenders == []


def test_requirements_pin_the_versions_the_tests_ran_with():
    pins = dict(
        line.split("==")
        for line in (TRIGGER / "requirements.txt").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert pins["functions-framework"] == "3.10.2"
    assert {name: importlib.metadata.version(name) for name in pins} == pins
