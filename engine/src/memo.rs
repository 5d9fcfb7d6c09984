//! The evaluations of one verified token, remembered: a token sent again for a request it has
//! already been decided for skips Cedar.
//!
//! Evaluating a token request is a pure function of the bundle, the verified token, the
//! request's action, resource (type, id, attributes) and context, and of `now` only through
//! the `session_age` the engine puts in the context. A memo belongs to one verified token of
//! one engine (one bundle), so its key is the rest: `session_age`, the version of the
//! tenant's stored data the engine holds (`TenantData::version`: every change, and every
//! document handed over, is a new key — two slices of one revision differ), action, resource
//! and context,
//! compared in full. It lives as long as the token's cache entry (until `exp`, or
//! until the issuer's keys change) and is bounded: [`PER_TOKEN`] requests per token, first in
//! first out, and only requests whose key is small ([`MAX_KEY_BYTES`]), so that a client
//! cannot make the engine hold large request bodies. Each decision still gets its own id, time
//! and audit record; only the Cedar evaluation is shared.

use crate::cedar_glue::Evaluation;
use crate::engine::DecisionRequest;
use crate::error::RequestError;
use serde_json::{Map, Value};
use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

/// Requests remembered per token: enough for a caller's usual few routes and resources, and
/// small enough that a scan of the slots costs less than one string formatted.
pub(crate) const PER_TOKEN: usize = 8;

/// Requests whose action, resource and context add up to more (strings by their length, other
/// values by eight bytes) are evaluated every time.
pub(crate) const MAX_KEY_BYTES: usize = 1024;

/// An evaluation's result, as the engine concludes from it.
pub(crate) type Evaluated = Result<Evaluation, RequestError>;

#[derive(Debug, Default)]
pub(crate) struct Memo {
    slots: Mutex<VecDeque<Slot>>,
}

#[derive(Debug)]
struct Slot {
    session_age: Option<i64>,
    data_version: Option<u64>,
    action: Box<str>,
    resource_type: Box<str>,
    resource_id: Box<str>,
    attrs: Map<String, Value>,
    context: Map<String, Value>,
    result: Evaluated,
}

impl Slot {
    fn matches(
        &self,
        session_age: Option<i64>,
        data_version: Option<u64>,
        request: &DecisionRequest,
    ) -> bool {
        self.session_age == session_age
            && self.data_version == data_version
            && *self.action == *request.action
            && *self.resource_id == *request.resource.id
            && *self.resource_type == *request.resource.entity_type
            && same_map(&self.attrs, &request.resource.attrs)
            && same_map(&self.context, &request.context)
    }
}

/// `a == b`. A binding builds a route's maps in the same order every time, so the entries are
/// compared in order first; only maps that differ in order pay for `Map`'s lookups by key.
fn same_map(a: &Map<String, Value>, b: &Map<String, Value>) -> bool {
    a.len() == b.len() && (a.iter().zip(b).all(|(x, y)| x == y) || a == b)
}

impl Memo {
    fn lock(&self) -> MutexGuard<'_, VecDeque<Slot>> {
        // A poisoned lock only means another thread panicked between two whole-slot updates.
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The remembered result for this request, or `evaluate`'s, remembered when the request is
    /// small enough. `evaluate` runs without the lock held.
    pub fn get_or_evaluate(
        &self,
        session_age: Option<i64>,
        data_version: Option<u64>,
        request: &DecisionRequest,
        evaluate: impl FnOnce() -> Evaluated,
    ) -> Evaluated {
        if let Some(slot) = self
            .lock()
            .iter()
            .find(|s| s.matches(session_age, data_version, request))
        {
            return slot.result.clone();
        }
        let result = evaluate();
        if key_bytes(request).is_some() {
            let mut slots = self.lock();
            // Another thread may have evaluated the same request meanwhile.
            if !slots
                .iter()
                .any(|s| s.matches(session_age, data_version, request))
            {
                if slots.len() >= PER_TOKEN {
                    slots.pop_front();
                }
                slots.push_back(Slot {
                    session_age,
                    data_version,
                    action: request.action.as_str().into(),
                    resource_type: request.resource.entity_type.as_str().into(),
                    resource_id: request.resource.id.as_str().into(),
                    attrs: request.resource.attrs.clone(),
                    context: request.context.clone(),
                    result: result.clone(),
                });
            }
        }
        result
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().len()
    }
}

/// The size of a request's key, if at most [`MAX_KEY_BYTES`]. Stops counting at the limit.
fn key_bytes(request: &DecisionRequest) -> Option<usize> {
    let mut budget = MAX_KEY_BYTES;
    for text in [
        &request.action,
        &request.resource.entity_type,
        &request.resource.id,
    ] {
        budget = budget.checked_sub(text.len())?;
    }
    budget = map_bytes(&request.resource.attrs, budget)?;
    budget = map_bytes(&request.context, budget)?;
    Some(MAX_KEY_BYTES - budget)
}

/// `budget` less the size of `map`, or `None` once it would go below zero.
fn map_bytes(map: &Map<String, Value>, mut budget: usize) -> Option<usize> {
    for (key, value) in map {
        budget = value_bytes(value, budget.checked_sub(key.len())?)?;
    }
    Some(budget)
}

fn value_bytes(value: &Value, budget: usize) -> Option<usize> {
    match value {
        Value::String(s) => budget.checked_sub(s.len()),
        Value::Array(items) => items
            .iter()
            .try_fold(budget.checked_sub(8)?, |b, v| value_bytes(v, b)),
        Value::Object(map) => map_bytes(map, budget.checked_sub(8)?),
        Value::Null | Value::Bool(_) | Value::Number(_) => budget.checked_sub(8),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ResourceRef;
    use serde_json::json;

    fn request(id: &str, attrs: Value, context: Value) -> DecisionRequest {
        let (Value::Object(attrs), Value::Object(context)) = (attrs, context) else {
            unreachable!("objects")
        };
        DecisionRequest {
            token: None,
            action: "view".into(),
            resource: ResourceRef {
                entity_type: "Report".into(),
                id: id.into(),
                attrs,
            },
            context,
        }
    }

    fn evaluation(allowed: bool) -> Evaluated {
        Ok(Evaluation {
            allowed,
            reasons: vec![format!("allowed-{allowed}")],
            errors: Vec::new(),
        })
    }

    #[test]
    fn a_remembered_request_is_not_evaluated_again_and_any_difference_is() {
        let memo = Memo::default();
        let base = request("q3", json!({"department": "finance"}), json!({}));
        let mut runs = 0;
        let mut ask = |age, req: &DecisionRequest, allowed| {
            memo.get_or_evaluate(age, None, req, || {
                runs += 1;
                evaluation(allowed)
            })
        };
        assert!(ask(Some(5), &base, true).is_ok_and(|e| e.allowed));
        // Same key: the remembered answer, even where a new evaluation would differ.
        assert!(ask(Some(5), &base, false).is_ok_and(|e| e.allowed));
        let mut other_action = base.clone();
        other_action.action = "export".into();
        let mut other_type = base.clone();
        other_type.resource.entity_type = "Dashboard".into();
        let different = [
            (Some(6), base.clone()),
            (None, base.clone()),
            (
                Some(5),
                request("q4", json!({"department": "finance"}), json!({})),
            ),
            (
                Some(5),
                request("q3", json!({"department": "risk"}), json!({})),
            ),
            (Some(5), request("q3", json!({}), json!({}))),
            (
                Some(5),
                request(
                    "q3",
                    json!({"department": "finance"}),
                    json!({"ip": "10.0.0.1"}),
                ),
            ),
            (Some(5), other_action),
            (Some(5), other_type),
        ];
        for (age, req) in &different {
            assert!(ask(*age, req, false).is_ok_and(|e| !e.allowed));
        }
        assert_eq!(runs, 1 + different.len());
        assert_eq!(memo.len(), PER_TOKEN);
    }

    #[test]
    fn maps_match_whatever_the_order_of_their_entries() {
        let memo = Memo::default();
        let evaluated = |attrs: Value, context: Value| {
            let mut ran = false;
            let _ = memo.get_or_evaluate(Some(1), None, &request("q3", attrs, context), || {
                ran = true;
                evaluation(true)
            });
            ran
        };
        assert!(evaluated(
            json!({"a": "1", "b": "2"}),
            json!({"x": 1, "y": [true]})
        ));
        assert!(
            !evaluated(json!({"b": "2", "a": "1"}), json!({"y": [true], "x": 1})),
            "the same maps in another order"
        );
        assert!(evaluated(
            json!({"a": "1", "c": "2"}),
            json!({"x": 1, "y": [true]})
        ));
        assert!(evaluated(
            json!({"a": "1", "b": "2"}),
            json!({"x": 1, "y": [false]})
        ));
        assert!(evaluated(
            json!({"a": "1", "b": "2"}),
            json!({"x": 1, "y": [true], "z": 0})
        ));
    }

    #[test]
    fn the_memo_is_bounded_first_in_first_out() {
        let memo = Memo::default();
        let ids: Vec<String> = (0..=PER_TOKEN).map(|i| format!("r{i}")).collect();
        for id in &ids {
            let answer =
                memo.get_or_evaluate(None, None, &request(id, json!({}), json!({})), || {
                    evaluation(true)
                });
            assert!(answer.is_ok_and(|e| e.allowed));
        }
        assert_eq!(memo.len(), PER_TOKEN);
        // The first was dropped: asked again, it is evaluated again; the last is remembered.
        let first = request(&ids[0], json!({}), json!({}));
        let last = request(&ids[PER_TOKEN], json!({}), json!({}));
        assert!(
            memo.get_or_evaluate(None, None, &first, || evaluation(false))
                .is_ok_and(|e| !e.allowed)
        );
        assert!(
            memo.get_or_evaluate(None, None, &last, || evaluation(false))
                .is_ok_and(|e| e.allowed)
        );
    }

    #[test]
    fn large_requests_and_request_errors() {
        let memo = Memo::default();
        let big = request("q3", json!({"note": "x".repeat(MAX_KEY_BYTES)}), json!({}));
        assert_eq!(key_bytes(&big), None);
        assert!(
            memo.get_or_evaluate(None, None, &big, || evaluation(true))
                .is_ok()
        );
        assert_eq!(memo.len(), 0, "a large request is not remembered");
        let nested = request(
            "q3",
            json!({"a": [[[]]], "b": {"c": true}}),
            json!({"n": 1}),
        );
        // "view" "Report" "q3"; "a" and three arrays; "b", an object, "c", a bool; "n", a number.
        assert_eq!(
            key_bytes(&nested),
            Some(12 + (1 + 24) + (1 + 8 + 1 + 8) + (1 + 8))
        );
        // A request error is as much a function of the request as an evaluation.
        let error = || Err(RequestError::Action("view".into()));
        let small = request("q3", json!({}), json!({}));
        assert!(memo.get_or_evaluate(None, None, &small, error).is_err());
        assert!(
            memo.get_or_evaluate(None, None, &small, || evaluation(true))
                .is_err()
        );
    }
}
