//! MQTT clients with persistent sessions and reconnect backoff with jitter.

use std::time::Duration;

use rand_core::RngCore;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions};

use serde::{Deserialize, Serialize};

/// MQTT connection settings.
#[derive(Clone, Serialize, Deserialize)]
pub struct MqttConfig {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// User name (devices: `{twin}/{device}`).
    pub username: String,
    /// Password; never printed.
    #[serde(default)]
    pub password: String,
    /// Client id; a persistent session is keyed by it.
    pub client_id: String,
    /// Keep-alive in seconds.
    pub keep_alive_s: u64,
    /// The CA (PEM file) of the broker's TLS listener: set, the client connects over TLS and
    /// checks the broker's certificate against it (`port` is then the TLS listener's).
    #[serde(default)]
    pub ca_file: Option<String>,
}

impl std::fmt::Debug for MqttConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("client_id", &self.client_id)
            .field("keep_alive_s", &self.keep_alive_s)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// The largest MQTT packet, in either direction: a delivery (an envelope of at most 256 KiB plus
/// its capsule, `armored_schemas::limits::MAX_DELIVERY_BYTES`) wrapped in a `Downlink`, with the
/// packet's topic and header. mosquitto's `max_packet_size` is this same value
/// (infra/mosquitto.conf.in): the broker refuses a bigger publish from any client (it disconnects
/// that client), so whatever it accepts fits every receiver. With a broker limit above a client's,
/// one oversized uplink made the bridge drop its connection, and mosquitto sent it again on every
/// reconnect.
pub const MAX_PACKET_BYTES: usize = 264 * 1024;

/// Why the MQTT client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The CA file could not be read.
    #[error("reading the MQTT CA file {0}: {1}")]
    CaFile(String, #[source] std::io::Error),
    /// The CA file holds no usable certificate.
    #[error("the MQTT CA file {0} holds no usable certificate")]
    NoCertificate(String),
    /// rustls refused the configuration.
    #[error("TLS set-up: {0}")]
    Tls(#[from] rustls::Error),
}

/// Options for a persistent-session client (clean session off, so QoS 1 messages wait for it),
/// over TLS when `cfg.ca_file` is set.
pub fn options(cfg: &MqttConfig, manual_acks: bool) -> Result<MqttOptions, SetupError> {
    let mut o = MqttOptions::new(&cfg.client_id, &cfg.host, cfg.port);
    o.set_keep_alive(Duration::from_secs(cfg.keep_alive_s.max(5)))
        .set_clean_session(false)
        .set_credentials(&cfg.username, &cfg.password)
        .set_manual_acks(manual_acks)
        .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES)
        .set_inflight(100);
    if let Some(ca) = &cfg.ca_file {
        o.set_transport(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(std::sync::Arc::new(tls_config(ca)?)),
        ));
    }
    Ok(o)
}

/// A rustls client that trusts only the CA in `ca_file` (the broker's certificate must name the
/// host the client dials: infra/'s names 127.0.0.1 and localhost).
fn tls_config(ca_file: &str) -> Result<rustls::ClientConfig, SetupError> {
    let pem = std::fs::read(ca_file).map_err(|e| SetupError::CaFile(ca_file.into(), e))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|e| SetupError::CaFile(ca_file.into(), e))?;
        roots.add(cert)?;
    }
    if roots.is_empty() {
        return Err(SetupError::NoCertificate(ca_file.into()));
    }
    // ring: rustls marks it deprecated for lacking post-quantum key exchange, which its
    // alternative (aws-lc-rs) has at the price of a C build with cmake on every fresh machine.
    #[allow(deprecated)]
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Connects (lazily: the event loop connects on its first poll).
pub fn connect(
    cfg: &MqttConfig,
    manual_acks: bool,
    capacity: usize,
) -> Result<(AsyncClient, EventLoop), SetupError> {
    Ok(AsyncClient::new(options(cfg, manual_acks)?, capacity))
}

/// Exponential backoff with full jitter: 100 ms · 2^attempt, capped at 10 s.
#[derive(Debug, Default)]
pub struct Backoff {
    attempt: u32,
}

impl Backoff {
    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        let cap = 100u64.saturating_mul(1 << self.attempt.min(7)).min(10_000);
        self.attempt = self.attempt.saturating_add(1);
        let jitter = rand_core::OsRng.next_u64() % (cap + 1);
        Duration::from_millis(cap / 2 + jitter / 2)
    }
    /// Resets after a successful connection.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// The connection failed (or could not be made); the event loop reconnects on its next poll.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct PollError(#[from] pub rumqttc::ConnectionError);

/// Polls the event loop once, sleeping with backoff after a connection error.
/// Returns `Ok(event)`, or the connection error after the backoff sleep.
pub async fn poll(eventloop: &mut EventLoop, backoff: &mut Backoff) -> Result<Event, PollError> {
    match eventloop.poll().await {
        Ok(ev) => {
            if matches!(ev, Event::Incoming(rumqttc::Packet::ConnAck(_))) {
                backoff.reset();
            }
            Ok(ev)
        }
        Err(e) => {
            let d = backoff.next_delay();
            tokio::time::sleep(d).await;
            Err(PollError(e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_resets() {
        let mut b = Backoff::default();
        let first = b.next_delay();
        assert!(first <= Duration::from_millis(100));
        for _ in 0..20 {
            assert!(b.next_delay() <= Duration::from_secs(10));
        }
        assert!(
            b.next_delay() >= Duration::from_secs(5),
            "capped at 10 s, at least half of it"
        );
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
