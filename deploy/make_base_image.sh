#!/usr/bin/env bash
# Make a Debian bookworm base image with Python 3.11 from Debian's package registry (mmdebstrap) and import
# it into podman. Used where public container registries cannot be reached: `make image-test` builds the
# Dockerfiles FROM this base (BASE_IMAGE build argument); users keep the public python:3.11 default.
#   deploy/make_base_image.sh TAG
set -euo pipefail
tag=${1:-localhost/insarcloud-base:bookworm}
command -v mmdebstrap >/dev/null || { echo "mmdebstrap missing (make image-deps installs it)" >&2; exit 3; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# minbase + Python 3.11 (+ venv/ensurepip) and the CA bundle; passwd for useradd in the Dockerfiles.
mmdebstrap --quiet --variant=minbase \
  --include=python3,python3-venv,ca-certificates,passwd \
  --aptopt='Acquire::Retries "3"' \
  --customize-hook='chroot "$1" ln -sf /usr/bin/python3 /usr/local/bin/python' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
  bookworm "$tmp/rootfs.tar" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
podman import --change 'CMD ["/bin/bash"]' --change 'ENV LANG=C.UTF-8' "$tmp/rootfs.tar" "$tag" >/dev/null
echo "$tag"
