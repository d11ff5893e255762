//! The transaction boundary on SQLite (a temporary file per test).

airlock_tests::transaction_scenarios!(Some(airlock_tests::sqlx_db::sqlite().await));

/// Writers begin with `BEGIN IMMEDIATE`: two transactions that read, then
/// write, take turns instead of one failing with "database is locked" when it
/// tries to upgrade its read lock.
#[tokio::test]
async fn concurrent_read_then_write_transactions_both_commit() {
    let db = airlock_tests::sqlx_db::sqlite().await;
    let write = |id: i64| {
        let pool = db.pool.clone();
        async move {
            airlock::sqlx::transaction(&pool, |tx| {
                Box::pin(async move {
                    let _: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
                        .fetch_one(&mut **tx)
                        .await?;
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    sqlx::query("INSERT INTO orders (id) VALUES ($1)")
                        .bind(id)
                        .execute(&mut **tx)
                        .await?;
                    Ok::<_, airlock::sqlx::TxError>(())
                })
            })
            .await
        }
    };
    let (first, second) = tokio::join!(tokio::spawn(write(1)), tokio::spawn(write(2)));
    first.unwrap().unwrap();
    second.unwrap().unwrap();
    assert_eq!(order_ids!(&db.pool), [1, 2]);
    db.finish().await;
}
