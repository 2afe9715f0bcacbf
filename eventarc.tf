# worker-comfyui on Google Cloud.
#
#   gs://INBOX ──object.finalized──> Eventarc ──> function (trigger/) ──jobs:run──> Cloud Run Job (L4)
#                                                                                      │
#   Cloud Scheduler (batch, drain sweep) ──────────────────────jobs:run────────────────┤
#                                                                                      v
#   POST /predict ──> Cloud Run service (L4, same image)                          gs://OUTBOX
#
# deploy.sh applies this with the image it built; docs/deployment.md walks through it. Checkov runs
# over these files in the test suite; every skipped check carries its reason inline.

locals {
  bucket_prefix = var.bucket_prefix != "" ? var.bucket_prefix : var.project_id
  labels        = merge({ app = "worker-comfyui" }, var.labels)

  models_mount_path = "/mnt/models"
  # MODELS_URI in download mode, MODELS_MOUNT in mount mode, neither when the models are baked.
  models_env = {
    for name, mode in { MODELS_URI = "download", MODELS_MOUNT = "mount" } :
    name => (name == "MODELS_URI" ? "gs://${google_storage_bucket.models.name}/" : local.models_mount_path)
    if mode == var.models_mode
  }

  # The environment of the job and the service; names as in docs/configuration.md.
  worker_base_env = {
    INBOX_BUCKET  = google_storage_bucket.inbox.name
    OUTBOX_BUCKET = google_storage_bucket.outbox.name
    OUTBOX_PREFIX = var.outbox_prefix
    CLAIMS_PREFIX = var.claims_prefix
  }
  worker_env = merge(local.worker_base_env, local.models_env, var.extra_env)
  # The job's last attempt writes an error result.json, so it must know how many retries it has.
  # A draining task claims no new item once it has run DRAIN_MAX_SECONDS: one run's deadline
  # (RUN_TIMEOUT_S, 900 s) and a minute are left before the task timeout (docs/drain.md).
  drain_max_seconds = max(60, tonumber(trimsuffix(var.job_task_timeout, "s")) - 960)
  job_env = merge(local.worker_env, {
    JOB_MAX_RETRIES   = tostring(var.job_max_retries)
    DRAIN_MAX_SECONDS = tostring(local.drain_max_seconds)
  })

  # The Cloud Run Admin API method the schedules call: POST .../jobs/JOB:run with overrides.
  run_job_uri = "https://run.googleapis.com/v2/projects/${var.project_id}/locations/${var.region}/jobs/${google_cloud_run_v2_job.worker.name}:run"

  apis = [
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudscheduler.googleapis.com",
    "eventarc.googleapis.com",
    "iam.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "storage.googleapis.com",
  ]
}

resource "google_project_service" "apis" {
  for_each = toset(local.apis)

  service = each.value
  # Turning an API off on destroy would break whatever else in the project uses it.
  disable_on_destroy = false
}

# --------------------------------------------------------------------------------------- buckets --

resource "google_storage_bucket" "inbox" {
  #checkov:skip=CKV_GCP_62:Object access is recorded by Cloud Audit Logs (Data Access); legacy usage logs would need a fourth bucket.
  name                        = "${local.bucket_prefix}-${var.name}-inbox"
  location                    = upper(var.region)
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy_buckets
  labels                      = local.labels

  # Overwriting a workflow makes a new generation, which is new work; old generations are kept a week.
  versioning {
    enabled = true
  }
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 7
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis]
}

# Separate from the inbox, so that writing results never fires the inbox trigger.
resource "google_storage_bucket" "outbox" {
  #checkov:skip=CKV_GCP_62:Object access is recorded by Cloud Audit Logs (Data Access); legacy usage logs would need a fourth bucket.
  #checkov:skip=CKV_GCP_78:status.json is rewritten several times a second during a run; versioning would keep every rewrite. Results are written once, with preconditions.
  name                        = "${local.bucket_prefix}-${var.name}-outbox"
  location                    = upper(var.region)
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy_buckets
  labels                      = local.labels

  depends_on = [google_project_service.apis]
}

# Models for MODELS_URI (download at boot) or a Cloud Storage volume (models_mode = "mount").
resource "google_storage_bucket" "models" {
  #checkov:skip=CKV_GCP_62:Object access is recorded by Cloud Audit Logs (Data Access); legacy usage logs would need a fourth bucket.
  name                        = "${local.bucket_prefix}-${var.name}-models"
  location                    = upper(var.region)
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy_buckets
  labels                      = local.labels

  versioning {
    enabled = true
  }
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 7
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis]
}

# The function's source archive; each change of trigger/ uploads a new object and redeploys.
resource "google_storage_bucket" "source" {
  #checkov:skip=CKV_GCP_62:Holds only deployment archives; Cloud Audit Logs cover access.
  name                        = "${local.bucket_prefix}-${var.name}-source"
  location                    = upper(var.region)
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true
  labels                      = local.labels

  versioning {
    enabled = true
  }
  lifecycle_rule {
    condition {
      age = 30
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis]
}

data "archive_file" "trigger_source" {
  type        = "zip"
  source_dir  = "${path.module}/trigger"
  output_path = "${path.module}/build/trigger-source.zip"
  excludes    = ["__pycache__", ".pytest_cache"]
}

resource "google_storage_bucket_object" "trigger_source" {
  name   = "trigger-${data.archive_file.trigger_source.output_md5}.zip"
  bucket = google_storage_bucket.source.name
  source = data.archive_file.trigger_source.output_path
}

# ------------------------------------------------------------------------------ service accounts --

resource "google_service_account" "trigger" {
  account_id   = "${var.name}-trigger"
  display_name = "worker-comfyui inbox trigger"
  depends_on   = [google_project_service.apis]
}

resource "google_service_account" "job" {
  account_id   = "${var.name}-job"
  display_name = "worker-comfyui job (runs inbox items and batches)"
  depends_on   = [google_project_service.apis]
}

resource "google_service_account" "service" {
  account_id   = "${var.name}-predict"
  display_name = "worker-comfyui /predict service"
  depends_on   = [google_project_service.apis]
}

resource "google_service_account" "scheduler" {
  account_id   = "${var.name}-scheduler"
  display_name = "worker-comfyui schedules (calls jobs:run)"
  depends_on   = [google_project_service.apis]
}

resource "google_service_account" "build" {
  account_id   = "${var.name}-build"
  display_name = "worker-comfyui function build"
  depends_on   = [google_project_service.apis]
}

# --- the trigger: receive events, claim object generations, start the job ---

resource "google_project_iam_member" "trigger_event_receiver" {
  project = var.project_id
  role    = "roles/eventarc.eventReceiver"
  member  = "serviceAccount:${google_service_account.trigger.email}"
}

resource "google_storage_bucket_iam_member" "trigger_inbox_reader" {
  bucket = google_storage_bucket.inbox.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.trigger.email}"
}

# Create, read and update claims, and nothing else in the inbox.
resource "google_storage_bucket_iam_member" "trigger_claims_writer" {
  bucket = google_storage_bucket.inbox.name
  role   = "roles/storage.objectUser"
  member = "serviceAccount:${google_service_account.trigger.email}"

  condition {
    title      = "claims-only"
    expression = "resource.name.startsWith(\"projects/_/buckets/${google_storage_bucket.inbox.name}/objects/${var.claims_prefix}\")"
  }
}

resource "google_cloud_run_v2_job_iam_member" "trigger_runs_job" {
  name     = google_cloud_run_v2_job.worker.name
  location = var.region
  role     = "roles/run.jobsExecutorWithOverrides"
  member   = "serviceAccount:${google_service_account.trigger.email}"
}

# Lists the job's executions, to start a new one only below max_executions.
resource "google_cloud_run_v2_job_iam_member" "trigger_views_job" {
  name     = google_cloud_run_v2_job.worker.name
  location = var.region
  role     = "roles/run.viewer"
  member   = "serviceAccount:${google_service_account.trigger.email}"
}

# Eventarc delivers to the function's underlying Cloud Run service as the trigger account.
resource "google_cloud_run_v2_service_iam_member" "trigger_invokes_function" {
  name     = google_cloudfunctions2_function.trigger.name
  location = var.region
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.trigger.email}"
}

# --- the job: read the inbox and models, claim pending items while draining, write the outbox ---

resource "google_storage_bucket_iam_member" "job_inbox_reader" {
  bucket = google_storage_bucket.inbox.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.job.email}"
}

resource "google_storage_bucket_iam_member" "job_claims_writer" {
  bucket = google_storage_bucket.inbox.name
  role   = "roles/storage.objectUser"
  member = "serviceAccount:${google_service_account.job.email}"

  condition {
    title      = "claims-only"
    expression = "resource.name.startsWith(\"projects/_/buckets/${google_storage_bucket.inbox.name}/objects/${var.claims_prefix}\")"
  }
}

resource "google_storage_bucket_iam_member" "job_outbox_writer" {
  bucket = google_storage_bucket.outbox.name
  role   = "roles/storage.objectUser"
  member = "serviceAccount:${google_service_account.job.email}"
}

resource "google_storage_bucket_iam_member" "job_models_reader" {
  bucket = google_storage_bucket.models.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.job.email}"
}

# --- the service: read models, queue async requests in the inbox, read and write the outbox ---

resource "google_storage_bucket_iam_member" "service_async_requests" {
  bucket = google_storage_bucket.inbox.name
  role   = "roles/storage.objectCreator"
  member = "serviceAccount:${google_service_account.service.email}"

  condition {
    title      = "async-requests-only"
    expression = "resource.name.startsWith(\"projects/_/buckets/${google_storage_bucket.inbox.name}/objects/async/\")"
  }
}

resource "google_storage_bucket_iam_member" "service_outbox_writer" {
  bucket = google_storage_bucket.outbox.name
  role   = "roles/storage.objectUser"
  member = "serviceAccount:${google_service_account.service.email}"
}

resource "google_storage_bucket_iam_member" "service_models_reader" {
  bucket = google_storage_bucket.models.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.service.email}"
}

# --- the schedules: run the job with overrides ---

resource "google_cloud_run_v2_job_iam_member" "scheduler_runs_job" {
  name     = google_cloud_run_v2_job.worker.name
  location = var.region
  role     = "roles/run.jobsExecutorWithOverrides"
  member   = "serviceAccount:${google_service_account.scheduler.email}"
}

# --- the function's build ---

resource "google_project_iam_member" "build_builder" {
  #checkov:skip=CKV_GCP_49:Google's documented role for a custom Cloud Functions build account; this account only runs the trigger's builds.
  project = var.project_id
  role    = "roles/cloudbuild.builds.builder"
  member  = "serviceAccount:${google_service_account.build.email}"
}

# --- Cloud Storage publishes the inbox's notifications to Eventarc's Pub/Sub topic ---

data "google_storage_project_service_account" "gcs" {
  depends_on = [google_project_service.apis]
}

resource "google_project_iam_member" "gcs_publishes_events" {
  project = var.project_id
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${data.google_storage_project_service_account.gcs.email_address}"
}

# ---------------------------------------------------------------------------------- the trigger --

resource "google_cloudfunctions2_function" "trigger" {
  name     = "${var.name}-trigger"
  location = var.region
  labels   = local.labels

  build_config {
    runtime         = var.trigger_runtime
    entry_point     = var.trigger_entry_point
    service_account = google_service_account.build.id
    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.trigger_source.name
      }
    }
  }

  service_config {
    available_memory               = "256M"
    timeout_seconds                = 60
    max_instance_count             = 10
    ingress_settings               = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true
    service_account_email          = google_service_account.trigger.email
    environment_variables = {
      GOOGLE_CLOUD_PROJECT = var.project_id
      REGION               = var.region
      JOB_NAME             = google_cloud_run_v2_job.worker.name
      OUTBOX_BUCKET        = google_storage_bucket.outbox.name
      OUTBOX_PREFIX        = var.outbox_prefix
      CLAIMS_PREFIX        = var.claims_prefix
      MAX_EXECUTIONS       = tostring(var.max_executions)
    }
  }

  event_trigger {
    trigger_region        = var.region
    event_type            = "google.cloud.storage.object.v1.finalized"
    retry_policy          = "RETRY_POLICY_RETRY"
    service_account_email = google_service_account.trigger.email
    event_filters {
      attribute = "bucket"
      value     = google_storage_bucket.inbox.name
    }
  }

  depends_on = [
    google_project_iam_member.trigger_event_receiver,
    google_project_iam_member.gcs_publishes_events,
    google_project_iam_member.build_builder,
  ]
}

# -------------------------------------------------------------------------------------- the job --

resource "google_cloud_run_v2_job" "worker" {
  provider            = google-beta
  name                = "${var.name}-job"
  location            = var.region
  deletion_protection = false
  labels              = local.labels

  template {
    task_count = 1
    labels     = local.labels

    template {
      service_account               = google_service_account.job.email
      timeout                       = var.job_task_timeout
      max_retries                   = var.job_max_retries
      gpu_zonal_redundancy_disabled = true

      node_selector {
        accelerator = "nvidia-l4"
      }

      containers {
        image = var.image
        # Only the arguments change: the image's ENTRYPOINT (tini) stays in front as PID 1.
        args = ["worker-comfyui", "job"]

        resources {
          limits = {
            cpu              = tostring(var.job_cpu)
            memory           = var.job_memory
            "nvidia.com/gpu" = "1"
          }
        }

        dynamic "env" {
          for_each = local.job_env
          content {
            name  = env.key
            value = env.value
          }
        }

        dynamic "volume_mounts" {
          for_each = var.models_mode == "mount" ? [1] : []
          content {
            name       = "models"
            mount_path = local.models_mount_path
          }
        }
      }

      dynamic "volumes" {
        for_each = var.models_mode == "mount" ? [1] : []
        content {
          name = "models"
          gcs {
            bucket    = google_storage_bucket.models.name
            read_only = true
          }
        }
      }
    }
  }

  depends_on = [google_project_service.apis]
}

# ---------------------------------------------------------------------------------- the service --

resource "google_cloud_run_v2_service" "predict" {
  name                = "${var.name}-predict"
  location            = var.region
  deletion_protection = false
  # Callers reach /predict over the internet; IAM (roles/run.invoker) decides who may call it.
  ingress = "INGRESS_TRAFFIC_ALL"
  labels  = local.labels

  template {
    service_account                  = google_service_account.service.email
    timeout                          = "900s"
    max_instance_request_concurrency = 1
    gpu_zonal_redundancy_disabled    = var.service_gpu_zonal_redundancy_disabled
    labels                           = local.labels

    scaling {
      min_instance_count = var.service_min_instances
      max_instance_count = var.service_max_instances
    }

    node_selector {
      accelerator = "nvidia-l4"
    }

    containers {
      image = var.image
      args  = ["worker-comfyui", "serve"]

      ports {
        container_port = 8080
      }

      resources {
        limits = {
          cpu              = tostring(var.service_cpu)
          memory           = var.service_memory
          "nvidia.com/gpu" = "1"
        }
        # A GPU instance needs CPU always allocated; the boost shortens ComfyUI's start.
        cpu_idle          = false
        startup_cpu_boost = true
      }

      # /healthz answers 200 only once ComfyUI does. Cloud Run caps a startup probe at 240 s
      # (period x failures); a baked image boots well inside that.
      startup_probe {
        initial_delay_seconds = 0
        period_seconds        = 10
        timeout_seconds       = 5
        failure_threshold     = 24
        http_get {
          path = "/healthz"
          port = 8080
        }
      }

      dynamic "env" {
        for_each = local.worker_env
        content {
          name  = env.key
          value = env.value
        }
      }

      dynamic "volume_mounts" {
        for_each = var.models_mode == "mount" ? [1] : []
        content {
          name       = "models"
          mount_path = local.models_mount_path
        }
      }
    }

    dynamic "volumes" {
      for_each = var.models_mode == "mount" ? [1] : []
      content {
        name = "models"
        gcs {
          bucket    = google_storage_bucket.models.name
          read_only = true
        }
      }
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_cloud_run_v2_service_iam_member" "public_predict" {
  # Created only when the operator sets allow_unauthenticated = true on purpose.
  count    = var.allow_unauthenticated ? 1 : 0
  name     = google_cloud_run_v2_service.predict.name
  location = var.region
  role     = "roles/run.invoker"
  member   = "allUsers"
}

# ------------------------------------------------------------------------------------ schedules --

# Nightly batch: run the job with the spec's URI and a task count; tasks share the items out.
resource "google_cloud_scheduler_job" "batch" {
  count       = var.batch_spec_uri == "" ? 0 : 1
  name        = "${var.name}-batch"
  description = "Runs the worker job on ${var.batch_spec_uri}"
  region      = var.region
  schedule    = var.batch_schedule
  time_zone   = var.schedule_time_zone
  # A retried call may start a second execution; batches are resumable, so it only skips done items.
  attempt_deadline = "180s"
  retry_config {
    retry_count = 1
  }

  http_target {
    http_method = "POST"
    uri         = local.run_job_uri
    headers     = { "Content-Type" = "application/json" }
    body = base64encode(jsonencode({
      overrides = {
        containerOverrides = [{ env = [{ name = "BATCH_URI", value = var.batch_spec_uri }] }]
        taskCount          = var.batch_task_count
      }
    }))
    oauth_token {
      service_account_email = google_service_account.scheduler.email
      scope                 = "https://www.googleapis.com/auth/cloud-platform"
    }
  }

  depends_on = [google_cloud_run_v2_job_iam_member.scheduler_runs_job]
}

# Drain sweep: a job run in drain mode that takes any inbox item left pending (for instance one
# that arrived while the last task was exiting). With nothing pending it exits before booting ComfyUI.
resource "google_cloud_scheduler_job" "drain_sweep" {
  count            = var.drain_sweep_schedule == "" ? 0 : 1
  name             = "${var.name}-drain-sweep"
  description      = "Runs the worker job in drain mode to pick up pending inbox items"
  region           = var.region
  schedule         = var.drain_sweep_schedule
  time_zone        = var.schedule_time_zone
  attempt_deadline = "180s"
  retry_config {
    retry_count = 0
  }

  http_target {
    http_method = "POST"
    uri         = local.run_job_uri
    headers     = { "Content-Type" = "application/json" }
    body = base64encode(jsonencode({
      overrides = {
        containerOverrides = [{ env = [{ name = "DRAIN", value = "true" }] }]
        taskCount          = 1
      }
    }))
    oauth_token {
      service_account_email = google_service_account.scheduler.email
      scope                 = "https://www.googleapis.com/auth/cloud-platform"
    }
  }

  depends_on = [google_cloud_run_v2_job_iam_member.scheduler_runs_job]
}
