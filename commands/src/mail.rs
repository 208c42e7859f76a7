//! Sending email over SMTP (lettre): verification links and account notices.
//!
//! `HARDEN_SMTP_URL` takes lettre's URL forms: `smtps://user:pass@host` (TLS from the start),
//! `smtp://user:pass@host:587?tls=required` (STARTTLS), or plain `smtp://host:port` (no TLS: only for
//! a relay on the same host or a test server, since credentials would cross in the clear).

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    pub fn new(url: &str, from: &str) -> anyhow::Result<Self> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| anyhow::anyhow!("HARDEN_SMTP_URL is not a usable SMTP URL: {e}"))?
            .timeout(Some(Duration::from_secs(15)))
            .build();
        let from = from.parse::<Mailbox>().map_err(|e| anyhow::anyhow!("HARDEN_SMTP_FROM is not an address: {e}"))?;
        Ok(Self { transport, from })
    }

    pub async fn send(&self, to: &str, subject: &str, body: String) -> anyhow::Result<()> {
        let message = Message::builder()
            .from(self.from.clone())
            .to(to.parse::<Mailbox>()?)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)?;
        self.transport.send(message).await?;
        Ok(())
    }
}
