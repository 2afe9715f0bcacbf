# Inputs of eventarc.tf. Only project_id and image have no default; deploy.sh passes both.

# ------------------------------------------------------------------------------ where and what --

variable "project_id" {
  description = "The Google Cloud project to deploy into."
  type        = string
}

variable "region" {
  description = "Region of the buckets, the function, the job and the service. It must offer Cloud Run L4 GPUs (e.g. us-central1, europe-west1, europe-west4, asia-southeast1)."
  type        = string
  default     = "us-central1"
}

variable "image" {
  description = "The worker image, e.g. us-central1-docker.pkg.dev/PROJECT/comfyui/worker-comfyui:flux1-dev-fp8 (deploy.sh builds and passes it)."
  type        = string
}

variable "name" {
  description = "Prefix of every resource name: NAME-inbox bucket suffix, NAME-job, NAME-predict, NAME-trigger and the service accounts."
  type        = string
  default     = "comfy"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,15}$", var.name))
    error_message = "name must be 2-16 characters of lower-case letters, digits and dashes, starting with a letter (service account ids are limited to 30 characters)."
  }
}

variable "bucket_prefix" {
  description = "Prefix of the bucket names (globally unique). Empty means the project id: PROJECT-NAME-inbox, PROJECT-NAME-outbox, PROJECT-NAME-models."
  type        = string
  default     = ""
}

variable "force_destroy_buckets" {
  description = "Let `terraform destroy` delete buckets that still hold objects. Keep false unless you are tearing down a test deployment."
  type        = bool
  default     = false
}

variable "labels" {
  description = "Labels added to every resource that takes them."
  type        = map(string)
  default     = {}
}

# ---------------------------------------------------------------------------- inbox and outbox --

variable "outbox_prefix" {
  description = "Prefix of every result in the outbox bucket. Empty keeps the contract's layout: gs://OUTBOX/<inbox path without .json>/."
  type        = string
  default     = ""
}

variable "claims_prefix" {
  description = "Prefix, in the inbox bucket, of the claim objects that make each object generation run once. The trigger ignores objects under it."
  type        = string
  default     = "_claims/"

  validation {
    condition     = length(var.claims_prefix) > 1 && endswith(var.claims_prefix, "/")
    error_message = "claims_prefix must be a non-empty folder name ending in '/', e.g. \"_claims/\"."
  }
}

variable "max_executions" {
  description = "The trigger starts a new job execution only while fewer than this many are active; running tasks drain the rest of the inbox. Keep it within your L4 quota."
  type        = number
  default     = 2

  validation {
    condition     = var.max_executions >= 1
    error_message = "max_executions must be at least 1."
  }
}

variable "trigger_entry_point" {
  description = "Name of the function in trigger/main.py that receives the CloudEvent."
  type        = string
  default     = "on_inbox_object"
}

variable "trigger_runtime" {
  description = "Cloud Functions runtime of trigger/."
  type        = string
  default     = "python312"
}

# --------------------------------------------------------------------------------------- models --

variable "models_mode" {
  description = <<-EOT
    Where ComfyUI finds models beyond those baked into the image:
      baked    - only the image's models (MODEL_TYPE at build time);
      download - the job and the service copy gs://MODELS_BUCKET/ to local disk at boot (MODELS_URI), in parallel;
      mount    - the models bucket is mounted read-only with Cloud Storage FUSE (MODELS_MOUNT) and mapped with extra_model_paths.yaml.
    docs/customization.md compares the last two.
  EOT
  type        = string
  default     = "baked"

  validation {
    condition     = contains(["baked", "download", "mount"], var.models_mode)
    error_message = "models_mode must be one of: baked, download, mount."
  }
}

# ------------------------------------------------------------------------------------------ job --

variable "job_cpu" {
  description = "vCPUs of each job task. Cloud Run requires at least 4 with a GPU."
  type        = number
  default     = 8

  validation {
    condition     = contains([4, 6, 8], var.job_cpu)
    error_message = "job_cpu must be 4, 6 or 8: Cloud Run needs at least 4 vCPUs with an L4."
  }
}

variable "job_memory" {
  description = "Memory of each job task; at least 16Gi with a GPU. FLUX checkpoints need 32Gi."
  type        = string
  default     = "32Gi"

  validation {
    condition     = can(regex("^[0-9]+Gi$", var.job_memory)) && tonumber(trimsuffix(var.job_memory, "Gi")) >= 16
    error_message = "job_memory must be at least \"16Gi\", written in Gi (e.g. \"32Gi\")."
  }
}

variable "job_task_timeout" {
  description = "How long one job task may run (a drained task processes several items), e.g. \"3600s\"."
  type        = string
  default     = "3600s"

  validation {
    condition     = can(regex("^[0-9]+s$", var.job_task_timeout))
    error_message = "job_task_timeout must be whole seconds with an s, e.g. \"3600s\" (DRAIN_MAX_SECONDS is derived from it)."
  }
}

variable "job_max_retries" {
  description = "Retries of a failed job task. A retryable failure (ComfyUI crashed, GCS unavailable) exits non-zero and is retried; a user's mistake is a finished item."
  type        = number
  default     = 2
}

# -------------------------------------------------------------------------------------- service --

variable "service_cpu" {
  description = "vCPUs of each /predict instance."
  type        = number
  default     = 8
}

variable "service_memory" {
  description = "Memory of each /predict instance."
  type        = string
  default     = "32Gi"
}

variable "service_max_instances" {
  description = "Most /predict instances (each holds one L4)."
  type        = number
  default     = 3
}

variable "service_min_instances" {
  description = "Instances kept warm. Anything above 0 bills an L4 around the clock."
  type        = number
  default     = 0
}

variable "service_gpu_zonal_redundancy_disabled" {
  description = "Run the service on L4s without zonal redundancy: cheaper, best-effort failover, and a separate quota. The job always runs without it."
  type        = bool
  default     = true
}

variable "allow_unauthenticated" {
  description = "Make /predict public (allUsers may invoke it). Off by default: callers need roles/run.invoker and an identity token."
  type        = bool
  default     = false
}

variable "extra_env" {
  description = "More environment variables for the job and the service (see docs/configuration.md), e.g. { COMFY_LOG_LEVEL = \"INFO\" }."
  type        = map(string)
  default     = {}
}

# ------------------------------------------------------------------------------------ schedules --

variable "batch_spec_uri" {
  description = "gs:// URI of a batch spec to run on batch_schedule. Empty creates no batch schedule."
  type        = string
  default     = ""

  validation {
    condition     = var.batch_spec_uri == "" || startswith(var.batch_spec_uri, "gs://")
    error_message = "batch_spec_uri must be empty or a gs:// URI."
  }
}

variable "batch_task_count" {
  description = "Tasks of each scheduled batch execution; the items are shared among them."
  type        = number
  default     = 2

  validation {
    condition     = var.batch_task_count >= 1
    error_message = "batch_task_count must be at least 1."
  }
}

variable "batch_schedule" {
  description = "Cron schedule of the batch run, in schedule_time_zone."
  type        = string
  default     = "0 2 * * *"
}

variable "drain_sweep_schedule" {
  description = "Cron schedule of the drain sweep: a job run with DRAIN=true that picks up inbox items left pending. Empty disables it."
  type        = string
  default     = "*/15 * * * *"
}

variable "schedule_time_zone" {
  description = "Time zone of the schedules."
  type        = string
  default     = "Etc/UTC"
}
