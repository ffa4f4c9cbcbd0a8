#!/usr/bin/env bash
# Dependency hygiene: cargo-deny against deny.toml — licences, bans, sources, and known advisories (RustSec).
#
# cargo-deny is installed from crates.io when this machine lacks it (once, about 2.5 minutes on 2 cores).
# Advisories need the RustSec database, a git repository that cargo-deny keeps under
# $CARGO_HOME/advisory-dbs/. Where the network reaches GitHub it is fetched as usual; where it does not,
# a copy already at that place is used as it is (its date is printed); with neither, the advisories
# check is reported as SKIPPED and everything else still runs. To give an offline machine a copy:
#   git clone <a copy of github.com/RustSec/advisory-db> "$CARGO_HOME/advisory-dbs/advisory-db-3157b0e258782691"
set -euo pipefail
cd "$(dirname "$0")/.."

DENY_VERSION=0.20.2
CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}"
# The folder cargo-deny derives from the default database URL https://github.com/RustSec/advisory-db.
ADVISORY_DB="$CARGO_HOME/advisory-dbs/advisory-db-3157b0e258782691"

if ! cargo deny --version >/dev/null 2>&1; then
  echo "deny: cargo-deny is not installed; installing cargo-deny $DENY_VERSION from crates.io"
  cargo install --locked --quiet cargo-deny --version "$DENY_VERSION"
fi

cargo deny --log-level error check licenses bans sources
echo "deny: licences, bans and sources ok"

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if cargo deny --log-level error check advisories >"$log" 2>&1; then
  echo "deny: advisories ok (RustSec database fetched, $(git -C "$ADVISORY_DB" log -1 --format=%cs 2>/dev/null || echo 'date unknown'))"
elif grep -q "failed to fetch advisory database" "$log"; then
  if [ -d "$ADVISORY_DB/crates" ]; then
    echo "deny: cannot fetch the RustSec database; using the copy at $ADVISORY_DB ($(git -C "$ADVISORY_DB" log -1 --format='last change %cs' 2>/dev/null || echo 'date unknown'))"
    cargo deny --log-level error --offline check advisories
    echo "deny: advisories ok against that copy"
  else
    echo "deny: SKIPPED advisories — the RustSec database cannot be fetched here and there is no copy at $ADVISORY_DB (see scripts/deny.sh)"
  fi
else
  cat "$log" >&2
  exit 1
fi
