//! Layered configuration (DESIGN, "Configuration"): built-in defaults, then a file (`--config` or
//! `AT_CONFIG`), then the environment (`AT__KAFKA__BROKERS=…`, double underscores between levels).

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Why a configuration could not be loaded or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A source could not be read or a value has the wrong type.
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    /// A configuration has no TOML form (e.g. a `None` field: TOML has no null).
    #[error("configuration as TOML: {0}")]
    Toml(#[from] toml::ser::Error),
    /// The file could not be written.
    #[error("writing configuration {path}: {source}")]
    Write {
        /// The file.
        path: std::path::PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
}

/// Loads `T` from `defaults` (TOML text), an optional file (any format the `config` crate knows,
/// chosen by extension), then environment variables with prefix `AT__`.
pub fn load<T: DeserializeOwned>(defaults: &str, file: Option<&Path>) -> Result<T, ConfigError> {
    let mut b = config::Config::builder()
        .add_source(config::File::from_str(defaults, config::FileFormat::Toml));
    let env_file = std::env::var_os("AT_CONFIG");
    if let Some(path) = file.map(Path::to_path_buf).or(env_file.map(Into::into)) {
        b = b.add_source(config::File::from(path).required(true));
    }
    b = b.add_source(
        config::Environment::with_prefix("AT")
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true),
    );
    Ok(b.build()?.try_deserialize()?)
}

/// `T` from `defaults` (TOML text) alone, without a file or the environment: the starting point of
/// a configuration that a tool or a test fills in and hands to a service ([`write_toml`]).
pub fn from_defaults<T: DeserializeOwned>(defaults: &str) -> Result<T, ConfigError> {
    Ok(config::Config::builder()
        .add_source(config::File::from_str(defaults, config::FileFormat::Toml))
        .build()?
        .try_deserialize()?)
}

/// Writes `cfg` as a TOML file a service reads with `--config` / `AT_CONFIG`: a service's own
/// `Config` serialised, so the file always has the fields and names the service expects. Only the
/// owner may read it (it may hold a password).
pub fn write_toml<T: Serialize>(cfg: &T, path: &Path) -> Result<(), ConfigError> {
    let text = toml::to_string(cfg)?;
    let err = |source| ConfigError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut file = owner_only(path).map_err(err)?;
    std::io::Write::write_all(&mut file, text.as_bytes()).map_err(err)
}

#[cfg(unix)]
fn owner_only(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // An existing file keeps its mode on open: narrow it too.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

#[cfg(not(unix))]
fn owner_only(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::File::create(path)
}

/// Kafka settings every service shares.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KafkaConfig {
    /// Bootstrap servers, e.g. `127.0.0.1:9092`.
    pub brokers: String,
    /// Prepended to every topic name (tests isolate themselves with a random prefix).
    #[serde(default)]
    pub topic_prefix: String,
    /// Consumer group session timeout; tests use a short one so a killed member is noticed fast.
    pub session_timeout_ms: u32,
    /// Producer batching delay: 0 on latency-sensitive paths (DESIGN measured 3.5 ms vs 252 ms).
    pub linger_ms: u32,
    /// Consumer fetch wait.
    pub fetch_wait_max_ms: u32,
    /// How long to wait for the broker at start before failing with a clear message.
    pub connect_timeout_ms: u64,
    /// Sign-in over TLS (SASL_SSL); `None` talks plaintext, to a broker without security (the
    /// brokers of infra/ refuse that).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl: Option<KafkaSasl>,
}

/// A Kafka principal's credentials and the CA its brokers' certificates chain to.
#[derive(Clone, Serialize, Deserialize, zeroize::ZeroizeOnDrop)]
pub struct KafkaSasl {
    /// `SCRAM-SHA-256` (every service and tool) or `PLAIN` (infra/'s super user `at-kafka`).
    #[serde(default = "scram")]
    #[zeroize(skip)]
    pub mechanism: String,
    /// The principal (`User:<username>` in the broker's ACLs, infra/kafka-acls.tsv).
    #[zeroize(skip)]
    pub username: String,
    /// Its password (redacted when a configuration is printed).
    pub password: String,
    /// PEM file of the CA that signed the brokers' certificates (infra/: `$AT_KAFKA_CA`).
    #[zeroize(skip)]
    pub ca_file: String,
}

fn scram() -> String {
    "SCRAM-SHA-256".into()
}

impl std::fmt::Debug for KafkaSasl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSasl")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// A principal of the local brokers of infra/ could not be signed in as.
#[derive(Debug, thiserror::Error)]
#[error("Kafka principal {principal}: cannot read {path} ({source}); run infra/start.sh, or set [kafka.sasl]")]
pub struct LocalPrincipalError {
    /// The principal asked for.
    pub principal: String,
    /// The file that could not be read.
    pub path: std::path::PathBuf,
    /// Why.
    pub source: std::io::Error,
}

impl KafkaConfig {
    /// This configuration signed in as `principal` of the local brokers that infra/start.sh runs:
    /// its password from `$AT_SECRETS_DIR/kafka-<principal>.password`, the CA `$AT_KAFKA_CA`
    /// (infra/env.sh; both default to the default state dir). `at-kafka` is the super user (PLAIN).
    pub fn as_local_principal(&self, principal: &str) -> Result<Self, LocalPrincipalError> {
        let state = std::env::var_os("AT_STATE_DIR")
            .map(std::path::PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/armoredtwins/run"))
            })
            .unwrap_or_else(|| "armoredtwins-run".into());
        let secrets = std::env::var_os("AT_SECRETS_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| state.join("secrets"));
        let ca = std::env::var_os("AT_KAFKA_CA")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| state.join("mosquitto/tls/ca.crt"));
        let path = secrets.join(format!("kafka-{principal}.password"));
        let password = std::fs::read_to_string(&path)
            .and_then(|p| {
                let p = p.trim().to_string();
                if p.is_empty() {
                    Err(std::io::Error::other("empty"))
                } else {
                    Ok(p)
                }
            })
            .map_err(|source| LocalPrincipalError {
                principal: principal.into(),
                path: path.clone(),
                source,
            })?;
        let mechanism = if principal == "at-kafka" {
            "PLAIN".into()
        } else {
            scram()
        };
        Ok(Self {
            sasl: Some(KafkaSasl {
                mechanism,
                username: principal.into(),
                password,
                ca_file: ca.display().to_string(),
            }),
            ..self.clone()
        })
    }

    /// For a binary's start: the configured sign-in, or else `principal` of the local brokers
    /// when infra/ has its password, or else plaintext (which infra/'s brokers refuse with a
    /// clear error at the first connection).
    pub fn or_local_principal(self, principal: &str) -> Self {
        if self.sasl.is_some() {
            return self;
        }
        self.as_local_principal(principal).unwrap_or(self)
    }
}

/// The `[kafka]` defaults, in TOML, for services to splice into their own defaults.
pub const KAFKA_DEFAULTS: &str = r#"
[kafka]
brokers = "127.0.0.1:9092"
topic_prefix = ""
session_timeout_ms = 10000
linger_ms = 1
fetch_wait_max_ms = 10
connect_timeout_ms = 10000
"#;

/// The effective configuration as one line of JSON with secrets redacted, for the start-up log.
pub fn redacted_json<T: Serialize>(cfg: &T) -> String {
    let mut v = serde_json::to_value(cfg).unwrap_or(serde_json::Value::Null);
    redact(&mut v);
    v.to_string()
}

fn redact(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, val) in m.iter_mut() {
                if k.contains("password") || k.contains("secret") {
                    *val = serde_json::Value::String("<redacted>".into());
                } else {
                    redact(val);
                }
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(redact),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, Serialize)]
    struct T {
        kafka: KafkaConfig,
        mqtt_password: String,
    }

    #[test]
    fn layers_defaults_file_env() {
        let dir = std::env::temp_dir().join(format!("at-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(&file, "[kafka]\nlinger_ms = 7\n").unwrap();
        let defaults = format!("mqtt_password = \"x\"\n{KAFKA_DEFAULTS}");
        std::env::set_var("AT__KAFKA__FETCH_WAIT_MAX_MS", "3");
        let t: T = load(&defaults, Some(&file)).unwrap();
        std::env::remove_var("AT__KAFKA__FETCH_WAIT_MAX_MS");
        assert_eq!(t.kafka.linger_ms, 7, "file overrides defaults");
        assert_eq!(t.kafka.fetch_wait_max_ms, 3, "environment overrides file");
        assert_eq!(t.kafka.session_timeout_ms, 10000, "defaults fill the rest");
        let shown = redacted_json(&t);
        assert!(shown.contains("<redacted>") && !shown.contains("\"x\""));
    }

    #[test]
    fn a_written_configuration_loads_back_as_written() {
        let dir = std::env::temp_dir().join(format!("at-cfg-w-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        let mut t: T = from_defaults(&format!("mqtt_password = \"x\"\n{KAFKA_DEFAULTS}")).unwrap();
        t.kafka.topic_prefix = "p \"quoted\".".into();
        t.kafka.linger_ms = 9;
        write_toml(&t, &file).unwrap();
        let back: T = load(KAFKA_DEFAULTS, Some(&file)).unwrap();
        assert_eq!(back.kafka.topic_prefix, t.kafka.topic_prefix);
        assert_eq!(back.kafka.linger_ms, 9);
        assert_eq!(back.mqtt_password, "x");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_kafka_password_never_reaches_debug_or_the_start_up_log() {
        let mut t: T = from_defaults(&format!("mqtt_password = \"x\"\n{KAFKA_DEFAULTS}")).unwrap();
        t.kafka.sasl = Some(KafkaSasl {
            mechanism: scram(),
            username: "at-ingest".into(),
            password: "s3cret-kafka".into(),
            ca_file: "/ca.crt".into(),
        });
        let debug = format!("{:?}", t.kafka);
        assert!(
            debug.contains("at-ingest") && !debug.contains("s3cret-kafka"),
            "{debug}"
        );
        let shown = redacted_json(&t);
        assert!(
            shown.contains("at-ingest") && !shown.contains("s3cret-kafka"),
            "{shown}"
        );
    }

    #[test]
    fn missing_file_is_an_error() {
        let r: Result<T, _> = load(KAFKA_DEFAULTS, Some(Path::new("/nonexistent/at.toml")));
        assert!(r.is_err());
    }
}
