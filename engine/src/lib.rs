//! # portcullis-engine
//!
//! The Portcullis decision engine answers one question the same way in every host: *may this
//! caller, from this tenant, do this action on this resource?* It verifies the caller's JWT
//! against the tenant's own identity provider (hardened per RFC 8725), maps the verified claims
//! to a tenant-scoped principal, and evaluates Cedar policies. It does no I/O and reads no
//! clock: bundles, keys and `now` are passed in, so the same code runs natively, in Envoy
//! (proxy-wasm), in browsers and Node (wasm-bindgen) and as a WASI component.
//!
//! ```
//! # #[cfg(feature = "rust-crypto")] { // `Engine::new`: the built-in crypto
//! use portcullis_engine::{Bundle, CompiledBundle, DecisionRequest, Engine, PolicySource, ResourceRef, Settings, TrustedRequest};
//!
//! let policies = vec![PolicySource {
//!     file: "policies/read.cedar".into(),
//!     tenant: None,
//!     source: r#"@id("anyone-views") permit(principal, action == Action::"view", resource);"#.into(),
//! }];
//! let bundle = Bundle::load(CompiledBundle::new(Settings::default(), None, policies))?;
//! let engine = Engine::new(bundle);
//!
//! // Trusted-principal mode: the caller is already authenticated.
//! let request = TrustedRequest {
//!     principal: ResourceRef::new("User", "alice"),
//!     action: "view".into(),
//!     resource: ResourceRef::new("Report", "q3"),
//!     ..Default::default()
//! };
//! let decision = engine.decide_trusted(&request, 1_700_000_000);
//! assert!(decision.is_allowed());
//! assert_eq!(decision.reasons, ["anyone-views"]);
//!
//! // Token mode: no token means unauthenticated, never allow.
//! let request = DecisionRequest { action: "view".into(), resource: ResourceRef::new("Report", "q3"), ..Default::default() };
//! assert_eq!(engine.decide(&request, 1_700_000_000).status, 401);
//! # }
//! # Ok::<(), portcullis_engine::BundleError>(())
//! ```
//!
//! ## Concepts
//! - [`Bundle`]: schema, policies (shared and per tenant), tenants with their trusted issuers,
//!   static entities. Authored as a directory ([`BundleSources`]), compiled to one JSON document
//!   ([`CompiledBundle`]) with a content `revision`.
//! - Keys: inline in the bundle, or fetched by the host and handed over with
//!   [`Engine::set_issuer_keys`].
//! - [`Engine::decide`]: token → principal → Cedar → [`Decision`] (a value: deny and
//!   unauthenticated are outcomes). [`Decision::audit_record`] never contains the token.
//! - [`SignatureVerifier`]: the crypto seam; pure Rust by default, native or WebCrypto in hosts.

mod bundle;
mod cache;
mod cedar_glue;
mod claims;
mod crypto;
mod data;
mod decision;
mod der;
mod edge;
mod engine;
mod error;
mod json_text;
mod keys;
pub mod lifecycle;
mod memo;
#[cfg(feature = "mint")]
mod mint;
mod token;
mod wire;

// The public interface is:
pub use bundle::{
    BUNDLE_FORMAT, BUNDLE_SIGNATURE_TYPE, Bundle, BundleSources, BundleTrust, ClaimPath,
    ClaimsConfig, CompiledBundle, DataAccess, DataSettings, EntityTypes, IssuerConfig, KeyUrl,
    MAX_CLOCK_SKEW, MAX_DATA_DEPTH, MAX_TOKEN_LIFETIME, PolicySource, Preset, SecretRef, Settings,
    TenantConfig, TenantsFile, TokenSettings, acceptable_key_url,
};
pub use claims::{Principal, PrincipalKind};
#[cfg(feature = "rust-crypto")]
pub use crypto::RustCryptoVerifier;
pub use crypto::sha256;
pub use crypto::{SignatureBudget, SignatureVerifier};
pub use data::{
    CheckedWrite, DataChange, DataDocument, DataError, DataLoaded, DataSet, EntityRef, EntityWrite,
    MAX_DATA_DOCUMENT, MAX_ENTITY_BYTES, MAX_SLICE_DOCUMENT, MAX_SLICE_QUERY, MAX_SLICE_RESOURCES,
    SliceRequest, SliceScope, TenantData,
};
pub use decision::{
    AuditRecord, Decision, DecisionError, MAX_ECHOED_ACTION, MAX_ECHOED_RESOURCE, Outcome,
    PrincipalSummary, RequestSummary,
};
pub use edge::{
    Edge, EdgeAction, EdgeConfigError, EdgeOptions, EdgeOutcome, EdgeVerdict, FailureMode,
    ForwardHeaders, HeaderPairs, Headers, HttpRequest, Lookup, MAX_LOGGED_PATH, Mapped,
    ResourceSpec, RouteSpec, RoutesFile, TokenSource, Unmatched, ValueSpec,
};
pub use engine::{
    DataSlice, DecisionIds, DecisionRequest, Engine, EngineOptions, PendingSignature, ResourceRef,
    SliceError, TokenStep, TrustedRequest,
};
pub use error::{
    BundleError, BundleProblem, ErrorInfo, KeyError, RequestError, SourceLocation, TokenError,
    json_message,
};
pub use keys::{Algorithm, Curve, KeyMaterial, VerificationKey};
pub use lifecycle::{
    BundleEvent, BundleFetch, BundleOrigin, BundlePoll, DataEvent, DataFetch, DataPolicy,
    FetchAnswer, FetchStage, HttpTarget, IssuerKeyStatus, KeyEvent, KeyFetch, KeySchedule,
    MAX_BUNDLE_DOCUMENT, MAX_KEY_DOCUMENT, RefreshPolicy, SharedBundle, SharedKeys, SharedStore,
    SharedTenantData, Upkeep, UpkeepAnswer, UpkeepEvent, UpkeepFetch,
};
#[cfg(feature = "mint")]
pub use mint::{DevIssuer, sign_bundle, sign_bytes, sign_with_pem, tenant_issuer, unknown_tenant};
pub use token::verify_jws;
pub use wire::{
    KeyCase, apply_bearer, bearer_token, describe_json_error, entity_uid_text, one_token,
    parse_entity_uid_text, parse_request,
};
