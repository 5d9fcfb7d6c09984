//! Reading requests at an edge without echoing them: a JSON error names where it is and what
//! was expected, never the value it found (a token pasted into the wrong field must not come
//! back in the response, or in a log line made from it), and no Rust type name.

use crate::error::ErrorInfo;
use serde::Deserialize;

/// `Type::"id"` as Cedar writes an entity uid, and therefore parses it
/// ([`parse_entity_uid_text`]): the id escaped as Rust's `escape_debug` escapes it (`\"`, `\\`,
/// `\t`, `\u{e249}`, ...). The one text form of a uid the engine, the CLI, the JS SDK and the
/// conformance runners write and read.
pub fn entity_uid_text(entity_type: &str, id: &str) -> String {
    let mut out = String::with_capacity(entity_type.len() + id.len() + 4);
    push_entity_uid(&mut out, entity_type, id);
    out
}

/// [`entity_uid_text`] onto `out`; an id that needs no escape (nearly all) is copied at once.
fn push_entity_uid(out: &mut String, entity_type: &str, id: &str) {
    out.push_str(entity_type);
    out.push_str("::\"");
    // Printable ASCII but the three quoted characters is the common id, checked a byte at a
    // time (this runs on every decision); anything else asks `escape_debug` itself.
    let plain = if id.is_ascii() {
        id.bytes()
            .all(|b| matches!(b, b' '..=b'~') && !matches!(b, b'"' | b'\\' | b'\''))
    } else {
        id.chars().all(|c| c.escape_debug().len() == 1)
    };
    if plain {
        out.push_str(id);
    } else {
        out.extend(id.escape_debug());
    }
    out.push('"');
}

/// The entity type and id of Cedar's `Type::"id"` text; `None` for anything else.
pub fn parse_entity_uid_text(text: &str) -> Option<(String, String)> {
    let uid: cedar_policy::EntityUid = text.parse().ok()?;
    Some((uid.type_name().to_string(), uid.id().unescaped().to_owned()))
}

/// The bearer token of a request's `Authorization` header `values` (RFC 6750 §2.1: `Bearer` in
/// any case, then the token): `None` when there is no such header. For HTTP APIs whose body may carry the token
/// too ([`DecisionRequest::token`](crate::DecisionRequest)): the caller's token travels one way,
/// [`apply_bearer`] refuses two.
///
/// # Errors
/// `request_invalid` for another scheme, an empty token, or a header sent more than once (a
/// proxy joins repeats with `,`, which no bearer token contains). The message never holds the
/// value.
pub fn bearer_token(values: &[&[u8]]) -> Result<Option<String>, ErrorInfo> {
    let invalid = |message: &str| ErrorInfo {
        code: "request_invalid",
        message: message.to_owned(),
        help: Some(
            "send `Authorization: Bearer <JWT>` once, or the token in the body, not both".into(),
        ),
    };
    let value = match values {
        [] => return Ok(None),
        [value] => value.trim_ascii(),
        _ => return Err(invalid("the `Authorization` header is sent more than once")),
    };
    let token = match value.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer ") => value.get(7..).unwrap_or(b""),
        None if value.eq_ignore_ascii_case(b"bearer") => b"",
        _ => return Err(invalid("the `Authorization` header is not a bearer token")),
    };
    let token = token.trim_ascii();
    if token.contains(&b',') {
        return Err(invalid("the `Authorization` header is sent more than once"));
    }
    match std::str::from_utf8(token) {
        Ok(token) if !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(Some(token.to_owned()))
        }
        _ => Err(invalid(
            "the `Authorization` header's bearer token is empty or not a token",
        )),
    }
}

/// The one token of a request that can carry it in two places (the transport's `Authorization`
/// header and the body's `token`; a batch's header and its `token`): RFC 6750 §2 allows one
/// way, so that no one ever has to guess which of two tokens was decided.
///
/// # Errors
/// `request_invalid` when both carry a token.
pub fn one_token(
    transport: Option<String>,
    body: Option<String>,
) -> Result<Option<String>, ErrorInfo> {
    match (transport, body) {
        (Some(_), Some(_)) => Err(ErrorInfo {
            code: "request_invalid",
            message: "the token is sent in more than one way (RFC 6750 §2): send it once, in \
                      the `Authorization` header, a batch's `token` or a request's `token`"
                .to_owned(),
            help: None,
        }),
        (transport, body) => Ok(transport.or(body)),
    }
}

/// Give `request` the transport's bearer token ([`bearer_token`]; for a batch, the batch's one
/// token), unless it has its own: then [`one_token`] refuses the request, left as it was.
///
/// # Errors
/// `request_invalid` when both the transport and the request carry a token.
pub fn apply_bearer(
    request: &mut crate::DecisionRequest,
    bearer: Option<&str>,
) -> Result<(), ErrorInfo> {
    if bearer.is_some() {
        request.token = one_token(bearer.map(str::to_owned), request.token.clone())?;
    }
    Ok(())
}

/// How the engine's own keys are written in JSON it hands out: `snake_case` (the HTTP APIs,
/// the CLI, the audit log) or `camelCase` (the JS SDK).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KeyCase {
    /// `decision_id`.
    #[default]
    Snake,
    /// `decisionId`.
    Camel,
}

/// Parse JSON `text` as `T`; the error is `request_invalid` with a message that holds no part
/// of the input but the names of the fields on the way to the problem.
///
/// # Errors
/// `request_invalid`, described by [`describe_json_error`].
pub fn parse_request<'de, T: Deserialize<'de>>(what: &str, text: &'de str) -> Result<T, ErrorInfo> {
    // The fast path: `serde_path_to_error` tracks the path at every key (a `String` per map
    // key), on every request. Only a request that fails is parsed again, with it, for the path
    // (the same input fails the same way).
    if let Ok(value) = serde_json::from_str(text) {
        return Ok(value);
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed: Result<T, _> = serde_path_to_error::deserialize(&mut de);
    let result = parsed.map_err(|err| (safe_path(err.path()), err.into_inner()));
    let result = result.and_then(|value| de.end().map(|()| value).map_err(|e| (String::new(), e)));
    result.map_err(|(path, err)| {
        let message = describe_json_error(what, &err);
        ErrorInfo {
            code: "request_invalid",
            message: if path.is_empty()
                || message.starts_with(&format!("invalid {what}: unknown field"))
            {
                message
            } else {
                format!("{message} (at `{path}`)")
            },
            help: None,
        }
    })
}

/// A field path, every key that is not a plain name replaced by `?` (keys are input too), and
/// without its last key when that key is the unknown field itself.
fn safe_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let plain = |s: &str| {
        !s.is_empty() && s.len() <= 40 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    };
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(if plain(key) { key } else { "?" });
            }
            Segment::Unknown => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push('?');
            }
        }
    }
    out
}

/// What went wrong in a JSON document, in words that never include the input's values:
/// `invalid request: expected a string, found a number at line 1 column 12`.
pub fn describe_json_error(what: &str, err: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let at = format!("at line {} column {}", err.line(), err.column());
    let text = err.to_string();
    // serde_json's message, without its own trailing location.
    let message = text
        .rsplit_once(" at line ")
        .map_or(text.as_str(), |(m, _)| m);
    let detail = match err.classify() {
        Category::Io => "cannot be read".to_owned(),
        Category::Eof => "ends too early".to_owned(),
        Category::Syntax => "is not valid JSON".to_owned(),
        Category::Data => data_error(message),
    };
    format!("invalid {what}: {detail} {at}")
}

/// serde's data errors, with found values and type names rewritten.
fn data_error(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("missing field `") {
        return format!("missing field `{}`", plain_name(rest));
    }
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let field = plain_name(rest);
        let expected = rest
            .split_once("expected ")
            .map(|(_, e)| format!(", expected {e}"))
            .unwrap_or_default();
        return format!("unknown field `{field}`{expected}");
    }
    for prefix in ["invalid type: ", "invalid value: ", "invalid length "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            let found = rest.split([' ', ',']).next().unwrap_or("value");
            let found = match found {
                "string" | "integer" | "floating" | "boolean" | "null" | "sequence" | "map"
                | "unit" | "char" | "bytes" => kind(found),
                _ => "a value",
            };
            let expected = rest
                .rsplit_once("expected ")
                .map_or("something else", |(_, e)| e);
            return format!(
                "{}expected {}, found {found}",
                if prefix == "invalid value: " {
                    "invalid value: "
                } else {
                    ""
                },
                expected_kind(expected)
            );
        }
    }
    // Our own messages (custom errors) carry no input.
    message.to_owned()
}

fn plain_name(rest: &str) -> String {
    let name = rest.split('`').next().unwrap_or("");
    if name.len() <= 40 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        name.to_owned()
    } else {
        "?".to_owned()
    }
}

fn kind(found: &str) -> &'static str {
    match found {
        "string" | "char" => "a string",
        "integer" | "floating" => "a number",
        "boolean" => "a boolean",
        "null" | "unit" => "null",
        "sequence" => "an array",
        "map" => "an object",
        _ => "a value",
    }
}

/// serde's "expected" text in JSON words: `struct DecisionRequest` is an object.
fn expected_kind(expected: &str) -> String {
    let e = expected.trim();
    if e.starts_with("struct ") || e == "a map" || e.starts_with("a map") {
        "an object".to_owned()
    } else if e.starts_with("a sequence") || e.starts_with("tuple") {
        "an array".to_owned()
    } else if e.starts_with("unit variant")
        || e.starts_with("variant identifier")
        || e.starts_with("enum ")
    {
        "one of the documented names".to_owned()
    } else if [
        "u8", "u16", "u32", "u64", "i8", "i16", "i32", "i64", "f32", "f64", "usize",
    ]
    .contains(&e)
        || e.starts_with("an integer")
    {
        "a number".to_owned()
    } else if e
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b" `,_-".contains(&b))
        && e.len() <= 200
    {
        e.to_owned()
    } else {
        "something else".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::DecisionRequest;

    #[test]
    fn a_bearer_header_is_read_per_rfc_6750_and_never_echoed() {
        let token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl";
        assert_eq!(bearer_token(&[]).unwrap(), None);
        let twice = format!("Bearer {token}");
        let err = bearer_token(&[twice.as_bytes(), twice.as_bytes()]).unwrap_err();
        assert!(err.message.contains("more than once"), "{}", err.message);
        for value in [
            format!("Bearer {token}"),
            format!("bearer {token}"),
            format!("BEARER  {token} "),
        ] {
            assert_eq!(
                bearer_token(&[value.as_bytes()]).unwrap().as_deref(),
                Some(token)
            );
        }
        for (value, why) in [
            (format!("Basic {token}"), "not a bearer token"),
            (format!("Bearer{token}"), "not a bearer token"),
            ("Bearer ".to_owned(), "empty"),
            (format!("Bearer {token}, Bearer {token}"), "more than once"),
            (format!("Bearer {token} extra"), "empty or not a token"),
        ] {
            let err = bearer_token(&[value.as_bytes()]).unwrap_err();
            assert_eq!(err.code, "request_invalid");
            assert!(err.message.contains(why), "{value}: {}", err.message);
            assert!(!err.message.contains(token));
        }
    }

    #[test]
    fn a_token_travels_one_way() {
        let mut request = DecisionRequest::default();
        apply_bearer(&mut request, None).unwrap();
        assert_eq!(request.token, None);
        apply_bearer(&mut request, Some("a.b.c")).unwrap();
        assert_eq!(request.token.as_deref(), Some("a.b.c"));
        // The request's own token stays when the transport has none.
        apply_bearer(&mut request, None).unwrap();
        assert_eq!(request.token.as_deref(), Some("a.b.c"));
        let err = apply_bearer(&mut request, Some("d.e.f")).unwrap_err();
        assert_eq!(err.code, "request_invalid");
        assert!(err.message.contains("more than one way"), "{}", err.message);
        assert_eq!(request.token.as_deref(), Some("a.b.c"), "unchanged");
    }

    #[test]
    fn errors_never_echo_what_was_sent() {
        let token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl";
        for body in [
            format!(r#"{{"action": "{token}", "resource": "{token}"}}"#),
            format!(
                r#"{{"token": 42, "action": "view", "resource": {{"type": "R", "id": "{token}", "attrs": "{token}"}}}}"#
            ),
            format!(r#"{{"{token}": 1}}"#),
            format!(r#"["{token}"]"#),
            "42".to_owned(),
            format!(
                r#"{{"action": "view", "resource": {{"type": "R", "id": 1}}, "tokn": "{token}"}}"#
            ),
            format!(r#"{{"action": "{token}"#),
        ] {
            let err = parse_request::<DecisionRequest>("request", &body).unwrap_err();
            assert_eq!(err.code, "request_invalid");
            assert!(!err.message.contains("eyJ"), "{}", err.message);
            assert!(!err.message.contains("DecisionRequest"), "{}", err.message);
            assert!(!err.message.contains("struct"), "{}", err.message);
        }
        let err = parse_request::<DecisionRequest>("request", "42").unwrap_err();
        assert!(
            err.message.contains("expected an object, found a number"),
            "{}",
            err.message
        );
        let err = parse_request::<DecisionRequest>(
            "request",
            r#"{"action": "view", "resource": {"type": "R", "id": 7}}"#,
        )
        .unwrap_err();
        assert!(err.message.contains("at `resource.id`"), "{}", err.message);
        assert!(
            err.message.contains("expected a string, found a number"),
            "{}",
            err.message
        );
        let err = parse_request::<DecisionRequest>("request", r#"{"action": "view"}"#).unwrap_err();
        assert!(
            err.message.contains("missing field `resource`"),
            "{}",
            err.message
        );
    }
}

#[cfg(test)]
mod uid_tests {
    use super::*;

    #[test]
    fn uids_are_written_as_cedar_writes_them_and_read_back() {
        for (ty, id) in [
            ("Report", "q3"),
            ("A::B", "x\"y\\z"),
            ("Action", "tab\there"),
            ("Action", "\u{e249}\u{1}é"),
            ("Report", ""),
            ("A::Action", "it's"),
            ("A::Action", "\u{1c}@A"),
            ("A::Action", "nl\n\r\0"),
            ("A::Action", "\u{301}x"),
            ("A::Action", "::\""),
            ("Report", "plain ascii-id_0.9~"),
            ("Report", "\u{7f}"),
        ] {
            let text = entity_uid_text(ty, id);
            let cedar = cedar_policy::EntityUid::from_type_name_and_id(
                ty.parse().unwrap(),
                cedar_policy::EntityId::new(id),
            );
            assert_eq!(text, cedar.to_string());
            assert_eq!(
                parse_entity_uid_text(&text),
                Some((ty.to_owned(), id.to_owned()))
            );
        }
        for bad in ["Report", "::\"x\"", "Report::x", "Report::\"x", "1::\"x\""] {
            assert_eq!(parse_entity_uid_text(bad), None, "{bad}");
        }
    }
}
