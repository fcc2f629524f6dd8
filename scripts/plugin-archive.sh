#!/usr/bin/env bash
# Builds the kubectl-steal plugin archive (linux/amd64, the `dist` profile) that
# plugins/steal.yaml describes, and writes its sha256 into the manifest:
#   dist/kubectl-steal-v<version>-linux-amd64.tar.gz  (kubectl-steal, README.md)
# Then: kubectl krew install --manifest=plugins/steal.yaml --archive=<that archive>
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
manifest_version=$(sed -n 's/^  version: "v\(.*\)"/\1/p' plugins/steal.yaml)
[ "$version" = "$manifest_version" ] ||
  { echo "plugin-archive: Cargo.toml says $version, plugins/steal.yaml says $manifest_version" >&2; exit 1; }
echo "plugin-archive: cargo build --profile dist -p kubectl-steal" >&2
cargo build --profile dist -q -p kubectl-steal
target=${CARGO_TARGET_DIR:-target}
stage=$(mktemp -d); trap 'rm -rf "$stage"' EXIT
install -m 0755 "$target/dist/kubectl-steal" "$stage/kubectl-steal"
install -m 0644 README.md "$stage/README.md"
mkdir -p dist
archive=dist/kubectl-steal-v$version-linux-amd64.tar.gz
# Reproducible for a given binary: sorted names, fixed times and owners, no gzip timestamp.
tar -C "$stage" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf - kubectl-steal README.md |
  gzip -n -9 > "$archive"
sum=$(sha256sum "$archive" | cut -d' ' -f1)
sed -i "s/^    sha256: \".*\"/    sha256: \"$sum\"/" plugins/steal.yaml
echo "plugin-archive: $archive sha256 $sum (written to plugins/steal.yaml)" >&2
echo "$archive"
