//! `kandji-connector demo`: the server plus a simulated tenant, registered and ready to invoke.

use std::net::SocketAddr;

use anyhow::Context;
use secrecy::SecretString;

use crate::config::Config;
use crate::simulator::{self, SimConfig};
use crate::store::{ConnectionPatch, NewConnection, TokenCipher};
use crate::streams::{CallbackPolicy, StreamConfig};

pub async fn run(listen: SocketAddr, devices: usize) -> anyhow::Result<()> {
    let sim_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sim = simulator::start(
        sim_listener,
        SimConfig {
            devices,
            ..Default::default()
        },
    )
    .await;
    let (cipher, _) = TokenCipher::generate();
    let api_key = format!("demo_{}", uuid::Uuid::new_v4().simple());
    let db = std::env::temp_dir().join(format!(
        "kandji-connector-demo-{}.db",
        uuid::Uuid::new_v4().simple()
    ));
    let config = Config {
        listen,
        // Streams may call back a helper flow on this machine.
        streams: StreamConfig {
            allow: CallbackPolicy::parse("127.0.0.1/32").expect("a valid CIDR"),
            ..StreamConfig::default()
        },
        // Events show up within seconds (the default polls Kandji's audit log once a minute).
        events: crate::events::EventsConfig {
            interval: std::time::Duration::from_secs(5),
            ..Default::default()
        },
        ..Config::defaults(
            format!("sqlite://{}?mode=rwc", db.display()),
            cipher,
            vec![crate::api::auth::ApiKey::all(&SecretString::from(
                api_key.clone(),
            ))],
        )
    };
    let state = crate::build_state(config).await?;
    let conn = state
        .store
        .create_connection(NewConnection {
            name: "Simulated tenant".into(),
            api_url: sim.base_url(),
            api_token: SecretString::from(sim.token()),
            requests_per_hour: None,
        })
        .await
        .context("cannot register the simulated tenant")?;
    // Keep its device inventory, so device-trust lookups answer without asking Kandji.
    state
        .store
        .update_connection(
            &conn.id,
            ConnectionPatch {
                inventory_sync: Some(true),
                ..Default::default()
            },
        )
        .await
        .context("cannot turn on the inventory sync")?;
    state.trust.enable(&conn.id).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (pass --listen 127.0.0.1:<port>)"))?;
    let addr = listener.local_addr()?;
    let (device_id, serial) = sim
        .tenant()
        .devices
        .first()
        .map(|d| (d.device_id, d.serial_number.to_string()))
        .unwrap_or_default();
    println!(
        r#"
kandji-connector demo: {cards} cards, simulated Kandji tenant with {devices} devices at {sim_url}

  API key:        {api_key}
  Connection id:  {conn_id}

Open the console in a browser and paste the API key: http://{addr}/

Browse the catalog:
  curl -s -H 'Authorization: Bearer {api_key}' http://{addr}/v1/cards

Run a card:
  curl -s -H 'Authorization: Bearer {api_key}' -H 'Content-Type: application/json' \
    -d '{{"connection":"{conn_id}","inputs":{{}},"options":{{"result_set":"first_200_matching_records"}}}}' \
    http://{addr}/v1/cards/list_devices/invoke

  curl -s -H 'Authorization: Bearer {api_key}' -H 'Content-Type: application/json' \
    -d '{{"connection":"{conn_id}","inputs":{{"device_id":"{device_id}"}},"options":{{"details":"basic"}}}}' \
    http://{addr}/v1/cards/get_device/invoke

Is a device managed? (from the synced inventory, without a request to Kandji):
  curl -s -H 'Authorization: Bearer {api_key}' \
    'http://{addr}/v1/connections/{conn_id}/device-trust?serial_number={serial}'

Events (Kandji sends no webhooks: its audit log is polled, every 5 s in this demo). Subscribe a
URL of yours (non-public addresses other than 127.0.0.1 need KANDJI_CONNECTOR_CALLBACK_ALLOW),
then enroll a Mac in the simulated tenant; the URL receives a signed Device Enrolled event:
  curl -s -H 'Authorization: Bearer {api_key}' -H 'Content-Type: application/json' \
    -d '{{"connection":"{conn_id}","event":"device_enrolled","url":"http://127.0.0.1:9000/hook","secret":"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}}' \
    http://{addr}/v1/subscriptions
  curl -s -X POST -H 'Authorization: Bearer {sim_token}' -H 'Content-Type: application/json' \
    -d '{{"platform":"Mac"}}' {sim_url}/_sim/devices
  (event cards: GET /v1/events; deliveries: GET /v1/subscriptions/<id>/deliveries)

AI agents (MCP, Streamable HTTP): http://{addr}/mcp with the header 'Authorization: Bearer {api_key}'

Ctrl-C stops the demo.
"#,
        cards = state.catalog.len(),
        sim_url = sim.base_url(),
        sim_token = sim.token(),
        conn_id = conn.id,
    );
    let result = crate::serve(state, listener, crate::shutdown_signal()).await;
    let _ = std::fs::remove_file(&db);
    result
}
