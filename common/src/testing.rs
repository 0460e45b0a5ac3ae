//! Test support: a fresh database per test, on SQLite and, when configured, on PostgreSQL.
//!
//! PostgreSQL tests read an admin URL from `TEST_POSTGRES_URL` (e.g.
//! `postgres://postgres@127.0.0.1:5432/postgres`), create a database with a random name, and
//! drop it when the [`TestDb`] is dropped. When the variable is unset they are skipped on a
//! laptop, but fail under `CI=true`, so CI cannot silently skip them.

use std::path::PathBuf;

use sqlx::Connection;

use crate::db::{Backend, Db};

/// A database that exists for one test.
pub struct TestDb {
    /// The handle to use.
    pub db: Db,
    cleanup: Cleanup,
}

enum Cleanup {
    Sqlite(#[allow(dead_code)] tempfile_dir::Dir),
    Postgres { admin_url: String, name: String },
}

mod tempfile_dir {
    /// A directory removed on drop.
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The PostgreSQL admin URL for tests, or `None` when they should be skipped.
///
/// Panics under `CI=true` without `TEST_POSTGRES_URL`: CI must run them.
pub fn postgres_admin_url() -> Option<String> {
    match std::env::var("TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true but TEST_POSTGRES_URL is not set; PostgreSQL tests must run in CI")
        }
        _ => {
            eprintln!("TEST_POSTGRES_URL not set: skipping the PostgreSQL half of this test");
            None
        }
    }
}

fn random_suffix() -> String {
    let bytes: [u8; 8] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl TestDb {
    /// A fresh SQLite file in a temporary directory, migrated by nothing yet.
    pub async fn sqlite() -> TestDb {
        let dir = std::env::temp_dir().join(format!("tongxin-test-{}", random_suffix()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        let db = Db::connect(&Db::sqlite_url(&dir.join("test.db"))).await.expect("open sqlite");
        TestDb { db, cleanup: Cleanup::Sqlite(tempfile_dir::Dir(dir)) }
    }

    /// A fresh PostgreSQL database, or `None` when PostgreSQL tests are skipped.
    pub async fn postgres() -> Option<TestDb> {
        let admin_url = postgres_admin_url()?;
        let name = format!("tongxin_test_{}", random_suffix());
        let mut admin = sqlx::AnyConnection::connect(&admin_url).await.expect("connect to TEST_POSTGRES_URL");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await.expect("create test database");
        admin.close().await.ok();
        let db = Db::connect(&with_database(&admin_url, &name)).await.expect("open test database");
        Some(TestDb { db, cleanup: Cleanup::Postgres { admin_url, name } })
    }

    /// Both backends: SQLite always, PostgreSQL when configured.
    pub async fn each() -> Vec<TestDb> {
        let mut dbs = vec![TestDb::sqlite().await];
        dbs.extend(TestDb::postgres().await);
        dbs
    }

    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        self.db.backend()
    }

    /// The directory of a SQLite test database (for tests that need a data dir).
    pub fn sqlite_dir(&self) -> Option<PathBuf> {
        match &self.cleanup {
            Cleanup::Sqlite(d) => Some(d.0.clone()),
            Cleanup::Postgres { .. } => None,
        }
    }
}

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..].find('/').map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{}", &base[..host_end], name);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Cleanup::Postgres { admin_url, name } = &self.cleanup else { return };
        let (admin_url, name) = (admin_url.clone(), name.clone());
        // Drop runs inside the test's runtime, which cannot be blocked on; use a thread of our own.
        // The test's pool is not closed first: its connections belong to the blocked runtime.
        // FORCE terminates them instead.
        let _ = std::thread::spawn(move || {
            let rt = tokio_rt();
            rt.block_on(async move {
                if let Ok(mut admin) = sqlx::AnyConnection::connect(&admin_url).await {
                    let _ =
                        sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))).execute(&mut admin).await;
                }
            });
        })
        .join();
    }
}

fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("build a runtime for cleanup")
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_name_is_replaced() {
        assert_eq!(super::with_database("postgres://u@h:5432/postgres", "t1"), "postgres://u@h:5432/t1");
        assert_eq!(super::with_database("postgres://u@h/postgres?sslmode=disable", "t1"), "postgres://u@h/t1?sslmode=disable");
        assert_eq!(super::with_database("postgres://u@h:5432", "t1"), "postgres://u@h:5432/t1");
    }
}
