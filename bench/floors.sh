#!/usr/bin/env bash
# Builds one of the floors of ../shared/bench-floors (issue 23: the same durable work done by
# the simplest fast program) in a copy outside the project, and prints the binary's path.
# Usage: bench/floors.sh ingest-floor|webhook-floor
#   FLOORS_DIR (default ../shared/bench-floors, beside this checkout); FLOORS_BUILD (default
#   /tmp/inflow-bench-floors). Prints nothing and exits 0 when the floors are not there.
set -euo pipefail
cd "$(dirname "$0")/.."
name=$1
src=${FLOORS_DIR:-../shared/bench-floors}/$name
[ -f "$src/main.rs" ] || { echo "floors: $src not found; no floor figure" >&2; exit 0; }
build=${FLOORS_BUILD:-/tmp/inflow-bench-floors}/$name
mkdir -p "$build"
cp "$src/Cargo.toml" "$src/Cargo.lock" "$src/main.rs" "$build/"
(cd "$build" && cargo build --release --locked --quiet) >&2
echo "$build/target/release/$name"
