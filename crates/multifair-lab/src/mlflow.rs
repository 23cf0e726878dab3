//! `multifair export mlflow RESULTS --tracking-uri URL`: a sweep into an MLflow tracking server
//! over its REST API (`/api/2.0/mlflow/...`; the file store is deprecated and the SQL schema is
//! internal, so neither is written directly). One experiment per results folder; a parent run
//! per table row and attribute (the spec, the row's statistics, the tables and figures); a child
//! run per seed with `run.json` flattened into params, `metrics.jsonl` as metric histories
//! (step = epoch; per-step statistics at their step), `test.json` under `test/...`, and the run's
//! files as artifacts. Runs are found again by their tags, so exporting twice adds nothing, and a
//! run that finished after the first export is added by the second. An export that failed
//! midway is repaired by the next: a seed's run left unfinished on the server is deleted and
//! exported again, a row's parent gets its files and params again. Everything local (the
//! tables, every run's files, the figures folder) is read before the first request; each request
//! has connect and whole-call timeouts and is retried with backoff on a transport error or a 5xx.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use multifair_engine::run_dir::RunDir;

use crate::sweep::PlannedRun;
use multifair_engine::tensorboard::{flatten_leaves, flatten_numbers};

/// MLflow's limits: entities per `log-batch` call, parameter value length, key length.
const MAX_METRICS: usize = 1000;
const MAX_PARAMS: usize = 100;
const MAX_VALUE: usize = 6000;
const MAX_KEY: usize = 250;

/// Tags that find runs again.
const HASH_TAG: &str = "multifair.config_hash";
const ROW_TAG: &str = "multifair.row";

/// A client of one tracking server.
struct Client {
    base: String,
    agent: ureq::Agent,
}

/// Tries of a request, and the wait before the first retry (doubled after each).
const TRIES: u32 = 4;
const FIRST_WAIT: Duration = Duration::from_millis(500);

impl Client {
    fn new(uri: &str) -> Self {
        Self::with_timeouts(uri, Duration::from_secs(10), Duration::from_secs(120))
    }

    /// A client whose requests connect within `connect` and end within `whole`.
    fn with_timeouts(uri: &str, connect: Duration, whole: Duration) -> Self {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(connect))
            .timeout_global(Some(whole))
            .build();
        Client {
            base: uri.trim_end_matches('/').to_owned(),
            agent: config.into(),
        }
    }

    /// `send` retried with backoff while it fails in transport or the server answers 5xx or
    /// 429; the last answer or error otherwise.
    fn with_retries<T>(
        &self,
        what: &str,
        mut send: impl FnMut() -> Result<T, ureq::Error>,
        status: impl Fn(&T) -> u16,
    ) -> anyhow::Result<T> {
        let mut wait = FIRST_WAIT;
        for attempt in 1..=TRIES {
            let retry = match send() {
                Ok(answer) if !(status(&answer) >= 500 || status(&answer) == 429) => {
                    return Ok(answer);
                }
                Ok(answer) if attempt == TRIES => return Ok(answer),
                Err(e) if attempt == TRIES => {
                    return Err(
                        anyhow::Error::from(e).context(format!("{what} (tried {TRIES} times)"))
                    );
                }
                Ok(answer) => format!("HTTP {}", status(&answer)),
                Err(e) => e.to_string(),
            };
            eprintln!("{what}: {retry}; retrying in {:.1} s", wait.as_secs_f64());
            std::thread::sleep(wait);
            wait *= 2;
        }
        unreachable!("the last try returns")
    }

    /// A REST call; an error status is an error with the server's message.
    fn call(&self, method: &str, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        let url = format!("{}/api/2.0/mlflow/{path}", self.base);
        let send = || match method {
            "GET" => {
                let mut request = self.agent.get(&url);
                for (k, v) in body.as_object().into_iter().flatten() {
                    request = request.query(k, v.as_str().unwrap_or_default());
                }
                request.call()
            }
            _ => self.agent.post(&url).send_json(body),
        };
        let what = format!("{method} {url}");
        let mut response = self.with_retries(&what, send, |r| r.status().as_u16())?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok((status, value))
    }

    fn ok(&self, method: &str, path: &str, body: &Value) -> anyhow::Result<Value> {
        let (status, value) = self.call(method, path, body)?;
        if !(200..300).contains(&status) {
            bail!(
                "{method} {}/api/2.0/mlflow/{path}: HTTP {status}: {value}",
                self.base
            );
        }
        Ok(value)
    }

    /// The experiment `name`, created if missing.
    fn experiment(&self, name: &str) -> anyhow::Result<String> {
        let (status, found) = self.call(
            "GET",
            "experiments/get-by-name",
            &json!({"experiment_name": name}),
        )?;
        if status == 200 {
            return Ok(found["experiment"]["experiment_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned());
        }
        let created = self.ok("POST", "experiments/create", &json!({"name": name}))?;
        Ok(created["experiment_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// The run of `experiment` whose tag `key` is `value`.
    fn find(&self, experiment: &str, key: &str, value: &str) -> anyhow::Result<Option<Value>> {
        let filter = format!(
            "tags.`{key}` = '{}'",
            value.replace('\\', "\\\\").replace('\'', "\\'")
        );
        let found = self.ok(
            "POST",
            "runs/search",
            &json!({"experiment_ids": [experiment], "filter": filter, "max_results": 2}),
        )?;
        Ok(found["runs"].as_array().and_then(|r| r.first()).cloned())
    }

    fn create_run(
        &self,
        experiment: &str,
        name: &str,
        tags: &[(String, String)],
    ) -> anyhow::Result<Value> {
        let tags: Vec<Value> = tags
            .iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect();
        let body = json!({"experiment_id": experiment, "run_name": name, "start_time": now_ms(), "tags": tags});
        Ok(self.ok("POST", "runs/create", &body)?["run"].clone())
    }

    /// Params and metrics in batches within the API's limits.
    fn log(
        &self,
        run_id: &str,
        params: &[(String, String)],
        metrics: &[Value],
    ) -> anyhow::Result<()> {
        for chunk in params.chunks(MAX_PARAMS) {
            let params: Vec<Value> = chunk
                .iter()
                .map(|(k, v)| json!({"key": k, "value": v}))
                .collect();
            self.ok(
                "POST",
                "runs/log-batch",
                &json!({"run_id": run_id, "params": params}),
            )?;
        }
        for chunk in metrics.chunks(MAX_METRICS) {
            self.ok(
                "POST",
                "runs/log-batch",
                &json!({"run_id": run_id, "metrics": chunk}),
            )?;
        }
        Ok(())
    }

    fn finish(&self, run_id: &str) -> anyhow::Result<()> {
        let body = json!({"run_id": run_id, "status": "FINISHED", "end_time": now_ms()});
        self.ok("POST", "runs/update", &body).map(|_| ())
    }

    /// Deletes a run a failed export left unfinished (it leaves the searches).
    fn delete(&self, run_id: &str) -> anyhow::Result<()> {
        self.ok("POST", "runs/delete", &json!({"run_id": run_id}))
            .map(|_| ())
    }

    /// Uploads `bytes` as artifact `name` of `run` (through the server's artifact proxy).
    fn upload(&self, run: &Value, bytes: &[u8], name: &str) -> anyhow::Result<()> {
        let uri = run["info"]["artifact_uri"].as_str().unwrap_or_default();
        let Some(rest) = uri.strip_prefix("mlflow-artifacts:") else {
            bail!(
                "artifact store '{uri}' is not served by the tracking server; start it with --serve-artifacts"
            );
        };
        let url = format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/{}/{name}",
            self.base,
            rest.trim_start_matches('/')
        );
        let response = self.with_retries(
            &format!("PUT {url}"),
            || self.agent.put(&url).send(bytes),
            |r| r.status().as_u16(),
        )?;
        if !response.status().is_success() {
            bail!("PUT {url}: HTTP {}", response.status());
        }
        Ok(())
    }
}

fn now_ms() -> u64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.map_or(0, |d| d.as_millis() as u64)
}

/// A key with MLflow's allowed characters (alphanumerics, `_ - . / ` and space), within its
/// length limit.
pub fn sanitise(key: &str) -> String {
    let clean: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_-./ ".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    clean.chars().take(MAX_KEY).collect()
}

/// `run.json` as params: each leaf under its dotted path, its JSON text (strings bare), cut to
/// MLflow's value limit.
pub fn params_of(run_json: &Value) -> Vec<(String, String)> {
    let mut leaves = Vec::new();
    flatten_leaves("", run_json, &mut leaves);
    let mut params: BTreeMap<String, String> = BTreeMap::new();
    for (key, value) in leaves {
        let text = value
            .as_str()
            .map_or_else(|| value.to_string(), str::to_owned);
        params.insert(sanitise(&key), text.chars().take(MAX_VALUE).collect());
    }
    params.into_iter().collect()
}

fn metric(key: &str, value: f64, step: u64, timestamp: u64) -> Value {
    json!({"key": sanitise(key), "value": value, "step": step, "timestamp": timestamp})
}

/// `metrics.jsonl` as metric histories (epoch lines at step = epoch, per-step statistics under
/// `step/` at their step, timestamps from each line's wall-clock time) and `test.json` under
/// `test/` at the selected epoch.
pub fn metrics_of(metrics: &str, test: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for line in metrics
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
    {
        let time = line["time"].as_u64().unwrap_or_else(now_ms);
        if let Some(step) = line["step"].as_u64() {
            let mut stats = Vec::new();
            flatten_numbers("step", &line["stats"], &mut stats);
            out.extend(stats.into_iter().map(|(k, v)| metric(&k, v, step, time)));
            continue;
        }
        let epoch = line["epoch"].as_u64().unwrap_or_default();
        let mut values = Vec::new();
        for key in ["train_loss", "lr", "val", "method"] {
            flatten_numbers(key, &line[key], &mut values);
        }
        out.extend(values.into_iter().map(|(k, v)| metric(&k, v, epoch, time)));
    }
    let mut values = Vec::new();
    flatten_numbers("test", test, &mut values);
    let epoch = test["selected_epoch"].as_u64().unwrap_or_default();
    out.extend(
        values
            .into_iter()
            .map(|(k, v)| metric(&k, v, epoch, now_ms())),
    );
    out
}

fn git_commit() -> String {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output();
    out.ok()
        .filter(|o| o.status.success())
        .map_or("unknown".into(), |o| {
            String::from_utf8_lossy(&o.stdout).trim().to_owned()
        })
}

/// What an export did.
#[derive(Debug, Default)]
pub struct Exported {
    pub parents: usize,
    pub children: usize,
    /// Runs not finished yet (exported by a later call).
    pub unfinished: usize,
    pub already: usize,
}

/// Exports the sweep in `results` into `experiment` (default: the spec's name) on `uri`;
/// `figures` adds a folder of figures to the parent runs.
pub fn export(
    results: &Path,
    uri: &str,
    experiment: Option<&str>,
    figures: Option<&Path>,
) -> anyhow::Result<Exported> {
    let plan = crate::sweep::read_plan(results)?;
    // Everything local first: a missing figure folder or a broken run file stops the export
    // before the server is touched.
    let rendered = Tables::render(results, figures)?;
    let mut locals = BTreeMap::new();
    for run in plan.runs.iter().filter(|r| r.finished(results)) {
        locals.insert(run.id.clone(), LocalRun::read(&results.join(&run.folder))?);
    }
    let client = Client::new(uri);
    let export = Export {
        experiment: client.experiment(experiment.unwrap_or(&plan.spec.name))?,
        client,
        spec: &plan.spec,
        tables: &rendered,
    };
    let mut done = Exported::default();
    let mut groups: BTreeMap<(String, String), Vec<&PlannedRun>> = BTreeMap::new();
    for run in &plan.runs {
        (groups.entry((run.label.clone(), run.attribute.clone())))
            .or_default()
            .push(run);
    }
    for ((label, attribute), runs) in groups {
        let row = Row {
            label: &label,
            attribute: &attribute,
            method: &runs[0].method,
        };
        let parent_id = export.parent(&row, &mut done)?;
        let mut finished = Vec::new();
        for run in runs {
            let Some(local) = locals.get(&run.id) else {
                done.unfinished += 1;
                continue;
            };
            export.child(&parent_id, run, local, &mut done)?;
            finished.push(local);
        }
        // The row's statistics over its finished seeds (re-logged: the latest value wins).
        (export.client).log(&parent_id, &[], &row_metrics(&finished, &attribute))?;
        export.client.finish(&parent_id)?;
    }
    Ok(done)
}

/// An export in progress: the server, its experiment, the spec and what every parent carries.
struct Export<'a> {
    client: Client,
    experiment: String,
    spec: &'a crate::sweep::Spec,
    tables: &'a Tables,
}

impl Export<'_> {
    /// The row's parent run, created (with its files) when missing and refilled when a failed
    /// export left it unfinished; its id.
    fn parent(&self, row: &Row, done: &mut Exported) -> anyhow::Result<String> {
        let key = format!("{}/{}/{}", self.spec.name, row.label, row.attribute);
        let parent = match self.client.find(&self.experiment, ROW_TAG, &key)? {
            Some(parent) if parent["info"]["status"] != "FINISHED" => {
                fill_parent(&self.client, &parent, self.spec, row, self.tables)?;
                parent
            }
            Some(parent) => parent,
            None => {
                done.parents += 1;
                let tags = vec![
                    (ROW_TAG.to_owned(), key.clone()),
                    ("mlflow.note.content".into(), self.spec.description.clone()),
                ];
                let name = format!("{} / {}", row.label, row.attribute);
                let parent = self.client.create_run(&self.experiment, &name, &tags)?;
                fill_parent(&self.client, &parent, self.spec, row, self.tables)?;
                parent
            }
        };
        Ok(parent["info"]["run_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// A finished seed's run: left alone when the server has it finished, replaced whole when
    /// a failed export left it unfinished, exported when missing.
    fn child(
        &self,
        parent_id: &str,
        run: &PlannedRun,
        local: &LocalRun,
        done: &mut Exported,
    ) -> anyhow::Result<()> {
        match self.client.find(&self.experiment, HASH_TAG, &run.id)? {
            Some(found) if found["info"]["status"] == "FINISHED" => done.already += 1,
            stale => {
                if let Some(stale) = stale {
                    (self.client).delete(stale["info"]["run_id"].as_str().unwrap_or_default())?;
                }
                export_run(&self.client, &self.experiment, parent_id, run, local)?;
                done.children += 1;
            }
        }
        Ok(())
    }
}

/// The tables and figures every parent carries, rendered in memory.
struct Tables {
    md: String,
    csv: String,
    figures: Vec<(String, Vec<u8>)>,
}

impl Tables {
    fn render(results: &Path, figures: Option<&Path>) -> anyhow::Result<Tables> {
        let tables = crate::table::load(results)?;
        let figures = (figure_files(figures)?.into_iter())
            .map(|f| {
                let name = f
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                let bytes =
                    std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?;
                Ok((name, bytes))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Tables {
            md: crate::table::render(&tables, crate::table::Format::Md)?,
            csv: crate::table::render(&tables, crate::table::Format::Csv)?,
            figures,
        })
    }
}

/// A finished run's files, read before any request.
struct LocalRun {
    run_json: Value,
    test: Value,
    metrics: String,
    files: Vec<(String, Vec<u8>)>,
}

impl LocalRun {
    fn read(folder: &Path) -> anyhow::Result<LocalRun> {
        let dir = RunDir::new(folder);
        let paths = [dir.run_json(), dir.test(), dir.predictions(), dir.metrics()];
        let files = (paths.iter())
            .map(|path| {
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default();
                let bytes =
                    std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
                Ok((name.to_owned(), bytes))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let text = |i: usize| String::from_utf8_lossy(&files[i].1).into_owned();
        let run_json = serde_json::from_str(&text(0))
            .with_context(|| format!("parsing {}", paths[0].display()))?;
        let test = (dir.report()?).with_context(|| format!("{}: no report", folder.display()))?;
        Ok(LocalRun {
            run_json,
            test,
            metrics: text(3),
            files,
        })
    }
}

/// A table row and attribute: the parent run's identity.
struct Row<'a> {
    label: &'a str,
    attribute: &'a str,
    method: &'a str,
}

/// A row's parent run gets the spec and the row as params, the tables and figures as
/// artifacts (both idempotent: the same values, files overwritten).
fn fill_parent(
    client: &Client,
    parent: &Value,
    spec: &crate::sweep::Spec,
    row: &Row,
    tables: &Tables,
) -> anyhow::Result<()> {
    let id = parent["info"]["run_id"].as_str().unwrap_or_default();
    let mut params = params_of(&json!({"spec": serde_json::to_value(spec)?}));
    params.retain(|(k, _)| !k.starts_with("spec.runs"));
    params.push(("row.label".into(), row.label.to_owned()));
    params.push(("row.method".into(), row.method.to_owned()));
    params.push(("row.attribute".into(), row.attribute.to_owned()));
    client.log(id, &params, &[])?;
    client.upload(parent, tables.md.as_bytes(), "table.md")?;
    client.upload(parent, tables.csv.as_bytes(), "table.csv")?;
    for (name, bytes) in &tables.figures {
        client.upload(parent, bytes, &format!("figures/{name}"))?;
    }
    Ok(())
}

fn figure_files(figures: Option<&Path>) -> anyhow::Result<Vec<PathBuf>> {
    let Some(folder) = figures else {
        return Ok(Vec::new());
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(folder)
        .with_context(|| format!("reading {}", folder.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "png" || e == "svg"))
        .collect();
    files.sort();
    Ok(files)
}

/// Mean and std over seeds of each test metric of a row, with the number of seeds.
fn row_metrics(runs: &[&LocalRun], attribute: &str) -> Vec<Value> {
    let mut by_key: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for run in runs {
        let test = &run.test;
        let mut values = Vec::new();
        flatten_numbers(
            "",
            &json!({"auc": test["auc"], "es_auc": test["attributes"][attribute]["es_auc"],
                                    "groups": test["attributes"][attribute]["groups"]}),
            &mut values,
        );
        for (k, v) in values {
            by_key.entry(k).or_default().push(v);
        }
    }
    let time = now_ms();
    let mut out = vec![metric("seeds", runs.len() as f64, 0, time)];
    for (key, values) in by_key {
        if let Some((mean, std)) = crate::table::mean_std(&values) {
            out.push(metric(&format!("test/{key}/mean"), mean, 0, time));
            out.push(metric(&format!("test/{key}/std"), std, 0, time));
        }
    }
    out
}

fn export_run(
    client: &Client,
    experiment: &str,
    parent: &str,
    run: &PlannedRun,
    local: &LocalRun,
) -> anyhow::Result<()> {
    let tags = vec![
        ("mlflow.parentRunId".to_owned(), parent.to_owned()),
        (HASH_TAG.to_owned(), run.id.clone()),
        (
            "multifair.folder".to_owned(),
            run.folder.display().to_string(),
        ),
        (
            "multifair.seed_index".to_owned(),
            run.seed_index.to_string(),
        ),
        (
            "mlflow.source.git.commit".to_owned(),
            local.run_json["git_commit"]
                .as_str()
                .map_or_else(git_commit, str::to_owned),
        ),
    ];
    let name = format!(
        "{} / {} / seed {}",
        run.label, run.attribute, run.seed_index
    );
    let created = client.create_run(experiment, &name, &tags)?;
    let id = created["info"]["run_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    client.log(
        &id,
        &params_of(&local.run_json),
        &metrics_of(&local.metrics, &local.test),
    )?;
    for (file, bytes) in &local.files {
        client.upload(&created, bytes, file)?;
    }
    // Last: a run is FINISHED on the server only once everything above is there.
    client.finish(&id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// A server that accepts and never answers makes a request fail within the client's
    /// bound (tries x whole-call timeout + the backoff); one that answers 503 twice and then
    /// 200 is retried to success.
    #[test]
    fn requests_time_out_and_retry_5xx_with_backoff() {
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let uri = format!("http://{}", silent.local_addr().unwrap());
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in silent.incoming().take(TRIES as usize) {
                held.push(stream); // accepted, never answered
            }
            std::thread::sleep(Duration::from_secs(30));
        });
        let client =
            Client::with_timeouts(&uri, Duration::from_millis(300), Duration::from_millis(300));
        let start = std::time::Instant::now();
        let e = client
            .call("GET", "experiments/get-by-name", &json!({}))
            .unwrap_err();
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
        assert!(format!("{e:#}").contains("tried 4 times"), "{e:#}");

        let flaky = TcpListener::bind("127.0.0.1:0").unwrap();
        let uri = format!("http://{}", flaky.local_addr().unwrap());
        std::thread::spawn(move || {
            for (i, stream) in flaky.incoming().take(3).enumerate() {
                let mut stream = stream.unwrap();
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request);
                let (status, body) = match i {
                    0 | 1 => ("503 Service Unavailable", "{}"),
                    _ => ("200 OK", "{\"ok\": true}"),
                };
                let reply = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(reply.as_bytes()).unwrap();
            }
        });
        let client = Client::with_timeouts(&uri, Duration::from_secs(2), Duration::from_secs(5));
        let (status, value) = client.call("POST", "runs/update", &json!({})).unwrap();
        assert_eq!((status, value), (200, json!({"ok": true})));
    }

    #[test]
    fn keys_are_sanitised_and_values_cut_to_the_limits() {
        assert_eq!(sanitise("val/group_auc/0"), "val/group_auc/0");
        assert_eq!(
            sanitise("config.hparams.multifair_attributes:x"),
            "config.hparams.multifair_attributes_x"
        );
        assert_eq!(sanitise(&"k".repeat(300)).len(), MAX_KEY);
        let params = params_of(&json!({"a": {"b": "text", "c": [1, 2]}, "d": "x".repeat(7000)}));
        assert_eq!(params[0], ("a.b".to_owned(), "text".to_owned()));
        assert_eq!(params[1], ("a.c".to_owned(), "[1,2]".to_owned()));
        assert_eq!(params[2].1.len(), MAX_VALUE);
    }

    #[test]
    fn metric_histories_follow_the_log() {
        let log = concat!(
            "{\"step\": 3, \"epoch\": 1, \"stats\": {\"coeff_0\": 0.5}, \"time\": 1000}\n",
            "{\"epoch\": 1, \"train_loss\": 0.7, \"lr\": 0.1, \"val\": {\"auc\": 0.6}, \"method\": {}, \"time\": 2000}\n"
        );
        let metrics = metrics_of(log, &json!({"auc": 0.55, "selected_epoch": 1}));
        assert_eq!(
            metrics[0],
            json!({"key": "step/coeff_0", "value": 0.5, "step": 3, "timestamp": 1000})
        );
        assert!(
            metrics
                .contains(&json!({"key": "val/auc", "value": 0.6, "step": 1, "timestamp": 2000}))
        );
        assert!(
            metrics
                .iter()
                .any(|m| m["key"] == "test/auc" && m["value"] == 0.55 && m["step"] == 1)
        );
    }
}
