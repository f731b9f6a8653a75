#!/usr/bin/env bash
# Put edgetenant's images into an air-gapped K3s node (docs/install.md). Run it ON the node, as root,
# with the archives `make images` wrote (dist/images/, copied over by USB stick, scp, ...):
#
#   hack/images/k3s-airgap.sh [--from DIR] [--arch amd64|arm64] [--now] [--dry-run]
#
# Copies every archive for the node's architecture into K3s' agent images directory, which K3s
# imports into containerd each time it starts. With --now it also imports them into the running
# K3s at once (`k3s ctr -n k8s.io images import`), so nothing needs a restart. The archives are OCI
# image archives that carry their image names (io.containerd.image.name), which are exactly the
# names the manifests use; pods start them without pulling (tags are not :latest, so the default
# imagePullPolicy is IfNotPresent).
set -euo pipefail

from="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/dist/images"
images_dir="${K3S_IMAGES_DIR:-/var/lib/rancher/k3s/agent/images}"
arch=""
now=""
dry_run=""

usage() { sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    --from) from="$2"; shift 2 ;;
    --arch) arch="$2"; shift 2 ;;
    --now) now=1; shift ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "k3s-airgap: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done

if [ -z "$arch" ]; then
  case "$(uname -m)" in
    x86_64) arch=amd64 ;;
    aarch64|arm64) arch=arm64 ;;
    *) echo "k3s-airgap: no images for $(uname -m); pass --arch amd64|arm64" >&2; exit 1 ;;
  esac
fi

shopt -s nullglob
archives=("$from"/*-"$arch".oci.tar)
if [ ${#archives[@]} -eq 0 ]; then
  echo "k3s-airgap: no *-$arch.oci.tar in $from: run \`make images\` and copy dist/images/ here" >&2
  exit 1
fi

run() { if [ -n "$dry_run" ]; then echo "+ $*"; else "$@"; fi; }

run mkdir -p "$images_dir"
for archive in "${archives[@]}"; do
  run install -m 0644 "$archive" "$images_dir/"
  echo "k3s-airgap: $(basename "$archive") -> $images_dir (imported when K3s starts)"
done

if [ -n "$now" ]; then
  command -v k3s >/dev/null 2>&1 || { echo "k3s-airgap: --now needs the k3s binary on PATH" >&2; exit 1; }
  for archive in "${archives[@]}"; do
    run k3s ctr -n k8s.io images import "$archive"
  done
  run k3s ctr -n k8s.io images list -q | grep '^ghcr.io/edgetenant/' || true
fi

echo "k3s-airgap: next, from a machine with kubectl: kubectl apply --server-side -k crds, then kubectl apply -k manifests/overlays/k3s-airgap"
