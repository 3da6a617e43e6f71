//! The Docker CLI plugin protocol: the metadata the CLI asks for, and the socket through which the CLI tells
//! a plugin that it should stop.

use serde::Serialize;

/// The argument the Docker CLI passes to learn about a plugin.
pub const METADATA_ARG: &str = "docker-cli-plugin-metadata";

/// `docker-cli-plugin-metadata` output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Metadata {
    pub schema_version: &'static str,
    pub vendor: &'static str,
    pub version: &'static str,
    pub short_description: &'static str,
    #[serde(rename = "URL")]
    pub url: &'static str,
}

/// This plugin's metadata.
pub const METADATA: Metadata = Metadata {
    schema_version: "0.1.0",
    vendor: "docker-persist",
    version: env!("CARGO_PKG_VERSION"),
    short_description: "Back up, restore and protect Compose volumes by tier",
    url: "https://github.com/docker-persist/docker-persist",
};

/// The metadata JSON, as printed by `docker-persist docker-cli-plugin-metadata` and stored in the repository's
/// `plugin-metadata` file.
pub fn metadata_json() -> String {
    // Serializing a struct of string fields cannot fail.
    serde_json::to_string_pretty(&METADATA).unwrap_or_default()
}

/// The environment variable through which the Docker CLI names its plugin socket.
pub const SOCKET_ENV: &str = "DOCKER_CLI_PLUGIN_SOCKET";

/// Resolves when the user interrupts (SIGINT, SIGTERM) or the Docker CLI closes the plugin socket (which
/// it does when it is itself interrupted or exits). Never resolves otherwise.
///
/// The signal handlers are installed when this is called, not when the future is first polled: a
/// command raced against it (`select!`) may do work in its first poll (a prune of a directory removes
/// files before it ever waits), and a Ctrl-C then must reach this future, not the default handler that
/// ends the process on the spot.
pub fn interrupted() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};

    let sigint = signal(SignalKind::interrupt()).ok();
    let sigterm = signal(SignalKind::terminate()).ok();
    let wait = |s: Option<tokio::signal::unix::Signal>| async move {
        match s {
            Some(mut s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    async move {
        let socket_closed = async {
            match std::env::var(SOCKET_ENV) {
                Ok(name) if !name.is_empty() => wait_for_socket_close(&name).await,
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            () = wait(sigint) => {}
            () = wait(sigterm) => {}
            () = socket_closed => {}
        }
    }
}

/// Connects to the CLI's plugin socket (an abstract unix socket on Linux, named `@name`) and waits for
/// the CLI to close it. When the socket cannot be reached, waits forever: signals still work.
async fn wait_for_socket_close(name: &str) {
    use tokio::io::AsyncReadExt;

    let Some(stream) = connect_plugin_socket(name) else {
        return std::future::pending().await;
    };
    let Ok(mut stream) = tokio::net::UnixStream::from_std(stream) else {
        return std::future::pending().await;
    };
    let mut buf = [0u8; 64];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => continue,
        }
    }
}

#[cfg(target_os = "linux")]
fn connect_plugin_socket(name: &str) -> Option<std::os::unix::net::UnixStream> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixStream};

    let addr = match name.strip_prefix('@') {
        Some(abstract_name) => SocketAddr::from_abstract_name(abstract_name.as_bytes()).ok()?,
        None => SocketAddr::from_pathname(name).ok()?,
    };
    let stream = UnixStream::connect_addr(&addr).ok()?;
    stream.set_nonblocking(true).ok()?;
    Some(stream)
}

#[cfg(not(target_os = "linux"))]
fn connect_plugin_socket(name: &str) -> Option<std::os::unix::net::UnixStream> {
    let stream = std::os::unix::net::UnixStream::connect(name).ok()?;
    stream.set_nonblocking(true).ok()?;
    Some(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_file_matches_the_binary() {
        let file = include_str!("../plugin-metadata");
        assert_eq!(file.trim_end(), metadata_json());
    }

    #[test]
    fn metadata_has_the_fields_docker_reads() {
        let v: serde_json::Value = serde_json::from_str(&metadata_json()).unwrap();
        assert_eq!(v["SchemaVersion"], "0.1.0");
        for k in ["Vendor", "Version", "ShortDescription", "URL"] {
            assert!(v[k].as_str().is_some_and(|s| !s.is_empty()), "{k}");
        }
    }
}
