//! A supervised worker that panics on every tenth job while producers keep its small mailbox
//! full. Erlang/Akka semantics: a restart replaces the actor's state, not its mailbox, so the
//! jobs queued behind a crash are handled by the next incarnation. Every job is either
//! completed or was the one that crashed an incarnation — none vanish.

use postbox::prelude::*;
use postbox_testkit::within;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

#[derive(Default)]
struct Tally {
    completed: AtomicU64,
    crashed: AtomicU64,
    incarnations: AtomicU64,
}

struct Worker {
    tally: Arc<Tally>,
}

impl Actor for Worker {}

struct Job(u64);
impl Message for Job {
    type Reply = ();
}
impl Handler<Job> for Worker {
    async fn handle(&mut self, Job(n): Job, _: &mut Context<Self>) {
        if n % 10 == 9 {
            self.tally.crashed.fetch_add(1, Relaxed);
            panic!("job {n} is poison");
        }
        self.tally.completed.fetch_add(1, Relaxed);
    }
}

/// Replies once everything sent before it (by this sender) has been handled.
struct Flush;
impl Message for Flush {
    type Reply = ();
}
impl Handler<Flush> for Worker {
    async fn handle(&mut self, _: Flush, _: &mut Context<Self>) {}
}

struct Boss;
impl Actor for Boss {}

struct HireWorker(Arc<Tally>);
impl Message for HireWorker {
    type Reply = Result<ActorRef<Worker>, SpawnError>;
}
impl Handler<HireWorker> for Boss {
    async fn handle(
        &mut self,
        HireWorker(tally): HireWorker,
        ctx: &mut Context<Self>,
    ) -> Result<ActorRef<Worker>, SpawnError> {
        ctx.spawn(
            Props::new(move || {
                tally.incarnations.fetch_add(1, Relaxed);
                Worker {
                    tally: tally.clone(),
                }
            })
            .mailbox(MailboxCapacity::bounded(8)),
        )
    }
}

const PRODUCERS: u64 = 4;
const JOBS_EACH: u64 = 500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_mid_stream_lose_no_jobs() {
    let system = ActorSystem::new();
    let crashes = PRODUCERS * JOBS_EACH / 10;
    let boss = system
        .spawn(
            Props::new(|| Boss).supervisor(
                SupervisorStrategy::one_for_one()
                    .max_restarts(crashes as u32 + 1, Duration::from_secs(60)),
            ),
        )
        .unwrap();
    let tally = Arc::new(Tally::default());
    let worker = boss.ask(HireWorker(tally.clone())).await.unwrap().unwrap();

    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let worker = worker.clone();
            tokio::spawn(async move {
                for i in 0..JOBS_EACH {
                    // Job numbers are global, so exactly a tenth of them are poison.
                    worker.tell(Job(p * JOBS_EACH + i)).await.unwrap();
                }
                worker.ask(Flush).await.unwrap();
            })
        })
        .collect();
    for producer in producers {
        within(Duration::from_secs(60), producer).await.unwrap();
    }

    let completed = tally.completed.load(Relaxed);
    let crashed = tally.crashed.load(Relaxed);
    assert_eq!(crashed, crashes);
    assert_eq!(completed + crashed, PRODUCERS * JOBS_EACH, "jobs vanished");
    assert_eq!(tally.incarnations.load(Relaxed), crashes + 1);
    assert_eq!(system.counters().panics, crashes);
    assert_eq!(system.counters().restarts, crashes);
    assert_eq!(system.dead_letters().total(), 0);
    assert!(worker.is_alive());

    let report = system.shutdown().await;
    assert!(report.completed);
    assert_eq!(report.messages_dropped, 0);
}
