//! `harden events tail`: an ordered JetStream consumer that prints each event notice as a JSON
//! line. It is meant to be copied: an integrator's subscriber does the same, deduplicating on the
//! `Nats-Msg-Id` header.

use std::io::Write;

use anyhow::Context;
use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use uuid::Uuid;

pub struct TailOptions {
    pub nats_url: String,
    pub stream: String,
    pub subject_prefix: String,
    pub org: Option<Uuid>,
    /// Replay the stream from its first message instead of starting with new ones.
    pub from_start: bool,
    /// Stop after this many messages.
    pub limit: Option<usize>,
}

pub async fn tail(options: TailOptions, out: &mut impl Write) -> anyhow::Result<()> {
    let client = async_nats::connect(crate::servers(&options.nats_url)).await.context("Failed to connect to NATS")?;
    let js = jetstream::new(client);
    let stream = js.get_stream(&options.stream).await.with_context(|| format!("No stream {}", options.stream))?;
    let filter = match options.org {
        Some(org) => format!("{}.{org}.>", options.subject_prefix),
        None => format!("{}.>", options.subject_prefix),
    };
    let deliver_policy = if options.from_start { consumer::DeliverPolicy::All } else { consumer::DeliverPolicy::New };
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig { filter_subject: filter, deliver_policy, ..Default::default() })
        .await
        .context("Failed to create a consumer")?;
    let mut messages = consumer.messages().await?;
    let mut seen = 0;
    while let Some(message) = messages.next().await {
        let message = message?;
        let notice: serde_json::Value = serde_json::from_slice(&message.payload).unwrap_or(serde_json::Value::Null);
        let line = serde_json::json!({ "subject": message.subject.as_str(), "event": notice });
        writeln!(out, "{line}")?;
        out.flush()?;
        seen += 1;
        if options.limit.is_some_and(|limit| seen >= limit) {
            break;
        }
    }
    Ok(())
}
