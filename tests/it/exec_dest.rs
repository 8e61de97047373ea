//! The `exec:` destination and its recipes in examples/exec/: the key
//! reaches the program on stdin only, never its argv; a failing program
//! fails the delivery and leaves no new key; a missing one is refused when
//! planning.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::harness::{Env, Key, Run};
use crate::moto_env;

/// Stand-ins for gh, kubectl, vault and op, first in PATH: each records
/// its argv (one argument a line, calls ended by `--`) in `NAME.argv` and
/// its stdin in `NAME.stdin`.
struct Tools {
    bin: PathBuf,
}

impl Tools {
    fn new(env: &Env) -> Tools {
        let bin = env.dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        for name in ["gh", "kubectl", "vault", "op"] {
            tool(
                &bin,
                name,
                &format!(
                    "for a in \"$@\"; do printf '%s\\n' \"$a\"; done >> '{dir}/{name}.argv'\n\
                     printf -- '--\\n' >> '{dir}/{name}.argv'\n\
                     cat >> '{dir}/{name}.stdin'\n\
                     printf '\\n' >> '{dir}/{name}.stdin'",
                    dir = bin.display()
                ),
            );
        }
        Tools { bin }
    }

    fn argv(&self, name: &str) -> String {
        std::fs::read_to_string(self.bin.join(format!("{name}.argv"))).unwrap_or_default()
    }

    fn stdin_path(&self, name: &str) -> PathBuf {
        self.bin.join(format!("{name}.stdin"))
    }

    fn stdin(&self, name: &str) -> String {
        std::fs::read_to_string(self.stdin_path(name)).unwrap_or_default()
    }

    /// PATH with the stand-ins and the recipes first.
    fn path(&self) -> String {
        format!(
            "{}:{}:{}",
            self.bin.display(),
            recipes().display(),
            std::env::var("PATH").unwrap_or_default()
        )
    }
}

fn tool(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn recipes() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/exec")
}

fn run(env: &Env, tools: &Tools, args: &[&str]) -> Run {
    let mut cmd = env.command();
    cmd.env("PATH", tools.path()).args(args);
    env.capture(cmd.output().expect("run iam-rotate"))
}

/// Plans `user` to `spec`, runs it, and returns the new key's id after
/// checking the run succeeded and the plan waits for adoption.
fn rotate(env: &Env, tools: &Tools, user: &str, spec: &str) -> String {
    env.user(user, 1);
    run(env, tools, &["plan", user, "--deliver", spec]).expect(0);
    run(env, tools, &["run", user]).expect(0);
    let plan = env.plan_yaml(user);
    assert_eq!(plan["phase"], "wait_for_adoption");
    plan["new_key"]["id"].as_str().unwrap().to_string()
}

/// The secret of `id`, as a stand-in received it in `stdin`; remembered
/// for the leak scan.
fn secret_in(env: &Env, stdin: &str, id: &str) -> String {
    let secret = stdin
        .lines()
        .find_map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).ok()?;
            if let Some(data) = value.get("stringData") {
                assert_eq!(data["AWS_ACCESS_KEY_ID"], id);
                return data["AWS_SECRET_ACCESS_KEY"].as_str().map(String::from);
            }
            let fields = value.get("fields")?.as_array()?;
            assert_eq!(fields[0]["value"], id);
            fields[1]["value"].as_str().map(String::from)
        })
        .unwrap_or_else(|| stdin.lines().last().unwrap_or_default().to_string());
    assert_eq!(secret.len(), 40, "a secret access key arrived: {stdin:?}");
    env.remember_secret(&secret);
    secret
}

fn assert_authenticates(env: &Env, user: &str, id: &str, secret: &str) {
    let arn = env.use_key(&Key {
        id: id.into(),
        secret: secret.into(),
    });
    assert_eq!(
        arn,
        format!("arn:aws:iam::{}:user/{user}", crate::harness::ACCOUNT)
    );
}

#[test]
fn gh_recipe_sets_two_secrets_from_stdin_and_a_bare_name_is_pinned() {
    let env = moto_env!();
    let tools = Tools::new(&env);
    let id = rotate(&env, &tools, "alice", "exec:gh-secret.sh octo/app");
    let delivery = env.plan_yaml("alice")["delivery"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        delivery,
        format!("exec:{} octo/app", recipes().join("gh-secret.sh").display())
    );
    let argv = tools.argv("gh");
    assert_eq!(
        argv,
        "secret\nset\nAWS_ACCESS_KEY_ID\n--repo\nocto/app\n--\n\
         secret\nset\nAWS_SECRET_ACCESS_KEY\n--repo\nocto/app\n--\n"
    );
    let stdin = tools.stdin("gh");
    let mut values = stdin.lines();
    assert_eq!(values.next(), Some(id.as_str()));
    let secret = secret_in(&env, &stdin, &id);
    assert!(!argv.contains(&secret));
    assert_authenticates(&env, "alice", &id, &secret);
    env.assert_no_secret_leaked(&[&tools.stdin_path("gh")]);
}

#[test]
fn kubectl_recipe_applies_a_secret_manifest_from_stdin() {
    let env = moto_env!();
    let tools = Tools::new(&env);
    let spec = format!(
        "exec:{} apps {{user}}-aws",
        recipes().join("kubectl-secret.sh").display()
    );
    let id = rotate(&env, &tools, "bob", &spec);
    let argv = tools.argv("kubectl");
    assert_eq!(argv, "apply\n-f\n-\n--\n");
    let stdin = tools.stdin("kubectl");
    let manifest: serde_json::Value = serde_json::from_str(stdin.trim()).unwrap();
    assert_eq!(manifest["kind"], "Secret");
    assert_eq!(manifest["metadata"]["namespace"], "apps");
    assert_eq!(manifest["metadata"]["name"], "bob-aws");
    let secret = secret_in(&env, &stdin, &id);
    assert!(!argv.contains(&secret));
    assert_authenticates(&env, "bob", &id, &secret);
    env.assert_no_secret_leaked(&[&tools.stdin_path("kubectl")]);
}

#[test]
fn vault_recipe_reads_the_secret_from_stdin() {
    let env = moto_env!();
    let tools = Tools::new(&env);
    let spec = format!(
        "exec:{} secret/aws/{{user}}",
        recipes().join("vault-kv.sh").display()
    );
    let id = rotate(&env, &tools, "carol", &spec);
    let argv = tools.argv("vault");
    assert_eq!(
        argv,
        format!("kv\nput\nsecret/aws/carol\nAccessKeyId={id}\nSecretAccessKey=-\n--\n")
    );
    let stdin = tools.stdin("vault");
    let secret = secret_in(&env, &stdin, &id);
    assert_eq!(stdin, format!("{secret}\n"));
    assert_authenticates(&env, "carol", &id, &secret);
    env.assert_no_secret_leaked(&[&tools.stdin_path("vault")]);
}

#[test]
fn op_recipe_edits_the_item_from_a_template_on_stdin() {
    let env = moto_env!();
    let tools = Tools::new(&env);
    let spec = format!(
        "exec:{} Infra 'aws {{user}}'",
        recipes().join("op-item.sh").display()
    );
    let id = rotate(&env, &tools, "dave", &spec);
    let argv = tools.argv("op");
    assert_eq!(
        argv,
        "item\nedit\naws dave\n--vault\nInfra\n--template\n/dev/stdin\n--\n"
    );
    let stdin = tools.stdin("op");
    let secret = secret_in(&env, &stdin, &id);
    assert!(!argv.contains(&secret));
    assert_authenticates(&env, "dave", &id, &secret);
    env.assert_no_secret_leaked(&[&tools.stdin_path("op")]);
}

#[test]
fn a_failing_command_leaves_no_new_key_and_shows_its_stderr_without_the_secret() {
    let env = moto_env!();
    let tools = Tools::new(&env);
    // This vault echoes what it read to stderr: the message must not.
    tool(
        &tools.bin,
        "vault",
        &format!(
            "cat | tee '{}' >&2\necho\necho 'Error writing data: permission denied' >&2\nexit 1",
            tools.stdin_path("vault").display()
        ),
    );
    let old = env.user("erin", 1).remove(0);
    let spec = format!(
        "exec:{} secret/erin",
        recipes().join("vault-kv.sh").display()
    );
    run(&env, &tools, &["plan", "erin", "--deliver", &spec]).expect(0);
    let failed = run(&env, &tools, &["run", "erin"]);
    failed.expect(1);
    assert!(
        failed.text().contains("permission denied"),
        "{}",
        failed.text()
    );
    assert!(
        failed.text().contains("exited with status 1"),
        "{}",
        failed.text()
    );
    assert_eq!(env.keys("erin"), vec![(old.id.clone(), "Active".into())]);
    assert_eq!(env.plan_yaml("erin")["phase"], "create_second_key");
    let stdin = tools.stdin("vault");
    secret_in(&env, &stdin, "");
    env.assert_no_secret_leaked(&[&tools.stdin_path("vault")]);
}

#[test]
fn a_program_not_found_is_refused_when_planning() {
    let env = moto_env!();
    let tools = Tools::new(&env);
    env.user("frank", 1);
    let refused = run(
        &env,
        &tools,
        &[
            "plan",
            "frank",
            "--deliver",
            "exec:no-such-tool-iam-rotate {user}",
        ],
    );
    refused.expect(2);
    assert!(
        refused.stderr.contains("not found in PATH"),
        "{}",
        refused.stderr
    );
    let refused = run(
        &env,
        &tools,
        &["plan", "frank", "--deliver", "exec:/nowhere/tool"],
    );
    refused.expect(2);
    assert!(!env.plan_path("frank").exists());
}
