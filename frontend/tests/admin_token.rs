//! The admin token over stdio and HTTP: from the argument, the header or
//! (JWT mode) the admin scope; every failure audited as denied; the token
//! itself never in the audit file, the logs or the process list.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails by panicking")]

mod support;

use serde_json::json;
use support::jwks::{ISSUER, JwksServer, SigningKey, claims};
use support::{HttpSession, Stack, StdioSession, tally, with};

const TOKEN: &str = "admin-token-7f3c9a1e5b2d4c6f";

fn token_file(stack: &Stack) -> String {
    let path = stack.dir.path().join("admin-token");
    std::fs::write(&path, format!("{TOKEN}\n")).unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn over_stdio_the_argument_unlocks_admin_tools_and_failures_are_audited() {
    let stack = Stack::new().await;
    let env = with(stack.env(), &[("MCP_ADMIN_TOKEN", TOKEN)]);
    let mut session = StdioSession::start(&env).await;

    let missing = session.call_tool("dynamic.tool.list", json!({})).await;
    assert!(missing.is_error);
    assert_eq!(
        missing.text,
        "dynamic.tool.list needs admin rights: pass the admin token as the `adminToken` argument"
    );
    let wrong = session
        .call_tool("dynamic.tool.list", json!({"adminToken": "guess"}))
        .await;
    assert!(wrong.is_error);
    assert!(
        wrong
            .text
            .starts_with("the admin token in the adminToken argument is wrong"),
        "{}",
        wrong.text
    );
    let listed = session
        .call_tool("dynamic.tool.list", json!({"adminToken": TOKEN}))
        .await;
    assert!(!listed.is_error, "{listed:?}");
    assert_eq!(listed.structured, json!({"tools": []}));
    // Tools that are not admin tools need no token.
    assert!(!session.call_tool("system.health", json!({})).await.is_error);

    let audit = stack.audit();
    audit
        .wait_for(|l| l["action"] == "tool.list" && l["result"] == "success")
        .await;
    let lines = audit.lines();
    let denied: Vec<_> = lines.iter().filter(|l| l["result"] == "denied").collect();
    assert_eq!(denied.len(), 2, "{lines:?}");
    assert_eq!(denied[0]["details"]["reason"], "admin_token_missing");
    assert_eq!(denied[1]["details"]["reason"], "admin_token_invalid");
    for line in &denied {
        assert_eq!(line["action"], "tool.list");
        assert!(line["actor"].as_str().unwrap().starts_with("local:"), "{line}");
    }
    assert!(!audit.text().contains(TOKEN) && !audit.text().contains("guess"));
    assert!(!session.log.text().contains(TOKEN));
}

#[tokio::test]
async fn over_http_the_header_or_argument_unlocks_and_the_token_stays_out_of_ps() {
    let stack = Stack::new().await;
    let file = token_file(&stack);
    let frontend = stack.http_frontend(&[("MCP_ADMIN_TOKEN_FILE", &file)]).await;

    let mut anonymous = HttpSession::open(&frontend.url, &[]).await;
    let missing = anonymous
        .call_tool("dynamic.tool.get", json!({"name": "nothing.here"}))
        .await;
    assert!(missing.is_error);
    assert_eq!(
        missing.text,
        "dynamic.tool.get needs admin rights: send the admin token in the X-MCP-Admin-Token HTTP header, or \
         pass the admin token as the `adminToken` argument"
    );
    let by_argument = anonymous
        .call_tool("dynamic.tool.list", json!({"adminToken": TOKEN}))
        .await;
    assert!(!by_argument.is_error, "{by_argument:?}");

    let mut wrong_header = HttpSession::open(&frontend.url, &[("x-mcp-admin-token", "not-the-token")]).await;
    let wrong = wrong_header.call_tool("dynamic.tool.list", json!({})).await;
    assert!(wrong.is_error);
    assert!(
        wrong.text.contains("X-MCP-Admin-Token header is wrong"),
        "{}",
        wrong.text
    );
    assert!(!wrong.text.contains("not-the-token"));

    let mut admin = HttpSession::open(&frontend.url, &[("x-mcp-admin-token", TOKEN)]).await;
    let listed = admin.call_tool("dynamic.tool.list", json!({})).await;
    assert!(!listed.is_error, "{listed:?}");

    let audit = stack.audit();
    audit
        .wait_for(|l| l["details"]["reason"] == "admin_token_invalid")
        .await;
    let counts = tally(&audit.lines());
    assert_eq!(
        counts.get(&("tool.get".into(), "denied".into())),
        Some(&1),
        "{counts:?}"
    );
    assert_eq!(
        counts.get(&("tool.list".into(), "denied".into())),
        Some(&1),
        "{counts:?}"
    );
    assert!(!audit.text().contains(TOKEN));
    assert!(!frontend.log.text().contains(TOKEN));

    // Neither the process list nor the command line shows the token.
    let ps = std::process::Command::new("ps").args(["-eo", "args"]).output().unwrap();
    let ps = String::from_utf8_lossy(&ps.stdout);
    assert!(ps.contains("dynamic-mcp"), "ps should list the frontend:\n{ps}");
    assert!(!ps.contains(TOKEN));
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", frontend.pid())).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains(TOKEN));
}

#[tokio::test]
async fn in_jwt_mode_the_admin_scope_grants_admin_tools() {
    let stack = Stack::new().await;
    let key = SigningKey::ec(stack.dir.path(), "k1");
    let jwks = JwksServer::start(&[&key]).await;
    let frontend = stack
        .http_frontend(&[
            ("MCP_AUTH_MODE", "jwt"),
            ("MCP_AUTH_JWKS_URL", &jwks.url),
            ("MCP_AUTH_ISSUER", ISSUER),
        ])
        .await;
    let admin = format!("Bearer {}", key.sign(&claims(&frontend.url, "root", "mcp:admin")));
    let mut session = HttpSession::open(&frontend.url, &[("authorization", &admin)]).await;
    assert!(!session.call_tool("dynamic.tool.list", json!({})).await.is_error);

    let user = format!("Bearer {}", key.sign(&claims(&frontend.url, "someone", "tools:call")));
    let mut session = HttpSession::open(&frontend.url, &[("authorization", &user)]).await;
    let denied = session.call_tool("dynamic.tool.list", json!({})).await;
    assert!(denied.is_error);
    assert_eq!(
        denied.text,
        "dynamic.tool.list needs admin rights: use an access token with the scope 'mcp:admin'"
    );
    let line = stack
        .audit()
        .wait_for(|l| l["action"] == "tool.list" && l["result"] == "denied")
        .await;
    assert_eq!(line["actor"], "someone");
    let ok = stack
        .audit()
        .wait_for(|l| l["action"] == "tool.list" && l["result"] == "success")
        .await;
    assert_eq!(ok["actor"], "root");
}

#[tokio::test]
async fn read_only_refuses_every_write() {
    let stack = Stack::new().await;
    let frontend = stack.http_frontend(&[("MCP_DYNAMIC_READ_ONLY", "true")]).await;
    let mut session = HttpSession::open(&frontend.url, &[]).await;
    let create = session
        .call_tool(
            "dynamic.tool.create",
            json!({"tool": {"name": "text.upper", "description": "d", "code": "return 1;"}}),
        )
        .await;
    assert!(create.is_error);
    assert!(
        create
            .text
            .contains("this server is read-only (MCP_DYNAMIC_READ_ONLY=true)"),
        "{}",
        create.text
    );
    let listed = session.call_tool("dynamic.tool.list", json!({})).await;
    assert!(!listed.is_error);
    let line = stack.audit().wait_for(|l| l["action"] == "tool.create").await;
    assert_eq!(
        (&line["result"], &line["target"]),
        (&json!("denied"), &json!("text.upper"))
    );
    assert_eq!(line["details"]["reason"], "read_only");
}

#[tokio::test]
async fn ambiguous_admin_token_settings_stop_the_server_with_a_clear_error() {
    let stack = Stack::new().await;
    let file = token_file(&stack);
    let env = with(
        stack.env(),
        &[
            ("MCP_TRANSPORT", "http"),
            ("MCP_ADMIN_TOKEN", TOKEN),
            ("MCP_ADMIN_TOKEN_FILE", &file),
        ],
    );
    let stderr = support::Frontend::fails_to_start(&env).await;
    assert!(stderr.contains("set only one of them"), "{stderr}");
    assert!(!stderr.contains(TOKEN));
}
