//! Phase 5 on the real brokers: requests from a requester (Kafka) through the worker (checks, rate
//! limit, ReEnc for the twin's devices) and the bridge to the device, answers back over MQTT and
//! Kafka; offline devices; bad input on the request and response paths.

use armored_schemas::Refusal;
use std::time::Duration;

use armored_base::time::now_ms;
use armored_client::owner::Owner;
use armored_client::request::{
    request, responses_from_now, seal, wait_answer, Answer, Ask, Requester,
};
use armored_client::service::Service;
use armored_crypto::envelope::parse_header;
use armored_crypto::epoch::{epoch_of, EpochKeyManager};
use armored_crypto::identity::PartyKind;
use armored_crypto::request::{new_request_id, seal_request, RequestInput, ResponseKey};
use armored_device::link::LinkEvent;
use armored_device::Event;
use armored_e2e::{consume, rand_id, Env, TestDevice, SERIAL};
use armored_schemas::{decode_strict, v1, WIRE_VERSION};
use prost::Message;
use rand_core::OsRng;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

fn ask(twin: &str, body: serde_json::Value) -> Ask<'_> {
    Ask {
        twin_id: twin,
        body: body.to_string().into_bytes(),
        ttl: Duration::from_secs(300),
        wait: WAIT,
        write_token: None,
    }
}

/// Twins whose requests were delivered under the Kafka key `receiver` (`{twin}/{device}`).
fn delivered_request_twins(env: &Env, receiver: &str) -> anyhow::Result<Vec<String>> {
    let mut twins = Vec::new();
    for (k, payload) in env.records(&env.topics.deliver())? {
        if k != receiver.as_bytes() {
            continue;
        }
        let d: v1::Delivery = decode_strict("Delivery", &payload, 1 << 20)?;
        let h = parse_header(&d.envelope_header)?;
        if h.attributes.iter().any(|a| a == "req") {
            twins.push(h.twin_id);
        }
    }
    Ok(twins)
}

fn served(dev: &TestDevice) -> u64 {
    dev.device
        .lock()
        .map(|d| {
            d.state()
                .counters
                .get("request_served")
                .copied()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn request_round_trip_read_set_and_routing() -> anyhow::Result<()> {
    let _g = SERIAL.lock().await;
    let env = Env::new().await?;
    let ctl = env.owner_ctl()?;
    let ingest = env.start_ingest().await?;
    let worker = env.start_worker(&rand_id("reenc"));
    let owner_dir = env.dir.join("owner");
    let owner = Owner::init(&owner_dir, &rand_id("alice"), &ctl).await?;
    let twin = rand_id("thermo");
    let other = rand_id("lamp");
    let d1 = env.device(&owner, &ctl, &twin, "d1").await?;
    let mut d2 = env.device(&owner, &ctl, &twin, "d2").await?;
    let mut e1 = env.device(&owner, &ctl, &other, "e1").await?;
    d2.wait_roster(2, WAIT).await;
    d1.publish(&["sync"], json!({"temp": 20})).await?;
    let me = Requester::open(&owner_dir)?;

    // Read: the answer is d1's or d2's state, signed by that device, opened only by us.
    let a = request(
        &ctl,
        &me,
        &ask(&twin, json!({"op": "read", "fields": ["temp"]})),
    )
    .await?;
    assert_eq!(a.twin_id, twin);
    assert_eq!(a.response["ok"], json!(true), "{a:?}");
    if a.device_id == "d1" {
        assert_eq!(a.response["state"], json!({"temp": 20}));
    }

    // Set: the devices apply it and sync it (phase 3): a service granted `sync` on the twin sees
    // the change, written by a device of the twin.
    let svc_dir = env.dir.join("svc");
    let id_file = Service::init(&svc_dir, &rand_id("svc"), PartyKind::Service)?;
    let (party, _) = owner.trust(&ctl, &std::fs::read(id_file)?).await?;
    owner
        .grant(
            &ctl,
            &party.party_id,
            &format!("sync AND twin:{twin}"),
            None,
        )
        .await?;
    let mut svc = Service::open(&svc_dir)?;
    let a = request(
        &ctl,
        &me,
        &ask(&twin, json!({"op": "set", "field": "mode", "value": "eco"})),
    )
    .await?;
    assert_eq!(a.response["ok"], json!(true), "{a:?}");
    let got = consume(&env, &mut svc, None, Duration::from_secs(10)).await?;
    assert!(
        got.iter().any(|r| r.delta == json!({"mode": "eco"})
            && r.writer.starts_with("device:")
            && r.twin_id == twin),
        "the set was synced: {got:?}"
    );

    // A request for the other twin reaches only its device, never twin 1's.
    let b = request(&ctl, &me, &ask(&other, json!({"op": "read"}))).await?;
    assert_eq!(
        (b.twin_id.as_str(), b.device_id.as_str()),
        (other.as_str(), "e1")
    );
    let seen = e1
        .collect_until(WAIT, |e| {
            e.iter()
                .any(|x| matches!(x, LinkEvent::Downlink(Event::Request { .. })))
        })
        .await;
    assert!(!seen.is_empty());
    for dev in ["d1", "d2"] {
        let twins = delivered_request_twins(&env, &format!("{twin}/{dev}"))?;
        assert_eq!(
            twins,
            vec![twin.clone(), twin.clone()],
            "{dev} got {twins:?}"
        );
    }
    assert_eq!(
        delivered_request_twins(&env, &format!("{other}/e1"))?,
        vec![other.clone()]
    );
    // Both devices of twin 1 answer both requests; e1 only its own.
    let deadline = std::time::Instant::now() + WAIT;
    while served(&d1) + served(&d2) < 4 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(served(&d1) + served(&d2), 4);
    assert_eq!(served(&e1), 1);

    // A requester that is neither the owner nor a token holder gets a refusal, not the state.
    let stranger = Requester::open(&svc_dir)?;
    let r = request(&ctl, &stranger, &ask(&twin, json!({"op": "read"}))).await?;
    assert_eq!(r.response["ok"], json!(false), "{r:?}");
    assert_eq!(r.response["reason"], json!("unknown_signer"));
    assert!(r.response.get("state").is_none());

    assert!(
        worker
            .metric("at_reencrypt_requests_total{outcome=\"routed\"}")
            .await?
            >= 4.0
    );
    assert!(
        ingest
            .metric("at_ingest_messages_out_total{path=\"resp\"}")
            .await?
            >= 4.0
    );
    env.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expired_and_rate_limited_requests_are_dead_lettered() -> anyhow::Result<()> {
    let _g = SERIAL.lock().await;
    let env = Env::new().await?;
    let ctl = env.owner_ctl()?;
    let _ingest = env.start_ingest().await?;
    // Two requests per twin, then (practically) never again.
    let worker = env.start_worker_with(
        &rand_id("reenc"),
        at_reencrypt::requests::RequestConfig {
            rate_per_s: 1e-6,
            burst: 2,
            max_twins: 1000,
        },
    );
    let owner_dir = env.dir.join("owner");
    let owner = Owner::init(&owner_dir, &rand_id("alice"), &ctl).await?;
    let twin = rand_id("door");
    let _d1 = env.device(&owner, &ctl, &twin, "d1").await?;
    let me = Requester::open(&owner_dir)?;
    let reg = ctl.registry().await?;

    // Expired before it reaches the worker: dead-lettered, and it uses no rate budget.
    let now = now_ms();
    let (expired, _, _) = seal(
        &reg,
        &me,
        &Ask {
            ttl: Duration::from_secs(1),
            ..ask(&twin, json!({"op": "read"}))
        },
        now - 60_000,
    )?;
    ctl.send(&ctl.topics.requests(), &twin, &expired).await?;
    let dl = env
        .wait_dead_letter(WAIT, |d| d.reason == "expired")
        .await?;
    assert_eq!(dl.payload, expired);
    assert_eq!(dl.source_topic, env.topics.requests());

    // Four requests: the first two are answered, the last two rate-limited.
    let consumer = responses_from_now(&ctl)?;
    let mut sent = Vec::new();
    for i in 0..4 {
        let (envl, id, key) = seal(
            &reg,
            &me,
            &ask(&twin, json!({"op": "read", "i": i})),
            now_ms(),
        )?;
        ctl.send(&ctl.topics.requests(), &twin, &envl).await?;
        sent.push((envl, id, key));
    }
    for (_, id, key) in &sent[..2] {
        let a: Answer = wait_answer(&consumer, &reg, id, key, WAIT, |_| {}).await?;
        assert_eq!(a.response["ok"], json!(true));
    }
    env.wait_dead_letter(WAIT, |d| {
        d.payload == sent[3].0 && d.reason == "rate_limited"
    })
    .await?;
    let limited: Vec<_> = env
        .dead_letters()?
        .into_iter()
        .filter(|d| d.reason == "rate_limited")
        .map(|d| d.payload)
        .collect();
    assert_eq!(limited, vec![sent[2].0.clone(), sent[3].0.clone()]);
    assert_eq!(
        worker
            .metric("at_reencrypt_requests_total{outcome=\"rate_limited\"}")
            .await?,
        2.0
    );
    assert_eq!(
        worker
            .metric("at_reencrypt_dead_letters_total{reason=\"expired\"}")
            .await?,
        1.0
    );
    env.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn offline_device_gets_its_request_on_reconnect() -> anyhow::Result<()> {
    let _g = SERIAL.lock().await;
    let env = Env::new().await?;
    let ctl = env.owner_ctl()?;
    let ingest = env.start_ingest().await?;
    let _worker = env.start_worker(&rand_id("reenc"));
    let owner_dir = env.dir.join("owner");
    let owner = Owner::init(&owner_dir, &rand_id("alice"), &ctl).await?;
    let twin = rand_id("pump");
    let d1 = env.device(&owner, &ctl, &twin, "d1").await?;
    // Recorded without `sync`, so no echo comes back through the bridge.
    d1.device
        .lock()
        .map_err(|_| anyhow::anyhow!("lock"))?
        .record(&["location"], json!({"rpm": 1200}), now_ms())?;
    let (dir, password) = (d1.dir.clone(), d1.password.clone());
    d1.stop().await;

    let me = Requester::open(&owner_dir)?;
    let reg = ctl.registry().await?;
    let consumer = responses_from_now(&ctl)?;
    let (envl, id, key) = seal(&reg, &me, &ask(&twin, json!({"op": "read"})), now_ms())?;
    ctl.send(&ctl.topics.requests(), &twin, &envl).await?;
    // The bridge hands it to the broker, which keeps it in the device's persistent session.
    ingest
        .wait_metric("at_ingest_messages_out_total{path=\"down\"}", 1.0, WAIT)
        .await
        .map_err(|e| e.context("request never left the bridge"))?;
    let d1 = TestDevice::start(&env, &dir, &password).await?;
    let a = wait_answer(&consumer, &reg, &id, &key, WAIT, |_| {}).await?;
    assert_eq!(a.device_id, "d1");
    assert_eq!(a.response["state"], json!({"rpm": 1200}));
    assert_eq!(served(&d1), 1);
    env.stop().await;
    Ok(())
}

/// Publishes raw bytes on `topic` with a device's MQTT login.
async fn publish_as(
    env: &Env,
    user: &str,
    password: &str,
    topic: &str,
    payload: Vec<u8>,
) -> anyhow::Result<()> {
    let mut o = armored_base::mqtt::options(&env.mqtt(user, password, &rand_id("raw")), false)?;
    o.set_clean_session(true);
    let (c, mut el) = rumqttc::AsyncClient::new(o, 10);
    c.publish(topic, rumqttc::QoS::AtLeastOnce, false, payload)
        .await?;
    tokio::time::timeout(WAIT, async {
        loop {
            match el.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(anyhow::anyhow!("raw publish: {e}")),
            }
        }
    })
    .await??;
    let _ = c.disconnect().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_requests_and_responses_are_dead_lettered() -> anyhow::Result<()> {
    let _g = SERIAL.lock().await;
    let env = Env::new().await?;
    let ctl = env.owner_ctl()?;
    let ingest = env.start_ingest().await?;
    let worker = env.start_worker(&rand_id("reenc"));
    let owner_dir = env.dir.join("owner");
    let owner = Owner::init(&owner_dir, &rand_id("alice"), &ctl).await?;
    let twin = rand_id("gate");
    let d1 = env.device(&owner, &ctl, &twin, "d1").await?;
    let d2 = env.device(&owner, &ctl, &twin, "d2").await?;
    let me = Requester::open(&owner_dir)?;
    let reg = ctl.registry().await?;
    let owner_pre = reg
        .twin_owner(&twin)
        .map(|o| o.pre.clone())
        .ok_or_else(|| anyhow::anyhow!("owner"))?;

    // Requests with reserved attributes, and a state change on the request topic.
    let mut keys = EpochKeyManager::new(owner_pre, &twin)?;
    let epoch = epoch_of(now_ms(), 3_600_000);
    let rkey = ResponseKey::generate(&mut OsRng);
    for attrs in [&["req", "sync"][..], &["req", "mpc-share", "node-1"][..]] {
        let k = keys.key_for(epoch, attrs, &mut OsRng)?;
        let bad = seal_request(
            k,
            owner.signing_key(),
            &RequestInput {
                requester_id: "alice",
                request_id: new_request_id(&mut OsRng),
                response_key: &rkey,
                body: b"{}".to_vec(),
                expires_at_ms: now_ms() + 300_000,
                issued_at_ms: now_ms(),
                write_token: None,
            },
            &mut OsRng,
        )?;
        ctl.send(&ctl.topics.requests(), &twin, &bad).await?;
    }
    let state_change = d1
        .device
        .lock()
        .map_err(|_| anyhow::anyhow!("lock"))?
        .record(&["location"], json!({"x": 1}), now_ms())?;
    ctl.send(&ctl.topics.requests(), &twin, &state_change)
        .await?;
    ctl.send(&ctl.topics.requests(), &twin, b"\x00not a request")
        .await?;
    env.wait_dead_letter(WAIT, |d| d.reason == "not_a_request")
        .await?;
    env.wait_dead_letter(WAIT, |d| {
        d.reason == "malformed" && d.source_topic == env.topics.requests()
    })
    .await?;
    let reserved = env
        .dead_letters()?
        .iter()
        .filter(|d| d.reason == "reserved_attribute" && d.source_topic == env.topics.requests())
        .count();
    assert_eq!(reserved, 2);
    assert_eq!(
        worker
            .metric("at_reencrypt_dead_letters_total{reason=\"reserved_attribute\"}")
            .await?,
        2.0
    );

    // Responses: garbage, and a well-formed one that claims to come from d2 on d1's topic. The raw
    // publishes log in as d1, then d2: one user = one session (client ids are bound to users), so
    // each device's link is stopped first (it would take its session back and drop the raw client)
    // and d2 is started again to answer the request below.
    let user = format!("{twin}/d1");
    let (d1_password, d2_dir, d2_password) =
        (d1.password.clone(), d2.dir.clone(), d2.password.clone());
    drop(d1.stop().await);
    publish_as(
        &env,
        &user,
        &d1_password,
        &format!("at/v1/resp/{twin}/d1"),
        b"garbage".to_vec(),
    )
    .await?;
    env.wait_dead_letter(WAIT, |d| d.reason == "malformed" && d.service == "ingest")
        .await?;
    let claim = v1::ResponseEnvelope {
        version: WIRE_VERSION,
        request_id: vec![7; 16],
        twin_id: twin.clone(),
        device_id: "d2".into(),
        nonce: vec![0; 12],
        ciphertext: vec![0; 32],
    }
    .encode_to_vec();
    publish_as(
        &env,
        &user,
        &d1_password,
        &format!("at/v1/resp/{twin}/d1"),
        claim.clone(),
    )
    .await?;
    let dl = env
        .wait_dead_letter(WAIT, |d| d.reason == "id_mismatch")
        .await?;
    assert_eq!(dl.payload, claim);
    // The same bytes on d2's own topic pass the edge, but the requester's check refuses them (no
    // response key opens them): a forged answer on the topic never becomes an answer.
    let consumer = responses_from_now(&ctl)?;
    let (envl, id, key) = seal(&reg, &me, &ask(&twin, json!({"op": "read"})), now_ms())?;
    let forged = v1::ResponseEnvelope {
        request_id: id.to_vec(),
        ..decode_strict::<v1::ResponseEnvelope>("ResponseEnvelope", &claim, 1 << 16)?
    }
    .encode_to_vec();
    drop(d2.stop().await);
    publish_as(
        &env,
        &format!("{twin}/d2"),
        &d2_password,
        &format!("at/v1/resp/{twin}/d2"),
        forged,
    )
    .await?;
    let _d2 = TestDevice::start(&env, &d2_dir, &d2_password).await?;
    ctl.send(&ctl.topics.requests(), &twin, &envl).await?;
    let mut refused = Vec::new();
    let a = wait_answer(&consumer, &reg, &id, &key, WAIT, |e| {
        refused.push(e.reason())
    })
    .await?;
    assert_eq!(refused, vec!["payload_auth"]);
    assert_eq!(a.response["ok"], json!(true));
    for reason in ["malformed", "id_mismatch"] {
        assert!(
            ingest
                .metric(&format!(
                    "at_ingest_dead_letters_total{{reason=\"{reason}\"}}"
                ))
                .await?
                >= 1.0
        );
    }
    env.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replayed_set_is_refused_and_a_request_living_too_long_is_refused() -> anyhow::Result<()>
{
    let _g = SERIAL.lock().await;
    let env = Env::new().await?;
    let ctl = env.owner_ctl()?;
    let _ingest = env.start_ingest().await?;
    let _worker = env.start_worker(&rand_id("reenc"));
    let owner_dir = env.dir.join("owner");
    let owner = Owner::init(&owner_dir, &rand_id("alice"), &ctl).await?;
    let twin = rand_id("valve");
    let mut d1 = env.device(&owner, &ctl, &twin, "d1").await?;
    let me = Requester::open(&owner_dir)?;
    let reg = ctl.registry().await?;
    let consumer = responses_from_now(&ctl)?;

    // x = 1, then x = 2; both answered.
    let mut captured = Vec::new();
    for x in [1, 2] {
        let (envl, id, key) = seal(
            &reg,
            &me,
            &ask(&twin, json!({"op": "set", "field": "x", "value": x})),
            now_ms(),
        )?;
        ctl.send(&ctl.topics.requests(), &twin, &envl).await?;
        let a: Answer = wait_answer(&consumer, &reg, &id, &key, WAIT, |_| {}).await?;
        assert_eq!(a.response["ok"], json!(true), "set x = {x}");
        captured.push(envl);
    }
    // Whoever captured the first request writes it to the log again: the device refuses it, and
    // x stays 2 (running it again would roll the state back to 1).
    ctl.send(&ctl.topics.requests(), &twin, &captured[0])
        .await?;
    let seen = d1
        .collect_until(WAIT, |e| {
            e.iter().any(|x| {
                matches!(x, LinkEvent::Rejected { reason, .. } if *reason == "duplicate_request")
            })
        })
        .await;
    assert!(
        seen.iter().any(
            |x| matches!(x, LinkEvent::Rejected { reason, .. } if *reason == "duplicate_request")
        ),
        "the replay was not refused as a duplicate: {:?}",
        kinds(&seen)
    );
    let x = d1
        .device
        .lock()
        .map_err(|_| anyhow::anyhow!("lock"))?
        .state()
        .fields
        .get("x")
        .cloned();
    assert_eq!(x, Some(json!(2)), "the replayed set rolled the state back");

    // A request that asks to live 48 h (the cap is 24 h): refused by the device.
    let (long, _, _) = seal(
        &reg,
        &me,
        &Ask {
            ttl: Duration::from_secs(48 * 3600),
            ..ask(&twin, json!({"op": "read"}))
        },
        now_ms(),
    )?;
    ctl.send(&ctl.topics.requests(), &twin, &long).await?;
    let seen = d1
        .collect_until(WAIT, |e| {
            e.iter().any(
                |x| matches!(x, LinkEvent::Rejected { reason, .. } if *reason == "request_refused"),
            )
        })
        .await;
    assert!(
        seen.iter().any(
            |x| matches!(x, LinkEvent::Rejected { reason, .. } if *reason == "request_refused")
        ),
        "a 48 h request was not refused: {:?}",
        kinds(&seen)
    );
    env.stop().await;
    Ok(())
}

/// What each link event was, without its bytes.
fn kinds(events: &[LinkEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e {
            LinkEvent::Downlink(Event::Request { op, ok, .. }) => format!("request {op} ok={ok}"),
            LinkEvent::Downlink(ev) => format!("{:?}", std::mem::discriminant(ev)),
            LinkEvent::Rejected { reason, .. } => format!("rejected {reason}"),
            other => format!("{other:?}"),
        })
        .collect()
}
