//! The JSON lines export of the whole store (`lab results export`): one object per row,
//! parents before children, JSON columns embedded as JSON, all read from one snapshot.

use rusqlite::types::ValueRef;

use super::{Store, StoreError};

/// Tables in the order [`Store::export_jsonl`] writes them: parents before children.
const EXPORT_TABLES: [&str; 7] = [
    "schema_migrations",
    "sessions",
    "runs",
    "run_tests",
    "outcomes",
    "metrics",
    "crashes",
];

impl Store {
    /// Writes every table as JSON lines, parents first, each object with a `table` field.
    /// Columns that hold JSON are embedded as JSON, not as strings. Reads one snapshot, so a
    /// lab writing meanwhile cannot tear the export. Returns the number of lines.
    pub fn export_jsonl(&self, out: &mut dyn std::io::Write) -> Result<u64, StoreError> {
        // A read transaction: one consistent snapshot of all tables. Dropping it rolls back,
        // which for a reader only ends it.
        let tx = self
            .conn
            .unchecked_transaction()
            .map_err(|source| StoreError::ExportRead {
                path: self.path.clone(),
                table: "sessions",
                source,
            })?;
        let mut lines = 0;
        for table in EXPORT_TABLES {
            let err = |source| StoreError::ExportRead {
                path: self.path.clone(),
                table,
                source,
            };
            let mut stmt = tx
                .prepare(&format!("SELECT * FROM {table} ORDER BY rowid"))
                .map_err(err)?;
            let names: Vec<String> = stmt
                .column_names()
                .iter()
                .map(|n| (*n).to_owned())
                .collect();
            let mut rows = stmt.query([]).map_err(err)?;
            while let Some(row) = rows.next().map_err(err)? {
                let mut obj = serde_json::Map::new();
                obj.insert("table".into(), table.into());
                for (i, name) in names.iter().enumerate() {
                    let value = row.get_ref(i).map_err(err)?;
                    obj.insert(name.clone(), json_value(name, value));
                }
                let line = serde_json::Value::Object(obj).to_string();
                writeln!(out, "{line}").map_err(|source| StoreError::ExportWrite {
                    path: self.path.clone(),
                    source,
                })?;
                lines += 1;
            }
        }
        out.flush().map_err(|source| StoreError::ExportWrite {
            path: self.path.clone(),
            source,
        })?;
        Ok(lines)
    }
}

/// One column of an exported row. Text columns that hold JSON documents (`json`, `*_json`)
/// are parsed, so the export is JSON all the way down.
fn json_value(column: &str, value: ValueRef<'_>) -> serde_json::Value {
    use serde_json::Value;
    match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => i.into(),
        ValueRef::Real(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        ValueRef::Text(t) => {
            let s = String::from_utf8_lossy(t);
            let is_json = column == "json" || column.ends_with("_json");
            match is_json
                .then(|| serde_json::from_str::<Value>(&s).ok())
                .flatten()
            {
                Some(v) => v,
                None => Value::String(s.into_owned()),
            }
        }
        ValueRef::Blob(b) => Value::String(hex::encode(b)),
    }
}
