//! The MCP handler: built-in tools plus every enabled dynamic tool, the
//! guard metrics resource, and list_changed for both legacy and 2026-07-28
//! clients. Every tool call goes through [`call_pipeline`].

use std::borrow::Cow;
use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, GetPromptRequestParams, GetPromptResponse, Implementation,
    ListPromptsResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams, ProtocolVersion,
    ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, Resource, ResourceContents,
    ServerCapabilities, ServerConfig, SubscriptionFilter, Tool,
};
use rmcp::service::{NotificationContext, RequestContext, SubscriptionContext};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};

use crate::call_context::CallContext;
use crate::call_pipeline;
use crate::notify::serve_subscription;
use crate::prompts;
use crate::state::ServerState;
use crate::tools::{self, run_dynamic};

const INSTRUCTIONS: &str = "Tools can be created at run time with dynamic.tool.create: each is JavaScript that runs in an \
     isolated container. Every enabled dynamic tool is listed in tools/list under its name and is called with \
     {\"args\": {...}}. Use dynamic.tool.list/get/update/enable/delete to manage them. To run code without \
     storing a tool use run_js_ephemeral, or start a sandbox session (sandbox.initialize) to run shell commands \
     (sandbox.exec) and JavaScript (sandbox.run_js) in one isolated container, then sandbox.stop it. Tools may declare \
     an inputSchema, outputSchema, annotations and examples (self-tests that must pass before a write is stored); \
     every revision is kept (dynamic.tool.history, rollback, restore). The prompt dynamic.tool.author explains how \
     to write a good tool for this server.";

/// The resource that mirrors `system.guard_metrics`.
pub const GUARD_METRICS_URI: &str = "dynamic://metrics/guard";

/// The MCP server. Cheap to clone: HTTP makes one per request or session,
/// all sharing one [`ServerState`].
#[derive(Clone)]
pub struct Frontend {
    state: Arc<ServerState>,
}

impl Frontend {
    pub fn new(state: ServerState) -> Self {
        Self { state: Arc::new(state) }
    }

    pub fn state(&self) -> &ServerState {
        &self.state
    }

    fn dynamic_definition(&self, name: &str) -> Option<Tool> {
        self.state
            .catalog
            .read(|c| c.enabled_definition(name, run_dynamic::definition).cloned())
    }
}

impl ServerHandler for Frontend {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .enable_resources()
                .enable_prompts()
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
        let mut tools = tools::builtin_definitions(self.state.sandbox.limits()).to_vec();
        self.state
            .catalog
            .read(|c| tools.extend(c.enabled_definitions(run_dynamic::definition).cloned()));
        // Dynamic names never collide with built-ins (the registry refuses them).
        tools.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(ListToolsResult::with_all_items(tools))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        tools::builtin_definitions(self.state.sandbox.limits())
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
        call_pipeline::call_tool(&self.state, request, call)
            .await
            .map(Into::into)
    }

    /// Like the tool list, it carries the 2026-07-28 cache hints rmcp fills in.
    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        Ok(ListPromptsResult::with_all_items(prompts::definitions()))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        let sandbox = self.state.sandbox.get(&self.state.services.executors).await;
        prompts::render(&request.name, request.arguments.as_ref(), &sandbox).map(Into::into)
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        let guard = Resource::new(GUARD_METRICS_URI, "guard-metrics")
            .with_title("Guard metrics")
            .with_description(
                "The execution guard's limits and per-scope counters, as system.guard_metrics returns them.",
            )
            .with_mime_type("application/json");
        Ok(ListResourcesResult::with_all_items(vec![guard]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        if request.uri != GUARD_METRICS_URI {
            return Err(McpError::resource_not_found(
                format!("no resource '{}'; this server has {GUARD_METRICS_URI}", request.uri),
                // SEP-2164: the error names the URI it could not find.
                Some(serde_json::json!({ "uri": request.uri })),
            ));
        }
        let body = serde_json::to_string(&self.state.guard.snapshot())
            .map_err(|e| McpError::internal_error(format!("cannot encode the guard metrics: {e}"), None))?;
        Ok(ReadResourceResult::new(vec![
            ResourceContents::text(body, GUARD_METRICS_URI).with_mime_type("application/json"),
        ])
        .into())
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
