//! Two nodes over real loopback TCP: in one process (two `ActorSystem`s), and in two OS
//! processes (`remote-peer`, started by the test).

mod common;
mod connections;
mod loopback;
mod process;
mod refs;
mod refusals;
mod tls;
mod tracing;
