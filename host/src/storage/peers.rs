//! Messages between the hosts that share one database: PostgreSQL `NOTIFY`/`LISTEN` on one
//! channel. On SQLite there is one host, and nothing is sent.
//!
//! A message is a short text whose meaning belongs to its sender and receivers (the sync engine
//! wakes other hosts' workers and carries its events; the plugin catalog carries activations).
//! Each message carries its origin, a random id per [`Db`], so a host never hears its own. One
//! listening connection per [`Db`] is opened on the first [`Db::peer_messages`] call and feeds
//! every receiver; it reconnects by itself (sqlx's `PgListener`), and a receiver that lags
//! loses the oldest messages, which are hints, never the truth: whoever acts on one reads the
//! database.

use std::sync::Arc;

use tokio::sync::broadcast;

use super::{Backend, Db, Result};

/// The channel every Panelink host listens on.
const CHANNEL: &str = "panelink_peers";

/// What a [`Db`] needs to talk to its peers.
pub(crate) struct Peers {
    /// The database URL (PostgreSQL), for the listening connection.
    url: Option<String>,
    /// This `Db`'s origin id.
    origin: String,
    /// Messages heard from other hosts, once listening.
    heard: tokio::sync::OnceCell<broadcast::Sender<String>>,
}

impl Peers {
    pub(crate) fn new(backend: Backend, url: &str) -> Arc<Self> {
        let mut raw = [0u8; 8];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut raw);
        Arc::new(Self {
            url: (backend == Backend::Postgres).then(|| url.to_owned()),
            origin: hex::encode(raw),
            heard: tokio::sync::OnceCell::new(),
        })
    }
}

impl std::fmt::Debug for Peers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peers")
            .field("origin", &self.origin)
            .finish()
    }
}

impl Db {
    /// Tell the other hosts sharing this database `message` (nothing on SQLite). Delivered
    /// after the caller's transaction committed, since it is sent on its own connection.
    pub async fn tell_peers(&self, message: &str) -> Result<()> {
        if self.peers.url.is_none() {
            return Ok(());
        }
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(format!("{} {message}", self.peers.origin))
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Messages other hosts send from now on. The first call returns once this host listens
    /// (or failed to, which is logged and retried in the background). On SQLite, a receiver
    /// that never hears anything.
    pub async fn peer_messages(&self) -> broadcast::Receiver<String> {
        let peers = self.peers.clone();
        let sender = peers
            .heard
            .get_or_init(|| async {
                let (sender, _) = broadcast::channel(1024);
                if let Some(url) = peers.url.clone() {
                    let first = connect(&url).await;
                    tokio::spawn(listen(url, peers.origin.clone(), sender.clone(), first));
                }
                sender
            })
            .await;
        sender.subscribe()
    }
}

async fn connect(url: &str) -> Option<sqlx::postgres::PgListener> {
    let mut listener = match sqlx::postgres::PgListener::connect(url).await {
        Ok(listener) => listener,
        Err(e) => {
            tracing::warn!(error = %e, "could not connect to listen for peers");
            return None;
        }
    };
    match listener.listen(CHANNEL).await {
        Ok(()) => Some(listener),
        Err(e) => {
            tracing::warn!(error = %e, "could not listen for peers");
            None
        }
    }
}

/// The listening connection: forwards what other origins send until nobody listens any more.
async fn listen(
    url: String,
    origin: String,
    heard: broadcast::Sender<String>,
    mut connected: Option<sqlx::postgres::PgListener>,
) {
    let mut delay = std::time::Duration::from_millis(100);
    loop {
        if connected.is_none() {
            connected = connect(&url).await;
        }
        if let Some(mut listener) = connected.take() {
            delay = std::time::Duration::from_millis(100);
            loop {
                match listener.recv().await {
                    Ok(notification) => {
                        let Some((from, message)) = notification.payload().split_once(' ') else {
                            continue;
                        };
                        if from != origin && heard.send(message.to_owned()).is_err() {
                            // Every receiver is gone (the host stopped).
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "lost the peer channel; reconnecting");
                        break;
                    }
                }
            }
        }
        if heard.receiver_count() == 0 {
            return;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(std::time::Duration::from_secs(5));
    }
}
