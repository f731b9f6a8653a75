#!/usr/bin/env bash
# Build the operations tools the tests use (helm, promtool, kstatus) from their Go modules into cache
# directories outside the repo, keyed by version (and, for kstatus, by its source). Idempotent: with the
# binaries present it returns at once.
#   hack/tools/build.sh [--print-bin] [helm|promtool|kstatus ...]   (default: all three)
# With --print-bin, prints one line per tool: NAME=/path/to/binary.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
HELM_VERSION=${HELM_VERSION:-v3.22.0}
# The Kubernetes minor its client-go is (v0.37 for helm v3.22): what `helm lint/template` assume the
# cluster runs unless told (--kube-version), as helm's own Makefile stamps it.
HELM_K8S_MINOR=${HELM_K8S_MINOR:-37}
# promtool from the same Prometheus as the lab's (hack/lab/build.sh): rules checked by the engine that runs them.
PROMETHEUS_VERSION=${PROMETHEUS_VERSION:-v0.316.0}
CACHE=${EDGETENANT_CACHE:-$HOME/.cache/edgetenant}
# The module proxy only: a module it lacks must fail, not fall back to a VCS host.
export GOTOOLCHAIN=local CGO_ENABLED=0 GOPROXY=https://proxy.golang.org GOFLAGS=

print=false
if [ "${1:-}" = "--print-bin" ]; then print=true; shift; fi
tools=("$@")
[ ${#tools[@]} -gt 0 ] || tools=(helm promtool kstatus)

say() { printf '\033[1m[tools build]\033[0m %s\n' "$*" >&2; }

kstatus_key() {
  local cli_utils
  cli_utils=$(awk '$1 == "sigs.k8s.io/cli-utils" {print $2}' "$here/kstatus/go.mod")
  printf '%s-' "$cli_utils"
  cat "$here/kstatus/go.mod" "$here/kstatus/go.sum" "$here/kstatus/main.go" | sha256sum | cut -c1-12; }

bin_dir() {
  case $1 in
    helm) echo "$CACHE/tools/helm-$HELM_VERSION-k8s1.$HELM_K8S_MINOR" ;;
    promtool) echo "$CACHE/tools/promtool-$PROMETHEUS_VERSION" ;;
    kstatus) echo "$CACHE/tools/kstatus-$(kstatus_key)" ;;
    *) echo "unknown tool: $1 (helm, promtool, kstatus)" >&2; exit 2 ;;
  esac
}

build() {
  local name=$1 dir
  dir=$(bin_dir "$name")
  [ -x "$dir/$name" ] && return 0
  local start
  start=$(date +%s)
  rm -rf "$dir.partial" && mkdir -p "$dir.partial"
  case $name in
    helm)
      say "go install helm $HELM_VERSION (a few minutes cold)"
      local ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" pkg
      for pkg in pkg/lint/rules pkg/chartutil; do
        ldflags+=" -X helm.sh/helm/v3/$pkg.k8sVersionMajor=1 -X helm.sh/helm/v3/$pkg.k8sVersionMinor=$HELM_K8S_MINOR"
      done
      GOBIN="$dir.partial" go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
      ;;
    promtool)
      say "go install promtool $PROMETHEUS_VERSION (a few minutes cold)"
      # No service discovery but Kubernetes', as the lab's Prometheus: the others pull in every cloud SDK.
      GOBIN="$dir.partial" go install -trimpath -ldflags "-s -w" -tags remove_all_sd,enable_kubernetes_sd \
        "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_VERSION"
      ;;
    kstatus)
      say "go build kstatus (sigs.k8s.io/cli-utils, hack/tools/kstatus)"
      (cd "$here/kstatus" && GOFLAGS=-mod=readonly go build -trimpath -ldflags "-s -w" -o "$dir.partial/kstatus" .)
      ;;
  esac
  mkdir -p "$dir" && mv -f "$dir.partial/$name" "$dir/" && rmdir "$dir.partial"
  say "$name done in $(( $(date +%s) - start )) s"
}

for t in "${tools[@]}"; do build "$t"; done
if $print; then for t in "${tools[@]}"; do echo "$t=$(bin_dir "$t")/$t"; done; fi
