//! Kafka refuses what its ACLs do not grant (hardening issue, item 4): a client without credentials,
//! with a wrong password, or signed in as another service cannot write a record the pipeline would
//! trust; each refused record is then looked for on its topic and is not there. Owners and each
//! service have principals of their own: a service cannot write what owners write, nor join
//! another service's consumer group.

use std::time::Duration;

use armored_e2e::Env;
use armored_runtime::config::KafkaConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};

/// Sends one record as `kafka`'s principal, giving up after a few seconds.
async fn send(kafka: &KafkaConfig, topic: &str) -> Result<(), KafkaError> {
    let p: FutureProducer = armored_runtime::kafka::base_config(kafka)
        .set("message.timeout.ms", "8000")
        .set("acks", "all")
        .create()?;
    p.send(
        FutureRecord::to(topic)
            .key("forged")
            .payload(b"forged record"),
        Duration::from_secs(8),
    )
    .await
    .map(|_| ())
    .map_err(|(e, _)| e)
}

fn code(e: &KafkaError) -> Option<RDKafkaErrorCode> {
    e.rdkafka_error_code()
}

/// `topic` holds no record (read to its end as the super user).
fn empty(env: &Env, topic: &str) -> anyhow::Result<()> {
    let n = env.located(topic)?.len();
    anyhow::ensure!(n == 0, "{n} refused record(s) reached {topic}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_credentials_or_with_a_wrong_password_is_refused() -> anyhow::Result<()> {
    let env = Env::new().await?;
    let sync = env.topics.sync();

    // Plaintext to a SASL_SSL listener: no connection ever comes up.
    let anonymous = KafkaConfig {
        sasl: None,
        ..env.kafka.clone()
    };
    let e = send(&anonymous, &sync)
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("a client without credentials wrote to {sync}"))?;
    println!("without credentials: {e}");

    // The bridge's principal with a wrong password: authentication fails.
    let mut wrong = env.kafka_as("at-ingest")?;
    if let Some(s) = wrong.sasl.as_mut() {
        s.password = "not-the-password".into();
    }
    let e = send(&wrong, &sync)
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("a wrong password wrote to {sync}"))?;
    println!("wrong password: {e}");

    // The right password does write (so the two refusals above are about credentials).
    let ingest = env.kafka_as("at-ingest")?;
    send(&ingest, &env.topics.sync()).await?;
    let n = env.located(&sync)?.len();
    anyhow::ensure!(n == 1, "{n} records on {sync}, expected only the bridge's");
    env.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_services_credentials_do_not_open_its_topics() -> anyhow::Result<()> {
    let env = Env::new().await?;
    let t = &env.topics;
    // (principal, topic it must not write): an MPC node forging state changes past the bridge's
    // checks; an owner's tool forging a peer message (it would abort an MPC attempt), a delivery,
    // a node's share or an output share; the bridge forging a delivery.
    let forgeries = [
        ("at-mpc-node-1", t.sync()),
        ("at-owner", t.mpc_peer()),
        ("at-owner", t.deliver()),
        ("at-owner", t.mpc_shares(1)),
        ("at-owner", t.mpc_results()),
        ("at-owner", t.audit()),
        ("at-ingest", t.deliver()),
        ("at-ingest", t.audit()),
        ("at-reencrypt", t.sync()),
    ];
    for (principal, topic) in &forgeries {
        let kafka = env.kafka_as(principal)?;
        match send(&kafka, topic).await {
            Ok(()) => anyhow::bail!("{principal} wrote to {topic}"),
            Err(e) => anyhow::ensure!(
                code(&e) == Some(RDKafkaErrorCode::TopicAuthorizationFailed),
                "{principal} → {topic}: expected TOPIC_AUTHORIZATION_FAILED, got {e}"
            ),
        }
        empty(&env, topic)?;
    }

    // Reading is closed the same way: node 2 cannot read node 1's shares (records put there by
    // the super user). An owner's tool reads them, for `owner audit --verify`.
    let super_user = armored_client::kafka::Ctl::with_config(env.kafka.clone())?;
    super_user.send(&t.mpc_shares(1), "k", b"share").await?;
    {
        let principal = "at-mpc-node-2";
        let kafka = env.kafka_as(principal)?;
        let read =
            armored_runtime::reader::read_to_end(&kafka, &t.mpc_shares(1), Duration::from_secs(8));
        anyhow::ensure!(
            read.is_err(),
            "{principal} read node 1's share topic: {:?}",
            read.map(|r| r.len())
        );
    }
    // …while node 1 can, and an owner's tool (which checks deliveries against the audit trail).
    for principal in ["at-mpc-node-1", "at-owner"] {
        let kafka = env.kafka_as(principal)?;
        let got =
            armored_runtime::reader::read_to_end(&kafka, &t.mpc_shares(1), Duration::from_secs(8))?;
        anyhow::ensure!(got.len() == 1, "{principal} read {} records", got.len());
    }
    env.stop().await;
    Ok(())
}

/// Polls a consumer of `topic` in `group` as `kafka`'s principal until the broker answers with an
/// error (or `wait` passes: `None`).
fn group_error(
    kafka: &KafkaConfig,
    group: &str,
    topic: &str,
    wait: Duration,
) -> anyhow::Result<Option<KafkaError>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer = armored_runtime::kafka::base_config(kafka)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .create()?;
    c.subscribe(&[topic])?;
    let deadline = std::time::Instant::now() + wait;
    while std::time::Instant::now() < deadline {
        if let Some(Err(e)) = c.poll(Duration::from_millis(200)) {
            return Ok(Some(e));
        }
    }
    Ok(None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_and_each_service_sign_in_as_principals_of_their_own() -> anyhow::Result<()> {
    let env = Env::new().await?;
    let t = &env.topics;
    let a = armored_e2e::rand_id("svc-a");
    let b = armored_e2e::rand_id("svc-b");
    let a_ctl = env.service_ctl(&a).await?;
    env.service_ctl(&b).await?;
    let a_kafka = a_ctl.kafka.clone();
    let b_kafka = env.kafka_as(&armored_client::kafka::service_principal(&b))?;

    // A service may not write what only owners, workers or nodes write; an owner's tool no state
    // change.
    let forgeries = [
        (a_kafka.clone(), t.registry()),
        (a_kafka.clone(), t.rekeys()),
        (a_kafka.clone(), t.tokens()),
        (a_kafka.clone(), t.control()),
        (a_kafka.clone(), t.deliver()),
        (a_kafka.clone(), t.mpc_peer()),
        (env.kafka_as("at-owner")?, t.sync()),
    ];
    for (kafka, topic) in &forgeries {
        let who = armored_client::kafka::principal_of(kafka);
        match send(kafka, topic).await {
            Ok(()) => anyhow::bail!("{who} wrote to {topic}"),
            Err(e) => anyhow::ensure!(
                code(&e) == Some(RDKafkaErrorCode::TopicAuthorizationFailed),
                "{who} → {topic}: expected TOPIC_AUTHORIZATION_FAILED, got {e}"
            ),
        }
        empty(&env, topic)?;
    }
    // A service may write its own changes (so the refusals above are the ACLs').
    send(&a_kafka, &t.sync()).await?;
    anyhow::ensure!(env.located(&t.sync())?.len() == 1, "service {a}'s change");

    // Service A cannot join service B's group (it would commit offsets past B's deliveries, which
    // B would then never read), while B's own principal may.
    let e = group_error(
        &a_kafka,
        &format!("svc-{b}"),
        &t.deliver(),
        Duration::from_secs(15),
    )?
    .ok_or_else(|| anyhow::anyhow!("service {a} joined service {b}'s group"))?;
    anyhow::ensure!(
        code(&e) == Some(RDKafkaErrorCode::GroupAuthorizationFailed),
        "expected GROUP_AUTHORIZATION_FAILED, got {e}"
    );
    let own = group_error(
        &b_kafka,
        &format!("svc-{b}"),
        &t.deliver(),
        Duration::from_secs(5),
    )?;
    anyhow::ensure!(own.is_none(), "service {b} in its own group: {own:?}");
    // A service consuming with the wrong principal stops with a typed error, instead of waiting
    // for deliveries that cannot come.
    let b_dir = env.dir.join("svc-b");
    armored_client::service::Service::init(
        &b_dir,
        &b,
        armored_crypto::identity::PartyKind::Service,
    )?;
    let mut svc_b = armored_client::service::Service::open(&b_dir)?;
    let r = svc_b
        .consume(
            &a_ctl,
            None,
            Some(Duration::from_secs(20)),
            env.shutdown.child_token(),
            |_| {},
        )
        .await;
    anyhow::ensure!(
        matches!(
            r,
            Err(armored_client::ClientError::Kafka(
                armored_client::KafkaError::Refused(_)
            ))
        ),
        "service {b} consuming as {a}'s principal: {r:?}"
    );

    // An owner's tool reads the deliveries (`owner audit --verify` matches them to the audit
    // trail; it cannot open them, and writes none: above) and the audit trail.
    for topic in [t.deliver(), t.audit()] {
        armored_runtime::reader::read_to_end(
            &env.kafka_as("at-owner")?,
            &topic,
            Duration::from_secs(8),
        )?;
    }
    env.stop().await;
    Ok(())
}
