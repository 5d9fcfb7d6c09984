//! This VM's side of a bundle fetched over HTTP (`bundle.remote`): the engine's [`BundlePoll`]
//! says when to poll and with which ETag; this carries it out through the Envoy cluster, one
//! poll for all workers (see [`crate::shared`]).

use super::{
    get, log, now_ms, response_body, response_header, response_status, set_lease, take_lease,
};
use crate::config::{Plan, RemoteBundle, Target};
use crate::shared;
use portcullis_engine::{BundleEvent, BundlePoll, CompiledBundle, Engine};
use proxy_wasm::hostcalls;
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
    poll: BundlePoll,
    /// CAS version of the shared entry this VM's engine was built from (or refused).
    loaded_cas: Option<u32>,
    /// The poll this VM has in flight.
    in_flight: Option<u32>,
}

fn ms(seconds: u64) -> u64 {
    seconds.saturating_mul(1000)
}

impl VmBundle {
    pub(super) fn new(remote: &RemoteBundle) -> Self {
        Self {
            poll: BundlePoll::new(
                remote.url.clone(),
                ms(remote.poll_seconds),
                ms(remote.retry_seconds),
            ),
            loaded_cas: None,
            in_flight: None,
        }
    }

    /// An engine of the bundle another worker stored, when it changed since this VM looked.
    pub(super) fn sync(&mut self, plan: &Plan, remote: &RemoteBundle) -> Option<Engine> {
        let Ok((Some(entry), cas)) = hostcalls::get_shared_data(&shared::bundle_key(&remote.url))
        else {
            return None;
        };
        if cas.is_some() && cas == self.loaded_cas {
            return None;
        }
        self.loaded_cas = cas;
        let (etag, bytes) = shared::decode_bundle(&entry)?;
        let built = compiled(bytes).and_then(|compiled| {
            plan.engine(compiled, super::verifier::engine_options(plan))
                .map_err(|e| e.to_string())
        });
        match built {
            Ok(engine) => {
                self.poll.adopted(etag, now_ms());
                Some(engine)
            }
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
        target: &Target,
        authorization: Option<&str>,
        serving: bool,
        now: i64,
    ) {
        let Some(fetch) = self.poll.due(now) else {
            return;
        };
        let lease = shared::bundle_lease(&remote.url);
        if let Err(held_until) = take_lease(
            &lease,
            now,
            now.saturating_add(shared::lease_ms(remote.timeout_ms)),
        ) {
            return self.poll.postpone(held_until);
        }
        let timeout = Duration::from_millis(remote.timeout_ms);
        match get(
            &remote.cluster,
            target,
            fetch.if_none_match.as_deref(),
            authorization,
            timeout,
        ) {
            Some(token) => self.in_flight = Some(token),
            None => {
                self.poll.failed("cannot dispatch the request", now);
                self.failed(remote, serving, "cannot dispatch the request", now);
            }
        }
    }

    /// Log a failure and hold every worker off until the retry.
    fn failed(&self, remote: &RemoteBundle, serving: bool, why: &str, now: i64) {
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
        let retry = i64::try_from(ms(remote.retry_seconds)).unwrap_or(i64::MAX);
        set_lease(
            &shared::bundle_lease(&remote.url),
            now.saturating_add(retry),
        );
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
        let next = |poll: &BundlePoll| poll.next_due().unwrap_or(now);
        match self.poll.answer(status, etag.as_deref(), body_size, now) {
            BundleEvent::Unchanged => {
                set_lease(&shared::bundle_lease(&remote.url), next(&self.poll));
                Some(Polled::Nothing)
            }
            BundleEvent::Failed(why) => {
                self.failed(remote, current.is_some(), &why, now);
                Some(Polled::Nothing)
            }
            BundleEvent::Candidate => {
                let body = response_body(body_size);
                let built = compiled(&body).and_then(|compiled| {
                    // A server without ETags answering the revision in use, intact: nothing to
                    // build. A bundle claiming it with other content goes on to be refused.
                    let unchanged = !compiled.revision.is_empty()
                        && current.is_some_and(|e| e.revision() == compiled.revision)
                        && compiled.compute_revision() == compiled.revision;
                    if unchanged {
                        return Ok(None);
                    }
                    plan.engine(compiled, super::verifier::engine_options(plan))
                        .map(Some)
                        .map_err(|e| e.to_string())
                });
                match built {
                    Ok(engine) => {
                        self.poll.accepted(now);
                        set_lease(&shared::bundle_lease(&remote.url), next(&self.poll));
                        let Some(engine) = engine else {
                            return Some(Polled::Nothing);
                        };
                        let key = shared::bundle_key(&remote.url);
                        let entry = shared::encode_bundle(etag.as_deref(), &body);
                        if hostcalls::set_shared_data(&key, Some(&entry), None).is_ok() {
                            self.loaded_cas = hostcalls::get_shared_data(&key)
                                .ok()
                                .and_then(|(_, cas)| cas);
                        }
                        Some(Polled::New(Box::new(engine)))
                    }
                    Err(why) => {
                        self.poll.refused(now);
                        self.failed(remote, current.is_some(), &format!("refused: {why}"), now);
                        Some(Polled::Refused)
                    }
                }
            }
        }
    }
}

/// Parse a compiled bundle (loading it, which checks everything, is [`Plan::engine`]'s).
fn compiled(bytes: &[u8]) -> Result<CompiledBundle, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("not a compiled bundle: {e}"))
}
