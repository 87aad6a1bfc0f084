//! The inbound MQTT publishes' workers ("lanes"): the event loop only polls and hands each publish
//! to the lane of its device, so one device's slow message (a registry sync, a full Kafka queue)
//! holds up only the devices that share its lane, never the loop itself.
//!
//! A device's publishes, uplinks and responses alike, always go to the same lane, which handles
//! them one after the other: per device, records are enqueued to Kafka in the order they arrived,
//! and the replay guard of a (twin, writer) lives in one lane.

use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How many lanes the bridge runs. A slow device stalls the other devices of its lane (1 in 16 of
/// them), not the rest.
pub const LANES: usize = 16;

/// The lane of the device that published on `topic`: a hash of `{twin}/{device}` from
/// `at/v1/up/{twin}/{device}` or `at/v1/resp/{twin}/{device}`, so both paths of a device share a
/// lane; any other topic is hashed whole (it is dead-lettered anyway). Stable within a process.
pub fn lane(topic: &str) -> usize {
    let device = topic
        .strip_prefix("at/v1/up/")
        .or_else(|| topic.strip_prefix("at/v1/resp/"))
        .unwrap_or(topic);
    // Fixed keys (`DefaultHasher::new`): the same device maps to the same lane for the whole run.
    let mut h = DefaultHasher::new();
    device.hash(&mut h);
    (h.finish() % LANES as u64) as usize
}

/// Senders to the lanes' queues.
pub(crate) struct Lanes<T> {
    senders: Vec<mpsc::Sender<T>>,
}

/// A lane's worker stopped (it only stops at shutdown), so its publishes cannot be handled.
#[derive(Debug, thiserror::Error)]
#[error("lane {0} stopped")]
pub(crate) struct LaneStopped(usize);

impl<T: Send + 'static> Lanes<T> {
    /// Starts [`LANES`] workers, each reading a queue of `capacity` items.
    pub(crate) fn start<F, Fut>(capacity: usize, mut worker: F) -> (Self, Vec<JoinHandle<()>>)
    where
        F: FnMut(mpsc::Receiver<T>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (senders, tasks) = (0..LANES)
            .map(|_| {
                let (tx, rx) = mpsc::channel(capacity.max(1));
                (tx, tokio::spawn(worker(rx)))
            })
            .unzip();
        (Self { senders }, tasks)
    }

    /// Queues `item` on the lane of `topic`. Waits only while that lane's queue is full; the
    /// caller sizes the queues so that this cannot happen (see `uplink::run`).
    pub(crate) async fn dispatch(&self, topic: &str, item: T) -> Result<(), LaneStopped> {
        let i = lane(topic);
        match self.senders.get(i) {
            Some(tx) => tx.send(item).await.map_err(|_| LaneStopped(i)),
            None => Err(LaneStopped(i)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_keeps_its_lane_on_both_paths() {
        for d in ["t1/d1", "bike-7/phone", "x/y"] {
            let up = lane(&format!("at/v1/up/{d}"));
            assert_eq!(up, lane(&format!("at/v1/up/{d}")));
            assert_eq!(up, lane(&format!("at/v1/resp/{d}")));
            assert!(up < LANES);
        }
        let spread: std::collections::HashSet<usize> = (0..200)
            .map(|i| lane(&format!("at/v1/up/t{i}/d")))
            .collect();
        assert!(spread.len() > LANES / 2, "devices spread over the lanes");
    }
}
