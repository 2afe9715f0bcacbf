"""The Dockerfile, checked without a Docker engine: hadolint, plus what the image promises.

Each promise is read off the Dockerfile's stages: the models per MODEL_TYPE, versions from
pins.toml, Python packages from the hashed lock, the token confined to the downloader stage, a
non-root user behind tini, and a CUDA 12 build that Cloud Run's L4 driver (535, CUDA 12.2) can run.
The lock's own contents are checked in test_lock.py, the torch set in test_torch_matrix.py.
"""

from __future__ import annotations

import re
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.deploy.conftest import MODEL_TYPES, REPO, find_tool, venv_tool

DOCKERFILE = REPO / "Dockerfile"

# The models each image bakes in, as issue 6 and the README list them.
EXPECTED_MODELS = {
    "base": set(),
    "flux1-schnell": {
        "unet/flux1-schnell.safetensors",
        "clip/clip_l.safetensors",
        "clip/t5xxl_fp8_e4m3fn.safetensors",
        "vae/ae.safetensors",
    },
    "flux1-dev": {
        "unet/flux1-dev.safetensors",
        "clip/clip_l.safetensors",
        "clip/t5xxl_fp8_e4m3fn.safetensors",
        "vae/ae.safetensors",
    },
    "flux1-dev-fp8": {"checkpoints/flux1-dev-fp8.safetensors"},
    "sdxl": {
        "checkpoints/sd_xl_base_1.0.safetensors",
        "vae/sdxl_vae.safetensors",
        "vae/sdxl-vae-fp16-fix.safetensors",
    },
    "sd3": {"checkpoints/sd3_medium_incl_clips_t5xxlfp8.safetensors"},
}


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)  # (keyword, rest of line)

    def text(self) -> str:
        return "\n".join(f"{keyword} {rest}" for keyword, rest in self.instructions)

    def last(self, keyword: str) -> str:
        values = [rest for kw, rest in self.instructions if kw == keyword]
        assert values, f"stage {self.name} has no {keyword}"
        return values[-1]


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction, continuation lines joined and comments dropped."""
    logical: list[str] = []
    current = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        current += " " + stripped.removesuffix("\\").strip()
        if not stripped.endswith("\\"):
            logical.append(current.strip())
            current = ""
    return [(item.split(None, 1)[0].upper(), item.split(None, 1)[1] if " " in item else "") for item in logical]


@pytest.fixture(scope="module")
def stages() -> dict[str, Stage]:
    parsed: dict[str, Stage] = {}
    current: Stage | None = None
    for keyword, rest in instructions(DOCKERFILE.read_text()):
        if keyword == "FROM":
            match = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", rest, re.I)
            assert match, rest
            current = Stage(base=match[1], name=match[2] or f"stage{len(parsed)}")
            parsed[current.name] = current
        elif current is not None:
            current.instructions.append((keyword, rest))
    return parsed


def models_list() -> dict[str, set[str]]:
    listed: dict[str, set[str]] = {"base": set()}
    for line in (REPO / "docker" / "models.txt").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            model_type, path, url = line.split()
            assert url.startswith("https://huggingface.co/"), url
            listed.setdefault(model_type, set()).add(path)
    return listed


def test_hadolint_passes():
    hadolint = find_tool("hadolint", venv_tool("hadolint"))
    result = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_hadolint_ignore_is_justified_just_above_it():
    lines = DOCKERFILE.read_text().splitlines()
    ignores = [(n, line) for n, line in enumerate(lines) if re.match(r"#\s*hadolint\s+ignore=", line.strip())]
    assert ignores, "no ignores: drop this test's expectation if that is on purpose"
    for number, line in ignores:
        comment_above = []
        for previous in reversed(lines[:number]):
            if not previous.strip().startswith("#"):
                break
            comment_above.append(previous)
        for code in re.findall(r"DL\d{4}|SC\d{4}", line):
            assert any(f"Why {code}:" in c for c in comment_above), (
                f"line {number + 1}: {code} ignored without 'Why {code}:'"
            )


def test_models_per_model_type_are_exactly_the_documented_ones():
    assert models_list() == EXPECTED_MODELS
    assert set(EXPECTED_MODELS) == set(MODEL_TYPES)


def test_default_model_type_is_flux1_dev_fp8(stages: dict[str, Stage]):
    global_args = re.findall(r"^ARG\s+MODEL_TYPE=(\S+)", DOCKERFILE.read_text(), re.M)
    assert global_args == ["flux1-dev-fp8"]
    assert stages["runtime"].last("ENV").startswith("MODEL_TYPE=${MODEL_TYPE}")


def test_model_change_rebuilds_nothing_beneath_the_models(stages: dict[str, Stage]):
    # The downloader starts from its own base, so nothing in it depends on the ComfyUI layers ...
    assert stages["downloader"].base not in stages
    # ... and the torch/ComfyUI and custom-node layers are built before MODEL_TYPE is even read.
    for name in ("base", "comfyui"):
        assert "MODEL_TYPE" not in stages[name].text(), f"stage {name} depends on MODEL_TYPE"
    runtime = stages["runtime"]
    assert runtime.base == "comfyui"
    copies = [rest for kw, rest in runtime.instructions if kw == "COPY"]
    assert re.search(r"--from=downloader .*/models/ \$\{COMFYUI_DIR\}/models/", copies[0]), copies


def test_comfyui_comfy_cli_and_torch_versions_come_from_pins_toml(stages: dict[str, Stage]):
    pins = tomllib.loads((REPO / "job" / "comfyui" / "pins.toml").read_text())
    comfyui = stages["comfyui"].text()
    assert "COPY job/comfyui/pins.toml /opt/worker/pins.toml" in comfyui
    for key in ("comfyui", "comfy-cli", "torch", "torchvision", "torchaudio"):
        assert f"$(pin {key})" in comfyui or f'comfyui_version="$(pin {key})"' in comfyui, key
    text = DOCKERFILE.read_text()
    for key in ("comfyui", "comfy-cli", "torch", "torchvision", "torchaudio"):
        assert pins[key] not in text, f"{key} {pins[key]} is written into the Dockerfile; read it from pins.toml"
    flags = comfy_install_flags(comfyui)
    assert {"--nvidia", "--skip-torch-or-directml", "--skip-manager"} <= set(flags)
    assert flags[flags.index("--version") + 1] == '"${comfyui_version}"'


def comfy_install_flags(stage_text: str) -> list[str]:
    """The options of the `comfy ... install` command that puts ComfyUI into the image."""
    install = re.search(r"comfy --skip-prompt --workspace \"\$\{COMFYUI_DIR\}\" install (.*?) &&", stage_text)
    assert install, "ComfyUI is not installed with comfy-cli"
    return install[1].split()


def run_commands(stage: Stage) -> list[str]:
    """The stage's shell commands in order: each RUN split at its `&&`s."""
    return [command.strip() for kw, rest in stage.instructions if kw == "RUN" for command in rest.split(" && ")]


def test_python_packages_come_from_the_hashed_lock_before_comfyui(stages: dict[str, Stage]):
    """Everything but torch is installed from docker/requirements.lock, hash-checked and --no-deps, so
    the image ships exactly the locked versions; comfy-cli must then install none of its own."""
    comfyui = stages["comfyui"]
    assert "COPY docker/requirements.lock docker/comfyui-requirements.txt /opt/worker/" in comfyui.text()
    commands = run_commands(comfyui)
    lock_install = [n for n, c in enumerate(commands) if "-r /opt/worker/requirements.lock" in c]
    assert len(lock_install) == 1, "the lock is not installed exactly once"
    flags = commands[lock_install[0]].split()
    assert flags[:2] == ["pip", "install"] and {"--require-hashes", "--no-deps"} <= set(flags), flags
    comfy = [n for n, c in enumerate(commands) if c.startswith("comfy --skip-prompt")]
    assert comfy and lock_install[0] < comfy[0], "the lock must be installed before ComfyUI"
    assert "--skip-requirement" in comfy_install_flags(comfyui.text()), "comfy-cli would pip-install unlocked packages"
    # The lock was made from docker/comfyui-requirements.txt: the build proves the cloned ComfyUI's file is that one.
    text = comfyui.text()
    locked = re.search(r"grep -Ev '\S+' /opt/worker/comfyui-requirements\.txt > (\S+)", text)
    cloned = re.search(r"grep -Ev '\S+' \"\$\{COMFYUI_DIR\}/requirements\.txt\" > (\S+)", text)
    assert locked and cloned, "the requirements files are not read for the comparison"
    assert f"if ! diff -u {locked[1]} {cloned[1]}; then" in text, "the cloned requirements.txt is not compared"
    assert "pip check" in commands, "the build does not check that every installed requirement is met"


def test_torch_is_a_cuda_12_build_that_the_l4_driver_runs(stages: dict[str, Stage]):
    comfyui = stages["comfyui"].text()
    index = re.search(r"ARG TORCH_INDEX_URL=(\S+)", comfyui)
    assert index and re.fullmatch(r"https://download\.pytorch\.org/whl/cu12\d", index[1]), "not a CUDA 12 index"
    commands = run_commands(stages["comfyui"])
    installed_at = {}
    for key in ("torch", "torchvision", "torchaudio"):
        install = [n for n, c in enumerate(commands) if c.startswith("pip install") and f'"{key}==$(pin {key})"' in c]
        assert len(install) == 1, f"{key} is not installed exactly once"
        installed_at[key] = install[0]
        command = commands[install[0]]
        assert '--index-url "${TORCH_INDEX_URL}"' in command, f"{key} does not come from the CUDA index"
        if key != "torch":
            # A dependency resolution could replace torch with PyPI's CUDA 13 build.
            assert "--no-deps" in command.split(), f"{key} is installed with its dependencies"
    checks = [n for n, c in enumerate(commands) if 'cuda.startswith("12.")' in c]
    assert checks, "the build must refuse a non-CUDA-12 torch"
    assert checks[0] > installed_at["torch"], "the CUDA check runs before torch is installed"
    # torchvision and torchaudio refuse, on import, a CUDA major other than torch's: import them.
    imports = [n for n, c in enumerate(commands) if c == "python -c 'import torch, torchvision, torchaudio'"]
    assert imports and imports[0] > max(installed_at.values()), "torch, torchvision and torchaudio are not imported"


def test_base_image_lets_the_nvidia_runtime_inject_the_l4_driver(stages: dict[str, Stage]):
    """No CUDA base image: the NVIDIA container runtime injects the driver only when asked to."""
    base = stages["base"]
    if base.base.startswith("nvidia/cuda:"):
        assert re.match(r"nvidia/cuda:12\.", base.base), f"{base.base} is not a CUDA 12 image"
    env = " ".join(rest for kw, rest in base.instructions if kw == "ENV").split()
    assert "NVIDIA_VISIBLE_DEVICES=all" in env
    capabilities = next((e.split("=", 1)[1] for e in env if e.startswith("NVIDIA_DRIVER_CAPABILITIES=")), "")
    assert {"compute", "utility"} <= set(capabilities.split(",")), capabilities
    assert not any(e.startswith("NVIDIA_REQUIRE_CUDA=") for e in env), "a CUDA requirement the L4 driver may refuse"


def test_every_base_image_has_a_pinned_tag(stages: dict[str, Stage]):
    for stage in stages.values():
        if stage.base in stages:
            continue
        name, _, tag = stage.base.rpartition(":")
        assert name and tag and tag != "latest", f"{stage.base} is not pinned to a tag"


def test_hugging_face_token_never_reaches_the_runtime_image(stages: dict[str, Stage]):
    for name, stage in stages.items():
        if name != "downloader":
            assert "HUGGINGFACE_ACCESS_TOKEN" not in stage.text(), f"the token appears in stage {name}"
            assert "hf_token" not in stage.text(), f"the secret is mounted in stage {name}"
    downloader = stages["downloader"].text()
    assert "--mount=type=secret,id=hf_token" in downloader
    runtime_sources = {stage.base for stage in stages.values()}
    assert "downloader" not in runtime_sources, "no stage may start FROM the downloader"


def test_runtime_runs_serve_as_a_non_root_user_behind_tini(stages: dict[str, Stage]):
    runtime = list(stages.values())[-1]
    assert runtime.name == "runtime", "the runtime stage must be the last, the default build target"
    user = runtime.last("USER")
    assert user.split(":")[0] not in {"root", "0"}
    assert runtime.last("ENTRYPOINT") == '["/usr/bin/tini", "--"]'
    assert runtime.last("CMD") == '["worker-comfyui", "serve"]'
    assert "tini" in stages["base"].text(), "tini is not installed"
    # The project's dependencies are in the lock: --no-deps, and pip check proves them met.
    assert "pip install --no-deps ." in run_commands(runtime), "the project is not installed from the repository"
    assert "pip check" in run_commands(runtime), "the runtime stage does not check the requirements"


def test_runtime_sets_where_comfyui_lives(stages: dict[str, Stage]):
    env = " ".join(rest for kw, rest in stages["base"].instructions if kw == "ENV")
    assert "COMFYUI_DIR=/opt/comfyui/ComfyUI" in env


def test_custom_nodes_come_from_the_pinned_list(stages: dict[str, Stage]):
    comfyui = stages["comfyui"].text()
    assert "COPY custom_nodes.txt docker/install_custom_nodes.sh /opt/worker/" in comfyui
    assert '/opt/worker/install_custom_nodes.sh /opt/worker/custom_nodes.txt "${COMFYUI_DIR}"' in comfyui


def test_build_context_holds_only_what_the_image_needs():
    lines = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()]
    rules = [line for line in lines if line and not line.startswith("#")]
    assert rules[0] == "*", ".dockerignore must be an allowlist"
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    assert allowed == {"Dockerfile", "pyproject.toml", "README.md", "custom_nodes.txt", "docker", "job", "trigger"}
    copied = set(re.findall(r"^COPY (?!--from)(.+) \S+$", DOCKERFILE.read_text(), re.M))
    for sources in copied:
        for source in sources.split():
            if not source.startswith("--"):
                top = Path(source).parts[0]
                assert top in allowed, f"COPY {source} is excluded by .dockerignore"
