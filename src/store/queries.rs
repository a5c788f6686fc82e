//! The SQL texts of [`super::SqlStore`], written once for both databases
//! and built at connect time with the [`Dialect`]'s few differing fragments
//! (JSON and timestamp parameters, reading a body back as text).

use sqlx::AssertSqlSafe;

use super::dialect::Dialect;
use crate::protocol::Order;

/// Every SQL text the store runs, built once for its dialect.
#[derive(Debug, Clone)]
pub(super) struct Queries {
    pub(super) thread_seq: String,
    pub(super) insert_thread: String,
    /// Postgres: a new thread and its first item in one statement (SQLite
    /// has no data-modifying `WITH`; it uses a transaction instead).
    pub(super) insert_thread_with_item: Option<String>,
    pub(super) load_thread: String,
    pub(super) update_thread: String,
    pub(super) set_title: String,
    pub(super) delete_thread: String,
    pub(super) item_seq: String,
    pub(super) insert_item: String,
    pub(super) upsert_item: String,
    pub(super) load_item: String,
    pub(super) history: String,
    /// Postgres: the thread's row, an item insert (`$1`..`$7`) if the
    /// thread is active, returning the new row, and the thread's newest `$8`
    /// rows from before it, in one statement.
    pub(super) insert_into_open_thread: Option<String>,
    pub(super) delete_after: String,
    pub(super) count_items: String,
    pub(super) insert_feedback: String,
    /// Listings, indexed by `[order][has cursor]`.
    pub(super) list_threads: [[String; 2]; 2],
    pub(super) list_items: [[String; 2]; 2],
}

impl Queries {
    pub(super) fn new(d: Dialect) -> Queries {
        let body = d.body_text();
        // `limit` and `cursor` are the placeholder numbers of the page size and
        // of the cursor's seq; the cursor is bound only by the variants using it.
        let listing = |select: &str, scope: &str, limit: usize, cursor: usize| {
            let variant = |order: Order, with_cursor: bool| {
                let (cmp, dir) = match order {
                    Order::Asc => (">", "ASC"),
                    Order::Desc => ("<", "DESC"),
                };
                let keyset = if with_cursor {
                    format!(" AND seq {cmp} ${cursor}")
                } else {
                    String::new()
                };
                format!("{select} WHERE {scope}{keyset} ORDER BY seq {dir} LIMIT ${limit}")
            };
            [
                [variant(Order::Asc, false), variant(Order::Asc, true)],
                [variant(Order::Desc, false), variant(Order::Desc, true)],
            ]
        };
        Queries {
            thread_seq: "SELECT seq FROM threads WHERE id = $1 AND user_id = $2".into(),
            insert_thread: format!(
                "INSERT INTO threads (id, user_id, created_at, title, body) VALUES ($1, $2, {}, $4, {})",
                d.time_param(3),
                d.json_param(5)
            ),
            insert_thread_with_item: (d == Dialect::Postgres).then(|| {
                format!(
                    "WITH thread AS (INSERT INTO threads (id, user_id, created_at, title, body) \
                     VALUES ($1, $2, {}, $4, {}) RETURNING id) \
                     INSERT INTO items (id, thread_id, user_id, item_type, hidden, created_at, body) \
                     SELECT $6, id, $2, $7, $8, {}, {} FROM thread",
                    d.time_param(3),
                    d.json_param(5),
                    d.time_param(9),
                    d.json_param(10)
                )
            }),
            load_thread: format!(
                "SELECT id, title, {body} AS body FROM threads WHERE id = $1 AND user_id = $2"
            ),
            update_thread: format!(
                "UPDATE threads SET title = $3, body = {} WHERE id = $1 AND user_id = $2",
                d.json_param(4)
            ),
            set_title:
                "UPDATE threads SET title = $3 WHERE id = $1 AND user_id = $2 AND title IS NULL"
                    .into(),
            delete_thread: "DELETE FROM threads WHERE id = $1 AND user_id = $2".into(),
            item_seq: "SELECT seq FROM items WHERE id = $1 AND thread_id = $2 AND user_id = $3"
                .into(),
            insert_item: format!(
                "INSERT INTO items (id, thread_id, user_id, item_type, hidden, created_at, body) \
                 SELECT $1, $2, $3, $4, $5, {}, {} \
                 WHERE EXISTS (SELECT 1 FROM threads WHERE id = $2 AND user_id = $3)",
                d.time_param(6),
                d.json_param(7)
            ),
            upsert_item: format!(
                "INSERT INTO items (id, thread_id, user_id, item_type, hidden, created_at, body) \
                 SELECT $1, $2, $3, $4, $5, {}, {} \
                 WHERE EXISTS (SELECT 1 FROM threads WHERE id = $2 AND user_id = $3) \
                 ON CONFLICT (id) DO UPDATE SET item_type = excluded.item_type, \
                 hidden = excluded.hidden, body = excluded.body \
                 WHERE items.thread_id = excluded.thread_id AND items.user_id = excluded.user_id",
                d.time_param(6),
                d.json_param(7)
            ),
            load_item: format!(
                "SELECT id, {body} AS body FROM items WHERE id = $1 AND thread_id = $2 AND user_id = $3"
            ),
            history: format!(
                "SELECT id, {body} AS body FROM items WHERE thread_id = $1 AND user_id = $2 \
                 ORDER BY seq DESC LIMIT $3"
            ),
            insert_into_open_thread: (d == Dialect::Postgres).then(|| {
                // The thread's row comes back first (`kind` 'thread', its
                // `seq` 0, which no item has), then the new item from
                // RETURNING, then the thread's items from before it. The
                // status test reads `ThreadStatus` as serde writes it; a
                // body without one is active, as it deserializes.
                format!(
                    "WITH thread AS (SELECT id, title, body FROM threads WHERE id = $2 AND user_id = $3), \
                     added AS (INSERT INTO items (id, thread_id, user_id, item_type, hidden, created_at, body) \
                     SELECT $1, $2, $3, $4, $5, {}, {} FROM thread \
                     WHERE COALESCE(thread.body->'status'->>'type', 'active') = 'active' \
                     RETURNING seq, id, {body} AS body) \
                     SELECT 'thread' AS kind, 0::bigint AS seq, id, title, {body} AS body FROM thread \
                     UNION ALL SELECT 'item', seq, id, NULL, body FROM added UNION ALL \
                     (SELECT 'item', seq, id, NULL, {body} FROM items WHERE thread_id = $2 AND user_id = $3 \
                     ORDER BY seq DESC LIMIT $8)",
                    d.time_param(6),
                    d.json_param(7)
                )
            }),
            delete_after: "DELETE FROM items WHERE thread_id = $1 AND user_id = $2 AND seq > $3"
                .into(),
            count_items:
                "SELECT COUNT(*) FROM items WHERE thread_id = $1 AND user_id = $2 AND id = $3"
                    .into(),
            insert_feedback: format!(
                "INSERT INTO feedback (thread_id, item_id, user_id, kind, created_at) \
                 VALUES ($1, $2, $3, $4, {}) \
                 ON CONFLICT (item_id, user_id) DO UPDATE SET kind = excluded.kind, \
                 created_at = excluded.created_at",
                d.time_param(5)
            ),
            list_threads: listing(
                &format!("SELECT seq, id, title, {body} AS body FROM threads"),
                "user_id = $1",
                2,
                3,
            ),
            list_items: listing(
                &format!("SELECT seq, id, {body} AS body FROM items"),
                "thread_id = $1 AND user_id = $2 AND NOT hidden",
                3,
                4,
            ),
        }
    }
}

/// A query on one of the texts of [`Queries`]: built from constants and the
/// dialect only, never from input, which is what `AssertSqlSafe` asserts.
pub(super) fn query<'q>(sql: &str) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    sqlx::query(AssertSqlSafe(sql))
}

pub(super) fn order_index(order: Order) -> usize {
    match order {
        Order::Asc => 0,
        Order::Desc => 1,
    }
}
