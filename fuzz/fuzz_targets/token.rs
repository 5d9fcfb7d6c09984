//! Arbitrary bytes as a bearer token: `Engine::decide` and `Engine::begin_token` must never
//! panic, whatever the token. When a token passes every check but the signature, the target
//! also runs `finish_token` as if the signature were good, so that claim mapping is fuzzed
//! too (the fuzzer cannot forge signatures).
//!
//! Mutating base64 text rarely yields JSON, so an input of the form `header JSON` newline
//! `claims JSON` is also encoded into a token (with a dummy signature) and run the same way:
//! that half reaches the header, claim and mapping checks with every mutation.

#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use portcullis_engine::{DecisionRequest, ResourceRef, TokenStep};
use portcullis_fuzz::{NOW, techfin_engine, uncached_engine};

fn run(token: &str) {
    let mut resource = ResourceRef::new("Report", "acme-finance-q3");
    resource.attrs.insert("tenant".into(), "acme".into());
    resource.attrs.insert("department".into(), "finance".into());
    let request = DecisionRequest {
        token: Some(token.to_owned()),
        action: "view".into(),
        resource,
        ..Default::default()
    };
    let decision = techfin_engine().decide(&request, NOW);
    // Fail closed: a decision without a verified principal is never an allow.
    assert!(!decision.is_allowed() || decision.principal.is_some());

    let uncached = uncached_engine();
    if let Ok(TokenStep::NeedsSignature(pending)) = uncached.begin_token(token, NOW) {
        let _ = uncached.finish_token(*pending, true, NOW);
    }
}

fuzz_target!(|data: &[u8]| {
    run(&String::from_utf8_lossy(data));

    if let Some(newline) = data.iter().position(|b| *b == b'\n') {
        let (header, claims) = data.split_at(newline);
        let claims = claims.get(1..).unwrap_or_default();
        let token = format!(
            "{}.{}.c2lnbmF0dXJl",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        run(&token);
    }
});
