//! The metric contract of `docs/operations.md` is what the services really export: every
//! metric the table lists (except those marked planned) is in the exposition of each service
//! named in its "exported by" column, with exactly the labels the table names; every metric
//! the services export is in the table; and every metric the PrometheusRule, its promtool
//! tests and the Grafana dashboard use is in the table. (`scripts/validate-deploy.sh` then
//! runs promtool on the rules against those names.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

/// One row of the contract table.
#[derive(Debug)]
struct Row {
    name: String,
    kind: String,
    labels: BTreeSet<String>,
    exporters: Vec<String>,
    planned: bool,
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The backticked words of `cell` outside parentheses.
fn names_outside_parens(cell: &str) -> BTreeSet<String> {
    let mut depth = 0;
    let mut outside = String::new();
    for c in cell.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ if depth == 0 => outside.push(c),
            _ => {}
        }
    }
    outside
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

fn contract() -> Vec<Row> {
    let doc = std::fs::read_to_string(root().join("docs/operations.md")).unwrap();
    doc.lines()
        .filter(|l| l.starts_with("| `provisio_"))
        .map(|l| {
            // `| name | type | labels | exported by | meaning | status |`
            let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
            Row {
                name: cells[0].trim_matches('`').to_owned(),
                kind: cells[1].split_whitespace().next().unwrap().to_owned(),
                labels: names_outside_parens(cells[2]),
                exporters: ["serve", "watch"]
                    .into_iter()
                    .filter(|s| cells[3].contains(s))
                    .map(str::to_owned)
                    .collect(),
                planned: cells.last().unwrap().contains("planned"),
            }
        })
        .collect()
}

/// Metric family name → the label names of its samples (`le` of histograms left out).
fn exposition(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut families: BTreeMap<String, String> = BTreeMap::new();
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
            families.insert(name.to_owned(), kind.to_owned());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap();
        let sample = &line[..name_end];
        let (family, kind) = families
            .iter()
            .filter(|(f, _)| sample.starts_with(f.as_str()))
            .max_by_key(|(f, _)| f.len())
            .unwrap_or_else(|| panic!("no TYPE for {sample}"));
        let name = match kind.as_str() {
            "counter" => format!("{family}_total"),
            _ => family.clone(),
        };
        let labels = out.entry(name).or_default();
        if let Some(body) = line[name_end..].strip_prefix('{') {
            for pair in body.split('}').next().unwrap().split(',') {
                let key = pair.split('=').next().unwrap();
                if key != "le" && !key.is_empty() {
                    labels.insert(key.to_owned());
                }
            }
        }
    }
    out
}

/// watch's exposition with every metric holding a series (the example registry loaded, one
/// of each event).
fn watch_exposition() -> String {
    use provisio::services::watch::metrics::Metrics;
    let m = Metrics::new();
    m.regeneration("ok");
    m.failure("poll");
    m.tenants("changed", 1);
    m.commits.inc();
    m.duration.observe(0.5);
    m.success_now();
    m.pending();
    m.valid();
    m.git.pushed("manifests", &BTreeMap::from([("ok", 1)]));
    m.git.set_unpushed("manifests", 0);
    m.git.fetched_now("registry");
    let (reg, _) = provisio::ops::load::load(&root().join("registry")).unwrap();
    m.lifecycle(&reg);
    m.encode()
}

fn serve_exposition() -> String {
    use provisio::services::serve::metrics::Metrics;
    let m = Metrics::default();
    m.observe("created", "created", 201, Duration::from_millis(5));
    m.observe_report("backup-completed", "recorded", Duration::from_millis(5));
    m.commit(1);
    m.pushed("ok");
    m.unpushed(0);
    m.render()
}

#[test]
fn every_metric_of_the_contract_is_exported_with_its_labels_and_nothing_else() {
    let rows = contract();
    assert!(
        rows.len() > 15,
        "the contract table was not found: {rows:?}"
    );
    let exported = BTreeMap::from([
        ("serve", exposition(&serve_exposition())),
        ("watch", exposition(&watch_exposition())),
    ]);
    let mut problems = Vec::new();
    for row in &rows {
        for service in &row.exporters {
            let metrics = &exported[service.as_str()];
            match metrics.get(&row.name) {
                None if row.planned => {}
                None => problems.push(format!("{service} does not export {}", row.name)),
                Some(_) if row.planned => problems.push(format!(
                    "{service} exports {}, still marked planned",
                    row.name
                )),
                Some(labels) if *labels != row.labels => problems.push(format!(
                    "{service}: {} has labels {labels:?}, the contract says {:?}",
                    row.name, row.labels
                )),
                Some(_) => {}
            }
        }
        assert!(
            ["counter", "gauge", "histogram"].contains(&row.kind.as_str()),
            "{}: type {}",
            row.name,
            row.kind
        );
    }
    for (service, metrics) in &exported {
        for name in metrics.keys() {
            if !rows
                .iter()
                .any(|r| r.name == *name && r.exporters.iter().any(|e| e == service))
            {
                problems.push(format!(
                    "{service} exports {name}, which the contract does not list for it"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_alerts_their_tests_and_the_dashboard_use_only_metrics_of_the_contract() {
    let names: BTreeSet<String> = contract().into_iter().map(|r| r.name).collect();
    let mut files = vec![
        root().join("deploy/prometheus-rule.yaml"),
        root().join("deploy/dashboards/provisio.json"),
    ];
    for e in std::fs::read_dir(root().join("deploy/tests")).unwrap() {
        files.push(e.unwrap().path());
    }
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for (i, _) in text.match_indices("provisio_") {
            let used: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| used.strip_suffix(s))
                .filter(|b| names.contains(*b))
                .unwrap_or(&used);
            assert!(
                names.contains(base),
                "{} uses {used}, which is not in the metric contract",
                f.display()
            );
        }
    }
}
