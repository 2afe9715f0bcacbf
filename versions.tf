terraform {
  required_version = ">= 1.5.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.47.0, < 8.0.0"
    }
    # The job's `gpu_zonal_redundancy_disabled` arrived in google-beta 6.47.0; the job uses this
    # provider so the GPU fields work whichever GA release the lock file picks.
    google-beta = {
      source  = "hashicorp/google-beta"
      version = ">= 6.47.0, < 8.0.0"
    }
    archive = {
      source  = "hashicorp/archive"
      version = "~> 2.7"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}

provider "google-beta" {
  project = var.project_id
  region  = var.region
}
