//! Differential property test of the `COPY` text decoder against sqlx's own
//! decoding, on a real PostgreSQL server.
//!
//! Each case is a batch of 1 to 500 generated rows of a table with a column
//! of every type the reconciler reads from PostgreSQL: integers of each
//! width, `numeric` (`NaN` and infinities too), `real` and `double
//! precision` (every kind of value: NaN, infinities, negative zero,
//! subnormals), booleans, `text`, `varchar` and `char` holding backslashes,
//! tabs, newlines, carriage returns, every other control character,
//! multi-byte text, empty strings and the two characters `\N`; dates
//! and timestamps with and without a zone (BC and infinite ones too),
//! times with and without a zone, intervals, `inet`, `uuid`, `bytea`,
//! `json`, `jsonb`, `text[]` and `integer[]`; and NULL anywhere. (Types
//! the reconciler has no class for are read as their text, as these last
//! ones are.) The
//! batch is inserted in one statement (`INSERT … SELECT … FROM UNNEST` of
//! bound arrays), then read three ways, each with the reconciler's own
//! select list (`Dialect::select_expr`):
//! - the reconciler's merge reader, `read_range`: `COPY (SELECT …) TO
//!   STDOUT` on the native connection, lines split, fields decoded by
//!   [`decode_field`](super::decode_field) as the column's class says;
//! - sqlx's native PostgreSQL decoding over the binary protocol, each
//!   column as its Rust type (`i16`, `f32`, `bool`, `Vec<u8>`, `String`, …),
//!   mapped to the value the reconciler's contract names (integers and
//!   booleans as integers, floats widened to `f64`, `bytea` as bytes, the
//!   rest as text);
//! - the `Any` driver's decoding (`Source::fetch`), which every other path
//!   of the reconciler uses on PostgreSQL.
//!
//! All three must hold the same value for every field: bit for bit for
//! floats (any NaN equals any NaN), and so the same after any
//! normalization. Where the value is the generated one by construction
//! (integers, floats, booleans, text, `bytea`, `json`, which keeps its
//! text), it must also equal what was generated.
//!
//! A case is a batch of rows: large batches keep the database's share of a
//! long run small. `STRANGLER_PROPTEST_CASES` sets the number of batches
//! (8 otherwise, so that the ordinary suite stays at a few seconds); the
//! rows checked, about 250 a batch, are what the long runs in
//! `docs/reliability.md` count, and the test prints their number.

use std::cell::RefCell;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mapping::Side;
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
use sqlx::postgres::{PgConnection, PgRow};
use sqlx::{Column, Connection, Row, TypeInfo};
use test_harness::properties::config;
use test_harness::TestDatabase;
use tokio::sync::mpsc;
use toolkit_db::sql_value::SqlValue;

use crate::merge::KeyRange;
use crate::plan::{plan_table, SidePlan};
use crate::read::{read_range, BatchSize};
use crate::source::Source;

/// The table: a bigint key, then one column per type. Unlogged: its rows
/// live for one batch, and the write-ahead log would cost more than the
/// reading that is tested.
const TABLE: &str =
    "CREATE UNLOGGED TABLE cases (id bigint PRIMARY KEY, i2 smallint, i4 integer, i8 bigint, \
     n numeric, f4 real, f8 double precision, b boolean, t text, v varchar(40), c char(5), \
     d date, ts timestamp, tz timestamptz, tm time, u uuid, by bytea, j json, jb jsonb, ta text[], \
     iv interval, ttz timetz, ip inet, ia integer[])";

/// The columns after the key, in order.
const COLUMNS: [&str; 23] = [
    "i2", "i4", "i8", "n", "f4", "f8", "b", "t", "v", "c", "d", "ts", "tz", "tm", "u", "by", "j", "jb", "ta",
    "iv", "ttz", "ip", "ia",
];

/// One batch per statement: every column an array, cast where PostgreSQL
/// takes the value as text; the array column gets the generated element
/// beside a NULL and one that needs quoting.
const INSERT: &str = "INSERT INTO cases SELECT id, i2, i4, i8, CAST(n AS numeric), f4, f8, b, t, v, c, \
     CAST(d AS date), CAST(ts AS timestamp), CAST(tz AS timestamptz), CAST(tm AS time), CAST(u AS uuid), by, \
     CAST(j AS json), CAST(jb AS jsonb), CASE WHEN ta IS NULL THEN NULL ELSE ARRAY[ta, NULL, 'a \"b\" \\c,{}'] END, \
     CAST(iv AS interval), CAST(ttz AS timetz), CAST(ip AS inet), \
     CASE WHEN ia IS NULL THEN NULL ELSE ARRAY[ia, NULL, -ia] END \
     FROM UNNEST($1::int8[], $2::int2[], $3::int4[], $4::int8[], $5::text[], $6::float4[], $7::float8[], \
     $8::bool[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[], \
     $16::text[], $17::bytea[], $18::text[], $19::text[], $20::text[], $21::text[], $22::text[], $23::text[], \
     $24::int4[]) \
     AS u(id, i2, i4, i8, n, f4, f8, b, t, v, c, d, ts, tz, tm, u, by, j, jb, ta, iv, ttz, ip, ia)";

/// Rows per batch, at most.
const MAX_ROWS: usize = 500;

/// Batches in the ordinary suite, where `STRANGLER_PROPTEST_CASES` is not
/// set: far fewer than test-harness's default, since each is up to 500
/// rows on a real server (about 2,000 rows, a few seconds in a debug
/// build).
const DEFAULT_BATCHES: u32 = 8;

/// One generated row (the key is its place in the batch).
#[derive(Debug, Clone)]
struct Generated {
    i2: Option<i16>,
    i4: Option<i32>,
    i8: Option<i64>,
    n: Option<String>,
    f4: Option<f32>,
    f8: Option<f64>,
    b: Option<bool>,
    t: Option<String>,
    v: Option<String>,
    c: Option<String>,
    d: Option<String>,
    ts: Option<String>,
    tz: Option<String>,
    tm: Option<String>,
    u: Option<String>,
    by: Option<Vec<u8>>,
    j: Option<String>,
    jb: Option<String>,
    ta: Option<String>,
    iv: Option<String>,
    ttz: Option<String>,
    ip: Option<String>,
    // Never `i32::MIN`, whose negation the array also holds.
    ia: Option<i32>,
}

/// A value, or NULL one time in ten.
fn maybe<T: std::fmt::Debug>(values: impl Strategy<Value = T>) -> impl Strategy<Value = Option<T>> {
    prop::option::weighted(0.9, values)
}

/// Characters `COPY` must escape or that sit next to its escapes:
/// backslash, every control character but NUL (which PostgreSQL text
/// cannot hold; tab, newline and carriage return among them), `N` (for
/// `\N`), quotes, braces, commas and spaces (array and JSON text), and
/// multi-byte characters.
fn alphabet() -> Vec<char> {
    let mut chars: Vec<char> = (1u8..0x20).map(char::from).collect();
    for _ in 0..3 {
        chars.extend(['\\', '\t', '\n', '\r', 'N']);
    }
    chars.extend([
        '"', '\'', ',', '{', '}', ' ', '.', 'x', '0', 'é', 'ß', '€', '😀', '\u{7f}', '\u{80}', '\u{2028}',
        '\u{feff}',
    ]);
    chars
}

/// Text from [`alphabet`] or any Unicode at all, up to `max` characters,
/// or empty, or `\N` itself. One choice per character keeps generation
/// cheap enough for runs of millions of rows.
fn text(max: usize) -> impl Strategy<Value = String> {
    // A range, not a filter: rejected values count against proptest's
    // limit over a whole long run.
    let any_char = prop::char::range('\u{1}', char::MAX);
    prop_oneof![
        6 => prop::collection::vec(prop::sample::select(alphabet()), 0..=max)
            .prop_map(|chars| chars.into_iter().collect::<String>()),
        2 => prop::collection::vec(any_char, 0..=max).prop_map(|chars| chars.into_iter().collect::<String>()),
        1 => Just(String::new()),
        1 => Just("\\N".to_owned()),
    ]
}

/// Up to `max` decimal digits, at least one.
fn digits(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(0u8..10, 1..=max)
        .prop_map(|d| d.into_iter().map(|d| char::from(b'0' + d)).collect())
}

/// `numeric` text: integers and fractions of up to 30 digits each side,
/// signs, and the special values.
fn numeric() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => (any::<bool>(), digits(30), prop::option::of(digits(30))).prop_map(|(minus, whole, fraction)| {
            let sign = if minus { "-" } else { "" };
            match fraction {
                Some(fraction) => format!("{sign}{whole}.{fraction}"),
                None => format!("{sign}{whole}"),
            }
        }),
        1 => prop::sample::select(vec!["NaN", "Infinity", "-Infinity", "0", "-0.000"]).prop_map(str::to_owned),
    ]
}

/// A date as `YYYY-MM-DD`, some BC, or an infinity.
fn date() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => (1u32..=9999, 1u32..=12, 1u32..=28).prop_map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}")),
        1 => (1u32..=4713, 1u32..=12, 1u32..=28).prop_map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02} BC")),
        1 => prop::sample::select(vec!["infinity", "-infinity"]).prop_map(str::to_owned),
    ]
}

/// A time of day, to the microsecond or not.
fn time() -> impl Strategy<Value = String> {
    (0u32..24, 0u32..60, 0u32..60, prop::option::of(0u32..1_000_000)).prop_map(|(h, m, s, micros)| {
        match micros {
            Some(micros) => format!("{h:02}:{m:02}:{s:02}.{micros:06}"),
            None => format!("{h:02}:{m:02}:{s:02}"),
        }
    })
}

/// A timestamp; `zone` adds a UTC offset.
fn timestamp(zone: bool) -> impl Strategy<Value = String> {
    let offset = prop_oneof![
        Just(String::new()),
        Just("Z".to_owned()),
        (any::<bool>(), 0u32..15, prop::sample::select(vec![0u32, 30, 45]))
            .prop_map(|(minus, h, m)| format!("{}{h:02}:{m:02}", if minus { '-' } else { '+' })),
    ];
    let era = prop::sample::select(vec!["", "", "", "", "", "", "", " BC"]);
    let at = (1u32..=9999, 1u32..=12, 1u32..=28, time(), offset, era).prop_map(
        move |(y, mo, d, t, offset, era)| {
            let offset = if zone { offset } else { String::new() };
            // PostgreSQL's timestamps begin in 4713 BC.
            let y = if era.is_empty() { y } else { y.min(4713) };
            format!("{y:04}-{mo:02}-{d:02} {t}{offset}{era}")
        },
    );
    prop_oneof![
        12 => at,
        1 => prop::sample::select(vec!["infinity", "-infinity"]).prop_map(str::to_owned),
    ]
}

/// An interval: years to microseconds, each part signed, in PostgreSQL's
/// input syntax.
fn interval() -> impl Strategy<Value = String> {
    (-200i32..200, -20i32..20, -400i32..400, -100i64..100, -59i32..60, -59i32..60, 0u32..1_000_000).prop_map(
        |(years, months, days, hours, minutes, seconds, micros)| {
            format!(
                "{years} years {months} mons {days} days {hours} hours {minutes} mins {seconds}.{micros:06} secs"
            )
        },
    )
}

/// A time with a UTC offset.
fn time_with_zone() -> impl Strategy<Value = String> {
    (
        time(),
        any::<bool>(),
        0u32..15,
        prop::sample::select(vec![0u32, 30, 45]),
    )
        .prop_map(|(t, minus, h, m)| format!("{t}{}{h:02}:{m:02}", if minus { '-' } else { '+' }))
}

/// An IPv4 or IPv6 host or network.
fn inet() -> impl Strategy<Value = String> {
    prop_oneof![
        (any::<[u8; 4]>(), prop::option::of(0u8..=32)).prop_map(|(a, bits)| {
            let host = std::net::Ipv4Addr::from(a);
            bits.map_or(host.to_string(), |bits| format!("{host}/{bits}"))
        }),
        (any::<u128>(), prop::option::of(0u8..=128)).prop_map(|(a, bits)| {
            let host = std::net::Ipv6Addr::from(a);
            bits.map_or(host.to_string(), |bits| format!("{host}/{bits}"))
        }),
    ]
}

/// JSON text: an object holding hostile text as a key and a value.
fn json() -> impl Strategy<Value = String> {
    (text(12), text(12), any::<i32>()).prop_map(|(key, value, number)| {
        let key = serde_json::Value::from(key).to_string();
        let value = serde_json::Value::from(value).to_string();
        format!("{{{key}: {value}, \"n\": [{number}, null, true]}}")
    })
}

fn generated() -> impl Strategy<Value = Generated> {
    let numbers = (
        maybe(any::<i16>()),
        maybe(any::<i32>()),
        maybe(any::<i64>()),
        maybe(numeric()),
        maybe(any::<f32>()),
        maybe(any::<f64>()),
        maybe(any::<bool>()),
    );
    let texts = (maybe(text(60)), maybe(text(40)), maybe(text(5)));
    let times = (
        maybe(date()),
        maybe(timestamp(false)),
        maybe(timestamp(true)),
        maybe(time()),
    );
    let others = (
        maybe(any::<u128>().prop_map(|u| uuid_text(u, u % 2 == 0))),
        maybe(prop::collection::vec(any::<u8>(), 0..48)),
        maybe(json()),
        maybe(json()),
        maybe(text(20)),
    );
    let more = (
        maybe(interval()),
        maybe(time_with_zone()),
        maybe(inet()),
        maybe(i32::MIN + 1..=i32::MAX),
    );
    (numbers, texts, times, others, more).prop_map(
        |((i2, i4, i8, n, f4, f8, b), (t, v, c), (d, ts, tz, tm), (u, by, j, jb, ta), (iv, ttz, ip, ia))| {
            Generated {
                i2,
                i4,
                i8,
                n,
                f4,
                f8,
                b,
                t,
                v,
                c,
                d,
                ts,
                tz,
                tm,
                u,
                by,
                j,
                jb,
                ta,
                iv,
                ttz,
                ip,
                ia,
            }
        },
    )
}

/// `u` as a hyphenated UUID, in capitals when `upper`.
fn uuid_text(u: u128, upper: bool) -> String {
    let hex = format!("{u:032x}");
    let text = format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    );
    if upper {
        text.to_uppercase()
    } else {
        text
    }
}

/// Rows checked so far, for the long runs' tally.
static ROWS_CHECKED: AtomicU64 = AtomicU64::new(0);

/// What one batch's check needs: the database, its connections, the plan.
struct Bench {
    writer: PgConnection,
    native: PgConnection,
    source: Source,
    plan: SidePlan,
}

impl Bench {
    async fn open(db: &TestDatabase) -> Self {
        let mut writer = PgConnection::connect(db.url().expose())
            .await
            .expect("connecting");
        sqlx::raw_sql(TABLE)
            .execute(&mut writer)
            .await
            .expect("creating the table");
        let mut native = PgConnection::connect(db.url().expose())
            .await
            .expect("connecting");
        // The session the reconciler's own sources set up.
        sqlx::raw_sql("SET TIME ZONE 'UTC'")
            .execute(&mut native)
            .await
            .expect("setting the zone");
        let columns: Vec<String> = std::iter::once("id")
            .chain(COLUMNS)
            .map(|c| format!("{c} = \"{c}\""))
            .collect();
        let text = format!(
            "[[capabilities.c.tables]]\nlegacy = \"cases\"\nservice = \"cases\"\nkey = [\"id\"]\ncolumns = {{ {} }}\n",
            columns.join(", ")
        );
        let mapping = mapping::Mapping::parse(Path::new("cases.toml"), &text).expect("a valid mapping");
        let table = &mapping.capability("c").expect("the capability").tables[0];
        let timeout = Duration::from_secs(60);
        let mut source = Source::connect(Side::Legacy, db.url(), timeout)
            .await
            .expect("a source");
        let mut other = Source::connect(Side::Service, db.url(), timeout)
            .await
            .expect("a source");
        let plan = plan_table(table, &mut source, &mut other)
            .await
            .expect("a plan")
            .legacy;
        other.close().await;
        Self {
            writer,
            native,
            source,
            plan,
        }
    }

    /// Replaces the table's rows with `rows`, keyed 1, 2, ….
    async fn insert(&mut self, rows: &[Generated]) {
        // TRUNCATE, not DELETE: deleted rows would pile up between two
        // autovacuums and slow every batch after them.
        sqlx::raw_sql("TRUNCATE cases")
            .execute(&mut self.writer)
            .await
            .expect("emptying the table");
        let column = |f: fn(&Generated) -> Option<String>| rows.iter().map(f).collect::<Vec<_>>();
        let ids: Vec<i64> = (1..=rows.len() as i64).collect();
        sqlx::query(INSERT)
            .bind(ids)
            .bind(rows.iter().map(|r| r.i2).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.i4).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.i8).collect::<Vec<_>>())
            .bind(column(|r| r.n.clone()))
            .bind(rows.iter().map(|r| r.f4).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.f8).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.b).collect::<Vec<_>>())
            .bind(column(|r| r.t.clone()))
            .bind(column(|r| r.v.clone()))
            .bind(column(|r| r.c.clone()))
            .bind(column(|r| r.d.clone()))
            .bind(column(|r| r.ts.clone()))
            .bind(column(|r| r.tz.clone()))
            .bind(column(|r| r.tm.clone()))
            .bind(column(|r| r.u.clone()))
            .bind(rows.iter().map(|r| r.by.clone()).collect::<Vec<_>>())
            .bind(column(|r| r.j.clone()))
            .bind(column(|r| r.jb.clone()))
            .bind(column(|r| r.ta.clone()))
            .bind(column(|r| r.iv.clone()))
            .bind(column(|r| r.ttz.clone()))
            .bind(column(|r| r.ip.clone()))
            .bind(rows.iter().map(|r| r.ia).collect::<Vec<_>>())
            .execute(&mut self.writer)
            .await
            .expect("inserting the batch");
    }

    /// The rows as the merge reads them: `COPY` text lines, decoded.
    async fn through_copy(&mut self) -> Result<Vec<Vec<SqlValue>>, TestCaseError> {
        let (tx, mut rx) = mpsc::channel(4);
        let mut size = BatchSize::new(MAX_ROWS + 1, MAX_ROWS + 1, Duration::from_secs(1));
        let whole = KeyRange::default();
        let read = read_range(&mut self.source, &self.plan, 1, &whole, &mut size, tx);
        let collect = async {
            let mut rows = Vec::new();
            while let Some(chunk) = rx.recv().await {
                rows.extend(chunk);
            }
            rows
        };
        let (read, rows) = tokio::join!(read, collect);
        read.map_err(|error| TestCaseError::fail(format!("COPY failed: {}", error.chain())))?;
        prop_assert!(
            rows.iter().all(|row| row.raw().is_some()),
            "rows must come through COPY"
        );
        rows.into_iter()
            .map(|row| row.values(&self.plan))
            .collect::<Result<_, _>>()
            .map_err(|error| TestCaseError::fail(format!("decoding failed: {error}")))
    }

    /// The same select list, in key order.
    fn select(&self) -> String {
        format!(
            "SELECT {} FROM {} t ORDER BY t.id",
            self.plan.select_list,
            self.plan.dialect.quote(&self.plan.table)
        )
    }

    /// The rows as sqlx's PostgreSQL driver decodes them.
    async fn through_sqlx(&mut self) -> Vec<Vec<SqlValue>> {
        let rows = sqlx::query(&self.select())
            .fetch_all(&mut self.native)
            .await
            .expect("reading through sqlx");
        rows.iter().map(native_values).collect()
    }

    /// The rows as the `Any` driver decodes them.
    async fn through_any(&mut self) -> Result<Vec<Vec<SqlValue>>, TestCaseError> {
        let select = self.select();
        self.source
            .fetch(&select, &[], &self.plan.classes, "reading through Any")
            .await
            .map_err(|error| TestCaseError::fail(format!("the Any driver failed: {}", error.chain())))
    }
}

/// A row of sqlx's native decoding, each column by its wire type, as the
/// value the reconciler's contract names.
fn native_values(row: &PgRow) -> Vec<SqlValue> {
    fn get<'r, T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>>(
        row: &'r PgRow,
        i: usize,
    ) -> Option<T> {
        row.try_get::<Option<T>, _>(i).expect("a decodable column")
    }
    (0..row.len())
        .map(|i| {
            let kind = row.column(i).type_info().name().to_owned();
            let value = match kind.as_str() {
                "INT2" => get::<i16>(row, i).map(|v| SqlValue::Int(v.into())),
                "INT4" => get::<i32>(row, i).map(|v| SqlValue::Int(v.into())),
                "INT8" => get::<i64>(row, i).map(SqlValue::Int),
                "FLOAT4" => get::<f32>(row, i).map(|v| SqlValue::Float(v.into())),
                "FLOAT8" => get::<f64>(row, i).map(SqlValue::Float),
                "BOOL" => get::<bool>(row, i).map(|v| SqlValue::Int(v.into())),
                "BYTEA" => get::<Vec<u8>>(row, i).map(SqlValue::Bytes),
                "TEXT" | "VARCHAR" => get::<String>(row, i).map(SqlValue::Text),
                other => panic!("the select list gave a {other} column"),
            };
            value.unwrap_or(SqlValue::Null)
        })
        .collect()
}

/// Equal values: floats bit for bit, any NaN equal to any NaN.
fn same_value(a: &SqlValue, b: &SqlValue) -> bool {
    match (a, b) {
        (SqlValue::Float(x), SqlValue::Float(y)) => x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
        _ => a == b,
    }
}

/// What a column holds when the value is the generated one by
/// construction: `None` where PostgreSQL spells it its own way.
fn expected(row: &Generated, column: &str) -> Option<SqlValue> {
    let text = |v: &Option<String>| v.clone().map_or(SqlValue::Null, SqlValue::Text);
    Some(match column {
        "i2" => row.i2.map_or(SqlValue::Null, |v| SqlValue::Int(v.into())),
        "i4" => row.i4.map_or(SqlValue::Null, |v| SqlValue::Int(v.into())),
        "i8" => row.i8.map_or(SqlValue::Null, SqlValue::Int),
        "f4" => row.f4.map_or(SqlValue::Null, |v| SqlValue::Float(v.into())),
        "f8" => row.f8.map_or(SqlValue::Null, SqlValue::Float),
        "b" => row.b.map_or(SqlValue::Null, |v| SqlValue::Int(v.into())),
        "t" => text(&row.t),
        "v" => text(&row.v),
        // char(n) as text drops the padding, and so any trailing spaces.
        "c" => row.c.as_ref().map_or(SqlValue::Null, |c| {
            SqlValue::Text(c.trim_end_matches(' ').to_owned())
        }),
        "u" => row
            .u
            .as_ref()
            .map_or(SqlValue::Null, |u| SqlValue::Text(u.to_lowercase())),
        "by" => row.by.clone().map_or(SqlValue::Null, SqlValue::Bytes),
        // json keeps its text as given.
        "j" => text(&row.j),
        _ => return None,
    })
}

/// Checks one batch: the three readings agree, and match what was
/// generated where that is known.
async fn check(bench: &mut Bench, rows: &[Generated]) -> Result<(), TestCaseError> {
    bench.insert(rows).await;
    let copy = bench.through_copy().await?;
    let native = bench.through_sqlx().await;
    let any = bench.through_any().await?;
    prop_assert_eq!(copy.len(), rows.len());
    prop_assert_eq!(native.len(), rows.len());
    prop_assert_eq!(any.len(), rows.len());
    // The select list's order: the key, then the mapping's columns.
    let names: Vec<String> = bench
        .plan
        .checksum_columns
        .iter()
        .map(|c| c.to_string())
        .collect();
    prop_assert_eq!(names.len(), COLUMNS.len() + 1);
    for (i, generated) in rows.iter().enumerate() {
        for (j, name) in names.iter().enumerate() {
            let (c, n, a) = (&copy[i][j], &native[i][j], &any[i][j]);
            prop_assert!(
                same_value(c, n),
                "row {}, column {name}: COPY decoded {c:?}, sqlx {n:?} ({generated:?})",
                i + 1
            );
            prop_assert!(
                same_value(a, n),
                "row {}, column {name}: Any decoded {a:?}, sqlx {n:?} ({generated:?})",
                i + 1
            );
            if let Some(expected) = expected(generated, name.as_str()) {
                prop_assert!(
                    same_value(n, &expected),
                    "row {}, column {name}: read {n:?}, generated {expected:?}",
                    i + 1
                );
            }
        }
    }
    ROWS_CHECKED.fetch_add(rows.len() as u64, Ordering::Relaxed);
    Ok(())
}

#[test]
fn copy_text_decodes_every_type_as_sqlx_does() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let Some(db) = runtime.block_on(TestDatabase::postgres()) else {
        return;
    };
    let bench = RefCell::new(runtime.block_on(Bench::open(&db)));
    let cases = match std::env::var_os("STRANGLER_PROPTEST_CASES") {
        Some(_) => config().cases,
        None => DEFAULT_BATCHES,
    };
    let mut runner = TestRunner::new(ProptestConfig { cases, ..config() });
    let batches = prop::collection::vec(generated(), 1..=MAX_ROWS);
    let started = std::time::Instant::now();
    let result = runner.run(&batches, |rows| {
        runtime.block_on(check(&mut bench.borrow_mut(), &rows))
    });
    let Bench {
        writer,
        native,
        source,
        ..
    } = bench.into_inner();
    runtime.block_on(async {
        source.close().await;
        let _ = writer.close().await;
        let _ = native.close().await;
    });
    drop(db);
    if let Err(error) = result {
        panic!("{error}");
    }
    // Shown with --nocapture: the long runs' tally.
    println!(
        "copy_text differential: {} rows checked in {:.1} s",
        ROWS_CHECKED.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
}
