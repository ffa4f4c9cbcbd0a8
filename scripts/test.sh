#!/usr/bin/env bash
# The whole test suite: formatting, lints, card definitions, dependency audit, every test
# (cargo-nextest, then the doctests, which nextest does not run), then the container image's build
# (scripts/image-check.sh, no Docker daemon needed).
#
# A test that needs an outside program carries `needs_<name>` in its name (e.g.
# `needs_postgres::scale_out::…`, `store::inventory_round_trip::needs_postgres`). Each such
# program is a line of REQUIREMENTS below. A requirement that is missing has its tests left out
# with a nextest filter, so nextest's summary counts them as skipped (never as passed), a line
# says what is missing, and with CI=true the run fails. Inside the tests nothing is skipped: run
# without this script and without the program, such a test fails saying what it needs.
#
# Environment: KANDJI_CONNECTOR_TEST_POSTGRES_URL (default: the local PostgreSQL below);
# KANDJI_CONNECTOR_TEST_WITHOUT="postgres chromium" treats those requirements as missing without
# probing (to see the skipped path); CI=true makes a missing requirement fail the run (and runs
# the install command of an installable one first).
set -euo pipefail
cd "$(dirname "$0")/.."

export KANDJI_CONNECTOR_TEST_POSTGRES_URL="${KANDJI_CONNECTOR_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"

# --- Probes: each succeeds when its program answers. ----------------------------------------
probe_postgres() {
    local url="$KANDJI_CONNECTOR_TEST_POSTGRES_URL"
    if command -v pg_isready >/dev/null; then
        pg_isready -q -t 3 -d "$url"
    else
        # No client tools: a TCP connection to the URL's host and port.
        local rest="${url#*://}"; rest="${rest#*@}"; rest="${rest%%/*}"
        local host="${rest%%:*}" port="5432"
        [[ "$rest" == *:* ]] && port="${rest##*:}"
        timeout 3 bash -c "</dev/tcp/$host/$port" 2>/dev/null
    fi
}

# The official Python MCP SDK, pinned, in a virtual environment of its own (created once and kept
# in the user's cache; PyPI through pip): tests/it/mcp.rs runs tests/mcp_client.py with it, the
# interpreter given in KANDJI_CONNECTOR_TEST_PYTHON_MCP. Fails when python3 (with venv) or the
# package cannot be had.
PYTHON_MCP_VERSION=2.3.0
probe_python_mcp() {
    local venv="${XDG_CACHE_HOME:-$HOME/.cache}/kandji-connector/python-mcp-$PYTHON_MCP_VERSION"
    local check="import importlib.metadata as m, sys; sys.exit(m.version('mcp') != '$PYTHON_MCP_VERSION')"
    if ! "$venv/bin/python" -c "$check" 2>/dev/null; then
        command -v python3 >/dev/null || return 1
        rm -rf "$venv"
        echo "requirement python_mcp: creating $venv with mcp==$PYTHON_MCP_VERSION from PyPI"
        if ! { python3 -m venv "$venv" && "$venv/bin/pip" install --quiet --disable-pip-version-check "mcp==$PYTHON_MCP_VERSION"; } >/dev/null 2>&1; then
            rm -rf "$venv"
            return 1
        fi
    fi
    export KANDJI_CONNECTOR_TEST_PYTHON_MCP="$venv/bin/python"
}

probe_chromium() {
    # The console's browser tests drive Debian's chromium through its chromedriver.
    [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]]
}

probe_prometheus() {
    # tests/it/metrics.rs starts Debian's prometheus (a real server scraping the connector).
    command -v prometheus >/dev/null
}

# --- Requirements, one a line: name | probe | nextest filter of the tests that need it |
# --- how to install it (run when CI=true; empty: not installed by this script).
REQUIREMENTS=(
    "postgres|probe_postgres|test(needs_postgres)|"
    "python_mcp|probe_python_mcp|test(needs_python_mcp)|apt-get install -y python3 python3-venv python3-pip"
    "chromium|probe_chromium|test(needs_chromium)|apt-get update -qq && apt-get install -y chromium chromium-driver"
    "prometheus|probe_prometheus|test(needs_prometheus)|apt-get update -qq && apt-get install -y prometheus"
)

cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo run --locked --quiet -- cards check
bash scripts/deny.sh

if ! cargo nextest --version >/dev/null 2>&1; then
    echo "installing cargo-nextest"
    cargo install --locked cargo-nextest
fi

missing=()
filter=""
for line in "${REQUIREMENTS[@]}"; do
    IFS='|' read -r name probe expr install <<<"$line"
    available=false
    if [[ " ${KANDJI_CONNECTOR_TEST_WITHOUT:-} " != *" $name "* ]]; then
        if "$probe"; then
            available=true
        elif [[ "${CI:-}" == "true" && -n "$install" ]]; then
            echo "requirement $name: not found, installing: $install"
            bash -c "$install" && "$probe" && available=true
        fi
    fi
    if [[ "$available" != true ]]; then
        missing+=("$name")
        filter="${filter:+$filter and }not ($expr)"
        echo "MISSING requirement: $name: the tests matching '$expr' are skipped${install:+ (install: $install)}"
    fi
done

cargo nextest run --locked ${filter:+-E "$filter"}
cargo test --locked --doc
bash scripts/image-check.sh

if ((${#missing[@]})); then
    echo "MISSING requirements: ${missing[*]}: their tests were skipped, not run (see the summary above)"
    if [[ "${CI:-}" == "true" ]]; then
        echo "CI=true: a run that skips tests for want of a requirement fails"
        exit 1
    fi
fi
