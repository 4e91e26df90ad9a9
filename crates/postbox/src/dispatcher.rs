//! Dispatchers: [`Dispatcher`], a named runtime with threads of its own (its docs state the
//! placement rules), and [`PinnedThread`], the dedicated thread of a blocking actor.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;

/// A handle to a dedicated executor: a Tokio multi-thread runtime with its own OS threads,
/// named `postbox-<name>`. Cheap to clone; all clones are the same executor.
///
/// By default every actor is a task on the system's runtime (the one the [`ActorSystem`] was
/// built in, or the one given to [`ActorSystemBuilder::runtime`]). One actor that blocks a
/// worker thread — a synchronous database driver, `std::thread::sleep`, heavy computation —
/// then takes that thread from every other actor, and a few such actors stall the whole
/// system, timers included. A dispatcher is a *bulkhead* for executors: a group of actors
/// placed on it can only ever exhaust its threads, never the system's.
///
/// # Placement rules
///
/// * [`Props::dispatcher`] places an actor on a dispatcher: its task, and so every handler,
///   hook and restart of it, runs on the dispatcher's threads.
/// * **Children inherit** their parent's dispatcher: a child spawned with
///   [`Context::spawn`] whose props choose none runs on the parent's dispatcher, so a whole
///   subtree stays in its compartment. A child's own [`Props::dispatcher`] overrides.
/// * Top-level actors ([`ActorSystem::spawn`]) without a dispatcher run on the system's
///   runtime; nothing is inherited from the code that spawns them.
/// * [`Props::blocking`] gives an actor a **thread of its own**, for handlers that call
///   blocking code. It is not inherited (see below).
///
/// A dispatcher's runtime lives as long as anything uses it: the [`Dispatcher`] handles, and
/// every live actor placed on it (their tasks hold a handle). When the last one goes away the
/// runtime shuts down in the background ([`Runtime::shutdown_background`]), which is safe from
/// any context, async or not; plain tasks spawned on it through [`Dispatcher::handle`] are
/// cancelled then. Actor references do not keep it alive.
///
/// # Blocking actors
///
/// A blocking actor runs its whole life on a dedicated OS thread (`postbox-blocking-<id>`),
/// driven by a current-thread Tokio runtime owned by that thread. Its handlers may block as long
/// as they like: only its own thread waits. The thread ends when the actor terminates.
///
/// Why a dedicated thread with its own runtime rather than `spawn_blocking` +
/// `Handle::block_on` on the system runtime: (1) the actor's own timers (backoff, child stop
/// deadlines, `tokio::time` in handlers) are then driven by its thread, so they keep working
/// even when the system's workers are starved — the point of the compartment; (2) Tokio's
/// blocking pool is meant for finite jobs: a runtime being dropped waits for its blocking tasks,
/// and an actor that never stops would hang that drop; (3) the pool's thread limit would be
/// shared with every other `spawn_blocking` user. The cost is one thread and one small runtime
/// per blocking actor, which is why blocking actors are meant for a few gateways to blocking
/// resources, not for thousands of entities. Plain tasks spawned with `tokio::spawn` from a
/// blocking actor's handler run on its thread (between its blocking calls) and end with it; to
/// run work elsewhere, spawn it on a dispatcher's [`handle`](Dispatcher::handle).
///
/// **Blocking is not inherited.** Children of a blocking actor run on the dispatcher the
/// blocking actor would otherwise have used — its own [`Props::dispatcher`], else its parent's,
/// else the system's runtime — unless their props say [`blocking`](crate::Props::blocking) themselves.
/// Blocking is a property of a handler's code, not of a subtree, and inheriting it would turn
/// every child (say, one per request) silently into an OS thread. Akka makes the same choice:
/// a pinned dispatcher is assigned to one actor by its deployment, children do not get it.
///
/// ```
/// use postbox::prelude::*;
/// use postbox::Dispatcher;
///
/// struct WhereAmI;
/// impl Message for WhereAmI { type Reply = String; }
///
/// struct Legacy;
/// impl Actor for Legacy {}
/// impl Handler<WhereAmI> for Legacy {
///     async fn handle(&mut self, _: WhereAmI, _: &mut Context<Self>) -> String {
///         std::thread::sleep(std::time::Duration::from_millis(1)); // blocks only its group
///         std::thread::current().name().unwrap_or_default().to_owned()
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let system = ActorSystem::new();
/// let legacy = Dispatcher::new("legacy", 2)?;
/// let pooled = system.spawn(Props::new(|| Legacy).dispatcher(&legacy))?;
/// assert_eq!(pooled.ask(WhereAmI).await?, "postbox-legacy");
///
/// let pinned = system.spawn(Props::new(|| Legacy).blocking())?;
/// assert!(pinned.ask(WhereAmI).await?.starts_with("postbox-blocking-"));
/// # system.shutdown().await;
/// # Ok(())
/// # }
/// ```
///
/// A dispatcher's runtime can also run plain tasks and futures:
///
/// ```
/// use postbox::Dispatcher;
///
/// let io = Dispatcher::new("io", 2)?;
/// assert_eq!(io.name(), "io");
/// assert_eq!(io.threads(), 2);
/// let answer = io.handle().block_on(async { 42 });
/// assert_eq!(answer, 42);
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// [`ActorSystem`]: crate::ActorSystem
/// [`ActorSystem::spawn`]: crate::ActorSystem::spawn
/// [`ActorSystemBuilder::runtime`]: crate::ActorSystemBuilder::runtime
/// [`Context::spawn`]: crate::Context::spawn
/// [`Props::dispatcher`]: crate::Props::dispatcher
/// [`Props::blocking`]: crate::Props::blocking
/// [`Runtime::shutdown_background`]: tokio::runtime::Runtime::shutdown_background
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    threads: usize,
    handle: tokio::runtime::Handle,
    /// Taken only by `Drop`.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last handle may go away inside an async context (often on one of this runtime's
        // own workers, when its last actor ends), where a plain drop would panic.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Dispatcher {
    /// Starts a dispatcher with `threads` worker threads named `postbox-<name>`.
    ///
    /// Fails if `threads` is 0 (`InvalidInput`) or the runtime cannot be built (the OS refused
    /// a thread).
    pub fn new(name: impl Into<String>, threads: usize) -> io::Result<Self> {
        let name = name.into();
        if threads == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("dispatcher {name:?} needs at least one thread"),
            ));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name(format!("postbox-{name}"))
            .enable_all()
            .build()?;
        Ok(Self {
            inner: Arc::new(Inner {
                name,
                threads,
                handle: runtime.handle().clone(),
                runtime: Some(runtime),
            }),
        })
    }

    /// The name given at creation.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The number of worker threads.
    pub fn threads(&self) -> usize {
        self.inner.threads
    }

    /// The Tokio handle of the dispatcher's runtime, to run plain tasks beside its actors.
    /// Tasks spawned through it are cancelled when the dispatcher shuts down (see
    /// [`Dispatcher`]); the handle itself does not keep the dispatcher alive.
    pub fn handle(&self) -> &tokio::runtime::Handle {
        &self.inner.handle
    }
}

impl fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dispatcher")
            .field("name", &self.inner.name)
            .field("threads", &self.inner.threads)
            .finish()
    }
}

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The dedicated thread of a blocking actor, started before the actor is entered anywhere (so
/// that failing to get a thread is a clean spawn error) and waiting for the one future it will
/// run. Dropping it unused ends the thread.
pub(crate) struct PinnedThread {
    start: SyncSender<BoxFuture>,
}

impl PinnedThread {
    /// Starts a thread named `name` with its own current-thread runtime.
    pub(crate) fn spawn(name: String) -> io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (start, started) = sync_channel::<BoxFuture>(1);
        std::thread::Builder::new().name(name).spawn(move || {
            if let Ok(future) = started.recv() {
                runtime.block_on(future);
            }
            // Not in an async context here, so the runtime may be dropped normally (it waits
            // for blocking tasks the actor spawned).
            drop(runtime);
        })?;
        Ok(Self { start })
    }

    /// Runs `future` on the thread. If the thread is gone (it cannot be, short of a panic
    /// while building its runtime), the future is dropped, which ends an actor cleanly.
    pub(crate) fn run(self, future: BoxFuture) {
        let _ = self.start.send(future);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dispatcher_needs_a_thread() {
        let error = Dispatcher::new("none", 0).expect_err("zero threads");
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn threads_are_named_after_the_dispatcher() {
        let dispatcher = Dispatcher::new("named", 1).expect("runtime");
        let name = dispatcher
            .handle()
            .block_on(async {
                tokio::spawn(async { std::thread::current().name().map(str::to_owned) }).await
            })
            .expect("task");
        assert_eq!(name.as_deref(), Some("postbox-named"));
    }

    #[test]
    fn the_last_handle_may_drop_on_the_dispatcher_s_own_thread() {
        let dispatcher = Dispatcher::new("self-drop", 1).expect("runtime");
        let weak = Arc::downgrade(&dispatcher.inner);
        let tokio_handle = dispatcher.handle().clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let keep_alive = dispatcher.clone();
        dispatcher.handle().spawn(async move {
            let _ = tx.send(());
            drop(keep_alive);
        });
        drop(dispatcher);
        rx.recv().expect("the task ran");
        // The task's handle is the last one; it drops on a worker of the runtime it shuts down.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while weak.strong_count() > 0 {
            assert!(std::time::Instant::now() < deadline, "the task never ended");
            std::thread::yield_now();
        }
        // A Tokio handle does not keep the runtime alive, and using it afterwards is harmless.
        drop(tokio_handle.spawn(async {}));
    }

    #[tokio::test]
    async fn the_last_handle_may_drop_inside_another_runtime() {
        let dispatcher = Dispatcher::new("async-drop", 1).expect("runtime");
        let answer = dispatcher.handle().spawn(async { 7 }).await.expect("task");
        assert_eq!(answer, 7);
        drop(dispatcher);
    }

    #[test]
    fn a_pinned_thread_runs_its_future_and_ends() {
        let thread = PinnedThread::spawn("postbox-pinned-test".into()).expect("thread");
        let (tx, rx) = std::sync::mpsc::channel();
        thread.run(Box::pin(async move {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            let _ = tx.send(std::thread::current().name().map(str::to_owned));
        }));
        assert_eq!(
            rx.recv().expect("ran").as_deref(),
            Some("postbox-pinned-test")
        );
    }

    #[test]
    fn an_unused_pinned_thread_ends() {
        let thread = PinnedThread::spawn("postbox-unused".into()).expect("thread");
        drop(thread);
    }
}
