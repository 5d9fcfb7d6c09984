//! `portcullis init`: a new policy pack that validates and passes its own tests as written —
//! one tenant, its development key, a schema, policies with tests, a route — for an author to
//! grow from (the reference is `docs/reference/authoring.md`).

use crate::dev_keys;
use std::path::Path;

const SCHEMA: &str = r#"// Principals come from verified tokens: `User` for people, `Client` for API clients
// (client-credentials tokens). Their ids are tenant-qualified ("example/alice"); `tenant` is
// set by the engine from the issuer that verified the token, never from a claim.

entity Role;

entity User in [Role] {
  tenant: String,
  department?: String,
};

entity Client in [Role] {
  tenant: String,
};

entity Document {
  tenant: String,
  department?: String,
};

// What the engine puts in the context from the token.
type Session = {
  mfa: Bool,
  session_age?: Long,
  scopes: Set<String>,
  token_type: String,
  client_id?: String,
};

action read, delete appliesTo {
  principal: [User, Client],
  resource: Document,
  context: Session,
};
"#;

const POLICIES: &str = r#"// A tenant's people read their own department's documents.
@id("read-own-department")
permit(principal is User, action == Action::"read", resource)
when {
  principal.tenant == resource.tenant &&
  principal has department && resource has department &&
  principal.department == resource.department
};

// Editors delete documents, with MFA.
@id("editors-delete")
permit(principal in Role::"Editor", action == Action::"delete", resource)
when { principal.tenant == resource.tenant && context.mfa };

// Nothing ever crosses tenants.
@id("no-cross-tenant")
forbid(principal, action, resource)
unless { principal.tenant == resource.tenant };
"#;

const ROUTES: &str = r#"{
  "routes": [
    {
      "methods": ["GET"],
      "path": "/tenants/{tenant}/documents/{id}",
      "action": "read",
      "resource": { "type": "Document", "id": "{tenant}/{id}", "attrs": { "tenant": "{tenant}" } }
    },
    {
      "methods": ["DELETE"],
      "path": "/tenants/{tenant}/documents/{id}",
      "action": "delete",
      "resource": { "type": "Document", "id": "{tenant}/{id}", "attrs": { "tenant": "{tenant}" } }
    }
  ]
}
"#;

fn tenants(tenant: &str) -> String {
    format!(
        r#"{{
  "tenants": {{
    "{tenant}": {{
      "display_name": "{tenant} (development issuer; in production use its IdP's jwks_uri or discovery)",
      "issuers": [
        {{
          "issuer": "https://idp.{tenant}.example",
          "audiences": ["api://my-api"],
          "algorithms": ["RS256"],
          "jwks_file": "dev-keys/{tenant}-rs256.jwks.json",
          "claims": {{
            "preset": "generic",
            "attributes": {{ "department": "department" }}
          }}
        }}
      ]
    }}
  }}
}}
"#
    )
}

fn tests(tenant: &str) -> String {
    let document = |department: &str, owner: &str| {
        format!(
            r#"{{ "type": "Document", "id": "{owner}/d1", "attrs": {{ "tenant": "{owner}", "department": "{department}" }} }}"#
        )
    };
    format!(
        r#"{{
  "description": "The starter policies of `portcullis init`.",
  "now": 1767225600,
  "tests": [
    {{
      "name": "a user reads a document of their own department",
      "tenant": "{tenant}",
      "claims": {{ "sub": "alice", "department": "finance" }},
      "action": "read",
      "resource": {own},
      "expect": "allow",
      "reasons": ["read-own-department"]
    }},
    {{
      "name": "not another department's",
      "tenant": "{tenant}",
      "claims": {{ "sub": "alice", "department": "finance" }},
      "action": "read",
      "resource": {sales},
      "expect": "deny"
    }},
    {{
      "name": "never another tenant's",
      "tenant": "{tenant}",
      "claims": {{ "sub": "alice", "department": "finance" }},
      "action": "read",
      "resource": {foreign},
      "expect": "deny",
      "reasons": ["no-cross-tenant"]
    }},
    {{
      "name": "an editor deletes with MFA",
      "tenant": "{tenant}",
      "claims": {{ "sub": "bob", "roles": ["Editor"], "amr": ["mfa"] }},
      "action": "delete",
      "resource": {own},
      "expect": "allow",
      "reasons": ["editors-delete"]
    }},
    {{
      "name": "not without MFA",
      "tenant": "{tenant}",
      "claims": {{ "sub": "bob", "roles": ["Editor"], "amr": ["pwd"] }},
      "action": "delete",
      "resource": {own},
      "expect": "deny"
    }},
    {{
      "name": "no token: unauthenticated",
      "action": "read",
      "resource": {own},
      "expect": "unauthenticated",
      "error": "token_missing"
    }}
  ]
}}
"#,
        own = document("finance", tenant),
        sales = document("sales", tenant),
        foreign = document("finance", "someone-else"),
    )
}

const DEV_KEYS_README: &str = "# Development keys: not secret, never for production\n\n\
These keys sign development tokens (`portcullis token`, `portcullis test`). A deployment uses\n\
each tenant's identity provider (`jwks_uri` or `discovery` in `tenants.json`); keep testing it\n\
with these keys through `dev-keys/issuers.json` (`portcullis keygen --tenant <t>` writes it).\n\
`<kid>.pem` is the private key of `<kid>.jwks.json`.\n";

/// Write a new pack at `dir` with one tenant, `tenant`; the files written, relative to it.
///
/// # Errors
/// `dir` exists and is not empty, an invalid tenant name, or a write failure.
pub fn init(dir: &Path, tenant: &str) -> Result<Vec<String>, String> {
    let valid = !tenant.is_empty()
        && tenant.len() <= 64
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !valid {
        return Err(format!(
            "invalid tenant name `{tenant}`: use 1-64 letters, digits, `.`, `_` or `-`"
        ));
    }
    if dir.exists()
        && std::fs::read_dir(dir)
            .map_err(|e| format!("cannot read `{}`: {e}", dir.display()))?
            .next()
            .is_some()
    {
        return Err(format!(
            "`{}` exists and is not empty; `portcullis init` writes a new pack",
            dir.display()
        ));
    }
    let files: [(&str, String); 6] = [
        ("schema.cedarschema", SCHEMA.to_owned()),
        ("policies/documents.cedar", POLICIES.to_owned()),
        ("tenants.json", tenants(tenant)),
        ("routes.json", ROUTES.to_owned()),
        ("tests/documents.json", tests(tenant)),
        ("dev-keys/README.md", DEV_KEYS_README.to_owned()),
    ];
    let mut written = Vec::new();
    for (name, text) in files {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create `{}`: {e}", parent.display()))?;
        }
        std::fs::write(&path, text)
            .map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
        written.push(name.to_owned());
    }
    let keys = dev_keys::keygen(dir, tenant, 0, None)?;
    written.extend(keys.files);
    Ok(written)
}
