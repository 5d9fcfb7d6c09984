//! The AuthZEN access evaluation API (`/access/v1/evaluation[s]`), translated into the engine's
//! token request; decisions are the engine's.
//!
//! The subject is the body's `subject.properties.token`, always. An `Authorization` header is
//! the PEP's own credential: when the service is given one (`--pep-token-file`) the header must
//! present it, and it never becomes the subject of a decision (a PEP that authenticates with
//! its own token would otherwise have every decision made about itself).
//!
//! `evaluations` inherits the top-level `subject`, `action`, `resource` and `context` into
//! every item that lacks them. That expansion is bounded before it happens: the number of
//! items, and the size of every item with what it inherits, are checked against the batch
//! limits first, so a small body cannot become a large one (413).

use super::decide::{batch, split_array};
use super::workers::Priority;
use super::{ErrorCode, Shared, edge_error, json_response, read_body};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::sync::Arc;
use std::time::Instant;

/// The parts of one evaluation, as raw JSON (parsed only when used).
#[derive(Clone, Copy, Debug, Default, Deserialize)]
struct Parts<'a> {
    #[serde(borrow, default)]
    subject: Option<&'a RawValue>,
    #[serde(borrow, default)]
    action: Option<&'a RawValue>,
    #[serde(borrow, default)]
    resource: Option<&'a RawValue>,
    #[serde(borrow, default)]
    context: Option<&'a RawValue>,
}

impl<'a> Parts<'a> {
    /// This item's parts, the missing ones from `defaults`.
    fn with(self, defaults: Parts<'a>) -> Self {
        Self {
            subject: self.subject.or(defaults.subject),
            action: self.action.or(defaults.action),
            resource: self.resource.or(defaults.resource),
            context: self.context.or(defaults.context),
        }
    }

    /// The size of the parts, as the expanded item will hold them.
    fn size(&self) -> usize {
        [self.subject, self.action, self.resource, self.context]
            .iter()
            .flatten()
            .map(|r| r.get().len())
            .sum()
    }
}

/// The `evaluations` array of an `evaluations` body (its other members are the defaults, read
/// as [`Parts`]).
#[derive(Debug, Deserialize)]
struct EvaluationsBody<'a> {
    #[serde(borrow, default)]
    evaluations: Option<&'a RawValue>,
}

#[derive(Debug, Deserialize)]
struct Subject {
    #[serde(default)]
    properties: SubjectProperties,
}

#[derive(Debug, Default, Deserialize)]
struct SubjectProperties {
    #[serde(default)]
    token: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Action {
    name: String,
}

#[derive(Debug, Deserialize)]
struct Resource<'a> {
    #[serde(rename = "type")]
    entity_type: String,
    id: String,
    #[serde(borrow, default)]
    properties: Option<&'a RawValue>,
}

type Early = super::Early;

fn invalid(message: &str) -> Early {
    Box::new(edge_error(ErrorCode::RequestInvalid, message))
}

fn parse<'a, T: Deserialize<'a>>(what: &str, raw: &'a RawValue) -> Result<T, Early> {
    serde_json::from_str(raw.get())
        .map_err(|e| invalid(&portcullis_engine::describe_json_error(what, &e)))
}

/// The engine request (JSON text) of one evaluation: the subject's token, the action name, the
/// resource with its properties as attributes, the context.
fn engine_request(parts: &Parts<'_>) -> Result<String, Early> {
    let (Some(action), Some(resource)) = (parts.action, parts.resource) else {
        return Err(invalid("an evaluation needs an `action` and a `resource`"));
    };
    let token = match parts.subject {
        Some(subject) => parse::<Subject>("subject", subject)?.properties.token,
        None => None,
    };
    let action: Action = parse("action", action)?;
    let resource: Resource<'_> = parse("resource", resource)?;
    let json = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
    let attrs = resource.properties.map_or("{}", RawValue::get);
    let context = parts.context.map_or("{}", RawValue::get);
    Ok(format!(
        "{{\"token\":{},\"action\":{},\"resource\":{{\"type\":{},\"id\":{},\"attrs\":{attrs}}},\"context\":{context}}}",
        token.as_deref().map_or_else(|| "null".to_owned(), json),
        json(&action.name),
        json(&resource.entity_type),
        json(&resource.id),
    ))
}

/// AuthZEN's answer: `decision` as a boolean, the engine's decision as context.
fn answer(decision_json: &str, allowed: bool) -> String {
    format!("{{\"decision\":{allowed},\"context\":{decision_json}}}")
}

/// The PEP's credential, when one is configured; `Err` is the 401.
fn check_pep(shared: &Shared, headers: &HeaderMap) -> Result<(), Early> {
    match &shared.pep_token {
        Some(credential) if !credential.admits(headers) => Err(Box::new(super::admin::challenge(
            "the PEP must authenticate with its bearer credential",
            "Bearer realm=\"portcullis-pep\"",
        ))),
        _ => Ok(()),
    }
}

/// `POST /access/v1/evaluation`.
pub(super) async fn evaluation(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    // The body is read (within its bound) before a missing credential is answered: a client
    // still sending it would otherwise see its connection reset instead of the 401. Reading it
    // costs what any unauthenticated decision request costs.
    let (parts, body) = request.into_parts();
    let body = match read_body(&shared, body, shared.input.max_body).await {
        Ok(body) => body,
        Err(response) => return *response,
    };
    if let Err(response) = check_pep(&shared, &parts.headers) {
        return *response;
    }
    let parts: Result<Parts<'_>, _> = serde_json::from_str(&body);
    let text = match parts
        .map_err(|e| invalid(&portcullis_engine::describe_json_error("evaluation", &e)))
        .and_then(|parts| engine_request(&parts))
    {
        Ok(text) => text,
        Err(response) => return *response,
    };
    let now = shared.clock.now();
    let start = Instant::now();
    match shared
        .run(Priority::Interactive, move |i| i.decide(&text, now))
        .await
    {
        Ok(decided) => {
            if let Err(withheld) = shared.record(&decided, start.elapsed()).await {
                return *withheld;
            }
            json_response(
                StatusCode::OK,
                answer(&decided.decision_json, decided.outcome == "allow"),
            )
        }
        Err(response) => {
            shared.metrics.decision("error", start.elapsed());
            *response
        }
    }
}

/// `POST /access/v1/evaluations`: one answer per evaluation, in order.
pub(super) async fn evaluations(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    // The body is read (within its bound) before a missing credential is answered: a client
    // still sending it would otherwise see its connection reset instead of the 401. Reading it
    // costs what any unauthenticated decision request costs.
    let (parts, body) = request.into_parts();
    let body = match read_body(&shared, body, shared.input.max_batch_body).await {
        Ok(body) => body,
        Err(response) => return *response,
    };
    if let Err(response) = check_pep(&shared, &parts.headers) {
        return *response;
    }
    let requests = match expand(&shared, &body) {
        Ok(requests) => requests,
        Err(response) => return *response,
    };
    match batch(&shared, requests, None).await {
        Ok(results) => {
            let items: Vec<String> = results
                .into_iter()
                .map(|r| match r {
                    Ok(decided) => answer(&decided.decision_json, decided.outcome == "allow"),
                    Err((code, message)) => serde_json::json!({
                        "decision": false,
                        "context": {"error": {"code": code, "message": message}}
                    })
                    .to_string(),
                })
                .collect();
            json_response(
                StatusCode::OK,
                format!("{{\"evaluations\":[{}]}}", items.join(",")),
            )
        }
        Err(response) => *response,
    }
}

/// Every item of an `evaluations` body as an engine request, its defaults filled in; the item
/// count and the expanded size are checked before any item is built.
fn expand(shared: &Shared, body: &str) -> Result<Vec<String>, Early> {
    let parse_body =
        |e: serde_json::Error| invalid(&portcullis_engine::describe_json_error("evaluations", &e));
    let parsed: EvaluationsBody<'_> = serde_json::from_str(body).map_err(parse_body)?;
    let defaults: Parts<'_> = serde_json::from_str(body).map_err(parse_body)?;
    let limits = shared.input;
    let items: Vec<Parts<'_>> = match parsed.evaluations {
        // No `evaluations` array: the top level is the one evaluation.
        None => vec![Parts::default()],
        Some(raw) => split_array(raw.get(), limits.max_batch_items)
            .map_err(|e| e.into_response(shared))?
            .into_iter()
            .map(|item| parse::<Parts<'_>>("evaluation", item))
            .collect::<Result<_, _>>()?,
    };
    let too_large = |message: String| {
        shared.metrics.too_large();
        Box::new(edge_error(ErrorCode::RequestTooLarge, &message))
    };
    let mut expanded = 0usize;
    for item in &items {
        expanded = expanded.saturating_add(item.with(defaults).size());
        if expanded > limits.max_batch_body {
            return Err(too_large(format!(
                "the evaluations, with the defaults each inherits, are larger than {} bytes",
                limits.max_batch_body
            )));
        }
    }
    items
        .iter()
        .map(|item| engine_request(&item.with(defaults)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn evaluations_inherit_top_level_parts_and_the_subject_is_the_bodys() {
        let body = r#"{"subject": {"type": "user", "id": "a", "properties": {"token": "t"}},
            "action": {"name": "view"}, "context": {"k": 1},
            "evaluations": [{"resource": {"type": "Report", "id": "r1"}},
                            {"action": {"name": "export"}, "resource": {"type": "Report", "id": "r2", "properties": {"tenant": "acme"}}}]}"#;
        let parsed: EvaluationsBody<'_> = serde_json::from_str(body).unwrap();
        let defaults: Parts<'_> = serde_json::from_str(body).unwrap();
        let raw = split_array(parsed.evaluations.unwrap().get(), 10)
            .ok()
            .unwrap();
        let items: Vec<Parts<'_>> = raw
            .iter()
            .map(|r| serde_json::from_str(r.get()).unwrap())
            .collect();
        let first: Value =
            serde_json::from_str(&engine_request(&items[0].with(defaults)).unwrap()).unwrap();
        assert_eq!(
            first,
            json!({"token": "t", "action": "view", "resource": {"type": "Report", "id": "r1", "attrs": {}}, "context": {"k": 1}})
        );
        let second: Value =
            serde_json::from_str(&engine_request(&items[1].with(defaults)).unwrap()).unwrap();
        assert_eq!(second["action"], "export");
        assert_eq!(second["resource"]["attrs"]["tenant"], "acme");
        assert!(engine_request(&Parts::default()).is_err());
    }
}
