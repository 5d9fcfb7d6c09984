//! Where a request's bearer token is (RFC 6750 §2): a header with a prefix, a cookie or a query
//! parameter, as configured. A client must not use more than one method.

use super::{EdgeConfigError, Headers, Lookup};
use crate::edge::routes::percent_decode;
use serde::{Deserialize, Serialize};

/// One place a token may come from.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum TokenSource {
    /// A request header; `prefix` (compared case-insensitively, e.g. `Bearer `) is removed.
    Header {
        /// Header name (lowercase).
        name: String,
        /// Required prefix.
        #[serde(default)]
        prefix: String,
    },
    /// A cookie.
    Cookie {
        /// Cookie name.
        name: String,
    },
    /// A query parameter (RFC 6750 §2.3 discourages it: URLs end up in logs).
    Query {
        /// Parameter name.
        name: String,
    },
}

/// Why no single token could be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TokenProblem {
    /// Tokens in more than one configured place (400, `invalid_request`).
    SeveralSources,
    /// The token's header, cookie header or parameter is repeated (403).
    Repeated,
}

pub(crate) fn validate_sources(sources: &[TokenSource]) -> Result<(), EdgeConfigError> {
    if sources.is_empty() {
        return Err(EdgeConfigError("`token` needs at least one source".into()));
    }
    for source in sources {
        let (name, ok) = match source {
            TokenSource::Header { name, .. } => (name, super::routes::valid_header_name(name)),
            TokenSource::Cookie { name } | TokenSource::Query { name } => (
                name,
                !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_graphic() && !b"=;&%".contains(&b)),
            ),
        };
        if !ok {
            return Err(EdgeConfigError(format!(
                "invalid token source name `{name}`"
            )));
        }
    }
    Ok(())
}

/// A token's bytes as text, trimmed. A token that is not UTF-8 is still a (bad) token: it must
/// not read as "no token".
fn token_text(bytes: &[u8]) -> String {
    let bytes = bytes.trim_ascii();
    String::from_utf8_lossy(bytes).into_owned()
}

fn one(lookup: Lookup<'_>) -> Result<Option<&[u8]>, TokenProblem> {
    match lookup {
        Lookup::Absent => Ok(None),
        Lookup::One(value) => Ok(Some(value)),
        Lookup::Repeated => Err(TokenProblem::Repeated),
    }
}

/// The token from the configured sources.
pub(crate) fn find_token(
    sources: &[TokenSource],
    headers: &dyn Headers,
    path: &str,
) -> Result<Option<String>, TokenProblem> {
    let mut found: Option<String> = None;
    for source in sources {
        let token = match source {
            TokenSource::Header { name, prefix } => match one(headers.get(name))? {
                // A proxy that joins a repeated header does so with `,`, which no bearer token
                // (RFC 6750 `b64token`) contains: it is a repeated header too.
                Some(value) if value.contains(&b',') => return Err(TokenProblem::Repeated),
                value => value,
            }
            .and_then(|value| {
                let head = value.get(..prefix.len())?;
                head.eq_ignore_ascii_case(prefix.as_bytes())
                    .then(|| value.get(prefix.len()..).unwrap_or_default())
                    .map(token_text)
            }),
            TokenSource::Cookie { name } => match one(headers.get("cookie"))? {
                None => None,
                Some(cookies) => {
                    let mut values = cookies.split(|&b| b == b';').filter_map(|pair| {
                        let rest = pair.trim_ascii_start().strip_prefix(name.as_bytes())?;
                        rest.strip_prefix(b"=")
                    });
                    match (values.next(), values.next()) {
                        (Some(_), Some(_)) => return Err(TokenProblem::Repeated),
                        (value, _) => value.map(token_text),
                    }
                }
            },
            TokenSource::Query { name } => {
                let query = path
                    .split_once('?')
                    .map(|(_, q)| q.split('#').next().unwrap_or(""));
                match query {
                    None => None,
                    Some(query) => {
                        let mut values = query
                            .split('&')
                            .filter_map(|pair| pair.strip_prefix(name.as_str())?.strip_prefix('='));
                        match (values.next(), values.next()) {
                            (Some(_), Some(_)) => return Err(TokenProblem::Repeated),
                            (None, _) => None,
                            (Some(raw), _) => Some(
                                percent_decode(&raw.replace('+', " "))
                                    .map_or_else(|| raw.to_owned(), |t| t.trim().to_owned()),
                            ),
                        }
                    }
                }
            }
        };
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            continue;
        };
        if found.is_some() {
            return Err(TokenProblem::SeveralSources);
        }
        found = Some(token);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::tests::TestHeaders;

    fn sources() -> Vec<TokenSource> {
        vec![
            TokenSource::Header {
                name: "authorization".into(),
                prefix: "Bearer ".into(),
            },
            TokenSource::Cookie { name: "at".into() },
            TokenSource::Query {
                name: "access_token".into(),
            },
        ]
    }

    fn token(headers: &[(&str, &[u8])], path: &str) -> Result<Option<String>, TokenProblem> {
        find_token(&sources(), &TestHeaders::new(headers), path)
    }

    #[test]
    fn tokens_come_from_header_cookie_or_query_but_only_one() {
        let ok = |h: &[(&str, &[u8])], p: &str| token(h, p).ok().flatten();
        assert_eq!(
            ok(&[("authorization", b"bearer abc")], "/").as_deref(),
            Some("abc")
        );
        assert_eq!(
            ok(&[("authorization", b"Bearer   abc  ")], "/").as_deref(),
            Some("abc")
        );
        assert_eq!(ok(&[("authorization", b"Basic abc")], "/"), None);
        assert_eq!(ok(&[("authorization", b"Bearer ")], "/"), None);
        assert_eq!(ok(&[("authorization", b"Bear")], "/"), None);
        assert_eq!(
            ok(&[("cookie", b"x=1; at=tok; y=2")], "/").as_deref(),
            Some("tok")
        );
        assert_eq!(ok(&[("cookie", b"xat=tok")], "/"), None);
        assert_eq!(
            ok(&[], "/a?b=1&access_token=t%2Ek#f").as_deref(),
            Some("t.k")
        );
        assert_eq!(ok(&[], "/a?access_tokens=t"), None);
        // Not UTF-8: still a token (that will not verify), never "no token".
        assert!(ok(&[("authorization", b"Bearer \xff\xfe")], "/").is_some());
        assert_eq!(
            token(&[("authorization", b"Bearer a")], "/?access_token=b"),
            Err(TokenProblem::SeveralSources)
        );
        assert_eq!(
            token(
                &[
                    ("authorization", b"Bearer a"),
                    ("authorization", b"Bearer b")
                ],
                "/"
            ),
            Err(TokenProblem::Repeated)
        );
        assert_eq!(
            token(&[("cookie", b"at=a; at=b")], "/"),
            Err(TokenProblem::Repeated)
        );
        assert_eq!(
            token(&[], "/?access_token=a&access_token=b"),
            Err(TokenProblem::Repeated)
        );
    }

    #[test]
    fn source_names_are_checked() {
        assert!(validate_sources(&[]).is_err());
        assert!(validate_sources(&[TokenSource::Cookie { name: "a=b".into() }]).is_err());
        assert!(
            validate_sources(&[TokenSource::Header {
                name: "Authorization".into(),
                prefix: String::new()
            }])
            .is_err()
        );
        assert!(validate_sources(&sources()).is_ok());
    }
}
