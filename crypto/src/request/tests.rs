use super::*;
use crate::epoch::EpochKeyManager;
use crate::kpcpre::{reencrypt, Policy, ReKey, SecretKey};
use crate::tokens::{issue_revocation, issue_write_token_for, RevocationKind};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

struct World {
    rng: ChaCha20Rng,
    owner_pre: SecretKey,
    owner_sig: SigningKey,
    device_pre: Option<SecretKey>,
    device_sig: SigningKey,
    rk: ReKey,
}

fn world() -> World {
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let owner_pre = SecretKey::generate(&mut rng);
    let owner_sig = SigningKey::generate(&mut rng);
    let device_pre = SecretKey::generate(&mut rng);
    let device_sig = SigningKey::generate(&mut rng);
    let policy = Policy::parse("twin:t1 AND (sync OR req)").unwrap();
    let rk = ReKey::generate(&owner_pre, &policy, device_pre.public(), &mut rng).unwrap();
    World {
        rng,
        owner_pre,
        owner_sig,
        device_pre: Some(device_pre),
        device_sig,
        rk,
    }
}

fn request(
    w: &mut World,
    requester: &SigningKey,
    token: Option<Vec<u8>>,
) -> (Vec<u8>, ResponseKey, [u8; 16]) {
    let mut m = EpochKeyManager::new(w.owner_pre.public().clone(), "t1").unwrap();
    let key = m.key_for(7, &[REQ_ATTRIBUTE], &mut w.rng).unwrap();
    let rkey = ResponseKey::generate(&mut w.rng);
    let id = new_request_id(&mut w.rng);
    let env = seal_request(
        key,
        requester,
        &RequestInput {
            requester_id: "alice",
            request_id: id,
            response_key: &rkey,
            body: br#"{"op":"read"}"#.to_vec(),
            expires_at_ms: 10_000,
            issued_at_ms: 1_000,
            write_token: token,
        },
        &mut w.rng,
    )
    .unwrap();
    (env, rkey, id)
}

fn deliver(w: &mut World, env: &[u8]) -> Vec<u8> {
    let (e, _, c1) = crate::envelope::decode_envelope(env).unwrap();
    let c2 = reencrypt(&w.rk, &c1.check(&mut w.rng).unwrap()).unwrap();
    crate::envelope::make_delivery(&e, &c2, None)
}

#[test]
fn round_trip_and_every_field_bound() {
    let mut w = world();
    let owner_sig = w.owner_sig.clone();
    let (env, rkey, id) = request(&mut w, &owner_sig, None);
    let d = deliver(&mut w, &env);
    let mut rx = Receiver::new(w.device_pre.take().unwrap());
    let req = open_request(&mut rx, &d, &mut w.rng).unwrap().into_inner();
    assert_eq!(req.request_id, id);
    assert_eq!(req.body, br#"{"op":"read"}"#);
    assert_eq!(req.header.expires_at_ms, 10_000);
    let trust = TrustStore::new(*w.owner_sig.verifying_key());
    assert_eq!(
        authorize_requester(&req, &trust, 2_000).unwrap(),
        Requester::Owner
    );
    assert!(!format!("{req:?}").contains(&hex_of(&rkey.0)));

    let resp = seal_response(
        &w.device_sig,
        &req,
        "d1",
        b"{\"ok\":true}".to_vec(),
        3,
        &mut w.rng,
    )
    .unwrap();
    let dk = *w.device_sig.verifying_key();
    let lookup = |t: &str, d: &str| (t == "t1" && d == "d1").then_some(dk);
    let r = open_response(&resp, &rkey, &id, lookup).unwrap();
    assert_eq!(r.body, b"{\"ok\":true}");
    // Wrong key, wrong request id, unknown device, flipped bits: all refused.
    let other = ResponseKey::generate(&mut w.rng);
    assert_eq!(
        open_response(&resp, &other, &id, lookup).unwrap_err(),
        Error::PayloadAuth
    );
    assert!(matches!(
        open_response(&resp, &rkey, &[0; 16], lookup),
        Err(Error::Mismatch(_))
    ));
    assert!(matches!(
        open_response(&resp, &rkey, &id, |_, _| None),
        Err(Error::UnknownSigner(_))
    ));
    let mut env = parse_response_envelope(&resp).unwrap();
    env.device_id = "d2".into();
    let forged = env.encode_to_vec();
    let lookup2 = |_: &str, _: &str| Some(dk);
    assert!(matches!(
        open_response(&forged, &rkey, &id, lookup2),
        Err(Error::Mismatch(_))
    ));
    for i in [0, resp.len() / 2, resp.len() - 1] {
        let mut bad = resp.clone();
        bad[i] ^= 1;
        assert!(open_response(&bad, &rkey, &id, lookup).is_err());
    }
}

#[test]
fn strangers_and_bad_tokens_are_refused() {
    let mut w = world();
    let stranger = SigningKey::generate(&mut w.rng);
    let (env, _, _) = request(&mut w, &stranger, None);
    let d = deliver(&mut w, &env);
    let mut rx = Receiver::new(w.device_pre.take().unwrap());
    let req = open_request(&mut rx, &d, &mut w.rng).unwrap().into_inner();
    let mut trust = TrustStore::new(*w.owner_sig.verifying_key());
    assert!(matches!(
        authorize_requester(&req, &trust, 2_000),
        Err(Error::UnknownSigner(_))
    ));

    let tok = issue_write_token_for(
        &w.owner_sig,
        "t1",
        stranger.verifying_key(),
        0,
        5_000,
        &mut w.rng,
    );
    let (env, _, _) = request(&mut w, &stranger, Some(tok.clone()));
    let d = deliver(&mut w, &env);
    let req = open_request(&mut rx, &d, &mut w.rng).unwrap().into_inner();
    assert!(matches!(
        authorize_requester(&req, &trust, 2_000),
        Ok(Requester::Token(_))
    ));
    assert!(matches!(
        authorize_requester(&req, &trust, 6_000),
        Err(Error::Expired { .. })
    ));
    let t = crate::tokens::verify_write_token_signature(&tok, w.owner_sig.verifying_key()).unwrap();
    let rv = issue_revocation(
        &w.owner_sig,
        RevocationKind::WriteToken,
        &t.token_id,
        1,
        None,
    );
    trust
        .revocations
        .apply(&crate::tokens::verify_revocation(&rv, w.owner_sig.verifying_key()).unwrap());
    assert_eq!(
        authorize_requester(&req, &trust, 2_000).unwrap_err(),
        Error::Revoked("write token")
    );
    // A token signed by someone else than the owner.
    let forged = issue_write_token_for(
        &stranger,
        "t1",
        stranger.verifying_key(),
        0,
        5_000,
        &mut w.rng,
    );
    let (env, _, _) = request(&mut w, &stranger, Some(forged));
    let d = deliver(&mut w, &env);
    let req = open_request(&mut rx, &d, &mut w.rng).unwrap().into_inner();
    assert!(matches!(
        authorize_requester(&req, &trust, 2_000),
        Err(Error::BadSignature(_))
    ));
}

#[test]
fn a_state_change_is_not_a_request() {
    let mut w = world();
    let mut m = EpochKeyManager::new(w.owner_pre.public().clone(), "t1").unwrap();
    let key = m.key_for(7, &["sync"], &mut w.rng).unwrap();
    let env = crate::envelope::seal_state_change(
        key,
        &w.device_sig,
        &crate::envelope::StateChangeInput {
            device_id: "d1".into(),
            delta: b"{}".to_vec(),
            ..Default::default()
        },
        &mut w.rng,
    )
    .unwrap();
    let d = deliver(&mut w, &env);
    let mut rx = Receiver::new(w.device_pre.take().unwrap());
    assert!(matches!(
        open_request(&mut rx, &d, &mut w.rng),
        Err(Error::InvalidField { .. })
    ));
    // Sealing a request without `req` or without an expiry is refused.
    let rkey = ResponseKey::generate(&mut w.rng);
    let input = RequestInput {
        requester_id: "alice",
        request_id: [1; 16],
        response_key: &rkey,
        body: vec![],
        expires_at_ms: 5,
        issued_at_ms: 1,
        write_token: None,
    };
    assert!(seal_request(key, &w.owner_sig, &input, &mut w.rng).is_err());
    let key = m.key_for(7, &[REQ_ATTRIBUTE], &mut w.rng).unwrap();
    let no_expiry = RequestInput {
        expires_at_ms: 0,
        ..input
    };
    assert!(seal_request(key, &w.owner_sig, &no_expiry, &mut w.rng).is_err());
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
