//! Many accounts at once (`--org`, `--accounts-file`): which accounts, with
//! which role, and running a batch in each with bounded concurrency.
//!
//! One account's failure (its role cannot be assumed, its plans cannot be
//! listed) is that account's outcome, never the whole run's: the other
//! accounts go on. Nothing here talks to AWS; the commands pass the work.

use std::path::Path;

use futures_util::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};

use super::stop::Stop;
use crate::aws::org::{self, OrgAccount};

/// An account to work in, and the role that reaches it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub id: String,
    pub name: String,
    pub role_arn: String,
}

/// How one account fared.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountState {
    /// Reached; its plans' own results say the rest.
    Done,
    /// Not reached (role not assumed, plans not listed): its plans were
    /// not touched.
    Failed,
    /// Not started: the run stopped first (deadline, signal).
    NotRun,
}

/// One account's line in a multi-account summary.
#[derive(Clone, Debug, Serialize)]
pub struct AccountOutcome {
    pub account: String,
    pub name: String,
    pub state: AccountState,
    /// Why it failed or was not run.
    pub reason: Option<String>,
}

/// The accounts of an organisation to work in: the ACTIVE ones, each with
/// `arn:<partition>:iam::<account>:role/<role_name>`. The others come back
/// apart, to be named as skipped.
pub fn from_org(
    listed: Vec<OrgAccount>,
    partition: &str,
    role_name: &str,
) -> (Vec<Account>, Vec<OrgAccount>) {
    let (active, inactive): (Vec<_>, Vec<_>) = listed.into_iter().partition(|a| a.is_active());
    let accounts = active
        .into_iter()
        .map(|a| Account {
            role_arn: org::role_arn(partition, &a.id, role_name),
            id: a.id,
            name: a.name,
        })
        .collect();
    (accounts, inactive)
}

/// A c7n-org accounts file: `accounts:` a list of `{account_id, name,
/// role}` (other c7n-org keys, such as regions and tags, are allowed and
/// ignored).
#[derive(Deserialize)]
struct AccountsFile {
    accounts: Vec<FileAccount>,
}

#[derive(Deserialize)]
#[serde(try_from = "RawFileAccount")]
struct FileAccount(Account);

#[derive(Deserialize)]
struct RawFileAccount {
    /// c7n-org files hold it quoted or not; YAML reads an unquoted one as
    /// a number.
    account_id: serde_yaml::Value,
    #[serde(default)]
    name: Option<String>,
    role: Option<String>,
}

impl TryFrom<RawFileAccount> for FileAccount {
    type Error = String;

    fn try_from(raw: RawFileAccount) -> Result<Self, String> {
        let id = match &raw.account_id {
            serde_yaml::Value::String(s) => s.clone(),
            serde_yaml::Value::Number(n) => format!("{n:0>12}"),
            _ => String::new(),
        };
        if id.len() != 12 || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err("account_id must be a 12-digit AWS account id".into());
        }
        let Some(role_arn) = raw.role else {
            return Err(format!(
                "account {id} has no role: give the ARN of the role to assume in it"
            ));
        };
        let role_account = role_arn.split(':').nth(4);
        if !role_arn.starts_with("arn:") || !role_arn.contains(":role/") {
            return Err(format!(
                "account {id}: role must be a role ARN, arn:aws:iam::{id}:role/NAME"
            ));
        }
        if role_account != Some(id.as_str()) {
            return Err(format!(
                "account {id}: its role is in another account ({}); a role of the account \
                 itself is what reaches its users",
                role_account.unwrap_or("none")
            ));
        }
        Ok(FileAccount(Account {
            name: raw.name.unwrap_or_default(),
            id,
            role_arn,
        }))
    }
}

/// Reads an accounts file; errors name the file and line.
pub fn parse_accounts_file(text: &str, path: &Path) -> Result<Vec<Account>, String> {
    let file: AccountsFile = serde_yaml::from_str(text).map_err(|e| {
        let (line, column, message) = crate::plan::store::located(&e);
        format!(
            "{}:{line}:{column}: {message} (expected the c7n-org format: accounts: a list of \
             account_id, name, role)",
            path.display()
        )
    })?;
    let mut accounts: Vec<Account> = Vec::new();
    for FileAccount(account) in file.accounts {
        if accounts.iter().any(|a| a.id == account.id) {
            return Err(format!(
                "{}: account {} is listed twice",
                path.display(),
                account.id
            ));
        }
        accounts.push(account);
    }
    Ok(accounts)
}

/// Keeps the accounts named by `only` (all when empty) and not by
/// `except`. Naming an account that is not there is an error: a typo must
/// not turn into a run over nothing.
pub fn select(
    accounts: Vec<Account>,
    only: &[String],
    except: &[String],
) -> Result<Vec<Account>, String> {
    for id in only.iter().chain(except) {
        if !accounts.iter().any(|a| &a.id == id) {
            return Err(format!(
                "account {id} is not among the accounts listed ({}); check --account and \
                 --exclude-account",
                accounts.len()
            ));
        }
    }
    Ok(accounts
        .into_iter()
        .filter(|a| only.is_empty() || only.contains(&a.id))
        .filter(|a| !except.contains(&a.id))
        .collect())
}

/// What working in one account gave: its result, or why there is none.
#[derive(Debug)]
pub enum AccountRun<T> {
    Done(T),
    Failed(String),
    NotRun(String),
}

impl<T> AccountRun<T> {
    /// The result, when the account was reached.
    pub fn done(self) -> Option<T> {
        match self {
            AccountRun::Done(done) => Some(done),
            _ => None,
        }
    }

    pub fn outcome(&self, account: &Account) -> AccountOutcome {
        let (state, reason) = match self {
            AccountRun::Done(_) => (AccountState::Done, None),
            AccountRun::Failed(reason) => (AccountState::Failed, Some(reason.clone())),
            AccountRun::NotRun(reason) => (AccountState::NotRun, Some(reason.clone())),
        };
        AccountOutcome {
            account: account.id.clone(),
            name: account.name.clone(),
            state,
            reason,
        }
    }
}

/// Runs `work` in each account, at most `concurrency` at once, in order;
/// an account not started when `stop` is asked for is not run.
pub async fn each_account<'a, T, F, Fut>(
    accounts: &'a [Account],
    concurrency: usize,
    stop: &Stop,
    work: F,
) -> Vec<AccountRun<T>>
where
    F: Fn(&'a Account) -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    stream::iter(accounts)
        .map(|account| {
            let started = stop.reason().is_none().then(|| work(account));
            async move {
                match started {
                    None => AccountRun::NotRun(format!(
                        "not started: {}",
                        stop.reason().map(|r| r.to_string()).unwrap_or_default()
                    )),
                    Some(work) => match work.await {
                        Ok(done) => AccountRun::Done(done),
                        Err(reason) => AccountRun::Failed(reason),
                    },
                }
            }
        })
        .buffered(concurrency.max(1))
        .collect()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn listed(id: &str, state: &str) -> OrgAccount {
        OrgAccount {
            id: id.into(),
            name: format!("n{id}"),
            state: state.into(),
        }
    }

    #[test]
    fn an_organisation_gives_its_active_accounts_each_with_its_role() {
        let (accounts, skipped) = from_org(
            vec![
                listed("111111111111", "ACTIVE"),
                listed("222222222222", "SUSPENDED"),
                listed("333333333333", "ACTIVE"),
            ],
            "aws-us-gov",
            "Rotator",
        );
        let arns: Vec<&str> = accounts.iter().map(|a| a.role_arn.as_str()).collect();
        assert_eq!(
            arns,
            [
                "arn:aws-us-gov:iam::111111111111:role/Rotator",
                "arn:aws-us-gov:iam::333333333333:role/Rotator"
            ]
        );
        assert_eq!(skipped, [listed("222222222222", "SUSPENDED")]);
    }

    #[test]
    fn an_accounts_file_in_c7n_org_format_is_read() {
        let text = "accounts:\n\
            - account_id: '111111111111'\n  name: dev\n  regions: [us-east-1]\n  \
              role: arn:aws:iam::111111111111:role/IamRotate\n\
            - account_id: 222222222222\n  name: prod\n  \
              role: arn:aws:iam::222222222222:role/Other\n  tags: [type:prod]\n";
        let accounts = parse_accounts_file(text, Path::new("accounts.yml")).unwrap();
        assert_eq!(
            accounts,
            [
                Account {
                    id: "111111111111".into(),
                    name: "dev".into(),
                    role_arn: "arn:aws:iam::111111111111:role/IamRotate".into()
                },
                Account {
                    id: "222222222222".into(),
                    name: "prod".into(),
                    role_arn: "arn:aws:iam::222222222222:role/Other".into()
                }
            ]
        );
    }

    #[test]
    fn a_bad_accounts_file_is_refused_with_its_file_and_line() {
        let cases = [
            ("accounts:\n- account_id: '12345'\n  role: x\n", "12-digit"),
            (
                "accounts:\n- account_id: '111111111111'\n  name: a\n",
                "has no role",
            ),
            (
                "accounts:\n- account_id: '111111111111'\n  role: arn:aws:iam::999999999999:role/R\n",
                "another account",
            ),
            ("account:\n- account_id: '111111111111'\n", "accounts"),
        ];
        for (text, says) in cases {
            let error = parse_accounts_file(text, Path::new("a.yml")).unwrap_err();
            assert!(error.starts_with("a.yml:"), "{error}");
            assert!(error.contains(says), "{error}");
            let line: usize = error.split(':').nth(1).unwrap().parse().unwrap();
            assert!(line >= 1, "{error}");
        }
        let twice = "accounts:\n\
            - {account_id: '111111111111', role: 'arn:aws:iam::111111111111:role/R'}\n\
            - {account_id: '111111111111', role: 'arn:aws:iam::111111111111:role/R'}\n";
        assert!(parse_accounts_file(twice, Path::new("a.yml"))
            .unwrap_err()
            .contains("listed twice"));
    }

    #[test]
    fn accounts_are_selected_and_a_typo_is_refused() {
        let (accounts, _) = from_org(
            vec![
                listed("111111111111", "ACTIVE"),
                listed("222222222222", "ACTIVE"),
                listed("333333333333", "ACTIVE"),
            ],
            "aws",
            "R",
        );
        let ids = |a: Vec<Account>| a.into_iter().map(|a| a.id).collect::<Vec<_>>();
        let only = select(accounts.clone(), &["222222222222".into()], &[]).unwrap();
        assert_eq!(ids(only), ["222222222222"]);
        let except = select(accounts.clone(), &[], &["222222222222".into()]).unwrap();
        assert_eq!(ids(except), ["111111111111", "333333333333"]);
        assert!(select(accounts, &["444444444444".into()], &[])
            .unwrap_err()
            .contains("444444444444"));
    }

    #[tokio::test]
    async fn one_failing_account_fails_alone_and_concurrency_is_bounded() {
        let (accounts, _) = from_org(
            (1..=6)
                .map(|n| listed(&format!("{n:012}"), "ACTIVE"))
                .collect(),
            "aws",
            "R",
        );
        let running = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let stop = Stop::new();
        let runs = each_account(&accounts, 2, &stop, |account| {
            let (running, most) = (&running, &most);
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                if account.id.ends_with('3') {
                    Err("role refused".to_string())
                } else {
                    Ok(account.id.clone())
                }
            }
        })
        .await;
        assert_eq!(most.load(Ordering::SeqCst), 2);
        let states: Vec<AccountState> = runs
            .iter()
            .zip(&accounts)
            .map(|(run, account)| run.outcome(account).state)
            .collect();
        let mut expected = vec![AccountState::Done; 6];
        expected[2] = AccountState::Failed;
        assert_eq!(states, expected);
    }

    #[tokio::test]
    async fn accounts_not_started_before_a_stop_are_not_run() {
        let (accounts, _) = from_org(
            (1..=4)
                .map(|n| listed(&format!("{n:012}"), "ACTIVE"))
                .collect(),
            "aws",
            "R",
        );
        let stop = Stop::new();
        let runs = each_account(&accounts, 1, &stop, |account| {
            let stop = stop.clone();
            async move {
                if account.id.ends_with('2') {
                    stop.request(super::super::stop::Reason::Signal("SIGTERM"));
                }
                Ok::<_, String>(())
            }
        })
        .await;
        let states: Vec<AccountState> = runs
            .iter()
            .zip(&accounts)
            .map(|(run, account)| run.outcome(account).state)
            .collect();
        assert_eq!(
            states,
            [
                AccountState::Done,
                AccountState::Done,
                AccountState::NotRun,
                AccountState::NotRun
            ]
        );
    }
}
