//! This VM's side of a bundle fetched over HTTP (`bundle.remote`): the engine's [`SharedBundle`]
//! says when to poll and with which ETag, one poll for all workers through Envoy's shared data;
//! this carries it out through the Envoy cluster.

use super::{SharedData, get, log, now_ms, response_body, response_header, response_status};
use crate::config::{Plan, RemoteBundle};
use portcullis_engine::{BundleEvent, CompiledBundle, Engine, HttpTarget, SharedBundle};
use proxy_wasm::types::LogLevel;
use std::time::Duration;

/// What became of a poll's answer.
pub(super) enum Polled {
    /// Nothing new.
    Nothing,
    /// A new bundle this VM fetched, built into this engine.
    New(Box<Engine>),
    /// A bundle was fetched and refused.
    Refused,
}

/// The remote bundle as this VM sees it.
pub(super) struct VmBundle {
    shared: SharedBundle,
    /// The poll this VM has in flight.
    in_flight: Option<u32>,
}

fn ms(seconds: u64) -> u64 {
    seconds.saturating_mul(1000)
}

/// Parse a compiled bundle (loading it, which checks everything, is [`Plan::engine`]'s).
fn compiled(bytes: &[u8]) -> Result<CompiledBundle, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("not a compiled bundle: {e}"))
}

fn build(plan: &Plan, compiled: CompiledBundle) -> Result<Engine, String> {
    plan.engine(compiled, super::verifier::engine_options(plan))
        .map_err(|e| e.to_string())
}

impl VmBundle {
    pub(super) fn new(remote: &RemoteBundle) -> Self {
        Self {
            shared: SharedBundle::new(
                remote.url.clone(),
                ms(remote.poll_seconds),
                ms(remote.retry_seconds),
                remote.timeout_ms,
            ),
            in_flight: None,
        }
    }

    /// An engine of the bundle another worker stored, when it changed since this VM looked.
    pub(super) fn sync(&mut self, plan: &Plan) -> Option<Engine> {
        match self
            .shared
            .sync(&SharedData, now_ms(), |bytes| build(plan, compiled(bytes)?))?
        {
            Ok(engine) => Some(engine),
            Err(why) => {
                log(
                    LogLevel::Warn,
                    &format!("portcullis: the shared bundle was refused: {why}"),
                );
                None
            }
        }
    }

    /// Poll when due, unless another worker holds the poll.
    pub(super) fn start(
        &mut self,
        remote: &RemoteBundle,
        target: &HttpTarget,
        authorization: Option<&str>,
        serving: bool,
        now: i64,
    ) {
        let Some(fetch) = self.shared.due(&SharedData, now) else {
            return;
        };
        let timeout = Duration::from_millis(remote.timeout_ms);
        let etag = fetch.if_none_match.as_deref();
        match get(&remote.cluster, target, etag, authorization, timeout) {
            Some(token) => self.in_flight = Some(token),
            None => {
                let why = "cannot dispatch the request";
                self.shared.failed(&SharedData, why, now);
                log_failure(remote, serving, why);
            }
        }
    }

    /// Handle the answer to `token`, if it is this VM's poll.
    pub(super) fn on_response(
        &mut self,
        plan: &Plan,
        remote: &RemoteBundle,
        current: Option<&Engine>,
        token: u32,
        body_size: usize,
    ) -> Option<Polled> {
        if self.in_flight != Some(token) {
            return None;
        }
        self.in_flight = None;
        let now = now_ms();
        let status = response_status();
        let etag = response_header("etag").and_then(|e| String::from_utf8(e).ok());
        let etag = etag.as_deref();
        match self
            .shared
            .answer(&SharedData, status, etag, body_size, now)
        {
            BundleEvent::Unchanged => Some(Polled::Nothing),
            BundleEvent::Failed(why) => {
                log_failure(remote, current.is_some(), &why);
                Some(Polled::Nothing)
            }
            BundleEvent::Candidate => {
                let body = response_body(body_size);
                let built = self
                    .shared
                    .candidate(&SharedData, etag, &body, now, |bytes| {
                        let compiled = compiled(bytes)?;
                        // A server without ETags answering the revision in use, intact: nothing to
                        // build. A bundle claiming it with other content goes on to be refused.
                        let unchanged = !compiled.revision.is_empty()
                            && current.is_some_and(|e| e.revision() == compiled.revision)
                            && compiled.compute_revision() == compiled.revision;
                        if unchanged {
                            return Ok(None);
                        }
                        build(plan, compiled).map(Some)
                    });
                match built {
                    Ok(None) => Some(Polled::Nothing),
                    Ok(Some(engine)) => Some(Polled::New(Box::new(engine))),
                    Err(why) => {
                        log_failure(remote, current.is_some(), &format!("refused: {why}"));
                        Some(Polled::Refused)
                    }
                }
            }
        }
    }
}

/// A poll failed or its bundle was refused: every worker waits for the retry delay.
fn log_failure(remote: &RemoteBundle, serving: bool, why: &str) {
    let consequence = if serving {
        "the previous bundle keeps serving"
    } else {
        "no bundle yet: requests are answered 503"
    };
    log(
        LogLevel::Warn,
        &format!(
            "portcullis: fetching the bundle from `{}` failed ({why}); {consequence}; next try in {} s",
            remote.url, remote.retry_seconds
        ),
    );
}
