#!/usr/bin/env bash
# Build the local edge lab's binaries (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, kubelet, etcd, kwok, Prometheus; for the real node containerd,
# its runc shim and ctr, the CNI plugins and a pause binary; the model stores, build-stores.sh) into cache directories
# outside the repo, keyed by version. Idempotent: a second run with the binaries present
# is instant.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
K8S_VERSION=${K8S_VERSION:-v1.36.3}
ETCD_VERSION=${ETCD_VERSION:-v3.6.8}   # the version k8s.io/kubernetes@$K8S_VERSION pins
KWOK_VERSION=${KWOK_VERSION:-v0.8.0}
# Prometheus built from its Go module: Debian's package leaves out kubernetes_sd_configs.
PROMETHEUS_VERSION=${PROMETHEUS_VERSION:-v0.316.0}
# The real node: containerd 2.3 speaks the CRI of Kubernetes 1.36 (k8s.io/cri-api v0.36.3) and
# reports its cgroup driver to the kubelet; the CNI plugins are the reference ones.
CONTAINERD_VERSION=${CONTAINERD_VERSION:-v2.3.7}
CNI_PLUGINS_VERSION=${CNI_PLUGINS_VERSION:-v1.10.0}
CACHE=${EDGETENANT_CACHE:-$HOME/.cache/edgetenant}
BIN=$CACHE/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION/bin
# The module proxy only: a module it lacks must fail, not fall back to a VCS host.
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=readonly GOPROXY=https://proxy.golang.org

PROM_BIN=$CACHE/prometheus-$PROMETHEUS_VERSION/bin
NODE_BIN=$CACHE/containerd-$CONTAINERD_VERSION-cni-$CNI_PLUGINS_VERSION/bin
NODE_WANT=(containerd containerd-shim-runc-v2 ctr bridge host-local loopback pause)
want=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet etcd kwok prometheus)
missing=()
for b in "${want[@]}"; do [ -x "$BIN/$b" ] || missing+=("$b"); done
node_missing=()
for b in "${NODE_WANT[@]}"; do [ -x "$NODE_BIN/$b" ] || node_missing+=("$b"); done
# bin/node links to the node's own versioned directory (a version bump re-points it).
if [ "$(readlink "$BIN/node" 2>/dev/null)" != "$NODE_BIN" ]; then
  if [ ${#node_missing[@]} -eq 0 ] && [ -d "$BIN" ]; then ln -sfn "$NODE_BIN" "$BIN/node"; else missing+=(node); fi
fi
# Each part has its own versioned cache; a Prometheus bump does not rebuild Kubernetes.
if [ -x "$PROM_BIN/prometheus" ] && [ ! -e "$BIN/prometheus" ] && [ -d "$BIN" ]; then
  ln -s "$PROM_BIN/prometheus" "$BIN/prometheus"
  missing=("${missing[@]/prometheus}")
  missing=(${missing[@]})
fi
# The model stores for oci:// and s3:// URIs: their own versioned caches (build-stores.sh).
"$here/build-stores.sh" >&2
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
    kube-apiserver|kube-controller-manager|kube-scheduler|kubectl|kubelet) targets+=("$pkg/cmd/$b") ;;
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
if [[ " ${missing[*]} " == *" node "* ]]; then
  if [ ${#node_missing[@]} -gt 0 ]; then
    mkdir -p "$NODE_BIN.partial"
    say "go install containerd $CONTAINERD_VERSION (daemon, runc shim, ctr)"
    # No btrfs/devmapper/zfs snapshotters (cgo, absent here); the node uses overlayfs.
    GOFLAGS= GOBIN="$NODE_BIN.partial" go install -trimpath -tags "no_btrfs no_devmapper no_zfs" \
      -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION" \
      "github.com/containerd/containerd/v2/cmd/containerd@$CONTAINERD_VERSION" \
      "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION" \
      "github.com/containerd/containerd/v2/cmd/ctr@$CONTAINERD_VERSION"
    say "go install CNI plugins $CNI_PLUGINS_VERSION (bridge, host-local, loopback)"
    cni=github.com/containernetworking/plugins/plugins
    GOFLAGS= GOBIN="$NODE_BIN.partial" go install -trimpath -ldflags "-s -w" \
      "$cni/main/bridge@$CNI_PLUGINS_VERSION" "$cni/ipam/host-local@$CNI_PLUGINS_VERSION" \
      "$cni/main/loopback@$CNI_PLUGINS_VERSION"
    say "go build pause (the pod sandbox's process)"
    (cd "$here/node" && GOFLAGS= go build -trimpath -ldflags "-s -w" -o "$NODE_BIN.partial/pause" pause.go)
    mkdir -p "$NODE_BIN"
    for f in "$NODE_BIN.partial"/*; do mv -f "$f" "$NODE_BIN/"; done
    rmdir "$NODE_BIN.partial"
  fi
  ln -sfn "$NODE_BIN" "$BIN.partial/node"
fi
mkdir -p "$BIN"
for f in "$BIN.partial"/*; do mv -fT "$f" "$BIN/${f##*/}"; done
rmdir "$BIN.partial"
say "done in $(( $(date +%s) - start )) s"
[ "${1:-}" = "--print-bin" ] && echo "$BIN"
exit 0
