//! `POST /devices/{id}/action/{action}`: MDM commands. Success is `200` with an empty body
//! (Lock on a Mac answers `{"PIN": ...}`); errors are bare JSON strings, as Kandji's are.

use axum::response::Response;
use chrono::Utc;
use serde_json::Value;

use super::parse_uuid;
use crate::simulator::SimState;
use crate::simulator::catalog::Platform;
use crate::simulator::http::{
    BodyData, ErrorStyle, Req, bare, empty, json, not_found, parse_body, str_list,
};
use crate::simulator::rng::Gen;
use crate::simulator::tenant::LostMode;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    BlankPush,
    ClearPasscode,
    DeleteUser,
    DisableLostMode,
    EnableLostMode,
    Erase,
    Lock,
    PlayLostModeSound,
    ReinstallAgent,
    RemoteDesktop,
    RenewMdmProfile,
    Restart,
    SetName,
    Shutdown,
    UnlockAccount,
    UpdateInventory,
    UpdateLocation,
}

const NOT_ALLOWED: &str = "Command is not allowed for current device";
const NOT_IN_LOST_MODE: &str = "Device is not in lost mode.";
/// Who Kandji records as having enabled Lost Mode through the API.
const API_ACTOR: &str = "Kandji API";

impl Action {
    pub fn parse(s: &str) -> Option<Action> {
        use Action::*;
        Some(match s {
            "blankpush" => BlankPush,
            "clearpasscode" => ClearPasscode,
            "deleteuser" => DeleteUser,
            "disablelostmode" => DisableLostMode,
            "enablelostmode" => EnableLostMode,
            "erase" => Erase,
            "lock" => Lock,
            "playlostmodesound" => PlayLostModeSound,
            "reinstallagent" => ReinstallAgent,
            "remotedesktop" => RemoteDesktop,
            "renewmdmprofile" => RenewMdmProfile,
            "restart" => Restart,
            "setname" => SetName,
            "shutdown" => Shutdown,
            "unlockaccount" => UnlockAccount,
            "updateinventory" => UpdateInventory,
            "updatelocation" => UpdateLocation,
            _ => return None,
        })
    }

    /// Which platforms accept the command (Apple's MDM availability, as Kandji enforces it).
    pub fn allowed_on(self, p: Platform) -> bool {
        use Action::*;
        match self {
            ClearPasscode | DisableLostMode | EnableLostMode | PlayLostModeSound
            | UpdateLocation => p.is_ios(),
            ReinstallAgent | RemoteDesktop | UnlockAccount | DeleteUser => p == Platform::Mac,
            Lock => p != Platform::AppleTv,
            BlankPush | Erase | RenewMdmProfile | Restart | SetName | Shutdown
            | UpdateInventory => true,
        }
    }

    /// The MDM request type recorded in `/devices/{id}/commands`; None for a bare push.
    fn request_type(self) -> Option<&'static str> {
        use Action::*;
        Some(match self {
            BlankPush => return None,
            ClearPasscode => "ClearPasscode",
            DeleteUser => "DeleteUser",
            DisableLostMode => "DisableLostMode",
            EnableLostMode => "EnableLostMode",
            Erase => "EraseDevice",
            Lock => "DeviceLock",
            PlayLostModeSound => "PlayLostModeSound",
            ReinstallAgent => "InstallEnterpriseApplication",
            RemoteDesktop => "EnableRemoteDesktop",
            RenewMdmProfile => "InstallProfile",
            Restart => "RestartDevice",
            SetName => "Settings",
            Shutdown => "ShutDownDevice",
            UnlockAccount => "UnlockUserAccount",
            UpdateInventory => "DeviceInformation",
            UpdateLocation => "DeviceLocation",
        })
    }
}

/// A field that, when present, must be a JSON string.
fn opt_string(body: &BodyData, key: &str) -> Result<Option<String>, Response> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(bare(400, &format!("{key} must be a string."))),
    }
}

/// A field that, when present, must be a boolean (form bodies send "true"/"false").
fn opt_bool(body: &BodyData, key: &str) -> Result<Option<bool>, Response> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(b)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(_) => Err(bare(400, &format!("{key} must be a boolean."))),
    }
}

fn required_string(body: &BodyData, key: &str) -> Result<String, Response> {
    match opt_string(body, key)? {
        Some(s) if !s.trim().is_empty() => Ok(s),
        _ => Err(bare(400, &format!("{key} is required."))),
    }
}

/// Checks the body of `action` and returns what the command needs from it.
fn validate(action: Action, body: &BodyData) -> Result<Validated, Response> {
    use Action::*;
    let mut v = Validated::default();
    match action {
        Erase => {
            if let Some(pin) = body.get("PIN") {
                match pin {
                    Value::String(s) if s.chars().count() == 6 => {}
                    Value::Null => {}
                    _ => return Err(bare(400, "PIN must be a 6 character string.")),
                }
            }
            opt_bool(body, "PreserveDataPlan")?;
            opt_bool(body, "DisallowProximitySetup")?;
            match body.get("ReturnToService") {
                None | Some(Value::Null) => {}
                Some(Value::Object(rts)) => {
                    if !matches!(rts.get("Enabled"), Some(Value::Bool(_))) {
                        return Err(bare(400, "ReturnToService.Enabled is required."));
                    }
                    if !matches!(
                        rts.get("ProfileId"),
                        None | Some(Value::String(_) | Value::Null)
                    ) {
                        return Err(bare(400, "ReturnToService.ProfileId must be a string."));
                    }
                }
                Some(_) => return Err(bare(400, "ReturnToService must be an object.")),
            }
        }
        Lock => {
            opt_string(body, "Message")?;
            opt_string(body, "PhoneNumber")?;
        }
        EnableLostMode => {
            v.message = opt_string(body, "Message")?.unwrap_or_default();
            v.phone = opt_string(body, "PhoneNumber")?.unwrap_or_default();
            v.footnote = opt_string(body, "Footnote")?.unwrap_or_default();
            if v.message.trim().is_empty() && v.phone.trim().is_empty() {
                return Err(bare(400, "Message or PhoneNumber is required."));
            }
        }
        SetName => v.name = required_string(body, "DeviceName")?,
        UnlockAccount => {
            required_string(body, "UserName")?;
        }
        RemoteDesktop => {
            v.enable = Some(
                opt_bool(body, "EnableRemoteDesktop")?
                    .ok_or_else(|| bare(400, "EnableRemoteDesktop is required."))?,
            );
        }
        Restart => {
            opt_bool(body, "RebuildKernelCache")?;
            opt_bool(body, "NotifyUser")?;
        }
        DeleteUser => {
            let all = opt_bool(body, "DeleteAllUsers")?.unwrap_or(false);
            opt_bool(body, "ForceDeletion")?;
            let user = opt_string(body, "UserName")?.unwrap_or_default();
            if !all && user.trim().is_empty() {
                return Err(bare(
                    400,
                    "UserName is required unless DeleteAllUsers is true.",
                ));
            }
        }
        _ => {}
    }
    Ok(v)
}

#[derive(Default)]
struct Validated {
    name: String,
    message: String,
    phone: String,
    footnote: String,
    enable: Option<bool>,
}

pub fn run(state: &SimState, req: &Req, id: &str, action: Action) -> Response {
    let Some(device_id) = parse_uuid(id) else {
        return not_found();
    };
    let platform = match state.read().device(&device_id) {
        Some(d) => d.platform,
        None => return not_found(),
    };
    if !action.allowed_on(platform) {
        return bare(400, NOT_ALLOWED);
    }
    let body = match parse_body(req, ErrorStyle::Bare) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if let BodyData::Json(v) = &body
        && !v.is_object()
    {
        return bare(400, "Invalid data. Expected a dictionary.");
    }
    let v = match validate(action, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };

    let mut t = state.write();
    let seed = t.seed;
    let Some(d) = t.device_mut(&device_id) else {
        return not_found();
    };
    let now = Utc::now();
    let mut answer = empty(200);
    match action {
        Action::Lock => {
            if d.locked {
                return bare(400, "This device is already locked.");
            }
            d.locked = true;
            if platform == Platform::Mac {
                let pin = Gen::keyed(
                    seed ^ now.timestamp_micros() as u64,
                    u64::from(d.seq),
                    "lock",
                )
                .digits(6);
                d.unlock_pin = Some(pin.as_str().into());
                answer = json(200, &serde_json::json!({ "PIN": pin }));
            }
        }
        Action::Erase => {
            d.locked = false;
            d.lost_mode = None;
        }
        Action::EnableLostMode => {
            if !d.supervised {
                return bare(400, NOT_ALLOWED);
            }
            d.lost_mode = Some(Box::new(LostMode {
                enabled_by: API_ACTOR.to_string(),
                enabled_at: now,
                message: v.message,
                phone_number: v.phone,
                footnote: v.footnote,
                last_location: None,
                sound_at: None,
            }));
        }
        Action::DisableLostMode => {
            let Some(_) = d.lost_mode.take() else {
                return str_list(400, NOT_IN_LOST_MODE);
            };
        }
        Action::PlayLostModeSound => match d.lost_mode.as_mut() {
            Some(l) => l.sound_at = Some(now),
            None => return str_list(400, NOT_IN_LOST_MODE),
        },
        Action::UpdateLocation => {
            let mut g = Gen::keyed(seed, u64::from(d.seq), "location");
            let lat = 37.70 + g.below(1_000_000) as f64 / 5_000_000.0;
            let lon = -122.50 + g.below(1_000_000) as f64 / 5_000_000.0;
            match d.lost_mode.as_mut() {
                Some(l) => l.last_location = Some((lat, lon, now)),
                None => return str_list(400, NOT_IN_LOST_MODE),
            }
        }
        Action::SetName => d.device_name = v.name.into(),
        Action::RemoteDesktop => d.remote_desktop_enabled = v.enable.unwrap_or(false),
        _ => {}
    }
    if action == Action::SetName {
        t.touch();
    }
    if let Some(request_type) = action.request_type() {
        t.record_command(device_id, request_type, request_type);
    }
    answer
}
