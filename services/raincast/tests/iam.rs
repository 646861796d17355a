//! Least privilege: the instance role in infra/raincast.yaml grants exactly
//! the AWS actions the shipped code calls, no more and no fewer.
//!
//! The SDK operations come from the code itself: every `.operation()` call
//! of an operation that the AWS SDK crates in the dependency tree define
//! (`src/operation/*` of aws-sdk-s3, aws-sdk-dynamodb, aws-sdk-ssm, found
//! with `cargo metadata`), in non-test source files that use that SDK. Each
//! maps to its IAM action; the role's actions must be that set.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The SDK crates the code may use, with their IAM service prefix.
const SDKS: [(&str, &str); 3] = [
    ("aws-sdk-s3", "s3"),
    ("aws-sdk-dynamodb", "dynamodb"),
    ("aws-sdk-ssm", "ssm"),
];

/// Operations whose IAM action is not the operation's own name.
const ACTION_OF: [(&str, &str); 4] = [
    ("s3:ListObjectsV2", "s3:ListBucket"),
    ("s3:HeadObject", "s3:GetObject"),
    ("s3:HeadBucket", "s3:ListBucket"),
    ("s3:GetObjectAttributes", "s3:GetObject"),
];

/// Actions an operation needs besides its own: SecureString parameters are
/// decrypted with the KMS key (WithDecryption).
const IMPLIED: [(&str, &str); 1] = [("ssm:GetParametersByPath", "kms:Decrypt")];

/// Calls the code makes that the stack's role deliberately does not allow:
/// `--create-tables` creates the DynamoDB tables for development; the stack
/// creates them itself.
const NOT_GRANTED: [&str; 2] = ["dynamodb:CreateTable", "dynamodb:UpdateTimeToLive"];

fn workspace() -> PathBuf {
    raincast_testkit::workspace_root()
}

/// The host's target triple, from `rustc -vV`.
fn host_triple() -> String {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let out = Command::new(&rustc)
        .arg("-vV")
        .output()
        .unwrap_or_else(|e| panic!("run {rustc} -vV: {e}"));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .unwrap_or_else(|| panic!("{rustc} -vV printed no host line"))
        .to_owned()
}

/// Operation names (snake case) of each SDK crate, by crate name.
fn sdk_operations() -> BTreeMap<&'static str, BTreeSet<String>> {
    // Offline, and only this platform's packages: a fresh machine's registry
    // holds only what the host build downloaded (not, say, the Android-only
    // crates of the time-zone stack), and the SDK crates are among them.
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--filter-platform",
        ])
        .arg(host_triple())
        .arg("--manifest-path")
        .arg(workspace().join("Cargo.toml"))
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut ops = BTreeMap::new();
    for (krate, _) in SDKS {
        let pkg = meta["packages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == krate)
            .unwrap_or_else(|| panic!("{krate} is not in the dependency tree"));
        let dir = Path::new(pkg["manifest_path"].as_str().unwrap())
            .parent()
            .unwrap()
            .join("src/operation");
        let names: BTreeSet<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap())
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.len() > 10, "{krate}: only {names:?} in {dir:?}");
        ops.insert(krate, names);
    }
    ops
}

/// Attributes that compile a module for tests only: `#[cfg(test)]`, and
/// the store's conformance suites (built for other crates' tests through
/// the `conformance` feature, never by the shipped binary).
const TEST_ONLY: [&str; 2] = [
    "#[cfg(test)]",
    "#[cfg(any(test, feature = \"conformance\"))]",
];

/// `text` without test-only `mod NAME { … }` blocks ([`TEST_ONLY`]); also
/// returns the names of test-only `mod NAME;` files.
fn strip_tests(text: &str) -> (String, Vec<String>) {
    let mut out = String::new();
    let mut test_files = Vec::new();
    let mut rest = text;
    while let Some((i, attr)) = TEST_ONLY
        .iter()
        .filter_map(|a| rest.find(a).map(|i| (i, a)))
        .min()
    {
        out.push_str(&rest[..i]);
        let after = &rest[i + attr.len()..];
        let trimmed = after.trim_start();
        let trimmed = trimmed.strip_prefix("pub ").unwrap_or(trimmed);
        let Some(decl) = trimmed.strip_prefix("mod ") else {
            rest = after;
            continue;
        };
        let name: String = decl
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let body = decl[name.len()..].trim_start();
        if let Some(after_decl) = body.strip_prefix(';') {
            test_files.push(name);
            rest = after_decl;
            continue;
        }
        // Skip the block by brace depth.
        let mut depth = 0usize;
        let mut end = body.len();
        for (j, c) in body.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = j + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &body[end..];
    }
    out.push_str(rest);
    (out, test_files)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn pascal(op: &str) -> String {
    op.split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// IAM actions of the SDK calls in the shipped code, each with one place
/// that calls it.
fn actions_called() -> BTreeMap<String, String> {
    let ops = sdk_operations();
    let mut files = Vec::new();
    for e in std::fs::read_dir(workspace().join("services")).unwrap() {
        let dir = e.unwrap().path();
        // Test support only.
        if dir.ends_with("testkit") {
            continue;
        }
        if dir.join("src").is_dir() {
            rust_files(&dir.join("src"), &mut files);
        }
    }
    let mut test_only = BTreeSet::new();
    let mut code = BTreeMap::new();
    for f in &files {
        let (text, tests) = strip_tests(&std::fs::read_to_string(f).unwrap());
        test_only.extend(
            tests
                .into_iter()
                .map(|t| f.with_file_name(format!("{t}.rs"))),
        );
        code.insert(f.clone(), text);
    }
    let mut actions = BTreeMap::new();
    for (f, text) in &code {
        if test_only.contains(f) {
            continue;
        }
        // A file uses an SDK when it, or its folder's mod.rs, names the crate.
        let context = format!(
            "{text}{}",
            code.get(&f.with_file_name("mod.rs"))
                .map(String::as_str)
                .unwrap_or("")
        );
        for (krate, service) in SDKS {
            if !context.contains(&krate.replace('-', "_")) {
                continue;
            }
            for (line_no, line) in text.lines().enumerate() {
                for part in line.split('.').skip(1) {
                    let Some((op, _)) = part.split_once("()") else {
                        continue;
                    };
                    if ops[krate].contains(op) {
                        let action = format!("{service}:{}", pascal(op));
                        let action = ACTION_OF
                            .iter()
                            .find(|(a, _)| *a == action)
                            .map(|(_, b)| b.to_string())
                            .unwrap_or(action);
                        let at = format!("{}:{}", f.display(), line_no + 1);
                        for (from, implied) in IMPLIED {
                            if from == action {
                                actions.entry(implied.to_string()).or_insert(at.clone());
                            }
                        }
                        actions.entry(action).or_insert(at);
                    }
                }
            }
        }
    }
    actions
}

/// The lines of one resource of the template: from `  NAME:` to the next
/// line indented by two spaces or less.
fn resource(template: &str, name: &str) -> String {
    let header = format!("  {name}:");
    let mut lines = template.lines().skip_while(|l| *l != header);
    let first = lines.next().unwrap_or_else(|| panic!("no resource {name}"));
    let body = lines.take_while(|l| l.trim().is_empty() || l.starts_with("   "));
    std::iter::once(first)
        .chain(body)
        .collect::<Vec<_>>()
        .join("\n")
}

/// `service:Action` words of the instance role's policies.
fn actions_granted(role: &str) -> BTreeSet<String> {
    role.split(|c: char| c.is_whitespace() || "[],\"'".contains(c))
        .filter(|w| {
            w.split_once(':').is_some_and(|(svc, act)| {
                ["s3", "dynamodb", "ssm", "kms"].contains(&svc)
                    && !act.is_empty()
                    && act.chars().all(|c| c.is_ascii_alphanumeric() || c == '*')
            })
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn the_instance_role_grants_exactly_the_calls_the_code_makes() {
    let called = actions_called();
    for must in [
        "dynamodb:PutItem",
        "s3:GetObject",
        "ssm:GetParametersByPath",
    ] {
        assert!(
            called.contains_key(must),
            "scan found no {must}: {called:?}"
        );
    }
    let template = std::fs::read_to_string(workspace().join("infra/raincast.yaml")).unwrap();
    let role = resource(&template, "InstanceRole");
    let granted = actions_granted(&role);
    let needed: BTreeSet<String> = called
        .keys()
        .filter(|a| !NOT_GRANTED.contains(&a.as_str()))
        .cloned()
        .collect();
    let missing: Vec<String> = needed
        .difference(&granted)
        .map(|a| format!("{a} (called at {})", called[a]))
        .collect();
    let unused: Vec<&String> = granted.difference(&needed).collect();
    assert!(
        missing.is_empty() && unused.is_empty(),
        "instance role vs code: missing {missing:?}, granted but never called {unused:?}"
    );
    assert!(
        !granted.iter().any(|a| a.contains('*')),
        "no wildcard actions: {granted:?}"
    );
}

#[test]
fn secrets_are_readable_only_below_the_prefix_with_only_the_stack_key() {
    let template = std::fs::read_to_string(workspace().join("infra/raincast.yaml")).unwrap();
    let role = resource(&template, "InstanceRole");
    assert!(!role.contains("Resource: \"*\"") && !role.contains("Resource: '*'"));
    let ssm = &role[role.find("ssm:GetParametersByPath").unwrap()..];
    let ssm = &ssm[..ssm.find("- Sid:").unwrap_or(ssm.len())];
    assert!(
        ssm.contains(":parameter${SecretsPath}\"") && ssm.contains(":parameter${SecretsPath}/*\""),
        "SSM read must name the secrets path: {ssm}"
    );
    let kms = &role[role.find("kms:Decrypt").unwrap()..];
    let kms = &kms[..kms.find("- Sid:").unwrap_or(kms.len())];
    assert!(
        kms.contains("!GetAtt SecretsKey.Arn"),
        "KMS decrypt must name the stack's key: {kms}"
    );
}

#[test]
fn the_scanner_finds_calls_and_skips_tests() {
    let (code, files) = strip_tests(
        "fn a() { c.put_item().send(); }\n#[cfg(test)]\nmod tests {\n fn b() { c.delete_item(); { } }\n}\n#[cfg(test)]\nmod adapter_tests;\n#[cfg(any(test, feature = \"conformance\"))]\npub mod conformance;\nfn z() {}\n",
    );
    assert!(code.contains("put_item") && code.contains("fn z"));
    assert!(!code.contains("delete_item"), "{code}");
    assert_eq!(files, ["adapter_tests", "conformance"]);
    assert_eq!(pascal("get_parameters_by_path"), "GetParametersByPath");
    let granted = actions_granted(
        "Action:\n  - dynamodb:GetItem\n  - \"s3:GetObject\"\nAction: sts:AssumeRole\nResource: arn:aws:s3:::b",
    );
    assert_eq!(
        granted.into_iter().collect::<Vec<_>>(),
        ["dynamodb:GetItem", "s3:GetObject"]
    );
}

/// The stack's other promises in docs/OPERATIONS.md, section 5, read from
/// the template: data kept when the stack is deleted, TLS-only bucket,
/// HTTPS by default, /metrics and /readyz closed on the load balancer, and
/// IMDSv2 only. (cfn-lint checks the template's form, not these.)
#[test]
fn the_stacks_documented_protections_are_in_the_template() {
    let template = std::fs::read_to_string(workspace().join("infra/raincast.yaml")).unwrap();
    for kept in ["RawScanBucket", "ScansTable", "StateTable", "SecretsKey"] {
        let r = resource(&template, kept);
        assert!(
            r.contains("DeletionPolicy: Retain"),
            "{kept} is not kept: {r}"
        );
    }
    let policy = resource(&template, "RawScanBucketPolicy");
    assert!(
        policy.contains("Effect: Deny") && policy.contains("aws:SecureTransport: \"false\""),
        "the bucket must refuse plain HTTP: {policy}"
    );
    let rules = &template[template.find("\nRules:").expect("Rules")..];
    assert!(
        rules.contains("!Not [!Equals [!Ref CertificateArn, \"\"]]")
            && rules.contains("RuleCondition: !Equals [!Ref PlainHttpForTestingOnly, \"false\"]"),
        "a stack without a certificate must be refused: {rules}"
    );
    let http = resource(&template, "HttpListener");
    assert!(
        http.contains("Protocol: HTTPS") && http.contains("StatusCode: HTTP_301"),
        "port 80 must redirect to HTTPS: {http}"
    );
    for (rule, listener) in [
        ("HttpInternalPathsRule", "HttpListener"),
        ("HttpsInternalPathsRule", "HttpsListener"),
    ] {
        let r = resource(&template, rule);
        assert!(
            r.contains(&format!("ListenerArn: !Ref {listener}"))
                && r.contains("Values: [/metrics, /metrics/*, /readyz, /readyz/*]")
                && r.contains("StatusCode: \"404\"")
                && r.contains("Priority: 1"),
            "{rule} must answer 404 for /metrics and /readyz on {listener}: {r}"
        );
    }
    let launch = resource(&template, "LaunchTemplate");
    assert!(
        launch.contains("MetadataOptions:") && launch.contains("HttpTokens: required"),
        "IMDSv2 only: {launch}"
    );
}
