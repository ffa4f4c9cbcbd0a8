//! The MCP server: which tools a key sees, and a tool call as an invocation.

use std::borrow::Cow;
use std::sync::{Arc, LazyLock};

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListToolsResult, PaginatedRequestParams, ProtocolVersion, ServerCapabilities,
    ServerConfig, Tool, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{Map, Value, json};

use super::tools::{Shape, card_tool};
use crate::api::AppState;
use crate::api::auth::{Caller, Scope};
use crate::catalog::{Card, Effect};
use crate::error::{FieldError, Problem, log_answer};
use crate::invocation::{self, IdempotencyKey, Surface};

/// The protocol revisions served: the SDK negotiates among these (`initialize` for the first
/// two, per-request `_meta` and `server/discover` for 2026-07-28).
pub const SUPPORTED_VERSIONS: [ProtocolVersion; 3] = [
    ProtocolVersion::V_2025_06_18,
    ProtocolVersion::V_2025_11_25,
    ProtocolVersion::V_2026_07_28,
];

/// The request `_meta` key that carries an idempotency key (the `Idempotency-Key` header of an
/// HTTP invocation; one namespace per API key for both surfaces).
pub const IDEMPOTENCY_META_KEY: &str = "kandji-connector/idempotency-key";

/// The connector's own tools (a card with one of these ids is not offered over MCP).
pub const BUILTIN_TOOLS: [&str; 2] = ["get_stream", "list_connections"];

/// One server per request (the transport is stateless); it holds the app.
#[derive(Clone)]
pub struct McpServer {
    app: AppState,
}

impl McpServer {
    pub fn new(app: AppState) -> Self {
        Self { app }
    }

    /// Whether `caller` is offered card `card` as a tool.
    fn offers(&self, caller: &Caller, card: &Card) -> bool {
        !BUILTIN_TOOLS.contains(&card.def.id.as_str())
            && (card.def.effect != Effect::Destructive || self.app.mcp.destructive)
            && invocation::may_invoke(caller, card).is_ok()
    }

    fn tools_for(&self, caller: &Caller) -> Vec<Tool> {
        let mut tools: Vec<Tool> = self
            .app
            .catalog
            .iter()
            .filter(|c| self.offers(caller, c))
            .map(|c| card_tool(c))
            .collect();
        if caller.has(Scope::CardsInvoke) {
            tools.push(GET_STREAM.clone());
        }
        if caller.has(Scope::Admin) {
            tools.push(LIST_CONNECTIONS.clone());
        }
        tools
    }
}

/// The API key's caller, put in the request's extensions by `require_api_key`.
fn caller(ctx: &RequestContext<RoleServer>) -> Result<Caller, ErrorData> {
    ctx.extensions
        .get::<axum::http::request::Parts>()
        .and_then(|p| p.extensions.get::<Caller>())
        .cloned()
        .ok_or_else(|| ErrorData::internal_error("the request was not authenticated", None))
}

fn request_id(ctx: &RequestContext<RoleServer>) -> String {
    ctx.extensions
        .get::<axum::http::request::Parts>()
        .and_then(|p| p.headers.get("x-request-id"))
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

fn unknown_tool(name: &str) -> ErrorData {
    ErrorData::invalid_params(
        format!(
            "Unknown tool: {name} (this API key is offered the tools tools/list shows: cards returning secrets need secrets:read, and destructive cards are offered only when the operator sets KANDJI_CONNECTOR_MCP_DESTRUCTIVE=on)"
        ),
        None,
    )
}

/// A schema of the HTTP API's document (`components.schemas.<name>`), for a built-in tool's
/// output: the tool answers what the route answers.
fn api_schema(name: &str) -> JsonObject {
    let doc = serde_json::to_value(crate::api::openapi::document()).unwrap_or_default();
    let mut schema = doc
        .pointer(&format!("/components/schemas/{name}"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    schema.remove("example");
    schema
}

static GET_STREAM: LazyLock<Tool> = LazyLock::new(|| {
    let input = json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["stream_id"],
        "properties": {"stream_id": {"type": "string", "title": "Stream ID", "description": "The stream_id a stream result set answered with"}},
    });
    Tool::new(
        "get_stream",
        "A started stream's progress: state (running, succeeded, failed, cancelled), records delivered, pages fetched, failed deliveries, error. A key sees the streams it started (an admin key, every stream).",
        Arc::new(input.as_object().cloned().unwrap_or_default()),
    )
    .with_title("Get Stream")
    .with_raw_output_schema(Arc::new(api_schema("Stream")))
    .with_annotations(
        ToolAnnotations::with_title("Get Stream")
            .read_only(true)
            .idempotent(true)
            .open_world(false),
    )
});

static LIST_CONNECTIONS: LazyLock<Tool> = LazyLock::new(|| {
    let connection = api_schema("Connection");
    let output = json!({
        "type": "object",
        "required": ["connections"],
        "properties": {"connections": {"type": "array", "items": connection}},
    });
    Tool::new(
        "list_connections",
        "The connections (Kandji tenants) tools can run against: pass one's id as a tool's connection argument.",
        Arc::new(json!({"type": "object", "additionalProperties": false, "properties": {}}).as_object().cloned().unwrap_or_default()),
    )
    .with_title("List Connections")
    .with_raw_output_schema(Arc::new(output.as_object().cloned().unwrap_or_default()))
    .with_annotations(
        ToolAnnotations::with_title("List Connections")
            .read_only(true)
            .idempotent(true)
            .open_world(false),
    )
});

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(
                Implementation::new("kandji-connector", env!("CARGO_PKG_VERSION"))
                    .with_title("Kandji connector"),
            )
            .with_instructions(
                "Kandji device-management actions as tools, one per card of the connector's catalog. Each tool takes its card's inputs and options as arguments, plus `connection` (the Kandji tenant; optional when the connector has one). Results are the card's outputs; `status_code` is Kandji's HTTP status, and a 4xx/5xx from Kandji is an error result with Kandji's message. List cards take `result_set`; a `stream_…` result set starts a stream to a helper flow (`helper_flow.url`) and answers its `stream_id`, which `get_stream` reads.",
            )
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(&SUPPORTED_VERSIONS)
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        // Only for the SDK's header checks (`Mcp-Param-*`), which need a tool's input schema.
        match name {
            "get_stream" => Some(GET_STREAM.clone()),
            "list_connections" => Some(LIST_CONNECTIONS.clone()),
            _ => self.app.catalog.get(name).map(|c| card_tool(c)),
        }
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let caller = caller(&ctx)?;
        Ok(ListToolsResult::with_all_items(self.tools_for(&caller)))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let caller = caller(&ctx)?;
        let name = request.name.to_string();
        let arguments = request.arguments.unwrap_or_default();
        let call = Call {
            app: &self.app,
            caller: &caller,
            name: &name,
            request_id: request_id(&ctx),
            // Before 2025-11-25 the spec has invalid arguments answered as a protocol error
            // (-32602); from it on, as a tool result the model can read and correct.
            legacy_errors: ctx
                .protocol_version()
                .is_none_or(|v| v.as_str() < ProtocolVersion::V_2025_11_25.as_str()),
        };
        let result = match name.as_str() {
            "get_stream" if caller.has(Scope::CardsInvoke) => call.get_stream(arguments).await,
            "list_connections" if caller.has(Scope::Admin) => call.list_connections().await,
            _ => match self.app.catalog.get(&name) {
                Some(card) if self.offers(&caller, card) => call.card(card, arguments, &ctx).await,
                _ => return Err(unknown_tool(&name)),
            },
        };
        result.map(CallToolResponse::from)
    }
}

/// One tool call.
struct Call<'a> {
    app: &'a AppState,
    caller: &'a Caller,
    name: &'a str,
    request_id: String,
    legacy_errors: bool,
}

impl Call<'_> {
    /// Logs a refusal or failure as the HTTP middleware would (`MCP tools/call <tool>`).
    fn log(
        &self,
        status: u16,
        problem: Option<&Problem>,
        unshown: Option<&crate::error::UnshownFailure>,
    ) {
        log_answer(
            "MCP",
            &format!("tools/call {}", self.name),
            &self.request_id,
            status,
            problem.map(Problem::log).as_ref(),
            unshown,
        );
    }

    /// A problem of the connector as the tool's answer: invalid arguments name each field (a
    /// protocol error before 2025-11-25, else an error result); anything else is an error
    /// result with the problem's title and detail.
    fn problem(&self, p: Problem, shape: Option<&Shape>) -> Result<CallToolResult, ErrorData> {
        self.log(p.status.as_u16(), Some(&p), None);
        if !p.errors.is_empty() {
            let errors: Vec<Value> = p
                .errors
                .iter()
                .map(|e| {
                    let loc = shape.map_or_else(|| e.loc.clone(), |s| s.loc(e));
                    json!({"loc": loc, "msg": e.msg, "type": e.kind})
                })
                .collect();
            let text = errors
                .iter()
                .map(|e| {
                    let loc: Vec<&str> = e["loc"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    format!("{}: {}", loc.join("."), e["msg"].as_str().unwrap_or(""))
                })
                .collect::<Vec<_>>()
                .join("; ");
            let message = format!("Invalid arguments: {text}");
            if self.legacy_errors {
                return Err(ErrorData::invalid_params(
                    message,
                    Some(json!({"errors": errors})),
                ));
            }
            return Ok(CallToolResult::error(vec![
                ContentBlock::text(message),
                ContentBlock::text(json!({"errors": errors}).to_string()),
            ]));
        }
        Ok(CallToolResult::error(vec![ContentBlock::text(
            problem_text(&p.body_json(), p.retry_after),
        )]))
    }

    fn invalid(&self, loc: &str, msg: &str, kind: &str) -> Result<CallToolResult, ErrorData> {
        self.problem(
            Problem::invalid(vec![FieldError::new(&[loc], msg, kind)]),
            None,
        )
    }

    async fn card(
        &self,
        card: &Card,
        arguments: JsonObject,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let shape = Shape::of(card);
        // The HTTP body's nesting limit, for the same arguments.
        if let Some(deep) = arguments
            .iter()
            .find_map(|(k, v)| crate::api::check_depth(v, k).err())
        {
            return self.problem(deep, None);
        }
        let mut arguments = arguments;
        let connection = match arguments.remove("connection") {
            Some(Value::String(c)) => c,
            Some(_) => return self.invalid("connection", "must be a string", "type"),
            None => match self.only_connection().await {
                Ok(Some(c)) => c,
                Ok(None) => {
                    return self.invalid(
                        "connection",
                        "is required: give the id of the connection (Kandji tenant) to run against; the connector has more than one, or none",
                        "required",
                    );
                }
                Err(p) => return self.problem(p, None),
            },
        };
        let body = shape.body(arguments, connection);
        let key = match ctx.meta.get(IDEMPOTENCY_META_KEY) {
            None => None,
            Some(Value::String(k)) => Some(k.as_str()),
            Some(_) => {
                return self.invalid(
                    "_meta",
                    &format!("{IDEMPOTENCY_META_KEY} must be a string"),
                    "idempotency_key",
                );
            }
        };
        let key = key.map(|key| IdempotencyKey {
            key,
            loc: &["_meta", IDEMPOTENCY_META_KEY],
        });
        let answer =
            invocation::invoke(self.app, self.caller, &card.def.id, body, key, Surface::Mcp).await;
        if let Some(f) = &answer.unshown {
            self.log(answer.status().as_u16(), None, Some(f));
        }
        match answer.result {
            Ok((status, body)) if status.is_success() => Ok(tool_result(status.as_u16(), body)),
            // A stored answer replayed: Kandji could not be reached or timed out.
            Ok((status, body)) => {
                self.log(status.as_u16(), None, None);
                Ok(CallToolResult::error(vec![ContentBlock::text(format!(
                    "{} (the first answer to this idempotency key)",
                    problem_text(&body, None)
                ))]))
            }
            Err(p) => self.problem(p, Some(&shape)),
        }
    }

    /// The connection to use when the call names none: the only one there is.
    async fn only_connection(&self) -> Result<Option<String>, Problem> {
        let mut all = self.app.store.list_connections().await?;
        Ok((all.len() == 1).then(|| all.remove(0).id))
    }

    async fn get_stream(&self, arguments: JsonObject) -> Result<CallToolResult, ErrorData> {
        let mut errors = Vec::new();
        for k in arguments.keys().filter(|k| *k != "stream_id") {
            errors.push(FieldError::new(
                &[k],
                "is not an argument of this tool",
                "unknown_field",
            ));
        }
        let id = match arguments.get("stream_id") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                errors.push(FieldError::new(&["stream_id"], "must be a string", "type"));
                None
            }
            None => {
                errors.push(FieldError::new(&["stream_id"], "is required", "required"));
                None
            }
        };
        let (Some(id), true) = (id, errors.is_empty()) else {
            return self.problem(Problem::invalid(errors), None);
        };
        match crate::api::visible_stream(self.app, self.caller, &id).await {
            Ok(s) => Ok(CallToolResult::structured(json!(crate::api::stream_view(
                &s
            )))),
            Err(p) => self.problem(p, None),
        }
    }

    async fn list_connections(&self) -> Result<CallToolResult, ErrorData> {
        match self.app.store.list_connections().await {
            Ok(all) => {
                let list: Vec<Value> = all
                    .iter()
                    .map(|c| json!(crate::api::connection_view(c)))
                    .collect();
                Ok(CallToolResult::structured(json!({"connections": list})))
            }
            Err(e) => self.problem(e.into(), None),
        }
    }
}

/// A problem body (`title`, `detail`) as one line, with when to retry.
fn problem_text(body: &Value, retry_after: Option<u64>) -> String {
    let title = body["title"].as_str().unwrap_or("Failed");
    let mut text = match body["detail"].as_str() {
        Some(d) => format!("{title}: {d}"),
        None => title.to_string(),
    };
    if let Some(s) = retry_after {
        text.push_str(&format!(" (retry after {s} s)"));
    }
    text
}

/// An invocation's answer as a tool result: the outputs as `structuredContent` (a started
/// stream: `status_code` 202 with its `stream_id` and `status_url`) with their JSON as text;
/// an error result, with Kandji's message first, when Kandji answered 4xx/5xx.
fn tool_result(status: u16, body: Value) -> CallToolResult {
    let structured = match body {
        Value::Object(mut m) => match m.remove("outputs") {
            Some(outputs) => outputs,
            None => {
                let mut started = Map::new();
                started.insert("status_code".into(), status.into());
                started.extend(m);
                Value::Object(started)
            }
        },
        other => other,
    };
    let kandji = structured["status_code"].as_u64().unwrap_or(0);
    if kandji >= 400 {
        let message = structured["error"].as_str().unwrap_or("");
        let mut result = CallToolResult::structured_error(structured.clone());
        result.content.insert(
            0,
            ContentBlock::text(format!("Kandji answered {kandji}: {message}")),
        );
        return result;
    }
    CallToolResult::structured(structured)
}
