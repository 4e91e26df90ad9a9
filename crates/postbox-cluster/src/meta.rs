//! What a node publishes in its chitchat key-value state, and how it is read back.
//!
//! | key | value |
//! | --- | --- |
//! | `remote` | the node's remote transport address, `host:port` |
//! | `roles` | its roles, comma-separated |
//! | `status` | `up`, or `leaving` once it leaves |
//! | `load` | `<seq> <actors> <total depth> <max depth>`; `seq` grows at every refresh |
//! | `svc:<service key>:<name>` | a receptionist entry: `<depth> <actor type>`; the actor is registered as `<name>` on the node |
//! | `left-ack:<node id>:<incarnation>` | this node saw that node leave (the leaver waits for these) |
//! | `up-since` | when the node joined, milliseconds since the Unix epoch (keep-oldest's age) |
//! | `down:<node id>:<incarnation>` | this node declared that incarnation down (how a downed node that comes back learns it; the most recent 256, for an hour) |
//!
//! The node id and incarnation are chitchat's `ChitchatId` (`node_id` as 16 hex digits,
//! `generation_id`). Service keys and names are escaped (`%` → `%25`, `:` → `%3A`) so that
//! any text can be a key. Whatever does not parse is reported as an error naming the key:
//! a node that publishes nonsense stays `Joining` and is logged, never trusted.

use crate::member::NodeLoad;
use chitchat::{ChitchatId, NodeState};
use postbox_remote::NodeAddr;
use std::collections::{BTreeSet, HashSet};

pub(crate) const REMOTE: &str = "remote";
pub(crate) const ROLES: &str = "roles";
pub(crate) const STATUS: &str = "status";
pub(crate) const LOAD: &str = "load";
pub(crate) const ENTRY_PREFIX: &str = "svc:";
pub(crate) const ACK_PREFIX: &str = "left-ack:";
pub(crate) const DOWN_PREFIX: &str = "down:";
pub(crate) const UP_SINCE: &str = "up-since";
pub(crate) const STATUS_UP: &str = "up";
pub(crate) const STATUS_LEAVING: &str = "leaving";

/// The chitchat node id of the node with remote node id `id`.
pub(crate) fn node_id_text(id: u64) -> String {
    format!("{id:016x}")
}

/// A member's identity: node id and incarnation.
pub(crate) type Identity = (u64, u64);

pub(crate) fn identity_of(id: &ChitchatId) -> Option<Identity> {
    let node_id = u64::from_str_radix(&id.node_id, 16).ok()?;
    Some((node_id, id.generation_id))
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '%' => out.push_str("%25"),
            ':' => out.push_str("%3A"),
            c => out.push(c),
        }
    }
    out
}

fn unescape(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        match rest.get(at + 1..at + 3)? {
            "25" => out.push('%'),
            "3A" => out.push(':'),
            _ => return None,
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Some(out)
}

pub(crate) fn entry_key(service: &str, name: &str) -> String {
    format!("{ENTRY_PREFIX}{}:{}", escape(service), escape(name))
}

pub(crate) fn entry_value(depth: usize, actor_type: &str) -> String {
    format!("{depth} {actor_type}")
}

pub(crate) fn load_value(seq: u64, load: &NodeLoad) -> String {
    format!(
        "{seq} {} {} {}",
        load.actors, load.total_depth, load.max_depth
    )
}

pub(crate) fn ack_key(id: Identity) -> String {
    format!("{ACK_PREFIX}{}:{}", node_id_text(id.0), id.1)
}

pub(crate) fn down_key(id: Identity) -> String {
    format!("{DOWN_PREFIX}{}:{}", node_id_text(id.0), id.1)
}

fn parse_ack(key: &str) -> Option<Identity> {
    let (node_id, incarnation) = key.split_once(':')?;
    Some((
        u64::from_str_radix(node_id, 16).ok()?,
        incarnation.parse().ok()?,
    ))
}

/// One receptionist entry as published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EntryInfo {
    pub(crate) service: String,
    pub(crate) name: String,
    pub(crate) actor_type: String,
    pub(crate) depth: usize,
}

fn parse_entry(key: &str, value: &str) -> Option<EntryInfo> {
    let (service, name) = key.split_once(':')?;
    let (depth, actor_type) = value.split_once(' ')?;
    Some(EntryInfo {
        service: unescape(service)?,
        name: unescape(name)?,
        actor_type: actor_type.to_owned(),
        depth: depth.parse().ok()?,
    })
}

fn parse_load(value: &str) -> Option<(u64, NodeLoad)> {
    let mut fields = value.split(' ').map(str::parse::<u64>);
    let mut next = || fields.next()?.ok();
    let seq = next()?;
    let load = NodeLoad::new(
        usize::try_from(next()?).ok()?,
        usize::try_from(next()?).ok()?,
        usize::try_from(next()?).ok()?,
    );
    Some((seq, load))
}

/// Everything a node publishes, read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeInfo {
    pub(crate) node: NodeAddr,
    pub(crate) roles: BTreeSet<String>,
    pub(crate) leaving: bool,
    pub(crate) load_seq: u64,
    pub(crate) load: NodeLoad,
    pub(crate) entries: Vec<EntryInfo>,
    pub(crate) acks: HashSet<Identity>,
    /// When it joined (ms since the Unix epoch); `u64::MAX` if it did not say.
    pub(crate) up_since: u64,
    /// The incarnations it declared down.
    pub(crate) downed: HashSet<Identity>,
}

/// Reads a node's state; the error says what is missing or malformed.
pub(crate) fn read_node(id: &ChitchatId, state: &NodeState) -> Result<NodeInfo, String> {
    let (node_id, incarnation) =
        identity_of(id).ok_or_else(|| format!("node id {:?} is not 16 hex digits", id.node_id))?;
    let remote = state
        .get(REMOTE)
        .ok_or_else(|| format!("no {REMOTE:?} key yet"))?;
    let roles = state
        .get(ROLES)
        .ok_or_else(|| format!("no {ROLES:?} key yet"))?
        .split(',')
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
        .collect();
    let leaving = match state.get(STATUS) {
        Some(STATUS_UP) => false,
        Some(STATUS_LEAVING) => true,
        Some(other) => return Err(format!("unknown {STATUS:?} {other:?}")),
        None => return Err(format!("no {STATUS:?} key yet")),
    };
    let (load_seq, load) = match state.get(LOAD) {
        Some(value) => parse_load(value).ok_or_else(|| format!("malformed {LOAD:?} {value:?}"))?,
        None => return Err(format!("no {LOAD:?} key yet")),
    };
    let mut entries = Vec::new();
    for (key, value) in state.iter_prefix(ENTRY_PREFIX) {
        let key = &key[ENTRY_PREFIX.len()..];
        // One bad entry does not disqualify the node; it is skipped and logged.
        match parse_entry(key, &value.value) {
            Some(entry) => entries.push(entry),
            None => tracing::warn!(node = %id.node_id, key, "malformed receptionist entry skipped"),
        }
    }
    let acks = state
        .iter_prefix(ACK_PREFIX)
        .filter_map(|(key, _)| parse_ack(&key[ACK_PREFIX.len()..]))
        .collect();
    let downed = state
        .iter_prefix(DOWN_PREFIX)
        .filter_map(|(key, _)| parse_ack(&key[DOWN_PREFIX.len()..]))
        .collect();
    let up_since = state
        .get(UP_SINCE)
        .and_then(|value| value.parse().ok())
        .unwrap_or(u64::MAX);
    Ok(NodeInfo {
        node: NodeAddr {
            addr: remote.to_owned(),
            node_id,
            incarnation,
        },
        roles,
        leaving,
        load_seq,
        load,
        entries,
        acks,
        up_since,
        downed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_round_trips_any_text() {
        for text in ["", "plain", "a:b", "%", "%3A", "::%%::", "ünï:cödé%25"] {
            assert_eq!(unescape(&escape(text)).as_deref(), Some(text));
            assert!(!escape(text).contains(':'));
        }
        assert_eq!(unescape("bad%zz"), None);
        assert_eq!(unescape("cut%3"), None);
    }

    #[test]
    fn entries_round_trip_and_garbage_is_refused() {
        let key = entry_key("orders:eu", "cluster/orders:eu/7");
        let value = entry_value(12, "my_app::Orders");
        let entry = parse_entry(&key[ENTRY_PREFIX.len()..], &value).unwrap();
        assert_eq!(
            entry,
            EntryInfo {
                service: "orders:eu".into(),
                name: "cluster/orders:eu/7".into(),
                actor_type: "my_app::Orders".into(),
                depth: 12
            }
        );
        assert_eq!(parse_entry("no-colon", "1 t"), None);
        assert_eq!(parse_entry("a:b", "x t"), None);
        assert_eq!(parse_entry("a:b", "12"), None);
    }

    #[test]
    fn loads_and_acks_round_trip() {
        let load = NodeLoad::new(10, 42, 7);
        assert_eq!(parse_load(&load_value(3, &load)), Some((3, load)));
        assert_eq!(parse_load("3 10 42"), None);
        assert_eq!(parse_load("3 10 42 -1"), None);
        let ack = ack_key((0xabc, 99));
        assert_eq!(parse_ack(&ack[ACK_PREFIX.len()..]), Some((0xabc, 99)));
        let down = down_key((0xdef, 7));
        assert_eq!(parse_ack(&down[DOWN_PREFIX.len()..]), Some((0xdef, 7)));
        assert_eq!(parse_ack("zz:1"), None);
    }
}
