//! What a host fetches for the engine, and when — without doing any I/O: the keys of remote
//! issuers ([`KeySchedule`]: OIDC discovery, then the JWK set) and a bundle polled from a URL
//! ([`BundlePoll`]). Every host — the decision service, the Envoy filter, the JS SDK — asks
//! what is due, performs the HTTP GETs it is given (nothing else: no redirect followed, no
//! URL of its own), and hands back what came; the engine decides what an answer means. So the
//! rules below hold in every host, written once:
//!
//! - a URL is `https://`, or plain `http://` to loopback ([`acceptable_key_url`]); a redirect
//!   is a failure naming the URL to configure instead;
//! - a discovery document must name the configured issuer as its `issuer` (OpenID Connect
//!   Discovery 1.0 §4.3), and the `jwks_uri` it names is held to the URL rule and must not
//!   leave `https` for plain `http`;
//! - keys are kept as long as the IdP's `Cache-Control: max-age` says, within the bounds of a
//!   [`RefreshPolicy`], then fetched again in the background while the last good keys serve;
//! - a decision that lacked an issuer's keys ([`crate::Decision::keys_wanted`]: a `kid` the
//!   engine does not know, or no keys yet) brings that issuer's fetch forward, at most once per
//!   cooldown — never the other issuers';
//! - one fetch per issuer is in flight; a failure keeps the last good keys and is retried after
//!   a delay; a JWK set that fails sends the next attempt through discovery again;
//! - a bundle is polled with `If-None-Match`; a new one is a candidate the host loads (and
//!   checks the signature of) with the engine, then reports accepted or refused;
//! - where workers each hold an engine but share a store ([`SharedStore`]: Envoy's shared
//!   data), one of them fetches for all ([`SharedKeys`], [`SharedBundle`]); an [`Upkeep`] holds
//!   a worker's engine and both, so that the host only performs GETs and logs what happened;
//! - a host that keeps every tenant's stored data (the Envoy filter) fetches a tenant's
//!   document when a decision first lacks it, polls it for changes, and forgets the tenants
//!   least recently seen past a byte budget ([`SharedTenantData`], in the [`Upkeep`] too).
//!
//! Times are unix milliseconds, passed in by the host: the engine reads no clock.

mod bundle;
mod data;
mod keys;
mod shared;
mod target;
mod upkeep;

pub use bundle::{BundleEvent, BundleFetch, BundlePoll, MAX_BUNDLE_DOCUMENT};
pub use data::{DataEvent, DataFetch, DataPolicy, SharedTenantData};
pub use keys::{
    FetchAnswer, FetchStage, IssuerKeyStatus, KeyEvent, KeyFetch, KeySchedule, MAX_KEY_DOCUMENT,
    RefreshPolicy,
};
pub use shared::{SharedBundle, SharedKeys, SharedStore};
pub use target::HttpTarget;
pub use upkeep::{BundleOrigin, Upkeep, UpkeepAnswer, UpkeepEvent, UpkeepFetch};

use crate::bundle::acceptable_key_url;

/// Milliseconds as `i64`, saturating.
fn ms(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// `true` when `url` may be fetched after a document from `from`: the URL rule, and no step
/// from `https` down to plain `http`.
fn acceptable_after(url: &str, from: &str) -> bool {
    let downgrade = from.starts_with("https://") && !url.starts_with("https://");
    !downgrade && acceptable_key_url(url)
}

/// Why a redirect is refused, naming where it came from.
fn redirect_message(what: &str, status: u16) -> String {
    format!(
        "{what} answered a redirect (HTTP {status}), which is not followed: configure the URL it points to"
    )
}
