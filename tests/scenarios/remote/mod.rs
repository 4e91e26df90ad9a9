//! Two nodes in two OS processes: this test and a `remote-peer` it starts. (Two nodes in one
//! process are postbox-remote's own tests.)

mod process;
