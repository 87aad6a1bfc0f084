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

use crate::{outbox, Device, Event};
use std::path::PathBuf;

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

/// Which outbox entry each publish queued so far, in queue order (`None`: not an envelope of the
/// outbox, e.g. an answer to a request). The poll loop pairs them with packet ids as the client
/// sends them, and removes an entry when its PUBACK comes.
type Tags = Arc<Mutex<std::collections::VecDeque<Option<PathBuf>>>>;

/// Hands the loop's requests and the application's envelopes to the client, the loop's first;
/// first of all the envelopes a previous run left in the outbox (`resend`). Ends when the client's
/// queue is gone (the event loop stopped) or the loop dropped its end.
async fn send(
    client: rumqttc::AsyncClient,
    uplink: Uplink,
    mut ctl: mpsc::UnboundedReceiver<Out>,
    mut outbox: mpsc::Receiver<Vec<u8>>,
    resend: Vec<(PathBuf, Vec<u8>)>,
) {
    for (path, env) in resend {
        uplink.tag(Some(path));
        let topic = uplink.topic.clone();
        if let Err(e) = client.publish(topic, QoS::AtLeastOnce, false, env).await {
            tracing::warn!(error = %e, "MQTT request not queued; the link is stopping");
            return;
        }
    }
    let mut outbox_open = true;
    loop {
        let sent = tokio::select! {
            biased;
            o = ctl.recv() => match o {
                Some(Out::Subscribe(topic)) => client.subscribe(topic, QoS::AtLeastOnce).await,
                Some(Out::Publish(topic, payload)) => {
                    uplink.tag_publish(&topic, &payload);
                    client.publish(topic, QoS::AtLeastOnce, false, payload).await
                }
                Some(Out::Ack(p)) => client.ack(&p).await,
                None => break,
            },
            e = outbox.recv(), if outbox_open => match e {
                Some(env) => {
                    uplink.tag_publish(&uplink.topic, &env);
                    client.publish(uplink.topic.clone(), QoS::AtLeastOnce, false, env).await
                }
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

/// The uplink topic, the device's directory (its outbox) and the tags of queued publishes.
#[derive(Clone)]
struct Uplink {
    topic: String,
    device_dir: PathBuf,
    tags: Tags,
}

impl Uplink {
    fn tag(&self, t: Option<PathBuf>) {
        if let Ok(mut tags) = self.tags.lock() {
            tags.push_back(t);
        }
    }

    /// Tags a publish: an envelope on the uplink waits in the outbox (if it is there at all).
    fn tag_publish(&self, topic: &str, payload: &[u8]) {
        let path = (topic == self.topic)
            .then(|| outbox::path_of(&self.device_dir, payload))
            .filter(|p| p.exists());
        self.tag(path);
    }
}

/// How long a delivery from a writer not in the roster yet waits for the next roster.
const HOLD_WAIT: std::time::Duration = std::time::Duration::from_secs(30);
/// At most this many wait; beyond, deliveries are handled (refused) at once.
const MAX_HELD: usize = 512;

/// Sleeps until `at`, or for ever if there is nothing to wait for.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// What the loop does with a handled downlink message.
struct Report {
    ctl: mpsc::UnboundedSender<Out>,
    events: mpsc::UnboundedSender<LinkEvent>,
    up: String,
    resp: String,
}

impl Report {
    /// Queues what a request asks to publish, tells the application, and acknowledges `p`.
    fn report(
        &self,
        r: Result<Event, crate::DeviceError>,
        p: rumqttc::Publish,
    ) -> anyhow::Result<()> {
        if let Ok(Event::Request {
            response,
            state_change,
            ..
        }) = &r
        {
            // The change first (phase 5 step 7), then the answer; both queued before the
            // request is acknowledged, so a crash before this point redelivers it.
            if let Some(env) = state_change {
                self.ctl.send(Out::Publish(self.up.clone(), env.clone()))?;
            }
            self.ctl
                .send(Out::Publish(self.resp.clone(), response.clone()))?;
        }
        let _ = self.events.send(match r {
            Ok(e) => LinkEvent::Downlink(e),
            Err(e) => LinkEvent::Rejected {
                reason: e.reason(),
                detail: e.to_string(),
            },
        });
        // Handled (applied or refused for good) and persisted: now the broker may forget it.
        self.ctl.send(Out::Ack(Box::new(p)))?;
        Ok(())
    }

    /// Handles the held deliveries for good (after a roster, or after [`HOLD_WAIT`]).
    fn release(
        &self,
        device: &Mutex<Device>,
        held: &mut Vec<rumqttc::Publish>,
    ) -> anyhow::Result<()> {
        for p in held.drain(..) {
            let r = device
                .lock()
                .map_err(|_| anyhow::anyhow!("device lock poisoned"))?
                .handle_downlink(&p.payload, now_ms());
            self.report(r, p)?;
        }
        Ok(())
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
    let (client, mut eventloop) = mqtt::connect(&cfg, true, 256)?;
    let resp_topic = device
        .lock()
        .map_err(|_| anyhow::anyhow!("device lock poisoned"))?
        .response_topic();
    // Bounded all the same: each entry answers a downlink the broker sent, and the broker sends
    // at most its in-flight window before it has our acknowledgements.
    let (ctl, ctl_rx) = mpsc::unbounded_channel();
    let device_dir = device
        .lock()
        .map_err(|_| anyhow::anyhow!("device lock poisoned"))?
        .dir()
        .to_path_buf();
    let resend = outbox::pending(&device_dir)?;
    if !resend.is_empty() {
        tracing::info!(
            envelopes = resend.len(),
            "publishing what the outbox kept from a previous run"
        );
    }
    let uplink = Uplink {
        topic: up.clone(),
        device_dir,
        tags: Tags::default(),
    };
    // Packet id → the outbox entry its PUBACK settles.
    let mut in_flight: std::collections::HashMap<u16, Option<PathBuf>> = Default::default();
    let sender = tokio::spawn(send(client.clone(), uplink.clone(), ctl_rx, outbox, resend));
    let out = Report {
        ctl,
        events,
        up,
        resp: resp_topic,
    };
    // Deliveries from writers not in the roster yet, waiting (unacknowledged) for the next roster.
    let mut held: Vec<rumqttc::Publish> = Vec::new();
    let mut held_since: Option<tokio::time::Instant> = None;
    let mut backoff = Backoff::default();
    loop {
        let release_at = held_since.map(|t| t + HOLD_WAIT);
        let ev = tokio::select! {
            _ = shutdown.cancelled() => break,
            // No roster came in time: what is held is handled for good (refused, most likely).
            _ = sleep_until_some(release_at) => {
                out.release(&device, &mut held)?;
                held_since = None;
                continue;
            }
            ev = mqtt::poll(&mut eventloop, &mut backoff) => ev,
        };
        match ev {
            Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                out.ctl.send(Out::Subscribe(down.clone()))?;
            }
            // Not at the ConnAck: until the subscription is acknowledged, a downlink published to
            // a new session is not delivered to it.
            Ok(MqttEvent::Incoming(Packet::SubAck(_))) => {
                let _ = out.events.send(LinkEvent::Connected);
            }
            Ok(MqttEvent::Incoming(Packet::Publish(p))) => {
                let held_full = held.len() >= MAX_HELD;
                let r = {
                    let mut d = device
                        .lock()
                        .map_err(|_| anyhow::anyhow!("device lock poisoned"))?;
                    if held_full {
                        Some(d.handle_downlink(&p.payload, now_ms()))
                    } else {
                        d.handle_downlink_or_hold(&p.payload, now_ms())
                    }
                };
                let Some(r) = r else {
                    // Not acknowledged: a crash meanwhile has the broker send it again.
                    held_since.get_or_insert_with(tokio::time::Instant::now);
                    held.push(p);
                    continue;
                };
                let roster = matches!(r, Ok(Event::Roster { .. }));
                out.report(r, p)?;
                if roster && !held.is_empty() {
                    out.release(&device, &mut held)?;
                    held_since = None;
                }
            }
            // A publish leaves: pair its packet id with the next tag (a resend after a reconnect
            // keeps its id and is already paired).
            Ok(MqttEvent::Outgoing(rumqttc::Outgoing::Publish(pkid))) => {
                if let std::collections::hash_map::Entry::Vacant(slot) = in_flight.entry(pkid) {
                    if let Some(tag) = uplink.tags.lock().ok().and_then(|mut t| t.pop_front()) {
                        slot.insert(tag);
                    }
                }
            }
            Ok(MqttEvent::Incoming(Packet::PubAck(ack))) => {
                if let Some(Some(path)) = in_flight.remove(&ack.pkid) {
                    outbox::done(&path);
                }
                let _ = out.events.send(LinkEvent::Acked);
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
