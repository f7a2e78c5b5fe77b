//! `sqlite://data/sekisho.db` is relative to the process's working directory, and connect
//! creates the directory. Its own test binary, because it changes the working directory of
//! the whole process.

#![allow(clippy::unwrap_used)]

use recorder::catalogue::{BackendKind, Catalogue};

#[tokio::test]
async fn default_url_is_relative_to_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::env::set_current_dir(dir.path()).unwrap();
    let c = Catalogue::connect("sqlite://data/sekisho.db")
        .await
        .unwrap();
    assert_eq!(c.backend(), BackendKind::Sqlite);
    assert_eq!(c.url(), "sqlite://data/sekisho.db");
    c.close().await;
    assert!(dir.path().join("data").join("sekisho.db").is_file());
    // Opening again finds the same, migrated database.
    Catalogue::connect("sqlite:data/sekisho.db").await.unwrap();
}
