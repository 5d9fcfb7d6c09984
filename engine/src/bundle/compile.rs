//! The compiled, single-document form of a bundle, and compiling an authoring directory into it.

use super::{Bundle, Files, PolicySource, Settings, TenantConfig, TenantsFile, routes};
use crate::edge::RouteSpec;
use crate::error::{BundleError, BundleProblem, SourceLocation};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The `format` tag of compiled bundles this engine reads.
pub const BUNDLE_FORMAT: &str = "portcullis.bundle/v1";

/// The compiled, single-document form of a bundle: what every host loads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompiledBundle {
    /// Always [`BUNDLE_FORMAT`].
    pub format: String,
    /// Content hash; computed on compilation and checked on load.
    #[serde(default)]
    pub revision: String,
    /// Settings.
    #[serde(default)]
    pub settings: Settings,
    /// Cedar schema, human syntax or JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Policy files.
    #[serde(default)]
    pub policies: Vec<PolicySource>,
    /// Tenants.
    #[serde(default)]
    pub tenants: BTreeMap<String, TenantConfig>,
    /// Static entities (Cedar entity JSON array).
    #[serde(default = "empty_array")]
    pub entities: serde_json::Value,
    /// HTTP routes (method + path → action and resource), for the hosts that decide HTTP
    /// requests (the Envoy filter, ext_authz, `portcullis check --method --path`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteSpec>,
    /// Detached JWS signatures over the bundle (see [`BundleTrust`](super::BundleTrust)); not part
    /// of the revision.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signatures: Vec<String>,
}

fn empty_array() -> serde_json::Value {
    serde_json::Value::Array(Vec::new())
}

impl CompiledBundle {
    /// A compiled bundle from parts; `revision` is filled in by [`CompiledBundle::seal`].
    pub fn new(settings: Settings, schema: Option<String>, policies: Vec<PolicySource>) -> Self {
        Self {
            format: BUNDLE_FORMAT.to_owned(),
            revision: String::new(),
            settings,
            schema,
            policies,
            tenants: BTreeMap::new(),
            entities: empty_array(),
            routes: Vec::new(),
            signatures: Vec::new(),
        }
    }

    /// The content hash of everything but the revision itself and the signatures.
    pub fn compute_revision(&self) -> String {
        let mut unsealed = self.clone();
        unsealed.revision.clear();
        unsealed.signatures.clear();
        let bytes = serde_json::to_vec(&unsealed).unwrap_or_default();
        crate::error::hex16(&crate::crypto::sha256(&bytes))
    }

    /// Set the revision from the content.
    pub fn seal(mut self) -> Self {
        self.revision = self.compute_revision();
        self
    }

    /// Serialise to the JSON document hosts load.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// The files of an authoring directory, read by a host. Paths are relative to the directory.
#[derive(Clone, Debug, Default)]
pub struct BundleSources {
    /// `schema.cedarschema` (or `.json`): path and text.
    pub schema: Option<(String, String)>,
    /// Policy files.
    pub policies: Vec<PolicySource>,
    /// `tenants.json`: path and text.
    pub tenants: Option<(String, String)>,
    /// `entities.json`: path and text.
    pub entities: Option<(String, String)>,
    /// `bundle.json` settings: path and text.
    pub settings: Option<(String, String)>,
    /// `routes.json`: path and text.
    pub routes: Option<(String, String)>,
}

impl BundleSources {
    /// A bundle allowing everything (one policy, `permit(principal, action, resource)`), with
    /// the tenants of `tenants` (a `tenants.json` document): for tests and demos of the hosts'
    /// plumbing (feature `mint`), never for deployment.
    ///
    /// # Errors
    /// `tenants` does not compile.
    #[cfg(any(test, feature = "mint"))]
    pub fn permit_all(tenants: &serde_json::Value) -> Result<CompiledBundle, BundleError> {
        let sources = Self {
            policies: vec![PolicySource {
                file: "p.cedar".into(),
                tenant: None,
                source: "@id(\"all\")\npermit(principal, action, resource);".into(),
            }],
            tenants: Some(("tenants.json".into(), tenants.to_string())),
            ..Self::default()
        };
        sources.compile(&mut |_| Err("no files".into()))
    }

    /// Compile into the single-document form, validating everything.
    ///
    /// `read_file` reads files that `tenants.json` refers to (`jwks_file`), relative to the
    /// bundle directory; the engine itself does no I/O.
    ///
    /// # Errors
    /// Every problem found, each with its location.
    pub fn compile(
        self,
        read_file: &mut dyn FnMut(&str) -> Result<String, String>,
    ) -> Result<CompiledBundle, BundleError> {
        let mut problems = Vec::new();
        let settings: Settings = match &self.settings {
            Some((file, text)) => parse_json_file(file, text, &mut problems).unwrap_or_default(),
            None => Settings::default(),
        };
        let tenants: TenantsFile = match &self.tenants {
            Some((file, text)) => parse_json_file(file, text, &mut problems).unwrap_or_default(),
            None => TenantsFile::default(),
        };
        let entities = match &self.entities {
            Some((file, text)) => {
                parse_json_file(file, text, &mut problems).unwrap_or_else(empty_array)
            }
            None => empty_array(),
        };
        let routes: crate::edge::RoutesFile = match &self.routes {
            Some((file, text)) => parse_json_file(file, text, &mut problems).unwrap_or_default(),
            None => crate::edge::RoutesFile::default(),
        };
        // A file that does not parse stops here: what follows would be checked against its
        // defaults (no tenants, no routes) and report problems that are not there.
        if !problems.is_empty() {
            return Err(BundleError { problems });
        }
        let mut tenants = tenants.tenants;
        let tenants_file = self
            .tenants
            .as_ref()
            .map_or("tenants.json", |(f, _)| f.as_str())
            .to_owned();
        let mut jwks_files = BTreeMap::new();
        for (name, tenant) in &mut tenants {
            for (index, issuer) in tenant.issuers.iter_mut().enumerate() {
                let Some(path) = issuer.jwks_file.take() else {
                    continue;
                };
                jwks_files.insert((name.clone(), index), path.clone());
                if issuer.jwks.is_some() {
                    problems.push(
                        BundleProblem::new(
                            "tenants",
                            format!("tenant `{name}`: issuer has both `jwks` and `jwks_file`"),
                        )
                        .at(SourceLocation::file(&tenants_file)),
                    );
                    continue;
                }
                match read_file(&path)
                    .and_then(|text| serde_json::from_str(&text).map_err(|e| e.to_string()))
                {
                    Ok(jwks) => issuer.jwks = Some(jwks),
                    Err(why) => problems.push(
                        BundleProblem::new(
                            "keys",
                            format!("tenant `{name}`: cannot read `jwks_file` `{path}`: {why}"),
                        )
                        .at(SourceLocation::file(&tenants_file)),
                    ),
                }
            }
        }
        let mut compiled =
            CompiledBundle::new(settings, self.schema.map(|(_, text)| text), self.policies);
        compiled.tenants = tenants;
        compiled.entities = entities;
        compiled.routes = routes.routes;
        let compiled = compiled.seal();
        let files = Files {
            schema: "schema.cedarschema",
            tenants: super::issuers::TenantsText {
                file: &tenants_file,
                text: self.tenants.as_ref().map(|(_, t)| t.as_str()),
                jwks_files: &jwks_files,
            },
            routes: routes::RoutesText {
                file: self
                    .routes
                    .as_ref()
                    .map_or("routes.json", |(f, _)| f.as_str()),
                text: self.routes.as_ref().map(|(_, t)| t.as_str()),
            },
        };
        let loaded = Bundle::load_with_files(compiled.clone(), &files);
        match loaded {
            Ok(_) if problems.is_empty() => Ok(compiled),
            Ok(_) => Err(BundleError { problems }),
            Err(err) => {
                problems.extend(err.problems);
                Err(BundleError { problems })
            }
        }
    }
}

fn parse_json_file<T: serde::de::DeserializeOwned>(
    file: &str,
    text: &str,
    problems: &mut Vec<BundleProblem>,
) -> Option<T> {
    match serde_json::from_str(text) {
        Ok(value) => Some(value),
        Err(err) => {
            problems.push(
                BundleProblem::new("json", crate::error::json_message(&err)).at(SourceLocation {
                    file: file.to_owned(),
                    line: Some(err.line()),
                    column: Some(err.column()),
                }),
            );
            None
        }
    }
}
