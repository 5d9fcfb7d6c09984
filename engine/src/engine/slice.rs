//! A signed-in user's slice of their tenant's data, cut by the engine that holds the tenant's
//! data (the decision service) for the engine in the user's browser.

use super::authenticate::{TokenFailure, VerifiedToken};
use super::{DecisionRequest, Engine, ResourceRef};
use crate::data::{
    DataDocument, DataError, DataLoaded, EntityRef, MAX_DATA_DOCUMENT, MAX_SLICE_DOCUMENT,
    SliceRequest, TenantData,
};
use crate::decision::PrincipalSummary;
use crate::error::{ErrorInfo, RequestError, TokenError, sanitize};
use serde_json::json;

/// A signed-in user's slice, as [`Engine::data_slice`] cut it.
#[derive(Clone, Debug, PartialEq)]
pub struct DataSlice {
    /// The slice document (a [`DataDocument`] with its `slice` scope), JSON: what the
    /// service serves and the SDK loads.
    pub json: String,
    /// The tenant.
    pub tenant: String,
    /// The revision of the tenant's data it was cut from.
    pub revision: u64,
    /// The principal it was cut for.
    pub principal: PrincipalSummary,
    /// The requested resources it covers (those the principal may do something with).
    pub resources: Vec<EntityRef>,
    /// How many resources were asked for.
    pub asked: usize,
    /// How many entities it holds.
    pub entities: usize,
    /// One audit line (JSON, `"kind": "data_slice"`): who was given which resources' facts,
    /// from which revision. Never the token: its fingerprint and `jti`.
    pub audit_json: String,
}

/// Why no slice was cut. Every variant has a stable code and the HTTP status that goes with
/// it; none carries a token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SliceError {
    /// The token was not accepted.
    #[error("{error}")]
    Token {
        /// Why.
        error: TokenError,
        /// The configured issuer the token named, when it got that far.
        issuer: Option<String>,
    },
    /// The token is of another tenant than the one asked for.
    #[error("the token is not of tenant `{0}`")]
    OtherTenant(String),
    /// The bundle stores no entity types: there is no data to slice.
    #[error("the bundle stores no entity types")]
    NoStoredTypes,
    /// The tenant's data is not held, or only a slice of it is (a slice is never cut from a
    /// slice).
    #[error("the data of tenant `{0}` is not loaded")]
    DataUnavailable(String),
    /// A chain of stored parents deeper than the bundle's `data.max_depth`.
    #[error("{0}")]
    Depth(RequestError),
    /// The slice would be larger than [`MAX_SLICE_DOCUMENT`].
    #[error(
        "the slice is {size} bytes, over the limit of {MAX_SLICE_DOCUMENT}: ask for fewer resources"
    )]
    TooLarge {
        /// Its size.
        size: usize,
    },
}

impl SliceError {
    /// The stable code: the token's (`token_*`), `data_other_tenant`, `data_off`,
    /// `data_unavailable`, `data_depth` or `data_too_large`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Token { error, .. } => error.code(),
            Self::OtherTenant(_) => "data_other_tenant",
            Self::NoStoredTypes => "data_off",
            Self::DataUnavailable(_) => "data_unavailable",
            Self::Depth(error) => error.code(),
            Self::TooLarge { .. } => "data_too_large",
        }
    }

    /// The HTTP status of the refusal: 401 for a token, 403 for another tenant's, 404 when
    /// the bundle stores nothing, 409 for a chain too deep, 413 for a slice too large, 503
    /// while the tenant's data is not loaded.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::Token { .. } => 401,
            Self::OtherTenant(_) => 403,
            Self::NoStoredTypes => 404,
            Self::Depth(_) => 409,
            Self::TooLarge { .. } => 413,
            Self::DataUnavailable(_) => 503,
        }
    }

    /// The issuer whose keys the token lacked (a `kid` the engine does not have, or no keys
    /// yet), so the host should bring its fetch forward; as [`crate::Decision::keys_wanted`].
    pub fn keys_wanted(&self) -> Option<&str> {
        match self {
            Self::Token {
                error: TokenError::UnknownKey | TokenError::KeysUnavailable,
                issuer,
            } => issuer.as_deref(),
            _ => None,
        }
    }

    /// The edge shape of this error.
    pub fn info(&self) -> ErrorInfo {
        match self {
            Self::Token { error, .. } => error.info(),
            _ => ErrorInfo {
                code: self.code(),
                message: self.to_string(),
                help: None,
            },
        }
    }
}

impl Engine {
    /// The slice of the tenant's data that the holder of `token` may have in their browser,
    /// for `request`'s resources, at unix time `now`:
    ///
    /// - the principal's stored entity, if any, and its stored ancestors;
    /// - each requested resource of a stored type, with its stored ancestors, **only when the
    ///   principal may do at least one action on it**: every schema action that applies to
    ///   the principal's type and the resource's is decided, as [`Engine::decide`] would with
    ///   the token and no request context, on the tenant's whole data. A resource the
    ///   principal may do nothing with is left out, and the slice says it does not cover it:
    ///   an engine holding the slice then denies it (`data_outside_slice`), as the server
    ///   does.
    ///
    /// Only the token's own tenant is sliced, and only when it is `request`'s tenant.
    /// Resources of types that are not stored need no data (their attributes come with each
    /// request); they are neither decided nor covered.
    ///
    /// # Errors
    /// [`SliceError`]: the token is not accepted, is of another tenant, the tenant's data is
    /// not loaded, a chain of parents is too deep, or the slice is too large.
    pub fn data_slice(
        &self,
        token: &str,
        request: &SliceRequest,
        now: i64,
    ) -> Result<DataSlice, SliceError> {
        let verified = self
            .verified(token, now)
            .map_err(|TokenFailure { error, issuer }| SliceError::Token { error, issuer })?;
        let tenant = verified.principal.tenant.as_str();
        if tenant != request.tenant() {
            return Err(SliceError::OtherTenant(sanitize(request.tenant(), 64)));
        }
        if self.bundle.stored.is_empty() {
            return Err(SliceError::NoStoredTypes);
        }
        let data = self
            .tenant_data(tenant)
            .filter(|d| !d.is_slice())
            .ok_or_else(|| SliceError::DataUnavailable(sanitize(tenant, 64)))?;
        let covered: Vec<EntityRef> = request
            .resources()
            .iter()
            .filter(|resource| self.allows_something(&verified, resource, &data, now))
            .cloned()
            .collect();
        let principal = EntityRef::new(
            verified.uid.type_name().to_string(),
            verified.uid.id().unescaped(),
        );
        let document = data
            .slice(&self.bundle, &principal, &covered)
            .map_err(SliceError::Depth)?;
        let entities = document.entities.len();
        let json = serde_json::to_string(&document).unwrap_or_default();
        if json.len() > MAX_SLICE_DOCUMENT {
            return Err(SliceError::TooLarge { size: json.len() });
        }
        let resources = document
            .slice
            .as_ref()
            .map(|s| s.resources.clone())
            .unwrap_or_default();
        let audit_json = json!({
            "kind": "data_slice",
            "decision_id": self.next_decision_id(),
            "time": now,
            "tenant": tenant,
            "principal": verified.principal.entity,
            "revision": self.bundle.revision(),
            "data_revision": data.revision(),
            "asked": request.resources().len(),
            "resources": resources.iter().map(EntityRef::display).collect::<Vec<_>>(),
            "entities": entities,
            "issuer": verified.identity.issuer,
            "token_fingerprint": verified.identity.fingerprint,
            "jti": verified.identity.jti,
        })
        .to_string();
        Ok(DataSlice {
            json,
            tenant: tenant.to_owned(),
            revision: data.revision(),
            principal: PrincipalSummary::from_principal(&verified.principal),
            resources,
            asked: request.resources().len(),
            entities,
            audit_json,
        })
    }

    /// Whether the principal may do at least one schema action on `resource` (of a stored
    /// type), with the token's context and nothing else, on the tenant's whole data. An
    /// evaluation that fails (say, an action whose context needs what only a request gives)
    /// allows nothing.
    fn allows_something(
        &self,
        verified: &VerifiedToken,
        resource: &EntityRef,
        data: &TenantData,
        now: i64,
    ) -> bool {
        let Some(ty) = self.bundle.known_type(&resource.entity_type) else {
            return false;
        };
        if !self.bundle.stored.contains(ty) {
            return false;
        }
        self.bundle
            .actions_applying(verified.uid.type_name(), ty)
            .into_iter()
            .any(|action| {
                let request = DecisionRequest {
                    token: None,
                    action,
                    resource: ResourceRef::new(&resource.entity_type, &resource.id),
                    context: serde_json::Map::new(),
                };
                self.evaluate_token_request(verified, &request, now, Some(data))
                    .is_ok_and(|evaluation| evaluation.allowed)
            })
    }

    /// Hand the engine a signed-in user's slice of `tenant`'s data (JSON text of the
    /// document [`Engine::data_slice`] cut), as a browser does: it must be a slice, and of
    /// that tenant. It replaces what the engine holds for the tenant.
    ///
    /// # Errors
    /// As [`Engine::load_tenant_data`]; `data_malformed` for a document that is not a slice
    /// or not of `tenant`.
    pub fn load_data_slice(&self, tenant: &str, document: &str) -> Result<DataLoaded, DataError> {
        if document.len() > MAX_SLICE_DOCUMENT.min(MAX_DATA_DOCUMENT) {
            return Err(DataError::TooLarge {
                what: "a data slice",
                size: document.len(),
                max: MAX_SLICE_DOCUMENT,
            });
        }
        let document: DataDocument = serde_json::from_str(document)
            .map_err(|e| DataError::Malformed(crate::error::json_message(&e)))?;
        if document.slice.is_none() || document.since.is_some() || document.tenant != tenant {
            return Err(DataError::Malformed(format!(
                "not a data slice of tenant `{}`",
                sanitize(tenant, 64)
            )));
        }
        self.apply_tenant_data(document)
    }
}
