//! Who is calling and what they may do: token verification ([`jwt`]) and
//! the per-droplet and admin policies built on it ([`policy`]).

pub mod jwt;
pub mod keys;
pub mod policy;
