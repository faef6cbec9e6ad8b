//! An incremental `generate` equals a full render, byte for byte, state file included, for
//! random sequences of registry edits (tenant edits, product version bumps, tier and platform
//! changes, tenants added and removed); and a product's version bump re-renders only the files
//! that version reaches.

use crate::common;

use std::collections::BTreeSet;

use common::Workspace;
use proptest::prelude::*;

const TENANTS: [&str; 3] = [
    "abc-corporation-7f3a9c",
    "cafe-creme-93b31b",
    "nordwind-logistik-7ace77",
];
const PRODUCTS: [&str; 4] = ["orders", "api-gateway", "auth", "baskets"];
const TIERS: [&str; 3] = ["standard", "premium", "business"];

#[derive(Debug, Clone)]
enum Edit {
    /// A tenant's display name.
    TenantName(usize, u8),
    /// A tenant moves to another tier.
    TenantTier(usize, usize),
    /// A product's version, plain or quoted.
    Version(usize, u8, bool),
    /// A product's version written another way YAML allows (see [`Shape`]), or a change of the
    /// file's bytes around it that parses the same.
    VersionShape(usize, u8, Shape),
    /// A tenant pins (or stops pinning) a product's version.
    Override(usize, Option<u8>),
    /// A tier's offer title.
    TierTitle(usize, u8),
    /// The secret store's refresh interval (every ExternalSecret).
    Platform(u8),
    AddTenant(u8),
    /// Removes the `n`-th added tenant, if any.
    RemoveTenant(u8),
}

/// Ways to write a product file the version cut must see through: anything but the token
/// is part of the shared inputs, so each must either be cut exactly or fingerprinted whole.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// `version: 'v…' # a comment`
    SingleQuotedWithComment,
    /// `version: &v v…` (an anchor nothing aliases).
    Anchored,
    /// `version: !!str v…` (a tag).
    Tagged,
    /// A comment line with non-ASCII bytes just above `version:`.
    CommentAbove,
    /// The whole file with CRLF line ends.
    Crlf,
    /// A byte order mark before the first key.
    Bom,
}

fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        Just(Shape::SingleQuotedWithComment),
        Just(Shape::Anchored),
        Just(Shape::Tagged),
        Just(Shape::CommentAbove),
        Just(Shape::Crlf),
        Just(Shape::Bom),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        1 => (0..TENANTS.len(), any::<u8>()).prop_map(|(t, n)| Edit::TenantName(t, n)),
        1 => (0..TENANTS.len(), 0..TIERS.len()).prop_map(|(t, i)| Edit::TenantTier(t, i)),
        // Version bumps are the common change: weighted up.
        3 => (0..PRODUCTS.len(), any::<u8>(), any::<bool>())
            .prop_map(|(p, n, q)| Edit::Version(p, n, q)),
        1 => (0..PRODUCTS.len(), any::<u8>(), shape())
            .prop_map(|(p, n, s)| Edit::VersionShape(p, n, s)),
        1 => (0..TENANTS.len(), proptest::option::of(any::<u8>()))
            .prop_map(|(t, v)| Edit::Override(t, v)),
        1 => (0..TIERS.len(), any::<u8>()).prop_map(|(t, n)| Edit::TierTitle(t, n)),
        1 => (1..6u8).prop_map(Edit::Platform),
        1 => any::<u8>().prop_map(Edit::AddTenant),
        1 => any::<u8>().prop_map(Edit::RemoveTenant),
    ]
}

/// Replaces the whole line starting with `key` (after `indent`) in `rel`.
fn set_line(ws: &Workspace, rel: &str, starts: &str, line: &str) {
    let text = std::fs::read_to_string(ws.registry().join(rel)).unwrap();
    let mut found = false;
    let out: Vec<String> = text
        .lines()
        .map(|l| {
            if !found && l.starts_with(starts) {
                found = true;
                line.to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect();
    assert!(found, "{rel}: no line starting with {starts:?}");
    ws.write(rel, &(out.join("\n") + "\n"));
}

fn added(ws: &Workspace) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(ws.registry().join("tenants"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("shop-"))
        .collect();
    ids.sort();
    ids
}

fn apply(ws: &Workspace, edit: &Edit) {
    match *edit {
        Edit::TenantName(t, n) => set_line(
            ws,
            &format!("tenants/{}.yaml", TENANTS[t]),
            "name:",
            &format!("name: Shop {n}"),
        ),
        Edit::TenantTier(t, i) => {
            // Nordwind's replica overrides fit only `business`'s quota: it moves to and fro
            // between its tier and its region instead.
            let tier = match TENANTS[t] {
                "nordwind-logistik-7ace77" => {
                    set_line(
                        ws,
                        &format!("tenants/{}.yaml", TENANTS[t]),
                        "region:",
                        &format!("region: {}", ["eu-central", "eu-west", "apac"][i]),
                    );
                    "business"
                }
                _ => TIERS[i],
            };
            set_line(
                ws,
                &format!("tenants/{}.yaml", TENANTS[t]),
                "tier:",
                &format!("tier: {tier}"),
            )
        }
        Edit::Version(p, n, quoted) => {
            let v = format!("v1.{n}.0");
            let v = if quoted { format!("\"{v}\"") } else { v };
            set_line(
                ws,
                &format!("products/{}.yaml", PRODUCTS[p]),
                "version:",
                &format!("version: {v}"),
            )
        }
        Edit::VersionShape(p, n, shape) => {
            let rel = format!("products/{}.yaml", PRODUCTS[p]);
            let v = format!("v1.{n}.0");
            let line = match shape {
                Shape::SingleQuotedWithComment => format!("version: '{v}' # release {n}"),
                Shape::Anchored => format!("version: &v {v}"),
                Shape::Tagged => format!("version: !!str {v}"),
                _ => format!("version: {v}"),
            };
            set_line(ws, &rel, "version:", &line);
            let text = std::fs::read_to_string(ws.registry().join(&rel)).unwrap();
            let text = match shape {
                Shape::CommentAbove => {
                    text.replacen("\nversion:", &format!("\n# déployé {n}\nversion:"), 1)
                }
                Shape::Crlf => text.replace('\n', "\r\n"),
                Shape::Bom => format!("\u{feff}{}", text.trim_start_matches('\u{feff}')),
                _ => text,
            };
            ws.write(&rel, &text);
        }
        Edit::Override(t, v) => {
            let rel = format!("tenants/{}.yaml", TENANTS[t]);
            let text = std::fs::read_to_string(ws.registry().join(&rel)).unwrap();
            // The example's only pin (nordwind's `orders`), or a new block for the others.
            let kept: Vec<&str> = text
                .lines()
                .take_while(|l| !l.starts_with("overrides:"))
                .collect();
            let mut text = kept.join("\n") + "\n";
            if TENANTS[t].starts_with("nordwind") {
                text.push_str("overrides:\n  replicas:\n    api-gateway: 4\n");
                if let Some(n) = v {
                    text.push_str(&format!("  versions:\n    orders: v9.{n}.0\n"));
                }
            } else if let Some(n) = v {
                text.push_str(&format!("overrides:\n  versions:\n    orders: v9.{n}.0\n"));
            }
            ws.write(&rel, &text);
        }
        Edit::TierTitle(t, n) => {
            let text = std::fs::read_to_string(ws.registry().join("tiers.yaml")).unwrap();
            let name = TIERS[t];
            let mut title = name.to_owned();
            title[..1].make_ascii_uppercase();
            let start = text.find(&format!("offer: {{title: {title}")).unwrap();
            let end = start + text[start..].find(',').unwrap();
            let mut out = text.clone();
            out.replace_range(start..end, &format!("offer: {{title: {title} {n}"));
            ws.write("tiers.yaml", &out);
        }
        Edit::Platform(h) => set_line(
            ws,
            "platform.yaml",
            "  refreshInterval:",
            &format!("  refreshInterval: {h}h"),
        ),
        Edit::AddTenant(n) => {
            let id = format!("shop-{n}-{n:06x}");
            ws.write(
                &format!("tenants/{id}.yaml"),
                &format!(
                    "id: {id}\nname: Shop {n}\ntier: {}\nregion: eu-west\nsubscription: sub_{n}\ncontacts: {{admin: a@shop{n}.test, billing: b@shop{n}.test}}\ncreated: 2025-01-31T00:00:00Z\nstatus: active\n",
                    TIERS[usize::from(n) % TIERS.len()]
                ),
            );
        }
        Edit::RemoveTenant(n) => {
            let ids = added(ws);
            if !ids.is_empty() {
                ws.remove(&format!("tenants/{}", ids[usize::from(n) % ids.len()]));
            }
        }
    }
}

/// `generate` on `ws` with the mass-delete guard allowing removals: a step of the random
/// sequences may remove two of the few tenants it added, which the guard rightly refuses
/// (`MassDeleteGuard`: more than 10 %, at least 2; tested in `tests/it/generate.rs`); here the
/// property is that what is rendered equals a full render.
fn generate(ws: &Workspace) -> provisio::io::output::Summary {
    let mut opts = provisio::ops::generate::GenerateOptions::new(common::now());
    opts.mass_delete.allow = true;
    let s = provisio::ops::generate::generate(&ws.paths(), &opts).expect("generate");
    age_stat_record(ws);
    s
}

/// Gives `ws`'s output a git directory, where `generate` keeps its stat record
/// (`provisio::io::output::stat`).
fn keep_stat_record(ws: &Workspace) {
    std::fs::create_dir_all(ws.out().join(".git")).unwrap();
}

/// Makes the stat record, if any, newer than every file written so far, as a run that went on
/// for more than a tick of the file system's clock after its last tenant leaves it: a record
/// written in the same tick as a tree's files does not vouch for that tree (git's racy-clean
/// rule), and every run here is that short.
fn age_stat_record(ws: &Workspace) {
    let record = ws
        .out()
        .join(".git")
        .join(provisio::io::output::stat::STAT_FILE);
    if record.exists() {
        std::thread::sleep(std::time::Duration::from_millis(15));
        std::fs::File::options()
            .write(true)
            .open(&record)
            .unwrap()
            .set_modified(std::time::SystemTime::now())
            .unwrap();
    }
}

/// A fresh output rendered whole from a copy of `ws`'s registry.
fn full_render(ws: &Workspace) -> std::collections::BTreeMap<String, Vec<u8>> {
    let full = Workspace::new();
    std::fs::remove_dir_all(full.registry()).unwrap();
    common::copy_dir(&ws.registry(), &full.registry());
    full.generate();
    full.snapshot()
}

proptest! {
    // Each case renders a few dozen small trees; sized for a 2-core machine.
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn an_incremental_run_equals_a_full_render(
        steps in proptest::collection::vec(proptest::collection::vec(edit(), 1..3), 1..5)
    ) {
        let ws = Workspace::new();
        // Releases take the trees the stat record vouches for without reading them.
        keep_stat_record(&ws);
        generate(&ws);
        for step in &steps {
            for e in step {
                apply(&ws, e);
            }
            generate(&ws);
            let inc = ws.snapshot();
            prop_assert!(inc == full_render(&ws), "after {:?}", step);
            // Running again changes nothing.
            let again = generate(&ws);
            prop_assert!(again.is_noop(), "{:?}", again);
            prop_assert!(inc == ws.snapshot());
        }
    }
}

/// The seeds of past failures above are re-run first only if they sit where proptest looks:
/// beside `tests/it/main.rs` it reads `tests/proptest-regressions/incremental.txt`, not the
/// `incremental.proptest-regressions` next to this file that a test crate of its own used.
#[test]
fn the_saved_failure_seeds_are_where_proptest_reads_them() {
    let persistence = ProptestConfig::default()
        .failure_persistence
        .expect("proptest saves failures by default");
    assert!(
        !persistence
            .load_persisted_failures2(Some(file!()))
            .is_empty(),
        "proptest finds no saved seed for {}",
        file!()
    );
}

#[test]
fn a_version_bump_re_renders_only_the_files_the_version_reaches() {
    let ws = Workspace::new();
    ws.generate();
    set_line(&ws, "products/orders.yaml", "version:", "version: v1.9.0");
    let s = ws.generate();
    // Nordwind pins its own `orders` version: nothing of its tree changes.
    let expected: BTreeSet<String> = TENANTS[..2]
        .iter()
        .flat_map(|t| {
            [
                format!("tenants-out/{t}/deployments/orders.yaml"),
                format!("tenants-out/{t}/jobs.yaml"),
            ]
        })
        .collect();
    assert_eq!(s.written.iter().cloned().collect::<BTreeSet<_>>(), expected);
    assert_eq!(s.tenants_released, TENANTS.len(), "{s:?}");
    // Only those files were rendered: the others were read from the recorded tree.
    assert_eq!(s.tenants_rendered, 0, "{s:?}");
    assert_eq!(ws.snapshot(), full_render(&ws));
}

#[test]
fn a_hand_edited_tree_is_rendered_whole_when_a_version_moves() {
    let ws = Workspace::new();
    ws.generate();
    let ingress = ws
        .out()
        .join(format!("tenants-out/{}/ingress.yaml", TENANTS[0]));
    std::fs::write(&ingress, "hand edit\n").unwrap();
    set_line(&ws, "products/auth.yaml", "version:", "version: v2.0.0");
    let s = ws.generate();
    assert_eq!(s.tenants_released, TENANTS.len() - 1, "{s:?}");
    assert_eq!(s.tenants_rendered, 1, "{s:?}");
    assert!(!s.vouched.contains_key(TENANTS[0]), "{s:?}");
    assert_eq!(ws.snapshot(), full_render(&ws));
}

/// With a stat record, a release reads only the files it re-renders of the trees whose
/// files' stat data did not move since the last release recorded them, and reads whole the
/// tree a hand edit touched (rendering it whole, as without a record).
#[test]
fn a_release_reads_only_what_it_re_renders_of_the_trees_the_stat_record_vouches_for() {
    let ws = Workspace::new();
    keep_stat_record(&ws);
    // The cold run stages every tree whole and records each one's stat data as written: the
    // first release reads none whole (the bench's and CI's first release after a first push).
    generate(&ws);
    set_line(&ws, "products/auth.yaml", "version:", "version: v2.0.0");
    let s = generate(&ws);
    assert_eq!(
        (s.tenants_released, s.released_read_whole),
        (TENANTS.len(), 0),
        "{s:?}"
    );
    assert_eq!(ws.snapshot(), full_render(&ws), "state file included");
    // Without a record (removed): every tree read whole, and recorded.
    std::fs::remove_file(
        ws.out()
            .join(".git")
            .join(provisio::io::output::stat::STAT_FILE),
    )
    .unwrap();
    set_line(&ws, "products/auth.yaml", "version:", "version: v2.0.1");
    let s = generate(&ws);
    assert_eq!(
        (s.tenants_released, s.released_read_whole),
        (TENANTS.len(), TENANTS.len()),
        "{s:?}"
    );
    set_line(&ws, "products/auth.yaml", "version:", "version: v2.1.0");
    let s = generate(&ws);
    assert_eq!(
        (s.tenants_released, s.released_read_whole),
        (TENANTS.len(), 0),
        "{s:?}"
    );
    assert_eq!(s.vouched.len(), TENANTS.len(), "{s:?}");
    assert_eq!(ws.snapshot(), full_render(&ws), "state file included");
    // A hand edit after the record (a later tick of the clock): that tree is read whole, found
    // not to be the recorded one, and rendered whole.
    std::thread::sleep(std::time::Duration::from_millis(15));
    let ingress = ws
        .out()
        .join(format!("tenants-out/{}/ingress.yaml", TENANTS[0]));
    std::fs::write(&ingress, "hand edit\n").unwrap();
    set_line(&ws, "products/auth.yaml", "version:", "version: v2.2.0");
    let s = generate(&ws);
    assert_eq!(s.tenants_rendered, 1, "{s:?}");
    assert_eq!(s.released_read_whole, 0, "{s:?}");
    assert!(!s.vouched.contains_key(TENANTS[0]), "{s:?}");
    assert_eq!(ws.snapshot(), full_render(&ws));
    // A state file put back by hand (the files untouched) is not taken for the disk: the
    // record vouches for the tree hash it saw, not for whatever the state file says.
    let state = ws.out().join(provisio::io::output::STATE_FILE);
    let before = std::fs::read(&state).unwrap();
    set_line(&ws, "products/auth.yaml", "version:", "version: v2.3.0");
    generate(&ws);
    std::fs::write(&state, &before).unwrap();
    set_line(&ws, "products/auth.yaml", "version:", "version: v2.4.0");
    let s = generate(&ws);
    assert_eq!(s.released_read_whole, 0, "{s:?}");
    assert_eq!(s.tenants_rendered, TENANTS.len(), "{s:?}");
    assert_eq!(ws.snapshot(), full_render(&ws));
}

/// A release records each re-rendered file's part of the tree hash with the tree's stat data,
/// and the next release takes the old part from there (the files it re-renders are not read
/// again); the result is a full render's.
#[test]
fn a_release_takes_the_old_files_parts_of_the_hash_from_the_stat_record() {
    let ws = Workspace::new();
    keep_stat_record(&ws);
    generate(&ws);
    set_line(&ws, "products/auth.yaml", "version:", "version: v2.0.0");
    let s = generate(&ws);
    assert!(!s.written.is_empty(), "{s:?}");
    let record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            ws.out()
                .join(".git")
                .join(provisio::io::output::stat::STAT_FILE),
        )
        .unwrap(),
    )
    .unwrap();
    for p in &s.written {
        let id = p.split('/').nth(1).unwrap();
        let sums = &record["tenants"][id]["sums"];
        assert!(sums[p.as_str()].is_string(), "{p}: {record}");
    }
    // Two more releases: the old parts taken from the record, every tree vouched for.
    for v in ["v2.1.0", "v2.2.0"] {
        set_line(
            &ws,
            "products/auth.yaml",
            "version:",
            &format!("version: {v}"),
        );
        let s = generate(&ws);
        assert_eq!(
            (s.tenants_released, s.released_read_whole),
            (TENANTS.len(), 0),
            "{s:?}"
        );
        assert_eq!(ws.snapshot(), full_render(&ws), "{v}");
    }
}

/// A `--full` run (watch's first cycle) compares every tree with the disk and records it: the
/// release after it reads none whole.
#[test]
fn a_full_run_leaves_a_stat_record_the_next_release_uses() {
    let ws = Workspace::new();
    keep_stat_record(&ws);
    generate(&ws);
    let mut full = provisio::ops::generate::GenerateOptions::new(common::now());
    full.full = true;
    provisio::ops::generate::generate(&ws.paths(), &full).expect("generate --full");
    age_stat_record(&ws);
    set_line(&ws, "products/auth.yaml", "version:", "version: v2.0.0");
    let s = generate(&ws);
    assert_eq!(
        (s.tenants_released, s.released_read_whole),
        (TENANTS.len(), 0),
        "{s:?}"
    );
    assert_eq!(ws.snapshot(), full_render(&ws));
}

#[test]
fn a_version_written_through_an_alias_is_part_of_the_shared_inputs() {
    let ws = Workspace::new();
    ws.generate();
    // The version's scalar is shared with an environment variable: a bump changes both
    // files' inputs, so every tree is rendered whole.
    let rel = "products/auth.yaml";
    set_line(&ws, rel, "version:", "version: &v v1.2.3");
    let text = std::fs::read_to_string(ws.registry().join(rel)).unwrap();
    ws.write(rel, &format!("{text}env: {{APP_VERSION: *v}}\n"));
    ws.generate();
    set_line(&ws, rel, "version:", "version: &v v1.5.0");
    let s = ws.generate();
    assert_eq!(s.tenants_released, 0, "{s:?}");
    assert_eq!(ws.snapshot(), full_render(&ws));
}

/// The first run after an upgrade finds a state file of format 2 (no `versions`, a shared
/// fingerprint over whole product files) while a version moved and a tenant changed: it
/// trusts nothing of it and converges to the bytes of a full render; the run after it is a
/// no-op.
#[test]
fn the_first_run_after_an_upgrade_from_state_format_2_converges() {
    let ws = Workspace::new();
    ws.generate();
    let path = ws.out().join(provisio::io::output::STATE_FILE);
    let mut state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let obj = state.as_object_mut().unwrap();
    obj.remove("versions");
    obj.insert("format".into(), 2.into());
    std::fs::write(&path, serde_json::to_vec_pretty(&state).unwrap()).unwrap();
    set_line(&ws, "products/orders.yaml", "version:", "version: v2.0.0");
    set_line(
        &ws,
        &format!("tenants/{}.yaml", TENANTS[1]),
        "name:",
        "name: Upgraded",
    );
    let s = ws.generate();
    assert_eq!(s.tenants_released, 0, "{s:?}");
    assert_eq!(ws.snapshot(), full_render(&ws));
    assert!(ws.generate().is_noop());
}

/// Every tenant the state file records has, on disk, exactly the tree hash it records.
fn assert_state_is_the_disk(ws: &Workspace) {
    let state = provisio::io::output::read_state(&ws.out())
        .unwrap()
        .unwrap();
    for (id, t) in &state.tenants {
        let files =
            provisio::io::output::read_files(&ws.out(), &format!("tenants-out/{id}")).unwrap();
        assert_eq!(
            provisio::io::output::state::tree_hash(&files),
            t.tree,
            "{id}: the state file records a tree the disk does not hold"
        );
    }
}

/// A workspace whose stat record vouches for every tenant's tree (two releases run).
fn vouched_workspace(version: &mut u32) -> Workspace {
    let ws = Workspace::new();
    keep_stat_record(&ws);
    generate(&ws);
    for _ in 0..2 {
        bump(&ws, version);
    }
    ws
}

fn bump(ws: &Workspace, version: &mut u32) -> provisio::io::output::Summary {
    *version += 1;
    set_line(
        ws,
        "products/auth.yaml",
        "version:",
        &format!("version: v3.{version}.0"),
    );
    generate(ws)
}

fn tenant_file(ws: &Workspace, i: usize, name: &str) -> std::path::PathBuf {
    ws.out().join(format!("tenants-out/{}/{name}", TENANTS[i]))
}

/// Whatever moves a vouched tree between two releases — a same-size edit with its
/// modification time put back, files or whole directories swapped between tenants by rename,
/// a file replaced by a hard link to another of the same size, a stat record from an earlier
/// run put back (a run killed between the state file and the record), a record copied from
/// another output of the same registry, a record dated before its trees — the release after
/// it leaves the disk as a full render and the state file recording what the disk holds.
#[test]
fn no_file_system_event_makes_a_release_trust_a_tree_the_disk_does_not_hold() {
    use std::os::unix::fs::MetadataExt;
    fn record(ws: &Workspace) -> std::path::PathBuf {
        ws.out()
            .join(".git")
            .join(provisio::io::output::stat::STAT_FILE)
    }
    let pause = || std::thread::sleep(std::time::Duration::from_millis(15));
    type Event = fn(&Workspace, &Workspace);
    let events: Vec<(&str, Event)> = vec![
        ("same-size edit, mtime put back", |ws, _| {
            let f = tenant_file(ws, 0, "ingress.yaml");
            let m = std::fs::metadata(&f).unwrap();
            let mut b = std::fs::read(&f).unwrap();
            b[0] = if b[0] == b'#' { b'!' } else { b'#' };
            std::fs::write(&f, &b).unwrap();
            let h = std::fs::File::options().write(true).open(&f).unwrap();
            h.set_modified(m.modified().unwrap()).unwrap();
            assert_eq!(std::fs::metadata(&f).unwrap().size(), m.size());
        }),
        ("a file swapped between tenants", |ws, _| {
            let (a, b) = (
                tenant_file(ws, 0, "ingress.yaml"),
                tenant_file(ws, 1, "ingress.yaml"),
            );
            let tmp = ws.out().join("swap");
            std::fs::rename(&a, &tmp).unwrap();
            std::fs::rename(&b, &a).unwrap();
            std::fs::rename(&tmp, &b).unwrap();
        }),
        ("tenant directories swapped", |ws, _| {
            let d = |i: usize| ws.out().join(format!("tenants-out/{}", TENANTS[i]));
            let tmp = ws.out().join("swap");
            std::fs::rename(d(0), &tmp).unwrap();
            std::fs::rename(d(1), d(0)).unwrap();
            std::fs::rename(&tmp, d(1)).unwrap();
        }),
        ("a file replaced by a hard link", |ws, _| {
            let f = tenant_file(ws, 2, "ingress.yaml");
            let mut b = std::fs::read(&f).unwrap();
            b[0] ^= 1;
            let other = ws.dir.path().join("other");
            std::fs::write(&other, &b).unwrap();
            std::fs::remove_file(&f).unwrap();
            std::fs::hard_link(&other, &f).unwrap();
        }),
        (
            "a record of another output of the same registry",
            |ws, other| {
                std::fs::copy(
                    record(other),
                    ws.out()
                        .join(".git")
                        .join(provisio::io::output::stat::STAT_FILE),
                )
                .unwrap();
                age_stat_record(ws);
                // And a hand edit (the edit's own mtime put back) that its entries would hide.
                let f = tenant_file(ws, 0, "ingress.yaml");
                let m = std::fs::metadata(&f).unwrap();
                let mut b = std::fs::read(&f).unwrap();
                b[0] ^= 1;
                std::fs::write(&f, &b).unwrap();
                let h = std::fs::File::options().write(true).open(&f).unwrap();
                h.set_modified(m.modified().unwrap()).unwrap();
            },
        ),
        ("a record dated before its trees", |ws, _| {
            let r = ws
                .out()
                .join(".git")
                .join(provisio::io::output::stat::STAT_FILE);
            let h = std::fs::File::options().write(true).open(&r).unwrap();
            h.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
        }),
    ];
    let mut version = 0;
    for (what, event) in events {
        let start = version;
        let ws = vouched_workspace(&mut version);
        let other = vouched_workspace(&mut start.clone());
        pause();
        event(&ws, &other);
        let s = bump(&ws, &mut version);
        assert_state_is_the_disk(&ws);
        assert_eq!(ws.snapshot(), full_render(&ws), "{what}: {s:?}");
        assert!(generate(&ws).is_noop(), "{what}");
    }
}

/// A record from before a release that was killed between its state file and its record: the
/// entries vouch for hashes the state file no longer records; the next release reads whole.
#[test]
fn a_record_older_than_the_state_file_vouches_for_nothing() {
    let mut version = 0;
    let ws = vouched_workspace(&mut version);
    let record = ws
        .out()
        .join(".git")
        .join(provisio::io::output::stat::STAT_FILE);
    let old = std::fs::read(&record).unwrap();
    // A release that changes every tree, its record lost.
    bump(&ws, &mut version);
    std::fs::write(&record, &old).unwrap();
    age_stat_record(&ws);
    let s = bump(&ws, &mut version);
    assert_eq!(s.released_read_whole, TENANTS.len(), "{s:?}");
    assert_state_is_the_disk(&ws);
    assert_eq!(ws.snapshot(), full_render(&ws));
    // Now every tree is vouched for again.
    let s = bump(&ws, &mut version);
    assert_eq!(s.released_read_whole, 0, "{s:?}");
    assert_eq!(ws.snapshot(), full_render(&ws));
}

/// `.git` a file (a worktree's) or a link to a directory: no record, and releases read whole.
#[test]
fn no_record_is_kept_through_a_git_file_or_link() {
    let mut version = 0;
    for link in [false, true] {
        let ws = Workspace::new();
        let elsewhere = ws.dir.path().join("gitdir");
        std::fs::create_dir(&elsewhere).unwrap();
        if link {
            std::os::unix::fs::symlink(&elsewhere, ws.out().join(".git")).unwrap();
        } else {
            std::fs::write(ws.out().join(".git"), "gitdir: ../gitdir\n").unwrap();
        }
        generate(&ws);
        for _ in 0..2 {
            let s = bump(&ws, &mut version);
            assert_eq!(s.released_read_whole, TENANTS.len(), "{s:?}");
        }
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
        assert_state_is_the_disk(&ws);
        assert_eq!(ws.snapshot(), full_render(&ws));
    }
}

/// A run that changes nothing does not rewrite the record (a no-op stays a no-op on disk).
#[test]
fn a_no_op_run_leaves_the_stat_record_alone() {
    let mut version = 0;
    let ws = vouched_workspace(&mut version);
    let record = ws
        .out()
        .join(".git")
        .join(provisio::io::output::stat::STAT_FILE);
    let before = std::fs::symlink_metadata(&record)
        .unwrap()
        .modified()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(15));
    assert!(ws.generate().is_noop());
    let after = std::fs::symlink_metadata(&record)
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(before, after);
}
