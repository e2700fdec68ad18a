//! Temporary runner (deleted after measuring).
fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(panelink_tests::bench_sso::run())
}
