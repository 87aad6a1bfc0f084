//! Cloud → device: deliveries for devices from `at.deliver.v1` to `at/v1/down/{twin}/{device}`
//! (QoS 1; the offset is stored only after the broker's PUBACK), and each twin's roster as a retained
//! message on its devices' downlink topics.
//!
//! The downlink topic carries the twin in it because a mosquitto ACL can only confine a device by
//! its user name `{twin}/{device}` (`%u`); `at/v1/down/{device}` would not be unique across twins.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use armored_base::mqtt::{self, Backoff};
use armored_base::Shutdown;
use armored_runtime::kafka::{failed, Ack, AckError};
use armored_runtime::latency;
use armored_runtime::pipeline::{run_group, GroupSpec, Handler, Inbound};
use armored_schemas::v1::{self, downlink::Message as Down};
use prost::Message;
use rumqttc::{AsyncClient, Event, Outgoing, Packet, QoS, SubscribeReasonCode};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::broker_stats::{self, BrokerStats};
use crate::Ctx;

/// Matches PUBACKs to publishes: rumqttc assigns packet ids as it sends, in request order.
#[derive(Default)]
struct Pubacks {
    queued: VecDeque<oneshot::Sender<()>>,
    by_pkid: HashMap<u16, oneshot::Sender<()>>,
}

#[derive(Clone)]
struct Publisher {
    client: AsyncClient,
    pubacks: Arc<Mutex<Pubacks>>,
    order: Arc<tokio::sync::Mutex<()>>,
}

impl Publisher {
    /// Publishes at QoS 1 and returns the broker's acknowledgement.
    async fn publish(&self, topic: String, retain: bool, payload: Vec<u8>) -> Ack {
        let (tx, rx) = oneshot::channel();
        // Hold the order lock so the queue order equals the request order.
        let _order = self.order.lock().await;
        if let Ok(mut p) = self.pubacks.lock() {
            p.queued.push_back(tx);
        }
        if let Err(e) = self
            .client
            .publish(topic, QoS::AtLeastOnce, retain, payload)
            .await
        {
            return failed(AckError::service(e));
        }
        Box::pin(async move {
            rx.await
                .map_err(|_| AckError::Unacknowledged("the MQTT broker"))
        })
    }
}

pub(crate) async fn start(
    ctx: Ctx,
    mut rosters: tokio::sync::mpsc::UnboundedReceiver<String>,
    shutdown: Shutdown,
) -> anyhow::Result<JoinHandle<anyhow::Result<()>>> {
    let mcfg = crate::connection(&ctx.cfg.mqtt, "down");
    let (client, mut eventloop) = mqtt::connect(&mcfg, false, 1024)?;
    let publisher = Publisher {
        client: client.clone(),
        pubacks: Arc::default(),
        order: Arc::default(),
    };
    let pubacks = publisher.pubacks.clone();
    let metrics = ctx.metrics.clone();
    let sd = shutdown.clone();
    let events = tokio::spawn(async move {
        let mut backoff = Backoff::default();
        let mut stats = BrokerStats::default();
        loop {
            let ev = tokio::select! {
                _ = sd.cancelled() => break,
                ev = mqtt::poll(&mut eventloop, &mut backoff) => ev,
            };
            let Ok(mut p) = pubacks.lock() else { break };
            match ev {
                Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                    // A retransmission after a reconnect keeps its packet id.
                    if !p.by_pkid.contains_key(&pkid) {
                        if let Some(tx) = p.queued.pop_front() {
                            p.by_pkid.insert(pkid, tx);
                        }
                    }
                }
                Ok(Event::Incoming(Packet::PubAck(a))) => {
                    if let Some(tx) = p.by_pkid.remove(&a.pkid) {
                        let _ = tx.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(m)))
                    if broker_stats::is_broker_topic(&m.topic) =>
                {
                    if let Err(e) = stats.apply(&metrics, &m.topic, &m.payload) {
                        metrics.mqtt.skipped.inc();
                        tracing::debug!(topic = %m.topic, error = %e, "$SYS message skipped");
                    }
                }
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    // The broker's figures, read on this connection: the uplink's readiness
                    // depends on its own subscriptions alone. Queued off this loop, which is what
                    // drains the request queue.
                    let c = client.clone();
                    tokio::spawn(async move {
                        for filter in broker_stats::filters() {
                            if let Err(e) = c.subscribe(filter, QoS::AtMostOnce).await {
                                tracing::warn!(error = %e, filter, "$SYS subscription not queued");
                            }
                        }
                    });
                }
                Ok(Event::Incoming(Packet::SubAck(a)))
                    if a.return_codes.contains(&SubscribeReasonCode::Failure) =>
                {
                    tracing::warn!(
                        "mosquitto refused the bridge's $SYS subscription (ACL?): no at_mqtt_* figures"
                    );
                }
                Ok(_) => {}
                Err(e) => {
                    metrics.mqtt_reconnects.with_label_values(&["down"]).inc();
                    tracing::warn!(error = %e, "downlink MQTT connection error; retrying");
                }
            }
        }
        let _ = client.disconnect().await;
    });

    // Rosters: coalesce bursts of changes, then push one retained message per device.
    let roster_pub = publisher.clone();
    let roster_ctx = ctx.clone();
    let sd = shutdown.clone();
    tokio::spawn(async move {
        loop {
            let first = tokio::select! {
                _ = sd.cancelled() => break,
                t = rosters.recv() => match t { Some(t) => t, None => break },
            };
            let mut twins = BTreeSet::from([first]);
            tokio::time::sleep(Duration::from_millis(20)).await;
            while let Ok(t) = rosters.try_recv() {
                twins.insert(t);
            }
            for twin in twins {
                push_roster(&roster_ctx, &roster_pub, &twin).await;
            }
        }
    });

    let handler: Handler = {
        // Shared, not cloned per delivery: a `Ctx` clone copies the configuration's strings
        // (2% of the bridge's CPU in the sync bench's profile, issue 17).
        let ctx = Arc::new(ctx.clone());
        Arc::new(move |m: Inbound| {
            let ctx = ctx.clone();
            let publisher = publisher.clone();
            Box::pin(async move { deliver(&ctx, &publisher, m).await })
        })
    };
    let spec = GroupSpec {
        group: ctx.cfg.ingest.downlink_group.clone(),
        topics: vec![ctx.topics.deliver()],
        queue_depth: 256,
        drain_timeout: Duration::from_secs(10),
    };
    let kafka = ctx.cfg.kafka.clone();
    let metrics = armored_runtime::pipeline::GroupMetrics {
        lag: ctx.metrics.consumer_lag.clone(),
        consumer_restarts: ctx.metrics.consumer_restarts.clone(),
    };
    Ok(tokio::spawn(async move {
        let r = run_group(&kafka, spec, metrics, handler, shutdown).await;
        let _ = events.await;
        Ok(r?)
    }))
}

/// A device delivery whose key does not name a receiver.
#[derive(Debug, thiserror::Error)]
#[error("device delivery key is not {{twin}}/{{device}}")]
struct BadReceiver;

impl armored_schemas::Refusal for BadReceiver {
    fn reason(&self) -> &'static str {
        "bad_receiver"
    }
}

/// A device delivery too big for an MQTT packet: mosquitto would refuse it by disconnecting the
/// downlink, which would then send it again, for ever.
#[derive(Debug, thiserror::Error)]
#[error("device delivery of {0} bytes over the MQTT packet limit")]
struct OversizedDownlink(usize);

impl armored_schemas::Refusal for OversizedDownlink {
    fn reason(&self) -> &'static str {
        "oversized_downlink"
    }
}

/// Room in a packet for the fixed header, the topic (at most ~80 bytes) and the packet id.
const PACKET_OVERHEAD: usize = 256;

// The largest delivery the workers make, wrapped in a `Downlink` (a few bytes), always fits.
const _: () = assert!(
    armored_schemas::limits::MAX_DELIVERY_BYTES + 16 + PACKET_OVERHEAD <= mqtt::MAX_PACKET_BYTES
);

/// Whether a downlink body fits one MQTT packet the broker accepts.
fn fits(body: &[u8]) -> bool {
    body.len() + PACKET_OVERHEAD <= mqtt::MAX_PACKET_BYTES
}

async fn deliver(ctx: &Ctx, publisher: &Publisher, m: Inbound) -> Vec<Ack> {
    if m.header("at-receiver-kind") != Some(b"device".as_slice()) {
        return Vec::new();
    }
    ctx.metrics.messages_in.with_label_values(&["down"]).inc();
    ctx.metrics
        .bytes_in
        .with_label_values(&["down"])
        .inc_by(m.payload.len() as u64);
    let receiver = m
        .key
        .as_deref()
        .and_then(|k| std::str::from_utf8(k).ok())
        .and_then(|k| k.split_once('/'))
        .filter(|(t, d)| {
            armored_crypto::envelope::is_valid_id(t) && armored_crypto::envelope::is_valid_id(d)
        })
        .map(|(t, d)| (t.to_string(), d.to_string()));
    let src = armored_runtime::dlq::Source {
        topic: &m.topic,
        partition: m.partition,
        offset: m.offset,
        key: m.key.as_deref().unwrap_or_default(),
    };
    let Some((twin, device)) = receiver else {
        return vec![ctx.dlq.refuse(&BadReceiver, &src, &m.payload).await];
    };
    let body = v1::Downlink {
        version: armored_schemas::WIRE_VERSION,
        message: Some(Down::Delivery(m.payload.clone())),
    }
    .encode_to_vec();
    if !fits(&body) {
        let refusal = OversizedDownlink(body.len());
        return vec![ctx.dlq.refuse(&refusal, &src, &m.payload).await];
    }
    ctx.metrics.messages_out.with_label_values(&["down"]).inc();
    let ack = publisher
        .publish(format!("at/v1/down/{twin}/{device}"), false, body)
        .await;
    match latency::parse_stamp(m.header(latency::INGEST_MS_HEADER)) {
        Some(ms) => vec![latency::observe_on_ack(
            ack,
            ctx.metrics.end_to_end.clone(),
            ms,
        )],
        None => vec![ack],
    }
}

async fn push_roster(ctx: &Ctx, publisher: &Publisher, twin_id: &str) {
    let (roster, devices) = {
        let Ok(r) = ctx.registry.read() else { return };
        let Some(t) = r.twin(twin_id) else { return };
        let roster = v1::TwinRoster {
            version: armored_schemas::WIRE_VERSION,
            twin_id: twin_id.to_string(),
            enrollments: t.devices.values().map(|d| d.raw.clone()).collect(),
            revocations: t.revocations.clone(),
        };
        let mut roster = roster;
        if let Ok(w) = ctx.write_tokens.read() {
            roster
                .revocations
                .extend(w.revocations(twin_id).iter().cloned());
        }
        (roster, t.devices.keys().cloned().collect::<Vec<_>>())
    };
    let body = v1::Downlink {
        version: armored_schemas::WIRE_VERSION,
        message: Some(Down::Roster(roster)),
    }
    .encode_to_vec();
    if !fits(&body) {
        // The broker would drop the downlink's connection for it; the devices keep the roster
        // they have. Nothing to dead-letter: the roster is built here, not read from a record.
        tracing::error!(
            twin = twin_id,
            bytes = body.len(),
            "the twin's roster is over the MQTT packet limit; not pushed"
        );
        ctx.metrics.rosters_oversized.inc();
        return;
    }
    for d in devices {
        // Retained: a device that connects later gets the latest roster first.
        let _ack = publisher
            .publish(format!("at/v1/down/{twin_id}/{d}"), true, body.clone())
            .await;
        ctx.metrics.rosters.inc();
    }
}
