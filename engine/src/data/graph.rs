//! Writes staged over a tenant's data, and the parent graph they would make checked: no cycle,
//! no chain of parents longer than the bundle's `max_depth`.
//!
//! The data before the writes has neither, so a new cycle or over-long chain goes through a
//! written entity: only chains through those are followed, up to their ancestors and down to
//! their descendants (through the tenant's parent → children index), each at most `max_depth`
//! levels.

use super::{DataError, Stored, TenantData};
use crate::error::sanitize;
use cedar_policy::EntityUid;
use cedar_policy_core::ast;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

pub(super) struct Staged<'a> {
    base: &'a TenantData,
    writes: Vec<(EntityUid, Option<Arc<Stored>>)>,
    index: HashMap<EntityUid, usize>,
    /// Parent → written entities that name it.
    children: HashMap<EntityUid, Vec<EntityUid>>,
}

fn shown(uid: &EntityUid) -> String {
    sanitize(&uid.to_string(), 120)
}

impl<'a> Staged<'a> {
    pub(super) fn new(
        base: &'a TenantData,
        writes: Vec<(EntityUid, Option<Arc<Stored>>)>,
    ) -> Result<Self, DataError> {
        let mut index = HashMap::with_capacity(writes.len());
        let mut children: HashMap<EntityUid, Vec<EntityUid>> = HashMap::new();
        for (i, (uid, after)) in writes.iter().enumerate() {
            if index.insert(uid.clone(), i).is_some() {
                return Err(DataError::Duplicate { entity: shown(uid) });
            }
            for parent in after.iter().flat_map(|s| &s.parents) {
                children
                    .entry(parent.clone())
                    .or_default()
                    .push(uid.clone());
            }
        }
        Ok(Self {
            base,
            writes,
            index,
            children,
        })
    }

    /// The parents `uid` has once the writes are applied.
    fn parents(&self, uid: &EntityUid) -> &[EntityUid] {
        match self.index.get(uid) {
            Some(&i) => self
                .writes
                .get(i)
                .and_then(|(_, after)| after.as_ref())
                .map_or(&[], |s| &s.parents),
            None => self.base.entities.get(uid).map_or(&[], |s| &s.parents),
        }
    }

    /// The entities that have `uid` as a parent once the writes are applied.
    fn children(&self, uid: &EntityUid) -> Vec<&EntityUid> {
        let mut out: Vec<&EntityUid> = self
            .base
            .children
            .get(uid)
            .into_iter()
            .flatten()
            .filter(|child| !self.index.contains_key(*child))
            .collect();
        out.extend(self.children.get(uid).into_iter().flatten());
        out
    }

    /// Every written entity is in no cycle and no chain longer than `max_depth`.
    pub(super) fn check(&self, max_depth: usize) -> Result<(), DataError> {
        let mut up = HashMap::new();
        let mut down = HashMap::new();
        for (uid, after) in &self.writes {
            if after.is_none() {
                continue;
            }
            let mut path = HashSet::new();
            let height = self.walk(uid, max_depth, &mut path, &mut up, Direction::Up)?;
            let depth = self.walk(uid, max_depth, &mut path, &mut down, Direction::Down)?;
            if height + depth > max_depth {
                return Err(DataError::Depth {
                    entity: shown(uid),
                    max: max_depth,
                });
            }
        }
        Ok(())
    }

    /// The longest chain of parents (or of children) from `uid`, in levels.
    fn walk(
        &self,
        uid: &EntityUid,
        max_depth: usize,
        path: &mut HashSet<EntityUid>,
        memo: &mut HashMap<EntityUid, usize>,
        direction: Direction,
    ) -> Result<usize, DataError> {
        if let Some(&known) = memo.get(uid) {
            return Ok(known);
        }
        if path.len() > max_depth {
            return Err(DataError::Depth {
                entity: shown(uid),
                max: max_depth,
            });
        }
        path.insert(uid.clone());
        let next: Vec<&EntityUid> = match direction {
            Direction::Up => self.parents(uid).iter().collect(),
            Direction::Down => self.children(uid),
        };
        let mut longest = 0;
        for other in next {
            if path.contains(other) {
                return Err(DataError::Cycle {
                    entity: shown(other),
                });
            }
            longest = longest.max(1 + self.walk(other, max_depth, path, memo, direction)?);
        }
        path.remove(uid);
        memo.insert(uid.clone(), longest);
        Ok(longest)
    }

    /// Each write: the uid and the entity after it (`None`: deleted).
    pub(super) fn writes(&self) -> impl Iterator<Item = (&EntityUid, Option<&Stored>)> {
        self.writes.iter().map(|(uid, s)| (uid, s.as_deref()))
    }

    pub(super) fn into_writes(self) -> Vec<(EntityUid, Option<Arc<Stored>>)> {
        self.writes
    }
}

#[derive(Clone, Copy)]
enum Direction {
    Up,
    Down,
}

/// Close the ancestors of `entities` (each uid with its parents): the closure of each is its
/// parents and, for each parent, the parent's own closed ancestors — computed here for a
/// parent among `entities`, looked up in `closed` for any other (an unchanged stored entity,
/// a bundle-wide one; a parent neither knows is an ancestor by its uid alone).
///
/// Writes refuse parent cycles, so the graph through `entities` is acyclic and each chain is
/// at most the bundle's `max_depth`; were it not, an entity met again on its own chain adds
/// nothing more (no unbounded recursion, whatever the data).
pub(super) fn close_ancestors<'a, 'b>(
    entities: &HashMap<&'a EntityUid, &'a [EntityUid]>,
    closed: &dyn Fn(&EntityUid) -> Option<&'b ast::Entity>,
) -> HashMap<&'a EntityUid, HashSet<ast::EntityUID>> {
    fn walk<'a, 'b>(
        uid: &'a EntityUid,
        entities: &HashMap<&'a EntityUid, &'a [EntityUid]>,
        closed: &dyn Fn(&EntityUid) -> Option<&'b ast::Entity>,
        out: &mut HashMap<&'a EntityUid, HashSet<ast::EntityUID>>,
    ) {
        if out.contains_key(uid) {
            return;
        }
        // On the chain now: met again (a cycle), it adds nothing.
        out.insert(uid, HashSet::new());
        let mut ancestors = HashSet::new();
        for parent in entities.get(uid).copied().unwrap_or_default() {
            ancestors.insert(ast::EntityUID::from(parent.clone()));
            match entities.get_key_value(parent) {
                Some((parent, _)) => {
                    walk(parent, entities, closed, out);
                    ancestors.extend(out.get(parent).into_iter().flatten().cloned());
                }
                None => {
                    if let Some(entity) = closed(parent) {
                        ancestors.extend(entity.ancestors().cloned());
                    }
                }
            }
        }
        out.insert(uid, ancestors);
    }
    let mut out = HashMap::with_capacity(entities.len());
    for uid in entities.keys() {
        walk(uid, entities, closed, &mut out);
    }
    out
}
