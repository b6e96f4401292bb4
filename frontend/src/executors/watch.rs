//! The health watch: every executor is asked now and then whether it can
//! run code; one that can joins the rotation under the executor id it
//! reports, one that cannot (or does not answer) leaves it.

use std::sync::Arc;
use std::time::Duration;

use dynamic_mcp_common::periodic::{self, Ticks};
use dynamic_mcp_proto::v1::DescribeSandboxRequest;
use tokio_util::sync::CancellationToken;

use super::member::Member;
use crate::links::{HealthOf, Service, check_health, executor_client};

/// How often each executor is checked; a failed call takes it out sooner.
const CHECK_EVERY: Duration = Duration::from_secs(1);
const ANSWER_WITHIN: Duration = Duration::from_secs(2);

pub async fn keep_watching(members: Vec<Arc<Member>>, stop: CancellationToken) {
    let check_all = || async {
        futures::future::join_all(members.iter().map(|member| check(member, &members))).await;
    };
    check_all().await;
    periodic::every(Ticks::new(CHECK_EVERY, stop), check_all).await;
}

async fn check(member: &Arc<Member>, all: &[Arc<Member>]) {
    if let Err(why) = check_health(member.health(), HealthOf::Service(Service::Executor), ANSWER_WITHIN).await {
        return member.leave(&format!("health check: {why}"));
    }
    if member.in_rotation() {
        return;
    }
    // Joining (again): it may have restarted under another id.
    let mut client = executor_client(member.channel());
    let executor_id = match tokio::time::timeout(ANSWER_WITHIN, client.describe_sandbox(DescribeSandboxRequest {}))
        .await
    {
        Ok(Ok(description)) => description.into_inner().executor_id,
        Ok(Err(status)) => return tracing::debug!(executor = member.number, %status, "describing the sandbox failed"),
        Err(_) => return tracing::debug!(executor = member.number, "describing the sandbox took too long"),
    };
    let twin = all.iter().find(|other| {
        !Arc::ptr_eq(other, member) && other.in_rotation() && other.executor_id().as_deref() == Some(&executor_id)
    });
    match twin {
        Some(twin) => member.refuse(format!(
            "executors {} and {} both have the executor id '{executor_id}', so their session ids would clash; \
             executor {} stays out of rotation until each has its own MCP_EXECUTOR_ID",
            twin.number, member.number, member.number
        )),
        None => member.join(executor_id),
    }
}
