//! A simulated IAM account in memory: the same [`Iam`] trait as AWS, on a
//! clock the caller moves. `demo` runs on it, and so do the unit tests.
//!
//! It enforces what matters to a rotation: the two-key limit, NoSuchEntity
//! for unknown users and keys, last use stamped only when a key is used.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use secrecy::SecretString;

use crate::clock::Clock;
use crate::iam::{Caller, CreatedKey, Iam, IamError, LastUse, LiveKey, User};
use crate::plan::KeyStatus;

#[derive(Debug, Clone)]
struct SimKey {
    id: String,
    status: KeyStatus,
    created_at: DateTime<Utc>,
    last_use: LastUse,
}

#[derive(Debug, Clone)]
struct SimUser {
    arn: String,
    path: String,
    created_at: DateTime<Utc>,
    keys: Vec<SimKey>,
}

#[derive(Debug, Default)]
struct State {
    users: BTreeMap<String, SimUser>,
    next_key: u64,
    /// Every IAM/STS call made, in order: `Operation user key`.
    calls: Vec<String>,
    /// Operations that fail once, the next time they are called.
    fail_next: Vec<&'static str>,
    /// CreateAccessKey calls that succeed in IAM but whose answer is lost.
    lose_next_create: bool,
}

/// The simulated account. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct SimAccount {
    account: String,
    caller_account: Arc<Mutex<String>>,
    clock: Arc<dyn Clock>,
    state: Arc<Mutex<State>>,
}

impl SimAccount {
    pub fn new(account: &str, clock: Arc<dyn Clock>) -> Self {
        SimAccount {
            account: account.to_string(),
            caller_account: Arc::new(Mutex::new(account.to_string())),
            clock,
            state: Arc::new(Mutex::new(State::default())),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn account(&self) -> &str {
        &self.account
    }

    /// Adds a user with no keys.
    pub fn add_user(&self, name: &str) {
        let now = self.clock.now();
        self.state().users.insert(
            name.to_string(),
            SimUser {
                arn: format!("arn:aws:iam::{}:user/{name}", self.account),
                path: "/".into(),
                created_at: now,
                keys: Vec::new(),
            },
        );
    }

    pub fn remove_user(&self, name: &str) {
        self.state().users.remove(name);
    }

    /// Adds a key created at `created_at`, bypassing the two-key limit
    /// checks a real create would do only in that it allows backdating.
    pub fn add_key(&self, user: &str, created_at: DateTime<Utc>) -> String {
        let mut state = self.state();
        let id = next_key_id(&mut state);
        if let Some(u) = state.users.get_mut(user) {
            u.keys.push(SimKey {
                id: id.clone(),
                status: KeyStatus::Active,
                created_at,
                last_use: LastUse::default(),
            });
        }
        id
    }

    /// An application signs a request with `key_id` now.
    pub fn use_key(&self, key_id: &str, service: &str, region: &str) {
        let now = self.clock.now();
        let mut state = self.state();
        for user in state.users.values_mut() {
            for key in user.keys.iter_mut().filter(|k| k.id == key_id) {
                key.last_use = LastUse {
                    at: Some(now),
                    service: Some(service.into()),
                    region: Some(region.into()),
                };
            }
        }
    }

    /// Changes a key's status behind iam-rotate's back.
    pub fn set_status(&self, user: &str, key_id: &str, status: KeyStatus) {
        if let Some(u) = self.state().users.get_mut(user) {
            for key in u.keys.iter_mut().filter(|k| k.id == key_id) {
                key.status = status;
            }
        }
    }

    /// Deletes a key behind iam-rotate's back.
    pub fn remove_key(&self, user: &str, key_id: &str) {
        if let Some(u) = self.state().users.get_mut(user) {
            u.keys.retain(|k| k.id != key_id);
        }
    }

    /// Makes the caller appear to be in another account.
    pub fn set_caller_account(&self, account: &str) {
        *self
            .caller_account
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = account.to_string();
    }

    /// The live keys of a user: (id, status).
    pub fn keys(&self, user: &str) -> Vec<(String, KeyStatus)> {
        self.state()
            .users
            .get(user)
            .map(|u| u.keys.iter().map(|k| (k.id.clone(), k.status)).collect())
            .unwrap_or_default()
    }

    /// A user's keys and their last use, read without making a call: what
    /// the simulation's invariants compare the plans with.
    pub fn key_states(&self, user: &str) -> Vec<(LiveKey, LastUse)> {
        self.state()
            .users
            .get(user)
            .map(|u| {
                u.keys
                    .iter()
                    .map(|k| {
                        let live = LiveKey {
                            id: k.id.clone(),
                            status: k.status,
                            created_at: k.created_at,
                        };
                        (live, k.last_use.clone())
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every call made so far, as `Operation` strings.
    pub fn calls(&self) -> Vec<String> {
        self.state().calls.clone()
    }

    /// Calls that change IAM.
    pub fn writes(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|c| {
                c.starts_with("CreateAccessKey")
                    || c.starts_with("UpdateAccessKey")
                    || c.starts_with("DeleteAccessKey")
            })
            .collect()
    }

    /// The next call of `operation` fails with a service error.
    pub fn fail_next(&self, operation: &'static str) {
        self.state().fail_next.push(operation);
    }

    /// The next CreateAccessKey creates the key but its answer never arrives.
    pub fn lose_next_create_response(&self) {
        self.state().lose_next_create = true;
    }

    fn begin(&self, call: String) -> Result<MutexGuard<'_, State>, IamError> {
        let mut state = self.state();
        let operation = call.split(' ').next().unwrap_or_default().to_string();
        state.calls.push(call);
        if let Some(pos) = state.fail_next.iter().position(|op| *op == operation) {
            state.fail_next.remove(pos);
            return Err(IamError::Other {
                operation,
                message: "ServiceFailure (simulated)".into(),
            });
        }
        Ok(state)
    }
}

fn next_key_id(state: &mut State) -> String {
    state.next_key += 1;
    format!("AKIASIM{:013}", state.next_key)
}

/// A stand-in secret: 40 characters, different for every key, never a real one.
fn fake_secret(n: u64) -> SecretString {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let secret: String = (0..40)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ALPHABET[(x % 64) as usize] as char
        })
        .collect();
    SecretString::from(secret)
}

fn no_user(user: &str) -> IamError {
    IamError::NoSuchEntity {
        what: format!("user {user}"),
    }
}

#[async_trait]
impl Iam for SimAccount {
    async fn caller_identity(&self) -> Result<Caller, IamError> {
        let _state = self.begin("GetCallerIdentity".into())?;
        let account = self
            .caller_account
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        Ok(Caller {
            arn: format!("arn:aws:iam::{account}:user/operator"),
            account,
        })
    }

    async fn get_user(&self, user: &str) -> Result<User, IamError> {
        let state = self.begin(format!("GetUser {user}"))?;
        let u = state.users.get(user).ok_or_else(|| no_user(user))?;
        Ok(User {
            name: user.to_string(),
            arn: u.arn.clone(),
            path: u.path.clone(),
            created_at: Some(u.created_at),
        })
    }

    async fn list_users(&self, path_prefix: Option<&str>) -> Result<Vec<User>, IamError> {
        let state = self.begin("ListUsers".into())?;
        Ok(state
            .users
            .iter()
            .filter(|(_, u)| path_prefix.is_none_or(|p| u.path.starts_with(p)))
            .map(|(name, u)| User {
                name: name.clone(),
                arn: u.arn.clone(),
                path: u.path.clone(),
                created_at: Some(u.created_at),
            })
            .collect())
    }

    async fn list_access_keys(&self, user: &str) -> Result<Vec<LiveKey>, IamError> {
        let state = self.begin(format!("ListAccessKeys {user}"))?;
        let u = state.users.get(user).ok_or_else(|| no_user(user))?;
        Ok(u.keys
            .iter()
            .map(|k| LiveKey {
                id: k.id.clone(),
                status: k.status,
                created_at: k.created_at,
            })
            .collect())
    }

    async fn create_access_key(&self, user: &str) -> Result<CreatedKey, IamError> {
        let now = self.clock.now();
        let mut state = self.begin(format!("CreateAccessKey {user}"))?;
        if !state.users.contains_key(user) {
            return Err(no_user(user));
        }
        if state.users[user].keys.len() >= 2 {
            return Err(IamError::LimitExceeded);
        }
        let id = next_key_id(&mut state);
        let n = state.next_key;
        if let Some(u) = state.users.get_mut(user) {
            u.keys.push(SimKey {
                id: id.clone(),
                status: KeyStatus::Active,
                created_at: now,
                last_use: LastUse::default(),
            });
        }
        if std::mem::take(&mut state.lose_next_create) {
            return Err(IamError::Unanswered {
                operation: "CreateAccessKey".into(),
                message: "connection reset before the answer arrived (simulated)".into(),
            });
        }
        Ok(CreatedKey {
            id,
            created_at: now,
            secret: fake_secret(n),
        })
    }

    async fn update_access_key(
        &self,
        user: &str,
        key_id: &str,
        status: KeyStatus,
    ) -> Result<(), IamError> {
        let mut state = self.begin(format!("UpdateAccessKey {user} {key_id} {status}"))?;
        let u = state.users.get_mut(user).ok_or_else(|| no_user(user))?;
        let key =
            u.keys
                .iter_mut()
                .find(|k| k.id == key_id)
                .ok_or_else(|| IamError::NoSuchEntity {
                    what: format!("access key {key_id}"),
                })?;
        key.status = status;
        Ok(())
    }

    async fn delete_access_key(&self, user: &str, key_id: &str) -> Result<(), IamError> {
        let mut state = self.begin(format!("DeleteAccessKey {user} {key_id}"))?;
        let u = state.users.get_mut(user).ok_or_else(|| no_user(user))?;
        let before = u.keys.len();
        u.keys.retain(|k| k.id != key_id);
        if u.keys.len() == before {
            return Err(IamError::NoSuchEntity {
                what: format!("access key {key_id}"),
            });
        }
        Ok(())
    }

    async fn access_key_last_used(&self, key_id: &str) -> Result<LastUse, IamError> {
        let state = self.begin(format!("GetAccessKeyLastUsed {key_id}"))?;
        state
            .users
            .values()
            .flat_map(|u| u.keys.iter())
            .find(|k| k.id == key_id)
            .map(|k| k.last_use.clone())
            .ok_or_else(|| IamError::NoSuchEntity {
                what: format!("access key {key_id}"),
            })
    }
}
