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

/// What the poll loop asks of the MQTT client. The loop never awaits the client's request queue
/// itself: a burst of downlinks (a backlog after a reconnect; the broker sends up to its
/// `max_inflight_messages` at once) needs one acknowledgement each, and awaiting a full queue
/// inside the loop that drains it stopped the link for good (no more pings, no reconnect). The
/// loop hands these to [`send`], which awaits the queue while the loop goes on polling.
#[derive(Debug)]
enum Out {
    /// Subscribe to the downlink (after each ConnAck).
    Subscribe(String),
    /// Publish QoS 1 (the answer to a request, or the change it made).
    Publish(String, Vec<u8>),
    /// Acknowledge a handled downlink message.
    Ack(Box<rumqttc::Publish>),
}

/// Hands the loop's requests and the application's envelopes to the client, the loop's first.
/// Ends when the client's queue is gone (the event loop stopped) or the loop dropped its end.
async fn send(
    client: rumqttc::AsyncClient,
    up: String,
    mut ctl: mpsc::UnboundedReceiver<Out>,
    mut outbox: mpsc::Receiver<Vec<u8>>,
) {
    let mut outbox_open = true;
    loop {
        let sent = tokio::select! {
            biased;
            o = ctl.recv() => match o {
                Some(Out::Subscribe(topic)) => client.subscribe(topic, QoS::AtLeastOnce).await,
                Some(Out::Publish(topic, payload)) => {
                    client.publish(topic, QoS::AtLeastOnce, false, payload).await
                }
                Some(Out::Ack(p)) => client.ack(&p).await,
                None => break,
            },
            e = outbox.recv(), if outbox_open => match e {
                Some(env) => client.publish(up.clone(), QoS::AtLeastOnce, false, env).await,
                None => {
                    outbox_open = false;
                    continue;
                }
            },
        };
        if let Err(e) = sent {
            tracing::warn!(error = %e, "MQTT request not queued; the link is stopping");
            break;
        }
    }
}

/// Runs the link until `shutdown`: publishes envelopes from `outbox`, handles downlink messages.
pub async fn run(
    device: Arc<Mutex<Device>>,
    cfg: MqttConfig,
    outbox: mpsc::Receiver<Vec<u8>>,
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
    // Bounded all the same: each entry answers a downlink the broker sent, and the broker sends
    // at most its in-flight window before it has our acknowledgements.
    let (ctl, ctl_rx) = mpsc::unbounded_channel();
    let sender = tokio::spawn(send(client.clone(), up.clone(), ctl_rx, outbox));
    let up_topic = up;
    let mut backoff = Backoff::default();
    loop {
        let ev = tokio::select! {
            _ = shutdown.cancelled() => break,
            ev = mqtt::poll(&mut eventloop, &mut backoff) => ev,
        };
        match ev {
            Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                ctl.send(Out::Subscribe(down.clone()))?;
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
                        ctl.send(Out::Publish(up_topic.clone(), env.clone()))?;
                    }
                    ctl.send(Out::Publish(resp_topic.clone(), response.clone()))?;
                }
                let _ = events.send(match r {
                    Ok(e) => LinkEvent::Downlink(e),
                    Err(e) => LinkEvent::Rejected {
                        reason: e.reason(),
                        detail: e.to_string(),
                    },
                });
                // Handled (applied or refused for good) and persisted: now the broker may forget it.
                ctl.send(Out::Ack(Box::new(p)))?;
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
    sender.abort();
    Ok(())
}
