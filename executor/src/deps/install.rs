//! One `npm install` in its own hardened container: the only container that
//! reaches a network by default, and the only one that writes to the cache.
//! npm runs with `--ignore-scripts`, so no package code runs at install time.

use std::time::Duration;

use crate::container::hardening::EXTRA_CA_PATH;
use crate::container::lease::Lease;
use crate::container::source::ContainerSource;
use crate::container::{ContainerSpec, Role, labels};
use crate::error::ExecError;
use crate::output::{CappedBuffer, TailBuffer};
use crate::streams::{collect, feed};

use super::key::DepsKey;

/// The install script (see install.sh), run with `sh -c`.
const SCRIPT: &str = include_str!("install.sh");

/// install.sh's exit code when the registry cannot be reached at all.
const REGISTRY_UNREACHABLE: i64 = 69;
/// Where npm installs from unless MCP_SANDBOX_NPM_REGISTRY says otherwise.
const DEFAULT_NPM_REGISTRY: &str = "https://registry.npmjs.org/";

/// npm's error summary is at the end of its output.
const STDERR_TAIL_BYTES: usize = 16 * 1024;
const SUMMARY_MAX_LINES: usize = 15;
const SUMMARY_MAX_CHARS: usize = 2000;

/// How installs reach the registry; from the executor's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallSettings {
    /// The Docker volume holding every installed set.
    pub volume: String,
    /// The Docker network installs join (e.g. `bridge`).
    pub network: String,
    /// npm's registry URL; `None` for npm's default.
    pub registry: Option<String>,
    /// A CA bundle on the Docker host, for TLS-intercepting proxies.
    pub extra_ca_file: Option<String>,
    pub timeout: Duration,
}

impl InstallSettings {
    /// npm's settings go in through its environment, to this container only:
    /// runs never get them (NODE_EXTRA_CA_CERTS alone costs ~55 ms per start).
    fn env(&self) -> Vec<String> {
        let mut env = vec![
            "HOME=/tmp".to_owned(),
            "npm_config_ignore_scripts=true".to_owned(),
            "npm_config_update_notifier=false".to_owned(),
            "npm_config_fund=false".to_owned(),
            "npm_config_audit=false".to_owned(),
            // The registry answered a ping just before: retry briefly, not for minutes.
            "npm_config_fetch_retries=2".to_owned(),
            "npm_config_fetch_retry_mintimeout=2000".to_owned(),
            "npm_config_fetch_retry_maxtimeout=10000".to_owned(),
        ];
        if let Some(registry) = &self.registry {
            env.push(format!("npm_config_registry={registry}"));
        }
        if self.extra_ca_file.is_some() {
            env.push(format!("NODE_EXTRA_CA_CERTS={EXTRA_CA_PATH}"));
            env.push(format!("npm_config_cafile={EXTRA_CA_PATH}"));
        }
        env
    }
}

/// Installs `manifest` as the set `key` in `image`. Returns true when the set
/// was already there (another executor or an earlier life of this one put
/// it there). Dropping the future removes the container.
pub async fn install(
    source: &dyn ContainerSource,
    settings: &InstallSettings,
    image: &str,
    key: &DepsKey,
    manifest: Vec<u8>,
) -> Result<bool, ExecError> {
    let nonce = format!("{:016x}", rand::random::<u64>());
    let mut spec = ContainerSpec::new(
        Role::Install,
        image,
        ["sh", "-c", SCRIPT, "sh", key.as_str(), &nonce]
            .map(String::from)
            .to_vec(),
    )
    .label(labels::DEPS_KEY, key.as_str());
    spec.deps_volume = Some(settings.volume.clone());
    spec.network = Some(settings.network.clone());
    spec.install_env = settings.env();
    spec.extra_ca_file = settings.extra_ca_file.clone();

    let Lease {
        container,
        stdin,
        output,
        ..
    } = source.acquire(&spec).await?;
    let mut stdout = CappedBuffer::new(1024);
    let mut stderr = TailBuffer::new(STDERR_TAIL_BYTES);
    let finished = tokio::time::timeout(settings.timeout, async {
        tokio::join!(feed(stdin, manifest), collect(output, &mut stdout, &mut stderr));
        container.wait_exit().await
    })
    .await;
    match finished {
        Err(_elapsed) => {
            if let Err(e) = container.kill().await {
                tracing::warn!(error = %e, "cannot kill a timed-out install; removing it instead");
            }
            Err(ExecError::InstallTimedOut {
                seconds: settings.timeout.as_secs(),
            })
        }
        Ok(exit) => match exit? {
            0 => Ok(stdout.to_text().trim() == "present"),
            REGISTRY_UNREACHABLE => Err(ExecError::RegistryUnreachable {
                registry: redact(settings.registry.as_deref().unwrap_or(DEFAULT_NPM_REGISTRY)),
                network: settings.network.clone(),
                cause: unreachable_cause(&stderr.to_text()),
            }),
            code => Err(ExecError::InstallFailed {
                code,
                summary: summarize(&stderr.to_text()),
            }),
        },
    }
}

/// The end of npm's output, without the pointer to its (discarded) log file
/// and without credentials that a registry URL may carry.
fn summarize(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty() && !l.contains("A complete log of this run can be found in"))
        .collect();
    let errors: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("npm error") || l.starts_with("npm ERR!"))
        .collect();
    let chosen = if errors.is_empty() { lines } else { errors };
    let tail = &chosen[chosen.len().saturating_sub(SUMMARY_MAX_LINES)..];
    let summary = redact(&tail.join("\n"));
    if summary.is_empty() {
        return "npm printed nothing".into();
    }
    match summary.char_indices().nth(SUMMARY_MAX_CHARS) {
        Some((cut, _)) => format!("{}…", &summary[..cut]),
        None => summary,
    }
}

/// Why npm could not reach the registry: its error code and the failed
/// request's reason, without the stack trace.
fn unreachable_cause(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim_end)
        .filter(|l| l.starts_with("npm error code ") || l.contains(" failed, reason: "))
        .collect();
    if lines.is_empty() {
        return summarize(stderr);
    }
    redact(&lines.join("\n"))
}

/// `scheme://user:secret@host` → `scheme://***@host`; `_authToken=x` → `_authToken=***`.
fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let authority_end = tail
            .find(|c: char| c == '/' || c.is_whitespace() || c == '"' || c == '\'')
            .unwrap_or(tail.len());
        match tail[..authority_end].rfind('@') {
            Some(user_end) => {
                out.push_str("***");
                rest = &tail[user_end..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    match out.find("_authToken=") {
        Some(at) => {
            let value_start = at + "_authToken=".len();
            let value_end = out[value_start..]
                .find(char::is_whitespace)
                .map_or(out.len(), |e| value_start + e);
            out.replace_range(value_start..value_end, "***");
            out
        }
        None => out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_keeps_npm_errors_without_the_log_pointer() {
        let stderr = "npm warn deprecated x@1: old\n\
                      npm error code ETARGET\n\
                      npm error notarget No matching version found for is-number@^99.0.0.\n\
                      npm error A complete log of this run can be found in: /deps/.partial-k-n/.npm-cache/_logs/x.log\n";
        assert_eq!(
            summarize(stderr),
            "npm error code ETARGET\nnpm error notarget No matching version found for is-number@^99.0.0."
        );
        assert_eq!(summarize("sh: npm: not found\n"), "sh: npm: not found");
        assert_eq!(summarize(""), "npm printed nothing");
        let long = "npm error x\n".repeat(100);
        assert_eq!(summarize(&long).lines().count(), SUMMARY_MAX_LINES);
    }

    #[test]
    fn an_unreachable_registry_is_summed_up_without_the_stack_trace() {
        let stderr = "npm notice PING http://127.0.0.1:9/\n\
                      npm error code ECONNREFUSED\n\
                      npm error syscall connect\n\
                      npm error FetchError: request to http://u:p@127.0.0.1:9/-/ping failed, reason: connect ECONNREFUSED\n\
                      npm error     at ClientRequest.<anonymous> (/usr/lib/node_modules/npm/x.js:130:14)\n";
        assert_eq!(
            unreachable_cause(stderr),
            "npm error code ECONNREFUSED\nnpm error FetchError: request to http://***@127.0.0.1:9/-/ping failed, \
             reason: connect ECONNREFUSED"
        );
        assert_eq!(unreachable_cause("odd\n"), "odd");
    }

    #[test]
    fn credentials_are_redacted() {
        assert_eq!(
            redact("npm error 401 https://bob:hunter2@registry.example/x and http://plain.example/y"),
            "npm error 401 https://***@registry.example/x and http://plain.example/y"
        );
        assert_eq!(
            redact("//registry.example/:_authToken=abc123 rest"),
            "//registry.example/:_authToken=*** rest"
        );
    }

    #[test]
    fn npm_settings_reach_only_what_is_configured() {
        let mut settings = InstallSettings {
            volume: "v".into(),
            network: "bridge".into(),
            registry: None,
            extra_ca_file: None,
            timeout: Duration::from_secs(1),
        };
        let env = settings.env();
        assert!(env.contains(&"npm_config_ignore_scripts=true".to_owned()));
        assert!(
            !env.iter()
                .any(|e| e.starts_with("NODE_EXTRA_CA_CERTS") || e.contains("registry"))
        );
        settings.registry = Some("https://npm.example/".into());
        settings.extra_ca_file = Some("/etc/ssl/certs/ca-certificates.crt".into());
        let env = settings.env();
        assert!(env.contains(&"npm_config_registry=https://npm.example/".to_owned()));
        assert!(env.contains(&format!("NODE_EXTRA_CA_CERTS={EXTRA_CA_PATH}")));
        assert!(env.contains(&format!("npm_config_cafile={EXTRA_CA_PATH}")));
    }
}
