//! Keys of `jwks_uri` and `discovery` issuers: fetched with timeouts, kept for as long as the
//! IdP's `Cache-Control: max-age` says (within [`Bounds`]), fetched again early — once per
//! cooldown — when a token names a key id the engine does not know, and kept when the IdP
//! fails. One task does all fetching, one issuer at a time: there is never a stampede.

use portcullis_engine::KeyUrl;
use serde_json::Value;
use std::time::Duration;

/// Largest JWK set or discovery document accepted.
const MAX_DOCUMENT_BYTES: u64 = 1 << 20;

/// How long fetched keys are kept, and how often an IdP is asked again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// Keys are kept at least this long, whatever `Cache-Control` says.
    pub min_age: Duration,
    /// And at most this long.
    pub max_age: Duration,
    /// When the IdP sends no `max-age`.
    pub default_age: Duration,
    /// After a failed fetch, wait this long before trying again (the last good keys stay).
    pub retry: Duration,
    /// An unknown key id triggers at most one early fetch per issuer per this period.
    pub unknown_kid_cooldown: Duration,
    /// Timeout of each HTTP request.
    pub timeout: Duration,
}

impl Default for Bounds {
    fn default() -> Self {
        Self {
            min_age: Duration::from_secs(60),
            max_age: Duration::from_secs(24 * 3600),
            default_age: Duration::from_secs(300),
            retry: Duration::from_secs(10),
            unknown_kid_cooldown: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
        }
    }
}

/// A fetched JWK set (JSON) and how long it may be kept.
#[derive(Debug)]
pub struct FetchedKeys {
    /// The JWK set document.
    pub jwks: Value,
    /// How long to keep it, already within the bounds.
    pub max_age: Duration,
}

/// Fetch the JWK set of `source` (through the discovery document when that is the source) for
/// the configured `issuer`. Redirects are not followed (a redirect could lead anywhere, past
/// the URL rule); a discovery document must name `issuer` as its `issuer` (OpenID Connect
/// Discovery 1.0 §4.3).
///
/// # Errors
/// Network errors, timeouts, non-200 answers (redirects included), oversized or malformed
/// documents, a discovery document of another issuer or naming an unacceptable `jwks_uri`.
pub fn fetch(
    agent: &ureq::Agent,
    source: &KeyUrl,
    issuer: &str,
    bounds: &Bounds,
) -> Result<FetchedKeys, String> {
    let jwks_uri = match source {
        KeyUrl::JwksUri(url) => url.clone(),
        KeyUrl::Discovery(url) => {
            let (document, _) = get_json(agent, url)?;
            if document.get("issuer").and_then(Value::as_str) != Some(issuer) {
                return Err(format!(
                    "the discovery document at `{url}` is not that of issuer `{issuer}` (its `issuer` differs)"
                ));
            }
            let uri = document
                .get("jwks_uri")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("the discovery document at `{url}` has no `jwks_uri`"))?;
            // The bundle's rule for key URLs (https, or plain http to loopback) holds for the
            // `jwks_uri` a discovery document names too; and one fetched over https must not
            // send us to plain http.
            if !portcullis_engine::acceptable_key_url(uri)
                || (url.starts_with("https://") && !uri.starts_with("https://"))
            {
                return Err(format!(
                    "the discovery document at `{url}` names a `jwks_uri` that is not https"
                ));
            }
            uri.to_owned()
        }
    };
    let (jwks, cache_control) = get_json(agent, &jwks_uri)?;
    let max_age = cache_control
        .as_deref()
        .and_then(parse_max_age)
        .unwrap_or(bounds.default_age)
        .clamp(bounds.min_age, bounds.max_age);
    Ok(FetchedKeys { jwks, max_age })
}

/// GET a JSON document; also returns its `Cache-Control` header.
fn get_json(agent: &ureq::Agent, url: &str) -> Result<(Value, Option<String>), String> {
    let mut response = agent
        .get(url)
        .header("accept", "application/json")
        .call()
        .map_err(|e| format!("cannot fetch `{url}`: {e}"))?;
    let status = response.status().as_u16();
    if (300..400).contains(&status) {
        return Err(format!(
            "`{url}` answered a redirect (HTTP {status}), which is not followed: configure the URL it points to"
        ));
    }
    if status != 200 {
        return Err(format!("`{url}` answered HTTP {status}"));
    }
    let cache_control = response
        .headers()
        .get("cache-control")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = response
        .body_mut()
        .with_config()
        .limit(MAX_DOCUMENT_BYTES)
        .read_to_string()
        .map_err(|e| format!("cannot read `{url}`: {e}"))?;
    let value = serde_json::from_str(&text).map_err(|e| format!("`{url}` is not JSON: {e}"))?;
    Ok((value, cache_control))
}

/// `max-age` of a `Cache-Control` value; `no-store` / `no-cache` mean zero (the lower bound
/// applies).
fn parse_max_age(header: &str) -> Option<Duration> {
    let mut age = None;
    for directive in header.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Some(Duration::ZERO);
        }
        if let Some(value) = lower.strip_prefix("max-age=") {
            age = value
                .trim_matches('"')
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs);
        }
    }
    age
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::http::header;
    use axum::routing::get;

    /// A real IdP-shaped HTTP server on loopback: discovery, a JWK set with `max-age`, and a
    /// failing endpoint.
    fn idp() -> (tokio::runtime::Runtime, String) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let discovery =
            serde_json::json!({"issuer": base, "jwks_uri": format!("{base}/jwks")}).to_string();
        let foreign =
            serde_json::json!({"issuer": "https://evil.example", "jwks_uri": format!("{base}/jwks")})
                .to_string();
        let app = Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(move || async move { discovery }),
            )
            .route(
                "/jwks",
                get(|| async {
                    (
                        [(header::CACHE_CONTROL, "public, max-age=120")],
                        r#"{"keys": []}"#,
                    )
                }),
            )
            .route(
                "/short",
                get(|| async { ([(header::CACHE_CONTROL, "max-age=1")], r#"{"keys": []}"#) }),
            )
            .route(
                "/down",
                get(|| async { (axum::http::StatusCode::BAD_GATEWAY, "down") }),
            )
            .route("/html", get(|| async { "<html>" }))
            .route("/foreign", get(move || async move { foreign }))
            .route(
                "/moved",
                get(|| async {
                    (
                        axum::http::StatusCode::FOUND,
                        [(header::LOCATION, "http://127.0.0.2:1/jwks")],
                    )
                }),
            );
        runtime.spawn(async move { axum::serve(listener, app).await });
        (runtime, base)
    }

    #[test]
    fn fetches_through_discovery_and_honours_bounds() {
        let (_runtime, base) = idp();
        let agent = crate::service::source::http_agent(Duration::from_secs(5));
        let bounds = Bounds::default();
        let keys = fetch(
            &agent,
            &KeyUrl::Discovery(format!("{base}/.well-known/openid-configuration")),
            &base,
            &bounds,
        )
        .unwrap();
        assert_eq!(keys.jwks, serde_json::json!({"keys": []}));
        assert_eq!(keys.max_age, Duration::from_secs(120));
        // Below the lower bound: clamped up.
        let keys = fetch(
            &agent,
            &KeyUrl::JwksUri(format!("{base}/short")),
            &base,
            &bounds,
        )
        .unwrap();
        assert_eq!(keys.max_age, bounds.min_age);
        // Failures are errors (the caller keeps the last good keys).
        assert!(
            fetch(
                &agent,
                &KeyUrl::JwksUri(format!("{base}/down")),
                &base,
                &bounds
            )
            .unwrap_err()
            .contains("502")
        );
        assert!(
            fetch(
                &agent,
                &KeyUrl::JwksUri(format!("{base}/html")),
                &base,
                &bounds
            )
            .unwrap_err()
            .contains("not JSON")
        );
        assert!(
            fetch(
                &agent,
                &KeyUrl::JwksUri("http://127.0.0.1:1/jwks".into()),
                &base,
                &bounds
            )
            .is_err()
        );
        // A discovery document of another issuer, and a redirect (to a host the URL rule
        // refuses), are refused.
        let err = fetch(
            &agent,
            &KeyUrl::Discovery(format!("{base}/foreign")),
            &base,
            &bounds,
        )
        .unwrap_err();
        assert!(err.contains("not that of issuer"), "{err}");
        let err = fetch(
            &agent,
            &KeyUrl::JwksUri(format!("{base}/moved")),
            &base,
            &bounds,
        )
        .unwrap_err();
        assert!(
            err.contains("redirect (HTTP 302), which is not followed"),
            "{err}"
        );
    }

    #[test]
    fn max_age_parsing() {
        assert_eq!(
            parse_max_age("public, max-age=600"),
            Some(Duration::from_secs(600))
        );
        assert_eq!(
            parse_max_age("max-age=\"60\", must-revalidate"),
            Some(Duration::from_secs(60))
        );
        assert_eq!(parse_max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(parse_max_age("public"), None);
        assert_eq!(parse_max_age("max-age=lots"), None);
    }
}
