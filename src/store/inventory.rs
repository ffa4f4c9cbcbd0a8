//! Types of the device inventory kept for device-trust lookups (see `src/trust/`).

use chrono::{DateTime, Utc};

/// One device as the inventory keeps it: what a device-trust answer needs, nothing more.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InventoryDevice {
    /// The serial number, upper-cased (lookups are case-insensitive).
    pub serial_key: String,
    pub device_id: String,
    pub platform: Option<String>,
    pub os_version: Option<String>,
    pub blueprint_name: Option<String>,
    pub last_check_in: Option<DateTime<Utc>>,
    pub mdm_enabled: bool,
    pub agent_installed: bool,
    pub is_missing: bool,
    pub is_removed: bool,
    /// When the connector last read this device from Kandji (as stored: when the row changed).
    pub last_seen: DateTime<Utc>,
}

/// A completed sync of a connection's inventory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InventorySync {
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub devices: u64,
    pub kandji_calls: u64,
}
