//! A sharded bank under chaos, with a fixed seed: one persistent entity per account spread
//! over a five-node cluster (`postbox-sharding`, one shared store), transfers as asks from
//! eight clients, while nodes are killed, cut off by partitions (the testkit's link cuts: the
//! losing side downs itself) and restarted at random (never more than two gone, so the
//! majority stays up). Each transfer is a withdrawal then a deposit, each idempotent
//! by transfer id and retried through any running node until acknowledged. Afterwards the
//! money is conserved and every acknowledged transfer is in both accounts' books.

use postbox::prelude::*;
use postbox_persistence::prelude::*;
use postbox_remote::remote_message;
use postbox_sharding::{entity, Entities, EntityType, Sharding};
use postbox_testkit::{until, TestCluster, PATIENCE};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

const SEED: u64 = 0x5eed_ba4c;
const NODES: usize = 5;
const ACCOUNTS: u64 = 40;
const OPENING: i64 = 1_000;
const CLIENTS: u64 = 8;
const CHAOS: Duration = Duration::from_secs(8);
/// … and at least this many steps of it, however slow the machine: the seed's first steps
/// hold kills and partitions both.
const CHAOS_STEPS: usize = 8;
/// How long one step of a transfer may take to be acknowledged, retries included.
const STEP_BOUND: Duration = Duration::from_secs(40);

#[derive(Debug, Serialize, Deserialize)]
enum Booked {
    Withdrew { id: u64, amount: i64 },
    Refused { id: u64 },
    Deposited { id: u64, amount: i64 },
}
impl Versioned for Booked {
    const TAG: &'static str = "bank.booked";
}

#[derive(Default, Serialize, Deserialize)]
struct Books {
    balance: i64,
    /// Transfer id → whether it moved money here (a withdrawal refused: false).
    applied: HashMap<u64, bool>,
}
impl Versioned for Books {
    const TAG: &'static str = "bank.books";
}
impl EventSourced for Books {
    type Event = Booked;
    fn apply(&mut self, event: &Booked) {
        match event {
            Booked::Withdrew { id, amount } => {
                self.balance -= amount;
                self.applied.insert(*id, true);
            }
            Booked::Refused { id } => {
                self.applied.insert(*id, false);
            }
            Booked::Deposited { id, amount } => {
                self.balance += amount;
                self.applied.insert(*id, true);
            }
        }
    }
}

struct Account {
    books: Journaled<Books>,
}
impl Actor for Account {
    async fn started(&mut self, _: &mut Context<Self>) -> Result<(), BoxError> {
        self.books.recover().await?;
        Ok(())
    }
}

#[derive(Serialize, Deserialize)]
struct Withdraw {
    id: u64,
    amount: i64,
}
impl Message for Withdraw {
    type Reply = Result<bool, String>;
    remote_message!("bank.Withdraw");
}
impl Handler<Withdraw> for Account {
    async fn handle(&mut self, w: Withdraw, ctx: &mut Context<Self>) -> Result<bool, String> {
        if let Some(done) = self.books.state().applied.get(&w.id) {
            return Ok(*done);
        }
        let event = if self.books.state().balance >= w.amount {
            Booked::Withdrew {
                id: w.id,
                amount: w.amount,
            }
        } else {
            Booked::Refused { id: w.id }
        };
        self.books
            .persist(ctx, event)
            .await
            .map_err(|e| e.to_string())?;
        Ok(self.books.state().applied[&w.id])
    }
}

#[derive(Serialize, Deserialize)]
struct Deposit {
    id: u64,
    amount: i64,
}
impl Message for Deposit {
    type Reply = Result<(), String>;
    remote_message!("bank.Deposit");
}
impl Handler<Deposit> for Account {
    async fn handle(&mut self, d: Deposit, ctx: &mut Context<Self>) -> Result<(), String> {
        if self.books.state().applied.contains_key(&d.id) {
            return Ok(());
        }
        let event = Booked::Deposited {
            id: d.id,
            amount: d.amount,
        };
        self.books
            .persist(ctx, event)
            .await
            .map_err(|e| e.to_string())
    }
}

#[derive(Serialize, Deserialize)]
struct Statement;
impl Message for Statement {
    type Reply = Result<(i64, HashMap<u64, bool>), String>;
    remote_message!("bank.Statement");
}
impl Handler<Statement> for Account {
    async fn handle(
        &mut self,
        _: Statement,
        _: &mut Context<Self>,
    ) -> Result<(i64, HashMap<u64, bool>), String> {
        let books = self.books.state();
        Ok((books.balance, books.applied.clone()))
    }
}

entity!(Account: Withdraw, Deposit, Statement);

/// Each node's entry to the accounts; `None` while the node is down.
type Entries = Arc<Mutex<Vec<Option<Entities<Account>>>>>;

fn attach(cluster: &TestCluster, index: usize, store: &Persistence) -> Entities<Account> {
    let node = cluster.node(index);
    let store = store.clone();
    Sharding::new(&node.system, &node.remote, &node.cluster)
        .register(
            EntityType::new("account", move |id: &str| Account {
                books: store.journaled(PersistenceId::of("account", id)),
            })
            .shards(32)
            .ask_timeout(Duration::from_secs(3)),
        )
        .unwrap()
}

/// Asks account `id` through a random running node until it is acknowledged.
async fn until_acknowledged<M, R>(
    entries: &Entries,
    rng: &mut fastrand::Rng,
    id: u64,
    make: impl Fn() -> M,
) -> R
where
    M: Message<Reply = Result<R, String>>,
    Account: Handler<M>,
{
    let deadline = Instant::now() + STEP_BOUND;
    loop {
        let entry = {
            let entries = entries.lock().unwrap();
            let running: Vec<&Entities<Account>> = entries.iter().flatten().collect();
            running[rng.usize(..running.len())].clone()
        };
        if let Ok(Ok(reply)) = entry.entity_ref(format!("acct-{id}")).ask(make()).await {
            return reply;
        }
        assert!(
            Instant::now() < deadline,
            "account {id} unanswered for {STEP_BOUND:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sharded_bank_conserves_money_under_kills_restarts_and_partitions() {
    let mut cluster = TestCluster::start(NODES).await;
    let store = Persistence::in_memory();
    let entries: Entries = Arc::new(Mutex::new(
        (0..NODES)
            .map(|i| Some(attach(&cluster, i, &store)))
            .collect(),
    ));
    let mut rng = fastrand::Rng::with_seed(SEED);
    // Opening balances, as deposits with ids no transfer uses.
    for account in 0..ACCOUNTS {
        let opening = u64::MAX - account;
        until_acknowledged(&entries, &mut rng, account, || Deposit {
            id: opening,
            amount: OPENING,
        })
        .await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..CLIENTS {
        let (entries, stop) = (entries.clone(), stop.clone());
        clients.spawn(async move {
            let mut rng = fastrand::Rng::with_seed(SEED ^ (client + 1));
            let mut acknowledged = Vec::new();
            let mut n = 0u64;
            while !stop.load(Ordering::Acquire) {
                let from = rng.u64(..ACCOUNTS);
                let to = (from + rng.u64(1..ACCOUNTS)) % ACCOUNTS;
                let amount = rng.i64(1..=200);
                let id = client << 32 | n;
                n += 1;
                let moved =
                    until_acknowledged(&entries, &mut rng, from, || Withdraw { id, amount }).await;
                if moved {
                    until_acknowledged(&entries, &mut rng, to, || Deposit { id, amount }).await;
                }
                acknowledged.push((id, from, to, moved));
            }
            acknowledged
        });
    }

    // Chaos: every 400–900 ms kill a running node, cut a minority of the running nodes off
    // from the rest, or restart a node that is gone — never more than two gone (killed, or
    // downed on the losing side of a partition), so that a majority of the five is always
    // up. A partition holds until the downing strategy has taken its minority down (they
    // down themselves; clients may still be using them until then), then heals, and the
    // downed nodes wait for a restart like the killed ones.
    let chaos_started = Instant::now();
    let mut down: Vec<usize> = Vec::new();
    let (mut kills, mut partitions, mut steps) = (0, 0, 0);
    while chaos_started.elapsed() < CHAOS || steps < CHAOS_STEPS {
        steps += 1;
        tokio::time::sleep(Duration::from_millis(rng.u64(400..900))).await;
        let running: Vec<usize> = (0..NODES).filter(|i| !down.contains(i)).collect();
        if rng.u32(0..4) == 0 && running.len() >= 4 {
            let mut minority = running.clone();
            rng.shuffle(&mut minority);
            // As large a minority as the majority allows: 3 | 2 with everyone up.
            minority.truncate(running.len() - 3);
            let rest: Vec<usize> = (0..NODES).filter(|i| !minority.contains(i)).collect();
            eprintln!("chaos step {steps}: {minority:?} cut off");
            cluster.partition(&rest, &minority).await;
            partitions += 1;
            until(PATIENCE, "the minority downed itself", || {
                minority.iter().all(|&i| cluster.node(i).is_down())
            })
            .await;
            for &gone in &minority {
                entries.lock().unwrap()[gone] = None;
            }
            down.extend(minority);
            cluster.heal_all();
        } else if down.len() < 2 && (down.is_empty() || rng.bool()) {
            let victim = running[rng.usize(..running.len())];
            entries.lock().unwrap()[victim] = None;
            eprintln!("chaos step {steps}: {victim} killed");
            cluster.kill(victim).await;
            down.push(victim);
            kills += 1;
        } else {
            let back = down.remove(rng.usize(..down.len()));
            eprintln!("chaos step {steps}: {back} restarted");
            cluster.restart(back).await;
            let entry = attach(&cluster, back, &store);
            entries.lock().unwrap()[back] = Some(entry);
        }
    }
    stop.store(true, Ordering::Release);
    let mut acknowledged = Vec::new();
    while let Some(done) = clients.join_next().await {
        acknowledged.extend(done.unwrap());
    }
    eprintln!(
        "sharded bank: {} transfers acknowledged under {kills} kills and {partitions} partitions",
        acknowledged.len()
    );
    assert!(kills >= 2, "the chaos killed {kills} nodes");
    assert!(partitions >= 2, "the chaos made {partitions} partitions");
    assert!(acknowledged.len() >= 20, "{} transfers", acknowledged.len());

    // The books: money conserved, every acknowledged transfer on both sides.
    let mut total = 0;
    let mut books = HashMap::new();
    for account in 0..ACCOUNTS {
        let (balance, applied) =
            until_acknowledged(&entries, &mut rng, account, || Statement).await;
        total += balance;
        books.insert(account, applied);
    }
    assert_eq!(total, OPENING * ACCOUNTS as i64, "money conserved");
    for (id, from, to, moved) in &acknowledged {
        assert_eq!(
            books[from].get(id),
            Some(moved),
            "transfer {id} in {from}'s books"
        );
        if *moved {
            assert_eq!(
                books[to].get(id),
                Some(&true),
                "transfer {id} in {to}'s books"
            );
        }
    }
    cluster.shutdown().await;
}
