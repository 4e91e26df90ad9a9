//! What the tests share: capturing a panic's message, and a small actor.

use postbox::prelude::*;
use std::future::Future;

/// Runs `future` on a task of its own and returns the message it panicked with; fails the
/// test if it did not panic.
pub(crate) async fn panic_message<F>(future: F) -> String
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let Err(error) = tokio::spawn(future).await else {
        panic!("expected a panic");
    };
    let payload = error.into_panic();
    if let Some(message) = payload.downcast_ref::<String>() {
        return message.clone();
    }
    if let Some(message) = payload.downcast_ref::<&str>() {
        return (*message).to_owned();
    }
    panic!("a panic without a message")
}

/// Forwards every `Shout` it gets, uppercased, to the recipient the `Shout` names; answers
/// `Count` with how many it forwarded.
#[derive(Default)]
pub(crate) struct Shouter {
    pub(crate) forwarded: u64,
}
impl Actor for Shouter {}

pub(crate) struct Shout {
    pub(crate) text: &'static str,
    pub(crate) to: Recipient<Heard>,
}
impl Message for Shout {
    type Reply = ();
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Heard(pub(crate) String);
impl Message for Heard {
    type Reply = ();
}

impl Handler<Shout> for Shouter {
    async fn handle(&mut self, shout: Shout, _: &mut Context<Self>) {
        self.forwarded += 1;
        let _ = shout.to.tell(Heard(shout.text.to_uppercase())).await;
    }
}
