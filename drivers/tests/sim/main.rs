//! The simulated device keeps its promises: data round-trips, flushed data survives a power
//! cut, unflushed data is kept, lost or torn but never invented, same seed same image,
//! latency holds on a virtual clock, injected faults surface as typed errors, and the
//! silent ones (bit flips at rest, misdirected writes) corrupt exactly what they say.
//!
//! One file per promise: `commands` (what a command does and refuses), `timing` (when it
//! completes), `power` (what a power cut leaves), `faults` (injected errors, bit flips and
//! misdirected writes); `common` holds the device set-ups and the stamped blocks they share.

mod commands;
mod common;
mod faults;
mod power;
#[path = "../support/stamp.rs"]
mod stamp;
mod timing;
