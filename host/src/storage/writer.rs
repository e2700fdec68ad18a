//! Group commit: write operations that arrive together share one transaction and, where the
//! operation kind allows, one statement.
//!
//! SQLite has one writer at a time. Writers that find the lock taken sleep in SQLite's busy
//! handler (1, 2, 5, … 100 ms steps), and a transaction per small write pays `BEGIN`/`COMMIT`
//! and, through sqlx, a hand-over between threads for every statement. A [`Writer`] instead
//! queues operations for one task, which takes every operation waiting (up to [`MAX_BATCH`]),
//! applies them together inside one `BEGIN IMMEDIATE … COMMIT` ([`BatchOp::apply`] may turn a
//! batch into a few many-row statements), and only then answers each caller. Nobody is answered
//! before their writes are committed.
//!
//! When applying or committing a batch fails, it is rolled back and each operation is applied
//! again alone, in its own transaction, so that one operation's error never undoes or fails
//! another's. Operations keep their outcome in themselves until [`BatchOp::answer`], and must
//! tolerate being applied twice (only the committed application is answered).
//!
//! On PostgreSQL, which has concurrent writers, [`Writer::submit`] applies the operation alone
//! in its own transaction, through the same [`BatchOp::apply`]; one that writes with a single
//! statement ([`BatchOp::one_statement`]) needs no transaction and runs without one.

use futures::future::BoxFuture;
use sqlx::AnyConnection;
use tokio::sync::mpsc;

use super::{Backend, Db, Error, Result};

/// The most operations one transaction takes.
const MAX_BATCH: usize = 64;

/// An operation the writer applies in batches.
pub(crate) trait BatchOp: Send + Sized + 'static {
    /// Apply `ops` inside the open transaction on `conn`, keeping each one's outcome in it.
    fn apply<'c>(conn: &'c mut AnyConnection, ops: &'c mut [Self]) -> BoxFuture<'c, Result<()>>;

    /// Tell the caller how it ended: `Ok` once committed (with the kept outcome), else the error.
    fn answer(self, committed: Result<()>);

    /// Whether applying this operation alone writes with a single statement (its reads
    /// before it need no snapshot of their own), so that on PostgreSQL it can run without
    /// `BEGIN`/`COMMIT` (two round trips fewer). SQLite batches always take a transaction.
    fn one_statement(&self) -> bool {
        false
    }
}

/// The queue of one kind of operation, and its task (started on first use).
pub(crate) struct Writer<Op> {
    queue: std::sync::OnceLock<mpsc::UnboundedSender<Op>>,
}

impl<Op> Default for Writer<Op> {
    fn default() -> Self {
        Self {
            queue: std::sync::OnceLock::new(),
        }
    }
}

impl<Op: BatchOp> Writer<Op> {
    /// Hand `op` over; it answers through its own channel.
    pub(crate) async fn submit(&self, db: &Db, op: Op) {
        if db.backend == Backend::Postgres {
            let mut ops = [op];
            let outcome = if ops[0].one_statement() {
                apply_alone(&db.write_turn, &mut ops).await
            } else {
                apply(&db.write_turn, &mut ops).await
            };
            let [op] = ops;
            op.answer(outcome);
            return;
        }
        let queue = self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            // The task gets what it needs, not the `Db` (which owns this writer).
            tokio::spawn(run(db.write_turn.clone(), rx));
            tx
        });
        if let Err(mpsc::error::SendError(op)) = queue.send(op) {
            op.answer(Err(Error::WriterGone));
        }
    }
}

/// The task: until the queue's sender is gone, take what is waiting and commit it together.
async fn run<Op: BatchOp>(turn: super::WriteTurn, mut rx: mpsc::UnboundedReceiver<Op>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        if batch.len() > 1 {
            match apply(&turn, &mut batch).await {
                Ok(()) => {
                    for op in batch.drain(..) {
                        op.answer(Ok(()));
                    }
                    continue;
                }
                Err(e) => {
                    tracing::debug!(error = %e, ops = batch.len(), "group commit failed; each alone")
                }
            }
        }
        for op in batch.drain(..) {
            let mut ops = [op];
            let outcome = apply(&turn, &mut ops).await;
            let [op] = ops;
            op.answer(outcome);
        }
    }
}

/// Apply `ops` that write with one statement, on a connection of the pool outside a
/// transaction (PostgreSQL only: see [`BatchOp::one_statement`]).
async fn apply_alone<Op: BatchOp>(turn: &super::WriteTurn, ops: &mut [Op]) -> Result<()> {
    let mut conn = turn.connection.acquire().await?;
    Op::apply(&mut conn, ops).await
}

/// Apply `ops` in one write transaction of their own (on SQLite in this process's turn to write:
/// see [`super::WriteTx`], which also rolls back a failed batch before handing the turn on).
async fn apply<Op: BatchOp>(turn: &super::WriteTurn, ops: &mut [Op]) -> Result<()> {
    let mut tx = turn.begin().await?;
    Op::apply(&mut tx, ops).await?;
    tx.commit().await
}
