//! The tenants' stored data an engine decides with, handed over by the host as documents.

use super::Engine;
use crate::data::{DataDocument, DataError, DataLoaded, DataSet, MAX_DATA_DOCUMENT, TenantData};
use crate::error::sanitize;
use std::sync::{Arc, PoisonError};

impl Engine {
    /// Hand the engine a tenant's data document (JSON text of a [`DataDocument`]): a
    /// snapshot, which replaces what the engine holds for the tenant, or changes since the
    /// revision it holds. Every entity is checked against the bundle as a write would be.
    ///
    /// # Errors
    /// A document that is too large or malformed, for an unknown tenant, with an entity that
    /// is refused, or changes that do not start at the revision held ([`DataError::Revision`]:
    /// fetch a snapshot). The data held stays as it was.
    pub fn load_tenant_data(&self, document: &str) -> Result<DataLoaded, DataError> {
        if document.len() > MAX_DATA_DOCUMENT {
            return Err(DataError::TooLarge {
                what: "a data document",
                size: document.len(),
                max: MAX_DATA_DOCUMENT,
            });
        }
        let document: DataDocument = serde_json::from_str(document)
            .map_err(|e| DataError::Malformed(crate::error::json_message(&e)))?;
        self.apply_tenant_data(document)
    }

    /// [`Engine::load_tenant_data`] for a parsed document.
    ///
    /// # Errors
    /// As for [`Engine::load_tenant_data`].
    pub fn apply_tenant_data(&self, document: DataDocument) -> Result<DataLoaded, DataError> {
        if !self
            .bundle
            .compiled()
            .tenants
            .contains_key(&document.tenant)
        {
            return Err(DataError::UnknownTenant(sanitize(&document.tenant, 64)));
        }
        let tenant = document.tenant.clone();
        let held = self.tenant_data(&tenant);
        let mut data = match (&held, document.since) {
            (Some(held), Some(_)) => TenantData::clone(held),
            _ => TenantData::new(&tenant),
        };
        data.apply(&self.bundle, document)?;
        let loaded = DataLoaded {
            tenant: tenant.clone(),
            revision: data.revision(),
            entities: data.len(),
        };
        let mut all = self.data.write().unwrap_or_else(PoisonError::into_inner);
        // Two hosts' threads loading at once: the later revision stays.
        if all
            .get(&tenant)
            .is_some_and(|now| now.revision() > loaded.revision)
        {
            return Err(DataError::Revision {
                held: all.get(&tenant).map_or(0, |d| d.revision()),
                since: loaded.revision,
                reason: "the engine already holds a later revision",
            });
        }
        all.insert(tenant, Arc::new(data));
        Ok(loaded)
    }

    /// Hand over a [`DataSet`], replacing what the engine holds: a snapshot of every tenant of
    /// the bundle (with no entities for a tenant the set does not name), at a revision one past
    /// any held (1 the first time). For hosts without a store (the CLI, tests).
    ///
    /// # Errors
    /// A tenant the bundle does not have, or a refused entity (named with its tenant). Tenants
    /// loaded before the failing one stay loaded.
    pub fn load_data_set(&self, set: &DataSet) -> Result<(), DataError> {
        if let Some(unknown) = set
            .tenants
            .keys()
            .find(|t| !self.bundle.compiled().tenants.contains_key(*t))
        {
            return Err(DataError::UnknownTenant(sanitize(unknown, 64)));
        }
        for tenant in self.bundle.compiled().tenants.keys() {
            // A revision past any held, so that nothing decided on earlier data (the memo is
            // keyed by the revision) is taken for a decision on this.
            let revision = self.tenant_data_revision(tenant).map_or(1, |held| held + 1);
            self.apply_tenant_data(DataDocument {
                tenant: tenant.clone(),
                revision,
                entities: set.tenants.get(tenant).cloned().unwrap_or_default(),
                ..DataDocument::default()
            })?;
        }
        Ok(())
    }

    /// The data held for `tenant`.
    pub fn tenant_data(&self, tenant: &str) -> Option<Arc<TenantData>> {
        self.data
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(tenant)
            .cloned()
    }

    /// The revision of the data held for `tenant`.
    pub fn tenant_data_revision(&self, tenant: &str) -> Option<u64> {
        self.tenant_data(tenant).map(|d| d.revision())
    }

    /// Forget `tenant`'s data (a host evicting tenants not seen recently): its decisions are
    /// denied (`data_unavailable`) until data is handed over again. Whether there was any.
    pub fn forget_tenant_data(&self, tenant: &str) -> bool {
        self.data
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(tenant)
            .is_some()
    }

    /// Whether the bundle stores entities, so that decisions need their tenant's data.
    pub fn stores_data(&self) -> bool {
        !self.bundle.stored.is_empty()
    }
}
