//! The bundle's routes, compiled and checked against the schema at load: a route naming an
//! action or entity type the schema does not have, an attribute the type does not declare, or
//! a reserved context key is a load error with its location, not a route that denies
//! everything.

use super::SchemaInfo;
use super::locate::{Step, locate};
use crate::bundle::AttrType;
use crate::cedar_glue::RESERVED_CONTEXT_KEYS;
use crate::edge::RouteSpec;
use crate::edge::routes::{MAX_ROUTES, Route};
use crate::error::{BundleProblem, SourceLocation, did_you_mean, sanitize};
use std::collections::BTreeSet;

/// Where the routes were written: the authoring file's name and text, when the bundle is being
/// compiled from a directory.
pub(crate) struct RoutesText<'a> {
    pub file: &'a str,
    pub text: Option<&'a str>,
}

impl RoutesText<'_> {
    /// The location of `field` (`resource.attrs.department`) of route `index`.
    fn at(&self, index: usize, field: &str) -> SourceLocation {
        let Some(text) = self.text else {
            return SourceLocation::file(format!("{}: routes[{index}].{field}", self.file));
        };
        let mut path = vec![Step::Key("routes"), Step::Index(index)];
        path.extend(field.split('.').filter(|s| !s.is_empty()).map(Step::Key));
        match locate(text, &path) {
            Some(offset) => SourceLocation::at_offset(self.file, text, offset),
            None => SourceLocation::file(self.file),
        }
    }
}

/// Compile every route; problems go to `problems`.
pub(crate) fn compile(
    specs: &[RouteSpec],
    info: Option<&SchemaInfo>,
    stored: &BTreeSet<String>,
    text: &RoutesText<'_>,
    problems: &mut Vec<BundleProblem>,
) -> Vec<Route> {
    if specs.len() > MAX_ROUTES {
        problems.push(
            BundleProblem::new(
                "routes",
                format!("{} routes, over the limit of {MAX_ROUTES}", specs.len()),
            )
            .at(SourceLocation::file(text.file)),
        );
        return Vec::new();
    }
    let mut routes = Vec::with_capacity(specs.len());
    for (index, spec) in specs.iter().enumerate() {
        let what = format!("route {index} (`{}`)", sanitize(&spec.path, 120));
        let mut found = Vec::new();
        let mut fail = |field: &str, message: String, help: Option<String>| {
            let mut problem = BundleProblem::new("routes", format!("{what}: {message}"))
                .at(text.at(index, field));
            if let Some(help) = help {
                problem = problem.help(help);
            }
            found.push(problem);
        };
        match Route::compile(spec) {
            Ok(route) => {
                check(&route, info, stored, &mut fail);
                if found.is_empty() {
                    routes.push(route);
                }
            }
            Err(err) => fail(&err.field, err.message, None),
        }
        problems.append(&mut found);
    }
    routes
}

/// Check one route against the schema (without a schema, only the reserved context keys).
fn check(
    route: &Route,
    info: Option<&SchemaInfo>,
    stored: &BTreeSet<String>,
    fail: &mut dyn FnMut(&str, String, Option<String>),
) {
    for key in route.context_keys() {
        if RESERVED_CONTEXT_KEYS.contains(&key) {
            fail(
                &format!("context.{key}"),
                format!("context key `{key}` is set by the engine from the token"),
                None,
            );
        }
    }
    let Some(info) = info else {
        return;
    };
    let action = route.action();
    let shape = info
        .actions
        .iter()
        .find(|((ty, id), _)| (ty == "Action" || ty.ends_with("::Action")) && id == action)
        .map(|(_, shape)| shape);
    let Some(shape) = shape else {
        let actions = info.actions.keys().map(|(_, id)| id.as_str());
        fail(
            "action",
            format!("unknown action `{}`", sanitize(action, 80)),
            did_you_mean(action, actions).map(|s| format!("did you mean `{s}`?")),
        );
        return;
    };
    let ty = route.entity_type();
    let Some(entity) = info.shape(ty) else {
        let types = info.entity_types.keys().map(String::as_str);
        fail(
            "resource.type",
            format!("unknown entity type `{}`", sanitize(ty, 80)),
            did_you_mean(ty, types).map(|s| format!("did you mean `{s}`?")),
        );
        return;
    };
    if !shape.resources.contains(ty) {
        let applies: Vec<&str> = shape.resources.iter().map(String::as_str).collect();
        fail(
            "resource.type",
            format!(
                "action `{action}` does not apply to `{ty}` (it applies to {})",
                if applies.is_empty() {
                    "no resource type".to_owned()
                } else {
                    applies
                        .iter()
                        .map(|t| format!("`{t}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ),
            None,
        );
    }
    let given: Vec<&str> = route.attr_keys().collect();
    if stored.contains(ty) {
        // A stored type's facts come from the tenant's data; the request is never asked.
        if let Some(key) = given.first() {
            fail(
                &format!("resource.attrs.{key}"),
                format!(
                    "`{ty}` is a stored type: its attributes come from the tenant's data, \
                     never from a request"
                ),
                Some("remove `resource.attrs` from this route".into()),
            );
        }
        return check_context(route, shape, fail);
    }
    for key in &given {
        match entity.attrs.get(*key) {
            None => fail(
                &format!("resource.attrs.{key}"),
                format!("`{ty}` declares no attribute `{key}`"),
                did_you_mean(key, entity.attrs.keys().map(String::as_str))
                    .map(|s| format!("did you mean `{s}`?")),
            ),
            Some((AttrType::String, _)) => {}
            Some(_) => fail(
                &format!("resource.attrs.{key}"),
                format!("attribute `{key}` of `{ty}` is not a String; routes give strings"),
                None,
            ),
        }
    }
    let missing: Vec<&str> = entity
        .attrs
        .iter()
        .filter(|(name, (_, required))| *required && !given.contains(&name.as_str()))
        .map(|(name, _)| name.as_str())
        .collect();
    if !missing.is_empty() {
        fail(
            "resource.attrs",
            format!(
                "`{ty}` requires {} and the route gives no value for it",
                missing
                    .iter()
                    .map(|m| format!("`{m}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Some(
                "give it from the path, or make it optional in the schema (`name?: Type`) if the edge cannot know it"
                    .into(),
            ),
        );
    }
    check_context(route, shape, fail);
}

/// The route's context keys against the action's context type.
fn check_context(
    route: &Route,
    shape: &super::ActionShape,
    fail: &mut dyn FnMut(&str, String, Option<String>),
) {
    let action = route.action();
    if let Some(context) = &shape.context {
        for key in route.context_keys() {
            if RESERVED_CONTEXT_KEYS.contains(&key) {
                continue;
            }
            match context.get(key) {
                None => fail(
                    &format!("context.{key}"),
                    format!("the context of `{action}` declares no `{key}`"),
                    None,
                ),
                Some((AttrType::String, _)) => {}
                Some(_) => fail(
                    &format!("context.{key}"),
                    format!("context `{key}` of `{action}` is not a String; routes give strings"),
                    None,
                ),
            }
        }
    }
}
