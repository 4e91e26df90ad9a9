//! Two actors bounce a ball back and forth, then report what the runtime saw.
//!
//! ```sh
//! cargo run --release --example ping_pong            # 1_000_000 round trips
//! cargo run --release --example ping_pong -- 10000   # fewer
//! ```

use postbox::prelude::*;
use std::time::Instant;
use tokio::sync::oneshot;

/// Sends the ball back until it has been hit `rounds` times, then reports.
struct Player {
    rounds: u64,
    hits: u64,
    done: Option<oneshot::Sender<u64>>,
}

impl Actor for Player {}

/// The ball, carrying who to send it back to.
struct Ball {
    from: ActorRef<Player>,
}

impl Message for Ball {
    type Reply = ();
}

impl Handler<Ball> for Player {
    async fn handle(&mut self, ball: Ball, ctx: &mut Context<Self>) {
        self.hits += 1;
        if self.hits == self.rounds {
            if let Some(done) = self.done.take() {
                let _ = done.send(self.hits);
            }
            return;
        }
        let me = ctx.myself().clone();
        // The opponent may have stopped if the run is over; that is fine here.
        let _ = ball.from.tell(Ball { from: me }).await;
    }
}

fn player(name: &str, rounds: u64, done: oneshot::Sender<u64>) -> Props<Player> {
    let mut done = Some(done);
    Props::new(move || Player {
        rounds,
        hits: 0,
        done: done.take(),
    })
    .name(name)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rounds: u64 = match std::env::args().nth(1) {
        Some(arg) => arg.parse().map_err(|e| format!("rounds {arg:?}: {e}"))?,
        None => 1_000_000,
    };
    let system = ActorSystem::new();
    let (ping_done, ping_hits) = oneshot::channel();
    let (pong_done, _) = oneshot::channel();
    let ping = system.spawn(player("ping", rounds, ping_done))?;
    let pong = system.spawn(player("pong", rounds + 1, pong_done))?;

    let started = Instant::now();
    pong.tell(Ball { from: ping.clone() }).await?;
    let hits = ping_hits.await?;
    let elapsed = started.elapsed();

    println!(
        "{hits} round trips in {elapsed:.2?}: {:.0} ns per round trip, {:.1} M messages/s",
        elapsed.as_nanos() as f64 / hits as f64,
        (2 * hits) as f64 / elapsed.as_secs_f64() / 1e6
    );
    // Stats after the shutdown: `ping` reported its last hit from inside that message's
    // handler, which is counted as processed only once it returns.
    let report = system.shutdown().await;
    for actor in [&ping, &pong] {
        let stats = actor.stats();
        println!(
            "{:<12} processed {:>9}  mailbox depth {}  mean handling {:?}",
            actor.path(),
            stats.processed,
            stats.depth,
            stats.mean_processing
        );
    }
    println!(
        "shutdown: {} actors stopped in {:.2?}, {} dead letters",
        report.actors_stopped,
        report.elapsed,
        system.dead_letters().total()
    );
    Ok(())
}
