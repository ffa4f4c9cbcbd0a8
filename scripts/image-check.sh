#!/usr/bin/env bash
# The container image's build, proved without a Docker daemon (none runs on CI machines): rebuilds the
# Dockerfile's build stages from exactly the context `docker build .` would send (.dockerignore applied by
# docker-py's own matcher), then starts the result with the runtime stage's ENV, ENTRYPOINT and CMD and asks
# its HEALTHCHECK. See scripts/image_check.py. Installs what it needs when missing: cargo-chef (the version
# the Dockerfile pins, from crates.io) and docker-py (PyPI, in a throwaway virtual environment).
set -euo pipefail
cd "$(dirname "$0")/.."

CHEF_VERSION="$(sed -n 's/.*cargo install --locked cargo-chef --version \([0-9.]*\).*/\1/p' Dockerfile | head -n1)"
if [ -n "$CHEF_VERSION" ] && ! cargo chef --version 2>/dev/null | grep -q "$CHEF_VERSION"; then
  echo "image-check: installing cargo-chef $CHEF_VERSION from crates.io (once per machine)"
  cargo install --locked --quiet cargo-chef --version "$CHEF_VERSION"
fi

venv="$(mktemp -d)"
trap 'rm -rf "$venv"' EXIT
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check 'docker==7.1.0'

# The dependencies the tests already compiled are reused: same target folder, dev profile.
target="${CARGO_TARGET_DIR:-target}"
exec "$venv/bin/python" scripts/image_check.py --repo . --target-dir "$target" --profile "${IMAGE_CHECK_PROFILE:-dev}"
