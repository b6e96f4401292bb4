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

    /// A slot only if another one stays free: for containers made ahead of
    /// demand, which must never take the last slot from a caller.
    pub fn try_reserve_spare(&self) -> Result<ContainerSlot, ExecError> {
        if self.slots.available_permits() < 2 {
            return Err(ExecError::Busy { max: self.max });
        }
        self.try_reserve()
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

    #[test]
    fn a_spare_slot_leaves_one_free() {
        let cap = ContainerCap::new(2);
        let spare = cap.try_reserve_spare().unwrap();
        assert!(cap.try_reserve_spare().is_err(), "the last slot is not spare");
        let last = cap.try_reserve().unwrap();
        drop((spare, last));
        assert!(ContainerCap::new(1).try_reserve_spare().is_err());
    }
}
