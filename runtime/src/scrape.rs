//! The client side of [`crate::http`]: one `GET` on a service's operator endpoint (`/healthz`,
//! `/metrics`), for tests, the demo and the benchmark. HTTP/1.0 by hand over a TCP stream, since
//! the endpoint is local and this is all it needs; every call is bounded by a short timeout, so a
//! wedged service fails a check instead of hanging it.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long sending the request and reading the whole answer may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a scrape failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScrapeError {
    /// Nothing accepted the connection (a service just started may not listen yet).
    #[error("connecting to {addr}: {source}")]
    Connect {
        /// The endpoint.
        addr: SocketAddr,
        /// What the socket said.
        source: std::io::Error,
    },
    /// The connection broke while asking or reading.
    #[error("reading from {addr}: {source}")]
    Io {
        /// The endpoint.
        addr: SocketAddr,
        /// What the socket said.
        source: std::io::Error,
    },
    /// No connection or no whole answer in time.
    #[error("{addr} did not answer in time")]
    Timeout {
        /// The endpoint.
        addr: SocketAddr,
    },
    /// The answer has no HTTP status line.
    #[error("{addr} answered without an HTTP status line")]
    Malformed {
        /// The endpoint.
        addr: SocketAddr,
    },
}

impl ScrapeError {
    /// Whether the connection was refused: nothing listens (yet) at the address.
    pub fn is_refused(&self) -> bool {
        matches!(self, Self::Connect { source, .. }
            if source.kind() == std::io::ErrorKind::ConnectionRefused)
    }
}

/// An answer: its status code and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// Everything after the headers.
    pub body: String,
}

/// `GET path` at `addr`.
pub async fn get(addr: SocketAddr, path: &str) -> Result<Response, ScrapeError> {
    let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| ScrapeError::Timeout { addr })?
        .map_err(|source| ScrapeError::Connect { addr, source })?;
    let exchange = async {
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
            .await?;
        let mut raw = String::new();
        stream.read_to_string(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    let raw = tokio::time::timeout(EXCHANGE_TIMEOUT, exchange)
        .await
        .map_err(|_| ScrapeError::Timeout { addr })?
        .map_err(|source| ScrapeError::Io { addr, source })?;
    parse(&raw).ok_or(ScrapeError::Malformed { addr })
}

/// The status line's code and the body of a raw HTTP answer.
fn parse(raw: &str) -> Option<Response> {
    let status = raw
        .lines()
        .next()
        .filter(|l| l.starts_with("HTTP/"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let body = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Some(Response {
        status,
        body: body.to_string(),
    })
}

/// The value of one sample of `/metrics` at `addr` (`name{labels}` exactly as exposed), 0 if the
/// service does not expose it (yet): counters that never moved are absent.
pub async fn metric(addr: SocketAddr, sample: &str) -> Result<f64, ScrapeError> {
    Ok(sample_value(&get(addr, "/metrics").await?.body, sample).unwrap_or(0.0))
}

/// The lines of `/metrics` at `addr` that start with `prefix` (for diagnostics).
pub async fn samples(addr: SocketAddr, prefix: &str) -> Result<Vec<String>, ScrapeError> {
    Ok(get(addr, "/metrics")
        .await?
        .body
        .lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_string)
        .collect())
}

/// Whether `/healthz` at `addr` answers 200 (the service is ready).
pub async fn healthy(addr: SocketAddr) -> bool {
    get(addr, "/healthz").await.is_ok_and(|r| r.status == 200)
}

/// The value of `sample` in a Prometheus text exposition.
fn sample_value(text: &str, sample: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(sample).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_split_into_status_and_body() {
        let r = parse("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 9\r\n\r\nstarting\n");
        assert_eq!(
            r,
            Some(Response {
                status: 503,
                body: "starting\n".into()
            })
        );
        assert_eq!(parse("garbage\r\n\r\n"), None);
    }

    #[test]
    fn a_sample_is_found_by_its_exact_name_and_labels() {
        let text = "# HELP x_total X.\nx_total{reason=\"a\"} 2\nx_total{reason=\"ab\"} 5\ny 1.5\n";
        assert_eq!(sample_value(text, "x_total{reason=\"a\"}"), Some(2.0));
        assert_eq!(sample_value(text, "x_total{reason=\"ab\"}"), Some(5.0));
        assert_eq!(sample_value(text, "y"), Some(1.5));
        assert_eq!(sample_value(text, "x_total"), None);
    }
}
