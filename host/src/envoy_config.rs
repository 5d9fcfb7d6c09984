//! `portcullis envoy-config`: a complete `envoy.yaml` for the Portcullis Wasm filter, written
//! from a policy pack, so that an operator never edits JSON inside YAML by hand. It has the
//! hardened listener (Envoy normalizes paths, refuses escaped slashes and header names with
//! underscores), the filter with the compiled bundle inline and the edge options, the router to
//! the upstream, and one cluster per identity-provider origin the bundle fetches keys from
//! (`keys.clusters`). The filter's fields are in `docs/reference/envoy-filter.md`.

use portcullis_engine::{CompiledBundle, HttpTarget, KeyUrl};
use serde_json::{Map, Value, json};
use std::net::SocketAddr;

/// What the configuration is written for.
pub struct Target<'a> {
    /// The compiled bundle (inline in the filter's configuration).
    pub compiled: &'a CompiledBundle,
    /// Its remote issuers (`Bundle::remote_issuers`).
    pub remote: &'a [(String, KeyUrl)],
    /// The edge options, as JSON.
    pub edge: Value,
    /// Where Envoy listens.
    pub listen: SocketAddr,
    /// Envoy's admin interface.
    pub admin: SocketAddr,
    /// The upstream (the application Portcullis protects).
    pub upstream: SocketAddr,
    /// The filter's `.wasm` file, as Envoy will find it.
    pub wasm: &'a str,
    /// The CA bundle that verifies the identity providers' TLS certificates.
    pub ca_file: &'a str,
    /// Where the filter fetches the tenants' stored data, for a bundle that stores some: the
    /// decision service's admin listener (`GET /v1/data/{tenant}`).
    pub data: SocketAddr,
    /// The VM environment variable holding the admin listener's bearer credential, if it has
    /// one.
    pub data_token_env: Option<&'a str>,
}

/// The cluster of the data source.
const DATA_CLUSTER: &str = "portcullis_data";

/// An identity provider's origin, as the filter looks its cluster up.
struct Origin {
    /// The filter's `keys.clusters` key: [`HttpTarget::origin`], what the filter compares.
    key: String,
    host: String,
    port: u16,
    tls: bool,
    cluster: String,
}

fn origin(url: &str) -> Result<Origin, String> {
    let target = HttpTarget::parse(url)
        .ok_or_else(|| format!("`{url}` is not an http(s) URL with a host"))?;
    let tls = target.origin.starts_with("https://");
    let authority = target.authority.to_ascii_lowercase();
    // `[::1]:8443`, `[::1]`, `host:8443`, `host`.
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !port.ends_with(']') => (
            host,
            port.parse::<u16>()
                .map_err(|_| format!("`{url}` has an invalid port"))?,
        ),
        _ => (authority.as_str(), if tls { 443 } else { 80 }),
    };
    let host = host.trim_matches(['[', ']']).to_owned();
    let mut cluster = String::from("idp_");
    for c in host.chars() {
        cluster.push(if c.is_ascii_alphanumeric() { c } else { '_' });
    }
    if authority.contains(':') && !authority.ends_with(']') {
        cluster.push_str(&format!("_{port}"));
    }
    Ok(Origin {
        key: target.origin,
        host,
        port,
        tls,
        cluster,
    })
}

/// Indent every line of `text` by `n` spaces.
fn indent(text: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    text.lines().map(|line| format!("{pad}{line}\n")).collect()
}

fn cluster(name: &str, host: &str, port: u16, dns: bool) -> String {
    let kind = if dns { "LOGICAL_DNS" } else { "STATIC" };
    let family = if dns {
        "    dns_lookup_family: V4_PREFERRED\n"
    } else {
        ""
    };
    format!(
        "  - name: {name}\n    type: {kind}\n{family}    connect_timeout: 5s\n    load_assignment:\n      cluster_name: {name}\n      endpoints:\n      - lb_endpoints:\n        - endpoint:\n            address:\n              socket_address: {{ address: {host}, port_value: {port} }}\n"
    )
}

/// The whole `envoy.yaml`.
///
/// # Errors
/// A remote issuer whose key URL has no usable origin.
pub fn render(target: &Target<'_>) -> Result<String, String> {
    let mut origins: Vec<Origin> = Vec::new();
    for (_, url) in target.remote {
        let origin = origin(url.url())?;
        if !origins.iter().any(|o| o.key == origin.key) {
            origins.push(origin);
        }
    }
    let mut filter = Map::new();
    filter.insert("bundle".into(), json!({"inline": target.compiled}));
    filter.insert("edge".into(), target.edge.clone());
    filter.insert("log".into(), json!({"level": "info"}));
    if !origins.is_empty() {
        let clusters: Map<String, Value> = origins
            .iter()
            .map(|o| (o.key.clone(), Value::String(o.cluster.clone())))
            .collect();
        filter.insert("keys".into(), json!({"clusters": clusters}));
    }
    let stores_data = !target.compiled.settings.data.stored.is_empty();
    let mut env = String::new();
    if stores_data {
        let mut data = Map::new();
        data.insert("url".into(), json!(format!("http://{}", target.data)));
        data.insert("cluster".into(), json!(DATA_CLUSTER));
        if let Some(name) = target.data_token_env {
            data.insert("token_env".into(), json!(name));
            env = format!(
                "                  environment_variables:\n                    host_env_keys: [{name}]\n"
            );
        }
        filter.insert("data".into(), Value::Object(data));
    } else if target.data_token_env.is_some() {
        return Err("`--data-token-env`: the bundle stores no data".into());
    }
    let filter_json = serde_json::to_string_pretty(&Value::Object(filter))
        .map_err(|e| format!("cannot write the filter's configuration: {e}"))?;
    let ip = |a: SocketAddr| a.ip().to_string();
    let mut clusters = cluster(
        "backend",
        &ip(target.upstream),
        target.upstream.port(),
        false,
    );
    if stores_data {
        clusters.push_str(&cluster(
            DATA_CLUSTER,
            &ip(target.data),
            target.data.port(),
            false,
        ));
    }
    for o in &origins {
        let numeric = o.host.parse::<std::net::IpAddr>().is_ok();
        clusters.push_str(&cluster(&o.cluster, &o.host, o.port, !numeric));
        if o.tls {
            clusters.push_str(&format!(
                "    transport_socket:\n      name: envoy.transport_sockets.tls\n      typed_config:\n        \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext\n        sni: {host}\n        common_tls_context:\n          validation_context:\n            trusted_ca: {{ filename: {ca} }}\n",
                host = o.host,
                ca = target.ca_file,
            ));
        }
    }
    Ok(format!(
        r#"# Written by `portcullis envoy-config` (bundle revision {revision}); regenerate it rather than edit
# the filter's JSON below. The filter's fields: docs/reference/envoy-filter.md.
# Return free heap pages to the OS: compiling the Wasm filter at start leaves memory free.
memory_allocator_manager: {{ bytes_to_release: 16777216, memory_release_interval: 1s }}
admin:
  address:
    socket_address: {{ address: {admin_ip}, port_value: {admin_port} }}
static_resources:
  listeners:
  - name: api
    address:
      socket_address: {{ address: {listen_ip}, port_value: {listen_port} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: api
          # Decide on the path the upstream will see: normalized (RFC 3986), slashes merged,
          # escaped slashes and backslashes refused, and no header with an underscore.
          normalize_path: true
          merge_slashes: true
          path_with_escaped_slashes_action: REJECT_REQUEST
          common_http_protocol_options:
            headers_with_underscores_action: REJECT_REQUEST
          route_config:
            virtual_hosts:
            - name: api
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                route: {{ cluster: backend }}
          http_filters:
          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: portcullis
                root_id: portcullis
                fail_open: false
                vm_config:
                  vm_id: portcullis
                  runtime: envoy.wasm.runtime.v8
{env}                  code:
                    local:
                      filename: {wasm}
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: |
{filter}          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
{clusters}"#,
        revision = target.compiled.revision,
        admin_ip = ip(target.admin),
        admin_port = target.admin.port(),
        listen_ip = ip(target.listen),
        listen_port = target.listen.port(),
        wasm = target.wasm,
        filter = indent(&filter_json, 20),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_name_their_cluster_and_the_filter_key() {
        let o = origin("https://Login.MicrosoftOnline.com/tid/discovery/v2.0/keys").unwrap();
        assert_eq!(o.key, "https://login.microsoftonline.com");
        assert_eq!(
            (o.host.as_str(), o.port, o.tls),
            ("login.microsoftonline.com", 443, true)
        );
        assert_eq!(o.cluster, "idp_login_microsoftonline_com");
        let o = origin("http://127.0.0.1:8443/.well-known/openid-configuration").unwrap();
        assert_eq!(o.key, "http://127.0.0.1:8443");
        assert_eq!(o.cluster, "idp_127_0_0_1_8443");
        assert!(!o.tls);
        // The key is what the filter compares (`HttpTarget::origin`): an explicit port stays.
        let o = origin("https://idp.example:443/keys").unwrap();
        assert_eq!((o.key.as_str(), o.port), ("https://idp.example:443", 443));
        let o = origin("http://[::1]:8080/keys").unwrap();
        assert_eq!((o.host.as_str(), o.port), ("::1", 8080));
        for bad in [
            "ftp://x/keys",
            "https://user@host/keys",
            "https:///keys",
            "https://h:99999/",
        ] {
            assert!(origin(bad).is_err(), "{bad}");
        }
    }
}
