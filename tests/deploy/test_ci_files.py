"""The GitHub Actions workflow and the Cloud Build config: valid YAML that builds every image."""

from __future__ import annotations

import yaml

from tests.deploy.conftest import MODEL_TYPES, REPO

WORKFLOW = REPO / ".github" / "workflows" / "build.yml"
CLOUDBUILD = REPO / "docker" / "cloudbuild.yaml"


def test_github_workflow_builds_and_pushes_one_image_per_model_type():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    assert workflow["name"] == "build"
    triggers = workflow[True] if True in workflow else workflow["on"]  # YAML 1.1 reads `on:` as True
    assert "push" in triggers and "workflow_dispatch" in triggers
    (job,) = workflow["jobs"].values()
    assert sorted(job["strategy"]["matrix"]["model_type"]) == sorted(MODEL_TYPES)
    assert job["strategy"]["fail-fast"] is False, "one gated model failing should not cancel the others"
    (build,) = [step for step in job["steps"] if str(step.get("uses", "")).startswith("docker/build-push-action@")]
    inputs = build["with"]
    assert inputs["push"] is True
    assert "MODEL_TYPE=${{ matrix.model_type }}" in inputs["build-args"]
    assert "hf_token=${{ secrets.HUGGINGFACE_ACCESS_TOKEN }}" in inputs["secrets"], "the token must be a secret"
    assert "${{ matrix.model_type }}" in inputs["tags"]


def test_github_workflow_authenticates_without_a_stored_key():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    assert workflow["permissions"]["id-token"] == "write"
    (job,) = workflow["jobs"].values()
    (auth,) = [step for step in job["steps"] if str(step.get("uses", "")).startswith("google-github-actions/auth@")]
    assert "workload_identity_provider" in auth["with"] and "credentials_json" not in auth["with"]
    for step in job["steps"]:
        if "uses" in step:
            assert "@" in step["uses"] and not step["uses"].endswith(("@main", "@master")), step["uses"]


def test_cloud_build_builds_with_buildkit_and_the_token_as_a_secret():
    config = yaml.safe_load(CLOUDBUILD.read_text())
    build = next(step for step in config["steps"] if step["id"] == "build")
    assert "DOCKER_BUILDKIT=1" in build["env"]
    args = build["args"]
    assert args[0] == "build" and args[-1] == "."
    assert args[args.index("--secret") + 1] == "id=hf_token,src=/workspace/.hf_token"
    assert args[args.index("--build-arg") + 1] == "MODEL_TYPE=${_MODEL_TYPE}"
    assert not any("HUGGINGFACE" in arg for arg in args), "no token in build arguments"
    assert config["images"] == ["${_IMAGE}"]
    assert config["substitutions"]["_MODEL_TYPE"] == "flux1-dev-fp8"
    # The token file lives in the build context; the allowlist .dockerignore keeps it out.
    assert (REPO / ".dockerignore").read_text().splitlines().count("*") == 1
