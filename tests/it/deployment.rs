//! The README's settings table and its Deploying section against the files they describe: every
//! setting the binary reads is documented, and every setting, port and service the Dockerfile and the
//! compose file use is one the binary knows and the Deploying section names.

use std::collections::BTreeSet;

use crate::harness::repo_file;

/// Every `KANDJI_CONNECTOR_*` name in a text (a prefix such as `KANDJI_CONNECTOR_STREAM_` in a
/// message is not a name).
fn settings(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("KANDJI_CONNECTOR_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        if !name.ends_with('_') {
            out.insert(name.to_string());
        }
        rest = &tail[end..];
    }
    out
}

fn deploying_section(readme: &str) -> &str {
    let start = readme
        .find("\n## Deploying")
        .expect("README has a Deploying section");
    let rest = &readme[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
    &rest[..end]
}

#[test]
fn every_setting_the_binary_reads_is_in_the_readme() {
    let readme = settings(&repo_file("README.md"));
    let mut code = settings(&repo_file("src/config.rs"));
    code.extend(settings(&repo_file("src/main.rs")));
    let missing: Vec<_> = code.difference(&readme).collect();
    assert!(
        missing.is_empty(),
        "settings read by the binary but not documented in README.md: {missing:?}"
    );
}

#[test]
fn the_deploying_section_matches_the_dockerfile_and_the_compose_file() {
    let readme = repo_file("README.md");
    let section = deploying_section(&readme);
    let dockerfile = repo_file("Dockerfile");
    let compose = repo_file("docker-compose.yml");
    let mut known = settings(&repo_file("src/config.rs"));
    known.extend(settings(&repo_file("src/main.rs")));

    for (file, text) in [
        ("Dockerfile", &dockerfile),
        ("docker-compose.yml", &compose),
    ] {
        for name in settings(text) {
            assert!(
                known.contains(&name),
                "{file} sets {name}, which the binary does not read"
            );
            assert!(
                section.contains(&name),
                "{file} sets {name}; README's Deploying section does not mention it"
            );
        }
    }
    // What the runtime stage promises, said in the README as it is in the Dockerfile.
    for line in dockerfile.lines().map(str::trim) {
        if let Some(port) = line.strip_prefix("EXPOSE ") {
            assert!(section.contains(&format!("EXPOSE {port}")), "EXPOSE {port}");
        }
        if let Some(user) = line.strip_prefix("USER ") {
            assert!(section.contains(&format!("uid {user}")), "USER {user}");
        }
        if let Some(env) = line.trim_start_matches("ENV ").split_once('=')
            && env.0.starts_with("KANDJI_CONNECTOR_")
        {
            let assignment = line.trim_start_matches("ENV ").trim_end_matches(" \\");
            assert!(
                section.contains(assignment),
                "README's Deploying section should show `{assignment}` as the Dockerfile sets it"
            );
        }
    }
    // Every compose service and published port is named in the section.
    let mut in_services = false;
    for line in compose.lines() {
        if line.starts_with("services:") {
            in_services = true;
            continue;
        }
        if line.starts_with("volumes:") {
            in_services = false;
        }
        if in_services
            && let Some(name) = line.strip_prefix("  ").and_then(|l| l.strip_suffix(':'))
            && !name.starts_with(' ')
        {
            assert!(
                section.contains(&format!("`{name}`")),
                "compose service {name}"
            );
        }
        if let Some(port) = line
            .trim()
            .strip_prefix("- \"")
            .and_then(|p| p.split(':').next())
        {
            assert!(section.contains(port), "compose publishes port {port}");
        }
    }
}
