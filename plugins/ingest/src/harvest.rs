//! Harvesting numeric metrics from JSON and CSV files.

use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// Running statistics of one metric field across files.
#[derive(Debug, Default)]
struct Stat {
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    files: std::collections::BTreeSet<String>,
}

impl Stat {
    fn add(&mut self, value: f64, file: &str) {
        if self.count == 0 {
            self.min = value;
            self.max = value;
        } else {
            self.min = self.min.min(value);
            self.max = self.max.max(value);
        }
        self.count += 1;
        self.sum += value;
        if !self.files.contains(file) {
            self.files.insert(file.to_owned());
        }
    }
}

/// Metric statistics keyed by field name.
#[derive(Debug)]
pub struct Harvest {
    keys: Vec<String>,
    stats: BTreeMap<String, Stat>,
}

impl Harvest {
    pub fn new(keys: &[String]) -> Self {
        Self {
            keys: keys.iter().map(|k| k.to_lowercase()).collect(),
            stats: BTreeMap::new(),
        }
    }

    pub fn fields(&self) -> usize {
        self.stats.len()
    }

    fn wanted(&self, name: &str) -> bool {
        let name = name.to_lowercase();
        self.keys.iter().any(|k| name.contains(k.as_str()))
    }

    fn record(&mut self, name: &str, value: f64, file: &str) {
        if value.is_finite() {
            self.stats
                .entry(name.to_owned())
                .or_default()
                .add(value, file);
        }
    }

    /// Whether files of this type are parsed for metrics (JSON and CSV);
    /// other types are only counted, by the inventory.
    pub fn parses(ext: &str) -> bool {
        matches!(ext, "json" | "csv")
    }

    /// Harvests one file's contents by its type.
    pub fn file(&mut self, path: &str, ext: &str, bytes: &[u8]) -> Result<(), String> {
        match ext {
            "json" => {
                let value: Value =
                    serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
                self.json(&value, path);
                Ok(())
            }
            "csv" => self.csv(path, bytes),
            _ => Ok(()),
        }
    }

    fn json(&mut self, value: &Value, file: &str) {
        match value {
            Value::Object(map) => self.json_object(map, file),
            Value::Array(items) => items.iter().for_each(|v| self.json(v, file)),
            _ => {}
        }
    }

    fn json_object(&mut self, map: &Map<String, Value>, file: &str) {
        for (key, value) in map {
            match value {
                Value::Number(n) if self.wanted(key) => {
                    if let Some(v) = n.as_f64() {
                        self.record(key, v, file);
                    }
                }
                Value::Array(items) if self.wanted(key) => {
                    for v in items.iter().filter_map(Value::as_f64) {
                        self.record(key, v, file);
                    }
                    items.iter().for_each(|v| self.json(v, file));
                }
                other => self.json(other, file),
            }
        }
    }

    fn csv(&mut self, path: &str, bytes: &[u8]) -> Result<(), String> {
        let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(bytes);
        let headers = reader
            .headers()
            .map_err(|e| format!("not valid CSV: {e}"))?
            .clone();
        let columns: Vec<(usize, String)> = headers
            .iter()
            .enumerate()
            .filter(|(_, h)| self.wanted(h))
            .map(|(i, h)| (i, h.trim().to_owned()))
            .collect();
        for record in reader.records() {
            let record = record.map_err(|e| format!("not valid CSV: {e}"))?;
            for (i, name) in &columns {
                if let Some(v) = record.get(*i).and_then(|s| s.trim().parse::<f64>().ok()) {
                    self.record(name, v, path);
                }
            }
        }
        Ok(())
    }

    /// One entry per field: name, count, mean, min, max and how many files had it.
    pub fn into_json(self) -> Vec<Value> {
        self.stats
            .into_iter()
            .map(|(name, s)| {
                #[allow(clippy::cast_precision_loss)]
                let mean = s.sum / s.count as f64;
                json!({
                    "name": name,
                    "count": s.count,
                    "mean": mean,
                    "min": s.min,
                    "max": s.max,
                    "files": s.files.len(),
                })
            })
            .collect()
    }
}
