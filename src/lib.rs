//! plainbounce: recognise bounce messages, find out why delivery failed, and rewrite the
//! human-readable part in plain language.
//!
//! The flow is `detect/parse (dsn) → classify (kb) → render → rewrite`; the doors (CLI,
//! milter, filter) are thin adapters around it.

pub mod classify;
pub mod codes;
pub mod dsn;
pub mod kb;
pub(crate) mod patterns;
pub mod config;
pub mod engine;
pub mod logging;
pub mod milter;
pub mod footer;
pub mod socketmap;
pub mod policy;
pub mod render;
pub mod rewrite;
pub mod sanitize;
pub mod eval;
