//! A deterministic location simulator for phones (demos, tests, benches): the position of a twin
//! in a global slot is a pure function of (seed, twin id, slot), so a demo can recompute every
//! device's path and run contact tracing in the clear as its reference.
//!
//! People walk between a few shared hotspots (so that contacts happen): the path is a sequence of
//! legs of `leg_slots` slots; in each leg the person stays near one hotspot for the first half,
//! then walks in a straight line to the next leg's hotspot. Hotspots and choices are drawn from a
//! SplitMix64 stream keyed by the seed, the twin id (FNV-1a) and the leg index, so any slot can be
//! computed without replaying the ones before it.

use std::ops::Range;

/// Simulation parameters. Coordinates are metres in a `grid` x `grid` square (u16 range: the MPC
/// function's input domain).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sim {
    /// The seed shared by every device of a demo.
    pub seed: u64,
    /// Side of the square, in grid units (at most 65536).
    pub grid: u32,
    /// Number of hotspots.
    pub hotspots: u32,
    /// How far from its hotspot a person stands (uniform in ±jitter per axis).
    pub jitter: u32,
    /// Slots per leg (stay, then walk).
    pub leg_slots: u64,
}

impl Sim {
    /// Defaults that produce a few contacts at d ≈ 10-30 over a 50-slot window: a 400 m square,
    /// 6 hotspots, people within ±12 m of theirs, legs of 10 slots.
    pub fn new(seed: u64) -> Sim {
        Sim {
            seed,
            grid: 400,
            hotspots: 6,
            jitter: 12,
            leg_slots: 10,
        }
    }

    fn grid(&self) -> u32 {
        self.grid.clamp(1, 1 << 16)
    }

    /// Hotspot `h`'s centre.
    fn hotspot(&self, h: u64) -> (u32, u32) {
        let mut r = Stream::new(self.seed, 0x0068_6f74_7370_6f74, h); // "hotspot"
        let g = u64::from(self.grid());
        ((r.next() % g) as u32, (r.next() % g) as u32)
    }

    /// Where `twin` stands during the stay of leg `leg`.
    fn anchor(&self, twin: &str, leg: u64) -> (u32, u32) {
        let mut r = Stream::new(self.seed, fnv1a(twin), leg);
        let (hx, hy) = self.hotspot(r.next() % u64::from(self.hotspots.max(1)));
        let span = 2 * u64::from(self.jitter) + 1;
        let mut jit = |c: u32| {
            let off = (r.next() % span) as i64 - i64::from(self.jitter);
            (i64::from(c) + off).clamp(0, i64::from(self.grid() - 1)) as u32
        };
        (jit(hx), jit(hy))
    }

    /// The position of `twin` in global slot `slot`.
    pub fn point(&self, twin: &str, slot: u64) -> (u32, u32) {
        let leg_len = self.leg_slots.max(2);
        let (leg, k) = (slot / leg_len, slot % leg_len);
        let stay = leg_len / 2;
        let a = self.anchor(twin, leg);
        if k < stay {
            return a;
        }
        let b = self.anchor(twin, leg + 1);
        // Walk from a (at k = stay) towards b (reached at the next leg's start).
        let (num, den) = (k - stay + 1, leg_len - stay + 1);
        let lerp = |p: u32, q: u32| {
            let (p, q) = (i64::from(p), i64::from(q));
            (p + (q - p) * num as i64 / den as i64) as u32
        };
        (lerp(a.0, b.0), lerp(a.1, b.1))
    }

    /// The path of `twin` over `slots`, in the form `armored_mpc`'s cleartext reference takes
    /// (every slot present).
    pub fn path(&self, twin: &str, slots: Range<u64>) -> Vec<Option<(u32, u32)>> {
        slots.map(|s| Some(self.point(twin, s))).collect()
    }
}

/// FNV-1a of a twin id (stable across platforms and releases, unlike `DefaultHasher`).
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// SplitMix64 keyed by three words.
struct Stream(u64);

impl Stream {
    fn new(a: u64, b: u64, c: u64) -> Stream {
        let mut s = Stream(a);
        let x = s.next() ^ b;
        let mut s = Stream(x);
        let y = s.next() ^ c;
        Stream(y)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_bounded_continuous_and_contacts_happen() {
        let sim = Sim::new(7);
        let slots = 1_700_000_000..1_700_000_050;
        let a = sim.path("phone-1", slots.clone());
        assert_eq!(a, Sim::new(7).path("phone-1", slots.clone()));
        assert_ne!(a, Sim::new(8).path("phone-1", slots.clone()));
        assert_ne!(a, sim.path("phone-2", slots.clone()));
        for w in a.windows(2) {
            let (Some(p), Some(q)) = (w[0], w[1]) else {
                panic!("every slot present")
            };
            assert!(p.0 < 400 && p.1 < 400);
            // No teleporting: at most a leg's distance per slot.
            assert!(p.0.abs_diff(q.0) <= 400 && p.1.abs_diff(q.1) <= 400);
        }
        // With 20 phones, the first one has contacts at d = 20 with someone over 50 slots.
        let users: Vec<_> = (2..=20)
            .map(|i| sim.path(&format!("phone-{i}"), slots.clone()))
            .collect();
        let counts = armored_mpc::functions::contact_tracing::cleartext(20, &a, &users);
        assert!(counts.iter().sum::<u64>() > 0, "{counts:?}");
        assert!(counts.contains(&0), "not everyone meets: {counts:?}");
    }
}
