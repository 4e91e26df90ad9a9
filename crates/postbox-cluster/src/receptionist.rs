//! The receptionist: a cluster-wide registry of services.
//!
//! An actor is registered under a [`ServiceKey<A>`] on its own node; the registration is
//! published in that node's gossip state, so every member learns it within a few gossip
//! rounds. A lookup on any node lists the registered actors on every **up** member — as
//! local refs for this node's, as remote refs (through [`Remote`](postbox_remote::Remote))
//! for the others'. Entries of members that are unreachable, down or left are not listed;
//! an actor that stops is removed by its node at once.
//!
//! Keys are typed: a `ServiceKey<A>` lists only actors published with `A`'s type name, so a
//! lookup never hands out a ref of the wrong type. (Nodes must be built from the same code
//! for the names to agree.)
//!
//! How it works: registering exposes `A` to remote senders and registers the actor in the
//! local system's named registry as `cluster/<key>/<actor id>`, which is how other nodes
//! reach it. Remote refs are cached per member incarnation and entry, and looked up again
//! only when the cached one has ended.

use crate::cluster::Inner;
use crate::error::RegisterError;
use crate::membership::{Entry, ReportedLoad};
use crate::meta::{self, Identity};
use dashmap::DashMap;
use postbox::{Actor, ActorId, ActorRef, ActorStatus, ActorSystem};
use postbox_remote::{NodeAddr, RemoteActor};
use std::any::TypeId;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How soon a listing whose remote refs could not all be resolved is resolved again.
const RETRY_UNRESOLVED: Duration = Duration::from_secs(1);

/// The name of a service whose actors are `A`s.
pub struct ServiceKey<A> {
    name: Arc<str>,
    _actor: PhantomData<fn() -> A>,
}

impl<A: Actor> ServiceKey<A> {
    /// A key named `name` (1 to 255 bytes; any text).
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: Arc::from(name.into()),
            _actor: PhantomData,
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl<A> Clone for ServiceKey<A> {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            _actor: PhantomData,
        }
    }
}

impl<A> fmt::Debug for ServiceKey<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ServiceKey")
            .field(&&*self.name)
            .field(&std::any::type_name::<A>())
            .finish()
    }
}

/// One registered actor, as listed.
#[non_exhaustive]
pub struct Instance<A: Actor> {
    /// The member it lives on.
    pub node: NodeAddr,
    /// A ref to it: local if it lives on this node, remote otherwise.
    pub actor: ActorRef<A>,
    /// What its node gossiped about its mailbox (`None` for local actors, whose ref knows).
    pub(crate) reported: Option<Arc<ReportedLoad>>,
}

impl<A: Actor> Instance<A> {
    /// Its mailbox depth as its node last gossiped it (remote actors), or its depth now
    /// (local ones).
    pub fn reported_depth(&self) -> usize {
        match &self.reported {
            Some(load) => load.depth.load(std::sync::atomic::Ordering::Relaxed),
            None => self.actor.depth(),
        }
    }
}

impl<A: Actor> Clone for Instance<A> {
    fn clone(&self) -> Self {
        Self {
            node: self.node.clone(),
            actor: self.actor.clone(),
            reported: self.reported.clone(),
        }
    }
}

impl<A: Actor> fmt::Debug for Instance<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Instance")
            .field("node", &self.node)
            .field("actor", &self.actor)
            .finish()
    }
}

/// The actors registered under a key on the up members, sorted by node address.
pub struct Listing<A: Actor> {
    instances: Vec<Instance<A>>,
}

impl<A: Actor> Listing<A> {
    /// The instances.
    pub fn instances(&self) -> &[Instance<A>] {
        &self.instances
    }

    /// Refs to every instance.
    pub fn refs(&self) -> Vec<ActorRef<A>> {
        self.instances.iter().map(|i| i.actor.clone()).collect()
    }

    /// How many instances.
    pub fn len(&self) -> usize {
        self.instances.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.instances.is_empty()
    }

    /// The members that host at least one instance.
    pub fn nodes(&self) -> Vec<NodeAddr> {
        let mut nodes: Vec<NodeAddr> = self.instances.iter().map(|i| i.node.clone()).collect();
        nodes.dedup();
        nodes
    }

    pub(crate) fn into_instances(self) -> Vec<Instance<A>> {
        self.instances
    }
}

impl<A: Actor> Clone for Listing<A> {
    fn clone(&self) -> Self {
        Self {
            instances: self.instances.clone(),
        }
    }
}

impl<A: Actor> fmt::Debug for Listing<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.instances).finish()
    }
}

struct Registration {
    id: ActorId,
    name: String,
    watcher: JoinHandle<()>,
}

/// This node's registrations, by gossip key.
#[derive(Default)]
pub(crate) struct Registrations {
    by_key: DashMap<String, Registration>,
}

impl Registrations {
    /// Each registration's gossip key and current value (depth now, actor type).
    pub(crate) fn depths(&self, system: &ActorSystem) -> Vec<(String, String)> {
        self.by_key
            .iter()
            .filter_map(|r| {
                let depth = system.depth(r.id)?;
                let actor_type = system.actor(r.id)?.actor_type;
                Some((r.key().clone(), meta::entry_value(depth, actor_type)))
            })
            .collect()
    }

    pub(crate) fn abort_watchers(&self) {
        for registration in self.by_key.iter() {
            registration.watcher.abort();
        }
    }

    /// Releases the registry names taken for registrations (after leaving).
    pub(crate) fn release_names(&self, system: &ActorSystem) {
        for registration in self.by_key.iter() {
            system.registry().unregister(&registration.name);
        }
    }
}

/// Proxies already looked up: (member, entry name, actor type) → `ActorRef<A>`.
pub(crate) type ProxyKey = (Identity, String, TypeId);

/// A handle to the cluster-wide registry. Cheap to clone. See the [module docs](self).
#[derive(Clone)]
pub struct Receptionist {
    pub(crate) inner: Arc<Inner>,
}

impl Receptionist {
    /// Registers `actor` (an actor of this node) under `key`: every member's lookups list it
    /// within a few gossip rounds, until it stops or is deregistered, or this node leaves.
    /// `A` is exposed to remote senders on this node's [`Remote`](postbox_remote::Remote).
    /// Registering the same actor twice under one key is a no-op.
    pub async fn register<A: RemoteActor>(
        &self,
        key: &ServiceKey<A>,
        actor: &ActorRef<A>,
    ) -> Result<(), RegisterError> {
        let inner = &self.inner;
        if !inner.is_running() {
            return Err(RegisterError::Stopped);
        }
        if key.name().is_empty() || key.name().len() > 255 {
            return Err(RegisterError::InvalidKey(key.name().to_owned()));
        }
        let stopping = matches!(
            actor.stats().status,
            ActorStatus::Stopping | ActorStatus::Stopped
        );
        if stopping || !actor.is_alive() {
            return Err(RegisterError::NotRunning);
        }
        // A ref to an actor of this system has a parent here; remote refs' proxies have none.
        match inner.system.actor(actor.id()) {
            Some(info) if info.parent.is_some() && info.path == actor.path() => {}
            _ => return Err(RegisterError::NotLocal),
        }
        inner.remote.expose::<A>();
        let name = format!("cluster/{}/{}", key.name(), actor.id());
        inner
            .system
            .registry()
            .register(name.clone(), actor)
            .map_err(|_| RegisterError::NotRunning)?;
        let gossip_key = meta::entry_key(key.name(), &name);
        if inner.registrations.by_key.contains_key(&gossip_key) {
            return Ok(());
        }
        let watcher = tokio::spawn({
            let actor = actor.clone();
            let gossip = inner.gossip.clone();
            let registrations = inner.registrations.clone();
            let membership = inner.membership.clone();
            let gossip_key = gossip_key.clone();
            async move {
                actor.wait_for_stop().await;
                if registrations.by_key.remove(&gossip_key).is_some() {
                    gossip
                        .chitchat
                        .lock()
                        .await
                        .self_node_state()
                        .delete(&gossip_key);
                    membership.poke.notify_one();
                }
            }
        });
        inner.registrations.by_key.insert(
            gossip_key.clone(),
            Registration {
                id: actor.id(),
                name,
                watcher,
            },
        );
        inner.gossip.chitchat.lock().await.self_node_state().set(
            gossip_key,
            meta::entry_value(actor.depth(), std::any::type_name::<A>()),
        );
        inner.membership.poke.notify_one();
        Ok(())
    }

    /// Removes `actor`'s registration under `key`; true if it was registered. The actor keeps
    /// running.
    pub async fn deregister<A: Actor>(&self, key: &ServiceKey<A>, actor: &ActorRef<A>) -> bool {
        let inner = &self.inner;
        let name = format!("cluster/{}/{}", key.name(), actor.id());
        let gossip_key = meta::entry_key(key.name(), &name);
        let Some((_, registration)) = inner.registrations.by_key.remove(&gossip_key) else {
            return false;
        };
        registration.watcher.abort();
        inner.system.registry().unregister(&registration.name);
        inner
            .gossip
            .chitchat
            .lock()
            .await
            .self_node_state()
            .delete(&gossip_key);
        inner.membership.poke.notify_one();
        true
    }

    /// The actors registered under `key` on every up member (this node included). Remote
    /// refs are looked up on first use and cached; an entry whose node cannot be reached right
    /// now is left out (it is listed again once it resolves).
    pub async fn lookup<A: Actor>(&self, key: &ServiceKey<A>) -> Listing<A> {
        let entries = self.entries(key);
        self.resolve(entries).await.0
    }

    /// Follows the listing of `key`: the first [`next`](ListingSubscription::next) returns
    /// the current listing, each later one the listing after a change (an instance added or
    /// removed).
    pub fn subscribe<A: Actor>(&self, key: &ServiceKey<A>) -> ListingSubscription<A> {
        ListingSubscription {
            receptionist: self.clone(),
            key: key.clone(),
            changes: self.inner.membership.listings_changed(),
            last_entries: None,
            last_resolved: None,
            unresolved: false,
        }
    }

    /// Entries for `key` of `A`'s type.
    fn entries<A: Actor>(&self, key: &ServiceKey<A>) -> Vec<Entry> {
        let wanted = std::any::type_name::<A>();
        self.inner
            .membership
            .entries(key.name())
            .into_iter()
            .filter(|entry| {
                let matches = entry.actor_type == wanted;
                if !matches {
                    tracing::debug!(key = key.name(), found = %entry.actor_type, wanted, "entry of another actor type skipped");
                }
                matches
            })
            .collect()
    }

    /// Refs for `entries`; the flag says whether any could not be resolved.
    async fn resolve<A: Actor>(&self, entries: Vec<Entry>) -> (Listing<A>, bool) {
        let inner = &self.inner;
        let mut instances = Vec::with_capacity(entries.len());
        let mut unresolved = false;
        let mut lookups = tokio::task::JoinSet::new();
        for entry in entries {
            if entry.local {
                // An actor that stopped meanwhile is not found: its entry is about to go.
                if let Some(actor) = inner.system.registry().lookup::<A>(&entry.name) {
                    instances.push(Instance {
                        node: entry.node,
                        actor,
                        reported: None,
                    });
                }
                continue;
            }
            let identity = (entry.node.node_id, entry.node.incarnation);
            let key: ProxyKey = (identity, entry.name.clone(), TypeId::of::<A>());
            let cached = inner
                .proxies
                .get(&key)
                .and_then(|r| r.downcast_ref::<ActorRef<A>>().cloned())
                .filter(ActorRef::is_alive);
            match cached {
                Some(actor) => instances.push(Instance {
                    node: entry.node,
                    actor,
                    reported: Some(entry.load),
                }),
                None => {
                    let remote = inner.remote.clone();
                    lookups.spawn(async move {
                        let found = remote.lookup_node::<A>(&entry.node, &entry.name).await;
                        (key, entry, found)
                    });
                }
            }
        }
        while let Some(done) = lookups.join_next().await {
            let Ok((key, entry, found)) = done else {
                unresolved = true;
                continue;
            };
            match found {
                Ok(actor) => {
                    inner.proxies.insert(key, Box::new(actor.clone()));
                    instances.push(Instance {
                        node: entry.node,
                        actor,
                        reported: Some(entry.load),
                    });
                }
                Err(error) => {
                    unresolved = true;
                    tracing::debug!(node = %entry.node, name = %entry.name, %error, "listed actor not reachable now");
                }
            }
        }
        instances
            .sort_by(|a, b| (&a.node.addr, a.actor.path()).cmp(&(&b.node.addr, b.actor.path())));
        // Forget proxies of members that are no longer up.
        inner
            .proxies
            .retain(|(identity, _, _), _| inner.membership.is_up(*identity));
        (Listing { instances }, unresolved)
    }
}

impl fmt::Debug for Receptionist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receptionist")
            .field("node", &self.inner.node)
            .field("registrations", &self.inner.registrations.by_key.len())
            .finish()
    }
}

/// Follows one key's listing. See [`Receptionist::subscribe`].
pub struct ListingSubscription<A: Actor> {
    receptionist: Receptionist,
    key: ServiceKey<A>,
    changes: watch::Receiver<u64>,
    last_entries: Option<Vec<(Identity, String)>>,
    last_resolved: Option<Vec<ActorId>>,
    unresolved: bool,
}

impl<A: Actor> ListingSubscription<A> {
    /// The current listing the first time; then waits for the next change. `None` once this
    /// node has left the cluster.
    pub async fn next(&mut self) -> Option<Listing<A>> {
        loop {
            self.changes.borrow_and_update();
            let entries = self.receptionist.entries(&self.key);
            let shape: Vec<(Identity, String)> = entries
                .iter()
                .map(|e| ((e.node.node_id, e.node.incarnation), e.name.clone()))
                .collect();
            if self.last_entries.as_ref() != Some(&shape) || self.unresolved {
                let (listing, unresolved) = self.receptionist.resolve(entries).await;
                let resolved: Vec<ActorId> =
                    listing.instances.iter().map(|i| i.actor.id()).collect();
                let first = self.last_entries.is_none();
                self.last_entries = Some(shape);
                self.unresolved = unresolved;
                if first || self.last_resolved.as_ref() != Some(&resolved) {
                    self.last_resolved = Some(resolved);
                    return Some(listing);
                }
            }
            if !self.receptionist.inner.is_running() && self.changes.has_changed().is_err() {
                return None;
            }
            if self.unresolved {
                tokio::select! {
                    changed = self.changes.changed() => if changed.is_err() { return None },
                    _ = tokio::time::sleep(RETRY_UNRESOLVED) => {}
                }
            } else if self.changes.changed().await.is_err() {
                return None;
            }
        }
    }
}

impl<A: Actor> fmt::Debug for ListingSubscription<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListingSubscription")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}
