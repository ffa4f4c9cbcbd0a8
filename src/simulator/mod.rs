//! TEMPORARY stub until the simulator branch lands.
pub struct SimConfig {
    pub devices: usize,
    pub token: String,
    pub seed: u64,
    pub next_link_host: Option<String>,
}
impl Default for SimConfig {
    fn default() -> Self {
        Self {
            devices: 50,
            token: String::new(),
            seed: 42,
            next_link_host: None,
        }
    }
}
pub struct Device {
    pub device_id: String,
}
pub struct Tenant {
    pub devices: Vec<Device>,
}
#[derive(Clone)]
pub struct SimHandle;
impl SimHandle {
    pub fn base_url(&self) -> String {
        todo!()
    }
    pub fn token(&self) -> String {
        todo!()
    }
    pub fn tenant(&self) -> std::sync::MutexGuard<'_, Tenant> {
        todo!()
    }
}
pub async fn start(_l: tokio::net::TcpListener, _c: SimConfig) -> SimHandle {
    todo!()
}
pub async fn run_standalone(_l: std::net::SocketAddr, _c: SimConfig) -> anyhow::Result<()> {
    todo!()
}
