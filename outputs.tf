output "inbox_bucket" {
  description = "Drop workflow JSON here: gsutil cp workflow.json gs://INBOX/."
  value       = google_storage_bucket.inbox.name
}

output "outbox_bucket" {
  description = "Results land here, under the inbox object's path without .json."
  value       = google_storage_bucket.outbox.name
}

output "models_bucket" {
  description = "Put models here (same folders as ComfyUI/models) for models_mode download or mount."
  value       = google_storage_bucket.models.name
}

output "job_name" {
  description = "The Cloud Run job that runs inbox items and batches."
  value       = google_cloud_run_v2_job.worker.name
}

output "service_url" {
  description = "Base URL of the /predict service."
  value       = google_cloud_run_v2_service.predict.uri
}

output "function_name" {
  description = "The Cloud Function that receives inbox events."
  value       = google_cloudfunctions2_function.trigger.name
}

output "run_job_uri" {
  description = "The Admin API endpoint the schedules call (POST with overrides)."
  value       = local.run_job_uri
}

output "service_accounts" {
  description = "The service accounts, by role in the pipeline."
  value = {
    trigger   = google_service_account.trigger.email
    job       = google_service_account.job.email
    service   = google_service_account.service.email
    scheduler = google_service_account.scheduler.email
    build     = google_service_account.build.email
  }
}
