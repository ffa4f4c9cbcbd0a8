//! The JSON shapes Kandji answers with, built from tenant records. Key order follows Kandji's
//! examples (serde derive keeps declaration order; `serde_json::Map` would sort the keys).

use std::fmt::Write as _;

use chrono::{DateTime, Datelike, Duration, Timelike, Utc};
use serde::{Serialize, Serializer};
use uuid::Uuid;

use super::catalog::{self, Platform};
use super::rng::Gen;
use super::tenant::{
    AdeDevice, AdeIntegration, Blueprint, Command, Device, LostMode, Note, Tenant, User,
    reference_now,
};

fn push_date_time(s: &mut String, t: &DateTime<Utc>, sep: char) {
    let _ = write!(
        s,
        "{:04}-{:02}-{:02}{sep}{:02}:{:02}:{:02}",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
}

/// `2024-01-26 16:15:36.087016+00:00` (enrollment dates, MDM dates in /details).
pub fn ts_space(t: &DateTime<Utc>) -> String {
    let mut s = String::with_capacity(32);
    push_date_time(&mut s, t, ' ');
    let _ = write!(s, ".{:06}+00:00", t.timestamp_subsec_micros());
    s
}

/// `2024-07-23T14:11:37.150080Z` (check-ins, notes, most timestamps).
pub fn ts_iso(t: &DateTime<Utc>) -> String {
    let mut s = String::with_capacity(27);
    push_date_time(&mut s, t, 'T');
    let _ = write!(s, ".{:06}Z", t.timestamp_subsec_micros());
    s
}

/// `2023-06-15T00:11:57Z` (Apple-sourced ADE dates).
pub fn ts_iso_seconds(t: &DateTime<Utc>) -> String {
    let mut s = String::with_capacity(20);
    push_date_time(&mut s, t, 'T');
    s.push('Z');
    s
}

/// `2024-06-17 11:32:35+00:00`
pub fn ts_space_seconds(t: &DateTime<Utc>) -> String {
    let mut s = String::with_capacity(25);
    push_date_time(&mut s, t, ' ');
    s.push_str("+00:00");
    s
}

/// Serialises a timestamp with one of the formatters above.
pub struct Ts(pub DateTime<Utc>, pub fn(&DateTime<Utc>) -> String);

impl Serialize for Ts {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&(self.1)(&self.0))
    }
}

/// An optional timestamp that Kandji writes as `""` when absent.
pub struct TsOrEmpty(pub Option<DateTime<Utc>>, pub fn(&DateTime<Utc>) -> String);

impl Serialize for TsOrEmpty {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Some(t) => s.serialize_str(&(self.1)(t)),
            None => s.serialize_str(""),
        }
    }
}

fn opt_ts(t: Option<DateTime<Utc>>, f: fn(&DateTime<Utc>) -> String) -> Option<String> {
    t.map(|t| f(&t))
}

/// The device's `user`: an object, or the empty string when unassigned.
pub enum UserRef<'a> {
    Unassigned,
    User(&'a User),
}

#[derive(Serialize)]
struct UserRefOut<'a> {
    email: &'a str,
    name: &'a str,
    id: &'a Uuid,
    is_archived: bool,
}

impl Serialize for UserRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            UserRef::Unassigned => s.serialize_str(""),
            UserRef::User(u) => UserRefOut {
                email: &u.email,
                name: &u.name,
                id: &u.id,
                is_archived: u.archived,
            }
            .serialize(s),
        }
    }
}

fn user_ref<'a>(t: &'a Tenant, d: &Device) -> UserRef<'a> {
    match d.user_id.and_then(|id| t.user(&id)) {
        Some(u) => UserRef::User(u),
        None => UserRef::Unassigned,
    }
}

/// GET /devices items, GET|PATCH /devices/{id}.
#[derive(Serialize)]
pub struct DeviceOut<'a> {
    device_id: &'a Uuid,
    device_name: &'a str,
    model: &'a str,
    serial_number: &'a str,
    platform: Platform,
    os_version: &'a str,
    supplemental_build_version: &'a str,
    supplemental_os_version_extra: &'a str,
    last_check_in: TsOrEmpty,
    user: UserRef<'a>,
    asset_tag: Option<&'a str>,
    blueprint_id: &'a Uuid,
    mdm_enabled: bool,
    agent_installed: bool,
    is_missing: bool,
    is_removed: bool,
    agent_version: &'a str,
    first_enrollment: Ts,
    last_enrollment: Ts,
    blueprint_name: &'a str,
    lost_mode_status: &'a str,
    tags: &'a [String],
}

pub fn device_out<'a>(t: &'a Tenant, d: &'a Device) -> DeviceOut<'a> {
    DeviceOut {
        device_id: &d.device_id,
        device_name: &d.device_name,
        model: d.model.name,
        serial_number: &d.serial_number,
        platform: d.platform,
        os_version: d.os_version,
        supplemental_build_version: d.build(),
        supplemental_os_version_extra: "",
        last_check_in: TsOrEmpty(d.last_check_in, ts_iso),
        user: user_ref(t, d),
        asset_tag: d.asset_tag.as_deref(),
        blueprint_id: &d.blueprint_id,
        mdm_enabled: d.mdm_enabled,
        agent_installed: d.agent_installed,
        is_missing: d.is_missing,
        is_removed: d.is_removed,
        agent_version: d.agent_version,
        first_enrollment: Ts(d.first_enrollment, ts_space),
        last_enrollment: Ts(d.last_enrollment, ts_space),
        blueprint_name: t.blueprint_name(&d.blueprint_id),
        lost_mode_status: d.lost_mode_status(),
        tags: &d.tags,
    }
}

fn true_false(b: bool) -> &'static str {
    if b { "True" } else { "False" }
}

#[derive(Serialize)]
pub struct LostModeOut {
    lost_mode_status: &'static str,
    enabled_by: String,
    enable_status_at: String,
    lock_screen_message: String,
    lock_screen_phone_number: String,
    lock_screen_footnote: String,
    disable_status: &'static str,
    disabled_by: &'static str,
    disable_status_at: &'static str,
    last_location_status: &'static str,
    last_location_status_at: String,
    last_location: serde_json::Value,
    last_location_at: String,
    sound_status: &'static str,
    sound_status_at: String,
}

pub fn lost_mode_out(l: &LostMode) -> LostModeOut {
    let (loc_status, loc_at, loc) = match &l.last_location {
        Some((lat, lon, at)) => (
            "SUCCESS",
            ts_iso(at),
            serde_json::json!({"latitude": lat.to_string(), "longitude": lon.to_string()}),
        ),
        None => ("", String::new(), serde_json::json!({})),
    };
    LostModeOut {
        lost_mode_status: "ENABLED",
        enabled_by: l.enabled_by.clone(),
        enable_status_at: ts_iso(&l.enabled_at),
        lock_screen_message: l.message.clone(),
        lock_screen_phone_number: l.phone_number.clone(),
        lock_screen_footnote: l.footnote.clone(),
        disable_status: "",
        disabled_by: "",
        disable_status_at: "",
        last_location_status: loc_status,
        last_location_status_at: loc_at.clone(),
        last_location: loc,
        last_location_at: loc_at,
        sound_status: if l.sound_at.is_some() { "SUCCESS" } else { "" },
        sound_status_at: l.sound_at.map(|t| ts_iso(&t)).unwrap_or_default(),
    }
}

// ---- /devices/{id}/details ----

#[derive(Serialize)]
struct General<'a> {
    device_id: &'a Uuid,
    device_name: &'a str,
    last_enrollment: Ts,
    first_enrollment: Ts,
    model: &'a str,
    platform: Platform,
    os_version: &'a str,
    supplemental_build_version: &'a str,
    supplemental_os_version_extra: &'a str,
    system_version: String,
    boot_volume: &'a str,
    time_since_boot: &'a str,
    last_user: String,
    asset_tag: Option<&'a str>,
    assigned_user: UserRef<'a>,
    blueprint_name: &'a str,
    blueprint_uuid: &'a Uuid,
}

#[derive(Serialize)]
struct Mdm {
    mdm_enabled: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    supervised: Option<&'static str>,
    install_date: String,
    last_check_in: String,
    mdm_enabled_user: Vec<String>,
}

#[derive(Serialize)]
struct ActivationLock {
    bypass_code_failed: bool,
    user_activation_lock_enabled: Option<bool>,
    device_activation_lock_enabled: bool,
    activation_lock_allowed_while_supervised: Option<bool>,
    activation_lock_supported: bool,
}

#[derive(Serialize)]
struct FileVault {
    filevault_enabled: Option<bool>,
    filevault_recoverykey_type: &'static str,
    filevault_prk_escrowed: bool,
    filevault_next_rotation: &'static str,
    filevault_regen_required: bool,
}

#[derive(Serialize)]
struct KandjiAgent {
    agent_installed: &'static str,
    install_date: String,
    last_check_in: String,
    agent_version: &'static str,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Hardware {
    Mac {
        model_name: &'static str,
        model_identifier: &'static str,
        processor_name: &'static str,
        processor_speed: &'static str,
        number_of_processors: &'static str,
        total_number_of_cores: &'static str,
        memory: &'static str,
        udid: String,
        serial_number: String,
    },
    Mobile {
        uuid: String,
        serial_number: String,
        model_identifier: &'static str,
    },
}

#[derive(Serialize)]
struct Volume {
    name: &'static str,
    format: &'static str,
    percent_used: String,
    identifier: &'static str,
    capacity: String,
    available: String,
    encrypted: &'static str,
}

#[derive(Serialize)]
struct Network {
    local_hostname: String,
    mac_address: String,
    ip_address: String,
    public_ip: String,
}

#[derive(Serialize)]
struct Recovery {
    recovery_lock_enabled: bool,
    firmware_password_exist: bool,
    firmware_password_pending: bool,
    password_rotation_scheduled: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    password_has_been_set: Option<bool>,
}

#[derive(Serialize)]
struct RegularUser {
    username: String,
    uid: &'static str,
    path: String,
    admin: &'static str,
    name: String,
}

#[derive(Serialize)]
struct SystemUser {
    username: &'static str,
    uid: &'static str,
    path: &'static str,
    admin: &'static str,
}

#[derive(Serialize)]
struct Users {
    regular_users: Vec<RegularUser>,
    system_users: Vec<SystemUser>,
}

#[derive(Serialize)]
struct Profile {
    name: &'static str,
    uuid: Uuid,
    verified: &'static str,
    identifier: &'static str,
    organization: &'static str,
    payload_types: &'static [&'static str],
    install_date: String,
}

#[derive(Serialize)]
struct Abm {
    model: &'static str,
    color: &'static str,
    description: &'static str,
    serial_number: String,
    device_family: &'static str,
    os: &'static str,
    device_assigned_date: String,
    device_assigned_by: String,
}

#[derive(Serialize)]
struct Security {
    remote_desktop_enabled: Option<bool>,
}

#[derive(Serialize)]
struct Cellular {
    voice_roaming: bool,
    data_roaming: bool,
    cellular_technology: u8,
    subscriptions: Option<()>,
}

#[derive(Serialize)]
pub struct DetailsOut<'a> {
    general: General<'a>,
    mdm: Mdm,
    activation_lock: ActivationLock,
    filevault: FileVault,
    /// Absent for Apple TV, `{}` when not in Lost Mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    lost_mode: Option<serde_json::Value>,
    automated_device_enrollment: serde_json::Value,
    kandji_agent: KandjiAgent,
    hardware_overview: Hardware,
    volumes: Vec<Volume>,
    network: serde_json::Value,
    recovery_information: Recovery,
    users: Users,
    installed_profiles: Vec<Profile>,
    apple_business_manager: serde_json::Value,
    security_information: Security,
    #[serde(skip_serializing_if = "Option::is_none")]
    cellular: Option<serde_json::Value>,
    tags: &'a [String],
}

fn username_of(t: &Tenant, d: &Device) -> String {
    d.user_id
        .and_then(|id| t.user(&id))
        .and_then(|u| u.email.split('@').next())
        .map(|s| s.replace('.', ""))
        .unwrap_or_else(|| "admin".to_string())
}

fn hex(g: &mut Gen, n: usize) -> String {
    g.chars_from(b"0123456789abcdef", n)
}

pub fn details_out<'a>(t: &'a Tenant, d: &'a Device) -> DetailsOut<'a> {
    let mut g = Gen::keyed(t.seed, u64::from(d.seq), "details");
    let p = d.platform;
    let is_mac = p == Platform::Mac;
    let is_tv = p == Platform::AppleTv;
    let now = reference_now();
    let check_in = d.last_check_in.unwrap_or(d.last_enrollment);
    let username = username_of(t, d);
    let ade = d.ade_device_id.and_then(|id| t.ade_device(&id));

    let general = General {
        device_id: &d.device_id,
        device_name: &d.device_name,
        last_enrollment: Ts(d.last_enrollment, ts_space),
        first_enrollment: Ts(d.first_enrollment, ts_space),
        model: d.model.name,
        platform: p,
        os_version: d.os_version,
        supplemental_build_version: d.build(),
        supplemental_os_version_extra: "",
        system_version: if is_mac {
            format!("{} ({})", d.os_version, d.build())
        } else {
            String::new()
        },
        boot_volume: if is_mac { "Macintosh HD" } else { "" },
        time_since_boot: if is_mac {
            g.pick::<&str>(&["18 minutes ago", "3 hours ago", "2 days ago", "1 month ago"])
        } else {
            ""
        },
        last_user: if is_mac {
            username.clone()
        } else {
            String::new()
        },
        asset_tag: d.asset_tag.as_deref(),
        assigned_user: user_ref(t, d),
        blueprint_name: t.blueprint_name(&d.blueprint_id),
        blueprint_uuid: &d.blueprint_id,
    };

    let mdm = Mdm {
        mdm_enabled: true_false(d.mdm_enabled),
        supervised: (!is_tv).then(|| true_false(d.supervised)),
        install_date: ts_space(&(d.last_enrollment - Duration::milliseconds(180))),
        last_check_in: d.last_check_in.map(|c| ts_space(&c)).unwrap_or_default(),
        mdm_enabled_user: if is_mac {
            vec![username.clone()]
        } else {
            vec![]
        },
    };

    let activation_lock = ActivationLock {
        bypass_code_failed: false,
        user_activation_lock_enabled: (!is_tv).then_some(false),
        device_activation_lock_enabled: !is_tv && d.supervised && g.percent(30),
        activation_lock_allowed_while_supervised: (!is_tv).then(|| g.percent(30)),
        activation_lock_supported: !is_tv,
    };

    let filevault = if is_mac {
        FileVault {
            filevault_enabled: Some(d.filevault_enabled),
            filevault_recoverykey_type: if d.filevault_enabled { "Personal" } else { "" },
            filevault_prk_escrowed: d.filevault_enabled,
            filevault_next_rotation: "",
            filevault_regen_required: false,
        }
    } else {
        FileVault {
            filevault_enabled: None,
            filevault_recoverykey_type: "",
            filevault_prk_escrowed: false,
            filevault_next_rotation: "",
            filevault_regen_required: false,
        }
    };

    let lost_mode = if is_tv {
        None
    } else {
        Some(match &d.lost_mode {
            Some(l) => serde_json::to_value(lost_mode_out(l)).unwrap_or_default(),
            None => serde_json::json!({}),
        })
    };

    let automated_device_enrollment = if ade.is_some() && !is_mac {
        serde_json::json!({"auto_enroll_eligible": true, "auto_enrolled": true})
    } else {
        serde_json::json!({})
    };

    let kandji_agent = KandjiAgent {
        agent_installed: true_false(d.agent_installed),
        install_date: if d.agent_installed {
            ts_space_seconds(&(d.last_enrollment + Duration::minutes(g.range(2, 90))))
        } else {
            String::new()
        },
        last_check_in: ts_iso(&(check_in + Duration::seconds(g.range(1, 900)))),
        agent_version: d.agent_version,
    };

    let hardware_overview = if is_mac {
        Hardware::Mac {
            model_name: d.model.family_name,
            model_identifier: d.model.identifier,
            processor_name: d.model.processor,
            processor_speed: d.model.processor_speed,
            number_of_processors: if d.model.apple_silicon {
                d.model.cores
            } else {
                "1"
            },
            total_number_of_cores: d.model.cores,
            memory: d.model.memory,
            udid: g.uuid().to_string(),
            serial_number: d.serial_number.to_string(),
        }
    } else {
        Hardware::Mobile {
            uuid: if is_tv {
                hex(&mut g, 40)
            } else {
                format!("00008{}-00{}", hex(&mut g, 3), hex(&mut g, 14))
            },
            serial_number: d.serial_number.to_string(),
            model_identifier: d.model.identifier,
        }
    };

    let used_pct = g.range(8, 85) as f32;
    let capacity = d.model.capacity_gb;
    let available = capacity * (100.0 - used_pct) / 100.0;
    let volumes = if is_mac {
        let apfs = |name, identifier, encrypted| Volume {
            name,
            format: "APFS",
            percent_used: format!("{used_pct}%"),
            identifier,
            capacity: format!("{capacity:.2} GB"),
            available: format!("{available:.2} GB"),
            encrypted,
        };
        let filevault = if d.filevault_enabled { "Yes" } else { "No" };
        vec![
            apfs("Macintosh HD", "disk3s3s1", "No"),
            apfs("Macintosh HD - Data", "disk3s1", filevault),
        ]
    } else if is_tv {
        vec![]
    } else {
        vec![Volume {
            name: "",
            format: "",
            percent_used: format!("{used_pct}%"),
            identifier: "",
            capacity: format!("{capacity:.1} GB"),
            available: format!("{available:.2} GB"),
            encrypted: "",
        }]
    };

    let network = match (is_mac, d.mac_address_string()) {
        (_, None) => serde_json::json!({}),
        (true, Some(mac)) => serde_json::to_value(Network {
            local_hostname: d.device_name.replace(['’', '\'', ' '], "-"),
            mac_address: mac,
            ip_address: format!("192.168.{}.{}", g.range(0, 255), g.range(2, 254)),
            public_ip: String::new(),
        })
        .unwrap_or_default(),
        (false, Some(mac)) => serde_json::to_value(Network {
            local_hostname: String::new(),
            mac_address: mac,
            ip_address: String::new(),
            public_ip: String::new(),
        })
        .unwrap_or_default(),
    };

    let recovery_information = if is_mac {
        let set = d.model.apple_silicon && g.percent(70);
        Recovery {
            recovery_lock_enabled: set,
            firmware_password_exist: !d.model.apple_silicon && g.percent(50),
            firmware_password_pending: false,
            password_rotation_scheduled: set
                .then(|| ts_iso(&(now + Duration::days(g.range(3, 90))))),
            password_has_been_set: Some(set),
        }
    } else {
        Recovery {
            recovery_lock_enabled: false,
            firmware_password_exist: false,
            firmware_password_pending: false,
            password_rotation_scheduled: None,
            password_has_been_set: (!is_tv).then_some(false),
        }
    };

    let users = if is_mac {
        Users {
            regular_users: vec![RegularUser {
                path: format!("/Users/{username}"),
                username,
                uid: "501",
                admin: "Yes",
                name: String::new(),
            }],
            system_users: catalog::SYSTEM_USERS
                .iter()
                .map(|(username, uid, path)| SystemUser {
                    username,
                    uid,
                    path,
                    admin: if *uid == "0" { "Yes" } else { "No" },
                })
                .collect(),
        }
    } else {
        Users {
            regular_users: vec![],
            system_users: vec![],
        }
    };

    let installed_profiles = if is_mac {
        let base = d.last_enrollment;
        vec![
            Profile {
                name: "MDM Profile",
                uuid: g.uuid(),
                verified: "verified",
                identifier: "com.kandji.profile.mdmprofile",
                organization: "Kandji, Inc.",
                payload_types: &["com.apple.mdm", "com.apple.security.scep"],
                install_date: profile_date(&base),
            },
            Profile {
                name: "Kandji Agent Settings",
                uuid: g.uuid(),
                verified: "verified",
                identifier: "com.kandji.profile.pppc",
                organization: "Kandji, Inc.",
                payload_types: &[
                    "com.apple.TCC.configuration-profile-policy",
                    "com.apple.notificationsettings",
                    "com.apple.servicemanagement",
                    "com.apple.system-extension-policy",
                ],
                install_date: profile_date(&(base + Duration::minutes(3))),
            },
        ]
    } else {
        vec![]
    };

    let apple_business_manager = match ade {
        Some(a) => serde_json::to_value(Abm {
            model: a.model.family_name,
            color: a.color,
            description: a.model.ade_description,
            serial_number: a.serial_number.to_string(),
            device_family: a.model.platform.as_str(),
            os: a.model.platform.ade_os(),
            device_assigned_date: ts_space_seconds(&a.device_assigned_date),
            device_assigned_by: a.device_assigned_by.to_string(),
        })
        .unwrap_or_default(),
        None => serde_json::json!({}),
    };

    let cellular = match p {
        Platform::AppleTv => None,
        Platform::Mac => Some(serde_json::json!({})),
        _ => Some(
            serde_json::to_value(Cellular {
                voice_roaming: false,
                data_roaming: false,
                cellular_technology: u8::from(d.model.cellular),
                subscriptions: None,
            })
            .unwrap_or_default(),
        ),
    };

    DetailsOut {
        general,
        mdm,
        activation_lock,
        filevault,
        lost_mode,
        automated_device_enrollment,
        kandji_agent,
        hardware_overview,
        volumes,
        network,
        recovery_information,
        users,
        installed_profiles,
        apple_business_manager,
        security_information: Security {
            remote_desktop_enabled: is_mac.then_some(d.remote_desktop_enabled),
        },
        cellular,
        tags: &d.tags,
    }
}

fn profile_date(t: &DateTime<Utc>) -> String {
    let mut s = String::with_capacity(25);
    push_date_time(&mut s, t, ' ');
    s.push_str(" +0000");
    s
}

// ---- apps, library items ----

#[derive(Serialize)]
pub struct AppOut {
    app_id: String,
    app_name: &'static str,
    bundle_id: &'static str,
    bundle_size: &'static str,
    app_store_vendable: &'static str,
    device_based_vpp: &'static str,
    source: &'static str,
    process: &'static str,
    signature: &'static str,
    creation_date: String,
    modification_date: String,
    path: String,
    version: &'static str,
}

pub fn apps_out(t: &Tenant, d: &Device) -> Vec<AppOut> {
    let mut g = Gen::keyed(t.seed, u64::from(d.seq), "apps");
    let mut apps = Vec::new();
    match d.platform {
        Platform::Mac => {
            let base = d.first_enrollment + Duration::minutes(10);
            // Row ids of the device's app inventory, unique across devices.
            let first_id = 80_000 + u64::from(d.seq) * 40;
            for (k, (name, bundle, path, version)) in catalog::MAC_APPLE_APPS.iter().enumerate() {
                let created = base + Duration::microseconds(k as i64 * 23_417);
                apps.push(AppOut {
                        app_id: (first_id + apps.len() as u64).to_string(),
                        app_name: name,
                        bundle_id: bundle,
                        bundle_size: "1",
                        app_store_vendable: "",
                        device_based_vpp: "",
                        source: "Apple",
                        process: name,
                        signature: "Software Signing, Apple Code Signing Certification Authority, Apple Root CA",
                        creation_date: ts_iso(&created),
                        modification_date: ts_iso(&(created + Duration::microseconds(4))),
                        path: path.to_string(),
                        version,
                    });
            }
            for (k, (name, bundle, version, size, source)) in
                catalog::MAC_THIRD_PARTY_APPS.iter().enumerate()
            {
                if !g.percent(60) {
                    continue;
                }
                let created = base + Duration::hours(k as i64 + 1);
                apps.push(AppOut {
                        app_id: (first_id + apps.len() as u64).to_string(),
                        app_name: name,
                        bundle_id: bundle,
                        bundle_size: size,
                        app_store_vendable: "",
                        device_based_vpp: "",
                        source,
                        process: name,
                        signature: "Developer ID Application, Developer ID Certification Authority, Apple Root CA",
                        creation_date: ts_iso(&created),
                        modification_date: ts_iso(&(created + Duration::microseconds(4))),
                        path: format!("/Applications/{name}.app"),
                        version,
                    });
            }
        }
        Platform::AppleTv => {}
        _ => {
            for (name, bundle, version, size) in catalog::MOBILE_APPS {
                if !g.percent(70) {
                    continue;
                }
                apps.push(AppOut {
                    app_id: g.uuid().to_string(),
                    app_name: name,
                    bundle_id: bundle,
                    bundle_size: size,
                    app_store_vendable: "False",
                    device_based_vpp: "True",
                    source: "",
                    process: "",
                    signature: "",
                    creation_date: String::new(),
                    modification_date: String::new(),
                    path: String::new(),
                    version,
                });
            }
        }
    }
    apps
}

#[derive(Serialize)]
pub struct IdName<'a> {
    id: &'a Uuid,
    name: &'a str,
}

#[derive(Serialize)]
pub struct LibraryItemOut<'a> {
    id: u64,
    status: &'static str,
    reported_at: Option<String>,
    log: Option<String>,
    last_audit_run: Option<String>,
    last_audit_log: Option<String>,
    control_log: Option<String>,
    control_reported_at: Option<String>,
    item_id: &'a Uuid,
    name: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    computer: IdName<'a>,
    blueprint: IdName<'a>,
    rules_present: bool,
}

pub fn library_items_out<'a>(t: &'a Tenant, d: &'a Device) -> Vec<LibraryItemOut<'a>> {
    let mut g = Gen::keyed(t.seed, u64::from(d.seq), "library");
    let Some(bp) = t.blueprint(&d.blueprint_id) else {
        return vec![];
    };
    let check_in = d.last_check_in.unwrap_or(d.last_enrollment);
    bp.library_item_ids
        .iter()
        .filter_map(|id| t.library_item(id))
        .filter(|item| item.platforms.contains(&d.platform))
        .enumerate()
        .map(|(k, item)| {
            let profile = item.kind == "profile";
            let status = if profile {
                *g.weighted(&[("success", 85), ("pending", 10), ("failed", 5)])
            } else {
                *g.weighted(&[
                    ("PASS", 75),
                    ("PENDING", 8),
                    ("ERROR", 4),
                    ("INCOMPATIBLE", 3),
                    ("EXCLUDED", 4),
                    ("AVAILABLE", 6),
                ])
            };
            let pending = matches!(status, "PENDING" | "pending" | "EXCLUDED" | "AVAILABLE");
            let at = check_in - Duration::seconds(g.range(60, 86_400 * 3));
            let (log, audit_log) = match status {
                "success" => (
                    Some(String::new()),
                    Some("The profile is installed.".to_string()),
                ),
                "pending" => (
                    Some(String::new()),
                    Some("The profile installation has been initiated.".to_string()),
                ),
                "failed" => (
                    Some("The profile failed to install.".to_string()),
                    Some("MDM command failed: The profile is not valid.".to_string()),
                ),
                "PASS" => (
                    Some(format!(
                        "Downloading {}\nCompleted download.\nInstalling {}\nCompleted installation.",
                        item.name, item.name
                    )),
                    Some(format!("{} is installed and up to date.", item.name)),
                ),
                "ERROR" => (
                    Some(format!("Executing audit for {}...\nScript exited with non-zero status.", item.name)),
                    Some("Audit failed.".to_string()),
                ),
                "INCOMPATIBLE" => (None, Some("Not compatible with this OS version.".to_string())),
                _ => (None, None),
            };
            LibraryItemOut {
                id: 100_000 + u64::from(d.seq) * 16 + k as u64,
                status,
                reported_at: (!pending).then(|| ts_iso(&at)),
                log,
                last_audit_run: (!pending).then(|| ts_iso(&(at + Duration::seconds(2)))),
                last_audit_log: audit_log,
                control_log: None,
                control_reported_at: None,
                item_id: &item.id,
                name: item.name,
                kind: item.kind,
                computer: IdName {
                    id: &d.device_id,
                    name: &d.device_name,
                },
                blueprint: IdName {
                    id: &bp.id,
                    name: &bp.name,
                },
                rules_present: false,
            }
        })
        .collect()
}

/// A library item's status on one device, as `/library/library-items/{id}/status` lists it.
#[derive(Serialize)]
pub struct LibraryItemStatusOut<'a> {
    id: u64,
    blueprint: IdName<'a>,
    computer: IdName<'a>,
    status: &'static str,
    reported_at: Option<String>,
    log: Option<String>,
    last_audit_run: Option<String>,
    last_audit_log: Option<String>,
    control_log: Option<String>,
    control_reported_at: Option<String>,
    /// Only on Threat Security Policy items (with `type`).
    #[serde(skip_serializing_if = "Option::is_none")]
    edr_status: Option<serde_json::Value>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
}

/// The statuses of one library item on every device in its scope (the same records as each
/// device's `/library-items`), newest first; only `computer`'s when given.
pub fn library_item_statuses_out<'a>(
    t: &'a Tenant,
    item: &Uuid,
    computer: Option<&Uuid>,
) -> Vec<LibraryItemStatusOut<'a>> {
    let mut out: Vec<LibraryItemStatusOut> = t
        .devices
        .iter()
        .filter(|d| computer.is_none_or(|c| d.device_id == *c))
        .flat_map(|d| library_items_out(t, d))
        .filter(|l| l.item_id == item)
        .map(|l| {
            let edr = l.kind == "threat-security-policy";
            let edr_status = edr.then(|| match &l.reported_at {
                Some(_) if l.status == "PASS" => serde_json::json!({
                    "status": "enabled",
                    "malware_posture": "Protect",
                    "pup_posture": "Protect",
                    "last_baseline_scan": l.last_audit_run,
                    "next_baseline_scan": null,
                    "baseline_scan_runtime": "Kandji checked 339,254 files in 3 minutes, 41 seconds.",
                }),
                _ => serde_json::Value::Null,
            });
            LibraryItemStatusOut {
                id: l.id,
                blueprint: l.blueprint,
                computer: l.computer,
                status: l.status,
                reported_at: l.reported_at,
                log: l.log,
                last_audit_run: l.last_audit_run,
                last_audit_log: l.last_audit_log,
                control_log: l.control_log,
                control_reported_at: l.control_reported_at,
                edr_status,
                kind: edr.then_some(l.kind),
            }
        })
        .collect();
    out.sort_by_key(|s| std::cmp::Reverse(s.id));
    out
}

// ---- notes, commands ----

#[derive(Serialize)]
pub struct NoteOut<'a> {
    note_id: &'a Uuid,
    created_at: Ts,
    updated_at: Ts,
    author: &'a str,
    content: &'a str,
}

pub fn note_out(n: &Note) -> NoteOut<'_> {
    NoteOut {
        note_id: &n.note_id,
        created_at: Ts(n.created_at, ts_iso),
        updated_at: Ts(n.updated_at, ts_iso),
        author: &n.author,
        content: &n.content,
    }
}

#[derive(Serialize)]
pub struct CommandOut<'a> {
    uuid: &'a Uuid,
    error_chain: [(); 0],
    command_type: &'static str,
    request_type: &'static str,
    metadata: serde_json::Value,
    request_requires_network_tether: bool,
    status: u8,
    attempts: u32,
    date_requested: Ts,
    date_completed: Option<String>,
    last_pushed: Option<String>,
    user: Option<()>,
    priority: u8,
}

pub fn command_out(c: &Command) -> CommandOut<'_> {
    CommandOut {
        uuid: &c.uuid,
        error_chain: [],
        command_type: c.command_type,
        request_type: c.request_type,
        metadata: serde_json::json!({}),
        request_requires_network_tether: false,
        status: 1,
        attempts: 0,
        date_requested: Ts(c.date_requested, ts_iso),
        date_completed: None,
        last_pushed: None,
        user: None,
        priority: 0,
    }
}

// ---- blueprints ----

#[derive(Serialize)]
pub struct EnrollmentCodeOut<'a> {
    code: &'a str,
    is_active: bool,
}

#[derive(Serialize)]
pub struct BlueprintOut<'a> {
    id: &'a Uuid,
    name: &'a str,
    icon: &'a str,
    color: &'a str,
    description: &'a str,
    params: &'a serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    computers_count: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    missing_computers_count: Option<usize>,
    enrollment_code: EnrollmentCodeOut<'a>,
    #[serde(rename = "type")]
    kind: &'a str,
}

/// `counts` is `(computers_count, missing_computers_count)`; `None` for the create answer,
/// which Kandji sends without counts.
pub fn blueprint_out(b: &Blueprint, counts: Option<(usize, usize)>) -> BlueprintOut<'_> {
    BlueprintOut {
        id: &b.id,
        name: &b.name,
        icon: &b.icon,
        color: &b.color,
        description: &b.description,
        params: &b.params,
        computers_count: counts.map(|c| c.0),
        missing_computers_count: counts.map(|c| c.1),
        enrollment_code: EnrollmentCodeOut {
            code: &b.enrollment_code.code,
            is_active: b.enrollment_code.is_active,
        },
        kind: &b.kind,
    }
}

// ---- ADE ----

#[derive(Serialize)]
pub struct BlueprintRef<'a> {
    id: &'a Uuid,
    name: &'a str,
    icon: &'a str,
    color: &'a str,
}

fn blueprint_ref(b: &Blueprint) -> BlueprintRef<'_> {
    BlueprintRef {
        id: &b.id,
        name: &b.name,
        icon: &b.icon,
        color: &b.color,
    }
}

#[derive(Serialize, Default)]
pub struct DeviceCounts {
    #[serde(rename = "Mac", skip_serializing_if = "is_zero")]
    mac: usize,
    #[serde(rename = "iPad", skip_serializing_if = "is_zero")]
    ipad: usize,
    #[serde(rename = "iPhone", skip_serializing_if = "is_zero")]
    iphone: usize,
    #[serde(rename = "AppleTV", skip_serializing_if = "is_zero")]
    apple_tv: usize,
    #[serde(rename = "Vision", skip_serializing_if = "is_zero")]
    vision: usize,
    total: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

#[derive(Serialize)]
pub struct DefaultsOut<'a> {
    email: &'a str,
    phone: &'a str,
}

#[derive(Serialize)]
pub struct AdeIntegrationOut<'a> {
    id: &'a Uuid,
    blueprint: Option<BlueprintRef<'a>>,
    access_token_expiry: Ts,
    server_name: &'a str,
    server_uuid: &'a Uuid,
    admin_id: &'a str,
    org_name: &'a str,
    org_email: &'a str,
    org_phone: &'a str,
    org_address: &'a str,
    org_type: &'a str,
    stoken_file_name: &'a str,
    last_device_sync: Ts,
    defaults: DefaultsOut<'a>,
    days_left: i64,
    status: &'a str,
    status_reason: Option<&'a str>,
    status_received_at: Option<String>,
    device_counts: DeviceCounts,
}

pub fn ade_integration_out<'a>(t: &'a Tenant, a: &'a AdeIntegration) -> AdeIntegrationOut<'a> {
    let mut counts = DeviceCounts::default();
    for dev in t.ade_devices_of(&a.id) {
        match dev.model.platform {
            Platform::Mac => counts.mac += 1,
            Platform::IPad => counts.ipad += 1,
            Platform::IPhone => counts.iphone += 1,
            Platform::AppleTv => counts.apple_tv += 1,
            Platform::Vision => counts.vision += 1,
        }
        counts.total += 1;
    }
    AdeIntegrationOut {
        id: &a.id,
        blueprint: t.blueprint(&a.blueprint_id).map(blueprint_ref),
        access_token_expiry: Ts(a.access_token_expiry, ts_iso_seconds),
        server_name: &a.server_name,
        server_uuid: &a.server_uuid,
        admin_id: &a.admin_id,
        org_name: &a.org_name,
        org_email: &a.org_email,
        org_phone: &a.org_phone,
        org_address: &a.org_address,
        org_type: &a.org_type,
        stoken_file_name: &a.stoken_file_name,
        last_device_sync: Ts(a.last_device_sync, ts_iso),
        defaults: DefaultsOut {
            email: &a.default_email,
            phone: &a.default_phone,
        },
        days_left: (a.access_token_expiry - reference_now()).num_days(),
        status: &a.status,
        status_reason: a.status_reason.as_deref(),
        status_received_at: opt_ts(a.status_received_at, ts_iso),
        device_counts: counts,
    }
}

#[derive(Serialize)]
pub struct MdmDeviceOut<'a> {
    id: &'a Uuid,
    enrolled_at: Ts,
    name: &'a str,
    enrollment_status: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'static str>,
    deferred_install: bool,
    is_missing: bool,
    is_removed: bool,
}

#[derive(Serialize)]
pub struct DepAccountOut<'a> {
    id: &'a Uuid,
    server_name: &'a str,
}

/// A record of `/integrations/apple/ade/{token}/devices` (nested `blueprint`, `user` UUID).
#[derive(Serialize)]
pub struct AdeDeviceOut<'a> {
    blueprint: Option<BlueprintRef<'a>>,
    mdm_device: Option<MdmDeviceOut<'a>>,
    user: Option<&'a Uuid>,
    dep_account: DepAccountOut<'a>,
    #[serde(flatten)]
    common: AdeCommon<'a>,
}

/// A record of the global `/integrations/apple/ade/devices` (`blueprint_id`, `user_id`, and
/// `blueprint`/`user` as bare UUIDs).
#[derive(Serialize)]
pub struct AdeDeviceGlobalOut<'a> {
    blueprint_id: &'a Uuid,
    mdm_device: Option<MdmDeviceOut<'a>>,
    user_id: Option<&'a Uuid>,
    dep_account: DepAccountOut<'a>,
    #[serde(flatten)]
    common: AdeCommon<'a>,
    blueprint: &'a Uuid,
    user: Option<&'a Uuid>,
}

#[derive(Serialize)]
pub struct AdeCommon<'a> {
    asset_tag: Option<&'a str>,
    color: &'static str,
    description: &'static str,
    device_assigned_by: &'a str,
    device_assigned_date: Ts,
    device_family: &'static str,
    model: &'static str,
    os: &'static str,
    profile_assign_time: Option<String>,
    profile_push_time: Option<String>,
    profile_status: &'static str,
    serial_number: &'a str,
    id: &'a Uuid,
    last_assignment_status: &'static str,
    failed_assignment_attempts: u32,
    assignment_status_received_at: Option<String>,
}

fn ade_common(a: &AdeDevice) -> AdeCommon<'_> {
    AdeCommon {
        asset_tag: a.asset_tag.as_deref(),
        color: a.color,
        description: a.model.ade_description,
        device_assigned_by: a.device_assigned_by,
        device_assigned_date: Ts(a.device_assigned_date, ts_iso_seconds),
        device_family: a.model.platform.as_str(),
        model: a.model.family_name,
        os: a.model.platform.ade_os(),
        profile_assign_time: opt_ts(a.profile_assign_time, ts_iso_seconds),
        profile_push_time: opt_ts(a.profile_push_time, ts_iso_seconds),
        profile_status: a.profile_status,
        serial_number: &a.serial_number,
        id: &a.id,
        last_assignment_status: a.last_assignment_status,
        failed_assignment_attempts: a.failed_assignment_attempts,
        assignment_status_received_at: opt_ts(a.assignment_status_received_at, ts_iso),
    }
}

fn mdm_device_out<'a>(
    t: &'a Tenant,
    a: &'a AdeDevice,
    with_status: bool,
) -> Option<MdmDeviceOut<'a>> {
    let d = t.device(&a.mdm_device?)?;
    Some(MdmDeviceOut {
        id: &d.device_id,
        enrolled_at: Ts(d.first_enrollment, ts_iso),
        name: &d.device_name,
        enrollment_status: 4,
        status: with_status.then_some("EMPTY"),
        deferred_install: false,
        is_missing: d.is_missing,
        is_removed: d.is_removed,
    })
}

fn dep_account<'a>(t: &'a Tenant, a: &'a AdeDevice) -> DepAccountOut<'a> {
    DepAccountOut {
        id: &a.dep_account,
        server_name: t
            .ade_integration(&a.dep_account)
            .map(|i| i.server_name.as_str())
            .unwrap_or(""),
    }
}

pub fn ade_device_out<'a>(t: &'a Tenant, a: &'a AdeDevice) -> AdeDeviceOut<'a> {
    AdeDeviceOut {
        blueprint: t.blueprint(&a.blueprint_id).map(blueprint_ref),
        mdm_device: mdm_device_out(t, a, true),
        user: a.user_id.as_ref(),
        dep_account: dep_account(t, a),
        common: ade_common(a),
    }
}

pub fn ade_device_global_out<'a>(t: &'a Tenant, a: &'a AdeDevice) -> AdeDeviceGlobalOut<'a> {
    AdeDeviceGlobalOut {
        blueprint_id: &a.blueprint_id,
        mdm_device: mdm_device_out(t, a, false),
        user_id: a.user_id.as_ref(),
        dep_account: dep_account(t, a),
        common: ade_common(a),
        blueprint: &a.blueprint_id,
        user: a.user_id.as_ref(),
    }
}

// ---- users, tags ----

#[derive(Serialize)]
pub struct IntegrationOut<'a> {
    id: u32,
    name: &'a str,
    uuid: &'a Uuid,
    #[serde(rename = "type")]
    kind: &'a str,
}

#[derive(Serialize)]
pub struct UserOut<'a> {
    active: bool,
    archived: bool,
    created_at: Ts,
    department: Option<&'static str>,
    deprecated_user_id: String,
    email: &'a str,
    id: &'a Uuid,
    integration: IntegrationOut<'a>,
    job_title: Option<&'static str>,
    name: &'a str,
    device_count: usize,
    updated_at: Ts,
}

pub fn user_out<'a>(t: &'a Tenant, u: &'a User, device_count: usize) -> UserOut<'a> {
    UserOut {
        active: u.active,
        archived: u.archived,
        created_at: Ts(u.created_at, ts_iso),
        department: u.department,
        deprecated_user_id: u.deprecated_user_id.to_string(),
        email: &u.email,
        id: &u.id,
        integration: IntegrationOut {
            id: t.user_integration.id,
            name: &t.user_integration.name,
            uuid: &t.user_integration.uuid,
            kind: &t.user_integration.kind,
        },
        job_title: u.job_title,
        name: &u.name,
        device_count,
        updated_at: Ts(u.updated_at, ts_iso),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn timestamp_formats() {
        let t =
            Utc.with_ymd_and_hms(2024, 1, 26, 16, 15, 36).unwrap() + Duration::microseconds(87_016);
        assert_eq!(ts_space(&t), "2024-01-26 16:15:36.087016+00:00");
        assert_eq!(ts_iso(&t), "2024-01-26T16:15:36.087016Z");
        assert_eq!(ts_iso_seconds(&t), "2024-01-26T16:15:36Z");
        assert_eq!(ts_space_seconds(&t), "2024-01-26 16:15:36+00:00");
    }
}
