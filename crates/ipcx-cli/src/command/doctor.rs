//! `ipcx doctor`.

pub fn run() -> anyhow::Result<()> {
    anyhow::bail!("doctor is not implemented yet")
}
