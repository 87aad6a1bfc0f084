//! Round trips for random policies and attribute sets (AND/OR/k-of-n, depth up to 8, up to 64
//! leaves), on the owner path and the re-encryption path.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use armored_crypto::kpcpre::policy::{leaf_count, Node, MAX_DEPTH, MAX_LEAVES};
use armored_crypto::kpcpre::*;
use armored_crypto::Error;
use proptest::prelude::*;

const VOCAB: [&str; 12] = [
    "sync", "location", "node-1", "node-2", "node-3", "req", "twin:t1", "health", "a.b", "x_y",
    "m:n/o", "z9",
];

fn node() -> impl Strategy<Value = Node> {
    let leaf = (0..VOCAB.len()).prop_map(|i| Node::Leaf(VOCAB[i].to_string()));
    leaf.prop_recursive(MAX_DEPTH as u32, MAX_LEAVES as u32, 5, |inner| {
        prop::collection::vec(inner, 1..=5).prop_flat_map(|children| {
            let n = children.len();
            (1..=n).prop_map(move |k| Node::Gate {
                k,
                children: children.clone(),
            })
        })
    })
}

fn policy() -> impl Strategy<Value = Policy> {
    node()
        .prop_filter("at most 64 leaves", |n| leaf_count(n) <= MAX_LEAVES)
        .prop_map(|n| Policy::from_tree(n).expect("generated trees respect the limits"))
}

fn attrs() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(any::<bool>(), VOCAB.len()).prop_map(|mask| {
        let mut v: Vec<String> = VOCAB
            .iter()
            .zip(mask)
            .filter(|(_, m)| *m)
            .map(|(a, _)| a.to_string())
            .collect();
        if v.is_empty() {
            v.push("sync".into());
        }
        v
    })
}

fn one_round(policy: &Policy, attr_names: Vec<String>, seed: u64) -> Result<(), TestCaseError> {
    let mut rng = common::rng(seed);
    let owner = SecretKey::generate(&mut rng);
    let bob = SecretKey::generate(&mut rng);
    let attrs = AttributeSet::new(attr_names).expect("vocabulary is valid");
    let dek = Dek::generate(&mut rng);
    let c1 = Capsule1::encrypt(owner.public(), "t1", seed, &attrs, &dek, &mut rng).expect("enc");
    // Owner path, through the wire encoding.
    let c1 = Capsule1::decode(&c1.encode()).expect("decode");
    prop_assert!(c1.decrypt(&owner).expect("owner decrypts") == dek);
    // Re-encryption path.
    let rk = ReKey::generate(&owner, policy, bob.public(), &mut rng).expect("rkgen");
    let rk = ReKey::decode(&rk.encode()).expect("rk decode");
    let checked = c1.check(&mut rng).expect("honest capsules pass the check");
    match reencrypt(&rk, &checked) {
        Ok(c2) => {
            prop_assert!(
                policy.is_satisfied(&attrs),
                "ReEnc succeeded although P(A) = 0"
            );
            let c2 = Capsule2::decode(&c2.encode()).expect("c2 decode");
            prop_assert!(c2.decrypt(&bob, &mut rng).expect("dec2") == dek);
            // The owner cannot use the receiver's capsule, nor a stranger.
            prop_assert!(c2.decrypt(&owner, &mut rng).is_err());
        }
        Err(Error::PolicyNotSatisfied) => prop_assert!(!policy.is_satisfied(&attrs)),
        Err(e) => prop_assert!(false, "unexpected error {e}"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: common::cases(24), ..ProptestConfig::default() })]

    /// A = the policy's own leaves always satisfies P: both paths must round trip.
    #[test]
    fn leaves_of_the_policy_always_open(p in policy(), seed in any::<u64>()) {
        let mut leaves: Vec<String> = p.leaves().to_vec();
        leaves.sort();
        leaves.dedup();
        one_round(&p, leaves, seed)?;
    }

    /// Random A: ReEnc succeeds exactly when P(A) = 1, and then decrypts to the DEK.
    #[test]
    fn random_attribute_sets(p in policy(), a in attrs(), seed in any::<u64>()) {
        one_round(&p, a, seed)?;
    }
}

#[test]
fn deepest_and_widest_policies() {
    // Depth 8 (a chain of 8 nested gates) and 64 leaves (4 x 16).
    let mut deep = "a0".to_string();
    for i in 1..=8 {
        deep = format!("and({deep},a{i})");
    }
    let wide = format!(
        "and({})",
        (0..4)
            .map(|g| format!(
                "or({})",
                (0..16)
                    .map(|i| format!("w{g}-{i}"))
                    .collect::<Vec<_>>()
                    .join(",")
            ))
            .collect::<Vec<_>>()
            .join(",")
    );
    let threshold = "3of5(a0,and(a1,a2),or(a3,a4),2of3(a5,a6,a7),a8)";
    for (text, attrs) in [
        (
            deep.as_str(),
            (0..=8).map(|i| format!("a{i}")).collect::<Vec<_>>(),
        ),
        (wide.as_str(), (0..4).map(|g| format!("w{g}-15")).collect()),
        (
            threshold,
            vec!["a0".into(), "a6".into(), "a7".into(), "a4".into()],
        ),
    ] {
        let p = Policy::parse(text).unwrap();
        assert!(
            p.is_satisfied(&AttributeSet::new(attrs.clone()).unwrap()),
            "{text}"
        );
        one_round(&p, attrs, 9).unwrap();
    }
}
