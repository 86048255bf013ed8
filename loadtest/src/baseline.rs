//! Raw RabbitMQ on this machine: the rate of publish-with-confirm + consume+ack through one
//! durable quorum queue, with the same message size, window and ack style as the fleet.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Confirmation};
use shared::amqp;
use shared::testkit::unique_prefix;

pub struct Report {
    pub messages: usize,
    pub elapsed: Duration,
}

impl Report {
    pub fn rate(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64()
    }
}

pub async fn run(amqp_url: &str, messages: usize, window: usize) -> anyhow::Result<Report> {
    let queue = format!("{}.baseline", unique_prefix("loadtest"));
    let pub_conn =
        amqp::connect(amqp_url, "loadtest-baseline-pub", Duration::from_secs(15)).await?;
    let sub_conn =
        amqp::connect(amqp_url, "loadtest-baseline-sub", Duration::from_secs(15)).await?;
    let ch = pub_conn.create_channel().await?;
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from(b"quorum".to_vec())),
    );
    ch.queue_declare(
        queue.as_str().into(),
        QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        },
        args,
    )
    .await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;

    // A body the size of a typical echo step message.
    let body = serde_json::to_vec(&serde_json::json!({
        "v": 1, "execution": "arn:aws:states:local:000000000000:execution:loadtest:baseline",
        "cursor": "Map/12345", "seq": 1, "attempt": 1, "resource": "arn:mapfleet:task:::echo",
        "input": {"index": 12345, "name": "item-12345"}
    }))?;

    let (_sub_ch, mut consumer) = amqp::consume(&sub_conn, &queue, "baseline", 256).await?;
    let started = Instant::now();
    let consume = tokio::spawn(async move {
        let mut n = 0;
        while n < messages {
            let d = consumer.next().await.context("consumer ended")??;
            d.acker.ack(BasicAckOptions::default()).await?;
            n += 1;
        }
        anyhow::Ok(())
    });

    let mut pending = VecDeque::with_capacity(window);
    for _ in 0..messages {
        if pending.len() >= window {
            check(pending.pop_front().expect("non-empty")).await?;
        }
        let confirm = ch
            .basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &body,
                BasicProperties::default().with_delivery_mode(2),
            )
            .await?;
        pending.push_back(confirm);
    }
    while let Some(c) = pending.pop_front() {
        check(c).await?;
    }
    consume.await??;
    let elapsed = started.elapsed();
    ch.queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await?;
    Ok(Report { messages, elapsed })
}

async fn check(confirm: lapin::PublisherConfirm) -> anyhow::Result<()> {
    match confirm.await? {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(_)) => bail!("message returned"),
        other => {
            ensure!(other.is_ack(), "broker did not ack: {other:?}");
            Ok(())
        }
    }
}
