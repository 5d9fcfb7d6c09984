//! Policy files: parsed per file (shared or one tenant's), given their `@id`s, located in
//! their source for messages, and validated against the schema.

use super::{CompiledBundle, diagnostic_offset};
use crate::error::{BundleProblem, SourceLocation, sanitize};
use cedar_policy::{PolicyId, PolicySet, Schema};
use miette::Diagnostic;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::str::FromStr;

/// One policy file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySource {
    /// Path relative to the bundle directory, for messages.
    pub file: String,
    /// The tenant these policies belong to, or none for shared policies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Cedar source text.
    pub source: String,
}

pub(super) struct ParsedPolicies {
    pub(super) shared: PolicySet,
    pub(super) per_tenant: BTreeMap<String, Vec<cedar_policy::Policy>>,
    /// Policy id → (file index, source offset of the policy).
    origin: HashMap<PolicyId, usize>,
    pub(super) count: usize,
}

pub(super) fn parse_policies(
    compiled: &CompiledBundle,
    tenants: &BTreeSet<&str>,
    problems: &mut Vec<BundleProblem>,
) -> ParsedPolicies {
    let require_ids = compiled.settings.require_policy_ids;
    let mut parsed = ParsedPolicies {
        shared: PolicySet::new(),
        per_tenant: BTreeMap::new(),
        origin: HashMap::new(),
        count: 0,
    };
    let mut seen: HashMap<String, String> = HashMap::new();
    for (index, file) in compiled.policies.iter().enumerate() {
        if let Some(tenant) = &file.tenant
            && !tenants.contains(tenant.as_str())
        {
            problems.push(
                BundleProblem::new(
                    "policy",
                    format!("policies for unknown tenant `{}`", sanitize(tenant, 64)),
                )
                .at(SourceLocation::file(&file.file))
                .help("add the tenant to tenants.json or move the file"),
            );
            continue;
        }
        let set = match PolicySet::from_str(&file.source) {
            Ok(set) => set,
            Err(errs) => {
                for err in errs.errors_as_strings_with_offsets() {
                    let (message, offset, help) = err;
                    let location = offset.map_or_else(
                        || SourceLocation::file(&file.file),
                        |o| SourceLocation::at_offset(&file.file, &file.source, o),
                    );
                    let mut problem = BundleProblem::new("policy_parse", message).at(location);
                    if let Some(help) = help {
                        problem = problem.help(help);
                    }
                    problems.push(problem);
                }
                continue;
            }
        };
        if set.templates().next().is_some() {
            problems.push(
                BundleProblem::new("policy", "policy templates are not supported")
                    .at(SourceLocation::file(&file.file)),
            );
        }
        // Cedar names the policies of a file `policy0`, `policy1`, ... in source order.
        let mut policies: Vec<(usize, cedar_policy::Policy)> = set
            .policies()
            .map(|p| {
                (
                    p.id()
                        .to_string()
                        .trim_start_matches("policy")
                        .parse()
                        .unwrap_or(usize::MAX),
                    p.clone(),
                )
            })
            .collect();
        policies.sort_by_key(|(n, _)| *n);
        let offsets = policy_offsets(&file.source);
        for (n, policy) in policies {
            let offset = offsets.get(n).copied().unwrap_or(0);
            let id = match policy.annotation("id") {
                Some(id) if !id.trim().is_empty() => id.to_owned(),
                _ if require_ids => {
                    problems.push(
                        BundleProblem::new("policy_id", "policy has no `@id` annotation")
                            .at(SourceLocation::at_offset(&file.file, &file.source, offset))
                            .help("add `@id(\"a-stable-name\")` before the policy; it is the reason shown in decisions"),
                    );
                    continue;
                }
                _ => format!("policy{}", parsed.count),
            };
            let location = SourceLocation::at_offset(&file.file, &file.source, offset);
            if let Some(previous) = seen.insert(id.clone(), location.to_string()) {
                problems.push(
                    BundleProblem::new(
                        "policy_id",
                        format!("duplicate policy id `{}`", sanitize(&id, 80)),
                    )
                    .at(location)
                    .help(format!("first used at {previous}")),
                );
                continue;
            }
            let policy = policy.new_id(PolicyId::new(&id));
            parsed.origin.insert(policy.id().clone(), index);
            parsed.count += 1;
            match &file.tenant {
                Some(tenant) => parsed
                    .per_tenant
                    .entry(tenant.clone())
                    .or_default()
                    .push(policy),
                None => {
                    if let Err(err) = parsed.shared.add(policy) {
                        problems.push(BundleProblem::new("policy", err.to_string()).at(location));
                    }
                }
            }
        }
    }
    parsed
}

/// Byte offsets where each policy of a Cedar source starts: statements end with `;` outside
/// string literals and comments (Cedar expressions contain no other `;`).
fn policy_offsets(source: &str) -> Vec<usize> {
    let bytes = source.as_bytes();
    let mut offsets = Vec::new();
    let mut start: Option<usize> = None;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while bytes.get(i).is_some_and(|c| *c != b'\n') {
                    i += 1;
                }
                continue;
            }
            b'"' => {
                start.get_or_insert(i);
                i += 1;
                while let Some(&c) = bytes.get(i) {
                    i += if c == b'\\' { 2 } else { 1 };
                    if c == b'"' {
                        break;
                    }
                }
                continue;
            }
            b';' => {
                if let Some(s) = start.take() {
                    offsets.push(s);
                }
            }
            c if c.is_ascii_whitespace() => {}
            _ => {
                start.get_or_insert(i);
            }
        }
        i += 1;
    }
    offsets
}

/// Cedar's parse errors, flattened with offsets.
trait ParseErrorsExt {
    fn errors_as_strings_with_offsets(&self) -> Vec<(String, Option<usize>, Option<String>)>;
}

impl ParseErrorsExt for cedar_policy::ParseErrors {
    fn errors_as_strings_with_offsets(&self) -> Vec<(String, Option<usize>, Option<String>)> {
        self.iter()
            .map(|err| {
                (
                    err.to_string(),
                    diagnostic_offset(err),
                    err.help().map(|h| h.to_string()),
                )
            })
            .collect()
    }
}

pub(super) fn validate_policies(
    schema: &Schema,
    compiled: &CompiledBundle,
    parsed: &ParsedPolicies,
    problems: &mut Vec<BundleProblem>,
) {
    let validator = cedar_policy::Validator::new(schema.clone());
    let mut all = parsed.shared.clone();
    for policy in parsed.per_tenant.values().flatten() {
        // Ids are unique across the bundle, so adding cannot clash.
        let _ = all.add(policy.clone());
    }
    let result = validator.validate(&all, cedar_policy::ValidationMode::Strict);
    for err in result.validation_errors() {
        let file = parsed
            .origin
            .get(err.policy_id())
            .and_then(|i| compiled.policies.get(*i));
        let location = match (file, diagnostic_offset(err)) {
            (Some(file), Some(offset)) => {
                SourceLocation::at_offset(&file.file, &file.source, offset)
            }
            (Some(file), None) => SourceLocation::file(&file.file),
            (None, _) => SourceLocation::file("policies"),
        };
        let mut problem = BundleProblem::new(
            "policy_validation",
            format!("policy `{}`: {err}", err.policy_id()),
        )
        .at(location);
        if let Some(help) = err.help() {
            problem = problem.help(help.to_string());
        }
        problems.push(problem);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_offsets_skip_strings_and_comments() {
        let src = "// a; comment\n@id(\"x;y\") permit(principal, action, resource);\n  forbid(principal, action, resource) when { \"\\\";\" == \"\" };";
        let offsets = policy_offsets(src);
        assert_eq!(offsets.len(), 2);
        assert_eq!(src.get(offsets[0]..offsets[0] + 3), Some("@id"));
        assert_eq!(src.get(offsets[1]..offsets[1] + 6), Some("forbid"));
    }
}
