//! Exists so that `sensor` can list this crate as a build dependency; the
//! programs live in the `sensor` binary target (`main.rs`).
#![no_std]
