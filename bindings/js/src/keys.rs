//! The engine's key schedule for the SDK's key fetcher: JavaScript performs the GETs it is
//! given and hands back the answers; what they mean (discovery's issuer, the URL rule,
//! `max-age` within bounds, retries, the unknown-`kid` cooldown) is the engine's, as in
//! `portcullis serve` and the Envoy filter. Fetches and events cross as JSON text.

use crate::{RawEngine, clock_time, convert};
use portcullis_engine::{FetchAnswer, FetchStage, KeyEvent, KeyFetch, KeySchedule, RefreshPolicy};
use serde::Deserialize;
use serde_json::{Value, json};
use wasm_bindgen::prelude::*;

/// The refresh options, in milliseconds, as `fetchKeys` takes them (`portcullis.d.ts`).
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PolicyMs {
    min_age_ms: Option<u64>,
    max_age_ms: Option<u64>,
    default_age_ms: Option<u64>,
    retry_ms: Option<u64>,
    cooldown_ms: Option<u64>,
}

impl PolicyMs {
    fn policy(&self) -> RefreshPolicy {
        let d = RefreshPolicy::default();
        d.with_ages(
            self.min_age_ms.unwrap_or(d.min_age),
            self.max_age_ms.unwrap_or(d.max_age),
            self.default_age_ms.unwrap_or(d.default_age),
        )
        .with_retry(
            self.retry_ms.unwrap_or(d.retry),
            self.cooldown_ms.unwrap_or(d.unknown_kid_cooldown),
        )
    }
}

fn fetch_value(fetch: &KeyFetch) -> Value {
    json!({
        "issuer": fetch.issuer,
        "url": fetch.url,
        "stage": match fetch.stage {
            FetchStage::Discovery => "discovery",
            FetchStage::Jwks => "jwks",
        },
    })
}

fn parse_fetch(text: &str) -> Result<KeyFetch, JsValue> {
    let value: Value = serde_json::from_str(text)
        .map_err(|_| convert::invalid("request_invalid", "not a key fetch".to_owned()))?;
    let field = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_owned);
    let stage = match field("stage").as_deref() {
        Some("discovery") => FetchStage::Discovery,
        Some("jwks") => FetchStage::Jwks,
        _ => {
            return Err(convert::invalid(
                "request_invalid",
                "not a key fetch".to_owned(),
            ));
        }
    };
    match (field("issuer"), field("url")) {
        (Some(issuer), Some(url)) => Ok(KeyFetch { issuer, url, stage }),
        _ => Err(convert::invalid(
            "request_invalid",
            "not a key fetch".to_owned(),
        )),
    }
}

/// The schedule of one engine's remote issuers.
#[wasm_bindgen]
pub struct RawKeySchedule {
    schedule: KeySchedule,
}

#[wasm_bindgen]
impl RawKeySchedule {
    /// A schedule for `engine`'s remote issuers, all due at once; `options_json` is
    /// `{minAgeMs?, maxAgeMs?, defaultAgeMs?, retryMs?, cooldownMs?}`.
    ///
    /// # Errors
    /// `request_invalid` for options of another shape.
    #[wasm_bindgen(constructor)]
    pub fn new(engine: &RawEngine, options_json: &str) -> Result<RawKeySchedule, JsValue> {
        let options: PolicyMs = portcullis_engine::parse_request("fetchKeys", options_json)
            .map_err(|info| convert::error(&info))?;
        let mut schedule = KeySchedule::new(options.policy());
        schedule.follow(engine.engine().bundle().remote_issuers());
        Ok(Self { schedule })
    }

    /// The GETs due at `now` (unix ms): JSON `[{issuer, url, stage}]`, each in flight until
    /// answered.
    pub fn due(&mut self, now: f64) -> Result<String, JsValue> {
        let due: Vec<Value> = self
            .schedule
            .due(clock_time(now)?)
            .iter()
            .map(fetch_value)
            .collect();
        Ok(Value::Array(due).to_string())
    }

    /// Make every fetch due at `now`.
    pub fn expedite(&mut self, now: f64) -> Result<(), JsValue> {
        self.schedule.expedite(clock_time(now)?);
        Ok(())
    }

    /// A decision wanted `issuer`'s keys: whether a fetch is now due.
    pub fn wanted(&mut self, issuer: &str, now: f64) -> Result<bool, JsValue> {
        Ok(self.schedule.wanted(issuer, clock_time(now)?))
    }

    /// When the next fetch is due (unix ms), if one is waiting.
    #[wasm_bindgen(js_name = nextDue)]
    pub fn next_due(&self) -> Option<f64> {
        #[allow(clippy::cast_precision_loss)]
        self.schedule.next_due().map(|t| t as f64)
    }

    /// Whether every issuer has keys.
    #[wasm_bindgen(getter, js_name = allLoaded)]
    pub fn all_loaded(&self) -> bool {
        self.schedule.all_loaded()
    }

    /// The answer to `fetch_json` (one of [`RawKeySchedule::due`]'s): a JWK set goes into
    /// `engine`. JSON `{"fetch": {...}}` (GET this next), `{"keys": n, "issuer"}`,
    /// `{"failed": reason, "issuer"}`, or `null` when the fetch is no longer wanted.
    ///
    /// # Errors
    /// `request_invalid` for something that is not a fetch; `clock`.
    pub fn answer(
        &mut self,
        engine: &RawEngine,
        fetch_json: &str,
        status: u16,
        cache_control: Option<String>,
        body: &[u8],
        now: f64,
    ) -> Result<String, JsValue> {
        let fetch = parse_fetch(fetch_json)?;
        let answer = FetchAnswer {
            status,
            cache_control: cache_control.as_deref(),
            body,
        };
        let load = |issuer: &str, jwks: &Value| {
            engine
                .engine()
                .set_issuer_keys(issuer, jwks)
                .map_err(|e| e.info().message)
        };
        let event = self.schedule.answer(&fetch, answer, clock_time(now)?, load);
        Ok(match event {
            None => Value::Null,
            Some(KeyEvent::Fetch(next)) => json!({ "fetch": fetch_value(&next) }),
            Some(KeyEvent::Keys { issuer, keys, .. }) => json!({ "keys": keys, "issuer": issuer }),
            Some(KeyEvent::Failed { issuer, reason }) => {
                json!({ "failed": reason, "issuer": issuer })
            }
        }
        .to_string())
    }

    /// `fetch_json` could not be performed (a network error, a body over 1 MiB).
    ///
    /// # Errors
    /// `request_invalid` for something that is not a fetch; `clock`.
    pub fn failed(&mut self, fetch_json: &str, reason: &str, now: f64) -> Result<(), JsValue> {
        let fetch = parse_fetch(fetch_json)?;
        self.schedule.failed(&fetch, reason, clock_time(now)?);
        Ok(())
    }
}
