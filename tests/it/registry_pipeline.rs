//! The registry repository's pipeline (`registry/.gitlab-ci.yml`), run job by job the way a
//! runner runs them: each job's `variables` exported (the project's CI/CD variables override
//! them, as in GitLab), then its `script` lines in one shell with `set -eo pipefail`, then its
//! `after_script`. The registry repository and the manifests repository are local bare
//! repositories; the merge-request comment goes to a local HTTP server standing in for
//! GitLab's notes API.
//!
//! The story: the default branch delivers the example's output; a merge request adding a
//! product is validated and planned (the plan is the pinned one, attached and commented); once
//! merged, the default branch delivers it (from a fresh workspace, as CI has); a merge request
//! removing two products' tools is planned with a warning (exit 1, allowed), and after the
//! merge its delivery is refused until a manual pipeline sets ALLOW_MASS_DELETE.
//!
//! Needs `bash` and `curl` (skipped without them, a failure with `PROVISIO_REQUIRE_TOOLS=1`).

use crate::common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn ci() -> Value {
    let text = std::fs::read_to_string(common::repo_root().join("registry/.gitlab-ci.yml"))
        .expect("registry/.gitlab-ci.yml");
    serde_saphyr::from_str(&text).expect("the pipeline parses")
}

fn git(args: &[&str], dir: &Path) -> String {
    let o = Command::new("git")
        .args(["-c", "user.name=dev", "-c", "user.email=dev@example.com"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

fn lines(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|l| l.as_str().expect("a script line").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// What one job did.
struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `job` of the pipeline in `checkout` with GitLab's predefined variables and the
/// project's CI/CD variables in `env` (these override the job's `variables`).
fn run_job(pipeline: &Value, job: &str, checkout: &Path, env: &BTreeMap<&str, String>) -> Ran {
    let j = &pipeline[job];
    assert!(j.is_object(), "no job {job}");
    let quote = |v: &str| format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""));
    let mut script = String::from("set -eo pipefail\n");
    for vars in [&pipeline["variables"], &j["variables"]] {
        for (k, v) in vars.as_object().into_iter().flatten() {
            let v = v.as_str().expect("string variables");
            // GitLab expands `$VAR` and `${VAR}` in variables like the shell does.
            script.push_str(&format!("export {k}={}\n", quote(v)));
        }
    }
    for (k, v) in env {
        script.push_str(&format!("export {k}='{}'\n", v.replace('\'', "'\\''")));
    }
    let prelude = script.clone();
    for l in lines(&j["script"]) {
        script.push_str(&l);
        script.push('\n');
    }
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_provisio"));
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = |text: &str| {
        Command::new("bash")
            .arg("-c")
            .arg(text)
            .current_dir(checkout)
            .env("PATH", &path)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .unwrap()
    };
    let o = run(&script);
    let mut ran = Ran {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    };
    let after = lines(&j["after_script"]);
    if !after.is_empty() {
        let o = run(&format!("{prelude}{}\n", after.join("\n")));
        ran.stdout.push_str(&String::from_utf8_lossy(&o.stdout));
    }
    ran
}

/// A fresh clone of `origin` at `branch`, as the runner makes for a job.
fn checkout(origin: &Path, branch: &str, into: &Path) -> PathBuf {
    git(
        &[
            "clone",
            "-q",
            "--branch",
            branch,
            &origin.display().to_string(),
            &into.display().to_string(),
        ],
        origin.parent().unwrap(),
    );
    into.to_path_buf()
}

/// A stand-in for GitLab's API: answers one request with 201 and returns it (request line,
/// headers, body).
fn notes_api() -> (String, std::thread::JoinHandle<String>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/api/v4", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut head = String::new();
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
            if lower.starts_with("expect: 100-continue") {
                stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").unwrap();
            }
            head.push_str(&line);
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        stream
            .write_all(b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
            .unwrap();
        format!("{head}\r\n{}", String::from_utf8(body).unwrap())
    });
    (url, handle)
}

/// `application/x-www-form-urlencoded` value.
fn form_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                out.push(
                    u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap(), 16).unwrap(),
                );
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

fn show(repo: &Path, args: &[&str]) -> String {
    let dir = repo.display().to_string();
    let mut all = vec!["--git-dir", dir.as_str(), "show"];
    all.extend(args);
    git(&all, repo)
}

fn rules(pipeline: &Value, job: &str) -> Vec<String> {
    pipeline[job]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["if"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn the_registry_pipeline_validates_plans_and_delivers() {
    if common::tool("bash").is_none() || common::tool("curl").is_none() {
        return;
    }
    let pipeline = ci();
    // Which job runs where (the runner's business; checked here so the story below holds).
    let mr = "$CI_PIPELINE_SOURCE == \"merge_request_event\"";
    let default = "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH";
    assert_eq!(rules(&pipeline, "validate"), [mr, default]);
    assert_eq!(rules(&pipeline, "plan"), [mr]);
    assert_eq!(
        rules(&pipeline, "plan-comment"),
        [format!("{mr} && $PLAN_BOT_TOKEN")]
    );
    assert_eq!(rules(&pipeline, "deliver"), [default]);
    assert_eq!(
        pipeline["plan"]["allow_failure"]["exit_codes"],
        serde_json::json!([1])
    );
    assert_eq!(
        pipeline["plan"]["artifacts"]["paths"],
        serde_json::json!(["plan.txt"])
    );

    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    // The registry repository: the example registry (and this pipeline) at its root.
    let src = t.join("src");
    common::copy_dir(&common::repo_root().join("registry"), &src);
    git(&["init", "-q", "-b", "main"], &src);
    git(&["add", "-A"], &src);
    git(&["commit", "-q", "-m", "the registry"], &src);
    let origin = t.join("registry.git");
    git(&["clone", "-q", "--bare", "src", "registry.git"], t);
    git(
        &["remote", "add", "gitlab", &origin.display().to_string()],
        &src,
    );
    let manifests = t.join("manifests.git");
    git(&["init", "-q", "--bare", "manifests.git"], t);
    let project = |extra: &[(&'static str, String)]| -> BTreeMap<&'static str, String> {
        let mut env = BTreeMap::from([
            ("CI_DEFAULT_BRANCH", "main".to_owned()),
            ("CI_PROJECT_ID", "42".to_owned()),
            ("MANIFESTS_TOKEN", "not-used-by-a-file-remote".to_owned()),
            // The project's variable overrides the pipeline's https URL.
            (
                "MANIFESTS_REMOTE",
                format!("file://{}", manifests.display()),
            ),
            ("PROVISIO_LOG", "off".to_owned()),
        ]);
        env.extend(extra.iter().cloned());
        env
    };
    let on_main = |n: usize, extra: &[(&'static str, String)]| {
        let mut env = project(&[
            ("CI_PIPELINE_SOURCE", "push".to_owned()),
            ("CI_COMMIT_BRANCH", "main".to_owned()),
            // A fresh workspace each time, as CI has.
            (
                "MANIFESTS_DIR",
                t.join(format!("manifests-{n}")).display().to_string(),
            ),
        ]);
        env.extend(extra.iter().cloned());
        env
    };

    // 1. The default branch: validate, deliver.
    let job = checkout(&origin, "main", &t.join("job-1"));
    let env = on_main(1, &[]);
    let v = run_job(&pipeline, "validate", &job, &env);
    assert_eq!(v.code, 0, "{}", v.stderr);
    assert!(
        v.stderr.contains("validate: the registry is valid"),
        "{}",
        v.stderr
    );
    let d = run_job(&pipeline, "deliver", &job, &env);
    assert_eq!(d.code, 0, "{}", d.stderr);
    let message = show(&manifests, &["--no-patch", "--format=%B", "main"]);
    assert!(
        message.starts_with("provisio: add 3 tenants; platform tools: add 3 products, 2 teams"),
        "{message}"
    );
    let registry_head = git(&["rev-parse", "HEAD"], &job);
    assert!(
        message.contains(&format!("Registry-Commit: {registry_head}")),
        "{message}"
    );
    assert!(
        show(
            &manifests,
            &["main:platform-out/tools/products/orders/gitlab.yaml"]
        )
        .contains("kind: SamlGroupLink")
    );

    // 2. A merge request adding a product: validate, plan (pinned), the comment.
    git(&["checkout", "-q", "-b", "add-payments"], &src);
    std::fs::copy(
        common::repo_root().join("tests/data/plan/add/products/payments.yaml"),
        src.join("products/payments.yaml"),
    )
    .unwrap();
    git(&["add", "-A"], &src);
    git(&["commit", "-q", "-m", "payments"], &src);
    git(&["push", "-q", "gitlab", "add-payments"], &src);
    let job = checkout(&origin, "add-payments", &t.join("job-2"));
    let (api, server) = notes_api();
    let env = project(&[
        ("CI_PIPELINE_SOURCE", "merge_request_event".to_owned()),
        ("CI_MERGE_REQUEST_TARGET_BRANCH_NAME", "main".to_owned()),
        ("CI_MERGE_REQUEST_DIFF_BASE_SHA", registry_head.clone()),
        ("CI_MERGE_REQUEST_IID", "7".to_owned()),
        ("CI_API_V4_URL", api),
        ("PLAN_BOT_TOKEN", "bot-token".to_owned()),
    ]);
    assert_eq!(run_job(&pipeline, "validate", &job, &env).code, 0);
    let p = run_job(&pipeline, "plan", &job, &env);
    assert_eq!(p.code, 0, "an addition loses nothing: {}", p.stderr);
    let plan = std::fs::read_to_string(job.join("plan.txt")).unwrap();
    let pinned =
        std::fs::read_to_string(common::repo_root().join("tests/data/plan/add/expected.txt"))
            .unwrap()
            .replacen("base/ → registry/", &format!("{registry_head} → ./"), 1);
    assert_eq!(plan, pinned, "the merge request's plan is the pinned one");
    assert!(
        p.stdout.contains(&plan),
        "after_script shows the plan in the job log"
    );
    let c = run_job(&pipeline, "plan-comment", &job, &env);
    assert_eq!(c.code, 0, "{}", c.stderr);
    let request = server.join().unwrap();
    assert!(
        request.starts_with("POST /api/v4/projects/42/merge_requests/7/notes HTTP/1.1\r\n"),
        "{request}"
    );
    assert!(
        request
            .to_ascii_lowercase()
            .contains("private-token: bot-token\r\n"),
        "{request}"
    );
    let body = request.split("\r\n\r\n").nth(1).unwrap();
    let comment = form_decode(body.strip_prefix("body=").unwrap());
    assert_eq!(comment, format!("#### provisio plan\n\n```\n{plan}```\n"));

    // 3. Merged: the default branch delivers it, from a fresh workspace.
    git(&["checkout", "-q", "main"], &src);
    git(&["merge", "-q", "--ff-only", "add-payments"], &src);
    git(&["push", "-q", "gitlab", "main"], &src);
    let job = checkout(&origin, "main", &t.join("job-3"));
    let d = run_job(&pipeline, "deliver", &job, &on_main(3, &[]));
    assert_eq!(d.code, 0, "{}", d.stderr);
    let message = show(&manifests, &["--no-patch", "--format=%s", "main"]);
    assert_eq!(
        message,
        "provisio: update 3 tenants; platform tools: add payments"
    );
    assert!(
        show(
            &manifests,
            &["main:platform-out/tools/products/payments/gitlab.yaml"]
        )
        .contains("name: payments--okta-payments--maintainer")
    );

    // 4. A merge request removing two products' tools: planned with a warning (exit 1,
    // allowed by the job), LOSES first.
    git(&["checkout", "-q", "-b", "drop-tools"], &src);
    for p in ["orders", "baskets"] {
        let path = src.join(format!("products/{p}.yaml"));
        let text = std::fs::read_to_string(&path).unwrap();
        let cut = text.find("\ntools:\n").unwrap();
        std::fs::write(&path, &text[..=cut]).unwrap();
    }
    git(
        &[
            "commit",
            "-q",
            "-am",
            "drop the tools of orders and baskets",
        ],
        &src,
    );
    git(&["push", "-q", "gitlab", "drop-tools"], &src);
    let base = git(&["rev-parse", "main"], &src);
    let job = checkout(&origin, "drop-tools", &t.join("job-4"));
    let env = project(&[
        ("CI_PIPELINE_SOURCE", "merge_request_event".to_owned()),
        ("CI_MERGE_REQUEST_DIFF_BASE_SHA", base),
    ]);
    let p = run_job(&pipeline, "plan", &job, &env);
    assert_eq!(p.code, 1, "something is lost: the job warns");
    let plan = std::fs::read_to_string(job.join("plan.txt")).unwrap();
    assert!(
        plan.contains("  products removed: baskets, orders (2 of 4; at most 1 per change, platformTools.maxProductRemovals: `generate` refuses this without --allow-mass-delete)\n"),
        "{plan}"
    );
    assert!(plan.contains("\n== LOSES: "), "{plan}");

    // Merged: the delivery is refused (nothing pushed) until a manual pipeline allows it.
    git(&["checkout", "-q", "main"], &src);
    git(&["merge", "-q", "--ff-only", "drop-tools"], &src);
    git(&["push", "-q", "gitlab", "main"], &src);
    let before = show(&manifests, &["--no-patch", "--format=%H", "main"]);
    let job = checkout(&origin, "main", &t.join("job-5"));
    let d = run_job(&pipeline, "deliver", &job, &on_main(5, &[]));
    assert_eq!(d.code, 2, "{}", d.stderr);
    assert!(
        d.stderr
            .contains("error: refusing to remove the platform tools of 2 products at once"),
        "{}",
        d.stderr
    );
    assert_eq!(
        before,
        show(&manifests, &["--no-patch", "--format=%H", "main"])
    );
    let d = run_job(
        &pipeline,
        "deliver",
        &job,
        &on_main(6, &[("ALLOW_MASS_DELETE", "1".to_owned())]),
    );
    assert_eq!(d.code, 0, "{}", d.stderr);
    assert_eq!(
        show(&manifests, &["--no-patch", "--format=%s", "main"]),
        "provisio: platform tools: remove baskets, orders"
    );
}
