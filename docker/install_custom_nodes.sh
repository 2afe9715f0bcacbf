#!/usr/bin/env bash
# Install the pinned custom nodes of a list file into a ComfyUI tree; any failure fails the build.
#
#   install_custom_nodes.sh LIST_FILE COMFYUI_DIR
#
# One entry a line; blank lines and `#` comments are ignored:
#   comfyui-kjnodes@1.1.9                                   a Comfy Registry node at an exact version
#   https://github.com/owner/repo.git@0123abcd...           a git repository at a commit (7-40 hex digits)
# Registry nodes are fetched by comfy-cli from the Comfy Registry (`comfy node registry-install`,
# which needs no ComfyUI-Manager); git nodes are cloned at the commit. Both get their
# requirements.txt and install.py run, as ComfyUI-Manager would. An entry without a pin is refused:
# the image must be reproducible.
set -euo pipefail

usage() {
  echo "usage: $0 LIST_FILE COMFYUI_DIR" >&2
  exit 64
}

[[ $# -eq 2 ]] || usage
list_file=$1
comfyui_dir=$2
python=${PYTHON:-python3}
comfy=${COMFY:-comfy}

[[ -r $list_file ]] || { echo "error: custom node list '$list_file' not found" >&2; exit 66; }
[[ -d $comfyui_dir/custom_nodes ]] || { echo "error: '$comfyui_dir' has no custom_nodes folder; is it a ComfyUI tree?" >&2; exit 66; }

registry_re='^[A-Za-z0-9][A-Za-z0-9._-]*@[0-9]+(\.[0-9]+)*([.-][A-Za-z0-9.]+)?$'
git_re='^(https|file)://[^[:space:]]+@[0-9a-f]{7,40}$'

# Validate every line first, so a typo on line 9 fails before eight nodes have been installed.
registry=()
git=()
lineno=0
while IFS= read -r raw || [[ -n $raw ]]; do
  lineno=$((lineno + 1))
  line=${raw%%#*}
  line=${line//[[:space:]]/}
  [[ -z $line ]] && continue
  if [[ $line =~ $git_re ]]; then
    git+=("$line")
  elif [[ $line =~ $registry_re ]]; then
    registry+=("$line")
  else
    echo "error: $list_file:$lineno: '$line' is not 'name@version' or 'https://...git@<commit>';" \
      "pin every custom node to a version or a commit" >&2
    exit 65
  fi
done < "$list_file"

install_git_node() {
  local entry=$1 url commit name target
  url=${entry%@*}
  commit=${entry##*@}
  name=$(basename "${url%.git}")
  target=$comfyui_dir/custom_nodes/$name
  [[ -e $target ]] && { echo "error: custom node '$name' is listed twice or already present" >&2; return 1; }
  echo "installing $name at $commit from $url" >&2
  git init --quiet "$target"
  git -C "$target" remote add origin "$url"
  # Fetch just the pinned commit when the server allows it; fall back to a full fetch.
  git -C "$target" fetch --quiet --depth 1 origin "$commit" 2>/dev/null \
    || git -C "$target" fetch --quiet origin
  git -C "$target" -c advice.detachedHead=false checkout --quiet "$commit"
  git -C "$target" submodule update --quiet --init --recursive
  rm -rf "$target/.git"
  if [[ -f $target/requirements.txt ]]; then
    "$python" -m pip install --no-cache-dir -r "$target/requirements.txt"
  fi
  if [[ -f $target/install.py ]]; then
    (cd "$target" && "$python" install.py)
  fi
}

install_registry_node() {
  local entry=$1 name version
  name=${entry%@*}
  version=${entry##*@}
  [[ -e $comfyui_dir/custom_nodes/$name ]] && { echo "error: custom node '$name' is listed twice or already present" >&2; return 1; }
  echo "installing $name $version from the Comfy Registry" >&2
  "$comfy" --skip-prompt --workspace "$comfyui_dir" node registry-install "$name" --version "$version"
  # comfy-cli returns 0 when it declines to install; the folder is the proof.
  [[ -d $comfyui_dir/custom_nodes/$name ]] || { echo "error: comfy-cli did not install '$name'" >&2; return 1; }
}

for entry in "${registry[@]}"; do
  install_registry_node "$entry"
done

for entry in "${git[@]}"; do
  install_git_node "$entry"
done

echo "custom nodes: ${#registry[@]} from the registry, ${#git[@]} from git" >&2
