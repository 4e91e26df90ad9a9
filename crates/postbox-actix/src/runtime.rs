//! [`ActixRuntime`]: an actix `System` on a thread of its own, beside postbox's Tokio runtime.
//!
//! actix runs each arbiter as a current-thread Tokio runtime with a `LocalSet`: its actors are
//! `!Send` futures pinned to that thread. postbox runs its actors as ordinary tasks on a
//! (usually multi-thread) Tokio runtime. The two share nothing but channels: an `Addr::send`
//! pushes into the actix mailbox and wakes the arbiter; a postbox `tell`/`ask` pushes into a
//! postbox mailbox and wakes its actor; both wake-ups work from any thread, inside or outside
//! any runtime. So neither side ever needs to *run on* the other's threads.
//!
//! The rule that keeps the two free of deadlocks: **never let them share a thread that one
//! of them blocks**. With the actix System on its own thread (this type) and postbox on its
//! own runtime, an actix handler may even block its thread on a postbox reply, or a blocking
//! postbox actor (`Props::blocking`) block on an actix reply: the other side keeps running on
//! its own threads and answers. What does deadlock is one thread doing both — for example
//! postbox built on the actix System's runtime (`ActorSystem::new()` inside
//! `System::new().block_on(..)`, which is allowed and fine for purely `async` code) and then
//! a handler on that thread waiting synchronously for an answer that needs the same thread.
//!
//! If the application already has an actix System (an actix-web `main`, say), it needs no
//! `ActixRuntime`: start the actix actors as usual and give postbox a runtime of its own with
//! `ActorSystem::builder().runtime(handle)`.

use actix::Addr;
use actix_rt::System;
use std::fmt;
use std::io;
use std::thread::JoinHandle;

/// An actix `System` running on a dedicated thread, to start actix actors on from anywhere.
///
/// Dropping it stops the System (actors on its arbiters stop; their hosts notice, see
/// [`ActixHost`](crate::ActixHost)) without waiting; [`stop`](Self::stop) also waits for the
/// thread to end.
pub struct ActixRuntime {
    system: System,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl ActixRuntime {
    /// Starts an actix System on a new thread named `name`.
    pub fn new(name: &str) -> io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                let runner = System::with_tokio_rt(move || runtime);
                // The receiver waits for this send; it only fails if `start` is gone.
                let _ = tx.send(System::current());
                runner.run()
            })?;
        match rx.recv() {
            Ok(system) => Ok(Self {
                system,
                thread: Some(thread),
            }),
            Err(_) => Err(match thread.join() {
                Ok(Err(error)) => error,
                _ => io::Error::other("the actix System thread ended before it started"),
            }),
        }
    }

    /// Starts an actix actor on this System's arbiter (its thread), like
    /// `Actor::start_in_arbiter`; `make` runs on that thread.
    pub fn start<A, F>(&self, make: F) -> Addr<A>
    where
        A: actix::Actor<Context = actix::Context<A>>,
        F: FnOnce(&mut actix::Context<A>) -> A + Send + 'static,
    {
        <A as actix::Actor>::start_in_arbiter(self.system.arbiter(), make)
    }

    /// The actix System, e.g. to make further arbiters part of it.
    pub fn system(&self) -> &System {
        &self.system
    }

    /// The System's arbiter (its thread), to spawn futures or actors on.
    pub fn arbiter(&self) -> &actix_rt::ArbiterHandle {
        self.system.arbiter()
    }

    /// Stops the System and waits for its thread to end. Blocks: from async code, call it
    /// through `tokio::task::spawn_blocking`.
    pub fn stop(mut self) -> io::Result<()> {
        self.system.stop();
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(io::Error::other("the actix System thread panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for ActixRuntime {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.system.stop();
        }
    }
}

impl fmt::Debug for ActixRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActixRuntime")
            .field("system", &self.system.id())
            .finish_non_exhaustive()
    }
}
