//! The MCP endpoint (`/mcp`) as an agent sees it, through the official Rust SDK's client
//! (`rmcp`) against the real server and simulated tenant, on each protocol revision served; and
//! the official Python SDK (`mcp` from PyPI) running tests/mcp_client.py
//! (`needs_python_mcp`, see scripts/test.sh).

use std::collections::BTreeSet;
use std::time::Duration;

use crate::harness::{API_KEY, Receiver, TestApp, builtin_card, eventually, operator_cards};
use kandji_connector::api::auth::{ApiKey, Scope};
use kandji_connector::catalog::{Catalog, Effect};
use kandji_connector::mcp::{IDEMPOTENCY_META_KEY, McpOrigin};
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientConfig, ErrorCode, ProtocolVersion,
    RequestMetaObject, Tool,
};
use rmcp::service::{RunningService, ServiceError};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientLifecycleMode, ClientServiceExt, RoleClient, ServiceExt};
use secrecy::SecretString;
use serde_json::{Map, Value, json};

const INVOKE: &str = "mcp-invoke-only-key-000000";
const SECRETS: &str = "mcp-invoke-secrets-key-0000";
const TRUST: &str = "mcp-trust-read-key-00000000";
const CATALOG: &str = "mcp-catalog-only-key-000000";

type Client = RunningService<RoleClient, ClientConfig>;

fn with_keys(c: &mut kandji_connector::config::Config) {
    let key = |k: &str, s: Vec<Scope>| ApiKey::with_scopes(&SecretString::from(k.to_string()), s);
    c.api_keys.push(key(INVOKE, vec![Scope::CardsInvoke]));
    c.api_keys
        .push(key(SECRETS, vec![Scope::CardsInvoke, Scope::SecretsRead]));
    c.api_keys.push(key(TRUST, vec![Scope::TrustRead]));
    c.api_keys.push(key(CATALOG, vec![Scope::CatalogRead]));
}

async fn server() -> TestApp {
    TestApp::builder().config(with_keys).start().await
}

fn transport(s: &TestApp, key: &str) -> StreamableHttpClientTransport<reqwest::Client> {
    StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(format!("{}/mcp", s.url)).auth_header(key),
    )
}

/// A client on `version`: the `initialize` handshake up to 2025-11-25, `server/discover` and
/// per-request metadata from 2026-07-28.
async fn client_on(s: &TestApp, key: &str, version: ProtocolVersion) -> Client {
    let config = ClientConfig::default().with_protocol_version(version.clone());
    if version.has_initialize() {
        config.serve(transport(s, key)).await
    } else {
        config
            .serve_with_lifecycle(
                transport(s, key),
                ClientLifecycleMode::Discover {
                    preferred_versions: vec![version.clone()],
                },
            )
            .await
    }
    .unwrap_or_else(|e| panic!("connecting on {version}: {e}"))
}

async fn client(s: &TestApp, key: &str) -> Client {
    client_on(s, key, ProtocolVersion::V_2025_11_25).await
}

async fn tools(c: &Client) -> Vec<Tool> {
    c.list_all_tools().await.expect("tools/list")
}

fn names(tools: &[Tool]) -> BTreeSet<String> {
    tools.iter().map(|t| t.name.to_string()).collect()
}

fn args(v: Value) -> Map<String, Value> {
    v.as_object().cloned().expect("arguments are an object")
}

async fn call(c: &Client, tool: &str, arguments: Value) -> Result<CallToolResult, ServiceError> {
    c.call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(args(arguments)))
        .await
}

/// A call the MCP layer answers with a result (which may still be an error result).
async fn result(c: &Client, tool: &str, arguments: Value) -> CallToolResult {
    call(c, tool, arguments)
        .await
        .unwrap_or_else(|e| panic!("{tool}: {e}"))
}

/// `METHOD /path` of each request the tenant saw.
fn sent(s: &TestApp) -> Vec<String> {
    s.sim
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

/// The get_device tool with basic details: the MCP twin of `Api::get_device`.
async fn get_device_basic(c: &Client, device_id: &str) -> CallToolResult {
    let arguments = json!({"device_id": device_id, "details": "basic"});
    result(c, "get_device", arguments).await
}

/// The tool result's `structuredContent`, checked against the tool's `outputSchema` with the
/// `jsonschema` crate, and equal to its text mirror.
fn structured(tool: &Tool, r: &CallToolResult) -> Value {
    let out = r.structured_content.clone().expect("structuredContent");
    let schema = Value::Object(
        tool.output_schema
            .clone()
            .expect("outputSchema")
            .as_ref()
            .clone(),
    );
    let validator = jsonschema::validator_for(&schema).expect("outputSchema is a JSON Schema");
    let errors: Vec<String> = validator.iter_errors(&out).map(|e| e.to_string()).collect();
    assert!(
        errors.is_empty(),
        "{} does not match its outputSchema: {errors:?}\n{out}",
        tool.name
    );
    let mirrored = r
        .content
        .iter()
        .filter_map(|c| c.as_text())
        .filter_map(|t| serde_json::from_str::<Value>(&t.text).ok())
        .any(|v| v == out);
    assert!(
        mirrored,
        "no text block mirrors the structured result: {r:?}"
    );
    out
}

fn text(r: &CallToolResult) -> String {
    r.content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

fn find<'a>(tools: &'a [Tool], name: &str) -> &'a Tool {
    tools
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no tool {name} in {:?}", names(tools)))
}

fn first_device(s: &TestApp, platform: &str) -> (String, String) {
    let t = s.sim.tenant();
    let d = t.first_device_of(platform).unwrap();
    (d.device_id.to_string(), d.serial_number.to_string())
}

#[tokio::test]
async fn tools_are_the_cards_each_key_may_run_without_destructive_ones() {
    let s = server().await;
    let catalog = Catalog::load(None).unwrap();
    let card_ids = |keep: &dyn Fn(&kandji_connector::catalog::Card) -> bool| -> BTreeSet<String> {
        catalog
            .iter()
            .filter(|c| keep(c))
            .map(|c| c.def.id.clone())
            .collect()
    };
    let builtin = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();

    // Every scope: every card that is not destructive, plus the connector's own two tools.
    let all = tools(&client(&s, API_KEY).await).await;
    let mut expected = card_ids(&|c| c.def.effect != Effect::Destructive);
    expected.extend(builtin(&["get_stream", "list_connections"]));
    assert_eq!(names(&all), expected);
    assert!(all.len() >= 38, "{}", all.len());
    assert!(!names(&all).contains("lock_device") && !names(&all).contains("erase_device"));

    // cards:invoke alone: no card that returns secrets, no connections list.
    let invoke = tools(&client(&s, INVOKE).await).await;
    let mut expected = card_ids(&|c| c.def.effect != Effect::Destructive && !c.returns_secrets);
    expected.insert("get_stream".into());
    assert_eq!(names(&invoke), expected);
    assert!(!names(&invoke).contains("get_filevault_recovery_key"));

    // trust:read: the device-trust question and nothing else; catalog:read: nothing.
    assert_eq!(
        names(&tools(&client(&s, TRUST).await).await),
        builtin(&["get_device_trust"])
    );
    assert!(tools(&client(&s, CATALOG).await).await.is_empty());

    // Card data, not code: title, description, hints from effect and idempotent.
    let get_device = find(&all, "get_device");
    let card = catalog.get("get_device").unwrap();
    assert_eq!(get_device.title.as_deref(), Some(card.def.title.as_str()));
    assert_eq!(
        get_device.description.as_deref(),
        Some(card.def.description.as_str())
    );
    let hints = get_device.annotations.clone().unwrap();
    assert_eq!(
        (hints.read_only_hint, hints.idempotent_hint),
        (Some(true), Some(true))
    );
    let tag = find(&all, "create_tag").annotations.clone().unwrap();
    assert_eq!(
        (
            tag.read_only_hint,
            tag.destructive_hint,
            tag.idempotent_hint
        ),
        (Some(false), Some(false), Some(false))
    );
    let name = find(&all, "set_device_name").annotations.clone().unwrap();
    assert_eq!(name.idempotent_hint, Some(true));
    // One object: the inputs and options side by side, and the connection.
    let input = Value::Object(get_device.input_schema.as_ref().clone());
    let props: BTreeSet<&str> = input["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        props,
        BTreeSet::from(["connection", "details", "device_id"])
    );
    assert_eq!(input["required"], json!(["device_id", "details"]));
    assert_eq!(input["additionalProperties"], json!(false));
    let list = Value::Object(find(&all, "list_devices").input_schema.as_ref().clone());
    // With the 2025 revisions' inputs, picked up from the cards: List Devices' new filters and
    // its free-text Platform with the known values as examples.
    for p in [
        "result_set",
        "helper_flow",
        "record_limit",
        "serial_number",
        "connection",
        "filevault_turned_on",
        "tag_id",
        "tag_id_in",
        "tag_name",
        "tag_name_in",
    ] {
        assert!(
            list["properties"].get(p).is_some(),
            "list_devices lacks {p}: {list}"
        );
    }
    assert_eq!(
        list["properties"]["platform"]["examples"],
        json!(["Mac", "iPhone", "iPad", "AppleTV", "Vision"])
    );
    assert!(list["properties"]["platform"].get("enum").is_none());
    assert!(
        list["properties"]["result_set"]["enum"]
            .as_array()
            .unwrap()
            .contains(&json!("first_300_matching_records"))
    );
    // Update Device's "leave blank to clear" options share their names with inputs (as in
    // Kandji's 2025 card), so its tool takes the HTTP body's shape.
    let update = Value::Object(find(&all, "update_device").input_schema.as_ref().clone());
    assert_eq!(
        update["properties"]["options"]["properties"]["tags"]["type"], "boolean",
        "{update}"
    );
    assert_eq!(
        update["properties"]["inputs"]["properties"]["tags"]["type"], "array",
        "{update}"
    );
    // The engine's wiring is not shown.
    let listed = serde_json::to_string(&all).unwrap();
    assert!(!listed.contains("x-source"), "x-source in the tool list");

    // Destructive cards are not callable either: the tool does not exist for this key.
    let c = client(&s, API_KEY).await;
    let (mac, _) = first_device(&s, "Mac");
    let e = call(&c, "lock_device", json!({"device_id": mac}))
        .await
        .unwrap_err();
    let ServiceError::McpError(e) = e else {
        panic!("{e}")
    };
    assert_eq!(e.code, ErrorCode::INVALID_PARAMS);
    assert!(
        e.message.contains("Unknown tool: lock_device"),
        "{}",
        e.message
    );
    assert!(s.sim.requests().is_empty(), "{:?}", s.sim.requests());
}

#[tokio::test]
async fn destructive_tools_are_offered_when_the_operator_turns_them_on() {
    let s = TestApp::builder()
        .config(|c| {
            with_keys(c);
            c.mcp.destructive = true;
        })
        .start()
        .await;
    let all = tools(&client(&s, API_KEY).await).await;
    let lock = find(&all, "lock_device");
    let hints = lock.annotations.clone().unwrap();
    assert_eq!(
        (hints.read_only_hint, hints.destructive_hint),
        (Some(false), Some(true))
    );
    assert!(names(&all).contains("erase_device"));
    // Lock Device returns a PIN: a key without secrets:read still does not see it.
    let invoke = tools(&client(&s, INVOKE).await).await;
    assert!(!names(&invoke).contains("lock_device"));
    assert!(names(&invoke).contains("restart_device"));

    let (mac, _) = first_device(&s, "Mac");
    let c = client(&s, API_KEY).await;
    let r = result(&c, "lock_device", json!({"device_id": mac})).await;
    let out = structured(lock, &r);
    assert_eq!(out["status_code"], 200);
    assert_eq!(out["pin"].as_str().map(str::len), Some(6), "{out}");
    let sent = sent(&s);
    assert_eq!(
        sent,
        [
            format!("POST /api/v1/devices/{mac}/action/lock"),
            format!("GET /api/v1/devices/{mac}")
        ]
    );
    assert_eq!(out["lock_pin"], out["pin"]);
    assert_eq!(out["device_id"], mac);

    // The seed's Number-typed PIN, as an MCP client may send it, and the 2025 ReturnToService
    // inputs: the same request as over HTTP.
    s.sim.clear_requests();
    let (iphone, _) = first_device(&s, "iPhone");
    let erase = find(&all, "erase_device");
    let r = result(
        &c,
        "erase_device",
        json!({"device_id": iphone, "pin": 123456, "return_to_service_enabled": true}),
    )
    .await;
    assert!(r.structured_content.is_some(), "{r:?}");
    let out = structured(erase, &r);
    assert_eq!(out["status_code"], 200, "{out}");
    assert_eq!(out["pin"], "123456");
    let sent = s.sim.requests();
    assert_eq!(sent.len(), 2);
    assert_eq!(
        sent[0].json(),
        Some(json!({"PIN": "123456", "ReturnToService": {"Enabled": true}}))
    );
}

#[tokio::test]
async fn get_device_answers_typed_outputs_on_every_revision() {
    let s = server().await;
    let (mac, serial) = first_device(&s, "Mac");
    let http = s.get_device_outputs(&mac).await;
    s.sim.clear_requests();
    for version in [
        ProtocolVersion::V_2025_06_18,
        ProtocolVersion::V_2025_11_25,
        ProtocolVersion::V_2026_07_28,
    ] {
        let c = client_on(&s, API_KEY, version.clone()).await;
        let all = tools(&c).await;
        let tool = find(&all, "get_device");
        // The connection may be left out: this connector has exactly one.
        let r = get_device_basic(&c, &mac).await;
        assert_eq!(r.is_error, Some(false), "{version}: {r:?}");
        let out = structured(tool, &r);
        assert_eq!(out, http, "{version}: MCP and HTTP answer the same");
        assert_eq!(out["device"]["serial_number"], json!(serial));
        let r = result(
            &c,
            "get_device",
            json!({"device_id": mac, "details": "full", "connection": s.connection}),
        )
        .await;
        let out = structured(tool, &r);
        assert_eq!(out["status_code"], 200, "{version}");
        assert_eq!(out["general"]["device_id"], json!(mac), "{version}: {out}");
    }
    let sent = sent(&s);
    assert_eq!(sent.len(), 6, "{sent:?}");
    assert_eq!(sent[0], format!("GET /api/v1/devices/{mac}"));
    assert_eq!(sent[1], format!("GET /api/v1/devices/{mac}/details"));
}

#[tokio::test]
async fn bad_arguments_name_each_field_and_send_nothing_to_kandji() {
    let s = server().await;
    // 2025-11-25 and later: a tool result the model can read and correct.
    let c = client(&s, API_KEY).await;
    let r = result(
        &c,
        "get_device",
        json!({"details": "everything", "colour": "red"}),
    )
    .await;
    assert_eq!(r.is_error, Some(true), "{r:?}");
    let t = text(&r);
    for said in [
        "device_id: is required",
        "colour: is not a field of this card",
        "details: ",
    ] {
        assert!(t.contains(said), "{said:?} not in {t}");
    }
    assert!(
        !t.contains("everything"),
        "the offending value is echoed: {t}"
    );
    assert!(r.structured_content.is_none(), "{r:?}");
    let r = result(
        &c,
        "get_device",
        json!({"device_id": "x", "details": "basic", "connection": "conn_nope"}),
    )
    .await;
    assert!(
        text(&r).contains("connection: no such connection"),
        "{}",
        text(&r)
    );
    // A stream result set needs its helper flow.
    let r = result(
        &c,
        "list_devices",
        json!({"result_set": "stream_matching_records"}),
    )
    .await;
    assert!(text(&r).contains("helper_flow"), "{}", text(&r));

    // 2025-06-18: invalid arguments are a protocol error, -32602, with the same fields.
    let old = client_on(&s, API_KEY, ProtocolVersion::V_2025_06_18).await;
    let e = call(
        &old,
        "get_device",
        json!({"colour": "red", "details": "basic"}),
    )
    .await
    .unwrap_err();
    let ServiceError::McpError(e) = e else {
        panic!("{e}")
    };
    assert_eq!(e.code, ErrorCode::INVALID_PARAMS);
    let locs: BTreeSet<String> = e.data.as_ref().unwrap()["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            e["loc"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l.as_str().unwrap())
                .collect::<Vec<_>>()
                .join(".")
        })
        .collect();
    assert_eq!(
        locs,
        BTreeSet::from(["colour".to_string(), "device_id".to_string()])
    );
    assert!(s.sim.requests().is_empty(), "{:?}", s.sim.requests());
}

#[tokio::test]
async fn a_kandji_400_is_an_error_result_with_kandjis_message() {
    let s = server().await;
    let (iphone, _) = first_device(&s, "iPhone");
    let c = client(&s, SECRETS).await;
    let all = tools(&c).await;
    let r = result(
        &c,
        "get_mac_recovery_lock_password",
        json!({"device_id": iphone}),
    )
    .await;
    assert_eq!(r.is_error, Some(true), "{r:?}");
    assert!(
        text(&r)
            .starts_with("Kandji answered 400: This secret is only available for Mac computers."),
        "{}",
        text(&r)
    );
    let out = structured(find(&all, "get_mac_recovery_lock_password"), &r);
    assert_eq!(
        out,
        json!({"recovery_password": null, "status_code": 400, "error": "This secret is only available for Mac computers."})
    );
}

#[tokio::test]
async fn a_stream_result_set_starts_a_stream_that_get_stream_reads() {
    let s = server().await;
    let receiver = Receiver::start().await;
    let c = client(&s, API_KEY).await;
    let all = tools(&c).await;
    let r = result(
        &c,
        "list_devices",
        json!({
            "platform": "Mac",
            "result_set": "stream_matching_records",
            "record_limit": 5,
            "helper_flow": {"url": receiver.url()},
        }),
    )
    .await;
    let out = structured(find(&all, "list_devices"), &r);
    assert_eq!(out["status_code"], 202, "{out}");
    let id = out["stream_id"].as_str().unwrap().to_string();
    assert_eq!(out["status_url"], json!(format!("/v1/streams/{id}")));
    let get_stream = find(&all, "get_stream");
    let mut state = Value::Null;
    eventually("the stream succeeds", Duration::from_secs(20), async || {
        let r = result(&c, "get_stream", json!({"stream_id": id})).await;
        state = structured(get_stream, &r);
        state["state"] == "succeeded"
    })
    .await;
    assert_eq!(
        (state["record_count"].as_u64(), state["card"].as_str()),
        (Some(5), Some("list_devices"))
    );
    assert_eq!(receiver.hit_count(), 5);
    // The same stream over HTTP, and another key's view of it: not found.
    assert_eq!(
        s.get(&format!("/v1/streams/{id}")).await.ok()["record_count"],
        5
    );
    let other = client(&s, INVOKE).await;
    let r = result(&other, "get_stream", json!({"stream_id": id})).await;
    assert_eq!(r.is_error, Some(true));
    assert!(text(&r).contains("Not found"), "{}", text(&r));
}

#[tokio::test]
async fn an_idempotency_key_in_meta_replays_the_first_answer_on_either_surface() {
    let s = server().await;
    let c = client(&s, API_KEY).await;
    let keyed = |name: &str, key: &str| {
        let mut meta = RequestMetaObject::default();
        meta.insert(IDEMPOTENCY_META_KEY.into(), json!(key));
        let mut params =
            CallToolRequestParams::new("create_tag").with_arguments(args(json!({"name": name})));
        params.meta = Some(meta);
        params
    };
    let first = c.call_tool(keyed("mcp-tag", "retry-42")).await.unwrap();
    let again = c.call_tool(keyed("mcp-tag", "retry-42")).await.unwrap();
    assert_eq!(first.structured_content, again.structured_content);
    assert_eq!(
        first.structured_content.as_ref().unwrap()["status_code"],
        201
    );
    let posts = || {
        s.sim
            .requests()
            .iter()
            .filter(|r| r.method == "POST")
            .count()
    };
    assert_eq!(posts(), 1, "the repeat reached Kandji");
    // The same key over HTTP, with the same request: the first answer again.
    let body = json!({"connection": s.connection, "inputs": {"name": "mcp-tag"}, "options": {}});
    let r = s
        .post_keyed("/v1/cards/create_tag/invoke", body, "retry-42")
        .await;
    assert_eq!(r.headers["idempotent-replayed"], "true");
    assert_eq!(Some(&r.body["outputs"]), first.structured_content.as_ref());
    assert_eq!(posts(), 1, "the HTTP repeat reached Kandji");
    // The key with other arguments: refused, naming where the key was.
    let r = c.call_tool(keyed("other-tag", "retry-42")).await.unwrap();
    assert_eq!(r.is_error, Some(true));
    assert!(text(&r).contains(IDEMPOTENCY_META_KEY), "{}", text(&r));
    assert_eq!(posts(), 1);
}

#[tokio::test]
async fn the_endpoint_needs_a_key_and_refuses_foreign_origins() {
    let s = TestApp::builder()
        .config(|c| {
            c.mcp.allowed_origins = vec![McpOrigin::parse("https://agent.example.com").unwrap()]
        })
        .start()
        .await;
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "curl", "version": "1"}}});
    let post = |key: Option<&'static str>, origin: Option<&'static str>| {
        let mut r = s
            .http
            .post(format!("{}/mcp", s.url))
            .header("Accept", "application/json, text/event-stream")
            .json(&init);
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        if let Some(o) = origin {
            r = r.header("Origin", o);
        }
        async move {
            let r = r.send().await.unwrap();
            let status = r.status().as_u16();
            if status == 200 {
                assert_eq!(r.headers()["cache-control"], "no-store");
            }
            (status, r.text().await.unwrap())
        }
    };
    let (status, body) = post(None, None).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("Authorization: Bearer"), "{body}");
    for origin in [
        "https://evil.example",
        "http://agent.example.com",
        "null",
        "https://agent.example.com.evil.example",
    ] {
        let (status, body) = post(Some(API_KEY), Some(origin)).await;
        assert_eq!(status, 403, "{origin}: {body}");
        assert!(
            body.contains("KANDJI_CONNECTOR_MCP_ALLOWED_ORIGINS"),
            "{body}"
        );
    }
    // Without Origin (not a web page), or from the allowed origin (default port written out).
    for origin in [
        None,
        Some("https://agent.example.com"),
        Some("https://agent.example.com:443"),
    ] {
        let (status, body) = post(Some(API_KEY), origin).await;
        assert_eq!(status, 200, "{origin:?}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["result"]["protocolVersion"], "2025-06-18", "{body}");
        assert_eq!(v["result"]["serverInfo"]["name"], "kandji-connector");
    }
}

#[test]
fn allowed_origins_are_checked_at_start() {
    assert_eq!(
        McpOrigin::parse_list(" https://a.example , http://localhost:3000").unwrap(),
        vec![
            McpOrigin::parse("https://a.example:443").unwrap(),
            McpOrigin::parse("http://localhost:3000/").unwrap()
        ]
    );
    for bad in [
        "a.example",
        "https://a.example/path",
        "ftp://a.example",
        "https://u:p@a.example",
        "null",
    ] {
        assert!(McpOrigin::parse(bad).is_err(), "{bad}");
    }
}

/// The official Python SDK (`mcp` from PyPI) as the client: tests/mcp_client.py initialises
/// (and, separately, discovers on the newest revision), lists the tools, calls Get Device and
/// checks the structured result against the tool's outputSchema; the interpreter is the one
/// scripts/test.sh prepared (`KANDJI_CONNECTOR_TEST_PYTHON_MCP`).
#[tokio::test]
async fn needs_python_mcp_official_sdk_lists_and_calls_tools() {
    let python = std::env::var("KANDJI_CONNECTOR_TEST_PYTHON_MCP").unwrap_or_else(|_| {
        panic!("this test needs a Python with the `mcp` package: set KANDJI_CONNECTOR_TEST_PYTHON_MCP to its interpreter (scripts/test.sh does, see its python_mcp requirement)")
    });
    let s = server().await;
    let (mac, serial) = first_device(&s, "Mac");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp_client.py");
    for mode in ["legacy", "auto"] {
        let out = tokio::process::Command::new(&python)
            .arg(script)
            .args([
                format!("{}/mcp", s.url),
                API_KEY.to_string(),
                mac.clone(),
                mode.to_string(),
            ])
            .output()
            .await
            .expect("python runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{mode}: {}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let report: Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
            .unwrap_or_else(|e| panic!("{mode}: not a JSON report: {e}\n{stdout}"));
        assert_eq!(report["server"], "kandji-connector", "{report}");
        let tools = report["tools"].as_array().unwrap();
        assert!(
            tools.iter().any(|t| t == "get_device") && !tools.iter().any(|t| t == "lock_device"),
            "{report}"
        );
        assert_eq!(report["result"]["is_error"], false, "{report}");
        assert_eq!(
            report["result"]["structured"]["device"]["serial_number"],
            json!(serial),
            "{report}"
        );
        assert_eq!(report["result"]["structured"]["status_code"], 200);
        if mode == "auto" {
            assert_eq!(report["protocol_version"], "2026-07-28", "{report}");
        } else {
            assert_eq!(report["protocol_version"], "2025-11-25", "{report}");
        }
    }
}

#[tokio::test]
async fn a_trust_read_key_runs_the_device_trust_card_and_nothing_else_on_both_surfaces() {
    // The sync is off, so each lookup below is live: a budget whose live share (10 %) does not
    // space them out.
    let s = TestApp::builder()
        .config(with_keys)
        .requests_per_hour(3_600_000)
        .start()
        .await;
    let (mac, serial) = first_device(&s, "Mac");
    let invoke = async |card: &str, inputs: Value| {
        let path = format!("/v1/cards/{card}/invoke");
        let body = json!({"connection": s.connection, "inputs": inputs});
        s.send(reqwest::Method::POST, &path, Some(body), Some(TRUST))
            .await
    };
    let r = invoke("get_device_trust", json!({"serial_number": serial})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["outputs"]["managed"], true, "{}", r.body);
    // Any other card, or one that does not exist: 403 naming cards:invoke (not a 404 that
    // would tell the catalog to a key without catalog:read).
    for (card, inputs) in [
        ("get_device", json!({"device_id": mac})),
        ("no_such_card", json!({})),
    ] {
        let r = invoke(card, inputs).await;
        r.problem(403);
        assert!(
            r.body["detail"].as_str().unwrap().contains("cards:invoke"),
            "{}",
            r.body
        );
    }
    let c = client(&s, TRUST).await;
    let all = tools(&c).await;
    let r = result(&c, "get_device_trust", json!({"serial_number": serial})).await;
    assert_eq!(
        structured(find(&all, "get_device_trust"), &r)["managed"],
        true
    );
    let e = call(
        &c,
        "get_device",
        json!({"device_id": mac, "details": "basic"}),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("Unknown tool"), "{e}");
}

/// An operator's card whose input is called `connection` (a name the connector puts beside the
/// card's own): its tool takes the HTTP body's shape, `{"connection", "inputs", "options"}`.
#[tokio::test]
async fn a_card_whose_names_clash_takes_the_http_bodys_shape() {
    let mut card = builtin_card("get_device");
    card["id"] = json!("get_device_nested");
    card["input_schema"]["properties"]["connection"] =
        json!({"title": "Connection", "type": "string", "description": "unused"});
    let cards = operator_cards(&[&card]);
    let s = TestApp::builder().cards_dir(cards.path()).start().await;
    let (mac, serial) = first_device(&s, "Mac");
    let c = client(&s, API_KEY).await;
    let all = tools(&c).await;
    let tool = find(&all, "get_device_nested");
    let props = &tool.input_schema["properties"];
    assert!(
        props["inputs"]["properties"]["connection"].is_object(),
        "{props}"
    );
    assert_eq!(
        props["options"]["properties"]["details"]["enum"],
        json!(["basic", "full"])
    );
    // The flat tools are unchanged.
    assert!(find(&all, "get_device").input_schema["properties"]["device_id"].is_object());
    let r = result(&c,
        "get_device_nested",
        json!({"connection": s.connection, "inputs": {"device_id": mac}, "options": {"details": "basic"}})).await;
    assert_eq!(
        structured(tool, &r)["device"]["serial_number"],
        json!(serial)
    );
    // Errors keep the body's locations.
    let r = result(
        &c,
        "get_device_nested",
        json!({"inputs": {}, "options": {"details": "basic"}}),
    )
    .await;
    assert!(
        text(&r).contains("inputs.device_id: is required"),
        "{}",
        text(&r)
    );
}

/// Both surfaces count their invocations under the same card, told apart by `surface`.
#[tokio::test]
async fn invocations_are_counted_by_surface() {
    let s = server().await;
    let (mac, _) = first_device(&s, "Mac");
    s.get_device_outputs(&mac).await;
    let c = client(&s, API_KEY).await;
    for _ in 0..2 {
        let r = get_device_basic(&c, &mac).await;
        assert_eq!(r.is_error, Some(false), "{r:?}");
    }
    let text = s.get("/metrics").await.body.as_str().unwrap().to_string();
    let value = |series: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .map(|v| v.parse::<f64>().unwrap())
    };
    for (surface, n) in [("http", 1.0), ("mcp", 2.0)] {
        let series = format!(
            "kandji_connector_card_invocations_total{{card=\"get_device\",outcome=\"ok\",surface=\"{surface}\"}}"
        );
        assert_eq!(value(&series), Some(n), "{series} in {text}");
    }
    assert!(
        text.contains("http_route=\"/mcp\""),
        "MCP requests are HTTP requests too: {text}"
    );
}
