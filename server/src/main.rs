//! `fieldsync`: the one binary of the product.

fn main() -> anyhow::Result<()> {
    anyhow::bail!("fieldsync: no subcommands yet; the server arrives with the edge server issue")
}
