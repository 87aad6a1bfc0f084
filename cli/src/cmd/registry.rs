//! `atctl registry`: what the registry says, as a table.

use armored_crypto::registry::Registry;

/// Renders owners, twins with their devices, and parties.
pub fn render(r: &Registry) -> String {
    let mut out = String::new();
    out.push_str("OWNERS\n");
    for id in r.owner_ids() {
        if let Some(o) = r.owner(&id) {
            out.push_str(&format!(
                "  {id:<20} pre {}  sig {}  gen {}\n",
                o.pre.key_id(),
                o.sig.key_id(),
                o.generation
            ));
        }
    }
    out.push_str("TWINS\n");
    let mut twins: Vec<&String> = r.twin_ids().collect();
    twins.sort();
    for t in twins {
        if let Some(e) = r.twin(t) {
            out.push_str(&format!("  {t:<20} owner {}\n", e.owner_id));
            for (d, entry) in &e.devices {
                let state = if r.device(t, d).is_some() {
                    "enrolled"
                } else {
                    "revoked"
                };
                out.push_str(&format!(
                    "    {d:<18} sig {}  epoch {} ms  slot {} ms  share epoch {} slots  {state}\n",
                    entry.enrollment.sig.key_id(),
                    entry.enrollment.epoch_len_ms,
                    entry.enrollment.slot_len_ms,
                    entry.enrollment.slots_per_share_epoch
                ));
            }
        }
    }
    out.push_str("PARTIES\n");
    for id in r.party_ids() {
        if let Some(p) = r.party(&id) {
            out.push_str(&format!(
                "  {id:<20} {:?}  sig {}\n",
                p.kind,
                p.sig.key_id()
            ));
        }
    }
    out
}

/// Prints the registry as it stands.
pub async fn run(connect: &super::Connect) -> anyhow::Result<()> {
    let r = connect.owner()?.registry().await?;
    print!("{}", render(&r));
    Ok(())
}
