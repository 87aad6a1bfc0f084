//! Device → cloud: MQTT `at/v1/up/{twin}/{device}` → checks → `at.sync.v1`. The device's PUBACK is
//! sent only after Kafka acknowledged the write (or the dead letter), so nothing is lost between.
//!
//! The event loop only polls and dispatches: each publish goes to its device's lane
//! ([`crate::lanes`]), which checks it, enqueues its record and leaves the wait for Kafka's
//! acknowledgement (then the PUBACK) to a task of its own.
//!
//! PUBACKs therefore leave in the order Kafka acknowledges, not the order the publishes came in (as
//! they did before the lanes: acknowledgements of different partitions complete in any order).
//! MQTT 3.1.1 and 5 (section 4.6, [MQTT-4.6.0-2]) do ask a client to send PUBACKs in the order it
//! received the publishes, but nothing here depends on it: rumqttc (0.25, `AsyncClient::ack`)
//! sends a PUBACK for the packet id it is given and keeps no state about incoming QoS 1 publishes,
//! and mosquitto removes the acknowledged packet id from the session's in-flight list, whatever its
//! position. A publish is acknowledged only once its record (or dead letter) is in Kafka, and one
//! never acknowledged is sent again on reconnection (persistent session): at least once, as before.

use std::sync::Arc;
use std::time::{Duration, Instant};

use armored_base::mqtt::{self, Backoff};
use armored_base::time::now_ms;
use armored_base::Shutdown;
use armored_crypto::replay::ReplayGuard;
use armored_crypto::KeyId;
use armored_runtime::dlq::Source;
use armored_runtime::follower::Follower;
use armored_runtime::http::Health;
use armored_runtime::kafka::{enqueue, Ack, AckError};
use futures::future::{BoxFuture, FutureExt, Shared};
use rdkafka::message::{Header, OwnedHeaders};
use rumqttc::{AsyncClient, Event, Packet, Publish, QoS, SubscribeReasonCode};
use std::collections::HashMap;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::checks::{check_uplink, Limits, Reject};
use crate::lanes::Lanes;
use crate::{Ctx, Poisoned};

/// A publish on its way through a lane, with its share of `max_in_flight`.
struct Job {
    publish: Publish,
    permit: OwnedSemaphorePermit,
}

/// Runs the uplink until `shutdown`; marks the bridge ready (`health`) once the broker has
/// acknowledged its subscription, so that no publish made after `/healthz` says ready is missed.
pub(crate) async fn run(
    ctx: Ctx,
    registry: Follower,
    health: Health,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let mcfg = crate::connection(&ctx.cfg.mqtt, "up");
    let (client, mut eventloop) = mqtt::connect(&mcfg, true, 1024)?;
    let filters = crate::uplink_filters(&ctx.cfg.ingest.shared_group);
    for f in &filters {
        client.subscribe(f, QoS::AtLeastOnce).await?;
    }
    let max_in_flight = ctx.cfg.ingest.max_in_flight;
    let permits = Arc::new(Semaphore::new(max_in_flight));
    let limits = Limits {
        max_bytes: ctx.cfg.ingest.max_envelope_bytes,
        skew_ms: ctx.cfg.ingest.skew_ms,
    };
    // Every queued job holds one of the `max_in_flight` permits, so a lane's queue (that long)
    // is never full and dispatching never waits on a lane: the loop waits only for a permit, when
    // `max_in_flight` publishes are unfinished, which is back-pressure on the whole bridge (Kafka
    // is slow), as before the lanes. mosquitto sends the bridge at most `max_inflight_messages`
    // unacknowledged publishes (1024 in infra/, equal to `max_in_flight`), whichever devices they
    // come from: one device whose lane drains slowly can still hold every permit (no per-lane cap
    // yet; the hardening issue). Memory stays bounded by `max_in_flight` publishes; the queues
    // allocate as they fill.
    let (lanes, workers) = Lanes::start(max_in_flight, |jobs| {
        lane(
            ctx.clone(),
            registry.clone(),
            limits,
            client.clone(),
            jobs,
            shutdown.clone(),
        )
    });
    let mut backoff = Backoff::default();
    loop {
        let ev = tokio::select! {
            _ = shutdown.cancelled() => break,
            ev = mqtt::poll(&mut eventloop, &mut backoff) => ev,
        };
        match ev {
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                let permit = permits.clone().acquire_owned().await?;
                let topic = publish.topic.clone();
                lanes.dispatch(&topic, Job { publish, permit }).await?;
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                if ack
                    .return_codes
                    .iter()
                    .all(|c| *c != SubscribeReasonCode::Failure)
                {
                    health.set(true);
                } else {
                    tracing::error!(?ack, "the broker refused the uplink's subscription (ACL?)");
                }
            }
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                tracing::info!("uplink connected to MQTT");
                // Re-subscribing is harmless with a persistent session and needed after a broker
                // restart without persistence. Queued off this loop: the request queue may be full
                // of PUBACKs that only this loop's polling drains.
                let (c, filters) = (client.clone(), filters.clone());
                tokio::spawn(async move {
                    for filter in &filters {
                        if let Err(e) = c.subscribe(filter, QoS::AtLeastOnce).await {
                            tracing::warn!(error = %e, filter, "uplink subscription not queued");
                        }
                    }
                });
            }
            Ok(_) => {}
            Err(e) => {
                ctx.metrics.mqtt_reconnects.with_label_values(&["up"]).inc();
                tracing::warn!(error = %e, "uplink MQTT connection error; retrying");
            }
        }
    }
    // The lanes stop at shutdown; what they had queued is dropped unacknowledged (the broker sends
    // it again). Let in-flight writes finish (and their PUBACKs go out) before disconnecting.
    drop(lanes);
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        for w in workers {
            let _ = w.await;
        }
        permits.acquire_many(max_in_flight as u32).await
    })
    .await;
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while eventloop.poll().await.is_ok() {}
    })
    .await;
    Ok(())
}

/// One lane: handles its publishes one at a time, in order; the wait for Kafka's acknowledgement
/// and the PUBACK run in a task per publish, so the next publish does not wait for them.
async fn lane(
    ctx: Ctx,
    registry: Follower,
    limits: Limits,
    client: AsyncClient,
    mut jobs: mpsc::Receiver<Job>,
    shutdown: Shutdown,
) {
    // A device's publishes all come through this lane, so its (twin, writer) window lives here.
    let mut guard = ReplayGuard::new();
    let mut settling = Settling::default();
    loop {
        let Job { publish, permit } = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            job = jobs.recv() => match job {
                Some(job) => job,
                None => break,
            },
        };
        let ack = if publish.retain {
            // Only a retained message given to a new subscription (a bridge that (re)started)
            // carries the flag; live ones arrive without it.
            ctx.metrics.messages_in.with_label_values(&["up"]).inc();
            Some(
                ctx.dlq
                    .refuse(&Reject::Retained, &source(&publish), &publish.payload)
                    .await,
            )
        } else if publish.topic.starts_with("at/v1/resp/") {
            crate::responses::handle(&ctx, &publish).await
        } else {
            handle(&ctx, &registry, &mut guard, &mut settling, limits, &publish).await
        };
        tokio::spawn(finish(
            client.clone(),
            publish,
            ack,
            permit,
            shutdown.clone(),
        ));
    }
}
/// Where a dead-lettered publish came from (an MQTT topic has no partition or offset).
fn source(p: &Publish) -> Source<'_> {
    Source {
        topic: &p.topic,
        partition: -1,
        offset: -1,
        key: p.topic.as_bytes(),
    }
}

/// Kafka writes of a lane's device not acknowledged yet, by (twin, writer, seq). A QoS 1 redelivery
/// of one of them (the device did not get our PUBACK in time and sent it again) is a duplicate for
/// the replay guard; it is acknowledged to the device only once the original's write is, never
/// before: a PUBACK for the copy while the original's write then failed would lose the change.
#[derive(Default)]
struct Settling(HashMap<(String, KeyId, u64), Write>);

/// A Kafka write's outcome, awaited by the original and by its copies.
type Write = Shared<BoxFuture<'static, Result<(), String>>>;

impl Settling {
    /// Tracks `ack`, the write of (twin, writer, seq); returns what acknowledges the original.
    fn track(&mut self, key: (String, KeyId, u64), ack: Ack) -> Ack {
        // Settled writes go: the map holds only what is in flight for this device.
        self.0.retain(|_, w| w.peek().is_none());
        let shared = ack.map(|r| r.map_err(|e| e.to_string())).boxed().shared();
        self.0.insert(key, shared.clone());
        settled(shared)
    }

    /// What acknowledges a copy of (twin, writer, seq): the original's write if it is still in
    /// flight, nothing otherwise (it was acknowledged: a failed write stops the bridge).
    fn copy_of(&self, key: &(String, KeyId, u64)) -> Option<Ack> {
        self.0
            .get(key)
            .filter(|w| w.peek().is_none())
            .map(|w| settled(w.clone()))
    }
}

/// The original write's outcome as an acknowledgement of its own.
fn settled(w: Write) -> Ack {
    async move { w.await.map_err(|e| AckError::service(WriteFailed(e))) }.boxed()
}

/// The original's Kafka write failed (its error, as text: a copy's acknowledgement shares it).
#[derive(Debug, thiserror::Error)]
#[error("the original's Kafka write failed: {0}")]
struct WriteFailed(String);

/// Checks one publish and enqueues its output (the record or a dead letter).
/// `None` means there is nothing to wait for (a duplicate).
async fn handle(
    ctx: &Ctx,
    registry: &Follower,
    guard: &mut ReplayGuard,
    settling: &mut Settling,
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
        let Ok(r) = ctx.registry.read() else {
            return Some(Poisoned::ack());
        };
        check_uplink(&p.topic, &p.payload, &r, now_ms(), limits)
    };
    if matches!(verdict, Err(Reject::UnknownDevice)) {
        // The enrollment may have been written just before the device's first message.
        if registry
            .synced_since(received, Duration::from_secs(2))
            .await
            .is_ok()
        {
            let Ok(r) = ctx.registry.read() else {
                return Some(Poisoned::ack());
            };
            verdict = check_uplink(&p.topic, &p.payload, &r, now_ms(), limits);
        }
    }
    match verdict {
        Err(reject) => Some(ctx.dlq.refuse(&reject, &source(p), &p.payload).await),
        Ok(acc) => {
            let writer = KeyId::from_slice(&acc.writer_key_id, "writer_key_id").ok()?;
            let key = (acc.twin_id.clone(), writer, acc.seq);
            if guard.check(&acc.twin_id, writer, acc.seq).is_err() {
                m.duplicates.inc();
                return settling.copy_of(&key);
            }
            let ingest_ms = now_ms().to_string();
            let headers = OwnedHeaders::new().insert(Header {
                key: armored_runtime::latency::INGEST_MS_HEADER,
                value: Some(&ingest_ms),
            });
            m.messages_out.with_label_values(&["up"]).inc();
            let ack = enqueue(
                &ctx.producer,
                &ctx.topics.sync(),
                acc.twin_id.as_bytes(),
                &p.payload,
                Some(headers),
            )
            .await;
            Some(settling.track(key, ack))
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
    permit: OwnedSemaphorePermit,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> (String, KeyId, u64) {
        ("twin".into(), KeyId::derive(b"test", b"writer"), 7)
    }

    #[tokio::test]
    async fn a_copy_is_acknowledged_only_when_the_original_write_is() {
        let mut s = Settling::default();
        let (done, write) = tokio::sync::oneshot::channel::<Result<(), AckError>>();
        let original = s.track(
            key(),
            async move { write.await.unwrap_or(Err(AckError::NotHandled)) }.boxed(),
        );
        let mut copy = s.copy_of(&key()).expect("the original is in flight");
        // The copy waits for the original's write…
        assert!(
            tokio::time::timeout(Duration::from_millis(50), &mut copy)
                .await
                .is_err(),
            "acknowledged before the original's write"
        );
        let _ = done.send(Ok(()));
        // …and both settle with it.
        assert!(copy.await.is_ok());
        assert!(original.await.is_ok());
        // Settled: a later copy is acknowledged at once.
        assert!(s.copy_of(&key()).is_none());
    }

    #[tokio::test]
    async fn a_copy_of_a_failed_write_is_not_acknowledged() {
        let mut s = Settling::default();
        let (done, write) = tokio::sync::oneshot::channel::<Result<(), AckError>>();
        let _original = s.track(
            key(),
            async move { write.await.unwrap_or(Err(AckError::NotHandled)) }.boxed(),
        );
        let copy = s.copy_of(&key()).expect("in flight");
        let _ = done.send(Err(AckError::NotHandled));
        assert!(copy.await.is_err());
    }
}
