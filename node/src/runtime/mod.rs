//! Workload runtimes (the sandbox, Docker, later microVMs).
//!
//! So far: [`host`], what this host offers a sandbox runtime (bubblewrap, and cgroup
//! controllers for limits and accounting, v1 or v2). The `Runtime` trait and its
//! implementations build on it.

pub mod host;
