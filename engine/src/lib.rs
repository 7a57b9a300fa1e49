//! # keel-engine
//!
//! The object store over `keel-drivers` (issue 3 builds it).
