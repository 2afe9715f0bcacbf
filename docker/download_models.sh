#!/usr/bin/env bash
# Download the models of one MODEL_TYPE into DEST, as listed in the models file.
#
#   download_models.sh MODEL_TYPE DEST [MODELS_FILE]
#
# Runs in the Dockerfile's downloader stage, so neither the token nor curl reaches the final image.
# The Hugging Face token comes from the file named by HF_TOKEN_FILE (a BuildKit secret) or, for
# builds that still pass it as a build argument, from HUGGINGFACE_ACCESS_TOKEN. It goes to curl on
# stdin, never on a command line or on disk. Each file is written to NAME.part and renamed when
# complete, so an interrupted build never leaves a truncated model behind.
set -euo pipefail

usage() {
  echo "usage: $0 MODEL_TYPE DEST [MODELS_FILE]" >&2
  exit 64
}

[[ $# -ge 2 && $# -le 3 ]] || usage
model_type=$1
dest=$2
models_file=${3:-"$(dirname "$0")/models.txt"}

[[ -r $models_file ]] || { echo "error: models file '$models_file' not found" >&2; exit 66; }

# Known types: `base` plus every type named in the file.
known_types=$(awk '!/^[[:space:]]*(#|$)/ { print $1 }' "$models_file" | sort -u | tr '\n' ' ')
if [[ $model_type != base && " $known_types " != *" $model_type "* ]]; then
  echo "error: unknown MODEL_TYPE '$model_type'; choose one of: base $known_types" >&2
  exit 65
fi

token=""
if [[ -n ${HF_TOKEN_FILE:-} && -s ${HF_TOKEN_FILE} ]]; then
  token=$(tr -d '[:space:]' < "$HF_TOKEN_FILE")
elif [[ -n ${HUGGINGFACE_ACCESS_TOKEN:-} ]]; then
  token=$HUGGINGFACE_ACCESS_TOKEN
fi

mkdir -p "$dest"

fetch() {
  local url=$1 target=$2
  mkdir -p "$(dirname "$target")"
  echo "downloading $url -> $target" >&2
  {
    if [[ -n $token ]]; then
      printf 'header = "Authorization: Bearer %s"\n' "$token"
    fi
  } | curl --config - --fail --location --silent --show-error \
      --retry 5 --retry-delay 5 \
      --output "$target.part" "$url" || {
    rm -f "$target.part"
    echo "error: download of $url failed; gated models (flux1-dev, sd3) need HUGGINGFACE_ACCESS_TOKEN" \
      "with access granted on huggingface.co" >&2
    return 1
  }
  mv "$target.part" "$target"
}

count=0
while read -r type path url _; do
  [[ -z ${type:-} || $type == \#* || $type != "$model_type" ]] && continue
  [[ -n ${path:-} && -n ${url:-} ]] || { echo "error: malformed line for '$type' in $models_file" >&2; exit 65; }
  if [[ $path == /* || $path == *..* ]]; then
    echo "error: model path '$path' must stay inside the models folder" >&2
    exit 65
  fi
  if [[ -s $dest/$path ]]; then
    echo "present: $dest/$path" >&2
  else
    fetch "$url" "$dest/$path"
  fi
  count=$((count + 1))
done < "$models_file"

echo "MODEL_TYPE=$model_type: $count model file(s) in $dest" >&2
