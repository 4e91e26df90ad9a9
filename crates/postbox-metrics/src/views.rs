//! The JSON views: `/actors` (deepest mailboxes, groups, supervision tree) and `/members`.
//!
//! Both are bounded whatever the number of actors: the top list holds at most `top` actors and
//! the tree at most `tree` nodes, taken breadth-first from the root (parents before children,
//! siblings by id), each node telling how many children it has in all.

use crate::sources::Member;
use postbox::{ActorId, ActorStatus, ActorSystem};
use serde::Serialize;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};

/// One actor in the views.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActorNode {
    /// Its id.
    pub id: u64,
    /// Its parent's id (`None` for the root guardian and remote proxies).
    pub parent: Option<u64>,
    /// Its path.
    pub path: String,
    /// Its Rust type name.
    pub actor_type: &'static str,
    /// Messages waiting in its mailbox.
    pub depth: u64,
    /// Messages it has handled.
    pub processed: u64,
    /// Times it was restarted.
    pub restarts: u32,
    /// `starting`, `running`, `restarting`, `stopping` or `stopped`.
    pub status: &'static str,
    /// How many children it has (in the tree view; they may not all be listed).
    pub children: u64,
}

/// Live actors of one type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupView {
    /// The actor type.
    pub actor_type: &'static str,
    /// Live actors of the type.
    pub actors: u64,
    /// Messages waiting in all their mailboxes.
    pub depth_sum: u64,
    /// The deepest of their mailboxes.
    pub depth_max: u64,
}

/// The supervision tree, cut to a bounded number of nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TreeView {
    /// Nodes breadth-first from the roots: parents before their children.
    pub nodes: Vec<ActorNode>,
    /// Live actors in all.
    pub total: u64,
    /// Whether actors were left out.
    pub truncated: bool,
}

/// What `/actors` returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActorsView {
    /// Live actors.
    pub live: u64,
    /// Messages waiting in all mailboxes.
    pub total_depth: u64,
    /// The deepest mailboxes, deepest first (ties: lower id first).
    pub top: Vec<ActorNode>,
    /// Per actor type, by type name.
    pub groups: Vec<GroupView>,
    /// The supervision tree.
    pub tree: TreeView,
}

/// What `/members` returns.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MembersView {
    /// The members, as the cluster source reports them.
    pub members: Vec<Member>,
}

pub(crate) fn status_label(status: ActorStatus) -> &'static str {
    match status {
        ActorStatus::Starting => "starting",
        ActorStatus::Running => "running",
        ActorStatus::Restarting => "restarting",
        ActorStatus::Stopping => "stopping",
        ActorStatus::Stopped => "stopped",
        _ => "unknown",
    }
}

/// What the walk keeps per actor: small and allocation-free, so a million fit.
#[derive(Clone, Copy)]
struct Brief {
    id: ActorId,
    parent: Option<ActorId>,
    depth: u64,
}

/// Builds `/actors` with at most `top` deepest actors and `tree` tree nodes.
pub(crate) fn actors_view(system: &ActorSystem, top: usize, tree: usize) -> ActorsView {
    let mut briefs: Vec<Brief> = Vec::with_capacity(system.actor_count());
    let mut deepest: BinaryHeap<Reverse<(u64, Reverse<ActorId>)>> = BinaryHeap::new();
    let mut groups: HashMap<&'static str, GroupView> = HashMap::new();
    system.for_each_actor(|actor| {
        let depth = actor.depth() as u64;
        briefs.push(Brief {
            id: actor.id(),
            parent: actor.parent(),
            depth,
        });
        let group = groups
            .entry(actor.actor_type())
            .or_insert_with(|| GroupView {
                actor_type: actor.actor_type(),
                actors: 0,
                depth_sum: 0,
                depth_max: 0,
            });
        group.actors += 1;
        group.depth_sum += depth;
        group.depth_max = group.depth_max.max(depth);
        // A min-heap of the `top` deepest so far (ties broken towards lower ids).
        if top > 0 {
            deepest.push(Reverse((depth, Reverse(actor.id()))));
            if deepest.len() > top {
                deepest.pop();
            }
        }
    });
    let live = briefs.len() as u64;
    let total_depth = briefs.iter().map(|b| b.depth).sum();

    let mut top_ids: Vec<(u64, ActorId)> = deepest
        .into_iter()
        .map(|Reverse((depth, Reverse(id)))| (depth, id))
        .collect();
    top_ids.sort_unstable_by_key(|&(depth, id)| (Reverse(depth), id));
    let mut children: HashMap<ActorId, Vec<ActorId>> = HashMap::new();
    let mut roots = Vec::new();
    let known: std::collections::HashSet<ActorId> = briefs.iter().map(|b| b.id).collect();
    for brief in &briefs {
        match brief.parent {
            // A parent that stopped during the walk leaves its children as roots.
            Some(parent) if known.contains(&parent) => {
                children.entry(parent).or_default().push(brief.id)
            }
            _ => roots.push(brief.id),
        }
    }
    drop(briefs);
    roots.sort_unstable();
    for siblings in children.values_mut() {
        siblings.sort_unstable();
    }
    let child_count = |id: ActorId| children.get(&id).map_or(0, |c| c.len() as u64);
    // Snapshots (with paths) are taken after the walk, for the listed actors only.
    let node = |id: ActorId| {
        let info = system.actor(id)?;
        Some(ActorNode {
            id: id.get(),
            parent: info.parent.map(ActorId::get),
            path: info.path,
            actor_type: info.actor_type,
            depth: info.stats.depth as u64,
            processed: info.stats.processed,
            restarts: info.stats.restarts,
            status: status_label(info.stats.status),
            children: child_count(id),
        })
    };
    let top = top_ids.into_iter().filter_map(|(_, id)| node(id)).collect();

    let mut nodes = Vec::new();
    let mut queue: VecDeque<ActorId> = roots.into_iter().collect();
    while let Some(id) = queue.pop_front() {
        if nodes.len() >= tree {
            break;
        }
        if let Some(n) = node(id) {
            nodes.push(n);
        }
        if let Some(kids) = children.get(&id) {
            // No more than can still be listed: a parent of a million stays cheap.
            let room = tree.saturating_sub(nodes.len() + queue.len());
            queue.extend(kids.iter().copied().take(room));
        }
    }
    let mut groups: Vec<GroupView> = groups.into_values().collect();
    groups.sort_by(|a, b| a.actor_type.cmp(b.actor_type));
    ActorsView {
        live,
        total_depth,
        top,
        groups,
        tree: TreeView {
            truncated: (nodes.len() as u64) < live,
            total: live,
            nodes,
        },
    }
}
