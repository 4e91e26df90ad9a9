//! The named registry: find actors by name and type.
//!
//! Any live actor can be registered under any number of names (unique system-wide); lookups
//! are lock-free reads of a sharded map. Names are released automatically when the actor
//! terminates, before its watchers hear about it, so a watcher may re-register the name at once.

use crate::actor::{Actor, ActorId};
use crate::actor_ref::ActorRef;
use crate::cell::{ActorCell, ActorStatus, AnyCell};
use crate::error::RegistryError;
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use std::fmt;
use std::sync::Arc;

struct Registered {
    id: ActorId,
    cell: Arc<dyn AnyCell>,
}

/// Actors registered by name. Reached through [`ActorSystem::registry`](crate::ActorSystem::registry).
#[derive(Default)]
pub struct Registry {
    by_name: DashMap<Arc<str>, Registered>,
    by_actor: DashMap<ActorId, Vec<Arc<str>>>,
}

impl Registry {
    /// Registers `actor` under `name`. Fails if another live actor holds the name (registering
    /// the same actor twice under one name is fine) or if `actor` has stopped.
    pub fn register<A: Actor>(
        &self,
        name: impl Into<String>,
        actor: &ActorRef<A>,
    ) -> Result<(), RegistryError> {
        let name: Arc<str> = Arc::from(name.into());
        let cell: Arc<dyn AnyCell> = actor.cell().clone();
        let id = actor.id();
        match self.by_name.entry(name.clone()) {
            Entry::Occupied(existing) if existing.get().id != id => {
                return Err(RegistryError::NameTaken(name.to_string()));
            }
            Entry::Occupied(_) => return Ok(()),
            Entry::Vacant(vacant) => {
                vacant.insert(Registered {
                    id,
                    cell: cell.clone(),
                });
            }
        }
        self.by_actor.entry(id).or_default().push(name.clone());
        // The actor may have terminated meanwhile; its cleanup runs after its status changes,
        // so either it sees our entry or we see its status (module docs).
        if cell.meta().stats.status() == ActorStatus::Stopped {
            self.remove_actor(id);
            return Err(RegistryError::NotRunning);
        }
        Ok(())
    }

    /// The actor registered as `name`, if there is one and it is an `A`.
    pub fn lookup<A: Actor>(&self, name: &str) -> Option<ActorRef<A>> {
        let cell = self.by_name.get(name)?.cell.clone();
        cell.into_any()
            .downcast::<ActorCell<A>>()
            .ok()
            .map(ActorRef::from_cell)
    }

    /// The id of the actor registered as `name`, whatever its type.
    pub fn lookup_id(&self, name: &str) -> Option<ActorId> {
        self.by_name.get(name).map(|r| r.id)
    }

    /// Removes `name`; true if it was registered.
    pub fn unregister(&self, name: &str) -> bool {
        let Some((name, registered)) = self.by_name.remove(name) else {
            return false;
        };
        if let Some(mut names) = self.by_actor.get_mut(&registered.id) {
            names.retain(|n| *n != name);
        }
        true
    }

    /// All registered names (a snapshot).
    pub fn names(&self) -> Vec<String> {
        self.by_name.iter().map(|e| e.key().to_string()).collect()
    }

    /// Number of registered names.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether no name is registered.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Releases every name held by `id` (called when it terminates).
    pub(crate) fn remove_actor(&self, id: ActorId) {
        if let Some((_, names)) = self.by_actor.remove(&id) {
            for name in names {
                self.by_name
                    .remove_if(&name, |_, registered| registered.id == id);
            }
        }
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("names", &self.by_name.len())
            .finish()
    }
}
