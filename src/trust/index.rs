//! The in-memory device index: serial number (upper-cased) -> what a device-trust answer needs.
//!
//! Entries are compact (interned platform, OS version and blueprint name; the device id as a
//! UUID) so 100,000 devices take a few tens of MiB.

use std::collections::{HashMap, HashSet};
use std::mem::size_of;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::store::InventoryDevice;

/// A serial number as callers give it: 1 to 64 visible ASCII characters, compared without case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialNumber {
    given: String,
    key: String,
}

impl SerialNumber {
    pub const RULE: &'static str = "must be 1 to 64 visible ASCII characters (no spaces)";

    pub fn parse(s: &str) -> Result<Self, &'static str> {
        let s = s.trim();
        if s.is_empty() || s.len() > 64 || !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Self::RULE);
        }
        Ok(Self {
            given: s.to_string(),
            key: s.to_ascii_uppercase(),
        })
    }

    /// As the caller spelled it.
    pub fn as_str(&self) -> &str {
        &self.given
    }

    /// Upper-cased: the index and store key.
    pub fn key(&self) -> &str {
        &self.key
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum DeviceId {
    Uuid(Uuid),
    /// Kandji's ids are UUIDs; anything else is kept as given.
    Other(Box<str>),
}

impl DeviceId {
    fn parse(s: &str) -> Self {
        match Uuid::parse_str(s) {
            Ok(u) if u.hyphenated().to_string() == s => DeviceId::Uuid(u),
            _ => DeviceId::Other(s.into()),
        }
    }

    fn to_text(&self) -> String {
        match self {
            DeviceId::Uuid(u) => u.hyphenated().to_string(),
            DeviceId::Other(s) => s.to_string(),
        }
    }
}

const MDM_ENABLED: u8 = 1;
const AGENT_INSTALLED: u8 = 2;
const IS_MISSING: u8 = 4;
const IS_REMOVED: u8 = 8;

#[derive(Debug, Clone)]
pub struct Entry {
    device_id: DeviceId,
    platform: Option<Arc<str>>,
    os_version: Option<Arc<str>>,
    blueprint_name: Option<Arc<str>>,
    user_email: Option<Box<str>>,
    last_check_in: Option<DateTime<Utc>>,
    /// When the connector last read this device from Kandji.
    pub last_seen: DateTime<Utc>,
    flags: u8,
    /// The sync that last saw it (to find, at the end of a sync, the devices Kandji dropped).
    sweep: u32,
}

impl Entry {
    pub fn mdm_enabled(&self) -> bool {
        self.flags & MDM_ENABLED != 0
    }
    pub fn agent_installed(&self) -> bool {
        self.flags & AGENT_INSTALLED != 0
    }
    pub fn is_missing(&self) -> bool {
        self.flags & IS_MISSING != 0
    }
    pub fn is_removed(&self) -> bool {
        self.flags & IS_REMOVED != 0
    }

    /// The device as the store and answers see it.
    pub fn to_device(&self, serial_key: &str) -> InventoryDevice {
        let text = |s: &Option<Arc<str>>| s.as_deref().map(str::to_string);
        InventoryDevice {
            serial_key: serial_key.to_string(),
            device_id: self.device_id.to_text(),
            platform: text(&self.platform),
            os_version: text(&self.os_version),
            blueprint_name: text(&self.blueprint_name),
            user_email: self.user_email.as_deref().map(str::to_string),
            last_check_in: self.last_check_in,
            mdm_enabled: self.mdm_enabled(),
            agent_installed: self.agent_installed(),
            is_missing: self.is_missing(),
            is_removed: self.is_removed(),
            last_seen: self.last_seen,
        }
    }

    /// Same device state (everything but when it was seen).
    fn same_as(&self, other: &Entry) -> bool {
        self.device_id == other.device_id
            && self.platform == other.platform
            && self.os_version == other.os_version
            && self.blueprint_name == other.blueprint_name
            && self.user_email == other.user_email
            && self.last_check_in == other.last_check_in
            && self.flags == other.flags
    }
}

#[derive(Default)]
pub struct Index {
    map: HashMap<Box<str>, Entry>,
    /// Interned strings: a few hundred distinct OS versions and blueprint names, shared.
    strings: HashSet<Arc<str>>,
    sweep: u32,
}

impl Index {
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The device stored under a serial key (upper case), as the store keeps it.
    pub fn device(&self, serial_key: &str) -> Option<InventoryDevice> {
        self.map.get(serial_key).map(|e| e.to_device(serial_key))
    }

    /// Every device, as the store keeps it.
    pub fn devices(&self) -> impl Iterator<Item = InventoryDevice> + '_ {
        self.map.iter().map(|(k, e)| e.to_device(k))
    }

    pub fn get(&self, serial: &SerialNumber) -> Option<&Entry> {
        self.map.get(serial.key())
    }

    /// Starts a sync; returns its number.
    pub fn begin_sweep(&mut self) -> u32 {
        self.sweep = self.sweep.wrapping_add(1);
        self.sweep
    }

    fn intern(&mut self, s: Option<&str>) -> Option<Arc<str>> {
        let s = s.filter(|s| !s.is_empty())?;
        if let Some(a) = self.strings.get(s) {
            return Some(a.clone());
        }
        let a: Arc<str> = Arc::from(s);
        self.strings.insert(a.clone());
        Some(a)
    }

    /// Puts a device in the index as seen by the current sync; true when it is new or changed
    /// (so the store needs writing).
    pub fn upsert(&mut self, d: &InventoryDevice) -> bool {
        let mut flags = 0;
        for (on, bit) in [
            (d.mdm_enabled, MDM_ENABLED),
            (d.agent_installed, AGENT_INSTALLED),
            (d.is_missing, IS_MISSING),
            (d.is_removed, IS_REMOVED),
        ] {
            if on {
                flags |= bit;
            }
        }
        let entry = Entry {
            device_id: DeviceId::parse(&d.device_id),
            platform: self.intern(d.platform.as_deref()),
            os_version: self.intern(d.os_version.as_deref()),
            blueprint_name: self.intern(d.blueprint_name.as_deref()),
            user_email: d.user_email.as_deref().map(Into::into),
            last_check_in: d.last_check_in,
            last_seen: d.last_seen,
            flags,
            sweep: self.sweep,
        };
        match self.map.get_mut(d.serial_key.as_str()) {
            Some(old) => {
                let changed = !old.same_as(&entry);
                *old = entry;
                changed
            }
            None => {
                self.map.insert(d.serial_key.as_str().into(), entry);
                true
            }
        }
    }

    /// Drops the devices the current sync did not see (Kandji no longer lists them); returns
    /// their serial keys.
    pub fn remove_unseen(&mut self) -> Vec<String> {
        let sweep = self.sweep;
        let gone: Vec<String> = self
            .map
            .iter()
            .filter(|(_, e)| e.sweep != sweep)
            .map(|(k, _)| k.to_string())
            .collect();
        for k in &gone {
            self.map.remove(k.as_str());
        }
        // Give memory back only when the tenant shrank a lot (rehashing costs a pass).
        if self.map.len() < self.map.capacity() / 2 {
            self.map.shrink_to_fit();
        }
        // Forget strings no entry uses any more (only this set holds them then).
        self.strings.retain(|s| Arc::strong_count(s) > 1);
        gone
    }

    /// Heap bytes the index holds (an estimate from capacities and allocation sizes).
    pub fn approx_bytes(&self) -> usize {
        // hashbrown: one control byte per bucket; capacity() is ~7/8 of the buckets.
        let buckets = |cap: usize| cap * 8 / 7 + 1;
        let alloc = |len: usize| len.div_ceil(16).max(1) * 16;
        let table = buckets(self.map.capacity()) * (size_of::<(Box<str>, Entry)>() + 1);
        let keys: usize = self.map.keys().map(|k| alloc(k.len())).sum();
        let ids: usize = self
            .map
            .values()
            .map(|e| match &e.device_id {
                DeviceId::Other(s) => alloc(s.len()),
                DeviceId::Uuid(_) => 0,
            })
            .sum();
        let strings = buckets(self.strings.capacity()) * (size_of::<Arc<str>>() + 1)
            + self
                .strings
                .iter()
                .map(|s| alloc(s.len() + 2 * size_of::<usize>()))
                .sum::<usize>();
        table + keys + ids + strings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(serial: &str, os: &str) -> InventoryDevice {
        InventoryDevice {
            serial_key: serial.to_string(),
            device_id: "6f1c3a7e-2d4b-4c1e-9a8f-0b1c2d3e4f50".into(),
            platform: Some("Mac".into()),
            os_version: Some(os.into()),
            blueprint_name: Some("All Staff".into()),
            user_email: Some(String::new()),
            last_check_in: None,
            mdm_enabled: true,
            agent_installed: true,
            is_missing: false,
            is_removed: false,
            last_seen: Utc::now(),
        }
    }

    #[test]
    fn serial_numbers_compare_without_case_and_refuse_odd_input() {
        let s = SerialNumber::parse(" c02xk1zzjgh5 ").unwrap();
        assert_eq!(s.key(), "C02XK1ZZJGH5");
        assert_eq!(s.as_str(), "c02xk1zzjgh5");
        for bad in ["", "   ", "a b", "x\u{7}", &"A".repeat(65), "é"] {
            assert!(SerialNumber::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn upsert_reports_changes_and_a_sync_drops_what_it_did_not_see() {
        let mut idx = Index::default();
        idx.begin_sweep();
        assert!(idx.upsert(&device("AAA", "14.1")));
        assert!(idx.upsert(&device("BBB", "14.1")));
        idx.begin_sweep();
        let mut later = device("AAA", "14.1");
        later.last_seen += chrono::Duration::seconds(60);
        assert!(!idx.upsert(&later), "only last_seen changed");
        assert!(idx.upsert(&device("AAA", "14.2")));
        assert_eq!(idx.remove_unseen(), vec!["BBB".to_string()]);
        let e = idx.get(&SerialNumber::parse("aaa").unwrap()).unwrap();
        assert_eq!(
            e.to_device("AAA"),
            device("AAA", "14.2").with_seen(e.last_seen)
        );
        assert!(idx.get(&SerialNumber::parse("BBB").unwrap()).is_none());
        assert_eq!(idx.strings.len(), 3, "14.1 is no longer used");
    }

    impl InventoryDevice {
        fn with_seen(mut self, at: DateTime<Utc>) -> Self {
            self.last_seen = at;
            self
        }
    }
}
