#!/usr/bin/env bash
# Build the local edge lab's binaries (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, etcd, kwok) into a cache directory outside the repo,
# keyed by version. Idempotent: a second run with the binaries present is instant.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
K8S_VERSION=${K8S_VERSION:-v1.36.3}
ETCD_VERSION=${ETCD_VERSION:-v3.6.8}   # the version k8s.io/kubernetes@$K8S_VERSION pins
KWOK_VERSION=${KWOK_VERSION:-v0.8.0}
# Prometheus built from its Go module: Debian's package leaves out kubernetes_sd_configs.
PROMETHEUS_VERSION=${PROMETHEUS_VERSION:-v0.316.0}
CACHE=${EDGETENANT_CACHE:-$HOME/.cache/edgetenant}
BIN=$CACHE/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION/bin
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=readonly

PROM_BIN=$CACHE/prometheus-$PROMETHEUS_VERSION/bin
want=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok prometheus)
missing=()
for b in "${want[@]}"; do [ -x "$BIN/$b" ] || missing+=("$b"); done
# Each part has its own versioned cache; a Prometheus bump does not rebuild Kubernetes.
if [ -x "$PROM_BIN/prometheus" ] && [ ! -e "$BIN/prometheus" ] && [ -d "$BIN" ]; then
  ln -s "$PROM_BIN/prometheus" "$BIN/prometheus"
  missing=("${missing[@]/prometheus}")
  missing=(${missing[@]})
fi
if [ ${#missing[@]} -eq 0 ]; then
  [ "${1:-}" = "--print-bin" ] && echo "$BIN"
  exit 0
fi

say() { printf '\033[1m[lab build]\033[0m %s\n' "$*" >&2; }
mkdir -p "$BIN.partial"
start=$(date +%s)
say "building ${missing[*]} into $BIN"
say "a cold build takes about 25 minutes on 2 cores (later runs are instant)"

minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
pkg=k8s.io/kubernetes
ldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
  ldflags+=" -X $p.gitCommit=0000000000000000000000000000000000000000 -X $p.gitTreeState=clean"
  ldflags+=" -X $p.buildDate=2026-01-01T00:00:00Z"
done

cd "$here/k8s"
targets=()
for b in "${missing[@]}"; do
  case $b in
    kube-apiserver|kube-controller-manager|kube-scheduler|kubectl) targets+=("$pkg/cmd/$b") ;;
  esac
done
if [ ${#targets[@]} -gt 0 ]; then
  say "go build ${targets[*]}"
  go build -trimpath -ldflags "$ldflags" -o "$BIN.partial/" "${targets[@]}"
fi
if [[ " ${missing[*]} " == *" etcd "* ]]; then
  say "go build etcd $ETCD_VERSION"
  go build -trimpath -ldflags "-s -w" -o "$BIN.partial/etcd" go.etcd.io/etcd/server/v3
fi
if [[ " ${missing[*]} " == *" prometheus "* ]]; then
  if [ ! -x "$PROM_BIN/prometheus" ]; then
    say "go install prometheus $PROMETHEUS_VERSION (a few minutes cold)"
    mkdir -p "$PROM_BIN.partial"
    # Only the Kubernetes service discovery: the other providers pull in every cloud SDK.
    GOFLAGS= GOBIN="$PROM_BIN.partial" go install -trimpath -ldflags "-s -w" -tags remove_all_sd,enable_kubernetes_sd \
      "github.com/prometheus/prometheus/cmd/prometheus@$PROMETHEUS_VERSION"
    mkdir -p "$PROM_BIN" && mv "$PROM_BIN.partial/prometheus" "$PROM_BIN/" && rmdir "$PROM_BIN.partial"
  fi
  ln -sf "$PROM_BIN/prometheus" "$BIN.partial/prometheus"
fi
if [[ " ${missing[*]} " == *" kwok "* ]]; then
  say "go install kwok $KWOK_VERSION"
  GOFLAGS= GOBIN="$BIN.partial" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
fi
mkdir -p "$BIN"
for f in "$BIN.partial"/*; do mv -f "$f" "$BIN/"; done
rmdir "$BIN.partial"
say "done in $(( $(date +%s) - start )) s"
[ "${1:-}" = "--print-bin" ] && echo "$BIN"
exit 0
