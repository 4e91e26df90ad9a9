//! Per-entity serialization: one actor per account, so each balance is only ever touched by
//! one task at a time — no locks. Many concurrent transfers run across many accounts; money is
//! never created or lost.
//!
//! ```sh
//! cargo run --release --example bank
//! ```

use postbox::prelude::*;
use std::time::Instant;

/// One account: its balance is its private state.
struct Account {
    balance: u64,
}

impl Actor for Account {}

/// Take money out if there is enough; replies whether it happened.
struct Withdraw(u64);

impl Message for Withdraw {
    type Reply = bool;
}

impl Handler<Withdraw> for Account {
    async fn handle(&mut self, Withdraw(amount): Withdraw, _: &mut Context<Self>) -> bool {
        if self.balance >= amount {
            self.balance -= amount;
            true
        } else {
            false
        }
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

/// Moves money between two accounts: withdraw first, deposit only if that succeeded.
async fn transfer(
    from: &ActorRef<Account>,
    to: &ActorRef<Account>,
    amount: u64,
) -> Result<bool, AskError> {
    if !from.ask(Withdraw(amount)).await? {
        return Ok(false);
    }
    to.ask(Deposit(amount)).await?;
    Ok(true)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    const ACCOUNTS: usize = 1_000;
    const OPENING: u64 = 1_000;
    const CLIENTS: usize = 32;
    const TRANSFERS: usize = 5_000;

    let system = ActorSystem::new();
    let mut accounts = Vec::with_capacity(ACCOUNTS);
    for id in 0..ACCOUNTS {
        let account = system
            .spawn(Props::new(|| Account { balance: OPENING }).name(format!("account-{id}")))?;
        system
            .registry()
            .register(format!("account-{id}"), &account)?;
        accounts.push(account);
    }

    let started = Instant::now();
    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        let accounts = accounts.clone();
        clients.push(tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(client as u64);
            let mut done = 0u32;
            for _ in 0..TRANSFERS {
                let from = &accounts[rng.usize(..ACCOUNTS)];
                let to = &accounts[rng.usize(..ACCOUNTS)];
                if from != to && transfer(from, to, rng.u64(1..=200)).await? {
                    done += 1;
                }
            }
            Ok::<u32, AskError>(done)
        }));
    }
    let mut completed = 0;
    for client in clients {
        completed += client.await??;
    }
    let elapsed = started.elapsed();

    let mut total = 0;
    for account in &accounts {
        total += account.ask(Balance).await?;
    }
    let busiest = accounts
        .iter()
        .map(|a| a.stats().processed)
        .max()
        .unwrap_or(0);
    println!(
        "{completed} of {} transfers completed in {elapsed:.2?} across {ACCOUNTS} account actors",
        CLIENTS * TRANSFERS
    );
    println!("busiest account handled {busiest} messages, one at a time");
    println!(
        "total money: {total} (opening total {}){}",
        ACCOUNTS as u64 * OPENING,
        if total == ACCOUNTS as u64 * OPENING {
            " - conserved"
        } else {
            " - MISMATCH"
        }
    );
    let lookup = system
        .registry()
        .lookup::<Account>("account-7")
        .ok_or("account-7 is not registered")?;
    println!(
        "account-7 found by name holds {}",
        lookup.ask(Balance).await?
    );
    system.shutdown().await;
    if total != ACCOUNTS as u64 * OPENING {
        return Err("money was created or lost".into());
    }
    Ok(())
}
