//! Shared by the fuzz targets; the hostile-input tests include `invariants.rs` too.

pub mod invariants;
#[path = "../../tests/hostile_support/mod.rs"]
pub mod hostile_support;
