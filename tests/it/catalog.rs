//! `kandji-connector cards check --dir`: an operator's extra card files are checked before the
//! server would load them, each error names the file and the JSON pointer, and a card's JSON
//! Schema is never allowed to reach out to the network (no `$ref` fetching).

use std::net::TcpListener;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

fn restart_card() -> Value {
    json!({
        "id": "restart_device_twice",
        "title": "Restart Device Twice",
        "description": "An operator's own card.",
        "category": "Device actions",
        "effect": "change",
        "input_schema": {
            "type": "object",
            "additionalProperties": false,
            "required": ["device_id"],
            "properties": {
                "device_id": {"title": "Device ID", "type": "string", "minLength": 1}
            }
        },
        "requests": [{"method": "POST", "path": "/devices/{device_id}/action/restart"}],
        "output_schema": {
            "type": "object",
            "properties": {
                "status_code": {"title": "Status Code", "type": "integer", "x-source": "$status"}
            }
        }
    })
}

fn check(dir: &std::path::Path) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kandji-connector"))
        .args(["cards", "check", "--dir"])
        .arg(dir)
        .env_remove("KANDJI_CONNECTOR_CARDS_DIR")
        .output()
        .expect("run kandji-connector cards check");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write(dir: &std::path::Path, name: &str, card: &Value) {
    std::fs::write(dir.join(name), serde_json::to_vec_pretty(card).unwrap()).unwrap();
}

#[test]
fn a_valid_extra_card_is_counted_with_the_builtin_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, stdout, _) = check(dir.path());
    assert!(ok);
    let builtin: usize = stdout.split_whitespace().next().unwrap().parse().unwrap();

    write(dir.path(), "restart_device_twice.json", &restart_card());
    let (ok, stdout, stderr) = check(dir.path());
    assert!(ok, "{stderr}");
    let mut lines = stdout.lines();
    assert_eq!(
        lines.next(),
        Some(format!("{} cards are valid", builtin + 1).as_str())
    );
    // The event cards (cards/events/) are checked too.
    assert!(
        lines
            .next()
            .is_some_and(|l| l.ends_with(" event cards are valid")),
        "{stdout}"
    );
}

#[test]
fn each_error_names_the_file_and_the_place_in_it() {
    let dir = tempfile::tempdir().unwrap();
    // The id must match the file name.
    write(dir.path(), "not_the_id.json", &restart_card());
    // A path placeholder with no input behind it.
    let mut unknown_placeholder = restart_card();
    unknown_placeholder["id"] = json!("restart_unknown");
    unknown_placeholder["requests"][0]["path"] = json!("/devices/{serial}/action/restart");
    write(dir.path(), "restart_unknown.json", &unknown_placeholder);
    // Not a JSON object at all.
    std::fs::write(dir.path().join("broken.json"), b"{\"id\": ").unwrap();

    let (ok, _, stderr) = check(dir.path());
    assert!(!ok);
    assert!(
        stderr.contains("not_the_id.json") && stderr.contains("must match the file name"),
        "{stderr}"
    );
    assert!(
        stderr.contains("restart_unknown.json") && stderr.contains("serial"),
        "{stderr}"
    );
    assert!(stderr.contains("broken.json"), "{stderr}");
}

#[test]
fn a_remote_schema_reference_is_refused_without_being_fetched() {
    // Something listening where the card's $ref points, counting every connection it gets.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let counter = {
        let (hits, stop) = (hits.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                if listener.accept().is_ok() {
                    hits.fetch_add(1, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };

    let dir = tempfile::tempdir().unwrap();
    let mut card = restart_card();
    card["input_schema"]["properties"]["device_id"] = json!({"title": "Device ID", "type": "string", "$ref": format!("http://127.0.0.1:{port}/device_id.json")});
    write(dir.path(), "restart_device_twice.json", &card);
    let (ok, _, stderr) = check(dir.path());

    stop.store(true, Ordering::SeqCst);
    counter.join().unwrap();
    assert!(!ok, "a card with a remote $ref must be refused");
    assert!(
        stderr.contains("restart_device_twice.json: /input_schema: not a valid JSON Schema")
            && stderr.contains(&format!("http://127.0.0.1:{port}/device_id.json")),
        "{stderr}"
    );
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "checking a card must not fetch its $ref"
    );
}
