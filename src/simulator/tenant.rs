//! The simulated tenant's data: compact typed records generated deterministically from a seed.
//!
//! Devices point into the static catalog for models and OS releases and keep only what an API
//! call can change; per-device details that never change (apps, volumes, hardware ids) are
//! derived on demand from `(seed, device.seq)` in `views`.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use chrono::{DateTime, Duration, SubsecRound, TimeZone, Utc};
use uuid::Uuid;

use super::catalog::{self, Model, Platform};
use super::rng::Gen;

/// The instant the fixtures are generated around, so the same seed gives the same JSON.
pub fn reference_now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 9, 1, 12, 0, 0).unwrap()
}

/// Hashes an id by its own (random) bytes: UUID v4 needs no SipHash, and the index lookups in
/// the device filters run 100,000 times per request.
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 =
                (self.0.rotate_left(5) ^ u64::from_le_bytes(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_usize(&mut self, _len: usize) {}

    fn finish(&self) -> u64 {
        self.0
    }
}

pub(crate) type IdMap<V> = HashMap<Uuid, V, BuildHasherDefault<IdHasher>>;
pub(crate) type IdSet = HashSet<Uuid, BuildHasherDefault<IdHasher>>;

#[derive(Clone, Debug)]
pub struct User {
    pub id: Uuid,
    pub name: Box<str>,
    pub email: Box<str>,
    pub archived: bool,
    pub active: bool,
    /// The pre-2024 integer id, still returned by `/users` as a string.
    pub deprecated_user_id: u32,
    pub department: Option<&'static str>,
    pub job_title: Option<&'static str>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Clone, Debug)]
pub struct Tag {
    pub id: Uuid,
    pub name: String,
}

#[derive(Clone, Debug)]
pub struct EnrollmentCode {
    pub code: String,
    pub is_active: bool,
}

#[derive(Clone, Debug)]
pub struct Blueprint {
    pub id: Uuid,
    pub name: String,
    pub icon: String,
    pub color: String,
    pub description: String,
    /// Kandji's `params`: an object keyed by parameter UUID.
    pub params: serde_json::Value,
    pub enrollment_code: EnrollmentCode,
    /// "classic" or "map".
    pub kind: String,
    pub library_item_ids: Vec<Uuid>,
}

#[derive(Clone, Debug)]
pub struct LibraryItem {
    pub id: Uuid,
    pub name: &'static str,
    pub kind: &'static str,
    pub platforms: &'static [Platform],
}

#[derive(Clone, Debug)]
pub struct LostMode {
    pub enabled_by: String,
    pub enabled_at: DateTime<Utc>,
    pub message: String,
    pub phone_number: String,
    pub footnote: String,
    /// (latitude, longitude, when)
    pub last_location: Option<(f64, f64, DateTime<Utc>)>,
    pub sound_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug)]
pub struct Device {
    /// Creation index: the key for details derived on demand.
    pub seq: u32,
    pub device_id: Uuid,
    pub device_name: Box<str>,
    pub platform: Platform,
    pub model: &'static Model,
    pub serial_number: Box<str>,
    pub os_version: &'static str,
    /// `None` serialises as `""` (never checked in).
    pub last_check_in: Option<DateTime<Utc>>,
    pub user_id: Option<Uuid>,
    /// `None` serialises as `null`; unset tags are also often `""`.
    pub asset_tag: Option<Box<str>>,
    pub blueprint_id: Uuid,
    pub mdm_enabled: bool,
    pub agent_installed: bool,
    pub agent_version: &'static str,
    pub is_missing: bool,
    pub is_removed: bool,
    pub supervised: bool,
    pub filevault_enabled: bool,
    pub remote_desktop_enabled: bool,
    pub first_enrollment: DateTime<Utc>,
    pub last_enrollment: DateTime<Utc>,
    pub tags: Vec<String>,
    /// Apple TVs report no network information.
    pub mac_address: Option<[u8; 6]>,
    pub lost_mode: Option<Box<LostMode>>,
    pub locked: bool,
    /// The PIN of the last Lock on a Mac.
    pub unlock_pin: Option<Box<str>>,
    /// The ADE record of this device, if it came through Automated Device Enrollment.
    pub ade_device_id: Option<Uuid>,
}

impl Device {
    /// The build of `os_version` (`supplemental_build_version`).
    pub fn build(&self) -> &'static str {
        catalog::os_releases(self.platform)
            .iter()
            .find(|(v, _, _)| *v == self.os_version)
            .map(|(_, b, _)| *b)
            .unwrap_or("")
    }

    pub fn mac_address_string(&self) -> Option<String> {
        self.mac_address.map(|m| {
            format!(
                "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                m[0], m[1], m[2], m[3], m[4], m[5]
            )
        })
    }

    pub fn lost_mode_status(&self) -> &'static str {
        if self.lost_mode.is_some() {
            "ENABLED"
        } else {
            ""
        }
    }
}

#[derive(Clone, Debug)]
pub struct Note {
    pub note_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub author: String,
    pub content: String,
}

/// An MDM command the API queued (kept for `/devices/{id}/commands` and `/activity`).
#[derive(Clone, Debug)]
pub struct Command {
    pub uuid: Uuid,
    pub command_type: &'static str,
    pub request_type: &'static str,
    pub date_requested: DateTime<Utc>,
}

#[derive(Clone, Debug)]
pub struct AdeIntegration {
    pub id: Uuid,
    pub blueprint_id: Uuid,
    pub access_token_expiry: DateTime<Utc>,
    pub server_name: String,
    pub server_uuid: Uuid,
    pub admin_id: String,
    pub org_name: String,
    pub org_email: String,
    pub org_phone: String,
    pub org_address: String,
    pub org_type: String,
    pub stoken_file_name: String,
    pub last_device_sync: DateTime<Utc>,
    pub default_email: String,
    pub default_phone: String,
    pub status: String,
    pub status_reason: Option<String>,
    pub status_received_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug)]
pub struct AdeDevice {
    pub id: Uuid,
    /// The ADE integration (token) this device belongs to.
    pub dep_account: Uuid,
    /// The enrolled Kandji device; `None` while awaiting enrollment (`mdm_device: null`).
    pub mdm_device: Option<Uuid>,
    pub serial_number: Box<str>,
    pub model: &'static Model,
    pub color: &'static str,
    pub blueprint_id: Uuid,
    pub user_id: Option<Uuid>,
    pub asset_tag: Option<Box<str>>,
    pub device_assigned_by: &'static str,
    pub device_assigned_date: DateTime<Utc>,
    /// assigned | empty | pushed | removed
    pub profile_status: &'static str,
    pub profile_assign_time: Option<DateTime<Utc>>,
    pub profile_push_time: Option<DateTime<Utc>>,
    pub last_assignment_status: &'static str,
    pub failed_assignment_attempts: u32,
    pub assignment_status_received_at: Option<DateTime<Utc>>,
}

/// A Custom App of the library; its id is also a library item of type `custom-app`.
#[derive(Clone, Debug)]
pub struct CustomApp {
    pub id: Uuid,
    pub name: String,
    /// The uploaded file's S3 key.
    pub file_key: String,
    /// "package", "zip" or "image".
    pub install_type: &'static str,
    /// "install_once", "continuously_enforce" or "no_enforcement".
    pub install_enforcement: &'static str,
    pub unzip_location: &'static str,
    pub active: bool,
    pub file_size: u64,
    pub file_updated: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub show_in_self_service: bool,
}

/// One entry of a library item's activity (`/library/library-items/{id}/activity`).
#[derive(Clone, Debug)]
pub struct LibraryActivity {
    pub id: u64,
    pub activity_time: DateTime<Utc>,
    /// library_item_created, library_item_edited, library_item_deleted, library_item_duplicated
    /// or library_item_assignment_changed.
    pub activity_type: &'static str,
    pub user_id: Uuid,
    pub user_email: String,
    /// `null`, or lines such as `Name: test_custom_app → ms_company_portal`.
    pub details: Option<Vec<String>>,
}

/// The Kandji admin whose changes the library activity shows.
pub const ADMIN_EMAIL: &str = "admin@accuhive.io";

/// The directory integration every user comes from.
#[derive(Clone, Debug)]
pub struct UserIntegration {
    pub id: u32,
    pub name: String,
    pub uuid: Uuid,
    pub kind: String,
}

/// One entry of the audit log, as `GET /audit/events` lists it.
#[derive(Clone, Debug)]
pub struct AuditEvent {
    pub id: String,
    pub action: String,
    pub occurred_at: DateTime<Utc>,
    pub actor_id: Uuid,
    pub actor_type: String,
    pub target_id: Uuid,
    pub target_type: String,
    pub target_component: String,
    pub new_state: serde_json::Value,
    pub metadata: serde_json::Value,
}

/// The wall clock, to microseconds (audit entries are stamped with real time, so a poll by
/// `start_date` works whatever the fixtures' reference date).
pub fn now_micros() -> DateTime<Utc> {
    use chrono::SubsecRound;
    Utc::now().trunc_subsecs(6)
}

#[derive(Debug)]
pub struct Tenant {
    pub seed: u64,
    /// In creation order (the default `/devices` order).
    pub devices: Vec<Device>,
    pub users: Vec<User>,
    pub user_integration: UserIntegration,
    pub blueprints: Vec<Blueprint>,
    pub tags: Vec<Tag>,
    pub library_items: Vec<LibraryItem>,
    pub ade_integrations: Vec<AdeIntegration>,
    /// ADE devices per integration (token) id, in Kandji's order.
    pub ade_devices: HashMap<Uuid, Vec<AdeDevice>>,
    pub notes: HashMap<Uuid, Vec<Note>>,
    pub commands: HashMap<Uuid, Vec<Command>>,
    pub custom_apps: Vec<CustomApp>,
    /// Per library item, oldest first (Kandji lists it newest first).
    pub library_activity: HashMap<Uuid, Vec<LibraryActivity>>,
    /// The admin (API token owner) that library changes are attributed to.
    pub admin_id: Uuid,
    /// Whether the tenant has Kandji EDR; without it `/threat-details` is 404.
    pub edr_enabled: bool,
    /// The audit log (`GET /audit/events`), oldest first; see `handlers/audit.rs`.
    pub audit: Vec<AuditEvent>,
    pub(crate) audit_seq: u64,
    /// The API token's id, the actor of audit entries for changes made through the API.
    pub api_token_id: Uuid,
    device_index: IdMap<u32>,
    user_index: IdMap<u32>,
    ade_index: IdMap<(Uuid, u32)>,
    /// Bumped on every device change; invalidates cached orderings.
    generation: u64,
}

const SERIAL_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ0123456789";
const MAC_OUIS: &[[u8; 1]] = &[[0xf0], [0xa4], [0x3c], [0x14], [0xbc], [0x88]];
const NOTE_TEXTS: &[&str] = &[
    "<p>Issued at onboarding.</p>",
    "Battery replaced under AppleCare.",
    "<p>Loaner returned with charger.&nbsp;</p>",
    "Screen protector applied; case issued.",
    "User reported slow Wi-Fi, resolved by renewing DHCP lease.",
];

impl Tenant {
    /// Generates `devices` devices and everything around them from `seed`.
    pub fn generate(devices: usize, seed: u64) -> Tenant {
        Generator::new(seed).run(devices)
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Call after changing devices directly through the pub fields.
    pub fn touch(&mut self) {
        self.generation += 1;
    }

    pub fn device(&self, id: &Uuid) -> Option<&Device> {
        self.device_index
            .get(id)
            .map(|&i| &self.devices[i as usize])
    }

    /// Call [`Tenant::touch`] after changing a field `/devices` can be ordered by.
    pub fn device_mut(&mut self, id: &Uuid) -> Option<&mut Device> {
        match self.device_index.get(id) {
            Some(&i) => Some(&mut self.devices[i as usize]),
            None => None,
        }
    }

    pub fn device_by_str(&self, id: &str) -> Option<&Device> {
        Uuid::parse_str(id).ok().and_then(|id| self.device(&id))
    }

    /// Removes a device (DELETE /devices/{id}); its ADE record shows `mdm_device: null` after.
    pub fn remove_device(&mut self, id: &Uuid) -> Option<Device> {
        let i = self.device_index.remove(id)? as usize;
        let device = self.devices.remove(i);
        for (pos, d) in self.devices.iter().enumerate().skip(i) {
            self.device_index.insert(d.device_id, pos as u32);
        }
        if let Some(ade_id) = device.ade_device_id
            && let Some((token, pos)) = self.ade_index.get(&ade_id).copied()
            && let Some(list) = self.ade_devices.get_mut(&token)
        {
            list[pos as usize].mdm_device = None;
        }
        self.notes.remove(id);
        self.commands.remove(id);
        self.generation += 1;
        Some(device)
    }

    /// Enrolls a new device of `platform`: a copy of the platform's first device with new ids,
    /// serial number and name, checked in now, on `blueprint` (or the copied device's).
    pub fn enroll_device(
        &mut self,
        platform: Platform,
        name: Option<String>,
        blueprint: Option<Uuid>,
    ) -> Device {
        let template = self
            .devices
            .iter()
            .find(|d| d.platform == platform)
            .or(self.devices.first())
            .cloned()
            .expect("the tenant has devices");
        let seq = self.devices.iter().map(|d| d.seq).max().unwrap_or(0) + 1;
        let id = Uuid::new_v4();
        let serial: String = {
            let mut g = crate::simulator::rng::Gen::new(id.as_u64_pair().0);
            g.chars_from(SERIAL_ALPHABET, 10)
        };
        let now = now_micros();
        let d = Device {
            seq,
            device_id: id,
            device_name: name
                .unwrap_or_else(|| format!("New {} {serial}", platform.as_str()))
                .into(),
            serial_number: serial.into(),
            blueprint_id: blueprint.unwrap_or(template.blueprint_id),
            last_check_in: Some(now),
            first_enrollment: now,
            last_enrollment: now,
            is_missing: false,
            is_removed: false,
            mdm_enabled: true,
            lost_mode: None,
            locked: false,
            unlock_pin: None,
            ade_device_id: None,
            ..template
        };
        self.device_index.insert(id, self.devices.len() as u32);
        self.devices.push(d.clone());
        self.generation += 1;
        d
    }

    /// Moves a device to another Blueprint and records it in the audit log.
    pub fn move_device(
        &mut self,
        actor: crate::simulator::handlers::audit::Actor,
        id: &Uuid,
        to: Uuid,
    ) {
        let Some(d) = self.device_mut(id) else { return };
        let from = d.blueprint_id;
        if from == to {
            return;
        }
        d.blueprint_id = to;
        let d = d.clone();
        self.generation += 1;
        let previous = self.blueprint_name(&from).to_string();
        self.audit_device(
            actor,
            "update",
            "blueprint",
            &d,
            serde_json::json!({"previous_blueprint_id": from, "previous_blueprint_name": previous}),
        );
    }

    /// The first device of a platform ("Mac", "iPhone", "iPad", "AppleTV", "Vision").
    /// The first device of each platform is always healthy: enrolled, supervised, not missing or
    /// removed, with an assigned user (except Apple TV), agent and FileVault on for a Mac.
    pub fn first_device_of(&self, platform: &str) -> Option<&Device> {
        let p = Platform::parse(platform)?;
        self.devices.iter().find(|d| d.platform == p)
    }

    pub fn devices_of(&self, platform: &str) -> impl Iterator<Item = &Device> {
        let p = Platform::parse(platform);
        self.devices.iter().filter(move |d| Some(d.platform) == p)
    }

    pub fn user(&self, id: &Uuid) -> Option<&User> {
        self.user_index.get(id).map(|&i| &self.users[i as usize])
    }

    /// Removes a user (DELETE /users/{id}); refuses while a device is assigned to them.
    pub fn remove_user(&mut self, id: &Uuid) -> Result<User, &'static str> {
        let i = *self.user_index.get(id).ok_or("not found")? as usize;
        if self.devices.iter().any(|d| d.user_id == Some(*id)) {
            return Err("assigned");
        }
        self.user_index.remove(id);
        let user = self.users.remove(i);
        for (pos, u) in self.users.iter().enumerate().skip(i) {
            self.user_index.insert(u.id, pos as u32);
        }
        Ok(user)
    }

    pub fn user_by_deprecated_id(&self, id: u64) -> Option<&User> {
        self.users
            .iter()
            .find(|u| u64::from(u.deprecated_user_id) == id)
    }

    pub fn blueprint(&self, id: &Uuid) -> Option<&Blueprint> {
        self.blueprints.iter().find(|b| b.id == *id)
    }

    pub fn blueprint_by_name(&self, name: &str) -> Option<&Blueprint> {
        self.blueprints.iter().find(|b| b.name == name)
    }

    pub fn blueprint_name(&self, id: &Uuid) -> &str {
        self.blueprint(id).map(|b| b.name.as_str()).unwrap_or("")
    }

    pub fn ade_integration(&self, id: &Uuid) -> Option<&AdeIntegration> {
        self.ade_integrations.iter().find(|a| a.id == *id)
    }

    /// ADE devices of one integration (token), empty for an unknown token.
    pub fn ade_devices_of(&self, token: &Uuid) -> &[AdeDevice] {
        self.ade_devices
            .get(token)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    pub fn ade_device(&self, id: &Uuid) -> Option<&AdeDevice> {
        let (token, pos) = self.ade_index.get(id)?;
        self.ade_devices
            .get(token)
            .and_then(|l| l.get(*pos as usize))
    }

    pub fn notes_of(&self, device: &Uuid) -> &[Note] {
        self.notes.get(device).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn library_item(&self, id: &Uuid) -> Option<&LibraryItem> {
        self.library_items.iter().find(|l| l.id == *id)
    }

    /// Tag names must exist as tags; PATCHing a device with a new tag name creates the tag.
    pub fn ensure_tag(&mut self, name: &str) {
        if !self.tags.iter().any(|t| t.name == name) {
            self.tags.push(Tag {
                id: Uuid::new_v4(),
                name: name.to_string(),
            });
        }
    }

    pub fn custom_app(&self, id: &Uuid) -> Option<&CustomApp> {
        self.custom_apps.iter().find(|a| a.id == *id)
    }

    /// Appends an activity entry to a library item (as the API's admin, now).
    pub fn record_library_activity(
        &mut self,
        item: Uuid,
        activity_type: &'static str,
        details: Option<Vec<String>>,
    ) {
        let id = self
            .library_activity
            .values()
            .flatten()
            .map(|a| a.id)
            .max()
            .unwrap_or(0)
            + 1;
        let admin_id = self.admin_id;
        self.library_activity
            .entry(item)
            .or_default()
            .push(LibraryActivity {
                id,
                activity_time: Utc::now(),
                activity_type,
                user_id: admin_id,
                user_email: ADMIN_EMAIL.to_string(),
                details,
            });
    }

    pub fn record_command(
        &mut self,
        device: Uuid,
        command_type: &'static str,
        request_type: &'static str,
    ) {
        self.commands.entry(device).or_default().push(Command {
            uuid: Uuid::new_v4(),
            command_type,
            request_type,
            date_requested: Utc::now(),
        });
    }
}

struct Generator {
    g: Gen,
    seed: u64,
    now: DateTime<Utc>,
    serials: HashSet<u64>,
}

fn micros(g: &mut Gen) -> Duration {
    Duration::microseconds(g.range(0, 1_000_000))
}

impl Generator {
    fn new(seed: u64) -> Self {
        Generator {
            g: Gen::new(seed),
            seed,
            now: reference_now(),
            serials: HashSet::new(),
        }
    }

    fn days_ago(&mut self, lo: i64, hi: i64) -> DateTime<Utc> {
        let secs = self.g.range(lo * 86_400, hi * 86_400);
        self.now - Duration::seconds(secs) - micros(&mut self.g)
    }

    /// A 12-character serial not used before; serials are remembered as numbers to keep the
    /// set small for 100,000 devices.
    fn unique_serial(&mut self) -> Box<str> {
        let base = SERIAL_ALPHABET.len() as u64;
        let space = base.pow(12);
        loop {
            let mut n = self.g.below(space);
            if self.serials.insert(n) {
                let mut s = [0u8; 12];
                for c in s.iter_mut().rev() {
                    *c = SERIAL_ALPHABET[(n % base) as usize];
                    n /= base;
                }
                return String::from_utf8_lossy(&s).into();
            }
        }
    }

    fn run(mut self, n_devices: usize) -> Tenant {
        let g = &mut self.g;
        let tags: Vec<Tag> = catalog::TAG_NAMES
            .iter()
            .map(|name| Tag {
                id: g.uuid(),
                name: name.to_string(),
            })
            .collect();

        let library_items: Vec<LibraryItem> = catalog::LIBRARY_ITEMS
            .iter()
            .map(|(name, kind, platforms)| LibraryItem {
                id: g.uuid(),
                name,
                kind,
                platforms,
            })
            .collect();

        let blueprints: Vec<Blueprint> = catalog::BLUEPRINTS
            .iter()
            .enumerate()
            .map(|(i, seed)| {
                let params = if i == 0 {
                    let mut m = serde_json::Map::new();
                    m.insert(
                        g.uuid().to_string(),
                        serde_json::json!({"mute": false, "daily": false, "details": "1"}),
                    );
                    serde_json::Value::Object(m)
                } else {
                    serde_json::json!({})
                };
                Blueprint {
                    id: g.uuid(),
                    name: seed.name.to_string(),
                    icon: seed.icon.to_string(),
                    color: seed.color.to_string(),
                    description: seed.description.to_string(),
                    params,
                    enrollment_code: EnrollmentCode {
                        code: g.digits(6),
                        is_active: i != 1,
                    },
                    kind: seed.kind.to_string(),
                    library_item_ids: library_items
                        .iter()
                        .filter(|l| l.platforms.iter().any(|p| seed.platforms.contains(p)))
                        .map(|l| l.id)
                        .collect(),
                }
            })
            .collect();

        let user_integration = UserIntegration {
            id: 634,
            name: "accuhive".into(),
            uuid: self.g.uuid(),
            kind: "office365".into(),
        };
        let users = self.users(n_devices);
        let devices = self.devices(n_devices, &users, &blueprints, &tags);

        let mut tenant = Tenant {
            seed: self.seed,
            device_index: devices
                .iter()
                .enumerate()
                .map(|(i, d)| (d.device_id, i as u32))
                .collect(),
            user_index: users
                .iter()
                .enumerate()
                .map(|(i, u)| (u.id, i as u32))
                .collect(),
            devices,
            users,
            user_integration,
            blueprints,
            tags,
            library_items,
            ade_integrations: Vec::new(),
            ade_devices: HashMap::new(),
            notes: HashMap::new(),
            commands: HashMap::new(),
            custom_apps: Vec::new(),
            library_activity: HashMap::new(),
            admin_id: Uuid::nil(),
            edr_enabled: true,
            audit: Vec::new(),
            audit_seq: 0,
            api_token_id: Uuid::from_u128(0xa072_6ca3_717d_41b9_a3af_c7d0_bad8_b784),
            ade_index: IdMap::default(),
            generation: 0,
        };
        self.ade(&mut tenant);
        self.notes(&mut tenant);
        self.library(&mut tenant);
        tenant
    }

    fn users(&mut self, n_devices: usize) -> Vec<User> {
        let n = (n_devices * 45 / 100).max(5);
        let mut emails: HashMap<String, u32> = HashMap::new();
        (0..n)
            .map(|i| {
                let first = *self.g.pick(catalog::FIRST_NAMES);
                let last = *self.g.pick(catalog::LAST_NAMES);
                let base = format!("{}.{}", first.to_lowercase(), last.to_lowercase());
                let count = emails.entry(base.clone()).or_insert(0);
                *count += 1;
                let email = if *count == 1 {
                    format!("{base}@accuhive.io")
                } else {
                    format!("{base}{count}@accuhive.io")
                };
                let created_at = self.days_ago(400, 1200);
                let updated_at = created_at + Duration::seconds(self.g.range(0, 86_400 * 200));
                User {
                    id: self.g.uuid(),
                    name: format!("{first} {last}").into(),
                    email: email.into(),
                    // The first users stay active: tests assign them to devices.
                    archived: i >= 5 && self.g.percent(3),
                    active: true,
                    deprecated_user_id: 29_000 + i as u32,
                    department: self
                        .g
                        .percent(70)
                        .then(|| *self.g.pick(catalog::DEPARTMENTS)),
                    job_title: self
                        .g
                        .percent(60)
                        .then(|| *self.g.pick(catalog::JOB_TITLES)),
                    created_at,
                    updated_at: updated_at.min(self.now),
                }
            })
            .collect()
    }

    /// Exact platform counts (50/25/15/7/3 %, at least one of each from 5 devices), shuffled.
    fn platform_plan(&mut self, n: usize) -> Vec<Platform> {
        let shares = [
            (Platform::IPhone, 25),
            (Platform::IPad, 15),
            (Platform::AppleTv, 7),
            (Platform::Vision, 3),
        ];
        let mut plan = Vec::with_capacity(n);
        for (p, pct) in shares {
            let mut count = (n * pct + 50) / 100;
            if n >= 5 {
                count = count.max(1);
            }
            plan.extend(std::iter::repeat_n(p, count));
        }
        plan.truncate(n);
        let macs = n - plan.len();
        plan.extend(std::iter::repeat_n(Platform::Mac, macs));
        for i in (1..plan.len()).rev() {
            let j = self.g.below(i as u64 + 1) as usize;
            plan.swap(i, j);
        }
        plan
    }

    fn devices(
        &mut self,
        n: usize,
        users: &[User],
        blueprints: &[Blueprint],
        tags: &[Tag],
    ) -> Vec<Device> {
        let plan = self.platform_plan(n);
        let mut first_of: HashSet<Platform> = HashSet::new();
        let mut room_counter = 0u32;
        let mut devices = Vec::with_capacity(n);
        for (seq, platform) in plan.into_iter().enumerate() {
            let healthy = first_of.insert(platform);
            let g = &mut self.g;
            let models = catalog::models_of(platform);
            let model = *g.pick(&models);
            let os_version = {
                let weighted: Vec<(&str, u32)> = catalog::os_releases(platform)
                    .iter()
                    .map(|(v, _, w)| (*v, *w))
                    .collect();
                *g.weighted(&weighted)
            };
            let serial_number = self.unique_serial();
            let g = &mut self.g;
            let user = if platform == Platform::AppleTv || (!healthy && g.percent(10)) {
                None
            } else {
                // Healthy fixtures get one of the first (never archived) users.
                let pool = if healthy {
                    &users[..users.len().min(5)]
                } else {
                    users
                };
                Some(g.pick(pool))
            };
            let first_name = user.map(|u| u.name.split(' ').next().unwrap_or("").to_string());
            let device_name = match (platform, first_name) {
                (Platform::AppleTv, _) => {
                    room_counter += 1;
                    format!("{} {}", g.pick(catalog::ROOM_NAMES), room_counter)
                }
                (Platform::IPhone, Some(f)) => format!("{f}’s iPhone"),
                (Platform::IPad, Some(f)) => format!("{f}’s iPad"),
                (_, Some(f)) => format!("{f}’s {}", model.family_name),
                (Platform::IPhone, None) => "iPhone".to_string(),
                (Platform::IPad, None) => format!("Shared iPad {:02}", g.below(60) + 1),
                (_, None) => format!("{} {}", model.family_name, &serial_number[8..]),
            };
            let candidates: Vec<&Blueprint> = blueprints
                .iter()
                .zip(catalog::BLUEPRINTS)
                .filter(|(_, seed)| seed.platforms.contains(&platform))
                .map(|(b, _)| b)
                .collect();
            let blueprint_id = if candidates.is_empty() {
                blueprints[0].id
            } else {
                g.pick(&candidates).id
            };
            let is_mac = platform == Platform::Mac;
            let is_removed = !healthy && g.percent(2);
            let is_missing = !healthy && !is_removed && g.percent(4);
            let mdm_enabled = !is_removed && (healthy || g.percent(97));
            let supervised = platform == Platform::AppleTv || healthy || g.percent(85);
            let agent_installed = is_mac && (healthy || g.percent(95));
            let agent_version = if agent_installed {
                *g.weighted(catalog::AGENT_VERSIONS)
            } else {
                ""
            };
            let first_enrollment = self.days_ago(30, 900);
            let g = &mut self.g;
            let last_enrollment = if g.percent(30) {
                let span = (self.now - first_enrollment).num_seconds().max(1);
                first_enrollment + Duration::seconds(g.range(0, span)) + micros(g)
            } else {
                first_enrollment
            };
            let last_check_in = if !healthy && g.percent(3) {
                None
            } else if is_missing || is_removed {
                Some(self.days_ago(30, 120))
            } else {
                let secs = g.range(0, 72 * 3600);
                Some(self.now - Duration::seconds(secs) - micros(&mut self.g))
            };
            let g = &mut self.g;
            let device_tags = {
                let k = *g.weighted(&[(0usize, 50), (1, 35), (2, 15)]);
                let mut names: Vec<String> = Vec::with_capacity(k);
                while names.len() < k {
                    let t = &g.pick(tags).name;
                    if !names.contains(t) {
                        names.push(t.clone());
                    }
                }
                names
            };
            let asset_tag = match g.below(10) {
                0 => None,
                1..=6 => Some("".into()),
                _ => Some(format!("KJ-{}", g.digits(5)).into()),
            };
            let device_id = g.uuid();
            let mac_address = (platform != Platform::AppleTv).then(|| {
                let b = device_id.as_bytes();
                [g.pick(MAC_OUIS)[0], b[11], b[12], b[13], b[14], b[15]]
            });
            devices.push(Device {
                seq: seq as u32,
                device_id,
                device_name: device_name.into(),
                platform,
                model,
                serial_number,
                os_version,
                last_check_in,
                user_id: user.map(|u| u.id),
                asset_tag,
                blueprint_id,
                mdm_enabled,
                agent_installed,
                agent_version,
                is_missing,
                is_removed,
                supervised,
                filevault_enabled: is_mac && (healthy || g.percent(92)),
                remote_desktop_enabled: is_mac && g.percent(20),
                first_enrollment,
                last_enrollment,
                tags: device_tags,
                mac_address,
                lost_mode: None,
                locked: false,
                unlock_pin: None,
                ade_device_id: None,
            });
        }
        devices
    }

    fn ade(&mut self, t: &mut Tenant) {
        let integrations = [
            ("accuhive.kandji.io", "SUCCESS", None, 235),
            ("accuhive.kandji.io-2", "BROKEN", Some("FORBIDDEN"), 20),
        ];
        for (i, (server, status, reason, days_left)) in integrations.into_iter().enumerate() {
            let expiry = self.now + Duration::days(days_left);
            let g = &mut self.g;
            let status_received_at = self.now - Duration::days(g.range(1, 60)) - micros(g);
            let last_device_sync = self.now - Duration::minutes(g.range(5, 600)) - micros(g);
            t.ade_integrations.push(AdeIntegration {
                id: g.uuid(),
                blueprint_id: t.blueprints[if i == 0 { 0 } else { 2 }].id,
                access_token_expiry: expiry,
                server_name: server.to_string(),
                server_uuid: g.uuid(),
                admin_id: "admin@accuhive.io".into(),
                org_name: "accuhive".into(),
                org_email: "admin@accuhive.io".into(),
                org_phone: "+1 (415) 640-4923".into(),
                org_address: "113 W G St,San Diego CA 92101-6096,USA".into(),
                org_type: "org".into(),
                stoken_file_name: format!(
                    "{server}_Token_{}_smime.p7m",
                    (expiry - Duration::days(365)).format("%Y-%m-%dT%H-%M-%SZ")
                ),
                last_device_sync,
                default_email: "admin@accuhive.io".into(),
                default_phone: "1234567890".into(),
                status: status.to_string(),
                status_reason: reason.map(str::to_string),
                status_received_at: Some(status_received_at),
            });
        }

        // About 40% of devices came through ADE; with the not-yet-enrolled ones the ADE total
        // is about half the device count.
        let linked: Vec<usize> = (0..t.devices.len())
            .filter(|_| self.g.percent(40))
            .collect();
        let total = t.devices.len().div_ceil(2).max(linked.len());
        let mut unlinked_left = total - linked.len();
        let mut linked_iter = linked.into_iter();
        let tokens: Vec<Uuid> = t.ade_integrations.iter().map(|a| a.id).collect();
        for _ in 0..total {
            let linked_left = linked_iter.len();
            let take_linked = linked_left > 0
                && (unlinked_left == 0
                    || self.g.below((linked_left + unlinked_left) as u64) < linked_left as u64);
            let token = if self.g.percent(85) {
                tokens[0]
            } else {
                tokens[1]
            };
            let assigned = self.days_ago(40, 950);
            let g = &mut self.g;
            let id = g.uuid();
            let record = if take_linked {
                let di = linked_iter.next().unwrap_or_default();
                let d = &mut t.devices[di];
                d.ade_device_id = Some(id);
                let color = *g.pick(d.model.colors);
                let assign_time = d.first_enrollment - Duration::hours(g.range(1, 48));
                AdeDevice {
                    id,
                    dep_account: token,
                    mdm_device: Some(d.device_id),
                    serial_number: d.serial_number.clone(),
                    model: d.model,
                    color,
                    blueprint_id: d.blueprint_id,
                    user_id: d.user_id,
                    asset_tag: d.asset_tag.clone(),
                    device_assigned_by: "admin@accuhive.io",
                    device_assigned_date: assigned.min(assign_time),
                    profile_status: "pushed",
                    profile_assign_time: Some(assign_time),
                    profile_push_time: Some(d.first_enrollment - Duration::minutes(1)),
                    last_assignment_status: "SUCCESS",
                    failed_assignment_attempts: 0,
                    assignment_status_received_at: Some(assign_time + micros(g)),
                }
            } else {
                unlinked_left -= 1;
                let platform = *g.weighted(&[
                    (Platform::Mac, 50),
                    (Platform::IPhone, 25),
                    (Platform::IPad, 18),
                    (Platform::AppleTv, 7),
                ]);
                let models = catalog::models_of(platform);
                let model = *g.pick(&models);
                let color = *g.pick(model.colors);
                let profile_status = *g.weighted(&[
                    ("assigned", 60),
                    ("empty", 20),
                    ("pushed", 15),
                    ("removed", 5),
                ]);
                let assign_time = (profile_status != "empty")
                    .then(|| assigned + Duration::minutes(g.range(1, 600)));
                let push_time = (profile_status == "pushed")
                    .then(|| assigned + Duration::minutes(g.range(600, 6000)));
                let asset_tag = if g.percent(50) { None } else { Some("".into()) };
                let blueprint_id = t
                    .ade_integration(&token)
                    .map(|a| a.blueprint_id)
                    .unwrap_or(t.blueprints[0].id);
                let serial_number = self.unique_serial();
                let g = &mut self.g;
                AdeDevice {
                    id,
                    dep_account: token,
                    mdm_device: None,
                    serial_number,
                    model,
                    color,
                    blueprint_id,
                    user_id: None,
                    asset_tag,
                    device_assigned_by: "admin@accuhive.io",
                    device_assigned_date: assigned,
                    profile_status,
                    profile_assign_time: assign_time,
                    profile_push_time: push_time,
                    last_assignment_status: if profile_status == "empty" {
                        ""
                    } else {
                        "SUCCESS"
                    },
                    failed_assignment_attempts: 0,
                    assignment_status_received_at: assign_time.map(|a| a + micros(g)),
                }
            };
            let list = t.ade_devices.entry(token).or_default();
            t.ade_index.insert(id, (token, list.len() as u32));
            list.push(record);
        }
        for token in tokens {
            t.ade_devices.entry(token).or_default();
        }
    }

    /// Custom Apps and the library's activity. Drawn from keyed generators so that the rest of
    /// the tenant is what it was before they existed.
    fn library(&mut self, t: &mut Tenant) {
        let mut g = Gen::keyed(self.seed, 0, "library");
        t.admin_id = g.uuid();
        let company = g.uuid();
        for (name, file, install_type, enforcement, unzip, size, self_service) in
            catalog::CUSTOM_APPS
        {
            let created =
                self.now - Duration::seconds(g.range(30 * 86_400, 500 * 86_400)) - micros(&mut g);
            let updated = created + Duration::seconds(g.range(60, 90 * 86_400)) + micros(&mut g);
            let (stem, ext) = file.rsplit_once('.').unwrap_or((file, ""));
            let app = CustomApp {
                id: g.uuid(),
                name: name.to_string(),
                file_key: format!(
                    "companies/companies/{company}/library/custom_apps/{stem}_{}.{ext}",
                    &g.uuid().simple().to_string()[..8]
                ),
                install_type,
                install_enforcement: enforcement,
                unzip_location: unzip,
                active: true,
                file_size: *size,
                file_updated: (created - Duration::seconds(5)).trunc_subsecs(0),
                created_at: created,
                updated_at: updated,
                show_in_self_service: *self_service,
            };
            t.library_items.push(LibraryItem {
                id: app.id,
                name,
                kind: "custom-app",
                platforms: &[Platform::Mac],
            });
            t.custom_apps.push(app);
        }
        let mut next_id = 1_800u64;
        let admin = t.admin_id;
        for (k, item) in t.library_items.iter().enumerate() {
            let mut g = Gen::keyed(self.seed, k as u64, "library-activity");
            let mut at = self.now - Duration::seconds(g.range(60 * 86_400, 700 * 86_400));
            let changes = g.range(1, 5);
            let mut entries = Vec::new();
            for c in 0..=changes {
                let (kind, details) = match c {
                    0 => ("library_item_created", None),
                    1 => (
                        "library_item_edited",
                        Some(vec![format!("Name: {}_draft → {}", item.kind, item.name)]),
                    ),
                    _ => ("library_item_assignment_changed", None),
                };
                entries.push(LibraryActivity {
                    id: next_id,
                    activity_time: at,
                    activity_type: kind,
                    user_id: admin,
                    user_email: ADMIN_EMAIL.to_string(),
                    details,
                });
                next_id += 1 + g.below(3);
                at += Duration::seconds(g.range(60, 20 * 86_400)) + micros(&mut g);
            }
            t.library_activity.insert(item.id, entries);
        }
    }

    fn notes(&mut self, t: &mut Tenant) {
        for d in &t.devices {
            if !self.g.percent(10) {
                continue;
            }
            let created = d.first_enrollment + Duration::hours(self.g.range(1, 240));
            let created = created.min(self.now);
            let note = Note {
                note_id: self.g.uuid(),
                created_at: created,
                updated_at: created + Duration::microseconds(self.g.range(5, 40)),
                author: "Accuhive Admin".into(),
                content: self.g.pick(NOTE_TEXTS).to_string(),
            };
            t.notes.entry(d.device_id).or_default().push(note);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_tenant() {
        let a = Tenant::generate(200, 7);
        let b = Tenant::generate(200, 7);
        let ids = |t: &Tenant| {
            t.devices
                .iter()
                .map(|d| (d.device_id, d.serial_number.clone(), d.device_name.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&a), ids(&b));
        assert_ne!(ids(&a), ids(&Tenant::generate(200, 8)));
    }

    #[test]
    fn fixture_mix() {
        let t = Tenant::generate(1000, 42);
        let count = |p: Platform| t.devices.iter().filter(|d| d.platform == p).count();
        assert_eq!(count(Platform::Mac), 500);
        assert_eq!(count(Platform::IPhone), 250);
        assert_eq!(count(Platform::IPad), 150);
        assert_eq!(count(Platform::AppleTv), 70);
        assert_eq!(count(Platform::Vision), 30);
        let serials: HashSet<_> = t.devices.iter().map(|d| &d.serial_number).collect();
        assert_eq!(serials.len(), 1000);
        assert!(t.devices.iter().all(|d| d.serial_number.len() == 12));
        let ade_total: usize = t.ade_devices.values().map(Vec::len).sum();
        assert_eq!(ade_total, 500);
        assert!(
            t.ade_devices
                .values()
                .flatten()
                .any(|a| a.mdm_device.is_none())
        );
        let small = Tenant::generate(5, 1);
        for p in ["Mac", "iPhone", "iPad", "AppleTV", "Vision"] {
            let d = small.first_device_of(p).expect(p);
            assert!(d.mdm_enabled && !d.is_missing && !d.is_removed && d.supervised);
        }
    }
}
