//! The transaction boundary on PostgreSQL (a schema per test, at
//! `AIRLOCK_TEST_POSTGRES_URL`).

airlock_tests::transaction_scenarios!(airlock_tests::sqlx_db::postgres().await);

/// The connection dies during COMMIT: the caller learns the outcome is
/// unknown, and gets the intents back; nothing was dispatched.
#[tokio::test]
async fn a_commit_cut_off_mid_way_is_reported_as_unknown() {
    let Some(db) = airlock_tests::sqlx_db::postgres().await else {
        return;
    };
    let log = unique("log");
    let killer = db.another_pool(1).await;
    let result: Result<(), TxError> = airlock::sqlx::transaction(&db.pool, |tx| {
        let log = log.clone();
        let killer = killer.clone();
        Box::pin(async move {
            sqlx::query("INSERT INTO orders (id) VALUES (1)")
                .execute(&mut **tx)
                .await?;
            airlock::enqueue(effect(&log, "receipt"))?;
            let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
                .fetch_one(&mut **tx)
                .await?;
            sqlx::query("SELECT pg_terminate_backend($1)")
                .bind(pid)
                .execute(&killer)
                .await?;
            Ok(())
        })
    })
    .await;
    let error = result.unwrap_err();
    assert!(error.is_commit_unknown(), "{error:?}");
    assert!(error.to_string().contains("may or may not have committed"));
    let back = error.into_undispatched();
    assert_eq!(airlock_tests::labels_of(&back), ["receipt"]);
    assert!(runs(&log).is_empty());
    killer.close().await;
    db.finish().await;
}
