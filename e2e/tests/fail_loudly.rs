//! Failures that used to go unnoticed (the hardening issue, item 9), on the real broker.
//!
//! A record handler that panics ended its partition's lane, and the group consumer then waited for
//! ever with the service's `/healthz` still saying ready. Now the pipeline stops with
//! `HandlerPanicked` (the service exits and is restarted; the record was not committed).

use std::sync::Arc;
use std::time::Duration;

use armored_e2e::{rand_id, Env};
use armored_runtime::kafka::send;
use armored_runtime::pipeline::{run_group, GroupMetrics, GroupSpec, Handler, PipelineError};
use futures::FutureExt;
use prometheus::{IntCounter, IntGauge};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_record_handler_stops_the_pipeline_with_an_error() -> anyhow::Result<()> {
    let env = Env::new().await?;
    let ctl = env.bridge_ctl()?;
    let topic = env.topics.sync();
    for payload in [b"fine".as_slice(), b"boom", b"fine"] {
        send(&ctl.producer, &topic, b"k", payload)
            .await
            .map_err(anyhow::Error::msg)?;
    }
    let handler: Handler = Arc::new(|m| {
        async move {
            assert_ne!(m.payload, b"boom", "a handler bug");
            Vec::new()
        }
        .boxed()
    });
    let spec = GroupSpec {
        group: rand_id("panic"),
        topics: vec![topic],
        queue_depth: 16,
        drain_timeout: Duration::from_secs(2),
    };
    let metrics = GroupMetrics {
        lag: IntGauge::new("lag", "lag")?,
        consumer_restarts: IntCounter::new("restarts", "restarts")?,
    };
    let run = run_group(
        &env.kafka,
        spec,
        metrics,
        handler,
        env.shutdown.child_token(),
    );
    let r = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .map_err(|_| anyhow::anyhow!("the pipeline still runs 60 s after its handler panicked"))?;
    assert!(
        matches!(r, Err(PipelineError::HandlerPanicked { .. })),
        "stopped with {r:?}"
    );
    Ok(())
}
