#!/usr/bin/env bash
# Runs the decision-cost benchmarks (engine/benches/decide.rs, and engine/benches/data.rs:
# decisions with stored data) and writes BENCHMARKS.md: the medians and each benchmark's ratio
# to a floor measured in the same run.
#
#   scripts/bench.sh                     full run, writes BENCHMARKS.md
#   BENCH_QUICK=1 scripts/bench.sh       smoke run (a few minutes plus the build; the stored
#                                        data at 1,000 tenants x 100 entities), writes
#                                        target/BENCHMARKS.quick.md instead
#   BENCH_BREAKDOWN=1 scripts/bench.sh   also times the steps of a cached decision
#   BENCH_DATA_SCALES=10000x100,1000x1000 scripts/bench.sh
#                                        the stored data sets (<tenants>x<entities per tenant>;
#                                        default 10000x1000, which needs ~55 GiB: the benchmark
#                                        stops at once when a set will not fit in memory)
#   BENCH_DATA=0 scripts/bench.sh        without the stored-data benchmark
#   BENCH_OUT=file scripts/bench.sh      write the report elsewhere
#
# On a shared machine, pin and prioritise it: `taskset -c 1 nice -n -15 scripts/bench.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

cmd=(cargo bench -p portcullis-engine --features mint --bench decide --locked --)
data_cmd=(cargo bench -p portcullis-engine --features mint --bench data --locked --)
if [[ "${BENCH_QUICK:-0}" == 1 ]]; then
  cmd+=(--warm-up-time 1 --measurement-time 2)
  data_cmd+=(--warm-up-time 1 --measurement-time 2)
  out=${BENCH_OUT:-target/BENCHMARKS.quick.md}
else
  out=${BENCH_OUT:-BENCHMARKS.md}
fi
if [[ -n "${CRITERION_HOME:-}" ]]; then
  results=$CRITERION_HOME
else
  results=${CARGO_TARGET_DIR:-target}/criterion
fi

command_line="${cmd[*]}"
[[ "${BENCH_BREAKDOWN:-0}" == 1 ]] && command_line="BENCH_BREAKDOWN=1 $command_line"
started=$(date +%s)
echo "==> $command_line"
"${cmd[@]}"
data_line=""
if [[ "${BENCH_DATA:-1}" != 0 ]]; then
  data_line="${data_cmd[*]}"
  [[ -n "${BENCH_DATA_SCALES:-}" ]] && data_line="BENCH_DATA_SCALES=$BENCH_DATA_SCALES $data_line"
  echo "==> $data_line"
  "${data_cmd[@]}"
fi

mkdir -p "$(dirname "$out")"
BENCH_COMMAND="$command_line" BENCH_DATA_COMMAND="$data_line" BENCH_STARTED="$started" BENCH_RESULTS="$results" BENCH_REPORT="$out" \
  BENCH_BREAKDOWN="${BENCH_BREAKDOWN:-0}" BENCH_QUICK="${BENCH_QUICK:-0}" python3 - <<'PY'
import datetime, json, os, platform, subprocess, sys

results = os.environ["BENCH_RESULTS"]
started = int(os.environ["BENCH_STARTED"])
quick = os.environ["BENCH_QUICK"] == "1"


def median(bench):
    """Median time in ns of `group/function`, if criterion measured it in this run."""
    path = os.path.join(results, bench, "new", "estimates.json")
    if not os.path.exists(path) or os.path.getmtime(path) < started:
        return None
    with open(path) as f:
        return json.load(f)["median"]["point_estimate"]


def fresh_json(name):
    """A JSON file the benchmarks wrote next to criterion's results, if written in this run."""
    path = os.path.join(results, name)
    if not os.path.exists(path) or os.path.getmtime(path) < started:
        return None
    with open(path) as f:
        return json.load(f)


def paired(group, file="paired-ratios.json"):
    """The paired ratio of a group (engine/benches/common `Paired`), if measured in this run."""
    return (fresh_json(file) or {}).get(group)


# The stored-data benchmark (engine/benches/data.rs): one set of rows per large data set.
data_run = bool(os.environ.get("BENCH_DATA_COMMAND"))
data_builds = (fresh_json("data-build.json") or []) if data_run else []
data_ratios, data_medians = [], []
for build in data_builds:
    name = f"{build['tenants']}x{build['entities_per_tenant']}"
    shown = f"{build['tenants']:,} tenants × {build['entities_per_tenant']:,} entities"
    large, floor, small, memo = (f"stored_data/{row}_{name}" for row in ("large", "cedar_floor", "small", "remembered"))
    data_ratios += [
        (f"stored data ({shown}) vs raw Cedar on the same prebuilt entities", large, floor, 1.5, f"stored_data_{name}"),
        (f"stored data ({shown}) vs 10 tenants × 10 entities", large, small, 1.3, f"stored_data_scaling_{name}"),
        (f"stored data ({shown}), the same request again from the token's memo, vs raw Cedar (information)",
         memo, floor, None, f"stored_data_remembered_{name}"),
    ]
    data_medians += [
        (large, f"`Engine::decide`, cached token, Cedar evaluated, joining stored data; {shown} loaded"),
        (small, "the same decision with 10 tenants × 10 entities loaded"),
        (floor, "floor: `Authorizer::is_authorized` on the same requests, policies and entities, prebuilt"),
        (memo, f"the same request again, from the token's memo; {shown} loaded"),
    ]


def fmt(ns):
    if ns is None:
        return "not run"
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}" if ns / scale < 100 else f"{ns / scale:.0f} {unit}"
    return f"{ns:.0f} ns"


# (what, measured, floor, target ratio)
ratios = [
    ("cached-token decision vs raw Cedar `is_authorized`", "cached_decision/engine", "cached_decision/cedar_floor", 1.5),
    ("fresh RS256 token vs verify + cached decision", "fresh_token_rs256/engine", "fresh_token_rs256/floor", 1.2),
    ("fresh ES256 token vs verify + cached decision", "fresh_token_es256/engine", "fresh_token_es256/floor", 1.2),
    ("fresh EdDSA token vs verify + cached decision", "fresh_token_eddsa/engine", "fresh_token_eddsa/floor", 1.2),
    ("10,000 tenants vs 10 tenants (cached decision)", "tenant_scaling/10000", "tenant_scaling/10", 1.3),
    # No target: the same comparison against the policies that apply only (the engine slices).
    ("cached-token decision vs raw Cedar on the applicable policies only (information)",
     "cached_decision/engine", "cached_decision/cedar_floor_sliced", None),
    ("the same request again, from the token's memo, vs raw Cedar (information)",
     "cached_decision/remembered", "cached_decision/cedar_floor", None),
]
medians = [
    ("cached_decision/engine", "`Engine::decide`, token already verified and cached, Cedar evaluated (acme analyst views 64 reports in turn)"),
    ("cached_decision/remembered", "`Engine::decide`, the same request again: the token's memo answers"),
    ("cached_decision/cedar_floor", "floor: `Authorizer::is_authorized`, prebuilt request, policies, entities"),
    ("cached_decision/cedar_floor_sliced", "the same floor with only the policies whose scope matches (User, view, Report)"),
    ("fresh_token_rs256/engine", "`Engine::decide` on a token the engine has not seen, RS256"),
    ("fresh_token_rs256/floor", "floor: `RustCryptoVerifier::verify` + cached decision (Cedar evaluated), RS256"),
    ("fresh_token_rs256/verify", "`RustCryptoVerifier::verify` alone, RS256"),
    ("fresh_token_es256/engine", "`Engine::decide` on a token the engine has not seen, ES256"),
    ("fresh_token_es256/floor", "floor: `RustCryptoVerifier::verify` + cached decision (Cedar evaluated), ES256"),
    ("fresh_token_es256/verify", "`RustCryptoVerifier::verify` alone, ES256"),
    ("fresh_token_eddsa/engine", "`Engine::decide` on a token the engine has not seen, EdDSA"),
    ("fresh_token_eddsa/floor", "floor: `RustCryptoVerifier::verify` + cached decision (Cedar evaluated), EdDSA"),
    ("fresh_token_eddsa/verify", "`RustCryptoVerifier::verify` alone, EdDSA"),
    ("tenant_scaling/10", "cached decision (Cedar evaluated), bundle with 10 tenants"),
    ("tenant_scaling/1000", "cached decision (Cedar evaluated), bundle with 1,000 tenants"),
    ("tenant_scaling/10000", "cached decision (Cedar evaluated), bundle with 10,000 tenants"),
]
breakdown = [
    ("cached_breakdown/engine_decide", "`Engine::decide`, cached token, the same request again (as `cached_decision/remembered`)"),
    ("cached_breakdown/engine_authenticate", "`Engine::authenticate`, cached token (two cache look-ups, principal clone)"),
    ("cached_breakdown/engine_decide_no_token", "`Engine::decide` without a token (building the decision value only)"),
    ("cached_breakdown/token_hash_lookup", "one `HashMap<Box<str>, _>` look-up of the token"),
    ("cached_breakdown/parse_type_names", "`EntityTypeName::from_str` of `Action` and `Report`"),
    ("cached_breakdown/build_entities", "clone the principal entity, build the resource entity"),
    ("cached_breakdown/entities_with_schema", "`Entities::from_entities` with the schema (+ build entities)"),
    ("cached_breakdown/entities_without_schema", "`Entities::from_entities` without a schema (+ build entities)"),
    ("cached_breakdown/prebuilt_entities_add_resource", "a prebuilt store (principal + actions) cloned, resource added with the schema"),
    ("cached_breakdown/request_with_schema", "`Context::from_pairs` + `Request::new` with the schema"),
    ("cached_breakdown/request_without_schema", "`Context::from_pairs` + `Request::new` without a schema"),
    ("cached_breakdown/is_authorized", "`Authorizer::is_authorized` (the floor)"),
] + [
    (f"fresh_token_{alg}/{step}", what + f", {alg.upper() if alg != 'eddsa' else 'EdDSA'}")
    for alg in ("rs256", "es256", "eddsa")
    for step, what in (
        ("begin_token", "`Engine::begin_token` on an unseen token: every check before the signature"),
        ("finish_token", "`Engine::finish_token`: claim mapping, principal entity, fingerprint, cache insert"),
    )
]

missing = [b for b, _ in medians if median(b) is None]
def paired_name(measured, floor):
    """The paired ratio's name: the group, `_sliced` for the sliced floor, `_remembered` for the
    memo's answers (as in decide.rs)."""
    group = measured.split("/")[0]
    if measured.endswith("/remembered"):
        return group + "_remembered"
    return group + ("_sliced" if floor.endswith("_sliced") else "")


missing += [f"paired {paired_name(m, f)}" for _, m, f, _ in ratios if paired(paired_name(m, f)) is None]
if data_run and not data_builds:
    missing.append("stored data (data-build.json)")
missing += [b for b, _ in data_medians if median(b) is None]
missing += [f"paired {p}" for *_, p in data_ratios if paired(p, "paired-ratios-data.json") is None]
if missing:
    sys.exit(f"bench.sh: no results from this run for: {', '.join(missing)} (looked in {results})")


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def rustc_version():
    try:
        return subprocess.run(["rustc", "--version"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


lines = [
    "# Benchmarks",
    "",
    "Decision cost of `portcullis-engine` (`engine/benches/decide.rs` and `engine/benches/data.rs`, criterion),",
    "each compared with a floor measured in the same run. Generated by `scripts/bench.sh`; do not edit by hand.",
    "",
    "**Absolute times are noisy** (a shared 2-core machine, other builds running); **the ratios hold**, since",
    "each ratio compares two benchmarks of the same run and build.",
    "",
]
if quick:
    lines += ["> Smoke run (`BENCH_QUICK=1`): short measurements, numbers are rough.", ""]
lines += [
    f"- Command: `{os.environ['BENCH_COMMAND']}` (or `scripts/bench.sh`)",
] + ([f"- Stored data: `{os.environ['BENCH_DATA_COMMAND']}`"] if data_run else []) + [
    f"- Date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
    f"- Machine: {os.cpu_count()} cores (`nproc`: {subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()}), "
    f"CPU `{cpu_model()}`, {platform.system()} {platform.machine()}",
    f"- Toolchain: {rustc_version()}; `bench` profile (release, opt-level 3, no fat LTO)",
    "",
    "## Ratios",
    "",
    "Two ratios per comparison. *Medians*: criterion's median of the benchmark over its floor's; the two are",
    "measured one after the other, so a change of load in between moves this ratio. *Paired*: both sides run in",
    "alternating rounds of a few tens of milliseconds and the ratio is the median of the per-round ratios (range in",
    "brackets); load that changes more slowly than a round cancels out, so this is the one the target is checked on.",
    "",
    "| comparison | measured (median) | floor (median) | ratio of medians | paired ratio | target | met |",
    "| --- | ---: | ---: | ---: | ---: | ---: | :---: |",
]
rows = [(w, m, f, t, paired(paired_name(m, f))) for w, m, f, t in ratios]
rows += [(w, m, f, t, paired(p, "paired-ratios-data.json")) for w, m, f, t, p in data_ratios]
for what, measured, floor, target, p in rows:
    m, f = median(measured), median(floor)
    if target is None:
        target_text, met = "—", "—"
    else:
        target_text, met = f"≤ {target}", "yes" if p["median"] <= target else "**no**"
    lines.append(
        f"| {what} | {fmt(m)} | {fmt(f)} | {m / f:.2f} | {p['median']:.2f} ({p['min']:.2}–{p['max']:.2}) "
        f"| {target_text} | {met} |"
    )
lines += [
    "",
    "## Medians",
    "",
    "| benchmark | what | median |",
    "| --- | --- | ---: |",
]
lines += [f"| `{bench}` | {what} | {fmt(median(bench))} |" for bench, what in medians + data_medians]
if data_builds:
    gib = 1024 ** 3
    lines += [
        "",
        "## Stored data: the data sets",
        "",
        "Each large data set is built as the engine's hosts build it: one snapshot document per tenant handed to",
        "`Engine::apply_tenant_data`, every entity checked against the schema (Cedar's JSON entity parser does",
        "most of the work). Resident set from `/proc/self/status` before and after; bytes an entity are the",
        "difference over the entities loaded.",
        "",
        "| data set | entities | build time | threads | entities/s | resident set after | bytes an entity | 10,000 × 1,000 would need |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for b in data_builds:
        per = b["bytes_per_entity"]
        lines.append(
            f"| {b['tenants']:,} × {b['entities_per_tenant']:,} | {b['entities']:,} | {b['seconds']:.1f} s | {b['threads']} "
            f"| {b['entities'] / b['seconds']:,.0f} | {b['rss_after'] / gib:.2f} GiB | {per:,.0f} "
            f"| {per * 10_000_000 / gib:.0f} GiB |"
        )
if os.environ["BENCH_BREAKDOWN"] == "1":
    lines += [
        "",
        "## Where a cached decision's time goes (`BENCH_BREAKDOWN=1`)",
        "",
        "The engine's steps rebuilt from the public Cedar API; they overlap, so they do not add up exactly.",
        "",
        "| benchmark | what | median |",
        "| --- | --- | ---: |",
    ]
    lines += [f"| `{bench}` | {what} | {fmt(median(bench))} |" for bench, what in breakdown]
lines += [
    "",
    "## What is measured",
    "",
    "- **cached decision**: the TechFin bundle (`policies/techfin`), an acme (Entra ID, RS256) finance analyst viewing",
    "  a finance report of acme; the token was verified once before timing. Floor: Cedar's `Authorizer::is_authorized`",
    "  on the same request with the same policies, a prebuilt `Request` (schema-checked) and prebuilt `Entities`",
    "  (the principal with its `Role` parent, and the resource). The engine evaluates only the slice of the policy",
    "  set whose scope can match the request; `cedar_floor_sliced` is the floor on such a slice (3 of the 9",
    "  shared policies), shown for information.",
    "- **fresh token**: every timed decision uses a token the engine has not seen (a pool of distinct tokens, a new",
    "  engine for each round of the pool, set up outside the timing). Floor: one `RustCryptoVerifier::verify` of the",
    "  same algorithm plus one cached decision. RS256 = acme, ES256 = globex (Okta), EdDSA = umbrella.",
    "- **tenant scaling**: generated bundles with the TechFin schema and shared policies and N tenants, each with its",
    "  own issuer and one policy of its own; a cached decision for a user of the first tenant.",
    "- **stored data** (`engine/benches/data.rs`): a TechFin-like schema where `Report in [Department, Folder]`,",
    "  `Department in [Division]`, `Folder in [Folder]`, `User in [Role, Team]`, with stored attributes (a report's",
    "  `department`, `folder`, `shared_with`; a folder's `owner`; a user's `department`), 9 shared policies",
    "  (TechFin's analysts, auditors and guardrails, plus a team-folder rule and a shared-with-me rule) and one",
    "  policy per tenant. Each tenant stores a division, departments, teams, folders, users and reports (909 of",
    "  1,000). The principal is a stored user (its stored department wins over the token's; its team is a stored",
    "  parent) with the `FinanceAnalyst` role from its Entra token; each decision joins 6 stored entities (the",
    "  user's team; the report, its department and division, its folder and the root folder). The timed requests",
    "  go round 1,024 (tenant, report) pairs over 64 tenants spread across the data set, with a decision time that",
    "  advances a second a request, so that no token's memo (its last 8 requests) answers: Cedar evaluates every",
    "  timed decision, in the 10 × 10 data set too (a memo hit is its own row). The floor holds, for each of the",
    "  1,024 requests, the same request, the tenant's policies and the same entities (the merged principal and the",
    "  6 stored ones) prebuilt as Cedar `Entities`; before timing, every request is checked to get the same",
    "  decision and reasons from both.",
    "",
    "## The hosts",
    "",
    "Each host has its own benchmark script and results, against its own peers:",
    "",
    "- JS SDK (Node, vs cedar-wasm, cedarling, jose): `bindings/js/BENCHMARKS.md`",
    "- Envoy filter (vs Envoy's `jwt_authn` + `rbac`, wrk): `bindings/envoy/BENCHMARKS.md`",
    "- decision service (native engine vs the wasmtime component; HTTP with wrk): `host/BENCHMARKS.md`",
    "",
]
report = os.environ["BENCH_REPORT"]
with open(report, "w") as f:
    f.write("\n".join(lines))
print("\n".join(lines))
print(f"wrote {report}")
PY
