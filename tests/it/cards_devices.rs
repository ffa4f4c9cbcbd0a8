//! The device cards against the simulated tenant: the exact request that reached Kandji
//! (method, path, query, body and its encoding), how many, and the outputs the caller got,
//! Kandji's errors included.

use crate::harness::TestApp;
use crate::harness::kandji::*;
use kandji_connector::simulator::Fault;
use serde_json::{Value, json};

// ---- MDM commands without a body ----

/// (card, Kandji action, a platform that accepts it, a platform Kandji refuses it for)
const BARE_ACTIONS: &[(&str, &str, &str, Option<&str>)] = &[
    ("clear_passcode", "clearpasscode", "iPhone", Some("Mac")),
    (
        "reinstall_kandji_agent",
        "reinstallagent",
        "Mac",
        Some("iPad"),
    ),
    ("restart_device", "restart", "Mac", None),
    ("send_mdm_blank_push", "blankpush", "iPad", None),
    ("shutdown_device", "shutdown", "iPhone", None),
    ("update_inventory", "updateinventory", "AppleTV", None),
];

#[tokio::test]
async fn bare_mdm_commands_post_without_a_body() {
    let s = start().await;
    for &(card, action, ok, refused) in BARE_ACTIONS {
        let d = device(&s, ok);
        let out = s
            .outputs(card, json!({"device_id": id(&d)}), json!({}))
            .await;
        let r = only(
            &s,
            &format!("POST /api/v1/devices/{}/action/{action}", id(&d)),
        );
        assert_no_body(&r);
        assert_eq!(r.header("accept"), Some(JSON));
        assert_eq!(out, json!({"status_code": 200}), "{card}");

        if let Some(p) = refused {
            let d = device(&s, p);
            let out = s
                .outputs(card, json!({"device_id": id(&d)}), json!({}))
                .await;
            only(
                &s,
                &format!("POST /api/v1/devices/{}/action/{action}", id(&d)),
            );
            assert_eq!(
                out,
                json!({"status_code": 400, "error": "Command is not allowed for current device"}),
                "{card} on a {p}"
            );
        }
    }
    // Kandji queued the commands it accepted.
    let t = s.sim.tenant();
    let iphone = t.first_device_of("iPhone").unwrap().device_id;
    let types: Vec<&str> = t.commands[&iphone].iter().map(|c| c.request_type).collect();
    assert_eq!(types, ["ClearPasscode", "ShutDownDevice"]);
}

#[tokio::test]
async fn clear_passcode_on_a_mac_passes_kandjis_400_through() {
    let s = start().await;
    let mac = device(&s, "Mac");
    let r = s
        .invoke("clear_passcode", json!({"device_id": id(&mac)}), json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.content_type(), JSON);
    assert_eq!(
        r.body,
        json!({"outputs": {"status_code": 400, "error": "Command is not allowed for current device"}})
    );
    let req = only(
        &s,
        &format!("POST /api/v1/devices/{}/action/clearpasscode", id(&mac)),
    );
    assert_no_body(&req);
}

#[tokio::test]
async fn an_unknown_device_is_kandjis_404_passed_through() {
    let s = start().await;
    let nobody = unknown_id();
    for (card, path) in [
        (
            "restart_device",
            format!("/devices/{nobody}/action/restart"),
        ),
        ("get_device", format!("/devices/{nobody}")),
        ("list_device_apps", format!("/devices/{nobody}/apps")),
        (
            "get_filevault_recovery_key",
            format!("/devices/{nobody}/secrets/filevaultkey"),
        ),
    ] {
        let options = if card == "get_device" {
            json!({"details": "basic"})
        } else {
            json!({})
        };
        let out = s.outputs(card, json!({"device_id": nobody}), options).await;
        let method = if card == "restart_device" {
            "POST"
        } else {
            "GET"
        };
        only(&s, &format!("{method} /api/v1{path}"));
        assert_eq!(out["status_code"], 404, "{card}: {out}");
        assert_eq!(out["error"], "Not found.", "{card}: {out}");
        for (k, v) in out.as_object().unwrap() {
            if k != "status_code" && k != "error" {
                assert!(v.is_null(), "{card}: {k} = {v} on a 404");
            }
        }
    }
}

#[tokio::test]
async fn kandjis_html_404_and_5xx_are_passed_through() {
    let s = start().await;
    let mac = id(&device(&s, "Mac"));
    // Kandji answers some library endpoints with Django's HTML page.
    let html = "<!doctype html>\n<html lang=\"en\">\n<head>\n  <title>Not Found</title>\n</head>\n<body>\n  <h1>Not Found</h1><p>The requested resource was not found on this server.</p>\n</body>\n</html>\n";
    s.sim
        .push_faults(Some("/library-items"), vec![answer(404, html)]);
    let out = s
        .outputs(
            "list_device_library_items",
            json!({"device_id": mac}),
            json!({}),
        )
        .await;
    only(&s, &format!("GET /api/v1/devices/{mac}/library-items"));
    assert_eq!(
        out,
        json!({"status_code": 404, "items_list": null, "error": "Not Found"})
    );

    // A 500 to a command: passed through, not re-sent, and no device lookup after it.
    let iphone = id(&device(&s, "iPhone"));
    s.sim
        .push_faults(Some("/action/enablelostmode"), vec![Fault::status(500)]);
    let out = s
        .outputs(
            "turn_on_lost_mode",
            json!({"device_id": iphone, "lock_message": "Lost"}),
            json!({}),
        )
        .await;
    only(
        &s,
        &format!("POST /api/v1/devices/{iphone}/action/enablelostmode"),
    );
    assert_eq!(
        out,
        json!({
            "device_id": iphone,
            "device_name": null,
            "serial_number": null,
            "platform": null,
            "user_email": null,
            "status_code": 500,
            "message": "Internal Server Error",
            "error": "Internal Server Error",
            "lookup_error": null,
        })
    );
}

// ---- MDM commands with a body ----

/// Lock and Erase Device's outputs about the device (the 2025 cards'), read back with
/// `GET /devices/{id}` after Kandji accepted the command, merged with `rest`.
fn device_outputs(s: &TestApp, d: &kandji_connector::simulator::Device, rest: Value) -> Value {
    let mut out = json!({
        "device_id": id(d),
        "device_name": d.device_name.to_string(),
        "serial_number": d.serial_number.to_string(),
        "platform": d.platform.as_str(),
        "user_email": user_email(s, d),
        "message": null,
        "lookup_error": null,
    });
    for (k, v) in rest.as_object().unwrap() {
        out[k] = v.clone();
    }
    out
}

/// The command, then the read-back of the device; returns the command.
#[track_caller]
fn command_then_read(
    s: &TestApp,
    d: &kandji_connector::simulator::Device,
    action: &str,
) -> kandji_connector::simulator::RecordedRequest {
    let mut reqs = take(s, 2);
    assert_eq!(
        line(&reqs[1]),
        format!("GET /api/v1/devices/{}", id(d)),
        "the device read back"
    );
    assert_no_body(&reqs[1]);
    let cmd = reqs.remove(0);
    assert_eq!(
        line(&cmd),
        format!("POST /api/v1/devices/{}/action/{action}", id(d))
    );
    cmd
}

#[tokio::test]
async fn erase_sends_pin_and_flags_and_echoes_the_pin() {
    let s = start().await;
    let mac = device(&s, "Mac");
    let r = s
        .invoke(
            "erase_device",
            json!({"device_id": id(&mac), "pin": "012345", "preserve_data_plan": true, "disallow_proximity_setup": false}),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        no_store(&r),
        "a PIN was answered without Cache-Control: no-store"
    );
    assert_eq!(
        r.body["outputs"],
        device_outputs(&s, &mac, json!({"pin": "012345", "status_code": 200}))
    );
    let req = command_then_read(&s, &mac, "erase");
    assert_json(
        &req,
        json!({"PIN": "012345", "PreserveDataPlan": true, "DisallowProximitySetup": false}),
    );

    // iOS: no PIN; the flags as given.
    let iphone = device(&s, "iPhone");
    let out = s
        .outputs(
            "erase_device",
            json!({"device_id": id(&iphone), "preserve_data_plan": false, "disallow_proximity_setup": true}),
            json!({}),
        )
        .await;
    assert_eq!(
        out,
        device_outputs(&s, &iphone, json!({"pin": null, "status_code": 200}))
    );
    let req = command_then_read(&s, &iphone, "erase");
    assert_json(
        &req,
        json!({"PreserveDataPlan": false, "DisallowProximitySetup": true}),
    );

    // Nothing optional given: no body at all.
    let ipad = device(&s, "iPad");
    let out = s
        .outputs("erase_device", json!({"device_id": id(&ipad)}), json!({}))
        .await;
    assert_eq!(
        out,
        device_outputs(&s, &ipad, json!({"pin": null, "status_code": 200}))
    );
    let req = command_then_read(&s, &ipad, "erase");
    assert_no_body(&req);
}

#[tokio::test]
async fn lock_returns_a_macs_pin_uncached_and_kandjis_errors() {
    let s = start().await;
    let mac = device(&s, "Mac");
    let r = s
        .invoke("lock_device", json!({"device_id": id(&mac)}), json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(no_store(&r), "the unlock PIN was answered cacheable");
    let req = command_then_read(&s, &mac, "lock");
    assert_no_body(&req);
    let out = &r.body["outputs"];
    let pin = out["pin"].as_str().expect("a PIN").to_string();
    assert_eq!(
        *out,
        device_outputs(
            &s,
            &mac,
            json!({"pin": pin, "lock_pin": pin, "status_code": 200})
        )
    );
    assert!(
        pin.len() == 6 && pin.chars().all(|c| c.is_ascii_digit()),
        "{pin}"
    );
    let stored = s
        .sim
        .tenant()
        .device(&mac.device_id)
        .unwrap()
        .unlock_pin
        .clone();
    assert_eq!(stored.as_deref(), Some(pin.as_str()));

    // Get Unlock PIN now reads the same PIN.
    let r = s
        .invoke("get_unlock_pin", json!({"device_id": id(&mac)}), json!({}))
        .await;
    assert!(no_store(&r));
    assert_eq!(r.body["outputs"], json!({"pin": pin, "status_code": 200}));
    only(
        &s,
        &format!("GET /api/v1/devices/{}/secrets/unlockpin", id(&mac)),
    );

    // A second lock: Kandji's bare-string 400.
    let out = s
        .outputs("lock_device", json!({"device_id": id(&mac)}), json!({}))
        .await;
    // Kandji's 400 names the device: it is still read back.
    command_then_read(&s, &mac, "lock");
    assert_eq!(
        out,
        device_outputs(
            &s,
            &mac,
            json!({"pin": null, "lock_pin": null, "status_code": 400, "error": "This device is already locked.", "message": "This device is already locked."})
        )
    );

    // An iPhone locks without a PIN.
    let iphone = device(&s, "iPhone");
    let out = s
        .outputs("lock_device", json!({"device_id": id(&iphone)}), json!({}))
        .await;
    command_then_read(&s, &iphone, "lock");
    assert_eq!(
        out,
        device_outputs(
            &s,
            &iphone,
            json!({"pin": null, "lock_pin": null, "status_code": 200})
        )
    );

    // An Apple TV cannot be locked.
    let tv = device(&s, "AppleTV");
    let out = s
        .outputs("lock_device", json!({"device_id": id(&tv)}), json!({}))
        .await;
    command_then_read(&s, &tv, "lock");
    assert_eq!(
        out,
        device_outputs(
            &s,
            &tv,
            json!({"pin": null, "lock_pin": null, "status_code": 400, "error": "Command is not allowed for current device", "message": "Command is not allowed for current device"})
        )
    );
}

#[tokio::test]
async fn set_device_name_sends_device_name() {
    let s = start().await;
    let ipad = device(&s, "iPad");
    let out = s
        .outputs(
            "set_device_name",
            json!({"device_id": id(&ipad), "device_name": "Front Desk iPad"}),
            json!({}),
        )
        .await;
    assert_eq!(out, json!({"status_code": 200}));
    let req = only(
        &s,
        &format!("POST /api/v1/devices/{}/action/setname", id(&ipad)),
    );
    assert_json(&req, json!({"DeviceName": "Front Desk iPad"}));
    assert_eq!(
        &*s.sim.tenant().device(&ipad.device_id).unwrap().device_name,
        "Front Desk iPad"
    );
}

#[tokio::test]
async fn unlock_user_account_sends_the_user_name() {
    let s = start().await;
    let mac = device(&s, "Mac");
    let out = s
        .outputs(
            "unlock_user_account",
            json!({"device_id": id(&mac), "username": "jappleseed"}),
            json!({}),
        )
        .await;
    assert_eq!(out, json!({"status_code": 200}));
    let req = only(
        &s,
        &format!("POST /api/v1/devices/{}/action/unlockaccount", id(&mac)),
    );
    assert_json(&req, json!({"UserName": "jappleseed"}));

    let iphone = device(&s, "iPhone");
    let out = s
        .outputs(
            "unlock_user_account",
            json!({"device_id": id(&iphone), "username": "jappleseed"}),
            json!({}),
        )
        .await;
    let req = only(
        &s,
        &format!("POST /api/v1/devices/{}/action/unlockaccount", id(&iphone)),
    );
    assert_json(&req, json!({"UserName": "jappleseed"}));
    assert_eq!(
        out,
        json!({"status_code": 400, "error": "Command is not allowed for current device"})
    );
}

#[tokio::test]
async fn manage_remote_desktop_maps_on_and_off_to_booleans() {
    let s = start().await;
    let mac = device(&s, "Mac");
    for (choice, enable) in [("On", true), ("Off", false)] {
        let out = s
            .outputs(
                "manage_apple_remote_desktop",
                json!({"device_id": id(&mac), "manage_remote_desktop": choice}),
                json!({}),
            )
            .await;
        assert_eq!(out, json!({"status_code": 200, "body": null}), "{choice}");
        let req = only(
            &s,
            &format!("POST /api/v1/devices/{}/action/remotedesktop", id(&mac)),
        );
        assert_json(&req, json!({"EnableRemoteDesktop": enable}));
        assert_eq!(
            s.sim
                .tenant()
                .device(&mac.device_id)
                .unwrap()
                .remote_desktop_enabled,
            enable
        );
    }
    // On an iPad: Kandji's 400, its explanation in Body.
    let ipad = device(&s, "iPad");
    let out = s
        .outputs(
            "manage_apple_remote_desktop",
            json!({"device_id": id(&ipad), "manage_remote_desktop": "On"}),
            json!({}),
        )
        .await;
    take(&s, 1);
    assert_eq!(
        out,
        json!({
            "status_code": 400,
            "body": "Command is not allowed for current device",
            "error": "Command is not allowed for current device",
        })
    );
}

// ---- Lost Mode: the action, then a device lookup for the outputs Kandji does not return ----

/// The device outputs the lost-mode cards compose from `GET /devices/{id}`.
fn lost_mode_outputs(s: &TestApp, d: &kandji_connector::simulator::Device) -> Value {
    json!({
        "device_id": id(d),
        "device_name": d.device_name,
        "serial_number": d.serial_number,
        "platform": d.platform.as_str(),
        "user_email": user_email(s, d),
        // The device was read after the command.
        "lookup_error": null,
    })
}

fn with(mut base: Value, extra: Value) -> Value {
    let m = base.as_object_mut().unwrap();
    for (k, v) in extra.as_object().unwrap() {
        m.insert(k.clone(), v.clone());
    }
    base
}

#[tokio::test]
async fn lost_mode_cards_send_the_action_then_look_the_device_up() {
    let s = start().await;
    let iphone = device(&s, "iPhone");
    let dev = id(&iphone);
    let device_outputs = lost_mode_outputs(&s, &iphone);
    assert!(device_outputs["user_email"].is_string());

    // Turn On: Message/PhoneNumber/Footnote, then the lookup.
    let out = s
        .outputs(
            "turn_on_lost_mode",
            json!({"device_id": dev, "lock_message": "Please return this iPhone", "phone_number": "+1 415 555 0100", "footnote": "Reward offered"}),
            json!({}),
        )
        .await;
    let reqs = take(&s, 2);
    assert_eq!(
        line(&reqs[0]),
        format!("POST /api/v1/devices/{dev}/action/enablelostmode")
    );
    assert_json(
        &reqs[0],
        json!({"Message": "Please return this iPhone", "PhoneNumber": "+1 415 555 0100", "Footnote": "Reward offered"}),
    );
    assert_eq!(line(&reqs[1]), format!("GET /api/v1/devices/{dev}"));
    assert_no_body(&reqs[1]);
    assert_eq!(
        out,
        with(
            device_outputs.clone(),
            json!({"status_code": 200, "message": "Please return this iPhone"})
        )
    );
    {
        let t = s.sim.tenant();
        let lm = t.device(&iphone.device_id).unwrap().lost_mode.clone();
        let lm = lm.expect("in Lost Mode");
        assert_eq!(
            (
                lm.message.as_str(),
                lm.phone_number.as_str(),
                lm.footnote.as_str()
            ),
            (
                "Please return this iPhone",
                "+1 415 555 0100",
                "Reward offered"
            )
        );
    }

    for (card, action) in [
        ("play_lost_mode_sound", "playlostmodesound"),
        ("update_lost_mode_location", "updatelocation"),
        ("turn_off_lost_mode", "disablelostmode"),
    ] {
        let out = s.outputs(card, json!({"device_id": dev}), json!({})).await;
        let reqs = take(&s, 2);
        assert_eq!(
            line(&reqs[0]),
            format!("POST /api/v1/devices/{dev}/action/{action}"),
            "{card}"
        );
        assert_no_body(&reqs[0]);
        assert_eq!(line(&reqs[1]), format!("GET /api/v1/devices/{dev}"));
        assert_eq!(
            out,
            with(
                device_outputs.clone(),
                json!({"status_code": 200, "message": null})
            ),
            "{card}"
        );
    }
    assert!(
        s.sim
            .tenant()
            .device(&iphone.device_id)
            .unwrap()
            .lost_mode
            .is_none()
    );

    // Out of Lost Mode now: Kandji's list-of-strings 400, still with the device's fields.
    for (card, action) in [
        ("play_lost_mode_sound", "playlostmodesound"),
        ("update_lost_mode_location", "updatelocation"),
        ("turn_off_lost_mode", "disablelostmode"),
    ] {
        let out = s.outputs(card, json!({"device_id": dev}), json!({})).await;
        let reqs = take(&s, 2);
        assert_eq!(
            line(&reqs[0]),
            format!("POST /api/v1/devices/{dev}/action/{action}")
        );
        assert_eq!(line(&reqs[1]), format!("GET /api/v1/devices/{dev}"));
        assert_eq!(
            out,
            with(
                device_outputs.clone(),
                json!({
                    "status_code": 400,
                    "message": "Device is not in lost mode.",
                    "error": "Device is not in lost mode.",
                })
            ),
            "{card}"
        );
    }
}

#[tokio::test]
async fn turn_on_lost_mode_sends_only_what_was_given_and_passes_refusals_through() {
    let s = start().await;
    let ipad = device(&s, "iPad");
    let out = s
        .outputs(
            "turn_on_lost_mode",
            json!({"device_id": id(&ipad), "phone_number": "5550100"}),
            json!({}),
        )
        .await;
    let reqs = take(&s, 2);
    assert_json(&reqs[0], json!({"PhoneNumber": "5550100"}));
    assert_eq!(
        out,
        with(
            lost_mode_outputs(&s, &ipad),
            json!({"status_code": 200, "message": null})
        )
    );

    // A Mac: Kandji refuses; the lookup still fills the device fields.
    let mac = device(&s, "Mac");
    let out = s
        .outputs(
            "turn_on_lost_mode",
            json!({"device_id": id(&mac), "lock_message": "Lost"}),
            json!({}),
        )
        .await;
    let reqs = take(&s, 2);
    assert_eq!(
        line(&reqs[0]),
        format!("POST /api/v1/devices/{}/action/enablelostmode", id(&mac))
    );
    assert_json(&reqs[0], json!({"Message": "Lost"}));
    assert_eq!(
        out,
        with(
            lost_mode_outputs(&s, &mac),
            json!({
                "status_code": 400,
                "message": "Command is not allowed for current device",
                "error": "Command is not allowed for current device",
            })
        )
    );

    // An unknown device: Kandji's 404; no lookup (it would 404 too), the ID echoed.
    let nobody = unknown_id();
    let out = s
        .outputs(
            "turn_on_lost_mode",
            json!({"device_id": nobody, "lock_message": "Lost"}),
            json!({}),
        )
        .await;
    only(
        &s,
        &format!("POST /api/v1/devices/{nobody}/action/enablelostmode"),
    );
    assert_eq!(
        out,
        json!({
            "device_id": nobody,
            "device_name": null,
            "serial_number": null,
            "platform": null,
            "user_email": null,
            "status_code": 404,
            "message": "Not found.",
            "error": "Not found.",
            "lookup_error": null,
        })
    );
}

// ---- Notes ----

#[tokio::test]
async fn create_note_posts_content_and_returns_the_note() {
    let s = start().await;
    let mac = device(&s, "Mac");
    let text = "Loaner <b>returned</b> & checked";
    let out = s
        .outputs(
            "create_note",
            json!({"device_id": id(&mac), "note": text}),
            json!({}),
        )
        .await;
    let req = only(&s, &format!("POST /api/v1/devices/{}/notes", id(&mac)));
    assert_json(&req, json!({"content": text}));
    assert_keys(&out, &["note", "status_code"]);
    assert_eq!(out["status_code"], 201);
    let note = s
        .sim
        .tenant()
        .notes_of(&mac.device_id)
        .last()
        .cloned()
        .expect("the note was stored");
    assert_eq!(
        out["note"],
        json!({
            "note_id": note.note_id.to_string(),
            "created_at": ts_iso(&note.created_at),
            "updated_at": ts_iso(&note.updated_at),
            "author": "Kandji API",
            "content": text,
        })
    );

    // DRF's field error for a blank note: passed through, and no note made of the error.
    let out = s
        .outputs(
            "create_note",
            json!({"device_id": id(&mac), "note": "   "}),
            json!({}),
        )
        .await;
    take(&s, 1);
    assert_eq!(
        out,
        json!({"status_code": 400, "note": null, "error": "content: This field may not be blank."})
    );
}

#[tokio::test]
async fn list_device_notes_reads_kandjis_list() {
    let s = start().await;
    let (with_notes, count) = {
        let t = s.sim.tenant();
        let (d, n) = t
            .notes
            .iter()
            .find(|(_, n)| !n.is_empty())
            .expect("a device with notes");
        (d.to_string(), n.len())
    };
    let raw = kandji(&s, &format!("/devices/{with_notes}/notes")).await;
    assert!(raw.is_array());
    let out = s
        .outputs(
            "list_device_notes",
            json!({"device_id": with_notes}),
            json!({}),
        )
        .await;
    let req = only(&s, &format!("GET /api/v1/devices/{with_notes}/notes"));
    assert_no_body(&req);
    assert_eq!(out, json!({"status_code": 200, "notes": raw}));
    assert_eq!(out["notes"].as_array().unwrap().len(), count);

    let without = {
        let t = s.sim.tenant();
        t.devices
            .iter()
            .find(|d| t.notes_of(&d.device_id).is_empty())
            .unwrap()
            .device_id
            .to_string()
    };
    let out = s
        .outputs(
            "list_device_notes",
            json!({"device_id": without}),
            json!({}),
        )
        .await;
    only(&s, &format!("GET /api/v1/devices/{without}/notes"));
    assert_eq!(out, json!({"status_code": 200, "notes": []}));
}

// ---- Reads ----

#[tokio::test]
async fn list_device_apps_and_library_items_read_kandjis_lists() {
    let s = start().await;
    for platform in ["Mac", "iPhone"] {
        let d = device(&s, platform);
        let dev = id(&d);
        let raw = kandji(&s, &format!("/devices/{dev}/apps")).await;
        let out = s
            .outputs("list_device_apps", json!({"device_id": dev}), json!({}))
            .await;
        only(&s, &format!("GET /api/v1/devices/{dev}/apps"));
        assert!(!raw["apps"].as_array().unwrap().is_empty());
        assert_eq!(out, json!({"status_code": 200, "apps": raw["apps"]}));

        let raw = kandji(&s, &format!("/devices/{dev}/library-items")).await;
        let out = s
            .outputs(
                "list_device_library_items",
                json!({"device_id": dev}),
                json!({}),
            )
            .await;
        only(&s, &format!("GET /api/v1/devices/{dev}/library-items"));
        assert!(!raw["library_items"].as_array().unwrap().is_empty());
        assert_eq!(
            out,
            json!({"status_code": 200, "items_list": raw["library_items"]})
        );
    }
}

#[tokio::test]
async fn secrets_are_read_uncached_and_mac_only_ones_pass_kandjis_400() {
    let s = start().await;
    let mac = device(&s, "Mac");
    let dev = id(&mac);

    let raw = kandji(&s, &format!("/devices/{dev}/secrets/filevaultkey")).await;
    let r = s
        .invoke(
            "get_filevault_recovery_key",
            json!({"device_id": dev}),
            json!({}),
        )
        .await;
    only(
        &s,
        &format!("GET /api/v1/devices/{dev}/secrets/filevaultkey"),
    );
    assert!(no_store(&r));
    assert!(raw["key"].as_str().is_some_and(|k| k.len() == 29), "{raw}");
    assert_eq!(
        r.body["outputs"],
        json!({"key": raw["key"], "status_code": 200})
    );

    let raw = kandji(&s, &format!("/devices/{dev}/secrets/bypasscode")).await;
    let r = s
        .invoke(
            "get_activation_lock_bypass_codes",
            json!({"device_id": dev}),
            json!({}),
        )
        .await;
    only(&s, &format!("GET /api/v1/devices/{dev}/secrets/bypasscode"));
    assert!(no_store(&r));
    assert!(
        raw["user_based_albc"]
            .as_str()
            .is_some_and(|c| !c.is_empty())
    );
    assert_eq!(
        r.body["outputs"],
        json!({
            "user_based_activation_lock_bypass_code": raw["user_based_albc"],
            "device_based_activation_lock_bypass_code": raw["device_based_albc"],
            "status_code": 200,
        })
    );

    let raw = kandji(&s, &format!("/devices/{dev}/secrets/unlockpin")).await;
    let r = s
        .invoke("get_unlock_pin", json!({"device_id": dev}), json!({}))
        .await;
    only(&s, &format!("GET /api/v1/devices/{dev}/secrets/unlockpin"));
    assert!(no_store(&r));
    assert_eq!(
        r.body["outputs"],
        json!({"pin": raw["pin"], "status_code": 200})
    );

    // Mac-only secrets on an iPhone: Kandji's {"detail": ...} 400.
    let iphone = id(&device(&s, "iPhone"));
    for (card, secret, key) in [
        ("get_filevault_recovery_key", "filevaultkey", "key"),
        ("get_unlock_pin", "unlockpin", "pin"),
    ] {
        let out = s
            .outputs(card, json!({"device_id": iphone}), json!({}))
            .await;
        only(
            &s,
            &format!("GET /api/v1/devices/{iphone}/secrets/{secret}"),
        );
        assert_eq!(
            out,
            json!({key: null, "status_code": 400, "error": "This secret is only available for Mac computers."}),
            "{card}"
        );
    }
}

// ---- Get Device, Update Device ----

/// Get Device (Basic)'s `device` group for a device, from the tenant's records.
fn basic_device(s: &TestApp, d: &kandji_connector::simulator::Device) -> Value {
    let t = s.sim.tenant();
    json!({
        "device_id": id(d),
        "device_name": d.device_name,
        "model": d.model.name,
        "serial_number": d.serial_number,
        "platform": d.platform.as_str(),
        "os_version": d.os_version,
        "last_check_in": d.last_check_in.as_ref().map(rfc),
        "asset_tag": d.asset_tag,
        "blueprint_id": d.blueprint_id.to_string(),
        "mdm_enabled": d.mdm_enabled,
        "agent_installed": d.agent_installed,
        "is_missing": d.is_missing,
        "is_removed": d.is_removed,
        "agent_version": d.agent_version,
        "first_enrollment": rfc(&d.first_enrollment),
        "last_enrollment": rfc(&d.last_enrollment),
        "blueprint_name": t.blueprint_name(&d.blueprint_id),
        "lost_mode_status": d.lost_mode_status(),
        "tags": d.tags,
    })
}

#[tokio::test]
async fn get_device_basic_normalises_dates_and_an_unassigned_user() {
    let s = start().await;
    let mac = device(&s, "Mac");
    let raw = kandji(&s, &format!("/devices/{}", id(&mac))).await;
    // What Kandji sends: enrollment dates with a space, a user object.
    assert!(
        raw["first_enrollment"].as_str().unwrap().contains(' '),
        "{raw}"
    );
    let out = s.get_device_outputs(&id(&mac)).await;
    let req = only(&s, &format!("GET /api/v1/devices/{}", id(&mac)));
    assert_no_body(&req);
    let user = {
        let t = s.sim.tenant();
        t.user(&mac.user_id.unwrap()).unwrap().clone()
    };
    assert_eq!(
        out,
        json!({
            "status_code": 200,
            "device": basic_device(&s, &mac),
            "user": {
                "email": user.email,
                "name": user.name,
                "user_id": user.id.to_string(),
                "is_archived": false,
            },
        })
    );
    assert!(
        out["device"]["first_enrollment"]
            .as_str()
            .unwrap()
            .contains('T')
    );

    // An Apple TV has no user: Kandji's "" becomes null.
    let tv = device(&s, "AppleTV");
    assert_eq!(
        kandji(&s, &format!("/devices/{}", id(&tv))).await["user"],
        ""
    );
    let out = s.get_device_outputs(&id(&tv)).await;
    only(&s, &format!("GET /api/v1/devices/{}", id(&tv)));
    assert_eq!(
        out,
        json!({"status_code": 200, "device": basic_device(&s, &tv), "user": null})
    );
}

/// Kandji's `"True"`/`"False"` strings as booleans.
fn boolean(v: &Value) -> Value {
    match v.as_str() {
        Some("True") => json!(true),
        Some("False") => json!(false),
        _ => v.clone(),
    }
}

fn null_if_empty(v: &Value) -> Value {
    if v == "" { Value::Null } else { v.clone() }
}

/// Get Device (Full)'s outputs for Kandji's `/details` body, normalised by hand.
fn expected_full(raw: &Value) -> Value {
    let g = &raw["general"];
    let m = &raw["mdm"];
    let f = &raw["filevault"];
    let a = &raw["automated_device_enrollment"];
    let k = &raw["kandji_agent"];
    let h = &raw["hardware_overview"];
    let n = &raw["network"];
    let r = &raw["recovery_information"];
    let abm = &raw["apple_business_manager"];
    let al = &raw["activation_lock"];
    json!({
        "status_code": 200,
        "general": {
            "device_id": g["device_id"],
            "device_name": g["device_name"],
            "last_enrollment": date(&g["last_enrollment"]),
            "first_enrollment": date(&g["first_enrollment"]),
            "model": g["model"],
            "platform": g["platform"],
            "os_version": g["os_version"],
            "system_version": g["system_version"],
            "boot_volume": g["boot_volume"],
            "time_since_boot": g["time_since_boot"],
            "last_user": g["last_user"],
            "asset_tag": g["asset_tag"],
            "assigned_user": null_if_empty(&g["assigned_user"]),
            "blueprint_name": g["blueprint_name"],
            "blueprint_uuid": g["blueprint_uuid"],
        },
        "mdm": {
            "mdm_enabled": boolean(&m["mdm_enabled"]),
            "install_date": date(&m["install_date"]),
            "last_check_in": date(&m["last_check_in"]),
            "mdm_enabled_user": m["mdm_enabled_user"],
        },
        "activation_lock": {
            "bypass_code_failed": al["bypass_code_failed"],
            "user_activation_lock_enabled": al["user_activation_lock_enabled"],
            "device_activation_lock_enabled": al["device_activation_lock_enabled"],
            "activation_lock_allowed_while_supervised": al["activation_lock_allowed_while_supervised"],
            "activation_lock_supported": al["activation_lock_supported"],
        },
        "filevault": {
            "filevault_enabled": f["filevault_enabled"],
            "filevault_recovery_key_type": f["filevault_recoverykey_type"],
            "filevault_personal_recovery_key_escrowed": f["filevault_prk_escrowed"],
            "filevault_next_rotation": date(&f["filevault_next_rotation"]),
            "filevault_regeneration_required": f["filevault_regen_required"],
        },
        "automated_device_enrollment": {
            "auto_enroll_eligible": a["auto_enroll_eligible"],
            "auto_enrolled": a["auto_enrolled"],
        },
        "kandji_agent": {
            "agent_installed": boolean(&k["agent_installed"]),
            "install_date": date(&k["install_date"]),
            "last_check_in": date(&k["last_check_in"]),
            "agent_version": k["agent_version"],
        },
        "hardware_overview": {
            "model_name": h["model_name"],
            "model_identifier": h["model_identifier"],
            "processor_name": h["processor_name"],
            "processor_speed": h["processor_speed"],
            "number_of_processors": h["number_of_processors"],
            "total_number_of_cores": h["total_number_of_cores"],
            "memory": h["memory"],
            "udid": if h["udid"].is_null() { h["uuid"].clone() } else { h["udid"].clone() },
        },
        "volumes": raw["volumes"],
        "network": {
            "local_hostname": n["local_hostname"],
            "mac_address": n["mac_address"],
            "ip_address": n["ip_address"],
            "public_ip": n["public_ip"],
        },
        "recovery_information": {
            "recovery_lock_enabled": r["recovery_lock_enabled"],
            "firmware_password_exists": r["firmware_password_exist"],
            "firmware_password_pending": r["firmware_password_pending"],
            "password_rotation_scheduled": date(&r["password_rotation_scheduled"]),
        },
        "users": {
            "regular_users": raw["users"]["regular_users"],
            "system_users": raw["users"]["system_users"],
        },
        "installed_profiles": raw["installed_profiles"],
        "apple_business_manager": {
            "model": abm["model"],
            "color": abm["color"],
            "description": abm["description"],
            "serial_number": abm["serial_number"],
            "device_family": abm["device_family"],
            "os": abm["os"],
            "device_assigned_date": date(&abm["device_assigned_date"]),
            "device_assigned_by": abm["device_assigned_by"],
        },
        "apple_remote_desktop_turned_on": raw["security_information"]["remote_desktop_enabled"],
        // The 2025 card's Full outputs.
        "security_information": null_if_empty(&raw["security_information"]),
        "cellular": null_if_empty(&raw["cellular"]),
        "lost_mode": null_if_empty(&raw["lost_mode"]),
        "tags": raw["tags"],
        "user": match &g["assigned_user"] {
            Value::Object(u) => json!({
                "email": u["email"],
                "name": u["name"],
                "user_id": u["id"],
                "is_archived": u["is_archived"],
            }),
            _ => Value::Null,
        },
    })
}

#[tokio::test]
async fn get_device_full_reads_details_and_normalises_kandjis_quirks() {
    let s = start().await;
    for platform in ["Mac", "iPhone", "AppleTV"] {
        let d = device(&s, platform);
        let dev = id(&d);
        let raw = kandji(&s, &format!("/devices/{dev}/details")).await;
        let out = s
            .outputs(
                "get_device",
                json!({"device_id": dev}),
                json!({"details": "full"}),
            )
            .await;
        let req = only(&s, &format!("GET /api/v1/devices/{dev}/details"));
        assert_no_body(&req);
        assert_eq!(out, expected_full(&raw), "{platform}");

        // The quirks, spelled out: "True" strings, space-separated dates, "" for no value.
        assert_eq!(raw["mdm"]["mdm_enabled"], "True", "{platform}");
        assert_eq!(out["mdm"]["mdm_enabled"], true, "{platform}");
        assert_eq!(
            out["general"]["last_enrollment"],
            rfc(&d.last_enrollment),
            "{platform}"
        );
        assert_eq!(
            out["mdm"]["last_check_in"],
            rfc(d.last_check_in.as_ref().unwrap()),
            "{platform}"
        );
        assert_eq!(out["filevault"]["filevault_next_rotation"], Value::Null);
        assert!(out.get("device").is_none());
        match platform {
            "Mac" => {
                assert_eq!(raw["kandji_agent"]["agent_installed"], "True");
                assert_eq!(out["kandji_agent"]["agent_installed"], true);
                assert!(out["kandji_agent"]["install_date"].is_string());
                assert_eq!(out["filevault"]["filevault_enabled"], true);
                assert!(out["hardware_overview"]["udid"].is_string());
                assert!(out["general"]["assigned_user"].is_object());
                assert_eq!(
                    out["apple_remote_desktop_turned_on"],
                    d.remote_desktop_enabled
                );
            }
            "iPhone" => {
                assert_eq!(out["kandji_agent"]["agent_installed"], false);
                assert_eq!(raw["kandji_agent"]["install_date"], "");
                assert_eq!(out["kandji_agent"]["install_date"], Value::Null);
                assert_eq!(out["filevault"]["filevault_enabled"], Value::Null);
                assert_eq!(
                    out["hardware_overview"]["udid"],
                    raw["hardware_overview"]["uuid"]
                );
                assert!(out["general"]["assigned_user"].is_object());
            }
            _ => {
                assert_eq!(raw["general"]["assigned_user"], "");
                assert_eq!(out["general"]["assigned_user"], Value::Null);
            }
        }
    }
}

#[tokio::test]
async fn update_device_patches_blueprint_user_and_asset_tag() {
    let s = start().await;
    let mac = device(&s, "Mac");
    let (bp, user) = (other_blueprint(&s.sim, &mac), other_user(&s.sim, &mac));
    let out = s
        .outputs(
            "update_device",
            json!({"device_id": id(&mac), "blueprint_id": bp.id.to_string(), "kandji_user_id": user.id.to_string(), "asset_tag": "KJ-00042"}),
            json!({}),
        )
        .await;
    let req = only(&s, &format!("PATCH /api/v1/devices/{}", id(&mac)));
    assert_json(
        &req,
        json!({"blueprint_id": bp.id.to_string(), "user": user.id.to_string(), "asset_tag": "KJ-00042"}),
    );
    let updated = s.sim.tenant().device(&mac.device_id).unwrap().clone();
    assert_eq!(
        (
            updated.blueprint_id,
            updated.user_id,
            updated.asset_tag.as_deref()
        ),
        (bp.id, Some(user.id), Some("KJ-00042"))
    );
    let mut want_device = basic_device(&s, &updated);
    want_device["status"] = json!(200);
    // Update Device's group has no Lost Mode Status, and the 2025 card's supplemental versions.
    want_device
        .as_object_mut()
        .unwrap()
        .remove("lost_mode_status");
    want_device["supplemental_build_version"] = json!(updated.build());
    want_device["supplemental_os_version_extra"] = json!("");
    assert_eq!(want_device["blueprint_name"], bp.name.as_str());
    assert_eq!(
        out,
        json!({
            "status_code": 200,
            "device": want_device,
            "user": {
                "user_email": user.email,
                "user_name": user.name,
                "user_id": user.id.to_string(),
                "user_is_archived": user.archived,
            },
        })
    );

    // Only what was given is sent; an unassigned user comes back as null.
    let tv = device(&s, "AppleTV");
    let out = s
        .outputs(
            "update_device",
            json!({"device_id": id(&tv), "asset_tag": "ROOM-1"}),
            json!({}),
        )
        .await;
    let req = only(&s, &format!("PATCH /api/v1/devices/{}", id(&tv)));
    assert_json(&req, json!({"asset_tag": "ROOM-1"}));
    assert_eq!(out["status_code"], 200);
    assert_eq!(out["device"]["asset_tag"], "ROOM-1");
    assert_eq!(out["user"], Value::Null);

    // Kandji's DRF field errors: passed through, no device made of the error body.
    let out = s
        .outputs(
            "update_device",
            json!({"device_id": id(&tv), "blueprint_id": "not-a-uuid"}),
            json!({}),
        )
        .await;
    let req = only(&s, &format!("PATCH /api/v1/devices/{}", id(&tv)));
    assert_json(&req, json!({"blueprint_id": "not-a-uuid"}));
    assert_eq!(
        out,
        json!({
            "status_code": 400,
            "device": null,
            "user": null,
            "error": "blueprint_id: “not-a-uuid” is not a valid UUID.",
        })
    );
}
