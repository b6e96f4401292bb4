//! THE place a container is hardened. Every container the executor creates
//! gets its body from here, so the profile can be read (and tested) at once.

use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, HostConfig, HostConfigLogConfig};

use super::{ContainerSpec, labels};
use crate::config::ByteSize;

/// Where a run starts: a small writable tmpfs, since the root is read-only.
pub const WORKDIR: &str = "/work";

/// The limits every container gets, from the executor's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SandboxLimits {
    pub memory: ByteSize,
    pub cpus: f64,
    pub pids: i64,
    /// Never root; checked when the setting is parsed.
    pub user: String,
    pub tmpfs: ByteSize,
    pub workdir: ByteSize,
}

impl SandboxLimits {
    pub fn nano_cpus(&self) -> i64 {
        (self.cpus * 1e9).round() as i64
    }
}

/// The create body for a container running `command`, hardened per `limits`.
/// The command comes from the executor (the harness), never from user input,
/// and no environment is passed: code and args go in over stdin.
pub fn container_body(
    spec: &ContainerSpec,
    limits: &SandboxLimits,
    executor_id: &str,
    command: Vec<String>,
) -> ContainerCreateBody {
    let memory = i64::try_from(limits.memory.bytes).unwrap_or(i64::MAX);
    let scratch = |size: &ByteSize| format!("rw,noexec,nosuid,nodev,size={}", size.bytes);
    let host_config = HostConfig {
        readonly_rootfs: Some(true),
        cap_drop: Some(vec!["ALL".into()]),
        security_opt: Some(vec!["no-new-privileges".into()]),
        pids_limit: Some(limits.pids),
        // Equal memory and memory+swap: no swap on top of the limit.
        memory: Some(memory),
        memory_swap: Some(memory),
        nano_cpus: Some(limits.nano_cpus()),
        network_mode: Some("none".into()),
        ipc_mode: Some("none".into()),
        // tini as PID 1 reaps zombies and passes signals on to node.
        init: Some(true),
        tmpfs: Some(HashMap::from([
            ("/tmp".to_owned(), scratch(&limits.tmpfs)),
            (WORKDIR.to_owned(), scratch(&limits.workdir)),
        ])),
        // Output is read over attach; nothing should land on the host's disk.
        log_config: Some(HostConfigLogConfig {
            typ: Some("none".into()),
            config: None,
        }),
        // Removed explicitly by the lease: auto-remove races with reading the exit code.
        auto_remove: Some(false),
        ..Default::default()
    };
    let (entrypoint, cmd) = match command.split_first() {
        Some((program, args)) => (vec![program.clone()], args.to_vec()),
        None => (Vec::new(), Vec::new()),
    };
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        // Our own entrypoint: an image's entrypoint script must not run first.
        entrypoint: Some(entrypoint),
        cmd: Some(cmd),
        user: Some(limits.user.clone()),
        working_dir: Some(WORKDIR.into()),
        env: Some(Vec::new()),
        attach_stdin: Some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        open_stdin: Some(true),
        // stdin closes for good when our attach stream closes it.
        stdin_once: Some(true),
        tty: Some(false),
        // With network_mode "none" as well, Docker skips libnetwork (~90 ms per container).
        network_disabled: Some(true),
        labels: Some(HashMap::from([
            (labels::MANAGED.to_owned(), "true".to_owned()),
            (labels::EXECUTOR.to_owned(), executor_id.to_owned()),
            (labels::ROLE.to_owned(), spec.role.label().to_owned()),
            (labels::TOOL.to_owned(), spec.tool_name.clone()),
        ])),
        host_config: Some(host_config),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::Role;

    fn body() -> ContainerCreateBody {
        let limits = SandboxLimits {
            memory: "512m".parse().unwrap(),
            cpus: 1.5,
            pids: 128,
            user: "65534:65534".into(),
            tmpfs: "16m".parse().unwrap(),
            workdir: "8m".parse().unwrap(),
        };
        let spec = ContainerSpec {
            role: Role::Run,
            image: "dynamic-mcp-sandbox:latest".into(),
            tool_name: "text.upper".into(),
        };
        container_body(&spec, &limits, "exec-1", vec!["node".into(), "-e".into(), "1".into()])
    }

    #[test]
    fn host_config_has_every_restriction() {
        let host = body().host_config.unwrap();
        assert_eq!(host.readonly_rootfs, Some(true));
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_owned()]));
        assert_eq!(host.security_opt, Some(vec!["no-new-privileges".to_owned()]));
        assert_eq!(host.pids_limit, Some(128));
        assert_eq!(host.memory, Some(512 << 20));
        assert_eq!(host.memory_swap, Some(512 << 20));
        assert_eq!(host.nano_cpus, Some(1_500_000_000));
        assert_eq!(host.network_mode.as_deref(), Some("none"));
        assert_eq!(host.ipc_mode.as_deref(), Some("none"));
        assert_eq!(host.init, Some(true));
        assert_eq!(host.auto_remove, Some(false));
        assert_eq!(host.log_config.unwrap().typ.as_deref(), Some("none"));
        assert!(host.privileged.is_none() && host.cap_add.is_none() && host.binds.is_none() && host.mounts.is_none());
        let tmpfs = host.tmpfs.unwrap();
        assert_eq!(tmpfs["/tmp"], format!("rw,noexec,nosuid,nodev,size={}", 16 << 20));
        assert_eq!(tmpfs["/work"], format!("rw,noexec,nosuid,nodev,size={}", 8 << 20));
    }

    #[test]
    fn container_runs_our_command_as_non_root_without_network_or_env() {
        let body = body();
        assert_eq!(body.image.as_deref(), Some("dynamic-mcp-sandbox:latest"));
        assert_eq!(body.entrypoint, Some(vec!["node".to_owned()]));
        assert_eq!(body.cmd, Some(vec!["-e".to_owned(), "1".to_owned()]));
        assert_eq!(body.user.as_deref(), Some("65534:65534"));
        assert_eq!(body.working_dir.as_deref(), Some("/work"));
        assert_eq!(body.env, Some(Vec::new()));
        assert_eq!(body.network_disabled, Some(true));
        assert_eq!(
            (body.open_stdin, body.stdin_once, body.tty, body.attach_stdin),
            (Some(true), Some(true), Some(false), Some(true))
        );
    }

    #[test]
    fn labels_name_owner_role_and_tool() {
        let labels = body().labels.unwrap();
        assert_eq!(labels["dynamic-mcp.managed"], "true");
        assert_eq!(labels["dynamic-mcp.executor"], "exec-1");
        assert_eq!(labels["dynamic-mcp.role"], "run");
        assert_eq!(labels["dynamic-mcp.tool"], "text.upper");
    }
}
