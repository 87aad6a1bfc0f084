use armored_crypto::kpcpre::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

#[test]
fn owner_and_reencryption_paths_round_trip() {
    let mut rng = ChaCha20Rng::seed_from_u64(42);
    let owner = SecretKey::generate(&mut rng);
    let bob = SecretKey::generate(&mut rng);
    let attrs = AttributeSet::new(["sync", "location", "twin:t1"]).unwrap();
    let dek = Dek::generate(&mut rng);
    let c1 = Capsule1::encrypt(owner.public(), "t1", 7, &attrs, &dek, &mut rng).unwrap();
    assert_eq!(c1.decrypt(&owner).unwrap(), dek);
    let c1 = Capsule1::decode(&c1.encode()).unwrap();
    let checked = c1.check(&mut rng).unwrap();
    for text in [
        "sync AND location",
        "sync",
        "2 of (sync, node-2, location)",
        "(sync AND location) OR node-1",
    ] {
        let p = Policy::parse(text).unwrap();
        let rk = ReKey::generate(&owner, &p, bob.public(), &mut rng).unwrap();
        let rk = ReKey::decode(&rk.encode()).unwrap();
        let c2 = reencrypt(&rk, &checked).unwrap();
        let c2 = Capsule2::decode(&c2.encode()).unwrap();
        assert_eq!(c2.decrypt(&bob, &mut rng).unwrap(), dek, "{text}");
        let mut cache = TCache::new(4);
        assert_eq!(cache.decrypt(&bob, &c2, &mut rng).unwrap(), dek);
        assert_eq!(cache.decrypt(&bob, &c2, &mut rng).unwrap(), dek);
        assert_eq!(cache.len(), 1);
    }
    let p = Policy::parse("node-2").unwrap();
    let rk = ReKey::generate(&owner, &p, bob.public(), &mut rng).unwrap();
    assert!(matches!(
        reencrypt(&rk, &checked),
        Err(armored_crypto::Error::PolicyNotSatisfied)
    ));
}
