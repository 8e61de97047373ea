//! The one stand-in destination of the unit tests: records which key ids
//! were delivered, and can be told to fail or to hold something else.

use std::sync::Mutex;

use async_trait::async_trait;

use super::{Deliver, DeliverError, Destination, Held};
use crate::iam::CreatedKey;

/// Records which key ids were delivered; can be told to fail.
#[derive(Default)]
pub struct FakeDeliver {
    pub delivered: Mutex<Vec<String>>,
    pub fail_check: Mutex<bool>,
    pub fail_deliver: Mutex<bool>,
    /// What the destination holds, when not the last key delivered.
    pub held: Mutex<Option<Held>>,
}

#[async_trait]
impl Deliver for FakeDeliver {
    async fn check(&self, destination: &Destination) -> Result<(), DeliverError> {
        if *self.fail_check.lock().unwrap() {
            return Err(DeliverError::failed(destination, "not writable (test)"));
        }
        Ok(())
    }

    async fn deliver(
        &self,
        destination: &Destination,
        key: &CreatedKey,
    ) -> Result<(), DeliverError> {
        if *self.fail_deliver.lock().unwrap() {
            return Err(DeliverError::failed(destination, "write failed (test)"));
        }
        self.delivered.lock().unwrap().push(key.id.clone());
        Ok(())
    }

    async fn held(&self, _destination: &Destination) -> Held {
        match &*self.held.lock().unwrap() {
            Some(held) => held.clone(),
            None => match self.delivered.lock().unwrap().last() {
                Some(id) => Held::Key(id.clone()),
                None => Held::Nothing,
            },
        }
    }
}
