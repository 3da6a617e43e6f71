//! Plain aligned tables in the style of `docker volume ls`: upper-case headers, columns separated by
//! spaces, no borders, so that they read well and survive `grep` and `awk`.

use std::io::Write;

use tabwriter::TabWriter;

/// Renders `rows` under `headers`. Cells must not contain tabs or newlines (they are replaced).
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut tw = TabWriter::new(Vec::new()).padding(3);
    let clean = |s: &str| s.replace(['\t', '\n'], " ");
    let _ = writeln!(
        tw,
        "{}",
        headers
            .iter()
            .map(|h| clean(h))
            .collect::<Vec<_>>()
            .join("\t")
    );
    for row in rows {
        let _ = writeln!(
            tw,
            "{}",
            row.iter().map(|c| clean(c)).collect::<Vec<_>>().join("\t")
        );
    }
    let bytes = tw.into_inner().unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    // The last column is not padded, but trailing spaces of empty last cells are trimmed as well.
    text.lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_on_the_widest_cell() {
        let out = render(
            &["KEY", "TIER"],
            &[
                vec!["db".into(), "critical".into()],
                vec!["node_modules".into(), "regenerable".into()],
            ],
        );
        assert_eq!(
            out,
            "KEY            TIER\ndb             critical\nnode_modules   regenerable\n"
        );
    }
}
