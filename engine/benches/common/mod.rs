//! What the engine's benchmarks share: the TechFin bundle and development tokens, paired
//! ratios (both sides of a comparison in alternating short rounds), and criterion's results.

// Each bench binary compiles this module and uses a part of it.
#![allow(dead_code)]

use portcullis_engine::{Bundle, BundleSources, CompiledBundle, DevIssuer, Engine, PolicySource};
use serde_json::{Map, Value, json};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// The decision time. The engine reads no clock, so a fixed `now` is as good as any.
pub const NOW: i64 = 1_760_000_000;

// ---------------------------------------------------------------------------------------------
// The TechFin bundle, read from policies/techfin.

pub fn techfin_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/techfin")
}

pub fn read(relative: &str) -> Result<String, String> {
    std::fs::read_to_string(techfin_dir().join(relative)).map_err(|e| format!("{relative}: {e}"))
}

/// `*.cedar` files of a directory (relative to the TechFin directory), sorted.
pub fn cedar_files(relative: &str) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(techfin_dir().join(relative))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".cedar"))
        .map(|name| format!("{relative}/{name}"))
        .collect();
    files.sort();
    files
}

pub fn policy(file: String, tenant: Option<&str>) -> PolicySource {
    PolicySource {
        source: read(&file).unwrap(),
        file,
        tenant: tenant.map(str::to_owned),
    }
}

pub fn techfin_sources() -> BundleSources {
    let mut policies: Vec<PolicySource> = cedar_files("policies")
        .into_iter()
        .map(|f| policy(f, None))
        .collect();
    policies.extend(
        cedar_files("policies/tenants/globex")
            .into_iter()
            .map(|f| policy(f, Some("globex"))),
    );
    BundleSources {
        schema: Some((
            "schema.cedarschema".into(),
            read("schema.cedarschema").unwrap(),
        )),
        tenants: Some(("tenants.json".into(), read("tenants.json").unwrap())),
        policies,
        ..BundleSources::default()
    }
}

pub fn techfin() -> CompiledBundle {
    techfin_sources().compile(&mut read).unwrap()
}

pub fn engine(compiled: CompiledBundle) -> Engine {
    Engine::new(Bundle::load(compiled).unwrap())
}

/// A token of `tenant`'s development issuer with the standard claims plus `extra`.
pub fn mint(compiled: &CompiledBundle, tenant: &str, extra: &Value, jti: &str) -> String {
    let issuer = DevIssuer::for_tenant(compiled, tenant, 0, &mut read).unwrap();
    let mut claims = issuer.base_claims(NOW - 60, 3600);
    claims.extend(extra.as_object().unwrap().clone());
    claims.insert("jti".into(), jti.into());
    issuer.sign(&claims).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Paired ratios: a second opinion that holds under changing load.
//
// Criterion measures one benchmark after the other, so when other work starts or stops on a
// shared machine between a benchmark and its floor, the ratio of their medians moves with it.
// Here both sides run in alternating short rounds (measured-floor, floor-measured, ...) and the
// ratio is the median of the per-round ratios, so load that changes more slowly than a round
// cancels out.

/// Runs `operation` once and returns how long it took (its result is dropped afterwards).
pub fn timed<T>(operation: impl FnOnce() -> T) -> Duration {
    let start = Instant::now();
    let result = black_box(operation());
    let elapsed = start.elapsed();
    drop(result);
    elapsed
}

/// One paired result: per-round ratios' median, minimum and maximum.
pub struct PairedRatio {
    pub name: String,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub rounds: usize,
}

/// Paired measurements of one bench binary.
pub struct Paired {
    enabled: bool,
    rounds: usize,
    side_time: Duration,
    pub results: Vec<PairedRatio>,
}

impl Paired {
    /// On in `cargo bench` mode unless `BENCH_PAIRED=0`; shorter with `BENCH_QUICK=1`.
    pub fn from_env() -> Self {
        let on = |name: &str| std::env::var_os(name).map(|v| v == "1");
        let quick = on("BENCH_QUICK").unwrap_or(false);
        Self {
            enabled: std::env::args().any(|a| a == "--bench") && on("BENCH_PAIRED").unwrap_or(true),
            rounds: if quick { 11 } else { 61 },
            side_time: Duration::from_millis(if quick { 10 } else { 20 }),
            results: Vec::new(),
        }
    }

    /// `measured` and `floor` each run one operation and return the time it took, so that
    /// per-operation set-up stays outside.
    pub fn measure(
        &mut self,
        name: &str,
        mut measured: impl FnMut() -> Duration,
        mut floor: impl FnMut() -> Duration,
    ) {
        if !self.enabled {
            return;
        }
        // Warm up, and size each side's share of a round from its speed.
        let per_operation = |operation: &mut dyn FnMut() -> Duration| {
            let (mut total, mut count) = (Duration::ZERO, 0u32);
            while total < Duration::from_millis(100) {
                total += operation();
                count += 1;
            }
            let per = total / count;
            usize::try_from(self.side_time.as_nanos() / per.as_nanos().max(1))
                .unwrap_or(1)
                .max(1)
        };
        let (measured_ops, floor_ops) = (per_operation(&mut measured), per_operation(&mut floor));
        let mean = |operation: &mut dyn FnMut() -> Duration, ops: usize| {
            (0..ops)
                .map(|_| operation())
                .sum::<Duration>()
                .as_secs_f64()
                / ops as f64
        };
        let mut ratios: Vec<f64> = (0..self.rounds)
            .map(|round| {
                if round % 2 == 0 {
                    let m = mean(&mut measured, measured_ops);
                    m / mean(&mut floor, floor_ops)
                } else {
                    let f = mean(&mut floor, floor_ops);
                    mean(&mut measured, measured_ops) / f
                }
            })
            .collect();
        ratios.sort_by(f64::total_cmp);
        let result = PairedRatio {
            name: name.to_owned(),
            median: ratios[ratios.len() / 2],
            min: ratios[0],
            max: ratios[ratios.len() - 1],
            rounds: ratios.len(),
        };
        println!(
            "{name}: paired ratio {:.3} (median of {} rounds, range {:.3}..{:.3})",
            result.median, result.rounds, result.min, result.max
        );
        self.results.push(result);
    }

    /// Written next to criterion's results as `file`, for `scripts/bench.sh`.
    pub fn write(&self, dir: &Path, file: &str) {
        if self.results.is_empty() {
            return;
        }
        let map: Map<String, Value> = self
            .results
            .iter()
            .map(|r| {
                let value =
                    json!({"median": r.median, "min": r.min, "max": r.max, "rounds": r.rounds});
                (r.name.clone(), value)
            })
            .collect();
        let _ = std::fs::create_dir_all(dir);
        let _ = std::fs::write(dir.join(file), Value::Object(map).to_string());
    }
}

/// Where criterion writes its results (its own rule: `CRITERION_HOME`, else the target directory).
pub fn criterion_dir() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return Some(home.into());
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return Some(Path::new(&target).join("criterion"));
    }
    // target/<profile>/deps/<bench>-<hash>
    Some(
        std::env::current_exe()
            .ok()?
            .ancestors()
            .nth(3)?
            .join("criterion"),
    )
}

/// The median (ns) of `id`, if criterion measured it since `since`.
pub fn median(dir: &Path, id: &str, since: SystemTime) -> Option<f64> {
    let path = dir.join(id).join("new/estimates.json");
    if std::fs::metadata(&path).ok()?.modified().ok()? < since {
        return None;
    }
    let estimates: Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    estimates["median"]["point_estimate"].as_f64()
}
