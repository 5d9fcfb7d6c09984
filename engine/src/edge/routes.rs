//! Routes: an HTTP method and path template (`/tenants/{tenant}/reports/{id}`) mapped to an
//! action and a resource whose id and attributes come from path parameters.
//!
//! Paths are checked before any route is tried ([`canonical_segments`]): a path whose segments
//! do not decode to plain names is refused, whatever the routes say, because the upstream may
//! read it differently than the matcher would. Concretely, a segment (after strict
//! percent-decoding) may not contain `/`, `\`, `;` or a control character (NUL included), may
//! not be `.` or `..`, and may not carry a second level of encoding of those (`%252F`,
//! `%2e` inside `%25…`); empty segments (`//`) are refused; one trailing `/` is ignored.
//! Literal segments of a template compare with the decoded segment, so `%72eports` is
//! `reports`, as the upstream will read it.

use super::Headers;
use super::Lookup;
use crate::engine::{DecisionRequest, ResourceRef};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// Most routes a bundle may have.
pub const MAX_ROUTES: usize = 1024;

/// `routes.json` in a bundle directory.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutesFile {
    /// The routes, tried in order: the first that matches decides.
    pub routes: Vec<RouteSpec>,
}

/// One route as authored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// Methods this route matches (case-insensitive); absent: every method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<String>>,
    /// Path template: `/`-separated literal segments and `{name}` parameters (one whole
    /// segment each). The query string of a request is not part of its path.
    pub path: String,
    /// The action id (an action of the schema).
    pub action: String,
    /// The resource.
    pub resource: ResourceSpec,
    /// Request context entries (keys of the action's context record).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub context: BTreeMap<String, ValueSpec>,
}

/// The resource of a route.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceSpec {
    /// Entity type (`Report`).
    #[serde(rename = "type")]
    pub entity_type: String,
    /// Entity id template, e.g. `{tenant}/{id}`.
    pub id: String,
    /// Attributes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attrs: BTreeMap<String, ValueSpec>,
}

/// Where a string value comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValueSpec {
    /// A template over path parameters: `"{tenant}"`, `"fixed"`, `"{tenant}/{id}"`. Written as
    /// a JSON string.
    Template(String),
    /// A request header the **client** sets, written `{"client_header": "x-name"}`. The client
    /// can put anything there: a policy that depends on such an attribute is only as strong as
    /// the client is honest. Absent header: the attribute is left out; repeated: refused.
    ClientHeader(String),
}

impl Serialize for ValueSpec {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Template(t) => serializer.serialize_str(t),
            Self::ClientHeader(name) => {
                let mut map = Map::new();
                map.insert("client_header".into(), Value::String(name.clone()));
                Value::Object(map).serialize(serializer)
            }
        }
    }
}

impl<'de> Deserialize<'de> for ValueSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        let expected = "a template string or {\"client_header\": \"<header name>\"}";
        match value {
            Value::String(t) => Ok(Self::Template(t)),
            Value::Object(map) => match (map.len(), map.get("client_header")) {
                (1, Some(Value::String(name))) => Ok(Self::ClientHeader(name.clone())),
                _ => Err(serde::de::Error::custom(format!("expected {expected}"))),
            },
            _ => Err(serde::de::Error::custom(format!("expected {expected}"))),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Param(String),
}

#[derive(Clone, Debug)]
enum Source {
    Template(Vec<Piece>),
    ClientHeader(String),
}

/// A compiled route.
#[derive(Clone, Debug)]
pub(crate) struct Route {
    methods: Option<Vec<String>>,
    segments: Vec<Segment>,
    template: String,
    action: String,
    entity_type: String,
    id: Vec<Piece>,
    attrs: Vec<(String, Source)>,
    context: Vec<(String, Source)>,
}

/// Why a request path or its inputs cannot be mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MapError {
    /// The path is not `/`-rooted, has an invalid percent-encoding or a segment that decodes to
    /// something a name cannot be (400).
    Path(&'static str),
    /// A header used as a value is not UTF-8 (400).
    BadHeader,
    /// A header used as a value is repeated (403: which one would the upstream read?).
    RepeatedHeader,
}

/// A route's compile error: what is wrong and in which field (for locations).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RouteError {
    /// The field of the route (`path`, `resource.id`, `resource.attrs.department`, ...).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn route_error(field: impl Into<String>, message: impl Into<String>) -> RouteError {
    RouteError {
        field: field.into(),
        message: message.into(),
    }
}

/// Header names that carry credentials: never a route's value.
const CREDENTIAL_HEADERS: [&str; 3] = ["authorization", "proxy-authorization", "cookie"];

impl Route {
    /// Compile a route specification (its shape only; the bundle checks names against the
    /// schema).
    pub(crate) fn compile(spec: &RouteSpec) -> Result<Self, RouteError> {
        let path_error = |m: String| route_error("path", m);
        let Some(rest) = spec.path.strip_prefix('/') else {
            return Err(path_error(format!(
                "path `{}` must start with `/`",
                spec.path
            )));
        };
        let mut segments = Vec::new();
        let mut names: Vec<&str> = Vec::new();
        if !rest.is_empty() {
            for segment in rest.split('/') {
                if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    if !valid_name(name) {
                        return Err(path_error(format!(
                            "invalid parameter `{segment}`: use letters, digits and `_`"
                        )));
                    }
                    if names.contains(&name) {
                        return Err(path_error(format!("parameter `{segment}` is repeated")));
                    }
                    names.push(name);
                    segments.push(Segment::Param(name.to_owned()));
                } else if segment.is_empty() {
                    return Err(path_error(format!(
                        "path `{}` has an empty segment (`//` or a trailing `/`): requests' trailing slashes are ignored, leave it out",
                        spec.path
                    )));
                } else if segment.contains(['{', '}']) {
                    return Err(path_error(format!(
                        "segment `{segment}`: a parameter must be a whole segment, like `{{id}}`"
                    )));
                } else if segment.contains(['?', '#', '%', ';', '\\'])
                    || segment == "."
                    || segment == ".."
                    || segment.chars().any(char::is_control)
                {
                    return Err(path_error(format!(
                        "segment `{segment}` is not a plain name (no `?`, `#`, `%`, `;`, `\\`, dot segments or control characters)"
                    )));
                } else {
                    segments.push(Segment::Literal(segment.to_owned()));
                }
            }
        }
        let methods = match &spec.methods {
            None => None,
            Some(list) if list.is_empty() => {
                return Err(route_error(
                    "methods",
                    "`methods` is empty: leave it out to match every method",
                ));
            }
            Some(list) => {
                let mut methods = Vec::with_capacity(list.len());
                for method in list {
                    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
                        return Err(route_error(
                            "methods",
                            format!("`{method}` is not an HTTP method"),
                        ));
                    }
                    methods.push(method.to_ascii_uppercase());
                }
                Some(methods)
            }
        };
        let source = |field: String, spec: &ValueSpec| -> Result<Source, RouteError> {
            match spec {
                ValueSpec::Template(t) => parse_template(t, &names)
                    .map(Source::Template)
                    .map_err(|m| route_error(field, m)),
                ValueSpec::ClientHeader(name) => {
                    if !valid_header_name(name) {
                        Err(route_error(
                            field,
                            format!(
                                "invalid header name `{name}`: use lowercase letters, digits and the marks - _ . ! # $ % & ' * + ^ ` | ~"
                            ),
                        ))
                    } else if CREDENTIAL_HEADERS.contains(&name.as_str()) {
                        Err(route_error(
                            field,
                            format!("`{name}` carries credentials and cannot be a route value"),
                        ))
                    } else {
                        Ok(Source::ClientHeader(name.clone()))
                    }
                }
            }
        };
        let sources = |prefix: &str, map: &BTreeMap<String, ValueSpec>| {
            map.iter()
                .map(|(key, spec)| Ok((key.clone(), source(format!("{prefix}.{key}"), spec)?)))
                .collect::<Result<Vec<_>, RouteError>>()
        };
        if spec.action.is_empty() {
            return Err(route_error("action", "`action` is empty"));
        }
        if spec.resource.entity_type.is_empty() {
            return Err(route_error("resource.type", "`resource.type` is empty"));
        }
        Ok(Self {
            methods,
            segments,
            template: spec.path.clone(),
            action: spec.action.clone(),
            entity_type: spec.resource.entity_type.clone(),
            id: parse_template(&spec.resource.id, &names)
                .map_err(|m| route_error("resource.id", m))?,
            attrs: sources("resource.attrs", &spec.resource.attrs)?,
            context: sources("context", &spec.context)?,
        })
    }

    /// The path template, for decision logs.
    pub(crate) fn template(&self) -> &str {
        &self.template
    }

    /// The action this route decides.
    pub(crate) fn action(&self) -> &str {
        &self.action
    }

    /// The resource type of this route.
    pub(crate) fn entity_type(&self) -> &str {
        &self.entity_type
    }

    /// Attribute and context keys whose value comes from a client header, with the header.
    pub(crate) fn client_headers(&self) -> impl Iterator<Item = &str> {
        self.attrs
            .iter()
            .chain(&self.context)
            .filter_map(|(_, source)| match source {
                Source::ClientHeader(name) => Some(name.as_str()),
                Source::Template(_) => None,
            })
    }

    /// The attribute keys this route gives its resource.
    pub(crate) fn attr_keys(&self) -> impl Iterator<Item = &str> {
        self.attrs.iter().map(|(k, _)| k.as_str())
    }

    /// The context keys this route gives its request.
    pub(crate) fn context_keys(&self) -> impl Iterator<Item = &str> {
        self.context.iter().map(|(k, _)| k.as_str())
    }

    /// The path parameters, if `method` and the canonical `segments` match.
    fn matches<'p>(
        &self,
        method: &str,
        segments: &'p [Cow<'p, str>],
    ) -> Option<Vec<(&str, &'p str)>> {
        if let Some(methods) = &self.methods
            && !methods.iter().any(|m| m.eq_ignore_ascii_case(method))
        {
            return None;
        }
        if segments.len() != self.segments.len() {
            return None;
        }
        let mut params = Vec::new();
        for (segment, part) in self.segments.iter().zip(segments) {
            match segment {
                Segment::Literal(literal) if literal == part.as_ref() => {}
                Segment::Param(name) => params.push((name.as_str(), part.as_ref())),
                Segment::Literal(_) => return None,
            }
        }
        Some(params)
    }

    /// The decision request (without token) for a request this route matches.
    fn request(
        &self,
        params: &[(&str, &str)],
        headers: &dyn Headers,
    ) -> Result<DecisionRequest, MapError> {
        let resolve = |entries: &[(String, Source)]| -> Result<Map<String, Value>, MapError> {
            let mut map = Map::new();
            for (key, source) in entries {
                let value = match source {
                    Source::Template(pieces) => Some(render(pieces, params)),
                    Source::ClientHeader(name) => match headers.get(name) {
                        Lookup::Absent => None,
                        Lookup::One(value) => Some(
                            std::str::from_utf8(value)
                                .map_err(|_| MapError::BadHeader)?
                                .to_owned(),
                        ),
                        Lookup::Repeated => return Err(MapError::RepeatedHeader),
                    },
                };
                if let Some(value) = value {
                    map.insert(key.clone(), Value::String(value));
                }
            }
            Ok(map)
        };
        Ok(DecisionRequest {
            token: None,
            action: self.action.clone(),
            resource: ResourceRef {
                entity_type: self.entity_type.clone(),
                id: render(&self.id, params),
                attrs: resolve(&self.attrs)?,
            },
            context: resolve(&self.context)?,
        })
    }
}

/// The first route matching `method` and `path`, and its decision request (without token).
/// `Ok(None)`: the path is canonical but no route matches.
pub(crate) fn map_request<'r>(
    routes: &'r [Route],
    method: &str,
    path: &str,
    headers: &dyn Headers,
) -> Result<Option<(&'r Route, DecisionRequest)>, MapError> {
    let segments = canonical_segments(path)?;
    for route in routes {
        if let Some(params) = route.matches(method, &segments) {
            return route.request(&params, headers).map(|r| Some((route, r)));
        }
    }
    Ok(None)
}

/// Whether some route matches `method` and `path` (for CORS preflights).
pub(crate) fn any_route(routes: &[Route], method: &str, path: &str) -> bool {
    canonical_segments(path).is_ok_and(|segments| {
        routes
            .iter()
            .any(|r| r.matches(method, &segments).is_some())
    })
}

/// The decoded segments of a request path (query and fragment removed), or why the path is
/// refused.
pub(crate) fn canonical_segments(path: &str) -> Result<Vec<Cow<'_, str>>, MapError> {
    let path = path.split(['?', '#']).next().unwrap_or("");
    let Some(rest) = path.strip_prefix('/') else {
        return Err(MapError::Path("the path must start with `/`"));
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    rest.split('/')
        .map(|raw| {
            if raw.is_empty() {
                return Err(MapError::Path("the path has an empty segment (`//`)"));
            }
            let decoded = percent_decode(raw)
                .ok_or(MapError::Path("the path has an invalid percent-encoding"))?;
            check_segment(&decoded)?;
            Ok(decoded)
        })
        .collect()
}

/// A decoded segment must be a plain name the upstream cannot read as structure.
fn check_segment(segment: &str) -> Result<(), MapError> {
    if segment.contains(['/', '\\', ';']) || segment.chars().any(char::is_control) {
        return Err(MapError::Path(
            "a path segment decodes to `/`, `\\`, `;` or a control character",
        ));
    }
    if segment == "." || segment == ".." {
        return Err(MapError::Path("the path has a dot segment"));
    }
    // A second level of encoding of a separator, a dot or `%` itself: an upstream that decodes
    // again would see structure the matcher did not.
    let lower = segment.to_ascii_lowercase();
    if ["%2f", "%5c", "%00", "%2e", "%25", "%3b"]
        .iter()
        .any(|e| lower.contains(e))
    {
        return Err(MapError::Path("a path segment is encoded twice (`%25…`)"));
    }
    Ok(())
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// An HTTP header name as Envoy passes it: lowercase token characters.
pub(crate) fn valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.!#$%&'*+^`|~".contains(&b)
        })
}

fn parse_template(template: &str, names: &[&str]) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let (text, after) = rest.split_at(open);
        if text.contains('}') {
            return Err(format!("unbalanced `}}` in `{template}`"));
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text.to_owned()));
        }
        let after = after.get(1..).unwrap_or("");
        let close = after
            .find('}')
            .ok_or_else(|| format!("unclosed `{{` in `{template}`"))?;
        let (name, tail) = after.split_at(close);
        if !names.contains(&name) {
            return Err(format!("`{{{name}}}` is not a parameter of the path"));
        }
        pieces.push(Piece::Param(name.to_owned()));
        rest = tail.get(1..).unwrap_or("");
    }
    if rest.contains('}') {
        return Err(format!("unbalanced `}}` in `{template}`"));
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest.to_owned()));
    }
    Ok(pieces)
}

fn render(pieces: &[Piece], params: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(64);
    for piece in pieces {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Param(name) => {
                if let Some((_, value)) = params.iter().find(|(n, _)| n == name) {
                    out.push_str(value);
                }
            }
        }
    }
    out
}

/// Strict percent-decoding: `%` must start two hex digits and the result must be UTF-8.
/// Borrows when there is nothing to decode.
pub(crate) fn percent_decode(raw: &str) -> Option<Cow<'_, str>> {
    if !raw.contains('%') {
        return Some(Cow::Borrowed(raw));
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hi = hex(*bytes.get(i + 1)?)?;
            let lo = hex(*bytes.get(i + 2)?)?;
            out.push((hi << 4) | lo);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::tests::TestHeaders as H;
    use serde_json::json;

    fn route(spec: Value) -> Route {
        Route::compile(&serde_json::from_value(spec).unwrap()).unwrap()
    }

    fn reports() -> Route {
        route(json!({
            "methods": ["get"], "path": "/tenants/{tenant}/reports/{id}", "action": "view",
            "resource": {"type": "Report", "id": "{tenant}/{id}",
                         "attrs": {"tenant": "{tenant}", "label": {"client_header": "x-label"}}},
            "context": {"channel": "web"}
        }))
    }

    #[test]
    fn a_template_maps_path_and_headers_to_a_request() {
        let routes = [reports()];
        let headers = H::new(&[("x-label", b"blue")]);
        let (r, req) = map_request(&routes, "GET", "/tenants/acme/reports/q%203?x=1", &headers)
            .unwrap()
            .unwrap();
        assert_eq!(r.template(), "/tenants/{tenant}/reports/{id}");
        assert_eq!(req.action, "view");
        assert_eq!(req.resource.entity_type, "Report");
        assert_eq!(req.resource.id, "acme/q 3");
        assert_eq!(
            json!(req.resource.attrs),
            json!({"tenant": "acme", "label": "blue"})
        );
        assert_eq!(json!(req.context), json!({"channel": "web"}));
        // An absent header leaves the attribute out; a repeated one is refused.
        let (_, req) = map_request(&routes, "GET", "/tenants/acme/reports/q3", &H::new(&[]))
            .unwrap()
            .unwrap();
        assert_eq!(json!(req.resource.attrs), json!({"tenant": "acme"}));
        let twice = H::new(&[("x-label", b"a"), ("x-label", b"b")]);
        assert_eq!(
            map_request(&routes, "GET", "/tenants/acme/reports/q3", &twice).unwrap_err(),
            MapError::RepeatedHeader
        );
        // Encoded literals are the literal; one trailing slash is ignored.
        for path in ["/tenants/acme/%72eports/q3", "/tenants/acme/reports/q3/"] {
            let (_, req) = map_request(&routes, "get", path, &H::new(&[]))
                .unwrap()
                .unwrap();
            assert_eq!(req.resource.id, "acme/q3", "{path}");
        }
    }

    #[test]
    fn near_misses_do_not_match() {
        let routes = [reports()];
        for (method, path) in [
            ("POST", "/tenants/acme/reports/q3"),
            ("GET", "/tenants/acme/reports"),
            ("GET", "/tenants/acme/reports/q3/x"),
            ("GET", "/Tenants/acme/reports/q3"),
            ("GET", "/"),
        ] {
            assert!(
                map_request(&routes, method, path, &H::new(&[]))
                    .unwrap()
                    .is_none(),
                "{method} {path}"
            );
        }
    }

    /// The path matrix of the hardening review: every way to smuggle a separator, a dot
    /// segment or a NUL into a parameter is refused before any route is tried.
    #[test]
    fn paths_that_do_not_decode_to_plain_segments_are_refused() {
        let routes = [reports()];
        for path in [
            "/tenants/acme/reports/..%2F..%2Fglobex%2Freports%2Fq3",
            "/tenants/acme/reports/..%2f..%2fglobex%2freports%2fq3",
            "/tenants/acme/reports/%2E%2E%2F%2E%2E%2Fglobex%2Freports%2Fq3",
            "/tenants/acme/reports/q3%2Fexport",
            "/tenants/acme/reports/q3%252F..%252F",
            "/tenants/acme/reports/q3%5C..%5Cx",
            "/tenants/acme/reports/q3%00",
            "/tenants/acme/reports/%2e%2e",
            "/tenants/acme/reports/%2E",
            "/tenants/acme/reports/..",
            "/tenants/acme/./reports/q3",
            "/tenants/acme/reports/..;/q3",
            "/tenants/acme/reports/q3;jsessionid=x",
            "/tenants//acme/reports/q3",
            "/tenants/acme/reports//",
            "/tenants/acme/reports/%zz",
            "/tenants/acme/reports/%ff",
            "/tenants/acme/reports/a%4",
            "/tenants/acme/reports/%",
            "/tenants/acme/reports/q3\\x",
            "tenants/acme/reports/q3",
            "",
        ] {
            assert!(
                matches!(
                    map_request(&routes, "GET", path, &H::new(&[])),
                    Err(MapError::Path(_))
                ),
                "{path}"
            );
        }
        let bad_header = H::new(&[("x-label", b"\xff\xfe")]);
        assert_eq!(
            map_request(&routes, "GET", "/tenants/a/reports/1", &bad_header).unwrap_err(),
            MapError::BadHeader
        );
    }

    #[test]
    fn bad_templates_are_configuration_errors() {
        for (path, id, field) in [
            ("reports/{id}", "{id}", "path"),
            ("/reports/{id}", "{other}", "resource.id"),
            ("/reports/x{id}", "{id}", "path"),
            ("/reports/{id}/{id}", "{id}", "path"),
            ("/reports/{id}", "{id", "resource.id"),
            ("/reports/{id}", "id}", "resource.id"),
            ("/reports/{}", "x", "path"),
            ("/reports/", "x", "path"),
            ("/reports//x", "x", "path"),
            ("/reports/%2F", "x", "path"),
            ("/reports/..", "x", "path"),
        ] {
            let spec =
                json!({"path": path, "action": "view", "resource": {"type": "Report", "id": id}});
            let err = Route::compile(&serde_json::from_value(spec).unwrap()).unwrap_err();
            assert_eq!(err.field, field, "{path} {id}: {}", err.message);
        }
        for (header, expected) in [
            ("authorization", "carries credentials"),
            ("X-Dept", "invalid header name"),
        ] {
            let spec = json!({"path": "/r/{id}", "action": "view",
                "resource": {"type": "Report", "id": "{id}", "attrs": {"d": {"client_header": header}}}});
            let err = Route::compile(&serde_json::from_value(spec).unwrap()).unwrap_err();
            assert_eq!(err.field, "resource.attrs.d");
            assert!(err.message.contains(expected), "{}", err.message);
        }
        let err = serde_json::from_value::<RouteSpec>(json!({"path": "/r/{id}", "action": "view",
            "resource": {"type": "Report", "id": "{id}", "attrs": {"d": {"header": "x-dept"}}}}))
        .unwrap_err();
        assert!(err.to_string().contains("client_header"), "{err}");
    }

    #[test]
    fn value_specs_round_trip() {
        for value in [json!("{tenant}"), json!({"client_header": "x-a"})] {
            let spec: ValueSpec = serde_json::from_value(value.clone()).unwrap();
            assert_eq!(serde_json::to_value(&spec).unwrap(), value);
        }
    }
}
