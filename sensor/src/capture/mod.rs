//! Exec capture.
pub mod btf;
