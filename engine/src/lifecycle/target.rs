//! A URL the way a host sends a GET for it through an upstream it picks by origin.

/// An `http(s)` URL split into what a host that dispatches requests to upstreams needs (Envoy's
/// `dispatch_http_call`: a cluster chosen by origin, the `:authority` and `:path` headers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpTarget {
    /// `scheme://authority`, lowercased.
    pub origin: String,
    /// The `:authority` header.
    pub authority: String,
    /// The `:path` header (path and query, without a fragment).
    pub path: String,
}

impl HttpTarget {
    /// Split an `http(s)://authority/path?query` URL; `None` for anything else, or for an
    /// authority with userinfo (`http://u@h/`: its host is not what it seems).
    pub fn parse(url: &str) -> Option<Self> {
        let (scheme, rest) = url.split_once("://")?;
        if scheme != "http" && scheme != "https" {
            return None;
        }
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if authority.is_empty() || authority.contains('@') {
            return None;
        }
        let tail = tail.split('#').next().unwrap_or("");
        let path = if tail.starts_with('/') {
            tail.to_owned()
        } else {
            format!("/{tail}")
        };
        Some(Self {
            origin: format!("{scheme}://{}", authority.to_ascii_lowercase()),
            authority: authority.to_owned(),
            path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_origin_authority_and_path() {
        let t =
            HttpTarget::parse("http://127.0.0.1:4000/.well-known/openid-configuration").unwrap();
        assert_eq!(t.origin, "http://127.0.0.1:4000");
        assert_eq!(t.authority, "127.0.0.1:4000");
        assert_eq!(t.path, "/.well-known/openid-configuration");
        let t = HttpTarget::parse("https://IdP.example?x=1#frag").unwrap();
        assert_eq!(
            (t.origin.as_str(), t.path.as_str()),
            ("https://idp.example", "/?x=1")
        );
        for bad in [
            "ftp://a/b",
            "http:///x",
            "http://u@h/x",
            "nope",
            "HTTP://a/b",
        ] {
            assert_eq!(HttpTarget::parse(bad), None, "{bad}");
        }
    }
}
