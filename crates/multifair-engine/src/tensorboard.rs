//! TensorBoard event files written while a run trains (`RUN/tb/events.out.tfevents.*`): scalars
//! per epoch and per logged step, and the resolved hyperparameters through the hparams plugin,
//! so that `tensorboard --logdir results/NAME/runs` shows every run by its path during a sweep.
//! TFRecord framing (length, masked CRC-32C of the length, data, masked CRC-32C of the data;
//! the `crc32c` crate) around `Event` protocol buffers, the few fields they need encoded here.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use serde_json::Value;

/// TFRecord's masked CRC-32C (Castagnoli).
fn masked(bytes: &[u8]) -> u32 {
    let c = crc32c::crc32c(bytes);
    ((c >> 15) | (c << 17)).wrapping_add(0xa282_ead8)
}

/// A protocol-buffer message under construction.
#[derive(Default)]
struct Message(Vec<u8>);

impl Message {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn key(&mut self, field: u32, wire: u8) {
        self.varint(((field as u64) << 3) | wire as u64);
    }

    fn double(mut self, field: u32, v: f64) -> Self {
        self.key(field, 1);
        self.0.extend(v.to_le_bytes());
        self
    }

    fn float(mut self, field: u32, v: f32) -> Self {
        self.key(field, 5);
        self.0.extend(v.to_le_bytes());
        self
    }

    fn int(mut self, field: u32, v: i64) -> Self {
        self.key(field, 0);
        self.varint(v as u64);
        self
    }

    fn bytes(mut self, field: u32, v: &[u8]) -> Self {
        self.key(field, 2);
        self.varint(v.len() as u64);
        self.0.extend(v);
        self
    }

    fn message(self, field: u32, m: Message) -> Self {
        self.bytes(field, &m.0)
    }
}

/// `google.protobuf.Value` of a JSON scalar (lists and objects as their JSON text).
fn proto_value(v: &Value) -> Message {
    match v {
        Value::Null => Message::default().int(1, 0),
        Value::Number(n) => Message::default().double(2, n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => Message::default().bytes(3, s.as_bytes()),
        Value::Bool(b) => Message::default().int(4, *b as i64),
        other => Message::default().bytes(3, other.to_string().as_bytes()),
    }
}

/// One run's event file.
pub struct EventWriter {
    file: File,
    path: std::path::PathBuf,
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl EventWriter {
    /// A new event file in `folder` (TensorBoard reads every file of a folder in order).
    pub fn create(folder: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(folder)
            .with_context(|| format!("creating {}", folder.display()))?;
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
        let name = format!(
            "events.out.tfevents.{}.{host}.{}",
            now() as u64,
            std::process::id()
        );
        let path = folder.join(name);
        let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let mut writer = EventWriter { file, path };
        writer.event(
            Message::default()
                .double(1, now())
                .bytes(3, b"brain.Event:2"),
        )?;
        Ok(writer)
    }

    /// A run's event file (`RUN/tb/`), opened with its resolved configuration as hparams.
    pub fn for_run(out: &Path, config: &Value) -> anyhow::Result<Self> {
        let mut writer = EventWriter::create(&crate::run_dir::RunDir::new(out).tensorboard())?;
        let mut hparams = Vec::new();
        flatten_leaves("", config, &mut hparams);
        writer.hparams(&hparams, &out.display().to_string())?;
        Ok(writer)
    }

    fn event(&mut self, event: Message) -> anyhow::Result<()> {
        let data = event.0;
        let len = (data.len() as u64).to_le_bytes();
        let mut record = Vec::with_capacity(data.len() + 16);
        record.extend(len);
        record.extend(masked(&len).to_le_bytes());
        record.extend(&data);
        record.extend(masked(&data).to_le_bytes());
        self.file
            .write_all(&record)
            .with_context(|| format!("writing {}", self.path.display()))
    }

    /// Scalars at `step`, stamped `wall_time` (seconds since the epoch).
    pub fn scalars(
        &mut self,
        step: i64,
        wall_time: f64,
        values: &[(String, f64)],
    ) -> anyhow::Result<()> {
        let mut summary = Message::default();
        for (tag, value) in values {
            let v = Message::default()
                .bytes(1, tag.as_bytes())
                .float(2, *value as f32);
            summary = summary.message(1, v);
        }
        self.event(
            Message::default()
                .double(1, wall_time)
                .int(2, step)
                .message(5, summary),
        )
    }

    /// The run's hyperparameters (the hparams plugin's session start), from flat key -> value.
    pub fn hparams(&mut self, hparams: &[(String, Value)], group: &str) -> anyhow::Result<()> {
        let mut start = Message::default();
        for (key, value) in hparams {
            let entry = Message::default()
                .bytes(1, key.as_bytes())
                .message(2, proto_value(value));
            start = start.message(1, entry);
        }
        let start = start.bytes(4, group.as_bytes()).double(5, now());
        let content = Message::default().int(1, 0).message(3, start);
        let plugin = Message::default().bytes(1, b"hparams").bytes(2, &content.0);
        let metadata = Message::default().message(1, plugin);
        let value = Message::default()
            .bytes(1, b"_hparams_/session_start_info")
            .message(9, metadata);
        let summary = Message::default().message(1, value);
        self.event(Message::default().double(1, now()).message(5, summary))
    }

    /// Pushes what was written to the disk (once per epoch).
    pub fn flush(&mut self) -> anyhow::Result<()> {
        self.file
            .sync_data()
            .with_context(|| format!("writing {}", self.path.display()))
    }
}

/// The numeric leaves of `value` as `prefix/a/b` -> number.
pub fn flatten_numbers(prefix: &str, value: &Value, out: &mut Vec<(String, f64)>) {
    match value {
        Value::Number(n) => out.extend(n.as_f64().map(|v| (prefix.to_owned(), v))),
        Value::Bool(b) => out.push((prefix.to_owned(), *b as u8 as f64)),
        Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}/{k}")
                };
                flatten_numbers(&key, v, out);
            }
        }
        _ => {}
    }
}

/// The leaves of `value` as `a.b.c` -> JSON scalar (lists as one entry each).
pub fn flatten_leaves(prefix: &str, value: &Value, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten_leaves(&key, v, out);
            }
        }
        other => out.push((prefix.to_owned(), other.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_and_its_mask_match_the_reference_values() {
        // RFC 3720's check value, and TFRecord's mask of the CRC of an empty payload's length.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c::crc32c(&[0u8; 32]), 0x8A91_36AA);
        let c = crc32c::crc32c(b"");
        assert_eq!(
            masked(b""),
            ((c >> 15) | (c << 17)).wrapping_add(0xa282_ead8)
        );
    }

    #[test]
    fn varints_and_fields_encode_as_protobuf() {
        let m = Message::default().int(2, 300).bytes(1, b"ab");
        assert_eq!(m.0, [0x10, 0xac, 0x02, 0x0a, 2, b'a', b'b']);
    }
}
