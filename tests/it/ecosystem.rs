//! How iam-rotate fits the tools around it: shell completions and the man
//! page, the plan file's JSON Schema, did-you-mean for mistyped names, and
//! the least-privilege IAM policies shipped in docs/policies/.

use std::path::Path;
use std::process::Command;

use crate::deliver::{credentials_file, laptop_credentials, self_rotate, write_private};
use crate::harness::{bare_command, Env, Run};
use crate::moto_env;

/// `iam-rotate ARGS` with nothing from this machine: no AWS, no plans.
fn offline(args: &[&str]) -> Run {
    let output = bare_command()
        .args(args)
        .env("HOME", "/nonexistent")
        .output()
        .expect("run iam-rotate");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The subcommands every completion script and the man page must know.
const SUBCOMMANDS: &[&str] = &[
    "plan",
    "run",
    "status",
    "show",
    "rollback",
    "report",
    "demo",
    "unlock",
    "self-rotate",
    "completions",
    "man",
    "schema",
];

// ---------------------------------------------------------------------------
// Completions and the man page

#[test]
fn each_shell_s_completion_script_names_every_subcommand() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let run = offline(&["completions", shell]);
        run.expect(0);
        assert!(run.stdout.len() > 1000, "{shell}: {}", run.stdout);
        assert!(run.stderr.is_empty(), "{shell}: {}", run.stderr);
        for sub in SUBCOMMANDS {
            assert!(run.stdout.contains(sub), "{shell}: no completion for {sub}");
        }
        // Flags complete too, global and per subcommand.
        // (fish names them without the dashes: -l retry-blocked.)
        for flag in ["plans-dir", "deliver", "retry-blocked"] {
            assert!(run.stdout.contains(flag), "{shell}: no {flag}");
        }
    }
    // An unknown shell is a usage error that lists the shells.
    let run = offline(&["completions", "tcsh"]);
    run.expect(2);
    assert!(run.stderr.contains("bash") && run.stderr.contains("powershell"));
}

#[test]
fn the_bash_completion_script_loads_and_completes() {
    let binary = env!("CARGO_BIN_EXE_iam-rotate");
    let dir = Path::new(binary).parent().unwrap();
    // As a user installs it: on PATH, then sourced.
    let script = r#"
        source <(iam-rotate completions bash) || exit 10
        complete -p iam-rotate || exit 11
        COMP_WORDS=(iam-rotate ro); COMP_CWORD=1; COMP_LINE="iam-rotate ro"; COMP_POINT=13
        _iam__rotate iam-rotate ro iam-rotate
        echo "subcommands: ${COMPREPLY[*]}"
        COMP_WORDS=(iam-rotate run --retry); COMP_CWORD=2
        _iam__rotate iam-rotate --retry run
        echo "flags: ${COMPREPLY[*]}"
    "#;
    let output = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", script])
        .env(
            "PATH",
            format!("{}:{}", dir.display(), std::env::var("PATH").unwrap()),
        )
        .output()
        .expect("bash");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("complete -o bashdefault -o default -o nosort -F _iam__rotate iam-rotate"),
        "{stdout}"
    );
    assert!(stdout.contains("subcommands: rollback"), "{stdout}");
    assert!(stdout.contains("flags: --retry-blocked"), "{stdout}");
}

#[test]
fn the_man_page_is_roff_and_lists_every_subcommand() {
    let run = offline(&["man"]);
    run.expect(0);
    let page = &run.stdout;
    assert!(page.starts_with(".TH iam-rotate 1 "), "{page}");
    let section = |name: &str| {
        page.find(&format!(".SH {name}\n"))
            .or_else(|| page.find(&format!(".SH \"{name}\"\n")))
            .unwrap_or_else(|| panic!("no {name} section:\n{page}"))
    };
    let (subcommands, environment) = (section("SUBCOMMANDS"), section("ENVIRONMENT"));
    section("EXIT STATUS");
    section("FILES");
    for sub in SUBCOMMANDS {
        // roff escapes hyphens: iam\-rotate\-self\-rotate(1).
        let entry = format!("iam\\-rotate\\-{}(1)", sub.replace('-', "\\-"));
        let at = page
            .find(&entry)
            .unwrap_or_else(|| panic!("{entry} missing"));
        assert!(at > subcommands, "{entry}");
    }
    assert!(page[environment..].contains("IAM_ROTATE_PLANS_DIR"));
    // man(1) can read it, when man is installed.
    if let Ok(mut man) = Command::new("man")
        .args(["-l", "-"])
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        use std::io::Write;
        man.stdin
            .take()
            .unwrap()
            .write_all(page.as_bytes())
            .unwrap();
        let out = man.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("iam-rotate-self-rotate(1)"), "{text}");
        assert!(text.contains("EXIT STATUS"), "{text}");
    }

    // --out-dir: the main page and one per subcommand.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man1");
    offline(&["man", "--out-dir", out.to_str().unwrap()]).expect(0);
    let main = std::fs::read_to_string(out.join("iam-rotate.1")).unwrap();
    assert_eq!(main, *page);
    for sub in SUBCOMMANDS {
        let sub_page = std::fs::read_to_string(out.join(format!("iam-rotate-{sub}.1")))
            .unwrap_or_else(|e| panic!("iam-rotate-{sub}.1: {e}"));
        assert!(sub_page.contains(".TH iam-rotate-"), "{sub}");
    }
}

#[test]
fn completions_man_and_schema_need_no_aws_and_no_plans() {
    // No credentials, no plans folder, a clock override that would stop
    // any command that writes: these only print what the binary is.
    for args in [&["completions", "zsh"][..], &["man"], &["schema"]] {
        let output = bare_command()
            .args(args)
            .env("IAM_ROTATE_PLANS_DIR", "/nonexistent/plans")
            .env("IAM_ROTATE_NOW", "2030-01-01T00:00:00Z")
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .output()
            .unwrap();
        assert!(output.status.success(), "{args:?}");
        assert!(output.stderr.is_empty(), "{args:?}: {:?}", output.stderr);
    }
}

// ---------------------------------------------------------------------------
// The plan file's JSON Schema

/// `iam-rotate schema`, compiled, with `format` (date-time) checked too.
fn plan_validator(env: &Env) -> jsonschema::Validator {
    let run = env.run(&["schema"]);
    run.expect(0);
    let schema = run.json();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("iam-rotate schema is a valid JSON Schema")
}

/// A YAML plan as the JSON it parses to.
fn as_json(yaml: &str) -> serde_json::Value {
    let value: serde_yaml::Value = serde_yaml::from_str(yaml).expect("a plan is YAML");
    serde_json::to_value(value).expect("a plan converts to JSON")
}

/// Every error the schema finds in `yaml`, with where.
fn schema_errors(validator: &jsonschema::Validator, yaml: &str) -> Vec<String> {
    let instance = as_json(yaml);
    validator
        .iter_errors(&instance)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

/// Records and checks every version of the plans a test writes.
struct Written<'a> {
    env: &'a Env,
    validator: jsonschema::Validator,
    versions: Vec<String>,
}

impl Written<'_> {
    /// The user's plan as it is on disk now validates; a new version is
    /// counted.
    #[track_caller]
    fn check(&mut self, user: &str) {
        let text = self.env.plan_text(user);
        let errors = schema_errors(&self.validator, &text);
        assert!(errors.is_empty(), "{user}: {errors:#?}\n{text}");
        // What iam-rotate writes is also the canonical duration form.
        let plan = as_json(&text);
        for field in ["adoption_wait", "quiet_period", "verify_period"] {
            let value = plan["policy"][field].as_str().unwrap();
            let (number, unit) = value.split_at(value.len() - 1);
            assert!(
                number.bytes().all(|b| b.is_ascii_digit()) && "smhd".contains(unit),
                "{field}: {value}"
            );
        }
        if !self.versions.contains(&text) {
            self.versions.push(text);
        }
    }
}

#[test]
fn every_plan_written_through_a_rotation_validates_against_the_schema() {
    let env = moto_env!();
    let mut written = Written {
        validator: plan_validator(&env),
        env: &env,
        versions: Vec::new(),
    };

    // A whole rotation, the clock moved with IAM_ROTATE_NOW; a short quiet
    // period accepted on purpose (policy.allow_short_quiet_period).
    let old = env.user("sam", 1).remove(0);
    env.run(&[
        "plan",
        "sam",
        "--quiet-period",
        "1h",
        "--allow-short-quiet-period",
    ])
    .expect(0);
    written.check("sam");
    env.run(&["run", "sam"]).expect(0); // create_second_key -> wait_for_adoption
    written.check("sam");
    let new = env.delivered("sam");
    env.use_key(&old);
    env.run_at(Some(1.0), &["run", "sam"]).expect(0); // waiting: an observation
    written.check("sam");
    env.use_key(&new);
    // Adoption over, the old key quiet: set inactive, then verify.
    env.run_at(Some(7.5), &["run", "sam"]).expect(0);
    written.check("sam");
    assert_eq!(env.plan_yaml("sam")["phase"], "verify");
    env.run_at(Some(8.0), &["run", "sam"]).expect(0); // verify waits
    written.check("sam");
    env.run_at(Some(15.5), &["run", "sam"]).expect(0); // -> delete -> done
    written.check("sam");
    let done = env.plan_yaml("sam");
    assert_eq!(done["phase"], "done");
    assert!(done["policy"]["allow_short_quiet_period"] == true);
    assert!(done["old_key"]["deactivated_at"].is_string());

    // profile: delivery (credentials_file), then rolled back.
    let pat = env.user("pat", 1).remove(0);
    write_private(&credentials_file(&env), &laptop_credentials(&pat, "pat"));
    env.run(&["plan", "pat", "--deliver", "profile:pat"])
        .expect(0);
    written.check("pat");
    assert!(env.plan_yaml("pat")["credentials_file"].is_string());
    env.run(&["run", "pat"]).expect(0);
    written.check("pat");
    env.run(&["rollback", "pat", "--abort", "--delete-new"])
        .expect(0);
    written.check("pat");
    assert_eq!(env.plan_yaml("pat")["phase"], "rolled_back");

    // Blocked by drift (blocked_in, blocked_reason), then retried.
    let eve = env.user("eve", 1).remove(0);
    env.run(&["plan", "eve"]).expect(0);
    env.run(&["run", "eve"]).expect(0);
    env.set_key_status("eve", &eve.id, "Inactive");
    env.run_at(Some(8.0), &["run", "eve"]).expect(3);
    written.check("eve");
    assert_eq!(env.plan_yaml("eve")["phase"], "blocked");
    env.set_key_status("eve", &eve.id, "Active");
    env.run_at(Some(8.0), &["run", "--retry-blocked", "eve"])
        .expect(0);
    written.check("eve");

    // A failed run (last_error): the destination's folder is a file.
    env.user("liv", 1);
    let folder = env.dir.path().join("handover");
    let spec = format!("file:{}/{{user}}.csv", folder.display());
    env.run(&["plan", "liv", "--deliver", &spec]).expect(0);
    std::fs::write(&folder, "not a folder").unwrap();
    env.run(&["run", "liv"]).expect(1);
    written.check("liv");
    assert!(env.plan_yaml("liv")["last_error"].is_string());

    // self-rotate's own plan (kind: self_rotate).
    let ida = env.user("ida", 1).remove(0);
    let file = env.dir.path().join("ida/credentials");
    write_private(&file, &laptop_credentials(&ida, "default"));
    let file_var = file.to_str().unwrap();
    self_rotate(
        &env,
        &[("AWS_SHARED_CREDENTIALS_FILE", file_var)],
        None,
        &["--delete-now"],
    )
    .expect(0);
    written.check("ida");
    assert_eq!(env.plan_yaml("ida")["kind"], "self_rotate");

    assert!(
        written.versions.len() >= 12,
        "{} plan versions checked",
        written.versions.len()
    );
    env.assert_no_secret_leaked(&[&env.default_csv("sam"), &credentials_file(&env), &file]);
}

#[test]
fn the_schema_refuses_what_iam_rotate_refuses_on_parse() {
    let env = moto_env!();
    let validator = plan_validator(&env);
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("plans/README.md"))
            .unwrap();
    let example = readme
        .split("```yaml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("plans/README.md has a yaml example");
    assert_eq!(schema_errors(&validator, example), Vec::<String>::new());
    for (from, to, path) in [
        ("phase: wait_for_adoption", "phase: sideways", "/phase"),
        ("version: 1", "version: 2", "/version"),
        ("account: '123456789012'", "account: '12345'", "/account"),
        (
            "quiet_period: 3d",
            "quiet_period: three days",
            "/policy/quiet_period",
        ),
        ("  status: Active", "  status: active", "/old_key/status"),
        ("phase_since:", "phase_snice:", ""),
        ("kind: plan", "kind: cron", "/kind"),
        (
            "  created_at: 2026-11-26T09:00:03Z",
            "  created_at: yesterday",
            "/new_key",
        ),
    ] {
        assert!(example.contains(from), "{from}");
        let errors = schema_errors(&validator, &example.replacen(from, to, 1));
        assert!(
            errors.iter().any(|e| e.starts_with(path)),
            "{to}: {errors:#?}"
        );
    }
}

// ---------------------------------------------------------------------------
// Did-you-mean

#[test]
fn a_mistyped_plan_name_gets_the_closest_plans_of_the_account() {
    let env = moto_env!();
    for user in ["alice", "alicia", "deploy-bot"] {
        env.user(user, 1);
        env.run(&["plan", user]).expect(0);
    }
    // (status's text is a table that wraps; its JSON is checked below.)
    for args in [
        &["run", "alcie"][..],
        &["show", "alcie"],
        &["rollback", "alcie"],
    ] {
        let run = env.run(args);
        run.expect(1);
        let text = run.text();
        assert!(text.contains("no plan at"), "{args:?}: {text}");
        assert!(text.contains("Did you mean alice?"), "{args:?}: {text}");
        assert!(
            text.contains("create a plan with `iam-rotate plan alcie`"),
            "{args:?}: {text}"
        );
    }
    // Two close names, best first; a part of a name finds the whole.
    let text = env.run(&["show", "alic"]).text();
    assert!(text.contains("Did you mean alice or alicia?"), "{text}");
    let text = env.run(&["show", "deploy"]).text();
    assert!(text.contains("Did you mean deploy-bot?"), "{text}");
    // JSON output carries the suggestion too.
    let status = env.run(&["--output", "json", "status", "alcie"]);
    status.expect(1);
    let error = status.json()[0]["error"].as_str().unwrap().to_string();
    assert!(error.contains("Did you mean alice?"), "{error}");
    assert!(error.contains("`iam-rotate plan alcie`"), "{error}");
    // Nothing close: no guess, just what to do.
    let run = env.run(&["show", "zed"]);
    run.expect(1);
    assert!(!run.text().contains("Did you mean"), "{}", run.text());
    assert!(
        run.text().contains("`iam-rotate plan zed`"),
        "{}",
        run.text()
    );
    // A plan path in a folder with plans gets the same help.
    let path = env.plans().join(crate::harness::ACCOUNT).join("alcie.yaml");
    let text = env.run(&["show", path.to_str().unwrap()]).text();
    assert!(text.contains("Did you mean alice?"), "{text}");
}

#[test]
fn an_account_without_plans_says_so() {
    let env = moto_env!();
    // Two other accounts' folders: `show` asks STS which is the caller's,
    // and the caller's has none.
    std::fs::create_dir_all(env.plans().join("999988887777")).unwrap();
    std::fs::create_dir_all(env.plans().join("111122223333")).unwrap();
    env.user("alice", 1);
    let run = env.run(&["show", "alice"]);
    run.expect(1);
    assert!(
        run.text().contains(
            "There are no plans for this account yet: create one with `iam-rotate plan alice`"
        ),
        "{}",
        run.text()
    );
}

#[test]
fn planning_a_user_iam_does_not_know_names_the_closest_users() {
    let env = moto_env!();
    for user in ["alice", "alicia", "deploy-bot", "Carol"] {
        env.user(user, 1);
    }
    // A user who exists: no ListUsers.
    env.proxy.reset_counts();
    env.run(&["plan", "alice"]).expect(0);
    assert!(
        !env.proxy.forwarded().contains_key("ListUsers"),
        "{:?}",
        env.proxy.forwarded()
    );

    let run = env.run(&["plan", "deploy-bto"]);
    run.expect(1);
    let text = run.text();
    assert!(
        text.contains("there is no IAM user deploy-bto in account"),
        "{text}"
    );
    assert!(text.contains("Did you mean deploy-bot?"), "{text}");
    assert!(!env.plan_path("deploy-bto").exists());
    // IAM user names are unique whatever their case.
    let text = env.run(&["plan", "carol"]).text();
    assert!(text.contains("Did you mean Carol?"), "{text}");
    let text = env.run(&["plan", "alic"]).text();
    assert!(text.contains("Did you mean alice or alicia?"), "{text}");
    // Several names: each gets its own answer; the good one is planned.
    let run = env.run(&["--output", "json", "plan", "alicia", "alcie"]);
    run.expect(1);
    let rows = run.json();
    assert_eq!(rows[0]["result"], "planned");
    let reason = rows[1]["reason"].as_str().unwrap();
    assert!(reason.contains("Did you mean alice?"), "{reason}");
    // Nothing close: where to look instead.
    let text = env.run(&["plan", "zed"]).text();
    assert!(!text.contains("Did you mean"), "{text}");
    assert!(text.contains("iam-rotate report"), "{text}");
}

// ---------------------------------------------------------------------------
// The least-privilege policies in docs/policies/

fn policy_file(name: &str) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs/policies")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"))
}

/// A statement's actions, whether written as one string or a list.
fn actions(statement: &serde_json::Value) -> Vec<String> {
    match &statement["Action"] {
        serde_json::Value::String(one) => vec![one.clone()],
        serde_json::Value::Array(many) => many
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect(),
        other => panic!("Action is {other}"),
    }
}

/// `policy` as moto can enforce it. moto checks each IAM, STS, Secrets
/// Manager and SSM request's action against the statements' Action lists,
/// but always against the resource `*` (moto/iam/access_control.py: "TODO
/// add support for the Resource and Condition parts"), so a statement
/// scoped to `arn:aws:iam::*:user/*` would never match there. Only the
/// Resource elements change; statements, effects and actions are the
/// file's own.
fn as_moto_enforces(mut policy: serde_json::Value) -> serde_json::Value {
    for statement in policy["Statement"].as_array_mut().unwrap() {
        statement["Resource"] = "*".into();
    }
    policy
}

/// Gives `user` exactly these inline policies, replacing any it had.
fn set_policies(env: &Env, user: &str, policies: &[(&str, serde_json::Value)]) {
    let iam = env.iam();
    env.block_on(async {
        let old = iam
            .list_user_policies()
            .user_name(user)
            .send()
            .await
            .unwrap();
        for name in old.policy_names() {
            iam.delete_user_policy()
                .user_name(user)
                .policy_name(name)
                .send()
                .await
                .unwrap();
        }
        for (name, document) in policies {
            iam.put_user_policy()
                .user_name(user)
                .policy_name(*name)
                .policy_document(document.to_string())
                .send()
                .await
                .unwrap();
        }
    });
}

/// Turns moto's authentication and IAM policy checks on or off.
fn enforce(env: &Env, on: bool) {
    crate::harness::http(
        &env.moto.endpoint,
        "POST",
        "/moto-api/reset-auth",
        if on { "0" } else { "inf" },
    )
    .expect("moto answers reset-auth");
}

/// `iam-rotate ARGS` signed with `key`, the clock `days` on when given,
/// with moto enforcing IAM policies for that one run.
fn run_as(env: &Env, key: &crate::harness::Key, days: Option<f64>, args: &[&str]) -> Run {
    let mut cmd = env.command();
    cmd.env("AWS_ACCESS_KEY_ID", &key.id)
        .env("AWS_SECRET_ACCESS_KEY", &key.secret)
        .args(args);
    if let Some(days) = days {
        cmd.env("IAM_ROTATE_NOW", crate::harness::at(days));
    }
    enforce(env, true);
    let output = cmd.output().expect("run iam-rotate");
    enforce(env, false);
    env.capture(output)
}

#[test]
fn the_operator_policy_is_enough_for_plan_run_rollback_report_and_status() {
    let env = moto_env!();
    let operator = env.user("rotator", 1).remove(0);
    set_policies(
        &env,
        "rotator",
        &[("operator", as_moto_enforces(policy_file("operator.json")))],
    );
    let app = env.user("app", 1).remove(0);
    let web = env.user("web", 1).remove(0);
    env.proxy.reset_counts();

    // Enforcement is on: the same key with no policy may do nothing.
    set_policies(&env, "rotator", &[]);
    let denied = run_as(&env, &operator, None, &["plan", "app"]);
    denied.expect(1);
    assert!(denied.text().contains("iam:GetUser"), "{}", denied.text());
    set_policies(
        &env,
        "rotator",
        &[("operator", as_moto_enforces(policy_file("operator.json")))],
    );
    env.proxy.reset_counts();

    // plan, plan --all, then a whole rotation with the clock moved.
    run_as(&env, &operator, None, &["plan", "app"]).expect(0);
    let run = run_as(
        &env,
        &operator,
        None,
        &["plan", "--all", "--exclude", "rotator"],
    );
    run.expect(0);
    assert!(env.plan_path("web").exists(), "{}", run.text());
    run_as(&env, &operator, None, &["run", "app"]).expect(0);
    let new = env.delivered("app");
    env.use_key(&new);
    run_as(&env, &operator, Some(8.0), &["run", "app"]).expect(0);
    assert_eq!(env.plan_yaml("app")["phase"], "verify");
    run_as(&env, &operator, Some(15.1), &["run", "app"]).expect(0);
    assert_eq!(env.plan_yaml("app")["phase"], "done");
    assert_eq!(env.keys("app"), vec![(new.id.clone(), "Active".into())]);

    // rollback, with the new key deleted.
    run_as(&env, &operator, None, &["run", "web"]).expect(0);
    assert_eq!(env.keys("web").len(), 2);
    run_as(
        &env,
        &operator,
        None,
        &["rollback", "web", "--abort", "--delete-new"],
    )
    .expect(0);
    assert_eq!(env.keys("web"), vec![(web.id.clone(), "Active".into())]);

    // report, status, show.
    let report = run_as(&env, &operator, None, &["--output", "json", "report"]);
    report.expect(0);
    assert!(report.stdout.contains(&app.id) || report.stdout.contains(&new.id));
    run_as(&env, &operator, None, &["status"]).expect(0);
    run_as(&env, &operator, None, &["show", "app"]).expect(0);

    // Least privilege both ways: every IAM action the policy grants was
    // needed by these commands, and they needed no other.
    let granted: std::collections::BTreeSet<String> = policy_file("operator.json")["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(actions)
        .collect();
    let used: std::collections::BTreeSet<String> = env
        .proxy
        .forwarded()
        .into_keys()
        .filter(|action| action != "GetCallerIdentity")
        .map(|action| format!("iam:{action}"))
        .collect();
    assert_eq!(granted, used);
    env.assert_no_secret_leaked(&[&env.default_csv("app"), &env.default_csv("web")]);
}

#[test]
fn each_action_of_the_operator_policy_is_needed_and_its_absence_is_named() {
    let env = moto_env!();
    let operator = env.user("rotator", 1).remove(0);
    let full = policy_file("operator.json");
    // Plans in each phase, made with the harness's own credentials
    // (moto enforces nothing outside `run_as`).
    let plan_in = |user: &str, steps: &[Option<f64>]| {
        env.user(user, 1);
        env.run(&["plan", user]).expect(0);
        for (i, at) in steps.iter().enumerate() {
            env.run_at(*at, &["run", user]).expect(0);
            if i == 0 {
                env.use_key(&env.delivered(user));
            }
        }
    };
    plan_in("ann", &[]); // create_second_key
    plan_in("ben", &[None]); // wait_for_adoption
    plan_in("cat", &[None]); // wait_for_adoption, due at day 8
    plan_in("dan", &[None, Some(8.0)]); // verify, due at day 15

    // (what is taken away, the command that needs it, the action named)
    let cases: &[(&str, &[&str], Option<f64>, &str)] = &[
        ("iam:GetUser", &["plan", "eve"], None, "iam:GetUser"),
        ("ListTheAccountsUsers", &["report"], None, "iam:ListUsers"),
        (
            "iam:ListAccessKeys",
            &["run", "ann"],
            None,
            "iam:ListAccessKeys",
        ),
        (
            "RotateAccessKeys",
            &["run", "ann"],
            None,
            "iam:CreateAccessKey",
        ),
        (
            "iam:GetAccessKeyLastUsed",
            &["run", "ben"],
            None,
            "iam:GetAccessKeyLastUsed",
        ),
        (
            "iam:UpdateAccessKey",
            &["run", "cat"],
            Some(8.0),
            "iam:UpdateAccessKey",
        ),
        (
            "iam:DeleteAccessKey",
            &["run", "dan"],
            Some(15.1),
            "iam:DeleteAccessKey",
        ),
    ];
    env.user("eve", 1);
    for (removed, args, at, named) in cases {
        let mut policy = full.clone();
        let statements = policy["Statement"].as_array_mut().unwrap();
        if removed.contains(':') {
            for statement in statements.iter_mut() {
                let kept: Vec<String> = actions(statement)
                    .into_iter()
                    .filter(|a| a != removed)
                    .collect();
                statement["Action"] = kept.into();
            }
        } else {
            statements.retain(|s| s["Sid"] != *removed);
        }
        assert_ne!(policy, full, "{removed} is in operator.json");
        set_policies(&env, "rotator", &[("operator", as_moto_enforces(policy))]);
        let keys_before: Vec<_> = ["ann", "ben", "cat", "dan"]
            .iter()
            .map(|u| env.keys(u))
            .collect();
        let run = run_as(&env, &operator, *at, args);
        let text = run.text();
        assert_eq!(run.code, 1, "without {removed}: {text}");
        // In iam-rotate's own words, whatever AWS's message says.
        assert!(
            text.contains(&format!("need the permission {named};")),
            "without {removed}: {text}"
        );
        assert!(text.to_lowercase().contains("access denied"), "{text}");
        let keys_after: Vec<_> = ["ann", "ben", "cat", "dan"]
            .iter()
            .map(|u| env.keys(u))
            .collect();
        assert_eq!(keys_before, keys_after, "without {removed}: keys changed");
    }
    // With the whole policy back, the same commands go through.
    set_policies(&env, "rotator", &[("operator", as_moto_enforces(full))]);
    run_as(&env, &operator, None, &["run", "ann"]).expect(0);
    run_as(&env, &operator, Some(15.1), &["run", "dan"]).expect(0);
    assert_eq!(env.plan_yaml("dan")["phase"], "done");
}

#[test]
fn the_delivery_policies_cover_secrets_manager_and_ssm() {
    let env = moto_env!();
    let operator = env.user("rotator", 1).remove(0);
    for (user, spec, delivery_policy, first_needed) in [
        (
            "sm-user",
            "secretsmanager:iam/{account}/{user}",
            "delivery-secretsmanager.json",
            "secretsmanager:DescribeSecret",
        ),
        (
            "ssm-user",
            "ssm:/iam/{account}/{user}",
            "delivery-ssm.json",
            "ssm:GetParameter",
        ),
    ] {
        env.user(user, 1);
        env.run(&["plan", user, "--deliver", spec]).expect(0);
        // operator.json alone cannot deliver there: the delivery is
        // refused before any key exists.
        set_policies(
            &env,
            "rotator",
            &[("operator", as_moto_enforces(policy_file("operator.json")))],
        );
        let run = run_as(&env, &operator, None, &["run", user]);
        run.expect(1);
        assert!(run.text().contains(first_needed), "{}", run.text());
        assert_eq!(env.keys(user).len(), 1, "{}", run.text());
        // With the delivery policy too, it goes through.
        set_policies(
            &env,
            "rotator",
            &[
                ("operator", as_moto_enforces(policy_file("operator.json"))),
                ("delivery", as_moto_enforces(policy_file(delivery_policy))),
            ],
        );
        let run = run_as(&env, &operator, None, &["run", user]);
        run.expect(0);
        assert_eq!(env.keys(user).len(), 2, "{}", run.text());
        assert_eq!(env.plan_yaml(user)["phase"], "wait_for_adoption");
    }
}

/// The S3 action a request through the proxy needed (`S3:METHOD /path`):
/// HeadBucket and ListObjectsV2 are `s3:ListBucket`.
fn s3_action(request: &str) -> Option<&'static str> {
    let (method, path) = request.strip_prefix("S3:")?.split_once(' ')?;
    let on_object = path
        .trim_start_matches('/')
        .trim_end_matches('/')
        .contains('/');
    Some(match (method, on_object) {
        ("HEAD", false) | ("GET", false) => "s3:ListBucket",
        ("GET", true) => "s3:GetObject",
        ("PUT", true) => "s3:PutObject",
        ("DELETE", true) => "s3:DeleteObject",
        _ => return None,
    })
}

/// plans-s3.json as moto enforces it: besides the resources (see
/// [`as_moto_enforces`]), moto checks HeadBucket as an action of its own,
/// `s3:HeadBucket` (moto/s3/responses.py ACTION_MAP), where AWS checks
/// `s3:ListBucket`; the statement that grants ListBucket grants that too.
fn plans_policy_as_moto_enforces() -> serde_json::Value {
    let mut policy = as_moto_enforces(policy_file("plans-s3.json"));
    for statement in policy["Statement"].as_array_mut().unwrap() {
        if actions(statement) == ["s3:ListBucket"] {
            statement["Action"] = serde_json::json!(["s3:ListBucket", "s3:HeadBucket"]);
        }
    }
    policy
}

#[test]
fn the_plans_s3_policy_is_enough_for_plans_in_s3_and_needed() {
    let env = moto_env!();
    let plans = "s3://iam-rotate-plans/prod";
    crate::harness::http(&env.moto.endpoint, "PUT", "/iam-rotate-plans", "")
        .expect("moto creates the bucket");
    let operator = env.user("rotator", 1).remove(0);
    env.user("app", 1);
    let operator_only = || ("operator", as_moto_enforces(policy_file("operator.json")));

    // operator.json alone: the bucket check is refused first, exit 1.
    set_policies(&env, "rotator", &[operator_only()]);
    let denied = run_as(
        &env,
        &operator,
        None,
        &["--plans-dir", plans, "plan", "app"],
    );
    denied.expect(1);
    assert!(denied.stderr.contains("access denied"), "{}", denied.stderr);
    assert_eq!(env.proxy.writes(), Default::default());

    set_policies(
        &env,
        "rotator",
        &[operator_only(), ("plans", plans_policy_as_moto_enforces())],
    );
    env.proxy.reset_counts();
    for args in [
        &["plan", "app"][..],
        &["run", "app"],
        &["status"],
        &["show", "app"],
        &["unlock", "app", "--force"],
    ] {
        let mut all = vec!["--plans-dir", plans];
        all.extend_from_slice(args);
        run_as(&env, &operator, None, &all).expect(0);
    }
    assert_eq!(env.keys("app").len(), 2);
    let granted: std::collections::BTreeSet<String> = policy_file("plans-s3.json")["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(actions)
        .collect();
    let used: std::collections::BTreeSet<String> = env
        .proxy
        .forwarded()
        .into_keys()
        .filter_map(|request| s3_action(&request).map(str::to_string))
        .collect();
    assert_eq!(granted, used, "{:?}", env.proxy.forwarded());
}

#[test]
fn every_shipped_policy_is_a_2012_10_17_policy_document() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/policies");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "delivery-secretsmanager.json",
            "delivery-ssm.json",
            "member-role.json",
            "notify-sns.json",
            "operator.json",
            "org-runner.json",
            "plans-s3.json",
            "self-rotate.json"
        ]
    );
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    for name in &names {
        let policy = policy_file(name);
        assert_eq!(policy["Version"], "2012-10-17", "{name}");
        let statements = policy["Statement"].as_array().expect("Statement list");
        assert!(!statements.is_empty(), "{name}");
        let mut sids = std::collections::BTreeSet::new();
        for statement in statements {
            assert_eq!(statement["Effect"], "Allow", "{name}: only grants");
            let sid = statement["Sid"]
                .as_str()
                .expect("every statement has a Sid");
            assert!(sids.insert(sid), "{name}: Sid {sid} twice");
            assert!(statement["Resource"].is_string(), "{name}: {sid}");
            for action in actions(statement) {
                let (service, operation) = action.split_once(':').expect("service:Action");
                assert!(
                    [
                        "iam",
                        "secretsmanager",
                        "ssm",
                        "kms",
                        "organizations",
                        "sts",
                        "s3",
                        "sns"
                    ]
                    .contains(&service),
                    "{name}: {action}"
                );
                assert!(!operation.contains('*'), "{name}: {action} is a wildcard");
                assert!(
                    readme.contains(&action),
                    "docs/policies/README.md: {action}"
                );
            }
        }
        assert!(readme.contains(name.as_str()), "README.md names {name}");
    }
    // docs/self-rotate.md shows the same policy.
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/self-rotate.md"))
            .unwrap();
    let shown = doc
        .split("```json\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("docs/self-rotate.md shows the policy");
    let shown: serde_json::Value = serde_json::from_str(shown).unwrap();
    assert_eq!(shown, policy_file("self-rotate.json"));
}

#[test]
fn the_schema_in_docs_is_the_one_the_binary_prints() {
    let run = offline(&["schema"]);
    run.expect(0);
    let committed = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/plan.schema.json"),
    )
    .unwrap();
    assert!(
        committed == run.stdout,
        "docs/plan.schema.json is stale: regenerate it with \
         `cargo run -q -- schema > docs/plan.schema.json` and commit it"
    );
}
