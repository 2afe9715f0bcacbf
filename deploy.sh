#!/usr/bin/env bash
# Deploy worker-comfyui to a Google Cloud project: build and push the image, then apply eventarc.tf.
#
#   ./deploy.sh PROJECT REGION [TAG]
#
# Safe to run again: every step creates what is missing and updates what changed. Settings, all
# optional, come from the environment:
#   MODEL_TYPE                models baked into the image (default flux1-dev-fp8; see docker/models.txt)
#   REPOSITORY                Artifact Registry repository, created if missing (default comfyui)
#   IMAGE_NAME                image name in that repository (default worker-comfyui)
#   BUILDER                   docker | cloudbuild (default: docker when a docker daemon answers)
#   HUGGINGFACE_ACCESS_TOKEN  token for gated models, docker builds (sent as a BuildKit secret)
#   HF_TOKEN_SECRET           Secret Manager secret holding that token, Cloud Build builds
#   SKIP_BUILD                1 to deploy an image already pushed under TAG
#   AUTO_APPROVE              1 to apply without terraform's confirmation prompt
#   TF_VARS                   more terraform arguments, e.g. "-var allow_unauthenticated=true"
# docs/deployment.md explains each step and what to do when one fails.
set -euo pipefail

usage() {
  echo "usage: $0 PROJECT REGION [TAG]" >&2
  echo "  e.g. $0 my-project us-central1 flux1-dev-fp8-v1" >&2
  exit 64
}

die() {
  echo "error: $*" >&2
  exit 1
}

step() {
  echo "==> $*" >&2
}

[[ $# -ge 2 && $# -le 3 ]] || usage
project=$1
region=$2
here=$(cd "$(dirname "$0")" && pwd)
model_type=${MODEL_TYPE:-flux1-dev-fp8}
repository=${REPOSITORY:-comfyui}
image_name=${IMAGE_NAME:-worker-comfyui}
revision=$(git -C "$here" rev-parse --short HEAD 2>/dev/null || date -u +%Y%m%d%H%M%S)
tag=${3:-$model_type-$revision}
image="$region-docker.pkg.dev/$project/$repository/$image_name:$tag"

# ---------------------------------------------------------------------------- prerequisites --

command -v gcloud >/dev/null 2>&1 \
  || die "gcloud not found. Install the Google Cloud CLI (https://cloud.google.com/sdk/docs/install)," \
    "then run 'gcloud auth login' and 'gcloud auth application-default login'."
command -v terraform >/dev/null 2>&1 \
  || die "terraform not found. Install Terraform >= 1.5 (https://developer.hashicorp.com/terraform/install)."
[[ -n $(gcloud auth list --filter=status:ACTIVE --format='value(account)' 2>/dev/null) ]] \
  || die "gcloud has no active account: run 'gcloud auth login' and 'gcloud auth application-default login'."
gcloud projects describe "$project" --format='value(projectId)' >/dev/null 2>&1 \
  || die "project '$project' is not visible to $(gcloud config get-value account 2>/dev/null):" \
    "check the id and your access (roles/owner, or the roles listed in docs/deployment.md)."

builder=${BUILDER:-}
if [[ -z $builder ]]; then
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    builder=docker
  else
    builder=cloudbuild
  fi
fi
[[ $builder == docker || $builder == cloudbuild ]] || die "BUILDER must be 'docker' or 'cloudbuild', not '$builder'"

echo "project $project, region $region, MODEL_TYPE $model_type" >&2
echo "image   $image (built with $builder)" >&2
echo "note    Cloud Run needs L4 GPU quota in $region for the job and the service: request" \
  "'Total Nvidia L4 GPU allocation without zonal redundancy, per project per region' at" \
  "https://console.cloud.google.com/iam-admin/quotas?project=$project (docs/deployment.md, 'GPU quota')." >&2

# ------------------------------------------------------------------------- APIs and registry --

step "enabling the APIs the build needs (the rest are enabled by terraform)"
gcloud services enable artifactregistry.googleapis.com cloudbuild.googleapis.com run.googleapis.com \
  --project "$project"

step "Artifact Registry repository $repository in $region"
if ! gcloud artifacts repositories describe "$repository" --location "$region" --project "$project" >/dev/null 2>&1; then
  gcloud artifacts repositories create "$repository" --repository-format docker --location "$region" \
    --description "worker-comfyui images" --project "$project"
fi

# ------------------------------------------------------------------------------------- image --

if [[ ${SKIP_BUILD:-0} == 1 ]]; then
  step "skipping the build; deploying $image as it is"
elif [[ $builder == docker ]]; then
  step "building $image with docker"
  gcloud auth configure-docker "$region-docker.pkg.dev" --quiet
  build_args=(--build-arg "MODEL_TYPE=$model_type" --tag "$image")
  if [[ -n ${HUGGINGFACE_ACCESS_TOKEN:-} ]]; then
    build_args+=(--secret "id=hf_token,env=HUGGINGFACE_ACCESS_TOKEN")
  fi
  DOCKER_BUILDKIT=1 docker build "${build_args[@]}" "$here"
  docker push "$image"
else
  step "building $image with Cloud Build (tens of minutes for the larger models)"
  gcloud builds submit "$here" --project "$project" --config "$here/docker/cloudbuild.yaml" \
    --substitutions "_IMAGE=$image,_MODEL_TYPE=$model_type,_HF_SECRET=${HF_TOKEN_SECRET:-}"
fi

# ----------------------------------------------------------------------------------- terraform --

step "terraform init"
terraform -chdir="$here" init -input=false

apply_args=(-input=false -var "project_id=$project" -var "region=$region" -var "image=$image")
if [[ ${AUTO_APPROVE:-0} == 1 ]]; then
  apply_args+=(-auto-approve)
fi
if [[ -n ${TF_VARS:-} ]]; then
  read -r -a extra_args <<< "$TF_VARS"
  apply_args+=("${extra_args[@]}")
fi

step "terraform apply"
if ! terraform -chdir="$here" apply "${apply_args[@]}"; then
  echo "error: terraform apply failed. If the message mentions quota or 'nvidia-l4', request L4 GPU" \
    "quota for $region (see the note above); if it mentions the Eventarc service agent, wait a few" \
    "minutes after the first run and run $0 again." >&2
  exit 1
fi

inbox=$(terraform -chdir="$here" output -raw inbox_bucket)
outbox=$(terraform -chdir="$here" output -raw outbox_bucket)
service_url=$(terraform -chdir="$here" output -raw service_url)
cat >&2 <<EOF

deployed. First test (docs/deployment.md, "First test"):
  gsutil cp workflows/empty_image_batch.json gs://$inbox/demo/first.json
  gsutil ls -r gs://$outbox/demo/first/        # result.json appears last, after a cold start
  curl -H "Authorization: Bearer \$(gcloud auth print-identity-token)" $service_url/healthz
EOF
