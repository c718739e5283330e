//! sigexec: an eBPF process-exec sensor with native Sigma matching.
pub mod capture;
pub mod sigma;
