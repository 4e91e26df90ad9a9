//! The actix actor the two-process scenario reaches, shared by the `actix-peer` binary (which
//! hosts it) and the test (which names its type to look it up).

use actix::{Actor, ActorContext, Context, Handler, Message};
use postbox_actix::{bridge_message, remote_actix};
use serde::{Deserialize, Serialize};

/// Sums what it is told and keeps the order it arrived in.
#[derive(Default)]
pub struct Tally {
    log: Vec<u64>,
}

impl Actor for Tally {
    type Context = Context<Self>;
}

#[derive(Serialize, Deserialize, Debug)]
pub struct Count(pub u64);
impl Message for Count {
    type Result = u64;
}
impl Handler<Count> for Tally {
    type Result = u64;
    fn handle(&mut self, Count(n): Count, _: &mut Context<Self>) -> u64 {
        self.log.push(n);
        self.log.iter().sum()
    }
}
bridge_message!(Count, "actix-scenario.Count");

#[derive(Serialize, Deserialize, Debug)]
pub struct History;
impl Message for History {
    type Result = Vec<u64>;
}
impl Handler<History> for Tally {
    type Result = Vec<u64>;
    fn handle(&mut self, _: History, _: &mut Context<Self>) -> Vec<u64> {
        self.log.clone()
    }
}
bridge_message!(History, "actix-scenario.History");

/// Stops the actix actor.
#[derive(Serialize, Deserialize, Debug)]
pub struct Retire;
impl Message for Retire {
    type Result = ();
}
impl Handler<Retire> for Tally {
    type Result = ();
    fn handle(&mut self, _: Retire, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
bridge_message!(Retire, "actix-scenario.Retire");

remote_actix!(Tally: Count, History, Retire);
