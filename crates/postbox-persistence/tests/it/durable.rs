//! Durable-state actors: the whole state saved on each change.

use postbox::prelude::*;
use postbox::{Backoff, BackoffSupervisor, Failure};
use postbox_persistence::prelude::*;
use postbox_persistence::{MemoryStore, Record, StoreError};
use postbox_testkit::{within, PATIENCE};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Cart {
    items: Vec<String>,
}
impl Versioned for Cart {
    const TAG: &'static str = "test.cart";
}

struct Shopper {
    cart: DurableState<Cart>,
}
impl Actor for Shopper {
    async fn started(&mut self, _: &mut Context<Self>) -> Result<(), BoxError> {
        self.cart.recover().await?;
        Ok(())
    }
}

struct AddItem(&'static str);
impl Message for AddItem {
    type Reply = Result<usize, PersistError>;
}
impl Handler<AddItem> for Shopper {
    async fn handle(
        &mut self,
        AddItem(item): AddItem,
        ctx: &mut Context<Self>,
    ) -> Result<usize, PersistError> {
        let mut next = self.cart.state().clone();
        next.items.push(item.to_owned());
        self.cart.save(ctx, next).await?;
        Ok(self.cart.state().items.len())
    }
}

struct Clear;
impl Message for Clear {
    type Reply = Result<(), PersistError>;
}
impl Handler<Clear> for Shopper {
    async fn handle(&mut self, _: Clear, ctx: &mut Context<Self>) -> Result<(), PersistError> {
        self.cart.delete(ctx).await
    }
}

struct Show;
impl Message for Show {
    type Reply = (Cart, u64);
}
impl Handler<Show> for Shopper {
    async fn handle(&mut self, _: Show, _: &mut Context<Self>) -> (Cart, u64) {
        (self.cart.state().clone(), self.cart.revision())
    }
}

fn shopper(persistence: &Persistence, id: &str) -> Props<Shopper> {
    let persistence = persistence.clone();
    let id = PersistenceId::new(id);
    Props::new(move || Shopper {
        cart: persistence.durable_state(id.clone()),
    })
    .restart(Restart::Transient)
}

fn cart(items: &[&str]) -> Cart {
    Cart {
        items: items.iter().map(|s| s.to_string()).collect(),
    }
}

#[tokio::test]
async fn a_saved_state_is_recovered_by_the_next_instance() {
    let system = ActorSystem::new();
    let persistence = Persistence::in_memory();
    let shopper1 = system.spawn(shopper(&persistence, "cart|1")).unwrap();
    assert_eq!(shopper1.ask(AddItem("tea")).await.unwrap(), Ok(1));
    assert_eq!(shopper1.ask(AddItem("milk")).await.unwrap(), Ok(2));
    shopper1.stop();
    shopper1.wait_for_stop().await;
    let shopper2 = system.spawn(shopper(&persistence, "cart|1")).unwrap();
    assert_eq!(
        shopper2.ask(Show).await.unwrap(),
        (cart(&["tea", "milk"]), 2)
    );
    system.shutdown().await;
}

#[tokio::test]
async fn a_deleted_state_recovers_empty_and_keeps_its_revision() {
    let system = ActorSystem::new();
    let persistence = Persistence::in_memory();
    let shopper1 = system.spawn(shopper(&persistence, "cart|del")).unwrap();
    shopper1.ask(AddItem("tea")).await.unwrap().unwrap();
    shopper1.ask(Clear).await.unwrap().unwrap();
    assert_eq!(shopper1.ask(Show).await.unwrap(), (Cart::default(), 2));
    shopper1.stop();
    shopper1.wait_for_stop().await;
    let shopper2 = system.spawn(shopper(&persistence, "cart|del")).unwrap();
    assert_eq!(shopper2.ask(Show).await.unwrap(), (Cart::default(), 2));
    assert_eq!(shopper2.ask(AddItem("jam")).await.unwrap(), Ok(1));
    system.shutdown().await;
}

#[tokio::test]
async fn of_two_live_instances_the_second_to_save_gets_a_conflict_and_stops() {
    let system = ActorSystem::new();
    let persistence = Persistence::in_memory();
    let first = system
        .spawn(shopper(&persistence, "cart|twin").name("a"))
        .unwrap();
    let second = system
        .spawn(shopper(&persistence, "cart|twin").name("b"))
        .unwrap();
    first.ask(Show).await.unwrap();
    second.ask(Show).await.unwrap();
    let second_stopped = crate::support::watch_stop(&second).await;
    first.ask(AddItem("tea")).await.unwrap().unwrap();
    assert!(matches!(
        second.ask(AddItem("coffee")).await.unwrap(),
        Err(PersistError::Conflict { .. })
    ));
    assert_eq!(second_stopped.await, ExitReason::Normal);
    let stored = persistence
        .state_store()
        .load_state(&PersistenceId::new("cart|twin"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.revision, 1);
    assert_eq!(
        stored.record.unwrap().decode::<Cart>().unwrap(),
        cart(&["tea"])
    );
    system.shutdown().await;
}

#[tokio::test]
async fn a_failed_save_keeps_the_old_state_and_fails_the_actor() {
    let system = ActorSystem::new();
    let store = Arc::new(MemoryStore::new());
    let persistence = Persistence::from_parts(store.clone(), store.clone(), store.clone());
    let backoff = Backoff::exponential(Duration::from_millis(10), Duration::from_millis(50));
    let shopper = BackoffSupervisor::on_failure(shopper(&persistence, "cart|down"), backoff)
        .spawn(&system)
        .await
        .unwrap();
    shopper.ask(AddItem("tea")).await.unwrap().unwrap();
    store.set_available(false);
    match shopper.ask(AddItem("cake")).await.unwrap() {
        Err(PersistError::Store { error, seq, .. }) => {
            assert!(matches!(error, StoreError::Unavailable(_)));
            assert_eq!(seq, 2, "the revision it tried to write");
        }
        other => panic!("expected a store error, got {other:?}"),
    }
    store.set_available(true);
    // Restarted by its backoff supervisor (recovery fails until the store is back).
    let (state, revision) = within(PATIENCE, shopper.ask(Show)).await.unwrap();
    assert_eq!((state, revision), (cart(&["tea"]), 1));
    system.shutdown().await;
}

#[tokio::test]
async fn an_unreadable_state_refuses_to_start_naming_the_id_and_tag() {
    let system = ActorSystem::new();
    let persistence = Persistence::in_memory();
    let id = PersistenceId::new("cart|odd");
    persistence
        .state_store()
        .save_state(&id, 0, Record::new("test.cart", 7, vec![0xc1]))
        .await
        .unwrap();
    let shopper = system
        .spawn(shopper(&persistence, "cart|odd").restart(Restart::Temporary))
        .unwrap();
    let reason = crate::support::watch_stop(&shopper).await.await;
    let ExitReason::Failed(Failure::Error(message)) = reason else {
        panic!("expected a failed start, got {reason:?}");
    };
    for part in [
        "cart|odd",
        "test.cart",
        "version 7",
        "newer than this code's 1",
    ] {
        assert!(message.contains(part), "{message:?} names {part}");
    }
    system.shutdown().await;
}
