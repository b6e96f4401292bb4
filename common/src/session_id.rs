//! How a sandbox session id names the executor that owns it: the executor's
//! id, a '.', then a random part. A frontend with several executors sends
//! every call for a session to the executor the id names.

/// A new session id for the executor `executor_id`; `random` must not
/// contain '.' (a UUID does not), while executor ids may.
pub fn compose(executor_id: &str, random: &str) -> String {
    format!("{executor_id}.{random}")
}

/// The id of the executor that owns `session_id`, if the id names one.
pub fn executor_of(session_id: &str) -> Option<&str> {
    session_id
        .rsplit_once('.')
        .map(|(executor, _)| executor)
        .filter(|executor| !executor.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_is_everything_before_the_last_dot() {
        let id = compose("exec.eu-1", "0b7d5c1e-93c4-4be9-8a31-6a8f3e0e9b10");
        assert_eq!(id, "exec.eu-1.0b7d5c1e-93c4-4be9-8a31-6a8f3e0e9b10");
        assert_eq!(executor_of(&id), Some("exec.eu-1"));
    }

    #[test]
    fn ids_without_an_executor_name_none() {
        assert_eq!(executor_of("0b7d5c1e-93c4-4be9-8a31-6a8f3e0e9b10"), None);
        assert_eq!(executor_of(".abc"), None);
        assert_eq!(executor_of(""), None);
    }
}
