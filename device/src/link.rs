//! The device's MQTT link: persistent session (clean session off) so QoS 1 deliveries wait for it
//! while offline; its own changes published QoS 1 on `at/v1/up/{twin}/{device}`; deliveries and
//! rosters from `at/v1/down/{twin}/{device}`, acknowledged only after they were handled and the state
//! persisted.

use armored_schemas::Refusal;
use std::sync::{Arc, Mutex};

use armored_base::mqtt::MqttConfig;
use armored_base::mqtt::{self, Backoff};
use armored_base::time::now_ms;
use armored_base::Shutdown;
use rumqttc::{Event as MqttEvent, Packet, QoS};
use tokio::sync::mpsc;

use crate::{Device, Event};

/// What the link reports to the embedding application.
#[derive(Clone, Debug, PartialEq)]
pub enum LinkEvent {
    /// Connected (again) to the broker, and the broker has acknowledged the downlink subscription:
    /// from here on nothing sent to the device is missed.
    Connected,
    /// A handled downlink message.
    Downlink(Event),
    /// The broker acknowledged one of our publishes (QoS 1 PUBACK).
    Acked,
    /// A refused downlink message, with its typed reason.
    Rejected {
        /// Bounded reason label.
        reason: &'static str,
        /// The error.
        detail: String,
    },
}

/// Runs the link until `shutdown`: publishes envelopes from `outbox`, handles downlink messages.
pub async fn run(
    device: Arc<Mutex<Device>>,
    cfg: MqttConfig,
    mut outbox: mpsc::Receiver<Vec<u8>>,
    events: mpsc::UnboundedSender<LinkEvent>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let (up, down) = device
        .lock()
        .map_err(|_| anyhow::anyhow!("device lock poisoned"))?
        .topics();
    let (client, mut eventloop) = mqtt::connect(&cfg, true, 256);
    let resp_topic = device
        .lock()
        .map_err(|_| anyhow::anyhow!("device lock poisoned"))?
        .response_topic();
    let publisher = client.clone();
    let sd = shutdown.clone();
    let up_topic = up.clone();
    tokio::spawn(async move {
        loop {
            let env = tokio::select! {
                _ = sd.cancelled() => break,
                e = outbox.recv() => match e { Some(e) => e, None => break },
            };
            if let Err(e) = publisher
                .publish(up.clone(), QoS::AtLeastOnce, false, env)
                .await
            {
                tracing::warn!(error = %e, "publish not queued");
                break;
            }
        }
    });
    let mut backoff = Backoff::default();
    loop {
        let ev = tokio::select! {
            _ = shutdown.cancelled() => break,
            ev = mqtt::poll(&mut eventloop, &mut backoff) => ev,
        };
        match ev {
            Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                client.subscribe(down.clone(), QoS::AtLeastOnce).await?;
            }
            // Not at the ConnAck: until the subscription is acknowledged, a downlink published to
            // a new session is not delivered to it.
            Ok(MqttEvent::Incoming(Packet::SubAck(_))) => {
                let _ = events.send(LinkEvent::Connected);
            }
            Ok(MqttEvent::Incoming(Packet::Publish(p))) => {
                let r = device
                    .lock()
                    .map_err(|_| anyhow::anyhow!("device lock poisoned"))?
                    .handle_downlink(&p.payload, now_ms());
                if let Ok(Event::Request {
                    response,
                    state_change,
                    ..
                }) = &r
                {
                    // The change first (phase 5 step 7), then the answer; both queued before the
                    // request is acknowledged, so a crash before this point redelivers it.
                    if let Some(env) = state_change {
                        client
                            .publish(up_topic.clone(), QoS::AtLeastOnce, false, env.clone())
                            .await?;
                    }
                    client
                        .publish(
                            resp_topic.clone(),
                            QoS::AtLeastOnce,
                            false,
                            response.clone(),
                        )
                        .await?;
                }
                let _ = events.send(match r {
                    Ok(e) => LinkEvent::Downlink(e),
                    Err(e) => LinkEvent::Rejected {
                        reason: e.reason(),
                        detail: e.to_string(),
                    },
                });
                // Handled (applied or refused for good) and persisted: now the broker may forget it.
                client.ack(&p).await?;
            }
            Ok(MqttEvent::Incoming(Packet::PubAck(_))) => {
                let _ = events.send(LinkEvent::Acked);
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "device MQTT connection error; retrying"),
        }
    }
    // Give queued publishes a moment to leave before disconnecting.
    let _ = tokio::time::timeout(std::time::Duration::from_millis(500), async {
        while let Ok(ev) = eventloop.poll().await {
            if matches!(ev, MqttEvent::Outgoing(rumqttc::Outgoing::PingReq)) {
                break;
            }
        }
    })
    .await;
    let _ = client.disconnect().await;
    Ok(())
}
