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
