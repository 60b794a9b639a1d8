//! Shared by the fuzz targets; the hostile-input tests include `invariants.rs` too.

pub mod invariants;
