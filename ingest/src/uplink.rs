//! Device → cloud: MQTT `at/v1/up/{twin}/{device}` → checks → `at.sync.v1`. The device's PUBACK is
//! sent only after Kafka acknowledged the write (or the dead letter), so nothing is lost between.

use armored_schemas::Refusal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use armored_base::mqtt::{self, Backoff};
use armored_base::time::now_ms;
use armored_base::Shutdown;
use armored_crypto::replay::ReplayGuard;
use armored_crypto::KeyId;
use armored_runtime::dlq::Source;
use armored_runtime::follower::Follower;
use armored_runtime::kafka::{enqueue, Ack};
use rdkafka::message::{Header, OwnedHeaders};
use rumqttc::{AsyncClient, Event, Packet, Publish, QoS};
use tokio::sync::Semaphore;

use crate::checks::{check_uplink, Limits, Reject};
use crate::Ctx;

pub(crate) async fn run(ctx: Ctx, registry: Follower, shutdown: Shutdown) -> anyhow::Result<()> {
    let mut mcfg = ctx.cfg.mqtt.clone();
    mcfg.client_id = format!("{}-up", mcfg.client_id);
    let (client, mut eventloop) = mqtt::connect(&mcfg, true, 1024);
    client.subscribe("at/v1/up/+/+", QoS::AtLeastOnce).await?;
    client
        .subscribe(crate::responses::RESPONSE_FILTER, QoS::AtLeastOnce)
        .await?;
    let permits = Arc::new(Semaphore::new(ctx.cfg.ingest.max_in_flight));
    let mut guard = ReplayGuard::new();
    let mut backoff = Backoff::default();
    let limits = Limits {
        max_bytes: ctx.cfg.ingest.max_envelope_bytes,
        skew_ms: ctx.cfg.ingest.skew_ms,
    };
    loop {
        let ev = tokio::select! {
            _ = shutdown.cancelled() => break,
            ev = mqtt::poll(&mut eventloop, &mut backoff) => ev,
        };
        match ev {
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let permit = permits.clone().acquire_owned().await?;
                let ack = if p.topic.starts_with("at/v1/resp/") {
                    crate::responses::handle(&ctx, &p).await
                } else {
                    handle(&ctx, &registry, &mut guard, limits, &p).await
                };
                let client = client.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(finish(client, p, ack, permit, shutdown));
            }
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                tracing::info!("uplink connected to MQTT");
                // Re-subscribing is harmless with a persistent session and needed after a broker
                // restart without persistence.
                client.subscribe("at/v1/up/+/+", QoS::AtLeastOnce).await?;
                client
                    .subscribe(crate::responses::RESPONSE_FILTER, QoS::AtLeastOnce)
                    .await?;
            }
            Ok(_) => {}
            Err(e) => {
                ctx.metrics.mqtt_reconnects.with_label_values(&["up"]).inc();
                tracing::warn!(error = %e, "uplink MQTT connection error; retrying");
            }
        }
    }
    // Let in-flight writes finish (and their PUBACKs go out) before disconnecting.
    let _ = tokio::time::timeout(
        Duration::from_secs(10),
        permits.acquire_many(ctx.cfg.ingest.max_in_flight as u32),
    )
    .await;
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while eventloop.poll().await.is_ok() {}
    })
    .await;
    Ok(())
}

/// Checks one publish and enqueues its output (the record or a dead letter).
/// `None` means there is nothing to wait for (a duplicate).
async fn handle(
    ctx: &Ctx,
    registry: &Follower,
    guard: &mut ReplayGuard,
    limits: Limits,
    p: &Publish,
) -> Option<Ack> {
    let received = Instant::now();
    let m = &ctx.metrics;
    m.messages_in.with_label_values(&["up"]).inc();
    m.bytes_in
        .with_label_values(&["up"])
        .inc_by(p.payload.len() as u64);
    let mut verdict = {
        let r = ctx.registry.read().ok()?;
        check_uplink(&p.topic, &p.payload, &r, now_ms(), limits)
    };
    if matches!(verdict, Err(Reject::UnknownDevice)) {
        // The enrollment may have been written just before the device's first message.
        if registry
            .synced_since(received, Duration::from_secs(2))
            .await
            .is_ok()
        {
            let r = ctx.registry.read().ok()?;
            verdict = check_uplink(&p.topic, &p.payload, &r, now_ms(), limits);
        }
    }
    let src = Source {
        topic: &p.topic,
        partition: -1,
        offset: -1,
        key: p.topic.as_bytes(),
    };
    match verdict {
        Err(reject) => Some(
            ctx.dlq
                .send(reject.reason(), &reject.to_string(), &src, &p.payload)
                .await,
        ),
        Ok(acc) => {
            let writer = KeyId::from_slice(&acc.writer_key_id, "writer_key_id").ok()?;
            if guard.check(&acc.twin_id, writer, acc.seq).is_err() {
                m.duplicates.inc();
                return None;
            }
            let ingest_ms = now_ms().to_string();
            let headers = OwnedHeaders::new().insert(Header {
                key: "at-ingest-ms",
                value: Some(&ingest_ms),
            });
            m.messages_out.with_label_values(&["up"]).inc();
            Some(
                enqueue(
                    &ctx.producer,
                    &ctx.topics.sync(),
                    acc.twin_id.as_bytes(),
                    &p.payload,
                    Some(headers),
                )
                .await,
            )
        }
    }
}

/// Waits for Kafka's acknowledgement, then acknowledges the publish to the MQTT broker.
///
/// The permit (one of `max_in_flight`) is released once Kafka has the write, before the PUBACK is
/// queued: the PUBACK goes through the client's request channel, which only the uplink loop's
/// polling drains, so a task holding its permit while waiting for channel space would deadlock the
/// loop once every permit is held that way (seen here: a burst of 51 phones stopped the bridge
/// after ~2,200 publishes, and mosquitto then dropped it for a missed keep-alive).
async fn finish(
    client: AsyncClient,
    p: Publish,
    ack: Option<Ack>,
    permit: tokio::sync::OwnedSemaphorePermit,
    shutdown: Shutdown,
) {
    if let Some(ack) = ack {
        if let Err(e) = ack.await {
            // Not acknowledged to the device either: it will send again. Kafka refusing writes is
            // not something to carry on through.
            tracing::error!(error = %e, "Kafka did not acknowledge an uplink write; stopping");
            shutdown.cancel();
            return;
        }
    }
    drop(permit);
    if let Err(e) = client.ack(&p).await {
        tracing::warn!(error = %e, "PUBACK not sent; the device will redeliver");
    }
}
