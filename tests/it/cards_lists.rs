//! The list cards and the blueprint and ADE cards against the simulated tenant: exact requests
//! (limits, filters, paging across pages, `next` links on the wrong host followed on the
//! tenant's host), how many, the records the caller got, and Kandji's errors passed through.

use crate::harness::kandji::*;
use serde_json::{Value, json};

/// A record with these (pointer) date fields normalised and these `""` fields nulled, as the
/// card's `record_schema` does.
fn normalised(record: &Value, dates: &[&str], empty_to_null: &[&str]) -> Value {
    let mut r = record.clone();
    for p in dates {
        if let Some(v) = r.pointer_mut(p) {
            *v = date(v);
        }
    }
    for p in empty_to_null {
        if let Some(v) = r.pointer_mut(p)
            && v == ""
        {
            *v = Value::Null;
        }
    }
    r
}

fn all_normalised(records: &Value, dates: &[&str], empty_to_null: &[&str]) -> Value {
    Value::Array(
        records
            .as_array()
            .unwrap()
            .iter()
            .map(|r| normalised(r, dates, empty_to_null))
            .collect(),
    )
}

const DEVICE_DATES: &[&str] = &["/last_check_in", "/first_enrollment", "/last_enrollment"];

fn device_record(raw: &Value) -> Value {
    normalised(raw, DEVICE_DATES, &["/user"])
}

// ---- List Devices ----

#[tokio::test]
async fn list_devices_first_matching_record_asks_for_one() {
    let s = start().await;
    let raw = kandji(&s, "/devices?ordering=device_id&limit=1").await;
    let out = s
        .outputs(
            "list_devices",
            json!({}),
            json!({"result_set": "first_matching_record"}),
        )
        .await;
    let req = only(
        &s,
        "GET /api/v1/devices?ordering=device_id&limit=1&offset=0",
    );
    assert_no_body(&req);
    let first = device_record(&raw[0]);
    let mut want = json!({"status_code": 200});
    for k in [
        "device_id",
        "device_name",
        "model",
        "serial_number",
        "platform",
        "os_version",
        "last_check_in",
        "user",
        "asset_tag",
        "blueprint_id",
        "agent_installed",
        "is_missing",
        "is_removed",
        "agent_version",
        "first_enrollment",
        "last_enrollment",
        "blueprint_name",
        "tags",
    ] {
        want[k] = first[k].clone();
    }
    assert_eq!(out, want);
    // The first in the stable order the card asks for.
    let d0 = s
        .sim
        .tenant()
        .devices
        .iter()
        .min_by_key(|d| d.device_id.to_string())
        .unwrap()
        .clone();
    assert_eq!(out["device_id"], id(&d0));
    assert_eq!(out["first_enrollment"], rfc(&d0.first_enrollment));
}

#[tokio::test]
async fn list_devices_passes_every_filter_as_kandjis_query_param() {
    let s = start().await;
    // The second Mac, so that the filters (not the order) find it.
    let mac = {
        let mut t = s.sim.tenant_mut();
        let id = t.devices_of("Mac").nth(1).unwrap().device_id;
        let first_user = t.users[0].id;
        let d = t.device_mut(&id).unwrap();
        d.asset_tag = Some("KJ-77777".into());
        if d.user_id.is_none() {
            d.user_id = Some(first_user);
        }
        d.clone()
    };
    let user = s.sim.tenant().user(&mac.user_id.unwrap()).unwrap().clone();
    let inputs = json!({
        "user_email": &user.email[..user.email.find('@').unwrap()],
        "user_email_exact": user.email,
        "user_name": user.name,
        "kandji_user_id": user.id.to_string(),
        "device_id": id(&mac),
        "device_name": mac.device_name,
        "serial_number": &mac.serial_number[..8],
        "mac_address": mac.mac_address_string().unwrap(),
        "asset_tag": "KJ-77777",
        "platform": "Mac",
        "model": mac.model.name,
        "os_version": mac.os_version,
        "blueprint_id": mac.blueprint_id.to_string(),
    });
    let out = s
        .outputs(
            "list_devices",
            inputs.clone(),
            json!({"result_set": "first_matching_record"}),
        )
        .await;
    let req = take(&s, 1).remove(0);
    assert_eq!(
        (req.method.as_str(), req.path.as_str()),
        ("GET", "/api/v1/devices")
    );
    let mut want: Vec<(String, String)> = [
        ("user_email", "user_email"),
        ("user_email_exact", "user_email_exact"),
        ("user_name", "user_name"),
        ("user_id", "kandji_user_id"),
        ("device_id", "device_id"),
        ("device_name", "device_name"),
        ("serial_number", "serial_number"),
        ("mac_address", "mac_address"),
        ("asset_tag", "asset_tag"),
        ("platform", "platform"),
        ("model", "model"),
        ("os_version", "os_version"),
        ("blueprint_id", "blueprint_id"),
    ]
    .iter()
    .map(|(param, input)| {
        (
            param.to_string(),
            inputs[input].as_str().unwrap().to_string(),
        )
    })
    .collect();
    want.push(("ordering".into(), "device_id".into()));
    want.push(("limit".into(), "1".into()));
    want.push(("offset".into(), "0".into()));
    let mut got = req.query_pairs();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    assert_eq!(out["device_id"], id(&mac));
    assert_eq!(out["asset_tag"], "KJ-77777");
    assert_eq!(out["user"]["email"], &*user.email);

    // Two filters, the exact query string.
    let ipad = device(&s, "iPad");
    let email = user_email(&s, &ipad).unwrap();
    let out = s
        .outputs(
            "list_devices",
            json!({"platform": "iPad", "user_email_exact": email}),
            json!({"result_set": "first_matching_record"}),
        )
        .await;
    let req = take(&s, 1).remove(0);
    assert_eq!(
        req.query.as_deref(),
        Some(
            format!(
                "platform=iPad&user_email_exact={}&ordering=device_id&limit=1&offset=0",
                email.replace('@', "%40")
            )
            .as_str()
        )
    );
    assert_eq!(out["device_id"], id(&ipad));
}

#[tokio::test]
async fn list_devices_first_200_asks_for_200_and_gets_exactly_200() {
    let s = start_with(devices(260)).await;
    let raw = kandji(&s, "/devices?ordering=device_id&limit=200&offset=0").await;
    let out = s
        .outputs(
            "list_devices",
            json!({}),
            json!({"result_set": "first_200_matching_records"}),
        )
        .await;
    only(
        &s,
        "GET /api/v1/devices?ordering=device_id&limit=200&offset=0",
    );
    assert_keys(&out, &["devices", "status_code"]);
    assert_eq!(out["status_code"], 200);
    let got = out["devices"].as_array().unwrap();
    assert_eq!(got.len(), 200);
    assert_eq!(
        out["devices"],
        all_normalised(&raw, DEVICE_DATES, &["/user"])
    );
    let t = s.sim.tenant();
    // In the stable order the card asks for.
    let mut by_id: Vec<_> = t.devices.iter().collect();
    by_id.sort_by_key(|d| d.device_id.to_string());
    for (record, d) in got.iter().zip(&by_id) {
        assert_eq!(record["device_id"], d.device_id.to_string());
        assert_eq!(record["last_enrollment"], rfc(&d.last_enrollment));
        if d.user_id.is_none() {
            assert_eq!(record["user"], Value::Null, "an unassigned user stays \"\"");
        }
    }
    assert!(by_id[..200].iter().any(|d| d.user_id.is_none()));
}

#[tokio::test]
async fn list_devices_first_200_with_a_filter_stops_on_kandjis_short_page() {
    let s = start_with(devices(260)).await;
    let mut macs: Vec<String> = s
        .sim
        .tenant()
        .devices_of("Mac")
        .map(|d| d.device_id.to_string())
        .collect();
    macs.sort();
    assert!(macs.len() < 200);
    let out = s
        .outputs(
            "list_devices",
            json!({"platform": "Mac"}),
            json!({"result_set": "first_200_matching_records"}),
        )
        .await;
    only(
        &s,
        "GET /api/v1/devices?platform=Mac&ordering=device_id&limit=200&offset=0",
    );
    let got = texts(&out["devices"], "device_id");
    assert_eq!(got, macs);
}

#[tokio::test]
async fn list_devices_passes_kandjis_field_error_through() {
    let s = start().await;
    let out = s
        .outputs(
            "list_devices",
            json!({"device_id": "not-a-uuid"}),
            json!({"result_set": "first_matching_record"}),
        )
        .await;
    only(
        &s,
        "GET /api/v1/devices?device_id=not-a-uuid&ordering=device_id&limit=1&offset=0",
    );
    assert_eq!(out["status_code"], 400);
    assert_eq!(out["error"], "device_id: Enter a valid UUID.");
    for (k, v) in out.as_object().unwrap() {
        if k != "status_code" && k != "error" {
            assert!(v.is_null(), "{k} = {v}");
        }
    }
    let out = s
        .outputs(
            "list_devices",
            json!({"device_id": "not-a-uuid"}),
            json!({"result_set": "first_200_matching_records"}),
        )
        .await;
    take(&s, 1);
    assert_eq!(
        out,
        json!({"status_code": 400, "devices": null, "error": "device_id: Enter a valid UUID."})
    );
}

// ---- Blueprints ----

#[tokio::test]
async fn list_blueprints_first_200() {
    let s = start().await;
    let raw = kandji(&s, "/blueprints").await;
    let out = s
        .outputs(
            "list_blueprints",
            json!({}),
            json!({"result_set": "first_200_records"}),
        )
        .await;
    only(&s, "GET /api/v1/blueprints?limit=200&offset=0");
    assert_eq!(out, json!({"status_code": 200, "results": raw["results"]}));
    assert_eq!(out["results"].as_array().unwrap().len(), 5);

    // More than 200: exactly 200, in one request.
    {
        let mut t = s.sim.tenant_mut();
        for i in 0..250 {
            t.blueprints.push(new_blueprint(&format!("Team {i:03}")));
        }
    }
    let out = s
        .outputs(
            "list_blueprints",
            json!({}),
            json!({"result_set": "first_200_records"}),
        )
        .await;
    only(&s, "GET /api/v1/blueprints?limit=200&offset=0");
    let got = texts(&out["results"], "id");
    let want: Vec<String> = s.sim.tenant().blueprints[..200]
        .iter()
        .map(|b| b.id.to_string())
        .collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn list_blueprints_follows_next_on_the_tenants_host() {
    let s = start().await;
    let raw = kandji(&s, "/blueprints").await;
    let results = raw["results"].as_array().unwrap();
    // Kandji answers a smaller page than asked, its `next` naming the web-app host.
    s.sim.push_faults(
        Some("/api/v1/blueprints"),
        vec![answer(
            200,
            json!({
                "count": 5,
                "next": "https://accuhive.kandji.io/api/v1/blueprints?limit=2&offset=2",
                "previous": null,
                "results": &results[..2],
            }),
        )],
    );
    let out = s
        .outputs(
            "list_blueprints",
            json!({}),
            json!({"result_set": "first_200_records"}),
        )
        .await;
    let lines: Vec<String> = take(&s, 3).iter().map(line).collect();
    assert_eq!(
        lines,
        [
            "GET /api/v1/blueprints?limit=200&offset=0",
            "GET /api/v1/blueprints?limit=2&offset=2",
            "GET /api/v1/blueprints?limit=2&offset=4",
        ]
    );
    assert_eq!(out, json!({"status_code": 200, "results": raw["results"]}));
}

#[tokio::test]
async fn get_blueprint_by_id() {
    let s = start().await;
    let bp = s.sim.tenant().blueprints[0].clone();
    let raw = kandji(&s, &format!("/blueprints/{}", bp.id)).await;
    let out = s
        .outputs(
            "get_blueprint",
            json!({"blueprint_id": bp.id.to_string()}),
            json!({}),
        )
        .await;
    let req = only(&s, &format!("GET /api/v1/blueprints/{}", bp.id));
    assert_no_body(&req);
    assert!(raw["computers_count"].as_u64().unwrap() > 0);
    assert_eq!(
        out,
        json!({
            "status_code": 200,
            "id": bp.id.to_string(),
            "name": bp.name,
            "icon": bp.icon,
            "color": bp.color,
            "description": bp.description,
            "parameters": bp.params,
            "count": raw["computers_count"],
            "missing": raw["missing_computers_count"],
            "enrollment_code": bp.enrollment_code.code,
            "enrollment_code_is_active": bp.enrollment_code.is_active,
            "alerts_count": null,
            // The 2025 card's labels for the same values, and the Blueprint's type.
            "computer_count": raw["computers_count"],
            "missing_computer_count": raw["missing_computers_count"],
            "enrollment_code_active": bp.enrollment_code.is_active,
            "type": "classic",
        })
    );

    let nobody = unknown_id();
    let out = s
        .outputs("get_blueprint", json!({"blueprint_id": nobody}), json!({}))
        .await;
    only(&s, &format!("GET /api/v1/blueprints/{nobody}"));
    assert_eq!(out["status_code"], 404);
    assert_eq!(out["error"], "Not found.");
    assert_eq!(out["id"], Value::Null);
}

#[tokio::test]
async fn get_blueprint_by_name_picks_the_exact_name_among_kandjis_contains_matches() {
    let s = start().await;
    let engineering = s
        .sim
        .tenant()
        .blueprint_by_name("Engineering")
        .unwrap()
        .clone();
    s.sim
        .tenant_mut()
        .blueprints
        .insert(0, new_blueprint("Engineering Leads"));
    let raw = kandji(&s, "/blueprints?name=Engineering").await;
    let names = texts(&raw["results"], "name");
    assert_eq!(names, ["Engineering Leads", "Engineering"]);

    let out = s
        .outputs(
            "get_blueprint",
            json!({"blueprint_name": "Engineering"}),
            json!({}),
        )
        .await;
    let req = only(
        &s,
        "GET /api/v1/blueprints?name=Engineering&limit=300&offset=0",
    );
    assert_no_body(&req);
    assert_eq!(out["status_code"], 200);
    assert_eq!(out["id"], engineering.id.to_string());
    assert_eq!(out["name"], "Engineering");
    assert_eq!(out["enrollment_code_is_active"], false);
    assert!(out.get("error").is_none());

    // A name that matches nothing exactly: 404 and a message, nothing else.
    for name in ["No Such Blueprint", "Engineer"] {
        let out = s
            .outputs("get_blueprint", json!({"blueprint_name": name}), json!({}))
            .await;
        let req = take(&s, 1).remove(0);
        assert_eq!(req.path, "/api/v1/blueprints");
        assert_eq!(
            req.query_pairs(),
            [
                ("name".to_string(), name.to_string()),
                ("limit".into(), "300".into()),
                ("offset".into(), "0".into())
            ]
        );
        assert_eq!(
            out,
            json!({
                "status_code": 404,
                "error": "No Blueprint has exactly this name",
                "id": null, "name": null, "icon": null, "color": null, "description": null,
                "parameters": null, "count": null, "missing": null, "enrollment_code": null,
                "enrollment_code_is_active": null, "alerts_count": null,
                "computer_count": null, "missing_computer_count": null,
                "enrollment_code_active": null, "type": null,
            }),
            "{name}"
        );
    }
}

#[tokio::test]
async fn get_blueprint_by_name_encodes_the_name_and_an_id_wins_over_a_name() {
    let s = start().await;
    let name = "R&D / Lab #1 +ü";
    let bp = new_blueprint(name);
    s.sim.tenant_mut().blueprints.push(bp.clone());
    let out = s
        .outputs("get_blueprint", json!({"blueprint_name": name}), json!({}))
        .await;
    let req = take(&s, 1).remove(0);
    assert_eq!(req.path, "/api/v1/blueprints");
    assert_eq!(
        req.query.as_deref(),
        Some("name=R%26D+%2F+Lab+%231+%2B%C3%BC&limit=300&offset=0")
    );
    assert_eq!(req.query_pairs()[0], ("name".to_string(), name.to_string()));
    assert_eq!(out["id"], bp.id.to_string());
    assert_eq!(out["name"], name);

    let all_staff = s.sim.tenant().blueprints[0].id;
    let out = s
        .outputs(
            "get_blueprint",
            json!({"blueprint_id": all_staff.to_string(), "blueprint_name": name}),
            json!({}),
        )
        .await;
    only(&s, &format!("GET /api/v1/blueprints/{all_staff}"));
    assert_eq!(out["id"], all_staff.to_string());
}

#[tokio::test]
async fn get_blueprint_by_name_reads_the_next_page_on_the_tenants_host() {
    let s = start().await;
    let engineering = s.sim.tenant().blueprint_by_name("Engineering").unwrap().id;
    {
        let mut t = s.sim.tenant_mut();
        for i in 0..300 {
            t.blueprints
                .insert(0, new_blueprint(&format!("Engineering {i:03}")));
        }
    }
    let out = s
        .outputs(
            "get_blueprint",
            json!({"blueprint_name": "Engineering"}),
            json!({}),
        )
        .await;
    let lines: Vec<String> = take(&s, 2).iter().map(line).collect();
    assert_eq!(
        lines,
        [
            "GET /api/v1/blueprints?name=Engineering&limit=300&offset=0",
            // `next` names https://accuhive.kandji.io; only its query is used.
            "GET /api/v1/blueprints?limit=300&name=Engineering&offset=300",
        ]
    );
    assert_eq!(out["id"], engineering.to_string());
}

#[tokio::test]
async fn create_blueprint_posts_a_form_with_dotted_keys() {
    let s = start().await;
    let out = s
        .outputs(
            "create_blueprint",
            json!({
                "name": "Sales Macs",
                "enrollment_code_is_active": true,
                "enrollment_code": "424242",
                "color": "orange-500",
                "description": "Laptops for the sales team",
                "icon": "ss-fax",
            }),
            json!({}),
        )
        .await;
    let req = only(&s, "POST /api/v1/blueprints");
    assert_form(
        &req,
        &[
            ("name", "Sales Macs"),
            ("enrollment_code.is_active", "true"),
            ("enrollment_code.code", "424242"),
            ("color", "orange-500"),
            ("description", "Laptops for the sales team"),
            ("icon", "ss-fax"),
        ],
    );
    let created = s
        .sim
        .tenant()
        .blueprint_by_name("Sales Macs")
        .unwrap()
        .clone();
    assert_eq!(
        out,
        json!({
            "status_code": 201,
            "blueprint": {
                "id": created.id.to_string(),
                "name": "Sales Macs",
                "icon": "ss-fax",
                "color": "orange-500",
                "description": "Laptops for the sales team",
                "params": {},
                "enrollment_code": {"code": "424242", "is_active": true},
                "type": "classic",
            },
        })
    );

    // Only the required fields; false as Kandji's form spells it.
    let out = s
        .outputs(
            "create_blueprint",
            json!({"name": "Kiosks", "enrollment_code_is_active": false}),
            json!({}),
        )
        .await;
    let req = only(&s, "POST /api/v1/blueprints");
    assert_form(
        &req,
        &[("name", "Kiosks"), ("enrollment_code.is_active", "false")],
    );
    assert_eq!(out["status_code"], 201);
    assert_eq!(out["blueprint"]["enrollment_code"]["is_active"], false);
    let code = out["blueprint"]["enrollment_code"]["code"]
        .as_str()
        .unwrap();
    assert_eq!(code.len(), 6);

    // Kandji's list-of-strings 400 for a duplicate name.
    let out = s
        .outputs(
            "create_blueprint",
            json!({"name": "Kiosks", "enrollment_code_is_active": true}),
            json!({}),
        )
        .await;
    take(&s, 1);
    assert_eq!(
        out,
        json!({"status_code": 400, "blueprint": null, "error": "A blueprint with this name already exists."})
    );
}

// ---- ADE ----

const ADE_INTEGRATION_DATES: &[&str] = &["/access_token_expiry", "/last_device_sync"];

#[tokio::test]
async fn get_ade_integration_maps_kandjis_record() {
    let s = start().await;
    let (integrations, blueprints) = {
        let t = s.sim.tenant();
        (t.ade_integrations.clone(), t.blueprints.clone())
    };
    for a in &integrations {
        let raw = kandji(&s, &format!("/integrations/apple/ade/{}", a.id)).await;
        let out = s
            .outputs(
                "get_ade_integration",
                json!({"ade_token_id": a.id.to_string()}),
                json!({}),
            )
            .await;
        let req = only(&s, &format!("GET /api/v1/integrations/apple/ade/{}", a.id));
        assert_no_body(&req);
        let bp = blueprints.iter().find(|b| b.id == a.blueprint_id).unwrap();
        let counts = &raw["device_counts"];
        assert!(counts["total"].as_u64().unwrap() > 0);
        assert_eq!(
            out,
            json!({
                "status_code": 200,
                "default_blueprint_id": bp.id.to_string(),
                "default_blueprint_name": bp.name,
                "default_blueprint_color": bp.color,
                "default_blueprint_icon": bp.icon,
                "access_token_expiry": rfc(&a.access_token_expiry),
                "server_name": a.server_name,
                "server_uuid": a.server_uuid.to_string(),
                "organization_name": a.org_name,
                "organization_email": a.org_email,
                "organization_phone": a.org_phone,
                "stoken_file_name": a.stoken_file_name,
                "last_device_sync": rfc(&a.last_device_sync),
                "default_email": a.default_email,
                "default_phone": a.default_phone,
                "days_left": raw["days_left"],
                "status": a.status,
                "status_reason": a.status_reason,
                "status_received_at": raw["status_received_at"],
                "apple_tv_device_count": counts["AppleTV"],
                "ipad_device_count": counts["iPad"],
                "iphone_device_count": counts["iPhone"],
                "mac_device_count": counts["Mac"],
                "total_device_count": counts["total"],
            })
        );
    }
    assert_eq!(integrations[0].status, "SUCCESS");
    assert_eq!(integrations[1].status_reason.as_deref(), Some("FORBIDDEN"));

    let nobody = unknown_id();
    let out = s
        .outputs(
            "get_ade_integration",
            json!({"ade_token_id": nobody}),
            json!({}),
        )
        .await;
    only(&s, &format!("GET /api/v1/integrations/apple/ade/{nobody}"));
    assert_eq!(out["status_code"], 404);
    assert_eq!(out["error"], "Not found.");
    assert_eq!(out["server_name"], Value::Null);
}

#[tokio::test]
async fn list_ade_integrations_first_200_and_page_numbers() {
    let s = start().await;
    let raw = kandji(&s, "/integrations/apple/ade").await;
    let want = all_normalised(&raw["results"], ADE_INTEGRATION_DATES, &[]);
    let out = s
        .outputs(
            "list_ade_integrations",
            json!({}),
            json!({"result_set": "first_200_records"}),
        )
        .await;
    let req = only(&s, "GET /api/v1/integrations/apple/ade");
    assert_no_body(&req);
    assert_eq!(out, json!({"status_code": 200, "results": want}));
    assert_eq!(out["results"].as_array().unwrap().len(), 2);

    // Two pages: `next` on the web-app host is followed on the tenant's host.
    let results = raw["results"].as_array().unwrap();
    let page = |records: &[Value], next: Value| {
        answer(
            200,
            json!({"count": 2, "next": next, "previous": null, "results": records}),
        )
    };
    s.sim.push_faults(
        Some("/api/v1/integrations/apple/ade"),
        vec![
            page(
                &results[..1],
                json!("https://accuhive.kandji.io/api/v1/integrations/apple/ade?page=2"),
            ),
            page(&results[1..], Value::Null),
        ],
    );
    let out = s
        .outputs(
            "list_ade_integrations",
            json!({}),
            json!({"result_set": "first_200_records"}),
        )
        .await;
    let lines: Vec<String> = take(&s, 2).iter().map(line).collect();
    assert_eq!(
        lines,
        [
            "GET /api/v1/integrations/apple/ade",
            "GET /api/v1/integrations/apple/ade?page=2"
        ]
    );
    assert_eq!(out, json!({"status_code": 200, "results": want}));
}

const ADE_DEVICE_DATES: &[&str] = &[
    "/device_assigned_date",
    "/profile_assign_time",
    "/profile_push_time",
    "/assignment_status_received_at",
    "/mdm_device/enrolled_at",
];

fn ade_devices(raw: &Value) -> Value {
    all_normalised(raw, ADE_DEVICE_DATES, &[])
}

#[tokio::test]
async fn list_ade_devices_first_300() {
    let s = start_with(devices(760)).await;
    let (big, small) = {
        let t = s.sim.tenant();
        let ids: Vec<_> = t.ade_integrations.iter().map(|a| a.id).collect();
        let (a, b) = (
            t.ade_devices_of(&ids[0]).len(),
            t.ade_devices_of(&ids[1]).len(),
        );
        assert!(a > 300 && b < 300, "{a} {b}");
        ((ids[0], a), (ids[1], b))
    };
    let raw = kandji(&s, &format!("/integrations/apple/ade/{}/devices", big.0)).await;
    assert_eq!(raw["count"], big.1);
    let out = s
        .outputs(
            "list_ade_devices",
            json!({"ade_token_id": big.0.to_string()}),
            json!({"result_set": "first_300_records"}),
        )
        .await;
    let req = only(
        &s,
        &format!("GET /api/v1/integrations/apple/ade/{}/devices", big.0),
    );
    assert_no_body(&req);
    assert_keys(&out, &["results", "status_code"]);
    assert_eq!(out["results"].as_array().unwrap().len(), 300);
    assert_eq!(out["results"], ade_devices(&raw["results"]));
    // Awaiting enrollment: mdm_device null, kept.
    assert!(
        out["results"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["mdm_device"].is_null())
    );

    let raw = kandji(&s, &format!("/integrations/apple/ade/{}/devices", small.0)).await;
    let out = s
        .outputs(
            "list_ade_devices",
            json!({"ade_token_id": small.0.to_string()}),
            json!({"result_set": "first_300_records"}),
        )
        .await;
    only(
        &s,
        &format!("GET /api/v1/integrations/apple/ade/{}/devices", small.0),
    );
    assert_eq!(out["results"].as_array().unwrap().len(), small.1);
    assert_eq!(out["results"], ade_devices(&raw["results"]));

    // An unknown token: Kandji's 404 passed through.
    let nobody = unknown_id();
    let out = s
        .outputs(
            "list_ade_devices",
            json!({"ade_token_id": nobody}),
            json!({"result_set": "first_300_records"}),
        )
        .await;
    only(
        &s,
        &format!("GET /api/v1/integrations/apple/ade/{nobody}/devices"),
    );
    assert_eq!(
        out,
        json!({"status_code": 404, "results": null, "error": "Not found."})
    );
}

#[tokio::test]
async fn list_ade_devices_follows_page_numbers_on_the_tenants_host() {
    let s = start_with(devices(760)).await;
    let token = s.sim.tenant().ade_integrations[0].id;
    let base = format!("/integrations/apple/ade/{token}/devices");
    let page1 = kandji(&s, &base).await;
    let page2 = kandji(&s, &format!("{base}?page=2")).await;
    assert!(page2["next"].is_null() && !page2["results"].as_array().unwrap().is_empty());
    // Kandji answers a short first page whose `next` names the web-app host.
    s.sim.push_faults(
        Some(&format!("/api/v1{base}")),
        vec![answer(
            200,
            json!({
                "count": page1["count"],
                "next": format!("https://accuhive.kandji.io/api/v1{base}/?page=2"),
                "previous": null,
                "results": &page1["results"].as_array().unwrap()[..2],
            }),
        )],
    );
    let out = s
        .outputs(
            "list_ade_devices",
            json!({"ade_token_id": token.to_string()}),
            json!({"result_set": "first_300_records"}),
        )
        .await;
    let lines: Vec<String> = take(&s, 2).iter().map(line).collect();
    assert_eq!(
        lines,
        [
            format!("GET /api/v1{base}"),
            format!("GET /api/v1{base}?page=2")
        ]
    );
    let mut want: Vec<Value> = page1["results"].as_array().unwrap()[..2].to_vec();
    want.extend(page2["results"].as_array().unwrap().iter().cloned());
    want.truncate(300);
    assert_eq!(out["results"], ade_devices(&Value::Array(want)));
}
