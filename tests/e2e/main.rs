//! End-to-end tests: the built plugin, the real `docker` CLI, Compose v1 and v2, and a real engine. One test
//! binary (`cargo test --test e2e`), one module per area; `support` is the harness (sandboxes, labels,
//! guards). Run them through `scripts/test.sh`, which provides the engine, the local test images and
//! Compose v2; see docs/testing.md.

#![allow(clippy::unwrap_used)]

mod support;

mod backup;
mod crash;
mod crypt;
mod destinations;
mod destinations_stream;
mod dumps;
mod fastpath;
mod guard;
mod harness;
mod inventory;
mod migrate;
mod notify;
mod plugin;
mod postgres;
mod prune;
mod restore;
mod upgrade;
mod upgrade_pg;
