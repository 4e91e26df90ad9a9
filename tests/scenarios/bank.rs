//! Per-entity serialization under concurrency: 16 clients move money between 200 account
//! actors through asks. Each account's balance is touched only by its own actor, so no transfer
//! can be lost or doubled — the total is conserved exactly, and every transfer is accounted for.

use postbox::prelude::*;
use postbox_testkit::within;
use std::time::Duration;

struct Account {
    balance: u64,
}

impl Actor for Account {}

struct Withdraw(u64);
impl Message for Withdraw {
    type Reply = bool;
}
impl Handler<Withdraw> for Account {
    async fn handle(&mut self, Withdraw(amount): Withdraw, _: &mut Context<Self>) -> bool {
        let enough = self.balance >= amount;
        if enough {
            self.balance -= amount;
        }
        // Let other accounts' handlers interleave with this one mid-transfer.
        tokio::task::yield_now().await;
        enough
    }
}

struct Deposit(u64);
impl Message for Deposit {
    type Reply = ();
}
impl Handler<Deposit> for Account {
    async fn handle(&mut self, Deposit(amount): Deposit, _: &mut Context<Self>) {
        self.balance += amount;
    }
}

struct Balance;
impl Message for Balance {
    type Reply = u64;
}
impl Handler<Balance> for Account {
    async fn handle(&mut self, _: Balance, _: &mut Context<Self>) -> u64 {
        self.balance
    }
}

const ACCOUNTS: usize = 200;
const OPENING: u64 = 500;
const CLIENTS: u64 = 16;
const TRANSFERS: usize = 500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_transfers_conserve_money_and_account_for_every_message() {
    // Small mailboxes so clients really contend and wait on backpressure.
    let system = ActorSystem::builder()
        .default_mailbox(MailboxCapacity::bounded(4))
        .build();
    let accounts: Vec<ActorRef<Account>> = (0..ACCOUNTS)
        .map(|i| {
            system
                .spawn(Props::new(|| Account { balance: OPENING }).name(format!("account-{i}")))
                .unwrap()
        })
        .collect();

    let clients: Vec<_> = (0..CLIENTS)
        .map(|seed| {
            let accounts = accounts.clone();
            tokio::spawn(async move {
                let mut rng = fastrand::Rng::with_seed(seed);
                let (mut moved, mut refused) = (0u64, 0u64);
                for _ in 0..TRANSFERS {
                    let from = &accounts[rng.usize(..ACCOUNTS)];
                    let to = &accounts[rng.usize(..ACCOUNTS)];
                    let amount = rng.u64(1..=300);
                    if from.ask(Withdraw(amount)).await.unwrap() {
                        to.tell(Deposit(amount)).await.unwrap();
                        moved += 1;
                    } else {
                        refused += 1;
                    }
                }
                (moved, refused)
            })
        })
        .collect();
    let (mut moved, mut refused) = (0, 0);
    for client in clients {
        let (m, r) = within(Duration::from_secs(60), client).await.unwrap();
        moved += m;
        refused += r;
    }
    assert_eq!(moved + refused, CLIENTS * TRANSFERS as u64);
    assert!(moved > 0, "some transfers must go through");

    // Asks are FIFO behind each account's deposits, so these balances include every transfer.
    let mut total = 0;
    for account in &accounts {
        total += account.ask(Balance).await.unwrap();
    }
    assert_eq!(total, ACCOUNTS as u64 * OPENING, "money created or lost");

    assert_eq!(system.dead_letters().total(), 0);

    let report = system.shutdown().await;
    assert!(report.completed);
    assert_eq!(report.messages_dropped, 0);
    assert_eq!(report.actors_stopped, ACCOUNTS as u64 + 1);

    // Read once the actors have stopped: a reply can reach its asker a moment before the
    // handler's processed count is bumped. Every withdraw, every deposit of a moved transfer
    // and every balance query was handled.
    let processed: u64 = accounts.iter().map(|a| a.stats().processed).sum();
    assert_eq!(
        processed,
        CLIENTS * TRANSFERS as u64 + moved + ACCOUNTS as u64
    );
}
