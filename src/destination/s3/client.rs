//! The `object_store` client of an S3 destination: its endpoint, region and addressing from the URL, and
//! credentials found as the AWS tools find them (the environment, `_FILE` variables, `~/.aws/credentials`
//! and `~/.aws/config` profiles), handed to the client in memory only.

use std::path::{Path, PathBuf};
use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::{ClientOptions, RetryConfig};

use super::BoxError;
use crate::destination::S3Url;

/// Credentials as found, in memory only.
#[derive(Default, Clone, PartialEq, Eq)]
struct Credentials {
    key_id: String,
    secret: String,
    token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials { … }")
    }
}

/// A value of the environment: `NAME`, else the content of the file `NAME_FILE` names (trimmed).
fn env_or_file(
    env: &dyn Fn(&str) -> Option<String>,
    name: &str,
) -> Result<Option<String>, BoxError> {
    if let Some(v) = env(name).filter(|v| !v.is_empty()) {
        return Ok(Some(v));
    }
    let file_var = format!("{name}_FILE");
    match env(&file_var).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(path) => {
            let content = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read `{path}` named by `{file_var}`: {}", e.kind()))?;
            Ok(Some(content.trim().to_string()))
        }
    }
}

/// The sections of an AWS INI file (`[name]` or `[profile name]`) as maps.
fn ini_section(
    content: &str,
    profile: &str,
    config_style: bool,
) -> Option<std::collections::BTreeMap<String, String>> {
    let mut current: Option<bool> = None;
    let mut found = None::<std::collections::BTreeMap<String, String>>;
    for line in content.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let header = header.trim();
            let name = if config_style && header != "default" {
                header.strip_prefix("profile ").map(str::trim)
            } else {
                Some(header)
            };
            let is_it = name == Some(profile);
            current = Some(is_it);
            if is_it && found.is_none() {
                found = Some(Default::default());
            }
            continue;
        }
        if current == Some(true)
            && let Some((k, v)) = line.split_once('=')
            && let Some(map) = found.as_mut()
        {
            map.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    found
}

fn home_file(env: &dyn Fn(&str) -> Option<String>, var: &str, default: &str) -> Option<PathBuf> {
    env(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| Path::new(&h).join(default)))
}

/// What a destination's client is built from: resolved options and credentials.
#[derive(Debug, Default, PartialEq, Eq)]
struct Resolved {
    region: String,
    endpoint: Option<String>,
    path_style: bool,
    credentials: Option<Credentials>,
}

fn resolve(url: &S3Url, env: &dyn Fn(&str) -> Option<String>) -> Result<Resolved, BoxError> {
    // `?profile=` is like the AWS CLI's `--profile`: it wins over keys in the environment; `AWS_PROFILE`
    // does not.
    let explicit_profile = url.profile.clone();
    let profile = explicit_profile
        .clone()
        .or_else(|| env("AWS_PROFILE").filter(|p| !p.is_empty()))
        .unwrap_or_else(|| "default".to_string());
    let config = home_file(env, "AWS_CONFIG_FILE", ".aws/config")
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|c| ini_section(&c, &profile, true))
        .unwrap_or_default();
    let creds_file = home_file(env, "AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials");
    let from_file = creds_file
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|c| ini_section(&c, &profile, false));

    let key_id = env_or_file(env, "AWS_ACCESS_KEY_ID")?;
    let secret = env_or_file(env, "AWS_SECRET_ACCESS_KEY")?;
    let token = env_or_file(env, "AWS_SESSION_TOKEN")?;
    // An explicitly chosen profile wins over the environment's keys, as in the AWS CLI.
    let credentials = match (&explicit_profile, key_id, secret) {
        (None, Some(key_id), Some(secret)) => Some(Credentials {
            key_id,
            secret,
            token,
        }),
        (None, Some(_), None) | (None, None, Some(_)) => {
            return Err("`AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` must be set together (or their `_FILE` variants)".into());
        }
        _ => match from_file.as_ref().or(Some(&config)) {
            Some(section) => match (
                section.get("aws_access_key_id"),
                section.get("aws_secret_access_key"),
            ) {
                (Some(k), Some(s)) => Some(Credentials {
                    key_id: k.clone(),
                    secret: s.clone(),
                    token: section.get("aws_session_token").cloned(),
                }),
                _ => None,
            },
            None => None,
        },
    };
    if credentials.is_none()
        && (explicit_profile.is_some() || env("AWS_PROFILE").is_some_and(|p| !p.is_empty()))
    {
        return Err(format!(
            "profile `{profile}` has no `aws_access_key_id`/`aws_secret_access_key` in `{}`",
            creds_file
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "~/.aws/credentials".into())
        )
        .into());
    }
    let endpoint = url
        .endpoint
        .clone()
        .or_else(|| env("AWS_ENDPOINT_URL_S3").filter(|v| !v.is_empty()))
        .or_else(|| env("AWS_ENDPOINT_URL").filter(|v| !v.is_empty()))
        .or_else(|| config.get("endpoint_url").cloned());
    let region = url
        .region
        .clone()
        .or_else(|| env("AWS_REGION").filter(|v| !v.is_empty()))
        .or_else(|| env("AWS_DEFAULT_REGION").filter(|v| !v.is_empty()))
        .or_else(|| config.get("region").cloned())
        .unwrap_or_else(|| "us-east-1".to_string());
    Ok(Resolved {
        path_style: url.path_style.unwrap_or(endpoint.is_some()),
        region,
        endpoint,
        credentials,
    })
}

pub(super) fn build_store(
    url: &S3Url,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<AmazonS3, BoxError> {
    // reqwest is built without a TLS provider of its own: rustls with ring, as for the engine connection.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let r = resolve(url, env)?;
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(&url.bucket)
        .with_region(&r.region)
        .with_virtual_hosted_style_request(!r.path_style)
        .with_retry(RetryConfig {
            max_retries: 3,
            retry_timeout: Duration::from_secs(30),
            ..RetryConfig::default()
        })
        .with_client_options(
            ClientOptions::new()
                .with_connect_timeout(Duration::from_secs(10))
                .with_timeout(Duration::from_secs(300))
                .with_allow_http(
                    r.endpoint
                        .as_deref()
                        .is_some_and(|e| e.starts_with("http://")),
                ),
        );
    if let Some(e) = &r.endpoint {
        builder = builder.with_endpoint(e);
    }
    match &r.credentials {
        Some(c) => {
            builder = builder
                .with_access_key_id(&c.key_id)
                .with_secret_access_key(&c.secret);
            if let Some(t) = &c.token {
                builder = builder.with_token(t);
            }
        }
        None => {
            let ambient = [
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "AWS_WEB_IDENTITY_TOKEN_FILE",
            ]
            .iter()
            .any(|v| env(v).is_some_and(|x| !x.is_empty()));
            if !ambient {
                return Err("no credentials: set `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (or `AWS_ACCESS_KEY_ID_FILE` and `AWS_SECRET_ACCESS_KEY_FILE`), or `AWS_PROFILE` with `~/.aws/credentials`".into());
            }
            for (var, key) in [
                (
                    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                    object_store::aws::AmazonS3ConfigKey::ContainerCredentialsRelativeUri,
                ),
                (
                    "AWS_WEB_IDENTITY_TOKEN_FILE",
                    object_store::aws::AmazonS3ConfigKey::WebIdentityTokenFile,
                ),
                (
                    "AWS_ROLE_ARN",
                    object_store::aws::AmazonS3ConfigKey::RoleArn,
                ),
            ] {
                if let Some(v) = env(var) {
                    builder = builder.with_config(key, v);
                }
            }
        }
    }
    Ok(builder.build()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn credentials_come_from_env_then_file_variables_then_profiles() {
        let tmp = tempfile::tempdir().unwrap();
        let key_file = tmp.path().join("secret");
        std::fs::write(&key_file, "s3cr3t-from-file\n").unwrap();
        let url = S3Url {
            bucket: "b".into(),
            ..S3Url::default()
        };
        let home = tmp.path().to_str().unwrap();
        let r = resolve(
            &url,
            &env_of(&[
                ("HOME", home),
                ("AWS_ACCESS_KEY_ID", "AKIA1"),
                ("AWS_SECRET_ACCESS_KEY_FILE", key_file.to_str().unwrap()),
            ]),
        )
        .unwrap();
        assert_eq!(r.credentials.unwrap().secret, "s3cr3t-from-file");
        assert_eq!(r.region, "us-east-1");
        assert!(!r.path_style);

        std::fs::create_dir_all(tmp.path().join(".aws")).unwrap();
        std::fs::write(
            tmp.path().join(".aws/credentials"),
            "[default]\naws_access_key_id = D\naws_secret_access_key = DS\n\n[work]\naws_access_key_id=W\naws_secret_access_key=WS\naws_session_token = WT\n",
        )
        .unwrap();
        std::fs::write(
            tmp.path().join(".aws/config"),
            "[profile work]\nregion = eu-west-3\nendpoint_url = http://127.0.0.1:9000\n",
        )
        .unwrap();
        let r = resolve(&url, &env_of(&[("HOME", home)])).unwrap();
        assert_eq!(r.credentials.unwrap().key_id, "D");
        let keys = [
            ("HOME", home),
            ("AWS_PROFILE", "work"),
            ("AWS_ACCESS_KEY_ID", "E"),
            ("AWS_SECRET_ACCESS_KEY", "ES"),
        ];
        // Keys in the environment win over `AWS_PROFILE`, as in the AWS CLI…
        assert_eq!(
            resolve(&url, &env_of(&keys))
                .unwrap()
                .credentials
                .unwrap()
                .key_id,
            "E"
        );
        // …and `?profile=` wins over them.
        let work = S3Url {
            profile: Some("work".into()),
            ..url.clone()
        };
        let r = resolve(&work, &env_of(&keys)).unwrap();
        let c = r.credentials.unwrap();
        assert_eq!((c.key_id.as_str(), c.token.as_deref()), ("W", Some("WT")));
        assert_eq!(r.region, "eu-west-3");
        assert_eq!(r.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(r.path_style);
        let e = resolve(
            &S3Url {
                profile: Some("nope".into()),
                ..url.clone()
            },
            &env_of(&[("HOME", home)]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("`nope`"), "{e}");
    }

    #[test]
    fn errors_about_credentials_never_hold_them() {
        let e = resolve(
            &S3Url::default(),
            &env_of(&[
                ("AWS_ACCESS_KEY_ID", "AKIAVISIBLE"),
                ("AWS_SECRET_ACCESS_KEY_FILE", "/nonexistent/s3cr3t"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(!e.contains("AKIAVISIBLE"), "{e}");
        let e = build_store(
            &S3Url {
                bucket: "b".into(),
                ..S3Url::default()
            },
            &env_of(&[]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("no credentials"), "{e}");
        assert_eq!(
            format!(
                "{:?}",
                Credentials {
                    key_id: "K".into(),
                    secret: "S".into(),
                    token: None
                }
            ),
            "Credentials { … }"
        );
    }
}
