//! The MCP handler: built-in tools plus every enabled dynamic tool, and
//! list_changed for both legacy and 2026-07-28 clients.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, Implementation, ListToolsResult, PaginatedRequestParams,
    ProtocolVersion, ServerCapabilities, ServerConfig, SubscriptionFilter, Tool,
};
use rmcp::service::{NotificationContext, RequestContext, SubscriptionContext};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};

use crate::catalog::Catalog;
use crate::clients::Services;
use crate::error::{ToolError, unknown_tool};
use crate::notify::{LegacyPeers, serve_subscription};
use crate::tools::{self, CallContext, run_dynamic};

const INSTRUCTIONS: &str = "Tools can be created at run time with dynamic.tool.create: each is JavaScript that runs in an \
     isolated container. Every enabled dynamic tool is listed in tools/list under its name and is called with \
     {\"args\": {...}}. Use dynamic.tool.list/get/update/enable/delete to manage them.";

/// What every request handler shares.
pub struct ServerState {
    pub services: Services,
    pub catalog: Catalog,
    pub legacy_peers: LegacyPeers,
    pub started: Instant,
}

/// The MCP server. Cheap to clone: HTTP makes one per request or session.
#[derive(Clone)]
pub struct Frontend {
    state: Arc<ServerState>,
}

impl Frontend {
    pub fn new(state: ServerState) -> Self {
        Self { state: Arc::new(state) }
    }

    fn dynamic_definition(&self, name: &str) -> Option<Tool> {
        self.state
            .catalog
            .read(|c| c.enabled_tool(name).map(|t| run_dynamic::definition(t)))
    }

    async fn dispatch(
        &self,
        request: CallToolRequestParams,
        call: &CallContext,
    ) -> Result<Result<CallToolResult, ToolError>, McpError> {
        let name = request.name.as_ref();
        if tools::is_builtin(name) {
            let args = request.arguments.unwrap_or_default();
            return tools::call_builtin(&self.state, name, args)
                .await
                .ok_or_else(|| unknown_tool(name));
        }
        let listed = self
            .state
            .catalog
            .read(|c| c.enabled_tool(name).cloned())
            .ok_or_else(|| unknown_tool(name))?;
        Ok(run_dynamic::run(&self.state, &listed, request.arguments, &call.cancel).await)
    }
}

impl ServerHandler for Frontend {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .build(),
        )
        .with_server_info(Implementation::new("dynamic-mcp", env!("CARGO_PKG_VERSION")))
        .with_instructions(INSTRUCTIONS)
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(ProtocolVersion::known_up_to(&ProtocolVersion::V_2026_07_28))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let mut tools = tools::builtin_definitions().to_vec();
        self.state
            .catalog
            .read(|c| tools.extend(c.enabled().map(|t| run_dynamic::definition(t))));
        // Dynamic names never collide with built-ins (the registry refuses them).
        tools.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(ListToolsResult::with_all_items(tools))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        tools::builtin_definitions()
            .iter()
            .find(|t| t.name == name)
            .cloned()
            .or_else(|| self.dynamic_definition(name))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let call = CallContext::of(&ctx);
        let name = request.name.clone();
        let started = Instant::now();
        let result = self
            .dispatch(request, &call)
            .await?
            .unwrap_or_else(ToolError::into_result);
        tracing::info!(
            tool = %name,
            caller = %call.caller,
            is_error = result.is_error.unwrap_or(false),
            duration_ms = started.elapsed().as_millis() as u64,
            "tool call"
        );
        Ok(result.into())
    }

    async fn on_initialized(&self, ctx: NotificationContext<RoleServer>) {
        self.state.legacy_peers.register(ctx.peer.clone());
    }

    fn accepted_subscription_filter(&self, requested: &SubscriptionFilter) -> Option<SubscriptionFilter> {
        Some(requested.supported_by(&self.get_info().capabilities))
    }

    async fn listen(&self, ctx: SubscriptionContext) -> Result<(), McpError> {
        serve_subscription(self.state.catalog.changed(), ctx).await
    }
}
