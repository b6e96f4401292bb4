//! A throwaway PostgreSQL cluster for one test: `initdb` into a temp dir, a
//! server on a free port of 127.0.0.1 (its Unix socket stays in the temp
//! dir), a database `tools` and a role `registry` holding only the rights
//! the registry documents. Stopped and deleted when dropped.
//!
//! PostgreSQL refuses to run as root, so as root the server runs as the
//! `postgres` system user (the Debian packages create it).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sqlx::{Connection, Executor, PgConnection};

pub const DATABASE: &str = "tools";
pub const REGISTRY_ROLE: &str = "registry";
/// Distinctive, so a test can look for it in logs.
pub const REGISTRY_PASSWORD: &str = "Reg1stry-pw-Zq7";
const ADMIN_PASSWORD: &str = "admin-pw-Kx2";
const RUN_AS: &str = "postgres";

pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    run_as_postgres: bool,
}

impl PgCluster {
    /// A running cluster; without the PostgreSQL server binaries the test
    /// fails, saying so: a missing server is never a pass.
    pub async fn start() -> Self {
        let Some(bin) = server_binaries() else {
            panic!(
                "these tests need the PostgreSQL server binaries (initdb, pg_ctl) on PATH or in \
                 /usr/lib/postgresql/*/bin: install postgresql-15 (DYNAMIC_MCP_SETUP_TESTS=1 scripts/setup.sh does)"
            );
        };
        let run_as_postgres = fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
        let dir = tempfile::Builder::new().prefix("dmcp-pg").tempdir().unwrap();
        let password_file = dir.path().join("admin.pw");
        fs::write(&password_file, ADMIN_PASSWORD).unwrap();
        if run_as_postgres {
            let (uid, gid) = (id(&["-u", RUN_AS]), id(&["-g", RUN_AS]));
            for path in [dir.path(), &password_file] {
                std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
            }
        }
        let mut cluster = Self {
            dir,
            bin,
            port: 0,
            run_as_postgres,
        };
        cluster.run(
            "initdb",
            &[
                "-D",
                &cluster.data_dir(),
                "-U",
                "postgres",
                "--auth=scram-sha-256",
                &format!("--pwfile={}", password_file.display()),
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        // A free port can be taken between the probe and the bind: try a few.
        for _ in 0..5 {
            cluster.port = free_port();
            if cluster.try_start_server() {
                cluster.create_database_and_role().await;
                return cluster;
            }
        }
        panic!("PostgreSQL did not start; its log:\n{}", cluster.log());
    }

    /// The registry's URL: its own role, over TCP, with a password.
    pub fn registry_url(&self) -> String {
        self.url(REGISTRY_ROLE, REGISTRY_PASSWORD)
    }

    pub fn url(&self, role: &str, password: &str) -> String {
        format!("postgres://{role}:{password}@127.0.0.1:{}/{DATABASE}", self.port)
    }

    /// A superuser connection to the `tools` database.
    pub async fn admin(&self) -> PgConnection {
        PgConnection::connect(&self.url("postgres", ADMIN_PASSWORD))
            .await
            .unwrap()
    }

    /// Runs setup SQL (one or more statements) as the superuser in `tools`.
    pub async fn admin_sql(&self, sql: &'static str) {
        self.admin().await.execute(sqlx::raw_sql(sql)).await.unwrap();
    }

    /// Stops the server the hard way, as a crash would.
    pub fn stop(&self) {
        self.run("pg_ctl", &["-D", &self.data_dir(), "-m", "immediate", "-w", "stop"]);
    }

    /// Starts the server again on the same port and data.
    pub fn start_again(&self) {
        assert!(
            self.try_start_server(),
            "PostgreSQL did not restart; its log:\n{}",
            self.log()
        );
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn try_start_server(&self) -> bool {
        // fsync=off: a commit is still written to the OS before it is
        // acknowledged, so killing the server loses nothing; only a machine
        // crash would, and the tests do not crash machines. It keeps the tests
        // fast on a busy disk.
        let options = format!(
            "-c port={} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log");
        self.output(
            "pg_ctl",
            &[
                "-D",
                &self.data_dir(),
                "-l",
                &log.display().to_string(),
                "-o",
                &options,
                "-w",
                "-t",
                "30",
                "start",
            ],
        )
        .status
        .success()
    }

    async fn create_database_and_role(&self) {
        let mut admin = PgConnection::connect(&format!(
            "postgres://postgres:{ADMIN_PASSWORD}@127.0.0.1:{}/postgres",
            self.port
        ))
        .await
        .unwrap();
        // One statement each: CREATE DATABASE refuses to run in a transaction.
        for statement in [
            format!("CREATE DATABASE {DATABASE}"),
            format!("REVOKE ALL ON DATABASE {DATABASE} FROM PUBLIC"),
            format!("CREATE ROLE {REGISTRY_ROLE} LOGIN PASSWORD '{REGISTRY_PASSWORD}'"),
            format!("GRANT CONNECT, CREATE ON DATABASE {DATABASE} TO {REGISTRY_ROLE}"),
        ] {
            admin.execute(sqlx::AssertSqlSafe(statement)).await.unwrap();
        }
        admin.close().await.unwrap();
    }

    fn data_dir(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run(&self, program: &str, args: &[&str]) {
        let output = self.output(program, args);
        assert!(
            output.status.success(),
            "{program} {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&output.stderr),
            self.log()
        );
    }

    fn output(&self, program: &str, args: &[&str]) -> Output {
        let program = self.bin.join(program);
        let mut command = if self.run_as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", RUN_AS, "--"]).arg(&program);
            command
        } else {
            Command::new(&program)
        };
        command
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|err| panic!("cannot run {}: {err}", program.display()))
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self.output("pg_ctl", &["-D", &self.data_dir(), "-m", "immediate", "stop"]);
    }
}

/// The directory of `initdb` and `pg_ctl`: Debian's versioned directories
/// first (newest wins), then PATH.
fn server_binaries() -> Option<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    let mut versioned: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|entry| Some(entry.ok()?.path().join("bin")))
        .filter(|dir| has_both(dir))
        .collect();
    versioned.sort_by_key(|dir| {
        let version = dir.parent().and_then(|v| v.file_name()).and_then(|v| v.to_str());
        version.and_then(|v| v.parse::<u32>().ok()).unwrap_or(0)
    });
    versioned.pop().or_else(|| {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .find(|dir| has_both(dir))
            .and_then(|dir| fs::canonicalize(dir.join("initdb")).ok())
            .and_then(|initdb| initdb.parent().map(Path::to_path_buf))
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn id(args: &[&str]) -> u32 {
    let output = Command::new("id").args(args).output().unwrap();
    assert!(
        output.status.success(),
        "there is no '{RUN_AS}' user to run PostgreSQL as (tests run as root): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().parse().unwrap()
}
