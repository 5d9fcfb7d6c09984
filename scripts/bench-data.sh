#!/usr/bin/env bash
# Writes to the stored data, through the real binary (host/benches/data.rs): write throughput of
# the service's write API and of the store against the store's own commit and the database's own
# durable insert, and the write → enforced delay on one replica and on two replicas sharing one
# PostgreSQL. Prints the results as JSON (also in target/data-writes.json).
#
#   scripts/bench-data.sh                 full run: builds `portcullis` (bench profile),
#                                         starts a throwaway PostgreSQL (scripts/postgres.sh),
#                                         runs the benchmark, stops the cluster
#   BENCH_QUICK=1 scripts/bench-data.sh   a short run
#   BENCH_POSTGRES=0 scripts/bench-data.sh
#                                         SQLite only
#   PG_DURABLE=0 scripts/bench-data.sh   PostgreSQL with fsync off, as the tests run it (by
#                                         default here it keeps its durable defaults)
#
# On a shared machine: `nice -n -15 scripts/bench-data.sh` (the service, its client and the
# database all run; pinning them to one core would measure contention instead).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

# The bench profile (optimised, no fat LTO): the build the other service benchmarks use.
cargo build -q --profile bench -p portcullis --locked --bin portcullis
export PORTCULLIS_BIN=$PWD/target/release/portcullis

pg_dir=""
cleanup() { [[ -n "$pg_dir" ]] && scripts/postgres.sh stop "$pg_dir" >/dev/null 2>&1 || true; }
trap cleanup EXIT
if [[ "${BENCH_POSTGRES:-1}" != 0 ]]; then
  pg_dir=$(mktemp -d /tmp/portcullis-bench-pg.XXXXXX)
  url=$(PG_DURABLE=${PG_DURABLE:-1} scripts/postgres.sh start "$pg_dir" | tail -1)
  export PORTCULLIS_BENCH_POSTGRES=$url
fi
cargo bench -p portcullis --bench data --locked
