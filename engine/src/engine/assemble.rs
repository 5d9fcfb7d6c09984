//! Decision assembly: an evaluation (or the reason there is none) made into a [`Decision`],
//! stamped with the bundle revision and a fresh decision id.

use super::Engine;
use crate::cedar_glue;
use crate::decision::{
    Decision, DecisionError, Outcome, PrincipalSummary, RequestSummary, TokenIdentity,
};
use crate::error::RequestError;
use std::sync::atomic::Ordering;

/// What a decision is about, known before any evaluation: the request, who asked (the
/// principal and its token, as far as they are known) and when.
pub(super) struct Asked {
    pub(super) request: RequestSummary,
    pub(super) principal: Option<PrincipalSummary>,
    pub(super) token: TokenIdentity,
    pub(super) now: i64,
    /// The revision of the tenant data the decision joined, when the bundle stores data.
    pub(super) data_revision: Option<u64>,
}

impl Engine {
    /// The decision for an evaluation, or a deny for a request that could not be evaluated.
    pub(super) fn conclude(
        &self,
        result: Result<cedar_glue::Evaluation, RequestError>,
        asked: Asked,
    ) -> Decision {
        match result {
            Ok(eval) => {
                let outcome = if eval.allowed {
                    Outcome::Allow
                } else {
                    Outcome::Deny
                };
                self.decision(asked, outcome, eval.reasons, eval.errors)
            }
            Err(err) => self.decision(asked, Outcome::Deny, Vec::new(), vec![err.info().into()]),
        }
    }

    pub(super) fn decision(
        &self,
        asked: Asked,
        outcome: Outcome,
        reasons: Vec<String>,
        errors: Vec<DecisionError>,
    ) -> Decision {
        Decision {
            decision: outcome,
            status: outcome.http_status(),
            reasons,
            errors,
            principal: asked.principal,
            revision: self.bundle.revision().to_owned(),
            data_revision: asked.data_revision,
            decision_id: self.next_decision_id(),
            request: asked.request,
            token: asked.token,
            time: asked.now,
        }
    }

    pub(super) fn next_decision_id(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        // splitmix64 of seed ^ counter: unique per (seed, counter), not guessable from a count.
        let mut z =
            (self.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        decision_id(z, n)
    }
}

/// `format!("{z:016x}{n:08x}")` through the crate's hex writer instead of the formatter: this
/// runs on every decision.
fn decision_id(z: u64, n: u64) -> String {
    let mut id = crate::error::hex(&z.to_be_bytes());
    match u32::try_from(n) {
        Ok(n) => id.push_str(&crate::error::hex(&n.to_be_bytes())),
        Err(_) => id.push_str(&format!("{n:x}")),
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_ids_are_what_format_writes() {
        let values = [
            0,
            1,
            0xabc,
            u64::from(u32::MAX),
            1 << 32,
            (1 << 36) - 1,
            u64::MAX,
        ];
        for z in values {
            for n in values {
                assert_eq!(
                    decision_id(z, n),
                    format!("{z:016x}{n:08x}"),
                    "{z:#x}, {n:#x}"
                );
            }
        }
    }
}
