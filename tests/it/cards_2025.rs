//! The newer cards of Kandji's 2025 card list against the simulated tenant: the exact request
//! that reached Kandji (method, path, query, body), how many, the outputs the caller got, their
//! result sets, and Kandji's errors passed through.

use crate::harness::TestApp;
use crate::harness::kandji::*;
use chrono::Duration;
use kandji_connector::simulator::{
    ADMIN_EMAIL, CustomApp, Fault, LibraryActivity, SimConfig, Tag, reference_now,
};
use serde_json::{Value, json};
use uuid::Uuid;

/// Records with these date fields normalised, as the card's `record_schema` does.
fn with_dates(records: &Value, dates: &[&str]) -> Value {
    let mut out = records.clone();
    for r in out.as_array_mut().unwrap() {
        for p in dates {
            if let Some(v) = r.pointer_mut(p) {
                *v = date(v);
            }
        }
    }
    out
}

fn ids_of(records: &Value, key: &str) -> Vec<String> {
    records
        .as_array()
        .unwrap()
        .iter()
        .map(|r| match &r[key] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

const FIRST_300: &str = "first_300_records";

/// First 300 Records of `card` for `inputs`: the one request, without a body, is
/// `GET /api/v1{path}?limit=300&offset=0`; returns the outputs.
async fn first_300(s: &TestApp, card: &str, inputs: Value, path: &str) -> Value {
    let out = s
        .outputs(card, inputs, json!({"result_set": FIRST_300}))
        .await;
    let req = only(s, &format!("GET /api/v1{path}?limit=300&offset=0"));
    assert_no_body(&req);
    out
}

/// First 300 Records of `card` for an ID Kandji does not know (`input`): the one request,
/// `GET /api/v1{path}?limit=300&offset=0` with the ID for `{id}`, gets Kandji's 404, passed
/// through with the results null.
async fn first_300_of_an_unknown_id(s: &TestApp, card: &str, input: &str, path: &str) {
    let nobody = unknown_id();
    let inputs = Value::Object([(input.to_string(), json!(nobody))].into_iter().collect());
    let out = s
        .outputs(card, inputs, json!({"result_set": FIRST_300}))
        .await;
    let path = path.replace("{id}", &nobody);
    only(s, &format!("GET /api/v1{path}?limit=300&offset=0"));
    assert_eq!(
        out,
        json!({"status_code": 404, "results": null, "error": "Not found."}),
        "{card}"
    );
}

// ---- Tags ----

#[tokio::test]
async fn create_tag_posts_the_name_and_returns_the_new_tag() {
    let s = start().await;
    let out = s
        .outputs("create_tag", json!({"name": "accuhive_99"}), json!({}))
        .await;
    let req = only(&s, "POST /api/v1/tags");
    assert_json(&req, json!({"name": "accuhive_99"}));
    let tag = s
        .sim
        .tenant()
        .tags
        .iter()
        .find(|t| t.name == "accuhive_99")
        .cloned()
        .expect("Kandji created the tag");
    assert_eq!(
        out,
        json!({"status_code": 201, "tag_id": tag.id.to_string(), "tag_name": "accuhive_99"})
    );

    // The same name again: Kandji's field error, passed through.
    let out = s
        .outputs("create_tag", json!({"name": "accuhive_99"}), json!({}))
        .await;
    let req = only(&s, "POST /api/v1/tags");
    assert_json(&req, json!({"name": "accuhive_99"}));
    assert_eq!(
        out,
        json!({
            "status_code": 400,
            "tag_id": null,
            "tag_name": null,
            "error": "name: tag with this name already exists.",
        })
    );

    // No name: refused before anything reaches Kandji.
    let r = s.invoke("create_tag", json!({}), json!({})).await;
    assert_eq!(r.problem(422), ["inputs.name"]);
    take(&s, 0);
}

#[tokio::test]
async fn update_tag_patches_the_name_and_devices_follow() {
    let s = start().await;
    let (tag, carriers) = {
        let t = s.sim.tenant();
        let tag = t
            .tags
            .iter()
            .find(|tag| t.devices.iter().any(|d| d.tags.contains(&tag.name)))
            .cloned()
            .expect("a tag on a device");
        let carriers: Vec<Uuid> = t
            .devices
            .iter()
            .filter(|d| d.tags.contains(&tag.name))
            .map(|d| d.device_id)
            .collect();
        (tag, carriers)
    };
    let out = s
        .outputs(
            "update_tag",
            json!({"tag_id": tag.id.to_string(), "name": "accuhive_renamed"}),
            json!({}),
        )
        .await;
    let req = only(&s, &format!("PATCH /api/v1/tags/{}", tag.id));
    assert_json(&req, json!({"name": "accuhive_renamed"}));
    assert_eq!(
        out,
        json!({"status_code": 200, "tag_name": "accuhive_renamed"})
    );
    {
        let t = s.sim.tenant();
        for d in &carriers {
            let tags = &t.device(d).unwrap().tags;
            assert!(tags.contains(&"accuhive_renamed".to_string()), "{tags:?}");
            assert!(!tags.contains(&tag.name), "{tags:?}");
        }
    }

    let nobody = unknown_id();
    let out = s
        .outputs(
            "update_tag",
            json!({"tag_id": nobody, "name": "x"}),
            json!({}),
        )
        .await;
    only(&s, &format!("PATCH /api/v1/tags/{nobody}"));
    assert_eq!(
        out,
        json!({"status_code": 404, "tag_name": null, "error": "Not found."})
    );

    // The name is required (the 2025 document lists only Tag ID; a rename needs the new name).
    let r = s
        .invoke("update_tag", json!({"tag_id": nobody}), json!({}))
        .await;
    assert_eq!(r.problem(422), ["inputs.name"]);
    take(&s, 0);
}

#[tokio::test]
async fn list_tags_searches_by_name_and_returns_the_first_300() {
    let s = start().await;
    let raw = kandji(&s, "/tags").await;
    let out = first_300(&s, "list_tags", json!({}), "/tags").await;
    assert_eq!(out, json!({"status_code": 200, "results": raw["results"]}));
    assert!(!raw["results"].as_array().unwrap().is_empty());

    // Name -> Kandji's `search` (contains).
    let raw = kandji(&s, "/tags?search=hq").await;
    let out = s
        .outputs(
            "list_tags",
            json!({"name": "hq"}),
            json!({"result_set": FIRST_300}),
        )
        .await;
    only(&s, "GET /api/v1/tags?search=hq&limit=300&offset=0");
    let names: Vec<String> = ids_of(&out["results"], "name");
    assert_eq!(names, ["hq-sf", "hq-nyc"]);
    assert_eq!(out, json!({"status_code": 200, "results": raw["results"]}));

    // More than 300 tags: exactly the first 300, from one request.
    {
        let mut t = s.sim.tenant_mut();
        for i in 0..320 {
            t.tags.push(Tag {
                id: Uuid::new_v4(),
                name: format!("team-{i:03}"),
            });
        }
    }
    let out = s
        .outputs("list_tags", json!({}), json!({"result_set": FIRST_300}))
        .await;
    only(&s, "GET /api/v1/tags?limit=300&offset=0");
    let want: Vec<String> = s.sim.tenant().tags[..300]
        .iter()
        .map(|t| t.id.to_string())
        .collect();
    assert_eq!(ids_of(&out["results"], "id"), want);
}

// ---- Users: cursor paging ----

#[tokio::test]
async fn list_users_first_matching_record_passes_every_filter() {
    let s = start().await;
    let (user, integration, devices_of_user) = {
        let t = s.sim.tenant();
        let u = t.users[0].clone();
        let n = t.devices.iter().filter(|d| d.user_id == Some(u.id)).count();
        (u, t.user_integration.uuid.to_string(), n)
    };
    assert!(devices_of_user > 0);
    let part = user.email[..user.email.find('@').unwrap()].to_string();
    let out = s
        .outputs(
            "list_users",
            json!({
                "archived": false,
                "integration_id": integration,
                "kandji_user_id": user.id.to_string(),
                "user_email": part,
            }),
            json!({"result_set": "first_matching_record"}),
        )
        .await;
    let req = only(
        &s,
        &format!(
            "GET /api/v1/users?archived=false&email={part}&id={}&integration_id={integration}",
            user.id
        ),
    );
    assert_no_body(&req);
    let raw = kandji(&s, &format!("/users/{}", user.id)).await;
    assert_eq!(
        out,
        json!({
            "status_code": 200,
            "active": true,
            "archived": false,
            "created_at": rfc(&user.created_at),
            "department": user.department,
            "email_address": user.email,
            "kandji_user_id": user.id.to_string(),
            "integration": raw["integration"],
            "job_title": user.job_title,
            "name": user.name,
            "device_count": devices_of_user,
            "updated_at": rfc(&user.updated_at),
        })
    );
    assert_eq!(out["integration"]["uuid"], integration);

    // Nobody matches: 200 with the outputs empty.
    let out = s
        .outputs(
            "list_users",
            json!({"user_email": "nobody-at-all"}),
            json!({"result_set": "first_matching_record"}),
        )
        .await;
    only(&s, "GET /api/v1/users?email=nobody-at-all");
    assert_eq!(out["status_code"], 200);
    assert_eq!(out["kandji_user_id"], Value::Null);

    // Kandji's field error for an ID that is no UUID.
    let out = s
        .outputs(
            "list_users",
            json!({"kandji_user_id": "29360"}),
            json!({"result_set": "first_matching_record"}),
        )
        .await;
    only(&s, "GET /api/v1/users?id=29360");
    assert_eq!(out["status_code"], 400);
    assert_eq!(out["error"], "id: Enter a valid UUID.");
    assert_eq!(out["name"], Value::Null);
}

#[tokio::test]
async fn list_users_first_300_follows_the_cursor_across_pages_on_the_tenants_host() {
    // 200 devices give 90 users; 40 a page makes three cursor pages.
    let s = start_with(SimConfig {
        devices: 200,
        users_page_size: 40,
        ..SimConfig::default()
    })
    .await;
    let all: Vec<String> = s
        .sim
        .tenant()
        .users
        .iter()
        .map(|u| u.id.to_string())
        .collect();
    assert_eq!(all.len(), 90);
    // Kandji's `next` names the web-app host; only its query is followed.
    let page1 = kandji(&s, "/users").await;
    assert_eq!(
        page1["next"],
        "https://accuhive.kandji.io/api/v1/users?cursor=cD00MA%3D%3D"
    );
    let page2 = kandji(&s, "/users?cursor=cD00MA%3D%3D").await;
    let page3 = kandji(&s, "/users?cursor=cD04MA%3D%3D").await;
    assert_eq!(page3["next"], Value::Null);

    let out = s
        .outputs("list_users", json!({}), json!({"result_set": FIRST_300}))
        .await;
    let lines: Vec<String> = take(&s, 3).iter().map(line).collect();
    assert_eq!(
        lines,
        [
            "GET /api/v1/users",
            "GET /api/v1/users?cursor=cD00MA%3D%3D",
            "GET /api/v1/users?cursor=cD04MA%3D%3D",
        ]
    );
    assert_eq!(ids_of(&out["users"], "id"), all);
    let mut want = Vec::new();
    for page in [&page1, &page2, &page3] {
        want.extend(
            with_dates(&page["results"], &["/created_at", "/updated_at"])
                .as_array()
                .unwrap()
                .clone(),
        );
    }
    assert_eq!(out, json!({"status_code": 200, "users": want}));

    // A filter travels in Kandji's `next`, which the connector follows verbatim.
    let active: Vec<String> = s
        .sim
        .tenant()
        .users
        .iter()
        .filter(|u| !u.archived)
        .map(|u| u.id.to_string())
        .collect();
    assert!(active.len() > 80 && active.len() < 90, "{}", active.len());
    let out = s
        .outputs(
            "list_users",
            json!({"archived": false}),
            json!({"result_set": FIRST_300}),
        )
        .await;
    let lines: Vec<String> = take(&s, 3).iter().map(line).collect();
    assert_eq!(
        lines,
        [
            "GET /api/v1/users?archived=false",
            "GET /api/v1/users?archived=false&cursor=cD00MA%3D%3D",
            "GET /api/v1/users?archived=false&cursor=cD04MA%3D%3D",
        ]
    );
    assert_eq!(ids_of(&out["users"], "id"), active);
    assert!(
        out["users"]
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u["archived"] == false)
    );

    // First Matching Record reads one page only.
    let out = s
        .outputs(
            "list_users",
            json!({}),
            json!({"result_set": "first_matching_record"}),
        )
        .await;
    only(&s, "GET /api/v1/users");
    assert_eq!(out["kandji_user_id"], all[0]);
}

#[tokio::test]
async fn list_users_first_300_of_kandjis_300_a_page_is_one_request() {
    let s = start_with(devices(700)).await;
    let all: Vec<String> = s
        .sim
        .tenant()
        .users
        .iter()
        .map(|u| u.id.to_string())
        .collect();
    assert!(all.len() > 300, "{}", all.len());
    let out = s
        .outputs("list_users", json!({}), json!({"result_set": FIRST_300}))
        .await;
    only(&s, "GET /api/v1/users");
    assert_eq!(ids_of(&out["users"], "id"), all[..300]);
}

// ---- Secrets ----

#[tokio::test]
async fn get_mac_recovery_lock_password_is_a_secret_read_uncached() {
    let s = start().await;
    let mac = id(&device(&s, "Mac"));
    let raw = kandji(&s, &format!("/devices/{mac}/secrets/recoverypassword")).await;
    let password = raw["recovery_password"].as_str().unwrap().to_string();
    assert_eq!(password.len(), 5 + 5 + 4 * 4 + 5);
    let r = s
        .invoke(
            "get_mac_recovery_lock_password",
            json!({"device_id": mac}),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(no_store(&r), "the recovery password was answered cacheable");
    let req = only(
        &s,
        &format!("GET /api/v1/devices/{mac}/secrets/recoverypassword"),
    );
    assert_no_body(&req);
    assert_eq!(
        r.body["outputs"],
        json!({"recovery_password": password, "status_code": 200})
    );
    // The card says so to designers too.
    let card = s.get("/v1/cards/get_mac_recovery_lock_password").await;
    assert_eq!(
        card.body["output_schema"]["properties"]["recovery_password"]["x-secret"], true,
        "{}",
        card.body
    );

    // An iPhone has none: Kandji's 400, passed through.
    let iphone = id(&device(&s, "iPhone"));
    let out = s
        .outputs(
            "get_mac_recovery_lock_password",
            json!({"device_id": iphone}),
            json!({}),
        )
        .await;
    only(
        &s,
        &format!("GET /api/v1/devices/{iphone}/secrets/recoverypassword"),
    );
    assert_eq!(
        out,
        json!({"recovery_password": null, "status_code": 400, "error": "This secret is only available for Mac computers."})
    );
}

#[tokio::test]
async fn get_mac_recovery_lock_password_needs_the_secrets_scope() {
    use kandji_connector::api::auth::{ApiKey, Scope};
    const NO_SECRETS: &str = "no-secrets-key-0123456789";
    let s = crate::harness::TestApp::builder()
        .config(|c| {
            c.api_keys.push(ApiKey::with_scopes(
                &secrecy::SecretString::from(NO_SECRETS.to_string()),
                vec![Scope::CatalogRead, Scope::CardsInvoke],
            ))
        })
        .start()
        .await;
    let mac = id(&device(&s, "Mac"));
    let r = s
        .send(
            reqwest::Method::POST,
            "/v1/cards/get_mac_recovery_lock_password/invoke",
            Some(json!({"connection": s.connection, "inputs": {"device_id": mac}})),
            Some(NO_SECRETS),
        )
        .await;
    r.problem(403);
    take(&s, 0);
    // The same key runs the other new cards.
    let r = s
        .send(
            reqwest::Method::POST,
            "/v1/cards/get_threats_summary/invoke",
            Some(json!({"connection": s.connection, "inputs": {}})),
            Some(NO_SECRETS),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    take(&s, 1);
}

// ---- Threats ----

#[tokio::test]
async fn get_threats_summary_reads_the_counts_and_passes_404_and_401_through() {
    let s = start_with(devices(200)).await;
    let raw = kandji(&s, "/threat-details").await;
    let (total, malware, pup) = (
        raw["count"].as_u64().unwrap(),
        raw["malware_count"].as_u64().unwrap(),
        raw["pup_count"].as_u64().unwrap(),
    );
    assert!(malware > 0 && pup > 0, "{raw}");
    assert_eq!(total, malware + pup);
    let out = s.outputs("get_threats_summary", json!({}), json!({})).await;
    let req = only(&s, "GET /api/v1/threat-details?limit=1");
    assert_no_body(&req);
    assert_eq!(
        out,
        json!({"status_code": 200, "total_count": total, "malware_count": malware, "pup_count": pup})
    );

    // A token without permission to read threats: Kandji's 401, as the card documents.
    s.sim.push_faults(
        Some("/threat-details"),
        vec![answer(
            401,
            json!({"detail": "You do not have permission to perform this action."}),
        )],
    );
    let out = s.outputs("get_threats_summary", json!({}), json!({})).await;
    only(&s, "GET /api/v1/threat-details?limit=1");
    assert_eq!(
        out,
        json!({
            "status_code": 401,
            "total_count": null,
            "malware_count": null,
            "pup_count": null,
            "error": "You do not have permission to perform this action.",
        })
    );

    // A tenant without EDR: 404.
    s.sim.tenant_mut().edr_enabled = false;
    let out = s.outputs("get_threats_summary", json!({}), json!({})).await;
    only(&s, "GET /api/v1/threat-details?limit=1");
    assert_eq!(
        out,
        json!({
            "status_code": 404,
            "total_count": null,
            "malware_count": null,
            "pup_count": null,
            "error": "Not found.",
        })
    );
}

// ---- Device activity: a nested envelope ----

#[tokio::test]
async fn list_device_activity_reads_the_nested_envelope() {
    let s = start().await;
    let mac = device(&s, "Mac");
    let dev = id(&mac);
    {
        let mut t = s.sim.tenant_mut();
        for _ in 0..3 {
            t.record_command(mac.device_id, "RestartDevice", "RestartDevice");
        }
    }
    let raw = kandji(&s, &format!("/devices/{dev}/activity")).await;
    assert_eq!(raw["activity"]["count"], 4);
    let out = first_300(
        &s,
        "list_device_activity",
        json!({"device_id": dev}),
        &format!("/devices/{dev}/activity"),
    )
    .await;
    assert_eq!(
        out,
        json!({"status_code": 200, "results": with_dates(&raw["activity"]["results"], &["/created_at"])})
    );
    assert_eq!(out["results"][0]["action_type"], "enrollment");

    // A short page whose `next` (inside `activity`, on the web-app host) is followed.
    let results = raw["activity"]["results"].as_array().unwrap();
    let page = json!({
        "device_id": dev,
        "activity": {
            "count": 4,
            "next": format!("https://accuhive.kandji.io/api/v1/devices/{dev}/activity?limit=2&offset=2"),
            "previous": null,
            "results": &results[..2],
        },
    });
    s.sim
        .push_faults(Some("/activity"), vec![answer(200, page)]);
    let out = s
        .outputs(
            "list_device_activity",
            json!({"device_id": dev}),
            json!({"result_set": FIRST_300}),
        )
        .await;
    let lines: Vec<String> = take(&s, 2).iter().map(line).collect();
    assert_eq!(
        lines,
        [
            format!("GET /api/v1/devices/{dev}/activity?limit=300&offset=0"),
            format!("GET /api/v1/devices/{dev}/activity?limit=2&offset=2"),
        ]
    );
    assert_eq!(
        out["results"],
        with_dates(&raw["activity"]["results"], &["/created_at"])
    );

    // More than 300 entries: exactly 300, from one request.
    {
        let mut t = s.sim.tenant_mut();
        for _ in 0..320 {
            t.record_command(mac.device_id, "DeviceInformation", "DeviceInformation");
        }
    }
    let raw = kandji(&s, &format!("/devices/{dev}/activity?limit=300")).await;
    assert_eq!(raw["activity"]["count"], 324);
    let out = s
        .outputs(
            "list_device_activity",
            json!({"device_id": dev}),
            json!({"result_set": FIRST_300}),
        )
        .await;
    only(
        &s,
        &format!("GET /api/v1/devices/{dev}/activity?limit=300&offset=0"),
    );
    assert_eq!(
        out["results"],
        with_dates(&raw["activity"]["results"], &["/created_at"])
    );

    first_300_of_an_unknown_id(
        &s,
        "list_device_activity",
        "device_id",
        "/devices/{id}/activity",
    )
    .await;
}

// ---- Library items ----

#[tokio::test]
async fn list_library_items_lists_a_blueprints_items() {
    let s = start().await;
    let bp = s.sim.tenant().blueprints[0].clone();
    let raw = kandji(&s, &format!("/blueprints/{}/list-library-items", bp.id)).await;
    let out = first_300(
        &s,
        "list_library_items",
        json!({"blueprint_id": bp.id.to_string()}),
        &format!("/blueprints/{}/list-library-items", bp.id),
    )
    .await;
    assert_eq!(out, json!({"status_code": 200, "results": raw["results"]}));
    let want: Vec<Value> = {
        let t = s.sim.tenant();
        bp.library_item_ids
            .iter()
            .map(|i| json!({"id": i.to_string(), "name": t.library_item(i).unwrap().name}))
            .collect()
    };
    assert_eq!(out["results"], Value::Array(want));

    first_300_of_an_unknown_id(
        &s,
        "list_library_items",
        "blueprint_id",
        "/blueprints/{id}/list-library-items",
    )
    .await;
}

#[tokio::test]
async fn assign_and_remove_library_item_post_the_ids_and_return_the_blueprints_items() {
    let s = start().await;
    let (classic, map, app) = {
        let t = s.sim.tenant();
        let classic = t.blueprints.iter().find(|b| b.kind == "classic").unwrap();
        let map = t.blueprints.iter().find(|b| b.kind == "map").unwrap();
        (classic.clone(), map.clone(), t.custom_apps[0].id)
    };
    assert!(!classic.library_item_ids.contains(&app));
    let strings =
        |ids: &[Uuid]| -> Vec<String> { ids.iter().map(Uuid::to_string).collect::<Vec<_>>() };
    let assign_path = format!("POST /api/v1/blueprints/{}/assign-library-item", classic.id);
    let remove_path = format!("POST /api/v1/blueprints/{}/remove-library-item", classic.id);

    // Assign to a Classic Blueprint: only the Library Item ID is sent.
    let out = s
        .outputs(
            "assign_library_item",
            json!({"library_item_id": app.to_string(), "blueprint_id": classic.id.to_string()}),
            json!({}),
        )
        .await;
    let req = only(&s, &assign_path);
    assert_json(&req, json!({"library_item_id": app.to_string()}));
    let mut after = classic.library_item_ids.clone();
    after.push(app);
    assert_eq!(
        out,
        json!({"status_code": 200, "library_item_ids": strings(&after)})
    );
    assert_eq!(
        s.sim
            .tenant()
            .blueprint(&classic.id)
            .unwrap()
            .library_item_ids,
        after
    );

    // Again: Kandji's plain-text 400.
    let out = s
        .outputs(
            "assign_library_item",
            json!({"library_item_id": app.to_string(), "blueprint_id": classic.id.to_string()}),
            json!({}),
        )
        .await;
    only(&s, &assign_path);
    assert_eq!(
        out,
        json!({"status_code": 400, "library_item_ids": null, "error": "Library Item already exists on Blueprint"})
    );

    // A node on a Classic Blueprint is refused.
    let node = Uuid::new_v4().to_string();
    let out = s
        .outputs(
            "assign_library_item",
            json!({"library_item_id": app.to_string(), "blueprint_id": classic.id.to_string(), "assignment_node_id": node}),
            json!({}),
        )
        .await;
    let req = only(&s, &assign_path);
    assert_json(
        &req,
        json!({"library_item_id": app.to_string(), "assignment_node_id": node}),
    );
    assert_eq!(
        out,
        json!({"status_code": 400, "library_item_ids": null, "error": "assignment_node_id cannot be provided for Classic Blueprint"})
    );

    // An Assignment Map takes the node.
    let out = s
        .outputs(
            "assign_library_item",
            json!({"library_item_id": app.to_string(), "blueprint_id": map.id.to_string(), "assignment_node_id": node}),
            json!({}),
        )
        .await;
    let req = only(
        &s,
        &format!("POST /api/v1/blueprints/{}/assign-library-item", map.id),
    );
    assert_json(
        &req,
        json!({"library_item_id": app.to_string(), "assignment_node_id": node}),
    );
    assert_eq!(out["status_code"], 200);
    assert_eq!(
        out["library_item_ids"].as_array().unwrap().last().unwrap(),
        &json!(app.to_string())
    );

    // Remove: the remaining items.
    let out = s
        .outputs(
            "remove_library_item",
            json!({"blueprint_id": classic.id.to_string(), "library_item_id": app.to_string()}),
            json!({}),
        )
        .await;
    let req = only(&s, &remove_path);
    assert_json(&req, json!({"library_item_id": app.to_string()}));
    assert_eq!(
        out,
        json!({"status_code": 200, "remaining_library_items": strings(&classic.library_item_ids)})
    );
    let out = s
        .outputs(
            "remove_library_item",
            json!({"blueprint_id": classic.id.to_string(), "library_item_id": app.to_string()}),
            json!({}),
        )
        .await;
    only(&s, &remove_path);
    assert_eq!(
        out,
        json!({"status_code": 400, "remaining_library_items": null, "error": "Library Item does not exist on Blueprint"})
    );
    // Remove from the map, at its node.
    let out = s
        .outputs(
            "remove_library_item",
            json!({"blueprint_id": map.id.to_string(), "library_item_id": app.to_string(), "assignment_node_id": node}),
            json!({}),
        )
        .await;
    let req = only(
        &s,
        &format!("POST /api/v1/blueprints/{}/remove-library-item", map.id),
    );
    assert_json(
        &req,
        json!({"library_item_id": app.to_string(), "assignment_node_id": node}),
    );
    assert_eq!(
        out,
        json!({"status_code": 200, "remaining_library_items": strings(&map.library_item_ids)})
    );

    // Both IDs are required; nothing reaches Kandji without them.
    let r = s
        .invoke(
            "remove_library_item",
            json!({"blueprint_id": classic.id.to_string()}),
            json!({}),
        )
        .await;
    assert_eq!(r.problem(422), ["inputs.library_item_id"]);
    let r = s
        .invoke(
            "assign_library_item",
            json!({"library_item_id": app.to_string()}),
            json!({}),
        )
        .await;
    assert_eq!(r.problem(422), ["inputs.blueprint_id"]);
    take(&s, 0);

    // Every change shows in the item's activity, newest first.
    let out = s
        .outputs(
            "list_library_item_activity",
            json!({"library_item_id": app.to_string()}),
            json!({"result_set": FIRST_300}),
        )
        .await;
    take(&s, 1);
    let kinds: Vec<String> = ids_of(&out["results"], "activity_type");
    assert_eq!(
        kinds[..4],
        ["library_item_assignment_changed"; 4].map(String::from)
    );
    assert_eq!(out["results"][0]["user_email"], ADMIN_EMAIL);
}

#[tokio::test]
async fn list_custom_apps_first_300() {
    let s = start().await;
    let raw = kandji(&s, "/library/custom-apps").await;
    assert_eq!(raw["count"], 4);
    let out = s
        .outputs(
            "list_custom_apps",
            json!({}),
            json!({"result_set": FIRST_300}),
        )
        .await;
    let req = only(&s, "GET /api/v1/library/custom-apps");
    assert_no_body(&req);
    let dates = ["/file_updated", "/created_at", "/updated_at"];
    assert_eq!(
        out,
        json!({"status_code": 200, "results": with_dates(&raw["results"], &dates)})
    );
    let first = &out["results"][0];
    let app = s.sim.tenant().custom_apps[0].clone();
    assert_eq!(first["id"], app.id.to_string());
    assert_eq!(first["name"], "ms_company_portal");
    assert_eq!(first["install_type"], "package");
    assert_eq!(first["created_at"], rfc(&app.created_at));

    // More than one page of Custom Apps: the first 300, from Kandji's first page.
    {
        let mut t = s.sim.tenant_mut();
        let base = t.custom_apps[0].clone();
        for i in 0..310 {
            t.custom_apps.push(CustomApp {
                id: Uuid::new_v4(),
                name: format!("custom_app_{i:03}"),
                created_at: reference_now() - Duration::days(i),
                ..base.clone()
            });
        }
    }
    let out = s
        .outputs(
            "list_custom_apps",
            json!({}),
            json!({"result_set": FIRST_300}),
        )
        .await;
    only(&s, "GET /api/v1/library/custom-apps");
    let want: Vec<String> = s.sim.tenant().custom_apps[..300]
        .iter()
        .map(|a| a.id.to_string())
        .collect();
    assert_eq!(ids_of(&out["results"], "id"), want);
    // Kandji's second page is there, `page=2` on the web-app host.
    let raw = kandji(&s, "/library/custom-apps").await;
    assert_eq!(
        raw["next"],
        "https://accuhive.kandji.io/api/v1/library/custom-apps?page=2"
    );
}

#[tokio::test]
async fn list_library_item_activity_is_newest_first_and_at_most_300() {
    let s = start().await;
    let item = s.sim.tenant().library_items[0].clone();
    let raw = kandji(&s, &format!("/library/library-items/{}/activity", item.id)).await;
    let out = first_300(
        &s,
        "list_library_item_activity",
        json!({"library_item_id": item.id.to_string()}),
        &format!("/library/library-items/{}/activity", item.id),
    )
    .await;
    assert_eq!(
        out,
        json!({"status_code": 200, "results": with_dates(&raw["results"], &["/activity_time"])})
    );
    let results = out["results"].as_array().unwrap();
    assert!(results.len() >= 2);
    assert_eq!(
        results.last().unwrap()["activity_type"],
        "library_item_created"
    );
    let times: Vec<&str> = results
        .iter()
        .map(|r| r["activity_time"].as_str().unwrap())
        .collect();
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, sorted, "newest first");

    // More than 300 entries: exactly the 300 newest, from one request.
    {
        let mut t = s.sim.tenant_mut();
        let admin = t.admin_id;
        let list = t.library_activity.get_mut(&item.id).unwrap();
        let start = reference_now();
        for i in 0..320 {
            list.push(LibraryActivity {
                id: 50_000 + i,
                activity_time: start + Duration::minutes(i as i64),
                activity_type: "library_item_edited",
                user_id: admin,
                user_email: ADMIN_EMAIL.to_string(),
                details: Some(vec![format!("Version: {i} → {}", i + 1)]),
            });
        }
    }
    let out = s
        .outputs(
            "list_library_item_activity",
            json!({"library_item_id": item.id.to_string()}),
            json!({"result_set": FIRST_300}),
        )
        .await;
    take(&s, 1);
    let got = ids_of(&out["results"], "id");
    let want: Vec<String> = (20..320).rev().map(|i| (50_000 + i).to_string()).collect();
    assert_eq!(got, want);

    first_300_of_an_unknown_id(
        &s,
        "list_library_item_activity",
        "library_item_id",
        "/library/library-items/{id}/activity",
    )
    .await;
}

#[tokio::test]
async fn list_library_item_statuses_lists_every_device_in_scope() {
    let s = start_with(devices(800)).await;
    let (liftoff, policy, macs) = {
        let t = s.sim.tenant();
        let find = |kind: &str| t.library_items.iter().find(|l| l.kind == kind).unwrap().id;
        (
            find("kandji-setup"),
            find("threat-security-policy"),
            t.devices_of("Mac").count(),
        )
    };
    assert!(macs > 300, "{macs}");
    let statuses = ["/reported_at", "/last_audit_run", "/control_reported_at"];

    // Every Mac has Liftoff: more than 300 statuses, the first 300 in one request.
    let raw = kandji(
        &s,
        &format!("/library/library-items/{liftoff}/status?limit=300&offset=0"),
    )
    .await;
    assert_eq!(raw["count"].as_u64().unwrap() as usize, macs);
    let out = first_300(
        &s,
        "list_library_item_statuses",
        json!({"library_item_id": liftoff.to_string()}),
        &format!("/library/library-items/{liftoff}/status"),
    )
    .await;
    assert_eq!(
        out,
        json!({"status_code": 200, "results": with_dates(&raw["results"], &statuses)})
    );
    assert_eq!(out["results"].as_array().unwrap().len(), 300);

    // The same record as the device's own library items.
    let first = &out["results"][0];
    let dev = first["computer"]["id"].as_str().unwrap().to_string();
    let items = kandji(&s, &format!("/devices/{dev}/library-items")).await;
    let same = items["library_items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["item_id"] == liftoff.to_string())
        .unwrap();
    assert_eq!(same["id"], first["id"]);
    assert_eq!(same["status"], first["status"]);

    // A Threat Security Policy's statuses carry the EDR status and the type.
    let raw = kandji(
        &s,
        &format!("/library/library-items/{policy}/status?limit=300&offset=0"),
    )
    .await;
    let out = s
        .outputs(
            "list_library_item_statuses",
            json!({"library_item_id": policy.to_string()}),
            json!({"result_set": FIRST_300}),
        )
        .await;
    take(&s, 1);
    assert_eq!(
        out["results"],
        with_dates(&raw["results"], &statuses),
        "{}",
        out["results"][0]
    );
    assert!(
        out["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["type"] == "threat-security-policy" && r.get("edr_status").is_some())
    );
    assert!(
        out["results"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["edr_status"]["status"] == "enabled")
    );

    first_300_of_an_unknown_id(
        &s,
        "list_library_item_statuses",
        "library_item_id",
        "/library/library-items/{id}/status",
    )
    .await;
}

// ---- The 2025 revisions of the older cards (a superset of the seed's) ----
//
// The seed-style invocations of these cards are in card fixtures, cards_devices.rs and
// cards_lists.rs; here each is invoked as a 2025 flow would, and the exact request is checked.

/// The query of a `GET /devices` page without `ordering`, which the list adds for a stable
/// order whatever the filters (asserted by the paging tests).
fn device_query(r: &kandji_connector::simulator::RecordedRequest) -> Vec<(String, String)> {
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("GET", "/api/v1/devices")
    );
    assert_no_body(r);
    r.query_pairs()
        .into_iter()
        .filter(|(k, _)| k != "ordering")
        .collect()
}

/// List Devices with these inputs and result set: the one request is `GET /api/v1/devices`
/// with exactly the query `want` (besides `ordering`); returns the outputs.
async fn list_devices(
    s: &TestApp,
    inputs: Value,
    result_set: &str,
    want: &[(&str, &str)],
) -> Value {
    let out = s
        .outputs("list_devices", inputs, json!({"result_set": result_set}))
        .await;
    let req = take(s, 1).remove(0);
    assert_eq!(device_query(&req), pairs(want));
    out
}

fn pairs(want: &[(&str, &str)]) -> Vec<(String, String)> {
    want.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn list_devices_2025_filters_by_filevault_and_tags_and_returns_the_first_300() {
    let s = start().await;
    let (tag, want_ids) = {
        let t = s.sim.tenant();
        // A tag some FileVault-on Macs carry.
        let tag = t
            .devices
            .iter()
            .filter(|d| d.platform.as_str() == "Mac" && d.filevault_enabled)
            .find_map(|d| d.tags.first().cloned())
            .expect("a tagged Mac with FileVault on");
        let tag = t.tags.iter().find(|x| x.name == tag).unwrap().clone();
        let mut ids: Vec<String> = t
            .devices
            .iter()
            .filter(|d| {
                d.platform.as_str() == "Mac" && d.filevault_enabled && d.tags.contains(&tag.name)
            })
            .map(id)
            .collect();
        ids.sort();
        (tag, ids)
    };
    let tag_id = tag.id.to_string();
    let out = list_devices(
        &s,
        json!({"platform": "Mac", "filevault_turned_on": true, "tag_id": tag.id.to_string(), "tag_name": tag.name}),
        "first_300_matching_records",
        &[
            ("filevault_enabled", "true"),
            ("platform", "Mac"),
            ("tag_id", &tag_id),
            ("tag_name", &tag.name),
            ("limit", "300"),
            ("offset", "0"),
        ],
    )
    .await;
    assert_keys(&out, &["devices", "status_code"]);
    assert_eq!(out["status_code"], 200);
    let mut got = ids_of(&out["devices"], "device_id");
    got.sort();
    assert!(!got.is_empty());
    assert_eq!(got, want_ids);
    for d in out["devices"].as_array().unwrap() {
        assert!(
            d["tags"].as_array().unwrap().contains(&json!(tag.name)),
            "{d}"
        );
    }

    // FileVault off: Kandji's `false`, never a dropped filter.
    list_devices(
        &s,
        json!({"filevault_turned_on": false}),
        "first_300_matching_records",
        &[
            ("filevault_enabled", "false"),
            ("limit", "300"),
            ("offset", "0"),
        ],
    )
    .await;
}

#[tokio::test]
async fn list_devices_2025_first_matching_record_has_tags_and_the_in_filters_pass_through() {
    let s = start().await;
    let (d, other) = {
        let t = s.sim.tenant();
        let d = t
            .devices
            .iter()
            .find(|d| !d.tags.is_empty())
            .expect("a tagged device")
            .clone();
        let other = t
            .tags
            .iter()
            .find(|x| !d.tags.contains(&x.name))
            .unwrap()
            .clone();
        (d, other)
    };
    let names = format!("{},{}", other.name, d.tags[0]);
    let out = list_devices(
        &s,
        json!({"serial_number": d.serial_number.to_string(), "tag_name_in": names}),
        "first_matching_record",
        &[
            ("serial_number", &d.serial_number),
            ("tag_name_in", &names),
            ("limit", "1"),
            ("offset", "0"),
        ],
    )
    .await;
    assert_eq!(out["device_id"], id(&d));
    assert_eq!(out["tags"], json!(d.tags));

    // Tag ID In: Kandji's comma-separated ids.
    let tag_ids = {
        let t = s.sim.tenant();
        let mine = t.tags.iter().find(|x| x.name == d.tags[0]).unwrap().id;
        format!("{},{mine}", other.id)
    };
    let out = list_devices(
        &s,
        json!({"serial_number": d.serial_number.to_string(), "tag_id_in": tag_ids}),
        "first_matching_record",
        &[
            ("serial_number", &d.serial_number),
            ("tag_id_in", &tag_ids),
            ("limit", "1"),
            ("offset", "0"),
        ],
    )
    .await;
    assert_eq!(out["device_id"], id(&d));
}

#[tokio::test]
async fn list_devices_2025_email_labels_are_the_seeds_filters() {
    let s = start().await;
    let (d, email) = {
        let t = s.sim.tenant();
        let d = t.first_device_of("Mac").unwrap().clone();
        let email = t.user(&d.user_id.unwrap()).unwrap().email.to_string();
        (d, email)
    };
    let part = email.split('@').next().unwrap().to_string();
    // "User Email - Contains" is Kandji's user_email; "- Exact Match" its user_email_exact.
    for (inputs, key, value) in [
        (json!({"user_email_contains": part}), "user_email", &part),
        (
            json!({"user_email_exact_match": email}),
            "user_email_exact",
            &email,
        ),
        // The seed's names send the same.
        (json!({"user_email": part}), "user_email", &part),
        (
            json!({"user_email_exact": email}),
            "user_email_exact",
            &email,
        ),
    ] {
        let out = s
            .outputs(
                "list_devices",
                inputs.clone(),
                json!({"result_set": "first_300_matching_records"}),
            )
            .await;
        let req = take(&s, 1).remove(0);
        assert_eq!(
            device_query(&req),
            pairs(&[(key, value), ("limit", "300"), ("offset", "0")]),
            "{inputs}"
        );
        assert!(
            ids_of(&out["devices"], "device_id").contains(&id(&d)),
            "{inputs}: {out}"
        );
    }
    // Both names of one filter: ambiguous, refused naming both.
    let r = s
        .invoke(
            "list_devices",
            json!({"user_email": part, "user_email_contains": "someone"}),
            json!({"result_set": "first_matching_record"}),
        )
        .await;
    let mut got = r.problem(422);
    got.sort();
    assert_eq!(got, ["inputs.user_email", "inputs.user_email_contains"]);
    assert_eq!(s.sim.request_count(), 0);
}

#[tokio::test]
async fn list_devices_platform_is_any_text_with_the_known_ones_suggested() {
    let s = start().await;
    // A platform this catalog does not list (Kandji, now Iru, also manages Windows): sent as
    // given, and Kandji's answer (no such device here) comes back.
    let out = list_devices(
        &s,
        json!({"platform": "Windows"}),
        "first_300_matching_records",
        &[("platform", "Windows"), ("limit", "300"), ("offset", "0")],
    )
    .await;
    assert_eq!(out, json!({"status_code": 200, "devices": []}));

    // Empty text is still refused, naming the field; nothing reaches Kandji.
    let r = s
        .invoke(
            "list_devices",
            json!({"platform": ""}),
            json!({"result_set": "first_matching_record"}),
        )
        .await;
    assert_eq!(r.problem(422), ["inputs.platform"]);
    assert_eq!(s.sim.request_count(), 0);

    // The schema a designer (and an MCP client) sees: free text, the known values as examples.
    let card = s.get("/v1/cards/list_devices").await.ok();
    let platform = &card["input_schema"]["properties"]["platform"];
    assert_eq!(platform["type"], "string");
    assert!(platform.get("enum").is_none(), "{platform}");
    assert_eq!(
        platform["examples"],
        json!(["Mac", "iPhone", "iPad", "AppleTV", "Vision"])
    );
}

#[tokio::test]
async fn kandji_user_id_takes_an_integer_as_its_text() {
    let s = start().await;
    let mac = device(&s, "Mac");
    let user = other_user(&s.sim, &mac);
    // Update Device: the seed's Number-typed Kandji User ID; Kandji took the deprecated integer
    // id as text until 2025 (kandji-api.md), as the simulated tenant still does.
    let out = s
        .outputs(
            "update_device",
            json!({"device_id": id(&mac), "kandji_user_id": user.deprecated_user_id}),
            json!({}),
        )
        .await;
    let req = only(&s, &format!("PATCH /api/v1/devices/{}", id(&mac)));
    assert_json(&req, json!({"user": user.deprecated_user_id.to_string()}));
    assert_eq!(out["status_code"], 200);
    assert_eq!(out["user"]["user_id"], user.id.to_string());

    // List Devices: an integer becomes the same text in the query; Kandji's answer passes through.
    let out = list_devices(
        &s,
        json!({"kandji_user_id": 42}),
        "first_matching_record",
        &[("user_id", "42"), ("limit", "1"), ("offset", "0")],
    )
    .await;
    assert_eq!(out["status_code"], 400);
    assert_eq!(out["error"], "user_id: Enter a valid UUID.");

    // Elsewhere an integer is not text: a Device ID or an asset tag given as a number is refused.
    for (card, inputs, options, field) in [
        (
            "list_devices",
            json!({"device_id": 7}),
            json!({"result_set": "first_matching_record"}),
            "inputs.device_id",
        ),
        (
            "update_device",
            json!({"device_id": id(&mac), "asset_tag": 1040}),
            json!({}),
            "inputs.asset_tag",
        ),
        (
            "update_device",
            json!({"device_id": id(&mac), "kandji_user_id": -3}),
            json!({}),
            "inputs.kandji_user_id",
        ),
        // List ADE Devices' Kandji User ID is text in both card lists (Kandji's UUID): no integer.
        (
            "list_ade_devices",
            json!({"ade_token_id": "t", "kandji_user_id": 42}),
            json!({"result_set": "first_record"}),
            "inputs.kandji_user_id",
        ),
    ] {
        let r = s.invoke(card, inputs, options).await;
        assert_eq!(r.problem(422), [field], "{card}");
    }
    assert_eq!(s.sim.request_count(), 0);
}

#[tokio::test]
async fn list_blueprints_first_300_records() {
    let s = start().await;
    let out = s
        .outputs(
            "list_blueprints",
            json!({}),
            json!({"result_set": "first_300_records"}),
        )
        .await;
    let req = only(&s, "GET /api/v1/blueprints?limit=300&offset=0");
    assert_no_body(&req);
    assert_keys(&out, &["results", "status_code"]);
    let mut want: Vec<String> = s
        .sim
        .tenant()
        .blueprints
        .iter()
        .map(|b| b.id.to_string())
        .collect();
    want.sort();
    let mut got = ids_of(&out["results"], "id");
    got.sort();
    assert_eq!(got, want);
}

#[tokio::test]
async fn list_ade_integrations_first_record_and_first_300() {
    let s = start().await;
    let raw = kandji(&s, "/integrations/apple/ade").await;
    let first = &raw["results"][0];
    let out = s
        .outputs(
            "list_ade_integrations",
            json!({}),
            json!({"result_set": "first_record"}),
        )
        .await;
    let req = only(&s, "GET /api/v1/integrations/apple/ade");
    assert_no_body(&req);
    let opt = |v: &Value| if v.is_null() { Value::Null } else { v.clone() };
    assert_eq!(
        out,
        json!({
            "status_code": 200,
            "id": first["id"],
            "blueprint_id": first["blueprint"]["id"],
            "blueprint_name": first["blueprint"]["name"],
            "blueprint_icon": first["blueprint"]["icon"],
            "blueprint_color": first["blueprint"]["color"],
            "access_token_expiry": date(&first["access_token_expiry"]),
            "server_name": first["server_name"],
            "server_uuid": first["server_uuid"],
            "admin_id": first["admin_id"],
            "organization_name": first["org_name"],
            "organization_email_address": first["org_email"],
            "organization_phone": first["org_phone"],
            "organization_address": first["org_address"],
            "organization_type": first["org_type"],
            "s_token_file_name": first["stoken_file_name"],
            "last_device_sync": date(&first["last_device_sync"]),
            "default_email_address": first["defaults"]["email"],
            "default_phone": first["defaults"]["phone"],
            "days_left": first["days_left"],
            "status": first["status"],
            "status_reason": opt(&first["status_reason"]),
            "status_received_at": date(&first["status_received_at"]),
            "iphone_count": opt(&first["device_counts"]["iPhone"]),
            "mac_count": opt(&first["device_counts"]["Mac"]),
            "ipad_count": opt(&first["device_counts"]["iPad"]),
            "apple_tv_count": opt(&first["device_counts"]["AppleTV"]),
            "appleseed_beta_enrollment": null,
        })
    );
    assert!(out["mac_count"].as_u64().unwrap() > 0, "{out}");

    let out = s
        .outputs(
            "list_ade_integrations",
            json!({}),
            json!({"result_set": "first_300_records"}),
        )
        .await;
    only(&s, "GET /api/v1/integrations/apple/ade");
    assert_keys(&out, &["results", "status_code"]);
    assert_eq!(ids_of(&out["results"], "id"), ids_of(&raw["results"], "id"));
}

/// The outputs of List ADE Devices' First Record for a record of either of Kandji's shapes
/// (token-scoped: nested `blueprint`; global: `blueprint_id`, `user_id`).
fn ade_first_record(r: &Value) -> Value {
    let nested = r["blueprint"].is_object();
    json!({
        "status_code": 200,
        "blueprint_id": if nested { r["blueprint"]["id"].clone() } else { r["blueprint_id"].clone() },
        "kandji_user_id": if nested { r["user"].clone() } else { r["user_id"].clone() },
        "ade_token_id": r["dep_account"]["id"],
        "server_name": r["dep_account"]["server_name"],
        "asset_tag": r["asset_tag"],
        "description": r["description"],
        "color": r["color"],
        "device_assigned_by": r["device_assigned_by"],
        "device_assigned_date": date(&r["device_assigned_date"]),
        "device_family": r["device_family"],
        "model": r["model"],
        "os": r["os"],
        "profile_assign_time": date(&r["profile_assign_time"]),
        "profile_push_status": null,
        "profile_status": r["profile_status"],
        "ade_device_id": r["id"],
        "last_assignment_time": null,
        "failed_assignment": null,
        "assignment_status_received_at": date(&r["assignment_status_received_at"]),
        "enrolled_device_id": r["mdm_device"]["id"],
        "enrolled_at": date(&r["mdm_device"]["enrolled_at"]),
        "enrolled_device_name": r["mdm_device"]["name"],
        "enrolled_device_enrollment_status": r["mdm_device"]["enrollment_status"].as_u64().map(|n| n.to_string()),
        "deferred_install": r["mdm_device"]["deferred_install"],
        "is_missing": r["mdm_device"]["is_missing"],
        "is_removed": r["mdm_device"]["is_removed"],
    })
}

#[tokio::test]
async fn list_ade_devices_seed_style_asks_the_token_and_first_record_reads_its_first() {
    let s = start().await;
    let token = s.sim.tenant().ade_integrations[0].id.to_string();
    let raw = kandji(&s, &format!("/integrations/apple/ade/{token}/devices")).await;
    let out = s
        .outputs(
            "list_ade_devices",
            json!({"ade_token_id": token}),
            json!({"result_set": "first_record"}),
        )
        .await;
    let req = only(
        &s,
        &format!("GET /api/v1/integrations/apple/ade/{token}/devices"),
    );
    assert_no_body(&req);
    // The first record awaiting nothing: enrolled, with a user.
    assert!(raw["results"][0]["mdm_device"].is_object(), "{raw}");
    assert_eq!(out, ade_first_record(&raw["results"][0]));
    assert_eq!(out["ade_token_id"], token);
}

#[tokio::test]
async fn list_ade_devices_2025_filters_ask_kandjis_global_list_narrowed_to_the_token() {
    let s = start().await;
    let (token, a) = {
        let t = s.sim.tenant();
        let token = t.ade_integrations[0].id;
        let a = t
            .ade_devices_of(&token)
            .iter()
            .find(|a| a.user_id.is_some() && a.mdm_device.is_some())
            .expect("an enrolled ADE device with a user")
            .clone();
        (token.to_string(), a)
    };
    let serial_part = a.serial_number[2..8].to_lowercase();
    let user = a.user_id.unwrap().to_string();
    let family = a.model.platform.as_str();
    let os = a.model.platform.ade_os();
    let model_part = a.model.family_name.split(' ').next().unwrap().to_string();
    let out = s
        .outputs(
            "list_ade_devices",
            json!({
                "ade_token_id": token,
                "device_family": family,
                "kandji_user_id": user,
                "model": model_part,
                "operating_system": os,
                "profile_status": a.profile_status,
                "serial_number_contains_string": serial_part,
            }),
            json!({"result_set": "first_300_records"}),
        )
        .await;
    let req = take(&s, 1).remove(0);
    assert_eq!(req.method, "GET");
    assert_eq!(req.path, "/api/v1/integrations/apple/ade/devices");
    assert_no_body(&req);
    assert_eq!(
        req.query_pairs(),
        pairs(&[
            ("dep_account", &token),
            ("device_family", family),
            ("model", &model_part),
            ("os", os),
            ("profile_status", a.profile_status),
            ("serial_number", &serial_part),
            ("user_id", &user),
        ])
    );
    assert_keys(&out, &["results", "status_code"]);
    assert_eq!(ids_of(&out["results"], "id"), [a.id.to_string()]);
    // The global list's shape: flat ids.
    assert_eq!(
        out["results"][0]["blueprint_id"],
        a.blueprint_id.to_string()
    );

    // One filter is enough to ask the global list; First Record reads its flat shape.
    let raw = kandji(
        &s,
        &format!("/integrations/apple/ade/devices?dep_account={token}&os={os}"),
    )
    .await;
    let out = s
        .outputs(
            "list_ade_devices",
            json!({"ade_token_id": token, "operating_system": os}),
            json!({"result_set": "first_record"}),
        )
        .await;
    only(
        &s,
        &format!("GET /api/v1/integrations/apple/ade/devices?dep_account={token}&os={os}"),
    );
    assert!(raw["results"][0]["blueprint_id"].is_string(), "{raw}");
    assert_eq!(out, ade_first_record(&raw["results"][0]));

    // Operating System is Kandji's closed list.
    let r = s
        .invoke(
            "list_ade_devices",
            json!({"ade_token_id": token, "operating_system": "macOS"}),
            json!({"result_set": "first_record"}),
        )
        .await;
    assert_eq!(r.problem(422), ["inputs.operating_system"]);
    assert_eq!(s.sim.request_count(), 0);
}

#[tokio::test]
async fn lock_device_2025_sends_message_and_phone_number_and_reads_the_device() {
    let s = start().await;
    let (mac, email) = {
        let t = s.sim.tenant();
        let mac = t.first_device_of("Mac").unwrap().clone();
        let email = mac
            .user_id
            .and_then(|u| t.user(&u))
            .map(|u| u.email.to_string());
        (mac, email)
    };
    let r = s
        .invoke(
            "lock_device",
            json!({"device_id": id(&mac), "lock_message": "Return to IT", "phone_number": "+1 415 555 0100"}),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(no_store(&r), "a Lock PIN answered cacheable");
    let reqs = take(&s, 2);
    assert_eq!(
        line(&reqs[0]),
        format!("POST /api/v1/devices/{}/action/lock", id(&mac))
    );
    assert_json(
        &reqs[0],
        json!({"Message": "Return to IT", "PhoneNumber": "+1 415 555 0100"}),
    );
    assert_eq!(line(&reqs[1]), format!("GET /api/v1/devices/{}", id(&mac)));
    let out = &r.body["outputs"];
    let pin = out["lock_pin"].as_str().expect("a Lock PIN").to_string();
    assert_eq!(
        *out,
        json!({
            "status_code": 200,
            "device_id": id(&mac),
            "device_name": mac.device_name.to_string(),
            "serial_number": mac.serial_number.to_string(),
            "platform": "Mac",
            "user_email": email,
            "message": null,
            "lookup_error": null,
            "lock_pin": pin,
            "pin": pin,
        })
    );
    assert_eq!(
        s.sim
            .tenant()
            .device(&mac.device_id)
            .unwrap()
            .unlock_pin
            .as_deref(),
        Some(pin.as_str())
    );
}

#[tokio::test]
async fn lock_device_reads_the_pin_in_either_case() {
    // Kandji's Lock answers `PIN` (kandji-api.md), its unlock-PIN read `pin`: either is the PIN.
    let s = start().await;
    let mac = device(&s, "Mac");
    s.sim.push_faults(
        Some("/action/lock"),
        vec![answer(200, json!({"pin": "246810"}))],
    );
    let out = s
        .outputs("lock_device", json!({"device_id": id(&mac)}), json!({}))
        .await;
    take(&s, 2);
    assert_eq!(
        (&out["pin"], &out["lock_pin"]),
        (&json!("246810"), &json!("246810"))
    );
    assert_eq!(out["message"], Value::Null, "{out}");
}

#[tokio::test]
async fn erase_device_2025_sends_return_to_service_only_when_given() {
    let s = start().await;
    let iphone = device(&s, "iPhone");
    let out = s
        .outputs(
            "erase_device",
            json!({"device_id": id(&iphone), "preserve_data_plan": true, "return_to_service_enabled": true, "return_to_service_profile_id": "wifi-profile-7"}),
            json!({}),
        )
        .await;
    let reqs = take(&s, 2);
    assert_eq!(
        line(&reqs[0]),
        format!("POST /api/v1/devices/{}/action/erase", id(&iphone))
    );
    assert_json(
        &reqs[0],
        json!({"PreserveDataPlan": true, "ReturnToService": {"Enabled": true, "ProfileId": "wifi-profile-7"}}),
    );
    assert_eq!(
        line(&reqs[1]),
        format!("GET /api/v1/devices/{}", id(&iphone))
    );
    assert_eq!(out["status_code"], 200);
    assert_eq!(out["device_id"], id(&iphone));
    assert_eq!(out["platform"], "iPhone");
    assert_eq!(out["serial_number"], iphone.serial_number.to_string());
    assert_eq!(out["pin"], Value::Null);

    // The 2025 card's DisallowProximity is Kandji's DisallowProximitySetup.
    s.outputs(
        "erase_device",
        json!({"device_id": id(&iphone), "disallow_proximity": true}),
        json!({}),
    )
    .await;
    let reqs = take(&s, 2);
    assert_json(&reqs[0], json!({"DisallowProximitySetup": true}));

    // Enabled alone (false): the object with only Enabled.
    let ipad = device(&s, "iPad");
    s.outputs(
        "erase_device",
        json!({"device_id": id(&ipad), "return_to_service_enabled": false}),
        json!({}),
    )
    .await;
    let reqs = take(&s, 2);
    assert_json(&reqs[0], json!({"ReturnToService": {"Enabled": false}}));

    // A Mac with the seed's Number-typed PIN: the same six digits, as text.
    let mac = device(&s, "Mac");
    let out = s
        .outputs(
            "erase_device",
            json!({"device_id": id(&mac), "pin": 123456}),
            json!({}),
        )
        .await;
    let reqs = take(&s, 2);
    assert_json(&reqs[0], json!({"PIN": "123456"}));
    assert_eq!(out["pin"], "123456");

    // A Profile ID without Enabled: Kandji would refuse it, so it never leaves.
    let r = s
        .invoke(
            "erase_device",
            json!({"device_id": id(&ipad), "return_to_service_profile_id": "p"}),
            json!({}),
        )
        .await;
    assert_eq!(r.problem(422), ["inputs.return_to_service_enabled"]);
    assert_eq!(s.sim.request_count(), 0);
}

#[tokio::test]
async fn update_device_2025_replaces_tags_and_clears_what_is_left_blank() {
    let s = start().await;
    let mac = device(&s, "Mac");
    let path = format!("PATCH /api/v1/devices/{}", id(&mac));

    // Tags: the whole set, replacing; a new name becomes a tag.
    let out = s
        .outputs(
            "update_device",
            json!({"device_id": id(&mac), "tags": ["accuhive_vip", "loaner"]}),
            json!({}),
        )
        .await;
    let req = only(&s, &path);
    assert_json(&req, json!({"tags": ["accuhive_vip", "loaner"]}));
    assert_eq!(out["status_code"], 200);
    assert_eq!(out["device"]["tags"], json!(["accuhive_vip", "loaner"]));
    assert_eq!(
        out["device"]["supplemental_build_version"],
        mac.build(),
        "{out}"
    );
    assert_eq!(out["device"]["supplemental_os_version_extra"], "");
    assert!(s.sim.tenant().tags.iter().any(|t| t.name == "loaner"));

    // Kandji's 2025 card types Tags as text: one text of comma-separated names is the list.
    let out = s
        .outputs(
            "update_device",
            json!({"device_id": id(&mac), "tags": "loaner, accuhive_02"}),
            json!({}),
        )
        .await;
    let req = only(&s, &path);
    assert_json(&req, json!({"tags": ["loaner", "accuhive_02"]}));
    assert_eq!(out["device"]["tags"], json!(["loaner", "accuhive_02"]));

    // Give an asset tag first, so that clearing it changes something.
    s.outputs(
        "update_device",
        json!({"device_id": id(&mac), "asset_tag": "KJ-1"}),
        json!({}),
    )
    .await;
    take(&s, 1);

    // The three "leave blank to clear" options alone count as a change.
    let out = s
        .outputs(
            "update_device",
            json!({"device_id": id(&mac)}),
            json!({"asset_tag": true, "user_id": true, "tags": true}),
        )
        .await;
    let req = only(&s, &path);
    assert_json(&req, json!({"asset_tag": null, "user": null, "tags": []}));
    assert_eq!(out["status_code"], 200);
    assert_eq!(out["device"]["asset_tag"], Value::Null);
    assert_eq!(out["device"]["tags"], json!([]));
    assert_eq!(out["user"], Value::Null);
    let d = s.sim.tenant().device(&mac.device_id).unwrap().clone();
    assert_eq!(
        (d.asset_tag.as_deref(), d.user_id, d.tags.len()),
        (None, None, 0)
    );

    // "Blank" as a flow sends it: empty text (and an empty list) with the clear option clears.
    s.outputs(
        "update_device",
        json!({"device_id": id(&mac), "tags": ["loaner"], "asset_tag": "KJ-9"}),
        json!({}),
    )
    .await;
    take(&s, 1);
    let out = s
        .outputs(
            "update_device",
            json!({"device_id": id(&mac), "asset_tag": "", "tags": "", "kandji_user_id": ""}),
            json!({"asset_tag": true, "tags": true}),
        )
        .await;
    let req = only(&s, &path);
    assert_json(&req, json!({"asset_tag": null, "tags": []}));
    assert_eq!(out["device"]["tags"], json!([]));
    // Blank without its clear option is no change at all: refused, nothing sent.
    let r = s
        .invoke(
            "update_device",
            json!({"device_id": id(&mac), "asset_tag": "", "tags": []}),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(s.sim.request_count(), 0);

    // A value given wins over its clear option; an option left false clears nothing.
    s.outputs(
        "update_device",
        json!({"device_id": id(&mac), "asset_tag": "KJ-2"}),
        json!({"asset_tag": true, "tags": false}),
    )
    .await;
    let req = only(&s, &path);
    assert_json(&req, json!({"asset_tag": "KJ-2"}));

    // An option that is false is no change.
    let r = s
        .invoke(
            "update_device",
            json!({"device_id": id(&mac)}),
            json!({"user_id": false}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(s.sim.request_count(), 0);
}

#[tokio::test]
async fn get_device_basic_2025_has_lost_mode_status_and_tags() {
    let s = start().await;
    let iphone = device(&s, "iPhone");
    s.outputs(
        "update_device",
        json!({"device_id": id(&iphone), "tags": ["accuhive_02"]}),
        json!({}),
    )
    .await;
    s.outputs(
        "turn_on_lost_mode",
        json!({"device_id": id(&iphone), "lock_message": "Lost"}),
        json!({}),
    )
    .await;
    s.sim.clear_requests();
    let out = s.get_device_outputs(&id(&iphone)).await;
    only(&s, &format!("GET /api/v1/devices/{}", id(&iphone)));
    let raw = kandji(&s, &format!("/devices/{}", id(&iphone))).await;
    assert!(
        !raw["lost_mode_status"].as_str().unwrap().is_empty(),
        "{raw}"
    );
    assert_eq!(out["device"]["lost_mode_status"], raw["lost_mode_status"]);
    assert_eq!(out["device"]["tags"], json!(["accuhive_02"]));

    // Full: the 2025 card's Lost Mode, Tags, Cellular, Security Information and User.
    let out = s
        .outputs(
            "get_device",
            json!({"device_id": id(&iphone)}),
            json!({"details": "full"}),
        )
        .await;
    only(&s, &format!("GET /api/v1/devices/{}/details", id(&iphone)));
    let raw = kandji(&s, &format!("/devices/{}/details", id(&iphone))).await;
    assert_eq!(out["tags"], json!(["accuhive_02"]));
    assert_eq!(out["lost_mode"], raw["lost_mode"]);
    assert_eq!(out["lost_mode"]["lock_screen_message"], "Lost", "{out}");
    assert_eq!(out["cellular"], raw["cellular"]);
    assert!(out["cellular"].is_object(), "{out}");
    assert_eq!(out["security_information"], raw["security_information"]);
    assert_eq!(
        out["user"]["user_id"],
        raw["general"]["assigned_user"]["id"]
    );
    assert_eq!(out["user"]["email"], json!(user_email(&s, &iphone)));
}

#[tokio::test]
async fn get_blueprint_2025_has_type_and_the_2025_labels() {
    let s = start().await;
    let bp = s.sim.tenant().blueprints[0].clone();
    let out = s
        .outputs(
            "get_blueprint",
            json!({"blueprint_name": bp.name}),
            json!({}),
        )
        .await;
    let req = take(&s, 1).remove(0);
    assert_eq!(req.path, "/api/v1/blueprints");
    assert_eq!(
        req.query_pairs(),
        pairs(&[("name", &bp.name), ("limit", "300"), ("offset", "0")])
    );
    assert_eq!(out["id"], bp.id.to_string());
    assert_eq!(out["type"], bp.kind.as_str());
    assert_eq!(out["computer_count"], out["count"]);
    assert_eq!(out["missing_computer_count"], out["missing"]);
    assert_eq!(out["enrollment_code_active"], bp.enrollment_code.is_active);
}

#[tokio::test]
async fn erase_device_answers_the_erase_when_the_device_cannot_be_read_back() {
    // The erase went through; the read after it fails (Kandji 500s): the answer is still the
    // erase's, once, so that a workflow engine does not erase again.
    let s = start().await;
    let mac = device(&s, "Mac");
    s.sim.push_faults(
        Some(&format!("/devices/{}", id(&mac))),
        std::iter::once(Fault::Delay(std::time::Duration::ZERO))
            .chain(vec![Fault::status(500); 6])
            .collect(),
    );
    let out = s
        .outputs(
            "erase_device",
            json!({"device_id": id(&mac), "pin": "123456"}),
            json!({}),
        )
        .await;
    let reqs = s.sim.requests();
    let erases = reqs
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/action/erase"))
        .count();
    assert_eq!(erases, 1, "{:?}", reqs.iter().map(line).collect::<Vec<_>>());
    assert_eq!(out["status_code"], 200, "{out}");
    assert_eq!(out["pin"], "123456");
    assert_eq!(out["device_id"], id(&mac));
    assert_eq!(out["serial_number"], Value::Null);
    assert!(
        out["lookup_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{out}"
    );
}
