//! Routes: an HTTP method and path template (`/tenants/{tenant}/reports/{id}`) mapped to an
//! action and a resource whose id and attributes come from path parameters and headers.

use portcullis_engine::{DecisionRequest, ResourceRef};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// One route as configured.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// Methods this route matches (uppercase); absent: every method.
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// Path template: `/`-separated literal segments and `{name}` parameters (one whole
    /// segment each). The query string is ignored.
    pub path: String,
    /// The action id.
    pub action: String,
    /// The resource.
    pub resource: ResourceSpec,
    /// Request context (Cedar `context` record entries).
    #[serde(default)]
    pub context: BTreeMap<String, ValueSpec>,
}

/// The resource of a route.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceSpec {
    /// Entity type (`Report`).
    #[serde(rename = "type")]
    pub entity_type: String,
    /// Entity id template, e.g. `{tenant}/{id}`.
    pub id: String,
    /// Attributes.
    #[serde(default)]
    pub attrs: BTreeMap<String, ValueSpec>,
}

/// Where a string value comes from.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum ValueSpec {
    /// A template over path parameters: `"{tenant}"`, `"fixed"`, `"{tenant}/{id}"`.
    Template(String),
    /// A request header; the attribute is absent when the header is.
    Header(HeaderSpec),
}

/// `{"header": "x-department"}`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderSpec {
    /// Header name (lowercase).
    pub header: String,
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
    Header(String),
}

/// A compiled route.
#[derive(Clone, Debug)]
pub struct Route {
    methods: Option<Vec<String>>,
    segments: Vec<Segment>,
    template: String,
    action: String,
    entity_type: String,
    id: Vec<Piece>,
    attrs: Vec<(String, Source)>,
    context: Vec<(String, Source)>,
}

/// Why a request could not be mapped (answered with 400).
#[derive(Debug, PartialEq, Eq)]
pub enum MapError {
    /// A path parameter is not valid percent-encoded UTF-8.
    BadEncoding,
    /// A header used as a value is not valid UTF-8.
    BadHeader,
}

/// Reads request headers; `None` when absent. Names are lowercase.
pub trait Headers {
    /// The value of header `name`, as raw bytes.
    fn header(&self, name: &str) -> Option<Vec<u8>>;
}

/// Request headers as a list, for the unit tests of this module and of `gate`.
#[cfg(test)]
pub(crate) mod test_headers {
    /// `(name, value)` pairs; the first pair with the name answers.
    pub(crate) struct TestHeaders<'a>(pub Vec<(&'static str, &'a [u8])>);

    impl super::Headers for TestHeaders<'_> {
        fn header(&self, name: &str) -> Option<Vec<u8>> {
            self.0
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_vec())
        }
    }
}

impl Route {
    /// Validate a route specification.
    ///
    /// # Errors
    /// A malformed template or a template naming a parameter the path does not have.
    pub fn compile(spec: &RouteSpec) -> Result<Self, String> {
        let Some(rest) = spec.path.strip_prefix('/') else {
            return Err(format!("path `{}` must start with `/`", spec.path));
        };
        let mut segments = Vec::new();
        let mut names: Vec<&str> = Vec::new();
        for segment in rest.split('/') {
            if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                if !valid_name(name) || names.contains(&name) {
                    return Err(format!("invalid or repeated parameter `{segment}`"));
                }
                names.push(name);
                segments.push(Segment::Param(name.to_owned()));
            } else if segment.contains(['{', '}', '?', '#']) {
                return Err(format!(
                    "segment `{segment}`: a parameter must be a whole segment, like `{{id}}`"
                ));
            } else {
                segments.push(Segment::Literal(segment.to_owned()));
            }
        }
        let methods = spec.methods.as_ref().map(|m| {
            m.iter()
                .map(|method| method.to_ascii_uppercase())
                .collect::<Vec<_>>()
        });
        if methods.as_ref().is_some_and(Vec::is_empty) {
            return Err("`methods` is empty: leave it out to match every method".into());
        }
        let source = |what: &str, spec: &ValueSpec| -> Result<Source, String> {
            match spec {
                ValueSpec::Template(t) => parse_template(t, &names)
                    .map(Source::Template)
                    .map_err(|e| format!("{what}: {e}")),
                ValueSpec::Header(h) if crate::config::valid_header_name(&h.header) => {
                    Ok(Source::Header(h.header.clone()))
                }
                ValueSpec::Header(h) => Err(format!("{what}: invalid header name `{}`", h.header)),
            }
        };
        let sources = |map: &BTreeMap<String, ValueSpec>| {
            map.iter()
                .map(|(key, spec)| Ok((key.clone(), source(key, spec)?)))
                .collect::<Result<Vec<_>, String>>()
        };
        Ok(Self {
            methods,
            segments,
            template: spec.path.clone(),
            action: spec.action.clone(),
            entity_type: spec.resource.entity_type.clone(),
            id: parse_template(&spec.resource.id, &names)
                .map_err(|e| format!("resource id: {e}"))?,
            attrs: sources(&spec.resource.attrs)?,
            context: sources(&spec.context)?,
        })
    }

    /// The path template, for the decision log.
    pub fn template(&self) -> &str {
        &self.template
    }

    /// The raw (still percent-encoded) path parameters, if `method` and `path` match.
    fn matches<'p>(&self, method: &str, path: &'p str) -> Option<Vec<(&str, &'p str)>> {
        if let Some(methods) = &self.methods
            && !methods.iter().any(|m| m == method)
        {
            return None;
        }
        let path = path.split(['?', '#']).next().unwrap_or("");
        let rest = path.strip_prefix('/')?;
        let mut params = Vec::new();
        let mut parts = rest.split('/');
        for segment in &self.segments {
            let part = parts.next()?;
            match segment {
                Segment::Literal(literal) if literal == part => {}
                Segment::Param(name) if !part.is_empty() => params.push((name.as_str(), part)),
                _ => return None,
            }
        }
        parts.next().is_none().then_some(params)
    }

    /// The decision request (without token) for a request this route matches.
    fn request(
        &self,
        raw_params: &[(&str, &str)],
        headers: &dyn Headers,
    ) -> Result<DecisionRequest, MapError> {
        let params = raw_params
            .iter()
            .map(|(name, raw)| Ok((*name, percent_decode(raw).ok_or(MapError::BadEncoding)?)))
            .collect::<Result<Vec<_>, MapError>>()?;
        let resolve = |entries: &[(String, Source)]| -> Result<Map<String, Value>, MapError> {
            let mut map = Map::with_capacity(entries.len());
            for (key, source) in entries {
                let value = match source {
                    Source::Template(pieces) => Some(render(pieces, &params)),
                    Source::Header(name) => headers
                        .header(name)
                        .map(|v| String::from_utf8(v).map_err(|_| MapError::BadHeader))
                        .transpose()?,
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
                id: render(&self.id, &params),
                attrs: resolve(&self.attrs)?,
            },
            context: resolve(&self.context)?,
        })
    }
}

/// The first route matching `method` and `path`, and its decision request (without token).
/// `Ok(None)`: no route matches.
///
/// # Errors
/// The matching route's parameters or headers are not valid UTF-8.
pub fn map_request<'r>(
    routes: &'r [Route],
    method: &str,
    path: &str,
    headers: &dyn Headers,
) -> Result<Option<(&'r Route, DecisionRequest)>, MapError> {
    for route in routes {
        if let Some(params) = route.matches(method, path) {
            return route.request(&params, headers).map(|r| Some((route, r)));
        }
    }
    Ok(None)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
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

fn render(pieces: &[Piece], params: &[(&str, String)]) -> String {
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
pub(crate) fn percent_decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hi = hex(*bytes.get(i + 1)?)?;
            let lo = hex(*bytes.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
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
    use serde_json::json;

    use super::test_headers::TestHeaders as H;

    fn route(spec: serde_json::Value) -> Route {
        Route::compile(&serde_json::from_value(spec).unwrap()).unwrap()
    }

    fn reports() -> Route {
        route(json!({
            "methods": ["get"], "path": "/tenants/{tenant}/reports/{id}", "action": "view",
            "resource": {"type": "Report", "id": "{tenant}/{id}",
                         "attrs": {"tenant": "{tenant}", "department": {"header": "x-department"}}},
            "context": {"channel": "web"}
        }))
    }

    #[test]
    fn a_template_maps_path_and_headers_to_a_request() {
        let routes = [reports()];
        let headers = H(vec![("x-department", b"finance")]);
        let (r, req) = map_request(&routes, "GET", "/tenants/acme/reports/q%203?x=1", &headers)
            .unwrap()
            .unwrap();
        assert_eq!(r.template(), "/tenants/{tenant}/reports/{id}");
        assert_eq!(req.action, "view");
        assert_eq!(req.resource.entity_type, "Report");
        assert_eq!(req.resource.id, "acme/q 3");
        assert_eq!(
            json!(req.resource.attrs),
            json!({"tenant": "acme", "department": "finance"})
        );
        assert_eq!(json!(req.context), json!({"channel": "web"}));
        // An absent header leaves the attribute out.
        let (_, req) = map_request(&routes, "GET", "/tenants/acme/reports/q3", &H(vec![]))
            .unwrap()
            .unwrap();
        assert_eq!(json!(req.resource.attrs), json!({"tenant": "acme"}));
    }

    #[test]
    fn near_misses_do_not_match() {
        let routes = [reports()];
        for (method, path) in [
            ("POST", "/tenants/acme/reports/q3"),
            ("GET", "/tenants/acme/reports"),
            ("GET", "/tenants/acme/reports/q3/x"),
            ("GET", "/tenants//reports/q3"),
            ("GET", "/tenants/acme/reports/"),
            ("GET", "tenants/acme/reports/q3"),
            ("GET", ""),
            ("GET", "/Tenants/acme/reports/q3"),
        ] {
            assert!(
                map_request(&routes, method, path, &H(vec![]))
                    .unwrap()
                    .is_none(),
                "{method} {path}"
            );
        }
    }

    #[test]
    fn bad_encodings_are_errors_not_panics() {
        let routes = [reports()];
        for path in [
            "/tenants/%zz/reports/1",
            "/tenants/%ff/reports/1",
            "/tenants/%/reports/1",
            "/tenants/a%4/reports/1",
        ] {
            assert_eq!(
                map_request(&routes, "GET", path, &H(vec![])).unwrap_err(),
                MapError::BadEncoding,
                "{path}"
            );
        }
        let bad_header = H(vec![("x-department", b"\xff\xfe")]);
        assert_eq!(
            map_request(&routes, "GET", "/tenants/a/reports/1", &bad_header).unwrap_err(),
            MapError::BadHeader
        );
    }

    #[test]
    fn bad_templates_are_configuration_errors() {
        for (path, id) in [
            ("reports/{id}", "{id}"),
            ("/reports/{id}", "{other}"),
            ("/reports/x{id}", "{id}"),
            ("/reports/{id}/{id}", "{id}"),
            ("/reports/{id}", "{id"),
            ("/reports/{id}", "id}"),
            ("/reports/{}", "x"),
        ] {
            let spec =
                json!({"path": path, "action": "view", "resource": {"type": "Report", "id": id}});
            assert!(
                Route::compile(&serde_json::from_value(spec).unwrap()).is_err(),
                "{path} {id}"
            );
        }
    }
}
