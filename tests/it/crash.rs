//! `kill -9` at arbitrary moments, and two batch runs at once: afterwards a
//! normal run reaches the same end state as an undisturbed one, no plan is
//! ever half-written, and no user gets two new keys.

use std::process::Stdio;
use std::time::Duration;

use crate::faults::assert_one_new_key_each;
use crate::harness::{walk, Env, Key};
use crate::moto_env;
use crate::proxy::Faults;

fn setup(env: &Env, n: usize, prefix: &str) -> (Vec<String>, Vec<Key>) {
    let users: Vec<String> = (0..n).map(|i| format!("{prefix}{i:02}")).collect();
    let old: Vec<Key> = users.iter().map(|u| env.user(u, 1).remove(0)).collect();
    let mut args = vec!["plan"];
    args.extend(users.iter().map(String::as_str));
    env.run(&args).expect(0);
    (users, old)
}

/// Every plan file under the folder parses as a complete plan.
fn assert_plans_whole(env: &Env) {
    for file in walk(&env.plans()) {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let run = env.run(&["show", file.to_str().unwrap()]);
        assert_eq!(
            run.code,
            0,
            "{} is not a whole plan:\n{text}\n{}",
            file.display(),
            run.text()
        );
    }
}

#[test]
fn kill_9_at_random_moments_loses_and_doubles_nothing() {
    let env = moto_env!();
    let (users, old) = setup(&env, 30, "k");
    // Slow answers widen the windows a kill can land in.
    env.proxy.set_faults(Faults {
        delay: 0.5,
        delay_by: Duration::from_millis(40),
        slow_create_answer: Duration::from_millis(250),
        seed: 11,
        ..Faults::default()
    });
    let args = ["run", "--all"];
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut kills = 0;
    for _ in 0..6 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let after = Duration::from_millis(100 + rng % 900);
        let mut child = env
            .command()
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(after);
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();
        assert_plans_whole(&env);
    }
    // A stale temporary file, as a killed writer leaves it: never a plan.
    let stale = env
        .plans()
        .join(crate::harness::ACCOUNT)
        .join(".k00.yaml.4f2a.tmp");
    std::fs::write(&stale, "version: 1\nuser: k0").unwrap();

    env.proxy.set_faults(Faults::default());
    let run = env.run(&args);
    run.expect(0);
    assert!(!run.text().contains("4f2a"), "{}", run.text());
    let status = env.run(&["--output", "json", "status"]);
    status.expect(0);
    assert_eq!(status.json().as_array().unwrap().len(), users.len());
    let orphans: usize = users
        .iter()
        .map(|u| {
            let text = env.plan_text(u);
            text.matches("deleted orphan key").count() + text.matches("already delivered").count()
        })
        .sum();
    eprintln!("kills landed mid-run: {kills}; orphans found (deleted or kept): {orphans}");
    assert!(kills >= 3, "the kills must land while the run works");
    assert!(
        orphans >= 1,
        "at least one kill must land between create and record"
    );
    assert_one_new_key_each(&env, &users, &old);
}

fn spawn(env: &Env, args: &[&str]) -> std::process::Child {
    env.command()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn two_batches_at_once_make_one_key_per_user() {
    let env = moto_env!();
    let (users, old) = setup(&env, 40, "c");
    // Two whole-folder batches at once.
    let a = spawn(&env, &["run", "--all"]);
    let b = spawn(&env, &["run", "--all", "--concurrency", "3"]);
    env.capture(a.wait_with_output().unwrap()).expect(0);
    env.capture(b.wait_with_output().unwrap()).expect(0);
    // Either may have skipped a plan the other held; one more run
    // finishes those.
    env.run(&["run", "--all"]).expect(0);
    assert_one_new_key_each(&env, &users, &old);

    // A batch and a run of named users walking the other way, so the two
    // meet in the middle with every plan contested.
    let (more, more_old) = setup(&env, 40, "d");
    let mut reversed = vec!["run"];
    reversed.extend(more.iter().rev().map(String::as_str));
    let a = spawn(&env, &["run", "--all"]);
    let b = spawn(&env, &reversed);
    env.capture(a.wait_with_output().unwrap()).expect(0);
    env.capture(b.wait_with_output().unwrap()).expect(0);
    env.run(&["run", "--all"]).expect(0);
    assert_one_new_key_each(&env, &more, &more_old);
}
