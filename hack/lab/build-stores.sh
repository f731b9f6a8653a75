#!/usr/bin/env bash
# Build the lab's model stores for oci:// and s3:// URIs from their Go modules, each into its own
# cache directory keyed by version (EDGETENANT_CACHE moves it; a version bump rebuilds only that
# one): the CNCF registry (distribution), the oras CLI that pushes artifacts into it as a user
# would, the Versity S3 gateway, and the lab's htpasswd helper (bcrypt; stores/main.go).
# Idempotent: with the binaries present it is instant. Called by build.sh.
#
#   build-stores.sh [--print]   --print: one NAME=DIR line per component (DIR holds its binary)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
REGISTRY_VERSION=${REGISTRY_VERSION:-v3.1.2}
ORAS_VERSION=${ORAS_VERSION:-v1.3.6}
VERSITYGW_VERSION=${VERSITYGW_VERSION:-v1.8.0}
CACHE=${EDGETENANT_CACHE:-$HOME/.cache/edgetenant}
# The module proxy only: a module it lacks must fail, not fall back to a VCS host.
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS= GOPROXY=https://proxy.golang.org

say() { printf '\033[1m[lab build]\033[0m %s\n' "$*" >&2; }
crypto=$(sed -n 's/^require golang.org\/x\/crypto \(v[^ ]*\)$/\1/p' "$here/stores/go.mod")
# name version binary package@version (the helper: the module in stores/, keyed by its dependency)
components=(
  "registry $REGISTRY_VERSION registry github.com/distribution/distribution/v3/cmd/registry@$REGISTRY_VERSION"
  "oras $ORAS_VERSION oras oras.land/oras/cmd/oras@$ORAS_VERSION"
  "versitygw $VERSITYGW_VERSION versitygw github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"
  "lab-htpasswd x-crypto-$crypto htpasswd ./"
)
for spec in "${components[@]}"; do
  read -r name version binary package <<<"$spec"
  dir=$CACHE/$name-$version/bin
  if [ ! -x "$dir/$binary" ]; then
    start=$(date +%s)
    say "go install $name $version"
    mkdir -p "$dir.partial"
    if [ "$package" = ./ ]; then
      (cd "$here/stores" && go build -trimpath -ldflags "-s -w" -o "$dir.partial/$binary" .)
    else
      GOBIN="$dir.partial" go install -trimpath -ldflags "-s -w" "$package"
    fi
    mkdir -p "$dir" && mv -f "$dir.partial/$binary" "$dir/" && rmdir "$dir.partial"
    say "$name built in $(( $(date +%s) - start )) s"
  fi
  [ "${1:-}" = "--print" ] && echo "$name=$dir"
done
exit 0
