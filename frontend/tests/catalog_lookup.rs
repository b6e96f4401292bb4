//! A tool created through another replica may reach this frontend's catalog
//! a moment after a client calls it; the catalog then asks the registry.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails by panicking")]

mod support;

use dynamic_mcp::catalog::Catalog;
use dynamic_mcp_common::internal_auth::InternalAuth;
use dynamic_mcp_proto::v1::registry_client::RegistryClient;
use support::TestRegistry;

#[tokio::test]
async fn a_tool_the_feed_has_not_delivered_is_found_in_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    let registry = TestRegistry::start(dir.path(), &[], InternalAuth::default()).await;
    let channel = registry.auth.channel(&registry.url, None).expect("channel");
    // No follower: this catalog never hears of the create below.
    let catalog = Catalog::new(RegistryClient::new(channel));

    registry.create_tool("late.tool").await;

    assert!(catalog.read(|c| c.enabled_tool("late.tool").is_none()));
    let found = catalog.find_enabled("late.tool").await.expect("found in the registry");
    assert_eq!((found.name.as_str(), found.revision), ("late.tool", 1));
    assert_eq!(found.code, "return 1;", "the registry's record carries the code to run");
    assert!(catalog.find_enabled("no.such.tool").await.is_none());
}
