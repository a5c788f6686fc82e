//! Tests of the throwaway PostgreSQL server: fresh databases are distinct,
//! empty and usable through psql.

use chatkitd_testkit::postgres::shared_server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_databases_are_usable_and_distinct() {
    let server = shared_server().await;
    assert!(server.base_url().starts_with("postgres://"));

    let (a, b) = tokio::join!(server.fresh_database(), server.fresh_database());
    assert_ne!(a, b);
    for url in [&a, &b] {
        let name = url.rsplit('/').next().expect("database in URL");
        assert!(
            name.starts_with(&format!("t_{}_", std::process::id())),
            "{url}"
        );
        let current = server
            .psql(url, "SELECT current_database()")
            .await
            .expect("psql");
        assert_eq!(current.trim(), name);
    }

    server
        .psql(
            &a,
            "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'x')",
        )
        .await
        .expect("create and insert");
    let rows = server
        .psql(&a, "SELECT id, v FROM t")
        .await
        .expect("select");
    assert_eq!(rows.trim(), "1|x");
    // The other database did not see it.
    let tables = server
        .psql(
            &b,
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
        )
        .await
        .expect("count");
    assert_eq!(tables.trim(), "0");
    assert!(server.psql(&a, "SELECT nonsense").await.is_err());
}

#[tokio::test]
async fn the_server_is_shared_across_runtimes() {
    // Each #[tokio::test] has its own runtime; the server outlives them.
    let first = shared_server().await.base_url().to_owned();
    let url = shared_server().await.fresh_database().await;
    assert!(url.starts_with(first.trim_end_matches("/postgres")));
    let version = shared_server()
        .await
        .psql(&url, "SHOW server_version_num")
        .await
        .expect("psql");
    assert!(
        version.trim().parse::<u32>().is_ok_and(|v| v >= 150000),
        "{version}"
    );
}
