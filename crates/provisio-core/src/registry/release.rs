//! A product file seen as two inputs: its `version` (the token written after `version:`) and
//! everything else. A product release changes only the first, and only a few files of each
//! tenant tree read it ([`crate::render::tenant::render_tenant_release`]), so the writer
//! fingerprints the two apart and re-renders just those files when only versions moved.

use super::model::Product;

/// `text` (a product file) cut around the token of its `version` value:
/// `(before, token, after)`, with `before + token + after == text`.
///
/// `None` — fingerprint the whole file instead — whenever the cut could hide anything but the
/// version: the value is an alias (its scalar is written elsewhere and may be shared with
/// another field), the parser gave no byte position, or the token is not exactly the value,
/// plain or in simple quotes (an escape, a folded line: the bytes around it would then not
/// be the only other input).
pub fn split_version<'t>(text: &'t str, product: &Product) -> Option<(&'t str, &'t str, &'t str)> {
    let v = &product.version;
    if v.referenced != v.defined {
        return None;
    }
    let span = v.defined.span();
    let start = usize::try_from(span.byte_offset()?).ok()?;
    let len = usize::try_from(span.byte_len()?).ok()?;
    let token = text.get(start..start.checked_add(len)?)?;
    let value = v.value.as_str();
    let exact = !value.is_empty()
        && (token == value
            || ['"', '\''].into_iter().any(|q| {
                token.len() == value.len() + 2
                    && token.starts_with(q)
                    && token.ends_with(q)
                    && &token[1..token.len() - 1] == value
                    && !value.contains(['"', '\'', '\\'])
            }));
    if !exact || value.contains(|c: char| c.is_whitespace() || c == '#') {
        return None;
    }
    // `version:` and the token alone on their line: no anchor (which another field could
    // alias, taking the version's value along), no tag, no flow mapping.
    let before = &text[..start];
    let line = before.rsplit('\n').next().unwrap_or(before);
    if line.trim_end_matches(' ') != "version:" {
        return None;
    }
    let after = &text[start + len..];
    let rest = after
        .split('\n')
        .next()
        .unwrap_or(after)
        .trim_end_matches(['\r', ' ']);
    if !(rest.is_empty() || rest.starts_with(" #")) {
        return None;
    }
    Some((before, token, after))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(text: &str) -> Product {
        serde_saphyr::from_str(text).unwrap()
    }

    const BODY: &str = "image: orders-service\nport: 8000\nprobes:\n  liveness: {path: /health}\n  readiness: {path: /ready}\nresources:\n  requests: {cpu: 200m, memory: 256Mi}\n  limits: {cpu: 250m, memory: 512Mi}\n";

    #[test]
    fn the_cut_is_the_version_token_and_nothing_else() {
        for version in ["v1.2.3", "\"v1.2.3\"", "'v1.2.3'"] {
            let text = format!("name: orders\nversion: {version}\n{BODY}");
            let (before, token, after) =
                split_version(&text, &product(&text)).expect("a plain version");
            assert_eq!(before, "name: orders\nversion: ");
            assert_eq!(token, version);
            assert_eq!(after, format!("\n{BODY}"));
        }
    }

    #[test]
    fn an_aliased_version_is_not_cut() {
        let text = format!("name: orders\nenv: {{TAG: &v v1.2.3}}\nversion: *v\n{BODY}");
        assert_eq!(split_version(&text, &product(&text)), None);
    }

    #[test]
    fn an_anchored_version_is_not_cut() {
        let text = format!("name: orders\nversion: &v v1.2.3\nenv: {{TAG: *v}}\n{BODY}");
        assert_eq!(split_version(&text, &product(&text)), None);
    }

    #[test]
    fn an_escaped_version_is_not_cut() {
        let text = format!("name: orders\nversion: \"v1\\x2e2\"\n{BODY}");
        assert_eq!(split_version(&text, &product(&text)), None);
    }
}
