#!/usr/bin/env bash
# Builds the three container images from what this machine has, with no
# registry: faultline-node and faultline-chaos FROM scratch with the static
# binaries of `make images`, and faultline-prometheus from Debian's
# prometheus package (its binary needs only the C library and the loader).
#
#   scripts/images.sh TAG STATIC_BIN_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:?usage: scripts/images.sh TAG STATIC_BIN_DIR}
bin=${2:?usage: scripts/images.sh TAG STATIC_BIN_DIR}
stage=target/images

build() { # name context
  # The legacy builder's deprecation notice is noise; a failure is shown.
  local out
  if ! out=$(docker build -q --label faultline.image="$1" --label "org.opencontainers.image.version=$tag" \
    -t "faultline-$1:$tag" -f "compose/$1.Dockerfile" "$2" 2>&1); then
    echo "$out" >&2
    exit 1
  fi
  printf '%-22s %s\n' "faultline-$1:$tag" \
    "$(docker image inspect --format '{{.Size}}' "faultline-$1:$tag" | awk '{printf "%.1f MB", $1/1e6}')"
}

for what in node chaos; do
  mkdir -p "$stage/$what"
  cp "$bin/faultline-$what" "$stage/$what/faultline-$what"
done
# The controller's scheduled runs start nodes inside its container.
cp "$bin/faultline-node" "$stage/chaos/faultline-node"
for what in node chaos; do build "$what" "$stage/$what"; done

prom=$(command -v prometheus || true)
if [ -z "$prom" ]; then
  echo "prometheus is not installed: apt-get install prometheus (Debian's package), then make images" >&2
  exit 1
fi
root="$stage/prometheus/rootfs"
rm -rf "$root"
mkdir -p "$root/usr/bin" "$root/tmp"
cp "$(readlink -f "$prom")" "$root/usr/bin/prometheus"
# Every library the binary links, at the path the loader looks for it.
ldd "$prom" | awk '/=>/ {print $3} /^[ \t]*\/.*ld-linux/ {print $1}' | while read -r lib; do
  [ -e "$lib" ] || continue
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
build prometheus "$stage/prometheus"
# The images a rebuild replaced (untagged, ours only).
docker image prune -f --filter label=faultline.image >/dev/null
