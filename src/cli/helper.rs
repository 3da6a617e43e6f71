//! The command line of a fast-path helper, the program run again inside a container:
//! `docker-persist __helper OP …`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::archive::DigestVersion;

/// The first argument that runs this program as a fast-path helper inside a container (never shown in
/// `--help`: only docker persist itself starts helpers).
pub const HELPER_ARG: &str = "__helper";

/// What a fast-path helper does, inside its container: `docker-persist __helper OP …`.
#[derive(Debug, Parser)]
#[command(name = "docker-persist __helper", no_binary_name = true)]
pub struct HelperCli {
    #[command(subcommand)]
    pub op: HelperOp,
}

#[derive(Debug, Subcommand)]
pub enum HelperOp {
    /// Write the tar of `--root` to the socket
    Pack(HelperArgs),
    /// Unpack the tar read from the socket into `--root`, then digest what is on disk
    Unpack(HelperArgs),
    /// Remove everything below `--root` (not `--root` itself)
    Clear(HelperArgs),
}

impl HelperOp {
    pub fn args(&self) -> &HelperArgs {
        match self {
            HelperOp::Pack(a) | HelperOp::Unpack(a) | HelperOp::Clear(a) => a,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct HelperArgs {
    /// The unix socket docker persist listens on
    #[arg(long, value_name = "PATH")]
    pub socket: PathBuf,
    /// Sent first on the socket: tells docker persist which helper connected
    #[arg(long, value_name = "HEX")]
    pub nonce: String,
    /// Where the report (JSON) goes
    #[arg(long, value_name = "PATH")]
    pub result: PathBuf,
    /// The tree to pack or unpack into
    #[arg(long, value_name = "DIR")]
    pub root: PathBuf,
    /// Entries of the tar to unpack lie under this directory
    #[arg(long, value_name = "DIR")]
    pub strip_prefix: Option<String>,
    /// The version of the content digest to compute after unpacking: the version of the digest it is
    /// compared with
    #[arg(long, value_name = "v1|v2", default_value = "v2")]
    pub digest: DigestVersion,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helper_arguments_parse_without_a_binary_name() {
        let cli = HelperCli::try_parse_from([
            "unpack",
            "--socket",
            "/io/s",
            "--nonce",
            "ab",
            "--result",
            "/io/r.json",
            "--root",
            "/data",
            "--strip-prefix",
            "data",
            "--digest",
            "v1",
        ])
        .unwrap();
        assert!(matches!(cli.op, HelperOp::Unpack(_)));
        assert_eq!(cli.op.args().strip_prefix.as_deref(), Some("data"));
        assert_eq!(cli.op.args().root, PathBuf::from("/data"));
        assert_eq!(cli.op.args().digest, DigestVersion::V1);
    }

    #[test]
    fn helper_digests_the_current_version_unless_told() {
        let cli = HelperCli::try_parse_from([
            "unpack", "--socket", "/io/s", "--nonce", "ab", "--result", "/r", "--root", "/data",
        ])
        .unwrap();
        assert_eq!(cli.op.args().digest, DigestVersion::V2);
        assert!(
            HelperCli::try_parse_from([
                "unpack", "--socket", "/s", "--nonce", "ab", "--result", "/r", "--root", "/d",
                "--digest", "v3",
            ])
            .is_err()
        );
    }
}
