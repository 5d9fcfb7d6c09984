//! TLS on the decision listener and mutual TLS on the admin listener, over real TLS on
//! loopback: certificates made by `rcgen` at run time, clients from ureq and rustls. HTTPS
//! decisions; plain HTTP to a TLS listener answered 400; silent and stalled handshakes cut at
//! the header deadline and evicted at the connection cap; client certificates required on the
//! admin listener; certificate rotation on reload and SIGHUP (the real binary), a bad new
//! certificate refused; configuration errors that name the file.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{analyst_token, techfin, view_request};
use portcullis::service::{
    AuditTarget, BundleSource, Credential, Options, Server, StartError, TlsError, TlsFiles,
};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A certificate authority made for a test.
struct Ca(CertifiedIssuer<'static, KeyPair>);

/// A certificate and its key, as PEM.
struct Leaf {
    cert: String,
    key: String,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        Self(CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap())
    }

    fn pem(&self) -> String {
        self.0.pem()
    }

    fn der(&self) -> CertificateDer<'static> {
        self.0.der().clone()
    }

    fn leaf(&self, name: &str, usage: ExtendedKeyUsagePurpose) -> Leaf {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &*self.0).unwrap();
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    fn server(&self) -> Leaf {
        self.leaf("portcullis", ExtendedKeyUsagePurpose::ServerAuth)
    }

    fn client(&self, name: &str) -> Leaf {
        self.leaf(name, ExtendedKeyUsagePurpose::ClientAuth)
    }
}

/// A scratch directory for a test's PEM files.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("portcullis-tls-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Write `leaf` as `<name>.crt` and `<name>.key` in `dir`: the TLS files of a listener.
fn write(dir: &Path, name: &str, leaf: &Leaf, client_ca: Option<&Ca>) -> TlsFiles {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, &leaf.cert).unwrap();
    std::fs::write(&key, &leaf.key).unwrap();
    let client_ca = client_ca.map(|ca| {
        let path = dir.join(format!("{name}-clients.crt"));
        std::fs::write(&path, ca.pem()).unwrap();
        path
    });
    TlsFiles {
        cert,
        key,
        client_ca,
    }
}

fn tls_options() -> Options {
    let mut options = Options::new(
        BundleSource::Path(techfin()),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    );
    options.audit.target = AuditTarget::Off;
    options.data = Some(common::seeded_store("tls", &techfin()));
    options
}

/// A store of the calling test's own for a `portcullis serve` process.
fn store_arg(name: &str) -> String {
    common::seeded_store(name, &techfin()).store
}

/// A service with its own runtime, shut down when dropped.
struct Running {
    runtime: tokio::runtime::Runtime,
    server: Option<Server>,
}

impl Running {
    fn start(options: Options) -> Self {
        let runtime = runtime();
        let server = runtime.block_on(Server::start(options)).unwrap();
        Self {
            runtime,
            server: Some(server),
        }
    }

    fn server(&self) -> &Server {
        self.server.as_ref().unwrap()
    }

    /// The value of an unlabelled metric, or of one line's `name{labels}`.
    fn metric(&self, name: &str) -> u64 {
        let text = self.server().metrics().render();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            self.runtime.block_on(server.shutdown()).unwrap();
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A ureq agent that trusts `roots` only and presents `client`, if given.
fn https_agent(roots: &[&Ca], client: Option<&Leaf>) -> ureq::Agent {
    use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig, TlsProvider};
    let roots: Vec<Certificate<'static>> = roots
        .iter()
        .map(|ca| Certificate::from_pem(ca.pem().as_bytes()).unwrap())
        .collect();
    let mut tls = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .root_certs(RootCerts::new_with_certs(&roots));
    if let Some(leaf) = client {
        tls = tls.client_cert(Some(ClientCert::new_with_certs(
            &[Certificate::from_pem(leaf.cert.as_bytes()).unwrap()],
            PrivateKey::from_pem(leaf.key.as_bytes()).unwrap(),
        )));
    }
    ureq::Agent::config_builder()
        .tls_config(tls.build())
        .timeout_global(Some(Duration::from_secs(20)))
        .http_status_as_error(false)
        .build()
        .into()
}

/// GET `url`: status and body, or the error (a failed handshake).
fn get(agent: &ureq::Agent, url: &str, headers: &[(&str, &str)]) -> Result<(u16, String), String> {
    let mut request = agent.get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut response = request.call().map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    Ok((status, response.body_mut().read_to_string().unwrap()))
}

/// A rustls client: roots, client certificate, protocol versions and ALPN protocols.
fn tls_client(
    roots: &[&Ca],
    client: Option<&Leaf>,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> Arc<rustls::ClientConfig> {
    let mut store = rustls::RootCertStore::empty();
    for ca in roots {
        store.add(ca.der()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .unwrap()
    .with_root_certificates(store);
    let mut config = match client {
        Some(leaf) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(leaf.cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(leaf.key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// What a raw TLS exchange saw.
#[derive(Debug)]
struct Exchange {
    version: Option<rustls::ProtocolVersion>,
    alpn: Option<Vec<u8>>,
    /// The server's certificate.
    peer: Option<CertificateDer<'static>>,
    /// The whole HTTP response.
    response: String,
}

/// Handshake with `addr` as `localhost` and GET `path` (`connection: close`); the error that
/// ended it otherwise.
fn tls_get(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    path: &str,
) -> Result<Exchange, String> {
    let mut tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut conn =
        rustls::ClientConnection::new(config, ServerName::try_from("localhost").unwrap())
            .map_err(|e| e.to_string())?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).map_err(|e| e.to_string())?;
    }
    let (version, alpn) = (
        conn.protocol_version(),
        conn.alpn_protocol().map(<[u8]>::to_vec),
    );
    let peer = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.clone().into_owned());
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
                .as_bytes(),
        )
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| e.to_string())?;
    Ok(Exchange {
        version,
        alpn,
        peer,
        response: String::from_utf8_lossy(&response).into_owned(),
    })
}

fn decide(agent: &ureq::Agent, base: &str, body: &str) -> (u16, serde_json::Value) {
    let mut response = agent
        .post(&format!("{base}/v1/decide"))
        .header("content-type", "application/json")
        .send(body.as_bytes())
        .unwrap();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap())
}

#[test]
fn decisions_over_https_and_plain_http_is_refused() {
    let (ca, other) = (Ca::new("test CA"), Ca::new("another CA"));
    let dir = scratch("https");
    let mut options = tls_options();
    options.tls = Some(write(&dir, "server", &ca.server(), None));
    let running = Running::start(options);
    let server = running.server();
    assert!(
        server.url().starts_with("https://127.0.0.1:"),
        "{}",
        server.url()
    );
    let base = server.url();

    // A client that trusts the CA decides over HTTPS.
    let agent = https_agent(&[&ca], None);
    let (status, decision) = decide(&agent, &base, &view_request(&analyst_token(&techfin())));
    assert_eq!(status, 200, "{decision}");
    assert_eq!(decision["decision"], "allow", "{decision}");

    // TLS 1.3 and TLS 1.2 both; ALPN `http/1.1` when offered (with h2 first: never h2).
    let addr = server.addr();
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let config = tls_client(&[&ca], None, &[version], &[b"h2", b"http/1.1"]);
        let exchange = tls_get(addr, config, "/healthz").unwrap();
        assert_eq!(exchange.version, Some(version.version));
        assert_eq!(exchange.alpn.as_deref(), Some(&b"http/1.1"[..]));
        assert!(
            exchange.response.starts_with("HTTP/1.1 200"),
            "{exchange:?}"
        );
    }
    // A client that only speaks h2 has nothing in common with the listener.
    let h2 = tls_client(&[&ca], None, &[&rustls::version::TLS13], &[b"h2"]);
    assert!(tls_get(addr, h2, "/healthz").is_err());

    // A client that trusts another CA refuses the listener.
    let error = get(
        &https_agent(&[&other], None),
        &format!("{base}/healthz"),
        &[],
    )
    .unwrap_err();
    assert!(error.to_lowercase().contains("certificate"), "{error}");

    // Plain HTTP to the TLS listener: a 400 that says to use https, and the connection closes.
    let plain = common::agent();
    let (status, body) = get(&plain, &format!("http://{addr}/v1/decide"), &[]).unwrap();
    assert_eq!(status, 400, "{body}");
    let error: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["code"], "request_invalid");
    assert!(
        error["message"].as_str().unwrap().contains("https"),
        "{error}"
    );
    // Bytes that are neither TLS nor HTTP: the same 400, then the connection closes.
    let mut raw = TcpStream::connect(addr).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    raw.write_all(b"\x00\x01\x02 not tls\r\n\r\n").unwrap();
    let mut seen = Vec::new();
    let _ = raw.read_to_end(&mut seen);
    let seen = String::from_utf8_lossy(&seen);
    assert!(seen.starts_with("HTTP/1.1 400 "), "{seen}");

    // The listener is unharmed; every failure was counted.
    let (status, _) = get(&agent, &format!("{base}/healthz"), &[]).unwrap();
    assert_eq!(status, 200);
    assert!(running.metric("portcullis_tls_handshake_failures_total") >= 4);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_silent_or_stalled_handshake_is_cut_at_the_header_deadline_and_evicted_at_the_cap() {
    let ca = Ca::new("test CA");
    let dir = scratch("deadline");
    let mut options = tls_options();
    options.tls = Some(write(&dir, "server", &ca.server(), None));
    options.connections.header_timeout = Duration::from_secs(1);
    options.connections.idle_timeout = Duration::from_secs(60);
    options.connections.max_connections = 4;
    let running = Running::start(options);
    let addr = running.server().addr();

    // Connects and sends nothing; connects and sends the first bytes of a handshake only.
    let start = Instant::now();
    let mut silent = TcpStream::connect(addr).unwrap();
    let mut stalled = TcpStream::connect(addr).unwrap();
    stalled.write_all(&[0x16, 0x03, 0x01, 0x02]).unwrap();
    for stream in [&mut silent, &mut stalled] {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut byte = [0u8; 1];
        // Closed by the server (end of stream, or a reset), long before the idle deadline.
        let read = stream.read(&mut byte);
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
    assert!(running.metric("portcullis_connections_closed_slow_total") >= 2);

    // At the cap (4), connections in their handshake are closed to make room (the accept
    // loop never waits for room: it evicts, or refuses when every connection is busy), so a
    // real client still gets in while they are within their deadline.
    let crowd: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(100));
    let agent = https_agent(&[&ca], None);
    let (status, _) = get(&agent, &format!("https://{addr}/healthz"), &[]).unwrap();
    assert_eq!(status, 200);
    assert!(running.metric("portcullis_connections_open") <= 4);
    assert!(running.metric("portcullis_connections_closed_idle_total") >= 5);
    assert_eq!(running.metric("portcullis_connections_refused_total"), 0);
    drop(crowd);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_admin_listener_over_mutual_tls() {
    let (ca, clients, strangers) = (
        Ca::new("server CA"),
        Ca::new("operators CA"),
        Ca::new("strangers CA"),
    );
    let dir = scratch("mtls");
    let admin_tls = write(&dir, "admin", &ca.server(), Some(&clients));
    let operator = clients.client("operator");
    let stranger = strangers.client("operator");

    // Off loopback without a credential: mutual TLS authenticates; TLS alone does not.
    let mut options = tls_options();
    options.admin_listen = Some(SocketAddr::from(([0, 0, 0, 0], 0)));
    options.admin_tls = Some(TlsFiles {
        client_ca: None,
        ..admin_tls.clone()
    });
    let refused = runtime()
        .block_on(Server::start(options.clone()))
        .unwrap_err();
    assert!(
        matches!(refused, StartError::AdminOffLoopback(_)),
        "{refused}"
    );
    options.admin_tls = Some(admin_tls.clone());
    let running = Running::start(options);
    let server = running.server();
    assert!(server.admin_tls().unwrap().mutual());
    // Served on every interface: reached here on loopback.
    let port = server.admin_addr().unwrap().port();
    let admin = format!("https://127.0.0.1:{port}");
    assert_eq!(
        server.admin_url().unwrap(),
        format!("https://0.0.0.0:{port}")
    );
    // The decision listener was not asked for TLS.
    assert!(server.url().starts_with("http://"));

    let (status, body) = get(
        &https_agent(&[&ca], Some(&operator)),
        &format!("{admin}/metrics"),
        &[],
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("portcullis_tls_handshake_failures_total"));
    for (client, who) in [(None, "no certificate"), (Some(&stranger), "another CA's")] {
        let error = get(
            &https_agent(&[&ca], client),
            &format!("{admin}/v1/keys"),
            &[],
        )
        .expect_err(who);
        assert!(!error.is_empty(), "{who}");
        // The raw handshake: the server's alert, before any HTTP.
        let config = tls_client(&[&ca], client, &[&rustls::version::TLS13], &[]);
        let error =
            tls_get(SocketAddr::from(([127, 0, 0, 1], port)), config, "/healthz").expect_err(who);
        assert!(error.contains("alert"), "{who}: {error}");
    }
    assert!(running.metric("portcullis_tls_handshake_failures_total") >= 4);
    drop(running);

    // Mutual TLS and a credential: both are required.
    let mut options = tls_options();
    options.admin_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    options.admin_tls = Some(admin_tls);
    options.admin_token = Some(Credential::new(b"0123456789abcdef-admin".to_vec()).unwrap());
    let running = Running::start(options);
    let admin = running.server().admin_url().unwrap();
    let agent = https_agent(&[&ca], Some(&operator));
    let (status, _) = get(&agent, &format!("{admin}/v1/keys"), &[]).unwrap();
    assert_eq!(status, 401);
    let (status, _) = get(
        &agent,
        &format!("{admin}/v1/keys"),
        &[("authorization", "Bearer 0123456789abcdef-admin")],
    )
    .unwrap();
    assert_eq!(status, 200);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Poll `check` for up to 10 seconds.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < Duration::from_secs(10), "never: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn certificates_rotate_on_reload_and_a_bad_one_is_refused() {
    let (old, new) = (Ca::new("old CA"), Ca::new("new CA"));
    let dir = scratch("rotate");
    let files = write(&dir, "server", &old.server(), None);
    let mut options = tls_options();
    options.tls = Some(files.clone());
    let running = Running::start(options);
    let server = running.server();
    let url = format!("{}/healthz", server.url());
    assert!(get(&https_agent(&[&new], None), &url, &[]).is_err());

    write(&dir, "server", &new.server(), None);
    server.reload();
    eventually("the new certificate served", || {
        get(&https_agent(&[&new], None), &url, &[]).is_ok()
    });
    assert!(get(&https_agent(&[&old], None), &url, &[]).is_err());
    // The very certificate of the new file.
    let client = tls_client(&[&new], None, &[&rustls::version::TLS13], &[]);
    let served = tls_get(server.addr(), client, "/healthz").unwrap().peer;
    assert_eq!(
        served,
        Some(CertificateDer::from_pem_file(&files.cert).unwrap())
    );
    assert_eq!(
        running.metric("portcullis_tls_reloads_total{result=\"ok\"}"),
        1
    );

    // New files that do not load are refused whole: a key of another certificate, a
    // certificate file cut short. The last good certificate keeps serving.
    let refused = |n| running.metric("portcullis_tls_reloads_total{result=\"refused\"}") >= n;
    std::fs::write(&files.key, new.server().key).unwrap();
    server.reload();
    eventually("a mismatched key refused", || refused(1));
    let cert = std::fs::read_to_string(&files.cert).unwrap();
    std::fs::write(&files.cert, &cert[..cert.len() / 2]).unwrap();
    server.reload();
    eventually("a truncated certificate refused", || refused(2));
    let (status, _) = get(&https_agent(&[&new], None), &url, &[]).unwrap();
    assert_eq!(status, 200);
    assert!(get(&https_agent(&[&old], None), &url, &[]).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn tls_files_are_checked_and_errors_name_the_file() {
    let (ca, other) = (Ca::new("test CA"), Ca::new("another CA"));
    let dir = scratch("errors");
    let good = write(&dir, "good", &ca.server(), None);
    let other = write(&dir, "other", &other.server(), None);
    let text = |path: &Path| std::fs::read_to_string(path).unwrap();
    let file = |name: &str, content: &str| {
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        path
    };
    let load = |cert: &Path, key: &Path| {
        portcullis::service::Tls::load(TlsFiles {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            client_ca: None,
        })
        .map(|_| ())
        .unwrap_err()
    };
    let missing = dir.join("missing.key");
    let two_keys = file(
        "two.key",
        &format!("{}{}", text(&good.key), text(&other.key)),
    );
    let encrypted = file(
        "encrypted.key",
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n",
    );
    let broken = file("broken.crt", "-----BEGIN CERTIFICATE-----\nMIIB\n");
    let empty = file("empty.crt", "");
    for (error, names, says) in [
        (load(&good.cert, &missing), vec![&missing], "cannot read"),
        (
            load(&good.cert, &good.cert),
            vec![&good.cert],
            "holds no private key",
        ),
        (
            load(&good.cert, &two_keys),
            vec![&two_keys],
            "holds 2 private keys",
        ),
        (
            load(&good.cert, &encrypted),
            vec![&encrypted],
            "encrypted private key",
        ),
        (
            load(&good.key, &good.key),
            vec![&good.key],
            "holds no certificate",
        ),
        (
            load(&empty, &good.key),
            vec![&empty],
            "holds no certificate",
        ),
        (load(&broken, &good.key), vec![&broken], "is not valid PEM"),
        (
            load(&good.cert, &other.key),
            vec![&good.cert, &other.key],
            "does not match",
        ),
    ] {
        let message = error.to_string();
        for name in names {
            assert!(message.contains(&name.display().to_string()), "{message}");
        }
        assert!(message.contains(says), "{message}");
        // Never a word of a key file.
        assert!(!message.contains("MII"), "{message}");
        assert!(!message.contains("PRIVATE KEY-----"), "{message}");
    }
    assert!(matches!(
        load(&good.cert, &other.key),
        TlsError::KeyMismatch { .. }
    ));
    // A client CA file without a certificate.
    let error = portcullis::service::Tls::load(TlsFiles {
        client_ca: Some(good.key.clone()),
        ..good.clone()
    })
    .unwrap_err();
    assert!(
        error.to_string().contains(&good.key.display().to_string()),
        "{error}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `portcullis serve` with `args`: exit code and standard error, for a run that must fail.
fn serve_fails(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["serve", "--bundle"])
        .arg(techfin())
        .args(["--listen", "127.0.0.1:0", "--audit-log", "off"])
        .args(["--store", &store_arg("tls-fails")])
        .args(args)
        .env_remove("PORTCULLIS_CONFIG")
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[test]
fn serve_refuses_bad_tls_options_with_exit_2_naming_the_file() {
    let (ca, other) = (Ca::new("test CA"), Ca::new("another CA"));
    let dir = scratch("serve-errors");
    let good = write(&dir, "good", &ca.server(), None);
    let other = write(&dir, "other", &other.server(), None);
    let missing = dir.join("missing.key");
    let ca_file = dir.join("clients.crt");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    let mut cases: Vec<(Vec<String>, Vec<String>)> = vec![
        // A certificate without its key; a key file that is not there; a key of another
        // certificate; a client CA without a certificate.
        (
            vec!["--tls-cert".into(), s(&good.cert)],
            vec![s(&good.cert), "--tls-key".into()],
        ),
        (
            vec![
                "--tls-cert".into(),
                s(&good.cert),
                "--tls-key".into(),
                s(&missing),
            ],
            vec![s(&missing), "cannot read".into()],
        ),
        (
            vec![
                "--tls-cert".into(),
                s(&good.cert),
                "--tls-key".into(),
                s(&other.key),
            ],
            vec![s(&good.cert), s(&other.key), "does not match".into()],
        ),
        (
            vec![
                "--admin-listen".into(),
                "127.0.0.1:0".into(),
                "--admin-client-ca".into(),
                s(&ca_file),
            ],
            vec![s(&ca_file), "--admin-tls-cert".into()],
        ),
        (
            vec![
                "--admin-listen".into(),
                "127.0.0.1:0".into(),
                "--admin-tls-cert".into(),
                s(&good.cert),
                "--admin-tls-key".into(),
                s(&good.cert),
            ],
            vec![
                s(&good.cert),
                "admin listener".into(),
                "no private key".into(),
            ],
        ),
    ];
    // The same rule for options from a configuration file.
    let config = dir.join("serve.json");
    std::fs::write(
        &config,
        serde_json::json!({"tls-key": s(&good.key)}).to_string(),
    )
    .unwrap();
    cases.push((
        vec!["--config".into(), s(&config)],
        vec![s(&good.key), "--tls-cert".into()],
    ));
    for (args, wanted) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, stderr) = serve_fails(&args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        for want in wanted {
            assert!(stderr.contains(&want), "{args:?}: `{want}` not in {stderr}");
        }
        // Refused before anything is served or compiled: no plain listener meanwhile.
        assert!(!stderr.contains("serving decisions"), "{stderr}");
        assert!(!stderr.contains("compiling"), "{stderr}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `portcullis serve` running, its standard error read line by line on a thread.
struct Serving {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Serving {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["serve", "--bundle"])
            .arg(techfin())
            .args(["--listen", "127.0.0.1:0", "--audit-log", "off"])
            .args(["--store", &store_arg("tls-serving")])
            .args(args)
            .env_remove("PORTCULLIS_CONFIG")
            .env_remove("PORTCULLIS_LOG_FORMAT")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stderr.lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The next line that contains `text` (within 60 seconds: the first start compiles).
    fn line(&mut self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(_) => panic!("no line with `{text}`: {:#?}", self.seen),
            }
        }
    }

    fn signal(&self, signal: &str) {
        // The shell's own `kill` (a machine may have no `kill` program).
        let status = Command::new("sh")
            .args(["-c", &format!("kill -{signal} {}", self.child.id())])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn serve_over_tls_says_so_and_rotates_certificates_on_sighup() {
    let (ca, next, clients) = (Ca::new("test CA"), Ca::new("next CA"), Ca::new("operators"));
    let dir = scratch("sighup");
    let decision = write(&dir, "decision", &ca.server(), None);
    let admin = write(&dir, "admin", &ca.server(), Some(&clients));
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    let mut serving = Serving::start(&[
        "--tls-cert",
        &s(&decision.cert),
        "--tls-key",
        &s(&decision.key),
        "--admin-listen",
        "127.0.0.1:0",
        "--admin-tls-cert",
        &s(&admin.cert),
        "--admin-tls-key",
        &s(&admin.key),
        "--admin-client-ca",
        &s(admin.client_ca.as_ref().unwrap()),
    ]);
    let line = serving.line("serving decisions at ");
    let base = line
        .split("serving decisions at ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    assert!(base.starts_with("https://127.0.0.1:"), "{line}");
    assert!(
        line.contains(" over TLS (admin at https://127.0.0.1:"),
        "{line}"
    );
    assert!(line.ends_with(" over mutual TLS)"), "{line}");
    let said = serving.seen.join("\n");
    assert!(said.contains("the decision listener speaks TLS"), "{said}");
    assert!(said.contains(&s(&decision.cert)), "{said}");
    assert!(
        said.contains(&s(admin.client_ca.as_ref().unwrap())),
        "{said}"
    );

    let url = format!("{base}/healthz");
    let (status, _) = get(&https_agent(&[&ca], None), &url, &[]).unwrap();
    assert_eq!(status, 200);

    // Rotate the decision listener's certificate: served after SIGHUP, without a restart.
    write(&dir, "decision", &next.server(), None);
    serving.signal("HUP");
    serving.line("the decision listener's certificate was read again");
    serving.line("the admin listener's certificate was read again");
    let (status, _) = get(&https_agent(&[&next], None), &url, &[]).unwrap();
    assert_eq!(status, 200);

    // A bad new key: refused with an error line naming the file, never its content; the
    // rotated certificate keeps serving.
    std::fs::write(
        &decision.key,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    serving.signal("HUP");
    let refused = serving.line("new TLS files of the decision listener refused");
    assert!(refused.contains(&s(&decision.key)), "{refused}");
    assert!(!refused.contains("AAAA"), "{refused}");
    let (status, _) = get(&https_agent(&[&next], None), &url, &[]).unwrap();
    assert_eq!(status, 200);
    let log = serving.seen.join("\n");
    assert!(!log.contains("PRIVATE KEY-----"), "{log}");

    serving.signal("TERM");
    let status = serving.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    std::fs::remove_dir_all(&dir).unwrap();
}
