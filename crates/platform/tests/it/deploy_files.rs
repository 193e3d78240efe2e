//! The deployment files agree with the code and the docs.
//!
//! Metric names: the alert rules, their promtool tests and recording rules
//! (`deploy/prometheus/**.yml`) and the Grafana dashboard (`deploy/grafana/**.json`) use only
//! metric names the services export, so a rename in the code fails here instead of silently
//! emptying a panel or muting an alert. What the services export is read from the code, not from
//! a list: every metric family is created from a string literal `"wos_sync_..."` in
//! `crates/*/src` (CONTRACT 6's families in `platform::metrics`, service-specific ones in their
//! service), and its kind from the constructor around the literal (a histogram exports
//! `_bucket`, `_sum` and `_count`, never its bare name). The scan is checked against the
//! platform's registry, so the reader cannot drift from the code it reads. Broker metrics
//! (`rabbitmq_*`) come from RabbitMQ's `rabbitmq_prometheus` plugin and are listed in
//! [`BROKER_METRICS`]. Recording rules (`level:metric:operations`) must be defined in
//! `deploy/prometheus/rules/` and used by an alert, another rule or the dashboard.
//!
//! Runbooks: every alert has a section of its own name under `## Alerts` in
//! `docs/operations.md`, and its `runbook_url` points at it.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use platform::metrics::Metrics;
use prometheus::{core::Collector, proto::MetricType};

/// Metrics of RabbitMQ's `rabbitmq_prometheus` plugin the rules and the dashboard may use:
/// `/metrics/detailed?family=queue_coarse_metrics&family=queue_consumer_count` (labels `vhost`,
/// `queue`), as listed in the plugin's `metrics-detailed.md`. Scraped by the `rabbitmq` job of
/// `deploy/compose/prometheus.yml` and the broker ServiceMonitor of `deploy/k8s`.
const BROKER_METRICS: &[&str] = &[
    "rabbitmq_detailed_queue_messages",
    "rabbitmq_detailed_queue_messages_ready",
    "rabbitmq_detailed_queue_messages_unacked",
    "rabbitmq_detailed_queue_consumers",
];

/// How a family is exposed, which decides the series names it exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// Counter or gauge: the name itself.
    Scalar,
    /// `_bucket`, `_sum`, `_count`.
    Histogram,
    /// Defined away from its constructor (a constant, say): any of the above is accepted.
    Unknown,
}

/// A metric family found in the source: name -> kinds (a name defined twice keeps both) and
/// where it was found.
type Definitions = BTreeMap<String, (BTreeSet<Kind>, String)>;

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Files under `dir` (recursively) whose name ends with one of `extensions`, sorted.
fn files_under(dir: &Path, extensions: &[&str]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if extensions
                .iter()
                .any(|ext| path.to_string_lossy().ends_with(ext))
            {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// The metric families defined in one Rust source text: every `"wos_sync_..."` literal, with the
/// kind named by the constructor in front of it (the text back to the previous `;`, `,`, `{` or
/// `}`: `histogram(`, `HistogramOpts::new(`, `IntCounterVec::new(Opts::new(`, ...).
fn scan_definitions(source: &str, origin: &str, into: &mut Definitions) {
    const OPENING: &str = "\"wos_sync_";
    let mut from = 0;
    while let Some(found) = source[from..].find(OPENING) {
        let start = from + found + 1;
        from = start;
        let rest = &source[start..];
        let length = rest
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(rest.len());
        if !rest[length..].starts_with('"') {
            continue; // not a whole-name literal (a format string, a line of metrics text)
        }
        let name = &rest[..length];
        let before = &source[..start - 1];
        let window = before
            .rfind([';', ',', '{', '}'])
            .map_or(before, |at| &before[at + 1..])
            .to_ascii_lowercase();
        let kind = if window.contains("histogram") {
            Kind::Histogram
        } else if ["counter", "gauge", "opts::new"]
            .iter()
            .any(|marker| window.contains(marker))
        {
            Kind::Scalar
        } else {
            Kind::Unknown
        };
        let line = source[..start].lines().count();
        into.entry(name.to_owned())
            .or_insert_with(|| (BTreeSet::new(), format!("{origin}:{line}")))
            .0
            .insert(kind);
    }
}

/// Every family defined in `crates/*/src`.
fn definitions_in_the_code() -> Definitions {
    let root = repository_root();
    let mut definitions = Definitions::new();
    for krate in std::fs::read_dir(root.join("crates")).unwrap() {
        let src = krate.unwrap().path().join("src");
        if !src.is_dir() {
            continue;
        }
        for file in files_under(&src, &[".rs"]) {
            let text = std::fs::read_to_string(&file).unwrap();
            let origin = file
                .strip_prefix(&root)
                .unwrap_or(&file)
                .display()
                .to_string();
            scan_definitions(&text, &origin, &mut definitions);
        }
    }
    definitions
}

/// The series names a family of `kinds` exports (with the suffix, for histograms).
fn series_names(name: &str, kinds: &BTreeSet<Kind>) -> Vec<String> {
    let mut names = Vec::new();
    for kind in kinds {
        if matches!(kind, Kind::Scalar | Kind::Unknown) {
            names.push(name.to_owned());
        }
        if matches!(kind, Kind::Histogram | Kind::Unknown) {
            names.extend(["_bucket", "_sum", "_count"].map(|suffix| format!("{name}{suffix}")));
        }
    }
    names
}

/// A name of the shape `level:metric:operations` (a recording rule).
fn is_recording_name(token: &str) -> bool {
    let parts: Vec<&str> = token.split(':').collect();
    parts.len() == 3
        && parts.iter().all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
        && parts[0].starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
}

/// The recording rules a rules file defines (`record: NAME`).
fn recording_rules_defined(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let line = without_yaml_comment("rules.yml", line);
            let line = line.trim_start().trim_start_matches("- ");
            line.strip_prefix("record:")
                .map(|name| name.trim().trim_matches(['"', '\'']).to_owned())
        })
        .collect()
}

/// `line` without its YAML comment (prose, not a query); JSON has none.
fn without_yaml_comment<'a>(path: &str, line: &'a str) -> &'a str {
    if !(path.ends_with(".yml") || path.ends_with(".yaml")) {
        return line;
    }
    if line.trim_start().starts_with('#') {
        return "";
    }
    line.find(" #").map_or(line, |at| &line[..at])
}

/// A deployment file's text, by its path relative to the repository.
#[derive(Debug)]
struct DeployFile {
    path: String,
    text: String,
}

/// Every metric-name problem of `files`: unknown `wos_sync_*` or `rabbitmq_*` names, bare
/// histogram names, recording rules used but not defined, or defined but never used.
fn problems(files: &[DeployFile], exported: &Definitions) -> Vec<String> {
    let exported_series: BTreeSet<String> = exported
        .iter()
        .flat_map(|(name, (kinds, _))| series_names(name, kinds))
        .collect();
    let recording: BTreeSet<String> = files
        .iter()
        .filter(|f| f.path.contains("prometheus/rules/"))
        .flat_map(|f| recording_rules_defined(&f.text))
        .collect();
    let mut used_recordings = BTreeSet::new();
    let mut problems = Vec::new();
    for file in files {
        let is_test = file.path.contains("prometheus/tests/");
        for (index, line) in file.text.lines().enumerate() {
            let at = format!("{}:{}", file.path, index + 1);
            let line = without_yaml_comment(&file.path, line);
            let defines = line
                .trim_start()
                .trim_start_matches("- ")
                .starts_with("record:");
            for token in line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            {
                if is_recording_name(token) {
                    if !recording.contains(token) {
                        problems.push(format!(
                            "{at}: recording rule `{token}` is not defined in deploy/prometheus/rules"
                        ));
                    } else if !defines && !is_test {
                        used_recordings.insert(token.to_owned());
                    }
                    continue;
                }
                let token = token.trim_end_matches(':');
                if token.starts_with("wos_sync_") && !exported_series.contains(token) {
                    let hint = match exported.get(token) {
                        Some(_) => " (a histogram: use its _bucket, _sum or _count series)",
                        None => "",
                    };
                    problems.push(format!(
                        "{at}: `{token}` is not a metric the services export{hint}"
                    ));
                }
                if token.starts_with("rabbitmq_") && !BROKER_METRICS.contains(&token) {
                    problems.push(format!(
                        "{at}: `{token}` is not one of the broker metrics scraped (BROKER_METRICS)"
                    ));
                }
            }
        }
    }
    for unused in recording.difference(&used_recordings) {
        problems.push(format!(
            "recording rule `{unused}` is used by no alert, rule or dashboard panel"
        ));
    }
    problems
}

/// The rules, their tests and the dashboards, as they are in the repository.
fn deploy_files() -> Vec<DeployFile> {
    let root = repository_root();
    let mut paths = files_under(&root.join("deploy/prometheus"), &[".yml", ".yaml"]);
    paths.extend(files_under(&root.join("deploy/grafana"), &[".json"]));
    paths
        .into_iter()
        .map(|path| DeployFile {
            text: std::fs::read_to_string(&path).unwrap(),
            path: path.strip_prefix(&root).unwrap().display().to_string(),
        })
        .collect()
}

#[test]
fn deploy_files_use_only_metrics_the_services_export() {
    let files = deploy_files();
    assert!(
        files.iter().any(|f| f.path.ends_with("rules/alerts.yml"))
            && files.iter().any(|f| f.path.ends_with(".json")),
        "the alert rules and the dashboard were not found: {:?}",
        files.iter().map(|f| &f.path).collect::<Vec<_>>()
    );
    let problems = problems(&files, &definitions_in_the_code());
    assert!(
        problems.is_empty(),
        "metric names in deploy/ that the code does not define:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_source_scan_finds_every_platform_family_with_its_kind() {
    let metrics = Metrics::new();
    let collectors: Vec<Box<dyn Collector>> = vec![
        Box::new(metrics.messages_total),
        Box::new(metrics.message_processing_seconds),
        Box::new(metrics.adjustments_total),
        Box::new(metrics.adjustment_lag_seconds),
        Box::new(metrics.push_batch_changes),
        Box::new(metrics.parked_adjustments),
        Box::new(metrics.sku_conflicts),
        Box::new(metrics.items_total),
        Box::new(metrics.shopify_requests_total),
        Box::new(metrics.shopify_request_seconds),
        Box::new(metrics.shopify_throttle_available),
        Box::new(metrics.webhooks_total),
    ];
    let scanned = definitions_in_the_code();
    for collector in collectors {
        for family in collector.collect() {
            let expected = if family.get_field_type() == MetricType::HISTOGRAM {
                Kind::Histogram
            } else {
                Kind::Scalar
            };
            let found = scanned.get(family.name()).map(|(kinds, _)| kinds.clone());
            assert_eq!(
                found,
                Some(BTreeSet::from([expected])),
                "{} as the source scan read it",
                family.name()
            );
        }
    }
}

#[test]
fn the_check_refuses_unknown_names_bare_histograms_and_undefined_or_unused_recordings() {
    let mut exported = Definitions::new();
    scan_definitions(
        r#"
        let a = IntCounterVec::new(Opts::new("wos_sync_things_total", "help"), &["shop"])?;
        let b = HistogramVec::new(
            HistogramOpts::new("wos_sync_wait_seconds", "help"),
            &["shop"],
        )?;
        const NAME: &str = "wos_sync_elsewhere";
        tracing::info!("wos_sync_things_total {value}");
        "#,
        "example.rs",
        &mut exported,
    );
    assert_eq!(
        exported
            .iter()
            .map(|(name, (kinds, _))| (name.as_str(), kinds.iter().copied().collect::<Vec<_>>()))
            .collect::<Vec<_>>(),
        [
            ("wos_sync_elsewhere", vec![Kind::Unknown]),
            ("wos_sync_things_total", vec![Kind::Scalar]),
            ("wos_sync_wait_seconds", vec![Kind::Histogram]),
        ]
    );
    let file = |path: &str, text: &str| DeployFile {
        path: path.to_owned(),
        text: text.to_owned(),
    };
    let good = [
        file(
            "deploy/prometheus/rules/r.yml",
            "# totals (level:metric:operations), from rabbitmq_prometheus\n\
             \x20 - record: shop:wos_sync_things:rate5m # per shop\n    expr: sum by (shop) (rate(wos_sync_things_total[5m]))\n\
             \x20 - alert: A\n    expr: shop:wos_sync_things:rate5m > 1 and rabbitmq_detailed_queue_consumers == 0\n\
             \x20 - alert: B\n    expr: histogram_quantile(0.9, rate(wos_sync_wait_seconds_bucket[5m])) > wos_sync_elsewhere\n",
        ),
        file(
            "deploy/grafana/d.json",
            r#"{"expr": "sum(rate(wos_sync_wait_seconds_count[5m])) / shop:wos_sync_things:rate5m{shop=~\"$shop\"}"}"#,
        ),
    ];
    assert_eq!(problems(&good, &exported), Vec::<String>::new());

    let bad = [
        file(
            "deploy/prometheus/rules/r.yml",
            "  - record: shop:wos_sync_unused:rate5m\n    expr: rate(wos_sync_thing_total[5m])\n",
        ),
        file(
            "deploy/grafana/d.json",
            r#"{"expr": "wos_sync_wait_seconds > 1 or shop:wos_sync_missing:rate5m or rabbitmq_queue_depth"}"#,
        ),
    ];
    assert_eq!(
        problems(&bad, &exported),
        [
            "deploy/prometheus/rules/r.yml:2: `wos_sync_thing_total` is not a metric the services export",
            "deploy/grafana/d.json:1: `wos_sync_wait_seconds` is not a metric the services export (a histogram: use its _bucket, _sum or _count series)",
            "deploy/grafana/d.json:1: recording rule `shop:wos_sync_missing:rate5m` is not defined in deploy/prometheus/rules",
            "deploy/grafana/d.json:1: `rabbitmq_queue_depth` is not one of the broker metrics scraped (BROKER_METRICS)",
            "recording rule `shop:wos_sync_unused:rate5m` is used by no alert, rule or dashboard panel",
        ]
    );
}

/// Every problem between the alert rules and their runbook sections: an alert without a
/// `### NAME` section under `## Alerts`, a `runbook_url` that is not that section's anchor, a
/// section for an alert that does not exist.
fn runbook_problems(rules: &str, operations: &str) -> Vec<String> {
    let Some((_, after)) = operations.split_once("\n## Alerts\n") else {
        return vec!["docs/operations.md has no `## Alerts` section".to_owned()];
    };
    let alerts_part = after.split("\n## ").next().unwrap_or_default();
    let sections: BTreeSet<&str> = alerts_part
        .lines()
        .filter_map(|line| line.strip_prefix("### "))
        .map(str::trim)
        .collect();
    let mut alerts = BTreeMap::<String, Option<String>>::new();
    let mut current = None;
    for line in rules.lines() {
        let line = line.trim_start().trim_start_matches("- ");
        if let Some(name) = line.strip_prefix("alert:") {
            current = Some(name.trim().to_owned());
            alerts.insert(name.trim().to_owned(), None);
        } else if let Some(url) = line.strip_prefix("runbook_url:")
            && let Some(alert) = &current
        {
            alerts.insert(alert.clone(), Some(url.trim().to_owned()));
        }
    }
    let mut problems = Vec::new();
    for (alert, url) in &alerts {
        if !sections.contains(alert.as_str()) {
            problems.push(format!(
                "{alert}: no `### {alert}` section under `## Alerts` in docs/operations.md"
            ));
        }
        let expected = format!("docs/operations.md#{}", alert.to_lowercase());
        if url.as_deref() != Some(expected.as_str()) {
            problems.push(format!(
                "{alert}: runbook_url is {url:?}, expected {expected:?}"
            ));
        }
    }
    for section in sections {
        if !alerts.contains_key(section) {
            problems.push(format!(
                "docs/operations.md: `### {section}` names no alert of deploy/prometheus/rules"
            ));
        }
    }
    problems
}

#[test]
fn every_alert_has_its_runbook_section() {
    let root = repository_root();
    let rules = std::fs::read_to_string(root.join("deploy/prometheus/rules/alerts.yml")).unwrap();
    let operations = std::fs::read_to_string(root.join("docs/operations.md")).unwrap();
    let problems = runbook_problems(&rules, &operations);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_runbook_check_refuses_missing_sections_wrong_links_and_stale_sections() {
    let rules = "groups:\n  - rules:\n      - alert: FooDown\n        annotations:\n          runbook_url: docs/operations.md#foodown\n      - alert: BarHigh\n        annotations:\n          runbook_url: docs/operations.md#bar\n";
    let operations =
        "# Operations\n\n## Alerts\n\n### FooDown\n\ntext\n\n### Gone\n\n## Other\n\n### BarHigh\n";
    assert_eq!(
        runbook_problems(rules, operations),
        [
            "BarHigh: no `### BarHigh` section under `## Alerts` in docs/operations.md",
            "BarHigh: runbook_url is Some(\"docs/operations.md#bar\"), expected \"docs/operations.md#barhigh\"",
            "docs/operations.md: `### Gone` names no alert of deploy/prometheus/rules",
        ]
    );
    assert_eq!(
        runbook_problems(rules, "# Operations\n"),
        ["docs/operations.md has no `## Alerts` section"]
    );
}

/// Every configuration file the repository ships loads as the services load it (a bad key, or
/// an `admin_base_url` the services refuse, fails here rather than at a container's start).
#[test]
fn every_shipped_configuration_file_loads() {
    let root = repository_root();
    // The quick start's file and the compose sandbox's carry the sandbox's own section, which
    // the programs that read them (`wos-sync up`, `shopify-sandbox`) accept.
    const SANDBOX: &[&str] = &["shopify_sandbox"];
    for (file, own) in [
        ("config/local.toml", SANDBOX),
        ("deploy/compose/shopify-sandbox.toml", SANDBOX),
        ("docs/config.example.toml", &[]),
        ("deploy/compose/wos-sync.toml", &[]),
        ("deploy/k8s/base/wos-sync.toml", &[]),
        ("deploy/k8s/overlays/production/wos-sync.toml", &[]),
    ] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        if let Err(err) =
            platform::settings::Settings::from_toml_str_with_sections(&text, file, own)
        {
            panic!("{file} does not load: {err}");
        }
    }
}
