"""eventarc.tf wired as docs/deployment.md says, checked without a terraform binary or a project.

python-hcl2 parses the module; the tests read the wiring off the parsed blocks (which bucket fires
the trigger, where the scheduler points, what the job runs on), and references to variables,
locals and resources are resolved by hand, the part of `terraform validate` that runs offline.
checkov then looks for insecure settings, with every skip required to give its reason.
"""

from __future__ import annotations

import json
import re
import subprocess

import hcl2
import pytest

from tests.deploy.conftest import REPO, TF_FILES, Terraform, find_tool

INBOX = "${google_storage_bucket.inbox.name}"
OUTBOX = "${google_storage_bucket.outbox.name}"
JOB = "${google_cloud_run_v2_job.worker.name}"


def only(blocks: list[dict]) -> dict:
    assert len(blocks) == 1, blocks
    return blocks[0]


def test_every_tf_file_parses():
    for path in TF_FILES:
        with path.open() as handle:
            assert hcl2.load(handle), f"{path.name} parsed to nothing"
    assert {p.name for p in TF_FILES} >= {"eventarc.tf", "variables.tf", "outputs.tf", "versions.tf"}


def test_every_reference_names_something_declared(tf: Terraform):
    text = "\n".join(tf.text.values())
    used_vars = set(re.findall(r"\bvar\.([a-z_][a-z0-9_]*)", text))
    assert used_vars - tf.variables.keys() == set(), "variables used but not declared"
    assert tf.variables.keys() - used_vars == set(), "variables declared but never used"

    used_locals = set(re.findall(r"\blocal\.([a-z_][a-z0-9_]*)", text))
    assert used_locals - tf.locals.keys() == set(), "locals used but not declared"

    declared = {f"{kind}.{name}" for kind, name in tf.resources} | {f"data.{k}.{n}" for k, n in tf.data}
    refs = set(re.findall(r"(?<![\w.])((?:data\.)?google[a-z0-9_]*\.[a-z_][a-z0-9_]*)", text))
    refs = {ref for ref in refs if not ref.startswith(("google.", "google-beta."))}
    assert refs - declared == set(), "references to resources that do not exist"


def test_providers_are_pinned_with_an_upper_bound(tf: Terraform):
    required = only(only(tf.terraform)["required_providers"])
    for name in ("google", "google-beta", "archive"):
        assert name in required, f"required_providers lacks {name}"
        version = required[name]["version"]
        assert "<" in version or "~>" in version, f"{name} = {version!r} has no upper bound"


def test_trigger_fires_on_finalized_objects_of_the_inbox_with_retries(tf: Terraform):
    function = tf.resource("google_cloudfunctions2_function", "trigger")
    trigger = only(function["event_trigger"])
    assert trigger["event_type"] == "google.cloud.storage.object.v1.finalized"
    assert trigger["retry_policy"] == "RETRY_POLICY_RETRY"
    assert only(trigger["event_filters"]) == {"attribute": "bucket", "value": INBOX}
    assert trigger["trigger_region"] == "${var.region}", "a GCS trigger must sit in the bucket's region"


def test_outputs_go_to_a_bucket_the_trigger_does_not_watch(tf: Terraform):
    inbox = tf.resource("google_storage_bucket", "inbox")["name"]
    outbox = tf.resource("google_storage_bucket", "outbox")["name"]
    assert inbox != outbox
    env = tf.locals["worker_base_env"]
    assert (env["OUTBOX_BUCKET"], env["INBOX_BUCKET"]) == (OUTBOX, INBOX)
    assert tf.locals["worker_env"].startswith("${merge(local.worker_base_env,")


def test_function_is_built_from_trigger_folder(tf: Terraform):
    archive = tf.data[("archive_file", "trigger_source")]
    assert archive["source_dir"] == "${path.module}/trigger"
    function = tf.resource("google_cloudfunctions2_function", "trigger")
    source = only(only(only(function["build_config"])["source"])["storage_source"])
    assert source["object"] == "${google_storage_bucket_object.trigger_source.name}"
    assert (REPO / "trigger" / "main.py").is_file() and (REPO / "trigger" / "requirements.txt").is_file()
    entry = tf.default("trigger_entry_point")
    assert re.search(rf"^def {entry}\(", (REPO / "trigger" / "main.py").read_text(), re.M), (
        f"trigger/main.py defines no {entry}(), the function's entry point"
    )


def test_function_env_names_the_job_and_where_results_go(tf: Terraform):
    function = tf.resource("google_cloudfunctions2_function", "trigger")
    env = only(function["service_config"])["environment_variables"]
    assert env["JOB_NAME"] == JOB
    assert env["GOOGLE_CLOUD_PROJECT"] == "${var.project_id}"
    assert env["REGION"] == "${var.region}"
    assert env["OUTBOX_BUCKET"] == OUTBOX
    assert env["CLAIMS_PREFIX"] == "${var.claims_prefix}"
    assert "OUTBOX_PREFIX" in env and "MAX_EXECUTIONS" in env


def test_job_runs_the_job_command_on_an_l4(tf: Terraform):
    job = tf.resource("google_cloud_run_v2_job", "worker")
    task = only(only(job["template"])["template"])
    assert only(task["node_selector"]) == {"accelerator": "nvidia-l4"}
    assert task["gpu_zonal_redundancy_disabled"] is True
    assert task["timeout"] == "${var.job_task_timeout}" and task["max_retries"] == "${var.job_max_retries}"
    container = only(task["containers"])
    assert container["args"] == ["worker-comfyui", "job"]
    assert "command" not in container, "overriding the command would drop tini, the image's init"
    limits = only(container["resources"])["limits"]
    assert limits["nvidia.com/gpu"] == "1"
    assert tf.default("job_cpu") >= 4
    assert int(tf.default("job_memory").removesuffix("Gi")) >= 16
    env = [d["env"] for d in container["dynamic"] if "env" in d]
    assert env and env[0]["for_each"] == "${local.job_env}"
    assert tf.locals["job_env"] == (
        "${merge(local.worker_env, {JOB_MAX_RETRIES = tostring(var.job_max_retries), "
        "DRAIN_MAX_SECONDS = tostring(local.drain_max_seconds)})}"
    )
    assert tf.locals["drain_max_seconds"] == '${max(60, tonumber(trimsuffix(var.job_task_timeout, "s")) - 960)}'
    assert {"OUTBOX_BUCKET", "INBOX_BUCKET", "CLAIMS_PREFIX"} <= tf.locals["worker_base_env"].keys()


def test_models_volume_is_mounted_only_in_mount_mode(tf: Terraform):
    task = only(only(tf.resource("google_cloud_run_v2_job", "worker")["template"])["template"])
    volumes = [d["volumes"] for d in task["dynamic"] if "volumes" in d]
    assert volumes and volumes[0]["for_each"] == '${var.models_mode == "mount" ? [1] : []}'
    gcs = only(only(volumes[0]["content"])["gcs"])
    assert gcs == {"bucket": "${google_storage_bucket.models.name}", "read_only": True}
    assert tf.default("models_mode") == "baked"


def test_service_serves_predict_on_an_l4_as_the_seed_did(tf: Terraform):
    service = tf.resource("google_cloud_run_v2_service", "predict")
    template = only(service["template"])
    assert template["max_instance_request_concurrency"] == 1
    assert template["timeout"] == "900s"
    assert only(template["node_selector"]) == {"accelerator": "nvidia-l4"}
    scaling = only(template["scaling"])
    assert (tf.default("service_min_instances"), tf.default("service_max_instances")) == (0, 3)
    assert scaling == {
        "min_instance_count": "${var.service_min_instances}",
        "max_instance_count": "${var.service_max_instances}",
    }
    container = only(template["containers"])
    assert container["args"] == ["worker-comfyui", "serve"]
    resources = only(container["resources"])
    assert resources["limits"]["nvidia.com/gpu"] == "1"
    assert (tf.default("service_cpu"), tf.default("service_memory")) == (8, "32Gi")
    assert resources["cpu_idle"] is False, "a GPU instance needs CPU always allocated"


def test_service_waits_for_healthz_within_cloud_runs_probe_limit(tf: Terraform):
    container = only(only(tf.resource("google_cloud_run_v2_service", "predict")["template"])["containers"])
    probe = only(container["startup_probe"])
    assert only(probe["http_get"])["path"] == "/healthz"
    assert probe["period_seconds"] * probe["failure_threshold"] <= 240, "Cloud Run refuses more than 240 s"


def test_service_is_private_unless_a_variable_opens_it(tf: Terraform):
    public = tf.resource("google_cloud_run_v2_service_iam_member", "public_predict")
    assert public["member"] == "allUsers"
    assert public["count"] == "${var.allow_unauthenticated ? 1 : 0}"
    assert tf.default("allow_unauthenticated") is False
    open_to_all = [
        key for key, body in tf.resources.items() if body.get("member") in {"allUsers", "allAuthenticatedUsers"}
    ]
    assert open_to_all == [("google_cloud_run_v2_service_iam_member", "public_predict")]


def test_schedules_call_the_jobs_run_endpoint_with_a_service_account_token(tf: Terraform):
    assert tf.locals["run_job_uri"] == (
        "https://run.googleapis.com/v2/projects/${var.project_id}/locations/${var.region}/jobs/" + JOB + ":run"
    )
    for name in ("batch", "drain_sweep"):
        schedule = tf.resource("google_cloud_scheduler_job", name)
        target = only(schedule["http_target"])
        assert target["http_method"] == "POST"
        assert target["uri"] == "${local.run_job_uri}"
        assert target["headers"] == {"Content-Type": "application/json"}
        token = only(target["oauth_token"])
        assert token["service_account_email"] == "${google_service_account.scheduler.email}"
        assert token["scope"] == "https://www.googleapis.com/auth/cloud-platform"
        assert target["body"].startswith("${base64encode(jsonencode({overrides = {containerOverrides")


def test_batch_schedule_passes_the_spec_and_task_count_and_exists_only_with_a_spec(tf: Terraform):
    batch = tf.resource("google_cloud_scheduler_job", "batch")
    assert batch["count"] == '${var.batch_spec_uri == "" ? 0 : 1}'
    body = only(batch["http_target"])["body"]
    assert '{name = "BATCH_URI", value = var.batch_spec_uri}' in body
    assert "taskCount = var.batch_task_count" in body
    sweep = tf.resource("google_cloud_scheduler_job", "drain_sweep")
    assert sweep["count"] == '${var.drain_sweep_schedule == "" ? 0 : 1}'
    assert '{name = "DRAIN", value = "true"}' in only(sweep["http_target"])["body"]


def test_service_accounts_get_only_what_they_use(tf: Terraform):
    grants = {
        (kind, body.get("role"), body.get("member"))
        for (kind, _), body in tf.resources.items()
        if kind.endswith("_iam_member")
    }
    trigger = "serviceAccount:${google_service_account.trigger.email}"
    assert ("google_project_iam_member", "roles/eventarc.eventReceiver", trigger) in grants
    assert ("google_cloud_run_v2_job_iam_member", "roles/run.jobsExecutorWithOverrides", trigger) in grants
    scheduler = "serviceAccount:${google_service_account.scheduler.email}"
    assert ("google_cloud_run_v2_job_iam_member", "roles/run.jobsExecutorWithOverrides", scheduler) in grants
    gcs_agent = "serviceAccount:${data.google_storage_project_service_account.gcs.email_address}"
    assert ("google_project_iam_member", "roles/pubsub.publisher", gcs_agent) in grants

    project_roles = {role for kind, role, _ in grants if kind == "google_project_iam_member"}
    assert project_roles == {
        "roles/eventarc.eventReceiver",
        "roles/pubsub.publisher",
        "roles/cloudbuild.builds.builder",
    }
    assert not {role for _, role, _ in grants} & {"roles/owner", "roles/editor", "roles/viewer"}

    # Object roles are granted per bucket; the inbox's writable parts are prefixes only.
    for name in ("trigger_claims_writer", "job_claims_writer"):
        claims = tf.resource("google_storage_bucket_iam_member", name)
        assert claims["bucket"] == INBOX and claims["role"] == "roles/storage.objectUser"
        assert "${var.claims_prefix}" in only(claims["condition"])["expression"]
    async_requests = tf.resource("google_storage_bucket_iam_member", "service_async_requests")
    assert async_requests["role"] == "roles/storage.objectCreator"
    assert only(async_requests["condition"])["expression"].endswith('/objects/async/")')
    writers = {
        body["bucket"]
        for body in tf.of_kind("google_storage_bucket_iam_member").values()
        if body["role"] != "roles/storage.objectViewer" and "condition" not in body
    }
    assert writers == {OUTBOX}, "only the outbox is writable without a condition"


def test_buckets_are_uniform_and_never_public(tf: Terraform):
    buckets = tf.of_kind("google_storage_bucket")
    assert {"inbox", "outbox", "models"} <= buckets.keys()
    for name, bucket in buckets.items():
        assert bucket["uniform_bucket_level_access"] is True, name
        assert bucket["public_access_prevention"] == "enforced", name


def test_checkov_finds_nothing_that_is_not_skipped_with_a_reason(tf: Terraform):
    for name, text in tf.text.items():
        for skip in re.findall(r"#\s*checkov:skip=([^\n]*)", text):
            assert re.fullmatch(r"CKV2?_[A-Z]+_\d+:\s*\S.{10,}", skip), f"{name}: skip without a reason: {skip!r}"
    checkov = find_tool("checkov", REPO / ".tools" / "checkov" / "bin" / "checkov")
    result = subprocess.run(
        [checkov, "--directory", str(REPO), "--framework", "terraform", "--skip-download",
         "--skip-path", ".venv", "--skip-path", ".tools", "--skip-path", "build", "--output", "json"],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip
    assert result.stdout.strip(), f"checkov printed nothing; stderr: {result.stderr[-2000:]}"
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = [
        f"{check['check_id']} {check['resource']} ({check['file_path']}): {check['check_name']}"
        for rep in reports
        for check in rep.get("results", {}).get("failed_checks", [])
    ]
    assert failed == [], "checkov failures (fix them, or skip inline with a reason):\n" + "\n".join(failed)
    passed = sum(rep.get("summary", {}).get("passed", 0) for rep in reports)
    assert passed > 20, f"checkov ran only {passed} checks; did it scan the module?"


@pytest.mark.parametrize("variable", ["job_cpu", "job_memory", "models_mode", "name", "claims_prefix"])
def test_inputs_that_cloud_run_would_refuse_are_validated(tf: Terraform, variable: str):
    assert tf.variables[variable].get("validation"), f"variable {variable} has no validation block"
