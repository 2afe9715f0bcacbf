"""Fixtures for the deployment artefacts: the Terraform parsed once, and the static checkers.

Nothing here can reach Google Cloud, so each artefact gets the strongest check that runs offline:
python-hcl2 and checkov for the Terraform, hadolint for the Dockerfile, ShellCheck for the shell.
A checker that is missing skips its test with the command that installs it, except in CI
(CI=true), where a missing checker fails the run instead of passing it silently.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import hcl2
import pytest
from hcl2.utils import SerializationOptions

REPO = Path(__file__).resolve().parents[2]
TF_FILES = sorted(REPO.glob("*.tf"))
MODEL_TYPES = ("base", "flux1-schnell", "flux1-dev", "flux1-dev-fp8", "sdxl", "sd3")

_HCL = SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True)


MAKE_TOOLS = "run `make tools` (scripts/install_tools.sh) to install it"
PROVIDER_GOOGLE = REPO / ".tools" / "provider-google"  # @cdktf/provider-google's .d.ts (install_tools.sh)


def missing_tool(name: str, how: str = MAKE_TOOLS) -> NoReturn:
    """Skip the test that needs `name`, or fail it in CI (CI=true), where every static check must run."""
    message = f"{name} is not installed: {how}"
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"{message}; CI must run every static check")
    pytest.skip(message)


def find_tool(name: str, *candidates: Path, how: str = MAKE_TOOLS) -> str:
    """The path of a checker: one of `candidates`, else on PATH; skipped locally, failed in CI."""
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    missing_tool(name, how)


def find_package(name: str, root: Path, version: str) -> Path:
    """An npm package install_tools.sh unpacked at `root`, at `version`; missing or stale as find_tool."""
    manifest = root / "package.json"
    if not manifest.is_file():
        missing_tool(name)
    installed = json.loads(manifest.read_text()).get("version")
    if installed != version:
        missing_tool(f"{name} {version}", f"{root} holds {installed}; {MAKE_TOOLS}")
    return root


def venv_tool(name: str) -> Path:
    """A console script installed next to the running interpreter (the project's venv)."""
    return Path(sys.executable).parent / name


@dataclass
class Terraform:
    """The root module's blocks, by kind: resources and data by (type, name), variables, locals."""

    resources: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    data: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    terraform: list[dict[str, Any]] = field(default_factory=list)
    text: dict[str, str] = field(default_factory=dict)

    def resource(self, kind: str, name: str) -> dict[str, Any]:
        assert (kind, name) in self.resources, f"eventarc.tf declares no {kind}.{name}"
        return self.resources[(kind, name)]

    def of_kind(self, kind: str) -> dict[str, dict[str, Any]]:
        return {name: body for (k, name), body in self.resources.items() if k == kind}

    def default(self, variable: str) -> Any:
        return self.variables[variable].get("default")


def parse_terraform(files: list[Path]) -> Terraform:
    module = Terraform()
    for path in files:
        text = path.read_text()
        module.text[path.name] = text
        parsed = hcl2.loads(text, serialization_options=_HCL)
        for block in parsed.get("resource", []):
            for kind, named in block.items():
                for name, body in named.items():
                    module.resources[(kind, name)] = body
        for block in parsed.get("data", []):
            for kind, named in block.items():
                for name, body in named.items():
                    module.data[(kind, name)] = body
        for block in parsed.get("variable", []):
            module.variables.update(block)
        for block in parsed.get("locals", []):
            module.locals.update(block)
        for block in parsed.get("output", []):
            module.outputs.update(block)
        module.terraform.extend(parsed.get("terraform", []))
    return module


@pytest.fixture(scope="session")
def tf() -> Terraform:
    assert TF_FILES, f"no .tf files in {REPO}"
    return parse_terraform(TF_FILES)
