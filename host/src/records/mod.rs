//! The session records: every programming session's report ([`SessionReport`]), kept
//! where the programmer can read it back (feature `records`).
//!
//! By default the records are one local SQLite file (embedded, zero setup:
//! [`Records::default_location`]); a clinic with several programmers points them all at
//! one PostgreSQL server (`postgres://…`). Both go through the same code and the same
//! schema ([`schema`]): a `sessions` table holding one row per session, its searchable
//! fields (pump serial, role, start and end, whether it changed anything) beside the
//! report document itself (its stable JSON, TEXT). A session is saved after each change
//! and at its end; saving again replaces the row ([`Records::save`]).
//!
//! [`fhir`] exports a report as an HL7 FHIR R4 bundle; it needs no database.
//!
//! Times are the report's own RFC 3339 text; `started_utc` is UTC (`…Z`), so the text
//! orders as time does ([`Records::list`] is newest first).

pub mod fhir;
pub mod schema;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

use crate::report::{SessionReport, REPORT_SCHEMA};

/// What went wrong with the session records. Every message names where the records are
/// (a PostgreSQL URL without its password).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordsError {
    /// The records could not be opened: the file or its folder not created, the server
    /// not reached, the file not a database, the schema not set up.
    #[error("cannot open the session records at {location}: {reason}")]
    Open {
        /// Where.
        location: String,
        /// Why, in the words of the file system or the database.
        reason: String,
    },
    /// The records were set up by a newer thecal.
    #[error(
        "the session records at {location} are of schema {found}, newer than this thecal \
         knows ({known}): use a newer thecal"
    )]
    NewerSchema {
        /// Where.
        location: String,
        /// The records' schema version.
        found: i64,
        /// The newest this thecal knows.
        known: i64,
    },
    /// A read or a write failed.
    #[error("cannot {action} the session records at {location}: {source}")]
    Query {
        /// What was being done (`save session ID in`, `list`, …).
        action: String,
        /// Where.
        location: String,
        /// The database's error.
        #[source]
        source: sqlx::Error,
    },
    /// A stored row does not hold a report this thecal reads.
    #[error("record {id} is not a session report of schema {REPORT_SCHEMA}: {reason}")]
    NotAReport {
        /// The record's id.
        id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The report could not be written as JSON.
    #[error("cannot write the session report {id} as JSON: {source}")]
    Encode {
        /// The report's id.
        id: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

/// One line of [`Records::list`]: a session without its report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSummary {
    /// The session's id.
    pub id: String,
    /// The pump's serial number.
    pub pump_serial: String,
    /// The role the session was opened as.
    pub role: String,
    /// When it began (UTC, RFC 3339).
    pub started_utc: String,
    /// When it ended (`null`: still running, or it never closed).
    pub ended_utc: Option<String>,
    /// Whether it changed anything on the pump.
    pub changed: bool,
}

/// The session records: an open SQLite file or PostgreSQL database, its schema set up.
#[derive(Debug, Clone)]
pub struct Records {
    pool: AnyPool,
    location: String,
}

/// Where `url` points: a SQLite file or a PostgreSQL server.
enum Target {
    Sqlite(PathBuf),
    Memory,
    Postgres(String),
}

impl Target {
    fn parse(url: &str) -> Target {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Target::Postgres(url.to_string());
        }
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        if path == ":memory:" {
            Target::Memory
        } else {
            Target::Sqlite(PathBuf::from(path))
        }
    }
}

impl Records {
    /// Opens the records at `url` and sets up or updates their schema:
    /// `postgres://USER:PASSWORD@HOST/DB`, `sqlite:PATH`, `sqlite::memory:` (for tests)
    /// or a plain path. A SQLite file is created if missing, with its folders (mode 0600
    /// and 0700 on Unix: the records hold patient therapy data).
    pub async fn open(url: &str) -> Result<Records, RecordsError> {
        sqlx::any::install_default_drivers();
        let target = Target::parse(url);
        let (location, connect, connections) = match &target {
            Target::Postgres(url) => (redact(url), url.clone(), 4),
            Target::Memory => (":memory:".to_string(), "sqlite::memory:".to_string(), 1),
            Target::Sqlite(path) => {
                let location = path.display().to_string();
                create_file(path).map_err(|e| RecordsError::Open {
                    location: location.clone(),
                    reason: e.to_string(),
                })?;
                let connect = format!("sqlite://{}?mode=rw", url_path(path));
                // One connection: SQLite serialises writers anyway, and one connection
                // never waits on itself for the file lock.
                (location, connect, 1)
            }
        };
        let open_error = |e: sqlx::Error| RecordsError::Open {
            location: location.clone(),
            reason: database_words(&e),
        };
        let pool = AnyPoolOptions::new()
            .max_connections(connections)
            .connect(&connect)
            .await
            .map_err(open_error)?;
        let records = Records { pool, location };
        let postgres = matches!(target, Target::Postgres(_));
        schema::migrate(&records.pool, &records.location, postgres).await?;
        Ok(records)
    }

    /// Where the records are, as messages name it (a PostgreSQL URL without its
    /// password).
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The default SQLite file: `$XDG_DATA_HOME/thecal/records.sqlite`, else
    /// `~/.local/share/thecal/records.sqlite`, else `thecal-records.sqlite` in the
    /// current folder (no home at all).
    pub fn default_location() -> PathBuf {
        let xdg = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute());
        let home = || {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .map(|h| h.join(".local").join("share"))
        };
        match xdg.or_else(home) {
            Some(data) => data.join("thecal").join("records.sqlite"),
            None => PathBuf::from("thecal-records.sqlite"),
        }
    }

    /// Saves `report`: a new session is added, a session already saved (same id) is
    /// replaced by this, its latest state.
    pub async fn save(&self, report: &SessionReport) -> Result<(), RecordsError> {
        let json = serde_json::to_string(report).map_err(|source| RecordsError::Encode {
            id: report.id.clone(),
            source,
        })?;
        sqlx::query(
            "INSERT INTO sessions (id, pump_serial, role, started_utc, ended_utc, changed, report) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (id) DO UPDATE SET pump_serial = excluded.pump_serial, \
             role = excluded.role, started_utc = excluded.started_utc, \
             ended_utc = excluded.ended_utc, changed = excluded.changed, \
             report = excluded.report",
        )
        .bind(report.id.as_str())
        .bind(report.pump.serial.as_str())
        .bind(report.role.as_str())
        .bind(report.started_utc.as_str())
        .bind(report.ended_utc.as_deref())
        .bind(i64::from(report.changed_anything()))
        .bind(json)
        .execute(&self.pool)
        .await
        .map_err(|e| self.query_error(format!("save session {} in", report.id), e))?;
        Ok(())
    }

    /// The report of session `id`, if it is kept.
    pub async fn get(&self, id: &str) -> Result<Option<SessionReport>, RecordsError> {
        let row = sqlx::query("SELECT id, report FROM sessions WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.query_error(format!("read session {id} from"), e))?;
        row.map(|r| self.report_of(&r)).transpose()
    }

    /// The newest `limit` sessions (of the pump `serial`, or of every pump), newest
    /// first.
    pub async fn list(
        &self,
        serial: Option<&str>,
        limit: u32,
    ) -> Result<Vec<SessionSummary>, RecordsError> {
        let sql = format!(
            "SELECT id, pump_serial, role, started_utc, ended_utc, changed FROM sessions {} \
             ORDER BY started_utc DESC, id DESC LIMIT $1",
            if serial.is_some() {
                "WHERE pump_serial = $2"
            } else {
                ""
            }
        );
        let mut query = sqlx::query(&sql).bind(i64::from(limit));
        if let Some(s) = serial {
            query = query.bind(s);
        }
        let rows = query
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.query_error("list the sessions in".into(), e))?;
        rows.iter()
            .map(|r| summary(r).map_err(|e| self.query_error("list the sessions in".into(), e)))
            .collect()
    }

    /// The newest session's report (of the pump `serial`, or of any pump).
    pub async fn latest(
        &self,
        serial: Option<&str>,
    ) -> Result<Option<SessionReport>, RecordsError> {
        let newest = self.list(serial, 1).await?;
        match newest.first() {
            Some(s) => self.get(&s.id).await,
            None => Ok(None),
        }
    }

    /// Closes the connections (waits for a write under way).
    pub async fn close(self) {
        self.pool.close().await;
    }

    fn query_error(&self, action: String, source: sqlx::Error) -> RecordsError {
        RecordsError::Query {
            action,
            location: self.location.clone(),
            source,
        }
    }

    /// The report in a row: JSON of the schema this thecal reads.
    fn report_of(&self, row: &AnyRow) -> Result<SessionReport, RecordsError> {
        let id: String = row
            .try_get(0)
            .map_err(|e| self.query_error("read".into(), e))?;
        let text: String = row
            .try_get(1)
            .map_err(|e| self.query_error(format!("read session {id} from"), e))?;
        let not = |reason: String| RecordsError::NotAReport {
            id: id.clone(),
            reason,
        };
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| not(format!("not JSON: {e}")))?;
        match value.get("schema").and_then(serde_json::Value::as_u64) {
            Some(s) if s == u64::from(REPORT_SCHEMA) => {}
            Some(s) => return Err(not(format!("it is of schema {s}"))),
            None => return Err(not("it has no schema version".into())),
        }
        serde_json::from_value(value).map_err(|e| not(e.to_string()))
    }
}

fn summary(r: &AnyRow) -> Result<SessionSummary, sqlx::Error> {
    Ok(SessionSummary {
        id: r.try_get(0)?,
        pump_serial: r.try_get(1)?,
        role: r.try_get(2)?,
        started_utc: r.try_get(3)?,
        ended_utc: r.try_get(4)?,
        changed: r.try_get::<i64, _>(5)? != 0,
    })
}

/// Creates the SQLite file (mode 0600) and its folders (0700) if missing.
fn create_file(path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map(drop)
}

/// `path` as the path part of a `sqlite://` URL: the characters that would end it or be
/// decoded (`?`, `#`, `%`) percent-encoded.
fn url_path(path: &Path) -> String {
    let mut out = String::new();
    for c in path.to_string_lossy().chars() {
        match c {
            '%' => out.push_str("%25"),
            '?' => out.push_str("%3F"),
            '#' => out.push_str("%23"),
            c => out.push(c),
        }
    }
    out
}

/// `postgres://user:secret@host/db` → `postgres://user@host/db`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((user, host)) => {
            let user = user.split_once(':').map_or(user, |(u, _)| u);
            format!("{scheme}://{user}@{host}{tail}")
        }
        None => url.to_string(),
    }
}

/// The database's own words for an error, without sqlx's prefix.
fn database_words(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(d) => d.message().to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests;
