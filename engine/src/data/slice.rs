//! A signed-in user's slice of their tenant's data: what a browser is given instead of the
//! tenant's data (the service's `GET /v1/data/{tenant}/slice`, the JS SDK's `fetchData`), and
//! the query that asks for one.
//!
//! A slice holds the principal's own stored entity and its ancestors, and each requested
//! resource with its ancestors when the principal may do at least one action on it
//! ([`crate::Engine::data_slice`] decides that). Its document names what it was cut for
//! ([`SliceScope`]), and an engine holding a slice decides nothing outside it: another
//! principal, or a stored resource the slice does not cover, is a deny
//! (`data_outside_slice`), never a decision made on missing facts.

use crate::error::{ErrorInfo, sanitize};
use serde::{Deserialize, Serialize};

/// The most resources one slice may be asked for.
pub const MAX_SLICE_RESOURCES: usize = 100;

/// The longest query (`resource=…&resource=…`) of a slice, bytes.
pub const MAX_SLICE_QUERY: usize = 32 * 1024;

/// The largest slice document the service serves and the SDK reads, bytes.
pub const MAX_SLICE_DOCUMENT: usize = 8 * 1024 * 1024;

/// An entity's uid in Cedar's JSON form, `{"type": "Report", "id": "acme/q3"}`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntityRef {
    /// The entity type, with its namespace if any (`Report`, `TechFin::Report`).
    #[serde(rename = "type")]
    pub entity_type: String,
    /// The entity id.
    pub id: String,
}

impl EntityRef {
    /// The uid `entity_type::"id"`.
    pub fn new(entity_type: impl Into<String>, id: impl Into<String>) -> Self {
        Self {
            entity_type: entity_type.into(),
            id: id.into(),
        }
    }

    /// `Type::"id"`, as Cedar writes it.
    pub fn display(&self) -> String {
        crate::wire::entity_uid_text(&self.entity_type, &self.id)
    }
}

/// What a slice document was cut for: the principal, and the requested resources it answers
/// for (those the principal may do something with). An engine holding the slice decides for
/// this principal, and on stored resources among these, only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SliceScope {
    /// The principal (`User::"acme/alice"`).
    pub principal: EntityRef,
    /// The resources it covers, ordered.
    #[serde(default)]
    pub resources: Vec<EntityRef>,
}

/// A request for a signed-in user's slice of tenant `tenant`'s data: the resources the
/// application asks about, by their full ids (`Report::"acme/q3"`).
///
/// Over HTTP it is the query of `GET /v1/data/{tenant}/slice`: one `resource=<Type>/<id>` per
/// resource, the id relative to the tenant (`resource=Report/q3` is `Report::"acme/q3"`),
/// percent-encoded as a form (`application/x-www-form-urlencoded`: `+` is a space). The type
/// ends at the first `/`, which a Cedar type name never holds, so ids may hold `/`
/// (`resource=Folder/2026/q3`) and types `::` (`resource=TechFin::Report/q3`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SliceRequest {
    tenant: String,
    resources: Vec<EntityRef>,
}

fn invalid(message: String) -> ErrorInfo {
    ErrorInfo {
        code: "request_invalid",
        message,
        help: Some(format!(
            "ask with `resource=<Type>/<id>` (the id relative to the tenant, percent-encoded), \
             at most {MAX_SLICE_RESOURCES} times"
        )),
    }
}

impl SliceRequest {
    /// A request for these resources of `tenant` (full ids, as decisions name them).
    /// Resources of another tenant (an id without the `<tenant>/` prefix) are left out: they
    /// are never in this tenant's slice. Repeated resources are asked for once.
    ///
    /// # Errors
    /// `request_invalid`: more than [`MAX_SLICE_RESOURCES`] resources, or a type that is not
    /// an entity type name.
    pub fn new(tenant: &str, resources: &[EntityRef]) -> Result<Self, ErrorInfo> {
        if resources.len() > MAX_SLICE_RESOURCES {
            return Err(invalid(format!(
                "a slice is asked for at most {MAX_SLICE_RESOURCES} resources, not {}",
                resources.len()
            )));
        }
        let mut request = Self {
            tenant: tenant.to_owned(),
            resources: Vec::with_capacity(resources.len()),
        };
        for resource in resources {
            check_type(&resource.entity_type)?;
            let relative = resource
                .id
                .strip_prefix(tenant)
                .and_then(|rest| rest.strip_prefix('/'))
                .filter(|rest| !rest.is_empty());
            if relative.is_some() && !request.resources.contains(resource) {
                request.resources.push(resource.clone());
            }
        }
        Ok(request)
    }

    /// The request a slice query (`resource=Report/q3&resource=Folder/2026/q3`, without `?`)
    /// makes for `tenant`. An empty query asks for no resources: the slice then holds the
    /// principal's own entity and its ancestors only.
    ///
    /// # Errors
    /// `request_invalid`: a query longer than [`MAX_SLICE_QUERY`], a parameter other than
    /// `resource`, a bad percent escape or UTF-8, a value without a type, a `/` and an id, or
    /// more than [`MAX_SLICE_RESOURCES`] resources. The message never holds the query.
    pub fn from_query(tenant: &str, query: &str) -> Result<Self, ErrorInfo> {
        if query.len() > MAX_SLICE_QUERY {
            return Err(invalid(format!(
                "the query is {} bytes, over the limit of {MAX_SLICE_QUERY}",
                query.len()
            )));
        }
        let mut resources = Vec::new();
        for (index, pair) in query.split('&').filter(|p| !p.is_empty()).enumerate() {
            let at = index + 1;
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if form_decode(name).as_deref() != Some("resource") {
                return Err(invalid(format!(
                    "parameter {at} of the query is not `resource` (the only one a slice takes)"
                )));
            }
            if resources.len() == MAX_SLICE_RESOURCES {
                return Err(invalid(format!(
                    "a slice is asked for at most {MAX_SLICE_RESOURCES} resources"
                )));
            }
            let value = form_decode(value).ok_or_else(|| {
                invalid(format!("`resource` {at} is not percent-encoded UTF-8 text"))
            })?;
            let (entity_type, id) = value
                .split_once('/')
                .filter(|(ty, id)| !ty.is_empty() && !id.is_empty())
                .ok_or_else(|| {
                    invalid(format!(
                        "`resource` {at} is not `<Type>/<id>` (a type, a `/` and an id)"
                    ))
                })?;
            check_type(entity_type)?;
            let resource = EntityRef::new(entity_type, format!("{tenant}/{id}"));
            if !resources.contains(&resource) {
                resources.push(resource);
            }
        }
        Ok(Self {
            tenant: tenant.to_owned(),
            resources,
        })
    }

    /// The query of this request (without `?`; empty for no resources), which
    /// [`SliceRequest::from_query`] reads back. `/` and `:` stay as they are; everything else
    /// but letters, digits and `-._~` is percent-encoded.
    pub fn query(&self) -> String {
        let mut out = String::new();
        for resource in &self.resources {
            let relative = resource
                .id
                .strip_prefix(&self.tenant)
                .and_then(|rest| rest.strip_prefix('/'))
                .unwrap_or(&resource.id);
            if !out.is_empty() {
                out.push('&');
            }
            out.push_str("resource=");
            percent_encode(&mut out, &resource.entity_type);
            out.push('/');
            percent_encode(&mut out, relative);
        }
        out
    }

    /// The tenant.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The resources asked for, by full id, each once, in the order asked.
    pub fn resources(&self) -> &[EntityRef] {
        &self.resources
    }
}

/// A type name as a query or the SDK gives it: an entity type name, or `request_invalid`
/// (what the schema declares is the engine's to judge, not the query's).
fn check_type(name: &str) -> Result<(), ErrorInfo> {
    name.parse::<cedar_policy::EntityTypeName>()
        .map(|_| ())
        .map_err(|_| {
            invalid(format!(
                "`{}` is not an entity type name",
                sanitize(name, 80)
            ))
        })
}

/// `text` decoded as a form value: `+` is a space, `%XX` a byte; `None` for a bad escape or
/// bytes that are not UTF-8.
fn form_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                i += 2;
            }
            _ => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn percent_encode(out: &mut String, text: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/' | b':') {
            out.push(char::from(b));
        } else {
            out.push('%');
            for nibble in [b >> 4, b & 15] {
                out.extend(HEX.get(usize::from(nibble)).map(|&h| char::from(h)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(query: &str) -> Vec<(String, String)> {
        SliceRequest::from_query("acme", query)
            .unwrap()
            .resources()
            .iter()
            .map(|r| (r.entity_type.clone(), r.id.clone()))
            .collect()
    }

    #[test]
    fn the_query_reads_types_with_namespaces_and_ids_with_slashes() {
        assert_eq!(
            parsed("resource=Report/q3&resource=TechFin::Folder/2026/q3&resource=Report%2Fx"),
            [
                ("Report".into(), "acme/q3".into()),
                ("TechFin::Folder".into(), "acme/2026/q3".into()),
                ("Report".into(), "acme/x".into()),
            ]
        );
        // Form decoding: `+` is a space, escapes are bytes of UTF-8; repeats are asked once.
        assert_eq!(
            parsed("resource=Report/a+b%2Bc%26d%C3%A9&&resource=Report/a%20b%2Bc%26d%C3%A9"),
            [("Report".into(), "acme/a b+c&dé".into())]
        );
        assert!(parsed("").is_empty());
    }

    #[test]
    fn the_query_is_what_from_query_reads_back() {
        let ids = [
            "q3",
            "2026/q3",
            "a b+c&d=e%f#g?h",
            "é/日本/😀",
            "\"quoted\"\\",
            "tab\there",
        ];
        let resources: Vec<EntityRef> = ids
            .iter()
            .map(|id| EntityRef::new("TechFin::Report", format!("acme/{id}")))
            .chain([
                // Another tenant's, and the tenant's name alone: never in acme's slice.
                EntityRef::new("Report", "globex/q3"),
                EntityRef::new("Report", "acme/"),
                EntityRef::new("Report", "acmex/q3"),
            ])
            .collect();
        let request = SliceRequest::new("acme", &resources).unwrap();
        assert_eq!(request.resources().len(), ids.len());
        let query = request.query();
        assert!(
            query.starts_with("resource=TechFin::Report/q3&resource=TechFin::Report/2026/q3&"),
            "{query}"
        );
        assert_eq!(SliceRequest::from_query("acme", &query).unwrap(), request);
    }

    #[test]
    fn malformed_and_oversized_queries_are_refused_without_echoing_them() {
        for query in [
            "resource=Report",
            "resource=/q3",
            "resource=Report/",
            "resource",
            "resource=Not%20A%20Type/q3",
            "resource=Report/%ZZ",
            "resource=Report/%C3",
            "resource=Report/%4",
            "resource=Report/%+1",
            "secret-token=eyJhbGciOi",
            "resource=Report/q3&since=1",
        ] {
            let error = SliceRequest::from_query("acme", query).unwrap_err();
            assert_eq!(error.code, "request_invalid", "{query}");
            assert!(!error.message.contains("eyJ"), "{}", error.message);
        }
        let many = (0..=MAX_SLICE_RESOURCES)
            .map(|i| format!("resource=Report/r{i}"))
            .collect::<Vec<_>>()
            .join("&");
        assert_eq!(
            SliceRequest::from_query("acme", &many).unwrap_err().code,
            "request_invalid"
        );
        let long = format!("resource=Report/{}", "x".repeat(MAX_SLICE_QUERY));
        assert_eq!(
            SliceRequest::from_query("acme", &long).unwrap_err().code,
            "request_invalid"
        );
        let resources = vec![EntityRef::new("Report", "acme/q3"); MAX_SLICE_RESOURCES + 1];
        assert_eq!(
            SliceRequest::new("acme", &resources).unwrap_err().code,
            "request_invalid"
        );
        assert!(SliceRequest::new("acme", &[EntityRef::new("not a type", "acme/q3")]).is_err());
    }
}
