//! docker-persist: back up, restore, verify and protect the data of Docker Compose projects, keyed to a tier
//! for every volume and bind mount.

pub mod cli;
pub mod commands;
pub mod compose;
pub mod context;
pub mod engine;
pub mod plugin;
pub mod report;
