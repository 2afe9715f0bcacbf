"""The build and deploy scripts: ShellCheck-clean, and doing what they say when run for real.

The Dockerfile's helpers run here as they run in the build: `download_models.sh` with the real
curl against a local HTTP server, `install_custom_nodes.sh` with the real git against a local
repository. Only comfy-cli's registry download, gcloud, terraform and docker cannot run here;
they are replaced by recording stand-ins (`*_standin` fixtures) that say so in their name.
"""

from __future__ import annotations

import http.server
import os
import shutil
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.conftest import REPO, find_tool

SCRIPTS = [REPO / "deploy.sh", *sorted((REPO / "docker").glob("*.sh")), *sorted((REPO / "scripts").glob("*.sh"))]
DOWNLOAD = REPO / "docker" / "download_models.sh"
INSTALL_NODES = REPO / "docker" / "install_custom_nodes.sh"


def run(argv: list[str | Path], env: dict[str, str] | None = None, **kwargs) -> subprocess.CompletedProcess[str]:
    merged = {**os.environ, **(env or {})}
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=120, env=merged, **kwargs)


def write_executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(REPO)))
def test_shell_script_is_shellcheck_clean(script: Path):
    shellcheck = find_tool("shellcheck")
    result = run([shellcheck, "--external-sources", script])
    assert result.returncode == 0, result.stdout + result.stderr
    assert os.access(script, os.X_OK), f"{script.name} is not executable"
    assert "set -euo pipefail" in script.read_text()


# ----------------------------------------------------------------------- download_models.sh --


class _Recorder(http.server.SimpleHTTPRequestHandler):
    authorizations: list[str | None]

    def do_GET(self) -> None:
        type(self).authorizations.append(self.headers.get("Authorization"))
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def model_server(tmp_path: Path) -> Iterator[tuple[str, list[str | None]]]:
    """A loopback HTTP server over a folder of fake model files; records Authorization headers."""
    root = tmp_path / "hub"
    (root / "repo").mkdir(parents=True)
    (root / "repo" / "a.safetensors").write_bytes(b"A" * 1000)
    (root / "repo" / "b.safetensors").write_bytes(b"B" * 2000)
    authorizations: list[str | None] = []
    handler = type("Handler", (_Recorder,), {"authorizations": authorizations})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: handler(*a, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", authorizations
    finally:
        server.shutdown()
        server.server_close()


def models_file(tmp_path: Path, base_url: str) -> Path:
    path = tmp_path / "models.txt"
    path.write_text(
        "# comment\n\n"
        f"tiny  checkpoints/a.safetensors  {base_url}/repo/a.safetensors\n"
        f"tiny  vae/b.safetensors          {base_url}/repo/b.safetensors\n"
        f"other checkpoints/x.safetensors  {base_url}/repo/missing.safetensors\n"
    )
    return path


def test_download_models_fetches_the_files_of_one_model_type(tmp_path: Path, model_server):
    url, authorizations = model_server
    dest = tmp_path / "models"
    result = run([DOWNLOAD, "tiny", dest, models_file(tmp_path, url)], env={"HUGGINGFACE_ACCESS_TOKEN": ""})
    assert result.returncode == 0, result.stderr
    assert (dest / "checkpoints" / "a.safetensors").read_bytes() == b"A" * 1000
    assert (dest / "vae" / "b.safetensors").read_bytes() == b"B" * 2000
    assert sorted(p.name for p in dest.rglob("*") if p.is_file()) == ["a.safetensors", "b.safetensors"]
    assert authorizations == [None, None], "no token given, none sent"


def test_download_models_sends_the_secret_token_as_a_bearer_header(tmp_path: Path, model_server):
    url, authorizations = model_server
    secret = tmp_path / "hf_token"
    secret.write_text("hf_secret_value\n")
    result = run(
        [DOWNLOAD, "tiny", tmp_path / "models", models_file(tmp_path, url)],
        env={"HF_TOKEN_FILE": str(secret), "HUGGINGFACE_ACCESS_TOKEN": "ignored-when-the-secret-is-set"},
    )
    assert result.returncode == 0, result.stderr
    assert authorizations == ["Bearer hf_secret_value"] * 2
    assert "hf_secret_value" not in result.stderr + result.stdout


def test_download_models_skips_files_already_present(tmp_path: Path, model_server):
    url, authorizations = model_server
    listing = models_file(tmp_path, url)
    assert run([DOWNLOAD, "tiny", tmp_path / "m", listing]).returncode == 0
    again = run([DOWNLOAD, "tiny", tmp_path / "m", listing])
    assert again.returncode == 0 and len(authorizations) == 2, "the second run downloaded again"


def test_download_models_for_base_creates_an_empty_folder(tmp_path: Path, model_server):
    url, _ = model_server
    result = run([DOWNLOAD, "base", tmp_path / "models", models_file(tmp_path, url)])
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "models").is_dir() and not any((tmp_path / "models").iterdir())


def test_download_models_refuses_an_unknown_model_type_naming_the_choices(tmp_path: Path, model_server):
    url, _ = model_server
    result = run([DOWNLOAD, "sdxxl", tmp_path / "models", models_file(tmp_path, url)])
    assert result.returncode == 65
    assert "unknown MODEL_TYPE 'sdxxl'" in result.stderr and "base other tiny" in result.stderr


def test_failed_download_fails_the_build_and_leaves_no_partial_file(tmp_path: Path, model_server):
    url, _ = model_server
    result = run([DOWNLOAD, "other", tmp_path / "models", models_file(tmp_path, url)])
    assert result.returncode != 0
    assert "HUGGINGFACE_ACCESS_TOKEN" in result.stderr, "the message should hint at gated models"
    assert [p for p in (tmp_path / "models").rglob("*") if p.is_file()] == []


def test_shipped_models_list_names_every_model_type():
    result = run([DOWNLOAD, "no-such-type", "/nonexistent"])
    assert "base flux1-dev flux1-dev-fp8 flux1-schnell sd3 sdxl" in result.stderr


# ------------------------------------------------------------------ install_custom_nodes.sh --


@pytest.fixture
def comfyui_tree(tmp_path: Path) -> Path:
    tree = tmp_path / "ComfyUI"
    (tree / "custom_nodes").mkdir(parents=True)
    return tree


def git(*args: str | Path, cwd: Path) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    result = run(["git", *args], env=env, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture
def node_repo(tmp_path: Path) -> tuple[Path, str, str]:
    """A git repository of a custom node with two commits; returns (path, first, second)."""
    repo = tmp_path / "src" / "ComfyUI-Tiny.git"
    repo.mkdir(parents=True)
    git("init", "--quiet", "--initial-branch", "main", cwd=repo)
    (repo / "__init__.py").write_text("VERSION = 1\n")
    (repo / "install.py").write_text("from pathlib import Path\nPath('installed.marker').write_text('yes')\n")
    git("add", ".", cwd=repo)
    git("commit", "--quiet", "-m", "one", cwd=repo)
    first = git("rev-parse", "HEAD", cwd=repo)
    (repo / "__init__.py").write_text("VERSION = 2\n")
    git("commit", "--quiet", "-am", "two", cwd=repo)
    return repo, first, git("rev-parse", "HEAD", cwd=repo)


@pytest.fixture
def comfy_standin(tmp_path: Path) -> tuple[Path, Path]:
    """Stands in for comfy-cli (its registry download needs the internet): records its argv and
    creates the node's folder as `comfy node registry-install` does."""
    calls = tmp_path / "comfy-calls.txt"
    script = write_executable(
        tmp_path / "comfy_standin",
        f"""#!/usr/bin/env bash
echo "$*" >> {calls}
workspace=$3 name=$6
mkdir -p "$workspace/custom_nodes/$name"
""",
    )
    return script, calls


def install_nodes(listing: str, tree: Path, tmp_path: Path, comfy: Path | None = None):
    list_file = tmp_path / "custom_nodes.txt"
    list_file.write_text(listing)
    env = {"PYTHON": sys.executable}
    if comfy is not None:
        env["COMFY"] = str(comfy)
    return run([INSTALL_NODES, list_file, tree], env=env)


def test_git_custom_node_is_installed_at_its_pinned_commit(tmp_path, comfyui_tree, node_repo):
    repo, first, _second = node_repo
    result = install_nodes(f"# pinned\nfile://{repo}@{first}  # the first release\n", comfyui_tree, tmp_path)
    assert result.returncode == 0, result.stderr
    node = comfyui_tree / "custom_nodes" / "ComfyUI-Tiny"
    assert (node / "__init__.py").read_text() == "VERSION = 1\n"
    assert (node / "installed.marker").read_text() == "yes", "install.py did not run"
    assert not (node / ".git").exists(), "the clone's history should not ship in the image"


def test_registry_custom_node_is_installed_by_comfy_cli_at_its_version(tmp_path, comfyui_tree, comfy_standin):
    comfy, calls = comfy_standin
    result = install_nodes("comfyui-kjnodes@1.1.9\n", comfyui_tree, tmp_path, comfy)
    assert result.returncode == 0, result.stderr
    assert calls.read_text().split() == [
        "--skip-prompt", "--workspace", str(comfyui_tree), "node", "registry-install", "comfyui-kjnodes",
        "--version", "1.1.9",
    ]  # fmt: skip


def test_unpinned_custom_node_fails_before_anything_is_installed(tmp_path, comfyui_tree, node_repo, comfy_standin):
    repo, first, _ = node_repo
    comfy, calls = comfy_standin
    listing = f"file://{repo}@{first}\ncomfyui-kjnodes\n"
    result = install_nodes(listing, comfyui_tree, tmp_path, comfy)
    assert result.returncode == 65
    assert ":2: 'comfyui-kjnodes' is not 'name@version'" in result.stderr
    assert list((comfyui_tree / "custom_nodes").iterdir()) == [] and not calls.exists()


def test_custom_node_that_cannot_be_fetched_fails_the_build(tmp_path, comfyui_tree):
    missing = tmp_path / "nowhere.git"
    result = install_nodes(f"file://{missing}@0123456789abcdef0123456789abcdef01234567\n", comfyui_tree, tmp_path)
    assert result.returncode != 0


def test_registry_install_that_installs_nothing_fails_the_build(tmp_path, comfyui_tree):
    silent = write_executable(tmp_path / "comfy_standin_silent", "#!/usr/bin/env bash\nexit 0\n")
    result = install_nodes("comfyui-kjnodes@1.1.9\n", comfyui_tree, tmp_path, silent)
    assert result.returncode != 0 and "did not install 'comfyui-kjnodes'" in result.stderr


def test_shipped_custom_node_list_is_valid(tmp_path, comfyui_tree):
    result = run([INSTALL_NODES, REPO / "custom_nodes.txt", comfyui_tree], env={"PYTHON": sys.executable})
    assert result.returncode == 0, result.stderr


# --------------------------------------------------------------------------------- deploy.sh --


@pytest.fixture
def cloud_cli_standins(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """gcloud, terraform and docker stand-ins (no cloud here) that log each call to one file.

    `gcloud artifacts repositories describe` fails, as it does before the repository exists.
    """
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    for tool in ("gcloud", "terraform"):
        write_executable(
            bin_dir / tool,
            f"""#!/usr/bin/env bash
echo "{tool} $*" >> {log}
case "$*" in
  "auth list"*) echo someone@example.com ;;
  "artifacts repositories describe"*) exit 1 ;;
  *"output -raw inbox_bucket") echo proj-comfy-inbox ;;
  *"output -raw outbox_bucket") echo proj-comfy-outbox ;;
  *"output -raw service_url") echo https://comfy-predict.example.run.app ;;
esac
""",
        )
    for tool in ("bash", "env", "dirname", "date", "cat", "git"):
        real = shutil.which(tool)
        assert real, tool
        (bin_dir / tool).symlink_to(real)
    return {"PATH": str(bin_dir), "HOME": str(tmp_path)}, log


def test_deploy_refuses_without_arguments():
    result = run([REPO / "deploy.sh"])
    assert result.returncode == 64 and "usage:" in result.stderr


def test_deploy_says_what_to_install_when_gcloud_is_missing(tmp_path: Path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "env", "dirname", "date", "git"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    result = run([REPO / "deploy.sh", "proj", "us-central1"], env={"PATH": str(bin_dir)})
    assert result.returncode == 1
    assert "gcloud not found" in result.stderr and "cloud.google.com/sdk" in result.stderr


def test_deploy_builds_with_cloud_build_then_applies_terraform_with_the_image(cloud_cli_standins):
    env, log = cloud_cli_standins
    result = run(
        [REPO / "deploy.sh", "proj", "europe-west4", "v1"],
        env={**env, "MODEL_TYPE": "sdxl", "AUTO_APPROVE": "1", "TF_VARS": "-var allow_unauthenticated=true"},
    )
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    image = "europe-west4-docker.pkg.dev/proj/comfyui/worker-comfyui:v1"

    def index(prefix: str) -> int:
        matches = [n for n, call in enumerate(calls) if call.startswith(prefix)]
        assert matches, f"no call starting with {prefix!r} in {calls}"
        return matches[0]

    create = index("gcloud artifacts repositories create comfyui --repository-format docker --location europe-west4")
    build = index("gcloud builds submit")
    assert f"_IMAGE={image},_MODEL_TYPE=sdxl" in calls[build]
    assert "docker/cloudbuild.yaml" in calls[build]
    init = index("terraform -chdir=")
    apply = index(f"terraform -chdir={REPO} apply")
    assert index("gcloud services enable") < create < build < init < apply
    expected = f"-var project_id=proj -var region=europe-west4 -var image={image} -auto-approve"
    assert f"{expected} -var allow_unauthenticated=true" in calls[apply]
    assert "gsutil cp workflows/empty_image_batch.json gs://proj-comfy-inbox/" in result.stderr
    assert "L4 GPU" in result.stderr, "the quota hint is missing"
