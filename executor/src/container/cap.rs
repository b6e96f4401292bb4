//! The global cap on live containers. A run past the cap is refused at once:
//! a caller waiting on a full executor would only see a hang.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ExecError;

#[derive(Debug, Clone)]
pub struct ContainerCap {
    slots: Arc<Semaphore>,
    max: u32,
}

/// One container's slot; freed when the container is gone.
#[derive(Debug)]
pub struct ContainerSlot {
    _permit: OwnedSemaphorePermit,
}

impl ContainerCap {
    pub fn new(max: u32) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max as usize)),
            max,
        }
    }

    pub fn try_reserve(&self) -> Result<ContainerSlot, ExecError> {
        self.slots
            .clone()
            .try_acquire_owned()
            .map(|permit| ContainerSlot { _permit: permit })
            .map_err(|_| ExecError::Busy { max: self.max })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_the_cap_and_frees_on_drop() {
        let cap = ContainerCap::new(1);
        let slot = cap.try_reserve().unwrap();
        let err = cap.try_reserve().unwrap_err();
        assert!(
            err.to_string().contains("executor busy: 1 containers already running"),
            "{err}"
        );
        drop(slot);
        assert!(cap.try_reserve().is_ok());
    }
}
