//! `/integrations/apple/ade...`: ADE integrations (DRF envelope, no paging) and ADE devices
//! (page-numbered, 300 per page, 1-based).

use axum::response::Response;

use super::{contains_ci, parse_uuid, uuid_filter};
use crate::simulator::SimState;
use crate::simulator::http::{Envelope, Req, json, not_found, page_number};
use crate::simulator::tenant::AdeDevice;
use crate::simulator::views;

pub const ADE_PAGE_SIZE: usize = 300;

pub fn list_integrations(state: &SimState, _req: &Req) -> Response {
    let t = state.read();
    let results: Vec<_> = t
        .ade_integrations
        .iter()
        .map(|a| views::ade_integration_out(&t, a))
        .collect();
    json(200, &Envelope::all(&results))
}

pub fn get_integration(state: &SimState, id: &str) -> Response {
    let t = state.read();
    match parse_uuid(id).and_then(|id| t.ade_integration(&id)) {
        Some(a) => json(200, &views::ade_integration_out(&t, a)),
        None => not_found(),
    }
}

/// `GET /integrations/apple/ade/{token}/devices?page=N`; links read `…/devices/?page=N`.
pub fn token_devices(state: &SimState, req: &Req, id: &str) -> Response {
    let t = state.read();
    let Some(token) = parse_uuid(id).and_then(|id| t.ade_integration(&id)) else {
        return not_found();
    };
    let all = t.ade_devices_of(&token.id);
    let path = format!("/api/v1/integrations/apple/ade/{}/devices/", token.id);
    let page = match page_number(state, req, &path, all.len(), ADE_PAGE_SIZE) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let results: Vec<_> = all[page.range.clone()]
        .iter()
        .map(|a| views::ade_device_out(&t, a))
        .collect();
    json(200, &page.envelope(all.len(), &results))
}

/// `GET /integrations/apple/ade/devices`: every ADE device, with Kandji's documented filters.
pub fn devices(state: &SimState, req: &Req) -> Response {
    let t = state.read();
    let (dep_account, user_id) =
        match (uuid_filter(req, "dep_account"), uuid_filter(req, "user_id")) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(r), _) | (_, Err(r)) => return r,
        };
    let blueprint_id = req.filter("blueprint_id").map(str::to_lowercase);
    let family = req.filter("device_family");
    let os = req.filter("os");
    let model = req.filter("model").map(str::to_lowercase);
    let profile_status = req.filter("profile_status");
    let serial = req.filter("serial_number").map(str::to_lowercase);
    let keep = |a: &AdeDevice| {
        dep_account.is_none_or(|id| a.dep_account == id)
            && user_id.is_none_or(|id| a.user_id == Some(id))
            && blueprint_id
                .as_deref()
                .is_none_or(|b| contains_ci(&a.blueprint_id.to_string(), b))
            && family.is_none_or(|f| a.model.platform.as_str() == f)
            && os.is_none_or(|o| a.model.platform.ade_os() == o)
            && model
                .as_deref()
                .is_none_or(|m| contains_ci(a.model.family_name, m))
            && profile_status.is_none_or(|s| a.profile_status == s)
            && serial
                .as_deref()
                .is_none_or(|s| contains_ci(&a.serial_number, s))
    };
    let matching: Vec<&AdeDevice> = t
        .ade_integrations
        .iter()
        .flat_map(|i| t.ade_devices_of(&i.id))
        .filter(|a| keep(a))
        .collect();
    let page = match page_number(
        state,
        req,
        "/api/v1/integrations/apple/ade/devices",
        matching.len(),
        ADE_PAGE_SIZE,
    ) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let results: Vec<_> = matching[page.range.clone()]
        .iter()
        .map(|a| views::ade_device_global_out(&t, a))
        .collect();
    json(200, &page.envelope(matching.len(), &results))
}

pub fn device(state: &SimState, id: &str) -> Response {
    let t = state.read();
    match parse_uuid(id).and_then(|id| t.ade_device(&id)) {
        Some(a) => json(200, &views::ade_device_global_out(&t, a)),
        None => not_found(),
    }
}
