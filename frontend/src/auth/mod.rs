//! Who is calling and what they may do: the caller's identity, the admin
//! token, and bearer JWTs checked against the authorization server's keys.

pub mod admin_token;
pub mod caller;
pub mod jwks;
pub mod jwt;

pub use caller::{Caller, Principal};
