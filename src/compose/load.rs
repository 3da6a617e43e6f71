//! Reads, interpolates and merges Compose files into a [`Project`](super::Project).
