#!/usr/bin/env bash
# HTTP benchmark of the decision service: `wrk` against `portcullis serve` on loopback, cached
# tokens (one analyst token, decided over and over), at fixed connection counts. Prints
# decisions/s and latency percentiles. Then a paced run at a fixed rate (BENCH_RATE, default
# 10,000/s: half the 20,000/s the service is sized for) by host/examples/paced_load.rs, which
# sends on a schedule and measures latency from each request's scheduled time (Debian's wrk
# cannot pace: it measures only a saturated server).
#
#   scripts/bench-http.sh                 30 s per run
#   BENCH_QUICK=1 scripts/bench-http.sh   5 s per run
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
duration=30s
[[ "${BENCH_QUICK:-0}" == 1 ]] && duration=5s
rate=${BENCH_RATE:-10000}

# The bench profile (optimised, no fat LTO): the same build the component benchmark uses.
cargo build -q --profile bench -p portcullis --locked --bin portcullis --example paced_load
bin=target/release/portcullis
B=policies/techfin
token=$($bin token --bundle $B --tenant acme --ttl 86400 \
  --claims '{"oid":"alice","roles":["FinanceAnalyst"],"department":"finance","amr":["mfa"]}')
port=${BENCH_PORT:-18080}
store=$(mktemp -d)
$bin serve --bundle $B --listen 127.0.0.1:$port --audit-log off --store "sqlite:$store/data.db" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true; rm -rf "$store"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
# The pack stores its reports: acme's back office stores the one decided on, in finance.
writer=$($bin token --bundle $B --tenant acme \
  --claims '{"sub":"b0ff1ce0-0000-4000-8000-000000000001","idtyp":"app","roles":["DataWriter"]}')
curl -sf -X PUT "http://127.0.0.1:$port/v1/data/acme/entities/Report/q3" -H "authorization: Bearer $writer" \
  -d '{"attrs": {"department": "finance"}, "parents": [{"type": "Department", "id": "acme/finance"}]}' >/dev/null

lua=$(mktemp)
cat > "$lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"token":"$token","action":"view","resource":{"type":"Report","id":"acme/q3"}}'
LUA
# Check the request really is an allow before measuring it.
curl -sf "http://127.0.0.1:$port/v1/decide" -d "$(sed -n 's/^wrk.body = .\(.*\).$/\1/p' "$lua")" | grep -q '"decision":"allow"'

for conns in 1 8 32 64; do
  threads=$(( conns < 2 ? 1 : 2 ))
  echo "==> wrk -t$threads -c$conns -d$duration --latency (cached token)"
  wrk -t$threads -c$conns -d$duration --latency -s "$lua" "http://127.0.0.1:$port/v1/decide" \
    | grep -E "Requests/sec|Latency|50%|90%|99%|Non-2xx|Socket errors"
done
body=$(mktemp)
sed -n 's/^wrk.body = .\(.*\).$/\1/p' "$lua" > "$body"
echo "==> paced: $rate decisions/s, 32 connections (cached token)"
target/release/examples/paced_load "127.0.0.1:$port" /v1/decide "$body" "$rate" "${duration%s}" 32
rm -f "$lua" "$body"
curl -s "http://127.0.0.1:$port/metrics" | grep -E 'portcullis_decisions_total|decision_seconds_count'
