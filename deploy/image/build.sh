#!/usr/bin/env bash
# Build the gangplace image with buildah (`make image`). No registry is needed:
#   BASE unset -> a Debian bookworm root file system with python3 made by mmdebstrap from Debian's
#                 packages (cached in $GANGPLACE_IMAGE_CACHE), imported as localhost/gangplace-base.
#   BASE=ref    -> any image with CPython 3.11 (e.g. docker.io/library/python:3.11-slim-bookworm).
# `build.sh scheduler` builds the gangplace-scheduler image instead (deploy/image/Dockerfile.scheduler):
# the static binary of `make kube` on an empty base, no base image needed.
# RUN steps use buildah's chroot isolation: it needs no OCI runtime, so it also works where
# containers cannot be started (setrlimit refused in a sandbox). Prints the image reference last.
set -euo pipefail
cd "$(dirname "$0")/../.."
IMAGE=${IMAGE:-localhost/gangplace:$(python3 -c 'import tomllib;print(tomllib.load(open("pyproject.toml","rb"))["project"]["version"])')}
CACHE=${GANGPLACE_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gangplace/image}
BASE_PKGS=python3,python3-venv,python3-dev,gcc,libc6-dev,ca-certificates,passwd
need() { command -v "$1" >/dev/null || { echo "make image: '$1' not found; install it: apt-get install -y $2" >&2; exit 2; }; }
need buildah buildah
if [ "${1:-}" = scheduler ]; then
  IMAGE=${SCHEDULER_IMAGE:-localhost/gangplace-scheduler:${IMAGE##*:}}
  bin=.kube/bin/kube
  [ -x "$bin" ] || { echo "make image-scheduler: $bin not found; run 'make kube' first (needs Go)" >&2; exit 2; }
  kube_version=$(sed -n 's/^KUBE_VERSION := //p' Makefile)
  ctx=$(mktemp -d); trap 'rm -rf "$ctx"' EXIT
  cp deploy/image/Dockerfile.scheduler "$ctx/Dockerfile"
  ln "$bin" "$ctx/kube" 2>/dev/null || cp "$bin" "$ctx/kube"
  buildah rmi --prune >/dev/null 2>&1 || true
  echo "make image-scheduler: building $IMAGE from $bin" >&2
  buildah bud --quiet --isolation chroot --layers \
    --build-arg VERSION="${IMAGE##*:}" --build-arg KUBE_VERSION="$kube_version" \
    --build-arg REVISION="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    -t "$IMAGE" "$ctx" >&2
  echo "$IMAGE"
  exit 0
fi
if [ -z "${BASE:-}" ]; then
  need mmdebstrap mmdebstrap
  mkdir -p "$CACHE"
  tar="$CACHE/bookworm-python3.tar"
  if [ ! -s "$tar" ] || [ "$(cat "$tar.pkgs" 2>/dev/null)" != "$BASE_PKGS" ]; then
    echo "make image: building a Debian bookworm base with $BASE_PKGS (mmdebstrap, ~1-2 min)" >&2
    mmdebstrap --quiet --variant=minbase --include="$BASE_PKGS" --format=tar bookworm "$tar.tmp"
    mv "$tar.tmp" "$tar"; echo "$BASE_PKGS" > "$tar.pkgs"
  fi
  BASE=localhost/gangplace-base:bookworm
  digest=$(sha256sum "$tar" | cut -c1-16)
  if [ "$(buildah inspect --type image --format '{{index .ImageAnnotations "gangplace.base.tar"}}' "$BASE" 2>/dev/null)" != "$digest" ]; then
    ctr=$(buildah from scratch)
    buildah add --quiet "$ctr" "$tar" / >/dev/null
    buildah config --annotation "gangplace.base.tar=$digest" "$ctr"
    buildah commit --quiet --rm "$ctr" "$BASE" >/dev/null
  fi
fi
secret=()
cert=${PIP_CERT:-${SSL_CERT_FILE:-}}
[ -n "$cert" ] && [ -s "$cert" ] && secret=(--secret "id=pip_cert,src=$cert")  # a proxy's CA, for pip
buildah rmi --prune >/dev/null 2>&1 || true  # untagged images of earlier builds (~1.4 GB each)
echo "make image: building $IMAGE on $BASE" >&2
buildah bud "${secret[@]}" --quiet --isolation chroot --network host --layers \
  --build-arg BASE="$BASE" \
  --build-arg VERSION="${IMAGE##*:}" \
  --build-arg REVISION="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
  -t "$IMAGE" . >&2
echo "$IMAGE"
