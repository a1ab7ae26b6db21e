//! The records' schema, one embedded list of migrations for SQLite and PostgreSQL alike
//! (TEXT and INTEGER columns only; the report is its JSON text).
//!
//! `thecal_schema` holds one row per migration applied. Opening the records applies the
//! missing ones in one transaction (both databases change their schema inside one), and
//! refuses records whose schema is newer than this list.

use sqlx::AnyPool;

use super::RecordsError;

/// A schema version and the statements that bring the records to it.
struct Migration {
    version: i64,
    description: &'static str,
    statements: &'static [&'static str],
}

/// Every migration, oldest first. Never edit one that has shipped: add the next.
const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    description: "sessions: one row per programming session, its report as JSON",
    statements: &[
        "CREATE TABLE sessions (
            id TEXT PRIMARY KEY NOT NULL,
            pump_serial TEXT NOT NULL,
            role TEXT NOT NULL,
            started_utc TEXT NOT NULL,
            ended_utc TEXT,
            changed INTEGER NOT NULL,
            report TEXT NOT NULL
        )",
        "CREATE INDEX sessions_by_pump ON sessions (pump_serial, started_utc)",
    ],
}];

/// The newest schema this thecal knows.
pub fn newest() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// The PostgreSQL advisory lock that serialises the migrations of several programmers
/// opening the same fresh server at once (`thecal` in ASCII).
const MIGRATION_LOCK: i64 = 0x7468_6563_616c;

/// Applies the migrations the records at `location` lack, all in one transaction; on
/// PostgreSQL under an advisory lock, so programmers starting together migrate once
/// (SQLite serialises writers itself).
pub(super) async fn migrate(
    pool: &AnyPool,
    location: &str,
    postgres: bool,
) -> Result<(), RecordsError> {
    let open = |e: sqlx::Error| RecordsError::Open {
        location: location.to_string(),
        reason: super::database_words(&e),
    };
    let mut tx = pool.begin().await.map_err(open)?;
    if postgres {
        sqlx::query("SELECT 1 FROM (SELECT pg_advisory_xact_lock($1)) AS locked")
            .bind(MIGRATION_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(open)?;
    }
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS thecal_schema (
            version INTEGER PRIMARY KEY NOT NULL,
            description TEXT NOT NULL
        )",
    )
    .execute(&mut *tx)
    .await
    .map_err(open)?;
    let found: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM thecal_schema")
        .fetch_one(&mut *tx)
        .await
        .map_err(open)?;
    let found = found.unwrap_or(0);
    if found > newest() {
        return Err(RecordsError::NewerSchema {
            location: location.to_string(),
            found,
            known: newest(),
        });
    }
    for m in MIGRATIONS.iter().filter(|m| m.version > found) {
        for statement in m.statements {
            sqlx::query(statement)
                .execute(&mut *tx)
                .await
                .map_err(open)?;
        }
        sqlx::query("INSERT INTO thecal_schema (version, description) VALUES ($1, $2)")
            .bind(m.version)
            .bind(m.description)
            .execute(&mut *tx)
            .await
            .map_err(open)?;
    }
    tx.commit().await.map_err(open)?;
    Ok(())
}
