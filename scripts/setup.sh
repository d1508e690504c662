#!/usr/bin/env bash
# Installs the Debian packages Tandem builds and runs against.
# Idempotent: quiet when everything is present; runs `apt-get update` only when
# something is missing. Needs root (or sudo) only in that case.
set -euo pipefail

packages=(
  libopenblas-dev   # cblas_sgemm / cblas_dgemm
  libdnnl-dev       # oneDNN C API: convolution and pooling
  libgloo-dev       # collectives (TCP transport)
  libopenmpi-dev    # MPI backend
  openmpi-bin       # mpirun
  pkg-config
  zlib1g-dev        # gzip-compressed MNIST files
  fortunes          # English text corpus for the character language model (/usr/share/games/fortunes)
  librsvg2-bin      # rsvg-convert: PNG plots (tandem plot --png)
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup.sh: need root to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
echo "setup.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
