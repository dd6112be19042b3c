//! One side of a comparison: a dedicated, read-only connection to the
//! monolith's or the service's database, under a statement timeout.
//!
//! The session is made read-only by the engine itself where it can be
//! (PostgreSQL and MySQL `TRANSACTION READ ONLY`, SQLite `query_only`), gets
//! a server-side statement timeout where the engine has one (PostgreSQL
//! `statement_timeout`, MariaDB `max_statement_time`, MySQL
//! `max_execution_time`), and every call is also bounded on the client side,
//! which covers SQLite and a server that stops answering.
//!
//! On PostgreSQL and MySQL a source also holds a second, native connection,
//! set up the same way, for the streaming merge ([`crate::read`]): on
//! PostgreSQL it runs `COPY … TO STDOUT` and rows stay text lines, on MySQL
//! rows are decoded straight from the driver's rows. Both cost far less per
//! row than going through the `Any` driver's own row type.

use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use sqlx::mysql::MySqlConnectOptions;
use sqlx::postgres::PgConnectOptions;
use sqlx::{MySqlConnection, PgConnection};

use mapping::Identifier;
use mapping::Side;
use sqlx::any::AnyConnectOptions;
use sqlx::AnyConnection;
use sqlx::{ConnectOptions, Connection};
use toolkit_db::sql_value::{bind_value, decode_row, SqlValue};
use toolkit_db::{DatabaseUrl, Engine};

use crate::sql::{ColumnClass, Dialect};
use crate::ReconcileError;

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A server engine's own connection.
enum Native {
    Postgres(PgConnection),
    MySql(MySqlConnection),
}

/// An open, read-only connection to one side.
pub struct Source {
    side: Side,
    dialect: Dialect,
    conn: AnyConnection,
    /// The engine's own connection, for the merge's reads.
    native: Option<Native>,
    timeout: Duration,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Source({}, {})", self.side, self.dialect.engine())
    }
}

impl Source {
    /// Connects to `url` as `side` and sets the session up; `timeout` bounds
    /// every statement. A SQLite file must already exist.
    pub async fn connect(side: Side, url: &DatabaseUrl, timeout: Duration) -> Result<Self, ReconcileError> {
        if let Some(path) = url.sqlite_path() {
            if !path.exists() {
                return Err(ReconcileError::MissingFile {
                    side,
                    path: path.display().to_string(),
                });
            }
        }
        sqlx::any::install_default_drivers();
        // Both connections at once: across a network every handshake is a
        // few round trips.
        let native = async {
            Ok::<_, ReconcileError>(match url.engine() {
                Engine::Postgres => Some(Native::Postgres(
                    connect_with::<PgConnectOptions>(side, url).await?,
                )),
                Engine::MySql => Some(Native::MySql(
                    connect_with::<MySqlConnectOptions>(side, url).await?,
                )),
                Engine::Sqlite => None,
            })
        };
        let (conn, native) = tokio::try_join!(connect_with::<AnyConnectOptions>(side, url), native)?;
        let mut source = Self {
            side,
            dialect: Dialect::new(url.engine()),
            conn,
            native,
            timeout,
        };
        source.set_up_session().await?;
        Ok(source)
    }

    async fn set_up_session(&mut self) -> Result<(), ReconcileError> {
        let millis = self.timeout.as_millis();
        let seconds = self.timeout.as_secs().max(1);
        let statements: Vec<String> = match self.dialect.engine() {
            Engine::Postgres => vec![
                "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY".to_owned(),
                format!("SET statement_timeout = {millis}"),
                "SET TIME ZONE 'UTC'".to_owned(),
                // Key literals in COPY statements rely on it (crate::sql::Dialect::literal).
                "SET standard_conforming_strings = on".to_owned(),
            ],
            Engine::MySql => vec![
                "SET SESSION TRANSACTION READ ONLY".to_owned(),
                "SET time_zone = '+00:00'".to_owned(),
            ],
            Engine::Sqlite => vec![
                "PRAGMA query_only = ON".to_owned(),
                "PRAGMA busy_timeout = 5000".to_owned(),
            ],
        };
        if self.dialect.engine() == Engine::Postgres {
            // One round trip: PostgreSQL runs a simple query's statements in
            // order, and stops at the first that fails.
            self.execute(&statements.join("; "), "setting up the read-only session")
                .await?;
        } else {
            for statement in statements {
                self.execute(&statement, "setting up the read-only session")
                    .await?;
            }
        }
        if self.dialect.engine() == Engine::MySql {
            // MariaDB and MySQL name their statement timeouts differently.
            let mariadb = format!("SET SESSION max_statement_time = {seconds}");
            if self
                .execute(&mariadb, "setting the statement timeout")
                .await
                .is_err()
            {
                let mysql = format!("SET SESSION max_execution_time = {millis}");
                if let Err(error) = self.execute(&mysql, "setting the statement timeout").await {
                    tracing::warn!(side = %self.side, error = %error.chain(), "no server-side statement timeout");
                }
            }
        }
        Ok(())
    }

    /// Runs a session statement on both connections.
    async fn execute(&mut self, sql: &str, doing: &str) -> Result<(), ReconcileError> {
        let timeout = self.timeout;
        let any = tokio::time::timeout(timeout, sqlx::raw_sql(sql).execute(&mut self.conn));
        let native = async {
            match &mut self.native {
                None => Ok(Ok(())),
                Some(Native::Postgres(conn)) => {
                    tokio::time::timeout(timeout, sqlx::raw_sql(sql).execute(conn))
                        .await
                        .map(|r| r.map(drop))
                }
                Some(Native::MySql(conn)) => tokio::time::timeout(timeout, sqlx::raw_sql(sql).execute(conn))
                    .await
                    .map(|r| r.map(drop)),
            }
        };
        // Both connections at once, each within the timeout.
        let (any, native) = tokio::join!(any, native);
        for result in [any.map(|r| r.map(drop)), native] {
            match result {
                Ok(Ok(())) => {}
                Ok(Err(source)) => return Err(self.query_error(doing, source)),
                Err(_) => return Err(self.timeout_error(doing)),
            }
        }
        Ok(())
    }

    /// Which side this is.
    pub fn side(&self) -> Side {
        self.side
    }

    /// The SQL dialect of this side.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The statement timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The `Any` connection, for queries whose rows are streamed rather
    /// than collected ([`crate::read`]); the caller bounds them in time.
    pub(crate) fn connection(&mut self) -> &mut AnyConnection {
        &mut self.conn
    }

    /// Whether [`Self::copy_out`] is available (PostgreSQL).
    pub fn can_copy(&self) -> bool {
        matches!(self.native, Some(Native::Postgres(_)))
    }

    /// The native MySQL connection, for the merge's reads; the caller
    /// bounds them in time.
    pub(crate) fn mysql(&mut self) -> Option<&mut MySqlConnection> {
        match &mut self.native {
            Some(Native::MySql(conn)) => Some(conn),
            _ => None,
        }
    }

    /// Starts `COPY (query) TO STDOUT` in text format: a stream of chunks,
    /// each one or more whole lines. The caller bounds the reading in time;
    /// the server's statement timeout bounds it too.
    pub(crate) async fn copy_out(
        &mut self,
        query: &str,
        doing: &str,
    ) -> Result<BoxStream<'_, Result<Bytes, sqlx::Error>>, ReconcileError> {
        let (side, timeout) = (self.side, self.timeout);
        let Some(Native::Postgres(copy)) = self.native.as_mut() else {
            return Err(ReconcileError::Unsupported(format!(
                "the {side} database's engine has no COPY"
            )));
        };
        let statement = format!("COPY ({query}) TO STDOUT");
        match tokio::time::timeout(timeout, copy.copy_out_raw(&statement)).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(source)) => Err(ReconcileError::Query {
                side,
                doing: doing.to_owned(),
                source,
            }),
            Err(_) => Err(ReconcileError::Timeout {
                side,
                doing: doing.to_owned(),
                seconds: timeout.as_secs(),
            }),
        }
    }

    /// Runs a read-only query with `binds`, decoding each row's columns as
    /// `classes` say (MySQL reports `TEXT` as binary; it is read as text).
    pub async fn fetch(
        &mut self,
        sql: &str,
        binds: &[&SqlValue],
        classes: &[ColumnClass],
        doing: &str,
    ) -> Result<Vec<Vec<SqlValue>>, ReconcileError> {
        let mut query = sqlx::query(sql);
        for value in binds {
            query = bind_value(query, value);
        }
        let rows = match tokio::time::timeout(self.timeout, query.fetch_all(&mut self.conn)).await {
            Ok(Ok(rows)) => rows,
            Ok(Err(source)) => return Err(self.query_error(doing, source)),
            Err(_) => return Err(self.timeout_error(doing)),
        };
        rows.iter()
            .map(|row| decode(row, classes).map_err(|source| self.query_error(doing, source)))
            .collect()
    }

    /// The columns of `table` with their declared types, in table order;
    /// empty when the table does not exist.
    pub async fn columns(&mut self, table: &Identifier) -> Result<Vec<(String, String)>, ReconcileError> {
        let sql = match self.dialect.engine() {
            Engine::Postgres => {
                "SELECT CAST(column_name AS TEXT), CAST(data_type AS TEXT) FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position"
            }
            Engine::MySql => {
                "SELECT CAST(column_name AS CHAR), CAST(data_type AS CHAR) FROM information_schema.columns \
                 WHERE table_schema = DATABASE() AND table_name = ? ORDER BY ordinal_position"
            }
            Engine::Sqlite => "SELECT name, type FROM pragma_table_info($1) ORDER BY cid",
        };
        self.text_pairs(sql, table, &format!("reading the columns of table `{table}`"))
            .await
    }

    /// MySQL's full column types of `table` (`COLUMN_TYPE`: `int(11)
    /// unsigned`, `datetime(6)`), by column name, for the native reader's
    /// choices ([`crate::mysql_native::NativeRead`]); empty on other engines.
    pub async fn mysql_column_types(
        &mut self,
        table: &Identifier,
    ) -> Result<Vec<(String, String)>, ReconcileError> {
        if self.dialect.engine() != Engine::MySql {
            return Ok(Vec::new());
        }
        let sql =
            "SELECT CAST(column_name AS CHAR), CAST(column_type AS CHAR) FROM information_schema.columns \
                   WHERE table_schema = DATABASE() AND table_name = ? ORDER BY ordinal_position";
        self.text_pairs(
            sql,
            table,
            &format!("reading the column types of table `{table}`"),
        )
        .await
    }

    /// The rows of `sql`, a catalog query of two text columns taking the
    /// table's name as its one parameter, as pairs of strings.
    async fn text_pairs(
        &mut self,
        sql: &str,
        table: &Identifier,
        doing: &str,
    ) -> Result<Vec<(String, String)>, ReconcileError> {
        let name = SqlValue::Text(table.as_str().to_owned());
        let rows = self
            .fetch(sql, &[&name], &[ColumnClass::Text, ColumnClass::Text], doing)
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let text = |v: Option<&SqlValue>| match v {
                    Some(SqlValue::Text(t)) => t.clone(),
                    _ => String::new(),
                };
                (text(row.first()), text(row.get(1)))
            })
            .collect())
    }

    /// Closes the connection politely (errors are irrelevant by then).
    pub async fn close(self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.conn.close()).await;
        let close = Duration::from_secs(2);
        match self.native {
            Some(Native::Postgres(conn)) => drop(tokio::time::timeout(close, conn.close()).await),
            Some(Native::MySql(conn)) => drop(tokio::time::timeout(close, conn.close()).await),
            None => {}
        }
    }

    pub(crate) fn query_error(&self, doing: &str, source: sqlx::Error) -> ReconcileError {
        ReconcileError::Query {
            side: self.side,
            doing: doing.to_owned(),
            source,
        }
    }

    pub(crate) fn timeout_error(&self, doing: &str) -> ReconcileError {
        ReconcileError::Timeout {
            side: self.side,
            doing: doing.to_owned(),
            seconds: self.timeout.as_secs(),
        }
    }
}

/// A connection to `url` by the driver of the options `O`, with statement
/// logging off, within the connect timeout.
async fn connect_with<O>(side: Side, url: &DatabaseUrl) -> Result<O::Connection, ReconcileError>
where
    O: ConnectOptions,
    O::Connection: Sized,
{
    let connect_error = |source| ReconcileError::Connect {
        side,
        url: url.to_string(),
        source,
    };
    let options = O::from_str(url.expose())
        .map_err(connect_error)?
        .disable_statement_logging();
    within(side, url, options.connect()).await?.map_err(connect_error)
}

/// Runs `connect` within the connect timeout.
async fn within<T>(
    side: Side,
    url: &DatabaseUrl,
    connect: impl std::future::Future<Output = Result<T, sqlx::Error>>,
) -> Result<Result<T, sqlx::Error>, ReconcileError> {
    tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| ReconcileError::Timeout {
            side,
            doing: format!("connecting to {url}"),
            seconds: CONNECT_TIMEOUT.as_secs(),
        })
}

/// Decodes `row`, reading each column as `classes` say (MySQL reports `TEXT`
/// as binary; it is read as text). A boolean stored as text (SQLite, as
/// older Rails wrote them: `t`, `f`) is read as 1 or 0, like every other
/// boolean.
pub(crate) fn decode(row: &sqlx::any::AnyRow, classes: &[ColumnClass]) -> Result<Vec<SqlValue>, sqlx::Error> {
    let mut values = decode_row(row)?;
    for (value, class) in values.iter_mut().zip(classes) {
        match (&*value, *class) {
            (SqlValue::Bytes(_), ColumnClass::Bytes) => {}
            (SqlValue::Bytes(bytes), _) => {
                *value = SqlValue::Text(String::from_utf8_lossy(bytes).into_owned());
            }
            (SqlValue::Text(text), ColumnClass::Bool) => {
                if let Some(flag) = text_bool(text) {
                    *value = SqlValue::Int(flag);
                }
            }
            _ => {}
        }
    }
    Ok(values)
}

/// A boolean spelled as text, as 1 or 0; `None` for any other text, which
/// is then compared as it is.
fn text_bool(text: &str) -> Option<i64> {
    match text.to_ascii_lowercase().as_str() {
        "t" | "true" | "1" => Some(1),
        "f" | "false" | "0" => Some(0),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_spelled_as_text_read_as_integers() {
        for (text, flag) in [
            ("t", Some(1)),
            ("TRUE", Some(1)),
            ("1", Some(1)),
            ("f", Some(0)),
            ("false", Some(0)),
        ] {
            assert_eq!(text_bool(text), flag, "{text}");
        }
        assert_eq!(text_bool("yes"), None);
    }
}
