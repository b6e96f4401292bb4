//! THE place a container is hardened. Every container the executor creates
//! gets its body from here, so the profile can be read (and tested) at once.
//! All roles share one profile; the role only decides the few things that
//! must differ, each listed here:
//!
//! | role        | network                     | /deps (cache)  | starts as | capabilities   | PID 1      | env   | egress socket  | channel socket |
//! |-------------|-----------------------------|----------------|-----------|----------------|------------|-------|----------------|----------------|
//! | run         | none                        | read-only, opt | root      | SETUID, SETGID | supervisor | none  | read-only, opt | never          |
//! | per-tool    | none                        | read-only, opt | root      | SETUID, SETGID | supervisor | none  | never          | read-only      |
//! | session     | none, or the session network| read-only      | root      | SETUID, SETGID | tini       | none  | read-only, opt | never          |
//! | install     | the install network         | writable       | sandbox   | none           | tini       | npm's | never          | never          |
//! | deps-setup  | none                        | writable       | root      | none           | tini       | none  | never          | never          |
//!
//! Runs and sessions start as root with SETUID and SETGID only, so that the
//! harness's supervisor can start the code's process as the sandbox user and
//! then drop to that user itself (see `harness/`); the code never holds a
//! capability. In a run, and in a per-tool container (one tool revision's
//! calls, see `per_tool/`), the supervisor is PID 1 and no root process is
//! left once it has dropped. A session keeps tini as root (it reaps what
//! commands leave behind, for the session's whole life) and its idle loop;
//! its commands and JavaScript run as the sandbox user. Docker gives a
//! capability to an exec only when the container runs as root, hence root.
//!
//! A run or session with egress keeps network "none": its only way out is
//! its own proxy socket (`egress/`), in a directory mounted read-only. A
//! per-tool container's calls come and go over its own channel socket
//! (`per_tool/channel.rs`), in a directory of its own, mounted read-only
//! the same way (`socket_dir.rs`).

use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, HostConfig, HostConfigLogConfig, Mount, MountType, MountVolumeOptions};

use super::{ContainerSpec, EgressMount, Role, labels};
use crate::egress::CONTAINER_DIR;
use crate::setting_values::{ByteSize, SandboxUser};

/// Where a run starts: a small writable tmpfs, since the root is read-only.
pub const WORKDIR: &str = "/work";

/// Where the dependency cache volume is mounted.
pub const DEPS_DIR: &str = "/deps";

/// Where a per-tool container finds its channel's socket directory.
pub const CHANNEL_DIR: &str = "/run/dynamic-mcp-channel";

/// Where an install container finds the operator's extra CA bundle.
pub const EXTRA_CA_PATH: &str = "/etc/dynamic-mcp/extra-ca.pem";

/// The capabilities a run or session container keeps: only what the
/// supervisor needs to start the code's process as the sandbox user and to
/// drop to it itself.
const SUPERVISOR_CAPABILITIES: [&str; 2] = ["SETUID", "SETGID"];

/// The limits every container gets, from the executor's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SandboxLimits {
    pub memory: ByteSize,
    pub cpus: f64,
    pub pids: i64,
    /// Never root; checked when the setting is parsed.
    pub user: SandboxUser,
    pub tmpfs: ByteSize,
    pub workdir: ByteSize,
}

impl SandboxLimits {
    pub fn nano_cpus(&self) -> i64 {
        nano_cpus(self.cpus)
    }
}

/// A CPU count as Docker's NanoCpus.
pub fn nano_cpus(cpus: f64) -> i64 {
    (cpus * 1e9).round() as i64
}

/// The create body for `spec`, hardened per `limits`. The command comes from
/// the executor, never from user input; code and args go in over stdin.
pub fn container_body(spec: &ContainerSpec, limits: &SandboxLimits, executor_id: &str) -> ContainerCreateBody {
    let memory = i64::try_from(limits.memory.bytes).unwrap_or(i64::MAX);
    // Both belong to the sandbox user, so code can write to them on any
    // image: Docker would otherwise make a root-owned 755 directory where the
    // image has none. runc 1.1 (Debian's Docker 20.10) keeps the mode of a
    // directory the image already has, but never its owner.
    let scratch = |size: &ByteSize, owner: (u32, u32), mode: &str| {
        format!(
            "rw,noexec,nosuid,nodev,size={},uid={},gid={},mode={mode}",
            size.bytes, owner.0, owner.1
        )
    };
    let sandbox_user = (limits.user.uid, limits.user.gid);
    let network = network_of(spec);
    let host_config = HostConfig {
        readonly_rootfs: Some(true),
        cap_drop: Some(vec!["ALL".into()]),
        cap_add: supervised(spec.role).then(|| SUPERVISOR_CAPABILITIES.map(String::from).to_vec()),
        security_opt: Some(vec!["no-new-privileges".into()]),
        pids_limit: Some(limits.pids),
        // Equal memory and memory+swap: no swap on top of the limit.
        memory: Some(memory),
        memory_swap: Some(memory),
        nano_cpus: Some(spec.nano_cpus.unwrap_or_else(|| limits.nano_cpus())),
        network_mode: Some(network.clone().unwrap_or_else(|| "none".into())),
        ipc_mode: Some("none".into()),
        // tini as PID 1 reaps zombies and passes signals on; a run's PID 1 is
        // the supervisor, so that no root process is left.
        init: Some(!matches!(spec.role, Role::Run | Role::PerTool)),
        tmpfs: Some(HashMap::from([
            ("/tmp".to_owned(), scratch(&limits.tmpfs, sandbox_user, "1777")),
            (WORKDIR.to_owned(), scratch(&limits.workdir, sandbox_user, "0755")),
        ])),
        mounts: Some(mounts(spec)).filter(|m| !m.is_empty()),
        // Output is read over attach; nothing should land on the host's disk.
        log_config: Some(HostConfigLogConfig {
            typ: Some("none".into()),
            config: None,
        }),
        // Removed explicitly by the lease: auto-remove races with reading the exit code.
        auto_remove: Some(false),
        ..Default::default()
    };
    let (entrypoint, cmd) = match spec.command.split_first() {
        Some((program, args)) => (vec![program.clone()], args.to_vec()),
        None => (Vec::new(), Vec::new()),
    };
    let mut all_labels = HashMap::from([
        (labels::MANAGED.to_owned(), "true".to_owned()),
        (labels::EXECUTOR.to_owned(), executor_id.to_owned()),
        (labels::ROLE.to_owned(), spec.role.label().to_owned()),
    ]);
    all_labels.extend(spec.labels.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        // Our own entrypoint: an image's entrypoint script must not run first.
        entrypoint: Some(entrypoint),
        cmd: Some(cmd),
        user: Some(user_of(spec.role, limits)),
        working_dir: Some(WORKDIR.into()),
        env: Some(if spec.role == Role::Install {
            spec.install_env.clone()
        } else {
            Vec::new()
        }),
        attach_stdin: Some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        open_stdin: Some(true),
        // stdin closes for good when our attach stream closes it.
        stdin_once: Some(true),
        tty: Some(false),
        // With network_mode "none" as well, Docker skips libnetwork (~90 ms per container).
        network_disabled: Some(network.is_none()),
        labels: Some(all_labels),
        host_config: Some(host_config),
        ..Default::default()
    }
}

/// Runs and the cache setup never get a network. Sessions get one only when
/// the operator named one (MCP_SANDBOX_SESSION_NETWORK); installs need one.
fn network_of(spec: &ContainerSpec) -> Option<String> {
    match spec.role {
        Role::Session | Role::Install => spec.network.clone().filter(|n| !n.is_empty() && n != "none"),
        Role::Run | Role::PerTool | Role::DepsSetup => None,
    }
}

/// Runs and sessions start as root for the supervisor (which keeps only
/// SETUID and SETGID, and runs the code as the sandbox user). The cache
/// setup runs as root without any capability or network, for one fixed
/// `chmod` on the fresh cache volume (root-owned when Docker creates it)
/// so installs can write to it. Installs run as the sandbox user.
fn user_of(role: Role, limits: &SandboxLimits) -> String {
    match role {
        Role::Run | Role::PerTool | Role::Session | Role::DepsSetup => "0:0".into(),
        Role::Install => limits.user.to_string(),
    }
}

/// The roles whose JavaScript goes through the harness's supervisor.
fn supervised(role: Role) -> bool {
    matches!(role, Role::Run | Role::PerTool | Role::Session)
}

/// The dependency cache (read-only except for the two roles that fill it),
/// for installs only the operator's CA bundle, for runs and sessions with
/// egress their egress directory, and for per-tool containers their
/// channel's directory — all but the cache read-only.
fn mounts(spec: &ContainerSpec) -> Vec<Mount> {
    let mut mounts = Vec::new();
    if let Some(volume) = &spec.deps_volume {
        mounts.push(Mount {
            target: Some(DEPS_DIR.into()),
            source: Some(volume.clone()),
            typ: Some(MountType::VOLUME),
            read_only: Some(!matches!(spec.role, Role::Install | Role::DepsSetup)),
            // Never copy image files into the cache.
            volume_options: Some(MountVolumeOptions {
                no_copy: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    if let (Role::Install, Some(ca)) = (spec.role, &spec.extra_ca_file) {
        mounts.push(read_only_bind(EXTRA_CA_PATH, ca));
    }
    if let (Role::Run | Role::Session, EgressMount::At(dir)) = (spec.role, &spec.egress) {
        mounts.push(read_only_bind(CONTAINER_DIR, dir));
    }
    if let (Role::PerTool, Some(dir)) = (spec.role, &spec.channel) {
        mounts.push(read_only_bind(CHANNEL_DIR, dir));
    }
    mounts
}

/// A host path bound read-only at `target` in the container.
fn read_only_bind(target: &str, source: &str) -> Mount {
    Mount {
        target: Some(target.into()),
        source: Some(source.into()),
        typ: Some(MountType::BIND),
        read_only: Some(true),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> SandboxLimits {
        SandboxLimits {
            memory: "512m".parse().unwrap(),
            cpus: 1.5,
            pids: 128,
            user: "65534:65534".parse().unwrap(),
            tmpfs: "16m".parse().unwrap(),
            workdir: "8m".parse().unwrap(),
        }
    }

    fn spec(role: Role) -> ContainerSpec {
        let mut spec = ContainerSpec::new(
            role,
            "dynamic-mcp-sandbox:latest",
            vec!["node".into(), "-e".into(), "1".into()],
        )
        .label(labels::TOOL, "text.upper");
        spec.deps_volume = Some("dynamic-mcp-deps".into());
        spec.network = Some("bridge".into());
        spec.install_env = vec!["npm_config_registry=https://r.example".into()];
        spec.extra_ca_file = Some("/etc/ssl/ca.pem".into());
        spec
    }

    #[test]
    fn runs_and_sessions_with_egress_get_their_socket_read_only_and_still_no_network() {
        for role in [Role::Run, Role::PerTool, Role::Session, Role::Install, Role::DepsSetup] {
            let mut spec = spec(role);
            spec.network = None;
            spec.egress = EgressMount::At("/tmp/dynamic-mcp-egress/x/run1".into());
            let body = container_body(&spec, &limits(), "exec-1");
            let egress = body
                .host_config
                .as_ref()
                .and_then(|h| h.mounts.as_ref())
                .and_then(|m| m.iter().find(|m| m.target.as_deref() == Some(CONTAINER_DIR)).cloned());
            match role {
                Role::Run | Role::Session => {
                    let egress = egress.expect("the egress directory is mounted");
                    assert_eq!(egress.source.as_deref(), Some("/tmp/dynamic-mcp-egress/x/run1"));
                    assert_eq!((egress.typ, egress.read_only), (Some(MountType::BIND), Some(true)));
                    assert_eq!(body.network_disabled, Some(true), "{role:?}");
                    assert_eq!(body.host_config.unwrap().network_mode.as_deref(), Some("none"));
                }
                Role::PerTool | Role::Install | Role::DepsSetup => assert!(egress.is_none(), "{role:?}"),
            }
        }
    }

    #[test]
    fn only_per_tool_containers_get_their_channel_read_only_and_still_no_network() {
        for role in [Role::Run, Role::PerTool, Role::Session, Role::Install, Role::DepsSetup] {
            let mut spec = spec(role);
            spec.network = None;
            spec.channel = Some("/tmp/dynamic-mcp-egress/x/tool1".into());
            let body = container_body(&spec, &limits(), "exec-1");
            let channel = body
                .host_config
                .as_ref()
                .and_then(|h| h.mounts.as_ref())
                .and_then(|m| m.iter().find(|m| m.target.as_deref() == Some(CHANNEL_DIR)).cloned());
            match role {
                Role::PerTool => {
                    let channel = channel.expect("the channel directory is mounted");
                    assert_eq!(channel.source.as_deref(), Some("/tmp/dynamic-mcp-egress/x/tool1"));
                    assert_eq!((channel.typ, channel.read_only), (Some(MountType::BIND), Some(true)));
                    assert_eq!(body.network_disabled, Some(true));
                    let host = body.host_config.unwrap();
                    assert_eq!(host.network_mode.as_deref(), Some("none"));
                    assert_eq!(host.readonly_rootfs, Some(true));
                    assert_eq!(host.cap_drop, Some(vec!["ALL".to_owned()]));
                }
                _ => assert!(channel.is_none(), "{role:?}"),
            }
        }
    }

    fn body() -> ContainerCreateBody {
        container_body(
            &ContainerSpec::new(
                Role::Run,
                "dynamic-mcp-sandbox:latest",
                vec!["node".into(), "-e".into(), "1".into()],
            )
            .label(labels::TOOL, "text.upper"),
            &limits(),
            "exec-1",
        )
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
        assert_eq!(host.init, Some(false), "a run's PID 1 is the supervisor");
        assert_eq!(host.auto_remove, Some(false));
        assert_eq!(host.log_config.unwrap().typ.as_deref(), Some("none"));
        assert_eq!(host.cap_add, Some(vec!["SETUID".to_owned(), "SETGID".to_owned()]));
        assert!(host.privileged.is_none() && host.binds.is_none() && host.mounts.is_none());
        let tmpfs = host.tmpfs.unwrap();
        assert_eq!(
            tmpfs["/tmp"],
            format!("rw,noexec,nosuid,nodev,size={},uid=65534,gid=65534,mode=1777", 16 << 20)
        );
        assert_eq!(
            tmpfs["/work"],
            format!("rw,noexec,nosuid,nodev,size={},uid=65534,gid=65534,mode=0755", 8 << 20)
        );
    }

    #[test]
    fn a_run_starts_our_command_as_root_for_the_supervisor_without_network_or_env() {
        let body = body();
        assert_eq!(body.image.as_deref(), Some("dynamic-mcp-sandbox:latest"));
        assert_eq!(body.entrypoint, Some(vec!["node".to_owned()]));
        assert_eq!(body.cmd, Some(vec!["-e".to_owned(), "1".to_owned()]));
        assert_eq!(body.user.as_deref(), Some("0:0"));
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

    #[test]
    fn runs_get_the_cache_read_only_and_never_a_network_env_or_ca() {
        let body = container_body(&spec(Role::Run), &limits(), "exec-1");
        let host = body.host_config.unwrap();
        assert_eq!(host.network_mode.as_deref(), Some("none"));
        assert_eq!(body.network_disabled, Some(true));
        assert_eq!(body.env, Some(Vec::new()));
        let mounts = host.mounts.unwrap();
        assert_eq!(mounts.len(), 1, "only the cache: {mounts:?}");
        assert_eq!(mounts[0].target.as_deref(), Some("/deps"));
        assert_eq!(mounts[0].typ, Some(MountType::VOLUME));
        assert_eq!(mounts[0].read_only, Some(true));
    }

    #[test]
    fn sessions_join_only_a_named_network_and_read_the_cache() {
        let body = container_body(&spec(Role::Session), &limits(), "exec-1");
        assert_eq!(
            body.host_config.as_ref().unwrap().network_mode.as_deref(),
            Some("bridge")
        );
        assert_eq!(body.network_disabled, Some(false));
        assert_eq!(body.env, Some(Vec::new()));
        assert_eq!(body.user.as_deref(), Some("0:0"));
        let host = body.host_config.clone().unwrap();
        assert_eq!(host.cap_add, Some(vec!["SETUID".to_owned(), "SETGID".to_owned()]));
        assert_eq!(host.init, Some(true), "tini reaps what session commands leave behind");
        let mounts = body.host_config.unwrap().mounts.unwrap();
        assert!(mounts.iter().all(|m| m.read_only == Some(true)), "{mounts:?}");
        assert_eq!(mounts.len(), 1);

        let mut unnetworked = spec(Role::Session);
        unnetworked.network = None;
        let body = container_body(&unnetworked, &limits(), "exec-1");
        assert_eq!(body.host_config.unwrap().network_mode.as_deref(), Some("none"));
        assert_eq!(body.network_disabled, Some(true));
    }

    #[test]
    fn installs_get_network_env_a_writable_cache_and_a_read_only_ca() {
        let body = container_body(&spec(Role::Install), &limits(), "exec-1");
        assert_eq!(body.user.as_deref(), Some("65534:65534"));
        assert_eq!(body.env, Some(vec!["npm_config_registry=https://r.example".to_owned()]));
        let host = body.host_config.unwrap();
        assert_eq!(host.network_mode.as_deref(), Some("bridge"));
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_owned()]));
        assert_eq!(host.cap_add, None);
        assert_eq!(host.readonly_rootfs, Some(true));
        let mounts = host.mounts.unwrap();
        let deps = mounts.iter().find(|m| m.target.as_deref() == Some("/deps")).unwrap();
        assert_eq!(deps.read_only, Some(false));
        let ca = mounts
            .iter()
            .find(|m| m.target.as_deref() == Some(EXTRA_CA_PATH))
            .unwrap();
        assert_eq!((ca.typ, ca.read_only), (Some(MountType::BIND), Some(true)));
    }

    #[test]
    fn the_cache_setup_is_root_without_any_capability() {
        let body = container_body(&spec(Role::DepsSetup), &limits(), "exec-1");
        assert_eq!(body.user.as_deref(), Some("0:0"));
        assert_eq!(body.env, Some(Vec::new()));
        assert_eq!(body.network_disabled, Some(true));
        let host = body.host_config.unwrap();
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_owned()]));
        assert_eq!(host.cap_add, None);
        assert_eq!(host.security_opt, Some(vec!["no-new-privileges".to_owned()]));
        assert_eq!(host.mounts.unwrap().len(), 1, "no CA for the setup");
    }

    #[test]
    fn only_supervised_roles_keep_setuid_and_setgid_and_installs_never_start_as_root() {
        for role in [Role::Run, Role::PerTool, Role::Session, Role::Install, Role::DepsSetup] {
            let body = container_body(&spec(role), &limits(), "x");
            let host = body.host_config.unwrap();
            assert_eq!(host.cap_drop, Some(vec!["ALL".to_owned()]), "{role:?}");
            assert_eq!(
                host.security_opt,
                Some(vec!["no-new-privileges".to_owned()]),
                "{role:?}"
            );
            assert_eq!(
                host.cap_add.is_some(),
                matches!(role, Role::Run | Role::PerTool | Role::Session),
                "{role:?}"
            );
        }
        let install = container_body(&spec(Role::Install), &limits(), "x");
        assert_eq!(install.user.as_deref(), Some("65534:65534"));
    }
}
