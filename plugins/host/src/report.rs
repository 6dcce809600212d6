//! Rendering a reporter's output for people and programs.

use crate::bindings::reporter::{Report, Table};

/// A table as CSV (RFC 4180, header row first).
pub fn table_csv(t: &Table) -> anyhow::Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(&t.columns)?;
    for r in &t.rows {
        w.write_record(r)?;
    }
    Ok(w.into_inner()?)
}

/// A table as a JSON array of objects keyed by column.
pub fn table_json(t: &Table) -> serde_json::Value {
    serde_json::Value::Array(
        t.rows
            .iter()
            .map(|r| {
                serde_json::Value::Object(
                    t.columns
                        .iter()
                        .cloned()
                        .zip(r.iter().cloned().map(serde_json::Value::String))
                        .collect(),
                )
            })
            .collect(),
    )
}

/// The bytes to print and their media type, for `format` = csv or json. A
/// document is passed through as the plugin made it.
pub fn render(report: &Report, format: &str) -> anyhow::Result<(String, Vec<u8>)> {
    match (report, format) {
        (Report::Document(d), _) => Ok((d.media_type.clone(), d.body.clone())),
        (Report::Table(t), "csv") => Ok(("text/csv".into(), table_csv(t)?)),
        (Report::Table(t), "json") => Ok((
            "application/json".into(),
            serde_json::to_vec_pretty(&table_json(t))?,
        )),
        (_, f) => anyhow::bail!("unknown report format {f:?}: use csv or json"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_render_as_csv_with_quoting_and_as_json_objects() {
        let t = Table {
            columns: vec!["name".into(), "note".into()],
            rows: vec![vec!["a,b".into(), "say \"hi\"".into()]],
        };
        assert_eq!(
            String::from_utf8(table_csv(&t).unwrap()).unwrap(),
            "name,note\n\"a,b\",\"say \"\"hi\"\"\"\n"
        );
        assert_eq!(
            table_json(&t),
            serde_json::json!([{"name": "a,b", "note": "say \"hi\""}])
        );
    }
}
