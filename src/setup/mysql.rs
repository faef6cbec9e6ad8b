//! `setup mysql` / `teardown mysql`: one database per product (`utf8mb4`,
//! `utf8mb4_unicode_ci`) and one user per product holding exactly [`PRIVILEGES`] on it.
//!
//! Names come from a validated [`MysqlSpec`] (`[a-z0-9_]` only) and are quoted anyway;
//! values are bound as statement parameters, except passwords in `CREATE/ALTER USER` where
//! the server accepts no parameter (see [`password_literal`]). In `GRANT … ON db.*` the database is a
//! pattern where `_` is a wildcard, so it is escaped (`\_`): `a_b` must not also grant `aXb`.
//! Connecting, and starting over after a broken connection, are retried under the one
//! [`Policy`] of every outbound caller; `is_transient` says which MySQL errors qualify.

use std::collections::BTreeSet;
use std::time::Duration;

use mysql::prelude::Queryable;
use mysql::{Conn, OptsBuilder};

use super::secrets::{self, SecretStore};
use super::{Change, Policy, Report, SetupError};
use provisio_core::naming;
use provisio_core::plan::setup::{DatabaseSpec, MysqlSpec};

/// The seed's privileges for a service user, on its own database only.
pub const PRIVILEGES: [&str; 7] = [
    "SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "ALTER", "INDEX",
];
pub const CHARSET: &str = "utf8mb4";
pub const COLLATION: &str = "utf8mb4_unicode_ci";
/// Host part of every service account.
pub const ACCOUNT_HOST: &str = "%";

/// ER_ACCESS_DENIED_ERROR: wrong user or password.
const ACCESS_DENIED: u16 = 1045;

/// The administrative account setup connects with (from the Job's environment).
#[derive(Clone)]
pub struct Admin {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

fn endpoint(spec: &MysqlSpec) -> String {
    format!("{}:{}", spec.host, spec.port)
}

fn opts(spec: &MysqlSpec, user: &str, password: &str) -> OptsBuilder {
    OptsBuilder::new()
        .ip_or_hostname(Some(spec.host.clone()))
        .tcp_port(spec.port)
        .prefer_socket(false)
        .user(Some(user))
        .pass(Some(password))
        .tcp_connect_timeout(Some(Duration::from_secs(5)))
        .read_timeout(Some(Duration::from_secs(30)))
        .write_timeout(Some(Duration::from_secs(30)))
}

fn is_access_denied(e: &mysql::Error) -> bool {
    matches!(e, mysql::Error::MySqlError(m) if m.code == ACCESS_DENIED)
}

fn is_transient(e: &mysql::Error) -> bool {
    match e {
        mysql::Error::IoError(_) => true,
        mysql::Error::DriverError(d) => matches!(
            d,
            mysql::DriverError::ConnectTimeout
                | mysql::DriverError::CouldNotConnect(_)
                | mysql::DriverError::Timeout
        ),
        // Too many connections, server shutting down, lock wait timeout, deadlock.
        mysql::Error::MySqlError(m) => matches!(m.code, 1040 | 1053 | 1205 | 1213),
        _ => false,
    }
}

/// Connects as the admin, retrying while the server is unreachable.
fn connect_admin(spec: &MysqlSpec, admin: &Admin, retry: &Policy) -> Result<Conn, SetupError> {
    retry
        .run("connect to mysql", is_transient, || {
            Conn::new(opts(spec, &admin.user, &admin.password))
        })
        .map_err(|e| {
            if is_transient(&e.error) {
                SetupError::Unreachable {
                    service: "mysql",
                    endpoint: endpoint(spec),
                    attempts: e.attempts,
                    source: Box::new(e.error),
                }
            } else {
                SetupError::Refused {
                    service: "mysql",
                    action: format!("let `{}` log in at {}", admin.user, endpoint(spec)),
                    detail: e.error.to_string(),
                }
            }
        })
}

/// Maps a failed statement: a broken connection is [`SetupError::Interrupted`] (the run
/// starts over, see [`with_reconnect`]), anything else a refusal.
fn refused(action: impl Into<String>) -> impl FnOnce(mysql::Error) -> SetupError {
    let action = action.into();
    move |e| {
        if is_transient(&e) {
            SetupError::Interrupted {
                service: "mysql",
                action,
                source: Box::new(e),
            }
        } else {
            SetupError::Refused {
                service: "mysql",
                action,
                detail: e.to_string(),
            }
        }
    }
}

/// Runs a whole setup or teardown, starting over (new connection) with backoff when the
/// connection breaks midway: every step checks before it changes, so a repeat is harmless.
fn with_reconnect<T>(
    retry: &Policy,
    run: impl FnMut() -> Result<T, SetupError>,
) -> Result<T, SetupError> {
    let interrupted = |e: &SetupError| matches!(e, SetupError::Interrupted { .. });
    retry
        .run("mysql run", interrupted, run)
        .map_err(|e| e.error)
}

/// `name` as a quoted identifier. Names are validated `[a-z0-9_]`; backticks are doubled
/// regardless, so quoting never depends on validation alone.
fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// A database name as a grant pattern: `_` and `%` escaped so they match only themselves.
pub fn grant_pattern(database: &str) -> String {
    let mut out = String::with_capacity(database.len() + 8);
    for c in database.chars() {
        if matches!(c, '_' | '%' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A password as an SQL string literal. MySQL and MariaDB accept no `?` parameter in
/// account-management statements (`CREATE USER … IDENTIFIED BY ?` is a syntax error), so the
/// password is checked against [`secrets::is_acceptable_secret`] (printable ASCII without
/// quotes, backslash or backtick) before it is quoted: nothing in it can end the literal.
fn password_literal(password: &str) -> Result<String, SetupError> {
    if !secrets::is_acceptable_secret(password) {
        return Err(SetupError::invalid(
            "password",
            "expected 16-128 printable ASCII characters without quotes, backslash or space",
        ));
    }
    Ok(format!("'{password}'"))
}

/// `'user'@'%'` for a validated user name.
fn account(user: &str) -> Result<String, SetupError> {
    if !naming::is_valid_mysql_name(user, naming::MYSQL_USER_MAX) {
        return Err(SetupError::invalid(
            format!("MySQL user `{}`", user.escape_default()),
            "expected 1-32 characters of [a-z0-9_]",
        ));
    }
    Ok(format!("'{user}'@'{ACCOUNT_HOST}'"))
}

fn check_database(database: &str) -> Result<(), SetupError> {
    if naming::is_valid_mysql_name(database, naming::MYSQL_DB_MAX) {
        Ok(())
    } else {
        Err(SetupError::invalid(
            format!("MySQL database `{}`", database.escape_default()),
            "expected 1-64 characters of [a-z0-9_]",
        ))
    }
}

/// Creates or converges every database, user and grant of the spec.
pub fn setup(
    spec: &MysqlSpec,
    admin: &Admin,
    store: &dyn SecretStore,
    retry: &Policy,
) -> Result<Report, SetupError> {
    with_reconnect(retry, || setup_once(spec, admin, store, retry))
}

fn setup_once(
    spec: &MysqlSpec,
    admin: &Admin,
    store: &dyn SecretStore,
    retry: &Policy,
) -> Result<Report, SetupError> {
    let mut conn = connect_admin(spec, admin, retry)?;
    let mut report = Report::default();
    for db in &spec.databases {
        ensure_database(&mut conn, db, &mut report)?;
        let (password, stored) =
            secrets::ensure(store, &db.secret_key, "username", &db.user, "password")?;
        report.record(format!("secret {}", db.secret_key), stored);
        ensure_user(&mut conn, spec, db, &password, &mut report)?;
        ensure_grants(&mut conn, db, &mut report)?;
    }
    Ok(report)
}

fn ensure_database(
    conn: &mut Conn,
    db: &DatabaseSpec,
    report: &mut Report,
) -> Result<(), SetupError> {
    check_database(&db.database)?;
    let what = format!("database {}", db.database);
    let current: Option<(String, String)> = conn
        .exec_first(
            "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME \
             FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
            (&db.database,),
        )
        .map_err(refused(format!("read {what}")))?;
    let change = match current {
        None => {
            conn.query_drop(format!(
                "CREATE DATABASE IF NOT EXISTS {} CHARACTER SET {CHARSET} COLLATE {COLLATION}",
                ident(&db.database)
            ))
            .map_err(refused(format!("create {what}")))?;
            Change::Created
        }
        Some((cs, coll)) if cs == CHARSET && coll == COLLATION => Change::Unchanged,
        Some(_) => {
            conn.query_drop(format!(
                "ALTER DATABASE {} CHARACTER SET {CHARSET} COLLATE {COLLATION}",
                ident(&db.database)
            ))
            .map_err(refused(format!("alter {what}")))?;
            Change::Updated
        }
    };
    report.record(what, change);
    Ok(())
}

fn user_exists(conn: &mut Conn, user: &str) -> Result<bool, SetupError> {
    let found: Option<u8> = conn
        .exec_first(
            "SELECT 1 FROM mysql.user WHERE User = ? AND Host = ?",
            (user, ACCOUNT_HOST),
        )
        .map_err(refused(format!("read user {user}")))?;
    Ok(found.is_some())
}

/// Whether `user` can log in with `password` (the server is the only judge: hashes differ
/// between MySQL and MariaDB and carry salts).
fn password_works(spec: &MysqlSpec, user: &str, password: &str) -> Result<bool, SetupError> {
    match Conn::new(opts(spec, user, password)) {
        Ok(_) => Ok(true),
        Err(e) if is_access_denied(&e) => Ok(false),
        Err(e) => Err(refused(format!("let `{user}` log in"))(e)),
    }
}

fn ensure_user(
    conn: &mut Conn,
    spec: &MysqlSpec,
    db: &DatabaseSpec,
    password: &str,
    report: &mut Report,
) -> Result<(), SetupError> {
    let acct = account(&db.user)?;
    let what = format!("user {}", db.user);
    let change = if !user_exists(conn, &db.user)? {
        conn.query_drop(format!(
            "CREATE USER {acct} IDENTIFIED BY {}",
            password_literal(password)?
        ))
        .map_err(refused(format!("create {what}")))?;
        Change::Created
    } else if password_works(spec, &db.user, password)? {
        Change::Unchanged
    } else {
        // The store holds a different password (rotated on purpose): the store wins.
        conn.query_drop(format!(
            "ALTER USER {acct} IDENTIFIED BY {}",
            password_literal(password)?
        ))
        .map_err(refused(format!("set the password of {what}")))?;
        Change::Updated
    };
    report.record(what, change);
    Ok(())
}

/// The privileges `user` holds, as (scope, privilege) pairs: scope is `*` for global ones,
/// the stored pattern for database ones, `table:` / `column:` for finer ones.
fn current_grants(conn: &mut Conn, user: &str) -> Result<BTreeSet<(String, String)>, SetupError> {
    let grantee = format!("'{user}'@'{ACCOUNT_HOST}'");
    let mut out = BTreeSet::new();
    let global: Vec<(String, String)> = conn
        .exec(
            "SELECT PRIVILEGE_TYPE, IS_GRANTABLE FROM information_schema.USER_PRIVILEGES \
             WHERE GRANTEE = ?",
            (&grantee,),
        )
        .map_err(refused(format!("read the privileges of {user}")))?;
    for (p, grantable) in global {
        if p != "USAGE" {
            out.insert(("*".to_owned(), p));
        }
        if grantable == "YES" {
            out.insert(("*".to_owned(), "GRANT OPTION".to_owned()));
        }
    }
    let schema: Vec<(String, String, String)> = conn
        .exec(
            "SELECT TABLE_SCHEMA, PRIVILEGE_TYPE, IS_GRANTABLE \
             FROM information_schema.SCHEMA_PRIVILEGES WHERE GRANTEE = ?",
            (&grantee,),
        )
        .map_err(refused(format!("read the privileges of {user}")))?;
    for (s, p, grantable) in schema {
        if grantable == "YES" {
            out.insert((s.clone(), "GRANT OPTION".to_owned()));
        }
        out.insert((s, p));
    }
    for (table, scope) in [
        ("TABLE_PRIVILEGES", "table"),
        ("COLUMN_PRIVILEGES", "column"),
    ] {
        let rows: Vec<(String, String, String)> = conn
            .exec(
                format!(
                    "SELECT TABLE_SCHEMA, TABLE_NAME, PRIVILEGE_TYPE \
                     FROM information_schema.{table} WHERE GRANTEE = ?"
                ),
                (&grantee,),
            )
            .map_err(refused(format!("read the privileges of {user}")))?;
        for (s, t, p) in rows {
            out.insert((format!("{scope}:{s}.{t}"), p));
        }
    }
    Ok(out)
}

/// The grants a service user must hold, in the form [`current_grants`] reports them.
pub fn wanted_grants(database: &str) -> BTreeSet<(String, String)> {
    let pattern = grant_pattern(database);
    PRIVILEGES
        .iter()
        .map(|p| (pattern.clone(), (*p).to_owned()))
        .collect()
}

fn ensure_grants(
    conn: &mut Conn,
    db: &DatabaseSpec,
    report: &mut Report,
) -> Result<(), SetupError> {
    check_database(&db.database)?;
    let acct = account(&db.user)?;
    let what = format!("grants of {} on {}", db.user, db.database);
    let current = current_grants(conn, &db.user)?;
    let wanted = wanted_grants(&db.database);
    if current == wanted {
        report.record(what, Change::Unchanged);
        return Ok(());
    }
    if !current.is_empty() {
        tracing::warn!(user = %db.user, ?current, "privileges differ from the spec; resetting them");
        conn.query_drop(format!("REVOKE ALL PRIVILEGES, GRANT OPTION FROM {acct}"))
            .map_err(refused(format!("revoke the privileges of {}", db.user)))?;
    }
    conn.query_drop(format!(
        "GRANT {} ON {}.* TO {acct}",
        PRIVILEGES.join(", "),
        ident(&grant_pattern(&db.database))
    ))
    .map_err(refused(format!("grant privileges to {}", db.user)))?;
    report.record(
        what,
        if current.is_empty() {
            Change::Created
        } else {
            Change::Updated
        },
    );
    Ok(())
}

/// Drops every user and database of the spec and their secret-store entries. The caller has
/// checked that the tenant is due for deletion.
pub fn teardown(
    spec: &MysqlSpec,
    admin: &Admin,
    store: &dyn SecretStore,
    retry: &Policy,
) -> Result<Report, SetupError> {
    with_reconnect(retry, || teardown_once(spec, admin, store, retry))
}

fn teardown_once(
    spec: &MysqlSpec,
    admin: &Admin,
    store: &dyn SecretStore,
    retry: &Policy,
) -> Result<Report, SetupError> {
    let mut conn = connect_admin(spec, admin, retry)?;
    let mut report = Report::default();
    for db in &spec.databases {
        check_database(&db.database)?;
        let acct = account(&db.user)?;
        let user_what = format!("user {}", db.user);
        if user_exists(&mut conn, &db.user)? {
            conn.query_drop(format!("DROP USER {acct}"))
                .map_err(refused(format!("drop {user_what}")))?;
            report.record(user_what, Change::Deleted);
        } else {
            report.record(user_what, Change::Unchanged);
        }
        let db_what = format!("database {}", db.database);
        let exists: Option<u8> = conn
            .exec_first(
                "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
                (&db.database,),
            )
            .map_err(refused(format!("read {db_what}")))?;
        if exists.is_some() {
            conn.query_drop(format!("DROP DATABASE IF EXISTS {}", ident(&db.database)))
                .map_err(refused(format!("drop {db_what}")))?;
            report.record(db_what, Change::Deleted);
        } else {
            report.record(db_what, Change::Unchanged);
        }
        report.record(
            format!("secret {}", db.secret_key),
            Change::deleted_if(store.delete(&db.secret_key)?),
        );
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_connection_starts_the_run_over() {
        let retry = Policy::new(3, std::time::Duration::from_millis(1)).without_jitter();
        let mut calls = 0;
        let out = with_reconnect(&retry, || {
            calls += 1;
            if calls < 3 {
                Err(refused("read x")(mysql::Error::IoError(
                    std::io::ErrorKind::ConnectionReset.into(),
                )))
            } else {
                Ok(calls)
            }
        });
        assert_eq!(out.unwrap(), 3);
        // A refusal is not retried.
        let mut calls = 0;
        let e = with_reconnect(&retry, || -> Result<(), SetupError> {
            calls += 1;
            Err(SetupError::invalid("x", "y"))
        })
        .unwrap_err();
        assert_eq!(calls, 1);
        assert!(e.to_string().contains("invalid x"));
    }

    #[test]
    fn grant_patterns_escape_wildcards() {
        assert_eq!(grant_pattern("abc__orders"), r"abc\_\_orders");
        assert_eq!(ident(&grant_pattern("a_b")), r"`a\_b`");
        assert_eq!(ident("we`ird"), "`we``ird`");
        assert!(account("x'; DROP").is_err());
        assert!(password_literal("abcdefghijklmnop'; DROP USER x; --").is_err());
        assert_eq!(
            password_literal("abcdefghijklmnop").unwrap(),
            "'abcdefghijklmnop'"
        );
    }
}
