//! The service's outbound HTTP: key documents and bundles, fetched off the request path with
//! overall timeouts, no redirect followed and bounded bodies.

use std::time::Duration;

/// An HTTP client with overall timeouts that reports every status as a response and follows
/// no redirect: a redirect could lead past the URL rule (https, or http to loopback only) to
/// anywhere, and keys and policy must come from where they were configured to.
pub(super) fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into()
}

/// What a GET answered.
#[derive(Debug)]
pub(super) struct Answer {
    pub(super) status: u16,
    /// The response header asked for, if it came as text.
    pub(super) header: Option<String>,
    /// The body of a `200` (empty for any other status).
    pub(super) body: Vec<u8>,
}

/// Why a GET failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum GetError {
    /// No answer: connection, TLS, timeout, a malformed response.
    #[error("cannot fetch `{url}`: {source}")]
    Fetch { url: String, source: ureq::Error },
    /// The body of a `200` cannot be read: over the limit, cut short, a timeout.
    #[error("cannot read `{url}`: {source}")]
    Read { url: String, source: ureq::Error },
}

/// GET `url` with the request `headers`, keeping the response header `keep`; the body of a
/// `200` is read up to `limit` bytes (other bodies are not read).
///
/// # Errors
/// A network error, a timeout, a body over the limit.
pub(super) fn get(
    agent: &ureq::Agent,
    url: &str,
    headers: &[(&str, &str)],
    keep: &str,
    limit: usize,
) -> Result<Answer, GetError> {
    let mut request = agent.get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut response = request.call().map_err(|source| GetError::Fetch {
        url: url.to_owned(),
        source,
    })?;
    let status = response.status().as_u16();
    let header = response
        .headers()
        .get(keep)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = if status == 200 {
        response
            .body_mut()
            .with_config()
            .limit(u64::try_from(limit).unwrap_or(u64::MAX))
            .read_to_vec()
            .map_err(|source| GetError::Read {
                url: url.to_owned(),
                source,
            })?
    } else {
        Vec::new()
    };
    Ok(Answer {
        status,
        header,
        body,
    })
}
