//! The store end to end on the simulated device: every operation round-trips, bad input is
//! refused with a typed error and changes nothing, state survives close/open and power cuts
//! within each mode's guarantee, the journal wraps through checkpoints, and a device fault
//! stops the store with a clear reason.
//!
//! `ops` holds what operations do and refuse; `space` how freed space comes back and what
//! metadata may grow to; `durability` what survives close/open, power cuts and faults;
//! `faults` a failed write or flush at every point of a workload, then a power cut;
//! `journal` how the journal writes, batches, wraps and overlaps; `common` the device
//! and store set-ups they share.

mod common;
mod durability;
mod faults;
mod journal;
mod ops;
mod space;
