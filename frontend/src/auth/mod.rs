//! Who is calling and what they may do: the caller's identity, the admin
//! token, bearer JWTs checked against the authorization server's keys, and
//! the back-off after failed checks.

pub mod admin_token;
pub mod caller;
pub mod failed_auth;
pub mod jwks;
pub mod jwt;

pub use caller::{Caller, ClientAddr, Principal};
