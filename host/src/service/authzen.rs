//! The AuthZEN access evaluation API (`/access/v1/evaluation[s]`) and Envoy's ext_authz HTTP
//! mode: both translate into the engine's token request; decisions are the engine's.
//!
//! The caller's token is the `Authorization: Bearer` header, or AuthZEN's
//! `subject.properties.token`. AuthZEN `action.name` is the action, `resource` the resource
//! (`properties` its attributes), `context` the context. ext_authz reads the action and resource
//! from headers that the Envoy route sets (`x-portcullis-action`, `x-portcullis-resource-type`,
//! `x-portcullis-resource-id`, optional `x-portcullis-resource-attrs` and
//! `x-portcullis-context` as JSON objects); a request without them is denied.

use super::{Early, ErrorCode, Shared, edge_error, json_response, read_body};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// `subject`: only its token matters (the engine derives the principal from it).
#[derive(Clone, Debug, Default, Deserialize)]
struct Subject {
    #[serde(default)]
    properties: Map<String, Value>,
}

#[derive(Clone, Debug, Deserialize)]
struct Action {
    name: String,
}

#[derive(Clone, Debug, Deserialize)]
struct Resource {
    #[serde(rename = "type")]
    entity_type: String,
    id: String,
    #[serde(default)]
    properties: Map<String, Value>,
}

/// One evaluation; in `evaluations`, missing parts come from the top level.
#[derive(Clone, Debug, Default, Deserialize)]
struct Evaluation {
    subject: Option<Subject>,
    action: Option<Action>,
    resource: Option<Resource>,
    context: Option<Map<String, Value>>,
}

#[derive(Debug, Deserialize)]
struct Evaluations {
    #[serde(flatten)]
    defaults: Evaluation,
    #[serde(default)]
    evaluations: Vec<Evaluation>,
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

/// The engine request for an evaluation, as JSON (`None`: action or resource missing).
fn engine_request(
    evaluation: &Evaluation,
    defaults: &Evaluation,
    header_token: Option<&str>,
) -> Option<Value> {
    let subject = evaluation.subject.as_ref().or(defaults.subject.as_ref());
    let token = header_token
        .map(str::to_owned)
        .or_else(|| subject.and_then(|s| s.properties.get("token")?.as_str().map(str::to_owned)));
    let action = evaluation.action.as_ref().or(defaults.action.as_ref())?;
    let resource = evaluation
        .resource
        .as_ref()
        .or(defaults.resource.as_ref())?;
    let context = evaluation.context.as_ref().or(defaults.context.as_ref());
    Some(json!({
        "token": token,
        "action": action.name,
        "resource": {"type": resource.entity_type, "id": resource.id, "attrs": resource.properties},
        "context": context.cloned().unwrap_or_default(),
    }))
}

/// AuthZEN's answer: `decision` as a boolean, the engine's decision as context.
fn answer(decision_json: &str, allowed: bool) -> String {
    format!("{{\"decision\":{allowed},\"context\":{decision_json}}}")
}

fn parse<T: for<'de> Deserialize<'de>>(body: &str) -> Result<T, Early> {
    serde_json::from_str(body).map_err(|e| {
        Box::new(edge_error(
            ErrorCode::RequestInvalid,
            &format!("invalid evaluation request: {e}"),
        ))
    })
}

fn missing() -> Response {
    edge_error(
        ErrorCode::RequestInvalid,
        "an evaluation needs an `action` and a `resource`",
    )
}

/// `POST /access/v1/evaluation`.
pub(super) async fn evaluation(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let token = bearer(request.headers());
    let body = match read_body(request.into_body(), shared.max_body).await {
        Ok(body) => body,
        Err(response) => return *response,
    };
    let evaluation: Evaluation = match parse(&body) {
        Ok(e) => e,
        Err(response) => return *response,
    };
    let Some(engine_request) =
        engine_request(&evaluation, &Evaluation::default(), token.as_deref())
    else {
        return missing();
    };
    let text = engine_request.to_string();
    match shared.decide(|i| i.decide(&text, shared.clock.now())) {
        Ok(decided) => {
            shared.audit(&decided);
            json_response(
                StatusCode::OK,
                answer(&decided.decision_json, decided.outcome == "allow"),
            )
        }
        Err(response) => *response,
    }
}

/// `POST /access/v1/evaluations`: one answer per evaluation, in order.
pub(super) async fn evaluations(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let token = bearer(request.headers());
    let body = match read_body(request.into_body(), shared.max_batch_body).await {
        Ok(body) => body,
        Err(response) => return *response,
    };
    let Evaluations {
        defaults,
        evaluations,
    } = match parse(&body) {
        Ok(e) => e,
        Err(response) => return *response,
    };
    // No `evaluations` array: the top level is the one evaluation.
    let evaluations = if evaluations.is_empty() {
        vec![Evaluation::default()]
    } else {
        evaluations
    };
    let mut requests = Vec::with_capacity(evaluations.len());
    for evaluation in &evaluations {
        match engine_request(evaluation, &defaults, token.as_deref()) {
            Some(r) => requests.push(r),
            None => return missing(),
        }
    }
    let body = Value::Array(requests).to_string();
    match super::batch(&shared, &body) {
        Ok(results) => {
            let items: Vec<String> = results
                .into_iter()
                .map(|r| match r {
                    Ok(decided) => answer(&decided.decision_json, decided.outcome == "allow"),
                    Err((code, message)) => {
                        json!({"decision": false, "context": {"error": {"code": code, "message": message}}}).to_string()
                    }
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

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name)?.to_str().ok()
}

fn header_object(headers: &HeaderMap, name: &str) -> Result<Map<String, Value>, String> {
    match header_text(headers, name) {
        None => Ok(Map::new()),
        Some(text) => match serde_json::from_str(text) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(format!("`{name}` must be a JSON object")),
        },
    }
}

/// Envoy ext_authz (HTTP service mode): any method and path; 200 allows, 401/403 deny with the
/// decision as body. Fails closed: anything missing or broken is a 403.
pub(super) async fn ext_authz(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let headers = request.headers();
    let token = bearer(headers);
    let (action, entity_type, id) = match (
        header_text(headers, "x-portcullis-action"),
        header_text(headers, "x-portcullis-resource-type"),
        header_text(headers, "x-portcullis-resource-id"),
    ) {
        (Some(a), Some(t), Some(i)) => (a.to_owned(), t.to_owned(), i.to_owned()),
        _ => {
            return deny_response(
                StatusCode::FORBIDDEN,
                "request_invalid",
                "the route sets no `x-portcullis-action`, `x-portcullis-resource-type` and `x-portcullis-resource-id`",
            );
        }
    };
    let (attrs, context) = match (
        header_object(headers, "x-portcullis-resource-attrs"),
        header_object(headers, "x-portcullis-context"),
    ) {
        (Ok(a), Ok(c)) => (a, c),
        (Err(e), _) | (_, Err(e)) => {
            return deny_response(StatusCode::FORBIDDEN, "request_invalid", &e);
        }
    };
    let text = json!({
        "token": token,
        "action": action,
        "resource": {"type": entity_type, "id": id, "attrs": attrs},
        "context": context,
    })
    .to_string();
    match shared.decide(|i| i.decide(&text, shared.clock.now())) {
        Ok(decided) => {
            shared.audit(&decided);
            let status = if decided.outcome == "allow" {
                StatusCode::OK
            } else {
                StatusCode::from_u16(decided.status).unwrap_or(StatusCode::FORBIDDEN)
            };
            (
                status,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                decided.decision_json,
            )
                .into_response()
        }
        Err(response) if response.status().is_server_error() => *response,
        Err(_) => deny_response(
            StatusCode::FORBIDDEN,
            "request_invalid",
            "the request could not be decided",
        ),
    }
}

fn deny_response(status: StatusCode, code: &str, message: &str) -> Response {
    super::error_response(status, code, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evaluations_inherit_top_level_parts() {
        let body = r#"{"subject": {"type": "user", "id": "a", "properties": {"token": "t"}},
            "action": {"name": "view"}, "context": {"k": 1},
            "evaluations": [{"resource": {"type": "Report", "id": "r1"}},
                            {"action": {"name": "export"}, "resource": {"type": "Report", "id": "r2", "properties": {"tenant": "acme"}}}]}"#;
        let parsed: Evaluations = serde_json::from_str(body).unwrap();
        let first = engine_request(&parsed.evaluations[0], &parsed.defaults, None).unwrap();
        assert_eq!(
            first,
            json!({"token": "t", "action": "view", "resource": {"type": "Report", "id": "r1", "attrs": {}}, "context": {"k": 1}})
        );
        let second = engine_request(&parsed.evaluations[1], &parsed.defaults, Some("h")).unwrap();
        assert_eq!(second["token"], "h");
        assert_eq!(second["action"], "export");
        assert_eq!(second["resource"]["attrs"]["tenant"], "acme");
        assert!(engine_request(&Evaluation::default(), &Evaluation::default(), None).is_none());
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer abc"),
        );
        assert_eq!(bearer(&headers).as_deref(), Some("abc"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&headers), None);
    }
}
