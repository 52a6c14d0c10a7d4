#!/usr/bin/env bash
# Make sure the Fashion-MNIST IDX files are in DIR (default /usr/share/datasets/fashion-mnist).
#
#   scripts/install_data.sh [DIR]
#
# Files present (raw or .gz): nothing to do. Otherwise, as root: install the
# Debian package dataset-fashion-mnist; as another user: print the command
# to run and exit 1. Nothing is downloaded from anywhere else.
set -euo pipefail

system_dir=/usr/share/datasets/fashion-mnist
dir="${1:-$system_dir}"

have_files() {
  local name
  for name in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
    [[ -f "$1/$name" || -f "$1/$name.gz" ]] || return 1
  done
}

if have_files "$dir"; then
  exit 0
fi
if [[ "$(id -u)" -ne 0 ]]; then
  echo "Fashion-MNIST is not in $dir; install it with: sudo apt-get install -y dataset-fashion-mnist" >&2
  exit 1
fi
apt-get update
apt-get install -y dataset-fashion-mnist
if ! have_files "$dir"; then
  echo "dataset-fashion-mnist put the files in $system_dir, not $dir: pass --data $system_dir" >&2
  exit 1
fi
