//! Committed metadata: collections, objects, extent maps, attributes, omap.

mod delta;

pub use delta::Delta;
